"""`runh bench -s cri`: what kubelet sees of each runtime, through containerd's CRI plugin.

One private containerd (containerd.py) with one runtime handler per measured runtime, all
io.containerd.runc.v2 with BinaryName, as a cluster would configure them. Each iteration,
for one runtime at a time in the runner's A B C A B C order, is a whole pod:

- pod start: RunPodSandbox + CreateContainer + StartContainer (each also reported), the
  time until kubelet could see the container running;
- `--probes` ExecSync calls of /bin/true into it: exec probes, each a sample;
- teardown: StopContainer (the process ends on SIGTERM) + RemoveContainer +
  StopPodSandbox + RemovePodSandbox.

Times are CRI round trips as a gRPC client sees them, so they include containerd and the
shim; the same for every runtime.
"""

import os
import re
import secrets
import tempfile
import time

from ..harness import ScenarioFailed
from ..scenarios import MS, Scenario

PROBE = ["/bin/true"]
MAIN = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]


class CriScenario(Scenario):
    name = "cri"
    description = ("kubelet's view through containerd's CRI plugin: pod start (RunPodSandbox + "
                   "CreateContainer + StartContainer), ExecSync probes of /bin/true, teardown "
                   "(StopContainer + RemoveContainer + StopPodSandbox + RemovePodSandbox)")
    # containerd gives every sandbox cpu shares and every container device rules: in the
    # bench's cgroup2-only namespace on a hybrid host there is no cpu controller for the
    # shares, and crun's device filter needs RLIMIT_MEMLOCK that root may not raise here.
    host_cgroups = True
    metrics = {
        "pod_start": (MS, False), "run_pod_sandbox": (MS, False),
        "create_container": (MS, False), "start_container": (MS, False),
        "exec_sync": (MS, False), "teardown": (MS, False),
    }

    def prepare(self):
        from .containerd import MAX_DIR, Containerd, ContainerdError
        from .stubs import StubsUnavailable
        self.cd = self.cri = None
        self.unavailable = None
        self.handlers = {rt.name: re.sub(r"[^A-Za-z0-9_-]", "_", rt.name) for rt in self.ctx.runtimes}
        d = os.path.join(self.ctx.workdir, "c")
        if len(d) > MAX_DIR:  # a long TMPDIR: socket paths under it would not fit
            d = tempfile.mkdtemp(prefix="rhc", dir="/tmp")
        self.cd = Containerd(d, {self.handlers[rt.name]: rt.path for rt in self.ctx.runtimes},
                             log_level="warn")
        try:
            self.cd.start()
            from .client import Cri
            self.cri = Cri(self.cd.socket, self.cd.dir, timeout=self.ctx.timeout)
            self.description += f"; {self.ctx.probes} probes per pod"
            self.notes.append(f"containerd {self._version()}, snapshotter {self.cd.snapshotter}, "
                              "handlers io.containerd.runc.v2 with BinaryName, host-network pods")
        except (ContainerdError, StubsUnavailable, OSError) as e:
            self.unavailable = str(e)

    def _version(self):
        import subprocess
        try:
            return subprocess.run(["containerd", "--version"], capture_output=True, text=True,
                                  timeout=10).stdout.split()[2]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    def setup(self, rt):
        if self.unavailable:
            raise ScenarioFailed(self.unavailable)

    def _call(self, what, fn, *args, **kw):
        import grpc
        try:
            return fn(*args, **kw)
        except grpc.RpcError as e:
            raise ScenarioFailed(f"{what}: {e.details()}") from None

    def measure(self, rt):
        from .pod import Pod
        cri = self.cri
        name = f"{rt.index}{secrets.token_hex(3)}"
        parent = f"/rhb{os.getpid()}-{name}"
        pod = None
        try:
            t0 = time.perf_counter_ns()
            pod = self._call("RunPodSandbox", Pod, self.cd, cri, self.handlers[rt.name], f"bench-{name}",
                             parent, os.path.join(self.cd.dir, "logs", name))
            t1 = time.perf_counter_ns()
            cid = self._call("CreateContainer", pod.create, "main", MAIN, start=False)
            t2 = time.perf_counter_ns()
            self._call("StartContainer", cri.start_container, cid)
            t3 = time.perf_counter_ns()
            probes = []
            for _ in range(self.ctx.probes):
                p0 = time.perf_counter_ns()
                r = self._call("ExecSync", cri.exec_sync, cid, PROBE)
                probes.append((time.perf_counter_ns() - p0) / 1e6)
                if r.exit_code != 0:
                    raise ScenarioFailed(f"ExecSync {PROBE}: exit {r.exit_code}: {r.stderr[-200:]!r}")
            d0 = time.perf_counter_ns()
            self._call("StopContainer", cri.stop_container, cid, timeout=30)
            self._call("RemoveContainer", cri.remove_container, cid)
            self._call("StopPodSandbox", cri.stop_pod, pod.id)
            self._call("RemovePodSandbox", cri.remove_pod, pod.id)
            d1 = time.perf_counter_ns()
            pod = None
        finally:
            if pod is not None:  # a failed step: remove the pod untimed, then report
                try:
                    pod.remove()
                except Exception:
                    pass
        from .containerd import remove_cgroup_tree
        if not remove_cgroup_tree(parent):  # kubelet removes the pod's cgroup itself
            self.cd.cgroup_parents.discard(parent)
        return {
            "pod_start": (t3 - t0) / 1e6, "run_pod_sandbox": (t1 - t0) / 1e6,
            "create_container": (t2 - t1) / 1e6, "start_container": (t3 - t2) / 1e6,
            "exec_sync": probes, "teardown": (d1 - d0) / 1e6,
        }

    def close(self):
        problems = []
        if self.cri is not None:
            self.cri.close()
            self.cri = None
        if self.cd is not None:
            problems = [f"cri: {p}" for p in self.cd.stop()]
            self.cd = None
        return problems
