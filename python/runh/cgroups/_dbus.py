"""A blocking D-Bus connection to a systemd manager, for the systemd cgroup driver.

The protocol is jeepney's (PyPI `jeepney`, pure Python): its SASL authenticator, message
serialisation and stream parser, which are sans-I/O; this module only moves their bytes
over one AF_UNIX socket and matches replies and signals. It is imported only with
--systemd-cgroup.

Which socket: systemd's own private socket, as runc (go-systemd) does for root. It speaks
D-Bus peer to peer with the manager, so no dbus-daemon is needed, no Hello is sent, and
the manager sends its signals (JobRemoved) to every private connection unasked, so no
AddMatch/Subscribe round trip either. The system manager's is /run/systemd/private
(root only); a user's manager (`systemd --user`) has $XDG_RUNTIME_DIR/systemd/private.

Cost on the create path (`python3.11 -I -S -X importtime`, the least of 12 runs on this
2-core host, less the interpreter's own 2.8 ms): `socket` and jeepney as a package
(`from jeepney.auth import ...` runs jeepney/__init__, which imports all of it: bus,
bus_messages, fds, wrappers, and with them os, re, selectors, warnings) took 13.2 ms and
49 modules; `_socket` and only jeepney.auth and jeepney.low_level (`_jeepney()`: the
package's __init__ is skipped) 10.3 ms and 37 modules. What is left is jeepney's own
need of `typing` (7 ms with re and contextlib) and `enum` (5 ms with functools). In the
emulated guest each module is a few 9p reads, so the module count weighs more there.
The import and the connection (connect, one AUTH EXTERNAL round trip, BEGIN) are made
by `prefetch()` in a thread while create loads the config and the core clones (the core
releases the GIL); the create path then pays one call, StartTransientUnit, and the wait
for its JobRemoved signal. Measured on this host against a dbus-daemon on a private
socket (a peer like systemd's): import + connect + AUTH 14-20 ms (with a guest running
beside it), then 0.1-0.5 ms per call. In the guest, against systemd 252:
StartTransientUnit answered in 13-15 ms and its job ended 35-40 ms later, while the
import took ~650 ms there (benches/results/systemd/guest-n5.txt). Only --systemd-cgroup
calls pay any of it.
"""
import posix

MANAGER = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
DEST = "org.freedesktop.systemd1"
SYSTEM_SOCKET = "/run/systemd/private"
# Seconds without an answer after which a call nudges systemd (see Connection._nudge).
NUDGE_AFTER = 0.5


def _jeepney():
    """jeepney.auth and jeepney.low_level, without running jeepney/__init__ (see the
    module doc: 12 modules and ~3 ms fewer). The package is entered in sys.modules as an
    empty module with jeepney's own search path, as the import system would make it if
    __init__ were empty; nothing else in runh imports jeepney."""
    import sys

    if "jeepney" not in sys.modules:
        spec = sys.modules["_frozen_importlib_external"].PathFinder.find_spec("jeepney")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("jeepney is not installed (runh's --systemd-cgroup needs it)")
        pkg = type(sys)("jeepney")
        pkg.__path__, pkg.__spec__, pkg.__file__ = list(spec.submodule_search_locations), spec, spec.origin
        sys.modules["jeepney"] = pkg
    from jeepney import auth, low_level

    return auth, low_level


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
    """One authenticated connection to a manager's private socket."""

    def __init__(self, path, uid=None, timeout=30.0):
        import _socket  # socket.py's wrapper class would add socket, selectors and enum

        auth, low_level = _jeepney()
        self._ll = low_level
        self.path = path
        self.timeout = timeout
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
            a = auth.Authenticator()
            if uid is not None and uid != posix.geteuid():
                # Inside a user namespace the peer sees our outside uid (SO_PEERCRED),
                # and EXTERNAL must name that uid, not the namespace's 0.
                a._to_send = b"\0AUTH EXTERNAL " + str(uid).encode().hex().encode() + b"\r\n"
            for data in a:
                self.sock.sendall(data)
                a.feed(self._read())
            self.sock.sendall(auth.BEGIN)
        except BaseException:
            self.sock.close()
            raise
        self.parser = low_level.Parser()
        self.serial = 0
        self.signals = []  # signals read while waiting for a reply

    def _read(self):
        b = self.sock.recv(65536)
        if not b:
            raise ConnectionResetError(104, f"{self.path}: connection closed by systemd")
        return b

    def _next(self):
        while True:
            m = self.parser.get_next_message()
            if m is not None:
                return m
            self.parser.add_data(self._read())

    def close(self):
        self.sock.close()

    def _send(self, member, sig, body, path, iface, flags=0):
        """A method call, as jeepney's wrappers.new_method_call builds it (that module
        would import re and typing's Union for its address checks)."""
        ll = self._ll
        F = ll.HeaderFields
        fields = {F.path: path, F.destination: DEST, F.interface: iface, F.member: member}
        if sig is not None:
            fields[F.signature] = sig
        msg = ll.Message(ll.Header(ll.Endianness.little, ll.MessageType.method_call, flags, 1, -1, -1, fields), body)
        self.serial += 1
        self.sock.sendall(msg.serialise(serial=self.serial))
        return self.serial

    def call(self, member, sig=None, body=(), path=MANAGER, iface=MANAGER_IFACE):
        """Call a method and return the reply's body (a tuple); DBusError for an error reply;
        TimeoutError after the connection's timeout."""
        import time

        ll = self._ll
        serial = self._send(member, sig, body, path, iface)
        deadline = time.monotonic() + self.timeout
        wait = NUDGE_AFTER
        try:
            while True:
                self.sock.settimeout(max(0.001, min(wait, deadline - time.monotonic())))
                try:
                    m = self._next()
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    self._nudge()
                    continue
                fields = m.header.fields
                if fields.get(ll.HeaderFields.reply_serial) == serial:
                    if m.header.message_type == ll.MessageType.error:
                        text = m.body[0] if m.body and isinstance(m.body[0], str) else ""
                        raise DBusError(fields.get(ll.HeaderFields.error_name), text)
                    return m.body
                if m.header.message_type == ll.MessageType.signal:
                    self.signals.append(m)
        finally:
            self.sock.settimeout(self.timeout)

    def _nudge(self):
        """Peer.Ping, no reply wanted. systemd 252's sd-bus can leave a message that it
        read in the same recv as our BEGIN in its buffer, unparsed, until more bytes
        arrive (seen in the guest: a StopUnit sent while systemd was busy got no answer
        in 30 s); any later write makes it parse the buffer. So a call with no answer
        after NUDGE_AFTER seconds sends this, and again each time it waits that long."""
        self._send("Ping", None, (), MANAGER, "org.freedesktop.DBus.Peer",
                   flags=self._ll.MessageFlag.no_reply_expected)

    def get(self, iface, prop, path=MANAGER):
        """A property's value (the variant's value)."""
        return self.call("Get", "ss", (iface, prop), path=path, iface=PROPS_IFACE)[0][1]

    def wait_job(self, job, timeout):
        """The result ("done", "failed", "canceled", "timeout", "dependency", "skipped") of
        the job at object path `job`, from its JobRemoved signal; TimeoutError after
        `timeout` seconds."""
        import time

        ll = self._ll
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.signals:
                    m = self.signals.pop(0)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError()
                    self.sock.settimeout(left)
                    m = self._next()
                if (m.header.message_type == ll.MessageType.signal
                        and m.header.fields.get(ll.HeaderFields.member) == "JobRemoved"
                        and m.body[1] == job):
                    return m.body[3]
        finally:
            self.sock.settimeout(self.timeout)
