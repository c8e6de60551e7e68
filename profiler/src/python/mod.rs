//! CPython frames, user-space half: finds the interpreter of each Python
//! process (version, struct offsets, eval-loop addresses; the
//! `python-frames` crate) and writes it where the kernel's walker reads it
//! (`PYTHON_PROCS`); reads the code objects the kernel announces while
//! their process lives, so that a script that exits before the profile is
//! written still has its functions named; names Python frames for the
//! outputs.
//!
//! Layers: [`InterpreterSink`] is the kernel map (a recorder in tests),
//! [`Pythons`] follows the process table like the unwind tables do, and
//! the aggregation asks it for names through `Resolve::python`.

mod kernel_map;
mod names;

pub use kernel_map::KernelPythonMap;
pub use names::{CodeName, Codes};

use foldhash::HashMap;
use python_frames::{Interpreter, ProcessMemory, Region};
use symbolizer::ProcessMaps;

use crate::{follow::FollowProcesses, processes::ProcessTable, profile::Line, tracer::Tracer};

/// Where interpreters go: the kernel's `PYTHON_PROCS`, or a recorder in tests.
pub trait InterpreterSink {
    fn set(&mut self, pid: u32, process: &profiler_common::python::Process) -> Result<(), String>;
    fn remove(&mut self, pid: u32);
}

/// What was found, for the summary and the agent's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PythonStats {
    /// Processes running a supported CPython, by version (`3.12`), in order.
    pub versions: Vec<(String, u64)>,
    /// Python processes whose version the kernel cannot walk, by version.
    pub unsupported: Vec<(String, u64)>,
    /// Processes whose interpreter could not be inspected (a file or its
    /// memory unreadable, symbols missing).
    pub inspect_failed: u64,
    /// Code objects read (named), and those that could not be: the
    /// process was gone first, or the read failed or found no code object.
    pub codes_read: u64,
    pub codes_gone: u64,
    pub codes_failed: u64,
    /// Code ids in stacks that user space was never told of (the kernel's
    /// announcement lost, or the process not known as Python then).
    pub codes_unannounced: u64,
    /// Writes the kernel refused (its map full).
    pub writes_failed: u64,
}

/// One process as far as Python goes.
struct Tracked {
    /// The Python-looking mappings it was last inspected with: inspected
    /// again only when they change.
    fingerprint: Vec<(u64, String)>,
    interpreter: Option<Interpreter>,
    memory: Option<ProcessMemory>,
    codes: Codes,
    exited: bool,
    /// The last inspection failed for a reason that may pass.
    retry: bool,
    /// Counted in the summary's figures already.
    counted: bool,
}

/// The Python processes of a recording.
pub struct Pythons {
    sink: Box<dyn InterpreterSink + Send>,
    processes: HashMap<u32, Tracked>,
    /// Codes asked for and not named, each counted once.
    unnamed_ids: foldhash::HashSet<(u32, u64)>,
    stats: PythonStats,
    versions: std::collections::BTreeMap<String, u64>,
    unsupported: std::collections::BTreeMap<String, u64>,
}

/// `3.12` of `3.12.1`.
fn major_minor(version: &str) -> String {
    version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// Whether a mapping's path may be a CPython interpreter or library (not
/// an extension module such as `_json.cpython-311-x86_64-linux-gnu.so`,
/// whose loading must not make the interpreter look new).
fn looks_like_python(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|name| {
        name.contains("python") && !name.contains(".cpython-") && !name.contains(".abi3.")
    })
}

impl Pythons {
    /// The Python support of `tracer`, if it walks stacks with tables.
    pub fn of(tracer: &mut Tracer) -> Option<Pythons> {
        let map = tracer.take_python_map()?;
        Some(Pythons::new(Box::new(map)))
    }

    pub fn new(sink: Box<dyn InterpreterSink + Send>) -> Pythons {
        Pythons {
            sink,
            processes: HashMap::default(),
            unnamed_ids: Default::default(),
            stats: PythonStats::default(),
            versions: Default::default(),
            unsupported: Default::default(),
        }
    }

