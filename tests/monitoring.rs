//! The monitoring package end to end: the exporter binary in `--demo` mode, a real Prometheus
//! (from the distribution's packages) scraping it with the shipped rules, and every query of every
//! shipped Grafana dashboard, with its variables substituted, run against that Prometheus. The
//! simulator's SUPPORT queue spikes for the whole run, so the queue-wait alert must go pending.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_crocodial-exporter");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The warm-up and the wait for the alert together; it usually takes under a minute.
const DEADLINE: Duration = Duration::from_secs(150);
/// What Grafana would put in for `$__rate_interval` and `$__range` on a short dashboard range.
const RATE_INTERVAL: &str = "2m";
const RANGE: &str = "5m";

struct Dashboard {
    file: String,
    json: Value,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = Path::new(ROOT).join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dashboards/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| Dashboard {
            file: p.file_name().expect("name").to_string_lossy().into_owned(),
            json: serde_json::from_str(&std::fs::read_to_string(&p).expect("read"))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        })
        .collect()
}

fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        // Collapsed rows keep their panels inside.
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

fn variables(d: &Value) -> Vec<&Value> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .collect()
}

/// Everything the issue asks of a dashboard that can be checked without Prometheus.
#[test]
fn dashboards_are_well_formed() {
    let boards = dashboards();
    let files: Vec<&str> = boards.iter().map(|d| d.file.as_str()).collect();
    assert_eq!(
        files,
        [
            "agents.json",
            "exporter-health.json",
            "inbound-overview.json",
            "queues.json"
        ]
    );
    let mut uids = BTreeSet::new();
    for Dashboard { file, json: d } in &boards {
        assert_eq!(d["schemaVersion"], 42, "{file}: schemaVersion");
        let uid = d["uid"].as_str().expect("uid");
        assert!(uid.starts_with("crocodial-"), "{file}: uid {uid}");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        assert!(
            d.get("id").is_none_or(Value::is_null),
            "{file}: no fixed id"
        );

        let vars: Vec<&str> = variables(d)
            .iter()
            .map(|v| v["name"].as_str().expect("name"))
            .collect();
        let expected: &[&str] = match file.as_str() {
            "inbound-overview.json" | "queues.json" => {
                &["datasource", "target", "queue", "campaign", "sl_threshold"]
            }
            "agents.json" => &["datasource", "target", "agent"],
            _ => &["datasource", "target"],
        };
        assert_eq!(vars, expected, "{file}: variables");
        for v in variables(d) {
            let name = v["name"].as_str().expect("name");
            match v["type"].as_str() {
                Some("datasource") => assert_eq!(v["query"], "prometheus"),
                Some("query") => {
                    assert_eq!(v["includeAll"], true, "{file}: ${name} has All");
                    assert_eq!(v["allValue"], ".*", "{file}: ${name} All is .*");
                    assert_eq!(v["datasource"]["uid"], "${datasource}");
                }
                Some("custom") => assert_eq!(name, "sl_threshold"),
                other => panic!("{file}: ${name} has type {other:?}"),
            }
        }

        for p in panels(d) {
            let title = p["title"].as_str().expect("title");
            if p["type"] == "row" {
                continue;
            }
            let what = format!("{file}: panel {title:?}");
            assert!(
                p["description"].as_str().is_some_and(|s| s.len() > 20),
                "{what}: description"
            );
            assert!(
                p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{what}: unit"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{what}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{what}: no query");
            for t in targets {
                let expr = t["expr"].as_str().expect("expr");
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{what}");
                assert!(expr.contains("$target"), "{what}: not filtered by target");
                // Range vectors follow the dashboard: $__rate_interval or $__range, except
                // the explicitly hourly counts of rare events.
                for window in expr.split('[').skip(1) {
                    let window = window.split(']').next().expect("]");
                    assert!(
                        ["$__rate_interval", "$__range", "1h"].contains(&window),
                        "{what}: window [{window}]"
                    );
                }
            }
        }
    }
    let by_file = |f: &str| &boards.iter().find(|d| d.file == f).expect("file").json;
    let titles = |f: &str| -> Vec<String> {
        panels(by_file(f))
            .iter()
            .map(|p| p["title"].as_str().expect("title").to_string())
            .collect()
    };
    for want in [
        "Calls per minute",
        "Service level",
        "Average speed of answer",
        "Abandon rate",
        "Average handle time",
        "Queue wait p50 / p90 / p99",
        "Dispositions",
        "Term reasons",
    ] {
        assert!(
            titles("inbound-overview.json").iter().any(|t| t == want),
            "{want}"
        );
    }
    assert!(panels(by_file("queues.json"))
        .iter()
        .any(|p| p["type"] == "heatmap" && p["targets"][0]["format"] == "heatmap"));
}

