//! Command-line flags, parsed and validated once into a [`Config`]; nothing past this module
//! sees clap.
//!
//! Every flag can also come from the environment: `--poll.interval` is `CROCODIAL_POLL_INTERVAL`
//! and so on. The API password has no flag on purpose (argv is visible to every local user): it
//! comes from `CROCODIAL_API_PASSWORD` or from `--api.password-file`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::tz::TimeZone;
use url::Url;

use crate::sim::traffic;

/// Environment variable that holds the API password.
pub const PASSWORD_ENV: &str = "CROCODIAL_API_PASSWORD";

pub const DEFAULT_QUEUE_TIME_BUCKETS: &[f64] = &[
    0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
];
pub const DEFAULT_CALL_DURATION_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

/// What `--version` prints: the version, the git revision, the build date and the compiler.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("CROCODIAL_REVISION"),
    ", built ",
    env!("CROCODIAL_BUILD_DATE"),
    ", ",
    env!("CROCODIAL_RUSTC"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "crocodial-exporter",
    version = LONG_VERSION,
    about = "Prometheus exporter for Croco-dial inbound call detail records",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub exporter: ExporterArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the simulated Croco-dial API alone (for trying dashboards or other clients).
    Simulate(SimulateArgs),
    /// Ask a running exporter's /-/healthy; exit 0 when it answers 200, 1 otherwise (for the
    /// container's HEALTHCHECK, which has no shell or curl).
    ///
    /// It reads the exporter's own --web.listen-address and --web.config.file (or their
    /// variables): a listen host of 0.0.0.0, :: or none is asked on loopback; TLS means https,
    /// without checking the certificate (the exporter is asked on this host); basic auth users
    /// mean --auth.user is sent with the password from CROCODIAL_HEALTHCHECK_PASSWORD or
    /// --auth.password-file.
    Healthcheck(HealthcheckArgs),
    /// Write past days of calls as OpenMetrics with timestamps, for `promtool tsdb
    /// create-blocks-from openmetrics` (--output, --output-dir), or send them to a remote-write
    /// receiver (--remote-write); with --state.file, write the state a live exporter continues
    /// from.
    ///
    /// Takes the exporter's --api.*, --cdr.*, --metrics.* and --poll.* flags (and --demo).
    /// Each call counts at the moment it ended: call_date plus call_duration.
    Backfill(Box<BackfillArgs>),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).multiple(false)))]
pub struct BackfillArgs {
    /// First day: YYYY-MM-DD (the dialer's own date), or Nd for N days before today.
    #[arg(long = "from", value_name = "DAY", value_parser = parse_day)]
    pub from: Day,
    /// Last day, included: YYYY-MM-DD or Nd [default: today, up to now].
    #[arg(long = "to", value_name = "DAY", value_parser = parse_day)]
    pub to: Option<Day>,
    /// OpenMetrics file to write (replaced if it exists; written whole or not at all).
    #[arg(long = "output", value_name = "PATH", group = "destination")]
    pub output: Option<PathBuf>,
    /// Directory to write an OpenMetrics file per day into, DAY.om (the dialer's days; created
    /// if missing), for one promtool pass per day.
    #[arg(long = "output-dir", value_name = "DIR", group = "destination")]
    pub output_dir: Option<PathBuf>,
    /// Send the history with the remote-write protocol to URL (a Prometheus with
    /// --web.enable-remote-write-receiver, Mimir, VictoriaMetrics, Thanos Receive...), which must
    /// take samples out of order and as old as --from.
    #[arg(long = "remote-write", value_name = "URL", group = "destination")]
    pub remote_write: Option<url::Url>,
    #[command(flatten)]
    pub remote: RemoteWriteArgs,
    /// The history's resolution: the legs ended by each step are counted at it. A series is
    /// written at the steps within 5m of a change and every 2m or so otherwise; under 5m,
    /// Prometheus's lookback.
    #[arg(long = "step", value_name = "DURATION", default_value = DEFAULT_BACKFILL_STEP, value_parser = parse_positive_duration)]
    pub step: Duration,
    /// With a --state.file that exists, do nothing and exit 0: for a job that runs at every
    /// start (an init container, the compose stack) and backfills only the first time.
    #[arg(long = "skip-if-state-exists")]
    pub skip_if_state_exists: bool,
    #[command(flatten)]
    pub exporter: ExporterArgs,
}

/// How `backfill --remote-write` authenticates, trusts and sizes its requests.
#[derive(Debug, Args)]
pub struct RemoteWriteArgs {
    /// Basic auth user for --remote-write (its password from --remote-write.password-file).
    #[arg(long = "remote-write.basic-auth-user", value_name = "USER")]
    pub basic_auth_user: Option<String>,
    /// File holding the basic auth password for --remote-write.
    #[arg(long = "remote-write.password-file", value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// File holding a bearer token for --remote-write.
    #[arg(long = "remote-write.bearer-token-file", value_name = "PATH")]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the receiver's certificate (besides the system's).
    #[arg(long = "remote-write.ca-file", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// A header sent with every request, NAME=VALUE (repeatable), e.g. X-Scope-OrgID=acme.
    #[arg(long = "remote-write.header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Samples per request (Prometheus's own sender sends up to 2000) [default: 2000].
    #[arg(long = "remote-write.max-samples-per-send", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_samples_per_send: Option<u32>,
    /// How long a request may take before it is retried [default: 30s].
    #[arg(long = "remote-write.timeout", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub timeout: Option<Duration>,
    /// How a histogram's `le` is written: `float` ("10.0"), as Prometheus 3 and later store it
    /// when they scrape; `text` ("10"), as /metrics writes it and Prometheus 2 stores it. Choose
    /// what the Prometheus that scrapes the live exporter stores, so that the history's buckets
    /// and the live ones are the same series [default: float].
    #[arg(long = "remote-write.le-style", value_name = "STYLE")]
    pub le_style: Option<LeStyle>,
}

/// How a histogram bucket's bound reads in its `le` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LeStyle {
    /// As Prometheus 3 normalises it: "10.0", "2.5", "+Inf".
    Float,
    /// As the text exposition writes it: "10", "2.5", "+Inf".
    Text,
}

/// Where a backfill's history goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// One OpenMetrics file.
    File(PathBuf),
    /// A directory of OpenMetrics files, one per day.
    Days(PathBuf),
    RemoteWrite(Box<RemoteWrite>),
}

/// `backfill --remote-write`: the receiver and how to talk to it. Debug leaves out the
/// password, the token and header values.
#[derive(Clone)]
pub struct RemoteWrite {
    pub url: url::Url,
    pub auth: Option<RemoteWriteAuth>,
    pub ca_file: Option<PathBuf>,
    pub headers: Vec<(String, String)>,
    pub max_samples_per_send: usize,
    pub timeout: Duration,
    pub le_style: LeStyle,
}

#[derive(Clone)]
pub enum RemoteWriteAuth {
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for RemoteWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            None => "none".to_string(),
            Some(RemoteWriteAuth::Basic { user, .. }) => format!("basic {user}"),
            Some(RemoteWriteAuth::Bearer(_)) => "bearer".to_string(),
        };
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RemoteWrite")
            .field("url", &crate::vocab::redacted_url(&self.url))
            .field("auth", &auth)
            .field("ca_file", &self.ca_file)
            .field("headers", &headers)
            .field("max_samples_per_send", &self.max_samples_per_send)
            .field("timeout", &self.timeout)
            .field("le_style", &self.le_style)
            .finish()
    }
}

impl RemoteWriteArgs {
    /// Whether any setting of a request was given (not a default).
    fn given(&self) -> bool {
        self.basic_auth_user.is_some()
            || self.password_file.is_some()
            || self.bearer_token_file.is_some()
            || self.ca_file.is_some()
            || !self.headers.is_empty()
            || self.max_samples_per_send.is_some()
            || self.timeout.is_some()
            || self.le_style.is_some()
    }
}

impl RemoteWrite {
    fn from_args(url: url::Url, args: RemoteWriteArgs) -> Result<Self, ConfigError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_error(
                "--remote-write",
                "the URL must be http:// or https://",
            ));
        }
        let secret = |flag: &'static str, path: &PathBuf| {
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| config_error(flag, format!("{}: {e}", path.display())))
                .and_then(|s| {
                    if s.is_empty() {
                        Err(config_error(flag, format!("{} is empty", path.display())))
                    } else {
                        Ok(s)
                    }
                })
        };
        if args.basic_auth_user.is_some() && args.bearer_token_file.is_some() {
            return Err(config_error(
                "--remote-write.bearer-token-file",
                "or --remote-write.basic-auth-user, not both",
            ));
        }
        let auth = match (
            args.basic_auth_user,
            args.password_file,
            args.bearer_token_file,
        ) {
            (Some(user), Some(file), _) => Some(RemoteWriteAuth::Basic {
                user,
                password: secret("--remote-write.password-file", &file)?,
            }),
            (Some(_), None, _) => {
                return Err(config_error(
                    "--remote-write.basic-auth-user",
                    "needs --remote-write.password-file",
                ))
            }
            (None, Some(_), _) => {
                return Err(config_error(
                    "--remote-write.password-file",
                    "needs --remote-write.basic-auth-user",
                ))
            }
            (None, None, Some(file)) => Some(RemoteWriteAuth::Bearer(secret(
                "--remote-write.bearer-token-file",
                &file,
            )?)),
            (None, None, None) => None,
        };
        if let Some(path) = &args.ca_file {
            let certificates = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|pem| {
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())
                });
            match certificates {
                Ok(c) if !c.is_empty() => {}
                Ok(_) => {
                    return Err(config_error(
                        "--remote-write.ca-file",
                        format!("{}: no PEM certificate in it", path.display()),
                    ))
                }
                Err(e) => {
                    return Err(config_error(
                        "--remote-write.ca-file",
                        format!("{}: {e}", path.display()),
                    ))
                }
            }
        }
        let mut headers = Vec::new();
        for (position, header) in args.headers.into_iter().enumerate() {
            let Some((name, value)) = header.split_once('=') else {
                return Err(config_error(
                    "--remote-write.header",
                    format!("number {}: write NAME=VALUE", position + 1),
                ));
            };
            let (name, value) = (name.trim(), value.trim());
            let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(value).is_ok();
            if !valid {
                return Err(config_error(
                    "--remote-write.header",
                    format!("number {}: not a valid header name and value", position + 1),
                ));
            }
            // The protocol's own headers are not the user's to change.
            if [
                "content-type",
                "content-encoding",
                "x-prometheus-remote-write-version",
            ]
            .contains(&name.to_ascii_lowercase().as_str())
            {
                return Err(config_error(
                    "--remote-write.header",
                    format!("{name} is the protocol's own header"),
                ));
            }
            headers.push((name.to_string(), value.to_string()));
        }
        Ok(Self {
            url,
            auth,
            ca_file: args.ca_file,
            headers,
            max_samples_per_send: args.max_samples_per_send.unwrap_or(2000) as usize,
            timeout: args.timeout.unwrap_or(Duration::from_secs(30)),
            le_style: args.le_style.unwrap_or(LeStyle::Float),
        })
    }
}

