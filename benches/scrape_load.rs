//! Bounded load test on loopback: 32 concurrent scrapers for 30 s while the exporter polls a
//! simulated window of about 50,000 rows back to back. Prints scrape latency percentiles and
//! counts errors (there must be none).
//!
//! cargo bench --bench scrape_load

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crocodial_exporter::clock::ManualClock;
use crocodial_exporter::config::{ApiConfig, ApiSource, Config, NamedZone, Password};
use crocodial_exporter::sim::{SimHandle, Traffic};
use crocodial_exporter::Exporter;
use jiff::tz::TimeZone;
use jiff::SignedDuration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SCRAPERS: usize = 32;
const DURATION: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    let clock = ManualClock::new("2025-05-29T23:00:00Z".parse().expect("time"));
    let mut traffic = Traffic::new(7, TimeZone::UTC);
    traffic.peak_calls_per_minute = 60.0;
    let sim = SimHandle::new(traffic, "u", "p", Arc::new(clock.clone()));
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = format!("http://{}/goAPI.php", listener.local_addr().expect("addr"));
    tokio::spawn(sim.serve(listener, stop.clone().cancelled_owned()));

    let api_config = ApiConfig {
        url: api.parse().expect("url"),
        user: "u".into(),
        password: Password::new("p"),
        ca_file: None,
        insecure_skip_verify: false,
        tenants: vec![],
        profiles: vec![],
        agents: vec![],
    };
    let mut config = Config::defaults(ApiSource::Remote(Box::new(api_config.clone())), "load");
    config.timezone = NamedZone {
        name: "UTC".into(),
        zone: TimeZone::UTC,
    };
    config.poll_interval = Duration::from_secs(1);
    config.listen_address = "127.0.0.1:0".parse().expect("addr");
    config.state_file = None;
    config.once = true;
    let mut exporter =
        Exporter::new(&config, &api_config, Arc::new(clock.clone())).expect("exporter");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    tokio::spawn(Exporter::serve(
        exporter.app.clone(),
        listener,
        stop.clone().cancelled_owned(),
        None,
    ));

    let first = exporter.poller.poll().await.expect("first poll");
    let rows = first.rows.new + first.rows.duplicate + first.rows.pending;
    println!(
        "window: {rows} rows, {} bytes per poll",
        first.response_bytes
    );

    let running = Arc::new(AtomicBool::new(true));
    let polls = Arc::new(AtomicU64::new(0));
    let poller = {
        let (running, polls, clock) = (running.clone(), polls.clone(), clock.clone());
        tokio::spawn(async move {
            let mut durations = Vec::new();
            while running.load(Ordering::Relaxed) {
                clock.advance(SignedDuration::from_secs(1));
                let t = Instant::now();
                exporter.poller.poll().await.expect("poll");
                durations.push(t.elapsed());
                polls.fetch_add(1, Ordering::Relaxed);
            }
            durations
        })
    };
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut scrapers = Vec::new();
    for _ in 0..SCRAPERS {
        let (metrics, errors) = (metrics.clone(), errors.clone());
        scrapers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut latencies = Vec::new();
            while started.elapsed() < DURATION {
                let t = Instant::now();
                let ok = match client.get(&metrics).send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for s in scrapers {
        latencies.extend(s.await.expect("scraper"));
    }
    running.store(false, Ordering::Relaxed);
    let mut poll_durations = poller.await.expect("poller");
    latencies.sort();
    poll_durations.sort();
    let pct = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    let body = reqwest::get(&metrics)
        .await
        .expect("scrape")
        .bytes()
        .await
        .expect("body");
    let series = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count();
    println!(
        "{SCRAPERS} scrapers for {:?}: {} scrapes ({:.0}/s), {} errors; exposition {} series, {} bytes",
        DURATION,
        latencies.len(),
        latencies.len() as f64 / DURATION.as_secs_f64(),
        errors.load(Ordering::Relaxed),
        series,
        body.len()
    );
    println!(
        "scrape latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&latencies, 0.5).as_secs_f64() * 1e3,
        pct(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "polls meanwhile: {} (p50 {:.0} ms, max {:.0} ms each)",
        polls.load(Ordering::Relaxed),
        pct(&poll_durations, 0.5).as_secs_f64() * 1e3,
        poll_durations
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    );
    stop.cancel();
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "scrape errors under load"
    );
}
