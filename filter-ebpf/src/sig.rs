//! The signature stage and source bans. Mirrors
//! `filter_common::reference::signatures` step for step; the differential
//! tests hold the two together.
//!
//! The payload's first bytes are copied into per-CPU scratch memory, walked
//! through the fast-pattern DFA (one walk over a short buffer; over a
//! longer one, four interleaved walks over its quarters, then a few bytes
//! at each seam until the next walk is in the single walk's state), the
//! candidate rules collected from the reporting states, and then checked by
//! one `bpf_loop` state machine: each iteration picks a candidate, starts a
//! content search or compares one byte, so the whole check costs at most
//! `SIG_WORK_BUDGET` iterations however the rules and payload are made.
use aya_ebpf::{
    bindings::xdp_md,
    helpers::{bpf_ktime_get_ns, bpf_loop, generated::bpf_xdp_load_bytes},
    programs::XdpContext,
};
use filter_common::maps::*;
use filter_common::proto::{IPPROTO_TCP, IPPROTO_UDP};

use crate::l7::in_ports;
use crate::maps::*;
use crate::mem::{get, opaque, put, set};
use crate::parse::Ip;

const VIEW_MASK: u32 = SIG_SCAN_MAX - 1;
/// Bytes walked per `bpf_loop` iteration of the DFA walk: the callback's
/// fixed cost (call, scratch and class-table lookups) is paid once per
/// stride.
const WALK_STRIDE: u32 = 64;
/// Byte quadruples per iteration, and the shortest buffer walked as four
/// interleaved walks (a shorter one is walked in one).
const QUAD_STRIDE: u32 = 128;
const QUAD_MIN: u32 = 128;
/// Room for one walk's part: `n / 4` rounded up to words, at most 1,024
/// bytes (twice that, so the word count of the longest part stays under
/// the mask in `copy_parts`).
const QUAD_SEG_MAX: u32 = 2048;
const QUAD_SEG_MASK: u32 = QUAD_SEG_MAX - 1;
/// Steps per round of a seam's mending, and rounds per `bpf_loop`
/// iteration (a round ends early at a report).
const MEND_STRIDE: u32 = 64;
const MEND_ROUNDS: u32 = 3;
/// Early reports held per walk until its seam is mended (more: the seam
/// is mended over the whole window instead).
const HELD_MAX: usize = 4;
const NONE: u32 = u32::MAX;
/// Loop bounds: enough for the work they do, by construction.
/// The walk: a stride per iteration, and an iteration ends early at each
/// reporting state (at most one per byte), plus the seams' mending (at
/// most a longest pattern each, also ending early at reports).
const WALK_LOOPS: u32 = 2 * SIG_SCAN_MAX + 64;
const COLLECT_LOOPS: u32 = SIG_MAX_HITS as u32 * (MAX_SIG_RULES + 1) + 1;
const EVAL_LOOPS: u32 = SIG_WORK_BUDGET + MAX_SIG_RULES + 2;
/// Byte comparisons per `bpf_loop` iteration of the rule check.
const COMPARES_PER_STEP: u32 = 16;

#[repr(C)]
pub struct SigScratch {
    /// Ring buffer record: the header, then the first bytes of `view`.
    event: SigEvent,
    view: [u8; SIG_SCAN_MAX as usize],
    ban_key: BanKey,
    walk: Walk,
    collect: Collect,
    regions: Regions,
    scan: RegionScan,
    eval: Eval,
    candidates: [u64; SIG_RULE_WORDS],
    hits: [u32; SIG_MAX_HITS],
    /// Event rate limiter: credit in event-nanoseconds, and when it was
    /// last topped up.
    credit: u64,
    credit_at: u64,
    /// The four walks' parts of `view`, one per row (see `walk_quad`).
    quad: [[u8; QUAD_SEG_MAX as usize]; 4],
    /// `SIG_CLASSES` of the generation, right after `quad`: the four
    /// walks reach it from the same base address.
    quad_classes: [u8; 256],
}

// `view` and the rows of `quad` are copied in aligned 8-byte words.
const _: () = assert!(core::mem::offset_of!(SigScratch, view) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(SigScratch, quad) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(SigScratch, quad_classes) == core::mem::offset_of!(SigScratch, quad) + 4 * QUAD_SEG_MAX as usize);

#[repr(C)]
struct Walk {
    /// Current state, as its row's byte offset in the table (see `next`).
    row: u32,
    pos: u32,
    /// Bytes in `view` (the payload buffer the rules read).
    len: u32,
    generation: u32,
    n_hits: u32,
    overflow: u32,
    /// Four interleaved walks (while `quad_k < quad_len`, see
    /// `signature_stage`): walk `j` over `[j * quad_len, + quad_len)`.
    quad_k: u32,
    quad_len: u32,
    quad_row: [u32; 4],
    /// The longest pattern: walk `j` is in the single walk's state from
    /// its `quad_window`-th byte on.
    quad_window: u32,
    /// The start state's row.
    start_row: u32,
    /// Seam being mended (1 to 3; 4 when none is left, see `mend_step`),
    /// bytes past it, and (past 0) the rows of the single walk
    /// (`mend_true`) and of walk `mend_seam` (`mend_fresh`) there.
    mend_seam: u32,
    mend_d: u32,
    mend_true: u32,
    mend_fresh: u32,
    /// Reports of walk `j` before its `quad_window`-th byte, held until
    /// its seam is mended: (end, row) pairs, and whether more came.
    held: [[u32; 2 * HELD_MAX]; 4],
    held_n: [u32; 4],
    held_over: [u32; 4],
}

#[repr(C)]
struct Collect {
    hit: u32,
    cursor: u32,
    end: u32,
    any: u32,
    hint: u32,
    generation: u32,
    /// Bytes per state row (`classes * 4`): a row's state is `row / row_bytes`.
    row_bytes: u32,
    n_hits: u32,
}

/// HTTP request regions of the view (`filter_common::signatures::http`).
#[repr(C)]
struct Regions {
    valid: u32,
    method_end: u32,
    uri: [u32; 2],
    host: [u32; 2],
    header: [u32; 2],
    body: [u32; 2],
}

#[repr(C)]
struct RegionScan {
    pos: u32,
    len: u32,
    /// 0: request line, 1: header lines, 2: done.
    phase: u32,
    first_sp: u32,
    last_sp: u32,
    method_ok: u32,
    uri_start: u32,
    last_nonsp: u32,
    uri_end: u32,
    line_start: u32,
    host_found: u32,
    host_prefix_ok: u32,
    value_start: u32,
    last_keep: u32,
}

