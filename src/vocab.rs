//! The words the layers share: what a call is (its id), how it ended and what it does while in
//! progress, what one poll made of its rows and why a row or call was not counted, the calls
//! kept pending, and why a poll failed. A leaf module: it imports nothing of the exporter, and
//! every layer may import it.

use std::collections::HashMap;
use std::fmt;

use jiff::Timestamp;

/// How a counted call ended, as contact centers count it: offered calls are the answered and
/// the abandoned ones; the rest (after hours, queue timeout, denied, no agent...) were never
/// offered to an agent in a way the caller could be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A person took the call.
    Answered,
    /// Nobody took it and the caller hung up while waiting.
    Abandoned,
    Other,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Answered, Outcome::Abandoned, Outcome::Other];

    /// The value of the `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Other => "other",
        }
    }

    /// The outcome stored under `id` (its position in [`Outcome::ALL`]).
    pub fn from_id(id: u32) -> Option<Outcome> {
        Outcome::ALL.get(id as usize).copied()
    }
}

/// What a call still in progress is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LiveState {
    /// The caller waits in queue.
    Waiting,
    /// The caller talks to an agent.
    Talking,
}

impl LiveState {
    pub const ALL: [LiveState; 2] = [LiveState::Waiting, LiveState::Talking];

    /// The value of the `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveState::Waiting => "waiting",
            LiveState::Talking => "talking",
        }
    }
}

/// A call id: packed when it has the Asterisk shape, else the text itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallId {
    Packed(u64),
    Text(Box<str>),
}

impl CallId {
    pub fn new(id: &str) -> CallId {
        match pack(id) {
            Some(p) => CallId::Packed(p),
            None => CallId::Text(id.into()),
        }
    }
}

/// Packs `EPOCH[.FRACTION]` (EPOCH < 2^33 without leading zeros, FRACTION at most 8 digits) as
/// `epoch << 31 | code << 27 | fraction`, where `code` is 0 for no dot, else 1 + the number of
/// fraction digits.
pub fn pack(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 || int_len > 10 || (int_len > 1 && b[0] == b'0') {
        return None;
    }
    let epoch = digits_value(&b[..int_len]);
    if epoch >= 1 << 33 {
        return None;
    }
    let (code, fraction) = match &b[int_len..] {
        [] => (0, 0),
        [b'.', frac @ ..] if frac.len() <= 8 && frac.iter().all(u8::is_ascii_digit) => {
            (1 + frac.len() as u64, digits_value(frac))
        }
        _ => return None,
    };
    Some(epoch << 31 | code << 27 | fraction)
}

/// The value of at most 10 ASCII digits.
fn digits_value(digits: &[u8]) -> u64 {
    digits.iter().fold(0, |v, d| v * 10 + u64::from(d - b'0'))
}

/// Why a row was not counted, ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The element of `rows` is not an object.
    NotAnObject,
    /// No usable `uniq1` (absent, empty, or not text).
    MissingUniq1,
    /// `call_date` is before the first day asked for: the API ignored the window, and counting
    /// such a row could count it again once its day is forgotten.
    BeforeWindow,
    /// The call is final but its `call_date` cannot be read: it has no day to be remembered
    /// under, so counting it could count it again on another day. Rejected once per call (its
    /// id is remembered under the day it was rejected).
    BadCallDate,
}

impl RejectReason {
    pub const ALL: [RejectReason; 4] = [
        RejectReason::NotAnObject,
        RejectReason::MissingUniq1,
        RejectReason::BeforeWindow,
        RejectReason::BadCallDate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingUniq1 => "missing_uniq1",
            RejectReason::BeforeWindow => "before_window",
            RejectReason::BadCallDate => "bad_call_date",
        }
    }
}

/// Why a call seen in progress left without being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its rows are no longer in the answer (deleted, or moved out of the report's filters)
    /// while it was still in progress.
    Vanished,
    /// Its day left the query window while it was still in progress (the API then no longer
    /// sends it): polls failed for longer than the window allows.
    LeftWindow,
}

impl DropReason {
    pub const ALL: [DropReason; 2] = [DropReason::Vanished, DropReason::LeftWindow];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Vanished => "vanished",
            DropReason::LeftWindow => "left_window",
        }
    }
}

/// What happened to the rows of one poll (or, summed, of all polls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub new: u64,
    pub duplicate: u64,
    pub pending: u64,
    pub rejected: [u64; RejectReason::ALL.len()],
    /// Calls seen in progress that left without being counted, by [`DropReason`].
    pub dropped: [u64; DropReason::ALL.len()],
}

impl RowCounts {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    pub fn add(&mut self, other: &RowCounts) {
        self.new += other.new;
        self.duplicate += other.duplicate;
        self.pending += other.pending;
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
    }
}

/// A call seen in progress: when it was first seen, and the wall-clock day it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub first_seen: Timestamp,
    pub day: i64,
}

/// What one poll changes in the seen set and the pending table: stored with the poll, then
/// applied to the deduper's memory once the store has it.
#[derive(Debug, Default)]
pub struct Plan {
    pub counts: RowCounts,
    /// Ids seen for the first time (counted, or marked seen by priming), with their day.
    pub seen: Vec<(CallId, i64)>,
    pub pending_added: HashMap<CallId, Pending, foldhash::fast::FixedState>,
    pub pending_done: Vec<CallId>,
    /// Forget every day before this one.
    pub expire_before: Option<i64>,
}

/// A row whose call counts now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountsNow {
    /// When the call started, if its `call_date` was readable.
    pub started: Option<Timestamp>,
    pub outcome: Outcome,
}

/// A row whose call is still in progress: what the live queue gauges show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InProgress {
    pub state: LiveState,
    /// For a waiting caller: when they entered the queue (`enter_on_queue`, else `call_date`,
    /// else when the exporter first saw the call).
    pub waiting_since: Option<Timestamp>,
}

/// Why a poll failed: the `reason` label of `crocodial_poll_errors_total`. Every reason is exported from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The API refused the credentials.
    Auth,
    /// The API answered with one of its error envelopes or plain-text errors.
    Api,
    /// The HTTP status was not 200.
    Http,
    /// The request or the body took longer than `--api.timeout`.
    Timeout,
    /// No connection (refused, DNS, TLS handshake).
    Connect,
    /// The connection broke while the body was read.
    Body,
    /// The body is larger than `--api.max-response-bytes`.
    TooLarge,
    /// The body is not an answer we can read (HTML, empty, cut short, not JSON, wrong shape).
    Decode,
    /// The answer was read but could not be stored in the state file; nothing was counted.
    State,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Auth,
        Reason::Api,
        Reason::Http,
        Reason::Timeout,
        Reason::Connect,
        Reason::Body,
        Reason::TooLarge,
        Reason::Decode,
        Reason::State,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Auth => "auth",
            Reason::Api => "api",
            Reason::Http => "http",
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Body => "body",
            Reason::TooLarge => "too_large",
            Reason::Decode => "decode",
            Reason::State => "state",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
