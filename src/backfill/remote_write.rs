//! `backfill --remote-write`: the history's samples sent with Prometheus's remote-write protocol
//! (1.0: a `WriteRequest` protobuf, snappy-compressed, POSTed), to any receiver that takes
//! samples out of order.
//!
//! The messages are those of Prometheus's `prompb/remote.proto` and `prompb/types.proto`, the
//! fields a sender of float samples sets, declared with `prost`'s derive (prost encodes them);
//! the `snap` crate compresses with snappy's block format, as the protocol asks. Each step's
//! families are thinned as the OpenMetrics output is ([`Thinning`]), and expanded as Prometheus
//! expands a scrape: a counter or gauge is one series, a histogram its `_bucket` series (with
//! `le`, `+Inf` included), `_sum` and `_count`.
//!
//! Requests go one at a time, in the order of the steps, so each series' samples arrive in time
//! order. A request that fails with a 5xx, a 429 or no answer is retried with backoff (the
//! receiver's `Retry-After` when it gives one); any other 4xx, or a certificate not trusted,
//! stops the backfill with the receiver's message or the TLS error, since sending it again
//! would fail again.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use prometheus::proto::{MetricFamily, MetricType};
use reqwest::StatusCode;

use crate::config::{LeStyle, RemoteWrite, RemoteWriteAuth};
use crate::metrics::thinning::Thinning;
use crate::vocab::redacted_url;

/// Attempts at one request before the backfill stops.
pub const MAX_ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest the receiver's Retry-After is followed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries {
    /// Sorted by name, `__name__` first.
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// Why the receiver did not take the samples.
#[derive(Debug, thiserror::Error)]
#[error("remote write to {url}: {message}")]
pub struct RemoteWriteError {
    url: String,
    message: String,
}

/// Sends steps of metric families to a remote-write receiver.
pub struct RemoteWriter {
    client: reqwest::Client,
    config: RemoteWrite,
    /// Series keyed by name and label values; values compared by their bits.
    thinning: Thinning<u64>,
    /// The request being filled: series in the order they came, each with its samples.
    batch: Vec<TimeSeries>,
    in_batch: HashMap<Box<[u8]>, usize>,
    buffered: usize,
    sent: u64,
    key: Vec<u8>,
    /// One series' samples to send, reused.
    emitted: Vec<(u64, Timestamp)>,
}

