#!/bin/bash
# workload-kernel.sh ROUNDS HZ: what each tool costs the workload inside the kernel.
# While `ovh_fork 4000 2` runs alone, under `profiler record -a`, `perf record -a -g`
# and bpftrace's profile probe (all at HZ), a bpftrace probe at 4999 Hz takes the
# kernel stacks of the workload's processes. bpftrace opens no tracking event of
# its own, so the measurement adds no MMAP/COMM/FORK records. Prints, per tool,
# the share of the workload's samples in: the kernel writing the process records
# a tracking event asks for (MMAP2, COMM, FORK/EXIT) and the BPF programs on
# the sched tracepoints. Taking samples is not seen this way: the tool's timer
# interrupt and the measuring one never interrupt each other. Medians of ROUNDS,
# tools interleaved.
set -u
ROUNDS=${1:-3}; HZ=${2:-99}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
TOP=${WORKSPACE:-$(git rev-parse --show-toplevel)}
BIN=$TOP/target/bench-overhead/bin
PROFILER=${PROFILER:-$TOP/target/release/profiler}
run() { # LABEL CMD...
  local label=$1; shift
  "$BIN"/ovh_fork "$T"/r.txt 4000 2 & local w=$!; sleep 0.05
  "$@" >/dev/null 2>&1 & local tool=$!
  sleep 0.2
  bpftrace -e 'profile:hz:4999 /comm == "ovh_fork"/ { @[kstack(perf)] = count(); } interval:s:2 { exit(); }' \
    > "$T/$label.$round" 2>/dev/null
  wait $w; kill -INT $tool 2>/dev/null; wait $tool 2>/dev/null
}
for round in $(seq "$ROUNDS"); do
  run alone sleep 3
  run profiler "$PROFILER" record -F "$HZ" -a -d 3 -o "$T"/o.svg
  run perf perf record -F "$HZ" -a -g -o "$T"/p.data -- sleep 3
  run bpftrace bpftrace -e "profile:hz:$HZ { @[ustack, kstack] = count(); } interval:s:3 { exit(); }"
done
python3 - "$T" "$ROUNDS" "$HZ" <<'PY'
import re, statistics as st, sys
t, rounds, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3]
groups = {
    'records': ['perf_event_mmap', 'perf_event_task', 'perf_event_comm', 'perf_event_namespaces'],
    'tracepoint BPF': ['bpf_trace_run'],
}
def shares(path):
    total, hit = 0, dict.fromkeys(groups, 0)
    for m in re.finditer(r'@\[(.*?)\]: (\d+)', open(path).read(), re.S):
        stack, n = m.group(1), int(m.group(2))
        total += n
        for g, pats in groups.items():
            if any(p in stack for p in pats):
                hit[g] += n
    return {g: 100 * hit[g] / max(total, 1) for g in groups}, total
print(f"ovh_fork 4000 2, tools at {hz} Hz; % of the workload's kernel+user samples (4999 Hz), median of {rounds}")
print(f"{'tool':10} " + ' '.join(f'{g:>15}' for g in groups) + f" {'both':>10} {'samples':>8}")
for label in ['alone', 'profiler', 'perf', 'bpftrace']:
    runs = [shares(f'{t}/{label}.{r}') for r in range(1, rounds + 1)]
    med = {g: st.median(r[0][g] for r in runs) for g in groups}
    total = st.median(sum(r[0].values()) for r in runs)
    print(f"{label:10} " + ' '.join(f'{med[g]:14.2f}%' for g in groups) + f" {total:9.2f}% {st.median(r[1] for r in runs):8.0f}")
PY
