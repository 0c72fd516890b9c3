//! Which samples a history needs: a series gets a sample when its value changes, and otherwise
//! only as often as PromQL needs to see it.
//!
//! A live exporter is scraped every 15 s to 1 min, and every scrape stores every series. A
//! history written the same way grows with series × steps, whatever happened; most series
//! (an agent off shift, a queue's bucket above every wait) do not move for hours. The rules
//! decide what may be left out:
//!
//! - **Visible.** An instant query finds a series only if it has a sample in the 5 minutes
//!   before (Prometheus's default lookback).
//! - **Two samples in every 5 minutes.** `rate()` and `increase()` over `[5m]` (the project's
//!   rules) answer nothing for a series with one sample in the window, not 0: a queue nobody
//!   abandoned would have no abandon rate at all. So a series is written again at the latest
//!   [`REFRESH`] after its last sample, which leaves at least two in any 5-minute window.
//! - **The change where it happened.** When a value changes after steps that were left out, the
//!   old value is written at the step before too, so the change lies between the same two steps
//!   as in a history with every step, and a window that holds the new value holds the old one
//!   next to it.
//! - **From 0.** A counter or histogram series written for the first time starts with a 0 at the
//!   step before (a scrape shows a new series at 0 first), so `increase()` sees its first value.
//!
//! Values are compared as the caller writes them (text, or the bits of a float), so a value
//! that does not change is one that would be written the same.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

/// The longest a series goes without a sample: half of Prometheus's 5-minute lookback, so that
/// every 5-minute window holds two samples of every series.
pub const REFRESH: SignedDuration = SignedDuration::from_secs(150);

/// What to write of one series at a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit<V> {
    /// Nothing: the value is the last one written, and that one is recent enough.
    Nothing,
    /// The value, at the step.
    Now,
    /// `V` at the previous step (the old value, or 0 for a new counter), then the value.
    BeforeAndNow(V, Timestamp),
}

/// The last value written of each series, keyed by the caller's name of the series.
pub struct Thinning<V> {
    refresh: SignedDuration,
    series: HashMap<Box<[u8]>, Written<V>>,
    previous: Option<Timestamp>,
    at: Option<Timestamp>,
    /// Every series written at this step (the last one of a history).
    everything: bool,
}

struct Written<V> {
    value: V,
    at: Timestamp,
}

impl<V: Clone + PartialEq> Thinning<V> {
    /// Steps `step` apart: a series is written again after the longest whole number of steps
    /// within [`REFRESH`] (every step, for a step longer than that).
    pub fn new(step: SignedDuration) -> Self {
        let step = step.max(SignedDuration::from_millis(1));
        let steps = (REFRESH.as_millis() / step.as_millis()).max(1);
        Self {
            refresh: step * i32::try_from(steps).unwrap_or(1),
            series: HashMap::new(),
            previous: None,
            at: None,
            everything: false,
        }
    }

    /// The longest a series goes without a sample.
    pub fn refresh(&self) -> SignedDuration {
        self.refresh
    }

    /// Series seen so far.
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Starts the step at `at`, later than the one before; with `everything`, every series is
    /// written at it.
    pub fn step(&mut self, at: Timestamp, everything: bool) {
        self.previous = self.at;
        self.at = Some(at);
        self.everything = everything;
    }

