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

pub mod ddos;
pub mod sig;
pub use ddos::*;
pub use sig::*;

/// L4 rules per generation. Rule `slot` order is evaluation order.
pub const MAX_L4_RULES: u32 = 256;
/// 64-bit words in an L4 candidate bitmap (`MAX_L4_RULES / 64`).
pub const L4_WORDS: usize = 4;

/// `GenerationMeta::l4_by_proto` index of an IP protocol that has a mask.
pub const fn l4_proto_index(protocol: u8) -> Option<usize> {
    match protocol {
        6 => Some(0),
        17 => Some(1),
        1 => Some(2),
        58 => Some(3),
        _ => None,
    }
}
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
//   256-entry `V4_TBL8` group (densest blocks first, while groups last),
//   or carries a bitmap of the lengths /25../32 present in it, probed
//   longest first in the `V4_LONG` hash (the sparsest blocks, once groups
//   run out: usually one probe);
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
    /// A domain rule: DNS query name, TLS SNI or HTTP Host (and the rest
    /// of a TCP connection whose name was blocked).
    Domain = 8,
    /// An attack signature matched (`rules/signatures/`).
    Signature = 9,
    /// The source is banned for a while after a signature matched.
    Banned = 10,
    /// Over the rate of a rate-limit rule.
    RateLimit = 11,
    /// SYN authentication (`syn_auth` L4 rules): a SYN from an unverified
    /// source answered with a SYN cookie, or a returning cookie ACK
    /// answered with a reset once its source is verified (both sent back,
    /// `XDP_TX`); or a SYN that cannot be answered, dropped.
    SynAuth = 12,
}

pub const N_REASONS: u32 = 13;

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
        Reason::Domain,
        Reason::Signature,
        Reason::Banned,
        Reason::RateLimit,
        Reason::SynAuth,
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
            Reason::Domain => "domain",
            Reason::Signature => "signature",
            Reason::Banned => "banned",
            Reason::RateLimit => "rate_limit",
            Reason::SynAuth => "syn_auth",
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
    /// 1 while `BANS` may hold a ban: the program looks bans up only then
    /// (the kernel sets it when it bans; the agent clears it when its
    /// sweep finds the map empty).
    pub bans: u32,
    pub _pad: u32,
    /// Tests only (the agent never sets it): when non-zero, the clock of
    /// the rate limits, in nanoseconds, instead of the kernel's monotonic
    /// clock, so a test can replay packets at chosen instants.
    pub frozen_ns: u64,
}

/// `GEN_META[generation]`: per-generation settings that are not prefixes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationMeta {
    /// L4 rules whose source is "any address".
    pub l4_any_src: [u64; L4_WORDS],
    /// L4 rules whose destination is "any address".
    pub l4_any_dst: [u64; L4_WORDS],
    /// L4 rules a packet of each protocol can match (`L4_PROTO_*`: the
    /// rule's protocol, or any): the walk skips the others without
    /// looking at them. Other protocols look at every candidate.
    pub l4_by_proto: [[u64; L4_WORDS]; 4],
    /// `META_*` flags.
    pub flags: u32,
    /// Number of L4 rule slots in use (0 skips the L4 stage).
    pub l4_rule_count: u32,
    /// Fragment policy (`FRAG_*`) indexed by IP protocol number.
    pub fragment_policy: [u8; 256],
    /// Seeds of the domain name hashes (`crate::names`); constant for the
    /// life of the `DOMAINS` map.
    pub name_seeds: [u64; 2],
    /// Domain rules in force (0 skips the domain stage).
    pub domain_rules: u32,
    /// Fewest and most labels of a domain rule's name: name suffixes
    /// outside this range cannot be in `DOMAINS` and are not looked up.
    pub domain_min_labels: u16,
    pub domain_max_labels: u16,
    /// Destination ports where names are looked for (0 = unused slot):
    /// DNS over UDP and TCP, TLS ClientHello, HTTP/1.x Host.
    pub dns_ports: [u16; MAX_L7_PORTS],
    pub tls_ports: [u16; MAX_L7_PORTS],
    pub http_ports: [u16; MAX_L7_PORTS],
    /// Bytes of the longest pattern in the signature DFA: a walk started
    /// afresh is in the single walk's state after that many bytes.
    pub sig_pattern_max: u16,
    pub _pad2: [u16; 3],
    /// Signatures in force (0 skips the signature stage).
    pub sig_rules: u32,
    /// Byte classes of the DFA (the stride of a state's row).
    pub sig_classes: u32,
    /// Unanchored start state of the DFA.
    pub sig_start: u32,
    /// Payload bytes scanned (`SIG_SCAN_MIN..=SIG_SCAN_MAX`).
    pub sig_scan_bytes: u32,
    /// Address groups of addresses no prefix covers.
    pub sig_default_groups: u32,
    /// Deep-inspection events per second and CPU (0: none).
    pub sig_event_rate: u32,
    /// Per protocol (0 TCP, 1 UDP): some rule applies to any destination
    /// port, so `SIG_PORTS` need not be looked at.
    pub sig_any_port: [u8; 2],
    /// Some signature uses an HTTP buffer: candidates need the regions.
    pub sig_needs_regions: u8,
    /// This entry's own index in `GEN_META` (the tables to read).
    pub generation: u8,
    /// First `SIG_DFA` slot of this generation.
    pub sig_dfa_base: u32,
    /// UDP source ports counted as reflection toward protected prefixes
    /// (0 = unused slot).
    pub reflect_ports: [u16; MAX_REFLECT_PORTS],
    /// Sample one packet in this many per CPU (0: no sampling).
    pub sample_every: u32,
    /// Protected prefix groups in use (0 skips the accounting).
    pub protect_groups: u32,
    /// How long a source verified by SYN authentication stays verified.
    pub syn_auth_ns: u64,
    /// Bit `port % 256` is set for each of `reflect_ports`: a UDP source
    /// port whose bit is clear is not a reflection port, and the 16
    /// comparisons are skipped (most UDP toward a protected prefix).
    pub reflect_port_filter: [u64; 4],
}

