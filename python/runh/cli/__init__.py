"""runh's command line: `runh [global options] command [command options] [arguments...]`.

Hot path (well-formed create/start/state/kill/delete/run/list/ps): import this module, the
option tables, one command module, parse argv with `_argv`, and call the lifecycle library.
click is imported only when the fast parser gives up (help, bad usage); jsonschema only to
word an invalid config. Every error is one line `runh: <msg>` on stderr and exit 1; with
--log it is also written there in --log-format (containerd's shim reads the last JSON error).
"""

import sys


def version_text():
    from runh import SPEC_VERSION, __version__

    return f"runh version {__version__}\ncommit: {_commit()}\nspec: {SPEC_VERSION}\n"


def _commit():
    # Set at build time if the packager wrote runh/_commit.py; else read from the source tree.
    try:
        from runh._commit import COMMIT

        return COMMIT
    except ImportError:
        pass
    import os

    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    git = os.path.join(os.path.dirname(here), ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            with open(os.path.join(git, head[5:])) as f:
                return f.read().strip()
        return head
    except OSError:
        return "unknown"


_failed = False  # an error was reported (_report), or click parsed the call (_slow_parse)


def launch(image=None):
    """The `runh` command (rust/launcher hands every call it does not run itself to this):
    main, then exit without interpreter
    finalization (module teardown and GC, ~1 ms here). Nothing of runh's needs it: log
    lines are written with os.write and state files are closed, so flushing the two
    streams is all there is left. An exception from main takes the normal path.
    `image`: the module image (runh._image) that BOOT found missing or stale, written
    once the command has succeeded (a failed one may have imported its error path's
    modules, which the next calls would then execute for nothing)."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = code or 1
    import posix

    # (Re)write the image if this call imported a runh module through importlib: there
    # was none, or a stale one, or it lacks that module. Not where the package's dir
    # cannot be written (a user's call into a root-owned install): no runh._image import.
    if image and not _failed and not _from_image() and posix.access(image.rsplit("/", 2)[0], posix.W_OK):
        try:
            from runh._image import build

            build(image)
        except Exception:
            pass
    posix._exit(code if isinstance(code, int) else (0 if code is None else 1))


def _from_image():
    """runh._image.complete(), without importing runh._image: ~70 modules, ~20 us."""
    for name, m in list(sys.modules.items()):
        if (name == "runh" or name.startswith("runh.")) and name != "runh._image" \
                and (getattr(m, "__file__", None) or "").endswith(".py") \
                and getattr(getattr(m, "__spec__", None), "loader_state", None) != "runh image":
            return False
    return True


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    timing = _timing(argv)
    from runh.cli import _argv
    from runh.cli._table import COMMANDS, GLOBAL_OPTIONS

    parsed = None
    g_i = _argv.parse_globals(argv, GLOBAL_OPTIONS)
    if g_i is not None:
        g, i = g_i
        if g.version:
            sys.stdout.write(version_text())
            return 0
        modname = COMMANDS.get(argv[i])
        if modname is not None:
            # __import__, not importlib.import_module: importlib costs 0.3 ms to import.
            __import__(f"runh.cli.{modname}")
            mod = sys.modules[f"runh.cli.{modname}"]
            r = _argv.parse_command(argv[i + 1 :], mod)
            if r is not None:
                parsed = (g, mod, r[0], r[1])
    if parsed is None:
        parsed = _slow_parse(argv)
        if isinstance(parsed, int):
            return parsed
    g, mod, opts, args = parsed
    if timing is None:
        return _dispatch(g, mod, opts, args)
    timing.command = mod.__name__.rsplit(".", 1)[-1].rstrip("_")
    timing.mark("argv parsed")
    try:
        return _dispatch(g, mod, opts, args)
    finally:
        timing.report()


def _timing(argv):
    """runh.timing, started, if RUNH_TIMING=1 or --debug asked for the phase breakdown;
    else None and nothing imported (posix is built in and already loaded)."""
    import posix

    v = posix.environ.get(b"RUNH_TIMING")
    if (v is None or v in (b"", b"0")) and "--debug" not in argv:
        return None
    from runh import timing

    timing.begin()
    return timing


def _slow_parse(argv):
    """click's turn: prints help/usage; returns an exit code or the parse result."""
    global _failed
    _failed = True  # no module image from a call that needed click
    from runh.cli import _click, _argv
    from runh.cli._table import GLOBAL_OPTIONS

    r = _click.parse(argv)
    if isinstance(r, int):
        return r
    g = _argv.Globals(GLOBAL_OPTIONS)
    g.__dict__.update(r.get("globals") or {})
    if "usage_error" in r:
        if g.log and g.log_format in ("text", "json"):
            _setup_log(g)._write("error", r["usage_error"], False)
        return 1
    _, mod, opts, args = r["command"]
    return g, mod, opts, args


def _setup_log(g):
    if g.log_format not in ("text", "json"):
        from runh import log

        log.logger = log.Logger(None, "text", g.debug)
        from runh.errors import UsageError

        raise UsageError(f"invalid log-format: {g.log_format}")
    if not g.log and not g.debug:
        return None  # nothing to set up: runh.log is imported only if an error is reported
    from runh import log

    if g.log:
        _check_log(g, log)
    log.logger = log.Logger(g.log, g.log_format, g.debug)
    return log.logger


def _check_log(g, log):
    """--log is opened (and created) before the command does anything, as runc does: a
    path that cannot be opened fails the call at once, instead of every later error
    vanishing into a log that nobody can read (one open+close, about 10 us)."""
    import posix

    try:
        posix.close(posix.open(g.log, posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND | posix.O_CLOEXEC, 0o644))
    except OSError as e:
        log.logger = log.Logger(None, g.log_format, g.debug)
        from runh.errors import UsageError

        why = (e.strerror or str(e))
        raise UsageError(f"open {g.log}: {why[:1].lower()}{why[1:]}", e.errno or 0) from None


def _dispatch(g, mod, opts, args):
    from runh.errors import RunhError

    try:
        logger = _setup_log(g)
        if logger is not None and g.debug:
            logger.debug(f"runh {mod.__name__.rsplit('.', 1)[-1]} {args}")
        e = _core_error()
        if e is not None:
            raise e
        return mod.run(g, opts, args) or 0
    except RunhError as e:
        _report(g, str(e))
        return e.exit_code if e.exit_code != 127 else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except OSError as e:
        _report(g, f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return 1


def _core_error():
    """The native launcher (rust/launcher) ran this command and the core failed: the error
    it passed on in RUNH_CORE_ERROR ("Class\terrno\tmessage"), to be reported as if the
    core had raised it here (the command is not run again). None otherwise."""
    import posix

    e = posix.environ.pop(b"RUNH_CORE_ERROR", None)
    if e is None:
        return None
    from runh import errors

    kind, errno, msg = e.decode(errors="replace").split("\t", 2)
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.RunhError)):
        cls = errors.RunhError
    return cls(msg, int(errno) if errno.isdigit() else 0)


def _report(g, msg):
    global _failed
    _failed = True
    if g.log or g.debug:
        from runh import log

        log.logger.error(msg)
    else:
        # The common case needs no logger: one line on stderr.
        sys.stderr.write(f"runh: {msg}\n")
