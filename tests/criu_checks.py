"""Checkpoint and restore through CRIU, run inside the guest (tests/test_criu_guest.py
starts them with one vm-run): CRIU 3.17 cannot run on the host's kernel, and works on the
guest's Debian 6.1.

Every check drives real runh containers (busybox bundles under the guest's /tmp) whose
process counts in a loop on its stdout, a pipe this script reads, and prints
"CHECK <name> PASS|FAIL|SKIP <seconds> <detail>". A restore hands the container a new pipe
(the caller's stdio, through CRIU's inherit_fd), as containerd's shim and conmon do, so
"the count goes on" is read from the restored process itself. The runc check runs the
same bundle through runc 1.1.5; the podman check runs podman 4.3 with runh as its OCI
runtime, on a private storage under /tmp (the guest has no network: the image is
imported from the busybox rootfs).

This process is a child subreaper: detached containers (and restored ones) are
reparented to it, so nothing is left as a zombie in the guest.
"""
import ctypes
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bundle import build_bundle, build_rootfs  # noqa: E402

RUNH = os.environ.get("RUNH", os.path.join(REPO, ".venv", "bin", "runh"))
ROOT = "/run/runh-test-criu"
RUNC_ROOT = "/run/runc-test-criu"
WORK = "/tmp/rh-criu"
CHECK_TIMEOUT = int(os.environ.get("RUNH_CRIU_CHECK_TIMEOUT", "150"))
CALL_TIMEOUT = 90
COUNT = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done"]


class Timeout(Exception):
    pass


def _alarm(*_):
    raise Timeout()


def call(argv, stdout=None, stdin=subprocess.DEVNULL, check=True, timeout=CALL_TIMEOUT):
    """One runtime call; stderr captured through a file (a detached container keeps the
    pipes it is given open)."""
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as out:
        rc = subprocess.run(argv, stdin=stdin, stdout=stdout if stdout is not None else out,
                            stderr=err, timeout=timeout).returncode
        err.seek(0)
        out.seek(0)
        p = subprocess.CompletedProcess(argv, rc, out.read(), err.read())
    if check and rc != 0:
        raise AssertionError(f"{' '.join(argv[:6])}...: rc={rc} {p.stderr.strip()[-600:]}")
    return p


def rh(*args, **kw):
    return call([RUNH, "--root", ROOT, *args], **kw)


def rc_(*args, **kw):
    return call(["runc", "--root", RUNC_ROOT, *args], **kw)


class Stdio:
    """Three pipes for a container's stdio: we keep stdin's write end and the read ends
    of stdout and stderr; the container gets the others."""

    def __init__(self):
        self.inr, self.inw = os.pipe()
        self.outr, self.outw = os.pipe()
        self.errr, self.errw = os.pipe()
        self.buf = b""

    def theirs(self):
        return dict(stdin=self.inr, stdout=self.outw)

    def given(self):
        """Close the ends the container now holds."""
        for fd in (self.inr, self.outw, self.errw):
            os.close(fd)
        self.inr = self.outw = self.errw = -1

    def numbers(self, n=3, timeout=20):
        """Wait for n more complete lines of the counter; return them as ints."""
        end = time.time() + timeout
        got = []
        while len(got) < n and time.time() < end:
            r, _, _ = select.select([self.outr], [], [], max(0.0, end - time.time()))
            if not r:
                break
            data = os.read(self.outr, 4096)
            if not data:
                break
            self.buf += data
            *lines, self.buf = self.buf.split(b"\n")
            got += [int(x) for x in lines if x.strip().isdigit()]
        return got

    def close(self):
        for fd in (self.inr, self.inw, self.outr, self.outw, self.errr, self.errw):
            if fd >= 0:
                os.close(fd)


def run_with(stdio, argv):
    """A runtime call whose container gets `stdio`'s pipes (stderr too)."""
    with tempfile.TemporaryFile("w+") as err:
        rc = subprocess.run(argv, stdin=stdio.inr, stdout=stdio.outw, stderr=stdio.errw,
                            timeout=CALL_TIMEOUT).returncode
        err.seek(0)
    if rc != 0:
        # stderr of the runtime is the container's stderr pipe: read what it said
        msg = b""
        while select.select([stdio.errr], [], [], 0.2)[0]:
            d = os.read(stdio.errr, 65536)
            if not d:
                break
            msg += d
        raise AssertionError(f"{' '.join(argv[:8])}: rc={rc} {msg.decode(errors='replace').strip()[-800:]}")


_template = []


