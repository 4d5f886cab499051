"""The systemd cgroup driver on the host (tests/test_systemd_guest.py runs it against a real
systemd in the guest): runc's naming of units and slices, the unit properties made from
linux.resources and from org.systemd.property.* annotations (GVariant text), the
one-line refusal on this hybrid host without systemd (nothing left behind), and
podman's habit of passing --systemd-cgroup to every call of a cgroupfs container."""

import json
import os

import pytest

from runh.cgroups import _gvariant, systemd
from runh.errors import ConfigError

MiB = 1 << 20
INF = (1 << 64) - 1


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("path,cid,want", [
    ("", "abc", ("system.slice", "runh-abc.scope")),
    ("system.slice:docker:1234", "x", ("system.slice", "docker-1234.scope")),
    ("machine.slice:libpod:f00", "x", ("machine.slice", "libpod-f00.scope")),
    (":crio:x1", "x", ("system.slice", "crio-x1.scope")),
    ("kubepods-besteffort-pod1.slice:cri-containerd:c9", "x",
     ("kubepods-besteffort-pod1.slice", "cri-containerd-c9.scope")),
    ("a.slice:ignored:a-b.slice", "x", ("a.slice", "a-b.slice")),
    ("-.slice:p:n", "x", ("-.slice", "p-n.scope")),
])
def test_unit_names(path, cid, want):
    assert systemd.unit_names(path, cid) == want


def test_unit_names_user_manager_default_slice():
    assert systemd.unit_names("", "abc", user=True) == ("user.slice", "runh-abc.scope")


@pytest.mark.parametrize("slice_name,want", [
    ("a.slice", "/a.slice"),
    ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
    ("kubepods-burstable-pod9.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod9.slice"),
    ("-.slice", "/"),
])
def test_expand_slice(slice_name, want):
    assert systemd.expand_slice(slice_name) == want


@pytest.mark.parametrize("path,why", [
    ("system.slice:only-two", "2 parts, not 3"),
    ("/sys/fs/cgroup/x", "1 part, not 3"),
    ("a:b:c:d", "4 parts, not 3"),
    ("notaslice:p:n", "invalid slice name 'notaslice'"),
    ("a--b.slice:p:n", "invalid slice name 'a--b.slice'"),
    ("-a.slice:p:n", "invalid slice name '-a.slice'"),
    ("a-.slice:p:n", "invalid slice name 'a-.slice'"),
    (".slice:p:n", "invalid slice name '.slice'"),
    ("a/b.slice:p:n", "invalid slice name 'a/b.slice'"),
    ("a.slice:p:", "the name is empty"),
    # The unit name becomes a path under /sys/fs/cgroup: nothing that could leave it.
    ("a.slice:..:..", "invalid unit name"),
    ("a.slice:p:../../x", "invalid unit name"),
    ("a.slice:p/q:n", "invalid unit name"),
    ("a.slice:p:x\n", "invalid unit name"),
    ("a.slice:p:-.slice", "invalid unit name"),
    ("a.slice:p:" + "n" * 260, "invalid unit name"),
])
def test_bad_paths_are_one_line_errors_naming_the_form(path, why):
    with pytest.raises(ConfigError) as e:
        systemd.unit_names(path, "x")
    msg = str(e.value)
    assert why in msg and '"slice:prefix:name"' in msg and "\n" not in msg.replace(repr(path), "")


# ---------------------------------------------------------------- properties

def props(res):
    return systemd.unit_properties(res)


def test_properties_of_resources():
    p = props({"memory": {"limit": 64 * MiB, "reservation": 16 * MiB, "swap": 96 * MiB},
               "cpu": {"shares": 1024, "quota": 20000, "period": 100000, "cpus": "0-1,9", "mems": "0"},
               "pids": {"limit": 40}, "blockIO": {"weight": 500}})
    assert p == [("MemoryMax", ("t", 64 * MiB)), ("MemoryLow", ("t", 16 * MiB)),
                 ("MemorySwapMax", ("t", 32 * MiB)), ("CPUWeight", ("t", 39)),
                 ("CPUQuotaPeriodUSec", ("t", 100000)), ("CPUQuotaPerSecUSec", ("t", 200000)),
                 ("AllowedCPUs", ("ay", b"\x03\x02")), ("AllowedMemoryNodes", ("ay", b"\x01")),
                 ("TasksMax", ("t", 40)), ("IOWeight", ("t", 4950))]


