//! The HTTP API on the unix socket. The network endpoints follow the Docker
//! Engine API closely enough that the real docker CLI works against netd
//! unmodified (`DOCKER_HOST=unix:///run/netd/netd.sock docker network ls`);
//! containers have netd's own endpoints in the same style.
//!
//! Layout:
//! - `wire`: the JSON shapes (shared with the CLI);
//! - `filters`: Docker's `filters` query parameter;
//! - `networks`, `containers`, `services`, `stats`, `system`: handlers, request validation and
//!   the mapping from `model` to the wire shapes;
//! - `errors`: `{"message": ...}` responses with Docker's status codes.
//!
//! Every request goes through one outer middleware that strips Docker's
//! `/v1.NN` prefix (the docker CLI always sends one; netd's CLI does not),
//! opens a tracing span and sets the headers Docker sets on every response.
//! Requests are parsed and validated here, before anything is sent to the
//! engine, so that a malformed request never waits for or touches it.
//! Reads answer from the engine's latest snapshot and never wait; changes
//! are commands to the engine's loop, which finishes them even when the
//! client goes away before the answer.

pub mod cluster;
pub mod containers;
pub mod errors;
pub mod filters;
pub mod networks;
pub mod services;
pub mod stats;
pub mod system;
pub mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::engine::EngineHandle;
use crate::traffic::Telemetry;
use errors::ApiError;

/// The Docker API version netd speaks. 1.47 is Docker 27.x: the docker CLI
/// negotiates down to it (it sends `/v1.47/...` after reading
/// `Api-Version` from `/_ping`).
pub const API_VERSION: &str = "1.47";
/// The oldest version prefix accepted, as Docker's daemon does.
pub const MIN_API_VERSION: &str = "1.24";

/// What every handler gets: the engine's handle (commands and snapshots),
/// the traffic counters, and the cluster store in cluster mode.
#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub telemetry: Arc<Telemetry>,
    pub cluster: Option<crate::cluster::Cluster>,
}

/// The whole API as one router, ready for `axum::serve`.
pub fn router(app: AppState) -> Router {
    let api = system::routes().merge(engine_routes()).with_state(app);
    wrap(api)
}

/// The routes that need the engine. Static segments (`create`, `prune`,
/// `json`) win over `{id}` in axum's matcher even for other methods, so a
/// network or container that happens to be named like one still needs a
/// route of its own for inspect and remove.
fn engine_routes() -> Router<AppState> {
    Router::new()
        .route("/info", get(system::info))
        .route("/networks", get(networks::list))
        .route(
            "/networks/create",
            post(networks::create)
                .get(networks::inspect_literal)
                .delete(networks::remove_literal),
        )
        .route(
            "/networks/prune",
            post(networks::prune)
                .get(networks::inspect_literal)
                .delete(networks::remove_literal),
        )
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route(
            "/containers/json",
            get(containers::list).delete(containers::remove_literal),
        )
        .route(
            "/containers/create",
            post(containers::create).delete(containers::remove_literal),
        )
        .route("/containers/{id}", delete(containers::remove))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/stats", get(stats::stats))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/scale", post(services::scale))
        .route("/cluster/hosts", get(cluster::hosts))
}

/// Puts the outer middleware in front of a finished router. The inner
/// router is the fallback service of an otherwise empty outer one, and the
/// middleware is a layer on the outer router: it therefore runs *before*
/// the inner router matches, so it can rewrite the path (axum's documented
/// "rewrite the URI" pattern, without depending on tower directly).
fn wrap(api: Router) -> Router {
    let api = api
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn(outer))
}

/// The largest request body read. netd's requests are a few hundred bytes
/// (the largest, a network create with many labels, a few KiB); this bounds
/// what one careless or hostile client can make the daemon buffer.
pub const BODY_LIMIT: usize = 1 << 20;

/// axum answers requests it cannot extract (a body over [`BODY_LIMIT`], a
/// bad query string) in plain text; Docker clients expect
/// `{"message": ...}` for every error, so those answers are re-encoded.
async fn json_error(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("request body too large: netd reads at most {BODY_LIMIT} bytes")
    } else {
        // Rejection texts are short; anything longer is cut.
        let body = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .unwrap_or_default();
        String::from_utf8_lossy(&body).trim().to_string()
    };
    ApiError::new(status, message).into_response()
}

/// Docker answers unknown paths (and known paths with another method) with
/// 404 and this message.
async fn not_found() -> ApiError {
    ApiError::not_found("page not found")
}

