//! Compiles a [`Policy`] against ONE namespace's nodes into what each node receives: its packet
//! filter, its SSH policy and the peers it may see.
//!
//! Invariants at this boundary:
//! - Only the given nodes exist. Every address in the output is one of theirs, a prefix written
//!   in the policy, or the Tailscale ranges for `*` (see [`WILDCARD_SOURCES`]).
//! - A node's filter only holds rules whose destinations include it, with the destinations
//!   trimmed to its own addresses (what headscale's `ReduceFilterRules` does, but tighter).
//! - Peer visibility is symmetric: A sees B iff some rule lets A reach B or B reach A.
//! - Compiling never fails: a policy that parsed can always be served. `tests` are checked by
//!   [`validate_namespace`], which the API calls before accepting a policy.
//!
//! Work is done once per rule (source lists are built once and shared by `Arc`), then once per
//! node; alias membership uses bitsets over the nodes sorted by id.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::model::{
    AclRule, Alias, AutoGroup, IpNet, Policy, PortRange, Proto, SshAction, SshRule, SshUser, TestTarget, TAILSCALE_V4,
    TAILSCALE_V6,
};
use super::wire::{self, FilterRule, NetPortRange, SSHPolicy, SSHPrincipal, Shared};
use super::PolicyError;
use tenscale_base::domain::{NodeId, Tags};

/// What `*` means as a source: the Tailscale ranges, not `0.0.0.0/0`.
///
/// Why the ranges and not the list of the namespace's node addresses: a packet only reaches a
/// node's filter after WireGuard accepted it from a configured peer, and WireGuard drops any
/// packet whose inner source is outside that peer's AllowedIPs (the peer's own addresses). Peers
/// all come from this namespace, so the ranges admit exactly the namespace's nodes, the same set
/// the address list would, while keeping every node's filter unchanged when a node joins or
/// leaves (no re-push of N filters of 2N addresses on each join). Tailscale's own control plane
/// writes `*` the same way. Other namespaces reuse these ranges, but can never be peers.
pub const WILDCARD_SOURCES: [IpNet; 2] = [TAILSCALE_V4, TAILSCALE_V6];

/// A node as the policy sees it. A node with tags is tagged: its `user` is ignored by rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyNode {
    pub id: NodeId,
    pub addresses: Vec<IpAddr>,
    pub tags: Vec<String>,
    /// Login of the owning user (`<namespace>@<org>`) for untagged nodes.
    pub user: Option<String>,
}

/// What one node receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledNode {
    /// `PacketFilters["base"]`. Empty means "drop all inbound" (send `[]`, not `null`).
    pub filter: Vec<FilterRule>,
    /// `None` when the policy has no `ssh` section. When it goes from `Some` to `None`, send
    /// `{"rules":[]}`: `null` on the wire means "unchanged".
    pub ssh: Option<SSHPolicy>,
    /// Ids of the nodes it may see, ascending, without itself.
    pub peers: Vec<NodeId>,
}

/// The result for a whole namespace, by node id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompiledNamespace {
    pub nodes: BTreeMap<NodeId, CompiledNode>,
}

/// Compiles `policy` (`None`: allow all inside the namespace) for every node of `nodes`.
pub fn compile_namespace(policy: Option<&Policy>, nodes: &[PolicyNode]) -> CompiledNamespace {
    let index = Index::new(nodes);
    let acl_rules = match policy.map(|p| (p, p.acls.as_ref())) {
        Some((p, Some(acls))) => acls.iter().map(|rule| index.compile_acl(p, rule)).collect(),
        _ => vec![index.allow_all_rule()],
    };
    let ssh_rules: Option<Vec<SshCompiled>> =
        policy.and_then(|p| p.ssh.as_ref().map(|rules| rules.iter().map(|r| index.compile_ssh(p, r)).collect()));
    let peers = index.peer_sets(&acl_rules);

    let mut self_src_cache = HashMap::new();
    let mut self_principal_cache = HashMap::new();
    let mut out = CompiledNamespace::default();
    for i in 0..index.len() {
        let filter = index.filter_for(i, &acl_rules, &mut self_src_cache);
        let ssh = ssh_rules.as_ref().map(|rules| index.ssh_for(i, rules, &mut self_principal_cache));
        let peers = peers[i].iter().filter(|&j| j != i).map(|j| index.nodes[j].id).collect();
        out.nodes.insert(index.nodes[i].id, CompiledNode { filter, ssh, peers });
    }
    out
}

