//! Signatures in the kernel's form (`maps::sig`): the fast-pattern DFA,
//! the rules with their headers resolved to port ranges and address
//! groups, and the contents grouped by buffer.
//!
//! The DFA is only a prefilter: a rule becomes a candidate when its fast
//! pattern (its longest positive content) occurs in the scanned bytes,
//! ASCII case ignored, which every match of the rule implies. The kernel
//! then checks the whole rule, so what it decides is Suricata's semantics
//! on the scanned bytes (see `reference::signatures`).
use std::collections::HashMap;
use std::net::IpAddr;

use aho_corasick::automaton::Automaton;
use aho_corasick::{dfa, Anchored, MatchKind};
use ipnet::IpNet;

use super::{AddrSpec, Buffer, Content, PortSpec, SigProto, Signature};
use crate::maps::*;
use crate::rules::SignatureRule;

/// What the agent writes for one generation's signature stage.
#[derive(Clone, Debug, Default)]
pub struct KernelSignatures {
    /// Index `i` at `SIG_RULES[generation * MAX_SIG_RULES + i]`.
    pub rules: Vec<SigRule>,
    pub contents: Vec<SigContent>,
    /// Byte to class.
    pub classes: Vec<u8>,
    pub n_classes: u32,
    pub start: u32,
    /// Bytes of the longest pattern in the DFA: the depth of its deepest
    /// state, so a walk started that many bytes back is in the same state.
    pub max_pattern_len: u32,
    /// `states * n_classes` transitions (`SIG_DFA` slots of a generation):
    /// the next state's row as a byte offset into the table
    /// (`state * n_classes * 4`: the kernel adds it to the table's address
    /// without scaling it), `SIG_NEXT_REPORTS` set when it reports.
    pub transitions: Vec<u32>,
    /// Per state: `SIG_STATES` value.
    pub states: Vec<u64>,
    /// Rule indexes, sliced by `states`.
    pub list: Vec<u32>,
    /// Per protocol (0 TCP, 1 UDP): destination port bitmap, 1024 words.
    pub ports: [Vec<u64>; 2],
    pub any_port: [u8; 2],
    /// Address group `i` (bit `i` of `PrefixEntry::sig_groups`).
    pub groups: Vec<AddrSpec>,
    /// Groups of an address no prefix covers.
    pub default_groups: u32,
    /// Every network named by a group, with the groups of the addresses
    /// whose longest covering network (among these) it is.
    pub group_nets: Vec<(IpNet, u32)>,
    /// Distinct patterns in the DFA (fast patterns and hints).
    pub patterns: usize,
    /// Identifies the input: equal fingerprints, equal tables.
    pub fingerprint: u64,
}

/// Sizes the signature compiler must respect (the maps' capacities).
#[derive(Clone, Copy, Debug)]
pub struct SigLimits {
    /// `SIG_DFA` slots per generation.
    pub transitions: u32,
}

impl Default for SigLimits {
    fn default() -> Self {
        SigLimits { transitions: DEFAULT_SIG_TRANSITIONS }
    }
}

/// The content a rule's candidacy hangs on: the longest positive content
/// (the first of equal length), as Suricata picks its fast pattern.
pub fn fast_pattern(sig: &Signature) -> &Content {
    let mut best: Option<&Content> = None;
    for c in sig.contents.iter().filter(|c| !c.negated) {
        if best.is_none_or(|b| c.bytes.len() > b.bytes.len()) {
            best = Some(c);
        }
    }
    best.expect("the parser guarantees a positive content")
}

