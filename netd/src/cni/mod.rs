//! `netd-cni`, netd's CNI plugin (spec 1.1.0; 0.4.0 and 1.0.0 too), a thin
//! client of the daemon's API: installed as `/opt/cni/bin/netd`, it makes
//! each attachment a netd container whose endpoint the daemon plugs into
//! the runtime's namespace (`NetNs`). The container is then a netd endpoint
//! like any other: isolation, anti-spoofing, DNS names, published ports,
//! metrics, `netd stats` and `netd container ls` all see it.
//!
//! The network configuration:
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "podnet", "type": "netd", "network": "NETD-NETWORK",
//!  "socket": "/run/netd/netd.sock",
//!  "capabilities": {"portMappings": true, "ips": true, "mac": true, "aliases": true}}
//! ```
//!
//! - `invocation`: the environment (`CNI_*`, `CNI_ARGS`), checked;
//! - `types`: the configuration, results and errors on the wire;
//! - `version`: the versions spoken, results in the asking version's shape;
//! - `attachment`: an attachment's netd container: its name and labels;
//! - `request`: ADD's create request from the capabilities and arguments;
//! - `result`: the result from the daemon's answer, CHECK's comparison;
//! - `commands`: ADD, DEL, CHECK, STATUS and GC against the daemon;
//! - `error`: CNI error objects and their codes.
//!
//! Errors go to standard output as CNI error objects (what libcni reads),
//! with exit status 1; notes for people go to standard error.

mod attachment;
mod commands;
mod error;
mod invocation;
mod request;
mod result;
mod types;
mod version;

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;

pub use attachment::{Attachment, LABEL_CONTAINER_ID, LABEL_IFNAME, LABEL_NETWORK};
use error::{CniError, Code, Result};
use invocation::{Command, Invocation};
use types::{ErrorResult, NetConf, VersionResult};

use crate::cli::client::Client;

/// The daemon's socket unless the configuration names another.
pub const DEFAULT_SOCKET: &str = "/run/netd/netd.sock";

/// How long one command may wait for the daemon: a runtime must not hang
/// on a daemon that accepts and never answers. Generous: an ADD on a new
/// network waits for its bridge's carrier.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(60);

/// The version errors are reported in when the configuration names none
/// that could be read.
const FALLBACK_VERSION: &str = "1.1.0";

/// The plugin's process: the command from the environment, the
/// configuration from standard input, the answer on standard output.
pub fn main() -> ExitCode {
    let mut input = Vec::new();
    let answer = match std::io::stdin().read_to_end(&mut input) {
        Ok(_) => run(|k| std::env::var(k).ok(), &input),
        Err(e) => Answer::failed(
            FALLBACK_VERSION,
            CniError::new(Code::Io, "cannot read the configuration", e.to_string()),
        ),
    };
    if let Some(out) = &answer.stdout {
        println!("{out}");
    }
    if answer.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the plugin prints and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub stdout: Option<String>,
}

impl Answer {
    fn failed(version: &str, e: CniError) -> Answer {
        let err = ErrorResult {
            cni_version: version.to_string(),
            code: e.code as u32,
            msg: e.msg,
            details: e.details,
        };
        Answer {
            ok: false,
            stdout: serde_json::to_string(&err).ok(),
        }
    }
}

/// One invocation, with the environment read through `var`.
pub fn run(var: impl Fn(&str) -> Option<String>, input: &[u8]) -> Answer {
    let inv = match Invocation::from_env(var) {
        Ok(inv) => inv,
        Err(e) => return Answer::failed(&version_of(input), e),
    };
    if inv.command == Command::Version {
        let answer = VersionResult {
            cni_version: version_of(input),
            supported_versions: version::SUPPORTED.iter().map(|v| v.to_string()).collect(),
        };
        return Answer {
            ok: true,
            stdout: serde_json::to_string(&answer).ok(),
        };
    }
    let conf: NetConf = match serde_json::from_slice(input) {
        Ok(conf) => conf,
        Err(e) => {
            return Answer::failed(
                &version_of(input),
                CniError::new(
                    Code::Decode,
                    "cannot decode the configuration",
                    e.to_string(),
                ),
            );
        }
    };
    match execute(&inv, &conf) {
        Ok(stdout) => Answer { ok: true, stdout },
        Err(e) => Answer::failed(&conf.cni_version, e),
    }
}

/// The configuration's `cniVersion`, read as leniently as VERSION must be
/// answered.
fn version_of(input: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Versioned {
        #[serde(rename = "cniVersion")]
        cni_version: String,
    }
    serde_json::from_slice::<Versioned>(input)
        .map(|v| v.cni_version)
        .unwrap_or_else(|_| FALLBACK_VERSION.to_string())
}

