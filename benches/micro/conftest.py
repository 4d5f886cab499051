"""pytest-benchmark suite for runh's in-process hot path (`make bench-micro`).

Not under tests/ (pyproject's testpaths), so the normal test run never collects it. Each
benchmark times one in-process step of create/run: config load and validation, state
read and write, cgroup path and resource planning, seccomp compile and cached load, and
the argv parsers (Python's, and the native launcher's through `_core.launcher_parse`).
Whole-process figures (interpreter start, clone, exec) stay in `runh bench`.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import pytest  # noqa: E402


def pod_resources():
    """linux.resources as a Kubernetes pod's container gets them from containerd."""
    return {
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 136, "access": "rwm"}],
        "memory": {"limit": 268435456, "swap": 268435456},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1"},
        "pids": {"limit": 1024},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "unified": {"memory.oom.group": "1"},
    }


def docker_seccomp():
    """Docker's default profile (what engines send), else the bench's allowlist profile."""
    from runh.jsonio import load_file

    path = os.path.join(HERE, "..", "..", "tests", "fixtures", "seccomp_default_amd64.json")
    if os.path.exists(path):
        profile = load_file(path)
        profile.pop("_comment", None)
        return profile
    from runh.bench import bundle

    return bundle.seccomp_profile()[0]


@pytest.fixture(scope="session")
def configs(tmp_path_factory):
    """Two bundles' configs: `runh bench`'s (runh spec's defaults, /bin/true) and a pod's
    (the same with linux.resources and the Docker-like seccomp profile of the bench)."""
    from runh.bench import bundle
    from runh.jsonio import dumps

    work = tmp_path_factory.mktemp("micro")
    rootfs = work / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    out = {}
    for name in ("plain", "pod"):
        config = bundle.base_config(str(rootfs), ["/bin/true"])
        if name == "pod":
            config["linux"]["resources"] = pod_resources()
            config["linux"]["seccomp"] = docker_seccomp()
            config["annotations"] = {f"io.kubernetes.cri.{i}": "x" * 40 for i in range(8)}
        d = work / name
        d.mkdir()
        (d / "config.json").write_text(dumps(config))
        out[name] = (str(d), config)
    return out
