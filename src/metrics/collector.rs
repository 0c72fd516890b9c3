//! Emits the exporter's aggregates as const metrics at scrape time (the pattern of Go exporters'
//! collectors): no per-row work happens in a registry, and the aggregates stay plain data.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, Metric, MetricFamily, MetricType};

use super::aggregates::{AgentTotals, Histogram, Label, LiveKey, QueueKey, SeriesKey, TodayQueue};
use super::health::RecoveryReason;
use super::staffing::{Figures, Model};
use super::{CdrAggregates, Health, SharedState, State};
use crate::api::SUMMARY_FIELDS;
use crate::clock::JumpDirection;
use crate::config::QueueTarget;
use crate::vocab::Reason;
use crate::vocab::{DropReason, RejectReason};
use crate::vocab::{LiveState, Outcome};

/// The results of `crocodial_cdr_rows_total` (the `result` label: what became of a row, not how
/// a call ended, which is `outcome` elsewhere).
pub const ROW_RESULTS: [&str; 4] = ["new", "duplicate", "pending", "rejected"];

/// Name, help, type and label names of every family this collector emits (campaign summary
/// gauges are added from [`SUMMARY_FIELDS`]).
const FAMILIES: &[(&str, &str, MetricType, &[&str])] = &[
    ("crocodial_inbound_calls_total", "Inbound call legs (a call's row in one queue; a transfer adds a leg) counted once each when final, by queue, campaign, disposition and term reason.", MetricType::COUNTER, &["target", "queue", "campaign", "disposition", "term_reason"]),
    ("crocodial_inbound_queue_time_seconds", "Seconds callers waited in queue (queue_time) of counted legs, by outcome (answered, abandoned, timed_out, other).", MetricType::HISTOGRAM, &["target", "queue", "campaign", "outcome"]),
    ("crocodial_inbound_call_duration_seconds", "Seconds of call as the platform reports it (call_duration, from queue entry to hang-up) of counted legs, by outcome (answered, abandoned, timed_out, other).", MetricType::HISTOGRAM, &["target", "queue", "campaign", "outcome"]),
    ("crocodial_inbound_agent_calls_total", "Answered legs each agent handled (counted once each when final).", MetricType::COUNTER, &["target", "agent"]),
    ("crocodial_inbound_agent_talk_time_seconds_total", "Talk time (call_duration - queue_time) of the answered legs each agent handled.", MetricType::COUNTER, &["target", "agent"]),
    ("crocodial_inbound_last_call_timestamp_seconds", "Start (call_date) of the newest counted leg of each queue, Unix time.", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_label_overflow_total", "Values replaced by __other__ because a label reached --metrics.max-label-values distinct values.", MetricType::COUNTER, &["target", "label"]),
    ("crocodial_up", "1 if the last poll of the API succeeded, else 0.", MetricType::GAUGE, &["target"]),
    ("crocodial_last_poll_success_timestamp_seconds", "End of the last successful poll, Unix time (0 before the first).", MetricType::GAUGE, &["target"]),
    ("crocodial_poll_duration_seconds", "Duration of polls of the API, request and processing.", MetricType::HISTOGRAM, &["target"]),
    ("crocodial_polls_total", "Polls of the API, successful or not.", MetricType::COUNTER, &["target"]),
    ("crocodial_poll_errors_total", "Failed polls of the API, by reason.", MetricType::COUNTER, &["target", "reason"]),
    ("crocodial_cdr_rows_total", "CDR rows received, by result: new (counted), duplicate (already counted), pending (not final yet), rejected.", MetricType::COUNTER, &["target", "result"]),
    ("crocodial_cdr_rows_rejected_total", "CDR rows rejected, by reason.", MetricType::COUNTER, &["target", "reason"]),
    ("crocodial_dedup_entries", "Legs remembered as counted or marked seen (the seen set), and call ids a state file from before legs remembered.", MetricType::GAUGE, &["target"]),
    ("crocodial_cdr_pending_entries", "Legs seen in progress and not counted yet.", MetricType::GAUGE, &["target"]),
    ("crocodial_api_response_bytes", "Size of the last API response body.", MetricType::GAUGE, &["target"]),
    ("crocodial_api_warnings_total", "Successful answers that had PHP notices or other text around the JSON, or invalid UTF-8 replaced.", MetricType::COUNTER, &["target"]),
    ("crocodial_exporter_build_info", "Version and git revision of the exporter; always 1.", MetricType::GAUGE, &["version", "revision"]),
    ("crocodial_state_recoveries_total", "State files found unusable at a start (moved aside, counting started afresh), or deleted or replaced under the running exporter (written anew from memory, nothing lost), by reason.", MetricType::COUNTER, &["target", "reason"]),
    ("crocodial_state_gaps_total", "Restarts after a downtime that reached past the query window: calls before the window were not counted.", MetricType::COUNTER, &["target"]),
    ("crocodial_poll_backoff_seconds", "Wait before the next poll while backing off after failures; 0 when polls succeed.", MetricType::GAUGE, &["target"]),
    ("crocodial_poll_consecutive_failures", "Failed polls since the last success.", MetricType::GAUGE, &["target"]),
    ("crocodial_state_last_downtime_seconds", "How long the exporter was down before this process resumed from its state file.", MetricType::GAUGE, &["target"]),
    ("crocodial_inbound_calls_in_progress", "Calls in progress at the last successful poll, once per queue: callers waiting in queue (ringing included), talking to an agent, or gone while the agent wraps up.", MetricType::GAUGE, &["target", "queue", "campaign", "state"]),
    ("crocodial_cdr_calls_dropped_total", "Calls seen in progress that left without ever being counted, by reason: vanished (their rows left the answer), left_window (their day left the query window).", MetricType::COUNTER, &["target", "reason"]),
    ("crocodial_inbound_oldest_wait_seconds", "How long the longest-waiting caller now in queue had waited at the last successful poll; 0 when nobody waits.", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_inbound_talk_time_seconds", "Talk time (call_duration - queue_time) of answered legs.", MetricType::HISTOGRAM, &["target", "queue", "campaign"]),
    ("crocodial_inbound_unique_calls_total", "Distinct calls (uniq1) counted: a transferred call once, however many legs it has.", MetricType::COUNTER, &["target"]),
    ("crocodial_cdr_duration_below_queue_time_total", "Answered legs whose call_duration was below their queue_time, counted with talk time 0 (see --cdr.call-duration-includes-queue-time).", MetricType::COUNTER, &["target"]),
    ("crocodial_cdr_future_rows_total", "Legs counted whose call_date was more than 5 minutes ahead of the dialer's clock as computed from --api.timezone.", MetricType::COUNTER, &["target"]),
    ("crocodial_poll_interval_seconds", "The configured poll interval (--poll.interval).", MetricType::GAUGE, &["target"]),
    ("crocodial_inbound_oldest_wait_start_timestamp_seconds", "When the longest-waiting caller now in queue entered it, Unix time; only queues with a caller waiting at the last successful poll.", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_inbound_legs_total", "Inbound call legs counted once each, by outcome (answered, abandoned, timed_out, unfinished: offered; other: never queued), whether or not their queue_time and call_duration read.", MetricType::COUNTER, &["target", "queue", "campaign", "outcome"]),
    ("crocodial_inbound_agent_talk_time_calls_total", "Answered legs each agent handled whose talk time is known: the legs of crocodial_inbound_agent_talk_time_seconds_total.", MetricType::COUNTER, &["target", "agent"]),
    ("crocodial_inbound_today_legs", "Legs of the dialer's day so far (call_date on the dialer's date; 0 from its midnight), by outcome, as the platform's report of the day counts them.", MetricType::GAUGE, &["target", "queue", "campaign", "outcome"]),
    ("crocodial_inbound_today_answered_within_threshold_legs", "Answered legs of the dialer's day whose queue_time is within their queue's service-level threshold (crocodial_queue_service_level_threshold_seconds).", MetricType::GAUGE, &["target", "queue", "campaign"]),
    ("crocodial_inbound_today_answered_queue_time_seconds", "Sum of queue_time of the dialer's day's answered legs that have one (ASA = this / ..._answered_queue_time_legs).", MetricType::GAUGE, &["target", "queue", "campaign"]),
    ("crocodial_inbound_today_answered_queue_time_legs", "Answered legs of the dialer's day with a readable queue_time.", MetricType::GAUGE, &["target", "queue", "campaign"]),
    ("crocodial_inbound_today_talk_time_seconds", "Sum of talk time (call_duration - queue_time) of the dialer's day's answered legs whose talk time is known (AHT = this / ..._talk_time_legs).", MetricType::GAUGE, &["target", "queue", "campaign"]),
    ("crocodial_inbound_today_talk_time_legs", "Answered legs of the dialer's day whose talk time is known.", MetricType::GAUGE, &["target", "queue", "campaign"]),
    ("crocodial_inbound_today_calls", "Distinct calls (uniq1) of the dialer's day so far.", MetricType::GAUGE, &["target"]),
    ("crocodial_inbound_today_start_timestamp_seconds", "When the dialer's day of the crocodial_inbound_today_* figures began (its midnight in --api.timezone), Unix time.", MetricType::GAUGE, &["target"]),
    ("crocodial_inbound_staffing_arrivals_per_second", "Legs that entered the queue per second over the staffing window (--staffing.window, 30 minutes by default; not before the dialer's midnight for a process started since, from a third of the window on), whatever became of them; absent with fewer than 20 such legs or 10 answered.", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_inbound_staffing_handle_time_seconds", "Mean talk time of the answered legs that ended in the staffing window.", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_inbound_staffing_patience_seconds", "Callers' mean patience over the staffing window: the seconds all its callers waited divided by its abandons (absent with fewer than 5 abandons).", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_inbound_staffing_offered_load_erlangs", "Offered load over the staffing window: arrivals per second times the handle time.", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_inbound_agents_required", "Fewest agents for which the queue answers its service-level goal's share of its offered legs within its threshold (crocodial_queue_service_level_*) under the model (erlang_c: no caller hangs up; erlang_a: callers hang up after the window's patience), from the staffing window's inputs.", MetricType::GAUGE, &["target", "queue", "model"]),
    ("crocodial_clock_jumps_total", "Jumps of this host's wall clock against its monotonic clock between two polls (or behind the previous run's last success at a restart), by direction: no seen leg is forgotten by a clock that jumped forward.", MetricType::COUNTER, &["target", "direction"]),
    ("crocodial_inbound_answered_within_threshold_legs_total", "Answered legs whose queue_time was at most their queue's service-level threshold (crocodial_queue_service_level_threshold_seconds, as it stood when they counted), counted once each; a series for every queue and campaign with counted or in-progress legs (service level = this / offered legs).", MetricType::COUNTER, &["target", "queue", "campaign"]),
    ("crocodial_queue_service_level_threshold_seconds", "The queue's service-level threshold: an answered leg that waited at most this long meets the service level (--queue.service-level-threshold, or the targets file's queues:).", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_queue_service_level_goal_ratio", "The queue's service-level goal: the share of offered legs to answer within the threshold (--queue.service-level-goal, or the targets file's queues:).", MetricType::GAUGE, &["target", "queue"]),
    ("crocodial_queue_wait_alert_threshold_seconds", "The queue's wait that pages: CrocodialCallersWaitingLong fires when a poll finds a caller still waiting longer (--queue.wait-alert-threshold, or the targets file's queues:).", MetricType::GAUGE, &["target", "queue"]),
];

/// The family every target's collector emits alike: served once.
pub const BUILD_INFO: &str = "crocodial_exporter_build_info";

/// The git revision the binary was built from (see build.rs).
pub const REVISION: &str = env!("CROCODIAL_REVISION");

/// The collector of everything in [`SharedState`].
pub struct CdrCollector {
    shared: Arc<SharedState>,
    descs: Vec<Desc>,
}

impl CdrCollector {
    /// The state this collects.
    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

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
        format!("Campaign summary of the dialer's day (the report window is the dialer's date; absent while a poll's window reaches into the day before, after midnight): {help}"),
    )
}

/// A map's entries in the order of their label ids (the order values were first seen): the same
/// order on every scrape, sorted by integers rather than by label strings (see
/// `server::App::encode`).
fn sorted<K: Ord + Copy, V, S>(map: &HashMap<K, V, S>) -> Vec<(K, &V)> {
    let mut entries: Vec<(K, &V)> = map.iter().map(|(&k, v)| (k, v)).collect();
    entries.sort_unstable_by_key(|&(k, _)| k);
    entries
}

fn family(index: usize, metrics: Vec<Metric>) -> MetricFamily {
    let (name, help, kind, _) = FAMILIES[index];
    named_family(name.to_string(), help.to_string(), kind, metrics)
}

pub(crate) fn named_family(
    name: String,
    help: String,
    kind: MetricType,
    metrics: Vec<Metric>,
) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name);
    mf.set_help(help);
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

/// One counter per `(value, count)`, labelled with `target` and `label="value"`.
fn counters_by<'a>(
    target: (&str, &str),
    label: &str,
    counts: impl IntoIterator<Item = (&'a str, u64)>,
) -> Vec<Metric> {
    counts
        .into_iter()
        .map(|(value, n)| counter(&[target, (label, value)], n as f64))
        .collect()
}

pub(crate) fn gauge(pairs: &[(&str, &str)], value: f64) -> Metric {
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

    /// Every family of `FAMILIES` in the table's order, then the campaign summary gauges, with
    /// every value as it is.
    fn collect(&self) -> Vec<MetricFamily> {
        self.collect_for(None, None)
    }
}

impl CdrCollector {
    /// What [`Collector::collect`] gives, for a scrape by `scraper` at an instant: the series
    /// it has not been served at 0 yet are served so (see [`super::new_series`]).
    ///
    /// At `now` past the dialer's midnight, the day's figures are those of the new day (0)
    /// although no poll has run in it yet.
    pub fn collect_for(
        &self,
        now: Option<jiff::Timestamp>,
        scraper: Option<IpAddr>,
    ) -> Vec<MetricFamily> {
        let state = self.shared.read();
        // Under the read lock: a poll holds its new series under the write lock.
        let zero = match (scraper, now) {
            (Some(ip), Some(now)) => self.shared.new_series().scrape(ip, now),
            _ => HashSet::new(),
        };
        let mut scrape = Scrape::new(self.shared.target(), &state, &zero);
        scrape.now = now.map(|t| t.as_second());
        let mut families = Vec::with_capacity(self.descs.len());
        families.extend(scrape.call_families());
        families.extend(scrape.agent_families());
        families.extend(scrape.label_families());
        families.extend(scrape.poll_families());
        families.extend(scrape.row_families());
        families.extend(scrape.exporter_families());
        families.extend(scrape.live_families());
        families.extend(scrape.leg_families());
        families.extend(scrape.outcome_families());
        families.extend(scrape.today_families());
        families.extend(scrape.staffing_families());
        families.push(scrape.clock_family());
        families.extend(scrape.target_families());
        families.extend(scrape.summary_families());
        families
    }
}

/// The families of counted legs alone, at 0 where nothing counted yet: what a backfill writes
/// for each of its steps. Not the health of polls, the calls in progress, or the campaign
/// summary: those are of a moment the history cannot replay.
pub fn counted_families(target: &str, state: &State) -> Vec<MetricFamily> {
    let none = HashSet::new();
    let scrape = Scrape::new(target, state, &none);
    let [talk, unique, below, ..] = scrape.leg_families();
    let mut families = Vec::with_capacity(12);
    families.extend(scrape.call_families());
    families.extend(scrape.agent_families());
    families.extend(scrape.label_families());
    families.extend([talk, unique, below]);
    families.extend(scrape.outcome_families());
    families.extend(scrape.target_families());
    families
}

/// What one scrape reads, under the state's read lock.
struct Scrape<'a> {
    /// The `target` label, on every series but the build info.
    target: (&'static str, &'a str),
    cdr: &'a CdrAggregates,
    health: &'a Health,
    /// Every queue and campaign with calls, counted or in progress.
    pairs: BTreeSet<[u32; 2]>,
    /// Series created since this scraper's last scrape: served at 0 this time.
    zero: &'a HashSet<SeriesKey>,
    /// The scrape's instant, Unix seconds, where known.
    now: Option<i64>,
}

