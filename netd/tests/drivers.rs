//! Each network driver through `drivers::NetworkDriver`, against the real
//! kernel (a private pin directory, the test's own namespaces and links),
//! and a driver of the test's own registered with an engine that knows
//! nothing about it.

mod bpf_harness;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bpf_harness::{
    cmd::{run, succeeds},
    guards::{Netns as NetnsGuard, PinDir, Veth, unique},
};
use netd::dataplane::Dataplane;
use netd::dns::DnsConfig;
use netd::drivers::{
    Attachment, Bridge, Drivers, Host, Kernel, Leaving, Macvlan, NetworkDriver, Null, Plugged,
};
use netd::engine::spec::{ContainerSpec, EndpointSpec, NetworkMode, NetworkSpec};
use netd::engine::{Engine, EngineConfig};
use netd::error::{EngineError, Result};
use netd::model::{Endpoint, Network, State, Subnet, mac_for};
use netd::netlink::{Netlink, Netns};
use netd::store::FileStore;
use serde_json::Value;

fn ip_json(args: &[&str]) -> Value {
    let out = std::process::Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

fn link_exists(netns: Option<&str>, name: &str) -> bool {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["link", "show", name]);
    succeeds(&[&["ip"][..], &args].concat())
}

/// Deletes links a test may leave when it fails half-way.
struct LinkGuard(Vec<String>);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        for link in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", link])
                .output();
        }
    }
}

/// A network record as the engine would make it.
fn network(
    name: &str,
    driver: &str,
    subnet: &str,
    index: u32,
    options: &[(&str, &str)],
) -> Network {
    let subnet: ipnet::Ipv4Net = subnet.parse().unwrap();
    Network {
        id: format!("{:0>64}", unique("")),
        name: name.into(),
        driver: driver.into(),
        created: String::new(),
        internal: false,
        attachable: false,
        ipam: Some(Subnet {
            subnet,
            gateway: subnet.hosts().next().unwrap(),
            ip_range: None,
        }),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        labels: BTreeMap::new(),
        predefined: false,
        index,
    }
}

fn endpoint(net: &Network, prefix: &str, ip: Ipv4Addr) -> Endpoint {
    let id = format!("{:0>64}", unique("e"));
    Endpoint {
        host_ifname: netd::names::host_veth(prefix, &id),
        id,
        network_id: net.id.clone(),
        ifname: "eth0".into(),
        mac: mac_for(ip),
        ip,
        prefix_len: net.ipam.as_ref().unwrap().subnet.prefix_len(),
        gateway: net.ipam.as_ref().unwrap().gateway,
        aliases: Vec::new(),
        static_ip: false,
    }
}

fn spec(name: &str, driver: &str, options: &[(&str, &str)]) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        driver: driver.into(),
        subnet: None,
        gateway: None,
        ip_range: None,
        internal: false,
        attachable: false,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        labels: BTreeMap::new(),
    }
}

/// A prefix of four characters no other test uses.
fn prefix() -> String {
    let n = unique("");
    format!("d{}", &n[n.len() - 3..])
}

#[tokio::test]
async fn bridge_plumbs_and_unplumbs_networks_and_endpoints() {
    let pins = PinDir::new();
    let mut dp = pins.load();
    let nl = Netlink::new().await.unwrap();
    let prefix = prefix();
    let ns = NetnsGuard::new("drv");
    let mut k = Kernel {
        prefix: &prefix,
        netlink: &nl,
        dataplane: &mut dp,
    };
    let d = Bridge;
    assert_eq!(
        (d.name(), d.scope(), d.attachment()),
        ("bridge", "local", Attachment::Interface)
    );
    assert!(d.publishes_ports() && d.hosts_services() && d.user_creatable());
    assert_eq!(d.predefined().unwrap().name, "bridge");
    let net = network("b", "bridge", "10.238.7.0/24", 3, &[]);
    let bridge = netd::names::bridge(&prefix, &net);
    let _cleanup = LinkGuard(vec![bridge.clone()]);
    d.setup(&mut k, &net).await.expect("setup");
    d.setup(&mut k, &net).await.expect("setup is idempotent");
    let addrs = ip_json(&["addr", "show", "dev", &bridge]);
    assert_eq!(addrs[0]["addr_info"][0]["local"], "10.238.7.1");
    assert_eq!(d.network_links(&prefix, &net), vec![bridge.clone()]);
    assert_eq!(
        d.datapath_subnet(&net),
        Some("10.238.7.0/24".parse().unwrap())
    );

    let ep = endpoint(&net, &prefix, Ipv4Addr::new(10, 238, 7, 2));
    let _veth = LinkGuard(vec![ep.host_ifname.clone()]);
    let netns = Netns::Named(ns.0.clone());
    let plugged = d
        .attach(&mut k, &net, &ep, &netns, true)
        .await
        .expect("attach");
    let ifindex = plugged.host_ifindex.expect("a host side");
    assert!(link_exists(None, &ep.host_ifname));
    assert_eq!(d.endpoint_link(&ep), Some(ep.host_ifname.clone()));
    let inside = ip_json(&["-n", &ns.0, "addr", "show", "dev", "eth0"]);
    assert_eq!(inside[0]["addr_info"][0]["local"], "10.238.7.2");
    let entries = k.dataplane.endpoints_by_ip().unwrap();
    assert!(
        entries
            .iter()
            .any(|(ip, info)| *ip == ep.ip && info.ifindex == ifindex && info.net_index == 3)
    );
    // Again: adopted, same interface.
    let again = d
        .attach(&mut k, &net, &ep, &netns, true)
        .await
        .expect("adopt");
    assert_eq!(again.host_ifindex, Some(ifindex));

    d.detach(&mut k, &net, &ep, Leaving::Deleted(&netns)).await;
    assert!(!link_exists(None, &ep.host_ifname));
    assert!(
        k.dataplane
            .endpoints_by_ip()
            .unwrap()
            .iter()
            .all(|(ip, _)| *ip != ep.ip)
    );
    d.teardown(&mut k, &net).await;
    assert!(!link_exists(None, &bridge));
    assert!(k.dataplane.networks().unwrap().is_empty());
}

