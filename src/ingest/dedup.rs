//! Decides, row by row, whether a leg counts now: once per leg, only when final.
//!
//! A leg is one row of a call, the call in one queue: a transfer into another queue gives the
//! call a second row with the same `uniq1`, its own `call_date` and its own queue, and the
//! platform's own report counts each row in its queue. So a leg is keyed by `uniq1`,
//! `call_date` and `queue` (see [`crate::ingest::seen`]), and `uniq1` alone tells distinct
//! calls apart.
//!
//! Every poll re-sends the whole window, and rows change after they first appear (`QUEUE`, then
//! `INCALL`, then `DISPO` while the agent wraps up, then final). A row that is not final yet is
//! neither counted nor marked seen; it counts on the poll where it comes back final, with its
//! final values. A row still not final `max_pending` after its leg started counts as it
//! stands, so nothing waits forever.

use std::collections::{HashMap, HashSet};

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::seen::{packed_leg, text_leg, SeenLegs, MAX_QUEUES};
use super::window::{leg_instant, parse_call_date, Window, SECS_PER_DAY};
use crate::api::{LegRef, Row, RowEntry};
use crate::clock::wall_secs;
use crate::config::CdrConfig;
use crate::vocab::{
    CallId, CountsNow, DropReason, InProgress, LegKey, LiveState, Outcome, Pending, Plan,
    RejectReason, Remembered, FUTURE_TOLERANCE_SECS,
};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
type FastSet<K> = HashSet<K, foldhash::fast::FixedState>;

/// What to do with final rows nobody has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mark them seen without counting (the first poll after a start, so a restart never spikes).
    Prime,
    /// Count them.
    Count,
}

/// What one row is, for this poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sorted {
    /// Its leg counts now.
    Counts(CountsNow),
    /// Its leg counted before this poll, or is marked seen by it, and is of the dialer's day
    /// (`today`): only the day's figures take it. A first poll's legs of an earlier day too,
    /// not `today`: only the staffing window takes those.
    Today(CountsNow),
    /// Its leg is in progress and not counted yet.
    InProgress(InProgress),
    /// Counted before as `unfinished`, and final now: the day's figures take its final
    /// outcome instead (the counters keep what they counted).
    Finished(CountsNow),
    /// Counted before, primed, or rejected: only the plan's row counts show it.
    Done,
}

/// The operator's reading of rows (see [`CdrConfig`]): final or not, waiting, talking or in
/// wrap-up, the outcome and the talk time. Lists are upper-case; values are compared
/// case-insensitively.
#[derive(Debug)]
struct Rules {
    in_progress: Codes,
    waiting: Codes,
    wrapup: Codes,
    system_agents: Codes,
    /// Per outcome that evidence decides: its term reasons and its dispositions.
    evidence: [(Outcome, Codes, Codes); 3],
    duration_includes_queue_time: bool,
}

fn field<'r>(value: &'r Option<std::borrow::Cow<'_, str>>) -> &'r str {
    value.as_deref().map(str::trim).unwrap_or("")
}

/// A list of codes, compared case-insensitively. Most values a row carries are in no list
/// (`CALLER`, `Answered`...): the lengths present answer most of them without a comparison.
#[derive(Debug)]
struct Codes {
    codes: Vec<String>,
    /// Bit n is set when a code is n bytes long (n < 64); longer codes set bit 63.
    lengths: u64,
}

impl Codes {
    fn new(codes: &[String]) -> Self {
        let lengths = codes.iter().fold(0, |bits, c| bits | 1 << c.len().min(63));
        Self {
            codes: codes.to_vec(),
            lengths,
        }
    }

    fn contains(&self, value: &str) -> bool {
        self.lengths & 1 << value.len().min(63) != 0
            && self.codes.iter().any(|c| c.eq_ignore_ascii_case(value))
    }
}

/// Whether a term reason says the call has ended: the platform writes `NONE` (or nothing)
/// until the hang-up.
fn has_ended(term_reason: &str) -> bool {
    !term_reason.is_empty() && !term_reason.eq_ignore_ascii_case("NONE")
}

impl Rules {
    fn new(cdr: &CdrConfig) -> Self {
        Self {
            in_progress: Codes::new(&cdr.in_progress_dispositions),
            waiting: Codes::new(&cdr.waiting_dispositions),
            wrapup: Codes::new(&cdr.wrapup_dispositions),
            system_agents: Codes::new(&cdr.system_agents),
            evidence: [
                (
                    Outcome::Abandoned,
                    Codes::new(&cdr.abandon_term_reasons),
                    Codes::new(&cdr.abandon_dispositions),
                ),
                (
                    Outcome::TimedOut,
                    Codes::new(&cdr.timeout_term_reasons),
                    Codes::new(&cdr.timeout_dispositions),
                ),
                (
                    Outcome::Other,
                    Codes::new(&cdr.not_queued_term_reasons),
                    Codes::new(&cdr.not_queued_dispositions),
                ),
            ],
            duration_includes_queue_time: cdr.duration_includes_queue_time,
        }
    }

    /// A row is final once its disposition is, whatever its term reason says (a hang-up
    /// handler that did not run leaves `NONE` behind); a row without a disposition is final
    /// once its term reason is set.
    fn is_final(&self, row: &Row<'_>) -> bool {
        let disposition = field(&row.disposition);
        if self.in_progress.contains(disposition) {
            return false;
        }
        !disposition.is_empty() || has_ended(field(&row.term_reason))
    }

    /// How the leg ended, the evidence of the end winning over the agent field: the term
    /// reason first (the platform's own code for what ended the call), then the disposition;
    /// only then is a leg that names a person answered. A caller who hangs up while an agent's
    /// phone rings is `DROP`/`CALLER` with that agent's name, and an agent-direct queue names
    /// its agent on every row.
    fn outcome(&self, row: &Row<'_>) -> Outcome {
        let term = field(&row.term_reason);
        let disposition = field(&row.disposition);
        if let Some((outcome, ..)) = self.evidence.iter().find(|(_, t, _)| t.contains(term)) {
            return *outcome;
        }
        if let Some((outcome, ..)) = self
            .evidence
            .iter()
            .find(|(_, _, d)| d.contains(disposition))
        {
            return *outcome;
        }
        if is_person(&self.system_agents, field(&row.agent)) {
            Outcome::Answered
        } else {
            Outcome::Other
        }
    }

    /// The talk time of an answered leg, and whether its `call_duration` was below its
    /// `queue_time` (talk time 0 then). The platform measures `call_duration` from queue
    /// entry; its own report computes talk time as `call_duration - queue_time`.
    fn talk(&self, row: &Row<'_>, outcome: Outcome) -> (Option<f64>, bool) {
        // The platform writes `call_duration` at the hang-up: 0 (or nothing) on an answered
        // leg means it was not written, and a talk time of 0 would lower AHT.
        let duration = match (outcome, row.call_duration.value()) {
            (Outcome::Answered, Some(d)) if d > 0.0 => d,
            _ => return (None, false),
        };
        if !self.duration_includes_queue_time {
            return (Some(duration), false);
        }
        // Without the wait, the talk time is unknown (the duration would count the wait).
        let Some(wait) = row.queue_time.value() else {
            return (None, false);
        };
        // queue_time has two decimals and call_duration whole seconds: under a second below
        // is rounding, not a site whose duration leaves the wait out.
        (
            Some((duration - wait).max(0.0)),
            duration + DURATION_ROUNDING_SECS < wait,
        )
    }

