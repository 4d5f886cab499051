"""The native launcher (rust/launcher): which `exec` calls it runs itself, and that the
result is the Python CLI's, to the byte.

`.venv/bin/runh` is a static Rust program. It runs a plain `exec` into a running container
without Python (the interpreter's start alone costs more than crun's whole exec) and hands
every other call, argv unchanged, to the Python CLI before it has done anything. That is
only sound if the two paths can never be told apart, so this file proves:

- which path a call takes, from the execve/execveat calls under `strace -f`: the handoff is
  an execve of `python3`; the native path never execs an interpreter;
- that the handoffs (RUNH_PYTHON_ONLY, unsupported flags, missing/paused/stopped
  containers) still give runc's errors;
- that a failure of the core after the native path started is reported by Python (one
  stderr line, one --log line) without a second exec attempt;
- that the process a flag set builds looks the same from inside whichever path ran it, and
  that exit statuses and forwarded signals are the same;
- that every option of exec's table (python/runh/cli/exec_.py) and of the global table has
  been classified here as native or handed off, so an option added to Python without a
  decision for the launcher fails this file;
- that a pid file that cannot be written fails the exec and leaves no process behind.

The differences this file found when it was written (bugs on one path or the other) are
kept as cases of test_former_differences, each with runc's behaviour, which both paths
now follow.
"""

import array
import contextlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

from conftest import RUNH, Runner, sh
from test_exec import running  # noqa: F401  (fixture: a detached `sleep` container)
from test_tty import _listener, _read_until_eof

from runh.cli import exec_
from runh.cli._table import GLOBAL_OPTIONS


