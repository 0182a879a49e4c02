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

/// A signature in force and what it matched.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureHit {
    pub sid: u32,
    pub pack: String,
    /// `drop`, `alert` or `dry-run` (`crate::inspect::action_name`).
    pub action: &'static str,
    pub msg: String,
    /// Packets the kernel matched, and those the bans it installed dropped
    /// (`RULE_STATS`).
    pub packets: u64,
    /// Deep-inspection matches since the agent started.
    pub deep: u64,
}

/// Deep-inspection events by outcome (`crate::inspect::Outcome`).
#[derive(Clone, Debug, Serialize)]
pub struct DeepCount {
    pub outcome: &'static str,
    pub count: u64,
}

/// Traffic toward a protected prefix group (`[[protect]]`): the kernel's
/// totals (every packet, whatever its verdict) and the rates of the last
/// detection interval.
#[derive(Clone, Debug, Serialize)]
pub struct ProtectedGroup {
    pub name: String,
    /// TCP, UDP, ICMP, other.
    pub packets: [u64; 4],
    pub bytes: [u64; 4],
    pub syn: u64,
    pub fragments: u64,
    /// UDP from each reflection port (port, packets, bytes).
    pub reflection: Vec<(u16, u64, u64)>,
    /// `None` until the detector has two readings.
    pub rates: Option<crate::ddos::Rates>,
}

/// A `[[ddos_policy]]` and its mitigation.
#[derive(Clone, Debug, Serialize)]
pub struct Mitigation {
    pub policy: String,
    pub prefix_group: String,
    pub metric: &'static str,
    pub threshold: f64,
    pub for_seconds: u32,
    pub hold_down_seconds: u32,
    /// The watched rate at the last sample.
    pub value: f64,
    pub active: bool,
    /// Consecutive samples above (idle) or at or below (active) the threshold.
    pub above: u32,
    pub below: u32,
    /// When the mitigation in force started (RFC 3339).
    pub since: Option<String>,
    /// The order it installs: `auto:<policy>:<group>`.
    pub order: String,
    /// Mitigations started since the agent started.
    pub started: u64,
    pub error: Option<String>,
}

