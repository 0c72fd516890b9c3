//! The exporter's own aggregates of counted calls: plain structures keyed by interned label
//! values, emitted at scrape time by the collector (and what persistent state will store).

use std::collections::HashMap;
use std::sync::Arc;

use super::staffing::Recent;
use crate::api::{Row, SummaryRow, SUMMARY_FIELDS};
use crate::config::{MetricsConfig, QueueTarget, QueueTargets};
use crate::vocab::{CountsNow, InProgress};
use crate::vocab::{LiveState, Outcome};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The value that stands for every value of a label past `--metrics.max-label-values`.
pub const OTHER: &str = "__other__";
/// The value of a label whose field was missing or empty.
pub const UNKNOWN: &str = "unknown";

/// The labels whose values come from CDRs, each with its own bound on distinct values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Queue,
    Campaign,
    Disposition,
    TermReason,
    Agent,
}

impl Label {
    pub const ALL: [Label; 5] = [
        Label::Queue,
        Label::Campaign,
        Label::Disposition,
        Label::TermReason,
        Label::Agent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Queue => "queue",
            Label::Campaign => "campaign",
            Label::Disposition => "disposition",
            Label::TermReason => "term_reason",
            Label::Agent => "agent",
        }
    }
}

/// Interned values of one label, at most `max` of them plus [`OTHER`].
#[derive(Debug, Clone)]
pub struct LabelValues {
    values: Vec<Box<str>>,
    index: FastMap<Box<str>, u32>,
    max: usize,
    other: Option<u32>,
}

impl LabelValues {
    pub fn new(max: u32) -> Self {
        Self {
            values: Vec::new(),
            index: FastMap::default(),
            max: max as usize,
            other: None,
        }
    }

    /// The id of `value`, and whether it overflowed into [`OTHER`].
    pub fn id(&mut self, value: &str) -> (u32, bool) {
        if let Some(&id) = self.index.get(value) {
            return (id, false);
        }
        let distinct = self.values.len() - usize::from(self.other.is_some());
        if distinct < self.max {
            return (self.push(value), false);
        }
        let other = match self.other {
            Some(id) => id,
            None => {
                let id = self.push(OTHER);
                self.other = Some(id);
                id
            }
        };
        (other, true)
    }

    fn push(&mut self, value: &str) -> u32 {
        let id = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.values.push(value.into());
        self.index.insert(value.into(), id);
        id
    }

    /// Values as a previous run interned them, in id order.
    pub fn restore(values: Vec<Box<str>>, max: u32) -> Self {
        let mut l = Self::new(max);
        for v in values {
            let id = l.push(&v);
            if &*v == OTHER {
                l.other = Some(id);
            }
        }
        l
    }

    /// Every value, in id order.
    pub fn values(&self) -> &[Box<str>] {
        &self.values
    }

    pub fn get(&self, id: u32) -> &str {
        self.values.get(id as usize).map_or(OTHER, |v| v)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Bucket counts (not cumulative; the last is +Inf), sum and count of one histogram series.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub counts: Box<[u64]>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            counts: vec![0; bounds.len() + 1].into_boxed_slice(),
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, bounds: &[f64], v: f64) {
        let i = bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

/// What an agent's answered legs add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AgentTotals {
    pub calls: u64,
    pub talk_seconds: f64,
    /// The answered legs whose talk time is known (`talk_seconds` is theirs): what AHT
    /// divides by, as the queues' talk-time histogram does.
    pub timed_calls: u64,
}

/// Label ids of a `crocodial_inbound_calls_total` series: queue, campaign, disposition,
/// term_reason.
pub type CallKey = [u32; 4];
/// Label ids of a histogram series: queue, campaign, and the [`Outcome`] as its position in
/// [`Outcome::ALL`].
pub type QueueKey = [u32; 3];
/// Label ids of a queue and campaign.
pub type PairKey = [u32; 2];
/// A live gauge series: queue and campaign ids, and the state.
pub type LiveKey = (u32, u32, LiveState);

/// One series of the aggregates, for tracking what a poll changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesKey {
    Calls(CallKey),
    /// `crocodial_inbound_legs_total`: legs by queue, campaign and outcome.
    Legs(QueueKey),
    /// `crocodial_inbound_answered_within_threshold_legs_total`.
    AnsweredWithin(PairKey),
    QueueTime(QueueKey),
    CallDuration(QueueKey),
    TalkTime(PairKey),
    Agent(u32),
    LastCall(u32),
    Overflow(u8),
    /// The counters without labels of their own (see [`Totals`]).
    Totals,
    /// `crocodial_state_recoveries_total`, of health rather than of the aggregates: held at 0
    /// for each scraper's first scrape after a start that recovered its state file.
    StateRecoveries,
}

