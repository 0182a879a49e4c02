//! SYN authentication (`syn_auth` L4 rules): a SYN from an unverified
//! source is answered with a SYN cookie, a returning cookie ACK verifies
//! its source and is answered with a reset. Mirrors
//! `filter_common::reference::synauth` (which explains the scheme).
//!
//! The headers are copied into per-CPU scratch memory, where the cookie
//! helpers read them and the answer is built; the answer is written back
//! over the packet with `bpf_xdp_store_bytes` after the tail is cut to the
//! headers (`bpf_xdp_adjust_tail`), so no packet pointer has to be proven
//! in range at a variable offset.
use aya_ebpf::{
    bindings::{iphdr, ipv6hdr, tcphdr, xdp_md},
    helpers::generated::{
        bpf_csum_diff, bpf_tcp_raw_check_syncookie_ipv4, bpf_tcp_raw_check_syncookie_ipv6, bpf_tcp_raw_gen_syncookie_ipv4,
        bpf_tcp_raw_gen_syncookie_ipv6, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
};
use filter_common::maps::VerifiedKey;
use filter_common::proto::IPPROTO_TCP;

use crate::maps::{SYN_SCRATCH, SYN_VERIFIED};
use crate::mem::opaque;
use crate::parse::Ip;

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

#[repr(C)]
pub struct SynScratch {
    /// The IP header (20 bytes IPv4, 40 IPv6), rewritten into the answer's.
    ip: [u8; 40],
    /// The TCP header as received, options included.
    th: [u8; 60],
    /// The answer's TCP header.
    out: [u8; 20],
    /// The checksum's pseudo header.
    pseudo: [u8; 40],
    /// Both MAC addresses, as received.
    macs: [u8; 12],
    key: VerifiedKey,
}

/// Whether `ip`'s source is verified at `now`.
#[inline(always)]
pub fn verified(src: &[u8; 16], v6: u8, now: u64, ttl: u64) -> bool {
    let key = VerifiedKey { addr: *src, v6: v6 as u32, _pad: 0 };
    // SAFETY: plain value read of a hash map entry.
    unsafe { SYN_VERIFIED.get(&key) }.is_some_and(|&at| now.wrapping_sub(at) < ttl)
}

fn ip_len(ip: &Ip) -> u32 {
    if ip.v6 {
        40
    } else {
        20
    }
}

/// Copies the IP header and the fixed TCP header into scratch; `None`
/// when the headers cannot be answered (IPv4 options, IPv6 extension
/// headers) or read.
#[inline(always)]
fn load(ctx: *mut xdp_md, ip: &Ip) -> Option<&'static mut SynScratch> {
    if ip.l4_off != ip.l3_off + ip_len(ip) {
        return None;
    }
    // SAFETY: per-CPU scratch, used by this invocation only.
    let s = unsafe { &mut *SYN_SCRATCH.get_ptr_mut(0)? };
    let rc = if ip.v6 {
        // SAFETY: 40 bytes into a 40-byte buffer.
        unsafe { bpf_xdp_load_bytes(ctx, ip.l3_off, s.ip.as_mut_ptr().cast(), 40) }
    } else {
        // SAFETY: 20 bytes into a 40-byte buffer.
        unsafe { bpf_xdp_load_bytes(ctx, ip.l3_off, s.ip.as_mut_ptr().cast(), 20) }
    };
    // SAFETY: 20 bytes into a 60-byte buffer.
    if rc != 0 || unsafe { bpf_xdp_load_bytes(ctx, ip.l4_off, s.th.as_mut_ptr().cast(), 20) } != 0 {
        return None;
    }
    Some(s)
}

