"""containerd (ctr, SystemdCgroup) and podman (cgroup_manager = "systemd") running
containers under runh against the guest's real systemd: checks for tests/systemd_checks.py
(same CHECK lines, same boot).

Everything is private to the check: containerd with its own config, root, state and
socket under WORK; podman with its own storage, runroot, tmpdir and containers.conf.
The images (no network in the guest) and the CRI client are runh.bench.cri's, the
ones tests/test_cri.py and `runh bench -s cri` use.
"""
import os
import subprocess
import time

from runh.bench import bundle as bbundle
from runh.bench.cri import containerd as cri_containerd

CTR_NS = "rt"
# The images of runh.bench.cri (the CRI tests' and bench's): busybox, and the pause image
# for pod sandboxes, in one OCI archive.
IMG = cri_containerd.IMAGE
PAUSE = cri_containerd.PAUSE_IMAGE


def build_images(work):
    """(layer.tar, images.tar): the busybox rootfs as one layer (for `podman import`), and
    runh.bench.cri's OCI archive of IMG and PAUSE (for `ctr images import`)."""
    layer = f"{work}/layer.tar"
    with open(layer, "wb") as f:
        f.write(cri_containerd.layer_tar(bbundle.build_rootfs(f"{work}/img-rootfs")))
    return layer, cri_containerd.build_image_archive(work)


