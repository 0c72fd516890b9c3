//! How many agents a queue needs: Erlang C and Erlang A, computed without factorials so that
//! offered loads up to thousands of Erlangs stay exact to the last digits that matter.
//!
//! Both models take Poisson arrivals (rate λ) and exponential handle times (mean 1/μ) on `n`
//! agents; the offered load is a = λ/μ Erlangs. Erlang C (M/M/n) keeps every caller until
//! served; Erlang A (M/M/n+M) lets each waiting caller hang up after an exponential patience
//! (mean 1/θ). The service level is the share of all arrivals answered within the threshold
//! `t`, callers who hang up counting as not answered: the contact-center definition (answered
//! within threshold ÷ offered). docs/kpis.md gives the formulas and their references.
//!
//! [`Recent`] keeps the legs of the last `--staffing.window` per queue, and turns them into each
//! queue's inputs and figures at every poll.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::vocab::{CountsNow, Outcome};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// How far back the staffing figures look by default (`--staffing.window`), seconds.
pub const DEFAULT_WINDOW_SECS: i64 = 30 * 60;
/// The fewest legs that entered a queue in the window for its figures.
pub const MIN_ARRIVALS: u64 = 20;
/// The fewest answered legs with a talk time ended in the window, for a handle time.
pub const MIN_ANSWERED: u64 = 10;
/// The fewest abandons in the window for a patience; with fewer, Erlang A takes callers as
/// patient as Erlang C does.
pub const MIN_ABANDONS: u64 = 5;
/// The least share of the window that must be covered for figures (after the dialer's
/// midnight, a process started then has seen only the day's legs): a third, 10 minutes of the
/// default 30.
pub const MIN_COVERED_SHARE: i64 = 3;

/// A leg counted in the window.
#[derive(Debug, Clone, Copy)]
struct RecentLeg {
    queue: u32,
    started: Option<i64>,
    ended: i64,
    outcome: Outcome,
    wait: Option<f64>,
    talk: Option<f64>,
}

/// One queue's staffing inputs and figures at the last poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub arrivals_per_second: f64,
    pub handle_time_seconds: f64,
    /// `None` with fewer than [`MIN_ABANDONS`] abandons in the window.
    pub patience_seconds: Option<f64>,
    pub offered_load_erlangs: f64,
    /// Per [`Model::ALL`]; `None` past the most agents searched.
    pub agents_required: [Option<u32>; Model::ALL.len()],
}

/// The legs of the last `--staffing.window`, and the figures made of them. Not stored: a process's
/// first poll fills the window from the legs it sees: every leg of its answer on a first start
/// (which primes them all), the dialer's day's on a start on a state file (whose earlier legs
/// the decoder skips as counted), so that the window then covers no time before the dialer's
/// midnight until it has passed it.
#[derive(Debug, Clone)]
pub struct Recent {
    /// How far back the figures look, seconds.
    window_secs: i64,
    legs: Vec<RecentLeg>,
    /// The window covers no earlier time.
    since: Option<i64>,
    /// This poll is the process's first: the day's legs counted before count into the window.
    filling: bool,
    /// The starts of the legs in progress at this poll, per queue.
    in_progress: FastMap<u32, Vec<i64>>,
    /// Per queue id, the figures of the last poll that could make them.
    pub figures: Vec<(u32, Figures)>,
}

impl Default for Recent {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW_SECS)
    }
}

impl Recent {
    pub fn new(window_secs: i64) -> Self {
        Self {
            window_secs,
            legs: Vec::new(),
            since: None,
            filling: false,
            in_progress: FastMap::default(),
            figures: Vec::new(),
        }
    }

    /// A poll at `now` begins, on the dialer's day that began at `day_start`; `whole_answer`:
    /// every leg of the answer passes through it (a first start, which primes).
    pub fn begin_poll(&mut self, now: Timestamp, day_start: Timestamp, whole_answer: bool) {
        self.filling = self.since.is_none();
        let covered_from = if whole_answer {
            i64::MIN
        } else {
            day_start.as_second()
        };
        self.since
            .get_or_insert((now.as_second() - self.window_secs).max(covered_from));
        self.in_progress.clear();
    }

    /// A leg of the dialer's day that counted before this poll: into the window on a process's
    /// first poll, which has no other way to know it.
    pub fn counted_before(&mut self, queue: u32, leg: &CountsNow, wait: Option<f64>) {
        if self.filling {
            self.count(queue, leg, wait);
        }
    }

