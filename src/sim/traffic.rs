//! Seeded, realistic inbound traffic, computed from the time alone: the calls that arrive in a
//! minute are a pure function of the seed and the minute, and a day's queues are simulated
//! from its arrivals, so any window can be regenerated on every request without keeping state
//! (a few days are kept computed), and a test can ask the generator for the truth.
//!
//! About 8 queues, 4 campaigns and 120 agents. Each queue is a queue of servers with impatient
//! callers (Erlang A's model): its agents on duty, staffed for the hour's expected load, take
//! its callers first come, first served; a caller waits until an agent is free, and hangs up
//! after an exponential patience (mean 3 minutes) or is sent away by the queue's timeout. So
//! the waits follow from the agents, and the exporter's staffing figures can be checked
//! against them. A periodic spike takes most of one queue's agents away. Each day is simulated
//! on its own (from the hour before its midnight); a transfer's second leg belongs to the day
//! its call arrived on, so just after midnight its agent may be on another call too.
//! Each [`SimCall`] is one row of the platform's inbound call log, one leg of a call in one
//! queue, written the way the platform writes it (`docs/counting.md`, *When a row counts* and
//! *Outcomes*): in queue (`QUEUE`, agent `VDCL`), ringing (`QUEUE` with the agent's name), in call
//! (`INCALL`), wrap-up after the hang-up (`INCALL` with its term reason, then `DISPO`), final.
//! A leg ends answered, abandoned (in queue, or while an agent's phone rings: `DROP`/`CALLER`
//! with that agent's name), timed out by its queue (`TIMEOT`, `HOLDTO`), or never queued (after
//! hours, no agent; written final at once, 1 s long). `VIP` routes to one named agent, who is on
//! every row of it. About 2% of answered calls are transferred: the first leg ends `XFER` and a
//! second row with the same `uniq1` starts in another queue at the transfer moment. Now and
//! then a hang-up handler does not run and a final row keeps the term reason `NONE`.
//! `call_duration` runs from queue entry to hang-up, the wait included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
pub const AGENTS: usize = 120;
/// The agent-direct queue: it routes every call to [`VIP_AGENT`], whom each of its rows names,
/// whatever the outcome (drops, timeouts and after hours included).
pub const VIP_QUEUE: usize = 7;
/// The one agent of [`VIP_QUEUE`] (`agent120`); the other queues' calls go to the others, each
/// queue's to a team of its own (see `agent_of`).
pub const VIP_AGENT: usize = AGENTS - 1;
/// The pseudo-user ("Inbound No Agent") a row names while no agent is on it.
pub const SYSTEM_AGENT: &str = "VDCL";
/// How many calls each queue gets, relatively: one agent serves VIP, so it gets few.
const QUEUE_WEIGHTS: [u32; QUEUES.len()] = [160, 120, 140, 100, 140, 80, 100, 5];
/// Callers' mean patience, seconds (exponential): how long they wait before hanging up.
const MEAN_PATIENCE_SECS: f64 = 180.0;
/// The mean time an agent is taken by an answered call (ringing 6 s, talk 240 s): what a
/// queue's staffing plans for.
const MEAN_HANDLE_SECS: f64 = 246.0;
/// Agents staffed beyond the expected load, in units of its square root (the square-root
/// staffing rule; 1 answers about 90 % within 20 s at these loads).
const STAFFING_BETA: f64 = 1.0;
/// The most agents one queue has on duty.
const MAX_SERVERS: usize = 20_000;
/// The day's simulation starts this long before its midnight, with the day before's calls.
const WARM_UP_SECS: i64 = 3600;
/// Days of legs kept computed per traffic (seed, zone, rates): a poll asks for today and
/// yesterday.
const DAYS_KEPT: i64 = 2;
/// Seconds a caller may wait before the queue gives up (`TIMEOT`/`QUEUETIMEOUT`): SUPPORT after
/// 4 minutes, VIP (whose caller goes to the agent's voicemail) after 45 s, the others after 5
/// minutes.
const QUEUE_TIMEOUT: [f64; QUEUES.len()] = [240.0, 300.0, 300.0, 300.0, 300.0, 300.0, 300.0, 45.0];
/// Of the callers who would wait past the timeout, the share the hold-time option sends away
/// earlier (`HOLDTO`/`HOLDTIME`), and when.
const HOLD_TIME_SHARE: f64 = 0.25;
const HOLD_TIME_SECS: f64 = 180.0;
/// Calls never queued (written final at once): after hours, and no agent logged in.
const AFTER_HOURS_SHARE: f64 = 0.01;
const NO_AGENT_SHARE: f64 = 0.003;
/// Of the callers routed to an agent, the share who hang up while the agent's phone rings.
const RING_DROP_SHARE: f64 = 0.01;
/// Answered calls transferred to another queue.
const TRANSFER_SHARE: f64 = 0.02;
/// Legs whose hang-up handler does not run: the final row keeps the term reason `NONE`.
const MISSED_HANG_UP_SHARE: f64 = 0.02;
/// A transfer happens at most this long after its first leg entered the queue, so that
/// [`Traffic::calls`] finds every second leg by starting that much earlier.
pub const MAX_TRANSFER_AFTER_SECS: i64 = 1800;
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

/// What a leg's row shows at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// `QUEUE`, agent `VDCL` (the agent-direct queue's agent on its rows).
    Queue,
    /// Routed to an agent, whose phone rings: still `QUEUE`, with the agent's name.
    Ringing,
    /// `INCALL`, term reason `NONE`.
    InCall,
    /// Wrap-up, first: the call has ended, the row is still `INCALL` with its term reason.
    HungUp,
    /// Wrap-up, then: `DISPO`, the agent chooses the final disposition.
    Dispo,
    Final,
}

/// How a leg ended, as the simulator decided it (the ground truth the exporter's outcomes are
/// compared to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fate {
    /// An agent took the call (transferred first legs, `XFER`, included).
    Answered,
    /// The caller hung up before anyone took the call: in queue, or while an agent's phone
    /// rang.
    Abandoned,
    /// The queue gave up on the caller: queue timeout or hold-time option.
    TimedOut,
    /// Never queued: after hours, or no agent logged in.
    NotQueued,
}

impl Fate {
    pub const ALL: [Fate; 4] = [
        Fate::Answered,
        Fate::Abandoned,
        Fate::TimedOut,
        Fate::NotQueued,
    ];

