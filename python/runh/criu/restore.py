"""`runh restore`: a container made from a checkpoint, as `create` makes one from a bundle.

Like create it validates the bundle's config, takes the state dir (the id's lock), makes
the cgroup with its limits and records the container in state.json; but its process tree
comes from the images through CRIU instead of a parked runh-init, so the container is
"running" the moment it is recorded (no notify.sock), and exec, kill and delete work on it
as on any other. CRIU is run in this process's own mount namespace (a slave copy of the
host's): the rootfs bind that CRIU needs as its root never appears on the host, and
vanishes with this process whatever happens to it.

The restored init is this process's child (rst_sibling): a detached restore leaves it to
the caller's subreaper, as create does; a foreground one waits for it.
"""

import posix as os

from runh import state as st
from runh.criu import plan, swrk
from runh.errors import ConfigError, ContainerExists, NotSupported, RunhError, UsageError

_LOG = "restore.log"
_CLONE_NEWNS = 0x00020000
_MS_REC, _MS_BIND, _MS_SLAVE = 0x4000, 0x1000, 0x80000


def check_images(path):
    """An image dir that a checkpoint wrote: a directory with CRIU's inventory.img."""
    if not st.isdir(path):
        raise ConfigError(f"--image-path {path}: no such directory")
    if not st.exists(st.join(path, "inventory.img")):
        raise ConfigError(f"--image-path {path}: not a checkpoint (no inventory.img)")


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _private_mounts():
    """This process into a mount namespace of its own, receiving the host's mounts but
    sending none back (MS_SLAVE): the binds made for CRIU stay here."""
    import ctypes

    libc = _libc()
    if libc.unshare(_CLONE_NEWNS) != 0:
        e = ctypes.get_errno()
        raise RunhError(f"unshare mount namespace: {os.strerror(e).lower()}", e)
    if libc.mount(None, b"/", None, _MS_REC | _MS_SLAVE, None) != 0:
        e = ctypes.get_errno()
        raise RunhError(f"make / a slave mount: {os.strerror(e).lower()}", e)
    return libc


def _bind(libc, src, dst):
    import ctypes

    if libc.mount(src.encode(), dst.encode(), None, _MS_BIND | _MS_REC, None) != 0:
        e = ctypes.get_errno()
        raise RunhError(f"bind {src} for criu: {os.strerror(e).lower()}", e)


def _unbind(sdir):
    """Undo the rootfs bind (it is in this process's namespace alone) and its directory."""
    path = st.join(sdir, "criu-root")
    if st.exists(path):
        _libc().umount2(path.encode(), 2)  # MNT_DETACH; an unmounted dir just fails EINVAL
        try:
            os.rmdir(path)
        except OSError:
            pass


