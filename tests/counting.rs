//! Counting: every final leg exactly once, with exact counter values and exact histogram
//! counts and sums, although every poll re-sends the window and rows change after they appear.

mod common;

use common::*;
use crocodial_exporter::clock::ManualClock;
use jiff::SignedDuration;

/// Three polls of one day's window, PHP-style: escapes, numbers as strings, decimals, numbers,
/// empty, null and negative values, a transfer's second leg (same uniq1, its own call_date and
/// queue), a row without uniq1.
const POLL1: &str = r#"{"result":"success","data":{"rows":[
{"call_date":"2025-05-29 11:00:00","src":"5551230001","dst":"5550100","carrier":"SIP\/TRUNK1-00000001","uniq1":"1716984000.000001","queue":"SALES\/EU","agent":"agent001","campaign":"CAMP_A","disposition":"Answered","term_reason":"CALLER","queue_time":"10","call_duration":"100","vendor_lead_code":"John Doe"},
{"call_date":"2025-05-29 11:50:00","src":"5551230002","uniq1":"1716984000.00001","queue":"SALES\/EU","agent":"","campaign":"CAMP_A","disposition":"QUEUE","term_reason":"","queue_time":"0","call_duration":"0"}
],"headers":[],"summary_headers":[],"summary_rows":[]}}"#;

const POLL2: &str = r#"{"result":"success","data":{"rows":[
{"call_date":"2025-05-29 11:00:00","src":"5551230001","uniq1":"1716984000.000001","queue":"SALES\/EU","agent":"agent001","campaign":"CAMP_A","disposition":"Answered","term_reason":"CALLER","queue_time":"10","call_duration":"100"},
{"call_date":"2025-05-29 11:50:00","src":"5551230002","uniq1":"1716984000.00001","queue":"SALES\/EU","agent":"Jos\u00e9","campaign":"CAMP_A","disposition":"Answered","term_reason":"AGENT","queue_time":"12.50","call_duration":34},
{"call_date":"2025-05-29 11:55:00","src":"5551230003","uniq1":"1716984000.1","queue":"SUPPORT","agent":"","campaign":"CAMP_B","disposition":"Abandoned","term_reason":"ABANDON","queue_time":45,"call_duration":""},
{"call_date":"2025-05-29 11:58:00","src":"5551230004","uniq1":"1716984000.01","queue":"SUPPORT","agent":"agent001","campaign":"CAMP_B","disposition":"INCALL","term_reason":"NONE","queue_time":"3","call_duration":"0"},
{"call_date":"2025-05-29 11:52:00","src":"5551230002","uniq1":"1716984000.00001","queue":"BILLING","agent":"agent002","campaign":"CAMP_A","disposition":"Answered","term_reason":"AGENT","queue_time":"1","call_duration":"20"},
{"call_date":"2025-05-29 11:59:00","src":"5551230005","queue":"SUPPORT","campaign":"CAMP_B","disposition":"Answered","term_reason":"AGENT"}
]}}"#;

const POLL3: &str = r#"{"result":"success","data":{"rows":[
{"call_date":"2025-05-29 11:00:00","src":"5551230001","uniq1":"1716984000.000001","queue":"SALES\/EU","agent":"agent001","campaign":"CAMP_A","disposition":"Answered","term_reason":"CALLER","queue_time":"10","call_duration":"100"},
{"call_date":"2025-05-29 11:50:00","src":"5551230002","uniq1":"1716984000.00001","queue":"SALES\/EU","agent":"Jos\u00e9","campaign":"CAMP_A","disposition":"Answered","term_reason":"AGENT","queue_time":"12.50","call_duration":34},
{"call_date":"2025-05-29 11:55:00","src":"5551230003","uniq1":"1716984000.1","queue":"SUPPORT","agent":"","campaign":"CAMP_B","disposition":"Abandoned","term_reason":"ABANDON","queue_time":"99","call_duration":"7"},
{"call_date":"2025-05-29 11:58:00","src":"5551230004","uniq1":"1716984000.01","queue":"SUPPORT","agent":"agent001","campaign":"CAMP_B","disposition":"Answered","term_reason":"CALLER","queue_time":"-1","call_duration":"600"},
{"call_date":"2025-05-29 11:59:59","src":"5551230006","uniq1":"1716984000.10","queue":"SUPPORT","agent":"agent002","campaign":"CAMP_B","disposition":"Answered","term_reason":"AGENT","queue_time":"0","call_duration":null}
],"summary_rows":[{"campaign_name":"CAMP_A","total_leads":"296","dialable":296,"pending":0,"handled_calls":285},{"campaign_name":"CAMP_B","total_leads":3031}]}}"#;

fn qt(e: &Exposition, (queue, campaign, outcome): (&str, &str, &str), le: &str) -> f64 {
    e.value(
        "crocodial_inbound_queue_time_seconds_bucket",
        &[
            ("queue", queue),
            ("campaign", campaign),
            ("outcome", outcome),
            ("le", le),
        ],
    )
}

fn cd(e: &Exposition, (queue, campaign, outcome): (&str, &str, &str), le: &str) -> f64 {
    e.value(
        "crocodial_inbound_call_duration_seconds_bucket",
        &[
            ("queue", queue),
            ("campaign", campaign),
            ("outcome", outcome),
            ("le", le),
        ],
    )
}

fn calls(e: &Exposition, q: &str, c: &str, d: &str, t: &str) -> f64 {
    e.value(
        "crocodial_inbound_calls_total",
        &[
            ("queue", q),
            ("campaign", c),
            ("disposition", d),
            ("term_reason", t),
        ],
    )
}

