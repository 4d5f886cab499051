"""runh bench: the start-up benchmark of runh against runc, crun and others.

Every option after `bench` goes to the benchmark's own parser (runh.bench.runner), so
`runh bench --help` lists them; the global options (--root, --log) do not apply: each
runtime gets a private root under a temp dir.
"""

HELP = "benchmark container start-up of runh against runc, crun and others"
DESCRIPTION = """Run the start-up benchmark (run, create/start/delete, exec, concurrent
starts, peak and init RSS, seccomp) of runh against runc, crun and any runc-compatible
runtime, interleaved on one bundle. `runh bench --help` lists its options."""
OPTIONS = ()
ARGS = (("bench-options", "*"),)


def run(g, o, args):
    from runh.bench.runner import main

    return main(list(args))
