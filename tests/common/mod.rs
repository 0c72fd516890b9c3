//! Test harness: a simulated Croco-dial and an exporter, both real HTTP servers on ephemeral
//! loopback ports, sharing a manual clock.
#![allow(dead_code)]

pub mod fleet;
pub mod prometheus;
pub mod receiver;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crocodial_exporter::api::{Answer, PollError, RowEntry, RowSink, StreamDecoder};
use crocodial_exporter::clock::ManualClock;
use crocodial_exporter::config::{ApiConfig, ApiSource, Config, NamedZone, Password};
use crocodial_exporter::sim::{SimHandle, Traffic};
use crocodial_exporter::Exporter;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

pub const USER: &str = "apiuser";
pub const PASSWORD: &str = "Sup3r-S3cret-Pa55";

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// Decodes a whole body, fed to the decoder as one chunk, counting no call as counted before:
/// the rows (owned) and the answer.
pub fn decode_whole(body: &[u8]) -> Result<(Vec<RowEntry<'static>>, Answer<'static>), PollError> {
    let mut rows = Vec::new();
    let answer = {
        let mut each = |r: RowEntry<'_>| rows.push(r.into_owned());
        let mut sink = RowSink {
            already_counted: &|_| false,
            row: &mut each,
        };
        let mut decoder = StreamDecoder::new();
        decoder.feed(body, &mut sink)?;
        decoder.finish(&mut sink)?
    };
    Ok((rows, answer))
}

/// A simulated row's leg: its uniq1, call_date (as sent: unreadable ones alike) and queue.
pub fn leg_id(c: &crocodial_exporter::sim::SimCall) -> String {
    let date = if c.bad_date {
        "unreadable".to_string()
    } else {
        c.call_date.to_string()
    };
    format!("{}|{date}|{}", c.uniq1, c.queue)
}

