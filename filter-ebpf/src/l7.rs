//! The domain stage: a name from a DNS question, a TLS ClientHello's
//! server_name or an HTTP/1.x Host header, looked up by label-boundary
//! suffix in `DOMAINS`. Mirrors `filter_common::reference`'s domain stage
//! step for step; the differential tests hold the two together.
//!
//! Names are copied into a per-CPU scratch buffer and walked there by
//! `bpf_loop` callbacks, so the verifier checks each walk once instead of
//! once per byte and path.
use aya_ebpf::{
    bindings::xdp_md,
    helpers::{
        bpf_loop,
        generated::{bpf_xdp_adjust_tail, bpf_xdp_load_bytes},
    },
    programs::XdpContext,
};
use filter_common::maps::*;
use filter_common::names::*;
use filter_common::proto::{IPPROTO_TCP, IPPROTO_UDP};

use crate::maps::*;
use crate::mem::{get, opaque, put, set};
use crate::parse::{bytes, bytes_mut, Ip};

/// Scratch buffer size: names (DNS region, SNI) and the HTTP scan window.
pub const SCRATCH_LEN: usize = 2048;
const SCRATCH_MASK: u32 = SCRATCH_LEN as u32 - 1;
/// Bytes of an HTTP request searched for the Host header.
pub const HTTP_SCAN_BYTES: u32 = 1024;
/// DNS: name region loaded (a wire name is at most 255 bytes) plus QTYPE
/// and QCLASS.
const DNS_REGION: u32 = 259;
/// TLS extensions walked per segment.
const MAX_TLS_EXTENSIONS: u32 = 32;

#[repr(C)]
pub struct Scratch {
    pub buf: [u8; SCRATCH_LEN],
    /// Hashes of the last `MAX_NAME_LABELS` labels (a ring).
    pub labels: [[u64; 2]; MAX_NAME_LABELS],
    /// The connection being looked at (kept here, not on the stack).
    pub flow: FlowKey,
    /// Loop states live here, not on the stack: the verifier tracks stack
    /// values exactly and would simulate every iteration of a walk; map
    /// memory is unknown to it, so each callback is verified once.
    walk: NameWalk,
    sum: SumWalk,
    host: HostScan,
    tls: TlsWalk,
    look: Lookup,
}

pub enum Outcome {
    /// No domain rule decides: go on to the L4 stage.
    Continue,
    Drop,
    /// A DNS answer was written in place: transmit it back.
    Tx,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    DnsUdp,
    DnsTcp,
    Tls,
    Http,
}

/// The per-CPU scratch, inside a `bpf_loop` callback (the only reference
/// to it while the callback runs; callers hold raw pointers, see `put`).
#[inline(always)]
fn callback_scratch() -> Option<&'static mut Scratch> {
    // SAFETY: per-CPU map value, used by this program invocation only.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
pub fn in_ports(ports: &[u16; MAX_L7_PORTS], port: u16) -> bool {
    port != 0 && (ports[0] == port || ports[1] == port || ports[2] == port || ports[3] == port)
}

#[inline(always)]
fn stat(index: u32) {
    if let Some(c) = L7_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot.
        unsafe { *c += 1 };
    }
}


/// Where the name was put in the scratch buffer: `[start, end)`, text or
/// DNS wire format; `end == 0`: no name. `avail`: bytes loaded (DNS).
#[derive(Clone, Copy)]
struct Region {
    start: u32,
    end: u32,
    wire: bool,
    avail: u32,
}

const NO_NAME: Region = Region { start: 0, end: 0, wire: false, avail: 0 };

/// What the name lookup found.
struct Verdict {
    rule: u32,
    action: u8,
}

/// The domain stage as a global BPF function: the verifier checks it once,
/// on its own, instead of once for every path of the caller that reaches
/// it (that multiplied the program's verification by a hundred).
/// Returns 0 (continue), 1 (drop) or 2 (transmit the answer written in
/// place).
#[no_mangle]
#[inline(never)]
pub extern "C" fn edgefilter_domain_stage(xdp: *mut xdp_md, meta: *const GenerationMeta, ip: *const Ip, len: u64) -> u32 {
    if xdp.is_null() || meta.is_null() || ip.is_null() {
        return 0;
    }
    let ctx = XdpContext::new(xdp);
    // SAFETY: the caller passes its own live values.
    let (meta, ip) = unsafe { (&*meta, &*ip) };
    match domain_stage(&ctx, meta, ip, len) {
        Outcome::Continue => 0,
        Outcome::Drop => 1,
        Outcome::Tx => 2,
    }
}

