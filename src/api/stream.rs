//! Decodes an answer as its body arrives, so that memory does not grow with the window.
//!
//! A body is `{"result":"success","data":{"rows":[...],"headers":[...],"summary_rows":[...]}}`
//! and only `rows` is large: tens of MB on a busy day, re-sent by every poll. The decoder walks
//! the envelope down to `rows`, hands each row over as soon as its closing brace has arrived, and
//! then forgets its bytes. Everything else, the *skeleton* (the body with `rows` emptied), is
//! kept and decoded at the end by [`decode_text`], so that error envelopes, "No records
//! retrieved", summaries, PHP notices and trailing text are judged exactly as for a whole body.
//!
//! Every value, each row included, is parsed by serde_json; this code only steps over the
//! whitespace and punctuation between them (`{ } [ ] , :`). A body it does not recognise (say
//! `data` is not an object, or PHP notices come first and no JSON is found) is simply kept whole
//! and decoded at the end. Errors name the line and column in the body, as for a whole body.
//!
//! Rows are handed over before the end of the body is known, so the caller must be able to take
//! them back: the poller counts them into a working copy that it throws away if the answer turns
//! out to be an error or breaks off.

use std::borrow::Cow;

use serde::de::DeserializeSeed;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::decode::{
    decode_text, json_error, php_notice_end, Answer, OneRow, RowEntry, SummaryRow, NOTICE_WINDOW,
};
use super::error::{PollError, Reason};

/// Rows are parsed once at least this much is buffered (or the body ended), so that a row cut
/// by a chunk boundary is rarely parsed twice.
const BATCH: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the JSON: whitespace, a byte-order mark, PHP notices.
    Start,
    /// In the top object (`depth` 1) or in `data` (2): before a key, or after a member's value.
    Members { depth: u8, after_value: bool },
    /// After a key, before its `:`.
    Colon { depth: u8, key: Key },
    /// Before a member's value.
    Value { depth: u8, key: Key },
    /// In `rows`: a list, or (PHP's associative array) an object of rows.
    Rows { object: bool, step: Step },
    /// Everything from here on belongs to the skeleton.
    Rest,
}

/// The keys on the way to `rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Data,
    Rows,
    Other,
}

/// Where in `rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Just after the opening bracket.
    First,
    /// After a comma (or, in an object, after a key's colon): a row must follow.
    Row,
    /// In an object, after a comma: a key must follow.
    Key,
    /// In an object, after a key.
    Colon,
    /// After a row.
    AfterRow,
}

/// What the decoder does with each row, as it completes.
pub struct RowSink<'s> {
    /// Whether a call (its trimmed `uniq1`) was counted before: such rows are only counted in
    /// [`Answer::already_counted`].
    pub already_counted: &'s dyn Fn(&str) -> bool,
    /// Takes every other row.
    pub row: &'s mut dyn FnMut(RowEntry<'_>),
}

/// A decoder fed with the body's chunks in order.
pub struct StreamDecoder {
    /// Text received and not yet decoded.
    buf: String,
    /// The start of a character cut by the end of the last chunk.
    carry: Vec<u8>,
    /// Rows are not tried again until this much is buffered.
    wait_for: usize,
    /// Invalid UTF-8 was replaced (see [`super::repair_utf8`]).
    repaired: bool,
    walk: Walk,
}

/// The decoding proper, over the buffered text.
struct Walk {
    /// Where decoding is in the buffer.
    pos: usize,
    /// serde_json's line and column of `pos`, counted from the JSON's start as [`decode_text`]
    /// counts them, for error messages.
    line: usize,
    column: usize,
    state: State,
    skeleton: Vec<u8>,
    /// PHP notices (or other text) came before the JSON.
    notices: bool,
    /// Rows were left out of the skeleton since the last anchor.
    skipped: bool,
    /// Where the skeleton's text stands in the body, for error messages.
    anchors: Vec<Anchor>,
    already_counted: u64,
}

/// From `at` in the skeleton on, the body's text continues from `line` and `column`.
#[derive(Debug)]
struct Anchor {
    at: usize,
    line: usize,
    column: usize,
}

