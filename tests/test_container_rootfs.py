"""Root filesystem, mounts and /dev as the container sees them."""

import os

import pytest

from conftest import sh


def _mounts(text):
    """/proc/self/mountinfo text -> {mount point: (fstype, mount options, super options, optional fields)}"""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or "-" not in f:
            continue
        sep = f.index("-")
        out[f[4]] = (f[sep + 1], set(f[5].split(",")), set(f[sep + 3].split(",")), f[6:sep])
    return out


def _writable(edit=None):
    def e(c):
        c["root"]["readonly"] = False
        if edit:
            edit(c)
    return e


# ---------------------------------------------------------------- rootfs

@pytest.mark.parametrize("no_pivot", [False, True])
def test_rootfs_is_the_bundle(runh, ctx, make_bundle, no_pivot):
    b = make_bundle(args=sh("ls /; test -e /work && echo HOST-VISIBLE; exit 0"))
    cid = ctx.new_id()
    r = runh("run", *(["--no-pivot"] if no_pivot else []), "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert "bin" in r.stdout.split() and "HOST-VISIBLE" not in r.stdout


def test_pivot_root_leaves_no_host_mounts(run_in):
    r = run_in("cat", "/proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    for mp in _mounts(r.stdout):
        assert not mp.startswith(("/work", "/tmp/rh", "/run/runh")), r.stdout


def test_root_readonly(run_in):
    r = run_in(*sh("touch /x && echo wrote; exit 0"), edit=lambda c: c["root"].update(readonly=True))
    assert r.returncode == 0, r.stderr
    assert "wrote" not in r.stdout
    r = run_in(*sh("touch /x && echo wrote; exit 0"), edit=_writable())
    assert "wrote" in r.stdout, r.stderr


# The spec's values (defs-linux.json); "unbindable" has its own test in test_parity.py.
# (runc 1.1.5 also takes rprivate/rslave/rshared.)
@pytest.mark.parametrize("prop", ["private", "slave", "shared"])
def test_rootfs_propagation(run_in, prop):
    """Every value is accepted. The host's / is private here, and pivot_root needs a
    non-shared root, so the container's / carries no peer group whatever the value
    (runc 1.1.5 shows the same)."""
    r = run_in("cat", "/proc/self/mountinfo",
               edit=lambda c: c["linux"].update(rootfsPropagation=prop))
    assert r.returncode == 0, r.stderr
    opt = _mounts(r.stdout)["/"][3]
    if prop.endswith("private"):
        assert not any(o.startswith(("shared:", "master:")) for o in opt), opt


def test_rootfs_propagation_invalid(run_in):
    r = run_in("true", edit=lambda c: c["linux"].update(rootfsPropagation="sideways"))
    assert r.returncode != 0 and r.stderr.strip()


# ---------------------------------------------------------------- mounts

def test_default_mounts(run_in):
    r = run_in("cat", "/proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    m = _mounts(r.stdout)
    want = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
            "/dev/mqueue": "mqueue", "/sys": "sysfs"}
    for mp, fstype in want.items():
        assert mp in m and m[mp][0] == fstype, (mp, m.get(mp))
    assert "ro" in m["/sys"][1]
    assert "nosuid" in m["/dev/shm"][1] and "nodev" in m["/dev/shm"][1]
    assert "/sys/fs/cgroup" in m or any(p.startswith("/sys/fs/cgroup/") for p in m)


def test_tmpfs_with_options(run_in):
    mnt = {"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
           "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=700"]}
    r = run_in(*sh("cat /proc/self/mountinfo; stat -c 'mode=%a' /mnt/t"),
               edit=lambda c: c["mounts"].append(mnt))
    assert r.returncode == 0, r.stderr
    fstype, opts, sopts, _ = _mounts(r.stdout)["/mnt/t"]
    assert fstype == "tmpfs"
    assert {"nosuid", "nodev", "noexec"} <= opts
    assert "size=1024k" in sopts and "mode=700" in sopts
    assert "mode=700" in r.stdout


def test_cgroup_mount_readonly(run_in):
    r = run_in(*sh("cat /proc/self/mountinfo; touch /sys/fs/cgroup/x 2>/dev/null && echo WROTE; exit 0"))
    assert r.returncode == 0, r.stderr
    assert "WROTE" not in r.stdout


@pytest.mark.parametrize("ro", [True, False])
def test_bind_mount(run_in, ctx, ro):
    data = ctx.path("data")
    os.makedirs(data)
    with open(os.path.join(data, "f"), "w") as f:
        f.write("from-host\n")
    mnt = {"destination": "/data", "type": "bind", "source": data,
           "options": ["rbind", "ro" if ro else "rw"]}
    r = run_in(*sh("cat /data/f; echo new > /data/g && echo WROTE; exit 0"),
               edit=lambda c: c["mounts"].append(mnt))
    assert r.returncode == 0, r.stderr
    assert "from-host" in r.stdout
    assert ("WROTE" in r.stdout) is (not ro)
    assert os.path.exists(os.path.join(data, "g")) is (not ro)


def test_mount_destination_created(run_in):
    """A destination missing from the rootfs is created (here on a writable root)."""
    mnt = {"destination": "/new/dir", "type": "tmpfs", "source": "tmpfs"}
    r = run_in(*sh("grep -q ' /new/dir ' /proc/self/mountinfo && echo OK"),
               edit=_writable(lambda c: c["mounts"].append(mnt)))
    assert r.stdout.strip() == "OK", r.stderr


# ---------------------------------------------------------------- /dev

DEFAULT_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                   "urandom": (1, 9), "tty": (5, 0)}


