//! Persistent state: the seen set, the pending calls, every aggregate and the health counters,
//! in one crash-safe [redb](https://docs.rs/redb) file, so that a restart or a crash never
//! double-counts, never resets a counter, and lets the first poll count the calls made while
//! the exporter was down.
//!
//! Each poll's changes are written in one transaction ([`Store::commit`]) before they show on
//! /metrics: a crash at any instant leaves the poll either applied or not. A commit writes only
//! what the poll changed (new ids, touched series, new label values, the health counters), so
//! its cost grows with the poll's new rows, not with the size of the seen set.
//!
//! Tables, one set per target (a file can serve several exporters over time):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | `schema`, `<target>/last_success`, `<target>/health`, `<target>/buckets/...`, `<target>/expired_before` | bytes |
//! | `<target>/legs` | day (4 bytes, ordered) + leg key | () |
//! | `<target>/leg_queues` | queue number | queue name |
//! | `<target>/pending_legs` | leg key | first seen (µs) + day |
//! | `<target>/labels` | (label, id) | label value |
//! | `<target>/series` | series kind + label ids | counter or histogram |
//! | `<target>/seen` | day (4 bytes, ordered) + call id | () (schema 2 and before: read, expired, never written) |

mod codec;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::config::MetricsConfig;
use crate::metrics::aggregates::{CdrAggregates, Label, LabelValues};
use crate::metrics::health::{Health, RecoveryReason};
use crate::vocab::{CallId, LegKey};
use crate::vocab::{Pending, Plan, Remembered};
use codec::{decode_leg, encode_leg, seen_key, HealthRecord, SeriesCodec};

/// The layout version of the file. A file with a larger one was written by a newer exporter.
///
/// 2: the histograms are keyed by outcome too; a file of schema 1 is read, and its histograms
/// restart from zero.
/// 3: legs. The seen set holds legs (`uniq1`, `call_date`, `queue`); the call ids of an older
/// file keep counting as seen until their day leaves the window. Its pending calls cannot be
/// told apart by leg and are forgotten (each counts when its row comes back final), and its
/// agents' seconds (call duration, queue wait included) restart from zero as talk time.
pub const SCHEMA_VERSION: u32 = 3;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Why the state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path} is held by another running exporter")]
    Locked { path: PathBuf },
    #[error("state file {path}: {message}")]
    Unusable {
        path: PathBuf,
        reason: RecoveryReason,
        message: String,
    },
    #[error("state file: {0}")]
    Write(String),
    /// The file at the path is not the one open (see [`StateStore::rewrite`]).
    #[error("state file {path} {what}")]
    Replaced { path: PathBuf, what: &'static str },
}

fn write_error(e: impl std::fmt::Display) -> StateError {
    StateError::Write(e.to_string())
}

/// What a previous run left, ready to be restored.
#[derive(Debug)]
pub struct Restored {
    pub remembered: Remembered,
    pub cdr: CdrAggregates,
    pub health: Health,
    /// End of the last successful poll of the previous run.
    pub last_success: Option<Timestamp>,
    /// Aggregates that restarted from zero because their layout changed.
    pub reset: Vec<&'static str>,
    /// What of a file from before legs could not migrate, for the log.
    pub not_migrated: Option<String>,
}

/// The open state file of one target.
pub struct Store {
    /// Shared by every target of the file (redb opens a file once per process).
    file: Arc<FileHandle>,
    /// The [`OpenFile::generation`] this target's tables are in.
    generation: AtomicU64,
    path: PathBuf,
    target: String,
    /// Call ids, as files from before legs wrote them.
    legacy_seen: String,
    legacy_pending: String,
    legs: String,
    leg_queues: String,
    pending: String,
    labels: String,
    series: String,
    /// The schema the file had when it was opened.
    opened_schema: u32,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The outcome of opening a state file.
#[derive(Debug)]
pub struct Opened {
    pub store: Option<Store>,
    /// Present when the file held state for this target.
    pub restored: Option<Restored>,
    /// Set when the file was unusable and was moved aside (or could not be).
    pub recovered: Option<(RecoveryReason, String)>,
}

/// Where a poll's result is written before it shows: the state file ([`Store`]), or anything
/// that stands for it (a store that fails on demand, in tests).
pub trait StateStore: Send + Sync {
    /// Writes one poll atomically: all of it, or nothing. `plan` is absent for a failed poll.
    /// [`StateError::Replaced`]: the file at the path is not the one this target's state is
    /// in (deleted, replaced, or made anew for another target); nothing was written.
    fn commit(
        &self,
        plan: Option<&Plan>,
        cdr: &CdrAggregates,
        health: &Health,
    ) -> Result<(), StateError>;

    /// After [`StateError::Replaced`]: writes the whole state (`whole` holds every leg seen and
    /// pending, `cdr` tracks every series as changed) into a file made anew at the path, or
    /// into the one another target already made anew. A file that replaced the state is moved
    /// aside to `<path>.replaced-<unix time>` first, as of `now`.
    fn rewrite(
        &self,
        whole: &Plan,
        cdr: &CdrAggregates,
        health: &Health,
        now: Timestamp,
    ) -> Result<(), StateError>;
}

impl StateStore for Store {
    fn commit(
        &self,
        plan: Option<&Plan>,
        cdr: &CdrAggregates,
        health: &Health,
    ) -> Result<(), StateError> {
        let db = self
            .file
            .for_write(self.generation.load(Ordering::SeqCst))?;
        let written = self.write(&db, plan, cdr, health);
        if written.is_err() {
            self.file.failed(&db);
        }
        written
    }

