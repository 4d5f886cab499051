"""The AppArmor checks, run inside the guest (Debian's kernel, AppArmor enabled) through
runh itself; tests/test_lsm_guest.py starts them with one vm-run (tests/guest.py).

Set-up: securityfs is mounted, and two test profiles are loaded with apparmor_parser
(installed on the host by `make apt-test`; the guest sees the host's / read-only, so the
parser's cache is skipped). Each profile allows everything but reading one file of the
rootfs: `runh-test-deny` denies /etc/runh-secret, `runh-test-other` denies
/etc/runh-other. A process shows its profile in /proc/self/attr/current, and whether the
denial holds by trying both files.

The same scenario runs under runh and under runc 1.1.5 (the differential check): the
init with the config's profile, an exec that inherits it, an exec with --apparmor of the
other profile, an exec of a process JSON naming it, and a container with no profile
(unconfined). containerd's CRI plugin then runs a pod under runh with its default profile
(`cri-containerd.apparmor.d`), through the CRI harness (runh.bench.cri).

Each check prints "CHECK <name> PASS|FAIL|SKIP <seconds> <detail>".
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bundle import build_bundle, build_rootfs  # noqa: E402
from cgroupv2_checks import RUNH, _alarm, reap, timed  # noqa: E402

WORK = "/tmp/rh-lsm"
ROOTS = {"runh": "/run/rh-lsm-runh", "runc": "/run/rh-lsm-runc"}
BINARIES = {"runh": RUNH, "runc": shutil.which("runc") or "/usr/sbin/runc"}
PYTHON = {"RUNH_PYTHON_ONLY": "1"}
DENY, OTHER, MISSING = "runh-test-deny", "runh-test-other", "runh-test-not-loaded"
CHECK_TIMEOUT = 240
CALL_TIMEOUT = 90

PROFILE = """abi <abi/3.0>,
profile {name} flags=(attach_disconnected,mediate_deleted) {{
  file,
  capability,
  network,
  signal,
  ptrace,
  unix,
  mount,
  umount,
  pivot_root,
  deny /etc/{denied} rwklx,
}}
"""

# What a process reports: its profile, then whether each file could be read.
PROBE = ("cat /proc/self/attr/current; echo; "
         "for f in runh-secret runh-other; do if cat /etc/$f >/dev/null 2>&1; "
         "then echo $f=read; else echo $f=denied; fi; done")


def call(rt, *args, env=None, check=True):
    """One call of runtime rt (runh or runc) under its own root; output through files."""
    import tempfile
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        rc = subprocess.run([BINARIES[rt], "--root", ROOTS[rt], *args], stdin=subprocess.DEVNULL,
                            stdout=out, stderr=err, text=True, timeout=CALL_TIMEOUT,
                            env=dict(os.environ, **(env or {}))).returncode
        out.seek(0)
        err.seek(0)
        p = subprocess.CompletedProcess(args, rc, out.read(), err.read())
    if check and rc != 0:
        raise AssertionError(f"{rt} {' '.join(args)}: rc={rc} {p.stderr.strip()[-300:]}")
    return p


_template = []


def make_bundle(name, args, profile=None, edit=None):
    """A busybox bundle whose rootfs has the two probe files, and /out bound to a host
    directory where the probes write."""
    if not _template:
        _template.append(build_rootfs(f"{WORK}/_template"))
    out = f"{WORK}/{name}-out"
    os.makedirs(out, exist_ok=True)

    def ed(c):
        c["process"]["terminal"] = False
        c["linux"].pop("resources", None)
        c["mounts"].append({"destination": "/out", "type": "bind", "source": out, "options": ["rbind"]})
        if profile:
            c["process"]["apparmorProfile"] = profile
        if edit:
            edit(c)

    shutil.rmtree(f"{WORK}/{name}", ignore_errors=True)
    b = build_bundle(f"{WORK}/{name}", args=args, template=_template[0], edit=ed)
    for f in ("runh-secret", "runh-other"):
        with open(f"{b}/rootfs/etc/{f}", "w") as fh:
            fh.write("x\n")
    return b, out


def probe_to(path):
    return ["sh", "-c", f"exec >{path} 2>&1; {PROBE}"]


def observed(path):
    """(profile, {file: read|denied}) from a probe's output file."""
    with open(path) as f:
        lines = [x.strip() for x in f.read().splitlines() if x.strip()]
    files = dict(x.split("=", 1) for x in lines[1:] if "=" in x)
    return lines[0] if lines else "", files


