"""Random exec command lines, run by the native launcher and by the Python CLI: the same
exit code, output and error, whatever the mix of flags, their order, repeats and odd
values. test_launcher.py checks each option alone; this checks them together, where a
parser that takes the last of a repeated option, or reads "" or "-1" differently, would
make the two paths part. The draws are derandomized (the same examples on every run), so
CI sees a fixed set; RUNH_FUZZ_EXAMPLES=N draws N fresh ones instead (400 agreed when
this was written).

What the process prints is what the flags can change: ids, groups, caps, NoNewPrivs,
cwd and the environment."""

import os
import re

import pytest

from test_exec import running  # noqa: F401  (fixture)
from test_launcher import MODES, _env, pytestmark  # noqa: F401

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

PROBE = ("id; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs)' /proc/self/status; pwd; "
         "env | grep -v -E '^(HOSTNAME|PWD|SHLVL)=' | sort")
ODD = st.sampled_from(["", "0", "-1", "abc", "1000:x", "x:1000", "65534", "1000:1000", "/", "/tmp",
                       "/nonexistent", "A=1", "A=", "=B", "PATH=/x", "chown", "CAP_CHOWN",
                       "cap_sys_admin", "CAP_BOGUS", "unconfined", "+1", "2"])


def _option(name, values=ODD):
    return st.tuples(st.just(name), values)


OPTIONS = st.lists(st.one_of(
    _option("--cwd"), _option("-e"), _option("--env"), _option("-u"), _option("--user"),
    _option("-g"), _option("--additional-gids"), _option("-c"), _option("--cap"),
    _option("--apparmor"), _option("--process-label"), _option("--preserve-fds"),
    st.tuples(st.just("--no-new-privs"), st.none()), st.tuples(st.just("--ignore-paused"), st.none()),
    st.tuples(st.just("--no-subreaper"), st.none()),
), max_size=6)


def _argv(options, equals):
    out = []
    for name, value in options:
        if value is None:
            out.append(name)
        elif equals and name.startswith("--"):
            out.append(f"{name}={value}")
        else:
            out += [name, value]
    return out


def _untimed(text):
    return re.sub(r'time="[^"]*"', "", text)


@settings(max_examples=int(os.environ.get("RUNH_FUZZ_EXAMPLES", "60")), deadline=None,
          derandomize=not os.environ.get("RUNH_FUZZ_EXAMPLES"),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(options=OPTIONS, equals=st.booleans())
def test_random_exec_lines_agree(runh, running, options, equals):  # noqa: F811
    """(Foreground only: a detached process may print after runh has returned.)"""
    if "cid" not in _CONTAINER:
        _CONTAINER["cid"] = running()[0]
    cid = _CONTAINER["cid"]
    argv = ["exec", *_argv(options, equals), cid, "sh", "-c", PROBE]
    got = {}
    for mode in MODES:
        r = runh(*argv, env=_env(mode))
        got[mode] = (r.returncode, r.stdout, _untimed(r.stderr))
    assert got["native"] == got["python"], argv


_CONTAINER = {}


@pytest.fixture(autouse=True)
def _forget_container():
    """`running` is function-scoped: hypothesis reuses one call's fixtures for all the
    examples of that call, so the container id lives for one test call."""
    yield
    _CONTAINER.clear()
