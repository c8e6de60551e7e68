//! Windowed draining for the agent: the programs record into one of two map
//! sets (stacks, on-CPU counts, off-CPU counts) while user space reads the
//! other, so that a window is cut without pausing the sampler and without
//! losing what arrives during the read.
//!
//! At each boundary, [`Tracer::next_window`]:
//! 1. reads the inactive set again: whatever it holds beyond what was read
//!    from it at the previous boundary arrived late (an on-CPU sample in
//!    flight at the switch, on CPU or coming back from off CPU). These
//!    samples are counted as *between windows* and given to this window;
//! 2. clears that set (its stacks map too, but for the stacks that threads
//!    still off CPU refer to: when such a thread comes back, the kernel
//!    copies its stacks to the active set and adds its interval there);
//! 3. makes it the active set (one write of the `CONFIG` entry);
//! 4. reads the set that was active until then, in full, and remembers
//!    what it read, for step 1 of the next boundary.
//!
//! Nothing is lost at a switch: a set is only cleared a whole window after
//! the programs stopped choosing it (only programs that read the old choice
//! just before the switch write to it after), and what it received since it
//! was read is taken first.

use std::collections::{HashMap as StdHashMap, HashSet};

use aya::maps::{Array, HashMap, MapData};
use profiler_common::{
    Config, OffCpuKey, OffCpuStart, OffCpuValue, SampleKey, StackTrace, map_names,
};

use super::{Tracer, TracerError, comm_to_string, ebpf_error, off_cpu_state};
use crate::{
    profile::ThreadState,
    raw::{KernelStats, RawSample, RawStack},
};

/// What was read of one map set at its last read.
#[derive(Default)]
struct SetSnapshot {
    counts: StdHashMap<SampleKey, u64>,
    off_cpu: StdHashMap<OffCpuKey, OffCpuValue>,
}

/// The windowed state of a [`Tracer`].
#[derive(Default)]
pub(super) struct Windows {
    active: u32,
    snapshots: [SetSnapshot; 2],
}

/// One window's worth of the kernel maps.
#[derive(Clone, Debug, Default)]
pub struct WindowDrain {
    /// The window's samples, late arrivals of earlier windows included.
    pub samples: Vec<RawSample>,
    /// On-CPU samples among them that arrived in a set after it was read
    /// (recorded while the sets were switched).
    pub late_samples: u64,
    /// Off-CPU intervals among them that were added to a set after it was
    /// read (threads that came back to a CPU while the sets were switched).
    pub late_off_cpu: u64,
    /// Entries of the on-CPU and off-CPU counts maps of the set read.
    pub counts_entries: u64,
    /// Entries of the stacks map of the set cleared, before clearing (how
    /// full a set got over a window and its late arrivals).
    pub stacks_entries: u64,
    /// Stacks kept at the clear because a thread off CPU refers to them.
    pub stacks_pinned: u64,
    /// The kernel's counters (cumulative since the start).
    pub stats: KernelStats,
}

/// The frames a stored stack holds (its length is the kernel's, bounded
/// by the array), cut as [`RawStack::walked`] says.
/// A stack walked with unwind tables that ended early holds the cause in
/// `len`'s high half: it ends in a marker frame naming it.
pub(super) fn walked(trace: &StackTrace) -> RawStack {
    let len = ((trace.len & 0xffff_ffff) as usize).min(trace.ips.len());
    let end = (trace.len >> 32) as u32;
    let mut stack = RawStack::walked(&trace.ips[..len]);
    if end != 0
        && let RawStack::Frames(frames) = &mut stack
    {
        frames.push(crate::raw::UNWIND_END_MARKER | (end as u64 & 0xff));
    }
    stack
}

/// A stack read from a set's stacks map, cached per read (also used by the
/// one-shot [`Tracer::drain`]).
pub(super) fn raw_stack(
    stacks: &HashMap<&MapData, u64, StackTrace>,
    cache: &mut StdHashMap<(u64, i32), RawStack>,
    hash: u64,
    error: i32,
) -> RawStack {
    cache
        .entry((hash, error))
        .or_insert_with(|| {
            if error != 0 {
                RawStack::Lost { errno: -error }
            } else if hash == 0 {
                RawStack::Absent
            } else {
                match stacks.get(&hash, 0) {
                    Ok(trace) => walked(&trace),
                    // ENOENT: the kernel wrote the count but not the stack (cannot happen
                    // while the stack is inserted first; kept as a visible loss).
                    Err(_) => RawStack::Lost { errno: 2 },
                }
            }
        })
        .clone()
}

