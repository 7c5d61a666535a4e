//! IP address management, Docker's way. Pure functions over what is already
//! taken: the engine passes in the subnets of existing networks, the host's
//! routes and which addresses endpoints and service VIPs hold (a predicate,
//! answered from state the engine derives from the stored objects), so
//! allocation can never leak or double-book an address after a crash.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::EngineError;
use crate::model::Subnet;

/// The predefined `bridge` network's pool.
pub const DEFAULT_BRIDGE_SUBNET: &str = "172.17.0.0/16";

/// Docker's default local address pools, in the order Docker tries them:
/// (base, size of each network cut from it).
const LOCAL_POOLS: &[(&str, u8)] = &[
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
];

/// Every candidate subnet for a new network, in Docker's order.
pub fn local_candidates() -> impl Iterator<Item = Ipv4Net> {
    LOCAL_POOLS.iter().flat_map(|(base, size)| {
        let base: Ipv4Net = base.parse().expect("pool constants are valid CIDRs");
        base.subnets(*size).expect("pool sizes fit their bases")
    })
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Docker's default global (swarm scope) pool, cut into networks of this
/// size: what overlay networks get without `--subnet`.
const GLOBAL_POOL: (&str, u8) = ("10.0.0.0/8", 24);

/// Picks the first default pool that overlaps neither an existing network
/// nor a route on the host (so that containers never shadow the LAN).
pub fn pick_subnet(networks: &[Ipv4Net], host_routes: &[Ipv4Net]) -> Result<Ipv4Net, EngineError> {
    first_free(local_candidates(), networks, host_routes)
}

/// Whether `--subnet` is a pool request rather than a subnet: Docker's
/// `0.0.0.0/N` asks for "a /N of the default pools".
pub fn is_pool_request(subnet: Ipv4Net) -> bool {
    subnet.network().is_unspecified()
}

/// Picks the first /`len` of the default local pools (each pool cut into
/// networks of that size, if it holds them) that overlaps neither an
/// existing network nor a route on the host: `--subnet 0.0.0.0/len`.
pub fn pick_subnet_of_size(
    len: u8,
    networks: &[Ipv4Net],
    host_routes: &[Ipv4Net],
) -> Result<Ipv4Net, EngineError> {
    if len > 30 {
        return Err(EngineError::InvalidParameter(format!(
            "invalid pool request 0.0.0.0/{len}: a network needs at least a /30"
        )));
    }
    let candidates = LOCAL_POOLS
        .iter()
        .filter(|(_, size)| len >= *size)
        .flat_map(move |(base, _)| {
            let base: Ipv4Net = base.parse().expect("pool constants are valid CIDRs");
            base.subnets(len).expect("the size fits the base")
        });
    first_free(candidates, networks, host_routes)
}

/// Picks the first /24 of Docker's global pool that overlaps no network of
/// the cluster: host routes differ from host to host, so they are not
/// asked (as in Docker's overlay driver).
pub fn pick_global_subnet(networks: &[Ipv4Net]) -> Result<Ipv4Net, EngineError> {
    let (base, size) = GLOBAL_POOL;
    let base: Ipv4Net = base.parse().expect("the pool constant is a valid CIDR");
    first_free(
        base.subnets(size).expect("the size fits the base"),
        networks,
        &[],
    )
}

fn first_free(
    mut candidates: impl Iterator<Item = Ipv4Net>,
    networks: &[Ipv4Net],
    host_routes: &[Ipv4Net],
) -> Result<Ipv4Net, EngineError> {
    candidates
        .find(|c| {
            !networks.iter().any(|n| overlaps(c, n))
                && !host_routes
                    .iter()
                    .filter(|r| r.prefix_len() > 0)
                    .any(|r| overlaps(c, r))
        })
        .ok_or_else(|| {
            EngineError::InvalidParameter(
                "could not find an available, non-overlapping IPv4 address pool among the \
                 defaults to assign to the network"
                    .into(),
            )
        })
}

/// The pool a new network gets: the user's, checked (`--subnet`,
/// `--gateway`, `--ip-range`), or without `--subnet` the one `pick`
/// chooses, gateway first.
pub fn requested_pool(
    subnet: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
    ip_range: Option<Ipv4Net>,
    networks: &[Ipv4Net],
    pick: impl FnOnce() -> Result<Ipv4Net, EngineError>,
) -> Result<Subnet, EngineError> {
    match subnet {
        Some(subnet) => user_subnet(subnet, gateway, ip_range, networks),
        None if gateway.is_some() || ip_range.is_some() => Err(EngineError::InvalidParameter(
            "--gateway and --ip-range need --subnet".into(),
        )),
        None => Ok(auto_subnet(pick()?)),
    }
}

/// Checks a user-given pool (`--subnet`, `--gateway`, `--ip-range`) and
/// fills in the gateway Docker would choose (the first host address).
pub fn user_subnet(
    subnet: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    ip_range: Option<Ipv4Net>,
    networks: &[Ipv4Net],
) -> Result<Subnet, EngineError> {
    let invalid = |m: String| Err(EngineError::InvalidParameter(m));
    if subnet != subnet.trunc() {
        // Docker accepts 172.30.1.5/16 but stores the network address; be
        // explicit instead of guessing what the user meant.
        return invalid(format!(
            "invalid subnet {subnet}: it has host bits set; did you mean {}?",
            subnet.trunc()
        ));
    }
    if subnet.prefix_len() > 30 {
        return invalid(format!(
            "invalid subnet {subnet}: too small, a network needs at least a /30"
        ));
    }
    if let Some((range, what)) = reserved_ranges().find(|(r, _)| overlaps(&subnet, r)) {
        return invalid(format!(
            "invalid subnet {subnet}: it overlaps {range} ({what}), which no network can use"
        ));
    }
    if networks.iter().any(|n| overlaps(&subnet, n)) {
        return Err(EngineError::Forbidden(
            "invalid pool request: Pool overlaps with other one on this address space".into(),
        ));
    }
    if let Some(r) = ip_range {
        if r != r.trunc() {
            return invalid(format!("invalid ip-range {r}: it has host bits set"));
        }
        if !subnet.contains(&r) {
            return invalid(format!(
                "invalid ip-range {r}: it does not belong to subnet {subnet}"
            ));
        }
    }
    let gateway = match gateway {
        Some(g) => {
            if !host_addresses(&subnet).any(|a| a == g) {
                return invalid(format!(
                    "invalid gateway {g}: it does not belong to subnet {subnet}"
                ));
            }
            g
        }
        None => first_host(&subnet),
    };
    Ok(Subnet {
        subnet,
        gateway,
        ip_range,
    })
}

/// Ranges whose addresses mean something else to every host (RFC 6890):
/// a network there would break the host's own loopback, link-local or
/// multicast traffic, or could never be routed.
const RESERVED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved and broadcast"),
];

