"""`runh restore`: a container made from a checkpoint, as `create` makes one from a bundle.

It is create's own making (Container._new): it validates the bundle's config, takes the
state dir and its lock, claims and makes the cgroup with its limits, and records each thing
in state.json before it is made, so that a failure, or a SIGKILL at any instant, leaves what
`delete` (Container._remove_recorded) removes. Its process tree comes from the images
through CRIU instead of a parked runh-init, so the container is "running" the moment its
record is finished (no notify.sock), and exec, kill and delete work on it as on any other.

CRIU is run in this process's own mount namespace (a slave copy of the host's): the rootfs
bind that CRIU needs as its root never appears on the host, and vanishes with that
namespace's last process (this one, or CRIU, which is in the container's cgroup). It is
recorded all the same (the record's "mounts"): the undo of a failed restore runs in that
namespace, and must detach the bind before it removes the state dir, never empty it.

The restored init is this process's child (rst_sibling): a detached restore leaves it to
the caller's subreaper, as create does; a foreground one waits for it.
"""

import posix as os

from runh import state as st
from runh.criu import plan, swrk
from runh.errors import ConfigError, NotSupported, RunhError, UsageError

_LOG = "restore.log"
# The rootfs bind CRIU restores into, in the state dir (a mount point of the record's
# "mounts": delete detaches it and never empties it).
_CRIU_ROOT = "criu-root"
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
    from runh.container import Container, _abspath, _mark
    from runh.spec import load_config, rootfs_path

    opts = opts or plan.Options()
    st.validate_id(container_id)
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
    _mark("config, images and criu checked")
    r = _Restore(config=config, raw=raw, bundle=bundle, rootfs=rootfs, image=image, opts=opts,
                 mode=mode, empty=empty, inherit_ns=inherit_ns, join_ns=join_ns, criu=criu,
                 console_socket=console_socket, systemd_cgroup=systemd_cgroup,
                 descriptors=_descriptors(image))
    # create's state dir, lock and undo: a restore that fails, or is killed, leaves
    # what `delete` removes, as a create does.
    return Container._new(container_id, root, lambda c: r.run(c, pid_file))


