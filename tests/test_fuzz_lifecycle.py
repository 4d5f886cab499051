"""Fuzzing create/run/delete with hypothesis (issue 10, must-show 3): mutated configs
and mutated command lines. Each example either gives a container that `delete --force`
removes, or fails with one line (`runh: ...`, no traceback, no panic); either way
nothing of it is left (processes, cgroups, mounts, state dirs), nothing appears in or
under the canary host directory that symlinks in the rootfs point at, and the host's
sysctls and cgroup tree are as they were.

Configs: the busybox bundle's config with 1-4 edits each: a value swapped for one of
another type (null, bools, 0/-1/2^31/2^63/2^64/-2^64, floats, odd strings: "", NUL,
newline, "..", 5000 chars, non-ASCII; lists, objects), a field dropped, or a targeted
edit: cgroupsPath with ".." that climbs out, relative and absolute; cwd, mount
destinations, masked/readonly paths and device paths through ".." and through symlinks
in the rootfs (to "/", to "../../..", to the host's canary dir); huge and negative
resources; sysctls (namespaced keys, and keys that are paths). Command lines: ids
(invalid, long, control characters, duplicates), and create's flags with odd values
(--pid-file, --console-socket, --pidfd-socket, --preserve-fds, --bundle, --log,
--log-format, --root), through `create` and `run`.

Kept out on purpose, because a fault would reach the shared host rather than fail a
test: values that resolve to a populated cgroup (the root or the caller's: delete
--force would signal everything there; test_state_security checks that such a cgroup
is refused), sysctls together with fewer namespaces or with non-namespaced keys (runh's
own namespace check is sec-core's tests' business), --root and --pid-file outside the
test's directory, rootfsPropagation, hooks.

Counts: RUNH_FUZZ_CONFIGS (default 200) and RUNH_FUZZ_ARGV (default 100) examples, about
a minute together here, which is what CI runs; the full run is RUNH_FUZZ_CONFIGS=1000
RUNH_FUZZ_ARGV=500 (docs/SECURITY.md has its figures). Derandomized (the same examples
on every run) unless RUNH_FUZZ_RANDOM=1. RUNH_FUZZ_SHOW=<text> prints each example whose
error contains the text. Each test prints how often each outcome came.

What it found when it was written, fixed since: --preserve-fds 2147483648 (a traceback:
the core's int overflowed), linux.resources.memory.limit 0 (written as a 0-byte limit,
which OOM-killed the init; runc reads 0 as unset)."""

import json
import os
import re
import secrets
import shutil
import time

import pytest

from conftest import _reap_containers, find_leftovers
from bundle import build_bundle, write_config

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

N_CONFIGS = int(os.environ.get("RUNH_FUZZ_CONFIGS", "200"))
N_ARGV = int(os.environ.get("RUNH_FUZZ_ARGV", "100"))
RANDOM = bool(os.environ.get("RUNH_FUZZ_RANDOM"))
CG = "/sys/fs/cgroup"
SESSION_TOKEN = re.compile(r"rh[0-9a-f]{6}")

# Sysctls that live in the container's own namespaces (net, ipc, uts): with those
# namespaces kept, writing them cannot change the host's.
SYSCTLS = {"net.ipv4.ip_forward": ["0", "1", "x", "-1", "99999999999"],
           "net.core.somaxconn": ["1", "65535", "-5"],
           "kernel.shmmax": ["1", "18446744073709551615", "x"],
           "kernel.msgmax": ["8192", "-1"],
           "kernel.domainname": ["fuzz", "", "x" * 300],
           "fs.mqueue.queues_max": ["1", "100000000000"],
           "net..x": ["1"], "../../x": ["1"], "kernel/hostname": ["x"], "": ["1"],
           "net.ipv4.conf.all.forwarding": ["1"]}
