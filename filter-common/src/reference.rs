//! The reference classifier: the specification of every verdict, evaluated
//! naively from a [`RuleSet`] (no compiled maps), so that the differential
//! tests prove the XDP program *and* the compiler that fills its maps.
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use std::cell::RefCell;

use crate::maps::{Reason, FRAG_DROP_ALL, FRAG_DROP_NON_FIRST};
use crate::packet::{parse, Addrs, Fragment, IpPacket, Parsed, IPPROTO_ICMPV6};
use crate::rules::{L4Slot, RuleSet, Scope};

pub mod names;
pub mod ratelimit;
mod reply;
pub mod signatures;
pub mod synauth;

pub use names::{NameOutcome, NameState};
pub use signatures::SigState;

/// The verdict for one frame and every counter it moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Not passed on (dropped, or answered with `answer`).
    pub drop: bool,
    /// The frame sent back instead (an in-kernel DNS answer).
    pub answer: Option<Vec<u8>>,
    pub reason: Reason,
    /// Rule that decided the verdict (0 = none).
    pub rule_id: u32,
    /// Every rule counter incremented, in evaluation order (dry-run rules
    /// count a "would drop" and let evaluation continue).
    pub hits: Vec<u32>,
}

/// ICMPv6 router/neighbour solicitation/advertisement and redirect: the
/// IPv6 equivalent of ARP. Only genuine on-link messages (hop limit 255,
/// RFC 4861 §7.1, unfragmented, RFC 6980) get the always-pass treatment,
/// so the type field cannot be used to tunnel past the blocklist.
pub fn is_neighbour_discovery(p: &IpPacket) -> bool {
    matches!(p.addrs, Addrs::V6 { .. })
        && p.protocol == IPPROTO_ICMPV6
        && p.fragment == Fragment::None
        && p.hop_limit == 255
        && p.l4.is_some_and(|l4| (133..=137).contains(&l4.icmp_type))
}

#[derive(Clone, Copy, Debug, Default)]
struct Best {
    /// (prefix length, rule id) of the most specific rule; ties go to the
    /// lowest rule id.
    drop: Option<(u8, u32)>,
    dry_run: Option<(u8, u32)>,
}

impl Best {
    fn offer(slot: &mut Option<(u8, u32)>, len: u8, id: u32) {
        let better = match *slot {
            None => true,
            Some((l, i)) => len > l || (len == l && id < i),
        };
        if better {
            *slot = Some((len, id));
        }
    }
}

/// Prefixes grouped by length: a lookup tries each length present.
#[derive(Default)]
struct PrefixIndex {
    lengths: BTreeSet<u8>,
    by_prefix: HashMap<(u8, u128), Vec<usize>>,
}

fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn masked(value: u128, width: u8, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let shift = width - len;
        (value >> shift) << shift
    }
}

impl PrefixIndex {
    fn insert(&mut self, net: IpNet, item: usize) {
        let (v, _) = bits(net.network());
        self.lengths.insert(net.prefix_len());
        self.by_prefix.entry((net.prefix_len(), v)).or_default().push(item);
    }

    /// Items of every prefix covering `addr`, with the prefix length.
    fn covering(&self, addr: IpAddr) -> impl Iterator<Item = (u8, usize)> + '_ {
        let (v, width) = bits(addr);
        self.lengths.iter().flat_map(move |&len| {
            self.by_prefix.get(&(len, masked(v, width, len))).into_iter().flatten().map(move |&i| (len, i))
        })
    }
}

pub struct Reference<'a> {
    pub rules: &'a RuleSet,
    /// What the domain stage remembers between packets (blocked TCP
    /// connections, ClientHellos continued in the next segment) and its
    /// counters, as the kernel's maps do.
    pub names: RefCell<NameState>,
    /// Bans, counters and deep-inspection events of the signature stage.
    pub sigs: RefCell<SigState>,
    /// Rate-limit buckets (`RL_STATE`).
    pub buckets: RefCell<ratelimit::Buckets>,
    /// Verified sources and the cookies the kernel sent (`syn_auth` rules).
    pub synauth: RefCell<synauth::SynAuthState>,
    /// The clock of the rate limits for the next packet, in nanoseconds
    /// (the kernel's `CONFIG.frozen_ns` in the tests).
    pub now_ns: std::cell::Cell<u64>,
    /// The generation the rules are compiled into (part of bucket keys).
    pub generation: u8,
    v4: PrefixIndex,
    v6: PrefixIndex,
    allow_v4: PrefixIndex,
    allow_v6: PrefixIndex,
}

