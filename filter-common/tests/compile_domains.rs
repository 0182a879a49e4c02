//! Domain rules into the `DOMAINS` map: one entry per name, the right
//! slots for each scope, precedence inside a slot, dry-run rules apart,
//! and the generation settings (seeds, rule count, ports).
use std::collections::HashMap;
use std::path::Path;

use chrono::{TimeZone, Utc};
use filter_common::compile::{compile, compile_domains};
use filter_common::maps::*;
use filter_common::names::{suffix_hashes, NameHash};
use filter_common::rules::ruleset::{DomainAction, DomainRule, PortKind};
use filter_common::rules::{parse_order, DomainPattern, RuleSet, Settings};

const SEEDS: NameHash = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

fn rule(rule_id: u32, pattern: &str, action: DomainAction, dry_run: bool) -> DomainRule {
    DomainRule { rule_id, pattern: DomainPattern::parse(pattern).unwrap(), action, dry_run }
}

fn set(domains: Vec<DomainRule>) -> RuleSet {
    RuleSet { domains, ..RuleSet::default() }
}

/// The key and check of a whole name.
fn hash(name: &str) -> NameHash {
    *suffix_hashes(&SEEDS, name.as_bytes()).unwrap().last().unwrap()
}

fn entry<'a>(map: &'a HashMap<u64, DomainEntry>, name: &str) -> &'a DomainEntry {
    let h = hash(name);
    let e = map.get(&h[0]).unwrap_or_else(|| panic!("no entry for {name}"));
    assert_eq!(e.check, h[1], "{name}: check");
    e
}

/// (exact rule, exact action, exact dry-run rule, sub rule, sub action, sub dry-run rule)
fn slots(e: &DomainEntry) -> (u32, u8, u32, u32, u8, u32) {
    (e.exact_rule, e.exact_action, e.exact_dry_rule, e.sub_rule, e.sub_action, e.sub_dry_rule)
}

#[test]
fn each_scope_fills_its_slots() {
    use DomainAction::*;
    let rules = set(vec![
        rule(1, "exact.example", Nxdomain, false),
        rule(2, "*.sub.example", Refused, false),
        rule(3, ".both.example", Drop, false),
    ]);
    let map = compile_domains(&rules, SEEDS).unwrap();
    assert_eq!(map.len(), 3);
    assert_eq!(slots(entry(&map, "exact.example")), (1, DOMAIN_NXDOMAIN, 0, 0, DOMAIN_NONE, 0));
    assert_eq!(slots(entry(&map, "sub.example")), (0, DOMAIN_NONE, 0, 2, DOMAIN_REFUSED, 0));
    // `.example.com` is the name and everything below it: both slots.
    assert_eq!(slots(entry(&map, "both.example")), (3, DOMAIN_DROP, 0, 3, DOMAIN_DROP, 0));
    // Nothing for names that have no rule of their own (the data plane
    // finds `a.sub.example` through its suffix `sub.example`).
    assert!(!map.contains_key(&hash("a.sub.example")[0]));
    assert!(!map.contains_key(&hash("example")[0]));
}

#[test]
fn the_key_is_the_last_suffix_hash_so_the_data_plane_walk_finds_it() {
    let rules = set(vec![rule(1, "*.example.com", DomainAction::Drop, false)]);
    let map = compile_domains(&rules, SEEDS).unwrap();
    // A packet's name hashes to its suffixes, least specific first:
    // `com`, `example.com`, `ads.example.com`, `a.ads.example.com`.
    let walk = suffix_hashes(&SEEDS, b"a.ads.Example.COM").unwrap();
    assert_eq!(walk.len(), 4);
    let hits: Vec<usize> = walk.iter().enumerate().filter(|(_, h)| map.get(&h[0]).is_some_and(|e| e.check == h[1])).map(|(i, _)| i).collect();
    assert_eq!(hits, vec![1]);
}

#[test]
fn in_a_slot_pass_beats_everything_then_the_lowest_rule_id() {
    use DomainAction::*;
    let rules = set(vec![
        rule(7, "a.example", Drop, false),
        rule(4, "a.example", Refused, false),
        rule(9, "a.example", Nxdomain, false),
        rule(20, "b.example", Drop, false),
        rule(30, "b.example", Pass, false),
        rule(1, "b.example", Nxdomain, false),
        rule(25, "b.example", Pass, false),
        // A pass on the subdomain slot only leaves the name's own slot alone.
        rule(5, ".c.example", Drop, false),
        rule(6, "*.c.example", Pass, false),
    ]);
    let map = compile_domains(&rules, SEEDS).unwrap();
    assert_eq!(slots(entry(&map, "a.example")), (4, DOMAIN_REFUSED, 0, 0, DOMAIN_NONE, 0));
    assert_eq!(slots(entry(&map, "b.example")), (25, DOMAIN_PASS, 0, 0, DOMAIN_NONE, 0));
    assert_eq!(slots(entry(&map, "c.example")), (5, DOMAIN_DROP, 0, 6, DOMAIN_PASS, 0));
    // Order of the rules does not matter.
    let mut reversed = rules.clone();
    reversed.domains.reverse();
    assert_eq!(compile_domains(&reversed, SEEDS).unwrap(), map);
}

