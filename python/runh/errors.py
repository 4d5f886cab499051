"""One exception hierarchy for runh.

Every failure that reaches the CLI is a RunhError; its str() is the one-line message that
callers see (and that containerd, CRI-O and podman match on, see the `*_MSG` texts), and
`errno` carries the OS error where there is one. The Rust core raises these same classes
(runh._core maps its error kinds onto them), so Python callers catch one hierarchy.
"""

# Texts that callers match on. containerd's shim treats a delete error containing
# "does not exist" as success; go-runc and conmon look for the others.
DOES_NOT_EXIST = "does not exist"
NOT_RUNNING = "container not running"
NO_SUCH_PROCESS = "no such process"


class RunhError(Exception):
    """Base of every runh error. `errno` is 0 when no OS error is involved."""

    exit_code = 1

    def __init__(self, message: str, errno: int = 0):
        super().__init__(message)
        self.errno = errno


class ConfigError(RunhError):
    """config.json (or a process.json) is malformed or contradictory; names the JSON path."""


class UsageError(RunhError):
    """A bad flag or argument on the command line."""


class ContainerNotFound(RunhError):
    """No container with this id under --root."""

    def __init__(self, container_id: str):
        super().__init__(f"container {container_id} {DOES_NOT_EXIST}")
        self.container_id = container_id


class ContainerExists(RunhError):
    """create/run with an id that is already taken."""

    def __init__(self, container_id: str):
        super().__init__(f"container with id exists: {container_id}")
        self.container_id = container_id


class ContainerNotRunning(RunhError):
    """The operation needs a live container process."""

    def __init__(self, container_id: str, detail: str = ""):
        msg = NOT_RUNNING if not detail else f"{NOT_RUNNING}: {detail}"
        super().__init__(msg)
        self.container_id = container_id


class InvalidState(RunhError):
    """The container is in the wrong status for the operation (e.g. start of a running one)."""


class SyscallError(RunhError):
    """A system call in the Rust core failed; the message says what was being done."""


class ExecError(RunhError):
    """The container's process could not be executed (missing binary, permission)."""

    exit_code = 127


class SyncError(RunhError):
    """The container's init broke the sync protocol or died during setup."""


class NotSupported(RunhError):
    """A feature runh does not implement yet (e.g. the systemd cgroup driver)."""