def test_properties_unlimited_and_unset():
    assert props({}) == [] and props(None) == []
    assert props({"memory": {"limit": -1}, "pids": {"limit": -1}}) == [
        ("MemoryMax", ("t", INF)), ("MemorySwapMax", ("t", INF)), ("TasksMax", ("t", INF))]
    # A quota without a period: the kernel's default period; a period alone: no quota.
    assert props({"cpu": {"quota": 50000}}) == [("CPUQuotaPerSecUSec", ("t", 500000))]
    assert props({"cpu": {"period": 50000}}) == [("CPUQuotaPeriodUSec", ("t", 50000)),
                                                 ("CPUQuotaPerSecUSec", ("t", INF))]


def test_cpu_quota_rounds_up_to_whole_percent_as_runc():
    # 33333/100000 is 333330 us per second; systemd keeps whole percent: 340 ms.
    assert props({"cpu": {"quota": 33333, "period": 100000}})[1] == ("CPUQuotaPerSecUSec", ("t", 340000))


def test_properties_of_unified():
    p = props({"unified": {"memory.high": "40000000", "memory.min": "max", "cpu.max": "max 50000",
                           "cpu.weight": "77", "pids.max": "9", "cpuset.cpus": "2",
                           "io.max": "8:0 rbps=1"}})
    assert p == [("MemoryHigh", ("t", 40000000)), ("MemoryMin", ("t", INF)),
                 ("CPUQuotaPeriodUSec", ("t", 50000)), ("CPUQuotaPerSecUSec", ("t", INF)),
                 ("CPUWeight", ("t", 77)), ("TasksMax", ("t", 9)), ("AllowedCPUs", ("ay", b"\x04"))]