/// Counters of the target as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Distinct calls (`uniq1`) counted: a transferred call once, however many legs it has.
    pub unique_calls: u64,
    /// Answered legs whose `call_duration` was below their `queue_time` (talk time 0).
    pub duration_below_queue_time: u64,
}

/// What changed since the last [`CdrAggregates::clear_changes`]: the series touched, and how
/// many values of each label had been stored before.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub series: std::collections::HashSet<SeriesKey, foldhash::fast::FixedState>,
    pub labels_stored: [usize; Label::ALL.len()],
}

/// Everything the exporter derives from CDRs.
#[derive(Debug, Clone)]
pub struct CdrAggregates {
    pub labels: [LabelValues; Label::ALL.len()],
    pub queue_time_bounds: Vec<f64>,
    pub call_duration_bounds: Vec<f64>,
    pub agent_metrics: bool,
    pub calls: FastMap<CallKey, u64>,
    /// Every counted leg by queue, campaign and outcome: what offered is made of (the
    /// histograms hold only the legs whose values read).
    pub legs: FastMap<QueueKey, u64>,
    /// Answered legs that waited at most their queue's service-level threshold (as it stood
    /// when they counted), by queue and campaign; a series for every queue and campaign with
    /// an offered leg.
    pub answered_within: FastMap<PairKey, u64>,
    pub queue_time: FastMap<QueueKey, Histogram>,
    pub call_duration: FastMap<QueueKey, Histogram>,
    /// Talk time of answered legs, in the call-duration buckets.
    pub talk_time: FastMap<PairKey, Histogram>,
    pub agents: FastMap<u32, AgentTotals>,
    pub totals: Totals,
    /// Newest counted call start per queue, Unix seconds.
    pub last_call: FastMap<u32, i64>,
    /// The campaign summary of the last successful poll: campaign id and field values.
    pub campaign_summary: Vec<(u32, [Option<f64>; SUMMARY_FIELDS.len()])>,
    /// Values that overflowed into `__other__`, per label.
    pub label_overflow: [u64; Label::ALL.len()],
    /// The calls in progress at the last successful poll; not stored (every poll rebuilds it).
    pub live: LiveQueues,
    /// The dialer's day so far; not stored (a process's first poll rebuilds it).
    pub today: Today,
    /// The staffing window's legs per queue and the figures made of them; not stored.
    pub recent: Recent,
    /// Each queue's service targets (of the target's configuration; not stored).
    pub queue_targets: Arc<QueueTargets>,
    /// Tracked only on the copy that is stored (see [`CdrAggregates::track_changes`]).
    changes: Option<Changes>,
    /// Counter and histogram series created since the last [`CdrAggregates::take_created`]:
    /// they are served at 0 before their first value (see [`super::new_series`]).
    created: Vec<SeriesKey>,
}

impl CdrAggregates {
    pub fn new(cfg: &MetricsConfig) -> Self {
        Self {
            labels: Label::ALL.map(|_| LabelValues::new(cfg.max_label_values)),
            queue_time_bounds: cfg.queue_time_buckets.clone(),
            call_duration_bounds: cfg.call_duration_buckets.clone(),
            agent_metrics: cfg.agent_metrics,
            calls: FastMap::default(),
            legs: FastMap::default(),
            answered_within: FastMap::default(),
            queue_time: FastMap::default(),
            call_duration: FastMap::default(),
            talk_time: FastMap::default(),
            agents: FastMap::default(),
            totals: Totals::default(),
            last_call: FastMap::default(),
            campaign_summary: Vec::new(),
            label_overflow: [0; Label::ALL.len()],
            live: LiveQueues::default(),
            today: Today::default(),
            recent: Recent::default(),
            queue_targets: Arc::default(),
            changes: None,
            created: Vec::new(),
        }
    }

