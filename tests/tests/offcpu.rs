//! End-to-end tests of `profiler record --mode off-cpu` and `--mode wall` on
//! the `waits` workload, whose threads wait in known ways and time their own
//! waits: the profiler's off-CPU time per function is compared with that
//! truth. They load eBPF programs, so they need root and kernel BTF; without
//! them each test prints `SKIPPED <test>: ...` and returns.
//!
//! What frame pointers cannot give is not asserted: a thread blocked inside
//! Debian's libc (built without frame pointers) loses the frame of the
//! function that called libc, so `waits` calls libc through one-line
//! `in_libc_*` wrappers (the frame that is lost) and the tests look for the
//! `wait_*` functions above them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use profiler_tests::*;

const TIMEOUT: Duration = Duration::from_secs(90);

/// The `NAME NANOSECONDS` lines `waits` prints at exit.
fn truths(stdout: &str) -> HashMap<String, u64> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, nanos) = line.split_once(' ')?;
            Some((name.to_string(), nanos.trim().parse().ok()?))
        })
        .collect()
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// Asserts `measured` within `tolerance` (a fraction) of `truth`.
fn assert_close(what: &str, measured: u64, truth: u64, tolerance: f64, diag: &str) {
    let error = (measured as f64 - truth as f64).abs() / truth as f64;
    assert!(
        error <= tolerance,
        "{what}: measured {:.1} ms, truth {:.1} ms ({:+.1}%, allowed ±{:.0}%){diag}",
        ms(measured),
        ms(truth),
        (measured as f64 / truth as f64 - 1.0) * 100.0,
        tolerance * 100.0
    );
}

/// Nanoseconds of folded stacks holding `frame` with `leaf` as their leaf.
fn nanos_with(stacks: &[FoldedStack], frame: &str, leaf: &str) -> u64 {
    stacks
        .iter()
        .filter(|(frames, _)| frames.iter().any(|f| f == frame))
        .filter(|(frames, _)| frames.last().is_some_and(|f| f == leaf))
        .map(|(_, n)| n)
        .sum()
}

/// Per thread (tid label), the sum of the last sample value (the time type).
fn pprof_nanos_by_tid(profile: &PprofProfile) -> HashMap<i64, i64> {
    let mut by_tid = HashMap::new();
    for sample in &profile.sample {
        let tid = pprof_num_label(profile, sample, "tid").expect("tid label");
        *by_tid.entry(tid).or_default() += sample.value.last().copied().unwrap_or(0);
    }
    by_tid
}

fn diag(run: &Finished, stacks: &[FoldedStack]) -> String {
    format!(
        "\n--- profiler stdout ---\n{}\n--- profiler stderr ---\n{}\n--- folded (ns) ---\n{}",
        run.stdout,
        run.stderr,
        top_lines(stacks, 25)
    )
}

#[test]
fn off_cpu_time_per_function_matches_the_workloads_own_timing() {
    if !require_root("off_cpu_time_per_function_matches_the_workloads_own_timing") {
        return;
    }
    let _guard = shared_recording();
    let dir = temp_dir("offcpu");
    let (folded, pprof) = (dir.path().join("w.folded"), dir.path().join("w.pb.gz"));
    let run = record()
        .mode("off-cpu")
        .output(&folded)
        .output(&pprof)
        .command(workload("waits"), &["3"])
        .run_ok(TIMEOUT);
    let stacks = read_folded(&folded);
    let d = diag(&run, &stacks);
    let truth = truths(&run.stdout);

    for (function, kernel_frame) in [
        ("wait_sleep", "do_nanosleep_[k]"),
        ("wait_pipe", "vfs_read_[k]"),
        ("wait_lock", "futex_wait_[i]"),
        ("pause_briefly", "do_nanosleep_[k]"),
    ] {
        let expected = *truth
            .get(function)
            .unwrap_or_else(|| panic!("waits printed no {function} line{d}"));
        let blocked = nanos_with(&stacks, function, "[blocked]");
        let all = nanos_with(&stacks, function, "[blocked]")
            + nanos_with(&stacks, function, "[waiting for CPU]");
        assert_close(function, all, expected, 0.05, &d);
        // Each of these waits is asleep, not waiting for a CPU.
        assert!(
            blocked as f64 >= 0.95 * all as f64,
            "{function}: only {:.1} of {:.1} ms labelled blocked{d}",
            ms(blocked),
            ms(all)
        );
        // Stacks reach the thread's start, through the wait, into the kernel.
        let thread_main = match function {
            "wait_sleep" => "main_sleeper",
            "wait_pipe" => "main_reader",
            _ => "main_waiter",
        };
        let heaviest = stacks
            .iter()
            .filter(|(frames, _)| frames.iter().any(|f| f == function))
            .max_by_key(|(_, n)| *n)
            .map(|(frames, _)| frames)
            .unwrap_or_else(|| panic!("no stack holds {function}{d}"));
        assert!(
            contains_sequence(heaviest, &["start_thread", thread_main, function]),
            "{function}: stack {heaviest:?} does not go start_thread > {thread_main} > {function}{d}"
        );
        assert!(
            heaviest.iter().any(|f| f == kernel_frame),
            "{function}: no {kernel_frame} in {heaviest:?}{d}"
        );
        assert!(
            heaviest.iter().any(|f| f == "__schedule_[k]"),
            "{function}: kernel stack does not reach __schedule: {heaviest:?}{d}"
        );
    }

    // The program's own frames are not in kernel stacks.
    let own = stacks
        .iter()
        .flat_map(|(frames, _)| frames)
        .find(|f| f.starts_with("bpf_prog_") || f.starts_with("bpf_trace_run"));
    assert!(own.is_none(), "eBPF frame {own:?} in a stack{d}");

    // The spinner never sleeps: whatever time it spends off CPU (other
    // tests run at the same time) is waiting for a CPU.
    let spinner = nanos_with(&stacks, "main_spinner", "[blocked]");
    assert!(
        spinner < 50_000_000,
        "main_spinner labelled blocked for {:.1} ms{d}",
        ms(spinner)
    );

    // The pprof says the same, in its own types and labels.
    let profile = read_pprof(&pprof);
    assert_eq!(
        pprof_sample_types(&profile),
        [
            ("blocks".to_string(), "count".to_string()),
            ("off_cpu".to_string(), "nanoseconds".to_string())
        ]
    );
    assert_eq!(
        pprof_total(&profile, 1) as u64,
        total_samples(&stacks),
        "pprof and folded totals differ{d}"
    );
    let states: std::collections::BTreeSet<&str> = profile
        .sample
        .iter()
        .map(|s| pprof_str_label(&profile, s, "thread_state").expect("thread_state label"))
        .collect();
    assert!(states.contains("blocked"), "{states:?}");
    assert!(
        run.stderr.contains("Top off-CPU stacks") && run.stderr.contains("wait_pipe"),
        "the summary lacks the top off-CPU stacks{d}"
    );
}

