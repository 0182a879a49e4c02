//! The reference domain stage: where a name is read from a DNS query, a
//! TLS ClientHello or an HTTP request, how it is matched against the
//! domain rules, and the in-kernel DNS answer — evaluated naively from the
//! rule set (label lists compared with patterns, no hashes), with the
//! same bounds as the XDP program (`filter-ebpf/src/l7.rs`), which must
//! agree on every packet.
//!
//! The stage keeps state across packets, as the kernel does: TCP
//! connections whose name was blocked, and ClientHellos that continue in
//! their next segment.
use std::collections::HashMap;

use crate::maps::l7;
use crate::names::{fold_case, MAX_LABEL_LEN, MAX_NAME_LABELS, MAX_NAME_LEN};
use crate::packet::{Addrs, IpPacket, IPPROTO_TCP, IPPROTO_UDP};
use crate::rules::ruleset::DomainAction;
use crate::rules::{DomainScope, RuleSet};

/// Bytes of a DNS question region loaded (a wire name is at most 255
/// bytes, then QTYPE and QCLASS).
pub const DNS_REGION: usize = 259;
/// Bytes of an HTTP request searched for the Host header.
pub const HTTP_SCAN_BYTES: usize = 1024;
/// TLS extension headers walked per segment.
pub const MAX_TLS_EXTENSIONS: usize = 32;

/// A TCP connection as the client sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub v6: bool,
}

/// A ClientHello whose extensions continue in the next segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub next_seq: u32,
    /// Offset of the next extension header in the next segment (-3..-1:
    /// it starts in `tail`).
    pub next_ext: i32,
    pub ext_end: i32,
    pub tail: [u8; 4],
}

/// What the kernel keeps between packets, and its operator counters.
#[derive(Clone, Debug, Default)]
pub struct NameState {
    pub blocked: HashMap<Flow, u32>,
    pub pending: HashMap<Flow, Pending>,
    /// `maps::l7` counters.
    pub stats: [u64; l7::LEN as usize],
}

/// The stage's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameOutcome {
    Continue,
    Drop,
    /// The frame to send back (an NXDOMAIN or REFUSED answer).
    Answer(Vec<u8>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    DnsUdp,
    DnsTcp,
    Tls,
    Http,
}

/// A name found in a packet, as labels.
struct Name {
    labels: Vec<Vec<u8>>,
}

impl NameState {
    fn stat(&mut self, index: u32) {
        self.stats[index as usize] += 1;
    }
}

fn be16(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 8) | u32::from(b[1])
}

/// Runs the domain stage on a parsed packet with a transport header.
/// `hits` receives every rule counter incremented.
pub fn domain_stage(rules: &RuleSet, state: &mut NameState, frame: &[u8], p: &IpPacket, hits: &mut Vec<u32>) -> (NameOutcome, u32) {
    let Some(l4) = p.l4 else { return (NameOutcome::Continue, 0) };
    let s = &rules.settings;
    let kind = if p.protocol == IPPROTO_UDP && s.dns_ports.contains(&l4.dst_port) {
        Kind::DnsUdp
    } else if p.protocol != IPPROTO_TCP {
        return (NameOutcome::Continue, 0);
    } else if s.dns_ports.contains(&l4.dst_port) {
        Kind::DnsTcp
    } else if s.tls_ports.contains(&l4.dst_port) {
        Kind::Tls
    } else if s.http_ports.contains(&l4.dst_port) {
        Kind::Http
    } else {
        return (NameOutcome::Continue, 0);
    };
    let (src, dst, v6) = match p.addrs {
        Addrs::V4 { src, dst } => {
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            a[..4].copy_from_slice(&src);
            b[..4].copy_from_slice(&dst);
            (a, b, false)
        }
        Addrs::V6 { src, dst } => (src, dst, true),
    };
    let flow = Flow { src, dst, src_port: l4.src_port, dst_port: l4.dst_port, v6 };
    if kind != Kind::DnsUdp {
        if let Some(&rule) = state.blocked.get(&flow) {
            state.stat(l7::FLOW_DROPS);
            hits.push(rule);
            return (NameOutcome::Drop, rule);
        }
    }
    if p.payload_end <= p.payload_off {
        return (NameOutcome::Continue, 0);
    }
    let payload = &frame[p.payload_off..p.payload_end];
    let msg_off = if kind == Kind::DnsTcp { 2 } else { 0 };
    if payload.len() < msg_off {
        return (NameOutcome::Continue, 0);
    }
    let found = match kind {
        Kind::DnsUdp | Kind::DnsTcp => dns_name(state, &payload[msg_off..]),
        Kind::Tls => tls_name(state, &flow, l4_seq(p), payload).map(|n| (n, 0)),
        Kind::Http => http_name(state, payload).map(|n| (n, 0)),
    };
    let Some((name, question_len)) = found else { return (NameOutcome::Continue, 0) };
    let (rule, action) = lookup(rules, &name, hits);
    let Some(action) = action else { return (NameOutcome::Continue, 0) };
    if action == DomainAction::Pass {
        return (NameOutcome::Continue, 0);
    }
    hits.push(rule);
    if kind == Kind::DnsUdp {
        if action != DomainAction::Drop {
            if let Some(answer) = dns_answer(frame, p, question_len, action) {
                state.stat(l7::DNS_ANSWERED);
                return (NameOutcome::Answer(answer), rule);
            }
        }
        return (NameOutcome::Drop, rule);
    }
    state.blocked.insert(flow, rule);
    (NameOutcome::Drop, rule)
}

