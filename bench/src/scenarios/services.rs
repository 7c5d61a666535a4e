//! Scenario 4: services. New connections through a service's virtual IP
//! while the number of services grows 1 → 100 → 1,000 → 10,000, every
//! service with the same 3 backends, on netd and on the two rule-based
//! designs it replaces. This is the curve that shows why eBPF: netd finds a
//! VIP with one hash lookup whatever the count; iptables walks its service
//! rules one by one; nftables looks the VIP up in a map.
//!
//! - **netd**: the real daemon, one network, 3 backend containers running
//!   the bench's echo server, each a backend of every service (`--service`
//!   repeated: a container may back several services), and a client
//!   container. Services are created through the API; since a container
//!   joins its services when it is created, the backends are made again
//!   after each growth step, with the whole list.
//! - **docker-like** (the System column reused): kube-proxy's iptables
//!   mode, the rule-per-service design Docker's own DNAT rules share. In a
//!   namespace playing the host: `KUBE-SERVICES` holds one rule per
//!   service VIP:port, walked in order, each jumping to a per-service chain
//!   that picks one of the 3 backends with `-m statistic --mode random` and
//!   DNATs to it (kube-proxy adds a chain per endpoint in between; left
//!   out, it costs the same at every count). Loaded with one
//!   `iptables-restore` (the nft backend, as Debian's `iptables`).
//! - **podman-like** (the System column reused): the nftables design
//!   (kube-proxy's nftables mode, netavark's port maps): one verdict map
//!   keyed on `ip daddr . tcp dport` with an element per service, `goto` a
//!   per-service chain that picks a backend with `numgen random mod 3`.
//!   Loaded with one `nft -f`.
//!
//! The baselines are bridged like `topology`'s: a bridge in the host
//! namespace, the client and the backends in namespaces of their own on it,
//! bridge netfilter on (the backends' replies are bridged straight to the
//! client, and conntrack on the bridge turns their source back into the
//! VIP, as on a Kubernetes node).
//!
//! Measured at each count on one probe service, the same at every count
//! and the last rule iptables walks (netd creates it first: where it sits
//! changes nothing in a hash map): connections per second, one client,
//! each connect, 1 byte each way, server closes, client closes (the
//! exchange of scenario 1's connection rate), and the time of each such
//! connection, p50 and p99. The probe stays the same because a new VIP
//! with the same client and backends would clash in conntrack with the
//! previous count's entries (same reply tuple) and measure that instead.
//!
//! Every measurement alternates, in slices, with one as long on a plain
//! veth pair ([`Yardstick`]): the counts are minutes apart, and on this shared
//! machine everything can run several times slower for a minute. The target (netd at 10,000 services at
//! least 0.95 of netd at 1) is read from the ratios to the yardstick.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, Background, say};
use crate::daemon::Daemon;
use crate::netns::Netns;
use crate::pingpong::{self, CRR_PORT};
use crate::report::{Better, Report};
use crate::stats::{self, percentile};
use crate::svg::{self, Series};
use crate::topology::{self, Pair, System};
use crate::{Ctx, Plan};

/// netd's network: room for 10,000 VIPs and the containers (a /18 no other
/// scenario uses).
const NETD_SUBNET: &str = "198.19.128.0/18";
const NETD_NETWORK: &str = "svc";
/// The baselines' bridges (the bridge takes .1, the client .2, the
/// backends .3 to .5).
const DOCKER_NET: &str = "198.19.32";
const PODMAN_NET: &str = "198.19.33";
/// The baselines' service VIPs: `VIP_BASE + 1 + i` for service `i`, outside
/// the bridge's subnet like a Kubernetes service CIDR. Only ever routed
/// inside the baselines' own namespaces.
const VIP_BASE: Ipv4Addr = Ipv4Addr::new(198, 19, 192, 0);
/// Room for that many VIPs in the baselines' range.
const MAX_VIPS: usize = 16_000;
/// The probe service's index in the baselines: the last of the range, so
/// that no filler service ever takes its VIP.
const PROBE: usize = MAX_VIPS - 1;
const BACKENDS: usize = 3;
/// How long a backend may take to listen after it is started.
const READY: Duration = Duration::from_secs(10);

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let counts: &[usize] = if ctx.plan.quick {
        &[1, 100]
    } else {
        &[1, 100, 1_000, 10_000]
    };
    say!("[4] services: building netd, docker-like (iptables) and podman-like (nftables)");
    let daemon = Daemon::start(&ctx.netd, &ctx.tag)?;
    let mut beds = [
        Bed::netd(&daemon)?,
        Bed::rules(ctx, Rules::Iptables)?,
        Bed::rules(ctx, Rules::Nftables)?,
    ];
    let yardstick = Yardstick::start(ctx)?;
    let mut curves: BTreeMap<System, Vec<(f64, f64)>> = BTreeMap::new();
    let mut relative: BTreeMap<System, Vec<(f64, f64)>> = BTreeMap::new();
    for &n in counts {
        for bed in &mut beds {
            cmd::check_interrupted()?;
            let secs = bed.grow(n, report)?;
            say!(
                "[4] {:<30} {n:>6} services programmed in {secs:.2} s",
                bed.system.label()
            );
            report.add(
                4,
                &format!("time to program {n} services"),
                "s",
                Better::Lower,
                bed.system,
                secs,
            );
        }
        let rates = measure_all(ctx.plan, n, &mut beds, &yardstick, report)?;
        for (system, (samples, ratios)) in rates {
            curves
                .entry(system)
                .or_default()
                .push((n as f64, stats::median(&samples)));
            relative
                .entry(system)
                .or_default()
                .push((n as f64, stats::median(&ratios)));
        }
    }
    summarize(report, &curves, &relative);
    Ok(())
}

