//! A snapshot of what the agent enforces and what it has counted, rendered
//! for humans (`status`) and for Prometheus (`/metrics`).
use std::collections::BTreeMap;
use std::fmt::Write as _;

use filter_common::rules::RuleSet;
use serde::Serialize;

use crate::dataplane::Dataplane;

#[derive(Clone, Debug, Serialize)]
pub struct ReasonCount {
    pub reason: &'static str,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OrderCount {
    pub order: String,
    pub category: &'static str,
    pub dry_run: bool,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub version: &'static str,
    pub interfaces: Vec<(String, &'static str)>,
    pub program_id: Option<u32>,
    pub generation: Option<u32>,
    pub orders: usize,
    pub prefix_rules: usize,
    pub l4_slots: usize,
    pub allowlist: usize,
    pub fail_closed: bool,
    pub reasons: Vec<ReasonCount>,
    pub orders_hits: Vec<OrderCount>,
}

pub fn snapshot(dp: &Dataplane, rules: &RuleSet) -> anyhow::Result<Snapshot> {
    let reasons = dp
        .reason_totals()?
        .into_iter()
        .map(|((reason, dropped), t)| ReasonCount {
            reason: reason.name(),
            action: if dropped { "drop" } else { "pass" },
            packets: t.packets,
            bytes: t.bytes,
        })
        .collect();
    let per_rule = dp.rule_totals(rules.rules.len() as u32)?;
    let mut per_order: BTreeMap<String, OrderCount> = BTreeMap::new();
    for (info, t) in rules.rules.iter().zip(per_rule) {
        let e = per_order.entry(info.order_id.clone()).or_insert_with(|| OrderCount {
            order: info.order_id.clone(),
            category: info.category.name(),
            dry_run: info.dry_run,
            packets: 0,
            bytes: 0,
        });
        e.packets += t.packets;
        e.bytes += t.bytes;
    }
    let mut orders_hits: Vec<OrderCount> = per_order.into_values().collect();
    orders_hits.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.order.cmp(&b.order)));
    let orders = orders_hits.len();
    Ok(Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        interfaces: dp.attached().to_vec(),
        program_id: dp.program().ok().and_then(|p| p.info().ok()).map(|i| i.id()),
        generation: dp.active_generation(),
        orders,
        prefix_rules: rules.prefixes.len(),
        l4_slots: rules.l4.len(),
        allowlist: rules.settings.allow.len(),
        fail_closed: rules.settings.fail_closed,
        reasons,
        orders_hits,
    })
}

/// `xdp-filter status`-style text.
pub fn render_status(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "edgefilter {}", s.version);
    let _ = writeln!(out, "program id:     {}", s.program_id.map_or("-".into(), |i| i.to_string()));
    let _ = writeln!(out, "rule generation: {}", s.generation.map_or("none loaded".into(), |g| g.to_string()));
    let _ = writeln!(out, "malformed:      {}", if s.fail_closed { "dropped (fail-closed)" } else { "passed (fail-open)" });
    let _ = writeln!(out, "\nInterfaces");
    if s.interfaces.is_empty() {
        let _ = writeln!(out, "  (none attached)");
    }
    for (name, mode) in &s.interfaces {
        let _ = writeln!(out, "  {name:<16} xdp mode {mode}");
    }
    let _ = writeln!(
        out,
        "\nRules in force\n  orders {}   prefix rules {}   L4 rule slots {}   allowlist prefixes {}",
        s.orders, s.prefix_rules, s.l4_slots, s.allowlist
    );
    let _ = writeln!(out, "\nPackets by decision\n  {:<10} {:<6} {:>14} {:>16}", "reason", "action", "packets", "bytes");
    for r in s.reasons.iter().filter(|r| r.packets > 0) {
        let _ = writeln!(out, "  {:<10} {:<6} {:>14} {:>16}", r.reason, r.action, r.packets, r.bytes);
    }
    let _ = writeln!(out, "\nTop orders by matched packets\n  {:<28} {:<11} {:<8} {:>12}", "order", "category", "mode", "packets");
    for o in s.orders_hits.iter().take(10) {
        let mode = if o.dry_run { "dry-run" } else { "enforce" };
        let _ = writeln!(out, "  {:<28} {:<11} {:<8} {:>12}", o.order, o.category, mode, o.packets);
    }
    out
}

/// Prometheus text exposition, built with the `prometheus` crate.
pub fn render_metrics(s: &Snapshot) -> anyhow::Result<String> {
    use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
    let registry = Registry::new();
    let packets = IntCounterVec::new(Opts::new("edgefilter_packets_total", "Packets seen by the XDP program, by verdict and reason."), &["interface", "action", "reason"])?;
    let bytes = IntCounterVec::new(Opts::new("edgefilter_bytes_total", "Bytes seen by the XDP program, by verdict and reason."), &["interface", "action", "reason"])?;
    let rule_packets = IntCounterVec::new(Opts::new("edgefilter_rule_packets_total", "Packets matched per order (dry-run orders count would-drop)."), &["order", "category"])?;
    let rules = IntGaugeVec::new(Opts::new("edgefilter_rules", "Rules in force by kind."), &["kind"])?;
    let build = IntGaugeVec::new(Opts::new("edgefilter_build_info", "Agent build information."), &["version"])?;
    for c in [&packets, &bytes, &rule_packets] {
        registry.register(Box::new(c.clone()))?;
    }
    registry.register(Box::new(rules.clone()))?;
    registry.register(Box::new(build.clone()))?;
    for r in &s.reasons {
        packets.with_label_values(&["all", r.action, r.reason]).inc_by(r.packets);
        bytes.with_label_values(&["all", r.action, r.reason]).inc_by(r.bytes);
    }
    for o in &s.orders_hits {
        rule_packets.with_label_values(&[o.order.as_str(), o.category]).inc_by(o.packets);
    }
    rules.with_label_values(&["prefix"]).set(s.prefix_rules as i64);
    rules.with_label_values(&["l4"]).set(s.l4_slots as i64);
    rules.with_label_values(&["allowlist"]).set(s.allowlist as i64);
    build.with_label_values(&[s.version]).set(1);
    let mut buf = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    Ok(String::from_utf8(buf)?)
}
