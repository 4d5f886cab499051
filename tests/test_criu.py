"""checkpoint/restore on the host: the protocol codec, the CLI surface, and every error path.

CRIU 3.17 cannot run on this host's kernel (its vDSO probe fails: `criu check` says so),
so a real dump and restore are proven in the guest (tests/test_criu_guest.py); here every
failure must be one clear line, a non-zero exit, and nothing left behind: the container
still running as it was, no image or work directory that runh made, no state dir,
cgroup or mount of a failed restore.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, sh

sys.path.insert(0, os.path.join(REPO, "python"))

from runh.criu import proto  # noqa: E402

CRIU = shutil.which("criu") or ("/usr/sbin/criu" if os.access("/usr/sbin/criu", os.X_OK) else None)
DEBIAN_PROTO = "/usr/include/criu/rpc.proto"
OURS = os.path.join(REPO, "python", "runh", "criu", "rpc.proto")
COUNT = sh("i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done")


def _criu_works():
    if not CRIU:
        return False
    return subprocess.run([CRIU, "check"], capture_output=True).returncode == 0


needs_criu = pytest.mark.skipif(CRIU is None, reason="criu is not installed (make apt-test)")
broken_kernel = pytest.mark.skipif(CRIU is None or _criu_works(),
                                   reason="needs a kernel this CRIU cannot run on (criu check fails)")


# ---------------------------------------------------------------- the protocol

def _pb2(tmp_path):
    """google.protobuf's module for runh's rpc.proto (grpcio-tools, test-only)."""
    protoc = pytest.importorskip("grpc_tools.protoc")
    shutil.copy(OURS, tmp_path / "rpc.proto")
    rc = protoc.main(["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", str(tmp_path / "rpc.proto")])
    assert rc == 0
    sys.path.insert(0, str(tmp_path))
    try:
        import rpc_pb2
        return rpc_pb2
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("rpc_pb2", None)


REQ = {
    "type": 2,
    "opts": {
        "images_dir_fd": 5, "pid": 4242, "log_level": 4, "log_file": "restore.log",
        "root": "/run/runh/x/criu-root", "rst_sibling": True, "leave_running": False,
        "manage_cgroups_mode": 6, "empty_ns": 0x40000000, "status_fd": -1,
        "ext_mnt": [{"key": "/etc/hosts", "val": "/b/hosts"}, {"key": "/dev/null", "val": "/dev/null"}],
        "inherit_fd": [{"key": "pipe:[123]", "fd": 1}, {"key": "extRootNetNS", "fd": 7}],
        "cg_root": [{"path": "/runh/x"}, {"ctrl": "memory", "path": "/m"}],
        "join_ns": [{"ns": "ipc", "ns_file": "/proc/1/ns/ipc"}],
        "external": ["net[4026531840]:extRootNetNS"],
        "ps": {"address": "10.0.0.1", "port": 27},
    },
    "notify_success": True,
    "features": {"mem_track": True},
}


def test_codec_matches_protobuf(tmp_path):
    """runh's encoding of a request is byte for byte google.protobuf's, and both decode
    each other's messages (negative int32, repeated sub-messages, unicode strings)."""
    pb = _pb2(tmp_path)
    theirs = pb.criu_req()
    o = REQ["opts"]
    theirs.type = REQ["type"]
    theirs.notify_success = True
    theirs.features.mem_track = True
    for k, v in o.items():
        if isinstance(v, list):
            for item in v:
                if isinstance(item, dict):
                    sub = getattr(theirs.opts, k).add()
                    for kk, vv in item.items():
                        setattr(sub, kk, vv)
                else:
                    getattr(theirs.opts, k).append(item)
        elif isinstance(v, dict):
            for kk, vv in v.items():
                setattr(getattr(theirs.opts, k), kk, vv)
        else:
            setattr(theirs.opts, k, v)
    assert proto.encode("criu_req", REQ) == theirs.SerializeToString()

    resp = pb.criu_resp(type=6, success=True, cr_errno=-3, cr_errmsg="é failed")
    resp.notify.script = "post-restore"
    resp.notify.pid = 77
    resp.restore.pid = 77
    resp.version.major_number = 3
    resp.version.minor_number = 17
    got = proto.decode("criu_resp", resp.SerializeToString())
    assert got == {"type": 6, "success": True, "cr_errno": -3, "cr_errmsg": "é failed",
                   "notify": {"script": "post-restore", "pid": 77}, "restore": {"pid": 77},
                   "version": {"major_number": 3, "minor_number": 17}}
    back = pb.criu_req()
    back.ParseFromString(proto.encode("criu_req", REQ))
    assert back.opts.status_fd == -1 and back.opts.inherit_fd[1].key == "extRootNetNS"


