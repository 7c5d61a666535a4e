//! Scenario 5: what each netd program path costs per packet, measured in the
//! kernel with BPF_PROG_TEST_RUN: no network, no scheduler, so a change to a
//! program shows its cost even on a noisy machine.
//!
//! The programs are loaded through netd's own `Dataplane` (the object the
//! daemon runs) into a private pin directory, with the maps written as the
//! daemon writes them for three networks (the third an overlay network
//! with a peer on another host), and attached to veths that live, down,
//! in a namespace of the bench's: the programs look the sender up by
//! `skb->ifindex`, and the kernel only accepts a `ctx_in.ifindex` naming a
//! device in the caller's namespace, so the measuring thread enters that
//! namespace. Test runs never transmit: a redirect is only a return code.
//!
//! The NAT and service paths change the packet they translate, and the
//! kernel runs a batch on one skb, so they are timed one run per call: the
//! first call of a path creates its flow, the later ones measure the
//! established flow (the per-packet case: answered from the programs'
//! per-CPU copies of the lookups, as a flow's packets after its first in a
//! kernel tick are; the "no per-CPU copies" rows drop the copies before
//! every call), except for the "new flow" paths whose every call carries
//! a new source port (the per-connection case).
//!
//! Adding a path is one line in [`PATHS`] (plus a frame builder if none
//! fits); map state a new path needs goes into [`prepare`].

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use aya::programs::SchedClassifier;
use aya::programs::{TestRun as _, TestRunOptions};
use netd::dataplane::{
    Backend, Dataplane, Direction, MapSizes, NetworkPolicy, Proto, RemoteEndpoint,
};

use self::frames::{
    OTHER_NET_MAC, OTHER_NET_PEER, OVERLAY_SENDER, OVERLAY_SENDER_MAC, PEER, PEER_MAC, PEER2,
    PEER2_MAC, PUBLISHED_PORT, REMOTE_HOST, REMOTE_PEER, SENDER, SENDER_MAC, UPLINK_ADDR, VIP,
};
use super::floor::EmptyProgram;
use crate::Ctx;
use crate::cmd::say;
use crate::netns::Netns;
use crate::report::{Better, Report};
use crate::topology::System;

/// Offset of `ifindex` in `struct __sk_buff` (uapi/linux/bpf.h): after ten
/// `__u32`s (`len` ... `ingress_ifindex`).
const SKB_IFINDEX_OFFSET: usize = 40;

/// Which device the frame is presented as arriving on.
#[derive(Clone, Copy)]
enum Device {
    /// The sending endpoint netd knows (network 1, address `SENDER`).
    Endpoint,
    /// A device netd knows nothing about.
    Unknown,
    /// The uplink (`HOST_CFG`): frames from outside.
    Uplink,
    /// An endpoint of network 3, an overlay network with a peer on another
    /// host (the tunnel rows).
    OverlaySender,
}

/// Which of netd's TC programs runs.
#[derive(Clone, Copy)]
enum Program {
    /// `netd_from_ep`, TCX ingress of an endpoint's host-side veth.
    FromEndpoint,
    /// `netd_to_ep`, TCX egress of an endpoint's host-side veth.
    ToEndpoint,
    /// `netd_uplink_in`, TCX ingress of the uplink.
    Uplink,
}

/// How a path is timed.
#[derive(Clone, Copy, PartialEq)]
enum Timing {
    /// Many runs in one syscall, on the same skb: for programs whose
    /// changes to the packet are idempotent (or none).
    Batched,
    /// One run per syscall, over many calls (their interquartile mean, see
    /// [`crate::stats::interquartile_mean`]): for programs that turn
    /// the packet into something else (an ARP request into its reply, a
    /// translated packet), so that every run sees the crafted frame.
    /// Compare with the per-call floor.
    PerCall,
    /// As `PerCall`, each call with the frame of a new flow (the frame
    /// builder gets the call's sequence number).
    PerCallNewFlows,
    /// As `PerCall`, with the programs' per-CPU copies of endpoint and flow
    /// lookups dropped before each call (`Dataplane::advance_generation`):
    /// what a flow's first packet in a kernel tick on a CPU costs, where
    /// `PerCall` measures the steady packets after it.
    PerCallUncached,
}

