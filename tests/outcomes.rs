//! Outcomes and live queue state, with hand-made rows: every default rule and every flag of the
//! answered / abandoned / other classification, exact histograms per outcome, and the gauges of
//! the calls still in progress (callers waiting, the longest wait) from poll to poll.

mod common;

use common::*;
use crocodial_exporter::clock::ManualClock;
use crocodial_exporter::config::CdrConfig;
use jiff::SignedDuration;

const EMPTY: &str = r#"{"result":"success","data":{"rows":[]}}"#;

/// One final row of queue `Q`, campaign `C`.
fn row(id: &str, agent: &str, disposition: &str, term: &str, wait: u32, talk: u32) -> String {
    format!(
        r#"{{"call_date":"2025-05-29 11:00:00","src":"5551230001","uniq1":"{id}","queue":"Q","agent":"{agent}","campaign":"C","disposition":"{disposition}","term_reason":"{term}","queue_time":"{wait}","call_duration":"{talk}"}}"#
    )
}

fn body(rows: &[String]) -> String {
    format!(
        r#"{{"result":"success","data":{{"rows":[{}]}}}}"#,
        rows.join(",")
    )
}

/// Count and sum of a histogram of queue `Q`, campaign `C`, for one outcome (None: no series).
fn histogram(e: &Exposition, name: &str, outcome: &str) -> Option<(f64, f64)> {
    let labels = [("queue", "Q"), ("campaign", "C"), ("outcome", outcome)];
    Some((
        e.get(&format!("{name}_count"), &labels)?,
        e.value(&format!("{name}_sum"), &labels),
    ))
}

/// Primes on an empty window, then counts `rows` in one poll, with the rules `cdr` sets.
async fn count(cdr: impl FnOnce(&mut CdrConfig), rows: &[String]) -> Exposition {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cdr(&mut cfg.cdr);
    let mut ex = start_exporter(&cfg, &clock).await;
    sim.handle.set_answer(200, EMPTY);
    ex.exporter.poller.poll().await.expect("priming poll");
    sim.handle.set_answer(200, body(rows));
    let r = ex.exporter.poller.poll().await.expect("poll");
    assert_eq!(r.rows.new, rows.len() as u64);
    ex.scrape().await
}

#[tokio::test]
async fn every_default_rule_gives_its_outcome() {
    let rows = [
        // A person took it: answered, whatever the term reason says.
        row("1.1", "agent001", "Answered", "CALLER", 5, 100),
        row("1.2", "agent002", "Answered", "ABANDON", 7, 200),
        // Pseudo-agents (any case) are nobody: abandoned by term reason or by disposition.
        row("1.3", "vdcl", "Abandoned", "ABANDON", 30, 0),
        row("1.4", "VDAD", "drop", "CALLER", 40, 0),
        row("1.5", "", "ABANDON", "QUEUETIMEOUT", 50, 0),
        row("1.6", " ", "Abandoned", "abandon", 10, 0),
        // Never offered to an agent, or the queue gave up: other.
        row("1.7", "", "Denied", "AFTERHOURS", 0, 0),
        row("1.8", "VDCL", "Queue Timeout", "QUEUETIMEOUT", 300, 0),
        row("1.9", "VDAD", "NA", "NOAGENT", 60, 0),
    ];
    let e = count(|_| {}, &rows).await;
    let qt = "crocodial_inbound_queue_time_seconds";
    let cd = "crocodial_inbound_call_duration_seconds";
    assert_eq!(histogram(&e, qt, "answered"), Some((2.0, 12.0)));
    assert_eq!(histogram(&e, qt, "abandoned"), Some((4.0, 130.0)));
    assert_eq!(histogram(&e, qt, "other"), Some((3.0, 360.0)));
    assert_eq!(histogram(&e, cd, "answered"), Some((2.0, 300.0)));
    assert_eq!(histogram(&e, cd, "abandoned"), Some((4.0, 0.0)));
    assert_eq!(histogram(&e, cd, "other"), Some((3.0, 0.0)));
    // Service-level style buckets are per outcome: answered within 5 s is one call.
    assert_eq!(
        e.value(
            &format!("{qt}_bucket"),
            &[
                ("queue", "Q"),
                ("campaign", "C"),
                ("outcome", "answered"),
                ("le", "5")
            ]
        ),
        1.0
    );
    // Only people are agents.
    assert_eq!(e.count("crocodial_inbound_agent_calls_total"), 2);
    for (agent, calls, seconds) in [("agent001", 1.0, 100.0), ("agent002", 1.0, 200.0)] {
        let a = [("agent", agent)];
        assert_eq!(e.value("crocodial_inbound_agent_calls_total", &a), calls);
        assert_eq!(
            e.value("crocodial_inbound_agent_call_duration_seconds_total", &a),
            seconds
        );
    }
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 9.0);
}

