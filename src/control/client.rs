//! A Rust client of the ts2021 protocol, for tests and the load generator: `GET /key`, the
//! HTTP/1.1 upgrade on `POST /ts2021`, the Noise handshake, then HTTP/2 requests to
//! `/machine/register` and `/machine/map`. Plain TCP only (no TLS); other transports that
//! carry the initiation out of band (the WebSocket variant) use [`Client::connect_upgraded`].

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use h2::client::SendRequest;
use h2::RecvStream;
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use x25519_dalek::StaticSecret;

use crate::control::ts2021::noise::{Initiator, NoiseError, MSG_ERROR, RESPONSE_LEN};
use crate::control::ts2021::noise_stream::{EarlyNoise, NoiseStream};
use crate::keys::MachinePublic;
use crate::netmap::framing::{FramingError, MapDecoder};
use crate::netmap::tailcfg::{MapRequest, MapResponse, OverTLSPublicKeyResponse, RegisterRequest, RegisterResponse};

/// The capability version this client announces (tailscale v1.90).
pub const CLIENT_VERSION: u16 = 130;
/// Cap on an HTTP/1.1 response head, and on `/key` bodies (the Go client reads <= 64 KiB).
const MAX_HEAD: usize = 16 * 1024;
const MAX_KEY_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("noise: {0}")]
    Noise(#[from] NoiseError),
    #[error("http/2: {0}")]
    H2(#[from] h2::Error),
    #[error("http: {0}")]
    Http(String),
    #[error("status {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("framing: {0}")]
    Framing(#[from] FramingError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// One ts2021 connection; cheap to clone, requests run concurrently on it.
#[derive(Clone)]
pub struct Client {
    send: SendRequest<Bytes>,
    authority: String,
    /// The early payload the server sent, if any.
    pub early: Option<EarlyNoise>,
    driver: Arc<tokio::task::AbortHandle>,
}

impl Client {
    /// Dials `addr` (`host:port`) over TCP and sets up the channel.
    pub async fn connect(addr: &str, server_key: &MachinePublic, machine: &StaticSecret) -> Result<Self, ClientError> {
        Self::connect_with(addr, server_key, machine, &h2::client::Builder::new()).await
    }

    /// Like [`Client::connect`], with HTTP/2 settings of the caller's choosing: tests use it
    /// to play a misbehaving client (one that advertises a stream window of 0, say).
    pub async fn connect_with(
        addr: &str,
        server_key: &MachinePublic,
        machine: &StaticSecret,
        h2: &h2::client::Builder,
    ) -> Result<Self, ClientError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (initiator, rest, tcp) = Self::upgrade(tcp, addr, server_key, machine, CLIENT_VERSION).await?;
        Self::establish(tcp, rest, addr, initiator, h2).await
    }

    /// Sets up the channel over an already-open byte stream; `host` goes in `Host`/`:authority`.
    pub async fn connect_over<T>(
        io: T,
        host: &str,
        server_key: &MachinePublic,
        machine: &StaticSecret,
        version: u16,
    ) -> Result<Self, ClientError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (initiator, rest, io) = Self::upgrade(io, host, server_key, machine, version).await?;
        Self::establish(io, rest, host, initiator, &h2::client::Builder::new()).await
    }

    /// The HTTP/1.1 upgrade carrying the Noise initiation; returns the initiator, the bytes
    /// read past the 101 and the stream.
    async fn upgrade<T>(
        mut io: T,
        host: &str,
        server_key: &MachinePublic,
        machine: &StaticSecret,
        version: u16,
    ) -> Result<(Initiator, Vec<u8>, T), ClientError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        use base64::Engine as _;
        let (initiator, init) = Initiator::start(machine, server_key, version)?;
        let header = base64::engine::general_purpose::STANDARD.encode(&init);
        let request = format!(
            "POST /ts2021 HTTP/1.1\r\nHost: {host}\r\nUpgrade: tailscale-control-protocol\r\n\
             Connection: upgrade\r\nX-Tailscale-Handshake: {header}\r\nContent-Length: 0\r\n\r\n"
        );
        io.write_all(request.as_bytes()).await?;

        let (head, rest) = read_head(&mut io).await?;
        check_upgrade(&head)?;
        Ok((initiator, rest, io))
    }

    /// Sets up the channel over a stream whose upgrade is done and whose initiation message
    /// already went out (e.g. in the WebSocket URL): the next bytes are the Noise response.
    pub async fn connect_upgraded<T>(io: T, host: &str, initiator: Initiator) -> Result<Self, ClientError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::establish(io, Vec::new(), host, initiator, &h2::client::Builder::new()).await
    }

    /// Noise response (from `rest`, then `io`), early payload if any, then HTTP/2.
    async fn establish<T>(
        mut io: T,
        mut rest: Vec<u8>,
        host: &str,
        initiator: Initiator,
        h2: &h2::client::Builder,
    ) -> Result<Self, ClientError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let response = read_noise_response(&mut io, &mut rest).await?;
        let keys = initiator.finish(&response)?;
        let mut stream = NoiseStream::new(io, keys).with_read_prefix(&rest);
        let early = stream.read_early_payload().await?;

        let (send, conn) = h2.handshake(stream).await?;
        let driver = tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "ts2021 client connection ended");
            }
        });
        Ok(Self { send, authority: host.to_owned(), early, driver: Arc::new(driver.abort_handle()) })
    }

    /// Drops the connection abruptly, as a vanished client would (no GOAWAY, no RST_STREAM).
    pub fn abort(&self) {
        self.driver.abort();
    }

    /// POSTs `body` to `path`; returns the status and the body stream.
    pub async fn post(&self, path: &str, body: Bytes) -> Result<(StatusCode, RecvStream), ClientError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("https://{}{}", self.authority, path))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(())
            .map_err(|err| ClientError::Http(err.to_string()))?;
        let mut send = self.send.clone().ready().await?;
        let (response, mut body_tx) = send.send_request(req, body.is_empty())?;
        if !body.is_empty() {
            body_tx.send_data(body, true)?;
        }
        let response = response.await?;
        Ok((response.status(), response.into_body()))
    }

    /// POSTs and collects the whole body.
    pub async fn post_collect(&self, path: &str, body: Bytes) -> Result<(StatusCode, Bytes), ClientError> {
        let (status, mut recv) = self.post(path, body).await?;
        let mut out = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        Ok((status, Bytes::from(out)))
    }

    async fn post_json<R: serde::Serialize>(
        &self,
        path: &str,
        req: &R,
    ) -> Result<(StatusCode, RecvStream), ClientError> {
        let (status, recv) = self.post(path, Bytes::from(serde_json::to_vec(req)?)).await?;
        if status != StatusCode::OK {
            return Err(ClientError::Status { status, body: collect_text(recv).await });
        }
        Ok((status, recv))
    }

    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        let (status, body) = self.post_collect("/machine/register", Bytes::from(serde_json::to_vec(req)?)).await?;
        if status != StatusCode::OK {
            return Err(ClientError::Status { status, body: String::from_utf8_lossy(&body).into_owned() });
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// A long poll: yields each map message (keep-alives included) until the body ends.
    pub async fn map_stream(
        &self,
        req: &MapRequest,
    ) -> Result<BoxStream<'static, Result<MapResponse, ClientError>>, ClientError> {
        self.map_stream_of(req).await
    }

    /// The same long poll with each message parsed as `M`: a view of a `MapResponse` with
    /// only the fields the caller reads (the load generator reads peer keys), which the JSON
    /// parser then skips over instead of building.
    pub async fn map_stream_of<M: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        req: &MapRequest,
    ) -> Result<BoxStream<'static, Result<M, ClientError>>, ClientError> {
        let (_, recv) = self.post_json("/machine/map", req).await?;
        Ok(decode_map_body(recv))
    }

    /// A non-streaming request that gets exactly one message.
    pub async fn map_once(&self, req: &MapRequest) -> Result<MapResponse, ClientError> {
        let mut messages = self.map_stream(req).await?;
        match messages.next().await {
            Some(msg) => msg,
            None => Err(ClientError::Http("map body ended without a message".into())),
        }
    }

    /// A lite update: expects 200 and an empty body.
    pub async fn map_lite(&self, req: &MapRequest) -> Result<(), ClientError> {
        let (_, recv) = self.post_json("/machine/map", req).await?;
        let rest = collect_text(recv).await;
        if !rest.is_empty() {
            return Err(ClientError::Http(format!("lite update answered with a body: {rest:.80}")));
        }
        Ok(())
    }
}

