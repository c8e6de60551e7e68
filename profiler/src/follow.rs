//! Keeps what the kernel's stack walker reads about each process (unwind
//! tables, Python interpreters) in step with the process table.

use crate::{processes::ProcessTable, python::Pythons, unwind::Tables};
use symbolizer::ProcessMaps;

/// Something kept per process in step with its mappings.
pub trait FollowProcesses {
    /// `maps` are the process's mappings now (new, changed, or announced
    /// by the kernel).
    fn sync(&mut self, maps: &ProcessMaps);
    /// The process exited.
    fn remove(&mut self, pid: u32);
}

/// Brings what the kernel's stack walker reads up to date with the
/// processes held: the unwind tables and the Python interpreters (each if
/// the recording has them), then reads the Python code objects the kernel
/// announced.
pub fn follow_walker(
    processes: &mut ProcessTable,
    unwind: Option<&mut Tables>,
    mut pythons: Option<&mut Pythons>,
) {
    {
        let mut followers: Vec<&mut dyn FollowProcesses> = Vec::new();
        if let Some(unwind) = unwind {
            followers.push(unwind);
        }
        if let Some(pythons) = pythons.as_deref_mut() {
            followers.push(pythons);
        }
        follow(processes, &mut followers);
    }
    if let Some(pythons) = pythons {
        pythons.read_announced(processes);
    }
}

/// Gives `followers` the processes whose mappings changed, and those that
/// exited, since the last call.
///
/// A process the kernel announced (first sampled, or first since an exec,
/// which drops what the kernel had of it), or whose stack reached an
/// address in none of its mappings, is read from `/proc` at once: its
/// records are due only ~20 ms after they were written, and its samples
/// meanwhile are cut.
pub fn follow(processes: &mut ProcessTable, followers: &mut [&mut dyn FollowProcesses]) {
    if followers.is_empty() {
        return;
    }
    let (changed, exited) = processes.take_changes();
    // Records are applied ~20-120 ms after they were written: most of a
    // fork-heavy program's children have exited by then, and writing
    // their mappings only to remove them was most of the profiler's
    // CPU there (8 KiB map updates).
    let exited: foldhash::HashSet<u32> = exited.into_iter().collect();
    for &pid in &exited {
        for follower in followers.iter_mut() {
            follower.remove(pid);
        }
    }
    // One read per process, however often it was named.
    let announced: foldhash::HashSet<u32> = processes.take_announced().into_iter().collect();
    for pid in announced {
        if !exited.contains(&pid)
            && let Some(maps) = processes.read_now(pid)
        {
            for follower in followers.iter_mut() {
                follower.sync(&maps);
            }
        }
    }
    for pid in changed {
        if !exited.contains(&pid)
            && let Some(maps) = processes.get(pid)
        {
            for follower in followers.iter_mut() {
                follower.sync(maps);
            }
        }
    }
}
