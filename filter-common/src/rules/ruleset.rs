//! The evaluated rule set: what is in force, with a rule id per entry.
use chrono::{DateTime, Utc};
use ipnet::IpNet;

use super::domain::DomainPattern;
use super::order_file::{Action, Category, EntryKind, Order};
use crate::maps::{FRAG_DROP_ALL, FRAG_DROP_NON_FIRST, FRAG_PASS, MAX_L4_RULES, MAX_L7_PORTS, MAX_RULE_IDS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Src,
    Dst,
    Both,
}

impl Direction {
    pub fn matches_src(self) -> bool {
        matches!(self, Direction::Src | Direction::Both)
    }
    pub fn matches_dst(self) -> bool {
        matches!(self, Direction::Dst | Direction::Both)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Any,
    Nets(Vec<IpNet>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { min: 0, max: u16::MAX };

    pub fn contains(self, port: u16) -> bool {
        self.min <= port && port <= self.max
    }

    /// `11211`, `"11211"` or `"1024-65535"`.
    pub fn from_toml(v: &toml::Value) -> Result<PortRange, String> {
        match v {
            toml::Value::Integer(n) => match u16::try_from(*n) {
                Ok(p) => Ok(PortRange { min: p, max: p }),
                Err(_) => Err(format!("port {n} is not in 0-65535")),
            },
            toml::Value::String(s) => PortRange::parse(s),
            other => Err(format!("port {other}: use a number or \"min-max\"")),
        }
    }

    pub fn parse(s: &str) -> Result<PortRange, String> {
        let port = |t: &str| t.trim().parse::<u16>().map_err(|_| format!("`{s}` is not a port or port range (0-65535, \"min-max\")"));
        let r = match s.split_once('-') {
            Some((a, b)) => PortRange { min: port(a)?, max: port(b)? },
            None => {
                let p = port(s)?;
                PortRange { min: p, max: p }
            }
        };
        if r.min > r.max {
            return Err(format!("port range `{s}` is empty (min > max)"));
        }
        Ok(r)
    }
}

/// `(flags & mask) == value` on the TCP flag byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFlags {
    pub mask: u8,
    pub value: u8,
}

impl TcpFlags {
    /// Comma-separated flag names; `!` means "must be clear". `"syn,!ack"`
    /// matches a connection-opening SYN.
    pub fn parse(s: &str) -> Result<TcpFlags, String> {
        let mut f = TcpFlags { mask: 0, value: 0 };
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let (clear, name) = match word.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, word),
            };
            let bit = match name.to_ascii_lowercase().as_str() {
                "fin" => 0x01,
                "syn" => 0x02,
                "rst" => 0x04,
                "psh" => 0x08,
                "ack" => 0x10,
                "urg" => 0x20,
                "ece" => 0x40,
                "cwr" => 0x80,
                _ => return Err(format!("tcp flag `{name}`: use fin, syn, rst, psh, ack, urg, ece, cwr, prefixed by ! for clear")),
            };
            if f.mask & bit != 0 {
                return Err(format!("tcp flag `{name}` given twice"));
            }
            f.mask |= bit;
            if !clear {
                f.value |= bit;
            }
        }
        if f.mask == 0 {
            return Err("tcp_flags is empty".into());
        }
        Ok(f)
    }
}

/// Provenance of a rule id: which order and entry it enforces.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleInfo {
    pub id: u32,
    pub order_id: String,
    pub authority: String,
    pub category: Category,
    pub dry_run: bool,
    pub file: std::path::PathBuf,
    pub line: usize,
    pub comment: Option<String>,
}

/// Block an address range as source and/or destination.
#[derive(Clone, Debug, PartialEq)]
pub struct PrefixRule {
    pub rule_id: u32,
    pub net: IpNet,
    pub direction: Direction,
    pub dry_run: bool,
}

/// What a rate-limit bucket is kept per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RatePer {
    /// One bucket for everything the rule matches.
    Rule,
    /// Per source address aggregated to these prefix lengths.
    Source { v4: u8, v6: u8 },
    /// Per destination address (a protected host).
    Destination,
    /// Per source address, protocol and destination port.
    Flow,
}

