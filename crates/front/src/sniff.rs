//! Reading and classifying the first request head of a connection.
//!
//! Only two heads are ours to keep: `POST|GET /ts2021` with `Upgrade:
//! tailscale-control-protocol`, and `GET|POST /derp` with `Upgrade: DERP` (the Go client
//! sends GET, tailscale-rs POST; token match is
//! case-insensitive, the header may list several tokens). The target may be in origin form
//! (`/ts2021`) or in absolute form (`http://host:port/ts2021`), which RFC 9112 §3.2.2 says a
//! server MUST accept and which hyper-based clients (tailscale-rs) send. Everything else —
//! including heads httparse rejects — goes to actix-web, which answers errors itself.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Which protocol a taken-over connection speaks after the 101.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeKind {
    /// ts2021: Noise IK, then HTTP/2 inside it.
    Control,
    /// DERP frames.
    Derp,
}

/// The parsed first request head of a taken-over connection.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    /// The request target without its query.
    pub path: String,
    /// What followed `?`, if anything.
    pub query: Option<String>,
    /// Headers in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first header called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the first bytes of a connection turned out to be.
#[derive(Debug)]
pub enum First {
    /// One of our two upgrades; `rest` is what the client sent after the head.
    Takeover { kind: UpgradeKind, head: RequestHead, rest: Bytes },
    /// Anything else; `read` is every byte read so far, head included.
    Http { read: Bytes },
}

/// More than httparse will need for any real head; a head with more goes to actix.
const MAX_HEADERS: usize = 100;

/// Reads until one request head is complete. Fails on EOF before that, and when the head
/// is still incomplete after `max_head` bytes. The caller applies the time limit.
///
/// Parsing looks at the whole buffer, so it runs only when it can decide something: after
/// the first read (so that a head that is not HTTP at all goes to actix at once), when a
/// read completes the blank line that ends a head, at EOF and at the cap. Parsing after
/// every read would cost O(n²) for a head sent one byte per segment.
pub async fn read_first<R: AsyncRead + Unpin>(io: &mut R, max_head: usize) -> io::Result<First> {
    let mut buf = BytesMut::with_capacity(4096.min(max_head.max(1)));
    let mut blank_line = BlankLine::default();
    let mut first_read = true;
    loop {
        let eof = io.read_buf(&mut buf).await? == 0;
        let full = buf.len() >= max_head;
        let head_may_end = blank_line.arrived(&buf);
        if std::mem::take(&mut first_read) || head_may_end || eof || full {
            if let Some(first) = classify(&buf, max_head)? {
                return Ok(first);
            }
        }
        if eof {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if full {
            return Err(too_large());
        }
    }
}

/// Watches a growing buffer for the blank line that ends a request head, looking at each
/// byte a bounded number of times over all calls. Like httparse, it skips empty lines before
/// the request line; a line ends in LF or CRLF.
#[derive(Debug, Default)]
struct BlankLine {
    /// Where the next look starts.
    from: usize,
    /// Whether the request line has begun (the empty lines before it are behind `from`).
    request_line_seen: bool,
}

impl BlankLine {
    /// Whether the bytes added since the last call complete a blank line after the request
    /// line. Each blank line is reported once.
    fn arrived(&mut self, buf: &[u8]) -> bool {
        if !self.request_line_seen {
            match buf[self.from..].iter().position(|b| !matches!(b, b'\r' | b'\n')) {
                Some(i) => {
                    self.from += i;
                    self.request_line_seen = true;
                }
                None => {
                    self.from = buf.len();
                    return false;
                }
            }
        }
        while let Some(i) = buf[self.from..].iter().position(|&b| b == b'\n') {
            let newline = self.from + i;
            match &buf[newline + 1..] {
                [b'\n', ..] | [b'\r', b'\n', ..] => {
                    self.from = newline + 1;
                    return true;
                }
                // Too early to tell: look at this line end again when more has arrived.
                [] | [b'\r'] => {
                    self.from = newline;
                    return false;
                }
                _ => self.from = newline + 1,
            }
        }
        self.from = buf.len();
        false
    }
}

/// The error a head over the size cap ends with (inside an `InvalidData` `io::Error`).
#[derive(Debug, thiserror::Error)]
#[error("request head too large")]
pub(crate) struct HeadTooLarge;

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, HeadTooLarge)
}

/// Whether `err` is the size cap's.
pub(crate) fn is_too_large(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<HeadTooLarge>())
}