const PICK: u32 = 0;
const FIND: u32 = 1;
const COMPARE: u32 = 2;
const DONE: u32 = 3;

const R_NONE: u32 = 0;
const R_DROP: u32 = 1;
const R_UNDECIDED: u32 = 2;

#[repr(C)]
struct Eval {
    phase: u32,
    generation: u32,
    /// Next candidate word to look at.
    word: u32,
    rule: u32,
    /// `SIG_CONTENTS` index of the current buffer group's first content,
    /// and one past the rule's last.
    group_first: u32,
    rule_end: u32,
    /// Current content, relative to `group_first`.
    j: u32,
    buf_start: u32,
    buf_len: u32,
    /// Search: start (`NONE`: the window's), positions, compared bytes.
    from: u32,
    p: u32,
    last: u32,
    k: u32,
    searches: u32,
    work: u32,
    result: u32,
    len: u64,
    proto: u32,
    src_port: u32,
    dst_port: u32,
    http_port: u32,
    src_groups: u32,
    dst_groups: u32,
    prev_in: [u32; SIG_MAX_RULE_CONTENTS],
    found: [u32; SIG_MAX_RULE_CONTENTS],
}

#[inline(always)]
fn stat(index: u32) {
    if let Some(c) = SIG_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn scratch() -> Option<&'static mut SigScratch> {
    // SAFETY: per-CPU map value, used by this program invocation only.
    SIG_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Drops a packet from a banned source: returns 1 (and counts the drop
/// under the banning rule) or 0.
#[no_mangle]
#[inline(never)]
pub extern "C" fn edgefilter_banned(ip: *const Ip, len: u64) -> u32 {
    if ip.is_null() {
        return 0;
    }
    let Some(s) = SIG_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: the caller's live value; scratch through raw pointers.
    let ip = unsafe { &*ip };
    let key = unsafe { core::ptr::addr_of_mut!((*s).ban_key) };
    set!(key, addr, ip.src);
    set!(key, v6, ip.v6 as u8);
    set!(key, _pad, [0; 3]);
    // SAFETY: plain read of an LRU entry; `key` is valid map memory.
    let Some(ban) = (unsafe { BANS.get(&*key) }) else { return 0 };
    let (expires, rule) = (ban.expires_ns, ban.rule_id);
    // SAFETY: helper without arguments.
    if unsafe { bpf_ktime_get_ns() } >= expires {
        // SAFETY: as above.
        let _ = BANS.remove(unsafe { &*key });
        return 0;
    }
    crate::classify::hit(rule, len);
    stat(stat::BAN_DROPS);
    1
}

/// The signature stage as a global BPF function (verified once, on its
/// own). Returns 1 to drop the packet, 0 to go on.
#[no_mangle]
#[inline(never)]
///
/// `groups`: the signature address groups of the source (high half) and
/// destination (low half), from the prefix lookups the caller made.
pub extern "C" fn edgefilter_signature_stage(xdp: *mut xdp_md, meta: *const GenerationMeta, ip: *const Ip, len: u64, groups: u64) -> u32 {
    if xdp.is_null() || meta.is_null() || ip.is_null() {
        return 0;
    }
    let ctx = XdpContext::new(xdp);
    // SAFETY: the caller passes its own live values.
    let (meta, ip) = unsafe { (&*meta, &*ip) };
    stage(&ctx, meta, ip, len, groups)
}

/// Whether the stage looks at this packet at all: a TCP or UDP payload
/// to a destination port some rule of that protocol applies to. The
/// caller asks first, so other packets do not pay for the call.
#[inline(always)]
pub fn may_scan(meta: &GenerationMeta, ip: &Ip) -> bool {
    let generation = meta.generation as u32 & 1;
    let udp = match ip.protocol {
        IPPROTO_TCP => 0u32,
        IPPROTO_UDP => 1,
        _ => return false,
    };
    if ip.payload_end <= ip.payload_off {
        return false;
    }
    if meta.sig_any_port[udp as usize] == 0 {
        let word = SIG_PORTS.get(generation * 2048 + udp * 1024 + (ip.dst_port as u32 >> 6)).copied().unwrap_or(0);
        if word & (1u64 << (ip.dst_port & 63)) == 0 {
            return false;
        }
    }
    true
}

#[inline(always)]
fn stage(ctx: &XdpContext, meta: &GenerationMeta, ip: &Ip, len: u64, groups: u64) -> u32 {
    // The caller has checked `may_scan`.
    let generation = meta.generation as u32 & 1;
    let Some(s) = SIG_SCRATCH.get_ptr_mut(0) else { return 0 };
    let payload_len = ip.payload_end - ip.payload_off;
    let scan = if meta.sig_scan_bytes < SIG_SCAN_MAX { meta.sig_scan_bytes } else { SIG_SCAN_MAX };
    let n = if payload_len < scan { payload_len } else { scan };
    if n == 0 {
        return 0;
    }
    // SAFETY: `view` is SIG_SCAN_MAX bytes of map memory; the length is in 1..=SIG_SCAN_MAX.
    let view = unsafe { core::ptr::addr_of_mut!((*s).view) };
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, ip.payload_off, view.cast(), ((opaque(n) - 1) & VIEW_MASK) + 1) } != 0 {
        return 0;
    }
    stat(stat::SCANNED);

    // 1. The DFA walk.
    // SAFETY: raw pointers into the scratch (see `crate::mem`).
    let walk = unsafe { core::ptr::addr_of_mut!((*s).walk) };
    // Rows are byte offsets into the generation's table (see `next`).
    let start = meta.sig_start * meta.sig_classes * 4;
    set!(walk, row, start);
    set!(walk, pos, 0);
    // Four walks of equal length, interleaved, when the buffer is long
    // enough: each byte's state then depends on the byte before it in its
    // own walk only, so the CPU runs the four dependency chains side by
    // side. Walk `j` starts afresh where walk `j - 1` ends; its first
    // bytes may be in a shallower state than the single walk's, so each
    // seam is then mended (`mend_step`).
    let window = if meta.sig_pattern_max == 0 { 1 } else { meta.sig_pattern_max as u32 };
    set!(walk, len, n);
    set!(walk, quad_k, 0);
    set!(walk, quad_len, 0);
    set!(walk, mend_seam, 4);
    if n >= QUAD_MIN && n >= 4 * window {
        // A quarter each, rounded up to words (the parts are copied in
        // words): the last may run past `n`, and records nothing there.
        // At least `window` bytes each, so every walk ends in the single
        // walk's state.
        let seg = ((n + 3) / 4 + 7) & !7;
        let q = unsafe { core::ptr::addr_of_mut!((*walk).quad_row) };
        let mut j = 0;
        while j < 4 {
            // SAFETY: indexes in range.
            unsafe {
                put(core::ptr::addr_of_mut!((*q)[j]), start);
                put(core::ptr::addr_of_mut!((*walk).held_n[j]), 0);
                put(core::ptr::addr_of_mut!((*walk).held_over[j]), 0);
            }
            j += 1;
        }
        set!(walk, quad_window, window);
        set!(walk, start_row, start);
        set!(walk, mend_seam, 1);
        set!(walk, mend_d, 0);
        // Each walk's part in its own row of `quad`: the four bytes of a
        // step are then at one index, and one address serves them all.
        let Some(classes) = SIG_CLASSES.get_ptr(generation) else { return 0 };
        copy_parts(s, seg / 8, classes);
        set!(walk, quad_len, seg);
    }
    set!(walk, generation, generation);
    set!(walk, n_hits, 0);
    set!(walk, overflow, 0);
    // SAFETY: the callback finds its state in the scratch map.
    unsafe { bpf_loop(WALK_LOOPS, walk_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0) };
    let n_hits = get(unsafe { core::ptr::addr_of!((*walk).n_hits) });
    if get(unsafe { core::ptr::addr_of!((*walk).overflow) }) != 0 {
        return undecided(s, ip, meta);
    }
    if n_hits == 0 {
        return 0;
    }

    // 2. Candidates from the reporting states.
    // SAFETY: as above.
    let cands = unsafe { core::ptr::addr_of_mut!((*s).candidates) };
    let mut w = 0;
    while w < SIG_RULE_WORDS {
        // SAFETY: index in range.
        put(unsafe { core::ptr::addr_of_mut!((*cands)[w]) }, 0);
        w += 1;
    }
    let collect = unsafe { core::ptr::addr_of_mut!((*s).collect) };
    set!(collect, hit, 0);
    set!(collect, cursor, 0);
    set!(collect, end, 0);
    set!(collect, any, 0);
    set!(collect, hint, 0);
    set!(collect, generation, generation);
    set!(collect, row_bytes, meta.sig_classes * 4);
    set!(collect, n_hits, n_hits);
    // SAFETY: as above.
    unsafe { bpf_loop(COLLECT_LOOPS, collect_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0) };
    if get(unsafe { core::ptr::addr_of!((*collect).any) }) == 0 {
        if get(unsafe { core::ptr::addr_of!((*collect).hint) }) != 0 {
            event(s, ip, meta, SIG_EV_HINT);
        }
        return 0;
    }
    stat(stat::CANDIDATES);

    // 3. The HTTP regions, when some rule reads them.
    let regions = unsafe { core::ptr::addr_of_mut!((*s).regions) };
    set!(regions, valid, 0);
    if meta.sig_needs_regions != 0 {
        let scan = unsafe { core::ptr::addr_of_mut!((*s).scan) };
        set!(scan, pos, 0);
        set!(scan, len, n);
        set!(scan, phase, 0);
        set!(scan, first_sp, NONE);
        set!(scan, last_sp, NONE);
        set!(scan, method_ok, 1);
        set!(scan, uri_start, NONE);
        set!(scan, last_nonsp, NONE);
        set!(scan, uri_end, NONE);
        set!(scan, line_start, 0);
        set!(scan, host_found, 0);
        set!(scan, host_prefix_ok, 1);
        set!(scan, value_start, NONE);
        set!(scan, last_keep, NONE);
        // SAFETY: as above.
        unsafe { bpf_loop(SIG_SCAN_MAX + 1, region_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0) };
    }

    // 4. The candidates, in rule order.
    let eval = unsafe { core::ptr::addr_of_mut!((*s).eval) };
    set!(eval, phase, PICK);
    set!(eval, generation, generation);
    set!(eval, word, 0);
    set!(eval, work, SIG_WORK_BUDGET);
    set!(eval, result, R_NONE);
    set!(eval, len, len);
    set!(eval, proto, ip.protocol as u32);
    set!(eval, src_port, ip.src_port as u32);
    set!(eval, dst_port, ip.dst_port as u32);
    set!(eval, http_port, in_ports(&meta.http_ports, ip.dst_port) as u32);
    set!(eval, src_groups, (groups >> 32) as u32);
    set!(eval, dst_groups, groups as u32);
    // SAFETY: as above.
    unsafe { bpf_loop(EVAL_LOOPS, eval_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0) };
    let result = get(unsafe { core::ptr::addr_of!((*eval).result) });
    let phase = get(unsafe { core::ptr::addr_of!((*eval).phase) });
    if result == R_DROP {
        let rule = get(unsafe { core::ptr::addr_of!((*eval).rule) });
        if let Some(r) = SIG_RULES.get(generation * MAX_SIG_RULES + (rule & (MAX_SIG_RULES - 1))) {
            if r.ban_seconds != 0 {
                ban(s, ip, r.ban_seconds, r.rule_id);
            }
        }
        return 1;
    }
    if result == R_UNDECIDED || phase != DONE {
        return undecided(s, ip, meta);
    }
    event(s, ip, meta, SIG_EV_CANDIDATE);
    0
}

