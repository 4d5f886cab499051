"""The CLI without containers: argv parsing (both parsers, one table), signals, errors and
JSON log lines, spec, features, --version, checkpoint --help, the hot-path import rule."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYSRC = os.path.join(REPO, "python")
sys.path.insert(0, PYSRC)

from runh import signals  # noqa: E402
from runh.cli import _argv, main  # noqa: E402
from runh.cli._table import COMMANDS, GLOBAL_OPTIONS  # noqa: E402
from runh.errors import UsageError  # noqa: E402

PY = os.path.join(REPO, ".venv", "bin", "python")


def cli(*args, **kw):
    """Run `python -m runh` from the source tree (works before the Rust core is built)."""
    env = dict(os.environ, PYTHONPATH=PYSRC)
    return subprocess.run([PY, "-m", "runh", *args], capture_output=True, text=True, env=env,
                          timeout=60, **kw)


def fast(argv):
    """The fast parser's view: (globals, command module, opts, args) or None."""
    gi = _argv.parse_globals(argv, GLOBAL_OPTIONS)
    if gi is None:
        return None
    g, i = gi
    import importlib

    mod = importlib.import_module("runh.cli." + COMMANDS[argv[i]])
    r = _argv.parse_command(argv[i + 1:], mod)
    return None if r is None else (g, mod, r[0], r[1])


@pytest.mark.parametrize("argv", [
    ["--root", "/x", "state", "c1"],
    ["--root=/x", "state", "c1"],
])
def test_root_both_forms(argv):
    g, mod, o, args = fast(argv)
    assert g.root == "/x" and mod.__name__ == "runh.cli.state" and args == ["c1"]


def test_global_defaults_and_all_flags():
    g, _, _, _ = fast(["state", "c"])
    assert (g.root, g.log, g.log_format, g.debug, g.systemd_cgroup, g.rootless) == \
        ("/run/runh", None, "text", False, False, "auto")
    g, _, _, _ = fast(["--root", "/r", "--log", "/l.json", "--log-format=json", "--debug",
                       "--systemd-cgroup", "--rootless=false", "--criu", "x", "state", "c"])
    assert (g.root, g.log, g.log_format, g.debug, g.systemd_cgroup, g.rootless) == \
        ("/r", "/l.json", "json", True, True, "false")


def test_create_as_go_runc_calls_it():
    g, mod, o, args = fast(["--root", "/run/containerd/runc/k8s.io", "--log", "/b/log.json",
                            "--log-format", "json", "create", "--bundle", "/b", "--pid-file",
                            "/b/init.pid", "--console-socket", "/tmp/pty.sock", "--no-pivot",
                            "--no-new-keyring", "--detach", "--preserve-fds", "2", "cid"])
    assert mod.__name__ == "runh.cli.create" and args == ["cid"]
    assert o["bundle"] == "/b" and o["pid_file"] == "/b/init.pid"
    assert o["console_socket"] == "/tmp/pty.sock" and o["no_pivot"] and o["no_new_keyring"]
    assert o["preserve_fds"] == 2


def test_short_aliases_and_equals():
    _, _, o, args = fast(["run", "-d", "-b=/b", "--pid-file=/p", "id"])
    assert o["detach"] and o["bundle"] == "/b" and o["pid_file"] == "/p" and args == ["id"]
    _, _, o, args = fast(["kill", "--all", "c", "KILL"])
    assert o["all"] and args == ["c", "KILL"]
    _, _, o, args = fast(["kill", "c", "9", "-a"])  # options after positionals too
    assert o["all"] and args == ["c", "9"]
    _, _, o, args = fast(["delete", "-f", "c"])
    assert o["force"]
    _, _, o, args = fast(["list", "--format=json", "-q"])
    assert o["format"] == "json" and o["quiet"]
    _, _, o, args = fast(["ps", "--format", "table", "c", "-ef", "--forest"])
    assert o["format"] == "table" and args == ["c", "-ef", "--forest"]


