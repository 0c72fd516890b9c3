//! `crocodial-exporter backfill`: past days of calls as OpenMetrics with a timestamp on every
//! sample, for `promtool tsdb create-blocks-from openmetrics`, and the state file a live
//! exporter continues from.
//!
//! The days are asked for one at a time (`fromDate` = the day, `toDate` = the next), and their
//! rows are sorted by the same [`Planner`](crate::ingest::dedup::Planner) as a poll's, so each leg counts once with the same
//! outcome, histograms and labels. A poll counts a leg when it first sees it final; a backfill
//! counts it at the moment it ended ([`CountsNow::ended`]: `call_date` plus `call_duration`),
//! the only moment its row tells, so that `increase()` over a past hour is what an exporter
//! running then would have shown, give or take the agent's wrap-up and one poll interval.
//!
//! A day's legs are held until the timeline reaches them; a leg that ends after midnight waits
//! for the next day's steps. So memory holds one day's counted legs (not their rows' other
//! fields) and the aggregates, whatever the range.
//!
//! When the range runs to today, the last request is a poll's own window at that instant, and
//! the state written is the one a poll at that instant would have left: legs of the days a
//! live poll still asks for stay in the seen set, and the legs still in progress are pending.
//! Days of that window before `--from` are marked seen without being counted, as a first poll
//! marks its window.
//!
//! Each step's families go to an `Output` (`output.rs`): one OpenMetrics file, a file per day, or a
//! remote-write receiver ([`remote_write`]); each writes a series only at the steps a history
//! needs ([`Thinning`](crate::metrics::thinning::Thinning)).

mod output;
pub mod remote_write;

use std::cmp::Reverse;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

use crate::api::{ApiClient, PollError, Row};
use crate::clock::SharedClock;
use crate::config::{ApiConfig, BackfillConfig, Config};
use crate::ingest::dedup::{Deduper, Mode};
use crate::ingest::poller::{Ingest, Tally};
use crate::ingest::schedule::backoff;
use crate::ingest::window::{to_instant, Window};
use crate::metrics::collector::counted_families;
use crate::metrics::{CdrAggregates, Health, State};
use crate::state::{self, StateError, StateStore};
use crate::vocab::{CountsNow, InProgress, Plan};
use output::{output_error, Files, Output};
use remote_write::RemoteWriteError;

/// Requests made for one day before the backfill stops.
pub const MAX_ATTEMPTS: u32 = 4;

/// Why a backfill stopped. No file is left behind: the output and the state file are written
/// under temporary names and renamed only when complete. Samples a remote write sent stay in
/// the receiver.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// A setting to fix (exit 2).
    #[error("{flag}: {message}")]
    Setting { flag: &'static str, message: String },
    #[error("{day}: {error} (after {attempts} attempts); no file was left behind")]
    Request {
        day: Date,
        error: PollError,
        attempts: u32,
    },
    #[error("{path}: {message}; no file was left behind")]
    Output { path: PathBuf, message: String },
    #[error("{0}; no file was left behind")]
    State(#[from] StateError),
    #[error("{0}; no state file was written (the samples sent stay: a new run sends the same ones again)")]
    RemoteWrite(RemoteWriteError),
    #[error("interrupted; no file was left behind")]
    Interrupted,
    #[error("{0}")]
    Setup(String),
}

impl BackfillError {
    /// The process's exit code: 2 for a setting to fix, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            BackfillError::Setting { .. } => 2,
            BackfillError::State(StateError::Unusable { .. }) => 2,
            _ => 1,
        }
    }
}

fn setting(flag: &'static str, message: impl Into<String>) -> BackfillError {
    BackfillError::Setting {
        flag,
        message: message.into(),
    }
}

/// What a finished backfill wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub from: Date,
    pub to: Date,
    /// Legs counted.
    pub legs: u64,
    /// Legs still in progress at the end, pending in the state file (or not counted without one).
    pub pending: usize,
    pub series: usize,
    pub samples: u64,
    /// The last step: the end of the range, or the instant of the last request.
    pub end: Timestamp,
}

