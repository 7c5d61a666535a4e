//! Network namespaces: the bench's own (deleted on drop) and netd's (only
//! entered), commands run inside them, and a last-resort sweep.
//!
//! Commands enter a namespace with `setns` between fork and exec rather than
//! through `ip netns exec`: that costs no extra process and no sysfs
//! remount, so starting a client adds nothing to what it measures.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::cmd;

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A named network namespace. Owned ones (made by the bench) are deleted
/// when dropped; borrowed ones (netd's containers) are only entered.
pub struct Netns {
    pub name: String,
    file: File,
    owned: bool,
}

impl Netns {
    /// Creates `name` with `lo` up.
    pub fn create(name: &str) -> Result<Netns> {
        cmd::output(Command::new("ip").args(["netns", "add", name]))?;
        // Own it before anything else can fail, so that it gets deleted.
        let ns = Netns {
            name: name.to_string(),
            file: File::open(format!("{NETNS_DIR}/{name}"))
                .with_context(|| format!("cannot open namespace {name}"))?,
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A namespace someone else made (a netd container's).
    pub fn open(name: &str) -> Result<Netns> {
        Ok(Netns {
            name: name.to_string(),
            file: File::open(format!("{NETNS_DIR}/{name}"))
                .with_context(|| format!("no namespace {name}"))?,
            owned: false,
        })
    }

    /// Path of the namespace file, as CNI_NETNS wants it.
    pub fn path(&self) -> String {
        format!("{NETNS_DIR}/{}", self.name)
    }

    /// `program` to be run inside this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.file.as_raw_fd();
        // SAFETY: only setns(2), a plain syscall and so async-signal-safe,
        // runs between fork and exec; `fd` stays open until exec (it is
        // closed there by O_CLOEXEC, after it was used).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Moves the calling thread into this namespace (for work done in
    /// process, like loading programs next to a device of this namespace).
    pub fn enter_current_thread(&self) -> Result<()> {
        // SAFETY: setns on a valid namespace fd only changes this thread.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot enter namespace {}", self.name));
        }
        Ok(())
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        cmd::output(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Sets a sysctl of this namespace. `/proc/sys/net` shows the namespace
    /// of the task that opens it, so a thread of ours enters this namespace
    /// and writes it (no `sysctl` binary needed).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        self.in_thread(|| {
            std::fs::write(&path, value).with_context(|| format!("cannot set {key}={value}"))
        })
        .with_context(|| format!("in namespace {}", self.name))
    }

    /// Reads a sysctl of this namespace (see [`Netns::sysctl`]).
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        self.in_thread(|| {
            std::fs::read_to_string(&path)
                .map(|v| v.trim().to_string())
                .with_context(|| format!("cannot read {key}"))
        })
    }

    /// Runs `f` on a short-lived thread inside this namespace.
    pub fn in_thread<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter_current_thread()?;
                f()
            })
            .join()
            .unwrap_or_else(|_| bail!("a thread in namespace {} panicked", self.name))
        })
    }

    /// The first interface with an IPv4 address other than loopback.
    pub fn endpoint(&self) -> Result<Endpoint> {
        let links: Value = serde_json::from_str(&self.ip(&["-j", "addr", "show"])?)?;
        for link in links.as_array().into_iter().flatten() {
            let ifname = link["ifname"].as_str().unwrap_or_default();
            if ifname == "lo" {
                continue;
            }
            let inet = link["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["family"] == "inet");
            let Some(inet) = inet else { continue };
            let ip: Ipv4Addr = inet["local"].as_str().unwrap_or_default().parse()?;
            let mac = parse_mac(link["address"].as_str().unwrap_or_default())?;
            return Ok(Endpoint {
                ifname: ifname.to_string(),
                ip,
                mac,
            });
        }
        bail!(
            "namespace {} has no interface with an IPv4 address",
            self.name
        )
    }

    /// Packets received by `ifname` so far (the device's own counter).
    pub fn rx_packets(&self, ifname: &str) -> Result<u64> {
        let links: Value =
            serde_json::from_str(&self.ip(&["-j", "-s", "link", "show", "dev", ifname])?)?;
        links[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .with_context(|| format!("no rx counter for {ifname} in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            // Deleting the namespace deletes its links (and their veth peers).
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .output();
        }
    }
}

/// `net.ipv4.tcp_tw_reuse` -> `/proc/sys/net/ipv4/tcp_tw_reuse`.
fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// One end of a path under test, as seen from inside its namespace.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC address {text:?}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC address {text:?}"))
}

/// Deletes every namespace whose name starts with `<tag>-` when dropped: a
/// safety net behind the guards (the bench's links all live inside its
/// namespaces, so this removes them too).
pub struct Sweep {
    tag: String,
}

impl Sweep {
    /// Also sweeps right away: a namespace with our tag can only be left
    /// over from a killed run that had our pid.
    pub fn new(tag: &str) -> Sweep {
        let sweep = Sweep {
            tag: format!("{tag}-"),
        };
        sweep.sweep();
        sweep
    }

    fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&self.tag) {
                eprintln!("bench: removing leftover namespace {name}");
                let _ = Command::new("ip").args(["netns", "del", &name]).output();
            }
        }
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        self.sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:42:c6:13:10:02").unwrap(),
            [2, 0x42, 0xc6, 0x13, 0x10, 2]
        );
        assert!(parse_mac("02:42").is_err());
    }
}
