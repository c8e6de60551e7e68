//! Helpers shared by the unit tests.

/// True when running as root; otherwise says loudly that the test is
/// skipped and why (`needs`: what needs root), and returns false.
pub fn root_or_skip(needs: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: {needs} needs root");
        return false;
    }
    true
}
