//! What a poll costs, against the limit: decoding the body with serde_json into borrowed structs.
//!
//!   cargo bench --bench ingest
//!
//! Bodies come from the simulator's generator (PHP-style escapes, numbers as strings). Groups:
//! * `reference_decode`: serde_json into borrowed structs of the fields the exporter reads, and
//!   nothing else; the limit each ingest figure is reported against. `reference_skip_all` is
//!   serde_json skipping the whole body (IgnoredAny): the floor of any serde_json decoder.
//! * `first_poll`: the exporter's work on a poll whose rows are all new: UTF-8 check, decode,
//!   sort against the seen set, count into the aggregates, remember the ids.
//! * `steady_state`: the same body again, every row already seen: what it does all day.
//! * `seen_set`: insert, lookup and expiry at 1M legs, and the bytes per leg it holds (counted by
//!   the allocator, not estimated).
//! * `metrics_encode`: /metrics at about 1k, 10k and 50k series.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, BatchSize, Criterion, Throughput};
use crocodial_exporter::api::{Num, Row};
use crocodial_exporter::clock::ManualClock;
use crocodial_exporter::config::{CdrConfig, MetricsConfig};
use crocodial_exporter::ingest::dedup::{Deduper, Mode};
use crocodial_exporter::ingest::poller::Ingest;
use crocodial_exporter::ingest::seen::{packed_leg, SeenLegs};
use crocodial_exporter::ingest::window::Window;
use crocodial_exporter::metrics::collector::CdrCollector;
use crocodial_exporter::metrics::{CdrAggregates, SharedState, Targets};
use crocodial_exporter::server::App;
use crocodial_exporter::sim::{SimHandle, Traffic};
use crocodial_exporter::vocab::Outcome;
use crocodial_exporter::vocab::{pack, CountsNow, LegKey};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

/// Counts live heap bytes while `COUNTING` is on, for the seen set's bytes per id; off, it costs
/// one relaxed load per allocation, so the timed benchmarks are not skewed.
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        }
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        }
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// After the simulated day of 2025-05-29 (UTC), when nearly every call is final.
const NOW: &str = "2025-05-30T00:20:00Z";

/// The simulator's answer for the whole day at `peak` calls per minute.
fn body(peak: f64) -> Vec<u8> {
    let clock = ManualClock::new(NOW.parse().expect("now"));
    let mut traffic = Traffic::new(3, TimeZone::UTC);
    traffic.peak_calls_per_minute = peak;
    let sim = SimHandle::new(traffic, "u", "p", Arc::new(clock));
    let params: Vec<(String, String)> = [
        ("goAction", "inbound_cdr"),
        ("goUser", "u"),
        ("goPass", "p"),
        ("responsetype", "json"),
        ("fromDate", "2025-05-29"),
        ("toDate", "2025-05-30"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, body) = sim.answer(&params);
    assert_eq!(status, 200);
    body
}

/// The reference: serde_json's derive, borrowing where it can, the same fields as the exporter.
#[allow(dead_code)]
mod reference {
    use super::*;

    #[derive(Deserialize)]
    pub struct Envelope<'a> {
        #[serde(borrow)]
        pub result: Cow<'a, str>,
        #[serde(borrow)]
        pub data: Data<'a>,
    }
    #[derive(Deserialize)]
    pub struct Data<'a> {
        #[serde(borrow)]
        pub rows: Vec<Row<'a>>,
    }
    #[derive(Deserialize)]
    pub struct Row<'a> {
        #[serde(borrow)]
        pub uniq1: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub call_date: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub queue: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub agent: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub campaign: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub disposition: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub term_reason: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub queue_time: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub call_duration: Option<Cow<'a, str>>,
    }
}

fn window_and_now() -> (Window, Timestamp) {
    let now: Timestamp = NOW.parse().expect("now");
    (
        Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC),
        now,
    )
}

fn deduper() -> Deduper {
    Deduper::new(&CdrConfig::default(), TimeZone::UTC)
}

/// The body reaches the decoder in pieces this size: a TLS record's worth, the smallest that
/// reqwest hands over from a busy connection.
const CHUNK: usize = 16 * 1024;

