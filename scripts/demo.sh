#!/bin/sh
# The README's demo: build a busybox bundle from Debian's busybox-static under build/demo,
# `runh run` a shell in it that shows it is in its own namespaces, then check that
# nothing is left behind (state dir, mounts, processes).
set -eu
cd "$(dirname "$0")/.."
RUNH=${RUNH:-.venv/bin/runh}
PY=${PY:-.venv/bin/python}
ID=runh-demo-$$

rm -rf build/demo
$PY tests/bundle.py build/demo /bin/sh /demo.sh >/dev/null
cat >build/demo/rootfs/demo.sh <<'SCRIPT'
echo "hostname: $(hostname)"
echo "PID 1:    $(tr '\0' ' ' </proc/1/cmdline)"
echo "--- ps"
ps
echo "--- mounts"
cat /proc/self/mounts
SCRIPT

echo "# $RUNH run --bundle build/demo $ID"
status=0
$RUNH run --bundle build/demo "$ID" || status=$?
echo "# container exited with status $status"

# run deletes the container when it exits; delete again in case it did not (a delete
# of an id that does not exist is fine for us).
$RUNH delete --force "$ID" 2>/dev/null || true
left=""
[ ! -e "/run/runh/$ID" ] || left="$left state:/run/runh/$ID"
! grep -q "build/demo" /proc/self/mountinfo || left="$left mounts"
for p in /proc/[0-9]*; do
  if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q "$ID"; then left="$left pid:${p#/proc/}"; fi
done
if [ -n "$left" ]; then echo "# leftovers:$left" >&2; exit 1; fi
echo "# no leftovers"
exit "$status"
