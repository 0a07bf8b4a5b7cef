//! The connection-level front of tenscale's single listener.
//!
//! Why it exists: Tailscale clients open the control channel with `POST /ts2021` +
//! `Upgrade: tailscale-control-protocol` and DERP with `GET /derp` + `Upgrade: DERP`, then
//! speak their own protocol on the raw socket. actix-http hands a raw socket to a handler
//! only for WebSocket and CONNECT; for these two tokens it chunk-encodes the 101 and parses
//! the next client bytes as a new request. So this front sits *below* actix-http:
//!
//! ```text
//! accept ─ caps ─ TCP_NODELAY ─ [TLS] ─ read first head (timeout, size cap)
//!                                  ├─ /ts2021 or /derp upgrade ─▶ takeover handler (raw io)
//!                                  └─ anything else ─▶ actix-http HTTP/1 ─▶ actix-web App
//! ```
//!
//! **Bounded before the head:** a connection over the global or per-address cap
//! ([`limits`]) is closed on accept; an admitted one allocates nothing until its first byte
//! arrives, and is closed when its TLS handshake and first head are not done within
//! `header_timeout` or the head outgrows `max_head_bytes`. Past the head, each protocol
//! bounds its own connections (actix's keep-alive and body timeouts, [`TimedIo`]'s limit on
//! every HTTP/1 request, ts2021's handshake, ping and write timeouts, DERP's ClientInfo and
//! write timeouts).
//!
//! Bytes read while sniffing are replayed in front of the stream on both paths. Only the
//! first request of a connection is sniffed (real clients open a fresh connection for each
//! upgrade), so the App should answer `/ts2021` and `/derp` without upgrade itself (400/426).
//! Browser variants are WebSocket upgrades and go to actix like any other request;
//! [`websocket`] turns them into byte streams ([`ws_stream`]) for the same protocol code.
//!
//! The takeover handler owns the connection from the head on: it validates headers and
//! writes the `101 Switching Protocols` itself.
//!
//! Shutdown: `server.handle().stop(true)` stops accepting, lets actix close idle keep-alive
//! connections, and cancels [`Takeover::shutdown`] (one token for the whole server): takeover
//! handlers must watch it and finish, since the worker waits for them (up to
//! [`FrontOptions::shutdown_timeout`]). `stop(false)` drops every connection at once.
//!
//! **Boundary:** a leaf crate. It knows two upgrade tokens and the WebSocket handshake, and
//! nothing of what is spoken after them: the server's takeover handler and App get the
//! connections. It reads no store and no settings file (the server passes [`FrontOptions`]
//! in), and imports nothing of tenscale.
#![warn(unreachable_pub)]

pub mod limits;
mod replay;
mod request_timer;
mod sniff;
pub mod tls;
pub mod websocket;
pub mod ws_stream;

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::error::DispatchError;
use actix_http::{HttpServiceBuilder, Request, Response};
use actix_server::{GracefulShutdownSignal, Server};
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt as _,
};
use actix_web::dev::AppConfig;
use futures::future::BoxFuture;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use limits::{ConnectionLimits, FrontMetrics, HeadFailure};
pub use replay::{BoxedIo, Io, Replay};
pub use request_timer::{TimedIo, UpgradeMark};
// `read_first` and `First` are public for the fuzz target of the sniffer (fuzz/).
pub use sniff::{read_first, First, RequestHead, UpgradeKind};

/// A connection that left HTTP: the head is consumed, nothing has been answered yet.
pub struct Takeover {
    pub kind: UpgradeKind,
    pub head: RequestHead,
    /// The real client address (TCP peer).
    pub peer: SocketAddr,
    /// TLS or plain; bytes the client sent after the head are read first.
    pub io: BoxedIo,
    /// Cancelled when the server starts a graceful stop.
    pub shutdown: CancellationToken,
}

