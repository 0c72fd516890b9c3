//! The set of legs already counted, bounded by the query window.
//!
//! A leg is one row of a call: the call in one queue. A transfer gives a call a second row with
//! the same `uniq1` and its own `call_date` and queue, so a leg is keyed by all three (see
//! [`LegKey`]). Asterisk ids look like `1716999785.123456` (`epoch.sequence`) and pack into one
//! `u64` without losing anything: `1.01` and `1.1` stay different, because the number of
//! fraction digits is part of the packing. A leg then packs into 12 bytes: the id, the second
//! of the day of its `call_date` (17 bits) and its queue's number in a table of queue names
//! (15 bits). Legs of any other shape are kept as text. Legs are grouped by the wall-clock day
//! of their `call_date`, so forgetting a day that has left the window drops a whole table at
//! once.
//!
//! A day's packed legs are a sorted `Vec` rather than a hash set: 12 bytes a leg instead of
//! about 24, and, because every poll re-sends the window in call order and the epoch leads the
//! packing, each lookup lands next to the previous one. A cursor remembers where, so the lookups
//! of a poll walk the vector instead of missing the cache once per row (measured in
//! `benches/ingest.rs`: a hash set cost about 200 ns a lookup inside a poll).
//!
//! State files written before legs hold call ids only ([`SeenCalls`]): such a call keeps
//! counting as seen, every row of it, until its day leaves the window.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::vocab::{CallId, LegKey};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// How many queue names the table numbers; legs of any further queue are kept as text.
pub const MAX_QUEUES: usize = 1 << 15;

/// The sorted keys of one day, with the position of the last lookup.
#[derive(Debug, Default, Clone)]
struct Day<K> {
    keys: Vec<K>,
    cursor: Cell<usize>,
}

impl<K: Ord + Copy> Day<K> {
    fn contains(&self, key: K) -> bool {
        let keys = &self.keys;
        let at = self.cursor.get().min(keys.len());
        // Gallop from the cursor towards `key`, then search the bracket found.
        let (lo, hi) = if keys.get(at).is_some_and(|&x| x <= key) {
            let mut step = 1;
            let mut lo = at;
            loop {
                let next = lo + step;
                match keys.get(next) {
                    Some(&x) if x <= key => {
                        lo = next;
                        step *= 2;
                    }
                    _ => break (lo, next.min(keys.len())),
                }
            }
        } else {
            let mut step = 1;
            let mut hi = at;
            loop {
                match hi.checked_sub(step) {
                    Some(next) if keys[next] > key => {
                        hi = next;
                        step *= 2;
                    }
                    Some(next) => break (next, hi),
                    None => break (0, hi),
                }
            }
        };
        match keys[lo..hi].binary_search(&key) {
            Ok(i) => {
                self.cursor.set(lo + i + 1);
                true
            }
            Err(i) => {
                self.cursor.set(lo + i);
                false
            }
        }
    }

    /// Adds sorted, distinct keys that are not in the day yet.
    fn merge(&mut self, new: &[K]) {
        match (self.keys.last(), new.first()) {
            (_, None) => {}
            (Some(&last), Some(&first)) if first < last => {
                // Late rows (a call final long after it started): one merge per poll.
                let mut merged = Vec::with_capacity(self.keys.len() + new.len());
                let (mut a, mut b) = (self.keys.iter().peekable(), new.iter().peekable());
                while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
                    if x < y {
                        merged.push(x);
                        a.next();
                    } else {
                        merged.push(y);
                        b.next();
                    }
                }
                merged.extend(a);
                merged.extend(b);
                self.keys = merged;
            }
            _ => self.keys.extend_from_slice(new),
        }
    }
}

impl Day<[u32; 3]> {
    /// Whether a leg of the packed call `[hi, lo]` is in the day.
    fn contains_call(&self, call: [u32; 2]) -> bool {
        let i = self.keys.partition_point(|k| [k[0], k[1]] < call);
        self.keys.get(i).is_some_and(|k| [k[0], k[1]] == call)
    }
}