const DEFAULT_BACKFILL_STEP: &str = "1m";
/// Prometheus's default lookback: a series without a sample for this long is stale.
const PROMETHEUS_LOOKBACK: Duration = Duration::from_secs(300);

/// A day given to `backfill`: a date, or a number of days before today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Day {
    Date(jiff::civil::Date),
    DaysAgo(u16),
}

impl Day {
    /// The date, `today` being the dialer's.
    pub fn resolve(self, today: jiff::civil::Date) -> Option<jiff::civil::Date> {
        match self {
            Day::Date(d) => Some(d),
            Day::DaysAgo(n) => today.checked_sub(jiff::Span::new().days(i64::from(n))).ok(),
        }
    }
}

fn parse_day(s: &str) -> Result<Day, String> {
    let s = s.trim();
    if let Some(n) = s.strip_suffix('d') {
        return n
            .parse()
            .map(Day::DaysAgo)
            .map_err(|_| format!("{s}: write a date as YYYY-MM-DD, or 7d for 7 days ago"));
    }
    s.parse()
        .map(Day::Date)
        .map_err(|_| format!("{s}: write a date as YYYY-MM-DD, or 7d for 7 days ago"))
}

/// What `backfill` does besides what the exporter's flags say ([`Config`]).
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    pub from: Day,
    pub to: Option<Day>,
    pub output: Destination,
    pub step: Duration,
    /// An existing state file means the backfill was done: nothing to do.
    pub skip_if_state_exists: bool,
}

impl BackfillConfig {
    /// Validates `backfill`'s flags. The exporter's --state.file is a state to write only when
    /// `state_file_given` (on the command line or in the environment), not by default.
    pub fn from_args(
        args: BackfillArgs,
        state_file_given: bool,
        password_env: Option<String>,
    ) -> Result<(Config, BackfillConfig), ConfigError> {
        if args.exporter.once {
            return Err(config_error(
                "--once",
                "is the exporter's; backfill writes --output, --output-dir or --remote-write",
            ));
        }
        if args.step.subsec_nanos() != 0 {
            return Err(config_error(
                "--step",
                format!(
                    "{}: a whole number of seconds",
                    humantime::format_duration(args.step)
                ),
            ));
        }
        if args.step >= PROMETHEUS_LOOKBACK {
            return Err(config_error(
                "--step",
                format!(
                    "{} is not under 5m: Prometheus would find no sample in its 5m lookback between two steps",
                    humantime::format_duration(args.step)
                ),
            ));
        }
        if let (Day::Date(from), Some(Day::Date(to))) = (args.from, args.to) {
            if from > to {
                return Err(config_error(
                    "--to",
                    format!("{to} is before --from {from}"),
                ));
            }
        }
        let output = match (args.output, args.output_dir, args.remote_write) {
            (Some(path), _, _) if path.as_os_str().is_empty() => {
                return Err(config_error("--output", "a file name is needed"))
            }
            (_, Some(dir), _) if dir.as_os_str().is_empty() => {
                return Err(config_error("--output-dir", "a directory is needed"))
            }
            (Some(_), _, _) | (_, Some(_), _) if args.remote.given() => {
                return Err(config_error(
                    "--remote-write.*",
                    "set only with --remote-write, whose requests they shape",
                ))
            }
            (Some(path), _, _) => Destination::File(path),
            (_, Some(dir), _) => Destination::Days(dir),
            (_, _, Some(url)) => {
                Destination::RemoteWrite(Box::new(RemoteWrite::from_args(url, args.remote)?))
            }
            (None, None, None) => {
                return Err(config_error(
                    "--output",
                    "say where the history goes: --output, --output-dir or --remote-write",
                ))
            }
        };
        let backfill = BackfillConfig {
            from: args.from,
            to: args.to,
            output,
            step: args.step,
            skip_if_state_exists: args.skip_if_state_exists,
        };
        let mut config = Config::from_args(args.exporter, password_env)?;
        if !state_file_given {
            config.state_file = None;
        }
        if backfill.skip_if_state_exists && config.state_file.is_none() {
            return Err(config_error(
                "--skip-if-state-exists",
                "needs --state.file (or CROCODIAL_STATE_FILE)",
            ));
        }
        Ok((config, backfill))
    }
}

const DEFAULT_LISTEN_ADDRESS: &str = ":9838";

/// Where the endpoints listen and how they are protected: the exporter's flags, which
/// `healthcheck` reads too.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Address to serve metrics on; `:9838` means every interface, IPv6 included where the host
    /// has it (dual-stack); `0.0.0.0:9838` means every IPv4 interface.
    #[arg(long = "web.listen-address", value_name = "[HOST]:PORT", env = "CROCODIAL_WEB_LISTEN_ADDRESS", default_value = DEFAULT_LISTEN_ADDRESS, value_parser = parse_listen_address)]
    pub listen_address: SocketAddr,
    /// Web config file (exporter-toolkit format): TLS, basic auth and headers of the endpoints.
    #[arg(
        long = "web.config.file",
        value_name = "PATH",
        env = "CROCODIAL_WEB_CONFIG_FILE"
    )]
    pub web_config_file: Option<PathBuf>,
}

/// Where the exporter to check listens, and how to get in: the exporter's own flags and
/// variables, so that a container's environment serves both.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The exporter's own: a listen host of 0.0.0.0, :: or none is asked on loopback; TLS means
    /// https (the certificate is not checked: the exporter is asked on this host); basic auth
    /// users mean credentials are sent.
    #[command(flatten)]
    pub web: WebArgs,
    /// User for basic auth (the password comes from CROCODIAL_HEALTHCHECK_PASSWORD or
    /// --auth.password-file, never from a flag).
    #[arg(
        long = "auth.user",
        value_name = "USER",
        env = "CROCODIAL_HEALTHCHECK_USER"
    )]
    pub user: Option<String>,
    /// File holding the basic auth password.
    #[arg(
        long = "auth.password-file",
        value_name = "PATH",
        env = "CROCODIAL_HEALTHCHECK_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// How long to wait for the answer.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
}

/// The environment variable with the basic auth password of `healthcheck`.
pub const HEALTHCHECK_PASSWORD_ENV: &str = "CROCODIAL_HEALTHCHECK_PASSWORD";

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", value_name = "LEVEL", env = "CROCODIAL_LOG_LEVEL", default_value = "info", value_parser = parse_log_level, global = true)]
    pub level: String,
    /// Log format.
    #[arg(long = "log.format", value_name = "FORMAT", env = "CROCODIAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Logfmt, global = true)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to serve the simulated API on.
    #[arg(long, value_name = "ADDR", env = "CROCODIAL_SIM_LISTEN", default_value = "127.0.0.1:9839", value_parser = parse_listen_address)]
    pub listen: SocketAddr,
    /// API user the simulator accepts.
    #[arg(long, env = "CROCODIAL_SIM_USER", default_value = "demo")]
    pub user: String,
    /// File holding the password the simulator accepts (default: `demo`).
    #[arg(
        long = "password-file",
        value_name = "PATH",
        env = "CROCODIAL_SIM_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// Time zone of the simulated dialer's timestamps (default: the host's).
    #[arg(long, value_name = "ZONE", env = "CROCODIAL_SIM_TIMEZONE", value_parser = parse_timezone)]
    pub timezone: Option<NamedZone>,
    /// Seed of the simulated traffic.
    #[arg(long, env = "CROCODIAL_SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// How busy the simulated dialer is and when its SUPPORT queue's wait spikes; shared by `--demo`
