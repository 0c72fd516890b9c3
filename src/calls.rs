//! Words every layer uses about a call: how it ended, and what it is doing while in progress.
//! A leaf module: it imports nothing of the exporter.

/// How a counted call ended, as contact centers count it: offered calls are the answered and
/// the abandoned ones; the rest (after hours, queue timeout, denied, no agent...) were never
/// offered to an agent in a way the caller could be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A person took the call.
    Answered,
    /// Nobody took it and the caller hung up while waiting.
    Abandoned,
    Other,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Answered, Outcome::Abandoned, Outcome::Other];

    /// The value of the `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Other => "other",
        }
    }

    /// The outcome stored under `id` (its position in [`Outcome::ALL`]).
    pub fn from_id(id: u32) -> Option<Outcome> {
        Outcome::ALL.get(id as usize).copied()
    }
}

/// What a call still in progress is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LiveState {
    /// The caller waits in queue.
    Waiting,
    /// The caller talks to an agent.
    Talking,
}

impl LiveState {
    pub const ALL: [LiveState; 2] = [LiveState::Waiting, LiveState::Talking];

    /// The value of the `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveState::Waiting => "waiting",
            LiveState::Talking => "talking",
        }
    }
}
