//! `agent.toml`: everything `filter-agent run` needs. Unknown keys and bad
//! values are errors naming the key path; nothing starts on a bad config.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use filter_common::rules::feeds::FeedFormat;
use filter_common::rules::order_file::{parse_dns_answer, parse_net, Action, Category};
use filter_common::rules::ruleset::{DomainAction, PortKind};
use filter_common::rules::{Direction, Settings};
use serde::Deserialize;

use crate::dataplane::{AttachMode, Capacity};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    /// Name of this agent's directory under `bpffs`.
    #[serde(default = "default_instance")]
    instance: String,
    interfaces: Vec<String>,
    #[serde(default = "default_mode")]
    attach_mode: AttachMode,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    fail_closed: bool,
    #[serde(default)]
    fragment_policy: String,
    /// Destination ports where domain names are read (see `Settings`).
    dns_ports: Option<Vec<u16>>,
    tls_ports: Option<Vec<u16>>,
    http_ports: Option<Vec<u16>>,
    #[serde(default = "default_rules")]
    rules: Vec<PathBuf>,
    #[serde(default)]
    feed: Vec<RawFeed>,
    #[serde(default = "default_metrics")]
    metrics: SocketAddr,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default = "default_bpffs")]
    bpffs: PathBuf,
    #[serde(default)]
    capacity: RawCapacity,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default)]
    authority: Vec<RawAuthority>,
    #[serde(default)]
    signatures: Option<RawSignatures>,
    /// Protected prefix groups: traffic toward them is accounted per group.
    #[serde(default)]
    protect: Vec<RawProtect>,
    /// UDP source ports counted as reflection toward protected prefixes.
    reflection_ports: Option<Vec<u16>>,
    /// Sample one packet in this many per CPU for `filter-agent top` (0: off).
    #[serde(default = "default_sample_every")]
    sample_every: u32,
    /// Seconds a source that answered a SYN cookie stays verified.
    #[serde(default = "default_syn_auth_seconds")]
    syn_auth_seconds: u32,
    /// Attack detection policies over the protected groups' traffic.
    #[serde(default)]
    ddos_policy: Vec<RawPolicy>,
}

/// `[[ddos_policy]]`: when a protected group's rate stays above a
/// threshold, the agent installs a mitigation (`crate::ddos`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    prefix_group: String,
    metric: String,
    threshold: f64,
    #[serde(default = "default_for_seconds")]
    for_seconds: u32,
    #[serde(default = "default_hold_down")]
    hold_down_seconds: u32,
    /// An L4 order entry (order-file syntax) without `destination`.
    mitigation: toml::Table,
}

fn default_for_seconds() -> u32 {
    3
}
fn default_hold_down() -> u32 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtect {
    name: String,
    prefixes: Vec<String>,
}

/// One packet in 1000 per CPU: at 10 Mpps, 10,000 samples a second for
/// `filter-agent top`; a few nanoseconds per packet.
pub const DEFAULT_SAMPLE_EVERY: u32 = 1000;

fn default_syn_auth_seconds() -> u32 {
    filter_common::maps::DEFAULT_SYN_AUTH_SECONDS
}

fn default_sample_every() -> u32 {
    DEFAULT_SAMPLE_EVERY
}

/// `[signatures]`: attack signature packs and how they are scanned.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignatures {
    packs: Vec<PathBuf>,
    /// `HOME_NET = "[198.18.0.0/15]"`...: the packs' address and port variables.
    #[serde(default)]
    vars: std::collections::BTreeMap<String, String>,
    /// Load packs whose rules use unsupported keywords, leaving those rules out.
    #[serde(default)]
    skip_unsupported: bool,
    /// `drop` (rules act as written) or `dry-run` (every rule only counts).
    #[serde(default = "default_action")]
    action: Action,
    #[serde(default = "default_scan_bytes")]
    scan_bytes: u32,
    #[serde(default = "default_event_rate")]
    event_rate: u32,
    /// Patterns that send an undecided packet to deep inspection.
    hints: Option<Vec<String>>,
}

