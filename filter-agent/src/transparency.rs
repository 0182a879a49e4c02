//! `filter-agent report`: a transparency report for a time window, built
//! from what the agent recorded rather than from what it is told now.
//!
//! # Sources
//!
//! - **The audit log** (`<state_dir>/audit.jsonl`), verified first: a
//!   broken hash chain is refused with the chain error, nothing is
//!   reported from it. Every rule-set change the agent applies (`load`,
//!   `adopt`, `reload`, `push`, `revoke`, `expire`, `activate`,
//!   `expire-activate`) says which orders are in force after it:
//!   `load`, `adopt` and `reload` carry `details.orders_in_force`, the full
//!   set; the others (which happen per push) carry the change,
//!   `in_force_added` and `in_force_removed`. `detach` empties the set.
//!   Replaying these
//!   in log order gives, for every order, when it entered and left force.
//!   `stop` changes nothing: filtering stays in force while the agent is
//!   down, and so does the report. `push`, `revoke`, `push-failed`,
//!   `push-rejected` and `revoke-rejected` records add who pushed or
//!   revoked what, and why.
//! - **The order journal** (`<state_dir>/orders.journal`), if present,
//!   read-only: authority, category, reference, action, entry count,
//!   validity and pusher of orders pushed through the API, and their
//!   revocations. A torn last line (a write a crash interrupted, never
//!   acknowledged) is ignored; any other unreadable line is an error.
//! - **The order files** of `--config` (its order directories and feeds),
//!   as they are on disk now: authority, category and entries of file
//!   orders. Without `--config` (or if they no longer load) those are
//!   `null`.
//! - **Counters**: the audit log carries no packet counts. With `--agent
//!   ADDR` they are read from the running agent's `/status.json`: lifetime
//!   totals per order as of that moment (not limited to the window), and
//!   only for orders in force there. Otherwise every counter is `null` and
//!   the report says why.
//!
//! # The window
//!
//! `--from` is inclusive, `--to` exclusive. The log's order is
//! authoritative: the window is the run of records from the first one
//! stamped at or after `--from` up to (not including) the first one
//! stamped at or after `--to`; the set in force at `--from` is the one the
//! records before it left. An order is reported if it was in force at any
//! moment of the window or a record of the window (or a journal push or
//! revocation inside it) names it. `seconds_in_force` is clipped to the
//! window and to the time the report is generated.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit;
use crate::orders::wire::SignedOrder;