class Containerd:
    """A private containerd: its own config, root, state and socket; the CRI plugin on,
    with runh as the default runtime and SystemdCgroup = true."""

    def __init__(self, work, runh):
        self.dir = f"{work}/containerd"
        os.makedirs(self.dir, exist_ok=True)
        self.sock = f"{self.dir}/containerd.sock"
        self.runh = runh
        with open(f"{self.dir}/config.toml", "w") as f:
            f.write(f"""version = 2
root = "{self.dir}/root"
state = "{self.dir}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.dir}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runh"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runh]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runh.options]
        BinaryName = "{runh}"
        SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.dir}/cni-bin"
    conf_dir = "{self.dir}/cni-conf"
""")
        self.log = open(f"{self.dir}/containerd.log", "w")
        self.proc = subprocess.Popen(["containerd", "--config", f"{self.dir}/config.toml"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.tail()}")
            if self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"containerd not up: {self.tail()}")

    def tail(self):
        with open(f"{self.dir}/containerd.log") as f:
            return " | ".join(f.read().splitlines()[-5:])[-600:]

    def ctr(self, *args, ns=CTR_NS, check=True, timeout=120):
        p = subprocess.run(["ctr", "-a", self.sock, "-n", ns, *args], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: rc={p.returncode} {p.stderr.strip()[:300]}")
        return p

    def stop(self):
        for ns in (CTR_NS, "k8s.io"):
            for t in self.ctr("task", "ls", "-q", ns=ns, check=False).stdout.split():
                self.ctr("task", "kill", "-a", "-s", "SIGKILL", t, ns=ns, check=False)
                time.sleep(0.5)
                self.ctr("task", "delete", "-f", t, ns=ns, check=False)
            for c in self.ctr("containers", "ls", "-q", ns=ns, check=False).stdout.split():
                self.ctr("containers", "delete", c, ns=ns, check=False)
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def task_pid(cd, cid):
    for line in cd.ctr("task", "ls").stdout.splitlines()[1:]:
        f = line.split()
        if f and f[0] == cid:
            return int(f[1]), f[2]
    return None, None


def check_ctr(env):
    """ctr run --runc-systemd-cgroup (what containerd's shim does with SystemdCgroup =
    true): the task runs in ctr-<id>.scope under the slice, with Delegate, and is gone
    from systemd once the task and container are deleted."""
    cd, show, runh_log = env["containerd"], env["show"], []
    cd.ctr("images", "import", env["oci"])
    common = ["--runc-binary", env["runh"], "--runc-systemd-cgroup"]
    out = cd.ctr("run", "--rm", *common, "--cgroup", "runhtest.slice:ctr:hello", IMG, "hello",
                 "echo", "hello", check=False)
    cd.ctr("run", "-d", *common, "--cgroup", "runhtest.slice:ctr:c1", "--memory-limit", str(64 << 20),
           IMG, "c1", "sleep", "1000")
    pid, status = task_pid(cd, "c1")
    with open(f"/proc/{pid}/cgroup") as f:
        cg = f.read().strip()
    s = show("ctr-c1.scope", ["ActiveState", "Delegate", "MemoryMax", "Slice"])
    cd.ctr("task", "kill", "-s", "SIGKILL", "c1")
    deadline = time.time() + 30
    while time.time() < deadline and task_pid(cd, "c1")[1] != "STOPPED":
        time.sleep(0.3)
    cd.ctr("task", "delete", "c1")
    cd.ctr("containers", "delete", "c1")
    after = show("ctr-c1.scope", ["LoadState"])
    ok = (out.returncode == 0 and out.stdout == "hello\n" and status == "RUNNING"
          and cg == "0::/runhtest.slice/ctr-c1.scope" and s.get("Delegate") == "yes"
          and s.get("MemoryMax") == str(64 << 20) and after.get("LoadState") == "not-found"
          and not os.path.isdir("/sys/fs/cgroup/runhtest.slice/ctr-c1.scope"))
    return ok, (f"run --rm: rc={out.returncode} {out.stdout!r} {out.stderr.strip()[:150]}; task {status} in "
                f"{cg!r}; unit {s}; after delete {after}")


PODMAN_CONF = """[containers]
netns = "none"
cgroupns = "host"
[engine]
cgroup_manager = "systemd"
events_logger = "file"
events_logfile_path = "{d}/events.log"
lock_type = "file"
tmp_dir = "{d}/tmp"
[network]
network_config_dir = "{d}/cni"
"""


def check_podman(env):
    """podman with cgroup_manager = "systemd": podman run under runh lands in
    libpod-<id>.scope in machine.slice (podman's cgroupsPath "machine.slice:libpod:<id>"),
    and podman rm leaves no unit."""
    d = f"{env['work']}/podman"
    for sub in ("tmp", "cni", "root", "runroot"):
        os.makedirs(f"{d}/{sub}", exist_ok=True)
    with open(f"{d}/containers.conf", "w") as f:
        f.write(PODMAN_CONF.format(d=d))
    with open(f"{d}/storage.conf", "w") as f:
        f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{d}/root"\nrunroot = "{d}/runroot"\n')
    penv = dict(os.environ, CONTAINERS_CONF=f"{d}/containers.conf",
                CONTAINERS_STORAGE_CONF=f"{d}/storage.conf", TMPDIR=f"{d}/tmp")
    base = ["podman", "--root", f"{d}/root", "--runroot", f"{d}/runroot", "--tmpdir", f"{d}/tmp",
            "--cgroup-manager", "systemd", "--events-backend", "file", "--runtime", env["runh"]]

    def pm(*args, check=True):
        p = subprocess.run(base + list(args), capture_output=True, text=True, env=penv, timeout=240,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: rc={p.returncode} {p.stderr.strip()[:300]}")
        return p

    show = env["show"]
    pm("import", "--change", 'CMD ["/bin/sh"]', env["layer"], IMG)
    limits = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
    out = pm("run", "--rm", *limits, "--memory", "48m", IMG, "cat", "/proc/self/cgroup", check=False)
    cid = pm("run", "-d", *limits, "--name", "p1", IMG, "sleep", "1000").stdout.strip()
    unit = f"libpod-{cid}.scope"
    s = show(unit, ["ActiveState", "Slice", "Delegate"])
    pm("rm", "-f", "-t", "0", "p1")
    after = show(unit, ["LoadState"])
    ok = (out.returncode == 0 and out.stdout.strip().startswith("0::/machine.slice/libpod-")
          and s.get("ActiveState") == "active" and s.get("Slice") == "machine.slice"
          and after.get("LoadState") == "not-found")
    return ok, (f"run --rm: rc={out.returncode} {out.stdout.strip()!r} {out.stderr.strip()[:200]}; "
                f"p1 unit {s}; after rm {after}")


# ------------------------------------------------------------------ the CRI plugin

def check_cri(env):
    """The CRI plugin with SystemdCgroup = true, as kubelet drives it: a pod whose
    cgroup_parent is a slice (kubelet's "kubepods-...slice" form) and one container; the
    sandbox and the container each run under runh in cri-containerd-<id>.scope in that
    slice, ExecSync works, and stopping and removing them leaves no unit."""
    from runh.bench.cri.client import Cri

    cd, show = env["containerd"], env["show"]
    cd.ctr("images", "import", env["oci"], ns="k8s.io")
    cri = Cri(cd.sock, env["work"], timeout=180)
    try:
        # No hostname: with the node's network the pod has the node's UTS namespace too.
        os.makedirs(f"{env['work']}/pod-logs", exist_ok=True)
        sandbox_config = cri.pod_config("pod1", "uid-runhtest-1", cgroup_parent="runhtest-pod1.slice",
                                        log_directory=f"{env['work']}/pod-logs", pid="POD")
        t0 = time.time()
        pod = cri.run_pod(sandbox_config, "runh")
        print(f"# CRI: pod sandbox running after {time.time() - t0:.1f}s", flush=True)
        cfg = cri.container_config("c1", ["1000"], command=["sleep"], log_path="c1.log",
                                   resources={"memory_limit_in_bytes": 48 << 20})
        ctr = cri.create_container(pod, cfg, sandbox_config)
        cri.start_container(ctr)
        ex = cri.exec_sync(ctr, ["echo", "exec-ok"], timeout=60)
        units = {"sandbox": f"cri-containerd-{pod}.scope", "container": f"cri-containerd-{ctr}.scope"}
        shown = {k: show(u, ["ActiveState", "Slice", "Delegate", "MemoryMax"]) for k, u in units.items()}
        cri.stop_container(ctr, 0)  # no grace period: SIGKILL
        cri.remove_container(ctr)
        cri.stop_pod(pod)
        cri.remove_pod(pod)
        after = {k: show(u, ["LoadState"]).get("LoadState") for k, u in units.items()}
    finally:
        cri.close()
    ok = (all(s.get("ActiveState") == "active" and s.get("Slice") == "runhtest-pod1.slice"
              and s.get("Delegate") == "yes" for s in shown.values())
          and shown["container"].get("MemoryMax") == str(48 << 20)
          and ex.stdout == b"exec-ok\n" and set(after.values()) == {"not-found"})
    return ok, f"units {shown}; exec {ex.stdout!r} rc={ex.exit_code}; after removal {after}"
