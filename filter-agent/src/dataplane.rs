//! The kernel side as the agent sees it: load the XDP object, fill a map
//! generation from a compiled rule set, flip the active generation, attach
//! to interfaces and read the per-CPU counters back.
use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

use aya::{
    maps::{lpm_trie::Key, Array, MapData, PerCpuArray},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use filter_common::compile::{CompiledGeneration, Limits};

/// What the generations hold, diffed at every push: FxHash, not SipHash.
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
use filter_common::maps::{self, names, *};
use filter_common::rules::RuleSet;

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
    /// Distinct names of domain rules (`DOMAINS`; one map for both
    /// generations, updated in place).
    pub domains: u32,
    /// TCP connections remembered as blocked by name (`BLOCKED_FLOWS`),
    /// and TLS ClientHellos awaiting their next segment (`TLS_PENDING`).
    pub flows: u32,
    /// Signature automaton transitions allowed per generation (states
    /// times byte classes), at most `SIG_DFA_SLOTS` (the map's fixed size).
    pub signature_transitions: u32,
    /// Banned sources held at once (`BANS`, LRU).
    pub bans: u32,
    /// Rate-limit buckets held at once (`RL_STATE`, LRU).
    pub rate_limit_buckets: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            prefixes_v4: DEFAULT_PREFIX_V4_CAPACITY,
            prefixes_v6: DEFAULT_PREFIX_V6_CAPACITY,
            v4_groups: DEFAULT_V4_GROUPS,
            domains: DEFAULT_DOMAIN_CAPACITY,
            flows: DEFAULT_FLOW_CAPACITY,
            signature_transitions: DEFAULT_SIG_TRANSITIONS,
            bans: DEFAULT_BAN_CAPACITY,
            rate_limit_buckets: DEFAULT_RL_CAPACITY,
        }
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
    /// `entries` u32 slots from u32 slot `first` (page aligned); the map has
    /// half as many u64 elements.
    fn new(fd: std::os::fd::RawFd, first: usize, entries: usize) -> Result<Self> {
        let bytes = entries * std::mem::size_of::<u32>();
        let offset = (first * std::mem::size_of::<u32>()) as libc::off_t;
        // SAFETY: mapping part of a BPF_F_MMAPABLE array within its size.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, offset) };
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

impl std::ops::Deref for Mapped {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        // SAFETY: valid for `len` u32s while mapped.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for Mapped {
    fn deref_mut(&mut self) -> &mut [u32] {
        self.slice_mut()
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len * std::mem::size_of::<u32>()) };
    }
}

/// Attach mode, as the operator names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// What a generation holds in the hash and trie (and which IPv4 layout),
/// so the next write of that generation only changes what differs: a push
/// of ten prefixes costs ten map updates, not a rewrite of a million.
#[derive(Default)]
struct Written {
    v4: FastMap<V4LongKey, u32>,
    v6: FastMap<(u32, V6Key), u32>,
    v4_fingerprint: Option<u64>,
    /// `PREFIX_ENTRIES` of the generation as written (empty: unknown, so
    /// the next write is a full one).
    entries: Vec<PrefixEntry>,
    /// A write failed half way: rescan the maps before trusting this.
    dirty: bool,
    /// Fingerprint of the signature tables the generation holds.
    signatures: Option<u64>,
}

/// The program attached to one interface. With pinning, each interface
/// has its own copy of the program (its counter slot is compiled in as
/// read-only data) sharing the pinned maps.
pub struct Attachment {
    pub interface: String,
    pub mode: &'static str,
    pub slot: u32,
    /// Whether an existing (pinned) attachment was taken over in place.
    pub adopted: bool,
    _program: Option<Ebpf>,
}

/// What `DOMAINS` holds. One map serves both generations: entries are
/// updated in place, each atomically.
#[derive(Default)]
struct WrittenDomains {
    entries: std::collections::HashMap<u64, DomainEntry>,
    /// Identifies the domain rules and seeds `entries` was compiled from,
    /// so an apply that changes no domain rule skips compiling them.
    fingerprint: Option<u64>,
    /// A write failed half way: rescan the map before trusting `entries`.
    dirty: bool,
}

pub struct Dataplane {
    ebpf: Ebpf,
    capacity: Capacity,
    /// `<bpffs>/<instance>` when maps and links are pinned.
    pins: Option<PathBuf>,
    active: Option<u32>,
    written: [Written; 2],
    domains: WrittenDomains,
    /// The name hash seeds of the generation found in force when adopting.
    adopted_seeds: Option<[u64; 2]>,
    attached: Vec<Attachment>,
}

/// Loads the object with the configured capacities, the counter slot and,
/// when pinning, every map pinned (created, or reused if already pinned).
fn load_object(capacity: Capacity, pins: Option<&Path>, slot: u32) -> Result<Ebpf> {
    let map_paths: Vec<(&str, PathBuf)> = match pins {
        Some(dir) => names::ALL_MAPS.iter().map(|n| (*n, dir.join("maps").join(n))).collect(),
        None => Vec::new(),
    };
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(names::V4_LONG, GENERATIONS * capacity.prefixes_v4)
        .map_max_entries(names::V4_TBL8, GENERATIONS * capacity.v4_groups * 256 / 2)
        .map_max_entries(names::PREFIX_V6, GENERATIONS * capacity.prefixes_v6)
        .map_max_entries(names::DOMAINS, capacity.domains)
        .map_max_entries(names::BLOCKED_FLOWS, capacity.flows)
        .map_max_entries(names::TLS_PENDING, capacity.flows)
        .map_max_entries(names::BANS, capacity.bans)
        .map_max_entries(names::RL_STATE, capacity.rate_limit_buckets)
        .override_global("IFACE_SLOT", &slot, true);
    for (name, path) in &map_paths {
        loader.map_pin_path(name, path.as_path());
    }
    loader.load(PROGRAM_OBJECT).context("loading the XDP object")
}

