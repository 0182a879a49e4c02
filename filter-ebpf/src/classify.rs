//! Classification order (see README "How a packet is classified"):
//! malformed L2/L3 -> ARP/ND -> allowlist -> prefix blocklist (source, then
//! destination) -> malformed upper headers -> domain names (DNS, TLS SNI,
//! HTTP Host) -> L4 rules -> attack signatures -> fragment policy ->
//! default pass. Banned sources are dropped right after the prefix
//! blocklist.
use aya_ebpf::{helpers::bpf_loop, maps::lpm_trie::Key, programs::XdpContext};
use filter_common::maps::*;

use crate::maps::*;
use crate::parse::{self, Frame, Ip, FRAG_NONE, FRAG_NON_FIRST};
use filter_common::proto::IPPROTO_ICMPV6;

/// What to do with a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
    /// Rewritten in place into an answer (DNS): send it back.
    Tx,
}

/// Decides the frame's fate, after counting it (an answered query counts
/// as dropped: it never reaches its destination).
#[inline(always)]
pub fn classify(ctx: &XdpContext) -> Action {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let (action, reason) = decide(ctx, len);
    // SAFETY: read-only data set once by the loader.
    let slot = unsafe { core::ptr::read_volatile(&IFACE_SLOT) } % MAX_IFACE_SLOTS;
    count(&REASON_STATS, reason_stats_index(slot, reason, action != Action::Pass), len);
    action
}

#[inline(always)]
fn count(map: &aya_ebpf::maps::PerCpuArray<Counter>, index: u32, len: u64) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        }
    }
}

#[inline(always)]
pub fn hit(rule_id: u32, len: u64) {
    count(&RULE_STATS, rule_id, len);
}

#[inline(always)]
fn decide(ctx: &XdpContext, len: u64) -> (Action, Reason) {
    let (drop, reason) = decide_inner(ctx, len);
    (if drop == 2 { Action::Tx } else if drop == 1 { Action::Drop } else { Action::Pass }, reason)
}

/// 0 pass, 1 drop, 2 transmit.
#[inline(always)]
fn decide_inner(ctx: &XdpContext, len: u64) -> (u8, Reason) {
    // The generation is read once: every lookup below uses the same rule set.
    let generation = match CONFIG.get(0) {
        Some(c) => c.generation & 1,
        None => 0,
    };
    let Some(meta) = GEN_META.get(generation) else { return (0, Reason::Pass) };
    let fail_closed = meta.flags & META_FAIL_CLOSED != 0;

    let mut ip = Ip::default();
    match parse::parse(ctx, &mut ip) {
        Frame::MalformedL2 | Frame::MalformedL3 => return (fail_closed as u8, Reason::Malformed),
        Frame::Arp => return (0, Reason::Control),
        Frame::NonIp => return (0, Reason::NonIp),
        Frame::Ip => {}
    }
    if is_neighbour_discovery(&ip) {
        return (0, Reason::Control);
    }

    let (src, dst) = lookup(generation, &ip);
    // An address no prefix covers has the default signature groups.
    let empty = PrefixEntry { sig_groups: meta.sig_default_groups, ..PrefixEntry::default() };
    let src = src.unwrap_or(&empty);
    let dst = dst.unwrap_or(&empty);
    if (src.flags | dst.flags) & PREFIX_ALLOW != 0 {
        return (0, Reason::Allowlist);
    }
    if src.src_dryrun_rule != 0 {
        hit(src.src_dryrun_rule, len);
    }
    if src.src_drop_rule != 0 {
        hit(src.src_drop_rule, len);
        return (1, Reason::Prefix);
    }
    if dst.dst_dryrun_rule != 0 {
        hit(dst.dst_dryrun_rule, len);
    }
    if dst.dst_drop_rule != 0 {
        hit(dst.dst_drop_rule, len);
        return (1, Reason::Prefix);
    }
    if CONFIG.get(0).is_some_and(|c| c.bans != 0) && crate::sig::edgefilter_banned(&ip, len) != 0 {
        return (1, Reason::Banned);
    }
    if ip.upper_malformed {
        return (fail_closed as u8, Reason::Malformed);
    }
    if meta.domain_rules != 0 && ip.has_l4 && ip.fragment == FRAG_NONE {
        match crate::l7::edgefilter_domain_stage(ctx.ctx, meta, &ip, len) {
            1 => return (1, Reason::Domain),
            2 => return (2, Reason::Domain),
            _ => {}
        }
    }
    if meta.l4_rule_count != 0 && l4_drop(generation, meta, src, dst, &ip, len) {
        return (1, Reason::L4);
    }
    if meta.sig_rules != 0 && ip.has_l4 && ip.fragment == FRAG_NONE && crate::sig::edgefilter_signature_stage(ctx.ctx, meta, &ip, len, (src.sig_groups as u64) << 32 | dst.sig_groups as u64) != 0 {
        return (1, Reason::Signature);
    }
    if ip.fragment != FRAG_NONE {
        let policy = meta.fragment_policy[ip.protocol as usize];
        if policy == FRAG_DROP_ALL || (policy == FRAG_DROP_NON_FIRST && ip.fragment == FRAG_NON_FIRST) {
            return (1, Reason::Fragment);
        }
    }
    (0, Reason::Pass)
}

