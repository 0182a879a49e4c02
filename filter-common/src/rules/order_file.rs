//! Order files: one TOML file per order, as an order handler writes it from
//! an authority's request. See `rules/README.md` for the format.
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::domain::DomainPattern;
use super::error::{RuleError, RuleErrors};
use super::ruleset::{Direction, DomainAction, PortRange, Scope, TcpFlags};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Attack,
    Legal,
    AbuseFeed,
    Operator,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Attack => "attack",
            Category::Legal => "legal",
            Category::AbuseFeed => "abuse-feed",
            Category::Operator => "operator",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Drop,
    DryRun,
}

/// A validated order.
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub id: String,
    pub authority: String,
    pub reference: String,
    pub category: Category,
    pub received: DateTime<Utc>,
    pub effective: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub action: Action,
    pub entries: Vec<Entry>,
    pub file: PathBuf,
    pub line: usize,
}

impl Order {
    /// In force at `now`: `effective <= now < expires`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.effective <= now && now < self.expires
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub line: usize,
    pub comment: Option<String>,
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EntryKind {
    Prefixes { nets: Vec<IpNet>, direction: Direction },
    L4(L4Entry),
    /// Names (DNS query, TLS SNI, HTTP Host), each pattern once, in the
    /// order given. `action` is the DNS answer (`dns_answer`); TLS and
    /// HTTP connections to a blocked name are always dropped.
    Domains { patterns: Vec<DomainPattern>, action: DomainAction },
    /// One attack signature of a pack (`rules/signatures/`); a pack is
    /// loaded as an order with one entry per rule.
    Signature(std::sync::Arc<crate::signatures::Signature>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct L4Entry {
    pub protocol: u8,
    pub source: Scope,
    pub destination: Scope,
    /// Empty = any port. Several ranges become several L4 slots.
    pub source_ports: Vec<PortRange>,
    pub destination_ports: Vec<PortRange>,
    pub tcp_flags: Option<TcpFlags>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// `rate_limit = {...}`: a token bucket instead of a plain drop.
    pub rate_limit: Option<super::ruleset::RateLimitSpec>,
    /// `fragments = true`: matches fragments only.
    pub fragments: bool,
    /// `syn_auth = true`: SYN authentication instead of a drop (see
    /// `maps::L4_SYN_AUTH`).
    pub syn_auth: bool,
}

impl L4Entry {
    /// Why `syn_auth` cannot be combined with the rest of the entry, if it
    /// cannot: it answers SYNs and checks ACKs itself, so it takes TCP and
    /// nothing that would select some segments only.
    pub fn syn_auth_conflict(&self) -> Option<&'static str> {
        if !self.syn_auth {
            return None;
        }
        if self.protocol != 6 {
            return Some("`syn_auth` needs protocol tcp");
        }
        if self.tcp_flags.is_some() || self.rate_limit.is_some() || self.fragments {
            return Some("`syn_auth` answers SYNs and checks ACKs itself: no tcp_flags, rate_limit or fragments with it");
        }
        None
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrder {
    id: Spanned<String>,
    authority: Spanned<String>,
    reference: Spanned<String>,
    category: Spanned<Category>,
    received: Spanned<toml::value::Datetime>,
    effective: Spanned<toml::value::Datetime>,
    expires: Spanned<toml::value::Datetime>,
    action: Spanned<Action>,
    #[serde(default)]
    entry: Vec<Spanned<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    comment: Option<String>,
    prefixes: Option<Vec<Spanned<String>>>,
    direction: Option<Spanned<String>>,
    protocol: Option<Spanned<toml::Value>>,
    source: Option<Vec<Spanned<String>>>,
    destination: Option<Vec<Spanned<String>>>,
    source_ports: Option<Vec<Spanned<toml::Value>>>,
    destination_ports: Option<Vec<Spanned<toml::Value>>>,
    tcp_flags: Option<Spanned<String>>,
    icmp_type: Option<Spanned<i64>>,
    icmp_code: Option<Spanned<i64>>,
    domains: Option<Vec<Spanned<String>>>,
    dns_answer: Option<Spanned<String>>,
    rate_limit: Option<Spanned<toml::Value>>,
    fragments: Option<Spanned<bool>>,
    syn_auth: Option<Spanned<bool>>,
}

/// Collects errors located in one file's text.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<RuleError>,
}

impl Ctx<'_> {
    fn err<T>(&mut self, span: &Spanned<T>, msg: impl Into<String>) {
        self.errors.push(RuleError::at_offset(self.file, self.text, span.span().start, msg));
    }
    fn line<T>(&self, span: &Spanned<T>) -> usize {
        super::error::line_of(self.text, span.span().start)
    }
}

/// Parses and validates one order file. All problems are reported at once.
pub fn parse_order(file: &Path, text: &str) -> Result<Order, RuleErrors> {
    let raw: RawOrder = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| super::error::line_of(text, s.start)).unwrap_or(0);
        RuleErrors(vec![RuleError::new(file, line, e.message().trim().to_string())])
    })?;
    let mut cx = Ctx { file, text, errors: Vec::new() };

    let id = raw.id.get_ref().trim().to_string();
    if let Err(msg) = check_order_id(&id) {
        cx.err(&raw.id, msg);
    }
    for (field, value) in [("authority", &raw.authority), ("reference", &raw.reference)] {
        if value.get_ref().trim().is_empty() {
            cx.err(value, format!("{field} must not be empty: every block needs a recorded reason"));
        }
    }
    let received = timestamp(&mut cx, "received", &raw.received);
    let effective = timestamp(&mut cx, "effective", &raw.effective);
    let expires = timestamp(&mut cx, "expires", &raw.expires);
    if let (Some(e), Some(x)) = (effective, expires) {
        if x <= e {
            cx.err(&raw.expires, "expires must be after effective");
        }
    }
    if raw.entry.is_empty() {
        cx.errors.push(RuleError::new(file, 0, "order has no [[entry]]"));
    }
    let entries: Vec<Entry> = raw.entry.iter().filter_map(|e| entry(&mut cx, e)).collect();

    if !cx.errors.is_empty() {
        return Err(RuleErrors(cx.errors));
    }
    Ok(Order {
        id,
        authority: raw.authority.into_inner(),
        reference: raw.reference.into_inner(),
        category: *raw.category.get_ref(),
        received: received.expect("checked"),
        effective: effective.expect("checked"),
        expires: expires.expect("checked"),
        action: *raw.action.get_ref(),
        entries,
        file: file.to_path_buf(),
        line: 1,
    })
}

