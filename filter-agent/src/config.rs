//! `agent.toml`: everything `filter-agent run` needs. Unknown keys and bad
//! values are errors naming the key path; nothing starts on a bad config.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use filter_common::rules::feeds::FeedFormat;
use filter_common::rules::order_file::{parse_net, Action, Category};
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    id: String,
    format: FeedFormat,
    path: PathBuf,
    category: Category,
    provenance: String,
    #[serde(default = "default_action")]
    action: Action,
    #[serde(default)]
    direction: Option<String>,
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
}

impl Default for RawCapacity {
    fn default() -> Self {
        RawCapacity { prefixes_v4: default_v4(), prefixes_v6: default_v6(), v4_groups: default_groups() }
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

/// A blocklist feed declared in the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Feed {
    pub id: String,
    pub format: FeedFormat,
    pub path: PathBuf,
    pub category: Category,
    pub provenance: String,
    pub action: Action,
    pub direction: Direction,
}

/// Where rules come from: order directories and feeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Sources {
    pub order_dirs: Vec<PathBuf>,
    pub feeds: Vec<Feed>,
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
        let direction = match f.direction.as_deref() {
            None | Some("both") => Direction::Both,
            Some("src") | Some("source") => Direction::Src,
            Some("dst") | Some("destination") => Direction::Dst,
            Some(other) => {
                errors.push(format!("feed[{i}].direction: `{other}`: expected both, src or dst"));
                Direction::Both
            }
        };
        feeds.push(Feed {
            id: f.id.clone(),
            format: f.format,
            path: base.join(&f.path),
            category: f.category,
            provenance: f.provenance.clone(),
            action: f.action,
            direction,
        });
    }
    let c = &raw.capacity;
    for (name, v) in [("capacity.prefixes_v4", c.prefixes_v4), ("capacity.prefixes_v6", c.prefixes_v6), ("capacity.v4_groups", c.v4_groups)] {
        if v == 0 {
            errors.push(format!("{name}: must be at least 1"));
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(Config {
        instance: raw.instance,
        interfaces: raw.interfaces,
        attach_mode: raw.attach_mode,
        settings,
        sources: Sources { order_dirs: raw.rules.iter().map(|p| base.join(p)).collect(), feeds },
        metrics: raw.metrics,
        state_dir: base.join(raw.state_dir),
        bpffs: raw.bpffs,
        capacity: Capacity { prefixes_v4: c.prefixes_v4, prefixes_v6: c.prefixes_v6, v4_groups: c.v4_groups },
    })
}