def test_codec_rejects_truncated():
    data = proto.encode("criu_resp", {"type": 1, "success": True, "cr_errmsg": "x" * 50})
    with pytest.raises(ValueError):
        proto.decode("criu_resp", data[:-10])


@pytest.mark.skipif(not os.path.exists(DEBIAN_PROTO), reason="criu's rpc.proto is not installed")
def test_proto_matches_criu():
    """Every field of runh's rpc.proto has CRIU's number and wire type (the installed
    criu package's own rpc.proto); enums are sent as int32, which is their encoding."""
    with open(DEBIAN_PROTO) as f:
        text = f.read()
    theirs = proto.parse(text)
    enums = {line.split()[1] for line in text.splitlines() if line.startswith("enum ")}
    checked = 0
    for msg, fields in proto.schema().items():
        assert msg in theirs, msg
        for name, (num, kind, rep) in fields.items():
            tnum, tkind, trep = theirs[msg][name]
            assert (num, rep) == (tnum, trep), f"{msg}.{name}"
            assert kind == tkind or (kind == "int32" and tkind in enums), f"{msg}.{name}: {kind} vs {tkind}"
            checked += 1
    assert checked > 60


# ---------------------------------------------------------------- the CLI surface

def test_help_exits_zero(runh):
    """CRI-O probes `checkpoint --help`; both commands list runc's flags."""
    for cmd, flags in (("checkpoint", ["--image-path", "--work-path", "--parent-path", "--leave-running",
                                       "--tcp-established", "--ext-unix-sk", "--shell-job", "--file-locks",
                                       "--pre-dump", "--manage-cgroups-mode", "--empty-ns", "--auto-dedup",
                                       "--lazy-pages", "--page-server", "--status-fd"]),
                       ("restore", ["--bundle", "--image-path", "--work-path", "--detach", "--pid-file",
                                    "--console-socket", "--no-subreaper", "--no-pivot", "--tcp-established",
                                    "--ext-unix-sk", "--shell-job", "--file-locks", "--manage-cgroups-mode",
                                    "--empty-ns", "--lazy-pages", "--auto-dedup"])):
        r = runh(cmd, "--help")
        assert r.returncode == 0, r.stderr
        for f in flags:
            assert f in r.stdout, (cmd, f)


def test_features_say_checkpoint(runh):
    got = json.loads(runh("features").stdout)["annotations"]["org.opencontainers.runc.checkpoint.enabled"]
    assert got == ("true" if CRIU else "false")
    r = runh("--criu", "/nonexistent/criu", "features")
    assert json.loads(r.stdout)["annotations"]["org.opencontainers.runc.checkpoint.enabled"] == "false"


def test_delete_force_of_missing_succeeds_as_runc(runh, ctx):
    """podman deletes --force a container that its checkpoint removed: runc says 0."""
    assert runh("delete", "--force", ctx.new_id()).returncode == 0
    if shutil.which("runc"):
        r = subprocess.run(["runc", "--root", ctx.path("runc"), "delete", "--force", ctx.new_id()],
                           capture_output=True)
        assert r.returncode == 0
    r = runh("delete", ctx.new_id())
    assert r.returncode == 1 and "does not exist" in r.stderr


# ---------------------------------------------------------------- errors: one line, nothing left

