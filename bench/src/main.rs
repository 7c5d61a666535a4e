//! `bench`: netd measured side by side with the data planes users would
//! pick instead, on the same machine, in the same run.
//!
//! `cargo xtask bench [--quick]` builds netd and this binary in release mode
//! and runs it as root. Everything it measures runs in network namespaces it
//! creates (names start with `bn<tag>-`, the tag derived from the pid) and
//! removes again, also on failure or Ctrl-C: traffic only ever flows between
//! those namespaces, or over loopback to the daemon's metrics.
//!
//! Layout:
//! - `topology`: the paths under test, built exactly as each alternative
//!   builds them (plain veth pair, Linux bridge + Docker's iptables rules,
//!   the real netd daemon);
//! - `scenarios/*`: one module per scenario of the benchmark issue;
//! - `cluster`, `etcd`, `overlay`: a simulated multi-host cluster (an
//!   underlay bridge, a real etcd, a netd daemon per host namespace) and
//!   the cross-host paths netd's overlay is measured against;
//! - `netns`, `daemon`, `api`, `cmd`: namespaces, the netd daemon and its
//!   HTTP API, child processes; every one a guard that cleans up on drop;
//! - `pingpong`, `pktgen`: traffic clients and servers of our own, run in
//!   namespaces by re-executing this binary with a hidden subcommand;
//!   `kpktgen` drives the kernel's pktgen instead where there is one;
//!   `probe` asks a container's DNS and pings from inside it;
//! - `stats`, `report`, `svg`, `machine`: summaries, the Markdown/JSON
//!   report, plots, and what machine the numbers come from.
//!
//! No figure is ever asserted: a run fails only when a topology cannot be
//! built or a tool is missing, so the quick mode can guard against rot in
//! `cargo xtask test` without flaking on a noisy machine.

mod api;
mod cluster;
mod cmd;
mod daemon;
mod etcd;
mod kpktgen;
mod machine;
mod netns;
mod overlay;
mod pingpong;
mod pktgen;
mod probe;
mod report;
mod scenarios;
mod stats;
mod svg;
mod topology;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Parser;

use crate::cmd::say;
use crate::report::Report;

#[derive(Parser)]
#[command(
    about = "netd side by side with a plain veth pair, a Docker-like bridge and the CNI plugins",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    helper: Option<pingpong::Helper>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Smoke run: one repetition, short runs, small fleets (a few minutes).
    #[arg(long)]
    quick: bool,
    /// The netd binary to benchmark (a release build).
    #[arg(long, default_value = "target/release/netd")]
    netd: PathBuf,
    /// Where the report (`<date>-<host>.md`, `.json`, `*.svg`) goes.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Run only these scenarios (numbers from the benchmark issues, 1 to 10).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
    /// What sends the packet-rate frames (scenario 6): the kernel's pktgen
    /// where the kernel has it (auto), or the bench's AF_PACKET sender.
    #[arg(long, value_enum, default_value = "auto")]
    packet_generator: pktgen::Generator,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.helper {
        Some(helper) => pingpong::run_helper(helper),
        None => run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long and how often each figure is measured.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Plan {
    pub quick: bool,
    /// Repetitions of every figure, netd and baselines interleaved.
    pub reps: usize,
    /// Seconds per iperf3 run.
    pub tcp_secs: u32,
    /// Seconds per request/response and per connection-rate run.
    pub rr_secs: f64,
    /// Seconds per packet-generator run.
    pub pps_secs: f64,
    /// Attach/remove cycles per control-plane system.
    pub attaches: usize,
    /// Containers in the fleet (time to create, daemon RSS).
    pub fleet: usize,
    /// BPF_PROG_TEST_RUN repetitions inside one syscall.
    pub prog_repeat: u32,
    /// Containers the clients of the control-plane storm create and remove.
    pub storm: usize,
    /// Seconds the readers sample the idle daemon before each storm.
    pub idle_secs: f64,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                reps: 1,
                tcp_secs: 2,
                rr_secs: 1.0,
                pps_secs: 1.0,
                attaches: 20,
                fleet: 100,
                prog_repeat: 100_000,
                storm: 20,
                idle_secs: 3.0,
            }
        } else {
            Plan {
                quick,
                reps: 5,
                tcp_secs: 5,
                rr_secs: 3.0,
                pps_secs: 3.0,
                attaches: 100,
                fleet: 1000,
                prog_repeat: 1_000_000,
                storm: 100,
                idle_secs: 10.0,
            }
        }
    }
}

