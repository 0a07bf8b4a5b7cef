//! Table tests for the policy plane: parse → validate → compile → wire JSON, per feature.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::compile::filter_allows;
use super::*;
use tenscale_base::domain::{NodeId, Tag};

/// Node `id` at 100.64.0.<id> and fd7a:115c:a1e0::<id>.
fn node(id: i64, tags: &[&str], user: Option<&str>) -> PolicyNode {
    PolicyNode {
        id: NodeId::new(id),
        addresses: vec![v4(id), v6(id)],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        user: user.map(str::to_owned),
    }
}

fn v4(id: i64) -> IpAddr {
    format!("100.64.0.{id}").parse().unwrap()
}

fn v6(id: i64) -> IpAddr {
    format!("fd7a:115c:a1e0::{id:x}").parse().unwrap()
}

fn compile(text: &str, nodes: &[PolicyNode]) -> CompiledNamespace {
    let policy = Policy::parse(text).unwrap_or_else(|e| panic!("policy refused: {e}"));
    compile_namespace(Some(&policy), nodes)
}

fn filter(c: &CompiledNamespace, id: i64) -> Value {
    serde_json::to_value(&c.nodes[&NodeId::new(id)].filter).unwrap()
}

fn ssh(c: &CompiledNamespace, id: i64) -> Value {
    serde_json::to_value(&c.nodes[&NodeId::new(id)].ssh).unwrap()
}

/// Whether node `from` gets through node `to`'s filter (v4) on `proto`/`port`.
fn reaches(c: &CompiledNamespace, from: i64, to: i64, proto: u8, port: u16) -> bool {
    filter_allows(&c.nodes[&NodeId::new(to)].filter, v4(from), v4(to), proto, port)
}

fn peers(c: &CompiledNamespace, id: i64) -> Vec<i64> {
    c.nodes[&NodeId::new(id)].peers.iter().map(|p| p.get()).collect()
}

/// The nodes whose view changed, by number.
fn changed(old: &CompiledNamespace, new: &CompiledNamespace) -> Vec<i64> {
    diff(old, new).iter().map(|id| id.get()).collect()
}

fn error(text: &str) -> String {
    Policy::parse(text).map(|_| ()).unwrap_err().to_string()
}

const RANGES: [&str; 2] = ["100.64.0.0/10", "fd7a:115c:a1e0::/48"];

fn all_ports(ip: &str) -> Value {
    json!({"IP": ip, "Ports": {"First": 0, "Last": 65535}})
}

// --- allow-all and deny-all -----------------------------------------------------------------

#[test]
fn no_policy_allows_all_inside_the_namespace() {
    let nodes = [node(1, &[], Some("alice@acme")), node(2, &["tag:a"], None), node(3, &[], Some("alice@acme"))];
    let c = compile_namespace(None, &nodes);
    assert_eq!(
        filter(&c, 2),
        json!([{"SrcIPs": RANGES, "DstPorts": [all_ports("100.64.0.2"), all_ports("fd7a:115c:a1e0::2")]}])
    );
    assert_eq!(peers(&c, 1), [2, 3]);
    assert_eq!(peers(&c, 2), [1, 3]);
    assert!(c.nodes[&NodeId::new(1)].ssh.is_none());
    for (from, to) in [(1, 2), (2, 3), (3, 1)] {
        assert!(reaches(&c, from, to, 1, 0), "icmp {from}->{to}");
        assert!(reaches(&c, from, to, 17, 53), "udp {from}->{to}");
    }
    // Outside the namespace's ranges nothing is accepted, not even by the allow-all filter.
    assert!(!filter_allows(&c.nodes[&NodeId::new(1)].filter, "8.8.8.8".parse().unwrap(), v4(1), 6, 80));
}

