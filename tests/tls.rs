//! TLS both ways: to a Croco-dial that serves a private CA's certificate (--api.ca-file,
//! --api.insecure-skip-verify), and /metrics behind TLS, client certificates, basic auth and
//! headers from an exporter-toolkit web config that is re-read when it changes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use crocodial_exporter::clock::ManualClock;
use crocodial_exporter::vocab::Reason;
use crocodial_exporter::web::WebConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A CA, a server certificate for localhost and 127.0.0.1, and a client certificate, as PEM
    /// files: ca.crt, server.crt, server.key, client.pem (certificate and key).
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("croco-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "croco test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut p = CertificateParams::new(names).expect("params");
            p.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, &ca).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(
            vec!["prometheus".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write");
        std::fs::write(dir.join("server.crt"), server).expect("write");
        std::fs::write(dir.join("server.key"), server_key).expect("write");
        std::fs::write(dir.join("client.pem"), format!("{client}{client_key}")).expect("write");
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ca(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(&std::fs::read(self.path("ca.crt")).expect("ca"))
            .expect("pem")
    }

    fn client(&self, identity: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(self.ca())
            .timeout(Duration::from_secs(5));
        if identity {
            let pem = std::fs::read(self.path("client.pem")).expect("client");
            b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
        }
        b.build().expect("client")
    }
}

fn write_config(path: &Path, yaml: &str) {
    // Written whole, then renamed, as config management does.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, yaml).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test]
async fn polls_an_api_with_a_private_ca() {
    let pki = Pki::new("api");
    let web_path = pki.path("sim-web.yml");
    write_config(
        &web_path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await; // only for its handle's traffic and answers
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let web = Arc::new(WebConfig::load(&web_path).expect("web config"));
    tokio::spawn(sim.handle.clone().serve_with(
        listener,
        stop.clone().cancelled_owned(),
        Some(web),
    ));
    let url = url::Url::parse(&format!(
        "https://localhost:{}/goAPIv2/goReports/goAPI.php",
        addr.port()
    ))
    .expect("url");
    sim.handle
        .set_answer(200, r#"{"result":"success","data":{"rows":[]}}"#);

    // The system's roots do not know the private CA.
    let mut ex = start_exporter(&config(&url, "UTC"), &clock).await;
    let err = ex.exporter.poller.poll().await.expect_err("unknown issuer");
    assert_eq!(err.reason, Reason::Connect);
    assert!(err.message.contains("UnknownIssuer"), "{}", err.message);

    let mut cfg = config(&url, "UTC");
    if let crocodial_exporter::config::ApiSource::Remote(api) = &mut cfg.api {
        api.ca_file = Some(pki.path("ca.crt"));
    }
    let mut ex = start_exporter(&cfg, &clock).await;
    ex.exporter.poller.poll().await.expect("with --api.ca-file");

    let mut cfg = config(&url, "UTC");
    if let crocodial_exporter::config::ApiSource::Remote(api) = &mut cfg.api {
        api.insecure_skip_verify = true;
    }
    let mut ex = start_exporter(&cfg, &clock).await;
    ex.exporter
        .poller
        .poll()
        .await
        .expect("with --api.insecure-skip-verify");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_behind_tls_basic_auth_and_client_certificates() {
    let pki = Pki::new("metrics");
    let hash = bcrypt::hash("s3cret-scrape", 4).expect("hash");
    let web_path = pki.path("web.yml");
    write_config(
        &web_path,
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: DENY\n    Strict-Transport-Security: max-age=31536000\n"
        ),
    );
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let mut cfg = config(&sim.url, "UTC");
    cfg.web_config_file = Some(web_path.clone());
    let ex = start_exporter(&cfg, &clock).await;
    let https = ex
        .base
        .replace("http://", "https://")
        .replace("127.0.0.1", "localhost");
    let client = pki.client(false);
    let get = |user: Option<(&str, &str)>, path: &str| {
        let mut req = client.get(format!("{https}{path}"));
        if let Some((u, p)) = user {
            req = req.basic_auth(u, Some(p));
        }
        req.send()
    };

    let res = get(Some(("prometheus", "s3cret-scrape")), "/metrics")
        .await
        .expect("scrape");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("x-frame-options").map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );
    assert_eq!(
        res.headers()
            .get("strict-transport-security")
            .map(|v| v.as_bytes()),
        Some(&b"max-age=31536000"[..])
    );
    assert!(res.text().await.expect("body").contains("crocodial_up"));
    for (user, status) in [
        (Some(("prometheus", "wrong")), 401),
        (Some(("nobody", "s3cret-scrape")), 401),
        (None, 401),
    ] {
        let res = get(user, "/metrics").await.expect("request");
        assert_eq!(res.status(), status, "{user:?}");
        assert_eq!(
            res.headers().get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Basic realm=\"crocodial-exporter\""[..])
        );
        assert!(!res.text().await.expect("body").contains("crocodial_"));
    }
    // Every endpoint is protected.
    assert_eq!(get(None, "/").await.expect("landing").status(), 401);

    // Plain HTTP to the TLS listener fails; so does a client that does not trust the CA.
    assert!(
        reqwest::get(format!("{}/metrics", ex.base)).await.is_err(),
        "plain HTTP must fail"
    );
    let untrusting = reqwest::Client::builder().build().expect("client");
    let err = untrusting
        .get(format!("{https}/metrics"))
        .send()
        .await
        .expect_err("unknown CA");
    assert!(err.is_connect(), "{err}");

    // A new password and a client certificate requirement take effect without a restart.
    let hash2 = bcrypt::hash("rotated", 4).expect("hash");
    write_config(
        &web_path,
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\nbasic_auth_users:\n  prometheus: {hash2}\n"
        ),
    );
    let with_cert = pki.client(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = with_cert
            .get(format!("{https}/metrics"))
            .basic_auth("prometheus", Some("rotated"))
            .send()
            .await;
        if res.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "reload not seen: {res:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old = with_cert
        .get(format!("{https}/metrics"))
        .basic_auth("prometheus", Some("s3cret-scrape"))
        .send()
        .await
        .expect("request");
    assert_eq!(old.status(), 401);
    // Without a client certificate a new connection's handshake is refused (connections made
    // before the change keep the settings of their handshake, as with any TLS server).
    let no_cert = pki
        .client(false)
        .get(format!("{https}/metrics"))
        .basic_auth("prometheus", Some("rotated"))
        .send()
        .await;
    assert!(
        no_cert.is_err(),
        "a client certificate is required: {no_cert:?}"
    );

    // A broken edit keeps the settings in force, once the exporter has seen it.
    let reloaded = |ok: f64| {
        let with_cert = &with_cert;
        let https = &https;
        async move {
            let res = with_cert
                .get(format!("{https}/metrics"))
                .basic_auth("prometheus", Some("rotated"))
                .send()
                .await
                .expect("request");
            let e = Exposition::parse(&res.text().await.expect("body"));
            e.get("crocodial_web_config_last_reload_successful", &[]) == Some(ok)
        }
    };
    assert!(reloaded(1.0).await);
    write_config(&web_path, "tls_server_config: [this is not valid\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reloaded(0.0).await {
        assert!(Instant::now() < deadline, "the broken edit was never read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still = with_cert
        .get(format!("{https}/metrics"))
        .basic_auth("prometheus", Some("rotated"))
        .send()
        .await
        .expect("request");
    assert_eq!(still.status(), 200);
}

#[test]
fn bad_web_configs_are_refused_with_a_reason() {
    let pki = Pki::new("bad");
    let cases = [
        ("basic_auth_users:\n  u: plaintext\n", "the hash of \"u\" is not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n", "nope.crt"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
        ("unknown_key: 1\n", "unknown field"),
    ];
    for (yaml, want) in cases {
        let path = pki.path("bad.yml");
        write_config(&path, yaml);
        let err = WebConfig::load(&path).expect_err(yaml).to_string();
        assert!(err.contains(want), "{yaml}: {err}");
        assert!(
            err.starts_with(&format!("web config {}: ", path.display())),
            "{err}"
        );
    }
}

/// `crocodial-exporter healthcheck` against a running exporter, as the image's HEALTHCHECK runs
/// it: by the exporter's own listen address and web config, taken from flags or from the
/// environment the container shares with the exporter.
#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_asks_a_running_exporter_with_and_without_tls_and_basic_auth() {
    async fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crocodial-exporter"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CROCODIAL_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("healthcheck").args(args).envs(env.iter().copied());
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("run"))
            .await
            .expect("join");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
    let clock = ManualClock::new(ts("2025-05-29T12:00:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;

    // Plain HTTP. 0.0.0.0 (every interface) is asked on loopback.
    let plain = start_exporter(&config(&sim.url, "UTC"), &clock).await;
    let addr = plain.base.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().expect("port").to_string();
    assert_eq!(
        healthcheck(&["--web.listen-address", &addr], &[]).await.0,
        Some(0)
    );
    let every = format!("0.0.0.0:{port}");
    assert_eq!(
        healthcheck(&["--web.listen-address", &every], &[]).await.0,
        Some(0)
    );
    let colon = format!(":{port}");
    let env = [("CROCODIAL_WEB_LISTEN_ADDRESS", colon.as_str())];
    assert_eq!(healthcheck(&[], &env).await.0, Some(0));
    drop(plain);
    let flags = ["--web.listen-address", addr.as_str()];
    let (code, stderr) = wait_for_exit_1(|| healthcheck(&flags, &[])).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("/-/healthy"), "{stderr}");

    // TLS and basic auth from the web config.
    let pki = Pki::new("healthcheck");
    let hash = bcrypt::hash("s3cret-health", 4).expect("hash");
    let web_path = pki.path("web.yml");
    write_config(
        &web_path,
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    );
    let mut cfg = config(&sim.url, "UTC");
    cfg.web_config_file = Some(web_path.clone());
    let secured = start_exporter(&cfg, &clock).await;
    let addr = secured.base.trim_start_matches("http://").to_string();
    let web = web_path.to_str().expect("path");
    let flags = ["--web.listen-address", &addr, "--web.config.file", web];
    let (code, stderr) = healthcheck(&flags, &[]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("requires basic auth"), "{stderr}");
    let user = ("CROCODIAL_HEALTHCHECK_USER", "prometheus");
    let (code, stderr) =
        healthcheck(&flags, &[user, ("CROCODIAL_HEALTHCHECK_PASSWORD", "wrong")]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("status 401"), "{stderr}");
    assert!(!stderr.contains("wrong"), "{stderr}");
    let (code, stderr) = healthcheck(
        &flags,
        &[user, ("CROCODIAL_HEALTHCHECK_PASSWORD", "s3cret-health")],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    // The password from a file; the listen address and web config from the environment.
    let secret = pki.path("health-password");
    std::fs::write(&secret, "s3cret-health\n").expect("write");
    let env = [
        ("CROCODIAL_WEB_LISTEN_ADDRESS", addr.as_str()),
        ("CROCODIAL_WEB_CONFIG_FILE", web),
        user,
        (
            "CROCODIAL_HEALTHCHECK_PASSWORD_FILE",
            secret.to_str().expect("path"),
        ),
    ];
    let (code, stderr) = healthcheck(&[], &env).await;
    assert_eq!(code, Some(0), "{stderr}");
    // Plain HTTP to a TLS exporter is not healthy.
    let (code, _) = healthcheck(&["--web.listen-address", &addr], &[]).await;
    assert_eq!(code, Some(1));
}

/// Runs `check` until it exits 1 (a stopped server may take a moment to close its listener).
async fn wait_for_exit_1<F, Fut>(check: F) -> (Option<i32>, String)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (Option<i32>, String)>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, stderr) = check().await;
        if code == Some(1) || Instant::now() > deadline {
            return (code, stderr);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// exporter-toolkit settings the exporter does not apply load with a warning and are listed;
/// an unknown one is refused like any typo.
#[test]
fn settings_that_are_not_applied_are_listed_and_typos_refused() {
    let pki = Pki::new("ignored");
    let path = pki.path("web.yml");
    write_config(
        &path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\nhttp_server_config:\n  http2: false\n",
    );
    let web = WebConfig::load(&path).expect("loads");
    assert_eq!(
        web.current().ignored,
        [
            "tls_server_config.cipher_suites",
            "tls_server_config.min_version",
            "http_server_config.http2"
        ]
    );
    write_config(
        &path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_versoin: TLS13\n",
    );
    let err = WebConfig::load(&path).expect_err("typo").to_string();
    assert!(err.contains("unknown field `min_versoin`"), "{err}");
}

/// An unknown user costs the same bcrypt work as a known one with a wrong password: the time
/// of a refusal does not tell which users exist.
#[test]
fn an_unknown_user_costs_as_much_as_a_wrong_password() {
    let pki = Pki::new("timing");
    let path = pki.path("web.yml");
    let hash = bcrypt::hash("right", 10).expect("hash");
    write_config(&path, &format!("basic_auth_users:\n  prometheus: {hash}\n"));
    let web = WebConfig::load(&path).expect("loads");
    let security = web.current();
    let header = |user: &str, password: &str| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        hyper::header::HeaderValue::from_str(&format!("Basic {b64}")).expect("header")
    };
    // The fastest of a few tries of each, so that a busy machine does not decide.
    let time = |user: &str, password: &str| {
        (0..3)
            .map(|_| {
                let start = Instant::now();
                assert!(!web.authorized(&security, Some(&header(user, password))));
                start.elapsed()
            })
            .min()
            .expect("tries")
    };
    let wrong_password = time("prometheus", "wrong");
    let unknown_user = time("nobody", "wrong");
    assert!(
        unknown_user * 3 > wrong_password,
        "unknown user {unknown_user:?}, wrong password {wrong_password:?}"
    );
    assert!(web.authorized(&security, Some(&header("prometheus", "right"))));
}

/// `backfill --remote-write` to a receiver behind TLS that a private CA signed: refused at once
/// without `--remote-write.ca-file` (a certificate stays untrusted: no retries), sent with it,
/// with basic auth from the password file's user and password.
#[tokio::test]
async fn remote_write_to_a_receiver_with_a_private_ca_and_basic_auth() {
    use crocodial_exporter::config::{
        BackfillConfig, Day, Destination, LeStyle, RemoteWrite, RemoteWriteAuth,
    };
    let pki = Pki::new("remote-write");
    let web_path = pki.path("receiver-web.yml");
    write_config(
        &web_path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let web = Arc::new(WebConfig::load(&web_path).expect("web config"));
    let receiver = common::receiver::Receiver::start(Some(web)).await;
    let clock = ManualClock::new(ts("2025-05-29T00:30:00Z"));
    let sim = start_sim(&clock, "UTC", 1).await;
    let api = api_config(&sim.url);
    let mut rw = RemoteWrite {
        url: receiver.url.parse().expect("url"),
        auth: Some(RemoteWriteAuth::Basic {
            user: "writer".into(),
            password: "s3cret".into(),
        }),
        ca_file: None,
        headers: Vec::new(),
        max_samples_per_send: 2000,
        timeout: Duration::from_secs(5),
        le_style: LeStyle::Float,
    };
    let cfg = config(&sim.url, "UTC");
    // Today's calls, sent to the receiver with `rw`.
    let backfill = |rw: &RemoteWrite| {
        let plan = BackfillConfig {
            from: Day::DaysAgo(0),
            to: None,
            output: Destination::RemoteWrite(Box::new(rw.clone())),
            step: Duration::from_secs(60),
            skip_if_state_exists: false,
        };
        let (cfg, api, clock) = (cfg.clone(), api.clone(), clock.clone());
        async move {
            crocodial_exporter::backfill::run(
                &cfg,
                &plan,
                &api,
                Arc::new(clock),
                std::future::pending(),
            )
            .await
        }
    };
    let started = Instant::now();
    let e = backfill(&rw).await.expect_err("an unknown issuer");
    let message = e.to_string();
    assert!(
        message.starts_with(&format!(
            "remote write to {}: cannot connect: ",
            receiver.url
        )) && message.contains("UnknownIssuer"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "not retried");
    assert!(receiver.received().is_empty());

    rw.ca_file = Some(pki.path("ca.crt"));
    let summary = backfill(&rw).await.expect("with the CA").expect("ran");
    let got = receiver.received();
    assert!(!got.is_empty());
    assert!(summary.samples > 0);
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("writer:s3cret")
    );
    for r in &got {
        assert_eq!(r.headers["authorization"], basic.as_str());
    }
}
