//! What the running kernel lets the programs and maps use, decided from its
//! version: probing by loading a program would cost a good part of what the
//! features save. A kernel that backported a feature is merely not given it.
//!
//! Both features cut the fixed cost of a recording, which for a short one is
//! most of the profiler's CPU:
//! - `bpf_loop` (Linux 5.17): the stacks are hashed by a loop callback,
//!   which the verifier checks once; the open-coded 127-step loop was
//!   walked step by step, for both stacks (8 436 instructions verified for
//!   `on_cpu_sample`, ~6 ms; 1 433 for `on_cpu_sample_one_set` with
//!   `bpf_loop`, ~1.3 ms).
//! - hash maps allocated on use (`BPF_F_NO_PREALLOC`) in perf_event
//!   programs (Linux 6.1, when hash maps moved to the BPF memory
//!   allocator): a preallocated map is allocated, zeroed and charged in
//!   full when it is created (17 MiB of stacks and 5 MiB of counts by
//!   default, ~5 ms), though a recording fills a few hundred entries.
//!
//! [`warm_stack_caches`] makes the second safe for the stacks map.

use std::io;

use aya::{
    maps::{HashMap, MapData},
    util::KernelVersion,
};
use profiler_common::StackTrace;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    /// The `bpf_loop` helper: load the programs that hash with it.
    pub bpf_loop: bool,
    /// Hash maps without preallocation may be used by perf_event programs.
    pub no_prealloc: bool,
}

impl KernelFeatures {
    /// The features of a kernel of version `version` (`None`: unknown,
    /// none is used).
    pub fn of(version: Option<KernelVersion>) -> KernelFeatures {
        let at_least =
            |major, minor| version.is_some_and(|v| v >= KernelVersion::new(major, minor, 0));
        KernelFeatures {
            bpf_loop: at_least(5, 17),
            no_prealloc: at_least(6, 1),
        }
    }

    /// The running kernel's features.
    pub fn current() -> KernelFeatures {
        KernelFeatures::of(KernelVersion::current().ok())
    }
}

/// Stocks each CPU's cache of free stack-map elements before sampling starts.
///
/// A map without preallocation takes its elements from per-CPU caches that
/// an irq_work refills after an allocation leaves them low; a new cache
/// holds a single element of the stacks map's size (1 KiB values). A
/// sample stores up to two new stacks (user, then kernel) in one program
/// run, before any refill can run, so the first sample on a CPU could lose
/// its kernel stack. One insert from each CPU here takes that element and
/// triggers the refill, and the delete gives the element back.
///
/// The calling thread runs on each online CPU in turn and gets its own CPU
/// set back. A CPU it may not run on (a cpuset) is skipped: the first
/// sample there may lose a stack, counted as `STACKS_FULL` like any failed
/// insert.
pub fn warm_stack_caches(
    maps: &mut [&mut HashMap<&mut MapData, u64, StackTrace>],
    cpus: &[u32],
) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut original: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid cpu_set_t of the size given; pid 0 is this thread.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut original) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // 0 is never a stack's hash (it means "no stack"), so no real stack is
    // touched even if a program were running.
    let key = 0u64;
    let value = StackTrace {
        len: 0,
        ips: [0; profiler_common::MAX_STACK_DEPTH],
    };
    for &cpu in cpus {
        // SAFETY: as above.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` is below CPU_SETSIZE on any machine aya reports.
        unsafe { libc::CPU_SET(cpu as usize, &mut one) };
        // SAFETY: as above; on success this thread now runs on `cpu`.
        if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) } != 0 {
            continue;
        }
        for map in maps.iter_mut() {
            if map.insert(key, value, 0).is_ok() {
                let _ = map.remove(&key);
            }
        }
    }
    // SAFETY: as above.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &original) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_the_kernel_version() {
        let of = |major, minor| KernelFeatures::of(Some(KernelVersion::new(major, minor, 0)));
        assert_eq!(
            of(5, 15),
            KernelFeatures {
                bpf_loop: false,
                no_prealloc: false
            }
        );
        assert_eq!(
            of(5, 17),
            KernelFeatures {
                bpf_loop: true,
                no_prealloc: false
            }
        );
        assert_eq!(
            of(6, 1),
            KernelFeatures {
                bpf_loop: true,
                no_prealloc: true
            }
        );
        assert_eq!(
            KernelFeatures::of(None),
            KernelFeatures {
                bpf_loop: false,
                no_prealloc: false
            }
        );
    }
}