/// One poll as the poller does it, with the poller's own [`Ingest`], without the network and
/// the state file (see `state_commit`): the body fed in chunks, each row sorted and counted as it
/// completes, the plan applied. Returns the number of calls counted.
fn poll(body: &[u8], deduper: &mut Deduper, cdr: &mut CdrAggregates) -> u64 {
    let (window, now) = window_and_now();
    let mut ingest = Ingest::new(deduper, &window, now, Mode::Count);
    for chunk in body.chunks(CHUNK) {
        ingest.feed(chunk, deduper, cdr).expect("decodes");
    }
    let (plan, _) = ingest.finish(deduper, cdr).expect("decodes");
    deduper.apply(&plan);
    plan.counts.new
}

fn ingest(c: &mut Criterion) {
    for (name, peak) in [("10k", 11.8), ("100k", 118.0)] {
        let body = body(peak);
        let rows = serde_json::from_slice::<reference::Envelope>(&body)
            .expect("reference decodes")
            .data
            .rows
            .len();
        let mb = body.len() as f64 / 1e6;
        eprintln!("{name}: {rows} rows, {mb:.1} MB");

        let mut group = c.benchmark_group(format!("ingest_{name}"));
        group.sample_size(if rows > 50_000 { 15 } else { 40 });
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("reference_decode", |b| {
            b.iter(|| {
                let env: reference::Envelope =
                    serde_json::from_slice(black_box(&body)).expect("decodes");
                env.data.rows.len()
            })
        });
        // How fast serde_json only skips the body: the floor of any serde_json decoder.
        group.bench_function("reference_skip_all", |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).expect("decodes")
            })
        });
        group.bench_function("first_poll", |b| {
            b.iter_batched(
                || (deduper(), CdrAggregates::new(&MetricsConfig::default())),
                |(mut d, mut cdr)| {
                    let new = poll(black_box(&body), &mut d, &mut cdr);
                    assert!(new > 0);
                    (d, cdr)
                },
                BatchSize::PerIteration,
            )
        });
        let mut seen = deduper();
        let mut cdr = CdrAggregates::new(&MetricsConfig::default());
        let counted = poll(&body, &mut seen, &mut cdr);
        eprintln!("{name}: first poll counted {counted} calls");
        group.bench_function("steady_state", |b| {
            b.iter(|| assert_eq!(poll(black_box(&body), &mut seen, &mut cdr), 0))
        });
        group.finish();
    }
}

/// Asterisk-shaped ids of one busy day: `epoch.sequence`.
fn ids(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| format!("{}.{}", 1_748_476_800 + i * 86_400 / n, i % 100_000))
        .collect()
}

/// The legs of those ids: the second of the day from the id's epoch, one of 8 queues.
fn legs_of(ids: &[String]) -> Vec<LegKey> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let packed = pack(id).expect("packs");
            let second = ((packed >> 31) % 86_400) as u32;
            packed_leg(packed, second, (i % 8) as u32)
        })
        .collect()
}