/// and `simulate`. The defaults make a plausible day; a short `--sim.spike-every` shows the
/// queue-wait alert within minutes.
#[derive(Debug, Clone, Args)]
pub struct TrafficArgs {
    /// Simulated calls per minute at the busiest hour (nights get 40% of it).
    #[arg(long = "sim.calls-per-minute", value_name = "N", env = "CROCODIAL_SIM_CALLS_PER_MINUTE", default_value_t = traffic::DEFAULT_PEAK_CALLS_PER_MINUTE, value_parser = parse_calls_per_minute)]
    pub calls_per_minute: f64,
    /// The SUPPORT queue's wait spike starts every this long (dialer wall clock, from midnight).
    #[arg(long = "sim.spike-every", value_name = "DURATION", env = "CROCODIAL_SIM_SPIKE_EVERY", default_value_t = whole_secs(traffic::DEFAULT_SPIKE.period_secs), value_parser = parse_positive_human_duration)]
    pub spike_every: humantime::Duration,
    /// How long each spike lasts; equal to --sim.spike-every for a spike that never ends.
    #[arg(long = "sim.spike-length", value_name = "DURATION", env = "CROCODIAL_SIM_SPIKE_LENGTH", default_value_t = whole_secs(traffic::DEFAULT_SPIKE.length_secs), value_parser = parse_human_duration)]
    pub spike_length: humantime::Duration,
    /// During a spike the queue keeps 1/X of its agents on duty.
    #[arg(long = "sim.spike-factor", value_name = "X", env = "CROCODIAL_SIM_SPIKE_FACTOR", default_value_t = traffic::DEFAULT_SPIKE.factor, value_parser = parse_spike_factor)]
    pub spike_factor: f64,
}

impl TrafficArgs {
    /// The simulated traffic these flags describe.
    pub fn traffic(&self, seed: u64, zone: TimeZone) -> Result<traffic::Traffic, ConfigError> {
        if *self.spike_length > *self.spike_every {
            return Err(config_error(
                "--sim.spike-length",
                "must not be longer than --sim.spike-every",
            ));
        }
        let mut traffic = traffic::Traffic::new(seed, zone);
        traffic.peak_calls_per_minute = self.calls_per_minute;
        traffic.spike.period_secs = secs(*self.spike_every);
        traffic.spike.length_secs = secs(*self.spike_length);
        traffic.spike.factor = self.spike_factor;
        Ok(traffic)
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A default of the simulator, in seconds, as a flag's default.
fn whole_secs(secs: i64) -> humantime::Duration {
    Duration::from_secs(u64::try_from(secs).unwrap_or(0)).into()
}

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Full URL of goAPI.php, e.g. `https://DOMAIN.croco-dial.net/goAPIv2/goReports/goAPI.php`
    #[arg(long = "api.url", value_name = "URL", env = "CROCODIAL_API_URL", value_parser = parse_api_url)]
    pub api_url: Option<Url>,
    /// API user.
    #[arg(long = "api.user", value_name = "USER", env = "CROCODIAL_API_USER")]
    pub api_user: Option<String>,
    /// File holding the API password (trailing newline trimmed). Or set CROCODIAL_API_PASSWORD.
    #[arg(
        long = "api.password-file",
        value_name = "PATH",
        env = "CROCODIAL_API_PASSWORD_FILE"
    )]
    pub api_password_file: Option<PathBuf>,
    /// IANA time zone of the dialer's timestamps (default: the host's zone).
    #[arg(long = "api.timezone", value_name = "ZONE", env = "CROCODIAL_API_TIMEZONE", value_parser = parse_timezone)]
    pub api_timezone: Option<NamedZone>,
    /// Tenant code (exactly three characters) to filter on; repeatable.
    #[arg(long = "api.tenant", value_name = "CODE", env = "CROCODIAL_API_TENANT", value_delimiter = ',', value_parser = parse_tenant)]
    pub api_tenant: Vec<String>,
    /// Profile name to filter on; repeatable.
    #[arg(
        long = "api.profile",
        value_name = "NAME",
        env = "CROCODIAL_API_PROFILE",
        value_delimiter = ','
    )]
    pub api_profile: Vec<String>,
    /// Agent user name to filter on; repeatable (sent as user[]; not every API version honours it).
    #[arg(
        long = "api.agent",
        value_name = "USER",
        env = "CROCODIAL_API_AGENT",
        value_delimiter = ','
    )]
    pub api_agent: Vec<String>,
    /// PEM file of the CA(s) that signed the API's certificate, added to the system's roots.
    #[arg(
        long = "api.ca-file",
        value_name = "PATH",
        env = "CROCODIAL_API_CA_FILE"
    )]
    pub api_ca_file: Option<PathBuf>,
    /// Do not verify the API's TLS certificate (logged as a warning at start). For tests only.
    #[arg(
        long = "api.insecure-skip-verify",
        env = "CROCODIAL_API_INSECURE_SKIP_VERIFY"
    )]
    pub api_insecure_skip_verify: bool,
    /// Value of the `target` label (default: the host of --api.url).
    #[arg(
        long = "api.target-name",
        value_name = "NAME",
        env = "CROCODIAL_API_TARGET_NAME"
    )]
    pub api_target_name: Option<String>,
    /// Timeout of one API request, body included.
    #[arg(long = "api.timeout", value_name = "DURATION", env = "CROCODIAL_API_TIMEOUT", default_value = DEFAULT_API_TIMEOUT, value_parser = parse_positive_duration)]
    pub api_timeout: Duration,
    /// Time between the starts of two polls (a slow poll delays the next one).
    #[arg(long = "poll.interval", value_name = "DURATION", env = "CROCODIAL_POLL_INTERVAL", default_value = DEFAULT_POLL_INTERVAL, value_parser = parse_positive_duration)]
    pub poll_interval: Duration,
    /// Longest wait between polls while the API keeps failing (exponential backoff with jitter).
    #[arg(long = "poll.max-backoff", value_name = "DURATION", env = "CROCODIAL_POLL_MAX_BACKOFF", default_value = DEFAULT_POLL_MAX_BACKOFF, value_parser = parse_positive_duration)]
    pub poll_max_backoff: Duration,
    /// Largest response body accepted, in bytes.
    #[arg(long = "api.max-response-bytes", value_name = "BYTES", env = "CROCODIAL_API_MAX_RESPONSE_BYTES", default_value_t = DEFAULT_MAX_RESPONSE_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub api_max_response_bytes: u64,
    /// How far back each poll asks for calls (rounded down to the start of that dialer-local day).
    #[arg(long = "poll.lookback", value_name = "DURATION", env = "CROCODIAL_POLL_LOOKBACK", default_value = DEFAULT_POLL_LOOKBACK, value_parser = parse_duration)]
    pub poll_lookback: Duration,
    /// Dispositions that mean the call is still in progress (comma separated).
    #[arg(long = "cdr.in-progress-dispositions", value_name = "LIST", env = "CROCODIAL_CDR_IN_PROGRESS_DISPOSITIONS", default_value = DEFAULT_IN_PROGRESS_DISPOSITIONS, value_parser = parse_disposition_list)]
    pub cdr_in_progress: DispositionList,
    /// In-progress dispositions of callers still waiting in queue (the others are talking);
    /// default: QUEUE, if it is one of --cdr.in-progress-dispositions.
    #[arg(long = "cdr.waiting-dispositions", value_name = "LIST", env = "CROCODIAL_CDR_WAITING_DISPOSITIONS", value_parser = parse_disposition_list)]
    pub cdr_waiting: Option<DispositionList>,
    /// In-progress dispositions of calls whose caller has hung up while the agent chooses the
    /// final disposition (wrap-up); default: DISPO, if it is one of
    /// --cdr.in-progress-dispositions. An in-progress row whose term reason is set is in
    /// wrap-up too.
    #[arg(long = "cdr.wrapup-dispositions", value_name = "LIST", env = "CROCODIAL_CDR_WRAPUP_DISPOSITIONS", value_parser = parse_disposition_list)]
    pub cdr_wrapup: Option<DispositionList>,
    /// Pseudo-agents of calls no person took; a leg is answered when it names another agent
    /// and no term reason or disposition says otherwise.
    #[arg(long = "cdr.system-agents", value_name = "LIST", env = "CROCODIAL_CDR_SYSTEM_AGENTS", default_value = DEFAULT_SYSTEM_AGENTS, value_parser = parse_disposition_list)]
    pub cdr_system_agents: DispositionList,
    /// Term reasons that mean the caller gave up (outcome abandoned, agent or not).
    #[arg(long = "cdr.abandon-term-reasons", value_name = "LIST", env = "CROCODIAL_CDR_ABANDON_TERM_REASONS", default_value = DEFAULT_ABANDON_TERM_REASONS, value_parser = parse_disposition_list)]
    pub cdr_abandon_term_reasons: DispositionList,
    /// Dispositions that mean the caller gave up (outcome abandoned, agent or not).
    #[arg(long = "cdr.abandon-dispositions", value_name = "LIST", env = "CROCODIAL_CDR_ABANDON_DISPOSITIONS", default_value = DEFAULT_ABANDON_DISPOSITIONS, value_parser = parse_disposition_list)]
    pub cdr_abandon_dispositions: DispositionList,
    /// Term reasons that mean the queue gave up on the caller (outcome timed_out, agent or not).
    #[arg(long = "cdr.timeout-term-reasons", value_name = "LIST", env = "CROCODIAL_CDR_TIMEOUT_TERM_REASONS", default_value = DEFAULT_TIMEOUT_TERM_REASONS, value_parser = parse_disposition_list)]
    pub cdr_timeout_term_reasons: DispositionList,
    /// Dispositions that mean the queue gave up on the caller (outcome timed_out, agent or not).
    #[arg(long = "cdr.timeout-dispositions", value_name = "LIST", env = "CROCODIAL_CDR_TIMEOUT_DISPOSITIONS", default_value = DEFAULT_TIMEOUT_DISPOSITIONS, value_parser = parse_disposition_list)]
    pub cdr_timeout_dispositions: DispositionList,
    /// Term reasons of calls that never queued (outcome other, outside offered, agent or not).
    #[arg(long = "cdr.not-queued-term-reasons", value_name = "LIST", env = "CROCODIAL_CDR_NOT_QUEUED_TERM_REASONS", default_value = DEFAULT_NOT_QUEUED_TERM_REASONS, value_parser = parse_disposition_list)]
    pub cdr_not_queued_term_reasons: DispositionList,
    /// Dispositions of calls that never queued (outcome other, outside offered, agent or not).
    #[arg(long = "cdr.not-queued-dispositions", value_name = "LIST", env = "CROCODIAL_CDR_NOT_QUEUED_DISPOSITIONS", default_value = DEFAULT_NOT_QUEUED_DISPOSITIONS, value_parser = parse_disposition_list)]
    pub cdr_not_queued_dispositions: DispositionList,
    /// Whether call_duration runs from queue entry, queue wait included, as the platform
    /// writes it (talk time = call_duration - queue_time); false for a site whose
    /// call_duration is talk time only.
    #[arg(long = "cdr.call-duration-includes-queue-time", value_name = "BOOL", env = "CROCODIAL_CDR_CALL_DURATION_INCLUDES_QUEUE_TIME", default_value_t = true, action = clap::ArgAction::Set)]
    pub cdr_duration_includes_queue_time: bool,
    /// A row still not final this long after its call_date is counted as it stands.
    #[arg(long = "cdr.max-pending", value_name = "DURATION", env = "CROCODIAL_CDR_MAX_PENDING", default_value = DEFAULT_MAX_PENDING, value_parser = parse_positive_duration)]
    pub cdr_max_pending: Duration,
    /// A caller shown waiting this long is believed gone (a row the platform never finished):
    /// no longer waiting now, nor the longest wait; the leg still counts at --cdr.max-pending.
    #[arg(long = "cdr.max-wait", value_name = "DURATION", env = "CROCODIAL_CDR_MAX_WAIT", default_value = DEFAULT_MAX_WAIT, value_parser = parse_positive_duration)]
    pub cdr_max_wait: Duration,
    /// Every queue's service-level threshold: an answered leg that waited at most this long
    /// meets the service level (per queue: `queues:` in --config.file).
    #[arg(long = "queue.service-level-threshold", value_name = "DURATION", env = "CROCODIAL_QUEUE_SERVICE_LEVEL_THRESHOLD", default_value = DEFAULT_SERVICE_LEVEL_THRESHOLD, value_parser = parse_positive_duration)]
    pub service_level_threshold: Duration,
    /// Every queue's service-level goal: the share of offered legs to answer within the
    /// threshold (0.8 or 80%).
    #[arg(long = "queue.service-level-goal", value_name = "RATIO", env = "CROCODIAL_QUEUE_SERVICE_LEVEL_GOAL", default_value = DEFAULT_SERVICE_LEVEL_GOAL, value_parser = parse_goal)]
    pub service_level_goal: f64,
    /// Every queue's wait that pages: CrocodialCallersWaitingLong fires for a caller still
    /// waiting past it. Shorter than --cdr.max-wait.
    #[arg(long = "queue.wait-alert-threshold", value_name = "DURATION", env = "CROCODIAL_QUEUE_WAIT_ALERT_THRESHOLD", default_value = DEFAULT_WAIT_ALERT_THRESHOLD, value_parser = parse_positive_duration)]
    pub wait_alert_threshold: Duration,
    /// How far back the staffing figures (crocodial_inbound_staffing_*, agents required) look.
    #[arg(long = "staffing.window", value_name = "DURATION", env = "CROCODIAL_STAFFING_WINDOW", default_value = DEFAULT_STAFFING_WINDOW, value_parser = parse_staffing_window)]
    pub staffing_window: Duration,
    /// Buckets of crocodial_inbound_queue_time_seconds (comma separated seconds).
    #[arg(long = "metrics.queue-time-buckets", value_name = "SECONDS,...", env = "CROCODIAL_METRICS_QUEUE_TIME_BUCKETS", value_parser = parse_buckets)]
    pub queue_time_buckets: Option<Buckets>,
    /// Buckets of crocodial_inbound_call_duration_seconds (comma separated seconds).
    #[arg(long = "metrics.call-duration-buckets", value_name = "SECONDS,...", env = "CROCODIAL_METRICS_CALL_DURATION_BUCKETS", value_parser = parse_buckets)]
    pub call_duration_buckets: Option<Buckets>,
    /// Distinct values one label may take; further values are reported as `__other__`.
    #[arg(long = "metrics.max-label-values", value_name = "N", env = "CROCODIAL_METRICS_MAX_LABEL_VALUES", default_value_t = DEFAULT_MAX_LABEL_VALUES, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_label_values: u32,
    /// Do not export the per-agent metrics.
    #[arg(long = "no-metrics.agent", env = "CROCODIAL_NO_METRICS_AGENT")]
    pub no_agent_metrics: bool,
    #[command(flatten)]
    pub web: WebArgs,
    /// Path of the metrics endpoint.
    #[arg(long = "web.telemetry-path", value_name = "PATH", env = "CROCODIAL_WEB_TELEMETRY_PATH", default_value = DEFAULT_TELEMETRY_PATH, value_parser = parse_telemetry_path)]
    pub telemetry_path: String,
    /// Connections open at once; at the limit a new one sheds the one idle longest (never one
    /// with a request in flight).
    #[arg(long = "web.max-connections", value_name = "N", env = "CROCODIAL_WEB_MAX_CONNECTIONS", default_value_t = DEFAULT_WEB_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub web_max_connections: u32,
    /// State file (seen calls, counters); "" keeps no state, and every start then primes.
    #[arg(
        long = "state.file",
        value_name = "PATH",
        env = "CROCODIAL_STATE_FILE",
        default_value = DEFAULT_STATE_FILE,
        value_parser = parse_state_file
    )]
    pub state_file: PathBuf,
    /// Poll once, print the exposition on stdout and exit (counts every final row in the window).
    #[arg(long, env = "CROCODIAL_ONCE")]
    pub once: bool,
    /// YAML file of targets (Croco-dial domains), each with its own api, poll and cdr settings;
    /// the flags are every target's defaults. Reread on SIGHUP (and POST /-/reload).
    #[arg(
        long = "config.file",
        value_name = "PATH",
        env = "CROCODIAL_CONFIG_FILE"
    )]
    pub config_file: Option<PathBuf>,
    /// Serve POST /-/reload, which rereads --config.file (as Prometheus's flag of that name).
    #[arg(long = "web.enable-lifecycle", env = "CROCODIAL_WEB_ENABLE_LIFECYCLE")]
    pub enable_lifecycle: bool,
    /// How long the state of a target removed from --config.file is kept: put back within it,
    /// the target continues its counters.
    #[arg(long = "state.retain-removed", value_name = "DURATION", env = "CROCODIAL_STATE_RETAIN_REMOVED", default_value = DEFAULT_RETAIN_REMOVED, value_parser = parse_duration)]
    pub retain_removed: Duration,
    /// With --demo: how many simulated domains (demo-1, demo-2, ...), each with its own traffic
    /// and time zone.
    #[arg(long = "sim.targets", value_name = "N", env = "CROCODIAL_SIM_TARGETS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub sim_targets: u16,
    /// Run against the built-in simulated Croco-dial; no other flag is needed.
    #[arg(long, env = "CROCODIAL_DEMO")]
    pub demo: bool,
    /// The simulated traffic of --demo.
    #[command(flatten)]
    pub sim: TrafficArgs,
}