@pytest.mark.parametrize("res,field", [
    ({"cpu": {"cpus": "1-0"}}, "linux.resources.cpu.cpus"),
    ({"cpu": {"mems": "x"}}, "linux.resources.cpu.mems"),
    ({"unified": {"memory.high": "lots"}}, "linux.resources.unified['memory.high']"),
    ({"unified": {"cpu.max": "1 2 3"}}, "linux.resources.unified['cpu.max']"),
    ({"memory": {"swap": 10}}, "linux.resources.memory.swap"),
])
def test_bad_resources_name_the_field(res, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        props(res)


def test_annotation_properties():
    p = systemd.annotation_properties({
        "org.systemd.property.TimeoutStopSec": "uint64 7",
        "org.systemd.property.CollectMode": "'inactive-or-failed'",
        "org.systemd.property.RuntimeMaxSec": "2.5",
        "org.systemd.property.AllowedCPUs": "@ay [1]",
        "org.systemd.property.IPAddressDeny": "@a(iayu) []",
        "io.kubernetes.other": "ignored"})
    assert p == [("TimeoutStopUSec", ("t", 7000000)), ("CollectMode", ("s", "inactive-or-failed")),
                 ("RuntimeMaxUSec", ("t", 2500000)), ("AllowedCPUs", ("ay", [1])),
                 ("IPAddressDeny", ("a(iayu)", []))]


@pytest.mark.parametrize("name,value,why", [
    ("Ab", "1", "3 or more letters"),
    ("Time0ut", "1", "3 or more letters"),
    ("TimeoutStopSec", "'soon'", "a number of seconds"),
    ("CollectMode", "inactive", "bad number"),
    ("Foo", "[]", "empty array needs a type"),
    ("Foo", "{1: 2}", "unexpected"),
])
def test_bad_annotations_name_the_key(name, value, why):
    with pytest.raises(ConfigError) as e:
        systemd.annotation_properties({f"org.systemd.property.{name}": value})
    assert f"org.systemd.property.{name}" in str(e.value) and why in str(e.value)


@pytest.mark.parametrize("text,want", [
    ("true", ("b", True)), ("false", ("b", False)), ("42", ("i", 42)), ("-3", ("i", -3)),
    ("0x10", ("i", 16)), ("1.5", ("d", 1.5)), ("1e3", ("d", 1000.0)),
    ("uint64 18446744073709551615", ("t", INF)), ("byte 255", ("y", 255)), ("int16 -5", ("n", -5)),
    ("'it\\'s'", ("s", "it's")), ('"a\\nb"', ("s", "a\nb")), ("'\\u00e9'", ("s", "\u00e9")),
    ("objectpath '/a'", ("o", "/a")), ("[1, 2]", ("ai", [1, 2])), ("@at [1]", ("at", [1])),
    ("['a', 'b']", ("as", ["a", "b"])), ("(1, 'x', true)", ("(isb)", (1, "x", True))),
    ("@a(ss) [('a', 'b')]", ("a(ss)", [("a", "b")])), ("[[1], [2, 3]]", ("aai", [[1], [2, 3]])),
])
def test_gvariant_text(text, want):
    assert _gvariant.parse(text) == want


@pytest.mark.parametrize("text", ["uint64 -1", "byte 256", "int32 2147483648", "[1, 'a']", "'abc",
                                  "[1", "1 2", "@q 'x'", "nope", "{1: 2}", "@as [1]", ""])
def test_gvariant_text_errors(text):
    with pytest.raises(_gvariant.GVariantError):
        _gvariant.parse(text)


# ---------------------------------------------------------------- on this host

def _state_json(root, cid):
    with open(os.path.join(root, cid, "state.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_refused_on_this_host_in_one_line_leaving_nothing(runh, ctx, make_bundle, log_format):
    """This host is hybrid and has no systemd as PID 1: create, and run, fail with one line
    (a JSON log line with --log-format json), exit 1, and leave no state, cgroup or
    process (the leftovers check)."""
    b = make_bundle(args=["true"],
                    edit=lambda c: c["linux"].__setitem__("cgroupsPath", f"system.slice:rt:{ctx.token}"))
    log = ctx.path("log.json")
    for cmd in ("create", "run"):
        r = runh("--log", log, "--log-format", log_format, "--systemd-cgroup", cmd, "--bundle", b,
                 ctx.new_id())
        assert r.returncode == 1, r.stderr
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1 and "--systemd-cgroup" in err and "cgroup v2" in err, err
        assert os.listdir(runh.root) == []
    with open(log) as f:
        lines = f.read().splitlines()
    if log_format == "json":
        entry = json.loads(lines[-1])
        assert entry["level"] == "error" and "--systemd-cgroup" in entry["msg"]


def test_bad_path_refused_before_anything(runh, ctx, make_bundle):
    b = make_bundle(args=["true"], edit=lambda c: c["linux"].__setitem__("cgroupsPath", "bad:form"))
    r = runh("--systemd-cgroup", "create", "--bundle", b, ctx.new_id())
    assert r.returncode == 1 and os.listdir(runh.root) == []
    # On this host the mode is refused first; the form itself is checked by the tests above.
    assert len(r.stderr.strip().splitlines()) == 1


def test_podman_style_flag_on_a_cgroupfs_container(runh, ctx, make_bundle):
    """podman passes --systemd-cgroup to every call once it manages cgroups with systemd;
    a container made without it (cgroupfs) still starts, execs, is listed, killed and
    deleted with the flag (the native launcher's calls and Python's alike)."""
    cid = ctx.new_id()
    b = make_bundle(args=["sleep", "100"],
                    edit=lambda c: c["linux"].__setitem__("cgroupsPath", f"/runh-test-{ctx.token}"))
    assert runh("create", "--bundle", b, cid).returncode == 0
    sd = ("--systemd-cgroup",)
    try:
        assert runh(*sd, "start", cid).returncode == 0
        st = json.loads(runh(*sd, "state", cid).stdout)
        assert st["status"] == "running"
        r = runh(*sd, "exec", cid, "echo", "in")
        assert r.returncode == 0 and r.stdout == "in\n"
        assert json.loads(runh(*sd, "ps", "--format", "json", cid).stdout) == [st["pid"]]
        assert runh(*sd, "pause", cid).returncode == 0
        assert runh(*sd, "resume", cid).returncode == 0
        assert "systemd" not in _state_json(runh.root, cid)["cgroup"]
        assert runh(*sd, "kill", cid, "KILL").returncode == 0
    finally:
        r = runh(*sd, "delete", "--force", cid)
    assert r.returncode == 0 and os.listdir(runh.root) == []


class _Bus:
    """A stand-in for runh.cgroups._dbus.Connection: records the calls, and knows one unit
    (`units`: name -> Description)."""

    def __init__(self, units=None):
        self.calls, self.units = [], units or {}

    def call(self, member, sig=None, body=(), **kw):
        from runh.cgroups._dbus import DBusError

        self.calls.append(member)
        if member == "GetUnit":
            if body[0] not in self.units:
                raise DBusError("org.freedesktop.systemd1.NoSuchUnit", "no such unit")
            return ("/org/freedesktop/systemd1/unit/" + body[0],)
        return ("/job/1",)

    def get(self, iface, prop, path=None):
        self.calls.append("Get " + prop)
        return self.units[path.rpartition("/")[2]]

    def wait_job(self, job, timeout):
        return "done"

    def close(self):
        pass


def _removals(monkeypatch):
    from runh.cgroups import _fs

    removed = []
    monkeypatch.setattr(_fs, "remove", lambda paths, *a: removed.extend(paths))
    monkeypatch.setattr(_fs, "prune", lambda paths: removed.extend(paths))
    return removed


def test_a_unit_runh_did_not_start_is_left_alone(monkeypatch):
    """A config can name an existing unit: "-.slice:x:system.slice" has the path of
    system.slice itself. If the start fails (UnitExists) or runh is killed, the clean-up
    must not stop or reset it, signal its cgroup as a whole, or rmdir anything: it does
    not carry this container's Description. Only a unit runh started is stopped and
    removed."""
    removed = _removals(monkeypatch)
    d = "/sys/fs/cgroup/runh-test-absent/system.slice"
    m = systemd.SystemdManager(d, "system.slice", "-.slice", description="runh container c1 0123")
    m._conn = bus = _Bus({"system.slice": "System Slice"})
    assert not m.owns_all() and m.kill_all(9) is False
    m.remove()
    assert bus.calls == ["GetUnit", "Get Description"] and removed == []
    m = systemd.SystemdManager(d, "runh-x.scope", "system.slice", started=True)
    m._conn = bus = _Bus()
    assert m.owns_all()
    m.remove()
    assert bus.calls == ["StopUnit", "ResetFailedUnit"] and removed == [d]


@pytest.mark.parametrize("units,ours", [
    ({}, False),  # killed before StartTransientUnit, or the scope emptied and went away
    ({"runh-c1.scope": "runh container c1 0123"}, True),  # killed before "started" was recorded
    ({"runh-c1.scope": "runh container c1 4567"}, False),  # another create's unit of that name
])
def test_a_create_killed_before_its_unit_was_recorded_as_started(monkeypatch, units, ours):
    """The record names the unit and its Description before StartTransientUnit is sent; a
    runh SIGKILLed after the call but before it recorded "started" leaves a unit that
    `delete --force` recognises by that Description, stops and clears, and a unit of the
    same name that another create made is left alone. Nothing is asked of systemd until
    the delete needs it."""
    removed = _removals(monkeypatch)
    d = "/sys/fs/cgroup/runh-test-absent/system.slice/runh-c1.scope"
    saved = {"version": 2, "path": d, "owned": [],
             "systemd": {"unit": "runh-c1.scope", "slice": "system.slice", "uid": 0, "started": False,
                         "description": "runh container c1 0123"}}
    from runh.cgroups import manager_from_state

    m = manager_from_state(saved)
    m._conn = bus = _Bus(units)
    assert bus.calls == []
    assert m.owns_all() is ours
    m.remove()
    look = ["GetUnit"] + (["Get Description"] if units else [])
    assert bus.calls == look + (["StopUnit", "ResetFailedUnit"] if ours else [])
    assert removed == ([d] if ours else [])


def test_the_record_names_the_unit_before_it_is_started(monkeypatch):
    """to_state() before create(): unit, slice and Description, not started, nothing
    owned; after create(pid): started, the unit's directory owned; StartTransientUnit
    carries the Description last (after the annotations' properties) and the pid."""
    m = systemd.SystemdManager("/sys/fs/cgroup/system.slice/runh-c1.scope", "runh-c1.scope", "system.slice",
                               properties=[("Description", ("s", "from an annotation"))],
                               description="runh container c1 0123")
    m.claim()
    before = m.to_state()
    assert before["owned"] == [] and before["systemd"] == {
        "unit": "runh-c1.scope", "slice": "system.slice", "uid": 0, "started": False,
        "description": "runh container c1 0123"}
    sent = []

    class Bus(_Bus):
        def call(self, member, sig=None, body=(), **kw):
            sent.append(body)
            return super().call(member, sig, body)

    m._conn = Bus()
    m.create(4242)
    props = dict(sent[0][2])
    assert sent[0][0] == "runh-c1.scope" and props["PIDs"] == ("au", [4242])
    assert [p for p in sent[0][2] if p[0] == "Description"][-1] == ("Description", ("s", "runh container c1 0123"))
    after = m.to_state()
    assert after["owned"] == [m.path] and after["systemd"]["started"] is True


# ---------------------------------------------------------------- the D-Bus client (sd-bus)

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def bus_path(tmp_path):
    """A private dbus-daemon on a socket of its own (systemd's private socket speaks the
    same protocol peer to peer; a bus needs Hello first, hello=True)."""
    import shutil
    import subprocess
    import time

    if not shutil.which("dbus-daemon"):
        pytest.skip("no dbus-daemon (Debian's dbus)")
    path = str(tmp_path / "bus, with; odd=chars")  # escaped in the D-Bus address
    conf = tmp_path / "bus.conf"
    conf.write_text(_BUS_CONF.format(path=path.replace(" ", "%20").replace(",", "%2c").replace(";", "%3b").replace("=", "%3d")))
    p = subprocess.Popen(["dbus-daemon", "--nofork", "--nopidfile", "--nosyslog", f"--config-file={conf}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import socket

    def listening():
        # Not just the socket file: the daemon binds it before it listens, and a connect
        # in between is refused (CI saw ECONNREFUSED on a loaded host).
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(path)
                return True
            except (FileNotFoundError, ConnectionRefusedError):
                return False

    try:
        for _ in range(500):
            if listening():
                break
            time.sleep(0.01)
        else:
            pytest.fail(f"dbus-daemon did not listen: {p.stderr.read1(4096)!r}")
        yield path
    finally:
        p.kill()
        p.wait()


DBUS = dict(dest="org.freedesktop.DBus", path="/org/freedesktop/DBus", iface="org.freedesktop.DBus")


def test_dbus_client_calls_errors_and_signals(bus_path):
    """runh's client (libsystemd's sd-bus through runh._core.SdBus) against a real
    dbus-daemon: a call's reply body, an error reply as DBusError with its name, the
    signals that came meanwhile kept for wait_job, and a call nobody answers ends in
    TimeoutError after the connection's timeout (nudging meanwhile)."""
    from runh.cgroups._dbus import Connection, DBusError

    c = Connection(bus_path, timeout=1.5, hello=True)
    try:
        assert "org.freedesktop.DBus" in c.call("ListNames", **DBUS)[0]
        with pytest.raises(DBusError) as e:
            c.call("GetNameOwner", "s", ("org.runh.nobody",), **DBUS)
        assert e.value.name == "org.freedesktop.DBus.Error.NameHasNoOwner"
        assert c.call("RequestName", "su", ("org.runh.test", 0), **DBUS) == (1,)
        got = [m[5] for m in c.signals if m[0] == "signal" and m[2] == "NameAcquired"]
        assert ("org.runh.test",) in got
        with pytest.raises(TimeoutError):
            c.call("Nothing", dest="org.runh.test", path="/", iface="org.runh.Test")
    finally:
        c.close()


def test_dbus_client_marshals_what_the_driver_sends(bus_path):
    """StartTransientUnit's body (a(sv) with every property type the driver and the
    annotations use: t, b, s, au, as, ay, d, a tuple) goes through sd-bus and a real
    daemon and arrives as it was built; a bad value is an error before anything is sent."""
    from runh.cgroups._dbus import Connection

    server, client = Connection(bus_path, hello=True), Connection(bus_path, hello=True)
    try:
        server.call("RequestName", "su", ("org.runh.echo", 0), **DBUS)
        props = [("Slice", ("s", "a-b.slice")), ("Delegate", ("b", True)), ("PIDs", ("au", [1, 4242])),
                 ("MemoryMax", ("t", INF)), ("AllowedCPUs", ("ay", b"\x05")), ("CPUWeight", ("t", 100)),
                 ("Wants", ("as", ["x.slice"])), ("Ratio", ("d", 0.5)), ("Pair", ("(ss)", ("a", "b"))),
                 ("Nice", ("i", -5))]
        body = ("runh-c1.scope", "replace", props, [])
        client._send("StartTransientUnit", "ssa(sv)a(sa(sv))", body, "/org/freedesktop/systemd1",
                     "org.freedesktop.systemd1.Manager", dest="org.runh.echo")
        while True:
            m = server.bus.next(5.0)
            assert m is not None, "the call never arrived"
            if m[0] == "call":
                break
        assert m[2] == "StartTransientUnit"
        assert m[5] == ("runh-c1.scope", "replace", [(k, v) for k, v in props], [])
        with pytest.raises((ValueError, TypeError, OverflowError)):
            client._send("X", "t", (-1,), "/", "org.runh.Test", dest="org.runh.echo")
        with pytest.raises(ValueError):
            client._send("X", "a(", ([],), "/", "org.runh.Test", dest="org.runh.echo")
    finally:
        server.close()
        client.close()


def test_dbus_client_missing_socket_is_file_not_found(tmp_path):
    """No manager listening: FileNotFoundError, which the driver turns into its one-line
    "systemd is not running" refusal."""
    from runh.cgroups._dbus import Connection

    with pytest.raises(FileNotFoundError):
        Connection(str(tmp_path / "none"))
