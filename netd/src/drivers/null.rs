//! `null` (the `none` network): the container gets a namespace of its own
//! with loopback only. Only the predefined network exists, as in Docker.

use super::{Attachment, NetworkDriver, Predefined};

pub struct Null;

impl NetworkDriver for Null {
    fn name(&self) -> &'static str {
        "null"
    }

    fn attachment(&self) -> Attachment {
        Attachment::Loopback
    }

    fn predefined(&self) -> Option<Predefined> {
        Some(Predefined {
            name: "none",
            subnet: None,
            options: Default::default(),
        })
    }

    fn user_creatable(&self) -> bool {
        false
    }
}