/// An order id (already trimmed): non-empty, letters, digits and `. _ : - /`.
pub fn check_order_id(id: &str) -> Result<(), String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "._:-/".contains(c)) {
        return Err("order id must be non-empty and use only letters, digits and . _ : - /".into());
    }
    Ok(())
}

/// An RFC 3339 timestamp with an offset; `field` names it in the error.
pub fn parse_timestamp(field: &str, text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{field} = {text}: need a full timestamp with a UTC offset, e.g. 2026-11-20T10:00:00Z"))
}

/// A `prefixes` entry's `direction`: `both`, `src`/`source`, `dst`/`destination`.
pub fn parse_direction(text: &str) -> Result<Direction, String> {
    match text {
        "both" => Ok(Direction::Both),
        "src" | "source" => Ok(Direction::Src),
        "dst" | "destination" => Ok(Direction::Dst),
        other => Err(format!("direction `{other}`: expected `both`, `src` or `dst`")),
    }
}

/// A `domains` entry's `dns_answer`: `nxdomain` (the default), `refused`
/// or `drop`.
pub fn parse_dns_answer(text: &str) -> Result<DomainAction, String> {
    match text {
        "nxdomain" => Ok(DomainAction::Nxdomain),
        "refused" => Ok(DomainAction::Refused),
        "drop" => Ok(DomainAction::Drop),
        other => Err(format!("dns_answer `{other}`: expected `nxdomain`, `refused` or `drop`")),
    }
}

