//! Talking to Croco-dial: the HTTP client, the decoder of its answers (whole, or as the body
//! arrives), and the classified errors of a poll.

pub mod client;
pub mod decode;
pub mod error;
pub mod stream;

pub use client::{ApiClient, Body};
pub use decode::{
    decode, decode_text, repair_utf8, Answer, Num, Row, RowEntry, SummaryRow, SUMMARY_FIELDS,
};
pub use error::{PollError, Reason};
pub use stream::{RowSink, StreamDecoder};
