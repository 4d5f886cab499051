"""Start-up phase timing: where one runh call spends its time.

Enabled by `RUNH_TIMING=1` in the environment or by `--debug`; otherwise this module is
never imported (the hot path pays one `sys.modules.get` per mark site). Each phase is
printed as one line when the command ends:

    runh timing: create  start->main  6.12 ms (cpu)   config  0.41 ms   ...

Clocks: every mark is CLOCK_MONOTONIC (time.monotonic_ns), the same clock runh-init and the
Rust core read with clock_gettime, so their marks fall on one time line. The one phase that
no clock saw start, process start to main (fork, the launcher (rust/launcher) and its exec,
interpreter start-up, imports), is the process's CPU time at main
(CLOCK_PROCESS_CPUTIME_ID): exact on an idle machine, a lower bound under load. (The
/proc/self/stat start time ticks at 100 Hz here, too coarse for a 6 ms phase.)
"""

import sys
import time

_marks = []  # (phase name, monotonic ns at the phase's end)
_t0 = 0
_cpu0 = 0
command = ""


def begin(cmd=""):
    """Called first thing in main: the process's CPU time so far is the start-up cost."""
    global _t0, _cpu0, command
    _t0 = time.monotonic_ns()
    _cpu0 = time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID)
    command = cmd


def mark(name, t=None):
    """End of phase `name` now (or at monotonic ns `t`). The core's marks since the last
    call are folded in first: `run` calls create then start, and each starts a new list."""
    add_core()
    _marks.append((name, time.monotonic_ns() if t is None else t))


def add_core():
    """Fold in the marks the Rust core recorded in this process (create/start), which
    include the ones runh-init sent back over the sync socket."""
    core = sys.modules.get("runh._core")
    if core is None or not hasattr(core, "timings"):
        return
    for name, t in core.timings():
        _marks.append((name, t))


def lines():
    """The phases in time order: (name, duration ms, offset from main ms)."""
    out = [("start->main (cpu)", _cpu0 / 1e6, 0.0)]
    prev = _t0
    for name, t in sorted(_marks, key=lambda m: m[1]):
        out.append((name, (t - prev) / 1e6, (t - _t0) / 1e6))
        prev = t
    return out


def report():
    """Write the breakdown: through --log/--debug's logger if it is set up, else stderr."""
    add_core()
    mark("exit")
    rows = lines()
    total = rows[0][1] + rows[-1][2]
    text = [f"runh timing: {command}: {name:<24} {ms:8.3f} ms  (at {at:8.3f} ms)" for name, ms, at in rows]
    text.append(f"runh timing: {command}: {'total (process)':<24} {total:8.3f} ms")
    log = sys.modules.get("runh.log")
    logger = getattr(log, "logger", None) if log is not None else None
    if logger is not None and logger.debug_enabled and logger.path:
        for line in text:
            logger.debug(line[len("runh timing: "):])
    else:
        sys.stderr.write("\n".join(text) + "\n")
