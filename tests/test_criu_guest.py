"""Checkpoint and restore for real, in the guest (CRIU 3.17 cannot run on the host's
kernel; the guest's Debian 6.1 runs it): one vm-run runs tests/criu_checks.py, which
prints one CHECK line per check; each becomes a test here. `pytest -m criu` runs them
alone. About 10 minutes: under the guest's software emulation each CRIU dump or restore
takes 15-30 s and each podman call 20-40 s (both measured in the CHECK lines).

- dump_restore: pre-dump, dump, restore under the same id (the count goes on), state,
  cgroup, mountpoints, exec, kill and delete of the restored container;
- runc_diff: the same sequence on the same bundle through runc 1.1.5, compared;
- leave_running_tty: --leave-running, a restore into a new id beside the original, a
  terminal through the console socket (CRIU's new pty master), exec into the copy;
- podman: `podman container checkpoint` and `restore` with runh as the OCI runtime.
"""

import pytest

from guest import guest_result

pytestmark = [pytest.mark.guest, pytest.mark.criu]

CHECKS = ["dump_restore", "runc_diff", "leave_running_tty", "podman"]


@pytest.mark.parametrize("name", CHECKS)
def test_criu_in_guest(name):
    guest_result("tests/criu_checks.py", name, timeout=1500)