    /// The target's queue targets and staffing window (`--queue.*`, `queues:`,
    /// `--staffing.window`), which only a poll's counting and the collector read.
    pub fn set_queue_targets(&mut self, targets: QueueTargets, staffing_window_secs: i64) {
        self.queue_targets = Arc::new(targets);
        self.recent = Recent::new(staffing_window_secs);
    }

    /// The service targets of the queue with label id `queue`.
    pub fn queue_target(&self, queue: u32) -> &QueueTarget {
        if self.queue_targets.queues.is_empty() {
            return &self.queue_targets.default;
        }
        self.queue_targets.get(self.label(Label::Queue, queue))
    }

    /// The poll at `now` is complete: each queue's staffing figures, for its own threshold and
    /// goal.
    pub fn finish_recent(&mut self, now: jiff::Timestamp) {
        let (targets, queues) = (&self.queue_targets, &self.labels[Label::Queue as usize]);
        self.recent.finish(now, &|q| {
            let t = targets.get(queues.get(q));
            (t.service_level_threshold, t.service_level_goal)
        });
    }

    /// Answered legs with a talk time, and those of them whose `call_duration` was below their
    /// `queue_time`, counted so far.
    pub fn talk_counts(&self) -> (u64, u64) {
        let answered = self.talk_time.values().map(|h| h.count).sum();
        (answered, self.totals.duration_below_queue_time)
    }

    /// The counter and histogram series created since the last call.
    pub fn take_created(&mut self) -> Vec<SeriesKey> {
        std::mem::take(&mut self.created)
    }

    /// From now on, remember which series change, so that only those are stored.
    pub fn track_changes(&mut self) {
        self.changes = Some(Changes {
            series: Default::default(),
            labels_stored: self.labels.each_ref().map(LabelValues::len),
        });
    }

    pub fn changes(&self) -> Option<&Changes> {
        self.changes.as_ref()
    }

    /// Every series and label value is to be stored, as into a state file made anew.
    pub fn all_changed(&mut self) {
        let mut series: std::collections::HashSet<SeriesKey, foldhash::fast::FixedState> =
            Default::default();
        series.extend(self.calls.keys().map(|&k| SeriesKey::Calls(k)));
        series.extend(self.legs.keys().map(|&k| SeriesKey::Legs(k)));
        series.extend(
            self.answered_within
                .keys()
                .map(|&k| SeriesKey::AnsweredWithin(k)),
        );
        series.extend(self.queue_time.keys().map(|&k| SeriesKey::QueueTime(k)));
        series.extend(
            self.call_duration
                .keys()
                .map(|&k| SeriesKey::CallDuration(k)),
        );
        series.extend(self.talk_time.keys().map(|&k| SeriesKey::TalkTime(k)));
        series.extend(self.agents.keys().map(|&k| SeriesKey::Agent(k)));
        series.extend(self.last_call.keys().map(|&k| SeriesKey::LastCall(k)));
        series.extend(Label::ALL.map(|l| SeriesKey::Overflow(l as u8)));
        series.insert(SeriesKey::Totals);
        self.changes = Some(Changes {
            series,
            labels_stored: [0; Label::ALL.len()],
        });
    }

    /// Everything so far is stored.
    pub fn clear_changes(&mut self) {
        if self.changes.is_some() {
            self.track_changes();
        }
    }

    fn touch(&mut self, key: SeriesKey) {
        if let Some(c) = &mut self.changes {
            c.series.insert(key);
        }
    }

    fn id(&mut self, label: Label, value: Option<&str>) -> u32 {
        let (id, overflowed) = self.labels[label as usize].id(label_value(value));
        if overflowed {
            self.label_overflow[label as usize] += 1;
            self.touch(SeriesKey::Overflow(label as u8));
        }
        id
    }

    /// The id of a live row's label value: interned like a counted call's, but an overflow is
    /// not counted, since the same call shows again at every poll while in progress.
    fn live_id(&mut self, label: Label, value: Option<&str>) -> u32 {
        self.labels[label as usize].id(label_value(value)).0
    }

    pub fn label(&self, label: Label, id: u32) -> &str {
        self.labels[label as usize].get(id)
    }

