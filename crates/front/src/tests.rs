//! End-to-end tests of the front: a real server on port 0, raw clients over TCP or TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_server::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::*;

const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\nSERVER-FIRST";

struct Seen {
    kind: UpgradeKind,
    head: RequestHead,
    peer: SocketAddr,
}

/// A takeover handler playing a tiny protocol: after the 101 it sends `SERVER-FIRST`, then
/// echoes everything upper-cased; on shutdown it says `BYE` and closes.
fn echo_handler(seen: mpsc::UnboundedSender<Seen>) -> TakeoverHandler {
    Arc::new(move |t: Takeover| {
        let seen = seen.clone();
        Box::pin(async move {
            let Takeover { kind, head, peer, mut io, shutdown } = t;
            let _ = seen.send(Seen { kind, head, peer });
            if io.write_all(SWITCH).await.is_err() {
                return;
            }
            let mut buf = [0u8; 1024];
            loop {
                tokio::select! {
                    n = io.read(&mut buf) => match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let up = buf[..n].to_ascii_uppercase();
                            if io.write_all(&up).await.is_err() { return; }
                        }
                    },
                    _ = shutdown.cancelled() => {
                        let _ = io.write_all(b"BYE").await;
                        let _ = io.shutdown().await;
                        return;
                    }
                }
            }
        })
    })
}

fn app() -> App<
    impl actix_service::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .route("/hello", web::get().to(|| async { "hello" }))
        .route("/echo", web::post().to(|body: web::Bytes| async move { body }))
        .route(
            "/peer",
            web::get().to(|req: HttpRequest| async move { req.peer_addr().map(|a| a.to_string()).unwrap_or_default() }),
        )
        .route("/scheme", web::get().to(|req: HttpRequest| async move { req.connection_info().scheme().to_owned() }))
        .route("/ts2021", web::to(HttpResponse::UpgradeRequired))
        .route(
            "/ws",
            web::get().to(|req: HttpRequest, body: web::Payload| async move {
                // Reads the client's messages and never answers.
                websocket::accept(&req, body, "test", CancellationToken::new(), |mut io| async move {
                    let mut sink = [0u8; 64];
                    while let Ok(n) = io.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
            }),
        )
}

struct TestServer {
    addr: SocketAddr,
    handle: ServerHandle,
    seen: mpsc::UnboundedReceiver<Seen>,
    tls: Option<TlsConnector>,
}

fn quick_options() -> FrontOptions {
    FrontOptions {
        workers: 1,
        header_timeout: Duration::from_millis(400),
        max_head_bytes: 16 * 1024,
        keep_alive: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        max_connections_per_worker: 100,
        max_connections: 0,
        max_connections_per_ip: 0,
        metrics: FrontMetrics::default(),
        shutdown_timeout: Duration::from_secs(5),
        shutdown: CancellationToken::new(),
    }
}

fn start(tls: bool, options: FrontOptions) -> TestServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::unbounded_channel();
    let (server_tls, client_tls) = if tls {
        let (s, c) = self_signed();
        (Some(s), Some(c))
    } else {
        (None, None)
    };
    let server = serve(listener, server_tls, app, echo_handler(tx), options).unwrap();
    let handle = server.handle();
    actix_rt::spawn(server);
    TestServer { addr, handle, seen, tls: client_tls }
}

/// A self-signed cert for `localhost`, written to PEM files and loaded the production way.
fn self_signed() -> (Arc<ServerConfig>, TlsConnector) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tenscale-front-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
    let server = tls::load_server_config(&cert_path, &key_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let client = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, TlsConnector::from(Arc::new(client)))
}

impl TestServer {
    /// A raw client connection and its local address.
    async fn connect(&self) -> (BoxedIo, SocketAddr) {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let io: BoxedIo = match &self.tls {
            None => Box::new(tcp),
            Some(c) => {
                let name = ServerName::try_from("localhost").unwrap();
                Box::new(c.connect(name, tcp).await.unwrap())
            }
        };
        (io, local)
    }

