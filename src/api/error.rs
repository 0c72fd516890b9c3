//! Why a poll failed, classified so that alerts and dashboards can tell the causes apart.

use std::fmt;

/// The `reason` label of `crocodial_poll_errors_total`. Every reason is exported from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The API refused the credentials.
    Auth,
    /// The API answered with one of its error envelopes or plain-text errors.
    Api,
    /// The HTTP status was not 200.
    Http,
    /// The request or the body took longer than `--api.timeout`.
    Timeout,
    /// No connection (refused, DNS, TLS handshake).
    Connect,
    /// The connection broke while the body was read.
    Body,
    /// The body is larger than `--api.max-response-bytes`.
    TooLarge,
    /// The body is not an answer we can read (HTML, empty, cut short, not JSON, wrong shape).
    Decode,
    /// The answer was read but could not be stored in the state file; nothing was counted.
    State,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Auth,
        Reason::Api,
        Reason::Http,
        Reason::Timeout,
        Reason::Connect,
        Reason::Body,
        Reason::TooLarge,
        Reason::Decode,
        Reason::State,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Auth => "auth",
            Reason::Api => "api",
            Reason::Http => "http",
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Body => "body",
            Reason::TooLarge => "too_large",
            Reason::Decode => "decode",
            Reason::State => "state",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
