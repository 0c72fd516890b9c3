//! Byte layouts of the state file's keys and values. Integers are little-endian except in keys,
//! where big-endian keeps them in order.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::JumpDirection;
use crate::config::MetricsConfig;
use crate::metrics::aggregates::{AgentTotals, CdrAggregates, Histogram, Label, SeriesKey};
use crate::metrics::health::{Health, RecoveryReason, POLL_DURATION_BUCKETS};
use crate::vocab::Outcome;
use crate::vocab::Reason;
use crate::vocab::{CallId, LegKey};
use crate::vocab::{DropReason, Pending, RejectReason};

#[cfg(test)]
fn push_id(out: &mut Vec<u8>, id: &CallId) {
    match id {
        CallId::Packed(p) => {
            out.push(0);
            out.extend_from_slice(&p.to_be_bytes());
        }
        CallId::Text(t) => {
            out.push(1);
            out.extend_from_slice(t.as_bytes());
        }
    }
}

fn decode_id(b: &[u8]) -> Option<CallId> {
    match b.split_first()? {
        (0, rest) => Some(CallId::Packed(u64::from_be_bytes(rest.try_into().ok()?))),
        (1, rest) => Some(CallId::Text(std::str::from_utf8(rest).ok()?.into())),
        _ => None,
    }
}

/// A leg key: 0 and the three packed words, or 1 and the text.
pub fn encode_leg(leg: &LegKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(13);
    push_leg(&mut out, leg);
    out
}

fn push_leg(out: &mut Vec<u8>, leg: &LegKey) {
    match leg {
        LegKey::Packed(words) => {
            out.push(0);
            for w in words {
                out.extend_from_slice(&w.to_be_bytes());
            }
        }
        LegKey::Text(t) => {
            out.push(1);
            out.extend_from_slice(t.as_bytes());
        }
    }
}

pub fn decode_leg(b: &[u8]) -> Option<LegKey> {
    match b.split_first()? {
        (0, rest) if rest.len() == 12 => {
            let word =
                |i: usize| u32::from_be_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
            Some(LegKey::Packed([word(0), word(4), word(8)]))
        }
        (1, rest) => Some(LegKey::Text(std::str::from_utf8(rest).ok()?.into())),
        _ => None,
    }
}

/// The day, as 4 bytes that sort like the signed day number: the start of a day's keys.
pub fn seen_key(day: i64) -> Vec<u8> {
    let day = i32::try_from(day).unwrap_or(if day < 0 { i32::MIN } else { i32::MAX });
    let mut out = Vec::with_capacity(17);
    out.extend_from_slice(&((day as u32) ^ 0x8000_0000).to_be_bytes());
    out
}

fn split_day(k: &[u8]) -> Option<(i64, &[u8])> {
    let (day, rest) = k.split_at_checked(4)?;
    let day = (u32::from_be_bytes(day.try_into().ok()?) ^ 0x8000_0000) as i32;
    Some((i64::from(day), rest))
}

/// The key of a seen leg: its day, then the leg.
pub fn leg_seen_key(day: i64, leg: &LegKey) -> Vec<u8> {
    let mut out = seen_key(day);
    push_leg(&mut out, leg);
    out
}

pub fn split_leg_key(k: &[u8]) -> Option<(i64, LegKey)> {
    let (day, leg) = split_day(k)?;
    Some((day, decode_leg(leg)?))
}

/// A seen call id as files from before legs wrote it: its day, then the id.
pub fn split_seen_key(k: &[u8]) -> Option<(i64, CallId)> {
    let (day, id) = split_day(k)?;
    Some((day, decode_id(id)?))
}

#[cfg(test)]
fn legacy_seen_key(day: i64, id: &CallId) -> Vec<u8> {
    let mut out = seen_key(day);
    push_id(&mut out, id);
    out
}

pub fn encode_pending(p: &Pending) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&p.first_seen.as_microsecond().to_le_bytes());
    out[8..].copy_from_slice(&p.day.to_le_bytes());
    out
}

pub fn decode_pending(b: &[u8]) -> Option<Pending> {
    let first_seen = Timestamp::from_microsecond(read_i64(b.get(..8)?)?).ok()?;
    let day = read_i64(b.get(8..16)?)?;
    Some(Pending { first_seen, day })
}

pub fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

pub fn read_i64(b: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(b.try_into().ok()?))
}

fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

fn read_f64(b: &[u8]) -> Option<f64> {
    Some(f64::from_le_bytes(b.try_into().ok()?))
}

pub fn write_f64s(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn read_f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8).filter_map(read_f64).collect()
}

