//! The HTTP side of a poll: one POST to goAPI.php, the body read with a size cap.

use std::time::Duration;

use jiff::civil::Date;
use url::Url;

use super::error::PollError;
use crate::config::{ApiConfig, Password, DEFAULT_MAX_RESPONSE_BYTES};
use crate::vocab::Reason;

/// A client for one Croco-dial domain.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    url: Url,
    user: String,
    password: Password,
    filters: Vec<(&'static str, String)>,
    max_response_bytes: u64,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("url", &self.url.as_str())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn new(api: &ApiConfig, timeout: Duration) -> Result<Self, PollError> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &api.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                PollError::new(
                    Reason::Connect,
                    format!("--api.ca-file {}: {e}", path.display()),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                PollError::new(
                    Reason::Connect,
                    format!("--api.ca-file {}: {e}", path.display()),
                )
            })?;
            if certs.is_empty() {
                return Err(PollError::new(
                    Reason::Connect,
                    format!("--api.ca-file {}: no certificate", path.display()),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .danger_accept_invalid_certs(api.insecure_skip_verify)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("crocodial-exporter/", env!("CARGO_PKG_VERSION")))
            // A redirect would turn the POST into a GET and drop the form; better to say so.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PollError::new(Reason::Connect, format!("HTTP client: {e}")))?;
        let filters = api
            .tenants
            .iter()
            .map(|t| ("tenant[]", t.clone()))
            .chain(api.profiles.iter().map(|p| ("profile[]", p.clone())))
            .chain(api.agents.iter().map(|a| ("user[]", a.clone())))
            .collect();
        Ok(Self {
            http,
            url: api.url.clone(),
            user: api.user.clone(),
            password: api.password.clone(),
            filters,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    pub fn with_max_response_bytes(mut self, max: u64) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// The form body of a request: always POSTed, so the password never travels in a URL.
    fn form(&self, from: Date, to: Date) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("goAction", "inbound_cdr")
            .append_pair("goUser", &self.user)
            .append_pair("goPass", self.password.expose())
            .append_pair("responsetype", "json");
        for (name, value) in &self.filters {
            form.append_pair(name, value);
        }
        form.append_pair("fromDate", &from.to_string())
            .append_pair("toDate", &to.to_string());
        form.finish()
    }

    /// Asks for the report for the days `from ..= to` (dialer-local); the body is then read
    /// chunk by chunk from the returned [`Body`], never whole.
    pub async fn request(&self, from: Date, to: Date) -> Result<Body, PollError> {
        let response = self
            .http
            .post(self.url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(self.form(from, to))
            .send()
            .await
            .map_err(|e| transport_error(e, Reason::Connect))?;
        let status = response.status();
        if !status.is_success() {
            let detail = match response.headers().get(reqwest::header::LOCATION) {
                Some(_) if status.is_redirection() => {
                    " (redirect: check the scheme and path of --api.url)"
                }
                _ if status == reqwest::StatusCode::NOT_FOUND => {
                    " (Not Found: check the path of --api.url, normally /goAPIv2/goReports/goAPI.php)"
                }
                _ => "",
            };
            return Err(PollError::new(
                Reason::Http,
                format!("HTTP status {}{detail}", status.as_u16()),
            ));
        }
        let cap = self.max_response_bytes;
        let announced = response.content_length().unwrap_or(0);
        if announced > cap {
            return Err(too_large(cap));
        }
        Ok(Body {
            response,
            cap,
            length: 0,
        })
    }
}

/// The body of an answer, as it arrives.
#[derive(Debug)]
pub struct Body {
    response: reqwest::Response,
    cap: u64,
    length: u64,
}

impl Body {
    /// The next chunk, or `None` at the end of the body.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, PollError> {
        let chunk = self
            .response
            .chunk()
            .await
            .map_err(|e| transport_error(e, Reason::Body))?;
        if let Some(chunk) = &chunk {
            self.length += chunk.len() as u64;
            if self.length > self.cap {
                return Err(too_large(self.cap));
            }
        }
        Ok(chunk)
    }

    /// Bytes received so far.
    pub fn length(&self) -> u64 {
        self.length
    }
}

fn too_large(cap: u64) -> PollError {
    PollError::new(
        Reason::TooLarge,
        format!("response larger than {cap} bytes (--api.max-response-bytes)"),
    )
}

/// reqwest's message without the URL, with its causes (e.g. "connection refused").
fn transport_error(e: reqwest::Error, otherwise: Reason) -> PollError {
    let reason = if e.is_timeout() {
        Reason::Timeout
    } else if e.is_connect() {
        Reason::Connect
    } else {
        otherwise
    };
    let mut message = describe(e);
    // rustls reads a plain-HTTP answer to its hello as a record of an unknown type.
    if message.contains("InvalidContentType") {
        message = format!(
            "TLS handshake failed: the server answered in plain HTTP, not TLS (is the URL http://, or the port the plain one?) ({message})"
        );
    }
    PollError::new(reason, message)
}

/// reqwest's message without the URL (which may carry a secret), with its causes.
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
