//! A user-space reference walk of a thread's Python frames, reading what
//! the kernel reads with the same [`Offsets`]: the thread state of a native
//! thread in the interpreter's list, then its chain of
//! `_PyInterpreterFrame`s, innermost first. Tests check the offsets against
//! live interpreters with it; the kernel side can compare its output.

use profiler_common::python::{NO_INDEX, NO_OFFSET, OWNED_BY_CSTACK, Offsets};

use crate::error::ReadError;
use crate::memory::ProcessMemory;

/// Thread states searched at most (a longer list is taken for a cycle).
pub const MAX_THREADS: usize = 4096;
/// Frames walked at most.
pub const MAX_FRAMES: usize = 1024;

/// The Python frames of native thread `tid`: `(code object address,
/// instruction index)`, innermost first. `interpreters_head` is where the
/// head interpreter's address is; only that interpreter's threads are
/// searched, as the kernel does.
///
/// Frames owned by the C stack (the shim frame each eval loop pushes on
/// entry, 3.12+) are skipped; entry frames do not end the walk. An
/// instruction index that cannot be placed (before the code's first
/// instruction, or beyond what the kernel's 15 bits hold) is
/// [`NO_INDEX`].
pub(crate) fn python_stack(
    memory: &ProcessMemory,
    interpreters_head: u64,
    offsets: &Offsets,
    tid: u32,
) -> Result<Vec<(u64, u32)>, ReadError> {
    let at = |address: u64, offset: u16| address.wrapping_add(u64::from(offset));
    let interp = memory.read_u64(interpreters_head)?;
    let no_thread = ReadError::NoThreadState {
        pid: memory.pid(),
        tid,
    };
    if interp == 0 {
        return Err(no_thread);
    }
    let mut tstate = memory.read_u64(at(interp, offsets.interp_threads_head))?;
    let mut searched = 0;
    loop {
        if tstate == 0 {
            return Err(no_thread);
        }
        if memory.read_u64(at(tstate, offsets.tstate_native_thread_id))? == u64::from(tid) {
            break;
        }
        searched += 1;
        if searched >= MAX_THREADS {
            return Err(ReadError::TooLong {
                what: "thread states",
                limit: MAX_THREADS,
            });
        }
        tstate = memory.read_u64(at(tstate, offsets.tstate_next))?;
    }

    let mut frame = memory.read_u64(at(tstate, offsets.tstate_frame))?;
    if offsets.cframe_current_frame != NO_OFFSET && frame != 0 {
        frame = memory.read_u64(at(frame, offsets.cframe_current_frame))?;
    }
    let mut frames = Vec::new();
    for _ in 0..MAX_FRAMES {
        if frame == 0 {
            return Ok(frames);
        }
        let owner = memory.read_array::<1>(at(frame, offsets.frame_owner))?[0];
        // 3.11 has no C-stack-owned frames (its owner 3 means nothing).
        if !(offsets.version >= 0x030c && owner == OWNED_BY_CSTACK) {
            let code = memory.read_u64(at(frame, offsets.frame_code))?;
            let instr = memory.read_u64(at(frame, offsets.frame_instr))?;
            frames.push((code, instruction_index(code, offsets.code_adaptive, instr)));
        }
        frame = memory.read_u64(at(frame, offsets.frame_previous))?;
    }
    Err(ReadError::TooLong {
        what: "frames",
        limit: MAX_FRAMES,
    })
}

/// `(instr - (code + code_adaptive)) / 2`, the index of a frame's
/// instruction in code units, or [`NO_INDEX`] when it cannot be stored.
pub fn instruction_index(code: u64, code_adaptive: u16, instr: u64) -> u32 {
    let first = code.wrapping_add(u64::from(code_adaptive));
    match instr.checked_sub(first) {
        Some(bytes) if bytes / 2 < u64::from(NO_INDEX) => (bytes / 2) as u32,
        _ => NO_INDEX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices() {
        assert_eq!(instruction_index(0x1000, 200, 0x1000 + 200), 0);
        assert_eq!(instruction_index(0x1000, 200, 0x1000 + 200 + 14), 7);
        // A new frame's prev_instr, one unit before the first instruction.
        assert_eq!(instruction_index(0x1000, 200, 0x1000 + 198), NO_INDEX);
        assert_eq!(
            instruction_index(0x1000, 200, 0x1000 + 200 + 2 * 0x7fff),
            NO_INDEX
        );
        assert_eq!(
            instruction_index(0x1000, 200, 0x1000 + 200 + 2 * 0x7ffe),
            0x7ffe
        );
    }
}