#[test]
fn missing_acls_is_allow_all_and_empty_acls_is_deny_all() {
    let nodes = [node(1, &[], Some("a@o")), node(2, &[], Some("a@o"))];
    let c = compile(r#"{"groups": {}}"#, &nodes);
    assert!(reaches(&c, 1, 2, 6, 22));
    assert_eq!(peers(&c, 1), [2]);

    let c = compile(r#"{"acls": []}"#, &nodes);
    assert_eq!(filter(&c, 1), json!([]), "empty filter: drop all inbound (sent as [], not null)");
    assert!(peers(&c, 1).is_empty());
}

#[test]
fn wildcard_source_is_the_tailscale_ranges_never_everything() {
    let nodes = [node(1, &[], Some("a@o")), node(2, &["tag:srv"], None)];
    let c = compile(
        r#"{"tagOwners": {"tag:srv": []}, "acls": [{"action": "accept", "src": ["*"], "dst": ["tag:srv:22"]}]}"#,
        &nodes,
    );
    let text = serde_json::to_string(&c.nodes[&NodeId::new(2)].filter).unwrap();
    assert!(!text.contains("0.0.0.0/0") && !text.contains("::/0") && !text.contains("\"*\""), "{text}");
    assert_eq!(filter(&c, 2)[0]["SrcIPs"], json!(RANGES));
}

// --- the brief's browser/cli case -------------------------------------------------------------

#[test]
fn browser_to_cli_is_one_way() {
    let policy = r#"{
        "tagOwners": {"tag:browser": [], "tag:cli": []},
        "acls": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli:*"]}],
    }"#;
    let nodes = [node(1, &["tag:browser"], None), node(2, &["tag:cli"], None)];
    let c = compile(policy, &nodes);
    assert_eq!(filter(&c, 1), json!([]), "browser accepts nothing, in particular not from cli");
    assert_eq!(
        filter(&c, 2),
        json!([{"SrcIPs": ["100.64.0.1", "fd7a:115c:a1e0::1"],
                "DstPorts": [all_ports("100.64.0.2"), all_ports("fd7a:115c:a1e0::2")]}])
    );
    assert!(reaches(&c, 1, 2, 6, 443));
    assert!(!reaches(&c, 2, 1, 6, 443));
    assert_eq!((peers(&c, 1), peers(&c, 2)), (vec![2], vec![1]), "visibility is both ways");
}

// --- aliases ------------------------------------------------------------------------------------

#[test]
fn users_and_groups() {
    let nodes = [
        node(1, &[], Some("alice@acme")),
        node(2, &[], Some("bob@acme")),
        node(3, &[], Some("carol@other")),
        node(4, &["tag:x"], Some("alice@acme")),
    ];
    let policy = r#"{
        "groups": {"group:eng": ["alice@", "carol@other"]},
        "tagOwners": {"tag:x": []},
        "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["bob@acme:22"]}]
    }"#;
    let c = compile(policy, &nodes);
    assert!(reaches(&c, 1, 2, 6, 22));
    assert!(reaches(&c, 3, 2, 6, 22));
    assert!(!reaches(&c, 4, 2, 6, 22), "a tagged node is not its user's");
    assert!(!reaches(&c, 1, 2, 6, 23));
    assert_eq!(peers(&c, 2), [1, 3]);
    assert!(peers(&c, 4).is_empty());
}

#[test]
fn hosts_and_prefixes() {
    let nodes = [node(1, &[], Some("a@o")), node(2, &[], Some("a@o")), node(3, &[], Some("a@o"))];
    let policy = r#"{
        "hosts": {"db": "100.64.0.3", "office": "10.1.0.0/16"},
        "acls": [
            {"action": "accept", "src": ["office", "100.64.0.1"], "dst": ["db:5432"]},
            {"action": "accept", "src": ["100.64.0.0/30"], "dst": ["[fd7a:115c:a1e0::2]:80"]}
        ]
    }"#;
    let c = compile(policy, &nodes);
    // A single node address stands for the whole node: v4 and v6 on both sides.
    assert_eq!(
        filter(&c, 3),
        json!([{"SrcIPs": ["10.1.0.0/16", "100.64.0.1", "fd7a:115c:a1e0::1"],
                "DstPorts": [{"IP": "100.64.0.3", "Ports": {"First": 5432, "Last": 5432}},
                             {"IP": "fd7a:115c:a1e0::3", "Ports": {"First": 5432, "Last": 5432}}]}])
    );
    assert_eq!(
        filter(&c, 2),
        json!([{"SrcIPs": ["100.64.0.0/30"],
                "DstPorts": [{"IP": "100.64.0.2", "Ports": {"First": 80, "Last": 80}},
                             {"IP": "fd7a:115c:a1e0::2", "Ports": {"First": 80, "Last": 80}}]}])
    );
    assert_eq!(peers(&c, 2), [1, 3], "nodes inside a source prefix see the destination");
}