/// The ports `spec` allows, as sorted disjoint inclusive ranges.
pub fn port_ranges(spec: &PortSpec) -> Vec<(u16, u16)> {
    // The spec is constant between consecutive boundaries.
    let mut cuts = vec![0u32, 65536];
    fn collect(spec: &PortSpec, cuts: &mut Vec<u32>) {
        match spec {
            PortSpec::Any => {}
            PortSpec::Range(lo, hi) => cuts.extend([u32::from(*lo), u32::from(*hi) + 1]),
            PortSpec::List(items) => items.iter().for_each(|i| collect(i, cuts)),
            PortSpec::Not(inner) => collect(inner, cuts),
        }
    }
    collect(spec, &mut cuts);
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for w in cuts.windows(2) {
        if spec.matches(w[0] as u16) {
            let (lo, hi) = (w[0] as u16, (w[1] - 1) as u16);
            match out.last_mut() {
                Some(last) if u32::from(last.1) + 1 == u32::from(lo) => last.1 = hi,
                _ => out.push((lo, hi)),
            }
        }
    }
    out
}

fn spec_nets(spec: &AddrSpec, out: &mut Vec<IpNet>) {
    match spec {
        AddrSpec::Any => {}
        AddrSpec::Net(net) => out.push(net.trunc()),
        AddrSpec::Not(inner) => spec_nets(inner, out),
        AddrSpec::List(items) => items.iter().for_each(|i| spec_nets(i, out)),
    }
}

fn net_covers(outer: &IpNet, inner: &IpNet) -> bool {
    outer.prefix_len() <= inner.prefix_len() && outer.contains(&inner.network())
}

fn buffer_code(b: Buffer) -> u8 {
    match b {
        Buffer::Payload => SIG_BUF_PAYLOAD,
        Buffer::HttpUri => SIG_BUF_URI,
        Buffer::HttpMethod => SIG_BUF_METHOD,
        Buffer::HttpHost => SIG_BUF_HOST,
        Buffer::HttpHeader => SIG_BUF_HEADER,
        Buffer::HttpBody => SIG_BUF_BODY,
    }
}

/// A content in kernel form.
fn kernel_content(c: &Content, retry: bool, first: bool, last: bool) -> Result<SigContent, String> {
    if c.bytes.len() > MAX_CONTENT_LEN {
        return Err(format!("a content of {} bytes; the kernel compares at most {MAX_CONTENT_LEN}", c.bytes.len()));
    }
    let mut k = SigContent { buffer: buffer_code(c.buffer), len: c.bytes.len() as u8, ..SigContent::default() };
    k.bytes[..c.bytes.len()].copy_from_slice(&c.bytes);
    let mut flag = |cond: bool, f: u16| {
        if cond {
            k.flags |= f;
        }
    };
    flag(c.nocase, SIG_C_NOCASE);
    flag(c.negated, SIG_C_NEGATED);
    flag(c.endswith, SIG_C_ENDSWITH);
    flag(retry, SIG_C_RETRY);
    flag(first, SIG_C_FIRST);
    flag(last, SIG_C_LAST);
    if c.is_relative() {
        flag(true, SIG_C_RELATIVE);
        flag(c.within.is_some(), SIG_C_BOUNDED);
        k.start = c.distance.unwrap_or(0);
        k.span = c.within.unwrap_or(0);
    } else {
        flag(c.depth.is_some(), SIG_C_BOUNDED);
        k.start = i32::try_from(c.offset.unwrap_or(0)).map_err(|_| "offset too large".to_string())?;
        k.span = c.depth.unwrap_or(0);
    }
    Ok(k)
}

/// The contents of `sig` grouped by buffer (buffers in order of first
/// use), as the kernel evaluates them.
pub fn grouped_contents(sig: &Signature) -> Vec<Vec<&Content>> {
    let mut buffers: Vec<Buffer> = Vec::new();
    for c in &sig.contents {
        if !buffers.contains(&c.buffer) {
            buffers.push(c.buffer);
        }
    }
    buffers.iter().map(|b| sig.contents.iter().filter(|c| c.buffer == *b).collect()).collect()
}

