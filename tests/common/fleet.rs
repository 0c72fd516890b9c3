//! A fleet of targets from a targets file, served on an ephemeral port, on a manual clock: the
//! exporter with `--config.file`, in process.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crocodial_exporter::clock::ManualClock;
use crocodial_exporter::config_file::TargetsFile;
use crocodial_exporter::{Exporter, Fleet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct Serving {
    pub fleet: Fleet,
    pub base: String,
    /// Stops serving when dropped.
    pub _stop: tokio_util::sync::DropGuard,
}

/// The command line whose flags are the targets' defaults: an ephemeral port, a 5 s API
/// timeout, `state` as the state file.
pub fn base_args(state: &Path) -> Vec<OsString> {
    [
        "crocodial-exporter",
        "--web.listen-address",
        "127.0.0.1:0",
        "--api.timeout",
        "5s",
    ]
    .iter()
    .map(OsString::from)
    .chain(["--state.file".into(), state.as_os_str().to_owned()])
    .collect()
}

/// Starts the targets of `file` and serves them.
pub async fn serve(file: &TargetsFile, clock: &ManualClock) -> Serving {
    // A fleet stopped just before may still be finishing a commit on a blocking thread (a
    // process that exits lets go of the file's lock at once): wait for the lock, as a
    // restarted process's supervisor would.
    let deadline = Instant::now() + Duration::from_secs(10);
    let fleet = loop {
        let configs = file.load(&|_| None).expect("targets file");
        match Fleet::start(configs, Some(file.clone()), Arc::new(clock.clone()), None).await {
            Err(crocodial_exporter::RunError::State(
                crocodial_exporter::state::StateError::Locked { .. },
            )) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            started => break started.expect("fleet"),
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(Exporter::serve(
        fleet.app(),
        listener,
        stop.clone().cancelled_owned(),
        None,
    ));
    Serving {
        fleet,
        base: format!("http://{addr}"),
        _stop: stop.drop_guard(),
    }
}