#[test]
fn destination_prefix_is_trimmed_to_the_node_addresses_inside_it() {
    let nodes = [node(1, &[], Some("a@o")), node(2, &[], Some("a@o"))];
    let c = compile(r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["100.64.0.0/10:22"]}]}"#, &nodes);
    assert_eq!(filter(&c, 2)[0]["DstPorts"], json!([{"IP": "100.64.0.2", "Ports": {"First": 22, "Last": 22}}]));
}

#[test]
fn autogroups_member_tagged() {
    let nodes = [node(1, &[], Some("a@o")), node(2, &["tag:t"], None), node(3, &["tag:u"], None)];
    let policy = r#"{
        "tagOwners": {"tag:t": [], "tag:u": []},
        "acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:tagged:80"]}]
    }"#;
    let c = compile(policy, &nodes);
    assert!(reaches(&c, 1, 2, 6, 80) && reaches(&c, 1, 3, 6, 80));
    assert!(!reaches(&c, 2, 3, 6, 80) && !reaches(&c, 2, 1, 6, 80));
    assert_eq!(filter(&c, 1), json!([]));
    assert_eq!((peers(&c, 1), peers(&c, 2)), (vec![2, 3], vec![1]));
}

#[test]
fn autogroup_self_is_per_user_like_tailscale() {
    // Same shape as a Tailscale SaaS capture (headscale testdata acl-a04): src "*", dst
    // autogroup:self:* gives each untagged node its own user's addresses, tagged nodes nothing.
    let nodes = [
        node(1, &[], Some("alice@acme")),
        node(2, &[], Some("alice@acme")),
        node(3, &[], Some("bob@acme")),
        node(4, &["tag:t"], None),
    ];
    let policy = r#"{"tagOwners": {"tag:t": []},
                     "acls": [{"action": "accept", "src": ["*"], "dst": ["autogroup:self:*"]}]}"#;
    let c = compile(policy, &nodes);
    assert_eq!(
        filter(&c, 3),
        json!([{"SrcIPs": ["100.64.0.3", "fd7a:115c:a1e0::3"],
                "DstPorts": [all_ports("100.64.0.3"), all_ports("fd7a:115c:a1e0::3")]}])
    );
    assert_eq!(
        filter(&c, 1)[0]["SrcIPs"],
        json!(["100.64.0.1", "100.64.0.2", "fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2"])
    );
    assert_eq!(filter(&c, 4), json!([]));
    assert!(reaches(&c, 2, 1, 6, 1) && !reaches(&c, 3, 1, 6, 1) && !reaches(&c, 4, 1, 6, 1));
    assert_eq!((peers(&c, 1), peers(&c, 3), peers(&c, 4)), (vec![2], vec![], vec![]));
}

// --- ports and protocols ----------------------------------------------------------------------

#[test]
fn port_forms() {
    let nodes = [node(1, &[], Some("a@o")), node(2, &[], Some("a@o"))];
    let c = compile(
        r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["100.64.0.2:22", "100.64.0.2:80,443,1000-2000", "100.64.0.1:*"]}]}"#,
        &nodes,
    );
    let ports: Vec<(u64, u64)> = filter(&c, 2)[0]["DstPorts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["IP"] == "100.64.0.2")
        .map(|d| (d["Ports"]["First"].as_u64().unwrap(), d["Ports"]["Last"].as_u64().unwrap()))
        .collect();
    assert_eq!(ports, [(22, 22), (80, 80), (443, 443), (1000, 2000)]);
    assert_eq!(filter(&c, 1)[0]["DstPorts"][0], all_ports("100.64.0.1"));
}

