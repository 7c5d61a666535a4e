//! Scenario 7: the control plane. How long netd takes to give a container a
//! network and to take it away again, against the CNI reference plugins
//! (`bridge` + `host-local`, what Podman's CNI mode, containerd and
//! Kubernetes' kubenet run), and how netd's time and memory grow with a
//! fleet of containers.
//!
//! netd is timed at its API (no CLI process start in the figure); the CNI
//! plugin is timed from exec to exit, as a runtime sees it. netd's attach
//! creates the namespace too, CNI's ADD gets one made beforehand: that only
//! favours CNI.
//!
//! Then CNI against CNI, both timed from exec to exit with a namespace made
//! beforehand and one published port: netd's own plugin (`netd-cni`, a
//! client of the daemon) against the reference chain a runtime runs for the
//! same job, `bridge` + `host-local` then `portmap` (iptables DNAT rules),
//! DEL in reverse order.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::cmd::{self, say};
use crate::daemon::Daemon;
use crate::netns::Netns;
use crate::report::{Better, Report};
use crate::stats::{self, percentile};
use crate::svg::{self, Series, line_chart};
use crate::topology::System;
use crate::{Ctx, Plan};

/// The netd network containers attach to: room for the largest fleet.
const NETD_SUBNET: &str = "198.19.16.0/20";
/// The CNI network (host-local range), equally large.
const CNI_SUBNET: &str = "198.19.64.0/20";
const CNI_DIR: &str = "/usr/lib/cni";

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    say!("[7] control plane: netd vs the CNI bridge plugin");
    let daemon = Daemon::start(&ctx.netd, &ctx.tag)?;
    let rss_idle = daemon.rss_kib()?;
    daemon.api().create_network("cp", NETD_SUBNET)?;
    let cni = Cni::new(ctx)?;
    attach_cycles(ctx, &daemon, &cni, report)?;
    plugin_cycles(ctx, &daemon, &cni, report)?;
    fleet(ctx.plan, &daemon, &cni, report, rss_idle)
}

/// Attach then remove, netd and CNI alternating, `plan.attaches` times.
fn attach_cycles(ctx: &Ctx, daemon: &Daemon, cni: &Cni, report: &mut Report) -> Result<()> {
    let n = ctx.plan.attaches;
    let api = daemon.api();
    let (mut netd_add, mut netd_del, mut cni_add, mut cni_del) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        cmd::check_interrupted()?;
        let name = format!("a{i}");
        netd_add.push(timed_ms(|| api.create_container(&name, "cp"))?);
        netd_del.push(timed_ms(|| api.remove_container(&name))?);

        let ns = Netns::create(&format!("{}-a{i}", ctx.tag))?;
        let id = format!("bench-a{i}");
        cni_add.push(timed_ms(|| cni.run("ADD", &id, &ns))?);
        cni_del.push(timed_ms(|| cni.run("DEL", &id, &ns))?);
        drop(ns);
        if (i + 1) % (n / 4).max(1) == 0 {
            say!(
                "[7] attach/remove {}/{n}: last netd {:.1}/{:.1} ms, CNI {:.1}/{:.1} ms",
                i + 1,
                netd_add[i],
                netd_del[i],
                cni_add[i],
                cni_del[i]
            );
        }
    }
    for (what, p, netd, cni) in [
        (
            "attach a container to a network, p50",
            50.0,
            &netd_add,
            &cni_add,
        ),
        (
            "attach a container to a network, p99",
            99.0,
            &netd_add,
            &cni_add,
        ),
        ("remove the container, p50", 50.0, &netd_del, &cni_del),
        ("remove the container, p99", 99.0, &netd_del, &cni_del),
    ] {
        let name = format!("{what} ({n} cycles)");
        let (mut netd, mut cni) = (netd.clone(), cni.clone());
        report.add(
            7,
            &name,
            "ms",
            Better::Lower,
            System::Netd,
            percentile(&mut netd, p),
        );
        report.add(
            7,
            &name,
            "ms",
            Better::Lower,
            System::Cni,
            percentile(&mut cni, p),
        );
    }
    report.plot(
        "attach-latency",
        line_chart(
            &format!("Attach latency, {n} cycles (CDF)"),
            "milliseconds",
            "fraction of attaches",
            &[
                Series {
                    name: "netd (API: namespace + veth + eBPF)".into(),
                    points: svg::cdf(&netd_add),
                },
                Series {
                    name: "CNI bridge + host-local (ADD)".into(),
                    points: svg::cdf(&cni_add),
                },
            ],
        ),
    );
    Ok(())
}

