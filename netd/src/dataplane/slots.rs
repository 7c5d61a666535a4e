//! Endpoint slots: the index of an endpoint's elements in the arrays the
//! programs read without hashing (`EP_COUNTERS`, `LB_BACKENDS`), carried in
//! its `EndpointInfo::slot`.
//!
//! The truth is in `EP_BY_IF` (every entry carries its slot); this is the
//! daemon's index of it, rebuilt from the map on load, so that assigning a
//! slot or listing the backend marks costs no map walk. Slot 0 means "none"
//! and is never assigned.

use std::collections::{BTreeSet, HashMap};

use netd_common::limits::ENDPOINT_SLOTS;

/// Which endpoint (host-side ifindex) holds which slot, and which of them
/// are marked as a service's backend.
#[derive(Debug, Default)]
pub(super) struct Slots {
    by_ifindex: HashMap<u32, u16>,
    used: BTreeSet<u16>,
    /// Endpoints whose `LB_BACKENDS` element is 1.
    backends: BTreeSet<u32>,
}

impl Slots {
    /// The slots `EP_BY_IF` holds. An entry without a slot (written by an
    /// older netd) or with one another entry already holds gets none here,
    /// so the next `set_endpoint` assigns it a fresh one.
    pub(super) fn from_entries(entries: impl IntoIterator<Item = (u32, u16)>) -> Slots {
        let mut slots = Slots::default();
        for (ifindex, slot) in entries {
            if slot != 0 && u32::from(slot) < ENDPOINT_SLOTS && slots.used.insert(slot) {
                slots.by_ifindex.insert(ifindex, slot);
            }
        }
        slots
    }

    pub(super) fn get(&self, ifindex: u32) -> Option<u16> {
        self.by_ifindex.get(&ifindex).copied()
    }

    /// The endpoint's slot, and whether it was assigned just now (the
    /// lowest free one; its array elements then hold a previous owner's
    /// values and must be reset). `None` when every slot is taken.
    pub(super) fn assign(&mut self, ifindex: u32) -> Option<(u16, bool)> {
        if let Some(slot) = self.get(ifindex) {
            return Some((slot, false));
        }
        let slot = (1..)
            .take_while(|s| u32::from(*s) < ENDPOINT_SLOTS)
            .find(|s| !self.used.contains(s))?;
        self.used.insert(slot);
        self.by_ifindex.insert(ifindex, slot);
        Some((slot, true))
    }

    /// Frees the endpoint's slot (and forgets its backend mark).
    pub(super) fn release(&mut self, ifindex: u32) -> Option<u16> {
        let slot = self.by_ifindex.remove(&ifindex)?;
        self.used.remove(&slot);
        self.backends.remove(&ifindex);
        Some(slot)
    }

    /// Every (ifindex, slot).
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, u16)> + '_ {
        self.by_ifindex.iter().map(|(i, s)| (*i, *s))
    }

    pub(super) fn set_backend(&mut self, ifindex: u32, marked: bool) {
        if marked {
            self.backends.insert(ifindex);
        } else {
            self.backends.remove(&ifindex);
        }
    }

    /// Endpoints marked as backends, ascending.
    pub(super) fn backends(&self) -> impl Iterator<Item = u32> + '_ {
        self.backends.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_unique_reused_and_never_zero() {
        let mut slots = Slots::from_entries([(10, 1), (11, 0), (12, 1), (13, 3)]);
        assert_eq!(slots.get(10), Some(1));
        assert_eq!(slots.get(11), None, "no slot yet");
        assert_eq!(slots.get(12), None, "slot 1 was taken");
        assert_eq!(slots.assign(11), Some((2, true)), "the lowest free slot");
        assert_eq!(slots.assign(12), Some((4, true)));
        assert_eq!(slots.assign(10), Some((1, false)), "kept");
        assert_eq!(slots.release(10), Some(1));
        assert_eq!(slots.assign(20), Some((1, true)), "a freed slot is reused");
        assert_eq!(slots.release(99), None);
    }

    #[test]
    fn assignment_stops_at_the_array_size() {
        let mut slots = Slots::default();
        for ifindex in 1..ENDPOINT_SLOTS {
            assert!(slots.assign(ifindex).is_some());
        }
        assert_eq!(slots.assign(ENDPOINT_SLOTS), None);
    }

    #[test]
    fn releasing_forgets_the_backend_mark() {
        let mut slots = Slots::default();
        slots.assign(7);
        slots.assign(8);
        slots.set_backend(7, true);
        slots.set_backend(8, true);
        slots.set_backend(8, false);
        assert_eq!(slots.backends().collect::<Vec<_>>(), [7]);
        slots.release(7);
        assert_eq!(slots.backends().count(), 0);
    }
}
