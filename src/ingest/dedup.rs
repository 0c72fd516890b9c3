//! Decides, row by row, whether a call counts now: once per `uniq1`, only when final.
//!
//! Every poll re-sends the whole window, and rows change after they first appear (`QUEUE`, then
//! `INCALL`, then final at hang-up). A row that is not final yet is neither counted nor marked
//! seen; it counts on the poll where it comes back final, with its final values. A row still not
//! final `max_pending` after its call started counts as it stands, so nothing waits forever.
//! A transfer can give one call several rows with the same `uniq1`: the call counts once, with
//! the first final row seen.

use std::collections::{HashMap, HashSet};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::seen::SeenSet;
use super::window::{call_instant, parse_call_date, Window, SECS_PER_DAY};
use crate::api::{Row, RowEntry};
use crate::clock::wall_secs;
use crate::config::CdrConfig;
use crate::vocab::{
    CallId, CountsNow, DropReason, InProgress, LiveState, Outcome, Pending, Plan, RejectReason,
};

/// What to do with final rows nobody has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mark them seen without counting (the first poll after a start, so a restart never spikes).
    Prime,
    /// Count them.
    Count,
}

/// What one row is, for this poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sorted {
    /// Its call counts now.
    Counts(CountsNow),
    /// Its call is in progress and not counted yet.
    InProgress(InProgress),
    /// Counted before, primed, or rejected: only the plan's row counts show it.
    Done,
}

/// The operator's reading of rows (see [`CdrConfig`]): final or not, waiting or talking, and
/// the outcome. Lists are upper-case; values are compared case-insensitively.
#[derive(Debug)]
struct Rules {
    in_progress: Vec<String>,
    waiting: Vec<String>,
    system_agents: Vec<String>,
    abandon_term_reasons: Vec<String>,
    abandon_dispositions: Vec<String>,
}

fn field<'r>(value: &'r Option<std::borrow::Cow<'_, str>>) -> &'r str {
    value.as_deref().map(str::trim).unwrap_or("")
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v.eq_ignore_ascii_case(value))
}

impl Rules {
    fn is_final(&self, row: &Row<'_>) -> bool {
        let term = field(&row.term_reason);
        if term.is_empty() || term.eq_ignore_ascii_case("NONE") {
            return false;
        }
        !listed(&self.in_progress, field(&row.disposition))
    }

    /// Answered when a person took the call (an agent that is not a system pseudo-agent);
    /// otherwise abandoned when the term reason or the disposition says the caller gave up.
    fn outcome(&self, row: &Row<'_>) -> Outcome {
        if is_person(&self.system_agents, field(&row.agent)) {
            Outcome::Answered
        } else if listed(&self.abandon_term_reasons, field(&row.term_reason))
            || listed(&self.abandon_dispositions, field(&row.disposition))
        {
            Outcome::Abandoned
        } else {
            Outcome::Other
        }
    }

    fn live_state(&self, row: &Row<'_>) -> LiveState {
        if listed(&self.waiting, field(&row.disposition)) {
            LiveState::Waiting
        } else {
            LiveState::Talking
        }
    }
}

/// Whether `agent` names a person: not empty, and not one of the `system_agents`.
fn is_person(system_agents: &[String], agent: &str) -> bool {
    !agent.is_empty() && !listed(system_agents, agent)
}

/// Sorts the rows of one poll, one at a time as they are decoded, into a [`Plan`].
#[derive(Debug)]
pub struct Planner {
    plan: Plan,
    /// Ids first seen in this very poll (a transfer's second row, a row sent twice).
    fresh: HashSet<CallId, foldhash::fast::FixedState>,
    /// Ids shown in progress in this poll: a call is one caller, however many rows it has.
    live: HashSet<CallId, foldhash::fast::FixedState>,
    /// Calls pending before this poll whose rows are in this answer.
    present: HashSet<CallId, foldhash::fast::FixedState>,
    window_start: i64,
    today: i64,
    now: Timestamp,
    mode: Mode,
}

/// The seen set, the pending rows, and the rules.
#[derive(Debug)]
pub struct Deduper {
    seen: SeenSet,
    pending: HashMap<CallId, Pending, foldhash::fast::FixedState>,
    rules: Rules,
    max_pending: SignedDuration,
    tz: TimeZone,
    expired_before: i64,
}

impl Deduper {
    pub fn new(cdr: &CdrConfig, tz: TimeZone) -> Self {
        Self {
            seen: SeenSet::default(),
            pending: HashMap::default(),
            rules: Rules {
                in_progress: cdr.in_progress_dispositions.clone(),
                waiting: cdr.waiting_dispositions.clone(),
                system_agents: cdr.system_agents.clone(),
                abandon_term_reasons: cdr.abandon_term_reasons.clone(),
                abandon_dispositions: cdr.abandon_dispositions.clone(),
            },
            max_pending: SignedDuration::try_from(cdr.max_pending).unwrap_or(SignedDuration::MAX),
            tz,
            expired_before: i64::MIN,
        }
    }

