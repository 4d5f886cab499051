"""config.json validation: the generated validator is current, agrees with jsonschema, and
invalid configs are reported with their exact JSON path."""

import copy
import os
import random
import sys
import timeit

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))

import jsonschema  # noqa: E402

from runh import spec as rspec  # noqa: E402
from runh.errors import ConfigError  # noqa: E402
from runh.schema import compile as schema_compile  # noqa: E402
from runh.schema import load_schema  # noqa: E402
from runh._validate import validate as fast_validate  # noqa: E402

SCHEMA = load_schema()
JS = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)


def base_config():
    c = rspec.default_spec()
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    c["linux"]["devices"] = [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}]
    c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}
    c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    c["linux"]["resources"]["memory"] = {"limit": 1 << 30}
    c["hooks"] = {"prestart": [{"path": "/bin/true", "timeout": 3}]}
    c["annotations"] = {"a": "b"}
    return c


def test_generated_validator_is_up_to_date():
    with open(schema_compile.OUT_PATH) as f:
        assert f.read() == schema_compile.generate(SCHEMA), \
            "run: python -m runh.schema.compile"


def test_valid_configs_agree():
    for rootless in (False, True):
        c = rspec.default_spec(rootless=rootless)
        assert fast_validate(c) and JS.is_valid(c)
    c = base_config()
    assert fast_validate(c) and JS.is_valid(c)


def test_unknown_properties_and_any_oci_version_accepted():
    c = base_config()
    c["ociVersion"] = "0.0.0-weird+build"
    c["somethingNew"] = {"x": [1, 2]}
    c["process"]["futureField"] = True
    c["linux"]["netDevices"] = {"eth0": {}}
    assert fast_validate(c) and JS.is_valid(c)
    rspec.validate(c)


# (mutation, expected path, expected message fragment)
CASES = [
    (lambda c: c["process"].__setitem__("args", []), "process.args", "must be a non-empty array"),
    (lambda c: c["process"].__setitem__("args", "sh"), "process.args", "must be an array"),
    (lambda c: c["process"]["args"].__setitem__(0, 5), "process.args[0]", "must be a string"),
    (lambda c: c["process"].pop("cwd"), "process.cwd", "is required"),
    (lambda c: c.pop("root"), "root", "is required"),
    (lambda c: c["root"].pop("path"), "root.path", "is required"),
    (lambda c: c.__setitem__("ociVersion", 1), "ociVersion", "must be a string"),
    (lambda c: c["process"]["user"].__setitem__("uid", -1), "process.user.uid", "must be >= 0"),
    (lambda c: c["process"]["user"].__setitem__("uid", True), "process.user.uid", "must be an integer"),
    (lambda c: c["process"]["user"].__setitem__("gid", 1 << 32), "process.user.gid", "must be <= 4294967295"),
    (lambda c: c["process"].__setitem__("terminal", "yes"), "process.terminal", "must be a boolean"),
    (lambda c: c["linux"]["namespaces"][1].__setitem__("type", "net"),
     "linux.namespaces[1].type", "must be one of"),
    (lambda c: c["mounts"][2].pop("destination"), "mounts[2].destination", "is required"),
    (lambda c: c["process"]["rlimits"][0].pop("soft"), "process.rlimits[0].soft", "is required"),
    (lambda c: c["linux"]["sysctl"].__setitem__("kernel.x", 1), "linux.sysctl.kernel.x", "must be a string"),
    (lambda c: c["annotations"].__setitem__("k", 2), "annotations.k", "must be a string"),
    (lambda c: c["linux"]["uidMappings"][0].pop("size"), "linux.uidMappings[0].size", "is required"),
    (lambda c: c["linux"]["devices"][0].__setitem__("type", "x"), "linux.devices[0].type", "must be one of"),
    (lambda c: c["linux"]["seccomp"]["syscalls"][0].__setitem__("names", []),
     "linux.seccomp.syscalls[0].names", "must be a non-empty array"),
    (lambda c: c["linux"]["seccomp"]["syscalls"][0]["args"][0].__setitem__("op", "EQ"),
     "linux.seccomp.syscalls[0].args[0].op", "must be one of"),
    (lambda c: c["hooks"]["prestart"][0].__setitem__("timeout", 0), "hooks.prestart[0].timeout", "must be >= 1"),
    (lambda c: c["linux"].__setitem__("rootfsPropagation", "recursive"), "linux.rootfsPropagation", "must be one of"),
    (lambda c: c["linux"]["resources"]["memory"].__setitem__("limit", "1G"),
     "linux.resources.memory.limit", "must be an integer"),
    (lambda c: c.__setitem__("process", []), "process", "must be an object"),
    (lambda c: c["process"].__setitem__("oomScoreAdj", 1001), "process.oomScoreAdj", "must be <= 1000"),
]


@pytest.mark.parametrize("mutate,path,msg", CASES, ids=[c[1] for c in CASES])
def test_invalid_config_exact_path(mutate, path, msg):
    c = base_config()
    mutate(c)
    assert not fast_validate(c)
    assert not JS.is_valid(c)
    with pytest.raises(ConfigError) as e:
        rspec.validate(c)
    text = str(e.value)
    assert text.startswith(f"config.json: {path}: "), text
    assert msg in text, text


def _walk(obj, path=()):
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, path + (i,))


_REPLACEMENTS = [None, True, False, 0, -1, 1.5, 2.0, 1 << 64, "", "x", [], [1], {}, {"a": 1}]


def test_random_mutations_agree_with_jsonschema():
    """Replace or delete one node at a time; the generated validator must say exactly what
    jsonschema says, for thousands of configs."""
    rng = random.Random(1234)
    base = base_config()
    nodes = [p for p, _ in _walk(base) if p]
    n_invalid = 0
    for _ in range(3000):
        c = copy.deepcopy(base)
        path = rng.choice(nodes)
        parent = c
        for p in path[:-1]:
            parent = parent[p]
        if isinstance(parent, dict) and rng.random() < 0.25:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(_REPLACEMENTS))
        want = JS.is_valid(c)
        assert fast_validate(c) == want, (path, parent)
        n_invalid += not want
        if not want:
            with pytest.raises(ConfigError):
                rspec.validate(c)
    assert n_invalid > 1000  # the mutations do exercise the error side


def test_validator_speed():
    """Not a benchmark gate, a sanity bound: well under a millisecond on runc's default config."""
    c = rspec.default_spec()
    n = 2000
    per_call = timeit.timeit(lambda: fast_validate(c), number=n) / n
    print(f"generated validator: {per_call * 1e6:.1f} us per default config")
    assert per_call < 1e-3


def test_missing_rootfs_named(tmp_path):
    c = rspec.default_spec()
    with pytest.raises(ConfigError) as e:
        rspec.rootfs_path(str(tmp_path), c)
    assert f"rootfs ({tmp_path}/rootfs) does not exist" in str(e.value)
    (tmp_path / "rootfs").mkdir()
    assert rspec.rootfs_path(str(tmp_path), c) == f"{tmp_path}/rootfs"
