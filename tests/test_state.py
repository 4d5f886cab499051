"""State directory: ids, atomic writes, locking, status derivation, pid-reuse safety —
with ordinary processes standing in for a container's init (no Rust core needed)."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))

from runh import state as st  # noqa: E402
from runh.container import Container  # noqa: E402
from runh.errors import ContainerNotFound, ContainerNotRunning, InvalidState, UsageError  # noqa: E402
from runh.jsonio import dumps, loads  # noqa: E402


@pytest.mark.parametrize("cid", ["a", "abc-123", "x_y.z+w", "A" * 200, "k8s.io-1"])
def test_valid_ids(cid):
    assert st.validate_id(cid) == cid


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "../etc", "a..b", "a b", "é", "a\n", "a:b"])
def test_invalid_ids(cid):
    with pytest.raises(UsageError, match="invalid container id"):
        st.validate_id(cid)


def test_write_atomic(tmp_path):
    p = str(tmp_path / "f")
    st.write_atomic(p, "one")
    st.write_atomic(p, b"two")
    assert open(p).read() == "two"
    assert os.listdir(tmp_path) == ["f"]  # no temp file left


def test_proc_start_time_self_and_gone():
    start, letter = st.proc_start_time(os.getpid())
    assert start > 0 and letter in "RS"
    p = subprocess.Popen(["true"])
    p.wait()
    assert st.proc_start_time(p.pid) == (None, None)


@pytest.fixture
def fake(tmp_path):
    """A state dir whose 'init' is a sleep process we own, "parked": the test listens on
    its notify.sock (status "created" is a listening init, not the file); yields (root,
    id, proc)."""
    root = str(tmp_path / "root")
    cid = "fake1"
    sdir = os.path.join(root, cid)
    os.makedirs(sdir)
    proc = subprocess.Popen(["sleep", "60"])
    starttime, _ = st.proc_start_time(proc.pid)
    state = {"ociVersion": "1.3.0", "id": cid, "pid": proc.pid, "starttime": starttime,
             "bundle": "/b", "rootfs": "/b/rootfs", "created": "2024-01-01T00:00:00.000000000Z",
             "owner": "", "annotations": {"k": "v"}}
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.path.join(sdir, st.NOTIFY_SOCK))
    listener.listen(8)
    st.write_atomic(os.path.join(sdir, st.STATE_FILE), dumps(state))
    yield root, cid, proc
    listener.close()
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_status_lifecycle(fake):
    root, cid, proc = fake
    c = Container.load(cid, root)
    s = c.state()
    assert s["status"] == "created" and s["pid"] == proc.pid
    assert list(s) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner",
                       "annotations"]
    os.unlink(os.path.join(root, cid, st.NOTIFY_SOCK))  # what start does
    assert c.status() == "running"
    with pytest.raises(InvalidState, match="not stopped: running"):
        c.delete()
    proc.kill()
    proc.wait()
    assert c.status() == "stopped" and c.state()["pid"] == 0
    with pytest.raises(ContainerNotRunning, match="container not running"):
        c.kill(15)
    c.delete()
    assert not os.path.exists(os.path.join(root, cid))
    with pytest.raises(ContainerNotFound, match="does not exist"):
        Container.load(cid, root)


def test_zombie_is_stopped(fake):
    root, cid, proc = fake
    proc.kill()
    time.sleep(0.1)  # a zombie until waited for
    assert st.proc_start_time(proc.pid)[1] == "Z"
    assert Container.load(cid, root).status() == "stopped"


def test_reused_pid_is_not_signalled(fake):
    root, cid, proc = fake
    sdir = os.path.join(root, cid)
    state = loads(open(os.path.join(sdir, st.STATE_FILE), "rb").read())
    state["starttime"] -= 1  # as if the recorded init died and its pid was reused
    st.write_atomic(os.path.join(sdir, st.STATE_FILE), dumps(state))
    c = Container.load(cid, root)
    assert c.status() == "stopped"
    with pytest.raises(ContainerNotRunning):
        c.kill(9)
    c.delete(force=True)  # removes the state, leaves the stranger alone
    assert proc.poll() is None


def test_kill_and_force_delete(fake):
    root, cid, proc = fake
    c = Container.load(cid, root)
    c.kill(15)
    assert proc.wait(5) == -15
    root2, cid2 = root, cid
    assert Container.load(cid2, root2).status() == "stopped"


def test_force_delete_running(fake):
    root, cid, proc = fake
    os.unlink(os.path.join(root, cid, st.NOTIFY_SOCK))
    Container.load(cid, root).delete(force=True)
    assert proc.wait(5) == -9
    assert not os.path.exists(os.path.join(root, cid))


def test_creating_status_and_list(fake, tmp_path):
    """A dir without state.json is being created while its creator holds the lock, and
    a create that died (lock free) otherwise: stopped, never to run."""
    import fcntl

    root, cid, proc = fake
    half = os.path.join(root, "half")
    os.mkdir(half)
    lock = os.open(half, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as create holds it: on the state dir itself
        assert Container.load("half", root).status() == "creating"
        names = [(c.id, c.status()) for c in Container.list(root)]
        assert names == [("fake1", "created"), ("half", "creating")]
    finally:
        os.close(lock)
    assert Container.load("half", root).status() == "stopped"
    # A create of a runh that locked a `lock` file in the dir is seen as in progress too.
    with open(os.path.join(half, st.LOCK_FILE), "w") as old:
        fcntl.flock(old, fcntl.LOCK_EX)
        assert Container.load("half", root).status() == "creating"
    assert Container.load("half", root).status() == "stopped"
    Container("half", root).delete()
    assert not os.path.exists(half)


def test_lock_serialises(tmp_path):
    sdir = str(tmp_path)
    order = []

    def second():
        with st.Lock(sdir):
            order.append("second")

    with st.Lock(sdir):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.1)
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]


def test_duplicate_id_leaves_existing(fake, tmp_path):
    root, cid, proc = fake
    b = tmp_path / "b"
    (b / "rootfs").mkdir(parents=True)
    from runh.spec import default_spec
    spec = default_spec()
    spec["process"]["terminal"] = False
    (b / "config.json").write_text(dumps(spec))
    before = open(os.path.join(root, cid, st.STATE_FILE)).read()
    from runh.errors import ContainerExists
    with pytest.raises(ContainerExists, match=f"container with id exists: {cid}"):
        Container.create(cid, bundle=str(b), root=root)
    assert open(os.path.join(root, cid, st.STATE_FILE)).read() == before
    assert Container.load(cid, root).status() == "created"


def test_cli_state_output_layout(fake):
    root, cid, proc = fake
    r = subprocess.run([os.path.join(REPO, ".venv", "bin", "python"), "-m", "runh", "--root", root,
                        "state", cid], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "python")))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('{\n  "ociVersion": "1.3.0",\n  "id": "fake1",\n')
    assert loads(r.stdout)["status"] == "created"
    r = subprocess.run([os.path.join(REPO, ".venv", "bin", "python"), "-m", "runh", "--root", root,
                        "ps", "--format", "json", cid], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "python")))
    assert loads(r.stdout) == [proc.pid]