/// The fields of an entry that only L4 rules have.
pub const L4_ONLY_FIELDS: [&str; 10] =
    ["source", "destination", "source_ports", "destination_ports", "tcp_flags", "icmp_type", "icmp_code", "rate_limit", "fragments", "syn_auth"];

/// Patterns of a `domains` list, each once (first kept), or for each bad
/// one its index and the reason.
pub fn parse_domain_list<'a>(items: impl IntoIterator<Item = &'a str>) -> (Vec<DomainPattern>, Vec<(usize, String)>) {
    let mut patterns: Vec<DomainPattern> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for (i, text) in items.into_iter().enumerate() {
        match DomainPattern::parse(text) {
            Ok(p) => {
                if seen.insert(p.clone()) {
                    patterns.push(p);
                }
            }
            Err(msg) => errors.push((i, format!("`{}`: {msg}", text.trim()))),
        }
    }
    (patterns, errors)
}

/// An IP protocol given by name (case-insensitive).
pub fn protocol_number(name: &str) -> Result<u8, String> {
    match name.to_ascii_lowercase().as_str() {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        "icmpv6" | "ipv6-icmp" => Ok(58),
        "gre" => Ok(47),
        "esp" => Ok(50),
        "ah" => Ok(51),
        "sctp" => Ok(132),
        other => Err(format!("protocol `{other}`: use tcp, udp, icmp, icmpv6, gre, esp, ah, sctp or a number 0-255")),
    }
}

fn timestamp(
    cx: &mut Ctx<'_>,
    field: &str,
    value: &Spanned<toml::value::Datetime>,
) -> Option<DateTime<Utc>> {
    match parse_timestamp(field, &value.get_ref().to_string()) {
        Ok(t) => Some(t),
        Err(msg) => {
            cx.err(value, msg);
            None
        }
    }
}

fn entry(cx: &mut Ctx<'_>, raw: &Spanned<RawEntry>) -> Option<Entry> {
    let line = cx.line(raw);
    let e = raw.get_ref();
    let before = cx.errors.len();
    if let Some(list) = &e.domains {
        if e.prefixes.is_some() || e.protocol.is_some() {
            cx.errors.push(RuleError::new(
                cx.file,
                line,
                "an entry has one of `prefixes` (block addresses), `protocol` (L4 rule) or `domains` (block names)",
            ));
            return None;
        }
        let kind = domains_entry(cx, line, e, list);
        return (cx.errors.len() == before).then(|| Entry { line, comment: e.comment.clone(), kind });
    }
    if let Some(a) = &e.dns_answer {
        cx.err(a, "`dns_answer` applies to `domains` entries");
    }
    let kind = match (&e.prefixes, &e.protocol) {
        (Some(_), Some(p)) => {
            cx.err(p, "an entry has either `prefixes` (block addresses) or `protocol` (L4 rule), not both");
            return None;
        }
        (None, None) => {
            cx.errors.push(RuleError::new(cx.file, line, "entry needs `prefixes`, `protocol` or `domains`"));
            return None;
        }
        (Some(list), None) => {
            for (name, present) in l4_fields_present(e) {
                if present {
                    cx.errors.push(RuleError::new(cx.file, line, format!("`{name}` needs `protocol`; a `prefixes` entry blocks whole addresses")));
                }
            }
            if list.is_empty() {
                cx.errors.push(RuleError::new(cx.file, line, "`prefixes` is empty"));
            }
            let nets = list.iter().filter_map(|p| net(cx, p)).collect();
            let direction = match &e.direction {
                None => Direction::Both,
                Some(d) => parse_direction(d.get_ref()).unwrap_or_else(|msg| {
                    cx.err(d, msg);
                    Direction::Both
                }),
            };
            EntryKind::Prefixes { nets, direction }
        }
        (None, Some(proto)) => {
            if let Some(d) = &e.direction {
                cx.err(d, "`direction` applies to `prefixes`; an L4 rule uses `source` and `destination`");
            }
            EntryKind::L4(l4_entry(cx, e, proto))
        }
    };
    (cx.errors.len() == before).then(|| Entry { line, comment: e.comment.clone(), kind })
}

