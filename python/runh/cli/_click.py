"""The click fallback: the same option tables as `_argv.py`, rendered as a click group.

Used only off the hot path (help, unknown flags, missing arguments): importing click costs
16 ms. On success it returns what the fast parser would have; on bad usage click prints its
message and runh exits 1, as runc does on bad usage.
"""

import importlib

import sys

import click

from runh import SPEC_VERSION, __version__
from runh.cli._table import COMMANDS, GLOBAL_OPTIONS, dest


def _param(o):
    name, aliases, kind, default, help = o
    decls = [name, *aliases]
    if kind == "flag":
        return click.Option(decls, is_flag=True, default=default, help=help)
    if kind == "multi":
        return click.Option(decls, multiple=True, help=help)
    return click.Option(decls, type=int if kind == "int" else str, default=default, help=help,
                        show_default=default not in (None, "", 0))


def _command(cmd_name, mod, result):
    params = [_param(o) for o in mod.OPTIONS]
    for pname, required in mod.ARGS:
        params.append(click.Argument([pname.replace("-", "_")], required=required is True,
                                     nargs=-1 if required == "*" else 1,
                                     metavar=f"<{pname}>" if required is True else f"[{pname}]"))

    def callback(**kw):
        opts = {dest(o[0]): kw[dest(o[0])] for o in mod.OPTIONS}
        args = []
        for pname, _ in mod.ARGS:
            v = kw[pname.replace("-", "_")]
            if isinstance(v, tuple):
                args.extend(v)
            elif v is not None:
                args.append(v)
        result["command"] = (cmd_name, mod, opts, args)

    # With trailing arguments (exec's command, ps's options), options end at the first
    # argument, as in runc and the fast parser: `exec ID sh -c ...` must not read `-c` as
    # exec's --cap, and `ps ID -ef` passes -ef on. An unknown option before that is an
    # error, not a container id.
    varargs = any(r == "*" for _, r in mod.ARGS)
    return click.Command(cmd_name, params=params, callback=callback, help=mod.DESCRIPTION,
                         short_help=mod.HELP, context_settings={"allow_interspersed_args": not varargs})


def _version(ctx, param, value):
    if value and not ctx.resilient_parsing:
        from runh.cli import version_text

        click.echo(version_text(), nl=False)
        ctx.exit(0)


def build(result):
    def group_cb(**kw):
        result["globals"] = kw

    group = click.Group(
        "runh",
        params=[_param(o) for o in GLOBAL_OPTIONS]
        + [click.Option(["--version", "-v"], is_flag=True, expose_value=False, is_eager=True,
                        callback=_version, help="print the version")],
        callback=group_cb,
        help=f"runh {__version__}: an Open Container Initiative runtime (runtime-spec {SPEC_VERSION}),\n"
             "compatible with runc's command line.",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(f"runh.cli.{modname}")
        group.add_command(_command(name, mod, result))
    return group


def parse(argv):
    """Parse with click. Returns (globals dict, (name, mod, opts, args)) or an exit code."""
    result = {}
    group = build(result)
    try:
        group.main(argv, prog_name="runh", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        # One line, as every runh error (click's own show() prints usage and a hint
        # over three lines); the command's --help is named for the rest.
        ctx = getattr(e, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        sys.stderr.write(f"runh: {e.format_message()}{where}\n")
        result["usage_error"] = e.format_message()
        return result
    except click.exceptions.Abort:
        return 1
    if "command" not in result:
        return 0  # help was printed
    return result