/// `Ok(None)`: the head is not complete yet.
fn classify(buf: &BytesMut, max_head: usize) -> io::Result<Option<First>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        // Not our business to explain what is wrong: actix answers 400.
        Err(_) => return Ok(Some(First::Http { read: Bytes::copy_from_slice(buf) })),
    };
    if head_len > max_head {
        return Err(too_large());
    }
    let Some(kind) = upgrade_kind(&req) else {
        return Ok(Some(First::Http { read: Bytes::copy_from_slice(buf) }));
    };
    Ok(Some(First::Takeover { kind, head: to_head(&req), rest: Bytes::copy_from_slice(&buf[head_len..]) }))
}

/// The origin form of a request target: `http://host:port/ts2021?x` → `/ts2021?x`; a target
/// already in origin form (or `*`) is returned as it is. An absolute target without a path
/// names the root (RFC 9112 §3.2.2).
fn origin_form(target: &str) -> &str {
    let Some(scheme_end) = target.find("://") else {
        return target;
    };
    let scheme = &target[..scheme_end];
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return target;
    }
    let authority_and_rest = &target[scheme_end + 3..];
    match authority_and_rest.find(['/', '?']) {
        Some(i) if authority_and_rest[i..].starts_with('/') => &authority_and_rest[i..],
        _ => "/",
    }
}

fn upgrade_kind(req: &httparse::Request<'_, '_>) -> Option<UpgradeKind> {
    let method = req.method?;
    let path = origin_form(req.path?).split('?').next()?;
    match (method, path) {
        ("POST" | "GET", "/ts2021") if has_upgrade(req, "tailscale-control-protocol") => Some(UpgradeKind::Control),
        ("GET" | "POST", "/derp") if has_upgrade(req, "derp") => Some(UpgradeKind::Derp),
        _ => None,
    }
}