/// Ids of the nodes of `new` whose filter, SSH policy or peers differ from `old` (nodes new in
/// `new` included), ascending. Shared lists are compared once per pair, not once per node.
pub fn diff(old: &CompiledNamespace, new: &CompiledNamespace) -> Vec<NodeId> {
    let mut memo = HashMap::new();
    new.nodes
        .iter()
        .filter(|(id, n)| old.nodes.get(id).is_none_or(|o| !node_eq(o, n, &mut memo)))
        .map(|(id, _)| *id)
        .collect()
}

/// Compiles and then checks the policy's `tests` against the result.
pub fn validate_namespace(policy: &Policy, nodes: &[PolicyNode]) -> Result<CompiledNamespace, PolicyError> {
    let compiled = compile_namespace(Some(policy), nodes);
    run_tests(policy, nodes, &compiled)?;
    Ok(compiled)
}

/// A pre-auth key may only carry tags declared in `tagOwners` (any well-formed tag without a
/// policy).
pub fn validate_tags_for_key(policy: Option<&Policy>, tags: &Tags) -> Result<(), PolicyError> {
    for tag in tags.iter() {
        if policy.is_some_and(|p| !p.tag_declared(tag)) {
            return Err(PolicyError::new(format!("tag {:?} is not declared in tagOwners", tag.as_str())));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Node sets
// ---------------------------------------------------------------------------------------------

/// A set of node indices (positions in [`Index::nodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeSet(Vec<u64>);

impl NodeSet {
    fn empty(n: usize) -> Self {
        NodeSet(vec![0; n.div_ceil(64)])
    }

    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn union_with(&mut self, other: &NodeSet) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a |= b);
    }

    fn intersection(&self, other: &NodeSet) -> NodeSet {
        NodeSet(self.0.iter().zip(&other.0).map(|(a, b)| a & b).collect())
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &bits)| {
            let mut rest = bits;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let b = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    w * 64 + b
                })
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The namespace index
// ---------------------------------------------------------------------------------------------

/// Who is who in the namespace, computed once per compile.
struct Index<'a> {
    /// Sorted by id, so iterating a set yields ascending ids.
    nodes: Vec<&'a PolicyNode>,
    /// Each node's addresses, sorted (v4 first), and their text.
    addrs: Vec<Vec<(IpAddr, String)>>,
    all: NodeSet,
    tagged: NodeSet,
    member: NodeSet,
    by_addr: HashMap<IpAddr, usize>,
    /// For untagged nodes with a user: which same-user group (autogroup:self) they are in.
    user_group: Vec<Option<usize>>,
    groups: Vec<NodeSet>,
    /// Source lists already built, so rules naming the same sources share one list.
    sources: RefCell<HashMap<SourceKey, Shared<String>>>,
}

/// A resolved source list's identity: the whole nodes (bitset words) and the prefixes.
type SourceKey = (Vec<u64>, Vec<IpNet>);

/// Sources or destinations of a rule, resolved.
#[derive(Debug, Clone)]
struct Resolved {
    /// Nodes inside the alias (for peer visibility and autogroup:self).
    nodes: NodeSet,
    /// Nodes whose addresses are all written out; a prefix alias writes only itself.
    whole: NodeSet,
    /// Address ranges written in the policy (and the wildcard ranges), emitted as they are.
    prefixes: Vec<IpNet>,
}

/// One `dst` entry of an ACL, resolved.
struct DstPart {
    nodes: NodeSet,
    /// Only a node's addresses inside this prefix are destinations (`None`: all of them).
    within: Option<IpNet>,
    ports: Vec<PortRange>,
}

/// An ACL rule, resolved once for the namespace.
struct AclCompiled {
    src: NodeSet,
    src_ips: Shared<String>,
    dsts: Vec<DstPart>,
    dst_nodes: NodeSet,
    /// Ports of the `autogroup:self` destinations, if any.
    self_ports: Vec<PortRange>,
    ip_proto: Vec<u8>,
}

/// An SSH rule, resolved once for the namespace.
struct SshCompiled {
    src: NodeSet,
    principals: Shared<SSHPrincipal>,
    dst_nodes: NodeSet,
    has_self: bool,
    users: BTreeMap<String, String>,
    action: wire::SSHAction,
}