/// [`compile_signatures`], reusing the last result when the input is the
/// same: an order push that changes no signature does not rebuild the
/// automaton (which takes tens of milliseconds for a thousand rules).
pub fn compile_signatures_cached(
    sigs: &[SignatureRule],
    hints: &[Vec<u8>],
    http_ports: &[u16],
    limits: SigLimits,
) -> Result<std::sync::Arc<KernelSignatures>, String> {
    use std::hash::{Hash, Hasher};
    use std::sync::{Arc, Mutex};
    static LAST: Mutex<Option<Arc<KernelSignatures>>> = Mutex::new(None);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in sigs {
        (r.rule_id, r.enforce, &*r.sig).hash(&mut h);
    }
    (hints, http_ports, limits.transitions).hash(&mut h);
    let fingerprint = h.finish();
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = last.as_ref().filter(|k| k.fingerprint == fingerprint) {
        return Ok(k.clone());
    }
    let mut k = compile_signatures(sigs, hints, http_ports, limits)?;
    k.fingerprint = fingerprint;
    let k = Arc::new(k);
    *last = Some(k.clone());
    Ok(k)
}

/// Compiles the signatures in force (in evaluation order) and the hint
/// patterns. `http_ports` are the HTTP ports of `http` rules.
pub fn compile_signatures(
    sigs: &[SignatureRule],
    hints: &[Vec<u8>],
    http_ports: &[u16],
    limits: SigLimits,
) -> Result<KernelSignatures, String> {
    let mut out = KernelSignatures { ports: [vec![0; 1024], vec![0; 1024]], ..KernelSignatures::default() };
    if sigs.is_empty() {
        return Ok(out);
    }
    if sigs.len() > MAX_SIG_RULES as usize {
        return Err(format!("{} signatures; the data plane holds {MAX_SIG_RULES}", sigs.len()));
    }
    let at = |s: &Signature| format!("{}:{}: sid {}", s.file.display(), s.line, s.sid);

    // Address groups: every distinct non-`any` header address set.
    let mut group_of: HashMap<AddrSpec, u8> = HashMap::new();
    let mut group = |spec: &AddrSpec, s: &Signature| -> Result<u8, String> {
        if *spec == AddrSpec::Any {
            return Ok(SIG_GROUP_ANY);
        }
        if let Some(&g) = group_of.get(spec) {
            return Ok(g);
        }
        if out.groups.len() >= MAX_SIG_GROUPS as usize {
            return Err(format!("{}: more than {MAX_SIG_GROUPS} distinct address sets in signature headers", at(s)));
        }
        let g = out.groups.len() as u8;
        out.groups.push(spec.clone());
        group_of.insert(spec.clone(), g);
        Ok(g)
    };

    // Patterns: fast patterns and hints, folded, each once.
    let mut pattern_index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    let mut pattern_rules: Vec<Vec<u32>> = Vec::new();
    let mut pattern_hint: Vec<bool> = Vec::new();
    let mut intern = |bytes: &[u8], patterns: &mut Vec<Vec<u8>>, rules: &mut Vec<Vec<u32>>, hint: &mut Vec<bool>| -> usize {
        let folded = bytes.to_ascii_lowercase();
        *pattern_index.entry(folded.clone()).or_insert_with(|| {
            patterns.push(folded);
            rules.push(Vec::new());
            hint.push(false);
            patterns.len() - 1
        })
    };

    for (index, r) in sigs.iter().enumerate() {
        let s = &*r.sig;
        let mut k = SigRule {
            rule_id: r.rule_id,
            sid: s.sid,
            ban_seconds: if r.enforce { s.ban_seconds.unwrap_or(0) } else { 0 },
            proto: s.proto.ip_proto(),
            src_group: group(&s.src, s)?,
            dst_group: group(&s.dst, s)?,
            ..SigRule::default()
        };
        if r.enforce {
            k.flags |= SIG_ENFORCE;
        }
        if s.proto == SigProto::Http {
            k.flags |= SIG_HTTP;
        }
        if s.contents.iter().any(|c| c.buffer.is_http()) {
            k.flags |= SIG_NEEDS_REGIONS;
        }
        for (spec, ranges, n) in [(&s.src_ports, &mut k.src_ports, &mut k.n_src_ports), (&s.dst_ports, &mut k.dst_ports, &mut k.n_dst_ports)] {
            if *spec == PortSpec::Any {
                continue;
            }
            let list = port_ranges(spec);
            if list.len() > MAX_SIG_PORT_RANGES {
                return Err(format!("{}: the port set has {} ranges; the kernel takes {MAX_SIG_PORT_RANGES}", at(s), list.len()));
            }
            if list.is_empty() {
                // Matches no port: one empty range (lo > hi) matches none.
                ranges[0] = [1, 0];
                *n = 1;
                continue;
            }
            for (i, (lo, hi)) in list.iter().enumerate() {
                ranges[i] = [*lo, *hi];
            }
            *n = list.len() as u8;
        }
        if s.contents.len() > SIG_MAX_RULE_CONTENTS {
            return Err(format!("{}: {} contents; the kernel checks at most {SIG_MAX_RULE_CONTENTS} per rule", at(s), s.contents.len()));
        }
        // Contents, grouped by buffer.
        k.first_content = u16::try_from(out.contents.len()).map_err(|_| "too many contents".to_string())?;
        for group in grouped_contents(s) {
            let retry = super::matcher::retry_flags(&group);
            for (i, c) in group.iter().enumerate() {
                let kc = kernel_content(c, retry[i], i == 0, i + 1 == group.len()).map_err(|e| format!("{}: {e}", at(s)))?;
                out.contents.push(kc);
            }
        }
        if out.contents.len() > MAX_SIG_CONTENTS as usize {
            return Err(format!("more than {MAX_SIG_CONTENTS} contents in the signatures in force"));
        }
        k.n_contents = s.contents.len() as u16;
        out.rules.push(k);

        let p = intern(&fast_pattern(s).bytes, &mut patterns, &mut pattern_rules, &mut pattern_hint);
        pattern_rules[p].push(index as u32);

        // Destination ports worth scanning for.
        let proto = usize::from(s.proto == SigProto::Udp);
        let mut allowed = port_ranges(&s.dst_ports);
        if s.proto == SigProto::Http {
            allowed = http_ports.iter().filter(|p| s.dst_ports.matches(**p)).map(|p| (*p, *p)).collect();
        }
        if allowed == [(0, u16::MAX)] {
            out.any_port[proto] = 1;
        }
        for (lo, hi) in allowed {
            for port in lo..=hi {
                out.ports[proto][usize::from(port) / 64] |= 1 << (port % 64);
            }
        }
    }
    for h in hints.iter().filter(|h| !h.is_empty()) {
        let p = intern(h, &mut patterns, &mut pattern_rules, &mut pattern_hint);
        pattern_hint[p] = true;
    }
    out.patterns = patterns.len();

    // Groups per network: evaluated once per network named, with the
    // networks covering it (the fold gives the rest of the address space
    // the value of its closest covering network, or the default).
    let mut nets: Vec<IpNet> = Vec::new();
    out.groups.iter().for_each(|g| spec_nets(g, &mut nets));
    nets.sort();
    nets.dedup();
    let groups_for = |covers: &dyn Fn(&IpNet) -> bool| {
        out.groups.iter().enumerate().fold(0u32, |m, (i, g)| if g.matches_with(covers) { m | 1 << i } else { m })
    };
    out.default_groups = groups_for(&|_| false);
    out.group_nets = nets.iter().map(|n| (*n, groups_for(&|g: &IpNet| net_covers(g, n)))).collect();

    build_dfa(&mut out, &patterns, &pattern_rules, &pattern_hint, limits)?;
    Ok(out)
}

