//! From rule sources (order directories and feeds) to a validated
//! [`RuleSet`]. A feed becomes an order of its own (its id, its provenance
//! as the authority), so its drops are counted and reported like any order.
//!
//! A feed's order has few entries, each with one rule id, whatever the
//! feed's size: a prefix feed one, a hosts feed one, an RPZ zone one per
//! kind of rule it holds (names per action, then addresses per direction).
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;
use chrono::{DateTime, TimeZone, Utc};
use filter_common::rules::order_file::{Entry, EntryKind};
use filter_common::rules::ruleset::DomainAction;
use filter_common::rules::{
    load_feed, load_hosts, load_orders_dir, load_rpz, DomainPattern, DomainScope, Direction, HostsEntry, Order, RpzAction,
    RpzZone, RuleError, RuleErrors, RuleSet, Settings,
};

use crate::config::{Feed, FeedKind, SignaturePacks, Sources};

/// Orders of `dir`, all valid, or every problem as `file:line: reason`.
pub fn load_orders(dir: &Path) -> Result<Vec<Order>, RuleErrors> {
    load_orders_dir(dir)
}

/// Every order and feed of `sources`; any problem anywhere rejects all.
pub fn load_sources(sources: &Sources) -> Result<Vec<Order>, RuleErrors> {
    let mut orders: Vec<Order> = Vec::new();
    let mut errors = Vec::new();
    for dir in &sources.order_dirs {
        match load_orders_dir(dir) {
            Ok(o) => orders.extend(o),
            Err(RuleErrors(e)) => errors.extend(e),
        }
    }
    for feed in &sources.feeds {
        match feed_order(feed) {
            Ok(o) => orders.push(o),
            Err(RuleErrors(e)) => errors.extend(e),
        }
    }
    if let Some(packs) = &sources.signatures {
        for path in &packs.packs {
            match signature_order(path, packs) {
                Ok(o) => orders.push(o),
                Err(RuleErrors(e)) => errors.extend(e),
            }
        }
    }
    let mut seen: Vec<&Order> = Vec::new();
    for o in &orders {
        if let Some(first) = seen.iter().find(|s| s.id == o.id) {
            errors.push(RuleError::new(&o.file, o.line, format!("order id {} already used in {}", o.id, first.file.display())));
        }
        seen.push(o);
    }
    if errors.is_empty() { Ok(orders) } else { Err(RuleErrors(errors)) }
}

/// The order a feed stands for (its file read and checked now).
pub fn feed_order(feed: &Feed) -> Result<Order, RuleErrors> {
    let entries = match feed.format {
        FeedKind::Prefixes(format) => {
            let prefixes = load_feed(&feed.path, format)?;
            vec![Entry {
                line: 1,
                comment: Some(format!("{} prefixes", prefixes.len())),
                kind: EntryKind::Prefixes { nets: prefixes.into_iter().map(|e| e.net).collect(), direction: feed.direction },
            }]
        }
        FeedKind::Rpz => rpz_entries(&feed.path, &load_rpz(&feed.path)?)?,
        FeedKind::Hosts => vec![hosts_entry(&load_hosts(&feed.path)?, feed.dns_answer)],
    };
    let received = std::fs::metadata(&feed.path)
        .and_then(|m| m.modified())
        .ok()
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(Utc::now);
    Ok(Order {
        id: feed.id.clone(),
        authority: feed.provenance.clone(),
        reference: format!("feed {} ({})", feed.path.display(), feed.format.name()),
        category: feed.category,
        received,
        // Feeds are in force while configured: their file is the order.
        effective: Utc.timestamp_opt(0, 0).unwrap(),
        expires: Utc.with_ymd_and_hms(9999, 1, 1, 0, 0, 0).unwrap(),
        action: feed.action,
        entries,
        file: feed.path.clone(),
        line: 1,
    })
}

/// The order a signature pack stands for: id `signatures:<file stem>`,
/// category attack, one entry per rule (its line; the comment gives sid
/// and message), so every drop is counted and reported with its rule.
pub fn signature_order(path: &Path, packs: &SignaturePacks) -> Result<Order, RuleErrors> {
    let pack = filter_common::signatures::load_pack(path, &packs.vars, packs.skip_unsupported)?;
    for skipped in &pack.skipped {
        eprintln!("warning: {skipped} (rule skipped: signatures.skip_unsupported is set)");
    }
    let stem = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
    let received = std::fs::metadata(path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from).unwrap_or_else(Utc::now);
    let entries = pack
        .rules
        .into_iter()
        .map(|sig| Entry {
            line: sig.line,
            comment: Some(format!("sid {}: {}", sig.sid, sig.msg)),
            kind: EntryKind::Signature(std::sync::Arc::new(sig)),
        })
        .collect();
    Ok(Order {
        id: format!("signatures:{stem}"),
        authority: "signature pack".into(),
        reference: format!("signature pack {}", path.display()),
        category: filter_common::rules::Category::Attack,
        received,
        // In force while configured, like a feed.
        effective: Utc.timestamp_opt(0, 0).unwrap(),
        expires: Utc.with_ymd_and_hms(9999, 1, 1, 0, 0, 0).unwrap(),
        action: packs.action,
        entries,
        file: path.to_path_buf(),
        line: 1,
    })
}

