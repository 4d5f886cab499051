"""runh spec: write a default config.json (runc's layout) into the bundle."""

from runh.cli._table import opt

HELP = "create a new specification file"
DESCRIPTION = """Write a starter config.json for a bundle (run as root with a busybox rootfs
at ./rootfs it works as is). Refuses to overwrite an existing config.json."""
OPTIONS = (opt("--bundle", "-b", help="path to the root of the bundle directory"),
           opt("--rootless", kind="flag", help="generate a configuration for a rootless container"))
ARGS = ()


def run(g, o, args):
    import os

    from runh.errors import RunhError
    from runh.jsonio import dumps
    from runh.spec import CONFIG_FILE, default_spec

    bundle = o["bundle"] or "."
    if o["bundle"] and not os.path.isdir(bundle):
        raise RunhError(f"the bundle directory {bundle} does not exist")
    path = os.path.join(bundle, CONFIG_FILE)
    if os.path.lexists(path):
        raise RunhError(f"File {CONFIG_FILE} exists. Remove it first")
    data = dumps(default_spec(rootless=o["rootless"]), "\t")
    # O_EXCL: never overwrite a config.json that appeared meanwhile.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    return 0
