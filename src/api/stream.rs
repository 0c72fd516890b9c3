//! Decodes an answer as its body arrives, so that memory does not grow with the window: the one
//! grammar of an answer, for a body fed in chunks or whole (a whole body is one chunk).
//!
//! A body is `{"result":"success","data":{"rows":[...],"headers":[...],"summary_rows":[...]}}`,
//! possibly after PHP notices, and only `rows` is large: tens of MB on a busy day, re-sent by
//! every poll. The decoder walks the envelope itself: it steps over the whitespace and
//! punctuation between members (`{ } [ ] , :`), recognises each member by its key (`result`,
//! `message`, `code`, `data`, and in `data`, `rows` and `summary_rows`), and has serde_json
//! parse each member's value, and each row, with the types of [`super::decode`]. Each row is
//! handed over as soon as its closing brace has arrived, and its bytes are then forgotten; the
//! buffer holds at most the largest member or row not yet complete (and a batch of rows, see
//! `BATCH`). At the end, the envelope's verdict (success, "No records retrieved", an error
//! envelope) is taken from the members read.
//!
//! Errors are serde_json's, worded as it words them and placed where a parse of the whole JSON
//! would place them (lines from 1, counted from the JSON's first byte, after PHP notices): the
//! decoder tracks its own line and column, and adds the line and column serde_json reports
//! within a value. A body that is not JSON is classified by [`super::decode`] from its first
//! bytes and its length.
//!
//! Rows are handed over before the end of the body is known, so the caller must be able to take
//! them back: the poller counts them into a working copy that it throws away if the answer turns
//! out to be an error or breaks off.

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::de::{DeserializeSeed, IgnoredAny};
use serde_json::error::Category;

use super::decode::{
    classify_text, json_error, php_notice_end, Answer, DataField, DataKind, Envelope, Key, LegRef,
    NoRows, OneRow, Position, RowEntry, Summary, SummaryRow, Text, Verdict, NOTICE_WINDOW,
    TEXT_HEAD,
};
use super::error::PollError;
use crate::vocab::Reason;

/// Rows are parsed once at least this much is buffered (or the body ended), so that a row cut
/// by a chunk boundary is rarely parsed twice.
const BATCH: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the JSON: whitespace, a byte-order mark, PHP notices.
    Start,
    /// In the top object or in `data`: at a key, a comma or the closing brace.
    Members { level: Level, step: Step },
    /// After a member's key, at its colon.
    Colon { level: Level, member: Member },
    /// At a member's value.
    Value { level: Level, member: Member },
    /// In `rows` (a list, or PHP's associative array: an object of rows): at a row (or its
    /// key), a comma or the closing bracket.
    Rows { shape: Shape, step: Step },
    /// In an object of rows, after a row's key, at its colon.
    RowColon,
    /// In an object of rows, at a row.
    RowValue,
    /// After the JSON: anything but whitespace is a warning.
    After,
    /// The body is not JSON: its first bytes and its length are kept to say what it is.
    Text,
}

/// The two objects of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Data,
}

/// The members of the envelope the decoder reads; the others are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Result,
    Message,
    Code,
    Data,
    Rows,
    Summary,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Object,
    List,
}

/// Where in an object or a list, for what may come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Just after the opening bracket.
    Open,
    /// After a comma: an item (in an object, a key) must follow.
    AfterComma,
    /// After an item.
    AfterValue,
}

/// What comes next in an object or a list.
enum Next {
    /// An item (in an object, its key) starts at the position.
    Item,
    /// The closing bracket was passed.
    End,
    /// The body has not gone far enough to say.
    More,
}

/// What the decoder does with each row, as it completes.
pub struct RowSink<'s> {
    /// Whether a leg (`uniq1`, `call_date` and `queue`) was counted before: such rows are only
    /// counted in [`Answer::already_counted`], from the last of those three fields on without
    /// reading their other fields.
    pub already_counted: &'s dyn Fn(&LegRef<'_>) -> bool,
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
    /// Invalid UTF-8 was replaced by U+FFFD.
    repaired: bool,
    /// The error the body was found to have; the decoder goes no further.
    failed: Option<PollError>,
    walk: Walk,
}