/// A SYN from an unverified source: rewritten into a SYN-ACK carrying a
/// SYN cookie. False when it cannot be answered (it is dropped).
pub fn challenge(ctx: *mut xdp_md, ip: &Ip) -> bool {
    let Some(s) = load(ctx, ip) else { return false };
    let th_len = ((s.th[12] >> 4) as u32) * 4;
    if th_len < 20 {
        return false;
    }
    // Options too: the cookie encodes the client's MSS.
    let th_len = ((opaque(th_len) - 1) & 63) + 1;
    if th_len > 60 {
        return false;
    }
    // SAFETY: at most 60 bytes into a 60-byte buffer.
    if th_len > 20 && unsafe { bpf_xdp_load_bytes(ctx, ip.l4_off, s.th.as_mut_ptr().cast(), th_len) } != 0 {
        return false;
    }
    // SAFETY: the headers in scratch memory, `th_len` bytes of TCP header.
    let cookie = unsafe {
        if ip.v6 {
            bpf_tcp_raw_gen_syncookie_ipv6(s.ip.as_mut_ptr() as *mut ipv6hdr, s.th.as_mut_ptr() as *mut tcphdr, th_len)
        } else {
            bpf_tcp_raw_gen_syncookie_ipv4(s.ip.as_mut_ptr() as *mut iphdr, s.th.as_mut_ptr() as *mut tcphdr, th_len)
        }
    };
    if cookie < 0 {
        return false;
    }
    let seq = u32::from_be_bytes([s.th[4], s.th[5], s.th[6], s.th[7]]);
    answer(ctx, ip, s, cookie as u32, seq.wrapping_add(1), TCP_SYN | TCP_ACK, 65535)
}

/// An ACK from an unverified source: if it returns one of our cookies, its
/// source is verified and the ACK rewritten into a reset. False when it is
/// no cookie ACK (the packet is untouched).
pub fn check_ack(ctx: *mut xdp_md, ip: &Ip, now: u64) -> bool {
    let Some(s) = load(ctx, ip) else { return false };
    // SAFETY: the headers in scratch memory (fixed sizes).
    let rc = unsafe {
        if ip.v6 {
            bpf_tcp_raw_check_syncookie_ipv6(s.ip.as_mut_ptr() as *mut ipv6hdr, s.th.as_mut_ptr() as *mut tcphdr)
        } else {
            bpf_tcp_raw_check_syncookie_ipv4(s.ip.as_mut_ptr() as *mut iphdr, s.th.as_mut_ptr() as *mut tcphdr)
        }
    };
    if rc != 0 {
        return false;
    }
    s.key = VerifiedKey { addr: ip.src, v6: ip.v6 as u32, _pad: 0 };
    let _ = SYN_VERIFIED.insert(&s.key, &now, 0);
    let ack = u32::from_be_bytes([s.th[8], s.th[9], s.th[10], s.th[11]]);
    answer(ctx, ip, s, ack, 0, TCP_RST, 0)
}

