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
//! memory), each series only at the steps [`Thinning`] keeps: when it changes, and often enough
//! for PromQL. `# HELP` and `# TYPE` precede a family's samples in every step that has any,
//! since parsers read a sample by the type last declared (Prometheus 3 writes a histogram's `le`
//! as a float only under `# TYPE ... histogram`); a counter family is named without its
//! `_total`, as OpenMetrics names it. The text ends with `# EOF`; [`OpenMetricsWriter::rotate`]
//! ends it and goes on in another output (a file per day), the series' history carried over.

use std::io::{self, Write};

use jiff::{SignedDuration, Timestamp};
use prometheus::proto::MetricFamily;

use super::thinning::{Emit, Thinning};

/// Writes steps of metric families, each at its instant, to `out`.
pub struct OpenMetricsWriter<W: Write> {
    out: W,
    /// One step's text exposition, reused.
    text: Vec<u8>,
    /// Series are keyed by `name{labels}`, values compared as text.
    thinning: Thinning<Box<[u8]>>,
    previous: Option<Timestamp>,
    samples: u64,
}

impl<W: Write> OpenMetricsWriter<W> {
    /// A writer of steps `step` apart.
    pub fn new(out: W, step: SignedDuration) -> Self {
        Self {
            out,
            text: Vec::with_capacity(64 * 1024),
            thinning: Thinning::new(step),
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
        let stamp = seconds(at);
        let Self {
            out,
            text,
            thinning,
            samples,
            ..
        } = self;
        let mut help: &[u8] = b"";
        // The family being read, until its first sample written describes it.
        let mut family: Option<(&[u8], &[u8], &[u8])> = None;
        let mut starts_at_zero = false;
        let zero: Box<[u8]> = Box::from(&b"0"[..]);
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix(b"# HELP ") {
                help = rest;
            } else if let Some(rest) = line.strip_prefix(b"# TYPE ") {
                let (name, kind) = split_last_space(rest);
                starts_at_zero = matches!(kind, b"counter" | b"histogram");
                family = Some((name, kind, help));
            } else if line.starts_with(b"#") {
                continue;
            } else {
                let (series, value) = split_last_space(line);
                let value: Box<[u8]> = value.into();
                let emit = thinning.emit(series, &value, starts_at_zero.then_some(&zero));
                if emit == Emit::Nothing {
                    continue;
                }
                if let Some((name, kind, help)) = family.take() {
                    describe(out, name, kind, help)?;
                }
                if let Emit::BeforeAndNow(before, when) = emit {
                    sample(out, series, &before, &seconds(when))?;
                    *samples += 1;
                }
                sample(out, series, &value, &stamp)?;
                *samples += 1;
            }
        }
        self.previous = Some(at);
        Ok(())
    }

    /// Ends the text so far with `# EOF` and goes on in `next`; the output ended is handed
    /// back, flushed.
    pub fn rotate(&mut self, next: W) -> io::Result<W> {
        let mut ended = std::mem::replace(&mut self.out, next);
        ended.write_all(b"# EOF\n")?;
        ended.flush()?;
        Ok(ended)
    }

    /// Ends the text with `# EOF` and hands back the writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"# EOF\n")?;
        self.out.flush()?;
        Ok(self.out)
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
    fn steps_are_stamped_described_and_thinned_and_new_series_start_at_zero() {
        let t0: Timestamp = "2025-05-29T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2025-05-29T00:01:00Z".parse().unwrap();
        let t2: Timestamp = "2025-05-29T00:01:30.25Z".parse().unwrap();
        let t3: Timestamp = "2025-05-29T00:02:00Z".parse().unwrap();
        let mut w = OpenMetricsWriter::new(Vec::new(), SignedDuration::from_mins(1));
        w.write_step(step(&[("a\"b", 1.0)], &[]), t0, false)
            .unwrap();
        w.write_step(step(&[("a\"b", 2.0), ("c", 3.0)], &[2.0]), t1, false)
            .unwrap();
        w.write_step(step(&[("a\"b", 2.0), ("c", 3.0)], &[2.0, 0.5]), t2, false)
            .unwrap();
        assert!(w.write_step(step(&[], &[]), t2, false).is_err());
        // The last step of a history has every series.
        w.write_step(step(&[("a\"b", 2.0), ("c", 3.0)], &[2.0, 0.5]), t3, true)
            .unwrap();
        assert_eq!((w.samples(), w.series()), (28, 8));
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
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
# HELP x_wait_seconds Waits.
# TYPE x_wait_seconds histogram
x_wait_seconds_bucket{le="2.5"} 1 1748476860
x_wait_seconds_bucket{le="+Inf"} 1 1748476860
x_wait_seconds_sum 2 1748476860
x_wait_seconds_count 1 1748476860
# HELP x_wait_seconds Waits.
# TYPE x_wait_seconds histogram
x_wait_seconds_bucket{le="1"} 0 1748476860
x_wait_seconds_bucket{le="1"} 1 1748476890.250
x_wait_seconds_bucket{le="2.5"} 2 1748476890.250
x_wait_seconds_bucket{le="+Inf"} 2 1748476890.250
x_wait_seconds_sum 2.5 1748476890.250
x_wait_seconds_count 2 1748476890.250
# HELP x_calls Calls \"counted\".
# TYPE x_calls counter
x_calls_total{queue="a\"b"} 2 1748476920
x_calls_total{queue="c"} 3 1748476920
# HELP x_newest A gauge.
# TYPE x_newest gauge
x_newest 7 1748476920
# HELP x_wait_seconds Waits.
# TYPE x_wait_seconds histogram
x_wait_seconds_bucket{le="1"} 1 1748476920
x_wait_seconds_bucket{le="2.5"} 2 1748476920
x_wait_seconds_bucket{le="+Inf"} 2 1748476920
x_wait_seconds_sum 2.5 1748476920
x_wait_seconds_count 2 1748476920
# EOF
"#
        );
    }

    #[test]
    fn a_rotation_ends_the_text_and_the_next_output_goes_on_from_the_same_series() {
        let t0: Timestamp = "2025-05-29T23:59:00Z".parse().unwrap();
        let t1: Timestamp = "2025-05-30T00:00:00Z".parse().unwrap();
        let mut w = OpenMetricsWriter::new(Vec::new(), SignedDuration::from_mins(1));
        w.write_step(step(&[("a", 1.0)], &[]), t0, false).unwrap();
        let first = w.rotate(Vec::new()).unwrap();
        w.write_step(step(&[("a", 1.0), ("b", 1.0)], &[]), t1, false)
            .unwrap();
        let second = String::from_utf8(w.finish().unwrap()).unwrap();
        assert!(String::from_utf8(first)
            .unwrap()
            .ends_with("x_wait_seconds_count 0 1748563140\n# EOF\n"));
        assert_eq!(
            second,
            "# HELP x_calls Calls \\\"counted\\\".\n# TYPE x_calls counter\nx_calls_total{queue=\"b\"} 0 1748563140\nx_calls_total{queue=\"b\"} 1 1748563200\n# EOF\n"
        );
    }
}
