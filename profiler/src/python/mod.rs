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
}

/// The Python processes of a recording.
pub struct Pythons {
    sink: Box<dyn InterpreterSink + Send>,
    processes: HashMap<u32, Tracked>,
    /// Code objects the kernel announced, read at the next [`Pythons::read_announced`].
    announced: Vec<(u32, u64)>,
    stats: PythonStats,
    versions: std::collections::BTreeMap<String, u64>,
    unsupported: std::collections::BTreeMap<String, u64>,
}

/// `3.12` of `3.12.1`.
fn major_minor(version: &str) -> String {
    version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// Whether a mapping's path may be a CPython interpreter or library.
fn looks_like_python(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|name| name.contains("python"))
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
            announced: Vec::new(),
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
        let tracked = self.processes.entry(pid).or_insert_with(|| Tracked {
            fingerprint: Vec::new(),
            interpreter: None,
            memory: None,
            codes: Codes::default(),
            exited: false,
        });
        tracked.exited = false;
        if fingerprint.is_empty() {
            if tracked.interpreter.take().is_some() {
                self.sink.remove(pid);
            }
            tracked.fingerprint = fingerprint;
            return;
        }
        if tracked.fingerprint != fingerprint || tracked.interpreter.is_none() {
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
            let known_before = tracked.interpreter.is_some();
            tracked.fingerprint = fingerprint;
            tracked.codes = Codes::default();
            tracked.memory = None;
            tracked.interpreter = match python_frames::inspect(pid, &regions) {
                Ok(Some(interpreter)) => {
                    *self
                        .versions
                        .entry(major_minor(&interpreter.version().to_string()))
                        .or_default() += 1;
                    Some(interpreter)
                }
                Ok(None) => None,
                Err(python_frames::InspectError::UnsupportedVersion { version, .. }) => {
                    *self
                        .unsupported
                        .entry(major_minor(&version.to_string()))
                        .or_default() += 1;
                    None
                }
                // Exited meanwhile: nothing to walk.
                Err(python_frames::InspectError::ProcessGone { .. }) => None,
                Err(e) => {
                    self.stats.inspect_failed += 1;
                    eprintln!("note: Python process {pid}: {e}; its Python frames are not walked");
                    None
                }
            };
            if known_before && tracked.interpreter.is_none() {
                self.sink.remove(pid);
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

    /// The kernel saw code object `code` of `pid` for the first time.
    pub fn announced(&mut self, pid: u32, code: u64) {
        self.announced.push((pid, code));
    }

    /// Reads the code objects the kernel announced since the last call
    /// (their processes may exit any time).
    pub fn read_announced(&mut self, processes: &mut ProcessTable) {
        self.announced.extend(processes.take_python_codes());
        for (pid, code) in std::mem::take(&mut self.announced) {
            self.read_code(pid, code);
        }
    }

    fn read_code(&mut self, pid: u32, code: u64) -> Option<&CodeName> {
        let tracked = self.processes.get_mut(&pid)?;
        let interpreter = tracked.interpreter.as_ref()?;
        if !tracked.codes.contains(code) {
            let read = if tracked.exited {
                Err(names::Unnamed::Gone)
            } else {
                if tracked.memory.is_none() {
                    tracked.memory = ProcessMemory::open(pid).ok();
                }
                match &tracked.memory {
                    Some(memory) => names::read(interpreter, memory, code),
                    None => Err(names::Unnamed::Gone),
                }
            };
            match &read {
                Ok(_) => self.stats.codes_read += 1,
                Err(names::Unnamed::Gone) => self.stats.codes_gone += 1,
                Err(names::Unnamed::Failed) => self.stats.codes_failed += 1,
            }
            tracked.codes.insert(code, read);
        }
        tracked.codes.get(code)
    }

    /// The frame of `pid`'s code object `code` at instruction `index`:
    /// `function (file:line)` parts, read now if the process still lives;
    /// `None` if it cannot be named.
    pub fn line(&mut self, pid: u32, code: u64, index: u32) -> Option<Line> {
        let name = self.read_code(pid, code)?;
        Some(Line {
            function: name.qualname.clone(),
            file: Some(name.filename.clone()),
            line: name.line(index),
        })
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
