//! Blocklist feeds: prefix lists published by third parties (Spamhaus
//! DROP, FireHOL, an operator's own plain list) and imported as-is. The
//! agent turns a feed into one order whose id, category and provenance come
//! from its `[[feed]]` declaration; this module only reads the prefixes.
//! See `rules/README.md`, section "Feeds".
//!
//! Every prefix goes through [`parse_net`], like an order's prefixes: host
//! bits set is an error, a bare address is a host route. All bad lines are
//! reported at once as `file:line: reason`; one bad line rejects the feed,
//! so a corrupted download never half-applies.
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use super::error::{RuleError, RuleErrors};
use super::order_file::parse_net;

/// The text formats a feed can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFormat {
    /// One address or CIDR per line; `#` and `;` start comments, also trailing.
    Plain,
    /// Spamhaus DROP/EDROP text: `1.10.16.0/20 ; SBL256894`, `;` comment lines.
    SpamhausDrop,
    /// Spamhaus JSON lines (`drop_v4.json`, `drop_v6.json`) with a metadata line.
    SpamhausJson,
    /// FireHOL `.netset` / `.ipset`: `#` header lines, one address or CIDR per line.
    Netset,
}

impl FeedFormat {
    pub const ALL: [FeedFormat; 4] =
        [FeedFormat::Plain, FeedFormat::SpamhausDrop, FeedFormat::SpamhausJson, FeedFormat::Netset];

    /// The name used in the agent config (`format = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            FeedFormat::Plain => "plain",
            FeedFormat::SpamhausDrop => "spamhaus-drop",
            FeedFormat::SpamhausJson => "spamhaus-json",
            FeedFormat::Netset => "netset",
        }
    }
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One prefix of a feed, with the line it came from and the feed's own id for it if any (e.g. SBL123).
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    pub net: IpNet,
    /// 1-based line in the feed file.
    pub line: usize,
    /// The feed's own identifier for this listing (Spamhaus SBL id), if it gives one.
    pub reference: Option<String>,
}

/// Parses a whole feed file's text; every bad line is reported as file:line: reason (RuleError), all at once.
///
/// An empty feed (no entries) is valid: lists do shrink to nothing. A prefix
/// listed twice is kept once, at its first line.
pub fn parse_feed(file: &Path, text: &str, format: FeedFormat) -> Result<Vec<FeedEntry>, RuleErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut feed = Feed { file, entries: Vec::new(), seen: HashSet::new(), errors: Vec::new() };
    match format {
        FeedFormat::Plain => parse_lines(&mut feed, text, &['#', ';'], false),
        FeedFormat::Netset => parse_lines(&mut feed, text, &['#'], false),
        FeedFormat::SpamhausDrop => parse_lines(&mut feed, text, &[';'], true),
        FeedFormat::SpamhausJson => parse_json_lines(&mut feed, text),
    }
    if feed.errors.is_empty() {
        Ok(feed.entries)
    } else {
        Err(RuleErrors(feed.errors))
    }
}

/// Reads and parses `path`.
pub fn load_feed(path: &Path, format: FeedFormat) -> Result<Vec<FeedEntry>, RuleErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RuleErrors(vec![RuleError::new(path, 0, format!("cannot read feed: {e}"))]))?;
    parse_feed(path, &text, format)
}

struct Feed<'a> {
    file: &'a Path,
    entries: Vec<FeedEntry>,
    seen: HashSet<IpNet>,
    errors: Vec<RuleError>,
}

impl Feed<'_> {
    fn err(&mut self, line: usize, msg: impl Into<String>) {
        self.errors.push(RuleError::new(self.file, line, msg));
    }

    fn add(&mut self, line: usize, text: &str, reference: Option<String>) {
        match parse_net(text) {
            Ok(net) => {
                if self.seen.insert(net) {
                    self.entries.push(FeedEntry { net, line, reference });
                }
            }
            Err(msg) => self.err(line, msg),
        }
    }
}

/// Line formats: the first of `comment` chars on a line starts a comment.
/// With `reference`, a trailing comment is the listing's id (Spamhaus DROP).
fn parse_lines(feed: &mut Feed<'_>, text: &str, comment: &[char], reference: bool) {
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let (data, note) = match raw.find(comment) {
            Some(at) => (&raw[..at], Some(raw[at + 1..].trim())),
            None => (raw, None),
        };
        let data = data.trim();
        if data.is_empty() {
            continue;
        }
        if data.split_whitespace().nth(1).is_some() {
            feed.err(line, format!("`{data}`: expected one address or CIDR prefix per line"));
            continue;
        }
        let reference = if reference { note.filter(|n| !n.is_empty()).map(str::to_string) } else { None };
        feed.add(line, data, reference);
    }
}

/// Spamhaus JSON lines: one object per line, `cidr` required, `sblid` the
/// reference, other fields ignored. One `{"type":"metadata", ...}` line
/// (Spamhaus puts it last) may give `records`, the number of record lines;
/// a different count means the download was cut short or mangled.
fn parse_json_lines(feed: &mut Feed<'_>, text: &str) {
    let mut records = 0usize;
    let mut metadata: Option<(usize, Option<u64>)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let data = raw.trim();
        if data.is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                records += 1;
                feed.err(line, format!("not valid JSON: {e}"));
                continue;
            }
        };
        let Some(object) = value.as_object() else {
            records += 1;
            feed.err(line, "expected a JSON object per line, like {\"cidr\":\"192.0.2.0/24\",\"sblid\":\"SBL1\"}");
            continue;
        };
        if object.get("type").and_then(|t| t.as_str()) == Some("metadata") {
            if let Some((first, _)) = metadata {
                feed.err(line, format!("second metadata line (the first is line {first})"));
                continue;
            }
            let count = match object.get("records") {
                None => None,
                Some(n) => match n.as_u64() {
                    Some(n) => Some(n),
                    None => {
                        feed.err(line, format!("metadata `records` = {n}: expected a non-negative integer"));
                        None
                    }
                },
            };
            metadata = Some((line, count));
            continue;
        }
        records += 1;
        match object.get("cidr") {
            None => feed.err(line, "record has no `cidr`"),
            Some(serde_json::Value::String(cidr)) => {
                let reference = object
                    .get("sblid")
                    .and_then(|s| s.as_str())
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                feed.add(line, cidr, reference);
            }
            Some(other) => feed.err(line, format!("`cidr` = {other}: expected a string like \"192.0.2.0/24\"")),
        }
    }
    if let Some((line, Some(expected))) = metadata {
        if expected != records as u64 {
            let how = if (records as u64) < expected { "records are missing" } else { "there are extra records" };
            feed.err(
                line,
                format!("metadata says {expected} records but the feed has {records}: the feed is truncated or corrupt ({how})"),
            );
        }
    }
}