/// A Prometheus server as a child process, on its own port and data directory.
struct Prometheus {
    base: String,
    log: PathBuf,
    _child: KillOnDrop,
}

fn start_prometheus(dir: &Path, exporter: &str) -> Option<Prometheus> {
    match Command::new("prometheus").arg("--version").output() {
        Ok(_) => {}
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED the Prometheus end-to-end test ({e}): apt-get install prometheus");
            return None;
        }
        Err(e) => panic!("prometheus is required in CI: {e}"),
    }
    let rules = Path::new(ROOT).join("deploy/prometheus/rules.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: crocodial\n    static_configs:\n      - targets: ['{exporter}']\n",
            rules = rules.display()
        ),
    )
    .expect("write prometheus.yml");
    let port = free_port();
    let log = dir.join("prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn prometheus");
    Some(Prometheus {
        base: format!("http://127.0.0.1:{port}"),
        log,
        _child: KillOnDrop(child),
    })
}

impl Prometheus {
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = format!("{}{path}", self.base);
        let body = reqwest::Client::new()
            .get(&url)
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .text()
            .await
            .expect("body");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One substitution of a dashboard's variables, as Grafana would make it.
#[derive(Debug, Clone)]
struct Selection {
    name: &'static str,
    values: Vec<(&'static str, String)>,
}

impl Selection {
    fn apply(&self, expr: &str) -> String {
        let mut out = expr
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$__range", RANGE);
        for (var, value) in &self.values {
            out = out
                .replace(&format!("${{{var}}}"), value)
                .replace(&format!("${var}"), value);
        }
        assert!(!out.contains('$'), "unsubstituted variable in {out}");
        out
    }
}

/// What is wrong with one query's answer: None when it has at least one finite sample.
fn no_data(answer: &Value) -> Option<String> {
    if answer["status"] != "success" {
        return Some(format!("error: {}", answer["error"]));
    }
    let result = answer["data"]["result"].as_array()?;
    let finite = result.iter().any(|s| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    });
    (!finite).then(|| format!("no finite sample in {result:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_returns_data_and_the_queue_wait_alert_fires_on_the_spike() {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("crocodial-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    let port = free_port();
    let exporter_addr = format!("127.0.0.1:{port}");
    let Some(prom) = start_prometheus(&dir, &exporter_addr) else {
        return;
    };
    // The demo, busier than its default and with the SUPPORT queue's wait spike (10 times the
    // usual waits) lasting all day, so that within a minute every panel has calls to show and
    // the alert has waits to go on. The other queues wait as usual.
    let exporter = Command::new(BIN)
        .args(["--demo", "--state.file", "", "--poll.interval", "2s"])
        .args(["--sim.calls-per-minute", "100"])
        .args(["--sim.spike-every", "24h", "--sim.spike-length", "24h"])
        .args(["--web.listen-address", &exporter_addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn exporter");
    let _exporter = KillOnDrop(exporter);
    wait_ready(&format!("http://{exporter_addr}")).await;
    while reqwest::get(format!("{}/-/ready", prom.base))
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(
            started.elapsed() < DEADLINE,
            "Prometheus not ready:\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let boards = dashboards();
    let all = Selection {
        name: "All",
        values: vec![
            ("target", ".*".into()),
            ("queue", ".*".into()),
            ("campaign", ".*".into()),
            ("agent", ".*".into()),
            ("sl_threshold", "20".into()),
        ],
    };
    // A supervisor's pick: one queue that is not spiking, and its campaign.
    let one = Selection {
        name: "one of each",
        values: vec![
            ("target", "demo".into()),
            ("queue", "BILLING".into()),
            ("campaign", "INBOUND_SALES".into()),
            ("agent", ".*".into()),
            ("sl_threshold", "20".into()),
        ],
    };

    let mut missing: Vec<String>;
    let mut alert_state: String;
    loop {
        missing = Vec::new();
        for Dashboard { file, json: d } in &boards {
            // Variable queries, label_values(selector, label), as the label values API.
            for v in variables(d) {
                let Some(def) = v["definition"].as_str() else {
                    continue;
                };
                let inner = def
                    .strip_prefix("label_values(")
                    .and_then(|s| s.strip_suffix(')'))
                    .expect("label_values(...)");
                let (selector, label) = inner.rsplit_once(", ").expect("selector, label");
                let selector = all.apply(selector);
                let answer = prom
                    .api(
                        &format!("/api/v1/label/{label}/values"),
                        &[("match[]", &selector)],
                    )
                    .await;
                let values = answer["data"].as_array().cloned().unwrap_or_default();
                if values.is_empty() {
                    missing.push(format!("{file}: variable {label}: {answer}"));
                }
            }
            for p in panels(d) {
                for t in p["targets"].as_array().into_iter().flatten() {
                    let expr = t["expr"].as_str().expect("expr");
                    for sel in [&all, &one] {
                        let query = sel.apply(expr);
                        let answer = prom.api("/api/v1/query", &[("query", &query)]).await;
                        // A query Prometheus refuses never gets better: fail at once.
                        assert_eq!(
                            answer["status"], "success",
                            "{file}: {:?}: {query}: {answer}",
                            p["title"]
                        );
                        if let Some(why) = no_data(&answer) {
                            missing.push(format!(
                                "{file}: {} ({}): {query}: {why}",
                                p["title"], sel.name
                            ));
                        }
                    }
                }
            }
        }
        let alerts = prom.api("/api/v1/alerts", &[]).await;
        let alerts = alerts["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let wait_high: Vec<(String, String)> = alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == "CrocodialQueueWaitHigh")
            .map(|a| {
                (
                    a["labels"]["queue"].as_str().unwrap_or("").to_string(),
                    a["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        alert_state = format!("{wait_high:?}");
        // Only the spiking queue: the others wait 12 s on average.
        for (queue, _) in &wait_high {
            assert_eq!(
                queue, "SUPPORT",
                "queue-wait alert for {queue}: {alert_state}"
            );
        }
        // Nothing is wrong with the exporter or the API.
        for a in &alerts {
            let name = a["labels"]["alertname"].as_str().unwrap_or("");
            assert!(
                ![
                    "CrocodialExporterDown",
                    "CrocodialPollsFailing",
                    "CrocodialDataStale"
                ]
                .contains(&name),
                "{name} is {}",
                a["state"]
            );
        }
        let pending = wait_high
            .iter()
            .any(|(_, state)| state == "pending" || state == "firing");
        if missing.is_empty() && pending {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "after {:?}: queue-wait alert {alert_state}; queries without data:\n{}\n\nPrometheus log:\n{}",
            started.elapsed(),
            missing.join("\n"),
            prom.log()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    // Every choice of the service-level threshold is a bucket bound the exporter exposes.
    for Dashboard { json: d, .. } in &boards {
        for v in variables(d)
            .into_iter()
            .filter(|v| v["name"] == "sl_threshold")
        {
            for option in v["query"].as_str().expect("options").split(',') {
                let query = format!(
                    "count(crocodial_inbound_queue_time_seconds_bucket{{le=~\"{option}(\\\\.0)?\"}})"
                );
                let answer = prom.api("/api/v1/query", &[("query", &query)]).await;
                assert_eq!(no_data(&answer), None, "sl_threshold {option}");
            }
        }
    }
    eprintln!(
        "every panel returned data and CrocodialQueueWaitHigh is {alert_state} after {:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
