//! Which samples a history needs: a series gets a sample when its value changes and at every
//! step near a change, and otherwise only as often as PromQL needs to see it.
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
//! - **Every step around a change.** `rate()` extrapolates from the first and last samples in
//!   its window and their spacing, so a window that holds a change must hold the same samples
//!   as a history with every step, or its rate differs (by up to half, at 5 minutes). So every
//!   step within [`AROUND_CHANGE`] of a change, before and after, is written: a window of up to
//!   that length answers exactly what the history with every step answers, and a longer one
//!   differs only by where its first and last samples fall (a few percent at 30 minutes). The
//!   steps before a change are known only once it comes: they are held back until then, or
//!   until they are older than [`AROUND_CHANGE`], so samples come out up to that and a step
//!   late (each series' still in time order). A new series is written at every step of its
//!   first [`AROUND_CHANGE`], as after a change.
//! - **From 0.** A counter or histogram series written for the first time starts with a 0 at the
//!   step before (a scrape shows a new series at 0 first), so `increase()` sees its first value.
//!
//! Values are compared as the caller writes them (text, or the bits of a float), so a value
//! that does not change is one that would be written the same.

use std::collections::{HashMap, VecDeque};

use jiff::{SignedDuration, Timestamp};

/// The longest a series goes without a sample: half of Prometheus's 5-minute lookback, so that
/// every 5-minute window holds two samples of every series.
pub const REFRESH: SignedDuration = SignedDuration::from_secs(150);

/// How far either side of a change every step is written: the shortest window of the rules'
/// rates.
pub const AROUND_CHANGE: SignedDuration = SignedDuration::from_mins(5);

/// The last value of each series and the steps of it not yet written, keyed by the caller's
/// name of the series.
pub struct Thinning<V> {
    refresh: SignedDuration,
    series: HashMap<Box<[u8]>, Series<V>>,
    previous: Option<Timestamp>,
    at: Option<Timestamp>,
    /// Every series written at this step (the last one of a history).
    everything: bool,
}

struct Series<V> {
    value: V,
    /// The last sample written.
    written: Timestamp,
    /// Steps up to this one are written (the end of the last change's neighbourhood).
    dense_until: Timestamp,
    /// Steps since `written`, at `value`, held until a change or until they are older than
    /// [`AROUND_CHANGE`].
    held: VecDeque<Timestamp>,
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

    /// Series seen so far.
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// How much earlier than the step being written a sample can be: held steps, and a new
    /// counter's 0 at the step before.
    pub fn lag(&self) -> SignedDuration {
        AROUND_CHANGE + self.refresh
    }

    /// Starts the step at `at`, later than the one before; with `everything`, every series is
    /// written at it, and every step held is settled.
    pub fn step(&mut self, at: Timestamp, everything: bool) {
        self.previous = self.at;
        self.at = Some(at);
        self.everything = everything;
    }

    /// Adds to `out`, in time order, the samples of `series` to write now, its value at this
    /// step being `value`; `zero` is the value a new counter or histogram series starts from
    /// (`None` for a gauge). Every series seen must come at every step (the exporter's never
    /// go away): a series' held steps are settled only when it comes.
    pub fn emit(
        &mut self,
        series: &[u8],
        value: &V,
        zero: Option<&V>,
        out: &mut Vec<(V, Timestamp)>,
    ) {
        let at = self.at.unwrap_or(Timestamp::MIN);
        let Some(s) = self.series.get_mut(series) else {
            if let (Some(zero), Some(previous)) = (zero, self.previous) {
                out.push((zero.clone(), previous));
            }
            out.push((value.clone(), at));
            self.series.insert(
                series.into(),
                Series {
                    value: value.clone(),
                    written: at,
                    dense_until: at + AROUND_CHANGE,
                    held: VecDeque::new(),
                },
            );
            return;
        };
        // Held steps that no change can reach any more are kept only to refresh the series.
        let settled = at - AROUND_CHANGE;
        while s.held.front().is_some_and(|&t| t < settled) {
            if let Some(t) = s.held.pop_front() {
                s.refresh(t, self.refresh, out);
            }
        }
        if s.value != *value {
            // The steps held before the change are within AROUND_CHANGE of it: all written.
            out.extend(s.held.drain(..).map(|t| (s.value.clone(), t)));
            out.push((value.clone(), at));
            s.value = value.clone();
            s.written = at;
            s.dense_until = at + AROUND_CHANGE;
        } else if self.everything {
            // The last step: what is held is settled now, and the step is written.
            while let Some(t) = s.held.pop_front() {
                s.refresh(t, self.refresh, out);
            }
            out.push((value.clone(), at));
            s.written = at;
        } else if at <= s.dense_until && s.held.is_empty() {
            out.push((value.clone(), at));
            s.written = at;
        } else {
            s.held.push_back(at);
        }
    }
}