/// Runs a backfill against `api`, reporting each day on stderr, until done or `shutdown`.
/// `None`: the state file exists and `--skip-if-state-exists` says that means done.
pub async fn run(
    config: &Config,
    backfill: &BackfillConfig,
    api: &ApiConfig,
    clock: SharedClock,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Option<Summary>, BackfillError> {
    if backfill.skip_if_state_exists && config.state_file.as_deref().is_some_and(Path::exists) {
        return Ok(None);
    }
    if let Some(path) = config.state_file.as_deref().filter(|p| p.exists()) {
        return Err(setting(
            "--state.file",
            format!(
                "{} exists: a backfill writes a new state file, and this one may be a running exporter's; choose another path, or stop that exporter and remove it",
                path.display()
            ),
        ));
    }
    let files = Files::new(config.state_file.as_deref());
    tokio::select! {
        result = backfill_into(config, backfill, api, clock, &files) => {
            match result {
                Ok(summary) => files.complete().map(|()| Some(summary)).inspect_err(|_| files.discard()),
                Err(e) => {
                    files.discard();
                    Err(e)
                }
            }
        }
        () = shutdown => {
            files.discard();
            Err(BackfillError::Interrupted)
        }
    }
}

/// The legs of one answer that count, each with the moment it ended; the rows' other fields
/// (ids, dates, numbers) are not kept.
struct Ended {
    legs: Vec<(Timestamp, Row<'static>, CountsNow)>,
    /// The request's instant: a leg whose start does not read ends then.
    now: Timestamp,
}

impl Tally for Ended {
    fn counts(&mut self, row: &Row<'_>, leg: CountsNow) {
        let own = |f: &Option<std::borrow::Cow<'_, str>>| {
            f.as_deref().map(|s| std::borrow::Cow::Owned(s.to_string()))
        };
        let kept = Row {
            uniq1: None,
            call_date: None,
            enter_on_queue: None,
            queue: own(&row.queue),
            agent: own(&row.agent),
            campaign: own(&row.campaign),
            disposition: own(&row.disposition),
            term_reason: own(&row.term_reason),
            queue_time: row.queue_time,
            call_duration: row.call_duration,
        };
        self.legs.push((leg.ended.unwrap_or(self.now), kept, leg));
    }

    /// The calls in progress are a moment's view, which a history cannot replay.
    fn in_progress(&mut self, _: &Row<'_>, _: InProgress, _: Timestamp) {}

    /// The day's figures are of a live exporter's moment, not of the history.
    fn today(&mut self, _: &Row<'_>, _: CountsNow) {}

    fn finished(&mut self, _: &Row<'_>, _: CountsNow) {}
}

/// The steps written so far, and the legs waiting for theirs.
struct Timeline {
    next: Timestamp,
    step: SignedDuration,
    target: String,
    tz: jiff::tz::TimeZone,
    state: State,
    output: Output,
    files: Files,
    /// Sorted latest first, so that the next to count is at the end.
    waiting: Vec<(Timestamp, Row<'static>, CountsNow)>,
    counted: u64,
    last: Option<Timestamp>,
}

impl Timeline {
    fn add(&mut self, ended: Ended) {
        self.waiting.extend(ended.legs);
        self.waiting.sort_by_key(|(at, ..)| Reverse(*at));
    }

    /// Counts the waiting legs that ended by `at`.
    fn count_until(&mut self, at: Timestamp) {
        while self.waiting.last().is_some_and(|(ended, ..)| *ended <= at) {
            if let Some((_, row, leg)) = self.waiting.pop() {
                self.state.cdr.count_row(&row, leg);
                self.counted += 1;
            }
        }
    }

    async fn write(&mut self, at: Timestamp, everything: bool) -> Result<(), BackfillError> {
        let families = counted_families(&self.target, &self.state);
        self.output
            .step(families, at, everything, &self.tz, &self.files)
            .await?;
        self.last = Some(at);
        Ok(())
    }

    /// Writes every step before `until`.
    async fn advance(&mut self, until: Timestamp) -> Result<(), BackfillError> {
        while self.next < until {
            let at = self.next;
            self.count_until(at);
            self.write(at, false).await?;
            self.next = at.checked_add(self.step).unwrap_or(Timestamp::MAX);
        }
        Ok(())
    }

    /// Writes the steps up to `end`, and a last one at `end` with every leg counted and every
    /// series written.
    async fn finish(&mut self, end: Timestamp) -> Result<(), BackfillError> {
        self.advance(end).await?;
        self.count_until(Timestamp::MAX);
        if self.last.is_none_or(|last| last < end) {
            self.write(end, true).await?;
        }
        Ok(())
    }
}

/// The midnight starting `day` in the dialer's zone.
fn midnight(day: Date, config: &Config) -> Result<Timestamp, BackfillError> {
    to_instant(
        day.to_datetime(jiff::civil::Time::midnight()),
        &config.timezone.zone,
    )
    .ok_or_else(|| setting("--from", format!("{day}: no such day in the dialer's zone")))
}

fn next_day(day: Date) -> Date {
    day.tomorrow().unwrap_or(day)
}

async fn backfill_into(
    config: &Config,
    backfill: &BackfillConfig,
    api: &ApiConfig,
    clock: SharedClock,
    files: &Files,
) -> Result<Summary, BackfillError> {
    let tz = &config.timezone.zone;
    let started = clock.now();
    let today = started.to_zoned(tz.clone()).date();
    let from = backfill
        .from
        .resolve(today)
        .ok_or_else(|| setting("--from", "too many days back"))?;
    let to = match backfill.to {
        Some(day) => day
            .resolve(today)
            .ok_or_else(|| setting("--to", "too many days back"))?,
        None => today,
    };
    if to > today {
        return Err(setting(
            "--to",
            format!(
                "{to} has not come yet (today is {today} in {})",
                config.timezone.name
            ),
        ));
    }
    if from > to {
        return Err(setting("--from", format!("{from} is after --to {to}")));
    }
    let live = to == today;
    if files.state.is_some() && !live {
        return Err(setting(
            "--state.file",
            format!("the range ends on {to}: a state to continue from must run to today, or the calls since would never count (leave --to out)"),
        ));
    }
    let client = ApiClient::new(api, config.timeout)
        .map_err(|e| setting("--api.url", e.to_string()))?
        .with_max_response_bytes(config.max_response_bytes);
    let store = match &files.state {
        Some((_, partial)) => {
            // A run killed before its end left its partial state: never built on.
            remove_stale(partial).map_err(|e| output_error(partial, &e))?;
            let opened = state::open(partial, &config.target, &config.metrics, started)?;
            opened.store
        }
        None => None,
    };
    let step = SignedDuration::try_from(backfill.step).unwrap_or(SignedDuration::from_secs(60));
    let output = Output::new(&backfill.output, files, step, from)?;
    let mut state = State {
        cdr: CdrAggregates::new(&config.metrics),
        health: Health::default(),
    };
    state.cdr.set_queue_targets(
        config.queues.clone(),
        config.staffing_window.as_secs() as i64,
    );
    if store.is_some() {
        state.cdr.track_changes();
    }
    let mut timeline = Timeline {
        next: midnight(from, config)?,
        step,
        target: config.target.clone(),
        tz: tz.clone(),
        state,
        output,
        files: files.clone(),
        waiting: Vec::new(),
        counted: 0,
        last: None,
    };
    let mut fetcher = Fetcher {
        client,
        deduper: Deduper::new(&config.cdr, tz.clone()),
        clock: clock.clone(),
        config,
        store: store.as_ref(),
    };
    // When the range runs to now, its last request is a poll's window, which can reach days
    // before --from: those are marked seen first, not counted, as a first poll marks its
    // window; and the legs of every day that window asks for are kept (the state's seen set).
    let live_from = live.then(|| Window::at(started, config.lookback, tz).from);
    if let Some(live_from) = live_from.filter(|d| *d < from) {
        let window = Window::days(live_from, from);
        let (plan, _) = fetcher
            .fetch(window, live_from, Mode::Prime, &mut timeline)
            .await?;
        let days = format!("{live_from} to {}", from.yesterday().unwrap_or(from));
        eprintln!(
            "{}, marked seen, not counted: before --from, in the live window",
            rows_and_calls(&days, &plan)
        );
    }
    let mut day = from;
    while day < to || (day == to && !live) {
        // The day before is kept too: a transfer's leg after midnight is not a new call.
        let keep = day.yesterday().unwrap_or(day);
        let keep = live_from.map_or(keep, |l| l.min(keep));
        let window = Window::days(day, next_day(day)).keeping_from(keep);
        let day_started = Instant::now();
        let samples = timeline.output.samples();
        let (plan, _) = fetcher
            .fetch(window, day, Mode::Count, &mut timeline)
            .await?;
        timeline.advance(midnight(next_day(day), config)?).await?;
        timeline.output.flush().await?;
        progress(
            &day.to_string(),
            &plan,
            &timeline.output,
            samples,
            day_started,
        );
        if day == to {
            break;
        }
        day = next_day(day);
    }
    let end = match live_from {
        Some(live_from) => {
            let window = Window::at(clock.now(), config.lookback, tz).keeping_from(live_from);
            let day_started = Instant::now();
            let samples = timeline.output.samples();
            let (plan, now) = fetcher
                .fetch(window, to, Mode::Count, &mut timeline)
                .await?;
            timeline.advance(now).await?;
            timeline.output.flush().await?;
            let day = format!("{to} (to now)");
            progress(&day, &plan, &timeline.output, samples, day_started);
            now
        }
        None => {
            // Legs that started on --to and ended after its midnight (at most
            // --cdr.max-pending later) are written too.
            let last = timeline.waiting.first().map(|(at, ..)| *at);
            let midnight = midnight(next_day(to), config)?;
            last.map_or(midnight, |last| last.max(midnight))
        }
    };
    timeline.finish(end).await?;
    let Timeline {
        output,
        mut state,
        counted,
        ..
    } = timeline;
    let (series, samples) = output.finish().await?;
    let (seen, pending) = fetcher.deduper.sizes_after(&Plan::default());
    if let Some(store) = &store {
        state.health.last_success = Some(end);
        state.health.dedup_entries = seen as u64;
        state.health.pending_entries = pending as u64;
        store.commit(Some(&Plan::default()), &state.cdr, &state.health)?;
    }
    drop(store);
    if !live && pending > 0 {
        eprintln!("{pending} legs were still in progress at the end of {to}: not counted");
    }
    Ok(Summary {
        from,
        to,
        legs: counted,
        pending,
        series,
        samples,
        end,
    })
}

fn remove_stale(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The day, rows, legs counted and what else is worth saying.
fn rows_and_calls(day: &str, plan: &Plan) -> String {
    let c = &plan.counts;
    let rows = c.new + c.duplicate + c.pending + c.rejected_total();
    let mut line = format!("{day}: {rows} rows, {} calls counted", c.new);
    if c.pending > 0 {
        line.push_str(&format!(", {} rows in progress", c.pending));
    }
    if c.rejected_total() > 0 {
        line.push_str(&format!(", {} rejected", c.rejected_total()));
    }
    line
}

/// One line per day on stderr: rows, calls, the samples written (or sent) and the seconds.
fn progress(day: &str, plan: &Plan, output: &Output, samples_before: u64, started: Instant) {
    let verb = match output {
        Output::Remote(_) => "sent",
        Output::Text(_) => "written",
    };
    eprintln!(
        "{}, {} samples {verb}, {:.1} s",
        rows_and_calls(day, plan),
        output.samples() - samples_before,
        started.elapsed().as_secs_f64()
    );
}

/// The requests of a backfill, each answer sorted against the seen set of the ones before.
struct Fetcher<'a> {
    client: ApiClient,
    deduper: Deduper,
    clock: SharedClock,
    config: &'a Config,
    store: Option<&'a state::Store>,
}

impl Fetcher<'_> {
    /// Asks for `window`'s days (`day` names them in errors), retrying with the poll backoff,
    /// and hands the legs that count to `timeline`; the plan is applied (and stored) before
    /// the next request. The plan, and the instant of the request that succeeded.
    async fn fetch(
        &mut self,
        window: Window,
        day: Date,
        mode: Mode,
        timeline: &mut Timeline,
    ) -> Result<(Plan, Timestamp), BackfillError> {
        let mut failures = 0;
        loop {
            match self.request(&window, mode).await {
                Ok((plan, ended)) => {
                    let now = ended.now;
                    timeline.add(ended);
                    if let Some(store) = self.store {
                        store.commit(Some(&plan), &timeline.state.cdr, &timeline.state.health)?;
                        timeline.state.cdr.clear_changes();
                    }
                    self.deduper.apply(&plan);
                    return Ok((plan, now));
                }
                Err(error) => {
                    failures += 1;
                    if failures >= MAX_ATTEMPTS {
                        return Err(BackfillError::Request {
                            day,
                            error,
                            attempts: failures,
                        });
                    }
                    let wait = backoff(
                        self.config.poll_interval,
                        self.config.max_backoff,
                        failures,
                        rand::random(),
                    );
                    eprintln!(
                        "{day}: {error}; attempt {} of {MAX_ATTEMPTS} in {}",
                        failures + 1,
                        humantime::format_duration(Duration::from_secs(wait.as_secs()))
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn request(&self, window: &Window, mode: Mode) -> Result<(Plan, Ended), PollError> {
        // Samples are stamped in milliseconds: a last step within the millisecond of the grid's
        // step before would stamp two samples of a series alike.
        let now = self.clock.now();
        let now = Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
        let mut ingest = Ingest::new(&self.deduper, window, now, mode);
        let mut ended = Ended {
            legs: Vec::new(),
            now,
        };
        let mut body = self.client.request(window.from, window.to).await?;
        while let Some(chunk) = body.chunk().await? {
            ingest.feed(&chunk, &self.deduper, &mut ended)?;
        }
        let (plan, _) = ingest.finish(&self.deduper, &mut ended)?;
        Ok((plan, ended))
    }
}
