//! Layout of every BPF map the XDP program reads or writes.
//!
//! All keys and values are `#[repr(C)]` with explicit padding fields so the
//! kernel, the program and the agent agree byte for byte (the kernel compares
//! whole keys, padding included).
//!
//! ## Generations
//! Everything a rule reload changes is tagged with a *generation* (0 or 1).
//! The program reads `CONFIG.generation` once per packet and only looks at
//! entries of that generation, so a reload writes the inactive generation,
//! flips the switch, then clears the old one: no packet ever sees a mix.

/// Number of rule generations kept in the maps (active + being built).
pub const GENERATIONS: u32 = 2;

/// L4 rules per generation. Rule `slot` order is evaluation order.
pub const MAX_L4_RULES: u32 = 256;
/// 64-bit words in an L4 candidate bitmap (`MAX_L4_RULES / 64`).
pub const L4_WORDS: usize = 4;
/// Distinct L4 scope bitmaps per generation (index 0 is the empty set).
pub const MAX_L4_SETS: u32 = 4096;
/// Rule ids are indexes into `RULE_STATS`; 0 means "no rule".
pub const MAX_RULE_IDS: u32 = 65_536;
/// Interfaces one agent can count separately.
pub const MAX_IFACE_SLOTS: u32 = 64;
/// Maximum IPv6 extension headers walked before a packet counts as malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
/// Maximum VLAN tags (802.1Q / 802.1ad) before a frame counts as malformed.
pub const MAX_VLAN_TAGS: usize = 2;

/// Default capacities (the agent overrides them from its configuration).
/// For IPv4 this bounds the prefixes longer than /24 kept in the
/// `V4_LONG` hash; /24 and shorter cost nothing (they live in `V4_TBL24`).
pub const DEFAULT_PREFIX_V4_CAPACITY: u32 = 1_000_000;
pub const DEFAULT_PREFIX_V6_CAPACITY: u32 = 250_000;

// ## IPv4: DIR-24-8 with hashed long prefixes
//
// An LPM trie walks ~30 nodes per lookup once it holds a million prefixes;
// two lookups per packet made that the whole cost of the pass path. IPv4
// instead uses the router-style DIR-24-8 layout (as in DPDK's rte_lpm):
//
// * `V4_TBL24[generation << 24 | addr >> 8]` answers every prefix of /24 or
//   shorter with one array read (prefixes are expanded into it);
// * a /24 block that also holds longer prefixes either points to a
//   256-entry `V4_TBL8` group (dense blocks, while groups last), or carries
//   a bitmap of the lengths /25../32 present in it, probed longest first in
//   the `V4_LONG` hash (sparse blocks: usually one probe);
// * the answer is an index into `PREFIX_ENTRIES`, the distinct folded
//   [`PrefixEntry`] values (0 = no prefix covers the address).
//
// IPv6 keeps an LPM trie (`PREFIX_V6`) whose value is the same kind of index
// into `PREFIX_ENTRIES`, which both families share.

/// `V4_TBL24` entry: the block uses `V4_TBL8` group `entry & TBL24_INDEX`
/// (absolute group number; each generation owns its own range).
pub const TBL24_GROUP: u32 = 1 << 31;
/// `V4_TBL24` entry: bits 23..31 are the lengths 25..32 present in the block.
pub const TBL24_LONG_SHIFT: u32 = 23;
/// `V4_TBL24` entry: `PREFIX_ENTRIES` index (or group index with `TBL24_GROUP`).
pub const TBL24_INDEX: u32 = (1 << TBL24_LONG_SHIFT) - 1;
/// `V4_TBL24` slots per generation.
pub const TBL24_SIZE: u32 = 1 << 24;
/// Default `V4_TBL8` groups per generation (256 u32 each: 16 MiB in all).
pub const DEFAULT_V4_GROUPS: u32 = 8_192;
/// Distinct folded prefix entries per generation (both families).
pub const MAX_PREFIX_ENTRIES: u32 = 65_536;

/// Why a packet got its verdict. Every packet is counted under exactly one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// No rule matched: default pass.
    Pass = 0,
    /// Not IPv4/IPv6/ARP (LLDP, MPLS, ...): passed untouched.
    NonIp = 1,
    /// ARP or IPv6 neighbour discovery: always passed.
    Control = 2,
    /// Source or destination in the management/BGP allowlist.
    Allowlist = 3,
    /// Source or destination in the prefix blocklist.
    Prefix = 4,
    /// An L4 rule (protocol, ports, TCP flags, ICMP type/code).
    L4 = 5,
    /// The fragment policy of the packet's protocol.
    Fragment = 6,
    /// Truncated or malformed headers (fail-open passes, fail-closed drops).
    Malformed = 7,
}

pub const N_REASONS: u32 = 8;

impl Reason {
    pub const ALL: [Reason; N_REASONS as usize] = [
        Reason::Pass,
        Reason::NonIp,
        Reason::Control,
        Reason::Allowlist,
        Reason::Prefix,
        Reason::L4,
        Reason::Fragment,
        Reason::Malformed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Reason::Pass => "pass",
            Reason::NonIp => "non_ip",
            Reason::Control => "control",
            Reason::Allowlist => "allowlist",
            Reason::Prefix => "prefix",
            Reason::L4 => "l4",
            Reason::Fragment => "fragment",
            Reason::Malformed => "malformed",
        }
    }
}

/// Index into `REASON_STATS` for (interface slot, reason, dropped?).
#[inline(always)]
pub const fn reason_stats_index(iface_slot: u32, reason: Reason, dropped: bool) -> u32 {
    (iface_slot * N_REASONS + reason as u32) * 2 + dropped as u32
}

pub const REASON_STATS_LEN: u32 = MAX_IFACE_SLOTS * N_REASONS * 2;