    /// Adds one counted leg.
    pub fn count_row(&mut self, row: &Row<'_>, leg: CountsNow) {
        let started = leg.started.map(|t| t.as_second());
        let queue = self.id(Label::Queue, row.queue.as_deref());
        let campaign = self.id(Label::Campaign, row.campaign.as_deref());
        let disposition = self.id(Label::Disposition, row.disposition.as_deref());
        let term = self.id(Label::TermReason, row.term_reason.as_deref());
        let call_key = [queue, campaign, disposition, term];
        let calls = self.calls.entry(call_key).or_insert(0);
        *calls += 1;
        if *calls == 1 {
            self.created.push(SeriesKey::Calls(call_key));
        }
        self.touch(SeriesKey::Calls(call_key));

        let key = [queue, campaign, leg.outcome as u32];
        let legs = self.legs.entry(key).or_insert(0);
        *legs += 1;
        if *legs == 1 {
            self.created.push(SeriesKey::Legs(key));
        }
        self.touch(SeriesKey::Legs(key));
        let threshold = self.queue_target(queue).service_level_threshold;
        if leg.outcome.offered() {
            let within = leg.outcome == Outcome::Answered
                && row.queue_time.value().is_some_and(|w| w <= threshold);
            let n = self.answered_within.entry([queue, campaign]);
            let new = matches!(n, std::collections::hash_map::Entry::Vacant(_));
            let n = n.or_insert(0);
            *n += u64::from(within);
            // Held at 0 for each scraper's first scrape when it leaves 0 (see new_series): a
            // series created at 0 by an abandon may not have been scraped before this answer.
            if within && *n == 1 {
                self.created
                    .push(SeriesKey::AnsweredWithin([queue, campaign]));
            }
            if new || within {
                self.touch(SeriesKey::AnsweredWithin([queue, campaign]));
            }
        }
        if leg.today {
            self.today.count(key, row, &leg, threshold);
        }
        // An unfinished leg's values are as they stood, not final: no histogram has them.
        if leg.outcome == Outcome::Unfinished {
            return self.count_started(queue, started);
        }
        if let Some(v) = row.queue_time.value() {
            observe(
                &mut self.queue_time,
                &self.queue_time_bounds,
                key,
                v,
                &mut self.created,
                SeriesKey::QueueTime,
            );
            self.touch(SeriesKey::QueueTime(key));
        }
        if let Some(v) = row.call_duration.value() {
            observe(
                &mut self.call_duration,
                &self.call_duration_bounds,
                key,
                v,
                &mut self.created,
                SeriesKey::CallDuration,
            );
            self.touch(SeriesKey::CallDuration(key));
        }
        if let Some(v) = leg.talk_seconds {
            observe(
                &mut self.talk_time,
                &self.call_duration_bounds,
                [queue, campaign],
                v,
                &mut self.created,
                SeriesKey::TalkTime,
            );
            self.touch(SeriesKey::TalkTime([queue, campaign]));
        }
        if leg.first_leg || leg.duration_below_queue_time {
            self.totals.unique_calls += u64::from(leg.first_leg);
            self.totals.duration_below_queue_time += u64::from(leg.duration_below_queue_time);
            self.touch(SeriesKey::Totals);
        }
        self.count_started(queue, started);
        // Only a person answers: an agent named on a dropped or timed-out leg was rung, or is
        // the agent of an agent-direct queue, and took nothing.
        let agent = row
            .agent
            .as_deref()
            .map(str::trim)
            .filter(|_| leg.outcome == Outcome::Answered);
        if let (true, Some(agent)) = (self.agent_metrics, agent) {
            let agent = self.id(Label::Agent, Some(agent));
            let totals = self.agents.entry(agent).or_default();
            if totals.calls == 0 {
                self.created.push(SeriesKey::Agent(agent));
            }
            totals.calls += 1;
            if let Some(talk) = leg.talk_seconds {
                totals.talk_seconds += talk;
                totals.timed_calls += 1;
            }
            self.touch(SeriesKey::Agent(agent));
        }
    }

    /// The newest counted call start of a queue.
    fn count_started(&mut self, queue: u32, started: Option<i64>) {
        if let Some(t) = started {
            let last = self.last_call.entry(queue).or_insert(i64::MIN);
            if t > *last {
                *last = t;
                self.touch(SeriesKey::LastCall(queue));
            }
        }
    }

