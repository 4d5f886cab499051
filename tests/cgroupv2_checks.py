"""The cgroup v2 checks, run inside the pure-v2 guest through runh itself
(tests/test_cgroups_v2_guest.py starts them with one vm-run).

Every check builds a busybox bundle (tests/bundle.py) under the guest's /tmp, with
cgroupsPath /runh-test-v2-<name> so the check can read the kernel's own interface files
beside what runh reports, and drives real containers with the runh CLI (run, create/start,
update, pause/resume, events, kill --all, delete). It prints one line
"CHECK <name> PASS|FAIL|SKIP <seconds> <detail>"; each check has a time limit (SIGALRM),
and its container is force-deleted afterwards, its cgroup checked gone.

This process is a child subreaper: `runh create` and `run -d` leave the container's init
as a child of the caller's subreaper, so the OOM check can wait for its exit status, and
nothing is left as a zombie in the guest (whose PID 1 does not reap).

Costs in the guest (software emulation): ~1-3 s per runh call (Python start-up on 9p),
so each check keeps to a handful of calls.
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

RUNH = os.environ.get("RUNH", os.path.join(REPO, ".venv", "bin", "runh"))
ROOT = "/run/runh-test"
WORK = "/tmp/rh-v2"
CG = "/sys/fs/cgroup"
CHECK_TIMEOUT = int(os.environ.get("RUNH_V2_CHECK_TIMEOUT", "120"))
CALL_TIMEOUT = 60
MiB = 1 << 20


class Timeout(Exception):
    pass


def _alarm(*_):
    raise Timeout()


def rh(*args, input=None, check=True, timeout=CALL_TIMEOUT, cwd=None):
    """One runh call; stdout/stderr captured as text. Through files, not pipes: after
    `create` or `run -d` the container's process holds runh's stdio, so a pipe would not
    see EOF until the container exits."""
    return call([RUNH, "--root", ROOT], *args, input=input, check=check, timeout=timeout, cwd=cwd)


def call(runtime, *args, input=None, check=True, timeout=CALL_TIMEOUT, cwd=None):
    """rh's body for any runtime argv prefix (runc's differentials use it too)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        rc = subprocess.run([*runtime, *args], input=input, stdout=out, stderr=err,
                            text=True, timeout=timeout, cwd=cwd).returncode
        out.seek(0)
        err.seek(0)
        p = subprocess.CompletedProcess(args, rc, out.read(), err.read())
    if check and p.returncode != 0:
        raise AssertionError(f"{os.path.basename(runtime[0])} {' '.join(args)}: rc={p.returncode} {p.stderr.strip()}")
    return p


def cid_of(name, area="v2"):
    return f"{area}-{name.replace('_', '-')}"


def cg_dir(name):
    return f"{CG}/runh-test-v2-{name}"


def cg_read(name, f):
    with open(f"{cg_dir(name)}/{f}") as fh:
        return fh.read()


def kv(text):
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        out[k] = v.strip()
    return out


_template = []


def make_bundle(name, args, resources=None, edit=None):
    """A busybox bundle in the guest's /tmp with this check's cgroup and resources."""
    if not _template:
        _template.append(build_rootfs(f"{WORK}/_template"))

    def ed(c):
        lin = c.setdefault("linux", {})
        lin["cgroupsPath"] = f"/runh-test-v2-{name}"
        res = lin.setdefault("resources", {})
        res.update(resources or {})
        if edit:
            edit(c)

    return build_bundle(f"{WORK}/{name}", args=args, template=_template[0], edit=ed)


