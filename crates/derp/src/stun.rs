//! The STUN binding server netcheck talks to: it answers a Tailscale binding request with the
//! address and port the request came from, and silently ignores everything else.
//!
//! Request, exactly as a Tailscale client sends it (40 bytes):
//!
//! ```text
//! 00 01 | 00 14 | 21 12 A4 42 | txid(12)                      header: binding request, len 20
//! 80 22 | 00 08 | "tailnode"                                   SOFTWARE
//! 80 28 | 00 04 | CRC-32(all preceding bytes) ^ 0x5354554E      FINGERPRINT, always last
//! ```
//!
//! Response (binding success):
//!
//! ```text
//! 01 01 | len (12 v4 / 24 v6) | 21 12 A4 42 | txid(12)
//! 00 20 | alen (8 v4 / 20 v6) | 00 | family (01 v4 / 02 v6) | port ^ 0x2112
//!       | addr ^ cookie (v4)  or  addr ^ (cookie ‖ txid) (v6)      XOR-MAPPED-ADDRESS
//! ```

use std::net::{IpAddr, SocketAddr};

use prometheus::{IntCounter, Registry};
use tokio::net::UdpSocket;

const HEADER_LEN: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const BINDING_SUCCESS: [u8; 2] = [0x01, 0x01];
const ATTR_SOFTWARE: u16 = 0x8022;
const ATTR_FINGERPRINT: u16 = 0x8028;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const SOFTWARE: &[u8] = b"tailnode";
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Largest response: header + attribute header + IPv6 address attribute.
pub const MAX_RESPONSE_LEN: usize = HEADER_LEN + 4 + 20;

/// A STUN transaction ID.
pub type TxId = [u8; 12];

/// Parses a Tailscale binding request; `None` for anything else (which must be ignored).
pub fn parse_binding_request(packet: &[u8]) -> Option<TxId> {
    if packet.len() < HEADER_LEN || packet[0] & 0xC0 != 0 || packet[4..8] != MAGIC_COOKIE {
        return None;
    }
    if packet[0..2] != BINDING_REQUEST {
        return None;
    }
    let body_len = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    if body_len != packet.len() - HEADER_LEN || !body_len.is_multiple_of(4) {
        return None;
    }
    let mut software_ok = false;
    let mut last_attr = None;
    let mut at = HEADER_LEN;
    while at < packet.len() {
        if last_attr == Some(ATTR_FINGERPRINT) {
            return None; // FINGERPRINT must be the last attribute
        }
        let attr_type = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
        let attr_len = u16::from_be_bytes([*packet.get(at + 2)?, *packet.get(at + 3)?]) as usize;
        let value = packet.get(at + 4..at + 4 + attr_len)?;
        match attr_type {
            ATTR_SOFTWARE => software_ok = value == SOFTWARE,
            ATTR_FINGERPRINT => {
                let expected = crc32(&packet[..at]) ^ FINGERPRINT_XOR;
                if value != expected.to_be_bytes() {
                    return None;
                }
            }
            _ => {}
        }
        last_attr = Some(attr_type);
        // Attribute values are padded to a multiple of 4.
        at += 4 + attr_len.div_ceil(4) * 4;
    }
    if !software_ok || last_attr != Some(ATTR_FINGERPRINT) || at != packet.len() {
        return None;
    }
    let mut txid = [0u8; 12];
    txid.copy_from_slice(&packet[8..20]);
    Some(txid)
}