fn reserved_ranges() -> impl Iterator<Item = (Ipv4Net, &'static str)> {
    RESERVED
        .iter()
        .map(|(r, what)| (r.parse().expect("reserved ranges are valid CIDRs"), *what))
}

/// Refuses a user's subnet for a network local to this host (a bridge)
/// that overlaps a route of the host other than the networks' own
/// (`networks`): the network's route would take that traffic from the
/// LAN or VPN it belongs to. (Docker checks this for the pools it picks,
/// not for `--subnet`; netd checks both.)
pub fn check_host_routes(
    subnet: Ipv4Net,
    host_routes: &[Ipv4Net],
    networks: &[Ipv4Net],
) -> Result<(), EngineError> {
    match host_routes
        .iter()
        .filter(|r| r.prefix_len() > 0 && !networks.contains(r))
        .find(|r| overlaps(&subnet, r))
    {
        Some(route) => Err(EngineError::Forbidden(format!(
            "invalid pool request: subnet {subnet} overlaps the host's route to {route}; \
             its containers would hide that network from the host"
        ))),
        None => Ok(()),
    }
}

/// A pool chosen by netd from the defaults: gateway is the first host.
pub fn auto_subnet(subnet: Ipv4Net) -> Subnet {
    Subnet {
        subnet,
        gateway: first_host(&subnet),
        ip_range: None,
    }
}

fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    host_addresses(net).next().expect("subnets are at most /30")
}

/// Usable host addresses: neither the network address nor broadcast.
fn host_addresses(net: &Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    let (net_addr, bcast) = (net.network(), net.broadcast());
    net.hosts().filter(move |a| *a != net_addr && *a != bcast)
}

/// The lowest free address for an endpoint or a VIP: from `--ip-range` if
/// set, never the gateway, never one that `used` says is held.
pub fn allocate(
    pool: &Subnet,
    used: impl Fn(Ipv4Addr) -> bool,
    network_name: &str,
) -> Result<Ipv4Addr, EngineError> {
    let range = pool.ip_range.unwrap_or(pool.subnet);
    host_addresses(&pool.subnet)
        .filter(|a| range.contains(a))
        .find(|a| *a != pool.gateway && !used(*a))
        .ok_or_else(|| {
            EngineError::Forbidden(format!(
                "no available IPv4 addresses on this network's address pools: {network_name}"
            ))
        })
}

/// Checks a static address (`--ip`).
pub fn reserve(
    pool: &Subnet,
    ip: Ipv4Addr,
    used: impl Fn(Ipv4Addr) -> bool,
) -> Result<Ipv4Addr, EngineError> {
    let range = pool.ip_range.unwrap_or(pool.subnet);
    if !range.contains(&ip) || !host_addresses(&pool.subnet).any(|a| a == ip) {
        return Err(EngineError::InvalidParameter(format!(
            "invalid endpoint settings: no configured subnet or ip-range contain the IP address {ip}"
        )));
    }
    if ip == pool.gateway || used(ip) {
        return Err(EngineError::Conflict(format!(
            "Address already in use: {ip}"
        )));
    }
    Ok(ip)
}

/// IPv4 routes of the host's main table with a non-zero prefix, read from
/// /proc/net/route (what Docker checks new default pools against).
pub fn host_routes() -> Vec<Ipv4Net> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_proc_routes(&t))
        .unwrap_or_default()
}

