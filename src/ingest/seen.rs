//! The set of calls already counted, keyed by `uniq1`, bounded by the query window.
//!
//! Asterisk ids look like `1716999785.123456` (`epoch.sequence`). Such an id is packed into one
//! `u64` without losing anything: `1.01` and `1.1` stay different, because the number of
//! fraction digits is part of the packing. Ids of any other shape are kept as strings. Ids are
//! grouped by the wall-clock day of their call, so forgetting a day that has left the window
//! drops a whole table at once.
//!
//! A day's packed ids are a sorted `Vec<u64>` rather than a hash set: 8 bytes an id instead of
//! about 19, and, because every poll re-sends the window in call order and the epoch leads the
//! packing, each lookup lands next to the previous one. A cursor remembers where, so the lookups
//! of a poll walk the vector instead of missing the cache once per row (measured in
//! `benches/ingest.rs`: the hash set cost about 200 ns a lookup inside a poll).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::vocab::{pack, CallId};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The packed ids of one day, sorted, with the position of the last lookup.
#[derive(Debug, Default, Clone)]
struct Day {
    ids: Vec<u64>,
    cursor: Cell<usize>,
}

impl Day {
    fn contains(&self, id: u64) -> bool {
        let ids = &self.ids;
        let at = self.cursor.get().min(ids.len());
        // Gallop from the cursor towards `id`, then search the bracket found.
        let (lo, hi) = if ids.get(at).is_some_and(|&x| x <= id) {
            let mut step = 1;
            let mut lo = at;
            loop {
                let next = lo + step;
                match ids.get(next) {
                    Some(&x) if x <= id => {
                        lo = next;
                        step *= 2;
                    }
                    _ => break (lo, next.min(ids.len())),
                }
            }
        } else {
            let mut step = 1;
            let mut hi = at;
            loop {
                match hi.checked_sub(step) {
                    Some(next) if ids[next] > id => {
                        hi = next;
                        step *= 2;
                    }
                    Some(next) => break (next, hi),
                    None => break (0, hi),
                }
            }
        };
        match ids[lo..hi].binary_search(&id) {
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

    /// Adds sorted, distinct ids that are not in the day yet.
    fn merge(&mut self, new: &[u64]) {
        match (self.ids.last(), new.first()) {
            (_, None) => {}
            (Some(&last), Some(&first)) if first < last => {
                // Late rows (a call final long after it started): one merge per poll.
                let mut merged = Vec::with_capacity(self.ids.len() + new.len());
                let (mut a, mut b) = (self.ids.iter().peekable(), new.iter().peekable());
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
                self.ids = merged;
            }
            _ => self.ids.extend_from_slice(new),
        }
    }
}

/// Seen ids by wall-clock day (days since 1970-01-01, dialer-local).
#[derive(Debug, Default, Clone)]
pub struct SeenSet {
    days: BTreeMap<i64, Day>,
    text: FastMap<Box<str>, i64>,
    len: usize,
}

impl SeenSet {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, id: &str) -> bool {
        match pack(id) {
            Some(p) => self.contains_packed(p),
            None => self.text.contains_key(id),
        }
    }

    pub fn contains_id(&self, id: &CallId) -> bool {
        match id {
            CallId::Packed(p) => self.contains_packed(*p),
            CallId::Text(t) => self.text.contains_key(t),
        }
    }

    fn contains_packed(&self, id: u64) -> bool {
        // Newest day first: that is where a poll's rows mostly are.
        self.days.values().rev().any(|day| day.contains(id))
    }

    /// Records `id` as seen on `day`. Returns false if it was already there.
    #[cfg(test)]
    pub fn insert(&mut self, id: &str, day: i64) -> bool {
        self.insert_id(CallId::new(id), day)
    }

    #[cfg(test)]
    pub fn insert_id(&mut self, id: CallId, day: i64) -> bool {
        if self.contains_id(&id) {
            return false;
        }
        match id {
            CallId::Packed(p) => self.days.entry(day).or_default().merge(&[p]),
            CallId::Text(t) => {
                self.text.insert(t, day);
            }
        }
        self.len += 1;
        true
    }

    /// Records many ids at once (one merge per day, however they are ordered); returns how many
    /// were new.
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
        // Already seen (on any day), or earlier in this batch: as if inserted one by one.
        let mut in_batch: HashSet<u64, foldhash::fast::FixedState> = HashSet::default();
        packed.retain(|&(_, p)| in_batch.insert(p) && !self.contains_packed(p));
        packed.sort_unstable();
        for chunk in packed.chunk_by(|a, b| a.0 == b.0) {
            let ids: Vec<u64> = chunk.iter().map(|&(_, p)| p).collect();
            added += ids.len();
            self.days.entry(chunk[0].0).or_default().merge(&ids);
        }
        self.len += added;
        added
    }

