//! Seeded feed contents: distinct IPv4 and IPv6 prefixes written as
//! `plain` feed files, and the 1 % changes between reloads.
//!
//! IPv4: 40 % /32 (written as bare addresses, as blocklists list hosts),
//! 35 % /24, 25 % any length /16-/32, spread over 1.0.0.0-223.255.255.255.
//! A million prefixes do not fit in documentation space; these maps never
//! carry traffic (the agent is attached to a veth inside a namespace of its
//! own with nothing sending on it). Excluded: 127.0.0.0/8, 198.18.0.0/15
//! (test hosts use it) and the documentation /24s the small order uses.
//! IPv6: 15 % /48, 35 % /64, 35 % /128, 15 % any length /48-/128, all
//! inside 2001:db8::/32, outside the order's 2001:db8:bad::/48.
//! All prefixes of a list are distinct and none overlaps the order's
//! prefixes, so the agent's `prefix_rules` is exactly the sum of the lists
//! and the order's prefixes.
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result};
use rand::{rngs::SmallRng, Rng};

pub const DESCRIPTION: &str = "IPv4: 40% /32 (written as bare addresses), 35% /24 and 25% any length /16-/32, \
spread over 1.0.0.0-223.255.255.255 without 127.0.0.0/8, 198.18.0.0/15 (test hosts use it) and the order's documentation /24s; \
one million prefixes do not fit in documentation space, and these maps never carry traffic (the agent is attached to a veth \
in a namespace of its own with nothing sending on it). IPv6: 15% /48, 35% /64, 35% /128 and 15% any length /48-/128 inside \
2001:db8::/32, outside the order's 2001:db8:bad::/48. All prefixes are distinct and none overlaps the order's; seeded SmallRng.";

/// Networks no generated IPv4 prefix may overlap.
const V4_EXCLUDED: [(u32, u8); 5] = [
    (0x7f00_0000, 8),  // 127.0.0.0/8
    (0xc612_0000, 15), // 198.18.0.0/15: test hosts
    (0xc000_0200, 24), // 192.0.2.0/24: the order
    (0xc633_6400, 24), // 198.51.100.0/24: the order
    (0xcb00_7100, 24), // 203.0.113.0/24: the order
];
const V6_DOC: u128 = 0x2001_0db8 << 96;
/// 2001:db8:bad::/48, the order's IPv6 prefix.
const V6_EXCLUDED: (u128, u8) = ((0x2001_0db8_0bad_u128) << 80, 48);

pub const ORDER: &str = r#"# A small order next to the feeds (documentation ranges only), so the
# rule set mixes orders and feeds as a real one does.
id = "RELOAD-BENCH-0001"
authority = "edgefilter-reload-bench"
reference = "benchmark fixture"
category = "legal"
received = 2026-01-10T08:30:00Z
effective = 2026-01-10T12:00:00Z
expires = 2036-01-10T12:00:00Z
action = "drop"

[[entry]]
comment = "hosting addresses"
prefixes = ["203.0.113.128/25", "2001:db8:bad::/48"]

[[entry]]
comment = "a single host, blocked only as a destination"
prefixes = ["198.51.100.66"]
direction = "dst"

[[entry]]
comment = "memcached reflection"
protocol = "udp"
source_ports = [11211]
"#;
/// Prefixes in [`ORDER`].
pub const ORDER_PREFIXES: usize = 3;

fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len as u32) }
}

fn mask128(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - len as u32) }
}

fn overlaps32(a: (u32, u8), b: (u32, u8)) -> bool {
    let m = mask32(a.1.min(b.1));
    a.0 & m == b.0 & m
}

fn v4_candidate(rng: &mut SmallRng) -> (u32, u8) {
    let r: f64 = rng.random();
    let len = if r < 0.40 {
        32
    } else if r < 0.75 {
        24
    } else {
        rng.random_range(16..=32u8)
    };
    loop {
        let net = rng.random_range(0x0100_0000u32..0xe000_0000) & mask32(len);
        if !V4_EXCLUDED.iter().any(|&x| overlaps32((net, len), x)) {
            return (net, len);
        }
    }
}

fn v6_candidate(rng: &mut SmallRng) -> (u128, u8) {
    let r: f64 = rng.random();
    let len = if r < 0.15 {
        48
    } else if r < 0.50 {
        64
    } else if r < 0.85 {
        128
    } else {
        rng.random_range(48..=128u8)
    };
    loop {
        let net = (V6_DOC | (rng.random::<u128>() & !mask128(32))) & mask128(len);
        let m = mask128(len.min(V6_EXCLUDED.1));
        if net & m != V6_EXCLUDED.0 & m {
            return (net, len);
        }
    }
}

/// A list of distinct prefixes, kept in file order, that can be changed in
/// place.
pub struct List<T: Copy + Eq + std::hash::Hash> {
    pub items: Vec<T>,
    seen: HashSet<T>,
    candidate: fn(&mut SmallRng) -> T,
}

impl<T: Copy + Eq + std::hash::Hash> List<T> {
    fn generate(n: usize, rng: &mut SmallRng, candidate: fn(&mut SmallRng) -> T) -> Self {
        let mut list = List { items: Vec::with_capacity(n), seen: HashSet::with_capacity(n), candidate };
        while list.items.len() < n {
            let c = candidate(rng);
            if list.seen.insert(c) {
                list.items.push(c);
            }
        }
        list
    }

    /// Replaces `count` entries at random positions by new prefixes not in
    /// the list (a feed update: some listings gone, as many new ones).
    pub fn replace(&mut self, count: usize, rng: &mut SmallRng) {
        let count = count.min(self.items.len());
        for i in rand::seq::index::sample(rng, self.items.len(), count) {
            let fresh = loop {
                let c = (self.candidate)(rng);
                if self.seen.insert(c) {
                    break c;
                }
            };
            let old = std::mem::replace(&mut self.items[i], fresh);
            self.seen.remove(&old);
        }
    }
}

pub type V4List = List<(u32, u8)>;
pub type V6List = List<(u128, u8)>;

pub fn v4(n: usize, rng: &mut SmallRng) -> V4List {
    List::generate(n, rng, v4_candidate)
}

pub fn v6(n: usize, rng: &mut SmallRng) -> V6List {
    List::generate(n, rng, v6_candidate)
}

pub fn v4_text(list: &V4List, header: &str) -> String {
    let mut out = String::with_capacity(list.items.len() * 17 + header.len());
    out.push_str(header);
    for &(net, len) in &list.items {
        let a = Ipv4Addr::from(net);
        let _ = if len == 32 { writeln!(out, "{a}") } else { writeln!(out, "{a}/{len}") };
    }
    out
}

pub fn v6_text(list: &V6List, header: &str) -> String {
    let mut out = String::with_capacity(list.items.len() * 32 + header.len());
    out.push_str(header);
    for &(net, len) in &list.items {
        let _ = writeln!(out, "{}/{len}", Ipv6Addr::from(net));
    }
    out
}

/// Writes `text` next to `path` and renames it into place, as a feed
/// fetcher should: the agent never sees a half-written file.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("txt.part");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Prefix length histogram: length -> count.
pub fn lengths<T: Copy + Eq + std::hash::Hash>(list: &List<T>, len_of: impl Fn(&T) -> u8) -> std::collections::BTreeMap<u8, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for item in &list.items {
        *counts.entry(len_of(item)).or_insert(0) += 1;
    }
    counts
}
