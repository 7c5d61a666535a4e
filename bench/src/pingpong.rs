//! The bench's own TCP server and clients, and the hidden subcommands that
//! run them (and the packet generator) inside a namespace.
//!
//! Request/response latency is measured per round trip on one connection
//! (64-byte messages, TCP_NODELAY), so p99 comes from real samples rather
//! than from averages. The connection rate is a TCP_CRR-like loop: connect,
//! one byte each way, and the server closes first so that TIME_WAIT stays
//! on the server and the client never runs out of ports.
//!
//! Each helper prints one JSON object on stdout; the server prints `ready`
//! once it listens. [`Servers`] and [`Client`] start them (and iperf3
//! beside them) in a namespace and read their results.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::cmd::{self, Background};
use crate::netns::Netns;
use crate::stats;

/// What the helpers are started as: this very binary. Not
/// `current_exe()`, a path: a rebuild during a run replaces the file at that
/// path (or deletes it), while `/proc/self/exe`, resolved by the forked
/// child before it execs, is the image that is running.
pub const SELF_EXE: &str = "/proc/self/exe";

/// The echo server's command line for a netd container to run (`container
/// run ... -- CMD`): a path, not [`SELF_EXE`], since netd execs it and
/// there that link names netd.
pub fn serve_command() -> Result<Vec<String>> {
    Ok(vec![
        std::env::current_exe()?.to_string_lossy().into_owned(),
        "serve".to_string(),
    ])
}

pub const IPERF_PORT: u16 = 5201;
pub const RR_PORT: u16 = 7001;
pub const CRR_PORT: u16 = 7002;
/// Request and response size of the latency test.
const RR_SIZE: usize = 64;

#[derive(Subcommand)]
pub enum Helper {
    /// Echo server for `rr` (port 7001) and `crr` (port 7002).
    #[command(hide = true)]
    Serve,
    /// Round trips on one connection for SECS; prints p50/p99 in µs.
    #[command(hide = true)]
    Rr { addr: SocketAddr, secs: f64 },
    /// New connections for SECS; prints how many.
    #[command(hide = true)]
    Crr { addr: SocketAddr, secs: f64 },
    /// Raw UDP frames out of IFNAME for SECS; prints how many were sent.
    #[command(hide = true)]
    Pktgen(crate::pktgen::Args),
}

pub fn run_helper(helper: Helper) -> Result<()> {
    let result = match helper {
        Helper::Serve => return serve(),
        Helper::Rr { addr, secs } => rr(addr, secs)?,
        Helper::Crr { addr, secs } => crr(addr, secs)?,
        Helper::Pktgen(args) => crate::pktgen::send(&args)?,
    };
    println!("{result}");
    Ok(())
}

fn serve() -> Result<()> {
    let rr = TcpListener::bind(("0.0.0.0", RR_PORT)).context("bind the rr port")?;
    let crr = TcpListener::bind(("0.0.0.0", CRR_PORT)).context("bind the crr port")?;
    println!("ready");
    std::io::stdout().flush()?;
    std::thread::spawn(move || {
        for conn in rr.incoming().flatten() {
            std::thread::spawn(move || echo(conn));
        }
    });
    // Connections are short and sequential: serve them inline, no thread
    // start per connection in what we measure.
    for conn in crr.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_nodelay(true);
        let mut byte = [0u8; 1];
        if conn.read_exact(&mut byte).is_ok() {
            let _ = conn.write_all(&byte);
        }
        // Dropping closes first, on the server side.
    }
    Ok(())
}

fn echo(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; RR_SIZE];
    while conn.read_exact(&mut buf).is_ok() {
        if conn.write_all(&buf).is_err() {
            return;
        }
    }
}

fn rr(addr: SocketAddr, secs: f64) -> Result<serde_json::Value> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect to {addr}"))?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0x5au8; RR_SIZE];
    let mut round_trip = |buf: &mut [u8; RR_SIZE]| -> Result<()> {
        conn.write_all(buf)?;
        conn.read_exact(buf)?;
        Ok(())
    };
    // Warm up caches, the scheduler and the path (ARP, conntrack entry).
    for _ in 0..200 {
        round_trip(&mut buf)?;
    }
    let mut samples_ns = Vec::with_capacity(200_000);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        let t = Instant::now();
        round_trip(&mut buf)?;
        samples_ns.push(t.elapsed().as_nanos() as f64);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "transactions": samples_ns.len(),
        "per_sec": samples_ns.len() as f64 / elapsed,
        "p50_us": stats::percentile(&mut samples_ns, 50.0) / 1000.0,
        "p99_us": stats::percentile(&mut samples_ns, 99.0) / 1000.0,
    }))
}

