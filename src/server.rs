//! The exporter's HTTP endpoints: the telemetry path, `/-/healthy`, `/-/ready` and a landing
//! page. A scrape reads the shared state under a read lock that a poll holds only while it
//! applies its finished result, so a scrape never waits for a poll's request.

use std::io::Write;
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response};
use prometheus::core::Collector;
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use crate::clock::SharedClock;
use crate::http::{response, Body, Peer};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::collector::{gauge, named_family, BUILD_INFO, REVISION};
use crate::metrics::{SharedState, Targets};

/// The header a Prometheus-compatible scraper sends on every scrape.
pub const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// What the endpoints serve.
pub struct App {
    targets: Arc<Targets>,
    /// The web config's collector (when there is one) and the process metrics.
    collectors: Vec<Box<dyn Collector>>,
    telemetry_path: String,
    /// When scrapers were last seen (see [`crate::metrics::new_series`]).
    clock: SharedClock,
    /// Where `POST /-/reload` asks for a reload of the targets file (`--web.enable-lifecycle`).
    lifecycle: Option<mpsc::Sender<ReloadRequest>>,
    /// Connections served at once (`--web.max-connections`).
    max_connections: usize,
}

/// A reload asked for over HTTP, and where its outcome goes.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// `crocodial_config_last_reload_successful` and `..._success_timestamp_seconds`.
const RELOAD_FAMILIES: [(&str, &str); 2] = [
    ("crocodial_config_last_reload_successful", "1 if the last reload of --config.file worked, else 0 (the targets before it keep running)."),
    ("crocodial_config_last_reload_success_timestamp_seconds", "When --config.file was last loaded successfully, Unix time."),
];

impl App {
    /// The exporter's collectors of `targets`, the web config's (when there is one) and the
    /// process metrics.
    pub fn new(
        targets: Arc<Targets>,
        telemetry_path: impl Into<String>,
        web: Option<&crate::web::WebConfig>,
        clock: SharedClock,
    ) -> Self {
        let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
        collectors.extend(web.map(crate::web::WebConfig::collector));
        #[cfg(target_os = "linux")]
        collectors.push(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Self {
            targets,
            collectors,
            telemetry_path: telemetry_path.into(),
            clock,
            lifecycle: None,
            max_connections: crate::config::DEFAULT_WEB_MAX_CONNECTIONS as usize,
        }
    }

    /// Serves at most `n` connections at once (`--web.max-connections`).
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n as usize;
        self
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Serves `POST /-/reload`, sending each request to `reloads`.
    pub fn with_lifecycle(mut self, reloads: mpsc::Sender<ReloadRequest>) -> Self {
        self.lifecycle = Some(reloads);
        self
    }

    pub fn targets(&self) -> &Arc<Targets> {
        &self.targets
    }

    /// The exposition in the text format, every value as it is (`--once`).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_for(None)
    }