/// What [`Tracer::read_set`] found.
#[derive(Default)]
struct SetRead {
    samples: Vec<RawSample>,
    snapshot: SetSnapshot,
    on_cpu: u64,
    off_cpu: u64,
    entries: u64,
}

impl Tracer {
    fn hash_map<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &str,
    ) -> Result<HashMap<&MapData, K, V>, TracerError> {
        let map = self.ebpf.map(name).ok_or_else(|| TracerError::Ebpf {
            action: format!("open the {name} map"),
            message: "no such map in the eBPF object".into(),
        })?;
        HashMap::try_from(map).map_err(|e| ebpf_error(&format!("open the {name} map"), e))
    }

    /// Reads map set `set`; with `since`, only what was added since that
    /// snapshot (counts and times are differences).
    fn read_set(&self, set: u32, since: Option<&SetSnapshot>) -> Result<SetRead, TracerError> {
        let stacks = self.hash_map::<u64, StackTrace>(map_names::stacks(set))?;
        let mut cache = StdHashMap::new();
        let mut read = SetRead::default();
        let mut sample = |key: &SampleKey, count: u64, nanos: u64, state: ThreadState| RawSample {
            tgid: key.tgid,
            tid: key.tid,
            comm: comm_to_string(&key.comm),
            user_stack: raw_stack(&stacks, &mut cache, key.user_stack, key.user_error),
            kernel_stack: raw_stack(&stacks, &mut cache, key.kernel_stack, key.kernel_error),
            count,
            nanos,
            state,
        };
        if self.options.on_cpu {
            for (key, count) in self.entries::<SampleKey, u64>(map_names::counts(set), 1024)? {
                read.entries += 1;
                read.snapshot.counts.insert(key, count);
                let before = since.and_then(|s| s.counts.get(&key)).copied();
                let new = count.saturating_sub(before.unwrap_or(0));
                if new > 0 {
                    read.on_cpu += new;
                    read.samples.push(sample(&key, new, 0, ThreadState::OnCpu));
                }
            }
        }
        if self.options.off_cpu {
            let off =
                self.entries::<OffCpuKey, OffCpuValue>(map_names::off_cpu_counts(set), 1024)?;
            for (key, value) in off {
                read.entries += 1;
                read.snapshot.off_cpu.insert(key, value);
                let before = since
                    .and_then(|s| s.off_cpu.get(&key))
                    .copied()
                    .unwrap_or_default();
                let count = value.count.saturating_sub(before.count);
                let nanos = value.nanos.saturating_sub(before.nanos);
                if count > 0 || nanos > 0 {
                    read.off_cpu += count;
                    read.samples
                        .push(sample(&key.sample, count, nanos, off_cpu_state(key.state)));
                }
            }
        }
        Ok(read)
    }

    /// Empties map set `set` but for the stacks that threads off CPU since
    /// that set was active refer to. Returns the stacks map's entries before
    /// and the number kept.
    fn clear_set(&mut self, set: u32) -> Result<(u64, u64), TracerError> {
        let mut pinned = HashSet::new();
        if self.options.off_cpu {
            let start = self.hash_map::<u32, OffCpuStart>(map_names::OFF_CPU_START)?;
            for entry in start.iter() {
                // An entry removed while iterating ends this entry's walk; skip it.
                let Ok((_, value)) = entry else { continue };
                if value.set == set {
                    pinned.insert(value.key.sample.user_stack);
                    pinned.insert(value.key.sample.kernel_stack);
                }
            }
        }
        fn clear<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod>(
            tracer: &mut Tracer,
            name: &str,
            keep: impl Fn(&K) -> bool,
        ) -> Result<(u64, u64), TracerError> {
            let map = tracer.ebpf.map_mut(name).ok_or_else(|| TracerError::Ebpf {
                action: format!("open the {name} map"),
                message: "no such map in the eBPF object".into(),
            })?;
            let mut map: HashMap<&mut MapData, K, V> = HashMap::try_from(map)
                .map_err(|e| ebpf_error(&format!("open the {name} map"), e))?;
            let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
            let mut kept = 0;
            for key in &keys {
                if keep(key) {
                    kept += 1;
                    continue;
                }
                // Already gone is fine; anything else would leave stale data.
                if let Err(e) = map.remove(key) {
                    let gone = format!("{e:?}").contains("ENOENT")
                        || format!("{e}").contains("No such file");
                    if !gone {
                        return Err(ebpf_error(&format!("clear the {name} map"), e));
                    }
                }
            }
            Ok((keys.len() as u64, kept))
        }
        if self.options.on_cpu {
            clear::<SampleKey, u64>(self, map_names::counts(set), |_| false)?;
        }
        if self.options.off_cpu {
            clear::<OffCpuKey, OffCpuValue>(self, map_names::off_cpu_counts(set), |_| false)?;
        }
        clear::<u64, StackTrace>(self, map_names::stacks(set), |hash| pinned.contains(hash))
    }

    fn set_active(&mut self, set: u32) -> Result<(), TracerError> {
        let mut config_map: Array<_, Config> =
            Array::try_from(self.ebpf.map_mut(map_names::CONFIG).unwrap())
                .map_err(|e| ebpf_error("open the CONFIG map", e))?;
        let mut config = config_map
            .get(&0, 0)
            .map_err(|e| ebpf_error("read the CONFIG map", e))?;
        config.active_set = set;
        config_map
            .set(0, config, 0)
            .map_err(|e| ebpf_error("switch the map set", e))
    }

    /// Threads off CPU now (entries of `OFF_CPU_START`), by tid, with the
    /// tgid they belong to.
    pub fn off_cpu_pending(&self) -> Result<Vec<(u32, u32)>, TracerError> {
        if !self.options.off_cpu {
            return Ok(Vec::new());
        }
        let start = self.hash_map::<u32, OffCpuStart>(map_names::OFF_CPU_START)?;
        Ok(start
            .iter()
            .filter_map(Result::ok)
            .map(|(tid, value)| (tid, value.key.sample.tgid))
            .collect())
    }

    /// Removes the `OFF_CPU_START` entries of threads that no longer exist
    /// (a thread whose last switch-out was not seen as an exit), so that
    /// they neither pin stacks nor fill the map. Returns how many.
    pub fn forget_exited_threads(&mut self) -> Result<u64, TracerError> {
        let gone: Vec<u32> = self
            .off_cpu_pending()?
            .into_iter()
            .filter(|&(tid, tgid)| {
                !std::path::Path::new(&format!("/proc/{tgid}/task/{tid}")).exists()
            })
            .map(|(tid, _)| tid)
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let map = self.ebpf.map_mut(map_names::OFF_CPU_START).unwrap();
        let mut start: HashMap<&mut MapData, u32, OffCpuStart> =
            HashMap::try_from(map).map_err(|e| ebpf_error("open the OFF_CPU_START map", e))?;
        let mut removed = 0;
        for tid in gone {
            if start.remove(&tid).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The map set the programs record into now.
    pub fn active_set(&self) -> u32 {
        self.windows.active
    }

    /// Ends the current window: switches map sets and returns what the
    /// window recorded, with the late arrivals of earlier windows (see the
    /// module documentation). Needs [`super::TracerOptions::windowed`].
    /// After [`Tracer::stop`] it returns the last window.
    pub fn next_window(&mut self) -> Result<WindowDrain, TracerError> {
        if !self.options.windowed {
            return Err(TracerError::Ebpf {
                action: "drain a window".into(),
                message: "the tracer was started without `windowed`".into(),
            });
        }
        let old = self.windows.active;
        let new = 1 - old;
        let late = self.read_set(new, Some(&self.windows.snapshots[new as usize]))?;
        let (stacks_entries, stacks_pinned) = self.clear_set(new)?;
        self.windows.snapshots[new as usize] = SetSnapshot::default();
        self.set_active(new)?;
        self.windows.active = new;
        let current = self.read_set(old, None)?;
        self.windows.snapshots[old as usize] = current.snapshot;
        let mut samples = late.samples;
        samples.extend(current.samples);
        Ok(WindowDrain {
            samples,
            late_samples: late.on_cpu,
            late_off_cpu: late.off_cpu,
            counts_entries: current.entries,
            stacks_entries,
            stacks_pinned,
            stats: self.stats()?,
        })
    }
}