#[test]
fn dry_run_rules_only_fill_the_dry_run_slot() {
    use DomainAction::*;
    let rules = set(vec![
        rule(8, ".a.example", Drop, true),
        rule(3, "a.example", Nxdomain, true),
        rule(12, "a.example", Refused, false),
        rule(2, "*.b.example", Pass, true),
        rule(6, "*.b.example", Drop, true),
    ]);
    let map = compile_domains(&rules, SEEDS).unwrap();
    assert_eq!(slots(entry(&map, "a.example")), (12, DOMAIN_REFUSED, 3, 0, DOMAIN_NONE, 8));
    assert_eq!(slots(entry(&map, "b.example")), (0, DOMAIN_NONE, 0, 0, DOMAIN_NONE, 2));
}

#[test]
fn the_seeds_change_every_key() {
    let rules = set(vec![rule(1, "a.example", DomainAction::Drop, false), rule(2, "b.example", DomainAction::Drop, false)]);
    let a = compile_domains(&rules, SEEDS).unwrap();
    let b = compile_domains(&rules, [1, 2]).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    assert!(a.keys().all(|k| !b.contains_key(k)));
    assert!(compile_domains(&RuleSet::default(), SEEDS).unwrap().is_empty());
}

#[test]
fn orders_become_domain_rules_and_generation_settings() {
    let text = r#"id = "DOM-1"
authority = "Example Authority"
reference = "Decision 7"
category = "legal"
received = 2026-01-01T00:00:00Z
effective = 2026-01-01T00:00:00Z
expires = 2027-01-01T00:00:00Z
action = "drop"

[[entry]]
domains = ["example.com", "*.example.net", ".Example.ORG."]

[[entry]]
domains = ["refused.example"]
dns_answer = "refused"

[[entry]]
prefixes = ["192.0.2.0/24"]
"#;
    let order = parse_order(Path::new("dom.toml"), text).unwrap();
    let mut settings = Settings { name_seeds: SEEDS, ..Settings::default() };
    settings.set_ports(PortKind::Dns, &[53, 5353]).unwrap();
    settings.set_ports(PortKind::Http, &[]).unwrap();
    let rules = RuleSet::build(settings, &[order], Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()).unwrap();
    assert_eq!(
        rules.domains,
        vec![
            rule(1, "example.com", DomainAction::Nxdomain, false),
            rule(1, "*.example.net", DomainAction::Nxdomain, false),
            rule(1, ".example.org", DomainAction::Nxdomain, false),
            rule(2, "refused.example", DomainAction::Refused, false),
        ]
    );
    assert_eq!(rules.prefixes.len(), 1);
    assert_eq!(rules.prefixes[0].rule_id, 3);
    let map = compile_domains(&rules, rules.settings.name_seeds).unwrap();
    assert_eq!(map.len(), 4);
    assert_eq!(slots(entry(&map, "example.org")), (1, DOMAIN_NXDOMAIN, 0, 1, DOMAIN_NXDOMAIN, 0));

    let meta = compile(&rules, 1).unwrap().meta;
    assert_eq!(meta.domain_rules, 4);
    assert_eq!(meta.name_seeds, SEEDS);
    assert_eq!(meta.dns_ports, [53, 5353, 0, 0]);
    assert_eq!(meta.tls_ports, [443, 0, 0, 0]);
    assert_eq!(meta.http_ports, [0, 0, 0, 0]);

    // No domain rules: the stage is off, the default ports stay.
    let meta = compile(&RuleSet::default(), 0).unwrap().meta;
    assert_eq!((meta.domain_rules, meta.dns_ports, meta.tls_ports, meta.http_ports), (0, [53, 0, 0, 0], [443, 0, 0, 0], [80, 0, 0, 0]));
}

#[test]
fn port_lists_are_validated() {
    let mut s = Settings::default();
    assert_eq!(
        s.set_ports(PortKind::Tls, &[443, 8443, 4433, 9443, 10443]).unwrap_err(),
        "tls_ports: 5 ports; the data plane reads names on at most 4 ports of each kind"
    );
    assert_eq!(s.set_ports(PortKind::Dns, &[53, 0]).unwrap_err(), "dns_ports: port 0 is not a port");
    assert_eq!(s.set_ports(PortKind::Http, &[80, 8080, 80]).unwrap_err(), "http_ports: port 80 listed twice");
    assert_eq!(s, Settings::default(), "a rejected list changes nothing");
    s.set_ports(PortKind::Tls, &[443, 8443, 4433, 9443]).unwrap();
    assert_eq!(s.l7_ports().unwrap()[1], [443, 8443, 4433, 9443]);
    // Set directly to something invalid: compiling refuses it.
    s.http_ports = vec![1, 2, 3, 4, 5];
    let rules = RuleSet { settings: s, ..RuleSet::default() };
    assert!(compile(&rules, 0).unwrap_err().starts_with("http_ports: 5 ports"));
}

#[test]
fn the_longest_names_hash_like_the_data_plane() {
    // 16 labels (the most a rule has), 63-byte labels, 253 bytes.
    let deep = (1..=16).map(|i| format!("l{i}")).collect::<Vec<_>>().join(".");
    let long = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
    assert_eq!(long.len(), 253);
    let rules = set(vec![rule(1, &deep, DomainAction::Drop, false), rule(2, &format!("*.{long}"), DomainAction::Drop, false)]);
    let map = compile_domains(&rules, SEEDS).unwrap();
    assert_eq!(slots(entry(&map, &deep)), (1, DOMAIN_DROP, 0, 0, DOMAIN_NONE, 0));
    assert_eq!(slots(entry(&map, &long)), (0, DOMAIN_NONE, 0, 2, DOMAIN_DROP, 0));
}
