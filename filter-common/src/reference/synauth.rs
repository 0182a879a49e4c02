//! SYN authentication (`syn_auth = true` L4 rules), as
//! `filter-ebpf/src/synauth.rs` does it.
//!
//! A router cannot finish a handshake for the host behind it, so the
//! kernel proves a source is real the way scrubbing centres do: a SYN
//! from a source not yet verified is answered with a SYN-ACK whose
//! sequence number is a SYN cookie (the kernel's own, from
//! `bpf_tcp_raw_gen_syncookie_ipv4/6`); a source that answers with the
//! matching ACK is real (a spoofed one never sees the cookie), is
//! remembered in `SYN_VERIFIED` for `syn_auth_seconds`, and its ACK is
//! answered with a reset so the client connects again, and this time its
//! SYN goes through. No state is kept per SYN, so a spoofed flood costs
//! one answer per packet and no memory.
//!
//! The cookie is keyed by a secret of the running kernel, so the model
//! cannot compute it: the tests register each cookie the program sent
//! ([`SynAuthState::cookies`]), and an ACK is a valid cookie ACK here when
//! it acknowledges a registered cookie for its connection. (The kernel
//! also accepts a few neighbours of a cookie: its low bits carry the MSS
//! index. A client acknowledges the number it was sent; the tests do too.)
use std::collections::HashMap;

use crate::maps::VerifiedKey;
use crate::packet::{Addrs, Fragment, IpPacket};
use crate::proto::IPPROTO_TCP;
use crate::rules::L4Slot;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What a cookie was issued for: source, destination, ports and the
/// client's initial sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CookieKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub isn: u32,
}

#[derive(Clone, Debug, Default)]
pub struct SynAuthState {
    /// Verified sources and when they were verified (ns), as `SYN_VERIFIED`.
    pub verified: HashMap<VerifiedKey, u64>,
    /// Cookies the kernel sent (registered by the tests).
    pub cookies: HashMap<CookieKey, u32>,
}

/// What a matching `syn_auth` rule does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not for this rule (verified source, another segment, a fragment):
    /// the next rules decide.
    Continue,
    /// A SYN from an unverified source: answer it with a cookie.
    Challenge,
    /// An ACK from an unverified source: check it as a cookie ACK.
    CheckAck,
}

fn addrs(p: &IpPacket) -> ([u8; 16], [u8; 16], bool) {
    match p.addrs {
        Addrs::V4 { src, dst } => {
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            a[..4].copy_from_slice(&src);
            b[..4].copy_from_slice(&dst);
            (a, b, false)
        }
        Addrs::V6 { src, dst } => (src, dst, true),
    }
}

/// The `SYN_VERIFIED` key of the packet's source.
pub fn verified_key(p: &IpPacket) -> VerifiedKey {
    let (src, _, v6) = addrs(p);
    VerifiedKey { addr: src, v6: v6 as u32, _pad: 0 }
}

/// The step for a packet that matched `slot` (a `syn_auth` rule) at `now`.
pub fn step(slot: &L4Slot, p: &IpPacket, state: &SynAuthState, now: u64, ttl_ns: u64) -> Step {
    let Some(l4) = p.l4 else { return Step::Continue };
    if p.protocol != IPPROTO_TCP || p.fragment != Fragment::None {
        return Step::Continue;
    }
    let flags = l4.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST);
    let want = match flags {
        TCP_SYN => Step::Challenge,
        TCP_ACK if !slot.dry_run => Step::CheckAck,
        _ => return Step::Continue,
    };
    if state.verified.get(&verified_key(p)).is_some_and(|&at| now.wrapping_sub(at) < ttl_ns) {
        return Step::Continue;
    }
    want
}

/// The headers can be rewritten into an answer: no IPv4 options, no IPv6
/// extension headers.
pub fn answerable(p: &IpPacket) -> bool {
    let ip_len = if matches!(p.addrs, Addrs::V6 { .. }) { 40 } else { 20 };
    p.l4_off == p.l3_off + ip_len
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The cookie key of a SYN (its own ISN) or of an ACK (sequence - 1).
pub fn cookie_key(frame: &[u8], p: &IpPacket, ack: bool) -> CookieKey {
    let (src, dst, _) = addrs(p);
    let l4 = p.l4.expect("TCP header");
    let seq = be32(&frame[p.l4_off + 4..]);
    CookieKey { src, dst, src_port: l4.src_port, dst_port: l4.dst_port, isn: if ack { seq.wrapping_sub(1) } else { seq } }
}

/// Whether an ACK acknowledges a cookie sent for its connection.
pub fn valid_cookie_ack(frame: &[u8], p: &IpPacket, state: &SynAuthState) -> bool {
    let ack = be32(&frame[p.l4_off + 8..]);
    state.cookies.get(&cookie_key(frame, p, true)).is_some_and(|&cookie| cookie == ack.wrapping_sub(1))
}

/// The SYN-ACK answering `frame` (a SYN) with `cookie`.
pub fn syn_ack(frame: &[u8], p: &IpPacket, cookie: u32) -> Vec<u8> {
    let seq = be32(&frame[p.l4_off + 4..]);
    answer(frame, p, cookie, seq.wrapping_add(1), TCP_SYN | TCP_ACK, 65535)
}

/// The reset answering `frame` (a valid cookie ACK).
pub fn reset(frame: &[u8], p: &IpPacket) -> Vec<u8> {
    let ack = be32(&frame[p.l4_off + 8..]);
    answer(frame, p, ack, 0, TCP_RST, 0)
}

/// `frame` turned around (`reply::turn_around`, a fresh IP header) with a
/// 20-byte TCP header without options or payload, checksums computed.
fn answer(frame: &[u8], p: &IpPacket, seq: u32, ack: u32, flags: u8, window: u16) -> Vec<u8> {
    let (mut out, pseudo) = super::reply::turn_around(frame, p, 20, IPPROTO_TCP, true);
    let tcp = &mut out[p.l4_off..p.l4_off + 20];
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    tcp[16..20].copy_from_slice(&[0, 0, 0, 0]);
    let sum = super::reply::transport_checksum(pseudo, tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    out
}
