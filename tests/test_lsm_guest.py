"""AppArmor enforced, in the guest (Debian's kernel, AppArmor enabled): one vm-run of
tests/lsm_checks.py, whose checks drive runh, runc 1.1.5 and containerd's CRI plugin on
profiles loaded with apparmor_parser; each CHECK line becomes a test here
(`pytest -m lsm` runs them alone)."""

import pytest

from guest import guest_result

pytestmark = [pytest.mark.guest, pytest.mark.lsm]

CHECKS = ["features", "runh_native", "runh_python", "runc_same", "init_unconfined_until_start",
          "missing_profile", "seccomp_and_nnp", "cri_default_profile"]


@pytest.mark.parametrize("name", CHECKS)
def test_apparmor_in_guest(name):
    guest_result("tests/lsm_checks.py", name, timeout=900)
