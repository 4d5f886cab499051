"""`create` and `run` with --systemd-cgroup: runh, runc and crun side by side, in one
interleaved run (runh, runc, crun, runh, runc, crun, ...), against a real systemd.

Run it where systemd manages the cgroups: in the guest, inside the namespaces of the
systemd that tests/systemd_guest.py boots,

    ../shared/vm/vm-run '.venv/bin/python tests/systemd_guest.py .venv/bin/python benches/systemd_create.py -n 10'

(tests/systemd_checks.py runs it once with a small -n as the check "bench"). Each
iteration times, for each runtime, `create` of a parked container (the container is then
deleted, untimed) and `run` of /bin/true (create + start + wait + delete), every one in
its own scope "runhbench.slice:<runtime>:<n>". Prints medians and the ratio to runc, and
with -o the raw figures as JSON. The guest is emulated and reads binaries over 9p, so
absolute times mean little; the ratios are what to read.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

from bundle import build_bundle, build_rootfs, default_spec  # noqa: E402


def runtimes(runh):
    out = {"runh": runh}
    for name in ("runc", "crun"):
        p = shutil.which(name)
        if p:
            out[name] = p
    return out


def timed(argv):
    # stderr to a file, not a pipe: a created container's init keeps runh's stdio open.
    import tempfile

    with tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL).returncode
        dt = time.monotonic() - t0
        if rc != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)}: rc={rc} {err.read().strip()[:300]}")
    return dt


def bench(n, work, runh, warmup=1):
    rts = runtimes(runh)
    template = build_rootfs(f"{work}/_template")
    bundles = {}
    for rt in rts:
        for what, args in (("create", ["sleep", "1000"]), ("run", ["true"])):
            def ed(c, rt=rt, what=what):
                c["linux"]["cgroupsPath"] = f"runhbench.slice:{rt}{what}:x"
                c["linux"].pop("resources", None)  # crun's device filter is the same for all
                c["ociVersion"] = "1.0.2"  # crun 1.8 refuses versions it does not know
            bundles[rt, what] = build_bundle(f"{work}/{rt}-{what}", args=args, template=template,
                                             spec=default_spec("builtin"), edit=ed)
    times = {rt: {"create": [], "run": []} for rt in rts}
    for i in range(warmup + n):
        for rt, path in rts.items():
            root = f"/run/bench-{rt}"
            base = [path, "--systemd-cgroup", "--root", root]
            cid = f"b{i}"
            # A new scope each time: the same name would race with the last one's stop.
            for what in ("create", "run"):
                b = bundles[rt, what]
                with open(f"{b}/config.json") as f:
                    c = json.load(f)
                c["linux"]["cgroupsPath"] = f"runhbench.slice:{rt}{what}:{i}"
                with open(f"{b}/config.json", "w") as f:
                    json.dump(c, f)
            dt = timed(base + ["create", "--bundle", bundles[rt, "create"], cid])
            subprocess.run(base + ["delete", "--force", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            if i >= warmup:
                times[rt]["create"].append(dt)
            dt = timed(base + ["run", "--bundle", bundles[rt, "run"], cid + "r"])
            if i >= warmup:
                times[rt]["run"].append(dt)
    return times


def report(times, bases=("runc", "crun")):
    bases = [b for b in bases if b in times]
    lines = [f"{'runtime':8} {'metric':7} {'median s':>9} {'min s':>8} {'max s':>8}"
             + "".join(f" {'vs ' + b:>8}" for b in bases)]
    ratios = {}
    for rt, m in times.items():
        for what, v in m.items():
            med = statistics.median(v)
            row = f"{rt:8} {what:7} {med:9.3f} {min(v):8.3f} {max(v):8.3f}"
            for b in bases:
                r = med / statistics.median(times[b][what])
                ratios[rt, what, b] = r
                row += f" {r:7.2f}x"
            lines.append(row)
    return "\n".join(lines), ratios


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10, help="timed iterations per runtime (default 10)")
    ap.add_argument("-w", type=int, default=1, help="untimed warm-up iterations (default 1)")
    ap.add_argument("--work", default="/tmp/rh-sd-bench")
    ap.add_argument("--runh", default=os.path.join(REPO, ".venv", "bin", "runh"))
    ap.add_argument("-o", help="write the raw times as JSON here")
    a = ap.parse_args()
    times = bench(a.n, a.work, a.runh, a.w)
    text, _ = report(times)
    print(text)
    if a.o:
        with open(a.o, "w") as f:
            json.dump(times, f, indent=1)


if __name__ == "__main__":
    main()
