//! The binary: parses flags, sets up logging, and calls [`crocodial_exporter::run`].

use std::process::ExitCode;
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crocodial_exporter::config::{
    self, BackfillConfig, Cli, Command, Destination, LogFormat, NamedZone, SimulateArgs,
};
use crocodial_exporter::config_file::TargetsFile;
use crocodial_exporter::vocab::redacted_url;
use crocodial_exporter::{clock::SystemClock, healthcheck, run, run_fleet, sim, Config};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(&cli.log.level, cli.log.format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Simulate(args)) => runtime.block_on(simulate(args)),
        Some(Command::Healthcheck(args)) => {
            let password = std::env::var(config::HEALTHCHECK_PASSWORD_ENV).ok();
            match runtime.block_on(healthcheck::check(&args, password)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Backfill(args)) => {
            // A state file is written only when asked for on the command line: not at the
            // exporter's default path, nor at the CROCODIAL_STATE_FILE the image sets for it.
            let state_file_given = matches
                .subcommand_matches("backfill")
                .and_then(|m| m.value_source("state_file"))
                == Some(ValueSource::CommandLine);
            let password = std::env::var(config::PASSWORD_ENV).ok();
            let (config, backfill) =
                match BackfillConfig::from_args(*args, state_file_given, password) {
                    Ok(c) => c,
                    Err(e) => Cli::command()
                        .error(clap::error::ErrorKind::ValueValidation, e)
                        .exit(),
                };
            runtime.block_on(run_backfill(config, backfill))
        }
        None if cli.exporter.config_file.is_some() => {
            let path = cli.exporter.config_file.clone().unwrap_or_default();
            if cli.exporter.once {
                Cli::command()
                    .error(
                        clap::error::ErrorKind::ArgumentConflict,
                        "--once polls one target: use the flags, not --config.file",
                    )
                    .exit()
            }
            let file = TargetsFile::new(path, std::env::args_os().collect());
            let configs = match file.load(&|name| std::env::var(name).ok()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            finish(runtime.block_on(async {
                run_fleet(configs, Some(file), hangups(), shutdown_signal()).await
            }))
        }
        None => {
            let password = std::env::var(config::PASSWORD_ENV).ok();
            let config = match Config::from_args(cli.exporter, password) {
                Ok(c) => c,
                Err(e) => Cli::command()
                    .error(clap::error::ErrorKind::ValueValidation, e)
                    .exit(),
            };
            if config.sim_targets > 1 && !config.once {
                let configs = config.demo_targets();
                return finish(runtime.block_on(async {
                    run_fleet(configs, None, hangups(), shutdown_signal()).await
                }));
            }
            finish(runtime.block_on(async {
                // SIGHUP's default would end the process: without --config.file there is
                // nothing to reread, and `systemctl reload` must not stop the exporter.
                let mut hangups = hangups();
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tracing::info!("SIGHUP: nothing to reload without --config.file");
                    }
                });
                run(config, shutdown_signal()).await
            }))
        }
    }
}

/// The exit of a run: 0, or the error on stderr and its exit code.
fn finish(result: Result<(), crocodial_exporter::RunError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A message per SIGHUP: reread --config.file.
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // A reload already waiting covers this one.
                    let _ = tx.try_send(());
                }
            });
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

async fn run_backfill(config: Config, backfill: BackfillConfig) -> ExitCode {
    let destination = backfill.output.clone();
    let state_file = config.state_file.clone();
    match crocodial_exporter::backfill(config, backfill, shutdown_signal()).await {
        Ok(None) => {
            eprintln!(
                "{} exists: nothing to backfill (--skip-if-state-exists)",
                state_file.unwrap_or_default().display()
            );
            ExitCode::SUCCESS
        }
        Ok(Some(summary)) => {
            let (verb, place) = match &destination {
                Destination::File(path) => ("wrote", path.display().to_string()),
                Destination::Days(dir) => ("wrote", format!("{}/DAY.om", dir.display())),
                Destination::RemoteWrite(rw) => ("sent", redacted_url(&rw.url)),
            };
            eprintln!(
                "{verb} {} samples of {} series ({} calls counted, {} to {}) to {place}",
                summary.samples, summary.series, summary.legs, summary.from, summary.end,
            );
            if let Some(path) = state_file {
                eprintln!(
                    "wrote the state to {}: {} calls in progress count once final, when the exporter runs on it",
                    path.display(),
                    summary.pending
                );
            }
            match &destination {
                Destination::File(path) => eprintln!(
                    "next: promtool tsdb create-blocks-from openmetrics --max-block-duration=24h {} <Prometheus data directory>",
                    path.display()
                ),
                Destination::Days(dir) => eprintln!(
                    "next, for each file: promtool tsdb create-blocks-from openmetrics --max-block-duration=24h {}/DAY.om <Prometheus data directory>",
                    dir.display()
                ),
                Destination::RemoteWrite(_) => {}
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(destination, Destination::RemoteWrite(_))
                && !matches!(
                    e,
                    crocodial_exporter::backfill::BackfillError::RemoteWrite(_)
                )
            {
                eprintln!("the samples sent before stay in the receiver: a new run sends the same ones again");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn simulate(args: SimulateArgs) -> ExitCode {
    let password = match &args.password_file {
        Some(path) => match config::read_password_file(path) {
            Ok(p) => p.expose().to_string(),
            Err(e) => Cli::command()
                .error(clap::error::ErrorKind::ValueValidation, e)
                .exit(),
        },
        None => "demo".to_string(),
    };
    let zone = args.timezone.unwrap_or_else(NamedZone::system);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        url = %format!("http://{}{}", args.listen, sim::API_PATH),
        user = %args.user,
        timezone = %zone.name,
        seed = args.seed,
        "simulated Croco-dial listening"
    );
    let traffic = match args.traffic.traffic(args.seed, zone.zone) {
        Ok(t) => t,
        Err(e) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit(),
    };
    let handle = sim::SimHandle::new(traffic, &args.user, &password, Arc::new(SystemClock));
    handle.serve(listener, shutdown_signal()).await;
    ExitCode::SUCCESS
}

fn init_logging(level: &str, format: LogFormat) {
    // Our own crate at the chosen level; the libraries only at warn, so that debug logs stay
    // about the exporter.
    let filter = EnvFilter::new(format!("warn,crocodial_exporter={level}"));
    let layer = match format {
        LogFormat::Logfmt => tracing_logfmt::builder()
            .with_target(false)
            .layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