    /// When the leg ended: `call_duration` after the caller entered the queue (after their
    /// wait, where the duration leaves the wait out). A value that does not read counts as 0.
    fn hung_up(&self, row: &Row<'_>, entered: Timestamp) -> Timestamp {
        let secs = |n: Option<f64>| n.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(0.0);
        let mut held = secs(row.call_duration.value());
        if !self.duration_includes_queue_time {
            held += secs(row.queue_time.value());
        }
        let held = SignedDuration::try_from_secs_f64(held).unwrap_or(SignedDuration::MAX);
        entered.checked_add(held).unwrap_or(Timestamp::MAX)
    }

    /// Waiting (an agent's phone may already ring), talking, or in wrap-up: the caller has
    /// hung up (the term reason is set) or the agent is choosing the disposition.
    fn live_state(&self, row: &Row<'_>) -> LiveState {
        let disposition = field(&row.disposition);
        if self.wrapup.contains(disposition) || has_ended(field(&row.term_reason)) {
            LiveState::Wrapup
        } else if self.waiting.contains(disposition) {
            LiveState::Waiting
        } else {
            LiveState::Talking
        }
    }
}

/// How far `call_duration` (whole seconds) may fall below `queue_time` (hundredths) by
/// rounding alone.
const DURATION_ROUNDING_SECS: f64 = 1.0;

/// Whether `agent` names a person: not empty, and not one of the `system_agents`.
fn is_person(system_agents: &Codes, agent: &str) -> bool {
    !agent.is_empty() && !system_agents.contains(agent)
}

/// The key of a leg: packed when the id packs, the date reads and the queue is numbered.
fn leg_key(
    call: &CallId,
    uniq1: &str,
    date: Option<DateTime>,
    call_date: &str,
    queue: &str,
    queue_number: Option<u32>,
) -> LegKey {
    match (call, date, queue_number) {
        (CallId::Packed(id), Some(dt), Some(q)) => {
            let second = wall_secs(dt).rem_euclid(SECS_PER_DAY) as u32;
            packed_leg(*id, second, q)
        }
        _ => text_leg(uniq1, call_date.trim(), queue),
    }
}

/// The wall-clock day of a readable `call_date`.
fn day_of(dt: DateTime) -> i64 {
    wall_secs(dt).div_euclid(SECS_PER_DAY)
}

/// Legs first seen in this very poll (a row sent twice, a transfer's other leg), by call: one
/// lookup says whether a leg was seen and whether its call has another.
#[derive(Debug, Default)]
struct FreshLegs {
    /// The first leg's key of each packed call.
    packed: FastMap<u64, u32>,
    /// Further legs of packed calls, rare: (call, leg).
    more: Vec<(u64, u32)>,
    text: FastSet<LegKey>,
    /// The calls of text legs.
    text_calls: FastSet<CallId>,
}

impl FreshLegs {
    fn contains(&self, key: &LegKey) -> bool {
        match (key, key.packed_call()) {
            (LegKey::Packed([.., tag]), Some(call)) => match self.packed.get(&call) {
                Some(first) => *first == *tag || self.more.contains(&(call, *tag)),
                None => false,
            },
            _ => self.text.contains(key),
        }
    }

    /// Records a leg not seen yet; whether it is the first of its call in this poll. A leg
    /// that does not `count` (its date is unreadable) makes no call seen.
    fn insert(&mut self, key: LegKey, call: &CallId, counts: bool) -> bool {
        let packed_call = match call {
            CallId::Packed(p) => Some(*p),
            CallId::Text(_) => None,
        };
        match (key.packed_call(), &key) {
            (Some(call_key), LegKey::Packed([.., tag])) => {
                let tag = *tag;
                match self.packed.entry(call_key) {
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(tag);
                        self.text_calls.is_empty() || !self.text_calls.contains(call)
                    }
                    std::collections::hash_map::Entry::Occupied(_) => {
                        self.more.push((call_key, tag));
                        false
                    }
                }
            }
            _ => {
                self.text.insert(key);
                let first_text = counts && self.text_calls.insert(call.clone());
                first_text && packed_call.is_none_or(|p| !self.packed.contains_key(&p))
            }
        }
    }
}

/// Sorts the rows of one poll, one at a time as they are decoded, into a [`Plan`].
#[derive(Debug)]
pub struct Planner {
    plan: Plan,
    fresh: FreshLegs,
    /// Legs shown in progress in this poll: a caller counts once per queue they are in.
    live: FastSet<LegKey>,
    /// Legs pending before this poll whose rows are in this answer.
    present: FastSet<LegKey>,
    /// The numbers of [`Plan::new_queues`].
    new_queue_numbers: FastMap<Box<str>, u32>,
    /// Rows dated before it are rejected: the window's start, or the first day still
    /// remembered when that is later (a clock stepped back, or a zone moved west, asks again
    /// for days whose legs were forgotten: counting them would count them twice).
    window_start: i64,
    /// The days the answer holds, from the first on; `None`: every later day too. Pending legs
    /// of other days are not judged by it (see [`Window::open_ended`]).
    answered_days: (i64, Option<i64>),
    today: i64,
    now: Timestamp,
    mode: Mode,
    /// Legs of the day counted before this poll count into the day's figures again.
    rebuild_today: bool,
}

/// The dialer's day a poll counts again: the decoder hands over the rows of its legs even when
/// they counted before.
#[derive(Debug, Clone, Copy)]
pub struct ReplayedDay(i64);

impl ReplayedDay {
    pub fn has(self, call_date: &str) -> bool {
        parse_call_date(call_date).is_some_and(|dt| day_of(dt) == self.0)
    }
}

/// The seen set, the pending legs, and the rules.
#[derive(Debug)]
pub struct Deduper {
    seen: SeenLegs,
    pending: FastMap<LegKey, Pending>,
    /// Legs of the dialer's day counted `unfinished`, until their rows come back final (not
    /// stored: a process's first poll finds them again).
    unfinished: FastSet<LegKey>,
    /// The dialer's day of the last poll applied: the legs watched are of it.
    unfinished_day: i64,
    rules: Rules,
    max_pending: SignedDuration,
    max_wait: SignedDuration,
    tz: TimeZone,
    expired_before: i64,
}

impl Deduper {
    pub fn new(cdr: &CdrConfig, tz: TimeZone) -> Self {
        Self {
            seen: SeenLegs::default(),
            pending: FastMap::default(),
            unfinished: FastSet::default(),
            unfinished_day: i64::MIN,
            rules: Rules::new(cdr),
            max_pending: SignedDuration::try_from(cdr.max_pending).unwrap_or(SignedDuration::MAX),
            max_wait: SignedDuration::try_from(cdr.max_wait).unwrap_or(SignedDuration::MAX),
            tz,
            expired_before: i64::MIN,
        }
    }

    /// Restores what a previous run stored.
    pub fn restore(&mut self, restored: Remembered) {
        self.seen.insert_many(&restored.queues, restored.legs);
        self.seen.restore_legacy(restored.legacy_calls);
        self.pending.extend(restored.pending);
        self.expired_before = restored.expired_before.unwrap_or(i64::MIN);
    }

    #[cfg(test)]
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Everything remembered, as the plan that writes it into an empty state file: every leg
    /// seen with its day (call ids remembered from a file from before legs are not: they
    /// would be written as no leg), the queue numbering, and the pending legs.
    pub fn whole(&self) -> Plan {
        Plan {
            seen: self.seen.iter().collect(),
            new_queues: self.seen.queues().names().to_vec(),
            pending_added: self.pending.iter().map(|(k, p)| (k.clone(), *p)).collect(),
            today: self.unfinished_day,
            expire_before: (self.expired_before > i64::MIN).then_some(self.expired_before),
            ..Plan::default()
        }
    }

