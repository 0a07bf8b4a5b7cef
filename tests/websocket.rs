//! The browser (js/wasm) variants end to end: ts2021 and DERP over WebSocket, driven by an
//! independent WebSocket client (tokio-tungstenite) with our protocol clients on top.

mod support;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::{future, Sink, SinkExt, Stream, StreamExt};
use tenscale::control::client::{fetch_server_key, Client, CLIENT_VERSION};
use tenscale::control::ts2021::noise::Initiator;
use tenscale::derp::client::DerpClient;
use tenscale::derp::crypto::{ClientInfo, DerpSecret};
use tenscale::front::ws_stream::WsStream;
use tenscale::keys::NodePublic;
use tenscale::netmap::tailcfg::MapRequest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use x25519_dalek::StaticSecret;

use support::{random_key, register_request, stream_request, TestServer};

const CONTROL: &str = "tailscale-control-protocol";
const WAIT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket on a fresh connection; `protocols` goes in `Sec-WebSocket-Protocol`.
async fn ws_connect(server: &TestServer, path: &str, protocols: Option<&str>) -> Result<Ws, WsError> {
    let tcp = TcpStream::connect(server.app.addr).await.unwrap();
    ws_connect_on(tcp, server, path, protocols).await
}

async fn ws_connect_on(
    tcp: TcpStream,
    server: &TestServer,
    path: &str,
    protocols: Option<&str>,
) -> Result<Ws, WsError> {
    let mut request = format!("ws://{}{path}", server.app.addr).into_client_request().unwrap();
    if let Some(p) = protocols {
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
        // What a browser sends; the server must not care.
        request.headers_mut().insert("Origin", HeaderValue::from_static("https://elsewhere.example"));
    }
    let (ws, response) = tokio_tungstenite::client_async(request, tcp).await?;
    let selected = response.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok());
    assert!(response.headers().get("Sec-WebSocket-Extensions").is_none(), "no compression");
    assert_eq!(selected, protocols.and_then(|p| p.split(',').map(str::trim).find(|t| *t == CONTROL || *t == "derp")));
    Ok(ws)
}

/// The WebSocket's binary messages as one byte stream, as the js client sees them.
fn byte_stream(
    ws: Ws,
) -> WsStream<impl Stream<Item = io::Result<Bytes>> + Unpin + Send, impl Sink<Bytes, Error = io::Error> + Unpin + Send>
{
    let (sink, stream) = ws.split();
    let incoming = stream.filter_map(|m| {
        future::ready(match m {
            Ok(Message::Binary(b)) => Some(Ok(b)),
            Ok(_) => None,
            Err(e) => Some(Err(io::Error::other(e))),
        })
    });
    let outgoing =
        sink.sink_map_err(io::Error::other).with(|b: Bytes| future::ready(Ok::<_, io::Error>(Message::Binary(b))));
    WsStream::new(incoming, outgoing)
}

fn handshake_query(init: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(init);
    let encoded: String = b64
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!("/ts2021?X-Tailscale-Handshake={encoded}")
}

/// The ts2021 handshake over WebSocket, then HTTP/2 inside, with our protocol client.
async fn ws_control_client(server: &TestServer) -> Client {
    let server_key = fetch_server_key(&server.base_url()).await.expect("GET /key").public_key;
    let machine = StaticSecret::from(random_key());
    let (initiator, init) = Initiator::start(&machine, &server_key, CLIENT_VERSION).unwrap();
    let ws = ws_connect(server, &handshake_query(&init), Some(CONTROL)).await.expect("websocket upgrade");
    Client::connect_upgraded(byte_stream(ws), &server.app.addr.to_string(), initiator)
        .await
        .expect("ts2021 over websocket")
}

async fn register(client: &Client, node_key: NodePublic, auth: &str) {
    let resp = client.register(&register_request(node_key, Some(auth))).await.expect("register");
    assert!(resp.error.is_empty() && resp.machine_authorized, "{}", resp.error);
}

/// Waits for the server to end the WebSocket; returns the close code it sent, if any.
async fn closed_by_server(ws: &mut Ws) -> Option<CloseCode> {
    let outcome = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await;
    outcome.expect("server closed the websocket in time")
}