/// What every scenario gets: the plan, the names it may use, the netd binary.
pub struct Ctx {
    pub plan: Plan,
    /// `bn<tag>`: the start of every namespace and link name this run makes.
    pub tag: String,
    pub netd: PathBuf,
    /// Sends scenario 6's frames (resolved: never `Auto`).
    pub generator: pktgen::Generator,
}

fn run(args: RunArgs) -> Result<()> {
    check_root()?;
    cmd::install_interrupt_handler();
    let netd = args
        .netd
        .canonicalize()
        .with_context(|| format!("no netd binary at {}", args.netd.display()))?;
    let plan = Plan::new(args.quick);
    let wanted = |n: u8| args.only.is_empty() || args.only.contains(&n);
    let generator = if wanted(6) {
        args.packet_generator.resolve()?
    } else {
        pktgen::Generator::AfPacket
    };
    let ctx = Ctx {
        plan,
        tag: format!("bn{}", cmd::base36(std::process::id())),
        netd,
        generator,
    };
    // Removes whatever carries our tag, should a guard have been skipped
    // (it runs last: declared first).
    let _sweep = netns::Sweep::new(&ctx.tag);
    let started = Instant::now();
    let machine = machine::Machine::probe();
    say!(
        "{} run on {} ({}, {} cores, kernel {}), names bn{}...",
        if plan.quick { "quick" } else { "full" },
        machine.hostname,
        machine.cpu,
        machine.cores,
        machine.kernel,
        &ctx.tag[2..]
    );
    let mut report = Report::new(machine, plan);
    if wanted(6) {
        report.note(format!("packet generator: {}", generator.describe()));
    }

    if wanted(5) {
        scenarios::progcost::run(&ctx, &mut report)?;
    }
    if wanted(1) || wanted(6) {
        scenarios::c2c::run(&ctx, wanted(1), wanted(6), &mut report)?;
    }
    if wanted(2) {
        scenarios::publish::run(&ctx, &mut report)?;
    }
    if wanted(3) {
        scenarios::masq::run(&ctx, &mut report)?;
    }
    if wanted(6) {
        scenarios::natpps::run(&ctx, &mut report)?;
    }
    if wanted(4) {
        scenarios::services::run(&ctx, &mut report)?;
    }
    if wanted(7) {
        scenarios::control::run(&ctx, &mut report)?;
    }
    if wanted(8) {
        scenarios::load::run(&ctx, &mut report)?;
    }
    if wanted(9) {
        scenarios::crosshost::run(&ctx, &mut report)?;
    }
    if wanted(10) {
        scenarios::fleet::run(&ctx, &mut report)?;
    }
    scenarios::not_yet(&mut report);
    if cluster::store_retries() > 0 {
        report.note(format!(
            "9/10: {} API call(s) failed with the cluster store out of reach (a daemon's \
             connection to etcd dropped) and were made again",
            cluster::store_retries()
        ));
    }

    report.finish(started.elapsed());
    let written = report.write(&args.out)?;
    println!("{}", report.markdown_table());
    for path in written {
        say!("wrote {}", path.display());
    }
    say!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn check_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the benchmarks need root (they create namespaces and links, load eBPF programs \
             and run netd): run `cargo xtask bench` as root"
        );
    }
    Ok(())
}
