//! netd's CNI plugin driven per the spec, as the reference plugins test
//! themselves: the built `netd-cni` binary executed with the `CNI_*`
//! environment and a configuration on standard input, against a real
//! daemon, for every command in every supported version, and the kernel
//! checked after each step. The "runtime's" namespaces are made here with
//! `ip netns add` and deleted on drop. Subnets 10.181-10.189 are this
//! file's.

mod common;

use std::process::{Command, Output, Stdio};

use common::{Daemon, ip_json, ip_json_in, stdout};
use serde_json::{Value, json};

const VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// A namespace playing a runtime's container, deleted on drop (the
/// daemon never deletes it).
struct RuntimeNetns(String);

impl RuntimeNetns {
    fn new(d: &Daemon, tag: &str) -> RuntimeNetns {
        // Not `{prefix}-...`: that would be the daemon's own.
        let name = format!("c{}{tag}", d.prefix);
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        let ns = RuntimeNetns(name);
        // As runtimes do before calling plugins.
        assert!(ns.exec(&["ip", "link", "set", "lo", "up"]).status.success());
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Writes the container's resolv.conf from a result's `dns`, as a
    /// runtime does (`ip netns exec` bind-mounts it).
    fn write_resolv_conf(&self, dns: &Value) {
        let strings = |key: &str| -> Vec<String> {
            dns[key]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        let mut text: String = strings("nameservers")
            .iter()
            .map(|n| format!("nameserver {n}\n"))
            .collect();
        for (key, word) in [("search", "search"), ("options", "options")] {
            if !strings(key).is_empty() {
                text.push_str(&format!("{word} {}\n", strings(key).join(" ")));
            }
        }
        let dir = self.resolv_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), text).unwrap();
    }

    fn resolv_dir(&self) -> std::path::PathBuf {
        std::path::Path::new("/etc/netns").join(&self.0)
    }

    fn delete(&self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

impl Drop for RuntimeNetns {
    fn drop(&mut self) {
        common::kill_netns_processes(&self.0);
        self.delete();
        let _ = std::fs::remove_dir_all(self.resolv_dir());
    }
}

/// One attachment as a runtime drives it.
struct Call<'a> {
    container_id: &'a str,
    ifname: &'a str,
    netns: Option<&'a str>,
    args: &'a str,
}

impl<'a> Call<'a> {
    /// STATUS, GC and VERSION: no attachment.
    const NONE: Call<'static> = Call {
        container_id: "",
        ifname: "",
        netns: None,
        args: "",
    };

    /// Attachment `(id, eth0)` in the namespace at `netns`.
    fn eth0(container_id: &'a str, netns: &'a str) -> Call<'a> {
        Call {
            container_id,
            ifname: "eth0",
            netns: Some(netns),
            args: "",
        }
    }
}

/// What the plugin answered.
#[derive(Debug)]
struct Answer {
    ok: bool,
    out: Value,
    stderr: String,
}

impl Answer {
    /// The error code of a failure.
    fn code(&self) -> u64 {
        assert!(!self.ok, "expected a failure: {}", self.out);
        self.out["code"].as_u64().expect("an error object")
    }

    fn ok(self) -> Value {
        assert!(self.ok, "plugin failed: {} {}", self.out, self.stderr);
        self.out
    }
}

fn plugin(command: &str, call: &Call, conf: &Value) -> Answer {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netd-cni"));
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_PATH", "/nonexistent")
        .env("CNI_ARGS", call.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = call.netns {
        cmd.env("CNI_NETNS", ns);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    Answer {
        ok: out.status.success(),
        out: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn conf(d: &Daemon, version: &str, name: &str, network: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": name,
        "type": "netd",
        "network": network,
        "socket": d.socket(),
    })
}

/// `conf` as the runtime passes it to CHECK and DEL: with the ADD's result.
fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

fn netd_names(d: &Daemon) -> Vec<String> {
    d.containers()
        .iter()
        .map(|c| c["Name"].as_str().unwrap().to_string())
        .collect()
}

/// The container-side interface of a result.
fn sandbox_interface(result: &Value) -> (usize, &Value) {
    result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, i)| i.get("sandbox").is_some())
        .expect("an interface in the sandbox")
}

