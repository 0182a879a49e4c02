//! Tamper-evident audit log: every change the agent makes to what it enforces
//! (rule set load, reload, reload rejection, order activation and expiry,
//! detach, adoption after a restart) is appended as one JSON line saying who
//! did what and when, chained to the line before it by a SHA-256 hash.
//! `filter-agent audit verify` ([`verify`]) checks the whole chain.
//!
//! # Format
//!
//! One record per line, UTF-8, each line ended by `\n`, no blank lines:
//!
//! ```text
//! {"seq":1,"time":"2025-01-01T00:00:00.000Z","actor":"agent","action":"load","details":{...},"prev":"000…0","hash":"9f…"}
//! ```
//!
//! * `seq` is 1 on the first line and goes up by exactly one per line.
//! * `time` is RFC 3339 UTC with milliseconds, taken when the record is
//!   appended.
//! * `actor` (who) and `action` (what) are non-empty strings; `details` is
//!   any JSON value (by convention an object).
//! * `prev` is the `hash` of the previous record, and 64 `0`s on the first.
//!
//! # The hash
//!
//! `hash` is the lowercase hex SHA-256 of the record's *canonical body*: the
//! compact `serde_json` serialisation of the object
//! `{"seq":…,"time":…,"actor":…,"action":…,"details":…,"prev":…}` — exactly
//! these six fields in this order, no whitespace, strings escaped as
//! `serde_json` does — where every object inside `details`, at any depth, has
//! its keys sorted by byte order. The sorting is done here, so the canonical
//! form does not depend on whether serde_json's `preserve_order` feature is
//! on somewhere in the build.
//!
//! The line written is the canonical body with its closing `}` replaced by
//! `,"hash":"<hex>"}`. So anyone can check a line without re-serialising
//! anything: cut the trailing `,"hash":"<64 hex>"}`, put back `}`, and hash
//! the bytes. [`verify`] and [`AuditLog::open`] do exactly that, which keeps
//! them independent of how numbers in `details` round-trip through a parser.
//!
//! Because `prev` is inside the hashed body, changing, deleting, inserting or
//! reordering any line breaks the chain at that line (a changed line no
//! longer matches its own hash; a deleted or moved one breaks `seq` and
//! `prev`). What a chain alone cannot catch is someone who rewrites every
//! record from the edit onwards, or cuts records off the end: for that, keep
//! the latest hash ([`AuditLog::last_hash`]) somewhere else too (the status
//! output, metrics, a remote log) and compare.
//!
//! # Durability and torn writes
//!
//! [`AuditLog::append`] writes the whole line with one `write` on a file
//! opened with `O_APPEND` and `fsync`s it before returning: a record that was
//! acknowledged survives a crash. If the write or the `fsync` fails, the file
//! is cut back to its length before the attempt so the next append does not
//! glue onto a fragment; if even that fails, the log refuses further appends.
//!
//! A crash in the middle of an append can still leave a final line without
//! its `\n` (a *torn* line). **Choice: [`AuditLog::open`] refuses such a log**
//! with an error naming the line and its byte offset and telling the operator
//! to inspect it. It never truncates on its own, because a cut-short last
//! line is also exactly what tampering with the end of the log looks like.
//! Once the operator has looked, [`AuditLog::recover_torn_tail`] (an explicit
//! step, never taken automatically) cuts the fragment off and appends a
//! `torn-tail-discarded` record carrying the discarded bytes, their offset
//! and their hash, so the chain itself says what was removed. A last line
//! that is complete but does not parse or does not match its hash is never
//! repaired: `open` refuses and the log has to be dealt with by hand.
//!
//! `open` checks only the last line (it has to, to continue the chain);
//! [`verify`] checks everything.
//!
//! # Files and writers
//!
//! The log is created with mode 0600 (an existing file with wider permissions
//! is narrowed to 0600 on open) and missing parent directories with 0700.
//! There is one writer: `open` takes an exclusive `flock` on the file for the
//! life of the [`AuditLog`] and fails if another process (or another
//! `AuditLog` in this one) holds it. [`verify`] takes no lock.
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev` of the first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The action of the record [`AuditLog::recover_torn_tail`] appends.
pub const TORN_TAIL_ACTION: &str = "torn-tail-discarded";

/// What ends every line: `,"hash":"` + 64 hex digits + `"}`.
const HASH_KEY: &[u8] = b",\"hash\":\"";
const HASH_SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;

/// One audit record as written (one JSON object per line).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// 1, 2, 3... continuous.
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Who: e.g. "agent", "operator:uid=0", "api:authority:example".
    pub actor: String,
    /// What: e.g. "load", "reload", "reload-rejected", "activate", "expire",
    /// "detach", "adopt".
    pub action: String,
    /// Free-form: orders, counts, errors, generation...
    pub details: Value,
    /// Hex SHA-256 of the previous record (its `hash`); 64 `0`s for the first.
    pub prev: String,
    /// Hex SHA-256 of this record's canonical body (see the module docs).
    pub hash: String,
}

/// A chain defect: which line (1-based) of which file, and why. [`verify`]
/// and [`AuditLog::open`] return it inside their `anyhow::Error`, so callers
/// can `downcast_ref::<ChainError>()` for the line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainError {
    pub path: PathBuf,
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: line {}: {}", self.path.display(), self.line, self.reason)
    }
}

impl std::error::Error for ChainError {}

/// The append-only writer. One per log file (enforced with `flock`).
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// `seq` of the last record written, 0 if none.
    last_seq: u64,
    /// `hash` of the last record written, [`GENESIS_PREV`] if none.
    last_hash: String,
    /// Length of the file after the last complete record.
    len: u64,
    /// Set when a failed append could not be rolled back.
    poisoned: bool,
}

impl AuditLog {
    /// Opens (creating if needed, mode 0600, parent dirs too) and reads the
    /// tail to continue the chain; refuses to open a log whose last line is
    /// corrupt or torn (clear error naming the line).
    pub fn open(path: &Path) -> anyhow::Result<AuditLog> {
        let (file, tail) = open_locked(path)?;
        if let Some(torn) = &tail.torn {
            return Err(ChainError {
                path: path.to_owned(),
                line: tail.lines + 1,
                reason: format!(
                    "incomplete last line ({} bytes after the last newline, at byte offset {}): \
                     probably a write torn by a crash, possibly a cut-off or edited record; \
                     refusing to append. Inspect the log; if the fragment is a torn write, \
                     run `filter-agent audit recover --log {}` (it records what it discards), \
                     or remove it by hand with `truncate -s {} {}`",
                    torn.len(),
                    tail.complete_len,
                    path.display(),
                    tail.complete_len,
                    path.display()
                ),
            }
            .into());
        }
        AuditLog::continue_from(path, file, &tail)
    }

    /// The operator's explicit recovery from a torn last line (see the
    /// module docs): like [`AuditLog::open`], but if the file ends in a
    /// fragment without a newline, cuts it off and appends a
    /// [`TORN_TAIL_ACTION`] record by `actor` whose details hold the line
    /// number, byte offset, length, SHA-256 and (lossy UTF-8) text of the
    /// discarded bytes. Returns that record, or `None` if there was nothing
    /// to discard. A corrupt *complete* last line is still refused.
    pub fn recover_torn_tail(path: &Path, actor: &str) -> anyhow::Result<(AuditLog, Option<Record>)> {
        let (file, tail) = open_locked(path)?;
        let mut log = AuditLog::continue_from(path, file, &tail)?;
        let Some(torn) = tail.torn else {
            return Ok((log, None));
        };
        log.file
            .set_len(tail.complete_len)
            .and_then(|()| log.file.sync_all())
            .with_context(|| format!("{}: cutting off the torn last line", path.display()))?;
        let details = serde_json::json!({
            "line": tail.lines + 1,
            "offset": tail.complete_len,
            "bytes": torn.len(),
            "sha256": hex::encode(Sha256::digest(&torn)),
            "fragment": String::from_utf8_lossy(&torn),
        });
        let rec = log.append(actor, TORN_TAIL_ACTION, details)?;
        Ok((log, Some(rec)))
    }

    fn continue_from(path: &Path, file: File, tail: &Tail) -> anyhow::Result<AuditLog> {
        let (last_seq, last_hash) = match &tail.last {
            None => (0, GENESIS_PREV.to_owned()),
            Some(line) => {
                let bad = |reason: String| ChainError {
                    path: path.to_owned(),
                    line: tail.lines,
                    reason: format!(
                        "last record is corrupt: {reason}; refusing to continue the chain from it \
                         (inspect the log, e.g. with `filter-agent audit verify`)"
                    ),
                };
                let rec = parse_line(line).map_err(bad)?;
                (rec.seq, rec.hash)
            }
        };
        Ok(AuditLog {
            path: path.to_owned(),
            file,
            last_seq,
            last_hash,
            len: tail.complete_len,
            poisoned: false,
        })
    }

    /// Appends one record, fsyncs the file before returning (a record that
    /// was acknowledged survives a crash), returns it.
    pub fn append(&mut self, actor: &str, action: &str, details: Value) -> anyhow::Result<Record> {
        if self.poisoned {
            bail!(
                "{}: an earlier failed append could not be rolled back; refusing to write more \
                 (inspect the log and reopen it)",
                self.path.display()
            );
        }
        if actor.is_empty() || action.is_empty() {
            bail!("audit record needs a non-empty actor and action (got {actor:?}, {action:?})");
        }
        let seq = self.last_seq + 1;
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body = canonical_body(seq, &time, actor, action, &details, &self.last_hash)?;
        let hash = sha256_hex(&body);
        let mut line = line_from_body(&body, &hash);
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line).and_then(|()| self.file.sync_all()) {
            let e = anyhow::Error::new(e).context(format!("{}: appending record {seq}", self.path.display()));
            if let Err(undo) = self.file.set_len(self.len).and_then(|()| self.file.sync_all()) {
                self.poisoned = true;
                return Err(e.context(format!("and could not cut the file back to {} bytes: {undo}", self.len)));
            }
            return Err(e);
        }
        self.len += line.len() as u64;
        let rec = Record {
            seq,
            time,
            actor: actor.to_owned(),
            action: action.to_owned(),
            details,
            prev: std::mem::replace(&mut self.last_hash, hash.clone()),
            hash,
        };
        self.last_seq = seq;
        Ok(rec)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `seq` of the last record in the log, 0 if it is empty.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// `hash` of the last record in the log ([`GENESIS_PREV`] if empty):
    /// publish it elsewhere to anchor the chain.
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }
}

/// Verifies the whole chain: every line parses, seq is continuous from 1,
/// each prev equals the previous hash, each hash recomputes. Ok(number of
/// records) or Err (a [`ChainError`]) naming the first bad line (1-based)
/// and why. An empty file verifies with 0 records.
pub fn verify(path: &Path) -> anyhow::Result<u64> {
    let file = File::open(path).with_context(|| format!("opening audit log {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut count = 0u64;
    let mut prev = GENESIS_PREV.to_owned();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading audit log {}", path.display()))?;
        if n == 0 {
            return Ok(count);
        }
        let line = count + 1;
        let bad = |reason: String| ChainError {
            path: path.to_owned(),
            line,
            reason,
        };
        if buf.pop() != Some(b'\n') {
            return Err(bad(format!(
                "incomplete last line ({n} bytes, no newline): a write torn by a crash, \
                 a cut-off record, or an append still in progress"
            ))
            .into());
        }
        let rec = parse_line(&buf).map_err(bad)?;
        if rec.seq != line {
            return Err(bad(format!(
                "seq is {}, expected {line}: a record was deleted, inserted or moved",
                rec.seq
            ))
            .into());
        }
        if rec.prev != prev {
            let what = if line == 1 {
                "the genesis value (64 zeros)".to_owned()
            } else {
                format!("the hash of line {}", line - 1)
            };
            return Err(bad(format!("prev {} is not {what}, {prev}", rec.prev)).into());
        }
        prev = rec.hash;
        count = line;
    }
}

/// The canonical body of a record (see the module docs): what `hash` is the
/// SHA-256 of.
pub fn canonical_body(
    seq: u64,
    time: &str,
    actor: &str,
    action: &str,
    details: &Value,
    prev: &str,
) -> anyhow::Result<Vec<u8>> {
    let body = Body {
        seq,
        time,
        actor,
        action,
        details: Canonical(details),
        prev,
    };
    Ok(serde_json::to_vec(&body)?)
}

/// Field order on the wire and in the hash.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: &'a str,
    actor: &'a str,
    action: &'a str,
    details: Canonical<'a>,
    prev: &'a str,
}

/// Serialises a JSON value with object keys sorted at every depth.
struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let mut out = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    out.serialize_entry(k, &Canonical(v))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    out.serialize_element(&Canonical(v))?;
                }
                out.end()
            }
            other => other.serialize(s),
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The line (without `\n`) for a body and its hash.
fn line_from_body(body: &[u8], hash: &str) -> Vec<u8> {
    debug_assert_eq!(body.last(), Some(&b'}'));
    let mut line = Vec::with_capacity(body.len() + HASH_SUFFIX_LEN);
    line.extend_from_slice(&body[..body.len() - 1]);
    line.extend_from_slice(HASH_KEY);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}");
    line
}

/// Parses one line (without `\n`) and checks it on its own: well-formed,
/// `hash` last and matching the SHA-256 of the body as written, sane fields.
fn parse_line(line: &[u8]) -> Result<Record, String> {
    let rec: Record = serde_json::from_slice(line).map_err(|e| format!("not a valid record: {e}"))?;
    let n = line.len();
    if n <= HASH_SUFFIX_LEN
        || !line.ends_with(b"\"}")
        || &line[n - HASH_SUFFIX_LEN..n - HASH_SUFFIX_LEN + HASH_KEY.len()] != HASH_KEY
        || &line[n - 66..n - 2] != rec.hash.as_bytes()
    {
        return Err("not in canonical form: the line must end with ,\"hash\":\"<64 hex digits>\"}".into());
    }
    if !is_hash(&rec.hash) {
        return Err(format!("hash {:?} is not 64 lowercase hex digits", rec.hash));
    }
    if !is_hash(&rec.prev) {
        return Err(format!("prev {:?} is not 64 lowercase hex digits", rec.prev));
    }
    let mut body = line[..n - HASH_SUFFIX_LEN].to_vec();
    body.push(b'}');
    let computed = sha256_hex(&body);
    if computed != rec.hash {
        return Err(format!(
            "hash mismatch: the record says {}, its contents hash to {computed} (the record was altered)",
            rec.hash
        ));
    }
    if rec.seq == 0 {
        return Err("seq is 0; records count from 1".into());
    }
    if rec.actor.is_empty() || rec.action.is_empty() {
        return Err("empty actor or action".into());
    }
    if chrono::DateTime::parse_from_rfc3339(&rec.time).is_err() {
        return Err(format!("time {:?} is not RFC 3339", rec.time));
    }
    Ok(rec)
}

/// What `open` learned from reading the file once.
struct Tail {
    /// Complete (newline-terminated) lines.
    lines: u64,
    /// The last complete line, without its `\n`.
    last: Option<Vec<u8>>,
    /// Byte length up to and including the last `\n`.
    complete_len: u64,
    /// Bytes after the last `\n`, if any.
    torn: Option<Vec<u8>>,
}

/// Creates or opens the file (0600, parents 0700), takes the writer lock,
/// narrows permissions, and scans it.
fn open_locked(path: &Path) -> anyhow::Result<(File, Tail)> {
    let shown = path.display();
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the directory of audit log {shown}"))?;
    }
    let mut opts = OpenOptions::new();
    opts.read(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW);
    let (file, created) = match opts.clone().create_new(true).open(path) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
            opts.open(path).with_context(|| format!("opening audit log {shown}"))?,
            false,
        ),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("creating audit log {shown}"))),
    };
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            bail!("audit log {shown} is already open for writing by another process (one writer only)");
        }
        return Err(anyhow::Error::new(e).context(format!("locking audit log {shown}")));
    }
    let meta = file.metadata().with_context(|| format!("audit log {shown}"))?;
    if !meta.is_file() {
        bail!("audit log {shown} is not a regular file");
    }
    if meta.permissions().mode() & 0o7777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting mode 0600 on audit log {shown}"))?;
    }
    if created {
        // Make the new directory entry durable too.
        let dir = parent.unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing the directory of audit log {shown}"))?;
    }
    let tail = scan(&file).with_context(|| format!("reading audit log {shown}"))?;
    Ok((file, tail))
}

fn scan(file: &File) -> io::Result<Tail> {
    let mut reader = BufReader::new(file);
    let mut tail = Tail {
        lines: 0,
        last: None,
        complete_len: 0,
        torn: None,
    };
    let mut buf = Vec::new();
    let mut last = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            tail.torn = Some(buf);
            break;
        }
        tail.lines += 1;
        tail.complete_len += n as u64;
        buf.pop();
        std::mem::swap(&mut buf, &mut last);
    }
    if tail.lines > 0 {
        tail.last = Some(last);
    }
    Ok(tail)
}
