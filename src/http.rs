//! The HTTP serving plumbing shared by the exporter's endpoints and the simulated API: hyper's
//! HTTP/1 connections, optional TLS and basic auth from a [`WebConfig`], a header-read timeout,
//! a cap on open connections that sheds the idlest rather than keep a scraper waiting, and a
//! graceful shutdown that lets requests in flight finish.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
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
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::web::{Security, WebConfig};

/// A client has this long to finish the TLS handshake and to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
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

/// Serves `handler` on `listener` until `shutdown` completes, protected by `web` if given, with
/// at most `max_connections` open at once.
pub async fn serve<H, Fut>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    web: Option<Arc<WebConfig>>,
    max_connections: usize,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Connections::new(max_connections));
    let reloader = web.clone().map(spawn_reloader);
    tokio::pin!(shutdown);
    while let Some((stream, peer)) = accept(&listener, shutdown.as_mut()).await {
        let Some(permit) = open.admit() else {
            // Every connection has a request in flight: this one waits for none of them.
            tracing::debug!(%peer, "connection refused: every connection is busy");
            continue;
        };
        // TLS settings apply per connection (at the handshake); auth and headers per request,
        // so that a reload also reaches kept-alive connections.
        let tls = web.as_ref().and_then(|w| w.current().tls.clone());
        let handler = handler.clone();
        let web_for_requests = web.clone();
        let busy = permit.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            let handler = handler.clone();
            let security = web_for_requests.as_ref().map(|w| (w.clone(), w.current()));
            let busy = busy.busy();
            async move {
                let res = respond(handler, security, req).await;
                drop(busy);
                Ok::<_, Infallible>(res)
            }
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

/// The connections open, each with whether a request is in flight on it and since when it is
/// idle. At the limit a new connection sheds the one idle longest (one that never sent a
/// request, a slow or a kept-alive one), so that a flood of idle connections never keeps a
/// scrape waiting; only when every connection has a request in flight is the new one refused.
struct Connections {
    max: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Open>,
}

struct Open {
    in_flight: u32,
    idle_since: Instant,
    shed: CancellationToken,
}

impl Connections {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Room for one more connection, shedding the idlest one at the limit.
    fn admit(self: &Arc<Self>) -> Option<Permit> {
        let mut t = self.lock();
        if t.open.len() >= self.max {
            let idlest = t
                .open
                .iter()
                .filter(|(_, c)| c.in_flight == 0)
                .min_by_key(|(_, c)| c.idle_since)
                .map(|(&id, _)| id)?;
            if let Some(shed) = t.open.remove(&idlest) {
                shed.shed.cancel();
            }
        }
        let id = t.next;
        t.next += 1;
        let shed = CancellationToken::new();
        t.open.insert(
            id,
            Open {
                in_flight: 0,
                idle_since: Instant::now(),
                shed: shed.clone(),
            },
        );
        Some(Permit {
            id,
            shed,
            open: self.clone(),
        })
    }
}

/// One admitted connection's place among the open ones; given back when it closes.
#[derive(Clone)]
struct Permit {
    id: u64,
    /// Cancelled when a newer connection needs the place of this idle one.
    shed: CancellationToken,
    open: Arc<Connections>,
}

impl Permit {
    /// A request in flight on this connection, until dropped.
    fn busy(&self) -> Busy {
        if let Some(c) = self.open.lock().open.get_mut(&self.id) {
            c.in_flight += 1;
        }
        Busy(self.clone())
    }

    fn close(&self) {
        self.open.lock().open.remove(&self.id);
    }
}

struct Busy(Permit);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = self.0.open.lock().open.get_mut(&self.0.id) {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.idle_since = Instant::now();
        }
    }
}

/// The next connection; `None` once `shutdown` completes.
async fn accept(
    listener: &TcpListener,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            _ = &mut shutdown => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some((stream, peer)),
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

fn spawn_connection<IO, S>(io: IO, service: S, graceful: &GracefulShutdown, permit: Permit)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder().serve_connection(TokioIo::new(io), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        tokio::select! {
            ended = conn => if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            },
            () = permit.shed.cancelled() => tracing::debug!("idle connection shed for a new one"),
        }
        permit.close();
    });
}

/// Serves one connection over TLS in a task of its own: the handshake has
/// [`HEADER_READ_TIMEOUT`] to finish, like the request headers after it.
fn spawn_tls_connection<S>(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    service: S,
    graceful: &GracefulShutdown,
    permit: Permit,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let served = async {
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
        };
        tokio::select! {
            () = served => {}
            () = permit.shed.cancelled() => tracing::debug!("idle connection shed for a new one"),
        }
        permit.close();
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