#[tokio::test]
async fn counts_every_final_call_once_with_exact_histograms() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let cfg = config(&sim.url, "UTC");
    let mut ex = start_exporter(&cfg, &clock).await;

    // Before the first poll: not ready, up 0, every error reason present at 0.
    assert_eq!(ex.get("/-/ready").await.0, 503);
    assert_eq!(ex.get("/-/healthy").await.0, 200);
    let e = ex.scrape().await;
    assert_eq!(e.value("crocodial_up", &[]), 0.0);
    for reason in [
        "auth",
        "api",
        "http",
        "timeout",
        "connect",
        "body",
        "too_large",
        "decode",
    ] {
        assert_eq!(
            e.value("crocodial_poll_errors_total", &[("reason", reason)]),
            0.0
        );
    }

    // Poll 1 primes: final rows are marked seen, nothing is counted.
    sim.handle.set_answer(200, POLL1);
    let r = ex.exporter.poller.poll().await.expect("poll 1");
    assert_eq!((r.rows.new, r.rows.duplicate, r.rows.pending), (0, 1, 1));
    assert_eq!(ex.get("/-/ready").await.0, 200);
    let e = ex.scrape().await;
    assert_eq!(e.count("crocodial_inbound_calls_total"), 0);
    assert_eq!(e.value("crocodial_dedup_entries", &[]), 1.0);

    sim.handle.set_answer(200, POLL2);
    let r = ex.exporter.poller.poll().await.expect("poll 2");
    // B, C and B's transfer leg into BILLING count; A was primed; D is in call.
    assert_eq!((r.rows.new, r.rows.duplicate, r.rows.pending), (3, 1, 1));
    assert_eq!(r.rows.rejected_total(), 1);

    sim.handle.set_answer(200, POLL3);
    let r = ex.exporter.poller.poll().await.expect("poll 3");
    assert_eq!((r.rows.new, r.rows.duplicate, r.rows.pending), (2, 3, 0));

    // And once more: nothing changes.
    ex.exporter.poller.poll().await.expect("poll 4");

    let e = ex.scrape().await;
    assert_eq!(e.count("crocodial_inbound_calls_total"), 5);
    assert_eq!(calls(&e, "SALES/EU", "CAMP_A", "Answered", "AGENT"), 1.0);
    assert_eq!(calls(&e, "BILLING", "CAMP_A", "Answered", "AGENT"), 1.0);
    // B and its transfer leg are one call: B, C, D and .10.
    assert_eq!(e.value("crocodial_inbound_unique_calls_total", &[]), 4.0);
    assert_eq!(calls(&e, "SUPPORT", "CAMP_B", "Abandoned", "ABANDON"), 1.0);
    assert_eq!(calls(&e, "SUPPORT", "CAMP_B", "Answered", "CALLER"), 1.0);
    assert_eq!(calls(&e, "SUPPORT", "CAMP_B", "Answered", "AGENT"), 1.0);

    // Queue time: B 12.5 (answered) on SALES/EU; C 45 (abandoned, no agent) and F 0
    // (answered) on SUPPORT; D's -1 is left out.
    let h = "crocodial_inbound_queue_time_seconds";
    let sales = ("SALES/EU", "CAMP_A", "answered");
    let support = ("SUPPORT", "CAMP_B", "answered");
    let abandoned = ("SUPPORT", "CAMP_B", "abandoned");
    let labels = |(queue, campaign, outcome)| {
        [
            ("queue", queue),
            ("campaign", campaign),
            ("outcome", outcome),
        ]
    };
    assert_eq!(e.value(&format!("{h}_count"), &labels(sales)), 1.0);
    assert_eq!(e.value(&format!("{h}_sum"), &labels(sales)), 12.5);
    assert_eq!(e.value(&format!("{h}_count"), &labels(support)), 1.0);
    assert_eq!(e.value(&format!("{h}_sum"), &labels(support)), 0.0);
    assert_eq!(e.value(&format!("{h}_count"), &labels(abandoned)), 1.0);
    assert_eq!(e.value(&format!("{h}_sum"), &labels(abandoned)), 45.0);
    let billing = ("BILLING", "CAMP_A", "answered");
    assert_eq!(e.value(&format!("{h}_sum"), &labels(billing)), 1.0);
    // Every queue and campaign shows all four outcomes, empty until their first call.
    assert_eq!(e.count(&format!("{h}_count")), 12);
    assert_eq!(e.sum(&format!("{h}_count")), 4.0);
    for (le, sales_n, support_n, abandoned_n) in [
        ("0", 0.0, 1.0, 0.0),
        ("5", 0.0, 1.0, 0.0),
        ("10", 0.0, 1.0, 0.0),
        ("15", 1.0, 1.0, 0.0),
        ("30", 1.0, 1.0, 0.0),
        ("45", 1.0, 1.0, 1.0),
        ("600", 1.0, 1.0, 1.0),
        ("+Inf", 1.0, 1.0, 1.0),
    ] {
        assert_eq!(qt(&e, sales, le), sales_n, "le={le}");
        assert_eq!(qt(&e, support, le), support_n, "le={le}");
        assert_eq!(qt(&e, abandoned, le), abandoned_n, "le={le}");
    }
    // Call duration: B 34; C "" and F null left out, D 600.
    let h = "crocodial_inbound_call_duration_seconds";
    assert_eq!(e.value(&format!("{h}_count"), &labels(sales)), 1.0);
    assert_eq!(e.value(&format!("{h}_sum"), &labels(sales)), 34.0);
    assert_eq!(e.value(&format!("{h}_count"), &labels(support)), 1.0);
    assert_eq!(e.value(&format!("{h}_sum"), &labels(support)), 600.0);
    assert_eq!(e.get(&format!("{h}_count"), &labels(abandoned)), Some(0.0));
    assert_eq!(cd(&e, sales, "30"), 0.0);
    assert_eq!(cd(&e, sales, "60"), 1.0);
    assert_eq!(cd(&e, support, "300"), 0.0);
    assert_eq!(cd(&e, support, "600"), 1.0);

    // Talk time of answered legs, call_duration - queue_time: B 34 - 12.5, the BILLING leg
    // 20 - 1; D's wait is unreadable and .10 has no duration, so their talk time is unknown.
    let talk = |queue, campaign| {
        let l = [("queue", queue), ("campaign", campaign)];
        (
            e.value("crocodial_inbound_talk_time_seconds_count", &l),
            e.value("crocodial_inbound_talk_time_seconds_sum", &l),
        )
    };
    assert_eq!(talk("SALES/EU", "CAMP_A"), (1.0, 21.5));
    assert_eq!(talk("BILLING", "CAMP_A"), (1.0, 19.0));
    assert_eq!(talk("SUPPORT", "CAMP_B"), (0.0, 0.0));

    // Agents: José (B, 21.5 s), agent001 (D, talk unknown; A was primed), agent002 (the
    // BILLING leg, 19 s, and .10, no duration).
    let a = "crocodial_inbound_agent_calls_total";
    let s = "crocodial_inbound_agent_talk_time_seconds_total";
    assert_eq!(e.count(a), 3);
    assert_eq!(e.value(a, &[("agent", "José")]), 1.0);
    assert_eq!(e.value(s, &[("agent", "José")]), 21.5);
    assert_eq!(e.value(a, &[("agent", "agent001")]), 1.0);
    assert_eq!(e.value(s, &[("agent", "agent001")]), 0.0);
    assert_eq!(e.value(a, &[("agent", "agent002")]), 2.0);
    assert_eq!(e.value(s, &[("agent", "agent002")]), 19.0);

    let last = "crocodial_inbound_last_call_timestamp_seconds";
    assert_eq!(
        e.value(last, &[("queue", "SALES/EU")]),
        ts("2025-05-29T11:50:00Z").as_second() as f64
    );
    assert_eq!(
        e.value(last, &[("queue", "SUPPORT")]),
        ts("2025-05-29T11:59:59Z").as_second() as f64
    );

    // Campaign summary of the last answer.
    assert_eq!(
        e.value("crocodial_campaign_total_leads", &[("campaign", "CAMP_A")]),
        296.0
    );
    assert_eq!(
        e.value(
            "crocodial_campaign_handled_calls",
            &[("campaign", "CAMP_A")]
        ),
        285.0
    );
    assert_eq!(
        e.value("crocodial_campaign_pending", &[("campaign", "CAMP_A")]),
        0.0
    );
    assert_eq!(
        e.value("crocodial_campaign_total_leads", &[("campaign", "CAMP_B")]),
        3031.0
    );
    assert_eq!(
        e.get(
            "crocodial_campaign_handled_calls",
            &[("campaign", "CAMP_B")]
        ),
        None
    );

    // Health: 4 polls; rows by outcome over all of them.
    let rows = "crocodial_cdr_rows_total";
    assert_eq!(e.value("crocodial_polls_total", &[]), 4.0);
    assert_eq!(e.value("crocodial_up", &[]), 1.0);
    assert_eq!(e.value(rows, &[("result", "new")]), 5.0);
    assert_eq!(e.value(rows, &[("result", "duplicate")]), 10.0);
    assert_eq!(e.value(rows, &[("result", "pending")]), 2.0);
    assert_eq!(e.value(rows, &[("result", "rejected")]), 1.0);
    assert_eq!(
        e.value(
            "crocodial_cdr_rows_rejected_total",
            &[("reason", "missing_uniq1")]
        ),
        1.0
    );
    assert_eq!(e.value("crocodial_dedup_entries", &[]), 6.0);
    assert_eq!(e.value("crocodial_cdr_pending_entries", &[]), 0.0);
    assert_eq!(
        e.value("crocodial_api_response_bytes", &[]),
        POLL3.len() as f64
    );
    assert_eq!(e.value("crocodial_poll_duration_seconds_count", &[]), 4.0);
    assert_eq!(
        e.value("crocodial_last_poll_success_timestamp_seconds", &[]),
        ts("2025-05-29T12:00:00Z").as_second() as f64
    );

    // Every request was a POST with the form in the body, never the password in a URL.
    let reqs = sim.handle.requests();
    assert_eq!(reqs.len(), 4);
    for req in &reqs {
        assert_eq!(req.method, "POST");
        assert_eq!(req.query, None);
        assert_eq!(req.param("goAction"), Some("inbound_cdr"));
        assert_eq!(req.param("goUser"), Some(USER));
        assert_eq!(req.param("goPass"), Some(PASSWORD));
        assert_eq!(req.param("responsetype"), Some("json"));
        assert_eq!(req.param("fromDate"), Some("2025-05-29"));
        assert_eq!(req.param("toDate"), Some("2025-05-30"));
    }
}

