"""The systemd cgroup driver against a real systemd (252, Debian 12) in the pure cgroup v2
guest: one vm-run boots systemd in a pid+mount namespace (tests/systemd_guest.py) and runs
tests/systemd_checks.py inside it, which drives runh --systemd-cgroup (and runc 1.1.5 for
the differential check) and prints one CHECK line per check; each becomes a test here
(`pytest -m systemd` runs them alone: one boot, a few minutes)."""

import pytest

from guest import guest_result

pytestmark = [pytest.mark.guest, pytest.mark.systemd]

SCRIPT = "tests/systemd_guest.py .venv/bin/python -u tests/systemd_checks.py"

CHECKS = ["placement", "properties", "ps_events", "pause_resume", "update", "exec", "kill_all",
          "delete", "memory_oom", "pids_max", "slice_unit", "bad_paths", "leftover_unit",
          "killed_create", "killed_anywhere", "foreign_unit", "runc_diff", "containerd_ctr", "containerd_cri", "podman"]


@pytest.mark.parametrize("name", CHECKS)
def test_systemd_in_guest(name):
    guest_result(SCRIPT, name, timeout=1200)
