//! Any body: the decoder and the counting rules never panic, every row is accounted for exactly
//! once (new, duplicate, pending or rejected), and leaving rows out as already counted loses none.
#![no_main]

use std::time::Duration;

use crocodial_exporter::api::{decode_text, repair_utf8};
use crocodial_exporter::ingest::dedup::{Deduper, Mode};
use crocodial_exporter::ingest::window::Window;
use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (body, _) = repair_utf8(data.to_vec());
    if let Ok(answer) = decode_text(&body, &|_| false) {
        let now: jiff::Timestamp = "2025-05-29T12:00:00Z".parse().unwrap();
        let window = Window::at(now, Duration::from_secs(6 * 3600), &TimeZone::UTC);
        let mut deduper = Deduper::new(
            vec!["QUEUE".into(), "INCALL".into()],
            Duration::from_secs(7200),
            TimeZone::UTC,
        );
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
});