fn default_scan_bytes() -> u32 {
    filter_common::maps::SIG_SCAN_MIN
}
fn default_event_rate() -> u32 {
    100
}

/// Signature packs declared in the config.
#[derive(Clone, Debug, PartialEq)]
pub struct SignaturePacks {
    pub packs: Vec<PathBuf>,
    pub vars: std::collections::HashMap<String, String>,
    pub skip_unsupported: bool,
    pub action: Action,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: SocketAddr,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "default_max_entries")]
    max_entries: usize,
    #[serde(default)]
    client: Vec<RawClient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: String,
    role: String,
    token_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthority {
    name: String,
    public_key: String,
}

fn default_max_body() -> usize {
    1 << 20
}
fn default_max_entries() -> usize {
    10_000
}

/// What an API client may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Push and revoke orders of this authority only (signed).
    Authority(String),
    /// Push `operator` and `attack` orders, read everything.
    Operator,
    /// Read only.
    Reader,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the bearer token, lowercase hex: tokens are never stored.
    pub token_sha256: String,
}

#[derive(Clone, Debug)]
pub struct Api {
    pub listen: SocketAddr,
    /// (certificate chain, private key) in PEM; without them the API is
    /// plain HTTP and must listen on loopback.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_body_bytes: usize,
    pub max_entries: usize,
    pub clients: Vec<Client>,
}

#[derive(Clone, Debug)]
pub struct Authority {
    pub name: String,
    pub public_key: ed25519_dalek::VerifyingKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    id: String,
    format: String,
    path: PathBuf,
    category: Category,
    provenance: String,
    #[serde(default = "default_action")]
    action: Action,
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    dns_answer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapacity {
    #[serde(default = "default_v4")]
    prefixes_v4: u32,
    #[serde(default = "default_v6")]
    prefixes_v6: u32,
    #[serde(default = "default_groups")]
    v4_groups: u32,
    #[serde(default = "default_domains")]
    domains: u32,
    #[serde(default = "default_flows")]
    flows: u32,
    #[serde(default = "default_sig_transitions")]
    signature_transitions: u32,
    #[serde(default = "default_bans")]
    bans: u32,
    #[serde(default = "default_rl_buckets")]
    rate_limit_buckets: u32,
}

fn default_rl_buckets() -> u32 {
    filter_common::maps::DEFAULT_RL_CAPACITY
}

fn default_sig_transitions() -> u32 {
    filter_common::maps::DEFAULT_SIG_TRANSITIONS
}
fn default_bans() -> u32 {
    filter_common::maps::DEFAULT_BAN_CAPACITY
}

impl Default for RawCapacity {
    fn default() -> Self {
        RawCapacity {
            prefixes_v4: default_v4(),
            prefixes_v6: default_v6(),
            v4_groups: default_groups(),
            domains: default_domains(),
            flows: default_flows(),
            signature_transitions: default_sig_transitions(),
            bans: default_bans(),
            rate_limit_buckets: default_rl_buckets(),
        }
    }
}

fn default_instance() -> String {
    "edgefilter".into()
}
fn default_mode() -> AttachMode {
    AttachMode::Auto
}
fn default_rules() -> Vec<PathBuf> {
    vec![PathBuf::from("/etc/edgefilter/rules")]
}
fn default_metrics() -> SocketAddr {
    "127.0.0.1:9960".parse().expect("constant")
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/edgefilter")
}
fn default_bpffs() -> PathBuf {
    PathBuf::from("/sys/fs/bpf")
}
fn default_action() -> Action {
    Action::Drop
}
fn default_v4() -> u32 {
    filter_common::maps::DEFAULT_PREFIX_V4_CAPACITY
}
fn default_v6() -> u32 {
    filter_common::maps::DEFAULT_PREFIX_V6_CAPACITY
}
fn default_groups() -> u32 {
    filter_common::maps::DEFAULT_V4_GROUPS
}
fn default_domains() -> u32 {
    filter_common::maps::DEFAULT_DOMAIN_CAPACITY
}
fn default_flows() -> u32 {
    filter_common::maps::DEFAULT_FLOW_CAPACITY
}

/// What a feed file holds and how it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedKind {
    /// A prefix list (`plain`, `spamhaus-drop`, `spamhaus-json`, `netset`).
    Prefixes(FeedFormat),
    /// A Response Policy Zone (`rpz`): names and addresses, each with its action.
    Rpz,
    /// A hosts-format blocklist (`hosts`): exact names.
    Hosts,
}