    /// A leg of the day counted `unfinished` that has come back final: the day's figures
    /// move it to its final outcome, as the platform's report of the day does.
    pub fn finish_today(&mut self, row: &Row<'_>, leg: CountsNow) {
        if !leg.today {
            return;
        }
        let queue = self.live_id(Label::Queue, row.queue.as_deref());
        let campaign = self.live_id(Label::Campaign, row.campaign.as_deref());
        let unfinished = [queue, campaign, Outcome::Unfinished as u32];
        let threshold = self.queue_target(queue).service_level_threshold;
        if let Some(n) = self.today.legs.get_mut(&unfinished).filter(|n| **n > 0) {
            *n -= 1;
            self.today
                .count([queue, campaign, leg.outcome as u32], row, &leg, threshold);
        }
    }

    /// Adds a leg of the dialer's day that the counters already have, or that a first poll
    /// marks seen without counting: the day's figures are whole from the first poll.
    pub fn count_today(&mut self, row: &Row<'_>, leg: CountsNow) {
        if !leg.today {
            return;
        }
        let queue = self.live_id(Label::Queue, row.queue.as_deref());
        let campaign = self.live_id(Label::Campaign, row.campaign.as_deref());
        let threshold = self.queue_target(queue).service_level_threshold;
        self.today
            .count([queue, campaign, leg.outcome as u32], row, &leg, threshold);
    }

    /// A leg counted now, or (on a process's first poll) one of the dialer's day counted
    /// before, into the staffing window of a live poll.
    pub fn count_recent(&mut self, row: &Row<'_>, leg: &CountsNow, counted_before: bool) {
        let queue = self.live_id(Label::Queue, row.queue.as_deref());
        let wait = row.queue_time.value();
        if counted_before {
            self.recent.counted_before(queue, leg, wait);
        } else {
            self.recent.count(queue, leg, wait);
        }
    }

    /// Adds one call in progress to the live queue state this poll is building.
    pub fn observe_live(&mut self, row: &Row<'_>, call: InProgress, now: jiff::Timestamp) {
        let queue = self.live_id(Label::Queue, row.queue.as_deref());
        let campaign = self.live_id(Label::Campaign, row.campaign.as_deref());
        self.live.observe(queue, campaign, call, now);
        self.recent.in_progress(queue, call.started);
    }

    /// Replaces the campaign summary with the one of the latest answer.
    pub fn set_summary(&mut self, summary: &[SummaryRow<'_>]) {
        let mut latest = Vec::with_capacity(summary.len());
        for row in summary {
            let campaign = self.id(Label::Campaign, row.campaign.as_deref());
            latest.push((campaign, row.values.map(|n| n.value())));
        }
        latest.sort_by_key(|(c, _)| *c);
        latest.dedup_by_key(|(c, _)| *c);
        self.campaign_summary = latest;
    }
}

/// Observes `v` in the histogram `key` of `map`, noting the series in `created` if it is new.
fn observe<K: Copy + Eq + std::hash::Hash>(
    map: &mut FastMap<K, Histogram>,
    bounds: &[f64],
    key: K,
    v: f64,
    created: &mut Vec<SeriesKey>,
    series: fn(K) -> SeriesKey,
) {
    let h = map.entry(key).or_insert_with(|| Histogram::new(bounds));
    if h.count == 0 {
        created.push(series(key));
    }
    h.observe(bounds, v);
}

/// The dialer's day so far, as the platform's own report of the day computes it from the same
/// rows: every leg whose `call_date` is on the dialer's date, by outcome; the answered ones'
/// wait and talk time with how many of them have each. Legs count here as they count on the
/// counters (once, final), and a process's first poll adds the day's legs that it marks seen,
/// so the figures are whole from the first poll, whenever the exporter started.
#[derive(Debug, Clone, Default)]
pub struct Today {
    /// The dialer's wall-clock day (days since 1970-01-01) of the figures.
    pub day: Option<i64>,
    /// When that day began and when it ends, Unix seconds (23 or 25 hours apart on the days
    /// of a DST change).
    pub start: i64,
    pub end: i64,
    pub legs: FastMap<QueueKey, u64>,
    pub queues: FastMap<PairKey, TodayQueue>,
    /// Distinct calls (`uniq1`) whose first leg counted is of the day.
    pub calls: u64,
}

/// The answered legs of one queue and campaign of the day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TodayQueue {
    /// Answered with `queue_time` at or below the queue's service-level threshold.
    pub answered_within_threshold: u64,
    /// Sum of `queue_time` of the answered legs that have one, and how many have.
    pub queue_time_seconds: f64,
    pub queue_time_legs: u64,
    /// Sum of the talk time of the answered legs whose talk time is known, and how many.
    pub talk_seconds: f64,
    pub talk_legs: u64,
}

