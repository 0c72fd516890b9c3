//! The query window and the dialer's wall-clock timestamps.
//!
//! The API filters by *day* in the dialer's own zone, and compares `call_date` strings against
//! the bare date strings. So the window is a range of dialer-local days: `fromDate` is the day of
//! (now − lookback) and `toDate` is tomorrow, which covers today under either reading of whether
//! `toDate` is inclusive. Every row the API can send has a `call_date` on or after `fromDate`
//! 00:00 wall-clock time; ids are forgotten once their day leaves the window.

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::clock::{wall_secs, WallSecs};

pub const SECS_PER_DAY: i64 = 86_400;

/// The days one request asks for, and the days whose legs are remembered after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Date,
    pub to: Date,
    /// `from` at 00:00, wall clock.
    pub start: WallSecs,
    /// The first day whose legs stay remembered: `from` for a poll; for a backfill's day,
    /// the live window's first day when that is earlier, so that the state a backfill writes
    /// holds every leg a live exporter's first poll sees again.
    pub keep_from: Date,
    /// The answer holds every day from `from` on, as a poll's does: a leg pending on one of
    /// those days that is missing from it has vanished. A backfill's day answers for that day
    /// alone, and says nothing of pending legs of other days.
    pub open_ended: bool,
}

impl Window {
    pub fn at(now: Timestamp, lookback: Duration, tz: &TimeZone) -> Window {
        let lookback = SignedDuration::try_from(lookback).unwrap_or(SignedDuration::MAX);
        let earliest = now.checked_sub(lookback).unwrap_or(Timestamp::MIN);
        let from = earliest.to_zoned(tz.clone()).date();
        let today = now.to_zoned(tz.clone()).date();
        let to = today.tomorrow().unwrap_or(today);
        Window {
            keep_from: from,
            open_ended: true,
            ..Window::days(from, to)
        }
    }

    /// The days from `from` up to `to` (excluded), as a backfill asks for them; legs are
    /// remembered from `from` on (see [`Window::keeping_from`]).
    pub fn days(from: Date, to: Date) -> Window {
        Window {
            from,
            to,
            start: wall_day_start(from),
            keep_from: from,
            open_ended: false,
        }
    }

    /// The same request, remembering legs from `day` on when that is earlier than `from`.
    pub fn keeping_from(self, day: Date) -> Window {
        Window {
            keep_from: day.min(self.from),
            ..self
        }
    }

    /// The same request, remembering legs from the wall-clock `day` (days since 1970-01-01)
    /// on when that is earlier than `from`.
    pub fn keeping_day(self, day: i64) -> Window {
        let date = jiff::civil::date(1970, 1, 1)
            .checked_add(jiff::Span::new().try_days(day).unwrap_or_default())
            .unwrap_or(Date::MIN);
        self.keeping_from(date)
    }

    /// The wall-clock day (days since 1970-01-01) of `from`.
    pub fn start_day(&self) -> i64 {
        self.start.div_euclid(SECS_PER_DAY)
    }

    /// The wall-clock day of `keep_from`: legs of earlier days are forgotten.
    pub fn keep_day(&self) -> i64 {
        wall_day_start(self.keep_from).div_euclid(SECS_PER_DAY)
    }

    /// The wall-clock day of `to`.
    pub fn end_day(&self) -> i64 {
        wall_day_start(self.to).div_euclid(SECS_PER_DAY)
    }
}

/// The dialer's date at an instant: its wall-clock day (days since 1970-01-01) and the instants
/// it begins and ends (23 or 25 hours apart when DST changes that day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialerDay {
    pub day: i64,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl DialerDay {
    pub fn at(now: Timestamp, tz: &TimeZone) -> DialerDay {
        let date = now.to_zoned(tz.clone()).date();
        let midnight = |d: Date| d.to_zoned(tz.clone()).map(|z| z.timestamp()).unwrap_or(now);
        DialerDay {
            day: wall_day_start(date).div_euclid(SECS_PER_DAY),
            start: midnight(date),
            end: date.tomorrow().map_or(Timestamp::MAX, midnight),
        }
    }
}

fn wall_day_start(day: Date) -> WallSecs {
    wall_secs(day.to_datetime(jiff::civil::Time::midnight()))
}

/// Parses `YYYY-MM-DD HH:MM:SS` (a `T` separator and fractional seconds are accepted).
/// `0000-00-00 00:00:00`, empty and malformed dates give `None`.
pub fn parse_call_date(s: &str) -> Option<DateTime> {
    let b = s.trim().as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i32> {
        b[range].iter().try_fold(0i32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i32::from(c - b'0'))
        })
    };
    let year = i16::try_from(num(0..4)?).ok()?;
    let month = i8::try_from(num(5..7)?).ok()?;
    let day = i8::try_from(num(8..10)?).ok()?;
    let hour = i8::try_from(num(11..13)?).ok()?;
    let minute = i8::try_from(num(14..16)?).ok()?;
    let second = i8::try_from(num(17..19)?).ok()?;
    DateTime::new(year, month, day, hour, minute, second, 0).ok()
}