impl FeedKind {
    /// Every `format = "..."` name.
    pub const NAMES: [&'static str; 6] = ["plain", "spamhaus-drop", "spamhaus-json", "netset", "rpz", "hosts"];

    pub fn parse(name: &str) -> Option<FeedKind> {
        match name {
            "rpz" => Some(FeedKind::Rpz),
            "hosts" => Some(FeedKind::Hosts),
            other => FeedFormat::ALL.into_iter().find(|f| f.name() == other).map(FeedKind::Prefixes),
        }
    }

    /// The `format` name.
    pub fn name(self) -> &'static str {
        match self {
            FeedKind::Prefixes(f) => f.name(),
            FeedKind::Rpz => "rpz",
            FeedKind::Hosts => "hosts",
        }
    }
}

impl std::fmt::Display for FeedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A blocklist feed declared in the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Feed {
    pub id: String,
    pub format: FeedKind,
    pub path: PathBuf,
    pub category: Category,
    pub provenance: String,
    pub action: Action,
    /// Prefix feeds: which address of a packet the prefixes match.
    pub direction: Direction,
    /// Hosts feeds: the DNS answer for the listed names (default NXDOMAIN).
    pub dns_answer: DomainAction,
}

/// Where rules come from: order directories and feeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Sources {
    pub order_dirs: Vec<PathBuf>,
    pub feeds: Vec<Feed>,
    pub signatures: Option<SignaturePacks>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub instance: String,
    pub interfaces: Vec<String>,
    pub attach_mode: AttachMode,
    pub settings: Settings,
    pub sources: Sources,
    pub metrics: SocketAddr,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub capacity: Capacity,
    pub api: Option<Api>,
    pub authorities: Vec<Authority>,
    /// Attack detection policies (`[[ddos_policy]]`).
    pub ddos: Vec<crate::ddos::Policy>,
}

impl Config {
    /// `bpffs/instance`: where the program's links and maps are pinned.
    pub fn pin_dir(&self) -> PathBuf {
        self.bpffs.join(&self.instance)
    }
}

pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("{}: invalid configuration", path.display()))
}