fn l4_fields_present(e: &RawEntry) -> [(&'static str, bool); 10] {
    let present = [
        e.source.is_some(),
        e.destination.is_some(),
        e.source_ports.is_some(),
        e.destination_ports.is_some(),
        e.tcp_flags.is_some(),
        e.icmp_type.is_some(),
        e.icmp_code.is_some(),
        e.rate_limit.is_some(),
        e.fragments.is_some(),
        e.syn_auth.is_some(),
    ];
    std::array::from_fn(|i| (L4_ONLY_FIELDS[i], present[i]))
}

/// `domains = [...]` with optional `dns_answer`: every bad name reported
/// at its own line.
fn domains_entry(cx: &mut Ctx<'_>, line: usize, e: &RawEntry, list: &[Spanned<String>]) -> EntryKind {
    for (name, present) in l4_fields_present(e) {
        if present {
            cx.errors.push(RuleError::new(cx.file, line, format!("`{name}` does not apply to a `domains` entry (it blocks names)")));
        }
    }
    if let Some(d) = &e.direction {
        cx.err(d, "`direction` applies to `prefixes`; a `domains` entry matches the name a client asks for");
    }
    if list.is_empty() {
        cx.errors.push(RuleError::new(cx.file, line, "`domains` is empty"));
    }
    let (patterns, bad) = parse_domain_list(list.iter().map(|s| s.get_ref().as_str()));
    for (i, msg) in bad {
        cx.err(&list[i], msg);
    }
    let action = match &e.dns_answer {
        None => DomainAction::Nxdomain,
        Some(a) => parse_dns_answer(a.get_ref()).unwrap_or_else(|msg| {
            cx.err(a, msg);
            DomainAction::Nxdomain
        }),
    };
    EntryKind::Domains { patterns, action }
}

fn l4_entry(cx: &mut Ctx<'_>, e: &RawEntry, proto: &Spanned<toml::Value>) -> L4Entry {
    let protocol = match proto.get_ref() {
        toml::Value::String(s) => protocol_number(s).unwrap_or_else(|msg| {
            cx.err(proto, msg);
            0
        }),
        toml::Value::Integer(n) if (0..=255).contains(n) => *n as u8,
        other => {
            cx.err(proto, format!("protocol {other}: use a name or a number 0-255"));
            0
        }
    };
    let scope = |cx: &mut Ctx<'_>, list: &Option<Vec<Spanned<String>>>| -> Scope {
        match list {
            None => Scope::Any,
            Some(items) if items.iter().any(|s| s.get_ref() == "any") => {
                if items.len() > 1 {
                    cx.err(&items[0], "`any` cannot be combined with prefixes");
                }
                Scope::Any
            }
            Some(items) => {
                if items.is_empty() {
                    cx.errors.push(RuleError::new(cx.file, 0, "empty address list: omit it for `any`"));
                }
                Scope::Nets(items.iter().filter_map(|p| net(cx, p)).collect())
            }
        }
    };
    let source = scope(cx, &e.source);
    let destination = scope(cx, &e.destination);
    let has_ports = e.source_ports.is_some() || e.destination_ports.is_some();
    if has_ports && protocol != 6 && protocol != 17 {
        cx.err(proto, "ports need protocol tcp or udp");
    }
    let source_ports = ports(cx, &e.source_ports);
    let destination_ports = ports(cx, &e.destination_ports);
    let tcp_flags = e.tcp_flags.as_ref().and_then(|f| {
        if protocol != 6 {
            cx.err(f, "tcp_flags needs protocol tcp");
        }
        match TcpFlags::parse(f.get_ref()) {
            Ok(flags) => Some(flags),
            Err(msg) => {
                cx.err(f, msg);
                None
            }
        }
    });
    let icmp = |cx: &mut Ctx<'_>, name: &str, v: &Option<Spanned<i64>>| -> Option<u8> {
        let v = v.as_ref()?;
        if protocol != 1 && protocol != 58 {
            cx.err(v, format!("{name} needs protocol icmp or icmpv6"));
        }
        match u8::try_from(*v.get_ref()) {
            Ok(n) => Some(n),
            Err(_) => {
                cx.err(v, format!("{name} {} is not in 0-255", v.get_ref()));
                None
            }
        }
    };
    let icmp_type = icmp(cx, "icmp_type", &e.icmp_type);
    let icmp_code = icmp(cx, "icmp_code", &e.icmp_code);
    let rate_limit = e.rate_limit.as_ref().and_then(|r| match super::ruleset::RateLimitSpec::from_toml(r.get_ref()) {
        Ok(spec) => Some(spec),
        Err(msg) => {
            cx.err(r, msg);
            None
        }
    });
    let fragments = e.fragments.as_ref().is_some_and(|f| *f.get_ref());
    if fragments && (has_ports || e.tcp_flags.is_some() || e.icmp_type.is_some() || e.icmp_code.is_some()) {
        cx.err(e.fragments.as_ref().unwrap(), "`fragments` matches fragments, which carry no ports, flags or ICMP fields (non-first ones)");
    }
    let syn_auth = e.syn_auth.as_ref().is_some_and(|f| *f.get_ref());
    let entry = L4Entry { protocol, source, destination, source_ports, destination_ports, tcp_flags, icmp_type, icmp_code, rate_limit, fragments, syn_auth };
    if let (Some(msg), Some(at)) = (entry.syn_auth_conflict(), e.syn_auth.as_ref()) {
        cx.err(at, msg);
    }
    entry
}