def scenario(rt, tag, env=None):
    """The processes of the differential check under runtime rt; {process: observation}."""
    obs = {}
    cid = f"lsm-{tag}-{rt}"
    b, out = make_bundle(f"{tag}-{rt}-init", probe_to("/out/init"), DENY)
    call(rt, "run", "--bundle", b, cid)
    obs["init"] = observed(f"{out}/init")
    b, out = make_bundle(f"{tag}-{rt}-exec", ["sleep", "1000"], DENY)
    call(rt, "run", "-d", "--bundle", b, cid)
    try:
        call(rt, "exec", cid, *probe_to("/out/exec"), env=env)
        obs["exec"] = observed(f"{out}/exec")
        call(rt, "exec", "--apparmor", OTHER, cid, *probe_to("/out/exec-other"), env=env)
        obs["exec --apparmor"] = observed(f"{out}/exec-other")
        pj = f"{WORK}/{tag}-{rt}-process.json"
        with open(pj, "w") as f:
            json.dump({"args": probe_to("/out/exec-json"), "cwd": "/", "env": ["PATH=/bin"],
                       "apparmorProfile": OTHER, "noNewPrivileges": True}, f)
        call(rt, "exec", "--process", pj, cid, env=env)
        obs["exec process.json (no_new_privs)"] = observed(f"{out}/exec-json")
    finally:
        call(rt, "delete", "--force", cid, check=False)
    b, out = make_bundle(f"{tag}-{rt}-none", probe_to("/out/none"))
    call(rt, "run", "--bundle", b, cid)
    obs["no profile"] = observed(f"{out}/none")
    return obs


EXPECTED = {
    "init": (f"{DENY} (enforce)", {"runh-secret": "denied", "runh-other": "read"}),
    "exec": (f"{DENY} (enforce)", {"runh-secret": "denied", "runh-other": "read"}),
    "exec --apparmor": (f"{OTHER} (enforce)", {"runh-secret": "read", "runh-other": "denied"}),
    "exec process.json (no_new_privs)": (f"{OTHER} (enforce)", {"runh-secret": "read", "runh-other": "denied"}),
    "no profile": ("unconfined", {"runh-secret": "read", "runh-other": "read"}),
}


def compare(obs):
    bad = {k: v for k, v in obs.items() if EXPECTED.get(k) != v}
    return not bad and set(obs) == set(EXPECTED), bad


# ------------------------------------------------------------------------------- checks

def check_features():
    """features reports AppArmor enabled (the kernel's answer here) and SELinux not."""
    f = json.loads(call("runh", "features").stdout)["linux"]
    return f["apparmor"] == {"enabled": True} and f["selinux"] == {"enabled": False}, \
        f"apparmor={f['apparmor']} selinux={f['selinux']}"


_native = {}


def check_runh_native():
    """runh, exec on the native launcher: each process has the profile it asked for, and
    the profile's denial holds; without a profile, unconfined."""
    ok, bad = compare(obs := scenario("runh", "native"))
    _native.update(obs)
    return ok, json.dumps(bad if bad else obs)


def check_runh_python():
    """The same with exec on the Python path (RUNH_PYTHON_ONLY=1)."""
    ok, bad = compare(obs := scenario("runh", "python", env=PYTHON))
    return ok, json.dumps(bad if bad else obs)


def check_runc_same():
    """runc 1.1.5 on the same scenario shows the same profiles and denials as runh."""
    runc = scenario("runc", "diff")
    runh = _native or scenario("runh", "diff")
    return runc == runh and compare(runh)[0], json.dumps({"runc": runc, "runh": runh})


def check_init_unconfined_until_start():
    """runh-init runs no code confined: the parked init (after create) is unconfined and has
    no exec profile set yet; only the container's program after start has it."""
    b, out = make_bundle("parked", probe_to("/out/start"), DENY)
    cid = "lsm-parked"
    pidfile = f"{WORK}/parked.pid"
    call("runh", "create", "--bundle", b, "--pid-file", pidfile, cid)
    try:
        pid = int(open(pidfile).read())
        with open(f"/proc/{pid}/attr/current") as f:
            parked = f.read().strip()
        try:
            with open(f"/proc/{pid}/attr/apparmor/exec") as f:
                pending = f.read().strip()
        except OSError as e:  # EINVAL: no exec profile set
            pending = os.strerror(e.errno)
        call("runh", "start", cid)
        os.waitpid(pid, 0)
        after = observed(f"{out}/start")
    finally:
        call("runh", "delete", "--force", cid, check=False)
    ok = parked == "unconfined" and pending == os.strerror(22) and after == EXPECTED["init"]
    return ok, f"parked init: current={parked!r} exec={pending!r}; after start: {after}"


