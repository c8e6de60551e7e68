#!/bin/bash
# slowdown.sh PROFILER [ROUNDS] [LABEL]: how much the profiler and py-spy slow
# a CPU-bound Python script, side by side in one run. work.py does a fixed
# amount of work (8 Python frames deep; calibrated once to ~$SECONDS s alone)
# and times it itself; each round runs it, per interpreter:
#   alone                               no profiler
#   profiler HZ   PROFILER record -F HZ -o o.folded -- python work.py N
#   py-spy HZ     py-spy record -r HZ -f raw -o o.txt -- python work.py N
# for HZ in $HZS (default "99 999"); alone first, the tools' order turning by
# one place each round. Per setup: the slowdown of the work's wall time and
# of the workload's own CPU time against alone in the same round (median and
# range over the rounds), the tool's own CPU (its process tree's user+sys
# less the workload's) per 1000 samples, and samples against the expected
# (HZ x the workload's CPU seconds).
# Interpreters: $PYTHONS (space-separated), default Debian's
# /usr/bin/python3.11 and pyenv's newest 3.13. py-spy: $PY_SPY or on PATH.
# Writes target/bench-python/python-overhead-LABEL.{json,md} (LABEL default
# "run"); copy them to benches/results/ to keep them. Needs root.
set -euo pipefail
PROFILER=$(realpath "$1"); ROUNDS=${2:-5}; LABEL=${3:-run}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT_DIR:-$HERE/../../target/bench-python}
PYENV=${PYENV_ROOT:-$HOME/.pyenv}
if [ -z "${PYTHONS:-}" ]; then
  PYTHONS=""
  [ -x /usr/bin/python3.11 ] && PYTHONS="/usr/bin/python3.11"
  p=$(ls -d "$PYENV"/versions/3.13.* 2>/dev/null | sort -V | tail -1)
  [ -n "$p" ] && [ -x "$p/bin/python3.13" ] && PYTHONS="$PYTHONS $p/bin/python3.13"
fi
PY_SPY=${PY_SPY:-$(command -v py-spy || true)}
[ -n "$PY_SPY" ] && "$PY_SPY" --version >/dev/null || {
  echo "no py-spy: python3 -m pip install py-spy, or set PY_SPY" >&2; exit 1; }
mkdir -p "$OUT"
exec python3 - "$PROFILER" "$PY_SPY" "$ROUNDS" "$LABEL" "$HERE/work.py" "$OUT" \
  "${SECONDS_:-3}" "${HZS:-99 999}" $PYTHONS <<'PY'
import json, os, statistics, subprocess, sys, tempfile, time

profiler, py_spy, rounds, label, work, out_dir, seconds, hzs = sys.argv[1:9]
pythons = sys.argv[9:]
rounds, seconds = int(rounds), float(seconds)
hzs = [int(h) for h in hzs.split()]
if not pythons:
    sys.exit("no Python interpreter found (set PYTHONS)")
tmp = tempfile.mkdtemp(prefix="python-slowdown-")


def run(cmd, output):
    """Runs cmd; (work_s, workload cpu_s, tree cpu_s, samples)."""
    if os.path.exists(output):
        os.remove(output)
    with open(os.path.join(tmp, "stdout"), "w+") as so, open(os.path.join(tmp, "stderr"), "w+") as se:
        p = subprocess.Popen(cmd, stdout=so, stderr=se)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = status
        so.seek(0); se.seek(0)
        text, err = so.read(), se.read()
    if status != 0:
        sys.exit(f"{cmd} failed ({status}):\n{text}\n{err}")
    words = text.split()
    try:
        work_s = float(words[words.index("work_s") + 1])
        cpu_s = float(words[words.index("cpu_s") + 1])
    except ValueError:
        sys.exit(f"{cmd}: no work_s/cpu_s in its output:\n{text}\n{err}")
    samples = 0
    if output and os.path.exists(output):
        for line in open(output):
            line = line.strip()
            if line:
                # (py-spy writes an empty stack as the count alone)
                samples += int(line.rsplit(" ", 1)[-1])
    return work_s, cpu_s, ru.ru_utime + ru.ru_stime, samples


def command(setup, hz, python, n, output):
    base = [python, work, str(n)]
    if setup == "alone":
        return base
    if setup == "profiler":
        return [profiler, "record", "--no-status", "-F", str(hz), "-o", output, "--"] + base
    return [py_spy, "record", "-r", str(hz), "-f", "raw", "-o", output, "--"] + base