impl<'a> Scrape<'a> {
    fn new(target: &'a str, state: &'a State, zero: &'a HashSet<SeriesKey>) -> Self {
        let cdr = &state.cdr;
        let pairs = cdr
            .calls
            .keys()
            .map(|&[q, c, ..]| [q, c])
            .chain(cdr.live.calls.keys().map(|&(q, c, _)| [q, c]))
            .collect();
        Self {
            target: ("target", target),
            cdr,
            health: &state.health,
            pairs,
            zero,
            now: None,
        }
    }

    fn held(&self, key: SeriesKey) -> bool {
        !self.zero.is_empty() && self.zero.contains(&key)
    }

    fn label(&self, label: Label, id: u32) -> &'a str {
        self.cdr.label(label, id)
    }

    /// The labels of a series of queue `q` and campaign `c`, with `last` after them.
    fn queue_campaign_labels(
        &self,
        q: u32,
        c: u32,
        last: (&'a str, &'a str),
    ) -> [(&'a str, &'a str); 4] {
        [
            self.target,
            ("queue", self.label(Label::Queue, q)),
            ("campaign", self.label(Label::Campaign, c)),
            last,
        ]
    }

    /// Families 0 to 2: counted calls, and their queue time and call duration histograms.
    fn call_families(&self) -> [MetricFamily; 3] {
        let cdr = self.cdr;
        [
            family(0, self.calls()),
            family(
                1,
                self.outcome_histograms(
                    &cdr.queue_time,
                    &cdr.queue_time_bounds,
                    SeriesKey::QueueTime,
                ),
            ),
            family(
                2,
                self.outcome_histograms(
                    &cdr.call_duration,
                    &cdr.call_duration_bounds,
                    SeriesKey::CallDuration,
                ),
            ),
        ]
    }

    fn calls(&self) -> Vec<Metric> {
        sorted(&self.cdr.calls)
            .into_iter()
            .map(|([q, c, d, r], &n)| {
                let n = if self.held(SeriesKey::Calls([q, c, d, r])) {
                    0
                } else {
                    n
                };
                counter(
                    &[
                        self.target,
                        ("queue", self.label(Label::Queue, q)),
                        ("campaign", self.label(Label::Campaign, c)),
                        ("disposition", self.label(Label::Disposition, d)),
                        ("term_reason", self.label(Label::TermReason, r)),
                    ],
                    n as f64,
                )
            })
            .collect()
    }

    /// A histogram series per key of `map`, and per outcome of every queue and campaign with
    /// calls (empty until the first call), so that rate() sees the first call of each.
    fn outcome_histograms<S: BuildHasher>(
        &self,
        map: &HashMap<QueueKey, Histogram, S>,
        bounds: &[f64],
        series: fn(QueueKey) -> SeriesKey,
    ) -> Vec<Metric> {
        let empty = Histogram::new(bounds);
        let mut keys: BTreeSet<QueueKey> = map.keys().copied().collect();
        // Unfinished legs enter no histogram.
        let outcomes = Outcome::ALL
            .into_iter()
            .filter(|&o| o != Outcome::Unfinished);
        for &[q, c] in &self.pairs {
            keys.extend(outcomes.clone().map(|o| [q, c, o as u32]));
        }
        keys.into_iter()
            .map(|[q, c, o]| {
                let outcome = Outcome::from_id(o).map_or("other", Outcome::as_str);
                histogram(
                    &self.queue_campaign_labels(q, c, ("outcome", outcome)),
                    bounds,
                    map.get(&[q, c, o])
                        .filter(|_| !self.held(series([q, c, o])))
                        .unwrap_or(&empty),
                )
            })
            .collect()
    }

    /// Families 3 and 4: each agent's answered legs and their talk time.
    fn agent_families(&self) -> [MetricFamily; 2] {
        let agents = sorted(&self.cdr.agents);
        let per_agent = |value: fn(&AgentTotals) -> f64| -> Vec<Metric> {
            agents
                .iter()
                .map(|&(a, totals)| {
                    let value = if self.held(SeriesKey::Agent(a)) {
                        0.0
                    } else {
                        value(totals)
                    };
                    counter(
                        &[self.target, ("agent", self.label(Label::Agent, a))],
                        value,
                    )
                })
                .collect()
        };
        [
            family(3, per_agent(|totals| totals.calls as f64)),
            family(4, per_agent(|totals| totals.talk_seconds)),
        ]
    }

    /// Families 5 and 6: the newest counted call of each queue, and the label values that
    /// overflowed.
    fn label_families(&self) -> [MetricFamily; 2] {
        let t = self.target;
        let last_call = sorted(&self.cdr.last_call)
            .into_iter()
            .map(|(q, &ts)| gauge(&[t, ("queue", self.label(Label::Queue, q))], ts as f64))
            .collect();
        let overflow = Label::ALL
            .iter()
            .map(|&label| (label.as_str(), self.cdr.label_overflow[label as usize]));
        [
            family(5, last_call),
            family(6, counters_by(t, "label", overflow)),
        ]
    }

    /// Families 7 to 11: whether and when polls succeed, how long they take, how many fail.
    fn poll_families(&self) -> [MetricFamily; 5] {
        let (t, health) = (self.target, self.health);
        let last_success = health
            .last_success
            .map_or(0.0, |ts| ts.as_millisecond() as f64 / 1000.0);
        let errors = Reason::ALL
            .iter()
            .map(|&r| (r.as_str(), health.errors[r.index()]));
        [
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
            family(11, counters_by(t, "reason", errors)),
        ]
    }

    /// Families 12 to 17: what the polls received, rows and bytes, and what is remembered of it.
    fn row_families(&self) -> [MetricFamily; 6] {
        let (t, health) = (self.target, self.health);
        let rows = &health.rows;
        let results = [
            rows.new,
            rows.duplicate,
            rows.pending,
            rows.rejected_total(),
        ];
        let rejected = RejectReason::ALL
            .iter()
            .map(|&r| (r.as_str(), rows.rejected[r as usize]));
        [
            family(
                12,
                counters_by(t, "result", ROW_RESULTS.into_iter().zip(results)),
            ),
            family(13, counters_by(t, "reason", rejected)),
            family(14, vec![gauge(&[t], health.dedup_entries as f64)]),
            family(15, vec![gauge(&[t], health.pending_entries as f64)]),
            family(16, vec![gauge(&[t], health.response_bytes as f64)]),
            family(17, vec![counter(&[t], health.api_warnings as f64)]),
        ]
    }

    /// Families 18 to 23: the exporter's build, its state file's recoveries and gaps, its
    /// backoff, and its last downtime.
    fn exporter_families(&self) -> [MetricFamily; 6] {
        let (t, health) = (self.target, self.health);
        let build = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", REVISION),
        ];
        let held = self.held(SeriesKey::StateRecoveries);
        let recoveries = RecoveryReason::ALL.iter().map(|&r| {
            let n = if held {
                0
            } else {
                health.state_recoveries[r as usize]
            };
            (r.as_str(), n)
        });
        [
            family(18, vec![gauge(&build, 1.0)]),
            family(19, counters_by(t, "reason", recoveries)),
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
        ]
    }

    /// Families 24 to 26: the calls in progress, those dropped uncounted, and the longest waits.
    fn live_families(&self) -> [MetricFamily; 3] {
        let dropped = DropReason::ALL
            .iter()
            .map(|&r| (r.as_str(), self.health.rows.dropped[r as usize]));
        [
            family(24, self.in_progress()),
            family(25, counters_by(self.target, "reason", dropped)),
            family(26, self.oldest_wait()),
        ]
    }

    /// Every queue and campaign with calls shows both states, at 0 when idle.
    fn in_progress(&self) -> Vec<Metric> {
        let mut live: BTreeMap<LiveKey, u64> = self
            .pairs
            .iter()
            .flat_map(|&[q, c]| LiveState::ALL.map(|s| ((q, c, s), 0)))
            .collect();
        live.extend(self.cdr.live.calls.iter().map(|(&k, &n)| (k, n)));
        live.into_iter()
            .map(|((q, c, state), n)| {
                gauge(
                    &self.queue_campaign_labels(q, c, ("state", state.as_str())),
                    n as f64,
                )
            })
            .collect()
    }

    /// Every known queue has a longest wait: 0 where nobody waits.
    fn oldest_wait(&self) -> Vec<Metric> {
        let live = &self.cdr.live;
        (0..self.cdr.labels[Label::Queue as usize].len() as u32)
            .map(|q| {
                let waited = live.oldest_wait.get(&q).copied().unwrap_or(0.0);
                gauge(
                    &[self.target, ("queue", self.label(Label::Queue, q))],
                    waited,
                )
            })
            .collect()
    }

    /// Families 27 to 32: talk time, distinct calls, legs with odd durations or dates, the
    /// poll interval, and when the longest-waiting callers entered their queues.
    fn leg_families(&self) -> [MetricFamily; 6] {
        let (t, cdr, health) = (self.target, self.cdr, self.health);
        let empty = Histogram::new(&cdr.call_duration_bounds);
        let talk = self
            .pairs
            .iter()
            .map(|&[q, c]| {
                let h = cdr
                    .talk_time
                    .get(&[q, c])
                    .filter(|_| !self.held(SeriesKey::TalkTime([q, c])))
                    .unwrap_or(&empty);
                histogram(
                    &[
                        t,
                        ("queue", self.label(Label::Queue, q)),
                        ("campaign", self.label(Label::Campaign, c)),
                    ],
                    &cdr.call_duration_bounds,
                    h,
                )
            })
            .collect();
        let oldest_start = sorted(&cdr.live.oldest_wait_start)
            .into_iter()
            .map(|(q, &since)| gauge(&[t, ("queue", self.label(Label::Queue, q))], since))
            .collect();
        [
            family(27, talk),
            family(28, vec![counter(&[t], cdr.totals.unique_calls as f64)]),
            family(
                29,
                vec![counter(&[t], cdr.totals.duration_below_queue_time as f64)],
            ),
            family(30, vec![counter(&[t], health.rows.future as f64)]),
            family(31, vec![gauge(&[t], health.poll_interval_seconds)]),
            family(32, oldest_start),
        ]
    }

    /// Families 33 and 34: every leg by outcome (at 0 for each outcome of every queue and
    /// campaign with calls, as the histograms), and each agent's legs with a known talk time.
    fn outcome_families(&self) -> [MetricFamily; 2] {
        let mut keys: BTreeSet<QueueKey> = self.cdr.legs.keys().copied().collect();
        for &[q, c] in &self.pairs {
            keys.extend(Outcome::ALL.map(|o| [q, c, o as u32]));
        }
        let legs = keys
            .into_iter()
            .map(|[q, c, o]| {
                let outcome = Outcome::from_id(o).map_or("other", Outcome::as_str);
                let n = match self.cdr.legs.get(&[q, c, o]) {
                    Some(_) if self.held(SeriesKey::Legs([q, c, o])) => 0,
                    Some(&n) => n,
                    None => 0,
                };
                counter(
                    &self.queue_campaign_labels(q, c, ("outcome", outcome)),
                    n as f64,
                )
            })
            .collect();
        let timed = sorted(&self.cdr.agents)
            .into_iter()
            .map(|(a, totals)| {
                let n = if self.held(SeriesKey::Agent(a)) {
                    0
                } else {
                    totals.timed_calls
                };
                counter(
                    &[self.target, ("agent", self.label(Label::Agent, a))],
                    n as f64,
                )
            })
            .collect();
        [family(33, legs), family(34, timed)]
    }

    /// Families 35 to 42: the dialer's day so far. Gauges, never held at 0; every outcome of
    /// every queue and campaign known shows, at 0 where the day has none. Past the day's end
    /// (no poll since the dialer's midnight) they are the new day's: 0.
    fn today_families(&self) -> [MetricFamily; 8] {
        let (t, today) = (self.target, &self.cdr.today);
        let Some(_) = today.day else {
            return std::array::from_fn(|i| family(35 + i, Vec::new()));
        };
        let ended = self.now.is_some_and(|now| now >= today.end);
        let value = |n: f64| if ended { 0.0 } else { n };
        let mut pairs = self.pairs.clone();
        pairs.extend(today.legs.keys().map(|&[q, c, _]| [q, c]));
        let legs = pairs
            .iter()
            .flat_map(|&[q, c]| Outcome::ALL.map(|o| (q, c, o)))
            .map(|(q, c, o)| {
                let n = today.legs.get(&[q, c, o as u32]).copied().unwrap_or(0);
                gauge(
                    &self.queue_campaign_labels(q, c, ("outcome", o.as_str())),
                    value(n as f64),
                )
            })
            .collect();
        let per_queue = |f: fn(&TodayQueue) -> f64| -> Vec<Metric> {
            pairs
                .iter()
                .map(|&[q, c]| {
                    let n = today.queues.get(&[q, c]).map_or(0.0, f);
                    gauge(
                        &[
                            t,
                            ("queue", self.label(Label::Queue, q)),
                            ("campaign", self.label(Label::Campaign, c)),
                        ],
                        value(n),
                    )
                })
                .collect()
        };
        let start = if ended { today.end } else { today.start };
        [
            family(35, legs),
            family(36, per_queue(|q| q.answered_within_threshold as f64)),
            family(37, per_queue(|q| q.queue_time_seconds)),
            family(38, per_queue(|q| q.queue_time_legs as f64)),
            family(39, per_queue(|q| q.talk_seconds)),
            family(40, per_queue(|q| q.talk_legs as f64)),
            family(41, vec![gauge(&[t], value(today.calls as f64))]),
            family(42, vec![gauge(&[t], start as f64)]),
        ]
    }

    /// Families 43 to 47: each queue's staffing inputs and the agents it needs, where the
    /// window holds enough legs.
    fn staffing_families(&self) -> [MetricFamily; 5] {
        let figures = &self.cdr.recent.figures;
        let per_queue = |value: &dyn Fn(&Figures) -> Option<f64>| -> Vec<Metric> {
            figures
                .iter()
                .filter_map(|(q, f)| {
                    let v = value(f)?;
                    Some(gauge(
                        &[self.target, ("queue", self.label(Label::Queue, *q))],
                        v,
                    ))
                })
                .collect()
        };
        let required = figures
            .iter()
            .flat_map(|(q, f)| {
                Model::ALL
                    .iter()
                    .zip(f.agents_required)
                    .filter_map(|(m, n)| {
                        let labels = [
                            self.target,
                            ("queue", self.label(Label::Queue, *q)),
                            ("model", m.as_str()),
                        ];
                        n.map(|n| gauge(&labels, f64::from(n)))
                    })
            })
            .collect();
        [
            family(43, per_queue(&|f| Some(f.arrivals_per_second))),
            family(44, per_queue(&|f| Some(f.handle_time_seconds))),
            family(45, per_queue(&|f| f.patience_seconds)),
            family(46, per_queue(&|f| Some(f.offered_load_erlangs))),
            family(47, required),
        ]
    }

    /// Family 48: the clock's jumps, both directions at 0 until one happens.
    fn clock_family(&self) -> MetricFamily {
        let jumps = JumpDirection::ALL
            .iter()
            .map(|&d| (d.as_str(), self.health.clock_jumps[d as usize]));
        family(48, counters_by(self.target, "direction", jumps))
    }

    /// Families 49 to 52: answered within each queue's threshold (at 0 for every queue and
    /// campaign with calls), and each queue's service targets: every queue known, and every
    /// queue the configuration names.
    fn target_families(&self) -> [MetricFamily; 4] {
        let cdr = self.cdr;
        let mut pairs: BTreeSet<[u32; 2]> = cdr.answered_within.keys().copied().collect();
        pairs.extend(&self.pairs);
        let within = pairs
            .into_iter()
            .map(|[q, c]| {
                let n = match cdr.answered_within.get(&[q, c]) {
                    Some(_) if self.held(SeriesKey::AnsweredWithin([q, c])) => 0,
                    Some(&n) => n,
                    None => 0,
                };
                counter(
                    &[
                        self.target,
                        ("queue", self.label(Label::Queue, q)),
                        ("campaign", self.label(Label::Campaign, c)),
                    ],
                    n as f64,
                )
            })
            .collect();
        let known = cdr.labels[Label::Queue as usize].values();
        // `__other__` too: its calls are judged by the default targets.
        let mut queues: BTreeMap<&str, &QueueTarget> = known
            .iter()
            .map(|q| (&**q, cdr.queue_targets.get(q)))
            .collect();
        queues.extend(
            cdr.queue_targets
                .queues
                .iter()
                .map(|(q, t)| (q.as_str(), t)),
        );
        let per_queue = |value: fn(&QueueTarget) -> f64| -> Vec<Metric> {
            queues
                .iter()
                .map(|(q, t)| gauge(&[self.target, ("queue", q)], value(t)))
                .collect()
        };
        [
            family(49, within),
            family(50, per_queue(|t| t.service_level_threshold)),
            family(51, per_queue(|t| t.service_level_goal)),
            family(52, per_queue(|t| t.wait_alert_threshold)),
        ]
    }

    /// A gauge family per field of [`SUMMARY_FIELDS`], with a series per campaign that has it.
    fn summary_families(&self) -> Vec<MetricFamily> {
        SUMMARY_FIELDS
            .iter()
            .enumerate()
            .map(|(i, (field, help))| {
                let metrics = self
                    .cdr
                    .campaign_summary
                    .iter()
                    .filter_map(|(campaign, values)| {
                        values[i].map(|v| {
                            let campaign = ("campaign", self.label(Label::Campaign, *campaign));
                            gauge(&[self.target, campaign], v)
                        })
                    })
                    .collect();
                let (name, help) = summary_name_help(field, help);
                named_family(name, help, MetricType::GAUGE, metrics)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MetricsConfig;

    #[test]
    fn emits_its_families_in_the_order_and_types_it_declares() {
        let shared = Arc::new(SharedState::new("t", &MetricsConfig::default()));
        let collector = CdrCollector::new(shared).unwrap();
        let families = collector.collect();
        let descs = collector.desc();
        assert_eq!(families.len(), descs.len());
        for (i, (mf, desc)) in families.iter().zip(descs).enumerate() {
            assert_eq!(mf.name(), desc.fq_name);
            let kind = FAMILIES.get(i).map_or(MetricType::GAUGE, |f| f.2);
            assert_eq!(mf.get_field_type(), kind, "{}", desc.fq_name);
        }
    }
}
