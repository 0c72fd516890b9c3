//! `backfill` end to end: the simulator's past days and today written as OpenMetrics, turned into
//! blocks by the distribution's promtool, read back by a real Prometheus at the end of each day
//! and compared with the simulator's own record of when each leg ended; then the exporter
//! started on the backfill's state file continues every series and counts each later call once.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, start_exporter, start_sim, ts};
use crocodial_exporter::backfill::{self, BackfillError};
use crocodial_exporter::clock::Clock;
use crocodial_exporter::clock::{wall_secs, ManualClock, WallSecs};
use crocodial_exporter::config::{
    ApiSource, BackfillConfig, Config, Day, Destination, LeStyle, RemoteWrite, RemoteWriteAuth,
};
use crocodial_exporter::sim::traffic::Phase;
use crocodial_exporter::sim::SimCall;
use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

const TZ: &str = "Europe/Berlin";
/// The passes README's procedure makes of the recording rules: one per rule of the longest chain
/// of rules.yml in which each rule reads the one before (per queue and campaign: offered, then
/// short abandons; per queue; per target; the target's offered without short abandons; its
/// service level without them). tests/deploy.rs derives the number from rules.yml.
const RULE_PASSES: usize = 6;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("croco-backfill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn api(config: &Config) -> crocodial_exporter::config::ApiConfig {
    match &config.api {
        ApiSource::Remote(api) => (**api).clone(),
        ApiSource::Demo(_) => unreachable!("tests use a remote API"),
    }
}

/// A backfill from `from` to now, at the default step, into `output`.
fn plan(from: Day, output: Destination) -> BackfillConfig {
    BackfillConfig {
        from,
        to: None,
        output,
        step: Duration::from_secs(60),
        skip_if_state_exists: false,
    }
}

async fn run_backfill(
    cfg: &Config,
    plan: &BackfillConfig,
    clock: &ManualClock,
) -> Result<Option<backfill::Summary>, BackfillError> {
    backfill::run(
        cfg,
        plan,
        &api(cfg),
        Arc::new(clock.clone()),
        std::future::pending(),
    )
    .await
}

fn wall(t: Timestamp) -> WallSecs {
    wall_secs(t.to_zoned(TimeZone::get(TZ).expect("zone")).datetime())
}

/// The legs the exporter counts by `by` (wall clock) among `rows`, as the simulator records
/// them: those that hung up by then and whose row is final at `now` (or has waited past
/// max-pending), leaving out rows whose `call_date` does not read.
fn ended_by(rows: &[SimCall], by: WallSecs, now: WallSecs, max_pending: i64) -> usize {
    rows.iter()
        .filter(|c| !c.bad_date)
        .filter(|c| c.phase(now) == Phase::Final || now - c.call_date > max_pending)
        .filter(|c| c.hung_up_at.min(now) <= by)
        .count()
}

/// Each series' last sample in OpenMetrics files, read in order.
fn last_samples(paths: &[PathBuf]) -> BTreeMap<String, f64> {
    let mut last = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).expect("output");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (rest, _stamp) = line.rsplit_once(' ').expect("timestamp");
            let (series, value) = rest.rsplit_once(' ').expect("value");
            last.insert(series.to_string(), value.parse::<f64>().expect("number"));
        }
    }
    last
}

fn promtool_blocks(output: &Path, data: &Path) -> bool {
    match Command::new("promtool").arg("--version").output() {
        Ok(_) => {}
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED the promtool part ({e}): apt-get install prometheus");
            return false;
        }
        Err(e) => panic!("promtool is required in CI: {e}"),
    }
    let run = Command::new("promtool")
        // As README says: blocks of a day, so promtool reads the file once per day.
        .args([
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=24h",
        ])
        .arg(output)
        .arg(data)
        .output()
        .expect("promtool");
    assert!(
        run.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    true
}

async fn instant_value(prom: &common::prometheus::Prometheus, query: &str, at: Timestamp) -> f64 {
    let at = format!("{:.3}", at.as_millisecond() as f64 / 1000.0);
    let answer = prom
        .api("/api/v1/query", &[("query", query), ("time", &at)])
        .await;
    let value = &answer["data"]["result"][0]["value"][1];
    value
        .as_str()
        .unwrap_or_else(|| panic!("{query} at {at}: {answer}"))
        .parse()
        .expect("number")
}