/// The instant of a dialer-local wall-clock time. In the hour a DST change repeats, the earlier
/// instant is taken; in the hour it skips, the time is read with the offset before the gap.
pub fn to_instant(dt: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    tz.to_ambiguous_timestamp(dt).compatible().ok()
}

/// The instant a call stamped `dt` started, as seen at `now`. In the hour a fall-back
/// repeats, `01:30` is two instants an hour apart: the later one is taken unless it is still
/// to come (then the call can only be the earlier one). So a call held back is never counted
/// early at `--cdr.max-pending` (at worst an hour late), and the newest call's start is never
/// in the future. A time in the hour a spring-forward skips reads likewise (the later reading
/// is the one with the offset before the gap).
pub fn call_instant(dt: DateTime, tz: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    match ambiguous.later() {
        Ok(later) if later <= now => Some(later),
        _ => ambiguous.earlier().ok(),
    }
}

/// [`call_instant`], told by the call's own clock where it can be: an Asterisk `uniq1` is
/// `EPOCH.SEQUENCE`, the Unix second the call's channel was made, and no leg of a call starts
/// before its call. So of the two readings of a time in the repeated hour, the earlier one that
/// is not before the call's epoch (less [`EPOCH_SKEW_SECS`]) is the leg's. A backfill of a
/// fall-back night, whose `now` is past both readings, keeps the two hours apart this way.
pub fn leg_instant(
    dt: DateTime,
    tz: &TimeZone,
    now: Timestamp,
    call_epoch: Option<i64>,
) -> Option<Timestamp> {
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    if let (Some(epoch), Ok(earlier), Ok(later)) =
        (call_epoch, ambiguous.earlier(), ambiguous.later())
    {
        let not_before = epoch - EPOCH_SKEW_SECS;
        // An id whose epoch is nowhere near the call (another numbering, a test's "1.1") says
        // nothing of it.
        let plausible = (earlier.as_second() - MAX_CALL_SECS..=later.as_second() + EPOCH_SKEW_SECS)
            .contains(&epoch);
        if earlier != later && plausible {
            if let Some(t) = [earlier, later]
                .into_iter()
                .find(|t| t.as_second() >= not_before && *t <= now)
            {
                return Some(t);
            }
        }
    }
    call_instant(dt, tz, now)
}