#[inline(always)]
fn domain_stage(ctx: &XdpContext, meta: &GenerationMeta, ip: &Ip, len: u64) -> Outcome {
    let kind = if ip.protocol == IPPROTO_UDP && in_ports(&meta.dns_ports, ip.dst_port) {
        Kind::DnsUdp
    } else if ip.protocol != IPPROTO_TCP {
        return Outcome::Continue;
    } else if in_ports(&meta.dns_ports, ip.dst_port) {
        Kind::DnsTcp
    } else if in_ports(&meta.tls_ports, ip.dst_port) {
        Kind::Tls
    } else if in_ports(&meta.http_ports, ip.dst_port) {
        Kind::Http
    } else {
        return Outcome::Continue;
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return Outcome::Continue };
    // SAFETY: per-CPU scratch; raw pointers only (see `put`).
    let flow = unsafe { core::ptr::addr_of_mut!((*scratch).flow) };
    if kind != Kind::DnsUdp {
        // Connections only: a DNS query over UDP needs no flow key.
        put(flow, FlowKey { src: ip.src, dst: ip.dst, src_port: ip.src_port, dst_port: ip.dst_port, v6: ip.v6 as u8, _pad: [0; 3] });
        // SAFETY: plain read of an LRU entry; `flow` is valid map memory.
        if let Some(b) = unsafe { BLOCKED_FLOWS.get(&*flow) } {
            stat(l7::FLOW_DROPS);
            crate::classify::hit(b.rule_id, len);
            return Outcome::Drop;
        }
    }
    if ip.payload_end <= ip.payload_off {
        return Outcome::Continue;
    }
    let payload_len = ip.payload_end - ip.payload_off;
    let dns = matches!(kind, Kind::DnsUdp | Kind::DnsTcp);
    // DNS over TCP: a 2-byte length, then the message (first segment only).
    let msg = if kind == Kind::DnsTcp { 2 } else { 0 };
    if payload_len < msg {
        return Outcome::Continue;
    }
    let region = match kind {
        Kind::DnsUdp | Kind::DnsTcp => dns_region(ctx, ip.payload_off + msg, payload_len - msg, scratch),
        Kind::Tls => tls_region(ctx, ip, payload_len, scratch),
        Kind::Http => http_region(ctx, ip.payload_off, payload_len, scratch),
    };
    if region.end == 0 {
        return Outcome::Continue;
    }
    // One walk and one lookup for every kind: the verifier checks each once
    // per path reaching it, so there is one place that reaches them.
    let mut wire_end = 0;
    let labels = walk_name(scratch, &meta.name_seeds, region.start, region.end, region.wire, &mut wire_end);
    let mut question_end = 0u32;
    if dns {
        // QTYPE and QCLASS must follow the name.
        if labels == 0 || wire_end + 4 > region.avail {
            stat(l7::DNS_UNPARSED);
            return Outcome::Continue;
        }
        question_end = 12 + wire_end + 4;
        stat(l7::DNS_QUERIES);
    }
    if labels == 0 {
        return Outcome::Continue;
    }
    let v = lookup(scratch, labels, meta, len);
    match v.action {
        DOMAIN_DROP | DOMAIN_NXDOMAIN | DOMAIN_REFUSED => {}
        _ => return Outcome::Continue,
    }
    crate::classify::hit(v.rule, len);
    if kind == Kind::DnsUdp {
        if v.action != DOMAIN_DROP && answer_dns(ctx, ip, scratch, question_end, v.action) {
            stat(l7::DNS_ANSWERED);
            return Outcome::Tx;
        }
        return Outcome::Drop;
    }
    // SAFETY: `flow` is valid map memory.
    let _ = BLOCKED_FLOWS.insert(unsafe { &*flow }, &BlockedFlow { rule_id: v.rule, _pad: 0 }, 0);
    Outcome::Drop
}

/// Suffix lookup state (in the scratch map, see `Scratch`).
#[repr(C)]
pub struct Lookup {
    suffix: [u64; 2],
    /// Suffixes done.
    k: u32,
    labels: u32,
    /// Suffixes of fewer labels than any rule are hashed, not looked up.
    min_labels: u32,
    /// Labels of the whole name (the suffix of that many is the name).
    whole: u32,
    rule: u32,
    dry: u32,
    action: u32,
}

/// `bpf_loop` callback: one `lookup_one`.
extern "C" fn lookup_step(_index: u64, _cb: *mut core::ffi::c_void) -> i64 {
    lookup_one()
}

/// One suffix per call, least specific first: the most specific entry that
/// says something wins; the most specific dry-run rule is kept too.
/// Returns 1 when no suffix is left.
#[inline(always)]
fn lookup_one() -> i64 {
    let Some(scratch) = callback_scratch() else { return 1 };
    let k = scratch.look.k;
    let labels = scratch.look.labels;
    // `labels` is already capped at the longest rule name (or the whole
    // name, which exact rules need).
    if k >= labels || k >= MAX_NAME_LABELS as u32 {
        return 1;
    }
    // Suffixes shorter than every rule name are only hashed, all in this
    // call; then one suffix is looked up.
    let whole = scratch.look.whole;
    let min = scratch.look.min_labels;
    let mut k = k;
    let mut suffix = scratch.look.suffix;
    for _ in 0..MAX_NAME_LABELS as u32 {
        suffix = suffix_extend(suffix, scratch.labels[((whole - 1 - k) as usize) & (MAX_NAME_LABELS - 1)]);
        if k + 1 >= min || k + 1 >= labels {
            break;
        }
        k += 1;
    }
    scratch.look.suffix = suffix;
    scratch.look.k = k + 1;
    if k + 1 < min {
        return 1;
    }
    // The last suffix stops the loop (no call just to find nothing left).
    let more = if k + 1 >= labels { 1 } else { 0 };
    // SAFETY: plain read of a hash map entry.
    let Some(e) = (unsafe { DOMAINS.get(&suffix[0]) }) else { return more };
    if e.check != suffix[1] {
        return more;
    }
    let whole = k + 1 == scratch.look.whole;
    let (rule, action, dry) = if whole { (e.exact_rule, e.exact_action, e.exact_dry_rule) } else { (e.sub_rule, e.sub_action, e.sub_dry_rule) };
    if action != DOMAIN_NONE {
        scratch.look.rule = rule;
        scratch.look.action = action as u32;
    }
    if dry != 0 {
        scratch.look.dry = dry;
    }
    more
}