setups = [("alone", 0)] + [(tool, hz) for hz in hzs for tool in ("profiler", "py-spy")]
results = {}
for python in pythons:
    # Calibrate: N iterations for ~seconds alone.
    w, *_ = run([python, work, "3000"], "")
    n = max(1000, int(3000 * seconds / w))
    print(f"{python}: {n} iterations (calibration: 3000 in {w:.3f} s)", flush=True)
    results[python] = {"iterations": n, "runs": {f"{s} {h}" if h else s: [] for s, h in setups}}
for r in range(rounds):
    tools = setups[1:]
    k = r % len(tools)
    order = [setups[0]] + tools[k:] + tools[:k]
    for python in pythons:
        n = results[python]["iterations"]
        for setup, hz in order:
            key = f"{setup} {hz}" if hz else setup
            output = os.path.join(tmp, "o.folded" if setup == "profiler" else "o.txt")
            work_s, cpu_s, tree_s, samples = run(command(setup, hz, python, n, output), output if hz else "")
            results[python]["runs"][key].append(
                {"round": r, "work_s": work_s, "cpu_s": cpu_s, "tool_cpu_s": max(0.0, tree_s - cpu_s),
                 "samples": samples})
            print(f"round {r} {os.path.basename(python)} {key}: work {work_s:.3f} s, cpu {cpu_s:.3f} s, "
                  f"tool cpu {max(0.0, tree_s - cpu_s):.3f} s, {samples} samples", flush=True)

load = open("/proc/loadavg").read().split()[:3]
lines = [f"# Python slowdown: profiler vs py-spy ({label})", "",
         f"`benches/python/slowdown.sh`, {rounds} rounds, work.py calibrated to ~{seconds:g} s alone; "
         f"{os.cpu_count()} CPUs, kernel {os.uname().release}, load average at the end {' '.join(load)}; "
         f"py-spy: `{subprocess.run([py_spy, '--version'], capture_output=True, text=True).stdout.strip()}`.",
         "Slowdowns: against `alone` in the same round, median [min..max] over the rounds.", ""]
summary = {}
for python, data in results.items():
    runs = data["runs"]
    alone = {x["round"]: x for x in runs["alone"]}
    lines += [f"## {python} ({data['iterations']} iterations)", "",
              "| setup | work s (median) | slowdown, wall of the work | slowdown, workload CPU | tool CPU ms / 1k samples | samples / expected |",
              "|---|---|---|---|---|---|"]
    for key, xs in runs.items():
        wall = [x["work_s"] / alone[x["round"]]["work_s"] - 1 for x in xs]
        cpu = [x["cpu_s"] / alone[x["round"]]["cpu_s"] - 1 for x in xs]
        med = lambda v: statistics.median(v)
        rng = lambda v: f"[{min(v) * 100:+.1f}..{max(v) * 100:+.1f}]"
        hz = int(key.split()[1]) if " " in key else 0
        per_k = [1000 * x["tool_cpu_s"] * 1000 / x["samples"] for x in xs if x["samples"]]
        exp = [x["samples"] / (hz * x["cpu_s"]) for x in xs if hz]
        summary.setdefault(python, {})[key] = {"wall": med(wall), "cpu": med(cpu),
                                               "tool_ms_per_1k": med(per_k) if per_k else None}
        lines.append(
            f"| {key} | {med([x['work_s'] for x in xs]):.3f} | "
            + (f"{med(wall) * 100:+.2f}% {rng(wall)} | {med(cpu) * 100:+.2f}% {rng(cpu)} | " if hz else "– | – | ")
            + (f"{med(per_k):.1f} | {med(exp) * 100:.1f}% |" if hz and per_k else "– | – |"))
    for hz in hzs:
        p, s = summary[python].get(f"profiler {hz}"), summary[python].get(f"py-spy {hz}")
        if p and s:
            lines.append("")
            lines.append(f"{hz} Hz: profiler {p['wall'] * 100:+.2f}% vs py-spy {s['wall'] * 100:+.2f}% (wall of the work); "
                         f"workload CPU {p['cpu'] * 100:+.2f}% vs {s['cpu'] * 100:+.2f}%; own CPU per 1k samples "
                         f"{p['tool_ms_per_1k'] or 0:.1f} vs {s['tool_ms_per_1k'] or 0:.1f} ms")
    lines.append("")
md = "\n".join(lines) + "\n"
base = os.path.join(out_dir, f"python-overhead-{label}")
open(base + ".md", "w").write(md)
json.dump({"label": label, "rounds": rounds, "results": results, "summary": summary}, open(base + ".json", "w"), indent=1)
print(md)
print(f"wrote {base}.md and {base}.json")
PY
