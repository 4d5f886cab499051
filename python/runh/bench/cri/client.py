"""A small CRI v1 client over gRPC (what kubelet does, reduced to what the tests and the
bench use), pod and container config builders, and the streaming Exec client.

Streaming Exec: the Exec RPC only returns a URL of containerd's streaming server; the
client then speaks Kubernetes' remotecommand protocol to it. containerd serves it over
SPDY and over WebSocket; this client uses WebSocket with the `v4.channel.k8s.io`
subprotocol (stdlib only): every binary message starts with a channel byte, 0 stdin,
1 stdout, 2 stderr, 3 the final status (JSON), 4 terminal resize (JSON).
"""

import base64
import json
import os
import secrets
import socket
import struct
import time
import urllib.parse

from . import stubs


class Cri:
    """A connection to a CRI socket. `rt` and `img` are the RuntimeService and ImageService
    stubs; `pb` the message module. Calls raise grpc.RpcError on failure."""

    def __init__(self, sock, stubs_dir, timeout=60):
        import grpc
        self.pb, pb_grpc = stubs.load(os.path.join(stubs_dir, "stubs"))
        self.timeout = timeout
        self.channel = grpc.insecure_channel("unix://" + sock)
        self.rt = pb_grpc.RuntimeServiceStub(self.channel)
        self.img = pb_grpc.ImageServiceStub(self.channel)

    def close(self):
        self.channel.close()

    def call(self, method, request, timeout=None):
        return getattr(self.rt, method)(request, timeout=timeout or self.timeout)

    def runtime_ready(self):
        st = self.rt.Status(self.pb.StatusRequest(), timeout=self.timeout)
        return any(c.type == "RuntimeReady" and c.status for c in st.status.conditions)

    # ------------------------------------------------------------ configs
    def pod_config(self, name, uid, namespace="default", cgroup_parent="", log_directory="",
                   hostname="", privileged=False, pid=None, ipc=None, sysctls=None,
                   labels=None, seccomp=None):
        """A PodSandboxConfig with host networking (no CNI here). pid/ipc: NamespaceMode
        names (POD, CONTAINER, NODE); default CONTAINER pid and POD ipc, as kubelet sets."""
        pb = self.pb
        ns = pb.NamespaceOption(network=pb.NODE, pid=getattr(pb, pid or "CONTAINER"),
                                ipc=getattr(pb, ipc or "POD"))
        sc = pb.LinuxSandboxSecurityContext(namespace_options=ns, privileged=privileged)
        if seccomp:
            sc.seccomp.CopyFrom(self.profile(seccomp))
        linux = pb.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=sc,
                                         sysctls=sysctls or {})
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace),
            hostname=hostname, log_directory=log_directory, labels=labels or {}, linux=linux)

    def profile(self, kind):
        """A SecurityProfile: 'RuntimeDefault', 'Unconfined' or 'localhost/<path>'."""
        SP = self.pb.SecurityProfile
        if kind.startswith("localhost/"):
            return SP(profile_type=SP.Localhost, localhost_ref=kind[len("localhost/"):])
        return SP(profile_type=getattr(SP, kind))

    def container_config(self, name, args, image=None, command=None, log_path=None, env=None,
                         tty=False, stdin=False, resources=None, user=None, groups=(),
                         run_as_group=None, readonly_rootfs=False, drop_caps=(), add_caps=(),
                         no_new_privs=False, seccomp=None, privileged=False, pid=None,
                         labels=None, mounts=()):
        """A ContainerConfig. resources: LinuxContainerResources keyword arguments."""
        from .containerd import IMAGE
        pb = self.pb
        sc = pb.LinuxContainerSecurityContext(
            privileged=privileged, readonly_rootfs=readonly_rootfs,
            supplemental_groups=list(groups), no_new_privs=no_new_privs,
            capabilities=pb.Capability(add_capabilities=list(add_caps),
                                       drop_capabilities=list(drop_caps)),
            namespace_options=pb.NamespaceOption(network=pb.NODE,
                                                 pid=getattr(pb, pid or "CONTAINER"), ipc=pb.POD))
        if user is not None:
            sc.run_as_user.value = user
        if run_as_group is not None:
            sc.run_as_group.value = run_as_group
        if seccomp:
            sc.seccomp.CopyFrom(self.profile(seccomp))
        linux = pb.LinuxContainerConfig(security_context=sc)
        if resources:
            linux.resources.CopyFrom(pb.LinuxContainerResources(**resources))
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image or IMAGE),
            command=list(command or []), args=list(args),
            envs=[pb.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
            mounts=[pb.Mount(**m) for m in mounts],
            log_path=log_path if log_path is not None else f"{name}.log",
            tty=tty, stdin=stdin, stdin_once=stdin, labels=labels or {}, linux=linux)

    # ------------------------------------------------------------ calls
    def run_pod(self, config, handler):
        r = self.call("RunPodSandbox", self.pb.RunPodSandboxRequest(config=config, runtime_handler=handler))
        return r.pod_sandbox_id

    def create_container(self, pod_id, config, pod_config):
        r = self.call("CreateContainer", self.pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config))
        return r.container_id

    def start_container(self, cid):
        self.call("StartContainer", self.pb.StartContainerRequest(container_id=cid))

    def stop_container(self, cid, timeout=0):
        self.call("StopContainer", self.pb.StopContainerRequest(container_id=cid, timeout=timeout),
                  timeout=self.timeout + timeout)

    def remove_container(self, cid):
        self.call("RemoveContainer", self.pb.RemoveContainerRequest(container_id=cid))

    def stop_pod(self, pod_id):
        self.call("StopPodSandbox", self.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))

    def remove_pod(self, pod_id):
        self.call("RemovePodSandbox", self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))

    def pod_status(self, pod_id, verbose=False):
        return self.call("PodSandboxStatus", self.pb.PodSandboxStatusRequest(
            pod_sandbox_id=pod_id, verbose=verbose))

    def container_status(self, cid, verbose=False):
        return self.call("ContainerStatus", self.pb.ContainerStatusRequest(
            container_id=cid, verbose=verbose))

    def info(self, resp):
        """containerd's verbose JSON (pid, runtimeSpec, ...) of a status response."""
        return json.loads(resp.info["info"]) if "info" in resp.info else {}

    def pods(self):
        return list(self.call("ListPodSandbox", self.pb.ListPodSandboxRequest()).items)

    def containers(self, pod_id=""):
        f = self.pb.ContainerFilter(pod_sandbox_id=pod_id)
        return list(self.call("ListContainers", self.pb.ListContainersRequest(filter=f)).containers)

    def exec_sync(self, cid, cmd, timeout=0):
        return self.call("ExecSync", self.pb.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=timeout),
                         timeout=self.timeout + timeout)

    def update_resources(self, cid, **resources):
        self.call("UpdateContainerResources", self.pb.UpdateContainerResourcesRequest(
            container_id=cid, linux=self.pb.LinuxContainerResources(**resources)))

    def container_stats(self, cid):
        return self.call("ContainerStats", self.pb.ContainerStatsRequest(container_id=cid)).stats

    def list_container_stats(self, pod_id=""):
        f = self.pb.ContainerStatsFilter(pod_sandbox_id=pod_id)
        return list(self.call("ListContainerStats", self.pb.ListContainerStatsRequest(filter=f)).stats)

    def wait_container_state(self, cid, state, timeout=10):
        """Poll ContainerStatus until the state (a ContainerState name); returns the status."""
        want = getattr(self.pb, state)
        deadline = time.monotonic() + timeout
        while True:
            st = self.container_status(cid).status
            if st.state == want or time.monotonic() > deadline:
                return st
            time.sleep(0.05)

    def remove_all(self):
        """Stop and remove every pod sandbox (and so its containers), as kubelet's GC does."""
        for p in self.pods():
            self.stop_pod(p.id)
            self.remove_pod(p.id)

    def exec_stream(self, cid, cmd, tty=False, stdin=None, timeout=30):
        """Streaming Exec: returns (exit_code, stdout bytes, stderr bytes). stdin: bytes
        sent once the stream is open (it is never closed: v4 has no half-close, so the
        command must not wait for EOF)."""
        url = self.call("Exec", self.pb.ExecRequest(
            container_id=cid, cmd=list(cmd), tty=tty, stdin=stdin is not None,
            stdout=True, stderr=not tty)).url
        return exec_websocket(url, stdin=stdin, tty=tty, timeout=timeout)


