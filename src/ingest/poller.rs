//! One poll: fetch the window, decode it as it arrives, sort the rows, store the result, then
//! show it.
//!
//! The poller keeps a working copy of the aggregates and health. A poll counts each row into
//! the working copy as soon as the row has arrived (so neither the body nor its rows are ever
//! held whole), writes what changed to the state file in one transaction, and only then
//! publishes a copy of the working aggregates for /metrics (a short write lock: a scrape never
//! waits for a request or a commit). If the body breaks off, turns out to be an error, or the
//! commit fails, the working copy is reset from the published one and the poll counts as
//! failed: nothing moved.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::dedup::{Deduper, Mode, Planner, Sorted};
use super::schedule::backoff;
use super::timeline::Timeline;
use super::window::{to_instant, DialerDay, Window};
use crate::api::{Answer, ApiClient, LegRef, PollError, Row, RowEntry, RowSink, StreamDecoder};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::events::{
    ClockJumped, DurationsBelowQueueTime, LabelOverflowed, PollFailed, PollSucceeded, Resumed,
    StateWrittenAnew,
};
use crate::metrics::aggregates::Label;
use crate::metrics::{CdrAggregates, Health, SharedState, State};
use crate::state::{Restored, StateError, StateStore};
use crate::vocab::Reason;
use crate::vocab::{CountsNow, InProgress, Plan, RowCounts};

/// What one successful poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollReport {
    pub rows: RowCounts,
    pub response_bytes: u64,
}

pub struct Poller {
    client: ApiClient,
    deduper: Deduper,
    shared: Arc<SharedState>,
    /// The copy that is written to the store first (equal to the published one between polls).
    working: State,
    /// Shared with the blocking thread that writes each poll (redb's commit waits for the disk).
    store: Option<Arc<dyn StateStore>>,
    /// Storing the last failed poll failed too (logged once until a store succeeds).
    unstored: bool,
    clock: SharedClock,
    lookback: Duration,
    interval: Duration,
    max_backoff: Duration,
    tz: jiff::tz::TimeZone,
    max_label_values: u32,
    /// The mode of the next successful poll: [`Mode::Prime`] until one has succeeded, unless
    /// every final row is to be counted (`--once`) or state was restored.
    mode: Mode,
    /// End of the previous run's last successful poll, until this run's first success.
    resumed_from: Option<Timestamp>,
    /// The time seen pass: when seen legs may be forgotten, and whether the clock jumped.
    timeline: Timeline,
    /// Until this process's first successful poll: the day's figures are counted afresh from
    /// every leg of the day in the answer, counted before or not.
    rebuild_today: bool,
    /// How long after the last poll's start the next one starts: the interval, or the backoff.
    next_wait: Duration,
    /// [`CdrAggregates::talk_counts`] when this process started, so that the durations
    /// warning speaks of this process's legs; `None` once the warning was given.
    durations_below_since: Option<(u64, u64)>,
}

/// Answered legs counted in this process before [`DurationsBelowQueueTime`] can be said.
const DURATIONS_BELOW_MIN_LEGS: u64 = 20;

