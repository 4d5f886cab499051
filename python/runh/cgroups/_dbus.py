"""A blocking D-Bus connection to a systemd manager, for the systemd cgroup driver.

The protocol is libsystemd's sd-bus (systemd's own client library, libsystemd.so.0, on
every host where systemd runs), loaded by the Rust core with dlopen at the first call
(`runh._core.SdBus`, rust/src/cgroups/sdbus.rs): it authenticates, builds and parses the
messages; this module matches replies and signals, and nudges systemd. It is imported,
and the library loaded, only with --systemd-cgroup.

Which socket: systemd's own private socket, as runc (go-systemd) does for root. It speaks
D-Bus peer to peer with the manager, so no dbus-daemon is needed, no Hello is sent, and
the manager sends its signals (JobRemoved) to every private connection unasked, so no
AddMatch/Subscribe round trip either. The system manager's is /run/systemd/private
(root only); a user's manager (`systemd --user`) has $XDG_RUNTIME_DIR/systemd/private.

Cost on the create path. Before, the client was jeepney (pure Python): importing
jeepney.auth and jeepney.low_level (37 modules: typing, enum, re and its own) and
connecting took 11.5 ms on this 2-core host (the least of 12 fresh processes) and ~650 ms
in the emulated guest, where each module is a few 9p reads; module execution holds the
GIL, so the prefetch thread could not hide it from create's own Python work. Now
importing this module, loading libsystemd and its libraries, resolving the functions,
connecting and the AUTH EXTERNAL round trip take 1.1 ms here (least of 12, same
measurement against a private dbus-daemon; one module, and the core releases the GIL
throughout). In the guest, the same measurement against systemd 252, 8 fresh processes
each, interleaved: sd-bus 67-580 ms (median 240; dlopen of libsystemd and its 6
libraries over 9p, BIND_NOW), jeepney 474-3312 ms (median 1143). The connection is made
by `systemd.prefetch()` in a thread while create loads the config, and now that it holds
no GIL it is hidden there: create waited 9-14 ms for it after clone3 (jeepney: 0.19-0.45
s). The create path then pays one call, StartTransientUnit (answered in 9-18 ms in the
guest), and the wait for its JobRemoved signal (20-36 ms more there;
benches/results/systemd/). Only --systemd-cgroup calls pay any of it.
"""
import posix

MANAGER = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
DEST = "org.freedesktop.systemd1"
SYSTEM_SOCKET = "/run/systemd/private"
# Seconds without an answer after which a call nudges systemd (see Connection._nudge).
NUDGE_AFTER = 0.5


class DBusError(Exception):
    """An error reply: name (e.g. org.freedesktop.systemd1.NoSuchUnit) and message."""

    def __init__(self, name, message):
        super().__init__(f"{message} ({name})" if message else name)
        self.name = name or ""
        self.message = message


def user_socket(uid):
    """The private socket of uid's `systemd --user`."""
    xdg = posix.environ.get(b"XDG_RUNTIME_DIR", b"").decode()
    return (xdg or f"/run/user/{uid}").rstrip("/") + "/systemd/private"


class Connection:
    """One authenticated connection to a manager's private socket (with hello=True, to a
    bus daemon's socket: the host's tests)."""

    def __init__(self, path, uid=None, timeout=30.0, hello=False):
        # uid: whose manager (for the error messages); sd-bus's EXTERNAL sends no uid,
        # the peer takes it from SO_PEERCRED, which is right in a user namespace too.
        from runh._core import SdBus

        self.path = path
        self.timeout = timeout
        self.bus = SdBus(path, timeout, hello)
        self.signals = []  # signals read while waiting for a reply

    def close(self):
        self.bus.close()

    def _send(self, member, sig, body, path, iface, dest=DEST, reply=True):
        return self.bus.send(dest, path, iface, member, sig, tuple(body), reply)

    def call(self, member, sig=None, body=(), path=MANAGER, iface=MANAGER_IFACE, dest=DEST):
        """Call a method and return the reply's body (a tuple); DBusError for an error reply;
        TimeoutError after the connection's timeout."""
        import time

        serial = self._send(member, sig, body, path, iface, dest)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.path}: no answer to {member} in {self.timeout:.0f} s")
            m = self.bus.next(min(NUDGE_AFTER, left))
            if m is None:
                self._nudge()
                continue
            kind, reply_to, _, name, text, body = m
            if kind == "signal":
                self.signals.append(m)
            elif kind != "call" and reply_to == serial:
                if kind == "error":
                    raise DBusError(name, text or "")
                return body

    def _nudge(self):
        """Peer.Ping, no reply wanted. systemd 252's sd-bus can leave a message that it
        read in the same recv as our BEGIN in its buffer, unparsed, until more bytes
        arrive (seen in the guest: a StopUnit sent while systemd was busy got no answer
        in 30 s); any later write makes it parse the buffer. So a call with no answer
        after NUDGE_AFTER seconds sends this, and again each time it waits that long."""
        self._send("Ping", None, (), MANAGER, "org.freedesktop.DBus.Peer", reply=False)

    def get(self, iface, prop, path=MANAGER):
        """A property's value (the variant's value)."""
        return self.call("Get", "ss", (iface, prop), path=path, iface=PROPS_IFACE)[0][1]

    def wait_job(self, job, timeout):
        """The result ("done", "failed", "canceled", "timeout", "dependency", "skipped") of
        the job at object path `job`, from its JobRemoved signal; TimeoutError after
        `timeout` seconds."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            if self.signals:
                m = self.signals.pop(0)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError()
                m = self.bus.next(left)
                if m is None:
                    raise TimeoutError()
            kind, _, member, _, _, body = m
            if kind == "signal" and member == "JobRemoved" and body[1] == job:
                return body[3]
