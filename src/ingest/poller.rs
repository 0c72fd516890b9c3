//! One poll: fetch the window, decode it, sort the rows, and apply the result to the shared
//! state in one step, so a scrape sees a poll either whole or not at all, and a failed poll
//! changes nothing but the health metrics.

use std::sync::Arc;
use std::time::Duration;

use super::dedup::{Deduper, Mode, RowCounts};
use super::window::Window;
use crate::api::{decode, ApiClient, PollError};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::events::{LabelOverflowed, PollFailed, PollSucceeded};
use crate::metrics::aggregates::Label;
use crate::metrics::SharedState;

/// What one successful poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollReport {
    pub rows: RowCounts,
    pub response_bytes: u64,
}

pub struct Poller {
    client: ApiClient,
    deduper: Deduper,
    shared: Arc<SharedState>,
    clock: SharedClock,
    lookback: Duration,
    tz: jiff::tz::TimeZone,
    max_label_values: u32,
    /// The mode of the next successful poll: [`Mode::Prime`] until one has succeeded, unless
    /// every final row is to be counted (`--once`).
    mode: Mode,
}

impl Poller {
    pub fn new(
        config: &Config,
        client: ApiClient,
        shared: Arc<SharedState>,
        clock: SharedClock,
    ) -> Self {
        Self {
            client,
            deduper: Deduper::new(
                config.cdr.in_progress_dispositions.clone(),
                config.cdr.max_pending,
                config.timezone.zone.clone(),
            ),
            shared,
            clock,
            lookback: config.lookback,
            tz: config.timezone.zone.clone(),
            max_label_values: config.metrics.max_label_values,
            mode: if config.once {
                Mode::Count
            } else {
                Mode::Prime
            },
        }
    }

    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// Polls once and records the outcome in the shared state.
    pub async fn poll(&mut self) -> Result<PollReport, PollError> {
        let started = tokio::time::Instant::now();
        let now = self.clock.now();
        let window = Window::at(now, self.lookback, &self.tz);
        let body = self.client.fetch(window.from, window.to).await;
        let result = body.and_then(|body| {
            let answer = decode(&body)?;
            let (counted, rows) = self.deduper.sort(&answer.rows, &window, now, self.mode);
            let primed = self.mode == Mode::Prime;
            let mut state = self.shared.write();
            let overflow_before = state.cdr.label_overflow;
            state.cdr.count(&counted);
            state.cdr.set_summary(&answer.summary);
            for label in Label::ALL {
                let i = label as usize;
                if overflow_before[i] == 0 && state.cdr.label_overflow[i] > 0 {
                    LabelOverflowed {
                        label: label.as_str(),
                        max: self.max_label_values,
                    }
                    .emit(self.shared.target());
                }
            }
            PollSucceeded {
                at: self.clock.now(),
                duration: started.elapsed(),
                rows,
                response_bytes: body.len() as u64,
                had_warnings: answer.had_warnings,
                dedup_entries: self.deduper.seen_len() as u64,
                pending_entries: self.deduper.pending_len() as u64,
                primed,
            }
            .emit(self.shared.target(), &mut state.health);
            Ok(PollReport {
                rows,
                response_bytes: body.len() as u64,
            })
        });
        match &result {
            Ok(_) => self.mode = Mode::Count,
            Err(error) => PollFailed {
                at: self.clock.now(),
                duration: started.elapsed(),
                error: error.clone(),
            }
            .emit(self.shared.target(), &mut self.shared.write().health),
        }
        result
    }
}

impl super::schedule::Job for Poller {
    async fn run(&mut self) {
        // The outcome is already recorded (and logged) by `poll`.
        let _ = self.poll().await;
    }
}