/// Turns the packet around (see `reference::synauth::answer`).
#[inline(always)]
fn answer(ctx: *mut xdp_md, ip: &Ip, s: &mut SynScratch, seq: u32, ack: u32, flags: u8, window: u16) -> bool {
    let (sport, dport) = ([s.th[0], s.th[1]], [s.th[2], s.th[3]]);
    // SAFETY: the context is the program's.
    let (data, end) = unsafe { ((*ctx).data as i64, (*ctx).data_end as i64) };
    let delta = (ip.l4_off as i64 + 20) - (end - data);
    // SAFETY: shrinking (or keeping) the frame to its headers.
    if delta > 0 || (delta < 0 && unsafe { bpf_xdp_adjust_tail(ctx, delta as i32) } != 0) {
        return false;
    }
    // SAFETY: 12 bytes into a 12-byte buffer.
    if unsafe { bpf_xdp_load_bytes(ctx, 0, s.macs.as_mut_ptr().cast(), 12) } != 0 {
        return false;
    }
    let (a, b) = (s.macs, s.macs);
    s.macs[..6].copy_from_slice(&b[6..]);
    s.macs[6..].copy_from_slice(&a[..6]);
    let mut i = 0;
    if ip.v6 {
        set16(&mut s.ip, 4, 20);
        s.ip[6] = IPPROTO_TCP;
        s.ip[7] = 64;
        while i < 16 {
            s.ip[8 + i] = ip.dst[i];
            s.ip[24 + i] = ip.src[i];
            s.pseudo[i] = ip.dst[i];
            s.pseudo[16 + i] = ip.src[i];
            i += 1;
        }
        s.pseudo[32..40].copy_from_slice(&[0, 0, 0, 20, 0, 0, 0, IPPROTO_TCP]);
    } else {
        s.ip[0] = 0x45;
        set16(&mut s.ip, 2, 40);
        set16(&mut s.ip, 4, 0);
        set16(&mut s.ip, 6, 0x4000);
        s.ip[8] = 64;
        s.ip[9] = IPPROTO_TCP;
        set16(&mut s.ip, 10, 0);
        while i < 4 {
            s.ip[12 + i] = ip.dst[i];
            s.ip[16 + i] = ip.src[i];
            s.pseudo[i] = ip.dst[i];
            s.pseudo[4 + i] = ip.src[i];
            i += 1;
        }
        s.pseudo[8..12].copy_from_slice(&[0, IPPROTO_TCP, 0, 20]);
        // SAFETY: 20 bytes of scratch memory.
        let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, s.ip.as_mut_ptr().cast(), 20, 0) };
        // The folded sum is in the byte order of the words summed.
        let sum = fold(sum).to_ne_bytes();
        s.ip[10] = sum[0];
        s.ip[11] = sum[1];
    }
    s.out[0..2].copy_from_slice(&dport);
    s.out[2..4].copy_from_slice(&sport);
    s.out[4..8].copy_from_slice(&seq.to_be_bytes());
    s.out[8..12].copy_from_slice(&ack.to_be_bytes());
    s.out[12] = 5 << 4;
    s.out[13] = flags;
    s.out[14..16].copy_from_slice(&window.to_be_bytes());
    s.out[16..20].copy_from_slice(&[0, 0, 0, 0]);
    // SAFETY: scratch memory of the sizes given.
    let sum = unsafe {
        let pseudo = if ip.v6 {
            bpf_csum_diff(core::ptr::null_mut(), 0, s.pseudo.as_mut_ptr().cast(), 40, 0)
        } else {
            bpf_csum_diff(core::ptr::null_mut(), 0, s.pseudo.as_mut_ptr().cast(), 12, 0)
        };
        bpf_csum_diff(core::ptr::null_mut(), 0, s.out.as_mut_ptr().cast(), 20, pseudo as u32)
    };
    s.out[16..18].copy_from_slice(&fold(sum).to_ne_bytes());
    // SAFETY: the frame is `l4_off + 20` bytes long now; every write is
    // inside it, from scratch buffers of at least the sizes given.
    unsafe {
        if bpf_xdp_store_bytes(ctx, 0, s.macs.as_mut_ptr().cast(), 12) != 0 {
            return false;
        }
        let rc = if ip.v6 {
            bpf_xdp_store_bytes(ctx, ip.l3_off, s.ip.as_mut_ptr().cast(), 40)
        } else {
            bpf_xdp_store_bytes(ctx, ip.l3_off, s.ip.as_mut_ptr().cast(), 20)
        };
        rc == 0 && bpf_xdp_store_bytes(ctx, ip.l4_off, s.out.as_mut_ptr().cast(), 20) == 0
    }
}

#[inline(always)]
fn set16(buf: &mut [u8; 40], at: usize, v: u16) {
    let b = v.to_be_bytes();
    buf[at] = b[0];
    buf[at + 1] = b[1];
}

/// The Internet checksum from `bpf_csum_diff`'s 32-bit sum.
#[inline(always)]
fn fold(sum: i64) -> u16 {
    let mut s = sum as u64 & 0xffff_ffff;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}
