//! Reading Python `str` and `bytes` objects out of another process.
//!
//! Strings: only compact ones (what code objects' names are): ASCII ones
//! have their characters right after the `PyASCIIObject`, others (Latin-1,
//! UCS-2 or UCS-4 by `state.kind`) after the `PyCompactUnicodeObject`.
//! Lengths are capped by the caller; a character that is not one (a lone
//! surrogate, a byte above 0x7f in an "ASCII" string) becomes U+FFFD.

use crate::error::ReadError;
use crate::layout::{Layout, STATE_ASCII_SHIFT, STATE_COMPACT_SHIFT, STATE_KIND_SHIFT};
use crate::memory::ProcessMemory;

/// The `str` at `address`, cut after `max_chars` characters.
pub(crate) fn read_str(
    memory: &ProcessMemory,
    layout: &Layout,
    address: u64,
    max_chars: usize,
) -> Result<String, ReadError> {
    let bad = |reason| ReadError::BadObject {
        what: "str",
        address,
        reason,
    };
    let header = memory.read_vec(address, usize::from(layout.unicode_ascii_size))?;
    let length = i64::from_ne_bytes(field(&header, layout.unicode_length));
    let state = u32::from_ne_bytes(field(&header, layout.unicode_state));
    let length = usize::try_from(length).map_err(|_| bad("negative length"))?;
    if (state >> STATE_COMPACT_SHIFT) & 1 == 0 {
        return Err(bad("not a compact string"));
    }
    let ascii = (state >> STATE_ASCII_SHIFT) & 1 != 0;
    let kind = (state >> STATE_KIND_SHIFT) & 7;
    let (start, width) = match (ascii, kind) {
        (true, 1) => (layout.unicode_ascii_size, 1),
        (false, 1 | 2 | 4) => (layout.unicode_compact_size, kind as usize),
        _ => return Err(bad("unknown kind")),
    };
    let chars = length.min(max_chars);
    let data = memory.read_vec(address + u64::from(start), chars * width)?;
    Ok(match width {
        1 if ascii => data
            .iter()
            .map(|&b| {
                if b.is_ascii() {
                    char::from(b)
                } else {
                    char::REPLACEMENT_CHARACTER
                }
            })
            .collect(),
        1 => data.iter().map(|&b| char::from(b)).collect(),
        2 => char::decode_utf16(
            data.chunks_exact(2)
                .map(|c| u16::from_ne_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        _ => data
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
    })
}

/// The contents of the `bytes` object at `address`, cut after `max_len` bytes.
pub(crate) fn read_bytes(
    memory: &ProcessMemory,
    layout: &Layout,
    address: u64,
    max_len: usize,
) -> Result<Vec<u8>, ReadError> {
    let header = memory.read_vec(address, usize::from(layout.bytes_data))?;
    let size = i64::from_ne_bytes(field(&header, layout.bytes_size));
    let size = usize::try_from(size).map_err(|_| ReadError::BadObject {
        what: "bytes",
        address,
        reason: "negative size",
    })?;
    memory.read_vec(address + u64::from(layout.bytes_data), size.min(max_len))
}

/// `N` bytes at `offset` in `bytes` (a header read whole; layouts keep the
/// fields inside it).
pub(crate) fn field<const N: usize>(bytes: &[u8], offset: u16) -> [u8; N] {
    let offset = usize::from(offset);
    bytes[offset..offset + N]
        .try_into()
        .expect("a field inside the header")
}
