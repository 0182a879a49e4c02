//! The maps, as declared in the ELF object. Layouts live in
//! `filter_common::maps`; capacities of the prefix tries are set by the
//! agent at load time.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use filter_common::maps::*;

#[map(name = "CONFIG")]
pub static CONFIG: Array<ActiveConfig> = Array::with_max_entries(1, 0);

#[map(name = "GEN_META")]
pub static GEN_META: Array<GenerationMeta> = Array::with_max_entries(GENERATIONS, 0);

// IPv4 DIR-24-8 (see filter_common::maps). The two tables are mmapable so
// the agent writes a whole generation with a memcpy. Array elements take at
// least 8 bytes in the kernel, so each u64 element packs two consecutive
// u32 slots (low half first): memory stays 4 bytes per slot and the
// agent's view of the mapping is a plain u32 array.
#[map(name = "V4_TBL24")]
pub static V4_TBL24: Array<u64> = Array::with_max_entries(GENERATIONS * TBL24_SIZE / 2, BPF_F_MMAPABLE);

#[map(name = "V4_TBL8")]
pub static V4_TBL8: Array<u64> = Array::with_max_entries(GENERATIONS * DEFAULT_V4_GROUPS * 256 / 2, BPF_F_MMAPABLE);

#[map(name = "V4_LONG")]
pub static V4_LONG: HashMap<V4LongKey, u32> =
    HashMap::with_max_entries(GENERATIONS * DEFAULT_PREFIX_V4_CAPACITY, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

#[map(name = "PREFIX_V6")]
pub static PREFIX_V6: LpmTrie<V6Key, u32> = LpmTrie::with_max_entries(GENERATIONS * DEFAULT_PREFIX_V6_CAPACITY, 0);

#[map(name = "PREFIX_ENTRIES")]
pub static PREFIX_ENTRIES: Array<PrefixEntry> = Array::with_max_entries(GENERATIONS * MAX_PREFIX_ENTRIES, 0);

#[map(name = "L4_RULES")]
pub static L4_RULES: Array<L4Rule> = Array::with_max_entries(GENERATIONS * MAX_L4_RULES, 0);

#[map(name = "L4_SETS")]
pub static L4_SETS: Array<L4Set> = Array::with_max_entries(GENERATIONS * MAX_L4_SETS, 0);

#[map(name = "REASON_STATS")]
pub static REASON_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(REASON_STATS_LEN, 0);

#[map(name = "RULE_STATS")]
pub static RULE_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_RULE_IDS, 0);

/// Counter slot of the interface this copy of the program is attached to;
/// the loader sets it (read-only data, so the JIT folds it).
#[unsafe(no_mangle)]
pub static IFACE_SLOT: u32 = 0;

