//! kill -9 at random moments during polls, over and over: afterwards every final call the API
//! returned is counted exactly once, and no counter ever went backwards.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use crocodial_exporter::clock::ManualClock;
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_crocodial-exporter");
const ROWS_PER_STEP: usize = 15;
/// A row is in call for this many steps before it is final.
const FINAL_AFTER: usize = 3;

/// The API's answer after `step` steps: every call so far, the newest still in call.
fn answer(today: &str, step: usize, all_final: bool) -> String {
    let n = step * ROWS_PER_STEP;
    if n == 0 {
        return format!(r#"{{"result":"No records retrieved from: {today} - {today}"}}"#);
    }
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let done = all_final || i < step.saturating_sub(FINAL_AFTER) * ROWS_PER_STEP;
            let (disposition, term) = if done { ("Answered", "AGENT") } else { ("INCALL", "NONE") };
            format!(
                r#"{{"call_date":"{today} {:02}:{:02}:{:02}","uniq1":"1700000000.{i}","queue":"Q{}","agent":"agent{:03}","campaign":"C","disposition":"{disposition}","term_reason":"{term}","queue_time":"{}","call_duration":"{}"}}"#,
                i / 3600 % 24,
                i / 60 % 60,
                i % 60,
                i % 3,
                i % 7,
                i % 50,
                10 + i % 90
            )
        })
        .collect();
    format!(
        r#"{{"result":"success","data":{{"rows":[{}]}}}}"#,
        rows.join(",")
    )
}

fn start(api: &str, state: &std::path::Path, port: u16) -> KillOnDrop {
    let child = Command::new(BIN)
        .args([
            "--api.url",
            api,
            "--api.user",
            USER,
            "--api.timezone",
            "UTC",
        ])
        .args(["--poll.interval", "40ms", "--log.level", "error"])
        // The rows are dated early today by the real clock: a day of max-pending keeps the
        // calls in call pending across the kills at any time of day.
        .args(["--cdr.max-pending", "24h", "--poll.lookback", "25h"])
        .arg("--state.file")
        .arg(state)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .env("CROCODIAL_API_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn exporter");
    KillOnDrop(child)
}

async fn scrape(port: u16) -> Option<Exposition> {
    let res = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()?;
    Some(Exposition::parse(&res.text().await.ok()?))
}

async fn ready(port: u16) -> bool {
    reqwest::get(format!("http://127.0.0.1:{port}/-/ready"))
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// The counters whose values must never go down, by series.
fn counters(e: &Exposition) -> Vec<(String, f64)> {
    e.samples
        .iter()
        .filter(|(n, _, _)| {
            n.starts_with("crocodial_")
                && (n.ends_with("_total")
                    || n.ends_with("_count")
                    || n.ends_with("_bucket")
                    || n.ends_with("_sum"))
        })
        .map(|(n, l, v)| (format!("{n}{l:?}"), *v))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_never_double_counts_or_loses_a_call() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let today = today_utc();
    sim.handle.set_answer(200, answer(&today, 0, false));
    let dir = std::env::temp_dir().join(format!("croco-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let state = dir.join("state.db");
    let api = sim.url.to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();

    // First start on a fresh file primes on an empty window.
    let first = start(&api, &state, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready(port).await {
        assert!(Instant::now() < deadline, "first start not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);

    // The API moves on by itself: a new step every 30 ms.
    let step = Arc::new(AtomicUsize::new(0));
    let stepper = {
        let (step, handle, today) = (step.clone(), sim.handle.clone(), today.clone());
        tokio::spawn(async move {
            loop {
                let s = step.fetch_add(1, Ordering::SeqCst) + 1;
                handle.set_answer(200, answer(&today, s, false));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };

    let mut rng = rand::rngs::SmallRng::seed_from_u64(0xC0C0);
    let mut high: Vec<(String, f64)> = Vec::new();
    let mut kills = 0;
    let mut scrapes = 0;
    // Kills that came while calls were pending (in call, not counted yet).
    let mut kills_while_pending = 0;
    while kills < 24 {
        let mut child = start(&api, &state, port);
        let lifetime = Duration::from_millis(rng.random_range(60..400));
        let born = Instant::now();
        let mut pending = 0.0;
        while born.elapsed() < lifetime {
            if let Some(e) = scrape(port).await {
                scrapes += 1;
                pending = e.value("crocodial_cdr_pending_entries", &[]);
                let now = counters(&e);
                for (series, v) in &high {
                    if let Some((_, w)) = now.iter().find(|(s, _)| s == series) {
                        assert!(w >= v, "{series} went back from {v} to {w}");
                    } else {
                        panic!("{series} disappeared after a restart");
                    }
                }
                high = now;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
        }
        child.0.kill().expect("kill -9");
        child.0.wait().expect("reaped");
        kills += 1;
        if pending > 0.0 {
            kills_while_pending += 1;
        }
    }
    stepper.abort();
    let steps = step.load(Ordering::SeqCst);
    let total = steps * ROWS_PER_STEP;
    assert!(scrapes > 20, "scraped {scrapes} times");
    assert!(
        kills_while_pending > kills / 2,
        "only {kills_while_pending} of {kills} kills came with calls pending"
    );
    sim.handle.set_answer(200, answer(&today, steps, true));

    // Back for good: every call is counted exactly once.
    let _last = start(&api, &state, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let e = loop {
        if let Some(e) = scrape(port).await {
            if ready(port).await && e.sum("crocodial_inbound_calls_total") >= total as f64 {
                // Two more polls, to see that nothing more is added.
                let polls = e.value("crocodial_polls_total", &[]);
                loop {
                    let later = scrape(port).await.expect("scrape");
                    if later.value("crocodial_polls_total", &[]) >= polls + 2.0 {
                        break;
                    }
                    assert!(Instant::now() < deadline, "no more polls");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                break scrape(port).await.expect("scrape");
            }
        }
        assert!(Instant::now() < deadline, "calls not all counted in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        e.sum("crocodial_inbound_calls_total"),
        total as f64,
        "{steps} steps, {kills} kills"
    );
    for q in 0..3 {
        let n = (0..total).filter(|i| i % 3 == q).count();
        let wait: usize = (0..total).filter(|i| i % 3 == q).map(|i| i % 50).sum();
        let labels = [
            ("queue", format!("Q{q}")),
            ("campaign", "C".to_string()),
            ("outcome", "answered".to_string()),
        ];
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            e.value("crocodial_inbound_queue_time_seconds_count", &labels),
            n as f64
        );
        assert_eq!(
            e.value("crocodial_inbound_queue_time_seconds_sum", &labels),
            wait as f64
        );
    }
    assert_eq!(e.value("crocodial_dedup_entries", &[]), total as f64);
    assert_eq!(
        e.value("crocodial_cdr_rows_total", &[("result", "new")]),
        total as f64
    );
    for (series, v) in &high {
        let now = counters(&e);
        let w = now.iter().find(|(s, _)| s == series).map(|x| x.1);
        assert!(w.is_some_and(|w| w >= *v), "{series}: {v} -> {w:?}");
    }
}