#[inline(always)]
fn undecided(s: *mut SigScratch, ip: &Ip, meta: &GenerationMeta) -> u32 {
    stat(stat::UNDECIDED);
    event(s, ip, meta, SIG_EV_UNDECIDED);
    0
}

#[inline(always)]
fn ban(s: *mut SigScratch, ip: &Ip, seconds: u32, rule_id: u32) {
    // SAFETY: scratch through raw pointers.
    let key = unsafe { core::ptr::addr_of_mut!((*s).ban_key) };
    set!(key, addr, ip.src);
    set!(key, v6, ip.v6 as u8);
    set!(key, _pad, [0; 3]);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let value = Ban { expires_ns: now + seconds as u64 * 1_000_000_000, rule_id, _pad: 0 };
    // SAFETY: `key` is valid map memory.
    if BANS.insert(unsafe { &*key }, &value, 0).is_ok() {
        stat(stat::BANS);
        if let Some(c) = CONFIG.get_ptr_mut(0) {
            // SAFETY: a flag word; racing writers all write 1.
            unsafe { (*c).bans = 1 };
        }
    }
}

/// Sends the packet's first bytes to deep inspection, within the rate.
#[inline(always)]
fn event(s: *mut SigScratch, ip: &Ip, meta: &GenerationMeta, kind: u8) {
    let rate = meta.sig_event_rate as u64;
    // SAFETY: scratch through raw pointers.
    let (credit, at) = unsafe { (core::ptr::addr_of_mut!((*s).credit), core::ptr::addr_of_mut!((*s).credit_at)) };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // A second's worth of events at most (the burst).
    let cap = rate * 1_000_000_000;
    let elapsed = now - get(at);
    let mut c = get(credit);
    c = if elapsed > 1_000_000_000 { cap } else { c + elapsed * rate };
    if c > cap {
        c = cap;
    }
    put(at, now);
    if c < 1_000_000_000 {
        put(credit, c);
        stat(stat::EVENTS_LIMITED);
        return;
    }
    put(credit, c - 1_000_000_000);
    let payload_len = ip.payload_end - ip.payload_off;
    let captured = if payload_len < SIG_EVENT_BYTES { payload_len } else { SIG_EVENT_BYTES };
    let ev = unsafe { core::ptr::addr_of_mut!((*s).event) };
    set!(ev, src, ip.src);
    set!(ev, dst, ip.dst);
    set!(ev, src_port, ip.src_port);
    set!(ev, dst_port, ip.dst_port);
    set!(ev, kind, kind);
    set!(ev, v6, ip.v6 as u8);
    set!(ev, proto, ip.protocol);
    set!(ev, _pad, 0);
    set!(ev, payload_len, payload_len);
    set!(ev, captured, captured);
    let size = core::mem::size_of::<SigEvent>() + (((opaque(captured) - 1) & (SIG_EVENT_BYTES - 1)) + 1) as usize;
    // SAFETY: the event header is followed by `view` in the scratch value,
    // which holds at least `captured` bytes.
    let record = unsafe { core::slice::from_raw_parts(ev as *const u8, size) };
    if SIG_EVENTS.output::<[u8]>(record, 0).is_ok() {
        stat(stat::EVENTS);
    } else {
        stat(stat::EVENTS_LOST);
    }
}

