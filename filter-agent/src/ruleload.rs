//! From rule sources (order directories and feeds) to a validated
//! [`RuleSet`]. A feed becomes an order of its own (its id, its provenance
//! as the authority), so its drops are counted and reported like any order.
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;
use chrono::{DateTime, TimeZone, Utc};
use filter_common::rules::order_file::{Entry, EntryKind};
use filter_common::rules::{load_feed, load_orders_dir, Order, RuleError, RuleErrors, RuleSet, Settings};

use crate::config::{Feed, Sources};

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
    let mut seen: Vec<&Order> = Vec::new();
    for o in &orders {
        if let Some(first) = seen.iter().find(|s| s.id == o.id) {
            errors.push(RuleError::new(&o.file, o.line, format!("order id {} already used in {}", o.id, first.file.display())));
        }
        seen.push(o);
    }
    if errors.is_empty() { Ok(orders) } else { Err(RuleErrors(errors)) }
}

fn feed_order(feed: &Feed) -> Result<Order, RuleErrors> {
    let entries = load_feed(&feed.path, feed.format)?;
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
        entries: vec![Entry {
            line: 1,
            comment: Some(format!("{} prefixes", entries.len())),
            kind: EntryKind::Prefixes { nets: entries.into_iter().map(|e| e.net).collect(), direction: feed.direction },
        }],
        file: feed.path.clone(),
        line: 1,
    })
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
    for f in &sources.feeds {
        let m = std::fs::metadata(&f.path).ok();
        out.push((f.path.clone(), m.as_ref().map_or(0, |m| m.len()), m.and_then(|m| m.modified().ok())));
    }
    out.sort();
    out
}
