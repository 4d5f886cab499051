"""The cgroup v2 checks, run inside the pure-v2 guest (tests/test_cgroups_v2_guest.py
starts it with one vm-run). Each check gets its own cgroup runh-test-v2-<name>, a time
limit (SIGALRM), and prints one line "CHECK <name> PASS|FAIL|SKIP <detail>".

Until the container lifecycle is wired to the manager, the "container" of each check is
a busybox process placed in the manager's cgroup; with RUNH_CONTAINERS=1 the checks that
need a real container (OOM exit code, events --stats) run `runh` itself.
"""
import os
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from runh import cgroups  # noqa: E402
from runh.cgroups import _fs  # noqa: E402

BB = "/bin/busybox"
CHECK_TIMEOUT = 30


class Timeout(Exception):
    pass


def _alarm(*_):
    raise Timeout()


def spawn(m, cmd, **kw):
    """busybox sh -c cmd, moved into the cgroup before it execs."""
    path = m.path
    return subprocess.Popen([BB, "sh", "-c", cmd], start_new_session=True,
                            preexec_fn=lambda: _fs.write(path, [("cgroup.procs", str(os.getpid()))]),
                            **kw)


def wait_for(pred, timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def rd(m, f):
    return open(f"{m.path}/{f}").read()


def check_memory_oom(m):
    m.apply({"memory": {"limit": 32 << 20, "swap": 32 << 20}}, devices=[])
    before = m.oom_count()
    p = spawn(m, f"{BB} dd if=/dev/zero of=/dev/null bs=64M count=1")
    rc = p.wait(timeout=20)
    after = m.oom_count()
    ok = rc == -9 and after > before
    return ok, f"rc={rc} (shell 137 = 128+9) oom_kill {before}->{after} memory.max={rd(m, 'memory.max').strip()}"


def check_pids_max(m):
    m.apply({"pids": {"limit": 3}}, devices=[])
    p = spawn(m, "for i in 1 2 3 4 5 6; do sleep 3 & done; wait", stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=20)
    events = rd(m, "pids.events")
    ok = b"fork" in err.lower() or "max 0" not in events
    return ok, f"pids.events {events.split()} stderr={err[:60]!r}"


def check_cpu_max(m):
    m.apply({"cpu": {"quota": 20000, "period": 100000}}, devices=[])
    p = spawn(m, "while :; do :; done")
    time.sleep(1.5)
    p.kill()
    p.wait()
    st = dict(line.split() for line in rd(m, "cpu.stat").splitlines())
    ok = int(st.get("nr_throttled", 0)) > 0 and rd(m, "cpu.max").split() == ["20000", "100000"]
    return ok, f"cpu.max={rd(m, 'cpu.max').strip()} nr_periods={st.get('nr_periods')} nr_throttled={st.get('nr_throttled')} throttled_usec={st.get('throttled_usec')}"


def check_cpuset(m):
    if os.cpu_count() < 2:
        return None, "needs 2 cpus"
    m.apply({"cpu": {"cpus": "1", "mems": "0"}}, devices=[])
    p = spawn(m, "sleep 10")
    time.sleep(0.2)
    allowed = [line for line in open(f"/proc/{p.pid}/status") if line.startswith("Cpus_allowed_list")]
    p.kill()
    p.wait()
    ok = allowed and allowed[0].split()[1] == "1"
    return ok, f"cpuset.cpus.effective={rd(m, 'cpuset.cpus.effective').strip()} {allowed}"


def check_freeze(m):
    m.apply({}, devices=[])
    p = spawn(m, "sleep 30")
    m.freeze()
    frozen = rd(m, "cgroup.freeze").strip(), "frozen 1" in rd(m, "cgroup.events"), m.is_frozen()
    state = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[0]
    m.thaw()
    thawed = rd(m, "cgroup.freeze").strip(), "frozen 0" in rd(m, "cgroup.events"), m.is_frozen()
    p.kill()
    p.wait()
    ok = frozen == ("1", True, True) and thawed == ("0", True, False)
    return ok, f"frozen={frozen} proc_state={state} thawed={thawed}"


def check_kill_all(m):
    m.apply({}, devices=[])
    p = spawn(m, "sleep 30 & sleep 30 & sleep 30 & wait")
    wait_for(lambda: len(m.pids()) == 4)
    n = len(m.pids())
    used_kill_file = os.path.exists(f"{m.path}/cgroup.kill")
    m.kill_all(9)
    rc = p.wait(timeout=5)
    gone = wait_for(lambda: not m.pids())
    return gone and rc == -9 and n == 4, f"pids before={n} cgroup.kill={used_kill_file} rc={rc} empty={gone}"


def check_devices(m):
    # Subshells: a failed redirection on the special builtin ":" exits the shell itself.
    probe = ("(: </dev/null) && echo null=ok || echo null=denied;"
             "(: </dev/kmsg) && echo kmsg=ok || echo kmsg=denied")
    try:
        m.apply({}, devices=[])  # defaults only: /dev/kmsg (1:11) is not listed
    except Exception as e:
        return None, f"device filter unavailable: {e}"
    out1 = spawn(m, probe, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).communicate(timeout=10)[0]
    m.update({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]})
    out2 = spawn(m, probe, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).communicate(timeout=10)[0]
    ok = out1.split() == [b"null=ok", b"kmsg=denied"] and out2.split() == [b"null=ok", b"kmsg=ok"]
    return ok, f"before update {out1.split()} after {out2.split()}"


