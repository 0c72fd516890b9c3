//! The binary as a user runs it: flags, `--once`, `--demo`, logs, signals, and what must never
//! leave the process (the password, phone numbers, customer names).

mod common;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use crocodial_exporter::clock::{Clock, ManualClock, SystemClock};
use crocodial_exporter::sim::{SimHandle, Traffic};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_crocodial-exporter");

fn exporter() -> Command {
    let mut cmd = Command::new(BIN);
    // Nothing from the developer's environment leaks in.
    for (k, _) in std::env::vars() {
        if k.starts_with("CROCODIAL_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run binary")
}

/// `run`, on a blocking thread, for async tests whose servers must keep answering meanwhile.
async fn run_blocking(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .expect("join")
}

/// Starts `cmd` in the background, quiet, killed when dropped.
fn spawn_quiet(cmd: &mut Command) -> KillOnDrop {
    KillOnDrop(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    )
}

/// The command exited with `code` and said `needle` on stderr.
fn assert_exit(out: &Output, code: i32, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `backfill` takes one destination; the remote-write settings only with `--remote-write`, and
/// each whole: a header not `NAME=VALUE` or one of the protocol's own, half of basic auth, a
/// token file that cannot be read. Exit 2 naming the flag, before any request or file.
#[test]
fn backfill_refuses_destinations_and_remote_write_settings_that_cannot_apply() {
    let dir = std::env::temp_dir().join(format!("croco-bin-rw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("pw"), "secret\n").expect("write");
    let rw = ["--remote-write", "http://127.0.0.1:9/api/v1/write"];
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--output",
                "x.om",
                "--remote-write.header",
                "X-Scope-OrgID=acme",
            ],
            "error: --remote-write.*: set only with --remote-write, whose requests they shape",
        ),
        (
            &["--output", "x.om", "--step", "1500ms"],
            "error: --step: 1s 500ms: a whole number of seconds",
        ),
        (
            &["--remote-write.header", "Authorization: Bearer secret"],
            "error: --remote-write.header: number 1: write NAME=VALUE",
        ),
        (
            &["--remote-write.header", "Content-Encoding=gzip"],
            "error: --remote-write.header: Content-Encoding is the protocol's own header",
        ),
        (
            &["--remote-write.password-file", "pw"],
            "error: --remote-write.password-file: needs --remote-write.basic-auth-user",
        ),
        (
            &["--remote-write.basic-auth-user", "w"],
            "error: --remote-write.basic-auth-user: needs --remote-write.password-file",
        ),
        (
            &[
                "--remote-write.basic-auth-user",
                "w",
                "--remote-write.password-file",
                "pw",
                "--remote-write.bearer-token-file",
                "pw",
            ],
            "error: --remote-write.bearer-token-file: or --remote-write.basic-auth-user, not both",
        ),
        (
            &["--remote-write.bearer-token-file", "no-such-token"],
            "error: --remote-write.bearer-token-file: no-such-token: No such file or directory",
        ),
        (
            &["--output", "x.om"],
            "error: the argument '--remote-write <URL>' cannot be used with '--output <PATH>'",
        ),
    ];
    for (args, expected) in cases {
        let out = run(exporter()
            .args(["backfill", "--demo", "--from", "0d"])
            .args(if args.first() == Some(&"--output") && args.len() > 2 {
                &[][..]
            } else {
                &rw[..]
            })
            .args(*args)
            .current_dir(&dir));
        assert_exit(&out, 2, expected);
        assert!(!text(&out.stderr).contains("secret"));
    }
    let out = run(exporter()
        .args([
            "backfill",
            "--demo",
            "--from",
            "0d",
            "--remote-write",
            "ftp://x/",
        ])
        .current_dir(&dir));
    assert_exit(
        &out,
        2,
        "error: --remote-write: the URL must be http:// or https://",
    );
    let out = run(exporter()
        .args(["backfill", "--demo", "--from", "0d"])
        .current_dir(&dir));
    assert_exit(
        &out,
        2,
        "<--output <PATH>|--output-dir <DIR>|--remote-write <URL>>",
    );
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["pw"], "no file written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_exit_2_and_name_the_flag() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--demo", "--poll.interval", "soon"],
            &[],
            "--poll.interval",
        ),
        (&["--demo", "--api.tenant", "ABCD"], &[], "--api.tenant"),
        (
            &[
                "--api.url",
                "https://x.croco-dial.net/goAPIv2/goReports/goAPI.php",
                "--api.user",
                "u",
                "--sim.targets",
                "2",
            ],
            &[("CROCODIAL_API_PASSWORD", "pw")],
            "--sim.targets: simulated domains need --demo",
        ),
        (
            &["--demo", "--api.timezone", "Mars/Base"],
            &[],
            "--api.timezone",
        ),
        (
            &["--demo", "--metrics.queue-time-buckets", "5,1"],
            &[],
            "--metrics.queue-time-buckets",
        ),
        (
            &["--demo", "--web.listen-address", "nowhere"],
            &[],
            "--web.listen-address",
        ),
        (&["--demo", "--no-such-flag"], &[], "--no-such-flag"),
        // No flag for the password: argv is visible to every local user.
        (&["--demo", "--api.password", "x"], &[], "--api.password"),
        (
            &["--api.url", "https://acme.example/goAPI.php"],
            &[],
            "--api.user",
        ),
        (
            &[
                "--api.url",
                "https://acme.example/goAPI.php",
                "--api.user",
                "u",
            ],
            &[],
            "--api.password-file",
        ),
        (
            &["--api.user", "u"],
            &[("CROCODIAL_API_PASSWORD", "x")],
            "--api.url",
        ),
        (
            &["--demo"],
            &[("CROCODIAL_POLL_LOOKBACK", "forever")],
            "--poll.lookback",
        ),
        // A waiting caller is a call in progress.
        (
            &["--demo", "--cdr.waiting-dispositions", "HOLD"],
            &[],
            "--cdr.waiting-dispositions",
        ),
        (
            &["--demo"],
            &[("CROCODIAL_CDR_WAITING_DISPOSITIONS", "QUEUE,PARK")],
            "--cdr.waiting-dispositions",
        ),
    ];
    for (args, env, flag) in cases {
        let out = run(exporter().args(*args).envs(env.iter().copied()));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(flag),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

const BODY: &str = r#"{"result":"success","data":{"rows":[
{"call_date":"2025-05-29 11:00:00","src":"5558675309","dst":"5550100","uniq1":"1.1","queue":"SUPPORT","agent":"agent001","campaign":"CARE","disposition":"Answered","term_reason":"AGENT","queue_time":"12.50","call_duration":"100","lead_id":"10000001","vendor_lead_code":"Jos\u00e9 Garc\u00eda"},
{"call_date":"2025-05-29 11:05:00","src":"5558675310","dst":"5550100","uniq1":"1.2","queue":"SUPPORT","agent":"","campaign":"CARE","disposition":"Abandoned","term_reason":"ABANDON","queue_time":"40","call_duration":"0","vendor_lead_code":"Zo\u00eb M\u00fcller"},
{"call_date":"2025-05-29 11:09:00","src":"5558675311","uniq1":"1.3","queue":"SUPPORT","agent":"agent002","campaign":"CARE","disposition":"INCALL","term_reason":"NONE","queue_time":"3","call_duration":"0"}
],"summary_rows":[{"campaign_name":"CARE","total_leads":"100","handled_calls":"1"}]}}"#;