/// One pass of `promtool tsdb create-blocks-from rules` (rules.yml) over two hours of the 11th,
/// against the Prometheus at `base`, its blocks moved into `dir/data`.
fn rules_pass(base: &str, dir: &Path, pass: usize) {
    let rules = Path::new(common::prometheus::ROOT).join("deploy/prometheus/rules.yml");
    let out = dir.join(format!("rules-{pass}"));
    let run = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "rules"])
        .args(["--start", "2025-06-11T09:00:00Z"])
        .args(["--end", "2025-06-11T11:00:00Z"])
        .args(["--url", base])
        .arg(format!("--output-dir={}", out.display()))
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        run.status.success(),
        "pass {pass}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    for block in std::fs::read_dir(&out).expect("blocks") {
        let block = block.expect("block").path();
        let name = block.file_name().expect("name").to_owned();
        std::fs::rename(&block, dir.join("data").join(name)).expect("move block");
    }
}

/// The instants at which the history's totals are checked: the ends of the 9th, 10th and 11th,
/// `now`, and every 37th minute from the 9th on, any minute being as good as another (from the
/// first 37: at midnight no leg had ended, and no series existed).
fn instants_to_check(now: Timestamp) -> Vec<(Timestamp, WallSecs)> {
    let mut instants: Vec<(Timestamp, WallSecs)> = [10, 11, 12]
        .into_iter()
        .map(|d| {
            let at = midnight_of(date(2025, 6, d));
            (at, wall(at))
        })
        .collect();
    instants.push((now, wall(now)));
    let mut at = midnight_of(date(2025, 6, 9)) + jiff::SignedDuration::from_mins(37);
    while at < now {
        instants.push((at, wall(at)));
        at += jiff::SignedDuration::from_mins(37);
    }
    instants
}

/// `query` at every minute from `start` to `end`: (instant in seconds, value), where it has one.
async fn every_minute(
    prom: &common::prometheus::Prometheus,
    query: &str,
    start: Timestamp,
    end: Timestamp,
) -> Vec<(f64, f64)> {
    let answer = prom
        .api(
            "/api/v1/query_range",
            &[
                ("query", query),
                ("start", &start.as_second().to_string()),
                ("end", &end.as_second().to_string()),
                ("step", "60"),
            ],
        )
        .await;
    assert_eq!(answer["status"], "success", "{query}: {answer}");
    answer["data"]["result"][0]["values"]
        .as_array()
        .map_or(&[][..], |v| v.as_slice())
        .iter()
        .map(|v| {
            let at = v[0].as_f64().expect("instant");
            let n = v[1].as_str().expect("value").parse().expect("number");
            (at, n)
        })
        .collect()
}

/// The last instant promtool evaluated the recorded series `name` at, by 10:15 UTC of the 11th
/// (in the spike of SUPPORT, whose callers abandon).
async fn last_evaluation(prom: &common::prometheus::Prometheus, name: &str) -> Timestamp {
    let query = format!("{name}[2m]");
    let answer = prom
        .api(
            "/api/v1/query",
            &[("query", &query), ("time", "1749636900")],
        )
        .await;
    let at = answer["data"]["result"][0]["values"]
        .as_array()
        .and_then(|v| v.last())
        .and_then(|v| v[0].as_f64())
        .unwrap_or_else(|| panic!("no {name} near 10:15: {answer}"));
    Timestamp::from_millisecond((at * 1000.0).round() as i64).expect("instant")
}

fn midnight_of(day: jiff::civil::Date) -> Timestamp {
    day.at(0, 0, 0, 0)
        .to_zoned(TimeZone::get(TZ).expect("zone"))
        .expect("midnight")
        .timestamp()
}

