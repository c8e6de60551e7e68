//! Helpers shared by the unit tests.

/// True when running as root; otherwise says loudly that the test is
/// skipped and why (`needs`: what needs root), in the form `cargo xtask
/// test` counts (`SKIPPED <test>: <why>`), and returns false. Written to
/// the stderr handle: `eprintln!` is captured by the test harness (and
/// hidden for a passing test) unless run with `--nocapture`.
pub fn root_or_skip(needs: &str) -> bool {
    use std::io::Write;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // libtest names each test's thread after the test.
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a unit test");
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {needs} needs root");
        return false;
    }
    true
}