#[inline(always)]
fn lookup(scratch: *mut Scratch, labels: u32, meta: &GenerationMeta, len: u64) -> Verdict {
    // SAFETY: a field of the scratch map value.
    let look = unsafe { core::ptr::addr_of_mut!((*scratch).look) };
    // Suffixes longer than every rule name cannot match: stop there.
    let max = meta.domain_max_labels as u32;
    let walk = if max != 0 && labels > max { max } else { labels };
    set!(look, suffix, suffix_root(&meta.name_seeds));
    set!(look, k, 0);
    set!(look, labels, walk);
    set!(look, min_labels, meta.domain_min_labels as u32);
    set!(look, whole, labels);
    set!(look, rule, 0);
    set!(look, dry, 0);
    set!(look, action, DOMAIN_NONE as u32);
    // The first suffix looked up inline: most names need no other (a
    // `bpf_loop` call and a callback cost more than the lookup's hashing).
    if lookup_one() == 0 {
        // SAFETY: the callback only touches the per-CPU scratch.
        unsafe {
            bpf_loop(MAX_NAME_LABELS as u32, lookup_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0);
        }
    }
    // SAFETY: fields of the scratch map value.
    let (dry, rule, action) = unsafe { (get(core::ptr::addr_of!((*look).dry)), get(core::ptr::addr_of!((*look).rule)), get(core::ptr::addr_of!((*look).action))) };
    if dry != 0 {
        crate::classify::hit(dry, len);
    }
    Verdict { rule, action: action as u8 }
}

// ---- Name walk (bpf_loop callback) ----

#[repr(C)]
pub struct NameWalk {
    seeds: [u64; 2],
    /// Next index in the scratch buffer.
    pos: u32,
    /// Text: end of the name. Wire: bytes loaded.
    end: u32,
    /// Labels finished.
    labels: u32,
    wire: u32,
    /// 0 running, 1 done, 2 bad name.
    status: u32,
    /// Wire: index just past the terminating zero.
    wire_end: u32,
}

const WIRE_LABELS_PER_CALL: u32 = 4;
const RUNNING: u32 = 0;
const DONE: u32 = 1;
const BAD: u32 = 2;

/// Walks `buf[pos..end)` (text) or a wire-format name from `pos`, hashing
/// every label; returns the number of labels (0 if the name is invalid).
#[inline(always)]
fn walk_name(scratch: *mut Scratch, seeds: &[u64; 2], pos: u32, end: u32, wire: bool, wire_end: &mut u32) -> u32 {
    // SAFETY: a field of the scratch map value.
    let walk = unsafe { core::ptr::addr_of_mut!((*scratch).walk) };
    set!(walk, seeds, *seeds);
    set!(walk, pos, pos);
    set!(walk, end, end);
    set!(walk, labels, 0);
    set!(walk, wire, wire as u32);
    set!(walk, status, RUNNING);
    set!(walk, wire_end, 0);
    // The first step inline (a wire name of up to four labels needs no
    // other): a callback costs about as much as hashing a label.
    if name_one() == 0 {
        // SAFETY: the callback only touches the per-CPU scratch.
        unsafe {
            bpf_loop(MAX_NAME_LEN as u32 / 2 + 2, name_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0);
        }
    }
    // SAFETY: fields of the scratch map value.
    let (status, end, labels) =
        unsafe { (get(core::ptr::addr_of!((*walk).status)), get(core::ptr::addr_of!((*walk).wire_end)), get(core::ptr::addr_of!((*walk).labels))) };
    if status != DONE {
        stat(l7::BAD_NAMES);
        return 0;
    }
    *wire_end = end;
    labels
}

/// `buf` comes first in `Scratch`, which is 8-byte aligned, and other
/// fields follow it: the aligned word after `buf`'s last is inside the map
/// value.
const _: () = assert!(core::mem::offset_of!(Scratch, buf) == 0 && core::mem::size_of::<Scratch>() >= SCRATCH_LEN + 8 && core::mem::align_of::<Scratch>() >= 8);

/// The hash state (before `label_end`) of the `len`-byte label at
/// `buf[start..]`, a word at a time (`names::label_word`). Names lie
/// within what was loaded into `buf`, never across its end; the index
/// mask only bounds the read for the verifier.
#[inline(always)]
fn hash_label(scratch: &Scratch, seeds: &NameHash, start: u32, len: u32) -> NameHash {
    let base = scratch as *const Scratch as *const u8;
    let mut h = label_start(seeds);
    for j in 0..(MAX_LABEL_LEN as u32).div_ceil(8) {
        let at = j * 8;
        if at >= len {
            break;
        }
        // Two aligned loads and a funnel shift: an unaligned load compiles
        // to eight byte loads on BPF.
        let i = (start + at) & SCRATCH_MASK;
        let (a, shift) = ((i & !7) as usize, u64::from(i & 7) * 8);
        // SAFETY: aligned words within the scratch map value (8-byte
        // aligned; see the assertion above for the one past `buf`).
        let (lo, hi) = unsafe { (core::ptr::read(base.add(a) as *const u64), core::ptr::read(base.add(a + 8) as *const u64)) };
        // `hi << (64 - shift)`, in two shifts so that a shift of 0 gives 0.
        let w = (lo >> shift) | ((hi << 1) << (63 - shift));
        h = label_word(h, keep_bytes(w, len - at));
    }
    h
}