/// A time zone together with the name it was given by.
#[derive(Clone)]
pub struct NamedZone {
    pub name: String,
    pub zone: TimeZone,
}

impl NamedZone {
    /// The host's zone, by its IANA name where the host has one.
    pub fn system() -> Self {
        let zone = TimeZone::system();
        let name = zone.iana_name().unwrap_or("UTC").to_string();
        Self { name, zone }
    }
}

impl fmt::Debug for NamedZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Ascending histogram bucket bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets(pub Vec<f64>);

/// Upper-cased dispositions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispositionList(pub Vec<String>);

/// The API password. Never printed: its `Debug` is a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Everything the exporter needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub api: ApiSource,
    pub timeout: Duration,
    pub timezone: NamedZone,
    pub target: String,
    pub poll_interval: Duration,
    pub max_backoff: Duration,
    pub max_response_bytes: u64,
    pub lookback: Duration,
    pub cdr: CdrConfig,
    pub metrics: MetricsConfig,
    /// Service level and wait alert per queue.
    pub queues: QueueTargets,
    /// How far back the staffing figures look.
    pub staffing_window: Duration,
    pub listen_address: SocketAddr,
    pub telemetry_path: String,
    pub web_max_connections: u32,
    pub web_config_file: Option<PathBuf>,
    /// None: no persistence.
    pub state_file: Option<PathBuf>,
    pub once: bool,
    /// `--config.file`: the targets, when not the flags' one.
    pub config_file: Option<PathBuf>,
    pub enable_lifecycle: bool,
    pub retain_removed: Duration,
    /// With `--demo`: the number of simulated domains.
    pub sim_targets: u16,
}

/// Where the API is: a real Croco-dial domain, or the built-in simulator started by `run`.
#[derive(Debug, Clone)]
pub enum ApiSource {
    Remote(Box<ApiConfig>),
    /// The simulator's traffic; its time zone is replaced by --api.timezone.
    Demo(Box<traffic::Traffic>),
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub url: Url,
    pub user: String,
    pub password: Password,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub tenants: Vec<String>,
    pub profiles: Vec<String>,
    pub agents: Vec<String>,
}

