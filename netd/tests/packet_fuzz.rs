//! Packet fuzzing: random and mutated frames through every program of the
//! data path with BPF_PROG_TEST_RUN, against maps holding several networks
//! (`packet_fuzz/world.rs`), each run judged by an oracle that knows only
//! the README's rules (`packet_fuzz/oracle.rs`):
//! - nothing is delivered to an endpoint of another network, or from
//!   outside to an `--internal` one, but what published ports and the
//!   flows they and masquerade opened allow;
//! - nothing with a source its sender does not own (IP or MAC, ARP's
//!   sender too) is passed or redirected;
//! - every malformed frame (cut short, bad version or IHL, options past the
//!   end) and every frame of another protocol from an endpoint is dropped
//!   and counted under its reason; the drop counters move by exactly the
//!   drops seen, the endpoint counters by exactly the deliveries;
//! - no program returns another verdict than pass, drop or redirect, and
//!   BPF_PROG_TEST_RUN fails only where the kernel refuses to build the
//!   skb (an IPv4 or IPv6 frame shorter than its fixed header).
//!
//! The frames (`packet_fuzz/generator.rs`) come from a seeded generator: the seed
//! is printed and `NETD_FUZZ_SEED=N` replays a run frame for frame. By
//! default a run is 30,000 frames (seconds); `NETD_STRESS=1` makes it
//! 1,000,000 (`cargo xtask stress`). Each run prints its figures: frames,
//! runs per program and verdict, drops by reason, violations.
//!
//! Needs root. The maps live in the test's own pin directory, the veths
//! stay down; nothing is sent anywhere.

mod bpf_harness;
#[path = "packet_fuzz/generator.rs"]
mod generator;
#[path = "packet_fuzz/oracle.rs"]
mod oracle;
#[path = "packet_fuzz/rng.rs"]
mod rng;
#[path = "packet_fuzz/world.rs"]
mod world;

use std::{collections::BTreeMap, time::Instant};

use bpf_harness::{
    frames::{ETH_P_IP, ETH_P_IPV6},
    prog::{self, VERDICT_DROP, VERDICT_NEXT, VERDICT_REDIRECT},
};
use generator::{Case, Gen};
use netd::dataplane::{Dataplane, Direction, DropReason, EndpointStats};
use oracle::{Flows, Verdict};
use world::{Site, World};

const SEED_ENV: &str = "NETD_FUZZ_SEED";
const STRESS_ENV: &str = "NETD_STRESS";
const FRAMES: u64 = 30_000;
const STRESS_FRAMES: u64 = 1_000_000;
/// Runs between two comparisons of every counter with the model.
const CHECK_EVERY: u64 = 4096;
/// Violations shown in full (all are counted).
const SHOWN: usize = 20;

#[test]
fn random_and_mutated_frames_keep_isolation_anti_spoofing_and_drop_accounting() {
    let seed = rng::seed(SEED_ENV);
    let frames = if std::env::var_os(STRESS_ENV).is_some_and(|v| v == "1") {
        STRESS_FRAMES
    } else {
        FRAMES
    };
    println!("packet_fuzz: seed {seed} ({SEED_ENV}={seed} replays this run), {frames} frames");
    let world = World::new();
    let mut fuzz = Fuzz::new(&world);
    let mut generator = Gen::new(&world, seed);
    let started = Instant::now();
    for case in generator.truncations() {
        fuzz.frame(&case);
    }
    while fuzz.frames < frames {
        let case = generator.case(&fuzz.flows);
        fuzz.frame(&case);
        if let Some(site) = generator.also_to_endpoint() {
            fuzz.run(site, &case);
        }
    }
    fuzz.check_counters();
    fuzz.report(seed, started.elapsed().as_secs_f64());
    assert_eq!(
        fuzz.violations, 0,
        "{} violations (seed {seed}), the first ones above",
        fuzz.violations
    );
}

/// The drop counters as last read, to tell which one a run moved.
struct DropCounters(Vec<(DropReason, Direction, u64)>);

impl DropCounters {
    fn read(dp: &Dataplane) -> DropCounters {
        DropCounters(dp.drop_stats().expect("drop stats"))
    }

