//! `systemctl reload netd` (SIGHUP): the daemon reads its configuration
//! again, as it would on start (defaults < file < flags), and applies what
//! can change while it runs: the log filter and the embedded DNS server's
//! upstreams (re-read from the host's resolv.conf too, when none are
//! configured). Everything else is wired into the kernel or into listening
//! sockets at start; a change there is logged as needing a restart and
//! keeps its running value until then.

use tracing::{error, info, warn};
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{DaemonArgs, Settings};
use crate::dns::Upstreams;

/// Handles on what a reload can change.
pub struct Live {
    pub log: reload::Handle<EnvFilter, Registry>,
    pub dns: Upstreams,
}

/// Re-reads the configuration for `args` and applies it over `running`
/// (which then holds what is in effect). An unreadable or invalid file
/// changes nothing and is logged.
pub fn apply(args: &DaemonArgs, running: &mut Settings, live: &Live) {
    let next = match Settings::resolve(args) {
        Ok(next) => next,
        Err(e) => {
            error!(error = %e, "reload: the configuration is not valid; nothing changed");
            return;
        }
    };
    if next.log_level != running.log_level {
        // Checked by `Settings::resolve`, so this parses.
        match EnvFilter::try_new(&next.log_level).map(|f| live.log.reload(f)) {
            Ok(Ok(())) => {
                info!(from = %running.log_level, to = %next.log_level, "reload: log level changed");
                running.log_level = next.log_level.clone();
            }
            Ok(Err(e)) => error!(error = %e, "reload: cannot change the log level"),
            Err(e) => error!(error = %e, "reload: invalid log level"),
        }
    }
    // Always: with no `dns` configured, the host's resolv.conf may have
    // changed since it was read.
    live.dns.set(next.dns.clone());
    running.dns = next.dns.clone();
    let pending = restart_needed(running, &next);
    if pending.is_empty() {
        info!("reload: configuration applied");
    } else {
        warn!(
            settings = pending.join(", "),
            "reload: changed in the configuration, but only a restart applies them \
             (systemctl restart netd); the running values stay until then"
        );
    }
}

/// The settings that differ between what runs and `next` and that only a
/// restart changes, by their names in the file.
fn restart_needed(running: &Settings, next: &Settings) -> Vec<&'static str> {
    // Destructured, so that a new setting cannot be forgotten here.
    let Settings {
        state_dir,
        socket,
        uplink,
        metrics_addr,
        bpffs,
        cluster_store,
        advertise_addr,
        cluster_prefix,
        cluster_lease_ttl,
        vxlan_port,
        prefix,
        conntrack_max,
        dns: _,
        log_level: _,
    } = running;
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("state-dir", *state_dir != next.state_dir);
    check("socket", *socket != next.socket);
    check("uplink", *uplink != next.uplink);
    check("metrics-addr", *metrics_addr != next.metrics_addr);
    check("bpffs", *bpffs != next.bpffs);
    check("cluster-store", *cluster_store != next.cluster_store);
    check("advertise-addr", *advertise_addr != next.advertise_addr);
    check("cluster-prefix", *cluster_prefix != next.cluster_prefix);
    check(
        "cluster-lease-ttl",
        *cluster_lease_ttl != next.cluster_lease_ttl,
    );
    check("vxlan-port", *vxlan_port != next.vxlan_port);
    check("prefix", *prefix != next.prefix);
    check("conntrack-max", *conntrack_max != next.conntrack_max);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settings_wired_at_start_need_a_restart() {
        let running = Settings::default();
        let mut next = running.clone();
        next.log_level = "debug".into();
        next.dns = vec!["192.0.2.53:53".parse().unwrap()];
        assert!(restart_needed(&running, &next).is_empty());
        next.conntrack_max = 4096;
        next.prefix = "x".into();
        next.metrics_addr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            restart_needed(&running, &next),
            vec!["metrics-addr", "prefix", "conntrack-max"]
        );
    }
}