def _send_console(path, master):
    """The restored terminal's new pty master to --console-socket, as create sends it."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        socket.send_fds(s, [b"/dev/ptmx"], [master])
    except OSError as e:
        raise RunhError(f"--console-socket {path}: {e.strerror}", e.errno or 0) from None
    finally:
        s.close()


def _descriptors(image):
    from runh.criu.dump import DESCRIPTORS
    from runh.jsonio import loads

    try:
        with open(st.join(image, DESCRIPTORS), "rb") as f:
            out = loads(f.read())
    except (OSError, ValueError):
        return []  # images made without runh (or runc): no stdio to hand over
    return [d if isinstance(d, str) else "" for d in out][:3] if isinstance(out, list) else []


def _cg_roots(pid):
    """cg_root for CRIU from where `pid` (CRIU, moved into the container's cgroup) is:
    the dumped tree's cgroups are restored below these."""
    out = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            _, ctrl, path = line.split(":", 2)
            out.append({"ctrl": ctrl, "path": path} if ctrl else {"path": path})
    return out


def restore(container_id, bundle=None, root=st.DEFAULT_ROOT, opts=None, criu="criu",
            pid_file=None, console_socket=None, systemd_cgroup=False):
    """Restore `container_id` from opts.image_path with the bundle's config; returns the
    runh.Container, running."""
    from runh.container import Container, _abspath, _make_root, _mark, _release_root, _remove_dir
    from runh.spec import load_config, rootfs_path

    opts = opts or plan.Options()
    c = Container(container_id, root)
    bundle = _abspath(bundle or os.getcwd())
    if systemd_cgroup:
        raise NotSupported("systemd cgroup driver is not supported yet")
    raw, config = load_config(bundle)
    rootfs = rootfs_path(bundle, config)
    process = config.get("process")
    if process is None:
        raise ConfigError("config.json: process: is required to restore a container")
    if process.get("terminal") and not console_socket:
        raise ConfigError("cannot restore a terminal without a console socket")
    if console_socket and not process.get("terminal"):
        raise ConfigError("cannot use console socket if the process has no terminal")
    mode = swrk.CG_MODES.get(opts.manage_cgroups_mode or "")
    if mode is None:
        raise UsageError(f"--manage-cgroups-mode: invalid value {opts.manage_cgroups_mode!r} "
                         "(soft, full, strict or ignore)")
    image = _abspath(opts.image_path or "checkpoint")
    check_images(image)
    plan.check_cgroup_mounts(config)
    inherit_ns, join_ns = plan.restore_namespaces(config)
    empty = plan.empty_ns(opts.empty_ns)
    criu = swrk.find(criu)
    if opts.lazy_pages and not swrk.features(criu, ["lazy_pages"])["lazy_pages"]:
        raise NotSupported("criu or this kernel lacks lazy_pages (needed by --lazy-pages)")
    descriptors = _descriptors(image)
    _mark("config, images and criu checked")

    _make_root(root)
    try:
        os.mkdir(c.dir, 0o711)
    except FileExistsError:
        raise ContainerExists(container_id) from None
    pid = 0
    cg = None
    fds = []
    made = []  # what this restore adds outside the state dir: a work dir, the log
    try:
        with st.Lock(c.dir):
            from runh import cgroups
            from runh.jsonio import dumps
            from runh.log import rfc3339

            linux = config.get("linux") or {}
            cg = cgroups.manager_for(linux, container_id, systemd_cgroup)
            state = {
                "ociVersion": config["ociVersion"], "id": container_id, "pid": 0,
                "starttime": None, "bundle": bundle, "rootfs": rootfs, "created": rfc3339(),
                "owner": "", "annotations": config.get("annotations") or {},
                "cgroup": cg.to_state(),
            }
            hooks = config.get("hooks")
            from runh import hooks as hk

            if hooks and hk.for_state(hooks):
                state["hooks"] = hk.for_state(hooks)

            def record(p):
                state["pid"], state["starttime"] = p, st.proc_start_time(p)[0] if p else None
                st.write_atomic(st.join(c.dir, st.STATE_FILE), dumps(state))
                c._state = state

            # Recorded before made: a restore killed from here on leaves a container
            # that `delete` removes with its cgroup (and, once CRIU has said
            # post-restore, the restored tree: its pid is recorded then).
            record(0)
            cg.create()
            cg.apply(linux.get("resources"), linux.get("devices"))
            state["cgroup"] = cg.to_state()  # with linux.devices, which update keeps
            record(0)
            _mark("state dir, cgroup")
            libc = _private_mounts()
            criu_root = st.join(c.dir, "criu-root")
            os.mkdir(criu_root, 0o700)
            # CRIU's root must be a mount point whose parent is not over-mounted.
            _bind(libc, rootfs, criu_root)

            req_opts = {
                "images_dir_fd": _open_dir(image, fds),
                "log_level": 4,
                "log_file": _LOG,
                "rst_sibling": True,
                "root": criu_root,
                "evasive_devices": True,
                "manage_cgroups": True,
                "manage_cgroups_mode": mode,
                "notify_scripts": True,
                "shell_job": bool(opts.shell_job),
                "ext_unix_sk": bool(opts.ext_unix_sk),
                "tcp_established": bool(opts.tcp_established),
                "file_locks": bool(opts.file_locks),
                "auto_dedup": bool(opts.auto_dedup),
                "lazy_pages": bool(opts.lazy_pages),
                "empty_ns": empty,
                "orphan_pts_master": True,
                "config_file": plan.CONFIG_FILE,
                "ext_mnt": plan.restore_ext_mounts(config, bundle),
                "join_ns": join_ns,
                "inherit_fd": [],
            }
            log_dir = image
            if opts.work_path:
                work = _abspath(opts.work_path)
                try:
                    os.mkdir(work, 0o700)
                    made.append(work)
                except FileExistsError:
                    pass
                req_opts["work_dir_fd"] = _open_dir(work, fds)
                log_dir = work
            if not st.exists(st.join(log_dir, _LOG)):
                made.append(st.join(log_dir, _LOG))  # a failed restore takes its log along
            for key, path in inherit_ns:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError as e:
                    raise ConfigError(f"linux.namespaces: {path}: {e.strerror}", e.errno) from None
                fds.append(fd)
                req_opts["inherit_fd"].append({"key": key, "fd": fd})
            for i, d in enumerate(descriptors):
                if d.startswith("pipe:"):
                    # The container's stdio pipes become ours (the caller's new ones).
                    req_opts["inherit_fd"].append({"key": d, "fd": i})

            def on_notify(script, npid, got):
                nonlocal pid
                if script == "setup-namespaces" and hooks and hk.wanted_at_create(hooks):
                    s = {"ociVersion": config["ociVersion"], "id": container_id, "status": "creating",
                         "bundle": bundle, "pid": npid, "annotations": config.get("annotations") or {}}
                    hk.run("prestart", hooks, hk.state_bytes(s))
                    hk.run("createRuntime", hooks, hk.state_bytes(s))
                elif script == "post-restore":
                    # Recorded before the restored tree resumes: from here, delete finds it.
                    pid = npid
                    record(npid)
                elif script == "orphan-pts-master" and got:
                    _send_console(console_socket, got[0])

            _mark("rootfs bound for criu")
            w = swrk.Swrk(criu, fds)
            _mark("criu swrk started")
            try:
                cg.add(w.pid)  # CRIU's children (the restored tree) start in the container's cgroup
                req_opts["cg_root"] = _cg_roots(w.pid)
                resp = w.call({"type": swrk.RESTORE, "opts": req_opts}, on_notify)
            except swrk.CriuError as e:
                raise swrk.CriuError(swrk.explain(e, st.join(log_dir, _LOG))) from None
            finally:
                code = w.close()
            _mark("criu restored and exited")
            pid = (resp.get("restore") or {}).get("pid") or pid
            if code != 0 or pid <= 0:
                raise swrk.CriuError(swrk.explain(f"criu exited with status {code}", st.join(log_dir, _LOG)))
            if state["pid"] != pid:
                record(pid)
            _close_all(fds)
            _unbind(c.dir)
            if pid_file:
                from runh.container import PID_FILE_MODE

                st.write_atomic(_abspath(pid_file), str(pid), PID_FILE_MODE)
    except BaseException:
        _close_all(fds)
        if pid > 0:
            try:
                os.kill(pid, 9)  # our child (rst_sibling): the pid cannot have been reused
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        if cg is not None:
            try:
                cg.kill_all(9)
                cg.remove()
            except RunhError:
                pass
        _unbind(c.dir)
        for path in reversed(made):
            try:
                os.unlink(path)
            except IsADirectoryError:
                _remove_dir(path)
            except OSError:
                pass
        _remove_dir(c.dir)
        _release_root(c.root)
        raise
    return c


def _open_dir(path, fds):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)  # inherited by CRIU: no CLOEXEC
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}", e.errno) from None
    fds.append(fd)
    return fd


def _close_all(fds):
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass
