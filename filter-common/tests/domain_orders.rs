//! `domains` entries in order files: the patterns and DNS answer they
//! give, and every mistake reported at its own line.
use std::path::Path;

use filter_common::rules::order_file::EntryKind;
use filter_common::rules::ruleset::DomainAction;
use filter_common::rules::{parse_order, DomainPattern};

const HEADER: &str = r#"id = "DOM-1"
authority = "Example Authority"
reference = "Decision 1"
category = "legal"
received = 2026-01-01T00:00:00Z
effective = 2026-01-02T00:00:00Z
expires = 2026-02-01T00:00:00Z
action = "drop"
"#;

fn errors(entries: &str) -> Vec<String> {
    match parse_order(Path::new("o.toml"), &format!("{HEADER}{entries}")) {
        Ok(o) => panic!("expected errors, parsed {o:?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn patterns(list: &[&str]) -> Vec<DomainPattern> {
    list.iter().map(|p| DomainPattern::parse(p).unwrap()).collect()
}

#[test]
fn domains_entries_parse_with_their_dns_answer() {
    let text = format!(
        "{HEADER}
[[entry]]
comment = \"annex B\"
domains = [\"example.com\", \"*.example.net\", \".example.org\", \"Bücher.Example.\", \"example.com\"]

[[entry]]
domains = [\"refused.example\"]
dns_answer = \"refused\"

[[entry]]
domains = [\"dropped.example\"]
dns_answer = \"drop\"

[[entry]]
domains = [\"nx.example\"]
dns_answer = \"nxdomain\"
"
    );
    let o = parse_order(Path::new("o.toml"), &text).unwrap();
    let kinds: Vec<(usize, &EntryKind)> = o.entries.iter().map(|e| (e.line, &e.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (
                10,
                &EntryKind::Domains {
                    // Normalised, each once.
                    patterns: patterns(&["example.com", "*.example.net", ".example.org", "xn--bcher-kva.example"]),
                    action: DomainAction::Nxdomain,
                }
            ),
            (14, &EntryKind::Domains { patterns: patterns(&["refused.example"]), action: DomainAction::Refused }),
            (18, &EntryKind::Domains { patterns: patterns(&["dropped.example"]), action: DomainAction::Drop }),
            (22, &EntryKind::Domains { patterns: patterns(&["nx.example"]), action: DomainAction::Nxdomain }),
        ]
    );
    assert_eq!(o.entries[0].comment.as_deref(), Some("annex B"));
}

#[test]
fn every_bad_name_is_reported_at_its_line() {
    let e = errors(
        "[[entry]]
domains = [
  \"good.example\",
  \"bad name.example\",
  \"ads.*.example\",
  \"*\",
  \"a..b\",
  \"192.0.2.1/24\",
]
",
    );
    assert_eq!(
        e,
        vec![
            "o.toml:12: `bad name.example`: character U+0020 not allowed in a domain name",
            "o.toml:13: `ads.*.example`: `*` is allowed only as the whole first label",
            "o.toml:14: `*`: pattern `*` has no name: it would match every name",
            "o.toml:15: `a..b`: empty label in `a..b`",
            "o.toml:16: `192.0.2.1/24`: character `/` not allowed in a domain name",
        ]
    );
}

#[test]
fn domains_entries_take_no_address_or_port_fields() {
    assert_eq!(errors("[[entry]]\ndomains = []\n"), vec!["o.toml:9: `domains` is empty"]);
    assert_eq!(
        errors("[[entry]]\ndomains = [\"a.example\"]\ndns_answer = \"servfail\"\n"),
        vec!["o.toml:11: dns_answer `servfail`: expected `nxdomain`, `refused` or `drop`"]
    );
    assert_eq!(
        errors("[[entry]]\ndomains = [\"a.example\"]\nprefixes = [\"192.0.2.0/24\"]\n"),
        vec!["o.toml:9: an entry has one of `prefixes` (block addresses), `protocol` (L4 rule) or `domains` (block names)"]
    );
    assert_eq!(
        errors("[[entry]]\ndomains = [\"a.example\"]\nprotocol = \"udp\"\n"),
        vec!["o.toml:9: an entry has one of `prefixes` (block addresses), `protocol` (L4 rule) or `domains` (block names)"]
    );
    assert_eq!(
        errors("[[entry]]\ndomains = [\"a.example\"]\ndestination_ports = [53]\ndirection = \"dst\"\n"),
        vec![
            "o.toml:9: `destination_ports` does not apply to a `domains` entry (it blocks names)",
            "o.toml:12: `direction` applies to `prefixes`; a `domains` entry matches the name a client asks for",
        ]
    );
    assert_eq!(
        errors("[[entry]]\nprefixes = [\"192.0.2.0/24\"]\ndns_answer = \"refused\"\n"),
        vec!["o.toml:11: `dns_answer` applies to `domains` entries"]
    );
    assert_eq!(errors("[[entry]]\ncomment = \"x\"\n"), vec!["o.toml:9: entry needs `prefixes`, `protocol` or `domains`"]);
    assert_eq!(errors("[[entry]]\ndomain = \"a.example\"\n").len(), 1, "unknown field `domain`");
}
