//! Support for the profiler's integration tests (`tests/tests/*.rs`): finding
//! (and if needed building) the `profiler` binary, compiling the C workloads
//! in `tests/workloads/`, running processes with timeouts, and reading the
//! folded, SVG and pprof outputs.
//!
//! Tests that need root (loading eBPF programs) start with
//! `if !require_root("name") { return; }`, which says loudly on stderr that
//! the test was skipped.

pub mod ingest;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

pub use pprof::protos::{Message, Profile as PprofProfile};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The profile directory the running test executable was built into, e.g.
/// `target/debug` for `target/debug/deps/record-0123abcd`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("the test executable has a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// The cargo target directory (the parent of the profile directory).
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    let mut dir = profile
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"));
    // A `--target TRIPLE` build nests one more level: target/TRIPLE/debug.
    if !dir.join("CACHEDIR.TAG").exists()
        && dir
            .parent()
            .is_some_and(|p| p.join("CACHEDIR.TAG").exists())
    {
        dir.pop();
    }
    dir
}

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    let mut newest = meta.modified().ok();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).ok()?.flatten() {
            if let Some(t) = newest_mtime(&entry.path()) {
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        }
    }
    newest
}

/// The sources the `profiler` binary is built from; the binary is rebuilt when
/// one of them is newer.
fn profiler_sources() -> Vec<PathBuf> {
    let root = workspace_root();
    [
        "profiler/src",
        "profiler/ebpf",
        "profiler/Cargo.toml",
        "symbolizer/src",
        "profiler-common/src",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect()
}

fn is_stale(bin: &Path) -> bool {
    let Some(built) = std::fs::metadata(bin).ok().and_then(|m| m.modified().ok()) else {
        return true;
    };
    profiler_sources()
        .iter()
        .filter_map(|p| newest_mtime(p))
        .any(|t| t > built)
}

fn cargo_build_profiler(profile_dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "profiler"]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    cmd.env("CARGO_TARGET_DIR", target_dir());
    eprintln!(
        "profiler-tests: the profiler binary is missing or older than its sources: running {cmd:?}"
    );
    let output = cmd
        .output()
        .map_err(|e| format!("running cargo build -p profiler: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo build -p profiler` failed ({}); build it with cargo build -p profiler\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// The `profiler` binary: `$PROFILER_BIN` if set, else `profiler` in the
/// profile directory of the running test executable (`target/debug`). When
/// that one is missing or older than the profiler's sources it is built once
/// (per test process) with `cargo build -p profiler`; if that fails, every
/// test using the binary panics with cargo's errors.
pub fn profiler_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("PROFILER_BIN") {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(format!(
                    "PROFILER_BIN={} does not exist; build it with cargo build -p profiler",
                    path.display()
                ));
            }
            return Ok(path);
        }
        let dir = profile_dir();
        let bin = dir.join("profiler");
        if is_stale(&bin) {
            cargo_build_profiler(&dir)?;
        }
        if !bin.is_file() {
            return Err(format!(
                "{} does not exist: build it with cargo build -p profiler",
                bin.display()
            ));
        }
        Ok(bin)
    });
    match bin {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Whether the tests that load eBPF programs can run: root and kernel BTF.
/// When not, prints `SKIPPED <test>: ...` on stderr and returns false; the
/// test then returns early.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    if euid == 0 && btf {
        return true;
    }
    let why = match (euid == 0, btf) {
        (false, false) => "not root and no /sys/kernel/btf/vmlinux",
        (false, true) => "not root",
        _ => "no /sys/kernel/btf/vmlinux",
    };
    skipped(
        test,
        &format!("needs root and BTF ({why}); run as root, e.g. sudo -E cargo test"),
    );
    false
}

/// Says loudly that `test` was skipped. Written to the stderr handle rather
/// than with `eprintln!`, which the test harness captures (and hides for
/// passing tests) unless run with `--nocapture`.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let line = "*".repeat(72);
    let _ = write!(
        std::io::stderr(),
        "\n{line}\nSKIPPED {test}: {why}\n{line}\n"
    );
}

/// Serializes the system-wide (`-a`) recording against the other recordings
/// of the same test binary: the `-a` test takes it for writing (so no other
/// profiler runs meanwhile and shows up in its output), others for reading.
fn recording_lock() -> &'static RwLock<()> {
    static LOCK: RwLock<()> = RwLock::new(());
    &LOCK
}

