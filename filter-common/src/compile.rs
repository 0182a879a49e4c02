//! Folds a [`RuleSet`] into the entries of one map generation.
//!
//! The XDP program does one longest-prefix lookup per address, so every
//! entry must already carry what its less specific covering prefixes say:
//! enforcing and dry-run rule per direction (the most specific wins, ties to
//! the lowest rule id), the allowlist flag, and the L4 rules whose scope
//! covers it. The differential tests check this against the naive
//! reference classifier.
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::maps::*;
use crate::rules::{RuleSet, Scope};

/// Everything the agent writes for one generation.
#[derive(Clone, Debug, Default)]
pub struct CompiledGeneration {
    pub generation: u32,
    /// (LPM prefix length including the generation tag, key, value).
    pub v4: Vec<(u32, V4Key, PrefixEntry)>,
    pub v6: Vec<(u32, V6Key, PrefixEntry)>,
    /// Slot `i` at `L4_RULES[generation * MAX_L4_RULES + i]`.
    pub l4_rules: Vec<L4Rule>,
    /// Set `i` at `L4_SETS[generation * MAX_L4_SETS + i]`; index 0 is empty.
    pub l4_sets: Vec<L4Set>,
    pub meta: GenerationMeta,
}

/// What a prefix itself says, before folding in its ancestors.
#[derive(Clone, Copy, Default)]
struct Own {
    allow: bool,
    src_drop: Option<u32>,
    src_dry: Option<u32>,
    dst_drop: Option<u32>,
    dst_dry: Option<u32>,
    l4_src: L4Set,
    l4_dst: L4Set,
}

fn lowest(slot: &mut Option<u32>, id: u32) {
    *slot = Some(slot.map_or(id, |cur| cur.min(id)));
}

fn set_bit(set: &mut L4Set, slot: usize) {
    set.words[slot / 64] |= 1u64 << (slot % 64);
}

fn union(a: L4Set, b: L4Set) -> L4Set {
    let mut out = a;
    for (o, w) in out.words.iter_mut().zip(b.words) {
        *o |= w;
    }
    out
}

/// Address bits left-aligned in a u128 so v4 and v6 share the fold.
fn key_bits(net: &IpNet) -> (u128, u8) {
    match net.network() {
        IpAddr::V4(a) => ((u32::from(a) as u128) << 96, net.prefix_len()),
        IpAddr::V6(a) => (u128::from(a), net.prefix_len()),
    }
}

fn covers(parent: (u128, u8), child: (u128, u8)) -> bool {
    let (pv, plen) = parent;
    let (cv, clen) = child;
    if plen > clen {
        return false;
    }
    if plen == 0 {
        return true;
    }
    let shift = 128 - plen as u32;
    (pv >> shift) == (cv >> shift)
}

/// Resolved entries of one family, in address order.
fn fold(own: BTreeMap<(u128, u8), Own>) -> Vec<((u128, u8), Own)> {
    let mut out: Vec<((u128, u8), Own)> = Vec::with_capacity(own.len());
    // Indexes into `out` of the chain of prefixes covering the current one.
    let mut stack: Vec<usize> = Vec::new();
    for (prefix, mine) in own {
        while let Some(&top) = stack.last() {
            if covers(out[top].0, prefix) {
                break;
            }
            stack.pop();
        }
        let eff = match stack.last() {
            None => mine,
            Some(&top) => {
                let parent = out[top].1;
                Own {
                    allow: mine.allow || parent.allow,
                    src_drop: mine.src_drop.or(parent.src_drop),
                    src_dry: mine.src_dry.or(parent.src_dry),
                    dst_drop: mine.dst_drop.or(parent.dst_drop),
                    dst_dry: mine.dst_dry.or(parent.dst_dry),
                    l4_src: union(mine.l4_src, parent.l4_src),
                    l4_dst: union(mine.l4_dst, parent.l4_dst),
                }
            }
        };
        stack.push(out.len());
        out.push((prefix, eff));
    }
    out
}

struct SetTable {
    sets: Vec<L4Set>,
    index: HashMap<L4Set, u32>,
}

impl SetTable {
    fn id(&mut self, set: L4Set) -> Result<u32, String> {
        if set == L4Set::default() {
            return Ok(0);
        }
        if let Some(&i) = self.index.get(&set) {
            return Ok(i);
        }
        let i = self.sets.len() as u32;
        if i >= MAX_L4_SETS {
            return Err(format!("more than {} distinct L4 rule scopes", MAX_L4_SETS - 1));
        }
        self.sets.push(set);
        self.index.insert(set, i);
        Ok(i)
    }
}

fn entry(own: &Own, sets: &mut SetTable) -> Result<PrefixEntry, String> {
    Ok(PrefixEntry {
        flags: if own.allow { PREFIX_ALLOW } else { 0 },
        src_drop_rule: own.src_drop.unwrap_or(0),
        src_dryrun_rule: own.src_dry.unwrap_or(0),
        dst_drop_rule: own.dst_drop.unwrap_or(0),
        dst_dryrun_rule: own.dst_dry.unwrap_or(0),
        l4_src_set: sets.id(own.l4_src)?,
        l4_dst_set: sets.id(own.l4_dst)?,
        _pad: 0,
    })
}