def check_update_memory(m):
    m.apply({"memory": {"limit": 64 << 20}}, devices=[])
    p = spawn(m, "sleep 30")
    before = rd(m, "memory.max").strip()
    m.update({"memory": {"limit": 48 << 20}})
    after = rd(m, "memory.max").strip()
    p.kill()
    p.wait()
    return before == str(64 << 20) and after == str(48 << 20), f"memory.max {before} -> {after}"


def check_stats_move(m):
    m.apply({"pids": {"limit": 50}}, devices=[])
    p = spawn(m, "while :; do :; done")
    time.sleep(0.3)
    s1 = m.stats()
    time.sleep(0.5)
    s2 = m.stats()
    p.kill()
    p.wait()
    t1, t2 = s1["cpu"]["usage"]["total"], s2["cpu"]["usage"]["total"]
    ok = t2 > t1 > 0 and s2["pids"]["limit"] == 50 and s2["memory"]["usage"]["usage"] > 0
    return ok, f"cpu total {t1}->{t2} ns, pids={s2['pids']}, memory usage={s2['memory']['usage']}"


CHECKS = [check_memory_oom, check_pids_max, check_cpu_max, check_cpuset, check_freeze,
          check_kill_all, check_devices, check_update_memory, check_stats_move]


def main(names):
    print(f"MODE {cgroups.mode()} core={_fs._HAVE_CORE}", flush=True)
    signal.signal(signal.SIGALRM, _alarm)
    for fn in CHECKS:
        name = fn.__name__[len("check_"):]
        if names and name not in names:
            continue
        m = cgroups.manager_for({"cgroupsPath": f"/runh-test-v2-{name}"}, name)
        t0 = time.time()
        signal.alarm(CHECK_TIMEOUT)
        try:
            m.create()
            ok, detail = fn(m)
        except Timeout:
            ok, detail = False, f"timed out after {CHECK_TIMEOUT}s"
        except Exception:
            ok, detail = False, traceback.format_exc().replace("\n", " | ")
        finally:
            signal.alarm(0)
            try:
                m.kill_all(9)
                wait_for(lambda: not m.pids(), 5)
                m.remove()
            except Exception as e:
                detail += f" (cleanup: {e})"
        verdict = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        print(f"CHECK {name} {verdict} {time.time() - t0:.2f}s {detail}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
