//! netd's container (network sandbox) endpoints, in the Docker style:
//! `GET /containers/json`, `GET /containers/{id}/json`,
//! `POST /containers/create?name=NAME`, `DELETE /containers/{id}?force=1`.
//! The JSON mirrors `docker container inspect` where the concepts overlap.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;

use super::errors::{ApiError, ApiResult};
use super::networks::parse_ipv4;
use super::wire::{
    ContainerConfig, ContainerCreateRequest, ContainerCreateResponse, ContainerJson,
    ContainerState, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkSettings,
    PortBindingJson, ResolvConfJson,
};
use super::{AppState, json_response, query_bool};
use crate::dns::{ContainerFiles, ResolvConf};
use crate::drivers::Attachment;
use crate::engine::Snapshot;
use crate::engine::spec::{ContainerSpec, EndpointSpec, NetworkMode, PortSpec};
use crate::model::{Container, NameOf, NetMode, PortBinding, check_name, format_mac, parse_mac};
use crate::netlink::check_ifname;

type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

fn query(q: QueryMap) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `GET /containers/json`: every container, in name order, each in the
/// same shape as inspect.
pub async fn list(State(app): State<AppState>) -> ApiResult {
    let snap = app.engine.snapshot();
    let mut all: Vec<&Container> = snap.state.containers.values().map(|c| &**c).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let files = ContainerFiles::now();
    let out: Vec<ContainerJson> = all
        .into_iter()
        .map(|c| container_json(c, &snap, &files))
        .collect();
    Ok(json_response(StatusCode::OK, &out))
}

/// `GET /containers/{id}/json` (full id, name, or unique id prefix).
pub async fn inspect(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let snap = app.engine.snapshot();
    let c = snap.container(&id)?;
    let files = ContainerFiles::now();
    Ok(json_response(
        StatusCode::OK,
        &container_json(c, &snap, &files),
    ))
}

/// `POST /containers/create?name=NAME` → 201 `{"Id": ..., "Warnings": []}`.
/// An empty body means "all defaults" (default bridge, no command).
pub async fn create(State(app): State<AppState>, q: QueryMap, body: Bytes) -> ApiResult {
    let q = query(q)?;
    let req: ContainerCreateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ContainerCreateRequest::default()
    } else {
        super::parse_body(&body)?
    };
    let spec = container_spec(q.get("name").map(String::as_str), req)?;
    let c = app.engine.create_container(spec).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &ContainerCreateResponse {
            id: c.id,
            warnings: Vec::new(),
        },
    ))
}

/// `DELETE /containers/{id}[?force=1]` → 204.
pub async fn remove(State(app): State<AppState>, Path(id): Path<String>, q: QueryMap) -> ApiResult {
    remove_key(&app, &id, q).await
}

/// `DELETE /containers/json` and `/containers/create`: containers with
/// those names (the static routes would otherwise shadow them).
pub async fn remove_literal(State(app): State<AppState>, uri: Uri, q: QueryMap) -> ApiResult {
    let key = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
    remove_key(&app, &key, q).await
}