#[inline(always)]
fn push_label(scratch: &mut Scratch, h: [u64; 2], len: u32) {
    let index = (scratch.walk.labels as usize) & (MAX_NAME_LABELS - 1);
    scratch.walk.labels += 1;
    scratch.labels[index] = label_end(h, len);
}

/// `bpf_loop` callback: one `name_one`.
extern "C" fn name_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    name_one()
}

/// One label per call (wire format: up to `WIRE_LABELS_PER_CALL`): the
/// words of a label are hashed by an inner loop whose only branches leave
/// it, so the verifier walks it linearly, and a name costs one call per
/// label (or few labels) rather than per byte. Returns 1 to stop.
#[inline(always)]
fn name_one() -> i64 {
    let Some(scratch) = callback_scratch() else { return 1 };
    if scratch.walk.status != RUNNING {
        return 1;
    }
    let pos = scratch.walk.pos;
    let end = scratch.walk.end;
    let seeds = scratch.walk.seeds;
    if scratch.walk.wire != 0 {
        // Up to `WIRE_LABELS_PER_CALL` labels per call (most names have no
        // more): a call and its return cost about as much as a label.
        for _ in 0..WIRE_LABELS_PER_CALL {
            // Read back from the map: the verifier then knows nothing of
            // it from the label before, and checks each label once rather
            // than once per length of the label before.
            let pos = crate::mem::get(core::ptr::addr_of!(scratch.walk.pos));
            if pos >= end {
                // A wire name must end (zero byte) within what was loaded.
                scratch.walk.status = BAD;
                return 1;
            }
            let len = scratch.buf[(pos & SCRATCH_MASK) as usize] as u32;
            if len == 0 {
                scratch.walk.status = if scratch.walk.labels == 0 { BAD } else { DONE };
                scratch.walk.wire_end = pos + 1;
                return 1;
            }
            // Longer labels, compression pointers (never valid in a query's
            // question), and labels running past what may be read.
            if len as usize > MAX_LABEL_LEN || pos + len >= end {
                scratch.walk.status = BAD;
                return 1;
            }
            let h = hash_label(scratch, &seeds, pos + 1, len);
            push_label(scratch, h, len);
            let next = pos + 1 + len;
            crate::mem::put(core::ptr::addr_of_mut!(scratch.walk.pos), next);
            // The terminating zero right after: done without another call.
            if next < end && scratch.buf[(next & SCRATCH_MASK) as usize] == 0 {
                scratch.walk.status = DONE;
                scratch.walk.wire_end = next + 1;
                return 1;
            }
        }
        return 0;
    }
    // Text: up to the next dot or the end.
    let mut n = 0u32;
    for j in 0..MAX_LABEL_LEN as u32 + 1 {
        let i = pos + j;
        if i >= end || scratch.buf[(i & SCRATCH_MASK) as usize] == b'.' {
            break;
        }
        n = j + 1;
    }
    if n == 0 || n > MAX_LABEL_LEN as u32 {
        // An empty label (leading, doubled or trailing dot) or a long one.
        scratch.walk.status = BAD;
        return 1;
    }
    let h = hash_label(scratch, &seeds, pos, n);
    push_label(scratch, h, n);
    if pos + n >= end {
        scratch.walk.status = DONE;
        return 1;
    }
    // Past the dot; a dot at the very end leaves an empty last label.
    scratch.walk.pos = pos + n + 1;
    0
}

// ---- DNS ----

/// Loads the question of a DNS query at payload offset `msg` (QR 0, opcode
/// QUERY, at least one question) into the scratch buffer.
#[inline(always)]
fn dns_region(ctx: &XdpContext, msg: u32, msg_len: u32, scratch: *mut Scratch) -> Region {
    if msg_len < 12 {
        stat(l7::DNS_UNPARSED);
        return NO_NAME;
    }
    let Some(h) = bytes::<12>(ctx, msg as usize) else {
        stat(l7::DNS_UNPARSED);
        return NO_NAME;
    };
    if h[2] & 0xf8 != 0 || (h[4] == 0 && h[5] == 0) || msg_len == 12 {
        stat(l7::DNS_UNPARSED);
        return NO_NAME;
    }
    let n = opaque((msg_len - 12).min(DNS_REGION));
    if n == 0 || n > DNS_REGION {
        return NO_NAME;
    }
    // SAFETY: 1..=259 bytes inside the frame; the buffer holds 2048.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, msg + 12, core::ptr::addr_of_mut!((*scratch).buf).cast(), ((opaque(n) - 1) & 0x1ff) + 1) };
    if rc != 0 {
        stat(l7::DNS_UNPARSED);
        return NO_NAME;
    }
    // The name (with its terminating zero) must end within 255 bytes.
    Region { start: 0, end: n.min(255), wire: true, avail: n }
}