fn execute(inv: &Invocation, conf: &NetConf) -> Result<Option<String>> {
    version::check(&conf.cni_version)?;
    match inv.command {
        Command::Status => version::check_allows(&conf.cni_version, "STATUS")?,
        Command::Gc => version::check_allows(&conf.cni_version, "GC")?,
        _ => {}
    }
    if matches!(inv.command, Command::Add | Command::Check | Command::Status) {
        check_conf(conf)?;
    }
    let socket = conf.socket.as_deref().unwrap_or(DEFAULT_SOCKET);
    let client = Client::new(socket)
        .map_err(|e| CniError::new(Code::InvalidConfig, "invalid socket", e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(Code::Io, "cannot start", e.to_string()))?;
    runtime.block_on(async {
        let work = async {
            match inv.command {
                Command::Add => {
                    let result = commands::add(&client, conf, inv).await?;
                    let result = version::in_kind(result, &conf.cni_version);
                    serde_json::to_string(&result)
                        .map(Some)
                        .map_err(|e| CniError::new(Code::Decode, "cannot encode", e.to_string()))
                }
                Command::Del => commands::del(&client, inv).await.map(|()| None),
                Command::Check => commands::check(&client, conf, inv).await.map(|()| None),
                Command::Status => commands::status(&client, conf).await.map(|()| None),
                Command::Gc => commands::gc(&client, conf).await.map(|()| None),
                Command::Version => unreachable!("answered without a configuration"),
            }
        };
        tokio::time::timeout(DAEMON_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| {
                Err(CniError::new(
                    Code::TryAgainLater,
                    "netd did not answer",
                    format!("no answer on {socket} within {DAEMON_TIMEOUT:?}"),
                ))
            })
    })
}

/// What ADD, CHECK and STATUS need of the configuration, and what they
/// refuse rather than ignore.
fn check_conf(conf: &NetConf) -> Result<()> {
    if conf.network.is_empty() {
        return Err(CniError::new(
            Code::InvalidConfig,
            "no netd network",
            "the configuration must name the netd network: \"network\": \"NAME\"",
        ));
    }
    for (key, value, why) in [
        (
            "ipam",
            &conf.ipam,
            "netd allocates the addresses of its networks",
        ),
        (
            "dns",
            &conf.dns,
            "netd gives its containers its own DNS settings",
        ),
    ] {
        if let Some(value) = value {
            return Err(CniError::new(
                Code::UnsupportedField,
                format!("unsupported field {key:?}"),
                format!("{key}: {value}: {why}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Runs the plugin with `command` on `conf`, no daemon behind its
    /// socket.
    fn call(command: &str, conf: &Value) -> (bool, Value) {
        let env = |k: &str| {
            Some(match k {
                "CNI_COMMAND" => command.to_string(),
                "CNI_CONTAINERID" => "c1".into(),
                "CNI_IFNAME" => "eth0".into(),
                "CNI_NETNS" => "/run/netns/x".into(),
                _ => return None,
            })
        };
        let answer = run(env, conf.to_string().as_bytes());
        let out = answer
            .stdout
            .map_or(Value::Null, |s| serde_json::from_str(&s).unwrap());
        (answer.ok, out)
    }

    fn conf(version: &str) -> Value {
        json!({"cniVersion": version, "name": "podnet", "type": "netd", "network": "n",
               "socket": "/nonexistent/netd.sock"})
    }

    #[test]
    fn version_is_answered_in_kind_without_a_daemon() {
        let (ok, out) = call("VERSION", &json!({"cniVersion": "0.4.0"}));
        assert!(ok);
        assert_eq!(
            out,
            json!({"cniVersion": "0.4.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
        );
    }

    #[test]
    fn errors_are_cni_error_objects_with_the_specs_codes() {
        let (ok, out) = call("ADD", &conf("0.3.1"));
        assert!(!ok);
        assert_eq!(out["code"], 1);
        assert_eq!(out["cniVersion"], "0.3.1");
        let (_, out) = call("ADD", &json!("not a config"));
        assert_eq!(out["code"], 6);
        let mut with_ipam = conf("1.0.0");
        with_ipam["ipam"] = json!({"type": "host-local"});
        let (_, out) = call("ADD", &with_ipam);
        assert_eq!(out["code"], 2);
        assert!(out["details"].as_str().unwrap().contains("host-local"));
        let (_, out) = call("ADD", &conf("1.0.0"));
        assert_eq!(out["code"], 50, "no daemon: {out}");
        let (_, out) = call("STATUS", &conf("1.1.0"));
        assert_eq!(out["code"], 50);
        let (_, out) = call("STATUS", &conf("1.0.0"));
        assert_eq!(out["code"], 1, "STATUS is 1.1.0's");
        let (_, out) = call("GC", &conf("1.1.0"));
        assert_eq!(out["code"], 50);
    }

    #[test]
    fn del_without_a_daemon_succeeds() {
        for version in version::SUPPORTED {
            assert_eq!(call("DEL", &conf(version)), (true, Value::Null));
        }
    }
}
