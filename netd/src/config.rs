//! Daemon configuration: documented defaults, overridden by the TOML file,
//! overridden by command-line flags. Each setting is named once, in
//! `Settings`; the flags and the file are two partial views of it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

/// Default location of the configuration file; a missing default file is
/// not an error, a missing file named with `--config` is.
pub const DEFAULT_CONFIG: &str = "/etc/netd/netd.toml";

/// `netd daemon` flags. Every field is optional so that "not given" can fall
/// back to the file and then to the default.
#[derive(Debug, Clone, Default, Args)]
pub struct DaemonArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the daemon keeps its state.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The API socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The "outside" interface for masquerade and published ports
    /// (default: the interface of the default route).
    #[arg(long, value_name = "IFACE")]
    pub uplink: Option<String>,
    /// Prometheus metrics listen address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Directory under a bpf filesystem where maps and links are pinned.
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
    /// Cluster store for multi-host networks (etcd://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub cluster_store: Option<String>,
    /// Address other hosts reach this one on (default: the uplink's).
    #[arg(long, value_name = "IP")]
    pub advertise_addr: Option<IpAddr>,
    /// Key prefix of this cluster in the cluster store (several clusters
    /// can share one etcd).
    #[arg(long, value_name = "PREFIX")]
    pub cluster_prefix: Option<String>,
    /// How long after its last renewal the other hosts drop a lost host's
    /// endpoints, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub cluster_lease_ttl: Option<u64>,
    /// UDP port of the overlay's VXLAN traffic between hosts.
    #[arg(long, value_name = "PORT")]
    pub vxlan_port: Option<u16>,
    /// Prefix of every kernel object this daemon names (links, namespaces),
    /// so that several daemons can share one machine. 1-4 of [a-z0-9].
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Upstream resolver of the embedded DNS server, for names that are not
    /// containers' or services' (repeatable, tried in order; default: the
    /// nameservers of the host's /etc/resolv.conf).
    #[arg(long = "dns", value_name = "IP[:PORT]", value_parser = parse_dns_server)]
    pub dns: Vec<SocketAddr>,
    /// Most flows the eBPF connection tracking table holds (masquerade,
    /// published ports, services) before the least recently used is evicted.
    #[arg(long, value_name = "FLOWS")]
    pub conntrack_max: Option<u32>,
    /// What to log: a level (`debug`) or directives per module
    /// (`info,netd::dns=debug`), in `RUST_LOG` syntax.
    #[arg(long, value_name = "FILTER", env = "NETD_LOG")]
    pub log_level: Option<String>,
}

/// The TOML file: the same settings as the flags, with the same names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub uplink: Option<String>,
    pub metrics_addr: Option<SocketAddr>,
    pub bpffs: Option<PathBuf>,
    pub cluster_store: Option<String>,
    pub advertise_addr: Option<IpAddr>,
    pub cluster_prefix: Option<String>,
    pub cluster_lease_ttl: Option<u64>,
    pub vxlan_port: Option<u16>,
    pub prefix: Option<String>,
    /// `["IP[:PORT]", ...]`, as `--dns`.
    pub dns: Option<Vec<String>>,
    pub conntrack_max: Option<u32>,
    pub log_level: Option<String>,
}

/// The settings the daemon runs with, every value decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// `None`: use the interface of the default route, if there is one.
    pub uplink: Option<String>,
    pub metrics_addr: SocketAddr,
    pub bpffs: PathBuf,
    pub cluster_store: Option<String>,
    pub advertise_addr: Option<IpAddr>,
    pub cluster_prefix: String,
    pub cluster_lease_ttl: u64,
    pub vxlan_port: u16,
    pub prefix: String,
    /// Upstreams of the embedded DNS server; empty: the host's resolvers.
    pub dns: Vec<SocketAddr>,
    /// Flows the connection tracking map is sized for.
    pub conntrack_max: u32,
    /// The log filter (`tracing_subscriber::EnvFilter` directives).
    pub log_level: String,
}

/// The VXLAN port (IANA's, Linux's default).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// Lease TTLs: etcd's minimum is about 2 s; beyond a minute a lost host's
/// containers would linger in DNS and in load balancing.
pub const CLUSTER_LEASE_TTL_RANGE: std::ops::RangeInclusive<u64> = 2..=60;

/// The range `conntrack-max` accepts: below it a few busy containers would
/// evict each other's flows; above it the preallocated map would take
/// gigabytes of kernel memory (two preallocated entries, about 224 bytes, a
/// flow).
pub const CONNTRACK_MAX_RANGE: std::ops::RangeInclusive<u32> = 1024..=8_388_608;

