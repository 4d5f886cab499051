"""The systemd cgroup driver against a real systemd: run inside the guest, in systemd's pid
and mount namespaces (`python tests/systemd_guest.py python tests/systemd_checks.py`,
which tests/test_systemd_guest.py does in one guest boot).

Each check prints "CHECK <name> PASS|FAIL|SKIP <seconds> <detail>". A runh call costs a
few seconds here (Python start-up over 9p, emulated), so the checks share containers: one
long-lived container ("main") carries placement, properties, annotations, ps, events,
pause/resume, update, exec, kill --all and delete; the others are one `run` each. Every
check's containers and units are removed by the check itself, and checked gone.

This process is a child subreaper (the inits that `create` leaves are its children).
"""
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bundle import build_bundle, build_rootfs, default_spec  # noqa: E402
from cgroupv2_checks import Timeout, _alarm, reap  # noqa: E402

RUNH = os.environ.get("RUNH", os.path.join(REPO, ".venv", "bin", "runh"))
ROOT = "/run/runh-sd-test"
RUNC_ROOT = "/run/runc-sd-test"
WORK = "/tmp/rh-sd"
CG = "/sys/fs/cgroup"
SLICE = "runhtest.slice"
CALL_TIMEOUT = 120
CHECK_TIMEOUT = int(os.environ.get("RUNH_SD_CHECK_TIMEOUT", "300"))
MiB = 1 << 20


def call(argv, input=None, timeout=CALL_TIMEOUT, check=False):
    """Run a command, stdout/stderr through files (a created container holds a pipe open)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        rc = subprocess.run(argv, input=input, stdout=out, stderr=err, text=True,
                            timeout=timeout).returncode
        out.seek(0)
        err.seek(0)
        p = subprocess.CompletedProcess(argv, rc, out.read(), err.read())
    if check and rc != 0:
        raise AssertionError(f"{' '.join(argv)}: rc={rc} {p.stderr.strip()[:300]}")
    return p


def rh(*args, check=True, **kw):
    return call([RUNH, "--systemd-cgroup", "--root", ROOT, *args], check=check, **kw)


def runc(*args, check=True, **kw):
    return call(["runc", "--systemd-cgroup", "--root", RUNC_ROOT, *args], check=check, **kw)


def show(unit, props):
    """systemctl show's values: {prop: value}; LoadState not-found for a unit that is gone."""
    p = call(["systemctl", "show", unit, "-p", ",".join(props)])
    return dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)


def unit_gone(unit):
    s = show(unit, ["LoadState", "ActiveState"])
    return s.get("LoadState") == "not-found" or s.get("ActiveState") == "inactive"


def read(path):
    with open(path) as f:
        return f.read().strip()


def cgroup_of(pid):
    return read(f"/proc/{pid}/cgroup")


_template = []


def make_bundle(name, args, cgroups_path=None, resources=None, annotations=None, cgroupns=True,
                edit=None):
    if not _template:
        _template.append(build_rootfs(f"{WORK}/_template"))

    def ed(c):
        lin = c.setdefault("linux", {})
        if cgroups_path is not None:
            lin["cgroupsPath"] = cgroups_path
        else:
            lin.pop("cgroupsPath", None)
        lin["resources"] = dict(lin.get("resources") or {}, **(resources or {}))
        if not cgroupns:
            lin["namespaces"] = [n for n in lin["namespaces"] if n["type"] != "cgroup"]
        if annotations:
            c["annotations"] = annotations
        if edit:
            edit(c)

    return build_bundle(f"{WORK}/{name}", args=args, template=_template[0],
                        spec=default_spec("builtin"), edit=ed)


def leftovers(cids, units):
    """'' when the containers' state and units are gone, else what is left."""
    left = []
    for cid in cids:
        p = rh("delete", "--force", cid, check=False)
        if p.returncode != 0 and "does not exist" not in p.stderr:
            left.append(f"delete {cid}: {p.stderr.strip()[:200]}")
        if os.path.isdir(f"{ROOT}/{cid}"):
            left.append(f"state dir of {cid}")
    reap()
    for unit in units:
        if not unit_gone(unit):
            left.append(f"unit {unit}")
            call(["systemctl", "stop", unit])
        call(["systemctl", "reset-failed", unit])
    return "; ".join(left)


# ------------------------------------------------------------------ the main container

MAIN = {"cid": "sd-main", "unit": "rt-main.scope", "slice": "runhtest-a.slice",
        "dir": f"{CG}/{SLICE}/runhtest-a.slice/rt-main.scope"}
