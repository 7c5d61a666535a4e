//! Macvlan endpoints: `netd_mv_out` on the macvlan's egress inside the
//! container's namespace, and its `MV_EP` entry (see
//! `netd-ebpf/src/macvlan.rs`), keyed by the ifindex netd gave the macvlan
//! (`netd_common::macvlan::ifindex`).
//!
//! # Order
//! The entry is written before the program is attached, so the program
//! never sees the endpoint unknown; removing the entry (when the endpoint
//! goes) makes the program drop whatever the macvlan still sends.
//!
//! A macvlan's ifindex is its namespace's, so the program is attached from
//! a thread that has entered the namespace (netlink sockets talk to the
//! namespace they were made in); the thread exits right after.

use std::collections::HashSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::maps::{HashMap, MapData};
use aya::programs::SchedClassifier;
use netd_common::{EndpointInfo, ipv4_be, map_names};
use tracing::debug;

use super::map_access::{map_error, missing};
use super::{Dataplane, DataplaneError, Direction, LinkOpError, tc_filter};

/// Program attached to the egress of macvlan endpoints.
pub const MACVLAN_PROGRAM: &str = "netd_mv_out";

/// Runs `f` on a fresh thread that has entered the namespace `netns`
/// (`setns` changes only the calling thread; this one exits afterwards).
fn in_netns<T: Send + 'static>(
    netns: &File,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns = netns.try_clone()?;
    std::thread::Builder::new()
        .name("netd-netns-dp".into())
        .spawn(move || {
            // SAFETY: `ns` is an open namespace file; setns affects only
            // this dedicated thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            f()
        })?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread panicked")))
}

impl Dataplane {
    fn mv_ep(&mut self) -> Result<HashMap<&mut MapData, u32, EndpointInfo>, DataplaneError> {
        self.object_map_mut(map_names::MV_EP)
    }

    /// Writes the endpoint `ip`/`mac` on network `net_index` for the
    /// macvlan `ifindex`. Idempotent.
    pub fn set_macvlan_endpoint(
        &mut self,
        ifindex: u32,
        ip: Ipv4Addr,
        mac: [u8; 6],
        net_index: u32,
    ) -> Result<(), DataplaneError> {
        let info = EndpointInfo {
            ip: ipv4_be(ip.octets()),
            ifindex,
            net_index,
            mac,
            slot: 0,
        };
        self.mv_ep()?
            .insert(ifindex, info, 0)
            .map_err(map_error(map_names::MV_EP))?;
        self.macvlans_written.insert(ifindex);
        Ok(())
    }

    /// Removes the macvlan's entry; its program then drops what it sends.
    /// A missing entry is fine.
    pub fn remove_macvlan_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        self.macvlans_written.remove(&ifindex);
        match self.mv_ep()?.remove(&ifindex) {
            Err(e) if !missing(&e) => Err(map_error(map_names::MV_EP)(e)),
            _ => Ok(()),
        }
    }

    /// `netd_mv_out`, as loaded.
    pub fn macvlan_program(&self) -> Result<&SchedClassifier, DataplaneError> {
        self.ebpf
            .program(MACVLAN_PROGRAM)
            .ok_or(DataplaneError::MissingInObject {
                kind: "program",
                name: MACVLAN_PROGRAM,
            })?
            .try_into()
            .map_err(|source| DataplaneError::LoadProgram {
                program: MACVLAN_PROGRAM,
                source: Box::new(source),
            })
    }

    /// Attaches `netd_mv_out` to the egress of the macvlan `ifindex` in the
    /// namespace `netns` (netd's TC filter, replaced in place when there).
    pub fn attach_macvlan(&mut self, netns: &File, ifindex: u32) -> Result<(), DataplaneError> {
        let attach_err = |source: LinkOpError| DataplaneError::Attach {
            program: MACVLAN_PROGRAM,
            ifname: format!("macvlan {ifindex} in its container"),
            source: Box::new(source),
        };
        let fd = self
            .macvlan_program()?
            .fd()
            .map_err(|e| attach_err(e.into()))?
            .as_fd()
            .as_raw_fd();
        in_netns(netns, move || {
            let mut rtnl = tc_filter::Rtnl::open()?;
            rtnl.add_clsact(ifindex)?;
            // The egress hook: what the container sends on it.
            rtnl.set(ifindex, Direction::ToEndpoint, fd, MACVLAN_PROGRAM)
        })
        .map_err(|e| attach_err(e.into()))?;
        debug!(ifindex, "macvlan endpoint attached");
        Ok(())
    }

    /// Removes every `MV_EP` entry not written since the data path was
    /// loaded (call after re-applying every endpoint at start): those of
    /// endpoints a crash left without a record.
    pub fn retain_macvlan_endpoints(&mut self) -> Result<usize, DataplaneError> {
        let keep: HashSet<u32> = self.macvlans_written.clone();
        let mut map = self.mv_ep()?;
        let stale: Vec<u32> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep.contains(k))
            .collect();
        for key in &stale {
            match map.remove(key) {
                Err(e) if !missing(&e) => return Err(map_error(map_names::MV_EP)(e)),
                _ => {}
            }
        }
        Ok(stale.len())
    }

    /// Every macvlan endpoint entry, by ifindex: for tests and debugging.
    pub fn macvlan_endpoints(&self) -> Result<Vec<(u32, EndpointInfo)>, DataplaneError> {
        let map: HashMap<&MapData, u32, EndpointInfo> = self.object_map(map_names::MV_EP)?;
        let mut all: Vec<(u32, EndpointInfo)> = map.iter().filter_map(Result::ok).collect();
        all.sort_by_key(|(ifindex, _)| *ifindex);
        Ok(all)
    }
}
