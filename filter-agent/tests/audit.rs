//! The audit log: the chain verifies, any edit, deletion or reordering is
//! caught at the right line, the chain continues across reopenings, torn
//! last lines are refused (and recovered only on request), mode is 0600.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use filter_agent::audit::{self, AuditLog, ChainError, Record, GENESIS_PREV, TORN_TAIL_ACTION};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("filter-agent-audit-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn log(&self) -> PathBuf {
        self.0.join("audit.jsonl")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `n` records of assorted actions and details; returns them.
fn write_records(path: &Path, n: usize) -> Vec<Record> {
    let actions = [
        "load",
        "reload",
        "activate",
        "expire",
        "reload-rejected",
        "detach",
        "adopt",
    ];
    let mut log = AuditLog::open(path).unwrap();
    (0..n)
        .map(|i| {
            let details = json!({
                "zeta": i,
                "alpha": {"orders": ["O-1", "O-2"], "b": 2, "a": 1.5},
                "generation": i % 2,
            });
            log.append("agent", actions[i % actions.len()], details).unwrap()
        })
        .collect()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn chain_error(err: &anyhow::Error) -> &ChainError {
    err.downcast_ref::<ChainError>()
        .unwrap_or_else(|| panic!("expected a ChainError, got: {err:#}"))
}

#[test]
fn chain_of_records_verifies_and_matches_the_documented_hash() {
    let dir = TempDir::new("chain");
    let path = dir.log();
    let written = write_records(&path, 6);
    assert_eq!(audit::verify(&path).unwrap(), 6);

    let text = lines(&path);
    assert_eq!(text.len(), 6);
    let mut prev = GENESIS_PREV.to_owned();
    for (i, (line, rec)) in text.iter().zip(&written).enumerate() {
        let parsed: Record = serde_json::from_str(line).unwrap();
        assert_eq!(&parsed, rec, "the record append returned is the one on disk");
        assert_eq!(rec.seq, i as u64 + 1);
        assert_eq!(rec.prev, prev);
        assert_eq!(rec.actor, "agent");
        assert!(chrono::DateTime::parse_from_rfc3339(&rec.time).is_ok(), "{}", rec.time);
        assert!(rec.time.ends_with('Z'), "UTC: {}", rec.time);

        // The documented definition, recomputed independently: compact JSON
        // of seq, time, actor, action, details (keys sorted), prev.
        let details = format!(
            "{{\"alpha\":{{\"a\":1.5,\"b\":2,\"orders\":[\"O-1\",\"O-2\"]}},\"generation\":{},\"zeta\":{}}}",
            i % 2,
            i
        );
        let body = format!(
            "{{\"seq\":{},\"time\":{},\"actor\":{},\"action\":{},\"details\":{details},\"prev\":{}}}",
            rec.seq,
            serde_json::to_string(&rec.time).unwrap(),
            serde_json::to_string(&rec.actor).unwrap(),
            serde_json::to_string(&rec.action).unwrap(),
            serde_json::to_string(&rec.prev).unwrap(),
        );
        assert_eq!(rec.hash, hex::encode(Sha256::digest(body.as_bytes())));
        // The line is that body with the hash as its last field.
        assert_eq!(
            line,
            &format!("{},\"hash\":\"{}\"}}", &body[..body.len() - 1], rec.hash)
        );
        // And canonical_body gives the same bytes.
        let canon =
            audit::canonical_body(rec.seq, &rec.time, &rec.actor, &rec.action, &rec.details, &rec.prev).unwrap();
        assert_eq!(canon, body.as_bytes());
        prev = rec.hash.clone();
    }
}

#[test]
fn empty_log_verifies_with_zero_records_and_missing_log_is_an_error() {
    let dir = TempDir::new("empty");
    let path = dir.log();
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.last_seq(), 0);
    assert_eq!(log.last_hash(), GENESIS_PREV);
    assert_eq!(log.path(), path);
    drop(log);
    assert_eq!(audit::verify(&path).unwrap(), 0);
    assert!(audit::verify(&dir.0.join("nope.jsonl")).is_err());
}

#[test]
fn editing_a_field_in_the_middle_fails_at_that_line() {
    let dir = TempDir::new("edit");
    let path = dir.log();
    write_records(&path, 5);
    let mut text = lines(&path);
    assert!(text[2].contains("\"action\":\"activate\""), "{}", text[2]);
    text[2] = text[2].replace("\"action\":\"activate\"", "\"action\":\"expire\"");
    write_lines(&path, &text);

    let err = audit::verify(&path).unwrap_err();
    let ce = chain_error(&err);
    assert_eq!(ce.line, 3, "{err:#}");
    assert!(ce.reason.contains("hash mismatch"), "{err:#}");
    assert!(err.to_string().contains("line 3"), "{err:#}");
}