fn net(cx: &mut Ctx<'_>, text: &Spanned<String>) -> Option<IpNet> {
    match parse_net(text.get_ref()) {
        Ok(n) => Some(n),
        Err(msg) => {
            cx.err(text, msg);
            None
        }
    }
}

/// A CIDR prefix or a bare address (a host route). Host bits must be zero:
/// `203.0.113.7/24` is almost always a typo and silently widening or
/// narrowing a legal order is not acceptable.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net: IpNet = match text.parse() {
        Ok(n) => n,
        Err(_) => match text.parse::<std::net::IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => return Err(format!("`{text}` is not an IP address or CIDR prefix")),
        },
    };
    if net.trunc() != net {
        return Err(format!("`{text}` has host bits set; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

fn ports(cx: &mut Ctx<'_>, list: &Option<Vec<Spanned<toml::Value>>>) -> Vec<PortRange> {
    let Some(items) = list else { return Vec::new() };
    if items.is_empty() {
        cx.errors.push(RuleError::new(cx.file, 0, "empty port list: omit it for any port"));
    }
    let mut out = Vec::new();
    for item in items {
        match PortRange::from_toml(item.get_ref()) {
            Ok(r) => out.push(r),
            Err(msg) => cx.err(item, msg),
        }
    }
    out
}

/// Reads every `*.toml` order file below `dir` (sorted by path, so rule ids
/// are stable). All files are checked; any error rejects the whole set.
pub fn load_orders_dir(dir: &Path) -> Result<Vec<Order>, RuleErrors> {
    let mut files = Vec::new();
    collect_toml(dir, &mut files).map_err(|e| RuleErrors(vec![RuleError::new(dir, 0, e.to_string())]))?;
    files.sort();
    let mut orders: Vec<Order> = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(RuleError::new(file, 0, format!("cannot read: {e}")));
                continue;
            }
        };
        match parse_order(file, &text) {
            Ok(order) => {
                if let Some(first) = orders.iter().find(|o| o.id == order.id) {
                    errors.push(RuleError::new(file, 1, format!("order id {} already used in {}", order.id, first.file.display())));
                } else {
                    orders.push(order);
                }
            }
            Err(RuleErrors(e)) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(orders)
    } else {
        Err(RuleErrors(errors))
    }
}

fn collect_toml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_toml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}