const CALLS: u8 = 1;
/// Histograms of schema 1, keyed by queue and campaign only: written before the `outcome`
/// label, they cannot be split by it and restart from zero (see [`SeriesCodec::is_reset`]).
const LEGACY_QUEUE_TIME: u8 = 2;
const LEGACY_CALL_DURATION: u8 = 3;
const AGENT: u8 = 4;
const LAST_CALL: u8 = 5;
const OVERFLOW: u8 = 6;
/// Keyed by queue, campaign and outcome.
const QUEUE_TIME: u8 = 7;
const CALL_DURATION: u8 = 8;
/// Keyed by queue and campaign.
const TALK_TIME: u8 = 9;
/// The target's counters without labels ([`crate::metrics::aggregates::Totals`]).
const TOTALS: u8 = 10;
/// Keyed by queue, campaign and outcome.
const LEGS: u8 = 11;
/// Keyed by queue and campaign.
const ANSWERED_WITHIN: u8 = 12;

/// The histogram families as the reset list names them.
pub const QUEUE_TIME_FAMILY: &str = "crocodial_inbound_queue_time_seconds";
pub const CALL_DURATION_FAMILY: &str = "crocodial_inbound_call_duration_seconds";
pub const AGENT_TALK_TIME_FAMILY: &str = "crocodial_inbound_agent_talk_time_seconds_total";

fn key(kind: u8, ids: &[u32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 4 * ids.len());
    k.push(kind);
    for id in ids {
        k.extend_from_slice(&id.to_be_bytes());
    }
    k
}

fn encode_histogram(h: &Histogram) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + 8 * h.counts.len());
    v.extend_from_slice(&h.count.to_le_bytes());
    v.extend_from_slice(&h.sum.to_le_bytes());
    for c in h.counts.iter() {
        v.extend_from_slice(&c.to_le_bytes());
    }
    v
}

fn decode_histogram(v: &[u8], buckets: usize) -> Option<Histogram> {
    if v.len() != 16 + 8 * buckets {
        return None;
    }
    Some(Histogram {
        count: read_u64(&v[..8])?,
        sum: read_f64(&v[8..16])?,
        counts: v[16..]
            .chunks_exact(8)
            .map(read_u64)
            .collect::<Option<_>>()?,
    })
}

/// Keys and values of the aggregate series.
pub struct SeriesCodec {
    queue_time_buckets: usize,
    call_duration_buckets: usize,
    agent_metrics: bool,
}

impl SeriesCodec {
    pub fn new(cfg: &MetricsConfig) -> Self {
        Self {
            queue_time_buckets: cfg.queue_time_buckets.len() + 1,
            call_duration_buckets: cfg.call_duration_buckets.len() + 1,
            agent_metrics: cfg.agent_metrics,
        }
    }

    pub fn encode(cdr: &CdrAggregates, series: &SeriesKey) -> Option<(Vec<u8>, Vec<u8>)> {
        Some(match *series {
            SeriesKey::Calls(k) => (key(CALLS, &k), cdr.calls.get(&k)?.to_le_bytes().to_vec()),
            SeriesKey::Legs(k) => (key(LEGS, &k), cdr.legs.get(&k)?.to_le_bytes().to_vec()),
            SeriesKey::AnsweredWithin(k) => (
                key(ANSWERED_WITHIN, &k),
                cdr.answered_within.get(&k)?.to_le_bytes().to_vec(),
            ),
            SeriesKey::QueueTime(k) => (
                key(QUEUE_TIME, &k),
                encode_histogram(cdr.queue_time.get(&k)?),
            ),
            SeriesKey::CallDuration(k) => (
                key(CALL_DURATION, &k),
                encode_histogram(cdr.call_duration.get(&k)?),
            ),
            SeriesKey::TalkTime(k) => {
                (key(TALK_TIME, &k), encode_histogram(cdr.talk_time.get(&k)?))
            }
            SeriesKey::Agent(a) => {
                let t = cdr.agents.get(&a)?;
                let mut v = t.calls.to_le_bytes().to_vec();
                v.extend_from_slice(&t.talk_seconds.to_le_bytes());
                v.extend_from_slice(&t.timed_calls.to_le_bytes());
                (key(AGENT, &[a]), v)
            }
            SeriesKey::StateRecoveries => return None,
            SeriesKey::Totals => {
                let t = cdr.totals;
                let mut v = t.unique_calls.to_le_bytes().to_vec();
                v.extend_from_slice(&t.duration_below_queue_time.to_le_bytes());
                (key(TOTALS, &[]), v)
            }
            SeriesKey::LastCall(q) => (
                key(LAST_CALL, &[q]),
                cdr.last_call.get(&q)?.to_le_bytes().to_vec(),
            ),
            SeriesKey::Overflow(l) => (
                key(OVERFLOW, &[u32::from(l)]),
                cdr.label_overflow.get(l as usize)?.to_le_bytes().to_vec(),
            ),
        })
    }