/// CNI ADD then DEL with one published port, netd's plugin and the
/// reference chain alternating, `plan.attaches` times.
fn plugin_cycles(ctx: &Ctx, daemon: &Daemon, cni: &Cni, report: &mut Report) -> Result<()> {
    let n = ctx.plan.attaches;
    let netd = NetdPlugin::new(ctx, daemon)?;
    let (mut netd_add, mut netd_del, mut ref_add, mut ref_del) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        cmd::check_interrupted()?;
        let ns = Netns::create(&format!("{}-p{i}", ctx.tag))?;
        let id = format!("bench-p{i}");
        let (ms, result) = timed(|| netd.run("ADD", &id, &ns, None))?;
        netd_add.push(ms);
        netd_del.push(timed(|| netd.run("DEL", &id, &ns, Some(&result)))?.0);
        drop(ns);

        let ns = Netns::create(&format!("{}-q{i}", ctx.tag))?;
        let (ms, result) = timed(|| cni.chain_add(&id, &ns))?;
        ref_add.push(ms);
        ref_del.push(timed(|| cni.chain_del(&id, &ns, &result))?.0);
        drop(ns);
        if (i + 1) % (n / 4).max(1) == 0 {
            say!(
                "[7] CNI ADD/DEL {}/{n}: last netd plugin {:.1}/{:.1} ms, reference chain {:.1}/{:.1} ms",
                i + 1,
                netd_add[i],
                netd_del[i],
                ref_add[i],
                ref_del[i]
            );
        }
    }
    for (what, p, netd, reference) in [
        ("ADD", 50.0, &netd_add, &ref_add),
        ("ADD", 99.0, &netd_add, &ref_add),
        ("DEL", 50.0, &netd_del, &ref_del),
        ("DEL", 99.0, &netd_del, &ref_del),
    ] {
        let name = format!(
            "CNI {what} with a published port, p{p:.0} (netd: its plugin; CNI: \
             bridge+host-local+portmap; {n} cycles)"
        );
        for (system, samples) in [(System::Netd, netd), (System::Cni, reference)] {
            let mut samples = samples.clone();
            report.add(
                7,
                &name,
                "ms",
                Better::Lower,
                system,
                percentile(&mut samples, p),
            );
        }
    }
    Ok(())
}