#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

#[inline(always)]
fn sum16(b: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut i = 0;
    while i + 1 < b.len() {
        s += u16::from_be_bytes([b[i], b[i + 1]]) as u64;
        i += 2;
    }
    s
}

/// Checksum state of the name walk's bytes (bpf_loop callback).
#[repr(C)]
pub struct SumWalk {
    sum: u64,
    pos: u32,
    end: u32,
}

extern "C" fn sum_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(scratch) = callback_scratch() else { return 1 };
    let end = scratch.sum.end;
    let mut pos = scratch.sum.pos;
    let mut sum = scratch.sum.sum;
    for _ in 0..64 {
        if pos >= end {
            break;
        }
        let hi = scratch.buf[(pos & SCRATCH_MASK) as usize] as u64;
        // Past the end counts as zero (an odd length is padded).
        let lo = scratch.buf[((pos + 1) & SCRATCH_MASK) as usize] as u64 * (pos + 1 < end) as u64;
        sum += (hi << 8) | lo;
        pos += 2;
    }
    scratch.sum.sum = sum;
    scratch.sum.pos = pos;
    (pos >= end) as i64
}

/// Rewrites the query into an NXDOMAIN or REFUSED answer in place: swapped
/// MACs, addresses and ports, the question kept, everything after it cut.
/// Queries with IPv4 options or IPv6 extension headers are not answered
/// (the caller drops them).
#[inline(always)]
fn answer_dns(ctx: &XdpContext, ip: &Ip, scratch: *mut Scratch, question_end: u32, action: u8) -> bool {
    let l3 = ip.l3_off as usize;
    let l4 = ip.l4_off as usize;
    if l4 != l3 + if ip.v6 { 40 } else { 20 } || question_end > 12 + DNS_REGION {
        return false;
    }
    let dns_len = question_end;
    let udp_len = 8 + dns_len;
    let new_len = l4 as u32 + udp_len;
    let old_len = (ctx.data_end() - ctx.data()) as u32;
    if new_len > old_len {
        return false;
    }
    // Checksum of the question as loaded (the name walk left it intact).
    // SAFETY: a field of the scratch map value.
    let sum_state = unsafe { core::ptr::addr_of_mut!((*scratch).sum) };
    set!(sum_state, sum, 0);
    set!(sum_state, pos, 0);
    set!(sum_state, end, question_end - 12);
    // SAFETY: the callback only touches the per-CPU scratch.
    unsafe {
        bpf_loop(DNS_REGION / 128 + 2, sum_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0);
    }
    // SAFETY: a field of the scratch map value.
    let question_sum = get(unsafe { core::ptr::addr_of!((*sum_state).sum) });
    if new_len < old_len {
        // SAFETY: shrinking the frame; pointers are re-derived below.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx as *mut xdp_md, new_len as i32 - old_len as i32) } != 0 {
            return false;
        }
    }
    let Some(eth) = bytes_mut::<12>(ctx, 0) else { return false };
    let mac = *eth;
    eth[..6].copy_from_slice(&mac[6..12]);
    eth[6..].copy_from_slice(&mac[..6]);
    let rcode = if action == DOMAIN_NXDOMAIN { 3u8 } else { 5u8 };
    let mut pseudo = 0u64;
    if ip.v6 {
        let Some(h) = bytes_mut::<40>(ctx, l3) else { return false };
        h[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        h[7] = 64;
        h[8..24].copy_from_slice(&ip.dst);
        h[24..40].copy_from_slice(&ip.src);
        pseudo += sum16(&ip.src) + sum16(&ip.dst) + udp_len as u64 + IPPROTO_UDP as u64;
    } else {
        let Some(h) = bytes_mut::<20>(ctx, l3) else { return false };
        h[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        h[8] = 64;
        h[10] = 0;
        h[11] = 0;
        h[12..16].copy_from_slice(&ip.dst[..4]);
        h[16..20].copy_from_slice(&ip.src[..4]);
        let c = !fold(sum16(&h[..]));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        pseudo += sum16(&ip.src[..4]) + sum16(&ip.dst[..4]) + udp_len as u64 + IPPROTO_UDP as u64;
    }
    let Some(u) = bytes_mut::<20>(ctx, l4) else { return false };
    u[0..2].copy_from_slice(&ip.dst_port.to_be_bytes());
    u[2..4].copy_from_slice(&ip.src_port.to_be_bytes());
    u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    u[6] = 0;
    u[7] = 0;
    // DNS header: id kept; QR=1, opcode 0, RD kept; RA=1, rcode; one
    // question, no records.
    u[10] = 0x80 | (u[10] & 0x01);
    u[11] = 0x80 | rcode;
    u[12] = 0;
    u[13] = 1;
    u[14..20].copy_from_slice(&[0; 6]);
    let sum = pseudo + sum16(&u[..]) + question_sum;
    let mut c = !fold(sum);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    true
}

// ---- TLS ----

#[inline(always)]
fn be16_at(ctx: &XdpContext, off: u32) -> Option<u32> {
    let b = bytes::<2>(ctx, off as usize)?;
    Some(((b[0] as u32) << 8) | b[1] as u32)
}

/// The server_name of a ClientHello starting this segment, or continued
/// from the previous one. Returns the label count (0: no name here).
#[inline(always)]
fn tls_region(ctx: &XdpContext, ip: &Ip, payload_len: u32, scratch: *mut Scratch) -> Region {
    let p = ip.payload_off;
    // SAFETY: a field of the scratch map value.
    let flow = unsafe { &*core::ptr::addr_of!((*scratch).flow) };
    // SAFETY: plain read of an LRU entry.
    if let Some(pending) = unsafe { TLS_PENDING.get(flow) } {
        let pending = *pending;
        let _ = TLS_PENDING.remove(flow);
        if pending.next_seq == ip.tcp_seq {
            stat(l7::TLS_CONTINUED);
            return walk_extensions(ctx, ip, p, payload_len, pending.next_ext, pending.ext_end, &pending.tail, scratch, false);
        }
    }
    // Record header: handshake, TLS 1.x; handshake header: ClientHello.
    // Every read below stays within the payload (not the frame, which may
    // carry padding).
    if payload_len < 9 {
        return NO_NAME;
    }
    let Some(r) = bytes::<9>(ctx, p as usize) else { return NO_NAME };
    if r[0] != 22 || r[1] != 3 || r[5] != 1 {
        return NO_NAME;
    }
    let record_end = 5 + (((r[3] as u32) << 8) | r[4] as u32);
    // legacy_version (2) and random (32) after the 4-byte handshake header.
    let mut off = 9 + 2 + 32;
    // Two bytes read where one is needed: more must follow anyway, and a
    // one-byte read defeats the verifier's range tracking.
    if off + 2 > payload_len {
        return no_sni();
    }
    let Some(sid) = bytes::<2>(ctx, (p + off) as usize) else { return no_sni() };
    off += 1 + sid[0] as u32;
    if off + 2 > payload_len {
        return no_sni();
    }
    let Some(cs) = be16_at(ctx, p + off) else { return no_sni() };
    off += 2 + cs;
    if off + 2 > payload_len {
        return no_sni();
    }
    let Some(comp) = bytes::<2>(ctx, (p + off) as usize) else { return no_sni() };
    off += 1 + comp[0] as u32;
    if off + 2 > payload_len {
        return no_sni();
    }
    let Some(ext_len) = be16_at(ctx, p + off) else { return no_sni() };
    off += 2;
    let ext_end = off + ext_len;
    if ext_end > record_end {
        // Handshake continued in another record: not followed.
        return no_sni();
    }
    walk_extensions(ctx, ip, p, payload_len, off as i32, ext_end as i32, &[0; 4], scratch, true)
}

#[inline(always)]
fn no_sni() -> Region {
    stat(l7::TLS_NO_SNI);
    NO_NAME
}

/// Extension walk state (in the scratch map, see `Scratch`).
#[repr(C)]
pub struct TlsWalk {
    p: u32,
    payload_len: u32,
    off: i32,
    ext_end: i32,
    /// Offset of the first server_name extension's data (-1: none).
    sni: i32,
    sni_len: u32,
    ech: u32,
    /// 1: the walk reached the end of the segment before `ext_end`.
    cut: u32,
    tail: [u8; 4],
    hdr: [u8; 4],
}

/// What the extension walk found.
struct TlsResult {
    off: i32,
    ext_end: i32,
    sni: i32,
    sni_len: u32,
    ech: u32,
    cut: u32,
}

/// What a `bpf_loop` callback needs from the caller's stack: the context
/// (for `bpf_xdp_load_bytes`).
#[repr(C)]
struct CtxRef {
    xdp: *mut xdp_md,
}

/// One extension header per call. Returns 1 to stop.
extern "C" fn ext_step(_index: u64, cb: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `cb` is the caller's `CtxRef`.
    let xdp = unsafe { (*(cb as *const CtxRef)).xdp };
    let Some(scratch) = callback_scratch() else { return 1 };
    let t = &mut scratch.tls;
    let off = t.off;
    if off + 4 > t.ext_end {
        return 1;
    }
    if off + 4 > t.payload_len as i32 {
        t.cut = 1;
        return 1;
    }
    if off >= 0 {
        // SAFETY: 4 bytes into the scratch map value.
        if unsafe { bpf_xdp_load_bytes(xdp, t.p + off as u32, t.hdr.as_mut_ptr().cast(), 4) } != 0 {
            return 1;
        }
    } else {
        // -1..-3: the header straddles the segment boundary.
        if t.payload_len < 4 {
            return 1;
        }
        let mut head = [0u8; 4];
        // SAFETY: 4 bytes onto the stack.
        if unsafe { bpf_xdp_load_bytes(xdp, t.p, head.as_mut_ptr().cast(), 4) } != 0 {
            return 1;
        }
        let tail = t.tail;
        t.hdr = match off {
            -1 => [tail[3], head[0], head[1], head[2]],
            -2 => [tail[2], tail[3], head[0], head[1]],
            -3 => [tail[1], tail[2], tail[3], head[0]],
            _ => return 1,
        };
    }
    let ty = ((t.hdr[0] as u32) << 8) | t.hdr[1] as u32;
    let len = ((t.hdr[2] as u32) << 8) | t.hdr[3] as u32;
    if ty == 0xfe0d {
        t.ech = 1;
    }
    if ty == 0 && t.sni < 0 {
        t.sni = off + 4;
        t.sni_len = len;
    }
    t.off = off + 4 + len as i32;
    0
}

/// Walks extensions from payload offset `start` (negative: the header
/// starts in `tail`, the previous segment's last bytes) up to `ext_end`,
/// then reads the first server_name. A ClientHello cut by the end of its
/// first segment is remembered in `TLS_PENDING` and continued in the next.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn walk_extensions(
    ctx: &XdpContext,
    ip: &Ip,
    p: u32,
    payload_len: u32,
    start: i32,
    ext_end: i32,
    tail: &[u8; 4],
    scratch: *mut Scratch,
    first_segment: bool,
) -> Region {
    // SAFETY: a field of the scratch map value.
    let tls = unsafe { core::ptr::addr_of_mut!((*scratch).tls) };
    set!(tls, p, p);
    set!(tls, payload_len, payload_len);
    set!(tls, off, start);
    set!(tls, ext_end, ext_end);
    set!(tls, sni, -1);
    set!(tls, sni_len, 0);
    set!(tls, ech, 0);
    set!(tls, cut, 0);
    set!(tls, tail, *tail);
    let mut cb = CtxRef { xdp: ctx.ctx };
    // SAFETY: the callback reads `cb` and touches the per-CPU scratch.
    unsafe {
        bpf_loop(MAX_TLS_EXTENSIONS, ext_step as *mut core::ffi::c_void, &mut cb as *mut CtxRef as *mut core::ffi::c_void, 0);
    }
    // SAFETY: fields of the scratch map value.
    let t = unsafe {
        TlsResult {
            off: get(core::ptr::addr_of!((*tls).off)),
            ext_end: get(core::ptr::addr_of!((*tls).ext_end)),
            sni: get(core::ptr::addr_of!((*tls).sni)),
            sni_len: get(core::ptr::addr_of!((*tls).sni_len)),
            ech: get(core::ptr::addr_of!((*tls).ech)),
            cut: get(core::ptr::addr_of!((*tls).cut)),
        }
    };
    if t.ech != 0 {
        stat(l7::TLS_ECH);
    }
    if t.sni < 0 {
        if t.cut != 0 && first_segment {
            // The rest is in the next segment: remember where.
            let mut keep = [0u8; 4];
            if payload_len >= 4 {
                if let Some(k) = bytes::<4>(ctx, (p + payload_len - 4) as usize) {
                    keep = *k;
                }
            }
            let pending = TlsPending {
                next_seq: ip.tcp_seq.wrapping_add(payload_len),
                next_ext: t.off - payload_len as i32,
                ext_end: t.ext_end - payload_len as i32,
                tail: keep,
            };
            // SAFETY: a field of the scratch map value.
            let _ = TLS_PENDING.insert(unsafe { &*core::ptr::addr_of!((*scratch).flow) }, &pending, 0);
            return NO_NAME;
        }
        return no_sni();
    }
    // server_name_list length (2), name_type (1), host_name length (2).
    let data = t.sni;
    let len = t.sni_len;
    if data < 0 || data as u32 + 5 > payload_len || len < 5 {
        return no_sni();
    }
    let Some(sn) = bytes::<5>(ctx, (p + data as u32) as usize) else { return no_sni() };
    let name_len = ((sn[3] as u32) << 8) | sn[4] as u32;
    if sn[2] != 0 || name_len == 0 || name_len + 5 > len {
        return no_sni();
    }
    if name_len as usize > MAX_NAME_LEN {
        stat(l7::BAD_NAMES);
        return no_sni();
    }
    // A name cut by the segment end is not followed.
    if data as u32 + 5 + name_len > payload_len {
        return no_sni();
    }
    let n = opaque(name_len);
    if n == 0 || n > MAX_NAME_LEN as u32 {
        return no_sni();
    }
    // SAFETY: 1..=256 bytes inside the frame; the buffer holds 2048.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, p + data as u32 + 5, core::ptr::addr_of_mut!((*scratch).buf).cast(), ((opaque(n) - 1) & 0xff) + 1) };
    if rc != 0 {
        return no_sni();
    }
    stat(l7::TLS_SNI);
    Region { start: 0, end: name_len, wire: false, avail: name_len }
}

