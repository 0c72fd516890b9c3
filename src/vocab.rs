//! The words the layers share: what a call is (its id), how it ended and what it does while in
//! progress, what one poll made of its rows and why a row or call was not counted, the calls
//! kept pending, and why a poll failed. A leaf module: it imports nothing of the exporter, and
//! every layer may import it.

use std::collections::HashMap;
use std::fmt;

use jiff::Timestamp;

/// How a counted leg ended, as contact centers count it: offered calls are the answered, the
/// abandoned, the timed-out and the unfinished ones; the rest (after hours, no agent logged in,
/// filtered, or nothing the rules know) never queued for an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A person took the call.
    Answered,
    /// The caller hung up before anyone took the call (in queue, or while an agent's phone
    /// rang).
    Abandoned,
    /// Never queued, or fits no rule.
    Other,
    /// The queue gave up on the caller (queue or hold timeout, closing time).
    TimedOut,
    /// The row never became final (still `QUEUE`, `INCALL`... at `--cdr.max-pending`): offered,
    /// neither answered nor abandoned, as the platform's own report counts such a row in its
    /// total. Its values are not final, so it enters no histogram.
    Unfinished,
}

impl Outcome {
    /// In the order of their stored ids: later outcomes come last, so older state files keep
    /// their ids.
    pub const ALL: [Outcome; 5] = [
        Outcome::Answered,
        Outcome::Abandoned,
        Outcome::Other,
        Outcome::TimedOut,
        Outcome::Unfinished,
    ];

    /// Offered to an agent: queued, whatever came of it.
    pub fn offered(self) -> bool {
        self != Outcome::Other
    }

    /// The value of the `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Other => "other",
            Outcome::TimedOut => "timed_out",
            Outcome::Unfinished => "unfinished",
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
    /// The caller waits in queue (an agent's phone may be ringing).
    Waiting,
    /// The caller talks to an agent.
    Talking,
    /// The caller has hung up and the agent is choosing the disposition.
    Wrapup,
}

impl LiveState {
    pub const ALL: [LiveState; 3] = [LiveState::Waiting, LiveState::Talking, LiveState::Wrapup];

    /// The value of the `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveState::Waiting => "waiting",
            LiveState::Talking => "talking",
            LiveState::Wrapup => "wrapup",
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

    /// The Unix second in an Asterisk-shaped id (`EPOCH.SEQUENCE`): when the call began.
    pub fn epoch(&self) -> Option<i64> {
        match self {
            CallId::Packed(p) => Some((p >> 31) as i64),
            CallId::Text(_) => None,
        }
    }
}

/// One leg of a call: its row in one queue, identified by the call's `uniq1` with the row's
/// `call_date` and `queue` (a transfer gives a call a second row with the same `uniq1`, its own
/// `call_date` and its own queue). Built by `ingest::seen`, which numbers the queues: packed
/// (the packed id's two halves, then the second of the day and the queue's number) when it
/// can be, else the three fields' text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LegKey {
    Packed([u32; 3]),
    Text(Box<str>),
}

impl LegKey {
    /// The packed call id of a packed leg.
    pub fn packed_call(&self) -> Option<u64> {
        match self {
            LegKey::Packed([hi, lo, _]) => Some(u64::from(*hi) << 32 | u64::from(*lo)),
            LegKey::Text(_) => None,
        }
    }
}

// One write for a packed leg: the derived hash of an array writes its length and its bytes,
// and a poll hashes every leg several times.
impl std::hash::Hash for LegKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            LegKey::Packed([hi, lo, tag]) => {
                state.write_u128(u128::from(*hi) << 64 | u128::from(*lo) << 32 | u128::from(*tag))
            }
            LegKey::Text(t) => t.hash(state),
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
    /// Legs counted whose `call_date` is more than [`FUTURE_TOLERANCE_SECS`] ahead of the
    /// dialer's clock as the exporter computes it (a wrong `--api.timezone`).
    pub future: u64,
}