LIMITS = {"memory": {"limit": 64 * MiB, "reservation": 16 * MiB, "swap": 96 * MiB},
          "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
          "pids": {"limit": 40}}
ANNOTATIONS = {"org.systemd.property.TimeoutStopSec": "uint64 7",
               "org.systemd.property.CollectMode": "'inactive-or-failed'"}
PROPS = ["Slice", "ControlGroup", "Delegate", "DefaultDependencies", "MemoryAccounting",
         "CPUAccounting", "IOAccounting", "TasksAccounting", "MemoryMax", "MemoryLow",
         "MemorySwapMax", "CPUWeight", "CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec", "TasksMax",
         "AllowedCPUs", "AllowedMemoryNodes", "TimeoutStopUSec", "CollectMode"]
FILES = ["memory.max", "memory.low", "memory.swap.max", "cpu.weight", "cpu.max", "pids.max",
         "cpuset.cpus", "cpuset.mems"]
_main = {}


def check_placement(name):
    """create in a slice that does not exist yet ("runhtest-a.slice", nested in
    runhtest.slice): the init is in rt-main.scope below both, made as slices by systemd."""
    b = make_bundle("main", ["sh", "-c", "sleep 1000 & sleep 1000 & wait"],
                    f"runhtest-a.slice:rt:main", LIMITS, ANNOTATIONS)
    before = os.path.isdir(f"{CG}/{SLICE}")
    pidfile = f"{WORK}/main.pid"
    rh("create", "--bundle", b, "--pid-file", pidfile, MAIN["cid"])
    pid = int(read(pidfile))
    _main["pid"] = pid
    cg = cgroup_of(pid)
    slices = show("runhtest-a.slice", ["ActiveState", "Slice"])
    ok = (cg == "0::/runhtest.slice/runhtest-a.slice/rt-main.scope" and not before
          and slices.get("ActiveState") == "active" and slices.get("Slice") == SLICE)
    return ok, f"init {pid} in {cg!r}; {SLICE} existed before: {before}; runhtest-a.slice {slices}"


def check_properties(name):
    """systemctl show of the unit carries the limits, Delegate, no default dependencies,
    accounting, and the annotations' properties; the files hold the exact values."""
    s = show(MAIN["unit"], PROPS)
    want = {"Slice": "runhtest-a.slice", "ControlGroup": "/runhtest.slice/runhtest-a.slice/rt-main.scope",
            "Delegate": "yes", "DefaultDependencies": "no", "MemoryAccounting": "yes",
            "CPUAccounting": "yes", "IOAccounting": "yes", "TasksAccounting": "yes",
            "MemoryMax": str(64 * MiB), "MemoryLow": str(16 * MiB), "MemorySwapMax": str(32 * MiB),
            "CPUWeight": "20", "CPUQuotaPerSecUSec": "500ms", "CPUQuotaPeriodUSec": "100ms",
            "TasksMax": "40", "AllowedCPUs": "0", "AllowedMemoryNodes": "0",
            "TimeoutStopUSec": "7s", "CollectMode": "inactive-or-failed"}
    bad = {k: (s.get(k), v) for k, v in want.items() if s.get(k) != v}
    files = {f: read(f"{MAIN['dir']}/{f}") for f in FILES}
    want_files = {"memory.max": str(64 * MiB), "memory.low": str(16 * MiB),
                  "memory.swap.max": str(32 * MiB), "cpu.weight": "20", "cpu.max": "50000 100000",
                  "pids.max": "40", "cpuset.cpus": "0", "cpuset.mems": "0"}
    bad_files = {k: (files[k], v) for k, v in want_files.items() if files[k] != v}
    return not bad and not bad_files, f"wrong properties (got, want): {bad}; files: {bad_files}"


def check_ps_events(name):
    """start; ps lists init and its two sleeps; events --stats reads the scope's files."""
    rh("start", MAIN["cid"])
    time.sleep(0.5)
    pids = json.loads(rh("ps", "--format", "json", MAIN["cid"]).stdout)
    ev = json.loads(rh("events", "--stats", MAIN["cid"]).stdout.splitlines()[0])
    data = ev["data"]
    ok = (_main["pid"] in pids and len(pids) == 3 and ev["type"] == "stats"
          and data["pids"]["current"] == 3 and data["memory"]["usage"]["usage"] > 0
          and data["memory"]["usage"]["limit"] == 64 * MiB)
    return ok, f"ps {pids}; stats pids={data.get('pids')} memory.usage={data.get('memory', {}).get('usage')}"


