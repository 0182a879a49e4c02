//! L4 rules with rate limits (token buckets), traffic accounting toward
//! protected prefixes, and traffic samples. Mirrors
//! `filter_common::reference` (L4 loop) and `reference::ratelimit`.
use aya_ebpf::bindings::xdp_md;
use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_loop};
use filter_common::maps::*;
use filter_common::proto::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use crate::classify::hit;
use crate::maps::*;
use crate::mem::{copy_addr, get, mask_addr, put, set, zero_addr};
use crate::parse::{Ip, FRAG_NONE, FRAG_NON_FIRST};

/// State of the L4 rule walk (in `L4_SCRATCH`, not on the stack).
#[repr(C)]
pub struct L4Walk {
    candidates: [u64; L4_WORDS],
    src: [u8; 16],
    dst: [u8; 16],
    now: u64,
    len: u64,
    generation: u32,
    /// 0 none, 1 drop, 2 over a rate limit.
    matched: u32,
    protocol: u8,
    has_l4: u8,
    non_first: u8,
    fragment: u8,
    tcp_flags: u8,
    icmp_type: u8,
    icmp_code: u8,
    v6: u8,
    src_port: u16,
    dst_port: u16,
    /// An ACK already found not to be a cookie ACK (`syn_auth` rules).
    not_cookie: u8,
    _pad: [u8; 3],
    key: RlKey,
    fresh: RlState,
    /// `GenerationMeta::syn_auth_ns`.
    syn_auth_ns: u64,
    /// The `syn_auth` rule that asked for an answer.
    syn_rule: u32,
    _pad2: u32,
    /// The coarse clock as last read on this CPU, and the tick (jiffies)
    /// it was read in: kept across packets (see `clock`).
    tick_ns: u64,
    tick_jiffies: u64,
}

// `copy_addr` moves addresses a word at a time: they must sit on 8-byte
// boundaries.
const _: () = assert!(core::mem::offset_of!(L4Walk, src) % 8 == 0 && core::mem::offset_of!(L4Walk, dst) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(L4Walk, key) % 8 == 0 && core::mem::offset_of!(RlKey, addr) == 0);
const _: () = assert!(core::mem::align_of::<L4Walk>() >= 8 && core::mem::align_of::<RlKey>() >= 8);

#[inline(always)]
fn l4_set(generation: u32, index: u32) -> Option<&'static L4Set> {
    if index == 0 || index >= MAX_L4_SETS {
        return None;
    }
    L4_SETS.get(generation * MAX_L4_SETS + index)
}

