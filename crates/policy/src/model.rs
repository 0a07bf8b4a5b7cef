//! The typed policy: Tailscale's ACL schema parsed into values that cannot be malformed.
//!
//! Parsing happens in two steps, both keeping the user's line:column:
//! 1. serde turns the JSON (from [`super::hujson`]) into typed values. Every leaf (`Alias`, `Tag`,
//!    `PortRange`, `Proto`, ...) has one constructor from text, so syntax errors (a bad port, an
//!    unknown protocol, an unknown field) come out of serde with its position.
//! 2. [`validate`] checks what needs the whole document: that named groups, tags and hosts exist,
//!    that each alias is allowed where it appears. It reports the JSON path of the offender,
//!    which [`locate`] maps back to a byte offset in the text.
//!
//! Supported top-level keys: `groups`, `hosts`, `tagOwners`, `acls`, `ssh`, `tests`. Any other
//! key is refused by name (tenscale has no subnet routes, exit nodes, grants or node attributes).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::{hujson, PolicyError, Position};
pub use tenscale_base::domain::Tag;

// ---------------------------------------------------------------------------------------------
// Leaf values
// ---------------------------------------------------------------------------------------------

/// An IP prefix with its host bits zero. A single address is a /32 or /128 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

/// The Tailscale IPv4 range (CGNAT). Clients treat it as "inside the tailnet".
pub const TAILSCALE_V4: IpNet = IpNet { addr: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)), len: 10 };
/// The Tailscale IPv6 ULA range.
pub const TAILSCALE_V6: IpNet =
    IpNet { addr: IpAddr::V6(Ipv6Addr::new(0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 0)), len: 48 };

impl IpNet {
    /// A prefix; refuses a length beyond the family's width or set host bits.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, String> {
        let net = Self { addr, len };
        if len > net.max_len() {
            return Err(format!("prefix length /{len} is too long for {addr}"));
        }
        if net.mask_bits(addr) != bits(addr) {
            return Err(format!("{addr}/{len} has host bits set"));
        }
        Ok(net)
    }

    /// The one-address prefix holding `addr`.
    pub fn host(addr: IpAddr) -> Self {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, len }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn is_single(&self) -> bool {
        self.len == self.max_len()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && self.mask_bits(ip) == bits(self.addr)
    }

    /// True when every address of `other` is inside `self`.
    pub fn covers(&self, other: &IpNet) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    fn max_len(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// `ip`'s bits with everything past this prefix's length cleared (v4 in the low 32 bits).
    fn mask_bits(&self, ip: IpAddr) -> u128 {
        let host_bits = u32::from(self.max_len() - self.len);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        bits(ip) & mask
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            None => s.parse::<IpAddr>().map(IpNet::host).map_err(|_| format!("{s:?} is not an IP address")),
            Some((addr, len)) => {
                let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an IP prefix"))?;
                let len: u8 = len.parse().map_err(|_| format!("{s:?} has a bad prefix length"))?;
                IpNet::new(addr, len)
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Implements `Deserialize` through `FromStr`, so serde reports the parse error at its position.
macro_rules! deserialize_from_str {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

/// A tag in a policy: the domain's [`Tag`], refused with the policy's wording (which names
/// the rule a policy author broke) so that the position serde adds points at it.
pub fn policy_tag(s: &str) -> Result<Tag, String> {
    if !s.starts_with("tag:") {
        return Err(format!("{s:?} is not a tag (tag:name)"));
    }
    Tag::parse(s).map_err(|_| match s.len() - "tag:".len() {
        long if long > 63 => format!("bad tag {s:?}: a tag name has at most 63 characters"),
        _ => format!("bad tag {s:?}: a tag name is made of a-z, 0-9 and '-'"),
    })
}

/// `tagOwners` keys, each parsed by [`policy_tag`] while serde still knows its position.
fn tag_owner_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<Tag, Vec<Alias>>, D::Error> {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Key(Tag);
    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            policy_tag(&String::deserialize(d)?).map(Key).map_err(serde::de::Error::custom)
        }
    }
    Ok(BTreeMap::<Key, Vec<Alias>>::deserialize(d)?.into_iter().map(|(k, v)| (k.0, v)).collect())
}

/// `group:<name>`, name made of letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(String);

impl GroupName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GroupName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.strip_prefix("group:").ok_or_else(|| format!("{s:?} is not a group (group:name)"))?;
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return Err(format!("bad group name {s:?}"));
        }
        Ok(GroupName(s.to_owned()))
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// A user as the policy names it: `login@domain` (exact login) or `login@` (any domain).
/// tenscale's logins are `<namespace>@<org>`, e.g. `alice@acme`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserPattern(String);

impl UserPattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a node owned by `login` is this user. Comparison ignores ASCII case.
    pub fn matches(&self, login: &str) -> bool {
        match self.0.strip_suffix('@') {
            Some(local) => login.split('@').next().is_some_and(|l| l.eq_ignore_ascii_case(local)),
            None => login.eq_ignore_ascii_case(&self.0),
        }
    }
}