/// The dialer's zone for the canned answers: a fixed offset at which the real clock reads about
/// noon, whatever the hour the tests run. The binary runs on the real clock, and a first poll's
/// 6h lookback reaches back into yesterday before 06:00, where the day's summary (a campaign's
/// leads) is not served: at noon every run sees the same day.
fn dialer_zone() -> (String, jiff::tz::TimeZone) {
    let utc_hour = i32::from(SystemClock.now().to_zoned(jiff::tz::TimeZone::UTC).hour());
    // Etc/GMT-N is N hours east of UTC (POSIX's inverted sign); tzdb has -14 ..= +12.
    let east = 12 - utc_hour;
    let name = match east {
        0 => "Etc/GMT".to_string(),
        e if e > 0 => format!("Etc/GMT-{e}"),
        e => format!("Etc/GMT+{}", -e),
    };
    let tz = jiff::tz::TimeZone::get(&name).expect("a tzdb zone");
    (name, tz)
}

/// A simulator in this process, answering with `body`. Its calls (at 11:0x on 2025-05-29) move
/// to the hour of 20 minutes ago on the dialer's clock ([`dialer_zone`]), because the binary
/// runs on the real clock: so they are in the window and in the past, and the in-call row stays
/// younger than --cdr.max-pending (2h).
async fn canned_sim(body: &str) -> Sim {
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let recent =
        (SystemClock.now() - jiff::SignedDuration::from_mins(20)).to_zoned(dialer_zone().1);
    let hour = format!("{} {:02}:", recent.date(), recent.hour());
    sim.handle
        .set_answer(200, body.replace("2025-05-29 11:", &hour));
    sim
}