def wait_for(pred, timeout=10, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def state(cid):
    return json.loads(rh("state", cid).stdout)


def stats(cid):
    out = rh("events", "--stats", cid).stdout
    return json.loads(out.splitlines()[0])["data"]


def timed(limit, fn, *args):
    """fn(*args) -> (ok, detail) under a SIGALRM time limit (the caller's handler raises
    Timeout); a timeout or an exception is a failure with what happened as its detail."""
    signal.alarm(limit)
    try:
        return fn(*args)
    except Timeout:
        return False, f"timed out after {limit}s"
    except Exception:
        return False, traceback.format_exc().replace("\n", " | ")
    finally:
        signal.alarm(0)


def run_all(checks, names, limit, cleanup, area="v2", after=None):
    """The check loop of a guest area (this one's and tests/criu_checks.py's): each
    check_<name> function (all, or those in `names`) runs as fn(name, cid_of(name, area))
    under the time limit; cleanup(name, cid) then says what is left ('' when nothing),
    which fails it; and one line is printed, "CHECK <name> PASS|FAIL|SKIP <seconds>
    <detail>", with after() appended (an area's own figures) if given."""
    signal.signal(signal.SIGALRM, _alarm)
    for fn in checks:
        name = fn.__name__[len("check_"):]
        if names and name not in names:
            continue
        cid = cid_of(name, area)
        t0 = time.time()
        ok, detail = timed(limit, fn, name, cid)
        left = cleanup(name, cid)
        if left:
            ok, detail = False, f"{detail} LEFTOVERS: {left}"
        print(f"CHECK {name} {verdict(ok)} {time.time() - t0:.2f}s {detail}{after() if after else ''}",
              flush=True)


def verdict(ok):
    """A check's (ok, detail) verdict word: ok None is a skip."""
    return "SKIP" if ok is None else ("PASS" if ok else "FAIL")


def report_all(checks, names, ok, detail):
    """The same verdict for every check (the area cannot run: a tool is missing)."""
    for fn in checks:
        name = fn.__name__[len("check_"):]
        if not names or name in names:
            print(f"CHECK {name} {verdict(ok)} 0.00s {detail}", flush=True)


def reap():
    """Collect exited children (container inits reparented to us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# ------------------------------------------------------------------------------- checks

def check_memory_oom(name, cid):
    """memory.max 32 MiB (no swap beyond it): dd with a 64 MiB buffer is OOM-killed, the
    container's init exits with SIGKILL (a shell's 137), and `runh events` reports it."""
    b = make_bundle(name, ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                    {"memory": {"limit": 32 * MiB, "swap": 32 * MiB}})
    pidfile = f"{WORK}/{name}.pid"
    rh("create", "--bundle", b, "--pid-file", pidfile, cid)
    pid = int(open(pidfile).read())
    # events prints a first stats line at once: after it, it has read the OOM count.
    ev = subprocess.Popen([RUNH, "--root", ROOT, "events", "--interval", "10m", cid],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = ev.stdout.readline()
        rh("start", cid)
        _, status = os.waitpid(pid, 0)
        rc = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        out, err = ev.communicate(timeout=CALL_TIMEOUT)
    finally:
        if ev.poll() is None:
            ev.kill()
            ev.wait()
    lines = [json.loads(x) for x in ([first] + out.splitlines()) if x.strip()]
    types = [x["type"] for x in lines]
    events = kv(cg_read(name, "memory.events"))
    st = state(cid)["status"]
    ok = rc == 137 and "oom" in types and int(events.get("oom_kill", 0)) > 0 and st == "stopped"
    return ok, (f"exit={rc} events={types} memory.events oom_kill={events.get('oom_kill')} "
                f"memory.max={cg_read(name, 'memory.max').strip()} state={st} {err.strip()[:200]}")


def check_pids_max(name, cid):
    """pids.max 3: the shell cannot fork its sixth background sleep."""
    b = make_bundle(name, ["sh", "-c", "for i in 1 2 3 4 5 6; do sleep 1 & done; wait"],
                    {"pids": {"limit": 3}})
    p = rh("run", "--keep", "--bundle", b, cid, check=False)
    events = kv(cg_read(name, "pids.events"))
    mx = cg_read(name, "pids.max").strip()
    ok = "fork" in p.stderr.lower() and int(events.get("max", 0)) > 0 and mx == "3"
    return ok, f"rc={p.returncode} pids.max={mx} pids.events max={events.get('max')} stderr={p.stderr.strip()[:80]!r}"


def check_cpu_max(name, cid):
    """cpu.max 20000/100000: a busy loop is throttled; runh events --stats shows it too."""
    b = make_bundle(name, ["sh", "-c", "while :; do :; done"],
                    {"cpu": {"quota": 20000, "period": 100000}})
    rh("run", "-d", "--bundle", b, cid)
    time.sleep(1.5)
    data = stats(cid)
    st = kv(cg_read(name, "cpu.stat"))
    mx = cg_read(name, "cpu.max").split()
    thr = data["cpu"]["throttling"]
    ok = int(st.get("nr_throttled", 0)) > 0 and mx == ["20000", "100000"] and thr["throttledPeriods"] > 0
    return ok, (f"cpu.max={mx} nr_periods={st.get('nr_periods')} nr_throttled={st.get('nr_throttled')} "
                f"events throttling={thr}")


def check_cpuset(name, cid):
    """cpus "1": the container's process sees Cpus_allowed_list 1."""
    if os.cpu_count() < 2:
        return None, "needs 2 cpus"
    b = make_bundle(name, ["grep", "Cpus_allowed_list", "/proc/self/status"],
                    {"cpu": {"cpus": "1", "mems": "0"}})
    p = rh("run", "--keep", "--bundle", b, cid)
    inside = p.stdout.split()
    eff = cg_read(name, "cpuset.cpus.effective").strip()
    ok = inside[-1:] == ["1"] and eff == "1"
    return ok, f"inside {inside} cpuset.cpus.effective={eff}"


