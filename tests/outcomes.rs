//! Outcomes and live queue state, with hand-made rows in every shape the platform writes: every
//! default rule and every flag of the answered / abandoned / timed_out / other classification,
//! exact histograms per outcome, talk time, agent credit, legs of transferred calls, and the
//! gauges of the calls still in progress (waiting, ringing, talking, wrap-up) from poll to poll.

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

/// One final leg of campaign `C` at 11:00:00 plus `minute` minutes, in `queue`.
#[allow(clippy::too_many_arguments)]
fn leg(
    id: &str,
    minute: u32,
    queue: &str,
    agent: &str,
    disposition: &str,
    term: &str,
    wait: f64,
    duration: f64,
) -> String {
    format!(
        r#"{{"call_date":"2025-05-29 11:{minute:02}:00","src":"5551230001","uniq1":"{id}","queue":"{queue}","agent":"{agent}","campaign":"C","disposition":"{disposition}","term_reason":"{term}","queue_time":"{wait}","call_duration":"{duration}","vendor_lead_code":"John Doe"}}"#
    )
}

/// Count and sum of a histogram of `queue`, campaign `C`, for one outcome.
fn histogram_of(e: &Exposition, name: &str, queue: &str, outcome: &str) -> (f64, f64) {
    let labels = [("queue", queue), ("campaign", "C"), ("outcome", outcome)];
    (
        e.value(&format!("{name}_count"), &labels),
        e.value(&format!("{name}_sum"), &labels),
    )
}