    /// How many ids [`SeenSet::expire_before`] would forget.
    pub fn count_before(&self, day: i64) -> usize {
        let packed: usize = self.days.range(..day).map(|(_, d)| d.ids.len()).sum();
        packed + self.text.values().filter(|d| **d < day).count()
    }

    /// Forgets every id of a day before `day`; returns how many.
    pub fn expire_before(&mut self, day: i64) -> usize {
        let kept = self.days.split_off(&day);
        let dropped: usize = self.days.values().map(|d| d.ids.len()).sum();
        self.days = kept;
        let before = self.text.len();
        self.text.retain(|_, d| *d >= day);
        let dropped = dropped + (before - self.text.len());
        self.len -= dropped;
        dropped
    }

    /// Every id with its day.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (CallId, i64)> + '_ {
        self.days
            .iter()
            .flat_map(|(day, d)| d.ids.iter().map(move |p| (CallId::Packed(*p), *day)))
            .chain(self.text.iter().map(|(t, d)| (CallId::Text(t.clone()), *d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn insert_contains_expire() {
        let mut s = SeenSet::default();
        assert!(s.insert("1.01", 10));
        assert!(!s.insert("1.01", 11));
        assert!(s.insert("1.1", 11));
        assert!(s.insert("odd-id", 10));
        assert!(s.insert("odd-id-2", 12));
        assert!(s.contains("1.01") && s.contains("1.1") && s.contains("odd-id"));
        assert!(!s.contains("1.010"));
        assert_eq!(s.len(), 4);
        assert_eq!(s.expire_before(11), 2);
        assert_eq!(s.len(), 2);
        assert!(!s.contains("1.01") && !s.contains("odd-id"));
        assert!(s.contains("1.1") && s.contains("odd-id-2"));
        assert_eq!(s.iter().count(), 2);
    }

    /// Random batches of inserts (in and out of order, on several days, with repeats), lookups
    /// in random and in sorted order, and expiry, against a plain hash map.
    #[test]
    fn agrees_with_a_hash_map() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        use std::collections::HashMap;
        let mut rng = SmallRng::seed_from_u64(7);
        let mut set = SeenSet::default();
        let mut truth: HashMap<String, i64> = HashMap::new();
        let id = |rng: &mut SmallRng| match rng.random_range(0..20) {
            0 => format!("odd-{}", rng.random_range(0..50)),
            _ => format!(
                "{}.{}",
                1_700_000_000 + rng.random_range(0..400),
                rng.random_range(0..30)
            ),
        };
        for round in 0..300 {
            let batch: Vec<(String, i64)> = (0..rng.random_range(0..40))
                .map(|_| (id(&mut rng), 10 + rng.random_range(0..4)))
                .collect();
            let mut added = 0;
            for (i, d) in &batch {
                if !truth.contains_key(i) {
                    truth.insert(i.clone(), *d);
                    added += 1;
                }
            }
            let got = set.insert_many(batch.iter().map(|(i, d)| (CallId::new(i), *d)));
            assert_eq!(got, added, "round {round}");
            assert_eq!(set.len(), truth.len());
            let mut probes: Vec<String> = (0..60).map(|_| id(&mut rng)).collect();
            if round % 2 == 0 {
                probes.sort();
            }
            for p in &probes {
                assert_eq!(
                    set.contains(p),
                    truth.contains_key(p),
                    "{p} in round {round}"
                );
            }
            if round % 50 == 49 {
                let day = 10 + rng.random_range(0..4);
                let dropped = set.expire_before(day);
                let before = truth.len();
                truth.retain(|_, d| *d >= day);
                assert_eq!(dropped, before - truth.len());
            }
        }
        let mut listed: Vec<(CallId, i64)> = set.iter().collect();
        listed.sort_by_key(|(id, d)| (format!("{id:?}"), *d));
        let mut expected: Vec<(CallId, i64)> =
            truth.iter().map(|(i, d)| (CallId::new(i), *d)).collect();
        expected.sort_by_key(|(id, d)| (format!("{id:?}"), *d));
        assert_eq!(listed, expected);
    }
}