/// At each instant (and its wall clock time), Prometheus's totals are the legs that ended by
/// then, among `rows` as they are at `now`.
async fn assert_counted_by(
    prom: &common::prometheus::Prometheus,
    rows: &[SimCall],
    instants: &[(Timestamp, WallSecs)],
    now: WallSecs,
    max_pending: i64,
) {
    for &(at, by) in instants {
        let truth = ended_by(rows, by, now, max_pending) as f64;
        assert_eq!(
            instant_value(prom, "sum(crocodial_inbound_calls_total)", at).await,
            truth,
            "legs ended by {at}"
        );
        assert_eq!(
            instant_value(prom, "sum(crocodial_inbound_queue_time_seconds_count)", at).await,
            truth,
            "waits of the legs ended by {at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_past_days_and_today_then_the_exporter_continues() {
    let now = ts("2025-06-12T13:30:00Z");
    let clock = ManualClock::new(now);
    let sim = start_sim(&clock, TZ, 19).await;
    let dir = temp_dir("days");
    let history = dir.join("history");
    let state_file = dir.join("state.db");
    let mut cfg = config(&sim.url, TZ);
    cfg.state_file = Some(state_file.clone());
    let plan = plan(
        Day::Date(date(2025, 6, 9)),
        Destination::Days(history.clone()),
    );
    let summary = run_backfill(&cfg, &plan, &clock)
        .await
        .expect("backfill")
        .expect("no state file before");

    let from_wall = wall_secs(date(2025, 6, 9).at(0, 0, 0, 0));
    let max_pending = cfg.cdr.max_pending.as_secs() as i64;
    let rows = sim
        .handle
        .traffic()
        .calls(from_wall, wall(now) + 1, wall(now));
    let counted_now = ended_by(&rows, wall(now), wall(now), max_pending);
    assert_eq!(summary.end, now);
    assert_eq!(summary.legs as usize, counted_now);
    assert!(
        counted_now > 3 * 1000,
        "{counted_now} legs: a few days' worth"
    );
    assert!(summary.pending > 0, "calls in progress at the end");
    assert!(state_file.exists());
    // A file per day of the dialer's, each whole.
    let mut files: Vec<String> = std::fs::read_dir(&history)
        .expect("history")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "2025-06-09.om",
            "2025-06-10.om",
            "2025-06-11.om",
            "2025-06-12.om"
        ]
    );
    let outputs: Vec<PathBuf> = files.iter().map(|f| history.join(f)).collect();
    for path in &outputs {
        let text = std::fs::read_to_string(path).expect("day file");
        assert!(text.ends_with("\n# EOF\n"), "{}", path.display());
        assert_eq!(text.matches("# EOF").count(), 1, "{}", path.display());
    }
    // Thinned: a series is written when it changes and every 2 minutes, not every minute.
    let steps = (now.as_second() - midnight_of(date(2025, 6, 9)).as_second()) / 60;
    let every_step = summary.series as u64 * steps as u64;
    eprintln!(
        "{} samples of {} series; every series at every step would be {every_step}",
        summary.samples, summary.series
    );
    assert!(
        summary.samples * 10 < every_step * 7,
        "{} samples, {every_step} at every step",
        summary.samples
    );

    // The days' ends as Prometheus answers them, from the blocks promtool makes of the output:
    // one pass per day's file, as README gives it.
    let data = dir.join("data");
    for path in &outputs {
        if !promtool_blocks(path, &data) {
            return;
        }
    }
    let Some(prom) = common::prometheus::start_on_blocks(&dir) else {
        return;
    };
    prom.wait_ready(Instant::now() + Duration::from_secs(30))
        .await;
    let ends = instants_to_check(now);
    assert_counted_by(&prom, &rows, &ends, wall(now), max_pending).await;
    // Every series has two samples in every 5 minutes of the range (so that rate() over 5m
    // answers, 0 where nothing happened), at every minute; and all of them around a change.
    let start = midnight_of(date(2025, 6, 9)) + jiff::SignedDuration::from_mins(5);
    let names = prom.api("/api/v1/label/__name__/values", &[]).await;
    let names: Vec<&str> = names["data"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| n.starts_with("crocodial_"))
        .collect();
    assert!(names.len() > 20, "{names:?}");
    for name in names {
        // count_over_time() drops the name: one name at a time; each series from its second
        // window on (in its first, a history with every step has no more either).
        let query = format!("min(count_over_time({name}[5m]) and {name} offset 5m)");
        let fewest = every_minute(&prom, &query, start, now).await;
        assert!(!fewest.is_empty(), "{query}");
        for (at, n) in fewest {
            assert!(
                n >= 2.0,
                "{name}: a series with {n} sample(s) in the 5 minutes to {at}"
            );
        }
        // A window with a change in it holds every step, as a history with every step does:
        // its rate() is the same.
        let query = format!(
            "min((count_over_time({name}[5m]) and changes({name}[5m]) > 0) and {name} offset 6m)"
        );
        for (at, n) in every_minute(&prom, &query, start, now).await {
            assert!(
                n >= 5.0,
                "{name}: {n} samples in the 5 minutes to {at}, with a change"
            );
        }
    }
    // A past hour's increase() is the legs that ended in it.
    let hour_end = ts("2025-06-10T10:00:00Z");
    let (a, b) = (wall(hour_end) - 3600, wall(hour_end));
    let in_hour = (ended_by(&rows, b, wall(now), max_pending)
        - ended_by(&rows, a, wall(now), max_pending)) as f64;
    let increase = instant_value(
        &prom,
        "sum(increase(crocodial_inbound_calls_total[1h]))",
        hour_end,
    )
    .await;
    // increase() extrapolates within the hour's first and last samples a minute apart from
    // its edges; the legs of the hour are what it estimates.
    assert!(
        (increase - in_hour).abs() <= in_hour * 0.05 + 1.0,
        "increase {increase} over an hour with {in_hour} legs ended"
    );

    // The recording rules, over two hours of the 11th, as README gives them: passes
    // of `promtool tsdb create-blocks-from rules`, each pass's blocks moved into the data
    // directory (here Prometheus restarts to load them), since a rule built on recorded series
    // finds them only once an earlier pass's blocks are loaded.
    let mut prom = prom;
    for pass in 1..=RULE_PASSES {
        rules_pass(&prom.base, &dir, pass);
        drop(prom);
        prom = common::prometheus::start_on_blocks(&dir).expect("restart");
        prom.wait_ready(Instant::now() + Duration::from_secs(30))
            .await;
    }
    // promtool evaluates the rules at steps of its own (not on the minute): compare at one.
    let at = last_evaluation(&prom, "target:crocodial_inbound_abandon:ratio_rate5m").await;
    let offered = r#"sum(rate(crocodial_inbound_legs_total{outcome=~"answered|abandoned|timed_out|unfinished"}[5m]))"#;
    let abandoned = r#"sum(rate(crocodial_inbound_legs_total{outcome="abandoned"}[5m]))"#;
    let direct = (
        instant_value(&prom, offered, at).await,
        instant_value(&prom, abandoned, at).await,
    );
    assert!(direct.0 > 0.0 && direct.1 > 0.0, "{direct:?}");
    assert_eq!(
        instant_value(
            &prom,
            "sum(target:crocodial_inbound_offered_calls:rate5m)",
            at
        )
        .await,
        direct.0,
        "the third rule of its chain"
    );
    let ratio = instant_value(
        &prom,
        "sum(target:crocodial_inbound_abandon:ratio_rate5m)",
        at,
    )
    .await;
    assert!(
        (ratio - direct.1 / direct.0).abs() < 1e-12,
        "the fifth rule of its chain: {ratio} against {direct:?}"
    );
    drop(prom);

    // The exporter on the backfill's state: its first scrape is the backfill's last step.
    let last: String = last_samples(&outputs)
        .iter()
        .map(|(series, value)| format!("{series} {value}\n"))
        .collect();
    let last = common::Exposition::parse(&last).samples;
    let counted_now = counted_now as u64;
    the_exporter_continues(&cfg, &clock, &sim, &last, counted_now).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An exporter started on the backfill's state (at the backfill's instant) serves `last` (each
/// series' last value in the history) on its first scrape; 20 minutes later it has counted
/// every leg that ended since, once.
async fn the_exporter_continues(
    cfg: &Config,
    clock: &ManualClock,
    sim: &common::Sim,
    last: &[(String, BTreeMap<String, String>, f64)],
    counted_now: u64,
) {
    let now = clock.now();
    let max_pending = cfg.cdr.max_pending.as_secs() as i64;
    let from_wall = wall_secs(date(2025, 6, 9).at(0, 0, 0, 0));
    let mut ex = start_exporter(cfg, clock).await;
    let first = ex.scrape_once().await;
    assert!(last.len() > 100, "{} series", last.len());
    for (name, labels, value) in last {
        let live = first
            .samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v);
        assert_eq!(live, Some(*value), "{name}{labels:?} continues");
    }
    // New calls arrive; the exporter counts each leg that ended after the backfill, once.
    let later = now + jiff::SignedDuration::from_mins(20);
    clock.set(later);
    ex.exporter.poller.poll().await.expect("poll");
    let rows = sim
        .handle
        .traffic()
        .calls(from_wall, wall(later) + 1, wall(later));
    let counted_later = ended_by(&rows, wall(later), wall(later), max_pending) as u64;
    let e = ex.scrape().await;
    assert_eq!(
        e.sum("crocodial_inbound_calls_total"),
        counted_later as f64,
        "every leg once"
    );
    assert_eq!(
        e.value("crocodial_cdr_rows_total", &[("result", "new")]),
        (counted_later - counted_now) as f64,
        "the first poll counted only what ended since"
    );
    assert_eq!(
        e.sum("crocodial_inbound_queue_time_seconds_count"),
        counted_later as f64
    );
}

