"""A cgroup for a container that an unprivileged user creates (rootless), as runc's
rootless mode gives one: only in a delegated tree. Imported only by such creates."""

from runh.errors import ConfigError, SyscallError


def delegated(cg, linux):
    """An unprivileged caller gets a cgroup only where a delegated tree lets it make one
    (as runc's rootless mode): otherwise none, and limits it asked for are an error."""
    try:
        cg.create()
        cg.remove()
        return cg
    except (SyscallError, OSError) as e:
        if getattr(e, "errno", 0) not in (1, 13, 30):  # EPERM, EACCES, EROFS
            raise
    res = {k: v for k, v in (linux.get("resources") or {}).items() if v and k != "devices"}
    if res:
        raise ConfigError("rootless container: linux.resources (" + ", ".join(sorted(res)) +
                          ") needs a cgroup, and no delegated cgroup is writable by this user")
    return None