/// Every shape in which the platform writes a finished row (see `docs/counting.md`,
/// "Outcomes"), with the outcome, talk time and agent credit worked out by hand.
#[tokio::test]
async fn every_shape_of_a_final_row_gives_its_outcome_talk_time_and_agent() {
    let rows = [
        // Answered: a person took it; call_duration runs from queue entry (talk = 100 - 5).
        leg("1.1", 0, "Q", "agent001", "Answered", "CALLER", 5.0, 100.0),
        leg("1.2", 1, "Q", "agent002", "SALE", "AGENT", 7.0, 200.0),
        // The caller hung up in queue (VDCL), or while agent003's phone rang: abandoned, and
        // agent003 took nothing.
        leg("1.3", 2, "Q", "vdcl", "DROP", "ABANDON", 30.0, 30.0),
        leg("1.4", 3, "Q", "agent003", "DROP", "CALLER", 40.0, 40.0),
        leg("1.5", 4, "Q", "", "XDROP", "CALLER", 50.0, 50.0),
        leg("1.6", 5, "Q", " ", "Abandon", "", 10.0, 10.0),
        // The queue gave up: timed out, also on an agent-direct queue that names agent004.
        leg(
            "1.7",
            6,
            "Q",
            "VDCL",
            "TIMEOT",
            "QUEUETIMEOUT",
            300.0,
            300.0,
        ),
        leg(
            "1.8", 7, "Q", "agent004", "HOLDTO", "HOLDTIME", 120.0, 120.0,
        ),
        // Never queued: after hours (1 s rows, agent-direct too), no agent logged in.
        leg("1.9", 8, "Q", "", "AFTHRS", "AFTERHOURS", 0.0, 1.0),
        leg("1.10", 9, "Q", "agent004", "AFTHRS", "AFTERHOURS", 0.0, 1.0),
        leg("1.11", 10, "Q", "VDAD", "NANQUE", "NOAGENT", 0.0, 1.0),
        // A final disposition whose hang-up handler never ran (term NONE), with a duration
        // below its wait: answered, talk time 0, counted as such.
        leg("1.12", 11, "Q", "agent005", "Answered", "NONE", 20.0, 15.0),
        // No evidence either way: a person is answered, nobody is other.
        leg("1.13", 12, "Q", "agent001", "CALLBK", "weird", 3.0, 13.0),
        leg("1.14", 13, "Q", "", "CALLBK", "weird", 4.0, 4.0),
        // A transfer: the first leg ends XFER in Q; the second, same uniq1, its own
        // call_date and queue, is answered in Q2 by agent006.
        leg("1.15", 14, "Q", "agent002", "XFER", "AGENT", 2.0, 62.0),
        leg(
            "1.15", 15, "Q2", "agent006", "Answered", "CALLER", 4.0, 34.0,
        ),
    ];
    let e = count(|_| {}, &rows).await;
    let qt = "crocodial_inbound_queue_time_seconds";
    // Q: answered 1.1, 1.2, 1.12, 1.13, 1.15 (waits 5 + 7 + 20 + 3 + 2).
    assert_eq!(histogram_of(&e, qt, "Q", "answered"), (5.0, 37.0));
    assert_eq!(histogram_of(&e, qt, "Q", "abandoned"), (4.0, 130.0));
    assert_eq!(histogram_of(&e, qt, "Q", "timed_out"), (2.0, 420.0));
    assert_eq!(histogram_of(&e, qt, "Q", "other"), (4.0, 4.0));
    assert_eq!(histogram_of(&e, qt, "Q2", "answered"), (1.0, 4.0));
    assert_eq!(histogram_of(&e, qt, "Q2", "abandoned"), (0.0, 0.0));
    // call_duration stays as reported.
    let cd = "crocodial_inbound_call_duration_seconds";
    assert_eq!(
        histogram_of(&e, cd, "Q", "answered"),
        (5.0, 100.0 + 200.0 + 15.0 + 13.0 + 62.0)
    );
    assert_eq!(histogram_of(&e, cd, "Q", "other"), (4.0, 7.0));
    // Talk time, answered legs only: 95 + 193 + 0 + 10 + 60 in Q, 30 in Q2.
    let talk = |queue: &str| {
        let l = [("queue", queue), ("campaign", "C")];
        (
            e.value("crocodial_inbound_talk_time_seconds_count", &l),
            e.value("crocodial_inbound_talk_time_seconds_sum", &l),
        )
    };
    assert_eq!(talk("Q"), (5.0, 358.0));
    assert_eq!(talk("Q2"), (1.0, 30.0));
    assert_eq!(
        e.value(
            "crocodial_inbound_talk_time_seconds_bucket",
            &[("queue", "Q"), ("campaign", "C"), ("le", "10")]
        ),
        2.0,
        "talk times 0 and 10"
    );
    assert_eq!(
        e.value("crocodial_cdr_duration_below_queue_time_total", &[]),
        1.0
    );
    // Legs and distinct calls: 16 legs, 15 calls.
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 16.0);
    assert_eq!(e.value("crocodial_inbound_unique_calls_total", &[]), 15.0);
    let calls = |queue: &str, disposition: &str, term: &str| {
        e.value(
            "crocodial_inbound_calls_total",
            &[
                ("queue", queue),
                ("campaign", "C"),
                ("disposition", disposition),
                ("term_reason", term),
            ],
        )
    };
    assert_eq!(calls("Q", "XFER", "AGENT"), 1.0);
    assert_eq!(calls("Q2", "Answered", "CALLER"), 1.0);
    assert_eq!(calls("Q", "AFTHRS", "AFTERHOURS"), 2.0);
    // Only answered legs credit an agent, with their talk time: agent003 (rung) and
    // agent004 (agent-direct) took nothing.
    let agents = [
        ("agent001", 2.0, 95.0 + 10.0),
        ("agent002", 2.0, 193.0 + 60.0),
        ("agent005", 1.0, 0.0),
        ("agent006", 1.0, 30.0),
    ];
    assert_eq!(e.count("crocodial_inbound_agent_calls_total"), agents.len());
    for (agent, calls, seconds) in agents {
        let a = [("agent", agent)];
        assert_eq!(e.value("crocodial_inbound_agent_calls_total", &a), calls);
        assert_eq!(
            e.value("crocodial_inbound_agent_talk_time_seconds_total", &a),
            seconds,
            "{agent}"
        );
    }
    // Service-level style buckets are per outcome: answered within 5 s are 1.1, 1.13, 1.15.
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
        3.0
    );
}

/// A site whose call_duration is talk time only: the talk time is the duration.
#[tokio::test]
async fn talk_time_of_a_site_whose_duration_excludes_the_wait() {
    let rows = [leg("5.1", 0, "Q", "agent001", "SALE", "AGENT", 30.0, 20.0)];
    let e = count(|cdr| cdr.duration_includes_queue_time = false, &rows).await;
    let l = [("queue", "Q"), ("campaign", "C")];
    assert_eq!(e.value("crocodial_inbound_talk_time_seconds_sum", &l), 20.0);
    assert_eq!(
        e.value("crocodial_cdr_duration_below_queue_time_total", &[]),
        0.0
    );
    assert_eq!(
        e.value(
            "crocodial_inbound_agent_talk_time_seconds_total",
            &[("agent", "agent001")]
        ),
        20.0
    );
}

