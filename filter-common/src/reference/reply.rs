//! Frames the kernel sends back with XDP_TX (a DNS answer, a SYN-ACK, a
//! reset): the received frame turned around. Mirrors the kernel's
//! rewrites byte for byte; the differential tests compare them.

use crate::packet::{Addrs, IpPacket};

/// `frame` up to `l4_len` bytes of transport header and payload, turned
/// around: MACs, addresses and transport ports swapped, TTL or hop limit
/// 64, the IP length fields for `l4_len`, and the IPv4 header checksum
/// recomputed. `fresh`: an IPv4 header of our own (IHL 5, id 0, DF)
/// rather than the received one's fields. The caller checks there are no
/// IPv4 options or IPv6 extension headers, writes the transport header
/// and finishes its checksum from the returned pseudo-header sum.
pub(crate) fn turn_around(frame: &[u8], p: &IpPacket, l4_len: usize, proto: u8, fresh: bool) -> (Vec<u8>, u64) {
    let (l3, l4) = (p.l3_off, p.l4_off);
    let mut out = frame[..l4 + l4_len].to_vec();
    out[..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[..6]);
    let mut pseudo = 0u64;
    match p.addrs {
        Addrs::V4 { src, dst } => {
            let ip = &mut out[l3..l3 + 20];
            if fresh {
                ip[0] = 0x45;
                ip[4..6].copy_from_slice(&[0, 0]);
                ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            }
            ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = proto;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&dst);
            ip[16..20].copy_from_slice(&src);
            let mut h = 0u64;
            csum_add(&mut h, ip);
            let sum = !csum_fold(h);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            csum_add(&mut pseudo, &src);
            csum_add(&mut pseudo, &dst);
        }
        Addrs::V6 { src, dst } => {
            let ip = &mut out[l3..l3 + 40];
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&dst);
            ip[24..40].copy_from_slice(&src);
            csum_add(&mut pseudo, &src);
            csum_add(&mut pseudo, &dst);
        }
    }
    pseudo += l4_len as u64 + u64::from(proto);
    let (sport, dport) = ([frame[l4], frame[l4 + 1]], [frame[l4 + 2], frame[l4 + 3]]);
    out[l4..l4 + 2].copy_from_slice(&dport);
    out[l4 + 2..l4 + 4].copy_from_slice(&sport);
    (out, pseudo)
}

/// The transport checksum of `segment` (its checksum field zero) after a
/// pseudo-header sum from [`turn_around`].
pub(crate) fn transport_checksum(pseudo: u64, segment: &[u8]) -> u16 {
    let mut sum = pseudo;
    csum_add(&mut sum, segment);
    !csum_fold(sum)
}

/// Adds `b` (16-bit big-endian words, an odd last byte padded) to an
/// Internet checksum sum; [`csum_fold`] folds it.
fn csum_add(sum: &mut u64, b: &[u8]) {
    for chunk in b.chunks(2) {
        *sum += (u64::from(chunk[0]) << 8) | u64::from(*chunk.get(1).unwrap_or(&0));
    }
}

fn csum_fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}