const DEFAULT_IN_PROGRESS_DISPOSITIONS: &str = "QUEUE,INCALL,DISPO";
const DEFAULT_WAITING_DISPOSITIONS: &str = "QUEUE";
const DEFAULT_WRAPUP_DISPOSITIONS: &str = "DISPO";
const DEFAULT_SYSTEM_AGENTS: &str = "VDCL,VDAD";
// The platform's codes: term reasons from its hang-up logger, statuses of its closer log (see
// docs/counting.md, "Outcomes").
const DEFAULT_ABANDON_TERM_REASONS: &str = "ABANDON";
const DEFAULT_ABANDON_DISPOSITIONS: &str = "DROP,XDROP,Abandon";
const DEFAULT_TIMEOUT_TERM_REASONS: &str =
    "QUEUETIMEOUT,QUEUE_TIMEOUT,HOLDTIME,HOLDRECALLXFER,CLOSETIME";
const DEFAULT_TIMEOUT_DISPOSITIONS: &str = "TIMEOT,HOLDTO,WAITTO,QVMAIL,HXFER,CLOSOP";
const DEFAULT_NOT_QUEUED_TERM_REASONS: &str = "AFTERHOURS,NOAGENT,MAXCALLS,ACFILTER";
const DEFAULT_NOT_QUEUED_DISPOSITIONS: &str = "AFTHRS,NANQUE,IQNANQ,MAXCAL,ACFLTR";
const DEFAULT_MAX_PENDING: &str = "2h";
/// Prometheus's own default for its `--web.max-connections`.
pub const DEFAULT_WEB_MAX_CONNECTIONS: u32 = 512;
/// Past the queue timeouts platforms set (VICIdial's in-group drop time defaults to 360 s;
/// hold-time options are minutes), with room for a center that lets callers wait long: a
/// caller still in queue after it is a row nobody finished, and it holds the wait alert at
/// most this long, half of --cdr.max-pending.
const DEFAULT_MAX_WAIT: &str = "1h";
const DEFAULT_SERVICE_LEVEL_THRESHOLD: &str = "20s";
const DEFAULT_SERVICE_LEVEL_GOAL: &str = "0.8";
const DEFAULT_WAIT_ALERT_THRESHOLD: &str = "120s";
const DEFAULT_STAFFING_WINDOW: &str = "30m";
const DEFAULT_API_TIMEOUT: &str = "60s";
const DEFAULT_POLL_INTERVAL: &str = "30s";
const DEFAULT_POLL_MAX_BACKOFF: &str = "5m";
const DEFAULT_POLL_LOOKBACK: &str = "6h";
/// Default cap on a response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;
const DEFAULT_MAX_LABEL_VALUES: u32 = 500;
const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
const DEFAULT_STATE_FILE: &str = "crocodial-exporter.db";
const DEFAULT_RETAIN_REMOVED: &str = "7d";

/// How rows are read: when a call is final, whether it waits or talks while in progress, and
/// its outcome. Every list is upper-case and compared case-insensitively.
#[derive(Debug, Clone)]
pub struct CdrConfig {
    pub in_progress_dispositions: Vec<String>,
    /// A subset of `in_progress_dispositions`.
    pub waiting_dispositions: Vec<String>,
    /// A subset of `in_progress_dispositions`.
    pub wrapup_dispositions: Vec<String>,
    pub max_pending: Duration,
    pub max_wait: Duration,
    pub system_agents: Vec<String>,
    pub abandon_term_reasons: Vec<String>,
    pub abandon_dispositions: Vec<String>,
    pub timeout_term_reasons: Vec<String>,
    pub timeout_dispositions: Vec<String>,
    pub not_queued_term_reasons: Vec<String>,
    pub not_queued_dispositions: Vec<String>,
    /// `call_duration` runs from queue entry (talk time = call_duration - queue_time).
    pub duration_includes_queue_time: bool,
}

impl Default for CdrConfig {
    /// The flags' defaults.
    fn default() -> Self {
        let list = |s| parse_disposition_list(s).map(|l| l.0).unwrap_or_default();
        Self {
            in_progress_dispositions: list(DEFAULT_IN_PROGRESS_DISPOSITIONS),
            waiting_dispositions: list(DEFAULT_WAITING_DISPOSITIONS),
            wrapup_dispositions: list(DEFAULT_WRAPUP_DISPOSITIONS),
            max_pending: parse_duration(DEFAULT_MAX_PENDING).unwrap_or_default(),
            max_wait: parse_duration(DEFAULT_MAX_WAIT).unwrap_or_default(),
            system_agents: list(DEFAULT_SYSTEM_AGENTS),
            abandon_term_reasons: list(DEFAULT_ABANDON_TERM_REASONS),
            abandon_dispositions: list(DEFAULT_ABANDON_DISPOSITIONS),
            timeout_term_reasons: list(DEFAULT_TIMEOUT_TERM_REASONS),
            timeout_dispositions: list(DEFAULT_TIMEOUT_DISPOSITIONS),
            not_queued_term_reasons: list(DEFAULT_NOT_QUEUED_TERM_REASONS),
            not_queued_dispositions: list(DEFAULT_NOT_QUEUED_DISPOSITIONS),
            duration_includes_queue_time: true,
        }
    }
}

/// One queue's service targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueTarget {
    /// An answered leg that waited at most this long, seconds, meets the service level.
    pub service_level_threshold: f64,
    /// The share of offered legs to answer within the threshold, in (0, 1).
    pub service_level_goal: f64,
    /// The wait that pages, seconds.
    pub wait_alert_threshold: f64,
}

impl Default for QueueTarget {
    /// The flags' defaults.
    fn default() -> Self {
        let secs = |s: &str| parse_duration(s).unwrap_or_default().as_secs_f64();
        Self {
            service_level_threshold: secs(DEFAULT_SERVICE_LEVEL_THRESHOLD),
            service_level_goal: parse_goal(DEFAULT_SERVICE_LEVEL_GOAL).unwrap_or_default(),
            wait_alert_threshold: secs(DEFAULT_WAIT_ALERT_THRESHOLD),
        }
    }
}

impl QueueTarget {
    /// The keys of a queue in the targets file's `queues:`, each the flag `--queue.<key>`.
    pub const KEYS: [&'static str; 3] = [
        "service_level_threshold",
        "service_level_goal",
        "wait_alert_threshold",
    ];

    /// Sets `key` (one of [`QueueTarget::KEYS`]) from its text, parsed as its flag is.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "service_level_threshold" => {
                self.service_level_threshold = parse_positive_duration(value)?.as_secs_f64()
            }
            "service_level_goal" => self.service_level_goal = parse_goal(value)?,
            "wait_alert_threshold" => {
                self.wait_alert_threshold = parse_positive_duration(value)?.as_secs_f64()
            }
            _ => {
                return Err(format!(
                    "unknown key (expected {})",
                    QueueTarget::KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// A wait alert at or past `max_wait` could never fire: a caller shown waiting longer is no
    /// longer counted as waiting.
    pub fn check(&self, max_wait: Duration) -> Result<(), String> {
        if self.wait_alert_threshold >= max_wait.as_secs_f64() {
            return Err(format!(
                "wait_alert_threshold {} is not shorter than --cdr.max-wait ({}): a caller shown waiting longer than that is believed gone and no longer waits, so the alert could never fire",
                humantime::format_duration(Duration::from_secs_f64(self.wait_alert_threshold)),
                humantime::format_duration(max_wait)
            ));
        }
        Ok(())
    }
}

/// The service targets of a target's queues: the flags' (or the target's `queue:` section's)
/// for every queue, and the targets file's `queues:` for the queues named there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueTargets {
    pub default: QueueTarget,
    /// By queue name as the `queue` label shows it.
    pub queues: std::collections::BTreeMap<String, QueueTarget>,
}

impl QueueTargets {
    pub fn get(&self, queue: &str) -> &QueueTarget {
        self.queues.get(queue).unwrap_or(&self.default)
    }
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub queue_time_buckets: Vec<f64>,
    pub call_duration_buckets: Vec<f64>,
    pub max_label_values: u32,
    pub agent_metrics: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            queue_time_buckets: DEFAULT_QUEUE_TIME_BUCKETS.to_vec(),
            call_duration_buckets: DEFAULT_CALL_DURATION_BUCKETS.to_vec(),
            max_label_values: DEFAULT_MAX_LABEL_VALUES,
            agent_metrics: true,
        }
    }
}

/// A flag that is wrong; the message names it. The binary exits 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub message: String,
}

fn config_error(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        message: message.into(),
    }
}

impl Config {
    /// What the flags give when only the API and the target name are set: the same defaults
    /// as clap's, from the same constants (a test holds them equal). The zone is the host's.
    pub fn defaults(api: ApiSource, target: impl Into<String>) -> Config {
        // The constants are ours and parse; a test proves it.
        let duration = |s: &str| parse_duration(s).unwrap_or_default();
        Config {
            api,
            timeout: duration(DEFAULT_API_TIMEOUT),
            timezone: NamedZone::system(),
            target: target.into(),
            poll_interval: duration(DEFAULT_POLL_INTERVAL),
            max_backoff: duration(DEFAULT_POLL_MAX_BACKOFF),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            lookback: duration(DEFAULT_POLL_LOOKBACK),
            cdr: CdrConfig::default(),
            metrics: MetricsConfig::default(),
            queues: QueueTargets::default(),
            staffing_window: duration(DEFAULT_STAFFING_WINDOW),
            listen_address: parse_listen_address(DEFAULT_LISTEN_ADDRESS)
                .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
            telemetry_path: DEFAULT_TELEMETRY_PATH.to_string(),
            web_max_connections: DEFAULT_WEB_MAX_CONNECTIONS,
            web_config_file: None,
            state_file: Some(PathBuf::from(DEFAULT_STATE_FILE)),
            once: false,
            config_file: None,
            enable_lifecycle: false,
            retain_removed: duration(DEFAULT_RETAIN_REMOVED),
            sim_targets: 1,
        }
    }