#[tokio::test]
async fn every_outcome_flag_replaces_its_default() {
    let site = |cdr: &mut CdrConfig| {
        cdr.system_agents = vec!["ROBOT".into()];
        cdr.abandon_term_reasons = vec!["HUNGUP".into(), "GONE".into()];
        cdr.abandon_dispositions = vec!["LOST".into()];
        cdr.timeout_term_reasons = vec!["TOOLONG".into()];
        cdr.timeout_dispositions = vec!["LATE".into()];
        cdr.not_queued_term_reasons = vec!["CLOSED".into()];
        cdr.not_queued_dispositions = vec!["SHUT".into()];
    };
    let rows = [
        // VDCL is a person now; ROBOT is not.
        row("2.1", "VDCL", "Answered", "CALLER", 1, 10),
        row("2.2", "robot", "Answered", "CALLER", 2, 20),
        // The site's own words, in any case; the defaults no longer mean anything.
        row("2.3", "", "Whatever", "hungup", 3, 0),
        row("2.4", "ROBOT", "Whatever", "Gone", 4, 0),
        row("2.5", "agent001", "lost", "CALLER", 5, 0),
        row("2.6", "agent001", "DROP", "ABANDON", 6, 0),
        row("2.7", "agent001", "Whatever", "toolong", 7, 0),
        row("2.8", "agent001", "late", "CALLER", 8, 0),
        row("2.9", "agent001", "Whatever", "closed", 9, 0),
        row("2.10", "agent001", "shut", "CALLER", 10, 0),
        row("2.11", "", "TIMEOT", "QUEUETIMEOUT", 11, 0),
    ];
    let e = count(site, &rows).await;
    let qt = "crocodial_inbound_queue_time_seconds";
    // Answered: 2.1 and 2.6 (agent001, DROP/ABANDON mean nothing here).
    assert_eq!(histogram(&e, qt, "answered"), Some((2.0, 7.0)));
    assert_eq!(histogram(&e, qt, "abandoned"), Some((3.0, 12.0)));
    assert_eq!(histogram(&e, qt, "timed_out"), Some((2.0, 15.0)));
    assert_eq!(
        histogram(&e, qt, "other"),
        Some((4.0, 2.0 + 9.0 + 10.0 + 11.0))
    );
    assert_eq!(e.count("crocodial_inbound_agent_calls_total"), 2);
    assert_eq!(
        e.value("crocodial_inbound_agent_calls_total", &[("agent", "VDCL")]),
        1.0
    );

    // Empty lists: nothing is a system agent, and no code decides an outcome.
    let none = |cdr: &mut CdrConfig| {
        cdr.system_agents = vec![];
        cdr.abandon_term_reasons = vec![];
        cdr.abandon_dispositions = vec![];
        cdr.timeout_term_reasons = vec![];
        cdr.timeout_dispositions = vec![];
        cdr.not_queued_term_reasons = vec![];
        cdr.not_queued_dispositions = vec![];
    };
    let e = count(none, &rows).await;
    assert_eq!(
        histogram(&e, qt, "answered"),
        Some((9.0, 1.0 + 2.0 + 4.0 + 5.0 + 6.0 + 7.0 + 8.0 + 9.0 + 10.0))
    );
    assert_eq!(histogram(&e, qt, "abandoned"), Some((0.0, 0.0)));
    assert_eq!(histogram(&e, qt, "timed_out"), Some((0.0, 0.0)));
    assert_eq!(histogram(&e, qt, "other"), Some((2.0, 3.0 + 11.0)));
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
    let mut cfg = config(&sim.url, "UTC");
    // The Q4 caller's 90 minutes are a wait this site allows (past the default hour).
    cfg.cdr.max_wait = std::time::Duration::from_secs(2 * 3600);
    let mut ex = start_exporter(&cfg, &clock).await;

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
    // w1 comes twice (a row sent twice): still one caller.
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
    // Every queue and campaign in progress shows every state.
    assert_eq!(live(&e, "Q1", "C2", "talking"), 0.0);
    assert_eq!(live(&e, "Q1", "C2", "wrapup"), 0.0);
    assert_eq!(e.count("crocodial_inbound_calls_in_progress"), 12);
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
    // The Q4 caller never left the queue on the platform: counted as it stood at
    // --cdr.max-pending, unfinished, offered, in no histogram.
    let legs = [
        ("queue", "Q4"),
        ("campaign", "C1"),
        ("outcome", "unfinished"),
    ];
    assert_eq!(e.value("crocodial_inbound_legs_total", &legs), 1.0);
    assert_eq!(outcomes("Q4", "C1", "other"), Some(0.0));
    assert_eq!(e.sum("crocodial_inbound_queue_time_seconds_count"), 5.0);
    assert_eq!(e.sum("crocodial_inbound_legs_total"), 6.0);
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 6.0);
}

