"""Statistics and the three outputs: a terminal table, a JSON file and a PNG plot."""

import json
import math
import os


def percentile(sorted_values, q):
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples):
    vals = sorted(v for v in samples if v is not None)
    if not vals:
        return None
    return {
        "n": len(vals),
        "median": percentile(vals, 0.5),
        "p95": percentile(vals, 0.95),
        "p99": percentile(vals, 0.99),
        "min": vals[0],
        "max": vals[-1],
        "mean": sum(vals) / len(vals),
    }


def build(meta, scenarios, samples, failures, baseline):
    """The JSON document: meta, then per scenario and metric, per runtime stats + samples.

    samples[scenario][runtime][metric] -> list; failures[scenario][runtime] -> message.
    `ratio` is this runtime's median over the baseline's (for both lower- and
    higher-is-better metrics; `higher_is_better` tells which way is good).
    """
    doc = {"meta": dict(meta, baseline=baseline), "scenarios": {}}
    for sc in scenarios:
        entry = {"description": sc.description, "notes": list(sc.notes),
                 "failures": dict(failures.get(sc.name, {})), "metrics": {}}
        per_rt = samples.get(sc.name, {})
        for metric, (unit, higher) in sc.metrics.items():
            m = {"unit": unit, "higher_is_better": higher, "runtimes": {}}
            base = summarize(per_rt.get(baseline, {}).get(metric, []))
            for rt_name, metrics in per_rt.items():
                vals = metrics.get(metric, [])
                st = summarize(vals)
                if st is None:
                    continue
                if base and base["median"]:
                    st["ratio"] = st["median"] / base["median"]
                st["samples"] = vals
                m["runtimes"][rt_name] = st
            if m["runtimes"]:
                entry["metrics"][metric] = m
        doc["scenarios"][sc.name] = entry
    doc["above_interpreter"] = above_interpreter(doc)
    return doc


# The calls whose time a runh spends mostly in its interpreter (create and run start
# one; start, delete and exec are the launcher's own native code).
ABOVE_INTERPRETER = (("lifecycle", "create"), ("run", "wall"), ("run", "peak_rss"))


def above_interpreter(doc):
    """Per runh runtime with a measured interpreter start, for create and run: its median
    less its interpreter's bare-start median, beside the baseline's own median. It is
    what the runtime's work costs once the interpreter is up, comparable to a runtime
    that has no interpreter to start."""
    meta = doc["meta"]
    out = {}
    for name, floor in (meta.get("interpreter_start") or {}).items():
        rows = {}
        for sname, metric in ABOVE_INTERPRETER:
            rts = doc["scenarios"].get(sname, {}).get("metrics", {}).get(metric, {}).get("runtimes", {})
            if name in rts:
                base = rts.get(meta["baseline"])
                if metric == "peak_rss":
                    interp = floor.get("peak_rss_kib")
                    if interp is None:
                        continue
                    unit = "kib"
                else:
                    # The interpreter's median within this scenario's rounds: same host load.
                    interp = floor.get("per_scenario", {}).get(sname, floor["median"])
                    unit = "ms"
                rows[f"{sname}.{metric}"] = {
                    "unit": unit, "median": rts[name]["median"], "interpreter": interp,
                    "above": rts[name]["median"] - interp,
                    "baseline": base["median"] if base else None}
        if rows:
            out[name] = rows
    return out


def _fmt(v, unit):
    if v is None:
        return "-"
    if unit == "KiB":
        return f"{v / 1024:.1f}M" if v >= 10240 else f"{v:.0f}K"
    if unit == "ms":
        return f"{v:.2f}" if v < 100 else f"{v:.0f}"
    return f"{v:.1f}"


