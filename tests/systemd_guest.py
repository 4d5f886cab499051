"""A real systemd for the systemd cgroup driver's tests, inside the guest (../shared/vm/vm-run).

The guest's PID 1 is vm-run's busybox init, so systemd (Debian 12's 252, from this
machine's /) runs as PID 1 of a new pid and mount namespace, with its own /proc and a
tmpfs /run:

    unshare -p -f -m --propagation private sh -c \
        'mount -t proc proc /proc; mount -t tmpfs tmpfs /run; exec /lib/systemd/systemd --system'

It boots to basic.target (sockets, dbus.socket among them; not multi-user.target, so that
services installed on this machine, containerd's for one, are not started), which takes
about 30 s under emulation; "degraded" (a host unit that cannot start here) is fine. systemd refuses clients outside its pid
namespace, so everything that talks to it (systemctl, runh, runc, containerd, podman)
runs through `nsenter -t <its pid> -p -m`.

    python tests/systemd_guest.py CMD [ARG...]

boots it, runs CMD inside both namespaces (with RUNH_SYSTEMD_GUEST=1 in its environment)
and exits
with CMD's status; tests/test_systemd_guest.py runs tests/systemd_checks.py this way, in
one guest boot. `boot()`, `enter()` and `stop()` are the same steps for other scripts.
"""
import os
import subprocess
import sys
import time

SYSTEMD = "/lib/systemd/systemd"


def _find(cmdline):
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[:2] == cmdline:
                        return int(d)
            except OSError:
                pass
    return None


def enter(pid, cwd=None):
    """The argv prefix that runs a command in systemd's pid and mount namespaces (in cwd:
    nsenter would start it in the target's)."""
    return ["nsenter", "-t", str(pid), "-p", "-m", f"--wd={cwd or os.getcwd()}"]


def boot(timeout=300, log="/tmp/systemd-guest.log"):
    """Start systemd in a new pid+mount namespace; its pid (in this namespace) once
    `systemctl is-system-running` says running or degraded."""
    t0 = time.time()
    with open(log, "w") as out:
        unshare = subprocess.Popen(
            ["unshare", "-p", "-f", "-m", "--propagation", "private", "sh", "-c",
             f"mount -t proc proc /proc && mount -t tmpfs tmpfs /run && "
             f"exec {SYSTEMD} --system --unit=basic.target --show-status=0 --log-target=kmsg"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    pid, status, said = None, "", t0
    while time.time() - t0 < timeout:
        if unshare.poll() is not None:
            raise RuntimeError(f"systemd exited ({unshare.returncode}); see {log}")
        pid = pid or _find([SYSTEMD.encode(), b"--system"])
        if pid:
            try:
                r = subprocess.run(enter(pid) + ["systemctl", "is-system-running"],
                                   capture_output=True, text=True, timeout=60)
                status = r.stdout.strip()
            except subprocess.TimeoutExpired:  # a busy systemd: ask again
                status = "no answer"
            if status in ("running", "degraded"):
                print(f"SYSTEMD pid={pid} {status} after {time.time() - t0:.1f}s", flush=True)
                return pid
        if time.time() - said > 30:  # a line now and then: the host reads silence as a hang
            said = time.time()
            print(f"SYSTEMD booting: {status or 'no pid yet'} after {said - t0:.0f}s", flush=True)
        time.sleep(1)
    if pid:
        stop(pid)
    else:
        unshare.kill()
    unshare.wait()
    raise RuntimeError(f"systemd not up after {timeout}s (state {status!r}); see {log}")


def stop(pid):
    """Power systemd's namespace off: SIGKILL to its PID 1 ends every process in it."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def main(argv):
    try:
        pid = boot()
    except RuntimeError as e:  # once more: emulation stalls now and then
        print(f"SYSTEMD {e}; booting again", flush=True)
        pid = boot()
    try:
        env = dict(os.environ, RUNH_SYSTEMD_GUEST="1")
        return subprocess.run(enter(pid) + argv, env=env).returncode
    finally:
        stop(pid)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
