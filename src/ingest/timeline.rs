//! The time the exporter has seen pass: what decides when seen legs are forgotten, and what
//! tells a wall clock that jumps from time passing.
//!
//! The query window follows the wall clock; forgetting legs must not. A clock stepped a day
//! ahead (an NTP correction after a VM resumes) makes the window ask for tomorrow: were the
//! seen set pruned to that window, every leg of today would count again once the clock steps
//! back. A zone changed by a reload moves the dialer's date the same way. So legs are forgotten
//! by the dialer time the exporter has *reached*: the dialer's wall clock at the last successful
//! poll (stored with the state, as read in the zone then in use), advanced since by the
//! monotonic clock or by the newest `call_date` the dialer sent, and never past the wall clock
//! now. A wall clock that runs ahead of that (stepped, or a zone moved east) keeps every leg the
//! window may ask for again once it is back; one behind it forgets by the wall clock, which is
//! only later.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::window::SECS_PER_DAY;
use crate::clock::{wall_secs, WallSecs};

/// The smallest difference between how far the wall clock and the monotonic clock moved
/// between two polls that is a jump. NTP slews a clock by far less than this between polls; a
/// step this size is a correction, a VM resumed or a hand.
pub const CLOCK_JUMP_MIN: SignedDuration = SignedDuration::from_secs(30);

const MICROS: i64 = 1_000_000;

/// See the module doc.
#[derive(Debug, Clone)]
pub struct Timeline {
    tz: TimeZone,
    /// The dialer wall-clock time reached at the last successful poll (µs), and the monotonic
    /// reading then.
    reached: Option<(i64, Duration)>,
    /// The previous poll's readings of both clocks.
    last_reading: Option<(Timestamp, Duration)>,
    /// Until this process's first poll: when the previous run last succeeded. A wall clock
    /// behind it stepped back; one ahead of it cannot be told from the downtime.
    previous_run: Option<Timestamp>,
    /// Where the wall clock was before it last stepped back, until it is there again.
    behind_until: Option<Timestamp>,
}

impl Timeline {
    /// The timeline of a process: `reached` is the dialer time the previous run had reached
    /// (none for a first start), `previous_success` when it last succeeded.
    pub fn new(
        tz: TimeZone,
        reached: Option<WallSecs>,
        previous_success: Option<Timestamp>,
        monotonic: Duration,
    ) -> Self {
        Timeline {
            tz,
            reached: reached.map(|secs| (secs.saturating_mul(MICROS), monotonic)),
            last_reading: None,
            previous_run: previous_success,
            behind_until: None,
        }
    }

    /// Reads both clocks at a poll's start: how far the wall clock jumped against the
    /// monotonic clock since the previous poll's reading (positive: forward), if it did.
    pub fn read(&mut self, now: Timestamp, monotonic: Duration) -> Option<SignedDuration> {
        let previous_run = self.previous_run.take();
        let jump = match (self.last_reading, previous_run) {
            (Some((then, monotonic_then)), _) => {
                let passed = SignedDuration::try_from(monotonic.saturating_sub(monotonic_then))
                    .unwrap_or(SignedDuration::MAX);
                let skew = now.duration_since(then).saturating_sub(passed);
                (skew.abs() >= CLOCK_JUMP_MIN).then_some(skew)
            }
            (None, Some(previous)) => {
                let skew = now.duration_since(previous);
                (skew <= -CLOCK_JUMP_MIN).then_some(skew)
            }
            (None, None) => None,
        };
        if let Some(by) = jump.filter(|by| by.is_negative()) {
            let was = now.checked_sub(by).unwrap_or(Timestamp::MAX);
            self.behind_until = Some(self.behind_until.map_or(was, |t| t.max(was)));
        }
        if self.behind_until.is_some_and(|t| now >= t) {
            self.behind_until = None;
        }
        self.last_reading = Some((now, monotonic));
        jump
    }

    /// How far the wall clock is behind where it was before it last stepped back, until it
    /// is there again: a call dated ahead of the clock then is the clock's doing, not the
    /// zone's.
    pub fn behind(&self, now: Timestamp) -> Option<SignedDuration> {
        self.behind_until
            .map(|t| t.duration_since(now))
            .filter(|d| d.is_positive())
    }

    /// The dialer time reached now: the last poll's, advanced by the monotonic clock, never
    /// past the wall clock (µs).
    fn trusted(&self, now: i64, monotonic: Duration) -> Option<i64> {
        self.reached.map(|(wall, then)| {
            let passed =
                i64::try_from(monotonic.saturating_sub(then).as_micros()).unwrap_or(i64::MAX);
            wall.saturating_add(passed).min(now)
        })
    }

    /// The first day whose legs must be remembered (days since 1970-01-01, dialer wall
    /// clock): the day of the time reached, less the lookback. `None` before anything was
    /// reached: then there is nothing remembered that a window could send again.
    pub fn keep_day(&self, now: Timestamp, monotonic: Duration, lookback: Duration) -> Option<i64> {
        let lookback = i64::try_from(lookback.as_micros()).unwrap_or(i64::MAX);
        self.trusted(self.wall_micros(now), monotonic).map(|t| {
            t.saturating_sub(lookback)
                .div_euclid(MICROS)
                .div_euclid(SECS_PER_DAY)
        })
    }

    /// What a successful poll at `now` reached, its answer's newest `call_date` being
    /// `newest_call`: to [`Timeline::confirm`] once the poll is stored.
    pub fn reached_by(
        &self,
        now: Timestamp,
        monotonic: Duration,
        newest_call: Option<WallSecs>,
    ) -> Reached {
        let now = self.wall_micros(now);
        let clock = self.trusted(now, monotonic).unwrap_or(now);
        let data = newest_call.map(|secs| secs.saturating_mul(MICROS).min(now));
        Reached {
            micros: data.map_or(clock, |data| clock.max(data)),
            monotonic,
        }
    }

