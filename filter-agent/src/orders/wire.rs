//! The JSON wire format of orders that authorities push over the HTTPS API,
//! and their Ed25519 signatures.
//!
//! # Request body
//!
//! ```json
//! {
//!   "order": { ...the order object... },
//!   "signature": "base64 of the 64-byte Ed25519 signature over the canonical form of `order`"
//! }
//! ```
//!
//! Both fields are required and no other field is accepted ([`SignedOrder`]).
//!
//! # The order object
//!
//! It mirrors the TOML order files of `rules/README.md`, with `issued`
//! instead of `received` and `entries` instead of `[[entry]]`:
//!
//! ```json
//! {
//!   "id": "EXAMPLE-REG-2026-0117",
//!   "authority": "Example National Communications Authority",
//!   "reference": "Decision 2026/117, art. 4",
//!   "category": "legal",
//!   "issued": "2026-01-10T08:30:00Z",
//!   "effective": "2026-01-10T12:00:00Z",
//!   "expires": "2036-01-10T12:00:00Z",
//!   "action": "drop",
//!   "entries": [
//!     { "comment": "annex A", "prefixes": ["203.0.113.128/25", "2001:db8:bad::/48"], "direction": "both" },
//!     { "protocol": "udp", "source_ports": [11211], "destination_ports": ["1024-65535"] },
//!     { "comment": "annex B", "domains": ["example.com", "*.example.net", ".example.org"], "dns_answer": "nxdomain" }
//!   ]
//! }
//! ```
//!
//! - `id`: letters, digits and `. _ : - /`. `authority`, `reference`: non-empty.
//! - `category`: `attack` | `legal` | `abuse-feed` | `operator`;
//!   `action`: `drop` | `dry-run`.
//! - `issued` (when the authority signed the order), `effective`, `expires`:
//!   strings, RFC 3339 with an offset (`Z` or `+hh:mm`). `expires` must be
//!   after `effective` and after now; `issued` may be at most 5 minutes
//!   ahead of the agent's clock. A future `effective` is fine: the order is
//!   pending until then.
//! - `entries`: a non-empty array. Each entry is an object exactly like a TOML
//!   `[[entry]]`: `prefixes` (+ optional `direction`), or `protocol` with
//!   optional `source`, `destination`, `source_ports`, `destination_ports`,
//!   `tcp_flags`, `icmp_type`, `icmp_code`, or `domains` (names: `example.com`,
//!   `*.example.com`, `.example.com`) with optional `dns_answer`
//!   (`nxdomain`, the default, `refused` or `drop`); `comment` is optional in
//!   all. The same rules apply (host bits set is an error, ports need tcp or
//!   udp, names are checked and normalised, ...), with the same messages. An
//!   optional field set to `null` counts as absent.
//! - At most [`Limits::max_entries`] entries, where a `prefixes` entry counts
//!   one per prefix, a `domains` entry one per name and any other entry
//!   counts one. An order over the limit gets that one error; its entries
//!   are not checked further.
//! - URL entries (an entry with a `url` or `urls` key) are refused, never
//!   silently dropped: a packet filter sees names, not paths.
//! - An unknown field, at the top or in an entry, is an error naming it.
//!
//! Every problem is reported at once as a [`FieldError`] whose `field` is a
//! path such as `order.entries[2].source_ports[0]`.
//!
//! # Canonical form (the signed bytes)
//!
//! The signature covers [`canonical_bytes`] of the `order` value (not of
//! the whole request body), which is the UTF-8 JSON text of `order` written:
//!
//! 1. compactly: no whitespace at all outside strings (no space after `:` or
//!    `,`, no newline);
//! 2. with the members of every object, at every depth, sorted by key,
//!    comparing the keys' UTF-8 bytes (the same as comparing Unicode code
//!    points); each key appears once;
//! 3. with array elements in their given order;
//! 4. with `true`, `false` and `null` as such;
//! 5. with numbers as serde_json prints them. Integers, the only numbers a
//!    valid order contains, are plain decimal: optional `-`, no leading
//!    zeros, no `+`, fraction or exponent (`0`, `-1`, `11211`). A number
//!    written with a fraction or an exponent (`8.0`, `1e3`) is read as a
//!    float and printed back in its shortest round-trip form (`8.0`,
//!    `1000.0`); no field of an order accepts one, so authorities should
//!    send integers only;
//! 6. with strings (keys and values) between `"` and escaped exactly so:
//!    `"` as `\"`, `\` as `\\`, U+0008 as `\b`, U+000C as `\f`, U+000A as
//!    `\n`, U+000D as `\r`, U+0009 as `\t`, every other character below
//!    U+0020 as `\u00XX` with lowercase hex digits (`\u001f`). Everything
//!    else, including `/`, U+007F and all non-ASCII characters, is written
//!    as its raw UTF-8 bytes, never as a `\u` escape. No Unicode
//!    normalization is done.
//!
//! Example: `{ "b": 1, "a": ["x\ty", null, "é"] }` is canonically
//! `{"a":["x\ty",null,"é"],"b":1}`.
//!
//! How the order text was formatted on the wire (whitespace, member order,
//! `\u00e9` or `é`) does not matter: the agent parses it and re-serializes
//! it. If an object repeats a key, the last value is kept, and that value
//! is what is both verified and applied. For orders with integer numbers
//! only, Python's `json.dumps(order, sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False).encode("utf-8")` produces exactly these bytes.
//!
//! # Signature and keys
//!
//! Ed25519 as in RFC 8032 (pure Ed25519: no pre-hash, no context) over the
//! canonical bytes. Verification is strict: non-canonical signatures and
//! small-order keys are refused. The signature, the public key (32 bytes)
//! and the private key seed (32 bytes) are all written in standard base64
//! (RFC 4648 alphabet with `+` and `/`, with `=` padding): 88, 44 and 44
//! characters. A signing key file holds the seed on one line.
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use filter_common::rules::order_file::{
    check_order_id, parse_direction, parse_dns_answer, parse_domain_list, parse_net, parse_timestamp, protocol_number, Entry,
    EntryKind, L4Entry, L4_ONLY_FIELDS,
};
use filter_common::rules::ruleset::{DomainAction, TcpFlags};
use filter_common::rules::{Action, Category, Direction, Order, PortRange, Scope};
use serde_json::{Map, Value};

