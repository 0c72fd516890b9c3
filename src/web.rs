//! Protection of the exporter's endpoints with a web config file, in the format of the
//! Prometheus exporter-toolkit that Prometheus users already have (`--web.config.file`):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
//!   client_ca_file: clients.crt
//! basic_auth_users:
//!   prometheus: $2y$10$...   # bcrypt hash
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! ```
//!
//! Relative paths are relative to the config file. The file, and the files it names, are
//! re-read when they change; a change that does not load keeps the previous settings (and is
//! logged).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// How often the files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    /// exporter-toolkit settings this exporter does not apply (rustls offers TLS 1.2 and 1.3
    /// with its own safe suites and curves): accepted, so that a shared file loads, and warned
    /// about at every load.
    #[serde(flatten)]
    ignored: BTreeMap<String, serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct HttpFile {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// `http2` and the like: the endpoints speak HTTP/1.1 only.
    #[serde(flatten)]
    ignored: BTreeMap<String, serde::de::IgnoredAny>,
}

/// The settings of exporter-toolkit files that are accepted and not applied.
const IGNORED_TLS: [&str; 5] = [
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
];
const IGNORED_HTTP: [&str; 1] = ["http2"];

/// The settings in force.
#[derive(Debug, Default)]
pub struct Security {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name to bcrypt hash.
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A bcrypt hash of the users' highest cost, checked for an unknown user so that it costs
    /// as much as a known one (no timing tells which users exist).
    dummy_hash: Option<String>,
    /// Settings of the file that are accepted but not applied, e.g. `tls_server_config.min_version`.
    pub ignored: Vec<String>,
}

/// Why a web config does not load. The messages name files, never secrets.
#[derive(Debug, thiserror::Error)]
#[error("web config {path}: {message}")]
pub struct WebConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl Security {
    /// Loads `path` and the files it names.
    pub fn load(path: &Path) -> Result<Security, WebConfigError> {
        let err = |message: String| WebConfigError {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| err(e.to_string()))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut ignored = Vec::new();
        let tls = match &file.tls_server_config {
            Some(t) => {
                ignored.extend(
                    known_ignored(&t.ignored, "tls_server_config", &IGNORED_TLS).map_err(err)?,
                );
                Some(Arc::new(tls_config(dir, t).map_err(err)?))
            }
            None => None,
        };
        let mut cost = None;
        for (user, hash) in &file.basic_auth_users {
            let parts = hash.parse::<bcrypt::HashParts>().map_err(|_| {
                err(format!(
                    "basic_auth_users: the hash of {user:?} is not a bcrypt hash"
                ))
            })?;
            cost = cost.max(Some(parts.get_cost()));
        }
        let dummy_hash = match cost {
            Some(cost) => Some(
                bcrypt::hash("no such user", cost)
                    .map_err(|e| err(format!("basic_auth_users: {e}")))?,
            ),
            None => None,
        };
        let http = file.http_server_config.unwrap_or(HttpFile {
            headers: BTreeMap::new(),
            ignored: BTreeMap::new(),
        });
        ignored.extend(
            known_ignored(&http.ignored, "http_server_config", &IGNORED_HTTP).map_err(err)?,
        );
        let mut headers = Vec::new();
        for (name, value) in http.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| err(format!("headers: bad header name {name:?}")))?;
            let v = HeaderValue::from_str(&value)
                .map_err(|_| err(format!("headers: bad value for {name}")))?;
            headers.push((n, v));
        }
        Ok(Security {
            tls,
            users: file.basic_auth_users,
            headers,
            dummy_hash,
            ignored,
        })
    }
}

fn warn_ignored(path: &Path, security: &Security) {
    if !security.ignored.is_empty() {
        tracing::warn!(
            path = %path.display(),
            ignored = %security.ignored.join(", "),
            "web config settings accepted but not applied: TLS 1.2 and 1.3 with rustls's own suites and curves, HTTP/1.1 only"
        );
    }
}

/// What a client of the endpoints needs to know of a web config: whether they speak TLS and
/// whether they want basic auth. Reads only the file (no certificate, no hash is checked).
pub fn client_view(path: &Path) -> Result<(bool, bool), WebConfigError> {
    let err = |message: String| WebConfigError {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if text.trim().is_empty() {
        return Ok((false, false));
    }
    let file: File = serde_yaml_ng::from_str(&text).map_err(|e| err(e.to_string()))?;
    Ok((
        file.tls_server_config.is_some(),
        !file.basic_auth_users.is_empty(),
    ))
}

/// The keys of `section` that are known and not applied, as `section.key`; an unknown key is
/// refused, as a typo would be.
fn known_ignored(
    keys: &BTreeMap<String, serde::de::IgnoredAny>,
    section: &str,
    known: &[&str],
) -> Result<Vec<String>, String> {
    keys.keys()
        .map(|k| {
            if known.contains(&k.as_str()) {
                Ok(format!("{section}.{k}"))
            } else {
                Err(format!("{section}: unknown field `{k}`"))
            }
        })
        .collect()
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

fn tls_config(dir: &Path, t: &TlsFile) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert_path = resolve(dir, &t.cert_file);
    let key_path = resolve(dir, &t.key_file);
    let chain = certs(&cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let client_auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match client_auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
            let ca = t
                .client_ca_file
                .as_ref()
                .ok_or_else(|| format!("client_auth_type {client_auth} needs client_ca_file"))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(&resolve(dir, ca))? {
                roots.add(c).map_err(|e| e.to_string())?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        other => {
            return Err(format!(
                "client_auth_type {other:?} is not supported (NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
            ))
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A web config file, re-read when it or a file it names changes.
pub struct WebConfig {
    path: PathBuf,
    current: RwLock<Arc<Security>>,
    stamp: Mutex<Vec<Option<(SystemTime, u64)>>>,
    /// Credentials already checked against their bcrypt hash (bcrypt is slow on purpose),
    /// keyed by an HMAC of user and password under a key of this process: the cache never
    /// holds a password.
    verified: Mutex<HashMap<[u8; 32], String>>,
    cache_key: ring::hmac::Key,
    /// `crocodial_web_config_last_reload_successful`: 0 while an edit that does not load is
    /// being ignored (as Prometheus's own `prometheus_config_last_reload_successful`).
    last_reload_successful: prometheus::IntGauge,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn stamp_of(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let security = Security::load(path)?;
        warn_ignored(path, &security);
        let wc = WebConfig {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(security)),
            stamp: Mutex::new(Vec::new()),
            verified: Mutex::new(HashMap::new()),
            last_reload_successful: prometheus::IntGauge::new(
                "crocodial_web_config_last_reload_successful",
                "1 if the last load of --web.config.file succeeded, 0 while an edit that does not load is ignored (the previous settings stay in force).",
            )
            .map_err(|e| WebConfigError {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?,
            cache_key: ring::hmac::Key::generate(
                ring::hmac::HMAC_SHA256,
                &ring::rand::SystemRandom::new(),
            )
            .map_err(|_| WebConfigError {
                path: path.to_path_buf(),
                message: "no randomness for the credential cache".into(),
            })?,
        };
        *wc.stamp.lock().unwrap_or_else(|e| e.into_inner()) = wc.stamps();
        wc.last_reload_successful.set(1);
        Ok(wc)
    }

    /// The metrics of the web config, for /metrics.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.last_reload_successful.clone())
    }

    pub fn current(&self) -> Arc<Security> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The config file and every file it names, for change detection.
    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        let mut files = vec![self.path.clone()];
        if let Ok(text) = std::fs::read_to_string(&self.path) {
            if let Ok(file) = serde_yaml_ng::from_str::<File>(&text) {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                if let Some(t) = file.tls_server_config {
                    files.push(resolve(dir, &t.cert_file));
                    files.push(resolve(dir, &t.key_file));
                    if let Some(ca) = t.client_ca_file {
                        files.push(resolve(dir, &ca));
                    }
                }
            }
        }
        files.iter().map(|f| stamp_of(f)).collect()
    }

    /// Reloads if anything changed. Returns whether new settings are in force.
    pub fn reload_if_changed(&self) -> bool {
        let stamps = self.stamps();
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == stamps {
            return false;
        }
        *last = stamps;
        match Security::load(&self.path) {
            Ok(security) => {
                warn_ignored(&self.path, &security);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(security);
                self.verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                tracing::info!(path = %self.path.display(), "web config reloaded");
                self.last_reload_successful.set(1);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "web config changed but does not load; keeping the previous settings");
                self.last_reload_successful.set(0);
                false
            }
        }
    }

    /// Checks an `Authorization` header against `basic_auth_users`. With no users, everyone is
    /// let in.
    pub fn authorized(&self, security: &Security, authorization: Option<&HeaderValue>) -> bool {
        if security.users.is_empty() {
            return true;
        }
        let Some((user, password)) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
            })
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
        else {
            return false;
        };
        let Some(hash) = security.users.get(&user) else {
            // As slow as a known user's check, so that the answer's timing does not tell.
            if let Some(dummy) = &security.dummy_hash {
                let _ = bcrypt::verify(&password, dummy);
            }
            return false;
        };
        let mut tag = [0u8; 32];
        let mut ctx = ring::hmac::Context::with_key(&self.cache_key);
        // The length first, so that no other split of the same bytes gives the same key.
        ctx.update(&(user.len() as u64).to_le_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password.as_bytes());
        tag.copy_from_slice(ctx.sign().as_ref());
        let key = tag;
        {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.get(&key) == Some(hash) {
                return true;
            }
        }
        if bcrypt::verify(&password, hash).unwrap_or(false) {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= 64 {
                verified.clear();
            }
            verified.insert(key, hash.clone());
            true
        } else {
            false
        }
    }
}
