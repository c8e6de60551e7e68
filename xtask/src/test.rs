//! `cargo xtask test`: installs the tools the integration tests use when they
//! are missing (clang builds the test workloads with frame pointers, gcc and
//! g++ those without, go's pprof reads our pprof output, py-spy checks the
//! Python frames), runs every test in the workspace, and ends with one line
//! summing all of them, skips included (the root-only tests print `SKIPPED
//! <test>: <why>` when they cannot run).

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Stdio},
    thread,
};

use anyhow::{Context, Result, bail};

use crate::{ebpf::workspace_root, tools};

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
    skipped: u64,
}

impl Tally {
    /// Adds what one line of `cargo test` output says.
    fn add_line(&mut self, line: &str) {
        if line.starts_with("SKIPPED ") {
            self.skipped += 1;
        }
        // `test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; ...`
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Copies a child's stream to ours, line by line, tallying as it goes.
fn pump<R: Read + Send + 'static>(stream: R, to_stderr: bool) -> thread::JoinHandle<Tally> {
    thread::spawn(move || {
        let mut tally = Tally::default();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            tally.add_line(&line);
            if to_stderr {
                let _ = writeln!(std::io::stderr(), "{line}");
            } else {
                let _ = writeln!(std::io::stdout(), "{line}");
            }
        }
        tally
    })
}

/// The test targets to build and run: everything but doc tests (the crates
/// have none, and their empty runs would close the log); xtask's with its
/// `man` feature, so that the man page test runs.
const TARGETS: [&str; 6] = [
    "--workspace",
    "--lib",
    "--bins",
    "--tests",
    "--features",
    "xtask/man",
];

/// Builds the tests and, in the same cargo run, `target/debug/profiler`,
/// which the integration tests run. Left to them, they build it with
/// `cargo build -p profiler`, whose dependency features differ from the
/// workspace's: a second copy of ~20 crates (0.5 GB of target/, 15 s).
fn prebuild() -> Result<()> {
    let status = Command::new("cargo")
        .current_dir(workspace_root())
        .arg("build")
        .args(TARGETS)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the tests and the profiler binary failed ({status})");
    }
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    if tools::is_root() {
        // gcc and g++ build the unwinding tests' workloads as distributions
        // build theirs (no frame pointers).
        tools::apt_install(&["clang", "gcc", "g++", "golang-go"])?;
        // py-spy: the Python tests' second opinion (tests/tests/python.rs).
        tools::pip_install_py_spy()?;
    } else {
        eprintln!("xtask: not root: the integration tests that need root will skip and say so");
    }
    if args.is_empty() {
        prebuild()?;
    }
    let mut child = Command::new("cargo")
        .current_dir(workspace_root())
        .arg("test")
        .args(TARGETS)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let out = pump(child.stdout.take().unwrap(), false);
    let err = pump(child.stderr.take().unwrap(), true);
    let status = child.wait()?;
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    // A test that skips returns early, so cargo counts it as passed too.
    let skipped = out.skipped + err.skipped;
    let tally = Tally {
        passed: (out.passed + err.passed).saturating_sub(skipped),
        failed: out.failed + err.failed,
        skipped,
    };
    println!(
        "tests: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.skipped
    );
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_results_and_skips() {
        let mut tally = Tally::default();
        for line in [
            "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 22.53s",
            "test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.1s",
            "SKIPPED cpu_ratio_stacks_and_shares: needs root and BTF (running as uid 1000)",
            "test foo ... ok",
        ] {
            tally.add_line(line);
        }
        assert_eq!(
            tally,
            Tally {
                passed: 15,
                failed: 2,
                skipped: 1
            }
        );
    }
}