#[tokio::test]
async fn every_outcome_flag_replaces_its_default() {
    let site = |cdr: &mut CdrConfig| {
        cdr.system_agents = vec!["ROBOT".into()];
        cdr.abandon_term_reasons = vec!["HUNGUP".into(), "GONE".into()];
        cdr.abandon_dispositions = vec!["LOST".into()];
    };
    let rows = [
        // VDCL is a person now; ROBOT is not.
        row("2.1", "VDCL", "Abandoned", "ABANDON", 1, 10),
        row("2.2", "robot", "Answered", "CALLER", 2, 20),
        // The site's own abandon words, in any case; the defaults no longer abandon.
        row("2.3", "", "Whatever", "hungup", 3, 0),
        row("2.4", "ROBOT", "Whatever", "Gone", 4, 0),
        row("2.5", "", "lost", "CALLER", 5, 0),
        row("2.6", "", "Abandoned", "ABANDON", 6, 0),
        row("2.7", "", "DROP", "CALLER", 7, 0),
    ];
    let e = count(site, &rows).await;
    let qt = "crocodial_inbound_queue_time_seconds";
    assert_eq!(histogram(&e, qt, "answered"), Some((1.0, 1.0)));
    assert_eq!(histogram(&e, qt, "abandoned"), Some((3.0, 12.0)));
    assert_eq!(histogram(&e, qt, "other"), Some((3.0, 15.0)));
    assert_eq!(e.count("crocodial_inbound_agent_calls_total"), 1);
    assert_eq!(
        e.value("crocodial_inbound_agent_calls_total", &[("agent", "VDCL")]),
        1.0
    );

    // Empty lists: nothing is a system agent and nothing abandons.
    let none = |cdr: &mut CdrConfig| {
        cdr.system_agents = vec![];
        cdr.abandon_term_reasons = vec![];
        cdr.abandon_dispositions = vec![];
    };
    let e = count(none, &rows).await;
    assert_eq!(histogram(&e, qt, "answered"), Some((3.0, 7.0)));
    assert_eq!(histogram(&e, qt, "abandoned"), Some((0.0, 0.0)));
    assert_eq!(histogram(&e, qt, "other"), Some((4.0, 21.0)));
}

/// A row of the live-state scenario: `uniq1`, queue, campaign, agent, disposition, term reason,
/// call_date and enter_on_queue (times of 2025-05-29).
fn live_row(
    id: &str,
    queue: &str,
    campaign: &str,
    agent: &str,
    disposition: &str,
    term: &str,
    (called, entered): (&str, &str),
) -> String {
    format!(
        r#"{{"call_date":"2025-05-29 {called}","enter_on_queue":"{entered}","uniq1":"{id}","queue":"{queue}","agent":"{agent}","campaign":"{campaign}","disposition":"{disposition}","term_reason":"{term}","queue_time":"0","call_duration":"0","src":"5551230001"}}"#,
        entered = if entered.is_empty() {
            String::new()
        } else {
            format!("2025-05-29 {entered}")
        }
    )
}

fn live(e: &Exposition, queue: &str, campaign: &str, state: &str) -> f64 {
    e.value(
        "crocodial_inbound_calls_in_progress",
        &[("queue", queue), ("campaign", campaign), ("state", state)],
    )
}

fn oldest(e: &Exposition, queue: &str) -> f64 {
    e.value("crocodial_inbound_oldest_wait_seconds", &[("queue", queue)])
}