    /// Restores what a previous run stored.
    pub fn restore(
        &mut self,
        seen: impl IntoIterator<Item = (CallId, i64)>,
        pending: impl IntoIterator<Item = (CallId, Pending)>,
    ) {
        self.seen.insert_many(seen);
        self.pending.extend(pending);
    }

    #[cfg(test)]
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether the call `uniq1` was counted (or primed) before: what the decoder asks to leave
    /// such rows out (see [`crate::api::RowSink::already_counted`]).
    pub fn already_counted(&self, uniq1: &str) -> bool {
        !uniq1.is_empty() && self.seen.contains(uniq1)
    }

    /// A planner for one poll's rows; nothing changes until its plan is applied.
    pub fn planner(&self, window: &Window, now: Timestamp, mode: Mode) -> Planner {
        let mut plan = Plan::default();
        let start_day = window.start_day();
        if start_day > self.expired_before {
            plan.expire_before = Some(start_day);
        }
        Planner {
            plan,
            fresh: HashSet::default(),
            live: HashSet::default(),
            present: HashSet::default(),
            window_start: window.start,
            today: wall_secs(now.to_zoned(self.tz.clone()).datetime()).div_euclid(SECS_PER_DAY),
            now,
            mode,
        }
    }

    /// Applies a plan made by a [`Planner`], once the poll's result is stored.
    pub fn apply(&mut self, plan: &Plan) {
        if let Some(day) = plan.expire_before {
            self.expired_before = day;
            self.seen.expire_before(day);
            self.pending.retain(|_, p| p.day >= day);
        }
        self.seen.insert_many(plan.seen.iter().cloned());
        for id in &plan.pending_done {
            self.pending.remove(id);
        }
        for (id, p) in &plan.pending_added {
            self.pending.insert(id.clone(), *p);
        }
    }