/// `GenerationMeta::reflect_port_filter` of `ports` (0 = unused slot).
pub fn reflect_port_filter(ports: &[u16]) -> [u64; 4] {
    let mut bits = [0u64; 4];
    for &p in ports.iter().filter(|&&p| p != 0) {
        let b = usize::from(p & 0xff);
        bits[b >> 6] |= 1 << (b & 63);
    }
    bits
}

/// Whether `port`'s bit is set in a `reflect_port_filter`.
#[inline(always)]
pub fn may_be_reflect_port(filter: &[u64; 4], port: u16) -> bool {
    let b = (port & 0xff) as usize;
    filter[(b >> 6) & 3] & (1 << (b & 63)) != 0
}

/// Ports per kind in `GenerationMeta`.
pub const MAX_L7_PORTS: usize = 4;

impl Default for GenerationMeta {
    fn default() -> Self {
        GenerationMeta {
            l4_any_src: [0; L4_WORDS],
            l4_any_dst: [0; L4_WORDS],
            l4_by_proto: [[0; L4_WORDS]; 4],
            flags: 0,
            l4_rule_count: 0,
            fragment_policy: [FRAG_PASS; 256],
            name_seeds: [0; 2],
            domain_rules: 0,
            domain_min_labels: 0,
            domain_max_labels: 0,
            dns_ports: [53, 0, 0, 0],
            tls_ports: [443, 0, 0, 0],
            http_ports: [80, 0, 0, 0],
            sig_pattern_max: 0,
            _pad2: [0; 3],
            sig_rules: 0,
            sig_classes: 0,
            sig_start: 0,
            sig_scan_bytes: SIG_SCAN_MIN,
            sig_default_groups: 0,
            sig_event_rate: 0,
            sig_any_port: [0; 2],
            sig_needs_regions: 0,
            generation: 0,
            sig_dfa_base: 0,
            reflect_ports: [0; MAX_REFLECT_PORTS],
            sample_every: 0,
            protect_groups: 0,
            syn_auth_ns: DEFAULT_SYN_AUTH_SECONDS as u64 * 1_000_000_000,
            reflect_port_filter: [0; 4],
        }
    }
}

// ## Domains
//
// `DOMAINS` maps the first hash of a name suffix (see `crate::names`) to
// what rules say about it. It is not tagged with a generation: the agent
// updates entries in place (each entry atomically), so during a reload a
// packet sees each name either before or after the change.

/// `DOMAINS` value: rules on one name, for the name itself (`exact_*`) and
/// for names below it (`sub_*`). A `.example.com` rule fills both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DomainEntry {
    /// Second hash of the suffix: must equal the packet's.
    pub check: u64,
    /// Enforcing rule (drop, answer, or pass) and its `DOMAIN_*` action.
    pub exact_rule: u32,
    pub sub_rule: u32,
    /// Dry-run rule (counted, never acts).
    pub exact_dry_rule: u32,
    pub sub_dry_rule: u32,
    pub exact_action: u8,
    pub sub_action: u8,
    pub _pad: [u8; 6],
}

/// No enforcing rule for this scope.
pub const DOMAIN_NONE: u8 = 0;
/// Drop the packet (and, for TCP, the rest of the connection).
pub const DOMAIN_DROP: u8 = 1;
/// DNS: answer NXDOMAIN from the kernel (other protocols: drop).
pub const DOMAIN_NXDOMAIN: u8 = 2;
/// DNS: answer REFUSED from the kernel (other protocols: drop).
pub const DOMAIN_REFUSED: u8 = 3;
/// Allowlisted name (RPZ passthru): no domain rule applies below it.
pub const DOMAIN_PASS: u8 = 4;

/// Default `DOMAINS` capacity (the agent sets it from its configuration).
pub const DEFAULT_DOMAIN_CAPACITY: u32 = 1_100_000;
/// TCP connections remembered as blocked (`BLOCKED_FLOWS`), and TLS
/// ClientHellos awaiting their next segment (`TLS_PENDING`).
pub const DEFAULT_FLOW_CAPACITY: u32 = 65_536;

