//! Service targets per queue, as a user sets them in the targets file: each queue's threshold,
//! goal and wait alert on /metrics; "answered within the threshold" counted against each
//! queue's own threshold, on the counters and in the day's figures, equal to what the
//! simulator's calls give by the platform's rule (answered, waited at most the threshold); the
//! agents each queue needs for its own goal; and a reload that changes them taking effect.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use common::fleet::{base_args, serve};
use common::{Exposition, Sim, PASSWORD, USER};
use crocodial_exporter::clock::{wall_secs, Clock, ManualClock};
use crocodial_exporter::config_file::TargetsFile;
use crocodial_exporter::metrics::staffing::{agents_required, Model, Queue};
use crocodial_exporter::sim::traffic::{Fate, Phase, QUEUES};
use crocodial_exporter::sim::{SimCall, Traffic};
use jiff::tz::TimeZone;
use jiff::SignedDuration;

const ZONE: &str = "America/New_York";

/// Threshold (s), goal and wait alert (s) of each queue the file names, and of the others.
struct Targets {
    /// The target's `queue:` section: every other queue's goal.
    default_goal: f64,
    queues: Vec<(&'static str, f64, f64, f64)>,
}

impl Targets {
    fn of(&self, queue: &str) -> (f64, f64, f64) {
        self.queues
            .iter()
            .find(|q| q.0 == queue)
            .map_or((20.0, self.default_goal, 120.0), |q| (q.1, q.2, q.3))
    }

    fn yaml(&self) -> String {
        let mut y = format!(
            "    queue: {{service_level_goal: {}%}}\n    queues:\n",
            self.default_goal * 100.0
        );
        for (q, threshold, goal, wait) in &self.queues {
            y.push_str(&format!(
                "      {q}: {{service_level_threshold: {threshold}s, service_level_goal: {goal}, wait_alert_threshold: {wait}s}}\n"
            ));
        }
        y
    }
}

fn write_targets(path: &Path, dir: &Path, sim: &Sim, targets: &Targets) {
    let secret = dir.join("password");
    std::fs::write(&secret, PASSWORD).expect("password");
    let yaml = format!(
        "targets:\n  - name: acme\n    api:\n      url: {}\n      user: {USER}\n      password_file: {}\n      timezone: {ZONE}\n    poll: {{interval: 100ms}}\n{}",
        sim.url,
        secret.display(),
        targets.yaml()
    );
    std::fs::write(path, yaml).expect("targets file");
}

async fn scrape(base: &str) -> Exposition {
    // Twice: a new series is served at 0 to each scraper once.
    common::http_text(&format!("{base}/metrics")).await;
    Exposition::parse(&common::http_text(&format!("{base}/metrics")).await)
}

/// Per queue, the sum of `name` over its campaigns.
fn per_queue(e: &Exposition, name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (n, labels, v) in &e.samples {
        if n == name {
            *out.entry(labels["queue"].clone()).or_default() += v;
        }
    }
    out
}

/// The simulator's legs of the last day that are final at `now` (dialer wall seconds).
fn final_at(sim: &Sim, now: i64) -> Vec<SimCall> {
    sim.handle
        .traffic()
        .calls(now - 86_400, now + 1, now)
        .into_iter()
        .filter(|c| c.phase(now) == Phase::Final)
        .collect()
}

/// Per queue (every queue, 0 included), the legs among `legs` that an agent answered after a
/// wait of at most the queue's threshold.
fn answered_within<'a>(
    legs: impl Iterator<Item = &'a SimCall>,
    threshold: &dyn Fn(&str) -> f64,
) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = QUEUES.iter().map(|q| (q.to_string(), 0.0)).collect();
    for c in legs {
        let queue = QUEUES[c.queue];
        if c.fate == Fate::Answered && c.queue_time <= threshold(queue) {
            *out.entry(queue.to_string()).or_default() += 1.0;
        }
    }
    out
}