/// See `filter_common::reference::is_neighbour_discovery` for why each
/// condition is there.
#[inline(always)]
fn is_neighbour_discovery(ip: &Ip) -> bool {
    ip.v6
        && ip.protocol == IPPROTO_ICMPV6
        && ip.fragment == FRAG_NONE
        && ip.hop_limit == 255
        && ip.has_l4
        && ip.icmp_type >= 133
        && ip.icmp_type <= 137
}

#[inline(always)]
fn lookup(generation: u32, ip: &Ip) -> (Option<&'static PrefixEntry>, Option<&'static PrefixEntry>) {
    let (src, dst) = if ip.v6 {
        let key = |addr: &[u8; 16]| Key::new(GENERATION_BITS + 128, V6Key { generation, addr: *addr });
        (PREFIX_V6.get(key(&ip.src)).copied().unwrap_or(0), PREFIX_V6.get(key(&ip.dst)).copied().unwrap_or(0))
    } else {
        let addr = |a: &[u8; 16]| u32::from_be_bytes([a[0], a[1], a[2], a[3]]);
        (lookup_v4(generation, addr(&ip.src)), lookup_v4(generation, addr(&ip.dst)))
    };
    (entry(generation, src), entry(generation, dst))
}

#[inline(always)]
fn entry(generation: u32, index: u32) -> Option<&'static PrefixEntry> {
    if index == 0 || index >= MAX_PREFIX_ENTRIES {
        return None;
    }
    PREFIX_ENTRIES.get(generation * MAX_PREFIX_ENTRIES + index)
}

/// Slot `index` of a u32 table stored two slots per u64 element.
#[inline(always)]
fn u32_slot(table: &aya_ebpf::maps::Array<u64>, index: u32) -> Option<u32> {
    let pair = *table.get(index >> 1)?;
    Some(if index & 1 == 0 { pair as u32 } else { (pair >> 32) as u32 })
}

/// DIR-24-8: one array read for /24 and shorter, then either the block's
/// 256-entry group or hash probes for the longer lengths present.
#[inline(always)]
fn lookup_v4(generation: u32, addr: u32) -> u32 {
    let Some(slot) = u32_slot(&V4_TBL24, (generation << 24) | (addr >> 8)) else { return 0 };
    if slot & TBL24_GROUP != 0 {
        let group = slot & TBL24_INDEX;
        return u32_slot(&V4_TBL8, group * 256 + (addr & 0xff)).unwrap_or(0);
    }
    let lengths = slot >> TBL24_LONG_SHIFT;
    if lengths != 0 {
        for i in 0..8u32 {
            let len = 32 - i;
            if lengths & (1 << (len - 25)) == 0 {
                continue;
            }
            let key = V4LongKey {
                addr: (addr & (u32::MAX << (32 - len))).to_be_bytes(),
                generation: generation as u8,
                prefix_len: len as u8,
                _pad: [0; 2],
            };
            // SAFETY: plain value read of a hash map entry.
            if let Some(&index) = unsafe { V4_LONG.get(&key) } {
                return index;
            }
        }
    }
    slot & TBL24_INDEX
}

#[inline(always)]
fn l4_set(generation: u32, index: u32) -> Option<&'static L4Set> {
    if index == 0 || index >= MAX_L4_SETS {
        return None;
    }
    L4_SETS.get(generation * MAX_L4_SETS + index)
}