impl FromStr for UserPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (local, domain) = s.split_once('@').ok_or_else(|| format!("{s:?} is not a user (user@domain)"))?;
        let ok =
            !local.is_empty() && !domain.contains('@') && !s.contains(':') && s.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(format!("bad user {s:?}"));
        }
        Ok(UserPattern(s.to_owned()))
    }
}

/// A name from the `hosts` section.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HostName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && s.bytes().all(is_name_byte);
        if !ok {
            return Err(format!("bad host name {s:?}"));
        }
        Ok(HostName(s.to_owned()))
    }
}

/// Autogroups usable as aliases. `autogroup:nonroot` is an SSH user, see [`SshUser`];
/// `autogroup:internet` is refused (tenscale has no exit nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AutoGroup {
    /// Every untagged node.
    Member,
    /// Every tagged node.
    Tagged,
    /// Destination only: the untagged nodes of the same user as the source.
    SelfDevices,
}

impl fmt::Display for AutoGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AutoGroup::Member => "autogroup:member",
            AutoGroup::Tagged => "autogroup:tagged",
            AutoGroup::SelfDevices => "autogroup:self",
        })
    }
}

/// Anything a rule's `src` or `dst` may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alias {
    /// `*`: every node of the namespace.
    Wildcard,
    User(UserPattern),
    Group(GroupName),
    Tag(Tag),
    Host(HostName),
    Prefix(IpNet),
    AutoGroup(AutoGroup),
}

impl FromStr for Alias {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Alias::Wildcard);
        }
        if let Some(name) = s.strip_prefix("autogroup:") {
            return match name {
                "member" => Ok(Alias::AutoGroup(AutoGroup::Member)),
                "tagged" => Ok(Alias::AutoGroup(AutoGroup::Tagged)),
                "self" => Ok(Alias::AutoGroup(AutoGroup::SelfDevices)),
                "nonroot" => Err("autogroup:nonroot is only valid in ssh \"users\"".into()),
                "internet" => Err("autogroup:internet is not supported (tenscale has no exit nodes)".into()),
                _ => Err(format!("unknown autogroup {s:?}")),
            };
        }
        if s.starts_with("group:") {
            return s.parse().map(Alias::Group);
        }
        if s.starts_with("tag:") {
            return policy_tag(s).map(Alias::Tag);
        }
        if s.contains('@') {
            return s.parse().map(Alias::User);
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Alias::Prefix(net));
        }
        if s.contains(['/', ':']) || s.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
            return Err(s.parse::<IpNet>().err().unwrap_or_default());
        }
        s.parse().map(Alias::Host).map_err(|_| format!("{s:?} is not a valid alias"))
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alias::Wildcard => f.write_str("*"),
            Alias::User(u) => f.write_str(u.as_str()),
            Alias::Group(g) => f.write_str(g.as_str()),
            Alias::Tag(t) => f.write_str(t.as_str()),
            Alias::Host(h) => f.write_str(h.as_str()),
            Alias::Prefix(p) if p.is_single() => write!(f, "{}", p.addr()),
            Alias::Prefix(p) => write!(f, "{p}"),
            Alias::AutoGroup(a) => write!(f, "{a}"),
        }
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange { first: 0, last: 65535 };

    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

