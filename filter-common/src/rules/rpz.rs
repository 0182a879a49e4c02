//! Response Policy Zone (RPZ) import: the subset of the PowerDNS/BIND zone
//! format that a filter on the wire can enforce. See `rules/feeds/DOMAINS.md`.
//!
//! Accepted: `$ORIGIN`, `$TTL`, SOA (also in its parenthesised multi-line
//! form) and NS at the zone apex (ignored), and trigger records whose action
//! is `CNAME .` (NXDOMAIN), `CNAME rpz-drop.` or `CNAME rpz-passthru.`.
//! Triggers are QNAMEs (`name`, `*.name`), `rpz-ip` (a destination address
//! in an answer, enforced here on the packet's destination) and
//! `rpz-client-ip` (the client: the packet's source).
//!
//! Everything else a resolver could do with a zone (NODATA, redirects,
//! local data, TCP-only, NS triggers) has no equivalent in a packet filter
//! and is rejected with its line and the reason, never silently dropped.
//! All problems are reported at once; one bad record rejects the zone.
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;

use super::domain::{normalise, normalise_name, DomainPattern, DomainScope};
use super::error::{RuleError, RuleErrors};
use super::ruleset::Direction;

/// What a policy record asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RpzAction {
    /// `CNAME .`: answer NXDOMAIN; here, block.
    Nxdomain,
    /// `CNAME rpz-drop.`: drop the query; here, block.
    Drop,
    /// `CNAME rpz-passthru.`: exempt from the other rules (allow list).
    Passthru,
}

impl RpzAction {
    /// The policy name as RPZ spells it in logs: `nxdomain`, `drop`, `passthru`.
    pub fn name(self) -> &'static str {
        match self {
            RpzAction::Nxdomain => "nxdomain",
            RpzAction::Drop => "drop",
            RpzAction::Passthru => "passthru",
        }
    }
}

