"""runh restore: a container made from a checkpoint's images (runh.criu.restore). Detached,
it returns once the container runs; in the foreground it waits for the restored process,
forwards signals to it, exits with its status and deletes the container, as `run` does."""

from runh.cli._table import (BUNDLE, CONSOLE_SOCKET, CRIU_COMMON, IMAGE_PATH, NO_PIVOT, PID_FILE,
                             WORK_PATH, opt)

HELP = "restore a container from a previous checkpoint"
DESCRIPTION = """Restore <container-id> from images that `runh checkpoint` saved, with the
bundle's config.json (its cgroup, mounts and namespaces), through CRIU (`criu swrk`)."""
OPTIONS = (
    CONSOLE_SOCKET, IMAGE_PATH, WORK_PATH, BUNDLE,
    opt("--detach", "-d", kind="flag", help="detach from the container's process"),
    PID_FILE,
    opt("--no-subreaper", kind="flag", help="disable the use of the subreaper used to reap reparented processes"),
    NO_PIVOT,
) + CRIU_COMMON
ARGS = (("container-id", True),)

_CRIU_FLAGS = ("image_path", "work_path", "tcp_established", "ext_unix_sk", "shell_job", "file_locks",
               "manage_cgroups_mode", "empty_ns", "auto_dedup", "lazy_pages")


def run(g, o, args):
    from runh.criu.plan import Options
    from runh.criu.restore import restore

    # --no-pivot: CRIU makes the restored root itself (pivot_root into the bind of the
    # rootfs), so there is nothing for it to change; accepted as runc accepts it.
    opts = Options(**{k: o[k] for k in _CRIU_FLAGS})
    if not o["detach"] and not o["no_subreaper"]:
        _subreaper()  # orphans of the restored tree are reaped here, not by init
    c = restore(args[0], bundle=o["bundle"], root=g.root, opts=opts, criu=g.criu,
                pid_file=o["pid_file"], console_socket=o["console_socket"],
                systemd_cgroup=g.systemd_cgroup)
    if o["detach"]:
        return 0
    from runh import tty
    from runh.cli.run import _FORWARD, _cleanup

    fw = tty.Forwarder(_FORWARD)
    fw.set_pid(c.pid)
    status = tty.wait(c.pid)
    _cleanup(c)
    return status


def _subreaper():
    import ctypes

    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
