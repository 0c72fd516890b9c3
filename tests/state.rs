//! Restart-safe counting: state survives restarts, calls made while down are counted, bad state
//! files are moved aside, a held file is refused, and no counter goes backwards.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use crocodial_exporter::clock::ManualClock;
use crocodial_exporter::{Exporter, RunError};
use jiff::SignedDuration;

fn row(id: &str, time: &str, disposition: &str, term: &str, wait: &str) -> String {
    format!(
        r#"{{"call_date":"2025-05-29 {time}","uniq1":"{id}","queue":"SUPPORT","agent":"agent001","campaign":"CARE","disposition":"{disposition}","term_reason":"{term}","queue_time":"{wait}","call_duration":"60"}}"#
    )
}

fn body(rows: &[String]) -> String {
    format!(
        r#"{{"result":"success","data":{{"rows":[{}]}}}}"#,
        rows.join(",")
    )
}

fn temp_state(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("croco-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("state.db")
}

fn calls(e: &Exposition) -> f64 {
    e.sum("crocodial_inbound_calls_total")
}

/// Every counter sample of `before` is <= the same sample in `after`.
fn assert_no_counter_decreased(before: &Exposition, after: &Exposition) {
    for (name, labels, v) in &before.samples {
        let counter = name.ends_with("_total")
            || name.ends_with("_count")
            || name.ends_with("_sum")
            || name.ends_with("_bucket");
        if !counter || name.starts_with("process_") {
            continue;
        }
        let now = after
            .samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("{name} {labels:?} disappeared"));
        assert!(now >= *v, "{name} {labels:?} went from {v} to {now}");
    }
}

#[tokio::test]
async fn counting_resumes_and_catches_up_on_calls_made_while_down() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let path = temp_state("resume");
    let mut cfg = config(&sim.url, "UTC");
    cfg.state_file = Some(path.clone());

    let a = row("1.1", "11:00:00", "Answered", "AGENT", "5");
    let b_pending = row("1.2", "11:50:00", "INCALL", "NONE", "7");
    let b = row("1.2", "11:50:00", "Answered", "CALLER", "7");
    let c = row("1.3", "11:55:00", "Answered", "AGENT", "9");
    let d = row("1.4", "12:10:00", "Answered", "AGENT", "11");
    let e = row("1.5", "12:20:00", "Abandoned", "ABANDON", "50");

    let before = {
        let mut ex = start_exporter(&cfg, &clock).await;
        // First run, fresh file: the first poll primes.
        sim.handle
            .set_answer(200, body(&[a.clone(), b_pending.clone()]));
        ex.exporter.poller.poll().await.expect("prime");
        sim.handle
            .set_answer(200, body(&[a.clone(), b_pending.clone(), c.clone()]));
        ex.exporter.poller.poll().await.expect("count c");
        let s = ex.scrape().await;
        assert_eq!(calls(&s), 1.0);
        s
    };
    // Down for 30 minutes: b finished, d and e happened.
    clock.advance(SignedDuration::from_mins(30));
    sim.handle.set_answer(
        200,
        body(&[a.clone(), b.clone(), c.clone(), d.clone(), e.clone()]),
    );
    let mut ex = start_exporter(&cfg, &clock).await;
    // Before the first poll the counters are already back where they were.
    let restarted = ex.scrape().await;
    assert_no_counter_decreased(&before, &restarted);
    assert_eq!(calls(&restarted), 1.0);
    assert_eq!(restarted.value("crocodial_polls_total", &[]), 2.0);
    assert_eq!(ex.get("/-/ready").await.0, 503);

    let r = ex.exporter.poller.poll().await.expect("catch up");
    assert_eq!((r.rows.new, r.rows.duplicate), (3, 2));
    let after = ex.scrape().await;
    assert_no_counter_decreased(&restarted, &after);
    assert_eq!(calls(&after), 4.0);
    let q = [
        ("queue", "SUPPORT"),
        ("campaign", "CARE"),
        ("outcome", "answered"),
    ];
    // e names agent001, but its caller abandoned.
    assert_eq!(
        after.value("crocodial_inbound_queue_time_seconds_count", &q),
        3.0
    );
    assert_eq!(
        after.value("crocodial_inbound_queue_time_seconds_sum", &q),
        9.0 + 7.0 + 11.0
    );
    assert_eq!(
        after.value(
            "crocodial_inbound_queue_time_seconds_bucket",
            &[q[0], q[1], q[2], ("le", "45")]
        ),
        3.0
    );
    let abandoned = [q[0], q[1], ("outcome", "abandoned")];
    assert_eq!(
        after.value("crocodial_inbound_queue_time_seconds_sum", &abandoned),
        50.0
    );
    assert_eq!(
        after.value(
            "crocodial_inbound_agent_calls_total",
            &[("agent", "agent001")]
        ),
        3.0
    );
    // Talk time 60 - wait of c, b and d, restored and continued.
    assert_eq!(
        after.value(
            "crocodial_inbound_agent_talk_time_seconds_total",
            &[("agent", "agent001")]
        ),
        3.0 * 60.0 - 9.0 - 7.0 - 11.0
    );
    assert_eq!(
        after.value("crocodial_inbound_unique_calls_total", &[]),
        4.0
    );
    assert_eq!(
        after.value("crocodial_state_last_downtime_seconds", &[]),
        1800.0
    );
    assert_eq!(after.value("crocodial_state_gaps_total", &[]), 0.0);
    assert_eq!(after.value("crocodial_dedup_entries", &[]), 5.0);
    assert_eq!(after.value("crocodial_polls_total", &[]), 3.0);
    assert_eq!(
        after.value("crocodial_cdr_rows_total", &[("result", "new")]),
        4.0
    );
    drop(ex);

    // A third run with nothing new counts nothing again.
    let mut ex = start_exporter(&cfg, &clock).await;
    let r = ex.exporter.poller.poll().await.expect("nothing new");
    assert_eq!((r.rows.new, r.rows.duplicate), (0, 5));
    assert_eq!(calls(&ex.scrape().await), 4.0);
}

