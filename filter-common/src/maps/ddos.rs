//! Maps of volumetric attack mitigation: rate limits (token buckets on L4
//! rules), per-protected-prefix traffic accounting for the agent's
//! detection, reflection source-port counters and traffic samples.

/// `L4Rule::flags`: the rule is a rate limit (`RATE_LIMITS` at the same
/// slot): packets within the rate go on, the excess is dropped (or only
/// counted).
pub const L4_RATE_LIMIT: u16 = 1 << 7;
/// `L4Rule::flags`: the rule matches fragments only (first and non-first).
pub const L4_FRAGMENTS: u16 = 1 << 8;
/// `L4Rule::flags`: SYN authentication. A SYN (without ACK) from a source
/// not in `SYN_VERIFIED` is answered with a SYN cookie; an ACK from such a
/// source is checked as a cookie ACK: valid, its source is verified and
/// the ACK answered with a reset (the client connects again, now
/// verified); not a cookie, it goes on to the next rules like every other
/// packet the rule matches.
pub const L4_SYN_AUTH: u16 = 1 << 9;

/// `SYN_VERIFIED` key: a source that answered a SYN cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VerifiedKey {
    pub addr: [u8; 16],
    /// 0 or 1 (a word, so building a key is three stores, not a `memset`).
    pub v6: u32,
    pub _pad: u32,
}

/// Default `SYN_VERIFIED` capacity (LRU).
pub const DEFAULT_SYN_VERIFIED_CAPACITY: u32 = 65_536;
/// How long a verified source stays verified, by default.
pub const DEFAULT_SYN_AUTH_SECONDS: u32 = 600;

/// What the L4 walk asks the stage to do after a `syn_auth` rule matched
/// (`L4Walk::matched`): answer the SYN with a cookie, or check the ACK.
pub const L4_OUT_SYN_CHALLENGE: u32 = 3;
pub const L4_OUT_ACK_CHECK: u32 = 4;

/// What a bucket is kept per (`RateLimit::per`).
pub const RL_PER_RULE: u8 = 0;
/// The source address, aggregated to `src_len_v4`/`src_len_v6` bits.
pub const RL_PER_SOURCE: u8 = 1;
/// The destination address.
pub const RL_PER_DESTINATION: u8 = 2;
/// Source address, protocol and destination port.
pub const RL_PER_FLOW: u8 = 3;

/// One nanosecond-scaled token: a packet costs this much packet credit,
/// a bit this much bit credit; credit grows by `pps` (`bps`) per
/// nanosecond, so no division is needed on the packet path.
pub const RL_SCALE: u64 = 1_000_000_000;

/// The smallest bucket, in nanoseconds of its rate: five of the longest
/// clock ticks (10 ms at `CONFIG_HZ=100`), see `compile::rate_limit`.
pub const RL_MIN_BURST_NS: u64 = 50_000_000;

/// `RATE_LIMITS[generation * MAX_L4_RULES + slot]`: the limit of a
/// rate-limit L4 slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Packets per second (0: no packet limit).
    pub pps: u64,
    /// Bits per second, of the whole frame (0: no bit limit).
    pub bps: u64,
    /// Burst, scaled: `burst_packets * RL_SCALE`, `burst_bits * RL_SCALE`.
    pub pkt_cap: u64,
    pub bit_cap: u64,
    /// Nanoseconds in which an empty bucket fills up (`cap / rate`).
    pub pkt_fill_ns: u64,
    pub bit_fill_ns: u64,
    /// `RL_PER_*`.
    pub per: u8,
    pub src_len_v4: u8,
    pub src_len_v6: u8,
    /// Count the excess instead of dropping it.
    pub count_only: u8,
    pub _pad: u8,
    /// The slot whose buckets this slot uses (`RlKey::slot`): the first
    /// slot of its entry, shared by the entry's other port ranges.
    pub bucket: u16,
    pub _pad2: [u8; 2],
}

/// `RL_STATE` key: one bucket. 8-byte aligned so the kernel compares
/// keys a word at a time (the size is the same: 24 bytes).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RlKey {
    /// The address the bucket is kept per (masked), or zero.
    pub addr: [u8; 16],
    /// The rule's L4 slot.
    pub slot: u16,
    pub port: u16,
    pub proto: u8,
    pub v6: u8,
    pub generation: u8,
    pub _pad: u8,
}

/// `RL_STATE` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RlState {
    pub pkt_credit: u64,
    pub bit_credit: u64,
    pub last_ns: u64,
}

/// Default `RL_STATE` capacity (LRU: the least recently used bucket goes
/// first; a new key starts with a full bucket).
pub const DEFAULT_RL_CAPACITY: u32 = 262_144;

/// Protected prefix groups (`[[protect]]` in agent.toml).
pub const MAX_PROTECT_GROUPS: u32 = 64;

/// `PROTECT_STATS[group]` (per CPU): traffic toward a protected prefix
/// group, every packet whatever its verdict, for the agent's detection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtectStats {
    /// Packets and bytes by protocol: TCP, UDP, ICMP (both), other.
    pub packets: [u64; 4],
    pub bytes: [u64; 4],
    /// TCP SYN without ACK.
    pub syn: u64,
    /// Fragments (first and non-first).
    pub fragments: u64,
    /// UDP from a reflection source port (`GenerationMeta::reflect_ports`).
    pub reflected: u64,
    pub reflected_bytes: u64,
}

/// Reflection source ports watched (0 = unused slot).
pub const MAX_REFLECT_PORTS: usize = 16;
/// The default list: chargen, DNS, NTP, SNMP, CLDAP, SSDP, WS-Discovery,
/// memcached.
pub const DEFAULT_REFLECT_PORTS: [u16; 8] = [19, 53, 123, 161, 389, 1900, 3702, 11211];

/// `TRAFFIC_SAMPLES` record: one IP packet in `sample_every` (per CPU),
/// taken before any verdict.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub len: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub v6: u8,
    pub _pad: [u8; 2],
}