/// Writes the binding success for `txid` reporting `addr` into `out`; returns its length.
pub fn binding_response(txid: &TxId, addr: SocketAddr, out: &mut [u8; MAX_RESPONSE_LEN]) -> usize {
    // A v4 client on a dual-stack socket shows up v4-mapped: report it as IPv4.
    let ip = addr.ip().to_canonical();
    let (family, addr_len) = match ip {
        IpAddr::V4(_) => (0x01u8, 4),
        IpAddr::V6(_) => (0x02u8, 16),
    };
    let attr_len = 4 + addr_len;
    out[0..2].copy_from_slice(&BINDING_SUCCESS);
    out[2..4].copy_from_slice(&((4 + attr_len) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE);
    out[8..20].copy_from_slice(txid);
    out[20..22].copy_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    out[22..24].copy_from_slice(&(attr_len as u16).to_be_bytes());
    out[24] = 0;
    out[25] = family;
    out[26..28].copy_from_slice(&(addr.port() ^ 0x2112).to_be_bytes());
    // The XOR key is the cookie followed by the transaction ID: bytes 4..20 of the header.
    let mut key = [0u8; 16];
    key.copy_from_slice(&out[4..20]);
    let octets = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    for (i, byte) in octets.iter().enumerate() {
        out[28 + i] = byte ^ key[i];
    }
    HEADER_LEN + 4 + attr_len
}

/// CRC-32/IEEE (reflected, poly 0xEDB88320), as STUN's FINGERPRINT uses.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// STUN counters.
#[derive(Clone)]
pub struct StunMetrics {
    pub answered: IntCounter,
    pub ignored: IntCounter,
}

impl StunMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let answered = IntCounter::new("tenscale_stun_answered_total", "STUN binding requests answered")?;
        let ignored =
            IntCounter::new("tenscale_stun_ignored_total", "UDP datagrams that were not a Tailscale binding request")?;
        registry.register(Box::new(answered.clone()))?;
        registry.register(Box::new(ignored.clone()))?;
        Ok(Self { answered, ignored })
    }
}