impl<'a> Index<'a> {
    fn new(input: &'a [PolicyNode]) -> Self {
        let mut nodes: Vec<&PolicyNode> = input.iter().collect();
        nodes.sort_by_key(|n| n.id);
        let n = nodes.len();
        let (mut all, mut tagged, mut member) = (NodeSet::empty(n), NodeSet::empty(n), NodeSet::empty(n));
        let mut by_addr = HashMap::with_capacity(n * 2);
        let mut user_index: HashMap<&str, usize> = HashMap::new();
        let mut user_group = vec![None; n];
        let mut groups: Vec<NodeSet> = Vec::new();
        let mut addrs = Vec::with_capacity(n);
        for (i, node) in nodes.iter().enumerate() {
            all.insert(i);
            if node.tags.is_empty() {
                member.insert(i);
                if let Some(user) = node.user.as_deref() {
                    let g = *user_index.entry(user).or_insert_with(|| {
                        groups.push(NodeSet::empty(n));
                        groups.len() - 1
                    });
                    groups[g].insert(i);
                    user_group[i] = Some(g);
                }
            } else {
                tagged.insert(i);
            }
            let mut list: Vec<IpAddr> = node.addresses.clone();
            list.sort_by_key(addr_order);
            list.dedup();
            for a in &list {
                by_addr.entry(*a).or_insert(i);
            }
            addrs.push(list.into_iter().map(|a| (a, a.to_string())).collect());
        }
        Index { nodes, addrs, all, tagged, member, by_addr, user_group, groups, sources: RefCell::default() }
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn empty(&self) -> Resolved {
        Resolved { nodes: NodeSet::empty(self.len()), whole: NodeSet::empty(self.len()), prefixes: Vec::new() }
    }

    fn wildcard(&self) -> Resolved {
        Resolved { nodes: self.all.clone(), whole: self.all.clone(), prefixes: WILDCARD_SOURCES.to_vec() }
    }

    fn user_nodes(&self, matches: impl Fn(&str) -> bool) -> NodeSet {
        let mut set = NodeSet::empty(self.len());
        for i in self.member.iter() {
            if self.nodes[i].user.as_deref().is_some_and(&matches) {
                set.insert(i);
            }
        }
        set
    }

    /// Resolves one alias; `autogroup:self` resolves to nothing here (it is per node).
    fn resolve(&self, p: &Policy, alias: &Alias) -> (Resolved, Option<IpNet>) {
        let nodes = |nodes: NodeSet| (Resolved { whole: nodes.clone(), nodes, prefixes: Vec::new() }, None);
        match alias {
            Alias::Wildcard => (self.wildcard(), None),
            Alias::User(u) => nodes(self.user_nodes(|login| u.matches(login))),
            Alias::Group(g) => {
                let members = p.groups.get(g).map(Vec::as_slice).unwrap_or_default();
                nodes(self.user_nodes(|login| members.iter().any(|u| u.matches(login))))
            }
            Alias::Tag(t) => {
                let mut set = NodeSet::empty(self.len());
                for i in self.tagged.iter() {
                    if self.nodes[i].tags.iter().any(|x| x == t.as_str()) {
                        set.insert(i);
                    }
                }
                nodes(set)
            }
            Alias::Host(h) => match p.hosts.get(h) {
                Some(net) => self.resolve_prefix(*net),
                None => (self.empty(), None),
            },
            Alias::Prefix(net) => self.resolve_prefix(*net),
            Alias::AutoGroup(AutoGroup::Member) => nodes(self.member.clone()),
            Alias::AutoGroup(AutoGroup::Tagged) => nodes(self.tagged.clone()),
            Alias::AutoGroup(AutoGroup::SelfDevices) => (self.empty(), None),
        }
    }

    /// A single address of a node stands for the whole node (all its addresses); any other
    /// prefix stands for itself, and for the nodes with an address inside it.
    fn resolve_prefix(&self, net: IpNet) -> (Resolved, Option<IpNet>) {
        let mut set = NodeSet::empty(self.len());
        if net.is_single() {
            if let Some(&i) = self.by_addr.get(&net.addr()) {
                set.insert(i);
                return (Resolved { whole: set.clone(), nodes: set, prefixes: Vec::new() }, None);
            }
        }
        for (i, list) in self.addrs.iter().enumerate() {
            if list.iter().any(|(a, _)| net.contains(*a)) {
                set.insert(i);
            }
        }
        (Resolved { nodes: set, whole: NodeSet::empty(self.len()), prefixes: vec![net] }, Some(net))
    }

    fn resolve_all(&self, p: &Policy, aliases: &[Alias]) -> Resolved {
        let mut out = self.empty();
        for alias in aliases {
            let (r, _) = self.resolve(p, alias);
            out.nodes.union_with(&r.nodes);
            out.whole.union_with(&r.whole);
            out.prefixes.extend(r.prefixes);
        }
        out
    }

    /// Source text: the prefixes, then every node address no prefix covers; sorted, unique.
    fn source_ips(&self, r: &Resolved) -> Shared<String> {
        let key = (r.whole.0.clone(), r.prefixes.clone());
        if let Some(list) = self.sources.borrow().get(&key) {
            return list.clone();
        }
        let list = self.build_source_ips(r);
        self.sources.borrow_mut().insert(key, list.clone());
        list
    }

    fn build_source_ips(&self, r: &Resolved) -> Shared<String> {
        let mut prefixes: Vec<IpNet> = r.prefixes.clone();
        prefixes.sort_by_key(|n| (addr_order(&n.addr()), n.prefix_len()));
        prefixes.dedup();
        let outer: Vec<IpNet> =
            prefixes.iter().filter(|n| !prefixes.iter().any(|m| m != *n && m.covers(n))).copied().collect();
        let mut items: Vec<((u8, u128), u8, Cow<str>)> =
            outer.iter().map(|n| (addr_order(&n.addr()), n.prefix_len(), Cow::Owned(net_text(n)))).collect();
        for i in r.whole.iter() {
            for (a, text) in &self.addrs[i] {
                if !outer.iter().any(|n| n.contains(*a)) {
                    items.push((addr_order(a), if a.is_ipv4() { 32 } else { 128 }, Cow::Borrowed(text)));
                }
            }
        }
        items.sort();
        items.dedup();
        merge_runs(items).into()
    }

    fn principals(&self, set: &NodeSet) -> Shared<SSHPrincipal> {
        let mut addrs: Vec<(IpAddr, &String)> =
            set.iter().flat_map(|i| self.addrs[i].iter().map(|(a, t)| (*a, t))).collect();
        addrs.sort_by_key(|(a, _)| addr_order(a));
        addrs
            .into_iter()
            .map(|(_, t)| SSHPrincipal { node_ip: t.clone(), ..Default::default() })
            .collect::<Vec<_>>()
            .into()
    }

    fn allow_all_rule(&self) -> AclCompiled {
        let src = self.wildcard();
        AclCompiled {
            src_ips: self.source_ips(&src),
            src: src.nodes,
            dsts: vec![DstPart { nodes: self.all.clone(), within: None, ports: vec![PortRange::ALL] }],
            dst_nodes: self.all.clone(),
            self_ports: Vec::new(),
            ip_proto: Vec::new(),
        }
    }

    fn compile_acl(&self, p: &Policy, rule: &AclRule) -> AclCompiled {
        let src = self.resolve_all(p, &rule.src);
        let mut dsts = Vec::new();
        let mut dst_nodes = NodeSet::empty(self.len());
        let mut self_ports = Vec::new();
        for dst in &rule.dst {
            if dst.alias == Alias::AutoGroup(AutoGroup::SelfDevices) {
                self_ports.extend_from_slice(&dst.ports);
                continue;
            }
            let (r, within) = self.resolve(p, &dst.alias);
            dst_nodes.union_with(&r.nodes);
            dsts.push(DstPart { nodes: r.nodes, within, ports: dst.ports.clone() });
        }
        AclCompiled {
            src_ips: self.source_ips(&src),
            src: src.nodes,
            dsts,
            dst_nodes,
            self_ports,
            ip_proto: proto_numbers(&rule.proto),
        }
    }

    fn compile_ssh(&self, p: &Policy, rule: &SshRule) -> SshCompiled {
        let src = self.resolve_all(p, &rule.src);
        let mut dst_nodes = NodeSet::empty(self.len());
        let mut has_self = false;
        for alias in &rule.dst {
            has_self |= matches!(alias, Alias::AutoGroup(AutoGroup::SelfDevices));
            dst_nodes.union_with(&self.resolve(p, alias).0.nodes);
        }
        SshCompiled {
            principals: self.principals(&src.nodes),
            src: src.nodes,
            dst_nodes,
            has_self,
            users: ssh_users(&rule.users),
            action: ssh_action(rule),
        }
    }

    /// Node `i`'s addresses inside `within` (all of them for `None`).
    fn node_addrs(&self, i: usize, within: Option<IpNet>) -> impl Iterator<Item = &String> {
        self.addrs[i].iter().filter(move |(a, _)| within.is_none_or(|w| w.contains(*a))).map(|(_, t)| t)
    }

    fn filter_for(
        &self,
        i: usize,
        rules: &[AclCompiled],
        self_cache: &mut HashMap<(usize, usize), Shared<String>>,
    ) -> Vec<FilterRule> {
        let mut out = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            if !rule.self_ports.is_empty() {
                if let Some(g) = self.user_group[i] {
                    let src_ips = self_cache
                        .entry((r, g))
                        .or_insert_with(|| {
                            let nodes = rule.src.intersection(&self.groups[g]);
                            self.source_ips(&Resolved { whole: nodes.clone(), nodes, prefixes: Vec::new() })
                        })
                        .clone();
                    let mut dst_ports = Vec::new();
                    push_ports(&mut dst_ports, self.node_addrs(i, None), &rule.self_ports);
                    push_rule(&mut out, src_ips, dst_ports, &rule.ip_proto);
                }
            }
            if rule.dst_nodes.contains(i) {
                let mut dst_ports = Vec::new();
                for d in rule.dsts.iter().filter(|d| d.nodes.contains(i)) {
                    push_ports(&mut dst_ports, self.node_addrs(i, d.within), &d.ports);
                }
                push_rule(&mut out, rule.src_ips.clone(), dst_ports, &rule.ip_proto);
            }
        }
        out
    }

