//! The few sysctls netd sets: IPv6 off on the links and namespaces it makes,
//! so that nothing sends router solicitations, DAD or MLD multicast through
//! a bridge that must never flood.
//!
//! `/proc/sys/net` shows the namespace of the thread that *opens* the file,
//! so per-namespace values are written from a thread inside the namespace
//! ([`netns::run_in`]).

use std::fs::File;
use std::io;
use std::path::Path;

use super::netns;

/// Writes `value` to `path`; a missing file (IPv6 compiled out or disabled
/// at boot, or the link gone) is Ok: there is then nothing to turn off.
fn write_if_present(path: &Path, value: &str) -> io::Result<()> {
    match std::fs::write(path, value) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `sysctl net.ipv6.conf.IFNAME.disable_ipv6=1` in the calling thread's
/// namespace (for the daemon: the host's). `all` and `default` are refused:
/// an interface that happened to carry such a name must not switch IPv6 off
/// for the whole host.
pub(super) fn disable_ipv6_on_link(ifname: &str) -> io::Result<()> {
    if ifname == "all" || ifname == "default" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to write the {ifname:?} sysctl for a link"),
        ));
    }
    write_if_present(
        &Path::new("/proc/sys/net/ipv6/conf")
            .join(ifname)
            .join("disable_ipv6"),
        "1",
    )
}

/// `sysctl net.ipv6.conf.{default,all}.disable_ipv6=1` inside the namespace
/// `ns`: links created afterwards start without IPv6 (`default`), and the
/// ones already there lose it (`all`). Writing the value a namespace already
/// has changes nothing, so this is safe to repeat on a live container.
pub(super) async fn disable_ipv6_in_netns(ns: File) -> io::Result<()> {
    netns::run_in(ns, || {
        for key in ["default", "all"] {
            write_if_present(
                &Path::new("/proc/sys/net/ipv6/conf")
                    .join(key)
                    .join("disable_ipv6"),
                "1",
            )?;
        }
        Ok(())
    })
    .await
}
