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
CHECK_TIMEOUT = int(os.environ.get("RUNH_CRIU_CHECK_TIMEOUT", "420"))
CALL_TIMEOUT = 90
COUNT = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done"]


class Timeout(Exception):
    pass


def _alarm(*_):
    raise Timeout()


TIMES = []  # (command, seconds) of the checkpoint/restore calls of the current check


def _timed(argv, t0):
    for word in ("checkpoint", "restore"):
        if word in argv:
            TIMES.append(f"{argv[0].rsplit('/', 1)[-1]}-{word}{'(pre)' if '--pre-dump' in argv else ''}"
                         f"={time.time() - t0:.1f}s")


def call(argv, stdout=None, stdin=subprocess.DEVNULL, check=True, timeout=CALL_TIMEOUT, env=None):
    """One runtime call; stderr captured through a file (a detached container keeps the
    pipes it is given open)."""
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as out:
        rc = subprocess.run(argv, stdin=stdin, stdout=stdout if stdout is not None else out,
                            stderr=err, timeout=timeout, env=env).returncode
        err.seek(0)
        out.seek(0)
        p = subprocess.CompletedProcess(argv, rc, out.read(), err.read())
    _timed(argv, t0)
    if os.environ.get("RUNH_TIMING") and ("checkpoint" in argv or "restore" in argv):
        print("TIMING", " ".join(argv[3:5]), p.stderr.strip().replace("\n", " | "), flush=True)
    if check and rc != 0:
        raise AssertionError(f"{' '.join(argv[:6])}...: rc={rc} {p.stderr.strip()[-600:]}")
    return p


# The guest reads / over 9p without a page cache: every page fault of a program is a
# round trip to the host. main() copies CRIU to the guest's tmpfs (`criu check` there:
# 0.6 s against 1.1 s from 9p) and runh is given that copy with --criu.
CRIU = os.environ.get("RUNH_TEST_CRIU") or f"{WORK}/criu"
RH = [RUNH, "--root", ROOT, "--criu", CRIU]


def rh(*args, **kw):
    return call(RH + list(args), **kw)


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
    t0 = time.time()
    rc = subprocess.run(argv, stdin=stdio.inr, stdout=stdio.outw, stderr=stdio.errw,
                        timeout=CALL_TIMEOUT).returncode
    _timed(argv, t0)
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
_bundles = {}


def make_bundle(name, args=COUNT, terminal=False, edit=None):
    if name in _bundles:
        return _bundles[name]
    if not _template:
        _template.append(build_rootfs(f"{WORK}/_template"))

    def ed(c):
        c["process"]["terminal"] = terminal
        if edit:
            edit(c)

    _bundles[name] = build_bundle(f"{WORK}/{name}", args=args, template=_template[0], edit=ed)
    return _bundles[name]


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

def _image_kinds(img):
    """The kinds of files in an image dir (core-1.img and core-7.img are one kind)."""
    import re

    return sorted({re.sub(r"-\d+(\.img)$", r"\1", n) for n in os.listdir(img)} - {"parent"})


