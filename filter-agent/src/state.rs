//! Small persistent facts the agent keeps in its state directory:
//! interface counter slots (so per-interface counters in the pinned maps
//! keep their meaning across restarts), the rule-set sequence number,
//! stable rule ids and the seeds of the domain name hashes.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Interface name -> counter slot.
    pub slots: BTreeMap<String, u32>,
    /// Incremented at every rule set applied (`edgefilter_ruleset_generation`).
    pub sequence: u64,
    /// Order id -> the rule id of each of its entries. Kept across reloads
    /// and restarts so an order's counters in the pinned maps continue.
    #[serde(default)]
    pub order_rule_ids: BTreeMap<String, Vec<u32>>,
    /// The format before `order_rule_ids` (`order id` NUL `entry index` ->
    /// rule id); read once and converted.
    #[serde(default, skip_serializing)]
    rule_ids: BTreeMap<String, u32>,
    /// Seeds of the domain name hashes (`filter_common::names`), random,
    /// generated once: the kernel's `DOMAINS` map is keyed by them, and
    /// names nobody can predict cannot be made to collide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_seeds: Option<[u64; 2]>,
    /// Rule ids in use, one bit each (so finding the lowest free id does
    /// not walk every order at every push).
    #[serde(skip)]
    used: Vec<u64>,
    #[serde(skip)]
    path: PathBuf,
}