def check_missing_profile():
    """A profile that is not loaded fails the container with the field and the profile
    named, and nothing is left; runc fails it too."""
    b, out = make_bundle("missing", probe_to("/out/m"), MISSING)
    r = call("runh", "run", "--bundle", b, "lsm-missing", check=False)
    left = os.path.exists(f"{ROOTS['runh']}/lsm-missing")
    c = call("runc", "run", "--bundle", b, "lsm-missing", check=False)
    call("runc", "delete", "--force", "lsm-missing", check=False)
    ran = os.path.exists(f"{out}/m")
    ok = (r.returncode != 0 and "process.apparmorProfile" in r.stderr and MISSING in r.stderr
          and not left and not ran and c.returncode != 0)
    return ok, f"runh rc={r.returncode} {r.stderr.strip()[-200:]!r} left={left} ran={ran}; runc rc={c.returncode}"


def check_mask_cannot_unconfine():
    """The attack: a masked path binds /dev/null over the init's own attr file, so that
    the profile write would vanish and the container run unconfined. The write is
    refused (not procfs) and the program never runs."""
    def ed(c):
        c["linux"]["maskedPaths"] = c["linux"].get("maskedPaths", []) + [
            "/proc/thread-self/attr/apparmor/exec", "/proc/thread-self/attr/exec"]
    b, out = make_bundle("mask", probe_to("/out/m"), DENY, ed)
    r = call("runh", "run", "--bundle", b, "lsm-mask", check=False)
    call("runh", "delete", "--force", "lsm-mask", check=False)
    ran = observed(f"{out}/m") if os.path.exists(f"{out}/m") else None
    ok = r.returncode != 0 and "not on procfs" in r.stderr and ran is None
    return ok, f"rc={r.returncode} {r.stderr.strip()[-200:]!r} ran={ran}"


def check_seccomp_and_nnp():
    """With noNewPrivileges and a seccomp filter the transition still happens (the
    attribute is written before both): the init and an exec show the profile."""
    def ed(c):
        c["process"]["noNewPrivileges"] = True
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]}
    b, out = make_bundle("nnp", ["sh", "-c", f"{probe_to('/out/init')[2]}; sleep 1000"], DENY, ed)
    cid = "lsm-nnp"
    call("runh", "run", "-d", "--bundle", b, cid)
    try:
        deadline = time.time() + 20
        while not os.path.exists(f"{out}/init") and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        init = observed(f"{out}/init")
        call("runh", "exec", cid, *probe_to("/out/exec"))
        ex = observed(f"{out}/exec")
        nnp = call("runh", "exec", cid, "grep", "NoNewPrivs", "/proc/self/status").stdout.split()
    finally:
        call("runh", "delete", "--force", cid, check=False)
    ok = init == EXPECTED["init"] and ex == EXPECTED["exec"] and nnp[-1:] == ["1"]
    return ok, f"init={init} exec={ex} nnp={nnp}"


