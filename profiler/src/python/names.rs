//! A process's code objects as read from its memory: the function, file
//! and line table that name its Python frames, kept after it exits.

use foldhash::HashMap;
use python_frames::{CodeInfo, Interpreter, ProcessMemory};

/// Why a code object has no name. "Gone" is apart from "failed": a
/// process that exited before its code was read is expected of short
/// scripts sampled late, a read that fails in a live process is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unnamed {
    Gone,
    Failed,
}

/// A code object's names.
pub type CodeName = CodeInfo;

/// The code objects of one process, by address.
#[derive(Default)]
pub struct Codes {
    by_address: HashMap<u64, Result<CodeName, Unnamed>>,
}

impl Codes {
    pub fn contains(&self, code: u64) -> bool {
        self.by_address.contains_key(&code)
    }

    pub fn insert(&mut self, code: u64, read: Result<CodeName, Unnamed>) {
        self.by_address.insert(code, read);
    }

    /// What reading `code` gave, if it was read.
    pub fn read(&self, code: u64) -> Option<&Result<CodeName, Unnamed>> {
        self.by_address.get(&code)
    }
}

/// Reads code object `code`, announced as id `id`: its names are the id's
/// only if the object still gives that id once they are read (it was not
/// freed, and another allocated there, meanwhile).
pub fn read(
    interpreter: &Interpreter,
    memory: &ProcessMemory,
    code: u64,
    id: u64,
) -> Result<CodeName, Unnamed> {
    let gone = |e: python_frames::ReadError| match e {
        python_frames::ReadError::ProcessGone { .. } => Unnamed::Gone,
        _ => Unnamed::Failed,
    };
    let info = interpreter.read_code(memory, code).map_err(gone)?;
    match interpreter.code_id(memory, code).map_err(gone)? {
        now if now == id => Ok(info),
        // Freed first: the code object the id stands for is gone.
        _ => Err(Unnamed::Gone),
    }
}
