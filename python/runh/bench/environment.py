"""Which runtimes to measure and what cgroup set-up the host gives them.

crun refuses hybrid cgroup hosts (v1 controllers plus a cgroup2 tree at
/sys/fs/cgroup/unified). To compare every runtime on such a host the benchmark re-runs
itself, with all runtimes, inside a private mount namespace whose /sys/fs/cgroup is a
fresh cgroup2 mount. Everything then sees pure cgroup v2 (with whatever controllers the
v2 tree has), which is also what production hosts run. On a pure v2 host nothing is wrapped.
"""

import os
import shutil
import sys

NS_ENV = "RUNH_BENCH_CGROUP2_NS"  # set in the re-run; its value is the host's mode
DEFAULT_RUNTIMES = ("runh", "runc", "crun", "youki")
NS_SCRIPT = 'umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && exec "$@"'
# The other way round, for the cri scenario: containerd gives every pod cpu shares and
# device rules, which the controller-less cgroup2 tree of a hybrid host cannot hold (and
# crun's device filter there needs RLIMIT_MEMLOCK). Hiding the cgroup2 mount leaves pure
# cgroup v1 with every controller, which all runtimes (crun too) and the shim accept.
NS_V1_SCRIPT = 'umount -l /sys/fs/cgroup/unified && exec "$@"'
NS_KIND_ENV = "RUNH_BENCH_NS_KIND"  # "cgroup2" or "v1": which of the two the re-run is in


def cgroup_mode(mountinfo="/proc/self/mountinfo"):
    """'v2' (unified), 'hybrid' (v1 plus a cgroup2 tree), 'v1' or 'none'."""
    top, has_v1, has_v2 = None, False, False
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = left.split()[4]
            fstype = right.split()[0]
            if point == "/sys/fs/cgroup":
                top = fstype  # the last mount on the point is the visible one
            elif point.startswith("/sys/fs/cgroup/"):
                has_v1 |= fstype == "cgroup"
                has_v2 |= fstype == "cgroup2"
    if top == "cgroup2":
        return "v2"
    if top is None and not has_v1:
        return "none"
    return "hybrid" if has_v2 else "v1"


def wrapper_argv(argv, kind="cgroup2"):
    """argv run inside a private mount namespace with a fresh cgroup2 /sys/fs/cgroup, or
    (kind "v1") without the hybrid host's cgroup2 mount."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    script = NS_V1_SCRIPT if kind == "v1" else NS_SCRIPT
    return [unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]


def rerun_in_namespace(args, mode, kind="cgroup2"):
    """Run this benchmark again inside the namespace (wrapper_argv); return its exit status."""
    import signal
    import subprocess
    argv = wrapper_argv([sys.executable, "-m", "runh.bench", *args], kind)
    if argv is None:
        return None
    env = dict(os.environ)
    env[NS_ENV] = mode
    env[NS_KIND_ENV] = kind
    # The re-run may be started from a checkout (benches/startup.py) rather than an
    # installed package: give it the directory that holds this `runh` package.
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    child = subprocess.Popen(argv, env=env)
    # Ctrl-C reaches the child too (same process group); it cleans up and exits, and
    # this process only relays its status. SIGTERM is forwarded.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    return child.wait()


class Runtime:
    """One runtime binary with its own private --root under the benchmark's temp dir."""

    def __init__(self, name, path, explicit):
        self.name = name
        self.path = path
        self.explicit = explicit
        self.index = 0
        self.version = None
        self.status = "ok"      # ok | missing | broken
        self.error = None
        self.root = None
        self.live = {}          # container id -> init pid (0 if unknown), for cleanup
        self._seq = 0

    def argv(self, *cmd):
        return [self.path, "--root", self.root, *cmd]

    def new_id(self, tag):
        # Short: runh and youki put notify.sock under <root>/<id>, and AF_UNIX paths are
        # limited to 108 bytes. The runtime's index keeps ids distinct across runtimes,
        # since default cgroup paths are named after the id.
        self._seq += 1
        cid = f"b{os.getpid()}-{self.index}{tag[:4]}{self._seq}"
        self.live[cid] = 0
        return cid

    def state_exists(self, cid):
        return os.path.exists(os.path.join(self.root, cid))

    def as_json(self):
        return {"path": self.path, "version": self.version, "status": self.status, "error": self.error}


