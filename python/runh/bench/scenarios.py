"""The benchmark scenarios. Each yields named metrics per measured iteration.

A scenario is prepared once (its bundle), set up per runtime (e.g. a running container to
exec into), measured in the interleaved loop, and torn down per runtime. Every container
it creates is registered in `rt.live` first, so cleanup can delete it whatever happens.
"""

import json
import os
import signal
import time

from .harness import RuntimeFailed, proc_status, reap_strays, wait_exit

# metric -> (unit, higher_is_better)
MS, KIB, PER_S = "ms", "KiB", "1/s"


class Scenario:
    name = ""
    description = ""
    metrics = {}

    # True: on a hybrid host, run in the host's cgroups rather than the private cgroup2
    # namespace (whose cgroup2 tree has no cpu or memory controller there).
    host_cgroups = False

    def __init__(self, ctx):
        self.ctx = ctx
        self.notes = []

    def prepare(self):
        pass

    def setup(self, rt):
        pass

    def measure(self, rt):
        raise NotImplementedError

    def teardown(self, rt):
        pass

    def close(self):
        """After the scenario (and on interrupt): release what prepare() made. Returns a
        list of problems. Called more than once."""
        return []

    # helpers
    # Metrics filled only in the RSS pass (calls wrapped in GNU time, so not timed).
    rss_metrics = frozenset()

    def _run(self, rt, *cmd, slot=0, measured=False):
        rss = measured and self.ctx.rss_pass
        return self.ctx.spawner.run(rt.argv(*cmd), slot, rss=rss).check()

    def _forget(self, rt, cid):
        """After a command that should have removed the container: delete leftovers untimed."""
        if rt.state_exists(cid):
            self.ctx.spawner.run(rt.argv("delete", "--force", cid))
        rt.live.pop(cid, None)


class Run(Scenario):
    name = "run"
    description = "`run` of /bin/true: create, start, wait and delete in one call"
    metrics = {"wall": (MS, False), "peak_rss": (KIB, False)}
    rss_metrics = frozenset({"peak_rss"})
    seccomp = False

    def prepare(self):
        self.bundle = self.ctx.bundles.make(self.name, seccomp=self.seccomp)

    def measure(self, rt):
        cid = rt.new_id(self.name)
        r = self._run(rt, "run", "--bundle", self.bundle, cid, measured=True)
        self._forget(rt, cid)
        return {"wall": r.ms, "peak_rss": r.maxrss_kib}


class RunSeccomp(Run):
    name = "run-seccomp"
    description = "`run` of /bin/true with a container-style seccomp allowlist"
    seccomp = True

    def prepare(self):
        super().prepare()
        self.notes.extend(self.ctx.bundles.notes[-1:])
        self.probe_bundle = self.ctx.bundles.make("seccomp-probe", args=["/bin/sleep", "1000000"],
                                                  seccomp=True)

    def setup(self, rt):
        """Check that the runtime really applies the profile: a run that skips seccomp
        would look fast. A parked-then-started sleeper shows `Seccomp: 2` in its status."""
        cid = rt.new_id("scpr")
        pid_file = os.path.join(self.ctx.workdir, f"{rt.name}.scpr.pid")
        self._run(rt, "create", "--bundle", self.probe_bundle, "--pid-file", pid_file, cid)
        with open(pid_file) as f:
            pid = rt.live[cid] = int(f.read().strip())
        try:
            self._run(rt, "start", cid)
            time.sleep(0.05)  # let it reach execve
            mode = proc_status(pid, ("Seccomp",)).get("Seccomp")
        except FileNotFoundError:
            mode = None
        finally:
            self.ctx.spawner.run(rt.argv("delete", "--force", cid))
            try:
                wait_exit(pid, self.ctx.timeout)
            except TimeoutError:
                pass
            rt.live.pop(cid, None)
        if mode != 2:
            self.notes.append(f"{rt.name} did NOT apply the profile (Seccomp: {mode} in the "
                              "container): its numbers here are without seccomp")