    /// Inspects `maps`'s process if its Python-looking mappings changed,
    /// and (re)writes its interpreter for the kernel: after an exec the
    /// kernel dropped it, and the process's mappings changed.
    pub fn sync(&mut self, maps: &ProcessMaps) {
        let pid = maps.pid;
        let fingerprint: Vec<(u64, String)> = maps
            .mappings
            .iter()
            .filter(|m| looks_like_python(&m.name))
            .map(|m| (m.start, m.name.to_string()))
            .collect();
        // Most processes are not Python: nothing is kept of them.
        if fingerprint.is_empty() && !self.processes.contains_key(&pid) {
            return;
        }
        let tracked = self.processes.entry(pid).or_insert_with(|| Tracked {
            fingerprint: Vec::new(),
            interpreter: None,
            memory: None,
            codes: Codes::default(),
            exited: false,
            retry: false,
            counted: false,
        });
        tracked.exited = false;
        if fingerprint.is_empty() {
            if tracked.interpreter.take().is_some() {
                self.sink.remove(pid);
            }
            tracked.fingerprint = fingerprint;
            return;
        }
        if tracked.fingerprint != fingerprint || tracked.retry {
            let regions: Vec<Region> = maps
                .mappings
                .iter()
                .filter(|m| m.object.is_some())
                .map(|m| Region {
                    start: m.start,
                    end: m.end,
                    file_offset: m.file_offset,
                    path: m.name.to_string(),
                })
                .collect();
            tracked.fingerprint = fingerprint;
            tracked.retry = false;
            let found = match python_frames::inspect(pid, &regions) {
                // A layout the kernel's fixed-size reads cannot hold (a
                // future version's): not walked, rather than walked wrong.
                Ok(Some(found)) if !found.process().offsets.fit_kernel_reads() => {
                    if !std::mem::replace(&mut tracked.counted, true) {
                        self.stats.inspect_failed += 1;
                        eprintln!(
                            "note: Python process {pid}: its interpreter's structures are laid \
                             out beyond what the kernel reads; its Python frames are not walked"
                        );
                    }
                    None
                }
                Ok(found) => found,
                // Exited meanwhile: what was found before (and the names
                // read) stays, for its samples.
                Err(python_frames::InspectError::ProcessGone { .. }) => return,
                Err(python_frames::InspectError::UnsupportedVersion { version, .. }) => {
                    if !std::mem::replace(&mut tracked.counted, true) {
                        *self
                            .unsupported
                            .entry(major_minor(&version.to_string()))
                            .or_default() += 1;
                    }
                    None
                }
                Err(e) => {
                    // A file or memory not readable yet (the loader at
                    // work): tried again at the next change or announcement.
                    tracked.retry = true;
                    if !std::mem::replace(&mut tracked.counted, true) {
                        self.stats.inspect_failed += 1;
                        eprintln!(
                            "note: Python process {pid}: {e}; its Python frames are not walked"
                        );
                    }
                    None
                }
            };
            let same = |a: &Interpreter, b: &Interpreter| {
                a.runtime_address() == b.runtime_address() && a.path() == b.path()
            };
            match (&tracked.interpreter, found) {
                // A library loaded, the interpreter unchanged: its names stay.
                (Some(old), Some(new)) if same(old, &new) => {}
                (_, Some(new)) => {
                    tracked.codes = Codes::default();
                    tracked.memory = None;
                    if !std::mem::replace(&mut tracked.counted, true)
                        || tracked.interpreter.is_some()
                    {
                        *self
                            .versions
                            .entry(major_minor(&new.version().to_string()))
                            .or_default() += 1;
                    }
                    tracked.interpreter = Some(new);
                }
                (Some(_), None) => {
                    tracked.interpreter = None;
                    tracked.codes = Codes::default();
                    tracked.memory = None;
                    self.sink.remove(pid);
                }
                (None, None) => {}
            }
        }
        if let Some(interpreter) = &tracked.interpreter
            && self.sink.set(pid, &interpreter.process()).is_err()
        {
            self.stats.writes_failed += 1;
        }
    }

    /// `pid` exited: its kernel entry went with it; its names stay until
    /// [`Pythons::evict_exited`].
    pub fn remove(&mut self, pid: u32) {
        if let Some(tracked) = self.processes.get_mut(&pid) {
            tracked.exited = true;
            tracked.memory = None;
        }
    }

    /// Reads the code objects the kernel announced since the last call
    /// (their processes may exit any time).
    pub fn read_announced(&mut self, processes: &mut ProcessTable) {
        for (pid, code, id) in processes.take_python_codes() {
            self.read_code(pid, code, id);
        }
    }

    /// Reads code object `code` as id `id`, unless it was read already.
    fn read_code(&mut self, pid: u32, code: u64, id: u64) {
        let Some(tracked) = self.processes.get_mut(&pid) else {
            return;
        };
        let Some(interpreter) = tracked.interpreter.as_ref() else {
            return;
        };
        if tracked.codes.contains(id) {
            return;
        }
        let read = if tracked.exited {
            Err(names::Unnamed::Gone)
        } else {
            if tracked.memory.is_none() {
                tracked.memory = ProcessMemory::open(pid).ok();
            }
            match &tracked.memory {
                Some(memory) => names::read(interpreter, memory, code, id),
                None => Err(names::Unnamed::Gone),
            }
        };
        match &read {
            Ok(_) => self.stats.codes_read += 1,
            Err(names::Unnamed::Gone) => self.stats.codes_gone += 1,
            Err(names::Unnamed::Failed) => self.stats.codes_failed += 1,
        }
        tracked.codes.insert(id, read);
    }

