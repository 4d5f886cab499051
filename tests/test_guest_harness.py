"""tests/guest.py's own harness: a guest that hangs is stopped after a silence, with
everything it started, and booted once more. Fake `vm-run` scripts stand in for the guest."""

import os
import time

import guest


def _fake_vm(tmp_path, body):
    vm = tmp_path / "vm-run"
    vm.write_text("#!/bin/sh\n" + body)
    vm.chmod(0o755)
    return str(vm)


def _alive(pid_file):
    try:
        pid = int(open(pid_file).read())
    except (OSError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_silent_guest_is_stopped_with_what_it_started(tmp_path):
    # `timeout` puts its command in a process group of its own, as vm-run's qemu is.
    pid_file = tmp_path / "sleep.pid"
    vm = _fake_vm(tmp_path, f"echo booted\ntimeout 300 sh -c 'echo $$ > {pid_file}; exec sleep 300'\n")
    t0 = time.monotonic()
    out, why = guest.boot_once([vm], timeout=200, silence=1)
    assert time.monotonic() - t0 < 30
    assert out.startswith("booted") and why == "no output for 1 s"
    assert pid_file.exists() and not _alive(pid_file)


def test_guest_past_its_timeout_is_stopped(tmp_path):
    vm = _fake_vm(tmp_path, "while :; do echo tick; sleep 0.2; done\n")
    out, why = guest.boot_once([vm], timeout=2, silence=1)
    assert "tick" in out and why == "no status after 2 s"


def test_hung_guest_is_booted_again(tmp_path, monkeypatch):
    count = tmp_path / "boots"
    vm = _fake_vm(tmp_path, f"echo x >> {count}\n"
                            f"if [ $(wc -l < {count}) -eq 1 ]; then exec sleep 300; fi\n"
                            "echo 'CHECK one PASS 0.1 fine'\n")
    monkeypatch.setattr(guest, "vm_run_path", lambda: vm)
    monkeypatch.setattr(guest, "_cache", {})
    r = guest.run_checks("tests/none.py", timeout=100, silence=1)
    assert count.read_text().count("x") == 2
    assert r["lines"] == {"one": ("PASS", "0.1 fine")}
    assert "boot 1 stopped: no output for 1 s" in r["out"]


def test_guest_that_ends_is_read_to_the_end(tmp_path):
    vm = _fake_vm(tmp_path, "echo 'CHECK a PASS 1'; sleep 0.5; echo 'CHECK b FAIL 2 why'; exit 3\n")
    out, why = guest.boot_once([vm], timeout=100, silence=5)
    assert why is None and out.splitlines() == ["CHECK a PASS 1", "CHECK b FAIL 2 why"]