/// The decoding proper, over the buffered text.
struct Walk {
    /// Where decoding is in the buffer.
    pos: usize,
    /// serde_json's line and column of `pos`, counted from the JSON's start.
    at: Position,
    state: State,
    envelope: Envelope,
    /// The summary of the last `data` object.
    summary: Vec<SummaryRow<'static>>,
    already_counted: u64,
    /// PHP notices (or other text) came before the JSON.
    notices: bool,
    /// Text came after the JSON.
    trailing: bool,
    /// The first bytes of a body that is not JSON, its length, and whether it is all whitespace.
    text_head: Vec<u8>,
    text_len: usize,
    text_blank: bool,
}

/// Sizes and state only: the buffer holds callers' phone numbers and names.
impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("buffered", &self.buf.len())
            .field("state", &self.walk.state)
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
            failed: None,
            walk: Walk::new(),
        }
    }

    /// Takes the next chunk of the body; rows completed by it go to `sink`. After an error,
    /// every call returns that error.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut RowSink<'_>) -> Result<(), PollError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.push(chunk);
        if self.buf.len() < self.wait_for {
            return Ok(());
        }
        self.advance(false, sink)
    }

    /// The body has ended: the last rows go to `sink`, and the answer (without rows) is returned.
    pub fn finish(mut self, sink: &mut RowSink<'_>) -> Result<Answer<'static>, PollError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.carry.is_empty() {
            // The body ended inside a character.
            self.buf.push(char::REPLACEMENT_CHARACTER);
            self.repaired = true;
        }
        self.advance(true, sink)?;
        self.walk.answer(self.repaired)
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
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }
}

impl Walk {
    fn new() -> Self {
        Walk {
            pos: 0,
            at: Position { line: 1, column: 0 },
            state: State::Start,
            envelope: Envelope::default(),
            summary: Vec::new(),
            already_counted: 0,
            notices: false,
            trailing: false,
            text_head: Vec::new(),
            text_len: 0,
            text_blank: true,
        }
    }

    /// Goes as far as `text` allows; with `done`, `text` is the end of the body.
    fn steps(&mut self, text: &str, done: bool, sink: &mut RowSink<'_>) -> Result<(), PollError> {
        while match self.state {
            State::Start => self.start(text, done)?,
            State::Members { level, step } => self.members(text, done, level, step)?,
            State::Colon { level, member } => {
                let passed = self.colon(text, done)?;
                if passed {
                    self.state = State::Value { level, member };
                }
                passed
            }
            State::Value { level, member } => self.value(text, done, level, member)?,
            State::Rows { shape, step } => self.rows(text, done, shape, step, sink)?,
            State::RowColon => {
                let passed = self.colon(text, done)?;
                if passed {
                    self.state = State::RowValue;
                }
                passed
            }
            State::RowValue => {
                self.value_start(text, done)?.is_some() && self.row(text, done, sink)?
            }
            State::After => self.after(text),
            State::Text => self.text(text),
        } {}
        Ok(())
    }

