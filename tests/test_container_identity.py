"""Process identity: hostname, domainname, sysctl, user, capabilities, rlimits,
noNewPrivileges, oomScoreAdj."""

import pytest

from conftest import proc_status, sh

CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
        "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
        "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
        "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
        "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
        "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]


def mask(names):
    m = 0
    for n in names:
        m |= 1 << CAPS.index(n.removeprefix("CAP_"))
    return m


def status_of(text):
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def test_hostname_and_domainname(run_in):
    r = run_in(*sh("hostname; cat /proc/sys/kernel/domainname"),
               edit=lambda c: c.update(hostname="box", domainname="example.test"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["box", "example.test"]


def test_sysctl_in_new_net_ns(run_in):
    r = run_in(*sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ip_default_ttl"),
               edit=lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": "1",
                                                        "net.ipv4.ip_default_ttl": "42"}))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "42"]
    assert open("/proc/sys/net/ipv4/ip_default_ttl").read().strip() != "42"


def test_user_groups_umask(run_in):
    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 100],
                                "umask": 0o027}
        c["root"]["readonly"] = False
    r = run_in(*sh("id -u; id -g; id -G; umask; touch /tmp/f; stat -c %a /tmp/f"), edit=edit)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "1000" and lines[1] == "1001"
    assert sorted(map(int, lines[2].split())) == [5, 100, 1001]
    assert lines[3] in ("0027", "027")
    assert lines[4] == "640"


def test_capabilities_root(run_in):
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"]

    def edit(c):
        c["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps,
                                        "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}
    r = run_in("cat", "/proc/self/status", edit=edit)
    assert r.returncode == 0, r.stderr
    st = status_of(r.stdout)
    assert int(st["CapBnd"], 16) == mask(caps)
    assert int(st["CapPrm"], 16) == mask(caps)
    assert int(st["CapEff"], 16) == mask(caps)
    assert int(st["CapInh"], 16) == mask(["CAP_KILL"])
    assert int(st["CapAmb"], 16) == mask(["CAP_KILL"])


def test_capabilities_non_root_with_ambient(run_in):
    """For a non-root user the kernel keeps, across execve, only the ambient set in
    permitted and effective: so all five sets are visible and distinct."""
    bnd = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]

    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["capabilities"] = {
            "bounding": bnd, "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"]}
    r = run_in("cat", "/proc/self/status", edit=edit)
    assert r.returncode == 0, r.stderr
    st = status_of(r.stdout)
    assert int(st["CapBnd"], 16) == mask(bnd)
    assert int(st["CapInh"], 16) == mask(["CAP_KILL", "CAP_NET_BIND_SERVICE"])
    assert int(st["CapAmb"], 16) == mask(["CAP_NET_BIND_SERVICE"])
    assert int(st["CapPrm"], 16) == mask(["CAP_NET_BIND_SERVICE"])
    assert int(st["CapEff"], 16) == mask(["CAP_NET_BIND_SERVICE"])


def test_unknown_capability_warns(run_in):
    """config.md: a capability that cannot be mapped is logged as a warning; runtimes
    SHOULD NOT fail (runc 1.1.5 does the same)."""
    def edit(c):
        c["process"]["capabilities"]["bounding"].append("CAP_NO_SUCH_THING")
    r = run_in("true", edit=edit)
    assert r.returncode == 0, r.stderr
    assert "CAP_NO_SUCH_THING" in r.stderr


def test_rlimit_nofile_lowered(run_in):
    r = run_in(*sh("ulimit -n; grep 'Max open files' /proc/self/limits"),
               edit=lambda c: c["process"].update(
                   rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "100"
    assert lines[1].split()[3:5] == ["100", "200"]


def test_rlimit_above_hard_limit(run_in):
    cap_sys_resource = 1 << CAPS.index("SYS_RESOURCE")
    if not int(proc_status("self")["CapEff"], 16) & cap_sys_resource:
        pytest.skip("this machine's root lacks CAP_SYS_RESOURCE: raising an rlimit above "
                    "its hard limit fails with EPERM here (the guest has it)")
    hard = int(open("/proc/self/limits").read().split("Max open files")[1].split()[1])
    r = run_in(*sh("ulimit -Hn"), edit=lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1}]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(hard + 1)


def test_unknown_rlimit_rejected(run_in):
    r = run_in("true", edit=lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]))
    assert r.returncode != 0 and r.stderr.strip()


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(run_in, nnp):
    r = run_in("grep", "NoNewPrivs", "/proc/self/status",
               edit=lambda c: c["process"].update(noNewPrivileges=nnp))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["NoNewPrivs:", "1" if nnp else "0"]


def test_oom_score_adj(run_in):
    r = run_in("cat", "/proc/self/oom_score_adj",
               edit=lambda c: c["process"].update(oomScoreAdj=500))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "500"


def test_env_and_cwd(run_in):
    def edit(c):
        c["process"]["env"] = ["PATH=/bin", "FOO=bar baz"]
        c["process"]["cwd"] = "/tmp"
    r = run_in(*sh('echo "$FOO"; pwd'), edit=edit)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["bar baz", "/tmp"]
