"""Build a busybox OCI bundle: the one bundle builder for tests, the demo and the benchmarks.

Stdlib and the runh package only (the rootfs builder and the built-in spec are the
package's, runh.bench.bundle and runh.spec), so `make run`, `benches/` and `tests/` can
all import it:

    sys.path.insert(0, "<repo>/tests"); from bundle import build_bundle
    build_bundle("/tmp/b", args=["/bin/true"])   # -> "/tmp/b" with config.json + rootfs/

The rootfs is Debian's busybox-static with one symlink per applet, plus the few files
that `id`, `ps` and `ls -l` want (/etc/passwd, /etc/group). config.json comes from the
default spec of a runtime (`runh spec` if it works, else `runc spec`, else
runh.spec.default_spec() called in-process), so tests exercise the same defaults a user
gets, with terminal and args set by the caller.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

BUSYBOX = os.environ.get("RUNH_TEST_BUSYBOX", "/bin/busybox")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNH = os.environ.get("RUNH", os.path.join(REPO, ".venv", "bin", "runh"))

try:
    import runh  # noqa: F401  (installed in the venv by `make build`)
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, os.path.join(REPO, "python"))
from runh.bench import bundle as _bundle  # noqa: E402
from runh.spec import default_spec as _runh_default_spec  # noqa: E402

_default_spec_cache = {}


def _spec_from(cmd):
    with tempfile.TemporaryDirectory(prefix="rh-spec-") as d:
        try:
            r = subprocess.run(cmd + ["spec"], cwd=d, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        path = os.path.join(d, "config.json")
        if r.returncode != 0 or not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)


def default_spec(source=None):
    """The default config as a dict. source: "runh", "runc", "builtin" or None (first that works).

    RUNH_TEST_SPEC=runc|builtin forces a source (e.g. while `runh spec` is broken).
    """
    source = source or os.environ.get("RUNH_TEST_SPEC")
    order = [source] if source else ["runh", "runc", "builtin"]
    for src in order:
        if src in _default_spec_cache:
            return json.loads(json.dumps(_default_spec_cache[src]))
        if src == "runh":
            spec = _spec_from([RUNH]) if os.access(RUNH, os.X_OK) else None
        elif src == "runc":
            runc = shutil.which("runc")
            spec = _spec_from([runc]) if runc else None
        else:
            # runh's own defaults without running it (e.g. `make run` before the CLI
            # works, on a machine without runc), with the terminal off as runc's test
            # bundles have it.
            spec = _runh_default_spec()
            spec["process"]["terminal"] = False
        if spec is not None:
            _default_spec_cache[src] = spec
            return json.loads(json.dumps(spec))
    raise RuntimeError(f"no default spec from {order}")


def applets(busybox=BUSYBOX):
    return _bundle.applets(busybox)


def build_rootfs(path, busybox=BUSYBOX, template=None):
    """A busybox rootfs at `path` (runh.bench.bundle.build_rootfs). With `template` (a
    rootfs built earlier) the binary is hard-linked instead of copied when on the same
    filesystem."""
    return _bundle.build_rootfs(path, busybox=busybox, template=template)


def build_bundle(dir, args=None, terminal=False, *, spec=None, template=None, edit=None):
    """Make an OCI bundle in `dir` (created if missing) and return its path.

    args: process.args (default: the spec's). terminal: process.terminal.
    spec: a config dict to start from (default: default_spec()).
    template: an earlier rootfs to hard-link busybox from.
    edit: a callable(config_dict) that changes the config in place before it is written.
    """
    os.makedirs(dir, exist_ok=True)
    build_rootfs(os.path.join(dir, "rootfs"), template=template)
    config = json.loads(json.dumps(spec)) if spec is not None else default_spec()
    config["root"]["path"] = "rootfs"
    config["process"]["terminal"] = bool(terminal)
    if args is not None:
        config["process"]["args"] = list(args)
    if edit is not None:
        edit(config)
    write_config(dir, config)
    return dir


def read_config(bundle):
    with open(os.path.join(bundle, "config.json")) as f:
        return json.load(f)


def write_config(bundle, config):
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def edit_config(bundle, fn):
    """Load the bundle's config.json, let fn change it in place, write it back."""
    config = read_config(bundle)
    fn(config)
    write_config(bundle, config)
    return config


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 2:
        sys.exit("usage: bundle.py DIR [ARG...]")
    print(build_bundle(sys.argv[1], args=sys.argv[2:] or None))
