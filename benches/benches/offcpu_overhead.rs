//! What off-CPU profiling costs a context-switch-heavy program, side by side
//! with libbpf-tools' `offcputime`: `benches/workloads/pingpong.c` (two
//! processes pinned to one CPU passing a byte over pipes, two context
//! switches per round) is timed by itself in these setups, alternated over rounds:
//!
//! 1. alone;
//! 2. `profiler record --mode off-cpu -p OTHER` (tracking another, idle
//!    process: the cost of the filter for switches it does not track);
//! 3. `profiler record --mode off-cpu -- pingpong` (tracking the workload);
//! 4. `profiler record --mode off-cpu -a` (every thread);
//! 5. `offcputime` (every thread, its default).
//!
//! Run as root: `cargo bench -p profiler-benches --bench offcpu_overhead`
//! (`-- --rounds N --iterations N`). Needs `offcputime` (Debian's
//! libbpf-tools) for setup 5 and a C compiler. It prints the workload's
//! slowdown against running alone (median and range of the per-round
//! ratios) and each tool's own CPU time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    rounds: usize,
    iterations: u64,
}

fn options() -> Options {
    let mut options = Options {
        rounds: 5,
        iterations: 400_000,
    };
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{flag} takes a number, not {v}"))
            })
    };
    if let Some(rounds) = value("--rounds") {
        options.rounds = rounds as usize;
    }
    if let Some(iterations) = value("--iterations") {
        options.iterations = iterations;
    }
    options
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

fn build_pingpong(dir: &Path) -> PathBuf {
    let exe = dir.join("pingpong");
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(workspace().join("benches/workloads/pingpong.c"))
        .status()
        .expect("running cc (install gcc or clang)");
    assert!(status.success(), "cc failed to build pingpong");
    exe
}

fn build_profiler() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "profiler"])
        .current_dir(workspace())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "cargo build --release -p profiler failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("release/profiler")
}

/// The workload's own measure of its exchange, in seconds.
fn run_pingpong(exe: &Path, iterations: u64, under: Option<(&Path, &Path)>) -> f64 {
    let mut cmd = match under {
        Some((profiler, output)) => {
            let mut cmd = Command::new(profiler);
            cmd.args(["record", "--no-status", "--mode", "off-cpu", "-o"]);
            cmd.arg(output).arg("--").arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    let output = cmd
        .arg(iterations.to_string())
        .stderr(Stdio::null())
        .output()
        .expect("running pingpong");
    assert!(output.status.success(), "pingpong failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let nanos: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("elapsed_ns "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no elapsed_ns in {text:?}"));
    nanos / 1e9
}

/// A tool running in the background; its CPU time is read when it exits.
struct Tool {
    child: Child,
}

impl Tool {
    /// Starts `cmd` and gives it `settle` to load its programs (neither
    /// tool says when it is tracing). Its output is read and discarded so
    /// that it never blocks on a full pipe.
    fn start(mut cmd: Command, settle: Duration) -> Tool {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("starting the tool");
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
        std::thread::sleep(settle);
        Tool { child }
    }

    /// SIGINT, then wait: the tool's user+system CPU seconds.
    fn stop(self) -> f64 {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: our child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers; reaps our own child.
        unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(usage.ru_utime) + secs(usage.ru_stime)
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` run passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED offcpu_overhead: needs root to load eBPF programs");
        return;
    }
    let options = options();
    let dir = tempfile_dir();
    let pingpong = build_pingpong(&dir);
    let profiler = build_profiler();
    let offcputime = ["/usr/sbin/offcputime", "/usr/bin/offcputime"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if offcputime.is_none() {
        eprintln!("offcputime not found: apt-get install libbpf-tools; setup 5 skipped");
    }
    let mut idle = Command::new("sleep")
        .arg("100000")
        .spawn()
        .expect("starting sleep");

    let names = [
        "alone",
        "profiler -p OTHER (untracked)",
        "profiler -- pingpong (tracked)",
        "profiler -a",
        "offcputime (all)",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut tool_cpu: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let iterations = options.iterations;
    let output = dir.join("offcpu.folded");
    let profiler_cmd = |extra: &[String]| {
        let mut cmd = Command::new(&profiler);
        cmd.args(["record", "--no-status", "--mode", "off-cpu", "-o"]);
        cmd.arg(&output).args(extra);
        cmd
    };
    let started = Instant::now();
    for round in 0..options.rounds {
        for (setup, name) in names.iter().enumerate() {
            let (secs, cpu) = match setup {
                0 => (run_pingpong(&pingpong, iterations, None), None),
                1 | 3 => {
                    let extra = if setup == 1 {
                        vec!["-p".to_string(), idle.id().to_string()]
                    } else {
                        vec!["-a".to_string()]
                    };
                    let tool = Tool::start(profiler_cmd(&extra), Duration::from_secs(2));
                    let secs = run_pingpong(&pingpong, iterations, None);
                    (secs, Some(tool.stop()))
                }
                2 => (
                    run_pingpong(&pingpong, iterations, Some((&profiler, &output))),
                    None,
                ),
                _ => {
                    let Some(offcputime) = &offcputime else {
                        continue;
                    };
                    // libbpf-tools' offcputime prints no banner when it is
                    // ready: give it the same settle time as the profiler.
                    let tool = Tool::start(Command::new(offcputime), Duration::from_secs(2));
                    let secs = run_pingpong(&pingpong, iterations, None);
                    (secs, Some(tool.stop()))
                }
            };
            eprintln!("round {round} {name}: {secs:.3} s");
            times[setup].push(secs);
            tool_cpu[setup].extend(cpu);
        }
    }
    let _ = idle.kill();
    let _ = idle.wait();

    println!(
        "pingpong {iterations} rounds ({} context switches), {} rounds per setup, {:.0} s in all",
        iterations * 2,
        options.rounds,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<32} {:>10} {:>10} {:>17} {:>12}",
        "setup", "median s", "slowdown", "range", "tool CPU s"
    );
    for (setup, name) in names.iter().enumerate() {
        if times[setup].is_empty() {
            continue;
        }
        // Each round's ratio to the alone run of the same round.
        let mut ratios: Vec<f64> = times[setup]
            .iter()
            .zip(&times[0])
            .map(|(t, alone)| t / alone)
            .collect();
        let lo = ratios.iter().copied().fold(f64::MAX, f64::min);
        let hi = ratios.iter().copied().fold(f64::MIN, f64::max);
        let ratio = median(&mut ratios);
        let secs = median(&mut times[setup].clone());
        let cpu = if tool_cpu[setup].is_empty() {
            "-".to_string()
        } else {
            format!("{:.2}", median(&mut tool_cpu[setup].clone()))
        };
        println!(
            "{name:<32} {secs:>10.3} {ratio:>9.3}x {:>8.3}-{:<8.3} {cpu:>12}",
            lo, hi
        );
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("offcpu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}
