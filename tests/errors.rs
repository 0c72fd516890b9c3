//! Every error shape and non-JSON body the API doc lists: the poll fails with the right reason
//! and the API's own message, `crocodial_up` goes to 0, and nothing counted before moves.

mod common;

use std::time::Duration;

use common::*;
use crocodial_exporter::clock::ManualClock;
use crocodial_exporter::vocab::Reason;

const GOOD: &str = r#"{"result":"success","data":{"rows":[
{"call_date":"2025-05-29 11:00:00","uniq1":"1.1","queue":"Q","campaign":"C","disposition":"Answered","term_reason":"AGENT","queue_time":"5","call_duration":"60"},
{"call_date":"2025-05-29 11:01:00","uniq1":"1.2","queue":"Q","campaign":"C","disposition":"Answered","term_reason":"AGENT","queue_time":"7","call_duration":"61"}
]}}"#;

const ROWS_THEN_ERROR: &str = r#"{"data":{"rows":[{"call_date":"2025-05-29 11:02:00","uniq1":"1.4","queue":"Q","campaign":"C","disposition":"Answered","term_reason":"AGENT","queue_time":"9","call_duration":"62"}]},"result":"error","message":"Invalid Username/Password"}"#;
const ROWS_THEN_CUT: &str = r#"{"result":"success","data":{"rows":[{"call_date":"2025-05-29 11:02:00","uniq1":"1.4","queue":"Q","campaign":"C","disposition":"Answered","term_reason":"AGENT","queue_time":"9","call_duration":"62"},{"uniq1":"1.5""#;

const HTML_500: &str = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>500 Internal Server Error</title>\n</head><body>\n<h1>Internal Server Error</h1>\n</body></html>\n";