    fn ssh_for(
        &self,
        i: usize,
        rules: &[SshCompiled],
        cache: &mut HashMap<(usize, usize), Shared<SSHPrincipal>>,
    ) -> SSHPolicy {
        let mut out = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            let mut push = |principals: Shared<SSHPrincipal>| {
                if !principals.is_empty() {
                    out.push(wire::SSHRule {
                        rule_expires: None,
                        principals,
                        ssh_users: rule.users.clone(),
                        action: rule.action.clone(),
                        accept_env: Vec::new(),
                    });
                }
            };
            if let Some(g) = self.user_group[i].filter(|_| rule.has_self) {
                let principals =
                    cache.entry((r, g)).or_insert_with(|| self.principals(&rule.src.intersection(&self.groups[g])));
                push(principals.clone());
            }
            if rule.dst_nodes.contains(i) {
                push(rule.principals.clone());
            }
        }
        SSHPolicy { rules: out }
    }

    /// For every node, the set of nodes it may reach or that may reach it.
    fn peer_sets(&self, rules: &[AclCompiled]) -> Vec<NodeSet> {
        let mut peers = vec![NodeSet::empty(self.len()); self.len()];
        let mut link = |src: &NodeSet, dst: &NodeSet| {
            if src.is_empty() || dst.is_empty() {
                return;
            }
            for a in src.iter() {
                peers[a].union_with(dst);
            }
            for b in dst.iter() {
                peers[b].union_with(src);
            }
        };
        for rule in rules {
            link(&rule.src, &rule.dst_nodes);
            if !rule.self_ports.is_empty() {
                for group in &self.groups {
                    link(&rule.src.intersection(group), group);
                }
            }
        }
        peers
    }
}