/// Parses `*`, `22`, `80,443` or `1000-2000` (and lists mixing the last two).
pub fn parse_ports(s: &str) -> Result<Vec<PortRange>, String> {
    if s == "*" {
        return Ok(vec![PortRange::ALL]);
    }
    s.split(',').map(parse_port_range).collect()
}

fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let port = |p: &str| -> Result<u16, String> {
        let ok = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        p.parse::<u16>().ok().filter(|_| ok).ok_or_else(|| format!("bad port {p:?} (0-65535)"))
    };
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(s)?, port(s)?),
    };
    if first > last {
        return Err(format!("bad port range {s:?}: first port is after last"));
    }
    Ok(PortRange { first, last })
}

/// Splits `alias:ports` at its last `:` (IPv6 may be bracketed: `[fd7a::1]:22`).
fn split_host_port(s: &str) -> Result<(&str, &str), String> {
    let (alias, ports) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} has no port: a destination is alias:ports, e.g. tag:web:443"))?;
    let alias = alias.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(alias);
    Ok((alias, ports))
}

/// An ACL destination: `alias:ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasWithPorts {
    pub alias: Alias,
    pub ports: Vec<PortRange>,
}

impl FromStr for AliasWithPorts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (alias, ports) = split_host_port(s)?;
        let ports = parse_ports(ports).map_err(|e| format!("{e} in {s:?}"))?;
        Ok(AliasWithPorts { alias: alias.parse()?, ports })
    }
}

/// A `tests` destination: `alias:port` with one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestTarget {
    pub alias: Alias,
    pub port: u16,
    /// The text as written, for error messages.
    pub text: String,
}

impl FromStr for TestTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (alias, port) = split_host_port(s)?;
        let range = parse_port_range(port).map_err(|e| format!("{e} in {s:?}"))?;
        if range.first != range.last {
            return Err(format!("a test destination has one port, not a range: {s:?}"));
        }
        Ok(TestTarget { alias: alias.parse()?, port: range.first, text: s.to_owned() })
    }
}

/// An IP protocol selector for an ACL (`proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proto {
    /// IANA protocol numbers this selector means.
    pub numbers: Vec<u8>,
    /// Whether the protocol has ports (TCP, UDP, SCTP); others only allow the `*` port.
    pub has_ports: bool,
}

impl FromStr for Proto {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let named = |n: &[u8], has_ports| Ok(Proto { numbers: n.to_vec(), has_ports });
        match s.to_ascii_lowercase().as_str() {
            "tcp" => named(&[6], true),
            "udp" => named(&[17], true),
            "sctp" => named(&[132], true),
            "icmp" => named(&[1, 58], false),
            "igmp" => named(&[2], false),
            "ipv4" | "ip-in-ip" => named(&[4], false),
            "egp" => named(&[8], false),
            "igp" => named(&[9], false),
            "gre" => named(&[47], false),
            "esp" => named(&[50], false),
            "ah" => named(&[51], false),
            num if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => {
                if num.starts_with('0') {
                    return Err(format!("bad proto {s:?}: no leading zeros, 1-255"));
                }
                let n: u8 = num.parse().map_err(|_| format!("bad proto {s:?}: out of range 1-255"))?;
                named(&[n], matches!(n, 6 | 17 | 132))
            }
            _ => Err(format!("unknown proto {s:?} (tcp, udp, icmp, sctp, ... or a number 1-255)")),
        }
    }
}

/// An ACL's `action`: only `accept` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "accept" => Ok(Action::Accept),
            _ => Err(format!("bad action {s:?}: ACLs only \"accept\"")),
        }
    }
}

/// An SSH rule's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshAction {
    Accept,
    /// Accept, but the session is re-checked after `checkPeriod`.
    Check,
}

impl FromStr for SshAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "accept" => Ok(SshAction::Accept),
            "check" => Ok(SshAction::Check),
            _ => Err(format!("bad ssh action {s:?}: \"accept\" or \"check\"")),
        }
    }
}

/// An entry of an SSH rule's `users`: which local accounts may be logged into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshUser {
    Root,
    /// `autogroup:nonroot`: any account but root.
    NonRoot,
    Named(String),
}