/// The L4 stage as a global BPF function (verified once). `sets`: the L4
/// set of the source (high half) and of the destination (low half).
/// Returns 0 (go on), 1 (an L4 rule drops), 2 (over a rate limit), 3 (a
/// `syn_auth` rule answered: send the packet back) or 4 (a `syn_auth`
/// rule drops a SYN it cannot answer).
///
/// Candidate rules (scope matched by the prefix lookups) are walked in
/// slot order under `bpf_loop`, one iteration per candidate.
#[no_mangle]
#[inline(never)]
pub extern "C" fn edgefilter_l4_stage(ctx: *mut xdp_md, meta: *const GenerationMeta, ip: *const Ip, sets: u64, len: u64) -> u32 {
    if ctx.is_null() || meta.is_null() || ip.is_null() {
        return 0;
    }
    // SAFETY: the caller's live values.
    let (meta, ip) = unsafe { (&*meta, &*ip) };
    let generation = meta.generation as u32 & 1;
    let Some(w) = L4_SCRATCH.get_ptr_mut(0) else { return 0 };
    let src_set = l4_set(generation, (sets >> 32) as u32);
    let dst_set = l4_set(generation, sets as u32);
    let mut any = 0;
    let mut i = 0;
    let by_proto = l4_proto_index(ip.protocol);
    while i < L4_WORDS {
        let s = meta.l4_any_src[i] | src_set.map_or(0, |s| s.words[i]);
        let d = meta.l4_any_dst[i] | dst_set.map_or(0, |s| s.words[i]);
        // Rules for another protocol are not candidates.
        let p = match by_proto {
            Some(k) => meta.l4_by_proto[k & 3][i],
            None => u64::MAX,
        };
        // SAFETY: scratch through raw pointers (see `crate::mem`).
        put(unsafe { core::ptr::addr_of_mut!((*w).candidates[i]) }, s & d & p);
        any |= s & d & p;
        i += 1;
    }
    if any == 0 {
        return 0;
    }
    // SAFETY: scratch through raw pointers (see `crate::mem`).
    copy_addr(unsafe { core::ptr::addr_of_mut!((*w).src) }, &ip.src);
    copy_addr(unsafe { core::ptr::addr_of_mut!((*w).dst) }, &ip.dst);
    // Read when a rule needs it (`clock`): most walks never do.
    set!(w, now, 0);
    set!(w, len, len);
    set!(w, generation, generation);
    set!(w, matched, 0);
    set!(w, protocol, ip.protocol);
    set!(w, has_l4, ip.has_l4 as u8);
    set!(w, non_first, (ip.fragment == FRAG_NON_FIRST) as u8);
    set!(w, fragment, (ip.fragment != FRAG_NONE) as u8);
    set!(w, tcp_flags, ip.tcp_flags);
    set!(w, icmp_type, ip.icmp_type);
    set!(w, icmp_code, ip.icmp_code);
    set!(w, v6, ip.v6 as u8);
    set!(w, src_port, ip.src_port);
    set!(w, dst_port, ip.dst_port);
    set!(w, not_cookie, 0);
    set!(w, syn_auth_ns, meta.syn_auth_ns);
    walk();
    // SAFETY: scratch through raw pointers (see `crate::mem`).
    let matched = get(unsafe { core::ptr::addr_of!((*w).matched) });
    let rule = get(unsafe { core::ptr::addr_of!((*w).syn_rule) });
    match matched {
        L4_OUT_SYN_CHALLENGE => {
            if crate::synauth::challenge(ctx, ip) {
                3
            } else {
                4
            }
        }
        L4_OUT_ACK_CHECK => {
            // SAFETY: as above.
            let now = clock(unsafe { &mut *w });
            if crate::synauth::check_ack(ctx, ip, now) {
                hit(rule, len);
                return 3;
            }
            // Not a cookie ACK: the walk goes on after the rule (later
            // `syn_auth` rules let the ACK through without a new check).
            set!(w, not_cookie, 1);
            set!(w, matched, 0);
            walk();
            get(unsafe { core::ptr::addr_of!((*w).matched) })
        }
        m => m,
    }
}

/// Walks the candidates: the first step inline (most packets have no
/// more than `CANDIDATES_PER_STEP`, and a call and return cost as much as
/// a dozen candidates), the rest under `bpf_loop`.
#[inline(always)]
fn walk() {
    if step() == 0 {
        // SAFETY: the callback finds its state in the scratch map.
        unsafe { bpf_loop(MAX_L4_RULES, l4_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0) };
    }
}

/// The packet's time (ns), read once per packet when first needed: the
/// kernel's coarse monotonic clock, or `CONFIG.frozen_ns` when a test set
/// it. Coarse: it moves once per tick, and reading it costs a few
/// nanoseconds where the precise clock costs 20 to 30 (a TSC read, slow
/// in a VM). Buckets are at least a tick deep (`RL_MIN_BURST_NS`), so
/// refilling a tick at a time keeps the rate; synauth's windows are seconds.
///
/// Within a tick the coarse clock does not move, so each CPU reads it
/// once per tick: `bpf_jiffies64` (inlined by the verifier: one load)
/// tells whether the tick changed. The kernel bumps jiffies just before
/// the coarse clock, so a read in between keeps the old time for that
/// tick: this CPU's clock is then a tick late, never early, and goes on
/// from the right time at the next tick (buckets refill later, not more).
#[inline(always)]
fn clock(w: &mut L4Walk) -> u64 {
    if w.now == 0 {
        let frozen = CONFIG.get(0).map_or(0, |c| c.frozen_ns);
        w.now = if frozen != 0 {
            frozen
        } else {
            // SAFETY: helpers without arguments.
            let tick = unsafe { bpf_jiffies64() };
            if tick != w.tick_jiffies || w.tick_ns == 0 {
                w.tick_ns = unsafe { bpf_ktime_get_coarse_ns() };
                w.tick_jiffies = tick;
            }
            w.tick_ns
        };
    }
    w.now
}