/// Sort key putting IPv4 before IPv6, then numeric order.
fn addr_order(a: &IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(v4) => (4, u128::from(u32::from(*v4))),
        IpAddr::V6(v6) => (6, u128::from(*v6)),
    }
}

/// Source entries as text, with runs of 3+ consecutive single addresses written as one
/// inclusive range `a-b` (a form the client accepts, and Tailscale itself sends). Addresses are
/// handed out in sequence, so `autogroup:member` in a 1,000-node namespace becomes a handful of
/// ranges instead of 2,000 strings in every filter that names it.
fn merge_runs(items: Vec<((u8, u128), u8, Cow<str>)>) -> Vec<String> {
    let single = |(family, _): (u8, u128), len: u8| len == if family == 4 { 32 } else { 128 };
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let (start, len, _) = &items[i];
        let mut end = i;
        if single(*start, *len) {
            while let Some((next, next_len, _)) = items.get(end + 1) {
                let (family, value) = items[end].0;
                if next.0 != family || next.1 != value + 1 || !single(*next, *next_len) {
                    break;
                }
                end += 1;
            }
        }
        if end - i >= 2 {
            out.push(format!("{}-{}", items[i].2, items[end].2));
        } else {
            out.extend(items[i..=end].iter().map(|(_, _, t)| t.to_string()));
        }
        i = end + 1;
    }
    out
}

