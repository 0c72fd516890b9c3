//! Records what `--version` and `crocodial_exporter_build_info` say of the build: the git
//! revision, the build date (UTC; `SOURCE_DATE_EPOCH` for a reproducible build) and the Rust
//! compiler's version.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let revision = std::env::var("CROCODIAL_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rust_version = output(&rustc, &["--version"]).unwrap_or_else(|| "rustc unknown".into());
    println!("cargo:rustc-env=CROCODIAL_REVISION={revision}");
    println!("cargo:rustc-env=CROCODIAL_BUILD_DATE={}", civil_date(epoch));
    println!("cargo:rustc-env=CROCODIAL_RUSTC={rust_version}");
    println!("cargo:rerun-if-env-changed=CROCODIAL_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}

/// A command's trimmed standard output, if it ran and succeeded.
fn output(program: &str, args: &[&str]) -> Option<String> {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
}

/// `YYYY-MM-DD` of a Unix time (days to the proleptic Gregorian calendar, after Howard
/// Hinnant's `civil_from_days`; a build script has no date library).
fn civil_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