/// The default log filter. hickory's server logs every query at info: keep
/// that to `log-level = "info,hickory_server=info"`.
pub const DEFAULT_LOG_LEVEL: &str = "info,hickory_server=warn";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            state_dir: "/var/lib/netd".into(),
            socket: "/run/netd/netd.sock".into(),
            uplink: None,
            metrics_addr: ([127, 0, 0, 1], 9479).into(),
            bpffs: "/sys/fs/bpf/netd".into(),
            cluster_store: None,
            advertise_addr: None,
            cluster_prefix: crate::cluster::DEFAULT_PREFIX.into(),
            cluster_lease_ttl: crate::cluster::DEFAULT_LEASE_TTL.as_secs(),
            vxlan_port: DEFAULT_VXLAN_PORT,
            prefix: "netd".into(),
            dns: Vec::new(),
            conntrack_max: netd_common::limits::CONNTRACK_FLOWS,
            log_level: DEFAULT_LOG_LEVEL.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid prefix {0:?}: use 1 to 4 characters from [a-z0-9]")]
    Prefix(String),
    #[error("invalid dns server {0:?}: {1}")]
    Dns(String, String),
    #[error(
        "invalid conntrack-max {0}: use {min} to {max} flows",
        min = CONNTRACK_MAX_RANGE.start(),
        max = CONNTRACK_MAX_RANGE.end()
    )]
    ConntrackMax(u32),
    #[error("invalid log-level {0:?}: {1}")]
    LogLevel(String, String),
    #[error("{0}")]
    Cluster(String),
}

impl Settings {
    /// Reads the file the flags name (or the default one, if it exists) and
    /// layers defaults < file < flags.
    pub fn resolve(args: &DaemonArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => Some(read_file(path)?),
            None if Path::new(DEFAULT_CONFIG).exists() => {
                Some(read_file(Path::new(DEFAULT_CONFIG))?)
            }
            None => None,
        };
        Settings::layer(file.unwrap_or_default(), args)
    }

    fn layer(file: FileConfig, args: &DaemonArgs) -> Result<Settings, ConfigError> {
        let d = Settings::default();
        let s = Settings {
            state_dir: args
                .state_dir
                .clone()
                .or(file.state_dir)
                .unwrap_or(d.state_dir),
            socket: args.socket.clone().or(file.socket).unwrap_or(d.socket),
            uplink: args.uplink.clone().or(file.uplink),
            metrics_addr: args
                .metrics_addr
                .or(file.metrics_addr)
                .unwrap_or(d.metrics_addr),
            bpffs: args.bpffs.clone().or(file.bpffs).unwrap_or(d.bpffs),
            cluster_store: args.cluster_store.clone().or(file.cluster_store),
            advertise_addr: args.advertise_addr.or(file.advertise_addr),
            cluster_prefix: args
                .cluster_prefix
                .clone()
                .or(file.cluster_prefix)
                .unwrap_or(d.cluster_prefix),
            cluster_lease_ttl: args
                .cluster_lease_ttl
                .or(file.cluster_lease_ttl)
                .unwrap_or(d.cluster_lease_ttl),
            vxlan_port: args.vxlan_port.or(file.vxlan_port).unwrap_or(d.vxlan_port),
            prefix: args.prefix.clone().or(file.prefix).unwrap_or(d.prefix),
            dns: if !args.dns.is_empty() {
                args.dns.clone()
            } else {
                match file.dns {
                    Some(list) => list
                        .iter()
                        .map(|s| parse_dns_server(s).map_err(|e| ConfigError::Dns(s.clone(), e)))
                        .collect::<Result<_, _>>()?,
                    None => d.dns,
                }
            },
            conntrack_max: args
                .conntrack_max
                .or(file.conntrack_max)
                .unwrap_or(d.conntrack_max),
            log_level: args
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or(d.log_level),
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&s.log_level) {
            return Err(ConfigError::LogLevel(s.log_level, e.to_string()));
        }
        if !CONNTRACK_MAX_RANGE.contains(&s.conntrack_max) {
            return Err(ConfigError::ConntrackMax(s.conntrack_max));
        }
        if let Some(store) = &s.cluster_store {
            crate::cluster::StoreUrls::parse(store)
                .map_err(|e| ConfigError::Cluster(e.to_string()))?;
        }
        if matches!(s.advertise_addr, Some(IpAddr::V6(_))) {
            return Err(ConfigError::Cluster(
                "--advertise-addr must be an IPv4 address: the overlay is IPv4-only".into(),
            ));
        }
        if !CLUSTER_LEASE_TTL_RANGE.contains(&s.cluster_lease_ttl) {
            return Err(ConfigError::Cluster(format!(
                "invalid cluster-lease-ttl {}: use {} to {} seconds",
                s.cluster_lease_ttl,
                CLUSTER_LEASE_TTL_RANGE.start(),
                CLUSTER_LEASE_TTL_RANGE.end()
            )));
        }
        if s.vxlan_port == 0 {
            return Err(ConfigError::Cluster("invalid vxlan-port 0".into()));
        }
        if !s.cluster_prefix.starts_with('/') || s.cluster_prefix.contains("//") {
            return Err(ConfigError::Cluster(format!(
                "invalid cluster-prefix {:?}: an absolute key prefix such as /netd",
                s.cluster_prefix
            )));
        }
        let p = &s.prefix;
        if p.is_empty()
            || p.len() > 4
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(ConfigError::Prefix(p.clone()));
        }
        Ok(s)
    }
}

