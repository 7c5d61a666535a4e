//! `netd container ...`: containers here are network sandboxes (a named
//! netns plus its endpoints), optionally running one background command.
//! Flags and output follow `docker container ...` where the concepts match.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Outcome;
use super::client::{Client, encode_component};
use super::output::{ellipsis, err, out, pretty_json, short_id, table};
use crate::api::wire::{ContainerCreateRequest, ContainerCreateResponse, ContainerJson};

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create a container (a network sandbox).
    Create(CreateArgs),
    /// Create a container and start CMD inside it in the background.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// The command and its arguments (after `--`).
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        cmd: Vec<String>,
    },
    /// List containers.
    #[command(visible_aliases = ["list", "ps"])]
    Ls {
        /// Only show container ids.
        #[arg(short, long)]
        quiet: bool,
        /// `table` (default) or `json` (one object per line).
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate ids or commands.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show containers in detail (JSON).
    Inspect {
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Remove containers.
    #[command(visible_alias = "remove")]
    Rm {
        /// Stop the running command first.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Run a command inside a container's network namespace, attached.
    Exec {
        container: String,
        /// The command and its arguments (after `--`).
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        cmd: Vec<String>,
    },
    /// List a container's published ports.
    Port { container: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// bridge (default), none, host, container:NAME or a network.
    #[arg(long)]
    pub network: Option<String>,
    /// Static IPv4 address on that network.
    #[arg(long)]
    pub ip: Option<String>,
    /// Network-scoped name (repeatable).
    #[arg(long)]
    pub alias: Vec<String>,
    /// Join a service as one of its backends (repeatable).
    #[arg(long)]
    pub service: Vec<String>,
    /// Publish a port: [IP:][HOSTPORT:]PORT[/udp] (no HOSTPORT: a free one).
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Plumb the endpoints into this existing network namespace (a path,
    /// e.g. /var/run/netns/NAME or /proc/PID/ns/net) instead of one netd
    /// makes; netd never deletes it.
    #[arg(long, value_name = "PATH")]
    pub netns: Option<String>,
    pub name: String,
}

pub async fn run(client: &Client, cmd: ContainerCommand) -> Outcome {
    match cmd {
        ContainerCommand::Create(a) => create(client, a, None).await,
        ContainerCommand::Run { create: a, cmd } => create(client, a, Some(cmd)).await,
        ContainerCommand::Ls {
            quiet,
            format,
            no_trunc,
        } => ls(client, quiet, format.as_deref(), no_trunc).await,
        ContainerCommand::Inspect { containers } => inspect(client, &containers).await,
        ContainerCommand::Rm { force, containers } => rm(client, force, &containers).await,
        ContainerCommand::Exec { container, cmd } => exec(client, &container, cmd).await,
        ContainerCommand::Port { container } => match get(client, &container).await {
            Ok(c) => {
                out(&port_lines(&c));
                Outcome::Exit(0)
            }
            Err(e) => e.into(),
        },
    }
}

/// `docker port`'s format: `80/tcp -> 0.0.0.0:8080`, one line a binding.
fn port_lines(c: &ContainerJson) -> String {
    c.network_settings
        .ports
        .iter()
        .flat_map(|(port, bindings)| {
            bindings
                .iter()
                .map(move |b| format!("{port} -> {}:{}\n", b.host_ip, b.host_port))
        })
        .collect()
}

/// The create request for `create` / `run`, or the reason not to send one.
pub fn create_request(
    a: CreateArgs,
    cmd: Option<Vec<String>>,
) -> Result<(String, ContainerCreateRequest), String> {
    Ok((
        a.name,
        ContainerCreateRequest {
            network_mode: a.network,
            ip_address: a.ip,
            aliases: a.alias,
            cmd,
            ports: a.publish,
            services: a.service,
            netns: a.netns,
            ..Default::default()
        },
    ))
}

async fn create(client: &Client, a: CreateArgs, cmd: Option<Vec<String>>) -> Outcome {
    let (name, body) = match create_request(a, cmd) {
        Ok(r) => r,
        Err(e) => {
            err(&e);
            return Outcome::Exit(1);
        }
    };
    let path = format!("/containers/create?name={}", encode_component(&name));
    match client
        .post::<_, ContainerCreateResponse>(&path, &body)
        .await
    {
        Ok(r) => {
            out(&format!("{}\n", r.id));
            for w in &r.warnings {
                err(&format!("WARNING: {w}"));
            }
            Outcome::Exit(0)
        }
        Err(e) => e.into(),
    }
}

async fn get(client: &Client, key: &str) -> super::client::Result<ContainerJson> {
    client
        .get(&format!("/containers/{}/json", encode_component(key)))
        .await
}

/// The networks a container is on, and its addresses, for the table.
fn networks_and_ips(c: &ContainerJson) -> (String, String) {
    let nets = &c.network_settings.networks;
    let names = if nets.is_empty() {
        c.network_mode.clone()
    } else {
        nets.keys().cloned().collect::<Vec<_>>().join(",")
    };
    let ips: Vec<&str> = nets
        .values()
        .map(|e| e.ip_address.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    (names, ips.join(","))
}

/// Docker's COMMAND column: quoted, cut to 20 characters unless asked not to.
fn command_column(cmd: &[String], no_trunc: bool) -> String {
    if cmd.is_empty() {
        return String::new();
    }
    let joined = cmd.join(" ");
    let shown = if no_trunc {
        joined
    } else {
        ellipsis(&joined, 20)
    };
    format!("\"{shown}\"")
}

pub fn ls_table(list: &[ContainerJson], no_trunc: bool) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let (nets, ips) = networks_and_ips(c);
            let id = if no_trunc {
                c.id.clone()
            } else {
                short_id(&c.id).to_string()
            };
            vec![
                id,
                c.name.clone(),
                nets,
                ips,
                c.state.status.clone(),
                command_column(&c.cmd, no_trunc),
            ]
        })
        .collect();
    table(
        &[
            "CONTAINER ID",
            "NAME",
            "NETWORK",
            "IP ADDRESS",
            "STATUS",
            "COMMAND",
        ],
        &rows,
    )
}

async fn ls(client: &Client, quiet: bool, format: Option<&str>, no_trunc: bool) -> Outcome {
    let format = format.unwrap_or("table");
    if format != "table" && format != "json" {
        err(&format!(
            "unsupported --format {format:?}: use \"table\" or \"json\""
        ));
        return Outcome::Exit(1);
    }
    let mut list: Vec<ContainerJson> = match client.get("/containers/json").await {
        Ok(l) => l,
        Err(e) => return e.into(),
    };
    list.sort_by(|a, b| a.name.cmp(&b.name));
    if quiet {
        let ids: String = list
            .iter()
            .map(|c| {
                let id = if no_trunc { &c.id[..] } else { short_id(&c.id) };
                format!("{id}\n")
            })
            .collect();
        out(&ids);
    } else if format == "json" {
        let lines: String = list
            .iter()
            .map(|c| {
                let (nets, ips) = networks_and_ips(c);
                let v = serde_json::json!({
                    "Command": c.cmd.join(" "),
                    "ID": if no_trunc { c.id.clone() } else { short_id(&c.id).to_string() },
                    "IPAddress": ips,
                    "Name": c.name,
                    "Networks": nets,
                    "Status": c.state.status,
                });
                v.to_string() + "\n"
            })
            .collect();
        out(&lines);
    } else {
        out(&ls_table(&list, no_trunc));
    }
    Outcome::Exit(0)
}

async fn inspect(client: &Client, names: &[String]) -> Outcome {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match get(client, name).await {
            Ok(c) => found.push(c),
            Err(e) => errors.push(e),
        }
    }
    out(&pretty_json(&found));
    for e in &errors {
        err(&e.to_string());
    }
    Outcome::Exit(if errors.is_empty() { 0 } else { 1 })
}

async fn rm(client: &Client, force: bool, names: &[String]) -> Outcome {
    let mut failed = false;
    for name in names {
        let mut path = format!("/containers/{}", encode_component(name));
        if force {
            path.push_str("?force=1");
        }
        match client.delete(&path).await {
            Ok(()) => out(&format!("{name}\n")),
            Err(e) => {
                err(&e.to_string());
                failed = true;
            }
        }
    }
    Outcome::Exit(u8::from(failed))
}

/// Looks the container up, then hands the command to `main`, which runs it
/// once the runtime is gone.
async fn exec(client: &Client, key: &str, cmd: Vec<String>) -> Outcome {
    let c = match get(client, key).await {
        Ok(c) => c,
        Err(e) => return e.into(),
    };
    match exec_netns(&c) {
        Ok(netns) => Outcome::Exec { netns, cmd },
        Err(e) => {
            err(&e);
            Outcome::Exit(1)
        }
    }
}

/// Where `exec` runs: the sandbox's namespace, or the host's for
/// `--network host`. An empty sandbox path for anything else means the
/// namespace is gone, and running in the host's would be a surprise.
fn exec_netns(c: &ContainerJson) -> Result<Option<PathBuf>, String> {
    if !c.sandbox_key.is_empty() {
        return Ok(Some(PathBuf::from(&c.sandbox_key)));
    }
    if c.network_mode == "host" {
        return Ok(None);
    }
    Err(format!(
        "container {} has no network namespace to run in",
        c.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{ContainerState, EndpointSettings, NetworkSettings, PortBindingJson};
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::collections::BTreeMap;

    fn ctr(args: &[&str]) -> ContainerCommand {
        let cli = Cli::try_parse_from(["netd", "container"].iter().chain(args.iter())).unwrap();
        match cli.command {
            Command::Container(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_flags_parse() {
        let ContainerCommand::Create(a) = ctr(&[
            "create",
            "--network",
            "front",
            "--ip",
            "10.1.0.5",
            "--alias",
            "a",
            "--alias",
            "b",
            "web",
        ]) else {
            panic!()
        };
        let (name, r) = create_request(a, None).unwrap();
        assert_eq!(name, "web");
        assert_eq!(r.network_mode.as_deref(), Some("front"));
        assert_eq!(r.ip_address.as_deref(), Some("10.1.0.5"));
        assert_eq!(r.aliases, vec!["a", "b"]);
        assert_eq!(r.cmd, None);
    }

    #[test]
    fn publish_flags_go_into_the_request() {
        let ContainerCommand::Create(a) = ctr(&["create", "-p", "8080:80", "-p", "53/udp", "web"])
        else {
            panic!()
        };
        let (_, req) = create_request(a, None).unwrap();
        assert_eq!(req.ports, vec!["8080:80", "53/udp"]);
    }

    #[test]
    fn run_takes_the_command_after_double_dash() {
        let ContainerCommand::Run { create, cmd } =
            ctr(&["run", "--network", "n", "web", "--", "sleep", "-x", "100"])
        else {
            panic!()
        };
        assert_eq!(create.name, "web");
        assert_eq!(create.network.as_deref(), Some("n"));
        assert_eq!(cmd, vec!["sleep", "-x", "100"]);
        // Flags after the name still belong to netd until the command starts.
        let ContainerCommand::Run { create, cmd } =
            ctr(&["run", "web", "--ip", "10.0.0.9", "--", "ls", "-l"])
        else {
            panic!()
        };
        assert_eq!(create.ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(cmd, vec!["ls", "-l"]);
        assert!(Cli::try_parse_from(["netd", "container", "run", "web"]).is_err());
    }

    #[test]
    fn exec_takes_the_command_after_double_dash() {
        let ContainerCommand::Exec { container, cmd } =
            ctr(&["exec", "web", "--", "ip", "-br", "addr"])
        else {
            panic!()
        };
        assert_eq!(container, "web");
        assert_eq!(cmd, vec!["ip", "-br", "addr"]);
    }

    #[test]
    fn ls_inspect_rm_parse() {
        assert!(matches!(
            ctr(&["ls", "-q"]),
            ContainerCommand::Ls { quiet: true, .. }
        ));
        assert!(matches!(
            ctr(&["ps"]),
            ContainerCommand::Ls { quiet: false, .. }
        ));
        let ContainerCommand::Rm { force, containers } = ctr(&["rm", "-f", "a", "b"]) else {
            panic!()
        };
        assert!(force);
        assert_eq!(containers, vec!["a", "b"]);
        assert!(matches!(
            ctr(&["inspect", "a"]),
            ContainerCommand::Inspect { .. }
        ));
        assert!(matches!(ctr(&["port", "a"]), ContainerCommand::Port { .. }));
    }

    fn sample() -> ContainerJson {
        ContainerJson {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            network_mode: "front".into(),
            sandbox_key: "/run/netns/netd-web".into(),
            state: ContainerState {
                status: "running".into(),
                running: true,
                pid: 7,
            },
            cmd: vec![
                "python3".into(),
                "-m".into(),
                "http.server".into(),
                "8080".into(),
            ],
            network_settings: NetworkSettings {
                sandbox_key: "/run/netns/netd-web".into(),
                networks: BTreeMap::from([(
                    "front".to_string(),
                    EndpointSettings {
                        ip_address: "10.7.0.2".into(),
                        ..Default::default()
                    },
                )]),
                ports: BTreeMap::from([(
                    "80/tcp".to_string(),
                    vec![PortBindingJson {
                        host_ip: "0.0.0.0".into(),
                        host_port: "8080".into(),
                    }],
                )]),
            },
            ..Default::default()
        }
    }

    #[test]
    fn port_prints_dockers_format() {
        assert_eq!(port_lines(&sample()), "80/tcp -> 0.0.0.0:8080\n");
    }

    #[test]
    fn ls_table_reads_like_docker_ps() {
        let t = ls_table(&[sample()], false);
        assert_eq!(
            t,
            "CONTAINER ID   NAME      NETWORK   IP ADDRESS   STATUS    COMMAND\n\
             0123456789ab   web       front     10.7.0.2     running   \"python3 -m http.ser…\"\n"
        );
    }

    #[test]
    fn exec_runs_in_the_sandbox_or_the_host() {
        let c = sample();
        assert_eq!(
            exec_netns(&c).unwrap(),
            Some(PathBuf::from("/run/netns/netd-web"))
        );
        let mut h = sample();
        h.sandbox_key.clear();
        h.network_mode = "host".into();
        assert_eq!(exec_netns(&h).unwrap(), None);
        let mut gone = sample();
        gone.sandbox_key.clear();
        assert!(exec_netns(&gone).is_err());
    }
}
