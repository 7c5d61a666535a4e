//! `host`: the container shares the host's network namespace, so there is
//! nothing to plumb. Only the predefined network exists, as in Docker.

use super::{Attachment, NetworkDriver, Predefined};

pub struct Host;

impl NetworkDriver for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    fn attachment(&self) -> Attachment {
        Attachment::HostNamespace
    }

    fn predefined(&self) -> Option<Predefined> {
        Some(Predefined {
            name: "host",
            subnet: None,
            options: Default::default(),
        })
    }

    fn user_creatable(&self) -> bool {
        false
    }
}
