//! # crocodial-exporter
//!
//! A Prometheus exporter for Croco-dial, a hosted contact-center dialer. Every poll interval it
//! asks the `inbound_cdr` report for the recent window of calls, counts each leg of a call (its
//! row in one queue, keyed by `uniq1`, `call_date` and `queue`) exactly once, although every
//! poll re-sends the whole window, and only once the row is final, and serves counters and
//! histograms on `/metrics`.
//!
//! ## Layout
//!
//! The modules form layers, numbered as in `tests/layers.rs`, which reads the imports and fails
//! on any that does not point to a lower layer; so there is no cycle, and a change can only
//! reach the layers above it.
//!
//! 0. The shared words and plumbing, importing nothing of the exporter:
//!    - [`vocab`]: the call id and the leg key, how a leg ended (outcome) and what it does while
//!      in progress, what a poll made of its rows, why a row or call was not counted and why a
//!      poll failed, the legs kept pending, and the plan of changes one poll makes;
//!    - [`clock`]: the injectable wall clock and dialer wall-clock seconds;
//!    - [`web`]: the web config file (TLS, basic auth, headers), re-read when it changes.
//! 1. [`sim::traffic`]: the simulated traffic model (uses `clock`).
//! 2. [`config`]: command-line flags, parsed and validated once into a [`Config`]; every flag
//!    default is one constant. Nothing past it sees clap.
//! 3. [`api`]: the Croco-dial client ([`api::client`]), the one decoder of its PHP-flavoured
//!    answers, which walks the envelope as the body arrives and hands over a row at a time
//!    ([`api::stream`]), the values of an answer and what they mean ([`api::decode`]), and the
//!    classified errors of a poll ([`api::error`]).
//! 4. [`metrics`]: the aggregates and poll health kept in plain structures
//!    ([`metrics::aggregates`], [`metrics::health`]), the collector that emits them at scrape
//!    time ([`metrics::collector`]), the new series held at 0 until each scraper has seen
//!    them so ([`metrics::new_series`]), and the timestamped OpenMetrics a backfill writes of
//!    the same families ([`metrics::openmetrics`]).
//! 5. [`state`]: the redb state file, what a restart resumes from, written once per poll;
//!    [`events`]: notable events, each of which both logs and counts, and the only writer of
//!    poll health.
//! 6. [`ingest`]: the query window ([`ingest::window`]), the poll schedule
//!    ([`ingest::schedule`]), the seen set of legs ([`ingest::seen`]), the counting rules
//!    (outcome, talk time, live state: [`ingest::dedup`]) and one whole poll
//!    ([`ingest::poller`]), whose state commit runs on a blocking thread.
//! 7. [`http`]: the hyper plumbing the exporter shares with the simulator; [`backfill`]: past
//!    days of calls as timestamped OpenMetrics, each leg counted by the poll's rules at the
//!    moment it ended, and the state a live exporter continues from.
//! 8. [`server`]: the exporter's HTTP endpoints; [`sim`]: the simulated Croco-dial behind
//!    `--demo`, `simulate` and the tests (it uses only `clock`, `http`, `web` and its traffic
//!    model); [`healthcheck`]: the `healthcheck` subcommand, a client of a running exporter's
//!    `/-/healthy` for container health checks.
//! 9. This crate root (the exporter's parts wired together, and [`run`]) and the binary
//!    (`main.rs`: flags, tracing, then `run`).

pub mod api;
pub mod backfill;
pub mod clock;
pub mod config;
pub mod events;
pub mod healthcheck;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod server;
pub mod sim;
pub mod state;
pub mod vocab;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::Rng;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use config::Config;

use api::{ApiClient, PollError};
use clock::{SharedClock, SystemClock};
use config::{ApiConfig, ApiSource, Password};
use ingest::Poller;
use metrics::SharedState;
use server::App;

/// Why the exporter stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("poll failed: {0}")]
    Poll(#[from] PollError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    State(#[from] state::StateError),
}

impl RunError {
    /// The process's exit code: 2 for a state file that cannot be opened or created (a setting
    /// to fix, as for a bad flag), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::State(state::StateError::Unusable { .. }) => 2,
            _ => 1,
        }
    }
}