/// A TCP connection, as the client sends (both families; IPv4 uses the
/// first four bytes of each address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub v6: u8,
    pub _pad: [u8; 3],
}

/// `BLOCKED_FLOWS` value: the rule that blocked the connection's name.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockedFlow {
    pub rule_id: u32,
    pub _pad: u32,
}

/// `TLS_PENDING` value: a ClientHello whose extensions continue in the
/// next segment. Offsets are from the start of the next segment's payload
/// (the last four bytes of this one are kept, so an extension header may
/// straddle the boundary).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsPending {
    /// TCP sequence number the next segment must carry.
    pub next_seq: u32,
    /// Offset of the next extension header (may be -1..-4: in `tail`).
    pub next_ext: i32,
    /// Offset where the extensions end.
    pub ext_end: i32,
    /// Last four payload bytes of the previous segment.
    pub tail: [u8; 4],
}

/// `L7_STATS` indexes (per-CPU u64 counters, for operators).
pub mod l7 {
    /// DNS queries whose name was looked up.
    pub const DNS_QUERIES: u32 = 0;
    /// Queries answered from the kernel (NXDOMAIN or REFUSED).
    pub const DNS_ANSWERED: u32 = 1;
    /// DNS messages to a DNS port whose question could not be read.
    pub const DNS_UNPARSED: u32 = 2;
    /// TLS ClientHellos whose server_name was looked up.
    pub const TLS_SNI: u32 = 3;
    /// ClientHellos continued in a second segment.
    pub const TLS_CONTINUED: u32 = 4;
    /// ClientHellos carrying Encrypted Client Hello (reported, never blocked).
    pub const TLS_ECH: u32 = 5;
    /// ClientHellos without server_name, or that could not be followed.
    pub const TLS_NO_SNI: u32 = 6;
    /// HTTP requests whose Host was looked up.
    pub const HTTP_HOST: u32 = 7;
    /// HTTP requests without a Host header within the scanned bytes.
    pub const HTTP_NO_HOST: u32 = 8;
    /// Segments dropped because their connection's name was blocked.
    pub const FLOW_DROPS: u32 = 9;
    /// Names that are not valid (empty or overlong labels, too long).
    pub const BAD_NAMES: u32 = 10;
    pub const LEN: u32 = 11;
    pub const NAMES: [&str; LEN as usize] = [
        "dns_queries",
        "dns_answered",
        "dns_unparsed",
        "tls_sni",
        "tls_continued",
        "tls_ech",
        "tls_no_sni",
        "http_host",
        "http_no_host",
        "flow_drops",
        "bad_names",
    ];
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
    /// Signature address groups (`$HOME_NET`...) containing this address.
    pub sig_groups: u32,
    /// Protected prefix group of this address, plus one (0: none).
    pub protect: u32,
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
    pub const DOMAINS: &str = "DOMAINS";
    pub const BLOCKED_FLOWS: &str = "BLOCKED_FLOWS";
    pub const TLS_PENDING: &str = "TLS_PENDING";
    pub const L7_STATS: &str = "L7_STATS";
    pub const SIG_DFA: &str = "SIG_DFA";
    pub const SIG_CLASSES: &str = "SIG_CLASSES";
    pub const SIG_STATES: &str = "SIG_STATES";
    pub const SIG_LIST: &str = "SIG_LIST";
    pub const SIG_RULES: &str = "SIG_RULES";
    pub const SIG_CONTENTS: &str = "SIG_CONTENTS";
    pub const SIG_PORTS: &str = "SIG_PORTS";
    pub const BANS: &str = "BANS";
    pub const SIG_STATS: &str = "SIG_STATS";
    pub const SIG_EVENTS: &str = "SIG_EVENTS";
    pub const RATE_LIMITS: &str = "RATE_LIMITS";
    pub const RL_STATE: &str = "RL_STATE";
    pub const PROTECT_STATS: &str = "PROTECT_STATS";
    pub const REFLECT_STATS: &str = "REFLECT_STATS";
    pub const TRAFFIC_SAMPLES: &str = "TRAFFIC_SAMPLES";
    pub const SYN_VERIFIED: &str = "SYN_VERIFIED";

    /// Every map, as pinned under `<bpffs>/<instance>/maps/`.
    pub const ALL_MAPS: [&str; 31] = [
        CONFIG,
        GEN_META,
        V4_TBL24,
        V4_TBL8,
        V4_LONG,
        PREFIX_V6,
        PREFIX_ENTRIES,
        L4_RULES,
        L4_SETS,
        REASON_STATS,
        RULE_STATS,
        DOMAINS,
        BLOCKED_FLOWS,
        TLS_PENDING,
        L7_STATS,
        SIG_DFA,
        SIG_CLASSES,
        SIG_STATES,
        SIG_LIST,
        SIG_RULES,
        SIG_CONTENTS,
        SIG_PORTS,
        BANS,
        SIG_STATS,
        SIG_EVENTS,
        RATE_LIMITS,
        RL_STATE,
        PROTECT_STATS,
        REFLECT_STATS,
        TRAFFIC_SAMPLES,
        SYN_VERIFIED,
    ];
}
