//! Names of the kernel objects netd creates. Every name starts with the
//! daemon's prefix followed by a kind marker, so that a daemon finds its own
//! leftovers (and only those) after a crash, and several daemons with
//! different prefixes can share one machine (as the tests do).
//!
//! - `{prefix}0`: the predefined `bridge` network's device (Docker's docker0)
//! - `{prefix}-{id}`: a user network's bridge device (Docker's br-{id})
//! - `{prefix}v{id}`: the host side of an endpoint's veth pair
//! - `{prefix}vx`: the host's VXLAN device (overlay networks)
//! - `{prefix}-{name}`: a container's network namespace under /run/netns
//!
//! Prefixes must not be prefixes of one another (the tests use fixed-length
//! random ones).

use crate::model::Network;

/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

pub fn bridge(prefix: &str, net: &Network) -> String {
    if net.predefined {
        format!("{prefix}0")
    } else {
        format!("{prefix}-{}", &net.id[..IFNAME_MAX - prefix.len() - 1])
    }
}

/// The host's one VXLAN device, which every overlay network's traffic
/// between hosts goes through. (`x` is no hex digit, so no veth name
/// clashes with it.)
pub fn vxlan(prefix: &str) -> String {
    format!("{prefix}vx")
}

pub fn host_veth(prefix: &str, endpoint_id: &str) -> String {
    format!("{prefix}v{}", &endpoint_id[..IFNAME_MAX - prefix.len() - 1])
}

pub fn netns(prefix: &str, container_name: &str) -> String {
    format!("{prefix}-{container_name}")
}

/// True for link names this daemon creates (bridges and host veths).
pub fn is_own_link(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest == "0" || rest.starts_with('-') || rest.starts_with('v'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_are_recognised() {
        let id = "0123456789abcdef".repeat(4);
        let v = host_veth("abcd", &id);
        assert_eq!(v.len(), 15);
        assert!(is_own_link("abcd", &v));
        assert!(is_own_link("abcd", "abcd0"));
        assert!(is_own_link("abcd", "abcd-0123456789"));
        assert!(!is_own_link("abcd", "abcde"));
        assert!(!is_own_link("abcd", "eth0"));
        assert!(!is_own_link("net", "netd0"));
    }
}