def check_freeze(name, cid):
    """pause/resume go through cgroup.freeze; state says paused, then running."""
    b = make_bundle(name, ["sleep", "60"])
    rh("run", "-d", "--bundle", b, cid)
    rh("pause", cid)
    frozen = (cg_read(name, "cgroup.freeze").strip(), kv(cg_read(name, "cgroup.events")).get("frozen"),
              state(cid)["status"])
    rh("resume", cid)
    thawed = (cg_read(name, "cgroup.freeze").strip(), kv(cg_read(name, "cgroup.events")).get("frozen"),
              state(cid)["status"])
    ok = frozen == ("1", "1", "paused") and thawed == ("0", "0", "running")
    return ok, f"paused (cgroup.freeze, frozen, status)={frozen} resumed={thawed}"


def check_kill_all(name, cid):
    """kill --all KILL empties the cgroup through cgroup.kill (seen with strace)."""
    b = make_bundle(name, ["sh", "-c", "sleep 60 & sleep 60 & sleep 60 & wait"])
    rh("run", "-d", "--bundle", b, cid)
    n = len(wait_for(lambda: len(cg_read(name, "cgroup.procs").split()) == 4 and cg_read(name, "cgroup.procs").split()) or [])
    strace = "/usr/bin/strace"
    trace = f"{WORK}/{name}.strace"
    cmd = [RUNH, "--root", ROOT, "kill", "--all", cid, "KILL"]
    if os.access(strace, os.X_OK):
        cmd = [strace, "-f", "-qq", "-e", "trace=openat,kill", "-o", trace] + cmd
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=CALL_TIMEOUT)
    gone = wait_for(lambda: not cg_read(name, "cgroup.procs").split(), 10)
    reap()
    used = "?"
    if os.path.exists(trace):
        t = open(trace).read()
        used = "cgroup.kill" in t and " kill(" not in t
    st = state(cid)["status"]
    ok = p.returncode == 0 and n == 4 and gone and used is not False and st == "stopped"
    return ok, f"pids before={n} rc={p.returncode} empty={gone} via cgroup.kill only={used} state={st}"