    /// The frame of `pid`'s code `id` at instruction `index`: `function
    /// (file:line)` parts; `None` if it cannot be named (it was not read
    /// when announced, or its announcement was lost: counted).
    pub fn line(&mut self, pid: u32, id: u64, index: u32) -> Option<Line> {
        match self.processes.get(&pid).and_then(|t| t.codes.read(id)) {
            Some(Ok(name)) => Some(Line {
                function: name.qualname.clone(),
                file: Some(name.filename.clone()),
                line: name.line(index),
            }),
            // Counted when its read failed.
            Some(Err(_)) => None,
            None => {
                if self.unnamed_ids.insert((pid, id)) {
                    self.stats.codes_unannounced += 1;
                }
                None
            }
        }
    }

    /// Forgets exited processes (after their samples were named).
    pub fn evict_exited(&mut self) {
        self.processes.retain(|_, tracked| !tracked.exited);
    }

    pub fn stats(&self) -> PythonStats {
        PythonStats {
            versions: self.versions.iter().map(|(v, n)| (v.clone(), *n)).collect(),
            unsupported: self
                .unsupported
                .iter()
                .map(|(v, n)| (v.clone(), *n))
                .collect(),
            ..self.stats.clone()
        }
    }
}

impl FollowProcesses for Pythons {
    fn sync(&mut self, maps: &ProcessMaps) {
        Pythons::sync(self, maps);
    }

    fn remove(&mut self, pid: u32) {
        Pythons::remove(self, pid);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        process::{Child, Command, Stdio},
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };

    use super::*;

    /// The interpreters written, by pid; removals drop them.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<HashMap<u32, profiler_common::python::Process>>>);

    impl InterpreterSink for Recorder {
        fn set(
            &mut self,
            pid: u32,
            process: &profiler_common::python::Process,
        ) -> Result<(), String> {
            self.0.lock().unwrap().insert(pid, *process);
            Ok(())
        }
        fn remove(&mut self, pid: u32) {
            self.0.lock().unwrap().remove(&pid);
        }
    }

    struct Killed(Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The distro's python3, started with `script`, once its interpreter
    /// is initialised (it printed a line); `None` (said loudly) without one.
    fn python(script: &str) -> Option<(Killed, String)> {
        let Ok(child) = Command::new("/usr/bin/python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
        else {
            eprintln!("SKIPPED: no /usr/bin/python3 to inspect");
            return None;
        };
        let mut child = Killed(child);
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.0.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        Some((child, line))
    }

    #[test]
    fn a_python_process_gets_its_interpreter_written_and_a_code_object_named() {
        let Some((child, line)) = python(
            "import sys, time\ndef waits_here():\n    print(id(waits_here.__code__), flush=True)\n    time.sleep(60)\nwaits_here()\n",
        ) else {
            return;
        };
        let pid = child.0.id();
        let mut files = symbolizer::FileCache::default();
        let maps = symbolizer::capture(pid, &mut files).expect("the child's maps");
        let recorder = Recorder::default();
        let mut pythons = Pythons::new(Box::new(recorder.clone()));
        pythons.sync(&maps);
        let written = recorder.0.lock().unwrap().get(&pid).copied();
        let written = written.expect("the interpreter written for the kernel");
        assert_eq!(written.offsets.version >> 8, 3, "{written:?}");
        assert!(written.offsets.fit_kernel_reads(), "{written:?}");
        assert!(written.eval[0][0] < written.eval[0][1], "{written:?}");
        assert_eq!(pythons.stats().versions.len(), 1, "{:?}", pythons.stats());
        let code: u64 = line.trim().parse().expect("the code object's address");
        let memory = ProcessMemory::open(pid).unwrap();
        let interpreter = &pythons.processes[&pid].interpreter;
        let id = interpreter
            .as_ref()
            .unwrap()
            .code_id(&memory, code)
            .unwrap();
        let mut table = ProcessTable::default();
        table.python_code(pid, code, id);
        pythons.read_announced(&mut table);
        let named = pythons
            .line(pid, id, profiler_common::python::NO_INDEX)
            .expect("the announced code object named");
        assert_eq!(named.function, "waits_here");
        assert_eq!(named.file.as_deref(), Some("<string>"));
        assert_eq!(pythons.stats().codes_read, 1);
        // A non-Python process is not kept.
        let own = symbolizer::capture(std::process::id(), &mut files).unwrap();
        pythons.sync(&own);
        assert!(!recorder.0.lock().unwrap().contains_key(&std::process::id()));
        assert_eq!(pythons.processes.len(), 1);
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{pid}/mem")).exists()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Exited: a code object not read before cannot be named now.
        pythons.remove(pid);
        table.python_code(pid, code + 0x1000, 77);
        pythons.read_announced(&mut table);
        assert_eq!(pythons.line(pid, 77, 0), None);
        assert_eq!(pythons.stats().codes_gone, 1);
        // An id never announced is counted once, however often asked for.
        assert_eq!(pythons.line(pid, 78, 0), None);
        assert_eq!(pythons.line(pid, 78, 1), None);
        assert_eq!(pythons.stats().codes_unannounced, 1);
        pythons.evict_exited();
        assert!(pythons.processes.is_empty());
    }
}
