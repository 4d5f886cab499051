"""What loading the extension (`import runh._core`, paid by every runh call) costs, and
that making it cheaper kept what matters.

rust/build.rs links libgcc's unwinder into the extension instead of loading libgcc_s.so.1
(a second library, and CPUID traps in its constructor on a VM); the seccomp syscall tables
hold no pointers (rust/src/seccomp/arch.rs `Table`), so the loader relocates 1,875 fewer
words. Each is checked here in a fresh interpreter, as a runh call loads it.
"""
import os
import subprocess
import sys

import runh

PKG = os.path.dirname(runh.__file__)
CORE = os.path.join(PKG, "_core.abi3.so")


def py(code):
    """Run `code` in a fresh interpreter that imports runh from this tree."""
    return subprocess.run([sys.executable, "-I", "-S", "-c",
                           f"import sys; sys.path.insert(0, {os.path.dirname(PKG)!r}); {code}"],
                          capture_output=True, text=True, timeout=30)


def test_panic_in_core_is_a_python_exception():
    """A Rust panic unwinds to PyO3's boundary and is raised as PanicException: the
    statically linked unwinder works in the loaded extension (an abort would kill runh
    mid-create, leaving its state for `delete --force`)."""
    r = py("import runh._core as c\n"
           "try:\n"
           "    c._test_panic('core panic 42')\n"
           "except BaseException as e:\n"
           "    print(type(e).__name__, e)\n"
           "print('alive')")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["PanicException core panic 42", "alive"], r.stdout + r.stderr


def test_import_loads_no_libgcc_s():
    """libgcc_s.so.1 is not mapped after the import (Python itself never needs it)."""
    r = py("import runh._core; print(open('/proc/self/maps').read())")
    assert r.returncode == 0, r.stderr
    assert "_core.abi3.so" in r.stdout
    assert "libgcc_s" not in r.stdout


def test_core_exports_only_its_init():
    """The linked-in unwinder stays private: the extension exports PyInit__core alone, so
    it can never interpose on another library's _Unwind_* in the same interpreter."""
    r = subprocess.run(["nm", "-D", "--defined-only", CORE], capture_output=True, text=True)
    if r.returncode != 0:
        import pytest
        pytest.skip(f"nm: {r.stderr.strip()}")
    names = [line.split()[-1] for line in r.stdout.splitlines() if line.split()[1:2] != ["A"]]
    assert names == ["PyInit__core"], names


def test_sdbus_is_made_on_first_use():
    """SdBus (the systemd driver's D-Bus client) is created by the module's __getattr__ on
    first use, not at import; unknown names still raise AttributeError."""
    r = py("import runh._core as c\n"
           "assert 'SdBus' not in vars(c)\n"
           "from runh._core import SdBus\n"
           "assert c.SdBus is SdBus and SdBus.__module__ == 'runh._core', SdBus\n"
           "try:\n"
           "    c.no_such_name\n"
           "except AttributeError as e:\n"
           "    print(e)\n"
           "print(sorted(n for n in c.__all__ if n.startswith('_')))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["module 'runh._core' has no attribute 'no_such_name'", "['_test_panic']"]