#[test]
fn every_command_in_every_version() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.181.0.0/24", "n"]);
    d.ok(&[
        "container",
        "run",
        "--network",
        "n",
        "peer",
        "--",
        "sleep",
        "1000",
    ]);
    for (i, version) in VERSIONS.iter().enumerate() {
        let ns = RuntimeNetns::new(&d, &format!("v{i}"));
        let path = ns.path();
        let id = format!("runtime-{i}");
        let call = Call {
            container_id: &id,
            ifname: "net1",
            netns: Some(&path),
            args: "IgnoreUnknown=1;K8S_POD_NAME=web",
        };
        let conf = conf(&d, version, "podnet", "n");

        let result = plugin("ADD", &call, &conf).ok();
        assert_eq!(result["cniVersion"], *version);
        let (index, iface) = sandbox_interface(&result);
        assert_eq!(iface["name"], "net1");
        assert_eq!(iface["sandbox"], path.as_str());
        let ip = &result["ips"][0];
        assert_eq!(ip["interface"], index);
        assert_eq!(ip["gateway"], "10.181.0.1");
        assert_eq!(ip.get("version").is_some(), *version == "0.4.0", "{ip}");
        let address = ip["address"].as_str().unwrap();
        assert!(address.starts_with("10.181.0.") && address.ends_with("/24"));
        assert_eq!(
            result["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": "10.181.0.1"}])
        );
        assert_eq!(result["dns"]["nameservers"], json!(["127.0.0.11"]));
        // The host side exists and is netd's.
        let host = result["interfaces"][0]["name"].as_str().unwrap();
        assert!(host.starts_with(&d.prefix), "{host}");
        assert_eq!(ip_json(&["link", "show", host])[0]["ifname"], host);
        // The kernel agrees with the result.
        let link = &ip_json_in(&ns.0, &["-4", "addr", "show", "dev", "net1"])[0];
        let mac = &ip_json_in(&ns.0, &["link", "show", "net1"])[0]["address"];
        assert_eq!(*mac, iface["mac"]);
        let local = format!(
            "{}/{}",
            link["addr_info"][0]["local"].as_str().unwrap(),
            link["addr_info"][0]["prefixlen"]
        );
        assert_eq!(local, address);
        // A netd endpoint: listed, reached, and named both ways.
        let name = format!("cni-{}", &id[..id.len().min(12)]);
        assert!(
            netd_names(&d).iter().any(|n| n.starts_with(&name)),
            "{:?}",
            netd_names(&d)
        );
        ns.write_resolv_conf(&result["dns"]);
        let ping = ns.exec(&["ping", "-c1", "-W2", "peer"]);
        assert!(
            ping.status.success(),
            "the runtime's container resolves and reaches a netd container: {ping:?}"
        );
        let peer_sees = d.ok(&["container", "exec", "peer", "--", "getent", "hosts", "web"]);
        assert!(
            peer_sees.starts_with(address.split('/').next().unwrap()),
            "{peer_sees}"
        );

        let checked = with_prev(&conf, &result);
        assert_eq!(plugin("CHECK", &call, &checked).ok(), Value::Null);
        // A second ADD of the same attachment is an error.
        let again = plugin("ADD", &call, &conf);
        assert_eq!(again.code(), 100, "{:?}", again);
        if *version == "1.1.0" {
            assert_eq!(plugin("STATUS", &call, &conf).ok(), Value::Null);
        } else {
            assert_eq!(plugin("STATUS", &call, &conf).code(), 1);
        }
        // Something changed behind netd's back: CHECK says so.
        let flushed = ns.exec(&["ip", "addr", "flush", "dev", "net1"]);
        assert!(flushed.status.success());
        assert_eq!(plugin("CHECK", &call, &checked).code(), 101);

        assert_eq!(plugin("DEL", &call, &checked).ok(), Value::Null);
        assert_eq!(plugin("DEL", &call, &checked).ok(), Value::Null, "again");
        assert_eq!(
            plugin("DEL", &call, &conf).ok(),
            Value::Null,
            "no prevResult"
        );
        assert_eq!(plugin("CHECK", &call, &checked).code(), 3);
        assert_eq!(netd_names(&d), ["peer"]);
        let links = ip_json_in(&ns.0, &["link", "show"]);
        assert_eq!(
            links.as_array().unwrap().len(),
            1,
            "only lo is left: {links}"
        );
    }
    let version = plugin("VERSION", &Call::NONE, &json!({"cniVersion": "1.1.0"})).ok();
    assert_eq!(version["supportedVersions"], json!(VERSIONS));
}