#[tokio::test]
async fn a_downtime_longer_than_the_window_is_reported() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let path = temp_state("gap");
    let mut cfg = config(&sim.url, "UTC");
    cfg.state_file = Some(path.clone());
    {
        let mut ex = start_exporter(&cfg, &clock).await;
        sim.handle.set_answer(
            200,
            body(&[row("1.1", "11:00:00", "Answered", "AGENT", "5")]),
        );
        ex.exporter.poller.poll().await.expect("prime");
    }
    // Two days later: the window starts at the 31st; the 29th and 30th are out of reach.
    clock.set(ts("2025-05-31T12:00:00Z"));
    sim.handle
        .set_answer(200, body(&[]).replace("2025-05-29", "2025-05-31"));
    let mut ex = start_exporter(&cfg, &clock).await;
    ex.exporter.poller.poll().await.expect("resume");
    let e = ex.scrape().await;
    assert_eq!(e.value("crocodial_state_gaps_total", &[]), 1.0);
    assert_eq!(
        e.value("crocodial_state_last_downtime_seconds", &[]),
        2.0 * 86_400.0
    );
    // The 29th's legs are kept: a restart cannot tell two days down from a clock stepped two
    // days ahead, and forgetting them by such a clock would count them again once it is back.
    assert_eq!(e.value("crocodial_dedup_entries", &[]), 1.0);
    // The dialer's own rows of the 31st show the time has passed: they are forgotten, in memory
    // and in the file.
    sim.handle.set_answer(
        200,
        body(&[row("2.1", "11:30:00", "Answered", "AGENT", "5")])
            .replace("2025-05-29", "2025-05-31"),
    );
    let r = ex.exporter.poller.poll().await.expect("a call of the 31st");
    assert_eq!(r.rows.new, 1);
    // The next poll forgets them (a poll's expiry is decided before its rows are read).
    let r = ex.exporter.poller.poll().await.expect("the next poll");
    assert_eq!((r.rows.new, r.rows.duplicate), (0, 1));
    assert_eq!(ex.scrape().await.value("crocodial_dedup_entries", &[]), 1.0);
    drop(ex);
    let ex = start_exporter(&cfg, &clock).await;
    assert_eq!(ex.scrape().await.value("crocodial_dedup_entries", &[]), 1.0);
}