impl FromStr for SshUser {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "root" => Ok(SshUser::Root),
            "autogroup:nonroot" => Ok(SshUser::NonRoot),
            _ if s.starts_with("autogroup:") => Err(format!("{s:?} is not an ssh user; only autogroup:nonroot is")),
            _ => {
                let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                if ok {
                    Ok(SshUser::Named(s.to_owned()))
                } else {
                    Err(format!("bad ssh user {s:?}"))
                }
            }
        }
    }
}

/// A Go-style duration made of `<n>h`, `<n>m`, `<n>s` parts, e.g. `12h`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPeriod(pub Duration);

impl FromStr for CheckPeriod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad checkPeriod {s:?} (e.g. \"12h\", \"1h30m\", \"90s\")");
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            let unit = match rest.as_bytes().get(digits) {
                Some(b'h') => 3600,
                Some(b'm') => 60,
                Some(b's') => 1,
                _ => return Err(bad()),
            };
            total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
            rest = &rest[digits + 1..];
        }
        if total == 0 {
            return Err(bad());
        }
        Ok(CheckPeriod(Duration::from_secs(total)))
    }
}

deserialize_from_str!(
    GroupName,
    UserPattern,
    HostName,
    Alias,
    AliasWithPorts,
    TestTarget,
    Proto,
    Action,
    SshAction,
    SshUser,
    CheckPeriod
);

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

/// One `acls` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    pub action: Action,
    #[serde(default)]
    pub proto: Option<Proto>,
    pub src: Vec<Alias>,
    pub dst: Vec<AliasWithPorts>,
}

/// One `ssh` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SshRule {
    pub action: SshAction,
    pub src: Vec<Alias>,
    pub dst: Vec<Alias>,
    pub users: Vec<SshUser>,
    #[serde(default)]
    pub check_period: Option<CheckPeriod>,
}

impl SshRule {
    /// Tailscale's default re-check period for `check` rules without `checkPeriod`.
    pub const DEFAULT_CHECK_PERIOD: Duration = Duration::from_secs(12 * 3600);
}

/// One `tests` entry: `src` must reach every `accept` target and no `deny` target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTest {
    pub src: Alias,
    /// Protocol the assertions are about; TCP when absent.
    #[serde(default)]
    pub proto: Option<Proto>,
    #[serde(default)]
    pub accept: Vec<TestTarget>,
    #[serde(default)]
    pub deny: Vec<TestTarget>,
    /// Where the test starts in the text, for failure messages.
    #[serde(skip)]
    pub position: Option<Position>,
}

/// A parsed, validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub groups: BTreeMap<GroupName, Vec<UserPattern>>,
    #[serde(default)]
    pub hosts: BTreeMap<HostName, IpNet>,
    #[serde(default, deserialize_with = "tag_owner_map")]
    pub tag_owners: BTreeMap<Tag, Vec<Alias>>,
    /// `None` (key absent or null): allow all inside the namespace. `Some([])`: deny all.
    #[serde(default)]
    pub acls: Option<Vec<AclRule>>,
    #[serde(default)]
    pub ssh: Option<Vec<SshRule>>,
    #[serde(default)]
    pub tests: Vec<PolicyTest>,
}

impl Policy {
    /// Parses and validates HuJSON policy text.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let json = hujson::to_json(text)?;
        if !json.trim_start().starts_with('{') {
            return Err(PolicyError::new("a policy is a JSON object".to_string()));
        }
        let mut policy: Policy = serde_json::from_str(&json).map_err(|e| serde_error(&json, e))?;
        validate(&policy).map_err(|e| PolicyError::at(locate(&json, &e.path), e.message))?;
        for (i, test) in policy.tests.iter_mut().enumerate() {
            test.position = locate(&json, &[Seg::key("tests"), Seg::Index(i)]);
        }
        Ok(policy)
    }

    /// Whether `tag` is declared in `tagOwners`.
    pub fn tag_declared(&self, tag: &Tag) -> bool {
        self.tag_owners.contains_key(tag)
    }
}

/// Turns a serde_json error into ours, moving its position out of the message. A value error
/// (bad tag, unknown field, ...) is reported by serde at the end of the offending string; it is
/// moved to the string's opening quote, where validation errors point too.
fn serde_error(json: &str, e: serde_json::Error) -> PolicyError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    if e.line() == 0 {
        return PolicyError::new(message);
    }
    let reported = serde_position(json, e.line(), e.column());
    let position = match e.classify() {
        serde_json::error::Category::Data => string_start(json, reported).unwrap_or(reported),
        _ => reported,
    };
    PolicyError::at(Some(position), message)
}

