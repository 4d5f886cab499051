"""How the launcher's handoff finds the Python package (rust/launcher/src/python.rs, BOOT).

The launcher runs `python3 -I -S -c BOOT <package dir> <prefix> argv...`: it has found the
directory that holds `runh/` itself (the same walk that finds runh-init), so the
interpreter imports runh.cli at the first try, in each install layout:

- a wheel's: `<prefix>/lib/python3.11/site-packages/runh/` (or Debian's dist-packages);
- `make build`'s (maturin develop): site-packages/runh.pth names the directory.

and in the editable one the site-packages directory is not searched (listed) on the way,
which its first, failing import used to do on every call. The package directory is
appended after the standard library: a module planted there under a stdlib name (`_json`,
which `list --format json` imports) does not shadow it. Each layout is a private prefix:
the launcher and the interpreter copied into <prefix>/bin, the package linked.
"""

import os
import shutil
import subprocess

import pytest

from conftest import REPO, RUNH, Runner

PKG = os.path.join(REPO, "python", "runh")
# Imported instead of the stdlib's _json only if it came first on sys.path.
POISON = "import posix\nposix.write(2, b'planted _json imported\\n')\nposix._exit(99)\n"

pytestmark = pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")


def _prefix(ctx, layout):
    """<prefix>/bin/{runh,python3} and the package in `layout`; returns the Runner."""
    prefix = ctx.path("inst-" + layout)
    lib = os.path.join(prefix, "lib", "python3.11")
    os.makedirs(os.path.join(prefix, "bin"))
    shutil.copy2(os.path.realpath(RUNH), os.path.join(prefix, "bin", "runh"))
    os.symlink(os.path.realpath(os.path.join(os.path.dirname(RUNH), "python3")),
               os.path.join(prefix, "bin", "python3"))
    site = os.path.join(lib, "dist-packages" if layout == "dist" else "site-packages")
    os.makedirs(site)
    if layout == "pth":
        where = ctx.path("src-" + layout)  # the package's dir, as a source tree's python/
        os.makedirs(where)
        with open(os.path.join(site, "runh.pth"), "w") as f:
            f.write(where + "\n")
    else:
        where = site
    os.symlink(PKG, os.path.join(where, "runh"))
    for d in {where, site}:
        with open(os.path.join(d, "_json.py"), "w") as f:
            f.write(POISON)
    return Runner(os.path.join(prefix, "bin", "runh"), ctx.root), site


@pytest.mark.parametrize("layout", ["site", "dist", "pth"])
def test_package_found_first_try(ctx, layout):
    runner, site = _prefix(ctx, layout)
    trace = ctx.path("trace")
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat", "-o", trace,
                        *runner.argv("list", "--format", "json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"  # the stdlib's _json, not the planted one
    if layout == "pth":  # elsewhere site-packages is where the package is found
        with open(trace) as f:
            listed = [ln for ln in f if "O_DIRECTORY" in ln and f'"{site}"' in ln]
        assert listed == [], "site-packages was searched: " + "".join(listed)


def test_cold_imports_reach_site_packages(ctx):
    """What runh imports only off the hot path (click, for --help) is still found in the
    prefix's site-packages, which BOOT appends after the package's dir."""
    runner, site = _prefix(ctx, "pth")
    click = os.path.dirname(__import__("click").__file__)
    os.symlink(click, os.path.join(site, "click"))
    r = runner("--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: runh" in r.stdout