HOST_SYSCTLS = ["net/ipv4/ip_forward", "net/core/somaxconn", "kernel/shmmax", "kernel/msgmax",
                "kernel/domainname", "kernel/hostname", "fs/mqueue/queues_max", "net/ipv4/conf/all/forwarding",
                "vm/swappiness", "kernel/pid_max"]

ODD = ["", "\x00", "\n", "..", "../..", "/", "/..", "a" * 5000, "é漢🎉", "-1", "null", "{}", " ", "\t/x"]
NUMS = [0, -1, 1, 2 ** 31, -2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64, -2 ** 64, 10 ** 30]
VALUES = st.one_of(
    st.none(), st.booleans(), st.sampled_from(NUMS), st.integers(), st.floats(allow_nan=False),
    st.sampled_from(ODD), st.text(max_size=12),
    st.lists(st.one_of(st.integers(-5, 5), st.sampled_from(ODD), st.none()), max_size=3),
    st.dictionaries(st.sampled_from(["a", "type", "path", "limit", ""]), st.one_of(st.integers(-3, 3), st.text(max_size=4)),
                    max_size=2),
)


@pytest.fixture(scope="module")
def world(rootfs_template, tmp_path_factory):
    """One bundle for all examples (a rootfs costs 0.25 s): symlinks in its rootfs to
    "/", to "../../../../..", and to the canary, a host dir that must stay as it is."""
    token = "rhfz" + secrets.token_hex(3)
    base = os.path.join("/tmp", token)
    os.makedirs(base)
    canary = os.path.join(base, "canary")
    os.makedirs(canary)
    with open(os.path.join(canary, "file"), "w") as f:
        f.write("canary\n")
    b = build_bundle(os.path.join(base, "bundle"), args=["true"], template=rootfs_template)
    rootfs = os.path.join(b, "rootfs")
    for name, target in (("evil-root", "/"), ("evil-up", "../../../../../.."), ("evil-host", canary),
                         ("evil-etc", "/etc")):
        os.symlink(target, os.path.join(rootfs, name))
    with open(os.path.join(b, "config.json")) as f:
        config = json.load(f)
    config["linux"]["resources"] = {"memory": {"limit": 256 << 20}, "pids": {"limit": 100},
                                    "cpu": {"shares": 512}, "devices": config["linux"]["resources"]["devices"]}
    yield {"bundle": b, "config": config, "canary": canary, "base": base}
    shutil.rmtree(base, ignore_errors=True)


def _paths(v, prefix=()):
    """Every JSON path of v (the config), for the swap and drop edits."""
    out = [prefix] if prefix else []
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, prefix + (i,))
    return out