/// Held by a test that records only its own processes. The profiler binary
/// is built (if stale) before the lock is taken: a test starts its workload
/// next, and a minute of `cargo build` inside the profiler's spawn let a
/// 60 s workload end before the agent watching it started (CI, once).
pub fn shared_recording() -> RwLockReadGuard<'static, ()> {
    let _ = profiler_bin();
    recording_lock().read().unwrap_or_else(|e| e.into_inner())
}

/// Held by a test that must be the only recording running (`-a`).
pub fn exclusive_recording() -> RwLockWriteGuard<'static, ()> {
    let _ = profiler_bin();
    recording_lock().write().unwrap_or_else(|e| e.into_inner())
}

/// A scratch directory for the current test run, under the target directory.
pub fn scratch_root() -> PathBuf {
    let dir = target_dir().join("profiler-tests");
    std::fs::create_dir_all(&dir).expect("creating target/profiler-tests");
    dir
}

/// A fresh temporary directory for one test's output files (removed when
/// dropped).
pub fn temp_dir(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{test}-"))
        .tempdir_in(scratch_root())
        .expect("creating a temp dir")
}

/// The C sources of the workloads in `tests/workloads/`.
pub fn workload_source(name: &str) -> &'static str {
    match name {
        "cpu_ratio" => include_str!("../workloads/cpu_ratio.c"),
        "syscalls" => include_str!("../workloads/syscalls.c"),
        "forker" => include_str!("../workloads/forker.c"),
        "execer" => include_str!("../workloads/execer.c"),
        "exiter" => include_str!("../workloads/exiter.c"),
        "threads" => include_str!("../workloads/threads.c"),
        "manystacks" => include_str!("../workloads/manystacks.c"),
        "vdso_time" => include_str!("../workloads/vdso_time.c"),
        "waits" => include_str!("../workloads/waits.c"),
        _ => panic!("no workload named {name}"),
    }
}

/// Compiles a workload from `tests/workloads/` (see [`build_c`]).
pub fn workload(name: &str) -> PathBuf {
    build_c(name, workload_source(name))
}

/// Compiles C `source` into an executable called `name` with frame pointers
/// and debug info, under `target/profiler-tests/workloads/`; each name is
/// compiled once per test process.
pub fn build_c(name: &str, source: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let dir = scratch_root().join("workloads");
    std::fs::create_dir_all(&dir).expect("creating the workloads directory");
    let pid = std::process::id();
    let src = dir.join(format!("{name}.{pid}.c"));
    std::fs::write(&src, source).expect("writing the C source");
    let tmp_exe = dir.join(format!("{name}.{pid}.tmp"));
    let exe = dir.join(name);
    let output = Command::new("clang")
        .args([
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            "-mno-omit-leaf-frame-pointer",
            "-fno-inline",
            "-pthread",
            "-o",
        ])
        .arg(&tmp_exe)
        .arg(&src)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("clang not found: install clang (apt-get install clang) or run cargo xtask test")
        }
        Err(e) => panic!("running clang: {e}"),
    };
    let _ = std::fs::remove_file(&src);
    if !output.status.success() {
        panic!(
            "clang failed to compile {name}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Atomic replacement: another test binary may be running the old one.
    std::fs::rename(&tmp_exe, &exe).expect("renaming the compiled workload");
    built.insert(name.to_string(), exe.clone());
    exe
}

/// A child process that is killed (and reaped) when dropped, so that a failing
/// test leaves nothing running.
pub struct Proc {
    child: Option<Child>,
    pub pid: u32,
    what: String,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
}

/// How a [`Proc`] ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

fn drain<R: Read + Send + 'static>(reader: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    reader.map(|mut r| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    })
}