@pytest.fixture
def counting(runh, ctx, make_bundle):
    """A running container whose config has no "cgroup" mount (this host is cgroup v1)."""
    def edit(c):
        c["mounts"] = [m for m in c["mounts"] if m.get("type") != "cgroup"]
    b = make_bundle(args=COUNT, edit=edit)
    cid = ctx.new_id()
    r = runh("run", "-d", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    yield b, cid
    runh("delete", "--force", cid)


def _one_line(r):
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runh: "), r.stderr
    return lines[0]


@broken_kernel
def test_checkpoint_on_a_kernel_criu_cannot_run(runh, ctx, counting):
    """One line naming CRIU, its version and the kernel; the container runs on, and the
    image and work dirs runh made are gone (a pre-existing one keeps only what it had)."""
    b, cid = counting
    img, work = ctx.path("img"), ctx.path("work")
    line = _one_line(runh("checkpoint", "--image-path", img, "--work-path", work, cid))
    assert "criu 3." in line and "cannot run on this kernel" in line and os.uname().release in line
    assert not os.path.exists(img) and not os.path.exists(work)
    os.mkdir(img)
    with open(os.path.join(img, "keep"), "w") as f:
        f.write("x")
    _one_line(runh("checkpoint", "--image-path", img, cid))
    assert os.listdir(img) == ["keep"]
    assert runh.state(cid)["status"] == "running"
    # --log-format json: the same message as one error record.
    log = ctx.path("log.json")
    runh("--log", log, "--log-format", "json", "checkpoint", "--image-path", img, cid)
    recs = [json.loads(x) for x in open(log).read().splitlines()]
    assert recs[-1]["level"] == "error" and "cannot run on this kernel" in recs[-1]["msg"]


@broken_kernel
def test_restore_on_a_kernel_criu_cannot_run(runh, ctx, counting):
    """An image dir that looks like a checkpoint: restore fails in CRIU, in one line, and
    leaves no state dir, cgroup, rootfs bind or log behind."""
    b, _ = counting
    img = ctx.path("img")
    os.mkdir(img)
    open(os.path.join(img, "inventory.img"), "wb").close()
    cid = ctx.new_id()
    line = _one_line(runh("restore", "-d", "--bundle", b, "--image-path", img, "--work-path", ctx.path("w"), cid))
    assert "cannot run on this kernel" in line
    assert os.listdir(img) == ["inventory.img"] and not os.path.exists(ctx.path("w"))
    assert not os.path.exists(os.path.join(ctx.root, cid))
    assert cid not in open("/proc/self/mountinfo").read()


def test_restore_from_a_dir_that_is_not_a_checkpoint(runh, ctx, counting):
    b, _ = counting
    cid = ctx.new_id()
    empty = ctx.path("empty")
    os.mkdir(empty)
    line = _one_line(runh("restore", "-d", "--bundle", b, "--image-path", empty, cid))
    assert line == f"runh: --image-path {empty}: not a checkpoint (no inventory.img)"
    line = _one_line(runh("restore", "-d", "--bundle", b, "--image-path", ctx.path("none"), cid))
    assert "no such directory" in line
    assert os.listdir(empty) == [] and not os.path.exists(os.path.join(ctx.root, cid))


def test_no_criu(runh, ctx, counting):
    b, cid = counting
    img = ctx.path("img")
    os.mkdir(img)
    open(os.path.join(img, "inventory.img"), "wb").close()
    line = _one_line(runh("--criu", "/nonexistent/criu", "checkpoint", "--image-path", ctx.path("i2"), cid))
    assert "criu not found at /nonexistent/criu" in line and not os.path.exists(ctx.path("i2"))
    line = _one_line(runh("--criu", "no-such-criu", "restore", "-d", "--bundle", b, "--image-path", img,
                          ctx.new_id()))
    assert "no-such-criu not found in $PATH" in line
    assert runh.state(cid)["status"] == "running"


def test_checkpoint_refuses_bad_input(runh, ctx, counting, make_bundle):
    b, cid = counting
    img = ctx.path("img")
    cases = [
        (["--manage-cgroups-mode", "bogus"], "--manage-cgroups-mode: invalid value"),
        (["--empty-ns", "ipc"], "--empty-ns: namespace 'ipc' is not supported"),
        (["--page-server", "nohostport"], "--page-server: use ADDRESS:PORT"),
        (["--parent-path", "/abs"], "--parent-path must be relative"),
        (["--status-fd", "97"], "--status-fd 97: bad file descriptor"),
    ]
    for args, msg in cases:
        line = _one_line(runh("checkpoint", "--image-path", img, *args, cid))
        assert msg in line, (args, line)
        assert not os.path.exists(img)
    # Not running: a created container, and one that does not exist.
    created = ctx.new_id()
    assert runh("create", "--bundle", b, created).returncode == 0
    try:
        line = _one_line(runh("checkpoint", "--image-path", img, created))
        assert "cannot be checkpointed in created state" in line
    finally:
        runh("delete", "--force", created)
    line = _one_line(runh("checkpoint", ctx.new_id()))
    assert "does not exist" in line
    assert runh.state(cid)["status"] == "running"


@needs_criu
def test_restore_refuses_an_existing_id(runh, ctx, counting):
    b, cid = counting
    img = ctx.path("img")
    os.mkdir(img)
    open(os.path.join(img, "inventory.img"), "wb").close()
    line = _one_line(runh("--criu", CRIU or "criu", "restore", "-d", "--bundle", b, "--image-path", img, cid))
    assert "already exists" in line or "exists" in line
    assert runh.state(cid)["status"] == "running"
