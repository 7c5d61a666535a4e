//! The Docker-compatible network endpoints: handlers, validation of
//! `network create` bodies (syntax here, with Docker's messages; semantic
//! rules such as names taken or pools overlapping are the engine's), and the
//! mapping of `model::Network` to Docker's JSON.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ipnet::{IpNet, Ipv4Net};

use super::errors::{ApiError, ApiResult};
use super::filters;
use super::wire::{
    ConfigReference, EndpointResource, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest, NetworkResource,
    NetworksPruneResponse,
};
use super::{AppState, json_response, parse_body};
use crate::drivers::{Attachment, Drivers};
use crate::engine::Snapshot;
use crate::engine::spec::{EndpointSpec, NetworkSpec};
use crate::model::{NameOf, NetMode, Network, check_name, format_mac};

/// The driver of `network create` without `-d`, as in Docker.
const DEFAULT_DRIVER: &str = "bridge";

/// Names Docker reserves (moby's `network.IsPredefined`).
const PREDEFINED: [&str; 4] = ["bridge", "host", "none", "default"];

type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

fn query(q: QueryMap) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `GET /networks[?filters=...]`
pub async fn list(State(app): State<AppState>, q: QueryMap) -> ApiResult {
    let q = query(q)?;
    let f = filters::list_filters(&filters::parse(q.get("filters").map(String::as_str))?)?;
    let snap = app.engine.snapshot();
    let out: Vec<NetworkResource> = snap
        .networks(&f.engine)
        .into_iter()
        .filter(|n| f.scope.is_empty() || f.scope.iter().any(|s| s == snap.scope(n)))
        .filter(|n| f.dangling.is_none_or(|d| is_dangling(n, &snap) == d))
        .map(|n| network_resource(n, &snap, false))
        .collect();
    Ok(json_response(StatusCode::OK, &out))
}

/// Docker's `dangling`: a custom network nothing is attached to.
fn is_dangling(n: &Network, snap: &Snapshot) -> bool {
    !n.predefined && snap.state.endpoints_on(&n.id).next().is_none()
}

/// `GET /networks/{id}` (full id, name, or unique id prefix).
pub async fn inspect(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    inspect_key(&app, &id).await
}

/// `GET /networks/create` and `/networks/prune`: a network with that name.
pub async fn inspect_literal(State(app): State<AppState>, uri: axum::http::Uri) -> ApiResult {
    inspect_key(&app, last_segment(&uri)).await
}

async fn inspect_key(app: &AppState, key: &str) -> ApiResult {
    let snap = app.engine.snapshot();
    let n = snap.network(key)?;
    Ok(json_response(
        StatusCode::OK,
        &network_resource(n, &snap, true),
    ))
}

fn last_segment(uri: &axum::http::Uri) -> &str {
    uri.path().rsplit('/').next().unwrap_or_default()
}

/// `POST /networks/create` → 201 `{"Id": ..., "Warning": ""}`.
pub async fn create(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let req: NetworkCreateRequest = parse_body(&body)?;
    let spec = network_spec(req, &app.engine.snapshot().drivers)?;
    let n = app.engine.create_network(spec).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &NetworkCreateResponse {
            id: n.id,
            warning: String::new(),
        },
    ))
}

/// `DELETE /networks/{id}` → 204.
pub async fn remove(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    remove_key(&app, &id).await
}

pub async fn remove_literal(State(app): State<AppState>, uri: axum::http::Uri) -> ApiResult {
    remove_key(&app, last_segment(&uri)).await
}

