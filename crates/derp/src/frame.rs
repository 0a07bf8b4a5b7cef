//! The DERP frame codec: frame types, their payload layouts, and the size limits.
//!
//! This module owns the wire format and nothing else (no I/O, no crypto). Every frame is
//!
//! ```text
//! +---------+-------------------+---------------------+
//! | type u8 | length u32 BE     | payload (length B)  |
//! +---------+-------------------+---------------------+
//! ```
//!
//! and the length counts the payload only. Protocol version 2 (RecvPacket carries the source
//! key). Payload layouts are documented on each [`Frame`] variant.
//!
//! Parsing is total: any byte string yields a `Frame` or a [`FrameError`], never a panic.

use bytes::{BufMut, Bytes, BytesMut};
use tenscale_base::keys::NodePublic;

/// The 8-byte magic at the start of ServerKey: `"DERP🔑"`.
pub const MAGIC: [u8; 8] = [0x44, 0x45, 0x52, 0x50, 0xF0, 0x9F, 0x94, 0x91];
/// The protocol version this codec speaks (RecvPacket carries the source key).
pub const PROTOCOL_VERSION: u32 = 2;
/// Type byte + u32 length.
pub const HEADER_LEN: usize = 5;
/// Length of every Curve25519 key on the wire.
pub const KEY_LEN: usize = 32;
/// Length of the NaCl box nonce that prefixes ClientInfo/ServerInfo boxes.
pub const NONCE_LEN: usize = 24;
/// Largest packet either side relays (64 KiB).
pub const MAX_PACKET_SIZE: usize = 64 << 10;
/// Smallest ClientInfo payload the server accepts: key + nonce.
pub const MIN_CLIENT_INFO_LEN: usize = KEY_LEN + NONCE_LEN;
/// Largest ClientInfo payload the server accepts.
pub const MAX_CLIENT_INFO_LEN: usize = 256 << 10;
/// Largest frame of any type; the Go client refuses anything bigger.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Ping/Pong payload the protocol defines; a Ping may carry up to `MAX_PING_LEN` (rest ignored).
pub const PING_LEN: usize = 8;
pub const MAX_PING_LEN: usize = 1000;
/// Length of a PeerPresent payload: key + IP (16) + port (2) + flags (1).
pub const PEER_PRESENT_LEN: usize = KEY_LEN + 16 + 2 + 1;
/// Prefix of a disco message, used for the PeerGone(NotHere) rule: `"TS💬"`.
pub const DISCO_MAGIC: [u8; 6] = [0x54, 0x53, 0xF0, 0x9F, 0x92, 0xAC];
/// A disco packet is at least magic + sender disco key + nonce.
pub const DISCO_MIN_LEN: usize = 6 + KEY_LEN + NONCE_LEN;

/// Frame type bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    ServerKey = 0x01,
    ClientInfo = 0x02,
    ServerInfo = 0x03,
    SendPacket = 0x04,
    RecvPacket = 0x05,
    KeepAlive = 0x06,
    NotePreferred = 0x07,
    PeerGone = 0x08,
    PeerPresent = 0x09,
    ForwardPacket = 0x0a,
    WatchConns = 0x10,
    ClosePeer = 0x11,
    Ping = 0x12,
    Pong = 0x13,
    Health = 0x14,
    Restarting = 0x15,
}

impl FrameType {
    pub const ALL: [FrameType; 16] = [
        Self::ServerKey,
        Self::ClientInfo,
        Self::ServerInfo,
        Self::SendPacket,
        Self::RecvPacket,
        Self::KeepAlive,
        Self::NotePreferred,
        Self::PeerGone,
        Self::PeerPresent,
        Self::ForwardPacket,
        Self::WatchConns,
        Self::ClosePeer,
        Self::Ping,
        Self::Pong,
        Self::Health,
        Self::Restarting,
    ];