async fn recovers_from(path: &Path, reason: &str) {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.state_file = Some(path.to_path_buf());
    let mut ex = start_exporter(&cfg, &clock).await;
    // Served at 0 first, so that increase() sees the recovery of this start.
    let first = ex.scrape_once().await;
    assert_eq!(first.sum("crocodial_state_recoveries_total"), 0.0);
    let e = ex.scrape_once().await;
    for r in ["corrupt", "newer_schema", "unreadable"] {
        let want = if r == reason { 1.0 } else { 0.0 };
        assert_eq!(
            e.value("crocodial_state_recoveries_total", &[("reason", r)]),
            want,
            "{reason}: {r}"
        );
    }
    let aside = format!(
        "{}.corrupt-{}",
        path.display(),
        ts("2025-05-29T12:00:00Z").as_second()
    );
    assert!(Path::new(&aside).exists(), "{aside} kept for inspection");
    // Fresh start: the first poll primes, the next counts; the new file works.
    sim.handle.set_answer(
        200,
        body(&[row("2.1", "11:00:00", "Answered", "AGENT", "5")]),
    );
    let r = ex.exporter.poller.poll().await.expect("prime");
    assert_eq!((r.rows.new, r.rows.duplicate), (0, 1));
    sim.handle.set_answer(
        200,
        body(&[
            row("2.1", "11:00:00", "Answered", "AGENT", "5"),
            row("2.2", "11:30:00", "Answered", "AGENT", "6"),
        ]),
    );
    assert_eq!(ex.exporter.poller.poll().await.expect("count").rows.new, 1);
    drop(ex);
    let ex = start_exporter(&cfg, &clock).await;
    let e = ex.scrape().await;
    assert_eq!(calls(&e), 1.0);
    assert_eq!(
        e.value("crocodial_state_recoveries_total", &[("reason", reason)]),
        1.0
    );
}

#[tokio::test]
async fn a_file_of_garbage_is_moved_aside() {
    let path = temp_state("garbage");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).expect("write");
    recovers_from(&path, "corrupt").await;
}

#[tokio::test]
async fn a_truncated_file_is_moved_aside() {
    let path = temp_state("truncated");
    {
        let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
        let sim = start_sim(&clock, "UTC", 1).await;
        let mut cfg = config(&sim.url, "UTC");
        cfg.state_file = Some(path.clone());
        let mut ex = start_exporter(&cfg, &clock).await;
        let rows: Vec<String> = (0..500)
            .map(|i| row(&format!("3.{i}"), "11:00:00", "Answered", "AGENT", "5"))
            .collect();
        sim.handle.set_answer(200, body(&rows));
        ex.exporter.poller.poll().await.expect("fill");
    }
    let len = std::fs::metadata(&path).expect("meta").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(len / 3).expect("truncate");
    drop(file);
    recovers_from(&path, "corrupt").await;
}

/// A damaged seen table is a damaged file: restoring it as empty would count every call in
/// the window again. (Here the table is replaced by one of another type, which redb refuses to
/// open as the seen table.)
#[tokio::test]
async fn a_damaged_seen_table_is_moved_aside_not_read_as_empty() {
    let path = temp_state("damaged-seen");
    {
        let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
        let sim = start_sim(&clock, "UTC", 1).await;
        let mut cfg = config(&sim.url, "UTC");
        cfg.state_file = Some(path.clone());
        let mut ex = start_exporter(&cfg, &clock).await;
        let rows: Vec<String> = (0..50)
            .map(|i| row(&format!("4.{i}"), "11:00:00", "Answered", "AGENT", "5"))
            .collect();
        sim.handle.set_answer(200, body(&rows));
        ex.exporter.poller.poll().await.expect("fill");
    }
    {
        let db = redb::Database::open(&path).expect("open");
        let txn = db.begin_write().expect("txn");
        assert!(txn
            .delete_table(redb::TableDefinition::<&[u8], ()>::new("test/seen"))
            .expect("delete"));
        txn.open_table(redb::TableDefinition::<u64, u64>::new("test/seen"))
            .expect("table")
            .insert(1, 2)
            .expect("insert");
        txn.commit().expect("commit");
    }
    recovers_from(&path, "corrupt").await;
}

#[tokio::test]
async fn a_file_from_a_newer_schema_is_moved_aside() {
    let path = temp_state("newer");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .expect("meta");
            meta.insert("schema", &999u32.to_le_bytes()[..])
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    recovers_from(&path, "newer_schema").await;
}

/// A path that cannot be opened or created is refused (exit 2), named with the reason, and
/// left as it was: running without the state would lose the calls of every restart.
#[tokio::test]
async fn a_path_that_cannot_be_opened_is_refused() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let crocodial_exporter::config::ApiSource::Remote(api) = &config(&sim.url, "UTC").api else {
        unreachable!()
    };
    // Root reads any file whatever its mode, so unreadability is a directory in its place,
    // or a directory that does not exist.
    let dir = temp_state("unreadable");
    std::fs::create_dir(&dir).expect("dir");
    let missing = dir.with_file_name("no-such-dir").join("state.db");
    for (path, reason) in [
        (&dir, "is a directory"),
        (
            &missing,
            "cannot be opened or created: No such file or directory",
        ),
    ] {
        let mut cfg = config(&sim.url, "UTC");
        cfg.state_file = Some(path.clone());
        let refused = Exporter::new(&cfg, api, std::sync::Arc::new(clock.clone()));
        let Err(e) = refused else {
            panic!("{} must be refused", path.display())
        };
        assert_eq!(e.exit_code(), 2);
        let message = e.to_string();
        assert!(
            message.starts_with(&format!("state file {}: {reason}", path.display())),
            "{message}"
        );
    }
    assert!(dir.is_dir() && !missing.exists() && !missing.parent().expect("dir").exists());
    let aside = format!("{}.corrupt-{}", dir.display(), clock_second());
    assert!(!Path::new(&aside).exists(), "nothing moved aside");
}