    /// The answer, once the whole body has been walked.
    fn answer(self, repaired: bool) -> Result<Answer<'static>, PollError> {
        match self.state {
            State::After => {}
            State::Text if self.text_blank => {
                return Err(PollError::new(Reason::Decode, "empty body"))
            }
            State::Text => return Err(classify_text(&self.text_head, self.text_len)),
            // Cannot happen: at the end of the body, every other state is an error.
            _ => return Err(PollError::new(Reason::Decode, "body cut short")),
        }
        let summary = match self.envelope.verdict()? {
            Verdict::Success => self.summary,
            Verdict::NoRecords => Vec::new(),
        };
        Ok(Answer {
            already_counted: self.already_counted,
            summary,
            had_warnings: self.notices || self.trailing || repaired,
        })
    }

    /// Before the JSON: finds where it starts (after whitespace, a byte-order mark, PHP
    /// notices), or that the body is not JSON.
    fn start(&mut self, text: &str, done: bool) -> Result<bool, PollError> {
        let avail = text.as_bytes().get(self.pos..).unwrap_or_default();
        let trimmed = avail.trim_ascii_start();
        // Leading whitespace says nothing: it goes at once.
        self.pos += avail.len() - trimmed.len();
        let json = trimmed.strip_prefix(BOM).unwrap_or(trimmed);
        let bom = trimmed.len() - json.len();
        if json.first() == Some(&b'{') {
            self.begin_json(text, bom);
            return Ok(true);
        }
        if !done && json.len() < NOTICE_WINDOW {
            return Ok(false);
        }
        match php_notice_end(json) {
            Some(at) => {
                self.notices = true;
                self.begin_json(text, bom + at);
            }
            None => {
                self.pos += bom;
                self.state = State::Text;
            }
        }
        Ok(true)
    }

    /// The JSON starts `offset` bytes on, at a `{`: positions are counted from there.
    fn begin_json(&mut self, text: &str, offset: usize) {
        self.pos += offset;
        self.at = Position { line: 1, column: 0 };
        self.consume(text, 1);
        self.state = State::Members {
            level: Level::Top,
            step: Step::Open,
        };
    }

    /// In the top object or in `data`: a key, or the end of the object.
    fn members(
        &mut self,
        text: &str,
        done: bool,
        level: Level,
        mut step: Step,
    ) -> Result<bool, PollError> {
        let next = self.next_item(text, done, Shape::Object, &mut step)?;
        self.state = State::Members { level, step };
        match next {
            Next::More => Ok(false),
            Next::End => {
                self.state = match level {
                    Level::Top => State::After,
                    Level::Data => State::Members {
                        level: Level::Top,
                        step: Step::AfterValue,
                    },
                };
                Ok(true)
            }
            Next::Item => {
                let Some((key, len)) = self.parse(text, done, PhantomData::<Key>)? else {
                    return Ok(false);
                };
                let member = match (level, key.0.as_ref()) {
                    (Level::Top, "result") => Member::Result,
                    (Level::Top, "message") => Member::Message,
                    (Level::Top, "code") => Member::Code,
                    (Level::Top, "data") => Member::Data,
                    (Level::Data, "rows") => Member::Rows,
                    (Level::Data, "summary_rows") => Member::Summary,
                    _ => Member::Other,
                };
                self.consume(text, len);
                self.state = State::Colon { level, member };
                Ok(true)
            }
        }
    }

    /// A member's value: `data` and `rows` are stepped into, any other value is parsed whole.
    fn value(
        &mut self,
        text: &str,
        done: bool,
        level: Level,
        member: Member,
    ) -> Result<bool, PollError> {
        let Some(first) = self.value_start(text, done)? else {
            return Ok(false);
        };
        let next = match (member, first) {
            (Member::Data, b'{') => {
                // Repeated (PHP never does): the rows of each count, the last summary stands.
                self.envelope.data = DataField::Object;
                self.summary.clear();
                State::Members {
                    level: Level::Data,
                    step: Step::Open,
                }
            }
            (Member::Rows, b'[') => State::Rows {
                shape: Shape::List,
                step: Step::Open,
            },
            (Member::Rows, b'{') => State::Rows {
                shape: Shape::Object,
                step: Step::Open,
            },
            _ => {
                if !self.member_value(text, done, member)? {
                    return Ok(false);
                }
                self.state = State::Members {
                    level,
                    step: Step::AfterValue,
                };
                return Ok(true);
            }
        };
        self.consume(text, 1);
        self.state = next;
        Ok(true)
    }

    /// A member's value, parsed whole; false when it has not all arrived.
    fn member_value(&mut self, text: &str, done: bool, member: Member) -> Result<bool, PollError> {
        let len = match member {
            Member::Result | Member::Message | Member::Code => {
                let Some((value, len)) = self.parse(text, done, PhantomData::<Text>)? else {
                    return Ok(false);
                };
                let value = value.0.map(Cow::into_owned);
                match member {
                    Member::Result => self.envelope.result = value,
                    Member::Message => self.envelope.message = value,
                    _ => self.envelope.code = value,
                }
                len
            }
            Member::Data => {
                let Some((kind, len)) = self.parse(text, done, PhantomData::<DataKind>)? else {
                    return Ok(false);
                };
                self.envelope.data = DataField::Other(kind.0);
                len
            }
            Member::Rows => match self.parse(text, done, PhantomData::<NoRows>)? {
                Some((_, len)) => len,
                None => return Ok(false),
            },
            Member::Summary => {
                let Some((summary, len)) = self.parse(text, done, PhantomData::<Summary>)? else {
                    return Ok(false);
                };
                self.summary = summary.0.into_iter().map(SummaryRow::into_owned).collect();
                len
            }
            Member::Other => match self.parse(text, done, PhantomData::<IgnoredAny>)? {
                Some((_, len)) => len,
                None => return Ok(false),
            },
        };
        self.consume(text, len);
        Ok(true)
    }

    /// In `rows`: a row (in an object, its key), or the end of `rows`.
    fn rows(
        &mut self,
        text: &str,
        done: bool,
        shape: Shape,
        mut step: Step,
        sink: &mut RowSink<'_>,
    ) -> Result<bool, PollError> {
        let next = self.next_item(text, done, shape, &mut step)?;
        self.state = State::Rows { shape, step };
        match (next, shape) {
            (Next::More, _) => Ok(false),
            (Next::End, _) => {
                self.state = State::Members {
                    level: Level::Data,
                    step: Step::AfterValue,
                };
                Ok(true)
            }
            (Next::Item, Shape::List) => self.row(text, done, sink),
            (Next::Item, Shape::Object) => {
                // PHP's keys ("0", "5"...) say nothing: a string is stepped over unread (so
                // that an escape serde_json would refuse to decode, such as a lone surrogate,
                // does not fail the poll); anything else fails as a key.
                let rest = text.get(self.pos..).unwrap_or_default();
                let parsed = if rest.trim_start().starts_with('"') {
                    self.parse(text, done, PhantomData::<IgnoredAny>)?
                        .map(|(_, len)| len)
                } else {
                    self.parse(text, done, PhantomData::<Key>)?
                        .map(|(_, len)| len)
                };
                let Some(len) = parsed else {
                    return Ok(false);
                };
                self.consume(text, len);
                self.state = State::RowColon;
                Ok(true)
            }
        }
    }

    /// A row, handed to the sink (or counted, if its call was counted before).
    fn row(&mut self, text: &str, done: bool, sink: &mut RowSink<'_>) -> Result<bool, PollError> {
        let Some((entry, len)) = self.parse(text, done, OneRow::new(sink.already_counted))? else {
            return Ok(false);
        };
        match entry {
            Some(row) => (sink.row)(row),
            None => self.already_counted += 1,
        }
        self.consume(text, len);
        let shape = match self.state {
            State::RowValue => Shape::Object,
            _ => Shape::List,
        };
        self.state = State::Rows {
            shape,
            step: Step::AfterValue,
        };
        Ok(true)
    }

    /// After the JSON: notes whether anything but whitespace follows, and forgets it.
    fn after(&mut self, text: &str) -> bool {
        let rest = text.as_bytes().get(self.pos..).unwrap_or_default();
        self.trailing |= rest.iter().any(|b| !is_whitespace(*b));
        self.pos = text.len();
        false
    }

    /// A body that is not JSON: keeps its first bytes, counts the others.
    fn text(&mut self, text: &str) -> bool {
        let rest = text.as_bytes().get(self.pos..).unwrap_or_default();
        let room = TEXT_HEAD.saturating_sub(self.text_head.len());
        self.text_head
            .extend_from_slice(&rest[..rest.len().min(room)]);
        self.text_len += rest.len();
        self.text_blank &= rest.iter().all(u8::is_ascii_whitespace);
        self.pos = text.len();
        false
    }

    /// What comes next in an object or a list at `step`, with serde_json's errors for what
    /// may not.
    fn next_item(
        &mut self,
        text: &str,
        done: bool,
        shape: Shape,
        step: &mut Step,
    ) -> Result<Next, PollError> {
        let (close, expected) = match shape {
            Shape::Object => (b'}', "expected `,` or `}`"),
            Shape::List => (b']', "expected `,` or `]`"),
        };
        loop {
            let Some(next) = self.skip_whitespace(text) else {
                if !done {
                    return Ok(Next::More);
                }
                return Err(self.eof(match (*step, shape) {
                    (Step::AfterComma, _) => "EOF while parsing a value",
                    (_, Shape::Object) => "EOF while parsing an object",
                    (_, Shape::List) => "EOF while parsing a list",
                }));
            };
            return match (*step, next) {
                (Step::AfterComma, b) if b == close => Err(self.unexpected("trailing comma")),
                (_, b) if b == close => {
                    self.consume(text, 1);
                    Ok(Next::End)
                }
                (Step::AfterValue, b',') => {
                    self.consume(text, 1);
                    *step = Step::AfterComma;
                    continue;
                }
                (Step::AfterValue, _) => Err(self.unexpected(expected)),
                (_, b'"') => Ok(Next::Item),
                _ if shape == Shape::List => Ok(Next::Item),
                _ => Err(self.unexpected("key must be a string")),
            };
        }
    }

    /// A colon after a key; false when it has not arrived.
    fn colon(&mut self, text: &str, done: bool) -> Result<bool, PollError> {
        match self.skip_whitespace(text) {
            Some(b':') => {
                self.consume(text, 1);
                Ok(true)
            }
            Some(_) => Err(self.unexpected("expected `:`")),
            None if done => Err(self.eof("EOF while parsing an object")),
            None => Ok(false),
        }
    }

    /// The first byte of a value; `None` when it has not arrived.
    fn value_start(&mut self, text: &str, done: bool) -> Result<Option<u8>, PollError> {
        match self.skip_whitespace(text) {
            Some(b) => Ok(Some(b)),
            None if done => Err(self.eof("EOF while parsing a value")),
            None => Ok(None),
        }
    }

    /// The JSON value at `pos`, parsed by serde_json, and its length; `None` when it has not
    /// all arrived.
    fn parse<'t, S: DeserializeSeed<'t>>(
        &self,
        text: &'t str,
        done: bool,
        seed: S,
    ) -> Result<Option<(S::Value, usize)>, PollError> {
        let rest = text.get(self.pos..).unwrap_or_default();
        let mut de = serde_json::Deserializer::from_str(rest);
        match seed.deserialize(&mut de) {
            Ok(value) => {
                let len = de.into_iter::<IgnoredAny>().byte_offset();
                // A number could go on in the next chunk.
                if len == rest.len()
                    && !done
                    && rest.starts_with(|c: char| c == '-' || c.is_ascii_digit())
                {
                    return Ok(None);
                }
                Ok(Some((value, len)))
            }
            Err(e) if e.is_eof() && !done => Ok(None),
            Err(e) => Err(self.serde_error(&e)),
        }
    }

    /// An error of serde_json in the value at `pos`, placed in the whole JSON: serde_json
    /// counts from the value's start.
    fn serde_error(&self, e: &serde_json::Error) -> PollError {
        let at = if e.line() <= 1 {
            Position {
                line: self.at.line,
                column: self.at.column + e.column(),
            }
        } else {
            Position {
                line: self.at.line + e.line() - 1,
                column: e.column(),
            }
        };
        // serde_json has no accessor for its description alone: its text is the description
        // followed by the position it reports, which the one of the whole JSON replaces.
        let full = e.to_string();
        let own = format!(" at line {} column {}", e.line(), e.column());
        json_error(e.classify(), full.strip_suffix(&own).unwrap_or(&full), at)
    }

    /// The body ends where something else must come.
    fn eof(&self, what: &str) -> PollError {
        json_error(Category::Eof, what, self.at)
    }

    /// The byte at `pos` may not come here.
    fn unexpected(&self, what: &str) -> PollError {
        let at = Position {
            line: self.at.line,
            column: self.at.column + 1,
        };
        json_error(Category::Syntax, what, at)
    }

    /// Steps over whitespace (as JSON has it); the byte after it, if it has arrived.
    fn skip_whitespace(&mut self, text: &str) -> Option<u8> {
        let bytes = text.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b'\n' => {
                    self.at.line += 1;
                    self.at.column = 0;
                }
                b' ' | b'\t' | b'\r' => self.at.column += 1,
                _ => return Some(b),
            }
            self.pos += 1;
        }
        None
    }

    /// Moves on by `n` bytes of `text`, keeping the line and column up to date.
    fn consume(&mut self, text: &str, n: usize) {
        let end = (self.pos + n).min(text.len());
        let seg = &text.as_bytes()[self.pos.min(end)..end];
        match memchr::memrchr(b'\n', seg) {
            Some(last) => {
                self.at.line += memchr::memchr_iter(b'\n', seg).count();
                self.at.column = seg.len() - last - 1;
            }
            None => self.at.column += seg.len(),
        }
        self.pos = end;
    }
}