impl RemoteWriter {
    /// A writer of steps `step` apart to the receiver of `config`.
    pub fn new(config: &RemoteWrite, step: SignedDuration) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("crocodial-exporter/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("--remote-write.ca-file {}: {e}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("--remote-write.ca-file {}: {e}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("--remote-write: {e}"))?;
        Ok(Self {
            client,
            config: config.clone(),
            thinning: Thinning::new(step),
            batch: Vec::new(),
            in_batch: HashMap::new(),
            buffered: 0,
            sent: 0,
            key: Vec::with_capacity(256),
            emitted: Vec::new(),
        })
    }

    /// Samples sent so far.
    pub fn samples(&self) -> u64 {
        self.sent
    }

    /// Series seen so far.
    pub fn series(&self) -> usize {
        self.thinning.series()
    }

    /// Adds the series of `families` at `at` that the history needs (every one with
    /// `everything`), sending each request as it fills.
    pub async fn write_step(
        &mut self,
        families: Vec<MetricFamily>,
        at: Timestamp,
        everything: bool,
    ) -> Result<(), RemoteWriteError> {
        self.thinning.step(at, everything);
        for family in &families {
            let zero = matches!(
                family.get_field_type(),
                MetricType::COUNTER | MetricType::HISTOGRAM
            )
            .then_some(0f64.to_bits());
            for (name, labels, value) in expand(family, self.config.le_style) {
                self.add(&name, &labels, value, zero);
                if self.buffered >= self.config.max_samples_per_send {
                    self.flush().await?;
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, name: &str, labels: &[(&str, String)], value: f64, zero: Option<u64>) {
        self.key.clear();
        self.key.extend_from_slice(name.as_bytes());
        for (n, v) in labels {
            self.key.push(0xff);
            self.key.extend_from_slice(n.as_bytes());
            self.key.push(0xfe);
            self.key.extend_from_slice(v.as_bytes());
        }
        let mut samples = std::mem::take(&mut self.emitted);
        samples.clear();
        self.thinning
            .emit(&self.key, &value.to_bits(), zero.as_ref(), &mut samples);
        if samples.is_empty() {
            self.emitted = samples;
            return;
        }
        let index = match self.in_batch.get(self.key.as_slice()) {
            Some(&i) => i,
            None => {
                let mut l: Vec<Label> = labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: (*n).to_string(),
                        value: v.clone(),
                    })
                    .collect();
                l.push(Label {
                    name: "__name__".into(),
                    value: name.into(),
                });
                l.sort_by(|a, b| a.name.cmp(&b.name));
                self.batch.push(TimeSeries {
                    labels: l,
                    samples: Vec::new(),
                });
                self.in_batch
                    .insert(self.key.as_slice().into(), self.batch.len() - 1);
                self.batch.len() - 1
            }
        };
        for (bits, at) in samples.drain(..) {
            self.batch[index].samples.push(Sample {
                value: f64::from_bits(bits),
                timestamp: at.as_millisecond(),
            });
            self.buffered += 1;
        }
        self.emitted = samples;
    }

    /// Sends what the request being filled holds.
    pub async fn flush(&mut self) -> Result<(), RemoteWriteError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let request = WriteRequest {
            timeseries: std::mem::take(&mut self.batch),
        };
        self.in_batch.clear();
        let body = prost::Message::encode_to_vec(&request);
        let body = snap::raw::Encoder::new()
            .compress_vec(&body)
            .map_err(|e| self.error(format!("snappy: {e}")))?;
        self.send(body).await?;
        self.sent += self.buffered as u64;
        self.buffered = 0;
        Ok(())
    }

    fn error(&self, message: String) -> RemoteWriteError {
        RemoteWriteError {
            url: redacted_url(&self.config.url),
            message,
        }
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), RemoteWriteError> {
        let body = bytes::Bytes::from(body);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .post(self.config.url.clone())
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body.clone());
            for (name, value) in &self.config.headers {
                request = request.header(name, value);
            }
            request = match &self.config.auth {
                Some(RemoteWriteAuth::Basic { user, password }) => {
                    request.basic_auth(user, Some(password))
                }
                Some(RemoteWriteAuth::Bearer(token)) => request.bearer_auth(token),
                None => request,
            };
            let (failure, retry_after) = match request.send().await {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                Ok(answer) => {
                    let status = answer.status();
                    let retry_after = answer
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                    let text = answer.text().await.unwrap_or_default();
                    let message = format!("{status}: {}", receiver_message(&text));
                    let retryable =
                        status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                    if !retryable {
                        return Err(self.error(message));
                    }
                    (message, retry_after)
                }
                // A certificate the receiver's CA did not sign stays so: not retried.
                Err(e) if refused_by_tls(&e) => return Err(self.error(without_url(&e))),
                Err(e) => (without_url(&e), None),
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(self.error(format!("{failure} (after {attempt} attempts)")));
            }
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            let wait = retry_after.unwrap_or(backoff);
            eprintln!(
                "remote write: {failure}; attempt {} of {MAX_ATTEMPTS} in {}",
                attempt + 1,
                humantime::format_duration(Duration::from_millis(wait.as_millis() as u64))
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// The receiver's answer, on one line and not too long to read.
fn receiver_message(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "(no message)".into();
    }
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// Whether the TLS handshake failed (a certificate not trusted, a name that does not match).
fn refused_by_tls(e: &reqwest::Error) -> bool {
    fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
        // io::Error's source() skips the error it wraps (hyper wraps rustls's error in two).
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        e.is::<rustls::Error>()
            || wrapped.is_some_and(|w| is_tls(w as &(dyn std::error::Error + 'static)))
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if is_tls(s) {
            return true;
        }
        source = s.source();
    }
    false
}

/// reqwest's error without the URL it names (which may hold credentials).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.into()
    } else {
        format!("{kind}: {detail}")
    }
}

/// A series' name, labels (in the family's order, `le` last) and value.
type Expanded<'a> = (String, Vec<(&'a str, String)>, f64);

/// The series of a family as Prometheus reads them from a scrape.
fn expand(family: &MetricFamily, le: LeStyle) -> Vec<Expanded<'_>> {
    let name = family.name();
    let mut out = Vec::new();
    for metric in &family.metric {
        let labels: Vec<(&str, String)> = metric
            .label
            .iter()
            .map(|l| (l.name(), l.value().to_string()))
            .collect();
        match family.get_field_type() {
            MetricType::COUNTER => out.push((name.to_string(), labels, metric.counter.value())),
            MetricType::GAUGE => out.push((name.to_string(), labels, metric.gauge.value())),
            MetricType::UNTYPED => out.push((name.to_string(), labels, metric.untyped.value())),
            MetricType::HISTOGRAM => {
                let h = &metric.histogram;
                let mut inf = false;
                for b in &h.bucket {
                    inf |= b.upper_bound() == f64::INFINITY;
                    let mut l = labels.clone();
                    l.push(("le", bound(b.upper_bound(), le)));
                    out.push((format!("{name}_bucket"), l, b.cumulative_count() as f64));
                }
                if !inf {
                    let mut l = labels.clone();
                    l.push(("le", "+Inf".into()));
                    out.push((format!("{name}_bucket"), l, h.sample_count() as f64));
                }
                out.push((format!("{name}_sum"), labels.clone(), h.sample_sum()));
                out.push((format!("{name}_count"), labels, h.sample_count() as f64));
            }
            MetricType::SUMMARY => {
                let s = &metric.summary;
                for q in &s.quantile {
                    let mut l = labels.clone();
                    l.push(("quantile", bound(q.quantile(), le)));
                    out.push((name.to_string(), l, q.value()));
                }
                out.push((format!("{name}_sum"), labels.clone(), s.sample_sum()));
                out.push((format!("{name}_count"), labels, s.sample_count() as f64));
            }
        }
    }
    out
}