    async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(5), self.seen.recv()).await.unwrap().unwrap()
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body; keeps what follows for the next.
struct Responses {
    io: BoxedIo,
    buf: Vec<u8>,
}

impl Responses {
    async fn next(&mut self) -> (u16, Vec<u8>) {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf).unwrap() {
                let len: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap_or(0);
                let code = resp.code.unwrap();
                self.fill(n + len).await;
                let body = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                return (code, body);
            }
            self.read_more().await;
        }
    }

    async fn fill(&mut self, len: usize) {
        while self.buf.len() < len {
            self.read_more().await;
        }
    }

    async fn read_more(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = timeout(self.io.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

async fn timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f).await.expect("timed out")
}

async fn read_exactly(io: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(io.read_exact(&mut buf)).await.unwrap();
    buf
}

// ---- (a)/(d) ordinary HTTP through actix ----

async fn check_http(srv: &TestServer, scheme: &str) {
    let (mut io, local) = srv.connect().await;
    io.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut r = Responses { io, buf: Vec::new() };
    assert_eq!(r.next().await, (200, b"hello".to_vec()));

    // Same connection: keep-alive, then a body, then the peer address and scheme.
    r.io.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world").await.unwrap();
    assert_eq!(r.next().await, (200, b"hello world".to_vec()));
    r.io.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\nGET /scheme HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(r.next().await, (200, local.to_string().into_bytes()));
    assert_eq!(r.next().await, (200, scheme.as_bytes().to_vec()));
}

#[actix_rt::test]
async fn plain_http_goes_to_actix() {
    let srv = start(false, quick_options());
    check_http(&srv, "http").await;
    srv.handle.stop(false).await;
}

#[actix_rt::test]
async fn tls_http_goes_to_actix() {
    let srv = start(true, quick_options());
    check_http(&srv, "https").await;
    srv.handle.stop(false).await;
}

// ---- (b)/(c)/(d) the two upgrades are taken over ----

async fn check_takeover(srv: &mut TestServer, request: &[u8], kind: UpgradeKind, path: &str) {
    let (mut io, local) = srv.connect().await;
    // Head and the first protocol bytes in one write: the early bytes must be replayed.
    io.write_all(&[request, b"early bytes"].concat()).await.unwrap();
    let seen = srv.next_seen().await;
    assert_eq!(seen.kind, kind);
    assert_eq!(seen.head.path, path);
    assert_eq!(seen.peer, local);
    assert_eq!(seen.head.get("x-test"), Some("yes"));

    assert_eq!(read_exactly(&mut io, SWITCH.len()).await, SWITCH);
    assert_eq!(read_exactly(&mut io, 11).await, b"EARLY BYTES");
    io.write_all(b"\x00\x01more").await.unwrap();
    assert_eq!(read_exactly(&mut io, 6).await, b"\x00\x01MORE");
}

const TS2021: &[u8] = b"POST /ts2021 HTTP/1.1\r\nHost: x\r\nUpgrade: tailscale-control-protocol\r\n\
                        Connection: upgrade\r\nX-Test: yes\r\n\r\n";
const DERP: &[u8] = b"GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\
                      X-Test: yes\r\n\r\n";

#[actix_rt::test]
async fn plain_upgrades_are_taken_over() {
    let mut srv = start(false, quick_options());
    check_takeover(&mut srv, TS2021, UpgradeKind::Control, "/ts2021").await;
    check_takeover(&mut srv, DERP, UpgradeKind::Derp, "/derp").await;
    srv.handle.stop(false).await;
}

#[actix_rt::test]
async fn tls_upgrades_are_taken_over() {
    let mut srv = start(true, quick_options());
    check_takeover(&mut srv, TS2021, UpgradeKind::Control, "/ts2021").await;
    check_takeover(&mut srv, DERP, UpgradeKind::Derp, "/derp").await;
    srv.handle.stop(false).await;
}

