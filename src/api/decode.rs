//! The values of an `inbound_cdr` answer and what they mean: rows, summary rows, text and
//! numeric fields, the verdict of the envelope (success, "No records retrieved", one of the
//! error envelopes), and the classification of bodies that are not JSON.
//!
//! The platform is PHP, and the values are read with that in mind (see `docs/counting.md`,
//! "When the API misbehaves"):
//!
//! * errors arrive with HTTP 200, in several envelopes and as plain text;
//! * any numeric field may be a string, a number, a decimal, empty, null or negative;
//! * empty associative arrays are encoded as `[]`, lists may be objects.
//!
//! [`super::stream`] walks the envelope itself and has serde_json parse each member's value
//! (a row, the summary, `result`...) with the types here. Rows are decoded straight from the
//! text into borrowed fields (`Cow` borrows unless the string had escapes), and only the fields
//! the exporter uses are kept; everything else, phone numbers and names included, is skipped by
//! the parser without being copied. No document tree is built.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use serde_json::error::Category;

use super::error::{excerpt, PollError};
use crate::vocab::Reason;

/// Seconds beyond this (ten years) are not a queue time or a call duration but garbage such as
/// `1e308`; they are treated as unreadable rather than poisoning a histogram's sum.
const MAX_SECONDS: f64 = 315_360_000.0;

/// A numeric field as the API sent it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Num {
    /// Missing or `null`.
    #[default]
    Absent,
    /// A readable, non-negative number of seconds.
    Value(f64),
    /// Present but unreadable: empty, negative, not a number, absurdly large.
    Invalid,
}

impl Num {
    pub fn value(self) -> Option<f64> {
        match self {
            Num::Value(v) => Some(v),
            Num::Absent | Num::Invalid => None,
        }
    }

    fn from_f64(v: f64) -> Num {
        if v.is_finite() && (0.0..=MAX_SECONDS).contains(&v) {
            // `-0.0` would print as "-0" in a sum; it is zero seconds.
            Num::Value(v.abs())
        } else {
            Num::Invalid
        }
    }

    fn from_text(s: &str) -> Num {
        match s.trim().parse::<f64>() {
            Ok(v) => Num::from_f64(v),
            Err(_) => Num::Invalid,
        }
    }
}

/// One element of `rows`, with the fields the exporter reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row<'a> {
    pub uniq1: Option<Cow<'a, str>>,
    pub call_date: Option<Cow<'a, str>>,
    /// When the caller entered the queue (dialer-local wall clock, like `call_date`).
    pub enter_on_queue: Option<Cow<'a, str>>,
    pub queue: Option<Cow<'a, str>>,
    pub agent: Option<Cow<'a, str>>,
    pub campaign: Option<Cow<'a, str>>,
    pub disposition: Option<Cow<'a, str>>,
    pub term_reason: Option<Cow<'a, str>>,
    pub queue_time: Num,
    pub call_duration: Num,
}

impl Row<'_> {
    /// The row, no longer borrowing from the body.
    pub fn into_owned(self) -> Row<'static> {
        let own = |f: Option<Cow<'_, str>>| f.map(|s| Cow::Owned(s.into_owned()));
        Row {
            uniq1: own(self.uniq1),
            call_date: own(self.call_date),
            enter_on_queue: own(self.enter_on_queue),
            queue: own(self.queue),
            agent: own(self.agent),
            campaign: own(self.campaign),
            disposition: own(self.disposition),
            term_reason: own(self.term_reason),
            queue_time: self.queue_time,
            call_duration: self.call_duration,
        }
    }
}

/// An element of `rows`: a row, or something that is not an object.
// Boxing the row would allocate once per row on the hot path; entries are handed to the sink
// one at a time, so the size of the rare variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RowEntry<'a> {
    Row(Row<'a>),
    NotAnObject,
}

impl RowEntry<'_> {
    /// The entry, no longer borrowing from the body.
    pub fn into_owned(self) -> RowEntry<'static> {
        match self {
            RowEntry::Row(row) => RowEntry::Row(row.into_owned()),
            RowEntry::NotAnObject => RowEntry::NotAnObject,
        }
    }
}

