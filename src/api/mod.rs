//! Talking to Croco-dial: the HTTP client, the decoder of its answers (fed the body as it
//! arrives; a whole body is one chunk), and the classified errors of a poll.

pub mod client;
pub mod decode;
pub mod error;
pub mod stream;

pub use client::{ApiClient, Body};
pub use decode::{Answer, LegRef, Num, Row, RowEntry, SummaryRow, SUMMARY_FIELDS};
pub use error::PollError;
pub use stream::{RowSink, StreamDecoder};

/// Decodes a whole body (one chunk), counting no call as counted before: the rows, owned, and
/// the answer. For tests.
#[cfg(test)]
pub(crate) fn decode_whole(
    body: &[u8],
) -> Result<(Vec<RowEntry<'static>>, Answer<'static>), PollError> {
    let mut rows = Vec::new();
    let answer = {
        let mut each = |r: RowEntry<'_>| rows.push(r.into_owned());
        let mut sink = RowSink {
            already_counted: &|_| false,
            row: &mut each,
        };
        let mut decoder = StreamDecoder::new();
        decoder.feed(body, &mut sink)?;
        decoder.finish(&mut sink)?
    };
    Ok((rows, answer))
}