    fn rewrite(
        &self,
        whole: &Plan,
        cdr: &CdrAggregates,
        health: &Health,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let (db, generation) = self.file.made_anew(now)?;
        let written = self.write(&db, Some(whole), cdr, health);
        match &written {
            Ok(()) => self.generation.store(generation, Ordering::SeqCst),
            Err(_) => self.file.failed(&db),
        }
        written
    }
}

/// The identity of a file: a file put at the path in place of another has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

/// The identity of the file at `path`; `None` when there is none. Any other failure to look
/// (a permission, a stale handle) is an error of the write: it says nothing of a replacement.
fn file_id(path: &Path) -> Result<Option<FileId>, StateError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(identity(&m))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Write(format!(
            "cannot look at {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(unix)]
fn identity(m: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId(m.dev(), m.ino())
}

#[cfg(not(unix))]
fn identity(m: &std::fs::Metadata) -> FileId {
    let since = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    FileId(since.as_secs(), u64::from(since.subsec_nanos()))
}

/// The open database of a state file, shared by the targets it holds.
///
/// After a write fails (a full disk, an I/O error), redb refuses every later write ("previous
/// I/O error") until the database is opened again: so the next write closes and opens it
/// again, and polling recovers by itself once the disk has room. Before each write, the file
/// at the path is checked to be the one open: writes to a file deleted or replaced under the
/// exporter would go on unseen, and the next start would find none of them.
struct FileHandle {
    path: PathBuf,
    open: Mutex<OpenFile>,
}

struct OpenFile {
    /// None after a reopen that failed (tried again at the next write).
    db: Option<Arc<Database>>,
    /// The file's identity when opened.
    id: Option<FileId>,
    /// Counts the times the file was made anew: a target whose tables are in an older one
    /// writes its whole state again.
    generation: u64,
    /// A write failed: open the database again before the next.
    reopen: bool,
}

impl FileHandle {
    fn new(path: &Path, db: Database) -> Result<FileHandle, StateError> {
        Ok(FileHandle {
            path: path.to_path_buf(),
            open: Mutex::new(OpenFile {
                db: Some(Arc::new(db)),
                id: file_id(path)?,
                generation: 0,
                reopen: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, OpenFile> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The database, for reads and for the setup of a target: the one open, even after a
    /// failed write (it still reads); opened again only when a reopen failed.
    fn db(&self) -> Result<Arc<Database>, StateError> {
        let mut open = self.lock();
        if open.db.is_none() {
            self.reopen(&mut open)?;
        }
        self.current(&open)
    }

    fn current(&self, open: &OpenFile) -> Result<Arc<Database>, StateError> {
        open.db.clone().ok_or_else(|| {
            StateError::Write(format!(
                "{} is not open (reopened at the next write)",
                self.path.display()
            ))
        })
    }

    /// The database to write a poll of a target whose tables are in file `generation`.
    fn for_write(&self, generation: u64) -> Result<Arc<Database>, StateError> {
        let mut open = self.lock();
        let found = file_id(&self.path)?;
        if found != open.id {
            return Err(StateError::Replaced {
                path: self.path.clone(),
                what: match found {
                    None => "was deleted",
                    Some(_) => "was replaced by another file",
                },
            });
        }
        if generation != open.generation {
            return Err(StateError::Replaced {
                path: self.path.clone(),
                what: "was made anew",
            });
        }
        if open.reopen {
            self.reopen(&mut open)?;
        }
        self.current(&open)
    }

    /// A write to `db` failed: the next opens the file again.
    fn failed(&self, db: &Arc<Database>) {
        let mut open = self.lock();
        if open.db.as_ref().is_some_and(|d| Arc::ptr_eq(d, db)) {
            open.reopen = true;
        }
    }

    fn reopen(&self, open: &mut OpenFile) -> Result<(), StateError> {
        // Closed first: redb opens a file once per process. (A write of another target still
        // holding it makes this open fail; the next write tries again.)
        open.db = None;
        let db = open_database(&self.path).map_err(|e| match e {
            // Still held here, by a write of another target.
            StateError::Locked { .. } => StateError::Write(format!(
                "{} is still in use in this process; opened again at the next write",
                self.path.display()
            )),
            e => e,
        })?;
        open.db = Some(Arc::new(db));
        open.reopen = false;
        tracing::debug!(path = %self.path.display(), "state file opened again after a failed write");
        Ok(())
    }

    /// The file made anew at the path, unless the file there is the one open (another target
    /// made it anew): the database and its generation.
    fn made_anew(&self, now: Timestamp) -> Result<(Arc<Database>, u64), StateError> {
        let mut open = self.lock();
        let found = file_id(&self.path)?;
        if found.is_some() && found == open.id {
            // The file open: another target made it anew since `generation`.
            if open.reopen {
                self.reopen(&mut open)?;
            }
            return Ok((self.current(&open)?, open.generation));
        }
        open.db = None;
        if found.is_some() {
            let aside = (0..)
                .map(|n| match n {
                    0 => format!("{}.replaced-{}", self.path.display(), now.as_second()),
                    n => format!("{}.replaced-{}-{n}", self.path.display(), now.as_second()),
                })
                .map(PathBuf::from)
                .find(|p| !p.exists())
                .unwrap_or_default();
            std::fs::rename(&self.path, &aside).map_err(|e| {
                StateError::Write(format!(
                    "cannot move aside the file that replaced {}: {e}",
                    self.path.display()
                ))
            })?;
        }
        let created = open_database(&self.path).and_then(|db| {
            check_schema(&db, &self.path)?;
            Ok(db)
        });
        let db = match created {
            Ok(db) => db,
            Err(e) => {
                // Ours, and holding nothing yet: the next attempt starts clean rather than
                // taking it for a file that replaced the state.
                let _ = std::fs::remove_file(&self.path);
                return Err(e);
            }
        };
        open.id = file_id(&self.path)?;
        open.generation += 1;
        open.reopen = false;
        let db = Arc::new(db);
        open.db = Some(db.clone());
        Ok((db, open.generation))
    }
}

/// What the meta table says about a target's stored state.
struct StoredMeta {
    health: HealthRecord,
    last_success: Option<Timestamp>,
    expired_before: Option<i64>,
    bounds_kept: BoundsKept,
    /// Histogram families that restart from zero.
    reset: Vec<&'static str>,
}

/// Whether a histogram family's stored bucket bounds are the configured ones (its counts load).
struct BoundsKept {
    queue_time: bool,
    call_duration: bool,
}

/// Opens `path`, or creates it. A file whose contents cannot be used (corrupt, or of a newer
/// schema) is moved aside to `<path>.corrupt-<unix time>` and a fresh one is started. A path
/// that cannot be opened or created at all (a missing directory, no permission, a directory)
/// and a file held by another running exporter are errors: running on without the state
/// would lose the calls of every restart.
pub fn open(
    path: &Path,
    target: &str,
    cfg: &MetricsConfig,
    now: Timestamp,
) -> Result<Opened, StateError> {
    match Store::open(path, target).and_then(|mut store| {
        let restored = store.restore(cfg)?;
        store.upgrade(cfg)?;
        Ok((store, restored))
    }) {
        Ok((store, restored)) => Ok(Opened {
            store: Some(store),
            restored,
            recovered: None,
        }),
        Err(e) => {
            let (store, recovered) = move_aside(path, e, now, |path| Store::open(path, target))?;
            Ok(Opened {
                store,
                restored: None,
                recovered: Some(recovered),
            })
        }
    }
}

/// After `error`: a file that cannot be used is moved aside to `<path>.corrupt-<unix time>`
/// and a fresh one made with `create`; other errors stand.
fn move_aside<T>(
    path: &Path,
    error: StateError,
    now: Timestamp,
    create: impl FnOnce(&Path) -> Result<T, StateError>,
) -> Result<(Option<T>, (RecoveryReason, String)), StateError> {
    let (reason, message) = match error {
        StateError::Unusable {
            reason, message, ..
        } if reason != RecoveryReason::Unreadable => (reason, message),
        e => return Err(e),
    };
    let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), now.as_second()));
    let moved = std::fs::rename(path, &aside);
    let fresh = match &moved {
        Ok(()) => create(path).ok(),
        Err(_) => None,
    };
    let what = match (&moved, &fresh) {
        (Ok(()), Some(_)) => format!(
            "{message}; moved it to {}, starting afresh",
            aside.display()
        ),
        (Ok(()), None) => format!(
            "{message}; moved it to {}, but cannot create a new one: running without persistence",
            aside.display()
        ),
        (Err(e), _) => {
            format!("{message}; cannot move it aside ({e}): running without persistence")
        }
    };
    Ok((fresh, (reason, what)))
}

/// Why a state was found unusable and started afresh, and what was done about it.
pub type Recovery = (RecoveryReason, String);

/// A state file that holds several targets, a set of tables each (`--config.file`): opened
/// once, each target's tables restored when the target starts, and kept a while after it is
/// removed (see [`SharedFile::mark_removed`]).
pub struct SharedFile {
    file: Arc<FileHandle>,
    path: PathBuf,
    /// The schema the file had when opened, until the first target's start upgrades it.
    schema: Mutex<u32>,
}

impl SharedFile {
    /// Opens or creates `path`; a file that cannot be used is moved aside (the recovery is
    /// returned), as [`open`] does.
    pub fn open(
        path: &Path,
        now: Timestamp,
    ) -> Result<(Option<SharedFile>, Option<Recovery>), StateError> {
        let shared = |store: Store| SharedFile {
            file: store.file,
            path: path.to_path_buf(),
            schema: Mutex::new(store.opened_schema),
        };
        match Store::open(path, "") {
            Ok(store) => Ok((Some(shared(store)), None)),
            Err(e) => {
                let (store, recovered) = move_aside(path, e, now, |path| Store::open(path, ""))?;
                Ok((store.map(shared), Some(recovered)))
            }
        }
    }

    /// The store of `target` and what it restores. Tables of the target that cannot be read
    /// are dropped, and the target starts afresh (the recovery is returned); the other
    /// targets keep theirs. A removal mark is cleared: a target put back continues.
    pub fn target(
        &self,
        target: &str,
        cfg: &MetricsConfig,
    ) -> Result<(Store, Option<Restored>, Option<Recovery>), StateError> {
        let mut schema = self.schema.lock().unwrap_or_else(|e| e.into_inner());
        let mut store = Store::in_file(self.file.clone(), &self.path, target, *schema);
        let (restored, recovered) = match store.restore(cfg) {
            Ok(restored) => (restored, None),
            Err(StateError::Unusable {
                reason, message, ..
            }) if reason != RecoveryReason::Unreadable => {
                store.forget()?;
                (
                    None,
                    Some((reason, format!("{message}; this target starts afresh"))),
                )
            }
            Err(e) => return Err(e),
        };
        store.upgrade(cfg)?;
        *schema = SCHEMA_VERSION;
        if store.removed_at()?.is_some() {
            store.set_removed(None)?;
        }
        Ok((store, restored, recovered))
    }

    /// Marks `target` removed at `now`: its tables are kept until [`SharedFile::expire_removed`]
    /// finds them older than the retention.
    pub fn mark_removed(&self, target: &str, now: Timestamp) -> Result<(), StateError> {
        let schema = *self.schema.lock().unwrap_or_else(|e| e.into_inner());
        Store::in_file(self.file.clone(), &self.path, target, schema).set_removed(Some(now))
    }

    /// Marks removed at `now` every target with state in the file but not in `running` and not
    /// marked yet (a target taken out of the file while the exporter was stopped); their names.
    pub fn mark_unlisted(
        &self,
        running: &[String],
        now: Timestamp,
    ) -> Result<Vec<String>, StateError> {
        let mut stored = std::collections::BTreeSet::new();
        let mut marked = std::collections::BTreeSet::new();
        {
            let txn = self.file.db()?.begin_read().map_err(write_error)?;
            let meta = txn.open_table(META).map_err(write_error)?;
            for entry in meta.iter().map_err(write_error)? {
                let (k, _) = entry.map_err(write_error)?;
                let key = k.value();
                if let Some(target) = key.strip_suffix("/health") {
                    stored.insert(target.to_string());
                } else if let Some(target) = key.strip_suffix(REMOVED_AT) {
                    marked.insert(target.to_string());
                }
            }
        }
        let unlisted: Vec<String> = stored
            .into_iter()
            .filter(|t| !running.contains(t) && !marked.contains(t))
            .collect();
        for target in &unlisted {
            self.mark_removed(target, now)?;
        }
        Ok(unlisted)
    }

    /// Drops the tables of targets removed more than `retain` before `now`; their names.
    pub fn expire_removed(
        &self,
        now: Timestamp,
        retain: std::time::Duration,
    ) -> Result<Vec<String>, StateError> {
        let retain = jiff::SignedDuration::try_from(retain).unwrap_or(jiff::SignedDuration::MAX);
        let mut expired = Vec::new();
        {
            let txn = self.file.db()?.begin_read().map_err(write_error)?;
            let meta = txn.open_table(META).map_err(write_error)?;
            for entry in meta.iter().map_err(write_error)? {
                let (k, v) = entry.map_err(write_error)?;
                let Some(target) = k.value().strip_suffix(REMOVED_AT) else {
                    continue;
                };
                let at =
                    codec::read_i64(v.value()).and_then(|us| Timestamp::from_microsecond(us).ok());
                if at.is_some_and(|at| now.duration_since(at) > retain) {
                    expired.push(target.to_string());
                }
            }
        }
        let schema = *self.schema.lock().unwrap_or_else(|e| e.into_inner());
        for target in &expired {
            Store::in_file(self.file.clone(), &self.path, target, schema).forget()?;
        }
        Ok(expired)
    }
}

/// The meta key of the first day whose legs are remembered.
const EXPIRED_BEFORE: &str = "expired_before";

/// The meta key suffix of when a target was removed from the targets file.
const REMOVED_AT: &str = "/removed_at";

fn classify_open_error(path: &Path, e: redb::DatabaseError) -> StateError {
    use redb::{DatabaseError, StorageError};
    let unusable = |reason, message: String| StateError::Unusable {
        path: path.to_path_buf(),
        reason,
        message,
    };
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StateError::Locked {
                path: path.to_path_buf(),
            }
        }
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::WouldBlock =>
        {
            StateError::Locked {
                path: path.to_path_buf(),
            }
        }
        DatabaseError::Storage(StorageError::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            unusable(RecoveryReason::Corrupt, format!("is corrupt: {io}"))
        }
        DatabaseError::Storage(StorageError::Io(io)) => unusable(
            RecoveryReason::Unreadable,
            format!("cannot be opened or created: {io} (fix the path or its permissions; --state.file \"\" runs without state, and loses the calls of every restart)"),
        ),
        DatabaseError::UpgradeRequired(v) => unusable(
            RecoveryReason::NewerSchema,
            format!("written in redb file format {v}, which this build cannot read"),
        ),
        other => unusable(RecoveryReason::Corrupt, format!("is corrupt: {other}")),
    }
}

/// Opens or creates the redb file at `path`. Every page's checksum is verified at open: a file
/// damaged outside redb (a bit flipped on the disk, a page zeroed) is refused as corrupt instead
/// of trusted, where a plain open may accept it (and count its legs again) or panic.
fn open_database(path: &Path) -> Result<Database, StateError> {
    redb::Builder::new()
        .set_check_integrity_on_open(true)
        .create(path)
        .map_err(|e| classify_open_error(path, e))
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Unusable {
        path: path.to_path_buf(),
        reason: RecoveryReason::Corrupt,
        message: format!("is corrupt: {e}"),
    }
}

/// Writes the schema version into a new file; refuses a file from a newer schema. The
/// schema the file had (this one for a new file).
fn check_schema(db: &Database, path: &Path) -> Result<u32, StateError> {
    let txn = db.begin_write().map_err(|e| corrupt(path, e))?;
    let opened = {
        let mut meta = txn.open_table(META).map_err(|e| corrupt(path, e))?;
        let stored = meta
            .get("schema")
            .map_err(|e| corrupt(path, e))?
            .map(|v| codec::read_u32(v.value()));
        match stored {
            None => {
                meta.insert("schema", &SCHEMA_VERSION.to_le_bytes()[..])
                    .map_err(|e| corrupt(path, e))?;
                SCHEMA_VERSION
            }
            // An older file is upgraded: an older exporter then refuses it as newer rather
            // than misreading what this one writes. What it restores is read as of its own
            // schema first (see `restore`).
            Some(Some(v @ 0..SCHEMA_VERSION)) => v,
            Some(Some(SCHEMA_VERSION)) => SCHEMA_VERSION,
            Some(Some(v)) => {
                return Err(StateError::Unusable {
                    path: path.to_path_buf(),
                    reason: RecoveryReason::NewerSchema,
                    message: format!("has schema {v}, newer than this exporter's {SCHEMA_VERSION}"),
                })
            }
            Some(None) => return Err(corrupt(path, "unreadable schema version")),
        }
    };
    txn.commit().map_err(|e| corrupt(path, e))?;
    Ok(opened)
}

impl Store {
    fn open(path: &Path, target: &str) -> Result<Store, StateError> {
        if path.is_dir() {
            return Err(StateError::Unusable {
                path: path.to_path_buf(),
                reason: RecoveryReason::Unreadable,
                message: "is a directory (name a file in it, e.g. crocodial-exporter.db)".into(),
            });
        }
        let db = open_database(path)?;
        let opened_schema = check_schema(&db, path)?;
        let file = Arc::new(FileHandle::new(path, db)?);
        Ok(Store::in_file(file, path, target, opened_schema))
    }

    /// The tables of `target` in an open file.
    fn in_file(file: Arc<FileHandle>, path: &Path, target: &str, opened_schema: u32) -> Store {
        Store {
            generation: AtomicU64::new(file.generation()),
            file,
            path: path.to_path_buf(),
            target: target.to_string(),
            legacy_seen: format!("{target}/seen"),
            legacy_pending: format!("{target}/pending"),
            legs: format!("{target}/legs"),
            leg_queues: format!("{target}/leg_queues"),
            pending: format!("{target}/pending_legs"),
            labels: format!("{target}/labels"),
            series: format!("{target}/series"),
            opened_schema,
        }
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> StateError {
        corrupt(&self.path, e)
    }

    fn db(&self) -> Result<Arc<Database>, StateError> {
        self.file.db()
    }

    fn meta_key(&self, key: &str) -> String {
        format!("{}/{key}", self.target)
    }

    /// Upgrades a file of an older schema once what it holds is restored: its pending calls
    /// (of schema 2 and before) are forgotten, its agents' seconds restart from zero, and the
    /// schema is written. Every target's tables are upgraded, since the schema is the file's.
    fn upgrade(&mut self, cfg: &MetricsConfig) -> Result<(), StateError> {
        if self.opened_schema == SCHEMA_VERSION {
            return Ok(());
        }
        let txn = self.db()?.begin_write().map_err(|e| self.corrupt(e))?;
        {
            let names: Vec<String> = txn
                .list_tables()
                .map_err(|e| self.corrupt(e))?
                .map(|t| redb::TableHandle::name(&t).to_string())
                .collect();
            let codec = SeriesCodec::new(cfg);
            for name in names {
                if name.ends_with("/pending") {
                    txn.delete_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                        .map_err(|e| self.corrupt(e))?;
                } else if name.ends_with("/series") {
                    let mut series = txn
                        .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                        .map_err(|e| self.corrupt(e))?;
                    codec
                        .zero_agent_seconds(&mut series)
                        .map_err(|e| self.corrupt(e))?;
                }
            }
            let mut meta = txn.open_table(META).map_err(|e| self.corrupt(e))?;
            meta.insert("schema", &SCHEMA_VERSION.to_le_bytes()[..])
                .map_err(|e| self.corrupt(e))?;
        }
        txn.commit().map_err(|e| self.corrupt(e))?;
        self.opened_schema = SCHEMA_VERSION;
        Ok(())
    }

    /// A table of this target, None if it does not exist (a file from before it was added).
    /// Any other failure to open it is a damaged file: reading it as empty would count every
    /// call in the window again.
    fn optional_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &redb::ReadTransaction,
        table: TableDefinition<'_, K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, StateError> {
        match txn.open_table(table) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.corrupt(e)),
        }
    }

    /// Reads this target's state, if the file has any.
    fn restore(&self, cfg: &MetricsConfig) -> Result<Option<Restored>, StateError> {
        let txn = self.db()?.begin_read().map_err(|e| self.corrupt(e))?;
        let Some(meta) = self.restore_meta(&txn, cfg)? else {
            return Ok(None);
        };
        let mut reset = meta.reset;
        let mut cdr = CdrAggregates::new(cfg);
        self.restore_labels(&txn, cfg, &mut cdr)?;
        self.restore_series(&txn, cfg, &mut cdr, &meta.bounds_kept, &mut reset)?;
        let mut not_migrated = None;
        if self.opened_schema < 3 {
            // Before legs, an agent's seconds were call durations, queue wait included.
            for totals in cdr.agents.values_mut() {
                totals.talk_seconds = 0.0;
            }
            if !cdr.agents.is_empty() {
                reset.push(codec::AGENT_TALK_TIME_FAMILY);
            }
            let pending = self.count_legacy_pending(&txn)?;
            not_migrated = Some(format!(
                "written before legs: its {pending} calls in progress are forgotten (each counts when its row comes back final, none is lost) and its counted call ids are kept until their day leaves the window"
            ));
        }
        let mut restored_health = Health::default();
        meta.health.apply(&mut restored_health);
        restored_health.last_success = meta.last_success;
        Ok(Some(Restored {
            remembered: Remembered {
                queues: self.restore_leg_queues(&txn)?,
                legs: self.restore_legs(&txn)?,
                legacy_calls: self.restore_legacy_seen(&txn)?,
                pending: self.restore_pending(&txn)?,
                expired_before: meta.expired_before,
            },
            cdr,
            health: restored_health,
            last_success: meta.last_success,
            reset,
            not_migrated,
        }))
    }

    /// The health record, the last success and whether the stored bucket bounds are still the
    /// configured ones; `None` when this target has no state in the file.
    fn restore_meta(
        &self,
        txn: &redb::ReadTransaction,
        cfg: &MetricsConfig,
    ) -> Result<Option<StoredMeta>, StateError> {
        let meta = txn.open_table(META).map_err(|e| self.corrupt(e))?;
        let Some(health) = meta
            .get(self.meta_key("health").as_str())
            .map_err(|e| self.corrupt(e))?
        else {
            return Ok(None);
        };
        let health = HealthRecord::decode(health.value())
            .ok_or_else(|| self.corrupt("health record does not decode"))?;
        let last_success = meta
            .get(self.meta_key("last_success").as_str())
            .map_err(|e| self.corrupt(e))?
            .and_then(|v| codec::read_i64(v.value()))
            .and_then(|us| Timestamp::from_microsecond(us).ok());
        let expired_before = meta
            .get(self.meta_key(EXPIRED_BEFORE).as_str())
            .map_err(|e| self.corrupt(e))?
            .and_then(|v| codec::read_i64(v.value()));
        let stored_bounds = |name: &str| -> Result<Option<Vec<f64>>, StateError> {
            Ok(meta
                .get(self.meta_key(&format!("buckets/{name}")).as_str())
                .map_err(|e| self.corrupt(e))?
                .map(|v| codec::read_f64s(v.value())))
        };
        let bounds_kept = BoundsKept {
            queue_time: stored_bounds("queue_time")?.is_none_or(|b| b == cfg.queue_time_buckets),
            call_duration: stored_bounds("call_duration")?
                .is_none_or(|b| b == cfg.call_duration_buckets),
        };
        let mut reset = Vec::new();
        if !bounds_kept.queue_time {
            reset.push(codec::QUEUE_TIME_FAMILY);
        }
        if !bounds_kept.call_duration {
            reset.push(codec::CALL_DURATION_FAMILY);
        }
        Ok(Some(StoredMeta {
            health,
            last_success,
            expired_before,
            bounds_kept,
            reset,
        }))
    }

    /// The interned label values, in id order.
    fn restore_labels(
        &self,
        txn: &redb::ReadTransaction,
        cfg: &MetricsConfig,
        cdr: &mut CdrAggregates,
    ) -> Result<(), StateError> {
        let Some(labels) =
            self.optional_table(txn, TableDefinition::<(u8, u32), &str>::new(&self.labels))?
        else {
            return Ok(());
        };
        let mut values: [Vec<Box<str>>; Label::ALL.len()] = Default::default();
        for entry in labels.iter().map_err(|e| self.corrupt(e))? {
            let (k, v) = entry.map_err(|e| self.corrupt(e))?;
            let (label, id) = k.value();
            let list = values
                .get_mut(label as usize)
                .ok_or_else(|| self.corrupt("unknown label kind"))?;
            if id as usize != list.len() {
                return Err(self.corrupt("label ids are not dense"));
            }
            list.push(v.value().into());
        }
        cdr.labels = values.map(|v| LabelValues::restore(v, cfg.max_label_values));
        Ok(())
    }

    /// The counters and histograms; a family of an older layout is added to `reset`.
    fn restore_series(
        &self,
        txn: &redb::ReadTransaction,
        cfg: &MetricsConfig,
        cdr: &mut CdrAggregates,
        kept: &BoundsKept,
        reset: &mut Vec<&'static str>,
    ) -> Result<(), StateError> {
        let Some(series) =
            self.optional_table(txn, TableDefinition::<&[u8], &[u8]>::new(&self.series))?
        else {
            return Ok(());
        };
        let codec = SeriesCodec::new(cfg);
        for entry in series.iter().map_err(|e| self.corrupt(e))? {
            let (k, v) = entry.map_err(|e| self.corrupt(e))?;
            codec
                .load(
                    cdr,
                    k.value(),
                    v.value(),
                    kept.queue_time,
                    kept.call_duration,
                )
                .ok_or_else(|| self.corrupt("a series does not decode"))?;
            if let Some(family) = SeriesCodec::legacy_family(k.value()) {
                if !reset.contains(&family) {
                    reset.push(family);
                }
            }
        }
        Ok(())
    }

    /// The call ids a file from before legs remembered, with their day.
    fn restore_legacy_seen(
        &self,
        txn: &redb::ReadTransaction,
    ) -> Result<Vec<(CallId, i64)>, StateError> {
        let mut seen = Vec::new();
        if let Some(table) =
            self.optional_table(txn, TableDefinition::<&[u8], ()>::new(&self.legacy_seen))?
        {
            seen.reserve(table.len().unwrap_or(0) as usize);
            for entry in table.iter().map_err(|e| self.corrupt(e))? {
                let (k, _) = entry.map_err(|e| self.corrupt(e))?;
                let (day, id) = codec::split_seen_key(k.value())
                    .ok_or_else(|| self.corrupt("a seen id does not decode"))?;
                seen.push((id, day));
            }
        }
        Ok(seen)
    }

    /// How many calls in progress a file from before legs held.
    fn count_legacy_pending(&self, txn: &redb::ReadTransaction) -> Result<u64, StateError> {
        Ok(
            match self.optional_table(
                txn,
                TableDefinition::<&[u8], &[u8]>::new(&self.legacy_pending),
            )? {
                Some(t) => t.len().map_err(|e| self.corrupt(e))?,
                None => 0,
            },
        )
    }

    /// The seen set's queue names, in their numbering.
    fn restore_leg_queues(&self, txn: &redb::ReadTransaction) -> Result<Vec<Box<str>>, StateError> {
        let mut queues = Vec::new();
        if let Some(table) =
            self.optional_table(txn, TableDefinition::<u32, &str>::new(&self.leg_queues))?
        {
            for entry in table.iter().map_err(|e| self.corrupt(e))? {
                let (k, v) = entry.map_err(|e| self.corrupt(e))?;
                if k.value() as usize != queues.len() {
                    return Err(self.corrupt("queue numbers are not dense"));
                }
                queues.push(v.value().into());
            }
        }
        Ok(queues)
    }

    /// The legs counted (or primed), with their day.
    fn restore_legs(&self, txn: &redb::ReadTransaction) -> Result<Vec<(LegKey, i64)>, StateError> {
        let mut legs = Vec::new();
        if let Some(table) =
            self.optional_table(txn, TableDefinition::<&[u8], ()>::new(&self.legs))?
        {
            legs.reserve(table.len().unwrap_or(0) as usize);
            for entry in table.iter().map_err(|e| self.corrupt(e))? {
                let (k, _) = entry.map_err(|e| self.corrupt(e))?;
                let (day, leg) = codec::split_leg_key(k.value())
                    .ok_or_else(|| self.corrupt("a seen leg does not decode"))?;
                legs.push((leg, day));
            }
        }
        Ok(legs)
    }

    /// The legs seen in progress and not counted yet.
    fn restore_pending(
        &self,
        txn: &redb::ReadTransaction,
    ) -> Result<Vec<(LegKey, Pending)>, StateError> {
        let mut pending = Vec::new();
        if let Some(table) =
            self.optional_table(txn, TableDefinition::<&[u8], &[u8]>::new(&self.pending))?
        {
            for entry in table.iter().map_err(|e| self.corrupt(e))? {
                let (k, v) = entry.map_err(|e| self.corrupt(e))?;
                let leg = decode_leg(k.value())
                    .ok_or_else(|| self.corrupt("a pending leg does not decode"))?;
                let p = codec::decode_pending(v.value())
                    .ok_or_else(|| self.corrupt("a pending leg does not decode"))?;
                pending.push((leg, p));
            }
        }
        Ok(pending)
    }

    /// Writes one poll in one transaction: its seen ids, pending changes, expiry, the series it
    /// touched, new label values, and the health counters. `plan` is absent for a failed poll.
    fn write(
        &self,
        db: &Database,
        plan: Option<&Plan>,
        cdr: &CdrAggregates,
        health: &Health,
    ) -> Result<(), StateError> {
        let txn = db.begin_write().map_err(write_error)?;
        self.write_meta(&txn, cdr, health)?;
        if let Some(plan) = plan {
            self.write_plan(&txn, plan)?;
        }
        self.write_changes(&txn, cdr)?;
        txn.commit().map_err(write_error)
    }

    /// The health record, the last success and the bucket bounds the histograms were kept in.
    fn write_meta(
        &self,
        txn: &redb::WriteTransaction,
        cdr: &CdrAggregates,
        health: &Health,
    ) -> Result<(), StateError> {
        let mut meta = txn.open_table(META).map_err(write_error)?;
        meta.insert(
            self.meta_key("health").as_str(),
            HealthRecord::from(health).encode().as_slice(),
        )
        .map_err(write_error)?;
        if let Some(t) = health.last_success {
            meta.insert(
                self.meta_key("last_success").as_str(),
                &t.as_microsecond().to_le_bytes()[..],
            )
            .map_err(write_error)?;
        }
        for (name, bounds) in [
            ("queue_time", &cdr.queue_time_bounds),
            ("call_duration", &cdr.call_duration_bounds),
        ] {
            meta.insert(
                self.meta_key(&format!("buckets/{name}")).as_str(),
                codec::write_f64s(bounds).as_slice(),
            )
            .map_err(write_error)?;
        }
        Ok(())
    }

    /// A successful poll's changes to the seen legs and the pending legs, expiry first.
    fn write_plan(&self, txn: &redb::WriteTransaction, plan: &Plan) -> Result<(), StateError> {
        if let Some(day) = plan.expire_before {
            let mut meta = txn.open_table(META).map_err(write_error)?;
            meta.insert(
                self.meta_key(EXPIRED_BEFORE).as_str(),
                &day.to_le_bytes()[..],
            )
            .map_err(write_error)?;
        }
        let mut legs = txn
            .open_table(TableDefinition::<&[u8], ()>::new(&self.legs))
            .map_err(write_error)?;
        let mut pending = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&self.pending))
            .map_err(write_error)?;
        if let Some(day) = plan.expire_before {
            let bound = seen_key(day);
            legs.retain_in(..bound.as_slice(), |_, ()| false)
                .map_err(write_error)?;
            pending
                .retain(|_, v| codec::decode_pending(v).is_some_and(|p| p.day >= day))
                .map_err(write_error)?;
            self.expire_legacy(txn, &bound)?;
        }
        if !plan.new_queues.is_empty() {
            let mut queues = txn
                .open_table(TableDefinition::<u32, &str>::new(&self.leg_queues))
                .map_err(write_error)?;
            let first = queues.len().map_err(write_error)? as u32;
            for (i, name) in plan.new_queues.iter().enumerate() {
                queues
                    .insert(first + i as u32, &**name)
                    .map_err(write_error)?;
            }
        }
        for (leg, day) in &plan.seen {
            legs.insert(codec::leg_seen_key(*day, leg).as_slice(), ())
                .map_err(write_error)?;
        }
        for leg in &plan.pending_done {
            pending
                .remove(encode_leg(leg).as_slice())
                .map_err(write_error)?;
        }
        for (leg, p) in &plan.pending_added {
            pending
                .insert(
                    encode_leg(leg).as_slice(),
                    codec::encode_pending(p).as_slice(),
                )
                .map_err(write_error)?;
        }
        Ok(())
    }

    /// Forgets the call ids of a file from before legs whose day is before `bound`.
    fn expire_legacy(&self, txn: &redb::WriteTransaction, bound: &[u8]) -> Result<(), StateError> {
        let legacy = TableDefinition::<&[u8], ()>::new(&self.legacy_seen);
        match txn.open_table(legacy) {
            Ok(mut seen) => {
                seen.retain_in(..bound, |_, ()| false)
                    .map_err(write_error)?;
                Ok(())
            }
            Err(e) => Err(write_error(e)),
        }
    }

    /// The label values interned and the series changed since the last stored poll.
    fn write_changes(
        &self,
        txn: &redb::WriteTransaction,
        cdr: &CdrAggregates,
    ) -> Result<(), StateError> {
        let Some(changes) = cdr.changes() else {
            return Ok(());
        };
        let mut labels = txn
            .open_table(TableDefinition::<(u8, u32), &str>::new(&self.labels))
            .map_err(write_error)?;
        for label in Label::ALL {
            let values = cdr.labels[label as usize].values();
            for (id, value) in values
                .iter()
                .enumerate()
                .skip(changes.labels_stored[label as usize])
            {
                labels
                    .insert((label as u8, id as u32), &**value)
                    .map_err(write_error)?;
            }
        }
        let mut series = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&self.series))
            .map_err(write_error)?;
        for key in &changes.series {
            if let Some((k, v)) = SeriesCodec::encode(cdr, key) {
                series
                    .insert(k.as_slice(), v.as_slice())
                    .map_err(write_error)?;
            }
        }
        Ok(())
    }

    /// When this target was marked removed from the targets file, if it was.
    fn removed_at(&self) -> Result<Option<Timestamp>, StateError> {
        let txn = self.db()?.begin_read().map_err(write_error)?;
        let meta = txn.open_table(META).map_err(write_error)?;
        let at = meta
            .get(format!("{}{REMOVED_AT}", self.target).as_str())
            .map_err(write_error)?
            .and_then(|v| codec::read_i64(v.value()))
            .and_then(|us| Timestamp::from_microsecond(us).ok());
        Ok(at)
    }

    /// Sets or clears when this target was removed from the targets file.
    fn set_removed(&self, at: Option<Timestamp>) -> Result<(), StateError> {
        let key = format!("{}{REMOVED_AT}", self.target);
        let txn = self.db()?.begin_write().map_err(write_error)?;
        {
            let mut meta = txn.open_table(META).map_err(write_error)?;
            match at {
                Some(at) => {
                    meta.insert(key.as_str(), &at.as_microsecond().to_le_bytes()[..])
                        .map_err(write_error)?;
                }
                None => {
                    meta.remove(key.as_str()).map_err(write_error)?;
                }
            }
        }
        txn.commit().map_err(write_error)
    }

    /// Drops every table and meta entry of this target.
    fn forget(&self) -> Result<(), StateError> {
        let prefix = format!("{}/", self.target);
        let txn = self.db()?.begin_write().map_err(write_error)?;
        {
            let tables: Vec<_> = txn
                .list_tables()
                .map_err(write_error)?
                .filter(|t| redb::TableHandle::name(t).starts_with(&prefix))
                .collect();
            for table in tables {
                txn.delete_table(table).map_err(write_error)?;
            }
            let mut meta = txn.open_table(META).map_err(write_error)?;
            meta.retain(|k, _| !k.starts_with(&prefix))
                .map_err(write_error)?;
        }
        txn.commit().map_err(write_error)
    }

    /// Drops the stored series of histograms whose buckets changed (they restart from zero).
    pub fn drop_reset_series(&self, cfg: &MetricsConfig, reset: &[&str]) -> Result<(), StateError> {
        if reset.is_empty() {
            return Ok(());
        }
        let codec = SeriesCodec::new(cfg);
        let txn = self.db()?.begin_write().map_err(write_error)?;
        {
            let mut series = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&self.series))
                .map_err(write_error)?;
            series
                .retain(|k, _| !codec.is_reset(k, reset))
                .map_err(write_error)?;
        }
        txn.commit().map_err(write_error)
    }
}
