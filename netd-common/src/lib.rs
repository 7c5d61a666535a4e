//! Types shared by the eBPF programs (`netd-ebpf`) and the daemon (`netd`).
//!
//! Everything here is the *wire format* of a BPF map: the kernel side writes
//! these bytes, user space reads them (or the other way round), and pinned maps
//! outlive the daemon, so a layout change is an on-disk format change. Hence:
//! - every map key/value is `#[repr(C)]`, `Copy`, and has explicit padding
//!   fields (the kernel compares hash keys byte for byte, and uninitialised
//!   padding would make two equal keys differ);
//! - no `bool`/`Option`/enums inside map values (not every bit pattern the
//!   kernel can hand back is valid for them); enums travel as `u32`;
//! - map names live in [`map_names`] and map sizes in [`limits`] so both
//!   sides agree, and a layout test beside each type pins its size and
//!   offsets down.
//!
//! One module per concern. The endpoint, network, counter and published
//! port types are re-exported here (`netd_common::EndpointInfo`); the
//! features' own types keep their module's name in their path
//! (`netd_common::nat::CtKey`, `lb::SvcKey`, `overlay::RemoteEndpoint`,
//! `sock::UdpRevKey`, `macvlan::ifindex`).
//!
//! The `user` feature adds `aya::Pod` impls for the daemon; the eBPF build
//! leaves it off so this crate stays `no_std` without aya.
#![no_std]

pub mod ip_summed;
pub mod lb;
pub mod limits;
pub mod macvlan;
pub mod map_names;
pub mod nat;
pub mod overlay;
pub mod sock;

mod addr;
mod endpoint;
mod publish;
mod stats;

pub use addr::*;
pub use endpoint::*;
pub use publish::*;
pub use stats::*;
