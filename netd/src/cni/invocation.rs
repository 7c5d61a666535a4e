//! What the runtime passes in the environment (spec section 2,
//! "Parameters"), checked: the command, the attachment (`CNI_CONTAINERID`,
//! `CNI_IFNAME`), the namespace and `CNI_ARGS`.

use super::attachment::Attachment;
use super::error::{CniError, Code, Result};
use crate::model::valid_name;
use crate::netlink::check_ifname;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// Whether the command acts on one attachment (and so needs
    /// `CNI_CONTAINERID` and `CNI_IFNAME`).
    fn per_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// The `CNI_ARGS` keys netd reads. podman passes `IP` and `MAC` for one
/// static address and MAC, and its container's name as `K8S_POD_NAME` (for
/// its dnsname plugin, which netd's DNS stands in for); Kubernetes passes
/// the `K8S_POD_*` keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

/// Keys that are known but not used: accepted without `IgnoreUnknown`.
const KNOWN_UNUSED: [&str; 3] = ["IgnoreUnknown", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"];

impl CniArgs {
    /// Parses `K=V;K2=V2`. An unknown key is an error unless
    /// `IgnoreUnknown` is `1` or `true`, as for the reference plugins.
    pub fn parse(s: &str) -> Result<CniArgs> {
        let invalid =
            |detail: String| CniError::new(Code::InvalidEnvironment, "invalid CNI_ARGS", detail);
        let mut args = CniArgs::default();
        let mut unknown = Vec::new();
        let mut ignore_unknown = false;
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("{pair:?} is not KEY=VALUE")))?;
            let value = Some(value.to_string());
            match key {
                "IP" => args.ip = value,
                "MAC" => args.mac = value,
                "K8S_POD_NAME" => args.pod_name = value,
                "K8S_POD_NAMESPACE" => args.pod_namespace = value,
                "IgnoreUnknown" => {
                    ignore_unknown = matches!(value.as_deref(), Some("1" | "true"));
                }
                k if KNOWN_UNUSED.contains(&k) => {}
                k => unknown.push(k.to_string()),
            }
        }
        if !unknown.is_empty() && !ignore_unknown {
            return Err(CniError::new(
                Code::UnsupportedField,
                "unknown CNI_ARGS",
                format!(
                    "CNI_ARGS has {} (set IgnoreUnknown=1 to pass them)",
                    unknown.join(", ")
                ),
            ));
        }
        Ok(args)
    }
}

/// One invocation's parameters.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    /// ADD, DEL and CHECK.
    pub attachment: Option<Attachment>,
    /// `CNI_NETNS`: required by ADD and CHECK, optional for DEL.
    pub netns: Option<String>,
    pub args: CniArgs,
}

impl Invocation {
    /// Reads the parameters through `var` (the process environment, or a
    /// test's).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Invocation> {
        let missing = |name: &str| {
            CniError::new(
                Code::InvalidEnvironment,
                format!("{name} is required"),
                format!("the runtime must set {name}"),
            )
        };
        let command_text = var("CNI_COMMAND").ok_or_else(|| missing("CNI_COMMAND"))?;
        let command = Command::parse(&command_text).ok_or_else(|| {
            CniError::new(
                Code::InvalidEnvironment,
                "invalid CNI_COMMAND",
                format!("unknown command {command_text:?}"),
            )
        })?;
        if command == Command::Version {
            // libcni probes with placeholders (`CNI_NETNS=dummy`): VERSION
            // reads nothing else.
            return Ok(Invocation {
                command,
                attachment: None,
                netns: None,
                args: CniArgs::default(),
            });
        }
        let nonempty = |name: &str| var(name).filter(|v| !v.is_empty());
        let attachment = if command.per_attachment() {
            let id = nonempty("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID"))?;
            if !valid_name(&id) {
                return Err(CniError::new(
                    Code::InvalidEnvironment,
                    "invalid CNI_CONTAINERID",
                    format!("{id:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]* is allowed"),
                ));
            }
            let ifname = nonempty("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME"))?;
            check_ifname(&ifname).map_err(|e| {
                CniError::new(
                    Code::InvalidEnvironment,
                    "invalid CNI_IFNAME",
                    e.to_string(),
                )
            })?;
            Some(Attachment::new(id, ifname))
        } else {
            None
        };
        let netns = nonempty("CNI_NETNS");
        if let Some(path) = &netns
            && !path.starts_with('/')
        {
            return Err(CniError::new(
                Code::InvalidEnvironment,
                "invalid CNI_NETNS",
                format!("{path:?}: netd needs the path of the network namespace"),
            ));
        }
        if matches!(command, Command::Add | Command::Check) && netns.is_none() {
            return Err(missing("CNI_NETNS"));
        }
        let args = CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?;
        Ok(Invocation {
            command,
            attachment,
            netns,
            args,
        })
    }

    /// The attachment of ADD, DEL and CHECK.
    pub fn attachment(&self) -> &Attachment {
        self.attachment
            .as_ref()
            .expect("per-attachment commands have one")
    }

    /// `CNI_NETNS` of ADD and CHECK.
    pub fn netns(&self) -> &str {
        self.netns
            .as_deref()
            .expect("ADD and CHECK have a namespace")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Result<Invocation> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Invocation::from_env(|k| vars.get(k).cloned())
    }

    const ADD: [(&str, &str); 4] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", "/run/netns/x"),
    ];

    #[test]
    fn add_needs_every_parameter() {
        let inv = env(&ADD).unwrap();
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.attachment().container_id, "c1");
        assert_eq!(inv.netns(), "/run/netns/x");
        for skip in 0..ADD.len() {
            let mut vars = ADD.to_vec();
            let (name, _) = vars.remove(skip);
            let e = env(&vars).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment);
            assert!(e.msg.contains(name), "{e:?}");
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        for (var, value) in [
            ("CNI_COMMAND", "ADDD"),
            ("CNI_CONTAINERID", "-x"),
            ("CNI_CONTAINERID", "a/b"),
            ("CNI_IFNAME", "a/b"),
            ("CNI_IFNAME", "sixteen-bytes-xx"),
            ("CNI_NETNS", "relative"),
        ] {
            let mut vars = ADD.to_vec();
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value));
            let e = env(&vars).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment, "{var}={value}");
            assert!(e.msg.contains(var), "{e:?}");
        }
    }

    #[test]
    fn del_needs_no_namespace_and_status_no_attachment() {
        let inv = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(inv.netns, None);
        let inv = env(&[("CNI_COMMAND", "STATUS")]).unwrap();
        assert!(inv.attachment.is_none());
        // What libcni's validation sends.
        let inv = env(&[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_CONTAINERID", "cni"),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
        ])
        .unwrap();
        assert_eq!(inv.command, Command::Version);
    }

    #[test]
    fn cni_args_known_unknown_and_ignored() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.1.0.9;MAC=0a:00:00:00:00:01;FOO=bar",
        )
        .unwrap();
        assert_eq!(a.pod_name.as_deref(), Some("web"));
        assert_eq!(a.ip.as_deref(), Some("10.1.0.9"));
        assert_eq!(a.mac.as_deref(), Some("0a:00:00:00:00:01"));
        let e = CniArgs::parse("FOO=bar;BAZ=1").unwrap_err();
        assert_eq!(e.code, Code::UnsupportedField);
        assert!(e.details.contains("FOO, BAZ"), "{e:?}");
        assert_eq!(
            CniArgs::parse("IP").unwrap_err().code,
            Code::InvalidEnvironment
        );
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }
}