class _Restore:
    """A checked restore, run under the new state dir's lock (Container._new)."""

    def __init__(self, **checked):
        self.__dict__.update(checked)

    def run(self, c, pid_file):
        """Recorded before made, as create: the first record (no pid, "creating") before
        the cgroup is made; the rootfs bind's mount point, a work dir this restore makes
        and CRIU's log before they exist; the restored init as soon as CRIU names it,
        before its tree resumes. So a restore killed at any instant leaves a record of
        everything it made, and `delete --force` finishes the job."""
        from runh.container import _abspath, _make_cgroup, _mark
        from runh.criu.records import detach_mounts

        config, opts = self.config, self.opts
        linux = config.get("linux") or {}
        cg = c._claim_cgroup(linux, self.systemd_cgroup)
        state = c._record_first(config, self.raw, self.bundle, self.rootfs, cg)
        _make_cgroup(cg, linux, state)
        work = _abspath(opts.work_path) if opts.work_path else None
        log = st.join(work or self.image, _LOG)
        # A work dir made here takes its log along; a failed restore takes both.
        made = [work] if work and not st.exists(work) else []
        if not made and not st.exists(log):
            made.append(log)
        state["made"], state["mounts"] = made, [_CRIU_ROOT]
        c._record(state)
        _mark("state dir, cgroup")
        if work:
            try:
                os.mkdir(work, 0o700)
            except FileExistsError:
                if made and made[0] == work:  # made meanwhile, by someone else: not ours
                    state["made"] = [] if st.exists(log) else [log]
                    c._record(state)
        fds = []
        try:
            pid = self._criu(c, state, cg, work, log, fds)
        finally:
            _close_all(fds)
        # Out of the record only once detached: should this fail, the undo must still
        # know the mount point, or it would empty the rootfs it shows with the state dir.
        detach_mounts(c.dir, state["mounts"])
        del state["mounts"], state["made"]  # the work dir and log stay with the images, as runc's
        c._record_made(state, pid, pid_file)

    def _criu(self, c, state, cg, work, log, fds):
        """Bind the rootfs for CRIU, run its restore; the restored init's pid."""
        from runh.container import _mark

        config, opts = self.config, self.opts
        hooks = config.get("hooks")
        libc = _private_mounts()
        criu_root = st.join(c.dir, _CRIU_ROOT)
        os.mkdir(criu_root, 0o700)
        # CRIU's root must be a mount point whose parent is not over-mounted.
        _bind(libc, self.rootfs, criu_root)
        req_opts = {
            "images_dir_fd": _open_dir(self.image, fds),
            "log_level": 4,
            "log_file": _LOG,
            "rst_sibling": True,
            "root": criu_root,
            "evasive_devices": True,
            "manage_cgroups": True,
            "manage_cgroups_mode": self.mode,
            "notify_scripts": True,
            "shell_job": bool(opts.shell_job),
            "ext_unix_sk": bool(opts.ext_unix_sk),
            "tcp_established": bool(opts.tcp_established),
            "file_locks": bool(opts.file_locks),
            "auto_dedup": bool(opts.auto_dedup),
            "lazy_pages": bool(opts.lazy_pages),
            "empty_ns": self.empty,
            "orphan_pts_master": True,
            "config_file": plan.CONFIG_FILE,
            "ext_mnt": plan.restore_ext_mounts(config, self.bundle),
            "join_ns": self.join_ns,
            "inherit_fd": [],
        }
        if work:
            req_opts["work_dir_fd"] = _open_dir(work, fds)
        for key, path in self.inherit_ns:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as e:
                raise ConfigError(f"linux.namespaces: {path}: {e.strerror}", e.errno) from None
            fds.append(fd)
            req_opts["inherit_fd"].append({"key": key, "fd": fd})
        for i, d in enumerate(self.descriptors):
            if d.startswith("pipe:"):
                # The container's stdio pipes become ours (the caller's new ones).
                req_opts["inherit_fd"].append({"key": d, "fd": i})

        def record(pid):
            state["pid"], state["starttime"] = pid, st.proc_start_time(pid)[0]
            c._record(state)

        def on_notify(script, npid, got):
            if script == "setup-namespaces" and hooks:
                from runh import hooks as hk

                if hk.wanted_at_create(hooks):
                    s = {"ociVersion": config["ociVersion"], "id": c.id, "status": "creating",
                         "bundle": self.bundle, "pid": npid, "annotations": config.get("annotations") or {}}
                    hk.run("prestart", hooks, hk.state_bytes(s))
                    hk.run("createRuntime", hooks, hk.state_bytes(s))
            elif script == "post-restore":
                record(npid)  # before the restored tree resumes: from here, delete finds it
            elif script == "orphan-pts-master" and got:
                _send_console(self.console_socket, got[0])

        _mark("rootfs bound for criu")
        w = swrk.Swrk(self.criu, fds)
        _mark("criu swrk started")
        try:
            cg.add(w.pid)  # CRIU's children (the restored tree) start in the container's cgroup
            req_opts["cg_root"] = _cg_roots(w.pid)
            resp = w.call({"type": swrk.RESTORE, "opts": req_opts}, on_notify)
        except swrk.CriuError as e:
            raise swrk.CriuError(swrk.explain(e, log)) from None
        finally:
            code = w.close()
        _mark("criu restored and exited")
        pid = (resp.get("restore") or {}).get("pid") or state["pid"]
        if pid > 0 and state["pid"] != pid:
            record(pid)
        if code != 0 or pid <= 0:
            raise swrk.CriuError(swrk.explain(f"criu exited with status {code}", log))
        return pid


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
