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
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, TextEncoder};

use crate::clock::SharedClock;
use crate::http::{response, Body, Peer};
use crate::metrics::collector::{CdrCollector, REVISION};
use crate::metrics::SharedState;

/// What the endpoints serve.
pub struct App {
    shared: Arc<SharedState>,
    cdr: CdrCollector,
    /// The web config's collector (when there is one) and the process metrics.
    collectors: Vec<Box<dyn Collector>>,
    telemetry_path: String,
    /// When scrapers were last seen (see [`crate::metrics::new_series`]).
    clock: SharedClock,
}

impl App {
    /// The exporter's collector, the web config's (when there is one) and the process metrics.
    pub fn new(
        shared: Arc<SharedState>,
        telemetry_path: impl Into<String>,
        web: Option<&crate::web::WebConfig>,
        clock: SharedClock,
    ) -> prometheus::Result<Self> {
        let cdr = CdrCollector::new(shared.clone())?;
        let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
        collectors.extend(web.map(crate::web::WebConfig::collector));
        #[cfg(target_os = "linux")]
        collectors.push(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Ok(Self {
            shared,
            cdr,
            collectors,
            telemetry_path: telemetry_path.into(),
            clock,
        })
    }

    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// The exposition in the text format, every value as it is (`--once`).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_for(None)
    }

    /// The exposition for a scrape from `scraper`: series it has not been served yet are
    /// served at 0 this once (see [`crate::metrics::new_series`]).
    pub fn encode_for(&self, scraper: Option<std::net::IpAddr>) -> Vec<u8> {
        let scraper = scraper.map(|ip| (ip, self.clock.now()));
        let families: Vec<MetricFamily> = self
            .cdr
            .collect_for(scraper)
            .into_iter()
            .chain(self.collectors.iter().flat_map(|c| c.collect()))
            .collect();
        let mut buf = Vec::with_capacity(64 * 1024);
        if let Err(e) = crate::metrics::encode_text(families, &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        buf
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return response(405, "text/plain; charset=utf-8", "Method Not Allowed\n");
        }
        let path = req.uri().path();
        if path == self.telemetry_path {
            return self.metrics(&req);
        }
        match path {
            "/-/healthy" => response(200, "text/plain; charset=utf-8", "Healthy\n"),
            "/-/ready" => {
                if self.shared.read().health.ready() {
                    response(200, "text/plain; charset=utf-8", "Ready\n")
                } else {
                    response(
                        503,
                        "text/plain; charset=utf-8",
                        "Not ready: no successful poll yet\n",
                    )
                }
            }
            "/" => response(200, "text/html; charset=utf-8", self.landing_page()),
            _ => response(404, "text/plain; charset=utf-8", "Not Found\n"),
        }
    }

    fn metrics(&self, req: &Request<Incoming>) -> Response<Body> {
        let scraper = req.extensions().get::<Peer>().map(|p| p.0.ip());
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
        let state = self.shared.read();
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
        let path = escape(&self.telemetry_path);
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Croco-dial exporter</title></head>\n<body>\n\
             <h1>Croco-dial exporter</h1>\n\
             <p>Prometheus exporter for Croco-dial inbound call detail records.</p>\n\
             <table>\n\
             <tr><th align=\"left\">Version</th><td>{version} ({revision})</td></tr>\n\
             <tr><th align=\"left\">Target</th><td>{target}</td></tr>\n\
             <tr><th align=\"left\">Up</th><td>{up}</td></tr>\n\
             <tr><th align=\"left\">Last poll</th><td>{last}</td></tr>\n\
             <tr><th align=\"left\">Last success</th><td>{last_success}</td></tr>\n\
             <tr><th align=\"left\">Polls</th><td>{polls}</td></tr>\n\
             <tr><th align=\"left\">Backoff</th><td>{backoff}</td></tr>\n\
             </table>\n\
             <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li><li><a href=\"/-/ready\">Readiness</a></li></ul>\n\
             </body></html>\n",
            version = env!("CARGO_PKG_VERSION"),
            revision = escape(REVISION),
            target = escape(self.shared.target()),
            up = if health.up { "yes" } else { "no" },
            last = escape(&last),
            last_success = escape(&last_success),
            polls = health.polls,
            backoff = if health.consecutive_failures == 0 {
                "none".to_string()
            } else {
                format!(
                    "{} consecutive failures; next poll {:.1} s after the last one started",
                    health.consecutive_failures, health.backoff_seconds
                )
            },
        )
    }
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
