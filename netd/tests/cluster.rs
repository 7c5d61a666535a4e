//! The cluster store against a real etcd (Debian's etcd 3.4), one server per
//! test: allocation races between hosts, name uniqueness, lease expiry and
//! replacement, the watch (order, resumption, compaction), refusals, and
//! etcd going away and coming back.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::etcd::Etcd;
use futures_util::future::join_all;
use ipnet::Ipv4Net;
use netd::cluster::{
    Cluster, ClusterConfig, ClusterError, ClusterState, EndpointRecord, EndpointRequest, Event,
    HostSpec, LeaseState, Member, NetworkRecord, Record, RecordId, ServiceRequest, WatchItem,
};
use netd::engine::spec::NetworkSpec;
use netd::error::EngineError;
use netd::model::{PortBinding, Proto};

/// How long a test waits for something that must happen (an event, a
/// lease expiry) before it fails instead of hanging. Never a measure.
const PATIENCE: Duration = Duration::from_secs(60);

/// The lease TTL of tests that do not wait for an expiry.
const TTL: Duration = Duration::from_secs(5);
/// etcd's shortest lease is about 2 s: for tests that wait for expiries.
const SHORT_TTL: Duration = Duration::from_secs(2);

/// The defaults (the 2 s call timeout among them) but the lease TTL.
fn config(etcd: &Etcd, ttl: Duration) -> ClusterConfig {
    let mut cfg = ClusterConfig::new(&etcd.url()).unwrap();
    cfg.lease_ttl = ttl;
    cfg
}

async fn connect(etcd: &Etcd, ttl: Duration) -> Cluster {
    Cluster::connect(config(etcd, ttl)).await.unwrap()
}

async fn join(cluster: &Cluster, id: &str, last_octet: u8) -> Member {
    cluster
        .join(HostSpec {
            id: id.into(),
            addr: Ipv4Addr::new(192, 0, 2, last_octet),
        })
        .await
        .unwrap()
}

/// Two clients of one etcd: two hosts.
async fn two_clients(etcd: &Etcd, ttl: Duration) -> (Cluster, Cluster) {
    (connect(etcd, ttl).await, connect(etcd, ttl).await)
}

/// etcd's own client, for what netd never does (revoking, compacting).
async fn raw(etcd: &Etcd) -> etcd_client::Client {
    etcd_client::Client::connect([format!("127.0.0.1:{}", etcd.client_port)], None)
        .await
        .unwrap()
}

/// One host joined, with one network and one endpoint (`web`) on it.
async fn one_host_with_web(cfg: ClusterConfig) -> (Cluster, Member, NetworkRecord, EndpointRecord) {
    let cluster = Cluster::connect(cfg).await.unwrap();
    let member = join(&cluster, "host-a", 1).await;
    let net = cluster
        .create_network("n1", &spec("net", None))
        .await
        .unwrap();
    let web = member
        .create_endpoint(&endpoint(&net.id, "web"))
        .await
        .unwrap();
    (cluster, member, net, web)
}

fn service(id: &str, name: &str, network_id: &str, ports: &[(u16, Proto)]) -> ServiceRequest {
    ServiceRequest {
        id: id.into(),
        name: name.into(),
        network_id: network_id.into(),
        ports: ports
            .iter()
            .map(|&(host_port, proto)| PortBinding {
                host_ip: None,
                host_port,
                container_port: 80,
                proto,
            })
            .collect(),
    }
}

fn spec(name: &str, subnet: Option<&str>) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        driver: "overlay".into(),
        subnet: subnet.map(|s| s.parse().unwrap()),
        gateway: None,
        ip_range: None,
        internal: false,
        attachable: true,
        options: Default::default(),
        labels: Default::default(),
    }
}

fn endpoint(network_id: &str, name: &str) -> EndpointRequest {
    EndpointRequest {
        id: format!("ep-{name}"),
        network_id: network_id.into(),
        container_id: format!("c-{name}"),
        container_name: name.into(),
        ip: None,
        aliases: vec![format!("{name}-alias")],
        services: vec![],
    }
}

/// The refusal inside a cluster error, or a panic naming what it was.
fn rejected(e: ClusterError) -> EngineError {
    match e {
        ClusterError::Rejected(e) => e,
        other => panic!("expected a refusal, got: {other}"),
    }
}

