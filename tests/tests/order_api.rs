//! The order push API end to end: real HTTPS (certificates made here),
//! real bearer tokens and roles, Ed25519-signed orders, every rejection
//! path, idempotency, revocation, and SIGKILL crash consistency — with real
//! traffic in namespaces proving what is enforced.
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use edgefilter_tests::harness::{Harness, SERVER};
use filter_agent::orders::wire;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const AUTHORITY: &str = "example-regulator";
const TOKENS: [(&str, &str); 4] = [
    ("regulator-bot", "authority:example-regulator"),
    ("noc", "operator"),
    ("dashboard", "reader"),
    ("other-authority", "authority:example-other"),
];

struct Api {
    h: Harness,
    ca_pem: String,
    key: ed25519_dalek::SigningKey,
}

fn token(name: &str) -> String {
    format!("test-token-{name}")
}

fn setup(tag: &str, sources: &[&str]) -> Api {
    let mut h = Harness::new(tag, sources);
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    std::fs::write(h.dir.0.join("api.crt"), cert.cert.pem()).unwrap();
    std::fs::write(h.dir.0.join("api.key"), cert.signing_key.serialize_pem()).unwrap();
    let (seed, public) = wire::generate_key().unwrap();
    let (other_seed, other_public) = wire::generate_key().unwrap();
    std::fs::write(h.dir.0.join("authority.key"), &seed).unwrap();
    std::fs::write(h.dir.0.join("other.key"), &other_seed).unwrap();
    let mut config = format!(
        "[api]\nlisten = \"127.0.0.1:9961\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nmax_body_bytes = 65536\nmax_entries = 100\n",
        h.dir.0.join("api.crt").display(),
        h.dir.0.join("api.key").display()
    );
    for (name, role) in TOKENS {
        config += &format!("[[api.client]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n", hex::encode(Sha256::digest(token(name))));
    }
    config += &format!("[[authority]]\nname = \"{AUTHORITY}\"\npublic_key = \"{public}\"\n[[authority]]\nname = \"example-other\"\npublic_key = \"{other_public}\"\n");
    h.write_config(&config);
    h.start();
    let key = wire::load_signing_key(&h.dir.0.join("authority.key")).unwrap();
    Api { h, ca_pem: cert.cert.pem(), key }
}

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn order(id: &str, prefix: &str) -> Value {
    json!({
        "id": id, "authority": AUTHORITY, "reference": format!("Decision {id}"), "category": "legal",
        "issued": ts(Utc::now() - chrono::Duration::minutes(1)),
        "effective": ts(Utc::now() - chrono::Duration::minutes(1)),
        "expires": ts(Utc::now() + chrono::Duration::days(30)),
        "action": "drop",
        "entries": [{ "prefixes": [prefix], "direction": "src" }]
    })
}

impl Api {
    /// (status, body) of a request made from inside the server namespace.
    fn call(&self, method: &'static str, path: &str, who: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let ca = self.ca_pem.clone();
        let url = format!("https://127.0.0.1:9961{path}");
        let auth = format!("Bearer {}", token(who));
        self.h.ns.within(SERVER, move || {
            let certs: Vec<_> = ureq::tls::parse_pem(ca.as_bytes())
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build();
            let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().into();
            let mut resp = match (method, body) {
                ("POST", Some(b)) => agent.post(&url).header("Authorization", &auth).content_type("application/json").send(&b[..]),
                ("DELETE", b) => agent.delete(&url).header("Authorization", &auth).force_send_body().send(&b.unwrap_or_default()[..]),
                _ => agent.get(&url).header("Authorization", &auth).call(),
            }
            .expect("HTTPS request");
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        })
    }

    fn push(&self, who: &str, signed: &Value) -> (u16, Value) {
        self.call("POST", "/v1/orders", who, Some(serde_json::to_vec(signed).unwrap()))
    }

    fn signed(&self, order: Value) -> Value {
        let signature = wire::sign(&order, &self.key);
        json!({ "order": order, "signature": signature })
    }
}

