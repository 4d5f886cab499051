"""runh create: create a container; init is set up and parked until `runh start`."""

from runh.cli._table import (BUNDLE, CONSOLE_SOCKET, NO_NEW_KEYRING, NO_PIVOT, PID_FILE,
                             PIDFD_SOCKET, PRESERVE_FDS, opt)

HELP = "create a container"
DESCRIPTION = """Create a container: set up its namespaces, mounts and process environment, and
leave its init waiting for `runh start`. The bundle is a directory with a config.json and a
root filesystem. <container-id> must be unique under --root."""
OPTIONS = (BUNDLE, CONSOLE_SOCKET, PIDFD_SOCKET, PID_FILE, NO_PIVOT, NO_NEW_KEYRING, PRESERVE_FDS,
           # go-runc adds --detach when CreateOpts.Detach is set; create always detaches.
           opt("--detach", "-d", kind="flag", help="ignored: create always detaches"))
ARGS = (("container-id", True),)


def run(g, o, args):
    from runh.container import Container

    Container.create(args[0], bundle=o["bundle"], root=g.root, pid_file=o["pid_file"],
                     console_socket=o["console_socket"], pidfd_socket=o["pidfd_socket"],
                     no_pivot=o["no_pivot"],
                     no_new_keyring=o["no_new_keyring"], preserve_fds=o["preserve_fds"],
                     detach=True, systemd_cgroup=g.systemd_cgroup)
    return 0