def check_kill_all_stopped(name, cid):
    """A container without its own PID namespace (a pod's): init exits, its child stays in
    the cgroup; kill --all of the stopped container ends it (containerd's shim does this
    for a shared-PID pod), and says nothing once the cgroup is empty."""
    def no_pidns(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
    b = make_bundle(name, ["sh", "-c", "sleep 60 & exit 0"], edit=no_pidns)
    rh("run", "-d", "--bundle", b, cid)
    left = wait_for(lambda: state(cid)["status"] == "stopped" and cg_read(name, "cgroup.procs").split())
    p = rh("kill", "--all", cid, "KILL", check=False)
    gone = wait_for(lambda: not cg_read(name, "cgroup.procs").split(), 10)
    again = rh("kill", "--all", cid, "KILL", check=False)
    reap()
    ok = bool(left) and p.returncode == 0 and gone and again.returncode == 0
    return ok, f"left={left} rc={p.returncode} {p.stderr.strip()} empty={gone} again rc={again.returncode}"


def check_devices(name, cid):
    """The eBPF device filter: /dev/kmsg, listed in linux.devices (so allowed rwm), opens
    for write; /dev/console, allowed "r" and "w" by two separate linux.resources.devices
    rules, opens O_RDWR (the rules are merged as the v1 kernel merges them); /dev/tty1,
    listed for "m" only, and /dev/tty2, listed nowhere, are denied (both bind-mounted in)."""
    probes = (("kmsg_w", ": >", "/dev/kmsg"), ("console_rw", ": <>", "/dev/console"),
              ("tty1_r", ": <", "/dev/tty1"), ("tty2_r", ": <", "/dev/tty2"),
              ("null_rw", ": <>", "/dev/null"))
    probe = ";".join(f"({op} {dev}) 2>/dev/null && echo {tag}=ok || echo {tag}=denied"
                     for tag, op, dev in probes)

    def edit(c):
        c["linux"].setdefault("devices", []).append(
            {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666, "uid": 0, "gid": 0})
        for d in ("/dev/console", "/dev/tty1", "/dev/tty2"):
            c["mounts"].append({"destination": d, "type": "bind", "source": d, "options": ["bind"]})

    b = make_bundle(name, ["sh", "-c", probe],
                    {"devices": [{"allow": False, "access": "rwm"},
                                 {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "r"},
                                 {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "w"},
                                 {"allow": True, "type": "c", "major": 4, "minor": 1, "access": "m"}]},
                    edit)
    p = rh("run", "--bundle", b, cid)
    got = p.stdout.split()
    want = ["kmsg_w=ok", "console_rw=ok", "tty1_r=denied", "tty2_r=denied", "null_rw=ok"]
    return got == want, f"{got}"


def check_update_memory(name, cid):
    """runh update on a live container: --memory, then --resources - (stdin)."""
    b = make_bundle(name, ["sleep", "60"], {"memory": {"limit": 64 * MiB}})
    rh("run", "-d", "--bundle", b, cid)
    before = cg_read(name, "memory.max").strip()
    rh("update", "--memory", "48M", cid)
    mid = cg_read(name, "memory.max").strip()
    rh("update", "--resources", "-", cid, input=json.dumps({"memory": {"limit": 40 * MiB}}))
    after = cg_read(name, "memory.max").strip()
    lim = stats(cid)["memory"]["usage"]["limit"]
    ok = (before, mid, after, lim) == (str(64 * MiB), str(48 * MiB), str(40 * MiB), 40 * MiB)
    return ok, f"memory.max {before} -> {mid} -> {after}; events --stats limit={lim}"


def check_stats_move(name, cid):
    """runh events --stats twice on a busy container: cpu time grows, pids and memory shown."""
    b = make_bundle(name, ["sh", "-c", "while :; do :; done"], {"pids": {"limit": 50}})
    rh("run", "-d", "--bundle", b, cid)
    time.sleep(0.3)
    s1 = stats(cid)
    time.sleep(0.5)
    s2 = stats(cid)
    t1, t2 = s1["cpu"]["usage"]["total"], s2["cpu"]["usage"]["total"]
    ok = t2 > t1 > 0 and s2["pids"]["limit"] == 50 and s2["pids"]["current"] >= 1 \
        and s2["memory"]["usage"].get("usage", 0) > 0
    return ok, f"cpu total {t1}->{t2} ns, pids={s2['pids']}, memory usage={s2['memory']['usage']}"


def check_features(name, cid):
    """runh features on a v2 host: v1, v2 and systemd (also a user's) true, rdma as the
    host has it."""
    cg = json.loads(rh("features").stdout)["linux"]["cgroup"]
    with open(f"{CG}/cgroup.controllers") as f:
        rdma = "rdma" in f.read().split()
    want = {"v1": True, "v2": True, "systemd": True, "systemdUser": True, "rdma": rdma}
    return cg == want, f"{cg}"


def check_exec_cgroup(name, cid):
    """exec --cgroup puts the process in an existing cgroup below the container's, and the
    process's own /proc/self/cgroup says so (clone3 into that directory)."""
    b = make_bundle(name, ["sleep", "60"])
    rh("run", "-d", "--bundle", b, cid)
    os.mkdir(f"{cg_dir(name)}/sub")  # removed with the container's cgroup by delete
    inside = rh("exec", "--cgroup", "sub", cid, "cat", "/proc/self/cgroup").stdout.strip()
    bad = rh("exec", "--cgroup", "memory:sub", cid, "true", check=False)
    # "/sub" inside a cgroup namespace, the full path without one.
    ok = inside in ("0::/sub", f"0::/runh-test-v2-{name}/sub") and bad.returncode == 1 \
        and "without controllers" in bad.stderr
    return ok, f"inside {inside!r}; with a controller: {bad.stderr.strip()!r}"


def _one_line(p):
    return p.returncode != 0 and p.stderr.startswith("runh: ") and p.stderr.count("\n") == 1


def check_path_escape(name, cid):
    """A relative cgroupsPath with enough ".." to leave /sys/fs/cgroup is refused in one
    line; nothing is made in the host dir it aims at, nor in the cgroup tree (issue 10.3,
    the v2 half of test_state_security's test)."""
    host = f"{WORK}/{name}-host"
    os.makedirs(host, exist_ok=True)
    b = make_bundle(name, ["true"], {"pids": {"limit": 20}},
                    edit=lambda c: c["linux"].update(cgroupsPath="../" * 12 + host.lstrip("/") + "/sub"))
    p = rh("create", "--bundle", b, cid, check=False)
    ok = _one_line(p) and "leaves the cgroup hierarchy" in p.stderr and os.listdir(host) == []
    return ok, f"{p.stderr.strip()!r}; host dir: {os.listdir(host)}"


def check_foreign_cgroup(name, cid):
    """A cgroup that already holds another's process is refused (runc 1.2), and the
    process lives on (issue 10.10)."""
    d = cg_dir(name)
    os.mkdir(d)
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write(str(stranger.pid))
        b = make_bundle(name, ["true"])
        p = rh("create", "--bundle", b, cid, check=False)
        rh("delete", "--force", cid, check=False)
        ok = _one_line(p) and "is not empty" in p.stderr and stranger.poll() is None
        return ok, f"{p.stderr.strip()!r}; stranger alive: {stranger.poll() is None}"
    finally:
        stranger.kill()
        stranger.wait()
        wait_for(lambda: _rmdir(d))


def _rmdir(d):
    try:
        os.rmdir(d)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def check_unified_core_files(name, cid):
    """linux.resources.unified may not write cgroup.procs (it would move the host's
    init into the container's cgroup), nor any cgroup.* file but the two limits."""
    b = make_bundle(name, ["true"], {"unified": {"cgroup.procs": "1"}})
    p = rh("create", "--bundle", b, cid, check=False)
    return _one_line(p) and "invalid key 'cgroup.procs'" in p.stderr, p.stderr.strip()


def check_unified_absent_controller(name, cid):
    """A linux.resources.unified key of a controller this cgroup cannot have fails create
    with one line naming the key, before anything is made (cleanup: no cgroup left)."""
    with open(f"{CG}/cgroup.controllers") as f:
        have = f.read().split()
    ctrl = next((c for c in ("rdma", "misc", "hugetlb", "io") if c not in have), "nosuchctl")
    key = f"{ctrl}.max"
    b = make_bundle(name, ["true"], {"unified": {key: "1"}})
    p = rh("create", "--bundle", b, cid, check=False)
    ok = p.returncode == 1 and _one_line(p) and repr(key) in p.stderr and not os.path.isdir(cg_dir(name))
    return ok, f"{key}: {p.stderr.strip()}"


def check_killed_create(name, cid):
    """A create killed at its createRuntime hook (the cgroup made, the init cloned into
    it): state says stopped, and a plain delete removes the cgroup and the init (issue
    10.7; the fault injection runs on the v1 host)."""
    hook = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "kill -9 $PPID"]}]}
    b = make_bundle(name, ["sleep", "100"], edit=lambda c: c.update(hooks=hook))
    p = rh("create", "--bundle", b, cid, check=False)
    made = os.path.isdir(cg_dir(name))
    st = json.loads(rh("state", cid).stdout)["status"]
    d = rh("delete", cid, check=False)
    reap()
    gone = wait_for(lambda: not os.path.isdir(cg_dir(name)), timeout=5)
    ok = p.returncode == -9 and made and st == "stopped" and d.returncode == 0 and gone
    return ok, f"create exit {p.returncode}, cgroup made {made}, state {st}, delete {d.stderr.strip()!r}"