fn refused_status(result: Result<Ws, WsError>) -> StatusCode {
    match result {
        Err(WsError::Http(response)) => response.status(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a websocket"),
    }
}

#[actix_rt::test]
async fn control_over_websocket_registers_and_streams_a_map() {
    let server = TestServer::start_sqlite().await;
    let ns = server.namespace("acme", "web").await;
    let key = server.preauth_key(ns, true, false, &[]).await;

    let browser = ws_control_client(&server).await;
    assert!(browser.early.is_none(), "no early payload on the websocket path");
    let browser_key = NodePublic::from_bytes(random_key());
    register(&browser, browser_key, &key).await;
    let mut map = Box::pin(browser.map_stream(&stream_request(browser_key)).await.expect("map"));
    let first = tokio::time::timeout(WAIT, map.next()).await.unwrap().unwrap().unwrap();
    let me = first.node.expect("self node");
    assert_eq!(me.name, "sim.web.tenscale.internal.");
    assert!(first.derp_map.is_some() && first.packet_filters.is_some());

    // A native peer joins over TCP: each sees the other.
    let native = server.control_client().await;
    let native_key = NodePublic::from_bytes(random_key());
    register(&native, native_key, &key).await;
    let native_first = native.map_once(&MapRequest { stream: false, ..stream_request(native_key) }).await.unwrap();
    assert!(native_first.peers.unwrap_or_default().iter().any(|p| p.key == browser_key));
    let sees_native = tokio::time::timeout(WAIT, async {
        while let Some(msg) = map.next().await {
            if msg.unwrap().peers_changed.iter().flatten().any(|p| p.key == native_key) {
                return;
            }
        }
        panic!("map stream ended");
    });
    sees_native.await.expect("browser hears about the native peer");
}

#[actix_rt::test]
async fn derp_over_websocket_relays_to_a_tcp_client() {
    let server = TestServer::start_sqlite().await;
    let ns = server.namespace("acme", "web").await;
    let key = server.preauth_key(ns, true, false, &[]).await;
    let (browser, native) = (DerpSecret::from_bytes(random_key()), DerpSecret::from_bytes(random_key()));
    // One machine each: a machine has one node, so a second key would replace the first.
    register(&ws_control_client(&server).await, browser.public(), &key).await;
    register(&server.control_client().await, native.public(), &key).await;

    let ws = ws_connect(&server, "/derp", Some("derp")).await.expect("websocket upgrade");
    let mut over_ws = DerpClient::handshake(byte_stream(ws), &browser, &ClientInfo::v2()).await.expect("derp over ws");
    assert_eq!(over_ws.server_key(), server.state().derp.public_key());
    let mut over_tcp = DerpClient::connect_tcp(server.app.addr, "localhost", &native).await.expect("derp over tcp");

    over_ws.send_packet(&native.public(), b"from the browser").await.unwrap();
    let (src, packet) = tokio::time::timeout(WAIT, over_tcp.receiver.recv_packet()).await.unwrap().unwrap();
    assert_eq!((src, &packet[..]), (browser.public(), &b"from the browser"[..]));

    // A full-size packet crosses in one message, and the other way round too.
    let big = vec![0x5a; 64 * 1024];
    over_tcp.send_packet(&browser.public(), &big).await.unwrap();
    let (src, packet) = tokio::time::timeout(WAIT, over_ws.receiver.recv_packet()).await.unwrap().unwrap();
    assert_eq!(src, native.public());
    assert_eq!(packet.len(), big.len());
}

#[actix_rt::test]
async fn derp_over_websocket_refuses_unknown_keys() {
    let server = TestServer::start_sqlite().await;
    let ws = ws_connect(&server, "/derp", Some("derp")).await.expect("websocket upgrade");
    let stranger = DerpSecret::from_bytes(random_key());
    assert!(DerpClient::handshake(byte_stream(ws), &stranger, &ClientInfo::v2()).await.is_err());
}

#[actix_rt::test]
async fn websocket_on_a_reused_keep_alive_connection() {
    // Browsers and proxies may upgrade on a connection that already carried a request.
    let server = TestServer::start_sqlite().await;
    let mut tcp = TcpStream::connect(server.app.addr).await.unwrap();
    tcp.write_all(format!("GET /key?v=130 HTTP/1.1\r\nHost: {}\r\n\r\n", server.app.addr).as_bytes()).await.unwrap();
    read_response_with_length(&mut tcp).await;
    let ws = ws_connect_on(tcp, &server, "/derp", Some("derp")).await.expect("upgrade on a reused connection");
    let mut io = byte_stream(ws);
    let mut header = [0u8; 5];
    tokio::time::timeout(WAIT, io.read_exact(&mut header)).await.unwrap().unwrap();
    assert_eq!(header[0], 1, "ServerKey frame first");
}

/// Reads one response that has a Content-Length body, and nothing more.
async fn read_response_with_length<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        io.read_exact(&mut byte).await.unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .expect("content-length");
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await.unwrap();
}

