//! The queue-wait alerts in real time, as they run in production: the exporter binary in
//! `--demo` polling every 30 s, a real Prometheus scraping it every 15 s with the shipped rules,
//! and the simulator's SUPPORT queue starting a wait spike a minute or so after the start.
//!
//! The simulator computes its calls from the time alone, so the test asks the same traffic
//! when the first caller's wait crossed the threshold of `CrocodialCallersWaitingLong`, and
//! measures how long after that the alert fired. It takes about seven minutes.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use crocodial_exporter::config::{ApiSource, Cli, Config};
use crocodial_exporter::sim::traffic::QUEUES;
use jiff::Timestamp;

const BIN: &str = env!("CARGO_BIN_EXE_crocodial-exporter");
/// The threshold of `CrocodialCallersWaitingLong` in deploy/prometheus/rules.yml, seconds.
const THRESHOLD: i64 = 120;
/// How long the spike lasts: as long as the deadline, so that a slow run still has spiking
/// traffic to fire on.
const SPIKE: i64 = 1200;
/// The bound: firing within two minutes of the first caller's wait crossing.
const MAX_DELAY: i64 = 120;
/// From the spike's start: enough for CrocodialQueueWaitHigh's window, volume and `for:`. It
/// fired 524-620 s after the spike's start in the runs measured (the test then ends); the rest
/// is margin for a CI machine's unlucky minutes of traffic.
const DEADLINE_AFTER_SPIKE: i64 = 20 * 60;

fn now() -> i64 {
    Timestamp::now().as_second()
}

/// A spike period whose next spike starts 60 to 90 s from `now` (the simulator spikes while
/// `wall % period < length`). The previous spike ended at least half an hour before: its long
/// waits, talks and late write-ups are over, so nothing but this spike shows.
fn spike_period(now: i64) -> (i64, i64) {
    (SPIKE + 1800..2 * 3600)
        .find_map(|period: i64| {
            let to_next = period - now.rem_euclid(period);
            (60..=90)
                .contains(&to_next)
                .then_some((period, now + to_next))
        })
        .expect("a period")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_long_fires_within_two_minutes_and_queue_wait_high_on_the_spike_only() {
    let started = now();
    let (period, spike_start) = spike_period(started);
    let dir = std::env::temp_dir().join(format!("crocodial-alerting-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    let Some(prom) = prometheus::start(&dir, &addr, "15s") else {
        return;
    };
    let args: Vec<String> = [
        "--demo",
        "--state.file",
        "",
        "--poll.interval",
        "30s",
        "--api.timezone",
        "UTC",
        "--sim.calls-per-minute",
        "120",
        "--sim.spike-every",
        &format!("{period}s"),
        "--sim.spike-length",
        &format!("{SPIKE}s"),
        // Callers wait 15 times longer than usual (2 minutes on average) during the spike.
        "--sim.spike-factor",
        "15",
        "--web.listen-address",
        &addr,
    ]
    .map(String::from)
    .to_vec();

    // The truth: the same traffic the binary's simulator serves.
    let cli =
        Cli::try_parse_from(std::iter::once("crocodial-exporter".to_string()).chain(args.clone()))
            .expect("flags");
    let config = Config::from_args(cli.exporter, None).expect("config");
    let ApiSource::Demo(traffic) = config.api else {
        panic!("demo")
    };
    let support = QUEUES
        .iter()
        .position(|q| *q == "SUPPORT")
        .expect("SUPPORT");
    let calls = traffic.calls(started - 900, spike_start + SPIKE, i64::MAX);
    // When each caller's wait crosses the threshold, while still in queue (UTC: wall = Unix).
    let crossings: Vec<(usize, i64)> = calls
        .iter()
        .filter_map(|c| {
            let left_queue = if c.agent.is_some() {
                c.answered_at
            } else {
                c.final_at
            };
            (left_queue - c.enter_on_queue > THRESHOLD)
                .then_some((c.queue, c.enter_on_queue + THRESHOLD))
        })
        .collect();
    let first_crossing = crossings
        .iter()
        .filter(|&&(q, at)| q == support && at >= started)
        .map(|&(_, at)| at)
        .min()
        .expect("a SUPPORT caller waits past the threshold during the spike");
    let may_wait_long: BTreeSet<&str> = crossings.iter().map(|&(q, _)| QUEUES[q]).collect();

    let exporter = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn exporter");
    let _exporter = KillOnDrop(exporter);
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_ready(&format!("http://{addr}")).await;
    prom.wait_ready(deadline).await;

    let mut waiting_long_fired = None;
    let mut wait_high_fired = None;
    loop {
        let at = now();
        for (name, queue, state) in prom.alerts().await {
            match name.as_str() {
                "CrocodialCallersWaitingLong" => {
                    assert!(
                        may_wait_long.contains(queue.as_str()),
                        "{name} for {queue}, where nobody waited {THRESHOLD} s"
                    );
                    if queue == "SUPPORT" && state == "firing" {
                        waiting_long_fired.get_or_insert(at);
                    }
                }
                "CrocodialQueueWaitHigh" => {
                    assert_eq!(queue, "SUPPORT", "{name} on a quiet queue ({state})");
                    if state == "firing" {
                        wait_high_fired.get_or_insert(at);
                    }
                }
                // Pending only before Prometheus's first scrape.
                "CrocodialExporterAbsent" => assert_eq!(state, "pending", "{name}"),
                "CrocodialExporterDown" | "CrocodialPollsFailing" | "CrocodialDataStale" => {
                    panic!("{name} is {state}")
                }
                _ => {}
            }
        }
        if waiting_long_fired.is_some() && wait_high_fired.is_some() {
            break;
        }
        assert!(
            at < spike_start + DEADLINE_AFTER_SPIKE,
            "{} s after the spike started: CrocodialCallersWaitingLong fired at {waiting_long_fired:?}, \
             CrocodialQueueWaitHigh at {wait_high_fired:?} (first crossing at {first_crossing})\n{}",
            at - spike_start,
            prom.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (Some(waiting_long), Some(wait_high)) = (waiting_long_fired, wait_high_fired) else {
        unreachable!("the loop ends when both fired")
    };
    let delay = waiting_long - first_crossing;
    eprintln!(
        "spike at +{} s; first SUPPORT caller past {THRESHOLD} s at +{} s; \
         CrocodialCallersWaitingLong firing {delay} s after that; \
         CrocodialQueueWaitHigh firing {} s after the spike started",
        spike_start - started,
        first_crossing - started,
        wait_high - spike_start
    );
    assert!(
        delay <= MAX_DELAY,
        "CrocodialCallersWaitingLong fired {delay} s after the first caller's wait crossed {THRESHOLD} s"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
