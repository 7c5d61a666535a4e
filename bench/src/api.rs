//! A minimal, blocking HTTP/1.1 client for netd's API on its unix socket.
//!
//! Why not the netd CLI: starting a process per call would add its start-up
//! to every attach we time; and why not hyper: one request per connection
//! (`Connection: close`) needs nothing more than this, and keeps the bench
//! free of an async runtime.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

/// How long a request may wait for netd's answer. Generous: creating a
/// container touches the kernel a lot, a call may queue behind a slow one,
/// and the machine may be busy; a hung daemon still ends the run.
pub const TIMEOUT: Duration = Duration::from_secs(120);

pub struct Api {
    socket: PathBuf,
}

impl Api {
    pub fn new(socket: &Path) -> Api {
        Api {
            socket: socket.to_path_buf(),
        }
    }

    /// One request; the status and the (de-chunked) body.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>)> {
        let mut stream = UnixStream::connect(&self.socket)
            .with_context(|| format!("cannot connect to {}", self.socket.display()))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: netd\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .with_context(|| format!("no answer to {method} {path}"))?;
        parse_response(&response).with_context(|| format!("bad answer to {method} {path}"))
    }

    /// A request that must succeed (2xx); its body as JSON (null if empty).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, body) = self.request(method, path, body)?;
        if !(200..300).contains(&status) {
            bail!(
                "netd answered {method} {path} with {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&body)?)
    }

    pub fn ping(&self) -> bool {
        self.request("GET", "/_ping", None)
            .is_ok_and(|(status, _)| status == 200)
    }

    pub fn create_network(&self, name: &str, subnet: &str) -> Result<()> {
        self.create_network_of("bridge", name, subnet)
    }

    /// `netd network create -d overlay --subnet SUBNET NAME` (a daemon in
    /// cluster mode).
    pub fn create_overlay(&self, name: &str, subnet: &str) -> Result<()> {
        self.create_network_of("overlay", name, subnet)
    }

    fn create_network_of(&self, driver: &str, name: &str, subnet: &str) -> Result<()> {
        self.call(
            "POST",
            "/networks/create",
            Some(&json!({
                "Name": name,
                "Driver": driver,
                "IPAM": {"Config": [{"Subnet": subnet}]},
            })),
        )?;
        Ok(())
    }

    /// `netd container create --network NETWORK NAME`.
    pub fn create_container(&self, name: &str, network: &str) -> Result<()> {
        self.call(
            "POST",
            &format!("/containers/create?name={name}"),
            Some(&json!({"NetworkMode": network})),
        )?;
        Ok(())
    }

    /// `netd container run --network NETWORK --service S... NAME -- CMD...`:
    /// a container running `cmd`, a backend of `services` (names or ids).
    pub fn run_container(
        &self,
        name: &str,
        network: &str,
        services: &[String],
        cmd: &[String],
    ) -> Result<()> {
        self.call(
            "POST",
            &format!("/containers/create?name={name}"),
            Some(&json!({"NetworkMode": network, "Services": services, "Cmd": cmd})),
        )?;
        Ok(())
    }

    /// `netd service create --network NETWORK --replicas 0 NAME`: a
    /// service of user containers only; its id.
    pub fn create_service(&self, name: &str, network: &str) -> Result<String> {
        self.service_from(json!({"Name": name, "Network": network, "Replicas": 0}))
    }

    fn service_from(&self, body: Value) -> Result<String> {
        let created = self.call("POST", "/services/create", Some(&body))?;
        created["ID"].as_str().map(str::to_string).with_context(|| {
            format!(
                "no ID in netd's answer to creating service {}",
                body["Name"]
            )
        })
    }

    /// `netd service create --network NETWORK --replicas 0 -p PORT... NAME`:
    /// a service of user containers published on `ports` (`-p` syntax,
    /// `HOST:CONTAINER`); its id.
    pub fn create_published_service(
        &self,
        name: &str,
        network: &str,
        ports: &[String],
    ) -> Result<String> {
        self.service_from(json!({
            "Name": name, "Network": network, "Replicas": 0, "Ports": ports,
        }))
    }

    /// The virtual IP of a service (`netd service inspect`).
    pub fn service_vip(&self, service: &str) -> Result<Ipv4Addr> {
        let svc = self.call("GET", &format!("/services/{service}"), None)?;
        svc["VirtualIP"]
            .as_str()
            .and_then(|ip| ip.parse().ok())
            .with_context(|| format!("no VirtualIP for service {service}: {svc}"))
    }

    /// `netd container rm -f NAME`.
    pub fn remove_container(&self, name: &str) -> Result<()> {
        self.call("DELETE", &format!("/containers/{name}?force=1"), None)?;
        Ok(())
    }
}

/// `GET path` on a plain HTTP endpoint at `addr` (netd's and etcd's
/// metrics, etcd's health), from the calling thread's namespace: the body
/// of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("cannot reach {addr}"))?;
    conn.set_read_timeout(Some(TIMEOUT))?;
    // HTTP/1.0: the body is sent whole and ends with the connection.
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    conn.read_to_end(&mut response)?;
    let (status, body) =
        parse_response(&response).with_context(|| format!("bad answer to GET {path}"))?;
    if status != 200 {
        bail!("{addr} answered GET {path} with {status}");
    }
    String::from_utf8(body).with_context(|| format!("GET {path} on {addr}: not UTF-8"))
}

/// An HTTP/1.x response: the status and the (de-chunked) body.
pub fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>)> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()
        .context("bad status code")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).context("truncated chunk")?);
        data = data.get(size + 2..).context("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (201, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, b"abcde".to_vec()));
    }
}
