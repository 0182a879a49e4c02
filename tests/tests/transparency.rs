//! `filter-agent report`: the transparency report, from a state directory
//! written the way the agent writes it (the audit log through `AuditLog`,
//! the order journal through `OrderStore`, orders signed with `wire::sign`),
//! run through the real binary. Needs no root and no kernel.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use edgefilter_tests::TempDir;
use filter_agent::audit::AuditLog;
use filter_agent::orders::store::{OrderStore, PushOutcome, RevokeOutcome};
use filter_agent::orders::wire::{self, SignedOrder};
use serde_json::{json, Value};

const REGULATOR: &str = "api:regulator-bot(authority:example-regulator)";
const NOC: &str = "api:noc(operator)";
const FILE_ORDER: &str = r#"id = "FILE-1"
authority = "Example Court"
reference = "Decision 2026/117, art. 4"
category = "legal"
received = 2026-01-10T08:30:00Z
effective = 2026-01-10T12:00:00Z
expires = 2036-01-10T12:00:00Z
action = "drop"

[[entry]]
prefixes = ["203.0.113.128/25"]

[[entry]]
prefixes = ["2001:db8:bad::/48"]
direction = "src"
"#;

/// A state directory with a history, and the time of each record.
struct Fixture {
    dir: TempDir,
    /// action label -> the record's `time` as written.
    at: BTreeMap<&'static str, String>,
}

impl Fixture {
    fn state(&self) -> PathBuf {
        self.dir.0.join("state")
    }
    fn config(&self) -> PathBuf {
        self.dir.0.join("agent.toml")
    }
    fn t(&self, label: &str) -> &str {
        &self.at[label]
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
}

fn order(id: &str, authority: &str, category: &str, effective: DateTime<Utc>, entries: Value) -> Value {
    json!({
        "id": id, "authority": authority, "reference": format!("Decision {id}, art. 2"), "category": category,
        "issued": ts(Utc::now() - chrono::Duration::minutes(5)),
        "effective": ts(effective),
        "expires": ts(Utc::now() + chrono::Duration::days(30)),
        "action": "drop",
        "entries": entries,
    })
}

/// load FILE-1; push REG-1 (authority, signed); a rejected push; push
/// NOC-1 (operator); revoke REG-1; NOC-1 expires; push REG-2 (pending:
/// effective tomorrow); stop.
fn fixture(tag: &str) -> Fixture {
    let dir = TempDir::new(tag);
    std::fs::create_dir_all(dir.0.join("rules")).unwrap();
    std::fs::write(dir.0.join("rules/file-1.toml"), FILE_ORDER).unwrap();
    std::fs::write(dir.0.join("agent.toml"), "interfaces = [\"lo\"]\nrules = [\"rules\"]\nstate_dir = \"state\"\n").unwrap();
    let state = dir.0.join("state");
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut log = AuditLog::open(&state.join("audit.jsonl")).unwrap();
    let (mut store, torn) = OrderStore::open(&state.join("orders.journal")).unwrap();
    assert!(torn.is_none());
    let mut at = BTreeMap::new();
    // Records a few milliseconds apart, so every window edge is exact.
    let mut append = |label: &'static str, actor: &str, action: &str, details: Value| {
        std::thread::sleep(Duration::from_millis(15));
        let record = log.append(actor, action, details).unwrap();
        std::thread::sleep(Duration::from_millis(15));
        at.insert(label, record.time);
    };
    let apply = |n: u64, in_force: &[&str], extra: Value| {
        let mut d = json!({ "sequence": n, "generation": n % 2, "orders_in_force": in_force, "prefix_rules": 3, "l4_slots": 0, "seconds": 0.01, "cleanup_seconds": 0.001 });
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        d
    };
    // Pushes, revokes and validity changes record only the change (as the
    // agent writes them since the order API); loads and reloads the full set.
    let delta = |n: u64, added: &[&str], removed: &[&str], count: usize, extra: Value| {
        let mut d = json!({ "sequence": n, "generation": n % 2, "in_force_added": added, "in_force_removed": removed, "orders_in_force_count": count, "prefix_rules": 3, "l4_slots": 0, "seconds": 0.01 });
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        d
    };
    let now = Utc::now();
    append("load", "operator:uid=0", "load", apply(1, &["FILE-1"], json!({ "pins": "/sys/fs/bpf/edgefilter" })));