/// State of the L4 rule walk, shared with the `bpf_loop` callback.
#[repr(C)]
struct L4Walk {
    candidates: [u64; L4_WORDS],
    generation: u32,
    matched: u32,
    len: u64,
    protocol: u8,
    has_l4: u8,
    non_first: u8,
    tcp_flags: u8,
    icmp_type: u8,
    icmp_code: u8,
    src_port: u16,
    dst_port: u16,
    _pad: [u8; 6],
}

/// Walks the candidate L4 rules (scope matched by the prefix lookups) in
/// slot order; returns true on the first enforcing match.
///
/// The walk runs under `bpf_loop`, so the verifier checks its body once
/// instead of once per parse outcome (a plain bounded loop over 256 slots
/// exceeds the verifier's instruction budget), and it costs one iteration
/// per candidate rule, not per slot.
#[inline(always)]
fn l4_drop(generation: u32, meta: &GenerationMeta, src: &PrefixEntry, dst: &PrefixEntry, ip: &Ip, len: u64) -> bool {
    let src_set = l4_set(generation, src.l4_src_set);
    let dst_set = l4_set(generation, dst.l4_dst_set);
    let mut walk = L4Walk {
        candidates: [0; L4_WORDS],
        generation,
        matched: 0,
        len,
        protocol: ip.protocol,
        has_l4: ip.has_l4 as u8,
        non_first: (ip.fragment == FRAG_NON_FIRST) as u8,
        tcp_flags: ip.tcp_flags,
        icmp_type: ip.icmp_type,
        icmp_code: ip.icmp_code,
        src_port: ip.src_port,
        dst_port: ip.dst_port,
        _pad: [0; 6],
    };
    let mut any = 0;
    for w in 0..L4_WORDS {
        let s = meta.l4_any_src[w] | src_set.map_or(0, |s| s.words[w]);
        let d = meta.l4_any_dst[w] | dst_set.map_or(0, |s| s.words[w]);
        walk.candidates[w] = s & d;
        any |= s & d;
    }
    if any == 0 {
        return false;
    }
    // SAFETY: the callback only touches `walk`, which outlives the call.
    unsafe {
        bpf_loop(
            MAX_L4_RULES,
            l4_step as *mut core::ffi::c_void,
            &mut walk as *mut L4Walk as *mut core::ffi::c_void,
            0,
        );
    }
    walk.matched != 0
}

/// One candidate: take the lowest remaining slot, evaluate it. Returns 1 to
/// stop the loop (no candidates left, or an enforcing rule matched).
extern "C" fn l4_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `L4Walk` passed to bpf_loop.
    let walk = unsafe { &mut *(ctx as *mut L4Walk) };
    let mut word = L4_WORDS;
    for w in 0..L4_WORDS {
        if walk.candidates[w] != 0 {
            word = w;
            break;
        }
    }
    if word >= L4_WORDS {
        return 1;
    }
    let bits = walk.candidates[word];
    let lowest = bits & bits.wrapping_neg();
    walk.candidates[word] = bits ^ lowest;
    let slot = (word as u32) * 64 + (lowest - 1).count_ones();
    let Some(rule) = L4_RULES.get(walk.generation * MAX_L4_RULES + slot) else { return 0 };
    if !l4_matches(rule, walk) {
        return 0;
    }
    hit(rule.rule_id, walk.len);
    if rule.flags & L4_DRY_RUN == 0 {
        walk.matched = 1;
        return 1;
    }
    0
}

#[inline(always)]
fn l4_matches(rule: &L4Rule, ip: &L4Walk) -> bool {
    if rule.flags & L4_PROTOCOL != 0 && rule.protocol != ip.protocol {
        return false;
    }
    if rule.flags & L4_NEEDS_HEADER == 0 {
        return true;
    }
    if ip.has_l4 == 0 || ip.non_first != 0 {
        return false;
    }
    if rule.flags & L4_PORTS != 0
        && (ip.src_port < rule.src_port_min
            || ip.src_port > rule.src_port_max
            || ip.dst_port < rule.dst_port_min
            || ip.dst_port > rule.dst_port_max)
    {
        return false;
    }
    if rule.flags & L4_TCP_FLAGS != 0 && ip.tcp_flags & rule.tcp_flags_mask != rule.tcp_flags_value {
        return false;
    }
    if rule.flags & L4_ICMP_TYPE != 0 && ip.icmp_type != rule.icmp_type {
        return false;
    }
    if rule.flags & L4_ICMP_CODE != 0 && ip.icmp_code != rule.icmp_code {
        return false;
    }
    true
}