// ---- HTTP ----

#[repr(C)]
pub struct HostScan {
    pos: u32,
    end: u32,
    /// 1 at the start of a header line.
    line_start: u32,
    /// Found: [start, stop) of the Host value; status 1 found, 2 none.
    start: u32,
    stop: u32,
    status: u32,
}

#[inline(always)]
fn at(scratch: *const Scratch, i: u32) -> u8 {
    // SAFETY: a masked index into the scratch map value's buffer.
    unsafe { (*scratch).buf[(i & SCRATCH_MASK) as usize] }
}

/// Finds `Host:` at the start of a header line (case-insensitive name).
extern "C" fn host_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(scratch) = callback_scratch() else { return 1 };
    let end = scratch.host.end;
    let mut pos = scratch.host.pos;
    if pos >= end {
        scratch.host.status = 2;
        return 1;
    }
    if scratch.host.line_start != 0 {
        let b = at(scratch, pos);
        if b == b'\r' || b == b'\n' {
            // End of the header block.
            scratch.host.status = 2;
            return 1;
        }
        if pos + 5 <= end
            && b | 0x20 == b'h'
            && at(scratch, pos + 1) | 0x20 == b'o'
            && at(scratch, pos + 2) | 0x20 == b's'
            && at(scratch, pos + 3) | 0x20 == b't'
            && at(scratch, pos + 4) == b':'
        {
            scratch.host.start = pos + 5;
            scratch.host.status = 1;
            return 1;
        }
    }
    // To the start of the next line, up to 128 bytes a call.
    for _ in 0..128 {
        if pos >= end {
            scratch.host.status = 2;
            return 1;
        }
        let b = at(scratch, pos);
        pos += 1;
        if b == b'\n' {
            scratch.host.pos = pos;
            scratch.host.line_start = 1;
            return 0;
        }
    }
    scratch.host.pos = pos;
    scratch.host.line_start = 0;
    0
}

