//! Seeded, realistic inbound traffic, computed from the time alone: the calls of a minute are a
//! pure function of the seed and the minute, so any window can be regenerated on every request
//! without keeping state, and a test can ask the generator for the truth.
//!
//! About 8 queues, 4 campaigns and 60 agents; a disposition mix; queue waits with a periodic
//! spike on one queue; each call is in queue first, then in call, then final a little after
//! hang-up; a few calls are transferred, giving a second row with the same `uniq1`.

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::clock::WallSecs;

pub const QUEUES: [&str; 8] = [
    "SUPPORT",
    "BILLING",
    "SALES",
    "RETENTION",
    "TECH_L1",
    "TECH_L2",
    "COLLECTIONS",
    "VIP",
];
/// Campaign, tenant, profile.
pub const CAMPAIGNS: [(&str, &str, &str); 4] = [
    ("INBOUND_CARE", "AAA", "SERVICE"),
    ("INBOUND_SALES", "AAA", "SALES"),
    ("LOANS_IN", "BBB", "LOANS"),
    ("COLLECT_IN", "CCC", "COLLECTIONS"),
];
pub const AGENTS: usize = 60;
const NAMES: [&str; 10] = [
    "John Doe",
    "Jane Smith",
    "José García",
    "Zoë Müller",
    "Jean-Luc Pérez",
    "Łucja Nowak",
    "Aoife Ní Bhriain",
    "Søren Ødegård",
    "Ana Conceição",
    "Chidi Okafor",
];

/// What a call looks like at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Queue,
    InCall,
    Final,
}

/// One CDR row of the simulated dialer, with its whole future.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCall {
    pub uniq1: String,
    pub call_date: WallSecs,
    pub enter_on_queue: WallSecs,
    pub src: String,
    pub dst: String,
    pub carrier: String,
    pub queue: usize,
    pub campaign: usize,
    pub agent: Option<usize>,
    pub disposition: &'static str,
    pub term_reason: &'static str,
    pub queue_time: f64,
    pub call_duration: f64,
    pub queue_position: u32,
    pub lead_id: u64,
    pub vendor_lead_code: &'static str,
    /// When an agent picked up (or the caller gave up).
    pub answered_at: WallSecs,
    /// When the row gets its final values.
    pub final_at: WallSecs,
    /// Shown as `NONE` rather than empty while not final.
    pub none_marker: bool,
    /// The platform deletes the row at this moment, while the call is still in queue (it is
    /// never final in the report).
    pub vanishes_at: Option<WallSecs>,
    /// `call_date` is sent as `0000-00-00 00:00:00`.
    pub bad_date: bool,
}

impl SimCall {
    pub fn phase(&self, now: WallSecs) -> Phase {
        if now >= self.final_at {
            Phase::Final
        } else if now >= self.answered_at && self.agent.is_some() {
            Phase::InCall
        } else {
            Phase::Queue
        }
    }

    pub fn agent_name(&self) -> Option<String> {
        self.agent.map(agent_name)
    }
}

pub fn agent_name(i: usize) -> String {
    format!("agent{:03}", i + 1)
}

/// A wait spike: during the first `length_secs` of every `period_secs` (wall clock), callers of
/// `queue` wait `factor` times longer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    pub period_secs: i64,
    pub length_secs: i64,
    pub queue: usize,
    pub factor: f64,
}

/// The busiest hour's calls per minute unless set (`--sim.calls-per-minute` defaults to it too).
pub const DEFAULT_PEAK_CALLS_PER_MINUTE: f64 = 20.0;

/// The SUPPORT queue's wait spike unless set (the `--sim.spike-*` flags default to it too): ten
/// times the usual waits for the first 20 minutes of every hour.
pub const DEFAULT_SPIKE: Spike = Spike {
    period_secs: 3600,
    length_secs: 20 * 60,
    queue: 0,
    factor: 10.0,
};

#[derive(Debug, Clone)]
pub struct Traffic {
    pub seed: u64,
    pub tz: TimeZone,
    /// Mean calls per minute at the busiest hour (nights get 40% of it).
    pub peak_calls_per_minute: f64,
    pub spike: Spike,
    /// Mean wait outside spikes, seconds.
    pub mean_wait: f64,
    /// How often, per call, each of the platform's rarer ways shows: a call longer than
    /// `--cdr.max-pending` (three hours with an agent), a row deleted while the caller waits, a
    /// row with an unreadable `call_date`. 0 (never) unless set; the tests set it.
    pub anomaly_rate: f64,
}

impl Traffic {
    pub fn new(seed: u64, tz: TimeZone) -> Self {
        Self {
            seed,
            tz,
            peak_calls_per_minute: DEFAULT_PEAK_CALLS_PER_MINUTE,
            spike: DEFAULT_SPIKE,
            // About 90% answered within 20 s outside spikes: a center meeting its 80/20
            // target, so that only the spike trips the alerts.
            mean_wait: 8.0,
            anomaly_rate: 0.0,
        }
    }