    /// The type for a byte, or `None` for unassigned bytes (which receivers skip).
    pub fn from_u8(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u8 == byte)
    }

    /// The largest payload a well-formed frame of this type can have. A header announcing more
    /// is refused before any payload is buffered.
    pub fn max_payload_len(self) -> usize {
        match self {
            Self::ServerKey => 1 << 10,
            Self::ClientInfo => MAX_CLIENT_INFO_LEN,
            Self::ServerInfo => MAX_CLIENT_INFO_LEN,
            Self::SendPacket | Self::RecvPacket => KEY_LEN + MAX_PACKET_SIZE,
            Self::ForwardPacket => 2 * KEY_LEN + MAX_PACKET_SIZE,
            Self::KeepAlive | Self::WatchConns => 0,
            Self::NotePreferred => 1,
            Self::PeerGone => KEY_LEN + 1,
            Self::PeerPresent => PEER_PRESENT_LEN + 64,
            Self::ClosePeer => KEY_LEN,
            Self::Ping | Self::Pong => MAX_PING_LEN,
            Self::Health => 64 << 10,
            Self::Restarting => 64,
        }
    }
}

/// Why a peer went away (the byte after the key in PeerGone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerGoneReason {
    /// `0x00`: the peer was connected here and left.
    Disconnected,
    /// `0x01`: the server does not know the destination of a (disco) packet.
    NotHere,
    /// Any other byte, kept so a frame re-encodes as it came.
    Other(u8),
}

impl PeerGoneReason {
    pub fn from_u8(byte: u8) -> Self {
        match byte {
            0x00 => Self::Disconnected,
            0x01 => Self::NotHere,
            other => Self::Other(other),
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Self::Disconnected => 0x00,
            Self::NotHere => 0x01,
            Self::Other(b) => b,
        }
    }
}

/// PeerPresent flags.
pub mod peer_present_flags {
    pub const REGULAR: u8 = 0x01;
    pub const MESH_PEER: u8 = 0x02;
    pub const PROBER: u8 = 0x04;
    pub const NOT_IDEAL: u8 = 0x08;
}

/// A decoded DERP frame. Byte slices share the read buffer they were parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `0x01` S→C: `magic(8) ‖ server public key(32) [‖ ignored extra bytes]`.
    ServerKey { key: NodePublic },
    /// `0x02` C→S: `client node public key(32) ‖ nonce(24) ‖ NaCl box(JSON)`.
    /// `sealed` is `nonce ‖ box`. Length must be 56..=256 KiB.
    ClientInfo { key: NodePublic, sealed: Bytes },
    /// `0x03` S→C: `nonce(24) ‖ NaCl box(JSON)`.
    ServerInfo { sealed: Bytes },
    /// `0x04` C→S: `destination key(32) ‖ packet(≤ 64 KiB)`.
    SendPacket { dst: NodePublic, packet: Bytes },
    /// `0x05` S→C: `source key(32) ‖ packet(≤ 64 KiB)`.
    RecvPacket { src: NodePublic, packet: Bytes },
    /// `0x06` S→C: empty.
    KeepAlive,
    /// `0x07` C→S: exactly one byte, `01` = home DERP, `00` = not.
    NotePreferred { preferred: bool },
    /// `0x08` S→C: `key(32) [‖ reason(1)]`; a missing reason means Disconnected.
    PeerGone { key: NodePublic, reason: PeerGoneReason },
    /// `0x09` S→C (watchers): see [`PeerPresent`].
    PeerPresent(PeerPresent),
    /// `0x0a` mesh→S: `source key(32) ‖ destination key(32) ‖ packet`.
    ForwardPacket { src: NodePublic, dst: NodePublic, packet: Bytes },
    /// `0x10` C→S (mesh only): empty.
    WatchConns,
    /// `0x11` C→S (mesh only): `target key(32)`.
    ClosePeer { key: NodePublic },
    /// `0x12` either way: 8 opaque bytes (a receiver accepts 8..=1000 and ignores the rest).
    Ping { data: [u8; PING_LEN] },
    /// `0x13` either way: the 8 bytes of the Ping being answered.
    Pong { data: [u8; PING_LEN] },
    /// `0x14` S→C: UTF-8 problem text, empty = healthy.
    Health { problem: String },
    /// `0x15` S→C: `reconnect in ms(u32 BE) ‖ try for ms(u32 BE)`.
    Restarting { reconnect_in_ms: u32, try_for_ms: u32 },
}