def _targeted(token, canary):
    """(path, value) edits aimed at the defences."""
    up = "../" * 12
    cg = [f"/{token}/fz", f"{token}/../{token}-b", f"{up}..{canary}/cg", f"/../../..{canary}/cg2",
          f"{token}/a/../../{token}-c", f"/{token}/./x//y", f"{token}:x:y"]
    dests = ["/evil-root/tmp/fz", "/evil-up/etc/fz", "/evil-host", "/evil-host/sub", "../../..", "/proc/../..",
             "relative/dir", "/dev/../../fz", "/evil-etc/fz", "/", "/sys/../evil-host"]
    mounts = [{"destination": d, "type": t, "source": s, "options": o}
              for d in dests
              for t, s, o in (("tmpfs", "tmpfs", ["size=64k"]), ("bind", canary, ["rbind", "ro"]))]
    res = [{"memory": {"limit": n}} for n in NUMS] + [{"pids": {"limit": n}} for n in NUMS] + \
          [{"cpu": {"shares": n, "quota": n, "period": 100000}} for n in NUMS[:6]] + \
          [{"hugepageLimits": [{"pageSize": p, "limit": 1 << 21}]} for p in ("2MB", "../x", "a/b", "", "2MB/../../x")] + \
          [{"unified": {k: "1"}} for k in ("memory.max", "../x", "cgroup.procs", "a/b")] + \
          [{"blockIO": {"weight": n}} for n in (-1, 0, 10, 1001, 2 ** 16)]
    devs = [{"path": p, "type": "c", "major": 1, "minor": 3}
            for p in ("/dev/fz0", "/dev/../fz1", "/evil-root/fz2", "/evil-host/fz3", "fz4", "/evil-up/fz5")]
    return st.one_of(
        st.tuples(st.just(("linux", "cgroupsPath")), st.sampled_from(cg)),
        st.tuples(st.just(("process", "cwd")), st.sampled_from(["/..", "/../../..", "tmp", "", "/evil-root",
                                                               "/evil-up/tmp", "/evil-host", "/nonexistent"])),
        st.tuples(st.just(("mounts", "+")), st.sampled_from(mounts)),
        st.tuples(st.sampled_from([("linux", "maskedPaths", "+"), ("linux", "readonlyPaths", "+")]),
                  st.sampled_from(["/evil-root", "/../../..", "/evil-etc/passwd", "../x", "/evil-host", "/evil-up"])),
        st.tuples(st.just(("linux", "resources", "=")), st.sampled_from(res)),
        st.tuples(st.just(("linux", "devices", "+")), st.sampled_from(devs)),
        st.tuples(st.just(("linux", "sysctl")),
                  st.dictionaries(st.sampled_from(sorted(SYSCTLS)), st.sampled_from(["1", "x"]), min_size=1, max_size=2)
                  .map(lambda d: {k: (SYSCTLS[k][0] if v == "1" else SYSCTLS[k][-1]) for k, v in d.items()})),
        st.tuples(st.just(("process", "env", "+")), st.sampled_from(["NOEQ", "=x", "A=\n", "A=" + "x" * 5000])),
        # (Not "/" nor a symlink out: that would make a host directory the rootfs, and
        # its mount points directories of the host.)
        st.tuples(st.just(("root", "path")), st.sampled_from(["", "rootfs/../rootfs", "/nonexistent", "rootfs/nope"])),
    )


def _edits(config, token, canary):
    paths = [p for p in _paths(config) if p[:2] not in (("linux", "rootfsPropagation"), ("root", "path"))]
    swap = st.tuples(st.just("swap"), st.sampled_from(paths), VALUES)
    drop = st.tuples(st.just("drop"), st.sampled_from(paths), st.none())
    target = _targeted(token, canary).map(lambda pv: ("set", pv[0], pv[1]))
    return st.lists(st.one_of(swap, drop, target, target), min_size=1, max_size=4)


def _apply(config, edits):
    c = json.loads(json.dumps(config))
    for kind, path, value in edits:
        parent, ok = c, True
        for k in path[:-1]:
            try:
                parent = parent[k]
            except (KeyError, IndexError, TypeError):
                ok = False
                break
        if not ok:
            continue
        last = path[-1]
        try:
            if kind == "drop":
                del parent[last]
            elif last == "+":
                if isinstance(parent, list):
                    parent.append(value)
            elif last == "=":
                if isinstance(parent, dict):
                    parent.clear()
                    parent.update(value)
            else:
                parent[last] = value
        except (KeyError, IndexError, TypeError):
            pass
    linux = c.get("linux") if isinstance(c, dict) else None
    if isinstance(linux, dict):
        if linux.get("sysctl"):
            # Sysctls only with the namespaces they live in (see the module doc).
            linux["namespaces"] = config["linux"]["namespaces"]
        linux.pop("rootfsPropagation", None)
        # Never a cgroup that holds others' processes (see the module doc).
        if isinstance(linux.get("cgroupsPath"), str) and _populated_cgroup(linux["cgroupsPath"]):
            linux.pop("cgroupsPath")
    if isinstance(c, dict):
        c.pop("hooks", None)
    return c


