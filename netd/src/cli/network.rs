//! `netd network ...`: the same flags, output and messages as
//! `docker network ...`. Values are sent as typed by the user; the daemon
//! validates them (one place for the rules and their messages).

use std::collections::BTreeMap;
use std::io::BufRead;

use clap::{Args, Subcommand};

use super::Outcome;
use super::client::{Client, encode_component};
use super::output::{err, go_time, out, pretty_json, short_id, table};
use crate::api::wire::{
    EndpointConfig, EndpointIpamConfig, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest, NetworkResource,
    NetworksPruneResponse,
};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Create a network.
    Create(CreateArgs),
    /// Show networks in detail (Docker-compatible JSON).
    Inspect {
        #[arg(required = true, value_name = "NETWORK")]
        networks: Vec<String>,
    },
    /// Remove networks.
    #[command(visible_alias = "remove")]
    Rm {
        /// Do not fail if a network does not exist.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "NETWORK")]
        networks: Vec<String>,
    },
    /// Remove all custom networks no container uses.
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
        /// Only prune matching networks (`label=k` or `label=k=v`).
        #[arg(long, value_name = "FILTER")]
        filter: Vec<String>,
    },
    /// Connect a container to a network.
    Connect {
        /// IPv4 address for the container on this network.
        #[arg(long)]
        ip: Option<String>,
        /// Network-scoped name for the container (repeatable).
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Disconnect even if the container is gone.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only show network ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output (`driver=bridge`, `name=..`, `id=..`, `label=..`,
    /// `type=custom|builtin`, `scope=..`, `dangling=true`).
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// `table` (default) or `json` (one object per line, as Docker).
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate ids.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// bridge, macvlan or overlay.
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR form.
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway address inside the subnet.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Allocate container addresses from this sub-range.
    #[arg(long)]
    pub ip_range: Option<String>,
    /// No outside access.
    #[arg(long)]
    pub internal: bool,
    /// Allow manual container attachment.
    #[arg(long)]
    pub attachable: bool,
    /// Driver option `k=v` (repeatable), e.g. `parent=eth0` for macvlan.
    #[arg(short = 'o', long = "opt", value_name = "K=V")]
    pub opt: Vec<String>,
    /// Label `k=v` (repeatable).
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,
    pub name: String,
}

pub async fn run(client: &Client, cmd: NetworkCommand) -> Outcome {
    match cmd {
        NetworkCommand::Ls(a) => ls(client, a).await,
        NetworkCommand::Create(a) => create(client, a).await,
        NetworkCommand::Inspect { networks } => inspect(client, &networks).await,
        NetworkCommand::Rm { force, networks } => rm(client, force, &networks).await,
        NetworkCommand::Prune { force, filter } => prune(client, force, &filter).await,
        NetworkCommand::Connect {
            ip,
            alias,
            network,
            container,
        } => {
            let body = NetworkConnectRequest {
                container,
                endpoint_config: Some(EndpointConfig {
                    ipam_config: ip.map(|ip| EndpointIpamConfig {
                        ipv4_address: ip,
                        ipv6_address: String::new(),
                    }),
                    aliases: alias,
                }),
            };
            let path = format!("/networks/{}/connect", encode_component(&network));
            done(client.post_empty(&path, &body).await)
        }
        NetworkCommand::Disconnect {
            force,
            network,
            container,
        } => {
            let body = NetworkDisconnectRequest { container, force };
            let path = format!("/networks/{}/disconnect", encode_component(&network));
            done(client.post_empty(&path, &body).await)
        }
    }
}

fn done(r: super::client::Result<()>) -> Outcome {
    match r {
        Ok(()) => Outcome::Exit(0),
        Err(e) => e.into(),
    }
}

/// `--filter k=v` flags as Docker's `filters` JSON (`{"k":{"v":true}}`),
/// percent-encoded for the query string; `None` when there are none.
pub fn filters_query(flags: &[String]) -> Result<Option<String>, String> {
    if flags.is_empty() {
        return Ok(None);
    }
    let mut map: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in flags {
        let Some((k, v)) = f.split_once('=') else {
            return Err(format!(
                "invalid argument \"{f}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"
            ));
        };
        map.entry(k.trim().to_ascii_lowercase())
            .or_default()
            .insert(v.trim().to_string(), true);
    }
    let json = serde_json::to_string(&map).expect("maps of strings serialize");
    Ok(Some(encode_component(&json)))
}

/// `k=v` flags as a map; a bare `k` maps to "" (Docker's `MapOpts`).
pub fn kv_map(flags: &[String], what: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for f in flags {
        let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
        if k.trim().is_empty() {
            return Err(format!("invalid {what} '{f}': empty name"));
        }
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

async fn ls(client: &Client, a: LsArgs) -> Outcome {
    let format = a.format.as_deref().unwrap_or("table");
    if format != "table" && format != "json" {
        err(&format!(
            "unsupported --format {format:?}: use \"table\" or \"json\""
        ));
        return Outcome::Exit(1);
    }
    let path = match filters_query(&a.filter) {
        Ok(Some(q)) => format!("/networks?filters={q}"),
        Ok(None) => "/networks".to_string(),
        Err(e) => {
            err(&e);
            return Outcome::Exit(1);
        }
    };
    let mut nets: Vec<NetworkResource> = match client.get(&path).await {
        Ok(n) => n,
        Err(e) => return e.into(),
    };
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    let id = |n: &NetworkResource| {
        if a.no_trunc {
            n.id.clone()
        } else {
            short_id(&n.id).to_string()
        }
    };
    if a.quiet {
        out(&nets.iter().map(|n| id(n) + "\n").collect::<String>());
    } else if format == "json" {
        let lines: String = nets
            .iter()
            .map(|n| serde_json::to_string(&ls_json(n, id(n))).expect("json") + "\n")
            .collect();
        out(&lines);
    } else {
        let rows: Vec<Vec<String>> = nets
            .iter()
            .map(|n| vec![id(n), n.name.clone(), n.driver.clone(), n.scope.clone()])
            .collect();
        out(&table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows));
    }
    Outcome::Exit(0)
}

/// One line of `network ls --format json`: Docker's formatter fields, all
/// strings, keys sorted (as Go marshals its map).
fn ls_json(n: &NetworkResource, id: String) -> serde_json::Value {
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    serde_json::json!({
        "CreatedAt": go_time(&n.created),
        "Driver": n.driver,
        "ID": id,
        "IPv4": n.enable_ipv4.to_string(),
        "IPv6": n.enable_ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": labels.join(","),
        "Name": n.name,
        "Scope": n.scope,
    })
}

/// The request `network create` sends, in the shape the docker CLI uses.
pub fn create_request(a: CreateArgs) -> Result<NetworkCreateRequest, String> {
    let config = if a.subnet.is_some() || a.gateway.is_some() || a.ip_range.is_some() {
        vec![IpamConfig {
            subnet: a.subnet.unwrap_or_default(),
            ip_range: a.ip_range.unwrap_or_default(),
            gateway: a.gateway.unwrap_or_default(),
            aux_addresses: BTreeMap::new(),
        }]
    } else {
        Vec::new()
    };
    Ok(NetworkCreateRequest {
        name: a.name,
        driver: a.driver,
        ipam: Some(Ipam {
            driver: "default".into(),
            options: BTreeMap::new(),
            config,
        }),
        internal: a.internal,
        attachable: a.attachable,
        options: kv_map(&a.opt, "option")?,
        labels: kv_map(&a.label, "label")?,
        ..Default::default()
    })
}

async fn create(client: &Client, a: CreateArgs) -> Outcome {
    let body = match create_request(a) {
        Ok(b) => b,
        Err(e) => {
            err(&e);
            return Outcome::Exit(1);
        }
    };
    match client
        .post::<_, NetworkCreateResponse>("/networks/create", &body)
        .await
    {
        Ok(r) => {
            out(&format!("{}\n", r.id));
            if !r.warning.is_empty() {
                err(&format!("WARNING: {}", r.warning));
            }
            Outcome::Exit(0)
        }
        Err(e) => e.into(),
    }
}

/// Prints what was found as one JSON array (`[]` if nothing), then the
/// errors; fails if any name failed, as `docker network inspect` does.
async fn inspect(client: &Client, names: &[String]) -> Outcome {
    let mut found: Vec<NetworkResource> = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match client
            .get::<NetworkResource>(&format!("/networks/{}", encode_component(name)))
            .await
        {
            Ok(n) => found.push(n),
            Err(e) => errors.push(e),
        }
    }
    out(&pretty_json(&found));
    for e in &errors {
        err(&e.to_string());
    }
    Outcome::Exit(if errors.is_empty() { 0 } else { 1 })
}

/// Removes each network in turn, printing its name; goes on past failures
/// and fails at the end if any failed.
async fn rm(client: &Client, force: bool, names: &[String]) -> Outcome {
    let mut failed = false;
    for name in names {
        match client
            .delete(&format!("/networks/{}", encode_component(name)))
            .await
        {
            Ok(()) => out(&format!("{name}\n")),
            Err(e) if force && e.status() == Some(404) => {}
            Err(e) => {
                err(&e.to_string());
                failed = true;
            }
        }
    }
    Outcome::Exit(u8::from(failed))
}

const PRUNE_WARNING: &str = "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ";

/// Reads the answer to a `[y/N]` prompt; anything but y/yes (including end
/// of input) is no.
fn confirm(input: &mut impl BufRead) -> bool {
    let mut line = String::new();
    if input.read_line(&mut line).is_err() {
        return false;
    }
    let answer = line.trim();
    answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes")
}

async fn prune(client: &Client, force: bool, filter: &[String]) -> Outcome {
    let path = match filters_query(filter) {
        Ok(Some(q)) => format!("/networks/prune?filters={q}"),
        Ok(None) => "/networks/prune".to_string(),
        Err(e) => {
            err(&e);
            return Outcome::Exit(1);
        }
    };
    if !force {
        out(PRUNE_WARNING);
        if !confirm(&mut std::io::stdin().lock()) {
            return Outcome::Exit(0);
        }
    }
    let report: NetworksPruneResponse = match client.send("POST", &path, None).await {
        Ok(body) => match super::client::decode(&body) {
            Ok(r) => r,
            Err(e) => return e.into(),
        },
        Err(e) => return e.into(),
    };
    out(&prune_report(&report.networks_deleted));
    Outcome::Exit(0)
}

/// Docker prints the list and then an empty line; nothing when nothing was
/// removed.
fn prune_report(deleted: &[String]) -> String {
    if deleted.is_empty() {
        return String::new();
    }
    let mut s = String::from("Deleted Networks:\n");
    for name in deleted {
        s.push_str(name);
        s.push('\n');
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn net(args: &[&str]) -> NetworkCommand {
        let cli = Cli::try_parse_from(["netd", "network"].iter().chain(args.iter())).unwrap();
        match cli.command {
            Command::Network(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ls_flags_parse() {
        let NetworkCommand::Ls(a) = net(&["ls", "-q", "--filter", "driver=bridge", "-f", "name=x"])
        else {
            panic!()
        };
        assert!(a.quiet);
        assert_eq!(a.filter, vec!["driver=bridge", "name=x"]);
        let NetworkCommand::Ls(a) = net(&["list", "--format", "json", "--no-trunc"]) else {
            panic!()
        };
        assert_eq!(a.format.as_deref(), Some("json"));
        assert!(a.no_trunc);
    }

    #[test]
    fn filters_become_dockers_json() {
        let q = filters_query(&["driver=bridge".into(), "name=a".into(), "name=b".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            q,
            encode_component(r#"{"driver":{"bridge":true},"name":{"a":true,"b":true}}"#)
        );
        assert_eq!(filters_query(&[]).unwrap(), None);
        let e = filters_query(&["oops".into()]).unwrap_err();
        assert!(
            e.contains("bad format of filter (expected name=value)"),
            "{e}"
        );
        // Labels keep their own '=' in the value.
        let q = filters_query(&["label=a=b".into()]).unwrap().unwrap();
        assert_eq!(q, encode_component(r#"{"label":{"a=b":true}}"#));
    }

    #[test]
    fn create_flags_build_the_docker_request() {
        let NetworkCommand::Create(a) = net(&[
            "create",
            "-d",
            "macvlan",
            "--subnet",
            "10.1.0.0/16",
            "--gateway",
            "10.1.0.1",
            "--ip-range",
            "10.1.2.0/24",
            "--internal",
            "--attachable",
            "-o",
            "parent=eth0",
            "--label",
            "team=web",
            "--label",
            "flag",
            "n1",
        ]) else {
            panic!()
        };
        let r = create_request(a).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["Name"], "n1");
        assert_eq!(v["Driver"], "macvlan");
        assert_eq!(
            v["IPAM"],
            serde_json::json!({"Driver": "default", "Options": {}, "Config": [
                {"Subnet": "10.1.0.0/16", "IPRange": "10.1.2.0/24", "Gateway": "10.1.0.1"}
            ]})
        );
        assert_eq!(v["Internal"], true);
        assert_eq!(v["Attachable"], true);
        assert_eq!(v["Options"]["parent"], "eth0");
        assert_eq!(v["Labels"], serde_json::json!({"team": "web", "flag": ""}));
        // What netd sends is what the API accepts.
        let spec =
            crate::api::networks::network_spec(r, &crate::drivers::Drivers::builtin()).unwrap();
        assert_eq!(spec.subnet, Some("10.1.0.0/16".parse().unwrap()));
    }

    #[test]
    fn create_defaults_to_bridge_and_no_pool() {
        let NetworkCommand::Create(a) = net(&["create", "n2"]) else {
            panic!()
        };
        let r = create_request(a).unwrap();
        assert_eq!(r.driver, "bridge");
        assert!(r.ipam.unwrap().config.is_empty());
    }

    #[test]
    fn rm_prune_connect_disconnect_parse() {
        let NetworkCommand::Rm { force, networks } = net(&["rm", "-f", "a", "b"]) else {
            panic!()
        };
        assert!(force);
        assert_eq!(networks, vec!["a", "b"]);
        let NetworkCommand::Prune { force, filter } = net(&["prune", "-f", "--filter", "label=x"])
        else {
            panic!()
        };
        assert!(force);
        assert_eq!(filter, vec!["label=x"]);
        let NetworkCommand::Connect {
            ip,
            alias,
            network,
            container,
        } = net(&[
            "connect", "--ip", "10.1.0.9", "--alias", "a1", "--alias", "a2", "n", "c",
        ])
        else {
            panic!()
        };
        assert_eq!(ip.as_deref(), Some("10.1.0.9"));
        assert_eq!(alias, vec!["a1", "a2"]);
        assert_eq!((network.as_str(), container.as_str()), ("n", "c"));
        let NetworkCommand::Disconnect { force, .. } = net(&["disconnect", "-f", "n", "c"]) else {
            panic!()
        };
        assert!(force);
        assert!(Cli::try_parse_from(["netd", "network", "inspect"]).is_err());
    }

    #[test]
    fn ls_json_line_has_dockers_fields() {
        let n = NetworkResource {
            name: "front".into(),
            id: "f".repeat(64),
            created: "2025-01-02T03:04:05.5Z".into(),
            scope: "local".into(),
            driver: "bridge".into(),
            enable_ipv4: true,
            labels: BTreeMap::from([("a".into(), "1".into())]),
            ..Default::default()
        };
        let line = serde_json::to_string(&ls_json(&n, short_id(&n.id).into())).unwrap();
        assert_eq!(
            line,
            r#"{"CreatedAt":"2025-01-02 03:04:05.5 +0000 UTC","Driver":"bridge","ID":"ffffffffffff","IPv4":"true","IPv6":"false","Internal":"false","Labels":"a=1","Name":"front","Scope":"local"}"#
        );
    }

    #[test]
    fn prune_prompt_and_report_match_docker() {
        assert!(confirm(&mut "y\n".as_bytes()));
        assert!(confirm(&mut "YES\n".as_bytes()));
        assert!(!confirm(&mut "\n".as_bytes()));
        assert!(!confirm(&mut "".as_bytes()));
        assert!(!confirm(&mut "nope\n".as_bytes()));
        assert_eq!(prune_report(&[]), "");
        assert_eq!(
            prune_report(&["a".into(), "b".into()]),
            "Deleted Networks:\na\nb\n\n"
        );
    }
}
