//! `netd service`: a virtual IP on one network whose new connections are
//! balanced round-robin (in eBPF) over the service's replicas.

use clap::{Args, Subcommand};

use super::Outcome;
use super::client::{Client, encode_component};
use super::output::{err, out, pretty_json, short_id, table};
use crate::api::wire::{ServiceCreateRequest, ServiceCreateResponse, ServiceJson};

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service and start its replicas (NAME.1..NAME.N running CMD).
    Create(CreateArgs),
    /// List services.
    #[command(visible_alias = "list")]
    Ls {
        /// Only show service ids.
        #[arg(short, long)]
        quiet: bool,
        /// `table` (default) or `json` (one object per line).
        #[arg(long)]
        format: Option<String>,
    },
    /// Show services in detail (JSON).
    Inspect {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Set the number of replicas: NAME=N...
    Scale {
        #[arg(required = true, value_name = "NAME=N")]
        targets: Vec<String>,
    },
    /// Remove services and their replicas.
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The network the service's virtual IP and replicas live on.
    #[arg(long, required = true)]
    pub network: String,
    /// Replicas netd runs.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Publish a port of the service: [IP:][HOSTPORT:]PORT[/udp].
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    pub name: String,
    /// What each replica runs (after `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

pub async fn run(client: &Client, cmd: ServiceCommand) -> Outcome {
    match cmd {
        ServiceCommand::Create(a) => {
            let body = ServiceCreateRequest {
                name: a.name,
                network: a.network,
                replicas: a.replicas,
                ports: a.publish,
                cmd: a.cmd,
            };
            match client
                .post::<_, ServiceCreateResponse>("/services/create", &body)
                .await
            {
                Ok(r) => {
                    out(&format!("{}\n", r.id));
                    Outcome::Exit(0)
                }
                Err(e) => e.into(),
            }
        }
        ServiceCommand::Ls { quiet, format } => ls(client, quiet, format.as_deref()).await,
        ServiceCommand::Inspect { services } => {
            let mut found = Vec::new();
            let mut failed = false;
            for s in &services {
                match get(client, s).await {
                    Ok(j) => found.push(j),
                    Err(e) => {
                        err(&e.to_string());
                        failed = true;
                    }
                }
            }
            out(&pretty_json(&found));
            Outcome::Exit(failed.into())
        }
        ServiceCommand::Scale { targets } => {
            let mut failed = false;
            for t in &targets {
                let Some((name, n)) = t.split_once('=').filter(|(_, n)| n.parse::<u32>().is_ok())
                else {
                    err(&format!("invalid scale specifier '{t}': use NAME=REPLICAS"));
                    failed = true;
                    continue;
                };
                let path = format!("/services/{}/scale?replicas={n}", encode_component(name));
                match client.post::<_, ServiceJson>(&path, &()).await {
                    Ok(_) => out(&format!("{name} scaled to {n}\n")),
                    Err(e) => {
                        err(&e.to_string());
                        failed = true;
                    }
                }
            }
            Outcome::Exit(failed.into())
        }
        ServiceCommand::Rm { services } => {
            let mut failed = false;
            for s in &services {
                match client
                    .delete(&format!("/services/{}", encode_component(s)))
                    .await
                {
                    Ok(()) => out(&format!("{s}\n")),
                    Err(e) => {
                        err(&e.to_string());
                        failed = true;
                    }
                }
            }
            Outcome::Exit(failed.into())
        }
    }
}

async fn get(client: &Client, key: &str) -> super::client::Result<ServiceJson> {
    client
        .get(&format!("/services/{}", encode_component(key)))
        .await
}

async fn ls(client: &Client, quiet: bool, format: Option<&str>) -> Outcome {
    let format = format.unwrap_or("table");
    if format != "table" && format != "json" {
        err(&format!(
            "unsupported --format {format:?}: use \"table\" or \"json\""
        ));
        return Outcome::Exit(1);
    }
    let list: Vec<ServiceJson> = match client.get("/services").await {
        Ok(l) => l,
        Err(e) => return e.into(),
    };
    if quiet {
        out(&list
            .iter()
            .map(|s| format!("{}\n", short_id(&s.id)))
            .collect::<String>());
    } else if format == "json" {
        for s in &list {
            out(&format!(
                "{}\n",
                serde_json::to_string(s).expect("plain data")
            ));
        }
    } else {
        out(&ls_table(&list));
    }
    Outcome::Exit(0)
}

fn ls_table(list: &[ServiceJson]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let running = s.tasks.iter().filter(|t| t.running).count();
            let ports: Vec<String> = s
                .ports
                .iter()
                .flat_map(|(port, bs)| {
                    bs.iter()
                        .map(move |b| format!("{}:{}->{port}", b.host_ip, b.host_port))
                })
                .collect();
            vec![
                short_id(&s.id).to_string(),
                s.name.clone(),
                s.network.clone(),
                s.virtual_ip.clone(),
                format!("{running}/{}", s.replicas),
                ports.join(", "),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "NETWORK", "VIRTUAL IP", "REPLICAS", "PORTS"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::ServiceTaskJson;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn create_takes_the_command_after_double_dash() {
        let cli = Cli::parse_from([
            "netd",
            "service",
            "create",
            "--network",
            "n",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            "web",
            "--",
            "sh",
            "-c",
            "echo hi",
        ]);
        let Command::Service(ServiceCommand::Create(a)) = cli.command else {
            panic!()
        };
        assert_eq!(a.replicas, 3);
        assert_eq!(a.publish, vec!["8080:80"]);
        assert_eq!(a.cmd, vec!["sh", "-c", "echo hi"]);
    }

    #[test]
    fn table_shows_running_over_desired() {
        let s = ServiceJson {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            network: "n".into(),
            virtual_ip: "10.0.0.5".into(),
            replicas: 3,
            tasks: vec![
                ServiceTaskJson {
                    running: true,
                    ..Default::default()
                },
                ServiceTaskJson::default(),
            ],
            ..Default::default()
        };
        let t = ls_table(&[s]);
        assert!(t.contains("0123456789ab   web"), "{t}");
        assert!(t.contains("1/3"), "{t}");
    }
}
