//! Monitoring with the real tools: Debian's `promtool` lints a live scrape
//! and checks and runs the shipped alert rules' tests, a real Prometheus
//! server scrapes a test daemon on loopback and answers for its series
//! through its HTTP API, and every expression of the shipped Grafana
//! dashboard names metrics the daemon exports and evaluates in that
//! Prometheus. Subnets 10.174.* are this file's.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Daemon, free_port, stderr, stdout};
use serde_json::Value;

const DIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist");

fn promtool(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(Path::new(DIST).join("prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (cargo xtask setup installs prometheus)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn alert_rules_are_valid_and_pass_their_tests() {
    let check = promtool(&["check", "rules", "alerts.yml"], None);
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    let test = promtool(&["test", "rules", "alerts_test.yml"], None);
    assert!(test.status.success(), "{}{}", stdout(&test), stderr(&test));
    // Every alert of the file has a test that fires it.
    let rules = std::fs::read_to_string(Path::new(DIST).join("prometheus/alerts.yml")).unwrap();
    let tests =
        std::fs::read_to_string(Path::new(DIST).join("prometheus/alerts_test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts:")),
            "{alert} is exercised"
        );
    }
}

/// A Prometheus server on a loopback port of its own, with its data in a
/// directory of its own, scraping `target` every second with the shipped
/// alert rules loaded. Killed and removed on drop.
struct Prometheus {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("netd-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rules = Path::new(DIST).join("prometheus/alerts.yml");
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [{rules:?}]\n\
                 scrape_configs:\n  - job_name: netd\n    static_configs:\n      - targets: [{target:?}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus runs (cargo xtask setup installs it)");
        Prometheus { port, dir, child }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET `path` of the HTTP API, parsed; `None` until the server answers.
    fn get(&self, path: &str) -> Option<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }

    /// An instant query.
    fn query(&self, expr: &str) -> Value {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        self.get(&path)
            .unwrap_or_else(|| panic!("no answer to {expr}:\n{}", self.log()))
    }

    /// Waits until `expr` has a result.
    fn wait_for(&self, expr: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.get(&format!("/api/v1/query?query={}", percent_encode(expr)))
                && v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus has no {expr}:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("prometheus data and log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A URL query value: everything but RFC 3986's unreserved characters
/// percent-encoded.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The body of one scrape.
fn scrape(d: &Daemon) -> String {
    let response = d.metrics();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_string()
}

/// The series names a scrape (in the Prometheus text format, where a
/// counter's family is named like its samples) can hold: each family's
/// name, with `_bucket`, `_sum` and `_count` for histograms, whether or
/// not it has samples right now.
fn exported_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

/// The `netd_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("netd_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

/// Every `expr` of the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(DIST).join("grafana/netd.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("a target has an expr")
                .to_string()
        })
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    exprs
}

#[test]
fn prometheus_scrapes_a_live_daemon_and_the_dashboard_matches_it() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.174.0.0/24", "n1"]);
    d.ok(&[
        "container",
        "create",
        "--network",
        "n1",
        "-p",
        "8080:80",
        "web",
    ]);

    let body = scrape(&d);
    let lint = promtool(&["check", "metrics"], Some(&body));
    assert!(
        lint.status.success() && stdout(&lint).trim().is_empty(),
        "promtool check metrics: {}{}\n--- scrape ---\n{body}",
        stdout(&lint),
        stderr(&lint)
    );

    // Prometheus asks for OpenMetrics, and gets it.
    let mut s = TcpStream::connect(("127.0.0.1", d.metrics_port)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n"
    )
    .unwrap();
    let mut openmetrics = String::new();
    s.read_to_string(&mut openmetrics).unwrap();
    assert!(
        openmetrics.contains("content-type: application/openmetrics-text")
            && openmetrics.contains("\n# TYPE netd_drops counter\n")
            && openmetrics.ends_with("# EOF\n"),
        "{openmetrics}"
    );

    let exported = exported_names(&body);
    let exprs = dashboard_exprs();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "the dashboard's {expr} names {name}, which netd does not export: {exported:?}"
            );
        }
    }

    let target = format!("127.0.0.1:{}", d.metrics_port);
    let prometheus = Prometheus::start(&target);
    let up = prometheus.wait_for("up{job=\"netd\"} == 1");
    assert_eq!(
        up["data"]["result"][0]["metric"]["instance"],
        target.as_str()
    );
    let containers = prometheus.wait_for("netd_containers");
    assert_eq!(containers["data"]["result"][0]["value"][1], "1");
    prometheus.wait_for("netd_endpoint_packets_total{container=\"web\",network=\"n1\"}");
    prometheus.wait_for("netd_published_port_flows_total{port=\"8080/tcp\"}");

    // Dashboard variables as Grafana fills them in.
    for expr in &exprs {
        let expr = expr
            .replace("$instance", ".*")
            .replace("$__rate_interval", "1m");
        let answer = prometheus.query(&expr);
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
    }
    // The shipped rules are loaded, and evaluate without errors.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rules = prometheus.get("/api/v1/rules").expect("rules");
        let groups = rules["data"]["groups"].as_array().unwrap();
        let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
        assert_eq!(names, vec!["netd", "netd-cluster-store"]);
        if groups
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .all(|r| r["health"] == "ok")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules unhealthy: {}",
            serde_json::to_string_pretty(&rules).unwrap()
        );
        sleep(Duration::from_millis(250));
    }
}