impl Dataplane {
    /// Loads the program and creates private maps (nothing attached, nothing
    /// pinned): for tests, benchmarks and offline use.
    pub fn load(capacity: Capacity) -> Result<Self> {
        Self::open(capacity, None)
    }

    /// Loads the program with its maps pinned under `dir` (`<bpffs>/<instance>`),
    /// reusing maps a previous agent pinned there: counters continue and the
    /// active rule generation is adopted (`adopted()`), so a restart has no
    /// gap in enforcement.
    pub fn open_pinned(dir: &Path, capacity: Capacity) -> Result<Self> {
        std::fs::create_dir_all(dir.join("maps")).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::create_dir_all(dir.join("links"))?;
        Self::open(capacity, Some(dir.to_path_buf()))
    }

    fn open(capacity: Capacity, pins: Option<PathBuf>) -> Result<Self> {
        if PROGRAM_OBJECT.is_empty() {
            bail!("this build has no XDP program embedded (built with AYA_BUILD_SKIP); run `cargo xtask setup` and rebuild");
        }
        raise_memlock_limit();
        let ebpf = load_object(capacity, pins.as_deref(), 0)?;
        if pins.is_some() {
            check_pinned_sizes(&ebpf, capacity)?;
        }
        let mut dp = Dataplane {
            ebpf,
            capacity,
            pins,
            active: None,
            written: Default::default(),
            domains: WrittenDomains::default(),
            adopted_seeds: None,
            attached: Vec::new(),
        };
        let program: &mut Xdp = dp.program_mut()?;
        program.load().context("the kernel verifier rejected the XDP program")?;
        dp.adopt()?;
        Ok(dp)
    }

    /// Picks up the state a previous agent left in pinned maps: the active
    /// generation and the keys each generation holds (to clear them later).
    fn adopt(&mut self) -> Result<()> {
        let config: Array<&MapData, ActiveConfig> = Array::try_from(self.map(names::CONFIG)?)?;
        let c = config.get(&0, 0)?;
        if c.loaded == 0 {
            return Ok(());
        }
        self.written = self.scan()?;
        self.domains = WrittenDomains { entries: self.scan_domains()?, fingerprint: None, dirty: false };
        let generation = c.generation & 1;
        let meta: Array<&MapData, GenerationMeta> = Array::try_from(self.map(names::GEN_META)?)?;
        let seeds = meta.get(&generation, 0)?.name_seeds;
        self.adopted_seeds = (seeds != [0, 0]).then_some(seeds);
        self.active = Some(generation);
        Ok(())
    }

    /// What `DOMAINS` holds, read back from the kernel (empty if this
    /// program has no such map).
    fn scan_domains(&self) -> Result<std::collections::HashMap<u64, DomainEntry>> {
        let Some(map) = self.ebpf.map(names::DOMAINS) else { return Ok(Default::default()) };
        let domains: aya::maps::HashMap<&MapData, u64, DomainEntry> = aya::maps::HashMap::try_from(map)?;
        let mut out = std::collections::HashMap::new();
        for entry in domains.iter() {
            let (key, value) = entry?;
            out.insert(key, value);
        }
        Ok(out)
    }

    /// The name hash seeds of the rule set a previous agent left in force
    /// (`None` if nothing was adopted or it had none). `DOMAINS` is keyed
    /// by them, so they must be kept.
    pub fn adopted_name_seeds(&self) -> Option<[u64; 2]> {
        self.adopted_seeds
    }

    /// What each generation holds, read back from the kernel maps.
    fn scan(&self) -> Result<[Written; 2]> {
        let mut written: [Written; 2] = Default::default();
        let long: aya::maps::HashMap<&MapData, V4LongKey, u32> = aya::maps::HashMap::try_from(self.map(names::V4_LONG)?)?;
        for entry in long.iter() {
            let (key, value) = entry?;
            written[(key.generation & 1) as usize].v4.insert(key, value);
        }
        let v6: aya::maps::LpmTrie<&MapData, V6Key, u32> = aya::maps::LpmTrie::try_from(self.map(names::PREFIX_V6)?)?;
        for entry in v6.iter() {
            let (key, value) = entry?;
            written[(key.data().generation & 1) as usize].v6.insert((key.prefix_len(), key.data()), value);
        }
        Ok(written)
    }

    /// True when a previous agent's rule set was found in force.
    pub fn adopted(&self) -> bool {
        self.active.is_some()
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

    /// Compiles `rules` and applies them; see [`Dataplane::apply`]. Their
    /// domain rules (hashed with `rules.settings.name_seeds`) are written
    /// to `DOMAINS` by difference after the generation is built and before
    /// it is switched to. An error starting with
    /// [`filter_common::compile::DOMAIN_HASH_COLLISION`] asks for new seeds;
    /// nothing was written then.
    pub fn apply_rules(&mut self, rules: &RuleSet) -> Result<u32> {
        let domains = self.compile_domains(rules)?;
        self.apply_with(domains, |g, limits, tbl24, held| filter_common::compile::compile_incremental(rules, g, limits, tbl24, held))
    }

    /// The `DOMAINS` contents for `rules`, or `None` when they are what the
    /// map already holds.
    fn compile_domains(&self, rules: &RuleSet) -> Result<Option<(std::collections::HashMap<u64, DomainEntry>, u64)>> {
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            rules.settings.name_seeds.hash(&mut h);
            rules.domains.len().hash(&mut h);
            for r in &rules.domains {
                (r.rule_id, &r.pattern, r.action, r.dry_run).hash(&mut h);
            }
            h.finish()
        };
        if !self.domains.dirty && self.domains.fingerprint == Some(fingerprint) {
            return Ok(None);
        }
        let entries = filter_common::compile::compile_domains(rules, rules.settings.name_seeds).map_err(anyhow::Error::msg)?;
        if entries.len() > self.capacity.domains as usize {
            bail!(
                "{} domain names exceed the configured capacity of {} (`[capacity] domains`)",
                entries.len(),
                self.capacity.domains
            );
        }
        if !entries.is_empty() && self.ebpf.map(names::DOMAINS).is_none() {
            bail!("this XDP program has no {} map: domain rules cannot be enforced", names::DOMAINS);
        }
        Ok(Some((entries, fingerprint)))
    }

