//! The signature stage as the kernel must run it, written naively from the
//! rules (no DFA, no compiled tables):
//!
//! - The stage looks at unfragmented TCP and UDP packets with a payload,
//!   to a destination port some signature of that protocol applies to.
//! - It sees the first `scan_bytes` of the payload (the *view*).
//! - A rule is a candidate when its fast pattern (longest positive
//!   content) occurs in the view, ASCII case ignored. The kernel finds
//!   them with an Aho-Corasick DFA; more than [`SIG_MAX_HITS`] distinct
//!   reporting automaton states (modelled here as distinct longest
//!   pattern-prefix suffixes that end a pattern) leave it undecided.
//! - Candidates are checked in rule order: header, then each buffer's
//!   contents with Suricata's semantics on the view
//!   ([`match_buffer_metered`]), within [`SIG_WORK_BUDGET`] work units
//!   (one per candidate, per content search and per byte comparison).
//! - The first enforcing match drops the packet (and bans the source when
//!   the rule asks); non-enforcing matches are counted and checking goes on.
//! - A packet the stage did not drop goes to deep inspection when it had
//!   candidates, a hint pattern, or the kernel could not decide.
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::maps::{stat, SIG_EV_CANDIDATE, SIG_EV_HINT, SIG_EV_UNDECIDED, SIG_EVENT_BYTES, SIG_MAX_HITS, SIG_WORK_BUDGET};
use crate::packet::{Fragment, IpPacket};
use crate::rules::RuleSet;
use crate::signatures::kernel::{fast_pattern, grouped_contents};
use crate::signatures::matcher::{buffer_bytes, match_buffer_metered, Metered};
use crate::signatures::{http_regions, SigProto};

/// What the kernel keeps between packets (bans), its operator counters,
/// and the deep-inspection events it would send.
#[derive(Clone, Debug, Default)]
pub struct SigState {
    /// Banned source address and the rule that banned it.
    pub bans: HashMap<IpAddr, u32>,
    /// `maps::sig::stat` counters.
    pub stats: [u64; stat::LEN as usize],
    /// Every event the stage wanted to send: (kind, captured bytes).
    pub events: Vec<(u8, Vec<u8>)>,
}

impl SigState {
    fn stat(&mut self, index: u32) {
        self.stats[index as usize] += 1;
    }
}

/// A banned source's rule, counting the drop.
pub fn banned(state: &mut SigState, src: IpAddr) -> Option<u32> {
    let rule = *state.bans.get(&src)?;
    state.stat(stat::BAN_DROPS);
    Some(rule)
}

/// Whether the stage looks at a packet to `dport` over `proto` at all.
pub fn port_scanned(rules: &RuleSet, proto: u8, dport: u16) -> bool {
    rules.signatures.iter().any(|r| {
        let s = &r.sig;
        s.proto.ip_proto() == proto
            && s.dst_ports.matches(dport)
            && (s.proto != SigProto::Http || rules.settings.http_ports.contains(&dport))
    })
}

/// Runs the stage; returns the rule that dropped the packet, if any.
/// `hits` receives every rule counter incremented.
pub fn signature_stage(
    rules: &RuleSet,
    state: &mut SigState,
    frame: &[u8],
    p: &IpPacket,
    src: IpAddr,
    dst: IpAddr,
    hits: &mut Vec<u32>,
) -> Option<u32> {
    let l4 = p.l4?;
    if rules.signatures.is_empty() || p.fragment != Fragment::None || !matches!(p.protocol, 6 | 17) {
        return None;
    }
    if p.payload_end <= p.payload_off || !port_scanned(rules, p.protocol, l4.dst_port) {
        return None;
    }
    let payload = &frame[p.payload_off..p.payload_end];
    let scan = rules.settings.signatures.scan_bytes as usize;
    let view = &payload[..payload.len().min(scan)];
    state.stat(stat::SCANNED);
    let event = |state: &mut SigState, kind: u8| {
        state.events.push((kind, payload[..payload.len().min(SIG_EVENT_BYTES as usize)].to_vec()));
    };

    let fast: Vec<Vec<u8>> = rules.signatures.iter().map(|r| fast_pattern(&r.sig).bytes.to_ascii_lowercase()).collect();
    let hints: Vec<Vec<u8>> = rules.settings.signatures.hints.iter().filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase()).collect();
    let folded = view.to_ascii_lowercase();
    if reporting_states(&folded, fast.iter().chain(&hints)) > SIG_MAX_HITS {
        state.stat(stat::UNDECIDED);
        event(state, SIG_EV_UNDECIDED);
        return None;
    }
    let contains = |pat: &[u8]| folded.windows(pat.len()).any(|w| w == pat);
    let candidates: Vec<usize> = (0..rules.signatures.len()).filter(|&i| contains(&fast[i])).collect();
    let hint = hints.iter().any(|h| contains(h));
    if candidates.is_empty() {
        if hint {
            event(state, SIG_EV_HINT);
        }
        return None;
    }
    state.stat(stat::CANDIDATES);
    let regions = http_regions(view);
    let mut work = u64::from(SIG_WORK_BUDGET);
    let mut undecided = false;
    'rules: for i in candidates {
        if work == 0 {
            undecided = true;
            break;
        }
        work -= 1;
        let r = &rules.signatures[i];
        let s = &r.sig;
        if !s.matches_header(p.protocol, src, l4.src_port, dst, l4.dst_port, &rules.settings.http_ports) {
            continue;
        }
        for group in grouped_contents(s) {
            let Some(data) = buffer_bytes(view, regions.as_ref(), group[0].buffer) else { continue 'rules };
            match match_buffer_metered(data, &group, &mut work) {
                Metered::Match => {}
                Metered::NoMatch => continue 'rules,
                Metered::Exhausted => {
                    undecided = true;
                    break 'rules;
                }
            }
        }
        state.stat(stat::MATCHES);
        hits.push(r.rule_id);
        if r.enforce {
            if r.sig.ban_seconds.is_some_and(|s| s > 0) {
                state.bans.insert(src, r.rule_id);
                state.stat(stat::BANS);
            }
            return Some(r.rule_id);
        }
    }
    if undecided {
        state.stat(stat::UNDECIDED);
        event(state, SIG_EV_UNDECIDED);
    } else {
        event(state, SIG_EV_CANDIDATE);
    }
    None
}

/// Distinct reporting states an Aho-Corasick automaton over `patterns`
/// (folded) passes through on `folded`: after each byte its state is the
/// longest suffix of the input read so far that is a prefix of some
/// pattern, and it reports when some pattern is a suffix of that.
pub fn reporting_states<'p>(folded: &[u8], patterns: impl Iterator<Item = &'p Vec<u8>>) -> usize {
    let mut prefixes: HashSet<&[u8]> = HashSet::new();
    let mut whole: HashSet<&[u8]> = HashSet::new();
    let mut longest = 0;
    for p in patterns {
        for n in 1..=p.len() {
            prefixes.insert(&p[..n]);
        }
        whole.insert(p.as_slice());
        longest = longest.max(p.len());
    }
    let mut seen: HashSet<&[u8]> = HashSet::new();
    for end in 1..=folded.len() {
        let state = (1..=longest.min(end)).rev().map(|n| &folded[end - n..end]).find(|s| prefixes.contains(s));
        let Some(state) = state else { continue };
        if (0..state.len()).any(|i| whole.contains(&state[i..])) {
            seen.insert(state);
        }
    }
    seen.len()
}
