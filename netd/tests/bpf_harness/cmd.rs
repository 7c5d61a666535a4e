//! Commands a test runs to build or probe its topology (`ip`, `bridge`,
//! `sysctl`, `ping`), and what `ip -j` reports.

use std::process::Command;

/// Runs `args` and panics with its output unless it succeeds.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `args` and returns whether it succeeded (for pings expected to
/// fail).
pub fn succeeds(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
        .status
        .success()
}

/// Runs `ip -j ARGS` and parses its output.
pub fn ip_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -j {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ip -j prints JSON")
}