/// Request body of a push: the order and the authority's signature over its canonical form.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignedOrder {
    pub order: Value,
    /// Standard base64 of the 64-byte Ed25519 signature over [`canonical_bytes`] of `order`.
    pub signature: String,
}

/// A problem with one field, e.g. field `order.entries[2].source_ports[0]`,
/// message "port 70000 is not in 0-65535".
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Limits on what one order may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries per order; a `prefixes` entry counts one per prefix.
    pub max_entries: usize,
}

/// How far ahead of the agent's clock `issued` may be (signer clock skew).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// The message for a URL entry.
pub const URL_ENTRY_REFUSED: &str = "URL entries are not enforced: a packet filter sees the name a client asks for, not the path (block the name with a `domains` entry); this order is refused rather than partly applied";

const ORDER_FIELDS: &[&str] = &["id", "authority", "reference", "category", "issued", "effective", "expires", "action", "entries"];
const ENTRY_FIELDS: &[&str] = &[
    "comment",
    "prefixes",
    "direction",
    "protocol",
    "source",
    "destination",
    "source_ports",
    "destination_ports",
    "tcp_flags",
    "icmp_type",
    "icmp_code",
    "rate_limit",
    "fragments",
    "syn_auth",
    "domains",
    "dns_answer",
];
const URL_FIELDS: &[&str] = &["url", "urls"];

// ---------------------------------------------------------------------------
// Canonical form, keys, signatures

/// Canonical bytes that are signed: UTF-8 JSON of `order`, compact, object
/// keys sorted by byte order at every depth. See the module docs for the
/// exact definition.
pub fn canonical_bytes(order: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(order, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            // Sorted here rather than relying on serde_json's map type, which
            // keeps insertion order when its `preserve_order` feature is on.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, value).expect("serializing a JSON scalar into a Vec cannot fail");
}

/// Parses a standard-base64 32-byte Ed25519 public key.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, String> {
    let bytes = B64.decode(b64.trim()).map_err(|_| "public key is not valid base64".to_string())?;
    let bytes: [u8; 32] =
        bytes.try_into().map_err(|b: Vec<u8>| format!("public key must be 32 bytes, found {}", b.len()))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "public key is not a valid Ed25519 point".to_string())?;
    if key.is_weak() {
        return Err("public key is a weak (small-order) Ed25519 key".into());
    }
    Ok(key)
}

