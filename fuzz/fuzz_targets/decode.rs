//! Any body, cut into chunks of any size: the decoder and the counting rules never panic, every
//! row is accounted for exactly once (new, duplicate, pending or rejected), leaving rows out as
//! already counted loses none, and decoding the body as it arrives gives what decoding it whole
//! does.
#![no_main]

use std::time::Duration;

use crocodial_exporter::api::{decode_text, repair_utf8, RowEntry, RowSink, StreamDecoder};
use crocodial_exporter::config::CdrConfig;
use crocodial_exporter::ingest::dedup::{Deduper, Mode};
use crocodial_exporter::ingest::window::Window;
use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&size, data)) = data.split_first() else {
        return;
    };
    let (body, repaired) = repair_utf8(data.to_vec());
    if let Ok(answer) = decode_text(&body, &|_| false) {
        let now: jiff::Timestamp = "2025-05-29T12:00:00Z".parse().unwrap();
        let window = Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC);
        let mut deduper = Deduper::new(&CdrConfig::default(), TimeZone::UTC);
        let (counted, counts) = deduper.sort(&answer.rows, &window, now, Mode::Count);
        assert_eq!(counted.len() as u64, counts.new);
        let accounted = counts.new + counts.duplicate + counts.pending + counts.rejected_total();
        assert_eq!(accounted, answer.rows.len() as u64);
        let skipping = decode_text(&body, &|id| id.len() % 2 == 1).expect("decodes again");
        assert_eq!(
            answer.rows.len() as u64,
            skipping.rows.len() as u64 + skipping.already_counted
        );
    }

    let skip = |id: &str| id.len() % 2 == 1;
    let whole = decode_text(&body, &skip);
    let mut rows = Vec::new();
    let mut each = |r: RowEntry<'_>| rows.push(format!("{r:?}"));
    let mut sink = RowSink {
        already_counted: &skip,
        row: &mut each,
    };
    let mut decoder = StreamDecoder::new();
    let mut streamed = Ok(());
    for chunk in data.chunks(usize::from(size) + 1) {
        streamed = decoder.feed(chunk, &mut sink);
        if streamed.is_err() {
            break;
        }
    }
    let streamed = streamed.and_then(|()| decoder.finish(&mut sink));
    match (whole, streamed) {
        (Ok(w), Ok(s)) => {
            let want: Vec<String> = w.rows.iter().map(|r| format!("{r:?}")).collect();
            assert_eq!(want, rows);
            assert_eq!(w.already_counted, s.already_counted);
            assert_eq!(w.summary, s.summary);
            assert_eq!(w.had_warnings || repaired, s.had_warnings);
        }
        (Err(w), Err(s)) => assert_eq!(w.reason, s.reason),
        // A row is parsed on its own when streamed, three levels less deep than in the whole
        // body, so only the whole body can reach serde_json's nesting limit.
        (Err(w), Ok(_)) if w.message.contains("recursion limit exceeded") => {}
        (w, s) => panic!("whole {w:?}, streamed {s:?}"),
    }
});
