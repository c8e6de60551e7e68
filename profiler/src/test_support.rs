//! Helpers shared by the unit tests.

/// True when running as root; otherwise says loudly that the test is
/// skipped and why (`needs`: what needs root), in the form `cargo xtask
/// test` counts (`SKIPPED <test>: <why>`), and returns false.
pub fn root_or_skip(needs: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // libtest names each test's thread after the test.
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a unit test");
        eprintln!("SKIPPED {test}: {needs} needs root");
        return false;
    }
    true
}
