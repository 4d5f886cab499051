"""linux.netDevices with a dummy interface, in the guest (this host's kernel has no dummy
link type): one vm-run runs tests/netdev_checks.py; each CHECK line becomes a test."""

import pytest

from guest import guest_result

pytestmark = [pytest.mark.guest]

CHECKS = ["dummy_moved", "dummy_seen_inside", "missing_refused"]


@pytest.mark.parametrize("name", CHECKS)
def test_net_devices_in_guest(name):
    guest_result("tests/netdev_checks.py", name, timeout=300)