/// Candidates looked at per `bpf_loop` iteration: those that do not match
/// cost a few instructions each instead of a callback each.
const CANDIDATES_PER_STEP: u32 = 8;

/// `bpf_loop` callback: one `step`.
extern "C" fn l4_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    step()
}

/// Takes the lowest remaining candidates, in slot order, until one
/// matches (then evaluates it) or `CANDIDATES_PER_STEP` are seen. Returns
/// 1 to stop the loop (no candidates left, or an enforcing rule matched).
#[inline(always)]
fn step() -> i64 {
    // SAFETY: per-CPU scratch, used by this invocation only.
    let Some(w) = L4_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p }) else { return 1 };
    let mut seen = 0;
    while seen < CANDIDATES_PER_STEP {
        seen += 1;
        let mut word = L4_WORDS;
        for i in 0..L4_WORDS {
            if w.candidates[i] != 0 {
                word = i;
                break;
            }
        }
        if word >= L4_WORDS {
            return 1;
        }
        let bits = w.candidates[word];
        let lowest = bits & bits.wrapping_neg();
        w.candidates[word] = bits ^ lowest;
        let slot = (word as u32) * 64 + (lowest - 1).count_ones();
        let Some(rule) = L4_RULES.get(w.generation * MAX_L4_RULES + slot) else { continue };
        if l4_matches(rule, w) {
            return evaluate(w, rule, slot);
        }
    }
    0
}

/// A candidate that matched: 1 stops the walk.
#[inline(always)]
fn evaluate(w: &mut L4Walk, rule: &L4Rule, slot: u32) -> i64 {
    if rule.flags & L4_SYN_AUTH != 0 {
        return syn_auth_step(rule, w);
    }
    if rule.flags & L4_RATE_LIMIT != 0 {
        let Some(rl) = RATE_LIMITS.get(w.generation * MAX_L4_RULES + slot) else { return 0 };
        if conform(w, rl) {
            return 0;
        }
        hit(rule.rule_id, w.len);
        if rl.count_only == 0 && rule.flags & L4_DRY_RUN == 0 {
            w.matched = 2;
            return 1;
        }
        return 0;
    }
    hit(rule.rule_id, w.len);
    if rule.flags & L4_DRY_RUN == 0 {
        w.matched = 1;
        return 1;
    }
    0
}

/// A packet matched a `syn_auth` rule (`reference::synauth::step`).
#[inline(always)]
fn syn_auth_step(rule: &L4Rule, w: &mut L4Walk) -> i64 {
    if w.protocol != IPPROTO_TCP || w.fragment != 0 {
        return 0;
    }
    let flags = w.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST);
    let dry_run = rule.flags & L4_DRY_RUN != 0;
    let out = if flags == TCP_SYN {
        L4_OUT_SYN_CHALLENGE
    } else if flags == TCP_ACK && !dry_run && w.not_cookie == 0 {
        L4_OUT_ACK_CHECK
    } else {
        return 0;
    };
    let now = clock(w);
    if crate::synauth::verified(&w.src, w.v6, now, w.syn_auth_ns) {
        return 0;
    }
    if out == L4_OUT_SYN_CHALLENGE {
        hit(rule.rule_id, w.len);
        if dry_run {
            return 0;
        }
    }
    w.matched = out;
    w.syn_rule = rule.rule_id;
    1
}

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

