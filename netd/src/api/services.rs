//! netd's own service endpoints, in the style of the Docker API:
//! `POST /services/create`, `GET /services`, `GET /services/{id}`,
//! `POST /services/{id}/scale?replicas=N`, `DELETE /services/{id}`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::containers::ports_json;
use super::errors::{ApiError, ApiResult};
use super::wire::{ServiceCreateRequest, ServiceCreateResponse, ServiceJson, ServiceTaskJson};
use super::{AppState, json_response, parse_body};
use crate::engine::spec::PortSpec;
use crate::engine::{ServiceSpec, Snapshot, check_replicas};
use crate::model::{NameOf, Service, check_name};

pub async fn create(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let spec = service_spec(parse_body(&body)?)?;
    let svc = app.engine.create_service(spec).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &ServiceCreateResponse { id: svc.id },
    ))
}

pub async fn list(State(app): State<AppState>) -> ApiResult {
    let snap = app.engine.snapshot();
    let mut all: Vec<&Service> = snap.state.services.values().map(|s| &**s).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let out: Vec<ServiceJson> = all.into_iter().map(|s| json_of(&snap, s)).collect();
    Ok(json_response(StatusCode::OK, &out))
}

pub async fn inspect(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let snap = app.engine.snapshot();
    let svc = snap.service(&id)?;
    Ok(json_response(StatusCode::OK, &json_of(&snap, svc)))
}

pub async fn scale(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let replicas = q
        .get("replicas")
        .and_then(|r| r.parse::<u32>().ok())
        .ok_or_else(|| ApiError::bad_request("replicas must be a whole number: ?replicas=N"))?;
    check_replicas(replicas).map_err(ApiError::bad_request)?;
    let svc = app.engine.scale_service(&id, replicas).await?;
    let snap = app.engine.snapshot();
    Ok(json_response(StatusCode::OK, &json_of(&snap, &svc)))
}

pub async fn remove(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    app.engine.remove_service(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn service_spec(req: ServiceCreateRequest) -> Result<ServiceSpec, ApiError> {
    check_name(NameOf::Service, &req.name).map_err(ApiError::bad_request)?;
    check_replicas(req.replicas).map_err(ApiError::bad_request)?;
    if req.network.is_empty() {
        return Err(ApiError::bad_request(
            "a service needs a network: --network NET",
        ));
    }
    let ports = req
        .ports
        .iter()
        .map(|p| PortSpec::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    Ok(ServiceSpec {
        name: req.name,
        network: req.network,
        replicas: req.replicas,
        ports,
        cmd: req.cmd,
    })
}

fn json_of(snap: &Snapshot, s: &Service) -> ServiceJson {
    let st = &snap.state;
    ServiceJson {
        id: s.id.clone(),
        name: s.name.clone(),
        created_at: s.created.clone(),
        network: st
            .networks
            .get(&s.network_id)
            .map(|n| n.name.clone())
            .unwrap_or_default(),
        virtual_ip: s.vip.to_string(),
        replicas: s.replicas,
        tasks: st
            .replicas_of(&s.id)
            .into_iter()
            .map(|c| ServiceTaskJson {
                name: c.name.clone(),
                ip_address: c
                    .endpoints
                    .iter()
                    .find(|e| e.network_id == s.network_id)
                    .map(|e| e.ip.to_string())
                    .unwrap_or_default(),
                running: snap.running_pid(c).is_some(),
            })
            .collect(),
        ports: ports_json(&s.ports),
        cmd: s.cmd.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_is_validated() {
        let ok = service_spec(ServiceCreateRequest {
            name: "web".into(),
            network: "n".into(),
            replicas: 3,
            ports: vec!["8080:80".into()],
            cmd: vec!["sleep".into()],
        })
        .unwrap();
        assert_eq!(ok.ports[0].host_port, Some(8080));
        let bad = |req: ServiceCreateRequest| service_spec(req).unwrap_err().to_string();
        assert!(
            bad(ServiceCreateRequest {
                name: "a b".into(),
                network: "n".into(),
                ..Default::default()
            })
            .contains("invalid service name")
        );
        assert!(
            bad(ServiceCreateRequest {
                name: "web".into(),
                ..Default::default()
            })
            .contains("needs a network")
        );
        assert!(
            bad(ServiceCreateRequest {
                name: "web".into(),
                network: "n".into(),
                ports: vec!["x:80".into()],
                ..Default::default()
            })
            .contains("invalid hostPort")
        );
    }
}