/// `IP` (port 53), `IP:PORT`, `[IPv6]:PORT`.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        "expected IP or IP:PORT (e.g. 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53)".into()
    })
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_nothing_given() {
        let s = Settings::layer(FileConfig::default(), &DaemonArgs::default()).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            state-dir = "/srv/netd"
            socket = "/tmp/file.sock"
            prefix = "ab"
            "#,
        )
        .unwrap();
        let args = DaemonArgs {
            socket: Some("/tmp/flag.sock".into()),
            ..Default::default()
        };
        let s = Settings::layer(file, &args).unwrap();
        assert_eq!(
            s.state_dir,
            PathBuf::from("/srv/netd"),
            "file beats default"
        );
        assert_eq!(s.socket, PathBuf::from("/tmp/flag.sock"), "flag beats file");
        assert_eq!(s.prefix, "ab");
        assert_eq!(s.bpffs, Settings::default().bpffs, "default when neither");
    }

    #[test]
    fn unknown_keys_and_bad_prefix_are_rejected() {
        assert!(toml::from_str::<FileConfig>("stat-dir = \"/x\"").is_err());
        let args = DaemonArgs {
            prefix: Some("Too-Long".into()),
            ..Default::default()
        };
        assert!(matches!(
            Settings::layer(FileConfig::default(), &args),
            Err(ConfigError::Prefix(_))
        ));
    }

    #[test]
    fn dns_servers_from_flags_or_file() {
        let file: FileConfig = toml::from_str(r#"dns = ["192.0.2.1", "192.0.2.2:5353"]"#).unwrap();
        let s = Settings::layer(file.clone(), &DaemonArgs::default()).unwrap();
        assert_eq!(
            s.dns,
            vec![
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "192.0.2.2:5353".parse().unwrap()
            ]
        );
        let args = DaemonArgs {
            dns: vec![parse_dns_server("2001:db8::1").unwrap()],
            ..Default::default()
        };
        let s = Settings::layer(file, &args).unwrap();
        assert_eq!(
            s.dns,
            vec!["[2001:db8::1]:53".parse().unwrap()],
            "flags win"
        );
        assert!(
            Settings::layer(FileConfig::default(), &DaemonArgs::default())
                .unwrap()
                .dns
                .is_empty()
        );
        let bad: FileConfig = toml::from_str(r#"dns = ["resolver.example"]"#).unwrap();
        assert!(matches!(
            Settings::layer(bad, &DaemonArgs::default()),
            Err(ConfigError::Dns(..))
        ));
        assert!(parse_dns_server("1.2.3.4:x").is_err());
    }

    #[test]
    fn conntrack_max_is_layered_and_bounded() {
        let file: FileConfig = toml::from_str("conntrack-max = 65536").unwrap();
        let s = Settings::layer(file.clone(), &DaemonArgs::default()).unwrap();
        assert_eq!(s.conntrack_max, 65536);
        let args = DaemonArgs {
            conntrack_max: Some(4096),
            ..Default::default()
        };
        assert_eq!(Settings::layer(file, &args).unwrap().conntrack_max, 4096);
        for bad in [0, 1023, 8_388_609] {
            let args = DaemonArgs {
                conntrack_max: Some(bad),
                ..Default::default()
            };
            let err = Settings::layer(FileConfig::default(), &args).unwrap_err();
            assert!(matches!(err, ConfigError::ConntrackMax(n) if n == bad));
            assert_eq!(
                err.to_string(),
                format!("invalid conntrack-max {bad}: use 1024 to 8388608 flows")
            );
        }
    }

    #[test]
    fn log_level_is_layered_and_checked() {
        let file: FileConfig = toml::from_str(r#"log-level = "debug""#).unwrap();
        let s = Settings::layer(file.clone(), &DaemonArgs::default()).unwrap();
        assert_eq!(s.log_level, "debug");
        let args = DaemonArgs {
            log_level: Some("warn,netd::dns=trace".into()),
            ..Default::default()
        };
        assert_eq!(
            Settings::layer(file, &args).unwrap().log_level,
            "warn,netd::dns=trace"
        );
        let bad: FileConfig = toml::from_str(r#"log-level = "netd=loud""#).unwrap();
        assert!(matches!(
            Settings::layer(bad, &DaemonArgs::default()),
            Err(ConfigError::LogLevel(..))
        ));
    }

    #[test]
    fn missing_named_file_is_an_error() {
        let args = DaemonArgs {
            config: Some("/nonexistent/netd.toml".into()),
            ..Default::default()
        };
        assert!(matches!(
            Settings::resolve(&args),
            Err(ConfigError::Read { .. })
        ));
    }
}
