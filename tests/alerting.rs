//! The queue-wait alerts in real time, as they run in production: the simulator (`simulate`)
//! and the exporter binary as two processes, the exporter polling every 30 s with a targets
//! file that gives one queue a wait alert of its own, a real Prometheus scraping it every 15 s
//! with the shipped rules, and the simulator's SUPPORT queue losing most of its agents a minute
//! or so after the start.
//!
//! The simulator computes its calls from the time alone, so the test asks the same traffic
//! when the first SUPPORT caller's wait crossed SUPPORT's own threshold (90 s, where the other
//! queues keep the default 120 s), and measures how long after that `CrocodialCallersWaitingLong`
//! fired: at most one poll interval, one scrape interval and one evaluation interval (60 s), and
//! the poll's own duration. A quiet queue gets the longest wait any of its callers has in the
//! run plus 3 s: that caller is answered 3 s before it, and the alert must never fire for that
//! queue. The dialer's clock is set to an afternoon, its busy hours, whatever the hour the test
//! runs at. It takes ten to fifteen minutes.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use crocodial_exporter::config::{Cli, Command as Sub};
use crocodial_exporter::sim::traffic::{Fate, QUEUES};
use crocodial_exporter::sim::SimCall;
use jiff::Timestamp;

const BIN: &str = env!("CARGO_BIN_EXE_crocodial-exporter");
/// The default of `--queue.wait-alert-threshold`, seconds.
const THRESHOLD: i64 = 120;
/// SUPPORT's own wait alert threshold in the targets file, seconds.
const SUPPORT_THRESHOLD: i64 = 90;
/// Poll, scrape and evaluation intervals, seconds.
const POLL: i64 = 30;
const SCRAPE: i64 = 15;
/// How long the spike lasts: as long as the deadline, so that a slow run still has spiking
/// traffic to fire on.
const SPIKE: i64 = 1200;
/// The bound: the first poll after the crossing proves it, one scrape takes it, one
/// evaluation fires: 60 s; plus 1 s, the period at which this test reads the alerts (and the
/// poll's own duration, added as measured).
const MAX_DELAY: i64 = POLL + SCRAPE + SCRAPE + 1;
/// From the spike's start: enough for CrocodialQueueWaitHigh's window, volume and `for:`; the
/// rest is margin for a CI machine's unlucky minutes of traffic.
const DEADLINE_AFTER_SPIKE: i64 = 20 * 60;
/// The simulator's defaults (`simulate --user`, its password).
const SIM_USER: &str = "demo";
const SIM_PASSWORD: &str = "demo";

/// The dialer's zone, a fixed offset at which the run falls in the simulator's busy afternoon
/// whatever the hour it runs at (at night its queues are too quiet for a caller of a steady
/// queue to wait longer than a poll interval), and that offset in seconds. Chosen once.
fn dialer_zone() -> &'static (String, i64) {
    static ZONE: std::sync::OnceLock<(String, i64)> = std::sync::OnceLock::new();
    ZONE.get_or_init(|| {
        let utc_hour = Timestamp::now().as_second().rem_euclid(86_400) / 3600;
        // Etc/GMT-N is N hours east of UTC (POSIX's inverted sign); tzdb has -14 ..= +12.
        let east = 14 - utc_hour;
        let name = match east {
            0 => "Etc/GMT".to_string(),
            e if e > 0 => format!("Etc/GMT-{e}"),
            e => format!("Etc/GMT+{}", -e),
        };
        (name, east * 3600)
    })
}

/// The dialer's wall clock, in seconds: the simulator's calls and spikes run on it.
fn now() -> i64 {
    Timestamp::now().as_second() + dialer_zone().1
}

/// A spike period whose next spike starts 60 to 90 s from `now` (the simulator spikes while
/// `wall % period < length`). The previous spike ended at least half an hour before: its long
/// waits are over, so nothing but this spike shows.
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

