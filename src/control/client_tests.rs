//! End-to-end plumbing tests: our client against our server over loopback TCP, with a tiny
//! handler. Both ends are ours, so these prove plumbing; the captures prove compatibility.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::io::{duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;
use x25519_dalek::{PublicKey, StaticSecret};

use super::*;
use crate::control::routes::{ControlError, ControlHandler, KeepAlive, MapReply, Routes};
use crate::control::ts2021::h2server::{accept_ts2021, ServeError, ServeOptions};
use crate::control::ts2021::Ts2021Service;
use crate::keys::NodePublic;
use crate::netmap::framing::MapMessage;
use crate::netmap::tailcfg::{Node, RegisterAuth};

const WAIT: Duration = Duration::from_secs(5);

/// Counts live long-poll streams, so tests can see the server drop one.
struct Live(Arc<AtomicUsize>);
impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct TestHandler {
    expected_machine: Mutex<Option<MachinePublic>>,
    pushers: Mutex<Vec<mpsc::UnboundedSender<MapResponse>>>,
    live_streams: Arc<AtomicUsize>,
}

fn self_node() -> MapResponse {
    MapResponse { node: Some(Node { id: 1, machine_authorized: true, ..Node::default() }), ..MapResponse::default() }
}

impl ControlHandler for TestHandler {
    fn register(
        &self,
        machine: MachinePublic,
        req: RegisterRequest,
    ) -> futures::future::BoxFuture<'static, Result<RegisterResponse, ControlError>> {
        let expected = *self.expected_machine.lock().unwrap();
        Box::pin(async move {
            if expected.is_some_and(|m| m != machine) {
                return Err(ControlError::Unauthorized("wrong machine".into()));
            }
            let mut resp = RegisterResponse { machine_authorized: true, ..RegisterResponse::default() };
            resp.login.login_name = req.auth.map(|a| a.auth_key).unwrap_or_default();
            Ok(resp)
        })
    }

    fn map(
        &self,
        _machine: MachinePublic,
        req: MapRequest,
    ) -> futures::future::BoxFuture<'static, Result<MapReply, ControlError>> {
        let reply = if req.node_key.is_zero() {
            Err(ControlError::NotFound("unknown node".into()))
        } else if req.stream {
            let (tx, rx) = mpsc::unbounded_channel();
            self.pushers.lock().unwrap().push(tx);
            self.live_streams.fetch_add(1, Ordering::SeqCst);
            let guard = Live(self.live_streams.clone());
            let rest =
                stream::unfold((rx, guard), |(mut rx, guard)| async move { rx.recv().await.map(|m| (m, (rx, guard))) });
            Ok(MapReply::Stream(stream::once(async { self_node() }).chain(rest).map(MapMessage::from).boxed()))
        } else if req.omit_peers {
            Ok(MapReply::Empty)
        } else {
            Ok(MapReply::Once(Box::new(self_node())))
        };
        Box::pin(async move { reply })
    }
}

struct TestServer {
    addr: String,
    key: MachinePublic,
    handler: Arc<TestHandler>,
}

/// A loopback server that answers the upgrade by hand, then runs `accept_ts2021` with the
/// route table in front of a [`TestHandler`].
async fn start_server(opts: ServeOptions) -> TestServer {
    start_server_with(opts, fast_keepalive()).await
}

async fn start_server_with(opts: ServeOptions, keepalive: KeepAlive) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let secret = StaticSecret::from([0x42; 32]);
    let key = MachinePublic::from_bytes(PublicKey::from(&secret).to_bytes());
    let handler = Arc::new(TestHandler::default());
    let service: Arc<dyn Ts2021Service> = Routes::new(handler.clone(), keepalive);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (secret, service, opts) = (secret.clone(), service.clone(), opts.clone());
            tokio::spawn(async move {
                let (head, _) = read_head(&mut tcp).await.unwrap();
                let text = String::from_utf8_lossy(&head).into_owned();
                let init =
                    text.lines().find_map(|l| l.strip_prefix("X-Tailscale-Handshake: ")).unwrap_or("").to_owned();
                tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n\r\n")
                    .await
                    .unwrap();
                let _ = accept_ts2021(tcp, &secret, &init, service, opts).await;
            });
        }
    });
    TestServer { addr, key, handler }
}

fn fast_opts() -> ServeOptions {
    ServeOptions::default()
}

fn fast_keepalive() -> KeepAlive {
    KeepAlive { interval: Duration::from_secs(30), jitter: Duration::ZERO }
}

fn test_service() -> Arc<dyn Ts2021Service> {
    Routes::new(Arc::new(TestHandler::default()), fast_keepalive())
}

fn map_request(stream: bool, omit_peers: bool) -> MapRequest {
    MapRequest {
        version: 130,
        compress: "zstd".into(),
        keep_alive: true,
        node_key: NodePublic::from_bytes([1; 32]),
        stream,
        omit_peers,
        ..MapRequest::default()
    }
}

