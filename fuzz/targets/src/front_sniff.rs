//! The front's request-head sniffer (`front::read_first`), which sees the first bytes
//! of every TCP connection. The first byte sets the read sizes the rest arrives in (a head must
//! be classified the same however TCP splits it) and the head size cap. Checks: it never
//! panics; below the cap, the answer is the same for one read and for many; `Http` hands on exactly the bytes
//! read, and a takeover's `rest` is exactly what followed the head; a takeover is only ever
//! `/ts2021` (control) or `/derp` (DERP) with a matching `Upgrade` token.

use crate::harness::{run, split_selector, Pieces};
use tenscale::front::{read_first, First, UpgradeKind};

/// One input: what the module doc says must hold for it.
pub fn check(data: &[u8]) {
    let (selector, rest) = split_selector(data);
    let max_head = 64 + usize::from(selector >> 4) * 512;
    let sizes = [selector & 0x0F, selector.rotate_left(3) & 0x1F];
    run(async move {
        let mut whole = Pieces::new(rest, &[]);
        let at_once = read_first(&mut whole, max_head).await;
        let mut split = Pieces::new(rest, &sizes);
        let in_pieces = read_first(&mut split, max_head).await;
        let read = rest.len() - split.remaining();
        match &in_pieces {
            Ok(First::Http { read: bytes }) => assert_eq!(&bytes[..], &rest[..read]),
            Ok(First::Takeover { kind, head, rest: after }) => {
                assert!(rest[..read].ends_with(after), "`rest` is not what followed the head");
                let path = match kind {
                    UpgradeKind::Control => "/ts2021",
                    UpgradeKind::Derp => "/derp",
                };
                assert_eq!(head.path, path);
                let token = match kind {
                    UpgradeKind::Control => "tailscale-control-protocol",
                    UpgradeKind::Derp => "derp",
                };
                let upgrades = head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("upgrade"));
                assert!(
                    upgrades.flat_map(|(_, v)| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token)),
                    "a takeover without its Upgrade token: {head:?}"
                );
            }
            Err(_) => {}
        }
        // The same classification whatever the reads were (only the bytes read may differ), as
        // long as the cap is not reached: past it, how far a read overshot may decide between
        // "too large" and a head httparse refuses (which goes to actix as a 400); both refuse.
        if rest.len() >= max_head {
            return;
        }
        match (&at_once, &in_pieces) {
            (Ok(First::Takeover { kind: a, head: h, .. }), Ok(First::Takeover { kind: b, head: g, .. })) => {
                assert_eq!(a, b);
                assert_eq!((&h.method, &h.path, &h.query, &h.headers), (&g.method, &g.path, &g.query, &g.headers));
            }
            (Ok(First::Http { .. }), Ok(First::Http { .. })) => {}
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind()),
            (a, b) => panic!("one read gave {a:?}, several {b:?}"),
        }
    });
}
