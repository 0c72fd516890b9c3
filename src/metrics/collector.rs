//! Emits the exporter's aggregates as const metrics at scrape time (the pattern of Go exporters'
//! collectors): no per-row work happens in a registry, and the aggregates stay plain data.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, Metric, MetricFamily, MetricType};

use super::aggregates::{Histogram, Label, LiveKey};
use super::health::RecoveryReason;
use super::SharedState;
use crate::api::{Reason, SUMMARY_FIELDS};
use crate::vocab::{DropReason, RejectReason};
use crate::vocab::{LiveState, Outcome};

/// The outcomes of `crocodial_cdr_rows_total`.
pub const ROW_OUTCOMES: [&str; 4] = ["new", "duplicate", "pending", "rejected"];

/// Name, help, type and label names of every family this collector emits (campaign summary
/// gauges are added from [`SUMMARY_FIELDS`]).
const FAMILIES: &[(&str, &str, MetricType, &[&str])] = &[
    ("crocodial_inbound_calls_total", "Inbound calls counted once each when final, by queue, campaign, disposition and term reason.", MetricType::COUNTER, &["target", "queue", "campaign", "disposition", "term_reason"]),
    ("crocodial_inbound_queue_time_seconds", "Seconds callers waited in queue (queue_time) of counted calls, by outcome (answered, abandoned, other).", MetricType::HISTOGRAM, &["target", "queue", "campaign", "outcome"]),
    ("crocodial_inbound_call_duration_seconds", "Seconds of call (call_duration) of counted calls, by outcome (answered, abandoned, other).", MetricType::HISTOGRAM, &["target", "queue", "campaign", "outcome"]),
    ("crocodial_inbound_agent_calls_total", "Answered calls each agent handled (counted once each when final).", MetricType::COUNTER, &["target", "agent"]),
    ("crocodial_inbound_agent_call_duration_seconds_total", "Seconds of call of the answered calls each agent handled.", MetricType::COUNTER, &["target", "agent"]),
    ("crocodial_inbound_last_call_timestamp_seconds", "Start (call_date) of the newest counted call of each queue, Unix time.", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_label_overflow_total", "Values replaced by __other__ because a label reached --metrics.max-label-values distinct values.", MetricType::COUNTER, &["target", "label"]),
    ("crocodial_up", "1 if the last poll of the API succeeded, else 0.", MetricType::GAUGE, &["target"]),
    ("crocodial_last_poll_success_timestamp_seconds", "End of the last successful poll, Unix time (0 before the first).", MetricType::GAUGE, &["target"]),
    ("crocodial_poll_duration_seconds", "Duration of polls of the API, request and processing.", MetricType::HISTOGRAM, &["target"]),
    ("crocodial_polls_total", "Polls of the API, successful or not.", MetricType::COUNTER, &["target"]),
    ("crocodial_poll_errors_total", "Failed polls of the API, by reason.", MetricType::COUNTER, &["target", "reason"]),
    ("crocodial_cdr_rows_total", "CDR rows received, by outcome: new (counted), duplicate (already counted), pending (not final yet), rejected.", MetricType::COUNTER, &["target", "outcome"]),
    ("crocodial_cdr_rows_rejected_total", "CDR rows rejected, by reason.", MetricType::COUNTER, &["target", "reason"]),
    ("crocodial_dedup_entries", "Call ids remembered as counted (the seen set).", MetricType::GAUGE, &["target"]),
    ("crocodial_cdr_pending_entries", "Calls seen in progress and not counted yet.", MetricType::GAUGE, &["target"]),
    ("crocodial_api_response_bytes", "Size of the last API response body.", MetricType::GAUGE, &["target"]),
    ("crocodial_api_warnings_total", "Successful answers that had PHP notices or other text around the JSON.", MetricType::COUNTER, &["target"]),
    ("crocodial_exporter_build_info", "Version and git revision of the exporter; always 1.", MetricType::GAUGE, &["version", "revision"]),
    ("crocodial_state_recoveries_total", "State files found unusable, moved aside and started afresh, by reason.", MetricType::COUNTER, &["target", "reason"]),
    ("crocodial_state_gaps_total", "Restarts after a downtime that reached past the query window: calls before the window were not counted.", MetricType::COUNTER, &["target"]),
    ("crocodial_poll_backoff_seconds", "Wait before the next poll while backing off after failures; 0 when polls succeed.", MetricType::GAUGE, &["target"]),
    ("crocodial_poll_consecutive_failures", "Failed polls since the last success.", MetricType::GAUGE, &["target"]),
    ("crocodial_state_last_downtime_seconds", "How long the exporter was down before this process resumed from its state file.", MetricType::GAUGE, &["target"]),
    ("crocodial_inbound_calls_in_progress", "Calls in progress at the last successful poll: callers waiting in queue, or talking to an agent.", MetricType::GAUGE, &["target", "queue", "campaign", "state"]),
    ("crocodial_cdr_calls_dropped_total", "Calls seen in progress that left without ever being counted, by reason: vanished (their rows left the answer), left_window (their day left the query window).", MetricType::COUNTER, &["target", "reason"]),
    ("crocodial_inbound_oldest_wait_seconds", "How long the longest-waiting caller now in queue had waited at the last successful poll; 0 when nobody waits.", MetricType::GAUGE, &["target", "queue"]),
];

/// The git revision the binary was built from (see build.rs).
pub const REVISION: &str = env!("CROCODIAL_REVISION");

/// The collector of everything in [`SharedState`].
pub struct CdrCollector {
    shared: Arc<SharedState>,
    descs: Vec<Desc>,
}

impl CdrCollector {
    pub fn new(shared: Arc<SharedState>) -> prometheus::Result<Self> {
        let mut descs = Vec::new();
        for (name, help, _, labels) in FAMILIES {
            descs.push(Desc::new(
                (*name).to_string(),
                (*help).to_string(),
                labels.iter().map(|l| (*l).to_string()).collect(),
                HashMap::new(),
            )?);
        }
        for (field, help) in SUMMARY_FIELDS {
            let (name, help) = summary_name_help(field, help);
            descs.push(Desc::new(
                name,
                help,
                vec!["target".into(), "campaign".into()],
                HashMap::new(),
            )?);
        }
        Ok(Self { shared, descs })
    }
}

fn summary_name_help(field: &str, help: &str) -> (String, String) {
    (
        format!("crocodial_campaign_{field}"),
        format!("Campaign summary of the last poll: {help}"),
    )
}

/// A map's entries in the order of their label ids (the order values were first seen): the same
/// order on every scrape, sorted by integers rather than by label strings (see
/// [`crate::server::App::encode`]).
fn sorted<K: Ord + Copy, V, S>(map: &HashMap<K, V, S>) -> Vec<(K, &V)> {
    let mut entries: Vec<(K, &V)> = map.iter().map(|(&k, v)| (k, v)).collect();
    entries.sort_unstable_by_key(|&(k, _)| k);
    entries
}

fn family(index: usize, metrics: Vec<Metric>) -> MetricFamily {
    let (name, help, kind, _) = FAMILIES[index];
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_string());
    mf.set_help(help.to_string());
    mf.set_field_type(kind);
    mf.set_metric(metrics);
    mf
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(n, v)| {
            let mut lp = LabelPair::default();
            lp.set_name((*n).to_string());
            lp.set_value((*v).to_string());
            lp
        })
        .collect()
}

