//! Tailnet addresses. Every node of a namespace has an index; its IPv4 is
//! `100.64.0.0 + index` inside 100.64.0.0/10 and its IPv6 `fd7a:115c:a1e0:: + index` inside
//! fd7a:115c:a1e0::/48. Namespaces are separate tailnets, so the same address can exist in
//! two namespaces; inside one, an index is handed out once.

use std::net::{Ipv4Addr, Ipv6Addr};

const V4_BASE: u32 = u32::from_be_bytes([100, 64, 0, 0]);
const V6_BASE: u128 = 0xfd7a_115c_a1e0_0000_0000_0000_0000_0000;
/// 100.64.0.0/10 holds 2^22 addresses; the last is the broadcast address.
pub const MAX_INDEX: i64 = (1 << 22) - 2;

/// The two addresses of index `index` (1 ..= MAX_INDEX).
pub fn from_index(index: i64) -> (Ipv4Addr, Ipv6Addr) {
    let i = index.clamp(0, MAX_INDEX) as u32;
    (Ipv4Addr::from(V4_BASE + i), Ipv6Addr::from(V6_BASE + i as u128))
}

/// Indexes whose IPv4 address Tailscale clients use for themselves: 100.100.100.0/24
/// (MagicDNS at 100.100.100.100 and other services) and 100.115.92.0/23 (ChromeOS).
pub fn is_reserved_index(index: i64) -> bool {
    let ip = from_index(index).0.octets();
    matches!(ip, [100, 100, 100, _]) || matches!(ip, [100, 115, 92 | 93, _])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_addresses() {
        assert_eq!(from_index(1), ("100.64.0.1".parse().unwrap(), "fd7a:115c:a1e0::1".parse().unwrap()));
        assert_eq!(from_index(256).0, "100.64.1.0".parse::<Ipv4Addr>().unwrap());
        assert_eq!(from_index(MAX_INDEX).0, "100.127.255.254".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn quad100_is_reserved() {
        let quad100 = (u32::from(Ipv4Addr::new(100, 100, 100, 100)) - V4_BASE) as i64;
        assert!(is_reserved_index(quad100));
        assert!(!is_reserved_index(1));
    }
}
