"""Safe defaults of the core (issue 17 item 1): a process without `process.capabilities`
runs with no capability at all, on every path that starts one: create/start (`run`),
`exec` with the container's process, and `exec --process` with a file that has no
capabilities field; the native launcher and the Python path alike. runc 1.1.5 gives all
zeros; the differential test holds runh to it."""

import json
import os
import shutil

import pytest

import bundle as bundlemod
from conftest import Runner

CAPS = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status"
PATHS = {"native": {}, "python": {"RUNH_PYTHON_ONLY": "1"}}


def _no_caps(c):
    c["process"].pop("capabilities", None)


def _caps(text):
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k.startswith("Cap"):
            out[k] = v.strip()
    return out


def _zero(caps):
    return caps and all(int(v, 16) == 0 for v in caps.values())


def test_absent_capabilities_are_empty_at_run(run_in):
    r = run_in("sh", "-c", CAPS, edit=_no_caps)
    assert r.returncode == 0, r.stderr
    caps = _caps(r.stdout)
    assert len(caps) == 5 and _zero(caps), r.stdout


@pytest.mark.parametrize("path", sorted(PATHS))
def test_absent_capabilities_are_empty_at_exec(runh, ctx, make_bundle, path):
    b = make_bundle(args=["sleep", "1000"], edit=_no_caps)
    cid = ctx.new_id()
    env = dict(os.environ, **PATHS[path])
    try:
        assert runh("run", "-d", "--bundle", b, cid).returncode == 0
        # The container's own process (no capabilities field) ...
        r = runh("exec", cid, "sh", "-c", CAPS, env=env)
        assert r.returncode == 0, r.stderr
        assert _zero(_caps(r.stdout)) and len(_caps(r.stdout)) == 5, r.stdout
        # ... and a --process file without one.
        proc = ctx.path("process.json")
        with open(proc, "w") as f:
            json.dump({"args": ["sh", "-c", CAPS], "cwd": "/", "user": {"uid": 0, "gid": 0},
                       "env": ["PATH=/bin:/usr/bin"]}, f)
        r = runh("exec", "--process", proc, cid, env=env)
        assert r.returncode == 0, r.stderr
        assert _zero(_caps(r.stdout)) and len(_caps(r.stdout)) == 5, r.stdout
    finally:
        runh("delete", "--force", cid)


@pytest.mark.runc
@pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed")
def test_absent_capabilities_same_as_runc(runh, ctx, rootfs_template):
    def edit(c):
        _no_caps(c)
        c["process"]["args"] = ["sleep", "1000"]
    b = bundlemod.build_bundle(ctx.path("bundle"), spec=bundlemod.default_spec("runc"),
                               template=rootfs_template, edit=edit)
    runc = Runner(shutil.which("runc"), ctx.path("runc-root"))
    seen = {}
    for name, runner in (("runc", runc), ("runh", runh)):
        cid = ctx.new_id(name)
        try:
            assert runner("run", "-d", "--bundle", b, cid).returncode == 0
            r = runner("exec", cid, "sh", "-c", CAPS)
            assert r.returncode == 0, f"{name}: {r.stderr}"
            init = runner("exec", cid, "cat", "/proc/1/status")
            seen[name] = (_caps(r.stdout), _caps(init.stdout))
        finally:
            runner("delete", "--force", cid)
    assert seen["runh"] == seen["runc"]
    assert _zero(seen["runc"][0]) and _zero(seen["runc"][1])