    /// The exporter's name of the outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Answered => "answered",
            Fate::Abandoned => "abandoned",
            Fate::TimedOut => "timed_out",
            Fate::NotQueued => "other",
        }
    }
}

/// One row of the simulated dialer's inbound call log (one leg of a call in one queue), with its
/// whole future.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCall {
    pub uniq1: String,
    /// When the leg entered its queue (a transfer's leg: the transfer moment).
    pub call_date: WallSecs,
    /// The same moment as `call_date`.
    pub enter_on_queue: WallSecs,
    pub src: String,
    pub dst: String,
    pub carrier: String,
    pub queue: usize,
    pub campaign: usize,
    /// The agent the final row names: the one who took the call, or whose phone rang when the
    /// caller hung up, or the agent-direct queue's agent. `None`: the row names `VDCL`.
    pub agent: Option<usize>,
    /// The final row's values.
    pub disposition: &'static str,
    pub term_reason: &'static str,
    pub queue_time: f64,
    pub call_duration: f64,
    pub queue_position: u32,
    pub lead_id: u64,
    pub vendor_lead_code: &'static str,
    /// 1, or 2 for the row a transfer starts (same `uniq1`, its own `call_date` and queue).
    pub leg: u8,
    /// How the leg ended.
    pub fate: Fate,
    /// When the call was routed to the agent, whose phone then rings while the row is still
    /// `QUEUE`; `None` if it never was.
    pub rung_at: Option<WallSecs>,
    /// The queue time the row shows from `rung_at` until final (`queue_seconds` is written when
    /// the call is routed; a caller who hangs up while the phone rings is written off with the
    /// whole time held).
    pub routed_queue_time: f64,
    /// When the caller stopped waiting: the agent's screen took the call (`INCALL`), or the
    /// caller hung up, or the queue gave up.
    pub answered_at: WallSecs,
    /// When the call ended (hang-up, transfer or timeout): `call_duration` after queue entry.
    /// A row never queued is written final at its `call_date`, and ends then.
    pub hung_up_at: WallSecs,
    /// When the row becomes `DISPO`; `final_at` for legs without that phase.
    pub dispo_at: WallSecs,
    /// When the row gets its final values.
    pub final_at: WallSecs,
    /// Shown as `NONE` rather than empty while in queue.
    pub none_marker: bool,
    /// The platform deletes the row at this moment, half-way through the call (it is never
    /// final in the report).
    pub vanishes_at: Option<WallSecs>,
    /// `call_date` is sent as `0000-00-00 00:00:00`.
    pub bad_date: bool,
}

impl SimCall {
    pub fn phase(&self, now: WallSecs) -> Phase {
        if now >= self.final_at {
            Phase::Final
        } else if now >= self.dispo_at {
            Phase::Dispo
        } else if now >= self.hung_up_at {
            Phase::HungUp
        } else if self.fate == Fate::Answered && now >= self.answered_at {
            Phase::InCall
        } else if self.rung_at.is_some_and(|r| now >= r) {
            Phase::Ringing
        } else {
            Phase::Queue
        }
    }

    /// What the leg is doing at `now`, as the exporter's `state` label names it: `waiting` (in
    /// queue, an agent's phone perhaps ringing), `talking`, `wrapup` (hung up, the row not final
    /// yet), or `None` once final.
    pub fn live_state(&self, now: WallSecs) -> Option<&'static str> {
        match self.phase(now) {
            Phase::Queue | Phase::Ringing => Some("waiting"),
            Phase::InCall => Some("talking"),
            Phase::HungUp | Phase::Dispo => Some("wrapup"),
            Phase::Final => None,
        }
    }

    /// Seconds an agent talked (`call_duration - queue_time`, as the platform's own report
    /// computes it) for an answered leg, else 0.
    pub fn talk_secs(&self) -> f64 {
        if self.fate == Fate::Answered {
            (self.call_duration - self.queue_time).max(0.0)
        } else {
            0.0
        }
    }

    /// The name the final row's `agent` shows, if a person's.
    pub fn agent_name(&self) -> Option<String> {
        self.agent.map(agent_name)
    }

    /// The `agent` the row shows in `phase`: `VDCL` while queued (the agent-direct queue names
    /// its agent even then), the agent from the ringing on.
    pub fn agent_shown(&self, phase: Phase) -> String {
        match (phase, self.agent_name()) {
            (Phase::Queue, _) if self.queue != VIP_QUEUE => SYSTEM_AGENT.to_string(),
            (_, Some(name)) => name,
            (_, None) => SYSTEM_AGENT.to_string(),
        }
    }
}

pub fn agent_name(i: usize) -> String {
    format!("agent{:03}", i + 1)
}

/// A wait spike: during the first `length_secs` of every `period_secs` (wall clock), `queue`
/// keeps a `factor`th of its agents (a meeting, an outage), and its callers wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    pub period_secs: i64,
    pub length_secs: i64,
    pub queue: usize,
    pub factor: f64,
}

/// The busiest hour's calls per minute unless set (`--sim.calls-per-minute` defaults to it too).
pub const DEFAULT_PEAK_CALLS_PER_MINUTE: f64 = 20.0;

/// The SUPPORT queue's wait spike unless set (the `--sim.spike-*` flags default to it too): a
/// third of its agents for the first 20 minutes of every hour.
pub const DEFAULT_SPIKE: Spike = Spike {
    period_secs: 3600,
    length_secs: 20 * 60,
    queue: 0,
    factor: 3.0,
};

#[derive(Debug, Clone)]
pub struct Traffic {
    pub seed: u64,
    pub tz: TimeZone,
    /// Mean calls per minute at the busiest hour (nights get 40% of it).
    pub peak_calls_per_minute: f64,
    pub spike: Spike,
    /// How often, per call, each of the platform's rarer ways shows: a call longer than
    /// `--cdr.max-pending` (three hours with an agent), a row deleted while the call is in progress, a
    /// row with an unreadable `call_date`. 0 (never) unless set; the tests set it.
    pub anomaly_rate: f64,
    /// The days simulated so far, shared by the copies of this traffic.
    days: DayCache,
}