/// Whether any `Upgrade` header lists `token` (comma-separated, case-insensitive).
fn has_upgrade(req: &httparse::Request<'_, '_>, token: &str) -> bool {
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("upgrade"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn to_head(req: &httparse::Request<'_, '_>) -> RequestHead {
    let target = origin_form(req.path.unwrap_or("/"));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let headers =
        req.headers.iter().map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned())).collect();
    RequestHead { method: req.method.unwrap_or_default().to_owned(), path, query, headers }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn first(bytes: &[u8]) -> io::Result<First> {
        let mut r = bytes;
        read_first(&mut r, 16 * 1024).await
    }

    fn kind(f: &First) -> Option<UpgradeKind> {
        match f {
            First::Takeover { kind, .. } => Some(*kind),
            First::Http { .. } => None,
        }
    }

    #[tokio::test]
    async fn control_upgrade_with_trailing_bytes() {
        let raw = b"POST /ts2021?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: Tailscale-Control-Protocol\r\n\
                    Connection: upgrade\r\nX-Tailscale-Handshake: AAEC\r\n\r\nNOISE";
        let First::Takeover { kind, head, rest } = first(raw).await.unwrap() else { panic!("not taken over") };
        assert_eq!(kind, UpgradeKind::Control);
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/ts2021");
        assert_eq!(head.query.as_deref(), Some("x=1"));
        assert_eq!(head.get("x-tailscale-handshake"), Some("AAEC"));
        assert_eq!(&rest[..], b"NOISE");
    }

    #[tokio::test]
    async fn absolute_form_targets_are_taken_over_like_origin_form() {
        let raw = b"POST http://127.0.0.1:8080/ts2021?v=130 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
                    Upgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n\r\n";
        let First::Takeover { kind: control, head, .. } = first(raw).await.unwrap() else { panic!("not taken over") };
        assert_eq!(control, UpgradeKind::Control);
        assert_eq!((head.path.as_str(), head.query.as_deref()), ("/ts2021", Some("v=130")));
        let raw = b"GET HTTPS://derp.example/derp HTTP/1.1\r\nUpgrade: DERP\r\n\r\n";
        assert_eq!(kind(&first(raw).await.unwrap()), Some(UpgradeKind::Derp));
        // tailscale-rs: POST, absolute form, the peer's address as host.
        let raw = b"POST http://127.0.0.1:443/derp HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: DERP\r\nconnection: Upgrade\r\n\r\n";
        assert_eq!(kind(&first(raw).await.unwrap()), Some(UpgradeKind::Derp));
    }

    #[test]
    fn origin_form_of_targets() {
        let cases = [
            ("/ts2021", "/ts2021"),
            ("http://h:1/ts2021", "/ts2021"),
            ("http://h/derp?x=1", "/derp?x=1"),
            ("http://h", "/"),
            ("http://h?q", "/"),
            ("*", "*"),
            ("ftp://h/ts2021", "ftp://h/ts2021"),
            ("/a://b", "/a://b"),
        ];
        for (target, want) in cases {
            assert_eq!(origin_form(target), want, "{target}");
        }
    }

    #[tokio::test]
    async fn derp_upgrade_among_several_tokens() {
        let raw = b"GET /derp HTTP/1.1\r\nUpgrade: foo, derp\r\n\r\n";
        assert_eq!(kind(&first(raw).await.unwrap()), Some(UpgradeKind::Derp));
    }

    #[tokio::test]
    async fn everything_else_goes_to_actix_with_all_bytes() {
        let cases: [&[u8]; 6] = [
            b"POST /ts2021 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /ts2021 HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"PUT /derp HTTP/1.1\r\nUpgrade: derp\r\n\r\n",
            b"GET /derp/probe HTTP/1.1\r\nUpgrade: derp\r\n\r\n",
            b"GET /hello HTTP/1.1\r\n\r\nbody",
            b"\x16\x03\x01garbage\r\n\r\n",
        ];
        for raw in cases {
            match first(raw).await.unwrap() {
                First::Http { read } => assert_eq!(&read[..], raw),
                other => panic!("{other:?} for {raw:?}"),
            }
        }
    }

    #[tokio::test]
    async fn endless_head_is_an_error() {
        let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
        raw.resize(64 * 1024, b'a');
        let mut r = &raw[..];
        assert!(read_first(&mut r, 16 * 1024).await.is_err());
    }

    /// Hands its bytes out one per read, as a client sending a segment per byte does.
    struct OneByteReads<'a>(&'a [u8]);

    impl AsyncRead for OneByteReads<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if let Some((&byte, rest)) = self.0.split_first() {
                buf.put_slice(&[byte]);
                self.0 = rest;
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn one_byte_per_read_gives_what_one_read_gives() {
        let cases: [&[u8]; 6] = [
            b"POST /ts2021 HTTP/1.1\r\nUpgrade: tailscale-control-protocol\r\n\r\nNOISE",
            b"\r\n\nGET /derp HTTP/1.1\nUpgrade: derp\n\nframes",
            b"GET /hello HTTP/1.1\r\n\r\nbody",
            b"\x16\x03\x01garbage without a line end",
            b"GET / HT\x16TP/1.1\r\nX: y\r\n",
            b"GET / HTTP/1.1\r\nHost:",
        ];
        for raw in cases {
            let whole = first(raw).await;
            let split = read_first(&mut OneByteReads(raw), 16 * 1024).await;
            match (whole, split) {
                (
                    Ok(First::Takeover { kind: a, head: h, rest: r }),
                    Ok(First::Takeover { kind: b, head: g, rest: q }),
                ) => {
                    assert_eq!((a, &h.path, &h.headers), (b, &g.path, &g.headers), "{raw:?}");
                    // One byte per read: the head ends before anything after it is read.
                    assert!(r.starts_with(&q), "{raw:?}");
                }
                (Ok(First::Http { .. }), Ok(First::Http { read })) => assert!(raw.starts_with(&read), "{raw:?}"),
                (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{raw:?}"),
                (a, b) => panic!("{raw:?}: one read gave {a:?}, one byte per read {b:?}"),
            }
        }
    }

    #[test]
    fn a_long_head_sent_byte_by_byte_is_parsed_once() {
        let mut head = b"\r\nGET / HTTP/1.1\r\n".to_vec();
        for i in 0..2_000 {
            head.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\nbody\n\nmore");
        let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 3;
        let mut watch = BlankLine::default();
        let arrivals: Vec<usize> = (1..=head.len()).filter(|&n| watch.arrived(&head[..n])).collect();
        // The blank line ending the head, then the one inside the body; nothing else.
        let in_body = head.len() - "more".len();
        assert_eq!(arrivals, [end + 1, in_body]);
    }

    #[test]
    fn blank_lines_in_any_line_ending_are_seen() {
        for (head, at) in
            [(&b"GET / HTTP/1.1\n\n"[..], 16), (b"GET / HTTP/1.1\r\nA: b\n\r\n", 23), (b"\n\r\nGET / HTTP/1.1\n", 0)]
        {
            let mut watch = BlankLine::default();
            let first = (1..=head.len()).find(|&n| watch.arrived(&head[..n])).unwrap_or(0);
            assert_eq!(first, at, "{head:?}");
        }
    }

    #[tokio::test]
    async fn eof_before_head_is_an_error() {
        assert!(first(b"GET / HTTP/1.1\r\nHost:").await.is_err());
        assert!(first(b"").await.is_err());
    }
}