/// `rate_limit = { per = "destination", pps = 10000, ... }` on an L4
/// entry: a token bucket per `per` key; packets within the rate go on to
/// the next rules, the excess is dropped (or only counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimitSpec {
    pub per: RatePer,
    /// Packets per second; `None`: no packet limit.
    pub pps: Option<u64>,
    /// Bits per second (whole frames); `None`: no bit limit.
    pub bps: Option<u64>,
    /// Bucket sizes (default: one second at the rate).
    pub burst_packets: u64,
    pub burst_bits: u64,
    /// `action = "count"`: the excess is counted, not dropped.
    pub count_only: bool,
}

/// Largest rate or burst accepted: buckets are kept in nanosecond-scaled
/// 64-bit credit.
pub const MAX_RATE: u64 = 10_000_000_000;

impl RateLimitSpec {
    /// Parses the inline table; errors name the key.
    pub fn from_toml(v: &toml::Value) -> Result<RateLimitSpec, String> {
        let toml::Value::Table(t) = v else { return Err("rate_limit: expected a table, e.g. { per = \"destination\", pps = 10000 }".into()) };
        for key in t.keys() {
            if !["per", "pps", "bps", "burst_packets", "burst_bits", "action", "source_prefix_v4", "source_prefix_v6"].contains(&key.as_str()) {
                return Err(format!("rate_limit.{key}: unknown key (per, pps, bps, burst_packets, burst_bits, action, source_prefix_v4, source_prefix_v6)"));
            }
        }
        let num = |key: &str| -> Result<Option<u64>, String> {
            match t.get(key) {
                None => Ok(None),
                Some(toml::Value::Integer(n)) if *n > 0 && (*n as u64) <= MAX_RATE => Ok(Some(*n as u64)),
                Some(other) => Err(format!("rate_limit.{key}: {other} is not a whole number in 1..={MAX_RATE}")),
            }
        };
        let len = |key: &str, max: u8, default: u8| -> Result<u8, String> {
            match t.get(key) {
                None => Ok(default),
                Some(toml::Value::Integer(n)) if (0..=max as i64).contains(n) => Ok(*n as u8),
                Some(other) => Err(format!("rate_limit.{key}: {other} is not a prefix length 0-{max}")),
            }
        };
        let per = match t.get("per").and_then(|v| v.as_str()) {
            Some("rule") => RatePer::Rule,
            Some("source") => RatePer::Source { v4: len("source_prefix_v4", 32, 32)?, v6: len("source_prefix_v6", 128, 64)? },
            Some("destination") => RatePer::Destination,
            Some("flow") => RatePer::Flow,
            Some(other) => return Err(format!("rate_limit.per: `{other}`: use rule, source, destination or flow")),
            None => return Err("rate_limit.per: missing (rule, source, destination or flow)".into()),
        };
        if !matches!(per, RatePer::Source { .. }) && (t.contains_key("source_prefix_v4") || t.contains_key("source_prefix_v6")) {
            return Err("rate_limit.source_prefix_v4/v6: only with per = \"source\"".into());
        }
        let (pps, bps) = (num("pps")?, num("bps")?);
        if pps.is_none() && bps.is_none() {
            return Err("rate_limit: give pps, bps or both".into());
        }
        let burst_packets = num("burst_packets")?.or(pps).unwrap_or(0);
        let burst_bits = num("burst_bits")?.or(bps).unwrap_or(0);
        if t.contains_key("burst_packets") && pps.is_none() {
            return Err("rate_limit.burst_packets: needs pps".into());
        }
        if t.contains_key("burst_bits") && bps.is_none() {
            return Err("rate_limit.burst_bits: needs bps".into());
        }
        let count_only = match t.get("action").and_then(|v| v.as_str()) {
            None | Some("drop") => false,
            Some("count") => true,
            Some(other) => return Err(format!("rate_limit.action: `{other}`: use drop or count")),
        };
        Ok(RateLimitSpec { per, pps, bps, burst_packets, burst_bits, count_only })
    }
}