pub fn compile(rules: &RuleSet, generation: u32) -> Result<CompiledGeneration, String> {
    assert!(generation < GENERATIONS);
    // Index 0: IPv4, 1: IPv6.
    let mut families: [BTreeMap<(u128, u8), Own>; 2] = [BTreeMap::new(), BTreeMap::new()];
    fn own<'m>(families: &'m mut [BTreeMap<(u128, u8), Own>; 2], net: &IpNet) -> &'m mut Own {
        let map = &mut families[usize::from(!net.network().is_ipv4())];
        map.entry(key_bits(net)).or_default()
    }
    for net in &rules.settings.allow {
        own(&mut families, net).allow = true;
    }
    for p in &rules.prefixes {
        let o = own(&mut families, &p.net);
        match (p.direction.matches_src(), p.dry_run) {
            (true, false) => lowest(&mut o.src_drop, p.rule_id),
            (true, true) => lowest(&mut o.src_dry, p.rule_id),
            _ => {}
        }
        match (p.direction.matches_dst(), p.dry_run) {
            (true, false) => lowest(&mut o.dst_drop, p.rule_id),
            (true, true) => lowest(&mut o.dst_dry, p.rule_id),
            _ => {}
        }
    }
    let mut meta = GenerationMeta {
        flags: if rules.settings.fail_closed { META_FAIL_CLOSED } else { 0 },
        fragment_policy: rules.settings.fragment_policy,
        l4_rule_count: rules.l4.len() as u32,
        ..GenerationMeta::default()
    };
    if rules.l4.len() > MAX_L4_RULES as usize {
        return Err(format!("{} L4 rule slots; the data plane holds {MAX_L4_RULES}", rules.l4.len()));
    }
    let mut l4_rules = Vec::with_capacity(rules.l4.len());
    for (slot, r) in rules.l4.iter().enumerate() {
        match &r.source {
            Scope::Any => meta.l4_any_src[slot / 64] |= 1u64 << (slot % 64),
            Scope::Nets(nets) => nets.iter().for_each(|n| set_bit(&mut own(&mut families, n).l4_src, slot)),
        }
        match &r.destination {
            Scope::Any => meta.l4_any_dst[slot / 64] |= 1u64 << (slot % 64),
            Scope::Nets(nets) => nets.iter().for_each(|n| set_bit(&mut own(&mut families, n).l4_dst, slot)),
        }
        let mut flags = 0u16;
        if r.dry_run {
            flags |= L4_DRY_RUN;
        }
        if r.protocol.is_some() {
            flags |= L4_PROTOCOL;
        }
        if r.needs_header() {
            flags |= L4_NEEDS_HEADER;
        }
        let sp = r.src_ports.unwrap_or(crate::rules::PortRange::ANY);
        let dp = r.dst_ports.unwrap_or(crate::rules::PortRange::ANY);
        if r.src_ports.is_some() || r.dst_ports.is_some() {
            flags |= L4_PORTS;
        }
        let tf = r.tcp_flags.map(|f| (f.mask, f.value)).unwrap_or((0, 0));
        if r.tcp_flags.is_some() {
            flags |= L4_TCP_FLAGS;
        }
        if r.icmp_type.is_some() {
            flags |= L4_ICMP_TYPE;
        }
        if r.icmp_code.is_some() {
            flags |= L4_ICMP_CODE;
        }
        l4_rules.push(L4Rule {
            rule_id: r.rule_id,
            flags,
            protocol: r.protocol.unwrap_or(0),
            tcp_flags_mask: tf.0,
            tcp_flags_value: tf.1,
            icmp_type: r.icmp_type.unwrap_or(0),
            icmp_code: r.icmp_code.unwrap_or(0),
            _pad: 0,
            src_port_min: sp.min,
            src_port_max: sp.max,
            dst_port_min: dp.min,
            dst_port_max: dp.max,
        });
    }

    let mut sets = SetTable { sets: vec![L4Set::default()], index: HashMap::new() };
    let mut out = CompiledGeneration { generation, l4_rules, meta, ..Default::default() };
    let [v4, v6] = families;
    for ((bits, len), o) in fold(v4) {
        let addr = ((bits >> 96) as u32).to_be_bytes();
        out.v4.push((GENERATION_BITS + len as u32, V4Key { generation, addr }, entry(&o, &mut sets)?));
    }
    for ((bits, len), o) in fold(v6) {
        out.v6.push((GENERATION_BITS + len as u32, V6Key { generation, addr: bits.to_be_bytes() }, entry(&o, &mut sets)?));
    }
    out.l4_sets = sets.sets;
    Ok(out)
}