/// The exporter's parts, wired but not started: what `run` uses and what tests drive directly.
pub struct Exporter {
    pub poller: Poller,
    pub app: Arc<App>,
    /// TLS, basic auth and headers of the endpoints (`--web.config.file`).
    pub web: Option<Arc<web::WebConfig>>,
}

impl Exporter {
    pub fn new(config: &Config, api: &ApiConfig, clock: SharedClock) -> Result<Self, RunError> {
        let client = ApiClient::new(api, config.timeout)
            .map_err(|e| RunError::Setup(e.to_string()))?
            .with_max_response_bytes(config.max_response_bytes);
        let shared = Arc::new(SharedState::new(config.target.clone(), &config.metrics));
        let web = match &config.web_config_file {
            Some(path) => Some(Arc::new(
                web::WebConfig::load(path).map_err(|e| RunError::Setup(e.to_string()))?,
            )),
            None => None,
        };
        let app = App::new(
            shared.clone(),
            config.telemetry_path.clone(),
            web.as_deref(),
            clock.clone(),
        )
        .map_err(|e| RunError::Setup(format!("metrics registry: {e}")))?;
        let (store, restored) = match (&config.state_file, config.once) {
            (Some(path), false) => open_state(path, config, &shared, clock.now())?,
            _ => (None, None),
        };
        Ok(Self {
            poller: Poller::new(
                config,
                client,
                shared,
                clock,
                store.map(|s| Arc::new(s) as Arc<dyn state::StateStore>),
                restored,
            ),
            app: Arc::new(app),
            web,
        })
    }

    /// Serves the endpoints on `listener` until `shutdown`.
    pub async fn serve(
        app: Arc<App>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        web: Option<Arc<web::WebConfig>>,
    ) {
        let handler = move |req| app.clone().handle(req);
        http::serve(listener, handler, shutdown, web).await;
    }
}

/// Opens the state file: what it restores, or a fresh start (a recovery is counted and logged).
fn open_state(
    path: &std::path::Path,
    config: &Config,
    shared: &SharedState,
    now: jiff::Timestamp,
) -> Result<(Option<state::Store>, Option<state::Restored>), RunError> {
    let opened = state::open(path, &config.target, &config.metrics, now)?;
    if let Some((reason, message)) = opened.recovered {
        let mut state = shared.write();
        events::StateRecovered { reason, message }.emit(&config.target, &mut state.health);
        // Served at 0 first, so that increase() sees this start's recovery.
        shared
            .new_series()
            .hold([metrics::aggregates::SeriesKey::StateRecoveries]);
    }
    match (&opened.store, &opened.restored) {
        (Some(store), Some(restored)) => {
            tracing::info!(
                target_name = %config.target,
                path = %path.display(),
                seen = restored.remembered.legs.len() + restored.remembered.legacy_calls.len(),
                pending = restored.remembered.pending.len(),
                "state restored; counting resumes where it stopped"
            );
            if let Some(what) = &restored.not_migrated {
                tracing::info!(target_name = %config.target, path = %path.display(), "state file {what}");
            }
            if !restored.reset.is_empty() {
                tracing::warn!(
                    target_name = %config.target,
                    series = ?restored.reset,
                    "these series start from zero: histogram buckets changed since the state was written, or the state was written before the outcome label (histograms) or before talk time (agent seconds)"
                );
                store.drop_reset_series(&config.metrics, &restored.reset)?;
            }
        }
        (Some(_), None) => tracing::info!(
            target_name = %config.target,
            path = %path.display(),
            "new state file; the first poll marks the calls already in the window as seen"
        ),
        (None, _) => {}
    }
    Ok((opened.store, opened.restored))
}

/// Runs the exporter until `shutdown` completes (or, with `--once`, for one poll).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let stop = CancellationToken::new();
    let result = run_until(config, shutdown, stop.clone()).await;
    stop.cancel();
    result
}