/// Remembers a reporting state (each once); false, with the walk marked
/// overflowed, when the log is full (the caller stops the walk).
#[inline(always)]
fn record(s: &mut SigScratch, row: u32) -> bool {
    let n = s.walk.n_hits;
    let mut i = 0;
    while i < SIG_MAX_HITS {
        if (i as u32) >= n {
            break;
        }
        if s.hits[i] == row {
            return true;
        }
        i += 1;
    }
    if n as usize >= SIG_MAX_HITS {
        s.walk.overflow = 1;
        return false;
    }
    s.hits[(n as usize) & (SIG_MAX_HITS - 1)] = row;
    s.walk.n_hits = n + 1;
    true
}

extern "C" fn walk_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let Some(dfa) = SIG_DFA.get(s.walk.generation & 1) else { return 1 };
    if s.walk.quad_k < s.walk.quad_len {
        let r = walk_quad(s, dfa);
        // The seams in the same call once the walks are done (a call and
        // its return cost about as much as a few dozen steps).
        if r != 0 || s.walk.quad_k < s.walk.quad_len {
            return r;
        }
    }
    if s.walk.mend_seam < 4 {
        return mend_step(s, dfa);
    }
    // The single walk (the four walks read their copy of the classes).
    let Some(classes) = SIG_CLASSES.get(s.walk.generation & 1) else { return 1 };
    // 64-bit locals: u32 arithmetic would cost zero-extensions per byte.
    let (pos, len) = (s.walk.pos as u64, s.walk.len as u64);
    let todo = stride(pos, len, WALK_STRIDE);
    // The transition as loaded: its `SIG_NEXT_REPORTS` bit is cleared by
    // the next index's mask, so the dependency chain from one byte to the
    // next is an add, a mask and a load.
    let mut t = s.walk.row as u64;
    let mut k = 0u64;
    // A reporting state ends the iteration and is recorded once, outside
    // the walk (which stays small enough for the i-cache).
    while k < todo {
        let b = s.view[((pos + k) & VIEW_MASK as u64) as usize];
        t = next(dfa, t, classes[b as usize]);
        k += 1;
        if t & SIG_NEXT_REPORTS as u64 != 0 {
            break;
        }
    }
    let (row, pos) = ((t & SIG_STATE_MASK as u64) as u32, (pos + k) as u32);
    s.walk.row = row;
    s.walk.pos = pos;
    if t & SIG_NEXT_REPORTS as u64 != 0 && !record(s, row) {
        return 1;
    }
    if pos >= s.walk.len {
        return 1;
    }
    0
}

/// The transition from row `row` on byte class `class`. Rows are byte
/// offsets into the table (`SIG_DFA` holds `state * classes * 4`), so the
/// dependency chain from one byte to the next is an add, a mask, an add
/// and a load: the class is scaled off the chain.
#[inline(always)]
fn next(dfa: &[u32; SIG_DFA_SLOTS as usize], row: u64, class: u8) -> u64 {
    const MASK: u64 = (SIG_DFA_SLOTS as u64 - 1) * 4;
    let at = ((row + ((class as u64) << 2)) & MASK) as usize;
    // SAFETY: `at` is a multiple of 4 below the table's size in bytes.
    unsafe { *((dfa.as_ptr() as *const u8).add(at) as *const u32) as u64 }
}

/// Bytes to walk this iteration: at most `max`, never past `end`. One
/// bound per byte instead of two; the verifier sees it is at most `max`.
#[inline(always)]
fn stride(pos: u64, end: u64, max: u32) -> u64 {
    let left = end.saturating_sub(pos);
    if left < max as u64 {
        left
    } else {
        max as u64
    }
}