impl Traffic {
    pub fn new(seed: u64, tz: TimeZone) -> Self {
        Self {
            seed,
            tz,
            peak_calls_per_minute: DEFAULT_PEAK_CALLS_PER_MINUTE,
            spike: DEFAULT_SPIKE,
            anomaly_rate: 0.0,
            days: DayCache::default(),
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

    /// Agents of `queue` on duty at `wall`: staffed for the hour's expected load by the
    /// square-root rule (load + √load, about 90 % within 20 s), fewer during its spike, one
    /// on the agent-direct queue.
    pub fn agents(&self, queue: usize, wall: WallSecs) -> usize {
        if queue == VIP_QUEUE {
            return 1;
        }
        let hour = wall.div_euclid(3600);
        let per_second = self.rate(hour * 60 + 30) / 60.0 * queue_share(queue);
        let load = per_second * MEAN_HANDLE_SECS;
        let staffed = (load + STAFFING_BETA * load.sqrt()).ceil().max(1.0);
        let on_duty = if self.spiking(queue, wall) {
            staffed / self.spike.factor
        } else {
            staffed
        };
        (on_duty.round() as usize).clamp(1, MAX_SERVERS)
    }

    /// The calls that arrive in the wall-clock minute `minute` (minutes since 1970), with
    /// everything drawn for them: a pure function of the seed and the minute.
    fn arrivals(&self, minute: i64) -> Vec<Arrival> {
        let mut rng = SmallRng::seed_from_u64(
            self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (minute as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let n = poisson(&mut rng, self.rate(minute));
        let mut offsets: Vec<i64> = (0..n).map(|_| rng.random_range(0..60)).collect();
        offsets.sort_unstable();
        offsets
            .into_iter()
            .enumerate()
            .map(|(i, offset)| {
                // Each call draws from a generator of its own, so that how many draws one
                // call makes changes nothing of the others.
                let mut call_rng = SmallRng::seed_from_u64(rng.random());
                let call_date = minute * 60 + offset;
                let uniq1 = format!(
                    "{}.{}",
                    self.unix(call_date),
                    minute.rem_euclid(1_000_000) * 100 + i as i64
                );
                Arrival::draw(&mut call_rng, call_date, uniq1)
            })
            .collect()
    }

    /// Every leg of the calls that arrive on the wall-clock day `day` (days since 1970),
    /// second legs after midnight included, computed once and kept for a while.
    fn day(&self, day: i64) -> DayLegs {
        let key = DayKey::of(self, day);
        if let Some(legs) = self.days.get(&key) {
            return legs;
        }
        let legs = Arc::new(self.simulate(day));
        self.days.put(key, legs.clone());
        legs
    }

    /// The queues of the day, as servers with impatient callers: each queue serves its callers
    /// first come, first served, on its agents on duty; a caller waits until an agent is free
    /// (the earliest-free agent takes them), unless their patience runs out first (abandoned)
    /// or the queue gives up (timed out). The hour before midnight runs first with the day
    /// before's calls, so that midnight finds the agents as busy as they are.
    fn simulate(&self, day: i64) -> Vec<SimCall> {
        let start = day * 86_400;
        let mut free_at: Vec<Vec<f64>> = vec![vec![f64::MIN; MAX_SERVERS]; QUEUES.len()];
        // Legs waiting to enter their queue, by entry time: the day's arrivals, and the
        // second legs the transfers start.
        let mut entering: std::collections::BinaryHeap<std::cmp::Reverse<(WallSecs, u64)>> =
            Default::default();
        // The arrival, the leg (1 or 2), and whether the leg is served: of the day, and not
        // the second leg of a row the platform deleted (whose call goes on all the same).
        let mut pending: HashMap<u64, (Arrival, u8, bool)> = HashMap::new();
        let mut seq = 0u64;
        for minute in (start - WARM_UP_SECS) / 60..(start + 86_400) / 60 {
            for arrival in self.arrivals(minute) {
                let counted = arrival.call_date >= start;
                entering.push(std::cmp::Reverse((arrival.call_date, seq)));
                pending.insert(seq, (arrival, 1, counted));
                seq += 1;
            }
        }
        let mut legs = Vec::new();
        while let Some(std::cmp::Reverse((enter, id))) = entering.pop() {
            let Some((arrival, leg, counted)) = pending.remove(&id) else {
                continue;
            };
            let draws = if leg == 1 {
                &arrival.first
            } else {
                &arrival.second
            };
            let queue = draws.queue;
            let course =
                match arrival.not_queued.filter(|_| leg == 1) {
                    Some(after_hours) => Course::not_queued(queue, after_hours),
                    None => {
                        let servers = &mut free_at[queue][..self.agents(queue, enter)];
                        let (k, free) = servers.iter().copied().enumerate().fold(
                            (0, f64::MAX),
                            |best, (k, f)| if f < best.1 { (k, f) } else { best },
                        );
                        let wait = round2((free - enter as f64).max(0.0) + draws.route_jitter);
                        let agent = if queue == VIP_QUEUE {
                            VIP_AGENT
                        } else {
                            agent_of(queue, k)
                        };
                        let twists = Twists {
                            transfer: leg == 1 && arrival.transfer,
                            long: leg == 1 && arrival.long < self.anomaly_rate,
                            missed_hang_up: draws.missed_hang_up,
                        };
                        let (course, busy_until) =
                            Course::queued(draws, queue, agent, wait, twists);
                        if let Some(until) = busy_until {
                            servers[k] = enter as f64 + until;
                        }
                        course
                    }
                };
            let caller = arrival.caller.clone();
            let mut call = SimCall::new(caller, queue, enter, draws.queue_position, course, leg);
            if leg == 1 {
                call.vanishes_at = (arrival.vanishes < self.anomaly_rate
                    && call.fate != Fate::NotQueued)
                    .then(|| enter + (call.hung_up_at - enter).div_euclid(2).max(1));
                call.bad_date = arrival.bad_date < self.anomaly_rate;
                if call.disposition == "XFER" {
                    let mut second = arrival.clone();
                    second.second.queue = (queue + 1 + second.second_queue_step) % QUEUES.len();
                    let served = counted && call.vanishes_at.is_none();
                    entering.push(std::cmp::Reverse((call.hung_up_at, seq)));
                    pending.insert(seq, (second, 2, served));
                    seq += 1;
                }
            }
            if counted {
                legs.push(call);
            }
        }
        legs.sort_by_key(|c| c.call_date);
        legs
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

    /// Every row whose leg starts in `[from, to)` and no later than `now` (wall clock), and
    /// that the platform has not deleted by `now`. A leg belongs to the day its call arrived
    /// on: the days up to [`MAX_TRANSFER_AFTER_SECS`] before `from` are looked at for the legs
    /// their transfers start.
    pub fn calls(&self, from: WallSecs, to: WallSecs, now: WallSecs) -> Vec<SimCall> {
        let end = to.min(now.saturating_add(1));
        let mut out = Vec::new();
        if end <= from {
            return out;
        }
        let first = from
            .saturating_sub(MAX_TRANSFER_AFTER_SECS)
            .div_euclid(86_400);
        for day in first..=(end - 1).div_euclid(86_400) {
            out.extend(
                self.day(day)
                    .iter()
                    .filter(|c| {
                        c.call_date >= from
                            && c.call_date < end
                            && c.vanishes_at.is_none_or(|t| now < t)
                    })
                    .cloned(),
            );
        }
        out.sort_by_key(|c| c.call_date);
        out
    }
}

pub fn wall_to_datetime(wall: WallSecs) -> DateTime {
    jiff::Timestamp::from_second(wall)
        .map(|t| Offset::UTC.to_datetime(t))
        .unwrap_or_default()
}

/// Who calls: what the legs of one call share.
#[derive(Debug, Clone)]
struct Caller {
    uniq1: String,
    src: String,
    dst: String,
    carrier: String,
    lead_id: u64,
    vendor_lead_code: &'static str,
    none_marker: bool,
}

impl SimCall {
    /// The row of a leg of `caller`'s call entering `queue` at `enter` and going `course`'s way.
    fn new(
        caller: Caller,
        queue: usize,
        enter: WallSecs,
        queue_position: u32,
        course: Course,
        leg: u8,
    ) -> SimCall {
        let hung_up_at = enter + course.end;
        let dispo_at = hung_up_at + course.hung_up_secs;
        SimCall {
            uniq1: caller.uniq1,
            call_date: enter,
            enter_on_queue: enter,
            src: caller.src,
            dst: caller.dst,
            carrier: caller.carrier,
            queue,
            campaign: queue % CAMPAIGNS.len(),
            agent: course.agent,
            disposition: course.disposition,
            term_reason: course.term_reason,
            queue_time: course.queue_time,
            call_duration: course.end.max(1) as f64,
            queue_position,
            lead_id: caller.lead_id,
            vendor_lead_code: caller.vendor_lead_code,
            leg,
            fate: course.fate,
            rung_at: course.routed.map(|(at, _)| enter + at),
            routed_queue_time: course.routed.map_or(0.0, |(_, wait)| wait),
            answered_at: enter + course.answered,
            hung_up_at,
            dispo_at,
            final_at: dispo_at + course.dispo_secs,
            none_marker: caller.none_marker,
            vanishes_at: None,
            bad_date: false,
        }
    }
}

/// What is drawn for one leg, whatever its course turns out to be: the queue decides which
/// of the draws count.
#[derive(Debug, Clone)]
struct LegDraws {
    queue: usize,
    patience: f64,
    /// The part of a second the routing takes.
    route_jitter: f64,
    queue_position: u32,
    missed_hang_up: bool,
    hold: f64,
    ring_drop: f64,
    kind: f64,
    ring: i64,
    ring_left: i64,
    talk: i64,
    short: i64,
    by_agent: bool,
    hung_up: i64,
    transfer_hung_up: i64,
    dispo: i64,
}

impl LegDraws {
    /// The draws happen in a fixed order: the traffic of a seed stays the same only as long
    /// as that order does.
    fn draw(rng: &mut SmallRng, queue: usize) -> Self {
        let patience = exponential(rng, MEAN_PATIENCE_SECS);
        let route_jitter: f64 = rng.random();
        let missed: f64 = rng.random();
        let (hold, ring_drop, kind): (f64, f64, f64) = (rng.random(), rng.random(), rng.random());
        let ring = rng.random_range(2..=10i64);
        Self {
            queue,
            patience,
            route_jitter,
            missed_hang_up: missed < MISSED_HANG_UP_SHARE,
            hold,
            ring_drop,
            kind,
            ring,
            ring_left: rng.random_range(1..ring),
            talk: (20.0 + exponential(rng, 220.0)).round() as i64,
            short: rng.random_range(3..30i64),
            by_agent: rng.random::<bool>(),
            hung_up: rng.random_range(1..=5i64),
            transfer_hung_up: rng.random_range(0..=2i64),
            dispo: 1 + finalize_delay(rng),
            queue_position: rng.random_range(1..6),
        }
    }
}

/// A call as it arrives, with everything drawn for it (its second leg's too, used if it is
/// transferred) before the queue decides its course.
#[derive(Debug, Clone)]
struct Arrival {
    call_date: WallSecs,
    caller: Caller,
    first: LegDraws,
    second: LegDraws,
    /// The second leg's queue, counted on from the first's (never the same).
    second_queue_step: usize,
    /// `Some(after hours)` for a call never queued.
    not_queued: Option<bool>,
    transfer: bool,
    /// Draws against [`Traffic::anomaly_rate`], whatever the rate.
    long: f64,
    vanishes: f64,
    bad_date: f64,
}

impl Arrival {
    fn draw(rng: &mut SmallRng, call_date: WallSecs, uniq1: String) -> Self {
        let queue = pick_queue(rng);
        let first = LegDraws::draw(rng, queue);
        let (not_queued, transfer): (f64, f64) = (rng.random(), rng.random());
        let (long, vanishes, bad_date): (f64, f64, f64) =
            (rng.random(), rng.random(), rng.random());
        let caller = Caller {
            uniq1,
            src: format!("555{:07}", rng.random_range(0..10_000_000u32)),
            dst: format!("555010{queue}"),
            carrier: format!("SIP/TRUNK{}-{:08x}", 1 + queue % 2, rng.random::<u32>()),
            lead_id: 10_000_000 + rng.random_range(0..9_000_000u64),
            vendor_lead_code: NAMES[rng.random_range(0..NAMES.len())],
            none_marker: rng.random::<bool>(),
        };
        let second_queue_step = rng.random_range(0..QUEUES.len() - 1);
        let second = LegDraws::draw(rng, queue);
        Self {
            call_date,
            caller,
            first,
            second,
            second_queue_step,
            not_queued: (not_queued < AFTER_HOURS_SHARE + NO_AGENT_SHARE)
                .then_some(not_queued < AFTER_HOURS_SHARE),
            transfer: transfer < TRANSFER_SHARE,
            long,
            vanishes,
            bad_date,
        }
    }
}

/// What a day's legs were computed from.
#[derive(Debug, Clone, PartialEq)]
struct DayKey {
    day: i64,
    seed: u64,
    peak: f64,
    spike: Spike,
    anomaly_rate: f64,
    zone: String,
}

impl DayKey {
    fn of(t: &Traffic, day: i64) -> Self {
        Self {
            day,
            seed: t.seed,
            peak: t.peak_calls_per_minute,
            spike: t.spike,
            anomaly_rate: t.anomaly_rate,
            zone: t
                .tz
                .iana_name()
                .map_or_else(|| format!("{:?}", t.tz), str::to_string),
        }
    }

    /// The same traffic, another day.
    fn same_traffic(&self, other: &DayKey) -> bool {
        DayKey {
            day: other.day,
            ..self.clone()
        } == *other
    }
}

/// The last few days simulated. Every request of a day's rows is served from it, and the
/// simulation is deterministic, so it only saves time.
#[derive(Clone, Default)]
struct DayCache(Arc<Mutex<Vec<(DayKey, DayLegs)>>>);

/// The legs of one simulated day.
type DayLegs = Arc<Vec<SimCall>>;

impl std::fmt::Debug for DayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DayCache")
    }
}

impl DayCache {
    fn get(&self, key: &DayKey) -> Option<DayLegs> {
        let days = self.0.lock().unwrap_or_else(|e| e.into_inner());
        days.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn put(&self, key: DayKey, legs: DayLegs) {
        let mut days = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if days.iter().any(|(k, _)| *k == key) {
            return;
        }
        // The days of the same traffic before the last few are done with; other traffic's
        // (another simulated domain's) are not.
        days.retain(|(k, _)| !(k.same_traffic(&key) && k.day <= key.day - DAYS_KEPT));
        // Asked out of order, the earliest asked go first.
        while days.iter().filter(|(k, _)| k.same_traffic(&key)).count() > DAYS_KEPT as usize {
            if let Some(i) = days.iter().position(|(k, _)| k.same_traffic(&key)) {
                days.remove(i);
            }
        }
        days.push((key, legs));
    }
}

/// The agent at seat `k` of `queue`'s team: the teams split the agents but the VIP one by their
/// queues' shares of the calls, each large enough for its queue's agents on duty at the default
/// traffic (at busier traffic a name takes more than one call at once).
fn agent_of(queue: usize, k: usize) -> usize {
    let total: u32 = QUEUE_WEIGHTS[..VIP_QUEUE].iter().sum();
    let size = |q: usize| QUEUE_WEIGHTS[q] as usize * (AGENTS - 1) / total as usize;
    let start: usize = (0..queue).map(size).sum();
    start + k % size(queue).max(1)
}

/// A queue's share of the calls.
fn queue_share(queue: usize) -> f64 {
    let total: u32 = QUEUE_WEIGHTS.iter().sum();
    f64::from(QUEUE_WEIGHTS[queue]) / f64::from(total)
}

/// The rarer turns a queued leg may take.
struct Twists {
    /// Transferred by the agent (if answered): `XFER`.
    transfer: bool,
    /// Three hours long (if answered and not transferred).
    long: bool,
    /// The hang-up handler does not run: the term reason stays `NONE`.
    missed_hang_up: bool,
}

/// How a leg goes, in whole seconds from its queue entry, and the values of its final row.
struct Course {
    fate: Fate,
    disposition: &'static str,
    term_reason: &'static str,
    agent: Option<usize>,
    queue_time: f64,
    /// When the call is routed to an agent, and the queue time the row shows from then on.
    routed: Option<(i64, f64)>,
    /// When the caller stops waiting (see [`SimCall::answered_at`]).
    answered: i64,
    /// When the call ends: its `call_duration` (at least 1 in the row).
    end: i64,
    /// How long the row stays `INCALL` with its term reason after the end, then `DISPO`.
    hung_up_secs: i64,
    dispo_secs: i64,
}

impl Course {
    /// Turned away without queuing: after hours, or no agent logged in. Written final at once,
    /// 1 s long.
    fn not_queued(queue: usize, after_hours: bool) -> Course {
        let (disposition, term_reason) = if after_hours {
            ("AFTHRS", "AFTERHOURS")
        } else {
            ("NANQUE", "NOAGENT")
        };
        Course {
            fate: Fate::NotQueued,
            disposition,
            term_reason,
            agent: (queue == VIP_QUEUE).then_some(VIP_AGENT),
            queue_time: 0.0,
            routed: None,
            answered: 0,
            end: 0,
            hung_up_secs: 0,
            dispo_secs: 0,
        }
    }

    /// A leg of `queue` whose caller would wait `wait` seconds for `agent` (the earliest free
    /// of the queue's agents on duty): abandoned when their patience runs out first (in queue;
    /// now and then while the agent's phone rings), timed out when the queue gives up first,
    /// else answered after a few seconds of ringing, then wrapped up. With the seconds after
    /// queue entry until which the agent is taken, if they are: the agent takes the next call
    /// as soon as this one ends (the wrap-up shows on the row only), and a row the platform
    /// never finishes (`long`) held them no longer than the call.
    fn queued(
        d: &LegDraws,
        queue: usize,
        agent: usize,
        wait: f64,
        twists: Twists,
    ) -> (Course, Option<f64>) {
        let (ring, ring_left, short) = (d.ring, d.ring_left, d.short);
        let (hung_up, transfer_hung_up, dispo) = (d.hung_up, d.transfer_hung_up, d.dispo);
        let direct = (queue == VIP_QUEUE).then_some(VIP_AGENT);
        let term = |t| if twists.missed_hang_up { "NONE" } else { t };
        let timeout = QUEUE_TIMEOUT[queue];
        let left = |fate, disposition, term_reason, agent, queue_time, routed, end| Course {
            fate,
            disposition,
            term_reason,
            agent,
            queue_time,
            routed,
            answered: end,
            end,
            hung_up_secs: 0,
            dispo_secs: 0,
        };
        // Of the callers who would wait past the timeout, the hold-time option sends a share
        // away earlier.
        let gives_up = if wait >= timeout {
            if d.hold < HOLD_TIME_SHARE {
                HOLD_TIME_SECS.min(timeout)
            } else {
                timeout
            }
        } else {
            f64::INFINITY
        };
        if d.patience < wait.min(gives_up) {
            // In queue: ABANDON, unless the row names an agent (agent direct): CALLER.
            let term_reason = if direct.is_some() {
                "CALLER"
            } else {
                "ABANDON"
            };
            let held = round2(d.patience).max(0.01);
            return (
                left(
                    Fate::Abandoned,
                    "DROP",
                    term(term_reason),
                    direct,
                    held,
                    None,
                    (held.ceil() as i64).max(1),
                ),
                None,
            );
        }
        if gives_up.is_finite() {
            let (disposition, term_reason) = if gives_up < timeout {
                ("HOLDTO", "HOLDTIME")
            } else {
                ("TIMEOT", "QUEUETIMEOUT")
            };
            return (
                left(
                    Fate::TimedOut,
                    disposition,
                    term(term_reason),
                    direct,
                    gives_up,
                    None,
                    gives_up.ceil() as i64,
                ),
                None,
            );
        }
        let person = direct.unwrap_or(agent);
        let routed_at = wait.ceil() as i64;
        if d.ring_drop < RING_DROP_SHARE {
            // The agent's phone rang: the row names them, and the hang-up is the caller's.
            let end = routed_at + ring_left;
            return (
                left(
                    Fate::Abandoned,
                    "DROP",
                    term("CALLER"),
                    Some(person),
                    round2(wait + ring_left as f64),
                    Some((routed_at, wait)),
                    end,
                ),
                Some(end as f64),
            );
        }
        let talk = d.talk;
        let kind = d.kind;
        let by_agent = d.by_agent;
        let answered = routed_at + ring;
        let by = if by_agent { "AGENT" } else { "CALLER" };
        let sells = matches!(QUEUES[queue], "SALES" | "RETENTION");
        let (disposition, term_reason, talk) = if twists.transfer {
            // Transferred before it would have ended, at most MAX_TRANSFER_AFTER_SECS in.
            let talk = talk.min(MAX_TRANSFER_AFTER_SECS - answered).max(1);
            ("XFER", "AGENT", talk)
        } else if kind < 0.06 {
            ("Live Disconnect", "CALLER", short)
        } else if kind < 0.16 {
            ("CALLBK", by, talk)
        } else if kind < 0.30 && sells {
            ("SALE", by, talk)
        } else {
            ("Answered", by, talk)
        };
        let held_talk = talk;
        let talk = if twists.long && !twists.transfer {
            3 * 3600
        } else {
            talk
        };
        let (hung_up_secs, dispo_secs) = match (twists.transfer, twists.missed_hang_up) {
            // The transfer writes XFER itself; no disposition to choose.
            (true, false) => (transfer_hung_up, 0),
            (true, true) => (0, 0),
            // Nothing wrote the term reason: straight to DISPO.
            (false, true) => (0, dispo),
            (false, false) => (hung_up, dispo),
        };
        let course = Course {
            fate: Fate::Answered,
            disposition,
            term_reason: term(term_reason),
            agent: Some(person),
            queue_time: wait,
            routed: Some((routed_at, wait)),
            answered,
            end: answered + talk,
            hung_up_secs,
            dispo_secs,
        };
        (course, Some((answered + held_talk) as f64))
    }
}

/// A queue, by [`QUEUE_WEIGHTS`].
fn pick_queue(rng: &mut SmallRng) -> usize {
    let total: u32 = QUEUE_WEIGHTS.iter().sum();
    let mut roll = rng.random_range(0..total);
    for (queue, weight) in QUEUE_WEIGHTS.iter().enumerate() {
        if roll < *weight {
            return queue;
        }
        roll -= weight;
    }
    0
}

/// Seconds from the end of a call an agent took until its row is final (the agent wraps up).
fn finalize_delay(rng: &mut SmallRng) -> i64 {
    if rng.random::<f64>() < 0.05 {
        rng.random_range(60..600)
    } else {
        rng.random_range(0..20)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
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
    use std::collections::{BTreeMap, HashMap, HashSet};

    /// One day of the default traffic (UTC), every row as final.
    fn day() -> (Traffic, i64, Vec<SimCall>) {
        let t = Traffic::new(7, TimeZone::UTC);
        let day = 20_000 * 1440;
        let calls = t.calls(day * 60, (day + 1440) * 60, i64::MAX);
        (t, day, calls)
    }

    fn count(calls: &[SimCall], f: impl Fn(&SimCall) -> bool) -> usize {
        calls.iter().filter(|c| f(c)).count()
    }

    #[test]
    fn deterministic_and_plausible() {
        let (t, day, calls) = day();
        let hour = (day + 600) * 60;
        assert_eq!(
            t.calls(hour, hour + 3600, i64::MAX),
            Traffic::new(7, TimeZone::UTC).calls(hour, hour + 3600, i64::MAX)
        );
        assert!(
            calls.len() > 5_000 && calls.len() < 30_000,
            "{}",
            calls.len()
        );
        // Every outcome, in realistic proportions.
        let fates: BTreeMap<Fate, usize> = Fate::ALL
            .iter()
            .map(|f| (*f, count(&calls, |c| c.fate == *f)))
            .collect();
        let share = |f: Fate| fates[&f] as f64 / calls.len() as f64;
        eprintln!(
            "{} legs: {}",
            calls.len(),
            Fate::ALL
                .iter()
                .map(|f| format!("{} {} ({:.2}%)", f.as_str(), fates[f], 100.0 * share(*f)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(share(Fate::Answered) > 0.8, "{fates:?}");
        assert!((0.02..0.10).contains(&share(Fate::Abandoned)), "{fates:?}");
        assert!((0.0005..0.02).contains(&share(Fate::TimedOut)), "{fates:?}");
        assert!((0.005..0.03).contains(&share(Fate::NotQueued)), "{fates:?}");
        // Answered is the commonest disposition of the answered legs; each other one shows.
        let mut dispositions: HashMap<&str, usize> = HashMap::new();
        for c in calls.iter().filter(|c| c.fate == Fate::Answered) {
            *dispositions.entry(c.disposition).or_default() += 1;
        }
        let top = dispositions
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(d, _)| *d);
        assert_eq!(top, Some("Answered"), "{dispositions:?}");
        for d in ["SALE", "CALLBK", "Live Disconnect", "XFER"] {
            assert!(dispositions.contains_key(d), "{d}: {dispositions:?}");
        }
        let agents: HashSet<_> = calls.iter().filter_map(|c| c.agent).collect();
        assert!(agents.len() > 100, "{} agents", agents.len());
        // No agent takes two calls at once (but for the second legs of the calls of the day
        // before, which that day's simulation placed).
        let mut busy: HashMap<usize, Vec<(i64, i64)>> = HashMap::new();
        let of_the_day = |c: &&SimCall| {
            let arrived: i64 = c.uniq1.split('.').next().unwrap().parse().unwrap();
            arrived >= day * 60
        };
        for c in calls
            .iter()
            .filter(of_the_day)
            .filter(|c| c.rung_at.is_some() && c.queue != VIP_QUEUE)
        {
            busy.entry(c.agent.unwrap())
                .or_default()
                .push((c.rung_at.unwrap(), c.hung_up_at));
        }
        for (agent, mut spans) in busy {
            spans.sort_unstable();
            let overlaps = spans.windows(2).filter(|w| w[1].0 < w[0].1).count();
            assert_eq!(overlaps, 0, "agent {agent}");
        }
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
        // Rows enter their queue at their call_date.
        assert!(calls.iter().all(|c| c.enter_on_queue == c.call_date));
    }

    #[test]
    fn each_outcome_is_written_as_the_platform_writes_it() {
        let (_, _, calls) = day();
        let direct = |c: &SimCall| c.queue == VIP_QUEUE;
        for c in &calls {
            let row = format!("{c:?}");
            // Final values by outcome; a missed hang-up leaves NONE instead of the term reason.
            let term = |t: &str| c.term_reason == t || c.term_reason == "NONE";
            match c.fate {
                Fate::Answered => {
                    assert!(c.agent.is_some() && c.rung_at.is_some(), "{row}");
                    assert!(c.call_duration >= c.queue_time, "{row}");
                    assert_eq!(c.talk_secs(), c.call_duration - c.queue_time, "{row}");
                    assert!(c.talk_secs() > 0.0, "{row}");
                    if c.disposition == "XFER" {
                        assert!(term("AGENT"), "{row}");
                    } else {
                        assert!(term("CALLER") || term("AGENT"), "{row}");
                    }
                }
                Fate::Abandoned => {
                    assert_eq!(c.disposition, "DROP", "{row}");
                    assert_eq!(c.talk_secs(), 0.0);
                    // Both are the time the caller held.
                    assert!(c.call_duration >= c.queue_time, "{row}");
                    assert!(c.call_duration - c.queue_time < 1.0, "{row}");
                    if c.rung_at.is_some() {
                        // Dropped while an agent's phone rang: the agent is named.
                        assert!(c.agent.is_some() && term("CALLER"), "{row}");
                    } else if direct(c) {
                        assert!(term("CALLER"), "{row}");
                    } else {
                        assert!(c.agent.is_none() && term("ABANDON"), "{row}");
                    }
                }
                Fate::TimedOut => {
                    assert!(
                        (c.disposition == "TIMEOT" && term("QUEUETIMEOUT"))
                            || (c.disposition == "HOLDTO" && term("HOLDTIME")),
                        "{row}"
                    );
                    assert_eq!(c.agent.is_some(), direct(c), "{row}");
                    assert!(c.queue_time >= 45.0 && c.rung_at.is_none(), "{row}");
                    assert_eq!(c.call_duration, c.queue_time, "{row}");
                }
                Fate::NotQueued => {
                    assert!(
                        (c.disposition, c.term_reason) == ("AFTHRS", "AFTERHOURS")
                            || (c.disposition, c.term_reason) == ("NANQUE", "NOAGENT"),
                        "{row}"
                    );
                    assert_eq!((c.call_duration, c.queue_time), (1.0, 0.0), "{row}");
                    assert_eq!(c.final_at, c.call_date, "written final: {row}");
                    assert_eq!(c.agent.is_some(), direct(c), "{row}");
                }
            }
            // The agent-direct queue names its agent on every row, in every phase; no other
            // queue names that agent.
            if direct(c) {
                assert_eq!(c.agent, Some(VIP_AGENT), "{row}");
                for at in [c.call_date, c.answered_at - 1, c.final_at] {
                    assert_eq!(c.agent_shown(c.phase(at)), "agent120", "{row}");
                }
            } else {
                assert_ne!(c.agent, Some(VIP_AGENT), "{row}");
                if c.phase(c.call_date) == Phase::Queue {
                    assert_eq!(c.agent_shown(Phase::Queue), SYSTEM_AGENT, "{row}");
                }
                if let Some(rung) = c.rung_at.filter(|r| *r < c.final_at) {
                    assert_eq!(c.agent_shown(c.phase(rung)), c.agent_name().unwrap());
                }
            }
        }
        let n = |f: &dyn Fn(&SimCall) -> bool| count(&calls, f);
        let ring_drops = n(&|c| c.fate == Fate::Abandoned && c.rung_at.is_some());
        let queue_drops = n(&|c| c.fate == Fate::Abandoned && c.rung_at.is_none());
        assert!(ring_drops > 50 && queue_drops > 3 * ring_drops / 2);
        let timeot = n(&|c| c.disposition == "TIMEOT");
        let holdto = n(&|c| c.disposition == "HOLDTO");
        assert!(
            holdto > 0 && timeot > holdto,
            "{timeot} TIMEOT, {holdto} HOLDTO"
        );
        let afthrs = n(&|c| c.disposition == "AFTHRS");
        let nanque = n(&|c| c.disposition == "NANQUE");
        assert!(
            nanque > 0 && afthrs > nanque,
            "{afthrs} AFTHRS, {nanque} NANQUE"
        );
        // The VIP queue: every outcome.
        for fate in Fate::ALL {
            assert!(n(&|c| direct(c) && c.fate == fate) > 0, "VIP {fate:?}");
        }
        // About 2% of the legs with a final disposition keep NONE.
        let missed = n(&|c| c.term_reason == "NONE");
        let share = missed as f64 / calls.len() as f64;
        assert!((0.01..0.03).contains(&share), "{missed}");
        assert!(calls
            .iter()
            .filter(|c| c.term_reason == "NONE")
            .all(|c| c.fate != Fate::NotQueued && c.hung_up_at == c.dispo_at));
    }

    #[test]
    fn a_transfer_starts_a_second_leg_of_the_same_call() {
        let (_, day, calls) = day();
        let mut by_call: HashMap<&str, Vec<&SimCall>> = HashMap::new();
        for c in &calls {
            by_call.entry(&c.uniq1).or_default().push(c);
        }
        let answered_first = count(&calls, |c| c.leg == 1 && c.fate == Fate::Answered);
        let mut transfers = 0;
        for legs in by_call.values() {
            match legs.as_slice() {
                // The first leg of a call transferred into the day is the day before's; the
                // second of a call transferred after midnight is the next day's.
                [one] if one.leg == 2 => {
                    let epoch: i64 = one.uniq1.split('.').next().unwrap().parse().unwrap();
                    assert!(epoch < day * 60, "{one:?}");
                }
                [one] => assert!(
                    one.disposition != "XFER" || one.hung_up_at >= (day + 1440) * 60,
                    "{one:?}"
                ),
                [first, second] => {
                    transfers += 1;
                    assert_eq!((first.leg, second.leg), (1, 2));
                    assert_eq!(first.disposition, "XFER", "{first:?}");
                    assert_eq!(first.fate, Fate::Answered);
                    assert_eq!(second.call_date, first.hung_up_at);
                    assert!(second.call_date > first.call_date);
                    assert_ne!(second.queue, first.queue);
                    assert_eq!(second.campaign, second.queue % CAMPAIGNS.len());
                    assert!(second.call_date - first.call_date <= MAX_TRANSFER_AFTER_SECS);
                    assert_eq!((&first.src, first.lead_id), (&second.src, second.lead_id));
                }
                more => panic!("{} legs: {more:?}", more.len()),
            }
        }
        // About 2% of the answered calls, whose second legs live their own lives.
        let share = transfers as f64 / answered_first as f64;
        assert!(
            (0.01..0.03).contains(&share),
            "{transfers} of {answered_first}"
        );
        let seconds: Vec<&SimCall> = calls.iter().filter(|c| c.leg == 2).collect();
        assert!(seconds.iter().any(|c| c.fate == Fate::Answered));
        assert!(seconds.iter().all(|c| c.fate != Fate::NotQueued));
    }

    #[test]
    fn phases_follow_the_life_of_a_row() {
        let (_, _, calls) = day();
        let mut full_wrapups = 0;
        for c in &calls {
            let row = format!("{c:?}");
            // The moments phases change, with the second before each.
            let mut moments = vec![c.call_date, c.answered_at, c.hung_up_at, c.dispo_at];
            moments.extend(c.rung_at);
            moments.push(c.final_at);
            let mut at: Vec<i64> = moments.iter().flat_map(|m| [m - 1, *m, m + 1]).collect();
            at.retain(|t| *t >= c.call_date);
            at.sort_unstable();
            let phases: Vec<Phase> = at.iter().map(|t| c.phase(*t)).collect();
            assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?} {row}");
            assert_eq!(c.phase(c.final_at), Phase::Final);
            assert_eq!(c.live_state(c.final_at), None);
            for (t, p) in at.iter().zip(&phases) {
                let state = match p {
                    Phase::Queue | Phase::Ringing => Some("waiting"),
                    Phase::InCall => Some("talking"),
                    Phase::HungUp | Phase::Dispo => Some("wrapup"),
                    Phase::Final => None,
                };
                assert_eq!(c.live_state(*t), state);
            }
            let seen: HashSet<Phase> = phases.iter().copied().collect();
            match c.fate {
                Fate::Answered => {
                    assert!(seen.contains(&Phase::Ringing) && seen.contains(&Phase::InCall));
                    assert!(c.rung_at.unwrap() < c.answered_at, "{row}");
                    assert!(c.answered_at < c.hung_up_at, "{row}");
                    if c.disposition != "XFER" {
                        assert!(seen.contains(&Phase::Dispo), "{row}");
                    }
                    if seen.contains(&Phase::HungUp) && seen.contains(&Phase::Dispo) {
                        full_wrapups += 1;
                    }
                }
                // Never talking, never in wrap-up.
                _ => assert!(
                    seen.iter()
                        .all(|p| *p <= Phase::Ringing || *p == Phase::Final),
                    "{phases:?} {row}"
                ),
            }
            if c.fate == Fate::NotQueued {
                assert_eq!(phases, vec![Phase::Final; phases.len()]);
            }
        }
        assert!(full_wrapups > 1_000, "{full_wrapups}");
    }

    /// However a span is cut into windows, the windows' rows are the span's, the legs that
    /// transfers start in a later window included.
    #[test]
    fn windows_cut_anywhere_give_the_same_rows() {
        let t = Traffic::new(11, TimeZone::UTC);
        let start = 20_000 * 86_400 + 10 * 3600;
        let whole = t.calls(start, start + 7200, i64::MAX);
        let mut cut = Vec::new();
        for w in (start..start + 7200).step_by(617) {
            cut.extend(t.calls(w, (w + 617).min(start + 7200), i64::MAX));
        }
        let key = |c: &SimCall| (c.uniq1.clone(), c.call_date, c.queue);
        let mut a: Vec<_> = whole.iter().map(key).collect();
        let mut b: Vec<_> = cut.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert!(whole.iter().any(|c| c.leg == 2));
        // Legs are distinct rows.
        let legs: HashSet<_> = a.iter().collect();
        assert_eq!(legs.len(), a.len());
        // A leg is served only once it has started.
        let now = start + 3600;
        assert!(t
            .calls(start, start + 7200, now)
            .iter()
            .all(|c| c.call_date <= now));
    }

    #[test]
    fn anomalies_change_only_their_own_calls() {
        let mut t = Traffic::new(5, TimeZone::UTC);
        let start: i64 = 20_000 * 1440 + 9 * 60;
        // Every row, those deleted included.
        let rows = |t: &Traffic| -> Vec<SimCall> {
            t.day(start.div_euclid(1440))
                .iter()
                .filter(|c| (start * 60..(start + 4 * 60) * 60).contains(&c.call_date))
                .cloned()
                .collect()
        };
        let plain = rows(&t);
        t.anomaly_rate = 0.05;
        let odd = rows(&t);
        let long = count(&odd, |c| c.call_duration >= 3.0 * 3600.0);
        let bad = count(&odd, |c| c.bad_date);
        let vanishing = count(&odd, |c| c.vanishes_at.is_some());
        assert!(
            long > 0 && bad > 0 && vanishing > 0,
            "{long} {bad} {vanishing}"
        );
        let plain: HashMap<_, _> = plain.iter().map(|c| ((&c.uniq1, c.leg), c)).collect();
        for c in odd
            .iter()
            .filter(|c| c.vanishes_at.is_none() && !c.bad_date)
        {
            let p = plain[&(&c.uniq1, c.leg)];
            assert_eq!(
                (p.queue, p.fate, p.disposition),
                (c.queue, c.fate, c.disposition)
            );
            if c.call_duration < 3.0 * 3600.0 {
                assert_eq!(p, c);
            }
        }
    }
}