impl Proc {
    /// Starts `cmd` with stdout and stderr captured.
    pub fn spawn(mut cmd: Command) -> Proc {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Proc {
            pid: child.id(),
            child: Some(child),
            what,
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    /// Starts a workload from `tests/workloads/` with `args` and waits (at
    /// most 5 s) until it has exec'ed, so that `-p PID` finds the workload and
    /// not the test process it was forked from.
    pub fn workload(name: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(workload(name));
        cmd.args(args);
        let proc = Proc::spawn(cmd);
        wait_for_comm(proc.pid, name, Duration::from_secs(5));
        proc
    }

    /// Sends `signal` (e.g. `libc::SIGINT`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions; the child is not
        // reaped yet (we own it), so the pid is still ours.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        assert_eq!(
            rc,
            0,
            "kill({}, {signal}) failed: {}",
            self.pid,
            std::io::Error::last_os_error()
        );
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits at most `timeout` for the process to exit; kills it and panics
    /// (showing what it printed) if it does not.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let mut child = self.child.take().expect("not waited for yet");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        match status {
            Some(status) => Finished {
                status,
                stdout,
                stderr,
                elapsed,
            },
            None => panic!(
                "{} did not finish within {timeout:?}; killed it.\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                self.what
            ),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `profiler ARGS...` as a [`Command`].
pub fn profiler_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(profiler_bin());
    cmd.args(args);
    cmd
}

/// Starts `profiler ARGS...` in the background.
pub fn spawn_profiler<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Proc {
    Proc::spawn(profiler_command(args))
}

/// Runs `profiler ARGS...` to completion, killing it and panicking after
/// `timeout`.
pub fn run_profiler<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> Finished {
    spawn_profiler(args).wait(timeout)
}

/// Runs `profiler ARGS...` and panics (with its stderr) unless it exits 0.
pub fn run_profiler_ok<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> Finished {
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let run = run_profiler(args, timeout);
    assert!(
        run.status.success(),
        "profiler {} failed: {}\n--- stderr ---\n{}",
        shown.join(" "),
        run.status,
        run.stderr
    );
    run
}

/// The arguments of a `profiler record` run, built in the order given:
/// `record().freq(499).pid(pid).duration("3").output(&out).run_ok(TIMEOUT)`.
/// Always starts with `record --no-status`; displays as the argument list.
#[derive(Debug)]
pub struct Record {
    args: Vec<String>,
}

/// `profiler record --no-status` (see [`Record`]).
pub fn record() -> Record {
    Record {
        args: vec!["record".into(), "--no-status".into()],
    }
}

impl Record {
    fn option(mut self, flag: &str, value: impl std::fmt::Display) -> Self {
        self.args.push(flag.into());
        self.args.push(value.to_string());
        self
    }

    /// `--mode cpu|off-cpu|wall`.
    pub fn mode(self, mode: &str) -> Self {
        self.option("--mode", mode)
    }

    /// `--min-block DURATION`, e.g. `"5ms"`.
    pub fn min_block(self, duration: &str) -> Self {
        self.option("--min-block", duration)
    }

    /// `-F HZ`.
    pub fn freq(self, hz: impl std::fmt::Display) -> Self {
        self.option("-F", hz)
    }

    /// `--stack-map-size N`.
    pub fn stack_map_size(self, entries: impl std::fmt::Display) -> Self {
        self.option("--stack-map-size", entries)
    }

    /// `-p PID` (or a comma-separated list of pids).
    pub fn pid(self, pid: impl std::fmt::Display) -> Self {
        self.option("-p", pid)
    }

    /// `-a`.
    pub fn all_cpus(mut self) -> Self {
        self.args.push("-a".into());
        self
    }

    /// `-d DURATION`, e.g. `"3"` or `"1500ms"`.
    pub fn duration(self, duration: &str) -> Self {
        self.option("-d", duration)
    }

    /// `-o PATH`.
    pub fn output(self, path: impl AsRef<Path>) -> Self {
        self.option("-o", utf8(path.as_ref()))
    }

    /// Any other arguments, as given (before the command).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `-- EXE ARGS...`: the command to start and record (last).
    pub fn command(mut self, exe: impl AsRef<Path>, args: &[&str]) -> Self {
        self.args.push("--".into());
        self.args.push(utf8(exe.as_ref()).into());
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Starts the profiler in the background.
    pub fn spawn(&self) -> Proc {
        spawn_profiler(&self.args)
    }

    /// Runs the profiler to completion (see [`run_profiler`]).
    pub fn run(&self, timeout: Duration) -> Finished {
        run_profiler(&self.args, timeout)
    }

    /// Runs the profiler and panics unless it exits 0 (see [`run_profiler_ok`]).
    pub fn run_ok(&self, timeout: Duration) -> Finished {
        run_profiler_ok(&self.args, timeout)
    }
}

fn utf8(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display()))
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.args.join(" "))
    }
}

