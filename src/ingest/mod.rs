//! Getting calls in: the query window, the poll schedule, the seen set and the rules that count
//! each call once.

pub mod dedup;
pub mod poller;
pub mod schedule;
pub mod seen;
pub mod timeline;
pub mod window;

pub use poller::{PollReport, Poller};