/// The numeric fields of a campaign summary row the API documents, with their meaning.
/// Each becomes the gauge `crocodial_campaign_<field>`.
pub const SUMMARY_FIELDS: [(&str, &str); 11] = [
    ("total_leads", "Leads in the campaign's lists."),
    ("dialable", "Leads that can still be dialed."),
    ("pending", "Leads not yet called."),
    ("total_calls", "Calls of the campaign in the report window."),
    ("dialer", "Calls placed by the dialer."),
    ("dialed", "Calls dialed, by dialer or by hand."),
    ("manual_calls", "Calls dialed by hand by agents."),
    ("handled_calls", "Calls handled by an agent."),
    ("total_removed", "Leads removed from the lists in total."),
    ("removed", "Leads removed in the report window."),
    ("remove_all_period", "Leads removed over the whole period."),
];

/// One element of `summary_rows`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow<'a> {
    pub campaign: Option<Cow<'a, str>>,
    /// In the order of [`SUMMARY_FIELDS`].
    pub values: [Num; SUMMARY_FIELDS.len()],
}

impl SummaryRow<'_> {
    /// The row, no longer borrowing from the body.
    pub fn into_owned(self) -> SummaryRow<'static> {
        SummaryRow {
            campaign: self.campaign.map(|c| Cow::Owned(c.into_owned())),
            values: self.values,
        }
    }
}

/// A successful answer, less its rows (they go to a [`super::RowSink`] as they arrive).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer<'a> {
    /// Rows not handed over because their call was already counted (see
    /// [`super::RowSink::already_counted`]).
    pub already_counted: u64,
    pub summary: Vec<SummaryRow<'a>>,
    /// PHP notices (or other text) came before or after the JSON and were skipped, or invalid
    /// UTF-8 was replaced.
    pub had_warnings: bool,
}

/// How much of a body may precede its JSON (PHP notices).
pub(crate) const NOTICE_WINDOW: usize = 64 * 1024;

/// How much of a body that is not JSON is looked at to say what it is.
pub(crate) const TEXT_HEAD: usize = 4096;

/// Where the JSON starts after PHP notices (`<br />\n<b>Warning</b>: ... <br />\n{"result"...`).
pub(crate) fn php_notice_end(body: &[u8]) -> Option<usize> {
    let head = &body[..body.len().min(NOTICE_WINDOW)];
    let looks_like_notice = [
        &b"<b>Warning</b>"[..],
        b"<b>Notice</b>",
        b"<b>Deprecated</b>",
        b"<b>Strict Standards</b>",
        b"Warning: ",
        b"Notice: ",
        b"Deprecated: ",
    ]
    .iter()
    .any(|marker| find(head, marker).is_some());
    if !looks_like_notice {
        return None;
    }
    find(head, b"{\"")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A body that is not JSON: one of the platform's plain-text errors, an HTML page, or garbage.
/// `head` is its first [`TEXT_HEAD`] bytes (at most), `len` its length.
pub(crate) fn classify_text(head: &[u8], len: usize) -> PollError {
    let text = String::from_utf8_lossy(&head[..head.len().min(TEXT_HEAD)]);
    let text = text.trim();
    // result=error;message=This API function only accepts XML or JSON value on responsetype;
    if let Some(rest) = text.strip_prefix("result=") {
        let message = rest
            .split(';')
            .find_map(|part| part.strip_prefix("message="))
            .unwrap_or(rest);
        return api_error(message);
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("error") {
        // ERROR: 'astguiclient.conf' file not found. / Error: Unable to connect to MySQL asterisk.
        return api_error(text.lines().next().unwrap_or(text));
    }
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") || lower.starts_with('<') {
        let title = lower
            .find("<title>")
            .and_then(|start| {
                let after = &text[start + 7..];
                after.find("</").map(|end| excerpt(&after[..end], 80))
            })
            .filter(|t| !t.is_empty());
        return PollError::new(
            Reason::Decode,
            match title {
                Some(t) => format!("got an HTML page instead of JSON (title {t:?})"),
                None => "got an HTML page instead of JSON".to_string(),
            },
        );
    }
    PollError::new(
        Reason::Decode,
        format!(
            "body is not JSON ({len} bytes, starting {:?})",
            excerpt(text, 40)
        ),
    )
}

fn api_error(message: &str) -> PollError {
    let message = excerpt(message, 200);
    let lower = message.to_ascii_lowercase();
    let reason = if lower.contains("username/password")
        || lower.contains("invalid username")
        || lower.contains("invalid password")
        || lower.contains("authentication")
    {
        Reason::Auth
    } else {
        Reason::Api
    };
    PollError::new(reason, format!("API said {message:?}"))
}

/// Where a JSON error is, counted as serde_json counts for the whole JSON: lines from 1, and in
/// a line the bytes before (or, for an unexpected byte, up to and including) the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub line: usize,
    pub column: usize,
}

