//! The kernel side as the agent sees it: load the XDP object, fill a map
//! generation from a compiled rule set, flip the active generation, attach
//! to interfaces and read the per-CPU counters back.
use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use aya::{
    maps::{lpm_trie::Key, Array, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use filter_common::compile::{CompiledGeneration, Limits};
use filter_common::maps::{self, names, *};

/// The compiled XDP object, embedded at build time (see build.rs).
pub static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/edgefilter"));

/// How big the prefix maps may grow, per generation.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// IPv4 prefixes longer than /24 outside dense blocks (`V4_LONG`);
    /// /24 and shorter are unlimited (`V4_TBL24`).
    pub prefixes_v4: u32,
    pub prefixes_v6: u32,
    /// Dense /24 blocks resolved by a 256-entry group (`V4_TBL8`, 1 KiB each).
    pub v4_groups: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity { prefixes_v4: DEFAULT_PREFIX_V4_CAPACITY, prefixes_v6: DEFAULT_PREFIX_V6_CAPACITY, v4_groups: DEFAULT_V4_GROUPS }
    }
}

// The u32 view of the u64-element tables relies on the low half coming first.
#[cfg(not(target_endian = "little"))]
compile_error!("the IPv4 tables are written through a little-endian u32 view");

/// A shared mapping of an mmapable array map's values.
struct Mapped {
    ptr: *mut u32,
    len: usize,
}

// SAFETY: the mapping is owned by one Dataplane and only written through
// `&mut self`.
unsafe impl Send for Mapped {}

impl Mapped {
    /// `entries` u32 slots (the map has half as many u64 elements).
    fn new(fd: std::os::fd::RawFd, entries: usize) -> Result<Self> {
        let bytes = entries * std::mem::size_of::<u32>();
        // SAFETY: mapping a BPF_F_MMAPABLE array of exactly its size.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
        if ptr == libc::MAP_FAILED {
            bail!("mmap of an array map failed: {}", std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr: ptr.cast(), len: entries })
    }

    fn slice_mut(&mut self) -> &mut [u32] {
        // SAFETY: valid for `len` u32s while mapped.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len * std::mem::size_of::<u32>()) };
    }
}

/// Attach mode, as the operator names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Driver (native) XDP; fails if the NIC driver lacks support.
    Native,
    /// Generic XDP in the kernel stack: works everywhere, slower.
    Skb,
    /// Native, falling back to skb with a warning.
    Auto,
}

/// Sums of per-CPU counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

/// What one generation put in the hash and trie, so it can be cleared later
/// (the arrays are simply overwritten by the next write of the generation).
#[derive(Default)]
struct Written {
    v4: Vec<V4LongKey>,
    v6: Vec<Key<V6Key>>,
}

pub struct Dataplane {
    tbl24: Mapped,
    tbl8: Mapped,
    ebpf: Ebpf,
    capacity: Capacity,
    active: Option<u32>,
    written: [Written; 2],
    attached: Vec<(String, &'static str)>,
}

impl Dataplane {
    /// Loads the program and creates its maps (nothing attached yet).
    pub fn load(capacity: Capacity) -> Result<Self> {
        if PROGRAM_OBJECT.is_empty() {
            bail!("this build has no XDP program embedded (built with AYA_BUILD_SKIP); run `cargo xtask setup` and rebuild");
        }
        raise_memlock_limit();
        let iface_slot = 0u32;
        let ebpf = EbpfLoader::new()
            .map_max_entries(names::V4_LONG, GENERATIONS * capacity.prefixes_v4)
            .map_max_entries(names::V4_TBL8, GENERATIONS * capacity.v4_groups * 256 / 2)
            .map_max_entries(names::PREFIX_V6, GENERATIONS * capacity.prefixes_v6)
            .override_global("IFACE_SLOT", &iface_slot, true)
            .load(PROGRAM_OBJECT)
            .context("loading the XDP object")?;
        let tbl24 = Mapped::new(raw_fd(&ebpf, names::V4_TBL24)?, (GENERATIONS * TBL24_SIZE) as usize)?;
        let tbl8 = Mapped::new(raw_fd(&ebpf, names::V4_TBL8)?, (GENERATIONS * capacity.v4_groups * 256) as usize)?;
        let mut dp = Dataplane { tbl24, tbl8, ebpf, capacity, active: None, written: Default::default(), attached: Vec::new() };
        let program: &mut Xdp = dp.program_mut()?;
        program.load().context("the kernel verifier rejected the XDP program")?;
        Ok(dp)
    }