/// Answers binding requests on `socket` until receiving fails. Send errors (e.g. an ICMP
/// unreachable reported on the next call) are logged and do not stop the server.
pub async fn serve_stun(socket: UdpSocket, metrics: StunMetrics) -> std::io::Result<()> {
    let mut buf = [0u8; 1500];
    let mut out = [0u8; MAX_RESPONSE_LEN];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // Linux reports a previous send's ICMP error on the next receive; keep serving.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let Some(txid) = parse_binding_request(&buf[..n]) else {
            metrics.ignored.inc();
            continue;
        };
        let len = binding_response(&txid, from, &mut out);
        match socket.send_to(&out[..len], from).await {
            Ok(_) => metrics.answered.inc(),
            Err(e) => tracing::debug!(%from, error = %e, "stun reply failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const CAPTURE: &[u8] = include_bytes!("../../../tests/fixtures/stun_request.bin");

    /// An independent decoder, written from RFC 5389 rather than from the encoder above:
    /// walks the attributes and undoes the XOR field by field.
    fn decode_response(resp: &[u8]) -> (TxId, SocketAddr) {
        assert_eq!(&resp[0..2], &[0x01, 0x01], "binding success");
        assert_eq!(u16::from_be_bytes([resp[2], resp[3]]) as usize, resp.len() - 20);
        assert_eq!(&resp[4..8], &[0x21, 0x12, 0xA4, 0x42]);
        let txid: TxId = resp[8..20].try_into().unwrap();
        assert_eq!(u16::from_be_bytes([resp[20], resp[21]]), 0x0020);
        let value = &resp[24..24 + u16::from_be_bytes([resp[22], resp[23]]) as usize];
        let port = u16::from_be_bytes([value[2], value[3]]) ^ 0x2112;
        let ip = match value[1] {
            1 => {
                let raw = u32::from_be_bytes(value[4..8].try_into().unwrap()) ^ 0x2112_A442;
                IpAddr::V4(Ipv4Addr::from(raw))
            }
            2 => {
                let mut raw = [0u8; 16];
                raw[..4].copy_from_slice(&0x2112_A442u32.to_be_bytes());
                raw[4..].copy_from_slice(&txid);
                for (r, v) in raw.iter_mut().zip(&value[4..20]) {
                    *r ^= v;
                }
                IpAddr::V6(Ipv6Addr::from(raw))
            }
            f => panic!("family {f}"),
        };
        (txid, SocketAddr::new(ip, port))
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn parses_the_real_client_request() {
        assert_eq!(CAPTURE.len(), 40);
        let txid = parse_binding_request(CAPTURE).expect("the capture is a valid request");
        assert_eq!(&txid[..], &CAPTURE[8..20]);
    }

    #[test]
    fn answers_v4_and_v6_with_the_source_address() {
        let txid = parse_binding_request(CAPTURE).unwrap();
        let cases: [SocketAddr; 3] = [
            "203.0.113.7:41641".parse().unwrap(),
            "[2001:db8::1234:5678]:3478".parse().unwrap(),
            "[::ffff:192.0.2.1]:9".parse().unwrap(),
        ];
        for from in cases {
            let mut out = [0u8; MAX_RESPONSE_LEN];
            let len = binding_response(&txid, from, &mut out);
            let (got_txid, got_addr) = decode_response(&out[..len]);
            assert_eq!(got_txid, txid);
            let expected = SocketAddr::new(from.ip().to_canonical(), from.port());
            assert_eq!(got_addr, expected);
            assert_eq!(len, if expected.is_ipv4() { 32 } else { 44 });
        }
    }

    #[test]
    fn ignores_malformed_requests() {
        let mut bad: Vec<Vec<u8>> = Vec::new();
        for cut in 0..CAPTURE.len() {
            bad.push(CAPTURE[..cut].to_vec());
        }
        // Flip every single bit: the fingerprint (or a shape check) must catch each one.
        for byte in 0..CAPTURE.len() {
            for bit in 0..8 {
                let mut v = CAPTURE.to_vec();
                v[byte] ^= 1 << bit;
                bad.push(v);
            }
        }
        let mut extra = CAPTURE.to_vec();
        extra.extend_from_slice(&[0, 0, 0, 0]);
        bad.push(extra);
        for packet in &bad {
            assert_eq!(parse_binding_request(packet), None, "accepted {}", hex::encode(packet));
        }
    }

    #[test]
    fn fingerprint_is_checked_and_software_is_required() {
        // Re-sign a request with another SOFTWARE value: well-formed, but not Tailscale's.
        let mut v = CAPTURE.to_vec();
        v[24..32].copy_from_slice(b"notnode!");
        let fp = crc32(&v[..32]) ^ FINGERPRINT_XOR;
        v[36..40].copy_from_slice(&fp.to_be_bytes());
        assert_eq!(parse_binding_request(&v), None);
        // The same re-signing with the right SOFTWARE gives back the capture itself.
        v[24..32].copy_from_slice(b"tailnode");
        let fp = crc32(&v[..32]) ^ FINGERPRINT_XOR;
        v[36..40].copy_from_slice(&fp.to_be_bytes());
        assert_eq!(v, CAPTURE);
    }

    /// A request as a Tailscale client builds it (the layout in the module doc).
    fn client_request(txid: &TxId) -> Vec<u8> {
        let mut v = vec![0x00, 0x01, 0x00, 0x14, 0x21, 0x12, 0xA4, 0x42];
        v.extend_from_slice(txid);
        v.extend_from_slice(&[0x80, 0x22, 0x00, 0x08]);
        v.extend_from_slice(b"tailnode");
        let fp = crc32(&v) ^ FINGERPRINT_XOR;
        v.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
        v.extend_from_slice(&fp.to_be_bytes());
        v
    }

    #[test]
    fn the_capture_is_what_a_client_builds() {
        let txid: TxId = CAPTURE[8..20].try_into().unwrap();
        assert_eq!(client_request(&txid), CAPTURE);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn every_client_request_parses_to_its_transaction_id(txid in proptest::prelude::any::<TxId>()) {
            proptest::prop_assert_eq!(parse_binding_request(&client_request(&txid)), Some(txid));
        }

        #[test]
        fn every_answer_decodes_to_its_transaction_id_and_address(
            txid in proptest::prelude::any::<TxId>(),
            from in proptest::prelude::any::<SocketAddr>(),
        ) {
            let mut out = [0u8; MAX_RESPONSE_LEN];
            let len = binding_response(&txid, from, &mut out);
            let expected = SocketAddr::new(from.ip().to_canonical(), from.port());
            proptest::prop_assert_eq!(decode_response(&out[..len]), (txid, expected));
        }
    }

    #[tokio::test]
    async fn serves_over_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let metrics = StunMetrics::register(&Registry::new()).unwrap();
        let task = tokio::spawn(serve_stun(server, metrics.clone()));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"garbage", addr).await.unwrap();
        client.send_to(CAPTURE, addr).await.unwrap();
        let mut buf = [0u8; 128];
        let (n, _) =
            tokio::time::timeout(std::time::Duration::from_secs(2), client.recv_from(&mut buf)).await.unwrap().unwrap();
        let (txid, mapped) = decode_response(&buf[..n]);
        assert_eq!(&txid[..], &CAPTURE[8..20]);
        assert_eq!(mapped, client.local_addr().unwrap());
        assert_eq!(metrics.ignored.get(), 1);
        assert_eq!(metrics.answered.get(), 1);
        task.abort();
    }
}