/// A live row of campaign C: `uniq1`, queue, agent, disposition, term reason, call_date and
/// enter_on_queue (times of 2025-05-29), and the final wait and duration.
#[allow(clippy::too_many_arguments)]
fn live_leg(
    id: &str,
    queue: &str,
    agent: &str,
    disposition: &str,
    term: &str,
    called: &str,
    wait: u32,
    duration: u32,
) -> String {
    format!(
        r#"{{"call_date":"2025-05-29 {called}","enter_on_queue":"2025-05-29 {called}","uniq1":"{id}","queue":"{queue}","agent":"{agent}","campaign":"C","disposition":"{disposition}","term_reason":"{term}","queue_time":"{wait}","call_duration":"{duration}"}}"#
    )
}

/// The rows of calls in progress, as the platform writes them: VDCL while queued, the agent's
/// name while the phone rings (still QUEUE), INCALL, then INCALL with the term reason set and
/// DISPO while the agent wraps up; a transferred caller waits in the second queue while the
/// first leg is final, and counts once in each queue a leg of theirs is in.
#[tokio::test]
async fn live_state_reads_ringing_wrapup_and_transfer_legs() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    sim.handle.set_answer(200, EMPTY);
    ex.exporter.poller.poll().await.expect("priming poll");

    let queued = live_leg("4.1", "Q1", "VDCL", "QUEUE", "NONE", "11:58:00", 0, 0);
    let ringing = |d: &str, t: &str| live_leg("4.2", "Q1", "agent007", d, t, "11:59:00", 40, 40);
    let talking = live_leg("4.3", "Q1", "agent008", "INCALL", "NONE", "11:50:00", 5, 0);
    let hung_up = |d: &str| live_leg("4.4", "Q1", "agent009", d, "CALLER", "11:40:00", 5, 300);
    let dispo = |d: &str| live_leg("4.5", "Q1", "agent010", d, "CALLER", "11:45:00", 5, 200);
    let first_leg = live_leg("4.6", "Q1", "agent011", "XFER", "AGENT", "11:50:00", 3, 543);
    let second_leg =
        |a: &str, d: &str, t: &str| live_leg("4.6", "Q2", a, d, t, "11:59:30", 40, 100);
    // A first leg not final yet while its second leg already waits in Q3.
    let stale_first = live_leg("4.8", "Q1", "agent013", "INCALL", "NONE", "11:30:00", 5, 0);
    let stale_second = live_leg("4.8", "Q3", "VDCL", "QUEUE", "NONE", "11:59:50", 0, 0);

    sim.handle.set_answer(
        200,
        body(&[
            queued.clone(),
            ringing("QUEUE", "NONE"),
            talking.clone(),
            hung_up("INCALL"),
            dispo("DISPO"),
            first_leg.clone(),
            second_leg("VDCL", "QUEUE", "NONE"),
            stale_first.clone(),
            stale_second.clone(),
        ]),
    );
    let r = ex.exporter.poller.poll().await.expect("poll 1");
    assert_eq!((r.rows.new, r.rows.pending), (1, 8));
    let e = ex.scrape().await;
    let live = |e: &Exposition, queue: &str, state: &str| {
        e.value(
            "crocodial_inbound_calls_in_progress",
            &[("queue", queue), ("campaign", "C"), ("state", state)],
        )
    };
    assert_eq!(live(&e, "Q1", "waiting"), 2.0, "queued and ringing");
    assert_eq!(live(&e, "Q1", "talking"), 2.0);
    assert_eq!(live(&e, "Q1", "wrapup"), 2.0, "hung up, and DISPO");
    assert_eq!(live(&e, "Q2", "waiting"), 1.0);
    assert_eq!(live(&e, "Q3", "waiting"), 1.0);
    assert_eq!(e.sum("crocodial_inbound_calls_in_progress"), 8.0);
    assert_eq!(oldest(&e, "Q1"), 120.0);
    let start = |e: &Exposition, queue: &str| {
        e.get(
            "crocodial_inbound_oldest_wait_start_timestamp_seconds",
            &[("queue", queue)],
        )
    };
    let at = |t: &str| Some(ts(t).as_second() as f64);
    assert_eq!(start(&e, "Q1"), at("2025-05-29T11:58:00Z"));
    assert_eq!(start(&e, "Q2"), at("2025-05-29T11:59:30Z"));
    assert_eq!(e.value("crocodial_inbound_unique_calls_total", &[]), 1.0);

    // 12:01:00. The ringing caller hung up (DROP/CALLER with agent007's name), the DISPO row
    // is final, the transferred caller was answered by agent012; 4.4 is now DISPO.
    clock.advance(SignedDuration::from_secs(60));
    sim.handle.set_answer(
        200,
        body(&[
            queued,
            ringing("DROP", "CALLER"),
            talking,
            hung_up("DISPO"),
            dispo("SALE"),
            first_leg,
            second_leg("agent012", "Answered", "CALLER"),
            stale_first,
            stale_second,
        ]),
    );
    let r = ex.exporter.poller.poll().await.expect("poll 2");
    assert_eq!((r.rows.new, r.rows.duplicate, r.rows.pending), (3, 1, 5));
    let e = ex.scrape().await;
    assert_eq!(live(&e, "Q1", "waiting"), 1.0);
    assert_eq!(live(&e, "Q1", "wrapup"), 1.0);
    assert_eq!(live(&e, "Q2", "waiting"), 0.0);
    assert_eq!(start(&e, "Q2"), None, "nobody waits in Q2");
    assert_eq!(start(&e, "Q1"), at("2025-05-29T11:58:00Z"));
    // 4.6 and 4.2 and 4.5: the second leg of 4.6 is not a new call.
    assert_eq!(e.value("crocodial_inbound_unique_calls_total", &[]), 3.0);
    let (count, sum) = histogram_of(
        &e,
        "crocodial_inbound_queue_time_seconds",
        "Q1",
        "abandoned",
    );
    assert_eq!((count, sum), (1.0, 40.0));
    assert_eq!(
        e.value(
            "crocodial_inbound_talk_time_seconds_sum",
            &[("queue", "Q2"), ("campaign", "C")]
        ),
        60.0
    );
    let agent = |name: &str| e.get("crocodial_inbound_agent_calls_total", &[("agent", name)]);
    assert_eq!(agent("agent007"), None, "rung, took nothing");
    assert_eq!(agent("agent010"), Some(1.0));
    assert_eq!(agent("agent011"), Some(1.0));
    assert_eq!(agent("agent012"), Some(1.0));
}