#[test]
fn protocols() {
    let nodes = [node(1, &[], Some("a@o")), node(2, &[], Some("a@o"))];
    let rule = |proto: &str, port: &str| {
        let text = format!(
            r#"{{"acls": [{{"action": "accept", "proto": "{proto}", "src": ["*"], "dst": ["100.64.0.2:{port}"]}}]}}"#
        );
        filter(&compile(&text, &nodes), 2)[0]["IPProto"].clone()
    };
    assert_eq!(rule("tcp", "22"), json!([6]));
    assert_eq!(rule("UDP", "53"), json!([17]));
    assert_eq!(rule("icmp", "*"), json!([1, 58]));
    assert_eq!(rule("sctp", "9"), json!([132]));
    assert_eq!(rule("gre", "*"), json!([47]));
    assert_eq!(rule("47", "*"), json!([47]));
    // No proto: no IPProto key, which the client reads as TCP+UDP+ICMP (ping works).
    let c = compile(r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["100.64.0.2:*"]}]}"#, &nodes);
    assert!(filter(&c, 2)[0].get("IPProto").is_none());
    assert!(reaches(&c, 1, 2, 1, 0) && reaches(&c, 1, 2, 17, 53) && !reaches(&c, 1, 2, 47, 0));
}

// --- ssh ------------------------------------------------------------------------------------------

const SSH_POLICY: &str = r#"{
    "groups": {"group:ops": ["alice@acme"]},
    "tagOwners": {"tag:srv": []},
    "ssh": [
        {"action": "accept", "src": ["group:ops"], "dst": ["tag:srv"], "users": ["root", "deploy"]},
        {"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"],
         "users": ["autogroup:nonroot"], "checkPeriod": "1h30m"},
        {"action": "check", "src": ["alice@acme"], "dst": ["alice@acme"], "users": ["root"]}
    ]
}"#;

fn accept_action(session: Option<i64>) -> Value {
    let mut a = json!({"accept": true, "allowAgentForwarding": true,
                       "allowLocalPortForwarding": true, "allowRemotePortForwarding": true});
    if let Some(ns) = session {
        a["sessionDuration"] = json!(ns);
    }
    a
}

#[test]
fn ssh_rules_compile_per_destination() {
    let nodes = [node(1, &[], Some("alice@acme")), node(2, &[], Some("alice@acme")), node(3, &["tag:srv"], None)];
    let c = compile(SSH_POLICY, &nodes);
    assert_eq!(
        ssh(&c, 3),
        json!({"rules": [{"principals": [{"nodeIP": "100.64.0.1"}, {"nodeIP": "100.64.0.2"},
                                        {"nodeIP": "fd7a:115c:a1e0::1"}, {"nodeIP": "fd7a:115c:a1e0::2"}],
                          "sshUsers": {"deploy": "deploy", "root": "root"},
                          "action": accept_action(None)}]})
    );
    let rules = ssh(&c, 1)["rules"].clone();
    assert_eq!(rules.as_array().unwrap().len(), 2, "{rules}");
    assert_eq!(rules[0]["sshUsers"], json!({"*": "=", "root": ""}));
    assert_eq!(rules[0]["action"], accept_action(Some(5_400_000_000_000)), "1h30m in ns");
    assert_eq!(rules[1]["sshUsers"], json!({"root": "root"}));
    assert_eq!(rules[1]["action"], accept_action(Some(12 * 3_600_000_000_000)), "default 12h");
}