    /// Puts one stored series back; `None` if it does not decode.
    pub fn load(
        &self,
        cdr: &mut CdrAggregates,
        k: &[u8],
        v: &[u8],
        queue_time_ok: bool,
        call_duration_ok: bool,
    ) -> Option<()> {
        let (&kind, rest) = k.split_first()?;
        let ids: Vec<u32> = rest
            .chunks_exact(4)
            .map(|c| c.try_into().ok().map(u32::from_be_bytes))
            .collect::<Option<_>>()?;
        let known = |label: Label, id: u32| (id as usize) < cdr.labels[label as usize].len();
        let qco = |ids: &[u32]| -> Option<[u32; 3]> {
            let [q, c, o] = ids.try_into().ok()?;
            (known(Label::Queue, q) && known(Label::Campaign, c) && Outcome::from_id(o).is_some())
                .then_some([q, c, o])
        };
        match kind {
            CALLS => {
                let [q, c, d, t]: [u32; 4] = ids.as_slice().try_into().ok()?;
                if !(known(Label::Queue, q)
                    && known(Label::Campaign, c)
                    && known(Label::Disposition, d)
                    && known(Label::TermReason, t))
                {
                    return None;
                }
                cdr.calls.insert([q, c, d, t], read_u64(v)?);
            }
            LEGACY_QUEUE_TIME | LEGACY_CALL_DURATION => {}
            LEGS => {
                cdr.legs.insert(qco(&ids)?, read_u64(v)?);
            }
            ANSWERED_WITHIN => {
                let [q, c]: [u32; 2] = ids.as_slice().try_into().ok()?;
                if !(known(Label::Queue, q) && known(Label::Campaign, c)) {
                    return None;
                }
                cdr.answered_within.insert([q, c], read_u64(v)?);
            }
            QUEUE_TIME => {
                let key = qco(&ids)?;
                if queue_time_ok {
                    cdr.queue_time
                        .insert(key, decode_histogram(v, self.queue_time_buckets)?);
                }
            }
            CALL_DURATION => {
                let key = qco(&ids)?;
                if call_duration_ok {
                    cdr.call_duration
                        .insert(key, decode_histogram(v, self.call_duration_buckets)?);
                }
            }
            AGENT => {
                let [a]: [u32; 1] = ids.as_slice().try_into().ok()?;
                if !known(Label::Agent, a) || !matches!(v.len(), 16 | 24) {
                    return None;
                }
                if self.agent_metrics {
                    let calls = read_u64(&v[..8])?;
                    let totals = AgentTotals {
                        calls,
                        talk_seconds: read_f64(&v[8..16])?,
                        // A file from before it: every answered leg had a talk time, at 0
                        // where none was known.
                        timed_calls: match v.get(16..24) {
                            Some(timed) => read_u64(timed)?,
                            None => calls,
                        },
                    };
                    cdr.agents.insert(a, totals);
                }
            }
            TALK_TIME => {
                let [q, c]: [u32; 2] = ids.as_slice().try_into().ok()?;
                if !(known(Label::Queue, q) && known(Label::Campaign, c)) {
                    return None;
                }
                if call_duration_ok {
                    cdr.talk_time
                        .insert([q, c], decode_histogram(v, self.call_duration_buckets)?);
                }
            }
            TOTALS => {
                if !ids.is_empty() || v.len() != 16 {
                    return None;
                }
                cdr.totals.unique_calls = read_u64(&v[..8])?;
                cdr.totals.duration_below_queue_time = read_u64(&v[8..])?;
            }
            LAST_CALL => {
                let [q]: [u32; 1] = ids.as_slice().try_into().ok()?;
                if !known(Label::Queue, q) {
                    return None;
                }
                cdr.last_call.insert(q, read_i64(v)?);
            }
            OVERFLOW => {
                let [l]: [u32; 1] = ids.as_slice().try_into().ok()?;
                *cdr.label_overflow.get_mut(l as usize)? = read_u64(v)?;
            }
            _ => return None,
        }
        Some(())
    }

