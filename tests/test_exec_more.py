"""runh exec into containers with a user namespace or a time namespace, with the process
fields (scheduler, ioPriority, execCPUAffinity, the container's personality), with a
SCMP_ACT_NOTIFY seccomp agent, with unknown capability names; and LISTEN_FDS for run."""

import errno
import json
import os
import subprocess
import threading

import pytest

from conftest import sh
from test_exec import running  # noqa: F401  (fixture)
from test_rootless import user  # noqa: F401  (fixture)
from test_seccomp_containers import Agent, NR, _allow_all_but, bundle_with, scall  # noqa: F401

BASE = 200000  # host ids of the container's root (as tests/test_userns.py)


def _userns(c):
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": BASE, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": BASE, "size": 65536}]


def _status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)


def test_exec_into_user_namespace(runh, running):
    cid, pid, _ = running(_userns)
    script = ("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
              "readlink /proc/self/ns/user; grep -E '^Cap(Eff|Bnd)' /proc/self/status")
    r = runh("exec", cid, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["0", str(BASE), "65536"]
    assert lines[1].split() == ["0", str(BASE), "65536"]
    assert lines[2:4] == ["0", "0"]
    assert lines[4] == os.readlink(f"/proc/{pid}/ns/user")
    caps = dict(l.split(":") for l in lines[5:7])
    init = _status(pid)
    assert caps["CapEff"].strip() == init["CapEff"].strip()
    assert caps["CapBnd"].strip() == init["CapBnd"].strip()


def test_exec_into_user_namespace_as_user(runh, running, ctx):
    """A non-root user of the namespace: host ids are BASE+1000, no caps left."""
    cid, _, _ = running(_userns)
    pf = ctx.path("pid")
    r = runh("exec", "-d", "--pid-file", pf, "-u", "1000:1000", cid, "sleep", "30")
    assert r.returncode == 0, r.stderr
    epid = int(open(pf).read())
    st = _status(epid)
    assert st["Uid"].split()[0] == str(BASE + 1000) and st["Gid"].split()[0] == str(BASE + 1000)
    assert int(st["CapEff"], 16) == 0
    os.kill(epid, 9)


def test_exec_time_namespace(runh, running):
    day = 86400

    def edit(c):
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 10 * day}, "monotonic": {"secs": day}}
    cid, pid, _ = running(edit)
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    r = runh("exec", cid, "sh", "-c", "cat /proc/uptime; readlink /proc/self/ns/time")
    assert r.returncode == 0, r.stderr
    up, ns = r.stdout.splitlines()[:2]
    assert 10 * day <= float(up.split()[0]) - host < 10 * day + 30
    assert ns == os.readlink(f"/proc/{pid}/ns/time") != os.readlink("/proc/self/ns/time")