impl fmt::Debug for Takeover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Takeover")
            .field("kind", &self.kind)
            .field("head", &self.head)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Runs a taken-over connection to its end (on the accepting worker's runtime).
pub type TakeoverHandler = Arc<dyn Fn(Takeover) -> BoxFuture<'static, ()> + Send + Sync>;

/// Limits of the front. `Default` gives production values.
#[derive(Debug, Clone)]
pub struct FrontOptions {
    pub workers: usize,
    /// Time for the TLS handshake plus the first request head.
    pub header_timeout: Duration,
    /// Largest first request head; a longer one closes the connection.
    pub max_head_bytes: usize,
    /// How long an HTTP/1 connection may sit idle between requests (0: one request per
    /// connection; whole seconds are meant, see `http1`).
    pub keep_alive: Duration,
    /// How long each HTTP/1 request, the later ones of a kept-alive connection included, may
    /// take to arrive: from its first byte until the server begins to answer ([`TimedIo`]).
    pub request_timeout: Duration,
    /// Per worker, taken-over connections included (they stay counted while they live);
    /// over it a worker stops accepting (the kernel's backlog holds new connections).
    pub max_connections_per_worker: usize,
    /// Open connections in all, over every worker; over it new ones are closed on accept.
    /// 0: no cap.
    pub max_connections: usize,
    /// Open connections from one client address; over it new ones are closed on accept.
    /// 0: no cap.
    pub max_connections_per_ip: usize,
    pub metrics: FrontMetrics,
    /// How long a graceful stop waits for open connections (whole seconds).
    pub shutdown_timeout: Duration,
    /// Cancelled when a graceful stop begins (the same token as [`Takeover::shutdown`]);
    /// pass one in to let connections served through actix (WebSockets) watch it too.
    pub shutdown: CancellationToken,
}

impl Default for FrontOptions {
    fn default() -> Self {
        FrontOptions {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            header_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            keep_alive: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            max_connections_per_worker: 25_600,
            max_connections: 100_000,
            max_connections_per_ip: 1024,
            metrics: FrontMetrics::default(),
            shutdown_timeout: Duration::from_secs(30),
            shutdown: CancellationToken::new(),
        }
    }
}

/// What every worker shares.
struct Ctx {
    tls: Option<TlsAcceptor>,
    takeover: TakeoverHandler,
    header_timeout: Duration,
    max_head_bytes: usize,
    request_timeout: Duration,
    shutdown: CancellationToken,
    limits: Arc<ConnectionLimits>,
}

/// Builds (does not start polling) a server on `listener`. `app_factory` has the shape
/// `HttpServer::new` takes. The caller awaits or spawns the returned `Server`; it installs
/// no signal handlers (stop it through its handle).
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app_factory: F,
    takeover: TakeoverHandler,
    options: FrontOptions,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let local_addr = listener.local_addr()?;
    let secure = tls.is_some();
    let keep_alive = options.keep_alive;
    let ctx = Arc::new(Ctx {
        tls: tls.map(TlsAcceptor::from),
        takeover,
        header_timeout: options.header_timeout,
        max_head_bytes: options.max_head_bytes,
        request_timeout: options.request_timeout,
        shutdown: options.shutdown,
        limits: ConnectionLimits::new(options.max_connections, options.max_connections_per_ip, options.metrics),
    });
    let builder = Server::build()
        .workers(options.workers)
        .max_concurrent_connections(options.max_connections_per_worker)
        .shutdown_timeout(options.shutdown_timeout.as_secs())
        .disable_signals();
    let graceful = builder.graceful_shutdown_signal();

    let builder = builder.listen("tenscale-front", listener, move || {
        let (ctx, graceful) = (ctx.clone(), graceful.clone());
        let h1 = http1(app_factory(), secure, local_addr, graceful.clone(), keep_alive);
        fn_factory(move || {
            let (ctx, graceful) = (ctx.clone(), graceful.clone());
            let h1 = h1.new_service(());
            async move {
                let h1 = Rc::new(h1.await?);
                // Tell taken-over connections when a graceful stop begins.
                let token = ctx.shutdown.clone();
                actix_rt::spawn(async move {
                    graceful.notified().await;
                    token.cancel();
                });
                Ok::<_, ()>(fn_service(move |tcp: TcpStream| {
                    let (ctx, h1) = (ctx.clone(), h1.clone());
                    async move {
                        connection(tcp, &ctx, |io, peer| h1.call((io, Some(peer)))).await;
                        Ok::<_, ()>(())
                    }
                }))
            }
        })
    })?;
    Ok(builder.run())
}

