"""AppArmor and SELinux on a host that has neither (issue 13): a profile or label the host
cannot enforce is refused with a one-line error naming the field, before anything is made,
as runc and crun refuse it, never silently run unconfined. exec's --apparmor and
--process-label (and the process JSON's fields) are refused the same way on the native
launcher and on the Python path. `features` reports what the kernel has.

The enforcing side runs in the guest (Debian's kernel, AppArmor enabled):
tests/test_lsm_guest.py over tests/lsm_checks.py."""

import json
import os
import subprocess

import pytest

from conftest import sh

PATHS = {"native": {}, "python": {"RUNH_PYTHON_ONLY": "1"}}
LABEL = "system_u:system_r:container_t:s0:c1,c2"
MOUNT_LABEL = "system_u:object_r:container_file_t:s0:c1,c2"


def _apparmor():
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read(1) == "Y"
    except OSError:
        return False


def _selinux():
    return os.path.exists("/sys/fs/selinux/enforce")


no_apparmor = pytest.mark.skipif(_apparmor(), reason="this host has AppArmor (the guest tests cover it)")
no_selinux = pytest.mark.skipif(_selinux(), reason="this host has SELinux")

CASES = {
    "apparmorProfile": (lambda c: c["process"].__setitem__("apparmorProfile", "runh-test-profile"),
                        "process.apparmorProfile", "AppArmor is not enabled"),
    "selinuxLabel": (lambda c: c["process"].__setitem__("selinuxLabel", LABEL),
                     "process.selinuxLabel", "SELinux is not enabled"),
    "mountLabel": (lambda c: c["linux"].__setitem__("mountLabel", MOUNT_LABEL),
                   "linux.mountLabel", "SELinux is not enabled"),
}


@no_apparmor
@no_selinux
@pytest.mark.parametrize("field", list(CASES))
@pytest.mark.parametrize("cmd", ["create", "run"])
def test_refused_where_the_lsm_is_not_enabled(runh, ctx, make_bundle, field, cmd):
    """create and run refuse the field with one clear line (and a JSON log line), exit
    non-zero, and leave no state, process, cgroup or mount (the leftovers check)."""
    edit, name, why = CASES[field]
    marker = ctx.path("ran")

    def ed(c):
        c["process"]["args"] = sh("touch /ran/x")
        c["mounts"].append({"destination": "/ran", "type": "bind", "source": marker, "options": ["bind"]})
        edit(c)
    os.mkdir(marker)
    b = make_bundle(edit=ed)
    cid = ctx.new_id()
    log = ctx.path(f"log-{cid}.json")
    r = runh("--log", log, "--log-format", "json", cmd, "--bundle", b, cid)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and why in lines[0], r.stderr
    with open(log) as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    assert last["level"] == "error" and name in last["msg"], last
    assert not os.path.exists(os.path.join(ctx.root, cid))
    assert os.listdir(marker) == []  # the process never ran
    assert runh("state", cid).returncode != 0


@no_apparmor
@no_selinux
@pytest.mark.runc
@pytest.mark.parametrize("field", ["apparmorProfile", "selinuxLabel"])
def test_runc_refuses_them_too(ctx, make_bundle, field):
    """The reference: runc 1.1.5 refuses the same configs here (apparmorProfile when its
    init writes attr/exec, selinuxLabel in its config validation)."""
    edit, _, _ = CASES[field]

    def ed(c):
        c["process"]["args"] = ["true"]
        c["linux"].pop("resources", None)
        edit(c)
    b = make_bundle(edit=ed)
    root = ctx.path("runc-root")
    cid = ctx.new_id()
    r = subprocess.run(["runc", "--root", root, "run", "--bundle", b, cid], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=60)
    subprocess.run(["runc", "--root", root, "delete", "--force", cid], capture_output=True)
    assert r.returncode != 0, r.stderr


@no_apparmor
@no_selinux
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("how", ["--apparmor", "--process-label", "process.json"])
def test_exec_refused_where_the_lsm_is_not_enabled(runh, ctx, make_bundle, path, how):
    """exec --apparmor / --process-label, and a process JSON asking for a profile, fail
    with the field named, on both paths; no process is left in the container."""
    b = make_bundle(args=["sleep", "100"])
    cid = ctx.new_id()
    assert runh("run", "-d", "--bundle", b, cid).returncode == 0
    try:
        env = dict(os.environ, **PATHS[path])
        if how == "process.json":
            pj = ctx.path("process.json")
            with open(pj, "w") as f:
                json.dump({"args": ["true"], "cwd": "/", "apparmorProfile": "runh-test-profile"}, f)
            r = runh("exec", "--process", pj, cid, env=env)
            name = "process.apparmorProfile"
        else:
            r = runh("exec", how, "runh-test-x", cid, "true", env=env)
            name = "process.apparmorProfile" if how == "--apparmor" else "process.selinuxLabel"
        assert r.returncode != 0
        assert name in r.stderr and "not enabled" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        ps = runh("ps", "--format", "json", cid)
        assert len(json.loads(ps.stdout)) == 1, ps.stdout  # only the container's own process
        # Empty values are as if not given (runc's flags, and the spec's omitted field).
        assert runh("exec", "--apparmor", "", "--process-label", "", cid, "true", env=env).returncode == 0
    finally:
        runh("delete", "--force", cid)


def test_features_report_the_kernel(runh):
    """features' linux.apparmor/selinux.enabled are the kernel's answer."""
    r = runh("features")
    assert r.returncode == 0, r.stderr
    f = json.loads(r.stdout)["linux"]
    assert f["apparmor"] == {"enabled": _apparmor()}
    assert f["selinux"] == {"enabled": _selinux()}
