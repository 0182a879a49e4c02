//! The JSON wire format of pushed orders: canonical bytes and Ed25519
//! signatures (round trip, independence from formatting, tampering, wrong
//! keys, malformed signatures, a test vector made by independent tooling),
//! and validation of the order object with the exact field of each problem.
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use filter_agent::orders::wire::{
    canonical_bytes, generate_key, load_signing_key, parse_order, parse_public_key, sign, verify, FieldError,
    Limits, SignedOrder, URL_ENTRY_REFUSED,
};
use filter_common::rules::order_file::EntryKind;
use filter_common::rules::ruleset::DomainAction;
use filter_common::rules::{Action, Category, DomainPattern, Direction, PortRange, Scope};
use serde_json::{json, Value};

const LIMITS: Limits = Limits { max_entries: 10 };

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn order() -> Value {
    json!({
        "id": "NCA-2026-0117",
        "authority": "Example National Communications Authority",
        "reference": "Decision 2026/117, art. 4",
        "category": "legal",
        "issued": "2026-06-01T11:00:00Z",
        "effective": "2026-06-01T12:00:00+02:00",
        "expires": "2036-01-10T12:00:00Z",
        "action": "drop",
        "entries": [
            { "comment": "annex A", "prefixes": ["203.0.113.128/25", "2001:db8:bad::/48", "198.51.100.66"], "direction": "dst" },
            { "prefixes": ["192.0.2.0/24"] },
            { "protocol": "udp", "source": ["any"], "source_ports": [11211], "destination_ports": ["1024-65535", 53] },
            { "protocol": "tcp", "destination": ["198.51.100.10"], "destination_ports": [22], "tcp_flags": "syn,!ack" },
            { "protocol": "icmp", "icmp_type": 8, "icmp_code": 0 },
            { "protocol": 47, "source": ["192.0.2.0/25", "2001:db8::/32"] }
        ]
    })
}

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("filter-agent-wire-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Signatures

#[test]
fn generated_key_signs_and_verifies() {
    let (seed, public) = generate_key().unwrap();
    assert_eq!(seed.len(), 44);
    assert_eq!(public.len(), 44);
    let dir = TempDir::new("keys");
    let path = dir.0.join("authority.key");
    std::fs::write(&path, format!("{seed}\n")).unwrap();
    let signing = load_signing_key(&path).unwrap();
    let verifying = parse_public_key(&public).unwrap();
    assert_eq!(signing.verifying_key(), verifying);

    let o = order();
    let signature = sign(&o, &signing);
    assert_eq!(signature.len(), 88);
    verify(&o, &signature, &verifying).unwrap();

    // Two generated keys differ.
    assert_ne!(generate_key().unwrap().0, seed);
}

#[test]
fn canonical_form_ignores_member_order_and_whitespace() {
    let compact = r#"{"id":"X-1","authority":"Caf\u00e9 Authority","reference":"r","category":"attack","issued":"2026-06-01T11:00:00Z","effective":"2026-06-01T11:00:00Z","expires":"2026-07-01T00:00:00Z","action":"dry-run","entries":[{"prefixes":["192.0.2.0/24"],"direction":"src"},{"protocol":"tcp","destination_ports":[443]}]}"#;
    let pretty = r#"
    {
        "entries": [
            { "direction": "src",   "prefixes": [ "192.0.2.0/24" ] },
            {
                "destination_ports": [ 443 ],
                "protocol": "tcp"
            }
        ],
        "action" : "dry-run",
        "expires": "2026-07-01T00:00:00Z",
        "effective": "2026-06-01T11:00:00Z",
        "issued": "2026-06-01T11:00:00Z",
        "category": "attack",
        "reference": "r",
        "authority": "Café Authority",
        "id": "X-1"
    }"#;
    let a: Value = serde_json::from_str(compact).unwrap();
    let b: Value = serde_json::from_str(pretty).unwrap();
    let expected = r#"{"action":"dry-run","authority":"Café Authority","category":"attack","effective":"2026-06-01T11:00:00Z","entries":[{"direction":"src","prefixes":["192.0.2.0/24"]},{"destination_ports":[443],"protocol":"tcp"}],"expires":"2026-07-01T00:00:00Z","id":"X-1","issued":"2026-06-01T11:00:00Z","reference":"r"}"#;
    assert_eq!(String::from_utf8(canonical_bytes(&a)).unwrap(), expected);
    assert_eq!(canonical_bytes(&a), canonical_bytes(&b));

    let k = key(7);
    let signature = sign(&a, &k);
    assert_eq!(sign(&b, &k), signature, "Ed25519 is deterministic");
    verify(&b, &signature, &k.verifying_key()).unwrap();
    parse_order(&b, &LIMITS, now()).unwrap();
}

#[test]
fn canonical_strings_numbers_and_literals() {
    let v = json!({
        "s": "\u{8}\u{c}\n\r\t\u{1}\u{1f}\"\\/\u{7f}é€😀",
        "n": [0, -1, 11211, 18446744073709551615u64, 1.5],
        "l": [true, false, null],
        "nested": { "b": {}, "a": [] },
        "B": 1,
        "a": 2,
        "é": 3,
        "z": 4
    });
    let expected = "{\"B\":1,\"a\":2,\"l\":[true,false,null],\"n\":[0,-1,11211,18446744073709551615,1.5],\
                    \"nested\":{\"a\":[],\"b\":{}},\
                    \"s\":\"\\b\\f\\n\\r\\t\\u0001\\u001f\\\"\\\\/\u{7f}é€😀\",\"z\":4,\"é\":3}";
    assert_eq!(String::from_utf8(canonical_bytes(&v)).unwrap(), expected);
    // Numbers written as floats come back as serde_json prints them.
    let floats: Value = serde_json::from_str(r#"[8.0, 1e3, 1E3, 0.10]"#).unwrap();
    assert_eq!(canonical_bytes(&floats), b"[8.0,1000.0,1000.0,0.1]");
}

/// Made with Python's `json.dumps(order, sort_keys=True, separators=(",",
/// ":"), ensure_ascii=False)` and the `cryptography` package's Ed25519,
/// seed bytes 0..=31: authorities' tooling can check itself against it.
#[test]
fn test_vector_from_independent_tooling() {
    const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const PUBLIC: &str = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    const SIGNATURE: &str =
        "ih9gLO793Zsa5YWs3zvNaQnxdvLBnjPNIGbCYCXmFknjiou6/NtMOADYcmZlNB9rubKi2nSqyOAoFpYUpzYsAw==";
    let text = r#"{"id": "VEC-1", "authority": "Autorit\u00e9 \u00abExemple\u00bb",
        "reference": "D\u00e9cision 1\t/ art. 2 \"b\"", "category": "legal",
        "issued": "2026-01-01T00:00:00Z", "effective": "2026-01-01T00:00:00Z",
        "expires": "2036-01-01T00:00:00+01:00", "action": "drop",
        "entries": [{"prefixes": ["203.0.113.0/24", "2001:db8::/32"], "direction": "src", "comment": "a\u0001b\u007f"},
                    {"protocol": "udp", "source_ports": [11211, "1024-65535"]}]}"#;
    let canonical = "{\"action\":\"drop\",\"authority\":\"Autorité «Exemple»\",\"category\":\"legal\",\
        \"effective\":\"2026-01-01T00:00:00Z\",\"entries\":[{\"comment\":\"a\\u0001b\u{7f}\",\"direction\":\"src\",\
        \"prefixes\":[\"203.0.113.0/24\",\"2001:db8::/32\"]},{\"protocol\":\"udp\",\"source_ports\":[11211,\"1024-65535\"]}],\
        \"expires\":\"2036-01-01T00:00:00+01:00\",\"id\":\"VEC-1\",\"issued\":\"2026-01-01T00:00:00Z\",\
        \"reference\":\"Décision 1\\t/ art. 2 \\\"b\\\"\"}";
    let o: Value = serde_json::from_str(text).unwrap();
    assert_eq!(String::from_utf8(canonical_bytes(&o)).unwrap(), canonical);

    let dir = TempDir::new("vector");
    let path = dir.0.join("seed");
    std::fs::write(&path, SEED).unwrap();
    let k = load_signing_key(&path).unwrap();
    assert_eq!(k.verifying_key(), parse_public_key(PUBLIC).unwrap());
    assert_eq!(sign(&o, &k), SIGNATURE);
    verify(&o, SIGNATURE, &parse_public_key(PUBLIC).unwrap()).unwrap();
}

#[test]
fn any_changed_field_breaks_the_signature() {
    let k = key(1);
    let o = order();
    let signature = sign(&o, &k);
    let vk = k.verifying_key();
    verify(&o, &signature, &vk).unwrap();

    let mut changed = o.clone();
    changed["entries"][0]["prefixes"][0] = json!("203.0.113.0/25");
    let err = verify(&changed, &signature, &vk).unwrap_err();
    assert_eq!(
        err,
        "signature does not match the order and the key of authority Example National Communications Authority"
    );

    let mut changed = o.clone();
    changed["expires"] = json!("2036-01-10T12:00:01Z");
    assert!(verify(&changed, &signature, &vk).is_err());

    let mut changed = o.clone();
    changed["entries"].as_array_mut().unwrap().swap(0, 1);
    assert!(verify(&changed, &signature, &vk).is_err(), "entry order is signed");

    let mut changed = o.clone();
    changed["entries"][2]["comment"] = json!("added");
    assert!(verify(&changed, &signature, &vk).is_err(), "an added field is signed");
}

#[test]
fn wrong_key_fails() {
    let o = order();
    let signature = sign(&o, &key(1));
    let err = verify(&o, &signature, &key(2).verifying_key()).unwrap_err();
    assert!(err.starts_with("signature does not match the order and the key of authority"), "{err}");
}

#[test]
fn malformed_signatures_and_keys_are_refused() {
    let o = order();
    let vk = key(1).verifying_key();
    assert_eq!(verify(&o, "not base64!", &vk).unwrap_err(), "signature is not valid base64");
    assert_eq!(verify(&o, "", &vk).unwrap_err(), "signature must be 64 bytes");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(verify(&o, &b64.encode([0u8; 63]), &vk).unwrap_err(), "signature must be 64 bytes");
    assert_eq!(verify(&o, &b64.encode([0u8; 65]), &vk).unwrap_err(), "signature must be 64 bytes");
    // The URL-safe alphabet is not standard base64.
    let urlsafe = format!("{}==", "_-".repeat(43));
    assert_eq!(verify(&o, &urlsafe, &vk).unwrap_err(), "signature is not valid base64");
    // Nor is unpadded base64.
    let unpadded = b64.encode([0u8; 64]).trim_end_matches('=').to_string();
    assert_eq!(verify(&o, &unpadded, &vk).unwrap_err(), "signature is not valid base64");

    assert_eq!(parse_public_key("%%%").unwrap_err(), "public key is not valid base64");
    assert_eq!(parse_public_key(&b64.encode([1u8; 31])).unwrap_err(), "public key must be 32 bytes, found 31");
    // The identity point has small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(parse_public_key(&b64.encode(identity)).unwrap_err().contains("weak"));

    let dir = TempDir::new("badkeys");
    let path = dir.0.join("short");
    std::fs::write(&path, b64.encode([1u8; 16])).unwrap();
    let err = load_signing_key(&path).unwrap_err().to_string();
    assert!(err.contains("32-byte seed, found 16 bytes"), "{err}");
    std::fs::write(&path, "****").unwrap();
    assert!(load_signing_key(&path).unwrap_err().to_string().contains("not valid base64"));
    assert!(load_signing_key(&dir.0.join("missing")).is_err());
}

#[test]
fn signed_order_body_refuses_unknown_fields() {
    let body = json!({ "order": order(), "signature": "abc" });
    let parsed: SignedOrder = serde_json::from_value(body).unwrap();
    assert_eq!(parsed.signature, "abc");
    let extra = json!({ "order": order(), "signature": "abc", "key_id": "x" });
    assert!(serde_json::from_value::<SignedOrder>(extra).is_err());
    let missing = json!({ "order": order() });
    assert!(serde_json::from_value::<SignedOrder>(missing).is_err());
}

// ---------------------------------------------------------------------------
// Validation

fn errors_of(o: &Value) -> Vec<FieldError> {
    match parse_order(o, &LIMITS, now()) {
        Ok(parsed) => panic!("expected errors, parsed {parsed:?}"),
        Err(e) => e,
    }
}

/// Exactly one problem, at `field`, whose message contains `message`.
fn only_error(o: &Value, field: &str, message: &str) {
    let errors = errors_of(o);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].field, field, "{errors:#?}");
    assert!(errors[0].message.contains(message), "{errors:#?}");
}