impl<V: Clone> Series<V> {
    /// Writes the held step `t` if the series has had no sample for `refresh`.
    fn refresh(&mut self, t: Timestamp, refresh: SignedDuration, out: &mut Vec<(V, Timestamp)>) {
        if t.duration_since(self.written) >= refresh {
            out.push((self.value.clone(), t));
            self.written = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> Timestamp {
        Timestamp::from_second(1_748_476_800 + minute * 60).unwrap()
    }

    /// The samples written (minute, value) of one series whose value at minute m is
    /// `values[m]`, the last step with everything.
    fn written(values: &[u32], zero: Option<u32>) -> Vec<(i64, u32)> {
        let mut t = Thinning::new(SignedDuration::from_mins(1));
        let mut out = Vec::new();
        for (m, v) in values.iter().enumerate() {
            t.step(at(m as i64), m == values.len() - 1);
            t.emit(b"s", v, zero.as_ref(), &mut out);
        }
        out.into_iter()
            .map(|(v, when)| ((when.as_second() - at(0).as_second()) / 60, v))
            .collect()
    }

    #[test]
    fn a_steady_series_every_two_minutes_and_every_step_within_five_of_a_change() {
        // Steady for 20 minutes: the first 5 (around its start), then every 2, then the last.
        let steady = written(&[5; 20], Some(0));
        let minutes: Vec<i64> = steady.iter().map(|(m, _)| *m).collect();
        assert_eq!(minutes, [0, 1, 2, 3, 4, 5, 7, 9, 11, 13, 15, 17, 19]);
        assert!(steady.iter().all(|(_, v)| *v == 5));
        // A change at minute 14: every step from 9 to 19.
        let mut values = vec![5; 14];
        values.extend([6; 10]);
        let changed = written(&values, Some(0));
        assert_eq!(
            changed,
            [
                (0, 5),
                (1, 5),
                (2, 5),
                (3, 5),
                (4, 5),
                (5, 5),
                (7, 5),
                (9, 5),
                (10, 5),
                (11, 5),
                (12, 5),
                (13, 5),
                (14, 6),
                (15, 6),
                (16, 6),
                (17, 6),
                (18, 6),
                (19, 6),
                (21, 6),
                (23, 6)
            ]
        );
    }

    #[test]
    fn a_new_counter_starts_from_zero_at_the_step_before_and_a_gauge_does_not() {
        let mut t = Thinning::new(SignedDuration::from_mins(1));
        let mut out = Vec::new();
        t.step(at(0), false);
        t.emit(b"old", &1, Some(&0), &mut out);
        assert_eq!(out, [(1, at(0))]);
        out.clear();
        t.step(at(1), false);
        t.emit(b"new", &3, Some(&0), &mut out);
        assert_eq!(out, [(0, at(0)), (3, at(1))]);
        out.clear();
        t.emit(b"gauge", &3, None, &mut out);
        assert_eq!(out, [(3, at(1))]);
        assert_eq!(t.series(), 3);
    }

    /// What PromQL needs, for steps from 10 s to 4 min and changes now and then: every
    /// 5-minute window holds two samples, and one that holds a change holds every step.
    #[test]
    fn every_window_of_five_minutes_holds_two_samples_and_every_step_around_a_change() {
        for step_secs in [10, 30, 60, 90, 120, 150, 240] {
            let step = SignedDuration::from_secs(step_secs);
            let mut t = Thinning::new(step);
            let mut out = Vec::new();
            let n = 400;
            let value = |i: i64| (i / 37 + i / 101) as u32;
            for i in 0..n {
                t.step(at(0) + step * i, i == n - 1);
                t.emit(b"s", &value(i.into()), Some(&0), &mut out);
            }
            let stamps: Vec<Timestamp> = out.iter().map(|(_, t)| *t).collect();
            assert!(
                stamps.windows(2).all(|w| w[0] < w[1]),
                "{step_secs} s: time order"
            );
            let gap = stamps
                .windows(2)
                .map(|w| w[1].duration_since(w[0]))
                .max()
                .unwrap();
            assert!(gap <= REFRESH.max(step), "{step_secs} s: {gap:?}");
            for i in 1..i64::from(n) {
                if value(i) != value(i - 1) {
                    let change = at(0) + step * i32::try_from(i).unwrap();
                    for j in 0..i64::from(n) {
                        let when = at(0) + step * i32::try_from(j).unwrap();
                        if when.duration_since(change).abs() <= AROUND_CHANGE {
                            assert!(stamps.contains(&when), "{step_secs} s: step {j} near {i}");
                        }
                    }
                }
            }
        }
    }
}