/// Copies the four walks' parts of `view` (`seg_words` words each,
/// walk `j`'s from word `j * seg_words`) into the rows of `quad`, and the
/// class table after them. Volatile word copies: LLVM would otherwise
/// make a `memcpy` call of them, byte by byte on BPF.
#[inline(always)]
fn copy_parts(s: *mut SigScratch, seg_words: u32, classes: *const [u8; 256]) {
    const ROW_WORDS: usize = QUAD_SEG_MAX as usize / 8;
    const VIEW_WORDS: u32 = SIG_SCAN_MAX / 8;
    // SAFETY: both arrays are 8-aligned (asserted above) and in the scratch value.
    let (view, rows) = unsafe { (core::ptr::addr_of!((*s).view) as *const u64, core::ptr::addr_of_mut!((*s).quad) as *mut u64) };
    // Through memory: LLVM would otherwise drop the masks it can prove
    // redundant, and the verifier cannot.
    let seg_words = opaque(seg_words);
    let words = seg_words & (ROW_WORDS as u32 - 1);
    let seg = seg_words as u64;
    let mut w = 0u32;
    while w < words {
        let x = w as usize;
        let from = |j: u64| ((j * seg + w as u64) & (VIEW_WORDS as u64 - 1)) as usize;
        // SAFETY: word indexes masked into `view` and under ROW_WORDS per row.
        unsafe {
            put(rows.add(x), get(view.add(from(0))));
            put(rows.add(ROW_WORDS + x), get(view.add(from(1))));
            put(rows.add(2 * ROW_WORDS + x), get(view.add(from(2))));
            put(rows.add(3 * ROW_WORDS + x), get(view.add(from(3))));
        }
        w += 1;
    }
    // SAFETY: 32 aligned words each side (map values are 8-aligned; the
    // field offset is asserted).
    let (from, to) = (classes as *const u64, unsafe { core::ptr::addr_of_mut!((*s).quad_classes) } as *mut u64);
    let mut w = 0;
    while w < 32 {
        // SAFETY: as above.
        unsafe { put(to.add(w), get(from.add(w))) };
        w += 1;
    }
}

/// A stride of the four interleaved walks (equal lengths: they end
/// together).
#[inline(always)]
fn walk_quad(s: &mut SigScratch, dfa: &[u32; SIG_DFA_SLOTS as usize]) -> i64 {
    let (k0, seg) = (s.walk.quad_k as u64, s.walk.quad_len as u64);
    let todo = stride(k0, seg, QUAD_STRIDE);
    let q = s.walk.quad_row;
    let (mut t0, mut t1, mut t2, mut t3) = (q[0] as u64, q[1] as u64, q[2] as u64, q[3] as u64);
    // The rows and the class table at constant offsets from one base.
    let base = s.quad.as_ptr() as *const u8;
    const ROW: usize = QUAD_SEG_MAX as usize;
    const CLASSES: usize = 4 * ROW;
    // Counted from 0: the verifier sees the loop end after `todo` steps.
    let mut k = 0u64;
    while k < todo {
        // SAFETY: byte `k0 + k` (masked) of each row; classes indexed by a byte.
        let (c0, c1, c2, c3) = unsafe {
            let p = base.add(((k0 + k) & QUAD_SEG_MASK as u64) as usize);
            let cls = |b: u8| *base.add(CLASSES + b as usize);
            (cls(*p), cls(*p.add(ROW)), cls(*p.add(2 * ROW)), cls(*p.add(3 * ROW)))
        };
        t0 = next(dfa, t0, c0);
        t1 = next(dfa, t1, c1);
        t2 = next(dfa, t2, c2);
        t3 = next(dfa, t3, c3);
        k += 1;
        if (t0 | t1 | t2 | t3) & SIG_NEXT_REPORTS as u64 != 0 {
            break;
        }
    }
    let mask = SIG_STATE_MASK as u64;
    s.walk.quad_row = [(t0 & mask) as u32, (t1 & mask) as u32, (t2 & mask) as u32, (t3 & mask) as u32];
    s.walk.quad_k = (k0 + k) as u32;
    let (n, window) = (s.walk.len as u64, s.walk.quad_window as u64);
    // Nothing past the buffer (the last walk may overrun it). Walk `j`
    // records a report once it is `window` bytes in (in the single walk's
    // state); an earlier one is held until its seam is mended.
    let ts = [t0, t1, t2, t3];
    let mut j = 0;
    while j < 4 {
        let (from, end) = (j as u64 * seg, j as u64 * seg + k0 + k);
        if ts[j] & SIG_NEXT_REPORTS as u64 != 0 && end <= n {
            let row = (ts[j] & mask) as u32;
            if j == 0 || end >= from + window {
                if !record(s, row) {
                    return 1;
                }
            } else {
                hold(s, j, end as u32, row);
            }
        }
        j += 1;
    }
    0
}

/// Holds an early report of walk `j` (see `Walk::held`).
#[inline(always)]
fn hold(s: &mut SigScratch, j: usize, end: u32, row: u32) {
    let j = j & 3;
    let n = s.walk.held_n[j] as usize;
    if n >= HELD_MAX {
        s.walk.held_over[j] = 1;
        return;
    }
    s.walk.held[j][(2 * n) & (2 * HELD_MAX - 1)] = end;
    s.walk.held[j][(2 * n + 1) & (2 * HELD_MAX - 1)] = row;
    s.walk.held_n[j] = n as u32 + 1;
}