fn l4_seq(p: &IpPacket) -> u32 {
    p.tcp_seq
}

/// Walks a name: text (labels separated by dots) or DNS wire format.
/// `None` (counted as a bad name) for an empty or over-long label, a
/// compression pointer, or a wire name that does not end within `end`.
/// Returns the labels and, for wire format, the bytes up to and including
/// the terminating zero.
fn walk_name(state: &mut NameState, buf: &[u8], wire: bool) -> Option<(Name, usize)> {
    let result = if wire { walk_wire(buf) } else { walk_text(buf) };
    if result.is_none() {
        state.stat(l7::BAD_NAMES);
    }
    result
}

fn walk_text(buf: &[u8]) -> Option<(Name, usize)> {
    let labels: Vec<Vec<u8>> = buf.split(|&b| b == b'.').map(|l| l.to_vec()).collect();
    if labels.iter().any(|l| l.is_empty() || l.len() > MAX_LABEL_LEN) {
        return None;
    }
    Some((Name { labels }, 0))
}

fn walk_wire(buf: &[u8]) -> Option<(Name, usize)> {
    // The terminating zero must be within the first 255 bytes.
    let end = buf.len().min(255);
    let mut labels = Vec::new();
    let mut i = 0;
    loop {
        if i >= end {
            return None;
        }
        let len = usize::from(buf[i]);
        if len == 0 {
            return (!labels.is_empty()).then_some((Name { labels }, i + 1));
        }
        if len > MAX_LABEL_LEN {
            return None;
        }
        if i + len >= end {
            // The label's bytes run past what may be read.
            return None;
        }
        labels.push(buf[i + 1..i + 1 + len].to_vec());
        i += 1 + len;
    }
}

/// The question of a DNS query (QR 0, opcode QUERY, at least one
/// question): its name and the length of the question with QTYPE/QCLASS.
fn dns_name(state: &mut NameState, msg: &[u8]) -> Option<(Name, usize)> {
    if msg.len() < 12 || msg[2] & 0xf8 != 0 || (msg[4] == 0 && msg[5] == 0) || msg.len() == 12 {
        state.stat(l7::DNS_UNPARSED);
        return None;
    }
    let avail = (msg.len() - 12).min(DNS_REGION);
    let region = &msg[12..12 + avail];
    let walked = walk_name(state, region, true);
    match walked {
        Some((name, wire_end)) if wire_end + 4 <= avail => {
            state.stat(l7::DNS_QUERIES);
            Some((name, 12 + wire_end + 4))
        }
        _ => {
            state.stat(l7::DNS_UNPARSED);
            None
        }
    }
}

fn tls_name(state: &mut NameState, flow: &Flow, seq: u32, payload: &[u8]) -> Option<Name> {
    if let Some(pending) = state.pending.remove(flow) {
        if pending.next_seq == seq {
            state.stat(l7::TLS_CONTINUED);
            return walk_extensions(state, flow, seq, payload, pending.next_ext, pending.ext_end, pending.tail, false);
        }
    }
    let len = payload.len();
    // Record header: handshake, TLS 1.x; handshake header: ClientHello.
    if len < 9 || payload[0] != 22 || payload[1] != 3 || payload[5] != 1 {
        return None;
    }
    let record_end = 5 + be16(&payload[3..5]) as usize;
    // legacy_version and random after the 4-byte handshake header; each
    // length is read as two bytes (more must follow anyway).
    let mut off = 9 + 2 + 32;
    let no_sni = |state: &mut NameState| {
        state.stat(l7::TLS_NO_SNI);
        None
    };
    if off + 2 > len {
        return no_sni(state);
    }
    off += 1 + usize::from(payload[off]);
    if off + 2 > len {
        return no_sni(state);
    }
    off += 2 + be16(&payload[off..]) as usize;
    if off + 2 > len {
        return no_sni(state);
    }
    off += 1 + usize::from(payload[off]);
    if off + 2 > len {
        return no_sni(state);
    }
    let ext_end = off + 2 + be16(&payload[off..]) as usize;
    off += 2;
    if ext_end > record_end {
        // The handshake continues in another record: not followed.
        return no_sni(state);
    }
    walk_extensions(state, flow, seq, payload, off as i32, ext_end as i32, [0; 4], true)
}