def _is_launcher(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


pytestmark = [
    pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed"),
    # RUNH may name another build of the CLI (e.g. a Python entry point): nothing to test.
    pytest.mark.skipif(not _is_launcher(RUNH), reason=f"{RUNH} is not the native launcher"),
]

MODES = ("native", "python")
# Any of these in the environment sends a call to Python (or changes what it does): the
# native runs must not inherit them from whoever runs the tests.
HANDOFF_ENV = ("RUNH_PYTHON_ONLY", "RUNH_TIMING", "LISTEN_FDS", "LISTEN_PID", "RUNH_CORE_ERROR")


def _env(mode):
    env = {k: v for k, v in os.environ.items() if k not in HANDOFF_ENV}
    if mode == "python":
        env["RUNH_PYTHON_ONLY"] = "1"
    return env


# ---------------------------------------------------------------- strace

# `PID execve("path", ["argv0", ...` and `PID execveat(FD, "", ["runh-exec", ...`
EXEC_LINE = re.compile(r'^(\d+)\s+execve(?:at)?\((?:\d+, )?"((?:[^"\\]|\\.)*)", \[(?:"((?:[^"\\]|\\.)*)")?')


class Traced(Runner):
    """The `runh` fixture's calls (output to files, same --root) under `strace -f`, which
    logs every execve/execveat. globals= (a list) replaces the leading `--root R`, to try
    other spellings of the global options."""

    def __init__(self, runh, log, globals=None):
        super().__init__(runh.path, runh.root)
        self.log = log
        self.globals = globals

    def argv(self, *args, root=None):
        call = super().argv(*args, root=root) if self.globals is None \
            else [self.path, *self.globals, *map(str, args)]
        return ["strace", "-f", "-qq", "-s", "256", "-e", "trace=execve,execveat", "-o", self.log, *call]

    def execs(self):
        """(pid, path, argv[0]) of each exec of the last call, in order."""
        out = []
        with open(self.log) as f:
            for line in f:
                m = EXEC_LINE.match(line)
                if m:
                    out.append((int(m[1]), m[2], m[3]))
        return out

    def python_ran(self):
        return any(os.path.basename(path).startswith("python") for _, path, _ in self.execs())

    def core_execs(self):
        """Pids that exec'd runh-init's memfd as `runh-exec`: one per attempt to start the
        exec process, whichever of the launcher or Python makes it, and nothing else
        uses that name (clone3 counts would also count the interpreter's own children)."""
        return [pid for pid, _, argv0 in self.execs() if argv0 == "runh-exec"]

    def assert_native(self, r):
        assert not self.python_ran(), f"handed to Python: {self.execs()}\n{r.stderr}"
        assert len(self.core_execs()) == 1, self.execs()

    def assert_python(self, r):
        assert self.python_ran(), f"not handed to Python: {self.execs()}\n{r.stderr}"


@pytest.fixture
def traced(runh, ctx):
    """traced(globals=None) -> a Traced runner with its own log file."""
    n = [0]

    def make(globals=None):
        n[0] += 1
        return Traced(runh, ctx.path(f"strace{n[0]}.log"), globals)
    return make


def _process_file(ctx, name, **fields):
    """A process.json for `exec --process` (the container's usual PATH, no terminal)."""
    p = {"args": ["true"], "cwd": "/", "env": ["PATH=/bin"], "terminal": False, **fields}
    path = ctx.path(name)
    with open(path, "w") as f:
        json.dump(p, f)
    return path


def _exec_pids(runh, cid, init_pid):
    """Processes in the container other than its init (`runh ps`, host pids)."""
    r = runh("ps", "--format", "json", cid)
    assert r.returncode == 0, r.stderr
    return [p for p in json.loads(r.stdout) if p != init_pid]


# ---------------------------------------------------------------- 1. the native path

def test_native_foreground(traced, running):
    cid, _, _ = running()
    t = traced()
    r = t("exec", cid, "sh", "-c", "echo out; echo err >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")
    t.assert_native(r)


def test_native_containerd_form(traced, running, ctx):
    """containerd's shim: `exec --process P --detach --pid-file F ID`. The pid file must
    name the process that ran: under strace -f, the pid that exec'd the process's args
    (strace reports host pids, as the pid file does), a fork of the one that exec'd
    runh-exec (it joins the pid namespace last, exec.rs)."""
    cid, _, _ = running()
    pf = ctx.path("exec.pid")
    proc = _process_file(ctx, "p.json", args=["sh", "-c", "exit 0"])
    t = traced()
    r = t("exec", "--process", proc, "--detach", "--pid-file", pf, cid)
    assert r.returncode == 0, r.stderr
    t.assert_native(r)
    pid = int(open(pf).read())
    assert len(t.core_execs()) == 1 and pid not in t.core_execs()
    assert (pid, "sh") in [(p, argv0) for p, _, argv0 in t.execs()]


@pytest.mark.parametrize("globals", [
    pytest.param(lambda root, d: [f"--root={root}"], id="root="),
    pytest.param(lambda root, d: ["--log", f"{d}/log.json", "--log-format", "json", "--root", root],
                 id="log-json"),
    pytest.param(lambda root, d: [f"--log={d}/log.json", f"--root={root}", "--log-format=json"],
                 id="log=-root=-format="),
])
def test_native_global_spellings(traced, running, runh, ctx, globals):
    cid, _, _ = running()
    t = traced(globals(runh.root, ctx.dir))
    r = t("exec", cid, "true")
    assert r.returncode == 0, r.stderr
    t.assert_native(r)
    # The log is for errors only, and errors are Python's: a success writes none.
    assert not os.path.exists(ctx.path("log.json"))


def test_native_console_socket(traced, running, ctx):
    cid, _, _ = running()
    sock = ctx.path("console.sock")
    thread, got = _listener(sock)
    t = traced()
    r = t("exec", "-t", "-d", "--console-socket", sock, cid, "sh", "-c", "tty; echo via-pty")
    thread.join()
    assert r.returncode == 0, r.stderr
    t.assert_native(r)
    assert "fd" in got, got
    try:
        out = _read_until_eof(got["fd"]).decode()
    finally:
        os.close(got["fd"])
    assert out.startswith("/dev/pts/") and "via-pty" in out, out


# ---------------------------------------------------------------- 2. handoffs

def test_python_only(traced, running):
    cid, _, _ = running()
    t = traced()
    r = t("exec", cid, "sh", "-c", "echo out; exit 5", env=_env("python"))
    assert (r.returncode, r.stdout) == (5, "out\n"), r.stderr
    t.assert_python(r)
    assert len(t.core_execs()) == 1


def test_cgroup_flag_handed_off(traced, running):
    """exec --cgroup is Python's (tests/test_exec_cgroup.py): a missing sub-cgroup is its
    error, with no process started."""
    cid, _, _ = running()
    t = traced()
    r = t("exec", "--cgroup", "x", cid, "true")
    assert r.returncode == 1
    assert "does not exist" in r.stderr, r.stderr
    t.assert_python(r)
    assert not t.core_execs()


@pytest.mark.parametrize("cid", ["nosuch-{token}", "bad/../id"])
def test_unknown_container_handed_off(traced, ctx, cid):
    cid = cid.format(token=ctx.token)
    t = traced()
    r = t("exec", cid, "true")
    assert r.returncode == 1
    t.assert_python(r)
    assert (f"container {cid} does not exist" if "/" not in cid
            else f"invalid container id format: {cid}") in r.stderr


def test_paused_and_stopped_handed_off(traced, running, runh):
    cid, _, _ = running()
    if runh("pause", cid).returncode != 0:
        pytest.skip("pause does not work on this host")
    try:
        t = traced()
        r = t("exec", cid, "true")
        assert r.returncode == 1
        assert "cannot exec in a paused container (use --ignore-paused to override)" in r.stderr
        t.assert_python(r)
        # --ignore-paused is a handoff too. The process joins the frozen cgroup before it
        # execs, so it runs (and strace -f, which follows it, ends) only after resume.
        t = traced()
        resume = threading.Timer(1.0, lambda: runh("resume", cid))
        resume.start()
        r = t("exec", "-d", "--ignore-paused", cid, "true")
        resume.join()
        assert r.returncode == 0, r.stderr
        t.assert_python(r)
    finally:
        if runh.state(cid)["status"] == "paused":
            assert runh("resume", cid).returncode == 0
    runh.wait_status(cid, "running")
    runh("kill", cid, "KILL")
    runh.wait_status(cid, "stopped")
    t = traced()
    r = t("exec", cid, "true")
    assert r.returncode == 1
    assert "cannot exec in a stopped container" in r.stderr
    t.assert_python(r)


# ---------------------------------------------------------------- 3. core errors

def test_core_error_reported_once(traced, running, runh, ctx):
    """The core fails after the native path started: Python words and logs the error it
    was handed, and does not try the exec again (one runh-exec in the trace)."""
    cid, _, _ = running()
    log = ctx.path("log.json")
    t = traced(["--root", runh.root, "--log", log, "--log-format", "json"])
    r = t("exec", cid, "/nonexistent")
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('runh: exec: "/nonexistent": '), r.stderr
    with open(log) as f:
        entries = [json.loads(line) for line in f]
    assert len(entries) == 1, entries
    assert entries[0]["level"] == "error"
    assert entries[0]["msg"] == lines[0][len("runh: "):]
    assert t.python_ran()
    assert len(t.core_execs()) == 1, t.execs()


# ---------------------------------------------------------------- 4. differential

# What an exec'd process can see of how it was set up; every line must be the same
# whichever path started it.
PROBE = ("id; grep -E '^(Cap|NoNewPrivs|Seccomp|Sig(Blk|Ign))' /proc/self/status; pwd; umask; "
         "ulimit -n; cat /proc/self/oom_score_adj /proc/self/cgroup; env | sort; "
         "for n in /proc/self/ns/*; do echo $n $(readlink $n); done; ls /proc/self/fd; exit 3")


def _probe_config(c):
    # Flags must be able to change what the config says: no_new_privs off, and a seccomp
    # profile, which exec'd processes get too.
    c["process"]["noNewPrivileges"] = False
    c["process"]["env"].append("FROM_CONFIG=1")
    c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                             "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}


def _run(runh, mode, args, fd3=None):
    """`runh args` in one mode (runh: the fixture or a Traced runner); with fd3 (bytes),
    a fresh pipe holding them is fd 3."""
    if fd3 is None:
        return runh(*args, env=_env(mode))
    r_fd, w_fd = os.pipe()
    os.write(w_fd, fd3)
    os.close(w_fd)
    try:
        return runh(*args, env=_env(mode), close_fds=False, preexec_fn=lambda: os.dup2(r_fd, 3))
    finally:
        os.close(r_fd)


def _check_path(t, mode, r):
    """The Traced run t took the path its mode asks for (a differential of two Python
    runs would prove nothing)."""
    (t.assert_native if mode == "native" else t.assert_python)(r)


def _both(traced, args, fd3=None, check_paths=True):
    """{mode: (exit code, stdout, stderr)} of the same call in both modes."""
    out = {}
    for mode in MODES:
        t = traced()
        r = _run(t, mode, args, fd3)
        if check_paths:
            _check_path(t, mode, r)
        out[mode] = (r.returncode, r.stdout, r.stderr)
    return out


DIFF_CASES = {
    "plain": [],
    "env-cwd": ["--env", "A=1", "-e", "B=2", "--cwd", "/tmp"],
    "user-gids": ["--user", "1000:1000", "--additional-gids", "10", "-g", "11"],
    "user-only": ["-u", "1000"],
    "cap": ["--cap", "CAP_SYS_ADMIN"],
    "no-new-privs": ["--no-new-privs"],
    # Empty: as if not given, on both paths. A real profile or label is refused where the
    # LSM is not enabled (tests/test_lsm.py, both paths) and applied where it is (the
    # guest's tests/lsm_checks.py runs the same scenario on both paths).
    "apparmor-label": ["--apparmor", "", "--process-label", ""],
    "preserve-fds": ["--preserve-fds", "1"],
    "process-json": ["--process", "{process}"],
}


@pytest.mark.parametrize("case", sorted(DIFF_CASES))
def test_same_process_both_paths(traced, running, ctx, case):
    cid, _, _ = running(_probe_config)
    flags = DIFF_CASES[case]
    fd3 = b"through-fd-3\n" if "--preserve-fds" in flags else None
    script = ("cat <&3; " if fd3 else "") + PROBE
    if "{process}" in flags:
        proc = _process_file(
            ctx, "probe.json", args=sh(script), cwd="/etc", env=["PATH=/bin", "X=json"],
            user={"uid": 7, "gid": 8, "additionalGids": [9], "umask": 0o27},
            capabilities={"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                          "permitted": ["CAP_KILL", "CAP_CHOWN"]},
            rlimits=[{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}],
            noNewPrivileges=True, oomScoreAdj=7)
        args = ["exec", *[proc if f == "{process}" else f for f in flags], cid]
    else:
        args = ["exec", *flags, cid, *sh(script)]
    got = _both(traced, args, fd3)
    assert got["native"] == got["python"]
    code, out, err = got["native"]
    assert code == 3, err
    assert out.count("\n") > 20, out  # the probe ran to the end
    if fd3:
        assert out.startswith("through-fd-3\n")


# Calls where the two paths once differed: runc's behaviour, now both paths', in brackets.
FORMER_DIFFERENCES = {
    # Python dropped a `--` right after the id [runc runs "--" as the command].
    "dashdash-after-id": lambda cid, proc: ["exec", cid, "--", "echo", "a"],
    # Native accepted any --log-format [runc: "invalid log-format: xml"].
    "bad-log-format": lambda cid, proc: ["--log-format", "xml", "exec", cid, "echo", "a"],
    # -t with --process: Python asked the core for a pty and failed [runc ignores -t and
    # uses process.terminal (false: no pty)].
    "tty-with-process-file": lambda cid, proc: ["exec", "-t", "--process", proc, cid],
}


@pytest.mark.parametrize("case", sorted(FORMER_DIFFERENCES))
def test_former_differences(traced, running, ctx, case):
    cid, _, _ = running()
    proc = _process_file(ctx, "echo.json", args=["echo", "hi"])
    # Either path may be the one that changed (e.g. into a handoff): compare results only.
    got = _both(traced, FORMER_DIFFERENCES[case](cid, proc), check_paths=False)
    assert got["native"] == got["python"]


# ---------------------------------------------------------------- 5. exit status, signals

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("script,code", [("exit 7", 7), ("kill -USR1 $$", 128 + signal.SIGUSR1)],
                         ids=["exit", "signal"])
def test_exit_status(traced, running, mode, script, code):
    """The exit code passes through; killed by signal N is 128+N, as runc reports it."""
    cid, _, _ = running()
    t = traced()
    r = _run(t, mode, ["exec", cid, "sh", "-c", script])
    _check_path(t, mode, r)
    assert r.returncode == code, r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_forwarded(runh, running, mode):
    cid, _, _ = running()
    p = runh.popen("exec", cid, "sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
                   stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=_env(mode))
    try:
        # Printed by the process itself: runh knows its pid and forwards from now on.
        assert p.stdout.readline() == b"ready\n"
        # Handed off, runh has exec'd the interpreter in place (not traced here: strace
        # would take the signal itself).
        exe = os.path.basename(os.readlink(f"/proc/{p.pid}/exe"))
        assert exe.startswith("python") == (mode == "python"), exe
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 42
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def _until(fd, marker, timeout=20):
    """Read fd (a pty master) until marker has been seen."""
    seen, deadline = b"", time.time() + timeout
    while marker not in seen:
        assert time.time() < deadline, seen
        if select.select([fd], [], [], 0.2)[0]:
            seen += os.read(fd, 4096)


def test_sigwinch_with_console_socket(runh, running, ctx):
    """Foreground exec, its pty sent to a console socket: window sizes are the socket
    owner's business (runc never passes SIGWINCH on). The process counts the WINCHs that
    reach it before PWR, which both paths forward: ash runs pending traps in signal
    order, and WINCH (28) comes before PWR (30)."""
    cid, _, _ = running()
    proc = _process_file(ctx, "tty.json", terminal=True, args=sh(
        "w=0; trap 'w=1' WINCH; trap 'exit $((50 + w))' PWR; echo ready; while :; do sleep 0.05; done"))
    codes = {}
    for mode in MODES:
        sock = ctx.path(f"{mode}.sock")
        thread, got = _listener(sock)
        p = runh.popen("exec", "--process", proc, "--console-socket", sock, cid,
                       stdin=subprocess.DEVNULL, env=_env(mode))
        try:
            thread.join()
            _until(got["fd"], b"ready")
            p.send_signal(signal.SIGWINCH)
            p.send_signal(signal.SIGPWR)
            codes[mode] = p.wait(timeout=20)
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
            if "fd" in got:
                os.close(got["fd"])
    assert codes == {"native": 50, "python": 50}


# ---------------------------------------------------------------- 6. drift guard

# Every spelling of every exec option in python/runh/cli/exec_.py OPTIONS -> the value a
# call passes (None: a flag). Placeholders: {dir} (the test's dir), {process} (a
# process.json), {sock} (a console socket with a listener).
NATIVE = {
    "--process": "{process}", "-p": "{process}",
    "--detach": None, "-d": None,
    "--pid-file": "{dir}/p.pid",
    "--console-socket": "{sock}",
    "--tty": None, "-t": None,
    "--cwd": "/tmp",
    "--env": "A=1", "-e": "A=1",
    "--user": "1000:1000", "-u": "1000",
    "--additional-gids": "10", "-g": "10",
    "--cap": "CAP_SYS_ADMIN", "-c": "CAP_SYS_ADMIN",
    "--no-new-privs": None,
    "--apparmor": "",  # empty: any real value needs the LSM (see DIFF_CASES)
    "--process-label": "",
    "--preserve-fds": "0",
    "--ignore-paused": None,
    "--no-subreaper": None,
}
HANDED_OFF = {
    "--cgroup": "x",  # Python's (tests/test_exec_cgroup.py)
    "--pidfd-socket": "{dir}/pidfd.sock",  # Python's (tests/test_pidfd_socket.py)
}
# The global table: the launcher takes --root and those that change nothing for exec on
# success (--systemd-cgroup, --rootless and --criu act in create/run/checkpoint only).
NATIVE_GLOBALS = {"--root": "{root}", "--log": "{dir}/log", "--log-format": "json",
                  "--criu": "criu", "--systemd-cgroup": None, "--rootless": "false"}
HANDED_OFF_GLOBALS = {"--debug": None}
# A pty needs a socket to send it to, and a socket a pty to send: one goes with the other.
PARTNER = {"--console-socket": ["-t"],
           "--tty": ["--console-socket", "{sock}"], "-t": ["--console-socket", "{sock}"]}


def _spellings(table):
    return {s for o in table for s in (o[0], *o[1])}


def test_every_option_classified():
    assert not set(NATIVE) & set(HANDED_OFF)
    assert set(NATIVE) | set(HANDED_OFF) == _spellings(exec_.OPTIONS)
    assert not set(NATIVE_GLOBALS) & set(HANDED_OFF_GLOBALS)
    assert set(NATIVE_GLOBALS) | set(HANDED_OFF_GLOBALS) == _spellings(GLOBAL_OPTIONS)


def _forms(name, value):
    """The ways a call may spell the option: `--x v` and `--x=v` for long ones with a value."""
    if value is None:
        return [[name]]
    forms = [[name, value]]
    if name.startswith("--"):
        forms.append([f"{name}={value}"])
    return forms


@contextlib.contextmanager
def _filled(ctx, args):
    """args with {dir}, {root}, {process} and {sock} filled in. With {sock}, a console
    listener serves the call (unblocked afterwards if nothing connected)."""
    sock = ctx.path(f"c{secrets.token_hex(3)}.sock")  # one per call: bind wants a new path
    subst = {"{dir}": ctx.dir, "{root}": ctx.root,
             "{process}": _process_file(ctx, "true.json"), "{sock}": sock}
    filled = [re.sub("|".join(map(re.escape, subst)), lambda m: subst[m[0]], a) for a in args]
    if not any("{sock}" in a for a in args):
        yield filled
        return
    thread, got = _listener(sock)
    try:
        yield filled
    finally:
        if thread.is_alive():
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock)
                s.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0]))])
        thread.join()
        if "fd" in got:
            os.close(got["fd"])