def cycle(runtime, call_, root, b, cid, name):
    """run -d, checkpoint --pre-dump, checkpoint --parent-path (the final dump, which
    stops the container), restore -d under the same id, exec, kill, delete: through one
    runtime (runh or runc), with what can be compared."""
    io, io2 = Stdio(), Stdio()
    tag = os.path.basename(runtime)
    parent, final = f"{WORK}/{name}-{tag}-img/parent", f"{WORK}/{name}-{tag}-img/final"
    os.makedirs(os.path.dirname(parent), exist_ok=True)
    r = {}
    try:
        run_with(io, [*([*RH] if runtime == RUNH else [runtime, "--root", root]), "run", "-d", "--bundle", b, cid])
        io.given()
        io.numbers(3)
        pid0 = json.loads(call_("state", cid).stdout)["pid"]
        mounts_before = _mounts_of(pid0)
        call_("checkpoint", "--pre-dump", "--image-path", parent, cid)
        r["after_pre_dump"] = json.loads(call_("state", cid).stdout)["status"]
        io.numbers(2)
        call_("checkpoint", "--image-path", final, "--parent-path", "../parent", cid)
        r["after_dump"] = state(cid, "runc" if runtime != RUNH else None)["status"]
        last = io.numbers(100, timeout=1)
        r["image_mode"] = mode_of(final)
        r["parent_link"] = os.path.islink(f"{final}/parent")
        r["kinds"] = _image_kinds(final)
        run_with(io2, [*([*RH] if runtime == RUNH else [runtime, "--root", root]), "restore", "-d",
                       "--image-path", final, "--bundle", b, cid])
        io2.given()
        after = io2.numbers(3)
        r["continues"] = bool(after and last and after[0] == last[-1] + 1)
        r["counts"] = f"{last[-1:]}->{after[:3]}"
        s = json.loads(call_("state", cid).stdout)
        r["status"] = s["status"]
        if runtime == RUNH:
            # The Python path derives the same status as the launcher (state.py, state.rs).
            py = call(RH + ["state", cid], env=dict(os.environ, RUNH_PYTHON_ONLY="1"))
            r["python_state"] = json.loads(py.stdout)["status"] + ("" if json.loads(py.stdout)["pid"] == s["pid"] else " other pid")
        r["cgroup"] = cgroup_of(s["pid"]).split("::")[-1]
        r["mounts_kept"] = _mounts_of(s["pid"]) == mounts_before
        r["mounts"] = mounts_before
        ex = call_("exec", cid, "sh", "-c", "echo $$ $(cat /proc/1/cmdline | tr '\\0' ' ')").stdout.split()
        r["exec"] = ex[1:3] == ["sh", "-c"]
        # The host directory bound at /data (an external mount), a masked file
        # (/proc/kcore, bound over with /dev/null) and the read-only /proc/sys.
        r["bind"] = call_("exec", cid, "cat", "/data/hello").stdout.strip()
        r["masked"] = call_("exec", cid, "wc", "-c", "/proc/kcore").stdout.split()[:1]
        r["ro"] = call_("exec", cid, "sh", "-c", "echo 1 > /proc/sys/kernel/shmmni", check=False).returncode != 0
        r["own_ns"] = sorted(n for n in ("ipc", "mnt", "net", "pid", "uts")
                             if os.readlink(f"/proc/{s['pid']}/ns/{n}") != os.readlink(f"/proc/self/ns/{n}"))
        call_("kill", cid, "KILL")
        deadline = time.time() + 10
        while os.path.exists(f"/proc/{s['pid']}") and time.time() < deadline:
            reap()
            time.sleep(0.1)
        r["after_kill"] = json.loads(call_("state", cid).stdout)["status"]
        call_("delete", cid)
        r["after_delete"] = state(cid, "runc" if runtime != RUNH else None)["status"]
    finally:
        io.close()
        io2.close()
    return r


def _mounts_of(pid):
    with open(f"/proc/{pid}/mountinfo") as f:
        return sorted(line.split()[4] for line in f)


_results = {}


def shared_bundle():
    """The bundle of dump_restore and runc_diff: the counter, with a host directory
    bound read-only at /data."""
    src = f"{WORK}/bind-src"
    os.makedirs(src, exist_ok=True)
    with open(f"{src}/hello", "w") as f:
        f.write("from the host\n")

    def edit(c):
        c["mounts"].append({"destination": "/data", "type": "bind", "source": src,
                            "options": ["rbind", "ro"]})

    return make_bundle("shared", edit=edit)


def check_dump_restore(name, cid):
    """A counting container: checkpoint --pre-dump (it keeps running), then the dump on
    top of it (--parent-path: only the pages changed since), which stops and deletes it;
    restore -d under the same id with new stdio pipes: the count goes on from where it
    was, state says running, the restored init is in the container's cgroup with every
    mountpoint it had (a host directory bound at /data, an external mount, reads as on the
    host; a masked file is empty; /proc/sys is read-only), in its own namespaces; exec
    works in it, kill and delete end it. The image dir is 0700."""
    b = shared_bundle()
    r = _results["runh"] = cycle(RUNH, rh, ROOT, b, cid, name)
    ok = (r["after_pre_dump"] == "running" and r["after_dump"] == "absent" and r["continues"]
          and r["status"] == r["python_state"] == "running" and r["cgroup"] == f"/{cid}" and r["mounts_kept"]
          and r["exec"] and r["after_kill"] == "stopped" and r["after_delete"] == "absent"
          and r["image_mode"] == "0o700" and r["parent_link"] and r["bind"] == "from the host"
          and r["masked"] == ["0"] and r["ro"] and r["own_ns"] == ["ipc", "mnt", "net", "pid", "uts"])
    return ok, " ".join(f"{k}={v}" for k, v in r.items() if k not in ("mounts", "kinds"))