/// Sizes and state only: the buffer holds callers' phone numbers and names.
impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("buffered", &self.buf.len())
            .field("state", &self.walk.state)
            .field("skeleton", &self.walk.skeleton.len())
            .field("already_counted", &self.walk.already_counted)
            .finish_non_exhaustive()
    }
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self {
            buf: String::new(),
            carry: Vec::new(),
            wait_for: BATCH,
            repaired: false,
            walk: Walk::new(),
        }
    }

    /// Takes the next chunk of the body; rows completed by it go to `sink`.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut RowSink<'_>) -> Result<(), PollError> {
        self.push(chunk);
        if self.buf.len() < self.wait_for {
            return Ok(());
        }
        self.advance(false, sink)
    }

    /// The body has ended: the last rows go to `sink`, and the answer (without rows) is returned.
    pub fn finish(mut self, sink: &mut RowSink<'_>) -> Result<Answer<'static>, PollError> {
        if !self.carry.is_empty() {
            // The body ended inside a character.
            self.buf.push(char::REPLACEMENT_CHARACTER);
            self.repaired = true;
        }
        self.advance(true, sink)?;
        let mut skeleton = std::mem::take(&mut self.walk.skeleton);
        skeleton.extend_from_slice(self.buf.as_bytes());
        let skeleton = match String::from_utf8(skeleton) {
            Ok(s) => s,
            // Cannot happen: the skeleton is made of text cut at ASCII bytes.
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let answer = decode_text(&skeleton, sink.already_counted)
            .map_err(|e| self.walk.place(&skeleton, e))?;
        for row in answer.rows {
            (sink.row)(row);
        }
        Ok(Answer {
            rows: Vec::new(),
            already_counted: self.walk.already_counted + answer.already_counted,
            summary: answer
                .summary
                .into_iter()
                .map(SummaryRow::into_owned)
                .collect(),
            had_warnings: answer.had_warnings || self.repaired || self.walk.notices,
        })
    }

    /// Appends a chunk to the text, checking its UTF-8 once. Each invalid sequence becomes
    /// U+FFFD, as with `String::from_utf8_lossy`: PHP passes bytes from MySQL through
    /// unchecked, and one bad byte in a customer's name must not fail the answer.
    fn push(&mut self, chunk: &[u8]) {
        let joined;
        let bytes = if self.carry.is_empty() {
            chunk
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(chunk);
            joined = carry;
            &joined[..]
        };
        if let Ok(text) = std::str::from_utf8(bytes) {
            self.buf.push_str(text);
            return;
        }
        let mut pieces = bytes.utf8_chunks().peekable();
        while let Some(piece) = pieces.next() {
            self.buf.push_str(piece.valid());
            let invalid = piece.invalid();
            if invalid.is_empty() {
                continue;
            }
            let incomplete = std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
            if pieces.peek().is_none() && incomplete {
                // Cut by the end of the chunk: the next one completes it.
                self.carry.extend_from_slice(invalid);
            } else {
                self.buf.push(char::REPLACEMENT_CHARACTER);
                self.repaired = true;
            }
        }
    }

    /// Decodes as far as the buffered text goes, then drops what was decoded.
    fn advance(&mut self, done: bool, sink: &mut RowSink<'_>) -> Result<(), PollError> {
        let result = self.walk.steps(&self.buf, done, sink);
        // The rest (less than a row, mostly) moves to the front. `pos` is always just after
        // an ASCII byte or at the end.
        let pos = self.walk.pos;
        if self.buf.is_char_boundary(pos) {
            self.buf.drain(..pos);
            self.walk.pos = 0;
        }
        self.wait_for = BATCH.max(2 * self.buf.len());
        result
    }
}

impl Walk {
    fn new() -> Self {
        Walk {
            pos: 0,
            line: 1,
            column: 0,
            state: State::Start,
            skeleton: Vec::new(),
            notices: false,
            skipped: false,
            anchors: vec![Anchor {
                at: 0,
                line: 1,
                column: 0,
            }],
            already_counted: 0,
        }
    }

    /// Moves on by `n` bytes of `text`, keeping the line and column up to date.
    fn consume(&mut self, text: &str, n: usize) {
        let seg = &text.as_bytes()[self.pos..self.pos + n];
        match memchr::memrchr(b'\n', seg) {
            Some(last) => {
                self.line += memchr::memchr_iter(b'\n', seg).count();
                self.column = n - last - 1;
            }
            None => self.column += n,
        }
        self.pos += n;
    }

    /// Moves on by `n` bytes of `text`, into the skeleton.
    fn keep(&mut self, text: &str, n: usize) {
        if self.skipped {
            self.anchors.push(Anchor {
                at: self.skeleton.len(),
                line: self.line,
                column: self.column,
            });
            self.skipped = false;
        }
        self.skeleton
            .extend_from_slice(&text.as_bytes()[self.pos..self.pos + n]);
        self.consume(text, n);
    }

    /// Moves on by `n` bytes of `text` that the skeleton leaves out (rows).
    fn skip(&mut self, text: &str, n: usize) {
        self.skipped |= n > 0;
        self.consume(text, n);
    }

    /// An error of the final decode, placed in the body rather than in the skeleton.
    fn place(&self, skeleton: &str, mut e: PollError) -> PollError {
        let Some(at) = e.message.rfind(" at line ") else {
            return e;
        };
        let position = e.message[at + " at line ".len()..]
            .split_once(" column ")
            .and_then(|(l, c)| Some((l.parse::<usize>().ok()?, c.parse::<usize>().ok()?)));
        let Some((line, column)) = position else {
            return e;
        };
        let bytes = skeleton.as_bytes();
        let line_start = match line {
            0 | 1 => Some(0),
            n => memchr::memchr_iter(b'\n', bytes).nth(n - 2).map(|i| i + 1),
        };
        let Some(offset) = line_start.map(|s| (s + column).min(bytes.len())) else {
            return e;
        };
        let Some(anchor) = self.anchors.iter().rev().find(|a| a.at <= offset) else {
            return e;
        };
        let (mut line, mut column) = (anchor.line, anchor.column);
        let seg = &bytes[anchor.at..offset];
        match memchr::memrchr(b'\n', seg) {
            Some(last) => {
                line += memchr::memchr_iter(b'\n', seg).count();
                column = seg.len() - last - 1;
            }
            None => column += seg.len(),
        }
        e.message.truncate(at);
        e.message = format!("{} at line {line} column {column}", e.message);
        e
    }

    /// The length of the whitespace at `pos`, and the byte after it, if it has arrived.
    fn after_whitespace(&self, text: &str) -> (usize, Option<u8>) {
        let avail = &text.as_bytes()[self.pos..];
        let ws = avail
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(avail.len());
        (ws, avail.get(ws).copied())
    }

    /// The JSON value at the start of `text` and its length, if it is complete.
    fn value<'a, T: Deserialize<'a>>(
        text: &'a str,
        done: bool,
    ) -> Result<Option<(T, usize)>, serde_json::Error> {
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<T>();
        match values.next() {
            // A number could go on in the next chunk.
            Some(Ok(_)) if values.byte_offset() == text.len() && !done => Ok(None),
            Some(Ok(v)) => Ok(Some((v, values.byte_offset()))),
            Some(Err(e)) if e.is_eof() && !done => Ok(None),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// A serde_json error in the value at `pos`, placed in the whole body.
    fn error_here(&self, e: serde_json::Error) -> PollError {
        let (line, column) = if e.line() <= 1 {
            (self.line, self.column + e.column())
        } else {
            (self.line + e.line() - 1, e.column())
        };
        let mut error = json_error(e);
        if let Some(at) = error.message.rfind(" at line ") {
            error.message.truncate(at);
        }
        error.message = format!("{} at line {line} column {column}", error.message);
        error
    }

    /// The body ended, after `ws` bytes of whitespace, where `what` was to follow (as
    /// serde_json words and places it).
    fn cut_short(&self, ws: usize, what: &str) -> PollError {
        PollError::new(
            Reason::Decode,
            format!(
                "body cut short: EOF while parsing {what} at line {} column {}",
                self.line,
                self.column + ws
            ),
        )
    }

    /// Something other than `what` follows, after `ws` bytes of whitespace.
    fn expected(&self, ws: usize, what: &str) -> PollError {
        PollError::new(
            Reason::Decode,
            format!(
                "invalid JSON: expected {what} at line {} column {}",
                self.line,
                self.column + ws + 1
            ),
        )
    }

    fn steps(&mut self, text: &str, done: bool, sink: &mut RowSink<'_>) -> Result<(), PollError> {
        loop {
            match self.state {
                State::Start => {
                    let avail = &text.as_bytes()[self.pos..];
                    let trimmed = avail.trim_ascii_start();
                    let json = trimmed.strip_prefix(BOM).unwrap_or(trimmed);
                    let notices = json.first() != Some(&b'{');
                    let start = match json.first() {
                        Some(b'{') => Some(avail.len() - json.len()),
                        _ if trimmed.len() < BOM.len() && BOM.starts_with(trimmed) && !done => {
                            return Ok(())
                        }
                        _ if json.len() < NOTICE_WINDOW && !done => return Ok(()),
                        _ => php_notice_end(json).map(|at| avail.len() - json.len() + at),
                    };
                    match start {
                        Some(start) => {
                            // The skeleton starts at the `{` of the top object: the final decode
                            // must not look for PHP notices again, in a text without the rows.
                            self.notices = notices;
                            self.consume(text, start);
                            // Positions are counted from the JSON's start, as decode_text does.
                            (self.line, self.column) = (1, 0);
                            self.keep(text, 1);
                            self.state = State::Members {
                                depth: 1,
                                after_value: false,
                            };
                        }
                        None => self.state = State::Rest,
                    }
                }
                State::Members { depth, after_value } => {
                    let (ws, next) = self.after_whitespace(text);
                    let Some(next) = next else {
                        return self.wait_or_rest(text, done);
                    };
                    match next {
                        b'}' => {
                            self.keep(text, ws + 1);
                            self.state = if depth == 1 {
                                State::Rest
                            } else {
                                State::Members {
                                    depth: 1,
                                    after_value: true,
                                }
                            };
                        }
                        b',' if after_value => {
                            self.keep(text, ws + 1);
                            self.state = State::Members {
                                depth,
                                after_value: false,
                            };
                        }
                        b'"' if !after_value => {
                            match Self::value::<Cow<'_, str>>(&text[self.pos + ws..], done) {
                                Ok(Some((name, len))) => {
                                    let key = match (depth, name.as_ref()) {
                                        (1, "data") => Key::Data,
                                        (2, "rows") => Key::Rows,
                                        _ => Key::Other,
                                    };
                                    self.keep(text, ws + len);
                                    self.state = State::Colon { depth, key };
                                }
                                Ok(None) => return self.wait_or_rest(text, done),
                                Err(_) => self.state = State::Rest,
                            }
                        }
                        _ => self.state = State::Rest,
                    }
                }
                State::Colon { depth, key } => match self.after_whitespace(text) {
                    (ws, Some(b':')) => {
                        self.keep(text, ws + 1);
                        self.state = State::Value { depth, key };
                    }
                    (_, None) => return self.wait_or_rest(text, done),
                    _ => self.state = State::Rest,
                },
                State::Value { depth, key } => {
                    let (ws, next) = self.after_whitespace(text);
                    match (depth, key, next) {
                        (_, _, None) => return self.wait_or_rest(text, done),
                        (1, Key::Data, Some(b'{')) => {
                            self.keep(text, ws + 1);
                            self.state = State::Members {
                                depth: 2,
                                after_value: false,
                            };
                        }
                        (2, Key::Rows, Some(open @ (b'[' | b'{'))) => {
                            self.keep(text, ws + 1);
                            self.state = State::Rows {
                                object: open == b'{',
                                step: Step::First,
                            };
                        }
                        _ => match Self::value::<IgnoredAny>(&text[self.pos + ws..], done) {
                            Ok(Some((_, len))) => {
                                self.keep(text, ws + len);
                                self.state = State::Members {
                                    depth,
                                    after_value: true,
                                };
                            }
                            Ok(None) => return self.wait_or_rest(text, done),
                            Err(_) => self.state = State::Rest,
                        },
                    }
                }
                State::Rows { object, step } => {
                    if !self.rows_step(text, object, step, done, sink)? {
                        return Ok(());
                    }
                }
                State::Rest => {
                    self.keep(text, text.len() - self.pos);
                    return Ok(());
                }
            }
        }
    }

    /// Waits for more of the body; at its end, leaves the rest to the final decode, which says
    /// what is wrong.
    fn wait_or_rest(&mut self, text: &str, done: bool) -> Result<(), PollError> {
        if done {
            self.state = State::Rest;
            self.keep(text, text.len() - self.pos);
        }
        Ok(())
    }

    /// One step in `rows`; false when it needs more of the body.
    fn rows_step(
        &mut self,
        text: &str,
        object: bool,
        step: Step,
        done: bool,
        sink: &mut RowSink<'_>,
    ) -> Result<bool, PollError> {
        let (ws, next) = self.after_whitespace(text);
        let (close, list) = if object {
            (b'}', "an object")
        } else {
            (b']', "a list")
        };
        let Some(next) = next else {
            if !done {
                return Ok(false);
            }
            return Err(self.cut_short(
                ws,
                match step {
                    Step::First | Step::AfterRow => list,
                    Step::Colon => "an object",
                    Step::Row | Step::Key => "a value",
                },
            ));
        };
        let rows = |step| State::Rows { object, step };
        match (step, next) {
            (Step::First | Step::AfterRow, b) if b == close => {
                self.keep(text, ws + 1);
                self.state = State::Members {
                    depth: 2,
                    after_value: true,
                };
            }
            (Step::AfterRow, b',') => {
                self.skip(text, ws + 1);
                self.state = rows(if object { Step::Key } else { Step::Row });
            }
            (Step::AfterRow, _) => {
                let expected = if object { "`,` or `}`" } else { "`,` or `]`" };
                return Err(self.expected(ws, expected));
            }
            (Step::First | Step::Key, b'"') if object => {
                self.skip(text, ws);
                match Self::value::<IgnoredAny>(&text[self.pos..], done) {
                    Ok(Some((_, len))) => {
                        self.skip(text, len);
                        self.state = rows(Step::Colon);
                    }
                    Ok(None) => return Ok(false),
                    Err(e) => return Err(self.error_here(e)),
                }
            }
            (Step::First | Step::Key, _) if object => return Err(self.expected(ws, "a key")),
            (Step::Colon, b':') => {
                self.skip(text, ws + 1);
                self.state = rows(Step::Row);
            }
            (Step::Colon, _) => return Err(self.expected(ws, "`:`")),
            (Step::First | Step::Row | Step::Key, _) => {
                self.skip(text, ws);
                let rest = &text[self.pos..];
                let mut de = serde_json::Deserializer::from_str(rest);
                let len = match OneRow::new(sink.already_counted).deserialize(&mut de) {
                    Ok(entry) => {
                        // Where the row ended; a number could go on in the next chunk.
                        let len = de.into_iter::<IgnoredAny>().byte_offset();
                        if len == rest.len() && !done {
                            return Ok(false);
                        }
                        match entry {
                            Some(row) => (sink.row)(row),
                            None => self.already_counted += 1,
                        }
                        len
                    }
                    Err(e) if e.is_eof() && !done => return Ok(false),
                    Err(e) => return Err(self.error_here(e)),
                };
                self.skip(text, len);
                self.state = rows(Step::AfterRow);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::decode;

    /// Decodes `body` fed in chunks of `size` bytes: the rows (as `Debug` text), and the answer.
    fn chunked(body: &[u8], size: usize) -> Result<(Vec<String>, Answer<'static>), PollError> {
        let mut rows = Vec::new();
        let mut each = |r: RowEntry<'_>| rows.push(format!("{r:?}"));
        let odd = |id: &str| id.ends_with('3');
        let mut sink = RowSink {
            already_counted: &odd,
            row: &mut each,
        };
        let mut d = StreamDecoder::new();
        for chunk in body.chunks(size.max(1)) {
            d.feed(chunk, &mut sink)?;
        }
        let answer = d.finish(&mut sink)?;
        Ok((rows, answer))
    }

    fn whole(body: &[u8]) -> Result<(Vec<String>, Answer<'static>), PollError> {
        let (text, repaired) = super::super::repair_utf8(body.to_vec());
        let a = decode_text(&text, &|id| id.ends_with('3'))?;
        let rows = a.rows.iter().map(|r| format!("{r:?}")).collect();
        let answer = Answer {
            rows: Vec::new(),
            already_counted: a.already_counted,
            summary: a.summary.into_iter().map(SummaryRow::into_owned).collect(),
            had_warnings: a.had_warnings || repaired,
        };
        Ok((rows, answer))
    }

    const BODIES: &[&str] = &[
        r#"{"result":"success","data":{"rows":[{"uniq1":"1.1","queue":"Q\/1","queue_time":"12"},
            {"uniq1":"1.3","queue":"B"} , 7, {"uniq1":"1.4","call_duration":3.5e1}],
            "headers":[{"title":"x"}],"summary_rows":[{"campaign_name":"C","total_leads":"9"}]}}"#,
        "\u{feff}{\"data\":{\"summary_rows\":[],\"rows\":{\"0\":{\"uniq1\":\"a\"},\"5\":{\"uniq1\":\"3\"}}},\"result\":\"success\"}  ",
        "<br />\n<b>Warning</b>:  Undefined index: x in <b>/var/www/goAPI.php</b> on line <b>42</b><br />\n{\"result\":\"success\",\"data\":{\"rows\":[{\"uniq1\":\"1.5\"}]}}",
        r#"{"result":"success","data":{"rows":[]}}"#,
        r#"{"result":"success","data":{"rows":null,"x":1}}"#,
        r#"{"result":"success","data":[]}"#,
        r#"{"result":"error","message":"Invalid Username/Password"}"#,
        r#"{"result":"No records retrieved from: 2025-05-01 - 2025-05-02"}"#,
        "result=error;message=This API function only accepts XML or JSON value on responsetype;",
        "<html><head><title>502 Bad Gateway</title></head></html>",
        "",
        r#"{"result":"success","data":{"rows":[{"uniq1":"1.1","que"#,
        r#"{"result":"success","data":{"rows":[{"uniq1":"1.1"},"#,
        r#"{"result":"success","data":{"rows":[{"uniq1":"1.1"} {"uniq1":"1.2"}]}}"#,
        r#"{"result":"success","data":{"rows":[{"uniq1":"1.1"}]}} trailing"#,
        "{\"result\":\"success\",\"data\":{\"rows\":[{\"uniq1\":\"1.1\",\"agent\":\"Jos\u{e9}\"}]}}",
        // Found by fuzzing: the only PHP notice marker is inside a row, and the text before the
        // JSON reads like a plain-text error.
        "result= x {\"result\":\"success\",\"data\":{\"rows\":[{\"q\":\"Notice: \"}],\"s\" x}}",
        // An error after the rows is placed where it is in the body, not in the skeleton.
        "<b>Notice</b>: x\n{\"result\":\"success\",\"data\":{\"rows\":[{\"uniq1\":\"1\"},\n{\"uniq1\":\"2\"}],\n \"summary_rows\":[1,]}}",
    ];

    #[test]
    fn any_chunking_decodes_as_the_whole_body_does() {
        for body in BODIES {
            let expected = whole(body.as_bytes());
            for size in [1, 2, 3, 7, 64, 1 << 20] {
                let got = chunked(body.as_bytes(), size);
                match (&expected, &got) {
                    (Ok(e), Ok(g)) => assert_eq!(e, g, "{body:?} in chunks of {size}"),
                    (Err(e), Err(g)) => assert_eq!(
                        (e.reason, &e.message),
                        (g.reason, &g.message),
                        "{body:?} in chunks of {size}"
                    ),
                    _ => panic!("{body:?} in chunks of {size}: {expected:?} vs {got:?}"),
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_cut_by_chunks_is_repaired_once() {
        let mut body =
            br#"{"result":"success","data":{"rows":[{"uniq1":"1.1","queue":"Caf"#.to_vec();
        body.extend_from_slice("é".as_bytes());
        body.extend_from_slice(b" \xff\xfe \xe2\x82");
        body.extend_from_slice(br#""}]}}"#);
        let expected = whole(&body).expect("decodes");
        assert!(expected.1.had_warnings);
        for size in [1, 2, 3, 5, 1000] {
            assert_eq!(chunked(&body, size).expect("decodes"), expected);
        }
        assert!(
            expected.0[0].contains("Some(\"Café \u{fffd}\u{fffd} \u{fffd}\")"),
            "{}",
            expected.0[0]
        );
    }

    #[test]
    fn a_broken_row_is_placed_in_the_whole_body() {
        let body = br#"{"result":"success","data":{"rows":[{"uniq1":"1.1"},
{"uniq1":"1.2","queue":x}]}}"#;
        let e = chunked(body, 5).expect_err("invalid");
        assert_eq!(
            e.message,
            "invalid JSON: expected value at line 2 column 24"
        );
        assert_eq!(decode(body).expect_err("invalid").message, e.message);
        let cut = br#"{"data":{"rows":[{"uniq1":"1.1"}"#;
        let e = chunked(cut, 4).expect_err("cut");
        assert_eq!(
            e.message,
            "body cut short: EOF while parsing a list at line 1 column 32"
        );
        assert_eq!(decode(cut).expect_err("cut").message, e.message);
    }
}