#[tokio::test]
async fn every_error_shape_is_classified_and_moves_no_counter() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.once = true; // count the baseline rows at once
    let mut ex = start_exporter(&cfg, &clock).await;
    sim.handle.set_answer(200, GOOD);
    ex.exporter.poller.poll().await.expect("baseline");
    let before = ex.scrape().await;
    assert_eq!(before.sum("crocodial_inbound_calls_total"), 2.0);

    let cases: &[(u16, &str, Reason, &str)] = &[
        (200, r#"{"result":"error","message":"Invalid Username/Password"}"#, Reason::Auth, r#"API said "Invalid Username/Password""#),
        (200, r#"{"result":"error","message":"Command Not Found"}"#, Reason::Api, r#"API said "Command Not Found""#),
        (200, r#"{"code":"40001","message":"Error: Missing required parameters"}"#, Reason::Api, r#"API said "Error: Missing required parameters" (code 40001)"#),
        (200, r#"{"code":"10004","result":"Error: No such resource or access is restricted "}"#, Reason::Api, r#"API said "Error: No such resource or access is restricted" (code 10004)"#),
        (200, "result=error;message=This API function only accepts XML or JSON value on responsetype;", Reason::Api, r#"API said "This API function only accepts XML or JSON value on responsetype""#),
        (200, "ERROR: 'astguiclient.conf' file not found.", Reason::Api, r#"API said "ERROR: 'astguiclient.conf' file not found.""#),
        (200, "Error: Unable to connect to MySQL asterisk.", Reason::Api, r#"API said "Error: Unable to connect to MySQL asterisk.""#),
        (500, HTML_500, Reason::Http, "HTTP status 500"),
        (502, "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>", Reason::Http, "HTTP status 502"),
        (504, "<html><head><title>504 Gateway Time-out</title></head></html>", Reason::Http, "HTTP status 504"),
        (200, HTML_500, Reason::Decode, r#"got an HTML page instead of JSON (title "500 Internal Server Error")"#),
        (200, "", Reason::Decode, "empty body"),
        (200, r#"{"result":"success","data":{"rows":[{"call_date":"2025-05-29 11:00:00","uniq1":"1.3","queue":"Q","#, Reason::Decode, "body cut short: EOF while parsing a value at line 1 column 97"),
        (200, r#"{"result":"success","data":[]}"#, Reason::Decode, "result is success but data is [], not an object"),
        (200, r#"{"result":"success","data":null}"#, Reason::Decode, "result is success but data is null, not an object"),
        (200, "\u{1}\u{2}garbage", Reason::Decode, "body is not JSON (9 bytes, starting \"garbage\")"),
        // Rows are counted as they arrive; when the answer turns out to be an error, or breaks
        // off, after a new call, that call must not count (it counts once, with the notice below).
        (200, ROWS_THEN_ERROR, Reason::Auth, r#"API said "Invalid Username/Password""#),
        (200, ROWS_THEN_CUT, Reason::Decode, "body cut short: EOF while parsing an object at line 1 column 212"),
    ];
    for (i, (status, body, reason, message)) in cases.iter().enumerate() {
        sim.handle.set_answer(*status, *body);
        let err = ex.exporter.poller.poll().await.expect_err(body);
        assert_eq!(
            (err.reason, err.message.as_str()),
            (*reason, *message),
            "case {i}"
        );
        let e = ex.scrape().await;
        assert_eq!(e.value("crocodial_up", &[]), 0.0, "case {i}");
        assert_eq!(e.sum("crocodial_inbound_calls_total"), 2.0, "case {i}");
        assert_eq!(
            e.sum("crocodial_inbound_queue_time_seconds_sum"),
            12.0,
            "case {i}"
        );
        assert_eq!(e.value("crocodial_dedup_entries", &[]), 2.0, "case {i}");
        let (_, landing) = ex.get("/").await;
        assert!(
            landing.contains(&format!("failed ({reason})")),
            "case {i}: {landing}"
        );
    }
    let e = ex.scrape().await;
    let err = |r: &str| e.value("crocodial_poll_errors_total", &[("reason", r)]);
    assert_eq!(
        (
            err("auth"),
            err("api"),
            err("http"),
            err("decode"),
            err("timeout"),
            err("connect")
        ),
        (2.0, 6.0, 3.0, 7.0, 0.0, 0.0)
    );
    assert_eq!(
        e.value("crocodial_polls_total", &[]),
        1.0 + cases.len() as f64
    );
    // Earlier successful poll time is kept.
    assert_eq!(
        e.value("crocodial_last_poll_success_timestamp_seconds", &[]),
        ts("2025-05-29T12:00:00Z").as_second() as f64
    );
    // Still ready: it has succeeded before; readiness is not liveness of the API.
    assert_eq!(ex.get("/-/ready").await.0, 200);

    // PHP notices in front of the JSON: a success, counted as a warning.
    let notice = format!(
        "<br />\n<b>Warning</b>:  Undefined index: tenant in <b>/var/www/html/goAPIv2/goReports/goAPI.php</b> on line <b>42</b><br />\n{}",
        GOOD.replace(r#""uniq1":"1.2""#, r#""uniq1":"1.4""#)
    );
    sim.handle.set_answer(200, notice);
    let r = ex.exporter.poller.poll().await.expect("notice is salvaged");
    assert_eq!(r.rows.new, 1);
    let e = ex.scrape().await;
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 3.0);
    assert_eq!(e.sum("crocodial_inbound_queue_time_seconds_sum"), 19.0);
    // Invalid UTF-8 in a field is replaced, not fatal: the row counts (and a warning is counted).
    let mut broken = GOOD
        .replace(r#""uniq1":"1.2""#, r#""uniq1":"1.5""#)
        .into_bytes();
    let at = broken
        .windows(3)
        .rposition(|w| w == b"\"Q\"")
        .expect("queue")
        + 1;
    broken.splice(at..at + 1, [b'Q', 0xff]);
    sim.handle.set_answer(200, broken);
    assert_eq!(
        ex.exporter.poller.poll().await.expect("repaired").rows.new,
        1
    );
    // "No records retrieved" is zero rows, not an error.
    sim.handle.set_answer(
        200,
        r#"{"result":"No records retrieved from: 2025-05-29 - 2025-05-30"}"#,
    );
    let r = ex.exporter.poller.poll().await.expect("no records");
    assert_eq!(r.rows, Default::default());
    let e = ex.scrape().await;
    assert_eq!(e.value("crocodial_up", &[]), 1.0);
    assert_eq!(e.value("crocodial_api_warnings_total", &[]), 2.0);
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 4.0);
    assert_eq!(
        e.value(
            "crocodial_inbound_calls_total",
            &[
                ("queue", "Q\u{fffd}"),
                ("campaign", "C"),
                ("disposition", "Answered"),
                ("term_reason", "AGENT")
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    if let crocodial_exporter::config::ApiSource::Remote(api) = &mut cfg.api {
        api.password = crocodial_exporter::config::Password::new("wrong");
    }
    let mut ex = start_exporter(&cfg, &clock).await;
    let err = ex.exporter.poller.poll().await.expect_err("wrong password");
    assert_eq!(err.reason, Reason::Auth);
    assert_eq!(err.message, r#"API said "Invalid Username/Password""#);
    assert_eq!(ex.get("/-/ready").await.0, 503);
}

#[tokio::test]
async fn connection_refused_and_timeout() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    // A port nobody listens on: bind one, then close it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let url = url::Url::parse(&format!("http://{closed}/goAPI.php")).expect("url");
    let mut ex = start_exporter(&config(&url, "UTC"), &clock).await;
    let err = ex.exporter.poller.poll().await.expect_err("refused");
    assert_eq!(err.reason, Reason::Connect);
    assert!(
        err.message.contains("Connection refused"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains(&closed.to_string()),
        "no URL in: {}",
        err.message
    );

    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.timeout = Duration::from_millis(300);
    let mut ex = start_exporter(&cfg, &clock).await;
    sim.handle.set_delay(Duration::from_secs(3));
    let started = std::time::Instant::now();
    let base = ex.base.clone();
    // A scrape during a poll in progress does not wait for it.
    let scrape = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = std::time::Instant::now();
        let body = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await;
        (t.elapsed(), body.expect("body"))
    };
    let (err, (scrape_took, body)) = tokio::join!(ex.exporter.poller.poll(), scrape);
    let err = err.expect_err("slow");
    assert_eq!(err.reason, Reason::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        scrape_took < Duration::from_millis(200),
        "scrape waited {scrape_took:?}"
    );
    assert_eq!(
        Exposition::parse(&body).value("crocodial_polls_total", &[]),
        0.0
    );
    let e = ex.scrape().await;
    assert_eq!(
        e.value("crocodial_poll_errors_total", &[("reason", "timeout")]),
        1.0
    );
}

/// An https:// URL pointed at a plain-HTTP server says so, rather than rustls's "received
/// corrupt message of type InvalidContentType" alone.
#[tokio::test]
async fn tls_to_a_plain_http_server_says_so() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let url =
        url::Url::parse(&format!("https://{}/goAPIv2/goReports/goAPI.php", sim.addr)).expect("url");
    let mut ex = start_exporter(&config(&url, "UTC"), &clock).await;
    let err = ex.exporter.poller.poll().await.expect_err("no TLS there");
    assert_eq!(err.reason, Reason::Connect);
    assert!(
        err.message.starts_with(
            "TLS handshake failed: the server answered in plain HTTP, not TLS (is the URL http://, or the port the plain one?)"
        ),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn the_simulator_answers_get_as_well_as_post() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let get = |pass: &str| {
        format!(
            "{}?goAction=inbound_cdr&goUser={USER}&goPass={pass}&responsetype=json&fromDate=2025-05-29&toDate=2025-05-30",
            sim.url
        )
    };
    let body = reqwest::get(get("nope"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert_eq!(
        body,
        r#"{"result":"error","message":"Invalid Username/Password"}"#
    );
    let body = reqwest::get(get(PASSWORD))
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    let (rows, _) = decode_whole(&body).expect("success");
    assert!(!rows.is_empty());
    assert_eq!(sim.handle.requests()[0].method, "GET");
}

#[tokio::test]
async fn consecutive_failures_back_off_and_a_success_resets() {
    use crocodial_exporter::ingest::schedule::Job;
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let cfg = config(&sim.url, "UTC"); // 30 s interval, 5 min cap
    let mut ex = start_exporter(&cfg, &clock).await;
    sim.handle.set_answer(502, "<html>Bad Gateway</html>");
    let mut waits = Vec::new();
    for _ in 0..7 {
        waits.push(ex.exporter.poller.run().await.as_secs_f64());
    }
    // Failure n waits min(300, 30 * 2^(n-1)) * [0.5, 1], never below 30.
    let bounds = [
        (30.0, 30.0),
        (30.0, 60.0),
        (60.0, 120.0),
        (120.0, 240.0),
        (150.0, 300.0),
        (150.0, 300.0),
        (150.0, 300.0),
    ];
    for (n, (w, (lo, hi))) in waits.iter().zip(bounds).enumerate() {
        assert!(*w >= lo && *w <= hi, "failure {}: waited {w}", n + 1);
    }
    let e = ex.scrape().await;
    assert_eq!(e.value("crocodial_poll_consecutive_failures", &[]), 7.0);
    assert_eq!(e.value("crocodial_poll_backoff_seconds", &[]), waits[6]);
    assert_eq!(
        e.value("crocodial_poll_errors_total", &[("reason", "http")]),
        7.0
    );
    let (_, landing) = ex.get("/").await;
    assert!(landing.contains("7 consecutive failures"), "{landing}");
    sim.handle.clear_answer();
    assert_eq!(ex.exporter.poller.run().await, Duration::from_secs(30));
    let e = ex.scrape().await;
    assert_eq!(e.value("crocodial_poll_consecutive_failures", &[]), 0.0);
    assert_eq!(e.value("crocodial_poll_backoff_seconds", &[]), 0.0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.max_response_bytes = 1000;
    let mut ex = start_exporter(&cfg, &clock).await;
    sim.handle.set_answer(
        200,
        format!(
            r#"{{"result":"success","data":{{"rows":[],"pad":"{}"}}}}"#,
            "x".repeat(2000)
        ),
    );
    let err = ex.exporter.poller.poll().await.expect_err("too large");
    assert_eq!(err.reason, Reason::TooLarge);
    assert_eq!(
        err.message,
        "response larger than 1000 bytes (--api.max-response-bytes)"
    );
    sim.handle
        .set_answer(200, r#"{"result":"success","data":{"rows":[]}}"#);
    ex.exporter.poller.poll().await.expect("small enough");
}

/// 2,000 idle connections (a flood, or a scraper fleet that never sends a request) never keep
/// a scrape waiting: at `--web.max-connections` (512) each new connection sheds the one idle
/// longest, so /metrics answers at once; the idle ones shed are closed by the exporter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_never_keeps_a_scrape_waiting() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    ex.exporter.poller.poll().await.expect("poll");
    let addr = ex.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let started = std::time::Instant::now();
    let res = reqwest::Client::new()
        .get(format!("{}/metrics", ex.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("scrape");
    assert_eq!(res.status().as_u16(), 200);
    let body = res.text().await.expect("body");
    let took = started.elapsed();
    assert!(body.contains("crocodial_up{target=\"test\"} 1"), "{body}");
    assert!(took < Duration::from_secs(1), "the scrape took {took:?}");
    // The connections shed were closed by the exporter: reading one gives end of file.
    let mut buf = [0u8; 1];
    let first = &mut idle[0];
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(first, &mut buf),
    )
    .await
    .expect("the oldest idle connection is closed");
    assert_eq!(read.expect("read"), 0);
}