def check_pause_resume(name):
    rh("pause", MAIN["cid"])
    frozen = read(f"{MAIN['dir']}/cgroup.freeze")
    st1 = json.loads(rh("state", MAIN["cid"]).stdout)["status"]
    rh("resume", MAIN["cid"])
    thawed = read(f"{MAIN['dir']}/cgroup.freeze")
    st2 = json.loads(rh("state", MAIN["cid"]).stdout)["status"]
    ok = frozen == "1" and st1 == "paused" and thawed == "0" and st2 == "running"
    return ok, f"paused: freeze={frozen} state={st1}; resumed: freeze={thawed} state={st2}"


def check_update(name):
    """update changes the unit's properties and the files."""
    rh("update", "--memory", "80m", "--memory-swap", "120m", "--pids-limit", "30",
       "--cpu-quota", "30000", "--cpu-share", "1024", MAIN["cid"])
    s = show(MAIN["unit"], ["MemoryMax", "MemorySwapMax", "TasksMax", "CPUQuotaPerSecUSec", "CPUWeight"])
    files = {f: read(f"{MAIN['dir']}/{f}") for f in ("memory.max", "memory.swap.max", "pids.max",
                                                      "cpu.max", "cpu.weight")}
    want = {"MemoryMax": str(80 * MiB), "MemorySwapMax": str(40 * MiB), "TasksMax": "30",
            "CPUQuotaPerSecUSec": "300ms", "CPUWeight": "39"}
    want_files = {"memory.max": str(80 * MiB), "memory.swap.max": str(40 * MiB), "pids.max": "30",
                  "cpu.max": "30000 100000", "cpu.weight": "39"}
    return s == want and files == want_files, f"properties {s}; files {files}"


def check_exec(name):
    """exec (the native launcher, clone3 into the scope's directory) lands in the scope."""
    p = rh("exec", MAIN["cid"], "cat", "/proc/self/cgroup")
    # The container has a cgroup namespace rooted at the scope: "0::/".
    return p.stdout.strip() == "0::/", f"exec'd process sees {p.stdout.strip()!r}"


def check_kill_all(name):
    rh("kill", "--all", MAIN["cid"], "KILL")
    deadline = time.time() + 20
    while time.time() < deadline and json.loads(rh("state", MAIN["cid"]).stdout)["status"] != "stopped":
        time.sleep(0.3)
    reap()
    st = json.loads(rh("state", MAIN["cid"]).stdout)["status"]
    procs = read(f"{MAIN['dir']}/cgroup.procs") if os.path.isdir(MAIN["dir"]) else ""
    return st == "stopped" and not procs, f"state {st}; left in the scope: {procs!r}"


def check_delete(name):
    """delete stops the unit (gone from systemd, its cgroup removed) and the state."""
    rh("delete", MAIN["cid"])
    s = show(MAIN["unit"], ["LoadState", "ActiveState"])
    gone = not os.path.isdir(MAIN["dir"]) and not os.path.isdir(f"{ROOT}/{MAIN['cid']}")
    return gone and s.get("LoadState") == "not-found", f"unit {s}; cgroup dir or state left: {not gone}"


# ------------------------------------------------------------------ one `run` each

def check_memory_oom(name):
    """memory.max 32 MiB, no swap: dd of a 64 MiB buffer is OOM-killed (exit 137). The
    default path (no cgroupsPath) puts it in system.slice/runh-<id>.scope."""
    cid = "sd-oom"
    b = make_bundle(name, ["sh", "-c", "cat /proc/self/cgroup; dd if=/dev/zero of=/dev/null bs=64M count=1"],
                    None, {"memory": {"limit": 32 * MiB, "swap": 32 * MiB}}, cgroupns=False)
    p = rh("run", "--bundle", b, cid, check=False)
    where = p.stdout.splitlines()[0] if p.stdout else ""
    ok = p.returncode == 137 and where == f"0::/system.slice/runh-{cid}.scope"
    return ok, f"exit {p.returncode}; cgroup {where!r}; {p.stderr.strip()[:200]}", [cid], [f"runh-{cid}.scope"]