impl fmt::Display for RpzAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A QNAME trigger: `name` (exact) or `*.name` (strictly below `name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpzDomainRule {
    pub pattern: DomainPattern,
    pub action: RpzAction,
    /// 1-based line of the record (its first line if it spans several).
    pub line: usize,
}

/// An address trigger: `rpz-ip` (destination) or `rpz-client-ip` (source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpzIpRule {
    pub net: IpNet,
    /// [`Direction::Dst`] for `rpz-ip`, [`Direction::Src`] for `rpz-client-ip`.
    pub direction: Direction,
    pub action: RpzAction,
    pub line: usize,
}

/// A parsed policy zone: its rules in file order, each trigger once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpzZone {
    /// The zone's name (the first `$ORIGIN`), normalised, without the trailing dot.
    pub origin: String,
    pub domains: Vec<RpzDomainRule>,
    pub ips: Vec<RpzIpRule>,
}

/// Parses a zone file's text; every problem is reported as `file:line: reason`, all at once.
///
/// A trigger listed twice with the same action is kept once, at its first
/// line; listed with two different actions, it is an error.
pub fn parse_rpz(file: &Path, text: &str) -> Result<RpzZone, RuleErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        file,
        errors: Vec::new(),
        origin: None,
        current: None,
        last_owner: None,
        last_owner_bad: false,
        reported_no_origin: false,
        domains: Vec::new(),
        ips: Vec::new(),
        seen_domains: HashMap::new(),
        seen_ips: HashMap::new(),
    };
    let records = split_records(file, text, &mut p.errors);
    for record in &records {
        p.record(record);
    }
    if p.origin.is_none() && !p.reported_no_origin && p.errors.is_empty() {
        p.errors.push(RuleError::new(file, 0, "no $ORIGIN: a policy zone file names its zone with `$ORIGIN name.`"));
    }
    if p.errors.is_empty() {
        Ok(RpzZone { origin: p.origin.unwrap_or_default(), domains: p.domains, ips: p.ips })
    } else {
        Err(RuleErrors(p.errors))
    }
}

/// Reads and parses `path`.
pub fn load_rpz(path: &Path) -> Result<RpzZone, RuleErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RuleErrors(vec![RuleError::new(path, 0, format!("cannot read zone file: {e}"))]))?;
    parse_rpz(path, &text)
}

/// One logical record or directive: its fields across continuation lines.
struct Record {
    line: usize,
    /// The line started with a blank: the owner is the previous record's.
    inherits_owner: bool,
    fields: Vec<String>,
}

/// Splits the text into records: `;` comments (outside quotes) removed,
/// parenthesised groups joined, quoted strings kept as one field.
fn split_records(file: &Path, text: &str, errors: &mut Vec<RuleError>) -> Vec<Record> {
    let mut records = Vec::new();
    // The record being built while a `(` is open, and whether it is broken.
    let mut open: Option<(Record, bool)> = None;
    let mut depth = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let (mut record, mut broken) = match open.take() {
            Some(r) => r,
            None => {
                let inherits_owner = raw.starts_with([' ', '\t']);
                (Record { line, inherits_owner, fields: Vec::new() }, false)
            }
        };
        if let Err(msg) = tokenize(raw, &mut depth, &mut record.fields) {
            errors.push(RuleError::new(file, line, msg));
            broken = true;
        }
        if depth > 0 {
            open = Some((record, broken));
        } else if !record.fields.is_empty() && !broken {
            records.push(record);
        }
    }
    if let Some((record, _)) = open {
        errors.push(RuleError::new(file, record.line, "`(` is never closed"));
    }
    records
}

fn tokenize(line: &str, depth: &mut usize, fields: &mut Vec<String>) -> Result<(), String> {
    let mut field = String::new();
    let mut chars = line.chars();
    let flush = |field: &mut String, fields: &mut Vec<String>| {
        if !field.is_empty() {
            fields.push(std::mem::take(field));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ';' => break,
            '"' => {
                field.push('"');
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted string".to_string()),
                        Some('\\') => {
                            field.push('\\');
                            if let Some(n) = chars.next() {
                                field.push(n);
                            }
                        }
                        Some('"') => {
                            field.push('"');
                            break;
                        }
                        Some(other) => field.push(other),
                    }
                }
            }
            '\\' => {
                field.push('\\');
                if let Some(n) = chars.next() {
                    field.push(n);
                }
            }
            '(' => {
                flush(&mut field, fields);
                *depth += 1;
            }
            ')' => {
                flush(&mut field, fields);
                if *depth == 0 {
                    return Err("`)` without a matching `(`".to_string());
                }
                *depth -= 1;
            }
            c if c.is_whitespace() => flush(&mut field, fields),
            c => field.push(c),
        }
    }
    flush(&mut field, fields);
    Ok(())
}

struct Parser<'a> {
    file: &'a Path,
    errors: Vec<RuleError>,
    /// The zone's name: the first `$ORIGIN`, lower-case, no trailing dot.
    origin: Option<String>,
    /// The `$ORIGIN` in force, relative names are below it.
    current: Option<String>,
    /// The previous record's owner, as a name below `origin`.
    last_owner: Option<String>,
    /// The previous record's owner was rejected.
    last_owner_bad: bool,
    reported_no_origin: bool,
    domains: Vec<RpzDomainRule>,
    ips: Vec<RpzIpRule>,
    seen_domains: HashMap<DomainPattern, (RpzAction, usize)>,
    seen_ips: HashMap<(IpNet, bool), (RpzAction, usize)>,
}

impl Parser<'_> {
    fn err(&mut self, line: usize, msg: impl Into<String>) {
        self.errors.push(RuleError::new(self.file, line, msg));
    }

    fn record(&mut self, r: &Record) {
        if r.fields[0].starts_with('$') {
            self.directive(r);
            return;
        }
        let (Some(origin), Some(current)) = (self.origin.clone(), self.current.clone()) else {
            if !self.reported_no_origin {
                self.reported_no_origin = true;
                self.err(r.line, "no $ORIGIN before the first record");
            }
            return;
        };
        let mut fields = r.fields.iter().map(String::as_str);
        let owner = if r.inherits_owner {
            match self.last_owner.clone() {
                Some(o) => o,
                // The previous owner was rejected; that is already reported.
                None if self.last_owner_bad => return,
                None => {
                    self.err(r.line, "record starts with a blank (same owner as the previous record) but there is no previous record");
                    return;
                }
            }
        } else {
            let text = fields.next().unwrap_or_default();
            let owner = absolute(text, &current);
            if !is_at_or_below(&owner, &origin) {
                self.last_owner = None;
                self.last_owner_bad = true;
                self.err(r.line, format!("owner `{owner}.` is outside the zone `{origin}.`"));
                return;
            }
            self.last_owner = Some(owner.clone());
            self.last_owner_bad = false;
            owner
        };
        // [TTL] [class] TYPE or [class] [TTL] TYPE.
        let mut rtype = None;
        let (mut ttl, mut class) = (false, false);
        for field in fields.by_ref() {
            if !ttl && field.starts_with(|c: char| c.is_ascii_digit()) {
                if !is_ttl(field) {
                    self.err(r.line, format!("TTL `{field}` is not valid: expected seconds or units like 1h30m"));
                    return;
                }
                ttl = true;
            } else if !class && is_class(field) {
                if !field.eq_ignore_ascii_case("IN") {
                    self.err(r.line, format!("class `{field}` is not supported: a policy zone is class IN"));
                    return;
                }
                class = true;
            } else {
                rtype = Some(field.to_ascii_uppercase());
                break;
            }
        }
        let Some(rtype) = rtype else {
            self.err(r.line, "record has no type");
            return;
        };
        let rdata: Vec<&str> = fields.collect();

        if owner == origin {
            match rtype.as_str() {
                "SOA" if rdata.len() != 7 => self.err(
                    r.line,
                    format!(
                        "SOA record has {} fields; expected 7 (mname rname serial refresh retry expire minimum)",
                        rdata.len()
                    ),
                ),
                "SOA" | "NS" => {}
                other => self.err(
                    r.line,
                    format!("`{other}` record at the zone apex is not supported: the apex holds only SOA and NS"),
                ),
            }
            return;
        }
        let trigger = &owner[..owner.len() - origin.len() - 1];
        if rtype != "CNAME" {
            let msg = match rtype.as_str() {
                "SOA" => "SOA record below the zone apex".to_string(),
                _ => format!("local data (`{rtype}` record) is not supported"),
            };
            self.err(r.line, format!("`{trigger}`: {msg}"));
            return;
        }
        let action = self.action(r.line, trigger, &rdata, &current);
        match trigger_kind(trigger) {
            Trigger::Ip(direction) => match parse_ip_trigger(trigger) {
                Ok(net) => {
                    if let Some(action) = action {
                        self.add_ip(r.line, trigger, net, direction, action);
                    }
                }
                Err(msg) => self.err(r.line, format!("trigger `{trigger}`: {msg}")),
            },
            Trigger::Unsupported(kind) => self.err(r.line, format!("trigger {kind} is not supported")),
            Trigger::Name => match domain_trigger(trigger) {
                Ok(pattern) => {
                    if let Some(action) = action {
                        self.add_domain(r.line, trigger, pattern, action);
                    }
                }
                Err(msg) => self.err(r.line, format!("trigger `{trigger}`: {msg}")),
            },
        }
    }

    fn directive(&mut self, r: &Record) {
        let name = r.fields[0].to_ascii_uppercase();
        let args = &r.fields[1..];
        match name.as_str() {
            "$ORIGIN" => {
                let [arg] = args else {
                    self.err(r.line, format!("$ORIGIN takes one name; found {} fields", args.len()));
                    return;
                };
                let text = match (&self.current, arg.ends_with('.')) {
                    (_, true) => arg.clone(),
                    (Some(current), false) => format!("{arg}.{current}."),
                    (None, false) => {
                        self.err(r.line, format!("$ORIGIN `{arg}` must be absolute (end with `.`)"));
                        return;
                    }
                };
                if text == "." {
                    self.err(r.line, "$ORIGIN `.`: a policy zone cannot be the root");
                    return;
                }
                let name = match normalise(&text, false) {
                    Ok(n) => n,
                    Err(msg) => {
                        self.err(r.line, format!("$ORIGIN `{arg}`: {msg}"));
                        return;
                    }
                };
                match &self.origin {
                    None => self.origin = Some(name.clone()),
                    Some(origin) if !is_at_or_below(&name, origin) => {
                        let msg = format!("$ORIGIN `{name}.` is outside the zone `{origin}.`");
                        self.err(r.line, msg);
                        return;
                    }
                    Some(_) => {}
                }
                self.current = Some(name);
            }
            "$TTL" => match args {
                [ttl] if is_ttl(ttl) => {}
                [ttl] => self.err(r.line, format!("$TTL `{ttl}` is not valid: expected seconds or units like 1h30m")),
                _ => self.err(r.line, format!("$TTL takes one value; found {} fields", args.len())),
            },
            _ => self.err(r.line, format!("directive `{}` is not supported", r.fields[0])),
        }
    }

    /// The action of a CNAME record, or None after reporting why not.
    fn action(&mut self, line: usize, trigger: &str, rdata: &[&str], current: &str) -> Option<RpzAction> {
        let [target] = rdata else {
            let msg = if rdata.is_empty() {
                "CNAME has no target".to_string()
            } else {
                format!("CNAME takes one target; found {} fields", rdata.len())
            };
            self.err(line, format!("`{trigger}`: {msg}"));
            return None;
        };
        let lower = target.to_ascii_lowercase();
        let msg = match lower.as_str() {
            "." => return Some(RpzAction::Nxdomain),
            "rpz-drop." => return Some(RpzAction::Drop),
            "rpz-passthru." => return Some(RpzAction::Passthru),
            "*." => "action `CNAME *.` (NODATA) is not supported: use `CNAME .` or `CNAME rpz-drop.`".to_string(),
            "rpz-tcp-only." => "action `CNAME rpz-tcp-only.` is not supported".to_string(),
            "rpz-drop" | "rpz-passthru" | "rpz-tcp-only" | "*" => format!(
                "CNAME target `{target}` has no trailing dot, so it is a redirect to `{}`; write `{target}.`",
                absolute_text(target, current)
            ),
            _ if lower.strip_suffix('.') == Some(trigger) => {
                "CNAME to the trigger itself (the obsolete passthru form) is not supported: write `CNAME rpz-passthru.`"
                    .to_string()
            }
            _ => format!("CNAME to `{}` (redirect) is not supported", absolute_text(target, current)),
        };
        self.err(line, format!("`{trigger}`: {msg}"));
        None
    }

    fn add_domain(&mut self, line: usize, trigger: &str, pattern: DomainPattern, action: RpzAction) {
        match self.seen_domains.get(&pattern) {
            Some(&(a, _)) if a == action => {}
            Some(&(a, first)) => self.err(
                line,
                format!("trigger `{trigger}` is already listed at line {first} with action {a}; it has one action"),
            ),
            None => {
                self.seen_domains.insert(pattern.clone(), (action, line));
                self.domains.push(RpzDomainRule { pattern, action, line });
            }
        }
    }

    fn add_ip(&mut self, line: usize, trigger: &str, net: IpNet, direction: Direction, action: RpzAction) {
        let key = (net, direction == Direction::Src);
        match self.seen_ips.get(&key) {
            Some(&(a, _)) if a == action => {}
            Some(&(a, first)) => self.err(
                line,
                format!("trigger `{trigger}` is already listed at line {first} with action {a}; it has one action"),
            ),
            None => {
                self.seen_ips.insert(key, (action, line));
                self.ips.push(RpzIpRule { net, direction, action, line });
            }
        }
    }
}

/// `text` as an absolute name, lower-case, without the trailing dot.
fn absolute(text: &str, current: &str) -> String {
    let name = if text == "@" {
        current.to_string()
    } else if let Some(abs) = text.strip_suffix('.') {
        abs.to_string()
    } else {
        format!("{text}.{current}")
    };
    name.to_ascii_lowercase()
}

/// `text` as an absolute name for messages, with the trailing dot.
fn absolute_text(text: &str, current: &str) -> String {
    format!("{}.", absolute(text, current))
}

fn is_at_or_below(name: &str, origin: &str) -> bool {
    name == origin
        || (name.len() > origin.len()
            && name.ends_with(origin)
            && name.as_bytes()[name.len() - origin.len() - 1] == b'.')
}

/// Seconds (`300`) or BIND units (`1h30m`, `2d`, `1w`).
fn is_ttl(text: &str) -> bool {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u32>().is_ok();
    }
    let mut digits = false;
    for b in text.bytes() {
        match b {
            b'0'..=b'9' => digits = true,
            b's' | b'm' | b'h' | b'd' | b'w' | b'S' | b'M' | b'H' | b'D' | b'W' if digits => digits = false,
            _ => return false,
        }
    }
    !digits
}

fn is_class(text: &str) -> bool {
    ["IN", "CH", "CS", "HS"].iter().any(|c| text.eq_ignore_ascii_case(c))
}

enum Trigger {
    Name,
    Ip(Direction),
    Unsupported(&'static str),
}

fn trigger_kind(trigger: &str) -> Trigger {
    let last = trigger.rsplit('.').next().unwrap_or(trigger);
    match last {
        "rpz-ip" => Trigger::Ip(Direction::Dst),
        "rpz-client-ip" => Trigger::Ip(Direction::Src),
        "rpz-nsdname" => Trigger::Unsupported("rpz-nsdname"),
        "rpz-nsip" => Trigger::Unsupported("rpz-nsip"),
        _ => Trigger::Name,
    }
}

/// `name` or `*.name` (an RPZ wildcard: strictly below `name`).
fn domain_trigger(trigger: &str) -> Result<DomainPattern, String> {
    let (scope, rest) = match trigger.strip_prefix("*.") {
        Some(rest) => (DomainScope::Subdomains, rest),
        None => (DomainScope::Exact, trigger),
    };
    if rest.contains('*') {
        return Err("`*` is allowed only as the whole first label".to_string());
    }
    Ok(DomainPattern { name: normalise_name(rest)?, scope })
}

const IP_TRIGGER_FORM: &str =
    "expected `<prefix length>.<address, labels reversed>`, e.g. `32.1.2.0.192.rpz-ip` or `128.1.zz.db8.2001.rpz-ip`";

/// `<prefixlen>.<reversed address>.rpz-ip` (or `.rpz-client-ip`): IPv4 as
/// four decimal labels, IPv6 as hex groups with `zz` for the `::` run.
fn parse_ip_trigger(trigger: &str) -> Result<IpNet, String> {
    let mut labels: Vec<&str> = trigger.split('.').collect();
    labels.pop(); // rpz-ip / rpz-client-ip
    let Some((&len, reversed)) = labels.split_first() else {
        return Err(IP_TRIGGER_FORM.to_string());
    };
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || reversed.is_empty() {
        return Err(IP_TRIGGER_FORM.to_string());
    }
    let len: u8 = len.parse().map_err(|_| format!("prefix length {len} is out of range"))?;
    let groups: Vec<&str> = reversed.iter().rev().copied().collect();
    let is_v4 = groups.len() == 4 && groups.iter().all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()));
    if !is_v4
        && !groups.iter().any(|g| g.eq_ignore_ascii_case("zz"))
        && groups.iter().all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()) && g.len() <= 3)
        && groups.len() < 8
    {
        return Err(format!("an IPv4 trigger has 4 address labels; found {}; {IP_TRIGGER_FORM}", groups.len()));
    }
    let addr = if is_v4 {
        let mut octets = [0u8; 4];
        for (o, g) in octets.iter_mut().zip(&groups) {
            *o = g.parse().map_err(|_| format!("`{g}` is not an IPv4 address byte (0-255)"))?;
        }
        IpAddr::V4(Ipv4Addr::from(octets))
    } else {
        IpAddr::V6(parse_v6_groups(&groups)?)
    };
    let max = if is_v4 { 32 } else { 128 };
    if len == 0 || len > max {
        return Err(format!(
            "prefix length {len} is out of range: 1-{max} for {}",
            if is_v4 { "IPv4" } else { "IPv6" }
        ));
    }
    let net = IpNet::new(addr, len).map_err(|e| e.to_string())?;
    if net.trunc() != net {
        return Err(format!("{net} has host bits set; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

/// IPv6 groups in address order; one `zz` stands for the `::` run.
fn parse_v6_groups(groups: &[&str]) -> Result<Ipv6Addr, String> {
    let mut head: Vec<u16> = Vec::new();
    let mut tail: Vec<u16> = Vec::new();
    let mut gap = false;
    for g in groups {
        if g.eq_ignore_ascii_case("zz") {
            if gap {
                return Err("`zz` (the `::` run) appears twice".to_string());
            }
            gap = true;
            continue;
        }
        if g.is_empty() || g.len() > 4 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{g}` is not an IPv6 group (1-4 hex digits) nor `zz`; {IP_TRIGGER_FORM}"));
        }
        let v = u16::from_str_radix(g, 16).map_err(|e| e.to_string())?;
        if gap {
            tail.push(v)
        } else {
            head.push(v)
        }
    }
    let n = head.len() + tail.len();
    if (gap && n >= 8) || (!gap && n != 8) {
        return Err(format!(
            "{} IPv6 groups{}: an address has 8 (use `zz` for a run of zeros); {IP_TRIGGER_FORM}",
            n,
            if gap { " besides `zz`" } else { "" }
        ));
    }
    let mut words = [0u16; 8];
    words[..head.len()].copy_from_slice(&head);
    words[8 - tail.len()..].copy_from_slice(&tail);
    Ok(Ipv6Addr::from(words))
}
