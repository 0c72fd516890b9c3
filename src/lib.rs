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
//!      poll failed, the legs kept pending, the plan of changes one poll makes, and a URL as
//!      logs may show it;
//!    - [`clock`]: the injectable wall clock and dialer wall-clock seconds;
//!    - [`web`]: the web config file (TLS, basic auth, headers), re-read when it changes.
//! 1. [`sim::traffic`]: the simulated traffic model (uses `clock`).
//! 2. [`config`]: command-line flags, parsed and validated once into a [`Config`]; every flag
//!    default is one constant. Nothing past it sees clap.
//! 3. [`config_file`]: `--config.file`, the targets of one process, each read as the command
//!    line plus its own flags; [`api`]: the Croco-dial client ([`api::client`]), the one
//!    decoder of its PHP-flavoured answers, which walks the envelope as the body arrives and
//!    hands over a row at a time ([`api::stream`]), the values of an answer and what they
//!    mean ([`api::decode`]), and the classified errors of a poll ([`api::error`]).
//! 4. [`metrics`]: the aggregates (the counters' and the dialer's day's) and poll health kept
//!    in plain structures ([`metrics::aggregates`], [`metrics::health`]), the last half hour's
//!    legs per queue and the agents each needs by Erlang C and Erlang A
//!    ([`metrics::staffing`]), the collector that emits them at scrape time
//!    ([`metrics::collector`]), the new series held at 0 until each scraper has seen
//!    them so ([`metrics::new_series`]), which samples of those families a history needs
//!    ([`metrics::thinning`]), and the timestamped OpenMetrics a backfill writes of them
//!    ([`metrics::openmetrics`]).
//! 5. [`state`]: the redb state file, what a restart resumes from, written once per poll,
//!    opened again after a failed write and written anew when deleted or replaced;
//!    [`events`]: notable events, each of which both logs and counts, and the only writer of
//!    poll health.
//! 6. [`ingest`]: the query window ([`ingest::window`]), the poll schedule
//!    ([`ingest::schedule`]), the dialer time reached, by which seen legs are forgotten and a
//!    clock that jumps is told from time passing ([`ingest::timeline`]), the seen set of legs
//!    ([`ingest::seen`]), the counting rules
//!    (outcome, talk time, live state: [`ingest::dedup`]) and one whole poll
//!    ([`ingest::poller`]), whose state commit runs on a blocking thread.
//! 7. [`http`]: the hyper plumbing the exporter shares with the simulator; [`mod@backfill`]: past
//!    days of calls, each leg counted by the poll's rules at the moment it ended, as
//!    timestamped OpenMetrics (a file, or a file per day) or sent to a remote-write receiver
//!    ([`backfill::remote_write`]), and the state a live exporter continues from.
//! 8. [`server`]: the exporter's HTTP endpoints; [`sim`]: the simulated Croco-dial behind
//!    `--demo`, `simulate` and the tests (it uses only `clock`, `http`, `web` and its traffic
//!    model); [`healthcheck`]: the `healthcheck` subcommand, a client of a running exporter's
//!    `/-/healthy` for container health checks.
//! 9. This crate root (the exporter's parts wired together: [`run`] for one target, [`Fleet`]
//!    and [`run_fleet`] for the targets of `--config.file` with their reloads, [`backfill()`])
//!    and the binary (`main.rs`: flags, tracing, then one of those).