/// The machine's yardstick: a plain veth pair between two namespaces of
/// the bench (scenario 1's limit) with an echo server, whose connection
/// rate is measured in slices alternating with those of every measurement
/// through a VIP ([`SLICES`]). On these
/// shared machines everything can run several times slower for a minute;
/// a VIP rate divided by the yardstick's rate of the same moment
/// compares counts measured minutes apart on the same footing. Nothing in
/// the yardstick's path depends on the services.
struct Yardstick {
    /// First: killed before the namespaces go.
    _server: Background,
    pair: Pair,
}

impl Yardstick {
    fn start(ctx: &Ctx) -> Result<Yardstick> {
        let pair = topology::limit(&format!("{}-4", ctx.tag))?;
        let mut server = Background::spawn(pair.server.command(pingpong::SELF_EXE).arg("serve"))?;
        server.wait_for_line("ready", READY)?;
        Ok(Yardstick {
            _server: server,
            pair,
        })
    }

    fn measure(&self, secs: f64) -> Result<Run> {
        connections(
            &self.pair.client,
            SocketAddr::from((self.pair.server_ep.ip, CRR_PORT)),
            secs,
        )
        .context("measuring the plain veth pair")
    }
}

/// One system's connection rates through the VIP, one per repetition, and
/// each divided by the yardstick's in the same repetition.
type Rates = (Vec<f64>, Vec<f64>);

/// Every system in turn, the order rotating per repetition, each in
/// alternation with the yardstick; per system, the connection rates through the VIP and
/// their ratios to the yardstick's.
fn measure_all(
    plan: Plan,
    n: usize,
    beds: &mut [Bed],
    yardstick: &Yardstick,
    report: &mut Report,
) -> Result<BTreeMap<System, Rates>> {
    let mut rates: BTreeMap<System, Rates> = BTreeMap::new();
    for rep in 0..plan.reps {
        for i in 0..beds.len() {
            cmd::check_interrupted()?;
            let k = (i + rep) % beds.len();
            let bed = &mut beds[k];
            bed.check_alive()?;
            // The VIP and the yardstick in alternating slices, so that
            // both see the same spells of the machine.
            let (mut vip, mut veth) = (Run::default(), Run::default());
            let slice = plan.rr_secs / SLICES as f64;
            for _ in 0..SLICES {
                vip.add(
                    connections(&bed.client, SocketAddr::from((bed.vip, CRR_PORT)), slice)
                        .with_context(|| format!("measuring {n} services on {}", bed.system))?,
                );
                veth.add(yardstick.measure(slice)?);
            }
            let (m, limit) = (vip.summary()?, veth.summary()?);
            say!(
                "[4] rep {}/{} {:<30} {n:>6} services: {:>8} conn/s, p50 {} µs, p99 {} µs \
                 (veth pair, alternating: {} conn/s){}",
                rep + 1,
                plan.reps,
                bed.system.label(),
                stats::fmt3(m.per_sec),
                stats::fmt3(m.p50_us),
                stats::fmt3(m.p99_us),
                stats::fmt3(limit.per_sec),
                if m.failed > 0 {
                    format!(", {} failed", m.failed)
                } else {
                    String::new()
                }
            );
            for (name, unit, better, value) in [
                (
                    format!("new TCP connections via the VIP, {n} services"),
                    "conn/s",
                    Better::Higher,
                    m.per_sec,
                ),
                (
                    format!("connection time via the VIP p50, {n} services"),
                    "µs",
                    Better::Lower,
                    m.p50_us,
                ),
                (
                    format!("connection time via the VIP p99, {n} services"),
                    "µs",
                    Better::Lower,
                    m.p99_us,
                ),
            ] {
                report.add(4, &name, unit, better, bed.system, value);
            }
            report.add(
                4,
                &format!("new TCP connections via the VIP relative to the veth pair in alternation, {n} services"),
                "ratio",
                Better::Higher,
                bed.system,
                m.per_sec / limit.per_sec,
            );
            report.add(
                4,
                &format!("new TCP connections on a plain veth pair (the yardstick, in alternation with each system), {n} services"),
                "conn/s",
                Better::Higher,
                System::Limit,
                limit.per_sec,
            );
            if m.failed > 0 {
                report.note(format!(
                    "{}: {} connections failed at {n} services",
                    bed.system, m.failed
                ));
            }
            if limit.failed > 0 {
                report.note(format!(
                    "the veth pair after {}: {} connections failed at {n} services",
                    bed.system, limit.failed
                ));
            }
            let (samples, ratios) = rates.entry(bed.system).or_default();
            samples.push(m.per_sec);
            ratios.push(m.per_sec / limit.per_sec);
        }
    }
    Ok(rates)
}

