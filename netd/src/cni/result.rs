//! The ADD result from the daemon's answer, chaining after a previous
//! plugin's, and CHECK's comparison of `prevResult` with what the daemon
//! and the kernel have.

use std::net::Ipv4Addr;

use super::error::{CniError, Code, Result};
use super::types::{CniResult, Dns, Interface, IpConfig, Route};
use crate::api::wire::{ContainerJson, EndpointSettings};
use crate::model::parse_mac;
use crate::netlink::LinkState;

/// The attachment's one endpoint: a CNI attachment's netd container is on
/// exactly one network.
pub fn endpoint(c: &ContainerJson) -> Result<&EndpointSettings> {
    c.network_settings
        .networks
        .values()
        .find(|e| !e.ip_address.is_empty())
        .ok_or_else(|| {
            CniError::new(
                Code::Refused,
                "netd: the container has no interface",
                format!("container {} has no address on a network", c.name),
            )
        })
}

/// The result of an ADD: the host side of the veth (when the driver makes
/// one), the interface in the namespace, its address, the default route
/// through the network's gateway, and the DNS settings netd gives its own
/// containers (the embedded server at 127.0.0.11 on user-defined
/// networks).
pub fn of_container(c: &ContainerJson, netns: &str) -> Result<CniResult> {
    let ep = endpoint(c)?;
    let mut interfaces = Vec::new();
    if !ep.host_ifname.is_empty() {
        interfaces.push(Interface {
            name: ep.host_ifname.clone(),
            ..Interface::default()
        });
    }
    interfaces.push(Interface {
        name: ep.ifname.clone(),
        mac: ep.mac_address.clone(),
        sandbox: netns.to_string(),
    });
    let dns = &c.resolv_conf;
    Ok(CniResult {
        cni_version: String::new(),
        ips: vec![IpConfig {
            version: None,
            address: format!("{}/{}", ep.ip_address, ep.ip_prefix_len),
            gateway: Some(ep.gateway.clone()),
            interface: Some(interfaces.len() - 1),
        }],
        interfaces,
        routes: vec![Route {
            dst: "0.0.0.0/0".into(),
            gw: Some(ep.gateway.clone()),
        }],
        dns: Dns {
            nameservers: dns.nameservers.clone(),
            domain: String::new(),
            search: dns.search.clone(),
            options: dns.options.clone(),
        },
    })
}

/// `ours` after a previous plugin's `prev` in a chain: both results'
/// interfaces, addresses and routes; the DNS settings are netd's, which its
/// resolver answers for.
pub fn chained(prev: CniResult, ours: CniResult) -> CniResult {
    let shift = prev.interfaces.len();
    let mut out = prev;
    out.ips.extend(ours.ips.into_iter().map(|mut ip| {
        ip.interface = ip.interface.map(|i| i + shift);
        ip
    }));
    out.interfaces.extend(ours.interfaces);
    out.routes.extend(ours.routes);
    out.dns = ours.dns;
    out
}

/// Reads a `prevResult` in any supported version's shape.
pub fn parse_prev(prev: &serde_json::Value) -> Result<CniResult> {
    let mut prev = prev.clone();
    if let Some(obj) = prev.as_object_mut() {
        // A result nested in a configuration may lack its own version.
        obj.entry("cniVersion").or_insert_with(|| "".into());
    }
    serde_json::from_value(prev)
        .map_err(|e| CniError::new(Code::Decode, "cannot decode prevResult", e.to_string()))
}

/// What `prevResult` says the attachment is: the interface called
/// `ifname` in `netns`, its MAC, and its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub mac: [u8; 6],
    pub addresses: Vec<(Ipv4Addr, u8)>,
}

pub fn expected(prev: &CniResult, netns: &str, ifname: &str) -> Result<Expected> {
    let mismatch = |details: String| CniError::new(Code::Mismatch, "prevResult disagrees", details);
    let index = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox == netns)
        .ok_or_else(|| mismatch(format!("it lists no interface {ifname} in {netns}")))?;
    let mac = parse_mac(&prev.interfaces[index].mac).ok_or_else(|| {
        mismatch(format!(
            "interface {ifname} has no valid MAC ({:?})",
            prev.interfaces[index].mac
        ))
    })?;
    let addresses = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .map(|ip| parse_cidr(&ip.address))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| mismatch(format!("an address of {ifname} is not IPv4/prefix")))?;
    Ok(Expected { mac, addresses })
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    Some((ip.parse().ok()?, prefix.parse().ok().filter(|p| *p <= 32)?))
}

