"""`runh checkpoint`: dump a running container's process tree into an image directory.

Checkpoint images hold the container's memory (secrets included): the image and work
directories runh makes are 0700. A failed checkpoint leaves the container as it was and
removes whatever it made (the directories it created, the files CRIU wrote into
existing ones); CRIU's own error lines are quoted in the one-line error.
"""

import posix as os

from runh import state as st
from runh.container import _mark
from runh.criu import plan, swrk
from runh.errors import ConfigError, InvalidState, UsageError

# runc's name for the stdio description kept beside the images (restore reads it).
DESCRIPTORS = "descriptors.json"
_LOG_LEVEL = 4  # CRIU's most detailed: its log is what explains a failure


def _page_server(text):
    addr, sep, port = (text or "").rpartition(":")
    if not sep or not addr or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError("--page-server: use ADDRESS:PORT")
    return {"address": addr.strip("[]"), "port": int(port)}


def _status_fd(fd):
    import fcntl

    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as e:
        raise UsageError(f"--status-fd {fd}: {os.strerror(e.errno).lower()}") from None
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise UsageError(f"--status-fd {fd}: not open for writing")
    return fd


class Dirs:
    """The image (and work) directories: made 0700 if absent; on failure, what this
    checkpoint added is removed again."""

    def __init__(self):
        self.made, self.before, self.fds = [], {}, []

    def open(self, path):
        path = path.rstrip("/") or "/"
        try:
            os.mkdir(path, 0o700)
            self.made.append(path)
        except FileExistsError:
            self.before[path] = set(os.listdir(path))
        except OSError as e:
            raise ConfigError(f"cannot make {path}: {os.strerror(e.errno).lower()}", e.errno) from None
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)  # inherited by CRIU: no CLOEXEC
        self.fds.append(fd)
        return fd

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def undo(self):
        from runh.criu.records import remove_made

        self.close()
        added = []
        for path, names in self.before.items():
            try:
                added += [st.join(path, name) for name in set(os.listdir(path)) - names]
            except OSError:
                continue
        for path in added + self.made[::-1]:
            try:
                remove_made([path])
            except OSError:
                pass  # the checkpoint's own error is the one to report


def _descriptors(pid):
    """What the init's fds 0-2 are ("pipe:[123]", "/dev/null", ...), for restore to hand
    the caller's new pipes over in their place (runc's descriptors.json)."""
    out = []
    for fd in range(3):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            out.append("")
    return out


