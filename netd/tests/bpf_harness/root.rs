//! The one check every privileged test makes before its first step.

/// Panics with a message that says what to do unless the test runs as
/// root, so that a test that needs root never fails with the EPERM of
/// whichever step came first, nor passes without having run.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root: run it with `cargo xtask test` or as root");
    }
}