def _populated_cgroup(path):
    """Would this cgroupsPath name an existing cgroup (the root, the caller's own)?"""
    from runh import cgroups

    try:
        m = cgroups.manager_for({"cgroupsPath": path}, "x")
    except Exception:
        return False
    return any(os.path.isdir(d) for d in m._dirs())


def _host_sysctls():
    out = {}
    for k in HOST_SYSCTLS:
        try:
            with open(f"/proc/sys/{k}") as f:
                out[k] = f.read()
        except OSError:
            pass
    return out


def _host_cgroups():
    """Every cgroup directory but those of the test sessions (any session's token)."""
    out = set()
    for e in os.listdir(CG):
        top = os.path.join(CG, e)
        if os.path.islink(top):
            continue
        for d, dirs, _ in os.walk(top):
            dirs[:] = [x for x in dirs if not SESSION_TOKEN.search(x)]
            out.add(d)
    return out


class Checker:
    """One test's examples: run, judge, and look for what was left."""

    def __init__(self, runh, ctx, world):
        self.runh, self.ctx, self.world = runh, ctx, world
        self.n = 0
        self.outcomes = {}

    def nothing_left(self, what):
        deadline = time.time() + 3
        while True:
            _reap_containers()
            found = find_leftovers(self.ctx.token, self.ctx.root)
            if not found or time.time() > deadline:
                break
            time.sleep(0.05)
        canary = self.world["canary"]
        assert sorted(os.listdir(canary)) == ["file"], f"{what}: canary dir changed: {os.listdir(canary)}"
        with open(os.path.join(canary, "file")) as f:
            assert f.read() == "canary\n", what
        assert not found, f"{what}: left {found}"

    def judge(self, r, cid, what, root=None):
        """Success: delete --force removes it; failure: one line, no traceback."""
        self.n += 1
        if r.returncode == 0:
            d = self.runh("delete", "--force", cid, root=root)
            assert d.returncode == 0 or "does not exist" in d.stderr, f"{what}: delete: {d.stderr}"
            kind = "container"
        else:
            # (--debug adds its debug and timing lines; the error is still one line.)
            err = "".join(line for line in r.stderr.splitlines(True)
                          if not line.startswith(("runh timing:", 'time="', '{"level":"debug"')))
            assert "Traceback" not in err and "panicked" not in err, f"{what}: {err}"
            assert err.startswith("runh: ") and err.count("\n") == 1, f"{what}: exit {r.returncode}: {err!r}"
            kind = "error: " + re.sub(r"[\d/].*", "", err[6:46])
            if os.environ.get("RUNH_FUZZ_SHOW") and os.environ["RUNH_FUZZ_SHOW"] in err:
                print(f"\n{what}\n  -> {err}")
        self.outcomes[kind] = self.outcomes.get(kind, 0) + 1

    def report(self, title):
        top = sorted(self.outcomes.items(), key=lambda kv: -kv[1])[:12]
        print(f"\n{title}: {self.n} examples; most frequent outcomes:")
        for k, v in top:
            print(f"  {v:5d}  {k}")


_state = {}


@pytest.fixture
def checker(runh, ctx, world):
    c = _state.setdefault("checker", Checker(runh, ctx, world))
    yield c


@pytest.fixture(autouse=True)
def _one_checker_per_call():
    yield
    _state.clear()