impl<'a> Reference<'a> {
    pub fn new(rules: &'a RuleSet) -> Self {
        let mut r = Reference { rules, names: RefCell::new(NameState::default()), sigs: RefCell::new(SigState::default()), buckets: RefCell::new(ratelimit::Buckets::default()), synauth: RefCell::new(synauth::SynAuthState::default()), now_ns: std::cell::Cell::new(0), generation: 0, v4: PrefixIndex::default(), v6: PrefixIndex::default(), allow_v4: PrefixIndex::default(), allow_v6: PrefixIndex::default() };
        for (i, p) in rules.prefixes.iter().enumerate() {
            match p.net {
                IpNet::V4(_) => r.v4.insert(p.net, i),
                IpNet::V6(_) => r.v6.insert(p.net, i),
            }
        }
        for (i, &net) in rules.settings.allow.iter().enumerate() {
            match net {
                IpNet::V4(_) => r.allow_v4.insert(net, i),
                IpNet::V6(_) => r.allow_v6.insert(net, i),
            }
        }
        r
    }

    fn allowed(&self, addr: IpAddr) -> bool {
        let index = if addr.is_ipv4() { &self.allow_v4 } else { &self.allow_v6 };
        index.covering(addr).next().is_some()
    }

    /// Most specific enforcing and dry-run prefix rules for `addr` seen as
    /// source (`as_src`) or destination.
    fn prefix_rules(&self, addr: IpAddr, as_src: bool) -> Best {
        let index = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        let mut best = Best::default();
        for (len, i) in index.covering(addr) {
            let rule = &self.rules.prefixes[i];
            let applies = if as_src { rule.direction.matches_src() } else { rule.direction.matches_dst() };
            if !applies {
                continue;
            }
            let slot = if rule.dry_run { &mut best.dry_run } else { &mut best.drop };
            Best::offer(slot, len, rule.rule_id);
        }
        best
    }