def check_pids_max(name):
    """TasksMax 8: a fork loop is stopped (fork fails), and the container still exits."""
    cid = "sd-pids"
    b = make_bundle(name, ["sh", "-c", "i=0; while [ $i -lt 30 ]; do sleep 5 & i=$((i+1)); done; wait"],
                    f"{SLICE}:rt:pids", {"pids": {"limit": 8}})
    p = rh("run", "--bundle", b, cid, check=False)
    ok = "fork" in p.stderr.lower() or "resource temporarily unavailable" in p.stderr.lower()
    return ok, f"exit {p.returncode}; stderr {p.stderr.strip()[:120]!r}", [cid], ["rt-pids.scope"]


def check_slice_unit(name):
    """A name ending in .slice makes a slice unit (prefix ignored), and init runs in it."""
    cid = "sd-slice"
    b = make_bundle(name, ["cat", "/proc/self/cgroup"], f"{SLICE}:ignored:runhtest-own.slice",
                    {"memory": {"limit": 48 * MiB}}, cgroupns=False)
    p = rh("run", "--keep", "--bundle", b, cid, check=False)
    s = show("runhtest-own.slice", ["ActiveState", "MemoryMax", "Wants"])
    rh("delete", cid, check=False)
    after = show("runhtest-own.slice", ["LoadState", "ActiveState"])
    ok = (p.stdout.strip() == "0::/runhtest.slice/runhtest-own.slice" and s.get("MemoryMax") == str(48 * MiB)
          and SLICE in s.get("Wants", "") and after.get("ActiveState") == "inactive")
    return ok, f"rc={p.returncode} {p.stdout.strip()!r} unit {s}; after delete {after} {p.stderr.strip()[:200]}", \
        [cid], ["runhtest-own.slice"]


def check_bad_paths(name):
    """Forms that are not slice:prefix:name fail with one line naming the form; nothing is
    left (no state, no unit)."""
    out = []
    ok = True
    for i, path in enumerate(["runhtest.slice:only-two", "notaslice:rt:x", "/plain/path"]):
        cid = f"sd-bad{i}"
        b = make_bundle(f"{name}{i}", ["true"], path)
        p = rh("create", "--bundle", b, cid, check=False)
        err = p.stderr.strip()
        good = (p.returncode == 1 and len(err.splitlines()) == 1 and "slice:prefix:name" in err
                and not os.path.exists(f"{ROOT}/{cid}"))
        ok = ok and good
        out.append(f"{path!r}: rc={p.returncode} {err!r}")
    return ok, "; ".join(out), [f"sd-bad{i}" for i in range(3)], []


def check_leftover_unit(name):
    """A failed unit of the same name (here: an OOM-killed scope systemd keeps as failed)
    does not block a new create."""
    cid = "sd-left"
    unit = "rt-left.scope"
    call(["systemd-run", "--scope", f"--unit={unit}", f"--slice={SLICE}", "-p", "MemoryMax=16M",
          "-p", "MemorySwapMax=0", "dd", "if=/dev/zero", "of=/dev/null", "bs=48M", "count=1"])
    before = show(unit, ["ActiveState", "Result"])
    b = make_bundle(name, ["true"], f"{SLICE}:rt:left")
    p = rh("run", "--bundle", b, cid, check=False)
    ok = before.get("ActiveState") == "failed" and p.returncode == 0
    return ok, f"before: {before}; run rc={p.returncode} {p.stderr.strip()[:200]}", [cid], [unit]