#[inline(always)]
fn l4_matches(rule: &L4Rule, ip: &L4Walk) -> bool {
    if rule.flags & L4_PROTOCOL != 0 && rule.protocol != ip.protocol {
        return false;
    }
    if rule.flags & L4_FRAGMENTS != 0 && ip.fragment == 0 {
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

/// `min(cap, credit + elapsed * rate)`, exactly (see
/// `reference::ratelimit::conform`): past `fill_ns` the product is over
/// the cap, and short of it the product fits.
#[inline(always)]
fn refill(credit: u64, elapsed: u64, rate: u64, cap: u64, fill_ns: u64) -> u64 {
    if elapsed > fill_ns {
        return cap;
    }
    let add = elapsed * rate;
    let sum = credit.wrapping_add(add);
    let sum = if sum < credit { u64::MAX } else { sum };
    if sum > cap {
        cap
    } else {
        sum
    }
}

/// What a CPU learnt the last time a bucket slot turned a packet away:
/// no packet of that bucket can pass before `until_ns`. Credit only grows
/// with time (other CPUs can only take from it), and a packet needs one
/// packet token (`pps`) and at least one byte's bit credit (`bps`), so
/// until both are there (the later of the two) every packet is over. A
/// flood then costs one array read per packet instead of a hash lookup
/// and a bucket update; skipping those updates changes nothing later
/// because a refill is exact (two in a row are one).
#[repr(C)]
pub struct RlMemo {
    key: [u64; 3],
    until_ns: u64,
    /// The limit the time was worked out for (a later rule set may give
    /// the slot another rate).
    pps: u64,
    bps: u64,
}

/// The key as three words (`RlKey` is 24 bytes, 8-byte aligned).
#[inline(always)]
fn key_words(k: &RlKey) -> [u64; 3] {
    // SAFETY: `RlKey` is `repr(C, align(8))` and 24 bytes long.
    unsafe { core::ptr::read(k as *const RlKey as *const [u64; 3]) }
}

/// Nanoseconds until `credit` grows to `need` at `rate` per ns (0 if it
/// is there already).
#[inline(always)]
fn wait_ns(credit: u64, need: u64, rate: u64) -> u64 {
    if rate == 0 || credit >= need {
        0
    } else {
        (need - credit).div_ceil(rate)
    }
}

/// Refills the packet's bucket to `now` and takes the packet if both
/// credits allow (`reference::ratelimit::conform`). Buckets are shared by
/// the CPUs and updated without a lock: two CPUs updating one bucket at
/// the same instant may each let a packet through that only one should.
#[inline(always)]
fn conform(w: &mut L4Walk, rl: &RateLimit) -> bool {
    let k = &mut w.key;
    // The entry's first slot: an entry's port ranges share its buckets.
    k.slot = rl.bucket;
    k.port = 0;
    k.proto = 0;
    k.v6 = w.v6;
    k.generation = w.generation as u8;
    k._pad = 0;
    match rl.per {
        RL_PER_SOURCE => {
            copy_addr(&mut k.addr, &w.src);
            mask_addr(&mut k.addr, if w.v6 != 0 { rl.src_len_v6 } else { rl.src_len_v4 });
        }
        RL_PER_DESTINATION => copy_addr(&mut k.addr, &w.dst),
        RL_PER_FLOW => {
            copy_addr(&mut k.addr, &w.src);
            k.proto = w.protocol;
            k.port = if w.has_l4 != 0 && w.non_first == 0 { w.dst_port } else { 0 };
        }
        _ => {
            // Per rule: no address.
            zero_addr(&mut k.addr);
            k.v6 = 0;
        }
    }
    let (now, len) = (clock(w), w.len);
    let memo = RL_MEMO.get_ptr_mut(rl.bucket as u32);
    let key = key_words(&w.key);
    if let Some(m) = memo {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        let m = unsafe { &*m };
        // Word by word: `==` on the arrays compiles to a `memcmp` call.
        let same = m.key[0] == key[0] && m.key[1] == key[1] && m.key[2] == key[2];
        if now < m.until_ns && same && m.pps == rl.pps && m.bps == rl.bps {
            return false;
        }
    }
    let found = RL_STATE.get_ptr_mut(&w.key);
    let st: &mut RlState = match found {
        // SAFETY: an LRU value; concurrent CPUs may race (see above).
        Some(p) => unsafe { &mut *p },
        None => {
            w.fresh = RlState { pkt_credit: rl.pkt_cap, bit_credit: rl.bit_cap, last_ns: now };
            &mut w.fresh
        }
    };
    let elapsed = if now > st.last_ns { now - st.last_ns } else { 0 };
    if rl.pps != 0 {
        st.pkt_credit = refill(st.pkt_credit, elapsed, rl.pps, rl.pkt_cap, rl.pkt_fill_ns);
    }
    if rl.bps != 0 {
        st.bit_credit = refill(st.bit_credit, elapsed, rl.bps, rl.bit_cap, rl.bit_fill_ns);
    }
    st.last_ns = now;
    let bits = len * 8 * RL_SCALE;
    let ok = (rl.pps == 0 || st.pkt_credit >= RL_SCALE) && (rl.bps == 0 || st.bit_credit >= bits);
    if ok {
        if rl.pps != 0 {
            st.pkt_credit -= RL_SCALE;
        }
        if rl.bps != 0 {
            st.bit_credit -= bits;
        }
    }
    if !ok {
        let wait = wait_ns(st.pkt_credit, RL_SCALE, rl.pps).max(wait_ns(st.bit_credit, 8 * RL_SCALE, rl.bps));
        if let (Some(m), true) = (memo, wait != 0) {
            // SAFETY: as above.
            unsafe { *m = RlMemo { key, until_ns: now + wait, pps: rl.pps, bps: rl.bps } };
        }
    }
    if found.is_none() {
        let _ = RL_STATE.insert(&w.key, &w.fresh, 0);
    }
    ok
}

/// Counts a packet toward protected prefix group `group`. Inlined: a few
/// counter updates cost less than the call and return of a BPF function.
#[inline(always)]
pub fn account(meta: &GenerationMeta, ip: &Ip, group: u32, len: u64) {
    if group >= MAX_PROTECT_GROUPS {
        return;
    }
    let Some(st) = PROTECT_STATS.get_ptr_mut(group) else { return };
    // SAFETY: per-CPU slot.
    let st = unsafe { &mut *st };
    let class = match ip.protocol {
        IPPROTO_TCP => 0,
        IPPROTO_UDP => 1,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => 2,
        _ => 3,
    };
    st.packets[class] += 1;
    st.bytes[class] += len;
    if ip.fragment != FRAG_NONE {
        st.fragments += 1;
    }
    if !ip.has_l4 || ip.fragment == FRAG_NON_FIRST {
        return;
    }
    if ip.protocol == IPPROTO_TCP && ip.tcp_flags & 0x12 == 0x02 {
        st.syn += 1;
    }
    if ip.protocol == IPPROTO_UDP && may_be_reflect_port(&meta.reflect_port_filter, ip.src_port) {
        let mut i = 0;
        while i < MAX_REFLECT_PORTS {
            let port = meta.reflect_ports[i];
            if port != 0 && port == ip.src_port {
                st.reflected += 1;
                st.reflected_bytes += len;
                if let Some(c) = REFLECT_STATS.get_ptr_mut(group * MAX_REFLECT_PORTS as u32 + i as u32) {
                    // SAFETY: per-CPU slot.
                    unsafe {
                        (*c).packets += 1;
                        (*c).bytes += len;
                    }
                }
                break;
            }
            i += 1;
        }
    }
}

/// One packet in `sample_every` (per CPU) goes to `TRAFFIC_SAMPLES` for
/// `filter-agent top`.
#[inline(always)]
pub fn sample(meta: &GenerationMeta, ip: &Ip, len: u64) {
    let Some(n) = SAMPLE_COUNTDOWN.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot.
    let left = unsafe { *n };
    if left > 1 {
        // SAFETY: as above.
        unsafe { *n = left - 1 };
        return;
    }
    // SAFETY: as above.
    unsafe { *n = meta.sample_every };
    edgefilter_sample(ip, len);
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn edgefilter_sample(ip: *const Ip, len: u64) -> u32 {
    if ip.is_null() {
        return 0;
    }
    // SAFETY: the caller's live value.
    let ip = unsafe { &*ip };
    if let Some(mut entry) = TRAFFIC_SAMPLES.reserve::<Sample>(0) {
        entry.write(Sample {
            src: ip.src,
            dst: ip.dst,
            len: len as u32,
            src_port: ip.src_port,
            dst_port: ip.dst_port,
            proto: ip.protocol,
            v6: ip.v6 as u8,
            _pad: [0; 2],
        });
        entry.submit(0);
    }
    0
}
