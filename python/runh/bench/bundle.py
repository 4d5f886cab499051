"""The busybox OCI bundle builder (the one the tests, benches/ and the benchmark share) and
the benchmark's configs for each scenario.

It lives in the package because the benchmark must work from an installed package;
tests/bundle.py wraps it for the test suite. Every runtime runs the same rootfs, and the scenarios
differ only in config.json (process.args, seccomp), so each scenario gets its own small
bundle directory whose root.path points at the one shared rootfs.
"""

import json
import os
import shutil

BUSYBOX = "/bin/busybox"

# Syscalls a seccomp allowlist must not grant even when the host header lists them:
# the usual container-profile denials (kernel modules, kexec, reboot, clock, keyring...).
SECCOMP_DENY = frozenset("""
    acct add_key bpf clock_adjtime clock_settime create_module delete_module finit_module
    get_kernel_syms init_module ioperm iopl kcmp kexec_file_load kexec_load keyctl
    lookup_dcookie mount move_mount fsopen fsmount fsconfig fspick open_tree nfsservctl
    perf_event_open personality pivot_root process_vm_readv process_vm_writev ptrace
    query_module quotactl reboot request_key setns settimeofday swapoff swapon
    _sysctl sysfs umount2 unshare uselib userfaultfd ustat vm86 vm86old
""".split())
UNISTD_HEADERS = ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h")


class BundleError(Exception):
    """The bundle cannot be built (no static busybox, unreadable given bundle)."""


def _is_static_elf(path):
    # A dynamic executable has a PT_INTERP program header; a static one has none. Reading
    # the ELF header by hand avoids shelling out to `file` (absent on minimal hosts).
    import struct
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # ELFCLASS64 only
            return False
        e_phoff, = struct.unpack_from("<Q", head, 0x20)
        e_phentsize, e_phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(e_phoff)
        table = f.read(e_phentsize * e_phnum)
    for i in range(e_phnum):
        p_type, = struct.unpack_from("<I", table, i * e_phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def applets(busybox=BUSYBOX):
    """The applet names `busybox --list` gives (each becomes a symlink in the rootfs)."""
    import subprocess
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    return [a for a in out.split() if a and a != "busybox"]


_applet_cache = {}


def build_rootfs(rootfs, busybox=BUSYBOX, template=None):
    """A busybox rootfs at `rootfs` (returned): the binary, one symlink per applet, the mount
    points, and the /etc/passwd and /etc/group that `id`, `ps` and `ls -l` want.

    With `template` (a rootfs built earlier) the binary is hard-linked from it instead of
    copied when on the same filesystem: the test suite builds hundreds of bundles.
    """
    if template is None:
        if not os.path.exists(busybox):
            raise BundleError(f"{busybox} not found: install busybox-static or pass --bundle")
        if not _is_static_elf(busybox):
            raise BundleError(f"{busybox} is not a static binary: install busybox-static or pass --bundle")
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var", "run", "mnt"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    dst = os.path.join(rootfs, "bin", "busybox")
    src = os.path.join(template, "bin", "busybox") if template else busybox
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    if busybox not in _applet_cache:
        _applet_cache[busybox] = applets(busybox)
    for a in _applet_cache[busybox]:
        os.symlink("busybox", os.path.join(rootfs, "bin", a))
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n"
                "daemon:x:1:1:daemon:/:/bin/false\n"
                "nobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\ndaemon:x:1:\ntty:x:5:\nusers:x:100:\nnogroup:x:65534:\n")
    return rootfs


def base_config(rootfs, args):
    """The config every runtime gets: `runh spec`'s defaults (runh.spec.default_spec) with
    the benchmark's process and root, and without linux.resources.

    No linux.resources (and no linux.devices) so that crun builds no eBPF device filter:
    loading one needs RLIMIT_MEMLOCK headroom that root lacks on some hosts (no
    CAP_SYS_RESOURCE). Namespaces, mounts, masked and read-only paths are the usual
    container set, so the numbers measure the work a real container costs.
    """
    from runh.spec import default_spec

    config = default_spec()
    # ociVersion 1.0.2 and no gid= on devpts: the config the figures in benches/results
    # were measured with, kept so that new runs compare with them.
    config["ociVersion"] = "1.0.2"
    config["process"].update(terminal=False, args=list(args), env=["PATH=/bin", "TERM=xterm"])
    config["root"]["path"] = os.path.abspath(rootfs)
    config["hostname"] = "bench"
    for m in config["mounts"]:
        if m["destination"] == "/dev/pts":
            m["options"] = [o for o in m["options"] if not o.startswith("gid=")]
    del config["linux"]["resources"]
    return config


def _host_syscalls():
    for header in UNISTD_HEADERS:
        try:
            with open(header) as f:
                text = f.read()
        except OSError:
            continue
        names = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_"):
                names.append(parts[1][5:])
        if names:
            return names
    return None


def seccomp_profile():
    """A container-style seccomp profile: default errno, one allowlist rule of ~330 names.

    Built from the host's syscall table minus the usual denials, so its size matches what
    container engines pass (Docker's default profile allows about 350 names). Hosts with
    no kernel headers get a deny-list profile instead, which is smaller and says so.
    """
    path = os.environ.get("RUNH_BENCH_SECCOMP")
    if path:
        # A given profile (e.g. Docker's default, tests/fixtures/seccomp_default_amd64.json,
        # as benches/seccomp_bench.py passes it), so the figures are for what engines send.
        with open(path) as f:
            profile = json.load(f)
        profile.pop("_comment", None)
        return profile, f"{os.path.basename(path)} ({len(profile.get('syscalls') or [])} rules)"
    names = _host_syscalls()
    if names:
        allowed = sorted(n for n in names if n not in SECCOMP_DENY)
        return {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
        }, f"allowlist of {len(allowed)} syscalls"
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": sorted(SECCOMP_DENY), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }, f"denylist of {len(SECCOMP_DENY)} syscalls (no kernel headers for an allowlist)"


class Bundles:
    """The scenario bundles under `workdir`, all sharing one rootfs.

    `source` is an existing bundle to measure instead of the busybox one: its config.json
    is copied with root.path made absolute and the terminal turned off; its process is kept
    for `run`, and the `exec` and `seccomp` variants replace only what they need.
    """

    def __init__(self, workdir, source=None):
        self.workdir = workdir
        self.notes = []
        if source:
            cfg_path = os.path.join(source, "config.json")
            try:
                with open(cfg_path) as f:
                    base = json.load(f)
            except (OSError, ValueError) as e:
                raise BundleError(f"cannot read {cfg_path}: {e}") from None
            root = base.get("root", {}).get("path", "rootfs")
            base.setdefault("root", {})["path"] = os.path.join(os.path.abspath(source), root)
            base.setdefault("process", {})["terminal"] = False
            self.source = os.path.abspath(source)
            self._base = base
        else:
            rootfs = os.path.join(workdir, "rootfs")
            build_rootfs(rootfs)
            self.source = None
            self._base = base_config(rootfs, ["/bin/true"])

    def make(self, name, args=None, seccomp=False):
        """Write bundle `name` and return its path."""
        cfg = json.loads(json.dumps(self._base))
        if args is not None:
            cfg["process"]["args"] = list(args)
        if seccomp:
            profile, note = seccomp_profile()
            cfg.setdefault("linux", {})["seccomp"] = profile
            self.notes.append(f"seccomp profile: {note}")
        path = os.path.join(self.workdir, "bundle-" + name)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        return path