/// Parses a config; relative paths are taken from `base` (the config's
/// directory), so a config works wherever the agent is started from.
pub fn parse(text: &str, base: &Path) -> Result<Config> {
    let de = toml::Deserializer::parse(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
    let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.message().trim().to_string();
        let line = inner.span().map(|s| filter_common::rules::error::line_of(text, s.start));
        match line {
            Some(l) => anyhow::anyhow!("line {l}: {path}: {msg}"),
            None => anyhow::anyhow!("{path}: {msg}"),
        }
    })?;
    let mut errors = Vec::new();
    if raw.instance.is_empty() || !raw.instance.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        errors.push(format!("instance: `{}` must be letters, digits, - or _", raw.instance));
    }
    if raw.interfaces.is_empty() {
        errors.push("interfaces: at least one interface to protect".to_string());
    }
    for (i, name) in raw.interfaces.iter().enumerate() {
        if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
            errors.push(format!("interfaces[{i}]: `{name}` is not an interface name"));
        }
    }
    let mut settings = Settings { fail_closed: raw.fail_closed, ..Settings::default() };
    for (i, a) in raw.allow.iter().enumerate() {
        match parse_net(a) {
            Ok(n) => settings.allow.push(n),
            Err(e) => errors.push(format!("allow[{i}]: {e}")),
        }
    }
    if let Err(e) = settings.set_fragment_policy(&raw.fragment_policy) {
        errors.push(format!("fragment_policy: {e}"));
    }
    for (kind, ports) in [(PortKind::Dns, &raw.dns_ports), (PortKind::Tls, &raw.tls_ports), (PortKind::Http, &raw.http_ports)] {
        if let Some(ports) = ports {
            if let Err(e) = settings.set_ports(kind, ports) {
                errors.push(e);
            }
        }
    }
    let mut feeds = Vec::new();
    for (i, f) in raw.feed.iter().enumerate() {
        if f.id.trim().is_empty() {
            errors.push(format!("feed[{i}].id: must not be empty"));
        }
        if f.provenance.trim().is_empty() {
            errors.push(format!("feed[{i}].provenance: must say where the feed comes from"));
        }
        if raw.feed[..i].iter().any(|o| o.id == f.id) {
            errors.push(format!("feed[{i}].id: `{}` used twice", f.id));
        }
        let format = FeedKind::parse(&f.format).unwrap_or_else(|| {
            errors.push(format!("feed[{i}].format: `{}`: expected one of {}", f.format, FeedKind::NAMES.join(", ")));
            FeedKind::Prefixes(FeedFormat::Plain)
        });
        let direction = match f.direction.as_deref() {
            Some(_) if format == FeedKind::Rpz => {
                errors.push(format!(
                    "feed[{i}].direction: an rpz feed says it per record (rpz-ip: destination, rpz-client-ip: source)"
                ));
                Direction::Both
            }
            Some(_) if format == FeedKind::Hosts => {
                errors.push(format!("feed[{i}].direction: a hosts feed lists names, not addresses"));
                Direction::Both
            }
            None | Some("both") => Direction::Both,
            Some("src") | Some("source") => Direction::Src,
            Some("dst") | Some("destination") => Direction::Dst,
            Some(other) => {
                errors.push(format!("feed[{i}].direction: `{other}`: expected both, src or dst"));
                Direction::Both
            }
        };
        let dns_answer = match (f.dns_answer.as_deref(), format) {
            (None, _) => DomainAction::Nxdomain,
            (Some(a), FeedKind::Hosts) => parse_dns_answer(a).unwrap_or_else(|e| {
                errors.push(format!("feed[{i}].dns_answer: {e}"));
                DomainAction::Nxdomain
            }),
            (Some(_), FeedKind::Rpz) => {
                errors.push(format!(
                    "feed[{i}].dns_answer: an rpz feed says it per record (`CNAME .` = nxdomain, `CNAME rpz-drop.` = drop)"
                ));
                DomainAction::Nxdomain
            }
            (Some(_), FeedKind::Prefixes(_)) => {
                errors.push(format!("feed[{i}].dns_answer: applies to hosts feeds (a {} feed lists addresses)", format.name()));
                DomainAction::Nxdomain
            }
        };
        feeds.push(Feed {
            id: f.id.clone(),
            format,
            path: base.join(&f.path),
            category: f.category,
            provenance: f.provenance.clone(),
            action: f.action,
            direction,
            dns_answer,
        });
    }
    let c = &raw.capacity;
    for (name, v) in [
        ("capacity.prefixes_v4", c.prefixes_v4),
        ("capacity.prefixes_v6", c.prefixes_v6),
        ("capacity.v4_groups", c.v4_groups),
        ("capacity.domains", c.domains),
        ("capacity.flows", c.flows),
        ("capacity.signature_transitions", c.signature_transitions),
        ("capacity.bans", c.bans),
        ("capacity.rate_limit_buckets", c.rate_limit_buckets),
    ] {
        if v == 0 {
            errors.push(format!("{name}: must be at least 1"));
        }
    }
    if c.signature_transitions > filter_common::maps::SIG_DFA_SLOTS {
        errors.push(format!("capacity.signature_transitions: at most {} (one 4 MiB table per generation)", filter_common::maps::SIG_DFA_SLOTS));
    }
    let signatures = raw.signatures.as_ref().map(|sig| {
        use filter_common::maps::{SIG_SCAN_MAX, SIG_SCAN_MIN};
        if !(SIG_SCAN_MIN..=SIG_SCAN_MAX).contains(&sig.scan_bytes) {
            errors.push(format!("signatures.scan_bytes: {} is not in {SIG_SCAN_MIN}..={SIG_SCAN_MAX}", sig.scan_bytes));
        }
        if sig.packs.is_empty() {
            errors.push("signatures.packs: list at least one pack (or leave [signatures] out)".into());
        }
        settings.signatures.scan_bytes = sig.scan_bytes;
        settings.signatures.event_rate = sig.event_rate;
        if let Some(hints) = &sig.hints {
            if hints.iter().any(|h| h.is_empty()) {
                errors.push("signatures.hints: an empty pattern".into());
            }
            settings.signatures.hints = hints.iter().map(|h| h.as_bytes().to_vec()).collect();
        }
        SignaturePacks {
            packs: sig.packs.iter().map(|p| base.join(p)).collect(),
            vars: sig.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            skip_unsupported: sig.skip_unsupported,
            action: sig.action,
        }
    });
    for (i, g) in raw.protect.iter().enumerate() {
        if g.name.is_empty() || !g.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            errors.push(format!("protect[{i}].name: `{}` must be letters, digits, - or _", g.name));
        }
        if raw.protect[..i].iter().any(|o| o.name == g.name) {
            errors.push(format!("protect[{i}].name: `{}` used twice", g.name));
        }
        if g.prefixes.is_empty() {
            errors.push(format!("protect[{i}].prefixes: at least one prefix"));
        }
        let mut nets = Vec::new();
        for (j, p) in g.prefixes.iter().enumerate() {
            match parse_net(p) {
                Ok(n) => nets.push(n),
                Err(e) => errors.push(format!("protect[{i}].prefixes[{j}]: {e}")),
            }
        }
        settings.protect.push((g.name.clone(), nets));
    }
    if raw.protect.len() > filter_common::maps::MAX_PROTECT_GROUPS as usize {
        errors.push(format!("protect: {} groups; the data plane accounts {}", raw.protect.len(), filter_common::maps::MAX_PROTECT_GROUPS));
    }
    if let Some(ports) = &raw.reflection_ports {
        settings.reflection_ports = ports.clone();
    }
    if let Err(e) = settings.reflect_ports() {
        errors.push(e);
    }
    settings.sample_every = raw.sample_every;
    if raw.syn_auth_seconds == 0 {
        return Err(anyhow::anyhow!("syn_auth_seconds: must be at least 1"));
    }
    settings.syn_auth_seconds = raw.syn_auth_seconds;
    let ddos = ddos_policies(&raw.ddos_policy, &settings.protect, &mut errors);
    let mut authorities = Vec::new();
    for (i, a) in raw.authority.iter().enumerate() {
        match crate::orders::wire::parse_public_key(&a.public_key) {
            Ok(key) => authorities.push(Authority { name: a.name.clone(), public_key: key }),
            Err(e) => errors.push(format!("authority[{i}].public_key: {e}")),
        }
        if raw.authority[..i].iter().any(|o| o.name == a.name) {
            errors.push(format!("authority[{i}].name: `{}` declared twice", a.name));
        }
    }
    let api = raw.api.as_ref().map(|api| {
        let tls = match (&api.tls_cert, &api.tls_key) {
            (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
            (None, None) => {
                if !api.listen.ip().is_loopback() {
                    errors.push("api.listen: plain HTTP is allowed on loopback only; set api.tls_cert and api.tls_key".into());
                }
                None
            }
            _ => {
                errors.push("api.tls_cert and api.tls_key go together".into());
                None
            }
        };
        let mut clients = Vec::new();
        for (i, c) in api.client.iter().enumerate() {
            let role = match c.role.as_str() {
                "operator" => Some(Role::Operator),
                "reader" => Some(Role::Reader),
                r => match r.strip_prefix("authority:") {
                    Some(name) if authorities.iter().any(|a| a.name == name) => Some(Role::Authority(name.to_string())),
                    Some(name) => {
                        errors.push(format!("api.client[{i}].role: no [[authority]] named `{name}` (its public key verifies its orders)"));
                        None
                    }
                    None => {
                        errors.push(format!("api.client[{i}].role: `{r}`: use authority:<name>, operator or reader"));
                        None
                    }
                },
            };
            let hash = c.token_sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.chars().all(|ch| ch.is_ascii_hexdigit()) {
                errors.push(format!("api.client[{i}].token_sha256: 64 hex digits (sha256 of the token; `filter-agent api token` makes one)"));
            }
            if let Some(role) = role {
                clients.push(Client { name: c.name.clone(), role, token_sha256: hash });
            }
        }
        Api { listen: api.listen, tls, max_body_bytes: api.max_body_bytes, max_entries: api.max_entries, clients }
    });
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(Config {
        instance: raw.instance,
        interfaces: raw.interfaces,
        attach_mode: raw.attach_mode,
        settings,
        sources: Sources { order_dirs: raw.rules.iter().map(|p| base.join(p)).collect(), feeds, signatures },
        metrics: raw.metrics,
        state_dir: base.join(raw.state_dir),
        bpffs: raw.bpffs,
        capacity: Capacity {
            prefixes_v4: c.prefixes_v4,
            prefixes_v6: c.prefixes_v6,
            v4_groups: c.v4_groups,
            domains: c.domains,
            flows: c.flows,
            signature_transitions: c.signature_transitions,
            bans: c.bans,
            rate_limit_buckets: c.rate_limit_buckets,
        },
        api,
        authorities,
        ddos,
    })
}