    let reg1 = order("REG-1", "example-regulator", "legal", now - chrono::Duration::minutes(1), json!([
        { "prefixes": ["198.51.100.0/24"], "direction": "src" },
        { "protocol": "udp", "source_ports": [11211] },
    ]));
    let signed = SignedOrder { signature: wire::sign(&reg1, &key), order: reg1 };
    assert_eq!(store.push("REG-1", &signed, REGULATOR, Utc::now()).unwrap(), PushOutcome::Created);
    append("push1", REGULATOR, "push", delta(2, &["REG-1"], &[], 2, json!({ "orders": ["REG-1"] })));

    append("rejected", REGULATOR, "push-rejected", json!({ "reason": "invalid order: 1 problem(s)", "fields": [{ "field": "order.expires", "message": "the order has already expired" }], "bytes": 512 }));

    let noc1 = order("NOC-1", "Example ISP NOC", "attack", now - chrono::Duration::minutes(1), json!([{ "prefixes": ["192.0.2.0/24"] }]));
    assert_eq!(store.push("NOC-1", &SignedOrder { order: noc1, signature: String::new() }, NOC, Utc::now()).unwrap(), PushOutcome::Created);
    // The full-set form of earlier versions still replays.
    append("push2", NOC, "push", apply(3, &["FILE-1", "NOC-1", "REG-1"], json!({ "order": "NOC-1" })));

    assert_eq!(store.revoke("REG-1", REGULATOR, "court ruling lifted").unwrap(), RevokeOutcome::Revoked);
    append("revoke", REGULATOR, "revoke", delta(4, &[], &["REG-1"], 2, json!({ "order": "REG-1", "reason": "court ruling lifted" })));

    append("expire", "agent", "expire", delta(5, &[], &["NOC-1"], 1, json!({ "expired": ["NOC-1"], "activated": [] })));

    let reg2 = order("REG-2", "example-regulator", "legal", now + chrono::Duration::days(1), json!([{ "prefixes": ["198.51.100.0/24"] }]));
    let signed = SignedOrder { signature: wire::sign(&reg2, &key), order: reg2 };
    assert_eq!(store.push("REG-2", &signed, REGULATOR, Utc::now()).unwrap(), PushOutcome::Created);
    append("push3", REGULATOR, "push", delta(6, &[], &[], 1, json!({ "orders": ["REG-2"] })));

    append("stop", "agent", "stop", json!({ "filtering": "stays in force", "pins": "/sys/fs/bpf/edgefilter" }));
    Fixture { dir, at }
}

fn report(args: &[&str]) -> Output {
    Command::new(edgefilter_tests::agent_binary()).arg("report").args(args).output().unwrap()
}

fn report_json(args: &[&str]) -> Value {
    let out = report(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "report {args:?} failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn ids(report: &Value) -> Vec<&str> {
    report["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect()
}

fn find<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["orders"].as_array().unwrap().iter().find(|o| o["id"] == id).unwrap_or_else(|| panic!("no {id} in {report:#}"))
}

fn far_past() -> String {
    ts(Utc::now() - chrono::Duration::hours(1))
}

fn far_future() -> String {
    ts(Utc::now() + chrono::Duration::hours(1))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A stand-in for a running agent's /status.json (one request).
fn fake_agent(status: Value) -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "request cut short");
            request.extend_from_slice(&buf[..n]);
        }
        let body = status.to_string();
        write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_string()
    });
    (addr, handle)
}

/// RFC 4180 rows (quoted fields, doubled quotes, CRLF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted, mut chars) = (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "CSV does not end with a line end: {text}");
    rows
}

