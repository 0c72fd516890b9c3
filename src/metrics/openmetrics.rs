//! OpenMetrics text with a timestamp on every sample, as `promtool tsdb create-blocks-from
//! openmetrics` reads it: what a backfill writes.
//!
//! No Rust crate writes timestamped OpenMetrics from the `prometheus` crate's families: its
//! `TextEncoder` writes the Prometheus text format, whose timestamps are milliseconds, only when
//! a metric carries one; `prometheus-client` has its own registry and no sample timestamps. So
//! each step's families go through the same [`super::encode_text`] as /metrics, and its lines
//! are re-stamped: names, label values, their escaping and number formats are a scrape's, so
//! backfilled series and live ones are the same series.
//!
//! The text is written step after step, a step's families after the previous step's (as
//! `promtool` accepts it; OpenMetrics' rule of one block per family would need the whole range in
//! memory), each series only at the steps [`Thinning`] keeps, which it hands over up to
//! [`Thinning::lag`] late (each series' samples still in time order). `# HELP` and `# TYPE`
//! precede a family's samples in every step that has any, since parsers read a sample by the
//! type last declared (Prometheus 3 writes a histogram's `le` as a float only under `# TYPE ...
//! histogram`); a counter family is named without its `_total`, as OpenMetrics names it. The
//! text ends with `# EOF`.
//!
//! [`OpenMetricsWriter::rotate`] goes on in another output from an instant (a file per day):
//! samples are written to the output of their own time, so the one before stays open until
//! no sample of its time can come any more ([`OpenMetricsWriter::retire`]).

use std::io::{self, Write};

use jiff::{SignedDuration, Timestamp};
use prometheus::proto::MetricFamily;

use super::thinning::Thinning;

/// Writes steps of metric families, each at its instant, to `out`.
pub struct OpenMetricsWriter<W: Write> {
    /// The outputs still open, each with the instant its samples start at, oldest first.
    outs: Vec<(Timestamp, W)>,
    /// One step's text exposition, reused.
    text: Vec<u8>,
    /// Series are keyed by `name{labels}`, values compared as text.
    thinning: Thinning<Box<[u8]>>,
    /// One series' samples to write, reused.
    emitted: Vec<(Box<[u8]>, Timestamp)>,
    previous: Option<Timestamp>,
    samples: u64,
}

impl<W: Write> OpenMetricsWriter<W> {
    /// A writer of steps `step` apart.
    pub fn new(out: W, step: SignedDuration) -> Self {
        Self {
            outs: vec![(Timestamp::MIN, out)],
            text: Vec::with_capacity(64 * 1024),
            thinning: Thinning::new(step),
            emitted: Vec::new(),
            previous: None,
            samples: 0,
        }
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Series written so far.
    pub fn series(&self) -> usize {
        self.thinning.series()
    }

    /// Writes the series of `families` at `at` that the history needs ([`Thinning`]); every
    /// one with `everything`. `at` must be later than the previous step.
    pub fn write_step(
        &mut self,
        families: Vec<MetricFamily>,
        at: Timestamp,
        everything: bool,
    ) -> io::Result<()> {
        if self.previous.is_some_and(|p| at <= p) {
            return Err(io::Error::other(format!(
                "steps out of order: {at} after {}",
                self.previous.map_or(String::new(), |p| p.to_string())
            )));
        }
        self.text.clear();
        super::encode_text(families, &mut self.text).map_err(io::Error::other)?;
        self.thinning.step(at, everything);
        let Self {
            outs,
            text,
            thinning,
            emitted,
            samples,
            ..
        } = self;
        let mut help: &[u8] = b"";
        // The family being read, and which outputs it is described in this step.
        let mut family: (&[u8], &[u8], &[u8]) = (b"", b"", b"");
        let mut described = vec![false; outs.len()];
        let mut starts_at_zero = false;
        let zero: Box<[u8]> = Box::from(&b"0"[..]);
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix(b"# HELP ") {
                help = rest;
            } else if let Some(rest) = line.strip_prefix(b"# TYPE ") {
                let (name, kind) = split_last_space(rest);
                starts_at_zero = matches!(kind, b"counter" | b"histogram");
                family = (name, kind, help);
                described.iter_mut().for_each(|d| *d = false);
            } else if line.starts_with(b"#") {
                continue;
            } else {
                let (series, value) = split_last_space(line);
                emitted.clear();
                thinning.emit(
                    series,
                    &Box::from(value),
                    starts_at_zero.then_some(&zero),
                    emitted,
                );
                for (value, when) in emitted.iter() {
                    // The output of the sample's own time.
                    let i = outs
                        .iter()
                        .rposition(|(from, _)| from <= when)
                        .ok_or_else(|| {
                            io::Error::other(format!("a sample at {when}, before every output"))
                        })?;
                    let out = &mut outs[i].1;
                    if !described[i] {
                        describe(out, family.0, family.1, family.2)?;
                        described[i] = true;
                    }
                    sample(out, series, value, &seconds(*when))?;
                    *samples += 1;
                }
            }
        }
        self.previous = Some(at);
        Ok(())
    }