@pytest.mark.parametrize("argv", [
    ["state"],                       # missing id
    ["state", "a", "b"],             # too many
    ["kill", "a", "b", "c"],
    ["create", "--bundle"],          # missing value
    ["create", "--preserve-fds", "x", "c"],
    ["state", "--bogus", "c"],       # unknown flag
    ["--bogus", "state", "c"],
    ["state", "--help"],
])
def test_fast_parser_defers_to_click(argv):
    assert fast(argv) is None


def test_click_usage_errors_exit_1_and_log_json(tmp_path):
    log = tmp_path / "log.json"
    r = cli("--log", str(log), "--log-format", "json", "kill")
    assert r.returncode == 1
    assert "Missing argument" in r.stderr
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["level"] == "error" and "Missing argument" in line["msg"] and line["time"]
    r = cli("--nosuchflag", "state", "x")
    assert r.returncode == 1 and "No such option" in r.stderr


def test_help_exits_0():
    for argv in (["--help"], ["-h"], ["state", "--help"], ["create", "--help"], ["checkpoint", "--help"]):
        r = cli(*argv)
        assert r.returncode == 0, (argv, r.stderr)
        assert "Usage:" in r.stdout
    r = cli("create", "--help")
    for flag in ("--bundle", "--pid-file", "--console-socket", "--no-pivot", "--no-new-keyring",
                 "--preserve-fds"):
        assert flag in r.stdout


def test_click_parse_dispatches_same_command(tmp_path):
    # A form the fast parser leaves to click (combined short flags) still runs the command.
    r = cli("--root", str(tmp_path), "list", "-qf", "json")
    assert r.returncode == 0 and r.stdout == ""


def test_version():
    for flag in ("--version", "-v"):
        r = cli(flag)
        lines = r.stdout.splitlines()
        assert r.returncode == 0
        assert lines[0] == "runh version 0.1.0"
        assert lines[1].startswith("commit: ") and len(lines[1]) > len("commit: ")
        assert lines[2] == "spec: 1.3.0"


def test_checkpoint_restore_of_a_missing_container():
    # Implemented (tests/test_criu.py); what is left to check here is the CLI's words.
    r = cli("checkpoint", "c1")
    assert r.returncode == 1 and r.stderr == "runh: container c1 does not exist\n"


@pytest.mark.parametrize("text,num", [
    ("9", 9), ("KILL", 9), ("kill", 9), ("SIGKILL", 9), ("sigterm", 15), ("TERM", 15),
    ("HUP", 1), ("SIGUSR1", 10), ("USR2", 12), ("SIGRTMIN", 34), ("RTMIN+2", 36),
    ("SIGRTMAX-1", 63), ("64", 64),
])
def test_signal_parse(text, num):
    assert signals.parse(text) == num


@pytest.mark.parametrize("text", ["", "0", "65", "FOO", "SIGFOO", "-9", "RTMIN+99", "9x"])
def test_signal_parse_bad(text):
    with pytest.raises(UsageError, match="invalid signal"):
        signals.parse(text)


def test_errors_one_line_and_json_log(tmp_path):
    log = tmp_path / "log.json"
    r = cli("--root", str(tmp_path), "state", "nosuch")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "runh: container nosuch does not exist\n"
    r = cli("--root", str(tmp_path), "--log", str(log), "--log-format", "json", "delete", "nosuch")
    assert r.returncode == 1 and "does not exist" in r.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert list(rec) == ["level", "msg", "time"]
    assert rec["level"] == "error" and rec["msg"] == "container nosuch does not exist"
    assert rec["time"].endswith("Z") and rec["time"][10] == "T"
    text = tmp_path / "log.txt"
    r = cli("--root", str(tmp_path), "--log", str(text), "kill", "nosuch", "KILL")
    assert text.read_text().rstrip().endswith('level=error msg="container nosuch does not exist"')
    r = cli("--root", str(tmp_path), "kill", "nosuch", "NOSIG")
    assert r.returncode == 1 and "invalid signal: NOSIG" in r.stderr


def test_bad_log_format(tmp_path):
    r = cli("--root", str(tmp_path), "--log-format", "xml", "list")
    assert r.returncode == 1 and "invalid log-format" in r.stderr


