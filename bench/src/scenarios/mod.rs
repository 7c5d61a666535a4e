//! One module per scenario of the benchmark issue; the numbers are the
//! issue's, so the table reads the same as the issue.

pub mod c2c;
pub mod control;
mod edge;
mod floor;
pub mod masq;
pub mod progcost;
pub mod publish;
pub mod services;

use crate::report::Report;

/// Figures the bench does not measure yet: rows in the table, so nobody
/// mistakes a missing figure for a forgotten one. Move a row into a real
/// scenario when it is measured.
pub fn not_yet(report: &mut Report) {
    const ROWS: &[(u8, &str, &str)] = &[(
        6,
        "packet rate through the NAT path",
        "the bench's packet generator does not drive the uplink yet",
    )];
    for (scenario, name, why) in ROWS {
        report.not_yet(*scenario, name, why);
    }
}