fn seen_set(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let ids = ids(N);
    let legs = legs_of(&ids);
    let misses = legs_of(&ids.iter().map(|id| format!("{id}9")).collect::<Vec<_>>());
    let queues: Vec<Box<str>> = (0..8).map(|q| format!("QUEUE_{q}").into()).collect();
    // Only the set's own allocations are counted (the legs above are made before).
    COUNTING.store(true, Ordering::SeqCst);
    // As a poll's plan is applied: all of its new legs at once.
    let with_day = || legs.iter().map(|leg| (leg.clone(), 20_000));
    let mut full = SeenLegs::default();
    full.insert_many(&queues, with_day());
    COUNTING.store(false, Ordering::SeqCst);
    let bytes = LIVE.load(Ordering::SeqCst);
    assert_eq!(full.len(), N as usize);
    eprintln!(
        "seen set: {N} legs hold {bytes} heap bytes, {:.1} bytes per leg",
        bytes as f64 / N as f64
    );
    let mut group = c.benchmark_group("seen_set_1M");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N));
    group.bench_function("insert", |b| {
        b.iter_batched(
            SeenLegs::default,
            |mut s| {
                s.insert_many(&queues, with_day());
                s
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("lookup_hit", |b| {
        b.iter(|| legs.iter().filter(|leg| full.contains(leg, 20_000)).count())
    });
    group.bench_function("lookup_miss", |b| {
        b.iter(|| {
            misses
                .iter()
                .filter(|leg| full.contains(leg, 20_000))
                .count()
        })
    });
    group.bench_function("expire_day", |b| {
        b.iter_batched(
            || full.clone(),
            |mut s| {
                assert_eq!(s.expire_before(20_001), N as usize);
                s
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// An exporter state with about `target` series in /metrics.
fn app_with_series(target: usize) -> (App, usize) {
    let cfg = MetricsConfig {
        max_label_values: 10_000,
        ..MetricsConfig::default()
    };
    let shared = Arc::new(SharedState::new("bench", &cfg));
    // Per queue: 6 dispositions x 4 term reasons of calls, two histograms and a last-call
    // gauge (about 54 series); per agent, two counters.
    let queues = target / 70 + 1;
    let agents = target / 7;
    let mut rows = Vec::new();
    for q in 0..queues {
        for d in 0..6 {
            for t in 0..4 {
                let i = rows.len();
                rows.push(Row {
                    uniq1: Some(Cow::Owned(format!("1748500000.{i}"))),
                    call_date: Some(Cow::Borrowed("2025-05-29 10:00:00")),
                    enter_on_queue: None,
                    queue: Some(Cow::Owned(format!("QUEUE_{q}"))),
                    agent: Some(Cow::Owned(format!("agent{:05}", i % agents.max(1)))),
                    campaign: Some(Cow::Owned(format!("CAMPAIGN_{}", q % 4))),
                    disposition: Some(Cow::Owned(format!("DISPO_{d}"))),
                    term_reason: Some(Cow::Owned(format!("TERM_{t}"))),
                    queue_time: Num::Value((i % 300) as f64),
                    call_duration: Num::Value((i % 900) as f64),
                });
            }
        }
    }
    let call = CountsNow {
        started: None,
        ended: None,
        outcome: Outcome::Answered,
        first_leg: true,
        talk_seconds: Some(60.0),
        duration_below_queue_time: false,
        today: true,
        new_call_today: true,
    };
    {
        let cdr = &mut shared.write().cdr;
        for row in &rows {
            cdr.count_row(row, call);
        }
    }
    let clock = Arc::new(ManualClock::new(NOW.parse().expect("now")));
    let collector = CdrCollector::new(shared).expect("collector");
    let targets = Arc::new(Targets::new(vec![Arc::new(collector)]));
    let app = App::new(targets, "/metrics", None, clock);
    let series = String::from_utf8(app.encode())
        .expect("utf8")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    (app, series)
}

fn metrics_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics_encode");
    for target in [1_000, 10_000, 50_000] {
        let (app, series) = app_with_series(target);
        eprintln!(
            "metrics_encode {target}: {series} series, {} bytes",
            app.encode().len()
        );
        group.throughput(Throughput::Elements(series as u64));
        group.bench_function(format!("{}k_series", target / 1000), |b| {
            b.iter(|| app.encode().len())
        });
    }
    group.finish();
}

criterion_group!(benches, ingest, seen_set, metrics_encode);

/// Without the timings: the 100k body's first poll and then `INGEST_STEADY_POLLS` steady polls,
/// once each, for an instruction count that does not depend on the machine's load (the
/// difference between two counts divided by the difference of their polls is one poll):
///
///   INGEST_STEADY_POLLS=3 valgrind --tool=callgrind target/release/deps/ingest-<hash>
fn count_instructions(steady_polls: u32) {
    let body = body(118.0);
    let mut seen = deduper();
    let mut cdr = CdrAggregates::new(&MetricsConfig::default());
    let counted = poll(&body, &mut seen, &mut cdr);
    for _ in 0..steady_polls {
        assert_eq!(poll(&body, &mut seen, &mut cdr), 0);
    }
    eprintln!("first poll counted {counted}; {steady_polls} steady polls");
}

fn main() {
    match std::env::var("INGEST_STEADY_POLLS") {
        Ok(n) => count_instructions(n.parse().expect("a number of polls")),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
