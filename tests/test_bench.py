"""The start-up benchmark (runh.bench) end to end, with small N. Timings are never asserted:
only that it runs, reports, writes valid JSON and a PNG, fails cleanly, and leaves nothing.

Each run is a subprocess (the bench makes itself a subreaper and, on a hybrid host,
re-runs itself in a private cgroup2 mount namespace) with TMPDIR pointed at the test's own
directory, so "nothing left behind" is checked on a directory no one else uses.
"""

import json
import re
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PYDIR = os.path.join(REPO, "python")
sys.path.insert(0, PYDIR)

from runh.bench import bundle as bbundle, environment, report  # noqa: E402

pytestmark = pytest.mark.bench

SMALL = ["-n", "2", "-w", "1", "-c", "2", "--rounds", "1", "--rss-iterations", "1", "-q"]
RUNH = os.environ.get("RUNH", os.path.join(REPO, ".venv", "bin", "runh"))


@pytest.fixture
def short_tmp():
    """A private TMPDIR with a short path: runtimes put AF_UNIX sockets under it."""
    import tempfile
    d = tempfile.mkdtemp(prefix="rhbt", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def bench(tmpdir, *args, timeout=600):
    tmp = tmpdir
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=PYDIR)
    p = subprocess.run([sys.executable, "-m", "runh.bench", *args], capture_output=True,
                       text=True, timeout=timeout, env=env)
    return p, tmp


def cgroup_dirs():
    """Top-level cgroup2 dirs, where runtimes put containers without a cgroupsPath."""
    for top in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(top, "cgroup.procs")):
            return {d for d in os.listdir(top) if re.match(r"b\d+-\d", d)}
    return set()


def bench_processes(tmp):
    """Processes whose command line names the test's temp dir (runtimes and inits)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(tmp).encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def need(*names):
    missing = [n for n in names if not shutil.which(n)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    if os.geteuid() != 0:
        pytest.skip("runtimes need root")


def need_runh(short_tmp):
    """Skip, saying why, unless a quick `runh run` works (its probe dir is removed)."""
    why = runh_works(short_tmp)
    shutil.rmtree(os.path.join(short_tmp, "probe"), ignore_errors=True)
    if why:
        pytest.skip(why)


def runh_works(tmp_path):
    """A quick `runh run` of the bench's own bundle: runh may not work yet."""
    if not os.access(RUNH, os.X_OK):
        return f"{RUNH} not built (make build)"
    work = os.path.join(tmp_path, "probe")
    b = bbundle.Bundles(work)
    path = b.make("probe")
    root = os.path.join(work, "root")
    try:
        p = subprocess.run([RUNH, "--root", root, "run", "--bundle", path, "b0-probe"],
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "runh run timed out"
    finally:
        subprocess.run([RUNH, "--root", root, "delete", "--force", "b0-probe"],
                       capture_output=True)
    if p.returncode != 0:
        return f"runh run fails: {p.stderr.strip()[-200:]}"
    return None


def check_outputs(out, runtimes, scenarios):
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["meta"]["runtimes"]) >= set(runtimes)
    assert set(doc["scenarios"]) == set(scenarios)
    for rt in runtimes:
        st = doc["scenarios"]["run"]["metrics"]["wall"]["runtimes"][rt]
        assert st["n"] == 2 and len(st["samples"]) == 2
        assert st["min"] <= st["median"] <= st["p95"] <= st["max"]
        assert "ratio" in st
        lc = doc["scenarios"]["lifecycle"]["metrics"]
        for metric in ("create", "start", "wait", "delete", "total", "init_vmrss"):
            assert len(lc[metric]["runtimes"][rt]["samples"]) == 2, (rt, metric)
        assert len(doc["scenarios"]["concurrent"]["metrics"]["throughput"]["runtimes"][rt]["samples"]) == 1
    base = doc["meta"]["baseline"]
    assert doc["scenarios"]["run"]["metrics"]["wall"]["runtimes"][base]["ratio"] == 1.0
    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "results.txt").read_text().startswith("runh bench:")
    return doc


def check_clean(tmp, before_cgroups):
    assert os.listdir(tmp) == [], f"left in TMPDIR: {os.listdir(tmp)}"
    assert bench_processes(tmp) == []
    assert cgroup_dirs() - before_cgroups == set()


def test_runc_crun_end_to_end(tmp_path, short_tmp):
    need("runc", "crun")
    before = cgroup_dirs()
    out = tmp_path / "out"
    scen = ["run", "lifecycle", "exec", "concurrent", "run-seccomp"]
    p, tmp = bench(short_tmp, "-r", "runc", "-r", "crun", *SMALL, "-o", str(out))
    assert p.returncode == 0, p.stderr
    doc = check_outputs(out, ["runc", "crun"], scen)
    assert doc["scenarios"]["run"]["failures"] == {}
    assert "runc" in p.stdout and "crun" in p.stdout and "vs runc" in p.stdout
    if environment.cgroup_mode() != "v2":
        # On a hybrid host it says it moved into a private cgroup2 namespace.
        assert doc["meta"]["cgroup"]["private_cgroup2_namespace"] is True
        assert "private mount namespace" in p.stdout
    check_clean(tmp, before)


