//! Docker's driver options (`docker network create -o KEY=VALUE`) that
//! more than one driver or the engine reads. Every driver checks its
//! options in `validate` and refuses the ones it does not implement:
//! Docker ignores unknown options, but an ignored
//! `com.docker.network.bridge.enable_icc=false` would look like isolation
//! and give none.

use std::net::Ipv4Addr;

use crate::dataplane::NetworkPolicy;
use crate::error::{EngineError, Result};
use crate::model::Network;

/// The MTU of a network's endpoints (both ends of each veth, and the
/// bridge).
pub const MTU: &str = "com.docker.network.driver.mtu";

/// The host address `-p` binds to when it names none (Docker's default is
/// every address).
pub const HOST_BINDING_IPV4: &str = "com.docker.network.bridge.host_binding_ipv4";

/// Whether a bridge network's containers reach each other (Docker's
/// default: true).
pub const ENABLE_ICC: &str = "com.docker.network.bridge.enable_icc";

/// Whether what a bridge network's containers send outside is
/// masqueraded (Docker's default: true).
pub const ENABLE_IP_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";

/// Docker 28's gateway mode of a bridge network: `nat` (the default:
/// masquerade and published ports), `nat-unprotected`, `routed` or
/// `isolated`.
pub const GATEWAY_MODE_IPV4: &str = "com.docker.network.bridge.gateway_mode_ipv4";

/// IPv4's minimum MTU that every link must carry (RFC 791).
const MIN_MTU: u32 = 576;

/// A valid [`MTU`] value.
pub fn parse_mtu(value: &str) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(mtu) if (MIN_MTU..=65535).contains(&mtu) => Ok(mtu),
        _ => Err(EngineError::InvalidParameter(format!(
            "invalid MTU {value:?} in -o {MTU}: use {MIN_MTU} to 65535"
        ))),
    }
}

/// The network's [`MTU`] option, if set (validated at create).
pub fn mtu(net: &Network) -> Result<Option<u32>> {
    net.options.get(MTU).map(|v| parse_mtu(v)).transpose()
}

/// A valid [`HOST_BINDING_IPV4`] value: an address of this host, or
/// 0.0.0.0 for all of them (`None`).
pub fn parse_host_binding(value: &str) -> Result<Option<Ipv4Addr>> {
    let ip: Ipv4Addr = value.parse().map_err(|_| {
        EngineError::InvalidParameter(format!(
            "invalid -o {HOST_BINDING_IPV4}={value}: not an IPv4 address"
        ))
    })?;
    if ip.is_unspecified() {
        return Ok(None);
    }
    if !crate::uplink::is_host_address(ip) {
        return Err(EngineError::InvalidParameter(format!(
            "invalid -o {HOST_BINDING_IPV4}={value}: {ip} is no address of this host"
        )));
    }
    Ok(Some(ip))
}

/// The address `-p` binds to on `net` when it names none: the network's
/// [`HOST_BINDING_IPV4`] option, else every address (`None`).
pub fn host_binding(net: &Network) -> Option<Ipv4Addr> {
    net.options
        .get(HOST_BINDING_IPV4)
        .and_then(|v| v.parse::<Ipv4Addr>().ok())
        .filter(|ip| !ip.is_unspecified())
}

/// A boolean option's value, spelled as Go's `strconv.ParseBool` (how
/// Docker reads them) accepts.
pub fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(EngineError::InvalidParameter(format!(
            "invalid -o {key}={value}: not a boolean (true or false)"
        ))),
    }
}

/// A [`GATEWAY_MODE_IPV4`] value netd implements: only `nat`, what it
/// always does. `routed` (containers addressed directly from outside) and
/// `isolated` (no gateway) are refused rather than approximated.
pub fn check_gateway_mode(value: &str) -> Result<()> {
    match value {
        "nat" => Ok(()),
        "nat-unprotected" | "routed" | "isolated" => Err(EngineError::InvalidParameter(format!(
            "-o {GATEWAY_MODE_IPV4}={value} is not supported by netd's bridge driver: \
             only nat (masquerade, or none with enable_ip_masquerade=false)"
        ))),
        _ => Err(EngineError::InvalidParameter(format!(
            "invalid -o {GATEWAY_MODE_IPV4}={value}: use nat, nat-unprotected, routed or isolated"
        ))),
    }
}

/// What the datapath lets `net`'s endpoints do: `--internal`, and the
/// [`ENABLE_ICC`] and [`ENABLE_IP_MASQUERADE`] options (validated at
/// create; absent means Docker's default, true).
pub fn policy(net: &Network) -> NetworkPolicy {
    let enabled = |key| {
        net.options
            .get(key)
            .is_none_or(|v| parse_bool(key, v).unwrap_or(true))
    };
    let mut policy = if net.internal {
        NetworkPolicy::INTERNAL
    } else {
        NetworkPolicy::OPEN
    };
    if !enabled(ENABLE_ICC) {
        policy = policy.without_icc();
    }
    if !enabled(ENABLE_IP_MASQUERADE) {
        policy = policy.without_masquerade();
    }
    policy
}

/// The error for an option the driver does not implement.
pub fn unsupported(driver: &str, key: &str) -> EngineError {
    EngineError::InvalidParameter(format!(
        "option {key} is not supported by netd's {driver} driver"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_read_as_docker_reads_them() {
        assert!(parse_bool(ENABLE_ICC, "True").unwrap());
        assert!(!parse_bool(ENABLE_ICC, "0").unwrap());
        let e = parse_bool(ENABLE_ICC, "no").unwrap_err().to_string();
        assert!(e.contains("not a boolean"), "{e}");
    }

    #[test]
    fn mtus_are_checked() {
        assert_eq!(parse_mtu("1400").unwrap(), 1400);
        for bad in ["", "abc", "575", "65536", "-1", "1e3"] {
            assert!(parse_mtu(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_bindings_must_be_host_addresses() {
        assert_eq!(parse_host_binding("0.0.0.0").unwrap(), None);
        assert_eq!(
            parse_host_binding("127.0.0.1").unwrap(),
            Some(Ipv4Addr::LOCALHOST)
        );
        let e = parse_host_binding("198.51.100.254").unwrap_err();
        assert!(e.to_string().contains("is no address of this host"), "{e}");
        assert!(parse_host_binding("localhost").is_err());
    }
}