    /// The counters that moved since the last read, and by how much.
    fn moved(&mut self, dp: &Dataplane) -> Vec<(DropReason, Direction, u64)> {
        let now = DropCounters::read(dp);
        let moved = now
            .0
            .iter()
            .zip(&self.0)
            .filter(|(n, o)| n.2 != o.2)
            .map(|(n, o)| (n.0, n.1, n.2.wrapping_sub(o.2)))
            .collect();
        *self = now;
        moved
    }
}

/// One fuzzing run: the model of the counters, the flows, the figures.
struct Fuzz<'w> {
    world: &'w World,
    flows: Flows,
    drops: DropCounters,
    /// What every endpoint's counters must say, by ifindex.
    endpoints: BTreeMap<u32, EndpointStats>,
    frames: u64,
    runs: u64,
    verdicts: BTreeMap<(&'static str, String), u64>,
    kinds: BTreeMap<&'static str, u64>,
    /// Frames the kernel would not build an skb of.
    refused: u64,
    violations: u64,
    shown: Vec<String>,
}

impl<'w> Fuzz<'w> {
    fn new(world: &'w World) -> Fuzz<'w> {
        let dp = &world.lab.dp;
        Fuzz {
            world,
            flows: Flows::default(),
            drops: DropCounters::read(dp),
            endpoints: read_endpoints(dp),
            frames: 0,
            runs: 0,
            verdicts: BTreeMap::new(),
            kinds: BTreeMap::new(),
            refused: 0,
            violations: 0,
            shown: Vec::new(),
        }
    }

    fn frame(&mut self, case: &Case) {
        self.frames += 1;
        for kind in &case.kinds {
            *self.kinds.entry(kind).or_default() += 1;
        }
        self.run(case.site, case);
    }

    fn violation(&mut self, site: Site, case: &Case, what: String) {
        self.violations += 1;
        if self.shown.len() < SHOWN {
            self.shown.push(format!(
                "frame {} at {site:?} ({}): {what}\n    frame {:02x?}",
                self.frames,
                case.kinds.join(", "),
                case.frame
            ));
        }
    }

    /// Runs `case`'s frame at `site` and judges what the program did.
    fn run(&mut self, site: Site, case: &Case) {
        let f = &case.frame;
        self.runs += 1;
        let expect = oracle::expect(self.world, site, f);
        let result = match self.world.run(site, f) {
            Ok(r) => r,
            Err(e) if refused_by_kernel(f) && prog::errno(&e) == Some(libc::EINVAL) => {
                self.refused += 1;
                return;
            }
            Err(e) => {
                return self.violation(site, case, format!("BPF_PROG_TEST_RUN failed: {e}"));
            }
        };
        let dp = &self.world.lab.dp;
        let verdict = match result.verdict {
            VERDICT_NEXT => Verdict::Next,
            VERDICT_REDIRECT => Verdict::Redirect,
            VERDICT_DROP => match self.drops.moved(dp).as_slice() {
                [(reason, direction, 1)] if *direction == site.direction() => {
                    Verdict::Drop(*reason)
                }
                moved => {
                    let what = format!("a drop counted as {moved:?}");
                    return self.violation(site, case, what);
                }
            },
            other => return self.violation(site, case, format!("verdict {other}")),
        };
        let label = match verdict {
            Verdict::Drop(reason) => format!("drop {}", reason.as_str()),
            Verdict::Next => "pass".to_string(),
            Verdict::Redirect => "redirect".to_string(),
        };
        *self.verdicts.entry((site.program(), label)).or_default() += 1;
        let counted = match verdict {
            Verdict::Redirect => self.delivery(),
            _ => Ok(None),
        };
        let judged = counted.and_then(|counted| {
            self.count(site, f.len(), verdict, counted, result.out.len());
            oracle::judge(
                self.world,
                &mut self.flows,
                site,
                f,
                expect,
                verdict,
                counted,
                &result.out,
            )
        });
        if let Err(what) = judged {
            self.violation(site, case, what);
        }
        if self.runs.is_multiple_of(CHECK_EVERY) {
            self.check_counters();
        }
    }

    /// The member whose delivery counter the last run moved, if one did
    /// (by one packet): the counters against the model, which holds every
    /// run before.
    fn delivery(&mut self) -> Result<Option<usize>, String> {
        let now = read_endpoints(&self.world.lab.dp);
        let before = |i: &u32| self.endpoints.get(i).map_or(0, |s| s.to_packets);
        let moved: Vec<(u32, u64)> = now
            .iter()
            .filter(|(i, s)| s.to_packets != before(i))
            .map(|(i, s)| (*i, s.to_packets.wrapping_sub(before(i))))
            .collect();
        match moved.as_slice() {
            [] => Ok(None),
            [(i, 1)] => Ok(self.world.members.iter().position(|m| m.ifindex == *i)),
            _ => {
                // Counted anyway, so that the next runs are judged alone.
                self.endpoints = now;
                Err(format!(
                    "deliveries counted as (ifindex, packets) {moved:?}"
                ))
            }
        }
    }

    /// What the run adds to the endpoints' counters.
    fn count(
        &mut self,
        site: Site,
        len: usize,
        verdict: Verdict,
        delivered: Option<usize>,
        out_len: usize,
    ) {
        let members = &self.world.members;
        let mut to = |i: usize, len: usize| {
            let s = self.endpoints.entry(members[i].ifindex).or_default();
            s.to_packets += 1;
            s.to_bytes += len as u64;
        };
        if let Some(x) = delivered {
            to(x, out_len);
        }
        match (site, verdict) {
            (_, Verdict::Drop(_)) => {}
            (Site::ToEp(x), _) => to(x, len),
            (Site::FromEp(s), _) => {
                let s = self.endpoints.entry(members[s].ifindex).or_default();
                s.from_packets += 1;
                s.from_bytes += len as u64;
            }
            _ => {}
        }
    }

    /// Compares every counter with the model: the endpoints' with the
    /// deliveries and passes seen, the drop counters with no change since
    /// the last drop (a pass or a redirect counts no drop).
    fn check_counters(&mut self) {
        let dp = &self.world.lab.dp;
        let moved = self.drops.moved(dp);
        let now = read_endpoints(dp);
        let mut wrong = Vec::new();
        if !moved.is_empty() {
            wrong.push(format!("drops counted without a drop: {moved:?}"));
        }
        if now != self.endpoints {
            wrong.push(format!(
                "endpoint counters {now:?}, expected {:?}",
                self.endpoints
            ));
            self.endpoints = now;
        }
        for what in wrong {
            self.violations += 1;
            if self.shown.len() < SHOWN {
                self.shown.push(format!(
                    "in the {CHECK_EVERY} runs up to run {}: {what}",
                    self.runs
                ));
            }
        }
    }

    fn report(&self, seed: u64, seconds: f64) {
        println!(
            "packet_fuzz: seed {seed}: {} frames, {} program runs in {seconds:.1} s ({:.0} runs/s)",
            self.frames,
            self.runs,
            self.runs as f64 / seconds
        );
        println!("  kinds and mutations (a frame may have several):");
        for (kind, n) in &self.kinds {
            println!("    {kind:<24} {n:>9}");
        }
        println!("  runs by program and verdict:");
        for ((program, verdict), n) in &self.verdicts {
            println!("    {program:<15} {verdict:<24} {n:>9}");
        }
        println!(
            "  refused by BPF_PROG_TEST_RUN (IPv4/IPv6 shorter than its header): {}",
            self.refused
        );
        println!("  drop counters (reason/direction):");
        for (reason, direction, n) in self.drops.0.iter().filter(|d| d.2 != 0) {
            println!(
                "    {:<16} {:<14} {n:>9}",
                reason.as_str(),
                direction.as_str()
            );
        }
        println!("  violations: {}", self.violations);
        for v in &self.shown {
            println!("  VIOLATION {v}");
        }
    }
}

fn read_endpoints(dp: &Dataplane) -> BTreeMap<u32, EndpointStats> {
    dp.endpoint_stats()
        .expect("endpoint stats")
        .into_iter()
        .collect()
}

/// Frames BPF_PROG_TEST_RUN may refuse (EINVAL) instead of running the
/// program: IPv4 or IPv6 shorter than the fixed IP header (see
/// `datapath.rs`, `malformed_ip_headers_are_dropped_and_counted`).
fn refused_by_kernel(f: &[u8]) -> bool {
    match oracle::ether_type(f) {
        ETH_P_IP => f.len() < 34,
        ETH_P_IPV6 => f.len() < 54,
        _ => false,
    }
}
