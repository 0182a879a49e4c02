//! `syn_auth = true` on L4 entries: what it compiles into, and every
//! combination it refuses reported at its line.
use std::path::Path;

use filter_common::maps::{L4_NEEDS_HEADER, L4_SYN_AUTH};
use filter_common::rules::{parse_order, RuleSet, Settings};

const HEADER: &str = r#"id = "SA-1"
authority = "NOC"
reference = "ticket 2"
category = "attack"
received = 2026-01-01T00:00:00Z
effective = 2026-01-01T00:00:00Z
expires = 2099-01-01T00:00:00Z
action = "drop"
"#;

#[test]
fn syn_auth_entries_compile_into_syn_auth_slots() {
    let text = format!("{HEADER}\n[[entry]]\nprotocol = \"tcp\"\ndestination = [\"198.51.100.10\"]\ndestination_ports = [80, 443]\nsyn_auth = true\n");
    let order = parse_order(Path::new("o.toml"), &text).expect("parses");
    let settings = Settings { syn_auth_seconds: 30, ..Settings::default() };
    let rules = RuleSet::build(settings, &[order], chrono::Utc::now()).unwrap();
    assert_eq!(rules.l4.len(), 2, "one slot per port");
    assert!(rules.l4.iter().all(|s| s.syn_auth && s.rate_limit.is_none()));
    let c = filter_common::compile::compile(&rules, 1).unwrap();
    assert!(c.l4_rules.iter().all(|r| r.flags & L4_SYN_AUTH != 0 && r.flags & L4_NEEDS_HEADER != 0));
    assert_eq!(c.meta.syn_auth_ns, 30_000_000_000);
}

#[test]
fn syn_auth_with_what_it_cannot_take_is_refused_at_its_line() {
    for (entry, want) in [
        ("protocol = \"udp\"\nsyn_auth = true", "`syn_auth` needs protocol tcp"),
        ("protocol = \"tcp\"\ntcp_flags = \"syn\"\nsyn_auth = true", "no tcp_flags, rate_limit or fragments"),
        ("protocol = \"tcp\"\nrate_limit = { per = \"rule\", pps = 10 }\nsyn_auth = true", "no tcp_flags, rate_limit or fragments"),
        ("protocol = \"tcp\"\nsyn_auth = \"yes\"", "expected a boolean"),
    ] {
        let text = format!("{HEADER}\n[[entry]]\n{entry}\n");
        let errs: Vec<String> = match parse_order(Path::new("o.toml"), &text) {
            Ok(o) => panic!("{entry:?}: expected errors, parsed {o:?}"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        };
        assert!(errs.iter().any(|e| e.contains(want) && e.starts_with("o.toml:")), "{entry:?}: {errs:?}");
    }
}
