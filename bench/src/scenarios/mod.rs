//! One module per scenario of the benchmark issue; the numbers are the
//! issue's, so the table reads the same as the issue.

pub mod c2c;
pub mod control;
pub mod crosshost;
mod edge;
pub mod fleet;
mod floor;
pub mod load;
pub mod masq;
pub mod natpps;
pub mod progcost;
pub mod publish;
pub mod services;

use std::time::Duration;

use anyhow::Result;

use crate::cmd::{self, say};
use crate::report::{Better, Report};

/// What one measurement yields: (figure, unit, better, value) rows.
type Rows = Vec<(&'static str, &'static str, Better, f64)>;

/// Once more after a pause if a measurement failed (a server still busy
/// with the previous client); a second failure means a broken path.
fn retry(mut f: impl FnMut() -> Result<Rows>) -> Result<Rows> {
    match f() {
        Ok(rows) => Ok(rows),
        Err(first) => {
            // Ctrl-C kills the client too: that is no reason to retry.
            cmd::check_interrupted()?;
            say!("    retrying after: {first:#}");
            std::thread::sleep(Duration::from_secs(1));
            f()
        }
    }
}

/// Figures the bench does not measure yet: rows in the table, so nobody
/// mistakes a missing figure for a forgotten one. Move a row into a real
/// scenario when it is measured.
pub fn not_yet(report: &mut Report) {
    const ROWS: &[(u8, &str, &str)] = &[];
    for (scenario, name, why) in ROWS {
        report.not_yet(*scenario, name, why);
    }
}