async fn run_until(
    config: Config,
    shutdown: impl Future<Output = ()>,
    stop: CancellationToken,
) -> Result<(), RunError> {
    let clock: SharedClock = Arc::new(SystemClock);
    let api = match &config.api {
        ApiSource::Remote(api) => (**api).clone(),
        ApiSource::Demo(traffic) => {
            start_demo_api((**traffic).clone(), clock.clone(), stop.clone()).await?
        }
    };
    if api.insecure_skip_verify {
        tracing::warn!(api = %redacted(&api.url), "--api.insecure-skip-verify: the API's TLS certificate is not verified; anyone in the path can read the password");
    }
    if config.once {
        let exporter = Exporter::new(&config, &api, clock)?;
        let mut poller = exporter.poller;
        poller.poll().await?;
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&exporter.app.encode())
            .and_then(|()| out.flush())
            .map_err(|e| RunError::Setup(format!("writing to stdout: {e}")))?;
        return Ok(());
    }

    // Listening first: the state file is opened (and created) only once the exporter can
    // serve, so a start that fails leaves none behind.
    let listener = http::listen(config.listen_address).map_err(|source| RunError::Bind {
        addr: config.listen_address,
        source,
    })?;
    let local = listener.local_addr().unwrap_or(config.listen_address);
    let exporter = Exporter::new(&config, &api, clock)?;
    let mut poller = exporter.poller;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        target_name = %config.target,
        api = %redacted(&api.url),
        timezone = %config.timezone.name,
        interval = %humantime::format_duration(config.poll_interval),
        lookback = %humantime::format_duration(config.lookback),
        listen = %local,
        tls = exporter.web.as_ref().is_some_and(|w| w.current().tls.is_some()),
        basic_auth = exporter.web.as_ref().is_some_and(|w| !w.current().users.is_empty()),
        "crocodial-exporter started"
    );
    // Polls back off up to --poll.max-backoff while the API fails; a call still in progress
    // whose day leaves the window before the next poll is lost (and counted as dropped).
    if config.lookback < config.cdr.max_pending.saturating_add(config.max_backoff) {
        tracing::warn!(
            lookback = %humantime::format_duration(config.lookback),
            max_pending = %humantime::format_duration(config.cdr.max_pending),
            max_backoff = %humantime::format_duration(config.max_backoff),
            "--poll.lookback is shorter than --cdr.max-pending + --poll.max-backoff: after a long API outage, calls still in progress can leave the window uncounted (counted as dropped, reason left_window)"
        );
    }
    let server = tokio::spawn(Exporter::serve(
        exporter.app.clone(),
        listener,
        stop.clone().cancelled_owned(),
        exporter.web.clone(),
    ));
    ingest::schedule::every(shutdown, &mut poller).await;
    tracing::info!("shutting down");
    stop.cancel();
    let _ = server.await;
    Ok(())
}

/// Runs `backfill` (against the built-in simulator with `--demo`) until done or `shutdown`.
pub async fn backfill(
    config: Config,
    backfill: config::BackfillConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Option<backfill::Summary>, backfill::BackfillError> {
    let stop = CancellationToken::new();
    let clock: SharedClock = Arc::new(SystemClock);
    let api = match &config.api {
        ApiSource::Remote(api) => (**api).clone(),
        ApiSource::Demo(traffic) => {
            start_demo_api((**traffic).clone(), clock.clone(), stop.clone())
                .await
                .map_err(|e| backfill::BackfillError::Setup(e.to_string()))?
        }
    };
    let result = backfill::run(&config, &backfill, &api, clock, shutdown).await;
    stop.cancel();
    result
}

/// The URL without query or credentials, for logs.
fn redacted(url: &Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

/// Starts the simulated API on a loopback port with a random password.
async fn start_demo_api(
    traffic: sim::Traffic,
    clock: SharedClock,
    stop: CancellationToken,
) -> Result<ApiConfig, RunError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|source| RunError::Bind {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| RunError::Setup(format!("simulated API: {e}")))?;
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    let sim = sim::SimHandle::new(traffic, "demo", &password, clock);
    tokio::spawn(sim.serve(listener, stop.cancelled_owned()));
    let url = Url::parse(&format!("http://{addr}{}", sim::API_PATH))
        .map_err(|e| RunError::Setup(format!("simulated API: {e}")))?;
    tracing::info!(api = %url, "demo mode: polling the built-in simulated Croco-dial");
    Ok(ApiConfig {
        url,
        user: "demo".into(),
        password: Password::new(password),
        ca_file: None,
        insecure_skip_verify: false,
        tenants: Vec::new(),
        profiles: Vec::new(),
        agents: Vec::new(),
    })
}
