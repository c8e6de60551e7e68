//! The README's run command: `profiler record -o flame.svg --
//! ./target/release/profiler-demo`, on the demo built as the README builds
//! it (`cargo build --release`), must give a flame graph that names the
//! demo's functions, nested from `main` down. Needs root and kernel BTF;
//! without them the test prints `SKIPPED <test>: ...` and returns.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use profiler_tests::*;

/// The demo runs 3 s; building it in release (if stale) is not counted here.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The functions the demo spends its time in (see demo/src/main.rs).
const HOT: [&str; 4] = [
    "profiler_demo::parse_records",
    "profiler_demo::checksum",
    "profiler_demo::render",
    "profiler_demo::layout",
];

/// `target/release/profiler-demo`, built with `cargo build --release -p
/// profiler-demo` as the README's `cargo build --release` builds it: with the
/// workspace's release profile, so that the test sees what a new user sees.
fn demo_bin() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "-p", "profiler-demo"])
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("running cargo build --release -p profiler-demo");
    assert!(
        output.status.success(),
        "cargo build --release -p profiler-demo failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir().join("release/profiler-demo")
}

/// The share of the samples (in %) in frames of each name, from the flame
/// graph's `<title>NAME (N samples, P%)</title>` elements. Each frame's share
/// includes its callees; a name under several parents is summed, which counts
/// nothing twice as long as no function of interest calls itself.
fn shares_by_name(svg: &str) -> HashMap<String, f64> {
    let mut shares = HashMap::new();
    for title in svg.split("<title>").skip(1) {
        let Some(title) = title.split("</title>").next() else {
            continue;
        };
        let Some((name, rest)) = title.rsplit_once(" (") else {
            continue;
        };
        let Some(percent) = rest
            .strip_suffix("%)")
            .and_then(|r| r.rsplit(", ").next())
            .and_then(|p| p.parse::<f64>().ok())
        else {
            continue;
        };
        *shares.entry(name.to_string()).or_insert(0.0) += percent;
    }
    shares
}

#[test]
fn readme_run_command_names_the_demo_functions() {
    if !require_root("readme_run_command_names_the_demo_functions") {
        return;
    }
    let demo = demo_bin();
    let _guard = shared_recording();
    let dir = temp_dir("demo");
    let svg_path = dir.path().join("flame.svg");
    // The README's command, plus folded stacks of the same recording for
    // the nesting, which the SVG only shows as geometry.
    let folded_path = dir.path().join("flame.folded");
    let run = record()
        .output(&svg_path)
        .output(&folded_path)
        .command(&demo, &[])
        .run_ok(TIMEOUT);
    let svg = std::fs::read_to_string(&svg_path).expect("reading flame.svg");
    let shares = shares_by_name(&svg);
    let mut named: Vec<_> = shares.iter().collect();
    named.sort_by(|a, b| b.1.total_cmp(a.1));
    let stacks = read_folded(&folded_path);
    let d = format!(
        "\n--- profiler stderr ---\n{}\n--- heaviest frames of the SVG ---\n{}\n--- folded ---\n{}",
        run.stderr,
        named
            .iter()
            .take(25)
            .map(|(n, p)| format!("{p:6.2}% {n}"))
            .collect::<Vec<_>>()
            .join("\n"),
        top_lines(&stacks, 15)
    );
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "flame.svg is not complete{d}"
    );
    // Each does real work of its own (the demo keeps its calls out of tail
    // position and does work after them), so each is sampled as a leaf at
    // least, whatever the unwinder manages above it.
    for hot in HOT {
        let share = shares.get(hot).copied().unwrap_or(0.0);
        // Each has ~10% or more of the samples (see the demo's docs); 2%
        // leaves room for a loaded machine, where the demo gets ~80 samples.
        assert!(
            share >= 2.0,
            "{hot}: {share:.1}% of the samples, expected at least 2%{d}"
        );
    }
    // The two innermost functions are most of the work: checksum and layout
    // together take about two thirds of the demo's CPU time.
    let leaves = shares["profiler_demo::checksum"] + shares["profiler_demo::layout"];
    assert!(
        leaves >= 40.0,
        "checksum + layout: {leaves:.1}% of the samples, expected most of them{d}"
    );
    // The demo is a default release build, without frame pointers: its
    // stacks reach main only through the unwind tables (the default
    // `--unwind auto`). A stack may be cut at the top (the first tens of
    // milliseconds, before the demo's mappings reach the kernel, or in
    // libc's start-up code), which leaves the chain below intact; one cut
    // inside the chain is what this catches.
    for chain in [
        [
            "profiler_demo::main",
            "profiler_demo::run",
            "profiler_demo::parse_records",
            "profiler_demo::checksum",
        ],
        [
            "profiler_demo::main",
            "profiler_demo::run",
            "profiler_demo::render",
            "profiler_demo::layout",
        ],
    ] {
        let leaf = chain[3];
        let all = samples_with(&stacks, leaf);
        let whole: u64 = stacks
            .iter()
            .filter(|(frames, _)| contains_sequence(frames, &chain))
            .map(|(_, n)| n)
            .sum();
        assert!(
            all > 0 && whole * 10 >= all * 9,
            "{whole} of the {all} samples in {leaf} are under {}: expected 90% or more{d}",
            chain.join(" -> ")
        );
    }
}

#[test]
fn titles_are_read_with_their_shares() {
    let svg = "<g><title>all (100 samples, 100%)</title></g>\
               <g><title>profiler_demo::checksum (1,234 samples, 41.50%)</title></g>\
               <g><title>a (b) (3 samples, 1.00%)</title></g>\
               <g><title>profiler_demo::checksum (10 samples, 0.50%)</title></g>";
    let shares = shares_by_name(svg);
    assert_eq!(shares["profiler_demo::checksum"], 42.0);
    assert_eq!(shares["a (b)"], 1.0);
    assert_eq!(shares["all"], 100.0);
}
