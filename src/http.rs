//! The HTTP serving plumbing shared by the exporter's endpoints and the simulated API: hyper's
//! HTTP/1 connections, optional TLS and basic auth from a [`WebConfig`], a header-read timeout,
//! a cap on concurrent connections, and a graceful shutdown that lets requests in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{header, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::web::{Security, WebConfig};

/// A client has this long to finish the TLS handshake and to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait for a free slot.
const MAX_CONNECTIONS: usize = 256;
/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub type Body = Full<Bytes>;

/// Listens on `addr`. An unspecified IPv6 address (`[::]`, what `:PORT` means) listens on every
/// interface of both families, as node_exporter does; on a host without IPv6, on every IPv4
/// interface.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let dual_stack = matches!(addr, SocketAddr::V6(v6) if v6.ip().is_unspecified());
    match bind(addr, dual_stack) {
        // No IPv6 on this host (no module, or disabled): IPv4 only.
        Err(e) if dual_stack && e.kind() != std::io::ErrorKind::AddrInUse => bind(
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port())),
            false,
        ),
        bound => bound,
    }
}

fn bind(addr: SocketAddr, dual_stack: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// The address a request came from, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

/// Serves `handler` on `listener` until `shutdown` completes, protected by `web` if given.
pub async fn serve<H, Fut>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    web: Option<Arc<WebConfig>>,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let reloader = web.clone().map(spawn_reloader);
    tokio::pin!(shutdown);
    while let Some((stream, peer, permit)) = accept(&listener, &slots, shutdown.as_mut()).await {
        // TLS settings apply per connection (at the handshake); auth and headers per request,
        // so that a reload also reaches kept-alive connections.
        let tls = web.as_ref().and_then(|w| w.current().tls.clone());
        let handler = handler.clone();
        let web_for_requests = web.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            let handler = handler.clone();
            let security = web_for_requests.as_ref().map(|w| (w.clone(), w.current()));
            async move { Ok::<_, Infallible>(respond(handler, security, req).await) }
        });
        match tls {
            None => spawn_connection(stream, service, &graceful, permit),
            Some(config) => spawn_tls_connection(stream, config, service, &graceful, permit),
        }
    }
    drop(listener);
    if let Some(r) = reloader {
        r.abort();
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open at shutdown");
    }
}

/// Checks `web`'s files for changes every [`crate::web::RELOAD_CHECK`], until aborted.
fn spawn_reloader(web: Arc<WebConfig>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::web::RELOAD_CHECK);
        loop {
            tick.tick().await;
            let web = web.clone();
            let _ = tokio::task::spawn_blocking(move || web.reload_if_changed()).await;
        }
    })
}

/// The next connection, with a free slot to serve it in; `None` once `shutdown` completes.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<(TcpStream, std::net::SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return None,
            permit = slots.clone().acquire_owned() => permit.ok()?,
        };
        tokio::select! {
            _ = &mut shutdown => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some((stream, peer, permit)),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// `handler`'s response to `req`; with a web config, only after basic auth, and with the
/// config's headers.
async fn respond<H, Fut>(
    handler: H,
    security: Option<(Arc<WebConfig>, Arc<Security>)>,
    req: Request<Incoming>,
) -> Response<Body>
where
    H: Fn(Request<Incoming>) -> Fut,
    Fut: Future<Output = Response<Body>>,
{
    let Some((web, sec)) = security else {
        return handler(req).await;
    };
    let sec2 = sec.clone();
    let auth = req.headers().get(header::AUTHORIZATION).cloned();
    // bcrypt is slow on purpose: off the async threads.
    let ok = tokio::task::spawn_blocking(move || web.authorized(&sec2, auth.as_ref()))
        .await
        .unwrap_or(false);
    if !ok {
        let mut res = response(401, "text/plain; charset=utf-8", "Unauthorized\n");
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"crocodial-exporter\""),
        );
        return with_headers(res, &sec.headers);
    }
    let res = handler(req).await;
    with_headers(res, &sec.headers)
}

fn builder() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b
}

fn spawn_connection<IO, S>(
    io: IO,
    service: S,
    graceful: &GracefulShutdown,
    permit: OwnedSemaphorePermit,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder().serve_connection(TokioIo::new(io), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        drop(permit);
    });
}

/// Serves one connection over TLS in a task of its own: the handshake has
/// [`HEADER_READ_TIMEOUT`] to finish, like the request headers after it.
fn spawn_tls_connection<S>(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    service: S,
    graceful: &GracefulShutdown,
    permit: OwnedSemaphorePermit,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let conn = builder().serve_connection(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
        drop(permit);
    });
}

fn with_headers(
    mut res: Response<Body>,
    headers: &[(header::HeaderName, header::HeaderValue)],
) -> Response<Body> {
    for (name, value) in headers {
        res.headers_mut().insert(name.clone(), value.clone());
    }
    res
}

/// A response with a body and a content type.
pub fn response(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        res.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    res
}