#[test]
fn no_ssh_section_means_no_ssh_policy() {
    let c = compile(r#"{"acls": []}"#, &[node(1, &[], Some("a@o"))]);
    assert_eq!(ssh(&c, 1), Value::Null);
}

#[test]
fn ssh_refuses_tailscale_forbidden_pairs() {
    let base = |src: &str, dst: &str| {
        format!(
            r#"{{"tagOwners": {{"tag:t": []}}, "ssh": [{{"action": "accept", "src": [{src}], "dst": [{dst}], "users": ["root"]}}]}}"#
        )
    };
    assert!(error(&base(r#""tag:t""#, r#""autogroup:self""#)).contains("tagged sources cannot ssh"));
    assert!(error(&base(r#""tag:t""#, r#""a@o""#)).contains("tagged sources cannot ssh"));
    assert!(error(&base(r#""b@o""#, r#""a@o""#)).contains("only allowed from that same user"));
    assert!(error(&base(r#""a@o""#, r#""*""#)).contains("\"*\" is not allowed here"));
    assert!(Policy::parse(&base(r#""tag:t""#, r#""tag:t""#)).is_ok());
}

// --- tests section ---------------------------------------------------------------------------------

const TESTED: &str = r#"{
    "tagOwners": {"tag:web": [], "tag:db": []},
    "acls": [{"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"]}],
    "tests": [
        {"src": "tag:web", "accept": ["tag:db:5432"], "deny": ["tag:db:22"]},
        {"src": "tag:db", "deny": ["tag:web:80"]}
    ]
}"#;

#[test]
fn tests_section_passes() {
    let nodes = [node(1, &["tag:web"], None), node(2, &["tag:db"], None)];
    let policy = Policy::parse(TESTED).unwrap();
    assert!(validate_namespace(&policy, &nodes).is_ok());
}

#[test]
fn tests_section_fails_naming_the_test() {
    let text = TESTED.replace(r#""deny": ["tag:web:80"]"#, r#""accept": ["tag:web:80"]"#);
    let nodes = [node(1, &["tag:web"], None), node(2, &["tag:db"], None)];
    let err = validate_namespace(&Policy::parse(&text).unwrap(), &nodes).unwrap_err().to_string();
    assert_eq!(
        err,
        "line 6, column 9: test 1 (src \"tag:db\"): \"tag:web:80\" should be accepted, but 100.64.0.2 -> 100.64.0.1 port 80 is not"
    );
    let text = TESTED.replace(r#""deny": ["tag:db:22"]"#, r#""deny": ["tag:db:5432"]"#);
    let err = validate_namespace(&Policy::parse(&text).unwrap(), &nodes).unwrap_err().to_string();
    assert!(err.starts_with("line 5, column 9: test 0 (src \"tag:web\"): \"tag:db:5432\" should be denied"), "{err}");
}

// --- keys and tagOwners ---------------------------------------------------------------------------

#[test]
fn key_tags_must_be_declared() {
    let policy = Policy::parse(r#"{"tagOwners": {"tag:ci": ["group:x"]}, "groups": {"group:x": []}}"#).unwrap();
    let tags =
        |names: &[&str]| tenscale_base::domain::Tags::new(names.iter().map(|t| Tag::parse(t).unwrap()).collect());
    assert!(validate_tags_for_key(Some(&policy), &tags(&["tag:ci"])).is_ok());
    assert_eq!(
        validate_tags_for_key(Some(&policy), &tags(&["tag:ci", "tag:prod"])).unwrap_err().to_string(),
        "tag \"tag:prod\" is not declared in tagOwners"
    );
    assert!(validate_tags_for_key(None, &tags(&["tag:anything"])).is_ok());
    // Malformed tags never reach the check: the one tag type refuses them.
    assert!(Tag::parse("tag:Bad").is_err());
    assert!(Tag::parse("prod").is_err());
}

#[test]
fn policy_tags_are_the_domain_tags_with_the_policy_wording() {
    let long = format!("tag:{}", "a".repeat(64));
    let err = Policy::parse(&format!(r#"{{"tagOwners": {{"{long}": []}}}}"#)).unwrap_err().to_string();
    assert!(err.contains("a tag name has at most 63 characters"), "{err}");
    let err = Policy::parse(r#"{"tagOwners": {"web": []}}"#).unwrap_err().to_string();
    assert_eq!(err, "line 1, column 16: \"web\" is not a tag (tag:name)");
}

// --- errors with positions ---------------------------------------------------------------------------

/// Found by the `policy` fuzz target: serde_json puts an error right after a newline at
/// column 0 of the next line, which we passed on as "column 0" (columns are 1-based). A raw
/// newline inside a string is refused at that newline, the end of the line it ends.
#[test]
fn an_error_at_a_newline_points_at_the_newline() {
    let text = "{\"acls\": [\"a\nb\"]}";
    let err = Policy::parse(text).unwrap_err();
    assert_eq!(err.position, Some(Position { line: 1, column: 13 }), "{err}");
    assert!(err.message.starts_with("control character"), "{err}");
    let err = Policy::parse("{\n  \"acls\": [\"\n\"]}").unwrap_err();
    assert_eq!(err.position, Some(Position { line: 2, column: 13 }), "{err}");
}

#[test]
fn errors_name_the_problem_and_its_place() {
    let cases: &[(&str, &str)] = &[
        (
            "{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"group:nope\"], \"dst\": [\"*:*\"]}\n  ]\n}",
            "line 3, column 34: unknown group \"group:nope\"",
        ),
        (
            "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"],\n  \"dst\": [\"*:*\", \"tag:ghost:22\"]}]}",
            "line 2, column 18: tag \"tag:ghost\" is not declared in tagOwners",
        ),
        (
            "{\"acls\": [{\"action\": \"accept\", \"src\": [\"nas\"], \"dst\": [\"*:*\"]}]}",
            "line 1, column 40: unknown host \"nas\"",
        ),
        (
            "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:70000\"]}]}",
            "line 1, column 54: bad port \"70000\" (0-65535) in \"*:70000\"",
        ),
        (
            "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:20-10\"]}]}",
            "line 1, column 54: bad port range \"20-10\": first port is after last in \"*:20-10\"",
        ),
        (
            "{\n// comment\n\"acls\": [{\"action\": \"accept\", \"proto\": \"tcpp\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}",
            "line 3, column 40: unknown proto \"tcpp\" (tcp, udp, icmp, sctp, ... or a number 1-255)",
        ),
        (
            "{\"acls\": [{\"action\": \"accept\", \"proto\": \"icmp\", \"src\": [\"*\"], \"dst\": [\"*:22\"]}]}",
            "line 1, column 71: proto [1, 58] has no ports; its destinations need \":*\"",
        ),
        (
            "{\"acls\": [{\"action\": \"deny\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}",
            "line 1, column 22: bad action \"deny\": ACLs only \"accept\"",
        ),
        (
            "{\n  \"grants\": []\n}",
            "line 2, column 3: unknown field `grants`, expected one of `groups`, `hosts`, `tagOwners`, `acls`, `ssh`, `tests`",
        ),
        (
            "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"], \"ports\": []}]}",
            "line 1, column 62: unknown field `ports`, expected one of `action`, `proto`, `src`, `dst`",
        ),
        (
            "{\"acls\": [{\"action\": \"accept\", \"src\": [\"autogroup:self\"], \"dst\": [\"*:*\"]}]}",
            "line 1, column 40: autogroup:self is only valid as a destination",
        ),
        (
            "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"autogroup:internet:*\"]}]}",
            "line 1, column 54: autogroup:internet is not supported (tenscale has no exit nodes)",
        ),
        (
            "{\"tagOwners\": {\"tag:Web\": []}}",
            "line 1, column 16: bad tag \"tag:Web\": a tag name is made of a-z, 0-9 and '-'",
        ),
        (
            "{\"groups\": {\"group:a\": [\"group:b\"]}}",
            "line 1, column 25: \"group:b\" is not a user (user@domain)",
        ),
        (
            "{\"hosts\": {\"h\": \"10.0.0.1/8\"}}",
            "line 1, column 17: 10.0.0.1/8 has host bits set",
        ),
        (
            "{\"ssh\": [{\"action\": \"accept\", \"src\": [\"a@o\"], \"dst\": [\"a@o\"], \"users\": [\"autogroup:member\"]}]}",
            "line 1, column 73: \"autogroup:member\" is not an ssh user; only autogroup:nonroot is",
        ),
        (
            "{\"ssh\": [{\"action\": \"accept\", \"src\": [\"a@o\"], \"dst\": [\"a@o\"], \"users\": [\"root\"], \"checkPeriod\": \"1h\"}]}",
            "line 1, column 97: checkPeriod is only valid with action \"check\"",
        ),
        ("{\"acls\": [/* never closed\n", "line 1, column 11: unterminated /* comment"),
        ("{\"acls\": [\n  {\"action\": \"accept\" \"src\": []}]}", "line 2, column 23: expected `,` or `}`"),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(text, want)| error(text) != *want)
        .map(|(text, want)| format!("policy {text:?}\n  want {want}\n  got  {}", error(text)))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn hujson_with_comments_and_trailing_commas_parses() {
    let text = r#"
    // The policy of the acme org.
    {
        /* who */ "groups": {"group:eng": ["alice@acme",],},
        "acls": [
            {"action": "accept", "src": ["group:eng"], "dst": ["*:22,443"],}, // ssh + https
        ],
    }"#;
    let p = Policy::parse(text).unwrap();
    assert_eq!(p.acls.as_ref().map(Vec::len), Some(1));
}

// --- diff ----------------------------------------------------------------------------------------------

#[test]
fn diff_reports_only_nodes_whose_output_changed() {
    let nodes = vec![node(1, &["tag:a"], None), node(2, &["tag:b"], None), node(3, &["tag:c"], None)];
    let p1 = r#"{"tagOwners": {"tag:a": [], "tag:b": [], "tag:c": []},
                 "acls": [{"action": "accept", "src": ["tag:a"], "dst": ["tag:b:80"]}]}"#;
    let old = compile(p1, &nodes);
    assert!(diff(&old, &compile(p1, &nodes)).is_empty(), "same input, no change");

    // A port change only touches b's filter.
    let p2 = p1.replace("tag:b:80", "tag:b:81");
    assert_eq!(changed(&old, &compile(&p2, &nodes)), [2]);

    // Pointing the rule at c changes a (peers), b (filter, peers) and c (filter, peers).
    let p3 = p1.replace("tag:b:80", "tag:c:80");
    assert_eq!(changed(&old, &compile(&p3, &nodes)), [1, 2, 3]);

    // A new tag:a node changes b's filter source list and its peers, plus the new node itself.
    let mut more = nodes.clone();
    more.push(node(4, &["tag:a"], None));
    assert_eq!(changed(&old, &compile(p1, &more)), [2, 4]);
}

#[test]
fn compiled_output_never_carries_bits() {
    let nodes = [node(1, &[], Some("a@o")), node(2, &["tag:srv"], None)];
    let c = compile(SSH_POLICY.replace("alice@acme", "a@o").as_str(), &nodes);
    for n in c.nodes.values() {
        let text = serde_json::to_string(&n.filter).unwrap();
        assert!(!text.contains("Bits"), "{text}");
    }
}

#[test]
fn consecutive_sources_become_ranges() {
    let nodes: Vec<PolicyNode> =
        (1..=6).map(|id| if id == 4 { node(id, &["tag:t"], None) } else { node(id, &[], Some("a@o")) }).collect();
    let c = compile(
        r#"{"tagOwners": {"tag:t": []}, "acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:t:22"]}]}"#,
        &nodes,
    );
    assert_eq!(
        filter(&c, 4)[0]["SrcIPs"],
        json!([
            "100.64.0.1-100.64.0.3",
            "100.64.0.5",
            "100.64.0.6",
            "fd7a:115c:a1e0::1-fd7a:115c:a1e0::3",
            "fd7a:115c:a1e0::5",
            "fd7a:115c:a1e0::6"
        ])
    );
    assert!(reaches(&c, 2, 4, 6, 22) && reaches(&c, 6, 4, 6, 22));
    assert!(!filter_allows(&c.nodes[&NodeId::new(4)].filter, v4(4), v4(4), 6, 22), "the tagged node is not a member");
}