/// A JSON error at `at`: `what` is serde_json's description (without its position).
pub(crate) fn json_error(category: Category, what: &str, at: Position) -> PollError {
    let kind = match category {
        Category::Eof => "body cut short",
        Category::Syntax => "invalid JSON",
        Category::Data => "unexpected JSON shape",
        Category::Io => "read error",
    };
    // serde_json's descriptions name expectations, never the offending content (but for the
    // type of a value where none is expected, as in `rows: 5`).
    PollError::new(
        Reason::Decode,
        format!("{kind}: {what} at line {} column {}", at.line, at.column),
    )
}

/// The top-level object, whatever its shape, less the rows and the summary: what says whether
/// the answer is one.
#[derive(Debug, Default)]
pub(crate) struct Envelope {
    pub result: Option<String>,
    pub message: Option<String>,
    pub code: Option<String>,
    pub data: DataField,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataField {
    #[default]
    Absent,
    Object,
    /// Anything else, named for the error message.
    Other(&'static str),
}

/// What a well-formed envelope says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `"result":"success"` with an object in `data`.
    Success,
    /// `{"result":"No records retrieved from: ..."}`: no rows, no summary.
    NoRecords,
}

impl Envelope {
    pub(crate) fn verdict(&self) -> Result<Verdict, PollError> {
        let result = self.result.as_deref().map(str::trim);
        match result {
            Some("success") => match self.data {
                DataField::Object => Ok(Verdict::Success),
                DataField::Absent => Err(PollError::new(
                    Reason::Decode,
                    "result is success but there is no data",
                )),
                DataField::Other(what) => Err(PollError::new(
                    Reason::Decode,
                    format!("result is success but data is {what}, not an object"),
                )),
            },
            // {"result":"No records retrieved from: 2025-05-01 - 2025-05-02"}
            Some(r) if r.to_ascii_lowercase().starts_with("no records retrieved") => {
                Ok(Verdict::NoRecords)
            }
            // {"result":"error","message":"Invalid Username/Password"}
            Some(r) if r.eq_ignore_ascii_case("error") => Err(api_error(
                self.message.as_deref().unwrap_or("error without a message"),
            )),
            // {"code":"10004","result":"Error: No such resource or access is restricted "}
            Some(r) => Err(with_code(api_error(r), self.code.as_deref())),
            // {"code":"40001","message":"Error: Missing required parameters"}
            None => match self.message.as_deref() {
                Some(m) => Err(with_code(api_error(m), self.code.as_deref())),
                None => Err(PollError::new(
                    Reason::Decode,
                    "JSON object without result or message",
                )),
            },
        }
    }
}

fn with_code(mut e: PollError, code: Option<&str>) -> PollError {
    if let Some(code) = code {
        e.message = format!("{} (code {})", e.message, excerpt(code, 20));
    }
    e
}

/// The fields that identify a leg, as the row has them (untrimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegRef<'r> {
    pub uniq1: &'r str,
    pub call_date: &'r str,
    pub queue: &'r str,
}