    fn rate(&self, minute: i64) -> f64 {
        let hour = (minute.rem_euclid(1440) / 60) as f64;
        // Busy from 08:00 to 20:00, quiet at night.
        let day = (std::f64::consts::PI * (hour - 8.0) / 12.0).sin().max(0.0);
        self.peak_calls_per_minute * (0.4 + 0.6 * day)
    }

    fn spiking(&self, queue: usize, wall: WallSecs) -> bool {
        let s = self.spike;
        queue == s.queue && s.period_secs > 0 && wall.rem_euclid(s.period_secs) < s.length_secs
    }

    /// Every row whose call starts in the wall-clock minute `minute` (minutes since 1970).
    pub fn minute(&self, minute: i64) -> Vec<SimCall> {
        let mut rng = SmallRng::seed_from_u64(
            self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (minute as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let n = poisson(&mut rng, self.rate(minute));
        let mut calls = Vec::with_capacity(n + 1);
        let mut offsets: Vec<i64> = (0..n).map(|_| rng.random_range(0..60)).collect();
        offsets.sort_unstable();
        for (i, offset) in offsets.into_iter().enumerate() {
            let call_date = minute * 60 + offset;
            let call = self.call(&mut rng, call_date, minute, i);
            if let Some(transfer) = self.transfer(&mut rng, &call) {
                calls.push(call);
                calls.push(transfer);
            } else {
                calls.push(call);
            }
        }
        calls
    }

    /// One call of the minute: `i` numbers it within the minute, for its `uniq1`.
    ///
    /// The random draws happen in a fixed order (the helpers' included): the traffic of a seed
    /// stays the same only as long as that order does.
    fn call(&self, rng: &mut SmallRng, call_date: WallSecs, minute: i64, i: usize) -> SimCall {
        let queue = rng.random_range(0..QUEUES.len());
        let campaign = queue % CAMPAIGNS.len();
        let enter = call_date + rng.random_range(2..30);
        let mean = self.mean_wait_at(queue, call_date);
        let wait = (exponential(rng, mean) * 100.0).round() / 100.0;
        let Ending {
            wait,
            disposition,
            term_reason,
            agent,
            duration,
        } = ending(rng, wait);
        // Drawn whatever the rate, so that the rate changes nothing else of the traffic.
        let (long, vanishes, bad_date): (f64, f64, f64) =
            (rng.random(), rng.random(), rng.random());
        let rate = self.anomaly_rate;
        let duration = if agent.is_some() && long < rate {
            3.0 * 3600.0
        } else {
            duration
        };
        let answered_at = enter + wait.ceil() as i64;
        let end = answered_at + duration as i64;
        // Deleted half-way through the wait, while still in queue.
        let vanishes_at = (vanishes < rate).then(|| enter + (wait / 2.0) as i64);
        let finalize = finalize_delay(rng, agent.is_some());
        let unix = self.unix(call_date);
        SimCall {
            uniq1: format!("{unix}.{}", minute.rem_euclid(1_000_000) * 100 + i as i64),
            call_date,
            enter_on_queue: enter,
            src: format!("555{:07}", rng.random_range(0..10_000_000u32)),
            dst: format!("555010{}", queue),
            carrier: format!("SIP/TRUNK{}-{:08x}", 1 + queue % 2, rng.random::<u32>()),
            queue,
            campaign,
            agent,
            disposition,
            term_reason,
            queue_time: wait,
            call_duration: duration,
            queue_position: rng.random_range(1..6),
            lead_id: 10_000_000 + rng.random_range(0..9_000_000u64),
            vendor_lead_code: NAMES[rng.random_range(0..NAMES.len())],
            answered_at,
            final_at: end + finalize,
            none_marker: rng.random::<bool>(),
            vanishes_at,
            bad_date: bad_date < rate,
        }
    }

    /// Mean wait of a caller of `queue` at `wall`: longer during the spike.
    fn mean_wait_at(&self, queue: usize, wall: WallSecs) -> f64 {
        if self.spiking(queue, wall) {
            self.mean_wait * self.spike.factor
        } else {
            self.mean_wait
        }
    }

    /// About 2% of answered calls are transferred to another queue: a second row, same `uniq1`.
    fn transfer(&self, rng: &mut SmallRng, call: &SimCall) -> Option<SimCall> {
        if call.disposition != "Answered" || rng.random::<f64>() >= 0.02 {
            return None;
        }
        let queue = (call.queue + 1 + rng.random_range(0..QUEUES.len() - 1)) % QUEUES.len();
        let wait = (exponential(rng, self.mean_wait) * 100.0).round() / 100.0;
        let enter = call.answered_at + 30;
        let answered_at = enter + wait.ceil() as i64;
        let duration = (10.0 + exponential(rng, 120.0)).round();
        Some(SimCall {
            queue,
            campaign: queue % CAMPAIGNS.len(),
            call_date: enter,
            enter_on_queue: enter,
            agent: Some(rng.random_range(0..AGENTS)),
            queue_time: wait,
            call_duration: duration,
            answered_at,
            final_at: answered_at + duration as i64 + 5,
            ..call.clone()
        })
    }

    /// Unix seconds of a wall-clock time in the dialer's zone.
    fn unix(&self, wall: WallSecs) -> i64 {
        let dt = wall_to_datetime(wall);
        self.tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map(|t| t.as_second())
            .unwrap_or(wall)
    }

    /// Every row whose call starts in `[from, to)` and no later than `now` (wall clock), and
    /// that the platform has not deleted by `now`.
    pub fn calls(&self, from: WallSecs, to: WallSecs, now: WallSecs) -> Vec<SimCall> {
        let end = to.min(now.saturating_add(1));
        let mut out = Vec::new();
        let mut minute = from.div_euclid(60);
        while minute * 60 < end {
            out.extend(self.minute(minute).into_iter().filter(|c| {
                c.call_date >= from && c.call_date < end && c.vanishes_at.is_none_or(|t| now < t)
            }));
            minute += 1;
        }
        out
    }
}

pub fn wall_to_datetime(wall: WallSecs) -> DateTime {
    jiff::Timestamp::from_second(wall)
        .map(|t| Offset::UTC.to_datetime(t))
        .unwrap_or_default()
}

/// How a call ends, and how long its caller waited in the end.
struct Ending {
    wait: f64,
    disposition: &'static str,
    term_reason: &'static str,
    agent: Option<usize>,
    duration: f64,
}

/// How a call whose caller would wait `wait` seconds ends: turned away after hours (no wait),
/// timed out in queue (at 300 s), abandoned (likelier the longer the wait), or taken by an agent.
fn ending(rng: &mut SmallRng, mut wait: f64) -> Ending {
    let roll: f64 = rng.random();
    let (disposition, term_reason, agent, duration) = if roll < 0.01 {
        wait = 0.0;
        ("Denied", "AFTERHOURS", None, 0.0)
    } else if wait >= 300.0 {
        wait = 300.0;
        ("Queue Timeout", "QUEUE_TIMEOUT", None, 0.0)
    } else if rng.random::<f64>() < (wait / 400.0).min(0.5) + 0.03 {
        ("Abandoned", "ABANDON", None, 0.0)
    } else if roll < 0.05 {
        let agent = rng.random_range(0..AGENTS);
        (
            "Live Disconnect",
            "CALLER",
            Some(agent),
            f64::from(rng.random_range(3..30)),
        )
    } else {
        let agent = rng.random_range(0..AGENTS);
        let term = if rng.random::<bool>() {
            "AGENT"
        } else {
            "CALLER"
        };
        (
            "Answered",
            term,
            Some(agent),
            (20.0 + exponential(rng, 220.0)).round(),
        )
    };
    Ending {
        wait,
        disposition,
        term_reason,
        agent,
        duration,
    }
}

/// Seconds from the end of a call until its row is final.
fn finalize_delay(rng: &mut SmallRng, taken_by_agent: bool) -> i64 {
    let finalize = if rng.random::<f64>() < 0.05 {
        rng.random_range(60..600)
    } else {
        rng.random_range(0..20)
    };
    if taken_by_agent {
        finalize
    } else {
        // A caller who hangs up in queue (or is turned away) is written off at once; only a
        // call an agent took is wrapped up late. The same draws keep the rest of the traffic
        // as it was.
        finalize % 5
    }
}

fn exponential(rng: &mut SmallRng, mean: f64) -> f64 {
    let u: f64 = rng.random();
    -mean * (1.0 - u).ln()
}

fn poisson(rng: &mut SmallRng, lambda: f64) -> usize {
    // Knuth's method; lambda stays small (calls per minute).
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p: f64 = rng.random();
    while p > limit && k < 10_000 {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_plausible() {
        let t = Traffic::new(7, TimeZone::UTC);
        let day = 20_000 * 1440;
        assert_eq!(t.minute(day + 600), t.minute(day + 600));
        let calls = t.calls(day * 60, (day + 1440) * 60, i64::MAX);
        assert!(
            calls.len() > 5_000 && calls.len() < 30_000,
            "{}",
            calls.len()
        );
        let answered = calls.iter().filter(|c| c.disposition == "Answered").count();
        assert!(
            answered * 10 > calls.len() * 6,
            "{answered} of {}",
            calls.len()
        );
        let agents: std::collections::HashSet<_> = calls.iter().filter_map(|c| c.agent).collect();
        assert_eq!(agents.len(), AGENTS);
        // The spike: waits on queue 0 in the first 20 minutes of the hour are much longer.
        let mean = |spike: bool| {
            let w: Vec<f64> = calls
                .iter()
                .filter(|c| c.queue == 0 && (c.call_date.rem_euclid(3600) < 1200) == spike)
                .map(|c| c.queue_time)
                .collect();
            w.iter().sum::<f64>() / w.len() as f64
        };
        assert!(mean(true) > 4.0 * mean(false));
    }
}