def check_runc_diff(name, cid):
    """The same bundle and the same sequence (pre-dump, dump, restore, exec, kill,
    delete) through runc 1.1.5: every observation equals runh's (the count goes on,
    states, the mountpoints of the restored container, exec), and CRIU wrote the same
    kinds of images (runh's descriptors.json among them, as runc's)."""
    if not shutil.which("runc"):
        return None, "runc is not installed"
    if "runh" not in _results:
        return None, "needs dump_restore's result"
    b = shared_bundle()
    r = cycle("runc", rc_, RUNC_ROOT, b, cid, name)
    a = _results["runh"]
    # runc makes its image dir 0600 (os.MkdirAll(path, 0o600)); runh's is 0700.
    keys = [k for k in a if k not in ("counts", "cgroup", "python_state", "image_mode")]
    diff = {k: (a[k], r.get(k)) for k in keys if a[k] != r.get(k)}
    ok = not diff and r["continues"] and r["image_mode"] in ("0o600", "0o700")
    return ok, (f"runc: counts={r['counts']} cgroup={r['cgroup']} kinds={len(r['kinds'])} "
                f"image dir runh/runc={a['image_mode']}/{r['image_mode']}; differs: {diff}")


def check_leave_running_tty(name, cid):
    """A counting container with a terminal (its pty master sent to our console
    socket): checkpoint --leave-running, and it goes on counting on that pty; the images
    then restore a second container under a new id (its own cgroup) while the first
    still runs: CRIU made a new pty pair and restore --console-socket sent us its master,
    on which the copy goes on from the count at the checkpoint; exec works in the copy.
    That restore runs in the foreground (with --pid-file): killed, the copy's status is
    its exit status, and it is deleted."""
    b = make_bundle(name, terminal=True)
    socks = []

    def listener(n):
        path = f"{WORK}/{name}-{n}.sock"
        if os.path.exists(path):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(1)
        socks.append(s)
        return s, path

    def master(s):
        conn, _ = s.accept()
        _, fds, _, _ = socket.recv_fds(conn, 64, 1)
        conn.close()
        return fds[0]

    bufs = {}

    def counts(fd, n=3, timeout=20):
        got, end = [], time.time() + timeout
        while len(got) < n and time.time() < end:
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: no slave side left
                break
            *lines, bufs[fd] = (bufs.get(fd, b"") + data).split(b"\n")
            got += [int(x.strip()) for x in lines if x.strip().isdigit()]
        return got

    m1 = m2 = -1
    cid2 = cid + "-2"
    try:
        s1, p1 = listener(1)
        rh("run", "-d", "--console-socket", p1, "--bundle", b, cid)
        m1 = master(s1)
        pre = counts(m1)[-1]
        img = f"{WORK}/{name}-img"
        rh("checkpoint", "--leave-running", "--image-path", img, cid)
        seen = [pre] + counts(m1, 10000, timeout=0.3)  # what it printed during the dump
        more = counts(m1, 2)
        s2, p2 = listener(2)
        # In the foreground: runh restore waits for the copy, and exits with its status
        # once it is killed, having deleted it (as `run`); --pid-file names the copy.
        pidfile = f"{WORK}/{name}-2.pid"
        t0 = time.time()
        fg = subprocess.Popen([*RH, "restore", "--console-socket", p2, "--pid-file", pidfile,
                               "--image-path", img, "--bundle", b, cid2],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        m2 = master(s2)
        copy = counts(m2)
        TIMES.append(f"runh-restore(fg)={time.time() - t0:.1f}s")
        st1, st2 = state(cid), state(cid2)
        pid2 = int(open(pidfile).read())
        cg2 = cgroup_of(st2["pid"])
        tty = os.readlink(f"/proc/{st2['pid']}/fd/0")
        ex = rh("exec", cid2, "echo", "copy-exec").stdout.strip()
        rh("kill", cid2, "KILL")
        fg_rc = fg.wait(timeout=CALL_TIMEOUT)
        fg_err = fg.stderr.read().decode(errors="replace").strip()
        after_fg = state(cid2)["status"]
        rh("delete", "-f", cid)
    finally:
        for fd in (m1, m2):
            if fd >= 0:
                os.close(fd)
        for s in socks:
            s.close()
    ok = (bool(more) and more[0] > seen[-1] - 1 and bool(copy) and pre < copy[0] <= seen[-1] + 1
          and st1["status"] == st2["status"] == "running" and st1["pid"] != st2["pid"]
          and pid2 == st2["pid"] and cg2 == f"0::/{cid2}" and tty.startswith("/dev/pts/")
          and ex == "copy-exec" and fg_rc == 137 and after_fg == "absent")
    return ok, (f"count before={pre} during dump up to={seen[-1]} original goes on={more} "
                f"copy starts={copy} states={st1['status']},{st2['status']} pid file={pid2 == st2['pid']} "
                f"copy cgroup={cg2!r} copy stdin={tty!r} exec={ex!r} foreground restore exit={fg_rc} "
                f"then {after_fg} {fg_err[-200:]!r}")


def podman_state(ctr):
    """runh's view of a podman container: podman gives runh no --root (/run/runh)."""
    p = call([RUNH, "state", ctr], check=False)
    return json.loads(p.stdout) if p.returncode == 0 else {"status": "absent", "err": p.stderr.strip()}


def check_podman(name, cid):
    """podman 4.3 with runh as its OCI runtime (private storage under /tmp, no network):
    `podman container checkpoint` of a counting container (runh checkpoint), then
    `podman container restore` (conmon runs runh restore): the container runs again,
    its log goes on from the count at the checkpoint, and podman shows it up."""
    if not shutil.which("podman") or not shutil.which("conmon"):
        return None, "podman/conmon not installed (make apt-test)"
    base = f"{WORK}/podman"
    conf = f"{base}/containers.conf"
    os.makedirs(f"{base}/tmp", exist_ok=True)
    with open(conf, "w") as f:
        # runh by name, so that podman passes the --criu-less runc flags it passes runc.
        f.write('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                f'[engine.runtimes]\nrunh = ["{RUNH}"]\n')
    env = dict(os.environ, CONTAINERS_CONF=conf, TMPDIR=f"{base}/tmp")
    pm = ["podman", "--root", f"{base}/root", "--runroot", f"{base}/run", "--runtime", "runh",
          "--storage-driver", "overlay"]

    def p(*args, check=True, input=None):
        t0 = time.time()
        r = subprocess.run(pm + list(args), capture_output=True, timeout=CALL_TIMEOUT * 2, env=env,
                           input=input, stdin=None if input is not None else subprocess.DEVNULL)
        TIMES.append(f"podman-{args[1] if args[0] == 'container' else args[0]}={time.time() - t0:.1f}s")
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:3])}: rc={r.returncode} "
                                 f"{r.stderr.decode(errors='replace').strip()[-800:]}")
        return r.stdout.decode(errors="replace")

    if not _template:
        _template.append(build_rootfs(f"{WORK}/_template"))
    tar = subprocess.run(["tar", "-C", _template[0], "-c", "."], capture_output=True, check=True).stdout
    p("import", "-", "localhost/rh-busybox", input=tar)
    ctr = None
    try:
        ctr = p("run", "-d", "--name", cid, "--network", "none", "localhost/rh-busybox", *COUNT).strip()
        log = f"{base}/root/overlay-containers/{ctr}/userdata/ctr.log"

        def counts():  # the k8s-file log that conmon writes: "<time> stdout F <line>"
            with open(log) as f:
                return [int(x.split()[-1]) for x in f if x.split()[-1:] and x.split()[-1].isdigit()]

        deadline = time.time() + 30
        while len(counts()) < 3 and time.time() < deadline:
            time.sleep(0.2)
        p("container", "checkpoint", ctr)
        at = counts()[-1]
        gone = podman_state(ctr)["status"]
        p("container", "restore", ctr)
        deadline = time.time() + 30
        while not [n for n in counts() if n > at] and time.time() < deadline:
            time.sleep(0.2)
        after = [n for n in counts() if n > at]
        s = podman_state(ctr)
        ps = p("ps", "--format", "{{.ID}} {{.Status}}").strip()
    finally:
        if ctr:
            p("rm", "-f", "-t", "0", ctr, check=False)
    ok = gone == "absent" and after and after[0] == at + 1 and s["status"] == "running" and " Up " in f" {ps} "
    return ok, (f"count at checkpoint={at} runh state after checkpoint={gone} after restore={after[:3]} "
                f"runh state={s['status']} podman ps={ps!r}")


