//! A snapshot of what the agent enforces and what it has counted, rendered
//! for humans (`status`) and for Prometheus (`/metrics`).
use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::Utc;
use serde::Serialize;

use crate::run::{Agent, Metrics};

#[derive(Clone, Debug, Serialize)]
pub struct ReasonCount {
    pub interface: String,
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
pub struct Interface {
    pub name: String,
    pub mode: &'static str,
    pub slot: u32,
    pub program_id: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OrderState {
    pub order: String,
    pub category: &'static str,
    pub state: &'static str,
    pub expires: String,
    pub expires_unix: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MapUsage {
    pub map: &'static str,
    pub entries: u64,
    pub capacity: u64,
}

/// A domain-stage event counter (`filter_common::maps::l7`), summed over CPUs.
#[derive(Clone, Debug, Serialize)]
pub struct L7Count {
    pub event: &'static str,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub version: &'static str,
    pub instance: String,
    pub interfaces: Vec<Interface>,
    pub generation: Option<u32>,
    pub ruleset_sequence: u64,
    pub last_reload: f64,
    pub last_error: Option<String>,
    pub orders: Vec<OrderState>,
    pub prefix_rules: usize,
    pub l4_slots: usize,
    /// Domain rules in force (one per name of an entry), passthru included.
    pub domain_rules: usize,
    pub allowlist: usize,
    /// (kind, category) -> rules in force.
    pub rules_by_kind: Vec<(&'static str, &'static str, u64)>,
    pub maps: Vec<MapUsage>,
    pub fail_closed: bool,
    pub reasons: Vec<ReasonCount>,
    pub orders_hits: Vec<OrderCount>,
    /// Names looked up and what became of them (empty if the program has no
    /// domain stage).
    pub l7: Vec<L7Count>,
}

pub fn snapshot(agent: &Agent) -> anyhow::Result<Snapshot> {
    let dp = &agent.dataplane;
    let rules = &agent.rules;
    let slot_name: BTreeMap<u32, String> = dp.attached().iter().map(|a| (a.slot, a.interface.clone())).collect();
    let reasons = dp
        .reason_totals()?
        .into_iter()
        .map(|((slot, reason, dropped), t)| ReasonCount {
            interface: slot_name.get(&slot).cloned().unwrap_or_else(|| format!("slot{slot}")),
            reason: reason.name(),
            action: if dropped { "drop" } else { "pass" },
            packets: t.packets,
            bytes: t.bytes,
        })
        .collect();
    let per_rule = dp.rule_totals(rules.max_rule_id())?;
    let mut per_order: BTreeMap<String, OrderCount> = BTreeMap::new();
    for info in &rules.rules {
        let t = per_rule.get(info.id as usize - 1).copied().unwrap_or_default();
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
    let now = Utc::now();
    let orders = agent
        .all_orders()
        .map(|o| OrderState {
            order: o.id.clone(),
            category: o.category.name(),
            state: if o.is_active(now) { "in-force" } else if now < o.effective { "pending" } else { "expired" },
            expires: o.expires.to_rfc3339(),
            expires_unix: o.expires.timestamp(),
        })
        .collect();
    let mut by_kind: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    for p in &rules.prefixes {
        if let Some(info) = rules.rule(p.rule_id) {
            *by_kind.entry(("prefix", info.category.name())).or_default() += 1;
        }
    }
    for s in &rules.l4 {
        if let Some(info) = rules.rule(s.rule_id) {
            *by_kind.entry(("l4", info.category.name())).or_default() += 1;
        }
    }
    for d in &rules.domains {
        if let Some(info) = rules.rule(d.rule_id) {
            let kind = if d.action == filter_common::rules::ruleset::DomainAction::Pass { "domain-pass" } else { "domain" };
            *by_kind.entry((kind, info.category.name())).or_default() += 1;
        }
    }
    if !rules.settings.allow.is_empty() {
        by_kind.insert(("allowlist", "operator"), rules.settings.allow.len() as u64);
    }
    Ok(Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        instance: agent.config.instance.clone(),
        interfaces: dp
            .attached()
            .iter()
            .enumerate()
            .map(|(i, a)| Interface { name: a.interface.clone(), mode: a.mode, slot: a.slot, program_id: dp.attached_program_id(i) })
            .collect(),
        generation: dp.active_generation(),
        ruleset_sequence: agent.metrics.sequence,
        last_reload: agent.metrics.last_reload,
        last_error: agent.last_error.clone(),
        orders,
        prefix_rules: rules.prefixes.len(),
        l4_slots: rules.l4.len(),
        domain_rules: rules.domains.len(),
        allowlist: rules.settings.allow.len(),
        rules_by_kind: by_kind.into_iter().map(|((k, c), n)| (k, c, n)).collect(),
        maps: dp.map_usage().into_iter().map(|(map, entries, capacity)| MapUsage { map, entries, capacity }).collect(),
        fail_closed: rules.settings.fail_closed,
        reasons,
        orders_hits,
        l7: dp.l7_totals()?.into_iter().map(|(event, count)| L7Count { event, count }).collect(),
    })
}

/// `xdp-filter status`-style text.
pub fn render_status(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "edgefilter {} (instance {})", s.version, s.instance);
    let _ = writeln!(
        out,
        "rule set:        #{} (generation {}), applied {}",
        s.ruleset_sequence,
        s.generation.map_or("-".into(), |g| g.to_string()),
        chrono::DateTime::from_timestamp(s.last_reload as i64, 0).map_or("-".into(), |t| t.to_rfc3339())
    );
    let _ = writeln!(out, "malformed:       {}", if s.fail_closed { "dropped (fail-closed)" } else { "passed (fail-open)" });
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "LAST RELOAD REJECTED (previous rules in force):");
        for line in e.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(out, "\nInterfaces");
    if s.interfaces.is_empty() {
        let _ = writeln!(out, "  (none attached)");
    }
    for i in &s.interfaces {
        let id = i.program_id.map_or("-".into(), |id| id.to_string());
        let _ = writeln!(out, "  {:<16} xdp mode {:<7} program id {:<6} counter slot {}", i.name, i.mode, id, i.slot);
    }
    let in_force = s.orders.iter().filter(|o| o.state == "in-force").count();
    let _ = writeln!(
        out,
        "\nRules in force\n  orders {in_force} of {} loaded   prefix rules {}   L4 rule slots {}   domain rules {}   allowlist prefixes {}",
        s.orders.len(),
        s.prefix_rules,
        s.l4_slots,
        s.domain_rules,
        s.allowlist
    );
    for m in &s.maps {
        let pct = if m.capacity > 0 { 100.0 * m.entries as f64 / m.capacity as f64 } else { 0.0 };
        let _ = writeln!(out, "  map {:<14} {:>10} / {:<10} ({pct:.1}%)", m.map, m.entries, m.capacity);
    }
    if !s.l7.is_empty() {
        let _ = writeln!(out, "\nNames (DNS, TLS SNI, HTTP Host)");
        for line in s.l7.chunks(4) {
            let cells: Vec<String> = line.iter().map(|c| format!("{} {}", c.event, c.count)).collect();
            let _ = writeln!(out, "  {}", cells.join("   "));
        }
    }
    let _ = writeln!(out, "\nPackets by decision\n  {:<16} {:<10} {:<6} {:>14} {:>16}", "interface", "reason", "action", "packets", "bytes");
    for r in s.reasons.iter().filter(|r| r.packets > 0) {
        let _ = writeln!(out, "  {:<16} {:<10} {:<6} {:>14} {:>16}", r.interface, r.reason, r.action, r.packets, r.bytes);
    }
    let _ = writeln!(out, "\nTop orders by matched packets\n  {:<28} {:<11} {:<8} {:>12}", "order", "category", "mode", "packets");
    for o in s.orders_hits.iter().take(10) {
        let mode = if o.dry_run { "dry-run" } else { "enforce" };
        let _ = writeln!(out, "  {:<28} {:<11} {:<8} {:>12}", o.order, o.category, mode, o.packets);
    }
    out
}

/// Prometheus text exposition, built with the `prometheus` crate. Packet
/// counters come from the kernel's pinned per-CPU maps, so they never go
/// backwards across agent restarts; no label ever holds an address.
pub fn render_metrics(s: &Snapshot, m: &Metrics) -> anyhow::Result<String> {
    use prometheus::{Encoder, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
    let registry = Registry::new();
    let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
    let gauge = |name: &str, help: &str, labels: &[&str]| IntGaugeVec::new(Opts::new(name, help), labels);
    let packets = counter("edgefilter_packets_total", "Packets seen by the XDP program, by interface, verdict and reason.", &["interface", "action", "reason"])?;
    let bytes = counter("edgefilter_bytes_total", "Bytes seen by the XDP program, by interface, verdict and reason.", &["interface", "action", "reason"])?;
    let rule_packets = counter("edgefilter_rule_packets_total", "Packets matched per order (dry-run orders count would-drop).", &["order", "category"])?;
    let rule_bytes = counter("edgefilter_rule_bytes_total", "Bytes matched per order (dry-run orders count would-drop).", &["order", "category"])?;
    let l7 = counter("edgefilter_l7_events_total", "Domain stage events: names looked up per protocol, DNS answers sent, names that could not be read.", &["event"])?;
    let rules = gauge("edgefilter_rules", "Rules in force by kind and category.", &["kind", "category"])?;
    let orders = gauge("edgefilter_orders", "Loaded orders by state.", &["state"])?;
    let entries = gauge("edgefilter_map_entries", "Entries in use in the active generation.", &["map"])?;
    let capacity = gauge("edgefilter_map_capacity", "Configured entries per generation.", &["map"])?;
    let build = gauge("edgefilter_build_info", "Agent build information.", &["version"])?;
    let expiry = gauge("edgefilter_order_expiry_timestamp_seconds", "When each order in force expires (feeds: far future).", &["order", "category"])?;
    let generation = IntGauge::new("edgefilter_ruleset_generation", "Sequence number of the rule set in force (increments at every apply).")?;
    let last = Gauge::new("edgefilter_ruleset_last_reload_timestamp_seconds", "When the rule set in force was applied.")?;
    let last_ok = IntGauge::new("edgefilter_ruleset_last_reload_success", "1 if the last reload attempt was applied, 0 if rejected.")?;
    for c in [&packets, &bytes, &rule_packets, &rule_bytes, &l7] {
        registry.register(Box::new(c.clone()))?;
    }
    for g in [&rules, &orders, &entries, &capacity, &build, &expiry] {
        registry.register(Box::new(g.clone()))?;
    }
    registry.register(Box::new(generation.clone()))?;
    registry.register(Box::new(last.clone()))?;
    registry.register(Box::new(last_ok.clone()))?;
    registry.register(Box::new(m.reload_duration.clone()))?;
    registry.register(Box::new(m.reload_errors.clone()))?;
    registry.register(Box::new(m.order_enforcement.clone()))?;
    for r in &s.reasons {
        packets.with_label_values(&[r.interface.as_str(), r.action, r.reason]).inc_by(r.packets);
        bytes.with_label_values(&[r.interface.as_str(), r.action, r.reason]).inc_by(r.bytes);
    }
    for c in &s.l7 {
        l7.with_label_values(&[c.event]).inc_by(c.count);
    }
    for o in &s.orders_hits {
        rule_packets.with_label_values(&[o.order.as_str(), o.category]).inc_by(o.packets);
        rule_bytes.with_label_values(&[o.order.as_str(), o.category]).inc_by(o.bytes);
    }
    for (kind, category, n) in &s.rules_by_kind {
        rules.with_label_values(&[kind, category]).set(*n as i64);
    }
    for state in ["in-force", "pending", "expired"] {
        orders.with_label_values(&[state]).set(s.orders.iter().filter(|o| o.state == state).count() as i64);
    }
    for u in &s.maps {
        entries.with_label_values(&[u.map]).set(u.entries as i64);
        capacity.with_label_values(&[u.map]).set(u.capacity as i64);
    }
    build.with_label_values(&[s.version]).set(1);
    for o in s.orders.iter().filter(|o| o.state == "in-force") {
        expiry.with_label_values(&[o.order.as_str(), o.category]).set(o.expires_unix);
    }
    generation.set(s.ruleset_sequence as i64);
    last.set(s.last_reload);
    last_ok.set(i64::from(s.last_error.is_none()));
    let mut buf = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    Ok(String::from_utf8(buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "0.0.0",
            instance: "test".into(),
            interfaces: Vec::new(),
            generation: Some(1),
            ruleset_sequence: 3,
            last_reload: 0.0,
            last_error: None,
            orders: Vec::new(),
            prefix_rules: 2,
            l4_slots: 0,
            domain_rules: 14,
            allowlist: 0,
            rules_by_kind: vec![("domain", "legal", 13), ("domain-pass", "legal", 1)],
            maps: vec![MapUsage { map: "DOMAINS", entries: 12, capacity: 1_100_000 }],
            fail_closed: false,
            reasons: Vec::new(),
            orders_hits: Vec::new(),
            l7: filter_common::maps::l7::NAMES.iter().enumerate().map(|(i, &event)| L7Count { event, count: i as u64 * 10 }).collect(),
        }
    }

    #[test]
    fn domain_rules_and_name_events_are_reported() {
        let text = render_status(&snapshot());
        assert!(text.contains("domain rules 14"), "{text}");
        assert!(text.contains("map DOMAINS                12 / 1100000    (0.0%)"), "{text}");
        assert!(text.contains("Names (DNS, TLS SNI, HTTP Host)\n  dns_queries 0   dns_answered 10   dns_unparsed 20   tls_sni 30\n"), "{text}");
        assert!(text.contains("bad_names 100"), "{text}");

        let metrics = Metrics {
            reload_duration: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("edgefilter_reload_duration_seconds", "h")).unwrap(),
            order_enforcement: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("edgefilter_order_enforcement_seconds", "h")).unwrap(),
            reload_errors: prometheus::IntCounter::new("edgefilter_reload_errors_total", "h").unwrap(),
            last_reload: 0.0,
            sequence: 3,
        };
        let text = render_metrics(&snapshot(), &metrics).unwrap();
        for line in [
            "edgefilter_l7_events_total{event=\"dns_answered\"} 10",
            "edgefilter_l7_events_total{event=\"flow_drops\"} 90",
            "edgefilter_rules{category=\"legal\",kind=\"domain\"} 13",
            "edgefilter_rules{category=\"legal\",kind=\"domain-pass\"} 1",
            "edgefilter_map_capacity{map=\"DOMAINS\"} 1100000",
            "edgefilter_map_entries{map=\"DOMAINS\"} 12",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // Without a domain stage there is no Names section.
        let mut s = snapshot();
        s.l7.clear();
        assert!(!render_status(&s).contains("Names"));
    }
}
