"""A private containerd with its CRI plugin, for the CRI tests and `runh bench -s cri`.

Everything lives in one work directory: the config, containerd's root and state, its
socket, the runtimes' --root (the shim's `Root` option), TMPDIR of the shims (exec
process.json and console sockets), CNI dirs (empty: pods use host networking) and the
images. The only things outside it are the ones containerd 1.6 and the runtimes put
elsewhere whatever the config says: shim sockets in /run/containerd/s (removed at stop if
this run made the directory and it is empty), and the pods' cgroups under the
cgroup_parent the caller gives each pod (removed by `forget_cgroup_parent` and at stop).

Images are built here from Debian's busybox-static (there is no registry): one layer,
two image configs. `busybox` runs what the container config says (default /bin/sh);
`pause` is the sandbox image, a shell that sleeps and reaps (the pod's PID 1 when the
pod shares its PID namespace).
"""

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

from .. import bundle as bbundle

NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin uses
IMAGE = "localhost/runh-cri/busybox:1"
PAUSE_IMAGE = "localhost/runh-cri/pause:1"
# The sandbox's process: sleeps forever, reaps whatever is re-parented to it (busybox
# ash's bare `wait` reaps any child), exits on SIGTERM.
PAUSE_CMD = ["/bin/sh", "-c", 'trap "exit 0" TERM; while :; do sleep 2147483647 & wait; done']
CRI = 'plugins."io.containerd.grpc.v1.cri"'
SHIM = "io.containerd.runc.v2"
SHIM_SOCKETS = "/run/containerd/s"  # fixed in containerd 1.6, whatever the config says


# len(dir) + len("/r0/k8s.io/") + 64 + len("/notify.sock") <= 107
MAX_DIR = 107 - len("/r0/k8s.io/") - 64 - len("/notify.sock")


class ContainerdError(Exception):
    """containerd is missing, did not start, or an image could not be imported."""


def handler_table(binary, root=None):
    """The CRI runtime handler entry for a runc-compatible binary: what the README tells
    users to put under [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.NAME]
    (tests/test_cri_config.py holds the README to this function)."""
    options = {"BinaryName": binary}
    if root:
        options["Root"] = root
    return {"runtime_type": SHIM, "options": options}


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string is a JSON string for these values


def toml(tables):
    """A TOML document from [(table name or None, {key: scalar or list})]."""
    out = []
    for name, keys in tables:
        if name:
            out.append(f"\n[{name}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
    return "\n".join(out) + "\n"


def overlay_works(workdir):
    """Whether overlayfs mounts here (else containerd's native snapshotter is used)."""
    d = os.path.join(workdir, "ovl-probe")
    parts = [os.path.join(d, p) for p in ("l", "u", "w", "m")]
    for p in parts:
        os.makedirs(p, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                         f"lowerdir={parts[0]},upperdir={parts[1]},workdir={parts[2]}", parts[3]],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", parts[3]], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)
    return ok


# ---------------------------------------------------------------- images

def _blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def layer_tar(rootfs):
    """The rootfs as an uncompressed layer: numeric root ownership, mtime 0, sorted (also
    what tests/systemd_clients.py gives `podman import`)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def norm(ti):
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mtime = 0
            return ti
        for dirpath, dirs, files in os.walk(rootfs):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                p = os.path.join(dirpath, name)
                tar.add(p, arcname=os.path.relpath(p, rootfs), recursive=False, filter=norm)
    return buf.getvalue()


def build_image_archive(workdir):
    """An OCI image layout tarball holding IMAGE and PAUSE_IMAGE; returns its path."""
    rootfs = bbundle.build_rootfs(os.path.join(workdir, "img", "rootfs"))
    with open(os.path.join(rootfs, "etc", "hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n")
    open(os.path.join(rootfs, "etc", "resolv.conf"), "w").close()
    layout = os.path.join(workdir, "img", "oci")
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    layer = layer_tar(rootfs)
    layer_desc = _blob(layout, layer)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    manifests = []
    for ref, cfg in ((IMAGE, {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"}),
                     (PAUSE_IMAGE, {"Env": ["PATH=/bin"], "Entrypoint": PAUSE_CMD, "WorkingDir": "/"})):
        config = {"architecture": arch, "os": "linux", "created": "1970-01-01T00:00:00Z",
                  "config": cfg, "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}
        config_desc = _blob(layout, json.dumps(config, sort_keys=True).encode())
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": dict(config_desc, mediaType="application/vnd.oci.image.config.v1+json"),
                    "layers": [dict(layer_desc, mediaType="application/vnd.oci.image.layer.v1.tar")]}
        m_desc = _blob(layout, json.dumps(manifest, sort_keys=True).encode())
        manifests.append(dict(m_desc, mediaType="application/vnd.oci.image.manifest.v1+json",
                              platform={"architecture": arch, "os": "linux"},
                              annotations={"io.containerd.image.name": ref,
                                           "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}))
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": manifests}, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    archive = os.path.join(workdir, "img", "images.tar")
    with tarfile.open(archive, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(os.path.join(layout, name), arcname=name)
    shutil.rmtree(rootfs)
    shutil.rmtree(layout)
    return archive


# ---------------------------------------------------------------- processes and mounts

def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stat(pid):
    """(state, ppid, comm) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), comm