/// The first call of a new agent, queue and disposition is served at 0 to each Prometheus
/// once before its value, so that `increase()` sees it; a second scraper (an HA pair) too.
#[tokio::test]
async fn a_new_series_is_served_at_zero_to_each_scraper_once() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    sim.handle.set_answer(200, EMPTY);
    ex.exporter.poller.poll().await.expect("priming poll");
    // Prometheus (and Grafana Alloy, vmagent) say the scrape timeout on every scrape.
    let scraper = |last: u8| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "X-Prometheus-Scrape-Timeout-Seconds",
            reqwest::header::HeaderValue::from_static("10"),
        );
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .default_headers(headers)
            .build()
            .expect("client")
    };
    let (a, b) = (scraper(1), scraper(2));
    let scrape = |client: &reqwest::Client| {
        let url = format!("{}/metrics", ex.base);
        let client = client.clone();
        async move {
            Exposition::parse(
                &client
                    .get(url)
                    .send()
                    .await
                    .expect("GET")
                    .text()
                    .await
                    .expect("body"),
            )
        }
    };
    // Both scrape before the call, as Prometheus does every interval.
    scrape(&a).await;
    scrape(&b).await;
    sim.handle.set_answer(
        200,
        body(&[row("6.1", "agent001", "Answered", "CALLER", 5, 100)]),
    );
    ex.exporter.poller.poll().await.expect("poll");
    let agent = [("agent", "agent001")];
    let calls = [
        ("queue", "Q"),
        ("campaign", "C"),
        ("disposition", "Answered"),
        ("term_reason", "CALLER"),
    ];
    let answered = [("queue", "Q"), ("campaign", "C"), ("outcome", "answered")];
    // A person's curl (or a script) from another address reads the values at once, and
    // takes no 0 away from the scrapers.
    let person = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .expect("client");
    let e = scrape(&person).await;
    assert_eq!(e.value("crocodial_inbound_agent_calls_total", &agent), 1.0);
    assert_eq!(e.value("crocodial_inbound_calls_total", &calls), 1.0);
    assert_eq!(e.value("crocodial_inbound_legs_total", &answered), 1.0);
    for client in [&a, &b] {
        let e = scrape(client).await;
        assert_eq!(e.value("crocodial_inbound_agent_calls_total", &agent), 0.0);
        assert_eq!(e.value("crocodial_inbound_legs_total", &answered), 0.0);
        assert_eq!(e.value("crocodial_inbound_calls_total", &calls), 0.0);
        assert_eq!(
            e.value("crocodial_inbound_queue_time_seconds_count", &answered),
            0.0
        );
        // Counters that exist from the start are never held.
        assert_eq!(e.value("crocodial_inbound_unique_calls_total", &[]), 1.0);
    }
    for client in [&a, &b] {
        let e = scrape(client).await;
        assert_eq!(e.value("crocodial_inbound_agent_calls_total", &agent), 1.0);
        assert_eq!(e.value("crocodial_inbound_calls_total", &calls), 1.0);
        assert_eq!(
            e.value("crocodial_inbound_queue_time_seconds_count", &answered),
            1.0
        );
        assert_eq!(
            e.value("crocodial_inbound_queue_time_seconds_sum", &answered),
            5.0
        );
        assert_eq!(e.value("crocodial_inbound_legs_total", &answered), 1.0);
    }
    // A second call of the same series shows at once.
    sim.handle.set_answer(
        200,
        body(&[
            row("6.1", "agent001", "Answered", "CALLER", 5, 100),
            row("6.2", "agent001", "Answered", "CALLER", 7, 100),
        ]),
    );
    ex.exporter.poller.poll().await.expect("poll");
    let e = scrape(&a).await;
    assert_eq!(e.value("crocodial_inbound_agent_calls_total", &agent), 2.0);
    // --once-style output is never held.
    assert_eq!(
        Exposition::parse(&String::from_utf8(ex.exporter.app.encode()).expect("utf8"))
            .value("crocodial_inbound_agent_calls_total", &agent),
        2.0
    );
}