/// Domain rules by the first hash of a name suffix (`filter_common::names`).
#[map(name = "DOMAINS")]
pub static DOMAINS: HashMap<u64, DomainEntry> =
    HashMap::with_max_entries(DEFAULT_DOMAIN_CAPACITY, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// TCP connections whose TLS or HTTP name was blocked: the rest of the
/// connection is dropped at lookup cost.
#[map(name = "BLOCKED_FLOWS")]
pub static BLOCKED_FLOWS: LruHashMap<FlowKey, BlockedFlow> = LruHashMap::with_max_entries(DEFAULT_FLOW_CAPACITY, 0);

/// ClientHellos whose extensions continue in the next segment.
#[map(name = "TLS_PENDING")]
pub static TLS_PENDING: LruHashMap<FlowKey, TlsPending> = LruHashMap::with_max_entries(DEFAULT_FLOW_CAPACITY, 0);

/// Operator counters of the domain stage (`filter_common::maps::l7`).
#[map(name = "L7_STATS")]
pub static L7_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(l7::LEN, 0);

/// Per-CPU room to copy a name or an HTTP header block into.
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<crate::l7::Scratch> = PerCpuArray::with_max_entries(1, 0);

// Signature stage (`filter_common::maps::sig`). The DFA of a generation is
// one 4 MiB value, looked up once per walk iteration and then indexed
// directly (a map lookup per byte cost a helper key on the stack and a
// bounds check each time); mmapable, so the agent writes it with a memcpy.
#[map(name = "SIG_DFA")]
pub static SIG_DFA: Array<[u32; SIG_DFA_SLOTS as usize]> = Array::with_max_entries(GENERATIONS, BPF_F_MMAPABLE);

#[map(name = "SIG_CLASSES")]
pub static SIG_CLASSES: Array<[u8; 256]> = Array::with_max_entries(GENERATIONS, 0);

#[map(name = "SIG_STATES")]
pub static SIG_STATES: Array<u64> = Array::with_max_entries(GENERATIONS * MAX_SIG_STATES, BPF_F_MMAPABLE);

#[map(name = "SIG_LIST")]
pub static SIG_LIST: Array<u32> = Array::with_max_entries(GENERATIONS * MAX_SIG_LIST, 0);

#[map(name = "SIG_RULES")]
pub static SIG_RULES: Array<SigRule> = Array::with_max_entries(GENERATIONS * MAX_SIG_RULES, 0);

#[map(name = "SIG_CONTENTS")]
pub static SIG_CONTENTS: Array<SigContent> = Array::with_max_entries(GENERATIONS * MAX_SIG_CONTENTS, 0);

/// Destination ports some signature applies to: per generation, TCP then
/// UDP, 1024 words of 64 ports.
#[map(name = "SIG_PORTS")]
pub static SIG_PORTS: Array<u64> = Array::with_max_entries(GENERATIONS * 2 * 1024, 0);

/// Temporarily banned sources (signature matches, deep inspection).
#[map(name = "BANS")]
pub static BANS: LruHashMap<BanKey, Ban> = LruHashMap::with_max_entries(DEFAULT_BAN_CAPACITY, 0);

#[map(name = "SIG_STATS")]
pub static SIG_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(filter_common::maps::stat::LEN, 0);

/// Packets for deep inspection in the agent.
#[map(name = "SIG_EVENTS")]
pub static SIG_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

#[map(name = "SIG_SCRATCH")]
pub static SIG_SCRATCH: PerCpuArray<crate::sig::SigScratch> = PerCpuArray::with_max_entries(1, 0);

// Rate limits and traffic accounting (`filter_common::maps::ddos`).
#[map(name = "RATE_LIMITS")]
pub static RATE_LIMITS: Array<RateLimit> = Array::with_max_entries(GENERATIONS * MAX_L4_RULES, 0);

/// Token buckets, shared by the CPUs (LRU: a new key starts full).
#[map(name = "RL_STATE")]
pub static RL_STATE: LruHashMap<RlKey, RlState> = LruHashMap::with_max_entries(DEFAULT_RL_CAPACITY, 0);

/// Per CPU and bucket slot: until when the last bucket found empty
/// cannot pass a packet (`crate::ddos::RlMemo`). Not pinned: each loaded
/// program keeps its own, derived from the shared `RL_STATE`.
#[map(name = "RL_MEMO")]
pub static RL_MEMO: PerCpuArray<crate::ddos::RlMemo> = PerCpuArray::with_max_entries(MAX_L4_RULES, 0);

#[map(name = "PROTECT_STATS")]
pub static PROTECT_STATS: PerCpuArray<ProtectStats> = PerCpuArray::with_max_entries(MAX_PROTECT_GROUPS, 0);

/// Per protected group and reflection port slot.
#[map(name = "REFLECT_STATS")]
pub static REFLECT_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_PROTECT_GROUPS * MAX_REFLECT_PORTS as u32, 0);

#[map(name = "TRAFFIC_SAMPLES")]
pub static TRAFFIC_SAMPLES: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[map(name = "SAMPLE_COUNTDOWN")]
pub static SAMPLE_COUNTDOWN: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "L4_SCRATCH")]
pub static L4_SCRATCH: PerCpuArray<crate::ddos::L4Walk> = PerCpuArray::with_max_entries(1, 0);

/// Sources that answered a SYN cookie, and when (ns): `syn_auth` rules
/// let their SYNs through for `GenerationMeta::syn_auth_ns`.
#[map(name = "SYN_VERIFIED")]
pub static SYN_VERIFIED: LruHashMap<VerifiedKey, u64> = LruHashMap::with_max_entries(DEFAULT_SYN_VERIFIED_CAPACITY, 0);

#[map(name = "SYN_SCRATCH")]
pub static SYN_SCRATCH: PerCpuArray<crate::synauth::SynScratch> = PerCpuArray::with_max_entries(1, 0);