    /// Validates the parsed flags. `password_env` is the value of [`PASSWORD_ENV`], passed in so
    /// that tests need not touch the process environment.
    pub fn from_args(
        mut args: ExporterArgs,
        password_env: Option<String>,
    ) -> Result<Self, ConfigError> {
        let timezone = args.api_timezone.clone().unwrap_or_else(NamedZone::system);
        let api = if args.demo {
            ApiSource::Demo(Box::new(args.sim.traffic(1, timezone.zone.clone())?))
        } else {
            ApiSource::Remote(Box::new(remote_api(&args, password_env)?))
        };
        let waiting = in_progress_subset(
            &args,
            "--cdr.waiting-dispositions",
            args.cdr_waiting.as_ref(),
            DEFAULT_WAITING_DISPOSITIONS,
        )?;
        let wrapup = in_progress_subset(
            &args,
            "--cdr.wrapup-dispositions",
            args.cdr_wrapup.as_ref(),
            DEFAULT_WRAPUP_DISPOSITIONS,
        )?;
        check_outcome_lists(&args)?;
        check_lookback(&args)?;
        if args.sim_targets > 1 && !args.demo {
            return Err(config_error(
                "--sim.targets",
                "simulated domains need --demo (real ones: --config.file)",
            ));
        }
        let target = target_name(args.api_target_name.take(), &api)?;
        let queues = QueueTargets {
            default: QueueTarget {
                service_level_threshold: args.service_level_threshold.as_secs_f64(),
                service_level_goal: args.service_level_goal,
                wait_alert_threshold: args.wait_alert_threshold.as_secs_f64(),
            },
            queues: Default::default(),
        };
        queues
            .default
            .check(args.cdr_max_wait)
            .map_err(|m| config_error("--queue.wait-alert-threshold", m))?;
        Ok(Config {
            api,
            timeout: args.api_timeout,
            timezone,
            target,
            poll_interval: args.poll_interval,
            max_backoff: args.poll_max_backoff,
            max_response_bytes: args.api_max_response_bytes,
            lookback: args.poll_lookback,
            cdr: CdrConfig {
                in_progress_dispositions: args.cdr_in_progress.0,
                waiting_dispositions: waiting,
                wrapup_dispositions: wrapup,
                max_pending: args.cdr_max_pending,
                max_wait: args.cdr_max_wait,
                system_agents: args.cdr_system_agents.0,
                abandon_term_reasons: args.cdr_abandon_term_reasons.0,
                abandon_dispositions: args.cdr_abandon_dispositions.0,
                timeout_term_reasons: args.cdr_timeout_term_reasons.0,
                timeout_dispositions: args.cdr_timeout_dispositions.0,
                not_queued_term_reasons: args.cdr_not_queued_term_reasons.0,
                not_queued_dispositions: args.cdr_not_queued_dispositions.0,
                duration_includes_queue_time: args.cdr_duration_includes_queue_time,
            },
            queues,
            staffing_window: args.staffing_window,
            metrics: MetricsConfig {
                queue_time_buckets: args
                    .queue_time_buckets
                    .map_or_else(|| DEFAULT_QUEUE_TIME_BUCKETS.to_vec(), |b| b.0),
                call_duration_buckets: args
                    .call_duration_buckets
                    .map_or_else(|| DEFAULT_CALL_DURATION_BUCKETS.to_vec(), |b| b.0),
                max_label_values: args.max_label_values,
                agent_metrics: !args.no_agent_metrics,
            },
            listen_address: args.web.listen_address,
            telemetry_path: args.telemetry_path,
            web_max_connections: args.web_max_connections,
            web_config_file: args.web.web_config_file,
            state_file: Some(args.state_file).filter(|p| !p.as_os_str().is_empty()),
            once: args.once,
            config_file: args.config_file,
            enable_lifecycle: args.enable_lifecycle,
            retain_removed: args.retain_removed,
            sim_targets: args.sim_targets,
        })
    }
}

/// Zones of the simulated domains of `--sim.targets`, in turn: each domain's day starts at
/// another hour.
const SIM_TARGET_ZONES: [&str; 6] = [
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "America/Los_Angeles",
    "Australia/Sydney",
    "America/Sao_Paulo",
];

impl Config {
    /// The targets of `--demo --sim.targets N` (N > 1): `demo-1` to `demo-N`, each with its own
    /// seed and zone. One target is the config itself.
    pub fn demo_targets(&self) -> Vec<Config> {
        let ApiSource::Demo(traffic) = &self.api else {
            return vec![self.clone()];
        };
        if self.sim_targets <= 1 {
            return vec![self.clone()];
        }
        (0..usize::from(self.sim_targets))
            .map(|i| {
                let name = SIM_TARGET_ZONES[i % SIM_TARGET_ZONES.len()];
                let zone = TimeZone::get(name).unwrap_or(TimeZone::UTC);
                let mut traffic = (**traffic).clone();
                traffic.seed = i as u64 + 1;
                traffic.tz = zone.clone();
                Config {
                    api: ApiSource::Demo(Box::new(traffic)),
                    timezone: NamedZone {
                        name: name.to_string(),
                        zone,
                    },
                    target: format!("demo-{}", i + 1),
                    ..self.clone()
                }
            })
            .collect()
    }
}

/// The real API the flags name, with its password from the file or the environment.
fn remote_api(args: &ExporterArgs, password_env: Option<String>) -> Result<ApiConfig, ConfigError> {
    let url = args
        .api_url
        .clone()
        .ok_or_else(|| config_error("--api.url", "required (or use --demo)"))?;
    let user = args
        .api_user
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| config_error("--api.user", "required"))?;
    let password = match (&args.api_password_file, password_env) {
        (Some(path), _) => read_password_file(path)?,
        (None, Some(p)) if !p.is_empty() => Password::new(p),
        _ => {
            return Err(config_error(
                "--api.password-file",
                format!("no password: set {PASSWORD_ENV} or --api.password-file"),
            ))
        }
    };
    Ok(ApiConfig {
        url,
        user,
        password,
        ca_file: args.api_ca_file.clone(),
        insecure_skip_verify: args.api_insecure_skip_verify,
        tenants: args.api_tenant.clone(),
        profiles: args.api_profile.clone(),
        agents: args.api_agent.clone(),
    })
}

/// The waiting or wrap-up dispositions: such a call is in progress. The default follows a
/// site's own in-progress list, so that a site which renamed QUEUE or DISPO keeps starting.
fn in_progress_subset(
    args: &ExporterArgs,
    flag: &'static str,
    set: Option<&DispositionList>,
    default: &str,
) -> Result<Vec<String>, ConfigError> {
    let in_progress = &args.cdr_in_progress.0;
    match set {
        Some(list) => {
            if let Some(d) = list.0.iter().find(|d| !in_progress.contains(d)) {
                return Err(config_error(
                    flag,
                    format!("{d} is not one of --cdr.in-progress-dispositions; such a call is in progress"),
                ));
            }
            Ok(list.0.clone())
        }
        None => Ok(parse_disposition_list(default)
            .map(|l| l.0)
            .unwrap_or_default()
            .into_iter()
            .filter(|d| in_progress.contains(d))
            .collect()),
    }
}