/// The growth plot and, per system, how the rate at the largest count
/// compares with the rate at one service: as measured, and relative to
/// the yardstick (the figure that the machine's slow spells do not move).
fn summarize(
    report: &mut Report,
    curves: &BTreeMap<System, Vec<(f64, f64)>>,
    relative: &BTreeMap<System, Vec<(f64, f64)>>,
) {
    let mut series = Vec::new();
    for (system, points) in curves {
        if let (Some(first), Some(last)) = (points.first(), points.last()) {
            report.note(format!(
                "{system}: {:.0} conn/s at {} service(s), {:.0} at {}: {:.2}× (scenario 4)",
                first.1,
                first.0,
                last.1,
                last.0,
                last.1 / first.1
            ));
        }
        if let Some(points) = relative.get(system)
            && let (Some(first), Some(last)) = (points.first(), points.last())
        {
            report.note(format!(
                "{system}: relative to the veth pair measured in alternation, {:.3} at {} \
                 service(s), {:.3} at {}: {:.2}× (scenario 4)",
                first.1,
                first.0,
                last.1,
                last.0,
                last.1 / first.1
            ));
        }
        series.push(Series {
            name: system.label().to_string(),
            points: points.clone(),
        });
    }
    report.plot(
        "services-growth",
        svg::log_x_chart(
            "New connections through a service VIP as services grow",
            "services (log scale), 3 backends each",
            "connections/s, one client (median)",
            &series,
        ),
    );
}

/// One system's services, backends and client.
struct Bed<'d> {
    system: System,
    /// The measured VIP: the probe service's.
    vip: Ipv4Addr,
    /// Services that exist.
    count: usize,
    kind: Kind<'d>,
    /// Last: the namespace goes after whatever runs in it.
    client: Netns,
}

enum Kind<'d> {
    Netd {
        daemon: &'d Daemon,
        /// Service ids in creation order.
        ids: Vec<String>,
    },
    Rules {
        rules: Rules,
        /// The echo servers, one per backend namespace; dropped (killed)
        /// before the namespaces.
        servers: Vec<Background>,
        backend_ips: Vec<Ipv4Addr>,
        _backends: Vec<Netns>,
        host: Netns,
    },
}

#[derive(Clone, Copy)]
enum Rules {
    Iptables,
    Nftables,
}