def check_cri_default_profile():
    """containerd 1.6's CRI plugin, AppArmor on: a pod's container under runh runs with
    the plugin's default profile, and so does an ExecSync into it."""
    try:
        from runh.bench.cri.client import Cri
        from runh.bench.cri.containerd import CRI, Containerd
        from runh.bench.cri.pod import Pod
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError as e:
        return None, f"needs the CRI harness (runh.bench.cri) and grpcio, grpcio-tools: {e}"

    class AppArmorContainerd(Containerd):
        def config(self):
            tables = super().config()
            for name, keys in tables:
                if name == CRI:
                    keys["disable_apparmor"] = False
            return tables

    cd = AppArmorContainerd(f"{WORK}/cri", {"runh": RUNH})
    problems, detail, ok = [], "", False
    try:
        cd.start()
        cri = Cri(cd.socket, cd.dir)
        try:
            pod = Pod(cd, cri, "runh", "lsm", "/rh-lsm-cri-pod", f"{cd.dir}/logs")
            cid = pod.create("c", ["sh", "-c", "cat /proc/self/attr/current; echo; sleep 1000"])
            r = cri.exec_sync(cid, ["cat", "/proc/self/attr/current"], timeout=30)
            ex = r.stdout.decode().strip()
            spec = cri.info(cri.container_status(cid, verbose=True)).get("runtimeSpec", {})
            asked = spec.get("process", {}).get("apparmorProfile")
            deadline = time.time() + 10
            while not pod.log("c").strip() and time.time() < deadline:
                time.sleep(0.2)
            init = pod.log("c").strip()
            want = "cri-containerd.apparmor.d (enforce)"
            ok = asked == "cri-containerd.apparmor.d" and init == want and ex == want
            detail = f"config apparmorProfile={asked!r} container={init!r} exec_sync={ex!r}"
            pod.remove()
        finally:
            cri.close()
    finally:
        problems = cd.stop()
    if problems:
        ok, detail = False, f"{detail} LEFT: {problems}"
    return ok, detail


CHECKS = [check_features, check_runh_native, check_runh_python, check_runc_same,
          check_init_unconfined_until_start, check_missing_profile, check_mask_cannot_unconfine,
          check_seccomp_and_nnp, check_cri_default_profile]


# ------------------------------------------------------------------------------- SELinux
# A boot of the same guest with "selinux=1 security=selinux enforcing=0" (guest.py's
# kernel_args), Debian's selinux-policy-default loaded by load_policy, permissive. The
# policy has no container_t: svirt_t and svirt_image_t stand for a container's labels.

PLABEL = "system_u:system_r:svirt_t:s0:c1,c2"
PLABEL2 = "system_u:system_r:svirt_t:s0:c3,c4"
MLABEL = "system_u:object_r:svirt_image_t:s0:c1,c2"


