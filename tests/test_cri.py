"""runh as a Kubernetes RuntimeClass handler: kubelet's calls through containerd's CRI plugin.

One private containerd per module (python/runh/bench/cri: its own config, root, state and
socket under the session's directory, images built from busybox-static, pods on host
networking so no CNI is needed) with two handlers, `runh` and `runc`, both
io.containerd.runc.v2 with BinaryName. The tests speak CRI v1 over gRPC as kubelet does
and run for each handler: runc is the reference, so every assertion is also a
differential one.

Nothing is left behind: each test removes its pods (the `kube` fixture fails a test that
left any, and checks the runtime's state dir and the mounts under containerd's root); the
pods' cgroup parents carry the test's token for the suite's leftovers check; the module's
teardown stops containerd, kills its shims and removes its directory.

Select with `-m cri`.
"""

import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib

import pytest

from conftest import BASE, REPO, RUNH

sys.path.insert(0, os.path.join(REPO, "python"))

from runh.bench.cri import containerd as cdmod  # noqa: E402
from runh.bench.cri.containerd import Containerd, ContainerdError  # noqa: E402
from runh.bench.cri.pod import Pod  # noqa: E402

pytestmark = pytest.mark.cri

RUNC = shutil.which("runc")
HANDLERS = ["runh", "runc"]
MIB = 1 << 20


def _missing():
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            return f"{tool} not installed (make apt-test installs Debian's containerd)"
    try:
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError:
        return "grpcio and grpcio-tools not installed (make build installs them in .venv)"
    if not RUNC:
        return "runc not installed"
    return None


@pytest.fixture(scope="module")
def containerd():
    why = _missing()
    if why:
        pytest.skip(why)
    if not os.access(RUNH, os.X_OK):
        pytest.fail(f"{RUNH} missing: run `make build`", pytrace=False)
    os.makedirs(BASE, exist_ok=True)
    cd = Containerd(os.path.join(BASE, "cri"), {"runh": os.path.abspath(RUNH), "runc": RUNC})
    try:
        cd.start()
    except ContainerdError as e:
        cd.stop()
        pytest.fail(f"containerd: {e}", pytrace=False)
    yield cd
    problems = cd.stop()
    assert not problems, problems