def _exec_argv(flags, cid):
    """`exec FLAGS ID true`; a --process call takes its command from the file."""
    from_file = any(f.split("=")[0] in ("--process", "-p") for f in flags)
    return ["exec", *flags, cid, *([] if from_file else ["true"])]


def _paths_taken(traced, ctx, cid, table, globals_table=False):
    """{spelling: ("native"|"python", exit code, stderr)} for a call with each form of
    each option in table (exec's, or the globals' with globals_table)."""
    out = {}
    for name, value in table.items():
        for form in _forms(name, value):
            if globals_table:
                lead, flags = (form if name == "--root" else ["--root", "{root}", *form]), []
            else:
                lead, flags = ["--root", "{root}"], form + PARTNER.get(name, [])
            t = traced([])  # the whole argv is ours
            with _filled(ctx, lead + _exec_argv(flags, cid)) as argv:
                r = t(*argv)
            native = not t.python_ran() and len(t.core_execs()) == 1
            out[" ".join(form)] = ("native" if native else "python", r.returncode, r.stderr)
    return out


@pytest.mark.parametrize("table,globals_table", [(NATIVE, False), (NATIVE_GLOBALS, True)],
                         ids=["exec", "globals"])
def test_native_options_stay_native(traced, running, ctx, table, globals_table):
    cid, _, _ = running()
    got = _paths_taken(traced, ctx, cid, table, globals_table)
    assert {k: v for k, v in got.items() if v[:2] != ("native", 0)} == {}


