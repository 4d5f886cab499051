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

Cost on the create path: importing socket and jeepney's auth, low_level and wrappers
(enum, typing, re and socket come with them; nothing else on the create path imports
those) took 14 ms on this 2-core machine at load average 4 (`python3.11 -I -S -X
importtime`, the least of 12), when the interpreter's own `encodings` import took twice
its quiet time, so about 7 ms on a quiet machine. A create then makes one connection (one
auth round trip) and one call, StartTransientUnit, and waits for its JobRemoved signal;
in the emulated guest a call's answer came in 20-40 ms. Only --systemd-cgroup calls pay
any of it.
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
    """One authenticated connection to a manager's private socket."""

    def __init__(self, path, uid=None, timeout=30.0):
        import socket

        from jeepney.auth import BEGIN, Authenticator
        from jeepney.low_level import Parser

        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
            auth = Authenticator()
            if uid is not None and uid != posix.geteuid():
                # Inside a user namespace the peer sees our outside uid (SO_PEERCRED),
                # and EXTERNAL must name that uid, not the namespace's 0.
                auth._to_send = b"\0AUTH EXTERNAL " + str(uid).encode().hex().encode() + b"\r\n"
            for data in auth:
                self.sock.sendall(data)
                auth.feed(self._read())
            self.sock.sendall(BEGIN)
        except BaseException:
            self.sock.close()
            raise
        self.parser = Parser()
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

    def call(self, member, sig=None, body=(), path=MANAGER, iface=MANAGER_IFACE):
        """Call a method and return the reply's body (a tuple); DBusError for an error reply;
        TimeoutError after the connection's timeout."""
        import time

        from jeepney.low_level import HeaderFields, MessageType
        from jeepney.wrappers import DBusAddress, new_method_call

        msg = new_method_call(DBusAddress(path, bus_name=DEST, interface=iface), member, sig, body)
        self.serial += 1
        serial = self.serial
        self.sock.sendall(msg.serialise(serial=serial))
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
                if fields.get(HeaderFields.reply_serial) == serial:
                    if m.header.message_type == MessageType.error:
                        text = m.body[0] if m.body and isinstance(m.body[0], str) else ""
                        raise DBusError(fields.get(HeaderFields.error_name), text)
                    return m.body
                if m.header.message_type == MessageType.signal:
                    self.signals.append(m)
        finally:
            self.sock.settimeout(self.timeout)

    def _nudge(self):
        """Peer.Ping, no reply wanted. systemd 252's sd-bus can leave a message that it
        read in the same recv as our BEGIN in its buffer, unparsed, until more bytes
        arrive (seen in the guest: a StopUnit sent while systemd was busy got no answer
        in 30 s); any later write makes it parse the buffer. So a call with no answer
        after NUDGE_AFTER seconds sends this, and again each time it waits that long."""
        from jeepney.low_level import MessageFlag
        from jeepney.wrappers import DBusAddress, new_method_call

        ping = new_method_call(DBusAddress(MANAGER, bus_name=DEST, interface="org.freedesktop.DBus.Peer"), "Ping")
        ping.header.flags = MessageFlag.no_reply_expected
        self.serial += 1
        self.sock.sendall(ping.serialise(serial=self.serial))

    def get(self, iface, prop, path=MANAGER):
        """A property's value (the variant's value)."""
        return self.call("Get", "ss", (iface, prop), path=path, iface=PROPS_IFACE)[0][1]

    def wait_job(self, job, timeout):
        """The result ("done", "failed", "canceled", "timeout", "dependency", "skipped") of
        the job at object path `job`, from its JobRemoved signal; TimeoutError after
        `timeout` seconds."""
        import time

        from jeepney.low_level import HeaderFields, MessageType

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
                if (m.header.message_type == MessageType.signal
                        and m.header.fields.get(HeaderFields.member) == "JobRemoved"
                        and m.body[1] == job):
                    return m.body[3]
        finally:
            self.sock.settimeout(self.timeout)
