"""Module images (runh/_image.py): create's and run's runh modules executed from one file.

What must hold: with a fresh image, a create or run imports no runh module through
importlib (only the extension, runh._core); an image whose sources changed executes
nothing; a module body that raises leaves no module of the image behind; the modules
are the same objects however they are reached; a failed call writes no image.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import REPO, RUNH, edit_config

PKG = os.path.join(REPO, "python", "runh")
PY = os.path.join(os.path.dirname(RUNH), "python3")
TAG = sys.implementation.cache_tag


def boot():
    """BOOT as the launcher runs it for create and run: its three raw strings, in order."""
    with open(os.path.join(REPO, "rust", "launcher", "src", "python.rs")) as f:
        parts = re.findall(r'r#"(.*?)"#', f.read(), re.S)
    assert len(parts) == 3
    return "".join(parts)


def imported_runh_modules(stderr):
    """The runh modules that -X importtime reports, i.e. that importlib imported."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", stderr, re.M)
    return [n for n in names if n == "runh" or n.startswith("runh.")]


@pytest.mark.parametrize("command", ["create", "run"])
def test_hot_path_imports_nothing_through_importlib(runh, ctx, bundle, command):
    edit_config(bundle, lambda c: c["process"].update(args=["true"]))
    image = os.path.join(PKG, "__pycache__", f"{command}.{TAG}.image")
    # A fresh image that lacks most of the command's modules (as one written where another
    # cgroup driver was used): the launcher's call imports them and writes it again.
    code = ("import sys; sys.path.append(%r)\nimport runh.cli\n"
            "from runh import _image; _image.build(%r)\n") % (os.path.dirname(PKG), image)
    r = subprocess.run([PY, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    cid = ctx.new_id()
    r = runh(command, "--bundle", bundle, cid)
    assert r.returncode == 0, r.stderr
    runh("delete", "--force", cid)
    assert os.path.isfile(image)
    assert os.stat(image).st_mode & 0o777 == 0o644
    cid = ctx.new_id()
    argv = [PY, "-X", "importtime", "-I", "-S", "-c", boot(), os.path.dirname(PKG),
            os.path.dirname(os.path.dirname(PY)), command, "--root", ctx.root, command,
            "--bundle", bundle, cid]
    # Files, not pipes: a created container holds its stdio until it is deleted.
    with tempfile.TemporaryFile("w+") as err:
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                               timeout=60)
        finally:
            runh("delete", "--force", cid)
        err.seek(0)
        stderr = err.read()
    assert r.returncode == 0, stderr
    assert imported_runh_modules(stderr) == ["runh._core"]


@pytest.fixture
def pkg(ctx):
    """A copy of the runh package (sources only) and its create image."""
    top = ctx.path("pkg")
    shutil.copytree(PKG, os.path.join(top, "runh"), symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "runh-init"))
    code = ("import sys; sys.path.append(%r)\n"
            "import runh.cli, runh.cli._argv, runh.cli.create, runh.container, runh.spec, runh.state\n"
            "from runh import _image; _image.build(_image.path(%r, 'create'))\n") % (top, top)
    r = subprocess.run([PY, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return top


LOAD = """
import sys, marshal
sys.path.append(%r)
with open(%r, "rb") as f:
    loader, entries = marshal.loads(f.read())
%s
try:
    exec(loader, {"E": entries, "sys": sys})
except BaseException as e:
    print("raised", type(e).__name__, e)
print(sorted(m for m in sys.modules if m == "runh" or m.startswith("runh.")))
"""


def load(top, tweak="", importtime=False):
    image = os.path.join(top, "runh", "__pycache__", f"create.{TAG}.image")
    argv = [PY, *(["-X", "importtime"] if importtime else []), "-I", "-S", "-c", LOAD % (top, image, tweak)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def test_image_modules_are_the_modules(pkg):
    check = """
import runh.container, runh.errors, runh.cli
assert runh.container.ConfigError is runh.errors.ConfigError
assert sys.modules["runh"].container is runh.container
assert runh.container.__spec__.origin == runh.container.__file__ == %r
assert runh.cli.__path__ == [%r] and runh.cli.__package__ == "runh.cli"
assert runh.state.__package__ == "runh"
print("same objects")
""" % (os.path.join(pkg, "runh", "container.py"), os.path.join(pkg, "runh", "cli"))
    r = load(pkg, importtime=True)
    assert "raised" not in r.stdout, r.stdout
    assert imported_runh_modules(r.stderr) == []
    r = subprocess.run([PY, "-I", "-S", "-c", LOAD % (pkg, os.path.join(
        pkg, "runh", "__pycache__", f"create.{TAG}.image"), "") + check],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "same objects" in r.stdout


def test_stale_image_executes_nothing(pkg):
    st = os.stat(os.path.join(pkg, "runh", "state.py"))
    os.utime(os.path.join(pkg, "runh", "state.py"), ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    r = load(pkg)
    assert "raised ImportError stale image" in r.stdout
    assert r.stdout.strip().endswith("[]")


def test_own_source_change_makes_it_stale(pkg):
    with open(os.path.join(pkg, "runh", "_image.py"), "a") as f:
        f.write("\n")
    assert "raised ImportError stale image" in load(pkg).stdout


def test_raising_body_leaves_no_module(pkg):
    # The image's entries with one more module, whose body raises, after the others.
    tweak = ("entries = entries[:-1] + ((\"runh.boom\",) + entries[0][1:5] + "
             "(compile('raise RuntimeError(\"boom\")', 'boom', 'exec'),),) + entries[-1:]")
    r = load(pkg, tweak)
    assert "raised RuntimeError boom" in r.stdout
    assert r.stdout.strip().endswith("[]")


def test_failed_call_writes_no_image(runh, ctx, bundle):
    image = os.path.join(PKG, "__pycache__", f"create.{TAG}.image")
    keep = image + ".keep"
    if os.path.exists(image):
        os.rename(image, keep)
    try:
        r = runh("create", "--bundle", ctx.path("no-such-bundle"), ctx.new_id())
        assert r.returncode != 0
        assert not os.path.exists(image)
    finally:
        if os.path.exists(keep):
            os.rename(keep, image)


def test_image_code_has_no_docstrings_but_keeps_asserts(pkg, ctx):
    mod = os.path.join(pkg, "runh", "probe.py")
    with open(mod, "w") as f:
        f.write('"""module doc"""\n\ndef f():\n    """f doc"""\n\n\nclass C:\n    "C doc"\n\n'
                'def g(x):\n    assert x, "assert kept"\n    return x\n')
    code = ("import sys; sys.path.append(%r)\nimport runh.probe\n"
            "from runh import _image; _image.build(%r)\n") % (pkg, ctx.path("probe.image"))
    r = subprocess.run([PY, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    check = """
import sys, marshal
sys.path.append(%r)
loader, entries = marshal.loads(open(%r, "rb").read())
names = [e[0] for e in entries]
assert names.count("runh._image") == 1 and names[-1] == "runh._image" and entries[-1][5] is None
exec(loader, {"E": entries, "sys": sys})
import runh.probe as p
assert p.__doc__ is None and p.f.__doc__ is None and p.C.__doc__ is None
try:
    p.g(0)
except AssertionError as e:
    print("kept:", e)
""" % (pkg, ctx.path("probe.image"))
    r = subprocess.run([PY, "-I", "-S", "-c", check], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "kept: assert kept" in r.stdout


def test_stale_image_is_rewritten(runh, ctx, bundle):
    """A source newer than the image: the next create runs on normal imports, then writes
    a fresh image, which the loader accepts again."""
    edit_config(bundle, lambda c: c["process"].update(args=["true"]))
    image = os.path.join(PKG, "__pycache__", f"create.{TAG}.image")
    src = os.path.join(PKG, "spec.py")
    st = os.stat(src)
    cid = ctx.new_id()
    assert runh("create", "--bundle", bundle, cid).returncode == 0
    runh("delete", "--force", cid)
    before = os.stat(image).st_ino
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        cid = ctx.new_id()
        r = runh("create", "--bundle", bundle, cid)
        assert r.returncode == 0, r.stderr
        runh("delete", "--force", cid)
        assert os.stat(image).st_ino != before
        check = ("import sys, marshal\nsys.path.append(%r)\nl, e = marshal.loads(open(%r, 'rb').read())\n"
                 "exec(l, {'E': e, 'sys': sys})\nprint('fresh', 'runh.spec' in sys.modules)\n") % (
                     os.path.dirname(PKG), image)
        r = subprocess.run([PY, "-I", "-S", "-c", check], capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == "fresh True", r.stderr
    finally:
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_unchanged_image_is_not_rewritten(pkg):
    """A module the image cannot place goes through importlib each call; the image then
    stays as it is rather than being written again by every call."""
    image = os.path.join(pkg, "runh", "__pycache__", f"create.{TAG}.image")
    before = os.stat(image)
    code = ("import sys; sys.path.append(%r)\n"
            "import runh.cli, runh.cli._argv, runh.cli.create, runh.container, runh.spec, runh.state\n"
            "from runh import _image; _image.build(%r)\n") % (pkg, image)
    r = subprocess.run([PY, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    after = os.stat(image)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
