//! [`Interpreter`]: one process's CPython, as [`crate::inspect`] found it:
//! the value the kernel needs, and the reads user space does with it.

use std::sync::OnceLock;

use profiler_common::python::{EVAL_RANGES, Process};

use crate::code::{self, CodeInfo};
use crate::error::ReadError;
use crate::layout::Layout;
use crate::memory::ProcessMemory;
use crate::stack;
use crate::version::Version;

/// A process's CPython interpreter.
#[derive(Clone, Debug)]
pub struct Interpreter {
    pub(crate) pid: u32,
    pub(crate) version: Version,
    pub(crate) path: String,
    pub(crate) runtime: u64,
    pub(crate) eval: [[u64; 2]; EVAL_RANGES],
    pub(crate) layout: Layout,
    pub(crate) free_threaded: bool,
    /// The code type's address, once a code object was seen to have it.
    pub(crate) code_type: OnceLock<u64>,
}

impl Interpreter {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The file with the interpreter's symbols (`python3.11`,
    /// `libpython3.12.so.1.0`...), as the process's maps name it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The runtime address of `_PyRuntime`.
    pub fn runtime_address(&self) -> u64 {
        self.runtime
    }

    /// Where this version's fields are.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A free-threaded (`--disable-gil`) 3.13 build, as its debug offsets
    /// say (never tested here: none was installed).
    pub fn free_threaded(&self) -> bool {
        self.free_threaded
    }

    /// The kernel's `PYTHON_PROCS` value for this process.
    pub fn process(&self) -> Process {
        Process {
            interpreters_head: self.runtime + u64::from(self.layout.runtime_interpreters_head),
            eval: self.eval,
            offsets: self.layout.frames,
        }
    }

    /// Reads the code object at `code` (a Python frame's code address) from
    /// `memory`, this interpreter's process. A stale or garbage address
    /// (another object's, or one where nothing is mapped) gives
    /// [`ReadError::NotCode`].
    pub fn read_code(&self, memory: &ProcessMemory, code: u64) -> Result<CodeInfo, ReadError> {
        code::read_code(memory, &self.layout, &self.code_type, code)
    }

    /// The Python frames of native thread `tid`, `(code address,
    /// instruction index)` innermost first, read as the kernel reads them
    /// (a reference for the kernel side, and a check of the offsets).
    /// The process runs meanwhile: a read can race with it and fail, or
    /// see a stack in the middle of a change.
    pub fn python_stack(
        &self,
        memory: &ProcessMemory,
        tid: u32,
    ) -> Result<Vec<(u64, u32)>, ReadError> {
        let process = self.process();
        stack::python_stack(memory, process.interpreters_head, &process.offsets, tid)
    }
}
