//! Many Croco-dial domains in one exporter (`--config.file`): two simulated domains with their
//! own users, passwords and time zones, each counted exactly; one failing while the other stays
//! exact; a restart of the whole process exact per target; a reload that adds a domain and
//! removes one, the remaining one's counters continuing, and a removed one put back continuing
//! its own.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fleet::{base_args, serve};
use common::{leg_id, ts, Exposition};
use crocodial_exporter::clock::{wall_secs, Clock, ManualClock};
use crocodial_exporter::config_file::TargetsFile;
use crocodial_exporter::sim::traffic::Phase;
use crocodial_exporter::sim::{SimHandle, Traffic};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// One simulated domain: its own user, password and zone.
struct Domain {
    name: &'static str,
    zone: &'static str,
    user: &'static str,
    password: &'static str,
    handle: SimHandle,
    url: String,
    /// Serves until dropped.
    _sim: common::Sim,
}

async fn domain(
    clock: &ManualClock,
    name: &'static str,
    zone: &'static str,
    seed: u64,
    user: &'static str,
    password: &'static str,
) -> Domain {
    let mut traffic = Traffic::new(seed, TimeZone::get(zone).expect("zone"));
    traffic.peak_calls_per_minute = 3.0;
    let sim = common::start_sim_as(clock, traffic, user, password).await;
    Domain {
        name,
        zone,
        user,
        password,
        handle: sim.handle.clone(),
        url: sim.url.to_string(),
        _sim: sim,
    }
}

/// acme (New York) and globex (Berlin), with their own users and passwords; initech (Kolkata),
/// the one a reload adds. `seed` is acme's, the others' follow.
async fn domains(clock: &ManualClock, seed: u64) -> [Domain; 3] {
    [
        domain(
            clock,
            "acme",
            "America/New_York",
            seed,
            "reports",
            "acme-Secret-1",
        )
        .await,
        domain(
            clock,
            "globex",
            "Europe/Berlin",
            seed + 1,
            "api-globex",
            "gl0bex!pass",
        )
        .await,
        domain(
            clock,
            "initech",
            "Asia/Kolkata",
            seed + 2,
            "ini",
            "tech-Pw-3",
        )
        .await,
    ]
}

/// The legs of `d` that count by `now` (final, or in progress past `max_pending` seconds) among
/// those a poll's window of `lookback_hours` sees then.
fn counted_with(
    d: &Domain,
    now: Timestamp,
    lookback_hours: i64,
    max_pending: i64,
) -> BTreeSet<String> {
    let zone = TimeZone::get(d.zone).expect("zone");
    let wall = wall_secs(now.to_zoned(zone.clone()).datetime());
    let midnight = |t: Timestamp| {
        wall_secs(
            t.to_zoned(zone.clone())
                .date()
                .to_datetime(jiff::civil::Time::midnight()),
        )
    };
    let from = midnight(now - SignedDuration::from_hours(lookback_hours));
    // A binary on the real clock asks up to its own tomorrow (excluded), whatever the
    // simulator's clock says: past the zone's real midnight, the simulator's next day is not
    // asked for yet.
    let real_tomorrow = midnight(crocodial_exporter::clock::SystemClock.now()) + 86_400;
    d.handle
        .traffic()
        .calls(from, (wall + 1).min(real_tomorrow), wall)
        .iter()
        .filter(|c| !c.bad_date)
        .filter(|c| c.phase(wall) == Phase::Final || wall - c.call_date > max_pending)
        .map(leg_id)
        .collect()
}

/// As the exporter's defaults count: a 6 h window, 2 h of max-pending.
fn counted(d: &Domain, now: Timestamp) -> BTreeSet<String> {
    counted_with(d, now, 6, 2 * 3600)
}

