//! Reading a code object (`PyCodeObject`) out of another process: its
//! qualified name, file name, first line and location table, enough to
//! name a Python frame and place its instruction on a line.

use std::sync::OnceLock;

use crate::error::ReadError;
use crate::layout::Layout;
use crate::linetable;
use crate::memory::ProcessMemory;
use crate::objects::{field, read_bytes, read_str};

/// Longest qualified name read, in characters.
pub const MAX_NAME_CHARS: usize = 1024;
/// Longest file name read, in characters.
pub const MAX_FILENAME_CHARS: usize = 4096;
/// Longest location table read, in bytes (instructions past it have no line).
pub const MAX_LINE_TABLE: usize = 64 * 1024;

/// What names a code object's frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// `co_qualname` (`Class.method`, `outer.<locals>.inner`, `<module>`).
    pub qualname: String,
    /// `co_filename`.
    pub filename: String,
    /// `co_firstlineno`.
    pub first_line: u32,
    /// `co_linetable`, the 3.11+ location table.
    pub line_table: Vec<u8>,
}

impl CodeInfo {
    /// The line of the instruction at code unit `index` (a frame's
    /// instruction index), if the location table gives it one.
    pub fn line(&self, index: u32) -> Option<u32> {
        linetable::line_at(&self.line_table, self.first_line, index)
    }
}

/// Reads the code object at `address`. `code_type` remembers the address
/// of the code type once a code object was found to have it. An address
/// with nothing mapped, or an object of another type, is
/// [`ReadError::NotCode`]; a fault reading a code object's names (freed
/// while being read) stays a [`ReadError::Fault`].
pub(crate) fn read_code(
    memory: &ProcessMemory,
    layout: &Layout,
    code_type: &OnceLock<u64>,
    address: u64,
) -> Result<CodeInfo, ReadError> {
    let pointers = [
        layout.object_type,
        layout.code_qualname,
        layout.code_filename,
        layout.code_linetable,
    ];
    let end = pointers.iter().map(|&p| p + 8).max().expect("fields");
    let end = end.max(layout.code_firstlineno + 4);
    let head = match memory.read_vec(address, usize::from(end)) {
        Ok(head) => head,
        // Nothing there (any more): no object at all.
        Err(ReadError::Fault { .. }) => return Err(ReadError::NotCode { address }),
        Err(e) => return Err(e),
    };
    let pointer = |offset| u64::from_ne_bytes(field(&head, offset));

    let ty = pointer(layout.object_type);
    match code_type.get() {
        Some(&known) if known == ty => {}
        Some(_) => return Err(ReadError::NotCode { address }),
        None => {
            if !is_code_type(memory, layout, ty)? {
                return Err(ReadError::NotCode { address });
            }
            let _ = code_type.set(ty);
        }
    }
    let first_line = i32::from_ne_bytes(field(&head, layout.code_firstlineno));
    Ok(CodeInfo {
        qualname: read_str(
            memory,
            layout,
            pointer(layout.code_qualname),
            MAX_NAME_CHARS,
        )?,
        filename: read_str(
            memory,
            layout,
            pointer(layout.code_filename),
            MAX_FILENAME_CHARS,
        )?,
        first_line: u32::try_from(first_line).unwrap_or(0),
        line_table: read_bytes(
            memory,
            layout,
            pointer(layout.code_linetable),
            MAX_LINE_TABLE,
        )?,
    })
}

/// Whether the type object at `ty` is named "code". An address that cannot
/// be read is no type at all: not a code object.
fn is_code_type(memory: &ProcessMemory, layout: &Layout, ty: u64) -> Result<bool, ReadError> {
    let name = match memory.read_u64(ty.wrapping_add(u64::from(layout.type_name))) {
        Ok(name) => name,
        Err(ReadError::Fault { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    match memory.read_array::<5>(name) {
        Ok(bytes) => Ok(&bytes == b"code\0"),
        Err(ReadError::Fault { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