pub mod api;
pub mod backfill;
pub mod clock;
pub mod config;
pub mod config_file;
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
use metrics::collector::CdrCollector;
use metrics::SharedState;
use metrics::Targets;
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
    /// One target, its state from `--state.file` (a file found unusable is moved aside).
    pub fn new(config: &Config, api: &ApiConfig, clock: SharedClock) -> Result<Self, RunError> {
        let shared = Arc::new(SharedState::new(config.target.clone(), &config.metrics));
        let (store, restored) = match (&config.state_file, config.once) {
            (Some(path), false) => open_state(path, config, &shared, clock.now())?,
            _ => (None, None),
        };
        let target = Target::new(config, api, shared, clock.clone(), store, restored)?;
        let web = web_config(config)?;
        let app = App::new(
            Arc::new(Targets::new(vec![target.collector])),
            config.telemetry_path.clone(),
            web.as_deref(),
            clock,
        )
        .with_max_connections(config.web_max_connections);
        Ok(Self {
            poller: target.poller,
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
        let max_connections = app.max_connections();
        let handler = move |req| app.clone().handle(req);
        http::serve(listener, handler, shutdown, web, max_connections).await;
    }
}

/// The web config file, when there is one.
fn web_config(config: &Config) -> Result<Option<Arc<web::WebConfig>>, RunError> {
    match &config.web_config_file {
        Some(path) => Ok(Some(Arc::new(
            web::WebConfig::load(path).map_err(|e| RunError::Setup(e.to_string()))?,
        ))),
        None => Ok(None),
    }
}

/// One target's poller and the collector of what it counts.
struct Target {
    poller: Poller,
    collector: Arc<CdrCollector>,
}

impl Target {
    fn new(
        config: &Config,
        api: &ApiConfig,
        shared: Arc<SharedState>,
        clock: SharedClock,
        store: Option<state::Store>,
        restored: Option<state::Restored>,
    ) -> Result<Self, RunError> {
        let client = ApiClient::new(api, config.timeout)
            .map_err(|e| RunError::Setup(e.to_string()))?
            .with_max_response_bytes(config.max_response_bytes);
        let collector = Arc::new(
            CdrCollector::new(shared.clone())
                .map_err(|e| RunError::Setup(format!("metrics registry: {e}")))?,
        );
        let poller = Poller::new(
            config,
            client,
            shared,
            clock,
            store.map(|s| Arc::new(s) as Arc<dyn state::StateStore>),
            restored,
        );
        Ok(Self { poller, collector })
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
        recovered(config, shared, reason, message);
    }
    log_restored(
        config,
        path,
        opened.store.as_ref(),
        opened.restored.as_ref(),
    )?;
    Ok((opened.store, opened.restored))
}

/// A state found unusable and started afresh: counted, logged, and served at 0 first, so
/// that increase() sees this start's recovery.
fn recovered(
    config: &Config,
    shared: &SharedState,
    reason: metrics::health::RecoveryReason,
    message: String,
) {
    let mut state = shared.write();
    events::StateRecovered { reason, message }.emit(&config.target, &mut state.health);
    shared
        .new_series()
        .hold([metrics::aggregates::SeriesKey::StateRecoveries]);
}

/// Says what a state file restored for a target, and drops the series that restart.
fn log_restored(
    config: &Config,
    path: &std::path::Path,
    store: Option<&state::Store>,
    restored: Option<&state::Restored>,
) -> Result<(), RunError> {
    match (store, restored) {
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
    Ok(())
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
    warn_insecure(&config, &api);
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
        api = %vocab::redacted_url(&api.url),
        timezone = %config.timezone.name,
        interval = %humantime::format_duration(config.poll_interval),
        lookback = %humantime::format_duration(config.lookback),
        listen = %local,
        tls = exporter.web.as_ref().is_some_and(|w| w.current().tls.is_some()),
        basic_auth = exporter.web.as_ref().is_some_and(|w| !w.current().users.is_empty()),
        "crocodial-exporter started"
    );
    warn_lookback(&config);
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

/// The targets of one exporter process (`--config.file`, or `--demo --sim.targets N`), each
/// polled on its own schedule into its own tables of one state file, all served on one
/// `/metrics`; a reload starts, stops and restarts targets from the file.
pub struct Fleet {
    /// The process-wide settings (listen address, web config, state file, metrics): the
    /// first target's, which every target shares.
    base: Config,
    targets: Arc<Targets>,
    running: Vec<RunningTarget>,
    state: Option<Arc<state::SharedFile>>,
    file: Option<config_file::TargetsFile>,
    clock: SharedClock,
    /// Stops everything at once, polls in flight included (the process is stopping).
    stop: CancellationToken,
    app: Arc<App>,
    pub web: Option<Arc<web::WebConfig>>,
}

struct RunningTarget {
    name: String,
    /// What the target was started with, to tell a changed one at a reload.
    fingerprint: String,
    collector: Arc<CdrCollector>,
    /// Stops the target between polls (a reload).
    retire: CancellationToken,
    /// Polls until retired; then says when its next poll was due.
    task: tokio::task::JoinHandle<Option<tokio::time::Instant>>,
}

impl Drop for RunningTarget {
    /// A target dropped without being stopped (a reload that failed half-way) stops polling
    /// after its poll in flight rather than polling on unseen.
    fn drop(&mut self) {
        self.retire.cancel();
    }
}

/// What a target was started with: its settings and its password (which its `Debug` hides).
fn fingerprint(config: &Config) -> String {
    let password = match &config.api {
        ApiSource::Remote(api) => api.password.expose().to_string(),
        ApiSource::Demo(_) => String::new(),
    };
    format!("{config:?}/{password}")
}

impl Fleet {
    /// Starts `configs` (each restored from the state file), serving nothing yet.
    pub async fn start(
        configs: Vec<Config>,
        file: Option<config_file::TargetsFile>,
        clock: SharedClock,
        lifecycle: Option<tokio::sync::mpsc::Sender<server::ReloadRequest>>,
    ) -> Result<Fleet, RunError> {
        let base = configs
            .first()
            .cloned()
            .ok_or_else(|| RunError::Setup("no targets".into()))?;
        let targets = Arc::new(Targets::default());
        let web = web_config(&base)?;
        let mut app = App::new(
            targets.clone(),
            base.telemetry_path.clone(),
            web.as_deref(),
            clock.clone(),
        )
        .with_max_connections(base.web_max_connections);
        if let Some(reloads) = lifecycle {
            app = app.with_lifecycle(reloads);
        }
        let mut recovered_file = None;
        let state = match &base.state_file {
            Some(path) => {
                let (file, recovered) = state::SharedFile::open(path, clock.now())?;
                recovered_file = recovered;
                file.map(Arc::new)
            }
            None => None,
        };
        let mut fleet = Fleet {
            base,
            targets,
            running: Vec::new(),
            state,
            file,
            clock,
            stop: CancellationToken::new(),
            app: Arc::new(app),
            web,
        };
        if fleet.file.is_some() {
            fleet.targets.set_reload_status(metrics::ReloadStatus {
                successful: true,
                last_success: fleet.clock.now(),
            });
        }
        fleet.expire_removed().await?;
        for config in &configs {
            let target = fleet
                .start_target(config, recovered_file.clone(), None)
                .await?;
            fleet.running.push(target);
        }
        // Targets taken out of the file while the exporter was stopped are removed from now.
        let (names, now) = (fleet.names(), fleet.clock.now());
        for name in fleet
            .blocking(move |file| file.mark_unlisted(&names, now))
            .await?
            .unwrap_or_default()
        {
            tracing::info!(target_name = %name, retained = %humantime::format_duration(fleet.base.retain_removed), "state of a target no longer in the file kept");
        }
        fleet.publish();
        Ok(fleet)
    }

    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// The targets' names, in the file's order.
    pub fn names(&self) -> Vec<String> {
        self.running.iter().map(|t| t.name.clone()).collect()
    }

    fn publish(&self) {
        self.targets
            .replace(self.running.iter().map(|t| t.collector.clone()).collect());
    }

    /// Starts a target on its state; `file_recovery` is the state file's own, found at start.
    /// It polls at once, or at `first_poll`: when the target it replaces would have.
    async fn start_target(
        &self,
        config: &Config,
        file_recovery: Option<state::Recovery>,
        first_poll: Option<tokio::time::Instant>,
    ) -> Result<RunningTarget, RunError> {
        let api = match &config.api {
            ApiSource::Remote(api) => (**api).clone(),
            ApiSource::Demo(traffic) => {
                start_demo_api(
                    (**traffic).clone(),
                    self.clock.clone(),
                    self.stop.child_token(),
                )
                .await?
            }
        };
        let shared = Arc::new(SharedState::new(config.target.clone(), &config.metrics));
        if let Some((reason, message)) = file_recovery {
            recovered(config, &shared, reason, message);
        }
        let (store, restored) = match self.state.clone() {
            Some(file) => {
                // Reading a target's tables (and waiting for redb's writer) blocks.
                let (name, metrics) = (config.target.clone(), config.metrics.clone());
                let (store, restored, recovery) =
                    tokio::task::spawn_blocking(move || file.target(&name, &metrics))
                        .await
                        .map_err(|e| RunError::Setup(format!("state file: {e}")))??;
                if let Some((reason, message)) = recovery {
                    recovered(config, &shared, reason, message);
                }
                if let Some(path) = &config.state_file {
                    log_restored(config, path, Some(&store), restored.as_ref())?;
                }
                (Some(store), restored)
            }
            None => (None, None),
        };
        warn_insecure(config, &api);
        warn_lookback(config);
        let target = Target::new(config, &api, shared, self.clock.clone(), store, restored)?;
        let retire = CancellationToken::new();
        let mut poller = target.poller;
        let (between, now) = (retire.clone(), self.stop.clone());
        let first = first_poll.unwrap_or_else(tokio::time::Instant::now);
        let task = tokio::spawn(async move {
            tokio::select! {
                () = now.cancelled() => None,
                next = ingest::schedule::every_until(between, &mut poller, first) => Some(next),
            }
        });
        tracing::info!(
            target_name = %config.target,
            api = %vocab::redacted_url(&api.url),
            timezone = %config.timezone.name,
            interval = %humantime::format_duration(config.poll_interval),
            "target started"
        );
        Ok(RunningTarget {
            name: config.target.clone(),
            fingerprint: fingerprint(config),
            collector: target.collector,
            retire,
            task,
        })
    }

    /// Rereads the targets file and applies it; a file that cannot be used changes nothing.
    pub async fn reload(&mut self) -> Result<(), String> {
        let Some(file) = self.file.clone() else {
            return Err("no --config.file to reload".into());
        };
        let now = self.clock.now();
        let loaded = file
            .load(&|name| std::env::var(name).ok())
            .map_err(|e| e.to_string());
        let result = match loaded {
            Ok(configs) => self.apply(configs).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let last_success = match (&result, self.targets.reload_status()) {
            (Ok(()), _) => now,
            (Err(_), Some(status)) => status.last_success,
            (Err(_), None) => jiff::Timestamp::UNIX_EPOCH,
        };
        self.targets.set_reload_status(metrics::ReloadStatus {
            successful: result.is_ok(),
            last_success,
        });
        match &result {
            Ok(()) => {
                tracing::info!(path = %file.path.display(), targets = ?self.names(), "targets file reloaded")
            }
            Err(e) => {
                tracing::error!(path = %file.path.display(), error = %e, "targets file not reloaded; the targets before it keep running")
            }
        }
        result
    }

    /// Runs exactly `configs`: starts the new targets, stops the removed ones (their state
    /// kept for `--state.retain-removed`), restarts the changed ones on their state. The
    /// targets to stop are stopped together, each after its poll in flight. A target that
    /// fails to start fails the reload (and is not running); every other one is applied.
    pub async fn apply(&mut self, configs: Vec<Config>) -> Result<(), RunError> {
        let now = self.clock.now();
        let mut old: Vec<RunningTarget> = std::mem::take(&mut self.running);
        // Kept, or to (re)start: in the file's order.
        let mut plan: Vec<Result<RunningTarget, &Config>> = Vec::with_capacity(configs.len());
        let mut stopping = Vec::new();
        // When each changed target's next poll was due: its restart keeps that schedule, so a
        // burst of reloads polls it at most once per interval.
        let mut due: std::collections::HashMap<String, tokio::time::Instant> = Default::default();
        for config in &configs {
            match old.iter().position(|t| t.name == config.target) {
                Some(i) if old[i].fingerprint == fingerprint(config) => {
                    plan.push(Ok(old.remove(i)))
                }
                Some(i) => {
                    tracing::info!(target_name = %config.target, "target changed: restarting it on its state");
                    stopping.push(old.remove(i));
                    plan.push(Err(config));
                }
                None => plan.push(Err(config)),
            }
        }
        let removed: Vec<String> = old.iter().map(|t| t.name.clone()).collect();
        stopping.extend(old);
        for target in &stopping {
            target.retire.cancel();
        }
        for mut target in stopping {
            if let Ok(Some(next)) = (&mut target.task).await {
                due.insert(target.name.clone(), next);
            }
        }
        for name in &removed {
            let marked = name.clone();
            self.blocking(move |file| file.mark_removed(&marked, now))
                .await?;
            tracing::info!(target_name = %name, retained = %humantime::format_duration(self.base.retain_removed), "target removed: polling stopped, its state kept");
        }
        self.expire_removed().await?;
        let mut started = Vec::with_capacity(plan.len());
        let mut failed = None;
        for entry in plan {
            match entry {
                Ok(kept) => started.push(kept),
                Err(config) => match self
                    .start_target(config, None, due.get(&config.target).copied())
                    .await
                {
                    Ok(target) => started.push(target),
                    Err(e) => {
                        tracing::error!(target_name = %config.target, error = %e, "target not started");
                        failed.get_or_insert(e);
                    }
                },
            }
        }
        self.running = started;
        self.publish();
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Drops the state of targets removed longer than `--state.retain-removed` ago: before
    /// any target starts, so that one put back after that starts afresh.
    async fn expire_removed(&self) -> Result<(), RunError> {
        let (now, retain) = (self.clock.now(), self.base.retain_removed);
        let expired = self
            .blocking(move |file| file.expire_removed(now, retain))
            .await?;
        for name in expired.unwrap_or_default() {
            tracing::info!(target_name = %name, "state of a removed target dropped (--state.retain-removed)");
        }
        Ok(())
    }

    /// Runs `write` on the state file, if there is one, off the async workers (redb's writes
    /// wait for the disk and for other targets' commits).
    async fn blocking<T: Send + 'static>(
        &self,
        write: impl FnOnce(&state::SharedFile) -> Result<T, state::StateError> + Send + 'static,
    ) -> Result<Option<T>, RunError> {
        let Some(file) = self.state.clone() else {
            return Ok(None);
        };
        let done = tokio::task::spawn_blocking(move || write(&file))
            .await
            .map_err(|e| RunError::Setup(format!("state file: {e}")))??;
        Ok(Some(done))
    }

    /// Stops every target now.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for mut target in self.running {
            let _ = (&mut target.task).await;
        }
    }
}

/// Runs the targets of `--config.file` (or `--demo --sim.targets N`) until `shutdown`,
/// rereading the file at each `hangups` message (SIGHUP) and `POST /-/reload`.
pub async fn run_fleet(
    configs: Vec<Config>,
    file: Option<config_file::TargetsFile>,
    mut hangups: tokio::sync::mpsc::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let base = configs
        .first()
        .cloned()
        .ok_or_else(|| RunError::Setup("no targets".into()))?;
    let listener = http::listen(base.listen_address).map_err(|source| RunError::Bind {
        addr: base.listen_address,
        source,
    })?;
    let local = listener.local_addr().unwrap_or(base.listen_address);
    let (reloads, mut requests) = tokio::sync::mpsc::channel::<server::ReloadRequest>(4);
    let lifecycle = (base.enable_lifecycle && file.is_some()).then(|| reloads.clone());
    let clock: SharedClock = Arc::new(SystemClock);
    let mut fleet = Fleet::start(configs, file, clock, lifecycle).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        targets = ?fleet.names(),
        listen = %local,
        "crocodial-exporter started"
    );
    let stop = CancellationToken::new();
    let server = tokio::spawn(Exporter::serve(
        fleet.app(),
        listener,
        stop.clone().cancelled_owned(),
        fleet.web.clone(),
    ));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // A reload waits for the polls in flight of the targets it stops; a shutdown
            // meanwhile is not kept waiting.
            Some(()) = hangups.recv() => {
                tokio::select! {
                    _ = fleet.reload() => {}
                    () = &mut shutdown => break,
                }
            }
            Some(done) = requests.recv() => {
                tokio::select! {
                    result = fleet.reload() => { let _ = done.send(result); }
                    () = &mut shutdown => break,
                }
            }
        }
    }
    tracing::info!("shutting down");
    stop.cancel();
    fleet.shutdown().await;
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