fn clock_second() -> i64 {
    ts("2025-05-29T12:00:00Z").as_second()
}

#[tokio::test]
async fn a_file_held_by_another_exporter_is_refused() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let path = temp_state("locked");
    let mut cfg = config(&sim.url, "UTC");
    cfg.state_file = Some(path.clone());
    let _first = start_exporter(&cfg, &clock).await;
    let crocodial_exporter::config::ApiSource::Remote(api) = &cfg.api else {
        unreachable!()
    };
    let second = Exporter::new(&cfg, api, std::sync::Arc::new(clock.clone()));
    match second {
        Err(RunError::State(e)) => assert_eq!(
            e.to_string(),
            format!(
                "state file {} is held by another running exporter",
                path.display()
            )
        ),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a held state file must be refused"),
    }
    assert!(!Path::new(&format!(
        "{}.corrupt-{}",
        path.display(),
        ts("2025-05-29T12:00:00Z").as_second()
    ))
    .exists());
}

#[tokio::test]
async fn changed_buckets_restart_that_histogram_from_zero() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let path = temp_state("layout");
    let mut cfg = config(&sim.url, "UTC");
    cfg.state_file = Some(path.clone());
    let first = [row("4.1", "11:00:00", "Answered", "AGENT", "5")];
    let second = [
        first[0].clone(),
        row("4.2", "11:10:00", "Answered", "AGENT", "25"),
    ];
    let third = [
        second[0].clone(),
        second[1].clone(),
        row("4.3", "11:20:00", "Answered", "AGENT", "12"),
    ];
    {
        let mut ex = start_exporter(&cfg, &clock).await;
        sim.handle.set_answer(200, body(&first));
        ex.exporter.poller.poll().await.expect("prime");
        sim.handle.set_answer(200, body(&second));
        ex.exporter.poller.poll().await.expect("count");
    }
    cfg.metrics.queue_time_buckets = vec![10.0, 20.0];
    let mut ex = start_exporter(&cfg, &clock).await;
    let e = ex.scrape().await;
    let q = [
        ("queue", "SUPPORT"),
        ("campaign", "CARE"),
        ("outcome", "answered"),
    ];
    assert_eq!(calls(&e), 1.0, "counters keep their values");
    assert_eq!(
        e.get("crocodial_inbound_queue_time_seconds_count", &q),
        Some(0.0),
        "the histogram restarts"
    );
    assert_eq!(
        e.value("crocodial_inbound_call_duration_seconds_count", &q),
        1.0,
        "unchanged layout kept"
    );
    sim.handle.set_answer(200, body(&third));
    ex.exporter.poller.poll().await.expect("count");
    drop(ex);
    let ex = start_exporter(&cfg, &clock).await;
    let e = ex.scrape().await;
    assert_eq!(calls(&e), 2.0);
    assert_eq!(
        e.value("crocodial_inbound_queue_time_seconds_count", &q),
        1.0
    );
    assert_eq!(
        e.value(
            "crocodial_inbound_queue_time_seconds_bucket",
            &[q[0], q[1], q[2], ("le", "20")]
        ),
        1.0
    );
    assert_eq!(
        e.value(
            "crocodial_inbound_queue_time_seconds_bucket",
            &[q[0], q[1], q[2], ("le", "10")]
        ),
        0.0
    );
    assert_eq!(
        e.value("crocodial_inbound_call_duration_seconds_count", &q),
        2.0
    );
}