/// Whether a leg was counted before.
#[derive(Clone, Copy)]
struct Skip<'s>(&'s dyn Fn(&LegRef<'_>) -> bool);

/// A `data` that is not an object, named for the error message (the decoder steps into an
/// object itself).
pub(crate) struct DataKind(pub &'static str);

impl<'de> Deserialize<'de> for DataKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DataKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the data object")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let empty = seq.next_element::<IgnoredAny>()?.is_none();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(DataKind(if empty { "[]" } else { "an array" }))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(DataKind("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(DataKind("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(DataKind("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(DataKind("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(DataKind("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(DataKind("a string"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `rows` that is neither a list nor an object (the decoder steps into those itself): `null`
/// is no rows, anything else is the wrong shape.
pub(crate) struct NoRows;

impl<'de> Deserialize<'de> for NoRows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NoRows;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(NoRows)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `summary_rows` list: its rows that are objects.
pub(crate) struct Summary<'a>(pub Vec<SummaryRow<'a>>);

impl<'de> Deserialize<'de> for Summary<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = List::<SummaryEntry>::deserialize(d)?;
        Ok(Summary(entries.0.into_iter().filter_map(|e| e.0).collect()))
    }
}

/// An object key; borrowed unless it had escapes.
pub(crate) struct Key<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The fields of a row the exporter reads; the key is matched where serde_json parsed it,
/// without building a string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Uniq1,
    CallDate,
    EnterOnQueue,
    Queue,
    Agent,
    Campaign,
    Disposition,
    TermReason,
    QueueTime,
    CallDuration,
    Other,
}

struct RowField(Field);

impl<'de> Deserialize<'de> for RowField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RowField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RowField(match v {
                    "uniq1" => Field::Uniq1,
                    "call_date" => Field::CallDate,
                    "enter_on_queue" => Field::EnterOnQueue,
                    "queue" => Field::Queue,
                    "agent" => Field::Agent,
                    "campaign" => Field::Campaign,
                    "disposition" => Field::Disposition,
                    "term_reason" => Field::TermReason,
                    "queue_time" => Field::QueueTime,
                    "call_duration" => Field::CallDuration,
                    _ => Field::Other,
                }))
            }
        }
        d.deserialize_str(V)
    }
}

/// A list that PHP may also have written as an object (non-sequential keys), `[]` or `null`.
struct List<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some((_, item)) = map.next_entry::<IgnoredAny, T>()? {
                    items.push(item);
                }
                Ok(List(items))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(List(Vec::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Accepts any JSON value and drains it; used for values of the wrong type.
macro_rules! accept_scalars_as {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
}

/// One element of `rows`; `None` when its leg was counted before.
pub(crate) struct OneRow<'s>(Skip<'s>);

impl<'s> OneRow<'s> {
    /// Decodes a row, or skips the rest of it once `already_counted` says its leg (`uniq1`,
    /// `call_date` and `queue`, asked as soon as all three are read) was counted before.
    pub(crate) fn new(already_counted: &'s dyn Fn(&LegRef<'_>) -> bool) -> Self {
        OneRow(Skip(already_counted))
    }
}

/// The row's leg, once its three identifying fields are read.
fn leg_of<'r>(row: &'r Row<'_>) -> Option<LegRef<'r>> {
    Some(LegRef {
        uniq1: row.uniq1.as_deref()?,
        call_date: row.call_date.as_deref()?,
        queue: row.queue.as_deref()?,
    })
}

impl<'de> DeserializeSeed<'de> for OneRow<'_> {
    type Value = Option<RowEntry<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V<'s>(Skip<'s>);
        impl V<'_> {
            /// Whether the row's leg, once identified, was counted before.
            fn skips(&self, row: &Row<'_>) -> bool {
                leg_of(row).is_some_and(|leg| (self.0 .0)(&leg))
            }
        }
        impl<'de> Visitor<'de> for V<'_> {
            type Value = Option<RowEntry<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut row = Row::default();
                while let Some(RowField(field)) = map.next_key()? {
                    // Duplicate keys: the last one wins, as in PHP's own decoder.
                    let text = match field {
                        Field::Uniq1 => {
                            row.uniq1 = map.next_value::<Uniq1>()?.0;
                            None
                        }
                        Field::CallDate => Some(&mut row.call_date),
                        Field::Queue => Some(&mut row.queue),
                        Field::EnterOnQueue => Some(&mut row.enter_on_queue),
                        Field::Agent => Some(&mut row.agent),
                        Field::Campaign => Some(&mut row.campaign),
                        Field::Disposition => Some(&mut row.disposition),
                        Field::TermReason => Some(&mut row.term_reason),
                        Field::QueueTime => {
                            row.queue_time = map.next_value()?;
                            continue;
                        }
                        Field::CallDuration => {
                            row.call_duration = map.next_value()?;
                            continue;
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if let Some(text) = text {
                        *text = map.next_value::<Text>()?.0;
                    }
                    // Once the leg is known, a leg counted before is skipped unread.
                    if matches!(field, Field::Uniq1 | Field::CallDate | Field::Queue)
                        && self.skips(&row)
                    {
                        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                        return Ok(None);
                    }
                }
                // A row without a date or a queue is keyed with them empty, as the planner
                // keys it: asked at its end.
                if leg_of(&row).is_none() {
                    if let Some(uniq1) = row.uniq1.as_deref() {
                        let leg = LegRef {
                            uniq1,
                            call_date: row.call_date.as_deref().unwrap_or(""),
                            queue: row.queue.as_deref().unwrap_or(""),
                        };
                        if (self.0 .0)(&leg) {
                            return Ok(None);
                        }
                    }
                }
                Ok(Some(RowEntry::Row(row)))
            }
            accept_scalars_as!(Some(RowEntry::NotAnObject));
        }
        d.deserialize_any(V(self.0))
    }
}

