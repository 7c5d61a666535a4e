//! Published ports: deciding host ports and refusing conflicts, with
//! Docker's messages. A host port is taken when another container publishes
//! it (on an overlapping address) or when a process on the host already
//! listens on it; no proxy process is ever started, so nothing else would
//! notice the clash.

use std::net::Ipv4Addr;

use super::spec::PortSpec;
use crate::error::{EngineError, Result};
use crate::model::{PortBinding, Proto, State};

/// What a published port can bind on the host: its addresses, and the
/// ports processes in the daemon's namespace already hold (as the kernel
/// lists them in /proc/net).
#[derive(Debug, Default)]
pub struct HostBinds {
    /// The host's addresses outside 127.0.0.0/8 (loopback ones are
    /// always bindable).
    addresses: Vec<Ipv4Addr>,
    bound: Vec<(Proto, Option<Ipv4Addr>, u16)>,
}

impl HostBinds {
    pub fn read() -> HostBinds {
        let mut bound = Vec::new();
        for (file, proto, state) in [
            ("/proc/net/tcp", Proto::Tcp, LISTEN),
            ("/proc/net/tcp6", Proto::Tcp, LISTEN),
            ("/proc/net/udp", Proto::Udp, UNCONNECTED),
            ("/proc/net/udp6", Proto::Udp, UNCONNECTED),
        ] {
            if let Ok(text) = std::fs::read_to_string(file) {
                bound.extend(parse_proc_net(&text, state).map(|(a, p)| (proto, a, p)));
            }
        }
        HostBinds {
            addresses: crate::uplink::host_addresses(),
            bound,
        }
    }

    fn has_address(&self, ip: Ipv4Addr) -> bool {
        ip.is_loopback() || self.addresses.contains(&ip)
    }

    fn uses(&self, b: &PortBinding) -> bool {
        self.bound.iter().any(|(proto, addr, port)| {
            *proto == b.proto
                && *port == b.host_port
                && (addr.is_none() || b.host_ip.is_none() || *addr == b.host_ip)
        })
    }
}

/// TCP_LISTEN and the state of a bound, unconnected UDP socket (TCP_CLOSE).
const LISTEN: &str = "0A";
const UNCONNECTED: &str = "07";

/// `local_address` and port of sockets in `state`; `None` for a wildcard
/// address (IPv4 0.0.0.0 or IPv6 ::, which also accepts IPv4).
fn parse_proc_net(text: &str, state: &str) -> impl Iterator<Item = (Option<Ipv4Addr>, u16)> {
    text.lines().skip(1).filter_map(move |line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(3) != Some(&state) {
            return None;
        }
        let (addr, port) = f.get(1)?.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let addr = match addr.len() {
            // The kernel prints the address as a native-endian u32.
            8 => Some(Ipv4Addr::from(u32::from_be(
                u32::from_str_radix(addr, 16).ok()?,
            ))),
            32 if addr.chars().all(|c| c == '0') => None,
            32 => return None, // a specific IPv6 address: not ours to check
            _ => return None,
        };
        Some((addr.filter(|a| !a.is_unspecified()), port))
    })
}

/// The ephemeral range the kernel uses, where `-p PORT` takes host ports.
fn ephemeral_range() -> std::ops::RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some(it.next()??..=it.next()??)
        })
        .unwrap_or(32768..=60999)
}

