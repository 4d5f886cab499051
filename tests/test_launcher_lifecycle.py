"""The native launcher's `start`, `kill`, `delete` and `state`: which calls it runs itself,
and that their results are the Python CLI's.

`.venv/bin/runh` runs the plain form of these four commands without Python (start, kill
and delete are every container's life; state is what podman and CRI-O poll) and hands
every other call to the Python CLI, argv unchanged, before it has done anything. The rule
is only sound if nobody can tell the two paths apart, so this file proves, on real
containers:

- which path a call takes, from the execve/execveat calls under `strace -f`: the native
  path execs nothing at all (not even runh-exec, which a native `exec` does), a handoff
  execs python3;
- for every command and the statuses it meets (created, running, paused, stopped, with
  hooks), that a call run natively and the same call with RUNH_PYTHON_ONLY=1 on an
  identical container give the same exit code, stdout, stderr and the same effect
  (status afterwards, what the container's process logged, what is left on the host),
  and that this is runc's result: runc's wording for the errors, the signal reaching the
  process, start running it, delete leaving no state dir, no cgroup dir and an empty
  --root;
- that `state` prints the Python CLI's bytes in every status, with annotations in their
  (unsorted) order, non-ASCII, quotes, `<>&`, newlines and control characters, and that
  its handoffs (missing, invalid, creating, unreadable, relative --root, --debug,
  RUNH_TIMING) answer as Python does;
- that delete takes the root's seccomp cache with the root's last container only, leaves
  a cgroup that still holds a process to Python, and waits for another holder of the
  container's lock;
- that a core failure after the native path began (start of a program that cannot be
  exec'd) is handed to Python as RUNH_CORE_ERROR and reported once, as Python alone
  reports it, not retried.

Setup (create, start, pause, kill to reach a status, and teardown) always runs with
RUNH_PYTHON_ONLY=1, so that only the call under test depends on the launcher. The
helpers for tracing and for the two modes are test_launcher.py's (the native `exec`).

What this file found wrong when it was written, now fixed and kept as plain cases:
`kill ID +10` (the paths disagreed; runc takes it), `kill --all` signalling init twice, and
a state.json that is not JSON giving a traceback (and no way to delete it).
"""

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections import namedtuple

import pytest

from bundle import build_bundle, read_config, write_config
from conftest import BASE, sh
from test_launcher import EXEC_LINE, MODES, Traced, _check_path, _env, pytestmark, traced  # noqa: F401

# pytestmark (imported): strace installed, and RUNH the native launcher.

# Every container runs this: it logs to /out/log (a host dir of its own) that it runs, and
# which of the signals it traps reached it (sh as pid 1 ignores the others).
SCRIPT = ("trap 'echo TERM >> /out/log; exit 3' TERM; trap 'echo USR1 >> /out/log; exit 4' USR1; "
          "echo ready >> /out/log; while :; do sleep 0.05; done")


# ---------------------------------------------------------------- paths

class Lifecycle(Traced):
    """test_launcher's Traced for start/kill/delete/state. Their native path execs
    nothing: the only execve in the log is strace's own of the launcher. verbose: strace
    also logs each execve's environment (-v); also: more syscalls to log."""

    def __init__(self, traced, verbose=False, also=()):
        super().__init__(traced, traced.log, traced.globals)
        self.verbose, self.also = verbose, also

    def argv(self, *args, root=None):
        argv = super().argv(*args, root=root)
        argv = [",".join([a, *self.also]) if a.startswith("trace=") else a for a in argv]
        return [argv[0], "-v", *argv[1:]] if self.verbose else argv

    def assert_native(self, r):
        assert [path for _, path, _ in self.execs()] == [self.path], f"{self.execs()}\n{r.stderr}"

    def lines(self):
        with open(self.log) as f:
            return f.read().splitlines()


@pytest.fixture
def ltraced(traced):
    """ltraced(globals=None, verbose=False, also=()) -> a Lifecycle runner with its own log."""
    return lambda globals=None, verbose=False, also=(): Lifecycle(traced(globals), verbose, also)


def _call(ltraced, mode, args, path="native", globals=None, env=None, cwd=None):
    """`runh args` in one mode, checked to have taken its path: Python with
    RUNH_PYTHON_ONLY=1, else `path` ("native", or "python" for a handoff)."""
    t = ltraced(globals)
    r = t(*args, env={**_env(mode), **(env or {})}, cwd=cwd)
    _check_path(t, mode if path == "native" else "python", r)
    return r