#[tokio::test]
async fn once_mode_counts_every_final_row() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.once = true;
    let mut ex = start_exporter(&cfg, &clock).await;
    sim.handle.set_answer(200, POLL2);
    let r = ex.exporter.poller.poll().await.expect("poll");
    // A, B, B's transfer leg and C are final; D is in call; one lacks uniq1.
    assert_eq!((r.rows.new, r.rows.duplicate, r.rows.pending), (4, 0, 1));
    let e = ex.scrape().await;
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 4.0);
    assert_eq!(e.value("crocodial_inbound_unique_calls_total", &[]), 3.0);
    assert_eq!(calls(&e, "SALES/EU", "CAMP_A", "Answered", "CALLER"), 1.0);
}

#[tokio::test]
async fn a_row_that_never_finalizes_counts_after_max_pending() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let cfg = config(&sim.url, "UTC");
    let mut ex = start_exporter(&cfg, &clock).await;
    let stuck = r#"{"result":"success","data":{"rows":[
        {"call_date":"2025-05-29 10:30:00","uniq1":"1716978600.5","queue":"SUPPORT","campaign":"CAMP_B","disposition":"QUEUE","term_reason":"","queue_time":"0","call_duration":"0"}]}}"#;
    sim.handle.set_answer(200, stuck);
    assert_eq!(
        ex.exporter.poller.poll().await.expect("prime").rows.pending,
        1
    );
    clock.set(ts("2025-05-29T12:30:00Z"));
    assert_eq!(
        ex.exporter.poller.poll().await.expect("at 2h").rows.pending,
        1
    );
    assert_eq!(ex.scrape().await.count("crocodial_inbound_calls_total"), 0);
    clock.advance(SignedDuration::from_secs(1));
    assert_eq!(
        ex.exporter.poller.poll().await.expect("past 2h").rows.new,
        1
    );
    // It finalizes later: already counted, as it stood.
    sim.handle.set_answer(
        200,
        stuck.replace(
            r#""QUEUE","term_reason":"""#,
            r#""Answered","term_reason":"AGENT""#,
        ),
    );
    assert_eq!(
        ex.exporter
            .poller
            .poll()
            .await
            .expect("final")
            .rows
            .duplicate,
        1
    );
    let e = ex.scrape().await;
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 1.0);
    assert_eq!(calls(&e, "SUPPORT", "CAMP_B", "QUEUE", "unknown"), 1.0);
    assert_eq!(e.value("crocodial_cdr_pending_entries", &[]), 0.0);
}