#[test]
fn del_after_a_daemon_restart_and_after_the_namespace_went() {
    let mut d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.182.0.0/24", "n"]);
    let conf = conf(&d, "1.0.0", "podnet", "n");
    let ns = RuntimeNetns::new(&d, "r");
    let path = ns.path();
    let call = Call::eth0("restarted", &path);
    let result = plugin("ADD", &call, &conf).ok();
    d.restart();
    assert_eq!(
        plugin("CHECK", &call, &with_prev(&conf, &result)).ok(),
        Value::Null
    );
    assert_eq!(
        plugin("DEL", &call, &with_prev(&conf, &result)).ok(),
        Value::Null
    );
    assert!(netd_names(&d).is_empty());

    // The runtime deleted the namespace before DEL (a crashed runtime).
    let gone = RuntimeNetns::new(&d, "g");
    let gone_path = gone.path();
    let call = Call::eth0("gone", &gone_path);
    let first = plugin("ADD", &call, &conf).ok();
    gone.delete();
    assert_eq!(
        plugin("CHECK", &call, &with_prev(&conf, &first)).code(),
        101
    );
    let call = Call {
        netns: None,
        ..call
    };
    assert_eq!(plugin("DEL", &call, &conf).ok(), Value::Null);
    assert!(netd_names(&d).is_empty());
    let veth = format!("{}v", d.prefix);
    assert!(
        !d.own_links().iter().any(|l| l.starts_with(&veth)),
        "a veth is left: {:?}",
        d.own_links()
    );
    // Its address is free again: the next attachment gets it.
    let next = RuntimeNetns::new(&d, "n");
    let next_path = next.path();
    let again = plugin("ADD", &Call::eth0("next", &next_path), &conf).ok();
    assert_eq!(again["ips"][0]["address"], first["ips"][0]["address"]);

    // DEL while the daemon is down succeeds (best effort); STATUS says it
    // cannot serve ADD.
    d.stop();
    let call = Call::eth0("next", &next_path);
    assert_eq!(plugin("DEL", &call, &conf).ok(), Value::Null);
    let status = plugin("STATUS", &call, &with_version(&conf, "1.1.0"));
    assert_eq!(status.code(), 50);
    assert_eq!(plugin("ADD", &call, &conf).code(), 50);
}

fn with_version(conf: &Value, version: &str) -> Value {
    let mut c = conf.clone();
    c["cniVersion"] = version.into();
    c
}