/// Protocol names of `ProtectedGroup::packets` and `bytes`, in order.
pub const PROTOCOLS: [&str; 4] = ["tcp", "udp", "icmp", "other"];

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
    /// Signatures in force.
    pub signature_rules: usize,
    /// The signature stage's counters (`filter_common::maps::sig::stat`;
    /// empty if the program has no signature stage).
    pub signature_events: Vec<L7Count>,
    /// Per signature in force, in rule order.
    pub signature_hits: Vec<SignatureHit>,
    /// Bans in force (`None`: the program has no `BANS` map).
    pub bans: Option<u64>,
    pub deep_inspection: Vec<DeepCount>,
    /// Protected prefix groups, in config order.
    pub protected: Vec<ProtectedGroup>,
    /// Seconds the rates of `protected` cover.
    pub rates_interval: f64,
    /// Every `[[ddos_policy]]`, active or not.
    pub mitigations: Vec<Mitigation>,
    /// SYN authentication: sources verified now, when some `syn_auth`
    /// rule is in force.
    pub syn_verified: Option<u64>,
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
    let deep_hits = agent.inspector.hits();
    let signature_hits = rules
        .signatures
        .iter()
        .map(|r| {
            let pack = rules.rule(r.rule_id).map_or_else(String::new, |info| crate::inspect::pack_name(&info.order_id).to_string());
            let action = crate::inspect::action_name(r);
            SignatureHit {
                sid: r.sig.sid,
                deep: deep_hits.get(&(pack.clone(), r.sig.sid, action)).copied().unwrap_or(0),
                pack,
                action,
                msg: r.sig.msg.clone(),
                packets: per_rule.get(r.rule_id as usize - 1).map_or(0, |t| t.packets),
            }
        })
        .collect();
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
    for r in &rules.signatures {
        if let Some(info) = rules.rule(r.rule_id) {
            *by_kind.entry(("signature", info.category.name())).or_default() += 1;
        }
    }
    if !rules.settings.allow.is_empty() {
        by_kind.insert(("allowlist", "operator"), rules.settings.allow.len() as u64);
    }
    let groups = &agent.ddos.groups;
    let totals = if groups.is_empty() { Vec::new() } else { dp.protect_totals(groups.len())? };
    let reflected = if groups.is_empty() { Vec::new() } else { dp.reflect_totals(groups.len())? };
    let ports = agent.config.settings.reflect_ports().unwrap_or_default();
    let protected = groups
        .iter()
        .enumerate()
        .map(|(g, name)| {
            let t = totals.get(g).copied().unwrap_or_default();
            ProtectedGroup {
                name: name.clone(),
                packets: t.packets,
                bytes: t.bytes,
                syn: t.syn,
                fragments: t.fragments,
                reflection: ports
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| **p != 0)
                    .map(|(slot, p)| {
                        let c = reflected.get(g).map(|r| r[slot]).unwrap_or_default();
                        (*p, c.packets, c.bytes)
                    })
                    .collect(),
                rates: agent.ddos.rates.get(g).copied().flatten(),
            }
        })
        .collect();
    let mitigations = agent
        .ddos
        .policies
        .iter()
        .zip(&agent.ddos.states)
        .map(|(p, st)| Mitigation {
            policy: p.name.clone(),
            prefix_group: p.group.clone(),
            metric: p.metric.name(),
            threshold: p.threshold,
            for_seconds: p.for_seconds,
            hold_down_seconds: p.hold_down_seconds,
            value: st.value,
            active: st.active,
            above: st.above,
            below: st.below,
            since: st.since.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            order: p.order_id(),
            started: st.started,
            error: st.error.clone(),
        })
        .collect();
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
        signature_rules: rules.signatures.len(),
        signature_events: dp.sig_totals()?.into_iter().map(|(event, count)| L7Count { event, count }).collect(),
        signature_hits,
        bans: dp.bans_in_force(crate::inspect::monotonic_ns())?,
        deep_inspection: agent.inspector.outcomes().into_iter().map(|(outcome, count)| DeepCount { outcome, count }).collect(),
        protected,
        rates_interval: agent.ddos.interval,
        mitigations,
        syn_verified: if rules.l4.iter().any(|s| s.syn_auth) {
            dp.syn_verified_in_force(crate::inspect::monotonic_ns(), u64::from(rules.settings.syn_auth_seconds) * 1_000_000_000)?
        } else {
            None
        },
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
    if !s.signature_events.is_empty() {
        let bans = s.bans.map_or("-".into(), |b| b.to_string());
        let _ = writeln!(out, "\nSignatures\n  rules {}   bans in force {bans}", s.signature_rules);
        for line in s.signature_events.chunks(4) {
            let cells: Vec<String> = line.iter().map(|c| format!("{} {}", c.event, c.count)).collect();
            let _ = writeln!(out, "  {}", cells.join("   "));
        }
        let cells: Vec<String> = s.deep_inspection.iter().map(|c| format!("{} {}", c.outcome, c.count)).collect();
        let _ = writeln!(out, "  deep inspection: {}", cells.join("   "));
        let mut top: Vec<&SignatureHit> = s.signature_hits.iter().filter(|h| h.packets + h.deep > 0).collect();
        top.sort_by(|a, b| (b.packets + b.deep).cmp(&(a.packets + a.deep)).then(a.sid.cmp(&b.sid)));
        for h in top.iter().take(10) {
            let _ = writeln!(out, "  sid {:<10} {:<16} {:<7} packets {:>10}   deep {:>8}   {}", h.sid, h.pack, h.action, h.packets, h.deep, h.msg);
        }
    }
    render_protected(&mut out, s);
    if let Some(n) = s.syn_verified {
        let answered: u64 = s.reasons.iter().filter(|r| r.reason == filter_common::maps::Reason::SynAuth.name()).map(|r| r.packets).sum();
        let _ = writeln!(out, "\nSYN authentication\n  sources verified now {n}   SYNs answered with a cookie or ACKs reset {answered}");
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

/// "Protected prefixes": per group, the rates of the last second; then
/// every attack policy, mitigating or idle.
fn render_protected(out: &mut String, s: &Snapshot) {
    use crate::ddos::si;
    if s.protected.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nProtected prefixes (traffic toward them per second, whatever the verdict; last {:.1} s)", s.rates_interval);
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "group", "pps", "bit/s", "tcp", "udp", "icmp", "syn", "frags", "reflect", "refl bit/s"
    );
    for g in &s.protected {
        match &g.rates {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  {:<16} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10}",
                    g.name,
                    si(r.pps),
                    si(r.bps),
                    si(r.tcp_pps),
                    si(r.udp_pps),
                    si(r.icmp_pps),
                    si(r.syn_pps),
                    si(r.fragment_pps),
                    si(r.reflection_pps),
                    si(r.reflection_bps)
                );
            }
            None => {
                let _ = writeln!(out, "  {:<16} (measuring)", g.name);
            }
        }
    }
    if s.mitigations.is_empty() {
        let _ = writeln!(out, "  no [[ddos_policy]] configured: rates are watched, nothing is mitigated automatically");
        return;
    }
    let active = s.mitigations.iter().filter(|m| m.active).count();
    let _ = writeln!(out, "\nAttack mitigations ({active} active of {} policies)", s.mitigations.len());
    let _ = writeln!(out, "  {:<20} {:<16} {:<15} {:>9} {:>9}  state", "policy", "group", "metric", "threshold", "now");
    for m in &s.mitigations {
        let state = if m.active {
            format!(
                "MITIGATING since {} with order {}{}",
                m.since.as_deref().unwrap_or("-"),
                m.order,
                if m.below > 0 { format!(" (below for {} of {} s)", m.below, m.hold_down_seconds.max(1)) } else { String::new() }
            )
        } else if m.above > 0 {
            format!("above for {} of {} s", m.above, m.for_seconds)
        } else {
            "idle".to_string()
        };
        let _ = writeln!(out, "  {:<20} {:<16} {:<15} {:>9} {:>9}  {state}", m.policy, m.prefix_group, m.metric, si(m.threshold), si(m.value));
        if let Some(e) = &m.error {
            let _ = writeln!(out, "  {:<20} LAST ERROR: {e}", "");
        }
    }
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
    let sig_events = counter(
        "edgefilter_signature_events_total",
        "Signature stage events: payloads scanned, candidates, matches, bans installed and packets they dropped, deep-inspection events sent or not.",
        &["event"],
    )?;
    let sig_hits = counter(
        "edgefilter_signature_hits_total",
        "Packets matched in the kernel per signature in force, with the packets the bans it installed dropped.",
        &["sid", "pack", "action"],
    )?;
    let deep = counter("edgefilter_deep_inspection_total", "Deep-inspection events by outcome (matched, clean, malformed, banned).", &["outcome"])?;
    let deep_hits = counter("edgefilter_deep_inspection_hits_total", "Deep-inspection matches per signature in force (since the agent started).", &["sid", "pack", "action"])?;
    let rules = gauge("edgefilter_rules", "Rules in force by kind and category.", &["kind", "category"])?;
    let orders = gauge("edgefilter_orders", "Loaded orders by state.", &["state"])?;
    let entries = gauge("edgefilter_map_entries", "Entries in use in the active generation.", &["map"])?;
    let capacity = gauge("edgefilter_map_capacity", "Configured entries per generation.", &["map"])?;
    let build = gauge("edgefilter_build_info", "Agent build information.", &["version"])?;
    let expiry = gauge("edgefilter_order_expiry_timestamp_seconds", "When each order in force expires (feeds: far future).", &["order", "category"])?;
    let generation = IntGauge::new("edgefilter_ruleset_generation", "Sequence number of the rule set in force (increments at every apply).")?;
    let last = Gauge::new("edgefilter_ruleset_last_reload_timestamp_seconds", "When the rule set in force was applied.")?;
    let last_ok = IntGauge::new("edgefilter_ruleset_last_reload_success", "1 if the last reload attempt was applied, 0 if rejected.")?;
    let prot_packets = counter(
        "edgefilter_protected_packets_total",
        "Packets toward each protected prefix group by protocol, whatever their verdict (attack detection's input).",
        &["prefix_group", "protocol"],
    )?;
    let prot_bytes = counter("edgefilter_protected_bytes_total", "Bytes toward each protected prefix group by protocol, whatever their verdict.", &["prefix_group", "protocol"])?;
    let prot_syn = counter("edgefilter_protected_syn_total", "TCP SYN (without ACK) toward each protected prefix group.", &["prefix_group"])?;
    let prot_frag = counter("edgefilter_protected_fragments_total", "IP fragments toward each protected prefix group.", &["prefix_group"])?;
    let reflection = counter(
        "edgefilter_reflection_packets_total",
        "UDP packets from a reflection source port toward each protected prefix group, by port.",
        &["prefix_group", "port"],
    )?;
    let mitigations = counter("edgefilter_mitigations_total", "Attack mitigations started per policy (since the agent started).", &["policy"])?;
    let attack = gauge("edgefilter_attack_active", "1 while a policy's attack mitigation is in force for its prefix group, else 0.", &["policy", "prefix_group"])?;
    for c in [&prot_packets, &prot_bytes, &prot_syn, &prot_frag, &reflection, &mitigations] {
        registry.register(Box::new(c.clone()))?;
    }
    registry.register(Box::new(attack.clone()))?;
    for g in &s.protected {
        for (i, proto) in PROTOCOLS.iter().enumerate() {
            prot_packets.with_label_values(&[g.name.as_str(), proto]).inc_by(g.packets[i]);
            prot_bytes.with_label_values(&[g.name.as_str(), proto]).inc_by(g.bytes[i]);
        }
        prot_syn.with_label_values(&[g.name.as_str()]).inc_by(g.syn);
        prot_frag.with_label_values(&[g.name.as_str()]).inc_by(g.fragments);
        for (port, packets, _) in &g.reflection {
            reflection.with_label_values(&[g.name.as_str(), port.to_string().as_str()]).inc_by(*packets);
        }
    }
    for m in &s.mitigations {
        mitigations.with_label_values(&[m.policy.as_str()]).inc_by(m.started);
        attack.with_label_values(&[m.policy.as_str(), m.prefix_group.as_str()]).set(i64::from(m.active));
    }
    for c in [&packets, &bytes, &rule_packets, &rule_bytes, &l7, &sig_events, &sig_hits, &deep, &deep_hits] {
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
    for c in &s.signature_events {
        sig_events.with_label_values(&[c.event]).inc_by(c.count);
    }
    for h in &s.signature_hits {
        let sid = h.sid.to_string();
        sig_hits.with_label_values(&[sid.as_str(), h.pack.as_str(), h.action]).inc_by(h.packets);
        deep_hits.with_label_values(&[sid.as_str(), h.pack.as_str(), h.action]).inc_by(h.deep);
    }
    for c in &s.deep_inspection {
        deep.with_label_values(&[c.outcome]).inc_by(c.count);
    }
    if let Some(n) = s.syn_verified {
        let g = IntGauge::new("edgefilter_syn_verified_sources", "Sources that answered a SYN cookie and are verified now (syn_auth rules).")?;
        registry.register(Box::new(g.clone()))?;
        g.set(n as i64);
    }
    if let Some(n) = s.bans {
        let bans = IntGauge::new("edgefilter_bans", "Sources banned by signatures now.")?;
        registry.register(Box::new(bans.clone()))?;
        bans.set(n as i64);
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
            signature_rules: 0,
            signature_events: Vec::new(),
            signature_hits: Vec::new(),
            bans: None,
            deep_inspection: Vec::new(),
            protected: Vec::new(),
            rates_interval: 0.0,
            mitigations: Vec::new(),
            syn_verified: None,
        }
    }

    fn metrics() -> Metrics {
        Metrics {
            reload_duration: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("edgefilter_reload_duration_seconds", "h")).unwrap(),
            order_enforcement: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("edgefilter_order_enforcement_seconds", "h")).unwrap(),
            reload_errors: prometheus::IntCounter::new("edgefilter_reload_errors_total", "h").unwrap(),
            last_reload: 0.0,
            sequence: 3,
        }
    }

    #[test]
    fn signatures_bans_and_deep_inspection_are_reported() {
        let mut s = snapshot();
        s.signature_rules = 2;
        s.signature_events = filter_common::maps::stat::NAMES.iter().enumerate().map(|(i, &event)| L7Count { event, count: i as u64 }).collect();
        s.signature_hits = vec![
            SignatureHit { sid: 9000101, pack: "log4shell".into(), action: "drop", msg: "jndi ldap".into(), packets: 7, deep: 2 },
            SignatureHit { sid: 9000900, pack: "local".into(), action: "alert", msg: "quiet".into(), packets: 0, deep: 0 },
        ];
        s.bans = Some(3);
        s.deep_inspection = crate::inspect::Outcome::ALL.iter().enumerate().map(|(i, o)| DeepCount { outcome: o.name(), count: i as u64 + 1 }).collect();
        let text = render_status(&s);
        assert!(text.contains("\nSignatures\n  rules 2   bans in force 3\n  scanned 0   candidates 1   matches 2   ban_drops 3\n"), "{text}");
        assert!(text.contains("events_lost 8\n"), "{text}");
        assert!(text.contains("  deep inspection: matched 1   clean 2   malformed 3   banned 4\n"), "{text}");
        assert!(text.contains("sid 9000101    log4shell        drop    packets          7   deep        2   jndi ldap"), "{text}");
        assert!(!text.contains("9000900"), "signatures that matched nothing are left out:\n{text}");

        let text = render_metrics(&s, &metrics()).unwrap();
        for line in [
            "edgefilter_signature_events_total{event=\"ban_drops\"} 3",
            "edgefilter_signature_events_total{event=\"events_lost\"} 8",
            "edgefilter_signature_hits_total{action=\"drop\",pack=\"log4shell\",sid=\"9000101\"} 7",
            "edgefilter_signature_hits_total{action=\"alert\",pack=\"local\",sid=\"9000900\"} 0",
            "edgefilter_deep_inspection_hits_total{action=\"drop\",pack=\"log4shell\",sid=\"9000101\"} 2",
            "edgefilter_deep_inspection_total{outcome=\"banned\"} 4",
            "edgefilter_deep_inspection_total{outcome=\"malformed\"} 3",
            "edgefilter_bans 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // Without a signature stage: no section, no ban gauge.
        let text = render_status(&snapshot());
        assert!(!text.contains("Signatures"), "{text}");
        assert!(!render_metrics(&snapshot(), &metrics()).unwrap().contains("edgefilter_bans"));
    }

    #[test]
    fn protected_prefixes_and_mitigations_are_reported() {
        let mut s = snapshot();
        let rates = crate::ddos::Rates { pps: 52_100.0, bps: 41_600_000.0, udp_pps: 52_000.0, tcp_pps: 100.0, reflection_pps: 51_900.0, ..Default::default() };
        s.protected = vec![
            ProtectedGroup {
                name: "customers".into(),
                packets: [10, 5_000_000, 3, 0],
                bytes: [1000, 400_000_000, 300, 0],
                syn: 4,
                fragments: 0,
                reflection: vec![(53, 7, 700), (123, 4_900_000, 390_000_000)],
                rates: Some(rates),
            },
            ProtectedGroup { name: "hosting".into(), packets: [0; 4], bytes: [0; 4], syn: 0, fragments: 0, reflection: vec![(123, 0, 0)], rates: None },
        ];
        s.rates_interval = 1.0;
        s.mitigations = vec![
            Mitigation {
                policy: "ntp-reflection".into(),
                prefix_group: "customers".into(),
                metric: "reflection_pps",
                threshold: 50_000.0,
                for_seconds: 3,
                hold_down_seconds: 60,
                value: 51_900.0,
                active: true,
                above: 0,
                below: 0,
                since: Some("2026-03-01T03:00:00Z".into()),
                order: "auto:ntp-reflection:customers".into(),
                started: 2,
                error: None,
            },
            Mitigation {
                policy: "syn-flood".into(),
                prefix_group: "hosting".into(),
                metric: "syn_pps",
                threshold: 100_000.0,
                for_seconds: 3,
                hold_down_seconds: 60,
                value: 0.0,
                active: false,
                above: 0,
                below: 0,
                since: None,
                order: "auto:syn-flood:hosting".into(),
                started: 0,
                error: None,
            },
        ];
        let text = render_status(&s);
        assert!(text.contains("\nProtected prefixes (traffic toward them per second, whatever the verdict; last 1.0 s)\n"), "{text}");
        assert!(text.contains("  customers           52.1k     41.6M      100    52.0k        0        0        0     51.9k          0\n"), "{text}");
        assert!(text.contains("  hosting          (measuring)\n"), "{text}");
        assert!(text.contains("\nAttack mitigations (1 active of 2 policies)\n"), "{text}");
        assert!(
            text.contains("  ntp-reflection       customers        reflection_pps      50.0k     51.9k  MITIGATING since 2026-03-01T03:00:00Z with order auto:ntp-reflection:customers\n"),
            "{text}"
        );
        assert!(text.contains("  syn-flood            hosting          syn_pps              100k         0  idle\n"), "{text}");

        let text = render_metrics(&s, &metrics()).unwrap();
        for line in [
            "edgefilter_attack_active{policy=\"ntp-reflection\",prefix_group=\"customers\"} 1",
            "edgefilter_attack_active{policy=\"syn-flood\",prefix_group=\"hosting\"} 0",
            "edgefilter_mitigations_total{policy=\"ntp-reflection\"} 2",
            "edgefilter_mitigations_total{policy=\"syn-flood\"} 0",
            "edgefilter_protected_packets_total{prefix_group=\"customers\",protocol=\"udp\"} 5000000",
            "edgefilter_protected_packets_total{prefix_group=\"hosting\",protocol=\"other\"} 0",
            "edgefilter_protected_bytes_total{prefix_group=\"customers\",protocol=\"tcp\"} 1000",
            "edgefilter_protected_syn_total{prefix_group=\"customers\"} 4",
            "edgefilter_protected_fragments_total{prefix_group=\"hosting\"} 0",
            "edgefilter_reflection_packets_total{port=\"123\",prefix_group=\"customers\"} 4900000",
            "edgefilter_reflection_packets_total{port=\"123\",prefix_group=\"hosting\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // Without groups: no section.
        assert!(!render_status(&snapshot()).contains("Protected prefixes"));
    }

    #[test]
    fn domain_rules_and_name_events_are_reported() {
        let text = render_status(&snapshot());
        assert!(text.contains("domain rules 14"), "{text}");
        assert!(text.contains("map DOMAINS                12 / 1100000    (0.0%)"), "{text}");
        assert!(text.contains("Names (DNS, TLS SNI, HTTP Host)\n  dns_queries 0   dns_answered 10   dns_unparsed 20   tls_sni 30\n"), "{text}");
        assert!(text.contains("bad_names 100"), "{text}");

        let text = render_metrics(&snapshot(), &metrics()).unwrap();
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