#[tokio::test]
async fn live_gauges_follow_the_calls_in_progress_until_they_are_counted() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;

    // 12:00:00. Q1/C1: two waiting (since 11:57:00 by enter_on_queue, and since 11:59:00 by
    // call_date, which stands in for a missing enter_on_queue) and one talking; Q1/C2: one
    // waiting (disposition in lower case) since 11:58:30; Q2/C1: one whose enter_on_queue is
    // ahead of our clock (never a negative wait); Q4/C1: one that has waited since 10:30:10
    // and will pass --cdr.max-pending (2 h after its call_date 10:30:00) at 12:30:00.
    let w1 = |d, t, a| live_row("3.1", "Q1", "C1", a, d, t, ("11:56:50", "11:57:00"));
    let w2 = |d, t| live_row("3.2", "Q1", "C1", "", d, t, ("11:59:00", ""));
    let t1 = |d, t| {
        live_row(
            "3.3",
            "Q1",
            "C1",
            "agent001",
            d,
            t,
            ("11:50:00", "11:50:05"),
        )
    };
    let w3 = |d, t, a| live_row("3.4", "Q1", "C2", a, d, t, ("11:58:20", "11:58:30"));
    let w4 = |d, t| live_row("3.5", "Q2", "C1", "", d, t, ("11:59:59", "12:00:30"));
    let m1 = live_row("3.6", "Q4", "C1", "", "QUEUE", "", ("10:30:00", "10:30:10"));
    // w1 comes twice (a row sent twice, or a transfer's second leg): still one caller.
    let poll1 = body(&[
        w1("QUEUE", "", ""),
        w1("QUEUE", "", ""),
        w2("QUEUE", "NONE"),
        t1("INCALL", "NONE"),
        w3("queue", "", ""),
        w4("QUEUE", ""),
        m1.clone(),
    ]);
    sim.handle.set_answer(200, poll1);
    let r = ex.exporter.poller.poll().await.expect("poll 1");
    assert_eq!((r.rows.new, r.rows.pending), (0, 7));
    let e = ex.scrape().await;
    assert_eq!(live(&e, "Q1", "C1", "waiting"), 2.0);
    assert_eq!(live(&e, "Q1", "C1", "talking"), 1.0);
    assert_eq!(live(&e, "Q1", "C2", "waiting"), 1.0);
    assert_eq!(live(&e, "Q2", "C1", "waiting"), 1.0);
    assert_eq!(live(&e, "Q4", "C1", "waiting"), 1.0);
    // Every queue and campaign in progress shows both states.
    assert_eq!(live(&e, "Q1", "C2", "talking"), 0.0);
    assert_eq!(e.count("crocodial_inbound_calls_in_progress"), 8);
    assert_eq!(e.sum("crocodial_inbound_calls_in_progress"), 6.0);
    assert_eq!(oldest(&e, "Q1"), 180.0);
    assert_eq!(oldest(&e, "Q2"), 0.0);
    assert_eq!(oldest(&e, "Q4"), 5390.0);
    assert_eq!(e.count("crocodial_inbound_calls_total"), 0);

    // 12:00:30. The first caller is answered, the second and the one of Q2 abandoned, the
    // talking call ended; the caller of Q1/C2 still waits.
    clock.advance(SignedDuration::from_secs(30));
    let poll2 = body(&[
        w1("INCALL", "NONE", "agent002"),
        w2("Abandoned", "ABANDON"),
        t1("Answered", "CALLER"),
        w3("QUEUE", "", ""),
        w4("Abandoned", "ABANDON"),
        m1.clone(),
    ]);
    sim.handle.set_answer(200, poll2);
    let r = ex.exporter.poller.poll().await.expect("poll 2");
    assert_eq!((r.rows.new, r.rows.pending), (3, 3));
    let e = ex.scrape().await;
    assert_eq!(live(&e, "Q1", "C1", "waiting"), 0.0);
    assert_eq!(live(&e, "Q1", "C1", "talking"), 1.0);
    assert_eq!(live(&e, "Q1", "C2", "waiting"), 1.0);
    assert_eq!(live(&e, "Q2", "C1", "waiting"), 0.0);
    assert_eq!(oldest(&e, "Q1"), 120.0);
    assert_eq!(oldest(&e, "Q2"), 0.0);
    assert_eq!(oldest(&e, "Q4"), 5420.0);

    // A failed poll changes nothing that is shown.
    sim.handle.set_answer(200, "<html>502 Bad Gateway</html>");
    ex.exporter.poller.poll().await.expect_err("poll fails");
    let failed = ex.scrape().await;
    assert_eq!(live(&failed, "Q1", "C2", "waiting"), 1.0);
    assert_eq!(oldest(&failed, "Q1"), 120.0);

    // 12:31:00. Everything ended; the Q4 caller passed --cdr.max-pending and counts as it
    // stands, leaving the gauges.
    clock.set(ts("2025-05-29T12:31:00Z"));
    let poll3 = body(&[
        w1("Answered", "AGENT", "agent002"),
        w2("Abandoned", "ABANDON"),
        t1("Answered", "CALLER"),
        w3("Answered", "CALLER", "agent003"),
        w4("Abandoned", "ABANDON"),
        m1,
    ]);
    sim.handle.set_answer(200, poll3.clone());
    let r = ex.exporter.poller.poll().await.expect("poll 3");
    assert_eq!((r.rows.new, r.rows.pending), (3, 0));
    // And again: nothing changes.
    sim.handle.set_answer(200, poll3);
    let r = ex.exporter.poller.poll().await.expect("poll 4");
    assert_eq!((r.rows.new, r.rows.duplicate), (0, 6));
    let e = ex.scrape().await;
    for (queue, campaign) in [("Q1", "C1"), ("Q1", "C2"), ("Q2", "C1"), ("Q4", "C1")] {
        assert_eq!(
            live(&e, queue, campaign, "waiting"),
            0.0,
            "{queue}/{campaign}"
        );
    }
    assert_eq!(live(&e, "Q1", "C1", "talking"), 0.0);
    for queue in ["Q1", "Q2", "Q4"] {
        assert_eq!(oldest(&e, queue), 0.0, "{queue}");
    }
    // Each call counted once, with its outcome.
    let outcomes = |queue: &str, campaign: &str, outcome: &str| {
        e.get(
            "crocodial_inbound_queue_time_seconds_count",
            &[
                ("queue", queue),
                ("campaign", campaign),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(outcomes("Q1", "C1", "answered"), Some(2.0));
    assert_eq!(outcomes("Q1", "C1", "abandoned"), Some(1.0));
    assert_eq!(outcomes("Q1", "C2", "answered"), Some(1.0));
    assert_eq!(outcomes("Q2", "C1", "abandoned"), Some(1.0));
    assert_eq!(outcomes("Q4", "C1", "other"), Some(1.0));
    assert_eq!(e.sum("crocodial_inbound_queue_time_seconds_count"), 6.0);
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 6.0);
}