/// Strips the version prefix, traces the request and sets the common
/// response headers.
async fn outer(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!(
        "api",
        %method,
        %path,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let resp = match strip_version_prefix(req.uri()) {
        Ok(None) => next.run(req).instrument(span.clone()).await,
        Ok(Some(uri)) => {
            *req.uri_mut() = uri;
            next.run(req).instrument(span.clone()).await
        }
        Err(e) => e.into_response(),
    };
    let mut resp = json_error(resp).await;
    let status = resp.status().as_u16();
    // Microsecond resolution is plenty and keeps log lines short.
    let latency_ms = start.elapsed().as_micros() as f64 / 1000.0;
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    span.in_scope(|| {
        // Every docker CLI command pings first: keep those out of the
        // default log level.
        if path.ends_with("/_ping") {
            tracing::debug!(status, latency_ms, "request");
        } else if status >= 500 {
            tracing::warn!(status, latency_ms, "request");
        } else {
            tracing::info!(status, latency_ms, "request");
        }
    });

    let h = resp.headers_mut();
    h.insert("api-version", HeaderValue::from_static(API_VERSION));
    h.insert("ostype", HeaderValue::from_static("linux"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("netd/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    // JSON everywhere, including empty 200/204 bodies; only `_ping` sets
    // its own (text) type.
    h.entry(header::CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    resp
}

/// `/v1.47/networks?x` → `/networks?x`. `Ok(None)` when there is no
/// prefix; an error for versions outside what netd speaks, with Docker's
/// messages.
fn strip_version_prefix(uri: &Uri) -> Result<Option<Uri>, ApiError> {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(None);
    };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(requested) = parse_version(version) else {
        // `/vfoo/...` is not a version prefix; let routing 404 it.
        return Ok(None);
    };
    let max = parse_version(API_VERSION).expect("valid constant");
    let min = parse_version(MIN_API_VERSION).expect("valid constant");
    if requested > max {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if requested < min {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    let new = match uri.query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_owned(),
    };
    let pq: PathAndQuery = new
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid request path {path}")))?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("invalid request path {path}")))
}

/// `1.47` → (1, 47); `None` unless both parts are plain numbers.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(major) || !all_digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// A JSON response with `Content-Type: application/json` exactly (no
/// charset), and the trailing newline Docker's encoder writes.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"message\":\"cannot encode response: {e}\"}}\n"),
        )
            .into_response(),
    }
}

/// Decodes a JSON request body, with Docker's messages (moby's
/// `httputils.ReadJSON`) rather than axum's text rejections.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid JSON: got EOF while reading request body",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// Docker's lenient boolean query values (moby's `httputils.BoolValue`):
/// anything but empty, `0`, `no`, `false` or `none` is true.
pub fn query_bool(v: Option<&str>) -> bool {
    let v = v.unwrap_or("").trim().to_ascii_lowercase();
    !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(p: &str) -> Result<Option<String>, ApiError> {
        strip_version_prefix(&p.parse::<Uri>().unwrap()).map(|o| o.map(|u| u.to_string()))
    }

    #[test]
    fn version_prefix_is_stripped_with_query() {
        assert_eq!(
            strip("/v1.47/networks").unwrap().as_deref(),
            Some("/networks")
        );
        assert_eq!(
            strip("/v1.41/networks?filters=%7B%7D").unwrap().as_deref(),
            Some("/networks?filters=%7B%7D")
        );
        assert_eq!(strip("/v1.24/_ping").unwrap().as_deref(), Some("/_ping"));
        assert_eq!(strip("/v1.47").unwrap().as_deref(), Some("/"));
    }

    #[test]
    fn unprefixed_and_non_version_paths_are_untouched() {
        assert_eq!(strip("/networks").unwrap(), None);
        assert_eq!(strip("/version").unwrap(), None);
        assert_eq!(strip("/vfoo/networks").unwrap(), None);
        assert_eq!(strip("/v1/networks").unwrap(), None);
    }

    #[test]
    fn versions_out_of_range_are_rejected_like_docker() {
        let e = strip("/v1.99/networks").unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "client version 1.99 is too new. Maximum supported API version is 1.47"
        );
        let e = strip("/v1.12/networks").unwrap_err();
        assert!(
            e.message.starts_with("client version 1.12 is too old"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bodies_fail_with_dockers_messages() {
        let e = parse_body::<wire::NetworkCreateRequest>(&Bytes::new()).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "invalid JSON: got EOF while reading request body"
        );
        let e = parse_body::<wire::NetworkCreateRequest>(&Bytes::from_static(b"{\"Name\":"))
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.starts_with("invalid JSON: "), "{}", e.message);
    }

    #[test]
    fn query_bools_are_lenient_like_docker() {
        for t in ["1", "true", "True", "yes"] {
            assert!(query_bool(Some(t)), "{t}");
        }
        for f in ["", "0", "false", "no", "none"] {
            assert!(!query_bool(Some(f)), "{f}");
        }
        assert!(!query_bool(None));
    }

    /// The stateless routes behind the real middleware and `axum::serve`,
    /// queried with the CLI's client over a real unix socket: checks the
    /// prefix rewrite happens before routing, the headers, and the JSON
    /// content type, without needing an engine.
    #[tokio::test]
    async fn served_router_strips_prefixes_and_sets_headers() {
        use tokio::net::UnixListener;

        let dir = std::env::temp_dir().join(format!("netd-api-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("api.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            axum::serve(listener, wrap(system::routes()))
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .into_future(),
        );

        let client =
            crate::cli::client::Client::new(&format!("unix://{}", sock.display())).unwrap();
        for path in ["/_ping", "/v1.47/_ping", "/v1.24/_ping"] {
            let r = client.raw("GET", path, None).await.unwrap();
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(&r.body[..], b"OK");
            assert_eq!(r.headers["api-version"], "1.47");
            assert_eq!(r.headers["ostype"], "linux");
            assert_eq!(r.headers["docker-experimental"], "false");
            assert_eq!(
                r.headers["cache-control"],
                "no-cache, no-store, must-revalidate"
            );
            assert_eq!(r.headers["pragma"], "no-cache");
        }
        let head = client.raw("HEAD", "/_ping", None).await.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["api-version"], "1.47");

        let v: wire::VersionResponse = client.get("/v1.47/version").await.unwrap();
        assert_eq!(v.api_version, "1.47");
        assert_eq!(v.min_api_version, "1.24");
        assert_eq!(v.os, "linux");
        assert_eq!(v.components[0].name, "Engine");
        let r = client.raw("GET", "/version", None).await.unwrap();
        assert_eq!(r.headers["content-type"], "application/json");

        let r = client.raw("GET", "/nope", None).await.unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.headers["content-type"], "application/json");
        let e: wire::ErrorResponse = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(e.message, "page not found");

        let r = client.raw("GET", "/v1.99/version", None).await.unwrap();
        assert_eq!(r.status, 400);

        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