impl Today {
    /// Starts the figures of `day` (from `start` to `end`) afresh, for a poll that counts the
    /// day again; else they go on.
    pub fn begin(&mut self, day: i64, start: i64, end: i64, afresh: bool) {
        if afresh {
            *self = Today {
                day: Some(day),
                start,
                end,
                ..Today::default()
            };
        }
    }

    fn count(&mut self, key: QueueKey, row: &Row<'_>, leg: &CountsNow, threshold: f64) {
        *self.legs.entry(key).or_insert(0) += 1;
        self.calls += u64::from(leg.new_call_today);
        if leg.outcome != Outcome::Answered {
            return;
        }
        let q = self.queues.entry([key[0], key[1]]).or_default();
        if let Some(wait) = row.queue_time.value() {
            q.queue_time_seconds += wait;
            q.queue_time_legs += 1;
            q.answered_within_threshold += u64::from(wait <= threshold);
        }
        if let Some(talk) = leg.talk_seconds {
            q.talk_seconds += talk;
            q.talk_legs += 1;
        }
    }
}

fn label_value(value: Option<&str>) -> &str {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(UNKNOWN)
}

/// The calls in progress, as the last successful poll saw them: how many wait, talk or wrap up
/// per queue and campaign, and the longest wait per queue.
///
/// A poll starts from [`LiveQueues::begin_poll`], which keeps every call series shown before,
/// at 0, so that a queue that empties shows 0 rather than vanishing (the collector also shows
/// 0 for every queue and campaign with counted calls).
#[derive(Debug, Clone, Default)]
pub struct LiveQueues {
    pub calls: FastMap<LiveKey, u64>,
    /// Seconds the longest-waiting caller had waited at the poll, per queue id with calls in
    /// progress (every other known queue shows 0).
    pub oldest_wait: FastMap<u32, f64>,
    /// When the longest-waiting caller entered the queue, Unix seconds, per queue with a
    /// caller waiting: the age between polls is computed at query time from it.
    pub oldest_wait_start: FastMap<u32, f64>,
}

impl LiveQueues {
    /// Zeroes every series, for a poll to fill in.
    pub fn begin_poll(&mut self) {
        self.calls.values_mut().for_each(|n| *n = 0);
        self.oldest_wait.clear();
        self.oldest_wait_start.clear();
    }

    fn observe(&mut self, queue: u32, campaign: u32, call: InProgress, now: jiff::Timestamp) {
        *self.calls.entry((queue, campaign, call.state)).or_insert(0) += 1;
        let oldest = self.oldest_wait.entry(queue).or_insert(0.0);
        if call.state == LiveState::Waiting {
            // A clock skew between the dialer and us must not show a negative wait.
            let since = call.waiting_since.unwrap_or(now).min(now);
            let waited = now.duration_since(since).as_secs_f64();
            *oldest = oldest.max(waited);
            let start = since.as_millisecond() as f64 / 1000.0;
            let earliest = self.oldest_wait_start.entry(queue).or_insert(start);
            *earliest = earliest.min(start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let bounds = [0.0, 5.0, 10.0];
        let mut h = Histogram::new(&bounds);
        for v in [0.0, 0.5, 5.0, 10.0, 10.5, 99.0] {
            h.observe(&bounds, v);
        }
        assert_eq!(&*h.counts, &[1, 2, 1, 2]);
        assert_eq!(h.count, 6);
        assert_eq!(h.sum, 125.0);
    }

    #[test]
    fn label_values_overflow_into_other() {
        let mut l = LabelValues::new(2);
        assert_eq!(l.id("a"), (0, false));
        assert_eq!(l.id("b"), (1, false));
        assert_eq!(l.id("c"), (2, true));
        assert_eq!(l.id("d"), (2, true));
        assert_eq!(l.id("a"), (0, false));
        assert_eq!(l.get(2), OTHER);
        assert_eq!(l.len(), 3);
    }
}
