//! A CNI attachment, `(CNI_CONTAINERID, CNI_IFNAME)`, is one netd
//! container in the runtime's namespace. Its name is derived from the pair,
//! so DEL and CHECK find it with one lookup, and the pair (with the network
//! configuration's name, which scopes GC) is recorded in its labels, so a
//! lookup that lands on some other container (a user's, or another
//! attachment's after a collision of derived names) never touches it.

use std::collections::BTreeMap;
use std::hash::Hasher;

use fnv::FnvHasher;

/// Labels of a netd container that is a CNI attachment.
pub const LABEL_CONTAINER_ID: &str = "netd.cni.container-id";
pub const LABEL_IFNAME: &str = "netd.cni.ifname";
/// The network configuration's `name`.
pub const LABEL_NETWORK: &str = "netd.cni.network";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

impl Attachment {
    pub fn new(container_id: String, ifname: String) -> Attachment {
        Attachment {
            container_id,
            ifname,
        }
    }

    /// `cni-` + the container id's first 12 characters (what runtimes show
    /// as the short id) + 8 hex digits of FNV-1a over the whole pair: a
    /// valid container name, stable across versions of the plugin, short
    /// enough for a DNS label, and distinct for ids that share a prefix.
    pub fn container_name(&self) -> String {
        let mut h = FnvHasher::default();
        h.write(self.container_id.as_bytes());
        h.write(&[0]);
        h.write(self.ifname.as_bytes());
        let short: String = self.container_id.chars().take(12).collect();
        format!("cni-{short}-{:08x}", h.finish() as u32)
    }

    pub fn labels(&self, network_config: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_CONTAINER_ID.into(), self.container_id.clone()),
            (LABEL_IFNAME.into(), self.ifname.clone()),
            (LABEL_NETWORK.into(), network_config.to_string()),
        ])
    }

    /// The attachment a container's labels record, if it is one.
    pub fn of(labels: &BTreeMap<String, String>) -> Option<Attachment> {
        Some(Attachment::new(
            labels.get(LABEL_CONTAINER_ID)?.clone(),
            labels.get(LABEL_IFNAME)?.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::valid_name;

    #[test]
    fn names_are_stable_valid_and_distinct() {
        let a = Attachment::new("3fa4b2c1d0e9".repeat(5), "eth0".into());
        let name = a.container_name();
        assert!(name.starts_with("cni-3fa4b2c1d0e9-"), "{name}");
        assert_eq!(name.len(), 25);
        assert!(valid_name(&name));
        // Fixed forever: DEL after an upgrade of the plugin finds what an
        // older one added.
        assert_eq!(
            Attachment::new("c1".into(), "eth0".into()).container_name(),
            "cni-c1-bfe94942"
        );
        let others = [
            Attachment::new("3fa4b2c1d0e9".repeat(5), "eth1".into()),
            Attachment::new("3fa4b2c1d0e9".repeat(4), "eth0".into()),
        ];
        for o in others {
            assert_ne!(o.container_name(), name);
        }
    }

    #[test]
    fn labels_record_the_attachment() {
        let a = Attachment::new("c1".into(), "net1".into());
        let labels = a.labels("podnet");
        assert_eq!(labels[LABEL_NETWORK], "podnet");
        assert_eq!(Attachment::of(&labels), Some(a));
        assert_eq!(Attachment::of(&BTreeMap::new()), None);
    }
}