class Lifecycle(Scenario):
    name = "lifecycle"
    description = ("create -> start -> wait -> delete as separate calls (containerd's path); "
                   "init RSS read from /proc/<pid>/status after create")
    metrics = {
        "create": (MS, False), "start": (MS, False), "wait": (MS, False),
        "delete": (MS, False), "total": (MS, False),
        "create_peak_rss": (KIB, False),
        "init_vmrss": (KIB, False), "init_rssanon": (KIB, False),
    }
    rss_metrics = frozenset({"create_peak_rss"})

    def prepare(self):
        self.bundle = self.ctx.bundles.make(self.name)

    def measure(self, rt):
        cid = rt.new_id(self.name)
        pid_file = os.path.join(self.ctx.workdir, f"{rt.name}.pid")
        c = self._run(rt, "create", "--bundle", self.bundle, "--pid-file", pid_file, cid, measured=True)
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.unlink(pid_file)
        rt.live[cid] = pid
        try:
            mem = proc_status(pid)
        except FileNotFoundError:
            mem = {}
        s = self._run(rt, "start", cid)
        t0 = time.perf_counter_ns()
        wait_exit(pid, self.ctx.timeout)
        w = (time.perf_counter_ns() - t0) / 1e6
        d = self._run(rt, "delete", cid)
        self._forget(rt, cid)
        return {
            "create": c.ms, "start": s.ms, "wait": w, "delete": d.ms,
            "total": c.ms + s.ms + w + d.ms,
            "create_peak_rss": c.maxrss_kib,
            "init_vmrss": mem.get("VmRSS"), "init_rssanon": mem.get("RssAnon"),
        }


class Exec(Scenario):
    name = "exec"
    description = "`exec --process` of /bin/true into a running container (waits for it)"
    metrics = {"wall": (MS, False), "peak_rss": (KIB, False)}
    rss_metrics = frozenset({"peak_rss"})

    def prepare(self):
        self.bundle = self.ctx.bundles.make(self.name, args=["/bin/sleep", "1000000"])
        with open(os.path.join(self.bundle, "config.json")) as f:
            process = json.load(f)["process"]
        process["args"] = ["/bin/true"]
        self.process_json = os.path.join(self.bundle, "process.json")
        with open(self.process_json, "w") as f:
            json.dump(process, f)
        self.held = {}

    def setup(self, rt):
        cid = rt.new_id(self.name)
        pid_file = os.path.join(self.ctx.workdir, f"{rt.name}.exec.pid")
        self._run(rt, "create", "--bundle", self.bundle, "--pid-file", pid_file, cid)
        with open(pid_file) as f:
            rt.live[cid] = int(f.read().strip())
        self.held[rt.name] = cid
        self._run(rt, "start", cid)

    def measure(self, rt):
        r = self._run(rt, "exec", "--process", self.process_json, self.held[rt.name], measured=True)
        return {"wall": r.ms, "peak_rss": r.maxrss_kib}

    def teardown(self, rt):
        cid = self.held.pop(rt.name, None)
        if cid is None:
            return
        pid = rt.live.get(cid)
        self.ctx.spawner.run(rt.argv("kill", cid, "KILL"))
        if pid:
            try:
                wait_exit(pid, self.ctx.timeout)
            except TimeoutError:
                pass
        self.ctx.spawner.run(rt.argv("delete", "--force", cid))
        rt.live.pop(cid, None)


class Concurrent(Scenario):
    name = "concurrent"
    description = "N `run`s of /bin/true started at once; wall time until all have exited"
    metrics = {"wall": (MS, False), "per_container": (MS, False), "throughput": (PER_S, True)}

    def prepare(self):
        self.bundle = self.ctx.bundles.make("run")
        self.n = self.ctx.concurrency
        self.description = self.description.replace("N ", f"{self.n} ")

    def measure(self, rt):
        sp = self.ctx.spawner
        ids = [rt.new_id(self.name) for _ in range(self.n)]
        started, results = [], []
        try:
            for slot, cid in enumerate(ids):
                argv = rt.argv("run", "--bundle", self.bundle, cid)
                started.append((argv, *sp.spawn(argv, slot)))
            t0 = started[0][2]
            deadline = time.monotonic() + self.ctx.timeout
            for slot, (argv, pid, t) in enumerate(started):
                results.append(sp.finish(argv, pid, t, slot, deadline))
            wall = (time.perf_counter_ns() - t0) / 1e6
        except BaseException:
            # An interrupted round must not leave its runtime processes behind; only the
            # ones not yet reaped are killed (a reaped pid may already be reused).
            for argv, pid, _ in started[len(results):]:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            raise
        for r in results:
            r.check()
        for cid in ids:
            self._forget(rt, cid)
        reap_strays()
        return {"wall": wall, "per_container": wall / self.n, "throughput": self.n / (wall / 1e3)}


from .cri.scenario import CriScenario  # noqa: E402 (it subclasses Scenario)

# cri is not in DEFAULT: it needs containerd and grpcio (make apt-test, make build).
ALL = {c.name: c for c in (Run, Lifecycle, Exec, Concurrent, RunSeccomp, CriScenario)}
DEFAULT = ("run", "lifecycle", "exec", "concurrent", "run-seccomp")