#[allow(clippy::too_many_arguments)]
fn walk_extensions(
    state: &mut NameState,
    flow: &Flow,
    seq: u32,
    payload: &[u8],
    start: i32,
    ext_end: i32,
    tail: [u8; 4],
    first_segment: bool,
) -> Option<Name> {
    let len = payload.len() as i32;
    let mut off = start;
    let (mut sni, mut sni_len, mut ech, mut cut) = (-1i32, 0usize, false, false);
    for _ in 0..MAX_TLS_EXTENSIONS {
        if off + 4 > ext_end {
            break;
        }
        if off + 4 > len {
            cut = true;
            break;
        }
        let hdr: [u8; 4] = if off >= 0 {
            payload[off as usize..off as usize + 4].try_into().unwrap()
        } else {
            // The header straddles the segment boundary (the kernel reads
            // four bytes of this segment to complete it).
            if len < 4 || off < -3 {
                break;
            }
            let k = (-off) as usize;
            let mut h = [0u8; 4];
            h[..k].copy_from_slice(&tail[4 - k..]);
            h[k..].copy_from_slice(&payload[..4 - k]);
            h
        };
        let ty = be16(&hdr[0..2]);
        let elen = be16(&hdr[2..4]);
        if ty == 0xfe0d {
            ech = true;
        }
        if ty == 0 && sni < 0 {
            sni = off + 4;
            sni_len = elen as usize;
        }
        off += 4 + elen as i32;
    }
    if ech {
        state.stat(l7::TLS_ECH);
    }
    let no_sni = |state: &mut NameState| {
        state.stat(l7::TLS_NO_SNI);
        None
    };
    if sni < 0 {
        if cut && first_segment {
            let keep = if payload.len() >= 4 { payload[payload.len() - 4..].try_into().unwrap() } else { [0; 4] };
            state.pending.insert(
                *flow,
                Pending { next_seq: seq.wrapping_add(payload.len() as u32), next_ext: off - len, ext_end: ext_end - len, tail: keep },
            );
            return None;
        }
        return no_sni(state);
    }
    // server_name_list length (2), name_type (1), host_name length (2).
    let data = sni as usize;
    if data + 5 > payload.len() || sni_len < 5 {
        return no_sni(state);
    }
    let sn = &payload[data..data + 5];
    let name_len = be16(&sn[3..5]) as usize;
    if sn[2] != 0 || name_len == 0 || name_len + 5 > sni_len {
        return no_sni(state);
    }
    if name_len > MAX_NAME_LEN {
        state.stat(l7::BAD_NAMES);
        return no_sni(state);
    }
    if data + 5 + name_len > payload.len() {
        // A name cut by the segment end is not followed.
        return no_sni(state);
    }
    state.stat(l7::TLS_SNI);
    walk_name(state, &payload[data + 5..data + 5 + name_len], false).map(|(n, _)| n)
}

/// The Host of an HTTP/1.x request starting this segment (first 1024
/// bytes; the header name case-insensitive, the value up to a blank, CR,
/// LF or `:`; one trailing dot dropped; IPv6 literals ignored).
fn http_name(state: &mut NameState, payload: &[u8]) -> Option<Name> {
    if payload.len() < 4 || !payload[..3].iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    let buf = &payload[..payload.len().min(HTTP_SCAN_BYTES)];
    let n = buf.len();
    let mut method = 3;
    while method < 8 && method < n && buf[method].is_ascii_uppercase() {
        method += 1;
    }
    if method > 7 || method >= n || buf[method] != b' ' {
        return None;
    }
    let no_host = |state: &mut NameState| {
        state.stat(l7::HTTP_NO_HOST);
        None
    };
    let mut start = None;
    let mut line_start = false;
    for i in 0..n {
        let b = buf[i];
        if line_start {
            if b == b'\r' || b == b'\n' {
                break;
            }
            if i + 5 <= n && b | 0x20 == b'h' && buf[i + 1] | 0x20 == b'o' && buf[i + 2] | 0x20 == b's' && buf[i + 3] | 0x20 == b't' && buf[i + 4] == b':' {
                start = Some(i + 5);
                break;
            }
        }
        line_start = b == b'\n';
    }
    let Some(mut start) = start else { return no_host(state) };
    let mut stop = None;
    for (i, &b) in buf.iter().enumerate().skip(start) {
        let blank = b == b' ' || b == b'\t';
        if start == i && blank {
            start = i + 1;
        } else if blank || b == b'\r' || b == b'\n' || b == b':' {
            stop = Some(i);
            break;
        }
    }
    let Some(mut stop) = stop else { return no_host(state) };
    if stop > start && buf[stop - 1] == b'.' {
        stop -= 1;
    }
    if stop <= start || buf[start] == b'[' {
        return no_host(state);
    }
    if stop - start > MAX_NAME_LEN {
        state.stat(l7::BAD_NAMES);
        return None;
    }
    state.stat(l7::HTTP_HOST);
    walk_name(state, &buf[start..stop], false).map(|(n, _)| n)
}