/// Absolute-form targets (RFC 9112 §3.2.2: a server MUST accept them), as hyper-based clients
/// such as tailscale-rs send them: taken over exactly like the origin form.
#[actix_rt::test]
async fn absolute_form_upgrades_are_taken_over() {
    let mut srv = start(false, quick_options());
    let ts2021 = b"POST http://x:8080/ts2021 HTTP/1.1\r\nHost: x:8080\r\nUpgrade: tailscale-control-protocol\r\n\
                   Connection: upgrade\r\nX-Test: yes\r\n\r\n";
    let derp = b"GET http://x/derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\
                 X-Test: yes\r\n\r\n";
    check_takeover(&mut srv, ts2021, UpgradeKind::Control, "/ts2021").await;
    check_takeover(&mut srv, derp, UpgradeKind::Derp, "/derp").await;
    srv.handle.stop(false).await;
}

/// `X-Tailscale-Handshake` as a real tsnet 1.90.9 client sent it
/// (tests/fixtures/handshake_vector.json).
const REAL_HANDSHAKE: &str = "AIIBAGA5+Tl0Abm4bilipDyaSPXMDDdPoYj8UBXBSO44lpareGtGF9k/NdfEYg/ksZGEljZqbcLxXkZ71Bz88zAmtRLDkYv1L/BkySjmsM5AKXFZcJCp2X6xUThFDGLXO2FoFRg=";

#[actix_rt::test]
async fn go_client_shaped_head_is_taken_over() {
    // The head as Go's client writes it (protocol brief 2.2), with the captured handshake.
    let raw = format!(
        "POST /ts2021 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\n\
         Content-Length: 0\r\nConnection: upgrade\r\nUpgrade: tailscale-control-protocol\r\n\
         X-Tailscale-Handshake: {REAL_HANDSHAKE}\r\nAccept-Encoding: gzip\r\n\r\n"
    );
    let mut srv = start(false, quick_options());
    let (mut io, _) = srv.connect().await;
    io.write_all(raw.as_bytes()).await.unwrap();
    let seen = srv.next_seen().await;
    assert_eq!(seen.kind, UpgradeKind::Control);
    assert_eq!(seen.head.method, "POST");
    assert_eq!(seen.head.get("x-tailscale-handshake"), Some(REAL_HANDSHAKE));
    assert_eq!(read_exactly(&mut io, SWITCH.len()).await, SWITCH);
    srv.handle.stop(false).await;
}

// ---- (f) the upgrade paths without the upgrade go to actix ----

#[actix_rt::test]
async fn ts2021_without_upgrade_goes_to_actix() {
    let srv = start(false, quick_options());
    for req in [
        &b"POST /ts2021 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"[..],
        b"GET /ts2021 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ] {
        let (mut io, _) = srv.connect().await;
        io.write_all(req).await.unwrap();
        let mut r = Responses { io, buf: Vec::new() };
        assert_eq!(r.next().await.0, 426);
    }
    srv.handle.stop(false).await;
}

// ---- (e) idle and oversized first heads are cut off ----

/// Waits for the server to close `io`: a read gives EOF or an error (reset).
async fn closed_within(io: &mut BoxedIo, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(limit, io.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => started.elapsed(),
        Ok(Ok(n)) => panic!("unexpected {n} bytes"),
        Err(_) => panic!("still open after {limit:?}"),
    }
}

/// Waits until `counter` is 1; fails after 5 s or if it goes past 1.
async fn counted(counter: &prometheus::IntCounter) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter.get() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(counter.get(), 1);
}

async fn check_idle_is_closed(tls: bool) {
    let options = quick_options();
    let metrics = options.metrics.clone();
    let srv = start(tls, options);
    // For TLS the idle client never even starts the handshake.
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let mut idle: BoxedIo = Box::new(tcp);
    // The single worker still serves others meanwhile.
    let (io, _) = srv.connect().await;
    let mut r = Responses { io, buf: Vec::new() };
    r.io.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(r.next().await.0, 200);
    let waited = closed_within(&mut idle, Duration::from_secs(3)).await;
    assert!(waited >= Duration::from_millis(200), "closed too early: {waited:?}");
    // The socket closes a moment before the counter moves.
    counted(metrics.head_failed(HeadFailure::Timeout)).await;
    srv.handle.stop(false).await;
}

