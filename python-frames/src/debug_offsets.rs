//! CPython 3.13's `_Py_DebugOffsets`: the first member of `_PyRuntime`,
//! where the interpreter records the offsets of its own structures for
//! out-of-process tools (`Include/internal/pycore_runtime.h`). Its layout is
//! stable within a minor version only, so this reads 3.13's and nothing later.

use profiler_common::python::{NO_OFFSET, Offsets};

use crate::layout::Layout;

/// `_Py_DebugOffsets::cookie`.
pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// Byte positions of the members read in 3.13's `_Py_DebugOffsets` (each
/// a `uint64_t` but the cookie); `tests/offsets.rs` checks them against
/// `offsetof` with the 3.13 headers, through [`MEMBERS`].
pub mod position {
    pub const COOKIE: usize = 0;
    pub const VERSION: usize = 8;
    pub const FREE_THREADED: usize = 16;
    pub const RUNTIME_SIZE: usize = 24;
    pub const RUNTIME_INTERPRETERS_HEAD: usize = 40;
    pub const INTERP_SIZE: usize = 48;
    pub const INTERP_THREADS_HEAD: usize = 72;
    pub const TSTATE_SIZE: usize = 152;
    pub const TSTATE_NEXT: usize = 168;
    pub const TSTATE_CURRENT_FRAME: usize = 184;
    pub const TSTATE_NATIVE_THREAD_ID: usize = 200;
    pub const FRAME_SIZE: usize = 224;
    pub const FRAME_PREVIOUS: usize = 232;
    pub const FRAME_EXECUTABLE: usize = 240;
    pub const FRAME_INSTR_PTR: usize = 248;
    pub const FRAME_OWNER: usize = 264;
    pub const CODE_SIZE: usize = 272;
    pub const CODE_FILENAME: usize = 280;
    pub const CODE_QUALNAME: usize = 296;
    pub const CODE_LINETABLE: usize = 304;
    pub const CODE_FIRSTLINENO: usize = 312;
    pub const CODE_ADAPTIVE: usize = 344;
    pub const OBJECT_SIZE: usize = 352;
    pub const OBJECT_TYPE: usize = 360;
    pub const TYPE_SIZE: usize = 368;
    pub const TYPE_NAME: usize = 376;
    pub const BYTES_SIZE: usize = 512;
    pub const BYTES_OB_SIZE: usize = 520;
    pub const BYTES_OB_SVAL: usize = 528;
    pub const UNICODE_SIZE: usize = 536;
    pub const UNICODE_STATE: usize = 544;
    pub const UNICODE_LENGTH: usize = 552;
    pub const UNICODE_ASCII_SIZE: usize = 560;
    /// `sizeof(_Py_DebugOffsets)`.
    pub const TOTAL: usize = 584;
}

/// Each [`position`] with the `_Py_DebugOffsets` member it stands for.
pub const MEMBERS: &[(&str, usize)] = {
    use position::*;
    &[
        ("cookie", COOKIE),
        ("version", VERSION),
        ("free_threaded", FREE_THREADED),
        ("runtime_state.size", RUNTIME_SIZE),
        ("runtime_state.interpreters_head", RUNTIME_INTERPRETERS_HEAD),
        ("interpreter_state.size", INTERP_SIZE),
        ("interpreter_state.threads_head", INTERP_THREADS_HEAD),
        ("thread_state.size", TSTATE_SIZE),
        ("thread_state.next", TSTATE_NEXT),
        ("thread_state.current_frame", TSTATE_CURRENT_FRAME),
        ("thread_state.native_thread_id", TSTATE_NATIVE_THREAD_ID),
        ("interpreter_frame.size", FRAME_SIZE),
        ("interpreter_frame.previous", FRAME_PREVIOUS),
        ("interpreter_frame.executable", FRAME_EXECUTABLE),
        ("interpreter_frame.instr_ptr", FRAME_INSTR_PTR),
        ("interpreter_frame.owner", FRAME_OWNER),
        ("code_object.size", CODE_SIZE),
        ("code_object.filename", CODE_FILENAME),
        ("code_object.qualname", CODE_QUALNAME),
        ("code_object.linetable", CODE_LINETABLE),
        ("code_object.firstlineno", CODE_FIRSTLINENO),
        ("code_object.co_code_adaptive", CODE_ADAPTIVE),
        ("pyobject.size", OBJECT_SIZE),
        ("pyobject.ob_type", OBJECT_TYPE),
        ("type_object.size", TYPE_SIZE),
        ("type_object.tp_name", TYPE_NAME),
        ("bytes_object.size", BYTES_SIZE),
        ("bytes_object.ob_size", BYTES_OB_SIZE),
        ("bytes_object.ob_sval", BYTES_OB_SVAL),
        ("unicode_object.size", UNICODE_SIZE),
        ("unicode_object.state", UNICODE_STATE),
        ("unicode_object.length", UNICODE_LENGTH),
        ("unicode_object.asciiobject_size", UNICODE_ASCII_SIZE),
    ]
};