/// The same three past days and today sent with `--remote-write` to a real Prometheus (the
/// distribution's) with its remote-write receiver and an out-of-order window: it answers at
/// each day's end and every 37th minute the legs that ended by then; promtool evaluates the
/// recording rules against it as against one made of blocks; and the exporter continues on the
/// state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_past_days_and_today_by_remote_write_then_the_exporter_continues() {
    let now = ts("2025-06-12T13:30:00Z");
    let clock = ManualClock::new(now);
    let sim = start_sim(&clock, TZ, 19).await;
    let dir = temp_dir("remote-write");
    let Some(prom) = common::prometheus::start_receiver(&dir) else {
        return;
    };
    prom.wait_ready(Instant::now() + Duration::from_secs(30))
        .await;
    let mut cfg = config(&sim.url, TZ);
    cfg.state_file = Some(dir.join("state.db"));
    let receiver = format!("{}/api/v1/write", prom.base);
    let plan = plan(
        Day::Date(date(2025, 6, 9)),
        remote_write(&receiver, LeStyle::Text),
    );
    let summary = run_backfill(&cfg, &plan, &clock)
        .await
        .expect("backfill")
        .expect("no state file before");
    let max_pending = cfg.cdr.max_pending.as_secs() as i64;
    let from_wall = wall_secs(date(2025, 6, 9).at(0, 0, 0, 0));
    let rows = sim
        .handle
        .traffic()
        .calls(from_wall, wall(now) + 1, wall(now));
    let counted_now = ended_by(&rows, wall(now), wall(now), max_pending);
    assert_eq!(summary.legs as usize, counted_now);
    assert_eq!(summary.end, now);

    let instants = instants_to_check(now);
    assert_counted_by(&prom, &rows, &instants, wall(now), max_pending).await;
    // The receiver holds every sample the backfill says it sent, and no other.
    let names = prom.api("/api/v1/label/__name__/values", &[]).await;
    let mut held = 0.0;
    for name in names["data"].as_array().expect("names") {
        let query = format!("sum(count_over_time({}[5d]))", name.as_str().expect("name"));
        held += instant_value(&prom, &query, now).await;
    }
    assert_eq!(held, summary.samples as f64);
    // The buckets are the live ones' series (le as /metrics writes it, for this Prometheus 2).
    assert_eq!(
        instant_value(
            &prom,
            r#"count(crocodial_inbound_queue_time_seconds_bucket{le="20"})"#,
            now
        )
        .await,
        instant_value(
            &prom,
            "count(crocodial_inbound_queue_time_seconds_count)",
            now
        )
        .await
    );

    // promtool evaluates the recording rules against the receiver's query API as against a
    // Prometheus made of blocks: the first pass's rules, over two hours of the 11th.
    rules_pass(&prom.base, &dir, 1);
    drop(prom);
    let prom = common::prometheus::start_receiver(&dir).expect("restart");
    prom.wait_ready(Instant::now() + Duration::from_secs(30))
        .await;
    let at = last_evaluation(
        &prom,
        "target_queue_campaign:crocodial_inbound_offered_calls:rate5m",
    )
    .await;
    let offered = r#"sum(rate(crocodial_inbound_legs_total{outcome=~"answered|abandoned|timed_out|unfinished"}[5m]))"#;
    let direct = instant_value(&prom, offered, at).await;
    assert!(direct > 0.0);
    assert_eq!(
        instant_value(
            &prom,
            "sum(target_queue_campaign:crocodial_inbound_offered_calls:rate5m)",
            at
        )
        .await,
        direct
    );

    // The exporter continues from the values the receiver holds at the backfill's instant.
    let answer = prom
        .api(
            "/api/v1/query",
            &[
                ("query", r#"{__name__=~"crocodial_.+"}"#),
                ("time", &now.as_second().to_string()),
            ],
        )
        .await;
    let last: Vec<(String, BTreeMap<String, String>, f64)> = answer["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|r| {
            let mut labels: BTreeMap<String, String> = r["metric"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("value").to_string()))
                .collect();
            let name = labels.remove("__name__").expect("name");
            let value = r["value"][1]
                .as_str()
                .expect("value")
                .parse()
                .expect("number");
            (name, labels, value)
        })
        .collect();
    assert_eq!(last.len(), summary.series);
    the_exporter_continues(&cfg, &clock, &sim, &last, counted_now as u64).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn remote_write(url: &str, le_style: LeStyle) -> Destination {
    Destination::RemoteWrite(Box::new(RemoteWrite {
        url: url.parse().expect("url"),
        auth: None,
        ca_file: None,
        headers: Vec::new(),
        max_samples_per_send: 2000,
        timeout: Duration::from_secs(10),
        le_style,
    }))
}

