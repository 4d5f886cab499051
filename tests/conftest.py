"""Test infrastructure: busybox bundles, a `runh` runner with a private --root per test, and
a leftovers check around every test.

Everything a test creates carries a token (`rh<6 hex>t<4 digits>`: session + test number) in its
paths and container ids, so the leftovers check finds what *this* test made and nothing
else, even while other people run containers on the same machine. Cleanup only ever
touches things carrying that token.

This machine's PID 1 never reaps orphans, and containerd/CRI-O run runtimes under a
subreaper, so the pytest process makes itself a child subreaper: a parked init whose
`runh create` exited is re-parented to pytest, and a reaper thread reaps container
processes (and only those) as they die.
"""

import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bundle as bundlemod  # noqa: E402

RUNH = os.environ.get("RUNH", os.path.join(REPO, ".venv", "bin", "runh"))
SESSION = "rh" + secrets.token_hex(3)
# Short base path: notify.sock and console sockets live under it and AF_UNIX paths are
# limited to 108 bytes.
BASE = os.path.join("/tmp", SESSION)
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def vm_run_path():
    """../shared/vm/vm-run relative to the repo (CI puts shared/ beside the clone)."""
    for p in (os.path.join(REPO, "..", "shared", "vm", "vm-run"),
              os.path.join(REPO, "shared", "vm", "vm-run")):
        if os.access(p, os.X_OK):
            return os.path.abspath(p)
    return None


# ---------------------------------------------------------------- process helpers

def read(path, default=""):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return default