impl State {
    pub fn open(dir: &Path) -> Result<State> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating state directory {}", dir.display()))?;
        let path = dir.join("state.json");
        let mut state: State = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        state.path = path;
        for (key, id) in std::mem::take(&mut state.rule_ids) {
            let Some((order, index)) = key.split_once('\u{0}') else { continue };
            let Ok(index) = index.parse::<usize>() else { continue };
            let ids = state.order_rule_ids.entry(order.to_string()).or_default();
            if ids.len() <= index {
                ids.resize(index + 1, 0);
            }
            ids[index] = id;
        }
        state.used = vec![0; (filter_common::maps::MAX_RULE_IDS as usize).div_ceil(64)];
        let ids: Vec<u32> = state.order_rule_ids.values().flatten().copied().collect();
        for id in ids {
            state.mark(id, true);
        }
        Ok(state)
    }

    fn mark(&mut self, id: u32, used: bool) {
        if id == 0 || id >= filter_common::maps::MAX_RULE_IDS {
            return;
        }
        let (word, bit) = ((id / 64) as usize, id % 64);
        if used {
            self.used[word] |= 1 << bit;
        } else {
            self.used[word] &= !(1 << bit);
        }
    }

    /// The lowest free rule id (ids start at 1).
    fn lowest_free(&self) -> Option<u32> {
        self.used.iter().enumerate().find_map(|(w, &bits)| {
            let free = !bits & if w == 0 { !1 } else { !0 };
            (free != 0).then(|| w as u32 * 64 + free.trailing_zeros())
        })
        .filter(|&id| id < filter_common::maps::MAX_RULE_IDS)
    }

    /// The highest rule id assigned (0 if none).
    pub fn max_rule_id(&self) -> u32 {
        self.order_rule_ids.values().flatten().copied().max().unwrap_or(0)
    }

    /// The slot of `interface`, assigning the lowest free one if new.
    pub fn slot(&mut self, interface: &str) -> Result<u32> {
        if let Some(&s) = self.slots.get(interface) {
            return Ok(s);
        }
        let s = (0..).find(|s| !self.slots.values().any(|v| v == s)).expect("free slot");
        self.slots.insert(interface.to_string(), s);
        self.save()?;
        Ok(s)
    }

    /// Rule ids for every entry of `orders`: existing ones are kept, ids of
    /// orders (or entries) no longer present are freed, new entries get the
    /// lowest free ids. Returns the new ids (their counters must start from
    /// zero). Work is proportional to the number of orders, not entries.
    pub fn assign_rule_ids<'a>(&mut self, orders: impl IntoIterator<Item = &'a filter_common::rules::Order>) -> Result<Vec<u32>> {
        let wanted: Vec<(&str, usize)> = orders.into_iter().map(|o| (o.id.as_str(), o.entries.len())).collect();
        let present: std::collections::HashSet<&str> = wanted.iter().map(|(id, _)| *id).collect();
        let mut changed = false;
        let gone: Vec<String> = self.order_rule_ids.keys().filter(|k| !present.contains(k.as_str())).cloned().collect();
        for order in gone {
            for id in self.order_rule_ids.remove(&order).unwrap_or_default() {
                self.mark(id, false);
            }
            changed = true;
        }
        let mut fresh = Vec::new();
        // New entries get the lowest free ids in the order given.
        for (order, entries) in wanted {
            // Unchanged orders (nearly all, at a push) cost one lookup.
            if self.order_rule_ids.get(order).is_some_and(|ids| ids.len() == entries && !ids.contains(&0)) {
                continue;
            }
            let mut ids = self.order_rule_ids.remove(order).unwrap_or_default();
            changed = true;
            for id in ids.drain(entries.min(ids.len())..) {
                self.mark(id, false);
            }
            ids.resize(entries, 0);
            for slot in ids.iter_mut().filter(|id| **id == 0) {
                let Some(id) = self.lowest_free() else {
                    anyhow::bail!("more than {} order entries loaded", filter_common::maps::MAX_RULE_IDS - 1);
                };
                self.mark(id, true);
                *slot = id;
                fresh.push(id);
            }
            self.order_rule_ids.insert(order.to_string(), ids);
        }
        if changed {
            self.save()?;
        }
        Ok(fresh)
    }

    /// The seeds of the domain name hashes, generated from OS randomness
    /// (and saved) the first time.
    pub fn name_seeds(&mut self) -> Result<[u64; 2]> {
        match self.name_seeds {
            Some(seeds) => Ok(seeds),
            None => self.new_name_seeds(),
        }
    }

    /// New random seeds, saved (when two rule names collide under the
    /// current ones).
    pub fn new_name_seeds(&mut self) -> Result<[u64; 2]> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("cannot read OS randomness: {e}"))?;
        let (a, b) = bytes.split_at(8);
        let seeds = [u64::from_le_bytes(a.try_into().expect("8 bytes")), u64::from_le_bytes(b.try_into().expect("8 bytes"))];
        self.set_name_seeds(seeds)?;
        Ok(seeds)
    }

    /// Records the seeds in force (e.g. those of an adopted data plane).
    pub fn set_name_seeds(&mut self, seeds: [u64; 2]) -> Result<()> {
        if self.name_seeds != Some(seeds) {
            self.name_seeds = Some(seeds);
            self.save()?;
        }
        Ok(())
    }

    pub fn rule_id(&self, order: &str, entry: usize) -> Option<u32> {
        self.order_rule_ids.get(order).and_then(|ids| ids.get(entry)).copied().filter(|&id| id != 0)
    }

    /// The next rule-set sequence number. Persisted without an fsync of its
    /// own (it is a label for operators, not a promise): the file is
    /// replaced atomically, and the next durable save carries it too.
    pub fn next_sequence(&mut self) -> Result<u64> {
        self.sequence += 1;
        self.write(false)?;
        Ok(self.sequence)
    }

    /// Written to a temporary file, fsynced and renamed: never half written.
    fn save(&self) -> Result<()> {
        self.write(true)
    }

    fn write(&self, durable: bool) -> Result<()> {
        use std::io::Write;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        // Compact: with thousands of pushed orders the ids are most of it.
        f.write_all(&serde_json::to_vec(self)?)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_seeds_are_random_once_then_kept() {
        let dir = std::env::temp_dir().join(format!("edgefilter-state-seeds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut state = State::open(&dir).unwrap();
        assert_eq!(state.name_seeds, None);
        let seeds = state.name_seeds().unwrap();
        assert_ne!(seeds, [0, 0]);
        assert_eq!(state.name_seeds().unwrap(), seeds);
        // Persisted, exactly (u64 beyond 2^53 included).
        let reopened = State::open(&dir).unwrap();
        assert_eq!(reopened.name_seeds, Some(seeds));
        let mut state = reopened;
        state.set_name_seeds([u64::MAX, 1]).unwrap();
        assert_eq!(State::open(&dir).unwrap().name_seeds, Some([u64::MAX, 1]));
        let fresh = state.new_name_seeds().unwrap();
        assert_ne!(fresh, [u64::MAX, 1]);
        assert_eq!(State::open(&dir).unwrap().name_seeds, Some(fresh));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