/// One L4 rule slot. Slots are evaluated in order; an order entry with
/// several port ranges expands into several slots sharing its rule id.
#[derive(Clone, Debug, PartialEq)]
pub struct L4Slot {
    pub rule_id: u32,
    pub dry_run: bool,
    /// `None` = any protocol.
    pub protocol: Option<u8>,
    pub source: Scope,
    pub destination: Scope,
    pub src_ports: Option<PortRange>,
    pub dst_ports: Option<PortRange>,
    pub tcp_flags: Option<TcpFlags>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// A rate limit instead of a plain drop.
    pub rate_limit: Option<RateLimitSpec>,
    /// Matches fragments only (first and non-first).
    pub fragments: bool,
    /// The first slot of this slot's entry: the slots of one entry (one
    /// per port range) share its rate-limit buckets, so `pps = 200` on an
    /// entry listing several ports is 200 in all, not 200 per port.
    pub bucket: u16,
    /// SYN authentication instead of a drop (`maps::L4_SYN_AUTH`).
    pub syn_auth: bool,
}

impl L4Slot {
    /// Whether the rule looks inside the transport header; such rules never
    /// match non-first fragments, which have none.
    pub fn needs_header(&self) -> bool {
        self.src_ports.is_some()
            || self.dst_ports.is_some()
            || self.tcp_flags.is_some()
            || self.icmp_type.is_some()
            || self.icmp_code.is_some()
            || self.syn_auth
    }
}

/// What a domain rule does to a matching name.
///
/// For a DNS query the kernel drops it or answers it; a TLS ClientHello or
/// an HTTP request naming a blocked name is dropped with the rest of its
/// connection whatever the action (there is nothing to answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DomainAction {
    /// Drop the query (the client times out and retries elsewhere).
    Drop,
    /// Answer NXDOMAIN ("no such name") from the kernel.
    Nxdomain,
    /// Answer REFUSED from the kernel.
    Refused,
    /// Allowlist (RPZ `passthru`): the name passes whatever less specific
    /// rules say.
    Pass,
}

impl DomainAction {
    /// `drop`, `nxdomain`, `refused`, `pass`.
    pub fn name(self) -> &'static str {
        match self {
            DomainAction::Drop => "drop",
            DomainAction::Nxdomain => "nxdomain",
            DomainAction::Refused => "refused",
            DomainAction::Pass => "pass",
        }
    }

    /// The `DOMAIN_*` action code of the kernel map.
    pub fn code(self) -> u8 {
        match self {
            DomainAction::Drop => crate::maps::DOMAIN_DROP,
            DomainAction::Nxdomain => crate::maps::DOMAIN_NXDOMAIN,
            DomainAction::Refused => crate::maps::DOMAIN_REFUSED,
            DomainAction::Pass => crate::maps::DOMAIN_PASS,
        }
    }
}

/// Block (or allow) a domain name pattern in DNS queries, TLS SNI and
/// HTTP Host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRule {
    pub rule_id: u32,
    pub pattern: DomainPattern,
    pub action: DomainAction,
    pub dry_run: bool,
}

/// An attack signature in force.
#[derive(Clone, Debug, PartialEq)]
pub struct SignatureRule {
    pub rule_id: u32,
    pub sig: std::sync::Arc<crate::signatures::Signature>,
    /// A `drop` rule of an order that is not a dry run: matches drop
    /// (and may ban). Otherwise matches are only counted.
    pub enforce: bool,
}

/// How the signature stage scans (agent configuration `[signatures]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureSettings {
    /// Payload bytes scanned in the kernel.
    pub scan_bytes: u32,
    /// Deep-inspection events per second and CPU (0: none).
    pub event_rate: u32,
    /// Patterns that send a packet to deep inspection when no signature
    /// decided it (compared ASCII-case-insensitively).
    pub hints: Vec<Vec<u8>>,
}

/// Hints that catch what Log4Shell and Spring4Shell obfuscations keep:
/// a lookup's `${` (raw, or percent-encoded once or twice), the
/// class-loader property path, and a percent-encoded dot (property paths
/// spelled `%63lass%2E%6Dodule...`).
pub const DEFAULT_SIGNATURE_HINTS: &[&str] = &["${", "%24%7b", "%24{", "$%7b", "%2524", "classloader", "%2e", "class["];

