//! A host clock that steps (an NTP correction after a VM resumes, a hand) against a dialer whose
//! clock does not: the simulator keeps the true time, the exporter reads a clock of its own
//! that passes with it and also jumps. Each test ends with every call counted once, against
//! the simulator's own truth.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;

use common::{config, start_exporter, start_sim, ts, Exposition, Logs, Running};
use crocodial_exporter::clock::ManualClock;
use jiff::SignedDuration;

const TZ: &str = "America/New_York";
const MINUTE: SignedDuration = SignedDuration::from_secs(60);
const DAY: SignedDuration = SignedDuration::from_hours(24);

/// The dialer's true clock and the exporter host's, and the test's log lines.
struct Clocks {
    dialer: ManualClock,
    host: ManualClock,
    logs: Logs,
    /// Every test of this file captures its logs from its start: a log line first met on a
    /// thread without a subscriber while another test sets one could be left unseen by it.
    _capture: tracing::subscriber::DefaultGuard,
}

impl Clocks {
    fn new(start: &str) -> Self {
        let logs = Logs::default();
        Clocks {
            dialer: ManualClock::new(ts(start)),
            host: ManualClock::new(ts(start)),
            _capture: logs.capture(),
            logs,
        }
    }

    /// Time passes on both.
    fn pass(&self, by: SignedDuration) {
        self.dialer.advance(by);
        self.host.advance(by);
    }
}

/// The legs final by the dialer's clock now, of the last three days.
fn final_legs(sim: &common::Sim, dialer: &ManualClock) -> HashSet<String> {
    common::final_legs(sim, dialer, TZ)
}

/// Every leg final since `primed` counted once, nothing dropped, and the clock's jumps.
fn assert_counted_once(e: &Exposition, truth: usize, jumps: (f64, f64)) {
    assert!(truth > 20, "too little traffic to mean anything: {truth}");
    let truth = truth as f64;
    assert_eq!(e.sum("crocodial_inbound_calls_total"), truth);
    assert_eq!(e.sum("crocodial_inbound_legs_total"), truth);
    assert_eq!(e.sum("crocodial_inbound_queue_time_seconds_count"), truth);
    assert_eq!(
        e.value("crocodial_cdr_rows_total", &[("result", "new")]),
        truth
    );
    assert_eq!(e.sum("crocodial_cdr_calls_dropped_total"), 0.0);
    assert_eq!(
        (
            e.value("crocodial_clock_jumps_total", &[("direction", "forward")]),
            e.value("crocodial_clock_jumps_total", &[("direction", "backward")]),
        ),
        jumps
    );
}

fn temp_state(name: &str) -> PathBuf {
    common::temp_dir(&format!("clock-{name}")).join("state.db")
}

/// `n` polls, `by` apart.
async fn polls(ex: &mut Running, clocks: &Clocks, n: usize, by: SignedDuration) {
    for _ in 0..n {
        clocks.pass(by);
        ex.exporter.poller.poll().await.expect("poll");
    }
}

/// The host's clock jumps a day ahead for three polls and comes back: the seen legs are not
/// forgotten meanwhile, so none of the day's legs counts again, and the legs that ended while
/// the clock was away count when it is back.
#[tokio::test]
async fn a_day_forward_step_and_back_counts_every_call_once() {
    let clocks = Clocks::new("2025-05-29T16:00:00Z");
    let sim = start_sim(&clocks.dialer, TZ, 11).await;
    let mut ex = start_exporter(&config(&sim.url, TZ), &clocks.host).await;
    let primed = final_legs(&sim, &clocks.dialer);
    ex.exporter.poller.poll().await.expect("prime");
    polls(&mut ex, &clocks, 10, MINUTE).await;
    clocks.host.step(DAY);
    for _ in 0..3 {
        clocks.pass(SignedDuration::from_secs(5));
        let r = ex.exporter.poller.poll().await.expect("stepped");
        assert_eq!(r.rows.dropped, [0, 0], "nothing leaves the window");
    }
    let e = ex.scrape().await;
    assert!(
        e.value("crocodial_dedup_entries", &[]) > 20.0,
        "the seen legs are kept"
    );
    clocks.host.step(-DAY);
    polls(&mut ex, &clocks, 20, MINUTE).await;
    let truth = final_legs(&sim, &clocks.dialer).difference(&primed).count();
    assert_counted_once(&ex.scrape().await, truth, (1.0, 1.0));
}

