//! `--config.file`: the Croco-dial domains (targets) one exporter polls, each with its own
//! settings, read at start and at every reload.
//!
//! ```yaml
//! targets:
//!   - name: acme                 # the `target` label; unique
//!     api:
//!       url: https://acme.croco-dial.net/goAPIv2/goReports/goAPI.php
//!       user: reports
//!       password_file: /run/secrets/acme
//!       timezone: America/New_York
//!     poll: {interval: 60s}
//!     cdr: {max_pending: 3h}
//!     queue: {service_level_threshold: 30s}    # this target's queues' default
//!     queues:                                  # per queue, by its `queue` label
//!       VIP: {service_level_threshold: 10s, service_level_goal: 90%, wait_alert_threshold: 60s}
//! ```
//!
//! A key of the `api`, `poll`, `cdr`, `queue` and `staffing` sections is the flag of the same name (`poll.interval`
//! is `--poll.interval`, `cdr.max_pending` is `--cdr.max-pending`), and the flags (and their
//! environment variables) are every target's defaults. So a target is parsed as the command
//! line with its keys appended as flags, by the same parsers and checks as the flags: one
//! schema, one set of messages, and every per-domain flag settable per target. Passwords come
//! only from files (`password_file`) or named environment variables (`password_env`), never
//! from the file itself.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches};
use serde_yaml_ng::Value;

use crate::config::{Cli, Config, ConfigError, QueueTarget, PASSWORD_ENV};

/// The sections of a target whose keys are flags.
const SECTIONS: [&str; 5] = ["api", "poll", "cdr", "queue", "staffing"];

/// Why a targets file cannot be used: the file, the target and the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}: {message}", path.display(), target.as_ref().map(|t| format!(": target {t}")).unwrap_or_default(), key.as_ref().map(|k| format!(": {k}")).unwrap_or_default())]
pub struct ConfigFileError {
    pub path: PathBuf,
    pub target: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

/// The targets file and the command line whose flags are its targets' defaults.
#[derive(Debug, Clone)]
pub struct TargetsFile {
    pub path: PathBuf,
    /// The exporter's command line (program name first), without the subcommand.
    base_args: Vec<OsString>,
}

impl TargetsFile {
    pub fn new(path: PathBuf, base_args: Vec<OsString>) -> Self {
        Self { path, base_args }
    }