impl Poller {
    /// A poller; with a store, what it `restored` is where counting resumes.
    pub fn new(
        config: &Config,
        client: ApiClient,
        shared: Arc<SharedState>,
        clock: SharedClock,
        store: Option<Arc<dyn StateStore>>,
        restored: Option<Restored>,
    ) -> Self {
        let mut deduper = Deduper::new(&config.cdr, config.timezone.zone.clone());
        let mut working = shared.read().clone();
        let mut mode = if config.once {
            Mode::Count
        } else {
            Mode::Prime
        };
        let mut resumed_from = None;
        let mut reached = None;
        if let Some(r) = restored {
            // A file from before the time reached was stored: its newest day's start.
            reached = r.health.clock_reached.or_else(|| {
                r.remembered
                    .newest_day()
                    .map(|day| day.saturating_mul(super::window::SECS_PER_DAY))
            });
            deduper.restore(r.remembered);
            working.cdr = r.cdr;
            working.health = r.health;
            resumed_from = r.last_success;
            mode = Mode::Count;
            let (seen, pending) = deduper.sizes_after(&Plan::default());
            working.health.dedup_entries = seen as u64;
            working.health.pending_entries = pending as u64;
        }
        working.health.poll_interval_seconds = config.poll_interval.as_secs_f64();
        working.cdr.set_queue_targets(
            config.queues.clone(),
            config.staffing_window.as_secs() as i64,
        );
        let timeline = Timeline::new(
            config.timezone.zone.clone(),
            reached,
            resumed_from,
            clock.monotonic(),
        );
        let talk_counts = working.cdr.talk_counts();
        *shared.write() = working.clone();
        if store.is_some() {
            working.cdr.track_changes();
        }
        Self {
            client,
            deduper,
            shared,
            working,
            store,
            unstored: false,
            clock,
            lookback: config.lookback,
            interval: config.poll_interval,
            max_backoff: config.max_backoff,
            tz: config.timezone.zone.clone(),
            max_label_values: config.metrics.max_label_values,
            mode,
            resumed_from,
            timeline,
            rebuild_today: true,
            next_wait: config.poll_interval,
            durations_below_since: Some(talk_counts),
        }
    }

    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// Polls once and records the outcome.
    pub async fn poll(&mut self) -> Result<PollReport, PollError> {
        let started = tokio::time::Instant::now();
        let now = self.clock.now();
        let monotonic = self.clock.monotonic();
        if let Some(by) = self.timeline.read(now, monotonic) {
            ClockJumped { by }.emit(self.shared.target(), &mut self.working.health);
        }
        let mut window = Window::at(now, self.lookback, &self.tz);
        if let Some(day) = self.timeline.keep_day(now, monotonic, self.lookback) {
            window = window.keeping_day(day);
        }
        let overflow_before = self.working.cdr.label_overflow;
        let result = match self.ingest(&window, now).await {
            Ok((plan, answer, bytes)) => {
                self.commit(plan, &answer, &window, (now, monotonic), started, bytes)
                    .await
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.report_overflow(overflow_before),
            Err(error) => {
                // The rows counted before the failure are forgotten: nothing moved.
                self.reset_working();
                self.record_failure(error.clone(), started).await;
            }
        }
        result
    }

    /// Fetches the window and decodes it as it arrives: rows that count now go straight into
    /// the working aggregates, so neither the body nor its rows are ever held whole.
    async fn ingest(
        &mut self,
        window: &Window,
        now: Timestamp,
    ) -> Result<(Plan, Answer<'static>, u64), PollError> {
        let mut ingest = Ingest::new(&self.deduper, window, now, self.mode);
        let day = DialerDay::at(now, &self.tz);
        // The first poll of a day counts it afresh too: a leg dated just after the dialer's
        // midnight may have been counted just before ours (clocks drift), on the day before.
        let afresh = self.rebuild_today || self.working.cdr.today.day != Some(day.day);
        if afresh {
            ingest = ingest.rebuilding_today();
        }
        self.working
            .cdr
            .today
            .begin(day.day, day.start.as_second(), day.end.as_second(), afresh);
        self.working.cdr.live.begin_poll();
        self.working
            .cdr
            .recent
            .begin_poll(now, day.start, self.mode == Mode::Prime);
        let mut body = self.client.request(window.from, window.to).await?;
        while let Some(chunk) = body.chunk().await? {
            ingest.feed(&chunk, &self.deduper, &mut self.working.cdr)?;
        }
        let (plan, answer) = ingest.finish(&self.deduper, &mut self.working.cdr)?;
        self.working.cdr.finish_recent(now);
        Ok((plan, answer, body.length()))
    }

    /// Makes the working copy the published one again, after a poll that failed part-way.
    fn reset_working(&mut self) {
        self.working.cdr = self.shared.read().cdr.clone();
        if self.store.is_some() {
            self.working.cdr.track_changes();
        }
    }

    async fn commit(
        &mut self,
        plan: Plan,
        answer: &Answer<'_>,
        window: &Window,
        (now, monotonic): (Timestamp, Duration),
        started: tokio::time::Instant,
        response_bytes: u64,
    ) -> Result<PollReport, PollError> {
        let target = self.shared.target().to_string();
        let mut health = self.working.health.clone();
        let reached = self.timeline.reached_by(now, monotonic, plan.newest_call);
        health.clock_reached = Some(reached.wall_secs());
        let resumed = self.resumed_from.map(|since| {
            // The previous run's last success is before the window's first instant: calls
            // between the two were never asked for.
            let window_start = to_instant(
                window.from.to_datetime(jiff::civil::Time::midnight()),
                &self.tz,
            );
            let lost = window_start.is_some_and(|start| since < start);
            Resumed {
                down_seconds: now.duration_since(since).as_secs_f64().max(0.0),
                caught_up: plan.counts.new,
                lost,
            }
            .emit(&mut health)
        });
        let (seen, pending) = self.deduper.sizes_after(&plan);
        let future_ahead_secs = plan.future_ahead_secs;
        let succeeded = PollSucceeded {
            at: self.clock.now(),
            duration: started.elapsed(),
            rows: plan.counts,
            response_bytes,
            had_warnings: answer.had_warnings,
            dedup_entries: seen as u64,
            pending_entries: pending as u64,
            primed: self.mode == Mode::Prime,
            future_ahead_secs,
            clock_behind: self.timeline.behind(now),
        }
        .emit(&mut health);
        // Before the commit, so that campaign names it interns are stored with this poll. The
        // summary covers the request's days: the dialer's day only once the window starts
        // on it (before that, "today" would be two days).
        let today = now.to_zoned(self.tz.clone()).date();
        let summary: &[_] = if window.from == today {
            &answer.summary
        } else {
            &[]
        };
        self.working.cdr.set_summary(summary);
        let created = self.working.cdr.take_created();
        // The copy to publish (made outside the lock: a scrape waits only for the swap), made
        // before the commit so that the commit writes from it.
        let mut cdr = self.working.cdr.clone();
        let plan = match self.store.clone() {
            Some(store) => {
                let (plan, stored_cdr) = self.store(store, Some(plan), cdr, &mut health).await?;
                cdr = stored_cdr;
                let plan = plan.unwrap_or_default();
                self.working.cdr.clear_changes();
                cdr.clear_changes();
                self.unstored = false;
                plan
            }
            None => plan,
        };
        if let Some(resumed) = resumed {
            resumed.log(&target);
        }
        succeeded.log(&target);
        self.deduper.apply(&plan);
        self.timeline.confirm(reached);
        self.resumed_from = None;
        self.rebuild_today = false;
        self.mode = Mode::Count;
        self.next_wait = self.interval;
        self.working.health = health.clone();
        self.check_durations(&cdr);
        {
            // Held under the write lock, so that no scrape sees a new series' first value.
            let mut published = self.shared.write();
            self.shared.new_series().hold(created);
            published.cdr = cdr;
            published.health = health;
        }
        Ok(PollReport {
            rows: plan.counts,
            response_bytes,
        })
    }

    /// Stores a poll (`plan`), or the health of a failed one (no plan). A state file found
    /// deleted or replaced (or made anew for another target of it) is first written anew.
    async fn store(
        &mut self,
        store: Arc<dyn StateStore>,
        plan: Option<Plan>,
        cdr: CdrAggregates,
        health: &mut Health,
    ) -> Result<(Option<Plan>, CdrAggregates), PollError> {
        let (mut plan, mut cdr) = (plan, cdr);
        let mut written_anew = false;
        loop {
            let writer = store.clone();
            let stored_health = health.clone();
            let (written, p, c) = off_runtime(move || {
                let written = writer.commit(plan.as_ref(), &cdr, &stored_health);
                (written, plan, cdr)
            })
            .await?;
            (plan, cdr) = (p, c);
            match written {
                Ok(()) => return Ok((plan, cdr)),
                Err(e @ StateError::Replaced { .. }) if !written_anew => {
                    written_anew = true;
                    self.write_anew(store.clone(), e).await?;
                    health.state_recoveries = self.working.health.state_recoveries;
                }
                Err(e) => return Err(state_failed(e)),
            }
        }
    }

    /// Counts the recovery and writes the whole state into a file made anew, as it was
    /// published before this poll (the seen legs, the pending legs, every series, the health):
    /// the poll is then stored on top of it, in a transaction of its own.
    async fn write_anew(
        &mut self,
        store: Arc<dyn StateStore>,
        replaced: StateError,
    ) -> Result<(), PollError> {
        StateWrittenAnew {
            error: replaced.to_string(),
        }
        .emit(self.shared.target(), &mut self.working.health);
        let whole = self.deduper.whole();
        let mut published = self.shared.read().cdr.clone();
        published.all_changed();
        let health = self.working.health.clone();
        let now = self.clock.now();
        off_runtime(move || store.rewrite(&whole, &published, &health, now))
            .await?
            .map_err(state_failed)
    }

    /// Warns once when most answered legs counted in this process had a `call_duration` below
    /// their `queue_time` (see `--cdr.call-duration-includes-queue-time`).
    fn check_durations(&mut self, published: &CdrAggregates) {
        let Some((answered_at_start, below_at_start)) = self.durations_below_since else {
            return;
        };
        let (answered, below) = published.talk_counts();
        let answered = answered.saturating_sub(answered_at_start);
        let below = below.saturating_sub(below_at_start);
        if answered >= DURATIONS_BELOW_MIN_LEGS && below * 2 > answered {
            DurationsBelowQueueTime { below, answered }.emit(self.shared.target());
            self.durations_below_since = None;
        }
    }

    /// Logs each label that overflowed for the first time in this poll.
    fn report_overflow(&self, before: [u64; Label::ALL.len()]) {
        let target = self.shared.target();
        for label in Label::ALL {
            let i = label as usize;
            if before[i] == 0 && self.working.cdr.label_overflow[i] > 0 {
                LabelOverflowed {
                    label: label.as_str(),
                    max: self.max_label_values,
                }
                .emit(target);
            }
        }
    }

    async fn record_failure(&mut self, error: PollError, started: tokio::time::Instant) {
        let mut health = self.working.health.clone();
        let failures = health.consecutive_failures.saturating_add(1);
        self.next_wait = backoff(self.interval, self.max_backoff, failures, rand::random());
        PollFailed {
            at: self.clock.now(),
            duration: started.elapsed(),
            error,
            retry_in: self.next_wait,
        }
        .emit(self.shared.target(), &mut health);
        if let Some(store) = self.store.clone() {
            // Stored first, so that a crash cannot take counters back. When even that fails
            // (disk full, read-only file system), the failure is shown all the same: a
            // silent `up` of 1 would be worse than counters that a crash before the next
            // stored poll would take back to their stored values.
            let cdr = self.working.cdr.clone();
            match self.store(store, None, cdr, &mut health).await {
                Ok(_) => self.unstored = false,
                Err(e) if !self.unstored => {
                    self.unstored = true;
                    tracing::error!(target_name = self.shared.target(), error = %e, "cannot store the failed poll either; shown, not stored, until a poll is stored");
                }
                Err(e) => tracing::debug!(error = %e, "still cannot store failed polls"),
            }
        }
        self.working.health = health.clone();
        self.shared.write().health = health;
    }
}

/// Runs a write to the state file on a blocking thread, so that the wait for the disk never
/// holds a runtime worker.
async fn off_runtime<T: Send + 'static>(
    write: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PollError> {
    match tokio::task::spawn_blocking(write).await {
        Ok(written) => Ok(written),
        // A panic in redb is not a failed poll to retry forever: it goes on as the panic it
        // was, as when the commit ran on this thread (redb recovers the file at the restart).
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(state_failed(format!("the state writer stopped: {e}"))),
    }
}

/// A poll that could not be stored.
fn state_failed(e: impl std::fmt::Display) -> PollError {
    PollError::new(Reason::State, e.to_string())
}

/// The decoding and counting of one poll, fed the body's chunks as they arrive: what a poll
/// does between the request and the commit. Each row that counts now goes straight into `cdr`,
/// which the caller must throw away if this fails.
///
/// The seen set and the aggregates are lent for each chunk rather than held, so that a poll
/// awaiting its next chunk holds no borrow of them (and its future stays `Send`).
#[derive(Debug)]
pub struct Ingest {
    decoder: StreamDecoder,
    planner: Planner,
}

impl Ingest {
    pub fn new(deduper: &Deduper, window: &Window, now: Timestamp, mode: Mode) -> Self {
        Self {
            decoder: StreamDecoder::new(),
            planner: deduper.planner(window, now, mode),
        }
    }