#[test]
fn authorities_push_signed_orders_and_every_bad_request_is_refused_precisely() {
    let api = setup("oapi", &["2001:db8:f1::1", "2001:db8:f2::1"]);
    let flow = api.h.flow("2001:db8:f1::1", 7401);
    std::thread::sleep(Duration::from_millis(300));
    assert!(flow.received() > 50, "traffic passes before the order");

    // A signed order from its authority: enforced before the response.
    let good = api.signed(order("REG-2026-0001", "2001:db8:f1::/48"));
    let (status, body) = api.push("regulator-bot", &good);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "enforced");
    let seconds = body["enforcement_seconds"].as_f64().unwrap();
    assert!(seconds < 1.0, "enforced in {seconds} s");
    let at = flow.received();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(flow.received(), at, "the pushed order blocks the flow");

    // Idempotent: the same order again changes nothing.
    let (status, body) = api.push("regulator-bot", &good);
    assert_eq!((status, body["status"].as_str()), (200, Some("unchanged")), "{body}");

    // Every rejection path, each with its precise answer.
    let mut replay = order("REG-2026-0001", "2001:db8:f2::/48");
    replay["reference"] = json!("Decision REG-2026-0001");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("regulator-bot", api.signed(replay), 409, "different content"),
        ("regulator-bot", json!({ "order": order("REG-2", "2001:db8:f2::/48"), "signature": "" }), 401, "signature"),
        ("regulator-bot", json!({ "order": order("REG-3", "2001:db8:f2::/48"), "signature": wire::sign(&order("REG-3", "2001:db8:f3::/48"), &api.key) }), 401, "does not match"),
        ("other-authority", api.signed(order("REG-4", "2001:db8:f2::/48")), 403, "may not push orders of authority"),
        ("dashboard", api.signed(order("REG-5", "2001:db8:f2::/48")), 403, "reader"),
        ("noc", api.signed(order("REG-6", "2001:db8:f2::/48")), 403, "operator"),
        ("regulator-bot", { let mut o = order("REG-7", "2001:db8:f2::/48"); o["expires"] = json!(ts(Utc::now() - chrono::Duration::hours(1))); o["effective"] = json!(ts(Utc::now() - chrono::Duration::hours(2))); api.signed(o) }, 422, "expired"),
        ("regulator-bot", { let mut o = order("REG-8", "2001:db8:f2::/48"); o["issued"] = json!(ts(Utc::now() + chrono::Duration::hours(1))); api.signed(o) }, 422, "not yet valid"),
        ("regulator-bot", { let mut o = order("REG-9", "2001:db8:f2::/48"); o["entries"] = json!([{ "domain": "example.com" }]); api.signed(o) }, 422, "domain"),
        ("regulator-bot", { let mut o = order("REG-10", "2001:db8:f2::/48"); o["colour"] = json!("red"); api.signed(o) }, 422, "colour"),
        ("regulator-bot", { let mut o = order("REG-11", "2001:db8:f2::/48"); o["entries"] = json!((0..101).map(|i| json!({ "prefixes": [format!("2001:db8:a{i:x}::/48")] })).collect::<Vec<_>>()); api.signed(o) }, 422, "entries"),
    ];
    for (who, body, want, text) in cases {
        let (status, answer) = api.push(who, &body);
        assert_eq!(status, want, "{who}: {answer}");
        assert!(answer.to_string().contains(text), "expected `{text}` in {answer}");
    }
    let (status, answer) = api.call("POST", "/v1/orders", "regulator-bot", Some(b"{not json".to_vec()));
    assert_eq!(status, 400, "{answer}");
    let (status, _) = api.call("POST", "/v1/orders", "regulator-bot", Some(vec![b' '; 70_000]));
    assert_eq!(status, 413, "oversize bodies are refused");
    let (status, _) = api.call("GET", "/v1/orders", "nobody", None);
    assert_eq!(status, 401, "unknown tokens are refused");

    // Operators push attack orders (no signature needed: the token is theirs).
    let mut attack = order("NOC-1", "2001:db8:f2::/48");
    attack["category"] = json!("attack");
    attack["authority"] = json!("Example ISP NOC");
    let (status, body) = api.push("noc", &json!({ "order": attack, "signature": "" }));
    assert_eq!(status, 201, "{body}");

    // Readers see everything, with counters.
    let (status, shown) = api.call("GET", "/v1/orders/REG-2026-0001", "dashboard", None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["state"], "in-force");
    assert!(shown["packets"].as_u64().unwrap() > 50, "{shown}");

    // Revoke (only by its authority) restores traffic.
    let (status, _) = api.call("DELETE", "/v1/orders/REG-2026-0001", "other-authority", None);
    assert_eq!(status, 403);
    let (status, body) = api.call("DELETE", "/v1/orders/REG-2026-0001", "regulator-bot", Some(br#"{"reason":"court ruling lifted"}"#.to_vec()));
    assert_eq!(status, 200, "{body}");
    let at = flow.received();
    std::thread::sleep(Duration::from_millis(300));
    assert!(flow.received() > at + 50, "revocation restores the flow");
    let (_, list) = api.call("GET", "/v1/orders", "dashboard", None);
    let reg = list.as_array().unwrap().iter().find(|o| o["id"] == "REG-2026-0001").unwrap().clone();
    assert_eq!(reg["state"], "revoked", "{reg}");
    flow.stop();

    let audit = std::fs::read_to_string(api.h.state_dir().join("audit.jsonl")).unwrap();
    for want in ["\"action\":\"push\"", "\"action\":\"push-rejected\"", "\"action\":\"revoke\"", "api:regulator-bot(authority:example-regulator)", "api:noc(operator)"] {
        assert!(audit.contains(want), "audit lacks {want}");
    }
    let metrics = api.h.fetch("/metrics");
    assert!(metrics.contains("edgefilter_order_enforcement_seconds_count 2"), "{metrics}");
}

#[test]
fn acknowledged_orders_survive_sigkill_and_nothing_else_appears() {
    let mut api = setup("ocrash", &[]);
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut i = 0;
    // Push a stream, then kill -9 mid-stream (the kill races the pushes).
    let pid = api.h.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    while Instant::now() < deadline {
        i += 1;
        let id = format!("CRASH-{i}");
        let body = api.signed(order(&id, &format!("2001:db8:c{i:x}::/48")));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api.push("regulator-bot", &body)));
        match result {
            Ok((201, _)) => acknowledged.push(id),
            _ => break,
        }
    }
    killer.join().unwrap();
    assert!(acknowledged.len() >= 3, "some pushes were acknowledged before the kill ({})", acknowledged.len());
    api.h.kill9();
    api.h.start();
    let (status, list) = api.call("GET", "/v1/orders", "dashboard", None);
    assert_eq!(status, 200);
    let present: Vec<String> = list.as_array().unwrap().iter().filter(|o| o["source"] == "api").map(|o| o["id"].as_str().unwrap().to_string()).collect();
    for id in &acknowledged {
        assert!(present.contains(id), "acknowledged order {id} lost after SIGKILL: {present:?}");
        let o = list.as_array().unwrap().iter().find(|o| &o["id"] == id).unwrap();
        assert_eq!(o["state"], "in-force", "{o}");
    }
    // At most the one in flight at the kill may also be there, whole.
    assert!(present.len() <= acknowledged.len() + 1, "{present:?} vs acknowledged {acknowledged:?}");
    let status = api.h.status();
    let rules = status["prefix_rules"].as_u64().unwrap() as usize;
    assert_eq!(rules, present.len(), "every present order is enforced whole, nothing half-applied: {status}");
}