/// `plan.fleet` containers on netd, then as many CNI ADDs: total time, the
/// daemon's memory, and how the time per container grows.
fn fleet(plan: Plan, daemon: &Daemon, cni: &Cni, report: &mut Report, rss_idle: u64) -> Result<()> {
    let n = plan.fleet;
    let api = daemon.api();
    let step = (n / 20).max(1);
    let mut rss = vec![(0.0, rss_idle as f64 / 1024.0)];
    let mut netd_each = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        cmd::check_interrupted()?;
        netd_each.push(timed_ms(|| api.create_container(&format!("f{i}"), "cp"))?);
        if (i + 1) % step == 0 {
            rss.push(((i + 1) as f64, daemon.rss_kib()? as f64 / 1024.0));
        }
        if (i + 1) % (n / 5).max(1) == 0 {
            say!(
                "[7] netd fleet: {}/{n} containers, {:.1} s, RSS {:.1} MiB",
                i + 1,
                started.elapsed().as_secs_f64(),
                rss.last().map_or(0.0, |r| r.1)
            );
        }
    }
    let netd_total = started.elapsed().as_secs_f64();
    let rss_full = daemon.rss_kib()? as f64 / 1024.0;
    let started = Instant::now();
    for i in 0..n {
        cmd::check_interrupted()?;
        api.remove_container(&format!("f{i}"))?;
    }
    let netd_remove_total = started.elapsed().as_secs_f64();

    say!("[7] CNI fleet: making {n} namespaces (not timed)");
    let mut namespaces = Vec::with_capacity(n);
    for i in 0..n {
        cmd::check_interrupted()?;
        namespaces.push(Netns::create(&format!("{}-f{i}", cni.tag))?);
    }
    let mut cni_each = Vec::with_capacity(n);
    let started = Instant::now();
    for (i, ns) in namespaces.iter().enumerate() {
        cmd::check_interrupted()?;
        cni_each.push(timed_ms(|| cni.run("ADD", &format!("bench-f{i}"), ns))?);
        if (i + 1) % (n / 5).max(1) == 0 {
            say!(
                "[7] CNI fleet: {}/{n} ADDs, {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let cni_total = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (i, ns) in namespaces.iter().enumerate() {
        cmd::check_interrupted()?;
        cni.run("DEL", &format!("bench-f{i}"), ns)?;
    }
    let cni_remove_total = started.elapsed().as_secs_f64();
    drop(namespaces);

    let create = format!("create {n} containers, one after the other");
    report.add(7, &create, "s", Better::Lower, System::Netd, netd_total);
    report.add(7, &create, "s", Better::Lower, System::Cni, cni_total);
    let remove = format!("remove those {n} containers");
    report.add(
        7,
        &remove,
        "s",
        Better::Lower,
        System::Netd,
        netd_remove_total,
    );
    report.add(
        7,
        &remove,
        "s",
        Better::Lower,
        System::Cni,
        cni_remove_total,
    );
    let idle = "daemon RSS, no containers";
    report.add(
        7,
        idle,
        "MiB",
        Better::Lower,
        System::Netd,
        rss_idle as f64 / 1024.0,
    );
    let full = format!("daemon RSS with {n} containers");
    report.add(7, &full, "MiB", Better::Lower, System::Netd, rss_full);

    report.plot(
        "fleet-rss",
        line_chart(
            "netd daemon memory as containers are added",
            "containers",
            "VmRSS (MiB)",
            &[Series {
                name: "netd".into(),
                points: rss,
            }],
        ),
    );
    report.plot(
        "fleet-attach",
        line_chart(
            "Time per attach as the fleet grows (median per window)",
            "containers already attached",
            "milliseconds",
            &[
                Series {
                    name: "netd".into(),
                    points: windowed_median(&netd_each, (n / 50).max(1)),
                },
                Series {
                    name: "CNI bridge + host-local".into(),
                    points: windowed_median(&cni_each, (n / 50).max(1)),
                },
            ],
        ),
    );
    Ok(())
}

/// Medians of consecutive windows of `window` values, at each window's
/// start: the trend of a noisy series.
fn windowed_median(values: &[f64], window: usize) -> Vec<(f64, f64)> {
    values
        .chunks(window)
        .enumerate()
        .map(|(i, chunk)| ((i * window) as f64, stats::median(chunk)))
        .collect()
}

fn timed_ms(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    Ok(timed(f)?.0)
}

/// How long `f` took, in milliseconds, and what it returned.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let start = Instant::now();
    let value = f()?;
    Ok((start.elapsed().as_secs_f64() * 1000.0, value))
}

/// The host port both CNI setups publish (one attachment at a time).
const PUBLISHED_PORT: u16 = 18_080;

/// One CNI invocation of the plugin at `path`, run in `host` (the
/// runtime's namespace) for container `id` in `ns`: the parsed result
/// (`Null` for commands without one).
fn invoke(
    host: Option<&Netns>,
    path: &str,
    command: &str,
    id: &str,
    ns: &Netns,
    config: &Value,
) -> Result<Value> {
    let mut plugin = match host {
        Some(host) => host.command(path),
        None => Command::new(path),
    };
    plugin
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", ns.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_DIR);
    let out = cmd::output_with_input(&mut plugin, config.to_string().as_bytes())
        .with_context(|| format!("CNI {command} of {id} by {path}"))?;
    if out.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&out).with_context(|| format!("the result of {path}: {out}"))
}

/// The configuration of one plugin of a chain for one invocation: `conf`
/// with the runtime's additions.
fn request(conf: &Value, runtime_config: Option<&Value>, prev: Option<&Value>) -> Value {
    let mut conf = conf.clone();
    if let Some(rc) = runtime_config {
        conf["runtimeConfig"] = rc.clone();
    }
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    conf
}