def test_with_runh(tmp_path, short_tmp):
    need("runc", "crun")
    need_runh(short_tmp)
    before = cgroup_dirs()
    out = tmp_path / "out"
    p, tmp = bench(short_tmp, "-r", f"runh={RUNH}", "-r", "runc", "-r", "crun", *SMALL,
                   "-s", "run,lifecycle,exec,concurrent", "-o", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["scenarios"]["run"]["metrics"]["wall"]["runtimes"]["runh"]["n"] == 2
    # Every runtime's executables were dropped from the page cache first, runh-init too.
    assert set(environment.executables(environment.Runtime("runh", RUNH, True))) <= \
        set(doc["meta"]["page_cache_dropped"])
    # The floor under runh's create and run, measured in the same run: its launcher's
    # interpreter starting bare, and create/run less that.
    floor = doc["meta"]["interpreter_start"]["runh"]
    # One per timed round of each scenario (run, lifecycle, exec, concurrent).
    assert floor["argv"][1:] == ["-I", "-S", "-c", "pass"] and floor["n"] == 2 + 2 + 2 + 1
    assert set(floor["per_scenario"]) == {"run", "lifecycle", "exec", "concurrent"}
    assert os.path.realpath(floor["argv"][0]) == os.path.realpath(
        environment.interpreter(environment.Runtime("runh", RUNH, True)))
    above = doc["above_interpreter"]["runh"]["lifecycle.create"]
    assert above["above"] == above["median"] - floor["per_scenario"]["lifecycle"] and above["baseline"] > 0
    # Peak RSS too, through GNU time in the RSS passes, as the scenarios' own.
    if shutil.which("time") or os.path.exists("/usr/bin/time"):
        rss = doc["above_interpreter"]["runh"]["run.peak_rss"]
        assert rss["unit"] == "kib" and 1000 < floor["peak_rss_kib"] < rss["median"]
    assert "runh above its interpreter's start" in (out / "results.txt").read_text()
    assert "runc" not in doc["meta"]["interpreter_start"]
    # exec may not exist yet in runh: then it is reported as a failure, not fatal.
    ex = doc["scenarios"]["exec"]
    assert "runh" in ex["failures"] or "runh" in ex["metrics"]["wall"]["runtimes"]
    check_clean(tmp, before)


def test_cpu_split_script(short_tmp):
    """benches/cpu_split.py: CPU per run for each runtime and runh's bare interpreter, and
    with perf the kernel/user split; it leaves nothing behind."""
    need("crun")
    need_runh(short_tmp)
    before = cgroup_dirs()
    env = dict(os.environ, TMPDIR=str(short_tmp))
    p = subprocess.run([sys.executable, os.path.join(REPO, "benches", "cpu_split.py"), "-n", "2", "-w", "0",
                        "-c", "1,2", "-r", f"runh={RUNH}", "-r", "crun"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for name in ("runh ", "runh's python3 -I -S", "crun "):
        rows = [ln for ln in lines if ln.startswith(name)]
        assert len(rows) == (3 if shutil.which("perf") else 2), p.stdout  # C=1, C=2, perf
        assert all(float(ln.split()[-1].rstrip("%")) > 0 for ln in rows), p.stdout
    check_clean(short_tmp, before)


def test_page_cache_settled_for_each_runtimes_executables(tmp_path):
    """A just-built runh-init sits in the page cache in the write path's large folios, and
    fault-around then maps more of it into the parked init: its VmRSS read 308 KiB after a
    build and 244 KiB after POSIX_FADV_DONTNEED (benches/results/issue16/README.md). The
    bench drops each runtime's executables from the cache before it measures, so a figure
    does not depend on how recently a binary was written."""
    rt = environment.Runtime("runh", RUNH, True)
    files = environment.executables(rt)
    assert files[0] == os.path.realpath(RUNH)
    assert os.path.basename(files[-1]) == "runh-init" and os.path.isfile(files[-1])
    # Any other binary: only itself (crun, runc, youki exec or clone themselves).
    other = environment.Runtime("x", shutil.which("true"), True)
    assert environment.executables(other) == [os.path.realpath(shutil.which("true"))]
    # Dropping works on a file this test just wrote, and says which files it dropped.
    f = tmp_path / "fresh"
    f.write_bytes(b"\x7fELF" + os.urandom(256 << 10))
    assert environment.drop_page_cache([str(f), str(tmp_path / "missing")]) == [str(f)]
    assert _resident_pages(str(f)) == 0


def test_interpreter_is_the_launchers():
    """The interpreter timed as runh's floor is the one its launcher execs: the python3
    beside the launcher's real path (a venv's), and nothing for a runtime without a
    runh-init."""
    rt = environment.Runtime("runh", RUNH, True)
    assert environment.interpreter(rt) == os.path.join(os.path.dirname(os.path.realpath(RUNH)), "python3")
    assert environment.interpreter(environment.Runtime("x", shutil.which("true"), True)) is None


def test_above_interpreter_table():
    """create and run less the interpreter's median, beside the baseline's, in the JSON
    and the table; nothing for a runtime with no interpreter measured."""
    meta = {"baseline": "crun", "iterations": 2, "warmup": 0,
            "host": {"kernel": "k", "cpus": 2, "loadavg_1m_before": 0, "loadavg_1m_after": 0},
            "cgroup": {"host_mode": "v2", "note": ""}, "runtimes": {},
            "interpreter_start": {"runh": dict(report.summarize([8.0, 9.0, 10.0]), argv=["py", "-I", "-S", "-c", "pass"],
                                               per_scenario={"lifecycle": 8.5, "run": 10.0},
                                               peak_rss_kib=7500,
                                               samples=[8.0, 9.0, 10.0])}}

    class Sc:
        name, description, notes = "lifecycle", "d", []
        metrics = {"create": ("ms", False)}

    class Run:
        name, description, notes = "run", "d", []
        metrics = {"peak_rss": ("KiB", False)}
    samples = {"lifecycle": {"runh": {"create": [15.0, 16.0]}, "crun": {"create": [7.0, 8.0]}},
               "run": {"runh": {"peak_rss": [10700]}, "crun": {"peak_rss": [3300]}}}
    doc = report.build(meta, [Sc, Run], samples, {}, "crun")
    assert doc["above_interpreter"] == {"runh": {
        "lifecycle.create": {"unit": "ms", "median": 15.5, "interpreter": 8.5, "above": 7.0, "baseline": 7.5},
        "run.peak_rss": {"unit": "kib", "median": 10700, "interpreter": 7500, "above": 3200, "baseline": 3300}}}
    text = report.table(doc)
    assert "lifecycle.create       15.50 - 8.50 = 7.00 ms; crun 7.50 ms" in text
    assert "run.peak_rss           10700 - 7500 = 3200 KiB; crun 3300 KiB" in text
    assert "runh's interpreter start (`py -I -S -c pass`, one per round): median 9.00 ms" in text
    assert "(medians: lifecycle 8.50, run 10.00)" in text


def _resident_pages(path):
    """Pages of `path` in the page cache: mincore(2) over a mapping of it."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, 1, 2, fd, 0)  # PROT_READ, MAP_PRIVATE
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    finally:
        os.close(fd)
    try:
        vec = (ctypes.c_ubyte * ((size + 4095) // 4096))()
        assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
        return sum(b & 1 for b in vec)
    finally:
        libc.munmap(addr, size)


def test_state_dir_puts_every_root_there_and_leaves_nothing(tmp_path, short_tmp):
    """--state-dir: the runtimes' --root dirs go into a temp dir under it (the report
    says where and on what filesystem), and it is removed afterwards."""
    need("crun")
    need_runh(short_tmp)
    before = cgroup_dirs()
    states = tmp_path / "states"
    states.mkdir()
    out = tmp_path / "out"
    p, tmp = bench(short_tmp, "-r", f"runh={RUNH}", "-r", "crun", *SMALL, "-s", "lifecycle",
                   "--state-dir", str(states), "-o", str(out), "--no-plot")
    assert p.returncode == 0, p.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["state_dir"]["path"] == str(states)
    assert doc["meta"]["state_dir"]["fstype"] not in ("", "?")
    assert f"state roots (--root): {states} (" in (out / "results.txt").read_text()
    assert list(states.iterdir()) == []
    check_clean(tmp, before)


@pytest.mark.cri
def test_cri_scenario(tmp_path, short_tmp):
    """`-s cri`: a private containerd, one handler per runtime, pods interleaved; every
    probe is a sample; containerd, its shims, pods and pod cgroups are gone afterwards."""
    need("runc", "containerd", "containerd-shim-runc-v2")
    pytest.importorskip("grpc_tools")
    need_runh(short_tmp)
    run_existed = os.path.exists("/run/containerd")
    out = tmp_path / "out"
    p, tmp = bench(short_tmp, "-r", f"runh={RUNH}", "-r", "runc", "-s", "cri", "-n", "2", "-w", "0",
                   "--probes", "3", "-q", "--no-plot", "-o", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads((out / "results.json").read_text())
    sc = doc["scenarios"]["cri"]
    assert sc["failures"] == {}, sc["failures"]
    for rt in ("runh", "runc"):
        assert sc["metrics"]["exec_sync"]["runtimes"][rt]["n"] == 2 * 3
        st = sc["metrics"]["pod_start"]["runtimes"][rt]
        assert st["n"] == 2 and st["median"] <= st["p99"] <= st["max"]
        assert sc["metrics"]["teardown"]["runtimes"][rt]["n"] == 2
    assert doc["meta"]["cri_probes_per_pod"] == 3
    if environment.cgroup_mode() == "hybrid":
        assert doc["meta"]["cgroup"]["private_namespace"] == "v1"
    assert "exec_sync" in p.stdout and "p99" in p.stdout
    assert os.listdir(tmp) == [], f"left in TMPDIR: {os.listdir(tmp)}"
    assert bench_processes(tmp) == [] and bench_processes("/tmp/rhc") == []
    left = [f"{top}/{d}" for top in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup")
            if os.path.isdir(top) for d in os.listdir(top) if re.match(r"rhb\d+-", d)]
    assert left == []
    assert os.path.exists("/run/containerd") == run_existed


def test_bad_runtime_path_fails_cleanly(tmp_path, short_tmp):
    out = tmp_path / "out"
    p, tmp = bench(short_tmp, "-r", "/nonexistent/runtime", *SMALL, "-o", str(out), timeout=60)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "/nonexistent/runtime" in p.stderr and "not found" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert os.listdir(tmp) == []


def test_failing_runtime_is_reported_not_fatal(tmp_path, short_tmp):
    need("runc")
    before = cgroup_dirs()
    out = tmp_path / "out"
    p, tmp = bench(short_tmp, "-r", "runc", "-r", "broken=/bin/false", *SMALL,
                   "-s", "run,exec", "--no-plot", "-o", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads((out / "results.json").read_text())
    assert "broken" in doc["scenarios"]["run"]["failures"]
    assert "broken" in doc["scenarios"]["exec"]["failures"]
    assert doc["scenarios"]["run"]["metrics"]["wall"]["runtimes"]["runc"]["n"] == 2
    assert "FAILED broken" in p.stdout
    assert not (out / "results.png").exists()
    check_clean(tmp, before)


def test_bad_options_exit_2(tmp_path, short_tmp):
    p, _ = bench(short_tmp, "-s", "nosuch", timeout=60)
    assert p.returncode == 2 and "unknown scenario" in p.stderr
    p, _ = bench(short_tmp, "-r", "runc", "-b", "crun", "-q", timeout=60)
    assert p.returncode == 2 and "baseline crun" in p.stderr


# ------------------------------------------------------------------ pure functions

MOUNTINFO_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
MOUNTINFO_V2 = "31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
MOUNTINFO_V1 = MOUNTINFO_HYBRID.splitlines(True)[0] + MOUNTINFO_HYBRID.splitlines(True)[1]
# After the bench's `mount -t cgroup2` over the tmpfs, the last mount on the point wins.
MOUNTINFO_WRAPPED = MOUNTINFO_HYBRID + "90 31 0:38 / /sys/fs/cgroup rw - cgroup2 none rw\n"


@pytest.mark.parametrize("text,mode", [(MOUNTINFO_HYBRID, "hybrid"), (MOUNTINFO_V2, "v2"),
                                       (MOUNTINFO_V1, "v1"), (MOUNTINFO_WRAPPED, "v2"),
                                       ("", "none")])
def test_cgroup_mode(tmp_path, text, mode):
    f = tmp_path / "mountinfo"
    f.write_text(text)
    assert environment.cgroup_mode(str(f)) == mode


def test_stats():
    assert report.percentile([1, 2, 3, 4], 0.5) == 2.5
    s = report.summarize([5, None, 1, 3])
    assert (s["n"], s["median"], s["min"], s["max"]) == (3, 3, 1, 5)
    assert report.summarize([None]) is None


def test_static_busybox_check(tmp_path):
    if os.path.exists(bbundle.BUSYBOX):
        assert bbundle._is_static_elf(bbundle.BUSYBOX)
    assert not bbundle._is_static_elf(sys.executable)  # a dynamic interpreter
    bad = tmp_path / "bb"
    bad.write_bytes(b"#!/bin/sh\n")
    bad.chmod(0o755)
    with pytest.raises(bbundle.BundleError):
        bbundle.build_rootfs(str(tmp_path / "rootfs"), busybox=str(bad))


def test_seccomp_profile_shape():
    profile, note = bbundle.seccomp_profile()
    assert "syscalls" in profile and note
    names = {n for rule in profile["syscalls"] for n in rule["names"]}
    if profile["defaultAction"] == "SCMP_ACT_ERRNO":
        assert {"execve", "exit_group", "read"} <= names
        assert not names & bbundle.SECCOMP_DENY