def _key_labels():
    """The SELinux labels of the keyrings in /proc/keys (keyctl KEYCTL_GET_SECURITY)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    out = set()
    for line in open("/proc/keys"):
        f = line.split()
        if len(f) > 7 and f[7] == "keyring":
            buf = ctypes.create_string_buffer(256)
            if libc.syscall(250, 17, int(f[0], 16), buf, 256) > 0:  # SYS_keyctl, GET_SECURITY
                out.add(buf.value.decode())
    return out


def selinux_observe(rt):
    """What rt makes of selinuxLabel and mountLabel: the labels seen from outside."""
    b, _ = make_bundle(f"se-{rt}", ["sleep", "1000"], edit=lambda c: (
        c["process"].__setitem__("selinuxLabel", PLABEL), c["linux"].__setitem__("mountLabel", MLABEL)))
    cid = f"se-{rt}"
    pidfile = f"{WORK}/se-{rt}.pid"
    call(rt, "run", "-d", "--pid-file", pidfile, "--bundle", b, cid)
    try:
        pid = int(open(pidfile).read())
        obs = {"process": open(f"/proc/{pid}/attr/current").read().strip("\0\n")}
        for line in open(f"/proc/{pid}/mountinfo"):
            point = line.split()[4]
            if point in ("/dev", "/dev/shm", "/dev/pts", "/dev/mqueue", "/proc", "/sys", "/sys/fs/cgroup",
                         "/proc/acpi", "/sys/firmware"):
                ctx = re.search(r'context="[^"]*"', line.split(" - ")[1])
                obs[f"mount {point}"] = ctx.group(0) if ctx else None
        obs["mqueue xattr"] = os.getxattr(f"/proc/{pid}/root/dev/mqueue", "security.selinux").decode().strip("\0")
        obs["session keyring labelled"] = PLABEL in _key_labels()
        obs["exec"] = call(rt, "exec", cid, "cat", "/proc/self/attr/current").stdout.strip("\0\n")
        obs["exec --process-label"] = call(rt, "exec", "--process-label", PLABEL2, cid,
                                           "cat", "/proc/self/attr/current").stdout.strip("\0\n")
    finally:
        call(rt, "delete", "--force", cid, check=False)
    return obs


SE_EXPECTED = {
    "process": PLABEL, "exec": PLABEL, "exec --process-label": PLABEL2,
    "mount /dev": f'context="{MLABEL}"', "mount /dev/shm": f'context="{MLABEL}"',
    "mount /dev/pts": f'context="{MLABEL}"', "mount /dev/mqueue": None, "mount /proc": None,
    "mount /sys": None, "mount /sys/fs/cgroup": None, "mount /proc/acpi": f'context="{MLABEL}"', "mount /sys/firmware": f'context="{MLABEL}"',
    "mqueue xattr": MLABEL, "session keyring labelled": True,
}


def check_selinux_features():
    """features reports SELinux enabled once a policy is loaded (and AppArmor not: it is
    not the running LSM)."""
    f = json.loads(call("runh", "features").stdout)["linux"]
    return f["selinux"] == {"enabled": True} and f["apparmor"] == {"enabled": False}, \
        f"apparmor={f['apparmor']} selinux={f['selinux']}"


_se = {}


def check_selinux_labels():
    """Permissive SELinux: the init and execs have their labels, the mounts that take one
    carry context=mountLabel, mqueue its xattr, the session keyring the process label."""
    _se.update(obs := selinux_observe("runh"))
    bad = {k: (obs.get(k), v) for k, v in SE_EXPECTED.items() if obs.get(k) != v}
    return not bad, json.dumps(bad or obs)


def check_selinux_runc_same():
    """runc 1.1.5 labels the same processes, mounts and keyring the same way."""
    runc = selinux_observe("runc")
    runh = _se or selinux_observe("runh")
    diff = {k: (runc.get(k), runh.get(k)) for k in set(runc) | set(runh) if runc.get(k) != runh.get(k)}
    return not diff, json.dumps(diff or runc)


SELINUX_CHECKS = [check_selinux_features, check_selinux_labels, check_selinux_runc_same]


def setup_selinux():
    """selinuxfs mounted and the policy loaded, permissive; None or why not."""
    if "selinux" not in open("/proc/filesystems").read():
        return "no SELinux in this kernel (boot with selinux=1 security=selinux)"
    subprocess.run(["mount", "-t", "selinuxfs", "selinuxfs", "/sys/fs/selinux"], capture_output=True)
    r = subprocess.run(["load_policy"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"load_policy (make apt-test installs selinux-policy-default): {r.stderr.strip()[-200:]}"
    with open("/sys/fs/selinux/enforce", "w") as f:
        f.write("0")
    return None


def setup():
    """securityfs, and the two test profiles loaded; None or why not."""
    if not os.path.exists("/sys/kernel/security/apparmor"):
        subprocess.run(["mount", "-t", "securityfs", "securityfs", "/sys/kernel/security"], check=False)
    try:
        enabled = open("/sys/module/apparmor/parameters/enabled").read().strip()
    except OSError:
        enabled = "absent"
    if enabled != "Y" or not os.path.exists("/sys/kernel/security/apparmor"):
        return f"AppArmor not enabled in this kernel (enabled={enabled})"
    parser = shutil.which("apparmor_parser") or "/sbin/apparmor_parser"
    if not os.path.exists(parser):
        return "no apparmor_parser (make apt-test installs apparmor)"
    for name, denied in ((DENY, "runh-secret"), (OTHER, "runh-other")):
        path = f"{WORK}/{name}.profile"
        with open(path, "w") as f:
            f.write(PROFILE.format(name=name, denied=denied))
        r = subprocess.run([parser, "-r", "-K", path], capture_output=True, text=True)
        if r.returncode != 0:
            return f"apparmor_parser {name}: {r.stderr.strip()[-300:]}"
    return None


def main(names):
    import ctypes
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: created inits are ours
    os.environ.pop("container", None)  # containerd's AppArmor test wants it unset
    os.makedirs(WORK, exist_ok=True)
    selinux = names[:1] == ["--selinux"]
    names = names[1:] if selinux else names
    why = setup_selinux() if selinux else setup()
    signal.signal(signal.SIGALRM, _alarm)
    for fn in SELINUX_CHECKS if selinux else CHECKS:
        name = fn.__name__[len("check_"):]
        if names and name not in names:
            continue
        t0 = time.time()
        if why:
            print(f"CHECK {name} SKIP 0.00s {why}", flush=True)
            continue
        ok, detail = timed(CHECK_TIMEOUT, fn)
        reap()
        verdict = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        print(f"CHECK {name} {verdict} {time.time() - t0:.2f}s {detail}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
