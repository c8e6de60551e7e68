//! Shared by the integration tests: the interpreters installed on this
//! machine, Python scripts run as child processes, and loud skips.
#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Says that (part of) a test is skipped and why, as `cargo xtask test`
/// counts it (`SKIPPED <test>: <why>`), on the stderr handle: `eprintln!`
/// is captured by the test harness and hidden for a passing test.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// An installed CPython.
#[derive(Clone, Debug)]
pub struct Python {
    pub label: &'static str,
    pub binary: PathBuf,
    /// `include/python3.X` (with `internal/` in it), when the headers are installed.
    pub include: PathBuf,
    /// More include directories (Debian's multiarch `pyconfig.h`).
    pub extra_include: Option<PathBuf>,
    /// (major, minor).
    pub version: (u8, u8),
}

fn pyenv_root() -> PathBuf {
    std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"))
}

/// The interpreter `label` names: `debian-3.11` (`/usr/bin/python3.11`)
/// or `pyenv-X.Y.Z`; `None` (after saying so) when it is not installed.
pub fn python(label: &'static str) -> Option<Python> {
    let python = if label == "debian-3.11" {
        Python {
            label,
            binary: "/usr/bin/python3.11".into(),
            include: "/usr/include/python3.11".into(),
            extra_include: Some("/usr/include/x86_64-linux-gnu/python3.11".into()),
            version: (3, 11),
        }
    } else {
        let full = label
            .strip_prefix("pyenv-")
            .expect("debian-3.11 or pyenv-X.Y.Z");
        let mut parts = full.split('.').map(|p| p.parse::<u8>().expect("a version"));
        let version = (parts.next().unwrap(), parts.next().unwrap());
        let root = pyenv_root().join("versions").join(full);
        let short = format!("python{}.{}", version.0, version.1);
        Python {
            label,
            binary: root.join("bin").join(&short),
            include: root.join("include").join(&short),
            extra_include: None,
            version,
        }
    };
    if !python.binary.exists() {
        skip(&format!("{} is not installed", python.binary.display()));
        return None;
    }
    Some(python)
}

/// A child process, killed when dropped.
pub struct Running {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    pub script: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child prints (without its newline).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading the child's output");
        assert!(!line.is_empty(), "the child exited before printing");
        line.trim_end().to_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.script);
    }
}

/// Runs `source` with `python` (written to a file named after `name`),
/// and waits for its first line of output, which it returns too.
pub fn run_script(python: &Path, name: &str, source: &str) -> (Running, String) {
    let script =
        std::env::temp_dir().join(format!("python-frames-{}-{name}.py", std::process::id()));
    std::fs::write(&script, source).expect("writing the script");
    let mut child = Command::new(python)
        .arg(&script)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut running = Running {
        child,
        stdout,
        script,
    };
    let first = running.line();
    (running, first)
}

/// Runs a command (not Python), killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
