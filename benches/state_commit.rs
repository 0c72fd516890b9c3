//! Cost of storing one poll: a commit with 1,000 new calls, with 100k and with 1M ids already
//! in the seen set; and the file size per 100k ids.
//!
//! cargo bench --bench state_commit

use std::borrow::Cow;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use crocodial_exporter::api::{Num, Row, RowEntry};
use crocodial_exporter::config::{CdrConfig, MetricsConfig};
use crocodial_exporter::ingest::dedup::{Deduper, Mode, Sorted};
use crocodial_exporter::ingest::window::Window;
use crocodial_exporter::metrics::aggregates::CdrAggregates;
use crocodial_exporter::metrics::health::Health;
use crocodial_exporter::state::{self, StateStore};
use crocodial_exporter::vocab::Plan;
use jiff::tz::TimeZone;
use jiff::Timestamp;

const NOW: &str = "2025-05-29T23:00:00Z";
/// The measured calls are on the window's first day, the seen set on the next.
const MEASURED_DAY: &str = "2025-05-29";
const FILL_DAY: &str = "2025-05-30";

/// `n` final rows on `date` with ids starting at `first`, over 8 queues and 60 agents.
fn rows(date: &str, first: u64, n: u64) -> Vec<RowEntry<'static>> {
    (first..first + n)
        .map(|i| {
            RowEntry::Row(Row {
                uniq1: Some(Cow::Owned(format!("1748500000.{i}"))),
                call_date: Some(Cow::Owned(format!(
                    "{date} {:02}:{:02}:{:02}",
                    (i / 3600) % 23,
                    (i / 60) % 60,
                    i % 60
                ))),
                enter_on_queue: None,
                queue: Some(Cow::Owned(format!("Q{}", i % 8))),
                agent: Some(Cow::Owned(format!("agent{:03}", i % 60))),
                campaign: Some(Cow::Owned(format!("C{}", i % 4))),
                disposition: Some(Cow::Borrowed("Answered")),
                term_reason: Some(Cow::Borrowed("AGENT")),
                queue_time: Num::Value((i % 120) as f64),
                call_duration: Num::Value((i % 900) as f64),
            })
        })
        .collect()
}

struct Bed {
    store: state::Store,
    deduper: Deduper,
    cdr: CdrAggregates,
    health: Health,
    window: Window,
    now: Timestamp,
    next: u64,
    path: std::path::PathBuf,
}

impl Bed {
    fn new(name: &str) -> Bed {
        let dir = std::env::temp_dir().join(format!("croco-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("state.db");
        let cfg = MetricsConfig::default();
        let now: Timestamp = NOW.parse().expect("now");
        let opened = state::open(&path, "bench", &cfg, now).expect("open");
        let mut cdr = CdrAggregates::new(&cfg);
        cdr.track_changes();
        Bed {
            store: opened.store.expect("store"),
            deduper: Deduper::new(
                &CdrConfig {
                    in_progress_dispositions: vec![],
                    ..CdrConfig::default()
                },
                TimeZone::UTC,
            ),
            cdr,
            health: Health::default(),
            window: Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC),
            now,
            next: 0,
            path,
        }
    }

    /// Counts and stores `n` new calls of `date`; returns the time of the commit alone.
    fn poll(&mut self, date: &str, n: u64) -> Duration {
        let rows = rows(date, self.next, n);
        self.next += n;
        // As the poller does it: each row through the planner, counted if it counts now.
        let mut planner = self.deduper.planner(&self.window, self.now, Mode::Count);
        for entry in &rows {
            if let (RowEntry::Row(row), Sorted::Counts(call)) =
                (entry, planner.sort(&self.deduper, entry))
            {
                self.cdr.count_row(row, call);
            }
        }
        let plan = planner.finish(&self.deduper, 0);
        let t = Instant::now();
        self.store
            .commit(Some(&plan), &self.cdr, &self.health)
            .expect("commit");
        let took = t.elapsed();
        self.cdr.clear_changes();
        self.deduper.apply(&plan);
        took
    }

    /// The seen set: `ids` calls of the day after the measured ones.
    fn fill(&mut self, ids: u64) {
        while self.next < ids {
            self.poll(FILL_DAY, 100_000.min(ids - self.next));
        }
    }

    /// Forgets the measured day again (not measured), so every sample sees the same seen set.
    fn forget_measured(&mut self) {
        let plan = Plan {
            expire_before: Some(self.window.start_day() + 1),
            ..Plan::default()
        };
        self.store
            .commit(Some(&plan), &self.cdr, &self.health)
            .expect("expire");
        self.deduper.apply(&plan);
    }
}

fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_commit_1k_new_rows");
    group.sample_size(30);
    for seen in [100_000u64, 1_000_000] {
        let mut bed = Bed::new(&format!("seen{seen}"));
        bed.fill(seen);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{seen}_seen")),
            &seen,
            |b, _| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let took = bed.poll(MEASURED_DAY, 1_000);
                            bed.forget_measured();
                            took
                        })
                        .sum()
                });
            },
        );
        // What a restart would restore: the seen set stayed at its size.
        let Bed { store, path, .. } = bed;
        drop(store);
        let now: Timestamp = NOW.parse().expect("now");
        let opened = state::open(&path, "bench", &MetricsConfig::default(), now).expect("reopen");
        let restored = opened.restored.expect("state");
        assert_eq!(
            restored.remembered.legs.len() as u64,
            seen,
            "the seen set stayed at its size"
        );
    }
    group.finish();
    // File size: a fresh file filled with 100k ids, then with 1M.
    let mut bed = Bed::new("size");
    for ids in [100_000u64, 1_000_000] {
        bed.fill(ids);
        let size = std::fs::metadata(&bed.path).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "state file with {ids} seen ids: {size} bytes ({:.1} bytes per id, {:.2} MB per 100k ids)",
            size as f64 / ids as f64,
            size as f64 / ids as f64 * 100_000.0 / 1e6
        );
    }
}

criterion_group!(benches, commit);
criterion_main!(benches);