    /// Whether a stored series belongs to one of the `reset` histogram families (a schema 1
    /// histogram always does).
    pub fn is_reset(&self, k: &[u8], reset: &[&str]) -> bool {
        match k.first() {
            Some(&QUEUE_TIME) => reset.contains(&QUEUE_TIME_FAMILY),
            // The talk time histogram has the call-duration buckets.
            Some(&CALL_DURATION | &TALK_TIME) => reset.contains(&CALL_DURATION_FAMILY),
            Some(&LEGACY_QUEUE_TIME | &LEGACY_CALL_DURATION) => true,
            _ => false,
        }
    }

    /// Zeroes the seconds of every stored agent (their calls stay): before legs they were call
    /// durations, queue wait included, and cannot become talk time.
    pub fn zero_agent_seconds(
        &self,
        series: &mut redb::Table<&[u8], &[u8]>,
    ) -> Result<(), redb::StorageError> {
        let mut agents = Vec::new();
        use redb::ReadableTable;
        for entry in series.range(&[AGENT][..]..&[AGENT + 1][..])? {
            let (k, v) = entry?;
            if let Some(calls) = v.value().get(..8) {
                let mut value = calls.to_vec();
                value.extend_from_slice(&0f64.to_le_bytes());
                agents.push((k.value().to_vec(), value));
            }
        }
        for (k, v) in agents {
            series.insert(k.as_slice(), v.as_slice())?;
        }
        Ok(())
    }

    /// The histogram family a stored schema 1 series belonged to, if it is one.
    pub fn legacy_family(k: &[u8]) -> Option<&'static str> {
        match k.first() {
            Some(&LEGACY_QUEUE_TIME) => Some(QUEUE_TIME_FAMILY),
            Some(&LEGACY_CALL_DURATION) => Some(CALL_DURATION_FAMILY),
            _ => None,
        }
    }
}

/// The health counters that must survive a restart, by name so that adding a reason later
/// keeps older files readable.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HealthRecord {
    polls: u64,
    errors: std::collections::BTreeMap<String, u64>,
    rows_new: u64,
    rows_duplicate: u64,
    rows_pending: u64,
    rejected: std::collections::BTreeMap<String, u64>,
    /// Added after the first release: older records have none.
    #[serde(default)]
    dropped: std::collections::BTreeMap<String, u64>,
    /// Added with legs: older records have none.
    #[serde(default)]
    future_rows: u64,
    api_warnings: u64,
    poll_duration_count: u64,
    poll_duration_sum: f64,
    poll_duration_buckets: Vec<u64>,
    recoveries: std::collections::BTreeMap<String, u64>,
    gaps: u64,
    /// Added with clock jumps: older records have none.
    #[serde(default)]
    clock_jumps: std::collections::BTreeMap<String, u64>,
    /// The dialer time reached (see `ingest::timeline`); older records have none.
    #[serde(default)]
    clock_reached: Option<i64>,
}

impl From<&Health> for HealthRecord {
    fn from(h: &Health) -> Self {
        HealthRecord {
            polls: h.polls,
            errors: Reason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), h.errors[r.index()]))
                .collect(),
            rows_new: h.rows.new,
            rows_duplicate: h.rows.duplicate,
            rows_pending: h.rows.pending,
            future_rows: h.rows.future,
            rejected: RejectReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), h.rows.rejected[*r as usize]))
                .collect(),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), h.rows.dropped[*r as usize]))
                .collect(),
            api_warnings: h.api_warnings,
            poll_duration_count: h.poll_duration.count,
            poll_duration_sum: h.poll_duration.sum,
            poll_duration_buckets: h.poll_duration.counts.to_vec(),
            recoveries: RecoveryReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), h.state_recoveries[*r as usize]))
                .collect(),
            gaps: h.state_gaps,
            clock_jumps: JumpDirection::ALL
                .iter()
                .map(|d| (d.as_str().to_string(), h.clock_jumps[*d as usize]))
                .collect(),
            clock_reached: h.clock_reached,
        }
    }
}