/// The HTTP/1 service actix-web's `HttpServer` would build, on our stream type.
fn http1<I, S, B>(
    app: I,
    secure: bool,
    local_addr: SocketAddr,
    graceful: GracefulShutdownSignal,
    keep_alive: Duration,
) -> impl ServiceFactory<(TimedIo, Option<SocketAddr>), Config = (), Response = (), Error = DispatchError, InitError = ()>
where
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let app = app.into_factory().map_err(|err| err.into().error_response());
    let app_config = move |_| {
        // actix-web has no public constructor for AppConfig; `__priv_test_new` is the one
        // actix-test uses. It only feeds ConnectionInfo's scheme and host fallbacks.
        AppConfig::__priv_test_new(secure, local_addr.to_string(), local_addr)
    };
    let mut builder = HttpServiceBuilder::<TimedIo, _>::default()
        .local_addr(local_addr)
        // WebSocket handlers find the mark here and take their connection out of the
        // request time limit.
        .on_connect_ext(|io: &TimedIo, ext: &mut actix_http::Extensions| {
            ext.insert(io.upgrade_mark().clone());
        })
        // actix checks it against a clock it updates twice a second: sub-second values close
        // early. Its request-head timer covers only a connection's first head, which the
        // front has read already: later requests are timed by `TimedIo`.
        .keep_alive(keep_alive)
        // Closes idle keep-alive connections when a graceful stop begins.
        .graceful_shutdown_signal(move || {
            let signal = graceful.clone();
            async move { signal.notified().await }
        });
    if secure {
        builder = builder.secure();
    }
    builder.h1(map_config(app, app_config))
}

/// One accepted connection, from TCP to its end.
async fn connection<H, Fut, E>(tcp: TcpStream, ctx: &Ctx, http: H)
where
    H: FnOnce(TimedIo, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: fmt::Debug,
{
    let Ok(peer) = tcp.peer_addr() else { return };
    // Held until the connection ends, whichever way it goes.
    let Ok(_slot) = ctx.limits.admit(peer.ip()) else {
        debug!(%peer, "front: connection refused by the connection caps");
        return;
    };
    // Control and DERP write small frames first and expect them on the wire at once.
    if let Err(err) = tcp.set_nodelay(true) {
        debug!(%peer, %err, "front: set_nodelay failed");
    }
    // This future lives in a task for the whole connection and weighs the largest state of
    // any await point: the TLS handshake and the HTTP/1 dispatcher are boxed so that a
    // taken-over connection (nearly all of them: control and DERP) does not carry them.
    // An idle connection costs its task and socket only: no buffer (and no TLS state) is
    // allocated until the first byte arrives.
    let first_head = async {
        tcp.readable().await?;
        Box::pin(sniff(tcp, ctx)).await
    };
    let metrics = ctx.limits.metrics();
    let route = match tokio::time::timeout(ctx.header_timeout, first_head).await {
        Ok(Ok(route)) => route,
        Ok(Err(err)) => {
            let failure = if sniff::is_too_large(&err) { HeadFailure::TooLarge } else { HeadFailure::Closed };
            metrics.head_failed(failure).inc();
            debug!(%peer, %err, "front: closed before a full head");
            return;
        }
        Err(_) => {
            metrics.head_failed(HeadFailure::Timeout).inc();
            debug!(%peer, "front: header timeout");
            return;
        }
    };
    match route {
        Route::Takeover(kind, head, io) => {
            debug!(%peer, ?kind, path = %head.path, "front: takeover");
            let shutdown = ctx.shutdown.clone();
            (ctx.takeover)(Takeover { kind, head, peer, io, shutdown }).await;
        }
        Route::Http(io) => {
            if let Err(err) = Box::pin(http(TimedIo::new(io, ctx.request_timeout), peer)).await {
                debug!(%peer, ?err, "front: http connection error");
            }
        }
    }
}

/// Where a connection goes, with the right bytes replayed in front of its stream.
enum Route {
    /// What the client sent after the head is replayed.
    Takeover(UpgradeKind, RequestHead, BoxedIo),
    /// Everything read so far, head included, is replayed.
    Http(BoxedIo),
}

/// TLS (if configured), then the first head.
async fn sniff(tcp: TcpStream, ctx: &Ctx) -> std::io::Result<Route> {
    match &ctx.tls {
        None => route(tcp, ctx.max_head_bytes).await,
        Some(acceptor) => route(acceptor.accept(tcp).await?, ctx.max_head_bytes).await,
    }
}

async fn route<T: Io + 'static>(mut io: T, max_head: usize) -> std::io::Result<Route> {
    Ok(match sniff::read_first(&mut io, max_head).await? {
        First::Takeover { kind, head, rest } => Route::Takeover(kind, head, Box::new(Replay::new(rest, io))),
        First::Http { read } => Route::Http(Box::new(Replay::new(read, io))),
    })
}

#[cfg(test)]
mod tests;
