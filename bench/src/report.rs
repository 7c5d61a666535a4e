//! The results: every figure with its raw samples per system, rendered as a
//! Markdown table (medians, spread, netd/baseline ratios) and as JSON, plus
//! the SVG plots, all named `<date>-<host>` so runs on several machines can
//! sit side by side in `bench/results/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::Plan;
use crate::machine::Machine;
use crate::stats::{self, Summary, fmt3};
use crate::topology::System;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Serialize)]
pub struct Figure {
    pub scenario: u8,
    pub name: String,
    pub unit: String,
    pub better: Better,
    /// One sample per repetition (or one per figure for one-shot figures).
    pub samples: BTreeMap<System, Vec<f64>>,
    /// Medians and spread of `samples`, filled in by [`Report::finish`].
    pub summary: BTreeMap<System, Summary>,
    /// netd's value over each baseline's, filled in by [`Report::finish`]
    /// (see [`netd_ratios`]).
    pub ratios: BTreeMap<System, Summary>,
    /// Why this figure has no numbers yet (the feature is not built).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_yet: Option<String>,
}

#[derive(Serialize)]
pub struct Report {
    pub machine: Machine,
    pub plan: Plan,
    pub runtime_secs: f64,
    pub figures: Vec<Figure>,
    /// Remarks worth keeping with the numbers (a failed connection count,
    /// a tool's version...).
    pub notes: Vec<String>,
    #[serde(skip)]
    plots: Vec<(String, String)>,
}

impl Report {
    pub fn new(machine: Machine, plan: Plan) -> Report {
        Report {
            machine,
            plan,
            runtime_secs: 0.0,
            figures: Vec::new(),
            notes: Vec::new(),
            plots: Vec::new(),
        }
    }

    /// Records one sample of figure `name` of `scenario` on `system`; the
    /// first sample creates the figure (figures keep the order they first
    /// appear in). Scenarios share figure names (TCP throughput is measured
    /// in 1, 2 and 3), so a figure is the pair.
    pub fn add(
        &mut self,
        scenario: u8,
        name: &str,
        unit: &str,
        better: Better,
        system: System,
        value: f64,
    ) {
        let figure = match self
            .figures
            .iter()
            .position(|f| f.scenario == scenario && f.name == name)
        {
            Some(i) => &mut self.figures[i],
            None => {
                self.figures.push(Figure {
                    scenario,
                    name: name.to_string(),
                    unit: unit.to_string(),
                    better,
                    samples: BTreeMap::new(),
                    summary: BTreeMap::new(),
                    ratios: BTreeMap::new(),
                    not_yet: None,
                });
                self.figures.last_mut().expect("just pushed")
            }
        };
        figure.samples.entry(system).or_default().push(value);
    }