/// A state file written by the exporter before the `outcome` label (schema 1, made by the
/// previous release with `--demo`; `state-schema1.metrics` is what that release served from
/// it). It loads: every counter keeps its value, the histograms restart from zero with a
/// warning, nothing is treated as corrupt, and the file is upgraded to this schema.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_from_before_the_outcome_label_keeps_its_counters() {
    let (path, old) = fixture("schema1");
    let log = path.with_file_name("stderr.log");
    let addr = format!("127.0.0.1:{}", free_port());
    // The API is unreachable, so nothing but the restored state shows.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_crocodial-exporter"))
        .args([
            "--api.url",
            "http://127.0.0.1:9/goAPI.php",
            "--api.user",
            "x",
        ])
        .args(["--api.target-name", "demo", "--api.timezone", "UTC"])
        .args(["--web.listen-address", &addr])
        .arg("--state.file")
        .arg(&path)
        .env("CROCODIAL_API_PASSWORD", "x")
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let exporter = KillOnDrop(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/metrics")).await {
            break r.text().await.expect("body");
        }
        assert!(std::time::Instant::now() < deadline, "no /metrics");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    drop(exporter);
    let new = Exposition::parse(&text);
    let counters = [
        "crocodial_inbound_calls_total",
        "crocodial_inbound_agent_calls_total",
        "crocodial_inbound_last_call_timestamp_seconds",
    ];
    for name in counters {
        let samples: Vec<_> = old.samples.iter().filter(|(n, _, _)| n == name).collect();
        assert!(!samples.is_empty(), "the fixture has {name}");
        assert_eq!(new.count(name), samples.len(), "{name}");
        for (_, labels, value) in samples {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .filter(|(k, _)| *k != "target")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(new.value(name, &labels), *value, "{name} {labels:?}");
        }
    }
    assert_eq!(old.sum("crocodial_inbound_calls_total"), 16.0);
    assert!(old.count("crocodial_inbound_queue_time_seconds_count") > 0);
    // Restarted from zero: every queue and campaign with calls shows its three outcomes empty.
    let pairs = old
        .samples
        .iter()
        .filter(|(n, _, _)| n == "crocodial_inbound_calls_total")
        .map(|(_, l, _)| (l["queue"].clone(), l["campaign"].clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(pairs, 6);
    assert_eq!(
        new.count("crocodial_inbound_queue_time_seconds_count"),
        4 * pairs
    );
    // Agents' seconds were call durations, queue wait included: talk time starts at 0.
    assert_eq!(
        new.count("crocodial_inbound_agent_talk_time_seconds_total"),
        old.count("crocodial_inbound_agent_calls_total")
    );
    assert_eq!(
        new.sum("crocodial_inbound_agent_talk_time_seconds_total"),
        0.0
    );
    assert_eq!(new.sum("crocodial_inbound_queue_time_seconds_count"), 0.0);
    assert_eq!(
        new.sum("crocodial_inbound_call_duration_seconds_count"),
        0.0
    );

    assert_eq!(new.sum("crocodial_state_recoveries_total"), 0.0);
    let log = std::fs::read_to_string(&log).expect("log");
    let warning = log
        .lines()
        .find(|l| l.contains("these series start from zero"))
        .unwrap_or_else(|| panic!("no warning in\n{log}"));
    assert!(
        warning.contains("crocodial_inbound_queue_time_seconds")
            && warning.contains("crocodial_inbound_call_duration_seconds")
            && warning.contains("crocodial_inbound_agent_talk_time_seconds_total"),
        "{warning}"
    );
    assert_upgraded(&path);
}

/// A copy of the state file fixture `tests/fixtures/state-<name>.db`, and what the release that
/// wrote it served from it.
fn fixture(name: &str) -> (PathBuf, Exposition) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let path = temp_state(name);
    std::fs::copy(fixtures.join(format!("state-{name}.db")), &path).expect("copy fixture");
    let served = std::fs::read_to_string(fixtures.join(format!("state-{name}.metrics")));
    (path, Exposition::parse(&served.expect("metrics")))
}

/// The file at `path` has this exporter's schema.
fn assert_upgraded(path: &Path) {
    let db = redb::Database::open(path).expect("open");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let meta = txn
        .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
        .expect("meta");
    let schema = meta.get("schema").expect("get").expect("schema");
    assert_eq!(
        schema.value(),
        crocodial_exporter::state::SCHEMA_VERSION.to_le_bytes()
    );
}

/// The call ids a state file from before legs remembered (`<target>/seen`), as text.
fn legacy_seen_ids(path: &Path, target: &str) -> Vec<String> {
    let db = redb::Database::open(path).expect("open");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let table = txn
        .open_table(redb::TableDefinition::<&[u8], ()>::new(&format!(
            "{target}/seen"
        )))
        .expect("seen");
    let mut ids = Vec::new();
    for entry in redb::ReadableTable::iter(&table).expect("iter") {
        let (k, _) = entry.expect("entry");
        let k = k.value();
        // Day (4 bytes), then 0 and the packed id (epoch << 31 | digits + 1 << 27 | fraction).
        assert_eq!(k[4], 0, "a packed id");
        let p = u64::from_be_bytes(k[5..13].try_into().expect("8 bytes"));
        let (epoch, code, fraction) = (p >> 31, (p >> 27) & 0xf, p & ((1 << 27) - 1));
        ids.push(match code {
            0 => epoch.to_string(),
            n => format!("{epoch}.{fraction:0width$}", width = (n - 1) as usize),
        });
    }
    ids
}