    /// A leg counted now.
    pub fn count(&mut self, queue: u32, leg: &CountsNow, wait: Option<f64>) {
        let Some(ended) = leg.ended else {
            return;
        };
        self.legs.push(RecentLeg {
            queue,
            started: leg.started.map(|t| t.as_second()),
            ended: ended.as_second(),
            outcome: leg.outcome,
            wait,
            talk: leg.talk_seconds,
        });
    }

    /// A leg in progress at this poll.
    pub fn in_progress(&mut self, queue: u32, started: Option<Timestamp>) {
        if let Some(t) = started {
            self.in_progress
                .entry(queue)
                .or_default()
                .push(t.as_second());
        }
    }

    /// The poll at `now` is complete: legs that ended before the window are forgotten, and
    /// each queue's figures made, for its service-level threshold (seconds) and goal as
    /// `targets` gives them by queue id.
    pub fn finish(&mut self, now: Timestamp, targets: &dyn Fn(u32) -> (f64, f64)) {
        self.filling = false;
        let now = now.as_second();
        let from = (now - self.window_secs).max(self.since.unwrap_or(now));
        self.legs.retain(|l| l.ended >= now - self.window_secs);
        self.figures.clear();
        if now - from < self.window_secs / MIN_COVERED_SHARE {
            return;
        }
        let mut inputs: std::collections::BTreeMap<u32, Inputs> = Default::default();
        for leg in &self.legs {
            let input = inputs.entry(leg.queue).or_default();
            let offered = leg.outcome != Outcome::Other;
            if offered && leg.started.is_some_and(|t| (from..=now).contains(&t)) {
                input.arrivals += 1;
            }
            if !(from..=now).contains(&leg.ended) {
                continue;
            }
            if let (Outcome::Answered, Some(talk)) = (leg.outcome, leg.talk) {
                input.answered += 1;
                input.talk += talk;
            }
            if let (true, Some(wait)) = (offered && leg.outcome != Outcome::Unfinished, leg.wait) {
                input.waited += wait;
            }
            input.abandons += u64::from(leg.outcome == Outcome::Abandoned);
        }
        for (queue, starts) in &self.in_progress {
            let started = starts.iter().filter(|t| (from..=now).contains(*t)).count();
            inputs.entry(*queue).or_default().arrivals += started as u64;
        }
        let span = (now - from) as f64;
        self.figures = inputs
            .into_iter()
            .filter_map(|(queue, i)| {
                let (threshold, goal) = targets(queue);
                Some((queue, i.figures(span, threshold, goal)?))
            })
            .collect();
    }
}

/// What the window holds of one queue.
#[derive(Debug, Default)]
struct Inputs {
    arrivals: u64,
    answered: u64,
    talk: f64,
    /// Seconds every caller ended in the window waited (answered, gone or timed out): the time
    /// during which a caller could hang up.
    waited: f64,
    abandons: u64,
}

impl Inputs {
    fn figures(&self, span: f64, threshold: f64, goal: f64) -> Option<Figures> {
        if self.arrivals < MIN_ARRIVALS || self.answered < MIN_ANSWERED || self.talk <= 0.0 {
            return None;
        }
        let arrivals_per_second = self.arrivals as f64 / span;
        let handle_time_seconds = self.talk / self.answered as f64;
        // The maximum-likelihood estimate for exponential patience: abandons over the time
        // callers spent exposed to hanging up.
        let patience_seconds = (self.abandons >= MIN_ABANDONS && self.waited > 0.0)
            .then(|| self.waited / self.abandons as f64);
        let q = Queue {
            arrivals_per_second,
            service_rate: 1.0 / handle_time_seconds,
            abandon_rate: patience_seconds.map_or(0.0, |p| 1.0 / p),
        };
        Some(Figures {
            arrivals_per_second,
            handle_time_seconds,
            patience_seconds,
            offered_load_erlangs: arrivals_per_second * handle_time_seconds,
            agents_required: Model::ALL.map(|model| agents_required(model, q, threshold, goal)),
        })
    }
}

/// The service level of `n` agents under Erlang C: 1 − C(n, a)·e^(−(n − a)·t/h), where `h` is
/// the mean handle time (seconds) and `t` the threshold. 0 when n ≤ a: the queue grows without
/// end.
pub fn erlang_c_service_level(n: u32, load: f64, handle_seconds: f64, threshold: f64) -> f64 {
    let n_f = f64::from(n);
    if n_f <= load {
        return 0.0;
    }
    let c = erlang_c(n, load);
    (1.0 - c * (-(n_f - load) * threshold / handle_seconds).exp()).clamp(0.0, 1.0)
}

