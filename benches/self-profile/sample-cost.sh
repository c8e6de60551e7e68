#!/bin/bash
# sample-cost.sh TOOL WORKLOAD N [args]: nanoseconds per run of a tool's perf_event
# (sampling) BPF program, from the kernel's BPF statistics (kernel.bpf_stats_enabled),
# while WORKLOAD (fork: `ovh_fork 3000 2`, cpu: `ovh_cpu 1000000 2`) runs; N runs, one
# line each: "NS_PER_RUN RUNS".
#   TOOL = path to a profiler binary: `record -F 999 -a -d 3 [args]`, read 2.9 s in.
#   TOOL = bpftrace: `bpftrace -e 'profile:hz:999 { @[ustack, kstack] = count(); }'`
#          (args replace the program text), counted from the workload's start only, so
#          its samples of the idle machine before it are left out.
# Used for benches/results/sample-cost-s20.md. Needs root, bpftool, and the workloads
# built by `cargo xtask bench-overhead` (target/bench-overhead/bin).
set -e
TOOL=$1; WORKLOAD=$2; N=$3; shift 3
BIN=${WORKSPACE:-$(git rev-parse --show-toplevel)}/target/bench-overhead/bin
T=$(mktemp -d)
was=$(sysctl -n kernel.bpf_stats_enabled)
trap 'sysctl -q kernel.bpf_stats_enabled=$was; rm -rf "$T"' EXIT
sysctl -q kernel.bpf_stats_enabled=1

start_workload() {
  case $WORKLOAD in
    fork) "$BIN"/ovh_fork "$T"/r.txt 3000 2 & ;;
    cpu) "$BIN"/ovh_cpu "$T"/r.txt 1000000 2 & ;;
    *) echo "sample-cost.sh: workload must be fork or cpu, not '$WORKLOAD'" >&2; exit 2 ;;
  esac
  W=$!
}

# "RUN_TIME_NS RUN_CNT" summed over the loaded perf_event programs named $1*.
stats() {
  bpftool prog show -j | python3 -c "
import json, sys
t = c = 0
for p in json.load(sys.stdin):
    if p.get('type') == 'perf_event' and p.get('name', '').startswith('$1'):
        t += p.get('run_time_ns', 0); c += p.get('run_cnt', 0)
print(t, c)"
}

for _ in $(seq "$N"); do
  if [ "$TOOL" = bpftrace ]; then
    PROG=${1:-'profile:hz:999 { @[ustack, kstack] = count(); }'}
    bpftrace -e "$PROG" >/dev/null 2>&1 & P=$!
    sleep 2.5  # bpftrace's start-up
    read -r t0 c0 < <(stats "")
    start_workload
    sleep 2.9
    read -r t1 c1 < <(stats "")
    kill -INT $P; wait $P || true
  else
    start_workload
    sleep 0.05
    "$TOOL" record -F 999 -a -d 3 -o "$T"/o.svg "$@" >/dev/null 2>&1 & P=$!
    sleep 2.9
    t0=0; c0=0
    read -r t1 c1 < <(stats on_cpu_sample)
    wait $P
  fi
  # Waited for, not killed: the fork workload's lanes would go on forking.
  wait $W || true
  if [ $((c1 - c0)) -gt 0 ]; then
    echo "$(( (t1 - t0) / (c1 - c0) )) $((c1 - c0))"
  else
    echo "sample-cost.sh: no runs of the sampling program seen" >&2; exit 1
  fi
done