/// A prefix as filter text: a bare address for a single address, else `addr/len`.
fn net_text(n: &IpNet) -> String {
    if n.is_single() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

fn push_ports<'s>(out: &mut Vec<NetPortRange>, addrs: impl Iterator<Item = &'s String>, ports: &[PortRange]) {
    for ip in addrs {
        for p in ports {
            let entry = NetPortRange { ip: ip.clone(), ports: wire::PortRange { first: p.first, last: p.last } };
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
}

/// Adds a rule unless it can never match (no sources or no destinations).
fn push_rule(out: &mut Vec<FilterRule>, src_ips: Shared<String>, dst_ports: Vec<NetPortRange>, proto: &[u8]) {
    if !src_ips.is_empty() && !dst_ports.is_empty() {
        out.push(FilterRule { src_ips, dst_ports, ip_proto: proto.to_vec(), cap_grant: Vec::new() });
    }
}

/// `IPProto` for a rule. No `proto` → empty, which the client reads as TCP, UDP, ICMPv4 and
/// ICMPv6: what Tailscale does (headscale 0.28 sends `[6,17]`, which breaks `ping` under an
/// "allow everything" ACL). ICMP has no ports, so it adds nothing a port rule did not mean.
fn proto_numbers(proto: &Option<Proto>) -> Vec<u8> {
    proto.as_ref().map(|p| p.numbers.clone()).unwrap_or_default()
}

fn ssh_users(users: &[SshUser]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if users.contains(&SshUser::NonRoot) {
        map.insert("*".to_owned(), "=".to_owned());
        map.insert("root".to_owned(), String::new());
    }
    if users.contains(&SshUser::Root) {
        map.insert("root".to_owned(), "root".to_owned());
    }
    for u in users {
        if let SshUser::Named(name) = u {
            map.insert(name.clone(), name.clone());
        }
    }
    map
}

/// Accept with forwarding allowed; `check` also limits the session to the check period (we
/// have no interactive re-authentication to hold and delegate to).
fn ssh_action(rule: &SshRule) -> wire::SSHAction {
    let session = match rule.action {
        SshAction::Accept => std::time::Duration::ZERO,
        SshAction::Check => rule.check_period.map_or(SshRule::DEFAULT_CHECK_PERIOD, |c| c.0),
    };
    wire::SSHAction {
        accept: true,
        session_duration: i64::try_from(session.as_nanos()).unwrap_or(i64::MAX),
        allow_agent_forwarding: true,
        allow_local_port_forwarding: true,
        allow_remote_port_forwarding: true,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// diff
// ---------------------------------------------------------------------------------------------

type Memo = HashMap<(usize, usize), bool>;

fn node_eq(a: &CompiledNode, b: &CompiledNode, memo: &mut Memo) -> bool {
    a.peers == b.peers
        && a.filter.len() == b.filter.len()
        && a.filter.iter().zip(&b.filter).all(|(x, y)| filter_rule_eq(x, y, memo))
        && match (&a.ssh, &b.ssh) {
            (None, None) => true,
            (Some(x), Some(y)) => {
                x.rules.len() == y.rules.len() && x.rules.iter().zip(&y.rules).all(|(r, s)| ssh_rule_eq(r, s, memo))
            }
            _ => false,
        }
}

/// Equality of two shared lists, computed once per pair of allocations.
fn shared_eq<T: PartialEq>(a: &Shared<T>, b: &Shared<T>, memo: &mut Memo) -> bool {
    *memo.entry((a.ptr_key(), b.ptr_key())).or_insert_with(|| a == b)
}

fn filter_rule_eq(a: &FilterRule, b: &FilterRule, memo: &mut Memo) -> bool {
    a.dst_ports == b.dst_ports
        && a.ip_proto == b.ip_proto
        && a.cap_grant == b.cap_grant
        && shared_eq(&a.src_ips, &b.src_ips, memo)
}

fn ssh_rule_eq(a: &wire::SSHRule, b: &wire::SSHRule, memo: &mut Memo) -> bool {
    a.rule_expires == b.rule_expires
        && a.ssh_users == b.ssh_users
        && a.action == b.action
        && a.accept_env == b.accept_env
        && shared_eq(&a.principals, &b.principals, memo)
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

/// Checks every `tests` entry on the compiled filters: each source address must (accept) or
/// must not (deny) get through the destination node's filter. An assertion whose source or
/// destination matches no node of this namespace has nothing to check and passes.
fn run_tests(policy: &Policy, nodes: &[PolicyNode], compiled: &CompiledNamespace) -> Result<(), PolicyError> {
    let index = Index::new(nodes);
    for (t, test) in policy.tests.iter().enumerate() {
        let (src, _) = index.resolve(policy, &test.src);
        let in_prefixes = |a: &IpAddr| src.prefixes.iter().any(|n| n.contains(*a));
        let mut sources: Vec<IpAddr> = src
            .nodes
            .iter()
            .flat_map(|i| index.addrs[i].iter().map(|(a, _)| *a))
            .filter(|a| in_prefixes(a) || src.whole.iter().any(|i| index.addrs[i].iter().any(|(b, _)| b == a)))
            .collect();
        sources.extend(src.prefixes.iter().filter(|n| n.is_single()).map(|n| n.addr()));
        sources.sort_by_key(addr_order);
        sources.dedup();
        let fail = |target: &TestTarget, verdict: &str, s: IpAddr, d: IpAddr| {
            let m = format!(
                "test {t} (src {:?}): {:?} should be {verdict}, but {s} -> {d} port {} is not",
                test.src.to_string(),
                target.text,
                target.port
            );
            PolicyError::at(test.position, m)
        };
        for (targets, want, verdict) in [(&test.accept, true, "accepted"), (&test.deny, false, "denied")] {
            for target in targets {
                let (dst, within) = index.resolve(policy, &target.alias);
                for j in dst.nodes.iter() {
                    let rules = compiled.nodes.get(&index.nodes[j].id).map(|n| n.filter.as_slice()).unwrap_or_default();
                    for (d, _) in index.addrs[j].iter().filter(|(a, _)| within.is_none_or(|w| w.contains(*a))) {
                        for s in sources.iter().filter(|s| s.is_ipv4() == d.is_ipv4()) {
                            let proto = test_proto(&test.proto, *d);
                            if filter_allows(rules, *s, *d, proto, target.port) != want {
                                return Err(fail(target, verdict, *s, *d));
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The protocol a test is about: TCP by default; ICMP picks the family's number.
fn test_proto(proto: &Option<Proto>, dst: IpAddr) -> u8 {
    match proto.as_ref().map(|p| p.numbers.as_slice()) {
        None => 6,
        Some([1, 58]) => {
            if dst.is_ipv4() {
                1
            } else {
                58
            }
        }
        Some(numbers) => numbers.first().copied().unwrap_or(6),
    }
}

/// Whether the client's filter built from `rules` accepts the packet, read from the wire form.
pub fn filter_allows(rules: &[FilterRule], src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> bool {
    let has_ports = matches!(proto, 6 | 17 | 132);
    rules.iter().any(|r| {
        let proto_ok =
            if r.ip_proto.is_empty() { matches!(proto, 1 | 6 | 17 | 58) } else { r.ip_proto.contains(&proto) };
        proto_ok
            && r.src_ips.iter().any(|s| ip_spec_contains(s, src))
            && r.dst_ports.iter().any(|d| {
                ip_spec_contains(&d.ip, dst) && (!has_ports || (d.ports.first <= port && port <= d.ports.last))
            })
    })
}

/// Whether a filter address spec (`*`, IP, CIDR or `a-b`) contains `ip`.
fn ip_spec_contains(spec: &str, ip: IpAddr) -> bool {
    if spec == "*" {
        return true;
    }
    if let Some((a, b)) = spec.split_once('-') {
        return match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
            (Ok(a), Ok(b)) => addr_order(&a) <= addr_order(&ip) && addr_order(&ip) <= addr_order(&b),
            _ => false,
        };
    }
    spec.parse::<IpNet>().is_ok_and(|n| n.contains(ip))
}
