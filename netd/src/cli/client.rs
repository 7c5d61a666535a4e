//! A tiny HTTP/1.1 client for the daemon's unix socket: one connection per
//! request (the CLI makes a handful), JSON in and out. Responses decode into
//! the typed `api::wire` structs rather than `serde_json::Value`, so that
//! re-printed JSON (`inspect`) keeps Docker's key order.

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::api::wire::ErrorResponse;

/// Where the CLI looks for the daemon unless `-H`/`NETD_HOST` say otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/netd/netd.sock";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Cannot connect to the netd daemon at {host}. Is the netd daemon running?")]
    Connect { host: String, source: io::Error },
    #[error(
        "permission denied while trying to connect to the netd daemon socket at {host}: {source}"
    )]
    Permission { host: String, source: io::Error },
    #[error(
        "unsupported host {0}: netd listens on a unix socket only (use unix:///path/to/netd.sock)"
    )]
    Host(String),
    /// The daemon answered with an error status; `message` is its text.
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
    /// The daemon answered something this CLI cannot read.
    #[error("unexpected response from the netd daemon: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The daemon's status, for callers that treat some errors specially
    /// (`rm -f` ignores 404).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Daemon { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A response as received, whatever its status.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    /// The host as the user should see it in messages (`unix:///...`).
    host: String,
}

impl Client {
    /// Accepts `unix:///path` or a bare absolute path.
    pub fn new(host: &str) -> Result<Client> {
        let path = match host.strip_prefix("unix://") {
            Some(p) => p,
            None if host.starts_with('/') => host,
            None => return Err(ClientError::Host(host.to_string())),
        };
        if path.is_empty() {
            return Err(ClientError::Host(host.to_string()));
        }
        Ok(Client {
            socket: PathBuf::from(path),
            host: format!("unix://{path}"),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends one request and returns the response whatever its status.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|source| {
            if source.kind() == io::ErrorKind::PermissionDenied {
                ClientError::Permission {
                    host: self.host.clone(),
                    source,
                }
            } else {
                ClientError::Connect {
                    host: self.host.clone(),
                    source,
                }
            }
        })?;
        let proto = |e: &dyn std::fmt::Display| ClientError::Protocol(e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| proto(&e))?;
        // The connection future does the I/O; it ends when `sender` drops.
        let conn = tokio::spawn(conn);

        let method = Method::from_bytes(method.as_bytes()).map_err(|e| proto(&e))?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "netd")
            .header(USER_AGENT, concat!("netd-cli/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| proto(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| proto(&e))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| proto(&e))?.to_bytes();
        drop(sender);
        let _ = conn.await;
        Ok(RawResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request; a 4xx/5xx becomes `ClientError::Daemon` with the
    /// daemon's message.
    pub async fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Bytes> {
        let r = self.raw(method, path, body).await?;
        if r.status >= 400 {
            let message = match serde_json::from_slice::<ErrorResponse>(&r.body) {
                Ok(e) if !e.message.is_empty() => e.message,
                _ => {
                    let text = String::from_utf8_lossy(&r.body).trim().to_string();
                    if text.is_empty() {
                        format!("HTTP status {}", r.status)
                    } else {
                        text
                    }
                }
            };
            return Err(ClientError::Daemon {
                status: r.status,
                message,
            });
        }
        Ok(r.body)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(&self.send("GET", path, None).await?)
    }

    /// POST with a JSON body, decoding the JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        decode(&self.send("POST", path, Some(encode(body)?)).await?)
    }

    /// POST with a JSON body whose answer has no body worth reading.
    pub async fn post_empty<B: Serialize>(&self, path: &str, body: &B) -> Result<()> {
        self.send("POST", path, Some(encode(body)?)).await.map(drop)
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send("DELETE", path, None).await.map(drop)
    }
}

fn encode<B: Serialize>(body: &B) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Percent-encodes a path segment or query value: everything but RFC
/// 3986's unreserved characters.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_unix_sockets() {
        let c = Client::new("unix:///run/netd/netd.sock").unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/netd/netd.sock"));
        assert_eq!(c.host(), "unix:///run/netd/netd.sock");
        let c = Client::new("/tmp/x.sock").unwrap();
        assert_eq!(c.host(), "unix:///tmp/x.sock");
        assert!(matches!(
            Client::new("tcp://1.2.3.4:2375"),
            Err(ClientError::Host(_))
        ));
        assert!(matches!(Client::new("unix://"), Err(ClientError::Host(_))));
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(encode_component("a b/c"), "a%20b%2Fc");
        assert_eq!(
            encode_component(r#"{"name":{"x":true}}"#),
            "%7B%22name%22%3A%7B%22x%22%3Atrue%7D%7D"
        );
    }

    #[tokio::test]
    async fn unreachable_daemon_gives_the_docker_style_message() {
        let c = Client::new("unix:///nonexistent/netd.sock").unwrap();
        let e = c.raw("GET", "/_ping", None).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "Cannot connect to the netd daemon at unix:///nonexistent/netd.sock. Is the netd daemon running?"
        );
    }
}
