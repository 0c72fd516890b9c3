//! The set of calls already counted, keyed by `uniq1`, bounded by the query window.
//!
//! Asterisk ids look like `1716999785.123456` (`epoch.sequence`). Such an id is packed into one
//! `u64` without losing anything: `1.01` and `1.1` stay different, because the number of
//! fraction digits is part of the packing. Ids of any other shape are kept as strings. Ids are
//! grouped by the wall-clock day of their call, so forgetting a day that has left the window
//! drops a whole table at once.

use std::collections::{BTreeMap, HashMap, HashSet};

type FastSet = HashSet<u64, foldhash::fast::FixedState>;
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

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
    let (int, frac) = match id.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (id, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || int.len() > 10 || !digits(int) || (int.len() > 1 && int.starts_with('0')) {
        return None;
    }
    let epoch: u64 = int.parse().ok()?;
    if epoch >= 1 << 33 {
        return None;
    }
    let (code, fraction) = match frac {
        None => (0u64, 0u64),
        Some(f) if f.len() <= 8 && digits(f) => {
            let v = if f.is_empty() { 0 } else { f.parse().ok()? };
            (1 + f.len() as u64, v)
        }
        Some(_) => return None,
    };
    Some(epoch << 31 | code << 27 | fraction)
}

/// Seen ids by wall-clock day (days since 1970-01-01, dialer-local).
#[derive(Debug, Default, Clone)]
pub struct SeenSet {
    days: BTreeMap<i64, FastSet>,
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
        self.contains_id(&CallId::new(id))
    }

    pub fn contains_id(&self, id: &CallId) -> bool {
        match id {
            CallId::Packed(p) => self.days.values().any(|set| set.contains(p)),
            CallId::Text(t) => self.text.contains_key(t),
        }
    }

    /// Records `id` as seen on `day`. Returns false if it was already there.
    pub fn insert(&mut self, id: &str, day: i64) -> bool {
        self.insert_id(CallId::new(id), day)
    }

    pub fn insert_id(&mut self, id: CallId, day: i64) -> bool {
        if self.contains_id(&id) {
            return false;
        }
        match id {
            CallId::Packed(p) => {
                self.days.entry(day).or_default().insert(p);
            }
            CallId::Text(t) => {
                self.text.insert(t, day);
            }
        }
        self.len += 1;
        true
    }

    /// Forgets every id of a day before `day`; returns how many.
    pub fn expire_before(&mut self, day: i64) -> usize {
        let kept = self.days.split_off(&day);
        let dropped: usize = self.days.values().map(HashSet::len).sum();
        self.days = kept;
        let before = self.text.len();
        self.text.retain(|_, d| *d >= day);
        let dropped = dropped + (before - self.text.len());
        self.len -= dropped;
        dropped
    }

    /// Every id with its day, for persisting and tests.
    pub fn iter(&self) -> impl Iterator<Item = (CallId, i64)> + '_ {
        self.days
            .iter()
            .flat_map(|(day, set)| set.iter().map(move |p| (CallId::Packed(*p), *day)))
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
}