    /// Whether the leg was counted (or primed) before: what the decoder asks to leave such
    /// rows out (see [`crate::api::RowSink::already_counted`]). The same key as the planner's,
    /// but a queue not numbered yet cannot have been seen.
    pub fn already_counted(&self, leg: &LegRef<'_>) -> bool {
        let uniq1 = leg.uniq1.trim();
        if uniq1.is_empty() || self.seen.is_empty() {
            return false;
        }
        let call = CallId::new(uniq1);
        if self.seen.legacy_contains(&call) {
            return true;
        }
        let date = parse_call_date(leg.call_date);
        let queue = leg.queue.trim();
        let key = leg_key(
            &call,
            uniq1,
            date,
            leg.call_date,
            queue,
            self.seen.queues().get(queue),
        );
        // A text key is found whatever its day. A leg counted unfinished is sorted again, in
        // case it has finished.
        self.seen.contains(&key, date.map_or(0, day_of)) && !self.unfinished.contains(&key)
    }

    /// A planner for one poll's rows; nothing changes until its plan is applied.
    pub fn planner(&self, window: &Window, now: Timestamp, mode: Mode) -> Planner {
        let mut plan = Plan::default();
        let keep_day = window.keep_day();
        if keep_day > self.expired_before {
            plan.expire_before = Some(keep_day);
        }
        let now_wall = wall_secs(now.to_zoned(self.tz.clone()).datetime());
        let today = now_wall.div_euclid(SECS_PER_DAY);
        plan.today = today;
        plan.unfinished_reset = today != self.unfinished_day;
        Planner {
            plan,
            fresh: FreshLegs::default(),
            live: FastSet::default(),
            present: FastSet::default(),
            new_queue_numbers: FastMap::default(),
            window_start: window
                .start
                .max(self.expired_before.saturating_mul(SECS_PER_DAY)),
            answered_days: (
                window.start_day(),
                (!window.open_ended).then(|| window.end_day()),
            ),
            today,
            now,
            mode,
            rebuild_today: false,
        }
    }

    /// Applies a plan made by a [`Planner`], once the poll's result is stored.
    pub fn apply(&mut self, plan: &Plan) {
        if let Some(day) = plan.expire_before {
            self.expired_before = day;
            self.seen.expire_before(day);
            self.pending.retain(|_, p| p.day >= day);
        }
        self.seen
            .insert_many(&plan.new_queues, plan.seen.iter().cloned());
        for key in &plan.pending_done {
            self.pending.remove(key);
        }
        for (key, p) in &plan.pending_added {
            self.pending.insert(key.clone(), *p);
        }
        if plan.unfinished_reset {
            self.unfinished.clear();
        }
        self.unfinished_day = plan.today;
        for key in &plan.unfinished_done {
            self.unfinished.remove(key);
        }
        self.unfinished
            .extend(plan.unfinished_added.iter().cloned());
    }

    /// How many entries the seen set and the pending table will hold once `plan` is applied.
    pub fn sizes_after(&self, plan: &Plan) -> (usize, usize) {
        let (expired, expire) = match plan.expire_before {
            Some(day) => (self.seen.count_before(day), day),
            None => (0, i64::MIN),
        };
        let done: FastSet<&LegKey> = plan.pending_done.iter().collect();
        let kept = self
            .pending
            .iter()
            .filter(|(key, p)| {
                p.day >= expire && !done.contains(key) && !plan.pending_added.contains_key(*key)
            })
            .count();
        (
            self.seen.len() - expired + plan.seen.len(),
            kept + plan.pending_added.len(),
        )
    }
}

impl Planner {
    /// The instant of the poll whose rows this sorts.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Sorts one row: whether its leg counts now or is in progress. Duplicates and rejected
    /// rows are only counted in the plan.
    pub fn sort(&mut self, deduper: &Deduper, entry: &RowEntry<'_>) -> Sorted {
        let Some((row, uniq1, call)) = self.row_and_call(deduper, entry) else {
            return Sorted::Done;
        };
        let call_date_text = row.call_date.as_deref().unwrap_or("");
        let call_date = parse_call_date(call_date_text);
        let day = match call_date {
            Some(dt) => {
                let wall = wall_secs(dt);
                if wall < self.window_start {
                    self.plan.counts.rejected[RejectReason::BeforeWindow as usize] += 1;
                    return Sorted::Done;
                }
                self.plan.newest_call = self.plan.newest_call.max(Some(wall));
                day_of(dt)
            }
            None => self.today,
        };
        if self.answered_days.1.is_some_and(|end| day >= end) {
            // A later day than asked for (an API whose toDate includes that day): the request
            // for that day sorts it.
            return Sorted::Done;
        }
        let queue = field(&row.queue);
        let key = self.leg_key(deduper, &call, uniq1, call_date, call_date_text, queue);
        let seen_before = deduper.seen.contains(&key, day);
        if seen_before || self.fresh.contains(&key) {
            self.plan.counts.duplicate += 1;
            if seen_before && self.rebuild_today && day == self.today {
                return self.replay(deduper, row, key, (&call, uniq1), call_date);
            }
            if seen_before && deduper.unfinished.contains(&key) {
                return self.finished(deduper, row, key, &call, call_date);
            }
            return Sorted::Done;
        }
        let known_pending = deduper.pending.get(&key).copied();
        if known_pending.is_some() {
            self.present.insert(key.clone());
        }
        let started = call_date.and_then(|dt| leg_instant(dt, &deduper.tz, self.now, call.epoch()));
        let is_final = deduper.rules.is_final(row);
        if !is_final {
            let pending = known_pending.unwrap_or(Pending {
                first_seen: self.now,
                day,
            });
            let since = started.unwrap_or(pending.first_seen);
            if self.now.duration_since(since) <= deduper.max_pending {
                return self.in_progress(deduper, row, key, pending, known_pending, started);
            }
        }
        if known_pending.is_some() {
            self.plan.pending_done.push(key.clone());
        }
        self.plan.pending_added.remove(&key);
        let first_in_poll = self.fresh.insert(key.clone(), &call, call_date.is_some());
        self.plan.seen.push((key, day));
        if call_date.is_none() {
            self.plan.counts.rejected[RejectReason::BadCallDate as usize] += 1;
            return Sorted::Done;
        }
        let today = day == self.today;
        if self.mode == Mode::Prime {
            self.plan.counts.duplicate += 1;
            let leg = self.leg(deduper, row, &call, started, is_final, false);
            if !today {
                return Sorted::Today(CountsNow {
                    today: false,
                    new_call_today: false,
                    ..leg
                });
            }
            self.note_unfinished_seen(&leg);
            return Sorted::Today(CountsNow {
                today: true,
                new_call_today: self.new_to_the_day(deduper, &call, uniq1, first_in_poll),
                ..leg
            });
        }
        self.plan.counts.new += 1;
        // Instants, not wall clocks: on the night a fall-back repeats an hour, a wall clock
        // can read an hour ahead of a call that has already happened.
        let ahead = started.map_or(0, |t| t.duration_since(self.now).as_secs());
        if ahead > FUTURE_TOLERANCE_SECS {
            self.plan.counts.future += 1;
            let furthest = self.plan.future_ahead_secs.get_or_insert(ahead);
            *furthest = (*furthest).max(ahead);
        }
        let first_leg = first_in_poll && !deduper.seen.call_seen(&call, uniq1);
        let leg = self.leg(deduper, row, &call, started, is_final, first_leg);
        if today {
            self.note_unfinished_seen(&leg);
        }
        Sorted::Counts(CountsNow {
            today,
            // A poll that counts the day again meets every leg of it: a call is new to the
            // day at its first leg in this poll, counted before or not.
            new_call_today: today
                && if self.rebuild_today {
                    self.new_to_the_day(deduper, &call, uniq1, first_in_poll)
                } else {
                    first_leg
                },
            ..leg
        })
    }