fn parse_proc_routes(text: &str) -> Vec<Ipv4Net> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints these in host byte order of a big-endian
            // value, i.e. little-endian on x86: swap back.
            let dest = Ipv4Addr::from(u32::from_be(dest));
            let prefix = u32::from_be(mask).leading_ones() as u8;
            Ipv4Net::new(dest, prefix)
                .ok()
                .filter(|n| n.prefix_len() > 0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn pool_order_is_dockers() {
        let c: Vec<String> = local_candidates().map(|n| n.to_string()).collect();
        assert_eq!(c[0], "172.17.0.0/16");
        assert_eq!(c[1], "172.18.0.0/16");
        assert_eq!(c[2], "172.19.0.0/16");
        assert_eq!(c[3], "172.20.0.0/16");
        assert_eq!(c[14], "172.31.0.0/16");
        assert_eq!(c[15], "192.168.0.0/20");
        assert_eq!(c[16], "192.168.16.0/20");
        assert_eq!(c.len(), 15 + 16);
    }

    #[test]
    fn pick_skips_networks_and_host_routes() {
        let taken = [net("172.17.0.0/16"), net("172.18.0.0/16")];
        assert_eq!(pick_subnet(&taken, &[]).unwrap(), net("172.19.0.0/16"));
        // A host route inside 172.19/16 makes the whole /16 unusable.
        let routes = [net("172.19.5.0/24"), net("0.0.0.0/0")];
        assert_eq!(pick_subnet(&taken, &routes).unwrap(), net("172.20.0.0/16"));
        // A user network covering many defaults pushes past them all.
        let wide = [net("172.16.0.0/12")];
        assert_eq!(pick_subnet(&wide, &[]).unwrap(), net("192.168.0.0/20"));
    }

    #[test]
    fn global_pool_hands_out_24s_of_10_8_in_order() {
        let taken = [net("10.0.0.0/24"), net("10.0.2.0/23")];
        assert_eq!(pick_global_subnet(&taken).unwrap(), net("10.0.1.0/24"));
        let taken = [net("10.0.0.0/23"), net("10.0.2.0/24"), net("10.0.3.128/25")];
        assert_eq!(pick_global_subnet(&taken).unwrap(), net("10.0.4.0/24"));
        assert!(pick_global_subnet(&[net("10.0.0.0/8")]).is_err());
    }

    #[test]
    fn requested_pool_needs_subnet_for_gateway_and_range() {
        let never = || -> Result<Ipv4Net, EngineError> { unreachable!("not asked") };
        let e =
            requested_pool(None, Some("10.0.0.1".parse().unwrap()), None, &[], never).unwrap_err();
        assert_eq!(e.to_string(), "--gateway and --ip-range need --subnet");
        let p = requested_pool(Some(net("10.9.0.0/24")), None, None, &[], never).unwrap();
        assert_eq!(p.gateway, Ipv4Addr::new(10, 9, 0, 1));
        let p = requested_pool(None, None, None, &[], || Ok(net("10.0.7.0/24"))).unwrap();
        assert_eq!(p, auto_subnet(net("10.0.7.0/24")));
    }

    #[test]
    fn pools_run_out_with_dockers_message() {
        let all = [net("172.16.0.0/12"), net("192.168.0.0/16")];
        let e = pick_subnet(&all, &[]).unwrap_err();
        assert!(e.to_string().contains("non-overlapping IPv4 address pool"));
    }

    #[test]
    fn user_subnet_checks_overlap_gateway_and_range() {
        let taken = [net("10.1.0.0/16")];
        let e = user_subnet(net("10.1.2.0/24"), None, None, &taken).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid pool request: Pool overlaps with other one on this address space"
        );
        let s = user_subnet(net("10.2.0.0/16"), None, None, &taken).unwrap();
        assert_eq!(s.gateway, Ipv4Addr::new(10, 2, 0, 1));
        assert!(
            user_subnet(
                net("10.2.0.0/16"),
                Some("10.3.0.1".parse().unwrap()),
                None,
                &[]
            )
            .is_err()
        );
        assert!(
            user_subnet(
                net("10.2.0.0/16"),
                Some("10.2.0.0".parse().unwrap()),
                None,
                &[]
            )
            .is_err()
        );
        assert!(user_subnet(net("10.2.0.0/16"), None, Some(net("10.3.0.0/24")), &[]).is_err());
        assert!(user_subnet(net("10.2.0.5/16"), None, None, &[]).is_err());
        assert!(user_subnet(net("10.2.0.0/31"), None, None, &[]).is_err());
    }

    #[test]
    fn pool_requests_get_a_subnet_of_their_size() {
        assert!(is_pool_request(net("0.0.0.0/24")));
        assert!(!is_pool_request(net("10.0.0.0/24")));
        let taken = [net("172.17.0.0/16"), net("172.18.0.0/24")];
        assert_eq!(
            pick_subnet_of_size(24, &taken, &[net("172.18.1.0/24")]).unwrap(),
            net("172.18.2.0/24")
        );
        assert_eq!(
            pick_subnet_of_size(16, &taken, &[]).unwrap(),
            net("172.19.0.0/16")
        );
        // Larger than any pool's networks, or too small for a network.
        assert!(pick_subnet_of_size(12, &[], &[]).is_err());
        assert!(pick_subnet_of_size(31, &[], &[]).is_err());
    }

    #[test]
    fn reserved_ranges_are_refused() {
        for bad in [
            "0.1.0.0/24",
            "127.1.0.0/16",
            "169.254.3.0/24",
            "224.1.0.0/16",
            "240.0.0.0/8",
            "255.255.255.0/30",
            "96.0.0.0/3",
        ] {
            let e = user_subnet(net(bad), None, None, &[]).unwrap_err();
            assert!(
                e.to_string().contains("which no network can use"),
                "{bad}: {e}"
            );
        }
        assert!(user_subnet(net("10.0.0.0/8"), None, None, &[]).is_ok());
        assert!(user_subnet(net("100.64.0.0/10"), None, None, &[]).is_ok());
    }

    #[test]
    fn host_routes_other_than_the_networks_own_are_refused() {
        let routes = [net("10.8.0.0/16"), net("172.18.0.0/16"), net("0.0.0.0/0")];
        let own = [net("172.18.0.0/16")];
        let e = check_host_routes(net("10.8.4.0/24"), &routes, &own).unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.to_string().contains("route to 10.8.0.0/16"), "{e}");
        assert!(check_host_routes(net("10.0.0.0/8"), &routes, &own).is_err());
        assert!(check_host_routes(net("10.9.0.0/16"), &routes, &own).is_ok());
        // The default route and the networks' own routes do not count.
        assert!(check_host_routes(net("172.18.1.0/24"), &routes, &own).is_ok());
    }

    #[test]
    fn allocate_lowest_free_skipping_gateway_and_used() {
        let pool = auto_subnet(net("10.9.0.0/29"));
        let mut used = HashSet::new();
        let a = allocate(&pool, |a| used.contains(&a), "n").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        used.insert(a);
        assert_eq!(
            allocate(&pool, |a| used.contains(&a), "n").unwrap(),
            Ipv4Addr::new(10, 9, 0, 3)
        );
        // Releasing an address makes it the next one handed out.
        used.insert(Ipv4Addr::new(10, 9, 0, 3));
        used.remove(&a);
        assert_eq!(allocate(&pool, |a| used.contains(&a), "n").unwrap(), a);
    }

    #[test]
    fn allocate_respects_ip_range_and_exhausts() {
        let pool = user_subnet(net("10.9.0.0/24"), None, Some(net("10.9.0.128/31")), &[]).unwrap();
        let mut used = HashSet::new();
        for _ in 0..2 {
            let a = allocate(&pool, |a| used.contains(&a), "n").unwrap();
            assert!(net("10.9.0.128/31").contains(&a));
            used.insert(a);
        }
        let e = allocate(&pool, |a| used.contains(&a), "n").unwrap_err();
        assert!(e.to_string().starts_with("no available IPv4 addresses"));
    }

    #[test]
    fn static_addresses() {
        let pool = auto_subnet(net("10.9.0.0/24"));
        let used: HashSet<_> = [Ipv4Addr::new(10, 9, 0, 7)].into();
        assert!(reserve(&pool, "10.9.0.8".parse().unwrap(), |a| used.contains(&a)).is_ok());
        assert!(matches!(
            reserve(&pool, "10.9.0.7".parse().unwrap(), |a| used.contains(&a)),
            Err(EngineError::Conflict(_))
        ));
        assert!(matches!(
            reserve(&pool, "10.9.0.1".parse().unwrap(), |a| used.contains(&a)),
            Err(EngineError::Conflict(_))
        ));
        assert!(matches!(
            reserve(&pool, "10.8.0.8".parse().unwrap(), |a| used.contains(&a)),
            Err(EngineError::InvalidParameter(_))
        ));
        assert!(reserve(&pool, "10.9.0.255".parse().unwrap(), |a| used.contains(&a)).is_err());
    }

    #[test]
    fn proc_routes_parse() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_proc_routes(text), vec![net("192.0.2.0/24")]);
    }
}
