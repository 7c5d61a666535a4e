//! Socket hook tests: the host's own processes reach published ports
//! through `netd_connect4`/`netd_sendmsg4`/`netd_recvmsg4`, and
//! `netd_post_bind4` refuses binds of published ports.
//!
//! Every test loads the data path with a private pin directory, writes
//! `HOST_CFG` with the test process's netns cookie, and attaches the hooks to
//! the cgroup v2 root as (multi-attach) cgroup links, next to whatever other
//! tests and daemons attached there. The published "container" is a
//! namespace the test creates behind a veth (addresses: a /30 of
//! 198.18.0.0/16, see `bpf_harness::guards::Veth`), running std servers;
//! the host side only uses loopback, that veth's address, and ports no
//! other test uses (free ports picked at run time).
//! Guards remove pins (which detaches the links), namespaces and veths,
//! also when a test panics, so tests run in parallel and leave nothing
//! behind.
//!
//! The hooks see every socket of the machine but act only in the test
//! process's namespace and only on this test's ports, so a test cannot
//! disturb anything else.
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN), `ip`, cgroup2 and
//! Linux >= 5.18 (`bpf_set_retval`).

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
};

mod bpf_harness;

use bpf_harness::{
    cmd::run,
    guards::{Netns, PinDir, Veth, unique},
    servers::{IO_TIMEOUT, Server, tcp_hello},
};
use netd::dataplane::{Dataplane, Proto, SocketHook, cgroup2_root, host_netns_cookie};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
const LOOPBACK_2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A port that is free for TCP and UDP on every address right now. Binding
/// port 0 can itself fail with EADDRINUSE when the kernel happens to pick a
/// port some netd daemon on this machine publishes (`netd_post_bind4`), so
/// failures are retried.
fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(tcp) = TcpListener::bind("0.0.0.0:0") else {
            continue;
        };
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

/// A namespace behind a veth, standing in for a container: `peer_addr`
/// inside, `host_addr` (its default gateway) on the host side.
fn container() -> Veth {
    let veth = Veth::new();
    veth.plumb(veth.peer_addr, veth.host_addr);
    veth.address_host_side();
    veth
}

/// The data path of one test with the socket hooks attached and `HOST_CFG`
/// naming the test process's namespace, plus the "container" namespace.
/// Field order is drop order: the data path handle, then the pins (which
/// detaches the hooks), then the container.
struct Lab {
    dp: Dataplane,
    _pins: PinDir,
    container: Veth,
}

impl Lab {
    fn new() -> Lab {
        let pins = PinDir::new();
        let container = container();
        let mut dp = pins.load();
        dp.set_host(None, host_netns_cookie().expect("netns cookie"))
            .expect("set_host");
        dp.attach_socket_hooks(&cgroup2_root().expect("cgroup2 is mounted"))
            .expect("attach the socket hooks");
        Lab {
            dp,
            _pins: pins,
            container,
        }
    }

    /// Publishes `host_addr:host_port/proto` to
    /// `container.peer_addr:target_port`.
    fn publish(
        &mut self,
        host_addr: Option<Ipv4Addr>,
        host_port: u16,
        proto: Proto,
        target_port: u16,
    ) {
        let ifindex = self.container.ifindex();
        self.dp
            .set_publish(
                host_addr,
                host_port,
                proto,
                self.container.peer_addr,
                target_port,
                ifindex,
                1,
            )
            .expect("set_publish");
    }

    /// A TCP server on `container.peer_addr:port` inside the namespace.
    fn tcp_server(&self, port: u16, marker: &'static str) -> Server {
        let addr = self.container.peer_addr;
        let listener = self
            .container
            .netns
            .run(move || TcpListener::bind((addr, port)).expect("bind in the namespace"));
        Server::tcp(listener, marker)
    }

    /// A UDP server on `container.peer_addr:port` inside the namespace.
    fn udp_server(&self, port: u16, marker: &'static str) -> Server {
        let addr = self.container.peer_addr;
        let socket = self
            .container
            .netns
            .run(move || UdpSocket::bind((addr, port)).expect("bind in the namespace"));
        Server::udp(socket, move |msg| format!("{marker}:{msg}"))
    }
}

