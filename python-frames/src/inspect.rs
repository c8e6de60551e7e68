//! Finding a process's CPython: the file among its mappings that defines
//! `_PyRuntime` and `_PyEval_EvalFrameDefault`, where it is loaded, which
//! version it is, and that version's layout.

use std::path::PathBuf;
use std::sync::OnceLock;

use profiler_common::python::EVAL_RANGES;

use crate::debug_offsets;
use crate::elf::{PythonFile, Symbol};
use crate::error::{InspectError, ReadError};
use crate::interpreter::Interpreter;
use crate::layout;
use crate::memory::ProcessMemory;
use crate::region::Region;
use crate::version::Version;

/// The CPython interpreter of process `pid`, whose file-backed mappings
/// are `mappings` (as `/proc/PID/maps` lists them; see
/// [`Region::read_all`]), or `None` when no mapped file is one.
///
/// Only files whose name contains "python" (not extension modules,
/// `*.cpython-*.so`) are opened, each once; the first defining both
/// `_PyRuntime` and `_PyEval_EvalFrameDefault` is the interpreter (a file
/// that cannot be opened is an error only if no other one is). The
/// version is the file's `Py_Version` (3.11+), else the one in its name.
/// 3.13 is described by the process's `_Py_DebugOffsets` (read from its
/// memory); 3.11 and 3.12 by tables in [`layout`].
pub fn inspect(pid: u32, mappings: &[Region]) -> Result<Option<Interpreter>, InspectError> {
    let mut opened: Vec<&str> = Vec::new();
    let mut unopened = None;
    for region in mappings {
        if !is_candidate(region.file_name()) || opened.contains(&region.path.as_str()) {
            continue;
        }
        opened.push(&region.path);
        let file = match region.open(pid) {
            Ok(file) => file,
            Err(gone @ InspectError::ProcessGone { .. }) => return Err(gone),
            // Another file may be the interpreter.
            Err(error) => {
                unopened.get_or_insert(error);
                continue;
            }
        };
        let Some(python) = PythonFile::read(file) else {
            continue;
        };
        return describe(pid, mappings, region, &python).map(Some);
    }
    match unopened {
        Some(error) => Err(error),
        None => Ok(None),
    }
}

/// Whether a file of this name may be an interpreter: "python" in it, and
/// not an extension module (`_json.cpython-311-x86_64-linux-gnu.so`,
/// `foo.abi3.so`).
fn is_candidate(file_name: &str) -> bool {
    file_name.contains("python")
        && !file_name.contains(".cpython-")
        && !file_name.contains(".abi3.")
}

/// The interpreter in `python`, the file mapped at `region`.
fn describe(
    pid: u32,
    mappings: &[Region],
    region: &Region,
    python: &PythonFile,
) -> Result<Interpreter, InspectError> {
    let path = PathBuf::from(&region.path);
    let version = match python.py_version {
        Some(hex) => Version::from_hex(hex),
        None => Version::from_file_name(region.file_name()).ok_or_else(|| {
            InspectError::UnknownVersion {
                pid,
                path: path.clone(),
            }
        })?,
    };
    if !version.is_supported() {
        return Err(InspectError::UnsupportedVersion { pid, version });
    }
    let regions: Vec<&Region> = mappings.iter().filter(|r| r.path == region.path).collect();
    let bias = python
        .load_bias(&regions)
        .ok_or(InspectError::LoadAddress {
            pid,
            path,
            reason: "no mapping matches a load segment",
        })?;
    let runtime = python.runtime.address.wrapping_add(bias);
    let (layout, free_threaded) = match layout::table(version) {
        Some(layout) => (layout, false),
        None => {
            let offsets = read_debug_offsets(pid, runtime, python.runtime.size)?;
            if let Some(hex) = version.hex
                && u64::from(hex) != offsets.version
            {
                return Err(InspectError::DebugOffsets {
                    pid,
                    reason: format!("version {:#x}, but Py_Version is {hex:#x}", offsets.version),
                });
            }
            (offsets.layout, offsets.free_threaded)
        }
    };
    let range = |symbol: Symbol| {
        let start = symbol.address.wrapping_add(bias);
        [start, start + symbol.size]
    };
    let mut eval = [[0; 2]; EVAL_RANGES];
    eval[0] = range(python.eval);
    if let Some(cold) = python.eval_cold {
        eval[1] = range(cold);
    }
    Ok(Interpreter {
        pid,
        version,
        path: region.path.clone(),
        runtime,
        eval,
        layout,
        free_threaded,
        code_type: OnceLock::new(),
    })
}

/// 3.13: `_PyRuntime.debug_offsets`, read from the process.
fn read_debug_offsets(
    pid: u32,
    runtime: u64,
    runtime_size: u64,
) -> Result<debug_offsets::DebugOffsets, InspectError> {
    let read_error = |source| match source {
        ReadError::ProcessGone { .. } => InspectError::ProcessGone { pid },
        source => InspectError::DebugOffsetsRead { pid, source },
    };
    let memory = ProcessMemory::open(pid).map_err(read_error)?;
    let bytes = memory
        .read_array::<{ debug_offsets::position::TOTAL }>(runtime)
        .map_err(read_error)?;
    debug_offsets::parse(&bytes, runtime_size)
        .map_err(|reason| InspectError::DebugOffsets { pid, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates() {
        assert!(is_candidate("python3.11"));
        assert!(is_candidate("libpython3.12.so.1.0"));
        assert!(!is_candidate("_json.cpython-311-x86_64-linux-gnu.so"));
        assert!(!is_candidate("_cffi_backend.abi3.so"));
        assert!(!is_candidate("libc.so.6"));
    }
}
