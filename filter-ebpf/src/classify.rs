//! Classification order (see README "How a packet is classified"):
//! malformed L2/L3 -> ARP/ND -> allowlist -> prefix blocklist (source, then
//! destination) -> malformed upper headers -> domain names (DNS, TLS SNI,
//! HTTP Host) -> L4 rules and rate limits -> attack signatures -> fragment policy ->
//! default pass. Banned sources are dropped right after the prefix
//! blocklist.
use aya_ebpf::{maps::lpm_trie::Key, programs::XdpContext};
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

    let mut slot = core::mem::MaybeUninit::<Ip>::uninit();
    let ip = Ip::zeroed_in(&mut slot);
    match parse::parse(ctx, ip) {
        Frame::MalformedL2 | Frame::MalformedL3 => return (fail_closed as u8, Reason::Malformed),
        Frame::Arp => return (0, Reason::Control),
        Frame::NonIp => return (0, Reason::NonIp),
        Frame::Ip => {}
    }
    let ip: &Ip = ip;
    if is_neighbour_discovery(ip) {
        return (0, Reason::Control);
    }

    let (src, dst) = lookup(generation, ip);
    // An address no prefix covers has the default signature groups.
    let empty = PrefixEntry { sig_groups: meta.sig_default_groups, ..PrefixEntry::default() };
    if meta.protect_groups != 0 {
        if let Some(d) = dst {
            if d.protect != 0 {
                crate::ddos::account(meta, ip, d.protect - 1, len);
            }
        }
    }
    if meta.sample_every != 0 {
        crate::ddos::sample(meta, ip, len);
    }
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
    if CONFIG.get(0).is_some_and(|c| c.bans != 0) && crate::sig::edgefilter_banned(ip, len) != 0 {
        return (1, Reason::Banned);
    }
    if ip.upper_malformed {
        return (fail_closed as u8, Reason::Malformed);
    }
    if meta.domain_rules != 0 && ip.has_l4 && ip.fragment == FRAG_NONE {
        match crate::l7::edgefilter_domain_stage(ctx.ctx, meta, ip, len) {
            1 => return (1, Reason::Domain),
            2 => return (2, Reason::Domain),
            _ => {}
        }
    }
    if meta.l4_rule_count != 0 {
        match crate::ddos::edgefilter_l4_stage(ctx.ctx, meta, ip, (src.l4_src_set as u64) << 32 | dst.l4_dst_set as u64, len) {
            1 => return (1, Reason::L4),
            2 => return (1, Reason::RateLimit),
            3 => return (2, Reason::SynAuth),
            4 => return (1, Reason::SynAuth),
            _ => {}
        }
    }
    if meta.sig_rules != 0
        && ip.has_l4
        && ip.fragment == FRAG_NONE
        && crate::sig::may_scan(meta, ip)
        && crate::sig::edgefilter_signature_stage(ctx.ctx, meta, ip, len, (src.sig_groups as u64) << 32 | dst.sig_groups as u64) != 0 {
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
