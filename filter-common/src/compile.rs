//! Folds a [`RuleSet`] into the map contents of one generation.
//!
//! The XDP program does one longest-prefix lookup per address, so every
//! prefix must already carry what its less specific covering prefixes say:
//! enforcing and dry-run rule per direction (the most specific wins, ties to
//! the lowest rule id), the allowlist flag, and the L4 rules whose scope
//! covers it. Identical folded entries are stored once (`PREFIX_ENTRIES`);
//! IPv4 is laid out as DIR-24-8 (see `maps.rs`), IPv6 as an LPM trie. The
//! differential tests check all of it against the naive reference
//! classifier.
use std::collections::{BTreeMap, HashMap};

/// Interning tables: hashed per prefix at every push, so FxHash, not SipHash.
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::maps::*;
use crate::names::{label_hash, suffix_extend, suffix_hashes, suffix_root, NameHash, MAX_LABEL_LEN, MAX_NAME_LABELS, MAX_NAME_LEN};
use crate::rules::domain::DomainScope;
use crate::rules::ruleset::{DomainAction, DomainRule};
use crate::rules::{RuleSet, Scope};

/// Sizes the compiler must respect; they mirror the maps' sizes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `V4_TBL8` groups per generation.
    pub v4_groups: u32,
    pub signatures: crate::signatures::kernel::SigLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { v4_groups: DEFAULT_V4_GROUPS, signatures: Default::default() }
    }
}

/// IPv4 in DIR-24-8 form, besides `V4_TBL24` (written in place by
/// [`compile_into`]).
#[derive(Clone, Debug, Default)]
pub struct V4Layout {
    /// 256 entry indexes per group.
    pub groups: Vec<[u32; 256]>,
    /// Prefixes longer than /24 outside groups.
    pub long: Vec<(V4LongKey, u32)>,
}

/// Everything the agent writes for one generation.
#[derive(Clone, Debug, Default)]
pub struct CompiledGeneration {
    pub generation: u32,
    pub v4: V4Layout,
    /// (LPM prefix length including the generation tag, key, entry index).
    pub v6: Vec<(u32, V6Key, u32)>,
    /// Index 0 is "no prefix"; shared by both families.
    pub entries: Vec<PrefixEntry>,
    /// Slot `i` at `L4_RULES[generation * MAX_L4_RULES + i]`.
    pub l4_rules: Vec<L4Rule>,
    /// `RATE_LIMITS` of each slot (zero for plain rules).
    pub rate_limits: Vec<RateLimit>,
    /// Set `i` at `L4_SETS[generation * MAX_L4_SETS + i]`; index 0 is empty.
    pub l4_sets: Vec<L4Set>,
    pub meta: GenerationMeta,
    /// Prefixes folded, per family (for reports).
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Identifies the IPv4 layout's input: equal fingerprints give equal
    /// `V4_TBL24`, `V4_TBL8` and `V4_LONG` contents.
    pub v4_fingerprint: u64,
    /// False when the IPv4 layout was skipped because the generation
    /// already holds it (`v4` is then empty and `V4_TBL24` untouched).
    pub v4_changed: bool,
    /// The signature stage's tables.
    pub signatures: std::sync::Arc<crate::signatures::kernel::KernelSignatures>,
}

/// What a prefix says, as rule ids (0 = none) and interned L4 set ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Own {
    allow: bool,
    src_drop: u32,
    src_dry: u32,
    dst_drop: u32,
    dst_dry: u32,
    l4_src: u32,
    l4_dst: u32,
    /// Signature address groups of the closest covering network a
    /// signature header names (`None`: no such network covers it).
    sig_groups: Option<u32>,
    /// Protected prefix group plus one (0: none); the most specific wins.
    protect: u32,
}

fn lowest(a: u32, b: u32) -> u32 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (x, y) => x.min(y),
    }
}

/// Interned L4 rule sets; id 0 is the empty set. Ids are final `L4_SETS`
/// indexes.
struct Sets {
    sets: Vec<L4Set>,
    index: FastMap<L4Set, u32>,
    unions: FastMap<(u32, u32), u32>,
}

impl Sets {
    fn new() -> Self {
        Sets { sets: vec![L4Set::default()], index: FastMap::default(), unions: FastMap::default() }
    }