fn counter(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut c = proto::Counter::default();
    c.set_value(value);
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_label(labels(pairs));
    m.set_gauge(g);
    m
}

fn histogram(pairs: &[(&str, &str)], bounds: &[f64], h: &Histogram) -> Metric {
    let mut cumulative = 0;
    let buckets = bounds
        .iter()
        .zip(h.counts.iter())
        .map(|(&bound, &n)| {
            cumulative += n;
            let mut b = proto::Bucket::default();
            b.set_upper_bound(bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut p = proto::Histogram::default();
    p.set_sample_count(h.count);
    p.set_sample_sum(h.sum);
    p.set_bucket(buckets);
    let mut m = Metric::from_label(labels(pairs));
    m.set_histogram(p);
    m
}

impl Collector for CdrCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let target = self.shared.target();
        let t = ("target", target);
        let state = self.shared.read();
        let (cdr, health) = (&state.cdr, &state.health);
        let l = |label: Label, id: u32| cdr.label(label, id);

        let calls = sorted(&cdr.calls)
            .into_iter()
            .map(|([q, c, d, r], &n)| {
                counter(
                    &[
                        t,
                        ("queue", l(Label::Queue, q)),
                        ("campaign", l(Label::Campaign, c)),
                        ("disposition", l(Label::Disposition, d)),
                        ("term_reason", l(Label::TermReason, r)),
                    ],
                    n as f64,
                )
            })
            .collect();
        // Every queue and campaign with calls, counted or in progress, shows all three outcomes
        // (empty until the first call), so that rate() sees the first call of each.
        let pairs: std::collections::BTreeSet<[u32; 2]> = cdr
            .calls
            .keys()
            .map(|&[q, c, ..]| [q, c])
            .chain(cdr.live.calls.keys().map(|&(q, c, _)| [q, c]))
            .collect();
        let histograms = |map: &HashMap<[u32; 3], Histogram, _>, bounds: &[f64]| {
            let empty = Histogram::new(bounds);
            let mut keys: std::collections::BTreeSet<[u32; 3]> = map.keys().copied().collect();
            for &[q, c] in &pairs {
                keys.extend(Outcome::ALL.map(|o| [q, c, o as u32]));
            }
            keys.into_iter()
                .map(|[q, c, o]| {
                    let outcome = Outcome::from_id(o).map_or("other", Outcome::as_str);
                    histogram(
                        &[
                            t,
                            ("queue", l(Label::Queue, q)),
                            ("campaign", l(Label::Campaign, c)),
                            ("outcome", outcome),
                        ],
                        bounds,
                        map.get(&[q, c, o]).unwrap_or(&empty),
                    )
                })
                .collect()
        };
        let agents = sorted(&cdr.agents);
        let agent_calls = agents
            .iter()
            .map(|&(a, totals)| counter(&[t, ("agent", l(Label::Agent, a))], totals.calls as f64))
            .collect();
        let agent_seconds = agents
            .iter()
            .map(|&(a, totals)| {
                counter(&[t, ("agent", l(Label::Agent, a))], totals.duration_seconds)
            })
            .collect();
        let last_call = sorted(&cdr.last_call)
            .into_iter()
            .map(|(q, &ts)| gauge(&[t, ("queue", l(Label::Queue, q))], ts as f64))
            .collect();
        let overflow = Label::ALL
            .iter()
            .map(|&label| {
                counter(
                    &[t, ("label", label.as_str())],
                    cdr.label_overflow[label as usize] as f64,
                )
            })
            .collect();
        let errors = Reason::ALL
            .iter()
            .map(|&r| {
                counter(
                    &[t, ("reason", r.as_str())],
                    health.errors[r.index()] as f64,
                )
            })
            .collect();
        let rows = &health.rows;
        let outcomes = [
            rows.new,
            rows.duplicate,
            rows.pending,
            rows.rejected_total(),
        ];
        let rows_total = ROW_OUTCOMES
            .iter()
            .zip(outcomes)
            .map(|(o, n)| counter(&[t, ("outcome", o)], n as f64))
            .collect();
        let rejected = RejectReason::ALL
            .iter()
            .map(|&r| {
                counter(
                    &[t, ("reason", r.as_str())],
                    rows.rejected[r as usize] as f64,
                )
            })
            .collect();
        // Every queue and campaign with calls shows both states, at 0 when idle.
        let mut live: std::collections::BTreeMap<LiveKey, u64> = pairs
            .iter()
            .flat_map(|&[q, c]| LiveState::ALL.map(|s| ((q, c, s), 0)))
            .collect();
        live.extend(cdr.live.calls.iter().map(|(&k, &n)| (k, n)));
        let in_progress = live
            .into_iter()
            .map(|((q, c, state), n)| {
                gauge(
                    &[
                        t,
                        ("queue", l(Label::Queue, q)),
                        ("campaign", l(Label::Campaign, c)),
                        ("state", state.as_str()),
                    ],
                    n as f64,
                )
            })
            .collect();
        // Every known queue has a longest wait: 0 where nobody waits.
        let oldest_wait = (0..cdr.labels[Label::Queue as usize].len() as u32)
            .map(|q| {
                let waited = cdr.live.oldest_wait.get(&q).copied().unwrap_or(0.0);
                gauge(&[t, ("queue", l(Label::Queue, q))], waited)
            })
            .collect();
        let last_success = health
            .last_success
            .map_or(0.0, |ts| ts.as_millisecond() as f64 / 1000.0);

        let mut families = vec![
            family(0, calls),
            family(1, histograms(&cdr.queue_time, &cdr.queue_time_bounds)),
            family(2, histograms(&cdr.call_duration, &cdr.call_duration_bounds)),
            family(3, agent_calls),
            family(4, agent_seconds),
            family(5, last_call),
            family(6, overflow),
            family(7, vec![gauge(&[t], f64::from(u8::from(health.up)))]),
            family(8, vec![gauge(&[t], last_success)]),
            family(
                9,
                vec![histogram(
                    &[t],
                    super::health::POLL_DURATION_BUCKETS,
                    &health.poll_duration,
                )],
            ),
            family(10, vec![counter(&[t], health.polls as f64)]),
            family(11, errors),
            family(12, rows_total),
            family(13, rejected),
            family(14, vec![gauge(&[t], health.dedup_entries as f64)]),
            family(15, vec![gauge(&[t], health.pending_entries as f64)]),
            family(16, vec![gauge(&[t], health.response_bytes as f64)]),
            family(17, vec![counter(&[t], health.api_warnings as f64)]),
            family(
                18,
                vec![gauge(
                    &[
                        ("version", env!("CARGO_PKG_VERSION")),
                        ("revision", REVISION),
                    ],
                    1.0,
                )],
            ),
            family(
                19,
                RecoveryReason::ALL
                    .iter()
                    .map(|&r| {
                        counter(
                            &[t, ("reason", r.as_str())],
                            health.state_recoveries[r as usize] as f64,
                        )
                    })
                    .collect(),
            ),
            family(20, vec![counter(&[t], health.state_gaps as f64)]),
            family(21, vec![gauge(&[t], health.backoff_seconds)]),
            family(
                22,
                vec![gauge(&[t], f64::from(health.consecutive_failures))],
            ),
            family(
                23,
                health
                    .last_downtime_seconds
                    .map(|s| gauge(&[t], s))
                    .into_iter()
                    .collect(),
            ),
            family(24, in_progress),
            family(
                25,
                DropReason::ALL
                    .iter()
                    .map(|&r| {
                        counter(
                            &[t, ("reason", r.as_str())],
                            rows.dropped[r as usize] as f64,
                        )
                    })
                    .collect(),
            ),
            family(26, oldest_wait),
        ];
        for (i, (field, help)) in SUMMARY_FIELDS.iter().enumerate() {
            let metrics: Vec<Metric> = cdr
                .campaign_summary
                .iter()
                .filter_map(|(campaign, values)| {
                    values[i].map(|v| gauge(&[t, ("campaign", l(Label::Campaign, *campaign))], v))
                })
                .collect();
            let (name, help) = summary_name_help(field, help);
            let mut mf = MetricFamily::default();
            mf.set_name(name);
            mf.set_help(help);
            mf.set_field_type(MetricType::GAUGE);
            mf.set_metric(metrics);
            families.push(mf);
        }
        families
    }
}