@pytest.mark.parametrize("table,globals_table", [(HANDED_OFF, False), (HANDED_OFF_GLOBALS, True)],
                         ids=["exec", "globals"])
def test_handed_off_options_reach_python(traced, running, ctx, table, globals_table):
    cid, _, _ = running()
    got = _paths_taken(traced, ctx, cid, table, globals_table)
    assert {k: v for k, v in got.items() if v[0] != "python"} == {}


# Every value-taking exec option given an empty value: Python treats "" as not given (as
# runc's urfave/cli does for strings), so the launcher must too, or hand the call over.
EMPTY_VALUE_OPTIONS = sorted(n for n, v in NATIVE.items() if v is not None and n.startswith("--")
                             and n not in ("--console-socket",))


@pytest.mark.parametrize("name", EMPTY_VALUE_OPTIONS)
def test_empty_values_agree(traced, running, ctx, name):
    cid, _, _ = running()
    got = _both(traced, ["exec", f"{name}=", cid, "sh", "-c", "pwd; echo ok"], check_paths=False)
    # (--cap= warns about "CAP_": the two warnings may fall in different seconds)
    untimed = {m: (c, o, re.sub(r'time="[^"]*"', "", e)) for m, (c, o, e) in got.items()}
    assert untimed["native"] == untimed["python"]