/// How long a leg's caller shows as waiting (in queue or ringing): until an agent answers, or
/// until they or the queue give up.
fn waiting(c: &SimCall) -> i64 {
    let left = if c.fate == Fate::Answered {
        c.answered_at
    } else {
        c.final_at
    };
    left - c.enter_on_queue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_long_fires_within_a_poll_a_scrape_and_an_evaluation_and_never_early() {
    let started = now();
    let (period, spike_start) = spike_period(started);
    let dir = temp_dir("alerting");
    let sim_addr = format!("127.0.0.1:{}", free_port());
    let sim_args: Vec<String> = [
        "simulate",
        "--listen",
        &sim_addr,
        "--timezone",
        &dialer_zone().0,
        "--sim.calls-per-minute",
        "120",
        "--sim.spike-every",
        &format!("{period}s"),
        "--sim.spike-length",
        &format!("{SPIKE}s"),
        // SUPPORT keeps a quarter of its agents during the spike.
        "--sim.spike-factor",
        "4",
    ]
    .map(String::from)
    .to_vec();

    // The truth: the same traffic the simulator serves.
    let cli = Cli::try_parse_from(
        std::iter::once("crocodial-exporter".to_string()).chain(sim_args.clone()),
    )
    .expect("flags");
    let Some(Sub::Simulate(sim)) = cli.command else {
        panic!("simulate")
    };
    let traffic = sim
        .traffic
        .traffic(
            sim.seed,
            jiff::tz::TimeZone::get(&dialer_zone().0).expect("zone"),
        )
        .expect("traffic");
    let support = QUEUES
        .iter()
        .position(|q| *q == "SUPPORT")
        .expect("SUPPORT");
    let end = spike_start + DEADLINE_AFTER_SPIKE;
    let calls = traffic.calls(started - 900, end, i64::MAX);
    // The quiet queue: of the steady ones whose longest-waiting caller in the run arrives
    // after the exporter's first poll and is answered, the one where that wait is longest. Its threshold is
    // that wait plus 3 s, so that caller is answered 3 s before it.
    let (quiet, quiet_caller) = (0..QUEUES.len())
        .filter(|&q| q != support)
        .filter_map(|q| {
            let longest = calls
                .iter()
                .filter(|c| c.queue == q)
                .max_by_key(|c| (waiting(c), std::cmp::Reverse(c.enter_on_queue)))?;
            (longest.enter_on_queue > started + POLL && longest.fate == Fate::Answered)
                .then_some((q, longest))
        })
        .max_by_key(|(_, c)| waiting(c))
        .expect("a steady queue whose longest wait is in the run");
    let longest = waiting(quiet_caller);
    assert_eq!(quiet_caller.fate, Fate::Answered, "{quiet_caller:?}");
    // Waiting longer than a poll interval, the caller is seen waiting by at least one poll.
    assert!(
        longest > POLL,
        "a poll sees the quiet queue's caller waiting: {longest} s"
    );
    let quiet_threshold = longest + 3;
    let threshold_of = |q: usize| match q {
        q if q == quiet => quiet_threshold,
        q if q == support => SUPPORT_THRESHOLD,
        _ => THRESHOLD,
    };
    // When each caller's wait crosses its queue's threshold, while still waiting.
    let crossings: Vec<(usize, i64)> = calls
        .iter()
        .filter(|c| waiting(c) > threshold_of(c.queue))
        .map(|c| (c.queue, c.enter_on_queue + threshold_of(c.queue)))
        .collect();
    // The first SUPPORT crossing: the alert may not fire before it.
    let first_any = crossings
        .iter()
        .filter(|&&(q, at)| q == support && at >= started)
        .map(|&(_, at)| at)
        .min()
        .expect("a SUPPORT caller waits past its threshold during the spike");
    // The first SUPPORT crossing a poll must see: the caller still waits a poll interval
    // after it (one who leaves sooner may fall between two polls, unseen). The alert fires
    // within the bound of it, or sooner, for an earlier caller a poll happened to see.
    let first_crossing = calls
        .iter()
        .filter(|c| c.queue == support && waiting(c) >= SUPPORT_THRESHOLD + POLL)
        .map(|c| c.enter_on_queue + SUPPORT_THRESHOLD)
        .filter(|&at| at >= started)
        .min()
        .expect("a SUPPORT caller waits past its threshold during the spike");
    let may_wait_long: BTreeSet<&str> = crossings.iter().map(|&(q, _)| QUEUES[q]).collect();
    assert!(!may_wait_long.contains(QUEUES[quiet]));

    let password = dir.join("password");
    std::fs::write(&password, SIM_PASSWORD).expect("password");
    let targets = dir.join("targets.yml");
    let zone = &dialer_zone().0;
    std::fs::write(
        &targets,
        format!(
            "targets:\n  - name: demo\n    api: {{url: 'http://{sim_addr}/goAPIv2/goReports/goAPI.php', user: {SIM_USER}, password_file: '{}', timezone: '{zone}'}}\n    poll: {{interval: {POLL}s}}\n    queues:\n      {}: {{wait_alert_threshold: {quiet_threshold}s}}\n      SUPPORT: {{wait_alert_threshold: {SUPPORT_THRESHOLD}s}}\n",
            password.display(),
            QUEUES[quiet]
        ),
    )
    .expect("targets file");
    let addr = format!("127.0.0.1:{}", free_port());
    let Some(prom) = prometheus::start(&dir, &addr, &format!("{SCRAPE}s")) else {
        return;
    };
    let simulator = Command::new(BIN)
        .args(&sim_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn simulator");
    let _simulator = KillOnDrop(simulator);
    let exporter = Command::new(BIN)
        .args([
            "--config.file",
            &targets.display().to_string(),
            "--state.file",
            "",
            "--web.listen-address",
            &addr,
        ])
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
                        "{name} for {queue}, where nobody waited past its threshold \
                         ({quiet_threshold} s for {}, whose longest wait is {longest} s: {quiet_caller:?})",
                        QUEUES[quiet]
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
        // Both fired, and the quiet queue's caller has been answered and polled since.
        let quiet_over = at > quiet_caller.answered_at + 2 * POLL;
        if waiting_long_fired.is_some() && wait_high_fired.is_some() && quiet_over {
            break;
        }
        assert!(
            at < end,
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
    let after_first = waiting_long - first_any;
    // The poll's own duration, as the exporter measured it (mean of this run's polls).
    let e = Exposition::parse(&http_text(&format!("http://{addr}/metrics")).await);
    let poll_secs = e.value("crocodial_poll_duration_seconds_sum", &[])
        / e.value("crocodial_poll_duration_seconds_count", &[]);
    let bound = MAX_DELAY + poll_secs.ceil() as i64;
    eprintln!(
        "spike at +{} s; first SUPPORT caller past {SUPPORT_THRESHOLD} s at +{} s, \
         CrocodialCallersWaitingLong firing {after_first} s after that; first one a poll must see at +{} s, \
         CrocodialCallersWaitingLong firing {delay} s after that (bound {bound} s, polls taking {poll_secs:.2} s); \
         CrocodialQueueWaitHigh firing {} s after the spike started; \
         {} silent with its threshold at {quiet_threshold} s, its caller answered after {longest} s at +{} s",
        spike_start - started,
        first_any - started,
        first_crossing - started,
        wait_high - spike_start,
        QUEUES[quiet],
        quiet_caller.answered_at - started,
    );
    assert!(
        after_first >= 0,
        "CrocodialCallersWaitingLong fired {} s before any caller's wait crossed {SUPPORT_THRESHOLD} s",
        -after_first
    );
    assert!(
        delay <= bound,
        "CrocodialCallersWaitingLong fired {delay} s after the first caller's wait crossed {SUPPORT_THRESHOLD} s"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
