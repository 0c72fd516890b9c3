//! The exporter's view of its own polls: what `crocodial_up`, the poll counters and the landing
//! page report. One writer: the events of the `events` module (each both logs and counts); the
//! poller only stores and publishes the copy they wrote.

use jiff::Timestamp;

use super::aggregates::Histogram;
use crate::api::PollError;
use crate::clock::{JumpDirection, WallSecs};
use crate::vocab::Reason;
use crate::vocab::{DropReason, RowCounts};

/// Buckets of `crocodial_poll_duration_seconds`.
pub const POLL_DURATION_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// The outcome of the last poll, for the landing page.
#[derive(Debug, Clone)]
pub struct LastPoll {
    pub at: Timestamp,
    pub duration_seconds: f64,
    pub result: Result<u64, PollError>,
}

#[derive(Debug, Clone)]
pub struct Health {
    pub up: bool,
    pub last_success: Option<Timestamp>,
    pub last_poll: Option<LastPoll>,
    pub polls: u64,
    pub errors: [u64; Reason::ALL.len()],
    pub rows: RowCounts,
    pub dedup_entries: u64,
    pub pending_entries: u64,
    pub response_bytes: u64,
    pub poll_duration: Histogram,
    pub api_warnings: u64,
    /// The reason of the failure in progress, so that a failure is logged once per change.
    pub failing: Option<Reason>,
    /// Whether the last successful poll dropped calls, per [`DropReason`] (logged once per
    /// change).
    pub dropping: [bool; DropReason::ALL.len()],
    /// A poll has succeeded in this process.
    pub ready: bool,
    /// State files moved aside and started afresh, per [`RecoveryReason`].
    pub state_recoveries: [u64; RecoveryReason::ALL.len()],
    /// Restarts whose downtime reached past the query window (calls before it were lost).
    pub state_gaps: u64,
    /// How long the exporter was down before this process resumed from its state, seconds.
    pub last_downtime_seconds: Option<f64>,
    /// Failed polls since the last success.
    pub consecutive_failures: u32,
    /// Of those, the last ones in a row that failed to be stored (reason `state`).
    pub consecutive_state_failures: u32,
    /// The wait before the next poll while backing off (0 when polls succeed).
    pub backoff_seconds: f64,
    /// The configured poll interval, seconds: what says how old the last success may be.
    pub poll_interval_seconds: f64,
    /// Whether the last successful poll counted legs dated in the future (logged once per
    /// change).
    pub future_rows: bool,
    /// Jumps of the wall clock against the monotonic clock, per [`JumpDirection`].
    pub clock_jumps: [u64; JumpDirection::ALL.len()],
    /// The dialer wall-clock time the last successful poll reached (see
    /// `ingest::timeline`): what a restart forgets seen legs by.
    pub clock_reached: Option<WallSecs>,
}

/// Why a state file was moved aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryReason {
    /// Not a state file redb can read, or its contents do not decode.
    Corrupt,
    /// Written by a newer exporter with a schema this one does not know.
    NewerSchema,
    /// It cannot be read at all (permissions, a directory, an I/O error).
    Unreadable,
    /// Deleted or replaced under the running exporter: written anew, whole, from memory.
    Replaced,
}

impl RecoveryReason {
    pub const ALL: [RecoveryReason; 4] = [
        RecoveryReason::Corrupt,
        RecoveryReason::NewerSchema,
        RecoveryReason::Unreadable,
        RecoveryReason::Replaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryReason::Corrupt => "corrupt",
            RecoveryReason::NewerSchema => "newer_schema",
            RecoveryReason::Unreadable => "unreadable",
            RecoveryReason::Replaced => "replaced",
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self {
            up: false,
            last_success: None,
            last_poll: None,
            polls: 0,
            errors: [0; Reason::ALL.len()],
            rows: RowCounts::default(),
            dedup_entries: 0,
            pending_entries: 0,
            response_bytes: 0,
            poll_duration: Histogram::new(POLL_DURATION_BUCKETS),
            api_warnings: 0,
            failing: None,
            dropping: [false; DropReason::ALL.len()],
            ready: false,
            state_recoveries: [0; RecoveryReason::ALL.len()],
            state_gaps: 0,
            last_downtime_seconds: None,
            consecutive_failures: 0,
            consecutive_state_failures: 0,
            backoff_seconds: 0.0,
            poll_interval_seconds: 0.0,
            future_rows: false,
            clock_jumps: [0; JumpDirection::ALL.len()],
            clock_reached: None,
        }
    }
}

impl Health {
    /// Ready once a poll has succeeded in this process.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Healthy unless the last [`STATE_FAILURES_UNHEALTHY`] polls in a row could not be
    /// stored: a state file that keeps failing (a disk error the process does not get over)
    /// is a reason for a liveness probe to restart the exporter.
    pub fn healthy(&self) -> bool {
        self.consecutive_state_failures < STATE_FAILURES_UNHEALTHY
    }
}

/// Polls in a row that could not be stored before `/-/healthy` fails.
pub const STATE_FAILURES_UNHEALTHY: u32 = 5;