/// Turns a map body into a stream of messages; a body ending mid-message is an error.
fn decode_map_body<M: serde::de::DeserializeOwned + Send + 'static>(
    recv: RecvStream,
) -> BoxStream<'static, Result<M, ClientError>> {
    let state = Some((recv, MapDecoder::new()));
    stream::unfold(state, |state| async move {
        let (mut recv, mut decoder) = state?;
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => return Some((Ok(msg), Some((recv, decoder)))),
                Ok(None) => {}
                Err(err) => return Some((Err(err.into()), None)),
            }
            match recv.data().await {
                Some(Ok(chunk)) => {
                    let _ = recv.flow_control().release_capacity(chunk.len());
                    decoder.push(&chunk);
                }
                Some(Err(err)) => return Some((Err(err.into()), None)),
                None if decoder.is_empty() => return None,
                None => return Some((Err(FramingError::Truncated.into()), None)),
            }
        }
    })
    .boxed()
}

async fn collect_text(mut recv: RecvStream) -> String {
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = recv.data().await {
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads an HTTP/1.1 response head; returns it and any bytes read past it.
async fn read_head<T: AsyncRead + Unpin>(io: &mut T) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(ClientError::Http("response head too large".into()));
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(ClientError::Http("connection closed before the response head".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses a head, returning (status, headers as lowercase-name pairs).
fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ClientError::Http("malformed response head".into())),
    }
    let status = resp.code.unwrap_or(0);
    let pairs = resp
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    Ok((status, pairs))
}

/// Applies the Go client's checks to the 101: `Upgrade` exact, `Connection` has `upgrade`.
fn check_upgrade(head: &[u8]) -> Result<(), ClientError> {
    let (status, headers) = parse_head(head)?;
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    if status != 101 {
        return Err(ClientError::Http(format!("upgrade refused with status {status}")));
    }
    if get("upgrade") != Some("tailscale-control-protocol") {
        return Err(ClientError::Http("101 without Upgrade: tailscale-control-protocol".into()));
    }
    let connection_upgrade =
        get("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    if !connection_upgrade {
        return Err(ClientError::Http("101 without Connection: upgrade".into()));
    }
    Ok(())
}

/// Takes `n` bytes from `rest` first, then from `io`.
async fn take_bytes<T: AsyncRead + Unpin>(io: &mut T, rest: &mut Vec<u8>, n: usize) -> Result<Vec<u8>, ClientError> {
    let from_rest = n.min(rest.len());
    let mut out: Vec<u8> = rest.drain(..from_rest).collect();
    if out.len() < n {
        let start = out.len();
        out.resize(n, 0);
        io.read_exact(&mut out[start..]).await?;
    }
    Ok(out)
}

/// Reads the 51-byte Noise response, or a whole type-3 error message.
async fn read_noise_response<T: AsyncRead + Unpin>(io: &mut T, rest: &mut Vec<u8>) -> Result<Vec<u8>, ClientError> {
    let mut msg = take_bytes(io, rest, 3).await?;
    let need = if msg[0] == MSG_ERROR { u16::from_be_bytes([msg[1], msg[2]]) as usize } else { RESPONSE_LEN - 3 };
    msg.extend(take_bytes(io, rest, need).await?);
    Ok(msg)
}

/// `GET <base_url>/key?v=130` over plain HTTP (`http://host:port` only).
pub async fn fetch_server_key(base_url: &str) -> Result<OverTLSPublicKeyResponse, ClientError> {
    let host = base_url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Http("only http:// URLs are supported".into()))?
        .trim_end_matches('/');
    let mut tcp = TcpStream::connect(host).await?;
    let request = format!("GET /key?v={CLIENT_VERSION} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    (&mut tcp).take((MAX_HEAD + MAX_KEY_BODY) as u64).read_to_end(&mut raw).await?;
    let end =
        raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| ClientError::Http("no response head".into()))?;
    let (status, headers) = parse_head(&raw[..end + 4])?;
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked")) {
        body = dechunk(&body)?;
    } else if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.trim().parse().map_err(|_| ClientError::Http("bad Content-Length".into()))?;
        body.truncate(len);
    }
    if status != 200 {
        return Err(ClientError::Status {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    let keys: OverTLSPublicKeyResponse = serde_json::from_slice(&body)?;
    if keys.public_key.is_zero() {
        return Err(ClientError::Http("control server is too old; no noise key".into()));
    }
    Ok(keys)
}

/// Decodes a complete chunked body.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bad = || ClientError::Http("malformed chunked body".into());
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| bad())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad())?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or_else(bad)?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or_else(bad)?;
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
