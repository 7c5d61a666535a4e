//! Which spec versions the plugin speaks, and answering in kind: a result
//! is written in the version of the configuration that asked for it.

use super::error::{CniError, Code, Result};
use super::types::CniResult;

/// Oldest first. 0.4.0 is the first with CHECK; older results differ in
/// shape and no current runtime needs them.
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The first version with STATUS and GC.
const STATUS_AND_GC: &str = "1.1.0";

/// Checks that `version` (the configuration's `cniVersion`) is one this
/// plugin speaks.
pub fn check(version: &str) -> Result<()> {
    if SUPPORTED.contains(&version) {
        return Ok(());
    }
    Err(CniError::new(
        Code::IncompatibleVersion,
        "incompatible CNI versions",
        format!(
            "config is {version:?}, plugin supports {}",
            SUPPORTED.join(", ")
        ),
    ))
}

/// STATUS and GC exist from 1.1.0 on; a runtime asking with an older
/// configuration gets the reference plugins' answer.
pub fn check_allows(version: &str, command: &str) -> Result<()> {
    if version == STATUS_AND_GC {
        return Ok(());
    }
    Err(CniError::new(
        Code::IncompatibleVersion,
        format!("config version does not allow {command}"),
        format!("{command} needs cniVersion {STATUS_AND_GC}; the config is {version}"),
    ))
}

/// `result` in the shape of `version`: its `cniVersion`, and the `version`
/// of each IP that only 0.4.0 has.
pub fn in_kind(mut result: CniResult, version: &str) -> CniResult {
    let v4 = (version == "0.4.0").then(|| "4".to_string());
    for ip in &mut result.ips {
        ip.version = v4.clone();
    }
    result.cni_version = version.to_string();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::types::IpConfig;

    #[test]
    fn only_supported_versions_pass() {
        for v in SUPPORTED {
            check(v).unwrap();
        }
        for v in ["0.3.1", "2.0.0", ""] {
            assert_eq!(check(v).unwrap_err().code, Code::IncompatibleVersion, "{v}");
        }
        check_allows("1.1.0", "GC").unwrap();
        let e = check_allows("1.0.0", "STATUS").unwrap_err();
        assert_eq!(e.msg, "config version does not allow STATUS");
    }

    #[test]
    fn results_take_the_shape_of_the_asking_version() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: "10.0.0.2/24".into(),
                ..IpConfig::default()
            }],
            ..CniResult::default()
        };
        let old = serde_json::to_value(in_kind(r.clone(), "0.4.0")).unwrap();
        assert_eq!(old["cniVersion"], "0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        let new = serde_json::to_value(in_kind(r, "1.1.0")).unwrap();
        assert_eq!(new["cniVersion"], "1.1.0");
        assert!(new["ips"][0].get("version").is_none());
    }
}
