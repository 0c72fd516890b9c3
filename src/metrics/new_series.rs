//! New counter and histogram series are served at 0 before their first value.
//!
//! Prometheus's `rate()` and `increase()` need two samples of a series: a series whose first
//! sample is already 1 (the first call of a new agent, of a new queue and disposition...)
//! shows no increase at all, in Prometheus 2.x and 3.x with default flags. So a series created
//! by a poll is held at 0 until every Prometheus that scrapes the exporter has been served it
//! at 0 once; from its next scrape on, that Prometheus sees the real value.
//!
//! Scrapers are told apart by their address: an HA pair of Prometheus servers is two
//! scrapers, and each is served the 0 once. A scraper not seen for [`SCRAPER_MEMORY`] is
//! forgotten (it no longer holds series back), and at most [`MAX_SCRAPERS`] are remembered.
//! The values are never held back from `--once`, and a series that has not been scraped at
//! all waits for the first scrape. Nothing of this is stored: after a restart, series created
//! before it are served as they are.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};

use super::aggregates::SeriesKey;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// How long a scraper that stopped scraping keeps holding new series back.
pub const SCRAPER_MEMORY: SignedDuration = SignedDuration::from_mins(10);
/// How many scrapers are told apart; a scrape from any further address is served the values.
pub const MAX_SCRAPERS: usize = 16;

/// The series held at 0, and the scrapers that have been served each at 0.
#[derive(Debug, Default)]
pub struct NewSeries {
    held: FastMap<SeriesKey, Vec<IpAddr>>,
    /// When each scraper last scraped.
    scrapers: FastMap<IpAddr, Timestamp>,
}

impl NewSeries {
    /// Holds `series` (just created by a poll) at 0 until every scraper has seen that 0.
    pub fn hold(&mut self, series: impl IntoIterator<Item = SeriesKey>) {
        for key in series {
            self.held.entry(key).or_default();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// A scrape by `scraper` at `now`: the series to serve it at 0. A series is released once
    /// every scraper remembered has been served its 0.
    pub fn scrape(&mut self, scraper: IpAddr, now: Timestamp) -> HashSet<SeriesKey> {
        self.scrapers
            .retain(|_, last| now.duration_since(*last) <= SCRAPER_MEMORY);
        if self.scrapers.len() < MAX_SCRAPERS || self.scrapers.contains_key(&scraper) {
            self.scrapers.insert(scraper, now);
        }
        let known = self.scrapers.contains_key(&scraper);
        let mut zero = HashSet::new();
        let scrapers = &self.scrapers;
        self.held.retain(|key, served| {
            if known && !served.contains(&scraper) {
                served.push(scraper);
                zero.insert(*key);
            }
            !scrapers.keys().all(|s| served.contains(s))
        });
        zero
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn each_scraper_is_served_a_new_series_at_zero_once() {
        let t0: Timestamp = "2025-05-29T12:00:00Z".parse().unwrap();
        let mut n = NewSeries::default();
        let (a, b) = (SeriesKey::Agent(1), SeriesKey::Agent(2));
        // Two Prometheus servers scrape; a series appears.
        n.scrape(ip(1), t0);
        n.scrape(ip(2), t0);
        n.hold([a]);
        assert_eq!(n.scrape(ip(1), t0), HashSet::from([a]));
        assert!(n.scrape(ip(1), t0).is_empty(), "served its 0 already");
        n.hold([b]);
        assert_eq!(n.scrape(ip(2), t0), HashSet::from([a, b]));
        assert_eq!(n.scrape(ip(1), t0), HashSet::from([b]));
        assert!(n.is_empty());
        // A scraper gone for longer than SCRAPER_MEMORY holds nothing back.
        n.hold([a]);
        let later = t0 + SCRAPER_MEMORY + SignedDuration::from_secs(1);
        assert_eq!(n.scrape(ip(1), later), HashSet::from([a]));
        assert!(n.is_empty());
    }

    #[test]
    fn a_series_created_before_any_scrape_waits_for_the_first() {
        let t0: Timestamp = "2025-05-29T12:00:00Z".parse().unwrap();
        let mut n = NewSeries::default();
        n.hold([SeriesKey::Totals]);
        assert_eq!(n.scrape(ip(1), t0), HashSet::from([SeriesKey::Totals]));
        assert!(n.scrape(ip(1), t0).is_empty());
    }
}
