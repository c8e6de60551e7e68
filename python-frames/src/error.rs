//! The crate's errors: [`InspectError`] (finding a process's interpreter)
//! and [`ReadError`] (reading its memory). "The process is gone" has its
//! own variant in both, apart from a read that failed in a live process.

use std::path::PathBuf;

use crate::version::Version;

/// Why a process's interpreter could not be described.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The process exited (or exec'd) while it was being inspected.
    #[error("process {pid} is gone")]
    ProcessGone { pid: u32 },
    /// A CPython this crate has no structure layout for (the caller counts these).
    #[error(
        "process {pid} runs Python {version}, which is not supported (supported: {})",
        crate::version::SUPPORTED
    )]
    UnsupportedVersion { pid: u32, version: Version },
    /// A file with the interpreter's symbols but neither `Py_Version` nor a
    /// version in its name.
    #[error("process {pid}: cannot tell the Python version of {}", path.display())]
    UnknownVersion { pid: u32, path: PathBuf },
    #[error("process {pid}: cannot open {}: {source}", path.display())]
    Open {
        pid: u32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("process {pid}: cannot read its mappings: {source}")]
    Maps {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    /// The file has the symbols but its segments do not match its mappings.
    #[error("process {pid}: no load address for {}: {reason}", path.display())]
    LoadAddress {
        pid: u32,
        path: PathBuf,
        reason: &'static str,
    },
    /// 3.13+: the process's `_PyRuntime.debug_offsets` could not be read.
    #[error("process {pid}: cannot read _Py_DebugOffsets: {source}")]
    DebugOffsetsRead {
        pid: u32,
        #[source]
        source: ReadError,
    },
    /// 3.13+: `_PyRuntime.debug_offsets` is not what this crate expects.
    #[error("process {pid}: unexpected _Py_DebugOffsets: {reason}")]
    DebugOffsets { pid: u32, reason: String },
}

/// Why reading an interpreter's memory failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The process exited (or exec'd): nothing more can be read from it.
    #[error("process {pid} is gone")]
    ProcessGone { pid: u32 },
    /// `/proc/PID/mem` could not be opened (other than the process being gone).
    #[error("cannot open the memory of process {pid}: {source}")]
    Open {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    /// The process lives but these bytes are not mapped (or not readable).
    #[error("process {pid}: cannot read {len} bytes at {address:#x}")]
    Fault { pid: u32, address: u64, len: usize },
    /// Any other I/O error on the process's memory.
    #[error("process {pid}: reading {len} bytes at {address:#x} failed: {source}")]
    Io {
        pid: u32,
        address: u64,
        len: usize,
        #[source]
        source: std::io::Error,
    },
    /// The address is not a code object (its type is not named "code"):
    /// a stale or garbage address.
    #[error("{address:#x} is not a code object")]
    NotCode { address: u64 },
    /// An object that does not hold together (a string of an unknown kind,
    /// a negative length...).
    #[error("bad {what} at {address:#x}: {reason}")]
    BadObject {
        what: &'static str,
        address: u64,
        reason: &'static str,
    },
    /// No thread state of this native thread in the interpreter's list.
    #[error("process {pid}: no Python thread state for thread {tid}")]
    NoThreadState { pid: u32, tid: u32 },
    /// A list longer than any real one: a cycle, or memory changing under the walk.
    #[error("more than {limit} {what}: a cycle or a racing update")]
    TooLong { what: &'static str, limit: usize },
}