# ---------------------------------------------------------------- remotecommand over WebSocket

PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)


class StreamError(Exception):
    pass


def _send_frame(sock, payload, opcode=2):
    # Client frames are masked (RFC 6455 5.3).
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mask = secrets.token_bytes(4)
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


class _Reader:
    def __init__(self, sock, buf=b""):
        self.sock, self.buf = sock, buf

    def take(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        b0, b1 = self.take(2)
        n = b1 & 0x7F
        if n == 126:
            n, = struct.unpack(">H", self.take(2))
        elif n == 127:
            n, = struct.unpack(">Q", self.take(8))
        mask = self.take(4) if b1 & 0x80 else None
        data = self.take(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return b0 & 0x80, b0 & 0x0F, data


def exit_code_of(status):
    """The exit code in a remotecommand v4 status object (0 for Success)."""
    if status.get("status") == "Success":
        return 0
    for cause in status.get("details", {}).get("causes", []):
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    raise StreamError(f"exec failed: {status.get('message', status)}")


def exec_websocket(url, stdin=None, tty=False, timeout=30):
    u = urllib.parse.urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
    try:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        path = u.path + (("?" + u.query) if u.query else "")
        sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise StreamError(f"streaming server closed the connection: {head[:200]!r}")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status_line + " ":
            raise StreamError(f"websocket upgrade refused: {status_line}")
        if tty:
            _send_frame(sock, bytes([RESIZE]) + json.dumps({"Width": 80, "Height": 24}).encode())
        if stdin is not None:
            _send_frame(sock, bytes([STDIN]) + stdin)
        out = {STDOUT: b"", STDERR: b""}
        status = None
        reader = _Reader(sock, rest)
        message = b""
        while True:
            try:
                fin, opcode, data = reader.frame()
            except EOFError:
                break
            if opcode == 8:  # close
                break
            if opcode == 9:  # ping
                _send_frame(sock, data, opcode=10)
                continue
            if opcode in (0, 1, 2):
                message += data
                if not fin:
                    continue
                data, message = message, b""
                if not data:
                    continue
                ch, payload = data[0], data[1:]
                if ch in out:
                    out[ch] += payload
                elif ch == ERROR and payload:
                    status = json.loads(payload)
        if status is None:
            raise StreamError("stream ended without a status")
        return exit_code_of(status), out[STDOUT], out[STDERR]
    finally:
        sock.close()
