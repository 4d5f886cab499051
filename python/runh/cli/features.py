"""runh features: what this runh supports, as runtime-spec features.md JSON."""

HELP = "show the enabled features"
DESCRIPTION = "Show the enabled features (runtime-spec features.md). The output is experimental."
OPTIONS = ()
ARGS = ()

# Only what runh implements today; grow these lists as the Rust core lands features.
_NAMESPACES = ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"]


def _caps():
    # The capabilities the running kernel knows (the last one is in /proc).
    names = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
             "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
             "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
             "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
             "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
             "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
             "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
             "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
             "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = len(names) - 1
    return names[: last + 1]


def _seccomp():
    # From the Rust generator itself, so the list cannot drift from what it accepts;
    # supportedFlags are probed on the running kernel.
    import json

    import runh._core as core

    return json.loads(core.seccomp_features())


def _mount_options():
    # From the core's own option table (rust/src/mounts.rs), so it cannot drift from it.
    import runh._core as core

    return core.mount_option_names()


def _core_linux():
    # What the core implements and names itself (memoryPolicy's modes and flags).
    import json

    import runh._core as core

    return json.loads(core.core_features())


def _cgroup():
    # v1 and v2 both have a manager (runh.cgroups), and so has systemd (--systemd-cgroup,
    # cgroup v2 only), with the system's manager or, unprivileged, the user's own.
    # rdma limits are written to rdma.max, so they work where the host has the controller.
    from runh import cgroups
    from runh.cgroups import _fs

    if cgroups.mode() == "unified":
        rdma = "rdma" in _fs.read(cgroups.CGROUP_ROOT, "cgroup.controllers", "").split()
    else:
        rdma = cgroups.isdir(cgroups.CGROUP_ROOT + "/rdma")
    return {"v1": True, "v2": True, "systemd": True, "systemdUser": True, "rdma": rdma}


def _checkpoint(criu):
    from runh.criu.swrk import find
    from runh.errors import NotSupported

    try:
        find(criu)
        return "true"
    except NotSupported:
        return "false"


def run(g, o, args):
    import sys

    from runh import SPEC_VERSION, _core
    from runh.jsonio import dumps

    apparmor, selinux = _core.lsm_enabled()

    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        # runtime-spec order; createContainer/startContainer run in runh-init.
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        # From the core's own option table (rust/src/mounts.rs), so it cannot drift.
        "mountOptions": _mount_options(),
        "linux": {
            "namespaces": _NAMESPACES,
            "capabilities": _caps(),
            "cgroup": _cgroup(),
            "seccomp": _seccomp(),
            # From the kernel (rust/src/lsm.rs): what create and exec can enforce.
            "apparmor": {"enabled": apparmor},
            "selinux": {"enabled": selinux},
            # Through resctrl where it is mounted (runh.intelrdt); create fails elsewhere.
            "intelRdt": {"enabled": True, "schemata": True, "monitoring": True},
            # Idmapped bind mounts (rust/src/idmap.rs): mounts[].uid/gidMappings, idmap, ridmap.
            "mountExtensions": {"idmap": {"enabled": True}},
            **_core_linux(),
        },
        # runc's key: checkpoint/restore work through CRIU (runh.criu) when it is installed.
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": _checkpoint(g.criu)},
    }
    sys.stdout.write(dumps(features, "    ") + "\n")
    return 0