impl Default for SignatureSettings {
    fn default() -> Self {
        SignatureSettings {
            scan_bytes: crate::maps::SIG_SCAN_MIN,
            event_rate: 100,
            hints: DEFAULT_SIGNATURE_HINTS.iter().map(|h| h.as_bytes().to_vec()).collect(),
        }
    }
}

/// Which destination ports the data plane reads names on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    Dns,
    Tls,
    Http,
}

impl PortKind {
    /// The configuration key: `dns_ports`, `tls_ports`, `http_ports`.
    pub fn key(self) -> &'static str {
        match self {
            PortKind::Dns => "dns_ports",
            PortKind::Tls => "tls_ports",
            PortKind::Http => "http_ports",
        }
    }
}

/// Settings that are not orders but change verdicts (agent configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Management networks and BGP peers: always passed.
    pub allow: Vec<IpNet>,
    /// Drop malformed packets instead of passing them.
    pub fail_closed: bool,
    /// `FRAG_*` per IP protocol number.
    pub fragment_policy: [u8; 256],
    /// Destination ports of DNS (UDP and TCP), TLS and HTTP where domain
    /// names are read; at most [`MAX_L7_PORTS`] each, none 0 (see
    /// [`Settings::set_ports`]).
    pub dns_ports: Vec<u16>,
    pub tls_ports: Vec<u16>,
    pub http_ports: Vec<u16>,
    /// Seeds of the domain name hashes (`crate::names`): random per
    /// installation, constant while the kernel's `DOMAINS` map lives.
    pub name_seeds: [u64; 2],
    pub signatures: SignatureSettings,
    /// Protected prefix groups (`[[protect]]`): name and prefixes. Traffic
    /// toward them is accounted per group for the agent's detection.
    pub protect: Vec<(String, Vec<IpNet>)>,
    /// UDP source ports counted as reflection (at most
    /// `MAX_REFLECT_PORTS`, none 0).
    pub reflection_ports: Vec<u16>,
    /// Sample one packet in this many per CPU for `filter-agent top` (0: off).
    pub sample_every: u32,
    /// How long a source that answered a SYN cookie stays verified
    /// (`syn_auth` rules), seconds.
    pub syn_auth_seconds: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow: Vec::new(),
            fail_closed: false,
            fragment_policy: [FRAG_PASS; 256],
            dns_ports: vec![53],
            tls_ports: vec![443],
            http_ports: vec![80],
            name_seeds: [0; 2],
            signatures: SignatureSettings::default(),
            protect: Vec::new(),
            reflection_ports: crate::maps::DEFAULT_REFLECT_PORTS.to_vec(),
            sample_every: 0,
            syn_auth_seconds: crate::maps::DEFAULT_SYN_AUTH_SECONDS,
        }
    }
}

impl Settings {
    /// Sets the ports of one kind: at most [`MAX_L7_PORTS`], each 1-65535,
    /// none twice. An empty list turns that kind of name lookup off.
    pub fn set_ports(&mut self, kind: PortKind, ports: &[u16]) -> Result<(), String> {
        check_ports(kind, ports)?;
        *self.ports_mut(kind) = ports.to_vec();
        Ok(())
    }

    pub fn ports(&self, kind: PortKind) -> &[u16] {
        match kind {
            PortKind::Dns => &self.dns_ports,
            PortKind::Tls => &self.tls_ports,
            PortKind::Http => &self.http_ports,
        }
    }

    fn ports_mut(&mut self, kind: PortKind) -> &mut Vec<u16> {
        match kind {
            PortKind::Dns => &mut self.dns_ports,
            PortKind::Tls => &mut self.tls_ports,
            PortKind::Http => &mut self.http_ports,
        }
    }