/// Trims the Host value: leading blanks, then up to CR, LF, blank or ':'.
extern "C" fn value_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(scratch) = callback_scratch() else { return 1 };
    let end = scratch.host.end;
    let mut pos = scratch.host.pos;
    let mut start = scratch.host.start;
    for _ in 0..64 {
        if pos >= end {
            // Cut by the end of the scanned bytes: not a whole name.
            scratch.host.status = 2;
            return 1;
        }
        let b = at(scratch, pos);
        let blank = b == b' ' || b == b'\t';
        if start == pos && blank {
            start = pos + 1;
        } else if blank || b == b'\r' || b == b'\n' || b == b':' {
            scratch.host.start = start;
            scratch.host.stop = pos;
            return 1;
        }
        pos += 1;
    }
    scratch.host.pos = pos;
    scratch.host.start = start;
    0
}

/// The Host of an HTTP/1.x request starting this segment.
#[inline(always)]
fn http_region(ctx: &XdpContext, p: u32, payload_len: u32, scratch: *mut Scratch) -> Region {
    // A request line starts with an upper-case method (3 to 7 letters) and
    // a space.
    if payload_len < 4 {
        return NO_NAME;
    }
    let Some(m) = bytes::<3>(ctx, p as usize) else { return NO_NAME };
    if !(m[0].is_ascii_uppercase() && m[1].is_ascii_uppercase() && m[2].is_ascii_uppercase()) {
        return NO_NAME;
    }
    let n = opaque(payload_len.min(HTTP_SCAN_BYTES) & 0x7ff);
    if n < 4 || n > HTTP_SCAN_BYTES {
        return NO_NAME;
    }
    // SAFETY: 4..=1024 bytes inside the frame; the buffer holds 2048.
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, p, core::ptr::addr_of_mut!((*scratch).buf).cast(), ((opaque(n) - 1) & 0x3ff) + 1) } != 0 {
        return NO_NAME;
    }
    let mut method = 3u32;
    while method < 8 && method < n && at(scratch, method).is_ascii_uppercase() {
        method += 1;
    }
    if method > 7 || method >= n || at(scratch, method) != b' ' {
        return NO_NAME;
    }
    // Header lines start after the request line's LF.
    // SAFETY: a field of the scratch map value.
    let host = unsafe { core::ptr::addr_of_mut!((*scratch).host) };
    set!(host, pos, 0);
    set!(host, end, n);
    set!(host, line_start, 0);
    set!(host, start, 0);
    set!(host, stop, 0);
    set!(host, status, 0);
    // SAFETY: the callbacks only touch the per-CPU scratch.
    unsafe {
        bpf_loop(HTTP_SCAN_BYTES + 1, host_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0);
    }
    // SAFETY: fields of the scratch map value.
    let (status, found) = unsafe { (get(core::ptr::addr_of!((*host).status)), get(core::ptr::addr_of!((*host).start))) };
    if status != 1 {
        stat(l7::HTTP_NO_HOST);
        return NO_NAME;
    }
    set!(host, pos, found);
    set!(host, start, found);
    set!(host, stop, found);
    set!(host, status, 0);
    // SAFETY: as above.
    unsafe {
        bpf_loop(HTTP_SCAN_BYTES + 1, value_step as *mut core::ffi::c_void, core::ptr::null_mut(), 0);
    }
    // SAFETY: fields of the scratch map value.
    let (status, start, mut stop) =
        unsafe { (get(core::ptr::addr_of!((*host).status)), get(core::ptr::addr_of!((*host).start)), get(core::ptr::addr_of!((*host).stop))) };
    if status == 2 {
        stat(l7::HTTP_NO_HOST);
        return NO_NAME;
    }
    // One trailing dot is the same name.
    if stop > start && at(scratch, stop - 1) == b'.' {
        stop -= 1;
    }
    if stop <= start || at(scratch, start) == b'[' {
        stat(l7::HTTP_NO_HOST);
        return NO_NAME;
    }
    if stop - start > MAX_NAME_LEN as u32 {
        stat(l7::BAD_NAMES);
        return NO_NAME;
    }
    stat(l7::HTTP_HOST);
    Region { start, end: stop, wire: false, avail: stop }
}