/// Merges `(day, key)` pairs, sorted, into their days; returns how many were added.
fn merge_days<K: Ord + Copy + Default>(
    days: &mut BTreeMap<i64, Day<K>>,
    mut batch: Vec<(i64, K)>,
) -> usize {
    batch.sort_unstable();
    let mut added = 0;
    for chunk in batch.chunk_by(|a, b| a.0 == b.0) {
        let keys: Vec<K> = chunk.iter().map(|&(_, k)| k).collect();
        added += keys.len();
        days.entry(chunk[0].0).or_default().merge(&keys);
    }
    added
}

/// Queue names, numbered in the order first seen.
#[derive(Debug, Default, Clone)]
pub struct QueueTable {
    names: Vec<Box<str>>,
    index: FastMap<Box<str>, u32>,
}

impl QueueTable {
    pub fn get(&self, queue: &str) -> Option<u32> {
        // A site has a few dozen queues at most: comparing beats hashing every row's queue.
        if self.names.len() <= 32 {
            return self
                .names
                .iter()
                .position(|n| **n == *queue)
                .map(|i| i as u32);
        }
        self.index.get(queue).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Adds names in the order a plan numbered them.
    pub fn extend(&mut self, names: &[Box<str>]) {
        for name in names {
            if self.names.len() < MAX_QUEUES && !self.index.contains_key(name) {
                self.index.insert(name.clone(), self.names.len() as u32);
                self.names.push(name.clone());
            }
        }
    }

    pub fn names(&self) -> &[Box<str>] {
        &self.names
    }
}

/// The packed key of a leg: the id's halves, then the second of the day and the queue number.
pub fn packed_leg(id: u64, second_of_day: u32, queue: u32) -> LegKey {
    LegKey::Packed([(id >> 32) as u32, id as u32, second_of_day << 15 | queue])
}

/// The text key of a leg whose id does not pack, whose date does not read, or whose queue is
/// past [`MAX_QUEUES`].
pub fn text_leg(uniq1: &str, call_date: &str, queue: &str) -> LegKey {
    LegKey::Text(format!("{uniq1}\u{1f}{call_date}\u{1f}{queue}").into())
}

/// The call a text leg belongs to: its `uniq1`.
fn text_leg_call(key: &str) -> &str {
    key.split('\u{1f}').next().unwrap_or(key)
}

/// Whether a text leg's date reads, so that it can have counted.
fn text_leg_counted(key: &str) -> bool {
    key.split('\u{1f}')
        .nth(1)
        .and_then(super::window::parse_call_date)
        .is_some()
}

/// Seen legs by wall-clock day (days since 1970-01-01, dialer-local), and the calls a state
/// file from before legs remembered.
#[derive(Debug, Default, Clone)]
pub struct SeenLegs {
    days: BTreeMap<i64, Day<[u32; 3]>>,
    text: FastMap<Box<str>, i64>,
    /// The `uniq1` of every text leg, with the last day it has a leg on.
    text_calls: FastMap<Box<str>, i64>,
    queues: QueueTable,
    legacy: SeenCalls,
    len: usize,
}

impl SeenLegs {
    /// Legs and legacy calls remembered.
    pub fn len(&self) -> usize {
        self.len + self.legacy.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn queues(&self) -> &QueueTable {
        &self.queues
    }

    pub fn contains(&self, key: &LegKey, day: i64) -> bool {
        match key {
            LegKey::Packed(k) => self.days.get(&day).is_some_and(|d| d.contains(*k)),
            LegKey::Text(t) => self.text.contains_key(t),
        }
    }

    /// Whether a state file from before legs remembered the call as counted.
    pub fn legacy_contains(&self, id: &CallId) -> bool {
        !self.legacy.is_empty() && self.legacy.contains_id(id)
    }

    /// Whether a leg of the call was seen (on any day).
    pub fn call_seen(&self, id: &CallId, uniq1: &str) -> bool {
        let packed = match id {
            CallId::Packed(p) => {
                let call = [(*p >> 32) as u32, *p as u32];
                self.days.values().rev().any(|d| d.contains_call(call))
            }
            CallId::Text(_) => false,
        };
        packed
            || (!self.text_calls.is_empty() && self.text_calls.contains_key(uniq1))
            || self.legacy_contains(id)
    }

    /// Whether a leg of the call was seen on a day before `day`. (A text id remembers only its
    /// latest day: seen before `day` when that is.)
    pub fn call_seen_before(&self, id: &CallId, uniq1: &str, day: i64) -> bool {
        let packed = match id {
            CallId::Packed(p) => {
                let call = [(*p >> 32) as u32, *p as u32];
                self.days.range(..day).any(|(_, d)| d.contains_call(call))
            }
            CallId::Text(_) => false,
        };
        packed || self.text_calls.get(uniq1).is_some_and(|d| *d < day)
    }

    /// Records legs, with the queue names their plan numbered first; returns how many were
    /// new.
    pub fn insert_many(
        &mut self,
        new_queues: &[Box<str>],
        legs: impl IntoIterator<Item = (LegKey, i64)>,
    ) -> usize {
        self.queues.extend(new_queues);
        let mut packed: Vec<(i64, [u32; 3])> = Vec::new();
        let mut added = 0;
        for (key, day) in legs {
            match key {
                LegKey::Packed(k) => packed.push((day, k)),
                LegKey::Text(t) => {
                    // A leg whose date cannot be read was rejected, not counted: its call is
                    // not seen for the distinct calls.
                    if text_leg_counted(&t) {
                        let call = self
                            .text_calls
                            .entry(text_leg_call(&t).into())
                            .or_insert(day);
                        *call = (*call).max(day);
                    }
                    if let std::collections::hash_map::Entry::Vacant(e) = self.text.entry(t) {
                        e.insert(day);
                        added += 1;
                    }
                }
            }
        }
        // Already seen, or earlier in this batch: as if inserted one by one. Sorted, a batch
        // asks for each day once.
        packed.sort_unstable();
        packed.dedup();
        let days = &self.days;
        let mut current: Option<(i64, Option<&Day<[u32; 3]>>)> = None;
        packed.retain(|&(day, k)| {
            let seen = match current {
                Some((d, seen)) if d == day => seen,
                _ => {
                    let seen = days.get(&day).filter(|d| !d.keys.is_empty());
                    current = Some((day, seen));
                    seen
                }
            };
            !seen.is_some_and(|d| d.contains(k))
        });
        added += merge_days(&mut self.days, packed);
        self.len += added;
        added
    }

    /// Restores the calls a state file from before legs remembered.
    pub fn restore_legacy(&mut self, calls: impl IntoIterator<Item = (CallId, i64)>) {
        self.legacy.insert_many(calls);
    }

    /// How many entries [`SeenLegs::expire_before`] would forget.
    pub fn count_before(&self, day: i64) -> usize {
        let packed: usize = self.days.range(..day).map(|(_, d)| d.keys.len()).sum();
        packed + self.text.values().filter(|d| **d < day).count() + self.legacy.count_before(day)
    }

    /// Forgets every leg (and legacy call) of a day before `day`; returns how many.
    pub fn expire_before(&mut self, day: i64) -> usize {
        let kept = self.days.split_off(&day);
        let dropped: usize = self.days.values().map(|d| d.keys.len()).sum();
        self.days = kept;
        let before = self.text.len();
        self.text.retain(|_, d| *d >= day);
        self.text_calls.retain(|_, d| *d >= day);
        let dropped = dropped + (before - self.text.len());
        self.len -= dropped;
        dropped + self.legacy.expire_before(day)
    }

    /// Every leg with its day.
    pub fn iter(&self) -> impl Iterator<Item = (LegKey, i64)> + '_ {
        self.days
            .iter()
            .flat_map(|(day, d)| d.keys.iter().map(move |k| (LegKey::Packed(*k), *day)))
            .chain(self.text.iter().map(|(t, d)| (LegKey::Text(t.clone()), *d)))
    }
}

/// Call ids by day, as state files written before legs remembered them.
#[derive(Debug, Default, Clone)]
pub struct SeenCalls {
    days: BTreeMap<i64, Day<u64>>,
    text: FastMap<Box<str>, i64>,
    len: usize,
}

impl SeenCalls {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains_id(&self, id: &CallId) -> bool {
        match id {
            CallId::Packed(p) => self.days.values().rev().any(|day| day.contains(*p)),
            CallId::Text(t) => self.text.contains_key(t),
        }
    }