/// Mends seam `j` (where walk `j` starts afresh): the single walk goes on
/// from walk `j - 1`'s end state (`mend_true`) next to walk `j`'s own
/// first steps (`mend_fresh`, from the start state), recording its own
/// reports, until the two are in one state (from there walk `j` is the
/// single walk, and its held reports past that byte are recorded) or
/// `window - 1` bytes are done (walk `j` records from its `window`-th
/// byte on). Usually a few bytes: most bytes of most text lead back near
/// the start state.
#[inline(always)]
fn mend_step(s: &mut SigScratch, dfa: &[u32; SIG_DFA_SLOTS as usize]) -> i64 {
    // Several seams per call: a call ends early only after a stride of
    // one seam's steps or a few of its reports.
    let mut round = 0;
    while round < MEND_ROUNDS {
        round += 1;
        let j = s.walk.mend_seam;
        if j == 0 || j > 3 {
            return 1;
        }
        let jx = j as usize & 3;
        let mask = SIG_STATE_MASK as u64;
        let seg = s.walk.quad_len as u64;
        let (from, n, last) = (j as u64 * seg, s.walk.len as u64, s.walk.quad_window as u64 - 1);
        let d0 = s.walk.mend_d as u64;
        // A seam starts from walk `j - 1`'s end state and the start state.
        let (mut t, mut f) = if d0 == 0 {
            (s.walk.quad_row[(jx - 1) & 3] as u64, s.walk.start_row as u64)
        } else {
            (s.walk.mend_true as u64, s.walk.mend_fresh as u64)
        };
        let held_over = s.walk.held_over[jx] != 0;
        // From here on walk `j` is the single walk (unless its held
        // reports overflowed: then the whole window is walked).
        let agree = |t: u64, f: u64| !held_over && (t ^ f) & mask == 0;
        let todo = stride(d0, last, MEND_STRIDE);
        let base = s.quad.as_ptr() as *const u8;
        let mut merged = false;
        let mut k = 0u64;
        while k < todo {
            if agree(t, f) {
                merged = true;
                break;
            }
            // SAFETY: byte `d0 + k` (masked) of row `jx`; classes indexed by a byte.
            let c = unsafe {
                let b = *base.add(jx * QUAD_SEG_MAX as usize + ((d0 + k) & QUAD_SEG_MASK as u64) as usize);
                *base.add(4 * QUAD_SEG_MAX as usize + b as usize)
            };
            t = next(dfa, t, c);
            f = next(dfa, f, c);
            k += 1;
            if t & SIG_NEXT_REPORTS as u64 != 0 {
                break;
            }
        }
        let d = d0 + k;
        if !merged && k == todo && agree(t, f) {
            merged = true;
        }
        s.walk.mend_true = (t & mask) as u32;
        s.walk.mend_fresh = (f & mask) as u32;
        s.walk.mend_d = d as u32;
        if t & SIG_NEXT_REPORTS as u64 != 0 && from + d <= n && !record(s, (t & mask) as u32) {
            return 1;
        }
        if !merged && d < last {
            // More of this seam.
            continue;
        }
        if merged {
            // Walk `j` is the single walk from byte `from + d` on.
            let held = s.walk.held_n[jx] as usize;
            let mut i = 0;
            while i < HELD_MAX {
                if i >= held {
                    break;
                }
                let (end, row) = (s.walk.held[jx][(2 * i) & (2 * HELD_MAX - 1)], s.walk.held[jx][(2 * i + 1) & (2 * HELD_MAX - 1)]);
                if end as u64 > from + d && !record(s, row) {
                    return 1;
                }
                i += 1;
            }
        }
        // The next seam.
        s.walk.mend_seam = j + 1;
        s.walk.mend_d = 0;
        if j + 1 > 3 {
            return 1;
        }
    }
    0
}

extern "C" fn collect_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let c = &mut s.collect;
    if c.cursor >= c.end {
        if c.hit >= c.n_hits || c.row_bytes == 0 {
            return 1;
        }
        let row = s.hits[(c.hit as usize) & (SIG_MAX_HITS - 1)];
        c.hit += 1;
        let state = row / c.row_bytes;
        let Some(&info) = SIG_STATES.get(c.generation * MAX_SIG_STATES + (state & (MAX_SIG_STATES - 1))) else { return 1 };
        if info & SIG_STATE_HINT != 0 {
            c.hint = 1;
        }
        c.cursor = info as u32;
        c.end = c.cursor + ((info >> 32) as u32 & 0xffff);
        return 0;
    }
    let Some(&rule) = SIG_LIST.get(c.generation * MAX_SIG_LIST + (c.cursor & (MAX_SIG_LIST - 1))) else { return 1 };
    c.cursor += 1;
    let rule = rule & (MAX_SIG_RULES - 1);
    s.candidates[(rule >> 6) as usize & (SIG_RULE_WORDS - 1)] |= 1u64 << (rule & 63);
    c.any = 1;
    0
}

#[inline(always)]
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(b, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// End of a header line `[line_start, end)`: the first Host line's value.
#[inline(always)]
fn host_line_end(s: &mut SigScratch, end: u32) {
    let (found, prefix_ok, line_start) = (s.scan.host_found, s.scan.host_prefix_ok, s.scan.line_start);
    if found == 0 && prefix_ok != 0 && end >= line_start + 5 {
        s.scan.host_found = 1;
        let (vs, lk) = (s.scan.value_start, s.scan.last_keep);
        s.regions.host = if vs != NONE && vs < end && lk != NONE && lk < end { [vs, lk + 1] } else { [end, end] };
    }
    s.scan.value_start = NONE;
    s.scan.last_keep = NONE;
    s.scan.host_prefix_ok = 1;
}

/// One byte of `filter_common::signatures::http_regions`, as a state
/// machine: the request line, then header lines up to the empty one.
extern "C" fn region_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let i = s.scan.pos;
    if s.scan.phase >= 2 {
        return 1;
    }
    if i >= s.scan.len {
        if s.scan.phase == 1 {
            // The segment ends inside the header block.
            if s.scan.line_start < i {
                host_line_end(s, i);
            }
            s.regions.header[1] = i;
            s.regions.body = [i, i];
            s.regions.valid = 1;
        }
        s.scan.phase = 2;
        return 1;
    }
    s.scan.pos = i + 1;
    let b = s.view[(i & VIEW_MASK) as usize];
    let cr_before = i > 0 && s.view[((i - 1) & VIEW_MASK) as usize] == b'\r';
    if s.scan.phase == 0 {
        if b == b'\n' {
            let t = &s.scan;
            let line_len = if cr_before { i - 1 } else { i };
            let fs = t.first_sp;
            let ls = t.last_sp;
            let ok = fs != NONE
                && fs > 0
                && ls > fs
                && t.method_ok != 0
                && line_len == ls + 9
                && t.uri_start != NONE
                && t.uri_start < ls
                && t.uri_end != NONE;
            if !ok || !is_version(s, ls + 1) {
                s.scan.phase = 2;
                return 1;
            }
            s.regions.method_end = fs;
            s.regions.uri = [s.scan.uri_start, s.scan.uri_end];
            s.regions.host = [i + 1, i + 1];
            s.regions.header = [i + 1, i + 1];
            s.scan.line_start = i + 1;
            s.scan.phase = 1;
            return 0;
        }
        let t = &mut s.scan;
        if b == b' ' {
            if t.first_sp == NONE {
                t.first_sp = i;
            }
            t.last_sp = i;
            t.uri_end = if t.last_nonsp != NONE && t.last_nonsp > t.first_sp { t.last_nonsp + 1 } else { NONE };
        } else {
            if t.first_sp == NONE {
                if !is_tchar(b) {
                    t.method_ok = 0;
                }
            } else if t.uri_start == NONE {
                t.uri_start = i;
            }
            t.last_nonsp = i;
        }
        return 0;
    }
    // Header lines.
    let start = s.scan.line_start;
    if b == b'\n' {
        let end = if cr_before && i - 1 >= start { i - 1 } else { i };
        if end == start {
            s.regions.header[1] = start;
            s.regions.body = [i + 1, s.scan.len];
            s.regions.valid = 1;
            s.scan.phase = 2;
            return 1;
        }
        host_line_end(s, end);
        s.scan.line_start = i + 1;
        return 0;
    }
    let off = i - start;
    let t = &mut s.scan;
    if off < 5 {
        let want = match off {
            0 => b'h',
            1 => b'o',
            2 => b's',
            3 => b't',
            _ => b':',
        };
        if b.to_ascii_lowercase() != want {
            t.host_prefix_ok = 0;
        }
    } else {
        if t.value_start == NONE && b != b' ' && b != b'\t' {
            t.value_start = i;
        }
        if b != b' ' && b != b'\t' && b != b'\r' {
            t.last_keep = i;
        }
    }
    0
}

