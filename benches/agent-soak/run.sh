#!/bin/bash
# Two agents side by side, system-wide, over the same load (load.sh), for
# SECONDS; prints RSS (total, anon, file-backed, peak) and CPU ticks of each
# every 30 s and at the end, then the metrics files' paths. Root.
# Usage: run.sh SECONDS BEFORE_BINARY AFTER_BINARY [extra agent flags for AFTER]
set -u
D=$1; BEFORE=$2; AFTER=$3; shift 3
OUT=$(mktemp -d /tmp/agent-soak.XXXXXX)
here=$(dirname "$0")
"$BEFORE" agent -a --data-dir "$OUT/before" --metrics-listen 127.0.0.1:19501 --no-pyroscope > "$OUT/before.log" 2>&1 &
B=$!
"$AFTER" agent -a --data-dir "$OUT/after" --metrics-listen 127.0.0.1:19502 --no-pyroscope "$@" > "$OUT/after.log" 2>&1 &
A=$!
usage() { echo "$1 $(grep -E 'VmRSS|VmHWM|RssAnon|RssFile' /proc/$2/status | awk '{printf "%s%s ", $1, $2}') cpu_ticks $(awk '{print $14+$15}' /proc/$2/stat)"; }
START=$(date +%s.%N)
"$here/load.sh" "$D" &
L=$!
for _ in $(seq 1 $((D / 30))); do
  sleep 30
  usage before $B; usage after $A
done | tee "$OUT/samples"
wait $L
curl -s 127.0.0.1:19501/metrics > "$OUT/before.metrics"
curl -s 127.0.0.1:19502/metrics > "$OUT/after.metrics"
echo "wall $(echo "$(date +%s.%N) - $START" | bc) s, CLK_TCK $(getconf CLK_TCK)"
usage before $B; usage after $A
kill -TERM $B $A; wait $B; echo "before exit $?"; wait $A; echo "after exit $?"
echo "metrics and logs in $OUT"