async fn connect(server: &TestServer) -> Client {
    let machine = StaticSecret::from([0x24; 32]);
    *server.handler.expected_machine.lock().unwrap() =
        Some(MachinePublic::from_bytes(PublicKey::from(&machine).to_bytes()));
    timeout(WAIT, Client::connect(&server.addr, &server.key, &machine)).await.unwrap().unwrap()
}

#[tokio::test]
async fn register_map_once_lite_and_stream_end_to_end() {
    let server = start_server(fast_opts()).await;
    let client = connect(&server).await;
    assert!(client.early.is_some(), "server sent the early payload");

    let req = RegisterRequest {
        auth: Some(RegisterAuth { auth_key: "k".into(), ..Default::default() }),
        ..Default::default()
    };
    let resp = client.register(&req).await.unwrap();
    assert!(resp.machine_authorized);
    assert_eq!(resp.login.login_name, "k");

    assert_eq!(client.map_once(&map_request(false, false)).await.unwrap(), self_node());
    client.map_lite(&map_request(false, true)).await.unwrap();

    let mut messages = client.map_stream(&map_request(true, false)).await.unwrap();
    assert_eq!(messages.next().await.unwrap().unwrap(), self_node());
    let pusher = server.handler.pushers.lock().unwrap().pop().unwrap();
    // Incompressible and larger than the default 64 KiB h2 window: exercises flow control.
    let noise: Vec<u8> = (0..150_000).map(|_| rand::random::<u8>()).collect();
    let big = MapResponse { domain: hex::encode(noise), ..MapResponse::default() };
    pusher.send(big.clone()).unwrap();
    assert_eq!(timeout(WAIT, messages.next()).await.unwrap().unwrap().unwrap(), big);
    drop(pusher);
    assert!(timeout(WAIT, messages.next()).await.unwrap().is_none(), "stream end ends the body");
}

#[tokio::test]
async fn long_poll_register_and_lite_share_one_connection() {
    let server = start_server(fast_opts()).await;
    let client = connect(&server).await;
    let mut poll = client.map_stream(&map_request(true, false)).await.unwrap();
    poll.next().await.unwrap().unwrap();
    // While the long poll is open, other requests still complete on the same connection.
    timeout(WAIT, client.register(&RegisterRequest::default())).await.unwrap().unwrap();
    timeout(WAIT, client.map_lite(&map_request(false, true))).await.unwrap().unwrap();
    let pusher = server.handler.pushers.lock().unwrap().pop().unwrap();
    pusher.send(MapResponse { seq: 7, ..MapResponse::default() }).unwrap();
    assert_eq!(timeout(WAIT, poll.next()).await.unwrap().unwrap().unwrap().seq, 7);
}