/// Reads a signing key file: a 32-byte seed in standard base64 (one line),
/// as written by [`generate_key`].
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read signing key {}", path.display()))?;
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("{}: the signing key is not valid base64", path.display()))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow::anyhow!("{}: the signing key must be a 32-byte seed, found {} bytes", path.display(), b.len())
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A new key pair from OS randomness: (seed base64, public key base64).
pub fn generate_key() -> anyhow::Result<(String, String)> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("cannot read OS randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let pair = (B64.encode(seed), B64.encode(key.verifying_key().as_bytes()));
    seed.fill(0);
    Ok(pair)
}

/// Signs the canonical form of `order`: standard base64 of the 64-byte signature.
pub fn sign(order: &Value, key: &SigningKey) -> String {
    B64.encode(key.sign(&canonical_bytes(order)).to_bytes())
}

/// Checks `signature_b64` against the canonical form of `order` and `key`.
pub fn verify(order: &Value, signature_b64: &str, key: &VerifyingKey) -> Result<(), String> {
    let bytes = B64.decode(signature_b64.trim()).map_err(|_| "signature is not valid base64".to_string())?;
    let bytes: [u8; 64] = bytes.try_into().map_err(|_| "signature must be 64 bytes".to_string())?;
    let signature = Signature::from_bytes(&bytes);
    key.verify_strict(&canonical_bytes(order), &signature).map_err(|_| {
        let authority = order.get("authority").and_then(Value::as_str).unwrap_or("(none named in the order)");
        format!("signature does not match the order and the key of authority {authority}")
    })
}

// ---------------------------------------------------------------------------
// Validation

