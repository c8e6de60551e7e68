#!/bin/bash
# sample-cost.sh PROFILER [ROUNDS] [PYTHON...]: the kernel's cost per sample
# (ns per run of the perf_event program, from kernel.bpf_stats_enabled and the
# program's fdinfo, as benches/unwind/sample-cost.sh) of a Python process
# CPU-bound at the bottom of a 30-deep recursion (deep.py: ~33 Python frames
# over ~20 native ones), two ways, in turn, round after round:
#   python     the default: native frames from the unwind tables, and the
#              Python frames of each eval-loop frame from the interpreter
#   no-python  the same with --no-python: the native unwind alone
# Each recording is also checked: the share of its samples holding the
# 30 rec frames (python: ~all; no-python: none).
# PYTHON defaults to every one found of Debian's /usr/bin/python3.11 and
# pyenv's newest 3.11, 3.12 and 3.13. Prints one line per round, interpreter
# and way: "PYTHON WAY NS_PER_SAMPLE SAMPLES FULL%", then per interpreter the
# median of each way and their ratio. Needs root.
set -euo pipefail
PROFILER=$1; ROUNDS=${2:-5}; shift $(( $# < 2 ? $# : 2 ))
HERE=$(cd "$(dirname "$0")" && pwd)
PYENV=${PYENV_ROOT:-$HOME/.pyenv}
if [ $# -gt 0 ]; then
  PYTHONS=("$@")
else
  PYTHONS=()
  [ -x /usr/bin/python3.11 ] && PYTHONS+=(/usr/bin/python3.11)
  for m in 11 12 13; do
    p=$(ls -d "$PYENV"/versions/3."$m".* 2>/dev/null | sort -V | tail -1)
    [ -n "$p" ] && [ -x "$p/bin/python3.$m" ] && PYTHONS+=("$p/bin/python3.$m")
  done
fi
[ ${#PYTHONS[@]} -gt 0 ] || { echo "no Python interpreter found" >&2; exit 1; }
T=$(mktemp -d)
was=$(sysctl -n kernel.bpf_stats_enabled)
trap 'sysctl -q kernel.bpf_stats_enabled=$was; rm -rf "$T"' EXIT
sysctl -q kernel.bpf_stats_enabled=1

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

# The share of the samples whose stack holds 30 or more `rec (` frames.
full() {
  awk '{ n = gsub(/;rec \(/, "&"); c = $NF; t += c; if (n >= 30) f += c }
       END { printf "%.1f", t ? 100 * f / t : 0 }' "$1"
}

run() { # PYTHON WAY FLAGS...
  local py=$1 way=$2; shift 2
  "$PROFILER" record -F 999 -d 3300ms --no-status "$@" -o "$T/o.folded" -- "$py" "$HERE/deep.py" 3.5 30 \
    >/dev/null 2>"$T/err" &
  local p=$!
  sleep 3.1
  read -r t c < <(stats $p)
  wait $p || { cat "$T/err" >&2; return 1; }
  [ "$c" -gt 0 ] && echo "$(basename "$py") $way $((t / c)) $c $(full "$T/o.folded")"
}

for _ in $(seq "$ROUNDS"); do
  for py in "${PYTHONS[@]}"; do
    run "$py" python
    run "$py" no-python --no-python
  done
done | tee "$T/lines"
python3 - "$T/lines" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    py, way, ns, _, _ = line.split()
    by.setdefault(py, {}).setdefault(way, []).append(int(ns))
for py, ways in by.items():
    med = {w: statistics.median(v) for w, v in ways.items()}
    ratio = med["python"] / med["no-python"] if "python" in med and "no-python" in med else float("nan")
    print(f"{py}: median ns/sample " + ", ".join(f"{w} {m:.0f}" for w, m in med.items())
          + f"; python/no-python {ratio:.2f}x (+{med.get('python', 0) - med.get('no-python', 0):.0f} ns)")
PY
