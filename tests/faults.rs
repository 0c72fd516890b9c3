//! Faults below HTTP, from a raw TCP server: a reset connection, a body cut off by a closed
//! connection, a TLS handshake with a server that speaks plain HTTP. Each is classified, moves
//! no counter, and the next good answer counts as the truth.

mod common;

use std::time::Duration;

use common::*;
use crocodial_exporter::clock::ManualClock;
use crocodial_exporter::vocab::Reason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

#[derive(Clone, Copy)]
enum Fault {
    /// Read the request, then reset the connection (RST).
    Reset,
    /// Promise 10,000 bytes, send 100, close.
    CutBody,
}

/// A server that misbehaves with `fault` on every connection.
async fn faulty(fault: Fault) -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let _ = conn.read(&mut buf).await;
                match fault {
                    Fault::Reset => {
                        let _ = conn.set_zero_linger();
                        drop(conn);
                    }
                    Fault::CutBody => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 10000\r\n\r\n";
                        let _ = conn.write_all(head.as_bytes()).await;
                        let _ = conn
                            .write_all(br#"{"result":"success","data":{"rows":[{"uniq1":"1.1","queue":"Q","campaign":"C","disposition":"Answered","term_r"#)
                            .await;
                        let _ = conn.shutdown().await;
                    }
                }
            });
        }
    });
    Url::parse(&format!("http://{addr}/goAPI.php")).expect("url")
}

async fn fails_with(url: Url, reason: Reason) -> String {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let mut ex = start_exporter(&config(&url, "UTC"), &clock).await;
    let err = ex.exporter.poller.poll().await.expect_err("fault");
    assert_eq!(err.reason, reason, "{}", err.message);
    let e = ex.scrape().await;
    assert_eq!(e.value("crocodial_up", &[]), 0.0);
    assert_eq!(
        e.value(
            "crocodial_poll_errors_total",
            &[("reason", reason.as_str())]
        ),
        1.0
    );
    assert_eq!(e.count("crocodial_inbound_calls_total"), 0);
    err.message
}

#[tokio::test]
async fn a_reset_connection() {
    let message = fails_with(faulty(Fault::Reset).await, Reason::Connect).await;
    assert!(message.starts_with("error sending request"), "{message}");
}

#[tokio::test]
async fn a_body_cut_off_by_a_closed_connection() {
    let message = fails_with(faulty(Fault::CutBody).await, Reason::Body).await;
    assert!(
        message.starts_with("error decoding response body"),
        "{message}"
    );
}

#[tokio::test]
async fn a_tls_handshake_with_a_plain_http_server() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut url = sim.url.clone();
    url.set_scheme("https").expect("https");
    let message = fails_with(url, Reason::Connect).await;
    assert!(
        message.contains("tls")
            || message.contains("TLS")
            || message.contains("InvalidContentType")
            || message.contains("corrupt message"),
        "{message}"
    );
}

/// After any fault, the API's recovery is counted exactly: the fault moved nothing.
#[tokio::test]
async fn counts_equal_the_truth_after_recovery() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.timeout = Duration::from_millis(300);
    let mut ex = start_exporter(&cfg, &clock).await;
    let row = |i: u32| {
        format!(
            r#"{{"call_date":"2025-05-29 11:{i:02}:00","uniq1":"7.{i}","queue":"Q","campaign":"C","disposition":"Answered","term_reason":"AGENT","queue_time":"{i}","call_duration":"60"}}"#
        )
    };
    let body = |n: u32| {
        format!(
            r#"{{"result":"success","data":{{"rows":[{}]}}}}"#,
            (0..n).map(row).collect::<Vec<_>>().join(",")
        )
    };
    sim.handle.set_answer(200, body(2));
    ex.exporter.poller.poll().await.expect("prime");
    let faults: Vec<(u16, String)> = vec![
        (500, "<html>500</html>".into()),
        (200, String::new()),
        (200, body(5)[..200].to_string()),
        (200, r#"{"result":"success","data":[]}"#.into()),
        (
            200,
            r#"{"result":"error","message":"Invalid Username/Password"}"#.into(),
        ),
        (
            200,
            "<br />\n<b>Fatal error</b>: Allowed memory size exhausted".into(),
        ),
    ];
    for (i, (status, fault)) in faults.into_iter().enumerate() {
        sim.handle.set_answer(status, fault);
        ex.exporter.poller.poll().await.expect_err("fault");
        // Between faults the API serves a bigger window each time.
        sim.handle.set_answer(200, body(3 + i as u32));
        ex.exporter.poller.poll().await.expect("recovered");
    }
    sim.handle.set_delay(Duration::from_secs(2));
    assert_eq!(
        ex.exporter.poller.poll().await.expect_err("slow").reason,
        Reason::Timeout
    );
    sim.handle.set_delay(Duration::ZERO);
    sim.handle.set_answer(200, body(20));
    ex.exporter.poller.poll().await.expect("recovered");
    let e = ex.scrape().await;
    // Everything after the two primed calls, each once.
    assert_eq!(e.sum("crocodial_inbound_calls_total"), 18.0);
    // No agent on these rows: by the default rules their outcome is "other".
    let q = [("queue", "Q"), ("campaign", "C"), ("outcome", "other")];
    assert_eq!(
        e.value("crocodial_inbound_queue_time_seconds_sum", &q),
        (2..20).sum::<u32>() as f64
    );
    assert_eq!(e.value("crocodial_up", &[]), 1.0);
    assert_eq!(
        e.value("crocodial_poll_errors_total", &[("reason", "decode")]),
        4.0
    );
}

/// Clients that connect and send nothing (or half a request) do not hold up scrapes.
#[tokio::test]
async fn idle_and_slow_clients_do_not_block_scrapes() {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let ex = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    let addr = ex.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for i in 0..20 {
        let mut conn = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        if i % 2 == 0 {
            conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("half a request");
        }
        idle.push(conn);
    }
    let started = std::time::Instant::now();
    let e = ex.scrape().await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.value("crocodial_up", &[]), 0.0);
    drop(idle);
}
