//! Shared inputs for the profiler's benchmarks: a deterministic generator of
//! synthetic [`RawProfile`]s shaped like real ones (stacks 10–60 deep that
//! share prefixes, drawn from a fixed set of functions per process, some with
//! kernel stacks) and a cheap fake [`Resolve`] for them.
//!
//! No `rand`: a xorshift generator with a fixed seed, so every run of a
//! benchmark sees the same input.

use std::collections::HashSet;

use profiler::{
    aggregate::{Resolve, aggregate},
    profile::{Mapping, Meta, Profile},
    raw::{RawProfile, RawSample, RawStack},
};
use symbolizer::{Frame, Symbol};

/// xorshift64* (Vigna): small, fast, good enough for test data.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // The state must not be zero.
        XorShift((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < per_mille as usize
    }
}

/// Where the synthetic code lives. A function `f` of process space `p`
/// starts at `USER_BASE + p * USER_SPACE_STRIDE + f * FUNCTION_SIZE`; kernel
/// function `f` at `KERNEL_BASE + f * FUNCTION_SIZE`. Call sites (sampled
/// addresses) are strictly inside a function, at least 0x10 bytes from
/// either end, so the aggregator's "return address - 1" stays in the same
/// function and [`FakeResolver`] gives it the same name.
pub const USER_BASE: u64 = 0x5555_5555_0000;
pub const USER_SPACE_STRIDE: u64 = 0x1_0000_0000;
pub const KERNEL_BASE: u64 = 0xffff_ffff_8100_0000;
pub const FUNCTION_SIZE: u64 = 0x100;
/// Call sites per function.
const SITES: u64 = 4;

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// Raw samples (keys of the kernel's counts map) to produce.
    pub samples: usize,
    /// Distinct stacks (by function, user and kernel side together) to draw
    /// them from; every one of them is used by at least one sample when
    /// `samples >= unique_stacks`.
    pub unique_stacks: usize,
    /// Processes; each has its own code and a few threads.
    pub pids: usize,
    pub threads_per_pid: usize,
    /// Functions per process (kernel: the same number).
    pub functions: usize,
    pub min_depth: usize,
    pub max_depth: usize,
    /// Samples (per mille) that also carry a kernel stack.
    pub kernel_per_mille: u32,
    /// Samples (per mille) whose user stack was lost (EEXIST), on top of
    /// the unique stacks.
    pub lost_per_mille: u32,
    pub seed: u64,
}

impl SynthConfig {
    /// `samples` raw samples over 4 processes, with a quarter as many
    /// distinct stacks as samples (at least one), a few lost.
    pub fn realistic(samples: usize) -> Self {
        SynthConfig {
            samples,
            unique_stacks: (samples / 4).max(1),
            pids: 4,
            threads_per_pid: 4,
            functions: 2000,
            min_depth: 10,
            max_depth: 60,
            kernel_per_mille: 300,
            lost_per_mille: 5,
            seed: 0x5EED,
        }
    }

    /// Exactly `stacks` distinct folded stacks (no lost stacks, each stack
    /// sampled once or more: `3 * stacks` samples in all).
    pub fn with_unique_stacks(stacks: usize) -> Self {
        SynthConfig {
            samples: stacks * 3,
            unique_stacks: stacks,
            lost_per_mille: 0,
            ..Self::realistic(stacks)
        }
    }
}

/// A stack as function indices, root first.
type FnStack = Vec<u32>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct StackKey {
    pid_index: usize,
    user: FnStack,
    kernel: Option<FnStack>,
}

/// A new call path: usually an existing one cut somewhere and continued
/// (so stacks share prefixes, like `main -> run -> ...` in a real program),
/// sometimes a fresh one; depth between the bounds.
fn grow(
    rng: &mut XorShift,
    existing: &[FnStack],
    functions: usize,
    min: usize,
    max: usize,
) -> FnStack {
    let depth = rng.range(min, max);
    let mut stack: FnStack = if !existing.is_empty() && !rng.chance(100) {
        let base = &existing[rng.below(existing.len())];
        let keep = rng
            .range(base.len() * 3 / 10, base.len() * 9 / 10)
            .min(depth.saturating_sub(1));
        base[..keep].to_vec()
    } else {
        // A process has few roots: `_start`, thread entry points.
        vec![rng.below(4) as u32]
    };
    while stack.len() < depth {
        // Callees are biased towards a "hot" part of the code.
        let f = if rng.chance(600) {
            rng.below(functions / 10)
        } else {
            rng.below(functions)
        };
        stack.push(f as u32);
    }
    stack
}

/// Leaf-first addresses of a function stack: a call site of each function.
fn addresses(rng: &mut XorShift, stack: &[u32], base: u64) -> Vec<u64> {
    stack
        .iter()
        .rev()
        .map(|&f| base + f as u64 * FUNCTION_SIZE + 0x10 + rng.below(SITES as usize) as u64 * 0x30)
        .collect()
}

pub fn pid_of(pid_index: usize) -> u32 {
    1000 + pid_index as u32 * 100
}

