//! netd: container networking with the packet path in eBPF.
//!
//! Layout (see the README's architecture section):
//! - `cli`: the `netd` command line; talks HTTP to the daemon.
//! - `cni`: `netd-cni`, the CNI plugin; a client of the daemon's API too.
//! - `api`: the Docker-compatible HTTP API on the unix socket.
//! - `engine`: the single owner of state, a command loop; validates,
//!   persists, applies, and publishes snapshots for readers.
//! - `drivers`: one module per network driver behind one trait.
//! - `cluster`: the state hosts share, in etcd (overlay networks, their
//!   endpoints and services, host membership).
//! - `store`: crash-safe persistence of the desired state.
//! - `state_dir`: the state directory: private to root, locked by one daemon.
//! - `ipam`: address pools and allocation, derived from the state.
//! - `names`: the names of the kernel objects netd makes.
//! - `netlink`: namespaces, links, addresses and routes (rtnetlink).
//! - `sandbox`: processes inside container namespaces.
//! - `process`: which process a record names; stopping it and no other.
//! - `dataplane`: loading, pinning and attaching the eBPF programs; map access.
//! - `dns`: the embedded DNS server of user-defined networks.
//! - `traffic`: counters joined with names, for `netd stats` and metrics.
//! - `uplink`: the interface to the outside (masquerade, published ports).
//! - `cleanup`: removing what a stopped daemon left (`netd system cleanup`).
//! - `daemon`, `config`, `metrics`, `notify`, `reload`: the long-running
//!   process.

pub mod api;
pub mod cleanup;
pub mod cli;
pub mod cluster;
pub mod cni;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod dns;
pub mod drivers;
pub mod engine;
pub mod error;
pub mod ipam;
pub mod metrics;
pub mod model;
pub mod names;
pub mod netlink;
pub mod notify;
pub mod process;
pub mod reload;
pub mod sandbox;
pub mod state_dir;
pub mod store;
pub mod traffic;
pub mod uplink;