def checkpoint(c, opts, criu="criu"):
    """Checkpoint container `c` (a runh.Container) with `opts` (Options)."""
    from runh.jsonio import dumps

    with st.Lock(c.dir) as lk:
        if lk is None:
            from runh.errors import ContainerNotFound

            raise ContainerNotFound(c.id)
        c._state = st.read_state(c.root, c.id)
        status = c.status()
        if status not in (st.RUNNING, st.PAUSED):
            raise InvalidState(f"container cannot be checkpointed in {status} state")
        s = c._state
        pid = s["pid"]
        mode = swrk.CG_MODES.get(opts.manage_cgroups_mode or "")
        if mode is None:
            raise UsageError(f"--manage-cgroups-mode: invalid value {opts.manage_cgroups_mode!r} "
                             "(soft, full, strict or ignore)")
        ps = _page_server(opts.page_server) if opts.page_server else None
        status_fd = _status_fd(opts.status_fd) if opts.status_fd not in (None, -1) else -1
        if opts.parent_path and opts.parent_path.startswith("/"):
            raise UsageError("--parent-path must be relative (to --image-path)")
        config = plan.config_of(c)
        plan.check_cgroup_mounts(config)
        criu = swrk.find(criu)
        req_opts = {
            "pid": pid,
            "log_level": _LOG_LEVEL,
            "root": s.get("rootfs") or f"/proc/{pid}/root",
            "manage_cgroups": True,
            "manage_cgroups_mode": mode,
            "notify_scripts": True,
            "leave_running": bool(opts.leave_running),
            "tcp_established": bool(opts.tcp_established),
            "ext_unix_sk": bool(opts.ext_unix_sk),
            "shell_job": bool(opts.shell_job),
            "file_locks": bool(opts.file_locks),
            "auto_dedup": bool(opts.auto_dedup),
            "lazy_pages": bool(opts.lazy_pages),
            "empty_ns": plan.empty_ns(opts.empty_ns),
            # A terminal's master end is the console socket's receiver's, outside the
            # container: CRIU dumps the slave alone and makes a new pair at restore.
            "orphan_pts_master": True,
            "config_file": plan.CONFIG_FILE,
            "external": plan.dump_externals(config),
        }
        if ps:
            req_opts["ps"] = ps
        freezer = _freezer(c)
        if freezer:
            req_opts["freeze_cgroup"] = freezer  # one freeze of the cgroup, not ptrace stops
        wanted = []
        if opts.pre_dump:
            wanted.append("mem_track")
        if opts.lazy_pages:
            wanted.append("lazy_pages")
        if wanted:
            have = swrk.features(criu, wanted)
            missing = [k for k in wanted if not have[k]]
            if missing:
                from runh.errors import NotSupported

                raise NotSupported(f"criu or this kernel lacks {', '.join(missing)} "
                                   f"(needed by --{'pre-dump' if 'mem_track' in missing else 'lazy-pages'})")
        _mark("checks and plan")
        kind = swrk.PRE_DUMP if opts.pre_dump else swrk.DUMP
        log_name = "pre-dump.log" if opts.pre_dump else "dump.log"
        req_opts["log_file"] = log_name
        if not opts.pre_dump:
            # No mounts in a pre-dump: it saves memory only.
            req_opts["ext_mnt"] = plan.dump_ext_mounts(config, pid)

        dirs = Dirs()
        ok = False
        try:
            image = opts.image_path or "checkpoint"
            req_opts["images_dir_fd"] = dirs.open(image)
            log_dir = image
            if opts.work_path:
                req_opts["work_dir_fd"] = dirs.open(opts.work_path)
                log_dir = opts.work_path
            if opts.parent_path:
                parent = st.join(image, opts.parent_path)
                if not st.isdir(parent):
                    raise UsageError(f"--parent-path {opts.parent_path}: no such directory in {image}")
                req_opts["parent_img"] = opts.parent_path
                req_opts["track_mem"] = True
            if not opts.pre_dump:
                st.write_atomic(st.join(image, DESCRIPTORS), dumps(_descriptors(pid)), 0o600)
            fds = list(dirs.fds)

            def on_notify(script, npid, got):
                # CRIU 3.15+ says "status-ready" once its lazy-pages server listens; runh
                # writes the caller's \0 then (runc does the same, and passes the fd to
                # CRIU itself only for older CRIUs).
                if script == "status-ready" and status_fd >= 0:
                    os.write(status_fd, b"\0")

            w = swrk.Swrk(criu, fds)
            _mark("criu swrk started")
            try:
                w.call({"type": kind, "opts": req_opts}, on_notify)
                _mark("criu dumped")
            except swrk.CriuError as e:
                raise swrk.CriuError(swrk.explain(e, st.join(log_dir, log_name))) from None
            finally:
                code = w.close()
            # After a PRE_DUMP answer CRIU waits for the next request of an iterative
            # series; the hang-up ends it with a failure status that means nothing.
            if code != 0 and kind != swrk.PRE_DUMP:
                raise swrk.CriuError(swrk.explain(f"criu exited with status {code}", st.join(log_dir, log_name)))
            _mark("criu exited")
            ok = True
        finally:
            if not ok:
                dirs.undo()
            dirs.close()
    if not opts.leave_running and not opts.pre_dump:
        # CRIU killed the process tree once it was dumped; the container is gone.
        c.delete(force=True)
        _mark("container deleted")


def _freezer(c):
    cg = (c._state or {}).get("cgroup") or {}
    if cg.get("version") == 2:
        return cg.get("path")
    return (cg.get("paths") or {}).get("freezer")
