//! Domain names as the data plane matches them, shared by the XDP program,
//! the reference classifier and the compiler so all three hash alike.
//!
//! A name is a sequence of labels (DNS question labels, or a TLS SNI /
//! HTTP Host split on dots). Matching looks up every label-boundary suffix
//! of the name — `a.b.example.com`, `b.example.com`, `example.com`, `com`
//! — in one hash map, so its cost depends on the name's label count (at
//! most [`MAX_NAME_LABELS`] lookups), never on the number of rules.
//!
//! Each suffix has two 64-bit hashes, both seeded by the agent with random
//! per-installation seeds: the first is the map key, the second is stored
//! in the entry and checked, so a false match needs a 128-bit collision of
//! seeds an attacker does not know.
//!
//! Hashing is per label, then combined from the rightmost label leftwards:
//! `suffix(k) = extend(suffix(k + 1), label(k))`. Bytes are ASCII
//! case-folded; nothing else is normalised here (the agent normalises rule
//! names; a name in a packet that is not already an A-label form cannot
//! match a rule, which is what we want).

/// Label-boundary suffixes looked up per name: rules have at most this
/// many labels, and a name with more labels is matched on its last
/// `MAX_NAME_LABELS` (only subdomain rules can match it).
pub const MAX_NAME_LABELS: usize = 16;
/// Longest name in text form (RFC 1035: 255 octets on the wire).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// Two 64-bit hashes (map key, check).
pub type NameHash = [u64; 2];

#[inline(always)]
pub const fn fold_case(b: u8) -> u8 {
    if b >= b'A' && b <= b'Z' {
        b | 0x20
    } else {
        b
    }
}

/// Hash state at the start of a label.
#[inline(always)]
pub const fn label_start(seeds: &NameHash) -> NameHash {
    [seeds[0] ^ 0xcbf2_9ce4_8422_2325, seeds[1] ^ 0x9e37_79b9_7f4a_7c15]
}

/// One byte of a label (case-folded here).
#[inline(always)]
pub const fn label_byte(h: NameHash, b: u8) -> NameHash {
    let c = fold_case(b) as u64;
    [(h[0] ^ c).wrapping_mul(0x0000_0100_0000_01b3), (h[1] ^ c).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(23)]
}

/// The finished hash of a label of `len` bytes.
#[inline(always)]
pub const fn label_end(h: NameHash, len: u32) -> NameHash {
    [fmix(h[0] ^ len as u64), fmix(h[1].wrapping_add(len as u64))]
}

/// The suffix hash of the empty name (before the rightmost label).
#[inline(always)]
pub const fn suffix_root(seeds: &NameHash) -> NameHash {
    [fmix(seeds[1] ^ 0x5851_f42d_4c95_7f2d), fmix(seeds[0] ^ 0x1405_7b7e_f767_814f)]
}

/// The suffix one label longer: `label` followed by `suffix`.
#[inline(always)]
pub const fn suffix_extend(suffix: NameHash, label: NameHash) -> NameHash {
    [
        fmix(suffix[0].rotate_left(17) ^ label[0]).wrapping_add(label[1]),
        fmix(suffix[1].wrapping_mul(0xc4ce_b9fe_1a85_ec53) ^ label[1].rotate_left(31)),
    ]
}

/// MurmurHash3's 64-bit finaliser.
#[inline(always)]
pub const fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Hash of one label given as bytes.
#[inline(always)]
pub fn label_hash(seeds: &NameHash, label: &[u8]) -> NameHash {
    let mut h = label_start(seeds);
    let mut i = 0;
    while i < label.len() {
        h = label_byte(h, label[i]);
        i += 1;
    }
    label_end(h, label.len() as u32)
}

/// Suffix hashes of a dotted name (no trailing dot), least specific first:
/// `com`, `example.com`, ... up to the last [`MAX_NAME_LABELS`] labels.
/// `None` if a label is empty or too long, or the name too long.
#[cfg(feature = "user")]
pub fn suffix_hashes(seeds: &NameHash, name: &[u8]) -> Option<Vec<NameHash>> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let labels: Vec<&[u8]> = name.split(|&b| b == b'.').collect();
    if labels.iter().any(|l| l.is_empty() || l.len() > MAX_LABEL_LEN) {
        return None;
    }
    let mut out = Vec::new();
    let mut s = suffix_root(seeds);
    for label in labels.iter().rev().take(MAX_NAME_LABELS) {
        s = suffix_extend(s, label_hash(seeds, label));
        out.push(s);
    }
    Some(out)
}
