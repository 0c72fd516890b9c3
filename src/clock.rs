//! Wall-clock time, injectable so that midnight, DST and expiry are tested without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

/// Where "now" comes from. The poll *schedule* uses tokio's clock; this is the wall clock that
/// decides the query window, pending expiry and timestamps.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The host's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to; shared by tests between the exporter and the simulator.
#[derive(Debug, Clone)]
pub struct ManualClock {
    micros: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            micros: Arc::new(AtomicI64::new(start.as_microsecond())),
        }
    }

    pub fn set(&self, to: Timestamp) {
        self.micros.store(to.as_microsecond(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: SignedDuration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_microsecond(self.micros.load(Ordering::SeqCst)).unwrap_or(Timestamp::MAX)
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