    /// A row for a figure whose feature is not built yet: listed, not
    /// silently dropped.
    pub fn not_yet(&mut self, scenario: u8, name: &str, why: &str) {
        self.figures.push(Figure {
            scenario,
            name: name.to_string(),
            unit: String::new(),
            better: Better::Higher,
            samples: BTreeMap::new(),
            summary: BTreeMap::new(),
            ratios: BTreeMap::new(),
            not_yet: Some(why.to_string()),
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// An SVG to write next to the report, as `<date>-<host>-<stem>.svg`.
    pub fn plot(&mut self, stem: &str, svg: String) {
        self.plots.push((stem.to_string(), svg));
    }

    pub fn finish(&mut self, runtime: Duration) {
        self.runtime_secs = runtime.as_secs_f64();
        for figure in &mut self.figures {
            figure.summary = figure
                .samples
                .iter()
                .map(|(system, values)| (*system, Summary::of(values)))
                .collect();
            figure.ratios = netd_ratios(&figure.samples);
        }
    }

    fn stem(&self) -> String {
        format!("{}-{}", self.machine.date, self.machine.hostname)
    }

    /// Writes the Markdown, the JSON and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let stem = self.stem();
        let mut written = Vec::new();
        let mut put = |name: String, text: &str| -> Result<()> {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
            Ok(())
        };
        put(format!("{stem}.md"), &self.markdown(&stem))?;
        put(
            format!("{stem}.json"),
            &serde_json::to_string_pretty(self).expect("plain data serializes"),
        )?;
        for (plot, svg) in &self.plots {
            put(format!("{stem}-{plot}.svg"), svg)?;
        }
        Ok(written)
    }

    /// The tables: one per scenario, with the systems measured in it as
    /// columns ("median (min–max)") and then netd's ratios to the baselines
    /// (see [`netd_ratios`]); and one of the figures that are not measured yet.
    pub fn markdown_table(&self) -> String {
        let mut scenarios: Vec<u8> = Vec::new();
        for f in self.figures.iter().filter(|f| f.not_yet.is_none()) {
            if !scenarios.contains(&f.scenario) {
                scenarios.push(f.scenario);
            }
        }
        let mut out = String::new();
        for scenario in scenarios {
            let figures: Vec<&Figure> = self
                .figures
                .iter()
                .filter(|f| f.scenario == scenario && f.not_yet.is_none())
                .collect();
            let _ = writeln!(out, "### {scenario}. {}\n", section_title(scenario));
            out.push_str(&table(&figures));
            out.push('\n');
        }
        let not_yet: Vec<&Figure> = self
            .figures
            .iter()
            .filter(|f| f.not_yet.is_some())
            .collect();
        if !not_yet.is_empty() {
            out.push_str("### Not measured yet\n\n| # | figure | why |\n|---|---|---|\n");
            for f in not_yet {
                let why = f.not_yet.as_deref().unwrap_or_default();
                let _ = writeln!(out, "| {} | {} | {why} |", f.scenario, f.name);
            }
        }
        out
    }

    fn markdown(&self, stem: &str) -> String {
        let m = &self.machine;
        let mut out = format!("# netd benchmarks: {}, {}\n\n", m.date, m.hostname);
        let _ = writeln!(
            out,
            "Machine: {}, {} cores, {} GiB, kernel {}; netd {}.  ",
            m.cpu, m.cores, m.mem_gib, m.kernel, m.revision
        );
        let _ = writeln!(
            out,
            "Mode: {} (at least {} repetition(s) per figure, netd and baselines \
             interleaved); runtime {:.0} s.\n",
            if self.plan.quick { "quick" } else { "full" },
            self.plan.reps,
            self.runtime_secs
        );
        out.push_str(
            "Cells: median (min–max) over the repetitions; ↑ higher is better, ↓ lower is \
             better. Ratios: netd's value over the baseline's in each repetition (the \
             systems run back to back in every repetition, so a slow spell of the machine \
             hits both), median (min–max); one number where there is one sample, the \
             ratio of the medians.\n\n",
        );
        out.push_str(&self.markdown_table());
        out.push_str(SCENARIOS);
        if !self.plots.is_empty() {
            out.push_str("\n## Plots\n\n");
            for (plot, _) in &self.plots {
                let _ = writeln!(out, "![{plot}]({stem}-{plot}.svg)");
            }
        }
        if !self.notes.is_empty() {
            out.push_str("\n## Notes from this run\n\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        let _ = writeln!(
            out,
            "\nReproduce: `cargo xtask bench` (as root; `--quick` for a smoke run)."
        );
        out
    }
}

/// netd's value over each baseline's. Every scenario measures the systems
/// back to back within a repetition, each adding one sample per repetition,
/// so where netd and a baseline have as many samples (more than one), the
/// i-th samples come from the same repetition: the ratio is taken per
/// repetition and summarised (median and range). A slow spell of the
/// machine then divides out instead of landing in one system's median.
/// Otherwise (one-shot figures, or a repetition that failed on one side)
/// it is the ratio of the medians, a summary of one.
fn netd_ratios(samples: &BTreeMap<System, Vec<f64>>) -> BTreeMap<System, Summary> {
    let Some(netd) = samples.get(&System::Netd) else {
        return BTreeMap::new();
    };
    samples
        .iter()
        .filter(|(system, _)| **system != System::Netd)
        .filter_map(|(system, base)| {
            let ratios: Vec<f64> = if netd.len() == base.len() && netd.len() > 1 {
                netd.iter().zip(base).map(|(n, b)| n / b).collect()
            } else {
                vec![stats::median(netd) / stats::median(base)]
            };
            ratios
                .iter()
                .all(|r| r.is_finite())
                .then(|| (*system, Summary::of(&ratios)))
        })
        .collect()
}

/// One scenario's table: figure, unit, a column per system measured in it,
/// then netd's ratio to each baseline.
fn table(figures: &[&Figure]) -> String {
    let mut columns: Vec<System> = figures
        .iter()
        .flat_map(|f| f.samples.keys().copied())
        .collect();
    columns.sort();
    columns.dedup();
    // Baselines that share a figure with netd: a system measured only in
    // rows of its own (scenario 4's yardstick) gets no ratio column.
    let baselines: Vec<System> = columns
        .iter()
        .copied()
        .filter(|s| *s != System::Netd)
        .filter(|s| {
            figures
                .iter()
                .any(|f| f.samples.contains_key(s) && f.samples.contains_key(&System::Netd))
        })
        .collect();
    let ratios = columns.contains(&System::Netd);
    let mut out = String::from("| figure | unit |");
    for system in &columns {
        let _ = write!(out, " {} |", system.label());
    }
    if ratios {
        for baseline in &baselines {
            let _ = write!(out, " netd / {} |", short(*baseline));
        }
    }
    let width = 2 + columns.len() + if ratios { baselines.len() } else { 0 };
    let _ = writeln!(out, "\n{}|", "|---".repeat(width));
    for f in figures {
        let better = match f.better {
            Better::Higher => "↑",
            Better::Lower => "↓",
        };
        let _ = write!(out, "| {} | {} {better} |", f.name, f.unit);
        for system in &columns {
            let cell = match f.summary.get(system) {
                Some(s) if s.n > 1 => {
                    format!("{} ({}–{})", fmt3(s.median), fmt3(s.min), fmt3(s.max))
                }
                Some(s) => fmt3(s.median),
                None => "—".into(),
            };
            let _ = write!(out, " {cell} |");
        }
        if ratios {
            for baseline in &baselines {
                let ratio = match f.ratios.get(baseline) {
                    Some(r) if r.n > 1 => {
                        format!("{:.2}× ({:.2}–{:.2})", r.median, r.min, r.max)
                    }
                    Some(r) => format!("{:.2}×", r.median),
                    None => "—".into(),
                };
                let _ = write!(out, " {ratio} |");
            }
        }
        out.push('\n');
    }
    out
}

fn section_title(scenario: u8) -> &'static str {
    match scenario {
        1 => "Container to container, one network",
        2 => "Published port from an outside client",
        3 => "Outbound masquerade",
        4 => "Services",
        5 => "Per-packet cost in the kernel (BPF_PROG_TEST_RUN)",
        6 => "Packet rate",
        7 => "Control plane",
        8 => "Control plane under load",
        9 => "Overlay across hosts: data path",
        10 => "Overlay across hosts: cluster control plane",
        _ => "Other",
    }
}

/// Column heads for the ratios, kept narrow.
fn short(system: System) -> &'static str {
    match system {
        System::Netd => "netd",
        System::Limit => "limit",
        System::DockerLike => "docker-like",
        System::PodmanLike => "podman-like",
        System::Routed => "routed",
        System::Cni => "CNI",
        System::VxlanLimit => "vxlan-limit",
        System::DockerOverlay => "docker-overlay",
        System::IptablesMesh => "iptables mesh",
    }
}

/// What each scenario measures, written next to every table so the numbers
/// never travel without their meaning.
const SCENARIOS: &str = "
## What is measured

- **Systems.** *limit*: one veth pair straight between two namespaces (no
  bridge, no rules). *docker-like*: a Linux bridge, a veth pair per
  container and the iptables (nft backend) ruleset Docker writes (MASQUERADE,
  a published-port DNAT, the DOCKER-* filter chains), so conntrack and bridge
  netfilter see every packet; its \"host\" is a namespace of its own.
  *podman-like*: the same bridge and veths with the nftables ruleset Podman's
  netavark writes (verdict map for published ports, masquerade, conntrack).
  *netd*: the real daemon (release build, private prefix/state/socket/bpffs),
  two containers created through its API on one network, netd's TC programs
  on both endpoints. *CNI bridge plugin*: Debian's containernetworking-plugins
  `bridge` + `host-local`, invoked per the CNI spec (ADD/DEL, config on stdin)
  with ipMasq, from a namespace of its own as the \"host\".
- **1. Container to container.** TCP throughput: `iperf3 -c` from the client
  namespace to the server namespace, 1 and 4 streams, received bits/s.
  Request/response: the bench's own client does 64-byte round trips on one
  TCP connection (TCP_NODELAY) for a few seconds; p50/p99 of every round
  trip. Connection rate: connect, 1 byte each way, server closes, client
  closes; completed connections per second, one client. Twice as many
  repetitions as the other scenarios: netd's cost over the veth pair is a
  few percent, and one repetition's ratio swings by ±10% here.
- **2. Published port from an outside client.** Each system is one
  container behind a host, and an \"outside\" namespace joined to the host
  by a veth (the host's uplink, its own /24). *netd*: the real daemon
  started with `--uplink` on that veth (its host end in the real host
  namespace), a network and a container created through its API with the
  container's ports published (`-p HOSTPORT:PORT`, host port = port +
  20000); the outside dials the uplink address and host port, netd
  translates on the uplink's ingress in eBPF. *docker-like* and
  *podman-like*: the bridge and veth of scenario 1 in a host namespace of
  their own, with the uplink veth, and Docker's iptables rules (DNAT per
  published port, MASQUERADE, the DOCKER-* filter chains) or netavark's
  nftables ruleset (one verdict-map element per port, masquerade); the
  outside dials the uplink address and host port. *routed (no NAT)*: the
  same bridge and veth with no rule at all; the outside has a route to the
  container subnet through the host and dials the container's own address
  and port: the cost of the path without any translation. Servers (iperf3,
  the bench's echo server) run in the container, clients in the outside
  namespace; the figures are those of scenario 1: TCP throughput with 1 and
  4 streams, 64-byte request/response p50/p99 on one connection, and new
  connections per second (connect, 1 byte each way, server closes first).
  Targets (reported, never asserted): netd's connection rate ≥ 1.2×
  docker-like and ≥ 0.9× routed.
- **3. Outbound masquerade.** The same four topologies with nothing
  published; servers in the outside namespace, clients in the container,
  dialling the outside's address. netd, docker-like and podman-like
  masquerade to the uplink address (netd in eBPF: source NAT and
  `bpf_redirect_neigh` out of the uplink, replies translated back on the
  uplink's ingress); the outside has no route back to the container subnet.
  *routed*: no NAT, the outside routes the container subnet through the
  host. Figures: TCP throughput with 1 and 4 streams, and new connections
  per second.
- **4. Services.** New connections through a service's virtual IP as
  services grow 1 → 100 → 1,000 → 10,000 (quick: 1 and 100), each with the
  same 3 backends (the bench's echo server), measured on the VIP of the
  service created last: connections per second from one client (connect,
  1 byte each way, server closes) and the time of each connection,
  p50/p99. *netd*: services created through the API on one network, 3
  backend containers each joining every service (`--service` repeated).
  Here *docker-like* is kube-proxy's iptables mode (iptables-nft), the
  rule-per-service design of Docker's DNAT: one `KUBE-SERVICES` rule per
  VIP:port, walked in order, each jumping to a chain picking a backend with
  `-m statistic`, loaded with one `iptables-restore`; *podman-like* is the
  nftables design (kube-proxy's nftables mode, netavark's maps): one
  verdict map on `ip daddr . tcp dport` with an element per service, a
  chain per service picking with `numgen`, loaded with `nft -f`; both
  bridged with conntrack, TIME_WAIT entries expiring after 1 s so that
  the runs never fill the shared conntrack table. How each grows: netd's
  VIP lookup is one hash lookup whatever the count, the nftables map too;
  iptables walks every rule before the VIP's. *Time to program*: netd's
  API creates of the new services plus the backends made again with the
  whole list; the baselines' one full reload. Every measurement runs in
  six slices alternating with as many on a plain veth pair with the same
  client exchange (the *limit* column: the machine's speed at that
  moment; on a shared host everything can run several times slower for a
  minute); the rows *relative to the veth pair* divide each measurement
  by its yardstick. Target (reported, never asserted): netd at
  10,000 services ≥ 0.95× netd at 1, read from the relative rows (the raw
  rates are minutes apart).
- **5. Per-packet cost in the kernel.** Each netd program path run with
  BPF_PROG_TEST_RUN on a crafted frame, with netd's maps written for two
  networks as the daemon writes them; the kernel's own average ns per run
  over many runs per syscall (one run per syscall, median of many calls,
  for a path that rewrites the frame into something else, like the ARP
  responder). The empty-program rows are the harness's own cost, measured
  the same way: subtract them to get netd's. No network, no noise from
  other stages. The rows with 10,000 services run on a second copy of
  the object whose maps hold them, in every repetition beside the others;
  three repetitions per repetition of the plan, since the machine has
  spells of tens of milliseconds in which every row, the empty program's
  too, is about 1.4× slower.
- **6. Packet rate.** The kernel's pktgen where the kernel has it, else
  the bench's AF_PACKET generator (`sendmmsg`, qdisc bypassed); the notes
  say which one ran. 60-byte UDP frames with a correct checksum, addressed
  to the next hop's MAC, after a short uncounted warm-up; packets per second
  counted by the receiving interface's `rx_packets`. Forwarding: the
  scenario 1 pairs, client to server. NAT: the scenario 2/3 edges with one
  UDP port published (8 flows, source ports rotating): inbound, the outside
  sends to the published address and port (netd translates on the uplink's
  ingress, docker-like with DNAT, podman-like with netavark's map, routed
  forwards to the container's own address); outbound, the container sends
  to the outside (masquerade; routed without). Sender and path share the
  machine's cores, so the figure is the path's cost, not a loss rate.
- **7. Control plane.** Attach: netd `POST /containers/create` with a network
  (the API call of `netd container create --network N`: it creates the
  namespace too) vs the CNI `bridge` plugin's ADD into an existing namespace;
  remove: `DELETE /containers/{id}?force=1` vs CNI DEL; p50/p99 over the
  cycles, netd and CNI alternating. Fleet: time to create N containers one
  after the other and the daemon's VmRSS with them (CNI: N ADDs; it has no
  daemon).
- **8. Control plane under load.** netd's reads, `/_ping`, `GET /networks`
  (API socket) and `GET /metrics` (`--metrics-addr`), each timed by a thread
  of its own, one request after the other (a connection each, 10 ms
  between them): first on an idle daemon (one network, one container), then
  during a storm, in which 4 clients together create (with a `sleep`
  process each) and then remove the scenario's containers on that network,
  while the container whose process ignores SIGTERM is removed with force
  once a quarter of them exist (netd waits out its stop grace, then
  SIGKILLs). p50, p99 and the longest wait of every read, idle and under
  the storm; the storm's total time (until the last client and the slow
  `rm -f` are done) and that of the slow `rm -f` alone. Target (reported,
  never asserted): each read's p99 under the storm ≤ 2× its idle p99 +
  5 ms (the row *÷ its target* ≤ 1), and the storm no slower than before
  reads stopped waiting for writes. A reader stuck behind a slow call takes
  no samples meanwhile, so its percentiles undercount long waits: hence the
  longest wait.
- **9. Overlay across hosts: data path.** A simulated cluster on this
  machine: an underlay namespace with a bridge, a real etcd (Debian's
  etcd-server) in it, and host namespaces joined to the bridge by a veth
  (their `eth0`), each running a netd daemon in cluster mode with
  `--uplink eth0`. *netd*: a container on each of two hosts on one
  overlay network (netd's VXLAN in eBPF: the endpoint's program
  encapsulates, `netd_vxlan_in` on the host's VXLAN device delivers).
  *vxlan-limit*: two kernel VXLAN devices straight in the client's and
  the server's namespaces (made in hosts of their own on the same
  underlay and moved in, so their sockets stay on the hosts' underlay),
  static FDB and neighbour entries, learning off, no bridge, no veth, no
  rule: the limit for encapsulated traffic. *docker-overlay-like*:
  Docker's overlay driver's data path, on two hosts of its own: per host
  a namespace for the network with `br0` (the gateway address) and a
  VXLAN device (learning, proxy, l2miss, l3miss) on it, a veth per
  container, a permanent neighbour and an FDB entry per remote peer,
  Docker's host ruleset (for `docker_gwbridge`: conntrack sees the VXLAN
  packets) and the embedded DNS server's NAT rules in every container.
  Every system's endpoints get the underlay MTU less 50. The figures of
  scenarios 1 and 6, measured the same way, client on one host and server
  on the other, systems in turn, twice as many repetitions as the plan's.
  *Routing mesh*: new connections per second from an outside namespace on
  the underlay to a service's published port on a host with no replica
  (2 replicas, the bench's echo server, on the other host). netd: a
  service with `-p` on the overlay; *iptables mesh*: Docker's ingress
  without IPVS (this kernel has none): `DOCKER-INGRESS` DNAT on the host
  to the ingress sandbox, whose DNAT picks a replica (`-m statistic`) and
  SNATs to its own address on the `ingress` overlay, across the VXLAN to
  the replicas' host. TIME_WAIT entries of the baselines' conntrack
  expire after 1 s, as in scenario 4. Targets (reported, never asserted):
  netd's throughput and connection rate ≥ 0.9× vxlan-limit and ≥ 1.2×
  docker-overlay-like; mesh connections ≥ 1.3× the iptables mesh.
- **10. Overlay across hosts: cluster control plane.** The same kind of
  cluster, growing in steps (5, 10, 20, 35, 50 hosts; quick: 2, 3), each
  host with 20 containers (quick: 3) on one overlay, netd's default lease
  TTL. At each step: *propagation*, from the API call creating a
  container on one host until its name resolves (netd's embedded DNS) and
  its address answers a ping inside a container of another host, polled
  every 2 ms in process, creating and observing hosts rotating (100
  samples, quick 10; p50 and p99); etcd's key count and the watch events
  it sends per container created, all hosts' watches together (etcd's
  own `etcd_debugging_mvcc_*` counters); the daemons' RSS; the machine's
  available memory lost per host (daemon, eBPF maps, namespaces,
  containers; the machine is shared, so other work moves it too).
  *Withdrawal*: the last host dies (daemon SIGKILLed, underlay link down):
  time from the kill until every other host has stopped resolving its
  container; *back*: link up and daemon restarted, until every other
  host resolves it again. Every repetition at the first step, once at
  the largest. The fleet stops growing when the next step would leave
  less than 4 GiB available at the memory a host has cost so far, or a
  host fails to start; a note says where. Targets (reported, never
  asserted): propagation p99 ≤ 250 ms with 50 hosts; withdrawal ≤ the
  lease TTL + 1 s.
- **Not yet**: rows for features netd does not have yet (or that do not
  work on the measured tree); they get numbers when those land.
";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An empty report of a quick run on a made-up machine.
    pub(crate) fn report() -> Report {
        let machine = Machine {
            hostname: "h".into(),
            date: "2026-01-01".into(),
            kernel: "6.18".into(),
            cpu: "cpu".into(),
            cores: 2,
            mem_gib: 24,
            revision: "abc".into(),
        };
        Report::new(machine, crate::Plan::new(true))
    }

    #[test]
    fn tables_per_scenario_with_medians_spread_ratios_and_not_yet_rows() {
        let mut r = report();
        for v in [10.0, 12.0, 11.0] {
            r.add(1, "tput", "Gbit/s", Better::Higher, System::Netd, v);
        }
        r.add(1, "tput", "Gbit/s", Better::Higher, System::Limit, 22.0);
        r.add(7, "attach", "ms", Better::Lower, System::Cni, 80.0);
        r.not_yet(2, "published port", "needs NAT");
        r.finish(Duration::from_secs(1));
        let text = r.markdown_table();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "### 1. Container to container, one network");
        assert_eq!(
            lines[2],
            "| figure | unit | netd | limit (veth pair) | netd / limit |"
        );
        assert_eq!(lines[3], "|---|---|---|---|---|");
        assert_eq!(
            lines[4],
            "| tput | Gbit/s ↑ | 11.0 (10.0–12.0) | 22.0 | 0.50× |"
        );
        // A scenario without netd numbers has no ratio columns.
        assert_eq!(lines[8], "| figure | unit | CNI bridge plugin |");
        assert_eq!(lines[10], "| attach | ms ↓ | 80.0 |");
        assert!(text.ends_with("| 2 | published port | needs NAT |\n"));
    }

    #[test]
    fn ratios_are_taken_per_repetition_when_both_sides_have_every_repetition() {
        let mut r = report();
        // The second repetition hit a slow spell on both systems, the third
        // a slow one on the limit only: per repetition netd is 1.0, 1.0,
        // 0.75 of the limit, while the medians alone would say 0.90.
        for (netd, limit) in [(10.0, 10.0), (5.0, 5.0), (9.0, 12.0)] {
            r.add(1, "conn", "conn/s", Better::Higher, System::Netd, netd);
            r.add(1, "conn", "conn/s", Better::Higher, System::Limit, limit);
        }
        // One sample against three: the ratio of the medians.
        r.add(1, "conn", "conn/s", Better::Higher, System::DockerLike, 4.5);
        r.finish(Duration::from_secs(1));
        let ratios = &r.figures[0].ratios;
        assert_eq!(ratios[&System::Limit].n, 3);
        assert_eq!(ratios[&System::Limit].median, 1.0);
        assert_eq!(ratios[&System::Limit].min, 0.75);
        assert_eq!(ratios[&System::DockerLike].n, 1);
        assert_eq!(ratios[&System::DockerLike].median, 2.0);
        let text = r.markdown_table();
        let row = text.lines().find(|l| l.starts_with("| conn |")).unwrap();
        assert!(row.ends_with("| 1.00× (0.75–1.00) | 2.00× |"), "{row}");
    }

    #[test]
    fn a_figure_name_measured_in_two_scenarios_makes_two_figures() {
        let mut r = report();
        r.add(1, "tput", "Gbit/s", Better::Higher, System::Netd, 10.0);
        r.add(2, "tput", "Gbit/s", Better::Higher, System::Netd, 5.0);
        r.add(2, "tput", "Gbit/s", Better::Higher, System::Routed, 4.0);
        assert_eq!(r.figures.len(), 2);
        assert_eq!(r.figures[0].samples[&System::Netd], [10.0]);
        assert_eq!(r.figures[1].samples[&System::Netd], [5.0]);
        assert_eq!(r.figures[1].samples[&System::Routed], [4.0]);
    }
}