/// CHECK: the daemon's record and then the kernel's link against what
/// `prevResult` says.
pub fn compare(want: &Expected, record: &EndpointSettings, link: Option<&LinkState>) -> Result<()> {
    let mismatch =
        |details: String| CniError::new(Code::Mismatch, "the attachment changed", details);
    let recorded = (
        record.ip_address.parse::<Ipv4Addr>().ok(),
        record.ip_prefix_len,
    );
    if parse_mac(&record.mac_address) != Some(want.mac) {
        return Err(mismatch(format!(
            "netd has MAC {} where prevResult says {}",
            record.mac_address,
            crate::model::format_mac(&want.mac)
        )));
    }
    if !want
        .addresses
        .iter()
        .all(|(ip, p)| recorded == (Some(*ip), *p))
    {
        return Err(mismatch(format!(
            "netd has address {}/{} where prevResult says {:?}",
            record.ip_address, record.ip_prefix_len, want.addresses
        )));
    }
    let ifname = &record.ifname;
    let Some(link) = link else {
        return Err(mismatch(format!(
            "there is no interface {ifname} in the namespace"
        )));
    };
    if link.mac != Some(want.mac) {
        return Err(mismatch(format!(
            "{ifname} has another MAC: {:?}",
            link.mac
        )));
    }
    if !link.up {
        return Err(mismatch(format!("{ifname} is down")));
    }
    if let Some(missing) = want.addresses.iter().find(|a| !link.ipv4.contains(a)) {
        return Err(mismatch(format!(
            "{ifname} lacks {}/{}",
            missing.0, missing.1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::ResolvConfJson;
    use std::collections::BTreeMap;

    fn container() -> ContainerJson {
        let mut c = ContainerJson {
            name: "cni-c1-x".into(),
            resolv_conf: ResolvConfJson {
                nameservers: vec!["127.0.0.11".into()],
                search: vec!["example.org".into()],
                options: vec!["ndots:0".into()],
            },
            ..ContainerJson::default()
        };
        c.network_settings.networks = BTreeMap::from([(
            "n".to_string(),
            EndpointSettings {
                mac_address: "0a:00:00:00:00:01".into(),
                gateway: "10.1.0.1".into(),
                ip_address: "10.1.0.9".into(),
                ip_prefix_len: 24,
                ifname: "net1".into(),
                host_ifname: "tabcv1234".into(),
                ..EndpointSettings::default()
            },
        )]);
        c
    }

    #[test]
    fn the_result_lists_both_ends_the_address_route_and_dns() {
        let r = of_container(&container(), "/run/netns/x").unwrap();
        let v = serde_json::to_value(crate::cni::version::in_kind(r, "1.0.0")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "tabcv1234"},
                    {"name": "net1", "mac": "0a:00:00:00:00:01", "sandbox": "/run/netns/x"}
                ],
                "ips": [{"address": "10.1.0.9/24", "gateway": "10.1.0.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
                "dns": {"nameservers": ["127.0.0.11"], "search": ["example.org"], "options": ["ndots:0"]}
            })
        );
    }

    #[test]
    fn a_chained_result_keeps_the_previous_one() {
        let prev = CniResult {
            interfaces: vec![Interface {
                name: "dummy0".into(),
                ..Interface::default()
            }],
            ips: vec![IpConfig {
                address: "192.0.2.1/24".into(),
                interface: Some(0),
                ..IpConfig::default()
            }],
            ..CniResult::default()
        };
        let ours = of_container(&container(), "/run/netns/x").unwrap();
        let r = chained(prev, ours);
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.ips[1].interface, Some(2));
        assert_eq!(r.dns.nameservers, ["127.0.0.11"]);
    }

    #[test]
    fn check_finds_every_difference() {
        let c = container();
        let prev = of_container(&c, "/run/netns/x").unwrap();
        let want = expected(&prev, "/run/netns/x", "net1").unwrap();
        assert_eq!(want.addresses, [(Ipv4Addr::new(10, 1, 0, 9), 24)]);
        let ep = endpoint(&c).unwrap();
        let good = LinkState {
            mac: Some(want.mac),
            up: true,
            ipv4: vec![(Ipv4Addr::new(10, 1, 0, 9), 24)],
        };
        compare(&want, ep, Some(&good)).unwrap();
        let bad_links = [
            LinkState {
                mac: Some([2, 0, 0, 0, 0, 9]),
                ..good.clone()
            },
            LinkState {
                up: false,
                ..good.clone()
            },
            LinkState {
                ipv4: vec![],
                ..good.clone()
            },
        ];
        for link in &bad_links {
            assert_eq!(
                compare(&want, ep, Some(link)).unwrap_err().code,
                Code::Mismatch
            );
        }
        assert_eq!(compare(&want, ep, None).unwrap_err().code, Code::Mismatch);
        let mut moved = ep.clone();
        moved.ip_address = "10.1.0.10".into();
        assert_eq!(
            compare(&want, &moved, Some(&good)).unwrap_err().code,
            Code::Mismatch
        );
        assert_eq!(
            expected(&prev, "/run/netns/other", "net1")
                .unwrap_err()
                .code,
            Code::Mismatch
        );
    }

    #[test]
    fn prev_results_of_every_version_parse() {
        let old = serde_json::json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "0a:00:00:00:00:01", "sandbox": "/x"}],
            "ips": [{"version": "4", "address": "10.0.0.2/24", "interface": 0}]
        });
        let r = parse_prev(&old).unwrap();
        assert_eq!(r.ips[0].version.as_deref(), Some("4"));
        let bare = serde_json::json!({"ips": [{"address": "10.0.0.2/24"}]});
        assert_eq!(parse_prev(&bare).unwrap().ips.len(), 1);
        assert_eq!(
            parse_prev(&serde_json::json!({"ips": 3})).unwrap_err().code,
            Code::Decode
        );
    }
}
