"""One benchmark per in-process step of create/run (see conftest.py)."""
import posix

import pytest

from runh import cgroups, spec
from runh import state as st
from runh.cgroups import base, v1, v2
from runh.jsonio import dumps, loads


# --- config.json: read, parse, validate (spec.load_config: the create path's first step)
@pytest.mark.parametrize("name", ["plain", "pod"])
def test_config_load_validate(benchmark, configs, name):
    bundle, _ = configs[name]
    raw, config = benchmark(spec.load_config, bundle)
    assert config["process"]["args"] == ["/bin/true"]


@pytest.mark.parametrize("name", ["plain", "pod"])
def test_config_validate(benchmark, configs, name):
    """The generated jsonschema check alone (runh._validate) plus runc's extras."""
    benchmark(spec.validate, configs[name][1])


def test_config_parse(benchmark, configs):
    with open(configs["pod"][0] + "/config.json", "rb") as f:
        raw = f.read()
    benchmark(loads, raw)


# --- state: the record create writes (twice), and what every later call reads
def _state(config, cid):
    return {"ociVersion": config["ociVersion"], "id": cid, "pid": 4242, "starttime": 123456,
            "bundle": "/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + "a" * 64,
            "rootfs": "/run/containerd/rootfs", "created": "2026-01-01T00:00:00.000000000Z",
            "owner": "", "annotations": config.get("annotations") or {},
            "cgroup": {"version": 2, "path": "/sys/fs/cgroup/kubepods/pod1/" + cid,
                       "owned": ["/sys/fs/cgroup/kubepods/pod1/" + cid]}}


@pytest.fixture
def root(tmp_path):
    r = str(tmp_path / "root")
    posix.mkdir(r, st.DIR_MODE)
    posix.mkdir(st.join(r, "c1"), st.DIR_MODE)
    return r


def test_state_serialize(benchmark, configs):
    s = _state(configs["pod"][1], "c1")
    benchmark(dumps, s)


@pytest.mark.parametrize("exchange", [False, True], ids=["rename", "exchange"])
def test_state_write_atomic(benchmark, configs, root, exchange):
    """The replace of an existing state.json (create's second write): rename over it, or
    RENAME_EXCHANGE + unlink (what Container._record does)."""
    data = dumps(_state(configs["pod"][1], "c1"))
    path = st.join(st.join(root, "c1"), st.STATE_FILE)
    st.write_atomic(path, data)
    benchmark(st.write_atomic, path, data, exchange=exchange)
    assert sorted(posix.listdir(st.join(root, "c1"))) == [st.STATE_FILE]


def test_state_read(benchmark, configs, root):
    st.write_atomic(st.join(st.join(root, "c1"), st.STATE_FILE), dumps(_state(configs["pod"][1], "c1")))
    s = benchmark(st.read_state, root, "c1")
    assert s["pid"] == 4242


def test_state_lock(benchmark, root):
    sdir = st.join(root, "c1")

    def lock():
        with st.Lock(sdir):
            pass

    benchmark(lock)


# --- cgroups: where the container's cgroup goes, and the files its limits become
def test_cgroup_path(benchmark, configs):
    linux = dict(configs["pod"][1]["linux"], cgroupsPath="/kubepods/burstable/pod1/c1")

    def plan():
        return cgroups.resolve(cgroups.CGROUP_ROOT, cgroups.inner_path(linux, "c1"))

    assert benchmark(plan) == "/sys/fs/cgroup/kubepods/burstable/pod1/c1"


def test_cgroup_manager_for(benchmark, configs):
    """manager_for: the mode probe (cached), /proc/self/cgroup for relative paths, the
    per-hierarchy directories; no cgroupfs write."""
    linux = configs["pod"][1]["linux"]
    benchmark(cgroups.manager_for, linux, "c1")


def test_cgroup_resources_v2(benchmark, configs):
    res = configs["pod"][1]["linux"]["resources"]
    writes = benchmark(v2.resource_writes, res)
    assert writes


def test_cgroup_resources_v1(benchmark, configs):
    res = dict(configs["pod"][1]["linux"]["resources"])
    del res["unified"]  # v2 only
    benchmark(v1.resource_writes, res)


def test_cgroup_device_rules(benchmark, configs):
    res = configs["pod"][1]["linux"]["resources"]
    benchmark(base.device_rules, res, configs["pod"][1]["linux"].get("devices") or ())


# --- seccomp: the BPF program create sends to init (the core's generator and its cache)
@pytest.fixture(scope="module")
def seccomp_json(configs):
    return dumps(configs["pod"][1]["linux"]["seccomp"]).encode()


def test_seccomp_compile(benchmark, seccomp_json):
    import runh._core as core

    prog = benchmark(core.seccomp_compile, seccomp_json)
    assert len(prog) % 8 == 0


def test_seccomp_cached_load(benchmark, seccomp_json, root):
    """A cache hit (the compile of the first call is not timed): read, verify, return."""
    import runh._core as core

    first = core.seccomp_compile_cached(seccomp_json, root)
    assert benchmark(core.seccomp_compile_cached, seccomp_json, root) == first


# --- argv: the native launcher's parser (in-process through _core), and Python's
# The log is /dev/null: the launcher opens --log before it accepts a call (as runc does,
# a path that cannot be opened is Python's one-line error), and the file must exist.
EXEC_ARGV = ["--root", "/run/containerd/runc/k8s.io", "--log", "/dev/null",
             "--log-format", "json", "exec", "--process", "/tmp/runc-process123", "--detach",
             "--pid-file", "/run/x/pid", "c1"]
CREATE_ARGV = ["--root", "/run/containerd/runc/k8s.io", "--log", "/dev/null",
               "--log-format", "json", "--systemd-cgroup", "create", "--bundle", "/run/x/b",
               "--pid-file", "/run/x/init.pid", "c1"]


def test_launcher_argv_exec(benchmark):
    import runh._core as core

    assert benchmark(core.launcher_parse, EXEC_ARGV) == ("exec", EXEC_ARGV[1], "c1")


def test_launcher_argv_handoff(benchmark):
    """create: the launcher gives up at the command word and hands the argv to Python."""
    import runh._core as core

    assert benchmark(core.launcher_parse, CREATE_ARGV) is None


def test_python_argv_create(benchmark):
    from runh.cli import _argv
    from runh.cli._table import COMMANDS, GLOBAL_OPTIONS
    import runh.cli.create as mod

    assert COMMANDS["create"] == "create"

    def parse():
        g, i = _argv.parse_globals(CREATE_ARGV, GLOBAL_OPTIONS)
        return _argv.parse_command(CREATE_ARGV[i + 1:], mod)

    assert benchmark(parse) is not None
