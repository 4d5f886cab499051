"""`criu swrk`: one CRIU process driven over its RPC socket.

Why the RPC and not `criu dump`/`criu restore` on the command line: restore needs things
only the RPC gives. CRIU stops at notifications (setup-namespaces, post-restore, ...) and
waits for our answer, so runh runs the prestart hooks and records the restored init's pid
in state.json before the container's processes resume; with `orphan_pts_master` it sends
the new pty master of a restored terminal over the socket (SCM_RIGHTS), which runh passes
on to --console-socket; `inherit_fd` (swrk only) hands the restored process runh's own
stdio pipes and the namespace files of a pod; `rst_sibling` makes the restored init
runh's child, not CRIU's. runc and crun drive CRIU the same way.

The socket is SOCK_SEQPACKET: one datagram per message, as CRIU expects.
"""

import posix as os

from runh.criu import proto
from runh.errors import NotSupported, RunhError

# criu_req_type
DUMP, RESTORE, PRE_DUMP, NOTIFY, FEATURE_CHECK, VERSION = 1, 2, 4, 6, 9, 10
# criu_cg_mode: --manage-cgroups-mode names (runc's) to numbers; "" is CRIU's own default (soft).
CG_MODES = {"ignore": 0, "soft": 3, "full": 4, "strict": 5, "": 6}
_NAMES = {DUMP: "dump", RESTORE: "restore", PRE_DUMP: "pre-dump"}
_BUF = 1 << 20  # a response is a few hundred bytes; CRIU's own limit is far below this


class CriuError(RunhError):
    """CRIU refused or failed a request (the message quotes its log)."""


def find(criu="criu"):
    """The criu program: --criu as a path, or looked up on PATH (and the sbin directories,
    which a non-login root PATH may lack). NotSupported names what is missing."""
    if "/" in criu:
        if os.access(criu, os.X_OK):
            return criu
        raise NotSupported(f"criu not found at {criu}: checkpoint and restore need CRIU")
    path = os.environ.get(b"PATH", b"/usr/local/bin:/usr/bin:/bin").decode(errors="replace")
    for d in path.split(":") + ["/usr/local/sbin", "/usr/sbin", "/sbin"]:
        p = f"{d or '.'}/{criu}"
        if os.access(p, os.X_OK):
            return p
    raise NotSupported(f"{criu} not found in $PATH: checkpoint and restore need CRIU "
                       "(Debian: apt-get install criu)")


class Swrk:
    """A `criu swrk` child. `fds` are extra fds it inherits at the same numbers (for
    inherit_fd, images_dir_fd, work_dir_fd); its stdio is ours (restore hands it on to
    the restored process through inherit_fd)."""

    def __init__(self, criu, fds=()):
        import socket
        import subprocess

        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen([criu, "swrk", str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(), *fds), close_fds=True)
        except OSError as e:
            self.sock.close()
            raise NotSupported(f"cannot run {criu}: {e.strerror}", e.errno or 0) from None
        finally:
            theirs.close()  # so that a CRIU that dies is EOF here, not a hang
        self.pid = self.proc.pid

    def send(self, msg):
        self.sock.send(proto.encode("criu_req", msg))

    def recv(self):
        """One response and the fds that came with it."""
        import socket

        data, fds, flags, _ = socket.recv_fds(self.sock, _BUF, 4)
        if flags & socket.MSG_TRUNC:
            raise CriuError("criu: response larger than expected")
        if not data:
            raise CriuError("criu exited without an answer (see its log)")
        return proto.decode("criu_resp", data), fds

    def call(self, req, on_notify=None):
        """Send `req`; answer every notification (on_notify(script, pid, fds) runs first,
        and an exception it raises fails the request: CRIU then rolls back); return the
        final response. A response with success false raises CriuError."""
        self.send(req)
        while True:
            resp, fds = self.recv()
            try:
                if not resp.get("success"):
                    raise CriuError(_failure(req, resp))
                if resp.get("type") != NOTIFY:
                    return resp
                note = resp.get("notify") or {}
                if on_notify is not None:
                    on_notify(note.get("script", ""), note.get("pid", 0), fds)
            finally:
                for fd in fds:
                    os.close(fd)
            self.send({"type": NOTIFY, "notify_success": True})

    def close(self):
        """Hang up and reap CRIU; its exit status."""
        try:
            self.sock.shutdown(1)  # SHUT_WR: CRIU sees EOF and exits
        except OSError:
            pass
        self.sock.close()
        return self.proc.wait()


def _failure(req, resp):
    what = _NAMES.get(req.get("type"), "request")
    msg = resp.get("cr_errmsg") or ""
    errno = resp.get("cr_errno") or 0
    if errno and not msg:
        msg = os.strerror(errno).lower()
    return f"criu {what} failed" + (f": {msg}" if msg else "")


def version(criu):
    """CRIU's version as (major, minor, sublevel), through a VERSION request."""
    w = Swrk(criu)
    try:
        v = (w.call({"type": VERSION}).get("version")) or {}
    finally:
        w.close()
    return v.get("major_number", 0), v.get("minor_number", 0), v.get("sublevel", 0)


def features(criu, wanted):
    """Which of `wanted` (criu_features names, e.g. "mem_track") CRIU and the kernel
    support: a FEATURE_CHECK request."""
    w = Swrk(criu)
    try:
        got = w.call({"type": FEATURE_CHECK, "features": {k: True for k in wanted}}).get("features") or {}
    finally:
        w.close()
    return {k: bool(got.get(k)) for k in wanted}


def _log(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").splitlines()
    except OSError:
        return []


def log_errors(lines, limit=3):
    """The last `limit` "Error" lines of a CRIU log, without their "(file:line)" place."""
    out = []
    for line in lines:
        if "Error" in line:
            # "(00.004) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"
            text = line.split("): ", 1)[1] if "): " in line else line
            out.append(text.strip())
    return out[-limit:]


def explain(err, log_path):
    """A one-line message for a failed request: CRIU's own words from its log, and what
    they mean when they say CRIU cannot run on this kernel at all (kerndat: the probe
    of the kernel that every CRIU command runs first, and `criu check` too)."""
    lines = _log(log_path)
    errors = log_errors(lines)
    if any("kerndat" in e for e in errors):
        ver = next((ln.split("Version: ", 1)[1].split()[0] for ln in lines[:5] if "Version: " in ln), "")
        first = next((e for e in errors if "kerndat" not in e), errors[-1])
        return (f"criu {ver} cannot run on this kernel ({os.uname().release}): {first} "
                f"(it is too old for this kernel: `criu check` fails too)").replace("criu  ", "criu ")
    msg = str(err)
    if errors:
        msg += ": " + "; ".join(errors)
    return msg