    fn intern(&mut self, set: L4Set) -> Result<u32, String> {
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

    fn union(&mut self, a: u32, b: u32) -> Result<u32, String> {
        if a == 0 || a == b {
            return Ok(b);
        }
        if b == 0 {
            return Ok(a);
        }
        let key = (a.min(b), a.max(b));
        if let Some(&u) = self.unions.get(&key) {
            return Ok(u);
        }
        let mut set = self.sets[a as usize];
        for (w, o) in set.words.iter_mut().zip(self.sets[b as usize].words) {
            *w |= o;
        }
        let u = self.intern(set)?;
        self.unions.insert(key, u);
        Ok(u)
    }
}

/// Two statements about the same prefix.
fn merge_same(a: Own, b: Own, sets: &mut Sets) -> Result<Own, String> {
    Ok(Own {
        allow: a.allow || b.allow,
        src_drop: lowest(a.src_drop, b.src_drop),
        src_dry: lowest(a.src_dry, b.src_dry),
        dst_drop: lowest(a.dst_drop, b.dst_drop),
        dst_dry: lowest(a.dst_dry, b.dst_dry),
        l4_src: sets.union(a.l4_src, b.l4_src)?,
        l4_dst: sets.union(a.l4_dst, b.l4_dst)?,
        sig_groups: a.sig_groups.or(b.sig_groups),
        protect: lowest(a.protect, b.protect),
    })
}

/// A prefix under its closest covering prefix: the more specific rule ids
/// win, allowlist and L4 scopes accumulate.
fn inherit(parent: Own, mine: Own, sets: &mut Sets) -> Result<Own, String> {
    let pick = |m: u32, p: u32| if m != 0 { m } else { p };
    Ok(Own {
        allow: mine.allow || parent.allow,
        src_drop: pick(mine.src_drop, parent.src_drop),
        src_dry: pick(mine.src_dry, parent.src_dry),
        dst_drop: pick(mine.dst_drop, parent.dst_drop),
        dst_dry: pick(mine.dst_dry, parent.dst_dry),
        l4_src: sets.union(mine.l4_src, parent.l4_src)?,
        l4_dst: sets.union(mine.l4_dst, parent.l4_dst)?,
        sig_groups: mine.sig_groups.or(parent.sig_groups),
        protect: pick(mine.protect, parent.protect),
    })
}

/// A prefix: address bits left-aligned in a u128 (so both families share
/// the fold) and its length.
type Prefix = (u128, u8);

/// Address bits left-aligned in a u128 so both families share the fold.
fn key_bits(net: &IpNet) -> Prefix {
    match net.network() {
        IpAddr::V4(a) => ((u32::from(a) as u128) << 96, net.prefix_len()),
        IpAddr::V6(a) => (u128::from(a), net.prefix_len()),
    }
}

fn covers(parent: Prefix, child: Prefix) -> bool {
    let ((pv, plen), (cv, clen)) = (parent, child);
    if plen > clen {
        return false;
    }
    if plen == 0 {
        return true;
    }
    let shift = 128 - plen as u32;
    (pv >> shift) == (cv >> shift)
}

/// Sorts, merges duplicates and resolves every prefix against its covering
/// prefixes. Output is in address order (covering prefixes first).
fn fold(mut own: Vec<(Prefix, Own)>, sets: &mut Sets) -> Result<Vec<(Prefix, Own)>, String> {
    own.sort_unstable_by_key(|(k, _)| *k);
    // Merge duplicates in place (a million-prefix feed must not need a
    // second copy of itself).
    let mut kept = 0usize;
    for i in 0..own.len() {
        if kept > 0 && own[kept - 1].0 == own[i].0 {
            own[kept - 1].1 = merge_same(own[kept - 1].1, own[i].1, sets)?;
        } else {
            own.swap(kept, i);
            kept += 1;
        }
    }
    own.truncate(kept);
    own.shrink_to_fit();
    let mut stack: Vec<usize> = Vec::new();
    for i in 0..own.len() {
        let prefix = own[i].0;
        while let Some(&top) = stack.last() {
            if covers(own[top].0, prefix) {
                break;
            }
            stack.pop();
        }
        if let Some(&top) = stack.last() {
            own[i].1 = inherit(own[top].1, own[i].1, sets)?;
        }
        stack.push(i);
    }
    Ok(own)
}

/// Interned folded entries; index 0 is the empty entry.
struct Entries {
    list: Vec<PrefixEntry>,
    index: FastMap<PrefixEntry, u32>,
    /// Signature groups of addresses under no network a header names.
    default_groups: u32,
}

impl Entries {
    fn id(&mut self, o: &Own) -> Result<u32, String> {
        let e = PrefixEntry {
            flags: if o.allow { PREFIX_ALLOW } else { 0 },
            src_drop_rule: o.src_drop,
            src_dryrun_rule: o.src_dry,
            dst_drop_rule: o.dst_drop,
            dst_dryrun_rule: o.dst_dry,
            l4_src_set: o.l4_src,
            l4_dst_set: o.l4_dst,
            sig_groups: o.sig_groups.unwrap_or(self.default_groups),
            protect: o.protect,
            _pad: 0,
        };
        // Index 0 ("no prefix") stands for an entry with nothing but the
        // default signature groups; any other entry needs its own index.
        if e == (PrefixEntry { sig_groups: self.default_groups, ..PrefixEntry::default() }) {
            return Ok(0);
        }
        if let Some(&i) = self.index.get(&e) {
            return Ok(i);
        }
        let i = self.list.len() as u32;
        if i >= MAX_PREFIX_ENTRIES {
            return Err(format!(
                "more than {} distinct combinations of rules over prefixes; merge orders or raise MAX_PREFIX_ENTRIES",
                MAX_PREFIX_ENTRIES - 1
            ));
        }
        self.list.push(e);
        self.index.insert(e, i);
        Ok(i)
    }
}

/// Lays IPv4 out: fills `tbl24` (one generation's `TBL24_SIZE` slots,
/// overwritten entirely) and returns the groups and long prefixes.
fn layout_v4(folded: &[(Prefix, Own)], entries: &mut Entries, generation: u32, limits: Limits, tbl24: &mut [u32]) -> Result<V4Layout, String> {
    assert_eq!(tbl24.len(), TBL24_SIZE as usize);
    tbl24.fill(0);
    let v4 = |bits: u128| (bits >> 96) as u32;
    // Shorter prefixes first, so more specific ones overwrite them.
    let mut short: Vec<(u8, u32, u32)> = Vec::new();
    let mut blocks: BTreeMap<u32, Vec<(u8, u32, u32)>> = BTreeMap::new();
    for ((b, len), own) in folded {
        let idx = entries.id(own)?;
        if *len <= 24 {
            short.push((*len, v4(*b), idx));
        } else {
            blocks.entry(v4(*b) >> 8).or_default().push((*len, v4(*b), idx));
        }
    }
    short.sort_by_key(|(len, _, _)| *len);
    for (len, addr, idx) in short {
        let start = (addr >> 8) as usize;
        let count = 1usize << (24 - len);
        tbl24[start..start + count].fill(idx);
    }
    let lengths = |list: &[(u8, u32, u32)]| list.iter().fold(0u32, |m, (len, _, _)| m | 1 << (len - 25));
    // Groups go to the blocks where probing the hash would take most
    // lookups (most lengths, then most prefixes) and then to the rest while
    // they last: even one probe is a hash lookup, several times the cost
    // of the group's array read (a protected host's /32 sits on every
    // packet's path toward it).
    let mut densest: Vec<(u32, u32, usize)> = blocks.iter().map(|(block, list)| (*block, lengths(list), list.len())).collect();
    densest.sort_by(|a, b| b.1.count_ones().cmp(&a.1.count_ones()).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    densest.truncate(limits.v4_groups as usize);
    let grouped: std::collections::HashSet<u32> = densest.iter().map(|(b, _, _)| *b).collect();

    let mut layout = V4Layout { groups: Vec::new(), long: Vec::new() };
    for (block, mut list) in blocks {
        let base = tbl24[block as usize];
        if grouped.contains(&block) {
            let mut group = [base; 256];
            list.sort_by_key(|(len, _, _)| *len);
            for (len, addr, idx) in list {
                let start = (addr & 0xff) as usize;
                group[start..start + (1usize << (32 - len))].fill(idx);
            }
            // Group numbers are absolute: generation g owns groups
            // [g * v4_groups, (g + 1) * v4_groups).
            tbl24[block as usize] = TBL24_GROUP | (generation * limits.v4_groups + layout.groups.len() as u32);
            layout.groups.push(group);
        } else {
            tbl24[block as usize] = base | lengths(&list) << TBL24_LONG_SHIFT;
            for (len, addr, idx) in list {
                let key = V4LongKey { addr: addr.to_be_bytes(), generation: generation as u8, prefix_len: len, _pad: [0; 2] };
                layout.long.push((key, idx));
            }
        }
    }
    Ok(layout)
}

pub fn compile(rules: &RuleSet, generation: u32) -> Result<CompiledGeneration, String> {
    compile_with(rules, generation, Limits::default()).map(|(c, _)| c)
}

/// Compiles into a fresh `V4_TBL24` generation (returned beside the rest).
pub fn compile_with(rules: &RuleSet, generation: u32, limits: Limits) -> Result<(CompiledGeneration, Vec<u32>), String> {
    let mut tbl24 = vec![0u32; TBL24_SIZE as usize];
    let c = compile_into(rules, generation, limits, &mut tbl24)?;
    Ok((c, tbl24))
}

/// Compiles, writing `V4_TBL24` for `generation` straight into `tbl24`
/// (the agent passes the inactive generation of the mapped map, so the
/// 64 MiB table is never copied).
pub fn compile_into(rules: &RuleSet, generation: u32, limits: Limits, tbl24: &mut [u32]) -> Result<CompiledGeneration, String> {
    let mut slot = Some(tbl24);
    let mut source = || slot.take().map(|t| Box::new(t) as Tbl24).ok_or_else(|| "V4_TBL24 asked for twice".to_string());
    compile_incremental(rules, generation, limits, &mut source, None)
}

/// One generation's `V4_TBL24` slots, however they are held (a mapping of
/// the kernel map, or a plain vector).
pub type Tbl24<'a> = Box<dyn std::ops::DerefMut<Target = [u32]> + 'a>;

/// Gives the compiler `V4_TBL24`, only when the IPv4 layout changed:
/// mapping 64 MiB of kernel table costs milliseconds a push need not pay.
pub type Tbl24Source<'s, 'a> = &'s mut dyn FnMut() -> Result<Tbl24<'a>, String>;

/// Like [`compile_into`], but skips the IPv4 layout (and leaves `tbl24`
/// alone) when `held_v4` — the fingerprint of what this generation already
/// holds — equals the new one: a push of IPv6 or L4 rules then costs no
/// 64 MiB rewrite.
pub fn compile_incremental(rules: &RuleSet, generation: u32, limits: Limits, tbl24: Tbl24Source, held_v4: Option<u64>) -> Result<CompiledGeneration, String> {
    assert!(generation < GENERATIONS);
    if rules.l4.len() > MAX_L4_RULES as usize {
        return Err(format!("{} L4 rule slots; the data plane holds {MAX_L4_RULES}", rules.l4.len()));
    }
    let mut sets = Sets::new();
    // Index 0: IPv4, 1: IPv6.
    let mut own: [Vec<(Prefix, Own)>; 2] = [Vec::new(), Vec::new()];
    let family = |net: &IpNet| usize::from(!net.network().is_ipv4());
    for net in &rules.settings.allow {
        own[family(net)].push((key_bits(net), Own { allow: true, ..Own::default() }));
    }
    for (group, (_, nets)) in rules.settings.protect.iter().enumerate() {
        for net in nets {
            own[family(net)].push((key_bits(net), Own { protect: group as u32 + 1, ..Own::default() }));
        }
    }
    for p in &rules.prefixes {
        let mut o = Own::default();
        let slot = |o: &mut Own, src: bool| match (src, p.dry_run) {
            (true, false) => o.src_drop = p.rule_id,
            (true, true) => o.src_dry = p.rule_id,
            (false, false) => o.dst_drop = p.rule_id,
            (false, true) => o.dst_dry = p.rule_id,
        };
        if p.direction.matches_src() {
            slot(&mut o, true);
        }
        if p.direction.matches_dst() {
            slot(&mut o, false);
        }
        own[family(&p.net)].push((key_bits(&p.net), o));
    }

    let [dns_ports, tls_ports, http_ports] = rules.settings.l7_ports()?;
    let reflect_ports = rules.settings.reflect_ports()?;
    let mut meta = GenerationMeta {
        flags: if rules.settings.fail_closed { META_FAIL_CLOSED } else { 0 },
        fragment_policy: rules.settings.fragment_policy,
        l4_rule_count: rules.l4.len() as u32,
        name_seeds: rules.settings.name_seeds,
        domain_rules: u32::try_from(rules.domains.len()).map_err(|_| "more than 2^32 domain rules".to_string())?,
        domain_min_labels: rules.domains.iter().map(|d| d.pattern.name.split('.').count() as u16).min().unwrap_or(0),
        domain_max_labels: rules.domains.iter().map(|d| d.pattern.name.split('.').count() as u16).max().unwrap_or(0),
        dns_ports,
        tls_ports,
        http_ports,
        generation: generation as u8,
        reflect_ports,
        reflect_port_filter: reflect_port_filter(&reflect_ports),
        sample_every: rules.settings.sample_every,
        protect_groups: rules.settings.protect.len() as u32,
        syn_auth_ns: u64::from(rules.settings.syn_auth_seconds) * 1_000_000_000,
        ..GenerationMeta::default()
    };
    if rules.settings.protect.len() > MAX_PROTECT_GROUPS as usize {
        return Err(format!("{} protected prefix groups; the data plane counts {MAX_PROTECT_GROUPS}", rules.settings.protect.len()));
    }
    // L4 scopes: one bitmap per prefix, accumulated, then interned.
    let mut scopes: FastMap<(usize, Prefix), (L4Set, L4Set)> = FastMap::default();
    let mut l4_rules = Vec::with_capacity(rules.l4.len());
    let mut rate_limits = Vec::with_capacity(rules.l4.len());
    for (slot, r) in rules.l4.iter().enumerate() {
        let bit = |set: &mut L4Set| set.words[slot / 64] |= 1u64 << (slot % 64);
        match &r.source {
            Scope::Any => meta.l4_any_src[slot / 64] |= 1u64 << (slot % 64),
            Scope::Nets(nets) => nets.iter().for_each(|n| bit(&mut scopes.entry((family(n), key_bits(n))).or_default().0)),
        }
        match &r.destination {
            Scope::Any => meta.l4_any_dst[slot / 64] |= 1u64 << (slot % 64),
            Scope::Nets(nets) => nets.iter().for_each(|n| bit(&mut scopes.entry((family(n), key_bits(n))).or_default().1)),
        }
        for (i, mask) in meta.l4_by_proto.iter_mut().enumerate() {
            if r.protocol.is_none_or(|p| l4_proto_index(p) == Some(i)) {
                mask[slot / 64] |= 1u64 << (slot % 64);
            }
        }
        l4_rules.push(l4_rule(r));
        rate_limits.push(r.rate_limit.map(|spec| RateLimit { bucket: r.bucket, ..rate_limit(spec) }).unwrap_or_default());
    }
    let mut scopes: Vec<_> = scopes.into_iter().collect();
    // Deterministic set ids, whatever the hash order.
    scopes.sort_unstable_by_key(|(k, _)| *k);
    for ((fam, key), (src, dst)) in scopes {
        let o = Own { l4_src: sets.intern(src)?, l4_dst: sets.intern(dst)?, ..Own::default() };
        own[fam].push((key, o));
    }

    let signatures = crate::signatures::kernel::compile_signatures_cached(
        &rules.signatures,
        &rules.settings.signatures.hints,
        &rules.settings.http_ports,
        limits.signatures,
    )?;
    for (net, groups) in &signatures.group_nets {
        own[family(net)].push((key_bits(net), Own { sig_groups: Some(*groups), ..Own::default() }));
    }
    if !rules.signatures.is_empty() {
        let scan = rules.settings.signatures.scan_bytes;
        if !(SIG_SCAN_MIN..=SIG_SCAN_MAX).contains(&scan) {
            return Err(format!("signatures.scan_bytes {scan}: use {SIG_SCAN_MIN}..={SIG_SCAN_MAX}"));
        }
        meta.sig_rules = signatures.rules.len() as u32;
        meta.sig_classes = signatures.n_classes;
        meta.sig_start = signatures.start;
        meta.sig_pattern_max = signatures.max_pattern_len.min(SIG_SCAN_MAX) as u16;
        meta.sig_scan_bytes = scan;
        meta.sig_default_groups = signatures.default_groups;
        meta.sig_event_rate = rules.settings.signatures.event_rate;
        meta.sig_any_port = signatures.any_port;
        meta.sig_needs_regions = signatures.rules.iter().any(|r| r.flags & SIG_NEEDS_REGIONS != 0) as u8;
        meta.sig_dfa_base = 0;
    }
    let [own_v4, own_v6] = own;
    let mut entries = Entries { list: vec![PrefixEntry::default()], index: FastMap::default(), default_groups: signatures.default_groups };
    let folded_v4 = fold(own_v4, &mut sets)?;
    let prefixes_v4 = folded_v4.len();
    let v4_fingerprint = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (generation, limits.v4_groups, &folded_v4).hash(&mut h);
        h.finish()
    };
    let v4_changed = held_v4 != Some(v4_fingerprint);
    let v4 = if v4_changed {
        let mut slots = tbl24()?;
        layout_v4(&folded_v4, &mut entries, generation, limits, &mut slots)?
    } else {
        // Same entry ids as the layout would give (they are interned first).
        for (_, own) in &folded_v4 {
            entries.id(own)?;
        }
        V4Layout::default()
    };
    drop(folded_v4);
    let folded_v6 = fold(own_v6, &mut sets)?;
    let mut v6 = Vec::with_capacity(folded_v6.len());
    for ((bits, len), o) in &folded_v6 {
        v6.push((GENERATION_BITS + *len as u32, V6Key { generation, addr: bits.to_be_bytes() }, entries.id(o)?));
    }
    Ok(CompiledGeneration {
        generation,
        v4,
        v6,
        entries: entries.list,
        l4_rules,
        rate_limits,
        l4_sets: sets.sets,
        meta,
        prefixes_v4,
        prefixes_v6: folded_v6.len(),
        v4_fingerprint,
        v4_changed,
        signatures,
    })
}

/// A rate limit in the kernel's terms: nanosecond-scaled caps and the
/// time an empty bucket takes to fill.
///
/// A bucket holds at least `RL_MIN_BURST_NS` of its rate: the kernel reads
/// the coarse clock, which moves one tick (1 to 10 ms, by `CONFIG_HZ`) at a
/// time, so a bucket refills a tick's worth at once and a smaller cap would
/// throw part of it away (the limit would fall below its rate). Five ticks,
/// not one: in a VM ticks come late and in bunches (measured with a
/// one-tick floor: 60 % of the rate passed; with five, 99 %).
pub fn rate_limit(spec: crate::rules::ruleset::RateLimitSpec) -> RateLimit {
    use crate::rules::ruleset::RatePer;
    let cap = |burst: u64, rate: Option<u64>| {
        let floor = rate.map_or(0, |r| r.saturating_mul(RL_MIN_BURST_NS));
        burst.saturating_mul(RL_SCALE).max(floor)
    };
    let pkt_cap = cap(spec.burst_packets, spec.pps);
    let bit_cap = cap(spec.burst_bits, spec.bps);
    let (per, v4, v6) = match spec.per {
        RatePer::Rule => (RL_PER_RULE, 0, 0),
        RatePer::Source { v4, v6 } => (RL_PER_SOURCE, v4, v6),
        RatePer::Destination => (RL_PER_DESTINATION, 0, 0),
        RatePer::Flow => (RL_PER_FLOW, 0, 0),
    };
    RateLimit {
        pps: spec.pps.unwrap_or(0),
        bps: spec.bps.unwrap_or(0),
        pkt_cap,
        bit_cap,
        pkt_fill_ns: spec.pps.map_or(0, |r| pkt_cap / r),
        bit_fill_ns: spec.bps.map_or(0, |r| bit_cap / r),
        per,
        src_len_v4: v4,
        src_len_v6: v6,
        count_only: spec.count_only as u8,
        _pad: 0,
        bucket: 0,
        _pad2: [0; 2],
    }
}

fn l4_rule(r: &crate::rules::L4Slot) -> L4Rule {
    let mut flags = 0u16;
    for (on, flag) in [
        (r.dry_run, L4_DRY_RUN),
        (r.protocol.is_some(), L4_PROTOCOL),
        (r.needs_header(), L4_NEEDS_HEADER),
        (r.src_ports.is_some() || r.dst_ports.is_some(), L4_PORTS),
        (r.tcp_flags.is_some(), L4_TCP_FLAGS),
        (r.icmp_type.is_some(), L4_ICMP_TYPE),
        (r.icmp_code.is_some(), L4_ICMP_CODE),
        (r.rate_limit.is_some(), L4_RATE_LIMIT),
        (r.fragments, L4_FRAGMENTS),
        (r.syn_auth, L4_SYN_AUTH),
    ] {
        if on {
            flags |= flag;
        }
    }
    let sp = r.src_ports.unwrap_or(crate::rules::PortRange::ANY);
    let dp = r.dst_ports.unwrap_or(crate::rules::PortRange::ANY);
    let (mask, value) = r.tcp_flags.map(|f| (f.mask, f.value)).unwrap_or((0, 0));
    L4Rule {
        rule_id: r.rule_id,
        flags,
        protocol: r.protocol.unwrap_or(0),
        tcp_flags_mask: mask,
        tcp_flags_value: value,
        icmp_type: r.icmp_type.unwrap_or(0),
        icmp_code: r.icmp_code.unwrap_or(0),
        _pad: 0,
        src_port_min: sp.min,
        src_port_max: sp.max,
        dst_port_min: dp.min,
        dst_port_max: dp.max,
    }
}

/// How [`compile_domains`] says two names share a map key: the agent
/// picks new seeds when an error starts with this.
pub const DOMAIN_HASH_COLLISION: &str = "domain hash collision";

/// The `DOMAINS` map contents for `rules`: one entry per distinct rule
/// name, keyed by the first hash of the whole name (`crate::names`, the
/// last of [`suffix_hashes`]) and checked by the second.
///
/// An exact rule (`example.com`) fills the entry's exact slot, a
/// subdomain rule (`*.example.com`) its sub slot, and `.example.com`
/// both. Per slot, a [`DomainAction::Pass`] rule beats every other;
/// otherwise the lowest rule id among drop / NXDOMAIN / REFUSED rules
/// acts. Dry-run rules (any action) only fill the dry-run slot, lowest
/// rule id first: they are counted, never act. Which slot of which
/// suffix decides for a name (the most specific) is the data plane's
/// walk, not this function's.
///
/// Two different names whose hashes share the key but not the check are
/// an error starting with [`DOMAIN_HASH_COLLISION`] (about one chance in
/// 2^40 for a million rules): the caller picks new seeds.
pub fn compile_domains(rules: &RuleSet, seeds: NameHash) -> Result<HashMap<u64, DomainEntry>, String> {
    compile_domains_by(rules, |rule| name_hash(&seeds, rule))
}

fn compile_domains_by(rules: &RuleSet, hash: impl Fn(&DomainRule) -> Result<NameHash, String>) -> Result<HashMap<u64, DomainEntry>, String> {
    // Hashed first, inserted after: the insert loop is then short enough
    // for the CPU to overlap its cache misses on a table of a million
    // entries (three times faster than hashing and inserting in turn).
    let hashes = rules.domains.iter().map(&hash).collect::<Result<Vec<NameHash>, String>>()?;
    let mut map: HashMap<u64, DomainEntry> = HashMap::with_capacity(rules.domains.len());
    for (i, (rule, &h)) in rules.domains.iter().zip(&hashes).enumerate() {
        let entry = map.entry(h[0]).or_insert_with(|| DomainEntry { check: h[1], ..DomainEntry::default() });
        if entry.check != h[1] {
            // Rare enough to look for the other name the slow way.
            let other = hashes[..i].iter().position(|o| o[0] == h[0]).map_or("?", |j| rules.domains[j].pattern.name.as_str());
            return Err(format!(
                "{DOMAIN_HASH_COLLISION}: `{}` and `{other}` share a map key (a 1 in 2^64 chance per pair); new hash seeds are needed",
                rule.pattern.name
            ));
        }
        let (exact, sub) = match rule.pattern.scope {
            DomainScope::Exact => (true, false),
            DomainScope::Subdomains => (false, true),
            DomainScope::ApexAndSubdomains => (true, true),
        };
        if exact {
            add_to_slot(&mut entry.exact_rule, &mut entry.exact_action, &mut entry.exact_dry_rule, rule);
        }
        if sub {
            add_to_slot(&mut entry.sub_rule, &mut entry.sub_action, &mut entry.sub_dry_rule, rule);
        }
    }
    Ok(map)
}

/// The hash of a rule's whole name: the last of its [`suffix_hashes`],
/// computed without them for the names rules have.
fn name_hash(seeds: &NameHash, rule: &DomainRule) -> Result<NameHash, String> {
    let name = rule.pattern.name.as_bytes();
    let mut s = suffix_root(seeds);
    let mut labels = 0;
    for label in name.rsplit(|&b| b == b'.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN || labels == MAX_NAME_LABELS {
            labels = usize::MAX;
            break;
        }
        s = suffix_extend(s, label_hash(seeds, label));
        labels += 1;
    }
    if labels != usize::MAX && name.len() <= MAX_NAME_LEN {
        return Ok(s);
    }
    suffix_hashes(seeds, name).and_then(|h| h.last().copied()).ok_or_else(|| {
        format!("domain rule {} has a name the data plane cannot hash: `{}`", rule.rule_id, rule.pattern.name)
    })
}

