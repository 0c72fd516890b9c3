//! Properties of the decoder and the counting rules over generated and mutated bodies: no input
//! makes them panic, and a malformed row never stops the well-formed rows around it from
//! counting.

mod common;

use std::time::Duration;

use common::decode_whole;
use crocodial_exporter::api::{LegRef, RowEntry, RowSink, StreamDecoder};
use crocodial_exporter::config::CdrConfig;
use crocodial_exporter::ingest::dedup::{Deduper, Mode, Sorted};
use crocodial_exporter::ingest::window::Window;
use crocodial_exporter::vocab::RowCounts;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use proptest::prelude::*;

fn now() -> Timestamp {
    "2025-05-29T12:00:00Z".parse().expect("now")
}

fn deduper() -> Deduper {
    Deduper::new(&CdrConfig::default(), TimeZone::UTC)
}

/// Sorts a poll's rows as the poller does (one at a time through the planner, then the plan
/// applied): the ids of the calls of the legs that count now, and the plan's row counts.
fn poll(d: &mut Deduper, rows: &[RowEntry<'_>], w: &Window) -> (Vec<String>, RowCounts) {
    let (legs, counts) = poll_legs(d, rows, w);
    (legs.into_iter().map(|(id, _, _)| id).collect(), counts)
}

/// `poll`, with each leg that counts as its `uniq1`, `call_date` and `queue`.
fn poll_legs(
    d: &mut Deduper,
    rows: &[RowEntry<'_>],
    w: &Window,
) -> (Vec<(String, String, String)>, RowCounts) {
    let mut planner = d.planner(w, now(), Mode::Count);
    let mut counted = Vec::new();
    let text =
        |f: &Option<std::borrow::Cow<'_, str>>| f.as_deref().unwrap_or("").trim().to_string();
    for entry in rows {
        if let (RowEntry::Row(row), Sorted::Counts(_)) = (entry, planner.sort(d, entry)) {
            counted.push((text(&row.uniq1), text(&row.call_date), text(&row.queue)));
        }
    }
    let plan = planner.finish(d, 0);
    d.apply(&plan);
    (counted, plan.counts)
}

/// Applies `edits` to `body`: each overwrites, inserts or removes a byte, or cuts the body there.
fn mutate(body: &mut Vec<u8>, edits: &[(u16, u8, u8)]) {
    for &(at, byte, kind) in edits {
        if body.is_empty() {
            break;
        }
        let i = at as usize % body.len();
        match kind {
            0 => body[i] = byte,
            1 => body.insert(i, byte),
            2 => {
                body.remove(i);
            }
            _ => body.truncate(i),
        }
    }
}

/// A well-formed final row, in one of the numeric forms PHP produces.
fn good_row(id: u32, form: u8) -> String {
    good_leg(id, 0, form)
}

/// A well-formed final row of leg `leg` of call `id` (a transfer's later legs have their own
/// call_date and queue).
fn good_leg(id: u32, leg: u32, form: u8) -> String {
    let (wait, duration) = match form % 5 {
        0 => ("\"12\"".to_string(), "\"34\"".to_string()),
        1 => ("12.5".to_string(), "34".to_string()),
        2 => ("\"12.50\"".to_string(), "null".to_string()),
        3 => ("\"\"".to_string(), "\"-3\"".to_string()),
        _ => ("1e308".to_string(), "\"x\"".to_string()),
    };
    format!(
        r#"{{"call_date":"2025-05-29 11:{:02}:{:02}","src":"555","uniq1":"1716984000.{id}","queue":"Q\/{}","agent":"Jos\u00e9","campaign":"C","disposition":"Answered","term_reason":"AGENT","queue_time":{wait},"call_duration":{duration}}}"#,
        id % 60,
        leg * 7,
        (id + leg) % 3
    )
}

/// A row that must be rejected or ignored, in one of several malformed shapes.
fn bad_row(id: u32, shape: u8) -> String {
    match shape % 6 {
        0 => "17".to_string(),
        1 => r#""a string""#.to_string(),
        2 => "[1,{\"uniq1\":\"x\"}]".to_string(),
        3 => {
            r#"{"uniq1":{"a":[1,2]},"queue":[],"campaign":true,"queue_time":{},"call_duration":[]}"#
                .to_string()
        }
        4 => format!(
            r#"{{"uniq1":null,"queue":"Q","term_reason":"AGENT","disposition":"Answered","x":{id}}}"#
        ),
        _ => r#"{"queue":"Q","term_reason":"AGENT","disposition":"Answered"}"#.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok((rows, _)) = decode_whole(&body) {
            let w = Window::at(now(), Duration::from_secs(3600), &TimeZone::UTC);
            let _ = poll(&mut deduper(), &rows, &w);
        }
    }

    #[test]
    fn mutations_of_a_valid_body_never_panic(
        n in 1u32..30,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let rows: Vec<String> = (0..n).map(|i| good_row(i, i as u8)).collect();
        let mut body = format!(r#"{{"result":"success","data":{{"rows":[{}]}}}}"#, rows.join(",")).into_bytes();
        mutate(&mut body, &edits);
        if let Ok((rows, _)) = decode_whole(&body) {
            let w = Window::at(now(), Duration::from_secs(3600), &TimeZone::UTC);
            let mut d = deduper();
            let (counted, counts) = poll_legs(&mut d, &rows, &w);
            prop_assert!(counted.len() as u32 <= n);
            // Every row is accounted for exactly once.
            let accounted = counts.new + counts.duplicate + counts.pending + counts.rejected_total();
            prop_assert_eq!(accounted as usize, rows.len());
            // No leg counts twice, in this poll or the next (a mutated id can make two rows
            // legs of one call: each counts, once).
            let legs: std::collections::HashSet<&(String, String, String)> = counted.iter().collect();
            prop_assert_eq!(legs.len(), counted.len());
            let (again, _) = poll(&mut d, &rows, &w);
            prop_assert!(again.is_empty());
        }
    }

    /// serde_json, parsing the whole body as a `Value`, is an oracle independent of the
    /// decoder's own walk over the envelope: where it reads a successful answer, the decoder
    /// hands over the same rows (objects as rows, anything else as not an object, `uniq1`s
    /// as written); where the decoder accepts a body without any warning, it is JSON.
    #[test]
    fn the_decoder_agrees_with_serde_json_on_mutated_bodies(
        n in 1u32..20,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 0..6),
        spaces in proptest::collection::vec(0usize..4, 8),
    ) {
        let rows: Vec<String> = (0..n).map(|i| good_row(i, i as u8)).collect();
        let ws = |i: usize| " \n\t ".get(..spaces[i % spaces.len()]).unwrap_or("").to_string();
        let mut body = format!(
            r#"{}{{{}"result"{}:"success",{}"data"{}:{{"headers":[{{"a":[1,{{}}]}}],"rows"{}:[{}]{}}}}}"#,
            ws(0), ws(1), ws(2), ws(3), ws(4), ws(5), rows.join(&format!(",{}", ws(6))), ws(7)
        )
        .into_bytes();
        mutate(&mut body, &edits);
        let decoded = decode_whole(&body);
        // Leading whitespace is stepped over as ASCII has it (a form feed too), as it always was.
        let oracle = serde_json::from_slice::<serde_json::Value>(body.trim_ascii_start());
        if let Ok(value) = &oracle {
            let listed = value.get("data").and_then(|d| d.get("rows")).and_then(|r| r.as_array());
            if let (Some("success"), Some(listed)) = (value.get("result").and_then(|r| r.as_str()), listed) {
                let (got, _) = decoded.clone().map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&body))))?;
                let want: Vec<Option<String>> = listed
                    .iter()
                    .map(|r| r.as_object().map(|o| o.get("uniq1").and_then(|u| u.as_str()).unwrap_or("?").to_string()))
                    .collect();
                let got: Vec<Option<String>> = got
                    .iter()
                    .map(|r| match r {
                        RowEntry::Row(row) => Some(row.uniq1.as_deref().unwrap_or("?").to_string()),
                        RowEntry::NotAnObject => None,
                    })
                    .collect();
                // A uniq1 that is not text (a number, say) is the decoder's to read; compare
                // the rows whose uniq1 both read as text.
                prop_assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    prop_assert_eq!(g.is_some(), w.is_some());
                    if w.as_deref() != Some("?") {
                        prop_assert_eq!(g, w);
                    }
                }
            }
        }
        if let Ok((_, answer)) = &decoded {
            if !answer.had_warnings {
                prop_assert!(oracle.is_ok(), "decoded without warnings but not JSON: {}", String::from_utf8_lossy(&body));
            }
        }
    }

    #[test]
    fn malformed_rows_do_not_stop_the_others(shapes in proptest::collection::vec(proptest::option::of(any::<u8>()), 1..60)) {
        // None: a well-formed row; Some(shape): a malformed one.
        let rows: Vec<String> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                None => good_row(i as u32, i as u8),
                Some(shape) => bad_row(i as u32, *shape),
            })
            .collect();
        let body = format!(r#"{{"result":"success","data":{{"rows":[{}]}}}}"#, rows.join(","));
        let (rows, _) = decode_whole(body.as_bytes()).expect("valid JSON decodes");
        let w = Window::at(now(), Duration::from_secs(3600), &TimeZone::UTC);
        let (got, counts) = poll(&mut deduper(), &rows, &w);
        let want: Vec<String> = shapes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_none())
            .map(|(i, _)| format!("1716984000.{i}"))
            .collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(counts.rejected_total() as usize, shapes.iter().filter(|s| s.is_some()).count());
    }

    /// Leaving already-counted legs out while decoding the body as it arrives (what every poll
    /// does) sorts the rows exactly as decoding the whole body and looking each row up
    /// afterwards, wherever the chunks are cut; a transfer's legs of a counted call still count.
    #[test]
    fn streaming_and_skipping_counted_rows_changes_nothing(
        legs in proptest::collection::vec((0u32..40, 0u32..2), 1..60),
        counted in proptest::collection::vec((0u32..40, 0u32..2), 0..25),
        chunk in 1usize..400,
    ) {
        let body_of = |legs: &[(u32, u32)]| {
            let rows: Vec<String> =
                legs.iter().enumerate().map(|(i, (id, leg))| good_leg(*id, *leg, i as u8)).collect();
            format!(r#"{{"result":"success","data":{{"rows":[{}]}}}}"#, rows.join(","))
        };
        let body = body_of(&legs);
        let (counted_rows, _) = decode_whole(body_of(&counted).as_bytes()).expect("decodes");
        let w = Window::at(now(), Duration::from_secs(3600), &TimeZone::UTC);
        let mut d = deduper();
        poll(&mut d, &counted_rows, &w);
        let (all, _) = decode_whole(body.as_bytes()).expect("decodes");
        // Looked up afterwards, on a copy, so that `d` stays as it was for the streamed poll.
        let (want, looked_up) = {
            let mut copy = deduper();
            poll(&mut copy, &counted_rows, &w);
            poll(&mut copy, &all, &w)
        };

        let mut planner = d.planner(&w, now(), Mode::Count);
        let mut got = Vec::new();
        let mut each = |entry: RowEntry<'_>| {
            if let (RowEntry::Row(row), Sorted::Counts(_)) = (&entry, planner.sort(&d, &entry)) {
                got.push(row.uniq1.as_deref().unwrap_or("").to_string());
            }
        };
        let already = |leg: &LegRef<'_>| d.already_counted(leg);
        let mut sink = RowSink { already_counted: &already, row: &mut each };
        let mut decoder = StreamDecoder::new();
        for piece in body.as_bytes().chunks(chunk) {
            decoder.feed(piece, &mut sink).expect("decodes");
        }
        let answer = decoder.finish(&mut sink).expect("decodes");
        let streamed = planner.finish(&d, answer.already_counted);
        prop_assert_eq!(&streamed.counts, &looked_up);
        prop_assert_eq!(got, want);
        // Every leg counts once: the legs not counted before, each once.
        let fresh: std::collections::BTreeSet<(u32, u32)> =
            legs.iter().filter(|l| !counted.contains(l)).copied().collect();
        prop_assert_eq!(looked_up.new as usize, fresh.len());
        prop_assert!(answer.already_counted > 0 || legs.iter().all(|l| !counted.contains(l)));
    }
}
