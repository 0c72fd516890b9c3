//! The monitoring package end to end: the exporter binary in `--demo` mode, a real Prometheus
//! (from the distribution's packages) scraping it with the shipped rules, and every query of every
//! shipped Grafana dashboard, with its variables substituted, run against that Prometheus. The
//! simulator's SUPPORT queue spikes for the whole run, so both wait alerts must go pending there
//! and nowhere else. `tests/alerting.rs` times them in real time.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_crocodial-exporter");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The warm-up and the wait for the alerts together; it usually takes one to two minutes, on a
/// busy CI machine more.
const DEADLINE: Duration = Duration::from_secs(420);
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
    let exprs = |p: &Value| -> Vec<String> {
        p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["expr"].as_str().expect("expr").to_string())
            .collect()
    };
    let mut uids = BTreeSet::new();
    // Recording rules the dashboards read, checked against deploy/prometheus/rules.yml below.
    let mut rules_used = BTreeSet::new();
    for Dashboard { file, json: d } in &boards {
        assert_eq!(d["schemaVersion"], 42, "{file}: schemaVersion");
        let uid = d["uid"].as_str().expect("uid");
        assert!(uid.starts_with("crocodial-"), "{file}: uid {uid}");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        assert!(
            d.get("id").is_none_or(Value::is_null),
            "{file}: no fixed id"
        );
        // The time axes follow the dashboard's zone, set explicitly (the day figures are the
        // dialer's own day whatever it is).
        assert!(
            d["timezone"].as_str().is_some_and(|s| !s.is_empty()),
            "{file}: timezone"
        );

        let vars: Vec<&str> = variables(d)
            .iter()
            .map(|v| v["name"].as_str().expect("name"))
            .collect();
        // Each queue's service-level threshold and goal come from the exporter's gauges: no
        // variable.
        let expected: &[&str] = match file.as_str() {
            "inbound-overview.json" | "queues.json" => {
                &["datasource", "target", "queue", "campaign"]
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
                other => panic!("{file}: ${name} has type {other:?}"),
            }
        }

        let kpi_board = matches!(file.as_str(), "inbound-overview.json" | "queues.json");
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
            let defaults = &p["fieldConfig"]["defaults"];
            assert!(
                defaults["unit"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: unit"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{what}");
            // The alert list reads the alerting rules, not a query: the only panel without one.
            if p["type"] == "alertlist" {
                assert!(
                    p["targets"].as_array().is_none_or(Vec::is_empty),
                    "{what}: an alert list has no query"
                );
                continue;
            }
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{what}: no query");
            // Single figures say why they are empty ("no calls") instead of NaN or "No data".
            if ["stat", "bargauge", "table", "gauge"].contains(&p["type"].as_str().unwrap_or("")) {
                assert!(
                    defaults["noValue"].as_str().is_some_and(|s| !s.is_empty()),
                    "{what}: noValue"
                );
            }
            // A day figure says "today" and is the dialer's own day: the exporter's day gauges
            // (crocodial_inbound_today_*) as they stand, not an increase over a range in the
            // dashboard's zone. No panel overrides the dashboard's time range.
            let today = title.to_lowercase().contains("today");
            assert!(
                p.get("timeFrom").is_none_or(Value::is_null),
                "{what}: timeFrom (the day figures read the exporter's day gauges)"
            );
            for t in targets {
                let expr = t["expr"].as_str().expect("expr");
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{what}");
                assert!(expr.contains("$target"), "{what}: not filtered by target");
                if today {
                    assert!(
                        expr.contains("crocodial_inbound_today_") && !expr.contains('['),
                        "{what}: a day figure reads the day gauges, without a range: {expr}"
                    );
                    assert_eq!(
                        t["instant"], true,
                        "{what}: a day figure is an instant query"
                    );
                } else {
                    assert!(
                        !expr.contains("crocodial_inbound_today_"),
                        "{what}: a day gauge in a panel that does not say today"
                    );
                }
                // Range vectors follow the dashboard: $__rate_interval or $__range, except
                // the explicitly hourly counts of rare events.
                for window in expr.split('[').skip(1) {
                    let window = window.split(']').next().expect("]");
                    assert!(
                        ["$__rate_interval", "$__range", "1h"].contains(&window),
                        "{what}: window [{window}]"
                    );
                }
                // Every division is guarded against a zero denominator: `x / (... > 0)`, so
                // that nothing offered shows as no value, never as NaN.
                for (at, _) in expr.match_indices('/') {
                    let rest = expr[at + 1..].trim_start();
                    let mut depth = 0;
                    let end = rest
                        .char_indices()
                        .find(|&(_, c)| {
                            match c {
                                '(' => depth += 1,
                                ')' => depth -= 1,
                                _ => {}
                            }
                            depth <= 0
                        })
                        .map(|(i, _)| i);
                    assert!(
                        rest.starts_with('(')
                            && end.is_some_and(|end| rest[..end].trim_end().ends_with("> 0")),
                        "{what}: unguarded division in {expr}"
                    );
                }
                // Outcomes come from the exporter's rules, never from values the dashboards
                // hard-code (sites spell dispositions and term reasons differently).
                for label in ["disposition", "term_reason"] {
                    assert!(
                        !expr.contains(&format!("{label}="))
                            && !expr.contains(&format!("{label}!")),
                        "{what}: filters on a {label} value"
                    );
                }
                // The histograms and the leg counters mix answered, abandoned and other calls:
                // always pick.
                for histogram in [
                    "crocodial_inbound_queue_time_seconds_",
                    "crocodial_inbound_call_duration_seconds_",
                    "crocodial_inbound_legs_total",
                    "crocodial_inbound_today_legs",
                ] {
                    assert!(
                        !expr.contains(histogram) || expr.contains("outcome"),
                        "{what}: {histogram} without outcome"
                    );
                }
                // The live queue state comes from its recording rules.
                assert!(
                    !expr.contains("crocodial_inbound_oldest_wait_seconds{")
                        && !expr.contains("state=\"waiting\""),
                    "{what}: raw live gauge instead of the recording rule"
                );
                // Over time, the KPIs are the 5-minute recording rules, and today the day
                // gauges; only quantiles and the heatmap read the histograms, and no panel counts
                // legs from the raw counters.
                if kpi_board {
                    let raw_kpi = ["_count{", "_sum{"].iter().any(|s| {
                        expr.contains(&format!("crocodial_inbound_queue_time_seconds{s}"))
                            || expr.contains(&format!("crocodial_inbound_call_duration_seconds{s}"))
                    }) || expr.contains("crocodial_inbound_legs_total")
                        || (expr.contains("crocodial_inbound_queue_time_seconds_bucket")
                            && !expr.contains("histogram_quantile")
                            && t["format"] != "heatmap");
                    assert!(!raw_kpi, "{what}: a KPI not built on the recording rules");
                }
                for token in
                    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                {
                    if token.matches(':').count() == 2 {
                        rules_used.insert(token.to_string());
                    }
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
        "Calls waiting now",
        "Longest wait now",
        "Data freshness",
        "Alerts",
        "Offered today",
        "Answered today",
        "Abandoned today",
        "Service level today",
        "Abandon rate today",
        "Average speed of answer today",
        "Average handle time today",
        "Calls waiting",
        "Longest wait",
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
    for f in ["inbound-overview.json", "queues.json"] {
        let board = panels(by_file(f));
        // What is happening now comes first: callers waiting and the longest wait.
        let top = board
            .iter()
            .filter(|p| p["type"] != "row")
            .filter_map(|p| p["gridPos"]["y"].as_u64())
            .min()
            .expect("panels");
        let first: Vec<&str> = board
            .iter()
            .filter(|p| p["type"] != "row" && p["gridPos"]["y"].as_u64() == Some(top))
            .map(|p| p["title"].as_str().expect("title"))
            .collect();
        for want in ["Calls waiting now", "Longest wait now"] {
            assert!(
                first.iter().any(|t| t.starts_with(want)),
                "{f}: {want} in the top row {first:?}"
            );
        }
        // Thresholds drawn on the time series of service level, abandon rate and waits.
        for (kind, needle, unit) in [
            ("service level", "answered_within_threshold", "percentunit"),
            ("abandon rate", "abandoned_calls", "percentunit"),
            ("longest wait", "oldest_wait_seconds", "s"),
        ] {
            let series: Vec<&&Value> = board
                .iter()
                .filter(|p| {
                    p["type"] == "timeseries"
                        && p["fieldConfig"]["defaults"]["unit"] == unit
                        && exprs(p).iter().any(|e| e.contains(needle))
                })
                .collect();
            assert!(!series.is_empty(), "{f}: a {kind} time series");
            for p in series {
                let defaults = &p["fieldConfig"]["defaults"];
                assert!(
                    defaults["custom"]["thresholdsStyle"]["mode"]
                        .as_str()
                        .is_some_and(|m| m != "off"),
                    "{f}: {:?} draws its threshold",
                    p["title"]
                );
                assert!(
                    defaults["thresholds"]["steps"]
                        .as_array()
                        .is_some_and(|s| s.len() >= 2),
                    "{f}: {:?} has a threshold to draw",
                    p["title"]
                );
            }
        }
    }
    let overview = panels(by_file("inbound-overview.json"));
    assert_eq!(
        overview.iter().filter(|p| p["type"] == "alertlist").count(),
        1,
        "overview: one alert list"
    );
    assert!(
        overview.iter().any(|p| exprs(p).iter().any(|e| {
            e.contains("time() - ") && e.contains("crocodial_last_poll_success_timestamp_seconds")
        })),
        "overview: data freshness"
    );
    let alert_list = overview
        .iter()
        .find(|p| p["type"] == "alertlist")
        .expect("alert list");
    assert!(
        alert_list["options"]["alertInstanceLabelFilter"]
            .as_str()
            .is_some_and(|f| f.contains("target=~") && f.contains("${target")),
        "overview: the alert list is filtered by $target"
    );
    // Each dashboard says what it needs: the rules file in its description, the data source
    // Grafana's import asks for (the datasource variable starts on it), the minimum Grafana
    // version; the dashboards built on the rules show when they are missing.
    for Dashboard { file, json: d } in &boards {
        assert!(
            d["description"]
                .as_str()
                .is_some_and(|s| s.contains("deploy/prometheus/rules.yml")),
            "{file}: the description names deploy/prometheus/rules.yml"
        );
        let input = &d["__inputs"][0];
        assert_eq!(input["type"], "datasource", "{file}: __inputs");
        assert_eq!(input["pluginId"], "prometheus", "{file}: __inputs");
        let name = format!("${{{}}}", input["name"].as_str().expect("input name"));
        assert_eq!(
            variables(d)[0]["current"]["value"],
            name.as_str(),
            "{file}: the datasource variable starts on the imported data source"
        );
        assert!(
            d["__requires"]
                .as_array()
                .expect("__requires")
                .iter()
                .any(|r| r["id"] == "grafana"
                    && r["version"].as_str().is_some_and(|v| !v.is_empty())),
            "{file}: __requires names the minimum Grafana version"
        );
    }
    for f in [
        "inbound-overview.json",
        "queues.json",
        "exporter-health.json",
    ] {
        assert!(
            panels(by_file(f)).iter().any(|p| {
                exprs(p)
                    .iter()
                    .any(|e| e.contains("absent(crocodial:runbook_base_url:info)"))
                    && p["fieldConfig"]["defaults"]["mappings"]
                        .to_string()
                        .contains("load deploy/prometheus/rules.yml")
            }),
            "{f}: a panel says when the rules are missing"
        );
    }
    let queues = panels(by_file("queues.json"));
    // A KPI table per queue whose cells are coloured by thresholds.
    let kpi_tables: Vec<&&Value> = queues
        .iter()
        .filter(|p| p["type"] == "table")
        .filter(|p| {
            let renamed: Vec<&str> = p["transformations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["options"]["renameByName"].as_object())
                .flat_map(|m| m.values().filter_map(Value::as_str))
                .collect();
            [
                "Queue",
                "Offered",
                "Answered",
                "Abandoned",
                "Service level",
                "Abandon rate",
                "ASA",
                "AHT",
            ]
            .iter()
            .all(|c| renamed.contains(c))
        })
        .collect();
    assert!(!kpi_tables.is_empty(), "queues: a KPI table per queue");
    for p in kpi_tables {
        assert!(
            p["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .all(|t| t["format"] == "table" && t["instant"] == true),
            "queues: {:?} instant table queries",
            p["title"]
        );
        // Service level against each queue's own goal: the goal status cell carries the colour
        // (a cell's thresholds cannot differ row by row).
        for column in ["Goal status", "Abandon rate", "ASA"] {
            let coloured = p["fieldConfig"]["overrides"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| o["matcher"]["options"] == column)
                .flat_map(|o| o["properties"].as_array().into_iter().flatten())
                .any(|prop| {
                    prop["id"] == "custom.cellOptions"
                        && prop["value"]["type"] == "color-background"
                });
            assert!(coloured, "queues: {:?} colours {column}", p["title"]);
        }
    }
    assert!(queues
        .iter()
        .any(|p| p["type"] == "heatmap" && p["targets"][0]["format"] == "heatmap"));

    // Means divide by the legs whose value is known: ASA by the answered legs with a queue time,
    // an agent's AHT by the agent's answered legs with a talk time (as the queues' AHT does).
    for Dashboard { file, json: d } in &boards {
        for p in panels(d) {
            for e in exprs(p) {
                let what = format!("{file}: panel {:?}: {e}", p["title"]);
                if e.contains("answered_queue_time_seconds:rate5m") {
                    assert!(
                        e.contains("answered_queue_time_seconds_count:rate5m")
                            && !e.contains("answered_calls:rate5m"),
                        "{what}: ASA over the answered legs with a known queue time"
                    );
                }
                if e.contains("crocodial_inbound_agent_talk_time_seconds_total") && e.contains('/')
                {
                    assert!(
                        e.contains("crocodial_inbound_agent_talk_time_calls_total")
                            && !e.contains("crocodial_inbound_agent_calls_total"),
                        "{what}: agent AHT over the answered legs with a known talk time"
                    );
                }
            }
        }
    }
    // Agents on a call: the calls in the talking state now, not talk seconds per second.
    let on_a_call = panels(by_file("agents.json"))
        .into_iter()
        .find(|p| p["title"] == "Agents on a call")
        .expect("agents: Agents on a call");
    assert!(
        exprs(on_a_call)
            .iter()
            .all(|e| e.contains("crocodial_inbound_calls_talking:sum") && !e.contains("rate(")),
        "agents: Agents on a call counts the calls talking now"
    );

    // Every recording rule a dashboard reads is one deploy/prometheus/rules.yml records.
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("deploy/prometheus/rules.yml"))
            .expect("rules.yml"),
    )
    .expect("rules.yml parses");
    let recorded: BTreeSet<&str> = rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .filter_map(|r| r["record"].as_str())
        .collect();
    for rule in [
        "target_queue_campaign:crocodial_inbound_offered_calls:rate5m",
        "target_queue_campaign:crocodial_inbound_answered_calls:rate5m",
        "target_queue_campaign:crocodial_inbound_abandoned_calls:rate5m",
        "target_queue_campaign:crocodial_inbound_answered_within_threshold_calls:rate5m",
        "target_queue_campaign:crocodial_inbound_answered_queue_time_seconds:rate5m",
        "target_queue_campaign:crocodial_inbound_answered_queue_time_seconds_count:rate5m",
        "target_queue_campaign:crocodial_inbound_unfinished_calls:rate5m",
        "target_queue_campaign:crocodial_inbound_answered_call_duration_seconds:rate5m",
        "target_queue:crocodial_inbound_calls_waiting:sum",
        "target:crocodial_inbound_calls_talking:sum",
        "target_queue:crocodial_inbound_oldest_wait_seconds:max",
    ] {
        assert!(rules_used.contains(rule), "the dashboards read {rule}");
    }
    let unknown: Vec<&String> = rules_used
        .iter()
        .filter(|r| !recorded.contains(r.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "recording rules the dashboards read but rules.yml does not record: {unknown:?}"
    );
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
    let Some(prom) = prometheus::start(&dir, &exporter_addr, "2s") else {
        return;
    };
    // The demo, busier than its default and with the SUPPORT queue's wait spike lasting all day,
    // so that within a minute every panel has calls to show and the alert has waits to go on.
    // The spike is 30 times the usual waits (mean 4 min): at the default 10 times, about 20% of
    // the offered calls wait over 2 min, close enough to the alert's 10% that a few quiet
    // minutes of the (seeded, per-minute) traffic kept it below for over 4 minutes on a CI run.
    // At 30 times it is about 45%. The other queues wait as usual.
    let exporter = Command::new(BIN)
        .args(["--demo", "--state.file", "", "--poll.interval", "2s"])
        .args(["--sim.calls-per-minute", "100"])
        .args(["--sim.spike-every", "24h", "--sim.spike-length", "24h"])
        .args(["--sim.spike-factor", "30"])
        .args(["--web.listen-address", &exporter_addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn exporter");
    let _exporter = KillOnDrop(exporter);
    wait_ready(&format!("http://{exporter_addr}")).await;
    prom.wait_ready(started + DEADLINE).await;

    let boards = dashboards();
    let all = Selection {
        name: "All",
        values: vec![
            ("target", ".*".into()),
            ("queue", ".*".into()),
            ("campaign", ".*".into()),
            ("agent", ".*".into()),
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
        let alerts = prom.alerts().await;
        alert_state = format!("{alerts:?}");
        for (name, queue, state) in &alerts {
            match name.as_str() {
                // Only the spiking queue: the others wait 8 s on average.
                "CrocodialQueueWaitHigh" | "CrocodialCallersWaitingLong" => {
                    assert_eq!(queue, "SUPPORT", "{name} for {queue}: {alert_state}")
                }
                // Nothing is wrong with the exporter or the API (the absent alert may be
                // pending before the first scrape, never firing).
                "CrocodialExporterAbsent" => assert_eq!(state, "pending", "{name}"),
                "CrocodialExporterDown" | "CrocodialPollsFailing" | "CrocodialDataStale" => {
                    panic!("{name} is {state}")
                }
                _ => {}
            }
        }
        let active = |alert: &str| {
            alerts
                .iter()
                .any(|(name, queue, _)| name == alert && queue == "SUPPORT")
        };
        let pending = active("CrocodialQueueWaitHigh") && active("CrocodialCallersWaitingLong");
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

    // Every ratio the rules record is a share: within [0, 1], whatever the traffic did.
    let ratios = prom
        .api(
            "/api/v1/query",
            &[("query", r#"{__name__=~".+:ratio_rate5m"}"#)],
        )
        .await;
    let ratios = ratios["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(ratios.len() > 10, "{ratios:?}");
    for r in &ratios {
        let v: f64 = r["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("value");
        assert!((0.0..=1.0).contains(&v), "{r}");
    }
    eprintln!(
        "every panel returned data, {} ratios are within [0, 1], and the wait alerts are active for SUPPORT ({alert_state}) after {:?}",
        ratios.len(),
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The raw samples of `selector` over the last minute, oldest first.
async fn samples(prom: &prometheus::Prometheus, selector: &str) -> Vec<f64> {
    let answer = prom
        .api("/api/v1/query", &[("query", &format!("{selector}[1m]"))])
        .await;
    answer["data"]["result"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v[1].as_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// A real Prometheus sees the first call of a new agent, queue and disposition: the new
/// series' first sample is 0, so `increase()` counts the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agents_first_call_is_visible_to_increase() {
    use crocodial_exporter::clock::{Clock, ManualClock, SystemClock};
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("crocodial-new-series-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let clock = ManualClock::new(SystemClock.now());
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    let addr = ex.base.trim_start_matches("http://").to_string();
    let Some(prom) = prometheus::start(&dir, &addr, "1s") else {
        return;
    };
    prom.wait_ready(started + DEADLINE).await;
    let today = clock.now().to_zoned(jiff::tz::TimeZone::UTC).date();
    sim.handle
        .set_answer(200, r#"{"result":"success","data":{"rows":[]}}"#);
    ex.exporter.poller.poll().await.expect("priming poll");
    // Prometheus has scraped the exporter before the call.
    while samples(&prom, "crocodial_up").await.last() != Some(&1.0) {
        assert!(started.elapsed() < DEADLINE, "no scrape: {}", prom.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = format!(
        r#"{{"call_date":"{today} 00:00:01","uniq1":"1.1","queue":"NEWQ","agent":"agent042","campaign":"C","disposition":"SALE","term_reason":"AGENT","queue_time":"5","call_duration":"65"}}"#
    );
    sim.handle.set_answer(
        200,
        format!(r#"{{"result":"success","data":{{"rows":[{row}]}}}}"#),
    );
    ex.exporter.poller.poll().await.expect("poll");
    let agent = r#"crocodial_inbound_agent_calls_total{agent="agent042"}"#;
    let calls = r#"crocodial_inbound_calls_total{queue="NEWQ",disposition="SALE"}"#;
    let answered = r#"crocodial_inbound_queue_time_seconds_count{queue="NEWQ",outcome="answered"}"#;
    for selector in [agent, calls, answered] {
        let seen = loop {
            let seen = samples(&prom, selector).await;
            if seen.last() == Some(&1.0) {
                break seen;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{selector}: {seen:?}: {}",
                prom.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(seen.first(), Some(&0.0), "{selector}: {seen:?}");
        let answer = prom
            .api(
                "/api/v1/query",
                &[("query", &format!("increase({selector}[1m])"))],
            )
            .await;
        let increase: f64 = answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("increase({selector}): {answer}"));
        assert!(increase >= 1.0, "increase({selector}) = {increase}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The value of an instant query's first sample, if it has one.
async fn first_value(prom: &prometheus::Prometheus, query: &str) -> Option<f64> {
    let answer = prom.api("/api/v1/query", &[("query", query)]).await;
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

/// With a real Prometheus: while polls succeed, the longest wait grows between polls and the
/// wait alert fires; once they fail, the longest wait shows no data (not "nobody
/// waiting") and the wait alert stops, while crocodial_up says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_data_shows_no_wait_and_silences_the_wait_alert() {
    use crocodial_exporter::clock::{Clock, ManualClock, SystemClock};
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("crocodial-stale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let clock = ManualClock::new(SystemClock.now());
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    // Fresh while the last success is under 3 intervals (6 s) old; the test polls every 1 s.
    cfg.poll_interval = Duration::from_secs(2);
    let mut ex = start_exporter(&cfg, &clock).await;
    let addr = ex.base.trim_start_matches("http://").to_string();
    let Some(prom) = prometheus::start(&dir, &addr, "1s") else {
        return;
    };
    prom.wait_ready(started + DEADLINE).await;
    // One caller has waited in queue Q for 5 minutes.
    let entered = (clock.now() - jiff::SignedDuration::from_mins(5))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    sim.handle.set_answer(
        200,
        format!(
            r#"{{"result":"success","data":{{"rows":[{{"call_date":"{entered}","enter_on_queue":"{entered}","uniq1":"1.1","queue":"Q","agent":"VDCL","campaign":"C","disposition":"QUEUE","term_reason":"NONE","queue_time":"0","call_duration":"0"}}]}}}}"#
        ),
    );
    let longest = r#"target_queue:crocodial_inbound_oldest_wait_seconds:max{queue="Q"}"#;
    let alert = r#"ALERTS{alertname="CrocodialCallersWaitingLong",queue="Q"}"#;
    loop {
        clock.set(SystemClock.now());
        ex.exporter.poller.poll().await.expect("poll");
        let wait = first_value(&prom, longest).await;
        if wait.is_some_and(|w| w >= 300.0) && first_value(&prom, alert).await == Some(1.0) {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "longest wait {wait:?}: {}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The API fails from now on.
    sim.handle
        .set_answer(200, "<html><title>502 Bad Gateway</title></html>");
    let failing = Instant::now();
    loop {
        clock.set(SystemClock.now());
        ex.exporter.poller.poll().await.expect_err("the API fails");
        let wait = first_value(&prom, longest).await;
        let firing = first_value(&prom, alert).await;
        let up = first_value(&prom, "crocodial_up").await;
        if wait.is_none() && firing.is_none() && up == Some(0.0) {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{:?} after the failures began: longest wait {wait:?}, alert {firing:?}, up {up:?}",
            failing.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Stale within the 6 s the rules allow, plus a scrape and an evaluation, and the minute
    // the alert keeps firing for (so that one answered caller among long waiters does not
    // resolve it).
    assert!(
        failing.elapsed() < Duration::from_secs(12 + 60),
        "{:?}",
        failing.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
