#!/bin/bash
# sample-cost.sh PROFILER [ROUNDS]: the kernel's cost per sample (ns per run of
# the perf_event program, from kernel.bpf_stats_enabled and the program's
# fdinfo) of walking a user stack ~45 frames deep, three ways, in turn:
#   fp     the workload built with frame pointers, --unwind fp (the kernel's walker)
#   dwarf  the same source built without frame pointers (gcc -O2), --unwind auto
#   auto   the frame-pointer build, --unwind auto (tables used where present)
# Prints one line per round and way: "WAY NS_PER_SAMPLE SAMPLES", then the
# median ratio dwarf/fp. Needs root and gcc.
set -euo pipefail
PROFILER=$1; ROUNDS=${2:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
was=$(sysctl -n kernel.bpf_stats_enabled)
trap 'sysctl -q kernel.bpf_stats_enabled=$was; rm -rf "$T"' EXIT
sysctl -q kernel.bpf_stats_enabled=1
gcc -O2 -fno-omit-frame-pointer -o "$T/deep_fp" "$HERE/deep.c"
gcc -O2 -o "$T/deep_nofp" "$HERE/deep.c"

# "RUN_TIME_NS RUN_CNT" of process $1's perf_event programs (prog_type 7).
stats() {
  local t=0 c=0 f
  for f in /proc/"$1"/fdinfo/*; do
    grep -q '^prog_type:[[:space:]]*7$' "$f" 2>/dev/null || continue
    t=$((t + $(awk '/^run_time_ns:/{print $2}' "$f")))
    c=$((c + $(awk '/^run_cnt:/{print $2}' "$f")))
  done
  echo "$t $c"
}

run() { # WAY BINARY UNWIND
  "$PROFILER" record -F 999 -d 3 --no-status --unwind "$3" -o "$T/o.folded" -- "$2" 3.5 42 >/dev/null 2>&1 &
  local p=$!
  sleep 2.8
  read -r t c < <(stats $p)
  wait $p || true
  [ "$c" -gt 0 ] && echo "$1 $((t / c)) $c"
}

for _ in $(seq "$ROUNDS"); do
  run fp "$T/deep_fp" fp
  run dwarf "$T/deep_nofp" auto
  run auto "$T/deep_fp" auto
done | tee "$T/lines"
python3 - "$T/lines" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    way, ns, _ = line.split()
    by.setdefault(way, []).append(int(ns))
med = {w: statistics.median(v) for w, v in by.items()}
print("median ns/sample:", ", ".join(f"{w} {m:.0f}" for w, m in med.items()))
if "fp" in med and "dwarf" in med:
    print(f"dwarf/fp: {med['dwarf'] / med['fp']:.2f}x")
PY
