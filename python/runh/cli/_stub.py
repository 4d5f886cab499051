"""Shared body of the commands runh does not implement yet: a clear error, exit 1."""

from runh.errors import NotSupported


def not_implemented(name):
    def run(g, opts, args):
        raise NotSupported(f"{name} is not implemented in runh yet")

    return run