CHECKS = [check_dump_restore, check_runc_diff, check_leave_running_tty, check_podman]


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
    found = shutil.which("criu") or shutil.which("criu", path="/usr/sbin:/sbin")
    if not found:
        for fn in CHECKS:
            print(f"CHECK {fn.__name__[6:]} SKIP 0 criu is not installed (make apt-test)", flush=True)
        return
    if not os.environ.get("RUNH_TEST_CRIU"):
        shutil.copy2(found, CRIU)
    # CRIU's first run on a booted kernel probes it (kerndat, cached in /run/criu.kdat):
    # 20-40 s here, paid once, before the first timed check.
    t0 = time.time()
    p = subprocess.run([CRIU, "check"], capture_output=True, text=True)
    if p.returncode != 0:
        for fn in CHECKS:
            print(f"CHECK {fn.__name__[6:]} FAIL 0 criu check: {p.stderr.strip()[-300:]!r}", flush=True)
        return
    print(f"CRIU check: {p.stdout.strip()} ({time.time() - t0:.1f}s)", flush=True)
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
        print(f"CHECK {name} {verdict} {time.time() - t0:.2f}s {detail} [{' '.join(TIMES)}]", flush=True)
        TIMES.clear()


if __name__ == "__main__":
    main(sys.argv[1:])