#[test]
fn wall_mode_adds_up_to_each_threads_wall_time() {
    if !require_root("wall_mode_adds_up_to_each_threads_wall_time") {
        return;
    }
    let _guard = shared_recording();
    let dir = temp_dir("wall");
    let pprof = dir.path().join("wall.pb.gz");
    let folded = dir.path().join("wall.folded");
    // Recording a running process: its threads are already asleep when the
    // recording starts, and still asleep when it stops.
    let waits = Proc::workload("waits", &["30"]);
    let run = record()
        .mode("wall")
        .pid(waits.pid)
        .duration("3")
        .output(&pprof)
        .output(&folded)
        .run_ok(TIMEOUT);
    let stacks = read_folded(&folded);
    let d = diag(&run, &stacks);
    let profile = read_pprof(&pprof);
    assert_eq!(
        pprof_sample_types(&profile)
            .last()
            .map(|(t, u)| (t.as_str(), u.as_str())),
        Some(("wall", "nanoseconds"))
    );
    let duration = profile.duration_nanos as u64;
    assert!(
        (2_900_000_000..4_000_000_000).contains(&duration),
        "duration {duration} ns for -d 3{d}"
    );
    let by_tid = pprof_nanos_by_tid(&profile);
    let threads = std::fs::read_dir(format!("/proc/{}/task", waits.pid))
        .expect("waits is still running")
        .count();
    assert_eq!(
        by_tid.len(),
        threads,
        "threads in the profile: {by_tid:?}{d}"
    );
    for (tid, nanos) in &by_tid {
        assert_close(
            &format!("wall time of thread {tid}"),
            *nanos as u64,
            duration,
            0.05,
            &d,
        );
    }
    // The spinner's wall time is mostly on-CPU samples; the sleeper's is
    // blocked time (its stack was taken at its first switch-out, or is
    // unknown for the wait that began before the recording).
    assert!(
        nanos_with(&stacks, "main_spinner", "spin") > duration * 7 / 10,
        "the spinner's on-CPU time is missing{d}"
    );
    assert!(
        nanos_with(&stacks, "wait_sleep", "[blocked]") > duration * 9 / 10,
        "the sleeper's blocked time is missing{d}"
    );
}

#[test]
fn time_waiting_for_a_cpu_is_told_apart() {
    if !require_root("time_waiting_for_a_cpu_is_told_apart") {
        return;
    }
    // It loads every CPU: the other tests wait until it is done.
    let _guard = exclusive_recording();
    let dir = temp_dir("runnable");
    let folded = dir.path().join("r.folded");
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Two more spinning threads than CPUs: each waits for a CPU part of the time.
    let threads = (cpus + 2).to_string();
    let run = record()
        .mode("off-cpu")
        .output(&folded)
        .command(workload("threads"), &["2", &threads])
        .run_ok(TIMEOUT);
    let stacks = read_folded(&folded);
    let d = diag(&run, &stacks);
    let runnable = nanos_with(&stacks, "thread_spin", "[waiting for CPU]");
    let blocked = nanos_with(&stacks, "thread_spin", "[blocked]");
    // (threads - cpus) threads' worth of 2 s wait for a CPU at any time.
    let expected = 2 * 2_000_000_000u64;
    assert!(
        runnable as f64 > 0.5 * expected as f64,
        "only {:.1} ms waiting for a CPU, expected about {:.1} ms{d}",
        ms(runnable),
        ms(expected)
    );
    assert!(
        blocked < runnable / 10,
        "spinning threads labelled blocked for {:.1} ms{d}",
        ms(blocked)
    );
}