    /// The exposition for a scrape from `scraper`: series it has not been served yet are
    /// served at 0 this once (see [`crate::metrics::new_series`]).
    pub fn encode_for(&self, scraper: Option<std::net::IpAddr>) -> Vec<u8> {
        let now = Some(self.clock.now());
        // Each target's families, merged by name (the build info once).
        let mut merged: Vec<MetricFamily> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        for target in self.targets.all() {
            for mut family in target.collect_for(now, scraper) {
                match index.get(family.name()) {
                    Some(_) if family.name() == BUILD_INFO => {}
                    Some(&i) => merged[i].mut_metric().extend(family.take_metric()),
                    None => {
                        index.insert(family.name().to_string(), merged.len());
                        merged.push(family);
                    }
                }
            }
        }
        if let Some(status) = self.targets.reload_status() {
            let last = status.last_success.as_millisecond() as f64 / 1000.0;
            for ((name, help), value) in RELOAD_FAMILIES
                .iter()
                .zip([f64::from(u8::from(status.successful)), last])
            {
                merged.push(named_family(
                    name.to_string(),
                    help.to_string(),
                    MetricType::GAUGE,
                    vec![gauge(&[], value)],
                ));
            }
        }
        let families: Vec<MetricFamily> = merged
            .into_iter()
            .chain(self.collectors.iter().flat_map(|c| c.collect()))
            .collect();
        let mut buf = Vec::with_capacity(64 * 1024);
        if let Err(e) = crate::metrics::encode_text(families, &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        buf
    }

    /// A probe's answer: 200 and `ok` when every target's health `passes`, else 503 and `failed`
    /// followed by the names of the targets that do not.
    fn probe(
        &self,
        passes: impl Fn(&crate::metrics::Health) -> bool,
        ok: &str,
        failed: &str,
    ) -> Response<Body> {
        let failing: Vec<String> = self
            .targets
            .all()
            .iter()
            .filter(|t| !passes(&t.shared().read().health))
            .map(|t| t.shared().target().to_string())
            .collect();
        let text = "text/plain; charset=utf-8";
        if failing.is_empty() {
            response(200, text, format!("{ok}\n"))
        } else {
            response(503, text, format!("{failed} {}\n", failing.join(", ")))
        }
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() == "/-/reload" {
            return self.reload(req.method()).await;
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return response(405, "text/plain; charset=utf-8", "Method Not Allowed\n");
        }
        let path = req.uri().path();
        if path == self.telemetry_path {
            return self.metrics(&req);
        }
        match path {
            "/-/healthy" => self.probe(
                |h| h.healthy(),
                "Healthy",
                &format!(
                    "Unhealthy: the state file could not store the last {} polls of",
                    crate::metrics::health::STATE_FAILURES_UNHEALTHY
                ),
            ),
            "/-/ready" => self.probe(
                |h| h.ready(),
                "Ready",
                "Not ready: no successful poll yet of",
            ),
            "/" => response(200, "text/html; charset=utf-8", self.landing_page()),
            _ => response(404, "text/plain; charset=utf-8", "Not Found\n"),
        }
    }

    /// `POST` (or `PUT`) `/-/reload`: rereads the targets file, as Prometheus's endpoint does,
    /// when `--web.enable-lifecycle` allows it.
    async fn reload(&self, method: &Method) -> Response<Body> {
        let text = "text/plain; charset=utf-8";
        let Some(reloads) = &self.lifecycle else {
            return response(403, text, "Lifecycle API is not enabled.\n");
        };
        if !matches!(*method, Method::POST | Method::PUT) {
            return response(405, text, "Method Not Allowed: POST to reload\n");
        }
        let (done, outcome) = oneshot::channel();
        if reloads.send(done).await.is_err() {
            return response(503, text, "shutting down\n");
        }
        match outcome.await {
            Ok(Ok(())) => response(200, text, "Reloaded\n"),
            Ok(Err(e)) => response(500, text, format!("failed to reload config: {e}\n")),
            Err(_) => response(503, text, "shutting down\n"),
        }
    }

    fn metrics(&self, req: &Request<Incoming>) -> Response<Body> {
        // Prometheus, Grafana Alloy and vmagent send the scrape timeout on every scrape; new
        // series are held at 0 for them alone (their rate() needs the 0), so that a person
        // or a script reading /metrics sees the values at once.
        let scraper = req
            .headers()
            .contains_key(SCRAPE_TIMEOUT_HEADER)
            .then(|| req.extensions().get::<Peer>().map(|p| p.0.ip()))
            .flatten();
        let body = self.encode_for(scraper);
        let content_type = TextEncoder::new().format_type().to_string();
        if accepts_gzip(req) {
            let mut gz = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            if gz.write_all(&body).is_ok() {
                if let Ok(compressed) = gz.finish() {
                    let mut res = response(200, &content_type, compressed);
                    res.headers_mut().insert(
                        header::CONTENT_ENCODING,
                        header::HeaderValue::from_static("gzip"),
                    );
                    return res;
                }
            }
        }
        response(200, &content_type, body)
    }

    fn landing_page(&self) -> String {
        let rows: String = self
            .targets
            .all()
            .iter()
            .map(|t| target_row(t.shared()))
            .collect();
        let path = escape(&self.telemetry_path);
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Croco-dial exporter</title></head>\n<body>\n\
             <h1>Croco-dial exporter</h1>\n\
             <p>Prometheus exporter for Croco-dial inbound call detail records. Version {version} ({revision}).</p>\n\
             <table>\n\
             <tr><th align=\"left\">Target</th><th align=\"left\">Up</th><th align=\"left\">Last poll</th><th align=\"left\">Last success</th><th align=\"left\">Polls</th><th align=\"left\">Backoff</th></tr>\n\
             {rows}\
             </table>\n\
             <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li><li><a href=\"/-/ready\">Readiness</a></li></ul>\n\
             </body></html>\n",
            version = env!("CARGO_PKG_VERSION"),
            revision = escape(REVISION),
        )
    }
}

/// A target's row of the landing page: up, its last poll and error, last success, backoff.
fn target_row(shared: &SharedState) -> String {
    let state = shared.read();
    let health = &state.health;
    let last = match &health.last_poll {
        None => "no poll yet".to_string(),
        Some(p) => {
            let outcome = match &p.result {
                Ok(new) => format!("success, {new} new calls"),
                Err(e) => format!("failed ({}): {}", e.reason, e.message),
            };
            format!("{} at {} ({:.3} s)", outcome, p.at, p.duration_seconds)
        }
    };
    let last_success = health
        .last_success
        .map_or_else(|| "never".to_string(), |t| t.to_string());
    let backoff = if health.consecutive_failures == 0 {
        "none".to_string()
    } else {
        format!(
            "{} consecutive failures; next poll {:.1} s after the last one started",
            health.consecutive_failures, health.backoff_seconds
        )
    };
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        escape(shared.target()),
        if health.up { "yes" } else { "no" },
        escape(&last),
        escape(&last_success),
        health.polls,
        escape(&backoff),
    )
}

fn accepts_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
