//! The order journal: every accepted push and revoke, appended as one JSON
//! line and fsynced *before* the API acknowledges it. On start the journal
//! is replayed, so the agent enforces exactly the acknowledged set.
//!
//! A last line without its newline is a write the crash interrupted: it
//! was never acknowledged, so it is cut off (and reported) on open. Any
//! other unreadable line stops the agent: the journal is the record of
//! what was promised to authorities and must not be guessed at.
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::wire::{canonical_bytes, SignedOrder};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Revocation {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredOrder {
    pub id: String,
    pub signed: SignedOrder,
    /// Authenticated client that pushed it.
    pub client: String,
    pub received: DateTime<Utc>,
    pub revoked: Option<Revocation>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Record {
    Push { seq: u64, id: String, signed: SignedOrder, client: String, received: DateTime<Utc> },
    Revoke { seq: u64, id: String, by: String, at: DateTime<Utc>, reason: String },
}

#[derive(Debug, PartialEq)]
pub enum PushOutcome {
    /// Journaled (fsynced).
    Created,
    /// Same id, same content: nothing written; the push is idempotent.
    Duplicate,
    /// Same id, different content: refused (a replay or a mistake).
    Conflict,
    /// The id was revoked; it cannot be reused.
    Revoked,
}

#[derive(Debug, PartialEq)]
pub enum RevokeOutcome {
    Revoked,
    NotFound,
    AlreadyRevoked,
}

pub struct OrderStore {
    path: PathBuf,
    file: File,
    seq: u64,
    orders: BTreeMap<String, StoredOrder>,
}

impl OrderStore {
    /// Opens (creating) and replays the journal. Returns the store and, if
    /// a torn last line was cut off, its length in bytes.
    pub fn open(path: &Path) -> Result<(OrderStore, Option<usize>)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new().read(true).append(true).create(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        let text = std::fs::read(path)?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let torn = (complete < text.len()).then(|| text.len() - complete);
        if torn.is_some() {
            file.set_len(complete as u64)?;
            file.sync_all()?;
        }
        let mut store = OrderStore { path: path.to_path_buf(), file, seq: 0, orders: BTreeMap::new() };
        for (i, line) in text[..complete].split(|&b| b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
            let record: Record = serde_json::from_slice(line).with_context(|| format!("{}:{}: unreadable journal record", path.display(), i + 1))?;
            store.replay(record).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        }
        Ok((store, torn))
    }

    fn replay(&mut self, record: Record) -> Result<()> {
        match record {
            Record::Push { seq, id, signed, client, received } => {
                self.check_seq(seq)?;
                self.orders.insert(id.clone(), StoredOrder { id, signed, client, received, revoked: None });
            }
            Record::Revoke { seq, id, by, at, reason } => {
                self.check_seq(seq)?;
                let Some(o) = self.orders.get_mut(&id) else { bail!("revoke of unknown order {id}") };
                o.revoked = Some(Revocation { by, at, reason });
            }
        }
        Ok(())
    }

    fn check_seq(&mut self, seq: u64) -> Result<()> {
        if seq != self.seq + 1 {
            bail!("journal sequence {seq} after {}: records are missing", self.seq);
        }
        self.seq = seq;
        Ok(())
    }

    fn append(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line).with_context(|| format!("writing {}", self.path.display()))?;
        self.file.sync_data().with_context(|| format!("fsync of {}", self.path.display()))?;
        Ok(())
    }

    /// Journals a new order (fsynced before returning `Created`).
    pub fn push(&mut self, id: &str, signed: &SignedOrder, client: &str, received: DateTime<Utc>) -> Result<PushOutcome> {
        if let Some(existing) = self.orders.get(id) {
            if existing.revoked.is_some() {
                return Ok(PushOutcome::Revoked);
            }
            let same = canonical_bytes(&existing.signed.order) == canonical_bytes(&signed.order);
            return Ok(if same { PushOutcome::Duplicate } else { PushOutcome::Conflict });
        }
        let record = Record::Push { seq: self.seq + 1, id: id.to_string(), signed: signed.clone(), client: client.to_string(), received };
        self.append(&record)?;
        self.replay(record)?;
        Ok(PushOutcome::Created)
    }

    /// Journals a revocation (fsynced before returning `Revoked`).
    pub fn revoke(&mut self, id: &str, by: &str, reason: &str) -> Result<RevokeOutcome> {
        match self.orders.get(id) {
            None => return Ok(RevokeOutcome::NotFound),
            Some(o) if o.revoked.is_some() => return Ok(RevokeOutcome::AlreadyRevoked),
            Some(_) => {}
        }
        let record = Record::Revoke { seq: self.seq + 1, id: id.to_string(), by: by.to_string(), at: Utc::now(), reason: reason.to_string() };
        self.append(&record)?;
        self.replay(record)?;
        Ok(RevokeOutcome::Revoked)
    }

    /// Sequence number of the last journaled record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn get(&self, id: &str) -> Option<&StoredOrder> {
        self.orders.get(id)
    }

    pub fn orders(&self) -> impl Iterator<Item = &StoredOrder> {
        self.orders.values()
    }
}