#[test]
fn pushed_orders_take_effect_and_expire_on_their_own() {
    let api = setup("oexp", &["2001:db8:e1::1", "2001:db8:e2::1"]);
    let expiring = api.h.flow("2001:db8:e1::1", 7411);
    let pending = api.h.flow("2001:db8:e2::1", 7412);
    std::thread::sleep(Duration::from_millis(300));
    assert!(expiring.received() > 50 && pending.received() > 50, "traffic passes before the orders");

    // Whole seconds on the wire: expires 3 s from the next second.
    let base = Utc::now() + chrono::Duration::seconds(1);
    let mut short = order("REG-EXP-1", "2001:db8:e1::/48");
    short["expires"] = json!(ts(base + chrono::Duration::seconds(3)));
    let (status, body) = api.push("regulator-bot", &api.signed(short));
    assert_eq!((status, body["status"].as_str()), (201, Some("enforced")), "{body}");
    let mut later = order("REG-PEND-1", "2001:db8:e2::/48");
    later["effective"] = json!(ts(base + chrono::Duration::seconds(2)));
    let (status, body) = api.push("regulator-bot", &api.signed(later));
    assert_eq!((status, body["status"].as_str()), (201, Some("pending")), "{body}");

    // Right after the pushes: the first blocks, the second not yet.
    let (e0, p0) = (expiring.received(), pending.received());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(expiring.received(), e0, "the pushed order blocks at once");
    assert!(pending.received() > p0 + 20, "a pending order does not block before `effective`");

    // Past `effective` of the second and `expires` of the first (plus the
    // agent's tick): the roles swap, with nobody touching the agent.
    let settle = (base + chrono::Duration::seconds(3) - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(1500);
    std::thread::sleep(settle);
    let (e1, p1) = (expiring.received(), pending.received());
    std::thread::sleep(Duration::from_millis(400));
    assert!(expiring.received() > e1 + 20, "an expired pushed order stops blocking");
    assert_eq!(pending.received(), p1, "a pending pushed order blocks from `effective`");
    expiring.stop();
    pending.stop();

    let (_, shown) = api.call("GET", "/v1/orders/REG-EXP-1", "dashboard", None);
    assert_eq!(shown["state"], "expired", "{shown}");
    let (_, shown) = api.call("GET", "/v1/orders/REG-PEND-1", "dashboard", None);
    assert_eq!(shown["state"], "in-force", "{shown}");
    let audit = std::fs::read_to_string(api.h.state_dir().join("audit.jsonl")).unwrap();
    let records: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let named = |action: &str, key: &str, id: &str| {
        records.iter().any(|r| r["action"].as_str().is_some_and(|a| a.contains(action)) && r["details"][key].as_array().is_some_and(|l| l.iter().any(|v| v == id)))
    };
    assert!(named("expire", "expired", "REG-EXP-1"), "the audit log records the expiry: {audit}");
    assert!(named("activate", "activated", "REG-PEND-1"), "the audit log records the activation: {audit}");
    assert!(named("push", "in_force_added", "REG-EXP-1"), "the push records what entered force: {audit}");
}