def _find(name):
    if name == "runh":
        # The runh installed next to this interpreter (the venv) before anything on PATH.
        local = os.path.join(os.path.dirname(sys.executable), "runh")
        if os.access(local, os.X_OK):
            return local
    return shutil.which(name)


def parse_runtimes(specs):
    """`--runtime` values (NAME, PATH or NAME=PATH) to Runtimes; none given: the defaults."""
    out = []
    for spec in specs or DEFAULT_RUNTIMES:
        explicit = bool(specs)
        if "=" in spec:
            name, path = spec.split("=", 1)
        elif "/" in spec:
            name, path = os.path.basename(spec), spec
        else:
            name, path = spec, _find(spec)
        if any(r.name == name for r in out):
            name = f"{name}#{len(out)}"
        rt = Runtime(name, os.path.abspath(path) if path else None, explicit)
        rt.index = len(out)
        if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
            rt.status = "missing"
            rt.error = f"{path or name}: not found or not executable"
        out.append(rt)
    return out


def executables(rt):
    """The files a runtime executes on each call: its binary and, for a runh, the
    runh-init its launcher execs for every container (found by the launcher's own walk,
    rust/launcher/src/python.rs find_package: a site-packages under the binary's prefix,
    or a directory its runh.pth names). crun, runc and youki run only themselves."""
    import glob
    out = [os.path.realpath(rt.path)]
    prefix = os.path.dirname(os.path.dirname(rt.path))
    for site in sorted(glob.glob(os.path.join(prefix, "lib", "python3.*", "*-packages")), reverse=True):
        dirs = [site]
        try:
            with open(os.path.join(site, "runh.pth")) as f:
                dirs += f.read().split()
        except OSError:
            pass
        for d in dirs:
            init = os.path.join(d, "runh", "runh-init")
            if os.path.isfile(init):
                return out + [os.path.realpath(init)]
    return out


def interpreter(rt):
    """For a runh, the interpreter its launcher execs for create, run and every other
    command it does not run natively (rust/launcher/src/python.rs handoff_to: the
    python3 beside the launcher's real path, a venv's, else python3 on PATH); None for
    any other runtime. Its bare start is the floor under every such runh call."""
    if len(executables(rt)) < 2:  # no runh-init found: not a runh
        return None
    own = os.path.join(os.path.dirname(os.path.realpath(rt.path)), "python3")
    return own if os.access(own, os.X_OK) else shutil.which("python3")


def drop_page_cache(paths):
    """Write back and drop `paths` from the page cache; returns the ones dropped.

    Why: a file just written (a runtime built a minute ago) sits in the page cache in the
    large folios of the write path, and fault-around then maps more of it into each
    process: runh's parked init read 308 KiB of VmRSS after a build and 244-256 KiB after
    this (benches/results/issue16/README.md, final8/). Read back by the warm-up, every
    runtime's files are then cached the same way, however old they are. Pages that a
    running process maps stay (the kernel skips them): nothing is lost but a re-read."""
    dropped = []
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            dropped.append(p)
        except OSError:
            pass
        finally:
            os.close(fd)
    return dropped


def probe_version(rt):
    import subprocess
    try:
        p = subprocess.run([rt.path, "--version"], capture_output=True, text=True, timeout=10)
    except OSError as e:
        rt.status, rt.error = "broken", f"{rt.path}: {e.strerror}"
        return
    except subprocess.TimeoutExpired:
        rt.status, rt.error = "broken", f"{rt.path} --version timed out"
        return
    first = (p.stdout or p.stderr).strip().splitlines()
    rt.version = first[0] if first else None
    if p.returncode != 0:
        # Not fatal: the scenarios decide whether the runtime works.
        rt.version = None