/// A row dated more than 5 minutes ahead of the dialer's clock (as --api.timezone computes
/// it) counts as usual, and in crocodial_cdr_future_rows_total once per leg; a warning names
/// --api.timezone and how far ahead.
#[tokio::test]
async fn rows_dated_in_the_future_are_counted_and_reported() {
    let late = r#"{"call_date":"2025-05-29 13:10:00","uniq1":"7.1","queue":"Q","agent":"agent001","campaign":"C","disposition":"Answered","term_reason":"CALLER","queue_time":"5","call_duration":"50"}"#;
    let on_time = row("7.2", "agent001", "Answered", "CALLER", 5, 50);
    let logs = Logs::default();
    let _capture = logs.capture();
    let e = count(|_| {}, &[late.to_string(), on_time]).await;
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 2.0);
    assert_eq!(e.value("crocodial_cdr_future_rows_total", &[]), 1.0);
    let text = logs.text();
    let warning = text
        .lines()
        .find(|l| l.contains("--api.timezone"))
        .unwrap_or_else(|| panic!("no warning in\n{text}"));
    assert!(
        warning.contains("WARN") && warning.contains("ahead=1h 10m"),
        "{warning}"
    );
}

/// Most answered legs with a call_duration below their queue_time: a warning suggests
/// --cdr.call-duration-includes-queue-time=false, once.
#[tokio::test]
async fn durations_below_the_wait_suggest_the_flag() {
    let rows: Vec<String> = (0..20)
        .map(|i| {
            let wait = if i < 15 { 30 } else { 5 };
            row(&format!("9.{i}"), "agent001", "SALE", "AGENT", wait, 20)
        })
        .collect();
    let logs = Logs::default();
    let _capture = logs.capture();
    let e = count(|_| {}, &rows).await;
    assert_eq!(
        e.value("crocodial_cdr_duration_below_queue_time_total", &[]),
        15.0
    );
    assert_eq!(
        logs.count("set --cdr.call-duration-includes-queue-time=false"),
        1,
        "{}",
        logs.text()
    );
}