/// A restart under a clock a day ahead, then one on the right clock: the state file keeps the
/// dialer time the last run reached, so the stepped run forgets nothing and the next counts
/// each leg once. The backward jump is seen at the second restart.
#[tokio::test]
async fn a_restart_under_a_stepped_clock_then_a_normal_one_counts_every_call_once() {
    let clocks = Clocks::new("2025-05-29T16:00:00Z");
    let sim = start_sim(&clocks.dialer, TZ, 12).await;
    let mut cfg = config(&sim.url, TZ);
    cfg.state_file = Some(temp_state("restart"));
    let primed = final_legs(&sim, &clocks.dialer);
    {
        let mut ex = start_exporter(&cfg, &clocks.host).await;
        ex.exporter.poller.poll().await.expect("prime");
        polls(&mut ex, &clocks, 10, MINUTE).await;
    }
    clocks.host.step(DAY);
    {
        let mut ex = start_exporter(&cfg, &clocks.host).await;
        for _ in 0..3 {
            clocks.pass(MINUTE);
            let r = ex.exporter.poller.poll().await.expect("stepped");
            assert_eq!(r.rows.dropped, [0, 0]);
        }
    }
    clocks.host.step(-DAY);
    let mut ex = start_exporter(&cfg, &clocks.host).await;
    polls(&mut ex, &clocks, 20, MINUTE).await;
    let truth = final_legs(&sim, &clocks.dialer).difference(&primed).count();
    assert_counted_once(&ex.scrape().await, truth, (0.0, 1.0));
}

/// The host's clock steps an hour back and runs on until it is past where it was: the legs it
/// now sees dated ahead of it count once, and the warning about them names the clock, not the
/// zone.
#[tokio::test]
async fn an_hour_backward_step_counts_every_call_once_and_blames_the_clock() {
    let clocks = Clocks::new("2025-05-29T16:00:00Z");
    let logs = &clocks.logs;
    let sim = start_sim(&clocks.dialer, TZ, 13).await;
    let mut ex = start_exporter(&config(&sim.url, TZ), &clocks.host).await;
    let primed = final_legs(&sim, &clocks.dialer);
    ex.exporter.poller.poll().await.expect("prime");
    polls(&mut ex, &clocks, 10, MINUTE).await;
    clocks.host.step(SignedDuration::from_hours(-1));
    polls(&mut ex, &clocks, 70, MINUTE).await;
    let truth = final_legs(&sim, &clocks.dialer).difference(&primed).count();
    let e = ex.scrape().await;
    assert_counted_once(&e, truth, (0.0, 1.0));
    assert!(e.value("crocodial_cdr_future_rows_total", &[]) > 0.0);
    assert_eq!(
        logs.count("this host's clock jumped back"),
        1,
        "{}",
        logs.text()
    );
    // Said again each time such legs come back after a poll without them.
    assert!(logs.count("which stepped back") >= 1, "{}", logs.text());
    assert_eq!(logs.count("is it the dialer's zone?"), 0, "{}", logs.text());
}

/// Just after the window's start has passed midnight (06:00 with the 6 h lookback), so that the
/// day before is forgotten, the clock steps back ten minutes: the window asks for that day
/// again, and none of its legs counts twice, neither in this process nor after a restart.
#[tokio::test]
async fn a_step_back_past_the_forgotten_day_counts_nothing_twice() {
    // 05:50 in New York.
    let clocks = Clocks::new("2025-05-30T09:50:00Z");
    let sim = start_sim(&clocks.dialer, TZ, 14).await;
    let mut cfg = config(&sim.url, TZ);
    cfg.state_file = Some(temp_state("back-past-midnight"));
    let primed = final_legs(&sim, &clocks.dialer);
    let mut ex = start_exporter(&cfg, &clocks.host).await;
    ex.exporter.poller.poll().await.expect("prime");
    polls(&mut ex, &clocks, 15, MINUTE).await;
    clocks.host.step(SignedDuration::from_mins(-10));
    for _ in 0..3 {
        clocks.pass(MINUTE);
        let r = ex.exporter.poller.poll().await.expect("stepped back");
        assert!(
            r.rows.rejected_total() > 20,
            "the forgotten day's rows: {r:?}"
        );
    }
    drop(ex);
    let mut ex = start_exporter(&cfg, &clocks.host).await;
    polls(&mut ex, &clocks, 3, MINUTE).await;
    let truth = final_legs(&sim, &clocks.dialer).difference(&primed).count();
    assert_counted_once(&ex.scrape().await, truth, (0.0, 1.0));
}