/// Decides the host side of every `-p` of a new container (or service);
/// `default_ip`: the address a `-p` without one binds to (the network's
/// `host_binding_ipv4`; `None`: every address).
pub(super) fn resolve(
    specs: &[PortSpec],
    default_ip: Option<Ipv4Addr>,
    state: &State,
    host: &HostBinds,
) -> Result<Vec<PortBinding>> {
    let mut taken: Vec<PortBinding> = state
        .containers
        .values()
        .flat_map(|c| c.ports.iter().copied())
        .chain(
            state
                .services
                .values()
                .flat_map(|s| s.ports.iter().copied()),
        )
        .collect();
    let mut out = Vec::new();
    for spec in specs {
        let host_ip = match spec.host_ip {
            Some(ip) if ip.is_unspecified() => None,
            Some(ip) => Some(ip),
            None => default_ip,
        };
        if let Some(ip) = host_ip
            && !host.has_address(ip)
        {
            // Docker's wording, from its proxy's failed bind.
            return Err(EngineError::InvalidParameter(format!(
                "Error starting userland proxy: listen {}4 {ip}:{}: bind: cannot assign \
                 requested address ({ip} is no address of this host)",
                spec.proto.as_str(),
                spec.host_port.unwrap_or(0)
            )));
        }
        let binding = |host_port| PortBinding {
            host_ip,
            host_port,
            container_port: spec.container_port,
            proto: spec.proto,
        };
        let b = match spec.host_port {
            Some(port) => {
                let b = binding(port);
                if taken.iter().any(|t| t.overlaps(&b)) {
                    return Err(EngineError::Conflict(format!(
                        "Bind for {} failed: port is already allocated",
                        b.host_side()
                    )));
                }
                if host.uses(&b) {
                    return Err(EngineError::Conflict(format!(
                        "Bind for {} failed: port is already in use by a process on the host \
                         (`ss -lnp 'sport = :{}'` shows which)",
                        b.host_side(),
                        port
                    )));
                }
                b
            }
            None => ephemeral_range()
                .map(binding)
                .find(|b| !taken.iter().any(|t| t.overlaps(b)) && !host.uses(b))
                .ok_or_else(|| {
                    EngineError::Conflict(format!(
                        "no free host port left for {}/{}",
                        spec.container_port,
                        spec.proto.as_str()
                    ))
                })?,
        };
        taken.push(b);
        out.push(b);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, NetMode};
    use std::sync::Arc;

    fn spec(s: &str) -> PortSpec {
        PortSpec::parse(s).unwrap()
    }

    fn state_with(ports: &[&str]) -> State {
        let mut st = State::default();
        let bindings = resolve(
            &ports.iter().map(|p| spec(p)).collect::<Vec<_>>(),
            None,
            &st,
            &HostBinds::default(),
        )
        .unwrap();
        st.containers.insert(
            "c".into(),
            Arc::new(Container {
                id: "c".into(),
                name: "c".into(),
                created: String::new(),
                net: NetMode::Host,
                network_mode: "bridge".into(),
                endpoints: vec![],
                process: None,
                ports: bindings,
                services: Vec::new(),
                removing: false,
                labels: Default::default(),
            }),
        );
        st
    }

    #[test]
    fn allocated_ports_conflict_like_dockers() {
        let st = state_with(&["8080:80", "127.0.0.1:9090:90", "5353:53/udp"]);
        let none = HostBinds {
            addresses: vec![Ipv4Addr::new(10, 0, 0, 1)],
            ..HostBinds::default()
        };
        let e = resolve(&[spec("8080:81")], None, &st, &none).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        );
        assert!(resolve(&[spec("127.0.0.1:8080:80")], None, &st, &none).is_err());
        assert!(
            resolve(&[spec("9090:90")], None, &st, &none).is_err(),
            "all overlaps loopback"
        );
        assert!(
            resolve(&[spec("10.0.0.1:9090:90")], None, &st, &none).is_ok(),
            "other address"
        );
        assert!(
            resolve(&[spec("8080:80/udp")], None, &st, &none).is_ok(),
            "other protocol"
        );
        assert!(
            resolve(&[spec("7070:70"), spec("7070:71")], None, &st, &none).is_err(),
            "within one request"
        );
    }

    #[test]
    fn ephemeral_ports_skip_what_is_taken() {
        let st = state_with(&["80"]);
        let first = st.containers["c"].ports[0].host_port;
        assert!(ephemeral_range().contains(&first));
        let next = resolve(&[spec("80")], None, &st, &HostBinds::default()).unwrap();
        assert_ne!(next[0].host_port, first);
    }

    #[test]
    fn host_listeners_block_publishing() {
        let tcp = "  sl  local_address rem_address   st\n\
                   0: 00000000:1F90 00000000:0000 0A 0\n\
                   1: 0100007F:0035 00000000:0000 0A 0\n\
                   2: 0100007F:1234 0100007F:0035 01 0\n";
        let bound: Vec<_> = parse_proc_net(tcp, LISTEN).collect();
        assert_eq!(bound, vec![(None, 8080), (Some(Ipv4Addr::LOCALHOST), 53)]);
        let host = HostBinds {
            addresses: vec![Ipv4Addr::new(10, 1, 1, 1)],
            bound: bound.into_iter().map(|(a, p)| (Proto::Tcp, a, p)).collect(),
        };
        let st = State::default();
        let e = resolve(&[spec("8080:80")], None, &st, &host).unwrap_err();
        assert!(
            e.to_string().contains("in use by a process on the host"),
            "{e}"
        );
        assert!(resolve(&[spec("127.0.0.1:53:53")], None, &st, &host).is_err());
        assert!(resolve(&[spec("10.1.1.1:53:53")], None, &st, &host).is_ok());
        assert!(resolve(&[spec("8080:80/udp")], None, &st, &host).is_ok());
    }

    #[test]
    fn bindings_need_an_address_of_the_host() {
        let host = HostBinds {
            addresses: vec![Ipv4Addr::new(192, 0, 2, 10)],
            ..HostBinds::default()
        };
        let st = State::default();
        let e = resolve(&[spec("192.0.2.11:80:80")], None, &st, &host).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.to_string().contains("cannot assign requested address"),
            "{e}"
        );
        let ok = resolve(&[spec("192.0.2.10:80:80")], None, &st, &host).unwrap();
        assert_eq!(ok[0].host_ip, Some(Ipv4Addr::new(192, 0, 2, 10)));
        // The network's default binding applies where `-p` names none, and
        // is checked the same way.
        let local = Some(Ipv4Addr::LOCALHOST);
        let ok = resolve(&[spec("81:80"), spec("0.0.0.0:82:80")], local, &st, &host).unwrap();
        assert_eq!(ok[0].host_ip, local);
        assert_eq!(ok[1].host_ip, None, "0.0.0.0 given means every address");
        let gone = Some(Ipv4Addr::new(192, 0, 2, 99));
        assert!(resolve(&[spec("83:80")], gone, &st, &host).is_err());
    }
}
