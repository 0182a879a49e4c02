//! Maps of the signature stage (attack signatures, `rules/signatures/`).
//!
//! The agent compiles the fast pattern of every signature in force (and
//! the deep-inspection hint patterns) into one ASCII-case-insensitive
//! Aho-Corasick DFA (`crate::signatures::kernel`). The program:
//!
//! 1. copies the first `sig_scan_bytes` of the transport payload into
//!    scratch memory and walks them through the DFA: `SIG_CLASSES` maps a
//!    byte to its class, `SIG_DFA[generation][row + class]` is the next
//!    state's row (states are premultiplied: `row = state * classes`; bit
//!    31: the next state reports patterns);
//! 2. for every distinct reporting state (at most [`SIG_MAX_HITS`]),
//!    `SIG_STATES` gives its slice of `SIG_LIST`: the indexes of the rules
//!    whose fast pattern ends there (and whether a hint does);
//! 3. evaluates the candidate rules in rule order, header first, then
//!    every content with Suricata's semantics on the scanned bytes
//!    (`SIG_RULES`, `SIG_CONTENTS`), within a work budget.
//!
//! Everything but `BANS` is tagged with the generation like the rest of
//! the rule set.

/// Signatures per generation.
pub const MAX_SIG_RULES: u32 = 4096;
/// 64-bit words of a candidate bitmap over the rules.
pub const SIG_RULE_WORDS: usize = (MAX_SIG_RULES / 64) as usize;
/// Contents of all signatures per generation.
pub const MAX_SIG_CONTENTS: u32 = 8192;
/// Contents of one signature.
pub const SIG_MAX_RULE_CONTENTS: usize = 16;
/// Longest content the kernel compares.
pub const MAX_CONTENT_LEN: usize = 255;
/// Port ranges per side of a rule header.
pub const MAX_SIG_PORT_RANGES: usize = 4;
/// Distinct address sets (`$HOME_NET`, `!$HOME_NET`, ...) of rule headers.
pub const MAX_SIG_GROUPS: u32 = 32;
/// "Any address" instead of a group.
pub const SIG_GROUP_ANY: u8 = 0xff;

/// `SIG_DFA` transitions per generation: one map value of 4 MiB (the
/// largest a map value may be), which the walk indexes directly, without
/// a map lookup per byte: 16k states of 64 byte classes (1,000 patterns of
/// 20 bytes make about 20k states of ~40 classes).
pub const SIG_DFA_SLOTS: u32 = 1 << 20;
pub const DEFAULT_SIG_TRANSITIONS: u32 = SIG_DFA_SLOTS;
/// DFA states per generation (`SIG_STATES`).
pub const MAX_SIG_STATES: u32 = 1 << 17;
/// `SIG_LIST` slots per generation.
pub const MAX_SIG_LIST: u32 = 1 << 16;
/// A transition into a state that reports patterns.
pub const SIG_NEXT_REPORTS: u32 = 1 << 31;
pub const SIG_STATE_MASK: u32 = SIG_NEXT_REPORTS - 1;
/// `SIG_STATES` value: bit 63 = a hint pattern ends here; bits 32..48 the
/// number of rules; bits 0..32 the first `SIG_LIST` slot.
pub const SIG_STATE_HINT: u64 = 1 << 63;

/// Payload bytes scanned: configurable in `[SIG_SCAN_MIN, SIG_SCAN_MAX]`.
pub const SIG_SCAN_MIN: u32 = 1024;
pub const SIG_SCAN_MAX: u32 = 4096;
/// Distinct reporting states remembered per packet; more make the packet
/// undecided (passed to deep inspection).
pub const SIG_MAX_HITS: usize = 32;
/// Work units per packet: one per byte comparison, per content search
/// and per candidate rule. Spent: the packet is undecided.
pub const SIG_WORK_BUDGET: u32 = 16384;
/// Content searches per buffer and rule (Suricata's
/// `inspection-recursion-limit`): the rule does not match past it.
pub const SIG_MAX_SEARCHES: u32 = 3000;
/// Payload bytes copied into a deep-inspection event.
pub const SIG_EVENT_BYTES: u32 = 1024;

/// `SigRule::flags`: the rule drops (a `drop` rule of an enforcing order).
pub const SIG_ENFORCE: u16 = 1 << 0;
/// `http` rule: TCP to one of the HTTP ports.
pub const SIG_HTTP: u16 = 1 << 1;
/// Some content is in an HTTP buffer: the request regions are needed.
pub const SIG_NEEDS_REGIONS: u16 = 1 << 2;

/// One signature, `SIG_RULES[generation * MAX_SIG_RULES + index]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigRule {
    /// `RULE_STATS` index: counts the packets it matched and those its
    /// bans dropped.
    pub rule_id: u32,
    pub sid: u32,
    /// Ban the source for this many seconds on a match (0 = no ban).
    pub ban_seconds: u32,
    /// First content in `SIG_CONTENTS` (of this generation).
    pub first_content: u16,
    pub n_contents: u16,
    pub flags: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Address group of the source and destination, or `SIG_GROUP_ANY`.
    pub src_group: u8,
    pub dst_group: u8,
    /// Ranges in use (0 = any port).
    pub n_src_ports: u8,
    pub n_dst_ports: u8,
    pub _pad: u8,
    /// `[lo, hi]` inclusive pairs.
    pub src_ports: [[u16; 2]; MAX_SIG_PORT_RANGES],
    pub dst_ports: [[u16; 2]; MAX_SIG_PORT_RANGES],
}