def _exec_process(runh, cid, ctx, proc, args):
    p = dict({"args": args, "cwd": "/", "env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0}}, **proc)
    path = ctx.path("process.json")
    with open(path, "w") as f:
        json.dump(p, f)
    return runh("exec", "--process", path, cid)


def test_exec_scheduler_and_io_priority(runh, running, ctx):
    cid, _, _ = running()
    r = _exec_process(runh, cid, ctx, {"scheduler": {"policy": "SCHED_BATCH", "nice": 7},
                                        "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 3}},
                      sh("grep -E '^policy' /proc/self/sched; cut -d' ' -f19 /proc/self/stat; ionice"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split(":")[1].strip() == "3"
    assert lines[1] == "7"
    assert lines[2] == "best-effort: prio 3"


def test_exec_bad_scheduler_fails(runh, running, ctx):
    cid, _, _ = running()
    r = _exec_process(runh, cid, ctx, {"scheduler": {"policy": "SCHED_NOPE"}}, ["true"])
    assert r.returncode != 0 and "process.scheduler.policy" in r.stderr, r.stderr


@pytest.mark.skipif(os.cpu_count() < 2, reason="needs two CPUs")
def test_exec_cpu_affinity(runh, running, ctx):
    cid, _, _ = running()
    r = _exec_process(runh, cid, ctx, {"execCPUAffinity": {"initial": "0", "final": "1"}},
                      sh("grep Cpus_allowed_list /proc/self/status"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "1"


def test_exec_gets_container_personality(runh, running):
    cid, _, _ = running(lambda c: c["linux"].update(personality={"domain": "LINUX32"}))
    r = runh("exec", cid, "uname", "-m")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "i686"


def test_exec_unknown_capability_warns(runh, running):
    cid, _, _ = running()
    r = runh("exec", "--cap", "CAP_FOO", "--cap", "CAP_NET_ADMIN", cid, "grep", "^CapEff", "/proc/self/status")
    assert r.returncode == 0, r.stderr
    assert "ignoring unknown or unavailable capabilities: [CAP_FOO]" in r.stderr
    assert int(r.stdout.split()[1], 16) & (1 << 12)  # CAP_NET_ADMIN is still added


class TwoAgent(Agent):
    """Agent for the init's listener and then an exec'd process's: accepts `n`
    connections, serving each listener fd on a thread of its own."""

    def __init__(self, path, answer, n=2):
        super().__init__(path, answer)
        self.n, self.states, self.servers = n, [], []

    def run(self):
        import socket
        try:
            for _ in range(self.n):
                conn, _ = self.sock.accept()
                with conn:
                    conn.settimeout(30)
                    msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, 4)
                    self.states.append((json.loads(msg), len(fds)))
                t = threading.Thread(target=self.serve, args=(fds[0],), daemon=True)
                t.start()
                self.servers.append(t)
        except Exception as e:
            self.error = e

    def close(self):
        super().close()
        for t in self.servers:
            t.join(10)


def test_exec_seccomp_notify_listener(runh, ctx, bundle_with):
    """The exec'd process's filter has a listener of its own: the agent gets it with the
    exec'd process's pid, and answers that process's notified calls."""
    path = ctx.path("agent.sock")
    agent = TwoAgent(path, lambda nr: (0, -errno.EXDEV))
    agent.start()
    prof = _allow_all_but([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
                          listenerPath=path, listenerMetadata="meta-x")
    b = bundle_with(["sleep", "1000"], seccomp=prof)
    cid = ctx.new_id()
    try:
        r = runh("run", "-d", "--bundle", b, cid)
        assert r.returncode == 0, r.stderr
        init = runh.state(cid)["pid"]
        pf = ctx.path("exec.pid")
        r = runh("exec", "--pid-file", pf, cid, "sh", "-c", "mkdir /tmp/x; echo $?; test -d /tmp/x || echo absent")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["1", "absent"] and "Invalid cross-device link" in r.stderr, (r.stdout, r.stderr)
        epid = int(open(pf).read())
    finally:
        runh("delete", "--force", cid)
        agent.close()
    assert agent.error is None, repr(agent.error)
    assert len(agent.states) == 2, agent.states
    (s0, n0), (s1, n1) = agent.states
    assert n0 == n1 == 1
    assert s0["pid"] == init
    assert s1["pid"] == epid != init and s1["state"]["pid"] == epid, s1
    assert s1["fds"] == ["seccompFd"] and s1["metadata"] == "meta-x", s1
    assert s1["state"]["id"] == cid and s1["state"]["bundle"] == b and s1["state"]["status"] == "running", s1
    assert agent.seen and set(agent.seen) <= {NR["mkdir"], NR["mkdirat"]}, agent.seen


def test_run_listen_fds(runh, ctx, make_bundle):
    """run with LISTEN_FDS (socket activation): fd 3 is the process's, with LISTEN_FDS=1 and
    LISTEN_PID its own pid (1 in its pid namespace); --preserve-fds counts after them."""
    b = make_bundle(args=sh('cat <&3; cat <&4; echo $LISTEN_FDS $LISTEN_PID $$'))
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    os.write(w1, b"activated\n")
    os.write(w2, b"preserved\n")
    os.close(w1)
    os.close(w2)

    def child():
        os.dup2(r1, 3)
        os.dup2(r2, 4)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())  # runh execs in place: same pid
    cid = ctx.new_id()
    try:
        r = subprocess.run(runh.argv("run", "--preserve-fds", "1", "--bundle", b, cid),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                           preexec_fn=child, close_fds=False)
    finally:
        os.close(r1)
        os.close(r2)
        if os.path.exists(os.path.join(ctx.root, cid)):
            runh("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["activated", "preserved"], r.stdout
    n, listen_pid, me = lines[2].split()
    assert n == "1" and listen_pid == me == "1"


def test_run_listen_fds_no_pid_namespace(runh, ctx, make_bundle):
    """Without a pid namespace of its own, LISTEN_PID is still the process's pid (runc
    would write 1)."""
    def edit(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
    b = make_bundle(args=sh('cat <&3; echo $LISTEN_FDS $LISTEN_PID $$'), edit=edit)
    r1, w1 = os.pipe()
    os.write(w1, b"activated\n")
    os.close(w1)

    def child():
        os.dup2(r1, 3)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())
    cid = ctx.new_id()
    try:
        r = subprocess.run(runh.argv("run", "--bundle", b, cid),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                           preexec_fn=child, close_fds=False)
    finally:
        os.close(r1)
        if os.path.exists(os.path.join(ctx.root, cid)):
            runh("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "activated"
    n, listen_pid, me = lines[1].split()
    assert n == "1" and listen_pid == me != "1"


def test_exec_rootless(user, ctx, rootfs_template):
    """An unprivileged runh execs into its rootless container (own user and pid
    namespaces): the child joins them from inside and forks once; runh, a subreaper,
    still waits for the process and passes its exit status on."""
    from test_rootless import RUNH, _as_user, _bundle

    pw, home = user
    b = _bundle(pw, home, rootfs_template, ["sleep", "1000"])
    root = os.path.join(home, "run", "runh")
    cid = ctx.new_id()

    def rh(*args):
        return _as_user(pw, home, [RUNH, "--root", root, *args])
    # Detached: the container keeps runh's stdio, so no pipes (communicate would wait).
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "XDG_RUNTIME_DIR": os.path.join(home, "run")}
    r = subprocess.run([RUNH, "--root", root, "run", "-d", "--bundle", b, cid], user=pw.pw_uid,
                       group=pw.pw_gid, extra_groups=[], env=env, cwd=home, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert r.returncode == 0
    try:
        pid = json.loads(rh("state", cid).stdout)["pid"]
        r = rh("exec", cid, "sh", "-c", "id -u; readlink /proc/self/ns/pid; readlink /proc/self/ns/user; echo $$; exit 3")
        assert r.returncode == 3, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "0", (r.stdout, r.stderr)
        assert lines[1:3] == [os.readlink(f"/proc/{pid}/ns/pid"), os.readlink(f"/proc/{pid}/ns/user")], r.stderr
        assert lines[3] != "1"  # a new process in the container's pid namespace
        # The unprivileged exec runs in the launcher (rust/launcher), no interpreter.
        trace = os.path.join(ctx.dir, "rootless-exec.strace")
        r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", trace, "-u", pw.pw_name,
                            RUNH, "--root", root, "exec", cid, "true"], env=env, cwd=home, timeout=60,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with open(trace) as f:
            execs = f.read()
        assert RUNH in execs and "python" not in execs, execs
        pf = os.path.join(home, "exec.pid")
        r = subprocess.run([RUNH, "--root", root, "exec", "-d", "--pid-file", pf, cid, "sleep", "30"],
                           user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env, cwd=home, timeout=60,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert r.returncode == 0
        epid = int(open(pf).read())
        st = _status(epid)
        assert st["Uid"].split()[0] == str(pw.pw_uid)
        assert os.readlink(f"/proc/{epid}/ns/pid") == os.readlink(f"/proc/{pid}/ns/pid")
    finally:
        rh("delete", "--force", cid)
