//! The key layout under the prefix (documented in the module doc of
//! `cluster`): every key is built here and only here.

use std::collections::HashSet;
use std::hash::Hash;
use std::net::Ipv4Addr;

use etcd_client::KeyValue;

use ipnet::Ipv4Net;

use crate::error::EngineError;
use crate::model::{Proto, valid_name};

/// Which record a key under `state/` holds; what a delete event names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordId {
    Host(String),
    Network(String),
    Endpoint { network_id: String, id: String },
    Service(String),
}

/// The keys of one cluster (one prefix).
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

/// The default prefix: several clusters share an etcd under different ones.
pub const DEFAULT_PREFIX: &str = "/netd";

impl Keys {
    /// Checks the prefix: `/` and then path segments, without a trailing `/`.
    pub(super) fn new(prefix: &str) -> Result<Keys, EngineError> {
        let segments_ok = prefix
            .strip_prefix('/')
            .is_some_and(|rest| rest.split('/').all(valid_name));
        if !segments_ok {
            return Err(EngineError::InvalidParameter(format!(
                "invalid cluster store prefix \"{prefix}\": expected /NAME[/NAME...] with names \
                 of [a-zA-Z0-9][a-zA-Z0-9_.-]* and no trailing slash, e.g. {DEFAULT_PREFIX}"
            )));
        }
        Ok(Keys {
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// Everything the watch and the load cover: the records.
    pub(super) fn state(&self) -> String {
        self.key("state/")
    }

    pub(super) fn hosts(&self) -> String {
        self.key("state/hosts/")
    }

    pub(super) fn host(&self, id: &str) -> String {
        self.key(&format!("state/hosts/{id}"))
    }

    pub(super) fn network(&self, id: &str) -> String {
        self.key(&format!("state/networks/{id}"))
    }

    pub(super) fn endpoints(&self) -> String {
        self.key("state/endpoints/")
    }

    pub(super) fn endpoints_on(&self, network_id: &str) -> String {
        self.key(&format!("state/endpoints/{network_id}/"))
    }

    pub(super) fn endpoint(&self, network_id: &str, id: &str) -> String {
        self.key(&format!("state/endpoints/{network_id}/{id}"))
    }

    pub(super) fn service(&self, id: &str) -> String {
        self.key(&format!("state/services/{id}"))
    }

    pub(super) fn known_hosts(&self) -> String {
        self.key("known-hosts/")
    }

    pub(super) fn known_host(&self, id: &str) -> String {
        self.key(&format!("known-hosts/{id}"))
    }

    pub(super) fn network_name(&self, name: &str) -> String {
        self.key(&format!("claims/network-names/{name}"))
    }

    pub(super) fn subnets(&self) -> String {
        self.key("claims/subnets/")
    }

    pub(super) fn subnet(&self, net: &Ipv4Net) -> String {
        self.key(&format!(
            "claims/subnets/{}-{}",
            net.network(),
            net.prefix_len()
        ))
    }

    pub(super) fn vnis(&self) -> String {
        self.key("claims/vnis/")
    }

    pub(super) fn vni(&self, vni: u32) -> String {
        self.key(&format!("claims/vnis/{vni}"))
    }

    pub(super) fn addresses(&self, network_id: &str) -> String {
        self.key(&format!("claims/addresses/{network_id}/"))
    }

    pub(super) fn address(&self, network_id: &str, ip: Ipv4Addr) -> String {
        self.key(&format!("claims/addresses/{network_id}/{ip}"))
    }

    pub(super) fn names(&self, network_id: &str) -> String {
        self.key(&format!("claims/names/{network_id}/"))
    }

    pub(super) fn name(&self, network_id: &str, name: &str) -> String {
        self.key(&format!("claims/names/{network_id}/{name}"))
    }

    pub(super) fn service_name(&self, name: &str) -> String {
        self.key(&format!("claims/service-names/{name}"))
    }

    pub(super) fn port(&self, proto: Proto, port: u16) -> String {
        self.key(&format!("claims/ports/{}-{port}", proto.as_str()))
    }

    /// The record a key under `state/` names; `None` for anything else
    /// (keys of a newer layout are skipped, not misread).
    pub(super) fn parse(&self, key: &str) -> Option<RecordId> {
        let rest = key.strip_prefix(&self.state())?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["hosts", id] => Some(RecordId::Host(id.to_string())),
            ["networks", id] => Some(RecordId::Network(id.to_string())),
            ["endpoints", network_id, id] => Some(RecordId::Endpoint {
                network_id: network_id.to_string(),
                id: id.to_string(),
            }),
            ["services", id] => Some(RecordId::Service(id.to_string())),
            _ => None,
        }
    }

    /// The subnet a key from `subnets()` claims.
    pub(super) fn parse_subnet(&self, key: &str) -> Option<Ipv4Net> {
        let (addr, len) = key.strip_prefix(&self.subnets())?.split_once('-')?;
        Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()
    }

    pub(super) fn parse_vni(&self, key: &str) -> Option<u32> {
        key.strip_prefix(&self.vnis())?.parse().ok()
    }

    pub(super) fn parse_address(&self, network_id: &str, key: &str) -> Option<Ipv4Addr> {
        key.strip_prefix(&self.addresses(network_id))?.parse().ok()
    }
}

/// What the claims among `found` claim, read back from their keys by
/// `parse` (`Keys::parse_subnet`, ...).
pub(super) fn claimed<T: Eq + Hash>(
    found: &[KeyValue],
    parse: impl Fn(&str) -> Option<T>,
) -> HashSet<T> {
    found
        .iter()
        .filter_map(|kv| parse(std::str::from_utf8(kv.key()).ok()?))
        .collect()
}

/// Checks a name or id before it becomes part of a key: a `/` in it would
/// address another record.
pub(super) fn key_safe(what: &str, value: &str) -> Result<(), EngineError> {
    if valid_name(value) {
        Ok(())
    } else {
        Err(EngineError::InvalidParameter(format!(
            "invalid {what} \"{value}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(Keys::new("/netd").is_ok());
        assert!(Keys::new("/clusters/a").is_ok());
        for bad in ["", "/", "netd", "/netd/", "//netd", "/a b"] {
            let e = Keys::new(bad).unwrap_err().to_string();
            assert!(e.contains("expected /NAME"), "{bad}: {e}");
        }
    }

    #[test]
    fn record_keys_parse_back() {
        let k = Keys::new("/x").unwrap();
        for id in [
            RecordId::Host("h1".into()),
            RecordId::Network("n1".into()),
            RecordId::Endpoint {
                network_id: "n1".into(),
                id: "e1".into(),
            },
            RecordId::Service("s1".into()),
        ] {
            let key = match &id {
                RecordId::Host(h) => k.host(h),
                RecordId::Network(n) => k.network(n),
                RecordId::Endpoint { network_id, id } => k.endpoint(network_id, id),
                RecordId::Service(s) => k.service(s),
            };
            assert_eq!(k.parse(&key), Some(id));
        }
        assert_eq!(k.parse("/x/state/future/kind/a/b"), None);
        assert_eq!(k.parse(&k.known_host("h1")), None);
        // Another cluster's prefix that starts the same way.
        assert_eq!(Keys::new("/x2").unwrap().parse(&k.host("h1")), None);
    }

    #[test]
    fn claims_parse_back() {
        let k = Keys::new("/x").unwrap();
        let net: Ipv4Net = "10.0.3.0/24".parse().unwrap();
        assert_eq!(k.parse_subnet(&k.subnet(&net)), Some(net));
        assert_eq!(k.parse_vni(&k.vni(4097)), Some(4097));
        let ip = Ipv4Addr::new(10, 0, 3, 7);
        assert_eq!(k.parse_address("n1", &k.address("n1", ip)), Some(ip));
    }
}