fn now_wall(clock: &ManualClock) -> i64 {
    let zone = TimeZone::get(ZONE).expect("zone");
    wall_secs(clock.now().to_zoned(zone).datetime())
}

/// Waits until `want` holds of a scrape, failing after a deadline with the last one's values.
async fn wait_for(
    base: &str,
    what: &str,
    want: impl Fn(&Exposition) -> Result<(), String>,
) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = scrape(base).await;
        match want(&e) {
            Ok(()) => return e,
            Err(got) => assert!(Instant::now() < deadline, "{what}: {got}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves the clock 30 s `steps` times, each time waiting for a poll at the new instant.
async fn steps_of_30s(clock: &ManualClock, base: &str, steps: usize) {
    for _ in 0..steps {
        clock.advance(SignedDuration::from_secs(30));
        let now = clock.now();
        wait_for(base, "a poll after the step", |e| {
            let last = e.value("crocodial_last_poll_success_timestamp_seconds", &[]);
            (last >= now.as_second() as f64)
                .then_some(())
                .ok_or(format!("last poll at {last}"))
        })
        .await;
    }
}

fn same(got: BTreeMap<String, f64>, want: &BTreeMap<String, f64>) -> Result<(), String> {
    let got: BTreeMap<String, f64> = want
        .keys()
        .map(|q| (q.clone(), got.get(q).copied().unwrap_or(0.0)))
        .collect();
    if &got == want {
        Ok(())
    } else {
        Err(format!("\n exporter {got:?}\n want     {want:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_queue_is_judged_by_its_own_targets_and_a_reload_changes_them() {
    let dir = common::temp_dir("service-targets");
    let clock = ManualClock::new(common::ts("2025-06-10T18:00:00Z"));
    let mut traffic = Traffic::new(41, TimeZone::get(ZONE).expect("zone"));
    traffic.peak_calls_per_minute = 6.0;
    let sim = common::start_sim_with(&clock, traffic).await;
    let before = Targets {
        default_goal: 0.85,
        queues: vec![
            ("SUPPORT", 10.0, 0.9, 60.0),
            ("SALES", 45.0, 0.7, 300.0),
            // Named before any call reaches it: its targets show all the same.
            ("OVERFLOW", 5.0, 0.95, 30.0),
        ],
    };
    let path = dir.join("targets.yml");
    write_targets(&path, &dir, &sim, &before);
    let file = TargetsFile::new(path.clone(), base_args(&dir.join("state.db")));
    let mut s = serve(&file, &clock).await;

    // Each queue's targets, as gauges: the named ones', and the target's default for the rest.
    let t0 = now_wall(&clock);
    let day_start = t0 - t0.rem_euclid(86_400);
    let today = |now: i64, targets: &Targets| {
        let legs = final_at(&sim, now);
        answered_within(legs.iter().filter(|c| c.call_date >= day_start), &|q| {
            targets.of(q).0
        })
    };
    let want_today = today(t0, &before);
    let e = wait_for(&s.base, "the day's answered within each threshold", |e| {
        same(
            per_queue(e, "crocodial_inbound_today_answered_within_threshold_legs"),
            &want_today,
        )
    })
    .await;
    let gauges = |e: &Exposition, targets: &Targets| {
        for queue in QUEUES.iter().chain(["OVERFLOW"].iter()) {
            let (threshold, goal, wait) = targets.of(queue);
            let labels = [("queue", *queue)];
            assert_eq!(
                e.get("crocodial_queue_service_level_threshold_seconds", &labels),
                Some(threshold),
                "{queue}"
            );
            assert_eq!(
                e.get("crocodial_queue_service_level_goal_ratio", &labels),
                Some(goal),
                "{queue}"
            );
            assert_eq!(
                e.get("crocodial_queue_wait_alert_threshold_seconds", &labels),
                Some(wait),
                "{queue}"
            );
        }
    };
    gauges(&e, &before);
    // The thresholds matter here: SUPPORT's 10 s and SALES's 45 s count otherwise than 20 s.
    let at_20s = answered_within(
        final_at(&sim, t0)
            .iter()
            .filter(|c| c.call_date >= day_start),
        &|_| 20.0,
    );
    assert!(
        want_today["SUPPORT"] < at_20s["SUPPORT"],
        "{want_today:?} {at_20s:?}"
    );
    assert!(
        want_today["SALES"] > at_20s["SALES"],
        "{want_today:?} {at_20s:?}"
    );

    // Half an hour of calls: the counters count each leg that became final against its
    // queue's threshold (the first poll only marked the legs before it as seen).
    let first = final_at(&sim, t0);
    let counted_before: std::collections::HashSet<String> =
        first.iter().map(common::leg_id).collect();
    steps_of_30s(&clock, &s.base, 60).await;
    let t1 = now_wall(&clock);
    let since_start = |now: i64| {
        final_at(&sim, now)
            .into_iter()
            .filter(|c| !counted_before.contains(&common::leg_id(c)))
            .collect::<Vec<_>>()
    };
    let new_legs = since_start(t1);
    assert!(new_legs.len() > 100, "{} legs", new_legs.len());
    let want_counter = answered_within(new_legs.iter(), &|q| before.of(q).0);
    let e = wait_for(&s.base, "answered within each threshold, counted", |e| {
        same(
            per_queue(e, "crocodial_inbound_answered_within_threshold_legs_total"),
            &want_counter,
        )?;
        same(
            per_queue(e, "crocodial_inbound_today_answered_within_threshold_legs"),
            &today(t1, &before),
        )
    })
    .await;

    // The agents each queue needs are for its own goal at its own threshold.
    let mut staffed = 0;
    for queue in QUEUES {
        let labels = [("queue", queue)];
        let Some(arrivals) = e.get("crocodial_inbound_staffing_arrivals_per_second", &labels)
        else {
            continue;
        };
        let handle = e.value("crocodial_inbound_staffing_handle_time_seconds", &labels);
        let patience = e.get("crocodial_inbound_staffing_patience_seconds", &labels);
        let (threshold, goal, _) = before.of(queue);
        for model in Model::ALL {
            let q = Queue {
                arrivals_per_second: arrivals,
                service_rate: 1.0 / handle,
                abandon_rate: match model {
                    Model::ErlangA => patience.map_or(0.0, |p| 1.0 / p),
                    Model::ErlangC => 0.0,
                },
            };
            let want = agents_required(model, q, threshold, goal).map(f64::from);
            let got = e.get(
                "crocodial_inbound_agents_required",
                &[("queue", queue), ("model", model.as_str())],
            );
            assert_eq!(got, want, "{queue} {model:?}");
        }
        staffed += 1;
    }
    assert!(staffed >= 2, "queues with staffing figures: {staffed}");
    for queue in ["SUPPORT", "SALES"] {
        assert!(
            e.get(
                "crocodial_inbound_agents_required",
                &[("queue", queue), ("model", "erlang_a")]
            )
            .is_some(),
            "{queue}: its own goal's figure"
        );
    }

    // A reload that changes SUPPORT's targets and drops SALES's: the gauges, the day's figures
    // (counted afresh by the restarted target) and the legs counted from then on follow.
    let after = Targets {
        default_goal: 0.8,
        queues: vec![("SUPPORT", 30.0, 0.75, 90.0), ("OVERFLOW", 5.0, 0.95, 30.0)],
    };
    write_targets(&path, &dir, &sim, &after);
    s.fleet.reload().await.expect("reload");
    let e = wait_for(&s.base, "the day after the reload", |e| {
        same(
            per_queue(e, "crocodial_inbound_today_answered_within_threshold_legs"),
            &today(t1, &after),
        )
    })
    .await;
    gauges(&e, &after);
    same(
        per_queue(&e, "crocodial_inbound_answered_within_threshold_legs_total"),
        &want_counter,
    )
    .expect("the counters continue");
    // 40 minutes: through the top of the hour, when SUPPORT's spike makes callers wait, so
    // that its new threshold (30 s) counts otherwise than its old one (10 s).
    steps_of_30s(&clock, &s.base, 80).await;
    let t2 = now_wall(&clock);
    let counted_by_t1: std::collections::HashSet<String> =
        final_at(&sim, t1).iter().map(common::leg_id).collect();
    let since_reload: Vec<SimCall> = final_at(&sim, t2)
        .into_iter()
        .filter(|c| !counted_by_t1.contains(&common::leg_id(c)))
        .collect();
    let added = answered_within(since_reload.iter(), &|q| after.of(q).0);
    let at_old_thresholds = answered_within(since_reload.iter(), &|q| before.of(q).0);
    assert!(
        added["SUPPORT"] > at_old_thresholds["SUPPORT"],
        "{added:?} {at_old_thresholds:?}"
    );
    let want: BTreeMap<String, f64> = want_counter
        .iter()
        .map(|(q, n)| (q.clone(), n + added[q]))
        .collect();
    wait_for(
        &s.base,
        "legs after the reload, at the new thresholds",
        |e| {
            same(
                per_queue(e, "crocodial_inbound_answered_within_threshold_legs_total"),
                &want,
            )
        },
    )
    .await;
    s.fleet.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Targets that would be wrong are refused at start, naming the target, the queue and the key.
#[test]
fn bad_queue_targets_are_refused_with_the_queue_and_the_key() {
    let dir = common::temp_dir("service-targets-refused");
    let secret = dir.join("password");
    std::fs::write(&secret, PASSWORD).expect("password");
    let load = |extra: &str, args: &[&str]| {
        let path = dir.join("targets.yml");
        std::fs::write(
            &path,
            format!(
                "targets:\n  - name: acme\n    api: {{url: http://127.0.0.1:9/x, user: u, password_file: {}}}\n{extra}",
                secret.display()
            ),
        )
        .expect("file");
        let base: Vec<OsString> = std::iter::once("crocodial-exporter")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        TargetsFile::new(path, base)
            .load(&|_| None)
            .map(|c| c[0].queues.clone())
            .map_err(|e| e.to_string())
    };
    let err = |extra: &str, args: &[&str]| load(extra, args).expect_err(extra);

    let e = err("    queues:\n      VIP: {wait_alert_threshold: 2h}\n", &[]);
    assert!(
        e.contains("target acme: queues.VIP.wait_alert_threshold: wait_alert_threshold 2h is not shorter than --cdr.max-wait (1h)"),
        "{e}"
    );
    let e = err("    queues:\n      VIP: {service_level_goal: 1}\n", &[]);
    assert!(
        e.contains("queues.VIP.service_level_goal: 1: must be above 0 and below 1 (100%)"),
        "{e}"
    );
    let e = err("    queues:\n      VIP: {threshold: 10s}\n", &[]);
    assert!(
        e.contains("queues.VIP.threshold: unknown key (expected service_level_threshold, service_level_goal, wait_alert_threshold)"),
        "{e}"
    );
    let e = err(
        "    queues:\n      VIP: {service_level_threshold: 0s}\n",
        &[],
    );
    assert!(
        e.contains("queues.VIP.service_level_threshold: must be greater than zero"),
        "{e}"
    );
    let e = err("    queue: {wait_alert_threshold: 90m}\n", &[]);
    assert!(e.contains("queue.wait_alert_threshold"), "{e}");
    // A queue's wait alert within a longer --cdr.max-wait of its target is accepted.
    let ok = load(
        "    cdr: {max_wait: 3h}\n    queues:\n      VIP: {wait_alert_threshold: 2h, service_level_goal: 92.5%}\n",
        &["--queue.service-level-threshold", "15s"],
    )
    .expect("accepted");
    assert_eq!(ok.default.service_level_threshold, 15.0);
    let vip = ok.get("VIP");
    assert_eq!(
        (
            vip.service_level_threshold,
            vip.service_level_goal,
            vip.wait_alert_threshold
        ),
        (15.0, 0.925, 7200.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
