//! Why a poll failed, classified so that alerts and dashboards can tell the causes apart.

use crate::vocab::Reason;

/// A failed poll: its reason and a message for people. The message carries the API's own words
/// where there are some, and never the password or a row's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct PollError {
    pub reason: Reason,
    pub message: String,
}

impl PollError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// At most `max` characters of `text`, control characters dropped, for quoting an answer in an
/// error message without flooding the log.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    if text.trim().chars().filter(|c| !c.is_control()).count() > max {
        out.push('…');
    }
    out
}
