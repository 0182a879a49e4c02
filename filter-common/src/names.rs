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

/// ASCII case folding of eight bytes at once: `A`..`Z` get bit 5 set,
/// every other byte (including those >= 0x80) is left alone.
#[inline(always)]
pub const fn fold_case_word(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = w & LOW7;
    // High bit of each byte: its low 7 bits are >= 'A' (0x41), >= '[' (0x5b).
    let from_a = low.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
    let past_z = low.wrapping_add(0x2525_2525_2525_2525);
    let upper = from_a & !past_z & !w & HIGH;
    w | (upper >> 2)
}

/// Eight bytes of a label, little-endian, bytes past the label's end zero
/// (case-folded here): a label is hashed a word at a time, so a name
/// costs a few multiplications per label, not two per byte.
#[inline(always)]
pub const fn label_word(h: NameHash, w: u64) -> NameHash {
    let c = fold_case_word(w);
    [(h[0] ^ c).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31), (h[1] ^ c).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(23)]
}

/// The little-endian word of `label[at..at + 8]`, zero past its end.
#[inline(always)]
pub fn word_at(label: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    let mut i = 0;
    while i < 8 && at + i < label.len() {
        b[i] = label[at + i];
        i += 1;
    }
    u64::from_le_bytes(b)
}

/// Keeps the first `n` bytes of a little-endian word (all of it for 8 or
/// more).
#[inline(always)]
pub const fn keep_bytes(w: u64, n: u32) -> u64 {
    if n >= 8 {
        w
    } else {
        w & ((1u64 << (n * 8)) - 1)
    }
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
    let mut at = 0;
    while at < label.len() {
        h = label_word(h, word_at(label, at));
        at += 8;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_case_like_bytes() {
        // Every byte value in every position of a word.
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut bytes = [b'x'; 8];
                bytes[pos] = b;
                let want: Vec<u8> = bytes.iter().map(|&c| fold_case(c)).collect();
                let got = fold_case_word(u64::from_le_bytes(bytes)).to_le_bytes();
                assert_eq!(got.to_vec(), want, "byte {b:#04x} at {pos}");
            }
        }
    }

    #[test]
    fn labels_hash_case_blind_and_length_aware() {
        let seeds = [1, 2];
        assert_eq!(label_hash(&seeds, b"ExAmPlE-Label-0123"), label_hash(&seeds, b"example-label-0123"));
        // A label and the same label with zero bytes after it differ (the
        // padding of the last word is zeros; the length tells them apart).
        assert_ne!(label_hash(&seeds, b"abc"), label_hash(&seeds, b"abc\0"));
        assert_ne!(label_hash(&seeds, b"abcdefgh"), label_hash(&seeds, b"abcdefgh\0"));
        assert_ne!(label_hash(&seeds, b"abc"), label_hash(&[1, 3], b"abc"));
        assert_eq!(keep_bytes(u64::MAX, 3), 0xff_ffff);
        assert_eq!(keep_bytes(u64::MAX, 8), u64::MAX);
        assert_eq!(word_at(b"abcdefghij", 8), u64::from_le_bytes(*b"ij\0\0\0\0\0\0"));
    }
}