/// Waits for `check` to return something, asking again every 50 ms.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "still waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next item of a watch that is not a connection report.
async fn next_changes(watch: &mut netd::cluster::Watch) -> (i64, Vec<Event>) {
    loop {
        let item = tokio::time::timeout(PATIENCE, watch.next())
            .await
            .expect("a change within the patience");
        match item {
            WatchItem::Changes { revision, events } => return (revision, events),
            WatchItem::Disconnected(_) | WatchItem::Reconnected => {}
            WatchItem::Compacted { revision } => panic!("unexpected compaction at {revision}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_racing_to_create_networks_get_distinct_names_subnets_and_vnis() {
    let etcd = Etcd::start();
    let (a, b) = two_clients(&etcd, TTL).await;
    // Each host creates 8 networks of its own and races the other for 4
    // shared names, all at once.
    let mut calls = Vec::new();
    for (host, client) in [("a", &a), ("b", &b)] {
        for i in 0..8 {
            calls.push((
                client.clone(),
                format!("{host}{i}"),
                format!("own-{host}-{i}"),
            ));
        }
        for i in 0..4 {
            calls.push((client.clone(), format!("{host}s{i}"), format!("shared-{i}")));
        }
    }
    let results = join_all(calls.into_iter().map(|(c, id, name)| async move {
        (
            name.clone(),
            c.create_network(&id, &spec(&name, None)).await,
        )
    }))
    .await;
    let mut created = Vec::new();
    for (name, result) in results {
        match result {
            Ok(net) => created.push(net),
            Err(e) => {
                assert!(name.starts_with("shared-"), "{name}: {e}");
                assert_eq!(
                    rejected(e).to_string(),
                    format!("network with name {name} already exists")
                );
            }
        }
    }
    assert_eq!(
        created.len(),
        16 + 4,
        "every own name and one of each shared name"
    );
    let names: HashSet<&str> = created.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names.len(), created.len());
    let vnis: BTreeSet<u32> = created.iter().map(|n| n.vni).collect();
    assert_eq!(
        vnis,
        (4096..4096 + 20).collect(),
        "the lowest VNIs, each once"
    );
    let subnets: BTreeSet<Ipv4Net> = created.iter().map(|n| n.ipam.subnet).collect();
    let expected: BTreeSet<Ipv4Net> = (0..20)
        .map(|i| Ipv4Net::new(Ipv4Addr::new(10, 0, i, 0), 24).unwrap())
        .collect();
    assert_eq!(subnets, expected, "the first /24s of 10.0.0.0/8, each once");
    for n in &created {
        assert_eq!(
            n.ipam.gateway,
            Ipv4Addr::from(u32::from(n.ipam.subnet.network()) + 1)
        );
    }

    // A user subnet must not overlap any of them, nor race into one.
    let e = a
        .create_network("u1", &spec("user", Some("10.0.0.0/16")))
        .await
        .unwrap_err();
    assert_eq!(
        rejected(e).to_string(),
        "invalid pool request: Pool overlaps with other one on this address space"
    );
    let racing = join_all([
        a.create_network("u2", &spec("user-a", Some("10.9.0.0/16"))),
        b.create_network("u3", &spec("user-b", Some("10.9.4.0/24"))),
    ])
    .await;
    assert_eq!(
        racing.iter().filter(|r| r.is_ok()).count(),
        1,
        "overlapping user subnets: one wins"
    );
    // The next automatic subnet skips what users took.
    let next = a.create_network("n", &spec("next", None)).await.unwrap();
    assert_eq!(next.ipam.subnet, "10.0.20.0/24".parse::<Ipv4Net>().unwrap());
    assert_eq!(a.load().await.unwrap().networks.len(), 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocations_on_two_hosts_never_share_an_address() {
    let etcd = Etcd::start();
    let (a, b) = two_clients(&etcd, TTL).await;
    let (ha, hb) = (join(&a, "host-a", 1).await, join(&b, "host-b", 2).await);
    let net = a
        .create_network("n1", &spec("net", Some("10.1.0.0/24")))
        .await
        .unwrap();
    // 30 containers per host and a service, all at once.
    let endpoints = (0..60).map(|i| {
        let member = if i % 2 == 0 { &ha } else { &hb };
        let req = endpoint(&net.id, &format!("c{i}"));
        async move { member.create_endpoint(&req).await.unwrap() }
    });
    let service = service("s1", "svc", &net.id, &[]);
    let service = b.create_service(&service);
    let (records, service) = tokio::join!(join_all(endpoints), service);
    let service = service.unwrap();
    let mut taken: Vec<Ipv4Addr> = records.iter().map(|r| r.ip).collect();
    taken.push(service.vip);
    let distinct: BTreeSet<Ipv4Addr> = taken.iter().copied().collect();
    assert_eq!(distinct.len(), 61, "no address handed out twice");
    let lowest: BTreeSet<Ipv4Addr> = (2..63).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
    assert_eq!(
        distinct, lowest,
        "the lowest free addresses, never the gateway"
    );
    for r in &records {
        assert_eq!(r.mac, netd::model::mac_for(r.ip));
        let host = if r.container_name[1..].parse::<u32>().unwrap() % 2 == 0 {
            "host-a"
        } else {
            "host-b"
        };
        assert_eq!(r.host, host);
    }
    assert_eq!(a.load().await.unwrap().endpoints.len(), 60);

    // A requested address: free is granted, taken or the gateway is not.
    let mut req = endpoint(&net.id, "static");
    req.ip = Some(Ipv4Addr::new(10, 1, 0, 200));
    assert_eq!(ha.create_endpoint(&req).await.unwrap().ip, req.ip.unwrap());
    for ip in [
        Ipv4Addr::new(10, 1, 0, 200),
        Ipv4Addr::new(10, 1, 0, 1),
        service.vip,
    ] {
        let mut req = endpoint(&net.id, "static2");
        req.ip = Some(ip);
        let e = rejected(hb.create_endpoint(&req).await.unwrap_err());
        assert_eq!(e.to_string(), format!("Address already in use: {ip}"));
    }
    // An address freed is the next one handed out.
    let freed = records[7].clone();
    hb.remove_endpoint(&net.id, &freed.id).await.unwrap();
    let again = ha
        .create_endpoint(&endpoint(&net.id, "again"))
        .await
        .unwrap();
    assert_eq!(again.ip, freed.ip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique_per_network_across_hosts() {
    let etcd = Etcd::start();
    let (a, b) = two_clients(&etcd, TTL).await;
    let (ha, hb) = (join(&a, "host-a", 1).await, join(&b, "host-b", 2).await);
    let n1 = a.create_network("n1", &spec("one", None)).await.unwrap();
    let n2 = b.create_network("n2", &spec("two", None)).await.unwrap();

    // Two hosts race for one container name on one network: one wins.
    let mut web_b = endpoint(&n1.id, "web");
    web_b.id = "ep-web-b".into();
    web_b.container_id = "c-web-b".into();
    let web_a = endpoint(&n1.id, "web");
    let (ra, rb) = tokio::join!(ha.create_endpoint(&web_a), hb.create_endpoint(&web_b));
    let (winner, loser) = match (ra, rb) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, rejected(l)),
        other => panic!("exactly one must win: {other:?}"),
    };
    assert_eq!(
        loser.to_string(),
        format!(
            "Conflict. The container name \"/web\" is already in use by container \"{}\". \
             You have to remove (or rename) that container to be able to reuse that name.",
            winner.container_id
        )
    );
    assert_eq!(loser.status(), 409);
    // The same name on another network is another name.
    hb.create_endpoint(&endpoint(&n2.id, "web")).await.unwrap();

    // Services: names unique in the cluster and shared with containers on
    // their network; published ports unique in the cluster.
    let svc =
        |id: &str, name: &str, net: &str, port: u16| service(id, name, net, &[(port, Proto::Tcp)]);
    let api = a
        .create_service(&svc("s1", "api", &n1.id, 8080))
        .await
        .unwrap();
    let e = rejected(
        b.create_service(&svc("s2", "api", &n2.id, 8081))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.to_string(), "service with name api already exists");
    let e = rejected(
        b.create_service(&svc("s3", "web", &n1.id, 8082))
            .await
            .unwrap_err(),
    );
    assert!(
        e.to_string()
            .contains("The container name \"/web\" is already in use"),
        "{e}"
    );
    let e = rejected(
        b.create_service(&svc("s4", "other", &n2.id, 8080))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.to_string(),
        "port '8080' is already in use by service 's1' as an ingress port"
    );
    let e = rejected(
        hb.create_endpoint(&endpoint(&n1.id, "api"))
            .await
            .unwrap_err(),
    );
    assert!(
        e.to_string()
            .contains(&format!("in use by service \"{}\"", api.id)),
        "{e}"
    );
    // UDP 8080 is another port.
    let mut udp = svc("s5", "dns", &n2.id, 8080);
    udp.ports[0].proto = Proto::Udp;
    b.create_service(&udp).await.unwrap();
    // Removing frees the name, the port and the VIP.
    a.remove_service("s1").await.unwrap();
    let again = b
        .create_service(&svc("s6", "api", &n1.id, 8080))
        .await
        .unwrap();
    assert_eq!(again.vip, api.vip);

    // Names and ids cannot address other keys.
    let e = rejected(
        ha.create_endpoint(&endpoint(&n1.id, "../x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_takes_the_hosts_endpoints_with_it() {
    let etcd = Etcd::start();
    let (a, b) = two_clients(&etcd, SHORT_TTL).await;
    let (ha, hb) = (join(&a, "host-a", 1).await, join(&b, "host-b", 2).await);
    let net = a.create_network("n1", &spec("net", None)).await.unwrap();
    let mut gone = Vec::new();
    for i in 0..3 {
        gone.push(
            ha.create_endpoint(&endpoint(&net.id, &format!("a{i}")))
                .await
                .unwrap(),
        );
    }
    let stays = hb.create_endpoint(&endpoint(&net.id, "b0")).await.unwrap();
    // Renewals keep both alive past several TTLs.
    let mut status = hb.lease();
    eventually("renewals beyond two TTLs", || {
        let renewals = status.borrow_and_update().renewals;
        async move { (renewals >= 7).then_some(()) }
    })
    .await;
    let mut watch = b.watch(b.load().await.unwrap().revision);

    drop(ha); // host-a stops renewing, as if it died.
    let mut deleted = HashSet::new();
    while deleted.len() < 4 {
        let (_, events) = next_changes(&mut watch).await;
        for e in events {
            match e {
                Event::Delete(id) => {
                    deleted.insert(id);
                }
                other => panic!("only deletions expected, got {other:?}"),
            }
        }
    }
    let mut expected: HashSet<RecordId> = gone
        .iter()
        .map(|e| RecordId::Endpoint {
            network_id: net.id.clone(),
            id: e.id.clone(),
        })
        .collect();
    expected.insert(RecordId::Host("host-a".into()));
    assert_eq!(deleted, expected);
    let state = b.load().await.unwrap();
    assert_eq!(
        state.endpoints.values().cloned().collect::<Vec<_>>(),
        vec![stays]
    );
    assert_eq!(state.hosts.keys().collect::<Vec<_>>(), ["host-b"]);
    assert_eq!(hb.lease().borrow().losses, 0);

    // host-b saw it go and noted when; `cluster ls` shows both.
    let hosts = eventually("the departure noted", || {
        let b = b.clone();
        async move {
            let hosts = b.hosts().await.unwrap();
            hosts.iter().any(|h| h.last_seen.is_some()).then_some(hosts)
        }
    })
    .await;
    assert_eq!(hosts.len(), 2);
    assert_eq!(
        (hosts[0].id.as_str(), hosts[0].up, hosts[0].endpoints),
        ("host-a", false, 0)
    );
    assert_eq!(hosts[0].addr, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        (hosts[1].id.as_str(), hosts[1].up, hosts[1].endpoints),
        ("host-b", true, 1)
    );
    assert_eq!(hosts[1].last_seen, None);
    // Its addresses and names are free again.
    let reused = hb.create_endpoint(&endpoint(&net.id, "a0")).await.unwrap();
    assert_eq!(reused.ip, gone[0].ip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_replaced_and_a_restart_takes_the_old_one_over() {
    let etcd = Etcd::start();
    let (cluster, member, net, ep) = one_host_with_web(config(&etcd, SHORT_TTL)).await;
    let first = member.lease().borrow().lease;

    // A restart within the TTL takes the lease over: nothing goes away.
    drop(member);
    let member = join(&cluster, "host-a", 1).await;
    assert_eq!(member.lease().borrow().lease, first);
    member.restore_endpoint(&ep).await.unwrap();
    assert_eq!(cluster.load().await.unwrap().endpoints.len(), 1);

    // The lease lost (revoked here; expiry does the same): the member
    // grants another and puts its host record back by itself ...
    let mut raw = raw(&etcd).await;
    raw.lease_revoke(first).await.unwrap();
    let mut status = member.lease();
    let replaced = eventually("a new lease", || {
        let s = status.borrow_and_update().clone();
        async move { (s.lease != first && s.state == LeaseState::Alive).then_some(s) }
    })
    .await;
    assert_eq!(replaced.losses, 1);
    let state = eventually("the host record back", || {
        let c = cluster.clone();
        async move { Some(c.load().await.unwrap()).filter(|s| s.hosts.contains_key("host-a")) }
    })
    .await;
    assert!(state.endpoints.is_empty(), "endpoints went with the lease");
    // ... and the engine restores its endpoints on the new one.
    member.restore_endpoint(&ep).await.unwrap();
    let state = cluster.load().await.unwrap();
    assert_eq!(state.endpoints.values().collect::<Vec<_>>(), vec![&ep]);
    let kv = raw
        .get(format!("/netd/state/endpoints/{}/{}", net.id, ep.id), None)
        .await
        .unwrap();
    assert_eq!(kv.kvs()[0].lease(), replaced.lease);

    // Restoring fails when someone else took the address meanwhile.
    raw.lease_revoke(replaced.lease).await.unwrap();
    eventually("another new lease", || {
        let s = member.lease().borrow().clone();
        async move { (s.lease != replaced.lease && s.state == LeaseState::Alive).then_some(()) }
    })
    .await;
    let other = connect(&etcd, SHORT_TTL).await;
    let intruder = join(&other, "host-b", 2).await;
    let took = intruder
        .create_endpoint(&endpoint(&net.id, "thief"))
        .await
        .unwrap();
    assert_eq!(took.ip, ep.ip);
    let e = rejected(member.restore_endpoint(&ep).await.unwrap_err());
    assert!(
        e.to_string()
            .starts_with(&format!("Address already in use: {}", ep.ip)),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_delivers_every_change_in_order_and_resumes() {
    let etcd = Etcd::start();
    let cluster = connect(&etcd, TTL).await;
    let member = join(&cluster, "host-a", 1).await;
    let start = cluster.load().await.unwrap();
    assert_eq!(start.hosts.len(), 1);
    let mut watch = cluster.watch(start.revision);

    let net = cluster
        .create_network("n1", &spec("net", None))
        .await
        .unwrap();
    let mut eps: Vec<EndpointRecord> = Vec::new();
    for i in 0..5 {
        eps.push(
            member
                .create_endpoint(&endpoint(&net.id, &format!("c{i}")))
                .await
                .unwrap(),
        );
    }
    let svc = cluster
        .create_service(&service("s1", "svc", &net.id, &[]))
        .await
        .unwrap();
    member.remove_endpoint(&net.id, &eps[2].id).await.unwrap();
    cluster.remove_service("s1").await.unwrap();

    let mut expected = vec![Event::Put(Record::Network(net.clone()))];
    expected.extend(eps.iter().map(|e| Event::Put(Record::Endpoint(e.clone()))));
    expected.push(Event::Put(Record::Service(svc)));
    expected.push(Event::Delete(RecordId::Endpoint {
        network_id: net.id.clone(),
        id: eps[2].id.clone(),
    }));
    expected.push(Event::Delete(RecordId::Service("s1".into())));
    let mut mirror: ClusterState = start.clone();
    let mut seen = Vec::new();
    let mut revisions = Vec::new();
    while seen.len() < expected.len() {
        let (revision, events) = next_changes(&mut watch).await;
        assert_eq!(
            events.len(),
            1,
            "one record per transaction, claims are not watched"
        );
        mirror.apply(revision, &events);
        revisions.push(revision);
        seen.extend(events);
    }
    assert_eq!(seen, expected);
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    assert_eq!(watch.revision(), *revisions.last().unwrap());
    assert_eq!(
        mirror,
        cluster.load().await.unwrap(),
        "the events rebuild the state"
    );

    // A new watch from a revision in the middle gets exactly what followed.
    let mut resumed = cluster.watch(revisions[5]);
    for (revision, event) in revisions[6..].iter().zip(&expected[6..]) {
        assert_eq!(
            next_changes(&mut resumed).await,
            (*revision, vec![event.clone()])
        );
    }

    // History compacted past a watch's revision: it says so.
    let mut raw = raw(&etcd).await;
    raw.compact(*revisions.last().unwrap(), None).await.unwrap();
    let mut stale = cluster.watch(start.revision);
    match tokio::time::timeout(PATIENCE, stale.next()).await.unwrap() {
        WatchItem::Compacted { revision } => assert_eq!(revision, *revisions.last().unwrap()),
        other => panic!("expected a compaction, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_with_endpoints_or_services_is_not_removed() {
    let etcd = Etcd::start();
    let (a, b) = two_clients(&etcd, TTL).await;
    let hb = join(&b, "host-b", 2).await;
    let net = a.create_network("n1", &spec("busy", None)).await.unwrap();
    let ep = hb.create_endpoint(&endpoint(&net.id, "web")).await.unwrap();
    let e = rejected(a.remove_network(&net.id).await.unwrap_err());
    assert_eq!(
        e.to_string(),
        "error while removing network: network busy has active endpoints"
    );
    assert_eq!(e.status(), 403);
    hb.remove_endpoint(&net.id, &ep.id).await.unwrap();
    a.create_service(&service("s1", "svc", &net.id, &[]))
        .await
        .unwrap();
    let e = rejected(a.remove_network(&net.id).await.unwrap_err());
    assert_eq!(
        e.to_string(),
        "error while removing network: network busy is used by service svc"
    );
    a.remove_service("s1").await.unwrap();
    a.remove_network(&net.id).await.unwrap();
    let e = rejected(a.remove_network(&net.id).await.unwrap_err());
    assert_eq!(e.status(), 404);
    // An endpoint on a network that is gone is refused.
    let e = rejected(
        hb.create_endpoint(&endpoint(&net.id, "late"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.to_string(), format!("network {} not found", net.id));
    // Its name, subnet and VNI are free again.
    let again = a.create_network("n2", &spec("busy", None)).await.unwrap();
    assert_eq!((again.ipam.subnet, again.vni), (net.ipam.subnet, net.vni));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_etcd_is_down_and_work_again_after() {
    let mut etcd = Etcd::start();
    // A shorter timeout than the default, to keep the outage short.
    let mut cfg = config(&etcd, TTL);
    cfg.timeout = Duration::from_secs(1);
    let (cluster, member, net, ep) = one_host_with_web(cfg.clone()).await;
    let mut watch = cluster.watch(cluster.load().await.unwrap().revision);
    let before = cluster.load().await.unwrap().revision;

    etcd.stop();
    // Every kind of call answers (the timeout is 1 s) with a message that
    // says what is wrong and where.
    let store = etcd.url();
    let check = |e: ClusterError| {
        assert!(matches!(e, ClusterError::Unavailable { .. }), "{e}");
        let m = e.to_string();
        assert!(m.contains(&store) && m.contains("cannot be reached"), "{m}");
    };
    check(
        cluster
            .create_network("n2", &spec("other", None))
            .await
            .unwrap_err(),
    );
    check(
        member
            .create_endpoint(&endpoint(&net.id, "db"))
            .await
            .unwrap_err(),
    );
    check(cluster.load().await.unwrap_err());
    check(cluster.hosts().await.unwrap_err());
    // Connecting is lazy: a daemon starts while etcd is down.
    let late = Cluster::connect(cfg).await.unwrap();
    check(late.load().await.unwrap_err());
    check(
        cluster
            .join(HostSpec {
                id: "host-b".into(),
                addr: Ipv4Addr::LOCALHOST,
            })
            .await
            .unwrap_err(),
    );
    let engine_error: EngineError = cluster.load().await.unwrap_err().into();
    assert_eq!(engine_error.status(), 500);
    match tokio::time::timeout(PATIENCE, watch.next()).await.unwrap() {
        WatchItem::Disconnected(e) => check(e),
        other => panic!("expected a disconnection, got {other:?}"),
    }
    let mut status = member.lease();
    eventually("the lease unreachable", || {
        let state = status.borrow_and_update().state;
        async move { (state == LeaseState::Unreachable).then_some(()) }
    })
    .await;

    etcd.restart();
    // The client reconnects by itself; the lease survived (etcd extends
    // leases when it starts), and so did the endpoint.
    eventually("etcd answering again", || {
        let c = cluster.clone();
        async move { c.load().await.ok() }
    })
    .await;
    let other = cluster
        .create_network("n2", &spec("other", None))
        .await
        .unwrap();
    eventually("the lease alive again", || {
        let state = status.borrow_and_update().state;
        async move { (state == LeaseState::Alive).then_some(()) }
    })
    .await;
    assert_eq!(member.lease().borrow().losses, 0);
    let state = cluster.load().await.unwrap();
    assert_eq!(state.endpoints.values().collect::<Vec<_>>(), vec![&ep]);
    // The watch resumed where it stopped: the first change it delivers is
    // the one made after the restart.
    let mut reconnected = false;
    let (revision, events) = loop {
        match tokio::time::timeout(PATIENCE, watch.next()).await.unwrap() {
            WatchItem::Reconnected => reconnected = true,
            WatchItem::Changes { revision, events } => break (revision, events),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(reconnected);
    assert!(revision > before);
    assert_eq!(events, vec![Event::Put(Record::Network(other))]);
    member
        .create_endpoint(&endpoint(&net.id, "db"))
        .await
        .unwrap();
}
