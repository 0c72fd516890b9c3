//! Where a backfill's steps go: one OpenMetrics file, a file per day, or a remote-write
//! receiver. Files are written under `<name>.partial` and named only when the backfill
//! completes ([`Files`]), so a backfill that stops leaves none behind.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use prometheus::proto::MetricFamily;

use super::remote_write::RemoteWriter;
use super::BackfillError;
use crate::config::Destination;
use crate::metrics::openmetrics::OpenMetricsWriter;

/// The files a backfill writes, under the temporary names they are written to; shared, so that
/// a backfill interrupted mid-way can remove them.
#[derive(Clone)]
pub struct Files {
    written: Arc<Mutex<Vec<(PathBuf, PathBuf)>>>,
    /// The state file, and its partial name.
    pub state: Option<(PathBuf, PathBuf)>,
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

impl Files {
    pub fn new(state: Option<&Path>) -> Self {
        Self {
            written: Arc::default(),
            state: state.map(|p| (p.to_path_buf(), partial(p))),
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<(PathBuf, PathBuf)>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `path`'s partial file, created; renamed to `path` by [`Files::complete`].
    pub fn create(&self, path: &Path) -> Result<File, BackfillError> {
        let partial = partial(path);
        let file = File::create(&partial).map_err(|e| output_error(path, &e))?;
        self.list().push((path.to_path_buf(), partial));
        Ok(file)
    }

    /// Gives every file its name, the state file last, so that a state file never stands
    /// without its history.
    pub fn complete(&self) -> Result<(), BackfillError> {
        let rename =
            |from: &Path, to: &Path| std::fs::rename(from, to).map_err(|e| output_error(to, &e));
        for (path, partial) in self.list().iter() {
            rename(partial, path)?;
        }
        if let Some((path, partial)) = &self.state {
            rename(partial, path)?;
        }
        Ok(())
    }

    /// Removes the partial files (after a failed rename, those not renamed yet).
    pub fn discard(&self) {
        for (_, partial) in self.list().iter() {
            let _ = std::fs::remove_file(partial);
        }
        if let Some((_, partial)) = &self.state {
            let _ = std::fs::remove_file(partial);
        }
    }
}

pub fn output_error(path: &Path, e: &std::io::Error) -> BackfillError {
    BackfillError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The OpenMetrics text being written, and the file (and day) it goes to.
pub struct Text {
    writer: OpenMetricsWriter<BufWriter<File>>,
    /// The files still open, oldest first, as the writer's outputs.
    paths: Vec<PathBuf>,
    /// With a file per day: the directory and the day of the file being written.
    days: Option<(PathBuf, Date)>,
}

pub enum Output {
    Text(Box<Text>),
    Remote(Box<RemoteWriter>),
}

fn day_file(dir: &Path, day: Date) -> PathBuf {
    dir.join(format!("{day}.om"))
}

fn closed(file: BufWriter<File>, path: &Path) -> Result<(), BackfillError> {
    let file = file
        .into_inner()
        .map_err(|e| output_error(path, e.error()))?;
    file.sync_all().map_err(|e| output_error(path, &e))
}

impl Output {
    /// The output of `destination`, steps `step` apart; a file per day starts with `first`.
    pub fn new(
        destination: &Destination,
        files: &Files,
        step: SignedDuration,
        first: Date,
    ) -> Result<Self, BackfillError> {
        let text = |path: PathBuf, days: Option<(PathBuf, Date)>| {
            let file = files.create(&path)?;
            Ok(Output::Text(Box::new(Text {
                writer: OpenMetricsWriter::new(BufWriter::with_capacity(1 << 20, file), step),
                paths: vec![path],
                days,
            })))
        };
        match destination {
            Destination::File(path) => text(path.clone(), None),
            Destination::Days(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| output_error(dir, &e))?;
                text(day_file(dir, first), Some((dir.clone(), first)))
            }
            Destination::RemoteWrite(config) => RemoteWriter::new(config, step)
                .map(|w| Output::Remote(Box::new(w)))
                .map_err(BackfillError::Setup),
        }
    }

    /// Writes the step at `at` (every series with `everything`); a file per day moves to the
    /// file of `at`'s day in `tz` first.
    pub async fn step(
        &mut self,
        families: Vec<MetricFamily>,
        at: Timestamp,
        everything: bool,
        tz: &TimeZone,
        files: &Files,
    ) -> Result<(), BackfillError> {
        match self {
            Output::Text(text) => {
                if let Some((dir, day)) = &mut text.days {
                    let today = at.to_zoned(tz.clone()).date();
                    if today != *day {
                        let path = day_file(dir, today);
                        let next = BufWriter::with_capacity(1 << 20, files.create(&path)?);
                        let midnight = today
                            .to_zoned(tz.clone())
                            .map(|z| z.timestamp())
                            .unwrap_or(at);
                        text.writer.rotate(next, midnight);
                        text.paths.push(path);
                        *day = today;
                    }
                }
                let path = text.paths.last().cloned().unwrap_or_default();
                text.writer
                    .write_step(families, at, everything)
                    .map_err(|e| output_error(&path, &e))?;
                let ended = text
                    .writer
                    .retire(at)
                    .map_err(|e| output_error(&path, &e))?;
                for file in ended {
                    let path = text.paths.remove(0);
                    closed(file, &path)?;
                }
                Ok(())
            }
            Output::Remote(remote) => remote
                .write_step(families, at, everything)
                .await
                .map_err(BackfillError::RemoteWrite),
        }
    }

    /// Sends what a remote write holds (at the end of each day, so that its progress line
    /// counts what the receiver has).
    pub async fn flush(&mut self) -> Result<(), BackfillError> {
        match self {
            Output::Text(_) => Ok(()),
            Output::Remote(remote) => remote.flush().await.map_err(BackfillError::RemoteWrite),
        }
    }

    pub fn samples(&self) -> u64 {
        match self {
            Output::Text(text) => text.writer.samples(),
            Output::Remote(remote) => remote.samples(),
        }
    }

    /// Ends the output (the text's `# EOF`, synced to disk, or the last request sent): the
    /// series and the samples written or sent in all.
    pub async fn finish(self) -> Result<(usize, u64), BackfillError> {
        match self {
            Output::Text(text) => {
                let Text { writer, paths, .. } = *text;
                let counts = (writer.series(), writer.samples());
                let last = paths.last().cloned().unwrap_or_default();
                let files = writer.finish().map_err(|e| output_error(&last, &e))?;
                for (file, path) in files.into_iter().zip(&paths) {
                    closed(file, path)?;
                }
                Ok(counts)
            }
            Output::Remote(mut remote) => {
                remote.flush().await.map_err(BackfillError::RemoteWrite)?;
                Ok((remote.series(), remote.samples()))
            }
        }
    }
}
