//! Wall-clock time, injectable so that midnight, DST, expiry and clock steps are tested without
//! sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// Where "now" comes from. The poll *schedule* uses tokio's clock; this is the wall clock that
/// decides the query window, pending expiry and timestamps.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Time passed since an arbitrary origin, by a clock that is never stepped: what tells a
    /// wall clock that jumps (an NTP correction, a hand, a VM resumed) from time passing.
    fn monotonic(&self) -> Duration;
}

/// The host's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that only moves when told to; shared by tests between the exporter and the simulator.
/// [`ManualClock::set`] and [`ManualClock::advance`] are time passing (the monotonic reading
/// moves with the wall clock); [`ManualClock::step`] moves the wall clock alone, as an NTP step
/// does.
#[derive(Debug, Clone)]
pub struct ManualClock {
    micros: Arc<AtomicI64>,
    monotonic_micros: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            micros: Arc::new(AtomicI64::new(start.as_microsecond())),
            monotonic_micros: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Time passes until `to` (a `to` in the past steps the wall clock back).
    pub fn set(&self, to: Timestamp) {
        let before = self.micros.swap(to.as_microsecond(), Ordering::SeqCst);
        let passed = to.as_microsecond().saturating_sub(before).max(0);
        self.monotonic_micros.fetch_add(passed, Ordering::SeqCst);
    }

    /// Time passes by `by`.
    pub fn advance(&self, by: SignedDuration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
        self.monotonic_micros
            .fetch_add(micros.max(0), Ordering::SeqCst);
    }

    /// The wall clock jumps by `by` (either way) while no time passes.
    pub fn step(&self, by: SignedDuration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_microsecond(self.micros.load(Ordering::SeqCst)).unwrap_or(Timestamp::MAX)
    }

    fn monotonic(&self) -> Duration {
        let micros = self.monotonic_micros.load(Ordering::SeqCst);
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    }
}

/// Which way the wall clock jumped against the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JumpDirection {
    Forward,
    Backward,
}

impl JumpDirection {
    pub const ALL: [JumpDirection; 2] = [JumpDirection::Forward, JumpDirection::Backward];

    pub fn as_str(self) -> &'static str {
        match self {
            JumpDirection::Forward => "forward",
            JumpDirection::Backward => "backward",
        }
    }
}

/// A shareable clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// Dialer-local wall-clock time as seconds since 1970-01-01 00:00 (no zone, no DST: the clock on
/// the dialer's wall). Used for ordering and expiry, where the API itself compares wall-clock
/// strings; `ingest::window::to_instant` turns one into a real instant where one is needed.
pub type WallSecs = i64;

/// A civil time as [`WallSecs`].
pub fn wall_secs(dt: jiff::civil::DateTime) -> WallSecs {
    // A civil time read at offset zero: a plain count of wall-clock seconds.
    jiff::tz::Offset::UTC
        .to_timestamp(dt)
        .map(|t| t.as_second())
        .unwrap_or(0)
}
