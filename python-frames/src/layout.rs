//! Where the fields read are in one CPython version's structures: the
//! offsets the kernel walks frames with, and those user space reads code
//! objects and strings with. 3.11 and 3.12 have tables written here by hand
//! (checked against each version's headers by `tests/offsets.rs`); 3.13+
//! take them from the process's `_Py_DebugOffsets` (`debug_offsets.rs`).

use profiler_common::python::{NO_OFFSET, Offsets};

use crate::version::Version;

/// Byte offsets in one CPython version's structures (x86-64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `_PyRuntimeState::interpreters.head`.
    pub runtime_interpreters_head: u16,
    /// What the kernel reads (thread states and frames).
    pub frames: Offsets,
    /// `PyCodeObject::co_filename`, `co_qualname` (str), `co_linetable`
    /// (bytes), `co_firstlineno` (int).
    pub code_filename: u16,
    pub code_qualname: u16,
    pub code_linetable: u16,
    pub code_firstlineno: u16,
    /// `PyObject::ob_type`, `PyTypeObject::tp_name`.
    pub object_type: u16,
    pub type_name: u16,
    /// `PyBytesObject::ob_base.ob_size`, `ob_sval`.
    pub bytes_size: u16,
    pub bytes_data: u16,
    /// `PyASCIIObject::length`, `state`; `sizeof(PyASCIIObject)` (where a
    /// compact ASCII string's characters start) and
    /// `sizeof(PyCompactUnicodeObject)` (where other compact strings' start).
    pub unicode_length: u16,
    pub unicode_state: u16,
    pub unicode_ascii_size: u16,
    pub unicode_compact_size: u16,
}

/// Bit positions in `PyASCIIObject::state` (the same in 3.11-3.13):
/// `kind` (3 bits: 1, 2 or 4 bytes a character), `compact`, `ascii`.
pub const STATE_KIND_SHIFT: u32 = 2;
pub const STATE_COMPACT_SHIFT: u32 = 5;
pub const STATE_ASCII_SHIFT: u32 = 6;

/// 3.11 (`PY_VERSION_HEX` 0x030bxxxx).
pub const PYTHON_3_11: Layout = Layout {
    runtime_interpreters_head: 40,
    frames: Offsets {
        interp_threads_head: 16,
        tstate_next: 8,
        tstate_native_thread_id: 160,
        tstate_frame: 56, // cframe
        cframe_current_frame: 8,
        frame_code: 32, // f_code
        frame_previous: 48,
        frame_instr: 56, // prev_instr
        frame_owner: 69,
        frame_is_entry: 68,
        code_adaptive: 184,
        version: 0x030b,
        // Filled from `code_filename` and `code_qualname` below
        // (`Interpreter::process`).
        code_filename: 0,
        code_qualname: 0,
        reserved: [0; 2],
    },
    code_filename: 112,
    code_qualname: 128,
    code_linetable: 136,
    code_firstlineno: 72,
    object_type: 8,
    type_name: 24,
    bytes_size: 16,
    bytes_data: 32,
    unicode_length: 16,
    unicode_state: 32,
    unicode_ascii_size: 48, // with wstr
    unicode_compact_size: 72,
};

/// 3.12 (`PY_VERSION_HEX` 0x030cxxxx).
pub const PYTHON_3_12: Layout = Layout {
    runtime_interpreters_head: 40,
    frames: Offsets {
        interp_threads_head: 72,
        tstate_next: 8,
        tstate_native_thread_id: 144,
        tstate_frame: 56, // cframe
        cframe_current_frame: 0,
        frame_code: 0, // f_code
        frame_previous: 8,
        frame_instr: 56, // prev_instr
        frame_owner: 70,
        frame_is_entry: NO_OFFSET,
        code_adaptive: 192,
        version: 0x030c,
        // Filled from `code_filename` and `code_qualname` below
        // (`Interpreter::process`).
        code_filename: 0,
        code_qualname: 0,
        reserved: [0; 2],
    },
    code_filename: 112,
    code_qualname: 128,
    code_linetable: 136,
    code_firstlineno: 68,
    object_type: 8,
    type_name: 24,
    bytes_size: 16,
    bytes_data: 32,
    unicode_length: 16,
    unicode_state: 32,
    unicode_ascii_size: 40,
    unicode_compact_size: 56,
};

/// The hand-written layout of `version` (3.11 and 3.12; later versions
/// describe themselves in `_Py_DebugOffsets`).
pub fn table(version: Version) -> Option<Layout> {
    match (version.major, version.minor) {
        (3, 11) => Some(PYTHON_3_11),
        (3, 12) => Some(PYTHON_3_12),
        _ => None,
    }
}