/// The ASCII-case-insensitive DFA over `patterns`, laid out densely with
/// byte classes, states numbered breadth first from the start state.
fn build_dfa(out: &mut KernelSignatures, patterns: &[Vec<u8>], rules: &[Vec<u32>], hint: &[bool], limits: SigLimits) -> Result<(), String> {
    let dfa = dfa::Builder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .start_kind(aho_corasick::StartKind::Unanchored)
        .build(patterns)
        .map_err(|e| format!("building the signature automaton: {e}"))?;
    // Classes: every (folded) byte some pattern uses gets its own; all
    // other bytes share class 0 (they all lead to the start state's row).
    let mut classes = vec![0u8; 256];
    let mut reps: Vec<u8> = vec![0];
    for b in 0..=255u8 {
        let lower = b.to_ascii_lowercase();
        if lower != b {
            continue;
        }
        if patterns.iter().any(|p| p.contains(&lower)) {
            if reps.len() >= 256 {
                return Err("more than 255 byte classes".into());
            }
            classes[b as usize] = reps.len() as u8;
            classes[b.to_ascii_uppercase() as usize] = reps.len() as u8;
            reps.push(b);
        }
    }
    // A byte outside every pattern: class 0's representative must be one.
    match (0..=255u8).find(|b| classes[*b as usize] == 0 && !patterns.iter().any(|p| p.contains(&b.to_ascii_lowercase()))) {
        Some(b) => reps[0] = b,
        None => {
            // Every byte is used: class 0 is then unused but harmless.
        }
    }
    let n_classes = reps.len();
    let start = dfa.start_state(Anchored::No).map_err(|e| format!("signature automaton: {e}"))?;
    let mut number: HashMap<aho_corasick::automaton::StateID, u32> = HashMap::new();
    let mut order = vec![start];
    number.insert(start, 0);
    let mut i = 0;
    while i < order.len() {
        let sid = order[i];
        for &b in &reps {
            let next = dfa.next_state(Anchored::No, sid, b);
            if let std::collections::hash_map::Entry::Vacant(slot) = number.entry(next) {
                slot.insert(order.len() as u32);
                order.push(next);
            }
        }
        i += 1;
    }
    let states = order.len();
    if states > MAX_SIG_STATES as usize {
        return Err(format!("the signature automaton has {states} states; the data plane holds {MAX_SIG_STATES}"));
    }
    if states * n_classes > limits.transitions as usize {
        return Err(format!(
            "the signature automaton needs {} transitions ({states} states x {n_classes} byte classes); \
             raise capacity.signature_transitions (now {})",
            states * n_classes,
            limits.transitions
        ));
    }
    let mut transitions = vec![0u32; states * n_classes];
    let mut infos = vec![0u64; states];
    let mut list: Vec<u32> = Vec::new();
    for (n, &sid) in order.iter().enumerate() {
        for (c, &b) in reps.iter().enumerate() {
            let next = dfa.next_state(Anchored::No, sid, b);
            let mut slot = number[&next] * n_classes as u32 * 4;
            if dfa.is_match(next) {
                slot |= SIG_NEXT_REPORTS;
            }
            transitions[n * n_classes + c] = slot;
        }
        if dfa.is_match(sid) {
            let first = list.len() as u64;
            let mut is_hint = false;
            let mut state_rules: Vec<u32> = Vec::new();
            for m in 0..dfa.match_len(sid) {
                let p = dfa.match_pattern(sid, m).as_usize();
                is_hint |= hint[p];
                state_rules.extend(&rules[p]);
            }
            state_rules.sort_unstable();
            state_rules.dedup();
            let count = state_rules.len() as u64;
            list.extend(state_rules);
            infos[n] = first | (count << 32) | if is_hint { SIG_STATE_HINT } else { 0 };
        }
    }
    if list.len() > MAX_SIG_LIST as usize {
        return Err(format!("the signature automaton reports {} rule slots; the data plane holds {MAX_SIG_LIST}", list.len()));
    }
    out.classes = classes;
    out.n_classes = n_classes as u32;
    out.start = 0;
    out.max_pattern_len = patterns.iter().map(|p| p.len() as u32).max().unwrap_or(0);
    out.transitions = transitions;
    out.states = infos;
    out.list = list;
    Ok(())
}

/// Whether `addr` belongs to address group `g` (for tests and tools).
pub fn in_group(k: &KernelSignatures, g: u8, addr: IpAddr) -> bool {
    g == SIG_GROUP_ANY || k.groups.get(g as usize).is_some_and(|spec| spec.matches(&addr))
}