class Kube:
    """What one test drives: pods named and cgroup-parented after the test's token."""

    def __init__(self, cd, ctx):
        from runh.bench.cri.client import Cri
        self.cd, self.ctx = cd, ctx
        self.cri = Cri(cd.socket, cd.dir)
        self.pb = self.cri.pb
        self.pods = []

    def pod(self, handler, name="pod", **kw):
        name = f"{name}{len(self.pods)}"
        p = Pod(self.cd, self.cri, handler, f"{self.ctx.token}-{name}", f"/{self.ctx.token}-{name}",
                self.ctx.path("logs", name), **kw)
        self.pods.append(p)
        return p

    def remove(self, pod):
        """Remove the pod; nothing of it may remain (its cgroups included)."""
        left = pod.remove()
        self.pods.remove(pod)
        assert left == [], f"cgroups left after RemovePodSandbox: {left}"

    def runtime_ids(self, handler):
        """`<handler> list` of the handler's state dir (the shim's --root)."""
        root = self.cd.state_dir(handler)
        if not os.path.isdir(root):
            return []
        binary = self.cd.handlers[handler]
        r = subprocess.run([binary, "--root", root, "list", "-q"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    def cgroup(self, pod, cid):
        """This container's cgroup directory path relative to the hierarchies."""
        return f"{pod.cgroup_parent}/{cid}"

    def close(self):
        problems = []
        for p in list(self.pods):
            problems.append(f"pod {p.name} not removed by the test")
            try:
                p.remove()
            except Exception as e:
                problems.append(f"removing {p.name}: {e}")
        for h in self.cd.handlers:
            ids = self.runtime_ids(h)
            if ids:
                problems.append(f"{h} list: {ids}")
        mounts = cdmod.mounts_under(self.cd.dir)
        if mounts:
            problems.append(f"mounts under containerd's root: {mounts}")
        cdmod.reap_shims()
        self.cri.close()
        return problems


@pytest.fixture
def kube(containerd, ctx):
    k = Kube(containerd, ctx)
    yield k
    problems = k.close()
    assert not problems, problems


def cgroup_value(rel, v1_file, v2_file):
    """The content of a cgroup file of the cgroup `rel`, v1 name or v2 name, whichever exists."""
    for d in cdmod.cgroup_dirs(rel):
        for name in (v1_file, v2_file):
            p = os.path.join(d, name)
            if os.path.exists(p):
                with open(p) as f:
                    return f.read().strip()
    raise AssertionError(f"no {v1_file} or {v2_file} for cgroup {rel}")


def status_fields(text, *keys):
    """Fields of a /proc/<pid>/status text."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k in keys:
            out[k] = v.strip()
    return out


SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]


# ---------------------------------------------------------------- the lifecycle

@pytest.mark.parametrize("handler", HANDLERS)
def test_pod_lifecycle(kube, handler):
    cri, pb = kube.cri, kube.pb
    pod = kube.pod(handler)
    st = cri.pod_status(pod.id, verbose=True)
    assert st.status.state == pb.SANDBOX_READY
    assert st.status.runtime_handler == handler
    sandbox_pid = cri.info(st)["pid"]
    assert sandbox_pid > 0 and os.path.exists(f"/proc/{sandbox_pid}")

    # A container that writes to both streams, then exits 0 on SIGTERM.
    cid = pod.create("main", ["sh", "-c", "echo out-$0; echo err-$0 >&2; "
                              "trap 'exit 0' TERM; sleep 100000 & wait", handler], start=False)
    assert cri.container_status(cid).status.state == pb.CONTAINER_CREATED
    cri.start_container(cid)
    cs = cri.container_status(cid, verbose=True)
    assert cs.status.state == pb.CONTAINER_RUNNING and cs.status.started_at > 0
    pid = cri.info(cs)["pid"]
    # The container's cgroup is <cgroup_parent>/<id>, as kubelet asked.
    with open(f"/proc/{pid}/cgroup") as f:
        assert f"{kube.cgroup(pod, cid)}\n" in f.read()
    deadline = time.monotonic() + 5
    while "err-" not in pod.log("main") and time.monotonic() < deadline:
        time.sleep(0.05)
    # (stdout and stderr are copied to the log by two goroutines: their order may vary)
    assert sorted(pod.log("main").splitlines()) == [f"err-{handler}", f"out-{handler}"]
    with open(cs.status.log_path) as f:
        streams = {line.split(" ", 3)[1] + ":" + line.split(" ", 3)[3].strip() for line in f}
    assert streams == {f"stdout:out-{handler}", f"stderr:err-{handler}"}

    # StopContainer: the trapping process ends on SIGTERM, well before the grace period.
    t0 = time.monotonic()
    cri.stop_container(cid, timeout=30)
    assert time.monotonic() - t0 < 10
    cs = cri.container_status(cid).status
    assert (cs.state, cs.exit_code, cs.reason) == (pb.CONTAINER_EXITED, 0, "Completed")

    # A process that ignores SIGTERM: SIGKILL after the grace period, exit 137.
    stubborn = pod.create("stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
    t0 = time.monotonic()
    cri.stop_container(stubborn, timeout=1)
    took = time.monotonic() - t0
    cs = cri.container_status(stubborn).status
    assert (cs.state, cs.exit_code) == (pb.CONTAINER_EXITED, 137)
    assert 0.9 <= took < 10, took

    for c in (cid, stubborn):
        cri.remove_container(c)
    assert cri.containers(pod.id) == []
    assert kube.runtime_ids(handler) == [pod.id]  # only the sandbox is left
    cri.stop_pod(pod.id)
    assert cri.pod_status(pod.id).status.state == pb.SANDBOX_NOTREADY
    kube.remove(pod)
    assert kube.runtime_ids(handler) == []
    assert not os.path.exists(f"/proc/{sandbox_pid}")


@pytest.mark.parametrize("handler", HANDLERS)
def test_exit_codes_and_oom(kube, handler):
    pb = kube.pb
    pod = kube.pod(handler)
    failed = pod.create("failed", ["sh", "-c", "echo bye; exit 7"])
    # A string that doubles until the 32 MiB limit's OOM killer ends it.
    oom = pod.create("oom", ["sh", "-c", "a=0123456789abcdef; while :; do a=$a$a; done"],
                     resources={"memory_limit_in_bytes": 32 * MIB})
    st = kube.cri.wait_container_state(failed, "CONTAINER_EXITED")
    assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, 7, "Error")
    assert pod.log("failed") == "bye\n"
    st = kube.cri.wait_container_state(oom, "CONTAINER_EXITED", timeout=60)
    assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, 137, "OOMKilled")
    kube.remove(pod)


# ---------------------------------------------------------------- exec

@pytest.mark.parametrize("handler", HANDLERS)
def test_exec_sync(kube, handler):
    import grpc
    cri = kube.cri
    pod = kube.pod(handler)
    cid = pod.create("main", SLEEPER)
    r = cri.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 3)
    r = cri.exec_sync(cid, ["cat", "/proc/1/cmdline"])
    assert r.exit_code == 0 and b"sleep 100000" in r.stdout  # in the container's pid namespace
    assert cri.exec_sync(cid, ["sh", "-c", "nosuchcommand"]).exit_code == 127

    # A missing binary is an error of the call, not an exit code (kubelet: probe error).
    with pytest.raises(grpc.RpcError) as e:
        cri.exec_sync(cid, ["/nonexistent"])
    assert "/nonexistent" in e.value.details() and "no such file or directory" in e.value.details()

    # Timeout: the call fails after it and the process is killed.
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        cri.exec_sync(cid, ["sleep", "4711"], timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while b"4711" in cri.exec_sync(cid, ["ps"]).stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b"4711" not in cri.exec_sync(cid, ["ps"]).stdout
    kube.remove(pod)


@pytest.mark.parametrize("handler", HANDLERS)
def test_exec_streaming(kube, handler):
    cri = kube.cri
    pod = kube.pod(handler)
    cid = pod.create("main", SLEEPER)
    code, out, err = cri.exec_stream(cid, ["sh", "-c", "read x; echo got-$x; echo e >&2; exit 4"],
                                     stdin=b"line\n")
    assert (code, out, err) == (4, b"got-line\n", b"e\n")
    code, out, err = cri.exec_stream(cid, ["sh", "-c", "tty; test -t 0"], tty=True, stdin=b"")
    assert code == 0 and re.fullmatch(rb"/dev/pts/\d+\r\n", out), out
    code, out, _ = cri.exec_stream(cid, ["sh", "-c", "read x; echo [$x]"], tty=True, stdin=b"typed\n")
    # The terminal echoes the input, then the command's output follows (CRLF: a tty).
    assert code == 0 and out.endswith(b"[typed]\r\n") and out.startswith(b"typed\r\n"), out
    kube.remove(pod)


# ---------------------------------------------------------------- resources and stats

@pytest.mark.parametrize("handler", HANDLERS)
def test_update_resources_and_stats(kube, handler):
    cri = kube.cri
    pod = kube.pod(handler)
    cid = pod.create("main", SLEEPER, resources={"memory_limit_in_bytes": 64 * MIB, "cpu_shares": 256})
    rel = kube.cgroup(pod, cid)
    assert cgroup_value(rel, "memory.limit_in_bytes", "memory.max") == str(64 * MIB)
    cri.update_resources(cid, memory_limit_in_bytes=128 * MIB, cpu_period=100000, cpu_quota=50000,
                         cpu_shares=512)
    assert cgroup_value(rel, "memory.limit_in_bytes", "memory.max") == str(128 * MIB)
    assert cgroup_value(rel, "cpu.cfs_quota_us", "cpu.max") in ("50000", "50000 100000")
    assert cgroup_value(rel, "cpu.shares", "cpu.weight") in ("512", "20")

    cri.exec_sync(cid, ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
    st = cri.container_stats(cid)
    assert st.attributes.id == cid and st.attributes.metadata.name == "main"
    assert st.cpu.usage_core_nano_seconds.value > 0
    assert 0 < st.memory.working_set_bytes.value < 128 * MIB
    listed = {s.attributes.id: s for s in cri.list_container_stats(pod.id)}
    assert set(listed) == {cid} and listed[cid].memory.usage_bytes.value > 0
    kube.remove(pod)


# ---------------------------------------------------------------- security context

def _status_of(cri, cid, pid="1"):
    r = cri.exec_sync(cid, ["cat", f"/proc/{pid}/status"])
    assert r.exit_code == 0, r.stderr
    return status_fields(r.stdout.decode(), "Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd",
                         "NoNewPrivs", "Seccomp")


def test_security_context(kube):
    """Non-root with supplementary groups, read-only rootfs, no capabilities, no_new_privs,
    RuntimeDefault seccomp: the main process and an exec'd one, runh as runc."""
    seen = {}
    for handler in HANDLERS:
        cri = kube.cri
        pod = kube.pod(handler, seccomp="RuntimeDefault")
        cid = pod.create("restricted", ["sleep", "100000"], user=1000, run_as_group=1000,
                         groups=[2000, 3000], readonly_rootfs=True, drop_caps=["ALL"],
                         no_new_privs=True, seccomp="RuntimeDefault")
        main = _status_of(cri, cid)
        probe = _status_of(cri, cid, "self")
        assert main["Uid"].split() == ["1000"] * 4 and main["Gid"].split() == ["1000"] * 4
        assert main["Groups"].split() == ["1000", "2000", "3000"]  # containerd adds the gid
        assert main["CapEff"] == main["CapPrm"] == main["CapBnd"] == "0000000000000000"
        assert main["NoNewPrivs"] == "1" and main["Seccomp"] == "2"
        assert {k: v for k, v in probe.items()} == main  # the exec'd process gets the same
        r = cri.exec_sync(cid, ["touch", "/written"])
        assert r.exit_code != 0 and b"Read-only file system" in r.stderr
        assert cri.exec_sync(cid, ["touch", "/tmp/x"]).exit_code != 0  # no tmpfs given
        r = cri.exec_sync(cid, ["id"])
        assert r.stdout == b"uid=1000 gid=1000 groups=1000,2000,3000\n"
        seen[handler] = main
        kube.remove(pod)
    assert seen["runh"] == seen["runc"]


def test_privileged_pod(kube):
    seen = {}
    for handler in HANDLERS:
        cri = kube.cri
        pod = kube.pod(handler, privileged=True)
        cid = pod.create("priv", ["sleep", "100000"], privileged=True)
        st = _status_of(cri, cid)
        assert st["Seccomp"] == "0" and st["CapEff"] == st["CapBnd"] != "0000000000000000"
        r = cri.exec_sync(cid, ["sh", "-c", "grep ' /sys ' /proc/self/mounts; ls /dev | wc -l"])
        mounts, ndev = r.stdout.decode().rsplit("\n", 2)[0], int(r.stdout.split()[-1])
        assert "rw" in mounts.split()[3].split(",")  # /sys writable
        assert ndev > 20  # the host's devices, not the default six
        seen[handler] = st["CapEff"]
        kube.remove(pod)
    assert seen["runh"] == seen["runc"]


@pytest.mark.parametrize("handler", HANDLERS)
def test_pod_sysctl(kube, handler):
    with open("/proc/sys/kernel/shm_rmid_forced") as f:
        host = f.read().strip()
    want = "0" if host == "1" else "1"
    pod = kube.pod(handler, sysctls={"kernel.shm_rmid_forced": want})  # an IPC-namespaced sysctl
    cid = pod.create("main", SLEEPER)
    assert kube.cri.exec_sync(cid, ["cat", "/proc/sys/kernel/shm_rmid_forced"]).stdout == f"{want}\n".encode()
    with open("/proc/sys/kernel/shm_rmid_forced") as f:
        assert f.read().strip() == host
    kube.remove(pod)


@pytest.mark.parametrize("handler", HANDLERS)
def test_host_network_sysctl_refused(kube, handler):
    """A net.* sysctl in a pod on the host's network would change the host: refused. The
    value given is the host's own, so that nothing changes even where it is not refused."""
    import grpc
    with open("/proc/sys/net/ipv4/tcp_syncookies") as f:
        host = f.read().strip()
    with pytest.raises(grpc.RpcError) as e:
        pod = kube.pod(handler, sysctls={"net.ipv4.tcp_syncookies": host})
        kube.remove(pod)
    assert "sysctl" in e.value.details()
    kube.cd.cgroup_parents.discard(f"/{kube.ctx.token}-pod0")
    cdmod.remove_cgroup_tree(f"/{kube.ctx.token}-pod0")


@pytest.mark.parametrize("handler", HANDLERS)
def test_shared_pid_pod_kills_orphans(kube, handler):
    """In a pod that shares one PID namespace, a container's main process is not PID 1:
    when it exits, the shim kills what it left (`kill --all` on the stopped container) at
    once."""
    cri = kube.cri
    pod = kube.pod(handler, pid="POD")
    watcher = pod.create("watcher", SLEEPER)
    leaver = pod.create("leaver", ["sh", "-c", "sleep 4242 & sleep 4243 & sleep 0.3; exit 0"])
    st = cri.wait_container_state(leaver, "CONTAINER_EXITED")
    assert st.exit_code == 0
    t_exit = time.monotonic()
    while b"424" in cri.exec_sync(watcher, ["ps"]).stdout and time.monotonic() - t_exit < 5:
        time.sleep(0.02)
    took = time.monotonic() - t_exit
    assert b"424" not in cri.exec_sync(watcher, ["ps"]).stdout
    # (the shim kills them before it reports the exit; the margin is for a loaded machine)
    assert took < 2.0, f"orphans lived {took:.2f} s after their container exited"
    ps = cri.exec_sync(watcher, ["ps", "-o", "pid,comm"]).stdout.decode()
    assert ps.split("\n")[1].split()[0] == "1" and "sh" in ps.split("\n")[1]  # the sandbox's PID 1
    with open(kube.cd.log_path) as f:
        errors = [ln for ln in f if leaver in ln and "level=error" in ln and "kill" in ln]
    assert errors == [], errors
    kube.remove(pod)


# ---------------------------------------------------------------- containerd restarts

def test_containerd_restart_with_running_pods(kube):
    cri = kube.cri
    pods = {h: kube.pod(h) for h in HANDLERS}
    cids = {h: p.create("main", SLEEPER) for h, p in pods.items()}
    kube.cd.restart()
    for h, pod in pods.items():
        cid = cids[h]
        assert cri.pod_status(pod.id).status.state == kube.pb.SANDBOX_READY
        assert cri.container_status(cid).status.state == kube.pb.CONTAINER_RUNNING
        assert cri.exec_sync(cid, ["echo", "after-restart"]).stdout == b"after-restart\n"
        cri.update_resources(cid, memory_limit_in_bytes=48 * MIB)
        assert cgroup_value(kube.cgroup(pod, cid), "memory.limit_in_bytes", "memory.max") == str(48 * MIB)
        cri.stop_container(cid, timeout=10)
        assert cri.container_status(cid).status.exit_code == 0
        cri.remove_container(cid)
        kube.remove(pod)


# ---------------------------------------------------------------- load

def test_parallel_pods(kube):
    """8 pods at once, 2 containers each, 10 ExecSyncs per container: no error."""
    def one(i):
        pod = kube.pod("runh", name=f"par{i}-")
        cids = [pod.create(f"c{j}", SLEEPER) for j in range(2)]
        for n in range(10):
            for cid in cids:
                r = kube.cri.exec_sync(cid, ["sh", "-c", f"echo {i}-{n}"])
                assert (r.exit_code, r.stdout) == (0, f"{i}-{n}\n".encode())
        return pod

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        pods = list(ex.map(one, range(8)))
    assert len({p.id for p in pods}) == 8
    assert len(kube.cri.containers()) == 16
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(kube.remove, pods))


# ---------------------------------------------------------------- the README's config

def _readme_block(lang, marker):
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    blocks = re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README: one ```{lang} block with {marker!r}"
    return found[0]


def test_readme_containerd_config_is_the_tests():
    """The README's containerd snippet is the handler entry these tests run (less the
    test-only Root), and its RuntimeClass names that handler."""
    snippet = tomllib.loads(_readme_block("toml", "runtimes.runh"))
    cri = snippet["plugins"]["io.containerd.grpc.v1.cri"]
    runh = cri["containerd"]["runtimes"]["runh"]
    binary = runh["options"]["BinaryName"]
    assert runh == cdmod.handler_table(binary)
    assert os.path.isabs(binary) and binary.endswith("/bin/runh")
    # The tests' config has the same entry, with their binary and a private Root.
    cd = Containerd("/tmp/x", {"runh": RUNH})
    tables = dict(cd.config())
    prefix = 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runh'
    assert tables[prefix] == {"runtime_type": runh["runtime_type"]}
    assert tables[prefix + ".options"] == cdmod.handler_table(RUNH, cd.runtime_root("runh"))["options"]
    parsed = tomllib.loads(cdmod.toml(cd.config()))
    assert parsed["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runh"]["options"]["BinaryName"] == RUNH
    rc = _readme_block("yaml", "kind: RuntimeClass")
    fields = dict(re.findall(r"^(\w+): *(\S+)$", rc, re.M))
    assert fields["apiVersion"] == "node.k8s.io/v1" and fields["handler"] == "runh"
    pod = _readme_block("yaml", "runtimeClassName")
    assert re.search(r"runtimeClassName: *" + re.escape(re.search(r"^  name: *(\S+)$", rc, re.M).group(1)), pod)


def test_proto_field_numbers_are_cris():
    """A few wire numbers that matter, pinned: a renumbering would silently misdecode."""
    with open(os.path.join(REPO, "python", "runh", "bench", "cri", "cri_v1.proto")) as f:
        proto = f.read()
    assert re.search(r"^package runtime\.v1;$", proto, re.M)
    msg = {m.group(1): m.group(2) for m in re.finditer(r"^message (\w+) \{(.*?)\}$", proto, re.S | re.M)}
    for name, field, number in [("RunPodSandboxRequest", "runtime_handler", 2),
                                ("PodSandboxConfig", "linux", 8),
                                ("LinuxPodSandboxConfig", "sysctls", 3),
                                ("ContainerConfig", "linux", 15),
                                ("LinuxContainerSecurityContext", "no_new_privs", 11),
                                ("LinuxContainerSecurityContext", "seccomp", 15),
                                ("LinuxContainerResources", "memory_swap_limit_in_bytes", 10),
                                ("ContainerStatus", "reason", 10),
                                ("ExecSyncRequest", "timeout", 3)]:
        assert re.search(rf"\b{field} = {number};", msg[name]), (name, field)
