//! The real Docker CLI, unmodified, against netd's socket: every `docker
//! network` command and `docker version` must work, with Docker's messages.

mod common;

use common::{Daemon, stderr, stdout};
use serde_json::Value;

fn docker_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}\n--- daemon log ---\n{}",
        stderr(&out),
        d.log()
    );
    stdout(&out)
}

fn docker_err(d: &Daemon, args: &[&str]) -> String {
    let out = d.docker(args);
    assert!(
        !out.status.success(),
        "docker {args:?} should fail: {}",
        stdout(&out)
    );
    stderr(&out)
}

#[test]
fn docker_cli_drives_networks() {
    let d = Daemon::start();

    let version = docker_ok(
        &d,
        &[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}",
        ],
    );
    assert_eq!(version.trim(), "1.47 linux");

    let ls = docker_ok(
        &d,
        &[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ],
    );
    let mut rows: Vec<&str> = ls.lines().collect();
    rows.sort();
    assert_eq!(
        rows,
        ["bridge bridge local", "host host local", "none null local"]
    );

    let id = docker_ok(
        &d,
        &[
            "network",
            "create",
            "--subnet",
            "10.221.0.0/24",
            "--gateway",
            "10.221.0.254",
            "--ip-range",
            "10.221.0.16/28",
            "--label",
            "tier=web",
            "--internal",
            "web",
        ],
    );
    let id = id.trim();
    assert_eq!(id.len(), 64, "docker prints the full id: {id}");

    let inspected: Value =
        serde_json::from_str(&docker_ok(&d, &["network", "inspect", "web"])).unwrap();
    let n = &inspected[0];
    assert_eq!(n["Name"], "web");
    assert_eq!(n["Id"], id);
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["Internal"], true);
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.221.0.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.221.0.254");
    assert_eq!(n["IPAM"]["Config"][0]["IPRange"], "10.221.0.16/28");
    assert_eq!(n["Labels"]["tier"], "web");
    // Lookup by id prefix works like Docker's.
    let by_prefix = docker_ok(
        &d,
        &["network", "inspect", "--format", "{{.Name}}", &id[..6]],
    );
    assert_eq!(by_prefix.trim(), "web");

    let filtered = docker_ok(&d, &["network", "ls", "-q", "--filter", "label=tier=web"]);
    assert_eq!(filtered.trim(), &id[..12]);

    // connect / disconnect a netd container.
    d.ok(&["container", "create", "--network", "none", "c1"]);
    let none_err = docker_err(&d, &["network", "connect", "web", "c1"]);
    assert!(none_err.contains("private (none) mode"), "{none_err}");
    d.ok(&["container", "create", "--network", "host", "h1"]);
    d.ok(&["container", "rm", "c1", "h1"]);
    d.ok(&["network", "create", "--subnet", "10.221.1.0/24", "other"]);
    d.ok(&["container", "create", "--network", "other", "c2"]);
    docker_ok(
        &d,
        &[
            "network",
            "connect",
            "--ip",
            "10.221.0.20",
            "--alias",
            "www",
            "web",
            "c2",
        ],
    );
    let members = docker_ok(
        &d,
        &[
            "network",
            "inspect",
            "--format",
            "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}",
            "web",
        ],
    );
    assert_eq!(members.trim(), "c2 10.221.0.20/24");
    let busy = docker_err(&d, &["network", "rm", "web"]);
    assert!(busy.contains("has active endpoints"), "{busy}");
    docker_ok(&d, &["network", "disconnect", "web", "c2"]);

    // Docker's errors, printed by the Docker CLI.
    let dup = docker_err(&d, &["network", "create", "web"]);
    assert!(
        dup.contains("Error response from daemon: network with name web already exists"),
        "{dup}"
    );
    let host = docker_err(&d, &["network", "create", "-d", "host", "h"]);
    assert!(
        host.contains("only one instance of \"host\" network is allowed"),
        "{host}"
    );
    let builtin = docker_err(&d, &["network", "rm", "bridge"]);
    assert!(
        builtin.contains("bridge is a pre-defined network and cannot be removed"),
        "{builtin}"
    );
    let overlap = docker_err(
        &d,
        &["network", "create", "--subnet", "10.221.0.0/16", "wide"],
    );
    assert!(
        overlap.contains("Pool overlaps with other one on this address space"),
        "{overlap}"
    );
    let missing = docker_err(&d, &["network", "inspect", "nosuch"]);
    assert!(missing.contains("nosuch"), "{missing}");

    // rm, then prune removes only unused custom networks.
    docker_ok(&d, &["network", "rm", "web"]);
    docker_ok(&d, &["network", "create", "unused"]);
    let pruned = docker_ok(&d, &["network", "prune", "-f"]);
    assert!(pruned.contains("unused"), "{pruned}");
    assert!(!pruned.contains("other"), "other has an endpoint: {pruned}");
    let left = docker_ok(&d, &["network", "ls", "--format", "{{.Name}}"]);
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    assert_eq!(left, ["bridge", "host", "none", "other"]);
}