/// Asserts that `what` (a profiler run) failed cleanly: a non-zero exit
/// status, not a signal, and an `error:` message on stderr.
pub fn assert_failed_cleanly(run: &Finished, what: &str) {
    assert!(
        !run.status.success(),
        "{what} succeeded\n--- stderr ---\n{}",
        run.stderr
    );
    assert!(
        run.status.code().is_some(),
        "{what} was killed by a signal: {}\n--- stderr ---\n{}",
        run.status,
        run.stderr
    );
    assert!(
        run.stderr.contains("error:"),
        "{what}: no `error:` on stderr\n--- stderr ---\n{}",
        run.stderr
    );
}

/// One line of a folded file: frames root first (the command name is the
/// first) and the sample count.
pub type FoldedStack = (Vec<String>, u64);

/// Parses folded stacks (`comm;root;...;leaf COUNT` per line).
pub fn parse_folded(text: &str) -> Vec<FoldedStack> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (stack, count) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("folded line without a count: {line:?}"));
            let count: u64 = count
                .parse()
                .unwrap_or_else(|_| panic!("folded line with a bad count: {line:?}"));
            (stack.split(';').map(str::to_string).collect(), count)
        })
        .collect()
}

/// Reads and parses a folded file.
pub fn read_folded(path: &Path) -> Vec<FoldedStack> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_folded(&text)
}

/// Total samples of folded stacks.
pub fn total_samples(stacks: &[FoldedStack]) -> u64 {
    stacks.iter().map(|(_, n)| n).sum()
}

/// Samples whose stack holds `frame` (the command-name root frame excluded).
pub fn samples_with(stacks: &[FoldedStack], frame: &str) -> u64 {
    stacks
        .iter()
        .filter(|(frames, _)| frames.iter().skip(1).any(|f| f == frame))
        .map(|(_, n)| n)
        .sum()
}

/// Samples whose leaf frame is `frame`.
pub fn samples_with_leaf(stacks: &[FoldedStack], frame: &str) -> u64 {
    stacks
        .iter()
        .filter(|(frames, _)| frames.len() > 1 && frames.last().is_some_and(|f| f == frame))
        .map(|(_, n)| n)
        .sum()
}

/// The share (0..=1) of samples whose stack holds `frame`.
pub fn share(stacks: &[FoldedStack], frame: &str) -> f64 {
    let total = total_samples(stacks);
    if total == 0 {
        0.0
    } else {
        samples_with(stacks, frame) as f64 / total as f64
    }
}

/// Whether `needle` occurs as adjacent frames in `frames`.
pub fn contains_sequence(frames: &[String], needle: &[&str]) -> bool {
    !needle.is_empty()
        && frames
            .windows(needle.len())
            .any(|w| w.iter().zip(needle).all(|(a, b)| a == b))
}

/// The heaviest stacks, one per line, for failure messages.
pub fn top_lines(stacks: &[FoldedStack], n: usize) -> String {
    let mut sorted: Vec<&FoldedStack> = stacks.iter().collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.1));
    let total = total_samples(stacks);
    let mut out = format!("{} stacks, {total} samples; heaviest:\n", stacks.len());
    for (frames, count) in sorted.into_iter().take(n) {
        out.push_str(&format!("  {count:>6} {}\n", frames.join(";")));
    }
    out
}

/// Decodes a gzip-compressed (or plain) pprof file.
pub fn read_pprof(path: &Path) -> PprofProfile {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("gunzip {}: {e}", path.display()));
        raw
    } else {
        bytes
    };
    PprofProfile::decode(&raw[..])
        .unwrap_or_else(|e| panic!("decoding pprof {}: {e}", path.display()))
}

/// A string of a pprof profile's string table.
pub fn pprof_str(profile: &PprofProfile, index: i64) -> &str {
    profile
        .string_table
        .get(index as usize)
        .map(String::as_str)
        .unwrap_or("<bad string index>")
}

/// The `(type, unit)` pairs of the sample values.
pub fn pprof_sample_types(profile: &PprofProfile) -> Vec<(String, String)> {
    profile
        .sample_type
        .iter()
        .map(|t| {
            (
                pprof_str(profile, t.ty).to_string(),
                pprof_str(profile, t.unit).to_string(),
            )
        })
        .collect()
}