/// Whitespace between JSON tokens (as serde_json has it).
fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `body` fed in chunks of `size` bytes, leaving out calls whose id ends in 3: the
    /// rows (as `Debug` text), and the answer.
    fn chunked(body: &[u8], size: usize) -> Result<(Vec<String>, Answer<'static>), PollError> {
        let mut rows = Vec::new();
        let mut each = |r: RowEntry<'_>| rows.push(format!("{r:?}"));
        let odd = |leg: &LegRef<'_>| leg.uniq1.ends_with('3');
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

    /// The body as one chunk.
    fn whole(body: &[u8]) -> Result<(Vec<String>, Answer<'static>), PollError> {
        chunked(body, body.len())
    }

    /// Decodes `body` whole and in chunks of several sizes, which must all agree.
    fn every_way(body: &[u8]) -> Result<(Vec<String>, Answer<'static>), PollError> {
        let expected = whole(body);
        for size in [1, 2, 3, 7, 64, 4096] {
            let got = chunked(body, size);
            match (&expected, &got) {
                (Ok(e), Ok(g)) => assert_eq!(e, g, "{body:?} in chunks of {size}"),
                (Err(e), Err(g)) => assert_eq!(e, g, "{body:?} in chunks of {size}"),
                _ => panic!("{body:?} in chunks of {size}: {expected:?} vs {got:?}"),
            }
        }
        expected
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
        "<b>Notice</b>: x\n{\"result\":\"success\",\"data\":{\"rows\":[{\"uniq1\":\"1\"},\n{\"uniq1\":\"2\"}],\n \"summary_rows\":[1,]}}",
        r#"{"result":"success","data":{"rows":12"#,
        r#"{"result":"success","data":{"rows":[1,2,-3.5e1]}}"#,
    ];

    #[test]
    fn any_chunking_decodes_as_the_whole_body_does() {
        for body in BODIES {
            every_way(body.as_bytes()).ok();
        }
    }

    #[test]
    fn invalid_utf8_cut_by_chunks_is_repaired_once() {
        let mut body =
            br#"{"result":"success","data":{"rows":[{"uniq1":"1.1","queue":"Caf"#.to_vec();
        body.extend_from_slice("é".as_bytes());
        body.extend_from_slice(b" \xff\xfe \xe2\x82");
        body.extend_from_slice(br#""}]}}"#);
        let (rows, answer) = every_way(&body).expect("decodes");
        assert!(answer.had_warnings);
        assert!(
            rows[0].contains("Some(\"Café \u{fffd}\u{fffd} \u{fffd}\")"),
            "{}",
            rows[0]
        );
    }

    #[test]
    fn a_broken_row_is_placed_in_the_whole_body() {
        let body = br#"{"result":"success","data":{"rows":[{"uniq1":"1.1"},
{"uniq1":"1.2","queue":x}]}}"#;
        assert_eq!(
            every_way(body).expect_err("invalid").message,
            "invalid JSON: expected value at line 2 column 24"
        );
        let cut = br#"{"data":{"rows":[{"uniq1":"1.1"}"#;
        assert_eq!(
            every_way(cut).expect_err("cut").message,
            "body cut short: EOF while parsing a list at line 1 column 32"
        );
    }

    #[test]
    fn an_error_deep_in_a_chunked_body_is_placed_as_in_the_whole_body() {
        // 5000 rows, one per line, then a row whose `queue` has no value.
        let mut body =
            String::from("<b>Notice</b>: x\n{\"result\":\"success\",\n\"data\":{\"rows\":[\n");
        for i in 0..5000 {
            body.push_str(&format!(
                "{{\"uniq1\":\"1716984000.{i}\",\"queue\":\"Q\\/{i}\",\"queue_time\":\"{i}\"}},\n"
            ));
        }
        body.push_str("{\"uniq1\":\"9.9\",\n  \"queue\": }]}}");
        let e = every_way(body.as_bytes()).expect_err("invalid");
        // Line 1 is the JSON's `{` (the notice before it is not counted); rows are on lines 3
        // to 5002, the broken row on 5003 and 5004, where 11 bytes come before the `}`.
        assert_eq!(
            (e.reason, e.message.as_str()),
            (
                Reason::Decode,
                "invalid JSON: expected value at line 5004 column 12"
            )
        );
        // The rows before it were handed over (but for those of calls counted before).
        let mut n = 0;
        let mut each = |_: RowEntry<'_>| n += 1;
        let mut sink = RowSink {
            already_counted: &|leg: &LegRef<'_>| leg.uniq1.ends_with('3'),
            row: &mut each,
        };
        let mut d = StreamDecoder::new();
        for chunk in body.as_bytes().chunks(1000) {
            if d.feed(chunk, &mut sink).is_err() {
                break;
            }
        }
        d.finish(&mut sink).expect_err("invalid");
        assert_eq!(n, 4500);
    }

    #[test]
    fn an_error_envelope_after_rows_is_the_answer() {
        let body = br#"{"data":{"rows":[{"uniq1":"1.1"},{"uniq1":"1.2"}],"summary_rows":[]},"result":"error","message":"Invalid Username/Password"}"#;
        let mut rows = Vec::new();
        let mut each = |r: RowEntry<'_>| rows.push(format!("{r:?}"));
        let mut sink = RowSink {
            already_counted: &|_| false,
            row: &mut each,
        };
        let mut d = StreamDecoder::new();
        d.feed(body, &mut sink).expect("rows first");
        let e = d.finish(&mut sink).expect_err("an error envelope");
        assert_eq!(
            rows.len(),
            2,
            "the rows were handed over before the verdict"
        );
        assert_eq!(
            (e.reason, e.message.as_str()),
            (Reason::Auth, r#"API said "Invalid Username/Password""#)
        );
        let e = every_way(br#"{"data":{"rows":[{"uniq1":"1.1"}]},"code":"10004","result":"Error: No such resource or access is restricted "}"#).expect_err("error");
        assert_eq!(
            (e.reason, e.message.as_str()),
            (
                Reason::Api,
                r#"API said "Error: No such resource or access is restricted" (code 10004)"#
            )
        );
    }

    #[test]
    fn php_notices_then_json() {
        let notice = "<br />\n<b>Warning</b>:  Undefined index: tenant in <b>/var/www/html/goAPIv2/goReports/goAPI.php</b> on line <b>42</b><br />\n";
        let body = format!(
            "{notice}{}",
            r#"{"result":"success","data":{"rows":[{"uniq1":"1.1","queue":"Q"},{"uniq1":"1.3"}],"summary_rows":[{"campaign_name":"C","dialable":"5"}]}}"#
        );
        let (rows, answer) = every_way(body.as_bytes()).expect("decodes");
        assert_eq!(rows.len(), 1);
        assert!(rows[0].contains(r#"queue: Some("Q")"#), "{}", rows[0]);
        assert_eq!(answer.already_counted, 1);
        assert!(answer.had_warnings);
        assert_eq!(answer.summary.len(), 1);
        assert_eq!(answer.summary[0].values[1], crate::api::Num::Value(5.0));
        // Positions count from the JSON's start, not the body's.
        let broken = format!(
            "{notice}{}",
            r#"{"result":"success","data":{"rows":[{"uniq1":}]}}"#
        );
        assert_eq!(
            every_way(broken.as_bytes()).expect_err("invalid").message,
            "invalid JSON: expected value at line 1 column 46"
        );
    }

    #[test]
    fn php_associative_array_of_rows() {
        let body = br#"{"result":"success","data":{"rows":{"0":{"uniq1":"a"},"5":{"uniq1":"1.3"},"7":{"uniq1":"b","queue":"Q"}}}}"#;
        let (rows, answer) = every_way(body).expect("decodes");
        assert_eq!(rows.len(), 2);
        assert!(rows[0].contains(r#"uniq1: Some("a")"#), "{}", rows[0]);
        assert!(rows[1].contains(r#"queue: Some("Q")"#), "{}", rows[1]);
        assert_eq!(answer.already_counted, 1);
        assert!(!answer.had_warnings);
        let e = every_way(br#"{"result":"success","data":{"rows":{"0":{"uniq1":"a"},1:{}}}}"#)
            .expect_err("a key that is not a string");
        assert_eq!(
            e.message,
            "invalid JSON: key must be a string at line 1 column 55"
        );
        let e = every_way(br#"{"result":"success","data":{"rows":{"0" {"uniq1":"a"}}}}"#)
            .expect_err("no colon");
        assert_eq!(e.message, "invalid JSON: expected `:` at line 1 column 41");
        // A key is stepped over unread: an escape serde_json would not decode is no failure.
        let (rows, _) =
            every_way(br#"{"result":"success","data":{"rows":{"\udc00":{"uniq1":"c"}}}}"#)
                .expect("a key with a lone surrogate");
        assert_eq!(rows.len(), 1);
        assert!(rows[0].contains(r#"uniq1: Some("c")"#), "{}", rows[0]);
    }

    #[test]
    fn data_as_an_empty_list() {
        let e = every_way(br#"{"result":"success","data":[]}"#).expect_err("no data");
        assert_eq!(
            (e.reason, e.message.as_str()),
            (
                Reason::Decode,
                "result is success but data is [], not an object"
            )
        );
        let e = every_way(br#"{"data":[1,2],"result":"success"}"#).expect_err("no data");
        assert_eq!(
            e.message,
            "result is success but data is an array, not an object"
        );
        // PHP's "no records" may come with an empty `data`.
        let (rows, answer) = every_way(
            br#"{"result":"No records retrieved from: 2025-05-01 - 2025-05-02","data":[]}"#,
        )
        .expect("no records is zero rows");
        assert!(rows.is_empty());
        assert_eq!(answer, Answer::default());
    }

    #[test]
    fn a_truncated_body_is_cut_short() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"result":"success","data":{"rows":[{"uniq1":"1.1","que"#,
                "body cut short: EOF while parsing a string at line 1 column 55",
            ),
            (
                r#"{"result":"success","data":{"rows":[{"uniq1":"1.1"},"#,
                "body cut short: EOF while parsing a value at line 1 column 52",
            ),
            (
                r#"{"result":"success","data":{"rows":[{"uniq1":"1.1"}"#,
                "body cut short: EOF while parsing a list at line 1 column 51",
            ),
            (
                r#"{"result":"success","data":{"rows":[]"#,
                "body cut short: EOF while parsing an object at line 1 column 37",
            ),
            (
                r#"{"result":"success","data":{"rows":[]}"#,
                "body cut short: EOF while parsing an object at line 1 column 38",
            ),
            (
                r#"{"result":"success","data":{"rows""#,
                "body cut short: EOF while parsing an object at line 1 column 34",
            ),
            (
                r#"{"result":"success","data":{"rows":"#,
                "body cut short: EOF while parsing a value at line 1 column 35",
            ),
            (
                r#"{"result":"succ"#,
                "body cut short: EOF while parsing a string at line 1 column 15",
            ),
            (
                "{",
                "body cut short: EOF while parsing an object at line 1 column 1",
            ),
        ];
        for (body, message) in cases {
            let e = every_way(body.as_bytes()).expect_err(body);
            assert_eq!(
                (e.reason, e.message.as_str()),
                (Reason::Decode, *message),
                "{body}"
            );
        }
    }

    #[test]
    fn fields_borrow_from_the_body_unless_they_had_escapes() {
        let body = br#"{"result":"success","data":{"rows":[{"uniq1":"1.1","queue":"Q\/1","campaign":"C"}]}}"#;
        let mut seen = 0;
        let mut each = |r: RowEntry<'_>| {
            let RowEntry::Row(row) = r else { panic!("row") };
            assert!(matches!(row.uniq1, Some(Cow::Borrowed("1.1"))));
            assert!(matches!(row.campaign, Some(Cow::Borrowed("C"))));
            assert!(matches!(row.queue, Some(Cow::Owned(ref q)) if q == "Q/1"));
            seen += 1;
        };
        let mut sink = RowSink {
            already_counted: &|_| false,
            row: &mut each,
        };
        let mut d = StreamDecoder::new();
        d.feed(body, &mut sink).expect("decodes");
        d.finish(&mut sink).expect("decodes");
        assert_eq!(seen, 1);
    }

    #[test]
    fn after_an_error_the_decoder_goes_no_further() {
        let mut each = |_: RowEntry<'_>| panic!("no row after the error");
        let mut sink = RowSink {
            already_counted: &|_| false,
            row: &mut each,
        };
        let mut d = StreamDecoder::new();
        let e = d.feed(b"{\"result\" x", &mut sink);
        let e = e
            .and_then(|()| d.finish(&mut sink).map(drop))
            .expect_err("no colon");
        let mut d = StreamDecoder::new();
        let mut first = None;
        for chunk in [&b"{\"result\" x"[..], b",\"data\":{\"rows\":[{}]}}"] {
            let mut big = chunk.to_vec();
            big.resize(BATCH + chunk.len(), b' ');
            if let Err(e) = d.feed(&big, &mut sink) {
                first.get_or_insert(e);
            }
        }
        assert_eq!(first.as_ref(), Some(&e));
        assert_eq!(d.finish(&mut sink).expect_err("still"), e);
    }
}