/// Polls the simulated traffic every `step` from `start` to `end` and checks that the exporter
/// counted exactly the calls that became final after the first (priming) poll.
async fn counts_simulated_traffic_exactly(tz: &str, start: &str, end: &str, step: SignedDuration) {
    let clock = ManualClock::new(ts(start));
    let sim = start_sim(&clock, tz, 42).await;
    let cfg = config(&sim.url, tz);
    let mut ex = start_exporter(&cfg, &clock).await;
    let final_ids = |clock: &ManualClock| common::final_legs(&sim, clock, tz);
    let primed = final_ids(&clock);
    ex.exporter.poller.poll().await.expect("prime");
    let mut polls = 1;
    while clock_now(&clock) < ts(end) {
        clock.advance(step);
        ex.exporter.poller.poll().await.expect("poll");
        polls += 1;
    }
    let truth = final_ids(&clock).difference(&primed).count();
    assert!(truth > 20, "too little traffic to mean anything: {truth}");
    let e = ex.scrape().await;
    assert_eq!(
        e.sum("crocodial_inbound_calls_total"),
        truth as f64,
        "{tz} {start}"
    );
    assert_eq!(
        e.sum("crocodial_inbound_queue_time_seconds_count"),
        truth as f64
    );
    assert_eq!(
        e.sum("crocodial_inbound_call_duration_seconds_count"),
        truth as f64
    );
    assert_eq!(
        e.value("crocodial_cdr_rows_total", &[("result", "new")]),
        truth as f64
    );
    assert_eq!(e.value("crocodial_polls_total", &[]), polls as f64);
    assert_eq!(e.value("crocodial_up", &[]), 1.0);
}

fn clock_now(clock: &ManualClock) -> jiff::Timestamp {
    use crocodial_exporter::clock::Clock;
    clock.now()
}

#[tokio::test]
async fn window_across_midnight_in_new_york() {
    // 23:40 to 00:20 local on the night of 2025-05-29 (EDT, UTC-4).
    counts_simulated_traffic_exactly(
        "America/New_York",
        "2025-05-30T03:40:00Z",
        "2025-05-30T04:20:00Z",
        SignedDuration::from_secs(60),
    )
    .await;
}

/// What the exporter should make of the simulator's rows at one poll: the calls that count
/// now (a final row, or in progress past max-pending), and those still in progress with the
/// day of their row. A leg is a row: its uniq1, call_date and queue.
struct Truth {
    counts: std::collections::BTreeSet<String>,
    pending: std::collections::BTreeMap<String, i64>,
}

fn truth(
    rows: &[crocodial_exporter::sim::SimCall],
    now: i64,
    max_pending: i64,
    seen: &std::collections::BTreeSet<String>,
) -> Truth {
    use crocodial_exporter::sim::traffic::Phase;
    let mut t = Truth {
        counts: Default::default(),
        pending: Default::default(),
    };
    for c in rows.iter().filter(|c| !seen.contains(&leg_id(c))) {
        if c.phase(now) == Phase::Final || now - c.call_date > max_pending {
            t.counts.insert(leg_id(c));
        } else {
            t.pending
                .entry(leg_id(c))
                .or_insert(c.call_date.div_euclid(86_400));
        }
    }
    t.pending.retain(|id, _| !t.counts.contains(id));
    t
}