#[tokio::test]
async fn silence_on_a_long_poll_is_filled_with_keep_alives() {
    let keepalive = KeepAlive { interval: Duration::from_millis(100), ..fast_keepalive() };
    let server = start_server_with(fast_opts(), keepalive).await;
    let client = connect(&server).await;
    let mut poll = client.map_stream(&map_request(true, false)).await.unwrap();
    poll.next().await.unwrap().unwrap();
    for _ in 0..2 {
        let msg = timeout(Duration::from_secs(2), poll.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(msg, MapResponse::keep_alive());
    }
}

#[tokio::test]
async fn client_cancel_drops_the_server_stream() {
    let server = start_server(fast_opts()).await;
    let client = connect(&server).await;
    let mut poll = client.map_stream(&map_request(true, false)).await.unwrap();
    poll.next().await.unwrap().unwrap();
    assert_eq!(server.handler.live_streams.load(Ordering::SeqCst), 1);
    drop(poll);
    timeout(WAIT, async {
        while server.handler.live_streams.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("server dropped the business stream");
}

#[tokio::test]
async fn bad_requests_get_http_statuses_not_dropped_connections() {
    let opts = ServeOptions { max_body_bytes: 4096, ..fast_opts() };
    let server = start_server(opts).await;
    let client = connect(&server).await;
    let (status, _) = client.post_collect("/machine/set-dns", Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = client.post_collect("/machine/map", Bytes::from_static(b"{nope")).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = client.post_collect("/machine/register", Bytes::from(vec![b' '; 10_000])).await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let unknown = MapRequest { node_key: NodePublic::ZERO, ..map_request(false, true) };
    match client.map_lite(&unknown).await {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, StatusCode::NOT_FOUND),
        other => panic!("want 404, got {other:?}", other = other.map(|_| ())),
    }
    // The connection survived all of that.
    client.register(&RegisterRequest::default()).await.unwrap();
}

#[tokio::test]
async fn no_early_payload_still_works() {
    let server = start_server(ServeOptions { early_payload: false, ..fast_opts() }).await;
    let client = connect(&server).await;
    assert!(client.early.is_none());
    client.register(&RegisterRequest::default()).await.unwrap();
}

/// Records the size of every write, to check what goes out in one write.
struct Recording {
    inner: DuplexStream,
    writes: Arc<Mutex<Vec<usize>>>,
}
impl AsyncRead for Recording {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}
impl AsyncWrite for Recording {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.writes.lock().unwrap().push(n);
        }
        res
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn response_and_early_payload_go_in_one_write_and_silent_peers_time_out() {
    use base64::Engine as _;
    let secret = StaticSecret::from([9; 32]);
    let server_key = MachinePublic::from_bytes(PublicKey::from(&secret).to_bytes());
    let (initiator, init) = Initiator::start(&StaticSecret::from([8; 32]), &server_key, 130).unwrap();
    let header = base64::engine::general_purpose::STANDARD.encode(&init);
    let (ours, mut peer) = duplex(1 << 16);
    let writes = Arc::new(Mutex::new(Vec::new()));
    let io = Recording { inner: ours, writes: writes.clone() };
    let opts = ServeOptions { handshake_timeout: Duration::from_millis(300), ..fast_opts() };
    let served = tokio::spawn(async move { accept_ts2021(io, &secret, &header, test_service(), opts).await });

    let mut response = [0u8; RESPONSE_LEN];
    peer.read_exact(&mut response).await.unwrap();
    initiator.finish(&response).unwrap();
    // The peer never sends an h2 preface: the server must give up by itself.
    let result = timeout(WAIT, served).await.expect("no hang").unwrap();
    assert!(matches!(result, Err(ServeError::HandshakeTimeout)), "{result:?}");
    let first = writes.lock().unwrap()[0];
    let early_json = 20 + 8 + 64 + 3; // {"nodeKeyChallenge":"chalpub:<64>"}
    assert_eq!(first, RESPONSE_LEN + 3 + 9 + early_json + 16);
}

#[tokio::test]
async fn malformed_initiation_gets_an_error_message() {
    use base64::Engine as _;
    let (ours, mut peer) = duplex(4096);
    let header = base64::engine::general_purpose::STANDARD.encode([0u8; 50]);
    let result = accept_ts2021(ours, &StaticSecret::from([1; 32]), &header, test_service(), fast_opts()).await;
    assert!(matches!(result, Err(ServeError::Noise(NoiseError::BadLength(50, 101)))));
    let mut reply = Vec::new();
    peer.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply[0], MSG_ERROR);
}

#[tokio::test]
async fn upgrade_without_connection_header_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = read_head(&mut tcp).await;
        let _ = tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\n\r\n").await;
    });
    let key = MachinePublic::from_bytes([5; 32]);
    let err = Client::connect(&addr, &key, &StaticSecret::from([6; 32])).await.err().unwrap();
    assert!(err.to_string().contains("Connection: upgrade"), "{err}");
}

async fn serve_key_once(response: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let (head, _) = read_head(&mut tcp).await.unwrap();
        assert!(head.starts_with(b"GET /key?v=130 HTTP/1.1\r\n"));
        tcp.write_all(response).await.unwrap();
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn fetch_server_key_reads_plain_and_chunked_json() {
    let key = format!("mkey:{}", "ab".repeat(32));
    let plain = serve_key_once(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 175\r\n\r\n{\"legacyPublicKey\":\"mkey:0000000000000000000000000000000000000000000000000000000000000000\",\"publicKey\":\"mkey:abababababababababababababababababababababababababababababababab\"}",
    )
    .await;
    assert_eq!(fetch_server_key(&plain).await.unwrap().public_key.to_string(), key);
    let chunked = serve_key_once(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"publicKey\":\"mk\r\n45\r\ney:abababababababababababababababababababababababababababababababab\"}\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(fetch_server_key(&chunked).await.unwrap().public_key.to_string(), key);
    let zero = serve_key_once(b"HTTP/1.1 200 OK\r\n\r\n{\"legacyPublicKey\":\"mkey:0000000000000000000000000000000000000000000000000000000000000000\"}").await;
    assert!(fetch_server_key(&zero).await.is_err());
}

#[tokio::test]
async fn vanished_connection_drops_the_server_stream() {
    let server = start_server(fast_opts()).await;
    let client = connect(&server).await;
    let mut poll = client.map_stream(&map_request(true, false)).await.unwrap();
    poll.next().await.unwrap().unwrap();
    assert_eq!(server.handler.live_streams.load(Ordering::SeqCst), 1);
    // Keep `poll` alive: only the connection vanishes.
    client.abort();
    timeout(WAIT, async {
        while server.handler.live_streams.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("server dropped the business stream after the connection closed");
    drop(poll);
}

#[tokio::test]
async fn a_request_the_route_table_refuses_is_not_held_to_the_body_limit() {
    let server = start_server(ServeOptions { max_body_bytes: 4096, ..fast_opts() }).await;
    let client = connect(&server).await;
    let big = Bytes::from(vec![b' '; 10_000]);
    let (status, body) = client.post_collect("/machine/set-dns", big.clone()).await.unwrap();
    assert_eq!(
        (status, body.as_ref()),
        (StatusCode::NOT_FOUND, b"not found: no handler for /machine/set-dns".as_ref())
    );
    let (status, _) = client.post_collect("/machine/register", big).await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}