#[test]
fn capabilities_publish_address_and_mac_through_netd() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.183.0.0/24", "n"]);
    d.ok(&["network", "create", "--subnet", "10.184.0.0/24", "other"]);
    d.ok(&["container", "create", "--network", "other", "stranger"]);
    let port = common::free_port();
    let ns = RuntimeNetns::new(&d, "p");
    let path = ns.path();
    let call = Call::eth0("caps", &path);
    let mut conf = conf(&d, "1.1.0", "podnet", "n");
    conf["runtimeConfig"] = json!({
        "portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}],
        "ips": ["10.183.0.77/24"],
        "mac": "0a:58:00:00:00:77",
        "aliases": ["db"],
    });
    let result = plugin("ADD", &call, &conf).ok();
    assert_eq!(result["ips"][0]["address"], "10.183.0.77/24");
    assert_eq!(sandbox_interface(&result).1["mac"], "0a:58:00:00:00:77");
    let link = &ip_json_in(&ns.0, &["link", "show", "eth0"])[0];
    assert_eq!(link["address"], "0a:58:00:00:00:77");
    // A MAC is unique on its network, and netd's derived range is netd's.
    let other = RuntimeNetns::new(&d, "m");
    let other_path = other.path();
    for (mac, says) in [
        ("0a:58:00:00:00:77", "already in use"),
        ("02:42:0a:b7:00:09", "netd derives"),
        ("03:00:00:00:00:01", "not a unicast address"),
    ] {
        let mut taken = conf.clone();
        taken["runtimeConfig"] = json!({"mac": mac});
        let refused = plugin("ADD", &Call::eth0("dup", &other_path), &taken);
        assert_eq!(refused.code(), 100, "{mac}");
        assert!(
            refused.out["details"].as_str().unwrap().contains(says),
            "{mac}: {}",
            refused.out
        );
    }

    // The published port answers from outside, through netd's uplink.
    let mut server = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .args([
            "socat",
            "TCP-LISTEN:80,fork,reuseaddr",
            "SYSTEM:echo hello-from-cni",
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&ns, 80);
    let target = format!("TCP:{}:{port},connect-timeout=3", d.uplink_addr);
    let answer = d.outside(&["socat", "-T3", "-", &target]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(stdout(&answer).trim(), "hello-from-cni", "{answer:?}");
    let name = cni_name(&d, "caps");
    let inspect = d.json(&["container", "inspect", &name]);
    assert_eq!(
        inspect[0]["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );

    // Isolation and anti-spoofing are netd's: another network's container
    // cannot reach it, and a spoofed source is dropped and counted.
    let stranger = d.netns("stranger");
    let cross = Command::new("ip")
        .args([
            "netns",
            "exec",
            &stranger,
            "ping",
            "-c1",
            "-W1",
            "10.183.0.77",
        ])
        .output()
        .unwrap();
    assert!(
        !cross.status.success(),
        "another network reached the CNI container"
    );
    let spoofed = d.drops("spoofed_source");
    assert!(
        ns.exec(&["ip", "addr", "add", "10.183.0.99/24", "dev", "eth0"])
            .status
            .success()
    );
    let through = ns.exec(&["ping", "-c1", "-W1", "-I", "10.183.0.99", "10.183.0.1"]);
    assert!(!through.status.success(), "a spoofed source got through");
    assert!(d.drops("spoofed_source") > spoofed, "spoofing not counted");
    // Its traffic is counted under its name.
    let stats = d.json(&["stats", "--format", "json"]).to_string();
    assert!(stats.contains(&name), "netd stats lists it: {stats}");
    assert!(d.metrics().contains(&format!("container=\"{name}\"")));
    assert_eq!(
        plugin("DEL", &call, &with_prev(&conf, &result)).ok(),
        Value::Null
    );
}

/// The netd container of attachment `(id, eth0)`.
fn cni_name(d: &Daemon, id: &str) -> String {
    netd_names(d)
        .into_iter()
        .find(|n| n.starts_with(&format!("cni-{id}-")))
        .unwrap_or_else(|| panic!("no container for {id}"))
}

fn wait_listening(ns: &RuntimeNetns, port: u16) {
    for _ in 0..100 {
        let out = ns.exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
        if !stdout(&out).trim().is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on {port} in {}", ns.0);
}

#[test]
fn gc_removes_only_stale_attachments_of_its_configuration() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.185.0.0/24", "n"]);
    d.ok(&["container", "create", "--network", "n", "users"]);
    let podnet = conf(&d, "1.1.0", "podnet", "n");
    let othernet = conf(&d, "1.1.0", "othernet", "n");
    let namespaces: Vec<RuntimeNetns> = (0..3)
        .map(|i| RuntimeNetns::new(&d, &format!("g{i}")))
        .collect();
    let paths: Vec<String> = namespaces.iter().map(RuntimeNetns::path).collect();
    for (id, path, conf) in [
        ("keep", &paths[0], &podnet),
        ("stale", &paths[1], &podnet),
        ("elsewhere", &paths[2], &othernet),
    ] {
        let call = Call::eth0(id, path);
        plugin("ADD", &call, conf).ok();
    }
    let mut gc = podnet.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let none = Call::NONE;
    assert_eq!(plugin("GC", &none, &gc).ok(), Value::Null);
    let mut left = netd_names(&d);
    left.sort();
    let mut want = vec![
        cni_name(&d, "elsewhere"),
        cni_name(&d, "keep"),
        "users".to_string(),
    ];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(plugin("GC", &none, &with_version(&gc, "1.0.0")).code(), 1);
}
