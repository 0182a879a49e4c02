//! Header parsing with a bounds check before every read. Mirrors
//! `filter_common::packet` step for step; comments there explain the rules.
use aya_ebpf::programs::XdpContext;
use filter_common::maps::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS};

use filter_common::proto::*;

pub const FRAG_NONE: u8 = 0;
pub const FRAG_FIRST: u8 = 1;
pub const FRAG_NON_FIRST: u8 = 2;

/// Largest offset any header can start at: 14 + 8 (VLAN) + 40 + six
/// extension headers of at most 2048 bytes. Keeps offsets bounded for the
/// verifier.
const MAX_OFFSET: usize = 16_384;

pub enum Frame {
    MalformedL2,
    Arp,
    NonIp,
    MalformedL3,
    Ip,
}

/// What classification needs from an IP packet. Addresses are copied out
/// of the packet; IPv4 uses the first four bytes.
// Wide fields first and 8-byte alignment: zeroing it is a few 8-byte
// stores, not calls to a byte-by-byte `memset`.
#[repr(C, align(8))]
pub struct Ip {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Offset of the IP header (after Ethernet and VLAN tags).
    pub l3_off: u32,
    /// Offset and end of the transport header's payload (valid with `has_l4`
    /// for TCP and UDP).
    pub l4_off: u32,
    pub payload_off: u32,
    pub payload_end: u32,
    pub tcp_seq: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub v6: bool,
    pub hop_limit: u8,
    pub protocol: u8,
    pub fragment: u8,
    pub has_l4: bool,
    pub upper_malformed: bool,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

// Addresses are copied a word at a time (`crate::mem::copy_addr`).
const _: () = assert!(core::mem::offset_of!(Ip, src) % 8 == 0 && core::mem::offset_of!(Ip, dst) % 8 == 0);

/// `N` bytes at `off`, or `None` if the frame is shorter.
#[inline(always)]
pub fn bytes<const N: usize>(ctx: &XdpContext, off: usize) -> Option<&[u8; N]> {
    if off > MAX_OFFSET {
        return None;
    }
    let start = ctx.data();
    if start + off + N > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds checked against data_end just above.
    Some(unsafe { &*((start + off) as *const [u8; N]) })
}

/// Writable `N` bytes at `off`, or `None` if the frame is shorter.
#[inline(always)]
pub fn bytes_mut<const N: usize>(ctx: &XdpContext, off: usize) -> Option<&mut [u8; N]> {
    if off > MAX_OFFSET {
        return None;
    }
    let start = ctx.data();
    if start + off + N > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds checked against data_end just above; XDP frames are
    // writable and nothing else refers to these bytes.
    Some(unsafe { &mut *((start + off) as *mut [u8; N]) })
}

#[inline(always)]
pub fn be16(hi: u8, lo: u8) -> u16 {
    ((hi as u16) << 8) | lo as u16
}

#[inline(always)]
fn fragment_kind(offset: u16, more: bool) -> u8 {
    if offset != 0 {
        FRAG_NON_FIRST
    } else if more {
        FRAG_FIRST
    } else {
        FRAG_NONE
    }
}

#[inline(always)]
pub fn parse(ctx: &XdpContext, ip: &mut Ip) -> Frame {
    let Some(eth) = bytes::<14>(ctx, 0) else { return Frame::MalformedL2 };
    let mut ether_type = be16(eth[12], eth[13]);
    let mut off = 14usize;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let Some(tag) = bytes::<4>(ctx, off) else { return Frame::MalformedL2 };
        ether_type = be16(tag[2], tag[3]);
        off += 4;
    }
    match ether_type {
        ETH_P_8021Q | ETH_P_8021AD => Frame::MalformedL2,
        ETH_P_ARP => Frame::Arp,
        ETH_P_IPV4 => {
            ip.l3_off = off as u32;
            parse_ipv4(ctx, off, ip)
        }
        ETH_P_IPV6 => {
            ip.l3_off = off as u32;
            parse_ipv6(ctx, off, ip)
        }
        _ => Frame::NonIp,
    }
}

