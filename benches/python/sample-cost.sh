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
# and way: "INTERPRETER WAY NS_PER_SAMPLE SAMPLES FULL% FRAMES" (INTERPRETER
# e.g. debian-3.11; FRAMES the mean frames per sample of the output, Python
# and native, kernel included), then per interpreter the median of each way
# and their ratio. Needs root.
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
# Each fdinfo is read once (an fd may close meanwhile).
stats() {
  local f
  for f in /proc/"$1"/fdinfo/*; do cat "$f" 2>/dev/null; echo; done | awk '
    /^prog_type:/ { perf = ($2 == 7) }
    /^run_time_ns:/ && perf { t += $2 }
    /^run_cnt:/ && perf { c += $2 }
    END { printf "%d %d\n", t, c }'
}

# debian-3.11 or pyenv-3.12: where the interpreter comes from.
label() {
  case $1 in
    /usr/*) echo "debian-${1##*python}" ;;
    *) echo "pyenv-${1##*python}" ;;
  esac
}

# The share of the samples whose stack holds 30 or more `rec (` frames, and
# the mean frames per sample.
full() {
  awk '{ n = gsub(/;rec \(/, "&"); c = $NF; t += c; if (n >= 30) f += c
         fr += c * (split($0, parts, ";") - 1) }
       END { printf "%.1f %.1f", t ? 100 * f / t : 0, t ? fr / t : 0 }' "$1"
}

run() { # PYTHON WAY FLAGS...
  local py=$1 way=$2; shift 2
  # The workload runs 3.8 s; the counters are read at 3.1 s, while it runs.
  "$PROFILER" record -F 999 --no-status "$@" -o "$T/o.folded" -- "$py" "$HERE/deep.py" 3.5 30 \
    >/dev/null 2>"$T/err" &
  local p=$!
  sleep 3.1
  read -r t c < <(stats $p)
  wait $p || { cat "$T/err" >&2; return 1; }
  [ "$c" -gt 0 ] && echo "$(label "$py") $way $((t / c)) $c $(full "$T/o.folded")"
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
    py, way, ns = line.split()[:3]
    by.setdefault(py, {}).setdefault(way, []).append(int(ns))
for py, ways in by.items():
    med = {w: statistics.median(v) for w, v in ways.items()}
    ratio = med["python"] / med["no-python"] if "python" in med and "no-python" in med else float("nan")
    print(f"{py}: median ns/sample " + ", ".join(f"{w} {m:.0f}" for w, m in med.items())
          + f"; python/no-python {ratio:.2f}x (+{med.get('python', 0) - med.get('no-python', 0):.0f} ns)")
PY
