//! `/_ping`, `/version` and `/info`: what the docker CLI asks before and
//! besides the network calls. `_ping`'s headers drive the docker CLI's
//! version negotiation, so they must be exactly Docker's.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::wire::{ComponentVersion, InfoResponse, Platform, Plugins, Swarm, VersionResponse};
use super::{API_VERSION, AppState, MIN_API_VERSION, json_response};

/// The routes that need no engine; generic over the state so that they can
/// be merged into the full router and also served alone in tests.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/_ping", get(ping))
        .route("/version", get(version))
}

/// `GET|HEAD /_ping` (axum answers HEAD with the GET handler, body removed).
pub async fn ping() -> Response {
    let mut resp = (StatusCode::OK, "OK").into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("api-version", HeaderValue::from_static(API_VERSION));
    h.insert("ostype", HeaderValue::from_static("linux"));
    h.insert("docker-experimental", HeaderValue::from_static("false"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /version`, in Docker's shape (`docker version` prints it).
pub async fn version() -> Response {
    json_response(StatusCode::OK, &version_info())
}

/// Build metadata comes from the environment at compile time when the
/// build sets it (`NETD_GIT_COMMIT`, `NETD_BUILD_TIME`), "unknown" if not.
pub fn version_info() -> VersionResponse {
    let version = env!("CARGO_PKG_VERSION").to_string();
    let git_commit = option_env!("NETD_GIT_COMMIT")
        .unwrap_or("unknown")
        .to_string();
    let build_time = option_env!("NETD_BUILD_TIME")
        .unwrap_or("unknown")
        .to_string();
    let kernel = kernel_version();
    let arch = go_arch().to_string();
    let details: BTreeMap<String, String> = [
        ("ApiVersion", API_VERSION),
        ("Arch", arch.as_str()),
        ("BuildTime", build_time.as_str()),
        ("Experimental", "false"),
        ("GitCommit", git_commit.as_str()),
        ("GoVersion", "n/a"),
        ("KernelVersion", kernel.as_str()),
        ("MinAPIVersion", MIN_API_VERSION),
        ("Os", "linux"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    VersionResponse {
        platform: Platform {
            name: "netd".into(),
        },
        components: vec![ComponentVersion {
            name: "Engine".into(),
            version: version.clone(),
            details,
        }],
        version,
        api_version: API_VERSION.into(),
        min_api_version: MIN_API_VERSION.into(),
        git_commit,
        go_version: "n/a".into(),
        os: "linux".into(),
        arch,
        kernel_version: kernel,
        build_time,
    }
}

/// `GET /info`: counts from the engine plus host facts.
pub async fn info(State(app): State<AppState>) -> Response {
    let snap = app.engine.snapshot();
    let st = &snap.state;
    let running = st
        .containers
        .values()
        .filter(|c| snap.running_pid(c).is_some())
        .count();
    let (containers, networks) = (st.containers.len(), st.networks.len());
    let info = InfoResponse {
        id: String::new(),
        containers,
        containers_running: running,
        containers_paused: 0,
        containers_stopped: containers - running,
        images: 0,
        networks,
        driver: String::new(),
        plugins: Plugins {
            volume: Vec::new(),
            network: snap.drivers.names().map(str::to_string).collect(),
            log: Vec::new(),
        },
        kernel_version: kernel_version(),
        operating_system: operating_system(),
        os_type: "linux".into(),
        architecture: std::env::consts::ARCH.into(),
        ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_total: mem_total(),
        name: read_trimmed("/proc/sys/kernel/hostname"),
        server_version: env!("CARGO_PKG_VERSION").into(),
        swarm: Swarm {
            local_node_state: "inactive".into(),
            ..Default::default()
        },
        warnings: Vec::new(),
    };
    json_response(StatusCode::OK, &info)
}

/// Go's name for the architecture, which Docker reports in `/version`.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `uname -r`, without unsafe code.
fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

/// `PRETTY_NAME` from os-release, as Docker reports it.
fn operating_system() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// Total memory in bytes, from /proc/meminfo (given in kB).
fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_has_dockers_shape() {
        let v = serde_json::to_value(version_info()).unwrap();
        for key in [
            "Platform",
            "Components",
            "Version",
            "ApiVersion",
            "MinAPIVersion",
            "GitCommit",
            "GoVersion",
            "Os",
            "Arch",
            "KernelVersion",
            "BuildTime",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["ApiVersion"], "1.47");
        assert_eq!(v["MinAPIVersion"], "1.24");
        assert_eq!(v["GoVersion"], "n/a");
        assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["Components"][0]["Name"], "Engine");
        assert_eq!(v["Components"][0]["Details"]["ApiVersion"], "1.47");
        assert_eq!(v["Platform"]["Name"], "netd");
    }
}