pub struct Sim {
    pub handle: SimHandle,
    pub url: Url,
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the simulator with seeded traffic in `tz`, on the given clock.
pub async fn start_sim(clock: &ManualClock, tz: &str, seed: u64) -> Sim {
    let zone = TimeZone::get(tz).expect("zone");
    let mut traffic = Traffic::new(seed, zone);
    // A small site keeps each poll's body small; the counting rules do not depend on volume.
    traffic.peak_calls_per_minute = 3.0;
    start_sim_with(clock, traffic).await
}

/// Starts the simulator with the given traffic, on the given clock.
pub async fn start_sim_with(clock: &ManualClock, traffic: Traffic) -> Sim {
    start_sim_as(clock, traffic, USER, PASSWORD).await
}

/// Starts the simulator with the given traffic, user and password, on the given clock.
pub async fn start_sim_as(
    clock: &ManualClock,
    traffic: Traffic,
    user: &str,
    password: &str,
) -> Sim {
    let handle = SimHandle::new(traffic, user, password, Arc::new(clock.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(
        handle
            .clone()
            .serve(listener, stop.clone().cancelled_owned()),
    );
    let url = Url::parse(&format!("http://{addr}/goAPIv2/goReports/goAPI.php")).expect("url");
    Sim {
        handle,
        url,
        addr,
        stop,
    }
}

pub fn config(url: &Url, tz: &str) -> Config {
    let mut config = Config::defaults(ApiSource::Remote(Box::new(api_config(url))), "test");
    config.timeout = Duration::from_secs(5);
    config.timezone = NamedZone {
        name: tz.into(),
        zone: TimeZone::get(tz).expect("zone"),
    };
    config.listen_address = "127.0.0.1:0".parse().expect("addr");
    config.state_file = None;
    config
}

pub fn api_config(url: &Url) -> ApiConfig {
    ApiConfig {
        url: url.clone(),
        user: USER.into(),
        password: Password::new(PASSWORD),
        ca_file: None,
        insecure_skip_verify: false,
        tenants: vec![],
        profiles: vec![],
        agents: vec![],
    }
}

/// An exporter whose endpoints are served on an ephemeral port; polls are driven by the test.
pub struct Running {
    pub exporter: Exporter,
    pub base: String,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start_exporter(config: &Config, clock: &ManualClock) -> Running {
    let ApiSource::Remote(api) = &config.api else {
        panic!("tests use a remote API")
    };
    let exporter = Exporter::new(config, api, Arc::new(clock.clone())).expect("exporter");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(Exporter::serve(
        exporter.app.clone(),
        listener,
        stop.clone().cancelled_owned(),
        exporter.web.clone(),
    ));
    Running {
        exporter,
        base: format!("http://{addr}"),
        stop,
    }
}

impl Running {
    pub async fn get(&self, path: &str) -> (u16, String) {
        let res = reqwest::get(format!("{}{}", self.base, path))
            .await
            .expect("GET");
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    /// /metrics as a Prometheus that scrapes after every poll sees it: series created by the
    /// last poll are served at 0 to each scraper once (see `metrics::new_series`), so this
    /// scrapes twice and returns the second.
    pub async fn scrape(&self) -> Exposition {
        self.scrape_once().await;
        self.scrape_once().await
    }

    /// One scrape of /metrics, as Prometheus makes it (with its scrape-timeout header).
    pub async fn scrape_once(&self) -> Exposition {
        let res = reqwest::Client::new()
            .get(format!("{}/metrics", self.base))
            .header("X-Prometheus-Scrape-Timeout-Seconds", "10")
            .send()
            .await
            .expect("GET");
        assert_eq!(res.status().as_u16(), 200);
        Exposition::parse(&res.text().await.expect("body"))
    }
}

/// The legs final by `clock`'s now in `tz`, of the last three days: the simulator's truth.
pub fn final_legs(sim: &Sim, clock: &ManualClock, tz: &str) -> std::collections::HashSet<String> {
    use crocodial_exporter::clock::Clock;
    let zone = TimeZone::get(tz).expect("zone");
    let now = crocodial_exporter::clock::wall_secs(clock.now().to_zoned(zone).datetime());
    sim.handle
        .traffic()
        .calls(now - 3 * 86_400, now + 1, now)
        .into_iter()
        .filter(|c| c.phase(now) == crocodial_exporter::sim::traffic::Phase::Final)
        .map(|c| leg_id(&c))
        .collect()
}

/// An empty directory of this test process's own, under `name`.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("croco-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Today's date in UTC, for bodies served to a binary that runs on the real clock.
pub fn today_utc() -> String {
    use crocodial_exporter::clock::{Clock, SystemClock};
    SystemClock.now().to_zoned(TimeZone::UTC).date().to_string()
}

/// Waits until the exporter at `base` answers /-/ready with 200 (its first poll succeeded).
pub async fn wait_ready(base: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/-/ready")).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of a GET.
pub async fn http_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// Log output kept in memory.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }

    pub fn count(&self, message: &str) -> usize {
        self.text().lines().filter(|l| l.contains(message)).count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Logs {
    /// Captures the log lines written on this thread until the guard is dropped.
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(self.clone())
                .with_ansi(false)
                .finish(),
        )
    }
}

/// A parsed text exposition: samples by name and label set.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
    pub text: String,
}

impl Exposition {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().expect("value"),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("closing brace");
                    (name.to_string(), parse_labels(rest))
                }
            };
            samples.push((name, labels, value));
        }
        Self {
            samples,
            text: text.to_string(),
        }
    }

    /// The value of the one sample with exactly these labels (besides `target`).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name && {
                    let mut l = l.clone();
                    l.remove("target");
                    l == want
                }
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} appears {} times",
            found.len()
        );
        found.first().copied()
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    /// The sum over every sample of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    pub fn count(&self, name: &str) -> usize {
        self.samples.iter().filter(|(n, _, _)| n == name).count()
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(name.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}