/// `SigContent::flags`.
pub const SIG_C_NOCASE: u16 = 1 << 0;
pub const SIG_C_NEGATED: u16 = 1 << 1;
/// `distance`/`within`: the window follows the previous positive match.
pub const SIG_C_RELATIVE: u16 = 1 << 2;
pub const SIG_C_ENDSWITH: u16 = 1 << 3;
/// `end` is given (`depth` or `within`).
pub const SIG_C_BOUNDED: u16 = 1 << 4;
/// A later relative content is anchored on this one: when the rest fails,
/// try this content's next occurrence.
pub const SIG_C_RETRY: u16 = 1 << 5;
/// The first content of its buffer (contents are grouped by buffer).
pub const SIG_C_FIRST: u16 = 1 << 6;
/// The last content of its buffer.
pub const SIG_C_LAST: u16 = 1 << 7;

/// Buffers (`SigContent::buffer`).
pub const SIG_BUF_PAYLOAD: u8 = 0;
pub const SIG_BUF_URI: u8 = 1;
pub const SIG_BUF_METHOD: u8 = 2;
pub const SIG_BUF_HOST: u8 = 3;
pub const SIG_BUF_HEADER: u8 = 4;
pub const SIG_BUF_BODY: u8 = 5;

/// One content, `SIG_CONTENTS[generation * MAX_SIG_CONTENTS + index]`.
/// A rule's contents are stored grouped by buffer (buffers in order of
/// first use, contents in rule order within each).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigContent {
    pub flags: u16,
    pub buffer: u8,
    /// Length of `bytes` in use (1..=255).
    pub len: u8,
    /// Absolute: `offset`. Relative: `distance` (may be negative).
    pub start: i32,
    /// Absolute: `depth`. Relative: `within`. With `SIG_C_BOUNDED` only.
    pub span: u32,
    pub _pad: u32,
    pub bytes: [u8; MAX_CONTENT_LEN + 1],
}

impl Default for SigContent {
    fn default() -> Self {
        SigContent { flags: 0, buffer: 0, len: 0, start: 0, span: 0, _pad: 0, bytes: [0; MAX_CONTENT_LEN + 1] }
    }
}

/// `BANS` key: a banned source address (IPv4 in the first four bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BanKey {
    pub addr: [u8; 16],
    pub v6: u8,
    pub _pad: [u8; 3],
}

/// `BANS` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ban {
    /// `CLOCK_MONOTONIC` (bpf_ktime_get_ns) nanoseconds when it lapses.
    pub expires_ns: u64,
    /// The rule (`RULE_STATS` index) that banned it: ban drops count there.
    pub rule_id: u32,
    pub _pad: u32,
}

/// Default `BANS` capacity (LRU: the oldest ban goes first when full).
pub const DEFAULT_BAN_CAPACITY: u32 = 65_536;

/// Why a packet went to deep inspection (`SigEvent::kind`).
pub const SIG_EV_CANDIDATE: u8 = 1;
/// A hint pattern (`${`, `%24%7b`...) and no kernel verdict.
pub const SIG_EV_HINT: u8 = 2;
/// The work budget or the hit log ran out: the kernel could not decide.
pub const SIG_EV_UNDECIDED: u8 = 3;

/// Deep-inspection record on the `SIG_EVENTS` ring buffer: this header,
/// then `captured` payload bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigEvent {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub kind: u8,
    pub v6: u8,
    pub proto: u8,
    pub _pad: u8,
    /// Transport payload length in the packet.
    pub payload_len: u32,
    /// Bytes that follow this header.
    pub captured: u32,
}

/// `SIG_STATS` indexes (per-CPU u64 counters, for operators).
pub mod stat {
    /// Packets whose payload was scanned.
    pub const SCANNED: u32 = 0;
    /// Packets with at least one candidate rule.
    pub const CANDIDATES: u32 = 1;
    /// Rule matches (drop and alert).
    pub const MATCHES: u32 = 2;
    /// Packets dropped because their source was banned.
    pub const BAN_DROPS: u32 = 3;
    /// Bans the kernel installed.
    pub const BANS: u32 = 4;
    /// Packets the kernel could not decide (budget or hit log spent).
    pub const UNDECIDED: u32 = 5;
    /// Events sent to deep inspection.
    pub const EVENTS: u32 = 6;
    /// Events not sent: over the rate limit.
    pub const EVENTS_LIMITED: u32 = 7;
    /// Events not sent: the ring buffer was full.
    pub const EVENTS_LOST: u32 = 8;
    pub const LEN: u32 = 9;
    pub const NAMES: [&str; LEN as usize] = [
        "scanned",
        "candidates",
        "matches",
        "ban_drops",
        "bans",
        "undecided",
        "events",
        "events_rate_limited",
        "events_lost",
    ];
}