/// `CONFIG[0]`: the switch a reload flips.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActiveConfig {
    /// Generation (0 or 1) every lookup of this packet uses.
    pub generation: u32,
    /// 1 once a rule set has been applied: a restarted agent that finds it
    /// in the pinned map adopts the running generation instead of
    /// starting over.
    pub loaded: u32,
}

/// `GEN_META[generation]`: per-generation settings that are not prefixes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationMeta {
    /// L4 rules whose source is "any address".
    pub l4_any_src: [u64; L4_WORDS],
    /// L4 rules whose destination is "any address".
    pub l4_any_dst: [u64; L4_WORDS],
    /// `META_*` flags.
    pub flags: u32,
    /// Number of L4 rule slots in use (0 skips the L4 stage).
    pub l4_rule_count: u32,
    /// Fragment policy (`FRAG_*`) indexed by IP protocol number.
    pub fragment_policy: [u8; 256],
}

impl Default for GenerationMeta {
    fn default() -> Self {
        GenerationMeta {
            l4_any_src: [0; L4_WORDS],
            l4_any_dst: [0; L4_WORDS],
            flags: 0,
            l4_rule_count: 0,
            fragment_policy: [FRAG_PASS; 256],
        }
    }
}

/// Malformed packets are dropped instead of passed.
pub const META_FAIL_CLOSED: u32 = 1;

pub const FRAG_PASS: u8 = 0;
pub const FRAG_DROP_NON_FIRST: u8 = 1;
pub const FRAG_DROP_ALL: u8 = 2;

/// LPM trie data for IPv6 (the trie key is `prefix_len` + this). The
/// generation occupies the first 32 bits, so a key's prefix length is
/// `32 + address prefix length`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V6Key {
    pub generation: u32,
    pub addr: [u8; 16],
}

/// `V4_LONG` key: an IPv4 prefix longer than /24, exact match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct V4LongKey {
    /// Network address, host bits zero, network byte order.
    pub addr: [u8; 4],
    pub generation: u8,
    /// 25..=32.
    pub prefix_len: u8,
    pub _pad: [u8; 2],
}

/// Bits of the LPM key taken by the generation tag.
pub const GENERATION_BITS: u32 = 32;

/// What the longest matching prefix says about an address
/// (`PREFIX_ENTRIES[generation * MAX_PREFIX_ENTRIES + index]`). The agent folds
/// every less specific prefix into each entry, so one lookup answers all
/// questions (allowlist, blocklist by direction, L4 scope).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixEntry {
    /// `PREFIX_ALLOW`.
    pub flags: u32,
    /// Enforcing rule when this address is the source (0 = none).
    pub src_drop_rule: u32,
    /// Dry-run rule when this address is the source (0 = none).
    pub src_dryrun_rule: u32,
    pub dst_drop_rule: u32,
    pub dst_dryrun_rule: u32,
    /// Index into `L4_SETS` of the L4 rules whose source scope covers this
    /// address (0 = none).
    pub l4_src_set: u32,
    pub l4_dst_set: u32,
    pub _pad: u32,
}

/// The address is in the management/BGP allowlist.
pub const PREFIX_ALLOW: u32 = 1;

/// A set of L4 rule slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct L4Set {
    pub words: [u64; L4_WORDS],
}

/// One L4 rule, `L4_RULES[generation * MAX_L4_RULES + slot]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L4Rule {
    pub rule_id: u32,
    /// `L4_*` flags.
    pub flags: u16,
    /// IP protocol number; ignored unless `L4_PROTOCOL`.
    pub protocol: u8,
    pub tcp_flags_mask: u8,
    pub tcp_flags_value: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub _pad: u8,
    pub src_port_min: u16,
    pub src_port_max: u16,
    pub dst_port_min: u16,
    pub dst_port_max: u16,
}

/// Count would-drop and continue instead of dropping.
pub const L4_DRY_RUN: u16 = 1 << 0;
/// `protocol` must equal the packet's protocol.
pub const L4_PROTOCOL: u16 = 1 << 1;
/// Needs the L4 header (ports, TCP flags or ICMP fields): never matches a
/// non-first fragment.
pub const L4_NEEDS_HEADER: u16 = 1 << 2;
pub const L4_PORTS: u16 = 1 << 3;
pub const L4_TCP_FLAGS: u16 = 1 << 4;
pub const L4_ICMP_TYPE: u16 = 1 << 5;
pub const L4_ICMP_CODE: u16 = 1 << 6;

/// Per-CPU packet and byte counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Names of the maps in the ELF object, shared so nobody mistypes them.
pub mod names {
    pub const PROGRAM: &str = "edgefilter";
    pub const CONFIG: &str = "CONFIG";
    pub const GEN_META: &str = "GEN_META";
    pub const V4_TBL24: &str = "V4_TBL24";
    pub const V4_TBL8: &str = "V4_TBL8";
    pub const V4_LONG: &str = "V4_LONG";
    pub const PREFIX_ENTRIES: &str = "PREFIX_ENTRIES";
    pub const PREFIX_V6: &str = "PREFIX_V6";
    pub const L4_RULES: &str = "L4_RULES";
    pub const L4_SETS: &str = "L4_SETS";
    pub const REASON_STATS: &str = "REASON_STATS";
    pub const RULE_STATS: &str = "RULE_STATS";

    /// Every map, as pinned under `<bpffs>/<instance>/maps/`.
    pub const ALL_MAPS: [&str; 11] =
        [CONFIG, GEN_META, V4_TBL24, V4_TBL8, V4_LONG, PREFIX_V6, PREFIX_ENTRIES, L4_RULES, L4_SETS, REASON_STATS, RULE_STATS];
}