/// A bucket's bound as its `le` label reads: as the text exposition writes it (Rust's shortest
/// form, "10"), or as Prometheus 3 normalises it when it scrapes (Go's shortest `%g`, with ".0"
/// where that has neither a point nor an exponent: "10.0", "1e+06").
fn bound(v: f64, style: LeStyle) -> String {
    if v == f64::INFINITY {
        return "+Inf".into();
    }
    if v == f64::NEG_INFINITY {
        return "-Inf".into();
    }
    if v.is_nan() {
        return "NaN".into();
    }
    match style {
        LeStyle::Text => v.to_string(),
        LeStyle::Float => {
            // Go's shortest %g: an exponent below 1e-4 and from 1e6, of two digits at least.
            let sci = format!("{v:e}");
            let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
            let exp: i32 = exp.parse().unwrap_or(0);
            if v != 0.0 && !(-4..6).contains(&exp) {
                let sign = if exp < 0 { '-' } else { '+' };
                format!("{mantissa}e{sign}{:02}", exp.abs())
            } else {
                // 0.0 for -0.0, as Prometheus writes it.
                let plain = (v + 0.0).to_string();
                if plain.contains('.') {
                    plain
                } else {
                    format!("{plain}.0")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_as_prometheus_stores_them() {
        let float = |v| bound(v, LeStyle::Float);
        assert_eq!(float(10.0), "10.0");
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(0.0), "0.0");
        assert_eq!(float(-0.0), "0.0");
        assert_eq!(float(999_999.0), "999999.0");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(2.5), "2.5");
        assert_eq!(float(0.005), "0.005");
        assert_eq!(float(3600.0), "3600.0");
        assert_eq!(float(100_000.0), "100000.0");
        assert_eq!(float(1_000_000.0), "1e+06");
        assert_eq!(float(2_500_000.0), "2.5e+06");
        assert_eq!(float(0.00001), "1e-05");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(bound(10.0, LeStyle::Text), "10");
        assert_eq!(bound(2.5, LeStyle::Text), "2.5");
    }
}