/// Polls before and after midnight in New York with a 1 h lookback: the right days are asked
/// for, every call is counted exactly once, the calls of the 29th still in progress when the
/// 29th left the window (the clock jumps an hour between polls, as an outage would) are counted
/// as dropped, and the 29th's ids are forgotten.
#[tokio::test]
async fn window_across_midnight_sends_the_right_days() {
    let clock = ManualClock::new(ts("2025-05-30T03:59:00Z"));
    let sim = start_sim(&clock, "America/New_York", 3).await;
    let mut cfg = config(&sim.url, "America/New_York");
    cfg.lookback = std::time::Duration::from_secs(3600);
    // The smallest max-pending a 1 h lookback allows is 59.5 min; less keeps the test short.
    cfg.cdr.max_pending = std::time::Duration::from_secs(20 * 60);
    let mut ex = start_exporter(&cfg, &clock).await;
    let zone = jiff::tz::TimeZone::get("America/New_York").expect("zone");
    let wall =
        |t: &str| crocodial_exporter::clock::wall_secs(ts(t).to_zoned(zone.clone()).datetime());
    let (t1, t2, t3) = (
        wall("2025-05-30T03:59:00Z"),
        wall("2025-05-30T04:01:00Z"),
        wall("2025-05-30T05:01:00Z"),
    );
    let day30 = t2 - t2.rem_euclid(86_400);
    let day29 = day30 - 86_400;
    let traffic = sim.handle.traffic().clone();
    let max_pending = 20 * 60;

    let r = ex.exporter.poller.poll().await.expect("before midnight");
    let first = truth(
        &traffic.calls(day29, day30, t1),
        t1,
        max_pending,
        &Default::default(),
    );
    assert_eq!(
        r.rows.pending as usize,
        traffic
            .calls(day29, day30, t1)
            .iter()
            .filter(|c| first.pending.contains_key(&leg_id(c)))
            .count()
    );
    let mut seen = first.counts.clone();

    clock.set(ts("2025-05-30T04:01:00Z"));
    let r = ex.exporter.poller.poll().await.expect("after midnight");
    let second = truth(
        &traffic.calls(day29, day30 + 86_400, t2),
        t2,
        max_pending,
        &seen,
    );
    assert_eq!(r.rows.new as usize, second.counts.len());
    assert_eq!(r.rows.dropped, [0, 0]);
    seen.extend(second.counts.iter().cloned());

    clock.set(ts("2025-05-30T05:01:00Z"));
    let r = ex.exporter.poller.poll().await.expect("an hour later");
    let third = truth(
        &traffic.calls(day30, day30 + 86_400, t3),
        t3,
        max_pending,
        &seen,
    );
    assert_eq!(r.rows.new as usize, third.counts.len());
    // Legs of the 29th still in progress: each leaves with its own day.
    let left = second
        .pending
        .values()
        .filter(|&&day| day * 86_400 == day29)
        .count();
    assert_eq!(r.rows.dropped, [0, left as u64]);
    assert_eq!(r.rows.rejected_total(), 0);

    let e = ex.scrape().await;
    let counted = second.counts.len() + third.counts.len();
    assert!(
        counted > 0 && left > 0,
        "the traffic tests both: {counted} counted, {left} left"
    );
    assert_eq!(e.sum("crocodial_inbound_calls_total"), counted as f64);
    assert_eq!(
        e.value(
            "crocodial_cdr_calls_dropped_total",
            &[("reason", "left_window")]
        ),
        left as f64
    );

    let days: Vec<(String, String)> = sim
        .handle
        .requests()
        .iter()
        .map(|r| {
            (
                r.param("fromDate").unwrap_or("").to_string(),
                r.param("toDate").unwrap_or("").to_string(),
            )
        })
        .collect();
    let day = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        days,
        [
            day("2025-05-29", "2025-05-30"),
            day("2025-05-29", "2025-05-31"),
            day("2025-05-30", "2025-05-31"),
        ]
    );
    // The 29th left the window: its ids are forgotten; the 30th's are remembered.
    let today: std::collections::BTreeSet<&String> = seen
        .iter()
        .chain(&third.counts)
        .filter(|id| {
            traffic
                .calls(day30, day30 + 86_400, t3)
                .iter()
                .any(|c| &&leg_id(c) == id)
        })
        .collect();
    assert_eq!(e.value("crocodial_dedup_entries", &[]), today.len() as f64);
}

#[tokio::test]
async fn dst_fall_back_in_berlin() {
    // 02:00 CEST to 03:30 CET on 2025-10-26: the hour from 02:00 to 03:00 happens twice.
    counts_simulated_traffic_exactly(
        "Europe/Berlin",
        "2025-10-26T00:00:00Z",
        "2025-10-26T02:30:00Z",
        SignedDuration::from_secs(300),
    )
    .await;
}

#[tokio::test]
async fn dst_spring_forward_in_berlin() {
    // 01:00 CET to 04:00 CEST on 2025-03-30: the hour from 02:00 to 03:00 never happens.
    counts_simulated_traffic_exactly(
        "Europe/Berlin",
        "2025-03-30T00:00:00Z",
        "2025-03-30T02:00:00Z",
        SignedDuration::from_secs(300),
    )
    .await;
}

#[tokio::test]
async fn label_values_are_bounded_and_agent_metrics_can_be_off() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.once = true;
    cfg.metrics.max_label_values = 2;
    cfg.metrics.agent_metrics = false;
    cfg.metrics.queue_time_buckets = vec![1.0, 2.5];
    let mut ex = start_exporter(&cfg, &clock).await;
    let row = |id: &str, queue: &str, wait: &str| {
        format!(
            r#"{{"call_date":"2025-05-29 11:00:00","uniq1":"{id}","queue":"{queue}","agent":"agent001","campaign":"C","disposition":"Answered","term_reason":"AGENT","queue_time":"{wait}","call_duration":"9"}}"#
        )
    };
    let rows = [
        row("1.1", "Q1", "1"),
        row("1.2", "Q2", "2"),
        row("1.3", "Q3", "3"),
        row("1.4", "Q4", "0.5"),
        row("1.5", "Q1", "2.5"),
    ];
    sim.handle.set_answer(
        200,
        format!(
            r#"{{"result":"success","data":{{"rows":[{}]}}}}"#,
            rows.join(",")
        ),
    );
    ex.exporter.poller.poll().await.expect("poll");
    let e = ex.scrape().await;
    let calls = |q: &str| calls(&e, q, "C", "Answered", "AGENT");
    assert_eq!(
        (calls("Q1"), calls("Q2"), calls("__other__")),
        (2.0, 1.0, 2.0)
    );
    assert_eq!(e.count("crocodial_inbound_calls_total"), 3);
    assert_eq!(
        e.value("crocodial_label_overflow_total", &[("label", "queue")]),
        2.0
    );
    assert_eq!(
        e.value("crocodial_label_overflow_total", &[("label", "campaign")]),
        0.0
    );
    assert_eq!(e.count("crocodial_inbound_agent_calls_total"), 0);
    assert_eq!(
        e.count("crocodial_inbound_agent_call_duration_seconds_total"),
        0
    );
    // Custom buckets: exactly 1, 2.5 and +Inf.
    let other = [
        ("queue", "__other__"),
        ("campaign", "C"),
        ("outcome", "answered"),
    ];
    let les: Vec<String> = e
        .samples
        .iter()
        .filter(|(n, l, _)| {
            n == "crocodial_inbound_queue_time_seconds_bucket"
                && l.get("queue").map(String::as_str) == Some("__other__")
                && l.get("outcome").map(String::as_str) == Some("answered")
        })
        .map(|(_, l, _)| l["le"].clone())
        .collect();
    assert_eq!(les, ["1", "2.5", "+Inf"]);
    assert_eq!(qt(&e, ("__other__", "C", "answered"), "1"), 1.0);
    assert_eq!(qt(&e, ("__other__", "C", "answered"), "2.5"), 1.0);
    assert_eq!(qt(&e, ("__other__", "C", "answered"), "+Inf"), 2.0);
    assert_eq!(
        e.value("crocodial_inbound_queue_time_seconds_sum", &other),
        3.5
    );
    assert_eq!(qt(&e, ("Q1", "C", "answered"), "1"), 1.0);
    assert_eq!(qt(&e, ("Q1", "C", "answered"), "2.5"), 2.0);
}

