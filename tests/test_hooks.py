"""OCI hooks: every kind, their order, the state on stdin, the namespace each runs in, env
and args, timeouts, and what a failure does (fatal before the program runs, a warning after)."""

import json
import os
import time

import pytest

from conftest import edit_config, run_container

HOST_MNT = os.readlink("/proc/self/ns/mnt")
CREATE_KINDS = ("prestart", "createRuntime", "createContainer")


def _hook(kind, script, **extra):
    # Each hook writes its stdin to <D>/<kind>.json and its name to <D>/order; D is the
    # test dir on the host, /log inside the container (startContainer runs there).
    d = "/log" if kind == "startContainer" else "$D"
    body = f'cat > {d}/{kind}.json; readlink /proc/self/ns/mnt > {d}/{kind}.mnt; echo {kind} >> {d}/order; {script}'
    return dict({"path": "/bin/sh", "args": ["sh", "-c", body]}, **extra)


def _with_hooks(ctx, hooks, main="echo main >> /log/order"):
    logdir = ctx.path("log")
    os.makedirs(logdir, exist_ok=True)

    def edit(c):
        c["process"]["args"] = ["sh", "-c", main]
        c["mounts"].append({"destination": "/log", "type": "bind", "source": logdir, "options": ["rbind"]})
        c["hooks"] = {k: [dict(h, env=h.get("env", [f"D={logdir}"])) for h in v] for k, v in hooks.items()}
    return edit, logdir


def _read(logdir, name):
    with open(os.path.join(logdir, name)) as f:
        return f.read()


ALL = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def test_every_hook_in_order_with_state(runh, ctx, make_bundle):
    edit, logdir = _with_hooks(ctx, {k: [_hook(k, "true")] for k in ALL},
                               main="sleep 0.2; echo main >> /log/order")
    b = make_bundle(edit=edit)
    cid = ctx.new_id()
    r = runh("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    order = _read(logdir, "order").split()
    assert [k for k in order if k != "main"] == list(ALL)
    assert order.index("main") > order.index("startContainer")
    states = {k: json.loads(_read(logdir, f"{k}.json")) for k in ALL}
    for k, s in states.items():
        assert s["id"] == cid and s["bundle"] == b and s["ociVersion"], (k, s)
    assert {states[k]["status"] for k in CREATE_KINDS} == {"creating"}
    assert states["startContainer"]["status"] == "created"
    assert states["poststart"]["status"] in ("running", "stopped")
    assert states["poststop"]["status"] == "stopped"
    pid = states["prestart"]["pid"]
    assert pid > 0 and all(states[k]["pid"] == pid for k in (*CREATE_KINDS, "startContainer"))
    # Runtime namespace for prestart/createRuntime/poststart/poststop, the container's
    # for createContainer and startContainer.
    for k in ("prestart", "createRuntime", "poststart", "poststop"):
        assert _read(logdir, f"{k}.mnt").strip() == HOST_MNT, k
    for k in ("createContainer", "startContainer"):
        assert _read(logdir, f"{k}.mnt").strip() != HOST_MNT, k


def test_create_hooks_run_before_start(runh, ctx, make_bundle):
    edit, logdir = _with_hooks(ctx, {k: [_hook(k, "true")] for k in ALL})
    b = make_bundle(edit=edit)
    cid = ctx.new_id()
    assert runh("create", "--bundle", b, cid).returncode == 0
    try:
        assert _read(logdir, "order").split() == ["prestart", "createRuntime", "createContainer"]
        assert runh("start", cid).returncode == 0
        runh.wait_status(cid, "stopped")
        order = _read(logdir, "order").split()
        assert order[:4] == ["prestart", "createRuntime", "createContainer", "startContainer"]
        assert "poststart" in order and "poststop" not in order
    finally:
        runh("delete", "--force", cid)
    assert _read(logdir, "order").split()[-1] == "poststop"


def test_env_and_args_exactly_as_given(runh, ctx, make_bundle):
    logdir = ctx.path("log")
    os.makedirs(logdir)
    out = os.path.join(logdir, "env")
    hook = {"path": "/bin/sh", "args": ["my-argv0", "-c", f'echo "$0" > {out}; env >> {out}'],
            "env": ["HOOKVAR=v 1", "PATH=/bin"]}
    b = make_bundle(args=["true"], edit=lambda c: c.update(hooks={"createRuntime": [hook]}))
    r = run_container(runh, ctx, b)
    assert r.returncode == 0, r.stderr
    lines = _read(logdir, "env").splitlines()
    assert lines[0] == "my-argv0"
    env = dict(l.split("=", 1) for l in lines[1:])
    assert env["HOOKVAR"] == "v 1" and env["PATH"] == "/bin"
    assert "HOME" not in env and "RUNH_TEST" not in env


@pytest.mark.parametrize("kind", CREATE_KINDS + ("startContainer",))
def test_failing_hook_is_fatal_and_leaves_nothing(runh, ctx, make_bundle, kind):
    edit, logdir = _with_hooks(ctx, {kind: [_hook(kind, "echo boom-$$ >&2; exit 3")],
                                     "poststart": [_hook("poststart", "true")]})
    b = make_bundle(edit=edit)
    r = run_container(runh, ctx, b)
    assert r.returncode != 0
    assert kind in r.stderr and "exit status 3" in r.stderr and "boom-" in r.stderr, r.stderr
    order = _read(logdir, "order").split()
    assert "main" not in order and "poststart" not in order
    assert os.listdir(ctx.root) == []


@pytest.mark.parametrize("kind", ("createRuntime", "createContainer"))
def test_hook_timeout_kills_it(runh, ctx, make_bundle, kind):
    edit, logdir = _with_hooks(ctx, {kind: [_hook(kind, "sleep 30", timeout=1)]})
    b = make_bundle(edit=edit)
    t0 = time.monotonic()
    r = run_container(runh, ctx, b)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 10
    assert "timed out" in r.stderr, r.stderr
    assert os.listdir(ctx.root) == []


def test_failing_poststart_and_poststop_only_warn(runh, ctx, make_bundle):
    edit, logdir = _with_hooks(ctx, {k: [_hook(k, "exit 7")] for k in ("poststart", "poststop")})
    b = make_bundle(edit=edit)
    r = run_container(runh, ctx, b)
    assert r.returncode == 0, r.stderr
    assert "poststart" in r.stderr and "poststop" in r.stderr and "warning" in r.stderr, r.stderr
    assert _read(logdir, "order").split() == ["main", "poststart", "poststop"] or \
        sorted(_read(logdir, "order").split()) == ["main", "poststart", "poststop"]


def test_missing_hook_program(runh, ctx, make_bundle):
    b = make_bundle(args=["true"], edit=lambda c: c.update(
        hooks={"createRuntime": [{"path": ctx.path("no-such-hook")}]}))
    r = run_container(runh, ctx, b)
    assert r.returncode != 0 and "no-such-hook" in r.stderr, r.stderr
    assert os.listdir(ctx.root) == []


def test_no_hooks_module_without_hooks(runh, ctx, make_bundle):
    # The hot path: a hookless config never imports runh.hooks (and its subprocess).
    b = make_bundle(args=["true"])
    cid = ctx.new_id()
    env = dict(os.environ, PYTHONVERBOSE="1")
    r = runh("run", "--bundle", b, cid, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "runh.hooks" not in r.stderr and "import 'subprocess'" not in r.stderr
