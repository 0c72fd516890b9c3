//! Notable events of the exporter. Each is one type whose `emit` both counts it (in
//! [`Health`]) and logs it, so that logs and self-metrics never drift apart. The events of a
//! successful poll count into the copy of health stored with the poll and return their log
//! lines, written once the store has it: a poll whose commit fails logs only its failure. A
//! failure is logged at warn once when it starts or changes reason, and at debug while it goes
//! on.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::PollError;
use crate::clock::JumpDirection;
use crate::metrics::health::{Health, LastPoll, RecoveryReason};
use crate::vocab::{DropReason, Reason, RejectReason, RowCounts};

/// A poll whose answer was read and counted.
#[derive(Debug)]
pub struct PollSucceeded {
    pub at: Timestamp,
    pub duration: Duration,
    pub rows: RowCounts,
    pub response_bytes: u64,
    pub had_warnings: bool,
    pub dedup_entries: u64,
    pub pending_entries: u64,
    pub primed: bool,
    /// The furthest ahead of the dialer's computed clock a counted leg was dated, seconds.
    pub future_ahead_secs: Option<i64>,
    /// How far the wall clock is behind where it was before it stepped back, if it did and
    /// is not there again: then legs dated ahead of it are the clock's doing.
    pub clock_behind: Option<jiff::SignedDuration>,
}

impl PollSucceeded {
    /// Counts the poll in `health`, the copy that is stored with it. Its log lines wait for
    /// the store: a poll whose commit then fails never logs that it succeeded.
    pub fn emit(self, health: &mut Health) -> PollSucceededLog {
        let secs = self.duration.as_secs_f64();
        health.polls += 1;
        health.up = true;
        health.ready = true;
        health.consecutive_failures = 0;
        health.consecutive_state_failures = 0;
        health.backoff_seconds = 0.0;
        health.last_success = Some(self.at);
        health.last_poll = Some(LastPoll {
            at: self.at,
            duration_seconds: secs,
            result: Ok(self.rows.new),
        });
        health
            .poll_duration
            .observe(super::metrics::health::POLL_DURATION_BUCKETS, secs);
        health.rows.add(&self.rows);
        health.dedup_entries = self.dedup_entries;
        health.pending_entries = self.pending_entries;
        health.response_bytes = self.response_bytes;
        if self.had_warnings {
            health.api_warnings += 1;
        }
        let recovered_from = health.failing.take();
        let was_future = std::mem::replace(&mut health.future_rows, self.rows.future > 0);
        let were_dropping = DropReason::ALL.map(|reason| {
            let now = self.rows.dropped[reason as usize] > 0;
            std::mem::replace(&mut health.dropping[reason as usize], now)
        });
        PollSucceededLog {
            event: self,
            recovered_from,
            were_dropping,
            was_future,
        }
    }
}

/// The log lines of a counted poll, written once it is stored.
#[derive(Debug)]
#[must_use = "log it once the poll is stored"]
pub struct PollSucceededLog {
    event: PollSucceeded,
    /// The reason of the failure this poll ended.
    recovered_from: Option<Reason>,
    /// Whether the previous poll dropped calls, per [`DropReason`].
    were_dropping: [bool; DropReason::ALL.len()],
    /// Whether the previous poll counted legs dated in the future.
    was_future: bool,
}