fn write_targets(path: &Path, dir: &Path, domains: &[&Domain]) {
    let mut yaml = String::from("targets:\n");
    for d in domains {
        let secret = dir.join(format!("{}.password", d.name));
        std::fs::write(&secret, format!("{}\n", d.password)).expect("password");
        yaml.push_str(&format!(
            "  - name: {}\n    api:\n      url: {}\n      user: {}\n      password_file: {}\n      timezone: {}\n    poll: {{interval: 100ms}}\n",
            d.name,
            d.url,
            d.user,
            secret.display(),
            d.zone
        ));
    }
    std::fs::write(path, yaml).expect("targets file");
}

async fn scrape(base: &str) -> Exposition {
    // Twice: a new series is served at 0 to each scraper once.
    common::http_text(&format!("{base}/metrics")).await;
    Exposition::parse(&common::http_text(&format!("{base}/metrics")).await)
}

/// The sum of `name` over the series of `target`.
fn of(e: &Exposition, name: &str, target: &str) -> f64 {
    e.samples
        .iter()
        .filter(|(n, l, _)| n == name && l.get("target").map(String::as_str) == Some(target))
        .map(|(_, _, v)| v)
        .sum()
}

/// Waits until every target's `crocodial_inbound_calls_total` is as expected (and its last
/// poll is after the clock's instant), failing after a deadline with what it saw.
async fn wait_counts(base: &str, want: &[(&str, usize)]) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = scrape(base).await;
        let got: Vec<(&str, usize)> = want
            .iter()
            .map(|(t, _)| (*t, of(&e, "crocodial_inbound_calls_total", t) as usize))
            .collect();
        if got == want {
            return e;
        }
        assert!(Instant::now() < deadline, "counts {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/-/ready"))
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("croco-targets-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_domains_counted_apart_through_failure_restart_and_reload() {
    let t0 = ts("2025-06-12T14:00:00Z");
    let clock = ManualClock::new(t0);
    let [acme, globex, initech] = domains(&clock, 5).await;
    let dir = temp_dir("fleet");
    let path = dir.join("targets.yml");
    write_targets(&path, &dir, &[&acme, &globex]);
    let file = TargetsFile::new(path.clone(), base_args(&dir.join("state.db")));

    // The first polls mark the calls already in each window as seen.
    let s = serve(&file, &clock).await;
    wait_ready(&s.base).await;
    let (seen_a, seen_g) = (counted(&acme, t0), counted(&globex, t0));
    let new = |d: &Domain, seen: &BTreeSet<String>, at: Timestamp| {
        counted(d, at).difference(seen).count()
    };

    let t1 = t0 + SignedDuration::from_mins(20);
    clock.set(t1);
    let e = wait_counts(
        &s.base,
        &[
            ("acme", new(&acme, &seen_a, t1)),
            ("globex", new(&globex, &seen_g, t1)),
        ],
    )
    .await;
    assert!(new(&acme, &seen_a, t1) > 5 && new(&globex, &seen_g, t1) > 5);
    assert_eq!(of(&e, "crocodial_up", "acme"), 1.0);
    assert_eq!(of(&e, "crocodial_up", "globex"), 1.0);
    assert_eq!(e.count("crocodial_exporter_build_info"), 1);

    // globex fails; acme stays exact and on time.
    globex.handle.set_answer(
        200,
        r#"{"result":"error","message":"Invalid Username/Password"}"#,
    );
    let t2 = t1 + SignedDuration::from_mins(20);
    clock.set(t2);
    let frozen = new(&globex, &seen_g, t1);
    let e = wait_counts(
        &s.base,
        &[("acme", new(&acme, &seen_a, t2)), ("globex", frozen)],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut e = e;
    while of(&e, "crocodial_up", "globex") != 0.0 {
        assert!(Instant::now() < deadline, "globex still up");
        e = scrape(&s.base).await;
    }
    assert_eq!(of(&e, "crocodial_up", "acme"), 1.0);
    assert_eq!(
        e.samples
            .iter()
            .filter(|(n, l, _)| n == "crocodial_poll_errors_total"
                && l.get("target").map(String::as_str) == Some("globex")
                && l.get("reason").map(String::as_str) == Some("auth"))
            .map(|(_, _, v)| *v > 0.0)
            .collect::<Vec<_>>(),
        [true],
        "globex's auth errors counted"
    );
    let page = common::http_text(&s.base).await;
    assert!(page.contains("<td>globex</td><td>no</td>"), "{page}");
    globex.handle.clear_answer();

    // A restart of the process (here: the fleet stopped and started on the same files).
    s.fleet.shutdown().await;
    drop(s._stop);
    let t3 = t2 + SignedDuration::from_mins(20);
    clock.set(t3);
    let s = serve(&file, &clock).await;
    wait_counts(
        &s.base,
        &[
            ("acme", new(&acme, &seen_a, t3)),
            ("globex", new(&globex, &seen_g, t3)),
        ],
    )
    .await;

    // A reload: initech comes, globex goes; acme continues.
    write_targets(&path, &dir, &[&acme, &initech]);
    let mut s = s;
    s.fleet.reload().await.expect("reload");
    assert_eq!(s.fleet.names(), ["acme", "initech"]);
    let seen_i = counted(&initech, t3);
    wait_ready(&s.base).await;
    let e = scrape(&s.base).await;
    assert_eq!(
        of(&e, "crocodial_up", "globex"),
        0.0,
        "globex left /metrics"
    );
    assert!(!e.text.contains("target=\"globex\""));
    assert_eq!(e.value("crocodial_config_last_reload_successful", &[]), 1.0);
    let t4 = t3 + SignedDuration::from_mins(20);
    clock.set(t4);
    wait_counts(
        &s.base,
        &[
            ("acme", new(&acme, &seen_a, t4)),
            ("initech", new(&initech, &seen_i, t4)),
        ],
    )
    .await;

    // A bad file keeps the running set and says why.
    std::fs::write(&path, "targets:\n  - name: acme\n    api: {colour: blue}\n").expect("write");
    let error = s.fleet.reload().await.expect_err("bad file");
    assert!(
        error.contains("target acme: api.colour: unknown key"),
        "{error}"
    );
    assert_eq!(s.fleet.names(), ["acme", "initech"]);
    let e = scrape(&s.base).await;
    assert_eq!(e.value("crocodial_config_last_reload_successful", &[]), 0.0);

    // globex put back continues its own counters: every leg once since its first poll; acme,
    // changed (another interval), restarts on its state.
    write_targets(&path, &dir, &[&acme, &initech, &globex]);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replacen("interval: 100ms", "interval: 150ms", 1),
    )
    .expect("write");
    s.fleet.reload().await.expect("reload");
    let t5 = t4 + SignedDuration::from_mins(20);
    clock.set(t5);
    wait_counts(
        &s.base,
        &[
            ("acme", new(&acme, &seen_a, t5)),
            ("initech", new(&initech, &seen_i, t5)),
            ("globex", new(&globex, &seen_g, t5)),
        ],
    )
    .await;
    // Removed for longer than --state.retain-removed (7 days), its state is dropped: put back
    // then, globex starts afresh (its first poll marks its window as seen).
    write_targets(&path, &dir, &[&acme, &initech]);
    s.fleet.reload().await.expect("reload");
    let t6 = t5 + SignedDuration::from_hours(8 * 24);
    clock.set(t6);
    s.fleet.reload().await.expect("reload: the expiry runs");
    write_targets(&path, &dir, &[&acme, &initech, &globex]);
    s.fleet.reload().await.expect("reload");
    wait_ready(&s.base).await;
    let e = scrape(&s.base).await;
    assert_eq!(of(&e, "crocodial_inbound_calls_total", "globex"), 0.0);
    assert_eq!(of(&e, "crocodial_up", "globex"), 1.0);
    s.fleet.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--demo --sim.targets 2`: two simulated domains in one command, each polled and served.
#[tokio::test]
async fn the_demo_runs_several_simulated_domains() {
    use std::process::{Command, Stdio};
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _child = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_crocodial-exporter"))
            .args(["--demo", "--sim.targets", "2", "--state.file", ""])
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args(["--log.level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    wait_ready(&base).await;
    let e = scrape(&base).await;
    let ups: Vec<(String, f64)> = e
        .samples
        .iter()
        .filter(|(n, _, _)| n == "crocodial_up")
        .map(|(_, l, v)| (l["target"].clone(), *v))
        .collect();
    assert_eq!(
        ups,
        [("demo-1".to_string(), 1.0), ("demo-2".to_string(), 1.0)]
    );
    let page = common::http_text(&base).await;
    assert!(
        page.contains("<td>demo-1</td><td>yes</td>")
            && page.contains("<td>demo-2</td><td>yes</td>"),
        "{page}"
    );
}

/// What a targets file must not hold: each refused naming the file, the target and the key.
#[test]
fn a_targets_file_is_refused_with_the_file_the_target_and_the_key() {
    let dir = temp_dir("refusals");
    let path = dir.join("targets.yml");
    let secret = dir.join("secret");
    std::fs::write(&secret, "pw\n").expect("secret");
    let file = TargetsFile::new(path.clone(), base_args(&dir.join("state.db")));
    let target = |name: &str, api: &str| {
        format!("  - name: {name}\n    api: {{url: https://x.croco-dial.net/goAPIv2/goReports/goAPI.php, user: u, password_file: {}{api}}}\n", secret.display())
    };
    let refused = |yaml: String| {
        std::fs::write(&path, yaml).expect("write");
        file.load(&|_| None).expect_err("refused").to_string()
    };
    let at = path.display().to_string();
    assert_eq!(
        refused(format!("targets:\n{}{}", target("a", ""), target("a", ""))),
        format!("{at}: target a: name: used by another target; names are unique")
    );
    assert_eq!(
        refused(format!("targets:\n{}", target("a", ", colour: blue"))),
        format!("{at}: target a: api.colour: unknown key: no flag --api.colour")
    );
    assert_eq!(
        refused(format!("targets:\n{}", target("a", ", password: hunter2"))),
        format!("{at}: target a: api.password: passwords are not written in this file: use password_file (a file) or password_env (an environment variable)")
    );
    assert_eq!(
        refused("targets:\n  - name: a\n    api: {url: https://x.croco-dial.net/goAPIv2/goReports/goAPI.php, user: u, password_env: NOPE}\n".into()),
        format!("{at}: target a: api.password_env: environment variable \"NOPE\" is not set")
    );
    assert_eq!(
        refused("targets:\n  - name: b\n    api: {url: https://x.croco-dial.net/, user: u, password_file: /nonexistent/pw}\n".into()),
        format!("{at}: target b: api.password_file: cannot read /nonexistent/pw: No such file or directory (os error 2)")
    );
    assert_eq!(
        refused(format!("targets:\n{}    poll: {{interval: soon}}\n", target("c", ""))),
        format!("{at}: target c: invalid value 'soon' for '--poll.interval <DURATION>': expected number at 0 (write durations like 500ms, 30s, 5m, 6h)")
    );
    assert_eq!(
        refused(format!("targets:\n{}    web: {{}}\n", target("c", ""))),
        format!("{at}: target c: web: unknown key (expected name, api, poll, cdr, queue, queues, staffing)")
    );
    assert_eq!(
        refused(format!("targets:\n{}", target("a", ", target-name: b"))),
        format!("{at}: target a: api.target_name: the target's name is its `name`")
    );
    assert_eq!(
        refused(format!("targets:\n{}", target("a", ", password_env: E_PW"))),
        format!("{at}: target a: api.password_env: and password_file: give one")
    );
    let leaked = refused(
        "targets:\n  - name: a\n    api: {url: 'https://u:S3cret@x.croco-dial.net/goAPIv2/goReports/goAPI.php', user: u}\n".into(),
    );
    assert_eq!(
        leaked,
        format!("{at}: target a: api.url: has a user or password in it: use user, and password_file or password_env")
    );
    // A key replaces the command line's value, a list included; the flag's spelling is the
    // same key.
    let mut args = base_args(&dir.join("state.db"));
    args.extend(["--api.tenant=ABC", "--api.insecure-skip-verify"].map(OsString::from));
    let with_flags = TargetsFile::new(path.clone(), args);
    std::fs::write(
        &path,
        format!(
            "targets:\n{}{}",
            target("f", ", tenant: [DEF], insecure_skip_verify: false"),
            target("g", "")
        ) + "    cdr: {max-pending: 90m}\n",
    )
    .expect("write");
    let configs = with_flags.load(&|_| None).expect("loads");
    let api = |i: usize| match &configs[i].api {
        crocodial_exporter::config::ApiSource::Remote(api) => (**api).clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (api(0).tenants, api(0).insecure_skip_verify),
        (vec!["DEF".to_string()], false)
    );
    assert_eq!(
        (api(1).tenants, api(1).insecure_skip_verify),
        (vec!["ABC".to_string()], true)
    );
    assert_eq!(configs[1].cdr.max_pending, Duration::from_secs(90 * 60));
    // The binary refuses such a file at start: exit 2, the message on stderr.
    std::fs::write(
        &path,
        format!("targets:\n{}", target("a", ", colour: blue")),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crocodial-exporter"))
        .arg("--config.file")
        .arg(&path)
        .args(["--state.file", ""])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: {at}: target a: api.colour: unknown key: no flag --api.colour\n")
    );
    // Settings per target, flags as defaults, the password from a named variable.
    std::fs::write(
        &path,
        format!(
            "targets:\n{}    cdr: {{max_pending: 3h}}\n  - name: e\n    api: {{url: https://e.croco-dial.net/goAPIv2/goReports/goAPI.php, user: u, password_env: E_PW, tenant: [ACM, XYZ], timezone: Asia/Kolkata}}\n",
            target("d", "")
        ),
    )
    .expect("write");
    let configs = file
        .load(&|name| (name == "E_PW").then(|| "from-env".to_string()))
        .expect("loads");
    assert_eq!(configs.len(), 2);
    assert_eq!(
        (configs[0].target.as_str(), configs[1].target.as_str()),
        ("d", "e")
    );
    assert_eq!(configs[0].cdr.max_pending, Duration::from_secs(3 * 3600));
    assert_eq!(configs[1].cdr.max_pending, Duration::from_secs(2 * 3600));
    assert_eq!(configs[1].timezone.name, "Asia/Kolkata");
    assert_eq!(
        configs[0].timeout,
        Duration::from_secs(5),
        "the flags' default"
    );
    match &configs[1].api {
        crocodial_exporter::config::ApiSource::Remote(api) => {
            assert_eq!(api.password.expose(), "from-env");
            assert_eq!(api.tenants, ["ACM", "XYZ"]);
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary with `--config.file`: exact per target across a kill -9 and a restart; SIGHUP
/// rereads the file (a domain added, one removed); `POST /-/reload` with
/// `--web.enable-lifecycle` refuses a bad file with its reason and keeps the running set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_survives_kill_9_per_target_and_reloads_on_sighup_and_post() {
    use crocodial_exporter::clock::SystemClock;
    use std::process::{Command, Stdio};
    let t0 = SystemClock.now();
    let clock = ManualClock::new(t0);
    let [acme, globex, initech] = domains(&clock, 8).await;
    let dir = temp_dir("binary");
    let path = dir.join("targets.yml");
    write_targets(&path, &dir, &[&acme, &globex]);
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_crocodial-exporter"))
            .arg("--config.file")
            .arg(&path)
            .arg("--state.file")
            .arg(dir.join("state.db"))
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .arg("--web.enable-lifecycle")
            // Whatever the hour: yesterday and today in every window, nothing waits a day.
            .args(["--poll.lookback", "25h", "--cdr.max-pending", "24h"])
            .args(["--log.level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    // As the flags below count.
    let counted = |d: &Domain, at: Timestamp| counted_with(d, at, 25, 24 * 3600);
    let new = |d: &Domain, seen: &BTreeSet<String>, at: Timestamp| {
        counted(d, at).difference(seen).count()
    };
    let mut child = common::KillOnDrop(start());
    wait_ready(&base).await;
    let (seen_a, seen_g) = (counted(&acme, t0), counted(&globex, t0));
    let t1 = t0 + SignedDuration::from_mins(20);
    clock.set(t1);
    wait_counts(
        &base,
        &[
            ("acme", new(&acme, &seen_a, t1)),
            ("globex", new(&globex, &seen_g, t1)),
        ],
    )
    .await;

    // kill -9, calls go on while it is down, and the restart counts each once.
    child.0.kill().expect("kill -9");
    let _ = child.0.wait();
    let t2 = t1 + SignedDuration::from_mins(20);
    clock.set(t2);
    child = common::KillOnDrop(start());
    wait_ready(&base).await;
    wait_counts(
        &base,
        &[
            ("acme", new(&acme, &seen_a, t2)),
            ("globex", new(&globex, &seen_g, t2)),
        ],
    )
    .await;

    // SIGHUP: initech comes, globex goes.
    write_targets(&path, &dir, &[&acme, &initech]);
    let hup = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = scrape(&base).await;
        if of(&e, "crocodial_up", "initech") == 1.0 && !e.text.contains("target=\"globex\"") {
            assert_eq!(e.value("crocodial_config_last_reload_successful", &[]), 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "no reload:\n{}", e.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen_i = counted(&initech, t2);
    let t3 = t2 + SignedDuration::from_mins(20);
    clock.set(t3);
    wait_counts(
        &base,
        &[
            ("acme", new(&acme, &seen_a, t3)),
            ("initech", new(&initech, &seen_i, t3)),
        ],
    )
    .await;

    // POST /-/reload: a bad file is refused with its reason; the targets keep running.
    std::fs::write(&path, "targets: []\n").expect("write");
    let res = reqwest::Client::new()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 500);
    let body = res.text().await.expect("body");
    assert!(body.contains("targets: no targets"), "{body}");
    let e = scrape(&base).await;
    assert_eq!(e.value("crocodial_config_last_reload_successful", &[]), 0.0);
    assert_eq!(of(&e, "crocodial_up", "acme"), 1.0);
    assert_eq!(of(&e, "crocodial_up", "initech"), 1.0);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

/// 50 reloads in about a second, each changing acme (its max wait, back and forth), globex
/// untouched: acme is restarted each time on its state but keeps its poll schedule, so it
/// polls at most once more than its interval allows; globex not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_reloads_polls_a_changed_target_at_most_once_more() {
    let clock = ManualClock::new(ts("2025-06-12T14:00:00Z"));
    let [acme, globex, _] = domains(&clock, 6).await;
    let dir = temp_dir("burst");
    let path = dir.join("targets.yml");
    let write = |max_wait: &str| {
        let mut yaml = String::from("targets:\n");
        for d in [&acme, &globex] {
            let secret = dir.join(format!("{}.password", d.name));
            std::fs::write(&secret, format!("{}\n", d.password)).expect("password");
            let cdr = if d.name == "acme" {
                format!("    cdr: {{max_wait: {max_wait}}}\n")
            } else {
                String::new()
            };
            yaml.push_str(&format!(
                "  - name: {}\n    api: {{url: {}, user: {}, password_file: {}, timezone: {}}}\n    poll: {{interval: 30s}}\n{cdr}",
                d.name,
                d.url,
                d.user,
                secret.display(),
                d.zone
            ));
        }
        std::fs::write(&path, yaml).expect("targets file");
    };
    write("1h");
    let file = TargetsFile::new(path.clone(), base_args(&dir.join("state.db")));
    let mut s = serve(&file, &clock).await;
    wait_ready(&s.base).await;
    let (a0, g0) = (acme.handle.requests().len(), globex.handle.requests().len());
    assert_eq!((a0, g0), (1, 1), "one poll each at the start");
    let started = Instant::now();
    for i in 0..50 {
        write(if i % 2 == 0 { "2h" } else { "1h" });
        s.fleet.reload().await.expect("reload");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Time for any poll a reload would have started at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a1, g1) = (acme.handle.requests().len(), globex.handle.requests().len());
    let allowed = 1 + usize::from(started.elapsed() >= Duration::from_secs(29));
    assert!(a1 - a0 < allowed + 1, "acme polled {} more times", a1 - a0);
    assert_eq!(g1, g0, "globex did not change");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the runbook tells a user with a wrong zone to do, done wrong and undone: acme's zone
/// is set by reload to Kiritimati (UTC+14), where its window already starts on the next day,
/// then back to New York. The legs of the dialer's day are kept meanwhile: none counts twice,
/// and those that ended while the window looked at the wrong day count once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_changed_by_reload_past_midnight_and_back_counts_every_call_once() {
    // 15:30 in New York on the 12th; 09:30 on the 13th in Kiritimati, 6 h after its midnight.
    let t0 = ts("2025-06-12T19:30:00Z");
    let clock = ManualClock::new(t0);
    let [acme, _, _] = domains(&clock, 9).await;
    let dir = temp_dir("zone");
    let path = dir.join("targets.yml");
    let write = |zone: &str| {
        let secret = dir.join("acme.password");
        std::fs::write(&secret, format!("{}\n", acme.password)).expect("password");
        let yaml = format!(
            "targets:\n  - name: acme\n    api: {{url: {}, user: {}, password_file: {}, timezone: {zone}}}\n    poll: {{interval: 100ms}}\n",
            acme.url,
            acme.user,
            secret.display(),
        );
        std::fs::write(&path, yaml).expect("targets file");
    };
    write(acme.zone);
    let file = TargetsFile::new(path.clone(), base_args(&dir.join("state.db")));
    let mut s = serve(&file, &clock).await;
    wait_ready(&s.base).await;
    let seen = counted(&acme, t0);
    let new = |at: Timestamp| counted(&acme, at).difference(&seen).count();
    let t1 = t0 + SignedDuration::from_mins(20);
    clock.set(t1);
    wait_counts(&s.base, &[("acme", new(t1))]).await;

    write("Pacific/Kiritimati");
    s.fleet.reload().await.expect("reload");
    let asked = acme.handle.requests().len();
    clock.set(t1 + SignedDuration::from_mins(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !acme.handle.requests()[asked..]
        .iter()
        .any(|r| r.param("fromDate") == Some("2025-06-13"))
    {
        assert!(Instant::now() < deadline, "no poll in the new zone");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = scrape(&s.base).await;
    assert_eq!(
        of(&e, "crocodial_inbound_calls_total", "acme") as usize,
        new(t1),
        "the wrong day holds no calls yet"
    );
    assert_eq!(of(&e, "crocodial_cdr_calls_dropped_total", "acme"), 0.0);

    write(acme.zone);
    s.fleet.reload().await.expect("reload");
    let t3 = t1 + SignedDuration::from_mins(40);
    clock.set(t3);
    assert!(
        new(t3) > new(t1) + 5,
        "calls ended while the zone was wrong"
    );
    let e = wait_counts(&s.base, &[("acme", new(t3))]).await;
    // Held: a few more polls change nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e2 = scrape(&s.base).await;
    assert_eq!(
        of(&e2, "crocodial_inbound_calls_total", "acme"),
        of(&e, "crocodial_inbound_calls_total", "acme")
    );
    assert_eq!(
        e2.value("crocodial_cdr_rows_total", &[("result", "new")]),
        new(t3) as f64
    );
    assert_eq!(of(&e2, "crocodial_cdr_calls_dropped_total", "acme"), 0.0);
    s.fleet.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