    /// This poll counts the day's figures afresh (see [`Planner::rebuilding_today`]).
    pub fn rebuilding_today(self) -> Self {
        Self {
            planner: self.planner.rebuilding_today(),
            ..self
        }
    }

    /// Decodes, sorts and hands to `tally` the rows a chunk completes.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        deduper: &Deduper,
        tally: &mut impl Tally,
    ) -> Result<(), PollError> {
        let decoder = &mut self.decoder;
        with_sink(&mut self.planner, deduper, tally, |sink| {
            decoder.feed(chunk, sink)
        })
    }

    /// The end of the body: the plan to store and apply, and the answer (without rows).
    pub fn finish(
        mut self,
        deduper: &Deduper,
        tally: &mut impl Tally,
    ) -> Result<(Plan, Answer<'static>), PollError> {
        let decoder = self.decoder;
        let answer = with_sink(&mut self.planner, deduper, tally, |sink| {
            decoder.finish(sink)
        })?;
        Ok((self.planner.finish(deduper, answer.already_counted), answer))
    }
}

/// Where the sorted rows of an answer go: a poll counts them into its aggregates at once; a
/// backfill holds them until the moment each leg ended.
pub trait Tally {
    /// A leg that counts now.
    fn counts(&mut self, row: &Row<'_>, leg: CountsNow);
    /// A leg in progress at the poll's instant `now`.
    fn in_progress(&mut self, row: &Row<'_>, call: InProgress, now: Timestamp);
    /// A leg of the dialer's day that counted before, or that a first poll marks seen: for the
    /// day's figures alone.
    fn today(&mut self, row: &Row<'_>, leg: CountsNow);
    /// A leg counted `unfinished` before, final now: the day's figures take its outcome.
    fn finished(&mut self, row: &Row<'_>, leg: CountsNow);
}

/// A live poll's: the staffing window takes the legs too (a backfill's days have none).
impl Tally for CdrAggregates {
    fn counts(&mut self, row: &Row<'_>, leg: CountsNow) {
        self.count_row(row, leg);
        self.count_recent(row, &leg, false);
    }

    fn in_progress(&mut self, row: &Row<'_>, call: InProgress, now: Timestamp) {
        self.observe_live(row, call, now);
    }

    fn today(&mut self, row: &Row<'_>, leg: CountsNow) {
        self.count_today(row, leg);
        self.count_recent(row, &leg, true);
    }

    fn finished(&mut self, row: &Row<'_>, leg: CountsNow) {
        self.finish_today(row, leg);
    }
}

/// Runs `f` with a sink that sorts each row and hands the legs that count now, and those in
/// progress, to `tally`.
fn with_sink<T>(
    planner: &mut Planner,
    deduper: &Deduper,
    tally: &mut impl Tally,
    f: impl FnOnce(&mut RowSink<'_>) -> T,
) -> T {
    let now = planner.now();
    let replayed = planner.replayed_day();
    let mut count = |entry: RowEntry<'_>| {
        let sorted = planner.sort(deduper, &entry);
        if let RowEntry::Row(row) = &entry {
            match sorted {
                Sorted::Counts(call) => tally.counts(row, call),
                Sorted::InProgress(call) => tally.in_progress(row, call, now),
                Sorted::Today(leg) => tally.today(row, leg),
                Sorted::Finished(leg) => tally.finished(row, leg),
                Sorted::Done => {}
            }
        }
    };
    let already_counted = |leg: &LegRef<'_>| {
        !replayed.is_some_and(|day| day.has(leg.call_date)) && deduper.already_counted(leg)
    };
    f(&mut RowSink {
        already_counted: &already_counted,
        row: &mut count,
    })
}

impl super::schedule::Job for Poller {
    async fn run(&mut self) -> Duration {
        // The outcome is already recorded (and logged) by `poll`.
        let _ = self.poll().await;
        self.next_wait
    }
}