#[test]
fn editing_details_in_the_middle_fails_at_that_line() {
    let dir = TempDir::new("edit-details");
    let path = dir.log();
    write_records(&path, 4);
    let mut text = lines(&path);
    text[1] = text[1].replace("\"O-2\"", "\"O-9\"");
    write_lines(&path, &text);
    let err = audit::verify(&path).unwrap_err();
    assert_eq!(chain_error(&err).line, 2, "{err:#}");
}

#[test]
fn rehashing_an_edited_line_still_breaks_the_chain_at_the_next_line() {
    let dir = TempDir::new("rehash");
    let path = dir.log();
    write_records(&path, 4);
    let mut text = lines(&path);
    // A forger fixes up line 2's own hash; line 3's prev then no longer matches.
    let mut rec: Record = serde_json::from_str(&text[1]).unwrap();
    rec.actor = "someone-else".into();
    let body = audit::canonical_body(rec.seq, &rec.time, &rec.actor, &rec.action, &rec.details, &rec.prev).unwrap();
    let hash = hex::encode(Sha256::digest(&body));
    let body = String::from_utf8(body).unwrap();
    text[1] = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
    write_lines(&path, &text);

    let err = audit::verify(&path).unwrap_err();
    let ce = chain_error(&err);
    assert_eq!(ce.line, 3, "{err:#}");
    assert!(ce.reason.contains("prev"), "{err:#}");
}

#[test]
fn deleting_a_middle_line_fails() {
    let dir = TempDir::new("delete");
    let path = dir.log();
    write_records(&path, 5);
    let mut text = lines(&path);
    text.remove(2);
    write_lines(&path, &text);

    let err = audit::verify(&path).unwrap_err();
    let ce = chain_error(&err);
    assert_eq!(ce.line, 3, "{err:#}");
    assert!(ce.reason.contains("seq is 4, expected 3"), "{err:#}");
}

#[test]
fn reordering_lines_fails() {
    let dir = TempDir::new("reorder");
    let path = dir.log();
    write_records(&path, 5);
    let mut text = lines(&path);
    text.swap(1, 3);
    write_lines(&path, &text);

    let err = audit::verify(&path).unwrap_err();
    assert_eq!(chain_error(&err).line, 2, "{err:#}");
}

#[test]
fn renumbered_lines_still_fail_on_prev() {
    let dir = TempDir::new("renumber");
    let path = dir.log();
    write_records(&path, 3);
    let mut text = lines(&path);
    // Drop line 1 and pretend line 2 is the first: seq rewritten breaks the
    // hash, so the forger would have to rehash, and then prev is wrong.
    text.remove(0);
    write_lines(&path, &text);
    let err = audit::verify(&path).unwrap_err();
    assert_eq!(chain_error(&err).line, 1, "{err:#}");
}

#[test]
fn reopening_continues_the_chain() {
    let dir = TempDir::new("reopen");
    let path = dir.log();
    let first = write_records(&path, 3);

    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.last_seq(), 3);
    assert_eq!(log.last_hash(), first[2].hash);
    let r4 = log
        .append("operator:uid=0", "detach", json!({"interface": "eth0"}))
        .unwrap();
    assert_eq!(r4.seq, 4);
    assert_eq!(r4.prev, first[2].hash);
    assert_eq!(log.last_hash(), r4.hash);
    drop(log);

    let mut log = AuditLog::open(&path).unwrap();
    let r5 = log.append("agent", "adopt", json!({"program_id": 42})).unwrap();
    assert_eq!(r5.seq, 5);
    assert_eq!(r5.prev, r4.hash);
    drop(log);

    assert_eq!(audit::verify(&path).unwrap(), 5);
}

#[test]
fn a_second_writer_is_refused_while_the_first_is_open() {
    let dir = TempDir::new("lock");
    let path = dir.log();
    let mut log = AuditLog::open(&path).unwrap();
    log.append("agent", "load", json!({})).unwrap();
    let err = AuditLog::open(&path).err().expect("second writer must be refused");
    assert!(err.to_string().contains("already open"), "{err:#}");
    // verify needs no lock.
    assert_eq!(audit::verify(&path).unwrap(), 1);
    drop(log);
    AuditLog::open(&path).unwrap();
}