    /// Records many ids at once; returns how many were new.
    pub fn insert_many(&mut self, ids: impl IntoIterator<Item = (CallId, i64)>) -> usize {
        let mut packed: Vec<(i64, u64)> = Vec::new();
        let mut added = 0;
        for (id, day) in ids {
            match id {
                CallId::Packed(p) => packed.push((day, p)),
                CallId::Text(t) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = self.text.entry(t) {
                        e.insert(day);
                        added += 1;
                    }
                }
            }
        }
        let mut in_batch: HashSet<u64, foldhash::fast::FixedState> = HashSet::default();
        packed.retain(|&(_, p)| in_batch.insert(p) && !self.contains_id(&CallId::Packed(p)));
        added += merge_days(&mut self.days, packed);
        self.len += added;
        added
    }

    fn count_before(&self, day: i64) -> usize {
        let packed: usize = self.days.range(..day).map(|(_, d)| d.keys.len()).sum();
        packed + self.text.values().filter(|d| **d < day).count()
    }

    fn expire_before(&mut self, day: i64) -> usize {
        let kept = self.days.split_off(&day);
        let dropped: usize = self.days.values().map(|d| d.keys.len()).sum();
        self.days = kept;
        let before = self.text.len();
        self.text.retain(|_, d| *d >= day);
        let dropped = dropped + (before - self.text.len());
        self.len -= dropped;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::pack;

    #[test]
    fn packing_keeps_distinct_ids_distinct() {
        let ids = [
            "1.01",
            "1.1",
            "1.10",
            "1",
            "1.",
            "0.5",
            "1234567890.000001",
            "1234567890.1",
            "8589934591.99999999",
        ];
        let packed: Vec<u64> = ids.iter().map(|i| pack(i).expect(i)).collect();
        let unique: HashSet<u64> = packed.iter().copied().collect();
        assert_eq!(unique.len(), ids.len());
        for odd in [
            "",
            "01.5",
            "8589934592.1",
            "1.123456789",
            "1.2.3",
            "a.1",
            "-1.2",
            " 1.2",
        ] {
            assert_eq!(pack(odd), None, "{odd:?}");
        }
    }

    fn leg(id: &str, second: u32, queue: u32) -> LegKey {
        packed_leg(pack(id).expect(id), second, queue)
    }

    #[test]
    fn legs_of_one_call_are_distinct_and_expire_with_their_day() {
        let mut s = SeenLegs::default();
        let queues: Vec<Box<str>> = vec!["A".into(), "B".into()];
        let first = leg("1.01", 100, 0);
        let transfer = leg("1.01", 160, 1);
        assert_eq!(s.insert_many(&queues, [(first.clone(), 10)]), 1);
        assert!(s.contains(&first, 10));
        assert!(!s.contains(&transfer, 10));
        assert!(!s.contains(&first, 11), "a leg is looked up on its own day");
        assert!(s.call_seen(&CallId::new("1.01"), "1.01"));
        assert!(!s.call_seen(&CallId::new("1.1"), "1.1"));
        assert_eq!(
            s.insert_many(&[], [(transfer.clone(), 11), (first.clone(), 10)]),
            1
        );
        let odd = text_leg("odd-id", "2025-05-29 10:00:00", "A");
        assert_eq!(s.insert_many(&[], [(odd.clone(), 12)]), 1);
        assert!(s.call_seen(&CallId::new("odd-id"), "odd-id"));
        assert_eq!(s.queues().names(), &queues[..]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.count_before(11), 1);
        assert_eq!(s.expire_before(11), 1);
        assert!(!s.contains(&first, 10) && s.contains(&transfer, 11) && s.contains(&odd, 12));
        assert_eq!(s.expire_before(13), 2);
        assert!(!s.call_seen(&CallId::new("odd-id"), "odd-id"));
        assert!(s.is_empty());
    }

    #[test]
    fn legacy_calls_count_as_seen_until_their_day_leaves() {
        let mut s = SeenLegs::default();
        s.restore_legacy([(CallId::new("5.5"), 20), (CallId::new("odd"), 21)]);
        assert_eq!(s.len(), 2);
        assert!(s.legacy_contains(&CallId::new("5.5")) && s.legacy_contains(&CallId::new("odd")));
        assert!(s.call_seen(&CallId::new("5.5"), "5.5"));
        assert_eq!(s.count_before(21), 1);
        assert_eq!(s.expire_before(21), 1);
        assert!(!s.legacy_contains(&CallId::new("5.5")));
        assert_eq!(s.len(), 1);
    }

    /// Random batches of inserts (in and out of order, on several days, with repeats), lookups
    /// in random and in sorted order, and expiry, against a plain hash map.
    #[test]
    fn agrees_with_a_hash_map() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(7);
        let mut set = SeenLegs::default();
        let mut truth: HashMap<LegKey, i64> = HashMap::new();
        // A packed leg's day follows from its id here, as from its call_date in life; a text
        // leg is one key whatever day it is recorded under.
        let leg_at = |rng: &mut SmallRng| -> (LegKey, i64) {
            if rng.random_range(0..20) == 0 {
                let id = format!("odd-{}", rng.random_range(0..50));
                return (text_leg(&id, "x", "Q"), 10 + rng.random_range(0..4));
            }
            let epoch = 1_700_000_000 + rng.random_range(0..400);
            let id = format!("{epoch}.{}", rng.random_range(0..30));
            let key = leg(&id, rng.random_range(0..3), rng.random_range(0..2));
            (key, 10 + epoch % 4)
        };
        let queues: Vec<Box<str>> = vec!["A".into(), "B".into()];
        for round in 0..300 {
            let batch: Vec<(LegKey, i64)> = (0..rng.random_range(0..40))
                .map(|_| leg_at(&mut rng))
                .collect();
            let mut added = 0;
            for (k, d) in &batch {
                if !truth.contains_key(k) {
                    truth.insert(k.clone(), *d);
                    added += 1;
                }
            }
            let got = set.insert_many(&queues, batch.iter().cloned());
            assert_eq!(got, added, "round {round}");
            assert_eq!(set.len(), truth.len());
            let mut probes: Vec<(LegKey, i64)> = (0..60).map(|_| leg_at(&mut rng)).collect();
            if round % 2 == 0 {
                probes.sort();
            }
            for (k, d) in &probes {
                let expected = truth.contains_key(k);
                assert_eq!(set.contains(k, *d), expected, "{k:?} in round {round}");
            }
            if round % 50 == 49 {
                let day = 10 + rng.random_range(0..4);
                let dropped = set.expire_before(day);
                let before = truth.len();
                truth.retain(|_, d| *d >= day);
                assert_eq!(dropped, before - truth.len());
            }
        }
        let mut listed: Vec<(LegKey, i64)> = set.iter().collect();
        listed.sort();
        let mut expected: Vec<(LegKey, i64)> = truth.into_iter().collect();
        expected.sort();
        assert_eq!(listed, expected);
    }
}
