//! The profiler's own CPU time (user + sys, from `getrusage`) spent in each
//! phase of a recording, printed to stderr when `PROFILER_PHASES` is set in
//! the environment: for measuring the profiler itself
//! (`benches/self-profile/phases.sh`).
//!
//! A self-profile under `perf record --call-graph dwarf` (`selfprof.sh`)
//! shows where the time goes, but its sampling (25 kHz, 16 KiB of stack
//! copied per sample) inflates whatever allocates or faults pages: it put
//! 6.7 ms of a 999 Hz recording in copying frame names, which the clock
//! here finds to be ~1.5 ms. These figures are the process's own, and cost
//! one `getrusage` per phase (nothing when the variable is unset).
//!
//! `aggregate`'s marks print in the agent too, once per window.

use std::sync::OnceLock;
use std::time::Instant;

/// Whether `PROFILER_PHASES` was set (read once).
fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("PROFILER_PHASES").is_some())
}

/// The process's resource usage so far, `None` if it cannot be read.
fn usage() -> Option<libc::rusage> {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid rusage to write to.
    (unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0).then_some(usage)
}

/// CPU time (user + sys) in `usage`, in milliseconds.
fn cpu_ms_of(usage: &libc::rusage) -> f64 {
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// The process's CPU time so far (user + sys), in milliseconds.
#[cfg(test)]
fn cpu_ms() -> f64 {
    usage().map_or(f64::NAN, |u| cpu_ms_of(&u))
}

/// Marks the end of phase `name`: with `PROFILER_PHASES` set, prints
/// `phase NAME CPU_MS WALL_MS MINFLT MAXRSS_KIB`, the process's CPU time so
/// far, the wall time since the first mark (both in ms), its minor page
/// faults so far and its peak RSS. Phases are told apart by subtracting
/// consecutive lines. Faults are counted because first touches of fresh
/// heap (a fault and a zeroed page each) were ~15% of a 999 Hz fork-heavy
/// recording's CPU under perf.
pub fn mark(name: &str) {
    if !enabled() {
        return;
    }
    static FIRST: OnceLock<Instant> = OnceLock::new();
    let wall = FIRST.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3;
    let (cpu, faults, maxrss) = usage().map_or((f64::NAN, -1, -1), |u| {
        (cpu_ms_of(&u), u.ru_minflt, u.ru_maxrss)
    });
    eprintln!("phase {name} {cpu:.3} {wall:.3} {faults} {maxrss}");
}

/// With `PROFILER_PHASES` set, prints `note TEXT`: counts that explain a
/// phase's cost (e.g. the symbolizer's cache hits), built only when asked.
pub fn note(text: impl FnOnce() -> String) {
    if enabled() {
        eprintln!("note {}", text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spinning shows up as CPU time (a broken reading, NaN or stuck,
    /// never gets there).
    #[test]
    fn cpu_time_grows_while_spinning() {
        let before = cpu_ms();
        assert!(before.is_finite() && before >= 0.0, "CPU time {before}");
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut x = 0u64;
        while cpu_ms() - before < 20.0 {
            assert!(
                Instant::now() < deadline,
                "10 s of spinning showed only {:.1} ms of CPU",
                cpu_ms() - before
            );
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }
}