    /// What a leg that counts now counts as; of no day's figures until the caller says.
    fn leg(
        &self,
        deduper: &Deduper,
        row: &Row<'_>,
        call: &CallId,
        started: Option<Timestamp>,
        is_final: bool,
        first_leg: bool,
    ) -> CountsNow {
        // A row counted as it stood is not final: an agent's name on it may be a phone that
        // rang, and its duration is not written yet.
        let outcome = if is_final {
            deduper.rules.outcome(row)
        } else {
            Outcome::Unfinished
        };
        let (talk_seconds, below_queue_time) = deduper.rules.talk(row, outcome);
        // Never later than a poll would have counted it: max-pending after it started.
        let ended = started.map(|started| {
            let counted_by = started
                .checked_add(deduper.max_pending)
                .unwrap_or(Timestamp::MAX);
            let ended = if is_final {
                let entered = self.queue_entry(deduper, row, call.epoch());
                deduper
                    .rules
                    .hung_up(row, entered.unwrap_or(started))
                    .min(counted_by)
            } else {
                counted_by
            };
            ended.min(self.now)
        });
        CountsNow {
            started,
            ended,
            outcome,
            first_leg,
            talk_seconds,
            duration_below_queue_time: below_queue_time,
            today: false,
            new_call_today: false,
        }
    }

    /// A leg of the day counted (or marked seen) before this process's first poll, met again
    /// by that poll: into the day's figures, as it was counted.
    fn replay(
        &mut self,
        deduper: &Deduper,
        row: &Row<'_>,
        key: LegKey,
        (call, uniq1): (&CallId, &str),
        call_date: Option<DateTime>,
    ) -> Sorted {
        if self.fresh.contains(&key) {
            return Sorted::Done;
        }
        let started = call_date.and_then(|dt| leg_instant(dt, &deduper.tz, self.now, call.epoch()));
        let is_final = deduper.rules.is_final(row);
        // A leg counted as it stood was past --cdr.max-pending; one within it was not counted.
        let counted_as_it_stood =
            started.is_some_and(|t| self.now.duration_since(t) > deduper.max_pending);
        if !is_final && !counted_as_it_stood {
            return Sorted::Done;
        }
        let first_in_poll = self.fresh.insert(key.clone(), call, true);
        let leg = self.leg(deduper, row, call, started, is_final, false);
        self.note_unfinished(&key, &leg);
        Sorted::Today(CountsNow {
            today: true,
            new_call_today: self.new_to_the_day(deduper, call, uniq1, first_in_poll),
            ..leg
        })
    }

    /// In a poll that counts the day afresh, whether a leg of the day is its call's first: the
    /// first of the call in this poll, with no leg on an earlier day (a call is of the day its
    /// first leg counted on, as the counters' distinct calls are).
    fn new_to_the_day(
        &self,
        deduper: &Deduper,
        call: &CallId,
        uniq1: &str,
        first_in_poll: bool,
    ) -> bool {
        first_in_poll && !deduper.seen.call_seen_before(call, uniq1, self.today)
    }

    /// A leg of the day counted `unfinished` is watched until its row comes back final.
    fn note_unfinished(&mut self, key: &LegKey, leg: &CountsNow) {
        if leg.outcome == Outcome::Unfinished {
            self.plan.unfinished_added.push(key.clone());
        }
    }

    /// [`Planner::note_unfinished`] of the leg just marked seen in this poll.
    fn note_unfinished_seen(&mut self, leg: &CountsNow) {
        if leg.outcome == Outcome::Unfinished {
            if let Some((key, _)) = self.plan.seen.last() {
                self.plan.unfinished_added.push(key.clone());
            }
        }
    }

    /// A leg counted `unfinished` before: final now, the day's figures take its outcome (once,
    /// however often the row is sent).
    fn finished(
        &mut self,
        deduper: &Deduper,
        row: &Row<'_>,
        key: LegKey,
        call: &CallId,
        call_date: Option<DateTime>,
    ) -> Sorted {
        if self.fresh.contains(&key) || !deduper.rules.is_final(row) {
            return Sorted::Done;
        }
        self.fresh.insert(key.clone(), call, true);
        self.plan.unfinished_done.push(key);
        let started = call_date.and_then(|dt| leg_instant(dt, &deduper.tz, self.now, call.epoch()));
        let leg = self.leg(deduper, row, call, started, true, false);
        Sorted::Finished(CountsNow {
            today: call_date.is_some_and(|dt| day_of(dt) == self.today),
            ..leg
        })
    }

    /// The day whose legs counted before this poll it counts again (see
    /// [`Planner::rebuilding_today`]), if it does.
    pub fn replayed_day(&self) -> Option<ReplayedDay> {
        self.rebuild_today.then_some(ReplayedDay(self.today))
    }

    /// This poll counts the day's figures afresh: the first of a process, which meets legs
    /// of the day counted (or primed) before it started, or the first of a day.
    pub fn rebuilding_today(mut self) -> Self {
        self.rebuild_today = true;
        self.plan.unfinished_reset = true;
        self
    }

    /// The dialer's day of this poll, days since 1970-01-01 (wall clock).
    pub fn today(&self) -> i64 {
        self.today
    }