def check_parent_cgroups(name, cid):
    """cgroupsPath /<top>/mid/leaf: delete removes mid and <top> too, which create made."""
    b = make_bundle(name, ["true"], edit=lambda c: c["linux"].update(cgroupsPath=f"/runh-test-v2-{name}/mid/leaf"))
    rh("create", "--bundle", b, cid)
    made = os.path.isdir(f"{cg_dir(name)}/mid")
    rh("start", cid)
    wait_for(lambda: state(cid)["status"] == "stopped")
    rh("delete", cid)
    return made and not os.path.exists(cg_dir(name)), f"made {made}, left {os.path.exists(cg_dir(name))}"


def _top_mount(pid, mountpoint):
    """The mount a path resolves to in pid's mount namespace (the last at that mount
    point in /proc/<pid>/mountinfo): {root, options, fstype, source}. Read from this
    process, so root is relative to the guest's own (the initial) cgroup namespace."""
    top = None
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            pre, post = pre.split(), post.split()
            if pre[4] == mountpoint:
                top = {"root": pre[3], "options": pre[5].split(","), "fstype": post[0], "source": post[1]}
    return top


def _rbind_sys(c, cgroup):
    """The cgroupns_bind_fallback config: the container's cgroup at `cgroup`, and /sys
    bound recursively from the host (as rootless podman does for --network=host), so the
    host's cgroup2 mount is already at the "cgroup" mount's destination."""
    c["linux"]["cgroupsPath"] = cgroup
    c["mounts"] = [{"destination": "/sys", "type": "bind", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
                   if m["destination"] == "/sys" else m for m in c["mounts"]]
    assert any(m["type"] == "cgroup" and m["destination"] == "/sys/fs/cgroup" for m in c["mounts"])
    assert {"type": "cgroup"} in c["linux"]["namespaces"]


def _runc_cgroupns_view(name, parent, hidden):
    """runc 1.1.5 on the same scenario, reported, never judged: its top /sys/fs/cgroup
    mount and whether the hidden names show through it."""
    if not os.path.exists("/usr/bin/runc"):
        return "runc: absent"
    runc = ["/usr/bin/runc", "--root", "/run/runh-test-runc"]
    rcid = cid_of(name) + "-runc"
    b = make_bundle(f"{name}-runc", ["sleep", "60"], edit=lambda c: _rbind_sys(c, f"{parent}/runc"))
    pidfile = f"{WORK}/{name}-runc.pid"
    try:
        p = call(runc, "run", "-d", "--pid-file", pidfile, "--bundle", b, rcid, check=False)
        if p.returncode != 0:
            return f"runc: run failed rc={p.returncode} {p.stderr.strip()[:200]!r}"
        pid = int(open(pidfile).read())
        top = _top_mount(pid, "/sys/fs/cgroup")
        seen = sorted(set(os.listdir(f"/proc/{pid}/root/sys/fs/cgroup")) & hidden)
        return f"runc: top mount {top}, hidden names visible: {seen}"
    finally:
        call(runc, "delete", "--force", rcid, check=False)
        reap()


def check_cgroupns_bind_fallback(name, cid):
    """Issue 17.10: when the kernel refuses the cgroup2 mount in a container with a cgroup
    namespace, the fallback binds the container's own cgroup, never the host's whole
    hierarchy. Here /sys is an rbind of the host's, so the host's cgroup2 mount is already
    at /sys/fs/cgroup and mounting cgroup2 there again fails with EBUSY. The fallback is
    proven taken (the top mount at /sys/fs/cgroup, read from the guest, is a bind: the
    host mount's source, not the "cgroup" a fresh mount by runh has) and rooted at the
    container's cgroup; inside, /sys/fs/cgroup lists the container's process, shows
    neither a sibling cgroup the check made nor any of the host's root-level cgroups (no
    cgroup directory at any depth: the container's cgroup has no children), and
    is read-only as the config's "ro" says. Init, in its cgroup namespace, reads "0::/"
    for its own cgroup: a source taken from there (the bug) is the host's whole tree.
    runc 1.1.5's result on the same scenario is appended, not judged."""
    parent = f"/runh-test-v2-{name}"
    sibling = f"{CG}{parent}/sibling"
    os.makedirs(sibling)
    host_src = _top_mount("self", CG)["source"]
    hidden = {e for e in os.listdir(CG) if os.path.isdir(f"{CG}/{e}")} | {"sibling"}
    pidfile = f"{WORK}/{name}.pid"
    try:
        b = make_bundle(name, ["sleep", "60"], edit=lambda c: _rbind_sys(c, f"{parent}/ctr"))
        rh("run", "-d", "--pid-file", pidfile, "--bundle", b, cid)
        pid = int(open(pidfile).read())
        top = _top_mount(pid, CG)
        fallback = top["fstype"] == "cgroup2" and top["source"] == host_src != "cgroup"
        out = rh("exec", cid, "sh", "-c",
                 "echo LS $(ls -a /sys/fs/cgroup); echo DIRS $(find /sys/fs/cgroup -mindepth 1 -type d); "
                 "echo PROCS $(cat /sys/fs/cgroup/cgroup.procs); "
                 "mkdir /sys/fs/cgroup/probe 2>&1; echo SELF $(cat /proc/self/cgroup)").stdout
        lines = {ln.split(" ", 1)[0]: ln.partition(" ")[2] for ln in out.splitlines()}
        listed = set(lines.get("LS", "").split())
        seen = sorted(listed & hidden)
        host_procs = cg_read(f"{name}/ctr", "cgroup.procs").split()
        ok = (fallback and top["root"] == f"{parent}/ctr" and "ro" in top["options"]
              and "cgroup.procs" in listed and not seen and lines.get("DIRS") == ""
              and "1" in lines.get("PROCS", "").split()
              and str(pid) in host_procs and "Read-only file system" in out and lines.get("SELF") == "0::/")
        detail = (f"top mount at {CG} (guest's view) {top}, fallback bind={fallback}; "
                  f"hidden names visible inside: {seen}; cgroup dirs inside: {lines.get('DIRS', '')[:120]!r}; "
                  f"inside cgroup.procs={lines.get('PROCS')!r}; "
                  f"mkdir: {'refused (read-only)' if 'Read-only file system' in out else 'allowed'}; "
                  f"/proc/self/cgroup {lines.get('SELF')!r}")
        rh("delete", "--force", cid)
        reap()
        return ok, f"{detail}; {_runc_cgroupns_view(name, parent, hidden)}"
    finally:
        rh("delete", "--force", cid, check=False)
        reap()
        for d in (sibling, f"{CG}{parent}/runc", f"{CG}{parent}"):
            wait_for(lambda: _rmdir(d), timeout=5)


def check_limits_before_hooks(name, cid):
    """The limits are written while init sets up (container.py on_setup), yet before any
    create hook runs: a createRuntime hook reads them from the container's cgroup."""
    seen = f"{WORK}/{name}-seen"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"cat {CG}/runh-test-v2-{name}/pids.max "
                                                    f"{CG}/runh-test-v2-{name}/memory.max > {seen}"]}
    b = make_bundle(name, ["true"], {"pids": {"limit": 33}, "memory": {"limit": 64 * MiB}},
                    lambda c: c.update(hooks={"createRuntime": [hook]}))
    p = rh("run", "--bundle", b, cid, check=False)
    try:
        got = open(seen).read().split()
    except OSError:
        got = []
    return p.returncode == 0 and got == ["33", str(64 * MiB)], f"rc={p.returncode} seen={got} {p.stderr.strip()[:80]!r}"


