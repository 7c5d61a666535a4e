//! netd: container networking with the packet path in eBPF.
//!
//! Layout (see the README's architecture section):
//! - `cli`: the `netd` command line; talks HTTP to the daemon.
//! - `api`: the Docker-compatible HTTP API on the unix socket.
//! - `engine`: the single owner of state; validates, persists, applies.
//! - `store`: crash-safe persistence of the desired state.
//! - `ipam`: address pools and allocation, derived from the state.
//! - `netlink`: namespaces, links, addresses and routes (rtnetlink).
//! - `sandbox`: processes inside container namespaces.
//! - `dataplane`: loading, pinning and attaching the eBPF programs; map access.
//! - `dns`: the embedded DNS server of user-defined networks.
//! - `uplink`: the interface to the outside (masquerade, published ports).
//! - `daemon`, `config`, `metrics`, `notify`: the long-running process.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod dns;
pub mod engine;
pub mod error;
pub mod ipam;
pub mod metrics;
pub mod model;
pub mod netlink;
pub mod notify;
pub mod sandbox;
pub mod store;
pub mod uplink;