/// A deterministic synthetic drain of the kernel maps.
pub fn synthetic_raw(config: &SynthConfig) -> RawProfile {
    let mut rng = XorShift::new(config.seed);
    let mut user_paths: Vec<Vec<FnStack>> = vec![Vec::new(); config.pids];
    let mut kernel_paths: Vec<FnStack> = Vec::new();
    let mut seen: HashSet<StackKey> = HashSet::new();
    let mut keys: Vec<StackKey> = Vec::with_capacity(config.unique_stacks);
    while keys.len() < config.unique_stacks {
        let pid_index = rng.below(config.pids);
        let user = grow(
            &mut rng,
            &user_paths[pid_index],
            config.functions,
            config.min_depth,
            config.max_depth,
        );
        let kernel = rng.chance(config.kernel_per_mille).then(|| {
            // Kernel stacks are shallower: syscall entry down to the leaf.
            grow(&mut rng, &kernel_paths, config.functions, 3, 15)
        });
        let key = StackKey {
            pid_index,
            user,
            kernel,
        };
        if seen.insert(key.clone()) {
            user_paths[pid_index].push(key.user.clone());
            if let Some(k) = &key.kernel {
                kernel_paths.push(k.clone());
            }
            keys.push(key);
        }
    }

    let mut samples = Vec::with_capacity(config.samples);
    for i in 0..config.samples {
        // Every stack once, then a skewed pick: a few stacks are hot.
        let key = if i < keys.len() {
            &keys[i]
        } else {
            let r = rng.below(1 << 16) as u64;
            &keys[((r * r * keys.len() as u64) >> 32) as usize]
        };
        let pid = pid_of(key.pid_index);
        let tid = pid + rng.below(config.threads_per_pid) as u32;
        let user_base = USER_BASE + key.pid_index as u64 * USER_SPACE_STRIDE;
        let user_stack = if rng.chance(config.lost_per_mille) {
            RawStack::Lost { errno: 17 }
        } else {
            RawStack::Frames(addresses(&mut rng, &key.user, user_base))
        };
        let kernel_stack = match &key.kernel {
            Some(k) => RawStack::Frames(addresses(&mut rng, k, KERNEL_BASE)),
            None => RawStack::Absent,
        };
        samples.push(RawSample {
            tgid: pid,
            tid,
            comm: format!("app-{}", key.pid_index),
            user_stack,
            kernel_stack,
            count: 1 + rng.below(20) as u64,
            nanos: 0,
            state: Default::default(),
        });
    }
    RawProfile {
        samples,
        stats: Default::default(),
    }
}

/// Names addresses from [`synthetic_raw`] cheaply: by function, with a file
/// and line, every eighth function with an inlined callee.
#[derive(Default)]
pub struct FakeResolver;

fn function_symbol(prefix: &str, function: u64, offset: u64, mapping: Option<usize>) -> Symbol {
    let file = Some(format!("src/{prefix}/mod{}.rs", function % 37));
    let line = Some(10 + (function % 500) as u32 + (offset / 0x30) as u32);
    let mut frames = Vec::with_capacity(2);
    if function.is_multiple_of(8) {
        frames.push(Frame {
            function: format!("{prefix}::inlined_{function}"),
            file: file.clone(),
            line,
        });
    }
    frames.push(Frame {
        function: format!("{prefix}::function_{function}"),
        file,
        line,
    });
    Symbol {
        frames: frames.into(),
        symbolized: true,
        mapping,
    }
}

impl Resolve for FakeResolver {
    fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Symbol> {
        addrs
            .iter()
            .map(|&a| {
                let rel = a.wrapping_sub(USER_BASE) % USER_SPACE_STRIDE;
                let prefix = if pid.is_multiple_of(2) { "app" } else { "std" };
                function_symbol(prefix, rel / FUNCTION_SIZE, rel % FUNCTION_SIZE, Some(0))
            })
            .collect()
    }

    fn kernel(&mut self, addrs: &[u64]) -> Vec<Symbol> {
        addrs
            .iter()
            .map(|&a| {
                let rel = a.wrapping_sub(KERNEL_BASE);
                function_symbol("kernel", rel / FUNCTION_SIZE, rel % FUNCTION_SIZE, None)
            })
            .collect()
    }

    fn mapping(&self, pid: u32, _index: usize) -> Option<Mapping> {
        Some(Mapping {
            start: USER_BASE,
            end: USER_BASE + 0x100_0000,
            file_offset: 0,
            path: format!("/usr/bin/app-{pid}"),
            build_id: Some(format!("{pid:040x}")),
        })
    }
}

pub fn bench_meta() -> Meta {
    Meta {
        target: "synthetic benchmark profile".into(),
        start_unix_nanos: 1_700_000_000_000_000_000,
        duration_nanos: 30_000_000_000,
        frequency_hz: 99,
        ..Default::default()
    }
}

/// A symbolized profile with exactly `stacks` distinct folded stacks.
pub fn profile_with_unique_stacks(stacks: usize) -> Profile {
    let raw = synthetic_raw(&SynthConfig::with_unique_stacks(stacks));
    aggregate(&raw, &mut FakeResolver, bench_meta())
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler::output::folded::folded_lines;

    #[test]
    fn generator_is_deterministic_and_shaped_as_asked() {
        let config = SynthConfig::realistic(2000);
        let raw = synthetic_raw(&config);
        assert_eq!(raw, synthetic_raw(&config));
        assert_eq!(raw.samples.len(), 2000);
        let pids: HashSet<u32> = raw.samples.iter().map(|s| s.tgid).collect();
        assert_eq!(pids.len(), 4);
        for sample in &raw.samples {
            if let RawStack::Frames(frames) = &sample.user_stack {
                assert!((10..=60).contains(&frames.len()), "{}", frames.len());
            }
        }
        assert!(
            raw.samples
                .iter()
                .any(|s| matches!(s.kernel_stack, RawStack::Frames(_)))
        );
    }

    #[test]
    fn profile_has_exactly_the_unique_stacks_asked_for() {
        let profile = profile_with_unique_stacks(500);
        assert_eq!(folded_lines(&profile).len(), 500);
    }
}
