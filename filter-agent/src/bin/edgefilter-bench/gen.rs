//! Seeded rule sets and the four test frames.
//!
//! Addresses: test packets use only 198.18.0.0/15 and 2001:db8::/32.
//! IPv4 prefix lists: the drop prefix 198.18.7.0/24 first, then 10 % of the
//! list (at most 65,536) random /24-/32 inside 198.18.0.0/15, the rest
//! random /24-/32 spread over 1.0.0.0-223.255.255.255 outside
//! 198.18.0.0/15 (a million prefixes do not fit in documentation space;
//! these maps never carry traffic). IPv6 prefix lists: the drop prefix
//! 2001:db8:bad::/48, then random /48-/128 inside 2001:db8::/32. Any
//! candidate covering an address of the passing packet is rejected, and all
//! prefixes are distinct, so a list of N prefixes compiles to N entries.
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::{rngs::SmallRng, Rng};

use filter_common::rules::{Category, Direction, PrefixRule, RuleInfo, RuleSet};

pub const V4_BENCH_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
pub const V4_BENCH_LEN: u8 = 15;
pub const V4_DROP_PREFIX: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 7, 0), 24);
pub const V4_DROP_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 7);
pub const V4_DROP_DST: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 20);
pub const V4_PASS_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 10);
pub const V4_PASS_DST: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 20);

pub const V6_DOC_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0);
pub const V6_DROP_PREFIX: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 0), 48);
pub const V6_DROP_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 1);
pub const V6_DROP_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x20);
pub const V6_PASS_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
pub const V6_PASS_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x20);

/// Rule ids of the generated lists.
pub const RULE_V4: u32 = 1;
pub const RULE_V6: u32 = 2;

pub const PREFIX_DESCRIPTION: &str = "IPv4: the drop prefix 198.18.7.0/24, then 10% of the list (at most 65,536) random /24-/32 \
inside 198.18.0.0/15 and the rest random /24-/32 spread over 1.0.0.0-223.255.255.255 outside 198.18.0.0/15 \
(one million prefixes do not fit in documentation space; these maps never carry traffic). \
IPv6: the drop prefix 2001:db8:bad::/48, then random /48-/128 inside 2001:db8::/32. \
Candidates covering an address of the passing packets are rejected; all prefixes are distinct; seeded SmallRng.";

fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len as u32) }
}

fn mask128(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - len as u32) }
}

pub fn v4_prefixes(n: usize, rng: &mut SmallRng) -> Vec<Ipv4Net> {
    let bench = u32::from(V4_BENCH_NET);
    let avoid = [u32::from(V4_PASS_SRC), u32::from(V4_PASS_DST)];
    let mut seen: HashSet<(u32, u8)> = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let (drop_net, drop_len) = V4_DROP_PREFIX;
    seen.insert((u32::from(drop_net), drop_len));
    out.push(Ipv4Net::new(drop_net, drop_len).expect("valid"));
    let in_bench = (n / 10).min(65_536);
    while out.len() < n {
        let len = rng.random_range(24..=32u8);
        let addr = if out.len() <= in_bench {
            bench | (rng.random::<u32>() & !mask32(V4_BENCH_LEN))
        } else {
            loop {
                let a = rng.random_range(0x0100_0000u32..0xe000_0000);
                if a & mask32(V4_BENCH_LEN) != bench {
                    break a;
                }
            }
        };
        let net = addr & mask32(len);
        if avoid.iter().any(|&a| a & mask32(len) == net) {
            continue;
        }
        if seen.insert((net, len)) {
            out.push(Ipv4Net::new(Ipv4Addr::from(net), len).expect("valid"));
        }
    }
    out
}

pub fn v6_prefixes(n: usize, rng: &mut SmallRng) -> Vec<Ipv6Net> {
    let doc = u128::from(V6_DOC_NET);
    let avoid = [u128::from(V6_PASS_SRC), u128::from(V6_PASS_DST)];
    let mut seen: HashSet<(u128, u8)> = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let (drop_net, drop_len) = V6_DROP_PREFIX;
    seen.insert((u128::from(drop_net), drop_len));
    out.push(Ipv6Net::new(drop_net, drop_len).expect("valid"));
    while out.len() < n {
        let len = rng.random_range(48..=128u8);
        let net = (doc | (rng.random::<u128>() & !mask128(32))) & mask128(len);
        if avoid.iter().any(|&a| a & mask128(len) == net) {
            continue;
        }
        if seen.insert((net, len)) {
            out.push(Ipv6Net::new(Ipv6Addr::from(net), len).expect("valid"));
        }
    }
    out
}

