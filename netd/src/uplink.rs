//! The uplink: the interface that leads to "the outside" (`--uplink`, by
//! default the interface of the default route). Outbound traffic is
//! masqueraded to its address and published ports answer on it.

use std::ffi::CStr;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub ifname: String,
    pub ifindex: u32,
    pub addr: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("uplink interface {0} not found; check `ip link` or set --uplink")]
    NotFound(String),
    #[error("uplink interface {0} has no IPv4 address; add one or set --uplink")]
    NoAddress(String),
}

/// The configured uplink, or the default route's interface; `Ok(None)` when
/// nothing was configured and there is no default route (a host with no
/// outside: outbound NAT and published ports from outside stay off).
pub fn resolve(configured: Option<&str>) -> Result<Option<Uplink>, UplinkError> {
    let ifname = match configured {
        Some(name) => name.to_string(),
        None => match default_route_interface() {
            Some(name) => name,
            None => return Ok(None),
        },
    };
    // Not from sysfs: that shows another namespace's interfaces when the
    // daemon was entered into its namespace with `nsenter`.
    let ifindex = crate::dataplane::ifindex_of(&ifname)
        .ok_or_else(|| UplinkError::NotFound(ifname.clone()))?;
    let addr = ipv4_of(&ifname).ok_or_else(|| UplinkError::NoAddress(ifname.clone()))?;
    Ok(Some(Uplink {
        ifname,
        ifindex,
        addr,
    }))
}

/// The interface that holds `addr`, if any: the underlay interface of the
/// overlay, found by the address other hosts reach this one on.
pub fn interface_of(addr: Ipv4Addr) -> Option<String> {
    interface_addresses()
        .into_iter()
        .find(|(_, a)| *a == addr)
        .map(|(name, _)| name)
}

/// The interface of the IPv4 default route, from /proc/net/route.
fn default_route_interface() -> Option<String> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000")).then(|| f[0].to_string())
    })
}

/// The first IPv4 address of `ifname`.
fn ipv4_of(ifname: &str) -> Option<Ipv4Addr> {
    interface_addresses()
        .into_iter()
        .find(|(name, _)| name == ifname)
        .map(|(_, a)| a)
}

/// Every IPv4 address of the host outside 127.0.0.0/8 (the socket hooks
/// treat them all as "this host" for published ports, like Docker).
pub fn host_addresses() -> Vec<Ipv4Addr> {
    interface_addresses()
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| !a.is_loopback())
        .collect()
}

/// Whether `ip` is an address a socket of the host can bind: a loopback
/// one, or one of an interface's.
pub fn is_host_address(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || interface_addresses().iter().any(|(_, a)| *a == ip)
}

/// (interface, IPv4 address) pairs, from getifaddrs.
fn interface_addresses() -> Vec<(String, Ipv4Addr)> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `addrs` with a list we free below.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut cur = addrs;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr.
        let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
        if family != libc::AF_INET {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        found.push((
            name.to_string_lossy().into_owned(),
            Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        ));
    }
    // SAFETY: freeing the list getifaddrs allocated, once.
    unsafe { libc::freeifaddrs(addrs) };
    found
}

/// The host's ephemeral ports (`net.ipv4.ip_local_port_range`) that fall
/// in netd's masquerade search range and are not reserved
/// (`net.ipv4.ip_local_reserved_ports`), as `(first, last)`: a connection
/// of the host from such a port to the same server as a container's
/// masqueraded flow would lose its replies to the container. `None` on a
/// default host (32768-60999), or when the files cannot be read.
pub fn ephemeral_overlap() -> Option<(u16, u16)> {
    let read = |name| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).ok();
    let range = read("ip_local_port_range")?;
    let reserved = read("ip_local_reserved_ports").unwrap_or_default();
    overlap_of(&range, &reserved)
}

fn overlap_of(range: &str, reserved: &str) -> Option<(u16, u16)> {
    use netd_common::nat::{PORT_MAX, PORT_MIN};
    let mut bounds = range.split_whitespace().map(|p| p.parse::<u16>().ok());
    let (lo, hi) = (bounds.next()??, bounds.next()??);
    // The range ends at the last port there is.
    const _: () = assert!(PORT_MAX == u16::MAX);
    let (first, last) = (lo.max(PORT_MIN), hi);
    if first > last {
        return None;
    }
    // Comma-separated ports and inclusive ranges, e.g. "61000-65535,8080".
    let reserved: Vec<(u16, u16)> = reserved
        .trim()
        .split(',')
        .filter_map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect();
    let open = |p: &u16| !reserved.iter().any(|(a, b)| (a..=b).contains(&p));
    Some(((first..=last).find(open)?, (first..=last).rev().find(open)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_address_and_missing_links_are_reported() {
        let lo = resolve(Some("lo")).unwrap().unwrap();
        assert_eq!(lo.addr, Ipv4Addr::LOCALHOST);
        assert_eq!(lo.ifindex, 1);
        assert!(matches!(
            resolve(Some("nosuch0")),
            Err(UplinkError::NotFound(_))
        ));
    }
    #[test]
    fn ephemeral_ports_overlapping_the_masquerade_range_are_found() {
        assert_eq!(overlap_of("32768\t60999\n", ""), None);
        assert_eq!(overlap_of("1024\t65535\n", "\n"), Some((61000, 65535)));
        assert_eq!(overlap_of("1024\t65535\n", "61000-65535\n"), None);
        assert_eq!(
            overlap_of("1024\t62000\n", "61000-61999"),
            Some((62000, 62000))
        );
        assert_eq!(overlap_of("garbage", ""), None);
    }
}