#[inline(always)]
fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize, ip: &mut Ip) -> Frame {
    let Some(h) = bytes::<20>(ctx, off) else { return Frame::MalformedL3 };
    if h[0] >> 4 != 4 {
        return Frame::MalformedL3;
    }
    let header_len = ((h[0] & 0x0f) as usize) * 4;
    let total_len = be16(h[2], h[3]) as usize;
    let available = frame_len(ctx) - off;
    if header_len < 20 || header_len > available || total_len < header_len || total_len > available {
        return Frame::MalformedL3;
    }
    let frag = be16(h[6], h[7]);
    ip.fragment = fragment_kind(frag & 0x1fff, frag & 0x2000 != 0);
    ip.hop_limit = h[8];
    ip.protocol = h[9];
    ip.src[..4].copy_from_slice(&h[12..16]);
    ip.dst[..4].copy_from_slice(&h[16..20]);
    if ip.fragment != FRAG_NON_FIRST {
        parse_l4(ctx, off + header_len, off + total_len, false, ip);
    }
    Frame::Ip
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize, ip: &mut Ip) -> Frame {
    let Some(h) = bytes::<40>(ctx, off) else { return Frame::MalformedL3 };
    if h[0] >> 4 != 6 {
        return Frame::MalformedL3;
    }
    let end = off + 40 + be16(h[4], h[5]) as usize;
    if end > frame_len(ctx) {
        return Frame::MalformedL3;
    }
    ip.v6 = true;
    ip.protocol = h[6];
    ip.hop_limit = h[7];
    ip.src.copy_from_slice(&h[8..24]);
    ip.dst.copy_from_slice(&h[24..40]);

    let mut cur = off + 40;
    let mut walked = 0usize;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match ip.protocol {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some(x) = bytes::<2>(ctx, cur) else { return upper_malformed(ip) };
                let len = (x[1] as usize + 1) * 8;
                if cur + len > end {
                    return upper_malformed(ip);
                }
                ip.protocol = x[0];
                len
            }
            IPPROTO_AH => {
                let Some(x) = bytes::<2>(ctx, cur) else { return upper_malformed(ip) };
                let len = (x[1] as usize + 2) * 4;
                if x[1] == 0 || cur + 12 > end || cur + len > end {
                    return upper_malformed(ip);
                }
                ip.protocol = x[0];
                len
            }
            IPPROTO_FRAGMENT => {
                let Some(x) = bytes::<4>(ctx, cur) else { return upper_malformed(ip) };
                if cur + 8 > end {
                    return upper_malformed(ip);
                }
                ip.protocol = x[0];
                let kind = fragment_kind(be16(x[2], x[3]) >> 3, x[3] & 1 != 0);
                if kind != FRAG_NONE {
                    ip.fragment = kind;
                }
                8
            }
            _ => break,
        };
        cur += len;
        walked += 1;
        if ip.fragment == FRAG_NON_FIRST {
            return Frame::Ip;
        }
    }
    if walked == MAX_IPV6_EXT_HEADERS && is_ipv6_ext(ip.protocol) {
        return upper_malformed(ip);
    }
    parse_l4(ctx, cur, end, true, ip);
    Frame::Ip
}

#[inline(always)]
fn upper_malformed(ip: &mut Ip) -> Frame {
    ip.upper_malformed = true;
    Frame::Ip
}

/// Transport header in `[off, end)`; `end` never exceeds the frame.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, off: usize, end: usize, v6: bool, ip: &mut Ip) {
    let region = end - off;
    match ip.protocol {
        IPPROTO_TCP => {
            let Some(t) = bytes::<20>(ctx, off) else { ip.upper_malformed = true; return };
            let header_len = ((t[12] >> 4) as usize) * 4;
            if region < 20 || header_len < 20 || header_len > region {
                ip.upper_malformed = true;
                return;
            }
            ip.src_port = be16(t[0], t[1]);
            ip.dst_port = be16(t[2], t[3]);
            ip.tcp_flags = t[13];
            ip.tcp_seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            ip.payload_off = (off + header_len) as u32;
        }
        IPPROTO_UDP => {
            let Some(u) = bytes::<8>(ctx, off) else { ip.upper_malformed = true; return };
            if region < 8 {
                ip.upper_malformed = true;
                return;
            }
            ip.src_port = be16(u[0], u[1]);
            ip.dst_port = be16(u[2], u[3]);
            ip.payload_off = (off + 8) as u32;
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            if (ip.protocol == IPPROTO_ICMPV6) != v6 {
                return;
            }
            let Some(i) = bytes::<8>(ctx, off) else { ip.upper_malformed = true; return };
            if region < 8 {
                ip.upper_malformed = true;
                return;
            }
            ip.icmp_type = i[0];
            ip.icmp_code = i[1];
        }
        _ => return,
    }
    ip.l4_off = off as u32;
    ip.payload_end = end as u32;
    ip.has_l4 = true;
}

impl Ip {
    /// `slot` zeroed in place (every field zero or false, fragment
    /// FRAG_NONE) with nine 8-byte stores. A struct
    /// literal compiles to a byte-by-byte `memset` call (72 iterations
    /// per packet), and so does moving a zeroed value into place.
    #[inline(always)]
    pub fn zeroed_in(slot: &mut core::mem::MaybeUninit<Ip>) -> &mut Ip {
        let words = slot.as_mut_ptr() as *mut u64;
        let mut i = 0;
        while i < core::mem::size_of::<Ip>() / 8 {
            // SAFETY: inside the struct (its size is a multiple of 8, its
            // alignment 8).
            unsafe { core::ptr::write_volatile(words.add(i), 0) };
            i += 1;
        }
        // SAFETY: every byte written above; all-zero is a valid Ip.
        unsafe { slot.assume_init_mut() }
    }
}

const _: () = assert!(core::mem::size_of::<Ip>() % 8 == 0 && FRAG_NONE == 0);