async fn remove_key(app: &AppState, key: &str, q: QueryMap) -> ApiResult {
    let q = query(q)?;
    let force = query_bool(q.get("force").map(String::as_str));
    app.engine.remove_container(key, force).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Validates a create request (name from the query, else the body) into
/// the engine's spec, with Docker's messages where Docker has them.
pub fn container_spec(
    query_name: Option<&str>,
    req: ContainerCreateRequest,
) -> Result<ContainerSpec, ApiError> {
    let name = query_name
        .filter(|n| !n.is_empty())
        .unwrap_or(&req.name)
        .to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "a container name is required (netd does not generate names): use ?name=NAME",
        ));
    }
    check_name(NameOf::Container, &name).map_err(ApiError::bad_request)?;
    let mode = req
        .network_mode
        .clone()
        .or_else(|| {
            req.host_config
                .as_ref()
                .and_then(|h| h.network_mode.clone())
        })
        .unwrap_or_default();
    let network = NetworkMode::parse(&mode);
    if network == NetworkMode::Container(String::new()) {
        return Err(ApiError::bad_request(
            "invalid network mode: container: needs a container name or id (container:NAME)",
        ));
    }
    let ip = parse_ipv4(req.ip_address.as_deref().unwrap_or(""))?;
    let user_defined = matches!(network, NetworkMode::Network(_));
    if ip.is_some() && !user_defined {
        return Err(ApiError::bad_request(
            "user specified IP address is supported on user defined networks only",
        ));
    }
    if !req.aliases.is_empty() && !user_defined {
        return Err(ApiError::bad_request(
            "network-scoped alias is supported only for containers in user defined networks",
        ));
    }
    let cmd = req.cmd.filter(|c| !c.is_empty());
    let netns = match req.netns.as_deref() {
        None | Some("") => None,
        Some(p) if p.starts_with('/') && !p.contains('\0') => Some(PathBuf::from(p)),
        Some(p) => {
            return Err(ApiError::bad_request(format!(
                "invalid NetNs {p:?}: the path of a network namespace must be absolute"
            )));
        }
    };
    let ifname = req
        .ifname
        .map(|name| {
            check_ifname(&name)
                .map(|()| name)
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    let mac = match req.mac_address.as_deref() {
        None | Some("") => None,
        Some(m) => Some(
            parse_mac(m)
                .ok_or_else(|| ApiError::bad_request(format!("invalid MAC address: {m}")))?,
        ),
    };
    let ports = req
        .ports
        .iter()
        .map(|p| PortSpec::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    let endpoint = EndpointSpec {
        ip,
        aliases: req.aliases,
        ifname,
        mac,
    };
    endpoint.check().map_err(ApiError::bad_request)?;
    Ok(ContainerSpec {
        name,
        network,
        netns,
        endpoint,
        ports,
        cmd,
        services: req.services.into_iter().filter(|s| !s.is_empty()).collect(),
        labels: req.labels,
    })
}

/// The JSON of one container. The snapshot supplies what the record alone
/// does not know: the namespace path, whether the process still runs, and
/// where its output goes; `files`, its DNS settings.
pub fn container_json(c: &Container, snap: &Snapshot, files: &ContainerFiles) -> ContainerJson {
    let state = &snap.state;
    let sandbox_key = snap
        .sandbox_path(c)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let running_pid = snap.running_pid(c);
    let log_path = c.process.as_ref().map(|_| snap.log_path(c));
    let status = snap.status(c);
    let mut networks = std::collections::BTreeMap::new();
    for e in &c.endpoints {
        let name = state
            .networks
            .get(&e.network_id)
            .map_or_else(|| e.network_id.clone(), |n| n.name.clone());
        let host_ifname = state
            .networks
            .get(&e.network_id)
            .and_then(|n| snap.drivers.of(n).ok())
            .and_then(|d| d.endpoint_link(e))
            .unwrap_or_default();
        networks.insert(
            name,
            EndpointSettings {
                ipam_config: e.static_ip.then(|| EndpointIpamConfig {
                    ipv4_address: e.ip.to_string(),
                    ipv6_address: String::new(),
                }),
                aliases: e.aliases.clone(),
                mac_address: format_mac(&e.mac),
                network_id: e.network_id.clone(),
                endpoint_id: e.id.clone(),
                gateway: e.gateway.to_string(),
                ip_address: e.ip.to_string(),
                ip_prefix_len: e.prefix_len,
                ifname: e.ifname.clone(),
                host_ifname,
            },
        );
    }
    // Docker shows `host` and `none` containers as attached to those
    // networks, without addresses.
    let pseudo = match &c.net {
        NetMode::Host => Some(Attachment::HostNamespace),
        NetMode::Own { .. } | NetMode::Path { .. }
            if c.endpoints.is_empty() && c.network_mode == "none" =>
        {
            Some(Attachment::Loopback)
        }
        _ => None,
    };
    if let Some(kind) = pseudo
        && let Some(n) = snap.drivers.network_for(state, kind)
    {
        networks.insert(
            n.name.clone(),
            EndpointSettings {
                network_id: n.id.clone(),
                ..Default::default()
            },
        );
    }
    ContainerJson {
        id: c.id.clone(),
        name: c.name.clone(),
        created: c.created.clone(),
        network_mode: c.network_mode.clone(),
        sandbox_key: sandbox_key.clone(),
        state: ContainerState {
            status: status.into(),
            running: running_pid.is_some(),
            pid: running_pid.unwrap_or(0),
        },
        cmd: c
            .process
            .as_ref()
            .map(|p| p.cmd.clone())
            .unwrap_or_default(),
        log_path: log_path
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        config: ContainerConfig {
            labels: c.labels.clone(),
        },
        host_config: HostConfig {
            network_mode: c.network_mode.clone(),
        },
        network_settings: NetworkSettings {
            sandbox_key,
            networks,
            ports: ports_json(&c.ports),
        },
        resolv_conf: resolv_conf_json(&files.resolv_conf(state, &c.id)),
    }
}

fn resolv_conf_json(rc: &ResolvConf) -> ResolvConfJson {
    ResolvConfJson {
        nameservers: rc.nameservers.iter().map(ToString::to_string).collect(),
        search: rc.search.clone(),
        options: rc.options.clone(),
    }
}

/// Docker's `NetworkSettings.Ports`: container port -> host bindings.
pub fn ports_json(ports: &[PortBinding]) -> BTreeMap<String, Vec<PortBindingJson>> {
    let mut out: BTreeMap<String, Vec<PortBindingJson>> = BTreeMap::new();
    for b in ports {
        out.entry(format!("{}/{}", b.container_port, b.proto.as_str()))
            .or_default()
            .push(PortBindingJson {
                host_ip: b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                host_port: b.host_port.to_string(),
            });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Network, Process, State as ModelState};
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    fn req(json: &str) -> ContainerCreateRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn create_body_becomes_a_spec() {
        let s = container_spec(
            Some("web"),
            req(r#"{"NetworkMode":"front","IPAddress":"10.7.0.9","Aliases":["www"],"Cmd":["sleep","9"]}"#),
        )
        .unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.network, NetworkMode::Network("front".into()));
        assert_eq!(s.endpoint.ip, Some(Ipv4Addr::new(10, 7, 0, 9)));
        assert_eq!(s.endpoint.aliases, vec!["www"]);
        assert_eq!(s.cmd, Some(vec!["sleep".to_string(), "9".to_string()]));
    }

    #[test]
    fn defaults_and_docker_host_config_are_understood() {
        let s = container_spec(Some("a"), ContainerCreateRequest::default()).unwrap();
        assert_eq!(s.network, NetworkMode::Network("bridge".into()));
        assert_eq!(s.cmd, None);
        let s = container_spec(Some("a"), req(r#"{"HostConfig":{"NetworkMode":"host"}}"#)).unwrap();
        assert_eq!(s.network, NetworkMode::Host);
        let s = container_spec(None, req(r#"{"Name":"b","NetworkMode":"container:a"}"#)).unwrap();
        assert_eq!(s.name, "b");
        assert_eq!(s.network, NetworkMode::Container("a".into()));
    }

    #[test]
    fn bad_requests_get_dockers_messages() {
        let e = container_spec(Some("a/b"), ContainerCreateRequest::default()).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "Invalid container name (a/b), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
        let e = container_spec(None, ContainerCreateRequest::default()).unwrap_err();
        assert_eq!(e.status, 400);
        let e = container_spec(
            Some("a"),
            req(r#"{"NetworkMode":"host","IPAddress":"1.2.3.4"}"#),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "user specified IP address is supported on user defined networks only"
        );
        let e = container_spec(Some("a"), req(r#"{"NetworkMode":"none","Aliases":["x"]}"#))
            .unwrap_err();
        assert!(e.message.starts_with("network-scoped alias"));
        let e = container_spec(Some("a"), req(r#"{"IPAddress":"1.2.3"}"#)).unwrap_err();
        assert_eq!(e.message, "invalid IPv4 address: 1.2.3");
        let e = container_spec(Some("a"), req(r#"{"NetworkMode":"container:"}"#)).unwrap_err();
        assert_eq!(e.status, 400);
        let e = container_spec(Some("a"), req(r#"{"IfName":"a/b"}"#)).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("a/b"), "{}", e.message);
        let e = container_spec(Some("a"), req(r#"{"IfName":"sixteen-bytes-xx"}"#)).unwrap_err();
        assert!(e.message.contains("longer than 15 bytes"), "{}", e.message);
        let e = container_spec(Some("a"), req(r#"{"MacAddress":"02:00:00:00:01"}"#)).unwrap_err();
        assert_eq!(e.message, "invalid MAC address: 02:00:00:00:01");
    }

    #[test]
    fn interface_name_mac_and_labels_reach_the_spec() {
        let s = container_spec(
            Some("a"),
            req(
                r#"{"NetworkMode":"n","IfName":"net1","MacAddress":"0A:00:00:00:00:01",
                    "Labels":{"k":"v"}}"#,
            ),
        )
        .unwrap();
        assert_eq!(s.endpoint.ifname.as_deref(), Some("net1"));
        assert_eq!(s.endpoint.mac, Some([10, 0, 0, 0, 0, 1]));
        assert_eq!(s.labels, BTreeMap::from([("k".into(), "v".into())]));
    }

    fn state_with(c: &Container) -> Snapshot {
        let mut st = ModelState::default();
        for (id, name, driver) in [
            ("n1", "front", "bridge"),
            ("h1", "host", "host"),
            ("z1", "none", "null"),
        ] {
            st.networks.insert(
                id.into(),
                Arc::new(Network {
                    id: id.into(),
                    name: name.into(),
                    driver: driver.into(),
                    created: String::new(),
                    internal: false,
                    attachable: false,
                    ipam: (driver == "bridge").then(|| crate::model::Subnet {
                        subnet: "10.7.0.0/24".parse().unwrap(),
                        gateway: Ipv4Addr::new(10, 7, 0, 1),
                        ip_range: None,
                    }),
                    options: BTreeMap::new(),
                    labels: BTreeMap::new(),
                    predefined: driver != "bridge",
                    index: 1,
                }),
            );
        }
        st.containers.insert(c.id.clone(), Arc::new(c.clone()));
        Snapshot::of_state(st)
    }

    #[test]
    fn container_json_mirrors_docker_inspect() {
        let c = Container {
            id: "c1".into(),
            name: "web".into(),
            created: "2025-01-01T00:00:00Z".into(),
            net: NetMode::Own {
                netns: "netd-web".into(),
            },
            network_mode: "front".into(),
            endpoints: vec![Endpoint {
                id: "e1".into(),
                network_id: "n1".into(),
                ifname: "eth0".into(),
                host_ifname: "v1".into(),
                mac: [2, 0x42, 10, 7, 0, 9],
                ip: Ipv4Addr::new(10, 7, 0, 9),
                prefix_len: 24,
                gateway: Ipv4Addr::new(10, 7, 0, 1),
                aliases: vec!["www".into()],
                static_ip: true,
            }],
            // A live process: this test's own.
            process: Some(Process {
                cmd: vec!["sleep".into(), "9".into()],
                pid: Some(std::process::id()),
                started: crate::process::start_of(std::process::id()),
            }),
            ports: vec![],
            services: Vec::new(),
            removing: false,
            labels: BTreeMap::from([("k".into(), "v".into())]),
        };
        let st = state_with(&c);
        let j = container_json(&c, &st, &ContainerFiles::now());
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["Id"], "c1");
        assert_eq!(v["Name"], "web");
        assert_eq!(v["SandboxKey"], "/run/netns/netd-web");
        assert_eq!(v["NetworkSettings"]["SandboxKey"], "/run/netns/netd-web");
        assert_eq!(
            v["State"],
            serde_json::json!({"Status": "running", "Running": true, "Pid": std::process::id()})
        );
        assert_eq!(v["Cmd"], serde_json::json!(["sleep", "9"]));
        assert_eq!(v["HostConfig"]["NetworkMode"], "front");
        assert_eq!(
            v["NetworkSettings"]["Networks"]["front"],
            serde_json::json!({
                "IPAMConfig": {"IPv4Address": "10.7.0.9"},
                "Aliases": ["www"],
                "MacAddress": "02:42:0a:07:00:09",
                "NetworkID": "n1",
                "EndpointID": "e1",
                "Gateway": "10.7.0.1",
                "IPAddress": "10.7.0.9",
                "IPPrefixLen": 24,
                "IfName": "eth0",
                "HostIfName": "v1"
            })
        );
        assert_eq!(v["Config"], serde_json::json!({"Labels": {"k": "v"}}));
        // On a user-defined network: the embedded server.
        assert_eq!(
            v["ResolvConf"]["Nameservers"],
            serde_json::json!(["127.0.0.11"])
        );
        assert!(
            v["ResolvConf"]["Options"]
                .as_array()
                .unwrap()
                .contains(&"ndots:0".into())
        );
        // The process is gone: exited, pid 0.
        let mut gone = c.clone();
        gone.process.as_mut().unwrap().pid = None;
        let j = container_json(&gone, &st, &ContainerFiles::now());
        assert_eq!(j.state.status, "exited");
        assert_eq!(j.state.pid, 0);
        // On its way out: removing.
        let mut going = gone.clone();
        going.removing = true;
        assert_eq!(
            container_json(&going, &st, &ContainerFiles::now())
                .state
                .status,
            "removing"
        );
    }

    #[test]
    fn host_containers_show_the_host_network() {
        let c = Container {
            id: "c2".into(),
            name: "h".into(),
            created: String::new(),
            net: NetMode::Host,
            network_mode: "host".into(),
            endpoints: vec![],
            process: None,
            ports: vec![],
            services: Vec::new(),
            removing: false,
            labels: Default::default(),
        };
        let st = state_with(&c);
        let j = container_json(&c, &st, &ContainerFiles::now());
        assert_eq!(j.state.status, "created");
        assert_eq!(j.sandbox_key, "");
        assert_eq!(j.network_settings.networks["host"].network_id, "h1");
        assert_eq!(j.network_settings.networks.len(), 1);
    }
}