/// The binary pointed at a simulator, with its credentials.
fn pointed_at(sim: &Sim) -> Command {
    let mut cmd = exporter();
    cmd.args([
        "--api.url",
        sim.url.as_str(),
        "--api.user",
        USER,
        "--api.timezone",
        &dialer_zone().0,
    ])
    .env("CROCODIAL_API_PASSWORD", PASSWORD);
    cmd
}

fn once(sim: &Sim, extra: &[&str]) -> Command {
    let mut cmd = pointed_at(sim);
    cmd.arg("--once").args(extra);
    cmd
}

/// The outcome and live-state rules from the environment, as a container would set them.
#[tokio::test(flavor = "multi_thread")]
async fn outcome_rules_come_from_the_environment_too() {
    let sim = canned_sim(BODY).await;
    let mut cmd = once(&sim, &[]);
    cmd.envs([
        // agent001 is a robot here; nothing abandons; an in-call row counts as waiting.
        ("CROCODIAL_CDR_SYSTEM_AGENTS", "AGENT001"),
        ("CROCODIAL_CDR_ABANDON_TERM_REASONS", "NOPE"),
        ("CROCODIAL_CDR_ABANDON_DISPOSITIONS", ""),
        ("CROCODIAL_CDR_WAITING_DISPOSITIONS", "QUEUE,INCALL"),
        // The rows are 11 to 71 minutes old, by the time of day: all still waiting.
        ("CROCODIAL_CDR_MAX_WAIT", "2h"),
    ]);
    let started = SystemClock.now();
    let out = run_blocking(cmd).await;
    let ended = SystemClock.now();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let e = Exposition::parse(&text(&out.stdout));
    let q = |outcome| {
        e.get(
            "crocodial_inbound_queue_time_seconds_count",
            &[
                ("queue", "SUPPORT"),
                ("campaign", "CARE"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(
        (q("answered"), q("abandoned"), q("other")),
        (Some(0.0), Some(0.0), Some(2.0))
    );
    assert_eq!(e.count("crocodial_inbound_agent_calls_total"), 0);
    let live = |state| {
        e.value(
            "crocodial_inbound_calls_in_progress",
            &[("queue", "SUPPORT"), ("campaign", "CARE"), ("state", state)],
        )
    };
    assert_eq!((live("waiting"), live("talking")), (1.0, 0.0));
    // Waiting since its call_date (no enter_on_queue): HH:09:00 of the hour canned_sim moved
    // the rows to, at the moment the binary polled.
    let call = SystemClock.now() - jiff::SignedDuration::from_mins(20);
    let call = call.to_zoned(dialer_zone().1);
    let call = call
        .with()
        .minute(9)
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .expect("time")
        .timestamp();
    let waited = e.value(
        "crocodial_inbound_oldest_wait_seconds",
        &[("queue", "SUPPORT")],
    );
    let (before, after) = (started.duration_since(call), ended.duration_since(call));
    assert!(
        before.as_secs_f64() <= waited && waited <= after.as_secs_f64(),
        "{waited} s, not within {before} .. {after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn once_prints_the_exposition_and_promtool_accepts_it() {
    let sim = canned_sim(BODY).await;
    let cmd = once(&sim, &["--api.tenant", "AAA", "--api.profile", "LOANS"]);
    let out = run_blocking(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let e = Exposition::parse(&stdout);
    let calls = |d: &str, t: &str| {
        e.value(
            "crocodial_inbound_calls_total",
            &[
                ("queue", "SUPPORT"),
                ("campaign", "CARE"),
                ("disposition", d),
                ("term_reason", t),
            ],
        )
    };
    assert_eq!(calls("Answered", "AGENT"), 1.0);
    assert_eq!(calls("Abandoned", "ABANDON"), 1.0);
    assert_eq!(e.count("crocodial_inbound_calls_total"), 2);
    for (outcome, sum) in [("answered", 12.5), ("abandoned", 40.0)] {
        let q = [
            ("queue", "SUPPORT"),
            ("campaign", "CARE"),
            ("outcome", outcome),
        ];
        assert_eq!(e.value("crocodial_inbound_queue_time_seconds_sum", &q), sum);
        assert_eq!(
            e.value("crocodial_inbound_queue_time_seconds_count", &q),
            1.0
        );
    }
    // The in-call row is live: one caller talking, nobody waiting.
    let live = |state| {
        e.value(
            "crocodial_inbound_calls_in_progress",
            &[("queue", "SUPPORT"), ("campaign", "CARE"), ("state", state)],
        )
    };
    assert_eq!(live("talking"), 1.0);
    assert_eq!(live("waiting"), 0.0);
    assert_eq!(
        e.value(
            "crocodial_inbound_oldest_wait_seconds",
            &[("queue", "SUPPORT")]
        ),
        0.0
    );
    assert_eq!(
        e.value("crocodial_cdr_rows_total", &[("result", "pending")]),
        1.0
    );
    assert_eq!(
        e.value("crocodial_campaign_total_leads", &[("campaign", "CARE")]),
        100.0
    );
    assert!(e.value("process_resident_memory_bytes", &[]) > 0.0);
    let build = e
        .samples
        .iter()
        .find(|(n, _, _)| n == "crocodial_exporter_build_info")
        .expect("build info");
    assert_eq!(
        build.1.get("version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(build.2, 1.0);
    for (name, labels, _) in &e.samples {
        if name.starts_with("crocodial_") && name != "crocodial_exporter_build_info" {
            assert_eq!(
                labels.get("target").map(String::as_str),
                Some("127.0.0.1"),
                "{name}"
            );
        }
    }
    // Filters are sent as repeatable form fields.
    let req = sim.handle.requests().pop().expect("a request");
    assert_eq!(req.params_named("tenant[]"), ["AAA"]);
    assert_eq!(req.params_named("profile[]"), ["LOANS"]);
    assert_privacy(
        &stdout,
        &[
            PASSWORD,
            "5558675309",
            "5558675310",
            "José",
            "Zoë",
            "10000001",
        ],
    );
    promtool_check(&stdout);
}

/// `promtool check metrics` must have nothing to say. promtool comes from the distribution's
/// `prometheus` package, which .ci/run installs; without it the check is skipped outside CI.
fn promtool_check(exposition: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED promtool check ({e}): apt-get install prometheus");
            return;
        }
        Err(e) => panic!("promtool is required in CI: {e}"),
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "promtool failed: {said}");
    assert_eq!(said.trim(), "", "promtool had something to say");
}

fn assert_privacy(output: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!output.contains(s), "{s:?} leaked into:\n{output}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn once_failure_exits_non_zero_with_the_classified_error() {
    let sim = canned_sim(r#"{"result":"error","message":"Invalid Username/Password"}"#).await;
    let cmd = once(&sim, &[]);
    let out = run_blocking(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, b"");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(r#"error: poll failed: auth: API said "Invalid Username/Password""#),
        "{stderr}"
    );
    assert_privacy(&stderr, &[PASSWORD]);
}

/// The exporter as a long-running process against live simulated traffic, with debug logs:
/// neither its logs, nor /metrics, nor the landing page carry the password or personal data.
#[tokio::test(flavor = "multi_thread")]
async fn serves_and_never_leaks_personal_data_or_the_password() {
    let traffic = Traffic::new(5, jiff::tz::TimeZone::UTC);
    let sim = SimHandle::new(traffic.clone(), USER, PASSWORD, Arc::new(SystemClock));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = format!(
        "http://{}/goAPIv2/goReports/goAPI.php",
        listener.local_addr().expect("addr")
    );
    let stop = CancellationToken::new();
    tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));

    let dir = std::env::temp_dir().join(format!("croco-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("write");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = exporter()
        .args([
            "--api.url",
            &api,
            "--api.user",
            USER,
            "--api.timezone",
            "UTC",
        ])
        .args(["--api.password-file", pw.to_str().expect("path")])
        .args(["--poll.interval", "300ms", "--log.level", "trace"])
        .args(["--state.file", dir.join("state.db").to_str().expect("path")])
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = KillOnDrop(child);
    wait_ready(&base).await;
    // A few polls, so that the debug and trace logs have seen counted calls.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (metrics, e) = loop {
        let metrics = http_text(&format!("{base}/metrics")).await;
        let e = Exposition::parse(&metrics);
        if e.value("crocodial_polls_total", &[]) >= 3.0 {
            break (metrics, e);
        }
        assert!(Instant::now() < deadline, "fewer than 3 polls in 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(e.value("crocodial_up", &[]), 1.0);
    assert!(e.value("crocodial_polls_total", &[]) >= 3.0);
    assert!(e.value("crocodial_dedup_entries", &[]) > 0.0);
    let landing = http_text(&format!("{base}/")).await;
    assert!(
        landing.contains("<tr><td>127.0.0.1</td><td>yes</td>"),
        "{landing}"
    );
    assert!(landing.contains("success"), "{landing}");

    // Gzip when asked for: the same exposition, compressed.
    let raw = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("gzip scrape");
    assert_eq!(
        raw.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let compressed = raw.bytes().await.expect("body");
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut plain)
        .expect("gunzip");
    assert!(plain.contains("# TYPE crocodial_up gauge"), "{plain}");

    // SIGTERM: a clean exit.
    let pid = child.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0));
    let mut logs = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .expect("logs");
    child
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut logs)
        .expect("logs");
    assert!(logs.contains("crocodial-exporter started"), "{logs}");
    assert!(logs.contains("poll done"), "debug logs expected: {logs}");
    assert!(logs.contains("shutting down"), "{logs}");

    // Everything the simulator could have sent today.
    let now = crocodial_exporter::clock::wall_secs(
        SystemClock
            .now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .datetime(),
    );
    let calls = traffic.calls(now - 2 * 86_400, now + 1, now);
    assert!(!calls.is_empty());
    let mut secrets: Vec<String> = vec![PASSWORD.to_string()];
    for c in &calls {
        secrets.push(c.src.clone());
        secrets.push(c.vendor_lead_code.to_string());
    }
    secrets.sort();
    secrets.dedup();
    let everything = format!("{logs}\n{metrics}\n{landing}");
    for s in &secrets {
        assert!(!everything.contains(s.as_str()), "{s:?} leaked");
    }
    // Label values never carry dst, lead ids or call ids.
    for (_, labels, _) in &e.samples {
        for value in labels.values() {
            assert!(
                !calls.iter().any(|c| *value == c.dst
                    || *value == c.lead_id.to_string()
                    || *value == c.uniq1),
                "{value:?} is a personal or unbounded label value"
            );
        }
    }
    stop.cancel();
}

/// The README's first command: `--demo` needs nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_with_no_other_flag() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let state = std::env::temp_dir().join(format!("croco-demo-{}.db", std::process::id()));
    let child = exporter()
        .arg("--state.file")
        .arg(&state)
        .args([
            "--demo",
            "--poll.interval",
            "500ms",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let _child = KillOnDrop(child);
    wait_ready(&base).await;
    let metrics = http_text(&format!("{base}/metrics")).await;
    let e = Exposition::parse(&metrics);
    assert_eq!(e.value("crocodial_up", &[]), 1.0);
    assert!(
        e.value("crocodial_dedup_entries", &[]) > 0.0,
        "the simulator sent calls"
    );
    let target = e
        .samples
        .iter()
        .find(|(n, _, _)| n == "crocodial_up")
        .map(|s| s.1.clone());
    assert_eq!(
        target.and_then(|l| l.get("target").cloned()).as_deref(),
        Some("demo")
    );
}

/// Two exporters on one state file: the second is refused with a clear message.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_in_use_is_refused_at_start() {
    let sim = canned_sim(BODY).await;
    let state = std::env::temp_dir().join(format!("croco-lock-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&state);
    let port = free_port();
    let first = pointed_at(&sim)
        .arg("--state.file")
        .arg(&state)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let _first = KillOnDrop(first);
    wait_ready(&format!("http://127.0.0.1:{port}")).await;
    let mut second = pointed_at(&sim);
    second
        .arg("--state.file")
        .arg(&state)
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env("CROCODIAL_API_PASSWORD", PASSWORD);
    let out = run_blocking(second).await;
    let held = format!(
        "error: state file {} is held by another running exporter",
        state.display()
    );
    assert_exit(&out, 1, &held);
}

/// A failure is logged once when it starts and once when it ends, not at every poll.
#[tokio::test(flavor = "multi_thread")]
async fn a_lasting_failure_is_logged_once_per_change() {
    let sim = canned_sim(r#"{"result":"error","message":"Invalid Username/Password"}"#).await;
    let port = free_port();
    let child = pointed_at(&sim)
        .args([
            "--poll.interval",
            "50ms",
            "--poll.max-backoff",
            "50ms",
            "--state.file",
            "",
        ])
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .env("CROCODIAL_API_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let auth_errors = || async {
        let body = reqwest::get(format!("{base}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Exposition::parse(&body).get("crocodial_poll_errors_total", &[("reason", "auth")])
    };
    while auth_errors().await.unwrap_or(0.0) < 10.0 {
        assert!(Instant::now() < deadline, "polls did not fail 10 times");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.handle
        .set_answer(200, r#"{"result":"success","data":{"rows":[]}}"#);
    wait_ready(&base).await;
    // Two successful polls: the recovery and one more, which must not log it again.
    let polls = || async {
        let body = http_text(&format!("{base}/metrics")).await;
        Exposition::parse(&body).value("crocodial_polls_total", &[])
    };
    let after_recovery = polls().await;
    while polls().await < after_recovery + 1.0 {
        assert!(Instant::now() < deadline, "no poll after the recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let _ = child.0.wait();
    let mut logs = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .expect("logs");
    assert_eq!(logs.matches("poll failed").count(), 1, "{logs}");
    assert_eq!(logs.matches("API polls succeed again").count(), 1, "{logs}");
    assert!(
        logs.contains(r#"reason=auth error="API said \"Invalid Username/Password\"""#),
        "{logs}"
    );
}

/// `--version` says which build this is: version, git revision, build date and compiler.
#[test]
fn version_names_the_revision_the_build_date_and_the_compiler() {
    let out = run(exporter().arg("--version"));
    assert_eq!(out.status.code(), Some(0));
    let line = text(&out.stdout);
    let expected = format!(
        "crocodial-exporter {} (revision {}, built ",
        env!("CARGO_PKG_VERSION"),
        crocodial_exporter::metrics::collector::REVISION
    );
    assert!(line.starts_with(&expected), "{line}");
    assert!(line.contains(", rustc 1."), "{line}");
}

/// A state file that cannot be opened or created stops the start (exit 2, the path and the
/// reason named) and leaves nothing behind; a port in use stops it before the state file is
/// created; `--state.file ""` runs without one.
#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_state_file_or_a_taken_port_fails_the_start_and_leaves_no_file() {
    let sim = canned_sim(BODY).await;
    let dir = std::env::temp_dir().join(format!("croco-startup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let missing = dir.join("no-such-dir").join("state.db");
    let mut cmd = pointed_at(&sim);
    cmd.arg("--state.file").arg(&missing).args([
        "--web.listen-address",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    let out = run_blocking(cmd).await;
    let refused = format!(
        "error: state file {}: cannot be opened or created: No such file or directory",
        missing.display()
    );
    assert_exit(&out, 2, &refused);
    assert!(!dir.join("no-such-dir").exists());

    // The port is taken: the start fails before the state file is created.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let state = dir.join("state.db");
    let mut cmd = pointed_at(&sim);
    cmd.arg("--state.file")
        .arg(&state)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")]);
    let out = run_blocking(cmd).await;
    assert_exit(&out, 1, &format!("cannot listen on 127.0.0.1:{port}"));
    assert!(!state.exists(), "no state file left behind");
    drop(taken);

    // Without state, explicitly.
    let port = free_port();
    let _child = spawn_quiet(
        pointed_at(&sim)
            .args(["--state.file", ""])
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .current_dir(&dir),
    );
    wait_ready(&format!("http://127.0.0.1:{port}")).await;
    let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `:PORT` listens on every interface of both families, as node_exporter's `:9100` does.
#[tokio::test(flavor = "multi_thread")]
async fn a_port_alone_listens_on_ipv4_and_ipv6() {
    let sim = canned_sim(BODY).await;
    let port = free_port();
    let _child = spawn_quiet(
        pointed_at(&sim)
            .args(["--state.file", ""])
            .args(["--web.listen-address", &format!(":{port}")]),
    );
    wait_ready(&format!("http://127.0.0.1:{port}")).await;
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED the IPv6 half: this host has no IPv6 loopback");
        return;
    }
    let healthy = reqwest::get(format!("http://[::1]:{port}/-/healthy"))
        .await
        .expect("GET over IPv6");
    assert_eq!(healthy.status(), 200);
    assert_eq!(healthy.text().await.expect("body"), "Healthy\n");
}

/// The simulator answers like the platform's web server: 404 outside the API's path, so
/// `--once` with a wrong path fails with a clear error, and `healthcheck` pointed at the
/// simulator's port does not pass.
#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_answers_404_outside_the_api_path() {
    let port = free_port();
    let _sim = spawn_quiet(exporter().args(["simulate", "--listen", &format!("127.0.0.1:{port}")]));
    let api = format!("http://127.0.0.1:{port}/goAPIv2/goReports/goAPI.php");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(&api).await.is_err() {
        assert!(Instant::now() < deadline, "simulate did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let once = |url: String| {
        let mut cmd = exporter();
        cmd.args(["--once", "--api.url", &url, "--api.user", "demo"])
            .env("CROCODIAL_API_PASSWORD", "demo");
        cmd
    };
    let right = once(api.clone());
    let out = run_blocking(right).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let wrong = once(format!("http://127.0.0.1:{port}/goAPIv2/goAPI.php"));
    let out = run_blocking(wrong).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "error: poll failed: http: HTTP status 404 (Not Found: check the path of --api.url, normally /goAPIv2/goReports/goAPI.php)"
        ),
        "{stderr}"
    );
    let mut health = exporter();
    health.args([
        "healthcheck",
        "--web.listen-address",
        &format!("127.0.0.1:{port}"),
    ]);
    let out = run_blocking(health).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

/// The shell commands of README.md, joined where a line ends in `\`, without comments.
fn readme_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = match trimmed.find(" #") {
            Some(i) => trimmed[..i].trim_end(),
            None if trimmed.starts_with('#') => "",
            None => trimmed,
        };
        match code.strip_suffix('\\') {
            Some(start) => pending.push_str(start),
            None => {
                pending.push_str(code);
                if !pending.trim().is_empty() {
                    commands.push(pending.trim().to_string());
                }
                pending.clear();
            }
        }
    }
    commands
}

/// Every command README.md gives runs as written where it can here: each flag it passes to the
/// exporter exists, `--version` runs, the `--once` check runs against the simulator (standing in
/// for the domain), and `promtool check rules` accepts the rules. Commands that install, deploy
/// or need Docker or a cluster are checked for their flags only (CI renders the kustomizations).
#[tokio::test(flavor = "multi_thread")]
async fn readme_commands_run_as_written() {
    let commands = readme_commands();
    assert!(commands.len() > 20, "{commands:?}");
    assert_eq!(commands[0], "cargo run --release -- --demo");
    assert_eq!(commands[1], "cargo test --locked");
    let help = |sub: &[&str]| text(&run(exporter().args(sub).arg("--help")).stdout);
    let main_help = help(&[]);
    let clock = ManualClock::new(SystemClock.now());
    let sim = start_sim(&clock, "UTC", 4).await;
    let mut ran = 0;
    for command in &commands {
        let invoked = command
            .split("crocodial-exporter")
            .nth(1)
            .filter(|_| {
                command.starts_with("crocodial-exporter") || command.starts_with("cargo run")
            })
            .or_else(|| command.strip_prefix("cargo run --release --"));
        if let Some(args) = invoked {
            let sub = args
                .split_whitespace()
                .next()
                .filter(|w| !w.starts_with('-'));
            let flags_help = match sub {
                Some(sub) => help(&[sub]),
                None => main_help.clone(),
            };
            for flag in args
                .split_whitespace()
                .filter(|w| w.starts_with("--"))
                .map(|w| w.split('=').next().unwrap_or(w))
            {
                assert!(flags_help.contains(flag), "{flag} in: {command}");
            }
        }
        if command == "crocodial-exporter --version" {
            let out = run(exporter().arg("--version"));
            assert_eq!(out.status.code(), Some(0));
            ran += 1;
        } else if command.starts_with("crocodial-exporter --once") {
            // The domain is the simulator here; the rest runs as written, through the shell.
            let script = command
                .replacen("crocodial-exporter", BIN, 1)
                .replace(
                    "https://acme.croco-dial.net/goAPIv2/goReports/goAPI.php",
                    sim.url.as_str(),
                )
                .replace("--api.user reports", &format!("--api.user {USER}"));
            let mut sh = Command::new("sh");
            for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CROCODIAL_")) {
                sh.env_remove(k);
            }
            sh.args(["-c", &script])
                .env("CROCODIAL_API_PASSWORD", PASSWORD);
            let out = run_blocking(sh).await;
            assert_eq!(
                out.status.code(),
                Some(0),
                "{script}: {}",
                text(&out.stderr)
            );
            let e = Exposition::parse(&text(&out.stdout));
            assert_eq!(e.value("crocodial_up", &[]), 1.0, "{script}");
            assert!(e.value("crocodial_cdr_rows_total", &[("result", "new")]) > 0.0);
            ran += 1;
        } else if command.starts_with("promtool check rules") {
            if Command::new("promtool").arg("--version").output().is_err() {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "promtool is required in CI"
                );
                continue;
            }
            let out = run(Command::new("sh")
                .args(["-c", command])
                .current_dir(env!("CARGO_MANIFEST_DIR")));
            assert_eq!(
                out.status.code(),
                Some(0),
                "{command}: {}",
                text(&out.stdout)
            );
            ran += 1;
        }
    }
    assert!(ran >= 2, "ran {ran} of {commands:?}");
}

/// `--api.agent` narrows every answer to those agents' rows: the start says what that does to
/// the queue figures (without naming the agents).
#[tokio::test(flavor = "multi_thread")]
async fn api_agent_says_at_start_what_it_does_to_the_queue_figures() {
    let sim = canned_sim(BODY).await;
    let out = run_blocking(once(&sim, &["--api.agent", "agent001"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--api.agent: the API answers only the rows of these agents")
            && stderr.contains("abandons in queue and calls nobody was rung for do not arrive"),
        "{stderr}"
    );
    assert!(!stderr.contains("agent001"), "{stderr}");
    let out = run_blocking(once(&sim, &[])).await;
    assert!(
        !text(&out.stderr).contains("--api.agent"),
        "{}",
        text(&out.stderr)
    );
}