async fn remove_key(app: &AppState, key: &str) -> ApiResult {
    app.engine.remove_network(key).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /networks/prune[?filters=...]` → `{"NetworksDeleted": [names]}`.
/// The docker CLI sends no body here, so none is read.
pub async fn prune(State(app): State<AppState>, q: QueryMap) -> ApiResult {
    let q = query(q)?;
    let f = filters::prune_filters(&filters::parse(q.get("filters").map(String::as_str))?)?;
    let deleted = app.engine.prune_networks(f).await?;
    Ok(json_response(
        StatusCode::OK,
        &NetworksPruneResponse {
            networks_deleted: deleted,
        },
    ))
}

/// `POST /networks/{id}/connect` → 200, empty body (as Docker).
pub async fn connect(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: NetworkConnectRequest = parse_body(&body)?;
    let (container, ep) = connect_spec(req)?;
    app.engine.connect(&id, &container, ep).await?;
    Ok(empty(StatusCode::OK))
}

/// `POST /networks/{id}/disconnect` → 200, empty body.
pub async fn disconnect(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: NetworkDisconnectRequest = parse_body(&body)?;
    if req.container.trim().is_empty() {
        return Err(ApiError::bad_request("Container is required"));
    }
    app.engine
        .disconnect(&id, &req.container, req.force)
        .await?;
    Ok(empty(StatusCode::OK))
}

fn empty(status: StatusCode) -> Response {
    axum::response::IntoResponse::into_response(status)
}

/// Docker's JSON for a network. `with_containers` is false for the list,
/// which Docker (API >= 1.28) returns with an empty `Containers`.
pub fn network_resource(n: &Network, snap: &Snapshot, with_containers: bool) -> NetworkResource {
    let state = &snap.state;
    let config = match &n.ipam {
        Some(s) => vec![IpamConfig {
            subnet: s.subnet.to_string(),
            ip_range: s.ip_range.map(|r| r.to_string()).unwrap_or_default(),
            gateway: s.gateway.to_string(),
            aux_addresses: Default::default(),
        }],
        None => Vec::new(),
    };
    let mut containers = std::collections::BTreeMap::new();
    if with_containers {
        for (c, e) in state.endpoints_on(&n.id) {
            containers.insert(
                c.id.clone(),
                EndpointResource {
                    name: c.name.clone(),
                    endpoint_id: e.id.clone(),
                    mac_address: format_mac(&e.mac),
                    ipv4_address: format!("{}/{}", e.ip, e.prefix_len),
                    ipv6_address: String::new(),
                },
            );
        }
        // Containers on `host` and `none` have no endpoint record (there is
        // no interface), but Docker lists them on those networks.
        let attachment = snap.drivers.get(&n.driver).map(|d| d.attachment());
        for c in state.containers.values() {
            let on_this = match attachment {
                Some(Attachment::HostNamespace) => c.net == NetMode::Host,
                Some(Attachment::Loopback) => c.network_mode == "none" && c.endpoints.is_empty(),
                _ => false,
            };
            if on_this {
                containers.entry(c.id.clone()).or_insert(EndpointResource {
                    name: c.name.clone(),
                    ..Default::default()
                });
            }
        }
    }
    NetworkResource {
        name: n.name.clone(),
        id: n.id.clone(),
        created: n.created.clone(),
        scope: snap.scope(n).into(),
        driver: n.driver.clone(),
        enable_ipv4: true,
        enable_ipv6: false,
        ipam: Ipam {
            driver: "default".into(),
            options: Default::default(),
            config,
        },
        internal: n.internal,
        attachable: n.attachable,
        ingress: false,
        config_from: ConfigReference::default(),
        config_only: false,
        containers,
        options: n.options.clone(),
        labels: n.labels.clone(),
    }
}

/// Turns a create request into the engine's spec, or the 4xx Docker would
/// answer. Only the first IPv4 pool is supported; IPv6 is refused outright
/// rather than silently ignored.
pub fn network_spec(req: NetworkCreateRequest, drivers: &Drivers) -> Result<NetworkSpec, ApiError> {
    let name = req.name;
    check_name(NameOf::Network, &name).map_err(ApiError::bad_request)?;
    if PREDEFINED.contains(&name.as_str()) {
        return Err(ApiError::forbidden(format!(
            "operation is not permitted on predefined {name} network"
        )));
    }
    let name_of_driver = match req.driver.as_str() {
        "" => DEFAULT_DRIVER,
        d => d,
    };
    let driver = drivers
        .get(name_of_driver)
        .ok_or_else(|| ApiError::not_found(format!("plugin \"{name_of_driver}\" not found")))?;
    if !req.scope.is_empty() && req.scope != driver.scope() {
        return Err(ApiError::bad_request(format!(
            "scope \"{}\" is not supported for driver {}: its scope is {}",
            req.scope,
            driver.name(),
            driver.scope()
        )));
    }
    if req.ingress {
        return Err(ApiError::bad_request(
            "ingress networks are not supported by netd",
        ));
    }
    if req.config_only
        || req
            .config_from
            .as_ref()
            .is_some_and(|c| !c.network.is_empty())
    {
        return Err(ApiError::bad_request(
            "config-only networks and --config-from are not supported by netd",
        ));
    }
    if req.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request("IPv6 is not supported by netd yet"));
    }
    if req.enable_ipv4 == Some(false) {
        return Err(ApiError::bad_request(
            "netd networks always have IPv4: disabling it is not supported",
        ));
    }
    let pool = match req.ipam {
        Some(ipam) => ipam_pool(ipam)?,
        None => None,
    };
    let (subnet, gateway, ip_range) = match pool {
        Some(p) => (Some(p.subnet), p.gateway, p.ip_range),
        None => (None, None, None),
    };
    Ok(NetworkSpec {
        name,
        driver: driver.name().to_string(),
        subnet,
        gateway,
        ip_range,
        internal: req.internal,
        attachable: req.attachable,
        options: req.options,
        labels: req.labels,
    })
}

struct Pool {
    subnet: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    ip_range: Option<Ipv4Net>,
}

/// Validates the IPAM section like moby's `ValidateIPAM` (same checks,
/// same messages, all errors reported at once) and returns the one pool.
fn ipam_pool(ipam: Ipam) -> Result<Option<Pool>, ApiError> {
    match ipam.driver.as_str() {
        "" | "default" => {}
        d => return Err(ApiError::not_found(format!("plugin \"{d}\" not found"))),
    }
    let configs: Vec<IpamConfig> = ipam
        .config
        .into_iter()
        .filter(|c| *c != IpamConfig::default())
        .collect();
    if configs
        .iter()
        .any(|c| c.subnet.is_empty() && (!c.ip_range.is_empty() || !c.gateway.is_empty()))
    {
        return Err(ApiError::bad_request(
            "every ip-range or gateway must have a corresponding subnet",
        ));
    }
    if configs.iter().any(|c| !c.aux_addresses.is_empty()) {
        return Err(ApiError::bad_request(
            "auxiliary addresses are not supported by netd",
        ));
    }

    let mut errs = Vec::new();
    let mut pools = Vec::new();
    for c in &configs {
        let subnet = match c.subnet.parse::<IpNet>() {
            Ok(IpNet::V4(n)) => n,
            Ok(IpNet::V6(_)) => {
                return Err(ApiError::bad_request(format!(
                    "IPv6 is not supported by netd yet (subnet {})",
                    c.subnet
                )));
            }
            Err(_) => {
                errs.push(format!(
                    "invalid subnet {}: invalid CIDR block notation",
                    c.subnet
                ));
                continue;
            }
        };
        if subnet != subnet.trunc() {
            errs.push(format!(
                "invalid subnet {subnet}: it should be {}",
                subnet.trunc()
            ));
        }
        let ip_range = if c.ip_range.is_empty() {
            None
        } else {
            match ip_range_errors(&c.ip_range, subnet) {
                Ok(r) => Some(r),
                Err(mut e) => {
                    errs.append(&mut e);
                    None
                }
            }
        };
        let gateway = if c.gateway.is_empty() {
            None
        } else {
            match gateway_in(&c.gateway, subnet) {
                Ok(g) => Some(g),
                Err(e) => {
                    errs.push(format!("invalid gateway {}: {e}", c.gateway));
                    None
                }
            }
        };
        pools.push(Pool {
            subnet,
            gateway,
            ip_range,
        });
    }
    if !errs.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid network config:\n{}",
            errs.join("\n")
        )));
    }
    if pools.len() > 1 {
        let list: Vec<String> = pools.iter().map(|p| p.subnet.to_string()).collect();
        return Err(ApiError::bad_request(format!(
            "netd supports one IPv4 subnet per network, got {}: {}",
            pools.len(),
            list.join(", ")
        )));
    }
    Ok(pools.pop())
}

/// moby's `validateIPRange` for an IPv4 parent.
fn ip_range_errors(raw: &str, subnet: Ipv4Net) -> Result<Ipv4Net, Vec<String>> {
    let range = match raw.parse::<IpNet>() {
        Ok(IpNet::V4(r)) => r,
        Ok(IpNet::V6(_)) => {
            return Err(vec![format!(
                "invalid ip-range {raw}: parent subnet is an IPv4 block"
            )]);
        }
        Err(_) => {
            return Err(vec![format!(
                "invalid ip-range {raw}: invalid CIDR block notation"
            )]);
        }
    };
    let mut errs = Vec::new();
    if range.prefix_len() < subnet.prefix_len() {
        errs.push(format!(
            "invalid ip-range {raw}: CIDR block is bigger than its parent subnet {subnet}"
        ));
    }
    if range != range.trunc() {
        errs.push(format!(
            "invalid ip-range {range}: it should be {}",
            range.trunc()
        ));
    }
    let overlaps = subnet.contains(&range.network()) || range.contains(&subnet.network());
    if !overlaps {
        errs.push(format!(
            "invalid ip-range {raw}: parent subnet {subnet} doesn't contain ip-range"
        ));
    }
    if errs.is_empty() {
        Ok(range)
    } else {
        Err(errs)
    }
}

/// moby's `validateAddress`; a legacy `a.b.c.d/len` gateway is accepted as
/// Docker still does.
fn gateway_in(raw: &str, subnet: Ipv4Net) -> Result<Ipv4Addr, String> {
    let addr = raw.split_once('/').map_or(raw, |(a, _)| a);
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) if subnet.contains(&a) => Ok(a),
        Ok(IpAddr::V4(_)) => Err(format!(
            "parent subnet {subnet} doesn't contain this address"
        )),
        Ok(IpAddr::V6(_)) => Err("parent subnet is an IPv4 block".into()),
        Err(_) => Err("invalid address".into()),
    }
}

/// Parses an endpoint's requested address: empty means "allocate one".
pub fn parse_ipv4(raw: &str) -> Result<Option<Ipv4Addr>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Ok(Some(a)),
        Ok(IpAddr::V6(_)) => Err(ApiError::bad_request(format!(
            "IPv6 is not supported by netd yet (address {raw})"
        ))),
        Err(_) => Err(ApiError::bad_request(format!(
            "invalid IPv4 address: {raw}"
        ))),
    }
}

fn connect_spec(req: NetworkConnectRequest) -> Result<(String, EndpointSpec), ApiError> {
    if req.container.trim().is_empty() {
        return Err(ApiError::bad_request("Container is required"));
    }
    let cfg = req.endpoint_config.unwrap_or_default();
    let ipam = cfg.ipam_config.unwrap_or_default();
    if !ipam.ipv6_address.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "IPv6 is not supported by netd yet (address {})",
            ipam.ipv6_address
        )));
    }
    let spec = EndpointSpec {
        ip: parse_ipv4(&ipam.ipv4_address)?,
        aliases: cfg.aliases,
        ..EndpointSpec::default()
    };
    spec.check().map_err(ApiError::bad_request)?;
    Ok((req.container, spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, Endpoint, State as ModelState, Subnet};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn req(json: &str) -> NetworkCreateRequest {
        serde_json::from_str(json).unwrap()
    }

    fn spec_err(json: &str) -> ApiError {
        network_spec(req(json), &Drivers::builtin()).unwrap_err()
    }

    /// The body docker 28.2 sends for
    /// `docker network create --subnet 10.9.0.0/16 --gateway 10.9.0.1
    /// --ip-range 10.9.1.0/24 -o a=b --label x=y --internal --attachable foo`.
    const DOCKER_CREATE: &str = r#"{"Driver":"bridge","Scope":"","IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.9.0.0/16","IPRange":"10.9.1.0/24","Gateway":"10.9.0.1"}]},"Internal":true,"Attachable":true,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{"a":"b"},"Labels":{"x":"y"},"Name":"foo"}"#;

    #[test]
    fn docker_cli_create_body_becomes_a_spec() {
        let s = network_spec(req(DOCKER_CREATE), &Drivers::builtin()).unwrap();
        assert_eq!(s.name, "foo");
        assert_eq!(s.driver, "bridge");
        assert_eq!(s.subnet, Some("10.9.0.0/16".parse().unwrap()));
        assert_eq!(s.gateway, Some(Ipv4Addr::new(10, 9, 0, 1)));
        assert_eq!(s.ip_range, Some("10.9.1.0/24".parse().unwrap()));
        assert!(s.internal && s.attachable);
        assert_eq!(s.options["a"], "b");
        assert_eq!(s.labels["x"], "y");
    }

    #[test]
    fn minimal_bodies_default_to_bridge_without_pool() {
        let s = network_spec(
            req(
                r#"{"Driver":"bridge","Scope":"","IPAM":{"Driver":"default","Options":{},"Config":[]},"Internal":false,"Attachable":false,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{},"Labels":{},"Name":"bar"}"#,
            ),
            &Drivers::builtin(),
        )
        .unwrap();
        assert_eq!(s.driver, "bridge");
        assert_eq!(s.subnet, None);
        let s = network_spec(
            req(r#"{"Name":"x","Options":null,"Labels":null}"#),
            &Drivers::builtin(),
        )
        .unwrap();
        assert_eq!(s.driver, "bridge");
        assert!(s.options.is_empty());
    }

    #[test]
    fn names_are_checked() {
        let e = spec_err(r#"{"Name":""}"#);
        assert_eq!(e.status, 400);
        assert!(
            e.message.starts_with("invalid network name \"\""),
            "{}",
            e.message
        );
        let e = spec_err(r#"{"Name":"a/b"}"#);
        assert_eq!(e.status, 400);
        let e = spec_err(r#"{"Name":"bridge"}"#);
        assert_eq!(e.status, 403);
        assert_eq!(
            e.message,
            "operation is not permitted on predefined bridge network"
        );
    }

    #[test]
    fn unknown_drivers_are_404_like_docker_plugins() {
        let e = spec_err(r#"{"Name":"x","Driver":"foo"}"#);
        assert_eq!(e.status, 404);
        assert_eq!(e.message, "plugin \"foo\" not found");
        let e = spec_err(r#"{"Name":"x","IPAM":{"Driver":"weird"}}"#);
        assert_eq!(e.status, 404);
    }

    #[test]
    fn bad_subnets_get_mobys_messages() {
        let e = spec_err(r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"300.1.0.0/16"}]}}"#);
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "invalid network config:\ninvalid subnet 300.1.0.0/16: invalid CIDR block notation"
        );
        let e = spec_err(r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.1.2.3/16"}]}}"#);
        assert_eq!(
            e.message,
            "invalid network config:\ninvalid subnet 10.1.2.3/16: it should be 10.1.0.0/16"
        );
    }

    #[test]
    fn gateway_and_range_must_be_inside_the_subnet() {
        let e = spec_err(
            r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.1.0.0/16","Gateway":"10.2.0.1","IPRange":"10.3.0.0/24"}]}}"#,
        );
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "invalid network config:\n\
             invalid ip-range 10.3.0.0/24: parent subnet 10.1.0.0/16 doesn't contain ip-range\n\
             invalid gateway 10.2.0.1: parent subnet 10.1.0.0/16 doesn't contain this address"
        );
        let e = spec_err(
            r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.1.0.0/16","IPRange":"10.0.0.0/8"}]}}"#,
        );
        assert!(
            e.message
                .contains("invalid ip-range 10.0.0.0/8: CIDR block is bigger than its parent subnet 10.1.0.0/16"),
            "{}",
            e.message
        );
        let e = spec_err(
            r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.1.0.0/16","Gateway":"nope"}]}}"#,
        );
        assert!(e.message.ends_with("invalid gateway nope: invalid address"));
        // Docker still accepts a gateway written with its prefix length.
        let s = network_spec(
            req(
                r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.1.0.0/16","Gateway":"10.1.0.254/16"}]}}"#,
            ),
            &Drivers::builtin(),
        )
        .unwrap();
        assert_eq!(s.gateway, Some(Ipv4Addr::new(10, 1, 0, 254)));
    }

    #[test]
    fn range_or_gateway_without_subnet_is_rejected() {
        let e = spec_err(r#"{"Name":"x","IPAM":{"Config":[{"Gateway":"10.1.0.1"}]}}"#);
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "every ip-range or gateway must have a corresponding subnet"
        );
    }

    #[test]
    fn ipv6_and_multiple_pools_are_refused_clearly() {
        let e = spec_err(r#"{"Name":"x","EnableIPv6":true}"#);
        assert_eq!(e.status, 400);
        assert_eq!(e.message, "IPv6 is not supported by netd yet");
        let e = spec_err(r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"fd00::/64"}]}}"#);
        assert_eq!(e.status, 400);
        assert!(e.message.starts_with("IPv6 is not supported by netd yet"));
        let e = spec_err(
            r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.1.0.0/16"},{"Subnet":"10.2.0.0/16"}]}}"#,
        );
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "netd supports one IPv4 subnet per network, got 2: 10.1.0.0/16, 10.2.0.0/16"
        );
    }

    #[test]
    fn connect_body_from_docker_cli_parses() {
        let r: NetworkConnectRequest = serde_json::from_str(
            r#"{"Container":"c1","EndpointConfig":{"IPAMConfig":{"IPv4Address":"10.9.0.5"},"Links":null,"Aliases":["w"],"MacAddress":"","DriverOpts":{},"GwPriority":0,"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSNames":null}}"#,
        )
        .unwrap();
        let (c, ep) = connect_spec(r).unwrap();
        assert_eq!(c, "c1");
        assert_eq!(ep.ip, Some(Ipv4Addr::new(10, 9, 0, 5)));
        assert_eq!(ep.aliases, vec!["w"]);
        let r: NetworkConnectRequest = serde_json::from_str(
            r#"{"Container":"c1","EndpointConfig":{"IPAMConfig":{"IPv4Address":"x"}}}"#,
        )
        .unwrap();
        assert_eq!(
            connect_spec(r).unwrap_err().message,
            "invalid IPv4 address: x"
        );
        let r: NetworkConnectRequest = serde_json::from_str(r#"{"Container":"c1"}"#).unwrap();
        let (_, ep) = connect_spec(r).unwrap();
        assert_eq!(ep.ip, None);
    }

    fn sample() -> (Network, Snapshot) {
        let net = Network {
            id: "a".repeat(64),
            name: "front".into(),
            driver: "bridge".into(),
            created: "2025-01-02T03:04:05.123456789Z".into(),
            internal: false,
            attachable: true,
            ipam: Some(Subnet {
                subnet: "10.7.0.0/24".parse().unwrap(),
                gateway: Ipv4Addr::new(10, 7, 0, 1),
                ip_range: Some("10.7.0.128/25".parse().unwrap()),
            }),
            options: BTreeMap::from([("parent".to_string(), "eth0".to_string())]),
            labels: BTreeMap::from([("team".to_string(), "web".to_string())]),
            predefined: false,
            index: 5,
        };
        let c = Container {
            id: "c".repeat(64),
            name: "web1".into(),
            created: "2025-01-02T03:04:06Z".into(),
            net: NetMode::Own {
                netns: "netd-web1".into(),
            },
            network_mode: "front".into(),
            endpoints: vec![Endpoint {
                id: "e".repeat(64),
                network_id: net.id.clone(),
                ifname: "eth0".into(),
                host_ifname: "veth1".into(),
                mac: [0x02, 0x42, 10, 7, 0, 2],
                ip: Ipv4Addr::new(10, 7, 0, 2),
                prefix_len: 24,
                gateway: Ipv4Addr::new(10, 7, 0, 1),
                aliases: vec!["www".into()],
                static_ip: false,
            }],
            process: None,
            ports: vec![],
            services: Vec::new(),
            removing: false,
            labels: Default::default(),
        };
        let mut st = ModelState::default();
        st.networks.insert(net.id.clone(), Arc::new(net.clone()));
        st.containers.insert(c.id.clone(), Arc::new(c));
        (net, Snapshot::of_state(st))
    }

    #[test]
    fn network_json_has_dockers_keys_and_values() {
        let (net, st) = sample();
        let v = serde_json::to_value(network_resource(&net, &st, true)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "Name",
            "Id",
            "Created",
            "Scope",
            "Driver",
            "EnableIPv4",
            "EnableIPv6",
            "IPAM",
            "Internal",
            "Attachable",
            "Ingress",
            "ConfigFrom",
            "ConfigOnly",
            "Containers",
            "Options",
            "Labels",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(v["Name"], "front");
        assert_eq!(v["Id"], net.id);
        assert_eq!(v["Created"], "2025-01-02T03:04:05.123456789Z");
        assert_eq!(v["Scope"], "local");
        assert_eq!(v["Driver"], "bridge");
        assert_eq!(v["EnableIPv4"], true);
        assert_eq!(v["EnableIPv6"], false);
        assert_eq!(v["Attachable"], true);
        assert_eq!(v["ConfigFrom"]["Network"], "");
        assert_eq!(
            v["IPAM"],
            serde_json::json!({
                "Driver": "default",
                "Options": {},
                "Config": [{"Subnet": "10.7.0.0/24", "IPRange": "10.7.0.128/25", "Gateway": "10.7.0.1"}]
            })
        );
        let c = &v["Containers"]["c".repeat(64)];
        assert_eq!(
            *c,
            serde_json::json!({
                "Name": "web1",
                "EndpointID": "e".repeat(64),
                "MacAddress": "02:42:0a:07:00:02",
                "IPv4Address": "10.7.0.2/24",
                "IPv6Address": ""
            })
        );
        assert_eq!(v["Options"]["parent"], "eth0");
        assert_eq!(v["Labels"]["team"], "web");
    }

    #[test]
    fn network_json_key_order_is_dockers() {
        let (net, st) = sample();
        let text = serde_json::to_string(&network_resource(&net, &st, false)).unwrap();
        let pos = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        assert!(pos("Name") < pos("Id") && pos("Id") < pos("Created"));
        assert!(pos("IPAM") < pos("Internal") && pos("Internal") < pos("Containers"));
        // The last "Options" is the network's own (the first is IPAM's).
        assert!(pos("Containers") < text.rfind("\"Options\":").unwrap());
        assert!(
            text.contains("\"Containers\":{}"),
            "list omits containers: {text}"
        );
    }

    #[test]
    fn host_and_none_networks_have_empty_ipam_config() {
        let (mut net, st) = sample();
        net.driver = "null".into();
        net.ipam = None;
        let v = serde_json::to_value(network_resource(&net, &st, true)).unwrap();
        assert_eq!(v["IPAM"]["Config"], serde_json::json!([]));
        assert_eq!(v["Driver"], "null");
    }

    #[test]
    fn dangling_means_custom_and_unused() {
        let (net, st) = sample();
        assert!(!is_dangling(&net, &st));
        let empty = Snapshot::of_state(ModelState::default());
        assert!(is_dangling(&net, &empty));
        let mut builtin = net.clone();
        builtin.predefined = true;
        assert!(!is_dangling(&builtin, &empty));
    }
}