/// PeerPresent payload (51 bytes):
///
/// ```text
/// key(32) ‖ IP(16, IPv4 as v4-mapped) ‖ port(u16 BE) ‖ flags(1)
/// ```
///
/// Older servers sent only the key, or key + IP + port; those decode with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPresent {
    pub key: NodePublic,
    pub ip: std::net::Ipv6Addr,
    pub port: u16,
    pub flags: u8,
}

/// Why a frame could not be decoded. Every variant closes the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame type {frame_type:#04x} with length {len} exceeds the limit {max}")]
    TooLong { frame_type: u8, len: usize, max: usize },
    #[error("frame type {frame_type:?} has a malformed payload of {len} bytes")]
    Malformed { frame_type: FrameType, len: usize },
    #[error("ServerKey frame lacks the DERP magic")]
    BadMagic,
    #[error("connection closed in the middle of a frame")]
    Truncated,
}

/// Reads a frame header: `(type byte, payload length)`.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> (u8, usize) {
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    (header[0], len as usize)
}

/// Writes a frame header.
pub fn header(frame_type: FrameType, len: usize) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0] = frame_type as u8;
    // Lengths are bounded by MAX_FRAME_LEN long before they could overflow u32.
    out[1..].copy_from_slice(&(len as u32).to_be_bytes());
    out
}

/// The 37-byte prefix of a RecvPacket frame, so the hot path writes header + key + packet
/// straight into the connection's buffer without building a `Frame`.
pub fn recv_packet_prefix(src: &NodePublic, packet_len: usize) -> [u8; HEADER_LEN + KEY_LEN] {
    let mut out = [0u8; HEADER_LEN + KEY_LEN];
    out[..HEADER_LEN].copy_from_slice(&header(FrameType::RecvPacket, KEY_LEN + packet_len));
    out[HEADER_LEN..].copy_from_slice(src.as_bytes());
    out
}

/// True if a packet looks like a disco message (the PeerGone(NotHere) rule applies to these).
pub fn looks_like_disco(packet: &[u8]) -> bool {
    packet.len() >= DISCO_MIN_LEN && packet.starts_with(&DISCO_MAGIC)
}