/// The probability that an arrival waits, C(n, a), from Erlang B's recursion
/// B(k) = a·B(k−1) / (k + a·B(k−1)), which stays within (0, 1] at any load:
/// C = n·B / (n − a·(1 − B)). Valid for n > a.
pub fn erlang_c(n: u32, load: f64) -> f64 {
    let b = erlang_b(n, load);
    let n = f64::from(n);
    n * b / (n - load * (1.0 - b))
}

/// Erlang B: the probability that all `n` agents are busy in a loss system offered `load`.
pub fn erlang_b(n: u32, load: f64) -> f64 {
    (1..=n).fold(1.0, |b, k| load * b / (f64::from(k) + load * b))
}

/// An Erlang A queue: arrivals per second, the service rate of one agent (1 / handle time) and
/// the rate at which a waiting caller hangs up (1 / mean patience; 0: nobody hangs up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queue {
    pub arrivals_per_second: f64,
    pub service_rate: f64,
    pub abandon_rate: f64,
}

/// How far the distribution of callers in the system is followed: states whose probability is
/// below this share of the largest are left out (their sum is far below any figure shown).
const NEGLIGIBLE_LN: f64 = -40.0;
/// The most states followed past the agents: a bound on the work of one figure.
const MAX_WAITING_STATES: usize = 200_000;

/// The service level of `n` agents under Erlang A: the share of arrivals answered within
/// `threshold` seconds.
///
/// An arrival that finds k < n callers in the system is answered at once. One that finds n + j
/// waits with j callers ahead: with i ahead it moves up at rate nμ + iθ (an agent freeing, or a
/// caller ahead hanging up; from i = 0, an agent taking it) and hangs up itself at rate θ. The
/// share answered within `threshold` is the mass that chain, started from the waiting states
/// of π, moves into service by then: computed by uniformization (a Poisson number of steps of
/// the chain made discrete at its fastest rate), which only adds and multiplies non-negative
/// numbers.
pub fn erlang_a_service_level(n: u32, q: Queue, threshold: f64) -> f64 {
    let load = q.arrivals_per_second / q.service_rate;
    if n == 0 {
        return 0.0;
    }
    if q.abandon_rate <= 0.0 {
        return erlang_c_service_level(n, load, 1.0 / q.service_rate, threshold);
    }
    let freeing = f64::from(n) * q.service_rate;
    let Some(states) = stationary_ln(n, q, freeing) else {
        return 0.0;
    };
    let max_ln = states.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = states.iter().map(|ln| (ln - max_ln).exp()).collect();
    let total: f64 = weights.iter().sum();
    let n_usize = n as usize;
    let at_once: f64 = weights[..n_usize].iter().sum();
    let mut ahead = weights[n_usize..].to_vec();
    let theta = q.abandon_rate;
    // The fastest rate out of any state: the one with the most callers ahead.
    let uniform = freeing + ahead.len() as f64 * theta;
    let moves_up = |i: usize| (freeing + i as f64 * theta) / uniform;
    let mut next = vec![0.0; ahead.len()];
    let (mut served, mut within) = (0.0, 0.0);
    for step_weight in poisson_points(uniform * threshold) {
        within += step_weight * served;
        served += ahead[0] * moves_up(0);
        for i in 0..ahead.len() {
            let stays = 1.0 - moves_up(i) - theta / uniform;
            let from_behind = ahead.get(i + 1).map_or(0.0, |w| w * moves_up(i + 1));
            next[i] = ahead[i] * stays.max(0.0) + from_behind;
        }
        std::mem::swap(&mut ahead, &mut next);
    }
    ((at_once + within) / total).clamp(0.0, 1.0)
}

/// The logarithms of the unnormalised probabilities of 0, 1, … callers in the system, from
/// the birth-death ratios λ/(kμ) (k ≤ n) and λ/(nμ + jθ) (n + j), as far as they matter.
fn stationary_ln(n: u32, q: Queue, freeing: f64) -> Option<Vec<f64>> {
    let lambda = q.arrivals_per_second;
    let mut states = Vec::with_capacity(n as usize + 64);
    let mut ln = 0.0;
    states.push(ln);
    for k in 1..=n {
        ln += (lambda / (f64::from(k) * q.service_rate)).ln();
        states.push(ln);
    }
    let mut max_ln = states.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for j in 1..=MAX_WAITING_STATES {
        let ratio = lambda / (freeing + j as f64 * q.abandon_rate);
        ln += ratio.ln();
        states.push(ln);
        max_ln = max_ln.max(ln);
        if ratio < 1.0 && ln < max_ln + NEGLIGIBLE_LN {
            return Some(states);
        }
    }
    // So many callers waiting that the figure is not worth its cost: the queue is hopeless.
    None
}