impl PollSucceededLog {
    pub fn log(self, target: &str) {
        let e = &self.event;
        match self.recovered_from {
            Some(Reason::State) => tracing::info!(
                target_name = target,
                "the state file takes writes again; polls are stored and counted"
            ),
            Some(reason) => {
                tracing::info!(target_name = target, after = %reason, "API polls succeed again")
            }
            None => {}
        }
        if e.primed {
            tracing::info!(
                target_name = target,
                calls = e.rows.duplicate,
                pending = e.rows.pending,
                "first poll: calls already in the window are marked as seen, not counted; counting starts now"
            );
        }
        if e.had_warnings {
            tracing::debug!(
                target_name = target,
                "answer had PHP notices around the JSON; skipped them"
            );
        }
        log_drops_and_rejects(target, &e.rows, self.were_dropping);
        match (self.was_future, e.future_ahead_secs) {
            (false, Some(ahead)) if e.clock_behind.is_some() => tracing::warn!(
                target_name = target,
                legs = e.rows.future,
                ahead = %humantime::format_duration(Duration::from_secs(ahead.unsigned_abs())),
                clock_behind = %humantime::format_duration(e.clock_behind.map_or(Duration::ZERO, |d| d.unsigned_abs())),
                "calls are dated ahead of this host's clock, which stepped back (crocodial_clock_jumps_total), not of the dialer's zone: they count as usual; waits and the live gauges are off until the clock is right (crocodial_cdr_future_rows_total)"
            ),
            (false, Some(ahead)) => tracing::warn!(
                target_name = target,
                legs = e.rows.future,
                ahead = %humantime::format_duration(Duration::from_secs(ahead.unsigned_abs())),
                "calls are dated ahead of the dialer's clock as computed from --api.timezone: is it the dialer's zone? Waits and the live gauges are off by the difference (crocodial_cdr_future_rows_total)"
            ),
            (true, None) => tracing::info!(
                target_name = target,
                "no more calls dated ahead of the dialer's clock"
            ),
            _ => {}
        }
        tracing::debug!(
            target_name = target,
            new = e.rows.new,
            duplicate = e.rows.duplicate,
            pending = e.rows.pending,
            rejected = e.rows.rejected_total(),
            bytes = e.response_bytes,
            seconds = e.duration.as_secs_f64(),
            "poll done"
        );
    }
}

/// Logs, once per change, whether calls leave without being counted (`were_dropping`: whether
/// the previous poll dropped some, per reason), and the rejected rows at debug.
fn log_drops_and_rejects(
    target: &str,
    rows: &RowCounts,
    were_dropping: [bool; DropReason::ALL.len()],
) {
    for reason in DropReason::ALL {
        let n = rows.dropped[reason as usize];
        let was = were_dropping[reason as usize];
        match (was, n > 0) {
            (false, true) => tracing::warn!(
                target_name = target,
                reason = reason.as_str(),
                calls = n,
                "calls seen in progress left without being counted (crocodial_cdr_calls_dropped_total)"
            ),
            (true, true) => tracing::debug!(
                target_name = target,
                reason = reason.as_str(),
                calls = n,
                "calls still leaving without being counted"
            ),
            (true, false) => tracing::info!(
                target_name = target,
                reason = reason.as_str(),
                "no more calls left without being counted"
            ),
            (false, false) => {}
        }
    }
    for reason in RejectReason::ALL {
        let n = rows.rejected[reason as usize];
        if n > 0 {
            tracing::debug!(
                target_name = target,
                reason = reason.as_str(),
                rows = n,
                "rows rejected"
            );
        }
    }
}

/// The wall clock jumped against the monotonic clock between two polls (an NTP step, a VM
/// resumed, a hand), or a restart found it behind the previous run's last success.
#[derive(Debug)]
pub struct ClockJumped {
    /// Positive: forward.
    pub by: jiff::SignedDuration,
}

impl ClockJumped {
    pub fn emit(self, target: &str, health: &mut Health) {
        let direction = if self.by.is_negative() {
            JumpDirection::Backward
        } else {
            JumpDirection::Forward
        };
        health.clock_jumps[direction as usize] += 1;
        let by = humantime::format_duration(self.by.unsigned_abs());
        match direction {
            JumpDirection::Forward => tracing::error!(
                target_name = target,
                by = %by,
                "this host's clock jumped forward against its monotonic clock (an NTP step, a resumed VM or a hand): the query window follows the clock, but no seen leg is forgotten until the time has really passed, so no call counts twice if the clock comes back (crocodial_clock_jumps_total)"
            ),
            JumpDirection::Backward => tracing::error!(
                target_name = target,
                by = %by,
                "this host's clock jumped back (an NTP step or a hand): the query window asks for days already counted again, and their legs count once (crocodial_clock_jumps_total)"
            ),
        }
    }
}

/// The first successful poll after a restart that found state: how long the exporter was down
/// and how many calls it counted that were made meanwhile.
#[derive(Debug)]
pub struct Resumed {
    pub down_seconds: f64,
    pub caught_up: u64,
    /// The downtime reached past the window: calls before it cannot be recovered.
    pub lost: bool,
}

impl Resumed {
    /// Counts the downtime in `health`, the copy stored with the poll; logged once stored.
    pub fn emit(self, health: &mut Health) -> ResumedLog {
        health.last_downtime_seconds = Some(self.down_seconds);
        if self.lost {
            health.state_gaps += 1;
        }
        ResumedLog(self)
    }
}

