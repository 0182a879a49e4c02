//! Small persistent facts the agent keeps in its state directory:
//! interface counter slots (so per-interface counters in the pinned maps
//! keep their meaning across restarts) and the rule-set sequence number.
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
    /// `order id` + NUL + entry index -> rule id. Kept across reloads and
    /// restarts so an order's counters in the pinned maps continue.
    #[serde(default)]
    pub rule_ids: BTreeMap<String, u32>,
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
        Ok(state)
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
    /// entries no longer present are freed, new entries get the lowest free
    /// ids. Returns the new ids (their counters must start from zero).
    pub fn assign_rule_ids(&mut self, orders: &[filter_common::rules::Order]) -> Result<Vec<u32>> {
        let keys: Vec<String> = orders.iter().flat_map(|o| (0..o.entries.len()).map(move |i| rule_key(&o.id, i))).collect();
        let wanted: std::collections::BTreeSet<&String> = keys.iter().collect();
        let before = self.rule_ids.len();
        self.rule_ids.retain(|k, _| wanted.contains(k));
        let removed = self.rule_ids.len() != before;
        let mut used: std::collections::BTreeSet<u32> = self.rule_ids.values().copied().collect();
        let mut fresh = Vec::new();
        let mut candidate = 1u32;
        for key in keys {
            if self.rule_ids.contains_key(&key) {
                continue;
            }
            while used.contains(&candidate) {
                candidate += 1;
            }
            if candidate >= filter_common::maps::MAX_RULE_IDS {
                anyhow::bail!("more than {} order entries loaded", filter_common::maps::MAX_RULE_IDS - 1);
            }
            used.insert(candidate);
            self.rule_ids.insert(key, candidate);
            fresh.push(candidate);
        }
        if removed || !fresh.is_empty() {
            self.save()?;
        }
        Ok(fresh)
    }

    pub fn rule_id(&self, order: &str, entry: usize) -> Option<u32> {
        self.rule_ids.get(&rule_key(order, entry)).copied()
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
        f.write_all(&serde_json::to_vec_pretty(self)?)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}

fn rule_key(order: &str, entry: usize) -> String {
    format!("{order}\u{0}{entry}")
}