def _settings(n):
    return settings(max_examples=n, deadline=None, derandomize=not RANDOM, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


def test_fuzzed_configs_give_a_container_or_one_line(runh, ctx, world, checker):
    before = (_host_sysctls(), _host_cgroups())

    @_settings(N_CONFIGS)
    @given(data=st.data())
    def one(data):
        edits = data.draw(_edits(world["config"], ctx.token, world["canary"]))
        config = _apply(world["config"], edits)
        write_config(world["bundle"], config)
        cid = ctx.new_id("fz")
        verb = data.draw(st.sampled_from(["create", "create", "run"]))
        args = ["run", "--detach"] if verb == "run" else ["create"]
        r = runh(*args, "--bundle", world["bundle"], cid, timeout=60)
        what = f"{verb} with {edits!r}"
        checker.judge(r, cid, what)
        checker.nothing_left(what)

    one()
    checker.report("fuzzed configs")
    assert _host_sysctls() == before[0], "host sysctls changed"
    new = _host_cgroups() - before[1]
    assert not new, f"new host cgroups: {sorted(new)[:10]}"


def test_fuzzed_command_lines_give_a_container_or_one_line(runh, ctx, world, checker, make_bundle):
    b = make_bundle(args=["true"])
    d = ctx.dir
    # (A valid id always carries the token: its cgroup, named after it, is found if left.)
    ids = st.one_of(st.builds(lambda: ctx.new_id("fa")), st.sampled_from(
        ["", ".", "..", "a/b", ctx.token + "x" * 280, "bad\nid", "-x", "--", "é", f"{ctx.token}-dup"]))
    flag = st.one_of(
        st.tuples(st.just("--pid-file"), st.sampled_from([f"{d}/pid", f"{d}/no/dir/pid", d, "", "rel-pid", f"{d}/pid\n"])),
        st.tuples(st.just("--console-socket"), st.sampled_from([f"{d}/nosock", d, "", "x" * 200])),
        st.tuples(st.just("--pidfd-socket"), st.sampled_from([f"{d}/nosock", ""])),
        st.tuples(st.just("--preserve-fds"), st.sampled_from(["-1", "0", "1", "2147483648", "x", ""])),
        st.tuples(st.just("--bundle"), st.sampled_from([b, "", "/nonexistent", d, "bundle-rel", b + "/"])),
        st.tuples(st.sampled_from(["--no-pivot", "--no-new-keyring", "--detach", "-d", "--bogus"]), st.none()),
    )
    glob = st.one_of(
        st.tuples(st.just("--log"), st.sampled_from([f"{d}/log", d, ""])),
        st.tuples(st.just("--log-format"), st.sampled_from(["text", "json", "xml", ""])),
        st.tuples(st.just("--root"), st.sampled_from([ctx.root, ctx.root + "/", "root", f"{d}/other-root/x"])),
        st.tuples(st.sampled_from(["--debug", "--systemd-cgroup"]), st.none()),
    )

    def flat(pairs, equals):
        out = []
        for k, v in pairs:
            out += [k] if v is None else ([f"{k}={v}"] if equals else [k, v])
        return out

    @_settings(N_ARGV)
    @given(verb=st.sampled_from(["create", "run"]), cid=ids, flags=st.lists(flag, max_size=4),
           globs=st.lists(glob, max_size=2), equals=st.booleans(), with_bundle=st.sampled_from([True, True, True, False]))
    def one(verb, cid, flags, globs, equals, with_bundle):
        argv = ["--root", ctx.root] + flat(globs, equals) + [verb] + (["--detach"] if verb == "run" else []) + \
            (["--bundle", b] if with_bundle else []) + flat(flags, equals) + [cid]
        root = next((v for k, v in reversed(globs) if k == "--root" and v), ctx.root)
        root = root if root.startswith("/") else os.path.join(d, root)
        res = _run(runh, argv, cwd=d)
        what = f"runh {argv!r}"
        if res.returncode == 0:
            checker.judge(res, cid, what, root=root)
        else:
            checker.judge(res, cid, what)
        for extra in ("other-root/x", "root"):
            p = os.path.join(d, extra)
            if os.path.isdir(p) and p != ctx.root:
                for e in os.listdir(p):
                    runh("delete", "--force", e, root=p)
        checker.nothing_left(what)

    one()
    checker.report("fuzzed command lines")


def _run(runh, argv, cwd):
    """runh with exactly argv (no --root of the fixture's), output through files."""
    import subprocess
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run([runh.path, *argv], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                           cwd=cwd, timeout=60)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return p