impl HealthRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        serde_json::from_slice(b).ok()
    }

    /// Puts the counters back into `h`.
    pub fn apply(&self, h: &mut Health) {
        h.polls = self.polls;
        for r in Reason::ALL {
            h.errors[r.index()] = self.errors.get(r.as_str()).copied().unwrap_or(0);
        }
        h.rows.new = self.rows_new;
        h.rows.duplicate = self.rows_duplicate;
        h.rows.pending = self.rows_pending;
        h.rows.future = self.future_rows;
        for r in RejectReason::ALL {
            h.rows.rejected[r as usize] = self.rejected.get(r.as_str()).copied().unwrap_or(0);
        }
        for r in DropReason::ALL {
            h.rows.dropped[r as usize] = self.dropped.get(r.as_str()).copied().unwrap_or(0);
        }
        h.api_warnings = self.api_warnings;
        if self.poll_duration_buckets.len() == POLL_DURATION_BUCKETS.len() + 1 {
            h.poll_duration.count = self.poll_duration_count;
            h.poll_duration.sum = self.poll_duration_sum;
            h.poll_duration.counts = self.poll_duration_buckets.clone().into_boxed_slice();
        }
        for r in RecoveryReason::ALL {
            h.state_recoveries[r as usize] = self.recoveries.get(r.as_str()).copied().unwrap_or(0);
        }
        h.state_gaps = self.gaps;
        for d in JumpDirection::ALL {
            h.clock_jumps[d as usize] = self.clock_jumps.get(d.as_str()).copied().unwrap_or(0);
        }
        h.clock_reached = self.clock_reached;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keys_sort_by_day_and_round_trip() {
        let a = leg_seen_key(-1, &LegKey::Packed([5, 6, 7]));
        let b = leg_seen_key(0, &LegKey::Text("x\u{1f}y\u{1f}Q".into()));
        let c = leg_seen_key(20_000, &LegKey::Packed([1, 0, u32::MAX]));
        assert!(a < b && b < c);
        assert!(seen_key(20_000) <= c && c < seen_key(20_001));
        assert_eq!(split_leg_key(&a), Some((-1, LegKey::Packed([5, 6, 7]))));
        assert_eq!(
            split_leg_key(&b),
            Some((0, LegKey::Text("x\u{1f}y\u{1f}Q".into())))
        );
        assert_eq!(split_leg_key(&[0, 0]), None);
        assert_eq!(decode_leg(&[0, 1, 2]), None);
        let old = legacy_seen_key(19_000, &CallId::Packed(5));
        assert_eq!(split_seen_key(&old), Some((19_000, CallId::Packed(5))));
        let old = legacy_seen_key(19_000, &CallId::Text("x".into()));
        assert_eq!(
            split_seen_key(&old),
            Some((19_000, CallId::Text("x".into())))
        );
    }

    #[test]
    fn health_sums_round_trip_exactly() {
        // A poll-duration sum seen in CI: without serde_json's float_roundtrip it came back
        // as 0.000986468, and the restarted exporter's counter went backwards.
        let mut h = Health::default();
        h.poll_duration.sum = 0.000_986_468_000_000_000_1;
        h.rows.future = 3;
        let record = HealthRecord::decode(&HealthRecord::from(&h).encode()).expect("decodes");
        let mut back = Health::default();
        record.apply(&mut back);
        assert_eq!(back.rows.future, 3, "future-dated rows survive a restart");
        assert_eq!(
            back.poll_duration.sum.to_bits(),
            h.poll_duration.sum.to_bits()
        );
    }

    /// An agent stored before legs with a known talk time were counted apart (16 bytes):
    /// every answered leg had a talk time then. A 24-byte record round-trips.
    #[test]
    fn agents_of_older_files_and_of_this_one_load() {
        let cfg = MetricsConfig::default();
        let codec = SeriesCodec::new(&cfg);
        let mut cdr = CdrAggregates::new(&cfg);
        cdr.labels[Label::Agent as usize].id("agent001");
        let mut old = 7u64.to_le_bytes().to_vec();
        old.extend_from_slice(&420.0f64.to_le_bytes());
        let k = key(AGENT, &[0]);
        assert_eq!(codec.load(&mut cdr, &k, &old, true, true), Some(()));
        let want = AgentTotals {
            calls: 7,
            talk_seconds: 420.0,
            timed_calls: 7,
        };
        assert_eq!(cdr.agents.get(&0), Some(&want));
        cdr.agents.insert(
            0,
            AgentTotals {
                timed_calls: 5,
                ..want
            },
        );
        let (k, v) = SeriesCodec::encode(&cdr, &SeriesKey::Agent(0)).expect("encodes");
        assert_eq!(v.len(), 24);
        cdr.agents.clear();
        assert_eq!(codec.load(&mut cdr, &k, &v, true, true), Some(()));
        assert_eq!(cdr.agents[&0].timed_calls, 5);
    }

    #[test]
    fn pending_and_histograms_round_trip() {
        let p = Pending {
            first_seen: Timestamp::from_second(1_700_000_000).unwrap(),
            day: 19_675,
        };
        assert_eq!(decode_pending(&encode_pending(&p)), Some(p));
        let h = Histogram {
            counts: vec![1, 2, 3].into_boxed_slice(),
            sum: 12.5,
            count: 6,
        };
        assert_eq!(decode_histogram(&encode_histogram(&h), 3), Some(h.clone()));
        assert_eq!(decode_histogram(&encode_histogram(&h), 4), None);
    }
}