#[test]
fn min_block_leaves_short_waits_out_and_counts_them() {
    if !require_root("min_block_leaves_short_waits_out_and_counts_them") {
        return;
    }
    // Alone: --min-block compares the whole interval off CPU, as
    // offcputime's --min-block-time does, and a 1 ms sleep followed by a
    // wait for a CPU behind the other tests' spinning workloads can pass
    // 5 ms (it did: 10% of the 1 ms waits were kept in one CI run).
    let _guard = exclusive_recording();
    let dir = temp_dir("minblock");
    let folded = dir.path().join("m.folded");
    let run = record()
        .mode("off-cpu")
        .min_block("5ms")
        .output(&folded)
        .command(workload("waits"), &["2", "nospin"])
        .run_ok(TIMEOUT);
    let stacks = read_folded(&folded);
    let d = diag(&run, &stacks);
    let truth = truths(&run.stdout);
    // 10 ms sleeps are kept, 1 ms sleeps are not.
    assert_close(
        "wait_sleep",
        nanos_with(&stacks, "wait_sleep", "[blocked]"),
        truth["wait_sleep"],
        0.05,
        &d,
    );
    // (A 1 ms sleep can last longer than 5 ms when the thread then waits
    // long for a CPU on a busy machine; most do not.)
    let kept = nanos_with(&stacks, "pause_briefly", "[blocked]")
        + nanos_with(&stacks, "pause_briefly", "[waiting for CPU]");
    assert!(
        kept < truth["pause_briefly"] / 10,
        "{:.1} of {:.1} ms of 1 ms waits were kept with --min-block 5ms{d}",
        ms(kept),
        ms(truth["pause_briefly"])
    );
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("shorter than --min-block"))
        .unwrap_or_else(|| panic!("the summary does not count short intervals{d}"));
    let short: u64 = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    // pause_briefly sleeps 1 ms about every 21 ms for 2 s: ~90 of them.
    assert!(short >= 50, "{short} short intervals counted{d}");
}

#[test]
fn off_cpu_flame_graph_is_drawn_in_time() {
    if !require_root("off_cpu_flame_graph_is_drawn_in_time") {
        return;
    }
    let _guard = shared_recording();
    let dir = temp_dir("offcpu-svg");
    let svg = dir.path().join("o.svg");
    record()
        .mode("off-cpu")
        .output(&svg)
        .command(workload("waits"), &["1", "nospin"])
        .run_ok(TIMEOUT);
    let text = std::fs::read_to_string(Path::new(&svg)).expect("reading the SVG");
    assert!(text.contains(">Off-CPU time: "), "no off-CPU title");
    assert!(
        text.contains(" ms, ") && text.contains("<title>wait_sleep ("),
        "wait_sleep is not shown in milliseconds"
    );
}

#[test]
fn time_off_cpu_since_before_the_recording_is_left_out_of_off_cpu_mode_only() {
    if !require_root("time_off_cpu_since_before_the_recording_is_left_out_of_off_cpu_mode_only") {
        return;
    }
    let _guard = shared_recording();
    let dir = temp_dir("before-start");
    // Asleep for the whole recording: its one wait began before it.
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("60");
    let sleeper = Proc::spawn(cmd);
    wait_for_comm(sleeper.pid, "sleep", Duration::from_secs(5));
    let marker = "[stack unknown: off CPU since before the recording]";

    let folded = dir.path().join("off.folded");
    let off = record()
        .mode("off-cpu")
        .pid(sleeper.pid)
        .duration("1s")
        .output(&folded)
        .run(TIMEOUT);
    assert!(
        !off.status.success(),
        "an off-CPU recording of a thread asleep throughout has nothing to show, \
         yet it succeeded:\n{}",
        off.stderr
    );
    assert!(
        off.stderr
            .contains("already off CPU when the recording started left out"),
        "the summary or error does not say that the sleeper's time was left out:\n{}",
        off.stderr
    );
    assert!(!folded.exists(), "a failed recording left {folded:?}");

    let wall_folded = dir.path().join("wall.folded");
    let wall = record()
        .mode("wall")
        .pid(sleeper.pid)
        .duration("1s")
        .output(&wall_folded)
        .run_ok(TIMEOUT);
    let stacks = read_folded(&wall_folded);
    let hidden = nanos_with(&stacks, marker, "[blocked]");
    assert!(
        hidden > 900_000_000,
        "wall mode shows {:.1} ms of the sleeper's 1 s under {marker}:\n{}",
        ms(hidden),
        wall.stderr
    );
}
