#!/bin/bash
# compare-perf.sh PROFILER [SECONDS]: "perf agrees". Runs the gcc -O2 (no frame
# pointers) workload of the unwind tests, tests/workloads/unwind/chains.c
# (PIE, linked against libunwlib.so), once under
#   perf record --call-graph dwarf   (perf copies the user stack and unwinds it
#                                     in user space with libdw/libunwind)
# and once under
#   PROFILER record --unwind auto    (unwinds in the kernel with .eh_frame tables)
# and prints, for each hot function of the workload, the heaviest call chains
# of each side, one above the other: "TOOL SHARE% CHAIN", SHARE the part of
# that leaf's samples with exactly that chain. Chains are user frames only,
# root first, cut to start at main or start_thread when they hold one (the
# frames below, _start and libc's, are left out), repeated frames shown once
# as "recurse x111", the profiler's inlined frames (_[i]) left out (perf
# script --no-inline shows none), gcc's clone suffixes (.part.0) dropped
# (perf names symbols, the profiler debug info's functions), and the frame
# below the signal handler named SIGFRAME on both sides (libc's __restore_rt:
# [unknown] in perf, libc.so.6+0x... in the profiler). Then one line per hot function and tool: the share
# of its samples that reach main/start_thread.
# Needs root, gcc and perf.
set -euo pipefail
PROFILER=$1; SECONDS_=${2:-2.5}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$HERE/../../tests/workloads/unwind
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

gcc -O2 -shared -fPIC -o "$T/libunwlib.so" "$SRC/unwlib.c"
gcc -O2 -pthread -o "$T/chains" "$SRC/chains.c" -L"$T" -lunwlib -Wl,-rpath,"$T"

# perf: folded user stacks of the workload ("comm;root;...;leaf 1" per sample).
perf record -q -F 999 -e cpu-clock --call-graph dwarf,16384 -o "$T/perf.data" \
  -- "$T/chains" "$SECONDS_" >/dev/null 2>"$T/perf.err" || { cat "$T/perf.err"; exit 1; }
perf script -i "$T/perf.data" -F comm,ip,sym,dso --no-inline 2>/dev/null | awk '
  function flush() {
    if (comm != "" && n > 0) {
      s = comm
      for (i = n; i >= 1; i--) s = s ";" f[i]
      print s " 1"
    }
    comm = ""; n = 0
  }
  /^[^ \t]/ { flush(); comm = $1; next }
  /^[ \t]*$/ { flush(); next }
  {
    line = $0
    if (line ~ /\[kernel\.kallsyms\]/) next
    sub(/^[ \t]*[0-9a-f]+ /, "", line)
    sub(/ \([^()]*\)$/, "", line)
    sub(/\+0x[0-9a-f]+$/, "", line)
    f[++n] = line
  }
  END { flush() }' > "$T/perf.folded"

"$PROFILER" record --no-status -F 999 -o "$T/prof.folded" -- "$T/chains" "$SECONDS_" \
  >/dev/null 2>"$T/prof.err" || { cat "$T/prof.err"; exit 1; }

# Normalizes folded stacks to "LEAF<TAB>CHAIN<TAB>COUNT", user frames only.
normalize() {
  awk '
  {
    count = $NF; line = $0; sub(/ [0-9]+$/, "", line)
    k = split(line, f, ";")
    m = 0
    for (i = 2; i <= k; i++) {
      x = f[i]
      if (x ~ /_\[k\]$/ || x == "[blocked]" || x == "[waiting for CPU]") break
      if (x ~ /_\[i\]$/) continue
      sub(/\.(part|isra|constprop|cold)\.[0-9]+$/, "", x)
      g[++m] = x
    }
    for (i = 1; i < m; i++)
      if (g[i + 1] == "on_alarm" && (g[i] == "__restore_rt" || g[i] == "[unknown]" || g[i] ~ /^libc\.so\.6\+0x/))
        g[i] = "SIGFRAME"
    if (m == 0) next
    start = 1
    for (i = m; i >= 1; i--) if (g[i] == "main" || g[i] == "start_thread") { start = i; break }
    chain = ""; i = start
    while (i <= m) {
      j = i; while (j + 1 <= m && g[j + 1] == g[i]) j++
      part = (j - i + 1 > 2) ? g[i] " x" (j - i + 1) : g[i]
      if (j - i + 1 == 2) part = g[i] ";" g[i]
      chain = chain (chain == "" ? "" : ";") part
      i = j + 1
    }
    print g[m] "\t" chain "\t" count
  }' "$1"
}
normalize "$T/perf.folded" > "$T/perf.norm"
normalize "$T/prof.folded" > "$T/prof.norm"

HOT="hot_leaf rec_hot compare lib_hot thread_hot sig_hot"
for leaf in $HOT; do
  echo "== $leaf"
  for tool in perf prof; do
    awk -F'\t' -v leaf="$leaf" -v tool="$tool" '
      $1 == leaf { c[$2] += $3; t += $3 }
      END {
        if (t == 0) { printf "  %-8s  no samples\n", tool; exit }
        n = 0
        for (k in c) { n++; key[n] = k }
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
          if (c[key[j]] > c[key[i]]) { x = key[i]; key[i] = key[j]; key[j] = x }
        for (i = 1; i <= n && i <= 3; i++)
          printf "  %-8s %5.1f%%  %s\n", (tool == "prof" ? "profiler" : tool), 100 * c[key[i]] / t, key[i]
      }' "$T/$tool.norm"
  done
done
echo "== share of each hot function's samples that reach main / start_thread"
for leaf in $HOT; do
  for tool in perf prof; do
    awk -F'\t' -v leaf="$leaf" -v tool="$tool" '
      $1 == leaf { t += $3; if ($2 ~ /^(main|start_thread)(;|$)/) r += $3 }
      END { printf "  %-10s %-8s %6.2f%% of %d samples\n", leaf, (tool == "prof" ? "profiler" : tool), t ? 100 * r / t : 0, t }' "$T/$tool.norm"
  done
done