/// `uniq1` as a JSON number keeps its literal text: 1716984000.1 and 1716984000.10 are two
/// calls (sequence 1 and 10), which an f64 would merge into one.
#[tokio::test]
async fn numeric_call_ids_keep_their_exact_text() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    sim.handle
        .set_answer(200, r#"{"result":"success","data":{"rows":[]}}"#);
    ex.exporter.poller.poll().await.expect("prime");
    let row = |id: &str| {
        format!(
            r#"{{"call_date":"2025-05-29 11:00:00","uniq1":{id},"queue":"Q","agent":"agent001","campaign":"C","disposition":"Answered","term_reason":"AGENT","queue_time":"1","call_duration":"2"}}"#
        )
    };
    let body = |rows: &[String]| {
        format!(
            r#"{{"result":"success","data":{{"rows":[{}]}}}}"#,
            rows.join(",")
        )
    };
    sim.handle
        .set_answer(200, body(&[row("1716984000.1"), row("1716984000.10")]));
    let r = ex.exporter.poller.poll().await.expect("poll");
    assert_eq!((r.rows.new, r.rows.duplicate), (2, 0));
    // The same ids as numbers or as text: the same two calls.
    sim.handle.set_answer(
        200,
        body(&[
            row("1716984000.10"),
            row("1716984000.1"),
            row("\"1716984000.10\""),
            row("\"1716984000.1\""),
        ]),
    );
    let r = ex.exporter.poller.poll().await.expect("poll again");
    assert_eq!((r.rows.new, r.rows.duplicate), (0, 4));
    let e = ex.scrape().await;
    assert_eq!(calls(&e, "Q", "C", "Answered", "AGENT"), 2.0);
}

fn rows_body(rows: &[String]) -> String {
    format!(
        r#"{{"result":"success","data":{{"rows":[{}]}}}}"#,
        rows.join(",")
    )
}

/// A row of queue Q: `uniq1`, `call_date` (full), disposition and term reason.
fn q_row(id: &str, date: &str, disposition: &str, term: &str) -> String {
    format!(
        r#"{{"call_date":"{date}","uniq1":"{id}","queue":"Q","agent":"agent001","campaign":"C","disposition":"{disposition}","term_reason":"{term}","queue_time":"5","call_duration":"60"}}"#
    )
}

fn dropped(e: &Exposition, reason: &str) -> f64 {
    e.value("crocodial_cdr_calls_dropped_total", &[("reason", reason)])
}

