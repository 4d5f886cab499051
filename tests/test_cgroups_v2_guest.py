"""cgroup v2 proven in the pure-v2 guest through runh itself: one vm-run runs
tests/cgroupv2_checks.py, which drives real runh containers (run, create/start, update,
pause/resume, events, kill --all, delete) on busybox bundles and prints one CHECK line per
check; each becomes a test here (`pytest -m cgroupv2` runs them alone; ~2-3 min, most of
it Python start-up in the emulated guest)."""

import pytest

from guest import guest_result

pytestmark = [pytest.mark.guest, pytest.mark.cgroupv2]

CHECKS = ["memory_oom", "pids_max", "cpu_max", "cpuset", "freeze", "kill_all", "kill_all_stopped",
          "devices", "update_memory", "stats_move", "features", "exec_cgroup", "path_escape", "foreign_cgroup",
          "unified_core_files", "unified_absent_controller", "killed_create", "parent_cgroups",
          "cgroupns_bind_fallback", "limits_before_hooks"]


@pytest.mark.parametrize("name", CHECKS)
def test_v2_in_guest(name):
    guest_result("tests/cgroupv2_checks.py", name)