def test_invalid_ids(tmp_path):
    for cid in ("../x", "a/b", "..", "a..b", "é"):
        r = cli("--root", str(tmp_path), "state", cid)
        assert r.returncode == 1 and "invalid container id" in r.stderr, cid


def test_spec_writes_runc_layout_and_refuses_overwrite(tmp_path):
    r = cli("spec", "--bundle", str(tmp_path))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "config.json").read_text()
    assert text.startswith('{\n\t"ociVersion": "1.3.0",')
    c = json.loads(text)
    assert c["process"]["args"] == ["sh"] and c["root"] == {"path": "rootfs", "readonly": True}
    before = text
    r = cli("spec", "--bundle", str(tmp_path))
    assert r.returncode == 1 and "exists" in r.stderr
    assert (tmp_path / "config.json").read_text() == before
    # the written spec validates
    from runh.spec import validate
    validate(c)


def test_spec_rootless(tmp_path):
    r = cli("spec", "--rootless", "-b", str(tmp_path))
    assert r.returncode == 0
    c = json.loads((tmp_path / "config.json").read_text())
    types = [n["type"] for n in c["linux"]["namespaces"]]
    assert "user" in types and "network" not in types
    assert c["linux"]["uidMappings"][0]["hostID"] == os.geteuid()


def test_features_json():
    r = cli("features")
    assert r.returncode == 0
    f = json.loads(r.stdout)
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"] == "1.3.0"
    assert "pid" in f["linux"]["namespaces"] and "CAP_SYS_ADMIN" in f["linux"]["capabilities"]


def test_list_empty_root(tmp_path):
    r = cli("--root", str(tmp_path / "none"), "list", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout) == []
    r = cli("--root", str(tmp_path / "none"), "list")
    assert r.stdout.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]


def test_create_config_errors_leave_nothing(tmp_path):
    root = tmp_path / "root"
    b = tmp_path / "b"
    b.mkdir()
    r = cli("--root", str(root), "create", "--bundle", str(b), "c")
    assert r.returncode == 1 and "config.json not found" in r.stderr
    cli("spec", "-b", str(b))
    r = cli("--root", str(root), "create", "--bundle", str(b), "c")
    assert r.returncode == 1 and f"rootfs ({b}/rootfs) does not exist" in r.stderr
    (b / "rootfs").mkdir()
    r = cli("--root", str(root), "create", "--bundle", str(b), "c")
    assert r.returncode == 1
    assert "cannot allocate tty if runh will detach without setting console socket" in r.stderr
    c = json.loads((b / "config.json").read_text())
    c["process"]["terminal"] = False
    c["process"]["args"] = []
    (b / "config.json").write_text(json.dumps(c))
    r = cli("--root", str(root), "create", "--bundle", str(b), "c")
    assert r.returncode == 1
    assert r.stderr == "runh: config.json: process.args: must be a non-empty array\n"
    assert not root.exists() or os.listdir(root) == []


HOT = [["state", "nosuch"], ["kill", "nosuch", "KILL"], ["delete", "-f", "nosuch"],
       ["start", "nosuch"], ["ps", "--format", "json", "nosuch"], ["list", "--format=json"]]
HEAVY = ["click", "jsonschema", "re", "typing", "dataclasses", "datetime", "subprocess", "argparse",
         "logging", "pathlib", "enum", "signal", "json", "importlib", "shutil", "select", "os"]


@pytest.mark.parametrize("argv", HOT, ids=[a[0] for a in HOT])
def test_hot_path_imports_nothing_heavy(argv, tmp_path):
    code = ("import sys; from runh.cli import main\n"
            f"rc = main({['--root', str(tmp_path)] + argv!r})\n"
            f"bad = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
            "print(bad)")
    r = subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-c",
                        f"import sys; sys.path.insert(0, {PYSRC!r})\n" + code],
                       capture_output=True, text=True)
    assert r.stdout.splitlines()[-1] == "[]", (r.stdout, r.stderr)