/// One path through a program: which program, which device, which frame
/// (built from a sequence number that only `PerCallNewFlows` varies).
struct Path {
    name: &'static str,
    program: Program,
    device: Device,
    frame: fn(u32) -> Vec<u8>,
    timing: Timing,
    /// For a path in the reply direction: the frame (sequence 0) the
    /// sender endpoint sends first through `netd_from_ep` to open the flow,
    /// since the new-flow rows before it empty the conntrack table.
    opened_by: Option<fn(u32) -> Vec<u8>>,
}

/// Every path measured. One line per path.
#[rustfmt::skip]
const PATHS: &[Path] = &[
    Path { name: "from_ep: UDP to a peer on the same network (forward, redirect_peer)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::udp_to_peer, timing: Timing::Batched, opened_by: None },
    Path { name: "from_ep: TCP SYN to a peer on the same network (forward)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_syn_to_peer, timing: Timing::Batched, opened_by: None },
    Path { name: "from_ep: UDP leaving the networks (no uplink: to the gateway, passed on)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::udp_outside, timing: Timing::Batched, opened_by: None },
    Path { name: "from_ep: UDP to another network's endpoint (isolation drop)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::udp_other_network, timing: Timing::Batched, opened_by: None },
    Path { name: "from_ep: spoofed source address (drop)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::udp_spoofed, timing: Timing::Batched, opened_by: None },
    Path { name: "from_ep: malformed IPv4 (drop)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::bad_ipv4, timing: Timing::Batched, opened_by: None },
    Path { name: "from_ep: UDP from a device netd does not know (count only)", program: Program::FromEndpoint, device: Device::Unknown, frame: frames::udp_to_peer, timing: Timing::Batched, opened_by: None },
    Path { name: "to_ep: UDP delivered to an endpoint (parse + count)", program: Program::ToEndpoint, device: Device::Endpoint, frame: frames::udp_to_peer, timing: Timing::Batched, opened_by: None },
    Path { name: "from_ep: ARP request for a peer (answered in BPF; one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::arp_for_peer, timing: Timing::PerCall, opened_by: None },
    Path { name: "from_ep: UDP to a peer on the same network (as the first row; one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::udp_to_peer, timing: Timing::PerCall, opened_by: None },
    Path { name: "from_ep: UDP to a peer on another host (overlay: tunnel key, redirect to the VXLAN device)", program: Program::FromEndpoint, device: Device::OverlaySender, frame: frames::udp_to_remote_peer, timing: Timing::Batched, opened_by: None },
];

/// The NAT and service paths, measured with the uplink set (after
/// [`PATHS`], which run as on a host without one). One line per path.
#[rustfmt::skip]
const NAT_PATHS: &[Path] = &[
    Path { name: "from_ep: TCP to the outside, established flow (masquerade; one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_to_outside, timing: Timing::PerCall, opened_by: None },
    Path { name: "from_ep: TCP to the outside, established flow, no per-CPU copies (masquerade, every lookup in the maps; one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_to_outside, timing: Timing::PerCallUncached, opened_by: None },
    Path { name: "from_ep: TCP to the outside in a /16 of a netd network, established flow (masquerade; one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_to_outside_near, timing: Timing::PerCall, opened_by: None },
    Path { name: "from_ep: new TCP connection to the outside (masquerade + conntrack insert; one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_to_outside_new, timing: Timing::PerCallNewFlows, opened_by: None },
    Path { name: "uplink_in: reply of a masqueraded flow (reverse SNAT, redirect_peer; one run per call)", program: Program::Uplink, device: Device::Uplink, frame: frames::tcp_reply_from_outside, timing: Timing::PerCall, opened_by: Some(frames::tcp_to_outside) },
    Path { name: "uplink_in: TCP to a published port, established flow (DNAT; one run per call)", program: Program::Uplink, device: Device::Uplink, frame: frames::tcp_to_published, timing: Timing::PerCall, opened_by: None },
    Path { name: "uplink_in: TCP to a published port, established flow, no per-CPU copies (DNAT, every lookup in the maps; one run per call)", program: Program::Uplink, device: Device::Uplink, frame: frames::tcp_to_published, timing: Timing::PerCallUncached, opened_by: None },
    Path { name: "uplink_in: new TCP connection to a published port (DNAT + conntrack insert; one run per call)", program: Program::Uplink, device: Device::Uplink, frame: frames::tcp_to_published_new, timing: Timing::PerCallNewFlows, opened_by: None },
    Path { name: "from_ep: TCP to a service VIP, established flow (load balancer; one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_to_vip, timing: Timing::PerCall, opened_by: None },
    Path { name: "from_ep: TCP to a service VIP, established flow, no per-CPU copies (load balancer, every lookup in the maps; one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_to_vip, timing: Timing::PerCallUncached, opened_by: None },
    Path { name: "from_ep: new TCP connection to a service VIP (round-robin + conntrack insert; one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_to_vip_new, timing: Timing::PerCallNewFlows, opened_by: None },
];

/// The service paths again, on a copy of the object whose maps hold
/// [`SCALED_SERVICES`] services besides the measured one: the per-packet
/// cost must not grow with the number of services (hash lookups, no
/// walk). One line per path.
#[rustfmt::skip]
const SCALED_PATHS: &[Path] = &[
    Path { name: "from_ep: TCP to a service VIP, established flow, 10,000 services (one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_to_vip, timing: Timing::PerCall, opened_by: None },
    Path { name: "from_ep: new TCP connection to a service VIP, 10,000 services (one run per call)", program: Program::FromEndpoint, device: Device::Endpoint, frame: frames::tcp_to_vip_new, timing: Timing::PerCallNewFlows, opened_by: None },
];

/// Services in the maps for [`SCALED_PATHS`], the measured one included.
const SCALED_SERVICES: u32 = 10_000;

/// Repetitions of this scenario per repetition of the plan: a repetition
/// here takes about a second, and the median over many of them stays out
/// of the machine's slow spells (see [`measure`]).
const REPS_PER_REP: usize = 3;

/// Calls per repetition of a `PerCallNewFlows` path: every call a flow of
/// its own (the source ports, [`frames::new_flow_port`], never repeat
/// within a repetition, and every repetition starts from an emptied
/// conntrack table).
const NEW_FLOW_CALLS: u32 = 10_000;

/// The rows of the empty program ([`EmptyProgram`]), one per timing.
const FLOOR: &str = "empty program (the test-run floor: subtract it from the batched rows)";
const FLOOR_PER_CALL: &str = "empty program, one run per call (floor of the per-call rows)";

/// The devices of the bench namespace, by ifindex.
struct Env {
    /// `ep0`: the sender, an endpoint of network 1.
    endpoint: u32,
    /// `ep1`: no endpoint.
    unknown: u32,
    /// `ep2`: the peer on network 1 (the redirect target).
    peer: u32,
    /// `ep3`: an endpoint of network 2.
    other_net_peer: u32,
    /// `ep4`: the uplink.
    uplink: u32,
    /// `ep6`: a second peer on network 1, the service's other backend.
    peer2: u32,
    /// `ep8`: an endpoint of network 3, an overlay network.
    overlay_sender: u32,
    /// `ep10`: stands in for the VXLAN device (the redirect target).
    vxlan: u32,
}

impl Env {
    /// The service's two backends (`ep2`, `ep6`).
    fn backends(&self) -> [Backend; 2] {
        [
            Backend::Local {
                ip: PEER,
                ifindex: self.peer,
            },
            Backend::Local {
                ip: PEER2,
                ifindex: self.peer2,
            },
        ]
    }
}

/// The VNI of network 3.
const OVERLAY_VNI: u32 = 42;

/// The maps as the daemon writes them for three networks: the sender and
/// two peers on network 1, one endpoint on network 2, no uplink (the
/// forwarding rows), and an overlay network 3 with an endpoint here and a
/// peer on another host; [`prepare_nat`] adds the rest.
fn prepare(dp: &mut Dataplane, env: &Env) -> Result<()> {
    dp.set_network(
        1,
        "198.19.9.0/24".parse()?,
        Ipv4Addr::new(198, 19, 9, 1),
        NetworkPolicy::OPEN,
    )?;
    dp.set_network(
        2,
        "198.19.10.0/24".parse()?,
        Ipv4Addr::new(198, 19, 10, 1),
        NetworkPolicy::OPEN,
    )?;
    dp.set_endpoint(env.endpoint, SENDER, SENDER_MAC, 1)?;
    dp.set_endpoint(env.peer, PEER, PEER_MAC, 1)?;
    dp.set_endpoint(env.other_net_peer, OTHER_NET_PEER, OTHER_NET_MAC, 2)?;
    dp.set_endpoint(env.peer2, PEER2, PEER2_MAC, 1)?;
    dp.set_overlay_network(
        3,
        "198.19.13.0/24".parse()?,
        Ipv4Addr::new(198, 19, 13, 1),
        NetworkPolicy::OPEN,
        OVERLAY_VNI,
    )?;
    dp.set_endpoint(env.overlay_sender, OVERLAY_SENDER, OVERLAY_SENDER_MAC, 3)?;
    dp.set_overlay_host(REMOTE_HOST)?;
    dp.set_remote_endpoint(&RemoteEndpoint {
        ip: REMOTE_PEER,
        net_index: 3,
        vni: OVERLAY_VNI,
        host: REMOTE_HOST,
    })?;
    Ok(())
}

/// A port published to the peer and a service with both peers as
/// backends, as the daemon writes them. They only matter once the uplink
/// is set ([`set_uplink`]).
fn prepare_nat(dp: &mut Dataplane, env: &Env) -> Result<()> {
    dp.set_publish(None, PUBLISHED_PORT, Proto::Tcp, PEER, 80, env.peer, 1)?;
    dp.set_service(0, VIP, &env.backends())?;
    Ok(())
}

/// Adds services 1..[`SCALED_SERVICES`] (the measured one is 0), with the
/// same two backends and virtual IPs outside the bench's networks: only
/// their number in the maps matters.
fn add_services(dp: &mut Dataplane, env: &Env) -> Result<()> {
    for index in 1..SCALED_SERVICES {
        let vip = Ipv4Addr::new(10, 200, (index >> 8) as u8, index as u8);
        dp.set_service(index, vip, &env.backends())?;
    }
    Ok(())
}

/// The uplink on (the NAT paths) or off (the forwarding paths, as on a host
/// without one).
fn set_uplink(dp: &mut Dataplane, env: &Env, on: bool) -> Result<()> {
    dp.set_host(on.then_some((env.uplink, UPLINK_ADDR)), 0)?;
    Ok(())
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    say!("[5] per-packet cost of netd's programs (BPF_PROG_TEST_RUN)");
    let ns = Netns::create(&format!("{}-pc", ctx.tag))?;
    // Every end stays down: no stray kernel traffic, only our test runs.
    ns.ip(&["link", "add", "ep0", "type", "veth", "peer", "name", "ep1"])?;
    ns.ip(&["link", "add", "ep2", "type", "veth", "peer", "name", "ep3"])?;
    ns.ip(&["link", "add", "ep4", "type", "veth", "peer", "name", "ep5"])?;
    ns.ip(&["link", "add", "ep6", "type", "veth", "peer", "name", "ep7"])?;
    ns.ip(&["link", "add", "ep8", "type", "veth", "peer", "name", "ep9"])?;
    ns.ip(&[
        "link", "add", "ep10", "type", "veth", "peer", "name", "ep11",
    ])?;
    let pins = [
        Pins(PathBuf::from(format!("/sys/fs/bpf/{}-pc", ctx.tag))),
        Pins(PathBuf::from(format!("/sys/fs/bpf/{}-pcs", ctx.tag))),
    ];
    let reps = ctx.plan.reps.max(3) * REPS_PER_REP;
    let repeat = ctx.plan.prog_repeat;
    let results = std::thread::scope(|s| {
        s.spawn(|| measure(&ns, &pins, reps, repeat))
            .join()
            .unwrap_or_else(|_| bail!("the measuring thread panicked"))
    })?;
    for (path, samples, verdict) in results {
        for ns_per_packet in samples {
            report.add(
                5,
                path,
                "ns/packet",
                Better::Lower,
                System::Netd,
                ns_per_packet,
            );
        }
        report.note(format!("5. {path}: verdict {verdict}"));
    }
    Ok(())
}

type Measured = Vec<(&'static str, Vec<f64>, &'static str)>;

/// A loaded copy of netd's object with the bench's maps; `attach`: its
/// programs on the sender's veth (test runs take the programs by fd, so
/// only one copy attaches: a second would replace the first's filters).
fn load(pins: &Pins, env: &Env, attach: bool) -> Result<Dataplane> {
    let mut dp =
        Dataplane::load(&pins.0, &MapSizes::default()).context("load netd's eBPF object")?;
    // As the daemon does it: the maps first, then the programs.
    prepare(&mut dp, env).context("write the bench networks into netd's maps")?;
    prepare_nat(&mut dp, env).context("write the bench's published port and service")?;
    if attach {
        dp.attach_endpoint("ep0", env.endpoint)
            .context("attach netd's programs to the test veth")?;
        // Its peer stays down: the device it sets up receives nothing.
        dp.attach_vxlan("ep10", env.vxlan)
            .context("attach netd's VXLAN program to the test veth")?;
    }
    Ok(dp)
}

/// In a thread of its own: it enters the namespace for good, and stays on
/// one CPU, whose per-CPU copies of lookups the programs then use call
/// after call (as for the packets of a flow, which stay on one CPU).
///
/// Two copies of the object, each with maps of its own: one with the
/// bench's service (every path), one with [`SCALED_SERVICES`] (the
/// [`SCALED_PATHS`]). Every repetition measures all paths on both, so
/// the rows with one service and with many are taken side by side in
/// time: this machine has spells of tens of milliseconds in which
/// everything, the empty program too, runs about 1.4 times slower, and a
/// row measured in one stretch could fall into one whole.
fn measure(ns: &Netns, pins: &[Pins; 2], reps: usize, repeat: u32) -> Result<Measured> {
    ns.enter_current_thread()?;
    netd::dataplane::stay_on_this_cpu().context("keep the measuring thread on one CPU")?;
    let env = Env {
        endpoint: ifindex("ep0")?,
        unknown: ifindex("ep1")?,
        peer: ifindex("ep2")?,
        other_net_peer: ifindex("ep3")?,
        uplink: ifindex("ep4")?,
        peer2: ifindex("ep6")?,
        overlay_sender: ifindex("ep8")?,
        vxlan: ifindex("ep10")?,
    };
    let mut dp = load(&pins[0], &env, true)?;
    let mut scaled_dp = load(&pins[1], &env, false)?;
    set_uplink(&mut scaled_dp, &env, true)?;
    add_services(&mut scaled_dp, &env).context("add the bench's many services")?;
    let empty = EmptyProgram::load().context("load the empty program")?;
    // One run per call: enough calls for a stable mean of the middle half.
    let calls = (repeat / 50).max(1000);
    let floor_frame = frames::udp_to_peer(0);
    let floor_ctx = skb_ctx(env.endpoint);
    let (mut floor, mut floor_per_call) = (Vec::new(), Vec::new());
    let mut results: Vec<_> = PATHS
        .iter()
        .chain(NAT_PATHS)
        .chain(SCALED_PATHS)
        .map(|p| (p, Vec::new(), ""))
        .collect();
    let scaled_from = PATHS.len() + NAT_PATHS.len();
    for rep in 0..reps {
        if rep == 0 {
            // Warm up: JIT-ed code and maps into the caches.
            empty.test_run(&floor_frame, &floor_ctx, 10_000)?;
        }
        floor.push(empty.test_run(&floor_frame, &floor_ctx, repeat)?);
        let mut one = Vec::with_capacity(calls as usize);
        for _ in 0..calls {
            one.push(empty.test_run(&floor_frame, &floor_ctx, 1)?);
        }
        floor_per_call.push(crate::stats::interquartile_mean(&one));
        for (index, (path, samples, verdict)) in results.iter_mut().enumerate() {
            if index == 0 || index == PATHS.len() {
                set_uplink(&mut dp, &env, index == PATHS.len())?;
            }
            let dp = if index < scaled_from {
                &mut dp
            } else {
                &mut scaled_dp
            };
            let (ns_per_run, v) = measure_path(dp, &env, path, rep, calls, repeat)?;
            samples.push(ns_per_run);
            *verdict = v;
        }
    }
    let per_call_used = results.iter().any(|(p, ..)| p.timing != Timing::Batched);
    let results: Measured = std::iter::once((FLOOR, floor, "next"))
        .chain(per_call_used.then_some((FLOOR_PER_CALL, floor_per_call, "next")))
        .chain(results.into_iter().map(|(p, s, v)| (p.name, s, v)))
        .collect();
    for (name, samples, verdict) in &results {
        say!(
            "    {name:<70} {:>6.1} ns/packet  ({verdict})",
            crate::stats::median(samples)
        );
    }
    Ok(results)
}

/// One repetition of `path`: ns per run (batched, or the interquartile mean
/// of `calls` single runs) and the verdict. Every repetition warms up first
/// (and so creates the flow of an established-flow path).
/// `PerCallNewFlows` calls use sequence numbers from 2, on an emptied
/// conntrack table, so that every such row inserts into the same occupancy.
fn measure_path(
    dp: &mut Dataplane,
    env: &Env,
    path: &Path,
    rep: usize,
    calls: u32,
    repeat: u32,
) -> Result<(f64, &'static str)> {
    let ifindex = match path.device {
        Device::Endpoint => env.endpoint,
        Device::Unknown => env.unknown,
        Device::Uplink => env.uplink,
        Device::OverlaySender => env.overlay_sender,
    };
    if path.timing == Timing::PerCallNewFlows {
        for ip in [SENDER, PEER, PEER2] {
            dp.remove_flows_of(ip)?;
        }
    }
    if let Some(opener) = path.opened_by {
        let from_ep = program(dp, Program::FromEndpoint)?;
        test_run(from_ep, env.endpoint, &opener(0), 1)
            .with_context(|| format!("opening the flow of {}", path.name))?;
    }
    let run = |dp: &Dataplane, frame: &[u8], repeat| {
        test_run(program(dp, path.program)?, ifindex, frame, repeat)
            .with_context(|| format!("test run of {}", path.name))
    };
    // Sequence 0 is the warm-up's frame: for the established-flow paths
    // the SYN that creates the flow the measured calls use.
    let frame = (path.frame)(1);
    let warm_up = if path.timing == Timing::Batched {
        10_000
    } else {
        1
    };
    run(dp, &(path.frame)(0), warm_up)?;
    let (ns_per_run, code) = match path.timing {
        Timing::Batched => run(dp, &frame, repeat)?,
        Timing::PerCall | Timing::PerCallNewFlows | Timing::PerCallUncached => {
            let new_flows = path.timing == Timing::PerCallNewFlows;
            let n = if new_flows { NEW_FLOW_CALLS } else { calls };
            let mut one = Vec::with_capacity(n as usize);
            let mut code = 0;
            for call in 0..n {
                if path.timing == Timing::PerCallUncached {
                    dp.advance_generation()?;
                }
                let (ns, c) = if new_flows {
                    run(dp, &(path.frame)(2 + rep as u32 * n + call), 1)?
                } else {
                    run(dp, &frame, 1)?
                };
                one.push(ns);
                code = c;
            }
            (crate::stats::interquartile_mean(&one), code)
        }
    };
    Ok((ns_per_run, verdict_name(code)))
}

fn program(dp: &Dataplane, program: Program) -> Result<&SchedClassifier> {
    Ok(match program {
        Program::FromEndpoint => dp.program(Direction::FromEndpoint)?,
        Program::ToEndpoint => dp.program(Direction::ToEndpoint)?,
        Program::Uplink => dp.uplink_program()?,
    })
}

/// Runs the program `repeat` times in one syscall; the kernel's average ns
/// per run and the program's return code (of the last run).
fn test_run(
    program: &SchedClassifier,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
) -> Result<(f64, u32)> {
    let ctx = skb_ctx(ifindex);
    let mut out = vec![0u8; frame.len() + 256];
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        repeat,
        ..Default::default()
    })?;
    Ok((result.duration.as_nanos() as f64, result.return_value))
}

/// A `struct __sk_buff` context that sets only `ifindex`.
fn skb_ctx(ifindex: u32) -> [u8; SKB_IFINDEX_OFFSET + 4] {
    let mut ctx = [0u8; SKB_IFINDEX_OFFSET + 4];
    ctx[SKB_IFINDEX_OFFSET..].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

fn verdict_name(code: u32) -> &'static str {
    match code as i32 {
        -1 => "next",
        0 => "pass",
        2 => "drop",
        7 => "redirect",
        _ => "other",
    }
}

fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: `c` is NUL-terminated and outlives the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => bail!("no interface {name} in the bench namespace"),
        i => Ok(i),
    }
}

/// The private pin directory; removing it detaches the links and frees the
/// maps.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        if let Err(e) = Dataplane::remove_pins(&self.0) {
            eprintln!("bench: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Crafted frames from the sender endpoint (network 1, 198.19.9.0/24), from
/// the overlay network's endpoint (network 3) and from outside to the
/// uplink. Every builder takes the call's sequence
/// number: 0 for the warm-up call, 1 for the measured calls, 2 and up for
/// the calls of a `PerCallNewFlows` path.
mod frames {
    use std::net::Ipv4Addr;

    use crate::pktgen::{ipv4_checksum, udp_frame};

    pub const SENDER: Ipv4Addr = Ipv4Addr::new(198, 19, 9, 2);
    pub const SENDER_MAC: [u8; 6] = [0x02, 0x42, 198, 19, 9, 2];
    pub const PEER: Ipv4Addr = Ipv4Addr::new(198, 19, 9, 3);
    pub const PEER_MAC: [u8; 6] = [0x02, 0x42, 198, 19, 9, 3];
    pub const PEER2: Ipv4Addr = Ipv4Addr::new(198, 19, 9, 4);
    pub const PEER2_MAC: [u8; 6] = [0x02, 0x42, 198, 19, 9, 4];
    pub const OTHER_NET_PEER: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 2);
    pub const OTHER_NET_MAC: [u8; 6] = [0x02, 0x42, 198, 19, 10, 2];
    /// A service's virtual IP: an address of network 1 no endpoint has.
    pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 9, 100);
    /// The uplink's address (`HOST_CFG`; the device itself stays down).
    pub const UPLINK_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 11, 1);
    /// The host port published to the peer's port 80.
    pub const PUBLISHED_PORT: u16 = 8080;
    /// The endpoint of the overlay network 3 (198.19.13.0/24), its peer on
    /// another host, and that host's underlay address.
    pub const OVERLAY_SENDER: Ipv4Addr = Ipv4Addr::new(198, 19, 13, 2);
    pub const OVERLAY_SENDER_MAC: [u8; 6] = [0x02, 0x42, 198, 19, 13, 2];
    pub const REMOTE_PEER: Ipv4Addr = Ipv4Addr::new(198, 19, 13, 3);
    const REMOTE_PEER_MAC: [u8; 6] = [0x02, 0x42, 198, 19, 13, 3];
    pub const REMOTE_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 201, 1);
    /// In no netd network, and not in a /16 of one (test runs never
    /// transmit anyway): where masqueraded traffic usually goes, since
    /// Docker's address pools are /16s (and netd's `NET_HINT` skips the
    /// destination lookups for /16s without netd addresses).
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
    /// In no netd network but in the /16 of the bench's networks: the
    /// outside destinations that cost the lookups.
    const OUTSIDE_NEAR: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 1);
    /// A client outside, connecting to the published port.
    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 19, 12, 5);
    /// What the sender's neighbour table says for anything off-link: the
    /// gateway's MAC, as netd derives it.
    const GATEWAY_MAC: [u8; 6] = [0x02, 0x42, 198, 19, 9, 1];
    /// Ethernet addresses of frames on the uplink (the program ignores them).
    const UPLINK_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
    const ROUTER_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];
    /// The source port of the established TCP flows.
    const FLOW_PORT: u16 = 40000;

    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;

    pub fn udp_to_peer(_: u32) -> Vec<u8> {
        udp_frame(SENDER_MAC, PEER_MAC, SENDER, PEER)
    }

    pub fn udp_to_remote_peer(_: u32) -> Vec<u8> {
        udp_frame(
            OVERLAY_SENDER_MAC,
            REMOTE_PEER_MAC,
            OVERLAY_SENDER,
            REMOTE_PEER,
        )
    }

    pub fn udp_outside(_: u32) -> Vec<u8> {
        udp_frame(SENDER_MAC, GATEWAY_MAC, SENDER, OUTSIDE)
    }

    pub fn udp_other_network(_: u32) -> Vec<u8> {
        udp_frame(SENDER_MAC, GATEWAY_MAC, SENDER, OTHER_NET_PEER)
    }

    pub fn udp_spoofed(_: u32) -> Vec<u8> {
        udp_frame(SENDER_MAC, PEER_MAC, Ipv4Addr::new(198, 19, 9, 99), PEER)
    }

    pub fn tcp_syn_to_peer(_: u32) -> Vec<u8> {
        tcp_frame(SENDER_MAC, PEER_MAC, (SENDER, FLOW_PORT), (PEER, 80), SYN)
    }

    /// The SYN that opens the flow, then its ACKs.
    fn syn_then_ack(seq: u32) -> u8 {
        if seq == 0 { SYN } else { ACK }
    }

    /// Source ports of new flows: distinct for any 60,000 consecutive
    /// sequence numbers.
    fn new_flow_port(seq: u32) -> u16 {
        1024 + (seq % 60_000) as u16
    }

    pub fn tcp_to_outside(seq: u32) -> Vec<u8> {
        let (src, dst) = ((SENDER, FLOW_PORT), (OUTSIDE, 80));
        tcp_frame(SENDER_MAC, GATEWAY_MAC, src, dst, syn_then_ack(seq))
    }

    pub fn tcp_to_outside_near(seq: u32) -> Vec<u8> {
        let (src, dst) = ((SENDER, FLOW_PORT), (OUTSIDE_NEAR, 80));
        tcp_frame(SENDER_MAC, GATEWAY_MAC, src, dst, syn_then_ack(seq))
    }

    pub fn tcp_to_outside_new(seq: u32) -> Vec<u8> {
        let (src, dst) = ((SENDER, new_flow_port(seq)), (OUTSIDE, 80));
        tcp_frame(SENDER_MAC, GATEWAY_MAC, src, dst, SYN)
    }

    /// The outside server's answer on the flow of [`tcp_to_outside`] (whose
    /// port the masquerade keeps: it is free on the uplink).
    pub fn tcp_reply_from_outside(_: u32) -> Vec<u8> {
        let (src, dst) = ((OUTSIDE, 80), (UPLINK_ADDR, FLOW_PORT));
        tcp_frame(ROUTER_MAC, UPLINK_MAC, src, dst, ACK)
    }

    pub fn tcp_to_published(seq: u32) -> Vec<u8> {
        let (src, dst) = ((CLIENT, FLOW_PORT), (UPLINK_ADDR, PUBLISHED_PORT));
        tcp_frame(ROUTER_MAC, UPLINK_MAC, src, dst, syn_then_ack(seq))
    }

    pub fn tcp_to_published_new(seq: u32) -> Vec<u8> {
        let (src, dst) = ((CLIENT, new_flow_port(seq)), (UPLINK_ADDR, PUBLISHED_PORT));
        tcp_frame(ROUTER_MAC, UPLINK_MAC, src, dst, SYN)
    }

    pub fn tcp_to_vip(seq: u32) -> Vec<u8> {
        let (src, dst) = ((SENDER, FLOW_PORT), (VIP, 80));
        tcp_frame(SENDER_MAC, GATEWAY_MAC, src, dst, syn_then_ack(seq))
    }

    pub fn tcp_to_vip_new(seq: u32) -> Vec<u8> {
        let (src, dst) = ((SENDER, new_flow_port(seq)), (VIP, 80));
        tcp_frame(SENDER_MAC, GATEWAY_MAC, src, dst, SYN)
    }

    /// A 54-byte Ethernet/IPv4/TCP frame without payload. The TCP checksum
    /// stays 0: the programs update checksums incrementally and never
    /// verify them.
    fn tcp_frame(
        eth_src: [u8; 6],
        eth_dst: [u8; 6],
        (src, sport): (Ipv4Addr, u16),
        (dst, dport): (Ipv4Addr, u16),
        flags: u8,
    ) -> Vec<u8> {
        let mut f = Vec::with_capacity(54);
        f.extend_from_slice(&eth_dst);
        f.extend_from_slice(&eth_src);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6; // TCP
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let checksum = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[12] = 5 << 4; // data offset
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        f.extend_from_slice(&tcp);
        f
    }

    pub fn arp_for_peer(_: u32) -> Vec<u8> {
        let mut f = Vec::with_capacity(42);
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&SENDER_MAC);
        f.extend_from_slice(&0x0806u16.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
        f.extend_from_slice(&SENDER_MAC);
        f.extend_from_slice(&SENDER.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&PEER.octets());
        f
    }

    /// A complete frame whose IPv4 header claims version 6.
    pub fn bad_ipv4(_: u32) -> Vec<u8> {
        let mut f = udp_to_peer(0);
        f[14] = 0x65;
        f
    }
}