/// Calls seen in progress that leave without ever being counted are counted by reason: their
/// rows vanish from the answer, or their day leaves the window while polls fail.
#[tokio::test]
async fn calls_that_leave_uncounted_are_counted_as_dropped() {
    let clock = ManualClock::new(ts("2025-05-29T23:55:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    let e = ex.scrape().await;
    assert_eq!(
        (dropped(&e, "vanished"), dropped(&e, "left_window")),
        (0.0, 0.0)
    );

    let waiting = q_row("8.1", "2025-05-29 23:54:00", "QUEUE", "");
    let talking = q_row("8.2", "2025-05-29 23:40:00", "INCALL", "NONE");
    let late = q_row("8.3", "2025-05-29 23:50:00", "INCALL", "NONE");
    sim.handle.set_answer(
        200,
        rows_body(&[waiting.clone(), talking.clone(), late.clone()]),
    );
    let r = ex.exporter.poller.poll().await.expect("prime");
    assert_eq!(r.rows.pending, 3);

    // The waiting caller's row is gone (deleted by the platform): one call vanished.
    sim.handle
        .set_answer(200, rows_body(&[talking.clone(), late.clone()]));
    let r = ex.exporter.poller.poll().await.expect("vanished");
    assert_eq!(r.rows.dropped, [1, 0]);
    assert_eq!(
        ex.scrape()
            .await
            .value("crocodial_cdr_pending_entries", &[]),
        2.0
    );
    // Only once.
    let r = ex.exporter.poller.poll().await.expect("again");
    assert_eq!((r.rows.dropped, r.rows.pending), ([0, 0], 2));

    // After midnight the talking call ends and is counted; then the API fails until the 29th
    // has left the window (6 h lookback), and the other call in progress goes with it.
    clock.set(ts("2025-05-30T00:05:00Z"));
    let ended = q_row("8.2", "2025-05-29 23:40:00", "Answered", "AGENT");
    sim.handle
        .set_answer(200, rows_body(&[ended.clone(), late.clone()]));
    let r = ex.exporter.poller.poll().await.expect("after midnight");
    assert_eq!((r.rows.new, r.rows.pending, r.rows.dropped), (1, 1, [0, 0]));
    sim.handle.set_answer(200, "<html>503</html>");
    ex.exporter.poller.poll().await.expect_err("down");
    clock.set(ts("2025-05-30T06:05:00Z"));
    // The API still sends both (it ignores the window): the counted one is a duplicate, the
    // other is rejected as before the window, and dropped, once.
    sim.handle.set_answer(200, rows_body(&[ended, late]));
    let r = ex.exporter.poller.poll().await.expect("next day");
    assert_eq!(r.rows.dropped, [0, 1]);
    assert_eq!((r.rows.duplicate, r.rows.rejected[2]), (1, 1));
    let e = ex.scrape().await;
    assert_eq!(
        (dropped(&e, "vanished"), dropped(&e, "left_window")),
        (1.0, 1.0)
    );
    assert_eq!(e.value("crocodial_cdr_pending_entries", &[]), 0.0);
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 1.0);

    // A vanished call that comes back final is counted then (the drop stays counted).
    sim.handle.set_answer(
        200,
        rows_body(&[q_row("8.1", "2025-05-30 00:10:00", "Answered", "AGENT")]),
    );
    let r = ex.exporter.poller.poll().await.expect("back");
    assert_eq!(r.rows.new, 1);
}

/// A final row whose call_date cannot be read is rejected, once, and never counted, across a
/// midnight (where "today" changes) and whatever the API keeps sending.
#[tokio::test]
async fn a_final_row_without_a_readable_date_is_rejected_once_and_never_counted() {
    let clock = ManualClock::new(ts("2025-05-29T23:50:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    sim.handle.set_answer(200, rows_body(&[]));
    ex.exporter.poller.poll().await.expect("prime");
    let body = rows_body(&[
        q_row("9.1", "0000-00-00 00:00:00", "Answered", "AGENT"),
        q_row("9.2", "", "Answered", "AGENT"),
        q_row("9.3", "2025-05-29 23:45:00", "Answered", "AGENT"),
    ]);
    sim.handle.set_answer(200, body.clone());
    let r = ex.exporter.poller.poll().await.expect("poll");
    assert_eq!(r.rows.new, 1);
    assert_eq!(r.rows.rejected[3], 2);
    for at in [
        "2025-05-29T23:59:00Z",
        "2025-05-30T00:01:00Z",
        "2025-05-30T05:59:00Z",
    ] {
        clock.set(ts(at));
        let r = ex.exporter.poller.poll().await.expect("poll");
        assert_eq!(
            (r.rows.new, r.rows.duplicate, r.rows.rejected_total()),
            (0, 3, 0),
            "{at}"
        );
    }
    // Once the day it was rejected under leaves the window, a row the API still sends is
    // rejected again (once per day), and still never counted.
    // (The poll that moves the window forgets the day after it has sorted its rows.)
    clock.set(ts("2025-05-30T06:01:00Z"));
    let r = ex.exporter.poller.poll().await.expect("poll");
    assert_eq!(
        (r.rows.new, r.rows.duplicate, r.rows.rejected_total()),
        (0, 3, 0)
    );
    // (9.3, counted on the 29th, is now before the window.)
    let r = ex.exporter.poller.poll().await.expect("poll");
    assert_eq!(
        (r.rows.new, r.rows.rejected[3], r.rows.rejected[2]),
        (0, 2, 1)
    );
    let r = ex.exporter.poller.poll().await.expect("poll");
    assert_eq!(
        (r.rows.new, r.rows.duplicate, r.rows.rejected[3]),
        (0, 2, 0)
    );
    let e = ex.scrape().await;
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 1.0);
    assert_eq!(
        e.value(
            "crocodial_cdr_rows_rejected_total",
            &[("reason", "bad_call_date")]
        ),
        4.0
    );
}

fn last_call(e: &Exposition) -> f64 {
    e.value(
        "crocodial_inbound_last_call_timestamp_seconds",
        &[("queue", "Q")],
    )
}

/// New York falls back on 2025-11-02: 01:00-02:00 happens twice (EDT, then EST). A call stamped
/// 01:30 is read as the later instant once that has happened, so a call held in progress is
/// never counted early at --cdr.max-pending (2 h), and the newest call's start is never in the
/// future.
#[tokio::test]
async fn fall_back_never_counts_a_pending_call_early() {
    let clock = ManualClock::new(ts("2025-11-02T05:40:00Z"));
    let sim = start_sim(&clock, "America/New_York", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "America/New_York"), &clock).await;
    // A: 01:30 the first time (05:30Z); B: 01:30 the second time (06:30Z); C: 01:50 the
    // first time (05:50Z), over by 05:55Z.
    let a = q_row("10.1", "2025-11-02 01:30:00", "INCALL", "NONE");
    let b = q_row("10.2", "2025-11-02 01:30:00", "INCALL", "NONE");
    let c = q_row("10.3", "2025-11-02 01:50:00", "Answered", "AGENT");
    sim.handle
        .set_answer(200, rows_body(std::slice::from_ref(&a)));
    ex.exporter.poller.poll().await.expect("prime");

    clock.set(ts("2025-11-02T05:55:00Z"));
    sim.handle
        .set_answer(200, rows_body(&[a.clone(), c.clone()]));
    let r = ex.exporter.poller.poll().await.expect("01:55 EDT");
    assert_eq!((r.rows.new, r.rows.pending), (1, 1));
    // 01:50 EST (06:50Z) has not happened yet at 05:55Z: the call started at 05:50Z.
    let e = ex.scrape().await;
    assert_eq!(last_call(&e), ts("2025-11-02T05:50:00Z").as_second() as f64);

    for (at, pending) in [("2025-11-02T06:35:00Z", 2), ("2025-11-02T08:29:00Z", 2)] {
        clock.set(ts(at));
        sim.handle
            .set_answer(200, rows_body(&[a.clone(), b.clone(), c.clone()]));
        let r = ex.exporter.poller.poll().await.expect("poll");
        // Read as 05:30Z, B would count at 07:30Z, an hour before its 2 h are up.
        assert_eq!((r.rows.new, r.rows.pending), (0, pending), "{at}");
    }
    clock.set(ts("2025-11-02T08:31:00Z"));
    let r = ex.exporter.poller.poll().await.expect("past max-pending");
    assert_eq!((r.rows.new, r.rows.pending), (2, 0));
    let e = ex.scrape().await;
    assert_eq!(last_call(&e), ts("2025-11-02T06:30:00Z").as_second() as f64);
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 3.0);
}