/// A receiver that fails: a 503 and a 429 are retried (the 429's Retry-After followed), and the
/// requests carry the token and the headers; a 400 stops the backfill with the receiver's
/// message, and no state file is left.
#[tokio::test]
async fn a_receiver_that_is_busy_is_retried_and_one_that_refuses_stops_the_backfill() {
    let now = ts("2025-06-12T00:40:00Z");
    let clock = ManualClock::new(now);
    let sim = start_sim(&clock, TZ, 23).await;
    let dir = temp_dir("receiver");
    let receiver = common::receiver::Receiver::start(None).await;
    receiver.answer(503, None, "busy");
    receiver.answer(429, Some(("Retry-After", "1")), "slow down");
    let mut cfg = config(&sim.url, TZ);
    cfg.state_file = Some(dir.join("state.db"));
    let mut destination = remote_write(&receiver.url, LeStyle::Float);
    if let Destination::RemoteWrite(rw) = &mut destination {
        rw.auth = Some(RemoteWriteAuth::Bearer("t0ken".into()));
        rw.headers = vec![("X-Scope-OrgID".into(), "acme".into())];
    }
    let first = plan(Day::DaysAgo(0), destination.clone());
    let started = Instant::now();
    let summary = run_backfill(&cfg, &first, &clock)
        .await
        .expect("backfill")
        .expect("ran");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "backoff and Retry-After"
    );
    let got = receiver.received();
    // The first request three times (503, 429, then taken), then one per request's worth.
    assert!(got.len() >= 3);
    assert_eq!(got[0].protobuf, got[1].protobuf);
    assert_eq!(got[1].protobuf, got[2].protobuf);
    for r in &got {
        assert_eq!(r.headers["content-encoding"], "snappy");
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert_eq!(r.headers["x-prometheus-remote-write-version"], "0.1.0");
        assert_eq!(r.headers["authorization"], "Bearer t0ken");
        assert_eq!(r.headers["x-scope-orgid"], "acme");
        assert!(r.protobuf.is_some(), "snappy's block format");
    }
    assert!(summary.samples > 0);
    assert!(dir.join("state.db").exists());

    // A 400 is not retried: the backfill stops with the receiver's message, and writes no state.
    std::fs::remove_file(dir.join("state.db")).expect("remove");
    let receiver = common::receiver::Receiver::start(None).await;
    receiver.answer(400, None, "out of bounds\n");
    let refused = plan(Day::DaysAgo(0), remote_write(&receiver.url, LeStyle::Float));
    let e = run_backfill(&cfg, &refused, &clock)
        .await
        .expect_err("refused");
    assert_eq!(
        e.to_string(),
        format!("remote write to {}: 400 Bad Request: out of bounds; no state file was written (the samples sent stay: a new run sends the same ones again)", receiver.url)
    );
    assert_eq!(e.exit_code(), 1);
    assert_eq!(receiver.received().len(), 1);
    let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_state_needs_the_range_to_run_to_today_and_a_new_file() {
    let clock = ManualClock::new(ts("2025-06-12T13:30:00Z"));
    let sim = start_sim(&clock, TZ, 19).await;
    let dir = temp_dir("refusals");
    let mut cfg = config(&sim.url, TZ);
    cfg.state_file = Some(dir.join("state.db"));
    let mut plan = BackfillConfig {
        to: Some(Day::DaysAgo(1)),
        ..plan(Day::DaysAgo(3), Destination::File(dir.join("history.om")))
    };
    let run = |plan: BackfillConfig, cfg: Config| {
        let clock = clock.clone();
        async move { run_backfill(&cfg, &plan, &clock).await }
    };
    let e = run(plan.clone(), cfg.clone()).await.expect_err("past end");
    assert!(
        matches!(&e, BackfillError::Setting { flag: "--state.file", message } if message.contains("must run to today")),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2);
    std::fs::write(dir.join("state.db"), b"a running exporter's").expect("write");
    plan.to = None;
    let e = run(plan.clone(), cfg.clone()).await.expect_err("exists");
    assert!(
        matches!(&e, BackfillError::Setting { flag: "--state.file", message } if message.contains("exists")),
        "{e}"
    );
    assert_eq!(
        std::fs::read(dir.join("state.db")).expect("kept"),
        b"a running exporter's"
    );
    // A job run at every start backfills only the first time.
    plan.skip_if_state_exists = true;
    let skipped = run(plan.clone(), cfg.clone()).await.expect("skipped");
    assert_eq!(skipped, None);
    assert_eq!(
        std::fs::read(dir.join("state.db")).expect("kept"),
        b"a running exporter's"
    );
    assert!(!dir.join("history.om").exists());
    plan.skip_if_state_exists = false;
    plan.to = Some(Day::Date(date(2025, 6, 13)));
    cfg.state_file = None;
    let e = run(plan.clone(), cfg.clone()).await.expect_err("future");
    assert_eq!(
        e.to_string(),
        "--to: 2025-06-13 has not come yet (today is 2025-06-12 in Europe/Berlin)"
    );
    assert!(!dir.join("history.om").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_day_that_keeps_failing_stops_the_backfill_naming_it_and_writes_nothing() {
    let clock = ManualClock::new(ts("2025-06-12T13:30:00Z"));
    let sim = start_sim(&clock, TZ, 19).await;
    sim.handle.set_answer(
        200,
        r#"{"result":"error","message":"Invalid Username/Password"}"#,
    );
    let dir = temp_dir("failing");
    let mut cfg = config(&sim.url, TZ);
    cfg.poll_interval = Duration::from_millis(10);
    cfg.max_backoff = Duration::from_millis(40);
    cfg.state_file = Some(dir.join("state.db"));
    let plan = plan(
        Day::Date(date(2025, 6, 10)),
        Destination::File(dir.join("history.om")),
    );
    let e = run_backfill(&cfg, &plan, &clock)
        .await
        .expect_err("failing API");
    match &e {
        BackfillError::Request {
            day,
            error,
            attempts,
        } => {
            assert_eq!(*day, date(2025, 6, 10));
            assert_eq!(*attempts, backfill::MAX_ATTEMPTS);
            assert_eq!(error.reason.as_str(), "auth");
        }
        other => panic!("{other}"),
    }
    assert_eq!(sim.handle.requests().len(), backfill::MAX_ATTEMPTS as usize);
    assert_eq!(e.exit_code(), 1);
    let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Early in the day the live window reaches yesterday: a backfill of today alone counts
/// today's legs only (yesterday's are marked seen), with a state file or without; and the
/// partial state a killed run left is not built on.
#[tokio::test]
async fn today_alone_early_in_the_day_counts_today_only() {
    let now = ts("2025-06-12T00:30:00Z");
    let clock = ManualClock::new(now);
    let sim = start_sim(&clock, TZ, 23).await;
    let dir = temp_dir("today");
    std::fs::write(dir.join("state.db.partial"), b"left by a killed run").expect("write");
    let mut cfg = config(&sim.url, TZ);
    let max_pending = cfg.cdr.max_pending.as_secs() as i64;
    let today = wall_secs(date(2025, 6, 12).at(0, 0, 0, 0));
    let rows = sim.handle.traffic().calls(today, wall(now) + 1, wall(now));
    let truth = ended_by(&rows, wall(now), wall(now), max_pending) as u64;
    assert!(truth > 0);
    for state in [Some(dir.join("state.db")), None] {
        cfg.state_file = state.clone();
        let plan = plan(Day::DaysAgo(0), Destination::File(dir.join("history.om")));
        let summary = run_backfill(&cfg, &plan, &clock)
            .await
            .expect("backfill")
            .expect("ran");
        assert_eq!(summary.legs, truth, "state file: {state:?}");
        let last = last_samples(&[dir.join("history.om")]);
        let calls: f64 = last
            .iter()
            .filter(|(s, _)| s.starts_with("crocodial_inbound_calls_total{"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(calls, truth as f64);
    }
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["history.om", "state.db"]);
    let _ = std::fs::remove_dir_all(&dir);
}