/// serde_json's line and column (1-based) as a [`Position`]. Right after a newline it reports
/// column 0 of the next line (a raw newline inside a string, say); the byte it means is that
/// newline, at the end of the line before.
fn serde_position(json: &str, line: usize, column: usize) -> Position {
    if column > 0 {
        return Position { line, column };
    }
    match line.checked_sub(2).and_then(|before| json.split('\n').nth(before)) {
        Some(previous) => Position { line: line - 1, column: previous.len() + 1 },
        None => Position { line: line.max(1), column: 1 },
    }
}

/// The opening quote of the string whose closing quote is at (or just before) `at`.
fn string_start(json: &str, at: Position) -> Option<Position> {
    let b = json.as_bytes();
    let line_start = json.split_inclusive('\n').take(at.line - 1).map(str::len).sum::<usize>();
    let mut end = line_start + at.column - 1;
    if b.get(end) != Some(&b'"') {
        end = end.checked_sub(1).filter(|&i| b.get(i) == Some(&b'"'))?;
    }
    let open = (line_start..end).rev().find(|&i| b[i] == b'"' && (i == 0 || b[i - 1] != b'\\'))?;
    Some(Position::of_offset(json, open))
}

// ---------------------------------------------------------------------------------------------
// Validation with JSON paths
// ---------------------------------------------------------------------------------------------

/// One step of a JSON path: the value under a key, the key itself, or an array element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    KeyName(String),
    Index(usize),
}

impl Seg {
    fn key(k: &str) -> Self {
        Seg::Key(k.to_owned())
    }
}

/// A validation failure at a JSON path.
#[derive(Debug)]
struct Invalid {
    path: Vec<Seg>,
    message: String,
}

fn invalid(path: Vec<Seg>, message: impl Into<String>) -> Invalid {
    Invalid { path, message: message.into() }
}

/// Where an alias appears, which decides what it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    AclSrc,
    AclDst,
    SshSrc,
    SshDst,
    TestSrc,
    TestDst,
    TagOwner,
}

fn validate(p: &Policy) -> Result<(), Invalid> {
    for (tag, owners) in &p.tag_owners {
        for (i, owner) in owners.iter().enumerate() {
            let path = || vec![Seg::key("tagOwners"), Seg::Key(tag.to_string()), Seg::Index(i)];
            check_alias(p, owner, Place::TagOwner).map_err(|m| invalid(path(), m))?;
        }
    }
    for (r, rule) in p.acls.iter().flatten().enumerate() {
        let at = |field: &str, i| vec![Seg::key("acls"), Seg::Index(r), Seg::key(field), Seg::Index(i)];
        for (i, src) in rule.src.iter().enumerate() {
            check_alias(p, src, Place::AclSrc).map_err(|m| invalid(at("src", i), m))?;
        }
        for (i, dst) in rule.dst.iter().enumerate() {
            check_alias(p, &dst.alias, Place::AclDst).map_err(|m| invalid(at("dst", i), m))?;
            if let Some(proto) = rule.proto.as_ref().filter(|p| !p.has_ports) {
                if dst.ports != [PortRange::ALL] {
                    let m = format!("proto {:?} has no ports; its destinations need \":*\"", proto.numbers);
                    return Err(invalid(at("dst", i), m));
                }
            }
        }
    }
    for (r, rule) in p.ssh.iter().flatten().enumerate() {
        validate_ssh_rule(p, r, rule)?;
    }
    for (t, test) in p.tests.iter().enumerate() {
        let at = |field: &str| vec![Seg::key("tests"), Seg::Index(t), Seg::key(field)];
        check_alias(p, &test.src, Place::TestSrc).map_err(|m| invalid(at("src"), m))?;
        for (field, targets) in [("accept", &test.accept), ("deny", &test.deny)] {
            for (i, target) in targets.iter().enumerate() {
                let mut path = at(field);
                path.push(Seg::Index(i));
                check_alias(p, &target.alias, Place::TestDst).map_err(|m| invalid(path, m))?;
            }
        }
    }
    Ok(())
}

