//! [`Interpreter`]: one process's CPython, as [`crate::inspect`] found it:
//! the value the kernel needs, and the reads user space does with it.

use std::sync::OnceLock;

use profiler_common::python::{EVAL_RANGES, Offsets, Process};

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
            // `interpreters.main` follows `interpreters.head` (a pointer) in
            // 3.11-3.13: the main interpreter, whose threads are the ones
            // the kernel looks for; `head` is the newest (a subinterpreter's).
            main_interpreter: self.runtime + u64::from(self.layout.runtime_interpreters_head) + 8,
            eval: self.eval,
            offsets: Offsets {
                code_filename: self.layout.code_filename,
                code_qualname: self.layout.code_qualname,
                ..self.layout.frames
            },
        }
    }

    /// Reads the code object at `code` (a Python frame's code address) from
    /// `memory`, this interpreter's process. A stale or garbage address
    /// (another object's, or one where nothing is mapped) gives
    /// [`ReadError::NotCode`].
    pub fn read_code(&self, memory: &ProcessMemory, code: u64) -> Result<CodeInfo, ReadError> {
        code::read_code(memory, &self.layout, &self.code_type, code)
    }

    /// The id the kernel gives the code object at `code` in stacks
    /// ([`profiler_common::python::code_id`]), from its names' addresses as
    /// they are now: a name read for an id is the id's only if this
    /// gives the id back after the read.
    pub fn code_id(&self, memory: &ProcessMemory, code: u64) -> Result<u64, ReadError> {
        let filename = memory.read_u64(code + u64::from(self.layout.code_filename))?;
        let qualname = memory.read_u64(code + u64::from(self.layout.code_qualname))?;
        let hash = memory.read_u64(qualname + profiler_common::python::STR_HASH_OFFSET)?;
        Ok(profiler_common::python::code_id(
            code, filename, qualname, hash,
        ))
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
        stack::python_stack(memory, process.main_interpreter, &process.offsets, tid)
    }
}
