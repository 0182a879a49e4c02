//! The maps, as declared in the ELF object. Layouts live in
//! `filter_common::maps`; capacities of the prefix tries are set by the
//! agent at load time.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
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