def check_killed_create(name):
    """runh killed in the middle of create (here in a prestart hook, after the unit was
    started with the init): `delete --force` finds the unit in the record create made
    first and removes the unit, the cgroup and the state."""
    cid = "sd-killed"
    unit = "rt-killed.scope"

    def hooks(c):
        c["hooks"] = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "600"]}]}

    b = make_bundle(name, ["true"], f"{SLICE}:rt:killed", edit=hooks)
    p = subprocess.Popen([RUNH, "--systemd-cgroup", "--root", ROOT, "create", "--bundle", b, cid],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and show(unit, ["ActiveState"]).get("ActiveState") != "active":
        time.sleep(0.5)
    active = show(unit, ["ActiveState"]).get("ActiveState")
    time.sleep(1)
    p.kill()
    p.wait()
    # The hook's sleep was runh's child (hooks run in runh's cgroup, not the unit's): now
    # ours, as the subreaper.
    for pid in read(f"/proc/{os.getpid()}/task/{os.getpid()}/children").split():
        if read(f"/proc/{pid}/cmdline").startswith("sleep\0600"):
            os.kill(int(pid), signal.SIGKILL)
    d = rh("delete", "--force", cid, check=False)
    reap()
    after = show(unit, ["LoadState", "ActiveState"])
    gone = not os.path.isdir(f"{ROOT}/{cid}") and not os.path.isdir(f"{CG}/{SLICE}/{unit}")
    ok = active == "active" and d.returncode == 0 and gone and unit_gone(unit)
    return ok, f"unit was {active}; delete --force rc={d.returncode} {d.stderr.strip()[:200]}; after {after}; all gone {gone}", \
        [cid], [unit]


def check_killed_anywhere(name):
    """runh SIGKILLed at delays spread over a create (before, during and after
    StartTransientUnit): each time `delete --force` finishes the job (state gone, no unit
    of that name active, its cgroup gone). The delays are fractions of one create timed
    first."""
    unit = "rt-anykill.scope"
    b = make_bundle(name, ["sleep", "1000"], f"{SLICE}:rt:anykill")
    t0 = time.time()
    rh("create", "--bundle", b, "sd-any")
    full = time.time() - t0
    rh("delete", "--force", "sd-any")
    out, ok = [f"create {full:.2f}s"], True
    for i, frac in enumerate((0.5, 0.7, 0.85, 0.95)):
        cid = f"sd-any{i}"
        p = subprocess.Popen([RUNH, "--systemd-cgroup", "--root", ROOT, "create", "--bundle", b, cid],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * frac)
        p.kill()
        p.wait()
        with open(f"{ROOT}/{cid}/state.json") if os.path.exists(f"{ROOT}/{cid}/state.json") else open(os.devnull) as f:
            rec = f.read()
        was = show(unit, ["ActiveState"]).get("ActiveState")
        d = rh("delete", "--force", cid, check=False)
        reap()
        gone = (not os.path.isdir(f"{ROOT}/{cid}") and not os.path.isdir(f"{CG}/{SLICE}/{unit}")
                and unit_gone(unit))
        ok = ok and gone and (d.returncode == 0 or "does not exist" in d.stderr)
        started = '"started": true' in rec
        out.append(f"{frac}: unit {was}, started recorded {started}, delete rc={d.returncode} "
                   f"{d.stderr.strip()[:80]!r}, all gone {gone}")
    return ok, "; ".join(out), ["sd-any"] + [f"sd-any{i}" for i in range(4)], [unit]


def check_foreign_unit(name):
    """Units runh did not start are never touched: a config naming an active slice
    (empty) fails on UnitExists, a config naming another scope with a process in it is
    refused before anything is made (claim), and `delete --force` of each leaves both
    units active and the scope's process alive."""
    call(["systemctl", "start", "runhtest-foreign.slice"])
    sc = subprocess.Popen(["systemd-run", "--scope", "--unit=rt-foreign.scope", f"--slice={SLICE}",
                           "sleep", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and show("rt-foreign.scope", ["ActiveState"]).get("ActiveState") != "active":
        time.sleep(0.3)
    out, ok = [], True
    try:
        for cid, path in (("sd-for0", f"{SLICE}:x:runhtest-foreign.slice"), ("sd-for1", f"{SLICE}:rt:foreign")):
            b = make_bundle(f"{name}-{cid}", ["true"], path)
            p = rh("create", "--bundle", b, cid, check=False)
            d = rh("delete", "--force", cid, check=False)
            out.append(f"{path}: create rc={p.returncode} {p.stderr.strip()[:120]!r}; delete rc={d.returncode}")
            ok = ok and p.returncode != 0 and not os.path.isdir(f"{ROOT}/{cid}")
        sl = show("runhtest-foreign.slice", ["ActiveState"]).get("ActiveState")
        scope = show("rt-foreign.scope", ["ActiveState"]).get("ActiveState")
        ok = ok and sl == "active" and scope == "active" and sc.poll() is None
        out.append(f"after: slice {sl}, scope {scope}, its sleep alive {sc.poll() is None}")
    finally:
        call(["systemctl", "stop", "rt-foreign.scope", "runhtest-foreign.slice"])
        sc.wait()
    return ok, "; ".join(out), ["sd-for0", "sd-for1"], ["rt-foreign.scope", "runhtest-foreign.slice"]


def check_runc_diff(name):
    """runc 1.1.5 --systemd-cgroup and runh on the same config: the same unit name, slice,
    unit properties and cgroup files (the devices policy aside: runc also sets
    DevicePolicy/DeviceAllow, runh enforces devices with its own eBPF program)."""
    cid = "sd-diff"
    res = {"memory": {"limit": 40 * MiB, "reservation": 8 * MiB, "swap": 60 * MiB},
           "cpu": {"shares": 300, "quota": 33333, "period": 100000, "cpus": "0-1", "mems": "0"},
           "pids": {"limit": 25}, "unified": {"memory.high": str(36 * MiB)}}
    b = make_bundle(name, ["sleep", "1000"], f"{SLICE}:diff:ctr", res, ANNOTATIONS)
    unit = "diff-ctr.scope"
    props = PROPS + ["MemoryHigh", "Id"]
    files = FILES + ["memory.high"]
    got = {}
    for rt, fn in (("runc", runc), ("runh", rh)):
        fn("create", "--bundle", b, cid)
        got[rt] = (show(unit, props), {f: read(f"{CG}/{SLICE}/{unit}/{f}") for f in files})
        fn("delete", "--force", cid)
        reap()
        if not unit_gone(unit):
            return False, f"{rt} left {unit} behind", [cid], [unit]
    diff = {k: (got["runc"][0].get(k), v) for k, v in got["runh"][0].items() if got["runc"][0].get(k) != v}
    fdiff = {k: (got["runc"][1][k], v) for k, v in got["runh"][1].items() if got["runc"][1][k] != v}
    ok = not diff and not fdiff and got["runh"][0].get("Id") == unit
    return ok, f"differences (runc, runh): properties {diff} files {fdiff}; runh: {got['runh'][0]}", [cid], [unit]


# ------------------------------------------------------------------ containerd, podman

_env = {}


def _clients():
    """The image and a private containerd, made once for the client checks."""
    import systemd_clients as sc

    if not _env:
        layer, oci = sc.build_images(WORK)  # busybox and the pod sandbox's pause, in one archive
        _env.update(work=WORK, runh=RUNH, layer=layer, oci=oci, show=show)
        _env["containerd"] = sc.Containerd(WORK, RUNH)
    return sc


def check_containerd_ctr(name):
    sc = _clients()
    ok, detail = sc.check_ctr(_env)
    return ok, detail, [], ["ctr-c1.scope", "ctr-hello.scope"]


def check_containerd_cri(name):
    sc = _clients()
    try:
        import grpc  # noqa: F401
    except ImportError:
        return None, "no grpcio in the venv (make test's set-up installs it)"
    return sc.check_cri(_env)


def check_podman(name):
    sc = _clients()
    return sc.check_podman(_env)


# containerd and podman start daemons and pull their own binaries over 9p: slower.
check_containerd_ctr.timeout = check_containerd_cri.timeout = check_podman.timeout = 2 * CHECK_TIMEOUT

CHECKS = [check_placement, check_properties, check_ps_events, check_pause_resume, check_update,
          check_exec, check_kill_all, check_delete, check_memory_oom, check_pids_max,
          check_slice_unit, check_bad_paths, check_leftover_unit, check_killed_create,
          check_killed_anywhere, check_foreign_unit, check_runc_diff, check_containerd_ctr, check_containerd_cri, check_podman]
MAIN_CHECKS = 8  # the first ones share the main container


def main(names):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    os.makedirs(WORK, exist_ok=True)
    signal.signal(signal.SIGALRM, _alarm)
    for i, fn in enumerate(CHECKS):
        name = fn.__name__[len("check_"):]
        if names and name not in names:
            continue
        t0 = time.time()
        signal.alarm(getattr(fn, "timeout", CHECK_TIMEOUT))
        cids, units = [], []
        try:
            r = fn(name)
            ok, detail = r[0], r[1]
            if len(r) > 2:
                cids, units = r[2], r[3]
        except Timeout:
            ok, detail = False, f"timed out after {getattr(fn, 'timeout', CHECK_TIMEOUT)}s"
        except Exception:
            ok, detail = False, traceback.format_exc().replace("\n", " | ")
        finally:
            signal.alarm(0)
        if i == MAIN_CHECKS - 1 or (i < MAIN_CHECKS and not ok):
            cids, units = [MAIN["cid"]], [MAIN["unit"]]
        left = leftovers(cids, units) if (cids or units) else ""
        if left:
            ok, detail = False, f"{detail} LEFTOVERS: {left}"
        verdict = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        print(f"CHECK {name} {verdict} {time.time() - t0:.2f}s {detail}", flush=True)
    if "containerd" in _env:
        _env["containerd"].stop()
    for unit in ("runhtest-a.slice", SLICE):
        call(["systemctl", "stop", unit])


if __name__ == "__main__":
    main(sys.argv[1:])
