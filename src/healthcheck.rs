//! `crocodial-exporter healthcheck`: asks a running exporter's `/-/healthy`, for the image's
//! `HEALTHCHECK` (distroless has no shell or curl) and compose. It reads the exporter's own
//! listen address and web config, so that the same environment serves both: TLS means https,
//! basic auth users mean credentials are sent.

use std::net::{Ipv4Addr, SocketAddr};

use crate::api::client::describe;
use crate::config::{read_password_file, HealthcheckArgs, Password, HEALTHCHECK_PASSWORD_ENV};
use crate::web;

/// Why the exporter is not known to be healthy. Messages never carry the password.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("{0}")]
    Setup(String),
    #[error("{url}: {message}")]
    Unhealthy { url: String, message: String },
}

/// Where the exporter answers on this host: an unspecified listen host means every interface,
/// of which the IPv4 loopback is always there (`[::]` listens on both families, or on IPv4
/// alone on a host without IPv6).
fn local(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Asks `/-/healthy` once; Ok when it answers 200 within the timeout. `password_env` is the
/// value of [`HEALTHCHECK_PASSWORD_ENV`].
pub async fn check(
    args: &HealthcheckArgs,
    password_env: Option<String>,
) -> Result<(), HealthcheckError> {
    let (tls, auth_required) = match &args.web.web_config_file {
        Some(path) => web::client_view(path).map_err(|e| HealthcheckError::Setup(e.to_string()))?,
        None => (false, false),
    };
    let credentials = match (&args.user, auth_required) {
        (Some(user), _) => {
            let password = match (&args.password_file, password_env) {
                (Some(path), _) => {
                    read_password_file(path).map_err(|e| HealthcheckError::Setup(e.to_string()))?
                }
                (None, Some(p)) => Password::new(p),
                (None, None) => {
                    return Err(HealthcheckError::Setup(format!(
                        "--auth.user needs a password: set {HEALTHCHECK_PASSWORD_ENV} or --auth.password-file"
                    )))
                }
            };
            Some((user.clone(), password))
        }
        (None, true) => {
            return Err(HealthcheckError::Setup(format!(
                "the web config requires basic auth: set --auth.user (CROCODIAL_HEALTHCHECK_USER) and {HEALTHCHECK_PASSWORD_ENV}"
            )))
        }
        (None, false) => None,
    };
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://{}/-/healthy", local(args.web.listen_address));
    let unhealthy = |message: String| HealthcheckError::Unhealthy {
        url: url.clone(),
        message,
    };
    // The exporter is asked on this host, by the address it listens on: its certificate names
    // the host Prometheus uses, not that one.
    // Never through a proxy of the environment (one set for reaching the API): the exporter
    // is on this host.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(args.timeout)
        .danger_accept_invalid_certs(tls)
        .build()
        .map_err(|e| HealthcheckError::Setup(e.to_string()))?;
    let mut request = client.get(&url);
    if let Some((user, password)) = &credentials {
        request = request.basic_auth(user, Some(password.expose()));
    }
    let response = request.send().await.map_err(|e| unhealthy(describe(e)))?;
    match response.status().as_u16() {
        200 => Ok(()),
        status => Err(unhealthy(format!("status {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_host_is_asked_on_loopback() {
        let at = |s: &str| local(s.parse().expect("addr")).to_string();
        assert_eq!(at("0.0.0.0:9838"), "127.0.0.1:9838");
        assert_eq!(at("[::]:9838"), "127.0.0.1:9838");
        assert_eq!(at("[::1]:9838"), "[::1]:9838");
        assert_eq!(at("10.1.2.3:9000"), "10.1.2.3:9000");
    }
}