/// Collects the problems of one order.
#[derive(Default)]
struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError { field: field.into(), message: message.into() });
    }

    /// Reports every key of `obj` not in `allowed`.
    fn unknown_fields(&mut self, obj: &Map<String, Value>, path: &str, allowed: &[&str]) {
        for key in obj.keys() {
            if key == "domain" && allowed.contains(&"domains") {
                self.err(format!("{path}.{key}"), "unknown field `domain`: names go in `domains`, a list");
            } else if !allowed.contains(&key.as_str()) {
                self.err(format!("{path}.{key}"), format!("unknown field `{key}`; expected one of: {}", allowed.join(", ")));
            }
        }
    }

    /// A required string field.
    fn required_str<'v>(&mut self, obj: &'v Map<String, Value>, path: &str, name: &str) -> Option<&'v str> {
        match obj.get(name) {
            None => {
                self.err(format!("{path}.{name}"), format!("missing field `{name}`"));
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.err(format!("{path}.{name}"), "must be a string");
                None
            }
        }
    }

    /// An optional string field (`null` = absent); `Err(())` after a type error.
    fn optional_str<'v>(&mut self, obj: &'v Map<String, Value>, path: &str, name: &str) -> Result<Option<&'v str>, ()> {
        match present(obj, name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => {
                self.err(format!("{path}.{name}"), "must be a string");
                Err(())
            }
        }
    }

    /// An array of strings, each with its field path.
    fn str_list<'v>(&mut self, value: &'v Value, field: &str) -> Option<Vec<(String, &'v str)>> {
        let Value::Array(items) = value else {
            self.err(field, "must be an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push((format!("{field}[{i}]"), s.as_str())),
                _ => {
                    self.err(format!("{field}[{i}]"), "must be a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn timestamp(&mut self, obj: &Map<String, Value>, name: &str) -> Option<DateTime<Utc>> {
        let text = self.required_str(obj, "order", name)?;
        parse_timestamp(name, text).map_err(|msg| self.err(format!("order.{name}"), msg)).ok()
    }

    fn keyword<T: serde::de::DeserializeOwned>(&mut self, obj: &Map<String, Value>, name: &str) -> Option<T> {
        let text = self.required_str(obj, "order", name)?;
        serde_json::from_value(Value::String(text.to_string()))
            .map_err(|e| self.err(format!("order.{name}"), format!("{name}: {e}")))
            .ok()
    }
}

/// A field that is there and not `null`.
fn present<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// What an entry counts toward [`Limits::max_entries`].
fn entry_weight(entry: &Value) -> usize {
    match (entry.get("prefixes"), entry.get("domains")) {
        (Some(Value::Array(list)), _) | (None, Some(Value::Array(list))) => list.len(),
        _ => 1,
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Validates the order object (all problems at once) and converts it to
/// the rule model. `now` decides expiry and is recorded as `received`.
pub fn parse_order(order: &Value, limits: &Limits, now: DateTime<Utc>) -> Result<Order, Vec<FieldError>> {
    let Value::Object(obj) = order else {
        return Err(vec![FieldError { field: "order".into(), message: "must be a JSON object".into() }]);
    };
    let mut cx = Check::default();
    cx.unknown_fields(obj, "order", ORDER_FIELDS);

    let id = cx.required_str(obj, "order", "id").map(str::trim);
    if let Some(id) = id {
        if let Err(msg) = check_order_id(id) {
            cx.err("order.id", msg);
        }
    }
    let mut text_field = |name: &str| {
        let value = cx.required_str(obj, "order", name)?;
        if value.trim().is_empty() {
            cx.err(format!("order.{name}"), format!("{name} must not be empty: every block needs a recorded reason"));
        }
        Some(value.to_string())
    };
    let authority = text_field("authority");
    let reference = text_field("reference");
    let category: Option<Category> = cx.keyword(obj, "category");
    let action: Option<Action> = cx.keyword(obj, "action");

    let issued = cx.timestamp(obj, "issued");
    let effective = cx.timestamp(obj, "effective");
    let expires = cx.timestamp(obj, "expires");
    if let (Some(e), Some(x)) = (effective, expires) {
        if x <= e {
            cx.err("order.expires", "expires must be after effective");
        }
    }
    if let Some(x) = expires {
        if x <= now {
            cx.err("order.expires", format!("the order has already expired (expires {}, now {})", rfc3339(x), rfc3339(now)));
        }
    }
    if let Some(i) = issued {
        if i > now + MAX_CLOCK_SKEW {
            cx.err("order.issued", "issued in the future: the order is not yet valid (check the signer's clock)");
        }
    }

    let mut entries = Vec::new();
    match obj.get("entries") {
        None => cx.err("order.entries", "missing field `entries`"),
        Some(Value::Array(list)) if list.is_empty() => cx.err("order.entries", "order has no entries"),
        Some(Value::Array(list)) => {
            let count: usize = list.iter().map(entry_weight).sum();
            if count > limits.max_entries {
                cx.err(
                    "order.entries",
                    format!(
                        "too many entries: {count} (a prefixes entry counts one per prefix, a domains entry one per name); at most {} are accepted in one order",
                        limits.max_entries
                    ),
                );
            } else {
                for (i, raw) in list.iter().enumerate() {
                    if let Some(e) = entry(&mut cx, i, raw) {
                        entries.push(e);
                    }
                }
            }
        }
        Some(_) => cx.err("order.entries", "must be an array of entry objects"),
    }

    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    let (Some(id), Some(authority), Some(reference), Some(category), Some(action), Some(effective), Some(expires)) =
        (id, authority, reference, category, action, effective, expires)
    else {
        unreachable!("a missing field is reported as an error");
    };
    Ok(Order {
        id: id.to_string(),
        authority,
        reference,
        category,
        received: now,
        effective,
        expires,
        action,
        entries,
        file: PathBuf::from(format!("api:{id}")),
        line: 0,
    })
}

/// One entry; `None` if it has any problem (each reported).
fn entry(cx: &mut Check, index: usize, raw: &Value) -> Option<Entry> {
    let path = format!("order.entries[{index}]");
    let Value::Object(e) = raw else {
        cx.err(path, "must be an object (an entry)");
        return None;
    };
    if let Some(key) = URL_FIELDS.iter().find(|k| e.contains_key(**k)) {
        cx.err(format!("{path}.{key}"), URL_ENTRY_REFUSED);
        return None;
    }
    let before = cx.errors.len();
    cx.unknown_fields(e, &path, ENTRY_FIELDS);
    let comment = cx.optional_str(e, &path, "comment").ok().flatten().map(str::to_string);

    if let Some(list) = present(e, "domains") {
        if present(e, "prefixes").is_some() || present(e, "protocol").is_some() {
            cx.err(
                format!("{path}.domains"),
                "an entry has one of `prefixes` (block addresses), `protocol` (L4 rule) or `domains` (block names)",
            );
            return None;
        }
        let kind = domains_entry(cx, &path, e, list)?;
        return (cx.errors.len() == before).then(|| Entry { line: index + 1, comment, kind });
    }
    if present(e, "dns_answer").is_some() {
        cx.err(format!("{path}.dns_answer"), "`dns_answer` applies to `domains` entries");
    }
    let kind = match (present(e, "prefixes"), present(e, "protocol")) {
        (Some(_), Some(_)) => {
            cx.err(
                format!("{path}.protocol"),
                "an entry has either `prefixes` (block addresses) or `protocol` (L4 rule), not both",
            );
            return None;
        }
        (None, None) => {
            cx.err(path, "entry needs `prefixes`, `protocol` or `domains`");
            return None;
        }
        (Some(list), None) => prefixes_entry(cx, &path, e, list),
        (None, Some(proto)) => {
            if present(e, "direction").is_some() {
                cx.err(
                    format!("{path}.direction"),
                    "`direction` applies to `prefixes`; an L4 rule uses `source` and `destination`",
                );
            }
            l4_entry(cx, &path, e, proto).map(EntryKind::L4)
        }
    };
    let kind = kind?;
    (cx.errors.len() == before).then(|| Entry { line: index + 1, comment, kind })
}

/// `domains` (+ optional `dns_answer`): each bad name at its own path.
fn domains_entry(cx: &mut Check, path: &str, e: &Map<String, Value>, list: &Value) -> Option<EntryKind> {
    for name in L4_ONLY_FIELDS {
        if present(e, name).is_some() {
            cx.err(format!("{path}.{name}"), format!("`{name}` does not apply to a `domains` entry (it blocks names)"));
        }
    }
    if present(e, "direction").is_some() {
        cx.err(format!("{path}.direction"), "`direction` applies to `prefixes`; a `domains` entry matches the name a client asks for");
    }
    let field = format!("{path}.domains");
    let items = cx.str_list(list, &field)?;
    if items.is_empty() {
        cx.err(&field, "`domains` is empty");
    }
    let (patterns, bad) = parse_domain_list(items.iter().map(|(_, text)| *text));
    for (i, msg) in bad {
        cx.err(&items[i].0, msg);
    }
    let action = match cx.optional_str(e, path, "dns_answer") {
        Ok(None) | Err(()) => DomainAction::Nxdomain,
        Ok(Some(a)) => parse_dns_answer(a).unwrap_or_else(|msg| {
            cx.err(format!("{path}.dns_answer"), msg);
            DomainAction::Nxdomain
        }),
    };
    Some(EntryKind::Domains { patterns, action })
}

fn prefixes_entry(cx: &mut Check, path: &str, e: &Map<String, Value>, list: &Value) -> Option<EntryKind> {
    for name in L4_ONLY_FIELDS {
        if present(e, name).is_some() {
            cx.err(format!("{path}.{name}"), format!("`{name}` needs `protocol`; a `prefixes` entry blocks whole addresses"));
        }
    }
    let field = format!("{path}.prefixes");
    let items = cx.str_list(list, &field)?;
    if items.is_empty() {
        cx.err(&field, "`prefixes` is empty");
    }
    let nets = items
        .into_iter()
        .filter_map(|(f, text)| parse_net(text).map_err(|msg| cx.err(f, msg)).ok())
        .collect();
    let direction = match cx.optional_str(e, path, "direction") {
        Ok(None) | Err(()) => Direction::Both,
        Ok(Some(d)) => parse_direction(d).unwrap_or_else(|msg| {
            cx.err(format!("{path}.direction"), msg);
            Direction::Both
        }),
    };
    Some(EntryKind::Prefixes { nets, direction })
}

fn l4_entry(cx: &mut Check, path: &str, e: &Map<String, Value>, proto: &Value) -> Option<L4Entry> {
    let proto_field = format!("{path}.protocol");
    let protocol = match proto {
        Value::String(s) => protocol_number(s).map_err(|msg| cx.err(&proto_field, msg)).ok(),
        Value::Number(n) if n.as_u64().is_some_and(|n| n <= 255) => n.as_u64().map(|n| n as u8),
        other => {
            cx.err(&proto_field, format!("protocol {other}: use a name or a number 0-255"));
            None
        }
    };
    let source = scope(cx, path, e, "source");
    let destination = scope(cx, path, e, "destination");
    let port_list = |cx: &mut Check, name: &str| -> Vec<PortRange> {
        let Some(value) = present(e, name) else { return Vec::new() };
        let field = format!("{path}.{name}");
        if protocol.is_some_and(|p| p != 6 && p != 17) {
            cx.err(&field, "ports need protocol tcp or udp");
        }
        ports(cx, &field, value)
    };
    let source_ports = port_list(cx, "source_ports");
    let destination_ports = port_list(cx, "destination_ports");
    let tcp_flags = match cx.optional_str(e, path, "tcp_flags") {
        Ok(None) | Err(()) => None,
        Ok(Some(f)) => {
            let field = format!("{path}.tcp_flags");
            if protocol.is_some_and(|p| p != 6) {
                cx.err(&field, "tcp_flags needs protocol tcp");
            }
            TcpFlags::parse(f).map_err(|msg| cx.err(&field, msg)).ok()
        }
    };
    let icmp = |cx: &mut Check, name: &str| -> Option<u8> {
        let value = present(e, name)?;
        let field = format!("{path}.{name}");
        if protocol.is_some_and(|p| p != 1 && p != 58) {
            cx.err(&field, format!("{name} needs protocol icmp or icmpv6"));
        }
        match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => match n.as_u64().and_then(|n| u8::try_from(n).ok()) {
                Some(v) => Some(v),
                None => {
                    cx.err(&field, format!("{name} {n} is not in 0-255"));
                    None
                }
            },
            _ => {
                cx.err(&field, "must be an integer 0-255");
                None
            }
        }
    };
    let icmp_type = icmp(cx, "icmp_type");
    let icmp_code = icmp(cx, "icmp_code");
    // The same table as in an order file (converted, so the rules and the
    // messages are the order file's).
    let rate_limit = present(e, "rate_limit").and_then(|v| {
        let field = format!("{path}.rate_limit");
        let as_toml = toml::Value::try_from(v).map_err(|e| e.to_string());
        match as_toml.and_then(|t| filter_common::rules::ruleset::RateLimitSpec::from_toml(&t)) {
            Ok(spec) => Some(spec),
            Err(msg) => {
                cx.err(&field, msg);
                None
            }
        }
    });
    let fragments = match present(e, "fragments") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            cx.err(format!("{path}.fragments"), "must be true or false");
            false
        }
    };
    let syn_auth = match present(e, "syn_auth") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            cx.err(format!("{path}.syn_auth"), "must be true or false");
            false
        }
    };
    let entry = L4Entry {
        protocol: protocol?,
        source: source?,
        destination: destination?,
        source_ports,
        destination_ports,
        tcp_flags,
        icmp_type,
        icmp_code,
        rate_limit,
        fragments,
        syn_auth,
    };
    if let Some(msg) = entry.syn_auth_conflict() {
        cx.err(format!("{path}.syn_auth"), msg);
    }
    Some(entry)
}