/// A policy zone as order entries, in this order, each only if the zone
/// has such rules: names answered NXDOMAIN (`CNAME .`), names dropped
/// (`CNAME rpz-drop.`), names passed (`CNAME rpz-passthru.`, an allow
/// list), destination addresses (`rpz-ip`), client addresses
/// (`rpz-client-ip`). An entry's line is its first record's. Address
/// triggers block (NXDOMAIN and drop alike: the filter drops the packets);
/// a passthru on an address trigger is an error at its line.
pub fn rpz_entries(file: &Path, zone: &RpzZone) -> Result<Vec<Entry>, RuleErrors> {
    let mut entries = Vec::new();
    for (rpz, action, what) in [
        (RpzAction::Nxdomain, DomainAction::Nxdomain, "answered NXDOMAIN"),
        (RpzAction::Drop, DomainAction::Drop, "dropped"),
        (RpzAction::Passthru, DomainAction::Pass, "passed (passthru: an allow list)"),
    ] {
        let rules: Vec<_> = zone.domains.iter().filter(|r| r.action == rpz).collect();
        let Some(first) = rules.first() else { continue };
        entries.push(Entry {
            line: first.line,
            comment: Some(format!("rpz {}: {} {what}", rpz.name(), count(rules.len(), "name"))),
            kind: EntryKind::Domains { patterns: rules.iter().map(|r| r.pattern.clone()).collect(), action },
        });
    }
    let mut errors = Vec::new();
    for r in zone.ips.iter().filter(|r| r.action == RpzAction::Passthru) {
        errors.push(RuleError::new(
            file,
            r.line,
            format!("{} {}: passthru on address triggers is not supported", ip_trigger(r.direction), r.net),
        ));
    }
    if !errors.is_empty() {
        return Err(RuleErrors(errors));
    }
    for direction in [Direction::Dst, Direction::Src] {
        let rules: Vec<_> = zone.ips.iter().filter(|r| r.direction == direction).collect();
        let Some(first) = rules.first() else { continue };
        entries.push(Entry {
            line: first.line,
            comment: Some(format!("{}: {}", ip_trigger(direction), count(rules.len(), "prefix"))),
            kind: EntryKind::Prefixes { nets: rules.iter().map(|r| r.net).collect(), direction },
        });
    }
    Ok(entries)
}

/// `1 name`, `2 names`, `1 prefix`, `3 prefixes`.
fn count(n: usize, word: &str) -> String {
    match (n, word.ends_with('x')) {
        (1, _) => format!("1 {word}"),
        (_, true) => format!("{n} {word}es"),
        _ => format!("{n} {word}s"),
    }
}

fn ip_trigger(direction: Direction) -> &'static str {
    match direction {
        Direction::Src => "rpz-client-ip (source)",
        _ => "rpz-ip (destination)",
    }
}

/// A hosts list as one entry of exact names with `answer` as the DNS answer.
pub fn hosts_entry(list: &[HostsEntry], answer: DomainAction) -> Entry {
    Entry {
        line: list.first().map_or(1, |e| e.line),
        comment: Some(count(list.len(), "name")),
        kind: EntryKind::Domains {
            patterns: list.iter().map(|e| DomainPattern { name: e.name.clone(), scope: DomainScope::Exact }).collect(),
            action: answer,
        },
    }
}

/// The rule set in force at `now`.
pub fn ruleset(dir: &Path, settings: Settings, now: DateTime<Utc>) -> Result<(Vec<Order>, RuleSet)> {
    let orders = load_orders(dir)?;
    let rules = RuleSet::build(settings, &orders, now).map_err(anyhow::Error::msg)?;
    Ok((orders, rules))
}

/// What the rule files look like on disk (path, size, mtime): a change
/// means a reload is due.
pub fn fingerprint(sources: &Sources) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_none_or(|x| x != "toml") {
                continue;
            } else if let Ok(m) = e.metadata() {
                out.push((p, m.len(), m.modified().ok()));
            }
        }
    }
    for d in &sources.order_dirs {
        walk(d, &mut out);
    }
    let packs = sources.signatures.iter().flat_map(|p| p.packs.iter());
    for path in sources.feeds.iter().map(|f| &f.path).chain(packs) {
        let m = std::fs::metadata(path).ok();
        out.push((path.clone(), m.as_ref().map_or(0, |m| m.len()), m.and_then(|m| m.modified().ok())));
    }
    out.sort();
    out
}
