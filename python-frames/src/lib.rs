//! The user-space half of CPython frame support in the profiler: for a
//! process running CPython 3.11, 3.12 or 3.13, [`inspect`] finds the
//! interpreter and gives the kernel its [`profiler_common::python::Process`]
//! value (where the interpreter list is, the eval loop's address ranges,
//! the structure offsets); [`Interpreter::read_code`] then names the code
//! objects the kernel recorded, and [`CodeInfo::line`] places their
//! instruction indices on lines.
//!
//! ```no_run
//! use python_frames::{ProcessMemory, Region, inspect};
//!
//! let pid = 1234;
//! let regions = Region::read_all(pid)?;
//! if let Some(interpreter) = inspect(pid, &regions)? {
//!     let memory = ProcessMemory::open(pid)?;
//!     for (code, index) in interpreter.python_stack(&memory, pid)? {
//!         let info = interpreter.read_code(&memory, code)?;
//!         println!("{} ({}:{:?})", info.qualname, info.filename, info.line(index));
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod code;
pub mod debug_offsets;
mod elf;
mod error;
mod inspect;
mod interpreter;
pub mod layout;
pub mod linetable;
mod memory;
mod objects;
mod region;
mod stack;
mod version;

pub use code::{CodeInfo, MAX_FILENAME_CHARS, MAX_LINE_TABLE, MAX_NAME_CHARS};
pub use error::{InspectError, ReadError};
pub use inspect::inspect;
pub use interpreter::Interpreter;
pub use layout::Layout;
pub use memory::ProcessMemory;
pub use region::Region;
pub use stack::{MAX_FRAMES, MAX_THREADS, instruction_index};
pub use version::{SUPPORTED, Version};