/// The log line of a resumption, written once the poll that found it is stored.
#[derive(Debug)]
#[must_use = "log it once the poll is stored"]
pub struct ResumedLog(Resumed);

impl ResumedLog {
    pub fn log(self, target: &str) {
        let Resumed {
            down_seconds,
            caught_up,
            lost,
        } = self.0;
        let down = humantime::format_duration(Duration::from_secs(down_seconds as u64));
        if lost {
            tracing::warn!(
                target_name = target,
                down = %down,
                caught_up,
                "resumed from state after a downtime longer than the query window: calls made before the window were not recovered (raise --poll.lookback)"
            );
        } else {
            tracing::info!(target_name = target, down = %down, caught_up, "resumed from state; counted the calls made while down");
        }
    }
}

/// The state file could not be used and was moved aside (or not even that).
#[derive(Debug)]
pub struct StateRecovered {
    pub reason: RecoveryReason,
    pub message: String,
}

impl StateRecovered {
    pub fn emit(self, target: &str, health: &mut Health) {
        health.state_recoveries[self.reason as usize] += 1;
        tracing::error!(target_name = target, reason = self.reason.as_str(), error = %self.message, "state file unusable; counting starts afresh (first poll primes)");
    }
}

/// The state file was deleted or replaced under the running exporter (found at a poll's
/// commit): the whole state is written anew from memory, and nothing is lost.
#[derive(Debug)]
pub struct StateWrittenAnew {
    pub error: String,
}

impl StateWrittenAnew {
    pub fn emit(self, target: &str, health: &mut Health) {
        health.state_recoveries[RecoveryReason::Replaced as usize] += 1;
        tracing::error!(target_name = target, error = %self.error, "the state file is not the one this exporter writes: writing the whole state anew at its path, from memory (crocodial_state_recoveries_total, reason replaced)");
    }
}

/// A label reached `--metrics.max-label-values`: its further values become `__other__`.
/// (Counted in the aggregates as the values arrive; this logs the first time per label.)
#[derive(Debug)]
pub struct LabelOverflowed {
    pub label: &'static str,
    pub max: u32,
}

impl LabelOverflowed {
    pub fn emit(self, target: &str) {
        tracing::warn!(
            target_name = target,
            label = self.label,
            max = self.max,
            "label reached --metrics.max-label-values; further values are reported as __other__"
        );
    }
}

/// A poll that failed; nothing of it was counted.
#[derive(Debug)]
pub struct PollFailed {
    pub at: Timestamp,
    pub duration: Duration,
    pub error: PollError,
    /// The wait before the next poll (the backoff).
    pub retry_in: Duration,
}

impl PollFailed {
    pub fn emit(self, target: &str, health: &mut Health) {
        let secs = self.duration.as_secs_f64();
        let reason = self.error.reason;
        health.polls += 1;
        health.up = false;
        health.consecutive_failures = health.consecutive_failures.saturating_add(1);
        health.consecutive_state_failures = match reason {
            Reason::State => health.consecutive_state_failures.saturating_add(1),
            _ => 0,
        };
        health.backoff_seconds = self.retry_in.as_secs_f64();
        health.errors[reason.index()] += 1;
        health
            .poll_duration
            .observe(super::metrics::health::POLL_DURATION_BUCKETS, secs);
        if health.failing != Some(reason) {
            tracing::warn!(target_name = target, reason = %reason, error = %self.error.message, "poll failed; metrics keep their last values");
        } else {
            tracing::debug!(target_name = target, reason = %reason, error = %self.error.message, "poll still failing");
        }
        health.failing = Some(reason);
        health.last_poll = Some(LastPoll {
            at: self.at,
            duration_seconds: secs,
            result: Err(self.error),
        });
    }
}

/// Most answered legs since the start had a `call_duration` below their `queue_time`: the
/// site's `call_duration` is likely talk time only.
#[derive(Debug)]
pub struct DurationsBelowQueueTime {
    pub below: u64,
    pub answered: u64,
}

impl DurationsBelowQueueTime {
    /// Logs once; the legs are counted in `crocodial_cdr_duration_below_queue_time_total`.
    pub fn emit(self, target: &str) {
        tracing::warn!(
            target_name = target,
            below = self.below,
            answered = self.answered,
            "most answered calls have a call_duration below their queue_time: if this site's call_duration is talk time only, set --cdr.call-duration-includes-queue-time=false (talk time is 0 for these calls until then)"
        );
    }
}
