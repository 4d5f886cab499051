"""Build a busybox OCI bundle: the one bundle builder for tests, the demo and the benchmarks.

Stdlib only, so that `make run`, `benches/` and `tests/` can all import it:

    sys.path.insert(0, "<repo>/tests"); from bundle import build_bundle
    build_bundle("/tmp/b", args=["/bin/true"])   # -> "/tmp/b" with config.json + rootfs/

The rootfs is Debian's busybox-static with one symlink per applet, plus the few files
that `id`, `ps` and `ls -l` want (/etc/passwd, /etc/group). config.json comes from the
default spec of a runtime (`runh spec` if it works, else `runc spec`, else a built-in
copy of the runtime-spec's usual defaults), so tests exercise the same defaults a user
gets, with terminal and args set by the caller.
"""

import json
import os
import shutil
import subprocess
import tempfile

BUSYBOX = os.environ.get("RUNH_TEST_BUSYBOX", "/bin/busybox")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNH = os.environ.get("RUNH", os.path.join(REPO, ".venv", "bin", "runh"))

# Used only when neither `runh spec` nor `runc spec` is available (e.g. `make run` before
# runh's spec command exists, on a machine without runc). The usual OCI defaults.
_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
FALLBACK_SPEC = {
    "ociVersion": "1.3.0",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runh",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
    },
}

_default_spec_cache = {}


def _spec_from(cmd):
    with tempfile.TemporaryDirectory(prefix="rh-spec-") as d:
        try:
            r = subprocess.run(cmd + ["spec"], cwd=d, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        path = os.path.join(d, "config.json")
        if r.returncode != 0 or not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)


def default_spec(source=None):
    """The default config as a dict. source: "runh", "runc", "builtin" or None (first that works).

    RUNH_TEST_SPEC=runc|builtin forces a source (e.g. while `runh spec` is broken).
    """
    source = source or os.environ.get("RUNH_TEST_SPEC")
    order = [source] if source else ["runh", "runc", "builtin"]
    for src in order:
        if src in _default_spec_cache:
            return json.loads(json.dumps(_default_spec_cache[src]))
        if src == "runh":
            spec = _spec_from([RUNH]) if os.access(RUNH, os.X_OK) else None
        elif src == "runc":
            runc = shutil.which("runc")
            spec = _spec_from([runc]) if runc else None
        else:
            spec = FALLBACK_SPEC
        if spec is not None:
            _default_spec_cache[src] = spec
            return json.loads(json.dumps(spec))
    raise RuntimeError(f"no default spec from {order}")


def applets(busybox=BUSYBOX):
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    return [a for a in out.split() if a and a != "busybox"]


_applet_cache = []


def build_rootfs(path, busybox=BUSYBOX, template=None):
    """A busybox rootfs at `path`. With `template` (a rootfs built earlier) the binary is
    hard-linked instead of copied when on the same filesystem."""
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var", "run", "mnt"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    dst = os.path.join(path, "bin", "busybox")
    src = os.path.join(template, "bin", "busybox") if template else busybox
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    if not _applet_cache:
        _applet_cache.extend(applets(busybox))
    for a in _applet_cache:
        os.symlink("busybox", os.path.join(path, "bin", a))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n"
                "daemon:x:1:1:daemon:/:/bin/false\n"
                "nobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\ndaemon:x:1:\ntty:x:5:\nusers:x:100:\nnogroup:x:65534:\n")
    return path


def build_bundle(dir, args=None, terminal=False, *, spec=None, template=None, edit=None):
    """Make an OCI bundle in `dir` (created if missing) and return its path.

    args: process.args (default: the spec's). terminal: process.terminal.
    spec: a config dict to start from (default: default_spec()).
    template: an earlier rootfs to hard-link busybox from.
    edit: a callable(config_dict) that changes the config in place before it is written.
    """
    os.makedirs(dir, exist_ok=True)
    build_rootfs(os.path.join(dir, "rootfs"), template=template)
    config = json.loads(json.dumps(spec)) if spec is not None else default_spec()
    config["root"]["path"] = "rootfs"
    config["process"]["terminal"] = bool(terminal)
    if args is not None:
        config["process"]["args"] = list(args)
    if edit is not None:
        edit(config)
    write_config(dir, config)
    return dir


def read_config(bundle):
    with open(os.path.join(bundle, "config.json")) as f:
        return json.load(f)


def write_config(bundle, config):
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def edit_config(bundle, fn):
    """Load the bundle's config.json, let fn change it in place, write it back."""
    config = read_config(bundle)
    fn(config)
    write_config(bundle, config)
    return config


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 2:
        sys.exit("usage: bundle.py DIR [ARG...]")
    print(build_bundle(sys.argv[1], args=sys.argv[2:] or None))
