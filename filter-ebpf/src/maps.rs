//! The maps, as declared in the ELF object. Layouts live in
//! `filter_common::maps`; capacities of the prefix tries are set by the
//! agent at load time.
use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray},
};
use filter_common::maps::*;

#[map(name = "CONFIG")]
pub static CONFIG: Array<ActiveConfig> = Array::with_max_entries(1, 0);

#[map(name = "GEN_META")]
pub static GEN_META: Array<GenerationMeta> = Array::with_max_entries(GENERATIONS, 0);

#[map(name = "PREFIX_V4")]
pub static PREFIX_V4: LpmTrie<V4Key, PrefixEntry> =
    LpmTrie::with_max_entries(GENERATIONS * DEFAULT_PREFIX_V4_CAPACITY, 0);

#[map(name = "PREFIX_V6")]
pub static PREFIX_V6: LpmTrie<V6Key, PrefixEntry> =
    LpmTrie::with_max_entries(GENERATIONS * DEFAULT_PREFIX_V6_CAPACITY, 0);

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
