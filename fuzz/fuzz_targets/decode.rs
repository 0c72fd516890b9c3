//! Any body, cut into chunks of any size: the decoder and the counting rules never panic, every
//! row is accounted for exactly once (new, duplicate, pending or rejected), leaving rows out as
//! already counted loses none, and decoding the body as it arrives gives what decoding it whole
//! (as one chunk) does; and what it reads without warnings, serde_json reads as JSON.
#![no_main]

use std::time::Duration;

use crocodial_exporter::api::{Answer, LegRef, PollError, RowEntry, RowSink, StreamDecoder};
use crocodial_exporter::config::CdrConfig;
use crocodial_exporter::ingest::dedup::{Deduper, Mode, Sorted};
use crocodial_exporter::ingest::window::Window;
use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;

/// Decodes `body` fed in chunks of `size` bytes, stopping at the first error: the rows (owned)
/// and the answer.
fn decode(
    body: &[u8],
    size: usize,
    already_counted: &dyn Fn(&LegRef<'_>) -> bool,
) -> Result<(Vec<RowEntry<'static>>, Answer<'static>), PollError> {
    let mut rows = Vec::new();
    let answer = {
        let mut each = |r: RowEntry<'_>| rows.push(r.into_owned());
        let mut sink = RowSink {
            already_counted,
            row: &mut each,
        };
        let mut decoder = StreamDecoder::new();
        for chunk in body.chunks(size.max(1)) {
            decoder.feed(chunk, &mut sink)?;
        }
        decoder.finish(&mut sink)?
    };
    Ok((rows, answer))
}

fuzz_target!(|data: &[u8]| {
    let Some((&size, data)) = data.split_first() else {
        return;
    };
    let whole = data.len();
    if let Ok((rows, _)) = decode(data, whole, &|_| false) {
        let now: jiff::Timestamp = "2025-05-29T12:00:00Z".parse().unwrap();
        let window = Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC);
        let deduper = Deduper::new(&CdrConfig::default(), TimeZone::UTC);
        // As the poller sorts them: one row at a time through the planner.
        let mut planner = deduper.planner(&window, now, Mode::Count);
        let counted = rows
            .iter()
            .filter(|r| matches!(planner.sort(&deduper, r), Sorted::Counts(_)))
            .count();
        let counts = planner.finish(&deduper, 0).counts;
        assert_eq!(counted as u64, counts.new);
        let accounted = counts.new + counts.duplicate + counts.pending + counts.rejected_total();
        assert_eq!(accounted, rows.len() as u64);
        let (kept, skipping) = decode(data, whole, &|leg: &LegRef<'_>| leg.uniq1.len() % 2 == 1).expect("decodes again");
        assert_eq!(
            rows.len() as u64,
            kept.len() as u64 + skipping.already_counted
        );
    }

    let skip = |leg: &LegRef<'_>| (leg.uniq1.len() + leg.queue.len()) % 2 == 1;
    let as_text = |rows: Vec<RowEntry<'_>>| -> Vec<String> {
        rows.iter().map(|r| format!("{r:?}")).collect()
    };
    match (
        decode(data, whole, &skip),
        decode(data, usize::from(size) + 1, &skip),
    ) {
        (Ok((wr, w)), Ok((sr, s))) => {
            // serde_json, an oracle independent of the decoder's walk over the envelope: an
            // answer read without any warning is JSON (after leading ASCII whitespace).
            if !w.had_warnings {
                let json = data.trim_ascii_start();
                assert!(serde_json::from_slice::<serde_json::Value>(json).is_ok());
            }
            assert_eq!(as_text(wr), as_text(sr));
            assert_eq!(w.already_counted, s.already_counted);
            assert_eq!(w.summary, s.summary);
            assert_eq!(w.had_warnings, s.had_warnings);
        }
        (Err(w), Err(s)) => assert_eq!(w, s),
        (w, s) => panic!("whole {w:?}, streamed {s:?}"),
    }
});