    /// The row, its trimmed `uniq1` and its call, unless the row is rejected (not an object,
    /// no `uniq1`) or a state file from before legs remembered its call: those only count in
    /// the plan.
    fn row_and_call<'e, 'a>(
        &mut self,
        deduper: &Deduper,
        entry: &'e RowEntry<'a>,
    ) -> Option<(&'e Row<'a>, &'e str, CallId)> {
        let counts = &mut self.plan.counts;
        let row = match entry {
            RowEntry::Row(row) => row,
            RowEntry::NotAnObject => {
                counts.rejected[RejectReason::NotAnObject as usize] += 1;
                return None;
            }
        };
        let Some(uniq1) = row
            .uniq1
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            counts.rejected[RejectReason::MissingUniq1 as usize] += 1;
            return None;
        };
        let call = CallId::new(uniq1);
        if deduper.seen.legacy_contains(&call) {
            counts.duplicate += 1;
            return None;
        }
        Some((row, uniq1, call))
    }

    /// The leg's key, numbering its queue if the seen set does not know it yet.
    fn leg_key(
        &mut self,
        deduper: &Deduper,
        call: &CallId,
        uniq1: &str,
        date: Option<DateTime>,
        call_date: &str,
        queue: &str,
    ) -> LegKey {
        let number = match (call, date) {
            (CallId::Packed(_), Some(_)) => deduper
                .seen
                .queues()
                .get(queue)
                .or_else(|| self.number_queue(deduper, queue)),
            _ => None,
        };
        leg_key(call, uniq1, date, call_date, queue, number)
    }

    /// Numbers a queue the seen set does not know, on from its table.
    fn number_queue(&mut self, deduper: &Deduper, queue: &str) -> Option<u32> {
        if let Some(&n) = self.new_queue_numbers.get(queue) {
            return Some(n);
        }
        let n = deduper.seen.queues().len() + self.plan.new_queues.len();
        if n >= MAX_QUEUES {
            return None;
        }
        self.plan.new_queues.push(queue.into());
        self.new_queue_numbers.insert(queue.into(), n as u32);
        Some(n as u32)
    }

    /// A row of a leg still in progress: held back, and shown live once per leg.
    fn in_progress(
        &mut self,
        deduper: &Deduper,
        row: &Row<'_>,
        key: LegKey,
        pending: Pending,
        known_pending: Option<Pending>,
        started: Option<Timestamp>,
    ) -> Sorted {
        self.plan.counts.pending += 1;
        let first_row = self.live.insert(key.clone());
        if known_pending.is_none() {
            self.plan.pending_added.entry(key).or_insert(pending);
        }
        if !first_row {
            return Sorted::Done;
        }
        let state = deduper.rules.live_state(row);
        // With neither time readable, the wait is known from when we first saw it.
        let waiting_since = match state {
            LiveState::Waiting => self
                .queue_entry(deduper, row, None)
                .or(started)
                .or(Some(pending.first_seen)),
            LiveState::Talking | LiveState::Wrapup => None,
        };
        if waiting_since.is_some_and(|t| self.now.duration_since(t) > deduper.max_wait) {
            // Nobody waits this long: a row the platform never finished. It counts (as
            // unfinished) at --cdr.max-pending; until then it holds no wait.
            return Sorted::Done;
        }
        Sorted::InProgress(InProgress {
            state,
            waiting_since,
            started,
        })
    }

    /// When the caller entered the queue (`enter_on_queue`), where it reads: the platform
    /// measures `call_duration` and the wait from there, not from `call_date`.
    fn queue_entry(
        &self,
        deduper: &Deduper,
        row: &Row<'_>,
        call_epoch: Option<i64>,
    ) -> Option<Timestamp> {
        row.enter_on_queue
            .as_deref()
            .and_then(parse_call_date)
            .and_then(|dt| leg_instant(dt, &deduper.tz, self.now, call_epoch))
    }

    /// The plan of a whole answer, with the rows the decoder left out as already counted
    /// (duplicates), and the legs that were pending and left without being counted: those
    /// whose day leaves the window now, and those the answer no longer holds.
    pub fn finish(mut self, deduper: &Deduper, already_counted: u64) -> Plan {
        let plan = &mut self.plan;
        plan.counts.duplicate += already_counted;
        for (key, pending) in &deduper.pending {
            if self.present.contains(key) {
                continue;
            }
            let (first, end) = self.answered_days;
            let asked_for = first <= pending.day && end.is_none_or(|end| pending.day < end);
            if plan.expire_before.is_some_and(|day| pending.day < day) {
                plan.counts.dropped[DropReason::LeftWindow as usize] += 1;
            } else if asked_for {
                plan.counts.dropped[DropReason::Vanished as usize] += 1;
                plan.pending_done.push(key.clone());
            }
        }
        self.plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::decode_whole;
    use crate::vocab::RowCounts;
    use std::borrow::Cow;
    use std::time::Duration;

    fn row(id: &str, date: &str, disposition: &str, term: &str) -> RowEntry<'static> {
        RowEntry::Row(Row {
            uniq1: Some(Cow::Owned(id.to_string())),
            call_date: Some(Cow::Owned(date.to_string())),
            disposition: Some(Cow::Owned(disposition.to_string())),
            term_reason: Some(Cow::Owned(term.to_string())),
            ..Row::default()
        })
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn deduper() -> Deduper {
        Deduper::new(&CdrConfig::default(), TimeZone::UTC)
    }

    /// One poll as the poller runs it: each row through the planner, the plan finished, checked
    /// against [`Deduper::sizes_after`], and applied. The ids of the calls that count now.
    fn poll(
        d: &mut Deduper,
        rows: &[RowEntry<'_>],
        w: &Window,
        now: Timestamp,
        mode: Mode,
    ) -> (Vec<String>, RowCounts) {
        let mut planner = d.planner(w, now, mode);
        let mut counted = Vec::new();
        for entry in rows {
            if let (RowEntry::Row(row), Sorted::Counts(_)) = (entry, planner.sort(d, entry)) {
                counted.push(row.uniq1.as_deref().unwrap_or("").to_string());
            }
        }
        let plan = planner.finish(d, 0);
        let sizes = d.sizes_after(&plan);
        d.apply(&plan);
        assert_eq!(sizes, (d.seen_len(), d.pending_len()), "sizes_after");
        (counted, plan.counts)
    }

    #[test]
    fn counts_each_final_call_once_and_holds_back_pending() {
        let mut d = deduper();
        let now = ts("2025-05-29T12:00:00Z");
        let w = Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC);
        let poll1 = vec![
            row("1.1", "2025-05-29 11:00:00", "Answered", "CALLER"),
            row("1.2", "2025-05-29 11:50:00", "INCALL", "NONE"),
            row("1.3", "2025-05-29 11:55:00", "QUEUE", ""),
            row("1.1", "2025-05-29 11:00:00", "Answered", "CALLER"),
        ];
        let (c, n) = poll(&mut d, &poll1, &w, now, Mode::Count);
        assert_eq!(c, ["1.1"]);
        assert_eq!((n.new, n.duplicate, n.pending), (1, 1, 2));
        let poll2 = vec![
            row("1.1", "2025-05-29 11:00:00", "Answered", "CALLER"),
            row("1.2", "2025-05-29 11:50:00", "Answered", "AGENT"),
            row("1.3", "2025-05-29 11:55:00", "DISPO", "CALLER"),
        ];
        let (c, n) = poll(&mut d, &poll2, &w, now, Mode::Count);
        assert_eq!(c, ["1.2"]);
        assert_eq!((n.new, n.duplicate, n.pending), (1, 1, 1));
        assert_eq!(d.pending_len(), 1);
        assert_eq!(d.seen_len(), 2);
        // A final disposition is final even with the NONE a missed hang-up leaves behind.
        let poll3 = vec![row("1.3", "2025-05-29 11:55:00", "Answered", "NONE")];
        let (c, n) = poll(&mut d, &poll3, &w, now, Mode::Count);
        assert_eq!(c, ["1.3"]);
        assert_eq!((n.new, n.pending), (1, 0));
        assert_eq!((d.pending_len(), d.seen_len()), (0, 3));
    }

    #[test]
    fn a_row_that_never_finalizes_counts_after_max_pending() {
        let mut d = deduper();
        let rows = vec![row("2.1", "2025-05-29 10:00:00", "QUEUE", "")];
        let at = |s: &str| {
            let now = ts(s);
            (
                now,
                Window::at(now, Duration::from_secs(3600), &TimeZone::UTC),
            )
        };
        let (now, w) = at("2025-05-29T12:00:00Z");
        let (c, n) = poll(&mut d, &rows, &w, now, Mode::Count);
        assert_eq!((c.len(), n.pending), (0, 1));
        let (now, w) = at("2025-05-29T12:00:01Z");
        let (c, _) = poll(&mut d, &rows, &w, now, Mode::Count);
        assert_eq!(c, ["2.1"]);
        let (c, n) = poll(&mut d, &rows, &w, now, Mode::Count);
        assert_eq!((c.len(), n.duplicate), (0, 1));
    }

    #[test]
    fn unreadable_call_date_waits_from_first_sight_then_is_rejected_once() {
        let mut d = deduper();
        let rows = vec![row("3.1", "0000-00-00 00:00:00", "INCALL", "NONE")];
        let now = ts("2025-05-29T12:00:00Z");
        let w = Window::at(now, Duration::from_secs(3600), &TimeZone::UTC);
        assert_eq!(poll(&mut d, &rows, &w, now, Mode::Count).1.pending, 1);
        let later = now + SignedDuration::from_hours(2);
        assert_eq!(poll(&mut d, &rows, &w, later, Mode::Count).1.pending, 1);
        // Past --cdr.max-pending it would count as it stands, but it has no day to be kept
        // under: rejected, once.
        let later = later + SignedDuration::from_secs(1);
        let (c, n) = poll(&mut d, &rows, &w, later, Mode::Count);
        assert!(c.is_empty());
        assert_eq!(n.rejected[RejectReason::BadCallDate as usize], 1);
        assert_eq!(d.pending_len(), 0);
        let (c, n) = poll(&mut d, &rows, &w, later, Mode::Count);
        assert!(c.is_empty());
        assert_eq!((n.rejected_total(), n.duplicate), (0, 1));
    }

    #[test]
    fn a_waiting_caller_waits_from_enter_on_queue_else_call_date_else_first_sight() {
        let d = deduper();
        let now = ts("2025-05-29T12:00:00Z");
        let w = Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC);
        let mut planner = d.planner(&w, now, Mode::Count);
        let waiting = |id: &str, date: &str, entered: Option<&str>| {
            let mut r = row(id, date, "QUEUE", "");
            if let RowEntry::Row(r) = &mut r {
                r.enter_on_queue = entered.map(|e| Cow::Owned(e.to_string()));
            }
            r
        };
        let since = |planner: &mut Planner, r: &RowEntry<'_>| match planner.sort(&d, r) {
            Sorted::InProgress(InProgress {
                state: LiveState::Waiting,
                waiting_since,
                ..
            }) => waiting_since,
            other => panic!("{other:?}"),
        };
        let r = waiting("6.1", "2025-05-29 11:50:00", Some("2025-05-29 11:51:00"));
        assert_eq!(since(&mut planner, &r), Some(ts("2025-05-29T11:51:00Z")));
        let r = waiting("6.2", "2025-05-29 11:50:00", Some(""));
        assert_eq!(since(&mut planner, &r), Some(ts("2025-05-29T11:50:00Z")));
        let r = waiting("6.3", "0000-00-00 00:00:00", None);
        assert_eq!(since(&mut planner, &r), Some(now));
        // The same call again in this poll is not a second caller.
        let r = waiting("6.1", "2025-05-29 11:50:00", Some("2025-05-29 11:51:00"));
        assert_eq!(planner.sort(&d, &r), Sorted::Done);
        assert_eq!(planner.finish(&d, 0).counts.pending, 4);
    }

    #[test]
    fn priming_marks_without_counting_and_rejections_are_classified() {
        let mut d = deduper();
        let now = ts("2025-05-29T12:00:00Z");
        let w = Window::at(now, Duration::from_secs(3600), &TimeZone::UTC);
        let body = br#"{"result":"success","data":{"rows":[
            {"uniq1":"4.1","call_date":"2025-05-29 11:00:00","disposition":"Answered","term_reason":"AGENT"},
            {"uniq1":"","call_date":"2025-05-29 11:00:00","disposition":"Answered","term_reason":"AGENT"},
            {"call_date":"2025-05-29 11:00:00"},
            {"uniq1":"4.2","call_date":"2025-05-28 23:59:59","disposition":"Answered","term_reason":"AGENT"},
            17
        ]}}"#;
        let (rows, _) = decode_whole(body).unwrap();
        let (c, n) = poll(&mut d, &rows, &w, now, Mode::Prime);
        assert!(c.is_empty());
        assert_eq!(n.duplicate, 1);
        assert_eq!(n.rejected, [1, 2, 1, 0]);
        let (c, n) = poll(&mut d, &rows, &w, now, Mode::Count);
        assert!(c.is_empty());
        assert_eq!(n.duplicate, 1);
    }

    /// A transfer: the first leg ends `XFER` in one queue, the second has the same `uniq1`, its
    /// own call_date and queue. Each leg counts once, in its own queue; the call is one
    /// distinct call; a pending leg is dropped with its own day.
    #[test]
    fn each_leg_of_a_transferred_call_counts_once() {
        let mut d = deduper();
        let hour = Duration::from_secs(3600);
        let at = |s: &str| (ts(s), Window::at(ts(s), hour, &TimeZone::UTC));
        let leg = |date: &str, queue: &str, disposition: &str, term: &str| {
            let mut r = row("7.1", date, disposition, term);
            if let RowEntry::Row(r) = &mut r {
                r.queue = Some(Cow::Owned(queue.to_string()));
                r.agent = Some(Cow::Borrowed("agent001"));
            }
            r
        };
        let (now, w) = at("2025-05-29T23:50:00Z");
        let first = leg("2025-05-29 23:40:00", "SALES", "XFER", "AGENT");
        let second = leg("2025-05-29 23:45:00", "SUPPORT", "INCALL", "NONE");
        let mut planner = d.planner(&w, now, Mode::Count);
        let Sorted::Counts(counted) = planner.sort(&d, &first) else {
            panic!("the first leg counts")
        };
        assert!(counted.first_leg);
        assert!(matches!(planner.sort(&d, &second), Sorted::InProgress(_)));
        let plan = planner.finish(&d, 0);
        d.apply(&plan);
        assert_eq!((plan.counts.new, plan.counts.pending), (1, 1));
        assert_eq!(plan.new_queues, ["SALES".into(), "SUPPORT".into()]);
        // The second leg ends after midnight: it counts, as a leg of a call counted before.
        let (now, w) = at("2025-05-30T00:10:00Z");
        let second_final = leg("2025-05-29 23:45:00", "SUPPORT", "Answered", "CALLER");
        let mut planner = d.planner(&w, now, Mode::Count);
        assert_eq!(planner.sort(&d, &first), Sorted::Done);
        let Sorted::Counts(counted) = planner.sort(&d, &second_final) else {
            panic!("the second leg counts")
        };
        assert!(!counted.first_leg, "one distinct call");
        let plan = planner.finish(&d, 0);
        d.apply(&plan);
        assert_eq!((plan.counts.new, plan.counts.duplicate), (1, 1));
        assert!(d.already_counted(&LegRef {
            uniq1: " 7.1 ",
            call_date: "2025-05-29 23:45:00",
            queue: "SUPPORT"
        }));
        assert!(!d.already_counted(&LegRef {
            uniq1: "7.1",
            call_date: "2025-05-29 23:45:01",
            queue: "SUPPORT"
        }));
        // A third leg, in progress, left behind on the 30th: dropped when the 30th leaves.
        let third = leg("2025-05-30 00:05:00", "VIP", "QUEUE", "");
        poll(&mut d, &[third], &w, now, Mode::Count);
        let (now, w) = at("2025-05-31T01:10:00Z");
        let (_, n) = poll(&mut d, &[], &w, now, Mode::Count);
        assert_eq!(n.dropped, [0, 1]);
        assert_eq!((d.pending_len(), d.seen_len()), (0, 0));
    }

    /// The evidence of how a leg ended wins over the agent field: term reason first, then
    /// the disposition, then a person named.
    #[test]
    fn outcomes_read_term_reason_then_disposition_then_agent() {
        let d = deduper();
        let outcome = |agent: &str, disposition: &str, term: &str| {
            let r = Row {
                agent: Some(Cow::Owned(agent.to_string())),
                disposition: Some(Cow::Owned(disposition.to_string())),
                term_reason: Some(Cow::Owned(term.to_string())),
                ..Row::default()
            };
            d.rules.outcome(&r)
        };
        assert_eq!(outcome("agent001", "DROP", "CALLER"), Outcome::Abandoned);
        assert_eq!(outcome("VDCL", "DROP", "ABANDON"), Outcome::Abandoned);
        assert_eq!(
            outcome("agent001", "TIMEOT", "QUEUETIMEOUT"),
            Outcome::TimedOut
        );
        assert_eq!(outcome("agent001", "HOLDTO", "NONE"), Outcome::TimedOut);
        assert_eq!(outcome("agent001", "AFTHRS", "AFTERHOURS"), Outcome::Other);
        // term_reason before disposition.
        assert_eq!(
            outcome("agent001", "DROP", "QUEUETIMEOUT"),
            Outcome::TimedOut
        );
        assert_eq!(outcome("agent001", "SALE", "agent"), Outcome::Answered);
        assert_eq!(outcome("agent001", "XFER", "AGENT"), Outcome::Answered);
        assert_eq!(outcome("vdad", "SALE", "AGENT"), Outcome::Other);
        assert_eq!(outcome("", "Answered", "CALLER"), Outcome::Other);
    }

    #[test]
    fn wrapup_and_a_none_left_behind() {
        let d = deduper();
        let r = |disposition: &str, term: &str| Row {
            disposition: Some(Cow::Owned(disposition.to_string())),
            term_reason: Some(Cow::Owned(term.to_string())),
            ..Row::default()
        };
        let rules = &d.rules;
        assert!(!rules.is_final(&r("DISPO", "CALLER")));
        assert_eq!(rules.live_state(&r("DISPO", "CALLER")), LiveState::Wrapup);
        assert_eq!(rules.live_state(&r("INCALL", "CALLER")), LiveState::Wrapup);
        assert_eq!(rules.live_state(&r("INCALL", "NONE")), LiveState::Talking);
        assert_eq!(rules.live_state(&r("QUEUE", "")), LiveState::Waiting);
        assert!(rules.is_final(&r("SALE", "NONE")));
        assert!(rules.is_final(&r("", "CALLER")));
        assert!(!rules.is_final(&r("", "NONE")));
        // Talk time: call_duration from queue entry, less the wait; never below 0.
        let talk = |wait: f64, duration: f64| {
            let mut row = r("SALE", "AGENT");
            row.queue_time = crate::api::Num::Value(wait);
            row.call_duration = crate::api::Num::Value(duration);
            rules.talk(&row, Outcome::Answered)
        };
        assert_eq!(talk(12.5, 100.0), (Some(87.5), false));
        assert_eq!(talk(30.0, 20.0), (Some(0.0), true));
        // Rounding: a wait of 15.37 s and a duration of 15 s is no sign of a talk-only duration.
        assert_eq!(talk(15.37, 15.0), (Some(0.0), false));
        let mut no_wait = r("SALE", "AGENT");
        no_wait.call_duration = crate::api::Num::Value(95.0);
        assert_eq!(rules.talk(&no_wait, Outcome::Answered), (None, false));
        let talk_only = Rules::new(&CdrConfig {
            duration_includes_queue_time: false,
            ..CdrConfig::default()
        });
        let mut row = r("SALE", "AGENT");
        row.queue_time = crate::api::Num::Value(30.0);
        row.call_duration = crate::api::Num::Value(20.0);
        assert_eq!(talk_only.talk(&row, Outcome::Answered), (Some(20.0), false));
        assert_eq!(talk_only.talk(&row, Outcome::Abandoned), (None, false));
    }

    /// A row that never became final counts, past --cdr.max-pending, as `unfinished`: never
    /// answered (an agent's name on a ringing row proves nothing), with no talk time.
    #[test]
    fn a_row_never_final_counts_as_unfinished_not_answered() {
        let d = deduper();
        let now = ts("2025-05-29T12:00:01Z");
        let w = Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC);
        let mut planner = d.planner(&w, now, Mode::Count);
        for (id, disposition) in [("9.1", "QUEUE"), ("9.2", "INCALL")] {
            let mut r = row(id, "2025-05-29 10:00:00", disposition, "NONE");
            if let RowEntry::Row(r) = &mut r {
                r.agent = Some(Cow::Borrowed("agent001"));
                r.queue_time = crate::api::Num::Value(12.0);
                r.call_duration = crate::api::Num::Value(0.0);
            }
            let Sorted::Counts(leg) = planner.sort(&d, &r) else {
                panic!("{id} counts at max-pending");
            };
            assert_eq!(leg.outcome, Outcome::Unfinished, "{id}");
            assert_eq!(leg.talk_seconds, None, "{id}");
            assert!(leg.today && leg.first_leg && leg.new_call_today, "{id}");
        }
    }

    /// An answered final row whose duration is 0 or unset (not written yet) has no talk time,
    /// rather than a talk time of 0 that would lower AHT.
    #[test]
    fn an_unwritten_duration_is_no_talk_time() {
        let d = deduper();
        let answered = |duration: crate::api::Num| Row {
            agent: Some(Cow::Borrowed("agent001")),
            disposition: Some(Cow::Borrowed("Answered")),
            term_reason: Some(Cow::Borrowed("CALLER")),
            queue_time: crate::api::Num::Value(5.0),
            call_duration: duration,
            ..Row::default()
        };
        for duration in [
            crate::api::Num::Value(0.0),
            crate::api::Num::Absent,
            crate::api::Num::Invalid,
        ] {
            let r = answered(duration);
            assert_eq!(
                d.rules.talk(&r, Outcome::Answered),
                (None, false),
                "{duration:?}"
            );
        }
        let r = answered(crate::api::Num::Value(65.0));
        assert_eq!(d.rules.talk(&r, Outcome::Answered), (Some(60.0), false));
    }

    /// On New York's fall-back night, 01:30 is two instants: a call of the first 01:30 read at
    /// 01:10 of the second pass is not "in the future" (the wall clocks say 20 minutes ahead).
    #[test]
    fn no_future_rows_on_the_fall_back_night() {
        let ny = TimeZone::get("America/New_York").unwrap();
        let mut d = Deduper::new(&CdrConfig::default(), ny.clone());
        // 01:10 EST, after the 01:30 EDT of an hour earlier (05:30Z).
        let now = ts("2025-11-02T06:10:00Z");
        let w = Window::at(now, Duration::from_secs(6 * 3600), &ny);
        let rows = [row(
            "1762061400.1",
            "2025-11-02 01:30:00",
            "Answered",
            "AGENT",
        )];
        let mut planner = d.planner(&w, now, Mode::Count);
        let Sorted::Counts(leg) = planner.sort(&d, &rows[0]) else {
            panic!("counts");
        };
        assert_eq!(leg.started, Some(ts("2025-11-02T05:30:00Z")));
        let plan = planner.finish(&d, 0);
        assert_eq!((plan.counts.new, plan.counts.future), (1, 0));
        d.apply(&plan);
    }

    /// A leg ends `call_duration` after the caller entered the queue (`enter_on_queue`), where
    /// the platform measures it from; after `call_date` where the entry does not read.
    #[test]
    fn a_leg_ends_call_duration_after_its_queue_entry() {
        let d = deduper();
        let now = ts("2025-05-29T12:00:00Z");
        let w = Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC);
        let mut planner = d.planner(&w, now, Mode::Count);
        let ended = |planner: &mut Planner, id: &str, entered: Option<&str>| {
            let mut r = row(id, "2025-05-29 11:00:00", "Answered", "CALLER");
            if let RowEntry::Row(r) = &mut r {
                r.agent = Some(Cow::Borrowed("agent001"));
                r.enter_on_queue = entered.map(|e| Cow::Owned(e.to_string()));
                r.call_duration = crate::api::Num::Value(100.0);
            }
            match planner.sort(&d, &r) {
                Sorted::Counts(leg) => leg.ended,
                other => panic!("{other:?}"),
            }
        };
        let after_ivr = ended(&mut planner, "12.1", Some("2025-05-29 11:00:40"));
        assert_eq!(after_ivr, Some(ts("2025-05-29T11:02:20Z")));
        let no_entry = ended(&mut planner, "12.2", Some("0000-00-00 00:00:00"));
        assert_eq!(no_entry, Some(ts("2025-05-29T11:01:40Z")));
    }

    /// A caller shown waiting past --cdr.max-wait is a row nobody finished: no longer a
    /// caller waiting now, so it cannot hold the longest wait.
    #[test]
    fn a_wait_past_max_wait_is_not_shown() {
        let d = deduper();
        let now = ts("2025-05-29T12:00:00Z");
        let w = Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC);
        let mut planner = d.planner(&w, now, Mode::Count);
        let r = row("10.1", "2025-05-29 10:59:59", "QUEUE", "");
        assert_eq!(planner.sort(&d, &r), Sorted::Done);
        let r = row("10.2", "2025-05-29 11:00:00", "QUEUE", "");
        assert!(matches!(planner.sort(&d, &r), Sorted::InProgress(_)));
        assert_eq!(planner.finish(&d, 0).counts.pending, 2);
    }

    /// The first poll of a process meets legs of the day counted before it started: the day's
    /// figures get each once (a row sent twice, once), the counters none.
    #[test]
    fn a_first_poll_counts_the_day_again_for_its_figures() {
        let mut d = deduper();
        let now = ts("2025-05-29T12:00:00Z");
        let w = Window::at(now, Duration::from_secs(18 * 3600), &TimeZone::UTC);
        let rows = [
            row("11.1", "2025-05-28 23:00:00", "Answered", "AGENT"),
            row("11.2", "2025-05-29 09:00:00", "Answered", "AGENT"),
            row("11.2", "2025-05-29 09:00:00", "Answered", "AGENT"),
            // Transferred past midnight: a call of the day before, not a new one of the day.
            row("11.1", "2025-05-29 00:10:00", "Answered", "AGENT"),
        ];
        poll(&mut d, &rows, &w, now, Mode::Count);
        let mut planner = d.planner(&w, now, Mode::Count).rebuilding_today();
        let sorted: Vec<Sorted> = rows.iter().map(|r| planner.sort(&d, r)).collect();
        assert_eq!(
            sorted[0],
            Sorted::Done,
            "yesterday's leg is of no figure today"
        );
        assert!(
            matches!(sorted[1], Sorted::Today(leg) if leg.today && leg.new_call_today),
            "{:?}",
            sorted[1]
        );
        assert_eq!(sorted[2], Sorted::Done, "the same row again");
        assert!(
            matches!(sorted[3], Sorted::Today(leg) if leg.today && !leg.new_call_today),
            "{:?}",
            sorted[3]
        );
        assert_eq!(planner.finish(&d, 0).counts.duplicate, 4);
    }

    /// A row dated more than 5 minutes ahead of the dialer's clock counts, and is counted as
    /// dated in the future.
    #[test]
    fn rows_dated_ahead_of_the_dialer_clock_are_counted_and_flagged() {
        let mut d = deduper();
        let now = ts("2025-05-29T12:00:00Z");
        let w = Window::at(now, Duration::from_secs(3600), &TimeZone::UTC);
        let rows = [
            row("8.1", "2025-05-29 12:05:00", "Answered", "AGENT"),
            row("8.2", "2025-05-29 13:00:01", "Answered", "AGENT"),
        ];
        let mut planner = d.planner(&w, now, Mode::Count);
        for r in &rows {
            assert!(matches!(planner.sort(&d, r), Sorted::Counts(_)));
        }
        let plan = planner.finish(&d, 0);
        assert_eq!((plan.counts.new, plan.counts.future), (2, 1));
        assert_eq!(plan.future_ahead_secs, Some(3601));
        d.apply(&plan);
    }

    #[test]
    fn a_backfills_day_leaves_later_days_to_their_own_request() {
        let mut d = deduper();
        let now = ts("2025-05-31T12:00:00Z");
        let day = |d: i8| jiff::civil::date(2025, 5, d);
        // An API whose toDate includes that day sends the 30th's rows with the 29th's.
        let rows = [
            row("1.1", "2025-05-29 23:50:00", "SALE", "CALLER"),
            row("2.1", "2025-05-30 00:10:00", "SALE", "CALLER"),
        ];
        let (counted, counts) = poll(
            &mut d,
            &rows,
            &Window::days(day(29), day(30)),
            now,
            Mode::Count,
        );
        assert_eq!(
            (counted, counts.new, counts.duplicate),
            (vec!["1.1".to_string()], 1, 0)
        );
        let w = Window::days(day(30), day(31)).keeping_from(day(29));
        let (counted, counts) = poll(&mut d, &rows, &w, now, Mode::Count);
        assert_eq!((counted, counts.new), (vec!["2.1".to_string()], 1));
    }

    #[test]
    fn a_leg_ends_at_hang_up_and_no_later_than_a_poll_would_count_it() {
        let d = deduper();
        let now = ts("2025-05-31T12:00:00Z");
        let w = Window::at(now, Duration::from_secs(86_400 * 3), &TimeZone::UTC);
        let mut planner = d.planner(&w, now, Mode::Count);
        let ended = |planner: &mut Planner, date: &str, disposition: &str, secs: f64| {
            let RowEntry::Row(mut r) = row(&format!("{secs}.{date}"), date, disposition, "CALLER")
            else {
                unreachable!()
            };
            r.call_duration = crate::api::Num::Value(secs);
            match planner.sort(&d, &RowEntry::Row(r)) {
                Sorted::Counts(c) => c.ended,
                other => panic!("{other:?}"),
            }
        };
        // call_duration after call_date (it includes the wait).
        assert_eq!(
            ended(&mut planner, "2025-05-30 10:00:00", "SALE", 600.0),
            Some(ts("2025-05-30T10:10:00Z"))
        );
        // Never past max-pending (2 h) after the start, when a poll counts any leg.
        assert_eq!(
            ended(&mut planner, "2025-05-30 11:00:00", "SALE", 36_000.0),
            Some(ts("2025-05-30T13:00:00Z"))
        );
        // Nor past the request.
        assert_eq!(
            ended(&mut planner, "2025-05-31 11:59:00", "SALE", 600.0),
            Some(now)
        );
    }

    #[test]
    fn ids_are_forgotten_when_their_day_leaves_the_window() {
        let mut d = deduper();
        let rows = vec![row("5.1", "2025-05-29 23:00:00", "Answered", "AGENT")];
        let now = ts("2025-05-29T23:30:00Z");
        let w = Window::at(now, Duration::from_secs(3600), &TimeZone::UTC);
        assert_eq!(poll(&mut d, &rows, &w, now, Mode::Count).0.len(), 1);
        let next_day = ts("2025-05-30T01:30:00Z");
        let w2 = Window::at(next_day, Duration::from_secs(3600), &TimeZone::UTC);
        poll(&mut d, &[], &w2, next_day, Mode::Count);
        assert_eq!(d.seen_len(), 0);
    }
}