#[tokio::test]
async fn macvlan_checks_its_parent_and_guards_its_endpoints() {
    let pins = PinDir::new();
    let mut dp = pins.load();
    let nl = Netlink::new().await.unwrap();
    let prefix = prefix();
    let ns = NetnsGuard::new("drv");
    // The host end of a veth pair stands in for the LAN interface.
    let lan = Veth::new();
    let parent = lan.host.clone();
    run(&["ip", "link", "set", &parent, "up"]);
    let k = Kernel {
        prefix: &prefix,
        netlink: &nl,
        dataplane: &mut dp,
    };
    let d = Macvlan;
    let refused = |r: Result<()>| match r {
        Err(e) => e.to_string(),
        Ok(()) => panic!("accepted"),
    };
    let empty = State::default();
    assert!(
        refused(d.validate(&k, &spec("m", "macvlan", &[]), &empty).await)
            .contains("-o parent=IFACE")
    );
    assert!(
        refused(
            d.validate(&k, &spec("m", "macvlan", &[("parent", "nosuch0")]), &empty)
                .await
        )
        .contains("not found on the host: nosuch0")
    );
    let own = format!("{prefix}0");
    assert!(
        refused(
            d.validate(&k, &spec("m", "macvlan", &[("parent", &own)]), &empty)
                .await
        )
        .contains("not found")
    );
    let mut wide = spec("m", "macvlan", &[("parent", &parent)]);
    wide.subnet = Some("10.0.0.0/8".parse().unwrap());
    assert!(refused(d.validate(&k, &wide, &empty).await).contains("at most /14"));
    let net = network("m", "macvlan", "10.238.8.0/24", 4, &[("parent", &parent)]);
    let mut taken = State::default();
    taken.networks.insert(net.id.clone(), Arc::new(net.clone()));
    assert!(
        refused(
            d.validate(&k, &spec("m2", "macvlan", &[("parent", &parent)]), &taken)
                .await
        )
        .contains("already using parent interface")
    );
    d.validate(&k, &spec("m2", "macvlan", &[("parent", &parent)]), &empty)
        .await
        .expect("a free parent");

    let mut k = k;
    let ep = endpoint(&net, &prefix, Ipv4Addr::new(10, 238, 8, 5));
    let netns = Netns::Named(ns.0.clone());
    let plugged = d
        .attach(&mut k, &net, &ep, &netns, true)
        .await
        .expect("attach");
    assert_eq!(plugged, Plugged::default(), "no host side");
    let number = netd_common::macvlan::ifindex(4, 5).unwrap();
    let eth0 = &ip_json(&["-n", &ns.0, "-d", "link", "show", "eth0"])[0];
    assert_eq!(eth0["ifindex"], number);
    assert_eq!(eth0["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(k.dataplane.macvlan_endpoints().unwrap().len(), 1);
    let filters = String::from_utf8(
        std::process::Command::new("tc")
            .args(["-n", &ns.0, "filter", "show", "dev", "eth0", "egress"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(filters.contains("netd_mv_out"), "{filters}");
    d.detach(&mut k, &net, &ep, Leaving::Stays(&netns)).await;
    assert!(!link_exists(Some(&ns.0), "eth0"));
    assert!(k.dataplane.macvlan_endpoints().unwrap().is_empty());
}

#[tokio::test]
async fn host_and_null_have_no_endpoints_and_one_network_each() {
    for (d, kind, name) in [
        (
            &Host as &dyn NetworkDriver,
            Attachment::HostNamespace,
            "host",
        ),
        (&Null, Attachment::Loopback, "none"),
    ] {
        assert_eq!(d.attachment(), kind);
        assert_eq!(d.predefined().unwrap().name, name);
        assert!(d.predefined().unwrap().subnet.is_none());
        assert!(!d.user_creatable() && !d.publishes_ports() && !d.hosts_services());
    }
    let pins = PinDir::new();
    let mut dp = pins.load();
    let nl = Netlink::new().await.unwrap();
    let mut k = Kernel {
        prefix: "dxx",
        netlink: &nl,
        dataplane: &mut dp,
    };
    let net = network("h", "host", "10.238.9.0/24", 5, &[]);
    let ep = endpoint(&net, "dxx", Ipv4Addr::new(10, 238, 9, 2));
    let err = Host
        .attach(&mut k, &net, &ep, &Netns::Named("none".into()), true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no endpoints"), "{err}");
    assert_eq!(
        Drivers::builtin().names().collect::<Vec<_>>(),
        ["bridge", "host", "macvlan", "null"]
    );
}

/// What the test driver was asked to do, in order.
#[derive(Default)]
struct Calls(Mutex<Vec<String>>);

impl Calls {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// A driver the engine has never heard of: it only records its calls.
struct Fake(Arc<Calls>);

#[async_trait]
impl NetworkDriver for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn scope(&self) -> &'static str {
        "swarm"
    }
    async fn validate(&self, _k: &Kernel<'_>, spec: &NetworkSpec, _state: &State) -> Result<()> {
        if spec.options.contains_key("bad") {
            return Err(EngineError::InvalidParameter("fake says no".into()));
        }
        self.0.push(format!("validate {}", spec.name));
        Ok(())
    }
    async fn setup(&self, _k: &mut Kernel<'_>, net: &Network) -> Result<()> {
        self.0.push(format!("setup {}", net.name));
        Ok(())
    }
    async fn teardown(&self, _k: &mut Kernel<'_>, net: &Network) {
        self.0.push(format!("teardown {}", net.name));
    }
    async fn attach(
        &self,
        _k: &mut Kernel<'_>,
        net: &Network,
        ep: &Endpoint,
        ns: &Netns,
        default_route: bool,
    ) -> Result<Plugged> {
        assert!(ns.exists(), "the engine made the namespace first");
        self.0
            .push(format!("attach {} {} {default_route}", net.name, ep.ip));
        Ok(Plugged::default())
    }
    async fn detach(&self, _k: &mut Kernel<'_>, net: &Network, ep: &Endpoint, ns: Leaving<'_>) {
        let how = match ns {
            Leaving::Stays(_) => "stays",
            Leaving::Deleted(_) => "deleted",
            Leaving::Gone => "gone",
        };
        self.0.push(format!("detach {} {} {how}", net.name, ep.ip));
    }
}

#[tokio::test]
async fn a_driver_registers_without_touching_the_engine() {
    let pins = PinDir::new();
    let dp: Dataplane = pins.load();
    let prefix = prefix();
    let dir = std::env::temp_dir().join(format!("netd-drivers-{prefix}"));
    let calls = Arc::new(Calls::default());
    let drivers = Drivers::empty()
        .with(Arc::new(Host))
        .with(Arc::new(Null))
        .with(Arc::new(Fake(calls.clone())));
    let engine = Engine::start(
        EngineConfig {
            prefix: prefix.clone(),
            log_dir: dir.join("logs"),
            uplink: None,
            dns: DnsConfig::new(vec!["127.0.0.1:53".parse().unwrap()], &prefix),
            cluster: None,
        },
        drivers,
        Box::new(FileStore::new(&dir.join("state")).unwrap()),
        Netlink::new().await.unwrap(),
        dp,
    )
    .await
    .expect("engine starts")
    .spawn();
    let snap = engine.snapshot();
    let names: Vec<&str> = snap
        .networks(&Default::default())
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["host", "none"],
        "predefined networks of the registered drivers"
    );

    let err = engine
        .create_network(spec("f", "fake", &[("bad", "1")]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "fake says no");
    let net = engine
        .create_network(spec("f", "fake", &[]))
        .await
        .expect("create");
    assert_eq!(engine.snapshot().scope(&net), "swarm");
    engine
        .create_container(ContainerSpec {
            name: "c1".into(),
            network: NetworkMode::Network("f".into()),
            netns: None,
            endpoint: EndpointSpec::default(),
            ports: Vec::new(),
            cmd: None,
            services: Vec::new(),
            labels: Default::default(),
        })
        .await
        .expect("container");
    let ip = engine.snapshot().container("c1").unwrap().endpoints[0].ip;
    engine.remove_container("c1", false).await.expect("rm");
    engine.remove_network("f").await.expect("rm network");
    assert_eq!(
        calls.take(),
        [
            "validate f".to_string(),
            "setup f".into(),
            format!("attach f {ip} true"),
            format!("detach f {ip} deleted"),
            "teardown f".into(),
        ]
    );
    let err = engine
        .create_network(spec("g", "nosuch", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "plugin \"nosuch\" not found");
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}
