#!/bin/bash
# selfprof.sh BIN HZ N OUT.folded: perf-profile N profiler runs (dwarf), merged folded stacks.
# Default: `record -p <ovh_cpu>`; FORK=1: `record -a -d 3.5` while `ovh_fork 4000 2` runs.
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
P=$1; HZ=$2; N=$3; OUT=$4; shift 4
BIN=${WORKSPACE:-$(git rev-parse --show-toplevel)}/target/bench-overhead/bin
rm -f $OUT.tmp
for i in $(seq $N); do
  if [ -n "$FORK" ]; then
    $BIN/ovh_fork $T/r.txt ${FORK_CHILDREN:-4000} 2 & W=$!; TARGET="-a -d ${FORK_SECONDS:-3.5}"
  else
    $BIN/ovh_cpu $T/r.txt 1000000 2 & W=$!; TARGET="-p $W"
  fi
  sleep 0.05
  perf record -q -e cpu-clock -F 25000 --call-graph dwarf,16384 -o $T/sp.data -- $P record -F $HZ $TARGET -o $T/o.svg "$@" 2>/dev/null >/dev/null
  wait $W
  perf script -i $T/sp.data 2>/dev/null | inferno-collapse-perf --all >> $OUT.tmp
done
sort $OUT.tmp | awk '{n=$NF; $NF=""; sub(/ $/,""); a[$0]+=n} END{for(k in a) print k, a[k]}' > $OUT
rm -f $OUT.tmp