/// Arguments of `filter-agent report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Start of the window (RFC 3339, inclusive), e.g. 2026-01-01T00:00:00Z.
    #[arg(long, value_parser = parse_time)]
    pub from: DateTime<Utc>,
    /// End of the window (RFC 3339, exclusive).
    #[arg(long, value_parser = parse_time)]
    pub to: DateTime<Utc>,
    /// Agent config: its state directory, and its order files and feeds for
    /// the authority and category of file orders.
    #[arg(long, conflicts_with = "state_dir")]
    pub config: Option<PathBuf>,
    /// The agent's state directory (audit.jsonl, orders.journal)
    /// [default: /var/lib/edgefilter].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A running agent's metrics/status address: per-order packet counters
    /// are read from its /status.json (without it they are reported as
    /// unknown).
    #[arg(long)]
    pub agent: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Csv,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{text}`: {e}; need RFC 3339 with an offset, e.g. 2026-01-01T00:00:00Z"))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `filter-agent report`.
pub fn run(args: ReportArgs) -> Result<()> {
    if args.from >= args.to {
        bail!("--from ({}) must be before --to ({})", ts(args.from), ts(args.to));
    }
    let generated = Utc::now();
    let (state_dir, config) = match (&args.config, &args.state_dir) {
        (Some(path), _) => {
            let c = crate::config::load(path)?;
            (c.state_dir.clone(), Some((path.clone(), c)))
        }
        (None, Some(dir)) => (dir.clone(), None),
        (None, None) => (PathBuf::from("/var/lib/edgefilter"), None),
    };
    let mut notes = Vec::new();
    let audit = read_audit(&state_dir.join("audit.jsonl"))?;
    let journal = read_journal(&state_dir.join("orders.journal"), &mut notes)?;
    let files = match &config {
        Some((path, c)) => Some(file_orders(path, c, &mut notes)),
        None => {
            notes.push("no --config: authority, category and entries of file orders are unknown (null)".to_string());
            None
        }
    };
    let counters = match args.agent {
        Some(addr) => Some(fetch_counters(addr)?),
        None => None,
    };
    let input = Input { from: args.from, to: args.to, generated, audit, journal, files, counters, notes };
    let report = build(&input);
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::Csv => csv(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Inputs

/// The verified audit log.
pub struct Audit {
    pub path: PathBuf,
    pub records: Vec<audit::Record>,
}

/// Verifies the chain, then reads exactly the records it verified (an
/// append racing the report is left for the next one).
fn read_audit(path: &Path) -> Result<Audit> {
    if !path.exists() {
        bail!("no audit log at {} (give --config or --state-dir)", path.display());
    }
    let count = audit::verify(path).context("refusing to report: the audit log does not verify")?;
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::with_capacity(count as usize);
    for (i, line) in text.split(|&b| b == b'\n').take(count as usize).enumerate() {
        let record: audit::Record =
            serde_json::from_slice(line).with_context(|| format!("{}: line {}: changed while being read", path.display(), i + 1))?;
        records.push(record);
    }
    if records.len() as u64 != count {
        bail!("{}: changed while being read ({} records verified, {} read)", path.display(), count, records.len());
    }
    Ok(Audit { path: path.to_path_buf(), records })
}

/// One line of `orders.journal` (see `orders::store`).
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum JournalRecord {
    Push { seq: u64, id: String, signed: SignedOrder, client: String, received: DateTime<Utc> },
    Revoke { seq: u64, id: String, by: String, at: DateTime<Utc>, reason: String },
}

pub struct JournalOrder {
    pub order: Value,
    pub client: String,
    pub received: DateTime<Utc>,
    /// (at, by, reason)
    pub revoked: Option<(DateTime<Utc>, String, String)>,
}

pub struct Journal {
    pub path: PathBuf,
    pub records: u64,
    pub orders: BTreeMap<String, JournalOrder>,
}

/// Reads the journal without opening it for writing (the agent may be
/// appending): a torn last line is ignored, not cut off.
fn read_journal(path: &Path, notes: &mut Vec<String>) -> Result<Option<Journal>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            notes.push(format!("no order journal at {}: no order was pushed through the API", path.display()));
            return Ok(None);
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        notes.push(format!(
            "{}: ignored an incomplete last line ({} bytes): a write never acknowledged, or one in progress",
            path.display(),
            text.len() - complete
        ));
    }
    let mut journal = Journal { path: path.to_path_buf(), records: 0, orders: BTreeMap::new() };
    for (i, line) in text[..complete].split(|&b| b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let record: JournalRecord = serde_json::from_slice(line).with_context(|| format!("{}: unreadable journal record", at()))?;
        let seq = match &record {
            JournalRecord::Push { seq, .. } | JournalRecord::Revoke { seq, .. } => *seq,
        };
        if seq != journal.records + 1 {
            bail!("{}: journal sequence {seq} after {}: records are missing", at(), journal.records);
        }
        journal.records = seq;
        match record {
            JournalRecord::Push { id, signed, client, received, .. } => {
                journal.orders.insert(id, JournalOrder { order: signed.order, client, received, revoked: None });
            }
            JournalRecord::Revoke { id, by, at: when, reason, .. } => match journal.orders.get_mut(&id) {
                Some(o) => o.revoked = Some((when, by, reason)),
                None => bail!("{}: revoke of unknown order {id}", at()),
            },
        }
    }
    Ok(Some(journal))
}

/// What the order files and feeds of a config say about their orders now.
#[derive(Clone, Debug, Default)]
pub struct FileOrder {
    pub authority: String,
    pub category: String,
    pub reference: String,
    pub action: String,
    pub entries: usize,
    pub effective: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub feed: bool,
}

pub struct Files {
    pub config: PathBuf,
    pub orders: BTreeMap<String, FileOrder>,
}

fn file_orders(path: &Path, config: &crate::config::Config, notes: &mut Vec<String>) -> Files {
    let mut orders = BTreeMap::new();
    match crate::ruleload::load_sources(&config.sources) {
        Ok(list) => {
            for o in list {
                let feed = config.sources.feeds.iter().any(|f| f.id == o.id);
                let action = match o.action {
                    filter_common::rules::Action::Drop => "drop",
                    filter_common::rules::Action::DryRun => "dry-run",
                };
                orders.insert(
                    o.id.clone(),
                    FileOrder {
                        authority: o.authority,
                        category: o.category.name().to_string(),
                        reference: o.reference,
                        action: action.to_string(),
                        entries: o.entries.len(),
                        effective: o.effective,
                        expires: o.expires,
                        feed,
                    },
                );
            }
            notes.push(format!(
                "authority, category and entries of file orders are taken from the order files and feeds of {} as they are now",
                path.display()
            ));
        }
        Err(errors) => notes.push(format!(
            "the order files of {} do not load now ({} problem(s), first: {}): authority and category of file orders are unknown (null)",
            path.display(),
            errors.0.len(),
            errors.0.first().map(|e| e.to_string()).unwrap_or_default()
        )),
    }
    Files { config: path.to_path_buf(), orders }
}

/// Per-order counters from a running agent.
pub struct Counters {
    pub source: String,
    pub fetched: DateTime<Utc>,
    /// order -> (dry_run, packets, bytes, category)
    pub hits: BTreeMap<String, (bool, u64, u64, String)>,
    /// order -> category, for every order the agent has loaded.
    pub categories: BTreeMap<String, String>,
}

fn fetch_counters(addr: SocketAddr) -> Result<Counters> {
    let url = format!("http://{addr}/status.json");
    let body = ureq::get(&url)
        .call()
        .with_context(|| format!("no agent answering on {url} (is `filter-agent run` started?)"))?
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading {url}"))?;
    let fetched = Utc::now();
    let status: Value = serde_json::from_str(&body).with_context(|| format!("{url}: not JSON"))?;
    parse_counters(&url, fetched, &status)
}

/// Reads `orders_hits` (and `orders`, for categories) of a `/status.json`.
pub fn parse_counters(source: &str, fetched: DateTime<Utc>, status: &Value) -> Result<Counters> {
    let Some(hits) = status.get("orders_hits").and_then(Value::as_array) else {
        bail!("{source}: no `orders_hits` in the status: not an edgefilter agent, or an incompatible version");
    };
    let mut counters = Counters { source: source.to_string(), fetched, hits: BTreeMap::new(), categories: BTreeMap::new() };
    for h in hits {
        let (Some(order), Some(packets), Some(bytes)) =
            (h["order"].as_str(), h["packets"].as_u64(), h["bytes"].as_u64())
        else {
            bail!("{source}: unexpected entry in `orders_hits`: {h}");
        };
        let category = h["category"].as_str().unwrap_or_default().to_string();
        counters.hits.insert(order.to_string(), (h["dry_run"].as_bool().unwrap_or(false), packets, bytes, category));
    }
    for o in status.get("orders").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(order), Some(category)) = (o["order"].as_str(), o["category"].as_str()) {
            counters.categories.insert(order.to_string(), category.to_string());
        }
    }
    Ok(counters)
}

/// Everything a report is built from.
pub struct Input {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub generated: DateTime<Utc>,
    pub audit: Audit,
    pub journal: Option<Journal>,
    pub files: Option<Files>,
    pub counters: Option<Counters>,
    pub notes: Vec<String>,
}

// ---------------------------------------------------------------------------
// The timeline

/// What the window saw of one order.
#[derive(Default)]
struct Track {
    in_force_at_start: bool,
    in_force_at_end: bool,
    first_activation: Option<DateTime<Utc>>,
    expired: Option<DateTime<Utc>>,
    /// (at, by, reason)
    revoked: Option<(DateTime<Utc>, String, String)>,
    /// (at, action) of the last time it left force.
    ended: Option<(DateTime<Utc>, String)>,
    /// (at, actor) of its push, from the audit log.
    pushed: Option<(DateTime<Utc>, String)>,
    since: Option<DateTime<Utc>>,
    millis: i64,
}

impl Track {
    fn close(&mut self, at: DateTime<Utc>) {
        if let Some(since) = self.since.take() {
            self.millis += (at - since).num_milliseconds().max(0);
        }
    }
}

fn strings(v: &Value) -> impl Iterator<Item = String> + '_ {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string))
}

/// The set in force after `r`, if `r` changed it.
fn next_set(current: &BTreeSet<String>, r: &audit::Record) -> Option<BTreeSet<String>> {
    let d = &r.details;
    if let Some(list) = d.get("orders_in_force").filter(|v| v.is_array()) {
        return Some(strings(list).collect());
    }
    if d.get("in_force_added").is_some() || d.get("in_force_removed").is_some() {
        let mut next = current.clone();
        for id in strings(&d["in_force_removed"]) {
            next.remove(&id);
        }
        next.extend(strings(&d["in_force_added"]));
        return Some(next);
    }
    match r.action.as_str() {
        "detach" => Some(BTreeSet::new()),
        "revoke" => {
            let id = d["order"].as_str()?;
            let mut next = current.clone();
            next.remove(id);
            Some(next)
        }
        "expire" | "activate" | "expire-activate" => {
            let mut next = current.clone();
            for id in strings(&d["expired"]) {
                next.remove(&id);
            }
            next.extend(strings(&d["activated"]));
            Some(next)
        }
        _ => None,
    }
}

struct Timeline {
    tracks: BTreeMap<String, Track>,
    push_rejected: u64,
    revoke_rejected: u64,
    records_in_window: u64,
}

fn timeline(input: &Input) -> Timeline {
    let (from, to) = (input.from, input.to);
    let horizon = to.min(input.generated).max(from);
    let mut current: BTreeSet<String> = BTreeSet::new();
    let mut tracks: BTreeMap<String, Track> = BTreeMap::new();
    let mut started = false;
    let mut out = Timeline { tracks: BTreeMap::new(), push_rejected: 0, revoke_rejected: 0, records_in_window: 0 };
    let start = |current: &BTreeSet<String>, tracks: &mut BTreeMap<String, Track>| {
        for id in current {
            let t = tracks.entry(id.clone()).or_default();
            t.in_force_at_start = true;
            t.since = Some(from);
        }
    };
    for r in &input.audit.records {
        // Verified records have RFC 3339 times.
        let Ok(t) = DateTime::parse_from_rfc3339(&r.time).map(|t| t.with_timezone(&Utc)) else { continue };
        if t >= to {
            break;
        }
        let next = next_set(&current, r);
        if !started {
            if t < from {
                if let Some(n) = next {
                    current = n;
                }
                continue;
            }
            started = true;
            start(&current, &mut tracks);
        }
        out.records_in_window += 1;
        // One order (`order`), or a group-committed batch (`orders`).
        let named: Vec<String> = r.details.get("order").and_then(Value::as_str).map(str::to_string).into_iter().chain(strings(&r.details["orders"])).collect();
        match r.action.as_str() {
            "push-rejected" => out.push_rejected += 1,
            "revoke-rejected" => out.revoke_rejected += 1,
            "push" => {
                for id in named {
                    tracks.entry(id).or_default().pushed.get_or_insert((t, r.actor.clone()));
                }
            }
            "revoke" => {
                let reason = r.details["reason"].as_str().unwrap_or_default().to_string();
                for id in named {
                    tracks.entry(id).or_default().revoked.get_or_insert((t, r.actor.clone(), reason.clone()));
                }
            }
            "push-failed" => {
                let reason = r.details["error"].as_str().unwrap_or("could not be applied").to_string();
                for id in named {
                    tracks.entry(id).or_default().revoked.get_or_insert((t, r.actor.clone(), reason.clone()));
                }
            }
            _ => {}
        }
        if let Some(next) = next {
            for id in next.difference(&current) {
                let tr = tracks.entry(id.clone()).or_default();
                tr.first_activation.get_or_insert(t);
                tr.since = Some(t);
            }
            let expired: BTreeSet<String> = strings(&r.details["expired"]).collect();
            for id in current.difference(&next) {
                let tr = tracks.entry(id.clone()).or_default();
                tr.close(t);
                tr.ended = Some((t, r.action.clone()));
                if r.action.starts_with("expire") && expired.contains(id) {
                    tr.expired.get_or_insert(t);
                }
            }
            current = next;
        }
    }
    if !started {
        start(&current, &mut tracks);
    }
    for id in &current {
        let tr = tracks.entry(id.clone()).or_default();
        tr.close(horizon);
        tr.in_force_at_end = true;
    }
    // Journal pushes and revocations inside the window (e.g. a push
    // journaled just before a crash, enforced by the next start).
    if let Some(journal) = &input.journal {
        for (id, o) in &journal.orders {
            let pushed_inside = from <= o.received && o.received < to;
            let revoked_inside = o.revoked.as_ref().filter(|(at, _, _)| from <= *at && *at < to);
            if pushed_inside || revoked_inside.is_some() {
                let tr = tracks.entry(id.clone()).or_default();
                if tr.revoked.is_none() {
                    tr.revoked = revoked_inside.cloned();
                }
            }
        }
    }
    out.tracks = tracks;
    out
}

// ---------------------------------------------------------------------------
// The report

/// What is known about an order, wherever it comes from.
#[derive(Default)]
struct Meta {
    authority: Option<String>,
    category: Option<String>,
    reference: Option<String>,
    action: Option<String>,
    entries: Option<usize>,
    effective: Option<String>,
    expires: Option<String>,
    source: &'static str,
    pushed_by: Option<String>,
    pushed_at: Option<String>,
}

fn meta(input: &Input, id: &str, track: &Track) -> Meta {
    let text = |v: &Value| v.as_str().map(str::to_string);
    if let Some(o) = input.journal.as_ref().and_then(|j| j.orders.get(id)) {
        return Meta {
            authority: text(&o.order["authority"]),
            category: text(&o.order["category"]),
            reference: text(&o.order["reference"]),
            action: text(&o.order["action"]),
            entries: o.order["entries"].as_array().map(Vec::len),
            effective: text(&o.order["effective"]),
            expires: text(&o.order["expires"]),
            source: "api",
            pushed_by: Some(o.client.clone()),
            pushed_at: Some(ts(o.received)),
        };
    }
    if let Some(f) = input.files.as_ref().and_then(|f| f.orders.get(id)) {
        return Meta {
            authority: Some(f.authority.clone()),
            category: Some(f.category.clone()),
            reference: Some(f.reference.clone()),
            action: Some(f.action.clone()),
            entries: Some(f.entries),
            effective: Some(ts(f.effective)),
            expires: Some(ts(f.expires)),
            source: if f.feed { "feed" } else { "file" },
            ..Meta::default()
        };
    }
    let mut m = Meta { source: "file", ..Meta::default() };
    if let Some((at, actor)) = &track.pushed {
        // No journal entry, but the log says it was pushed: an authority
        // client's actor names its authority, `api:<client>(authority:<name>)`.
        m.source = "api";
        m.pushed_by = Some(actor.clone());
        m.pushed_at = Some(ts(*at));
        m.authority = actor.split_once("(authority:").and_then(|(_, rest)| rest.strip_suffix(')')).map(str::to_string);
    }
    m.category = input.counters.as_ref().and_then(|c| c.categories.get(id).or_else(|| c.hits.get(id).map(|h| &h.3)).cloned());
    m
}

#[derive(Default)]
struct Sum {
    orders: u64,
    in_force_at_end: u64,
    activated: u64,
    expired: u64,
    revoked: u64,
    packets_dropped: u64,
    bytes_dropped: u64,
    packets_would_drop: u64,
    without_counters: u64,
}

impl Sum {
    fn add(&mut self, o: &Value) {
        self.orders += 1;
        self.in_force_at_end += u64::from(o["in_force_at_end"] == true);
        self.activated += u64::from(!o["first_activation"].is_null());
        self.expired += u64::from(!o["expired"].is_null());
        self.revoked += u64::from(!o["revoked"].is_null());
        match (o["packets_dropped"].as_u64(), o["bytes_dropped"].as_u64(), o["packets_would_drop"].as_u64()) {
            (Some(p), Some(b), Some(w)) => {
                self.packets_dropped += p;
                self.bytes_dropped += b;
                self.packets_would_drop += w;
            }
            _ => self.without_counters += 1,
        }
    }

    fn json(&self, counters: bool) -> Value {
        let known = |n: u64| if counters { json!(n) } else { Value::Null };
        json!({
            "orders": self.orders,
            "in_force_at_end": self.in_force_at_end,
            "activated": self.activated,
            "expired": self.expired,
            "revoked": self.revoked,
            "packets_dropped": known(self.packets_dropped),
            "bytes_dropped": known(self.bytes_dropped),
            "packets_would_drop": known(self.packets_would_drop),
            "orders_without_counters": self.without_counters,
        })
    }
}

/// The report as JSON (the CSV form is made from it).
pub fn build(input: &Input) -> Value {
    let tl = timeline(input);
    let mut orders = Vec::new();
    for (id, tr) in &tl.tracks {
        let m = meta(input, id, tr);
        let hit = input.counters.as_ref().and_then(|c| c.hits.get(id));
        let action = m.action.clone().or_else(|| hit.map(|h| if h.0 { "dry-run" } else { "drop" }.to_string()));
        let (dropped, bytes, would) = match hit {
            Some(&(true, packets, _, _)) => (json!(0), json!(0), json!(packets)),
            Some(&(false, packets, bytes, _)) => (json!(packets), json!(bytes), json!(0)),
            None => (Value::Null, Value::Null, Value::Null),
        };
        orders.push(json!({
            "id": id,
            "authority": m.authority,
            "category": m.category,
            "source": m.source,
            "reference": m.reference,
            "action": action,
            "entries": m.entries,
            "effective": m.effective,
            "expires": m.expires,
            "pushed_by": m.pushed_by,
            "pushed_at": m.pushed_at,
            "in_force_at_start": tr.in_force_at_start,
            "first_activation": tr.first_activation.map(ts),
            "expired": tr.expired.map(ts),
            "revoked": tr.revoked.as_ref().map(|(at, by, reason)| json!({ "at": ts(*at), "by": by, "reason": reason })),
            "ended": tr.ended.as_ref().map(|(at, action)| json!({ "at": ts(*at), "action": action })),
            "in_force_at_end": tr.in_force_at_end,
            "seconds_in_force": tr.millis as f64 / 1000.0,
            "packets_dropped": dropped,
            "bytes_dropped": bytes,
            "packets_would_drop": would,
        }));
    }
    // Grouped by authority, then category (unknown last), then id.
    let key = |o: &Value, k: &str| (o[k].is_null(), o[k].as_str().unwrap_or_default().to_string());
    orders.sort_by_key(|o| (key(o, "authority"), key(o, "category"), key(o, "id")));

    let with_counters = input.counters.is_some();
    let mut all = Sum::default();
    let mut by_authority: BTreeMap<String, Sum> = BTreeMap::new();
    let mut by_category: BTreeMap<String, Sum> = BTreeMap::new();
    for o in &orders {
        all.add(o);
        by_authority.entry(o["authority"].as_str().unwrap_or("(unknown)").to_string()).or_default().add(o);
        by_category.entry(o["category"].as_str().unwrap_or("(unknown)").to_string()).or_default().add(o);
    }
    let group = |m: &BTreeMap<String, Sum>| -> serde_json::Map<String, Value> { m.iter().map(|(k, s)| (k.clone(), s.json(with_counters))).collect() };
    let mut totals = all.json(with_counters);
    totals["push_rejected"] = json!(tl.push_rejected);
    totals["revoke_rejected"] = json!(tl.revoke_rejected);
    totals["by_authority"] = Value::Object(group(&by_authority));
    totals["by_category"] = Value::Object(group(&by_category));

    let counters = match &input.counters {
        Some(c) => json!({
            "source": c.source,
            "fetched": ts(c.fetched),
            "scope": "lifetime totals per order as the agent reported them when fetched, not limited to the window; \
                      only orders in force at the agent then have counters, the others are null; \
                      dry-run orders count packets they would have dropped (packets_would_drop)",
        }),
        None => json!({
            "source": null,
            "fetched": null,
            "scope": "unknown: the audit log carries no packet counters; give --agent ADDR to read them from a running agent's /status.json",
        }),
    };
    let last = input.audit.records.last();
    json!({
        "window": { "from": ts(input.from), "to": ts(input.to) },
        "generated": ts(input.generated),
        "sources": {
            "audit_log": {
                "path": input.audit.path,
                "records": input.audit.records.len(),
                "records_in_window": tl.records_in_window,
                "chain": "verified",
                "last_hash": last.map(|r| r.hash.clone()),
            },
            "journal": input.journal.as_ref().map(|j| json!({ "path": j.path, "records": j.records })),
            "config": input.files.as_ref().map(|f| f.config.clone()),
        },
        "counters": counters,
        "notes": input.notes,
        "orders": orders,
        "totals": totals,
    })
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "authority",
    "category",
    "source",
    "reference",
    "action",
    "entries",
    "effective",
    "expires",
    "pushed_by",
    "pushed_at",
    "in_force_at_start",
    "first_activation",
    "expired",
    "revoked_at",
    "revoked_by",
    "revocation_reason",
    "ended_at",
    "ended_by",
    "in_force_at_end",
    "seconds_in_force",
    "packets_dropped",
    "bytes_dropped",
    "packets_would_drop",
    "counters",
];

fn csv_field(out: &mut String, v: &Value) {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        let _ = write!(out, "\"{}\"", text.replace('"', "\"\""));
    } else {
        out.push_str(&text);
    }
}

/// One row per order (RFC 4180: CRLF line ends, fields quoted when needed);
/// empty cells are unknown. The `counters` column says where the packet
/// counts come from (`unknown` without `--agent`).
pub fn csv(report: &Value) -> String {
    let counters = match report["counters"]["fetched"].as_str() {
        Some(at) => format!("lifetime totals from {} at {at}", report["counters"]["source"].as_str().unwrap_or_default()),
        None => "unknown (no --agent)".to_string(),
    };
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for o in report["orders"].as_array().into_iter().flatten() {
        let cell = |name: &str| -> Value {
            match name {
                "revoked_at" => o["revoked"]["at"].clone(),
                "revoked_by" => o["revoked"]["by"].clone(),
                "revocation_reason" => o["revoked"]["reason"].clone(),
                "ended_at" => o["ended"]["at"].clone(),
                "ended_by" => o["ended"]["action"].clone(),
                "counters" => json!(counters),
                other => o[other].clone(),
            }
        };
        for (i, name) in CSV_COLUMNS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, &cell(name));
        }
        out.push_str("\r\n");
    }
    out
}