/// A summary row; `None` when the element is not an object.
struct SummaryEntry<'a>(Option<SummaryRow<'a>>);

impl<'de> Deserialize<'de> for SummaryEntry<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SummaryEntry<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a summary row")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut row = SummaryRow {
                    campaign: None,
                    values: [Num::Absent; SUMMARY_FIELDS.len()],
                };
                while let Some(key) = map.next_key::<Key>()? {
                    if key.0 == "campaign_name" {
                        row.campaign = map.next_value::<Text>()?.0;
                    } else if let Some(i) = SUMMARY_FIELDS.iter().position(|(n, _)| *n == key.0) {
                        row.values[i] = map.next_value()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(SummaryEntry(Some(row)))
            }
            accept_scalars_as!(SummaryEntry(None));
        }
        d.deserialize_any(V)
    }
}

/// A text field: a string (borrowed when it had no escapes) or a number written as text.
/// Anything else (null, bool, object, array) reads as absent.
pub(crate) struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("text")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A call id: text, or a number kept as its literal text. Through an f64, `1716984000.1` and
/// `1716984000.10` (two calls: sequence 1 and 10) would become one.
struct Uniq1<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Uniq1<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return Ok(Uniq1(Some(Cow::Borrowed(text))));
        }
        // The usual case, a string without escapes, is its own text between the quotes.
        if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            if !inner.contains('\\') {
                return Ok(Uniq1(Some(Cow::Borrowed(inner))));
            }
        }
        serde_json::from_str::<Text<'de>>(text)
            .map(|t| Uniq1(t.0))
            .map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_str<E>(self, v: &str) -> Result<Num, E> {
                Ok(Num::from_text(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num::from_f64(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num::from_f64(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num::from_f64(v))
            }
            fn visit_unit<E>(self) -> Result<Num, E> {
                Ok(Num::Absent)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Num, E> {
                Ok(Num::Invalid)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Num, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Num::Invalid)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Num, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Num::Invalid)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::decode_whole;

    fn decode(body: &[u8]) -> Result<(Vec<RowEntry<'static>>, Answer<'static>), PollError> {
        decode_whole(body)
    }

    fn rows(body: &str) -> Vec<Row<'static>> {
        decode(body.as_bytes())
            .expect("decodes")
            .0
            .into_iter()
            .map(|r| match r {
                RowEntry::Row(r) => r,
                RowEntry::NotAnObject => panic!("not an object"),
            })
            .collect()
    }

    fn err(body: &str) -> PollError {
        decode(body.as_bytes()).expect_err("must fail")
    }

    #[test]
    fn success_with_escapes_and_numeric_forms() {
        let body = r#"{"result":"success","data":{"rows":[
            {"uniq1":"1.01","call_date":"2025-05-29 22:23:05","carrier":"SIP\/EX-1","src":"555",
             "queue":"Q\/1","agent":"Jos\u00e9","campaign":"C","disposition":"Answered",
             "term_reason":"CALLER","queue_time":"12.50","call_duration":34},
            {"uniq1":"1.1","queue_time":"","call_duration":null},
            {"uniq1":"1.2","queue_time":"-3","call_duration":"abc"},
            {"uniq1":"1.3","queue_time":1e308,"call_duration":" 7 "},
            {"uniq1":1234567890.5,"queue_time":-0.0}
        ],"headers":[{"title":"x"}],"summary_rows":[]}}"#;
        let r = rows(body);
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].uniq1.as_deref(), Some("1.01"));
        assert_eq!(r[0].queue.as_deref(), Some("Q/1"));
        assert_eq!(r[0].agent.as_deref(), Some("José"));
        assert_eq!(r[0].queue_time, Num::Value(12.5));
        assert_eq!(r[0].call_duration, Num::Value(34.0));
        assert_eq!(r[1].uniq1.as_deref(), Some("1.1"));
        assert_eq!(r[1].queue_time, Num::Invalid);
        assert_eq!(r[1].call_duration, Num::Absent);
        assert_eq!(r[2].queue_time, Num::Invalid);
        assert_eq!(r[2].call_duration, Num::Invalid);
        assert_eq!(r[3].queue_time, Num::Invalid);
        assert_eq!(r[3].call_duration, Num::Value(7.0));
        assert_eq!(r[4].uniq1.as_deref(), Some("1234567890.5"));
        assert_eq!(r[4].queue_time, Num::Value(0.0));
    }

    #[test]
    fn php_empty_arrays_and_objects_as_lists() {
        assert!(rows(r#"{"result":"success","data":{"rows":[]}}"#).is_empty());
        assert!(rows(r#"{"result":"success","data":{"rows":null}}"#).is_empty());
        assert!(rows(r#"{"result":"success","data":{}}"#).is_empty());
        let r =
            rows(r#"{"result":"success","data":{"rows":{"0":{"uniq1":"a"},"5":{"uniq1":"b"}}}}"#);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].uniq1.as_deref(), Some("b"));
    }

    #[test]
    fn rows_that_are_not_objects_and_wrong_types() {
        let (rows, _) = decode(
            br#"{"result":"success","data":{"rows":[1,"x",null,[1,2],
            {"uniq1":{"a":1},"queue":[1],"queue_time":true,"call_duration":{"x":[]}}]}}"#,
        )
        .expect("decodes");
        assert_eq!(rows.len(), 5);
        assert!(rows[..4].iter().all(|r| *r == RowEntry::NotAnObject));
        let RowEntry::Row(r) = &rows[4] else {
            panic!("row")
        };
        assert_eq!(r.uniq1, None);
        assert_eq!(r.queue, None);
        assert_eq!(r.queue_time, Num::Invalid);
        assert_eq!(r.call_duration, Num::Invalid);
    }

    #[test]
    fn invalid_utf8_in_a_field_is_repaired_and_the_row_kept() {
        let mut body =
            br#"{"result":"success","data":{"rows":[{"uniq1":"1.1","queue":"Caf"#.to_vec();
        body.extend_from_slice(b"\xe9 \xff\xfe");
        body.extend_from_slice(br#"","vendor_lead_code":"x"}]}}"#);
        let (rows, answer) = decode(&body).expect("decodes");
        assert!(answer.had_warnings);
        let RowEntry::Row(r) = &rows[0] else {
            panic!("row")
        };
        assert_eq!(r.uniq1.as_deref(), Some("1.1"));
        assert_eq!(r.queue.as_deref(), Some("Caf\u{fffd} \u{fffd}\u{fffd}"));
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let r = rows(
            r#"{"result":"success","data":{"rows":[{"uniq1":"a","queue":"Q1","queue":"Q2"}]}}"#,
        );
        assert_eq!(r[0].queue.as_deref(), Some("Q2"));
    }

    #[test]
    fn summary_rows() {
        let (_, a) = decode(
            br#"{"result":"success","data":{"summary_rows":[{"campaign_name":"CAMPAIGN-1","total_leads":296,"dialable":"296","pending":0,"handled_calls":"x"},7]}}"#,
        )
        .expect("decodes");
        assert_eq!(a.summary.len(), 1);
        assert_eq!(a.summary[0].campaign.as_deref(), Some("CAMPAIGN-1"));
        assert_eq!(a.summary[0].values[0], Num::Value(296.0));
        assert_eq!(a.summary[0].values[1], Num::Value(296.0));
        assert_eq!(a.summary[0].values[2], Num::Value(0.0));
        assert_eq!(a.summary[0].values[3], Num::Absent);
        assert_eq!(a.summary[0].values[7], Num::Invalid);
    }

    #[test]
    fn php_notices_before_json_are_skipped() {
        let body = "<br />\n<b>Warning</b>:  Undefined index: x in <b>/var/www/goAPI.php</b> on line <b>42</b><br />\n{\"result\":\"success\",\"data\":{\"rows\":[{\"uniq1\":\"1.5\"}]}}";
        let (rows, a) = decode(body.as_bytes()).expect("decodes");
        assert!(a.had_warnings);
        assert_eq!(rows.len(), 1);
        let (_, clean) = decode(br#"{"result":"success","data":{}}"#).expect("decodes");
        assert!(!clean.had_warnings);
    }

    #[test]
    fn error_envelopes() {
        let e = err(r#"{"result":"error","message":"Invalid Username/Password"}"#);
        assert_eq!(e.reason, Reason::Auth);
        assert_eq!(e.message, r#"API said "Invalid Username/Password""#);
        let e = err(r#"{"result":"error","message":"Command Not Found"}"#);
        assert_eq!(e.reason, Reason::Api);
        assert_eq!(e.message, r#"API said "Command Not Found""#);
        let e = err(r#"{"code":"40001","message":"Error: Missing required parameters"}"#);
        assert_eq!(e.reason, Reason::Api);
        assert_eq!(
            e.message,
            r#"API said "Error: Missing required parameters" (code 40001)"#
        );
        let e =
            err(r#"{"code":"10004","result":"Error: No such resource or access is restricted "}"#);
        assert_eq!(e.reason, Reason::Api);
        assert_eq!(
            e.message,
            r#"API said "Error: No such resource or access is restricted" (code 10004)"#
        );
        let (rows, a) =
            decode(br#"{"result":"No records retrieved from: 2025-05-01 - 2025-05-02"}"#)
                .expect("no records is zero rows");
        assert!(rows.is_empty());
        assert_eq!(a, Answer::default());
    }

    #[test]
    fn plain_text_errors() {
        let e = err("result=error;message=This API function only accepts XML or JSON value on responsetype;");
        assert_eq!(e.reason, Reason::Api);
        assert_eq!(
            e.message,
            r#"API said "This API function only accepts XML or JSON value on responsetype""#
        );
        let e = err("ERROR: 'astguiclient.conf' file not found.");
        assert_eq!(e.reason, Reason::Api);
        assert_eq!(
            e.message,
            r#"API said "ERROR: 'astguiclient.conf' file not found.""#
        );
        let e = err("Error: Unable to connect to MySQL asterisk.\n");
        assert_eq!(
            e.message,
            r#"API said "Error: Unable to connect to MySQL asterisk.""#
        );
    }

    #[test]
    fn bodies_that_are_not_clean_json() {
        let e = err("");
        assert_eq!(
            (e.reason, e.message.as_str()),
            (Reason::Decode, "empty body")
        );
        let e = err("  \n ");
        assert_eq!(e.message, "empty body");
        let e = err("<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>");
        assert_eq!(e.reason, Reason::Decode);
        assert_eq!(
            e.message,
            r#"got an HTML page instead of JSON (title "502 Bad Gateway")"#
        );
        let e = err(r#"{"result":"success","data":{"rows":[{"uniq1":"1.1","que"#);
        assert_eq!(e.reason, Reason::Decode);
        assert!(
            e.message.starts_with("body cut short: EOF while parsing"),
            "{}",
            e.message
        );
        let e = err(r#"{"result":"success","data":[]}"#);
        assert_eq!(e.message, "result is success but data is [], not an object");
        let e = err(r#"{"result":"success","data":null}"#);
        assert_eq!(
            e.message,
            "result is success but data is null, not an object"
        );
        let e = err(r#"{"result":"success"}"#);
        assert_eq!(e.message, "result is success but there is no data");
        let e = err("[1,2]");
        assert_eq!(e.reason, Reason::Decode);
        let deep = "{\"result\":".to_string() + &"[".repeat(10_000);
        assert_eq!(err(&deep).reason, Reason::Decode);
    }
}