/// A state file written by the previous release (schema 2, made with `--demo`;
/// `state-schema2.metrics` is what that release served from it). It loads: every counter and
/// histogram keeps its value; the call ids it remembers keep counting as seen (a row of such a
/// call is not counted again), new calls count; its calls in progress are forgotten with a
/// logged line, the agents' seconds restart as talk time, and the file is upgraded.
#[tokio::test]
async fn a_state_file_from_before_legs_keeps_its_counters_and_its_seen_calls() {
    let (path, old) = fixture("schema2");
    let legacy = legacy_seen_ids(&path, "demo");
    assert_eq!(legacy.len(), 4865, "the fixture's seen set");
    let clock = ManualClock::new(ts("2026-12-04T10:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.target = "demo".into();
    cfg.state_file = Some(path.clone());
    let logs = Logs::default();
    let _logging = logs.capture();
    let mut ex = start_exporter(&cfg, &clock).await;
    assert_eq!(
        logs.count("its 38 calls in progress are forgotten"),
        1,
        "{}",
        logs.text()
    );
    let new = ex.scrape().await;
    for name in [
        "crocodial_inbound_calls_total",
        "crocodial_inbound_agent_calls_total",
        "crocodial_inbound_last_call_timestamp_seconds",
        "crocodial_inbound_queue_time_seconds_count",
        "crocodial_inbound_queue_time_seconds_sum",
        "crocodial_inbound_call_duration_seconds_bucket",
        "crocodial_cdr_rows_total",
    ] {
        let samples: Vec<_> = old.samples.iter().filter(|(n, _, _)| n == name).collect();
        assert!(!samples.is_empty(), "the fixture has {name}");
        for (_, labels, value) in samples {
            // The rows' label was `outcome` then; it is `result` now.
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .filter(|(k, _)| *k != "target")
                .map(|(k, v)| match (name, k.as_str()) {
                    ("crocodial_cdr_rows_total", "outcome") => ("result", v.as_str()),
                    _ => (k.as_str(), v.as_str()),
                })
                .collect();
            assert_eq!(new.value(name, &labels), *value, "{name} {labels:?}");
        }
    }
    assert_eq!(old.sum("crocodial_inbound_calls_total"), 42.0);
    assert_eq!(
        new.sum("crocodial_inbound_agent_talk_time_seconds_total"),
        0.0
    );
    assert_eq!(new.value("crocodial_dedup_entries", &[]), 4865.0);
    assert_eq!(new.value("crocodial_cdr_pending_entries", &[]), 0.0);

    // A row of a call the old file counted is not counted again; a new call is.
    let seen_row = |id: &str| {
        format!(
            r#"{{"call_date":"2026-12-04 09:30:00","uniq1":"{id}","queue":"SUPPORT","agent":"agent001","campaign":"CARE","disposition":"Answered","term_reason":"AGENT","queue_time":"5","call_duration":"60"}}"#
        )
    };
    sim.handle.set_answer(
        200,
        body(&[
            seen_row(&legacy[0]),
            seen_row(&legacy[1]),
            seen_row("1764842000.5"),
        ]),
    );
    let r = ex.exporter.poller.poll().await.expect("poll");
    assert_eq!((r.rows.new, r.rows.duplicate), (1, 2));
    let after = ex.scrape().await;
    assert_eq!(after.sum("crocodial_inbound_calls_total"), 43.0);
    assert_eq!(
        after.value(
            "crocodial_inbound_agent_talk_time_seconds_total",
            &[("agent", "agent001")]
        ),
        55.0
    );
    drop(ex);
    assert_upgraded(&path);
}

/// The state file as a store that can be made to fail, as a full disk or a read-only file
/// system would.
struct FailingStore {
    inner: crocodial_exporter::state::Store,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The threads each commit ran on.
    threads: std::sync::Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>,
}

impl crocodial_exporter::state::StateStore for FailingStore {
    fn commit(
        &self,
        plan: Option<&crocodial_exporter::vocab::Plan>,
        cdr: &crocodial_exporter::metrics::CdrAggregates,
        health: &crocodial_exporter::metrics::Health,
    ) -> Result<(), crocodial_exporter::state::StateError> {
        self.threads
            .lock()
            .expect("threads")
            .push(std::thread::current().id());
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crocodial_exporter::state::StateError::Unusable {
                path: "state.db".into(),
                reason: crocodial_exporter::metrics::health::RecoveryReason::Unreadable,
                message: "No space left on device".into(),
            });
        }
        self.inner.commit(plan, cdr, health)
    }

    fn rewrite(
        &self,
        whole: &crocodial_exporter::vocab::Plan,
        cdr: &crocodial_exporter::metrics::CdrAggregates,
        health: &crocodial_exporter::metrics::Health,
        now: jiff::Timestamp,
    ) -> Result<(), crocodial_exporter::state::StateError> {
        self.inner.rewrite(whole, cdr, health, now)
    }
}