    /// A stored poll reached `reached`.
    pub fn confirm(&mut self, reached: Reached) {
        self.reached = Some((reached.micros, reached.monotonic));
    }

    fn wall_micros(&self, now: Timestamp) -> i64 {
        let dt = now.to_zoned(self.tz.clone()).datetime();
        wall_secs(dt)
            .saturating_mul(MICROS)
            .saturating_add(i64::from(dt.subsec_nanosecond() / 1000))
    }
}

/// The dialer time a poll reached, made by [`Timeline::reached_by`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    micros: i64,
    monotonic: Duration,
}

impl Reached {
    /// Dialer wall-clock seconds, as the state stores it.
    pub fn wall_secs(self) -> WallSecs {
        self.micros.div_euclid(MICROS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const H: Duration = Duration::from_secs(3600);

    fn day(s: &str) -> i64 {
        wall_secs(s.parse().unwrap()).div_euclid(SECS_PER_DAY)
    }

    #[test]
    fn a_step_ahead_keeps_the_days_a_step_back_brings_back() {
        let mut t = Timeline::new(TimeZone::UTC, None, None, Duration::ZERO);
        let now = ts("2026-03-10T22:00:00Z");
        assert_eq!(t.read(now, Duration::ZERO), None);
        assert_eq!(t.keep_day(now, Duration::ZERO, H), None);
        t.confirm(t.reached_by(now, Duration::ZERO, None));
        // Ten seconds pass while the wall clock jumps a day.
        let stepped = ts("2026-03-11T22:00:10Z");
        let mono = Duration::from_secs(10);
        assert_eq!(t.read(stepped, mono), Some(SignedDuration::from_hours(24)));
        assert_eq!(t.keep_day(stepped, mono, H), Some(day("2026-03-10")));
        t.confirm(t.reached_by(stepped, mono, None));
        // Back: a backward jump, and the days kept are still today's.
        let back = ts("2026-03-10T22:00:20Z");
        let mono = Duration::from_secs(20);
        assert_eq!(t.read(back, mono), Some(SignedDuration::from_hours(-24)));
        assert_eq!(t.behind(back), Some(SignedDuration::from_hours(24)));
        assert_eq!(t.keep_day(back, mono, H), Some(day("2026-03-10")));
    }

    #[test]
    fn time_passing_is_no_jump_and_forgets_by_the_clock() {
        let mut t = Timeline::new(TimeZone::UTC, None, None, Duration::ZERO);
        let mut now = ts("2026-03-10T23:00:00Z");
        let mut mono = Duration::ZERO;
        for _ in 0..400 {
            assert_eq!(t.read(now, mono), None);
            t.confirm(t.reached_by(now, mono, None));
            now = now
                .checked_add(SignedDuration::from_millis(15_300))
                .unwrap();
            mono += Duration::from_millis(15_300);
        }
        // 400 polls 15.3 s apart: past 00:42, so with a 30 min lookback yesterday is gone.
        assert_eq!(t.keep_day(now, mono, H / 2), Some(day("2026-03-11")));
    }

    #[test]
    fn the_dialer_s_rows_move_the_time_reached_after_a_restart() {
        // A restart after a night down: the previous run reached 20:00 the day before.
        let reached = wall_secs("2026-03-10T20:00:00".parse().unwrap());
        let previous = ts("2026-03-10T20:00:00Z");
        let mut t = Timeline::new(TimeZone::UTC, Some(reached), Some(previous), Duration::ZERO);
        let now = ts("2026-03-11T09:00:00Z");
        assert_eq!(t.read(now, Duration::ZERO), None);
        assert_eq!(t.keep_day(now, Duration::ZERO, H), Some(day("2026-03-10")));
        let newest = wall_secs("2026-03-11T08:59:00".parse().unwrap());
        t.confirm(t.reached_by(now, Duration::ZERO, Some(newest)));
        assert_eq!(t.keep_day(now, Duration::ZERO, H), Some(day("2026-03-11")));
    }

    #[test]
    fn a_restart_behind_the_previous_run_is_a_backward_jump() {
        let previous = ts("2026-03-10T20:00:00Z");
        let mut t = Timeline::new(TimeZone::UTC, None, Some(previous), Duration::ZERO);
        let now = ts("2026-03-10T19:00:00Z");
        assert_eq!(
            t.read(now, Duration::ZERO),
            Some(SignedDuration::from_hours(-1))
        );
        assert_eq!(t.behind(now), Some(SignedDuration::from_hours(1)));
        let later = ts("2026-03-10T20:00:01Z");
        assert_eq!(t.read(later, H), None);
        assert_eq!(t.behind(later), None);
    }

    #[test]
    fn a_zone_moved_east_keeps_the_dialer_s_day() {
        // The previous run, in New York, reached 20:00 on the 10th; the zone is now Kiritimati
        // (UTC+14), where it is already the 11th.
        let reached = wall_secs("2026-03-10T20:00:00".parse().unwrap());
        let tz = TimeZone::get("Pacific/Kiritimati").unwrap();
        let t = Timeline::new(tz, Some(reached), None, Duration::ZERO);
        let now = ts("2026-03-11T00:00:30Z");
        assert_eq!(
            t.keep_day(now, Duration::from_secs(30), H),
            Some(day("2026-03-10"))
        );
    }
}