def table(doc):
    """The terminal table: one block per scenario, one row per metric and runtime."""
    meta = doc["meta"]
    base = meta["baseline"]
    lines = []
    lines.append(f"runh bench: {meta['iterations']} iterations after {meta['warmup']} warm-up, "
                 f"interleaved; baseline {base}")
    lines.append(f"host: {meta['host']['kernel']}, {meta['host']['cpus']} CPUs, load {meta['host']['loadavg_1m_before']:.1f}"
                 f"->{meta['host']['loadavg_1m_after']:.1f}, cgroups {meta['cgroup']['host_mode']}"
                 f"; {meta['cgroup']['note']}")
    if meta.get("page_cache_dropped"):
        lines.append(f"page cache dropped first for: {' '.join(meta['page_cache_dropped'])}")
    if meta.get("state_dir"):
        lines.append(f"state roots (--root): {meta['state_dir']['path']} ({meta['state_dir']['fstype']})")
    for name, rt in meta["runtimes"].items():
        state = (rt["version"] or "") if rt["status"] == "ok" else f"{rt['status'].upper()}: {rt['error']}"
        lines.append(f"  {name:<8} {rt['path'] or '-'}  {state}")
    for name, st in (meta.get("interpreter_start") or {}).items():
        per = ", ".join(f"{k} {v:.2f}" for k, v in st.get("per_scenario", {}).items())
        lines.append(f"{name}'s interpreter start (`{' '.join(st['argv'])}`, one per round): median "
                     f"{st['median']:.2f} ms, min {st['min']:.2f}, n {st['n']}" + (f" (medians: {per})" if per else "")
                     + (f"; peak RSS {st['peak_rss_kib']:.0f} KiB" if st.get("peak_rss_kib") else ""))
    if meta.get("interpreter_note"):
        lines.append(f"note: {meta['interpreter_note']}")
    hdr = f"  {'metric':<22} {'runtime':<9} {'median':>8} {'p95':>8} {'p99':>8} {'min':>8} {'max':>8} {'vs ' + base:>9}"
    for sname, sc in doc["scenarios"].items():
        lines.append("")
        lines.append(f"{sname}: {sc['description']}")
        for note in sc["notes"]:
            lines.append(f"  note: {note}")
        for rt_name, msg in sc["failures"].items():
            lines.append(f"  FAILED {rt_name}: {msg}")
        if not sc["metrics"]:
            continue
        lines.append(hdr)
        for metric, m in sc["metrics"].items():
            unit = m["unit"]
            label = f"{metric} [{unit}]" + (" ^" if m["higher_is_better"] else "")
            for rt_name, st in m["runtimes"].items():
                ratio = st.get("ratio")
                r = f"{ratio:.2f}x" if ratio is not None else "-"
                lines.append(f"  {label:<22} {rt_name:<9} {_fmt(st['median'], unit):>8} {_fmt(st['p95'], unit):>8}"
                             f" {_fmt(st.get('p99'), unit):>8}"
                             f" {_fmt(st['min'], unit):>8} {_fmt(st['max'], unit):>8} {r:>9}")
                label = ""
    for name, rows in (doc.get("above_interpreter") or {}).items():
        lines.append("")
        lines.append(f"{name} above its interpreter's start (median less the interpreter's median "
                     "in the same scenario's rounds):")
        for key, r in rows.items():
            u = "KiB" if r["unit"] == "kib" else "ms"
            f = (lambda v: f"{v:.0f}") if u == "KiB" else (lambda v: f"{v:.2f}")
            b = f"; {base} {f(r['baseline'])} {u}" if r["baseline"] is not None and name != base else ""
            lines.append(f"  {key:<22} {f(r['median'])} - {f(r['interpreter'])} = {f(r['above'])} {u}{b}")
    lines.append("")
    lines.append("ms: wall time per call; K/M: KiB/MiB (peak RSS via GNU time, init RSS from /proc/<pid>/status); "
                 "^ = higher is better; ratio = median / baseline median")
    return "\n".join(lines)


def write_json(doc, path):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


# The metrics worth a panel each: the distributions people compare.
PLOTTED = (
    ("run", "wall"), ("lifecycle", "total"), ("lifecycle", "create"), ("lifecycle", "start"),
    ("lifecycle", "delete"), ("exec", "wall"), ("concurrent", "per_container"),
    ("run-seccomp", "wall"), ("run", "peak_rss"), ("lifecycle", "init_vmrss"),
    ("cri", "exec_sync"), ("cri", "pod_start"), ("cri", "teardown"),
)


def plot(doc, path):
    """Box plots with every sample drawn over them, one panel per metric. Returns False
    (and writes nothing) when matplotlib is not installed: the plot is optional."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    panels = []
    for sname, metric in PLOTTED:
        m = doc["scenarios"].get(sname, {}).get("metrics", {}).get(metric)
        if m and m["runtimes"]:
            panels.append((f"{sname}: {metric}", m))
    if not panels:
        return False
    cols = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 2.6 * rows + 0.6), squeeze=False)
    for ax, (title, m) in zip(axes.flat, panels):
        names = list(m["runtimes"])
        data = [[v for v in m["runtimes"][n]["samples"] if v is not None] for n in names]
        scale, unit = (1 / 1024, "MiB") if m["unit"] == "KiB" else (1, m["unit"])
        data = [[v * scale for v in d] for d in data]
        ax.boxplot(data, vert=False, showfliers=False, widths=0.6)
        for i, d in enumerate(data, start=1):
            # Deterministic jitter so that repeated plots of one file are identical.
            ys = [i + ((k * 0.6180339) % 1 - 0.5) * 0.35 for k in range(len(d))]
            ax.plot(d, ys, ".", alpha=0.45, markersize=3)
        ax.set_yticks(range(1, len(names) + 1), names)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(unit)
        ax.set_xlim(left=0)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    meta = doc["meta"]
    fig.suptitle(f"runh bench — {meta['iterations']} iterations, {meta['host']['kernel']}, "
                 f"{meta['cgroup']['note']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_text(text, path):
    with open(path, "w") as f:
        f.write(text + "\n")


def output_paths(outdir):
    os.makedirs(outdir, exist_ok=True)
    return (os.path.join(outdir, "results.json"), os.path.join(outdir, "results.png"),
            os.path.join(outdir, "results.txt"))