#[actix_rt::test]
async fn refusals_before_the_upgrade() {
    let server = TestServer::start_sqlite().await;
    let key = fetch_server_key(&server.base_url()).await.unwrap().public_key;
    let (_, init) = Initiator::start(&StaticSecret::from(random_key()), &key, CLIENT_VERSION).unwrap();
    let good = handshake_query(&init);

    let status = refused_status(ws_connect(&server, &good, Some("something-else")).await);
    assert_eq!(status, StatusCode::BAD_REQUEST, "wrong subprotocol");
    let status = refused_status(ws_connect(&server, &good, None).await);
    assert_eq!(status, StatusCode::BAD_REQUEST, "no subprotocol");
    let status = refused_status(ws_connect(&server, "/ts2021", Some(CONTROL)).await);
    assert_eq!(status, StatusCode::BAD_REQUEST, "no handshake parameter");
    let status = refused_status(ws_connect(&server, "/ts2021?X-Tailscale-Handshake=AAAA", Some(CONTROL)).await);
    assert_eq!(status, StatusCode::BAD_REQUEST, "short handshake parameter");
    let status = refused_status(ws_connect(&server, "/derp", Some("chat")).await);
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED, "DERP without the derp subprotocol");
    let status = refused_status(ws_connect(&server, "/derp", None).await);
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);

    // A list with the right protocol in it is fine.
    let ws = ws_connect(&server, &good, Some(&format!("other, {CONTROL}"))).await;
    assert!(ws.is_ok(), "{:?}", ws.err());
}

#[actix_rt::test]
async fn garbage_after_the_upgrade_closes_the_connection() {
    let server = TestServer::start_sqlite().await;
    let key = fetch_server_key(&server.base_url()).await.unwrap().public_key;
    let fresh_init = || Initiator::start(&StaticSecret::from(random_key()), &key, CLIENT_VERSION).unwrap().1;

    // ts2021: a valid initiation, then bytes that are no Noise record.
    let mut ws = ws_connect(&server, &handshake_query(&fresh_init()), Some(CONTROL)).await.unwrap();
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => assert_eq!(b.len(), 51, "the Noise response, alone"),
        other => panic!("expected the Noise response, got {other:?}"),
    }
    ws.send(Message::Binary(Bytes::from_static(b"\x17\x03\x03garbage garbage garbage"))).await.unwrap();
    closed_by_server(&mut ws).await;

    // ts2021: a text message is refused with 1003.
    let mut ws = ws_connect(&server, &handshake_query(&fresh_init()), Some(CONTROL)).await.unwrap();
    ws.send(Message::Text("PRI * HTTP/2.0".into())).await.unwrap();
    assert_eq!(closed_by_server(&mut ws).await, Some(CloseCode::Unsupported));

    // DERP: garbage instead of ClientInfo.
    let mut ws = ws_connect(&server, "/derp", Some("derp")).await.unwrap();
    ws.send(Message::Binary(Bytes::from(vec![0xff; 4096]))).await.unwrap();
    closed_by_server(&mut ws).await;

    // DERP: a message over the size limit is refused with 1009.
    let mut ws = ws_connect(&server, "/derp", Some("derp")).await.unwrap();
    ws.send(Message::Binary(Bytes::from(vec![0u8; 1 << 20]))).await.unwrap();
    assert_eq!(closed_by_server(&mut ws).await, Some(CloseCode::Size));

    // DERP: the client going away mid-handshake is just a closed connection.
    let ws = ws_connect(&server, "/derp", Some("derp")).await.unwrap();
    drop(ws);

    // The server is unharmed: a full WebSocket control session still works.
    let ns = server.namespace("acme", "web").await;
    let auth = server.preauth_key(ns, true, false, &[]).await;
    let client = ws_control_client(&server).await;
    register(&client, NodePublic::from_bytes(random_key()), &auth).await;
}

#[actix_rt::test]
async fn graceful_stop_closes_websockets_with_restart() {
    let server = TestServer::start_sqlite().await;
    let mut control = ws_connect(
        &server,
        &handshake_query(&{
            let key = fetch_server_key(&server.base_url()).await.unwrap().public_key;
            Initiator::start(&StaticSecret::from(random_key()), &key, CLIENT_VERSION).unwrap().1
        }),
        Some(CONTROL),
    )
    .await
    .unwrap();
    let mut derp = ws_connect(&server, "/derp", Some("derp")).await.unwrap();
    let handle = server.app.handle.clone();
    let stopping = tokio::spawn(async move { handle.stop(true).await });
    assert_eq!(closed_by_server(&mut control).await, Some(CloseCode::Restart));
    assert_eq!(closed_by_server(&mut derp).await, Some(CloseCode::Restart));
    tokio::time::timeout(WAIT, stopping).await.expect("server stopped in time").unwrap();
}

#[actix_rt::test]
async fn ping_is_answered() {
    let server = TestServer::start_sqlite().await;
    let mut ws = ws_connect(&server, "/derp", Some("derp")).await.unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"hi"))).await.unwrap();
    let pong = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Pong(data))) => return data,
                Some(Ok(Message::Binary(_))) => continue, // the ServerKey frame
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(&pong[..], b"hi");
}
