"""linux.netDevices with a dummy interface, inside the guest (this host's kernel has no
dummy link type; tests/test_parity.py moves veth ends on the host). Started by
tests/test_netdev_guest.py with one vm-run; prints one line per check,

    CHECK <name> PASS|FAIL|SKIP <seconds> <detail>

The guest is slow (about 1-3 s per runh call), so each check keeps to a few calls.
"""
import ctypes
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bundle import build_bundle  # noqa: E402

RUNH = os.environ.get("RUNH", os.path.join(REPO, ".venv", "bin", "runh"))
ROOT = "/run/runh-test-netdev"
WORK = "/tmp/rh-netdev"


def rh(*args, check=True):
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        rc = subprocess.run([RUNH, "--root", ROOT, *args], stdout=out, stderr=err, text=True,
                            timeout=120).returncode
        out.seek(0)
        err.seek(0)
        p = subprocess.CompletedProcess(args, rc, out.read(), err.read())
    if check and rc != 0:
        raise AssertionError(f"runh {' '.join(args)}: {p.stderr.strip()}")
    return p


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def host_has(name):
    return os.path.exists(f"/sys/class/net/{name}")


def bundle(name, devs, script):
    def edit(c):
        c["linux"].pop("resources", None)
        c["linux"]["netDevices"] = devs
        c["process"]["args"] = ["sh", "-c", script]
    return build_bundle(os.path.join(WORK, name), edit=edit)


def check_dummy_moved(name):
    """A dummy moves in at create (the host no longer has it); after delete it is gone
    for good: a virtual device dies with its namespace (the kernel's rule; the spec
    forbids runh to move it back, and it does not)."""
    ip("link", "add", "dmy0", "type", "dummy")
    b = bundle(name, {"dmy0": {"name": "ctr0"}}, "true")
    cid = "nd-" + name
    rh("create", "--bundle", b, cid)
    during = host_has("dmy0") or host_has("ctr0")
    rh("start", cid)
    for _ in range(200):
        if '"stopped"' in rh("state", cid).stdout:
            break
        time.sleep(0.05)
    rh("delete", cid)
    after = host_has("dmy0") or host_has("ctr0")
    return (not during and not after), f"on the host while created: {during}; after delete: {after}"


def check_dummy_seen_inside(name):
    ip("link", "add", "dmy1", "type", "dummy")
    ip("addr", "add", "10.66.1.1/24", "dev", "dmy1")
    b = bundle(name, {"dmy1": {"name": "eth%d"}},
               "ip -o link show eth0 | grep -o 'UP,LOWER_UP'; ip -o -4 addr show eth0 | awk '{print $4}'")
    p = rh("run", "--bundle", b, "nd-" + name, check=False)
    rh("delete", "--force", "nd-" + name, check=False)
    ok = p.returncode == 0 and p.stdout.split() == ["UP,LOWER_UP", "10.66.1.1/24"]
    return ok, f"rc={p.returncode} out={p.stdout.split()} err={p.stderr.strip()!r}"


def check_missing_refused(name):
    """One device missing on the host: refused before anything moves."""
    ip("link", "add", "dmy2", "type", "dummy")
    b = bundle(name, {"dmy2": {}, "nosuch0": {}}, "true")
    p = rh("run", "--bundle", b, "nd-" + name, check=False)
    rh("delete", "--force", "nd-" + name, check=False)
    ok = p.returncode != 0 and 'no interface "nosuch0"' in p.stderr and host_has("dmy2")
    return ok, f"rc={p.returncode} err={p.stderr.strip()!r} dmy2 still on the host: {host_has('dmy2')}"


CHECKS = [check_dummy_moved, check_dummy_seen_inside, check_missing_refused]


def main():
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    os.makedirs(WORK, exist_ok=True)
    if ip("link", "add", "probe0", "type", "dummy", check=False).returncode != 0:
        for fn in CHECKS:
            print(f"CHECK {fn.__name__[6:]} SKIP 0 no dummy link type in the guest", flush=True)
        return
    ip("link", "del", "probe0")
    for fn in CHECKS:
        name = fn.__name__[len("check_"):]
        t0 = time.time()
        try:
            ok, detail = fn(name)
        except Exception:
            ok, detail = False, traceback.format_exc().replace("\n", " | ")
        print(f"CHECK {name} {'PASS' if ok else 'FAIL'} {time.time() - t0:.2f}s {detail}", flush=True)


if __name__ == "__main__":
    main()