/// `source` / `destination` of an L4 entry: absent or `["any"]` = any.
fn scope(cx: &mut Check, path: &str, e: &Map<String, Value>, name: &str) -> Option<Scope> {
    let Some(value) = present(e, name) else { return Some(Scope::Any) };
    let field = format!("{path}.{name}");
    let items = cx.str_list(value, &field)?;
    if items.iter().any(|(_, s)| *s == "any") {
        if items.len() > 1 {
            cx.err(&field, "`any` cannot be combined with prefixes");
        }
        return Some(Scope::Any);
    }
    if items.is_empty() {
        cx.err(&field, "empty address list: omit it for `any`");
    }
    let nets = items
        .into_iter()
        .filter_map(|(f, text)| parse_net(text).map_err(|msg| cx.err(f, msg)).ok())
        .collect();
    Some(Scope::Nets(nets))
}

/// A port list: numbers or `"min-max"` strings.
fn ports(cx: &mut Check, field: &str, value: &Value) -> Vec<PortRange> {
    let Value::Array(items) = value else {
        cx.err(field, "must be an array of ports (numbers or \"min-max\")");
        return Vec::new();
    };
    if items.is_empty() {
        cx.err(field, "empty port list: omit it for any port");
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let range = match item {
            Value::Number(n) if n.is_i64() || n.is_u64() => match n.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(p) => Ok(PortRange { min: p, max: p }),
                None => Err(format!("port {n} is not in 0-65535")),
            },
            Value::String(s) => PortRange::parse(s),
            other => Err(format!("port {other}: use a number or \"min-max\"")),
        };
        match range {
            Ok(r) => out.push(r),
            Err(msg) => cx.err(format!("{field}[{i}]"), msg),
        }
    }
    out
}