/// `HTTP/1.` (any case) and a digit at `at`.
#[inline(always)]
fn is_version(s: &SigScratch, at: u32) -> bool {
    let want = *b"http/1.";
    let mut k = 0;
    while k < 7 {
        if s.view[((at + k as u32) & VIEW_MASK) as usize].to_ascii_lowercase() != want[k] {
            return false;
        }
        k += 1;
    }
    s.view[((at + 7) & VIEW_MASK) as usize].is_ascii_digit()
}

#[inline(always)]
fn content(generation: u32, index: u32) -> Option<&'static SigContent> {
    SIG_CONTENTS.get(generation * MAX_SIG_CONTENTS + (index & (MAX_SIG_CONTENTS - 1)))
}

#[inline(always)]
fn header_ok(r: &SigRule, e: &Eval) -> bool {
    if r.proto as u32 != e.proto || (r.flags & SIG_HTTP != 0 && e.http_port == 0) {
        return false;
    }
    if r.src_group != SIG_GROUP_ANY && e.src_groups & (1u32 << (r.src_group & 31)) == 0 {
        return false;
    }
    if r.dst_group != SIG_GROUP_ANY && e.dst_groups & (1u32 << (r.dst_group & 31)) == 0 {
        return false;
    }
    in_ranges(&r.src_ports, r.n_src_ports, e.src_port) && in_ranges(&r.dst_ports, r.n_dst_ports, e.dst_port)
}

#[inline(always)]
fn in_ranges(ranges: &[[u16; 2]; MAX_SIG_PORT_RANGES], n: u8, port: u32) -> bool {
    if n == 0 {
        return true;
    }
    let mut i = 0;
    while i < MAX_SIG_PORT_RANGES {
        if i as u8 >= n {
            break;
        }
        if ranges[i][0] as u32 <= port && port <= ranges[i][1] as u32 {
            return true;
        }
        i += 1;
    }
    false
}

/// Points the search at the buffer of the group starting at
/// `group_first`; false when the buffer does not exist (an HTTP buffer
/// of a packet that does not start a request).
#[inline(always)]
fn start_group(s: &mut SigScratch, c: &SigContent) -> bool {
    let r = &s.regions;
    let (start, end) = match c.buffer {
        SIG_BUF_PAYLOAD => (0, s.walk.len),
        _ if r.valid == 0 => return false,
        SIG_BUF_URI => (r.uri[0], r.uri[1]),
        SIG_BUF_METHOD => (0, r.method_end),
        SIG_BUF_HOST => (r.host[0], r.host[1]),
        SIG_BUF_HEADER => (r.header[0], r.header[1]),
        _ => (r.body[0], r.body[1]),
    };
    s.eval.buf_start = start;
    s.eval.buf_len = end - start;
    s.eval.j = 0;
    s.eval.searches = SIG_MAX_SEARCHES;
    true
}

/// Enters content `j` of the group with `prev` the end of the last
/// positive match; past the group's last content, the next group or the
/// rule's match.
#[inline(always)]
fn enter(s: &mut SigScratch, j: u32, prev: u32, past_last: bool) -> i64 {
    if past_last {
        let next = s.eval.group_first + j;
        if next >= s.eval.rule_end {
            return rule_matched(s);
        }
        let Some(c) = content(s.eval.generation, next) else { return 1 };
        s.eval.group_first = next;
        if !start_group(s, c) {
            s.eval.phase = PICK;
            return 0;
        }
        s.eval.prev_in[0] = 0;
        s.eval.from = NONE;
        s.eval.phase = FIND;
        return 0;
    }
    s.eval.j = j;
    s.eval.prev_in[(j as usize) & (SIG_MAX_RULE_CONTENTS - 1)] = prev;
    s.eval.from = NONE;
    s.eval.phase = FIND;
    0
}

#[inline(always)]
fn rule_matched(s: &mut SigScratch) -> i64 {
    stat(stat::MATCHES);
    let Some(r) = SIG_RULES.get(s.eval.generation * MAX_SIG_RULES + (s.eval.rule & (MAX_SIG_RULES - 1))) else { return 1 };
    crate::classify::hit(r.rule_id, s.eval.len);
    if r.flags & SIG_ENFORCE != 0 {
        s.eval.result = R_DROP;
        return 1;
    }
    s.eval.phase = PICK;
    0
}

/// Content `j` failed (`abort`: no other occurrence of an earlier content
/// can help). Back to the nearest earlier positive content to retry, or
/// the rule does not match.
#[inline(always)]
fn fail(s: &mut SigScratch, j: u32, abort: bool) -> i64 {
    s.eval.phase = PICK;
    if abort {
        return 0;
    }
    let mut i = j;
    let mut guard = 0;
    while guard < SIG_MAX_RULE_CONTENTS {
        guard += 1;
        if i == 0 {
            return 0;
        }
        i -= 1;
        let Some(c) = content(s.eval.generation, s.eval.group_first + i) else { return 1 };
        if c.flags & SIG_C_NEGATED != 0 {
            continue;
        }
        if c.flags & SIG_C_RETRY == 0 {
            return 0;
        }
        s.eval.j = i;
        s.eval.from = s.eval.found[(i as usize) & (SIG_MAX_RULE_CONTENTS - 1)] + 1;
        s.eval.phase = FIND;
        return 0;
    }
    0
}

