//! A real Prometheus (the distribution's package) as a child process, scraping one exporter
//! with the shipped rules, on its own port and data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, KillOnDrop};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub struct Prometheus {
    pub base: String,
    log: PathBuf,
    _child: KillOnDrop,
}

/// Whether the distribution's Prometheus is installed: None (with a note) outside CI when it
/// is not, a failure in CI.
fn installed() -> Option<()> {
    match Command::new("prometheus").arg("--version").output() {
        Ok(_) => Some(()),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED the Prometheus end-to-end test ({e}): apt-get install prometheus");
            None
        }
        Err(e) => panic!("prometheus is required in CI: {e}"),
    }
}

/// Starts Prometheus scraping `exporter` every `interval` and evaluating the rules as often;
/// None (with a note) outside CI when the package is not installed, a failure in CI.
pub fn start(dir: &Path, exporter: &str, interval: &str) -> Option<Prometheus> {
    installed()?;
    let rules = Path::new(ROOT).join("deploy/prometheus/rules.yml");
    let config = format!(
        "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: crocodial\n    static_configs:\n      - targets: ['{exporter}']\n",
        rules = rules.display()
    );
    Some(spawn(dir, &config, &[]))
}

/// Starts Prometheus scraping every one of `targets` every `interval`, with the shipped rules.
pub fn start_targets(dir: &Path, targets: &[String], interval: &str) -> Option<Prometheus> {
    installed()?;
    let rules = Path::new(ROOT).join("deploy/prometheus/rules.yml");
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: crocodial\n    static_configs:\n      - targets: [{list}]\n",
        rules = rules.display()
    );
    Some(spawn(dir, &config, &[]))
}

/// Starts Prometheus on the blocks already in `dir/data` (a backfill's), scraping nothing and
/// keeping every block however old.
pub fn start_on_blocks(dir: &Path) -> Option<Prometheus> {
    installed()?;
    Some(spawn(
        dir,
        "global:\n  scrape_interval: 15s\n",
        &["--storage.tsdb.retention.time=100y"],
    ))
}

/// Starts Prometheus as a remote-write receiver that takes samples up to 30 days out of order
/// (on the blocks in `dir/data`, if any), scraping nothing and keeping every block.
pub fn start_receiver(dir: &Path) -> Option<Prometheus> {
    installed()?;
    Some(spawn(
        dir,
        "global:\n  scrape_interval: 15s\nstorage:\n  tsdb:\n    out_of_order_time_window: 30d\n",
        &[
            "--storage.tsdb.retention.time=100y",
            "--web.enable-remote-write-receiver",
        ],
    ))
}

fn spawn(dir: &Path, config_text: &str, extra: &[&str]) -> Prometheus {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, config_text).expect("write prometheus.yml");
    let port = free_port();
    let log = dir.join("prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn prometheus");
    Prometheus {
        base: format!("http://127.0.0.1:{port}"),
        log,
        _child: KillOnDrop(child),
    }
}

impl Prometheus {
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = format!("{}{path}", self.base);
        let body = reqwest::Client::new()
            .get(&url)
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .text()
            .await
            .expect("body");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until Prometheus answers /-/ready, failing after `deadline`.
    pub async fn wait_ready(&self, deadline: Instant) {
        while reqwest::get(format!("{}/-/ready", self.base))
            .await
            .map_or(true, |r| r.status() != 200)
        {
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The active alerts: (alert name, queue label, state).
    pub async fn alerts(&self) -> Vec<(String, String, String)> {
        let answer = self.api("/api/v1/alerts", &[]).await;
        answer["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let text = |v: &Value| v.as_str().unwrap_or("").to_string();
                (
                    text(&a["labels"]["alertname"]),
                    text(&a["labels"]["queue"]),
                    text(&a["state"]),
                )
            })
            .collect()
    }
}