#[test]
fn torn_last_line_is_refused_then_recovered_on_request() {
    let dir = TempDir::new("torn");
    let path = dir.log();
    let written = write_records(&path, 2);
    // A crash in the middle of appending record 3.
    let fragment = "{\"seq\":3,\"time\":\"2025-01-01T00:00:00.000Z\",\"actor\":\"agent\",\"act";
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(fragment.as_bytes()).unwrap();
    }
    let len_before = std::fs::metadata(&path).unwrap().len();

    // open refuses, naming the line and where the fragment starts, and
    // leaves the file alone.
    let err = AuditLog::open(&path).err().expect("torn log must be refused");
    let ce = chain_error(&err);
    assert_eq!(ce.line, 3, "{err:#}");
    assert!(ce.reason.contains("incomplete last line"), "{err:#}");
    assert!(ce.reason.to_lowercase().contains("inspect the log"), "{err:#}");
    let offset = len_before - fragment.len() as u64;
    assert!(ce.reason.contains(&format!("truncate -s {offset}")), "{err:#}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len_before);

    // verify says the same.
    let err = audit::verify(&path).unwrap_err();
    assert_eq!(chain_error(&err).line, 3, "{err:#}");

    // The explicit recovery cuts the fragment and records it in the chain.
    let (mut log, rec) = AuditLog::recover_torn_tail(&path, "operator:uid=0").unwrap();
    let rec = rec.expect("a torn tail was discarded");
    assert_eq!(rec.seq, 3);
    assert_eq!(rec.prev, written[1].hash);
    assert_eq!(rec.action, TORN_TAIL_ACTION);
    assert_eq!(rec.actor, "operator:uid=0");
    assert_eq!(rec.details["line"], 3);
    assert_eq!(rec.details["offset"], offset);
    assert_eq!(rec.details["bytes"], fragment.len());
    assert_eq!(rec.details["fragment"], fragment);
    assert_eq!(rec.details["sha256"], hex::encode(Sha256::digest(fragment.as_bytes())));
    log.append("agent", "reload", json!({"generation": 7})).unwrap();
    drop(log);
    assert_eq!(audit::verify(&path).unwrap(), 4);

    // Nothing torn: recovery is just open.
    let (log, rec) = AuditLog::recover_torn_tail(&path, "operator:uid=0").unwrap();
    assert!(rec.is_none());
    assert_eq!(log.last_seq(), 4);
}

#[test]
fn corrupt_complete_last_line_is_refused_and_not_recovered() {
    let dir = TempDir::new("corrupt-last");
    let path = dir.log();
    write_records(&path, 3);
    let mut text = lines(&path);
    text[2] = text[2].replace("\"actor\":\"agent\"", "\"actor\":\"agenT\"");
    write_lines(&path, &text);

    let err = AuditLog::open(&path).err().expect("corrupt last line must be refused");
    let ce = chain_error(&err);
    assert_eq!(ce.line, 3, "{err:#}");
    assert!(ce.reason.contains("corrupt"), "{err:#}");
    assert!(AuditLog::recover_torn_tail(&path, "operator").is_err());

    // Garbage that is not even JSON.
    text[2] = "not json".into();
    write_lines(&path, &text);
    let err = AuditLog::open(&path).err().unwrap();
    assert_eq!(chain_error(&err).line, 3, "{err:#}");
}

#[test]
fn file_mode_is_0600_and_parent_dirs_are_created() {
    let dir = TempDir::new("mode");
    let path = dir.0.join("var/log/filter-agent/audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    log.append("agent", "load", json!({"orders": 0})).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o7777;
    assert_eq!(dir_mode & 0o077, 0, "{dir_mode:o}");
    drop(log);

    // An existing log with wider permissions is narrowed on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _log = AuditLog::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[test]
fn strings_with_newlines_stay_on_one_line_and_empty_actor_is_rejected() {
    let dir = TempDir::new("newline");
    let path = dir.log();
    let mut log = AuditLog::open(&path).unwrap();
    log.append(
        "api:authority:ex\nample",
        "reload-rejected",
        json!({"error": "line 1\nline 2\u{0}"}),
    )
    .unwrap();
    assert!(log.append("", "load", json!({})).is_err());
    assert!(log.append("agent", "", json!({})).is_err());
    log.append("agent", "load", json!(null)).unwrap();
    drop(log);
    assert_eq!(lines(&path).len(), 2);
    assert_eq!(audit::verify(&path).unwrap(), 2);
}