/// A code in two outcome lists of the same field would make the outcome depend on the order
/// of the rules; a final disposition that is also in progress would never count.
fn check_outcome_lists(args: &ExporterArgs) -> Result<(), ConfigError> {
    let terms = [
        ("--cdr.abandon-term-reasons", &args.cdr_abandon_term_reasons),
        ("--cdr.timeout-term-reasons", &args.cdr_timeout_term_reasons),
        (
            "--cdr.not-queued-term-reasons",
            &args.cdr_not_queued_term_reasons,
        ),
    ];
    let dispositions = [
        ("--cdr.abandon-dispositions", &args.cdr_abandon_dispositions),
        ("--cdr.timeout-dispositions", &args.cdr_timeout_dispositions),
        (
            "--cdr.not-queued-dispositions",
            &args.cdr_not_queued_dispositions,
        ),
        ("--cdr.in-progress-dispositions", &args.cdr_in_progress),
    ];
    for lists in [&terms[..], &dispositions[..]] {
        for (i, (flag, list)) in lists.iter().enumerate() {
            for (other, other_list) in &lists[i + 1..] {
                if let Some(code) = list.0.iter().find(|c| other_list.0.contains(c)) {
                    return Err(config_error(
                        flag,
                        format!("{code} is also in {other}; a code can mean one thing only"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A call still in progress is counted at the latest at the first poll after
/// --cdr.max-pending; its day must still be in the window then, or it is never counted. The
/// refusal names the flag the user changed (the one off its default) and the value that also
/// keeps calls through the longest backoff, so that the value it advises starts without the
/// backoff warning.
fn check_lookback(args: &ExporterArgs) -> Result<(), ConfigError> {
    let safe_lookback = args.cdr_max_pending.saturating_add(args.poll_interval);
    if args.poll_lookback >= safe_lookback {
        return Ok(());
    }
    let advised = args
        .cdr_max_pending
        .saturating_add(args.poll_interval.max(args.poll_max_backoff));
    let advice = humantime::format_duration(advised);
    let default = |text: &str| parse_duration(text).unwrap_or_default();
    let (flag, message) = if args.poll_lookback != default(DEFAULT_POLL_LOOKBACK) {
        (
            "--poll.lookback",
            format!(
                "{} is shorter than --cdr.max-pending + --poll.interval ({}): a call still in progress when its day leaves the window would never be counted; use {advice} or more (--cdr.max-pending + the longer of --poll.interval and --poll.max-backoff)",
                humantime::format_duration(args.poll_lookback),
                humantime::format_duration(safe_lookback)
            ),
        )
    } else {
        let flag = if args.poll_interval != default(DEFAULT_POLL_INTERVAL) {
            "--poll.interval"
        } else {
            "--cdr.max-pending"
        };
        let value = if flag == "--poll.interval" {
            args.poll_interval
        } else {
            args.cdr_max_pending
        };
        (
            flag,
            format!(
                "{}: --cdr.max-pending + --poll.interval ({}) is longer than --poll.lookback ({}), so a call still in progress when its day leaves the window would never be counted; set --poll.lookback to {advice} or more, or {flag} shorter",
                humantime::format_duration(value),
                humantime::format_duration(safe_lookback),
                humantime::format_duration(args.poll_lookback),
            ),
        )
    };
    Err(config_error(flag, message))
}

/// The `target` label: --api.target-name, else the API's host, else "demo".
fn target_name(name: Option<String>, api: &ApiSource) -> Result<String, ConfigError> {
    match (name, api) {
        (Some(name), _) if name.trim().is_empty() => {
            Err(config_error("--api.target-name", "must not be empty"))
        }
        (Some(name), _) => Ok(name),
        (None, ApiSource::Remote(api)) => Ok(api.url.host_str().unwrap_or_default().to_string()),
        (None, ApiSource::Demo(_)) => Ok("demo".to_string()),
    }
}

/// Reads a secret file, trimming one trailing newline (and a carriage return before it).
pub fn read_password_file(path: &PathBuf) -> Result<Password, ConfigError> {
    let flag = "--api.password-file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(flag, format!("cannot read {}: {e}", path.display())))?;
    let secret = text
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(config_error(flag, format!("{} is empty", path.display())));
    }
    Ok(Password::new(secret))
}

/// Unlike clap's own path parser, accepts "" (no state file).
fn parse_state_file(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Some(magnitude) = s.strip_prefix('-') {
        return Err(format!(
            "durations are positive: write {}, not {s}",
            magnitude.trim()
        ));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write durations like 500ms, 30s, 5m, 6h)"))
}

fn parse_calls_per_minute(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if (0.0..=10_000.0).contains(&n) => Ok(n),
        _ => Err("must be a number from 0 to 10000".into()),
    }
}

fn parse_spike_factor(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if (1.0..=1000.0).contains(&n) => Ok(n),
        _ => Err("must be a number from 1 to 1000".into()),
    }
}

fn parse_human_duration(s: &str) -> Result<humantime::Duration, String> {
    parse_duration(s).map(Into::into)
}

fn parse_positive_human_duration(s: &str) -> Result<humantime::Duration, String> {
    parse_positive_duration(s).map(Into::into)
}

/// A share written as a ratio (`0.8`) or a percentage (`80%`), above 0 and below 1: a goal of
/// every call within any threshold is out of reach of random arrivals, and staffing for it
/// has no answer.
fn parse_goal(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let value = match s.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.parse::<f64>(),
    }
    .map_err(|_| format!("{s}: write a share like 0.8 or 80%"))?;
    if !(value > 0.0 && value < 1.0) {
        return Err(format!("{s}: must be above 0 and below 1 (100%)"));
    }
    Ok(value)
}

/// The staffing window: long enough to hold a few calls of a quiet queue, short enough to be
/// "now".
fn parse_staffing_window(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(Duration::from_secs(5 * 60)..=Duration::from_secs(4 * 3600)).contains(&d) {
        return Err("must be from 5m to 4h".into());
    }
    Ok(d)
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn parse_api_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            let host = s.trim().trim_end_matches('/');
            let example = if host.contains('/') {
                format!("https://{host}")
            } else {
                format!("https://{host}/goAPIv2/goReports/goAPI.php")
            };
            format!("has no scheme: add https://, as in {example}")
        }
        e => e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; use --api.user and the password file".into());
    }
    Ok(url)
}

fn parse_timezone(s: &str) -> Result<NamedZone, String> {
    let zone = TimeZone::get(s).map_err(|e| format!("unknown IANA time zone: {e}"))?;
    Ok(NamedZone {
        name: s.to_string(),
        zone,
    })
}

fn parse_tenant(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.chars().count() != 3 {
        return Err(format!(
            "a tenant code is exactly three characters, got {:?}",
            s
        ));
    }
    Ok(s.to_string())
}

fn parse_disposition_list(s: &str) -> Result<DispositionList, String> {
    let list: Vec<String> = s
        .split(',')
        .map(|d| d.trim().to_ascii_uppercase())
        .filter(|d| !d.is_empty())
        .collect();
    Ok(DispositionList(list))
}

fn parse_buckets(s: &str) -> Result<Buckets, String> {
    let mut bounds = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let v: f64 = part
            .parse()
            .map_err(|_| format!("{part:?} is not a number"))?;
        if !v.is_finite() {
            return Err(format!("{part:?} is not finite (+Inf is always added)"));
        }
        if bounds.last().is_some_and(|&last| v <= last) {
            return Err("bounds must be strictly increasing".into());
        }
        bounds.push(v);
    }
    Ok(Buckets(bounds))
}

fn parse_log_level(s: &str) -> Result<String, String> {
    let level = s.trim().to_ascii_lowercase();
    match level.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" => Ok(level),
        _ => Err("must be one of error, warn, info, debug, trace".into()),
    }
}