/// A target whose API's certificate is not checked; a target whose answers hold only some
/// agents' rows.
fn warn_insecure(config: &Config, api: &ApiConfig) {
    if api.insecure_skip_verify {
        tracing::warn!(target_name = %config.target, api = %vocab::redacted_url(&api.url), "--api.insecure-skip-verify: the API's TLS certificate is not verified; anyone in the path can read the password");
    }
    if !api.agents.is_empty() {
        tracing::warn!(target_name = %config.target, agents = api.agents.len(), "--api.agent: the API answers only the rows of these agents, so the queue figures (offered, abandoned, timed out, service level, waits, the day's figures) cover only calls those agents handled or were rung for: abandons in queue and calls nobody was rung for do not arrive. Use a separate target without --api.agent for the queues");
    }
}

/// Polls back off up to --poll.max-backoff while the API fails; a call still in progress
/// whose day leaves the window before the next poll is lost (and counted as dropped).
fn warn_lookback(config: &Config) {
    if config.lookback < config.cdr.max_pending.saturating_add(config.max_backoff) {
        tracing::warn!(
            target_name = %config.target,
            lookback = %humantime::format_duration(config.lookback),
            max_pending = %humantime::format_duration(config.cdr.max_pending),
            max_backoff = %humantime::format_duration(config.max_backoff),
            "--poll.lookback is shorter than --cdr.max-pending + --poll.max-backoff: after a long API outage, calls still in progress can leave the window uncounted (counted as dropped, reason left_window)"
        );
    }
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