fn key_at(payload: &[u8], at: usize) -> NodePublic {
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&payload[at..at + KEY_LEN]);
    NodePublic(key)
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::ServerKey { .. } => FrameType::ServerKey,
            Self::ClientInfo { .. } => FrameType::ClientInfo,
            Self::ServerInfo { .. } => FrameType::ServerInfo,
            Self::SendPacket { .. } => FrameType::SendPacket,
            Self::RecvPacket { .. } => FrameType::RecvPacket,
            Self::KeepAlive => FrameType::KeepAlive,
            Self::NotePreferred { .. } => FrameType::NotePreferred,
            Self::PeerGone { .. } => FrameType::PeerGone,
            Self::PeerPresent(_) => FrameType::PeerPresent,
            Self::ForwardPacket { .. } => FrameType::ForwardPacket,
            Self::WatchConns => FrameType::WatchConns,
            Self::ClosePeer { .. } => FrameType::ClosePeer,
            Self::Ping { .. } => FrameType::Ping,
            Self::Pong { .. } => FrameType::Pong,
            Self::Health { .. } => FrameType::Health,
            Self::Restarting { .. } => FrameType::Restarting,
        }
    }

    /// Decodes the payload of a frame whose type is already known and whose length was checked
    /// against [`FrameType::max_payload_len`].
    pub fn parse(frame_type: FrameType, payload: Bytes) -> Result<Frame, FrameError> {
        let len = payload.len();
        if len > frame_type.max_payload_len() {
            return Err(FrameError::TooLong { frame_type: frame_type as u8, len, max: frame_type.max_payload_len() });
        }
        let malformed = || FrameError::Malformed { frame_type, len };
        let frame = match frame_type {
            FrameType::ServerKey => {
                if len < MAGIC.len() + KEY_LEN {
                    return Err(malformed());
                }
                if payload[..MAGIC.len()] != MAGIC {
                    return Err(FrameError::BadMagic);
                }
                Frame::ServerKey { key: key_at(&payload, MAGIC.len()) }
            }
            FrameType::ClientInfo => {
                if len < MIN_CLIENT_INFO_LEN {
                    return Err(malformed());
                }
                Frame::ClientInfo { key: key_at(&payload, 0), sealed: payload.slice(KEY_LEN..) }
            }
            FrameType::ServerInfo => {
                if len < NONCE_LEN {
                    return Err(malformed());
                }
                Frame::ServerInfo { sealed: payload }
            }
            FrameType::SendPacket | FrameType::RecvPacket => {
                if len < KEY_LEN {
                    return Err(malformed());
                }
                let key = key_at(&payload, 0);
                let packet = payload.slice(KEY_LEN..);
                if frame_type == FrameType::SendPacket {
                    Frame::SendPacket { dst: key, packet }
                } else {
                    Frame::RecvPacket { src: key, packet }
                }
            }
            FrameType::KeepAlive => Frame::KeepAlive,
            FrameType::WatchConns => Frame::WatchConns,
            FrameType::NotePreferred => {
                if len != 1 {
                    return Err(malformed());
                }
                Frame::NotePreferred { preferred: payload[0] != 0 }
            }
            FrameType::PeerGone => {
                if len < KEY_LEN {
                    return Err(malformed());
                }
                let reason = payload.get(KEY_LEN).copied().unwrap_or(0);
                Frame::PeerGone { key: key_at(&payload, 0), reason: PeerGoneReason::from_u8(reason) }
            }
            FrameType::PeerPresent => Frame::PeerPresent(PeerPresent::parse(&payload).ok_or_else(malformed)?),
            FrameType::ForwardPacket => {
                if len < 2 * KEY_LEN {
                    return Err(malformed());
                }
                Frame::ForwardPacket {
                    src: key_at(&payload, 0),
                    dst: key_at(&payload, KEY_LEN),
                    packet: payload.slice(2 * KEY_LEN..),
                }
            }
            FrameType::ClosePeer => {
                if len != KEY_LEN {
                    return Err(malformed());
                }
                Frame::ClosePeer { key: key_at(&payload, 0) }
            }
            FrameType::Ping | FrameType::Pong => {
                if len < PING_LEN {
                    return Err(malformed());
                }
                let mut data = [0u8; PING_LEN];
                data.copy_from_slice(&payload[..PING_LEN]);
                if frame_type == FrameType::Ping {
                    Frame::Ping { data }
                } else {
                    Frame::Pong { data }
                }
            }
            FrameType::Health => {
                Frame::Health { problem: String::from_utf8(payload.to_vec()).map_err(|_| malformed())? }
            }
            FrameType::Restarting => {
                if len < 8 {
                    return Err(malformed());
                }
                Frame::Restarting {
                    reconnect_in_ms: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                    try_for_ms: u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]),
                }
            }
        };
        Ok(frame)
    }

    /// Length of the payload `encode` writes.
    pub fn payload_len(&self) -> usize {
        match self {
            Self::ServerKey { .. } => MAGIC.len() + KEY_LEN,
            Self::ClientInfo { sealed, .. } => KEY_LEN + sealed.len(),
            Self::ServerInfo { sealed } => sealed.len(),
            Self::SendPacket { packet, .. } | Self::RecvPacket { packet, .. } => KEY_LEN + packet.len(),
            Self::KeepAlive | Self::WatchConns => 0,
            Self::NotePreferred { .. } => 1,
            Self::PeerGone { .. } => KEY_LEN + 1,
            Self::PeerPresent(_) => PEER_PRESENT_LEN,
            Self::ForwardPacket { packet, .. } => 2 * KEY_LEN + packet.len(),
            Self::ClosePeer { .. } => KEY_LEN,
            Self::Ping { .. } | Self::Pong { .. } => PING_LEN,
            Self::Health { problem } => problem.len(),
            Self::Restarting { .. } => 8,
        }
    }

    /// Appends header and payload to `out`.
    pub fn encode<B: BufMut>(&self, out: &mut B) {
        let len = self.payload_len();
        out.put_slice(&header(self.frame_type(), len));
        match self {
            Self::ServerKey { key } => {
                out.put_slice(&MAGIC);
                out.put_slice(key.as_bytes());
            }
            Self::ClientInfo { key, sealed } => {
                out.put_slice(key.as_bytes());
                out.put_slice(sealed);
            }
            Self::ServerInfo { sealed } => out.put_slice(sealed),
            Self::SendPacket { dst: key, packet } | Self::RecvPacket { src: key, packet } => {
                out.put_slice(key.as_bytes());
                out.put_slice(packet);
            }
            Self::KeepAlive | Self::WatchConns => {}
            Self::NotePreferred { preferred } => out.put_u8(u8::from(*preferred)),
            Self::PeerGone { key, reason } => {
                out.put_slice(key.as_bytes());
                out.put_u8(reason.as_u8());
            }
            Self::PeerPresent(present) => present.encode(out),
            Self::ForwardPacket { src, dst, packet } => {
                out.put_slice(src.as_bytes());
                out.put_slice(dst.as_bytes());
                out.put_slice(packet);
            }
            Self::ClosePeer { key } => out.put_slice(key.as_bytes()),
            Self::Ping { data } | Self::Pong { data } => out.put_slice(data),
            Self::Health { problem } => out.put_slice(problem.as_bytes()),
            Self::Restarting { reconnect_in_ms, try_for_ms } => {
                out.put_u32(*reconnect_in_ms);
                out.put_u32(*try_for_ms);
            }
        }
    }

    /// The whole frame as bytes (tests, handshakes; the hot path avoids this).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload_len());
        self.encode(&mut out);
        out.freeze()
    }
}