def test_default_devices(run_in):
    script = "; ".join(f"stat -c '%n %F %t %T' /dev/{d}" for d in DEFAULT_DEVICES)
    r = run_in(*sh(script))
    assert r.returncode == 0, r.stderr
    seen = {}
    for line in r.stdout.splitlines():
        name, rest = line.split(" ", 1)
        kind, maj, mnr = rest.rsplit(" ", 2)
        seen[name.removeprefix("/dev/")] = (kind, int(maj, 16), int(mnr, 16))
    for d, (maj, mnr) in DEFAULT_DEVICES.items():
        assert seen[d] == ("character special file", maj, mnr), (d, seen.get(d))


def test_dev_links_and_ptmx(run_in):
    r = run_in(*sh("for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; "
                   "echo hi > /dev/null && echo NULL-OK; head -c 4 /dev/zero | wc -c"))
    assert r.returncode == 0, r.stderr
    got = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
    assert got["fd"] == "/proc/self/fd"
    assert got["stdin"] == "/proc/self/fd/0"
    assert got["stdout"] == "/proc/self/fd/1"
    assert got["stderr"] == "/proc/self/fd/2"
    assert got["ptmx"] in ("pts/ptmx", "/dev/pts/ptmx")
    assert "NULL-OK" in r.stdout and r.stdout.strip().endswith("4")


def test_linux_devices(run_in):
    def edit(c):
        c["linux"].setdefault("devices", []).append(
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640,
             "uid": 0, "gid": 0})
        c["linux"].setdefault("resources", {}).setdefault("devices", []).append(
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"})
    r = run_in(*sh("stat -c '%F %t %T %a' /dev/mynull; echo x > /dev/mynull && echo WRITE-OK"),
               edit=edit)
    assert r.returncode == 0, r.stderr
    assert "character special file 1 3 640" in r.stdout
    assert "WRITE-OK" in r.stdout


def test_masked_paths(run_in):
    # Only paths this kernel has: a masked path that does not exist is skipped.
    files = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if os.path.exists(p)]
    dirs = [p for p in ("/sys/firmware", "/proc/acpi") if os.path.isdir(p)]
    script = "; ".join([f"cat {p} | wc -c" for p in files] +
                       [f"ls -A {p} | wc -l" for p in dirs])
    r = run_in(*sh(script), edit=lambda c: c["linux"].update(
        maskedPaths=files + dirs + ["/proc/no-such-path"]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0"] * (len(files) + len(dirs)), r.stdout


def test_readonly_paths(run_in):
    r = run_in(*sh("cat /proc/self/mountinfo; "
                   "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo WROTE; "
                   "cat /proc/sys/kernel/ostype; exit 0"))
    assert r.returncode == 0, r.stderr
    m = _mounts(r.stdout)
    assert "ro" in m["/proc/sys"][1]
    assert "WROTE" not in r.stdout and "Linux" in r.stdout