    /// What to write of `series` at this step, its value being `value`; `zero` is the value a
    /// new counter or histogram series starts from (`None` for a gauge).
    pub fn emit(&mut self, series: &[u8], value: &V, zero: Option<&V>) -> Emit<V> {
        let Some(at) = self.at else {
            return Emit::Now;
        };
        let Some(last) = self.series.get_mut(series) else {
            self.series.insert(
                series.into(),
                Written {
                    value: value.clone(),
                    at,
                },
            );
            return match (zero, self.previous) {
                (Some(zero), Some(previous)) => Emit::BeforeAndNow(zero.clone(), previous),
                _ => Emit::Now,
            };
        };
        if last.value == *value {
            if self.everything || at.duration_since(last.at) >= self.refresh {
                last.at = at;
                return Emit::Now;
            }
            return Emit::Nothing;
        }
        let old = std::mem::replace(&mut last.value, value.clone());
        let written = last.at;
        last.at = at;
        match self.previous {
            Some(previous) if written < previous => Emit::BeforeAndNow(old, previous),
            _ => Emit::Now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> Timestamp {
        Timestamp::from_second(1_748_476_800 + minute * 60).unwrap()
    }

    /// The samples written of one series whose value at minute m is `values[m]`.
    fn written(values: &[u32], zero: Option<u32>, last_everything: bool) -> Vec<(i64, u32)> {
        let mut t = Thinning::new(SignedDuration::from_mins(1));
        let mut out = Vec::new();
        for (m, v) in values.iter().enumerate() {
            let m = m as i64;
            t.step(at(m), last_everything && m as usize == values.len() - 1);
            match t.emit(b"s", v, zero.as_ref()) {
                Emit::Nothing => {}
                Emit::Now => out.push((m, *v)),
                Emit::BeforeAndNow(before, when) => {
                    out.push(((when.as_second() - at(0).as_second()) / 60, before));
                    out.push((m, *v));
                }
            }
        }
        out
    }

    #[test]
    fn a_steady_series_is_written_every_two_minutes_and_a_change_beside_its_old_value() {
        assert_eq!(
            Thinning::<u32>::new(SignedDuration::from_mins(1)).refresh(),
            SignedDuration::from_mins(2)
        );
        // 0..=9: 5 from minute 0, 6 from minute 5, 7 from minute 6.
        let values = [5, 5, 5, 5, 5, 6, 7, 7, 7, 7];
        assert_eq!(
            written(&values, Some(0), false),
            [(0, 5), (2, 5), (4, 5), (5, 6), (6, 7), (8, 7)]
        );
        // A change right after a written step needs no old value; after a gap it does.
        let values = [5, 5, 5, 6, 6, 6, 6];
        assert_eq!(
            written(&values, Some(0), false),
            [(0, 5), (2, 5), (3, 6), (5, 6)]
        );
        let values = [5, 5, 5, 5, 6];
        assert_eq!(
            written(&values, None, false),
            [(0, 5), (2, 5), (3, 5), (4, 6)]
        );
        // The last step has everything.
        assert_eq!(written(&[5, 5, 5, 5], None, true), [(0, 5), (2, 5), (3, 5)]);
    }

    #[test]
    fn a_new_counter_starts_from_zero_at_the_step_before_and_a_gauge_does_not() {
        let mut t = Thinning::new(SignedDuration::from_mins(1));
        t.step(at(0), false);
        assert_eq!(t.emit(b"old", &1, Some(&0)), Emit::Now);
        t.step(at(1), false);
        assert_eq!(t.emit(b"new", &3, Some(&0)), Emit::BeforeAndNow(0, at(0)));
        assert_eq!(t.emit(b"gauge", &3, None), Emit::Now);
        assert_eq!(t.series(), 3);
    }

    #[test]
    fn every_five_minute_window_holds_two_samples_at_any_step() {
        for step_secs in [10, 30, 60, 90, 120, 150, 240] {
            let step = SignedDuration::from_secs(step_secs);
            let mut t = Thinning::new(step);
            let mut stamps = Vec::new();
            let start = at(0);
            for i in 0..400 {
                let now = start + step * i;
                t.step(now, false);
                // Changes now and then.
                let v = (i / 37) as u32;
                match t.emit(b"s", &v, Some(&0)) {
                    Emit::Nothing => {}
                    Emit::Now => stamps.push(now),
                    Emit::BeforeAndNow(_, before) => stamps.extend([before, now]),
                }
            }
            let gap = stamps
                .windows(2)
                .map(|w| w[1].duration_since(w[0]))
                .max()
                .unwrap();
            assert!(
                gap <= SignedDuration::from_secs(150).max(step),
                "{step_secs} s: {gap:?}"
            );
        }
    }
}
