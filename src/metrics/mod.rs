//! What the exporter knows: CDR aggregates and poll health, kept in plain structures under one
//! lock and turned into metric families at scrape time by [`collector::CdrCollector`].

pub mod aggregates;
pub mod collector;
pub mod health;
pub mod new_series;
pub mod openmetrics;
pub mod staffing;
pub mod thinning;

use prometheus::proto::MetricFamily;
use prometheus::{Encoder, TextEncoder};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use aggregates::CdrAggregates;
pub use health::Health;

use crate::config::MetricsConfig;

/// The text exposition of `families`, as /metrics serves it: empty families left out, families
/// sorted by name, series in the order the collector gives them. Not `Registry::gather`: it
/// sorts every family's series by their label strings, moving the protobuf structs around,
/// which was a fifth of a 10k-series scrape.
pub fn encode_text(mut families: Vec<MetricFamily>, buf: &mut Vec<u8>) -> prometheus::Result<()> {
    families.retain(|mf| !mf.get_metric().is_empty());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    TextEncoder::new().encode(&families, buf)
}

/// Everything /metrics shows that the exporter computes itself.
#[derive(Debug, Clone)]
pub struct State {
    pub cdr: CdrAggregates,
    pub health: Health,
}

/// The targets /metrics serves, in the targets file's order (one without `--config.file`); a
/// reload replaces the set.
#[derive(Default)]
pub struct Targets {
    list: RwLock<Vec<Arc<collector::CdrCollector>>>,
    /// Whether the last reload of the targets file worked, and when it last did; `None`
    /// without a targets file.
    reload: Mutex<Option<ReloadStatus>>,
}

/// The outcome of the last reload of the targets file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadStatus {
    pub successful: bool,
    pub last_success: jiff::Timestamp,
}

impl Targets {
    pub fn new(list: Vec<Arc<collector::CdrCollector>>) -> Self {
        Self {
            list: RwLock::new(list),
            reload: Mutex::new(None),
        }
    }

    pub fn all(&self) -> Vec<Arc<collector::CdrCollector>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, list: Vec<Arc<collector::CdrCollector>>) {
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = list;
    }

    pub fn reload_status(&self) -> Option<ReloadStatus> {
        *self.reload.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_reload_status(&self, status: ReloadStatus) {
        *self.reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }
}

/// The state shared by the poller (writer, once per poll) and the HTTP server (readers).
#[derive(Debug)]
pub struct SharedState {
    target: String,
    state: RwLock<State>,
    /// Series held at 0 until every scraper has seen them so.
    new_series: Mutex<new_series::NewSeries>,
}

impl SharedState {
    pub fn new(target: impl Into<String>, cfg: &MetricsConfig) -> Self {
        Self {
            target: target.into(),
            state: RwLock::new(State {
                cdr: CdrAggregates::new(cfg),
                health: Health::default(),
            }),
            new_series: Mutex::default(),
        }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// A poisoned lock only means a panic elsewhere mid-update; the data is still the best we
    /// have, so it is served rather than turned into a crash loop.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The new series held at 0. Taken only under the state's lock (the poller's write, a
    /// scrape's read), so that a scrape sees a poll's new series and their hold together.
    pub fn new_series(&self) -> MutexGuard<'_, new_series::NewSeries> {
        self.new_series.lock().unwrap_or_else(|e| e.into_inner())
    }
}