def pids_with(text):
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and text in _cmdline(p)]


def reap_shims():
    """Reap the exited shims re-parented to this process (it is a child subreaper in the
    test suite and the bench). Only zombies named containerd-shim*: every other child
    belongs to someone's Popen or wait."""
    me = os.getpid()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        st = _stat(p)
        if st and st[0] == "Z" and st[1] == me and st[2].startswith("containerd-shim"):
            try:
                os.waitpid(int(p), os.WNOHANG)
            except ChildProcessError:
                pass


def mounts_under(prefix):
    """Mount points at or below prefix, deepest first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                out.append(point)
    return sorted(set(out), key=len, reverse=True)


def cgroup_dirs(parent):
    """The directories of cgroup parent `parent` (e.g. /podX) in every mounted hierarchy."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] in ("cgroup", "cgroup2"):
                d = left.split()[4] + "/" + parent.strip("/")
                if os.path.isdir(d):
                    found.append(d)
    return sorted(set(found))


def remove_cgroup_tree(parent, timeout=5.0):
    """rmdir the cgroup parent's tree in every hierarchy (deepest first). A cgroup whose
    last task just died is busy for a moment, so retry until the timeout. Returns what is
    left."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for top in cgroup_dirs(parent):
            for dirpath, dirs, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
                try:
                    os.rmdir(dirpath)
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(dirpath)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


# ---------------------------------------------------------------- the daemon

class Containerd:
    """containerd + CRI plugin under `workdir`, with one runtime handler per entry of
    `handlers` ({name: runtime binary}). start(), restart(), stop(); `socket` for clients.

    `stop()` removes everything it made; it is safe to call more than once and after a
    failed start.
    """

    def __init__(self, workdir, handlers, default_handler=None, log_level="info"):
        self.dir = os.path.abspath(workdir)
        # runh's parked init listens on <root>/<id>/notify.sock, and an AF_UNIX path has at
        # most 107 bytes: with CRI's 64-hex ids the runtime root may have 30 (containerd's
        # default /run/containerd/runc/k8s.io has 27). runc's exec.fifo has no such limit.
        if len(self.dir) > MAX_DIR:
            raise ContainerdError(f"work directory {self.dir} is longer than {MAX_DIR} bytes: "
                                  "runtime roots under it would not hold a notify.sock path")
        self.handlers = dict(handlers)
        self.default_handler = default_handler or next(iter(self.handlers))
        self.log_level = log_level
        self.socket = os.path.join(self.dir, "containerd.sock")
        self.config_path = os.path.join(self.dir, "config.toml")
        self.log_path = os.path.join(self.dir, "containerd.log")
        self.proc = None
        self.snapshotter = None
        self.cgroup_parents = set()
        self._made_run_dirs = []
        self._client = None

    def runtime_root(self, handler):
        """The `Root` option of the handler: the shim passes `--root <it>/k8s.io`."""
        return os.path.join(self.dir, f"r{list(self.handlers).index(handler)}")

    def state_dir(self, handler):
        return os.path.join(self.runtime_root(handler), NAMESPACE)

    def config(self):
        """The containerd config as [(table, keys)]: see `toml`."""
        d = self.dir
        tables = [
            (None, {"version": 2, "root": f"{d}/root", "state": f"{d}/state",
                    # Plugins that cannot work here: skipping them keeps the log quiet.
                    "disabled_plugins": ["io.containerd.snapshotter.v1.devmapper",
                                         "io.containerd.snapshotter.v1.zfs",
                                         "io.containerd.snapshotter.v1.btrfs",
                                         "io.containerd.snapshotter.v1.aufs",
                                         "io.containerd.tracing.processor.v1.otlp",
                                         "io.containerd.internal.v1.tracing"]}),
            ("grpc", {"address": self.socket}),
            ("ttrpc", {"address": self.socket + ".ttrpc"}),
            ("debug", {"address": "", "level": self.log_level}),
            ("metrics", {"address": ""}),
            ('plugins."io.containerd.internal.v1.opt"', {"path": f"{d}/opt"}),
            (CRI, {"sandbox_image": PAUSE_IMAGE,
                   # Without CAP_SYS_RESOURCE (as on this machine) a runtime cannot lower
                   # oom_score_adj to the sandbox's -998: clamp it to containerd's own.
                   "restrict_oom_score_adj": True,
                   "stream_server_address": "127.0.0.1", "stream_server_port": "0",
                   "enable_selinux": False, "disable_apparmor": True}),
            (f"{CRI}.containerd", {"snapshotter": self.snapshotter or "overlayfs",
                                   "default_runtime_name": self.default_handler}),
        ]
        for name, binary in self.handlers.items():
            t = handler_table(binary, self.runtime_root(name))
            tables.append((f"{CRI}.containerd.runtimes.{name}", {"runtime_type": t["runtime_type"]}))
            tables.append((f"{CRI}.containerd.runtimes.{name}.options", t["options"]))
        tables.append((f"{CRI}.cni", {"bin_dir": f"{d}/cni/bin", "conf_dir": f"{d}/cni/conf"}))
        return tables

    def _env(self):
        env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "NOTIFY_SOCKET")}
        env["TMPDIR"] = os.path.join(self.dir, "tmp")
        # The shims find runc-compatible binaries by BinaryName (absolute); containerd
        # finds containerd-shim-runc-v2 on PATH.
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return env

    def start(self, timeout=30):
        for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
            if shutil.which(tool, path=self._env()["PATH"]) is None:
                raise ContainerdError(f"{tool} not found: install Debian's containerd (make apt-test)")
        for p in ("tmp", "cni/bin", "cni/conf", "img"):
            os.makedirs(os.path.join(self.dir, p), exist_ok=True)
        for name in self.handlers:
            os.makedirs(self.runtime_root(name), mode=0o700, exist_ok=True)
        for d in ("/run/containerd", SHIM_SOCKETS):
            if not os.path.exists(d):
                self._made_run_dirs.append(d)
        if self.snapshotter is None:
            self.snapshotter = "overlayfs" if overlay_works(self.dir) else "native"
        with open(self.config_path, "w") as f:
            f.write(toml(self.config()))
        self._spawn(timeout)
        archive = build_image_archive(self.dir)
        r = self.ctr("images", "import", "--snapshotter", self.snapshotter, archive)
        if r.returncode != 0:
            raise ContainerdError(f"ctr images import: {r.stderr.strip()[-300:]}")
        os.unlink(archive)

    def _spawn(self, timeout):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(["containerd", "--config", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=self._env())
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ContainerdError(f"containerd exited {self.proc.returncode}: {self.log_tail()}")
            if os.path.exists(self.socket) and self._cri_ready():
                return
            time.sleep(0.1)
        raise ContainerdError(f"containerd's CRI plugin not ready after {timeout} s: {self.log_tail()}")

    def _cri_ready(self):
        from .client import Cri
        try:
            c = Cri(self.socket, self.dir, timeout=2)
        except Exception:
            return False
        try:
            return c.runtime_ready()
        except Exception:
            return False
        finally:
            c.close()

    def log_tail(self, n=5):
        try:
            with open(self.log_path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return "(no log)"
        errs = [ln for ln in lines if "level=error" in ln or "level=fatal" in ln] or lines
        return " | ".join(errs[-n:])[-800:]

    def ctr(self, *args, timeout=60):
        return subprocess.run(["ctr", "-a", self.socket, "-n", NAMESPACE, *args],
                              capture_output=True, text=True, timeout=timeout, env=self._env())

    def _terminate(self, timeout=15):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, timeout=30):
        """Stop containerd (its shims and pods stay) and start it again on the same config."""
        self._terminate()
        self._spawn(timeout)

    def shim_pids(self):
        return pids_with(f"-address {self.socket} ")

    def stop(self):
        """Remove every pod, stop containerd, and remove everything this run made.
        Returns a list of problems (empty when all went)."""
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            from .client import Cri
            try:
                c = Cri(self.socket, self.dir, timeout=30)
                try:
                    c.remove_all()
                finally:
                    c.close()
            except Exception as e:  # go on: the fallbacks below still run
                problems.append(f"removing pods through CRI: {e}")
        self._terminate()
        # Containers whose pods could not be removed: through the runtime itself, before
        # their shims go (a killed shim's containers would be re-parented and live on).
        for name, binary in self.handlers.items():
            root = self.state_dir(name)
            for cid in sorted(os.listdir(root)) if os.path.isdir(root) else []:
                if cid.startswith("."):
                    continue
                r = subprocess.run([binary, "--root", root, "delete", "--force", cid],
                                   capture_output=True, text=True, timeout=60)
                problems.append(f"{name} container {cid} left by containerd"
                                + ("" if r.returncode == 0 else f"; delete --force: {r.stderr.strip()[-200:]}"))
        for pid in self.shim_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while self.shim_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        reap_shims()
        for m in mounts_under(self.dir):
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)
            problems.append(f"mount left: {m}")
        for parent in sorted(self.cgroup_parents):
            left = remove_cgroup_tree(parent)
            if left:
                problems.append(f"cgroups left: {left}")
        self.cgroup_parents.clear()
        for d in reversed(self._made_run_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass  # not empty: someone else's containerd uses it now
        self._made_run_dirs = []
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems
