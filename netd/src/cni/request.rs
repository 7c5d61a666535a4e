//! ADD's request to the daemon: the create body of the netd container that
//! stands for the attachment, from the configuration, the capability
//! arguments and `CNI_ARGS`.

use std::net::Ipv4Addr;

use super::error::{CniError, Code, Result};
use super::invocation::Invocation;
use super::types::{Aliases, NetConf, PortMapping};
use crate::api::wire::ContainerCreateRequest;
use crate::model::{parse_mac, valid_name};

/// The create body for `inv`'s attachment, and the prefix length the
/// runtime asked the static address to have, if it gave one (checked
/// against the network's once the daemon answered).
pub fn create_request(
    conf: &NetConf,
    inv: &Invocation,
) -> Result<(ContainerCreateRequest, Option<u8>)> {
    let (ip, prefix) = match static_ip(conf, inv)? {
        Some((ip, prefix)) => (Some(ip.to_string()), prefix),
        None => (None, None),
    };
    let request = ContainerCreateRequest {
        network_mode: Some(conf.network.clone()),
        ip_address: ip,
        aliases: aliases(conf, inv)?,
        ports: conf
            .runtime_config
            .port_mappings
            .iter()
            .map(publish_spec)
            .collect::<Result<_>>()?,
        netns: Some(inv.netns().to_string()),
        ifname: Some(inv.attachment().ifname.clone()),
        mac_address: mac(conf, inv)?,
        labels: inv.attachment().labels(&conf.name),
        ..ContainerCreateRequest::default()
    };
    Ok((request, prefix))
}

fn invalid(msg: &str, details: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg, details)
}

/// The `ips` capability, else `CNI_ARGS`' `IP` (the convention: a runtime
/// that passes both means the capability). netd endpoints have one IPv4
/// address.
fn static_ip(conf: &NetConf, inv: &Invocation) -> Result<Option<(Ipv4Addr, Option<u8>)>> {
    let asked: Vec<&str> = if conf.runtime_config.ips.is_empty() {
        inv.args.ip.iter().map(String::as_str).collect()
    } else {
        conf.runtime_config.ips.iter().map(String::as_str).collect()
    };
    let one = match asked.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => {
            return Err(invalid(
                "one static address at most",
                format!("ips {many:?}: a netd endpoint has one IPv4 address"),
            ));
        }
    };
    let bad = || {
        invalid(
            "invalid static address",
            format!("ips {one:?}: netd takes IPv4[/prefix]"),
        )
    };
    let (addr, prefix) = match one.split_once('/') {
        Some((a, p)) => (
            a,
            Some(p.parse::<u8>().ok().filter(|p| *p <= 32).ok_or_else(bad)?),
        ),
        None => (one, None),
    };
    Ok(Some((addr.parse().map_err(|_| bad())?, prefix)))
}

/// The `mac` capability, else `CNI_ARGS`' `MAC`.
fn mac(conf: &NetConf, inv: &Invocation) -> Result<Option<String>> {
    let Some(mac) = conf.runtime_config.mac.as_ref().or(inv.args.mac.as_ref()) else {
        return Ok(None);
    };
    parse_mac(mac).ok_or_else(|| invalid("invalid MAC address", format!("mac {mac:?}")))?;
    Ok(Some(mac.clone()))
}

/// The `aliases` capability (a list, or podman's map by network
/// configuration name), plus the runtime's name for the container: podman
/// passes it as `K8S_POD_NAME` without `K8S_POD_NAMESPACE`, for its
/// dnsname plugin, whose job netd's DNS does. A Kubernetes pod's name is
/// only unique within its namespace, so it names nothing here.
fn aliases(conf: &NetConf, inv: &Invocation) -> Result<Vec<String>> {
    let mut out: Vec<String> = match &conf.runtime_config.aliases {
        None => Vec::new(),
        Some(Aliases::List(list)) => list.clone(),
        Some(Aliases::ByNetwork(by)) => by.get(&conf.name).cloned().unwrap_or_default(),
    };
    if let Some(bad) = out.iter().find(|a| !valid_name(a)) {
        return Err(invalid(
            "invalid alias",
            format!("aliases {bad:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]* is allowed"),
        ));
    }
    if inv.args.pod_namespace.is_none()
        && let Some(name) = inv.args.pod_name.as_ref().filter(|n| valid_name(n))
        && !out.contains(name)
    {
        out.push(name.clone());
    }
    Ok(out)
}

