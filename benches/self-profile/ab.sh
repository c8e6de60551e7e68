#!/bin/bash
# ab.sh A_BIN B_BIN HZ ROUNDS [extra args]: interleaved task-clock ms of `record`, medians.
# Default: `record -p <ovh_cpu 1000000 2>`. FORK=1: `record -a -d 3` while
# `ovh_fork 3000 2` runs (fork+exec-heavy, system-wide).
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
A=$1; Bb=$2; HZ=$3; N=$4; shift 4
BIN=${WORKSPACE:-$(git rev-parse --show-toplevel)}/target/bench-overhead/bin
run() {
  if [ -n "$FORK" ]; then
    $BIN/ovh_fork $T/r.txt ${FORK_CHILDREN:-3000} 2 & local w=$!; sleep 0.05
    perf stat -x, -e task-clock -o $T/t.txt $1 record -F $HZ -a -d ${FORK_SECONDS:-3} -o $T/o.svg "${@:2}" 2>/dev/null >/dev/null
  else
    $BIN/ovh_cpu $T/r.txt 1000000 2 & local w=$!; sleep 0.05
    perf stat -x, -e task-clock -o $T/t.txt $1 record -F $HZ -p $w -o $T/o.svg "${@:2}" 2>/dev/null >/dev/null
  fi
  wait $w
  grep task-clock $T/t.txt | cut -d, -f1; }
ra=(); rb=()
for i in $(seq $N); do ra+=($(run $A "$@")); eval "$PRE_B"; rb+=($(run $Bb "$@")); done
python3 -c "
import statistics as s,sys
a=[float(x) for x in '${ra[*]}'.split()]; b=[float(x) for x in '${rb[*]}'.split()]
print('A med %.2f [%s]'%(s.median(a),' '.join('%.1f'%x for x in sorted(a))))
print('B med %.2f [%s]'%(s.median(b),' '.join('%.1f'%x for x in sorted(b))))
print('B-A %.2f ms'%(s.median(b)-s.median(a)))"