/// When a poll cannot be stored and its failure cannot be stored either, the failure still
/// shows: up 0, the state error, the consecutive failures, a backoff; nothing of the poll is
/// counted, and once the store works again the calls count once.
#[tokio::test]
async fn a_state_that_cannot_be_written_is_always_visible() {
    use crocodial_exporter::ingest::schedule::Job;
    use crocodial_exporter::ingest::Poller;
    use std::sync::atomic::{AtomicBool, Ordering};

    let path = temp_state("unwritable");
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    let mut ex = start_exporter(&cfg, &clock).await;
    cfg.state_file = Some(path.clone());
    let opened =
        crocodial_exporter::state::open(&path, "test", &cfg.metrics, ts("2025-05-29T12:00:00Z"))
            .expect("open");
    let fail = std::sync::Arc::new(AtomicBool::new(false));
    let threads = std::sync::Arc::default();
    let store = FailingStore {
        inner: opened.store.expect("store"),
        fail: fail.clone(),
        threads: std::sync::Arc::clone(&threads),
    };
    let api = api_config(&sim.url);
    let client = crocodial_exporter::api::ApiClient::new(&api, cfg.timeout).expect("client");
    let shared = ex.exporter.poller.shared().clone();
    ex.exporter.poller = Poller::new(
        &cfg,
        client,
        shared,
        std::sync::Arc::new(clock.clone()),
        Some(std::sync::Arc::new(store)),
        opened.restored,
    );

    // The log lines, as the exporter writes them, for the poller's polls on this thread.
    let logs = Logs::default();
    let _logging = logs.capture();

    sim.handle.set_answer(
        200,
        body(&[row("5.1", "11:00:00", "Answered", "AGENT", "5")]),
    );
    ex.exporter.poller.poll().await.expect("prime");
    let rows = [
        row("5.1", "11:00:00", "Answered", "AGENT", "5"),
        row("5.2", "11:10:00", "Answered", "AGENT", "7"),
    ];
    sim.handle.set_answer(200, body(&rows));
    fail.store(true, Ordering::SeqCst);
    for failures in 1..=3u32 {
        let err = ex.exporter.poller.poll().await.expect_err("cannot store");
        assert_eq!(err.reason, crocodial_exporter::vocab::Reason::State);
        let e = ex.scrape().await;
        assert_eq!(e.value("crocodial_up", &[]), 0.0);
        assert_eq!(
            e.value("crocodial_poll_errors_total", &[("reason", "state")]),
            f64::from(failures)
        );
        assert_eq!(
            e.value("crocodial_poll_consecutive_failures", &[]),
            f64::from(failures)
        );
        assert_eq!(calls(&e), 0.0, "nothing of a failed poll counts");
    }
    // And it backs off, as for any failure.
    let wait = ex.exporter.poller.run().await;
    assert!(wait > cfg.poll_interval, "{wait:?}");
    let e = ex.scrape().await;
    assert_eq!(e.value("crocodial_poll_consecutive_failures", &[]), 4.0);
    assert!(e.value("crocodial_poll_backoff_seconds", &[]) > 30.0);
    // Healthy through 4 polls that could not be stored; the 5th in a row makes /-/healthy
    // fail, so that a liveness probe restarts an exporter whose disk keeps failing.
    assert_eq!(ex.get("/-/healthy").await, (200, "Healthy\n".to_string()));
    ex.exporter.poller.poll().await.expect_err("cannot store");
    assert_eq!(
        ex.get("/-/healthy").await,
        (
            503,
            "Unhealthy: the state file could not store the last 5 polls of test\n".to_string()
        )
    );

    // A poll that could not be stored never said it succeeded.
    assert_eq!(
        logs.count("the state file takes writes again"),
        0,
        "{}",
        logs.text()
    );
    assert_eq!(logs.count("poll failed; metrics keep their last values"), 1);

    fail.store(false, Ordering::SeqCst);
    ex.exporter.poller.poll().await.expect("stored again");
    assert_eq!(ex.get("/-/healthy").await.0, 200);
    assert_eq!(
        logs.count("the state file takes writes again"),
        1,
        "{}",
        logs.text()
    );
    let e = ex.scrape().await;
    assert_eq!(e.value("crocodial_up", &[]), 1.0);
    assert_eq!(calls(&e), 1.0);
    assert_eq!(
        e.value("crocodial_poll_errors_total", &[("reason", "state")]),
        5.0
    );
    // Every write (of the polls and of the failures) ran off the runtime's only thread, which
    // runs this test: the wait for the disk never held it.
    let threads = threads.lock().expect("threads");
    assert_eq!(threads.len(), 1 + 2 * 5 + 1, "{threads:?}");
    assert!(!threads.contains(&std::thread::current().id()));
}