/// One `portMappings` entry in the daemon's `-p` syntax.
fn publish_spec(p: &PortMapping) -> Result<String> {
    let host_ip = match p.host_ip.as_str() {
        "" => Ipv4Addr::UNSPECIFIED,
        ip => ip.parse().map_err(|_| {
            invalid(
                "invalid port mapping",
                format!("hostIP {ip:?}: netd publishes ports on IPv4 addresses"),
            )
        })?,
    };
    let protocol = match p.protocol.to_ascii_lowercase().as_str() {
        "" => "tcp".to_string(),
        other => other.to_string(),
    };
    if p.host_port == 0 || p.container_port == 0 {
        return Err(invalid(
            "invalid port mapping",
            format!("{p:?}: hostPort and containerPort must be 1-65535"),
        ));
    }
    Ok(format!(
        "{host_ip}:{}:{}/{protocol}",
        p.host_port, p.container_port
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::invocation::CniArgs;

    fn conf(runtime_config: &str) -> NetConf {
        serde_json::from_str(&format!(
            r#"{{"cniVersion":"1.1.0","name":"podnet","type":"netd","network":"n",
                "runtimeConfig":{runtime_config}}}"#
        ))
        .unwrap()
    }

    fn inv(args: &str) -> Invocation {
        let args = args.to_string();
        Invocation::from_env(|k| {
            Some(match k {
                "CNI_COMMAND" => "ADD".into(),
                "CNI_CONTAINERID" => "c1".into(),
                "CNI_IFNAME" => "net1".into(),
                "CNI_NETNS" => "/run/netns/x".into(),
                "CNI_ARGS" => args.clone(),
                _ => return None,
            })
        })
        .unwrap()
    }

    #[test]
    fn everything_the_runtime_asks_for_reaches_the_daemon() {
        let (req, prefix) = create_request(
            &conf(
                r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                                     {"hostPort":53,"containerPort":5353,"protocol":"UDP","hostIP":"127.0.0.1"}],
                    "ips":["10.1.0.9/24"],"mac":"0a:00:00:00:00:01",
                    "aliases":{"podnet":["db"],"other":["x"]}}"#,
            ),
            &inv("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.1.0.7"),
        )
        .unwrap();
        assert_eq!(req.network_mode.as_deref(), Some("n"));
        assert_eq!(req.netns.as_deref(), Some("/run/netns/x"));
        assert_eq!(req.ifname.as_deref(), Some("net1"));
        assert_eq!(req.ip_address.as_deref(), Some("10.1.0.9"), "ips beats IP");
        assert_eq!(prefix, Some(24));
        assert_eq!(req.mac_address.as_deref(), Some("0a:00:00:00:00:01"));
        assert_eq!(req.aliases, ["db", "web"]);
        assert_eq!(req.ports, ["0.0.0.0:8080:80/tcp", "127.0.0.1:53:5353/udp"]);
        assert_eq!(req.labels["netd.cni.container-id"], "c1");
        assert_eq!(req.labels["netd.cni.network"], "podnet");
    }

    #[test]
    fn cni_args_stand_in_for_missing_capabilities() {
        let (req, prefix) = create_request(
            &conf(r#"{"aliases":["a"]}"#),
            &inv("IP=10.1.0.7;MAC=0a:00:00:00:00:02;K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns"),
        )
        .unwrap();
        assert_eq!(req.ip_address.as_deref(), Some("10.1.0.7"));
        assert_eq!(prefix, None);
        assert_eq!(req.mac_address.as_deref(), Some("0a:00:00:00:00:02"));
        assert_eq!(req.aliases, ["a"], "a Kubernetes pod name is no alias");
        let (req, _) = create_request(&conf("{}"), &inv("")).unwrap();
        assert_eq!(req.ip_address, None);
        assert!(req.aliases.is_empty() && req.ports.is_empty());
        assert_eq!(inv("").args, CniArgs::default());
    }

    #[test]
    fn what_netd_cannot_do_is_refused() {
        for rc in [
            r#"{"ips":["10.1.0.7","10.1.0.8"]}"#,
            r#"{"ips":["fd00::7/64"]}"#,
            r#"{"ips":["10.1.0.7/33"]}"#,
            r#"{"mac":"zz"}"#,
            r#"{"aliases":["a b"]}"#,
            r#"{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"::"}]}"#,
            r#"{"portMappings":[{"hostPort":0,"containerPort":80}]}"#,
        ] {
            let e = create_request(&conf(rc), &inv("")).unwrap_err();
            assert_eq!(e.code, Code::InvalidConfig, "{rc}: {e:?}");
        }
    }
}