/// How far the dialer's `call_date` clock may run behind the epoch in `uniq1` (both are the
/// dialer's clock; a second apart at most in practice).
pub const EPOCH_SKEW_SECS: i64 = 60;
/// How long before a leg its call can have begun, for the epoch in `uniq1` to be the call's.
const MAX_CALL_SECS: i64 = 2 * SECS_PER_DAY;

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn window_across_midnight_in_a_non_utc_zone() {
        let ny = TimeZone::get("America/New_York").unwrap();
        // 2025-05-30 03:30 UTC is 2025-05-29 23:30 in New York (EDT, -4).
        let w = Window::at(
            ts("2025-05-30T03:30:00Z"),
            Duration::from_secs(6 * 3600),
            &ny,
        );
        assert_eq!((w.from, w.to), (date(2025, 5, 29), date(2025, 5, 30)));
        // One hour later it is past midnight there: tomorrow moves, 6h back is still the 29th.
        let w = Window::at(
            ts("2025-05-30T04:30:00Z"),
            Duration::from_secs(6 * 3600),
            &ny,
        );
        assert_eq!((w.from, w.to), (date(2025, 5, 29), date(2025, 5, 31)));
        // At 06:30 local the lookback no longer reaches the 29th.
        let w = Window::at(
            ts("2025-05-30T10:30:00Z"),
            Duration::from_secs(6 * 3600),
            &ny,
        );
        assert_eq!((w.from, w.to), (date(2025, 5, 30), date(2025, 5, 31)));
        assert_eq!(w.start, wall_secs(date(2025, 5, 30).at(0, 0, 0, 0)));
    }

    #[test]
    fn window_across_dst_changes() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // Spring forward: 2025-03-30 02:00 CET becomes 03:00 CEST. 01:30 UTC is 03:30 local.
        let w = Window::at(
            ts("2025-03-30T01:30:00Z"),
            Duration::from_secs(3 * 3600),
            &berlin,
        );
        assert_eq!((w.from, w.to), (date(2025, 3, 29), date(2025, 3, 31)));
        // 02:30 UTC is 04:30 CEST; 3h back is 01:30 local on the 30th (an hour was skipped).
        let w = Window::at(
            ts("2025-03-30T02:30:00Z"),
            Duration::from_secs(3 * 3600),
            &berlin,
        );
        assert_eq!((w.from, w.to), (date(2025, 3, 30), date(2025, 3, 31)));
        // Fall back: 2025-10-26 03:00 CEST becomes 02:00 CET. 23:30 UTC on the 26th is 00:30
        // on the 27th in Berlin.
        let w = Window::at(
            ts("2025-10-26T23:30:00Z"),
            Duration::from_secs(3600),
            &berlin,
        );
        assert_eq!((w.from, w.to), (date(2025, 10, 26), date(2025, 10, 28)));
        let w = Window::at(
            ts("2025-10-27T00:30:00Z"),
            Duration::from_secs(3600),
            &berlin,
        );
        assert_eq!((w.from, w.to), (date(2025, 10, 27), date(2025, 10, 28)));
    }

    #[test]
    fn call_dates() {
        let dt = parse_call_date("2025-05-29 22:23:05").unwrap();
        assert_eq!(dt, date(2025, 5, 29).at(22, 23, 5, 0));
        assert_eq!(parse_call_date("2025-05-29T22:23:05.5"), Some(dt));
        assert_eq!(parse_call_date("0000-00-00 00:00:00"), None);
        assert_eq!(parse_call_date(""), None);
        assert_eq!(parse_call_date("2025-02-30 10:00:00"), None);
        assert_eq!(parse_call_date("2025-05-29 2x:23:05"), None);
        assert_eq!(wall_secs(date(1970, 1, 2).at(0, 0, 1, 0)), 86_401);
    }

    #[test]
    fn instants_around_dst() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 02:30 on 2025-10-26 happens twice; the first (CEST, +2) is taken.
        let t = to_instant(date(2025, 10, 26).at(2, 30, 0, 0), &berlin).unwrap();
        assert_eq!(t, ts("2025-10-26T00:30:00Z"));
        // 02:30 on 2025-03-30 never happens; it is read with the offset before the gap (+1).
        let t = to_instant(date(2025, 3, 30).at(2, 30, 0, 0), &berlin).unwrap();
        assert_eq!(t, ts("2025-03-30T01:30:00Z"));
    }

    /// A backfill of New York's fall-back night, long after it: the call's epoch in `uniq1`
    /// tells the two 01:30s apart, and the dialer's day has 25 hours.
    #[test]
    fn the_call_epoch_tells_the_repeated_hours_apart() {
        let ny = TimeZone::get("America/New_York").unwrap();
        let later = ts("2025-12-01T00:00:00Z");
        let at = date(2025, 11, 2).at(1, 30, 0, 0);
        let first = ts("2025-11-02T05:30:00Z");
        let second = ts("2025-11-02T06:30:00Z");
        assert_eq!(
            leg_instant(at, &ny, later, Some(first.as_second())),
            Some(first)
        );
        assert_eq!(
            leg_instant(at, &ny, later, Some(second.as_second())),
            Some(second)
        );
        // A transfer leg of a call that began in the first 01:10 is the first 01:30.
        let begun = ts("2025-11-02T05:10:00Z").as_second();
        assert_eq!(leg_instant(at, &ny, later, Some(begun)), Some(first));
        // An epoch nowhere near the call (a test's "1.1"): the reading of call_instant.
        assert_eq!(leg_instant(at, &ny, later, Some(1)), Some(second));
        assert_eq!(leg_instant(at, &ny, later, None), Some(second));
        let day = DialerDay::at(ts("2025-11-02T12:00:00Z"), &ny);
        assert_eq!(day.start, ts("2025-11-02T04:00:00Z"));
        assert_eq!(day.end, ts("2025-11-03T05:00:00Z"));
    }

    #[test]
    fn a_call_in_a_repeated_hour_is_the_later_instant_that_has_happened() {
        let ny = TimeZone::get("America/New_York").unwrap();
        // 01:30 on 2025-11-02 is 05:30Z (EDT) and again 06:30Z (EST).
        let at = |now: &str| call_instant(date(2025, 11, 2).at(1, 30, 0, 0), &ny, ts(now));
        assert_eq!(at("2025-11-02T05:40:00Z"), Some(ts("2025-11-02T05:30:00Z")));
        assert_eq!(at("2025-11-02T06:30:00Z"), Some(ts("2025-11-02T06:30:00Z")));
        assert_eq!(at("2025-11-02T09:00:00Z"), Some(ts("2025-11-02T06:30:00Z")));
        // Outside a transition there is one reading, whatever the time.
        let plain = call_instant(
            date(2025, 11, 3).at(1, 30, 0, 0),
            &ny,
            ts("2025-01-01T00:00:00Z"),
        );
        assert_eq!(plain, Some(ts("2025-11-03T06:30:00Z")));
        // 02:30 on 2025-03-30 in Berlin never happens: 00:30Z (+2) or 01:30Z (+1).
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let at = |now: &str| call_instant(date(2025, 3, 30).at(2, 30, 0, 0), &berlin, ts(now));
        assert_eq!(at("2025-03-30T01:00:00Z"), Some(ts("2025-03-30T00:30:00Z")));
        assert_eq!(at("2025-03-30T02:00:00Z"), Some(ts("2025-03-30T01:30:00Z")));
    }
}
