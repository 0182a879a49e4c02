//! From a rules directory and settings to a validated [`RuleSet`].
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use filter_common::rules::{load_orders_dir, Order, RuleErrors, RuleSet, Settings};

/// Orders of `dir`, all valid, or every problem as `file:line: reason`.
pub fn load_orders(dir: &Path) -> Result<Vec<Order>, RuleErrors> {
    load_orders_dir(dir)
}

/// The rule set in force at `now`.
pub fn ruleset(dir: &Path, settings: Settings, now: DateTime<Utc>) -> Result<(Vec<Order>, RuleSet)> {
    let orders = load_orders(dir)?;
    let rules = RuleSet::build(settings, &orders, now).map_err(anyhow::Error::msg)?;
    Ok((orders, rules))
}
