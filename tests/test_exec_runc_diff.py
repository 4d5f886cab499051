"""Differential test for exec: the same bundle run detached under Debian's runc and under
runh, then the same `exec` (with and without flags) in each; what the exec'd process sees
must be the same: uid/gid/groups, the five capability sets, NoNewPrivs, the seccomp mode,
its cgroup, env and cwd, and which namespaces it shares with the container's init."""

import os
import shutil

import pytest

import bundle as bundlemod
from conftest import Runner
from test_runc_diff import _sections

pytestmark = [pytest.mark.runc,
              pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed")]

PROBE = r"""
echo "== id"; id
echo "== status"; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
echo "== cgroup"; cat /proc/self/cgroup
echo "== ns"; for n in cgroup ipc mnt net pid uts user time; do
  if [ "$(readlink /proc/self/ns/$n)" = "$(readlink /proc/1/ns/$n)" ]; then echo "$n init"; else echo "$n other"; fi
done
echo "== ppid"; echo $PPID
echo "== env"; env | grep -v '^PWD=' | sort
echo "== cwd"; pwd
echo "== umask"; umask
"""

FLAGS = {
    "none": [],
    "flags": ["--user", "1000:1001", "--additional-gids", "5", "--cap", "CAP_SYS_ADMIN",
              "--env", "FOO=bar", "--cwd", "/tmp", "--no-new-privs"],
}


def _edit(c):
    c["process"]["args"] = ["sleep", "1000"]
    c["process"]["noNewPrivileges"] = False
    c["hostname"] = "execdiff"
    ns = c["linux"]["namespaces"]
    if not any(n["type"] == "cgroup" for n in ns):
        ns.append({"type": "cgroup"})
    c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                             "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}]}


@pytest.mark.parametrize("variant", sorted(FLAGS))
def test_exec_same_view_as_runc(runh, ctx, rootfs_template, variant):
    b = bundlemod.build_bundle(ctx.path("bundle"), spec=bundlemod.default_spec("runc"),
                               template=rootfs_template, edit=_edit)
    runc = Runner(shutil.which("runc"), ctx.path("runc-root"))
    views = {}
    for name, runner in (("runc", runc), ("runh", runh)):
        cid = ctx.new_id(name)
        try:
            r = runner("run", "-d", "--bundle", b, cid)
            assert r.returncode == 0, f"{name} run: {r.stderr}"
            r = runner("exec", *FLAGS[variant], cid, "sh", "-c", PROBE)
            assert r.returncode == 0, f"{name} exec: {r.stderr}"
            views[name] = _sections(r.stdout.replace(cid, "ID"))
        finally:
            runner("delete", "--force", cid)
    want, got = views["runc"], views["runh"]
    problems = []
    for section in sorted(set(want) | set(got)):
        w, g = want.get(section, []), got.get(section, [])
        if w != g:
            problems.append(f"[{section}]\n  runc: {w}\n  runh: {g}")
    assert not problems, "\n".join(problems)
    # and the view is the expected one, not merely the same
    assert got["ppid"] == ["0"]
    if variant == "none":  # (uid 1000 may not readlink init's /proc/1/ns/*)
        assert all(l.endswith(" init") for l in got["ns"]), got["ns"]
    assert "Seccomp:\t2" in got["status"]
