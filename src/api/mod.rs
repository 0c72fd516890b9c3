//! Talking to Croco-dial: the HTTP client, the decoder of its answers, and the classified
//! errors of a poll.

pub mod client;
pub mod decode;
pub mod error;

pub use client::ApiClient;
pub use decode::{
    decode, decode_text, repair_utf8, Answer, Num, Row, RowEntry, SummaryRow, SUMMARY_FIELDS,
};
pub use error::{PollError, Reason};
