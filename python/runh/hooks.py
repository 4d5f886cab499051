"""The OCI hooks that run in the runtime namespace, run by the runh process itself.

runtime.md "Lifecycle" and config.md "POSIX-platform Hooks" place them:
- prestart (deprecated, still used by e.g. older network plugins) and createRuntime: during
  `create`, once runh-init reports that the namespaces exist and the rootfs mounts are in
  place, before pivot_root (rust/src/clone.rs calls `Create.__call__` with init's pid);
- createContainer and startContainer run inside the container, by runh-init
  (rust/src/hooks.rs): this module only hands init the state JSON for them;
- poststart: after `start` has made the container's process run;
- poststop: after `delete` has removed the container.

Each hook gets the state JSON on stdin, exactly its `env` (runh's own environment when it
has none, as runc and crun), its `args` (argv[0] included), and is killed after `timeout`
seconds. A failing prestart/createRuntime/createContainer/startContainer hook fails the
operation (create tears the container down); a failing poststart or poststop hook is only
logged as a warning, and the hooks after it still run.

Imported only when the config has hooks: subprocess costs about 10 ms to import, which no
hookless container pays.
"""

from runh.errors import RunhError

# Hooks that make `create` stop init at the hooks point.
AT_CREATE = ("prestart", "createRuntime", "createContainer", "startContainer")
# Kept in state.json for later commands.
LATER = ("poststart", "poststop")


class HookError(RunhError):
    """A hook failed, timed out or could not be run."""


def wanted_at_create(hooks):
    return bool(hooks) and any(hooks.get(k) for k in AT_CREATE)


def for_state(hooks):
    """The hooks that later commands (start, delete) run, or None."""
    if not hooks:
        return None
    later = {k: hooks[k] for k in LATER if hooks.get(k)}
    return later or None


def state_bytes(state):
    from runh.jsonio import dumps

    # Compact JSON: runh-init rewrites `"status":"creating"` for startContainer.
    return dumps(state).encode()


def run_one(kind, index, hook, state):
    import subprocess

    path = hook["path"]
    args = hook.get("args") or [path]
    env = None  # no `env`: runh's own environment, as runc and crun give it
    if "env" in hook and hook["env"] is not None:
        env = {}
        for item in hook["env"]:
            k, _, v = item.partition("=")
            env[k] = v
    timeout = hook.get("timeout")
    name = f"{kind} hook #{index} ({path})"
    try:
        p = subprocess.run(args, executable=path, env=env, input=state, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, close_fds=True)
    except subprocess.TimeoutExpired:
        raise HookError(f"{name} timed out after {timeout} s") from None
    except OSError as e:
        raise HookError(f"{name}: cannot run: {e.strerror}", e.errno or 0) from None
    if p.returncode != 0:
        how = f"killed by signal {-p.returncode}" if p.returncode < 0 else f"exit status {p.returncode}"
        out = p.stdout.decode(errors="replace").strip()
        raise HookError(f"error running {name}: {how}" + (f": {out}" if out else ""))


def run(kind, hooks, state):
    """Run hooks[kind] in order; the first failure raises HookError."""
    for i, hook in enumerate(hooks.get(kind) or ()):
        run_one(kind, i, hook, state)


def run_warn(kind, hooks, state):
    """Run every hooks[kind]; each failure is logged as a warning and the rest still run
    (poststart, poststop: runtime.md "Lifecycle" steps 9 and 12). runc 1.1 stops at the
    first failure instead (and kills the container on a poststart one)."""
    for i, hook in enumerate(hooks.get(kind) or ()):
        try:
            run_one(kind, i, hook, state)
        except RunhError as e:
            from runh import log

            log.logger.warn(str(e))


class Create:
    """The callback `_core.create(on_hooks=...)` calls with init's pid at the hooks point:
    runs prestart then createRuntime and returns the state JSON (status "creating") that
    init gives to createContainer and startContainer."""

    def __init__(self, hooks, state):
        self.hooks = hooks
        self.state = dict(state, status="creating")

    def __call__(self, pid):
        self.state["pid"] = pid
        data = state_bytes(self.state)
        run("prestart", self.hooks, data)
        run("createRuntime", self.hooks, data)
        return data