impl<'d> Bed<'d> {
    fn netd(daemon: &'d Daemon) -> Result<Bed<'d>> {
        let api = daemon.api();
        api.create_network(NETD_NETWORK, NETD_SUBNET)?;
        api.create_container("client", NETD_NETWORK)?;
        let client = Netns::open(&daemon.netns_name("client"))?;
        client_settings(&client)?;
        Ok(Bed {
            system: System::Netd,
            vip: Ipv4Addr::UNSPECIFIED,
            count: 0,
            kind: Kind::Netd {
                daemon,
                ids: Vec::new(),
            },
            client,
        })
    }

    /// Namespaces `<tag>-4<d|p>{h,c,b1..b3}`: the host with the bridge and
    /// the rules, the client, the backends with an echo server each.
    fn rules(ctx: &Ctx, rules: Rules) -> Result<Bed<'static>> {
        let (system, letter, net) = match rules {
            Rules::Iptables => (System::DockerLike, "d", DOCKER_NET),
            Rules::Nftables => (System::PodmanLike, "p", PODMAN_NET),
        };
        let prefix = format!("{}-4{letter}", ctx.tag);
        let host = Netns::create(&format!("{prefix}h"))?;
        host.sysctl("net.ipv4.ip_forward", "1")?;
        host.sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
        // A connection-rate run leaves tens of thousands of TIME_WAIT
        // entries per second in conntrack; with the default two minutes the
        // repetitions would fill the table (shared by every namespace) and
        // start dropping. Their count does not change what a new
        // connection costs (a hash lookup), so expire them at once.
        host.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1")?;
        host.ip(&["link", "add", "br0", "type", "bridge"])?;
        host.ip(&["addr", "add", &format!("{net}.1/24"), "dev", "br0"])?;
        host.ip(&["link", "set", "br0", "up"])?;
        let attach = |end: &str, addr: u8| -> Result<Netns> {
            let ns = Netns::create(&format!("{prefix}{end}"))?;
            let host_if = format!("v{end}");
            host.ip(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ])?;
            host.ip(&["link", "set", &host_if, "master", "br0", "up"])?;
            ns.ip(&["addr", "add", &format!("{net}.{addr}/24"), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            ns.ip(&["route", "add", "default", "via", &format!("{net}.1")])?;
            Ok(ns)
        };
        let client = attach("c", 2)?;
        client_settings(&client)?;
        let mut backends = Vec::new();
        let mut servers = Vec::new();
        let mut backend_ips = Vec::new();
        for i in 0..BACKENDS {
            let addr = 3 + i as u8;
            let ns = attach(&format!("b{}", i + 1), addr)?;
            let mut server = Background::spawn(ns.command(crate::pingpong::SELF_EXE).arg("serve"))?;
            server.wait_for_line("ready", READY)?;
            servers.push(server);
            backends.push(ns);
            backend_ips.push(format!("{net}.{addr}").parse()?);
        }
        Ok(Bed {
            system,
            vip: Ipv4Addr::UNSPECIFIED,
            count: 0,
            kind: Kind::Rules {
                rules,
                servers,
                backend_ips,
                _backends: backends,
                host,
            },
            client,
        })
    }

    /// Makes `n` services exist (more than before; the probe and `n - 1`
    /// fillers), all with the same backends; how long that took, in
    /// seconds. netd: the API creates of the new services plus the
    /// backends joining all `n` (notes say how the two split); baselines:
    /// loading the whole ruleset for `n`, as kube-proxy's full sync does.
    fn grow(&mut self, n: usize, report: &mut Report) -> Result<f64> {
        let from = self.count;
        let started = Instant::now();
        match &mut self.kind {
            Kind::Netd { daemon, ids } => {
                let api = daemon.api();
                for i in from..n {
                    if i > from && (i - from).is_multiple_of(1000) {
                        cmd::check_interrupted()?;
                        say!(
                            "[4] netd: {i}/{n} services, {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    let name = if i == 0 {
                        "probe".to_string()
                    } else {
                        format!("s{i}")
                    };
                    ids.push(api.create_service(&name, NETD_NETWORK)?);
                }
                let created = started.elapsed().as_secs_f64();
                let probe = ids.first().context("no service")?;
                self.vip = api.service_vip(probe)?;
                let joined = Instant::now();
                let serve = pingpong::serve_command()?;
                for b in 1..=BACKENDS {
                    let name = format!("b{b}");
                    if from > 0 {
                        api.remove_container(&name)?;
                    }
                    api.run_container(&name, NETD_NETWORK, ids, &serve)?;
                }
                for b in 1..=BACKENDS {
                    let ns = Netns::open(&daemon.netns_name(&format!("b{b}")))?;
                    wait_listening(&ns)?;
                }
                let joined = joined.elapsed().as_secs_f64();
                report.note(format!(
                    "netd: services {}..{n} created through the API in {created:.2} s \
                     ({:.2} ms each); {BACKENDS} backends made again, each joining all {n} \
                     services, in {joined:.2} s",
                    from + 1,
                    created * 1000.0 / (n - from) as f64
                ));
            }
            Kind::Rules {
                rules,
                backend_ips,
                host,
                ..
            } => {
                let vips: Vec<Ipv4Addr> =
                    (0..n - 1).chain([PROBE]).map(vip).collect::<Result<_>>()?;
                match rules {
                    Rules::Iptables => cmd::output_with_input(
                        &mut host.command("iptables-restore"),
                        kube_iptables(&vips, backend_ips).as_bytes(),
                    )?,
                    Rules::Nftables => cmd::output_with_input(
                        host.command("nft").args(["-f", "-"]),
                        kube_nftables(&vips, backend_ips).as_bytes(),
                    )?,
                };
                self.vip = vip(PROBE)?;
            }
        }
        self.count = n;
        Ok(started.elapsed().as_secs_f64())
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Kind::Rules { servers, .. } = &mut self.kind {
            for server in servers {
                server.check_alive()?;
            }
        }
        Ok(())
    }
}

impl Drop for Bed<'_> {
    /// netd's backends run processes that outlive the daemon and its
    /// namespaces: remove them through the API while it still answers
    /// (each may be absent after a failed step: nothing to report then).
    fn drop(&mut self) {
        if let Kind::Netd { daemon, .. } = &self.kind {
            for b in 1..=BACKENDS {
                let _ = daemon.api().remove_container(&format!("b{b}"));
            }
        }
    }
}

/// Same client settings on every system (those of `topology`): a
/// connection-rate run must not run out of ephemeral ports.
pub(super) fn client_settings(client: &Netns) -> Result<()> {
    client.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
    client.sysctl("net.ipv4.tcp_tw_reuse", "1")
}

/// Until the echo server in `ns` accepts connections.
pub(super) fn wait_listening(ns: &Netns) -> Result<()> {
    cmd::wait_until(&format!("echo server in {}", ns.name), READY, || {
        cmd::output(
            ns.command("ss")
                .args(["-Hltn", &format!("sport = :{CRR_PORT}")]),
        )
        .is_ok_and(|out| !out.trim().is_empty())
    })
}

/// The baselines' VIP of service `i`.
fn vip(i: usize) -> Result<Ipv4Addr> {
    if i >= MAX_VIPS {
        bail!("the baselines' service range holds {MAX_VIPS} VIPs");
    }
    Ok(Ipv4Addr::from(u32::from(VIP_BASE) + 1 + i as u32))
}

/// kube-proxy's iptables mode for services `vips` (port [`CRR_PORT`]), each
/// balanced over `backends`, as one `iptables-restore` input that replaces
/// the nat table.
fn kube_iptables(vips: &[Ipv4Addr], backends: &[Ipv4Addr]) -> String {
    let mut out = format!("{}:KUBE-SERVICES - [0:0]\n", topology::NAT_TABLE);
    for i in 0..vips.len() {
        let _ = writeln!(out, ":KUBE-SVC-{i} - [0:0]");
    }
    out.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    for (i, vip) in vips.iter().enumerate() {
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -d {vip}/32 -p tcp -m tcp --dport {CRR_PORT} -j KUBE-SVC-{i}"
        );
    }
    for i in 0..vips.len() {
        for (k, backend) in backends.iter().enumerate() {
            let pick = topology::uniform_pick(k, backends.len());
            let _ = writeln!(
                out,
                "-A KUBE-SVC-{i} {pick}-j DNAT --to-destination {backend}"
            );
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// The nftables design for services `vips` (port [`CRR_PORT`]): one verdict
/// map with an element per service, a chain per service choosing among
/// `backends`. Replaces the namespace's whole ruleset.
fn kube_nftables(vips: &[Ipv4Addr], backends: &[Ipv4Addr]) -> String {
    let elements: Vec<String> = vips
        .iter()
        .enumerate()
        .map(|(i, vip)| format!("{vip} . {CRR_PORT} : goto svc_{i}"))
        .collect();
    let pick: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(k, b)| format!("{k} : {b}"))
        .collect();
    let mut out = format!(
        "flush ruleset\ntable ip kube {{\n\tmap services {{\n\t\ttype ipv4_addr . inet_service : \
         verdict\n\t\telements = {{ {} }}\n\t}}\n",
        elements.join(", ")
    );
    for i in 0..vips.len() {
        let _ = writeln!(
            out,
            "\tchain svc_{i} {{\n\t\tdnat to numgen random mod {} map {{ {} }}\n\t}}",
            backends.len(),
            pick.join(", ")
        );
    }
    out.push_str(
        "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tip daddr . tcp dport vmap @services\n\t}\n}\n",
    );
    out
}

/// Slices a measurement and its yardstick alternate in, each
/// `rr_secs / SLICES` long.
const SLICES: usize = 6;

/// Connections timed in one or more runs.
#[derive(Default)]
struct Run {
    samples_us: Vec<f64>,
    failed: u64,
    secs: f64,
}

/// What the runs of one measurement yield.
struct Conns {
    per_sec: f64,
    failed: u64,
    p50_us: f64,
    p99_us: f64,
}

impl Run {
    fn add(&mut self, other: Run) {
        self.samples_us.extend(other.samples_us);
        self.failed += other.failed;
        self.secs += other.secs;
    }

    fn summary(mut self) -> Result<Conns> {
        if self.samples_us.is_empty() {
            bail!("every connection failed");
        }
        Ok(Conns {
            per_sec: self.samples_us.len() as f64 / self.secs,
            failed: self.failed,
            p50_us: percentile(&mut self.samples_us, 50.0),
            p99_us: percentile(&mut self.samples_us, 99.0),
        })
    }
}

/// New connections to `addr` from `client` for `secs`, one after the
/// other, each timed: scenario 1's connection-rate exchange, run on a
/// thread of this process that enters the client's namespace (no helper
/// process, so the times are the connections' own).
fn connections(client: &Netns, addr: SocketAddr, secs: f64) -> Result<Run> {
    std::thread::scope(|s| {
        s.spawn(|| {
            client.enter_current_thread()?;
            // Warm up: neighbour entries, the first lookups, the server.
            for _ in 0..20 {
                pingpong::one_connection(addr)
                    .with_context(|| format!("no connection to {addr}"))?;
            }
            let mut samples_us = Vec::with_capacity(100_000);
            let mut failed = 0u64;
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(secs);
            while Instant::now() < deadline {
                let t = Instant::now();
                match pingpong::one_connection(addr) {
                    Ok(()) => samples_us.push(t.elapsed().as_nanos() as f64 / 1000.0),
                    Err(_) => {
                        failed += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            Ok(Run {
                samples_us,
                failed,
                secs: start.elapsed().as_secs_f64(),
            })
        })
        .join()
        .unwrap_or_else(|_| bail!("the connection thread panicked"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(n: usize) -> Vec<Ipv4Addr> {
        (0..n).map(|i| vip(i).unwrap()).collect()
    }

    #[test]
    fn iptables_has_a_rule_per_service_and_uniform_picks() {
        let backends = ips(3);
        let rules = kube_iptables(&ips(2), &backends);
        assert_eq!(rules.matches("-A KUBE-SERVICES -d").count(), 2);
        assert!(rules.contains(
            "-A KUBE-SERVICES -d 198.19.192.2/32 -p tcp -m tcp --dport 7002 -j KUBE-SVC-1\n"
        ));
        assert!(rules.contains(
            "-A KUBE-SVC-1 -m statistic --mode random --probability 0.33333333333 -j DNAT \
             --to-destination 198.19.192.1\n"
        ));
        assert!(
            rules.contains("--probability 0.50000000000 -j DNAT --to-destination 198.19.192.2\n")
        );
        assert!(rules.contains("-A KUBE-SVC-1 -j DNAT --to-destination 198.19.192.3\n"));
        assert!(rules.ends_with("COMMIT\n"));
    }

    #[test]
    fn nftables_has_a_map_element_per_service() {
        let rules = kube_nftables(&ips(2), &ips(3));
        assert!(rules.contains(
            "elements = { 198.19.192.1 . 7002 : goto svc_0, 198.19.192.2 . 7002 : goto svc_1 }"
        ));
        assert_eq!(rules.matches("dnat to numgen random mod 3 map").count(), 2);
        assert!(rules.contains("ip daddr . tcp dport vmap @services"));
    }

    #[test]
    fn baseline_vips_stay_in_their_range() {
        assert_eq!(vip(0).unwrap(), Ipv4Addr::new(198, 19, 192, 1));
        assert_eq!(vip(9_999).unwrap(), Ipv4Addr::new(198, 19, 231, 16));
        assert!(vip(MAX_VIPS).is_err());
    }
}