    /// Builds the inactive generation (`build` gets it, its limits and its
    /// `V4_TBL24` slots, mapped, to fill in place), switches every CPU to it
    /// with one array write, then clears the previous generation. A packet
    /// sees either the old set or the new one, never a mix. `DOMAINS` is
    /// left as it is.
    pub fn apply(&mut self, build: impl FnMut(u32, Limits, filter_common::compile::Tbl24Source, Option<u64>) -> Result<CompiledGeneration, String>) -> Result<u32> {
        self.apply_with(None, build)
    }

    fn apply_with(
        &mut self,
        domains: Option<(std::collections::HashMap<u64, DomainEntry>, u64)>,
        mut build: impl FnMut(u32, Limits, filter_common::compile::Tbl24Source, Option<u64>) -> Result<CompiledGeneration, String>,
    ) -> Result<u32> {
        let next = self.active.map_or(0, |g| 1 - g);
        if self.written[next as usize].dirty {
            let [w0, w1] = self.scan()?;
            self.written[next as usize] = if next == 0 { w0 } else { w1 };
        }
        let held_v4 = self.written[next as usize].v4_fingerprint;
        // Mapped only while writing, and only if IPv4 changed: the agent
        // does not keep 128 MiB of kernel tables in its address space, and a
        // push of IPv6 or L4 rules does not pay for mapping them.
        let fd = raw_fd(&self.ebpf, names::V4_TBL24)?;
        let mut source = || -> Result<filter_common::compile::Tbl24, String> {
            Mapped::new(fd, (next * TBL24_SIZE) as usize, TBL24_SIZE as usize).map(|m| Box::new(m) as _).map_err(|e| format!("{e:#}"))
        };
        let limits = Limits {
            v4_groups: self.capacity.v4_groups,
            signatures: filter_common::signatures::kernel::SigLimits { transitions: self.capacity.signature_transitions },
        };
        let compiled = build(next, limits, &mut source, held_v4).map_err(anyhow::Error::msg)?;
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
        if let Err(e) = self.write_generation(&compiled) {
            self.written[next as usize].dirty = true;
            self.written[next as usize].v4_fingerprint = None;
            return Err(e);
        }
        // Domain entries carry rule ids whose counters were reset before
        // this apply; they go in before the generation that counts them.
        if let Some((entries, fingerprint)) = domains {
            self.write_domains(entries, fingerprint)?;
        }
        let mut config: Array<&mut MapData, ActiveConfig> = Array::try_from(self.map_mut(names::CONFIG)?)?;
        // `bans` as found: a ban the kernel adds between this read and the
        // write may lose its flag, which the sweep (every 0.5 s) sets
        // again; setting it here always would cost every packet a BANS
        // lookup where no agent sweeps (tests, benchmarks).
        let current = config.get(&0, 0).unwrap_or_default();
        config.set(0, ActiveConfig { generation: next, loaded: 1, ..current }, 0).context("switching generation")?;
        self.active = Some(next);
        Ok(next)
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf.map_mut(name).with_context(|| format!("map {name} missing from object"))
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf.map(name).with_context(|| format!("map {name} missing from object"))
    }

    /// Turns `DOMAINS` into `new` by difference: stale names deleted first
    /// (so the map never holds more than the larger of the two sets), then
    /// new and changed entries written.
    fn write_domains(&mut self, new: std::collections::HashMap<u64, DomainEntry>, fingerprint: u64) -> Result<()> {
        if self.domains.dirty {
            self.domains.entries = self.scan_domains()?;
            self.domains.dirty = false;
        }
        let (del, upd) = diff(&self.domains.entries, &new);
        if !del.is_empty() || !upd.is_empty() {
            let fd = raw_fd(&self.ebpf, names::DOMAINS)?;
            self.domains.dirty = true;
            self.domains.fingerprint = None;
            crate::batch::delete(fd, &del).context("removing domain entries")?;
            let (keys, values): (Vec<u64>, Vec<DomainEntry>) = upd.into_iter().unzip();
            crate::batch::update(fd, &keys, &values).context("writing domain entries")?;
        }
        self.domains = WrittenDomains { entries: new, fingerprint: Some(fingerprint), dirty: false };
        Ok(())
    }