    /// The ports of every kind as the kernel takes them (0 = unused slot),
    /// or the first problem.
    pub fn l7_ports(&self) -> Result<[[u16; MAX_L7_PORTS]; 3], String> {
        let mut out = [[0u16; MAX_L7_PORTS]; 3];
        for (i, kind) in [PortKind::Dns, PortKind::Tls, PortKind::Http].into_iter().enumerate() {
            let ports = self.ports(kind);
            check_ports(kind, ports)?;
            out[i][..ports.len()].copy_from_slice(ports);
        }
        Ok(out)
    }

    /// The reflection ports as the kernel takes them (0 = unused slot).
    pub fn reflect_ports(&self) -> Result<[u16; crate::maps::MAX_REFLECT_PORTS], String> {
        let ports = &self.reflection_ports;
        if ports.len() > crate::maps::MAX_REFLECT_PORTS {
            return Err(format!("reflection_ports: {} ports; the data plane watches {}", ports.len(), crate::maps::MAX_REFLECT_PORTS));
        }
        if ports.contains(&0) {
            return Err("reflection_ports: port 0 is not a port".into());
        }
        let mut out = [0u16; crate::maps::MAX_REFLECT_PORTS];
        out[..ports.len()].copy_from_slice(ports);
        Ok(out)
    }

    /// Parses `proto=policy[,proto=policy...]`, protocols by name
    /// (tcp, udp, icmp, icmpv6, other = every protocol not named) or number,
    /// policies `pass`, `drop-non-first`, `drop-all`.
    pub fn set_fragment_policy(&mut self, spec: &str) -> Result<(), String> {
        let mut named = [false; 256];
        let mut other = None;
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (proto, policy) = item.split_once('=').ok_or_else(|| format!("`{item}`: expected protocol=policy"))?;
            let policy = match policy.trim() {
                "pass" => FRAG_PASS,
                "drop-non-first" => FRAG_DROP_NON_FIRST,
                "drop-all" => FRAG_DROP_ALL,
                p => return Err(format!("fragment policy `{p}`: use pass, drop-non-first or drop-all")),
            };
            let proto = match proto.trim() {
                "tcp" => 6u8,
                "udp" => 17,
                "icmp" => 1,
                "icmpv6" => 58,
                "other" => {
                    other = Some(policy);
                    continue;
                }
                n => n.parse::<u8>().map_err(|_| format!("protocol `{n}`: use tcp, udp, icmp, icmpv6, other or 0-255"))?,
            };
            self.fragment_policy[proto as usize] = policy;
            named[proto as usize] = true;
        }
        if let Some(policy) = other {
            for (p, slot) in self.fragment_policy.iter_mut().enumerate() {
                if !named[p] {
                    *slot = policy;
                }
            }
        }
        Ok(())
    }
}

fn check_ports(kind: PortKind, ports: &[u16]) -> Result<(), String> {
    let key = kind.key();
    if ports.len() > MAX_L7_PORTS {
        return Err(format!("{key}: {} ports; the data plane reads names on at most {MAX_L7_PORTS} ports of each kind", ports.len()));
    }
    if ports.contains(&0) {
        return Err(format!("{key}: port 0 is not a port"));
    }
    if let Some(p) = ports.iter().enumerate().find_map(|(i, p)| ports[..i].contains(p).then_some(p)) {
        return Err(format!("{key}: port {p} listed twice"));
    }
    Ok(())
}

/// Everything in force at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    pub settings: Settings,
    pub prefixes: Vec<PrefixRule>,
    pub l4: Vec<L4Slot>,
    /// Domain rules, in order and entry order (one per name of an entry).
    pub domains: Vec<DomainRule>,
    /// Attack signatures, in evaluation order (order, then pack order).
    pub signatures: Vec<SignatureRule>,
    /// Provenance of every rule id, sorted by id.
    pub rules: Vec<RuleInfo>,
}

impl RuleSet {
    /// Rule ids are given in order-file order to the entries of orders
    /// active at `now`.
    pub fn build(settings: Settings, orders: &[Order], now: DateTime<Utc>) -> Result<RuleSet, String> {
        let mut next = 0u32;
        Self::build_with(settings, orders, now, |_, _| {
            next += 1;
            Ok(next)
        })
    }