#[actix_rt::test]
async fn idle_client_is_closed_after_header_timeout() {
    check_idle_is_closed(false).await;
}

#[actix_rt::test]
async fn idle_tls_client_is_closed_after_header_timeout() {
    check_idle_is_closed(true).await;
}

#[actix_rt::test]
async fn slow_drip_head_is_closed_after_header_timeout() {
    let srv = start(false, quick_options());
    let (io, _) = srv.connect().await;
    let (mut rd, mut wr) = tokio::io::split(io);
    let dripper = actix_rt::spawn(async move {
        let _ = wr.write_all(b"GET / HTTP/1.1\r\n").await;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if wr.write_all(b"X-A: b\r\n").await.is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 16];
    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(2), rd.read(&mut buf)).await;
    assert!(matches!(res, Ok(Ok(0)) | Ok(Err(_))), "{res:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    dripper.abort();
    srv.handle.stop(false).await;
}

#[actix_rt::test]
async fn endless_head_is_closed_at_the_size_cap() {
    // Long time limit: it is the size cap that must end this one.
    let options = FrontOptions { header_timeout: Duration::from_secs(30), ..quick_options() };
    let metrics = options.metrics.clone();
    let srv = start(false, options);
    let (io, _) = srv.connect().await;
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = actix_rt::spawn(async move {
        let _ = wr.write_all(b"GET / HTTP/1.1\r\nX-Endless: ").await;
        for _ in 0..1024 {
            if wr.write_all(&[b'a'; 1024]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 16];
    let res = tokio::time::timeout(Duration::from_secs(3), rd.read(&mut buf)).await;
    assert!(matches!(res, Ok(Ok(0)) | Ok(Err(_))), "{res:?}");
    counted(metrics.head_failed(HeadFailure::TooLarge)).await;
    writer.abort();
    srv.handle.stop(false).await;
}

/// A REST client that goes quiet after a request (idle keep-alive) is closed.
#[actix_rt::test]
async fn idle_keep_alive_is_closed() {
    let options = FrontOptions { keep_alive: Duration::from_secs(1), ..quick_options() };
    let srv = start(false, options);
    let (io, _) = srv.connect().await;
    let mut r = Responses { io, buf: Vec::new() };
    r.io.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(r.next().await.0, 200);
    // actix's clock lags up to half a second behind.
    let waited = closed_within(&mut r.io, Duration::from_secs(4)).await;
    assert!(waited >= Duration::from_millis(400), "closed before the keep-alive: {waited:?}");
    srv.handle.stop(false).await;
}

/// Later requests on a kept-alive connection are served (the front sniffs only the first).
#[actix_rt::test]
async fn later_requests_on_a_kept_alive_connection_are_served() {
    let srv = start(false, quick_options());
    let (io, _) = srv.connect().await;
    let mut r = Responses { io, buf: Vec::new() };
    for _ in 0..3 {
        r.io.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert_eq!(r.next().await, (200, b"hello".to_vec()));
    }
    srv.handle.stop(false).await;
}

/// A later request whose head stalls on a kept-alive connection is closed after the request
/// time limit (actix itself would wait for ever).
#[actix_rt::test]
async fn a_stalled_later_head_is_closed_after_the_request_timeout() {
    let options = FrontOptions { request_timeout: Duration::from_millis(500), ..quick_options() };
    let srv = start(false, options);
    let (io, _) = srv.connect().await;
    let mut r = Responses { io, buf: Vec::new() };
    r.io.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(r.next().await.0, 200);
    r.io.write_all(b"GET /hello HTTP/1.1\r\nHost:").await.unwrap();
    let waited = closed_within(&mut r.io, Duration::from_secs(3)).await;
    assert!(waited >= Duration::from_millis(400), "closed before the request timeout: {waited:?}");
    srv.handle.stop(false).await;
}

/// A WebSocket connection is one long request to actix: its client may keep sending without
/// an answer for longer than the request time limit.
#[actix_rt::test]
async fn a_websocket_is_not_cut_by_the_request_timeout() {
    let options = FrontOptions { request_timeout: Duration::from_millis(300), ..quick_options() };
    let srv = start(false, options);
    let (mut io, _) = srv.connect().await;
    io.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: test\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_exactly(&mut io, 12).await;
    assert_eq!(&head, b"HTTP/1.1 101");
    // Masked binary frames of 4 bytes, for three times the limit; the handler never writes.
    for _ in 0..9 {
        io.write_all(&[0x82, 0x84, 1, 2, 3, 4, 1 ^ b'p', 2 ^ b'i', 3 ^ b'n', 4 ^ b'g']).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut rest = [0u8; 512];
    let still_open = loop {
        match tokio::time::timeout(Duration::from_millis(300), io.read(&mut rest)).await {
            Err(_) => break true,
            Ok(Ok(0)) | Ok(Err(_)) => break false,
            Ok(Ok(_)) => continue, // the rest of the 101's head
        }
    };
    assert!(still_open, "the WebSocket was closed");
    srv.handle.stop(false).await;
}

// ---- (f) connection caps ----

/// A TCP connection from the loopback address `from` (any 127.0.0.0/8 address works).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

async fn answers_hello(io: TcpStream) -> bool {
    let mut r = Responses { io: Box::new(io), buf: Vec::new() };
    r.io.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.is_ok() && r.next().await.0 == 200
}

#[actix_rt::test]
async fn connections_over_the_per_address_cap_are_closed_at_once() {
    // A long header timeout: only the cap may close anything here.
    let options =
        FrontOptions { header_timeout: Duration::from_secs(30), max_connections_per_ip: 3, ..quick_options() };
    let metrics = options.metrics.clone();
    let srv = start(false, options);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from([127, 0, 0, 2], srv.addr).await);
    }
    let mut over: BoxedIo = Box::new(connect_from([127, 0, 0, 2], srv.addr).await);
    let waited = closed_within(&mut over, Duration::from_secs(5)).await;
    assert!(waited < Duration::from_secs(5));
    assert_eq!(metrics.refused(limits::Refusal::PerIp).get(), 1);
    assert_eq!(metrics.open.get(), 3);
    // Another address is not affected.
    assert!(answers_hello(connect_from([127, 0, 0, 3], srv.addr).await).await);
    // A slot given back is taken again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.open.get() > 2 {
        assert!(Instant::now() < deadline, "the closed connection kept its slot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(answers_hello(connect_from([127, 0, 0, 2], srv.addr).await).await);
    srv.handle.stop(false).await;
}

#[actix_rt::test]
async fn connections_over_the_global_cap_are_closed_at_once() {
    let options = FrontOptions { header_timeout: Duration::from_secs(30), max_connections: 2, ..quick_options() };
    let metrics = options.metrics.clone();
    let srv = start(false, options);
    let _a = connect_from([127, 0, 0, 4], srv.addr).await;
    let _b = connect_from([127, 0, 0, 5], srv.addr).await;
    let mut over: BoxedIo = Box::new(connect_from([127, 0, 0, 6], srv.addr).await);
    closed_within(&mut over, Duration::from_secs(5)).await;
    assert_eq!(metrics.refused(limits::Refusal::Total).get(), 1);
    srv.handle.stop(false).await;
}

// ---- graceful stop reaches taken-over connections ----

#[actix_rt::test]
async fn graceful_stop_cancels_takeovers() {
    let mut srv = start(false, quick_options());
    let (mut io, _) = srv.connect().await;
    io.write_all(DERP).await.unwrap();
    srv.next_seen().await;
    assert_eq!(read_exactly(&mut io, SWITCH.len()).await, SWITCH);

    let stopping = actix_rt::spawn(srv.handle.stop(true));
    assert_eq!(read_exactly(&mut io, 3).await, b"BYE");
    let mut rest = Vec::new();
    timeout(io.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    timeout(stopping).await.unwrap();
}