    fn write_generation(&mut self, c: &CompiledGeneration) -> Result<()> {
        let g = c.generation;
        let written = &mut self.written[g as usize];
        if c.v4_changed {
            // IPv4 groups: straight into the mapped table (V4_TBL24 was
            // written in place by the compiler).
            if !c.v4.groups.is_empty() {
                let all = (GENERATIONS * self.capacity.v4_groups * 256) as usize;
                let mut tbl8 = Mapped::new(raw_fd(&self.ebpf, names::V4_TBL8)?, 0, all)?;
                let tbl8 = tbl8.slice_mut();
                let group_base = (g * self.capacity.v4_groups * 256) as usize;
                // Most groups come back unchanged (every block with a
                // prefix longer than /24 has one while they last): rewrite
                // only those that differ from what the map holds.
                for (i, group) in c.v4.groups.iter().enumerate() {
                    let held = &mut tbl8[group_base + i * 256..group_base + (i + 1) * 256];
                    if held != &group[..] {
                        held.copy_from_slice(group);
                    }
                }
            }
            let new: FastMap<V4LongKey, u32> = c.v4.long.iter().copied().collect();
            let (del, upd) = diff(&written.v4, &new);
            crate::batch::delete(raw_fd(&self.ebpf, names::V4_LONG)?, &del).context("removing IPv4 prefixes")?;
            let (keys, values): (Vec<V4LongKey>, Vec<u32>) = upd.into_iter().unzip();
            crate::batch::update(raw_fd(&self.ebpf, names::V4_LONG)?, &keys, &values).context("writing IPv4 long prefixes")?;
            written.v4 = new;
            written.v4_fingerprint = Some(c.v4_fingerprint);
        }
        let new: FastMap<(u32, V6Key), u32> = c.v6.iter().map(|(len, key, v)| ((*len, *key), *v)).collect();
        let (del, upd) = diff(&written.v6, &new);
        let del: Vec<Key<V6Key>> = del.into_iter().map(|(len, key)| Key::new(len, key)).collect();
        crate::batch::delete(raw_fd(&self.ebpf, names::PREFIX_V6)?, &del).context("removing IPv6 prefixes")?;
        let (keys, values): (Vec<Key<V6Key>>, Vec<u32>) = upd.into_iter().map(|((len, key), v)| (Key::new(len, key), v)).unzip();
        crate::batch::update(raw_fd(&self.ebpf, names::PREFIX_V6)?, &keys, &values).context("writing IPv6 prefixes")?;
        written.v6 = new;
        // Only the entries that differ from what the generation holds.
        let (entry_keys, entry_values): (Vec<u32>, Vec<PrefixEntry>) = c
            .entries
            .iter()
            .enumerate()
            .filter(|(i, e)| written.entries.get(*i) != Some(e))
            .map(|(i, e)| (g * MAX_PREFIX_ENTRIES + i as u32, *e))
            .unzip();
        written.entries.clear();
        crate::batch::update(raw_fd(&self.ebpf, names::PREFIX_ENTRIES)?, &entry_keys, &entry_values).context("writing prefix entries")?;
        written.entries = c.entries.clone();
        let mut l4_rules = c.l4_rules.clone();
        // Unused slots are zeroed so nothing of an older rule set survives.
        l4_rules.resize(MAX_L4_RULES as usize, L4Rule::default());
        let rule_keys: Vec<u32> = (0..MAX_L4_RULES).map(|i| g * MAX_L4_RULES + i).collect();
        crate::batch::update(raw_fd(&self.ebpf, names::L4_RULES)?, &rule_keys, &l4_rules).context("writing L4 rules")?;
        let mut rate_limits = c.rate_limits.clone();
        rate_limits.resize(MAX_L4_RULES as usize, RateLimit::default());
        crate::batch::update(raw_fd(&self.ebpf, names::RATE_LIMITS)?, &rule_keys, &rate_limits).context("writing rate limits")?;
        let set_keys: Vec<u32> = (0..c.l4_sets.len() as u32).map(|i| g * MAX_L4_SETS + i).collect();
        crate::batch::update(raw_fd(&self.ebpf, names::L4_SETS)?, &set_keys, &c.l4_sets).context("writing L4 rule sets")?;
        self.write_signatures(c)?;
        crate::batch::update(raw_fd(&self.ebpf, names::GEN_META)?, &[g], &[c.meta]).context("writing generation settings")?;
        Ok(())
    }

    /// The signature stage's tables of the generation, when they differ
    /// from what it holds (a push that changes no signature writes none).
    fn write_signatures(&mut self, c: &CompiledGeneration) -> Result<()> {
        let g = c.generation;
        let k = &c.signatures;
        if k.rules.is_empty() || self.written[g as usize].signatures == Some(k.fingerprint) {
            return Ok(());
        }
        self.written[g as usize].signatures = None;
        // One 4 MiB value per generation.
        let per_gen = SIG_DFA_SLOTS as usize;
        let mut dfa = Mapped::new(raw_fd(&self.ebpf, names::SIG_DFA)?, g as usize * per_gen, per_gen)?;
        dfa.slice_mut()[..k.transitions.len()].copy_from_slice(&k.transitions);
        drop(dfa);
        // SIG_STATES holds u64s: two u32 slots each, low half first.
        let states_u32 = MAX_SIG_STATES as usize * 2;
        let mut states = Mapped::new(raw_fd(&self.ebpf, names::SIG_STATES)?, g as usize * states_u32, states_u32)?;
        let slots = states.slice_mut();
        for (i, v) in k.states.iter().enumerate() {
            slots[2 * i] = *v as u32;
            slots[2 * i + 1] = (*v >> 32) as u32;
        }
        drop(states);
        let mut classes = [0u8; 256];
        classes.copy_from_slice(&k.classes);
        crate::batch::update(raw_fd(&self.ebpf, names::SIG_CLASSES)?, &[g], &[classes]).context("writing signature byte classes")?;
        let keys: Vec<u32> = (0..k.list.len() as u32).map(|i| g * MAX_SIG_LIST + i).collect();
        crate::batch::update(raw_fd(&self.ebpf, names::SIG_LIST)?, &keys, &k.list).context("writing signature lists")?;
        let keys: Vec<u32> = (0..k.rules.len() as u32).map(|i| g * MAX_SIG_RULES + i).collect();
        crate::batch::update(raw_fd(&self.ebpf, names::SIG_RULES)?, &keys, &k.rules).context("writing signatures")?;
        let keys: Vec<u32> = (0..k.contents.len() as u32).map(|i| g * MAX_SIG_CONTENTS + i).collect();
        crate::batch::update(raw_fd(&self.ebpf, names::SIG_CONTENTS)?, &keys, &k.contents).context("writing signature contents")?;
        let ports: Vec<u64> = k.ports.iter().flatten().copied().collect();
        let keys: Vec<u32> = (0..ports.len() as u32).map(|i| g * 2048 + i).collect();
        crate::batch::update(raw_fd(&self.ebpf, names::SIG_PORTS)?, &keys, &ports).context("writing signature ports")?;
        self.written[g as usize].signatures = Some(k.fingerprint);
        Ok(())
    }