    /// Goes on in `next` for the samples from `from` on; the outputs before stay open for
    /// samples of their time until [`OpenMetricsWriter::retire`] ends them.
    pub fn rotate(&mut self, next: W, from: Timestamp) {
        self.outs.push((from, next));
    }

    /// Ends with `# EOF` and hands back, flushed, the outputs that no sample can reach any more
    /// once the step at `at` is written.
    pub fn retire(&mut self, at: Timestamp) -> io::Result<Vec<W>> {
        let horizon = at - self.thinning.lag();
        let mut ended = Vec::new();
        while self.outs.len() > 1 && self.outs[1].0 <= horizon {
            let (_, mut out) = self.outs.remove(0);
            out.write_all(b"# EOF\n")?;
            out.flush()?;
            ended.push(out);
        }
        Ok(ended)
    }

    /// Ends every output with `# EOF` and hands them back, flushed, oldest first.
    pub fn finish(self) -> io::Result<Vec<W>> {
        let mut ended = Vec::new();
        for (_, mut out) in self.outs {
            out.write_all(b"# EOF\n")?;
            out.flush()?;
            ended.push(out);
        }
        Ok(ended)
    }
}

/// `name{labels}` and the value of a sample line, or a metadata line's name and the rest.
fn split_last_space(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().rposition(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, b""),
    }
}

/// `# HELP` and `# TYPE` of a family, as OpenMetrics names them: a counter without its
/// `_total`; `untyped` is `unknown`. The help is the text format's, whose escaping of `\` and
/// newlines OpenMetrics shares; OpenMetrics also escapes `"`.
fn describe(out: &mut impl Write, name: &[u8], kind: &[u8], help: &[u8]) -> io::Result<()> {
    let help = help.strip_prefix(name).unwrap_or(help);
    let help = help.strip_prefix(b" ").unwrap_or(help);
    let (name, kind) = match (kind, name.strip_suffix(b"_total")) {
        (b"counter", Some(family)) => (family, kind),
        (b"counter" | b"untyped", _) => (name, &b"unknown"[..]),
        _ => (name, kind),
    };
    out.write_all(b"# HELP ")?;
    out.write_all(name)?;
    out.write_all(b" ")?;
    for part in help.split(|&b| b == b'"').enumerate() {
        if part.0 > 0 {
            out.write_all(b"\\\"")?;
        }
        out.write_all(part.1)?;
    }
    out.write_all(b"\n# TYPE ")?;
    out.write_all(name)?;
    out.write_all(b" ")?;
    out.write_all(kind)?;
    out.write_all(b"\n")
}

