//! `GET /cluster/hosts` (netd's own; `netd cluster ls`): the hosts of the
//! cluster as the cluster store knows them, up or down. Asked of the store
//! itself, not of this host's mirror, so that the answer is the cluster's.

use axum::extract::State;
use axum::http::StatusCode;

use super::errors::{ApiError, ApiResult};
use super::wire::ClusterHostJson;
use super::{AppState, json_response};

pub async fn hosts(State(app): State<AppState>) -> ApiResult {
    let Some(cluster) = &app.cluster else {
        return Err(ApiError::forbidden(
            "this host is not part of a cluster: start the daemon with --cluster-store \
             etcd://HOST:PORT",
        ));
    };
    let me = app
        .engine
        .snapshot()
        .cluster
        .as_ref()
        .map(|c| c.host.clone());
    let hosts = cluster
        .hosts()
        .await
        .map_err(crate::error::EngineError::from)?;
    let out: Vec<ClusterHostJson> = hosts
        .into_iter()
        .map(|h| ClusterHostJson {
            is_self: me.as_deref() == Some(h.id.as_str()),
            id: h.id,
            address: h.addr.to_string(),
            state: if h.up { "up" } else { "down" }.into(),
            joined: h.joined,
            last_seen: h.last_seen.unwrap_or_default(),
            endpoints: h.endpoints,
        })
        .collect();
    Ok(json_response(StatusCode::OK, &out))
}
