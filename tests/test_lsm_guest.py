"""AppArmor and SELinux enforced, in the guest (Debian's kernel): one vm-run of
tests/lsm_checks.py with AppArmor (enabled there by default), whose checks drive runh,
runc 1.1.5 and containerd's CRI plugin on profiles loaded with apparmor_parser, and one
boot with "selinux=1 security=selinux enforcing=0" and Debian's selinux-policy-default
loaded (permissive), whose checks read the labels runh and runc give processes, mounts
and the session keyring. Each CHECK line becomes a test here (`pytest -m lsm` runs them
alone, two boots, about 9 minutes)."""

import pytest

from guest import guest_result

pytestmark = [pytest.mark.guest, pytest.mark.lsm]

CHECKS = ["features", "runh_native", "runh_python", "runc_same", "init_unconfined_until_start",
          "missing_profile", "mask_cannot_unconfine", "seccomp_and_nnp", "cri_default_profile"]


@pytest.mark.parametrize("name", CHECKS)
def test_apparmor_in_guest(name):
    guest_result("tests/lsm_checks.py", name, timeout=900)


SELINUX_CHECKS = ["selinux_features", "selinux_labels", "selinux_runc_same"]


@pytest.mark.parametrize("name", SELINUX_CHECKS)
def test_selinux_in_guest(name):
    guest_result("tests/lsm_checks.py --selinux", name, timeout=600,
                 kernel_args="selinux=1 security=selinux enforcing=0")