#[test]
fn report_lists_orders_by_authority_and_category_with_their_lifecycle_in_the_window() {
    let f = fixture("transp");
    let config = path(&f.config()).to_string();

    // The whole history, with the order files for authority and category.
    let out = f.dir.0.join("report.json");
    let from = far_past();
    let to = far_future();
    let run = report(&["--from", &from, "--to", &to, "--config", &config, "--out", path(&out)]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.stdout.is_empty(), "--out writes the file, not stdout");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(all["window"], json!({ "from": from, "to": to }));
    assert!(parse(all["generated"].as_str().unwrap()) <= Utc::now());
    assert_eq!(all["sources"]["audit_log"]["records"], 8);
    assert_eq!(all["sources"]["audit_log"]["chain"], "verified");
    assert_eq!(all["sources"]["journal"]["records"], 4, "3 pushes and a revocation");
    // Grouped by authority (byte order), then category, then id.
    assert_eq!(ids(&all), ["FILE-1", "NOC-1", "REG-1", "REG-2"], "{all:#}");

    let file = find(&all, "FILE-1");
    assert_eq!(file["authority"], "Example Court");
    assert_eq!(file["category"], "legal");
    assert_eq!(file["source"], "file");
    assert_eq!(file["entries"], 2);
    assert_eq!(file["reference"], "Decision 2026/117, art. 4");
    assert_eq!(file["first_activation"], f.t("load"));
    assert_eq!((file["in_force_at_start"].as_bool(), file["in_force_at_end"].as_bool()), (Some(false), Some(true)));
    assert!(file["revoked"].is_null() && file["expired"].is_null() && file["ended"].is_null(), "{file}");

    let reg1 = find(&all, "REG-1");
    assert_eq!(reg1["authority"], "example-regulator");
    assert_eq!(reg1["category"], "legal");
    assert_eq!(reg1["source"], "api");
    assert_eq!(reg1["pushed_by"], REGULATOR);
    assert_eq!(reg1["entries"], 2);
    assert_eq!(reg1["action"], "drop");
    assert_eq!(reg1["first_activation"], f.t("push1"));
    assert_eq!(reg1["revoked"], json!({ "at": f.t("revoke"), "by": REGULATOR, "reason": "court ruling lifted" }));
    assert_eq!(reg1["ended"], json!({ "at": f.t("revoke"), "action": "revoke" }));
    assert!(reg1["expired"].is_null());
    assert_eq!(reg1["in_force_at_end"], false);
    let held = (parse(f.t("revoke")) - parse(f.t("push1"))).num_milliseconds() as f64 / 1000.0;
    assert_eq!(reg1["seconds_in_force"].as_f64(), Some(held));

    let noc1 = find(&all, "NOC-1");
    assert_eq!((noc1["authority"].as_str(), noc1["category"].as_str()), (Some("Example ISP NOC"), Some("attack")));
    assert_eq!(noc1["pushed_by"], NOC);
    assert_eq!(noc1["first_activation"], f.t("push2"));
    assert_eq!(noc1["expired"], f.t("expire"));
    assert_eq!(noc1["ended"]["action"], "expire");
    assert!(noc1["revoked"].is_null());

    let reg2 = find(&all, "REG-2");
    assert!(reg2["first_activation"].is_null(), "pushed pending, never in force: {reg2}");
    assert_eq!(reg2["seconds_in_force"].as_f64(), Some(0.0));

    // Counters: not in the audit log; said so, never made up.
    for o in all["orders"].as_array().unwrap() {
        assert!(o["packets_dropped"].is_null() && o["bytes_dropped"].is_null(), "{o}");
    }
    assert!(all["counters"]["source"].is_null());
    assert!(all["counters"]["scope"].as_str().unwrap().starts_with("unknown"), "{}", all["counters"]);

    let totals = &all["totals"];
    assert_eq!(totals["orders"], 4);
    assert_eq!(totals["push_rejected"], 1);
    assert!(totals["packets_dropped"].is_null());
    let regulator = &totals["by_authority"]["example-regulator"];
    assert_eq!((regulator["orders"].as_u64(), regulator["revoked"].as_u64(), regulator["activated"].as_u64()), (Some(2), Some(1), Some(1)), "{totals:#}");
    assert_eq!(totals["by_authority"]["Example Court"]["orders"], 1);
    assert_eq!(totals["by_authority"]["Example ISP NOC"]["expired"], 1);
    assert_eq!(totals["by_category"]["legal"]["orders"], 3);
    assert_eq!(totals["by_category"]["attack"]["orders"], 1);
    assert_eq!(totals["by_category"]["legal"]["in_force_at_end"], 1);

    // [revoke, expire): REG-1 and NOC-1 were in force at the start, REG-1
    // is revoked at the first instant, the expiry falls after the end,
    // REG-2 and the rejected push are outside. Without --config the file
    // order's authority and category are unknown (the journal still names
    // the pushed orders').
    let state = path(&f.state()).to_string();
    let mid = report_json(&["--from", f.t("revoke"), "--to", f.t("expire"), "--state-dir", &state]);
    assert_eq!(ids(&mid), ["NOC-1", "REG-1", "FILE-1"], "unknown authority last: {mid:#}");
    let reg1 = find(&mid, "REG-1");
    assert_eq!(reg1["in_force_at_start"], true);
    assert!(reg1["first_activation"].is_null());
    assert_eq!(reg1["revoked"]["at"], f.t("revoke"));
    assert_eq!(reg1["seconds_in_force"].as_f64(), Some(0.0));
    let noc1 = find(&mid, "NOC-1");
    assert_eq!((noc1["in_force_at_start"].as_bool(), noc1["in_force_at_end"].as_bool()), (Some(true), Some(true)));
    assert!(noc1["expired"].is_null() && noc1["ended"].is_null(), "{noc1}");
    let held = (parse(f.t("expire")) - parse(f.t("revoke"))).num_milliseconds() as f64 / 1000.0;
    assert_eq!(noc1["seconds_in_force"].as_f64(), Some(held));
    let file = find(&mid, "FILE-1");
    assert!(file["authority"].is_null() && file["category"].is_null() && file["entries"].is_null(), "{file}");
    assert_eq!(file["source"], "file");
    assert_eq!(mid["totals"]["by_authority"]["(unknown)"]["orders"], 1);
    assert_eq!(mid["totals"]["push_rejected"], 0);
    assert!(mid["notes"].to_string().contains("no --config"), "{}", mid["notes"]);

    // After the stop: filtering stays in force, so does FILE-1; nothing else.
    let after_stop = ts(parse(f.t("stop")) + chrono::Duration::milliseconds(1));
    let late = report_json(&["--from", &after_stop, "--to", &far_future(), "--config", &config]);
    assert_eq!(ids(&late), ["FILE-1"], "{late:#}");
    assert_eq!(find(&late, "FILE-1")["in_force_at_start"], true);
    assert_eq!(late["sources"]["audit_log"]["records_in_window"], 0);

    // Before the first record: nothing.
    let early = report_json(&["--from", &ts(parse(f.t("load")) - chrono::Duration::hours(2)), "--to", f.t("load"), "--config", &config]);
    assert_eq!(ids(&early), Vec::<&str>::new());
    assert_eq!(early["totals"]["orders"], 0);

    // CSV, with counters read from a running agent's /status.json.
    let (addr, agent) = fake_agent(json!({
        "orders": [{ "order": "FILE-1", "category": "legal", "state": "in-force", "expires": "2036-01-10T12:00:00+00:00", "expires_unix": 2083579200 }],
        "orders_hits": [{ "order": "FILE-1", "category": "legal", "dry_run": false, "packets": 1234, "bytes": 98765 }],
    }));
    let run = report(&["--from", &from, "--to", &to, "--config", &config, "--format", "csv", "--agent", &addr]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(agent.join().unwrap(), "GET /status.json HTTP/1.1");
    let text = String::from_utf8(run.stdout).unwrap();
    let rows = parse_csv(&text);
    assert_eq!(rows[0], filter_agent::transparency::CSV_COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>(), "{text}");
    assert_eq!(rows.len(), 5, "a header and one row per order:\n{text}");
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}"));
    let row = |id: &str| rows.iter().find(|r| r[0] == id).unwrap_or_else(|| panic!("no row {id}:\n{text}"));
    assert!(text.contains("\"Decision 2026/117, art. 4\""), "a comma is quoted: {text}");
    let file = row("FILE-1");
    assert_eq!(file[col("authority")], "Example Court");
    assert_eq!(file[col("reference")], "Decision 2026/117, art. 4");
    assert_eq!(file[col("entries")], "2");
    assert_eq!(file[col("first_activation")], f.t("load"));
    assert_eq!(file[col("in_force_at_end")], "true");
    assert_eq!((file[col("packets_dropped")].as_str(), file[col("bytes_dropped")].as_str()), ("1234", "98765"));
    assert!(file[col("counters")].starts_with(&format!("lifetime totals from http://{addr}/status.json at ")), "{file:?}");
    let reg1 = row("REG-1");
    assert_eq!(reg1[col("source")], "api");
    assert_eq!(reg1[col("category")], "legal");
    assert_eq!(reg1[col("revoked_at")], f.t("revoke"));
    assert_eq!(reg1[col("revoked_by")], REGULATOR);
    assert_eq!(reg1[col("revocation_reason")], "court ruling lifted");
    assert_eq!(reg1[col("packets_dropped")], "", "no counter for an order no longer in force");
    assert_eq!(row("NOC-1")[col("expired")], f.t("expire"));
    assert_eq!(row("REG-2")[col("first_activation")], "");

    // The same counters in JSON: totals of what is known, and how much is not.
    let (addr, agent) = fake_agent(json!({ "orders_hits": [{ "order": "FILE-1", "category": "legal", "dry_run": false, "packets": 1234, "bytes": 98765 }] }));
    let counted = report_json(&["--from", &from, "--to", &to, "--config", &config, "--agent", &addr]);
    agent.join().unwrap();
    assert_eq!(find(&counted, "FILE-1")["packets_dropped"], 1234);
    assert_eq!(counted["totals"]["packets_dropped"], 1234);
    assert_eq!(counted["totals"]["orders_without_counters"], 3);
    assert_eq!(counted["totals"]["by_authority"]["Example Court"]["bytes_dropped"], 98765);
    assert_eq!(counted["counters"]["source"], format!("http://{addr}/status.json"));

    // An empty or reversed window is an error.
    let bad = report(&["--from", &to, "--to", &from, "--state-dir", &state]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be before --to"));
}

#[test]
fn a_tampered_audit_log_is_refused_with_the_broken_line() {
    let f = fixture("transp-tamper");
    let log = f.state().join("audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().position(|l| l.contains("court ruling lifted")).unwrap() + 1;
    std::fs::write(&log, text.replace("court ruling lifted", "court ruling upheld")).unwrap();
    let out = f.dir.0.join("report.json");
    let run = report(&["--from", &far_past(), "--to", &far_future(), "--config", path(&f.config()), "--out", path(&out)]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("refusing to report") && err.contains(&format!("line {line}: hash mismatch")), "{err}");
    assert!(!out.exists(), "nothing is reported from a broken chain");

    // A deleted record breaks the chain too.
    let lines: Vec<&str> = text.lines().collect();
    let cut: String = lines.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&log, cut).unwrap();
    let run = report(&["--from", &far_past(), "--to", &far_future(), "--state-dir", path(&f.state())]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && err.contains("line 3: seq is 4, expected 3"), "{err}");
    assert!(run.stdout.is_empty());
}