    pub fn program(&self) -> Result<&Xdp> {
        Ok(self.ebpf.program(names::PROGRAM).context("program missing from object")?.try_into()?)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp> {
        Ok(self.ebpf.program_mut(names::PROGRAM).context("program missing from object")?.try_into()?)
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    pub fn active_generation(&self) -> Option<u32> {
        self.active
    }

    /// Compiles `rules` and applies them; see [`Dataplane::apply`].
    pub fn apply_rules(&mut self, rules: &filter_common::rules::RuleSet) -> Result<u32> {
        self.apply(|g, limits| filter_common::compile::compile_with(rules, g, limits))
    }

    /// Writes `compiled` into the inactive generation, switches every CPU to
    /// it with one array write, then clears the previous generation. A
    /// packet sees either the old set or the new one, never a mix.
    pub fn apply(&mut self, mut build: impl FnMut(u32, Limits) -> Result<CompiledGeneration, String>) -> Result<u32> {
        let next = self.active.map_or(0, |g| 1 - g);
        let compiled = build(next, Limits { v4_groups: self.capacity.v4_groups }).map_err(anyhow::Error::msg)?;
        if compiled.v4.long.len() > self.capacity.prefixes_v4 as usize {
            bail!(
                "{} IPv4 prefixes longer than /24 outside dense blocks exceed the configured capacity of {}",
                compiled.v4.long.len(),
                self.capacity.prefixes_v4
            );
        }
        if compiled.v4.groups.len() > self.capacity.v4_groups as usize {
            bail!("{} IPv4 groups exceed the configured {}", compiled.v4.groups.len(), self.capacity.v4_groups);
        }
        if compiled.v6.len() > self.capacity.prefixes_v6 as usize {
            bail!("{} IPv6 prefix entries exceed the configured capacity of {}", compiled.v6.len(), self.capacity.prefixes_v6);
        }
        self.clear_generation(next)?;
        self.write_generation(&compiled)?;
        let mut config: Array<&mut MapData, ActiveConfig> = Array::try_from(self.map_mut(names::CONFIG)?)?;
        config.set(0, ActiveConfig { generation: next, _pad: 0 }, 0).context("switching generation")?;
        let previous = self.active.replace(next);
        if let Some(old) = previous {
            // A packet that read the old generation just before the switch
            // may still be looking it up: XDP runs to completion within
            // microseconds, so a short grace period keeps its view whole.
            std::thread::sleep(std::time::Duration::from_millis(5));
            self.clear_generation(old)?;
        }
        Ok(next)
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf.map_mut(name).with_context(|| format!("map {name} missing from object"))
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf.map(name).with_context(|| format!("map {name} missing from object"))
    }

    fn write_generation(&mut self, c: &CompiledGeneration) -> Result<()> {
        let g = c.generation;
        // IPv4 arrays: straight into the mmapped generation.
        let tbl24 = &mut self.tbl24.slice_mut()[(g * TBL24_SIZE) as usize..((g + 1) * TBL24_SIZE) as usize];
        tbl24.copy_from_slice(&c.v4.tbl24);
        let group_base = (g * self.capacity.v4_groups * 256) as usize;
        let tbl8 = self.tbl8.slice_mut();
        for (i, group) in c.v4.groups.iter().enumerate() {
            tbl8[group_base + i * 256..group_base + (i + 1) * 256].copy_from_slice(group);
        }
        // Record the keys before writing: if a write fails half way, the
        // next apply still knows what to clear from this generation.
        let v4_keys: Vec<V4LongKey> = c.v4.long.iter().map(|(k, _)| *k).collect();
        let v4_values: Vec<u32> = c.v4.long.iter().map(|(_, v)| *v).collect();
        let v6_keys: Vec<Key<V6Key>> = c.v6.iter().map(|(len, key, _)| Key::new(*len, *key)).collect();
        let v6_values: Vec<u32> = c.v6.iter().map(|(_, _, v)| *v).collect();
        self.written[g as usize] = Written { v4: v4_keys, v6: v6_keys };
        let written = &self.written[g as usize];
        crate::batch::update(raw_fd(&self.ebpf, names::V4_LONG)?, &written.v4, &v4_values).context("writing IPv4 long prefixes")?;
        crate::batch::update(raw_fd(&self.ebpf, names::PREFIX_V6)?, &written.v6, &v6_values).context("writing IPv6 prefixes")?;
        let entry_keys: Vec<u32> = (0..c.entries.len() as u32).map(|i| g * MAX_PREFIX_ENTRIES + i).collect();
        crate::batch::update(raw_fd(&self.ebpf, names::PREFIX_ENTRIES)?, &entry_keys, &c.entries).context("writing prefix entries")?;
        let mut l4_rules = c.l4_rules.clone();
        // Unused slots are zeroed so nothing of an older rule set survives.
        l4_rules.resize(MAX_L4_RULES as usize, L4Rule::default());
        let rule_keys: Vec<u32> = (0..MAX_L4_RULES).map(|i| g * MAX_L4_RULES + i).collect();
        crate::batch::update(raw_fd(&self.ebpf, names::L4_RULES)?, &rule_keys, &l4_rules).context("writing L4 rules")?;
        let set_keys: Vec<u32> = (0..c.l4_sets.len() as u32).map(|i| g * MAX_L4_SETS + i).collect();
        crate::batch::update(raw_fd(&self.ebpf, names::L4_SETS)?, &set_keys, &c.l4_sets).context("writing L4 rule sets")?;
        crate::batch::update(raw_fd(&self.ebpf, names::GEN_META)?, &[g], &[c.meta]).context("writing generation settings")?;
        Ok(())
    }

    fn clear_generation(&mut self, g: u32) -> Result<()> {
        let written = std::mem::take(&mut self.written[g as usize]);
        crate::batch::delete(raw_fd(&self.ebpf, names::V4_LONG)?, &written.v4).context("removing IPv4 prefixes of the old generation")?;
        crate::batch::delete(raw_fd(&self.ebpf, names::PREFIX_V6)?, &written.v6).context("removing IPv6 prefixes of the old generation")?;
        Ok(())
    }

    /// Attaches to `interface`; returns the mode actually used.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<&'static str> {
        let program = self.program_mut()?;
        let used = match mode {
            AttachMode::Native => {
                program.attach(interface, XdpMode::Driver).with_context(|| format!("attaching natively to {interface}"))?;
                "native"
            }
            AttachMode::Skb => {
                program.attach(interface, XdpMode::Skb).with_context(|| format!("attaching (skb) to {interface}"))?;
                "skb"
            }
            AttachMode::Auto => match program.attach(interface, XdpMode::Driver) {
                Ok(_) => "native",
                Err(e) => {
                    eprintln!("warning: native XDP on {interface} failed ({e}); falling back to skb mode");
                    program.attach(interface, XdpMode::Skb).with_context(|| format!("attaching (skb) to {interface}"))?;
                    "skb"
                }
            },
        };
        self.attached.push((interface.to_string(), used));
        Ok(used)
    }

    pub fn attached(&self) -> &[(String, &'static str)] {
        &self.attached
    }

    /// Packets and bytes per (reason, dropped), summed over CPUs and
    /// interfaces.
    pub fn reason_totals(&self) -> Result<BTreeMap<(Reason, bool), Totals>> {
        let stats: PerCpuArray<&MapData, Counter> = PerCpuArray::try_from(self.map(names::REASON_STATS)?)?;
        let mut out = BTreeMap::new();
        for slot in 0..MAX_IFACE_SLOTS {
            for reason in Reason::ALL {
                for dropped in [false, true] {
                    let values = stats.get(&maps::reason_stats_index(slot, reason, dropped), 0)?;
                    let t: &mut Totals = out.entry((reason, dropped)).or_default();
                    for c in values.iter() {
                        t.packets += c.packets;
                        t.bytes += c.bytes;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Packets and bytes for rule ids `1..=max_id`, summed over CPUs.
    pub fn rule_totals(&self, max_id: u32) -> Result<Vec<Totals>> {
        let stats: PerCpuArray<&MapData, Counter> = PerCpuArray::try_from(self.map(names::RULE_STATS)?)?;
        (1..=max_id.min(MAX_RULE_IDS - 1))
            .map(|id| {
                let values = stats.get(&id, 0)?;
                Ok(values.iter().fold(Totals::default(), |t, c| Totals { packets: t.packets + c.packets, bytes: t.bytes + c.bytes }))
            })
            .collect()
    }

    /// Zeroes every counter (tests and benchmarks start from a clean slate).
    pub fn reset_counters(&mut self) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        for name in [names::REASON_STATS, names::RULE_STATS] {
            let mut stats: PerCpuArray<&mut MapData, Counter> = PerCpuArray::try_from(self.map_mut(name)?)?;
            for i in 0..stats.len() {
                stats.set(i, aya::maps::PerCpuValues::try_from(vec![Counter::default(); cpus])?, 0)?;
            }
        }
        Ok(())
    }
}

/// File descriptor of a map, for the batch syscalls and mmap aya lacks.
fn raw_fd(ebpf: &Ebpf, name: &str) -> Result<std::os::fd::RawFd> {
    use aya::maps::Map;
    use std::os::fd::{AsFd, AsRawFd};
    let map = ebpf.map(name).with_context(|| format!("map {name} missing from object"))?;
    let data = match map {
        Map::Array(d) | Map::HashMap(d) | Map::LpmTrie(d) | Map::PerCpuArray(d) => d,
        _ => bail!("map {name} has an unexpected type"),
    };
    Ok(data.fd().as_fd().as_raw_fd())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; raise it so large
/// rule sets load there too (newer kernels use memory cgroups instead).
fn raise_memlock_limit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}