/// One rule into one slot: pass first, then the lowest rule id.
fn add_to_slot(rule_slot: &mut u32, action_slot: &mut u8, dry_slot: &mut u32, rule: &DomainRule) {
    if rule.dry_run {
        *dry_slot = lowest(*dry_slot, rule.rule_id);
        return;
    }
    let is_pass = |a: u8| a == DOMAIN_PASS;
    let new = rule.action.code();
    let replace = *action_slot == DOMAIN_NONE
        || (rule.action == DomainAction::Pass && !is_pass(*action_slot))
        || (is_pass(new) == is_pass(*action_slot) && rule.rule_id < *rule_slot);
    if replace {
        *rule_slot = rule.rule_id;
        *action_slot = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ruleset::DomainRule;
    use crate::rules::DomainPattern;

    #[test]
    fn every_reflection_port_passes_the_port_filter() {
        let rules = RuleSet::default();
        let meta = compile(&rules, 1).unwrap().meta;
        let mut set = 0;
        for port in 0..=u16::MAX {
            let listed = meta.reflect_ports.contains(&port) && port != 0;
            let may = may_be_reflect_port(&meta.reflect_port_filter, port);
            assert!(may || !listed, "reflection port {port} filtered out");
            set += u32::from(may);
        }
        // Eight default ports, eight bits of 256: 1/32 of all ports get
        // the comparisons.
        assert_eq!(meta.reflect_ports.iter().filter(|&&p| p != 0).count(), 8);
        assert_eq!(set, 8 * 256);
        assert_eq!(reflect_port_filter(&[0, 0]), [0; 4]);
    }

    #[test]
    fn a_key_shared_by_two_names_is_an_error_naming_both() {
        let rule = |id: u32, name: &str| DomainRule {
            rule_id: id,
            pattern: DomainPattern::parse(name).unwrap(),
            action: DomainAction::Drop,
            dry_run: false,
        };
        let rules = RuleSet {
            domains: vec![rule(1, "a.example"), rule(2, "*.a.example"), rule(3, "b.example")],
            ..RuleSet::default()
        };
        // Every name on key 7; the check tells them apart.
        let fake = |r: &DomainRule| Ok([7, r.pattern.name.len() as u64 + u64::from(r.pattern.name.starts_with('b'))]);
        let err = compile_domains_by(&rules, fake).unwrap_err();
        assert!(err.starts_with(DOMAIN_HASH_COLLISION), "{err}");
        assert!(err.contains("`b.example` and `a.example`"), "{err}");
        // The same name twice (two scopes) is one entry, not a collision.
        let rules = RuleSet { domains: rules.domains[..2].to_vec(), ..RuleSet::default() };
        let map = compile_domains_by(&rules, fake).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!((map[&7].exact_rule, map[&7].sub_rule), (1, 2));
    }
}