/// The decoded debug offsets: the layout, and what they say of the build.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DebugOffsets {
    /// `PY_VERSION_HEX`.
    pub version: u64,
    /// A free-threaded (`--disable-gil`) build.
    pub free_threaded: bool,
    pub layout: Layout,
}

/// Decodes 3.13's `_Py_DebugOffsets` from `bytes` (read at `_PyRuntime`),
/// checking that every offset used lies within its structure's size and
/// that `_PyRuntimeState`'s size is `runtime_size` (the `_PyRuntime`
/// symbol's; 0 when unknown). The error says what did not fit.
pub(crate) fn parse(
    bytes: &[u8; position::TOTAL],
    runtime_size: u64,
) -> Result<DebugOffsets, String> {
    use position::*;
    if &bytes[..8] != self::COOKIE {
        return Err(format!(
            "cookie {:?}, not {:?}",
            String::from_utf8_lossy(&bytes[..8]),
            String::from_utf8_lossy(self::COOKIE)
        ));
    }
    let at = |position: usize| {
        u64::from_ne_bytes(bytes[position..position + 8].try_into().expect("8 bytes"))
    };
    let version = at(VERSION);
    if version >> 16 != 0x030d {
        return Err(format!("version {version:#x}: only 3.13's layout is known"));
    }
    if runtime_size != 0 && at(RUNTIME_SIZE) != runtime_size {
        return Err(format!(
            "_PyRuntimeState is {} bytes, the _PyRuntime symbol {runtime_size}",
            at(RUNTIME_SIZE)
        ));
    }
    // An offset read at `member`, with a field of `width` bytes there,
    // within the structure whose size is at `size`.
    let field = |member: usize, width: u64, size: usize| -> Result<u16, String> {
        let offset = at(member);
        let (name, _) = MEMBERS
            .iter()
            .find(|(_, p)| *p == member)
            .expect("every position read is a member");
        if offset.checked_add(width).is_none_or(|end| end > at(size)) {
            return Err(format!(
                "{name} is {offset}, beyond the structure's {} bytes",
                at(size)
            ));
        }
        u16::try_from(offset).map_err(|_| format!("{name} is {offset}, too large"))
    };
    let ascii_size = field(UNICODE_ASCII_SIZE, 0, UNICODE_SIZE)?;
    let unicode_state = field(UNICODE_STATE, 4, UNICODE_ASCII_SIZE)?;
    let unicode_length = field(UNICODE_LENGTH, 8, UNICODE_ASCII_SIZE)?;
    let layout = Layout {
        runtime_interpreters_head: field(RUNTIME_INTERPRETERS_HEAD, 8, RUNTIME_SIZE)?,
        frames: Offsets {
            interp_threads_head: field(INTERP_THREADS_HEAD, 8, INTERP_SIZE)?,
            tstate_next: field(TSTATE_NEXT, 8, TSTATE_SIZE)?,
            tstate_native_thread_id: field(TSTATE_NATIVE_THREAD_ID, 8, TSTATE_SIZE)?,
            tstate_frame: field(TSTATE_CURRENT_FRAME, 8, TSTATE_SIZE)?,
            cframe_current_frame: NO_OFFSET,
            frame_code: field(FRAME_EXECUTABLE, 8, FRAME_SIZE)?,
            frame_previous: field(FRAME_PREVIOUS, 8, FRAME_SIZE)?,
            frame_instr: field(FRAME_INSTR_PTR, 8, FRAME_SIZE)?,
            frame_owner: field(FRAME_OWNER, 1, FRAME_SIZE)?,
            frame_is_entry: NO_OFFSET,
            code_adaptive: field(CODE_ADAPTIVE, 0, CODE_SIZE)?,
            version: (version >> 16) as u16,
            ..Offsets::default()
        },
        code_filename: field(CODE_FILENAME, 8, CODE_SIZE)?,
        code_qualname: field(CODE_QUALNAME, 8, CODE_SIZE)?,
        code_linetable: field(CODE_LINETABLE, 8, CODE_SIZE)?,
        code_firstlineno: field(CODE_FIRSTLINENO, 4, CODE_SIZE)?,
        object_type: field(OBJECT_TYPE, 8, OBJECT_SIZE)?,
        type_name: field(TYPE_NAME, 8, TYPE_SIZE)?,
        // ob_size must come before the characters (the header read ends there).
        bytes_size: field(BYTES_OB_SIZE, 8, BYTES_OB_SVAL)?,
        bytes_data: field(BYTES_OB_SVAL, 0, BYTES_SIZE)?,
        unicode_length,
        unicode_state,
        unicode_ascii_size: ascii_size,
        // PyCompactUnicodeObject: PyASCIIObject, then utf8_length and utf8
        // (not in the debug offsets; checked against the headers).
        unicode_compact_size: ascii_size + 16,
    };
    Ok(DebugOffsets {
        version,
        free_threaded: at(FREE_THREADED) != 0,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(bytes: &mut [u8; position::TOTAL], position: usize, value: u64) {
        bytes[position..position + 8].copy_from_slice(&value.to_ne_bytes());
    }

    /// The values of pyenv's 3.13.0 (from its headers).
    fn sample() -> [u8; position::TOTAL] {
        use position::*;
        let mut b = [0; TOTAL];
        b[..8].copy_from_slice(super::COOKIE);
        for (p, v) in [
            (VERSION, 0x030d00f0),
            (RUNTIME_SIZE, 283320),
            (RUNTIME_INTERPRETERS_HEAD, 632),
            (INTERP_SIZE, 100_000),
            (INTERP_THREADS_HEAD, 7344),
            (TSTATE_SIZE, 400),
            (TSTATE_NEXT, 8),
            (TSTATE_CURRENT_FRAME, 72),
            (TSTATE_NATIVE_THREAD_ID, 160),
            (FRAME_SIZE, 80),
            (FRAME_PREVIOUS, 8),
            (FRAME_EXECUTABLE, 0),
            (FRAME_INSTR_PTR, 56),
            (FRAME_OWNER, 70),
            (CODE_SIZE, 208),
            (CODE_FILENAME, 112),
            (CODE_QUALNAME, 128),
            (CODE_LINETABLE, 136),
            (CODE_FIRSTLINENO, 68),
            (CODE_ADAPTIVE, 200),
            (OBJECT_SIZE, 16),
            (OBJECT_TYPE, 8),
            (TYPE_SIZE, 400),
            (TYPE_NAME, 24),
            (BYTES_SIZE, 40),
            (BYTES_OB_SIZE, 16),
            (BYTES_OB_SVAL, 32),
            (UNICODE_SIZE, 64),
            (UNICODE_STATE, 32),
            (UNICODE_LENGTH, 16),
            (UNICODE_ASCII_SIZE, 40),
        ] {
            put(&mut b, p, v);
        }
        b
    }

    #[test]
    fn decodes_3_13() {
        let offsets = parse(&sample(), 283320).unwrap();
        assert!(!offsets.free_threaded);
        assert_eq!(offsets.version, 0x030d00f0);
        let layout = offsets.layout;
        assert_eq!(layout.runtime_interpreters_head, 632);
        assert_eq!(layout.frames.interp_threads_head, 7344);
        assert_eq!(layout.frames.tstate_frame, 72);
        assert_eq!(layout.frames.cframe_current_frame, NO_OFFSET);
        assert_eq!(layout.frames.frame_is_entry, NO_OFFSET);
        assert_eq!(layout.frames.version, 0x030d);
        assert_eq!(layout.unicode_compact_size, 56);
    }

    #[test]
    fn rejects_what_does_not_fit() {
        let mut bad = sample();
        bad[0] = b'y';
        assert!(parse(&bad, 0).unwrap_err().contains("cookie"));
        assert!(parse(&sample(), 1234).unwrap_err().contains("_PyRuntime"));
        let mut bad = sample();
        put(&mut bad, position::VERSION, 0x030e00f0);
        assert!(parse(&bad, 0).unwrap_err().contains("3.13"));
        let mut bad = sample();
        put(&mut bad, position::FRAME_OWNER, 80);
        let error = parse(&bad, 0).unwrap_err();
        assert!(error.contains("interpreter_frame.owner"), "{error}");
    }
}