def make_bundle(name, args=COUNT, terminal=False, edit=None):
    if not _template:
        _template.append(build_rootfs(f"{WORK}/_template"))

    def ed(c):
        c["process"]["terminal"] = terminal
        if edit:
            edit(c)

    return build_bundle(f"{WORK}/{name}", args=args, template=_template[0], edit=ed)


def state(cid, root=None):
    p = (rc_ if root == "runc" else rh)("state", cid, check=False)
    return json.loads(p.stdout) if p.returncode == 0 else {"status": "absent", "err": p.stderr.strip()}


def mode_of(path):
    return oct(os.stat(path).st_mode & 0o777)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def cgroup_of(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read().strip()


def mountpoints(cid, runtime=rh):
    out = runtime("exec", cid, "cat", "/proc/self/mountinfo").stdout
    return sorted(line.split()[4] for line in out.splitlines())


# ------------------------------------------------------------------------------- checks

def check_count(name, cid):
    """A counting container is checkpointed (which stops and deletes it) and restored
    under the same id with new stdio pipes: the count goes on from where it was, state
    says running with the restored pid, the restored init is in the container's cgroup,
    exec works in it, and kill + delete end it. The image dir is 0700."""
    b = make_bundle(name)
    io = Stdio()
    try:
        run_with(io, [RUNH, "--root", ROOT, "run", "-d", "--bundle", b, cid])
        io.given()
        before = io.numbers(5)
        mounts_before = mountpoints(cid)
        img = f"{WORK}/{name}-img"
        rh("checkpoint", "--image-path", img, cid)
        gone = state(cid)["status"]
        last = io.numbers(50, timeout=1)  # what was written before the dump froze it
        mode = mode_of(img)
        io2 = Stdio()
        try:
            run_with(io2, [RUNH, "--root", ROOT, "restore", "-d", "--image-path", img, "--bundle", b, cid])
            io2.given()
            after = io2.numbers(5)
            s = state(cid)
            cg = cgroup_of(s["pid"])
            ex = rh("exec", cid, "sh", "-c", "echo exec-ok $$; cat /proc/1/cmdline | tr '\\0' ' '").stdout
            mounts_after = mountpoints(cid)
            rh("kill", cid, "KILL")
            time.sleep(0.5)
            stopped = state(cid)["status"]
            rh("delete", cid)
            deleted = state(cid)["status"]
        finally:
            io2.close()
    finally:
        io.close()
    prev = (before + last)[-1]
    ok = (gone == "absent" and after and after[0] == prev + 1 and s["status"] == "running"
          and "exec-ok" in ex and "sh -c" in ex and mode == "0o700" and cid in cg
          and mounts_before == mounts_after and stopped == "stopped" and deleted == "absent")
    return ok, (f"before={before[-1:]}+{len(last)} after={after[:3]} checkpointed={gone} image={mode} "
                f"state={s['status']} pid={s['pid']} cgroup={cg!r} exec={ex.strip()!r} "
                f"mounts same={mounts_before == mounts_after} ({len(mounts_after)}) "
                f"after kill={stopped} after delete={deleted}")


CHECKS = [check_count]


def cleanup(name, cid):
    left = []
    for extra in ("", "-2", "-runc"):
        c = cid + extra
        if state(c)["status"] != "absent":
            rh("delete", "-f", c, check=False)
            left.append(c)
        if shutil.which("runc") and state(c, "runc")["status"] != "absent":
            rc_("delete", "-f", c, check=False)
            left.append("runc:" + c)
    reap()
    return left


def main(names):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    os.makedirs(WORK, exist_ok=True)
    t0 = time.time()
    p = subprocess.run(["criu", "check"], capture_output=True, text=True)
    print(f"CRIU check rc={p.returncode} {(p.stdout + p.stderr).strip()[-200:]!r} {time.time() - t0:.2f}s",
          flush=True)
    signal.signal(signal.SIGALRM, _alarm)
    for fn in CHECKS:
        name = fn.__name__[len("check_"):]
        if names and name not in names:
            continue
        cid = f"criu-{name.replace('_', '-')}"
        t0 = time.time()
        signal.alarm(CHECK_TIMEOUT)
        try:
            ok, detail = fn(name, cid)
        except Timeout:
            ok, detail = False, f"timed out after {CHECK_TIMEOUT}s"
        except Exception:
            ok, detail = False, traceback.format_exc().replace("\n", " | ")
        finally:
            signal.alarm(0)
        left = cleanup(name, cid)
        if left:
            ok, detail = False, f"{detail} LEFTOVERS: {left}"
        verdict = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        print(f"CHECK {name} {verdict} {time.time() - t0:.2f}s {detail}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