fn crr(addr: SocketAddr, secs: f64) -> Result<serde_json::Value> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let (mut done, mut failed) = (0u64, 0u64);
    while Instant::now() < deadline {
        match one_connection(addr) {
            Ok(()) => done += 1,
            Err(_) => {
                failed += 1;
                // Refused or out of ports: give the server a moment rather
                // than spinning (counted and reported, never fatal).
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "connections": done,
        "failed": failed,
        "per_sec": done as f64 / elapsed,
    }))
}

/// One connection of the rate test; public so that scenario 4 can time
/// each one (connection latency) with exactly the same exchange.
pub fn one_connection(addr: SocketAddr) -> Result<()> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.write_all(&[1])?;
    let mut byte = [0u8; 1];
    conn.read_exact(&mut byte)?;
    // Wait for the server's FIN so that we close second.
    let _ = conn.read(&mut byte)?;
    Ok(())
}

/// iperf3 and our echo server listening in a namespace; killed on drop.
pub struct Servers {
    iperf: Background,
    pingpong: Background,
}

impl Servers {
    pub fn start(ns: &Netns) -> Result<Servers> {
        let iperf = Background::spawn_quiet(ns.command("iperf3").args([
            "-s",
            "-p",
            &IPERF_PORT.to_string(),
        ]))?;
        let mut pingpong = Background::spawn(ns.command(SELF_EXE).arg("serve"))?;
        pingpong.wait_for_line("ready", Duration::from_secs(10))?;
        // iperf3 prints a report per test, which nobody reads; whether it
        // listens yet, ask the kernel.
        let listening = || {
            cmd::output(
                ns.command("ss")
                    .args(["-Hltn", &format!("sport = :{IPERF_PORT}")]),
            )
            .is_ok_and(|out| !out.trim().is_empty())
        };
        cmd::wait_until(
            &format!("iperf3 server in {}", ns.name),
            Duration::from_secs(10),
            listening,
        )?;
        Ok(Servers { iperf, pingpong })
    }

    /// Fails if a server died (a measurement against it would only time out).
    pub fn check_alive(&mut self) -> Result<()> {
        self.iperf.check_alive()?;
        self.pingpong.check_alive()
    }
}

/// The client side of a measurement: runs in `ns`, against [`Servers`].
pub struct Client<'a> {
    pub ns: &'a Netns,
}

/// What a connection-rate run yields.
pub struct Rate {
    pub per_sec: f64,
    pub failed: f64,
}

impl Client<'_> {
    /// `iperf3 -c` with `streams` parallel streams for `secs`; Gbit/s received.
    pub fn iperf(&self, server: SocketAddr, streams: u32, secs: u32) -> Result<f64> {
        let out = cmd::json(self.ns.command("iperf3").args([
            "-c",
            &server.ip().to_string(),
            "-p",
            &server.port().to_string(),
            "-t",
            &secs.to_string(),
            "-P",
            &streams.to_string(),
            "-J",
        ]))?;
        let bps = out["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .with_context(|| format!("iperf3 reported no throughput: {}", out["error"]))?;
        Ok(bps / 1e9)
    }

    /// Round trips on one connection to our echo server; (p50, p99) in µs.
    pub fn rr(&self, server: SocketAddr, secs: f64) -> Result<(f64, f64)> {
        let out = self.helper(&["rr", &server.to_string(), &secs.to_string()])?;
        Ok((num(&out, "p50_us")?, num(&out, "p99_us")?))
    }

    /// New connections per second to our echo server.
    pub fn crr(&self, server: SocketAddr, secs: f64) -> Result<Rate> {
        let out = self.helper(&["crr", &server.to_string(), &secs.to_string()])?;
        Ok(Rate {
            per_sec: num(&out, "per_sec")?,
            failed: num(&out, "failed")?,
        })
    }

    /// Runs a hidden subcommand of this binary in the client namespace.
    fn helper(&self, args: &[&str]) -> Result<Value> {
        cmd::json(
            self.ns
                .command(SELF_EXE)
                .args(args)
                .env_remove("RUST_BACKTRACE"),
        )
    }
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("helper output has no {key}: {v}"))
}
