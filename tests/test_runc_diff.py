"""Differential test: the same bundle under Debian's runc and under runh; what the
container sees must be the same, except for the differences listed (with reasons) in
ALLOWED below."""

import os
import shutil

import pytest

import bundle as bundlemod
from conftest import Runner

pytestmark = [pytest.mark.runc,
              pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed")]

PROBE = r"""
echo "== id"; id
echo "== status"; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
echo "== hostname"; hostname
echo "== limits"; cat /proc/self/limits
echo "== env"; env | sort
echo "== cwd"; pwd
echo "== umask"; umask
echo "== oom"; cat /proc/self/oom_score_adj
echo "== dev"; ls -l /dev | awk '{print $1, $3, $4, $5, $6, $NF}'
echo "== mounts"; cat /proc/self/mountinfo
exit 0
"""

# Differences that are allowed, each with its reason. Keys are sections; values are
# predicates on a normalised line that is present in only one of the two outputs.
ALLOWED = {
    # On this hybrid host both put a tmpfs at /sys/fs/cgroup with one v1 cgroup mount per
    # controller under it. runc 1.1.5 leaves that tmpfs read-write although the cgroup
    # mount asks for "ro"; runh makes it read-only as asked. Only the tmpfs line may differ;
    # the per-controller mounts must match.
    "mounts": [lambda line: line.startswith("/sys/fs/cgroup tmpfs ")],
}


def _sections(text):
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            cur = line[3:].strip()
            out[cur] = []
        elif cur:
            out[cur].append(line.rstrip())
    return out


def _norm_mounts(lines):
    """mountinfo -> 'mountpoint fstype opts super-opts', ids and peer groups dropped."""
    out = []
    for line in lines:
        f = line.split()
        if "-" not in f:
            continue
        sep = f.index("-")
        mopts = ",".join(sorted(f[5].split(",")))
        sopts = ",".join(sorted(f[sep + 3].split(",")))
        out.append(f"{f[4]} {f[sep + 1]} {mopts} {sopts}")
    return sorted(out)


def _normalise(sections):
    s = dict(sections)
    s["mounts"] = _norm_mounts(s.get("mounts", []))
    # ls -l /dev: the date columns are gone already; keep sorted for a stable compare.
    s["dev"] = sorted(l for l in s.get("dev", []) if not l.startswith("total"))
    return s


def _run(runner, ctx, bundle):
    cid = ctx.new_id(os.path.basename(runner.path))
    try:
        r = runner("run", "--bundle", bundle, cid)
    finally:
        runner("delete", "--force", cid)
    assert r.returncode == 0, f"{runner.path}: {r.stderr}"
    return _normalise(_sections(r.stdout))


def _edit_default(c):
    c["hostname"] = "difftest"


def _edit_custom(c):
    _edit_default(c)
    c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 100]}
    c["process"]["env"] = ["PATH=/bin:/usr/bin", "FOO=bar", "HOME=/tmp"]
    c["process"]["cwd"] = "/tmp"
    c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
                               {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600}]
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    c["process"]["capabilities"] = {"bounding": caps, "effective": caps[:2],
                                    "permitted": caps, "inheritable": caps[1:],
                                    "ambient": ["CAP_NET_BIND_SERVICE"]}
    c["process"]["oomScoreAdj"] = 100
    c["process"]["noNewPrivileges"] = False
    c["linux"]["namespaces"].append({"type": "cgroup"})


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_same_view_as_runc(runh, ctx, rootfs_template, variant):
    edit = {"default": _edit_default, "custom": _edit_custom}[variant]

    def full_edit(c):
        edit(c)
        c["process"]["args"] = ["/bin/sh", "-c", PROBE]
    # runc's default spec for both, so that only the runtimes differ.
    b = bundlemod.build_bundle(ctx.path("bundle"), spec=bundlemod.default_spec("runc"),
                               template=rootfs_template, edit=full_edit)
    runc = Runner(shutil.which("runc"), ctx.path("runc-root"))
    want = _run(runc, ctx, b)
    got = _run(runh, ctx, b)

    problems = []
    for section in sorted(set(want) | set(got)):
        w, g = want.get(section, []), got.get(section, [])
        allowed = ALLOWED.get(section, [])
        only_runc = [l for l in w if l not in g and not any(a(l) for a in allowed)]
        only_runh = [l for l in g if l not in w and not any(a(l) for a in allowed)]
        if only_runc or only_runh:
            problems.append(f"[{section}]\n  runc only: {only_runc}\n  runh only: {only_runh}")
    assert not problems, "\n".join(problems)
