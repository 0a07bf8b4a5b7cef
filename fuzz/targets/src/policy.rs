//! HuJSON and the policy compiler (`policy::{hujson, model, compile}`), from the text an
//! operator PUTs to the API. The input is the policy text (not UTF-8: skipped, the API refuses
//! it before). Checks:
//! - parsing never panics, and a text that is a JSON object after HuJSON (so a policy, if
//!   anything) is either accepted or refused WITH a position, inside the text;
//! - an accepted policy compiles for a fixed namespace of five nodes (users, tags, one of each
//!   address family), and the result keeps the compiler's invariants: every node is in it,
//!   no node is its own peer, visibility is symmetric; the wire JSON of each node's filter and
//!   SSH policy serializes;
//! - its `tests` pass or fail with a position too.

use std::net::IpAddr;

use tenscale::domain::NodeId;
use tenscale::policy::compile::filter_allows;
use tenscale::policy::{compile_namespace, diff, hujson, validate_namespace, Policy, PolicyError, PolicyNode};

/// One input: what the module doc says must hold for it.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match Policy::parse(text) {
        Ok(policy) => policy,
        Err(err) => {
            let is_object = hujson::to_json(text).is_ok_and(|json| json.trim_start().starts_with('{'));
            if is_object {
                assert_within(text, &err);
            }
            return;
        }
    };
    let nodes = nodes();
    let compiled = compile_namespace(Some(&policy), &nodes);
    assert_eq!(compiled.nodes.len(), nodes.len());
    for (id, node) in &compiled.nodes {
        assert!(!node.peers.contains(id), "{id:?} is its own peer");
        for peer in &node.peers {
            assert!(compiled.nodes[peer].peers.contains(id), "{id:?} sees {peer:?}, not the other way round");
        }
        serde_json::to_vec(&node.filter).expect("a filter serializes");
        serde_json::to_vec(&node.ssh).expect("an SSH policy serializes");
        for from in &nodes {
            let _ = filter_allows(&node.filter, from.addresses[0], nodes[0].addresses[0], 6, 22);
        }
    }
    assert!(diff(&compiled, &compiled).is_empty(), "a compilation differs from itself");
    if let Err(err) = validate_namespace(&policy, &nodes) {
        assert_within(text, &err);
    }
}

/// A refusal must say where, and the place must be in the text.
fn assert_within(text: &str, err: &PolicyError) {
    let Some(position) = err.position else {
        panic!("refused without a position: {err}");
    };
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(position.line >= 1 && position.line <= lines.len(), "{err}: past the last line ({})", lines.len());
    let line = lines[position.line - 1];
    assert!(position.column >= 1 && position.column <= line.len() + 1, "{err}: past the end of its line {line:?}");
}

/// Two users' nodes, two tagged nodes, one node with a single IPv6 address.
fn nodes() -> Vec<PolicyNode> {
    let node = |id: i64, tags: &[&str], user: Option<&str>, addresses: &[&str]| PolicyNode {
        id: NodeId::new(id),
        addresses: addresses.iter().map(|a| a.parse::<IpAddr>().expect("an address")).collect(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        user: user.map(str::to_owned),
    };
    vec![
        node(1, &[], Some("alice@example.com"), &["100.64.0.1", "fd7a:115c:a1e0::1"]),
        node(2, &[], Some("bob@example.com"), &["100.64.0.2", "fd7a:115c:a1e0::2"]),
        node(3, &["tag:server"], None, &["100.64.0.3", "fd7a:115c:a1e0::3"]),
        node(4, &["tag:db", "tag:server"], None, &["100.64.0.4"]),
        node(5, &[], Some("alice@example.com"), &["fd7a:115c:a1e0::5"]),
    ]
}