    /// Attaches to `interface`, counting its packets in counter `slot`;
    /// returns the mode used. With pinning, the link is pinned so the
    /// program stays attached when the agent exits, and an existing pinned
    /// link is taken over by atomically replacing its program (no gap).
    pub fn attach(&mut self, interface: &str, mode: AttachMode, slot: u32) -> Result<&'static str> {
        if slot >= MAX_IFACE_SLOTS {
            bail!("interface slot {slot} out of range (max {MAX_IFACE_SLOTS} interfaces)");
        }
        let Some(dir) = self.pins.clone() else {
            let used = attach_program(self.program_mut()?, interface, mode)?.1;
            self.attached.push(Attachment { interface: interface.into(), mode: used, slot, adopted: false, _program: None });
            return Ok(used);
        };
        let mut ebpf = load_object(self.capacity, Some(&dir), slot)?;
        let program: &mut Xdp = ebpf.program_mut(names::PROGRAM).context("program missing from object")?.try_into()?;
        program.load().context("the kernel verifier rejected the XDP program")?;
        let link_path = dir.join("links").join(interface);
        let (used, adopted) = match PinnedLink::from_pin(&link_path) {
            Ok(pinned) => {
                let link = XdpLink::try_from(FdLink::from(pinned)).context("pinned link is not an XDP link")?;
                program.attach_to_link(link).with_context(|| format!("replacing the program on {interface}"))?;
                // The link keeps the mode it was created with; the kernel's
                // link info does not say which, so say where it came from.
                ("pinned", true)
            }
            Err(_) => {
                let (id, used) = attach_program(program, interface, mode)?;
                let link = program.take_link(id)?;
                let fd_link = FdLink::try_from(link)
                    .context("this kernel attached XDP without a bpf_link; filtering would not survive an agent restart")?;
                fd_link.pin(&link_path).with_context(|| format!("pinning the link at {}", link_path.display()))?;
                (used, false)
            }
        };
        self.attached.push(Attachment { interface: interface.into(), mode: used, slot, adopted, _program: Some(ebpf) });
        Ok(used)
    }

    pub fn attached(&self) -> &[Attachment] {
        &self.attached
    }

    /// Kernel id of the program running on attachment `i`.
    pub fn attached_program_id(&self, i: usize) -> Option<u32> {
        let a = self.attached.get(i)?;
        let program: &Xdp = match &a._program {
            Some(ebpf) => ebpf.program(names::PROGRAM)?.try_into().ok()?,
            None => self.program().ok()?,
        };
        program.info().ok().map(|info| info.id())
    }

    /// Entries in use and capacity of the maps operators size.
    pub fn map_usage(&self) -> Vec<(&'static str, u64, u64)> {
        // Entries of the active generation (the other holds the previous set).
        let g = self.active.unwrap_or(0) as usize;
        vec![
            (names::V4_LONG, self.written[g].v4.len() as u64, self.capacity.prefixes_v4 as u64),
            (names::PREFIX_V6, self.written[g].v6.len() as u64, self.capacity.prefixes_v6 as u64),
            (names::DOMAINS, self.domains.entries.len() as u64, self.capacity.domains as u64),
        ]
    }

    /// The signature stage's counters (`maps::sig::stat`), summed over CPUs.
    pub fn sig_totals(&self) -> Result<Vec<(&'static str, u64)>> {
        self.named_totals(names::SIG_STATS, &stat::NAMES)
    }

    /// A per-CPU u64 counter array summed over CPUs, each counter with its
    /// name (`names[i]` for index `i`); empty if the program lacks the map.
    fn named_totals(&self, map: &str, names: &[&'static str]) -> Result<Vec<(&'static str, u64)>> {
        let Some(map) = self.ebpf.map(map) else { return Ok(Vec::new()) };
        let stats: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        (0..names.len() as u32).map(|i| Ok((names[i as usize], stats.get(&i, 0)?.iter().sum()))).collect()
    }

    /// Tests only: the clock the rate limits read (`CONFIG.frozen_ns`;
    /// 0 gives them the kernel's clock back).
    pub fn set_frozen_clock(&mut self, ns: u64) -> Result<()> {
        let mut config: Array<&mut MapData, ActiveConfig> = Array::try_from(self.map_mut(names::CONFIG)?)?;
        let current = config.get(&0, 0)?;
        config.set(0, ActiveConfig { frozen_ns: ns, ..current }, 0)?;
        Ok(())
    }

    /// Forgets every source verified by SYN authentication (`SYN_VERIFIED`).
    pub fn clear_syn_verified(&mut self) -> Result<()> {
        let mut map: aya::maps::HashMap<&mut MapData, VerifiedKey, u64> = aya::maps::HashMap::try_from(self.map_mut(names::SYN_VERIFIED)?)?;
        let keys: Vec<VerifiedKey> = map.keys().collect::<Result<_, _>>()?;
        for k in keys {
            map.remove(&k)?;
        }
        Ok(())
    }

    /// Sources SYN authentication verified less than `ttl_ns` before
    /// `now_ns` (kernel monotonic clock); `None` without a `SYN_VERIFIED` map.
    pub fn syn_verified_in_force(&self, now_ns: u64, ttl_ns: u64) -> Result<Option<u64>> {
        let Some(map) = self.ebpf.map(names::SYN_VERIFIED) else { return Ok(None) };
        let map: aya::maps::HashMap<&MapData, VerifiedKey, u64> = aya::maps::HashMap::try_from(map)?;
        Ok(Some(map.iter().filter_map(|e| e.ok()).filter(|(_, at)| now_ns.wrapping_sub(*at) < ttl_ns).count() as u64))
    }

    /// Lifts every ban (`BANS`).
    pub fn clear_bans(&mut self) -> Result<()> {
        let mut bans: aya::maps::HashMap<&mut MapData, BanKey, Ban> = aya::maps::HashMap::try_from(self.map_mut(names::BANS)?)?;
        let keys: Vec<BanKey> = bans.keys().collect::<Result<_, _>>()?;
        for k in keys {
            bans.remove(&k)?;
        }
        Ok(())
    }

    /// The domain stage's event counters (`maps::l7`), summed over CPUs, in
    /// `l7::NAMES` order; empty if this program has no `L7_STATS` map.
    pub fn l7_totals(&self) -> Result<Vec<(&'static str, u64)>> {
        self.named_totals(names::L7_STATS, &l7::NAMES)
    }

    /// Packets and bytes per (counter slot, reason, dropped), summed over
    /// CPUs, for the slots in use.
    pub fn reason_totals(&self) -> Result<BTreeMap<(u32, Reason, bool), Totals>> {
        let stats: PerCpuArray<&MapData, Counter> = PerCpuArray::try_from(self.map(names::REASON_STATS)?)?;
        let mut slots: Vec<u32> = self.attached.iter().map(|a| a.slot).collect();
        if slots.is_empty() {
            slots.push(0);
        }
        let mut out = BTreeMap::new();
        for slot in slots {
            for reason in Reason::ALL {
                for dropped in [false, true] {
                    let values = stats.get(&maps::reason_stats_index(slot, reason, dropped), 0)?;
                    let t: &mut Totals = out.entry((slot, reason, dropped)).or_default();
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

    /// Zeroes the counters of rule ids about to be given to new order
    /// entries, so they never inherit another order's counts.
    pub fn reset_rule_counters(&mut self, ids: &[u32]) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let mut stats: PerCpuArray<&mut MapData, Counter> = PerCpuArray::try_from(self.map_mut(names::RULE_STATS)?)?;
        for &id in ids {
            stats.set(id, aya::maps::PerCpuValues::try_from(vec![Counter::default(); cpus])?, 0)?;
        }
        Ok(())
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
        for name in [names::L7_STATS, names::SIG_STATS] {
            if let Some(map) = self.ebpf.map_mut(name) {
                let mut stats: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(map)?;
                for i in 0..stats.len() {
                    stats.set(i, aya::maps::PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
                }
            }
        }
        Ok(())
    }

    /// Takes the deep-inspection ring buffer (`SIG_EVENTS`) out of the
    /// object for its one reader; `None` if the program has none (or it
    /// was taken already).
    pub fn take_sig_events(&mut self) -> Result<Option<aya::maps::RingBuf<MapData>>> {
        let Some(map) = self.ebpf.take_map(names::SIG_EVENTS) else { return Ok(None) };
        Ok(Some(aya::maps::RingBuf::try_from(map)?))
    }

    /// A handle of its own on `BANS` (a duplicate descriptor): deep
    /// inspection installs bans through it without waiting for the agent's
    /// lock. `None` without the map.
    pub fn bans_handle(&self) -> Result<Option<aya::maps::HashMap<MapData, BanKey, Ban>>> {
        let Some(map) = self.dup_map(names::BANS)? else { return Ok(None) };
        Ok(Some(aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(map))?))
    }

    /// A handle of its own on `CONFIG`: only ever read through it (writes
    /// go through [`Dataplane::set_bans_flag`] under the agent's lock).
    pub fn config_handle(&self) -> Result<Array<MapData, ActiveConfig>> {
        let map = self.dup_map(names::CONFIG)?.context("map CONFIG missing from object")?;
        Ok(Array::try_from(aya::maps::Map::Array(map))?)
    }

    fn dup_map(&self, name: &str) -> Result<Option<MapData>> {
        use aya::maps::Map;
        use std::os::fd::AsFd;
        let Some(map) = self.ebpf.map(name) else { return Ok(None) };
        let data = match map {
            Map::Array(d) | Map::HashMap(d) | Map::LruHashMap(d) => d,
            _ => bail!("map {name} has an unexpected type"),
        };
        let fd = data.fd().as_fd().try_clone_to_owned().with_context(|| format!("duplicating the descriptor of {name}"))?;
        Ok(Some(MapData::from_fd(fd)?))
    }

    /// Sets `CONFIG[0].bans` (the program looks `BANS` up only while it is
    /// 1), keeping the generation; a no-op if it is set. Callers hold the
    /// lock the apply path holds, so this never undoes a generation switch.
    pub fn set_bans_flag(&mut self) -> Result<()> {
        let mut config: Array<&mut MapData, ActiveConfig> = Array::try_from(self.map_mut(names::CONFIG)?)?;
        let c = config.get(&0, 0)?;
        if c.bans == 0 {
            config.set(0, ActiveConfig { bans: 1, ..c }, 0).context("setting CONFIG bans")?;
        }
        Ok(())
    }

    /// Deletes the bans that lapsed by `now_ns` (`CLOCK_MONOTONIC`); when
    /// none is left, clears `CONFIG[0].bans`, then looks again and sets it
    /// back if a ban appeared meanwhile (the kernel and deep inspection
    /// insert without the agent's lock, and set the flag after inserting).
    /// Callers hold the lock the apply path holds. Returns (bans deleted,
    /// bans left); `(0, 0)` without a `BANS` map.
    pub fn sweep_bans(&mut self, now_ns: u64) -> Result<(u64, u64)> {
        let Some(map) = self.ebpf.map_mut(names::BANS) else { return Ok((0, 0)) };
        let mut bans: aya::maps::HashMap<&mut MapData, BanKey, Ban> = aya::maps::HashMap::try_from(map)?;
        let mut lapsed = Vec::new();
        let mut left = 0u64;
        for entry in bans.iter() {
            // Entries may vanish while iterating (LRU eviction, kernel
            // removal): skip what cannot be read.
            let Ok((key, ban)) = entry else { continue };
            if ban.expires_ns <= now_ns {
                lapsed.push(key);
            } else {
                left += 1;
            }
        }
        let mut deleted = 0;
        for key in &lapsed {
            // Looked at again just before deleting: a source banned anew
            // since the scan keeps its ban.
            match bans.get(key, 0) {
                Ok(ban) if ban.expires_ns <= now_ns => {
                    if bans.remove(key).is_ok() {
                        deleted += 1;
                    }
                }
                Ok(_) => left += 1,
                Err(_) => {}
            }
        }
        if left == 0 {
            let mut config: Array<&mut MapData, ActiveConfig> = Array::try_from(self.map_mut(names::CONFIG)?)?;
            let c = config.get(&0, 0)?;
            if c.bans != 0 {
                config.set(0, ActiveConfig { bans: 0, ..c }, 0).context("clearing CONFIG bans")?;
                let map = self.ebpf.map(names::BANS).context("map BANS missing from object")?;
                let bans: aya::maps::HashMap<&MapData, BanKey, Ban> = aya::maps::HashMap::try_from(map)?;
                if bans.keys().next().is_some() {
                    self.set_bans_flag()?;
                }
            }
        } else {
            // A ban in force must be looked up.
            self.set_bans_flag()?;
        }
        Ok((deleted, left))
    }

    /// Traffic toward protected prefix groups `0..groups` (`PROTECT_STATS`),
    /// summed over CPUs; empty if this program has no such map.
    pub fn protect_totals(&self, groups: usize) -> Result<Vec<ProtectStats>> {
        let Some(map) = self.ebpf.map(names::PROTECT_STATS) else { return Ok(Vec::new()) };
        let stats: PerCpuArray<&MapData, ProtectStats> = PerCpuArray::try_from(map)?;
        (0..groups.min(MAX_PROTECT_GROUPS as usize) as u32)
            .map(|g| {
                let mut t = ProtectStats::default();
                for c in stats.get(&g, 0)?.iter() {
                    for i in 0..4 {
                        t.packets[i] += c.packets[i];
                        t.bytes[i] += c.bytes[i];
                    }
                    t.syn += c.syn;
                    t.fragments += c.fragments;
                    t.reflected += c.reflected;
                    t.reflected_bytes += c.reflected_bytes;
                }
                Ok(t)
            })
            .collect()
    }

    /// UDP from each reflection port slot toward groups `0..groups`
    /// (`REFLECT_STATS`), summed over CPUs; empty without the map.
    pub fn reflect_totals(&self, groups: usize) -> Result<Vec<[Totals; MAX_REFLECT_PORTS]>> {
        let Some(map) = self.ebpf.map(names::REFLECT_STATS) else { return Ok(Vec::new()) };
        let stats: PerCpuArray<&MapData, Counter> = PerCpuArray::try_from(map)?;
        (0..groups.min(MAX_PROTECT_GROUPS as usize) as u32)
            .map(|g| {
                let mut out = [Totals::default(); MAX_REFLECT_PORTS];
                for (slot, t) in out.iter_mut().enumerate() {
                    for c in stats.get(&(g * MAX_REFLECT_PORTS as u32 + slot as u32), 0)?.iter() {
                        t.packets += c.packets;
                        t.bytes += c.bytes;
                    }
                }
                Ok(out)
            })
            .collect()
    }

    /// Takes the traffic sample ring buffer (`TRAFFIC_SAMPLES`) out of the
    /// object for its one reader (`filter-agent top`); `None` if the
    /// program has none (or it was taken already).
    pub fn take_traffic_samples(&mut self) -> Result<Option<aya::maps::RingBuf<MapData>>> {
        let Some(map) = self.ebpf.take_map(names::TRAFFIC_SAMPLES) else { return Ok(None) };
        Ok(Some(aya::maps::RingBuf::try_from(map)?))
    }

    /// Bans in force at `now_ns` (`CLOCK_MONOTONIC`); `None` without a
    /// `BANS` map.
    pub fn bans_in_force(&self, now_ns: u64) -> Result<Option<u64>> {
        let Some(map) = self.ebpf.map(names::BANS) else { return Ok(None) };
        let bans: aya::maps::HashMap<&MapData, BanKey, Ban> = aya::maps::HashMap::try_from(map)?;
        Ok(Some(bans.iter().filter_map(|e| e.ok()).filter(|(_, b)| b.expires_ns > now_ns).count() as u64))
    }
}

fn attach_program(program: &mut Xdp, interface: &str, mode: AttachMode) -> Result<(aya::programs::xdp::XdpLinkId, &'static str)> {
    Ok(match mode {
        AttachMode::Native => (program.attach(interface, XdpMode::Driver).with_context(|| format!("attaching natively to {interface}"))?, "native"),
        AttachMode::Skb => (program.attach(interface, XdpMode::Skb).with_context(|| format!("attaching (skb) to {interface}"))?, "skb"),
        AttachMode::Auto => match program.attach(interface, XdpMode::Driver) {
            Ok(id) => (id, "native"),
            Err(e) => {
                eprintln!("warning: native XDP on {interface} failed ({e}); falling back to skb mode");
                (program.attach(interface, XdpMode::Skb).with_context(|| format!("attaching (skb) to {interface}"))?, "skb")
            }
        },
    })
}

/// Pinned maps keep the size they were created with; a config asking for
/// other capacities must not silently run with the old ones.
fn check_pinned_sizes(ebpf: &Ebpf, capacity: Capacity) -> Result<()> {
    use aya::maps::Map;
    for (name, want, required) in [
        (names::V4_LONG, GENERATIONS * capacity.prefixes_v4, true),
        (names::V4_TBL8, GENERATIONS * capacity.v4_groups * 256 / 2, true),
        (names::PREFIX_V6, GENERATIONS * capacity.prefixes_v6, true),
        (names::DOMAINS, capacity.domains, false),
        (names::BLOCKED_FLOWS, capacity.flows, false),
        (names::TLS_PENDING, capacity.flows, false),
        (names::BANS, capacity.bans, false),
        (names::RL_STATE, capacity.rate_limit_buckets, false),
    ] {
        let map = match ebpf.map(name) {
            Some(map) => map,
            None if !required => continue,
            None => bail!("map {name} missing"),
        };
        let data = match map {
            Map::Array(d) | Map::HashMap(d) | Map::LpmTrie(d) | Map::LruHashMap(d) => d,
            _ => bail!("map {name} has an unexpected type"),
        };
        let have = data.info()?.max_entries();
        if have != want {
            bail!(
                "pinned map {name} holds {have} entries but the configuration asks for {want}: \
                 capacities change only with a fresh start (`filter-agent detach`, then start the agent)"
            );
        }
    }
    Ok(())
}

/// What to delete and what to write to turn `old` into `new`.
fn diff<K: Copy + Eq + std::hash::Hash, V: Copy + PartialEq, S: std::hash::BuildHasher>(
    old: &std::collections::HashMap<K, V, S>,
    new: &std::collections::HashMap<K, V, S>,
) -> (Vec<K>, Vec<(K, V)>) {
    let deletes = old.keys().filter(|k| !new.contains_key(k)).copied().collect();
    let updates = new.iter().filter(|(k, v)| old.get(k) != Some(v)).map(|(k, v)| (*k, *v)).collect();
    (deletes, updates)
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

/// Removes what an agent pinned under `dir`: detaches every pinned link
/// (forcibly, even if a running agent still holds it), then unpins the
/// maps. Returns what was removed, for the operator.
pub fn detach(dir: &Path) -> Result<Vec<String>> {
    use std::os::fd::{AsFd, AsRawFd};
    let mut removed = Vec::new();
    if let Ok(links) = std::fs::read_dir(dir.join("links")) {
        for entry in links {
            let path = entry?.path();
            let fd = obj_get(&path).with_context(|| format!("opening {}", path.display()))?;
            link_detach(fd.as_fd().as_raw_fd()).with_context(|| format!("detaching {}", path.display()))?;
            std::fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
            removed.push(format!("XDP link on {} detached", path.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    if let Ok(maps) = std::fs::read_dir(dir.join("maps")) {
        for entry in maps {
            let path = entry?.path();
            std::fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
            removed.push(format!("map {} unpinned", path.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    for sub in ["links", "maps", ""] {
        let _ = std::fs::remove_dir(dir.join(sub));
    }
    Ok(removed)
}

/// BPF_OBJ_GET: a new fd for a pinned object (aya keeps link fds private).
fn obj_get(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    const BPF_OBJ_GET: libc::c_long = 7;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64;
    // SAFETY: a zeroed bpf_attr with obj.pathname set.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, attr.as_mut_ptr(), std::mem::size_of_val(&attr) as u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// BPF_LINK_DETACH: the link stops running its program now, whoever holds it.
fn link_detach(link_fd: std::os::fd::RawFd) -> std::io::Result<()> {
    const BPF_LINK_DETACH: libc::c_long = 34;
    let mut attr = [0u64; 16];
    attr[0] = link_fd as u32 as u64;
    // SAFETY: a zeroed bpf_attr with link_detach.link_fd set.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_DETACH, attr.as_mut_ptr(), std::mem::size_of_val(&attr) as u32) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes sure `path` is a BPF filesystem, mounting one at the standard
/// place if nothing is mounted there (systemd normally does this).
pub fn ensure_bpffs(path: &Path) -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statfs into a zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    let fstype = std::ffi::CString::new("bpf")?;
    // SAFETY: mount(2) with valid C strings.
    let rc = unsafe { libc::mount(fstype.as_ptr(), c.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        bail!("{} is not a BPF filesystem and mounting one failed: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; raise it so large
/// rule sets load there too (newer kernels use memory cgroups instead).
fn raise_memlock_limit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}