fn validate_ssh_rule(p: &Policy, r: usize, rule: &SshRule) -> Result<(), Invalid> {
    let path = |field: &str| vec![Seg::key("ssh"), Seg::Index(r), Seg::key(field)];
    let at = |field: &str, i| {
        let mut v = path(field);
        v.push(Seg::Index(i));
        v
    };
    for (i, src) in rule.src.iter().enumerate() {
        check_alias(p, src, Place::SshSrc).map_err(|m| invalid(at("src", i), m))?;
    }
    for (i, dst) in rule.dst.iter().enumerate() {
        check_alias(p, dst, Place::SshDst).map_err(|m| invalid(at("dst", i), m))?;
        check_ssh_pair(&rule.src, dst).map_err(|m| invalid(at("dst", i), m))?;
    }
    if rule.users.is_empty() {
        return Err(invalid(path("users"), "ssh \"users\" must not be empty"));
    }
    if rule.check_period.is_some() && rule.action != SshAction::Check {
        return Err(invalid(path("checkPeriod"), "checkPeriod is only valid with action \"check\""));
    }
    Ok(())
}

/// Tailscale's SSH rules on who may reach whom: tagged sources never reach user-owned nodes,
/// and a user destination is only reachable by that same user.
fn check_ssh_pair(srcs: &[Alias], dst: &Alias) -> Result<(), String> {
    let tagged_src = srcs.iter().any(|s| matches!(s, Alias::Tag(_) | Alias::AutoGroup(AutoGroup::Tagged)));
    match dst {
        Alias::User(u) => {
            if tagged_src {
                return Err(format!("tagged sources cannot ssh to user-owned {u:?}; use tags"));
            }
            let only_that_user = srcs.iter().all(|s| matches!(s, Alias::User(v) if v == u));
            if !only_that_user {
                return Err(format!(
                    "ssh to user {:?} is only allowed from that same user; use autogroup:self",
                    u.as_str()
                ));
            }
        }
        Alias::AutoGroup(ag @ (AutoGroup::SelfDevices | AutoGroup::Member)) if tagged_src => {
            return Err(format!("tagged sources cannot ssh to {ag} (user-owned devices)"));
        }
        _ => {}
    }
    Ok(())
}