    /// Like [`RuleSet::build`], with rule ids chosen by `id_for(order,
    /// entry index)` (the agent keeps them stable across reloads so
    /// per-order counters continue). Ids must be unique, 1..MAX_RULE_IDS.
    pub fn build_with<'a>(
        settings: Settings,
        orders: impl IntoIterator<Item = &'a Order>,
        now: DateTime<Utc>,
        mut id_for: impl FnMut(&Order, usize) -> Result<u32, String>,
    ) -> Result<RuleSet, String> {
        let mut rs = RuleSet { settings, ..RuleSet::default() };
        for order in orders.into_iter().filter(|o| o.is_active(now)) {
            let dry_run = order.action == Action::DryRun;
            for (index, entry) in order.entries.iter().enumerate() {
                let rule_id = id_for(order, index)?;
                if rule_id == 0 || rule_id >= MAX_RULE_IDS {
                    return Err(format!("rule id {rule_id} out of range (more than {} rule entries in force?)", MAX_RULE_IDS - 1));
                }
                rs.rules.push(RuleInfo {
                    id: rule_id,
                    order_id: order.id.clone(),
                    authority: order.authority.clone(),
                    category: order.category,
                    dry_run,
                    file: order.file.clone(),
                    line: entry.line,
                    comment: entry.comment.clone(),
                });
                match &entry.kind {
                    EntryKind::Prefixes { nets, direction } => {
                        rs.prefixes.extend(nets.iter().map(|&net| PrefixRule { rule_id, net, direction: *direction, dry_run }));
                    }
                    EntryKind::Domains { patterns, action } => {
                        rs.domains.extend(patterns.iter().map(|pattern| DomainRule {
                            rule_id,
                            pattern: pattern.clone(),
                            action: *action,
                            dry_run,
                        }));
                    }
                    EntryKind::Signature(sig) => {
                        let enforce = !dry_run && sig.action == crate::signatures::SigAction::Drop;
                        rs.signatures.push(SignatureRule { rule_id, sig: sig.clone(), enforce });
                    }
                    EntryKind::L4(l4) => {
                        let some_or_any = |v: &Vec<PortRange>| if v.is_empty() { vec![None] } else { v.iter().copied().map(Some).collect() };
                        let bucket = rs.l4.len().min(u16::MAX as usize) as u16;
                        for src_ports in some_or_any(&l4.source_ports) {
                            for dst_ports in some_or_any(&l4.destination_ports) {
                                rs.l4.push(L4Slot {
                                    rule_id,
                                    dry_run,
                                    protocol: Some(l4.protocol),
                                    source: l4.source.clone(),
                                    destination: l4.destination.clone(),
                                    src_ports,
                                    dst_ports,
                                    tcp_flags: l4.tcp_flags,
                                    icmp_type: l4.icmp_type,
                                    icmp_code: l4.icmp_code,
                                    rate_limit: l4.rate_limit,
                                    fragments: l4.fragments,
                                    bucket,
                                    syn_auth: l4.syn_auth,
                                });
                            }
                        }
                    }
                }
            }
        }
        if rs.l4.len() > MAX_L4_RULES as usize {
            return Err(format!("{} L4 rule slots in force; the data plane holds {MAX_L4_RULES} (each port range of an entry is a slot)", rs.l4.len()));
        }
        if rs.signatures.len() > crate::maps::MAX_SIG_RULES as usize {
            return Err(format!("{} signatures in force; the data plane holds {}", rs.signatures.len(), crate::maps::MAX_SIG_RULES));
        }
        rs.rules.sort_by_key(|r| r.id);
        if let Some(w) = rs.rules.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(format!("rule id {} given twice", w[0].id));
        }
        Ok(rs)
    }

    /// Highest rule id in use (0 if none).
    pub fn max_rule_id(&self) -> u32 {
        self.rules.last().map_or(0, |r| r.id)
    }

    pub fn rule(&self, id: u32) -> Option<&RuleInfo> {
        self.rules.binary_search_by_key(&id, |r| r.id).ok().map(|i| &self.rules[i])
    }
}