impl PeerPresent {
    fn parse(payload: &[u8]) -> Option<Self> {
        if payload.len() < KEY_LEN {
            return None;
        }
        let key = key_at(payload, 0);
        let mut present = PeerPresent { key, ip: std::net::Ipv6Addr::UNSPECIFIED, port: 0, flags: 0 };
        if payload.len() >= KEY_LEN + 18 {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&payload[KEY_LEN..KEY_LEN + 16]);
            present.ip = ip.into();
            present.port = u16::from_be_bytes([payload[KEY_LEN + 16], payload[KEY_LEN + 17]]);
        }
        if payload.len() >= PEER_PRESENT_LEN {
            present.flags = payload[PEER_PRESENT_LEN - 1];
        }
        Some(present)
    }

    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_slice(self.key.as_bytes());
        out.put_slice(&self.ip.octets());
        out.put_u16(self.port);
        out.put_u8(self.flags);
    }
}

/// One whole frame taken off a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// An unassigned type byte; receivers skip these.
    Unknown {
        frame_type: u8,
        len: usize,
    },
}

/// Decodes one whole frame from the front of `buf` if it is complete: `Ok(None)` means "need
/// more bytes". Used by tests and by [`crate::derp::conn::FrameReader`].
pub fn decode_one(buf: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&buf[..HEADER_LEN]);
    let (type_byte, len) = parse_header(&head);
    let max = FrameType::from_u8(type_byte).map_or(MAX_FRAME_LEN, FrameType::max_payload_len);
    if len > max {
        return Err(FrameError::TooLong { frame_type: type_byte, len, max });
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let mut frame = buf.split_to(HEADER_LEN + len);
    let payload = frame.split_off(HEADER_LEN).freeze();
    match FrameType::from_u8(type_byte) {
        Some(frame_type) => Frame::parse(frame_type, payload).map(|f| Some(Decoded::Frame(f))),
        None => Ok(Some(Decoded::Unknown { frame_type: type_byte, len })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> NodePublic {
        NodePublic([byte; 32])
    }

    fn one_of_each() -> Vec<Frame> {
        vec![
            Frame::ServerKey { key: key(1) },
            Frame::ClientInfo { key: key(2), sealed: Bytes::from(vec![7u8; 40]) },
            Frame::ServerInfo { sealed: Bytes::from(vec![8u8; 40]) },
            Frame::SendPacket { dst: key(3), packet: Bytes::from_static(b"hello") },
            Frame::RecvPacket { src: key(4), packet: Bytes::from(vec![9u8; MAX_PACKET_SIZE]) },
            Frame::KeepAlive,
            Frame::NotePreferred { preferred: true },
            Frame::NotePreferred { preferred: false },
            Frame::PeerGone { key: key(5), reason: PeerGoneReason::Disconnected },
            Frame::PeerGone { key: key(5), reason: PeerGoneReason::NotHere },
            Frame::PeerPresent(PeerPresent {
                key: key(6),
                ip: std::net::Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped(),
                port: 41641,
                flags: peer_present_flags::REGULAR | peer_present_flags::PROBER,
            }),
            Frame::ForwardPacket { src: key(7), dst: key(8), packet: Bytes::from_static(b"fwd") },
            Frame::WatchConns,
            Frame::ClosePeer { key: key(9) },
            Frame::Ping { data: *b"12345678" },
            Frame::Pong { data: *b"87654321" },
            Frame::Health { problem: "disk on fire".into() },
            Frame::Health { problem: String::new() },
            Frame::Restarting { reconnect_in_ms: 500, try_for_ms: 30_000 },
        ]
    }

    #[test]
    fn every_frame_type_round_trips() {
        let frames = one_of_each();
        let covered: std::collections::HashSet<_> = frames.iter().map(Frame::frame_type).collect();
        assert_eq!(covered.len(), FrameType::ALL.len(), "a frame type is missing from the test");
        let mut buf = BytesMut::new();
        for frame in &frames {
            frame.encode(&mut buf);
        }
        for frame in &frames {
            let decoded = decode_one(&mut buf).unwrap().unwrap();
            assert_eq!(decoded, Decoded::Frame(frame.clone()));
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn byte_layouts_are_exact() {
        let bytes = Frame::ServerKey { key: key(0xAB) }.to_bytes();
        assert_eq!(&bytes[..5], &[0x01, 0, 0, 0, 40]);
        assert_eq!(&bytes[5..13], "DERP🔑".as_bytes());
        assert_eq!(&bytes[13..], &[0xAB; 32]);

        let bytes = Frame::PeerGone { key: key(1), reason: PeerGoneReason::NotHere }.to_bytes();
        assert_eq!(&bytes[..5], &[0x08, 0, 0, 0, 33]);
        assert_eq!(bytes[37], 0x01);

        let bytes = Frame::Restarting { reconnect_in_ms: 0x01020304, try_for_ms: 5 }.to_bytes();
        assert_eq!(&bytes[..], &[0x15, 0, 0, 0, 8, 1, 2, 3, 4, 0, 0, 0, 5]);

        let present = PeerPresent {
            key: key(2),
            ip: std::net::Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped(),
            port: 0x1234,
            flags: 0x08,
        };
        let bytes = Frame::PeerPresent(present).to_bytes();
        assert_eq!(bytes.len(), HEADER_LEN + 51);
        assert_eq!(&bytes[37..53], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]);
        assert_eq!(&bytes[53..], &[0x12, 0x34, 0x08]);

        let prefix = recv_packet_prefix(&key(3), 100);
        let full = Frame::RecvPacket { src: key(3), packet: Bytes::from(vec![0u8; 100]) }.to_bytes();
        assert_eq!(&prefix[..], &full[..37]);
    }

    #[test]
    fn legacy_short_forms_decode() {
        // PeerGone without a reason byte means Disconnected.
        let frame = Frame::parse(FrameType::PeerGone, Bytes::from(vec![1u8; 32])).unwrap();
        assert_eq!(frame, Frame::PeerGone { key: key(1), reason: PeerGoneReason::Disconnected });
        // PeerPresent with only a key.
        let frame = Frame::parse(FrameType::PeerPresent, Bytes::from(vec![1u8; 32])).unwrap();
        assert!(matches!(frame, Frame::PeerPresent(p) if p.port == 0 && p.flags == 0));
        // A long Ping keeps its first 8 bytes; a ServerKey with trailing bytes is fine.
        let frame = Frame::parse(FrameType::Ping, Bytes::from(vec![3u8; 1000])).unwrap();
        assert_eq!(frame, Frame::Ping { data: [3; 8] });
        let mut payload = MAGIC.to_vec();
        payload.extend_from_slice(&[4u8; 32 + 10]);
        assert_eq!(Frame::parse(FrameType::ServerKey, payload.into()).unwrap(), Frame::ServerKey { key: key(4) });
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let cases: &[(FrameType, usize)] = &[
            (FrameType::ServerKey, 39),
            (FrameType::ClientInfo, 55),
            (FrameType::SendPacket, 31),
            (FrameType::RecvPacket, 0),
            (FrameType::NotePreferred, 0),
            (FrameType::NotePreferred, 2),
            (FrameType::PeerGone, 31),
            (FrameType::ForwardPacket, 63),
            (FrameType::ClosePeer, 33),
            (FrameType::Ping, 7),
            (FrameType::Pong, 0),
            (FrameType::Restarting, 7),
        ];
        for &(frame_type, len) in cases {
            let result = Frame::parse(frame_type, Bytes::from(vec![0u8; len]));
            assert!(result.is_err(), "{frame_type:?} with {len} bytes was accepted");
        }
        let bad_magic = Frame::parse(FrameType::ServerKey, Bytes::from(vec![0u8; 40]));
        assert_eq!(bad_magic, Err(FrameError::BadMagic));
        let bad_utf8 = Frame::parse(FrameType::Health, Bytes::from_static(&[0xff, 0xfe]));
        assert!(bad_utf8.is_err());
    }

    #[test]
    fn oversize_headers_are_refused_before_buffering() {
        // A SendPacket announcing 64 KiB + 33 bytes: refused from the header alone.
        let mut buf = BytesMut::from(&header(FrameType::SendPacket, KEY_LEN + MAX_PACKET_SIZE + 1)[..]);
        assert!(matches!(decode_one(&mut buf), Err(FrameError::TooLong { frame_type: 0x04, .. })));
        // Exactly 64 KiB of packet is fine.
        let ok = Frame::SendPacket { dst: key(1), packet: Bytes::from(vec![0u8; MAX_PACKET_SIZE]) };
        let mut buf = BytesMut::from(&ok.to_bytes()[..]);
        assert_eq!(decode_one(&mut buf).unwrap(), Some(Decoded::Frame(ok)));
        // ClientInfo over 256 KiB, an unknown type over 1 MiB, a NotePreferred of 2.
        for (t, len) in
            [(0x02u8, MAX_CLIENT_INFO_LEN + 1), (0x0b, MAX_FRAME_LEN + 1), (0x07, 2), (0xff, u32::MAX as usize)]
        {
            let mut head = [t, 0, 0, 0, 0];
            head[1..].copy_from_slice(&(len as u32).to_be_bytes());
            let mut buf = BytesMut::from(&head[..]);
            assert!(decode_one(&mut buf).is_err(), "type {t:#x} len {len}");
        }
    }

    #[test]
    fn truncated_input_waits_and_unknown_types_are_reported() {
        let full = Frame::Ping { data: *b"abcdefgh" }.to_bytes();
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(decode_one(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "a partial frame must not be consumed");
        }
        let mut buf = BytesMut::from(&[0x0c, 0, 0, 0, 3, 1, 2, 3][..]);
        assert_eq!(decode_one(&mut buf), Ok(Some(Decoded::Unknown { frame_type: 0x0c, len: 3 })));
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: xorshift bytes through the decoder.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..5_000 {
            let mut data = Vec::with_capacity(64);
            for _ in 0..(state % 64) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                data.push(state as u8);
            }
            // Keep the length small so most samples reach the payload parsers.
            if data.len() >= 5 {
                data[0] %= 0x18;
                data[1] = 0;
                data[2] = 0;
                data[3] = 0;
                data[4] %= 60;
            }
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = decode_one(&mut buf) {}
        }
    }

    #[test]
    fn disco_detection() {
        let mut packet = DISCO_MAGIC.to_vec();
        packet.resize(DISCO_MIN_LEN, 0);
        assert!(looks_like_disco(&packet));
        assert!(!looks_like_disco(&packet[..DISCO_MIN_LEN - 1]));
        packet[0] = b'X';
        assert!(!looks_like_disco(&packet));
    }
}

/// Properties: every frame we can encode decodes back to itself, from a buffer holding several
/// frames, and no strict prefix of a frame decodes to anything.
#[cfg(test)]
mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    fn key() -> impl Strategy<Value = NodePublic> {
        any::<[u8; 32]>().prop_map(NodePublic)
    }

    fn bytes(min: usize, max: usize) -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), min..max).prop_map(Bytes::from)
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            key().prop_map(|key| Frame::ServerKey { key }),
            (key(), bytes(NONCE_LEN, 200)).prop_map(|(key, sealed)| Frame::ClientInfo { key, sealed }),
            bytes(NONCE_LEN, 200).prop_map(|sealed| Frame::ServerInfo { sealed }),
            (key(), bytes(0, 300)).prop_map(|(dst, packet)| Frame::SendPacket { dst, packet }),
            (key(), bytes(0, 300)).prop_map(|(src, packet)| Frame::RecvPacket { src, packet }),
            Just(Frame::KeepAlive),
            any::<bool>().prop_map(|preferred| Frame::NotePreferred { preferred }),
            (key(), any::<u8>()).prop_map(|(key, r)| Frame::PeerGone { key, reason: PeerGoneReason::from_u8(r) }),
            (key(), any::<[u8; 16]>(), any::<u16>(), any::<u8>())
                .prop_map(|(key, ip, port, flags)| Frame::PeerPresent(PeerPresent { key, ip: ip.into(), port, flags })),
            (key(), key(), bytes(0, 300)).prop_map(|(src, dst, packet)| Frame::ForwardPacket { src, dst, packet }),
            Just(Frame::WatchConns),
            key().prop_map(|key| Frame::ClosePeer { key }),
            any::<[u8; PING_LEN]>().prop_map(|data| Frame::Ping { data }),
            any::<[u8; PING_LEN]>().prop_map(|data| Frame::Pong { data }),
            ".{0,40}".prop_map(|problem| Frame::Health { problem }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(reconnect_in_ms, try_for_ms)| Frame::Restarting { reconnect_in_ms, try_for_ms }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decoding_what_we_encode_gives_it_back(frames in vec(frame(), 1..6), cut in any::<Index>()) {
            let mut wire = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut wire);
            }
            let first_len = HEADER_LEN + frames[0].payload_len();
            let mut prefix = BytesMut::from(&wire[..cut.index(first_len)]);
            prop_assert_eq!(decode_one(&mut prefix), Ok(None));
            for frame in frames {
                prop_assert_eq!(decode_one(&mut wire), Ok(Some(Decoded::Frame(frame))));
            }
            prop_assert!(wire.is_empty());
        }
    }
}