/// Checks that `alias` names something that exists and may appear at `place`.
fn check_alias(p: &Policy, alias: &Alias, place: Place) -> Result<(), String> {
    use Place::*;
    match alias {
        Alias::Group(g) if !p.groups.contains_key(g) => Err(format!("unknown group {:?}", g.as_str())),
        Alias::Tag(t) if !p.tag_owners.contains_key(t) => {
            Err(format!("tag {:?} is not declared in tagOwners", t.as_str()))
        }
        Alias::Host(h) if !p.hosts.contains_key(h) => Err(format!("unknown host {:?}", h.as_str())),
        Alias::AutoGroup(AutoGroup::SelfDevices) if !matches!(place, AclDst | SshDst) => {
            Err("autogroup:self is only valid as a destination".into())
        }
        Alias::Wildcard if matches!(place, SshSrc | SshDst | TagOwner) => {
            Err("\"*\" is not allowed here; use autogroup:member, autogroup:tagged or tags".into())
        }
        Alias::Host(_) | Alias::Prefix(_) if matches!(place, SshSrc | TagOwner) => {
            Err(format!("{alias} is an address; only users, groups, tags and autogroups may be here"))
        }
        Alias::Group(_) if place == SshDst => Err("groups cannot be ssh destinations".into()),
        Alias::AutoGroup(_) if place == TagOwner => Err("autogroups cannot own tags".into()),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON path → byte offset
// ---------------------------------------------------------------------------------------------

/// The position of the value (or key) at `path` in `json`, if it can be found.
pub fn locate(json: &str, path: &[Seg]) -> Option<Position> {
    let b = json.as_bytes();
    let mut i = skip_ws(b, 0);
    for seg in path {
        i = match seg {
            Seg::Key(k) => find_member(json, i, k)?.1,
            Seg::KeyName(k) => find_member(json, i, k)?.0,
            Seg::Index(n) => find_element(b, i, *n)?,
        };
    }
    Some(Position::of_offset(json, i))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// In the object at `i`, the offsets of the key `want` and of its value.
fn find_member(json: &str, i: usize, want: &str) -> Option<(usize, usize)> {
    let b = json.as_bytes();
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(b, i + 1);
    while b.get(i) == Some(&b'"') {
        let key_start = i;
        let key_end = skip_string(b, i)?;
        let key: String = serde_json::from_str(&json[key_start..key_end]).ok()?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let value = skip_ws(b, i + 1);
        if key == want {
            return Some((key_start, value));
        }
        i = skip_ws(b, skip_value(b, value)?);
        if b.get(i) == Some(&b',') {
            i = skip_ws(b, i + 1);
        }
    }
    None
}

/// In the array at `i`, the offset of element `n`.
fn find_element(b: &[u8], i: usize, n: usize) -> Option<usize> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut i = skip_ws(b, i + 1);
    for _ in 0..n {
        i = skip_ws(b, skip_value(b, i)?);
        if b.get(i) != Some(&b',') {
            return None;
        }
        i = skip_ws(b, i + 1);
    }
    (b.get(i) != Some(&b']')).then_some(i)
}

fn skip_string(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The offset just past the JSON value starting at `i`. The text was accepted by serde_json
/// already, so this only needs to find boundaries, not check grammar.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let end = b[i..].iter().position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace());
            Some(end.map_or(b.len(), |e| i + e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_net_parse_and_contains() {
        let net: IpNet = "100.64.0.0/10".parse().unwrap();
        assert!(net.contains("100.127.255.255".parse().unwrap()));
        assert!(!net.contains("100.128.0.0".parse().unwrap()));
        assert!(!net.contains("fd7a:115c:a1e0::1".parse().unwrap()), "families never mix");
        assert!(TAILSCALE_V6.contains("fd7a:115c:a1e0:ffff::1".parse().unwrap()));
        assert!(!TAILSCALE_V6.contains("fd7a:115c:a1e1::1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.1/8".parse::<IpNet>().is_err());
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("100.64.0.1".parse::<IpNet>().unwrap().is_single());
    }

    #[test]
    fn user_patterns() {
        let any_domain: UserPattern = "alice@".parse().unwrap();
        let exact: UserPattern = "alice@acme".parse().unwrap();
        assert!(any_domain.matches("alice@acme") && any_domain.matches("Alice@other"));
        assert!(exact.matches("alice@acme") && !exact.matches("alice@other"));
        assert!(!any_domain.matches("alicex@acme"));
        assert!("@acme".parse::<UserPattern>().is_err());
    }

    #[test]
    fn protos_and_periods() {
        assert!("06".parse::<Proto>().is_err(), "leading zero");
        assert!("256".parse::<Proto>().is_err());
        assert!("*".parse::<Proto>().is_err());
        assert_eq!("132".parse::<Proto>().unwrap(), Proto { numbers: vec![132], has_ports: true });
        assert_eq!("1h30m".parse::<CheckPeriod>().unwrap().0, Duration::from_secs(5400));
        assert!("0s".parse::<CheckPeriod>().is_err());
        assert!("12".parse::<CheckPeriod>().is_err());
        assert!("1d".parse::<CheckPeriod>().is_err());
    }

    #[test]
    fn alias_kinds() {
        assert_eq!("*".parse::<Alias>().unwrap(), Alias::Wildcard);
        assert!(matches!("fd7a:115c:a1e0::1".parse::<Alias>().unwrap(), Alias::Prefix(_)));
        assert!(matches!("face".parse::<Alias>().unwrap(), Alias::Host(_)));
        assert!("300.1.1.1".parse::<Alias>().is_err());
        assert!("autogroup:danger-all".parse::<Alias>().is_err());
        let d: AliasWithPorts = "[fd7a:115c:a1e0::1]:22".parse().unwrap();
        assert_eq!(d.ports, [PortRange { first: 22, last: 22 }]);
        assert!("tag:web".parse::<AliasWithPorts>().is_err(), "no port");
        assert!("tag:web:80-81".parse::<TestTarget>().is_err(), "one port in tests");
    }
}