/// How far ahead of the dialer's computed clock a `call_date` may be before the row counts as
/// dated in the future: clocks drift, a zone does not.
pub const FUTURE_TOLERANCE_SECS: i64 = 300;

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
        self.future += other.future;
    }
}

/// A leg seen in progress: when it was first seen, and the wall-clock day it belongs to.
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
    /// Legs seen for the first time (counted, or marked seen by priming), with their day.
    pub seen: Vec<(LegKey, i64)>,
    /// Queue names first met in this poll, numbered on from the seen set's table.
    pub new_queues: Vec<Box<str>>,
    pub pending_added: HashMap<LegKey, Pending, foldhash::fast::FixedState>,
    pub pending_done: Vec<LegKey>,
    /// Forget every day before this one.
    pub expire_before: Option<i64>,
    /// The furthest ahead of the dialer's computed clock a counted leg was dated, seconds.
    pub future_ahead_secs: Option<i64>,
    /// Legs of the day counted `unfinished` in this poll, and those of them that came back
    /// final: the day's figures follow the platform's report as they finish.
    pub unfinished_added: Vec<LegKey>,
    pub unfinished_done: Vec<LegKey>,
    /// The poll counts the day afresh (a process's first), or a new day: the legs watched
    /// before it are found again, or of no figures any more.
    pub unfinished_reset: bool,
    /// The dialer's day of the poll (days since 1970-01-01, wall clock).
    pub today: i64,
    /// The newest `call_date` of the rows sorted (dialer wall-clock seconds): how far the
    /// dialer's own clock has been seen to reach.
    pub newest_call: Option<i64>,
}

/// What a previous run left of the seen set and the pending legs, as the state file stores it.
#[derive(Debug, Default)]
pub struct Remembered {
    /// The seen set's queue names, in their numbering.
    pub queues: Vec<Box<str>>,
    pub legs: Vec<(LegKey, i64)>,
    /// Call ids a state file from before legs remembered.
    pub legacy_calls: Vec<(CallId, i64)>,
    pub pending: Vec<(LegKey, Pending)>,
    /// The first day still remembered: earlier days were forgotten.
    pub expired_before: Option<i64>,
}

impl Remembered {
    /// The newest day of a leg or call remembered (days since 1970-01-01, wall clock).
    pub fn newest_day(&self) -> Option<i64> {
        let legs = self.legs.iter().map(|(_, day)| *day);
        let calls = self.legacy_calls.iter().map(|(_, day)| *day);
        let pending = self.pending.iter().map(|(_, p)| p.day);
        legs.chain(calls).chain(pending).max()
    }
}

/// A row whose leg counts now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountsNow {
    /// When the leg started, if its `call_date` was readable.
    pub started: Option<Timestamp>,
    /// When it ended, as far as its row tells (with `started`): `call_duration` after it
    /// started, or `--cdr.max-pending` after for a leg counted as it stands, never after the
    /// poll. What a backfill counts it at.
    pub ended: Option<Timestamp>,
    pub outcome: Outcome,
    /// No other leg of the call was counted before: the call counts as one distinct call.
    pub first_leg: bool,
    /// Of an answered leg with a readable `call_duration`: its talk time.
    pub talk_seconds: Option<f64>,
    /// The leg's `call_duration` was below its `queue_time` (talk time 0).
    pub duration_below_queue_time: bool,
    /// Its `call_date` is on the dialer's date of the poll: it is in the day's figures.
    pub today: bool,
    /// In the day's figures, it is the first leg of a call.
    pub new_call_today: bool,
}

/// A row whose leg is still in progress: what the live queue gauges show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InProgress {
    pub state: LiveState,
    /// For a waiting caller: when they entered the queue (`enter_on_queue`, else `call_date`,
    /// else when the exporter first saw the call).
    pub waiting_since: Option<Timestamp>,
    /// When the leg started (`call_date`), if readable.
    pub started: Option<Timestamp>,
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

/// A URL without its query or credentials, for logs and errors.
pub fn redacted_url(url: &url::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}