/// The sum of sample value `index` over all samples.
pub fn pprof_total(profile: &PprofProfile, index: usize) -> i64 {
    profile
        .sample
        .iter()
        .map(|s| s.value.get(index).copied().unwrap_or(0))
        .sum()
}

/// A numeric label of a sample.
pub fn pprof_num_label(
    profile: &PprofProfile,
    sample: &pprof::protos::Sample,
    key: &str,
) -> Option<i64> {
    sample
        .label
        .iter()
        .find(|l| pprof_str(profile, l.key) == key)
        .map(|l| l.num)
}

/// A string label of a sample.
pub fn pprof_str_label<'a>(
    profile: &'a PprofProfile,
    sample: &pprof::protos::Sample,
    key: &str,
) -> Option<&'a str> {
    sample
        .label
        .iter()
        .find(|l| pprof_str(profile, l.key) == key)
        .map(|l| pprof_str(profile, l.str))
}

/// The function names of a sample, leaf first, inlined frames expanded.
pub fn pprof_functions(profile: &PprofProfile, sample: &pprof::protos::Sample) -> Vec<String> {
    let locations: HashMap<u64, &pprof::protos::Location> =
        profile.location.iter().map(|l| (l.id, l)).collect();
    let functions: HashMap<u64, &pprof::protos::Function> =
        profile.function.iter().map(|f| (f.id, f)).collect();
    let mut names = Vec::new();
    for id in &sample.location_id {
        let Some(location) = locations.get(id) else {
            names.push(format!("<missing location {id}>"));
            continue;
        };
        for line in &location.line {
            match functions.get(&line.function_id) {
                Some(f) => names.push(pprof_str(profile, f.name).to_string()),
                None => names.push(format!("<missing function {}>", line.function_id)),
            }
        }
    }
    names
}

/// Whether `go` is installed; if not, says the test is skipped.
pub fn require_go(test: &str) -> bool {
    let ok = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skipped(
            test,
            "needs go (`go tool pprof`); install golang-go or run cargo xtask test",
        );
    }
    ok
}

/// Runs `go tool pprof ARGS... FILE` and returns its stdout; panics with its
/// stderr if it fails.
pub fn go_pprof(args: &[&str], file: &Path) -> String {
    let scratch = scratch_root().join("go-pprof");
    std::fs::create_dir_all(&scratch).expect("creating the pprof scratch dir");
    let mut cmd = Command::new("go");
    cmd.args(["tool", "pprof"]).args(args).arg(file);
    // pprof saves fetched profiles under $PPROF_TMPDIR (default ~/pprof).
    cmd.env("PPROF_TMPDIR", &scratch);
    let what = format!("{cmd:?}");
    let run = Proc::spawn(cmd).wait(Duration::from_secs(120));
    assert!(
        run.status.success(),
        "{what} failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// One row of `go tool pprof -top`.
#[derive(Clone, Debug, PartialEq)]
pub struct TopRow {
    pub flat_percent: f64,
    pub cum_percent: f64,
    pub name: String,
}

/// Parses the rows of `go tool pprof -top` (`flat flat% sum% cum cum% name`).
pub fn parse_pprof_top(text: &str) -> Vec<TopRow> {
    let percent = |s: &str| s.strip_suffix('%').and_then(|n| n.parse::<f64>().ok());
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 6 {
                return None;
            }
            Some(TopRow {
                flat_percent: percent(fields[1])?,
                cum_percent: percent(fields[4])?,
                name: fields[5..].join(" "),
            })
        })
        .collect()
}

/// Waits until `pid` has a thread running `comm`-named code, i.e. until the
/// workload has exec'ed (its `/proc/PID/comm` equals `comm`).
pub fn wait_for_comm(pid: u32, comm: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} did not become {comm} within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

impl Record {
    /// `--unwind auto|fp|dwarf`.
    pub fn unwind(self, mode: &str) -> Self {
        self.option("--unwind", mode)
    }

    /// A flag without a value, e.g. `--interpreter-frames`.
    pub fn flag(mut self, flag: &str) -> Self {
        self.args.push(flag.into());
        self
    }
}
