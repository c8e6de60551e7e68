#!/bin/bash
# phases.sh BIN HZ N [record args]: the profiler's own CPU (getrusage) per phase of
# `record`, median of N runs, with its minor page faults and peak RSS (`PROFILER_PHASES=1`, profiler/src/phases.rs).
# Default: `record -p <ovh_cpu 1000000 2>`; FORK=1: `record -a -d 3` while
# `ovh_fork 3000 2` runs, as ab.sh. Each run's `note` lines (counts such as the
# symbolizer's cache hits) follow the table.
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
P=$1; HZ=$2; N=$3; shift 3
BIN=${WORKSPACE:-$(git rev-parse --show-toplevel)}/target/bench-overhead/bin
for i in $(seq "$N"); do
  if [ -n "$FORK" ]; then
    "$BIN"/ovh_fork "$T"/r.txt "${FORK_CHILDREN:-3000}" 2 & w=$!; sleep 0.05
    PROFILER_PHASES=1 "$P" record -F "$HZ" -a -d "${FORK_SECONDS:-3}" -o "$T"/o.svg "$@" 2>"$T"/err.$i >/dev/null
  else
    "$BIN"/ovh_cpu "$T"/r.txt 1000000 2 & w=$!; sleep 0.05
    PROFILER_PHASES=1 "$P" record -F "$HZ" -p $w -o "$T"/o.svg "$@" 2>"$T"/err.$i >/dev/null
  fi
  wait $w
done
python3 - "$T" "$N" <<'EOF'
import statistics as s, sys
t, n = sys.argv[1], int(sys.argv[2])
runs = []
for i in range(1, n + 1):
    marks = [l.split() for l in open(f"{t}/err.{i}") if l.startswith("phase ")]
    prev, prev_faults, run = 0.0, 0, {}
    for mark in marks:
        name, cpu = mark[1], float(mark[2])
        # Older builds print no fault count (4 fields).
        faults = int(mark[4]) if len(mark) > 4 else 0
        run[name] = (cpu - prev, faults - prev_faults, int(mark[5]) if len(mark) > 5 else 0)
        prev, prev_faults = cpu, faults
    run["(total to summary)"] = (prev, prev_faults, max(v[2] for v in run.values()))
    runs.append(run)
names = list(runs[0])
print(f"{'phase':24} {'CPU ms, median':>15}  [min..max] of {n}   minor faults  peak RSS MiB")
for name in names:
    v = [r[name][0] for r in runs if name in r]
    f = [r[name][1] for r in runs if name in r]
    m = [r[name][2] for r in runs if name in r]
    print(f"{name:24} {s.median(v):15.1f}  [{min(v):.1f}..{max(v):.1f}] {s.median(f):14.0f} {s.median(m)/1024:13.1f}")
# The counts behind the phases (e.g. the symbolizer's cache hits), per run.
for i in range(1, n + 1):
    for line in open(f"{t}/err.{i}"):
        if line.startswith("note "):
            print(f"run {i}: {line[5:].rstrip()}")
EOF
