//! x86-64 unwind tables for the profiler's in-kernel unwinder: compact
//! [`profiler_common::UnwindRow`]s built from a file's `.eh_frame` (and
//! `.debug_frame`) call frame information.