fn sample(out: &mut impl Write, series: &[u8], value: &[u8], stamp: &str) -> io::Result<()> {
    out.write_all(series)?;
    out.write_all(b" ")?;
    out.write_all(value)?;
    out.write_all(b" ")?;
    out.write_all(stamp.as_bytes())?;
    out.write_all(b"\n")
}

/// OpenMetrics timestamps are seconds; milliseconds are kept, as Prometheus stores them.
fn seconds(at: Timestamp) -> String {
    let ms = at.as_millisecond();
    let (secs, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    if frac == 0 {
        secs.to_string()
    } else {
        format!("{secs}.{frac:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricType};

    fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
        let mut mf = MetricFamily::default();
        mf.set_name(name.into());
        mf.set_help(help.into());
        mf.set_field_type(kind);
        mf.set_metric(metrics);
        mf
    }

    fn labelled(pairs: &[(&str, &str)]) -> Metric {
        Metric::from_label(
            pairs
                .iter()
                .map(|(n, v)| {
                    let mut lp = LabelPair::default();
                    lp.set_name((*n).into());
                    lp.set_value((*v).into());
                    lp
                })
                .collect(),
        )
    }

    fn counter(queue: &str, v: f64) -> Metric {
        let mut m = labelled(&[("queue", queue)]);
        let mut c = Counter::default();
        c.set_value(v);
        m.set_counter(c);
        m
    }

    fn step(calls: &[(&str, f64)], waits: &[f64]) -> Vec<MetricFamily> {
        let mut h = Histogram::default();
        let mut cumulative = 0;
        h.set_bucket(
            [1.0, 2.5]
                .iter()
                .map(|&bound| {
                    cumulative += waits.iter().filter(|&&w| w <= bound).count() as u64 - cumulative;
                    let mut b = Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect(),
        );
        h.set_sample_count(waits.len() as u64);
        h.set_sample_sum(waits.iter().fold(0.0, |a, w| a + w));
        let mut wait = labelled(&[]);
        wait.set_histogram(h);
        let mut g = Gauge::default();
        g.set_value(7.0);
        let mut newest = labelled(&[]);
        newest.set_gauge(g);
        vec![
            family(
                "x_calls_total",
                "Calls \"counted\".",
                MetricType::COUNTER,
                calls.iter().map(|&(q, v)| counter(q, v)).collect(),
            ),
            family(
                "x_wait_seconds",
                "Waits.",
                MetricType::HISTOGRAM,
                vec![wait],
            ),
            family("x_newest", "A gauge.", MetricType::GAUGE, vec![newest]),
            family("x_empty_total", "Nothing yet.", MetricType::COUNTER, vec![]),
        ]
    }

    #[test]
    fn steps_near_a_new_series_are_stamped_and_described_and_start_at_zero() {
        // Every step here is within 5 minutes of a change: written as at every step.
        let t0: Timestamp = "2025-05-29T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2025-05-29T00:01:00Z".parse().unwrap();
        let t2: Timestamp = "2025-05-29T00:01:30.25Z".parse().unwrap();
        let mut w = OpenMetricsWriter::new(Vec::new(), SignedDuration::from_mins(1));
        w.write_step(step(&[("a\"b", 1.0)], &[]), t0, false)
            .unwrap();
        w.write_step(step(&[("a\"b", 2.0), ("c", 3.0)], &[2.0]), t1, false)
            .unwrap();
        w.write_step(step(&[("a\"b", 2.0), ("c", 3.0)], &[2.0, 0.5]), t2, false)
            .unwrap();
        assert!(w.write_step(step(&[], &[]), t2, false).is_err());
        assert_eq!((w.samples(), w.series()), (24, 8));
        let text = String::from_utf8(w.finish().unwrap().remove(0)).unwrap();
        assert_eq!(
            text,
            r#"# HELP x_calls Calls \"counted\".
# TYPE x_calls counter
x_calls_total{queue="a\"b"} 1 1748476800
# HELP x_newest A gauge.
# TYPE x_newest gauge
x_newest 7 1748476800
# HELP x_wait_seconds Waits.
# TYPE x_wait_seconds histogram
x_wait_seconds_bucket{le="1"} 0 1748476800
x_wait_seconds_bucket{le="2.5"} 0 1748476800
x_wait_seconds_bucket{le="+Inf"} 0 1748476800
x_wait_seconds_sum 0 1748476800
x_wait_seconds_count 0 1748476800
# HELP x_calls Calls \"counted\".
# TYPE x_calls counter
x_calls_total{queue="a\"b"} 2 1748476860
x_calls_total{queue="c"} 0 1748476800
x_calls_total{queue="c"} 3 1748476860
# HELP x_newest A gauge.
# TYPE x_newest gauge
x_newest 7 1748476860
# HELP x_wait_seconds Waits.
# TYPE x_wait_seconds histogram
x_wait_seconds_bucket{le="1"} 0 1748476860
x_wait_seconds_bucket{le="2.5"} 1 1748476860
x_wait_seconds_bucket{le="+Inf"} 1 1748476860
x_wait_seconds_sum 2 1748476860
x_wait_seconds_count 1 1748476860
# HELP x_calls Calls \"counted\".
# TYPE x_calls counter
x_calls_total{queue="a\"b"} 2 1748476890.250
x_calls_total{queue="c"} 3 1748476890.250
# HELP x_newest A gauge.
# TYPE x_newest gauge
x_newest 7 1748476890.250
# HELP x_wait_seconds Waits.
# TYPE x_wait_seconds histogram
x_wait_seconds_bucket{le="1"} 1 1748476890.250
x_wait_seconds_bucket{le="2.5"} 2 1748476890.250
x_wait_seconds_bucket{le="+Inf"} 2 1748476890.250
x_wait_seconds_sum 2.5 1748476890.250
x_wait_seconds_count 2 1748476890.250
# EOF
"#
        );
    }

    /// A file per day: each sample goes to the output of its own time (a new series' 0 at
    /// 23:59 to the day before), which stays open until no sample can reach it.
    #[test]
    fn samples_go_to_the_output_of_their_time_and_an_output_ends_when_none_can_reach_it() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let mut w = OpenMetricsWriter::new(Vec::new(), SignedDuration::from_mins(1));
        w.write_step(step(&[("a", 1.0)], &[]), t("2025-05-29T23:59:00Z"), false)
            .unwrap();
        w.rotate(Vec::new(), t("2025-05-30T00:00:00Z"));
        w.write_step(
            step(&[("a", 1.0), ("b", 1.0)], &[]),
            t("2025-05-30T00:00:00Z"),
            false,
        )
        .unwrap();
        // 7 minutes (5 around a change, 2 of refresh) after midnight, the day before is done.
        assert!(w.retire(t("2025-05-30T00:06:59Z")).unwrap().is_empty());
        let ended = w.retire(t("2025-05-30T00:07:00Z")).unwrap();
        assert_eq!(ended.len(), 1);
        let before = String::from_utf8(ended[0].clone()).unwrap();
        assert!(
            before.contains("x_calls_total{queue=\"a\"} 1 1748563140\n"),
            "{before}"
        );
        assert!(
            before.contains("x_calls_total{queue=\"b\"} 0 1748563140\n"),
            "{before}"
        );
        assert!(before.ends_with("\n# EOF\n"));
        let after = String::from_utf8(w.finish().unwrap().remove(0)).unwrap();
        assert!(after.starts_with("# HELP x_calls Calls \\\"counted\\\".\n# TYPE x_calls counter\nx_calls_total{queue=\"a\"} 1 1748563200\nx_calls_total{queue=\"b\"} 1 1748563200\n"), "{after}");
        assert!(after.ends_with("\n# EOF\n"));
        assert!(!after.contains("1748563140"));
    }
}