# ---------------------------------------------------------------- 7. pid file failure

@pytest.mark.parametrize("mode", MODES)
def test_pid_file_failure_leaves_nothing(runh, running, mode):
    """runc kills the process when it cannot write the pid file: a caller that got an
    error has no pid to clean up after."""
    cid, init, _ = running()
    r = _run(runh, mode, ["exec", "-d", "--pid-file", "/nonexistent-dir/x", cid, "sleep", "100"])
    # Seen two ways: the container's cgroup (`runh ps`), and /proc (a `sleep 100` in the
    # container's pid namespace), in case the process escaped the cgroup.
    pidns = os.readlink(f"/proc/{init}/ns/pid")
    left = set(_exec_pids(runh, cid, init))
    for e in os.listdir("/proc"):
        try:
            if e.isdigit() and open(f"/proc/{e}/cmdline", "rb").read() == b"sleep\x00100\x00" \
                    and os.readlink(f"/proc/{e}/ns/pid") == pidns:
                left.add(int(e))
        except OSError:
            pass  # gone meanwhile
    for pid in left:  # this test's own container processes, killed before asserting
        os.kill(pid, signal.SIGKILL)
    assert r.returncode != 0
    assert left == set()
    assert "/nonexistent-dir/x:" in r.stderr, r.stderr  # the pid file, not a temp file


@pytest.mark.parametrize("mode", MODES)
def test_pid_file_mode(runh, running, ctx, mode):
    """runc creates the pid file 0666 less the umask, as any file it writes."""
    cid, _, _ = running()
    pf = ctx.path("exec.pid")
    r = runh("exec", "-d", "--pid-file", pf, cid, "true", env=_env(mode), preexec_fn=lambda: os.umask(0))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(pf).st_mode) == 0o666