#[test]
fn tcp_to_a_published_port_on_a_host_address_reaches_the_target() {
    let mut lab = Lab::new();
    let (port, target_port) = (free_port(), free_port());
    let _server = lab.tcp_server(target_port, "target");
    // Nothing published yet: the host's own port is closed.
    assert_eq!(
        tcp_hello(LOCALHOST, port).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );

    lab.publish(None, port, Proto::Tcp, target_port);
    assert_eq!(tcp_hello(LOCALHOST, port).unwrap(), "target");
    // Every loopback address and 0.0.0.0 are this host.
    assert_eq!(tcp_hello(LOOPBACK_2, port).unwrap(), "target");
    assert_eq!(tcp_hello(Ipv4Addr::UNSPECIFIED, port).unwrap(), "target");
    // Other ports and the target's own address are not touched.
    let other = free_port();
    assert_eq!(
        tcp_hello(LOCALHOST, other).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    assert_eq!(
        tcp_hello(lab.container.peer_addr, target_port).unwrap(),
        "target"
    );

    // Another address of the host counts once it is in HOST_ADDRS.
    assert_eq!(
        tcp_hello(lab.container.host_addr, port).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    lab.dp
        .set_host_addresses(&[lab.container.host_addr])
        .unwrap();
    assert_eq!(
        lab.dp.host_addresses().unwrap(),
        vec![lab.container.host_addr]
    );
    assert_eq!(tcp_hello(lab.container.host_addr, port).unwrap(), "target");
    lab.dp.set_host_addresses(&[]).unwrap();
    assert!(lab.dp.host_addresses().unwrap().is_empty());
    assert_eq!(
        tcp_hello(lab.container.host_addr, port).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );

    // The uplink address (HOST_CFG) counts too.
    let cookie = host_netns_cookie().unwrap();
    lab.dp
        .set_host(
            Some((lab.container.ifindex(), lab.container.host_addr)),
            cookie,
        )
        .unwrap();
    assert_eq!(tcp_hello(lab.container.host_addr, port).unwrap(), "target");
    lab.dp.set_host(None, cookie).unwrap();

    // Unpublished: back to the host's own (closed) port.
    lab.dp.remove_publish(None, port, Proto::Tcp).unwrap();
    assert_eq!(
        tcp_hello(LOCALHOST, port).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
}

#[test]
fn udp_replies_come_from_the_address_the_client_sent_to() {
    let mut lab = Lab::new();
    let (port, target_port) = (free_port(), free_port());
    let _server = lab.udp_server(target_port, "target");
    lab.publish(None, port, Proto::Udp, target_port);
    let published = SocketAddr::V4(SocketAddrV4::new(LOCALHOST, port));

    // Unconnected: sendto() goes through sendmsg4, recvfrom() through
    // recvmsg4.
    let client = UdpSocket::bind("0.0.0.0:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 512];
    for i in 0..3 {
        let msg = format!("ping{i}");
        client.send_to(msg.as_bytes(), published).unwrap();
        let (n, from) = client.recv_from(&mut buf).expect("a reply");
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("target:{msg}")
        );
        assert_eq!(from, published, "the reply's source is what we sent to");
    }
    assert!(lab.dp.udp_reverse_entries().unwrap() >= 1);

    // Connected: connect() goes through connect4; the reply passes the
    // kernel's connected-peer check and recvfrom() shows the published
    // address.
    let connected = UdpSocket::bind("0.0.0.0:0").unwrap();
    connected.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    connected.connect(published).unwrap();
    connected.send(b"hello").unwrap();
    let (n, from) = connected.recv_from(&mut buf).expect("a reply");
    assert_eq!(&buf[..n], b"target:hello");
    assert_eq!(from, published);

    // A TCP publish of the same number is another port.
    assert_eq!(
        tcp_hello(LOCALHOST, port).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
}

#[test]
fn binding_a_published_port_fails_with_addr_in_use() {
    let mut lab = Lab::new();
    let (port, lo_port, target_port) = (free_port(), free_port(), free_port());
    lab.publish(None, port, Proto::Tcp, target_port);
    lab.publish(Some(LOCALHOST), lo_port, Proto::Tcp, target_port);

    for addr in [Ipv4Addr::UNSPECIFIED, LOCALHOST, LOOPBACK_2] {
        let err = TcpListener::bind((addr, port)).expect_err("published on every address");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{addr}:{port}: {err}");
    }
    // Same number, other protocol: free.
    drop(UdpSocket::bind(("0.0.0.0", port)).expect("UDP is not published"));

    // Loopback-only publish: its address and the wildcard are refused,
    // another loopback address is not.
    for addr in [Ipv4Addr::UNSPECIFIED, LOCALHOST] {
        let err = TcpListener::bind((addr, lo_port)).expect_err("published on 127.0.0.1");
        assert_eq!(
            err.kind(),
            io::ErrorKind::AddrInUse,
            "{addr}:{lo_port}: {err}"
        );
    }
    drop(TcpListener::bind((LOOPBACK_2, lo_port)).expect("127.0.0.2 is not published"));

    // The refused bind released the port: once unpublished, it binds.
    lab.dp.remove_publish(None, port, Proto::Tcp).unwrap();
    drop(TcpListener::bind(("0.0.0.0", port)).expect("unpublished port binds"));
    drop(TcpListener::bind((LOCALHOST, port)).expect("unpublished port binds"));
}

#[test]
fn loopback_only_publish_is_not_applied_to_other_host_addresses() {
    let mut lab = Lab::new();
    let (port, target_port) = (free_port(), free_port());
    let _server = lab.tcp_server(target_port, "target");
    lab.publish(Some(LOCALHOST), port, Proto::Tcp, target_port);
    lab.dp
        .set_host_addresses(&[lab.container.host_addr])
        .unwrap();

    // Host processes may still use the port on the other addresses.
    let _local2 = Server::tcp(
        TcpListener::bind((LOOPBACK_2, port)).expect("127.0.0.2 is not published"),
        "local 127.0.0.2",
    );
    let _local_host = Server::tcp(
        TcpListener::bind((lab.container.host_addr, port))
            .expect("the veth address is not published"),
        "local veth",
    );

    assert_eq!(tcp_hello(LOCALHOST, port).unwrap(), "target");
    assert_eq!(tcp_hello(LOOPBACK_2, port).unwrap(), "local 127.0.0.2");
    assert_eq!(
        tcp_hello(lab.container.host_addr, port).unwrap(),
        "local veth"
    );
}

#[test]
fn sockets_in_other_namespaces_are_left_alone() {
    let mut lab = Lab::new();
    let (port, target_port) = (free_port(), free_port());
    let _server = lab.tcp_server(target_port, "target");
    let _udp_server = lab.udp_server(target_port, "target");
    lab.publish(None, port, Proto::Tcp, target_port);
    lab.publish(None, port, Proto::Udp, target_port);
    assert_eq!(tcp_hello(LOCALHOST, port).unwrap(), "target");

    let other = Netns::new("o");
    run(&["ip", "-n", &other.0, "link", "set", "lo", "up"]);
    let (tcp_answer, udp_answer) = other.run(move || {
        // Binding the published port is fine there (not the daemon's
        // namespace), and connecting to it reaches that namespace's own
        // listener, not the target.
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind in another netns");
        let _local = Server::tcp(listener, "other netns");
        let tcp_answer = tcp_hello(LOCALHOST, port);

        let udp_local = UdpSocket::bind(("127.0.0.1", port)).expect("UDP bind in another netns");
        let _udp_local = Server::udp(udp_local, |msg| format!("other netns:{msg}"));
        let client = UdpSocket::bind("0.0.0.0:0").unwrap();
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        client.send_to(b"ping", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 512];
        let udp_answer = client
            .recv_from(&mut buf)
            .map(|(n, from)| (String::from_utf8_lossy(&buf[..n]).into_owned(), from));
        (tcp_answer, udp_answer)
    });
    assert_eq!(tcp_answer.unwrap(), "other netns");
    let (text, from) = udp_answer.unwrap();
    assert_eq!(text, "other netns:ping");
    assert_eq!(from, SocketAddr::V4(SocketAddrV4::new(LOCALHOST, port)));
}

#[test]
fn without_the_netns_cookie_the_hooks_do_nothing() {
    let mut lab = Lab::new();
    let (port, target_port) = (free_port(), free_port());
    let _server = lab.tcp_server(target_port, "target");
    lab.publish(None, port, Proto::Tcp, target_port);
    assert_eq!(tcp_hello(LOCALHOST, port).unwrap(), "target");

    // Another namespace's cookie (e.g. another daemon's): not ours.
    let foreign = lab.container.netns.run(|| host_netns_cookie().unwrap());
    assert_ne!(foreign, host_netns_cookie().unwrap());
    lab.dp.set_host(None, foreign).unwrap();
    assert_eq!(
        tcp_hello(LOCALHOST, port).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    drop(TcpListener::bind(("0.0.0.0", port)).expect("not refused outside the daemon's netns"));
    // Not configured at all.
    lab.dp.set_host(None, 0).unwrap();
    assert_eq!(
        tcp_hello(LOCALHOST, port).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
}

#[test]
fn hook_links_are_pinned_readopted_and_detached() {
    let pins = PinDir::new();
    let container = container();
    let cgroup = cgroup2_root().unwrap();
    let cgroup_id = std::fs::metadata(&cgroup).unwrap().ino();
    let cookie = host_netns_cookie().unwrap();
    let (port, target_port) = (free_port(), free_port());
    let listener = container.netns.run({
        let addr = container.peer_addr;
        move || TcpListener::bind((addr, target_port)).unwrap()
    });
    let _server = Server::tcp(listener, "target");

    let mut dp = pins.load();
    assert!(dp.socket_hook_attachments().unwrap().is_empty());
    dp.set_host(None, cookie).unwrap();
    dp.set_publish(
        None,
        port,
        Proto::Tcp,
        container.peer_addr,
        target_port,
        container.ifindex(),
        1,
    )
    .unwrap();
    dp.attach_socket_hooks(&cgroup).unwrap();
    let first = dp.socket_hook_attachments().unwrap();
    assert_eq!(
        first.iter().map(|a| a.hook).collect::<Vec<_>>(),
        SocketHook::ALL.to_vec()
    );
    for a in &first {
        assert!(a.matches_hook, "{a:?}");
        assert_eq!(a.cgroup_id, cgroup_id, "{a:?}");
        assert!(
            pins.0
                .join("links")
                .join(format!("cgroup_{}", a.hook.as_str()))
                .exists()
        );
    }
    // Idempotent.
    dp.attach_socket_hooks(&cgroup).unwrap();
    assert_eq!(dp.socket_hook_attachments().unwrap(), first);
    // Not mistaken for endpoints.
    assert!(dp.tcx_endpoint_pins().unwrap().is_empty());

    // "Restart": the old programs stay attached through the pins while no
    // daemon runs, the new daemon keeps the links and switches them to its
    // programs.
    drop(dp);
    assert_eq!(tcp_hello(LOCALHOST, port).unwrap(), "target");
    let mut dp = pins.load();
    dp.attach_socket_hooks(&cgroup).unwrap();
    let second = dp.socket_hook_attachments().unwrap();
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.link_id, b.link_id, "re-adopted, not re-attached: {b:?}");
        assert_ne!(
            a.program_id, b.program_id,
            "switched to the new program: {b:?}"
        );
    }
    assert_eq!(tcp_hello(LOCALHOST, port).unwrap(), "target");

    // Moved to another cgroup: the stale pins are replaced.
    let child = cgroup.join(unique("netd-test-sock-"));
    std::fs::create_dir(&child).unwrap();
    struct RmDir(PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let child = RmDir(child);
    let child_id = std::fs::metadata(&child.0).unwrap().ino();
    dp.attach_socket_hooks(&child.0).unwrap();
    let third = dp.socket_hook_attachments().unwrap();
    assert_eq!(third.len(), SocketHook::ALL.len());
    for (a, c) in second.iter().zip(&third) {
        assert_ne!(a.link_id, c.link_id, "{c:?}");
        assert_eq!(c.cgroup_id, child_id, "{c:?}");
    }
    // The test process is in another cgroup than `child`: not hooked.
    assert_eq!(
        tcp_hello(LOCALHOST, port).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    dp.attach_socket_hooks(&cgroup).unwrap();
    assert_eq!(tcp_hello(LOCALHOST, port).unwrap(), "target");

    // Detached: pins gone, nothing rewritten any more.
    dp.detach_socket_hooks().unwrap();
    assert!(dp.socket_hook_attachments().unwrap().is_empty());
    assert_eq!(
        tcp_hello(LOCALHOST, port).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    dp.detach_socket_hooks().unwrap();

    // A cgroup that does not exist is an error, and leaves nothing behind.
    assert!(dp.attach_socket_hooks(&child.0.join("missing")).is_err());
    assert!(dp.socket_hook_attachments().unwrap().is_empty());
}

#[test]
fn netns_cookie_and_cgroup_root_are_found() {
    let cookie = host_netns_cookie().unwrap();
    assert_ne!(cookie, 0);
    assert_eq!(host_netns_cookie().unwrap(), cookie, "stable");
    let root = cgroup2_root().unwrap();
    assert!(root.join("cgroup.procs").exists(), "{}", root.display());
}