    pub fn classify(&self, frame: &[u8]) -> Decision {
        let mut hits = Vec::new();
        let done = |drop, reason, rule_id, hits| Decision { drop, answer: None, reason, rule_id, hits };
        let malformed = |hits| done(self.rules.settings.fail_closed, Reason::Malformed, 0, hits);
        let p = match parse(frame) {
            Parsed::MalformedL2 | Parsed::MalformedL3 => return malformed(hits),
            Parsed::Arp => return done(false, Reason::Control, 0, hits),
            Parsed::NonIp(_) => return done(false, Reason::NonIp, 0, hits),
            Parsed::Ip(p) => p,
        };
        if is_neighbour_discovery(&p) {
            return done(false, Reason::Control, 0, hits);
        }
        let (src, dst) = match p.addrs {
            Addrs::V4 { src, dst } => (IpAddr::from(src), IpAddr::from(dst)),
            Addrs::V6 { src, dst } => (IpAddr::from(src), IpAddr::from(dst)),
        };
        if self.allowed(src) || self.allowed(dst) {
            return done(false, Reason::Allowlist, 0, hits);
        }
        // Prefix blocklist: the source first, then the destination.
        for (addr, as_src) in [(src, true), (dst, false)] {
            let best = self.prefix_rules(addr, as_src);
            if let Some((_, id)) = best.dry_run {
                hits.push(id);
            }
            if let Some((_, id)) = best.drop {
                hits.push(id);
                return done(true, Reason::Prefix, id, hits);
            }
        }
        if let Some(rule) = signatures::banned(&mut self.sigs.borrow_mut(), src) {
            hits.push(rule);
            return done(true, Reason::Banned, rule, hits);
        }
        if p.upper_malformed {
            return malformed(hits);
        }
        if !self.rules.domains.is_empty() && p.l4.is_some() && p.fragment == Fragment::None {
            let mut names = self.names.borrow_mut();
            match names::domain_stage(self.rules, &mut names, frame, &p, &mut hits) {
                (NameOutcome::Continue, _) => {}
                (NameOutcome::Drop, rule) => return done(true, Reason::Domain, rule, hits),
                (NameOutcome::Answer(frame), rule) => {
                    return Decision { drop: true, answer: Some(frame), reason: Reason::Domain, rule_id: rule, hits };
                }
            }
        }
        for slot in &self.rules.l4 {
            if !l4_matches(slot, &p, src, dst) {
                continue;
            }
            if slot.syn_auth {
                let now = self.now_ns.get();
                let ttl = u64::from(self.rules.settings.syn_auth_seconds) * 1_000_000_000;
                let mut state = self.synauth.borrow_mut();
                match synauth::step(slot, &p, &state, now, ttl) {
                    synauth::Step::Continue => continue,
                    synauth::Step::Challenge => {
                        hits.push(slot.rule_id);
                        if slot.dry_run {
                            continue;
                        }
                        if !synauth::answerable(&p) {
                            return done(true, Reason::SynAuth, slot.rule_id, hits);
                        }
                        let cookie = state.cookies.get(&synauth::cookie_key(frame, &p, false)).copied().unwrap_or(0);
                        let answer = synauth::syn_ack(frame, &p, cookie);
                        return Decision { drop: true, answer: Some(answer), reason: Reason::SynAuth, rule_id: slot.rule_id, hits };
                    }
                    synauth::Step::CheckAck => {
                        if !synauth::answerable(&p) || !synauth::valid_cookie_ack(frame, &p, &state) {
                            continue;
                        }
                        hits.push(slot.rule_id);
                        state.verified.insert(synauth::verified_key(&p), now);
                        let answer = synauth::reset(frame, &p);
                        return Decision { drop: true, answer: Some(answer), reason: Reason::SynAuth, rule_id: slot.rule_id, hits };
                    }
                }
            }
            if let Some(spec) = slot.rate_limit {
                let rl = crate::compile::rate_limit(spec);
                let key = ratelimit::key(&rl, slot.bucket as usize, self.generation, &p);
                if ratelimit::conform(&mut self.buckets.borrow_mut(), &rl, key, self.now_ns.get(), frame.len() as u64) {
                    continue;
                }
                hits.push(slot.rule_id);
                if rl.count_only == 0 && !slot.dry_run {
                    return done(true, Reason::RateLimit, slot.rule_id, hits);
                }
                continue;
            }
            hits.push(slot.rule_id);
            if !slot.dry_run {
                return done(true, Reason::L4, slot.rule_id, hits);
            }
        }
        if let Some(rule) = signatures::signature_stage(self.rules, &mut self.sigs.borrow_mut(), frame, &p, src, dst, &mut hits) {
            return done(true, Reason::Signature, rule, hits);
        }
        if p.fragment != Fragment::None {
            let policy = self.rules.settings.fragment_policy[p.protocol as usize];
            if policy == FRAG_DROP_ALL || (policy == FRAG_DROP_NON_FIRST && p.fragment == Fragment::NonFirst) {
                return done(true, Reason::Fragment, 0, hits);
            }
        }
        done(false, Reason::Pass, 0, hits)
    }
}

fn scope_matches(scope: &Scope, addr: IpAddr) -> bool {
    match scope {
        Scope::Any => true,
        Scope::Nets(nets) => nets.iter().any(|n| n.contains(&addr)),
    }
}

fn l4_matches(slot: &L4Slot, p: &IpPacket, src: IpAddr, dst: IpAddr) -> bool {
    if !scope_matches(&slot.source, src) || !scope_matches(&slot.destination, dst) {
        return false;
    }
    if slot.protocol.is_some_and(|proto| proto != p.protocol) {
        return false;
    }
    if slot.fragments && p.fragment == Fragment::None {
        return false;
    }
    if !slot.needs_header() {
        return true;
    }
    // Non-first fragments (and protocols without a parsed header) have no
    // ports, flags or ICMP fields to match.
    let Some(l4) = p.l4 else { return false };
    slot.src_ports.is_none_or(|r| r.contains(l4.src_port))
        && slot.dst_ports.is_none_or(|r| r.contains(l4.dst_port))
        && slot.tcp_flags.is_none_or(|f| l4.tcp_flags & f.mask == f.value)
        && slot.icmp_type.is_none_or(|t| t == l4.icmp_type)
        && slot.icmp_code.is_none_or(|c| c == l4.icmp_code)
}