/// Berlin springs forward on 2025-03-30: 02:00-03:00 never happens. A call in progress from
/// 01:50 CET (00:50Z) is counted 2 real hours later (02:50Z, 04:50 CEST), not 2 wall-clock
/// hours later.
#[tokio::test]
async fn spring_forward_counts_a_pending_call_after_two_real_hours() {
    let clock = ManualClock::new(ts("2025-03-30T00:55:00Z"));
    let sim = start_sim(&clock, "Europe/Berlin", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "Europe/Berlin"), &clock).await;
    let d = q_row("11.1", "2025-03-30 01:50:00", "INCALL", "NONE");
    sim.handle
        .set_answer(200, rows_body(std::slice::from_ref(&d)));
    ex.exporter.poller.poll().await.expect("prime");
    // At 03:10 CEST a call stamped 02:30, an hour that never happened: 01:30Z (+1) is still
    // to come, so it started at 00:30Z (+2), and the newest start is not in the future.
    clock.set(ts("2025-03-30T01:10:00Z"));
    let skipped = q_row("11.2", "2025-03-30 02:30:00", "Answered", "AGENT");
    sim.handle.set_answer(200, rows_body(&[d.clone(), skipped]));
    let r = ex.exporter.poller.poll().await.expect("03:10 CEST");
    assert_eq!((r.rows.new, r.rows.pending), (1, 1));
    let e = ex.scrape().await;
    assert_eq!(last_call(&e), ts("2025-03-30T00:30:00Z").as_second() as f64);
    clock.set(ts("2025-03-30T02:49:00Z"));
    let r = ex.exporter.poller.poll().await.expect("04:49 CEST");
    assert_eq!((r.rows.new, r.rows.pending), (0, 1));
    clock.set(ts("2025-03-30T02:51:00Z"));
    let r = ex.exporter.poller.poll().await.expect("04:51 CEST");
    assert_eq!((r.rows.new, r.rows.pending, r.rows.duplicate), (1, 0, 1));
    let e = ex.scrape().await;
    assert_eq!(last_call(&e), ts("2025-03-30T00:50:00Z").as_second() as f64);
}

/// The platform's rarer ways, simulated end to end for three and a half hours of polls: calls
/// longer than --cdr.max-pending are counted once as they stand, rows deleted while the call
/// is in progress are counted as dropped (vanished), rows whose call_date cannot be read are rejected
/// once each, and everything else is counted exactly once.
#[tokio::test]
async fn simulated_anomalies_are_each_counted_or_reported_exactly() {
    use crocodial_exporter::sim::traffic::Phase;
    use std::collections::{BTreeMap, BTreeSet};

    let clock = ManualClock::new(ts("2025-05-29T09:00:00Z"));
    let mut traffic = crocodial_exporter::sim::Traffic::new(7, jiff::tz::TimeZone::UTC);
    traffic.peak_calls_per_minute = 4.0;
    traffic.anomaly_rate = 0.05;
    let sim = start_sim_with(&clock, traffic.clone()).await;
    let mut ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    let max_pending = 2 * 3600;
    let day = ts("2025-05-29T00:00:00Z").as_second();

    // What the exporter sees, poll by poll, from the simulator's own truth (UTC: wall = Unix).
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut first_seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let (mut counted, mut rejected, mut vanished) = (0u64, 0u64, 0u64);
    let mut long = 0;
    let start = ts("2025-05-29T09:00:00Z").as_second();
    let end = ts("2025-05-29T12:30:00Z").as_second();
    let mut now = start;
    while now <= end {
        clock.set(jiff::Timestamp::from_second(now).expect("time"));
        ex.exporter.poller.poll().await.expect("poll");
        let rows = traffic.calls(day, day + 2 * 86_400, now);
        let present: BTreeSet<String> = rows.iter().map(leg_id).collect();
        // Pending calls whose rows are gone.
        vanished += pending.iter().filter(|id| !present.contains(*id)).count() as u64;
        pending.retain(|id| present.contains(id));
        let mut fresh = BTreeSet::new();
        for c in &rows {
            let leg = leg_id(c);
            if seen.contains(&leg) || fresh.contains(&leg) {
                continue;
            }
            let since = if c.bad_date {
                *first_seen.entry(leg.clone()).or_insert(now)
            } else {
                c.call_date
            };
            if c.phase(now) == Phase::Final || now - since > max_pending {
                fresh.insert(leg.clone());
                pending.remove(&leg);
                if c.bad_date {
                    rejected += 1;
                } else if now > start {
                    counted += 1;
                    if c.phase(now) != Phase::Final {
                        long += 1;
                    }
                }
            } else {
                pending.insert(leg);
            }
        }
        seen.extend(fresh);
        now += 120;
    }

    eprintln!("counted {counted} (of which {long} past max-pending), vanished {vanished}, rejected {rejected}");
    // Each of them happened at least once.
    assert!(
        long > 0 && vanished > 0 && rejected > 0,
        "long {long}, vanished {vanished}, rejected {rejected}"
    );
    let e = ex.scrape().await;
    assert_eq!(e.sum("crocodial_inbound_calls_total"), counted as f64);
    assert_eq!(
        e.value(
            "crocodial_cdr_calls_dropped_total",
            &[("reason", "vanished")]
        ),
        vanished as f64
    );
    assert_eq!(
        e.value(
            "crocodial_cdr_calls_dropped_total",
            &[("reason", "left_window")]
        ),
        0.0
    );
    assert_eq!(
        e.value(
            "crocodial_cdr_rows_rejected_total",
            &[("reason", "bad_call_date")]
        ),
        rejected as f64
    );
}
