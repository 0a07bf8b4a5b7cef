//! STUN binding requests as the UDP server receives them (`derp::stun`). Anything but a
//! well-formed Tailscale binding request must be ignored; a request that is accepted must be
//! one (header, length, SOFTWARE "tailnode", a FINGERPRINT that matches, last), and the
//! transaction ID it yields must be the one in the header. The answer built for it, for an
//! IPv4 and an IPv6 peer, must decode back to that transaction ID and peer address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tenscale::derp::stun::{binding_response, crc32, parse_binding_request, MAX_RESPONSE_LEN};

const COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// One input: what the module doc says must hold for it.
pub fn check(data: &[u8]) {
    let Some(txid) = parse_binding_request(data) else {
        return;
    };
    assert_eq!(&data[0..2], &[0x00, 0x01], "not a binding request");
    assert_eq!(&data[4..8], &COOKIE);
    assert_eq!(usize::from(u16::from_be_bytes([data[2], data[3]])), data.len() - 20);
    assert_eq!(&txid[..], &data[8..20]);
    let n = data.len();
    assert!(n >= 28, "no room for a FINGERPRINT");
    assert_eq!(&data[n - 8..n - 4], &[0x80, 0x28, 0x00, 0x04], "FINGERPRINT is not last");
    assert_eq!(data[n - 4..], (crc32(&data[..n - 8]) ^ 0x5354_554E).to_be_bytes());

    // Ports come from the input, so the fuzzer reaches the edges (0, 0x2112, 0xFFFF).
    let port = u16::from_be_bytes([data[n - 2], data[n - 1]]);
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(data[8], data[9], data[10], data[11])), port);
    let mut v6_octets = [0u8; 16];
    v6_octets[..12].copy_from_slice(&txid);
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(v6_octets)), port);
    for addr in [v4, v6] {
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let len = binding_response(&txid, addr, &mut out);
        // A v4-mapped IPv6 peer is reported as the IPv4 address it is.
        let expected = SocketAddr::new(addr.ip().to_canonical(), port);
        assert_eq!(decode_response(&out[..len]), (txid, expected));
    }
}

/// Reads a binding success with one XOR-MAPPED-ADDRESS, as a client does.
fn decode_response(packet: &[u8]) -> ([u8; 12], SocketAddr) {
    assert_eq!(&packet[0..2], &[0x01, 0x01]);
    assert_eq!(usize::from(u16::from_be_bytes([packet[2], packet[3]])), packet.len() - 20);
    assert_eq!(&packet[4..8], &COOKIE);
    let mut txid = [0u8; 12];
    txid.copy_from_slice(&packet[8..20]);
    assert_eq!(&packet[20..22], &[0x00, 0x20]);
    let alen = usize::from(u16::from_be_bytes([packet[22], packet[23]]));
    assert_eq!(alen, packet.len() - 24);
    let port = u16::from_be_bytes([packet[26], packet[27]]) ^ 0x2112;
    let key = &packet[4..20];
    let addr: Vec<u8> = packet[28..].iter().zip(key).map(|(b, k)| b ^ k).collect();
    let ip = match packet[25] {
        1 => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        2 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&addr[..]).expect("16 bytes"))),
        family => panic!("family {family}"),
    };
    (txid, SocketAddr::new(ip, port))
}