def _both_modes(ltraced, args, path="native", **kw):
    """{mode: (exit code, stdout, stderr)} of one read-only call in each mode."""
    return {mode: (r.returncode, r.stdout, r.stderr)
            for mode in MODES for r in [_call(ltraced, mode, args, path, **kw)]}


# ---------------------------------------------------------------- containers

class Box:
    """One container of a test: its id, its /out dir on the host, and the cgroup dirs its
    state.json recorded (read at create, to check afterwards that delete removed them)."""

    def __init__(self, runh, cid, out):
        self.runh, self.cid, self.out = runh, cid, out
        self.dir = os.path.join(runh.root, cid)
        self.cgroups = []

    def py(self, *args, check=True):
        """`runh args` through the Python CLI (setup and observation)."""
        r = self.runh(*args, env=_env("python"))
        assert not check or r.returncode == 0, f"{args}: {r.stderr}"
        return r

    def log(self):
        try:
            with open(os.path.join(self.out, "log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def observe(self):
        """(status or "gone", the process's log, once gone what is left of it on the host:
        its cgroup dirs and every entry of --root, the test's containers being deleted
        one by one)."""
        r = self.py("state", self.cid, check=False)
        if r.returncode == 0:
            return json.loads(r.stdout)["status"], self.log(), []
        assert r.stderr == f"runh: container {self.cid} does not exist\n", r.stderr
        return "gone", self.log(), [d for d in self.cgroups if os.path.exists(d)] + os.listdir(self.runh.root)

    def settle(self, want, timeout=3):
        """observe() once it equals want (signals and exits land asynchronously), or
        the last observation after timeout."""
        deadline = time.time() + timeout
        while (got := self.observe()) != want and time.time() < deadline:
            time.sleep(0.02)
        return got

    def wait(self, status, timeout=5):
        deadline = time.time() + timeout
        while (got := self.observe()[0]) != status:
            assert time.time() < deadline, f"{self.cid} is {got}, not {status}"
            time.sleep(0.02)

    def wait_cgroups_empty(self, timeout=5):
        """A dead container's other processes leave its cgroups a moment after init:
        until then delete is (rightly) handed to Python."""
        deadline = time.time() + timeout
        while any(_procs(d) for d in self.cgroups):
            assert time.time() < deadline, {d: _procs(d) for d in self.cgroups}
            time.sleep(0.02)

    def remove(self):
        if os.path.isdir(self.dir):
            self.py("delete", "--force", self.cid)


def _procs(cgroup_dir):
    """Pids in a cgroup dir and its children."""
    out = []
    for d, _, _ in os.walk(cgroup_dir):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                out += f.read().split()
        except FileNotFoundError:
            pass
    return out


def _cgroup_dirs(state):
    cg = state.get("cgroup") or {}
    return [cg["path"]] if cg.get("version") == 2 else sorted(set((cg.get("paths") or {}).values()))


@pytest.fixture(scope="module")
def base_bundle(rootfs_template):
    """(rootfs, config) that every container of this file starts from. One rootfs for
    all, read-only in each container: building one costs 0.25 s here. Like conftest's
    template it is session data (under the session's dir, removed with it); /out is
    made now, so that no container adds its mount point."""
    b = build_bundle(os.path.join(BASE, "launcher-lifecycle"), template=rootfs_template)
    os.mkdir(os.path.join(b, "rootfs", "out"))
    return os.path.join(b, "rootfs"), read_config(b)


@pytest.fixture
def containers(runh, ctx, base_bundle):
    """containers(status, edit=None, hooks=None, files=None) -> a Box running SCRIPT,
    brought to status ("created", "running", "paused", "stopped") by the Python CLI.
    hooks: {kind: sh script} run on the host with $OUT the box's /out dir (5 s timeout).
    files: {name: bytes} put in /out (mode 0755) before create. Whatever is left is
    deleted at teardown."""
    made = []

    def make(status="created", edit=None, hooks=None, files=None):
        rootfs, config = base_bundle[0], json.loads(json.dumps(base_bundle[1]))
        cid = ctx.new_id()
        box = Box(runh, cid, ctx.path(f"out-{cid}"))
        os.makedirs(box.out)
        for name, data in (files or {}).items():
            with open(os.path.join(box.out, name), "wb") as f:
                f.write(data)
            os.chmod(f.name, 0o755)
        config["root"]["path"] = rootfs
        config["process"]["args"] = sh(SCRIPT)
        config["mounts"].append({"destination": "/out", "type": "bind", "source": box.out, "options": ["rbind"]})
        if hooks:
            config["hooks"] = {k: [{"path": "/bin/sh", "args": ["sh", "-c", s], "env": [f"OUT={box.out}"],
                                    "timeout": 5}] for k, s in hooks.items()}
        if edit:
            edit(config)
        b = ctx.path(f"bundle-{cid}")
        os.makedirs(b)
        write_config(b, config)
        made.append(box)
        box.py("create", "--bundle", b, cid)
        with open(os.path.join(box.dir, "state.json")) as f:
            box.cgroups = _cgroup_dirs(json.load(f))
        if status == "created":
            return box
        box.py("start", cid)
        if box.settle(("running", "ready\n", []))[:2] != ("running", "ready\n"):
            raise AssertionError(f"{cid} did not start: {box.observe()}")
        if status == "paused" and box.py("pause", cid, check=False).returncode != 0:
            pytest.skip("pause does not work on this host")
        if status == "stopped":
            box.py("kill", cid, "KILL")
            box.wait("stopped")
            box.wait_cgroups_empty()
        return box

    yield make
    for box in made:
        box.remove()


# ---------------------------------------------------------------- start, kill, delete

# (status made, argv ({id}: the container), path the native mode takes, then runc's
# result: exit code, stderr ({id}: the container), status afterwards (or "gone"), the
# process's log; hooks as `containers` takes them).
Case = namedtuple("Case", "status argv path code stderr after log hooks", defaults=(None,))
# A poststart hook that waits for the process's line, so that the log's order is fixed.
POSTSTART = "until grep -q ready $OUT/log 2>/dev/null; do sleep 0.01; done; echo poststart >> $OUT/log"

CASES = {
    "start-created": Case("created", ["start", "{id}"], "native", 0, "", "running", "ready\n"),
    "start-running": Case("running", ["start", "{id}"], "python", 1,
                          "runh: cannot start an already running container\n", "running", "ready\n"),
    "start-stopped": Case("stopped", ["start", "{id}"], "python", 1,
                          "runh: cannot start a container that has stopped\n", "stopped", "ready\n"),
    "start-poststart-hook": Case("created", ["start", "{id}"], "python", 0, "", "running",
                                 "ready\npoststart\n", {"poststart": POSTSTART}),
    # A poststop hook alone leaves start native.
    "start-poststop-hook": Case("created", ["start", "{id}"], "native", 0, "", "running", "ready\n",
                                {"poststop": "echo poststop >> $OUT/log"}),
    "kill-created": Case("created", ["kill", "{id}", "9"], "native", 0, "", "stopped", ""),
    "kill-running-default": Case("running", ["kill", "{id}"], "native", 0, "", "stopped", "ready\nTERM\n"),
    "kill-running-number": Case("running", ["kill", "{id}", "10"], "native", 0, "", "stopped", "ready\nUSR1\n"),
    # Frozen: the signal waits for resume (the box's removal, delete --force, kills it).
    "kill-paused": Case("paused", ["kill", "{id}", "15"], "native", 0, "", "paused", "ready\n"),
    "kill-stopped": Case("stopped", ["kill", "{id}", "9"], "python", 1, "runh: container not running\n",
                         "stopped", "ready\n"),
    "kill-name": Case("running", ["kill", "{id}", "TERM"], "python", 0, "", "stopped", "ready\nTERM\n"),
    "kill-signame": Case("running", ["kill", "{id}", "SIGUSR1"], "python", 0, "", "stopped", "ready\nUSR1\n"),
    # KILL: Python's --all signals init twice (see test_kill_all_signals_init_once).
    "kill-all": Case("running", ["kill", "--all", "{id}", "9"], "python", 0, "", "stopped", "ready\n"),
    # runc parses the signal with Go's strconv.Atoi, which takes a sign.
    "kill-plus-sign": Case("running", ["kill", "{id}", "+10"], "native", 0, "", "stopped", "ready\nUSR1\n"),
    "delete-stopped": Case("stopped", ["delete", "{id}"], "native", 0, "", "gone", "ready\n"),
    "delete-stopped-force": Case("stopped", ["delete", "--force", "{id}"], "native", 0, "", "gone", "ready\n"),
    "delete-stopped-f": Case("stopped", ["delete", "-f", "{id}"], "native", 0, "", "gone", "ready\n"),
    "delete-created": Case("created", ["delete", "{id}"], "python", 0, "", "gone", ""),
    "delete-running": Case("running", ["delete", "{id}"], "python", 1,
                           "runh: cannot delete container {id} that is not stopped: running\n", "running", "ready\n"),
    "delete-running-force": Case("running", ["delete", "--force", "{id}"], "python", 0, "", "gone", "ready\n"),
    "delete-poststop-hook": Case("stopped", ["delete", "{id}"], "python", 0, "", "gone", "ready\npoststop\n",
                                 {"poststop": "echo poststop >> $OUT/log"}),
}
@pytest.mark.parametrize("case", list(CASES))
def test_both_paths(containers, ltraced, case):
    """Native (or handed off, as the case says) and Python-only, each on a fresh
    container of the same config, one after the other so that each is the root's only
    container: same result, and runc's."""
    c = CASES[case]
    want = (c.code, "", c.stderr, c.after, c.log, [])
    got = {}
    for mode in MODES:
        box = containers(c.status, hooks=c.hooks)
        r = _call(ltraced, mode, [a.format(id=box.cid) for a in c.argv], c.path)
        seen = box.settle(want[3:])
        got[mode] = (r.returncode, r.stdout, r.stderr.replace(box.cid, "{id}"), *seen)
        box.remove()
    assert got == {mode: want for mode in MODES}


def test_kill_all_signals_init_once(containers, ltraced):
    """runc's `kill --all` signals each process of the container once. A second signal to
    init shows whenever init handled the first before the second came: with a USR1 trap,
    test_both_paths[kill-all] logged `USR1` twice now and then (hence KILL there). Both
    modes hand --all to Python; the kill(2) and pidfd_send_signal(2) calls tell."""
    box = containers("running")
    init = json.loads(box.py("state", box.cid).stdout)["pid"]
    t = ltraced(also=("kill", "pidfd_send_signal"))
    r = t("kill", "--all", box.cid, "USR1", env=_env("native"))
    assert (r.returncode, r.stderr) == (0, "")
    t.assert_python(r)
    to_init = [line for line in t.lines()
               if f" kill({init}, SIGUSR1)" in line or " pidfd_send_signal(" in line]
    assert len(to_init) == 1, to_init


def test_delete_takes_cache_with_last_container(containers, ltraced, runh):
    """A seccomp profile makes <root>/.cache; native delete keeps it while another
    container of the root exists and removes it with the last (containerd expects an
    empty --root)."""
    def seccomp(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    holder = containers("running", edit=seccomp)
    box = containers("stopped", edit=seccomp)
    assert sorted(os.listdir(runh.root)) == sorted([".cache", holder.cid, box.cid])
    r = _call(ltraced, "native", ["delete", box.cid])
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert sorted(os.listdir(runh.root)) == sorted([".cache", holder.cid])
    holder.py("kill", holder.cid, "KILL")
    holder.wait("stopped")
    holder.wait_cgroups_empty()
    r = _call(ltraced, "native", ["delete", holder.cid])
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert os.listdir(runh.root) == []
    assert [d for d in box.cgroups + holder.cgroups if os.path.exists(d)] == []


def test_delete_of_populated_cgroup_handed_off(containers, ltraced):
    """Without a pid namespace a process can outlive the container's init in its cgroup:
    the container is stopped, but killing what is left is Python's."""
    def no_pidns(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
        c["process"]["args"] = sh("sleep 100 & echo $! > /out/left")
    box = containers("created", edit=no_pidns)
    init = json.loads(box.py("state", box.cid).stdout)["pid"]
    box.py("start", box.cid)
    box.wait("stopped")
    with open(os.path.join(box.out, "left")) as f:
        left = int(f.read())
    assert str(left) in _procs(box.cgroups[0])
    r = _call(ltraced, "native", ["delete", box.cid], path="python")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert box.observe() == ("gone", "", [])
    # Both are zombies now, re-parented to pytest (a subreaper), and no container
    # processes by the measure of conftest's reaper: reap them here.
    for pid in (left, init):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def test_delete_waits_for_lock(containers, ltraced):
    """Native delete takes the container's flock as the Python CLI does: while another
    process holds it, the delete blocks and the state dir stays."""
    box = containers("stopped")
    t = ltraced()
    lock = os.open(box.dir, os.O_RDONLY | os.O_DIRECTORY)  # the state dir itself is the lock
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = t.popen("delete", box.cid, env=_env("native"), stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            assert p.poll() is None and os.path.isdir(box.dir)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        out, err = p.communicate(timeout=10)
    finally:
        os.close(lock)
    assert (p.returncode, out, err) == (0, "", "")
    t.assert_native(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    assert box.observe() == ("gone", "ready\n", [])


# ---------------------------------------------------------------- core error

def test_start_core_error_reported_once(containers, ltraced, ctx):
    """An executable file that is no program passes create's look-up and fails init's
    execve at start (ENOEXEC): the native start's handshake gets the error, hands it to
    Python in RUNH_CORE_ERROR (seen in python3's environment under strace -v), and
    Python reports it to stderr and --log exactly as it reports its own handshake's
    failure. A second attempt would say "cannot start a container that has stopped"."""
    got = {}
    for mode in MODES:
        box = containers("created", files={"prog": b"not a program\n"},
                         edit=lambda c: c["process"].update(args=["/out/prog"]))
        log = ctx.path(f"{mode}.log")
        t = ltraced(["--root", box.runh.root, "--log", log, "--log-format", "json"], verbose=True)
        r = t("start", box.cid, env=_env(mode))
        t.assert_python(r)
        handoffs = [line for line in t.lines() if (m := EXEC_LINE.match(line))
                    and os.path.basename(m[2]).startswith("python")]
        assert len(handoffs) == 1, handoffs
        assert ("RUNH_CORE_ERROR=" in handoffs[0]) == (mode == "native"), handoffs[0]
        with open(log) as f:
            entries = [(e["level"], e["msg"]) for e in map(json.loads, f)]
        # (init exits just after it reported its exec error: under load, a moment later)
        if box.observe()[0] == "running":
            box.wait("stopped", timeout=3)
        got[mode] = (r.returncode, r.stdout, r.stderr.replace(box.cid, "{id}"), entries, box.observe()[0])
        box.remove()
    msg = 'exec "/out/prog": exec format error'
    assert got == {mode: (1, "", f"runh: {msg}\n", [("error", msg)], "stopped") for mode in MODES}


# ---------------------------------------------------------------- state

# Unsorted, and every kind of character the two JSON writers might escape differently.
ANNOTATIONS = {
    "z.last-first": "1",
    "a.unicode": "é ü 漢字 🎉",
    'quote"key': 'x"y\\z',
    "<html>&": "<b>&amp;</b>",
    "newlines": "l1\nl2\r\n\tt",
    "control": "\x00\x01\x08\x0c\x1b\x1f\x7f",
    "separators": "\u2028\u2029\ufeff",
    "m.middle": "",
}
STATE_KEYS = ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner", "annotations"]


@pytest.mark.parametrize("status", ["created", "running", "paused", "stopped"])
def test_state_same_bytes(containers, ltraced, status):
    box = containers(status, edit=lambda c: c.update(annotations=ANNOTATIONS))
    got = _both_modes(ltraced, ["state", box.cid])
    assert got["native"] == got["python"]
    code, out, err = got["native"]
    assert (code, err) == (0, "")
    s = json.loads(out)
    assert list(s) == STATE_KEYS
    assert list(s["annotations"].items()) == list(ANNOTATIONS.items())
    assert s["status"] == status and (s["pid"] == 0) == (status == "stopped")


@pytest.mark.parametrize("globals", [
    pytest.param(lambda root, d: [f"--root={root}"], id="root="),
    pytest.param(lambda root, d: ["--log", f"{d}/log", "--log-format", "json", "--root", root], id="log-json"),
    pytest.param(lambda root, d: ["--log-format=text", f"--log={d}/log", "--root", root], id="log=-text"),
    pytest.param(lambda root, d: ["--root", root + "/"], id="root-slash"),
])
def test_state_global_spellings(containers, ltraced, ctx, globals):
    box = containers("created")
    plain = _call(ltraced, "native", ["state", box.cid])
    r = _call(ltraced, "native", ["state", box.cid], globals=globals(box.runh.root, ctx.dir))
    assert (r.returncode, r.stdout, r.stderr) == (0, plain.stdout, "")
    # The log is created at start, as runc does, but it is for errors only, and errors
    # are Python's: no line.
    log = ctx.path("log")
    assert not os.path.exists(log) or os.path.getsize(log) == 0


@pytest.mark.parametrize("how", ["relative-root", "debug", "timing"])
def test_state_handoffs_same_output(containers, ltraced, ctx, how):
    """Calls the launcher leaves to Python although nothing is wrong: the same JSON."""
    box = containers("running")
    plain = _call(ltraced, "native", ["state", box.cid])
    kw = {"relative-root": dict(globals=["--root", os.path.relpath(box.runh.root, ctx.dir)], cwd=ctx.dir),
          "debug": dict(globals=["--debug", "--root", box.runh.root]),
          "timing": dict(env={"RUNH_TIMING": "1"})}[how]
    r = _call(ltraced, "native", ["state", box.cid], path="python", **kw)
    assert (r.returncode, r.stdout) == (0, plain.stdout), r.stderr


# state.json that is not JSON, and a truncated one.
UNREADABLE = {"garbage": "x", "truncated": "{"}


def _fake_state(root, cid, content):
    """A state dir as create leaves it before state.json is written (content None), or
    with a state.json of content. Removed by the caller."""
    sdir = os.path.join(root, cid)
    os.mkdir(sdir)
    if content is not None:
        with open(os.path.join(sdir, "state.json"), "w") as f:
            f.write(content)
    return sdir


@pytest.mark.parametrize("how", ["missing", "invalid", "creating", "create-died",
                                 *UNREADABLE])
def test_state_errors(runh, ctx, ltraced, how):
    """No container, or none the launcher can read: Python's one error line in both modes
    (runc's wording for the first two), or its "creating" state while a create holds the
    lock, "stopped" once that create is gone."""
    cid = {"invalid": "bad/../id"}.get(how, ctx.new_id())
    sdir = None
    if how not in ("missing", "invalid"):
        sdir = _fake_state(runh.root, cid, UNREADABLE.get(how))
    lock = os.open(sdir, os.O_RDONLY | os.O_DIRECTORY) if how == "creating" else None  # the dir is the lock
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # as a create in progress holds it
        got = _both_modes(ltraced, ["state", cid], path="python")
    finally:
        if lock is not None:
            os.close(lock)
        if sdir:
            shutil.rmtree(sdir)
    code, out, err = got["native"]
    if how in ("creating", "create-died"):
        assert (code, json.loads(out)["status"]) == (0, {"creating": "creating"}.get(how, "stopped"))
    else:
        assert code == 1 and err.startswith("runh: ") and err.count("\n") == 1, err
    assert got["native"] == got["python"]
    want = {"missing": f"runh: container {cid} does not exist\n",
            "invalid": f"runh: invalid container id format: {cid}\n"}.get(how)
    if want:
        assert got["native"] == (1, "", want)


@pytest.mark.parametrize("content", list(UNREADABLE))
def test_delete_of_unreadable_state(runh, ctx, ltraced, content):
    """A state.json that cannot be read says nothing of what is left of the container:
    delete (and delete --force) refuse in one line and keep the state dir (so `list`
    still shows it), in both modes (the launcher leaves it to Python). A dir with no
    state.json and nothing but the lock is a create killed before its record: removed."""
    cid = ctx.new_id()
    sdir = _fake_state(runh.root, cid, UNREADABLE[content])
    try:
        for argv in (["delete", cid], ["delete", "--force", cid]):
            r = _call(ltraced, "native", argv, path="python")
            assert (r.returncode, r.stdout) == (1, ""), r.stderr
            assert r.stderr.startswith(f"runh: container {cid}: cannot read state.json") and r.stderr.count("\n") == 1
            assert os.listdir(runh.root) == [cid]
        os.unlink(os.path.join(sdir, "state.json"))
        r = _call(ltraced, "native", ["delete", cid], path="python")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        assert os.listdir(runh.root) == []
    finally:
        shutil.rmtree(sdir, ignore_errors=True)