fn with(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut o = order();
    mutate(&mut o);
    o
}

#[test]
fn valid_order_converts_to_the_rule_model() {
    let o = parse_order(&order(), &LIMITS, now()).unwrap();
    assert_eq!(o.id, "NCA-2026-0117");
    assert_eq!(o.authority, "Example National Communications Authority");
    assert_eq!(o.reference, "Decision 2026/117, art. 4");
    assert_eq!(o.category, Category::Legal);
    assert_eq!(o.action, Action::Drop);
    assert_eq!(o.received, now());
    assert_eq!(o.effective, Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap());
    assert_eq!(o.expires, Utc.with_ymd_and_hms(2036, 1, 10, 12, 0, 0).unwrap());
    assert_eq!(o.file, PathBuf::from("api:NCA-2026-0117"));
    assert_eq!(o.line, 0);
    assert_eq!(o.entries.len(), 6);
    assert_eq!(o.entries.iter().map(|e| e.line).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(o.entries[0].comment.as_deref(), Some("annex A"));
    assert_eq!(o.entries[1].comment, None);

    match &o.entries[0].kind {
        EntryKind::Prefixes { nets, direction } => {
            let nets: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
            assert_eq!(nets, ["203.0.113.128/25", "2001:db8:bad::/48", "198.51.100.66/32"]);
            assert_eq!(*direction, Direction::Dst);
        }
        other => panic!("{other:?}"),
    }
    match &o.entries[1].kind {
        EntryKind::Prefixes { direction, .. } => assert_eq!(*direction, Direction::Both),
        other => panic!("{other:?}"),
    }
    match &o.entries[2].kind {
        EntryKind::L4(l4) => {
            assert_eq!(l4.protocol, 17);
            assert_eq!(l4.source, Scope::Any);
            assert_eq!(l4.destination, Scope::Any);
            assert_eq!(l4.source_ports, vec![PortRange { min: 11211, max: 11211 }]);
            assert_eq!(l4.destination_ports, vec![PortRange { min: 1024, max: 65535 }, PortRange { min: 53, max: 53 }]);
            assert_eq!(l4.tcp_flags, None);
        }
        other => panic!("{other:?}"),
    }
    match &o.entries[3].kind {
        EntryKind::L4(l4) => {
            assert_eq!(l4.protocol, 6);
            assert_eq!(l4.destination, Scope::Nets(vec!["198.51.100.10/32".parse().unwrap()]));
            assert_eq!(l4.destination_ports, vec![PortRange { min: 22, max: 22 }]);
            let flags = l4.tcp_flags.unwrap();
            assert_eq!((flags.mask, flags.value), (0x12, 0x02));
        }
        other => panic!("{other:?}"),
    }
    match &o.entries[4].kind {
        EntryKind::L4(l4) => {
            assert_eq!(l4.protocol, 1);
            assert_eq!((l4.icmp_type, l4.icmp_code), (Some(8), Some(0)));
            assert!(l4.source_ports.is_empty() && l4.destination_ports.is_empty());
        }
        other => panic!("{other:?}"),
    }
    match &o.entries[5].kind {
        EntryKind::L4(l4) => {
            assert_eq!(l4.protocol, 47);
            assert_eq!(l4.source, Scope::Nets(vec!["192.0.2.0/25".parse().unwrap(), "2001:db8::/32".parse().unwrap()]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pending_order_and_null_optionals_are_fine() {
    let o = with(|o| {
        o["effective"] = json!("2030-01-01T00:00:00Z");
        o["entries"] = json!([{ "prefixes": ["192.0.2.1"], "direction": null, "comment": null }]);
    });
    let parsed = parse_order(&o, &LIMITS, now()).unwrap();
    assert!(!parsed.is_active(now()), "pending until effective");
    assert!(parsed.is_active(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()));
}

#[test]
fn unknown_fields_are_named() {
    only_error(&with(|o| o["priority"] = json!(1)), "order.priority", "unknown field `priority`");
    only_error(&with(|o| o["entries"][2]["ports"] = json!([1])), "order.entries[2].ports", "unknown field `ports`");
    // TOML's name is not the wire's.
    only_error(&with(|o| o["received"] = json!("2026-06-01T11:00:00Z")), "order.received", "unknown field");
}

#[test]
fn missing_and_mistyped_header_fields() {
    only_error(&with(|o| drop(o.as_object_mut().unwrap().remove("authority"))), "order.authority", "missing field `authority`");
    only_error(&with(|o| o["id"] = json!(17)), "order.id", "must be a string");
    only_error(&with(|o| o["id"] = json!("bad id!")), "order.id", "order id must be non-empty");
    only_error(&with(|o| o["reference"] = json!("  ")), "order.reference", "reference must not be empty");
    only_error(&with(|o| o["authority"] = json!("")), "order.authority", "authority must not be empty");
    only_error(&with(|o| o["category"] = json!("urgent")), "order.category", "unknown variant `urgent`");
    only_error(&with(|o| o["action"] = json!("block")), "order.action", "unknown variant `block`");
    only_error(&with(|o| o["entries"] = json!({})), "order.entries", "must be an array");
    assert_eq!(
        parse_order(&json!([]), &LIMITS, now()).unwrap_err(),
        vec![FieldError { field: "order".into(), message: "must be a JSON object".into() }]
    );
}

#[test]
fn timestamps_and_time_checks() {
    only_error(
        &with(|o| o["effective"] = json!("2026-06-01 12:00")),
        "order.effective",
        "need a full timestamp with a UTC offset",
    );
    only_error(&with(|o| o["issued"] = json!("2026-06-01T11:00:00")), "order.issued", "need a full timestamp");
    only_error(&with(|o| o["expires"] = json!(20260601)), "order.expires", "must be a string");
    // Expires before effective, both in the future.
    only_error(
        &with(|o| {
            o["effective"] = json!("2027-01-01T00:00:00Z");
            o["expires"] = json!("2026-12-31T00:00:00Z");
        }),
        "order.expires",
        "expires must be after effective",
    );
    only_error(
        &with(|o| {
            o["effective"] = json!("2026-01-01T00:00:00Z");
            o["expires"] = json!("2026-06-01T12:00:00Z");
        }),
        "order.expires",
        "the order has already expired (expires 2026-06-01T12:00:00Z, now 2026-06-01T12:00:00Z)",
    );
    only_error(
        &with(|o| o["issued"] = json!("2026-06-01T12:05:01Z")),
        "order.issued",
        "issued in the future: the order is not yet valid (check the signer's clock)",
    );
    // Within the allowed skew.
    parse_order(&with(|o| o["issued"] = json!("2026-06-01T14:05:00+02:00")), &LIMITS, now()).unwrap();
}

#[test]
fn entries_empty_too_many_and_domains() {
    only_error(&with(|o| o["entries"] = json!([])), "order.entries", "order has no entries");
    only_error(&with(|o| drop(o.as_object_mut().unwrap().remove("entries"))), "order.entries", "missing field `entries`");

    // 10 prefixes in one entry fill the limit; one more entry is over it.
    let ten: Vec<String> = (0..10).map(|i| format!("192.0.2.{i}")).collect();
    parse_order(&with(|o| o["entries"] = json!([{ "prefixes": ten }])), &LIMITS, now()).unwrap();
    only_error(
        &with(|o| o["entries"] = json!([{ "prefixes": ten }, { "protocol": "gre" }])),
        "order.entries",
        "too many entries: 11",
    );
    let many: Vec<Value> = (0..11).map(|_| json!({ "protocol": "gre" })).collect();
    only_error(&with(|o| o["entries"] = json!(many)), "order.entries", "at most 10");

    // A domains entry counts one per name.
    let nine: Vec<String> = (0..9).map(|i| format!("n{i}.example")).collect();
    parse_order(&with(|o| o["entries"] = json!([{ "domains": nine }, { "protocol": "gre" }])), &LIMITS, now()).unwrap();
    only_error(
        &with(|o| o["entries"] = json!([{ "domains": nine }, { "domains": ["a.example", "b.example"] }])),
        "order.entries",
        "too many entries: 11",
    );

    for key in ["url", "urls"] {
        let o = with(|o| o["entries"][1] = json!({ key: ["https://example.com/page"] }));
        let errors = errors_of(&o);
        assert_eq!(errors, vec![FieldError { field: format!("order.entries[1].{key}"), message: URL_ENTRY_REFUSED.into() }]);
    }
    assert_eq!(
        URL_ENTRY_REFUSED,
        "URL entries are not enforced: a packet filter sees the name a client asks for, not the path (block the name with a `domains` entry); this order is refused rather than partly applied"
    );
    let errors = errors_of(&with(|o| o["entries"][1] = json!({ "domain": "example.com" })));
    assert_eq!(
        errors,
        [
            FieldError { field: "order.entries[1].domain".into(), message: "unknown field `domain`: names go in `domains`, a list".into() },
            FieldError { field: "order.entries[1]".into(), message: "entry needs `prefixes`, `protocol` or `domains`".into() },
        ]
    );
}

#[test]
fn domains_entries_are_accepted() {
    let o = parse_order(
        &with(|o| {
            o["entries"] = json!([
                { "comment": "annex B", "domains": ["Example.COM.", "*.example.net", ".example.org", "bücher.example", "example.com"] },
                { "domains": ["refused.example"], "dns_answer": "refused" },
                { "domains": ["dropped.example"], "dns_answer": "drop", "comment": null },
                { "domains": ["nx.example"], "dns_answer": null }
            ])
        }),
        &LIMITS,
        now(),
    )
    .unwrap();
    let pats = |list: &[&str]| list.iter().map(|p| DomainPattern::parse(p).unwrap()).collect::<Vec<_>>();
    let kinds: Vec<EntryKind> = o.entries.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            EntryKind::Domains {
                patterns: pats(&["example.com", "*.example.net", ".example.org", "xn--bcher-kva.example"]),
                action: DomainAction::Nxdomain
            },
            EntryKind::Domains { patterns: pats(&["refused.example"]), action: DomainAction::Refused },
            EntryKind::Domains { patterns: pats(&["dropped.example"]), action: DomainAction::Drop },
            EntryKind::Domains { patterns: pats(&["nx.example"]), action: DomainAction::Nxdomain },
        ]
    );
    assert_eq!(o.entries[0].comment.as_deref(), Some("annex B"));
    assert_eq!(o.entries.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[test]
fn domains_entry_problems_have_exact_paths() {
    let one = |entry: Value| with(|o| o["entries"] = json!([entry]));
    let errors = errors_of(&one(json!({ "domains": ["ok.example", "bad name.example", "a.*.example", 7, "*"] })));
    assert_eq!(errors, [FieldError { field: "order.entries[0].domains[3]".into(), message: "must be a string".into() }]);
    let errors = errors_of(&one(json!({ "domains": ["ok.example", "bad name.example", "a.*.example", "*"] })));
    let got: Vec<(String, String)> = errors.into_iter().map(|e| (e.field, e.message)).collect();
    assert_eq!(
        got,
        [
            ("order.entries[0].domains[1]", "`bad name.example`: character U+0020 not allowed in a domain name"),
            ("order.entries[0].domains[2]", "`a.*.example`: `*` is allowed only as the whole first label"),
            ("order.entries[0].domains[3]", "`*`: pattern `*` has no name: it would match every name"),
        ]
        .map(|(f, m)| (f.to_string(), m.to_string()))
    );
    only_error(&one(json!({ "domains": [] })), "order.entries[0].domains", "`domains` is empty");
    only_error(&one(json!({ "domains": "a.example" })), "order.entries[0].domains", "must be an array of strings");
    only_error(
        &one(json!({ "domains": ["a.example"], "dns_answer": "servfail" })),
        "order.entries[0].dns_answer",
        "dns_answer `servfail`: expected `nxdomain`, `refused` or `drop`",
    );
    only_error(&one(json!({ "domains": ["a.example"], "dns_answer": 3 })), "order.entries[0].dns_answer", "must be a string");
    only_error(
        &one(json!({ "prefixes": ["192.0.2.0/24"], "domains": ["a.example"] })),
        "order.entries[0].domains",
        "an entry has one of `prefixes` (block addresses), `protocol` (L4 rule) or `domains` (block names)",
    );
    only_error(
        &one(json!({ "domains": ["a.example"], "destination_ports": [443] })),
        "order.entries[0].destination_ports",
        "`destination_ports` does not apply to a `domains` entry",
    );
    only_error(
        &one(json!({ "domains": ["a.example"], "direction": "dst" })),
        "order.entries[0].direction",
        "`direction` applies to `prefixes`",
    );
    only_error(
        &one(json!({ "prefixes": ["192.0.2.0/24"], "dns_answer": "refused" })),
        "order.entries[0].dns_answer",
        "`dns_answer` applies to `domains` entries",
    );
}

#[test]
fn entry_problems_have_exact_paths() {
    only_error(
        &with(|o| o["entries"][1]["prefixes"] = json!(["192.0.2.7/24"])),
        "order.entries[1].prefixes[0]",
        "`192.0.2.7/24` has host bits set; did you mean 192.0.2.0/24?",
    );
    only_error(
        &with(|o| o["entries"][0]["prefixes"][2] = json!("not-an-ip")),
        "order.entries[0].prefixes[2]",
        "is not an IP address or CIDR prefix",
    );
    only_error(&with(|o| o["entries"][0]["prefixes"][1] = json!(5)), "order.entries[0].prefixes[1]", "must be a string");
    only_error(&with(|o| o["entries"][1]["prefixes"] = json!([])), "order.entries[1].prefixes", "`prefixes` is empty");
    only_error(&with(|o| o["entries"][0]["direction"] = json!("in")), "order.entries[0].direction", "direction `in`");
    only_error(
        &with(|o| o["entries"][1]["destination_ports"] = json!([80])),
        "order.entries[1].destination_ports",
        "`destination_ports` needs `protocol`",
    );
    only_error(&with(|o| o["entries"][1] = json!({ "comment": "x" })), "order.entries[1]", "entry needs `prefixes`, `protocol` or `domains`");
    only_error(&with(|o| o["entries"][1] = json!("192.0.2.0/24")), "order.entries[1]", "must be an object");
    only_error(
        &with(|o| o["entries"][1]["protocol"] = json!("tcp")),
        "order.entries[1].protocol",
        "either `prefixes` (block addresses) or `protocol` (L4 rule), not both",
    );

    // Ports need tcp or udp.
    only_error(
        &with(|o| o["entries"][4]["destination_ports"] = json!([80])),
        "order.entries[4].destination_ports",
        "ports need protocol tcp or udp",
    );
    only_error(
        &with(|o| o["entries"][2]["source_ports"][0] = json!(70000)),
        "order.entries[2].source_ports[0]",
        "port 70000 is not in 0-65535",
    );
    only_error(
        &with(|o| o["entries"][2]["destination_ports"][0] = json!("2000-1000")),
        "order.entries[2].destination_ports[0]",
        "port range `2000-1000` is empty",
    );
    only_error(
        &with(|o| o["entries"][2]["destination_ports"][1] = json!(true)),
        "order.entries[2].destination_ports[1]",
        "use a number or \"min-max\"",
    );
    only_error(&with(|o| o["entries"][2]["source_ports"] = json!([])), "order.entries[2].source_ports", "empty port list");
    only_error(&with(|o| o["entries"][2]["protocol"] = json!("quic")), "order.entries[2].protocol", "protocol `quic`");
    only_error(&with(|o| o["entries"][2]["protocol"] = json!(256)), "order.entries[2].protocol", "protocol 256");
    only_error(&with(|o| o["entries"][2]["direction"] = json!("src")), "order.entries[2].direction", "`direction` applies to `prefixes`");
    only_error(
        &with(|o| o["entries"][2]["source"] = json!(["any", "192.0.2.0/24"])),
        "order.entries[2].source",
        "`any` cannot be combined",
    );
    only_error(&with(|o| o["entries"][3]["destination"] = json!([])), "order.entries[3].destination", "empty address list");
    only_error(
        &with(|o| o["entries"][3]["destination"] = json!(["198.51.100.10/8"])),
        "order.entries[3].destination[0]",
        "did you mean 198.0.0.0/8?",
    );
    only_error(&with(|o| o["entries"][2]["tcp_flags"] = json!("syn")), "order.entries[2].tcp_flags", "tcp_flags needs protocol tcp");
    only_error(&with(|o| o["entries"][3]["tcp_flags"] = json!("syn,bogus")), "order.entries[3].tcp_flags", "tcp flag `bogus`");
    only_error(&with(|o| o["entries"][4]["icmp_type"] = json!(300)), "order.entries[4].icmp_type", "icmp_type 300 is not in 0-255");
    only_error(&with(|o| o["entries"][4]["icmp_code"] = json!("0")), "order.entries[4].icmp_code", "must be an integer");
    only_error(&with(|o| o["entries"][3]["icmp_type"] = json!(8)), "order.entries[3].icmp_type", "icmp_type needs protocol icmp or icmpv6");
    only_error(&with(|o| o["entries"][3]["comment"] = json!(["x"])), "order.entries[3].comment", "must be a string");
}

#[test]
fn all_problems_are_reported_at_once() {
    let o = with(|o| {
        o["category"] = json!("urgent");
        o["bogus"] = json!(true);
        o["expires"] = json!("2020-01-01T00:00:00Z");
        o["entries"][1]["prefixes"] = json!(["192.0.2.7/24"]);
        o["entries"][4]["destination_ports"] = json!([80]);
        o["entries"][5] = json!({ "domains": ["example.com", "bad..example"] });
    });
    let mut fields: Vec<String> = errors_of(&o).into_iter().map(|e| e.field).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "order.bogus",
            "order.category",
            "order.entries[1].prefixes[0]",
            "order.entries[4].destination_ports",
            "order.entries[5].domains[1]",
            "order.expires",
            "order.expires",
        ]
    );
}

#[test]
fn field_errors_serialize_as_field_and_message() {
    let e = FieldError { field: "order.id".into(), message: "m".into() };
    assert_eq!(serde_json::to_value(&e).unwrap(), json!({ "field": "order.id", "message": "m" }));
    assert_eq!(e.to_string(), "order.id: m");
}