    /// How many ids the seen set and the pending table will hold once `plan` is applied.
    pub fn sizes_after(&self, plan: &Plan) -> (usize, usize) {
        let (expired, expire) = match plan.expire_before {
            Some(day) => (self.seen.count_before(day), day),
            None => (0, i64::MIN),
        };
        let done: HashSet<&CallId, foldhash::fast::FixedState> = plan.pending_done.iter().collect();
        let kept = self
            .pending
            .iter()
            .filter(|(id, p)| {
                p.day >= expire && !done.contains(id) && !plan.pending_added.contains_key(*id)
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

    /// Sorts one row: whether its call counts now or is in progress. Duplicates and rejected
    /// rows are only counted in the plan.
    pub fn sort(&mut self, deduper: &Deduper, entry: &RowEntry<'_>) -> Sorted {
        let Some((row, id)) = self.new_call(deduper, entry) else {
            return Sorted::Done;
        };
        let call_date = row.call_date.as_deref().and_then(parse_call_date);
        let day = match call_date {
            Some(dt) => {
                let wall = wall_secs(dt);
                if wall < self.window_start {
                    self.plan.counts.rejected[RejectReason::BeforeWindow as usize] += 1;
                    return Sorted::Done;
                }
                wall.div_euclid(SECS_PER_DAY)
            }
            None => self.today,
        };
        let known_pending = self.present_pending(deduper, &id, day);
        let started = call_date.and_then(|dt| call_instant(dt, &deduper.tz, self.now));
        if !deduper.rules.is_final(row) {
            let pending = known_pending.unwrap_or(Pending {
                first_seen: self.now,
                day,
            });
            let since = started.unwrap_or(pending.first_seen);
            if self.now.duration_since(since) <= deduper.max_pending {
                return self.in_progress(deduper, row, id, pending, known_pending, started);
            }
        }
        if known_pending.is_some() {
            self.plan.pending_done.push(id.clone());
        }
        self.plan.pending_added.remove(&id);
        self.fresh.insert(id.clone());
        self.plan.seen.push((id, day));
        if call_date.is_none() {
            self.plan.counts.rejected[RejectReason::BadCallDate as usize] += 1;
            return Sorted::Done;
        }
        match self.mode {
            Mode::Prime => {
                self.plan.counts.duplicate += 1;
                Sorted::Done
            }
            Mode::Count => {
                self.plan.counts.new += 1;
                Sorted::Counts(CountsNow {
                    started,
                    outcome: deduper.rules.outcome(row),
                })
            }
        }
    }

    /// The row and its call id, unless the row is rejected (not an object, no `uniq1`) or its
    /// call was counted before: those only count in the plan.
    fn new_call<'e, 'a>(
        &mut self,
        deduper: &Deduper,
        entry: &'e RowEntry<'a>,
    ) -> Option<(&'e Row<'a>, CallId)> {
        let counts = &mut self.plan.counts;
        let row = match entry {
            RowEntry::Row(row) => row,
            RowEntry::NotAnObject => {
                counts.rejected[RejectReason::NotAnObject as usize] += 1;
                return None;
            }
        };
        let Some(id) = row
            .uniq1
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            counts.rejected[RejectReason::MissingUniq1 as usize] += 1;
            return None;
        };
        let id = CallId::new(id);
        if deduper.seen.contains_id(&id) || self.fresh.contains(&id) {
            counts.duplicate += 1;
            return None;
        }
        Some((row, id))
    }

    /// The call's pending entry from before this poll, if any, marked present (a row of it is
    /// in the window, `day`). When its own day leaves the window but this row (a transfer's
    /// later leg) is still in, it stays pending under this row's day.
    fn present_pending(&mut self, deduper: &Deduper, id: &CallId, day: i64) -> Option<Pending> {
        let mut known = deduper.pending.get(id).copied()?;
        self.present.insert(id.clone());
        if self
            .plan
            .expire_before
            .is_some_and(|start| known.day < start)
        {
            known.day = day;
            self.plan.pending_added.insert(id.clone(), known);
        }
        Some(known)
    }

    /// A row of a call still in progress: held back, and shown live once per call.
    fn in_progress(
        &mut self,
        deduper: &Deduper,
        row: &Row<'_>,
        id: CallId,
        pending: Pending,
        known_pending: Option<Pending>,
        started: Option<Timestamp>,
    ) -> Sorted {
        self.plan.counts.pending += 1;
        let first_row = self.live.insert(id.clone());
        if known_pending.is_none() {
            self.plan.pending_added.entry(id).or_insert(pending);
        }
        if !first_row {
            return Sorted::Done;
        }
        let state = deduper.rules.live_state(row);
        // With neither time readable, the wait is known from when we first saw it.
        let waiting_since = match state {
            LiveState::Waiting => row
                .enter_on_queue
                .as_deref()
                .and_then(parse_call_date)
                .and_then(|dt| call_instant(dt, &deduper.tz, self.now))
                .or(started)
                .or(Some(pending.first_seen)),
            LiveState::Talking => None,
        };
        Sorted::InProgress(InProgress {
            state,
            waiting_since,
        })
    }

    /// The plan of a whole answer, with the rows the decoder left out as already counted
    /// (duplicates), and the calls that were pending and left without being counted: those
    /// whose day leaves the window now, and those the answer no longer holds.
    pub fn finish(mut self, deduper: &Deduper, already_counted: u64) -> Plan {
        let plan = &mut self.plan;
        plan.counts.duplicate += already_counted;
        for (id, pending) in &deduper.pending {
            if self.present.contains(id) {
                continue;
            }
            if plan.expire_before.is_some_and(|day| pending.day < day) {
                plan.counts.dropped[DropReason::LeftWindow as usize] += 1;
            } else {
                plan.counts.dropped[DropReason::Vanished as usize] += 1;
                plan.pending_done.push(id.clone());
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
            row("1.3", "2025-05-29 11:55:00", "Answered", "NONE"),
        ];
        let (c, n) = poll(&mut d, &poll2, &w, now, Mode::Count);
        assert_eq!(c, ["1.2"]);
        assert_eq!((n.new, n.duplicate, n.pending), (1, 1, 1));
        assert_eq!(d.pending_len(), 1);
        assert_eq!(d.seen_len(), 2);
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

    #[test]
    fn a_pending_call_with_a_later_leg_in_the_window_is_not_dropped() {
        let mut d = deduper();
        let hour = Duration::from_secs(3600);
        let at = |s: &str| (ts(s), Window::at(ts(s), hour, &TimeZone::UTC));
        // The first leg on the 29th, in progress.
        let (now, w) = at("2025-05-29T23:50:00Z");
        let first = vec![row("7.1", "2025-05-29 23:40:00", "INCALL", "NONE")];
        assert_eq!(poll(&mut d, &first, &w, now, Mode::Count).1.pending, 1);
        // The 29th leaves the window; the API sends the transfer's leg of the 30th only.
        let (now, w) = at("2025-05-30T01:10:00Z");
        let second = vec![row("7.1", "2025-05-30 00:05:00", "QUEUE", "")];
        let (_, n) = poll(&mut d, &second, &w, now, Mode::Count);
        assert_eq!((n.pending, n.dropped), (1, [0, 0]));
        assert_eq!(d.pending_len(), 1);
        // Without any row in the window, it has left with its day.
        let (now, w) = at("2025-05-31T01:10:00Z");
        let (_, n) = poll(&mut d, &[], &w, now, Mode::Count);
        assert_eq!(n.dropped, [0, 1]);
        assert_eq!(d.pending_len(), 0);
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
