#!/usr/bin/env python3
"""The smallest memory.max under which `run` of /bin/true succeeds: runh vs crun vs runc,
in the same pure cgroup v2 guest run (../shared/vm/vm-run), on the same busybox bundle.

    .venv/bin/python benches/cgroup_memory_min.py [--lo 256] [--hi 16384] [--step 64] [--repeat 2]

What it measures: everything charged to the container's cgroup from the moment its first
process enters it until /bin/true exits (the runtime's own init code, its page tables and
kernel objects, the namespaces and mounts set up in the container, and the exec). runc's
`runc init` (a Go binary) is known to OOM under ~10 MiB (runc #1980, #3986); crun's
README runs a container under 512 KiB. runh's init is a static ~640 KB runh-init exec'd
from a sealed memfd (the memfd's pages are charged to the runh process that wrote them,
outside the container's cgroup), so no Python runs inside the limit.

Method: for each runtime, bisect over [lo, hi] KiB in `step` KiB units (below lo in 4 KiB
pages if lo already works); a limit "works" when `repeat` runs in a row exit 0. First,
`cat /sys/fs/cgroup/memory.max` in the container under an 8 MiB limit shows that the
runtime really applies the limit. memory.swap.max is set to 0 too (OCI swap = limit), so
nothing is pushed to swap to fit. The guest's cgroup v2 rounds memory.max down to pages.
Each run has a timeout; a failed run is force-deleted and its cgroup removed.

The host side starts one vm-run with `--guest`, parses its RESULT lines, prints a table
and writes benches/results/cgroup_memory_min-<UTC time>.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

KiB = 1024
RUNTIMES = {
    "runh": os.path.join(REPO, ".venv", "bin", "runh"),
    "crun": "/usr/bin/crun",
    "runc": "/usr/sbin/runc",
}
CGPATH = "/runh-bench-memmin"
WORK = "/tmp/rh-memmin"


# ------------------------------------------------------------------------------ guest side

def _rmdir_cgroup():
    try:
        os.rmdir("/sys/fs/cgroup" + CGPATH)
    except FileNotFoundError:
        pass
    except OSError:
        time.sleep(0.2)
        try:
            os.rmdir("/sys/fs/cgroup" + CGPATH)
        except OSError:
            pass


def one_run(rt, binary, bundle, limit, n, timeout):
    """Run /bin/true under memory.max=limit; (ok, detail)."""
    from bundle import edit_config

    def ed(c):
        c["linux"]["resources"]["memory"] = {"limit": limit, "swap": limit}

    edit_config(bundle, ed)
    cid = f"mm-{rt}-{n}"
    root = f"/run/memmin-{rt}"
    try:
        p = subprocess.run([binary, "--root", root, "run", cid], cwd=bundle, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        ok, detail = p.returncode == 0, f"rc={p.returncode} {p.stderr.decode(errors='replace').strip()[-160:]}"
    except subprocess.TimeoutExpired:
        ok, detail = False, f"timed out after {timeout}s"
    subprocess.run([binary, "--root", root, "delete", "--force", cid], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=timeout)
    # Reap anything a failed run left to us (we are a subreaper), then drop the cgroup.
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    _rmdir_cgroup()
    return ok, detail


def limit_seen(rt, binary, bundle, timeout):
    """memory.max as the container sees it under an 8 MiB limit (enough for all three):
    proof that the runtime really applies the limit it is being measured under."""
    from bundle import edit_config

    edit_config(bundle, lambda c: c["linux"]["resources"].update(memory={"limit": 8 << 20, "swap": 8 << 20}))
    cid = f"mm-{rt}-check"
    root = f"/run/memmin-{rt}"
    try:
        p = subprocess.run([binary, "--root", root, "run", cid], cwd=bundle, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        out = p.stdout.strip() or f"rc={p.returncode} {p.stderr.strip()[-120:]}"
    except subprocess.TimeoutExpired:
        out = "timed out"
    subprocess.run([binary, "--root", root, "delete", "--force", cid], capture_output=True, timeout=timeout)
    _rmdir_cgroup()
    print(f"LIMIT {rt} {out}", flush=True)
    return out


def bisect(rt, binary, bundle, lo, hi, step, repeat, timeout, log):
    counter = [0]

    def works(kib):
        for _ in range(repeat):
            counter[0] += 1
            ok, detail = one_run(rt, binary, bundle, kib * KiB, counter[0], timeout)
            log.append({"runtime": rt, "kib": kib, "ok": ok, "detail": detail})
            print(f"TRY {rt} {kib} KiB {'ok' if ok else 'FAIL ' + detail}", flush=True)
            if not ok:
                return False
        return True

    if not works(hi):
        return None, counter[0], step
    if works(lo):
        # Below the range: go on down to one page, in page steps.
        hi, lo, step = lo, 0, 4
    # Invariant: lo fails (0 always does), hi works; both on the step grid.
    lo_u, hi_u = lo // step, hi // step
    while hi_u - lo_u > 1:
        mid = (lo_u + hi_u) // 2
        if works(mid * step):
            hi_u = mid
        else:
            lo_u = mid
    return hi_u * step, counter[0], step


def guest(a):
    import ctypes

    from bundle import build_bundle

    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    os.makedirs(WORK, exist_ok=True)

    def ed(c):
        # crun 1.8.1 refuses an ociVersion it does not know ("unknown version specified");
        # runh and runc take any, so all three get the version crun knows.
        c["ociVersion"] = "1.0.2"
        c["linux"]["cgroupsPath"] = CGPATH
        c["linux"].setdefault("resources", {})

    bundle = build_bundle(f"{WORK}/bundle", args=["/bin/true"], edit=ed)
    check = build_bundle(f"{WORK}/check", args=["/bin/cat", "/sys/fs/cgroup/memory.max"], edit=ed)
    print(f"KERNEL {os.uname().release}", flush=True)
    for rt, binary in RUNTIMES.items():
        if a.only and rt not in a.only.split(","):
            continue
        if not os.access(binary, os.X_OK):
            print("RESULT " + json.dumps({"runtime": rt, "error": f"{binary} missing"}), flush=True)
            continue
        ver = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
        seen = limit_seen(rt, binary, check, a.timeout)
        log = []
        t0 = time.time()
        kib, runs, step = bisect(rt, binary, bundle, a.lo, a.hi, a.step, a.repeat, a.timeout, log)
        # The answer once more, and one step below it, so the table shows the edge.
        below = None
        if kib is not None and kib > step:
            below, _ = one_run(rt, binary, bundle, (kib - step) * KiB, 9999, a.timeout)
        print("RESULT " + json.dumps({"runtime": rt, "version": ver[0] if ver else "", "min_kib": kib,
                                      "memory.max_inside_at_8MiB": seen,
                                      "one_step_below_ok": below, "step_kib": step, "runs": runs,
                                      "seconds": round(time.time() - t0, 1), "tries": log}), flush=True)


# ------------------------------------------------------------------------------- host side

def vm_run_path():
    for p in (os.path.join(REPO, "..", "shared", "vm", "vm-run"), os.path.join(REPO, "shared", "vm", "vm-run")):
        if os.access(p, os.X_OK):
            return os.path.abspath(p)
    return None


def host(a):
    vm = vm_run_path()
    if vm is None:
        sys.exit("no ../shared/vm/vm-run: this benchmark needs the pure cgroup v2 guest")
    py = os.path.join(REPO, ".venv", "bin", "python")
    args = f"--lo {a.lo} --hi {a.hi} --step {a.step} --repeat {a.repeat} --timeout {a.timeout}"
    if a.only:
        args += f" --only {a.only}"
    cmd = f"timeout {a.vm_timeout - 30} {py} -u {os.path.abspath(__file__)} --guest {args}"
    env = dict(os.environ, VM_TIMEOUT=str(a.vm_timeout))
    t0 = time.time()
    p = subprocess.run([vm, "-C", REPO, cmd], capture_output=True, text=True, env=env,
                       timeout=a.vm_timeout + 60)
    results, kernel = [], ""
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            results.append(json.loads(line[7:]))
        elif line.startswith("KERNEL "):
            kernel = line[7:]
        elif line.startswith(("TRY ", "LIMIT ")) and a.verbose:
            print(line)
    if not results:
        sys.exit(f"no results (vm-run rc={p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    lines = []
    say = lines.append
    say(f"smallest memory.max for `run /bin/true` (guest kernel {kernel}, cgroup v2, "
        f"{a.step} KiB steps, {a.repeat} runs per point)")
    say(f"{'runtime':8} {'min KiB':>8} {'min MiB':>8} {'1 step below':>13} {'runs':>5}  {'memory.max inside (8 MiB)':>26}  version")
    for r in results:
        if "error" in r:
            say(f"{r['runtime']:8} {r['error']}")
            continue
        k = r["min_kib"]
        say(f"{r['runtime']:8} {k if k is not None else '>' + str(a.hi):>8} "
              f"{(k / 1024 if k else 0):>8.2f} {str(r['one_step_below_ok']):>13} {r['runs']:>5}  "
              f"{r['memory.max_inside_at_8MiB'][:26]:>26}  {r['version']}")
    out = {"benchmark": "cgroup_memory_min", "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "guest_kernel": kernel, "params": vars(a), "wall_seconds": round(time.time() - t0, 1),
           "results": results}
    print("\n".join(lines))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    base = os.path.join(HERE, "results", f"cgroup_memory_min-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    with open(base + ".json", "w") as f:
        json.dump(out, f, indent=1)
    with open(base + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {os.path.relpath(base, REPO)}.json and .txt")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lo", type=int, default=256, help="KiB, expected to fail")
    ap.add_argument("--hi", type=int, default=16384, help="KiB, expected to work")
    ap.add_argument("--step", type=int, default=64, help="KiB")
    ap.add_argument("--repeat", type=int, default=3, help="runs that must all pass at a limit")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per run")
    ap.add_argument("--only", default="", help="comma-separated runtimes (default: runh,crun,runc)")
    ap.add_argument("--vm-timeout", type=int, default=900)
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    guest(a) if a.guest else host(a)


if __name__ == "__main__":
    main()