    /// Reads the file: one [`Config`] per target, in the file's order. `env` reads an
    /// environment variable (passed in so that tests need not touch the process's).
    pub fn load(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Config>, ConfigFileError> {
        let error = |target: Option<&str>, key: Option<&str>, message: String| ConfigFileError {
            path: self.path.clone(),
            target: target.map(str::to_string),
            key: key.map(str::to_string),
            message,
        };
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| error(None, None, format!("cannot read: {e}")))?;
        let doc: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| error(None, None, e.to_string()))?;
        let Value::Mapping(top) = &doc else {
            return Err(error(
                None,
                None,
                "expected a mapping with `targets:`".into(),
            ));
        };
        for key in top.keys() {
            if key.as_str() != Some("targets") {
                return Err(error(
                    None,
                    Some(&key_text(key)),
                    "unknown key (expected targets)".into(),
                ));
            }
        }
        let Some(Value::Sequence(targets)) = top.get("targets") else {
            return Err(error(
                None,
                Some("targets"),
                "expected a list of targets".into(),
            ));
        };
        if targets.is_empty() {
            return Err(error(None, Some("targets"), "no targets".into()));
        }
        let flags = flag_names();
        let mut names = BTreeSet::new();
        let mut configs = Vec::with_capacity(targets.len());
        for (i, target) in targets.iter().enumerate() {
            let Value::Mapping(target) = target else {
                return Err(error(
                    None,
                    Some(&format!("targets[{i}]")),
                    "expected a mapping".into(),
                ));
            };
            let name = match target.get("name").and_then(Value::as_str) {
                Some(name) => name.to_string(),
                None => {
                    return Err(error(
                        None,
                        Some(&format!("targets[{i}].name")),
                        "required".into(),
                    ))
                }
            };
            let at = Some(name.as_str());
            check_name(&name).map_err(|m| error(at, Some("name"), m))?;
            if !names.insert(name.clone()) {
                return Err(error(
                    at,
                    Some("name"),
                    "used by another target; names are unique".into(),
                ));
            }
            let mut args = self.base_args.clone();
            let mut set: Vec<String> = vec!["--api.target-name".into()];
            args.push(format!("--api.target-name={name}").into());
            let mut password = env(PASSWORD_ENV);
            let mut password_from_env = false;
            let mut set_false: Vec<String> = Vec::new();
            for (section, settings) in target {
                let section = key_text(section);
                if section == "name" || section == "queues" {
                    continue;
                }
                if !SECTIONS.contains(&section.as_str()) {
                    return Err(error(
                        at,
                        Some(&section),
                        "unknown key (expected name, api, poll, cdr, queue, queues, staffing)"
                            .into(),
                    ));
                }
                let Value::Mapping(settings) = settings else {
                    return Err(error(at, Some(&section), "expected a mapping".into()));
                };
                let has = |k: &str| {
                    settings
                        .keys()
                        .any(|key| key_text(key).replace('-', "_") == k)
                };
                if has("password_file") && has("password_env") {
                    return Err(error(
                        at,
                        Some("api.password_env"),
                        "and password_file: give one".into(),
                    ));
                }
                for (key, value) in settings {
                    // The flag's spelling (`max-pending`) is the same key as `max_pending`.
                    let key = format!("{section}.{}", key_text(key).replace('-', "_"));
                    match key.as_str() {
                        "api.password" => {
                            return Err(error(at, Some(&key), "passwords are not written in this file: use password_file (a file) or password_env (an environment variable)".into()))
                        }
                        "api.target_name" => {
                            return Err(error(at, Some(&key), "the target's name is its `name`".into()))
                        }
                        "api.password_env" => {
                            let variable = value.as_str().unwrap_or_default();
                            password = Some(env(variable).filter(|p| !p.is_empty()).ok_or_else(|| {
                                error(at, Some(&key), format!("environment variable {variable:?} is not set"))
                            })?);
                            password_from_env = true;
                            continue;
                        }
                        _ => {}
                    }
                    let flag = format!("--{}", key.replace('_', "-"));
                    let Some(takes_value) = flags.iter().find(|(f, _)| *f == flag).map(|(_, t)| *t)
                    else {
                        return Err(error(
                            at,
                            Some(&key),
                            format!("unknown key: no flag {flag}"),
                        ));
                    };
                    let text = value_text(value).map_err(|m| error(at, Some(&key), m))?;
                    if key == "api.url" && has_credentials(&text) {
                        // Refused without the value, which a message would echo.
                        return Err(error(
                            at,
                            Some(&key),
                            "has a user or password in it: use user, and password_file or password_env".into(),
                        ));
                    }
                    set.push(flag.clone());
                    match (takes_value, text.as_str()) {
                        (true, _) => args.push(format!("{flag}={text}").into()),
                        (false, "true") => args.push(flag.into()),
                        (false, "false") => set_false.push(flag.clone()),
                        (false, _) => {
                            return Err(error(
                                at,
                                Some(&key),
                                format!("{text}: expected true or false"),
                            ))
                        }
                    }
                }
            }
            // A key of the file replaces the flag's value from the command line (a list too,
            // which clap would add to): the command line's occurrences of it are left out.
            let args = without_flags(&args, self.base_args.len(), &set, &flags);
            let matches = Cli::command()
                .args_override_self(true)
                .try_get_matches_from(&args)
                .map_err(|e| error(at, None, first_line(&e.to_string())))?;
            // A switch the file sets false cannot be turned off when the environment sets it.
            for flag in &set_false {
                let on = Cli::command()
                    .get_arguments()
                    .find(|a| a.get_long().is_some_and(|l| format!("--{l}") == *flag))
                    .is_some_and(|a| matches.get_flag(a.get_id().as_str()));
                if on {
                    return Err(error(
                        at,
                        Some(&flag_key(flag)),
                        "is false here but set for every target by the environment; unset it there"
                            .into(),
                    ));
                }
            }
            let mut cli = Cli::from_arg_matches(&matches)
                .map_err(|e| error(at, None, first_line(&e.to_string())))?;
            if password_from_env {
                cli.exporter.api_password_file = None;
            }
            let mut config =
                Config::from_args(cli.exporter, password).map_err(|e: ConfigError| {
                    let key = flag_key(e.flag);
                    error(at, Some(&key), e.message)
                })?;
            if let Some(queues) = target.get("queues") {
                config.queues.queues = queue_targets(queues, &config)
                    .map_err(|(key, message)| error(at, Some(&key), message))?;
            }
            configs.push(config);
        }
        Ok(configs)
    }
}