fn rule_info(id: u32, what: &str) -> RuleInfo {
    RuleInfo {
        id,
        order_id: format!("bench-{what}"),
        authority: "edgefilter-bench".into(),
        category: Category::Operator,
        dry_run: false,
        file: PathBuf::from("<generated by edgefilter-bench>"),
        line: 0,
        comment: Some(format!("generated {what} prefix list")),
    }
}

/// One enforcing rule per family covering the whole generated list.
pub fn ruleset(v4: &[Ipv4Net], v6: &[Ipv6Net]) -> RuleSet {
    let mut rs = RuleSet { rules: vec![rule_info(RULE_V4, "ipv4"), rule_info(RULE_V6, "ipv6")], ..RuleSet::default() };
    rs.prefixes.reserve(v4.len() + v6.len());
    let rule = |rule_id, net| PrefixRule { rule_id, net, direction: Direction::Both, dry_run: false };
    rs.prefixes.extend(v4.iter().map(|&n| rule(RULE_V4, IpNet::V4(n))));
    rs.prefixes.extend(v6.iter().map(|&n| rule(RULE_V6, IpNet::V6(n))));
    rs
}

/// A test frame and the verdict it must get.
#[derive(Clone, Debug)]
pub struct Frame {
    pub name: &'static str,
    pub family: &'static str,
    pub expect_drop: bool,
    pub src: String,
    pub dst: String,
    pub bytes: Vec<u8>,
}

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SPORT: u16 = 40_000;
const DPORT: u16 = 53;
/// UDP payload: 22 bytes gives a 64-byte IPv4 frame and an 84-byte IPv6 one.
const PAYLOAD: usize = 22;

fn checksum_add(mut sum: u32, bytes: &[u8]) -> u32 {
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 { u16::from_be_bytes([chunk[0], chunk[1]]) } else { u16::from(chunk[0]) << 8 };
        sum += u32::from(word);
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp(src: &[u8], dst: &[u8]) -> Vec<u8> {
    let len = (8 + PAYLOAD) as u16;
    let mut out = Vec::with_capacity(len as usize);
    out.extend(SPORT.to_be_bytes());
    out.extend(DPORT.to_be_bytes());
    out.extend(len.to_be_bytes());
    out.extend([0, 0]);
    out.extend((0..PAYLOAD).map(|i| i as u8));
    // Pseudo-header: addresses, protocol, UDP length.
    let mut sum = checksum_add(0, src);
    sum = checksum_add(sum, dst);
    sum += 17 + u32::from(len);
    let mut c = checksum_fold(checksum_add(sum, &out));
    if c == 0 {
        c = 0xffff;
    }
    out[6..8].copy_from_slice(&c.to_be_bytes());
    out
}

pub fn udp_v4(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let l4 = udp(&src.octets(), &dst.octets());
    let mut f = Vec::with_capacity(64);
    f.extend(DST_MAC);
    f.extend(SRC_MAC);
    f.extend(0x0800u16.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend(((20 + l4.len()) as u16).to_be_bytes());
    ip.extend([0, 1, 0x40, 0, 64, 17, 0, 0]);
    ip.extend(src.octets());
    ip.extend(dst.octets());
    let c = checksum_fold(checksum_add(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend(ip);
    f.extend(l4);
    f
}

pub fn udp_v6(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let l4 = udp(&src.octets(), &dst.octets());
    let mut f = Vec::with_capacity(84);
    f.extend(DST_MAC);
    f.extend(SRC_MAC);
    f.extend(0x86ddu16.to_be_bytes());
    f.extend([0x60, 0, 0, 0]);
    f.extend((l4.len() as u16).to_be_bytes());
    f.extend([17, 64]);
    f.extend(src.octets());
    f.extend(dst.octets());
    f.extend(l4);
    f
}

pub fn frames() -> Vec<Frame> {
    vec![
        Frame { name: "ipv4-pass", family: "IPv4", expect_drop: false, src: V4_PASS_SRC.to_string(), dst: V4_PASS_DST.to_string(), bytes: udp_v4(V4_PASS_SRC, V4_PASS_DST) },
        Frame { name: "ipv4-drop", family: "IPv4", expect_drop: true, src: V4_DROP_SRC.to_string(), dst: V4_DROP_DST.to_string(), bytes: udp_v4(V4_DROP_SRC, V4_DROP_DST) },
        Frame { name: "ipv6-pass", family: "IPv6", expect_drop: false, src: V6_PASS_SRC.to_string(), dst: V6_PASS_DST.to_string(), bytes: udp_v6(V6_PASS_SRC, V6_PASS_DST) },
        Frame { name: "ipv6-drop", family: "IPv6", expect_drop: true, src: V6_DROP_SRC.to_string(), dst: V6_DROP_DST.to_string(), bytes: udp_v6(V6_DROP_SRC, V6_DROP_DST) },
    ]
}
