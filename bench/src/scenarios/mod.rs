//! One module per scenario of the benchmark issue; the numbers are the
//! issue's, so the table reads the same as the issue.

pub mod c2c;
pub mod control;
mod floor;
pub mod progcost;

use crate::report::Report;

/// Scenarios whose netd feature is not built yet: rows in the table, so
/// nobody mistakes a missing figure for a forgotten one. Move a row into a
/// real scenario when its feature lands.
pub fn not_yet(report: &mut Report) {
    const ROWS: &[(u8, &str, &str)] = &[
        (
            2,
            "published port from an outside client (throughput, latency, connection rate)",
            "netd has no published ports yet",
        ),
        (
            3,
            "outbound masquerade (throughput, connection rate)",
            "netd has no masquerade yet",
        ),
        (
            4,
            "services: connection rate and latency via the VIP at 1 / 100 / 1,000 / 10,000 services",
            "netd has no services yet",
        ),
        (
            5,
            "per-packet cost of the NAT and service paths",
            "those program paths do not exist yet (measured as soon as they do)",
        ),
        (6, "packet rate through the NAT path", "netd has no NAT yet"),
    ];
    for (scenario, name, why) in ROWS {
        report.not_yet(*scenario, name, why);
    }
}