/// A target's `queues:`: each queue's service targets, starting from the target's defaults.
fn queue_targets(
    queues: &Value,
    config: &Config,
) -> Result<BTreeMap<String, QueueTarget>, (String, String)> {
    let Value::Mapping(queues) = queues else {
        return Err(("queues".into(), "expected a mapping of queue names".into()));
    };
    let mut out = BTreeMap::new();
    for (queue, settings) in queues {
        let queue = key_text(queue);
        let at = |key: &str| format!("queues.{queue}{key}");
        let Value::Mapping(settings) = settings else {
            return Err((
                at(""),
                format!("expected a mapping of {}", QueueTarget::KEYS.join(", ")),
            ));
        };
        let mut target = config.queues.default;
        for (key, value) in settings {
            let key = key_text(key).replace('-', "_");
            let text = value_text(value).map_err(|m| (at(&format!(".{key}")), m))?;
            target
                .set(&key, &text)
                .map_err(|m| (at(&format!(".{key}")), m))?;
        }
        target
            .check(config.cdr.max_wait)
            .map_err(|m| (at(".wait_alert_threshold"), m))?;
        out.insert(queue, target);
    }
    Ok(out)
}

/// `args` without the occurrences, among its first `base` (the command line), of the flags in
/// `flags` (as `--flag=value`, `--flag value` or a bare switch).
fn without_flags(
    args: &[OsString],
    base: usize,
    flags: &[String],
    known: &[(String, bool)],
) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for (i, arg) in args.iter().enumerate() {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        let text = arg.to_string_lossy();
        let name = text.split('=').next().unwrap_or(&text);
        if i > 0 && i < base && flags.iter().any(|f| f == name) {
            skip_next = !text.contains('=') && known.iter().any(|(f, takes)| f == name && *takes);
            continue;
        }
        out.push(arg.clone());
    }
    out
}

/// Whether a URL carries a user or a password.
fn has_credentials(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// Every long flag of the exporter, and whether it takes a value.
fn flag_names() -> Vec<(String, bool)> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| {
            let takes = a.get_action().takes_values();
            a.get_long().map(|l| (format!("--{l}"), takes))
        })
        .collect()
}

/// The file's key of a flag: `--cdr.max-pending` is `cdr.max_pending`.
fn flag_key(flag: &str) -> String {
    flag.trim_start_matches('-').replace('-', "_")
}

/// Letters, digits, `_`, `.` and `-`: the name is a label value and names the target's tables
/// in the state file.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed: use letters, digits, _, . and -"
        ));
    }
    Ok(())
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// A value as the flag takes it: lists joined with commas.
fn value_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Sequence(items) => items
            .iter()
            .map(|v| match v {
                Value::Sequence(_) | Value::Mapping(_) => {
                    Err("expected a list of values".to_string())
                }
                v => value_text(v),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        Value::Null => Err("no value".into()),
        _ => Err("expected a value or a list of values".into()),
    }
}

fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}