def proc_status(pid):
    out = {}
    for line in read(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def children(pid):
    kids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for t in tasks:
        kids += [int(x) for x in read(f"/proc/{pid}/task/{t}/children").split()]
    return kids


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for k in children(todo.pop()):
            out.append(k)
            todo.append(k)
    return out


def is_container_process(pid):
    """A process in a pid namespace other than ours, or a parked runh-init."""
    st = proc_status(pid)
    if len(st.get("NSpid", "").split()) > 1:
        return True
    return st.get("Name", "").startswith("runh-init") or "runh-init" in read(f"/proc/{pid}/cmdline")


def _reap_containers():
    """Reap zombie children that are container processes re-parented to us. Subprocess
    children are left to their Popen objects (reaping them would lose their status)."""
    for pid in children(os.getpid()):
        st = proc_status(pid)
        if st.get("State", "").startswith("Z") and is_container_process(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _reaper_loop():
    while True:
        time.sleep(0.02)
        try:
            _reap_containers()
        except Exception:  # never let the reaper die
            pass


def pytest_configure(config):
    if os.geteuid() == 0:
        if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        threading.Thread(target=_reaper_loop, name="reaper", daemon=True).start()
    os.makedirs(BASE, exist_ok=True)


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="runh's tests run real containers: needs root")
        for item in items:
            item.add_marker(skip)


# ---------------------------------------------------------------- leftovers

def find_leftovers(token, root=None):
    """Everything carrying `token`: {kind: [items]}. Kinds: state, mounts, procs, cgroups."""
    found = {"state": [], "mounts": [], "procs": [], "cgroups": []}
    for r in [root] if root else []:
        if os.path.isdir(r):
            # Dot-entries (caches, locks) are not containers.
            found["state"] += [os.path.join(r, e) for e in os.listdir(r) if not e.startswith(".")]
    if os.path.isdir("/run/runh"):
        found["state"] += [os.path.join("/run/runh", e) for e in os.listdir("/run/runh") if token in e]
    for line in read("/proc/self/mountinfo").splitlines():
        f = line.split()
        if len(f) > 4 and (token in f[4] or token in f[3]):
            found["mounts"].append(f[4])
    me = os.getpid()
    my_mnt = os.readlink("/proc/self/ns/mnt")
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == me:
            continue
        pid = int(e)
        if token in read(f"/proc/{pid}/cmdline"):
            found["procs"].append(pid)
            continue
        try:
            mnt = os.readlink(f"/proc/{pid}/ns/mnt")
        except OSError:
            continue
        # A container process: its root mount is (a bind of) the test's rootfs.
        if mnt != my_mnt:
            for line in read(f"/proc/{pid}/mountinfo").splitlines():
                f = line.split()
                if len(f) > 4 and f[4] == "/" and token in f[3]:
                    found["procs"].append(pid)
                    break
    for c in sorted(os.listdir("/sys/fs/cgroup")) if os.path.isdir("/sys/fs/cgroup") else []:
        top = os.path.join("/sys/fs/cgroup", c)
        if os.path.islink(top):
            continue
        for dirpath, dirs, _ in os.walk(top):
            for d in dirs:
                if token in d:
                    found["cgroups"].append(os.path.join(dirpath, d))
    # Live (non-zombie) descendants of pytest that are container processes.
    for pid in descendants(me):
        if pid not in found["procs"] and is_container_process(pid) \
                and not proc_status(pid).get("State", "").startswith("Z"):
            found["procs"].append(pid)
    return {k: v for k, v in found.items() if v}


def clean_leftovers(found, root=None):
    """Remove what find_leftovers found (all of it carries the test's token)."""
    for d in found.get("state", []):
        cid = os.path.basename(d)
        if root and d.startswith(root) and os.access(RUNH, os.X_OK):
            subprocess.run([RUNH, "--root", root, "delete", "--force", cid],
                           capture_output=True, timeout=30)
    for pid in found.get("procs", []):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 5
    while time.time() < deadline and any(
            os.path.exists(f"/proc/{p}") and not proc_status(p).get("State", "Z").startswith("Z")
            for p in found.get("procs", [])):
        time.sleep(0.02)
    _reap_containers()
    for m in sorted(found.get("mounts", []), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    # A killed task leaves its cgroup asynchronously: rmdir is EBUSY for a moment.
    for cg in sorted(found.get("cgroups", []), key=len, reverse=True):
        deadline = time.time() + 3
        while True:
            try:
                os.rmdir(cg)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.time() > deadline:
                    break
                time.sleep(0.05)
    for d in found.get("state", []):
        shutil.rmtree(d, ignore_errors=True)


class Ctx:
    """One test's private world: dir, --root, ids, bundles."""

    counter = 0

    def __init__(self):
        Ctx.counter += 1
        # Fixed width, so that no token is a prefix of another.
        self.token = f"{SESSION}t{Ctx.counter:04d}"
        self.dir = os.path.join(BASE, self.token)  # the token in every path: see find_leftovers
        self.root = os.path.join(self.dir, "root")
        os.makedirs(self.root)
        self._n = 0

    def new_id(self, name="c"):
        self._n += 1
        return f"{self.token}-{name}{self._n}"

    def path(self, *parts):
        return os.path.join(self.dir, *parts)


@pytest.fixture
def ctx():
    c = Ctx()
    yield c


@pytest.fixture(autouse=True)
def leftovers_check(request):
    """Fails a test that leaves mounts, processes, state dirs or cgroups behind (after
    cleaning up what it can). Tests that use no `ctx` are checked too (by session token)."""
    yield
    c = request.node.funcargs.get("ctx")
    if c is None:
        return
    deadline = time.time() + 2  # give exiting containers a moment to finish dying
    found = find_leftovers(c.token, c.root)
    while found and set(found) == {"procs"} and time.time() < deadline:
        time.sleep(0.05)
        _reap_containers()
        found = find_leftovers(c.token, c.root)
    if found:
        clean_leftovers(found, c.root)
        still = find_leftovers(c.token, c.root)
        msg = f"test left things behind: {json.dumps(found)}"
        if still:
            msg += f"; could not clean: {json.dumps(still)}"
        pytest.fail(msg, pytrace=False)
    shutil.rmtree(c.dir, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    found = find_leftovers(SESSION)
    if found:
        clean_leftovers(found)
        sys.stderr.write(f"\nSESSION LEFTOVERS (cleaned): {json.dumps(found)}\n")
        session.exitstatus = 1
    # Every subprocess is finished now: reap whatever orphan was re-parented to us.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    shutil.rmtree(BASE, ignore_errors=True)


# ---------------------------------------------------------------- bundles

@pytest.fixture(scope="session")
def rootfs_template():
    os.makedirs(BASE, exist_ok=True)
    return bundlemod.build_rootfs(os.path.join(BASE, "template"))


@pytest.fixture
def make_bundle(ctx, rootfs_template):
    """make_bundle(args=[...], terminal=False, edit=fn, name="bundle") -> bundle path."""
    def make(args=None, terminal=False, edit=None, name=None, spec=None):
        name = name or f"bundle{ctx._n}-{secrets.token_hex(2)}"
        return bundlemod.build_bundle(ctx.path(name), args=args, terminal=terminal,
                                      edit=edit, spec=spec, template=rootfs_template)
    return make


@pytest.fixture
def bundle(make_bundle):
    """A fresh bundle running `sh`; change it with edit_config(bundle, fn)."""
    return make_bundle(args=["sh"])


edit_config = bundlemod.edit_config
read_config = bundlemod.read_config


# ---------------------------------------------------------------- runh

class Runner:
    """runh(*args) runs `.venv/bin/runh --root <test root> args...` and returns the
    CompletedProcess (text, captured). runh.path is the binary; runh.root the root."""

    def __init__(self, path, root):
        self.path = path
        self.root = root

    def argv(self, *args, root=None):
        return [self.path, "--root", root or self.root, *map(str, args)]

    def __call__(self, *args, input=None, timeout=60, root=None, check=False, **kw):
        # Output goes to files, not pipes: after `create` the container holds runh's
        # stdio, so waiting for EOF on a pipe would wait for the container to exit.
        kw.setdefault("text", True)
        if "stdin" not in kw and input is None:
            kw["stdin"] = subprocess.DEVNULL
        if "stdout" in kw or "stderr" in kw or kw.get("capture_output") is False:
            kw.pop("capture_output", None)
            return subprocess.run(self.argv(*args, root=root), input=input,
                                  timeout=timeout, check=check, **kw)
        kw.pop("capture_output", None)
        text = kw.pop("text")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(self.argv(*args, root=root), input=input.encode()
                               if (text and isinstance(input, str)) else input,
                               stdout=out, stderr=err, timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            o, e = out.read(), err.read()
        if text:
            o, e = o.decode(errors="replace"), e.decode(errors="replace")
        p.stdout, p.stderr = o, e
        if check:
            p.check_returncode()
        return p

    def popen(self, *args, root=None, **kw):
        return subprocess.Popen(self.argv(*args, root=root), **kw)

    def state(self, cid):
        r = self("state", cid)
        assert r.returncode == 0, f"state {cid}: {r.stderr}"
        return json.loads(r.stdout)

    def wait_status(self, cid, status, timeout=5):
        deadline = time.time() + timeout
        st = None
        while time.time() < deadline:
            r = self("state", cid)
            # (a `run` started in the background may not have created the container yet)
            st = json.loads(r.stdout) if r.returncode == 0 else None
            if st and st["status"] == status:
                return st
            time.sleep(0.02)
        raise AssertionError(f"{cid} status {st and st['status']}, wanted {status}")


@pytest.fixture
def runh(ctx):
    if not os.access(RUNH, os.X_OK):
        pytest.fail(f"{RUNH} missing: run `make build`", pytrace=False)
    return Runner(RUNH, ctx.root)


def run_container(runh, ctx, bundle, timeout=60, **kw):
    """`runh run` the bundle under a fresh id; returns the CompletedProcess (the id is
    deleted afterwards in case run left it)."""
    cid = ctx.new_id()
    try:
        return runh("run", "--bundle", bundle, cid, timeout=timeout, **kw)
    finally:
        if os.path.exists(os.path.join(ctx.root, cid)):
            runh("delete", "--force", cid)


@pytest.fixture
def run_in(runh, ctx, make_bundle):
    """run_in("sh", "-c", "...", edit=fn) -> CompletedProcess of `runh run` of a fresh bundle."""
    def run(*args, edit=None, timeout=60, **kw):
        b = make_bundle(args=list(args), edit=edit)
        return run_container(runh, ctx, b, timeout=timeout, **kw)
    return run


def sh(script):
    """process.args for a shell script."""
    return ["/bin/sh", "-c", script]
