//! What the agents-needed figures cost: one queue's Erlang C and Erlang A search (every poll
//! makes one per queue with enough legs), from 10 to 1,000 Erlangs.
//!
//!   cargo bench --bench staffing
//!
//! Handle time 180 s, patience 120 s, 80 % within 20 s.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use crocodial_exporter::metrics::staffing::{agents_required, Model, Queue};

fn staffing(c: &mut Criterion) {
    let mut group = c.benchmark_group("agents_required");
    for load in [10.0, 100.0, 1000.0] {
        let q = Queue {
            arrivals_per_second: load / 180.0,
            service_rate: 1.0 / 180.0,
            abandon_rate: 1.0 / 120.0,
        };
        for model in Model::ALL {
            group.bench_with_input(BenchmarkId::new(model.as_str(), load), &q, |b, q| {
                b.iter(|| agents_required(model, black_box(*q), 20.0, 0.8))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, staffing);
criterion_main!(benches);