fn port_mappings() -> Value {
    json!({"portMappings": [{"hostPort": PUBLISHED_PORT, "containerPort": 80, "protocol": "tcp"}]})
}

/// netd's CNI plugin (built beside the netd binary) on the daemon's
/// network, run from the daemon's (the host's) namespace.
struct NetdPlugin {
    path: String,
    config: Value,
}

impl NetdPlugin {
    fn new(ctx: &Ctx, daemon: &Daemon) -> Result<NetdPlugin> {
        let path = ctx.netd.with_file_name("netd-cni");
        if !path.exists() {
            bail!(
                "no netd CNI plugin at {}: it is built with netd (`cargo build --release -p netd`)",
                path.display()
            );
        }
        Ok(NetdPlugin {
            path: path.display().to_string(),
            config: json!({
                "cniVersion": "1.0.0",
                "name": "bench",
                "type": "netd",
                "network": "cp",
                "socket": daemon.socket(),
            }),
        })
    }

    fn run(&self, command: &str, id: &str, ns: &Netns, prev: Option<&Value>) -> Result<Value> {
        let config = request(&self.config, Some(&port_mappings()), prev);
        invoke(None, &self.path, command, id, ns, &config)
    }
}

/// The CNI reference plugins, run per the CNI spec from a namespace of the
/// bench's that plays the host (the bridge, its address and the ipMasq
/// iptables rules land there, not on the real host).
struct Cni {
    host: Netns,
    tag: String,
    config: Value,
    portmap: Value,
    ipam_dir: PathBuf,
}

impl Cni {
    fn new(ctx: &Ctx) -> Result<Cni> {
        for plugin in ["bridge", "host-local", "portmap"] {
            let path = format!("{CNI_DIR}/{plugin}");
            if !std::path::Path::new(&path).exists() {
                bail!(
                    "no CNI plugin at {path}: install Debian's containernetworking-plugins \
                     (`cargo xtask bench` does)"
                );
            }
        }
        let host = Netns::create(&format!("{}-ch", ctx.tag))?;
        let ipam_dir = std::env::temp_dir().join(format!("{}-cni-ipam", ctx.tag));
        let config = json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": CNI_SUBNET}]],
                "dataDir": ipam_dir,
            },
        });
        // The chain's second plugin: iptables DNAT rules in `host`.
        let portmap = json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "type": "portmap",
            "capabilities": {"portMappings": true},
        });
        Ok(Cni {
            host,
            tag: ctx.tag.clone(),
            config,
            portmap,
            ipam_dir,
        })
    }

    /// ADD through the reference chain with one published port: the
    /// bridge, then portmap with the bridge's result. Returns the chain's
    /// result.
    fn chain_add(&self, id: &str, ns: &Netns) -> Result<Value> {
        let bridge = invoke(
            Some(&self.host),
            &self.plugin("bridge"),
            "ADD",
            id,
            ns,
            &self.config,
        )?;
        let portmap = request(&self.portmap, Some(&port_mappings()), Some(&bridge));
        invoke(
            Some(&self.host),
            &self.plugin("portmap"),
            "ADD",
            id,
            ns,
            &portmap,
        )
    }

    /// DEL through the chain in reverse order, each with the ADD's result.
    fn chain_del(&self, id: &str, ns: &Netns, result: &Value) -> Result<()> {
        let portmap = request(&self.portmap, Some(&port_mappings()), Some(result));
        invoke(
            Some(&self.host),
            &self.plugin("portmap"),
            "DEL",
            id,
            ns,
            &portmap,
        )?;
        let bridge = request(&self.config, None, Some(result));
        invoke(
            Some(&self.host),
            &self.plugin("bridge"),
            "DEL",
            id,
            ns,
            &bridge,
        )?;
        Ok(())
    }

    fn plugin(&self, name: &str) -> String {
        format!("{CNI_DIR}/{name}")
    }

    /// One plugin invocation (`ADD` or `DEL`) for container `id` in `ns`.
    fn run(&self, command: &str, id: &str, ns: &Netns) -> Result<()> {
        invoke(
            Some(&self.host),
            &self.plugin("bridge"),
            command,
            id,
            ns,
            &self.config,
        )?;
        Ok(())
    }
}

impl Drop for Cni {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.ipam_dir);
    }
}