CHECKS = [check_memory_oom, check_pids_max, check_cpu_max, check_cpuset, check_freeze,
          check_kill_all, check_kill_all_stopped, check_devices, check_update_memory, check_stats_move,
          check_features, check_exec_cgroup, check_path_escape, check_foreign_cgroup,
          check_unified_core_files, check_unified_absent_controller, check_killed_create,
          check_parent_cgroups, check_cgroupns_bind_fallback, check_limits_before_hooks]


def cleanup(name, cid):
    """Force-delete the container; '' when nothing is left, else what is."""
    left = []
    p = rh("delete", "--force", cid, check=False, timeout=CALL_TIMEOUT)
    if p.returncode != 0 and "does not exist" not in p.stderr:
        left.append(f"delete: {p.stderr.strip()}")
    reap()
    if os.path.isdir(cg_dir(name)):
        left.append(f"cgroup {cg_dir(name)} left")
    if os.path.isdir(f"{ROOT}/{cid}"):
        left.append(f"state dir {ROOT}/{cid} left")
    return "; ".join(left)


def main(names):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    os.makedirs(WORK, exist_ok=True)
    with open(f"{CG}/cgroup.controllers") as f:
        print(f"MODE controllers={f.read().split()}", flush=True)
    t0 = time.time()
    default_spec()  # `runh spec` once, before the first timed check
    print(f"SPEC {time.time() - t0:.2f}s", flush=True)
    run_all(CHECKS, names, CHECK_TIMEOUT, cleanup)


if __name__ == "__main__":
    main(sys.argv[1:])
