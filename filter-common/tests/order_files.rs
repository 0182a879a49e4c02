//! Order files: valid ones parse into the right rules, every kind of
//! mistake is reported with its line, and one bad file rejects the set.
use std::path::Path;

use chrono::{TimeZone, Utc};
use filter_common::rules::order_file::{parse_net, EntryKind};
use filter_common::rules::{parse_order, Action, Category, Direction, PortRange, RuleSet, Scope, Settings};

const HEADER: &str = r#"id = "EX-1"
authority = "Example Authority"
reference = "Decision 1"
category = "legal"
received = 2026-01-01T00:00:00Z
effective = 2026-01-02T00:00:00Z
expires = 2026-02-01T00:00:00Z
action = "drop"
"#;

fn errors(text: &str) -> Vec<String> {
    match parse_order(Path::new("o.toml"), text) {
        Ok(o) => panic!("expected errors, parsed {o:?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn parses_a_complete_order() {
    let text = format!(
        "{HEADER}
[[entry]]
prefixes = [\"203.0.113.0/24\", \"2001:db8:bad::/48\", \"198.51.100.7\"]
direction = \"dst\"

[[entry]]
protocol = \"tcp\"
source = [\"192.0.2.0/25\"]
destination_ports = [22, \"8000-8080\"]
tcp_flags = \"syn,!ack\"
"
    );
    let o = parse_order(Path::new("o.toml"), &text).unwrap();
    assert_eq!(o.id, "EX-1");
    assert_eq!(o.category, Category::Legal);
    assert_eq!(o.action, Action::Drop);
    assert_eq!(o.effective, Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap());
    assert_eq!(o.entries.len(), 2);
    assert_eq!(o.entries[0].line, 10);
    match &o.entries[0].kind {
        EntryKind::Prefixes { nets, direction } => {
            assert_eq!(nets.len(), 3);
            assert_eq!(nets[2].to_string(), "198.51.100.7/32");
            assert_eq!(*direction, Direction::Dst);
        }
        other => panic!("{other:?}"),
    }
    match &o.entries[1].kind {
        EntryKind::L4(l4) => {
            assert_eq!(l4.protocol, 6);
            assert_eq!(l4.destination_ports, vec![PortRange { min: 22, max: 22 }, PortRange { min: 8000, max: 8080 }]);
            assert_eq!(l4.tcp_flags.unwrap().mask, 0x12);
            assert_eq!(l4.tcp_flags.unwrap().value, 0x02);
            assert_eq!(l4.destination, Scope::Any);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reports_each_problem_with_its_line() {
    let text = format!(
        "{HEADER}
[[entry]]
prefixes = [\"203.0.113.7/24\", \"not-an-ip\"]

[[entry]]
protocol = \"icmp\"
destination_ports = [80]
icmp_type = 300
"
    );
    let errs = errors(&text);
    assert!(errs.iter().any(|e| e.starts_with("o.toml:11:") && e.contains("host bits set; did you mean 203.0.113.0/24")), "{errs:?}");
    assert!(errs.iter().any(|e| e.starts_with("o.toml:11:") && e.contains("`not-an-ip` is not an IP address")), "{errs:?}");
    assert!(errs.iter().any(|e| e.starts_with("o.toml:14:") && e.contains("ports need protocol tcp or udp")), "{errs:?}");
    assert!(errs.iter().any(|e| e.starts_with("o.toml:16:") && e.contains("icmp_type 300 is not in 0-255")), "{errs:?}");
}

#[test]
fn rejects_unknown_keys_missing_fields_and_bad_values() {
    let unknown = errors(&format!("{HEADER}\n[[entry]]\nprefixes = [\"192.0.2.0/24\"]\ncolour = \"red\"\n"));
    assert!(unknown[0].starts_with("o.toml:12:") && unknown[0].contains("unknown field `colour`"), "{unknown:?}");

    let missing = errors(&HEADER.replace("authority = \"Example Authority\"\n", ""));
    assert!(missing[0].contains("missing field `authority`"), "{missing:?}");

    let category = errors(&HEADER.replace("\"legal\"", "\"vigilante\""));
    assert!(category[0].starts_with("o.toml:4:") && category[0].contains("unknown variant `vigilante`"), "{category:?}");

    let expiry = errors(&format!("{}\n[[entry]]\nprefixes = [\"192.0.2.0/24\"]\n", HEADER.replace("2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z")));
    assert!(expiry.iter().any(|e| e.starts_with("o.toml:7:") && e.contains("expires must be after effective")), "{expiry:?}");

    let local_time = errors(&format!("{}\n[[entry]]\nprefixes = [\"192.0.2.0/24\"]\n", HEADER.replace("2026-01-01T00:00:00Z", "2026-01-01T00:00:00")));
    assert!(local_time.iter().any(|e| e.starts_with("o.toml:5:") && e.contains("UTC offset")), "{local_time:?}");

    let no_entries = errors(HEADER);
    assert!(no_entries[0].contains("no [[entry]]"), "{no_entries:?}");

    let both = errors(&format!("{HEADER}\n[[entry]]\nprefixes = [\"192.0.2.0/24\"]\nprotocol = \"udp\"\n"));
    assert!(both[0].contains("either `prefixes`") , "{both:?}");

    let flags = errors(&format!("{HEADER}\n[[entry]]\nprotocol = \"tcp\"\ntcp_flags = \"syn,bogus\"\n"));
    assert!(flags[0].starts_with("o.toml:12:") && flags[0].contains("tcp flag `bogus`"), "{flags:?}");

    let range = errors(&format!("{HEADER}\n[[entry]]\nprotocol = \"udp\"\nsource_ports = [\"900-100\"]\n"));
    assert!(range[0].contains("is empty (min > max)"), "{range:?}");

    let empty_reason = errors(&format!("{}\n[[entry]]\nprefixes = [\"192.0.2.0/24\"]\n", HEADER.replace("\"Decision 1\"", "\"  \"")));
    assert!(empty_reason[0].contains("reference must not be empty"), "{empty_reason:?}");
}

#[test]
fn one_bad_file_rejects_the_whole_directory() {
    let dir = std::env::temp_dir().join(format!("edgefilter-orders-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.toml"), format!("{HEADER}\n[[entry]]\nprefixes = [\"192.0.2.0/24\"]\n")).unwrap();
    std::fs::write(dir.join("sub/b.toml"), format!("{HEADER}\n[[entry]]\nprefixes = [\"192.0.2.0/33\"]\n")).unwrap();
    std::fs::write(dir.join("c.toml"), format!("{HEADER}\n[[entry]]\nprefixes = [\"198.51.100.0/24\"]\n")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an order").unwrap();
    let err = filter_common::rules::load_orders_dir(&dir).unwrap_err();
    let text = err.to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(text.contains("sub/b.toml:11: `192.0.2.0/33` is not an IP address"), "{text}");
    assert!(text.contains("c.toml:1: order id EX-1 already used in"), "{text}");
    assert_eq!(err.0.len(), 2, "{text}");
}

#[test]
fn only_orders_in_force_get_rules() {
    let text = format!("{HEADER}\n[[entry]]\nprefixes = [\"192.0.2.0/24\"]\n\n[[entry]]\nprotocol = \"udp\"\nsource_ports = [53, 123]\ndestination_ports = [\"1-1023\"]\n");
    let order = parse_order(Path::new("o.toml"), &text).unwrap();
    let before = RuleSet::build(Settings::default(), std::slice::from_ref(&order), Utc.with_ymd_and_hms(2026, 1, 1, 23, 59, 59).unwrap()).unwrap();
    assert!(before.prefixes.is_empty() && before.l4.is_empty());
    let during = RuleSet::build(Settings::default(), std::slice::from_ref(&order), Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap()).unwrap();
    assert_eq!(during.prefixes.len(), 1);
    // Two source port ranges x one destination range = two slots, one rule id.
    assert_eq!(during.l4.len(), 2);
    assert!(during.l4.iter().all(|s| s.rule_id == 2));
    assert_eq!(during.rule(2).unwrap().line, 13);
    let after = RuleSet::build(Settings::default(), &[order], Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()).unwrap();
    assert!(after.prefixes.is_empty(), "expires is exclusive");
}

#[test]
fn parses_prefixes_and_fragment_policies() {
    assert_eq!(parse_net("2001:db8::1").unwrap().to_string(), "2001:db8::1/128");
    assert!(parse_net("2001:db8::1/32").unwrap_err().contains("did you mean 2001:db8::/32"));
    let mut s = Settings::default();
    s.set_fragment_policy("udp=drop-non-first, other=drop-all, tcp=pass").unwrap();
    assert_eq!(s.fragment_policy[17], filter_common::maps::FRAG_DROP_NON_FIRST);
    assert_eq!(s.fragment_policy[6], filter_common::maps::FRAG_PASS);
    assert_eq!(s.fragment_policy[47], filter_common::maps::FRAG_DROP_ALL);
    assert!(s.set_fragment_policy("udp=maybe").unwrap_err().contains("drop-non-first"));
}

#[test]
fn bundled_example_orders_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let orders = filter_common::rules::load_orders_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(orders.len() >= 3);
}
