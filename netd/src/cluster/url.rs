//! `--cluster-store etcd://HOST:PORT[,etcd://HOST:PORT...]`: the members of
//! one etcd cluster, any of which the client may talk to.

use crate::error::EngineError;

/// The etcd members named by a `--cluster-store` value, as the gRPC
/// endpoints etcd-client dials (`http://HOST:PORT`), and the value itself
/// for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrls {
    pub shown: String,
    pub endpoints: Vec<String>,
}

const SCHEME: &str = "etcd://";
const USAGE: &str = "expected etcd://HOST:PORT[,etcd://HOST:PORT...], e.g. etcd://10.0.0.5:2379";

impl StoreUrls {
    pub fn parse(value: &str) -> Result<StoreUrls, EngineError> {
        let invalid = |why: String| {
            EngineError::InvalidParameter(format!(
                "invalid --cluster-store \"{value}\": {why}; {USAGE}"
            ))
        };
        if value.trim().is_empty() {
            return Err(invalid("it is empty".into()));
        }
        let endpoints = value
            .split(',')
            .map(|part| {
                let part = part.trim();
                let rest = part.strip_prefix(SCHEME).ok_or_else(|| {
                    invalid(match part.split_once("://") {
                        Some((scheme, _)) => format!(
                            "\"{scheme}://\" is not supported (TLS and etcd's v2 API are not)"
                        ),
                        None => format!("\"{part}\" does not start with {SCHEME}"),
                    })
                })?;
                let (host, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| invalid(format!("\"{part}\" has no port")))?;
                let valid_host = !host.is_empty()
                    && host.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':')
                    });
                if !valid_host {
                    return Err(invalid(format!("\"{host}\" is not a host name or address")));
                }
                match port.parse::<u16>() {
                    Ok(p) if p > 0 => Ok(format!("http://{host}:{p}")),
                    _ => Err(invalid(format!("\"{port}\" is not a port"))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoreUrls {
            shown: value.to_string(),
            endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_more_members() {
        let u = StoreUrls::parse("etcd://10.0.0.5:2379").unwrap();
        assert_eq!(u.endpoints, ["http://10.0.0.5:2379"]);
        let u = StoreUrls::parse("etcd://a.example:2379, etcd://[::1]:2380").unwrap();
        assert_eq!(u.endpoints, ["http://a.example:2379", "http://[::1]:2380"]);
    }

    #[test]
    fn errors_say_what_is_expected() {
        for (bad, why) in [
            ("", "it is empty"),
            ("10.0.0.5:2379", "does not start with etcd://"),
            ("http://10.0.0.5:2379", "\"http://\" is not supported"),
            ("etcd://10.0.0.5", "has no port"),
            ("etcd://10.0.0.5:0", "is not a port"),
            ("etcd://10.0.0.5:x", "is not a port"),
            ("etcd://:2379", "is not a host"),
            ("etcd://a/b:2379", "is not a host"),
            ("etcd://a:1,", "does not start with etcd://"),
        ] {
            let e = StoreUrls::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("expected etcd://HOST:PORT"), "{bad}: {e}");
        }
    }
}