/// The search of content `j` ended: found at `at`, or not.
#[inline(always)]
fn searched(s: &mut SigScratch, c: &SigContent, found: Option<u32>) -> i64 {
    let j = s.eval.j;
    let relative = c.flags & SIG_C_RELATIVE != 0;
    let last = c.flags & SIG_C_LAST != 0;
    let idx = (j as usize) & (SIG_MAX_RULE_CONTENTS - 1);
    if c.flags & SIG_C_NEGATED != 0 {
        return match found {
            Some(_) => fail(s, j, !relative),
            None => {
                let prev = s.eval.prev_in[idx];
                enter(s, j + 1, prev, last)
            }
        };
    }
    match found {
        None => fail(s, j, !relative),
        Some(at) => {
            s.eval.found[idx] = at;
            enter(s, j + 1, at + c.len as u32, last)
        }
    }
}

extern "C" fn eval_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    match s.eval.phase {
        PICK => pick(s),
        FIND => find(s),
        COMPARE => compare(s),
        _ => 1,
    }
}

#[inline(always)]
fn pick(s: &mut SigScratch) -> i64 {
    let mut w = s.eval.word;
    while w < SIG_RULE_WORDS as u32 {
        // Through `opaque`: as a pointer walk LLVM would lose the mask
        // the verifier needs.
        if s.candidates[(opaque(w) as usize) & (SIG_RULE_WORDS - 1)] != 0 {
            break;
        }
        w += 1;
    }
    s.eval.word = w;
    if w >= SIG_RULE_WORDS as u32 {
        s.eval.phase = DONE;
        return 1;
    }
    let slot = (opaque(w) as usize) & (SIG_RULE_WORDS - 1);
    let bits = s.candidates[slot];
    let lowest = bits & bits.wrapping_neg();
    s.candidates[slot] = bits ^ lowest;
    if s.eval.work == 0 {
        s.eval.result = R_UNDECIDED;
        return 1;
    }
    s.eval.work -= 1;
    let rule = w * 64 + (lowest - 1).count_ones();
    s.eval.rule = rule;
    let Some(r) = SIG_RULES.get(s.eval.generation * MAX_SIG_RULES + (rule & (MAX_SIG_RULES - 1))) else { return 1 };
    if !header_ok(r, &s.eval) {
        return 0;
    }
    let first = r.first_content as u32;
    s.eval.group_first = first;
    s.eval.rule_end = first + r.n_contents as u32;
    let Some(c) = content(s.eval.generation, first) else { return 1 };
    if !start_group(s, c) {
        return 0;
    }
    s.eval.prev_in[0] = 0;
    s.eval.from = NONE;
    s.eval.phase = FIND;
    0
}

/// Starts searching content `j` in its window.
#[inline(always)]
fn find(s: &mut SigScratch) -> i64 {
    if s.eval.searches == 0 {
        s.eval.phase = PICK;
        return 0;
    }
    s.eval.searches -= 1;
    if s.eval.work == 0 {
        s.eval.result = R_UNDECIDED;
        return 1;
    }
    s.eval.work -= 1;
    let j = s.eval.j;
    let Some(c) = content(s.eval.generation, s.eval.group_first + j) else { return 1 };
    let len = s.eval.buf_len as i64;
    let prev = s.eval.prev_in[(j as usize) & (SIG_MAX_RULE_CONTENTS - 1)] as i64;
    let bounded = c.flags & SIG_C_BOUNDED != 0;
    let (mut start, mut end) = if c.flags & SIG_C_RELATIVE != 0 {
        let base = prev + c.start as i64;
        let end = if bounded { base + c.span as i64 } else { len };
        (if base < 0 { 0 } else { base }, end)
    } else {
        let start = c.start as i64;
        (start, if bounded { start + c.span as i64 } else { len })
    };
    if end > len {
        end = len;
    }
    if start > len + 1 {
        start = len + 1;
    }
    if end < 0 {
        end = 0;
    }
    if s.eval.from != NONE {
        start = s.eval.from as i64;
    }
    let n = c.len as i64;
    if start > end || end - start < n || n == 0 {
        return searched(s, c, None);
    }
    let (first, last) = if c.flags & SIG_C_ENDSWITH != 0 {
        let p = len - n;
        if p < start || p + n > end {
            return searched(s, c, None);
        }
        (p, p)
    } else {
        (start, end - n)
    };
    s.eval.p = first as u32;
    s.eval.last = last as u32;
    s.eval.k = 0;
    s.eval.phase = COMPARE;
    0
}

/// Byte comparisons of the naive search: up to `COMPARES_PER_STEP` per
/// iteration, each one work unit (the budget is per comparison, however
/// they are grouped). Positions stay in the scratch map between
/// comparisons: the verifier does not track map memory, so the unrolled
/// comparisons do not multiply its states.
#[inline(always)]
fn compare(s: &mut SigScratch) -> i64 {
    let Some(c) = content(s.eval.generation, s.eval.group_first + s.eval.j) else { return 1 };
    let nocase = c.flags & SIG_C_NOCASE != 0;
    let len = c.len as u32;
    // 0: go on next iteration, 1: found at `p`, 2: not found, 3: budget spent.
    let mut outcome = 0u32;
    let mut n = 0;
    while n < COMPARES_PER_STEP {
        if get(&s.eval.work) == 0 {
            outcome = 3;
            break;
        }
        put(&mut s.eval.work, get(&s.eval.work) - 1);
        let (p, k) = (get(&s.eval.p), get(&s.eval.k));
        let a = s.view[((s.eval.buf_start + p + k) & VIEW_MASK) as usize];
        let b = c.bytes[(k & 0xff) as usize];
        let equal = if nocase { a.to_ascii_lowercase() == b.to_ascii_lowercase() } else { a == b };
        if equal {
            if k + 1 >= len {
                outcome = 1;
                break;
            }
            put(&mut s.eval.k, k + 1);
        } else {
            put(&mut s.eval.k, 0);
            if p >= s.eval.last {
                outcome = 2;
                break;
            }
            put(&mut s.eval.p, p + 1);
        }
        n += 1;
    }
    match outcome {
        1 => {
            let p = get(&s.eval.p);
            searched(s, c, Some(p))
        }
        2 => searched(s, c, None),
        3 => {
            s.eval.result = R_UNDECIDED;
            1
        }
        _ => 0,
    }
}