/// P(Poisson(mean) = k) for k = 0, 1, …, as far as it is not negligible: from the mode
/// outwards, so that neither a factorial nor e^−mean at a large mean is ever formed.
fn poisson_points(mean: f64) -> Vec<f64> {
    if mean <= 0.0 {
        return vec![1.0];
    }
    let mode = mean.floor();
    let last = (mode + 12.0 * mean.sqrt() + 30.0).ceil() as usize;
    let m = mode as usize;
    let mut point = vec![0.0; last + 1];
    point[m] = (mode * mean.ln() - mean - ln_factorial(mode)).exp();
    for k in (m + 1)..=last {
        point[k] = point[k - 1] * mean / k as f64;
    }
    for k in (0..m).rev() {
        point[k] = point[k + 1] * (k + 1) as f64 / mean;
    }
    let whole: f64 = point.iter().sum();
    point.iter_mut().for_each(|p| *p /= whole);
    point
}

/// ln(x!) for a whole x ≥ 0: exact sums below 256, Stirling's series above.
fn ln_factorial(x: f64) -> f64 {
    if x < 256.0 {
        (2..=x as u32).map(|k| f64::from(k).ln()).sum()
    } else {
        let inv = 1.0 / x;
        x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + inv / 12.0
            - inv.powi(3) / 360.0
    }
}

/// The model of a required-agents figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    ErlangC,
    ErlangA,
}

impl Model {
    pub const ALL: [Model; 2] = [Model::ErlangC, Model::ErlangA];

    pub fn as_str(self) -> &'static str {
        match self {
            Model::ErlangC => "erlang_c",
            Model::ErlangA => "erlang_a",
        }
    }
}

/// The most agents a figure is searched up to.
const MAX_AGENTS: u32 = 100_000;

/// The smallest number of agents whose service level (answered within `threshold` ÷ offered)
/// reaches `goal` under `model`; `None` past `MAX_AGENTS`. The service level grows with the
/// agents, so the search doubles, then halves.
pub fn agents_required(model: Model, q: Queue, threshold: f64, goal: f64) -> Option<u32> {
    let load = q.arrivals_per_second / q.service_rate;
    let level = |n: u32| match model {
        Model::ErlangC => erlang_c_service_level(n, load, 1.0 / q.service_rate, threshold),
        Model::ErlangA => erlang_a_service_level(n, q, threshold),
    };
    if !(load.is_finite() && load >= 0.0) {
        return None;
    }
    if load == 0.0 {
        return Some(0);
    }
    let mut high = 1;
    while level(high) < goal {
        if high == MAX_AGENTS {
            return None;
        }
        high = (high * 2).min(MAX_AGENTS);
    }
    let mut low = high / 2;
    // level(low) < goal (or low = 0), level(high) ≥ goal.
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if level(mid) >= goal {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(load: f64, handle: f64, patience: f64) -> Queue {
        Queue {
            arrivals_per_second: load / handle,
            service_rate: 1.0 / handle,
            abandon_rate: if patience.is_finite() {
                1.0 / patience
            } else {
                0.0
            },
        }
    }

    #[test]
    fn erlang_a_without_abandons_is_erlang_c() {
        for (n, load) in [(13, 10.0), (120, 100.0), (1020, 1000.0)] {
            let c = erlang_c_service_level(n, load, 180.0, 20.0);
            // A patience of 30,000 years is no patience limit at all.
            let a = erlang_a_service_level(n, queue(load, 180.0, 1e12), 20.0);
            assert!((a - c).abs() < 1e-6, "{n} {load}: {a} against {c}");
        }
    }

    #[test]
    fn poisson_points_sum_to_one_and_match_their_mean() {
        for mean in [0.3, 4.0, 33.3, 700.0] {
            let p = poisson_points(mean);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let m: f64 = p.iter().enumerate().map(|(k, p)| k as f64 * p).sum();
            assert!((m - mean).abs() < 1e-9 * mean.max(1.0), "{mean}: {m}");
        }
    }

    #[test]
    fn more_agents_never_serve_worse() {
        let q = queue(50.0, 240.0, 90.0);
        let levels: Vec<f64> = (30..80)
            .map(|n| erlang_a_service_level(n, q, 20.0))
            .collect();
        assert!(
            levels.windows(2).all(|w| w[0] <= w[1] + 1e-12),
            "{levels:?}"
        );
        assert!(levels[0] < 0.2 && levels[49] > 0.99);
    }
}