/// The most specific name level with an enforcing rule decides (`Pass`
/// beats the others on one name and scope, then the lowest rule id); the
/// most specific dry-run rule is counted whatever decides. Only the last
/// `MAX_NAME_LABELS` labels are looked at.
fn lookup(rules: &RuleSet, name: &Name, hits: &mut Vec<u32>) -> (u32, Option<DomainAction>) {
    let folded: Vec<Vec<u8>> = name.labels.iter().map(|l| l.iter().map(|&b| fold_case(b)).collect()).collect();
    let n = folded.len();
    let (mut best, mut dry) = ((0u32, None), 0u32);
    for k in 0..n.min(MAX_NAME_LABELS) {
        let suffix = &folded[n - 1 - k..];
        let whole = k == n - 1;
        let mut enforce: Option<(u32, DomainAction)> = None;
        let mut dry_here: Option<u32> = None;
        for r in &rules.domains {
            let applies = match r.pattern.scope {
                DomainScope::Exact => whole,
                DomainScope::Subdomains => !whole,
                DomainScope::ApexAndSubdomains => true,
            };
            if !applies || !labels_equal(&r.pattern.name, suffix) {
                continue;
            }
            if r.dry_run {
                dry_here = Some(dry_here.map_or(r.rule_id, |d: u32| d.min(r.rule_id)));
                continue;
            }
            let better = match enforce {
                None => true,
                Some((_, DomainAction::Pass)) => false,
                Some((id, _)) => r.action == DomainAction::Pass || r.rule_id < id,
            };
            if better {
                enforce = Some((r.rule_id, r.action));
            }
        }
        if let Some((id, action)) = enforce {
            best = (id, Some(action));
        }
        if let Some(d) = dry_here {
            dry = d;
        }
    }
    if dry != 0 {
        hits.push(dry);
    }
    best
}

fn labels_equal(pattern: &str, labels: &[Vec<u8>]) -> bool {
    let mut parts = pattern.split('.');
    for l in labels {
        match parts.next() {
            Some(p) if p.as_bytes() == l.as_slice() => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}

/// The answer the kernel sends back for a blocked query: the query frame
/// up to the end of its question, MACs, addresses and ports swapped, TTL
/// or hop limit 64, QR and RA set, RD kept, rcode 3 (NXDOMAIN) or 5
/// (REFUSED), one question and no records, checksums recomputed. `None`
/// (the query is dropped instead) with IPv4 options or IPv6 extension
/// headers.
pub fn dns_answer(frame: &[u8], p: &IpPacket, question_len: usize, action: DomainAction) -> Option<Vec<u8>> {
    let v6 = matches!(p.addrs, Addrs::V6 { .. });
    if p.l4_off != p.l3_off + if v6 { 40 } else { 20 } {
        return None;
    }
    let udp_len = 8 + question_len;
    let (mut out, pseudo) = super::reply::turn_around(frame, p, udp_len, IPPROTO_UDP, false);
    let u = p.l4_off;
    out[u + 4..u + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    out[u + 6..u + 8].copy_from_slice(&[0, 0]);
    let rcode = if action == DomainAction::Nxdomain { 3 } else { 5 };
    out[u + 10] = 0x80 | (out[u + 10] & 0x01);
    out[u + 11] = 0x80 | rcode;
    out[u + 12..u + 20].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    // UDP: a computed 0 is sent as 0xffff (0 means "no checksum").
    let mut c = super::reply::transport_checksum(pseudo, &out[u..]);
    if c == 0 {
        c = 0xffff;
    }
    out[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
    Some(out)
}
