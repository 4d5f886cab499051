"""runh exec: every flag, the exit code, joining each namespace and the cgroup, the
stopped/paused/missing errors, and how the process enters (runh-init from the sealed
memfd, never the interpreter; runh's own process never a member of the pid namespace)."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import edit_config, sh

NS = ("cgroup", "ipc", "mnt", "net", "pid", "uts")


@pytest.fixture
def running(runh, ctx, make_bundle):
    """A detached container running `sleep`; yields (id, init pid, bundle)."""
    made = []

    def make(edit=None):
        b = make_bundle(args=["sleep", "1000"], edit=edit)
        cid = ctx.new_id()
        r = runh("run", "-d", "--bundle", b, cid)
        assert r.returncode == 0, r.stderr
        made.append(cid)
        return cid, runh.state(cid)["pid"], b

    yield make
    for cid in made:
        runh("delete", "--force", cid)


def test_output_and_exit_code(runh, running):
    cid, _, _ = running()
    r = runh("exec", cid, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"
    assert runh("exec", cid, "true").returncode == 0
    # killed by a signal: 128+N, as runc reports it
    assert runh("exec", cid, "sh", "-c", "kill -9 $$").returncode == 137


def test_joins_every_namespace_and_cgroup(runh, running):
    cid, pid, _ = running()
    script = "; ".join(f"readlink /proc/self/ns/{n}" for n in NS) + "; cat /proc/self/cgroup"
    r = runh("exec", cid, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for n, got in zip(NS, lines):
        assert got == os.readlink(f"/proc/{pid}/ns/{n}"), n
    # Same cgroup as init in every hierarchy (seen through the cgroup namespace: "/").
    with open(f"/proc/{pid}/cgroup") as f:
        init_cg = f.read().splitlines()
    r2 = runh("exec", "-d", "--pid-file", os.path.join(runh.root, "..", "p"), cid, "sleep", "30")
    assert r2.returncode == 0, r2.stderr
    epid = int(open(os.path.join(runh.root, "..", "p")).read())
    with open(f"/proc/{epid}/cgroup") as f:
        assert f.read().splitlines() == init_cg
    for n in NS:
        assert os.readlink(f"/proc/{epid}/ns/{n}") == os.readlink(f"/proc/{pid}/ns/{n}")


def test_pid_namespace_hides_runh(runh, running):
    cid, _, _ = running()
    # Only init and the exec'd process exist inside; the parent (runh) is outside: ppid 0.
    # echo is a builtin: no child of sh exists while the glob is expanded.
    r = runh("exec", cid, "sh", "-c", "echo /proc/[0-9]*; cut -d' ' -f4 /proc/self/stat")
    assert r.returncode == 0, r.stderr
    procs, ppid = r.stdout.splitlines()
    assert len(procs.split()) == 2, procs  # init and this sh
    assert ppid == "0"


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_enters_through_sealed_memfd(runh, running, ctx):
    """The process that joins the mount namespace has exec'd the memfd first: its
    /proc/self/exe is runh-init's sealed copy, never python3."""
    cid, _, _ = running()
    log = ctx.path("strace.log")
    r = subprocess.run(["strace", "-f", "-qq", "-o", log, "-e", "trace=execve,execveat,setns,clone3,clone",
                        *runh.argv("exec", cid, "true")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    execveat_pids, setns_mnt = set(), []
    for line in open(log):
        pid, rest = line.split(None, 1)
        if rest.startswith("execveat(") and "AT_EMPTY_PATH" in rest and "runh-exec" in rest:
            execveat_pids.add(pid)
        if rest.startswith("setns(") and "CLONE_NEWNS" in rest:
            setns_mnt.append(pid)
    assert execveat_pids and setns_mnt
    assert set(setns_mnt) <= execveat_pids, (execveat_pids, setns_mnt)


def test_flags(runh, running, ctx):
    def edit(c):
        c["process"]["noNewPrivileges"] = False
        c["process"]["env"] = ["PATH=/bin:/usr/bin", "A=1"]
    cid, _, _ = running(edit)
    r = runh("exec", "--env", "B=2", "-e", "C=3", "--cwd", "/tmp", "--user", "1000:1001",
             "--additional-gids", "5", "-g", "6", "--no-new-privs", "--cap", "CAP_SYS_ADMIN",
             cid, "sh", "-c", "echo $A$B$C; pwd; id -u; id -g; id -G; "
                              "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "123"
    assert out[1] == "/tmp"
    assert out[2:4] == ["1000", "1001"]
    assert sorted(out[4].split()) == ["1001", "5", "6"]
    bnd = int(out[5].split()[1], 16)
    assert bnd & (1 << 21)  # CAP_SYS_ADMIN added to the bounding set
    assert out[6].split()[1] == "1"
    # Without --no-new-privs the config's value (false here) holds.
    r = runh("exec", cid, "grep", "NoNewPrivs", "/proc/self/status")
    assert r.stdout.split()[1] == "0"
    # Refused on a host without AppArmor/SELinux, as runc refuses them (tests/test_lsm.py).
    if not os.path.exists("/sys/module/apparmor") and not os.path.exists("/sys/fs/selinux/enforce"):
        r = runh("exec", "--apparmor", "x", "--process-label", "y", cid, "true")
        assert r.returncode != 0 and "process.apparmorProfile" in r.stderr, r.stderr


def test_process_file(runh, running, ctx):
    cid, _, _ = running()
    p = {"args": ["sh", "-c", "echo $X; pwd; id -u; exit 3"], "env": ["X=from-json", "PATH=/bin"],
         "cwd": "/etc", "user": {"uid": 7, "gid": 7}, "terminal": False}
    path = ctx.path("process.json")
    with open(path, "w") as f:
        json.dump(p, f)
    r = runh("exec", "--process", path, cid)
    assert r.returncode == 3, r.stderr
    assert r.stdout.splitlines() == ["from-json", "/etc", "7"]


def test_detach_pid_file(runh, running, ctx):
    cid, _, _ = running()
    pf = ctx.path("exec.pid")
    r = runh("exec", "--detach", "--pid-file", pf, cid, "sleep", "100")
    assert r.returncode == 0, r.stderr
    pid = int(open(pf).read())
    assert open(f"/proc/{pid}/cmdline").read().split("\0")[:2] == ["sleep", "100"]
    assert pid in json.loads(runh("ps", "--format", "json", cid).stdout)


def test_preserve_fds(runh, running, ctx):
    cid, _, _ = running()
    r_fd, w_fd = os.pipe()
    os.write(w_fd, b"through-fd-3\n")
    os.close(w_fd)
    try:
        r = subprocess.run(runh.argv("exec", "--preserve-fds", "1", cid, "sh", "-c",
                                     "cat <&3; ls /proc/self/fd | wc -l"),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                           preexec_fn=lambda: os.dup2(r_fd, 3), close_fds=False)
    finally:
        os.close(r_fd)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "through-fd-3"
    # 0, 1, 2, 3, and ls's own directory fd
    assert r.stdout.splitlines()[1] == "5"


def test_listen_fds(runh, running):
    cid, _, _ = running()
    r_fd, w_fd = os.pipe()
    os.write(w_fd, b"activated\n")
    os.close(w_fd)

    def child():
        os.dup2(r_fd, 3)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())  # runh execs in place: same pid
    try:
        r = subprocess.run(runh.argv("exec", cid, "sh", "-c", 'cat <&3; echo $LISTEN_FDS $LISTEN_PID $$'),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                           preexec_fn=child, close_fds=False)
    finally:
        os.close(r_fd)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "activated"
    n, listen_pid, me = lines[1].split()
    assert n == "1" and listen_pid == me  # the process's own pid, as sd_listen_fds() wants


def test_stopped_paused_missing(runh, running, ctx, make_bundle):
    cid, pid, _ = running()
    r = runh("exec", "nosuch-" + ctx.token, "true")
    assert r.returncode != 0 and "does not exist" in r.stderr

    assert runh("pause", cid).returncode == 0
    r = runh("exec", cid, "true")
    assert r.returncode != 0
    assert "cannot exec in a paused container (use --ignore-paused to override)" in r.stderr
    pf = ctx.path("p.pid")
    r = runh("exec", "-d", "--ignore-paused", "--pid-file", pf, cid, "sh", "-c", "echo ok > /tmp/ran")
    assert r.returncode == 0, r.stderr
    assert runh("resume", cid).returncode == 0
    runh.wait_status(cid, "running")

    runh("kill", cid, "KILL")
    runh.wait_status(cid, "stopped")
    r = runh("exec", cid, "true")
    assert r.returncode != 0 and "cannot exec in a stopped container" in r.stderr


def test_missing_executable(runh, running):
    cid, _, _ = running()
    r = runh("exec", cid, "no-such-program")
    assert r.returncode != 0
    assert 'exec: "no-such-program": executable file not found in $PATH' in r.stderr


def test_seccomp_applies_to_exec(runh, running):
    def edit(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    cid, _, _ = running(edit)
    r = runh("exec", cid, "sh", "-c", "grep '^Seccomp:' /proc/self/status; mkdir /tmp/x && echo made")
    assert "Seccomp:\t2" in r.stdout, r.stderr
    assert "made" not in r.stdout


def test_foreground_signal_forwarding(runh, running):
    cid, _, _ = running()
    p = runh.popen("exec", cid, "sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
                   stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout.readline() == b"ready\n"
    p.terminate()
    assert p.wait(timeout=20) == 42
