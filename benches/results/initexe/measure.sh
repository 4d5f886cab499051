#!/bin/bash
# usage: measure.sh RUNH LABEL ; prints peak RSS of run (median of 15), parked init VmRSS, exec wall (median of 30)
RUNH=$1; L=$2; R=/tmp/initexe-exp/root-$L; B=/tmp/initexe-exp/b; BT=/tmp/initexe-exp/bt
rss=(); for i in $(seq 15); do rss+=($( /usr/bin/time -f %M $RUNH --root $R run --bundle $BT r$i 2>&1 >/dev/null | tail -1)); $RUNH --root $R delete -f r$i 2>/dev/null; done
echo "$L run peak RSS KiB (median of 15): $(printf '%s\n' "${rss[@]}" | sort -n | sed -n 8p)  min $(printf '%s\n' "${rss[@]}" | sort -n | head -1)"
$RUNH --root $R create --bundle $BT p1; pid=$($RUNH --root $R state p1 | python3 -c 'import json,sys;print(json.load(sys.stdin)["pid"])')
echo "$L parked init: $(grep -E 'VmRSS|RssAnon|RssFile|RssShmem' /proc/$pid/status | tr -s ' \t' ' ' | tr '\n' ' ')"
$RUNH --root $R delete -f p1
$RUNH --root $R run -d --bundle $B e1
python3 - "$RUNH" "$R" "$L" <<'PY'
import subprocess, sys, time, statistics
runh, root, label = sys.argv[1:]
ts = []
for i in range(30):
    t = time.perf_counter(); subprocess.run([runh, "--root", root, "exec", "e1", "true"], check=True); ts.append((time.perf_counter() - t) * 1000)
print(f"{label} exec wall ms (n=30): median {statistics.median(ts):.2f} min {min(ts):.2f}")
PY
$RUNH --root $R delete -f e1