/// `:9838` means every IPv4 interface, as with Prometheus' own exporters.
fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT or :PORT".to_string())?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        // Every interface of both families (see `http::listen`).
        "" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .parse()
            .map_err(|_| format!("{h:?} is not an IP address"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn parse_telemetry_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s == "/" || s.starts_with("/-/") {
        return Err("must start with / and not be / or under /-/".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("crocodial-exporter").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_and_demo() {
        let cli = parse(&["--demo"]).expect("parses");
        let cfg = Config::from_args(cli.exporter, None).expect("valid");
        assert!(matches!(cfg.api, ApiSource::Demo(_)));
        assert_eq!(cfg.poll_interval, Duration::from_secs(30));
        assert_eq!(cfg.lookback, Duration::from_secs(6 * 3600));
        assert_eq!(cfg.timeout, Duration::from_secs(60));
        assert_eq!(cfg.cdr.max_pending, Duration::from_secs(7200));
        assert_eq!(
            cfg.cdr.in_progress_dispositions,
            vec!["QUEUE", "INCALL", "DISPO"]
        );
        assert_eq!(cfg.listen_address, "[::]:9838".parse().unwrap());
        assert_eq!(cfg.telemetry_path, "/metrics");
        assert_eq!(cfg.target, "demo");
        assert_eq!(cfg.metrics.queue_time_buckets, DEFAULT_QUEUE_TIME_BUCKETS);
        let ApiSource::Demo(traffic) = cfg.api else {
            unreachable!()
        };
        assert_eq!(traffic.peak_calls_per_minute, 20.0);
        assert_eq!(
            (traffic.spike.period_secs, traffic.spike.length_secs),
            (3600, 1200)
        );
        assert_eq!(traffic.spike.factor, 3.0);
    }

    /// `Config::defaults` and clap's defaults come from the same constants: every field agrees.
    #[test]
    fn config_defaults_are_the_flags_defaults() {
        let cli = parse(&["--demo"]).expect("parses");
        let from_flags = Config::from_args(cli.exporter, None).expect("valid");
        let defaults = Config::defaults(from_flags.api.clone(), "demo");
        assert_eq!(format!("{defaults:?}"), format!("{from_flags:?}"));
        assert_eq!(defaults.listen_address, "[::]:9838".parse().unwrap());
        assert_eq!(defaults.cdr.max_pending, Duration::from_secs(7200));
    }

    #[test]
    fn simulated_traffic_flags() {
        let cli = parse(&[
            "--demo",
            "--sim.calls-per-minute",
            "100",
            "--sim.spike-every",
            "30m",
            "--sim.spike-length",
            "30m",
            "--sim.spike-factor",
            "3.5",
        ])
        .expect("parses");
        let cfg = Config::from_args(cli.exporter, None).expect("valid");
        let ApiSource::Demo(traffic) = cfg.api else {
            unreachable!()
        };
        assert_eq!(traffic.peak_calls_per_minute, 100.0);
        assert_eq!(
            (traffic.spike.period_secs, traffic.spike.length_secs),
            (1800, 1800)
        );
        assert_eq!(traffic.spike.factor, 3.5);

        let cli = parse(&[
            "--demo",
            "--sim.spike-every",
            "10m",
            "--sim.spike-length",
            "11m",
        ])
        .expect("parses");
        let err = Config::from_args(cli.exporter, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--sim.spike-length: must not be longer than --sim.spike-every"
        );
        for (flag, value) in [
            ("--sim.calls-per-minute", "-1"),
            ("--sim.calls-per-minute", "lots"),
            ("--sim.spike-factor", "0.5"),
            ("--sim.spike-every", "0s"),
        ] {
            let err = parse(&["--demo", &format!("{flag}={value}")]).unwrap_err();
            assert!(err.to_string().contains(flag), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn remote_config_reads_password_and_target() {
        let cli = parse(&[
            "--api.url",
            "https://acme.croco-dial.net/goAPIv2/goReports/goAPI.php",
            "--api.user",
            "u",
            "--api.tenant",
            "AAA",
            "--api.tenant",
            "BBB",
            "--api.timezone",
            "America/New_York",
            "--metrics.queue-time-buckets",
            "1,2.5,10",
        ])
        .expect("parses");
        let cfg = Config::from_args(cli.exporter, Some("s3cret".into())).expect("valid");
        let ApiSource::Remote(api) = &cfg.api else {
            panic!("remote expected")
        };
        assert_eq!(api.password.expose(), "s3cret");
        assert_eq!(api.tenants, vec!["AAA", "BBB"]);
        assert_eq!(cfg.target, "acme.croco-dial.net");
        assert_eq!(cfg.timezone.name, "America/New_York");
        assert_eq!(cfg.metrics.queue_time_buckets, vec![1.0, 2.5, 10.0]);
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn outcome_and_live_state_flags() {
        let cfg = |args: &[&str]| {
            let cli = parse(&[&["--demo"], args].concat()).expect("parses");
            Config::from_args(cli.exporter, None)
        };
        let default = cfg(&[]).expect("valid").cdr;
        assert_eq!(default.waiting_dispositions, ["QUEUE"]);
        assert_eq!(default.system_agents, ["VDCL", "VDAD"]);
        assert_eq!(default.wrapup_dispositions, ["DISPO"]);
        assert_eq!(default.abandon_term_reasons, ["ABANDON"]);
        assert_eq!(default.abandon_dispositions, ["DROP", "XDROP", "ABANDON"]);
        assert_eq!(
            default.timeout_term_reasons,
            [
                "QUEUETIMEOUT",
                "QUEUE_TIMEOUT",
                "HOLDTIME",
                "HOLDRECALLXFER",
                "CLOSETIME"
            ]
        );
        assert_eq!(
            default.timeout_dispositions,
            ["TIMEOT", "HOLDTO", "WAITTO", "QVMAIL", "HXFER", "CLOSOP"]
        );
        assert_eq!(
            default.not_queued_term_reasons,
            ["AFTERHOURS", "NOAGENT", "MAXCALLS", "ACFILTER"]
        );
        assert_eq!(
            default.not_queued_dispositions,
            ["AFTHRS", "NANQUE", "IQNANQ", "MAXCAL", "ACFLTR"]
        );
        assert!(default.duration_includes_queue_time);
        let site = cfg(&[
            "--cdr.in-progress-dispositions",
            "queue,incall,hold",
            "--cdr.waiting-dispositions",
            " queue , hold ",
            "--cdr.system-agents",
            "robot",
            "--cdr.abandon-term-reasons",
            "hungup,gone",
            "--cdr.abandon-dispositions",
            "",
            "--cdr.timeout-term-reasons",
            "toolong",
            "--cdr.timeout-dispositions",
            "late",
            "--cdr.not-queued-term-reasons",
            "closed",
            "--cdr.not-queued-dispositions",
            "shut",
            "--cdr.wrapup-dispositions",
            "hold",
            "--cdr.call-duration-includes-queue-time=false",
        ])
        .expect("valid")
        .cdr;
        assert_eq!(site.waiting_dispositions, ["QUEUE", "HOLD"]);
        assert_eq!(site.wrapup_dispositions, ["HOLD"]);
        assert_eq!(site.timeout_term_reasons, ["TOOLONG"]);
        assert_eq!(site.timeout_dispositions, ["LATE"]);
        assert_eq!(site.not_queued_term_reasons, ["CLOSED"]);
        assert_eq!(site.not_queued_dispositions, ["SHUT"]);
        assert!(!site.duration_includes_queue_time);
        assert_eq!(site.system_agents, ["ROBOT"]);
        assert_eq!(site.abandon_term_reasons, ["HUNGUP", "GONE"]);
        assert!(site.abandon_dispositions.is_empty());
        // A waiting call is in progress: a waiting disposition that is not one is refused.
        let err = cfg(&["--cdr.waiting-dispositions", "QUEUE,HOLD"]).unwrap_err();
        assert_eq!(err.flag, "--cdr.waiting-dispositions");
        assert!(err.message.contains("HOLD"), "{err}");
        // A site whose statuses have other names keeps starting; by default nobody waits then.
        let renamed = cfg(&["--cdr.in-progress-dispositions", "INQUEUE,TALKING"])
            .expect("valid")
            .cdr;
        assert!(renamed.waiting_dispositions.is_empty());
        assert!(renamed.wrapup_dispositions.is_empty());
        let err = cfg(&["--cdr.wrapup-dispositions", "WRAP"]).unwrap_err();
        assert_eq!(err.flag, "--cdr.wrapup-dispositions");
        // A code in two outcome lists, or final and in progress at once, is refused.
        let err = cfg(&["--cdr.timeout-term-reasons", "ABANDON"]).unwrap_err();
        assert_eq!(
            (err.flag, err.message.as_str()),
            (
                "--cdr.abandon-term-reasons",
                "ABANDON is also in --cdr.timeout-term-reasons; a code can mean one thing only"
            )
        );
        let err = cfg(&["--cdr.not-queued-dispositions", "queue"]).unwrap_err();
        assert_eq!(
            (err.flag, err.message.as_str()),
            (
                "--cdr.not-queued-dispositions",
                "QUEUE is also in --cdr.in-progress-dispositions; a code can mean one thing only"
            )
        );
    }

    #[test]
    fn a_lookback_that_would_lose_pending_calls_is_refused() {
        let cfg = |args: &[&str]| {
            let cli = parse(&[&["--demo"], args].concat()).expect("parses");
            Config::from_args(cli.exporter, None)
        };
        for lookback in ["0s", "1h", "2h", "2h 29s"] {
            let err = cfg(&["--poll.lookback", lookback]).unwrap_err();
            assert_eq!(err.flag, "--poll.lookback", "{lookback}");
            assert!(
                err.message
                    .contains("--cdr.max-pending + --poll.interval (2h 30s)")
                    && err.message.contains("use 2h 5m or more"),
                "{err}"
            );
        }
        assert!(cfg(&["--poll.lookback", "2h 30s"]).is_ok());
        // The value the refusal advises starts without the backoff warning.
        let advised = cfg(&["--poll.lookback", "2h 5m"]).expect("valid");
        assert!(advised.lookback >= advised.cdr.max_pending + advised.max_backoff);
        // The refusal names the flag the user set, not --poll.lookback they left alone.
        let err = cfg(&["--cdr.max-pending", "7h"]).unwrap_err();
        assert_eq!(err.flag, "--cdr.max-pending");
        assert_eq!(
            err.message,
            "7h: --cdr.max-pending + --poll.interval (7h 30s) is longer than --poll.lookback (6h), so a call still in progress when its day leaves the window would never be counted; set --poll.lookback to 7h 5m or more, or --cdr.max-pending shorter"
        );
        let err = cfg(&["--poll.interval", "1d"]).unwrap_err();
        assert_eq!(err.flag, "--poll.interval");
        assert!(
            err.message.starts_with("1day: ") && err.message.contains("--poll.lookback to 1day 2h"),
            "{err}"
        );
        assert!(cfg(&["--cdr.max-pending", "30m", "--poll.lookback", "31m"]).is_ok());
    }

    #[test]
    fn messages_say_what_to_do() {
        let err = parse(&["--demo", "--api.timeout=-5s"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("durations are positive: write 5s, not -5s"),
            "{err}"
        );
        let err = parse(&["--api.url", "acme.croco-dial.net"]).unwrap_err();
        assert!(
            err.to_string().contains(
                "has no scheme: add https://, as in https://acme.croco-dial.net/goAPIv2/goReports/goAPI.php"
            ),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = parse(&["--demo", "--api.tenant", "ABCD"]).unwrap_err();
        assert!(err.to_string().contains("--api.tenant"), "{err}");
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["--demo", "--poll.interval", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--poll.interval"), "{err}");
        let err = parse(&["--demo", "--metrics.call-duration-buckets", "5,1"]).unwrap_err();
        assert!(err.to_string().contains("strictly increasing"), "{err}");
        let err = parse(&["--demo", "--api.timezone", "Mars/Olympus"]).unwrap_err();
        assert!(err.to_string().contains("--api.timezone"), "{err}");
        let cli = parse(&["--api.url", "https://x.example/goAPI.php"]).expect("parses");
        let err = Config::from_args(cli.exporter, None).unwrap_err();
        assert_eq!(err.flag, "--api.user");
    }

    #[test]
    fn password_file_trims_one_newline() {
        let dir = std::env::temp_dir().join(format!("croco-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        std::fs::write(&path, "p4ss word\r\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap().expose(), "p4ss word");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_password_file(&path).is_err());
    }

    #[test]
    fn an_empty_state_file_turns_persistence_off() {
        let cli = parse(&["--demo", "--state.file", ""]).expect("parses");
        assert_eq!(
            Config::from_args(cli.exporter, None).unwrap().state_file,
            None
        );
        let cli = parse(&["--demo"]).expect("parses");
        assert_eq!(
            Config::from_args(cli.exporter, None).unwrap().state_file,
            Some(PathBuf::from("crocodial-exporter.db"))
        );
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("[::1]:9838").unwrap(),
            "[::1]:9838".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address(":9838").unwrap(),
            "[::]:9838".parse().unwrap()
        );
        assert!(parse_listen_address("9838").is_err());
    }
}
