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
use crocodial_exporter::clock::{wall_secs, ManualClock, WallSecs};
use crocodial_exporter::config::{ApiSource, BackfillConfig, Config, Day};
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
fn plan(from: Day, output: PathBuf) -> BackfillConfig {
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

/// Each series' last sample in an OpenMetrics file.
fn last_samples(path: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).expect("output");
    let mut last = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (rest, _stamp) = line.rsplit_once(' ').expect("timestamp");
        let (series, value) = rest.rsplit_once(' ').expect("value");
        last.insert(series.to_string(), value.parse::<f64>().expect("number"));
    }
    last
}

/// The series of a text exposition and their values.
fn exposition(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_past_days_and_today_then_the_exporter_continues() {
    let now = ts("2025-06-12T13:30:00Z");
    let clock = ManualClock::new(now);
    let sim = start_sim(&clock, TZ, 19).await;
    let dir = temp_dir("days");
    let output = dir.join("history.om");
    let state_file = dir.join("state.db");
    let mut cfg = config(&sim.url, TZ);
    cfg.state_file = Some(state_file.clone());
    let plan = plan(Day::Date(date(2025, 6, 9)), output.clone());
    let summary = run_backfill(&cfg, &plan, &clock)
        .await
        .expect("backfill")
        .expect("no state file before");

    let tz = TimeZone::get(TZ).expect("zone");
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
    assert!(state_file.exists() && output.exists());
    assert!(!dir.join("history.om.partial").exists());

    // The days' ends as Prometheus answers them, from the blocks promtool makes of the output.
    let data = dir.join("data");
    if !promtool_blocks(&output, &data) {
        return;
    }
    let Some(prom) = common::prometheus::start_on_blocks(&dir) else {
        return;
    };
    prom.wait_ready(Instant::now() + Duration::from_secs(30))
        .await;
    let mut ends: Vec<(Timestamp, WallSecs)> = [10, 11, 12]
        .into_iter()
        .map(|d| {
            let midnight = date(2025, 6, d).at(0, 0, 0, 0);
            let at = midnight.to_zoned(tz.clone()).expect("midnight").timestamp();
            (at, wall_secs(midnight))
        })
        .collect();
    ends.push((now, wall(now)));
    for (at, by) in ends {
        let truth = ended_by(&rows, by, wall(now), max_pending) as f64;
        assert_eq!(
            instant_value(&prom, "sum(crocodial_inbound_calls_total)", at).await,
            truth,
            "legs ended by {at}"
        );
        assert_eq!(
            instant_value(&prom, "sum(crocodial_inbound_queue_time_seconds_count)", at).await,
            truth,
            "waits of the legs ended by {at}"
        );
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
    let (start, end) = ("2025-06-11T09:00:00Z", "2025-06-11T11:00:00Z");
    let rules = Path::new(common::prometheus::ROOT).join("deploy/prometheus/rules.yml");
    let mut prom = prom;
    for pass in 1..=RULE_PASSES {
        let out = dir.join(format!("rules-{pass}"));
        let run = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "rules"])
            .args(["--start", start, "--end", end, "--url", &prom.base])
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
            std::fs::rename(&block, data.join(name)).expect("move block");
        }
        drop(prom);
        prom = common::prometheus::start_on_blocks(&dir).expect("restart");
        prom.wait_ready(Instant::now() + Duration::from_secs(30))
            .await;
    }
    // promtool evaluates the rules at steps of its own (not on the minute): compare at one.
    let answer = prom
        .api(
            "/api/v1/query",
            &[
                ("query", "target:crocodial_inbound_abandon:ratio_rate5m[2m]"),
                ("time", "1749636900"),
            ],
        )
        .await;
    let at = answer["data"]["result"][0]["values"]
        .as_array()
        .and_then(|v| v.last())
        .and_then(|v| v[0].as_f64())
        .unwrap_or_else(|| panic!("no recorded ratio near 10:15 (in the spike of SUPPORT, whose callers abandon): {answer}"));
    let at = Timestamp::from_millisecond((at * 1000.0).round() as i64).expect("instant");
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
    let last = last_samples(&output);
    let ex = start_exporter(&cfg, &clock).await;
    let (status, body) = ex.get("/metrics").await;
    assert_eq!(status, 200);
    let live = exposition(&body);
    for (series, value) in &last {
        assert_eq!(live.get(series), Some(value), "{series} continues");
    }
    let mut ex = ex;
    // New calls arrive; the exporter counts each leg that ended after the backfill, once.
    let later = now + jiff::SignedDuration::from_mins(20);
    clock.set(later);
    ex.exporter.poller.poll().await.expect("poll");
    let rows = sim
        .handle
        .traffic()
        .calls(from_wall, wall(later) + 1, wall(later));
    let counted_later = ended_by(&rows, wall(later), wall(later), max_pending);
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
        ..plan(Day::DaysAgo(3), dir.join("history.om"))
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
    let plan = plan(Day::Date(date(2025, 6, 10)), dir.join("history.om"));
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
        let plan = plan(Day::DaysAgo(0), dir.join("history.om"));
        let summary = run_backfill(&cfg, &plan, &clock)
            .await
            .expect("backfill")
            .expect("ran");
        assert_eq!(summary.legs, truth, "state file: {state:?}");
        let last = last_samples(&dir.join("history.om"));
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
