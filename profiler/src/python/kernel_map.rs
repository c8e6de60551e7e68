//! The kernel's `PYTHON_PROCS` map: one interpreter per process, written
//! with one bpf call when a process is first seen (and after an exec).

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
};
use profiler_common::{map_names, python};

use super::InterpreterSink;

pub struct KernelPythonMap {
    procs: HashMap<MapData, u32, python::Process>,
}

impl KernelPythonMap {
    /// Takes the map out of `ebpf`; `None` if it is missing.
    pub fn take(ebpf: &mut Ebpf) -> Option<KernelPythonMap> {
        let procs = HashMap::try_from(ebpf.take_map(map_names::PYTHON_PROCS)?).ok()?;
        Some(KernelPythonMap { procs })
    }
}

impl InterpreterSink for KernelPythonMap {
    fn set(&mut self, pid: u32, process: &python::Process) -> Result<(), String> {
        self.procs
            .insert(pid, process, 0)
            .map_err(|e| e.to_string())
    }

    fn remove(&mut self, pid: u32) {
        let _ = self.procs.remove(&pid);
    }
}