/// The `[[ddos_policy]]` tables, each checked with the key path in errors.
fn ddos_policies(raw: &[RawPolicy], groups: &[(String, Vec<ipnet::IpNet>)], errors: &mut Vec<String>) -> Vec<crate::ddos::Policy> {
    use crate::ddos::{Metric, Policy};
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let at = format!("ddos_policy[{i}]");
        let before = errors.len();
        if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            errors.push(format!("{at}.name: `{}` must be letters, digits, - or _", p.name));
        }
        if raw[..i].iter().any(|o| o.name == p.name) {
            errors.push(format!("{at}.name: `{}` used twice", p.name));
        }
        let metric = Metric::parse(&p.metric).unwrap_or_else(|| {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            errors.push(format!("{at}.metric: `{}`: expected one of {}", p.metric, names.join(", ")));
            Metric::Pps
        });
        if !(p.threshold.is_finite() && p.threshold > 0.0) {
            errors.push(format!("{at}.threshold: {} must be above 0 (packets or bits per second)", p.threshold));
        }
        if p.for_seconds == 0 {
            errors.push(format!("{at}.for_seconds: must be at least 1"));
        }
        let group = groups.iter().position(|(name, _)| *name == p.prefix_group);
        if group.is_none() {
            let names: Vec<&str> = groups.iter().map(|(n, _)| n.as_str()).collect();
            errors.push(format!(
                "{at}.prefix_group: no [[protect]] named `{}` (declared: {})",
                p.prefix_group,
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ));
        }
        let prefixes = group.map_or(&[][..], |g| &groups[g].1[..]);
        let mitigation = match crate::ddos::parse_mitigation(&p.mitigation, prefixes) {
            Ok(m) => Some(m),
            Err(list) => {
                for (key, msg) in list {
                    let sep = if key.is_empty() { "" } else { "." };
                    match msg.split_once(": ") {
                        // `rate_limit.pps: ...` from the entry parser.
                        Some((path, rest)) if key.is_empty() && !path.contains(' ') => errors.push(format!("{at}.mitigation.{path}: {rest}")),
                        _ => errors.push(format!("{at}.mitigation{sep}{key}: {msg}")),
                    }
                }
                None
            }
        };
        if let (Some(group_index), Some(mitigation), true) = (group, mitigation, errors.len() == before) {
            out.push(Policy {
                name: p.name.clone(),
                group: p.prefix_group.clone(),
                group_index,
                metric,
                threshold: p.threshold,
                for_seconds: p.for_seconds,
                hold_down_seconds: p.hold_down_seconds,
                mitigation,
            });
        }
    }
    out
}
