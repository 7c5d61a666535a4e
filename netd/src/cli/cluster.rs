//! `netd cluster ls`: the hosts of the cluster, up or down, with their
//! overlay endpoints (as the cluster store knows them).

use clap::Subcommand;

use super::Outcome;
use super::client::Client;
use super::output::{err, out, pretty_json, table};
use crate::api::wire::ClusterHostJson;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the hosts of the cluster.
    Ls {
        /// `table` (default) or `json`.
        #[arg(long)]
        format: Option<String>,
    },
}

pub async fn run(client: &Client, cmd: ClusterCommand) -> Outcome {
    let ClusterCommand::Ls { format } = cmd;
    let format = format.as_deref().unwrap_or("table");
    if format != "table" && format != "json" {
        err(&format!(
            "unsupported --format {format:?}: use \"table\" or \"json\""
        ));
        return Outcome::Exit(1);
    }
    let hosts: Vec<ClusterHostJson> = match client.get("/cluster/hosts").await {
        Ok(h) => h,
        Err(e) => return e.into(),
    };
    if format == "json" {
        out(&pretty_json(&hosts));
        return Outcome::Exit(0);
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                if h.is_self {
                    format!("{} *", h.id)
                } else {
                    h.id.clone()
                },
                h.address.clone(),
                h.state.clone(),
                if h.state == "up" {
                    "now".into()
                } else if h.last_seen.is_empty() {
                    "-".into()
                } else {
                    h.last_seen.clone()
                },
                h.endpoints.to_string(),
            ]
        })
        .collect();
    out(&table(
        &["HOST", "ADDRESS", "STATE", "LAST SEEN", "ENDPOINTS"],
        &rows,
    ));
    Outcome::Exit(0)
}