/// The counts a restored state holds: counters by series, distinct calls, and the legs
/// remembered and pending.
#[derive(Debug, PartialEq)]
struct Counts {
    calls: Vec<([u32; 4], u64)>,
    legs: Vec<([u32; 3], u64)>,
    unique_calls: u64,
    seen: usize,
    pending: usize,
}

fn restored_counts(restored: &crocodial_exporter::state::Restored) -> Counts {
    let mut calls: Vec<_> = restored.cdr.calls.iter().map(|(k, v)| (*k, *v)).collect();
    calls.sort();
    let mut legs: Vec<_> = restored.cdr.legs.iter().map(|(k, v)| (*k, *v)).collect();
    legs.sort();
    Counts {
        calls,
        legs,
        unique_calls: restored.cdr.totals.unique_calls,
        seen: restored.remembered.legs.len(),
        pending: restored.remembered.pending.len(),
    }
}

/// A few hundred single bits flipped, and pages zeroed, across a real state file, one at a
/// time: each start either moves the file aside as corrupt, or restores exactly what the
/// undamaged file holds; none panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_state_is_refused_at_open_or_changes_nothing() {
    let path = temp_state("damaged");
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 3).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.state_file = Some(path.clone());
    {
        let mut ex = start_exporter(&cfg, &clock).await;
        for _ in 0..20 {
            ex.exporter.poller.poll().await.expect("poll");
            clock.advance(jiff::SignedDuration::from_secs(60));
        }
    }
    let pristine = std::fs::read(&path).expect("state file");
    let now = ts("2025-05-29T13:00:00Z");
    let open = |bytes: &[u8]| {
        let copy = path.with_file_name("damaged.db");
        std::fs::write(&copy, bytes).expect("copy");
        let opened = std::panic::catch_unwind(|| {
            crocodial_exporter::state::open(&copy, "test", &cfg.metrics, now)
        });
        for entry in std::fs::read_dir(path.parent().expect("dir"))
            .expect("dir")
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("damaged.db.corrupt-")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        opened.map_err(|_| "panicked")
    };
    let want = {
        let opened = open(&pristine).expect("no panic").expect("opens");
        assert!(opened.recovered.is_none());
        restored_counts(opened.restored.as_ref().expect("restored"))
    };
    assert!(
        want.calls.iter().map(|(_, n)| n).sum::<u64>() > 10,
        "{want:?}"
    );
    let (mut refused, mut unchanged) = (0, 0);
    let mut damage = |bytes: Vec<u8>, what: String| {
        let opened = open(&bytes)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match (&opened.recovered, &opened.restored) {
            (Some((reason, _)), _) => {
                assert_eq!(reason.as_str(), "corrupt", "{what}");
                refused += 1;
            }
            (None, Some(restored)) => {
                assert_eq!(
                    restored_counts(restored),
                    want,
                    "{what}: accepted, and changed"
                );
                unchanged += 1;
            }
            (None, None) => panic!("{what}: nothing restored, nothing refused"),
        }
    };
    let len = pristine.len();
    for i in 0..300 {
        let mut bytes = pristine.clone();
        let at = (i * 7919 + 13) % len;
        bytes[at] ^= 1 << (i % 8);
        damage(bytes, format!("bit {} of byte {at}", i % 8));
    }
    for page in (0..len / 4096).step_by(1.max(len / 4096 / 20)) {
        let mut bytes = pristine.clone();
        bytes[page * 4096..(page + 1) * 4096].fill(0);
        damage(bytes, format!("page {page} zeroed"));
    }
    eprintln!("{len} bytes: {refused} damaged files refused as corrupt, {unchanged} unchanged");
    assert!(refused > 0);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}
