//! RPZ and hosts feeds in the agent config: the sample files become one
//! order each with few entries (one rule id per kind of rule, not per
//! name), bad feeds and bad settings are refused with their place.
use std::path::{Path, PathBuf};

use chrono::Utc;
use filter_agent::config::{self, FeedKind};
use filter_agent::ruleload::{feed_order, load_sources, rpz_entries};
use filter_common::rules::order_file::EntryKind;
use filter_common::rules::ruleset::DomainAction;
use filter_common::rules::{parse_rpz, Action, Category, Direction, DomainPattern, RuleSet};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

fn pats(list: &[&str]) -> Vec<DomainPattern> {
    list.iter().map(|p| DomainPattern::parse(p).unwrap()).collect()
}

const BASE: &str = "interfaces = [\"eth0\"]\nrules = []\n";

fn parse(extra: &str) -> anyhow::Result<config::Config> {
    config::parse(&format!("{BASE}{extra}"), &rules_dir())
}

fn error(extra: &str) -> String {
    format!("{:#}", parse(extra).expect_err("config should be refused"))
}

const FEEDS: &str = r#"
[[feed]]
id = "rpz-example"
format = "rpz"
path = "feeds/example.rpz"
category = "legal"
provenance = "Example regulator RPZ"
action = "dry-run"

[[feed]]
id = "hosts-example"
format = "hosts"
path = "feeds/example.hosts"
category = "operator"
provenance = "Example ad list"
dns_answer = "refused"
"#;

#[test]
fn the_sample_rpz_zone_becomes_one_order_with_an_entry_per_kind_of_rule() {
    let config = parse(FEEDS).unwrap();
    let feed = &config.sources.feeds[0];
    assert_eq!(feed.format, FeedKind::Rpz);
    let order = feed_order(feed).unwrap();
    assert_eq!(order.id, "rpz-example");
    assert_eq!(order.authority, "Example regulator RPZ");
    assert_eq!(order.category, Category::Legal);
    assert_eq!(order.action, Action::DryRun);
    assert!(order.reference.ends_with("example.rpz (rpz)"), "{}", order.reference);
    let entries: Vec<(usize, Option<&str>, &EntryKind)> =
        order.entries.iter().map(|e| (e.line, e.comment.as_deref(), &e.kind)).collect();
    assert_eq!(
        entries,
        vec![
            (
                15,
                Some("rpz nxdomain: 4 names answered NXDOMAIN"),
                &EntryKind::Domains {
                    patterns: pats(&["ads.example.com", "*.ads.example.com", "malware.example.org", "phish.example.org"]),
                    action: DomainAction::Nxdomain,
                }
            ),
            (
                17,
                Some("rpz drop: 2 names dropped"),
                &EntryKind::Domains { patterns: pats(&["tracker.example.net", "*.tracker.example.net"]), action: DomainAction::Drop }
            ),
            (
                25,
                Some("rpz passthru: 1 name passed (passthru: an allow list)"),
                &EntryKind::Domains { patterns: pats(&["cdn.ads.example.com"]), action: DomainAction::Pass }
            ),
            (
                28,
                Some("rpz-ip (destination): 4 prefixes"),
                &EntryKind::Prefixes {
                    nets: ["192.0.2.10/32", "198.51.100.0/24", "2001:db8:bad::/48", "2001:db8::1/128"].map(|n| n.parse().unwrap()).to_vec(),
                    direction: Direction::Dst,
                }
            ),
            (
                35,
                Some("rpz-client-ip (source): 1 prefix"),
                &EntryKind::Prefixes { nets: vec!["203.0.113.64/26".parse().unwrap()], direction: Direction::Src }
            ),
        ]
    );
}

#[test]
fn the_sample_hosts_list_becomes_one_entry_of_exact_names() {
    let config = parse(FEEDS).unwrap();
    let feed = &config.sources.feeds[1];
    assert_eq!(feed.format, FeedKind::Hosts);
    assert_eq!(feed.dns_answer, DomainAction::Refused);
    let order = feed_order(feed).unwrap();
    assert_eq!(order.action, Action::Drop);
    assert_eq!(order.entries.len(), 1);
    assert_eq!(order.entries[0].line, 19);
    assert_eq!(order.entries[0].comment.as_deref(), Some("7 names"));
    assert_eq!(
        order.entries[0].kind,
        EntryKind::Domains {
            patterns: pats(&[
                "ads.example.com",
                "banners.ads.example.com",
                "static.ads.example.com",
                "tracker.example.net",
                "telemetry.example.org",
                "metrics.example.org",
                "xn--bcher-kva.example",
            ]),
            action: DomainAction::Refused,
        }
    );
}

#[test]
fn feeds_give_rule_sets_with_three_rule_ids_for_thirteen_domain_rules() {
    let config = parse(FEEDS).unwrap();
    let orders = load_sources(&config.sources).unwrap();
    let rules = RuleSet::build(config.settings, &orders, Utc::now()).unwrap();
    // rpz: 5 entries, hosts: 1.
    assert_eq!(rules.rules.len(), 6);
    assert_eq!(rules.domains.len(), 14);
    assert_eq!(rules.prefixes.len(), 5);
    let rpz: Vec<_> = rules.domains.iter().filter(|d| d.dry_run).collect();
    assert_eq!(rpz.len(), 7, "the rpz feed is dry-run, the hosts feed enforces");
    assert!(rules.prefixes.iter().all(|p| p.dry_run));
    // Its default: NXDOMAIN.
    let config = parse(&FEEDS.replace("dns_answer = \"refused\"\n", "")).unwrap();
    assert_eq!(config.sources.feeds[1].dns_answer, DomainAction::Nxdomain);
}

#[test]
fn a_passthru_on_an_address_trigger_is_refused_at_its_line() {
    let zone = "$ORIGIN rpz.example.net.\n\
                @ IN SOA ns. h. 1 2 3 4 5\n\
                32.10.2.0.192.rpz-ip CNAME rpz-passthru.\n\
                ok.example CNAME rpz-passthru.\n\
                24.0.113.0.203.rpz-client-ip CNAME rpz-passthru.\n";
    let file = Path::new("z.rpz");
    let parsed = parse_rpz(file, zone).unwrap();
    let errors: Vec<String> = rpz_entries(file, &parsed).unwrap_err().0.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        [
            "z.rpz:3: rpz-ip (destination) 192.0.2.10/32: passthru on address triggers is not supported",
            "z.rpz:5: rpz-client-ip (source) 203.0.113.0/24: passthru on address triggers is not supported",
        ]
    );
}

#[test]
fn a_bad_feed_file_is_reported_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("domain-feeds-{}-{}", std::process::id(), Utc::now().timestamp_nanos_opt().unwrap()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.hosts"), "0.0.0.0 ok.example\n192.0.2.1 redirect.example\n").unwrap();
    std::fs::write(dir.join("bad.rpz"), "$ORIGIN rpz.example.\nads.example CNAME walled.example.\n").unwrap();
    let text = format!(
        "{BASE}[[feed]]\nid = \"h\"\nformat = \"hosts\"\npath = \"bad.hosts\"\ncategory = \"operator\"\nprovenance = \"p\"\n\
         [[feed]]\nid = \"r\"\nformat = \"rpz\"\npath = \"bad.rpz\"\ncategory = \"legal\"\nprovenance = \"p\"\n"
    );
    let config = config::parse(&text, &dir).unwrap();
    let errors: Vec<String> = load_sources(&config.sources).unwrap_err().0.iter().map(|e| e.to_string()).collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].ends_with("bad.hosts:2: address 192.0.2.1: only sinkhole addresses (0.0.0.0, 127.0.0.1, ::, ::1) mean blocked; redirects are not supported"), "{errors:?}");
    assert!(errors[1].ends_with("bad.rpz:2: `ads.example`: CNAME to `walled.example.` (redirect) is not supported"), "{errors:?}");
}

#[test]
fn feed_settings_that_do_not_fit_the_format_are_refused() {
    let feed = |format: &str, extra: &str| {
        format!("[[feed]]\nid = \"f\"\nformat = \"{format}\"\npath = \"feeds/x\"\ncategory = \"legal\"\nprovenance = \"p\"\n{extra}")
    };
    assert_eq!(
        error(&feed("rpz", "direction = \"src\"\n")),
        "feed[0].direction: an rpz feed says it per record (rpz-ip: destination, rpz-client-ip: source)"
    );
    assert_eq!(error(&feed("hosts", "direction = \"dst\"\n")), "feed[0].direction: a hosts feed lists names, not addresses");
    assert_eq!(
        error(&feed("rpz", "dns_answer = \"refused\"\n")),
        "feed[0].dns_answer: an rpz feed says it per record (`CNAME .` = nxdomain, `CNAME rpz-drop.` = drop)"
    );
    assert_eq!(error(&feed("netset", "dns_answer = \"drop\"\n")), "feed[0].dns_answer: applies to hosts feeds (a netset feed lists addresses)");
    assert_eq!(
        error(&feed("hosts", "dns_answer = \"servfail\"\n")),
        "feed[0].dns_answer: dns_answer `servfail`: expected `nxdomain`, `refused` or `drop`"
    );
    assert_eq!(
        error(&feed("zone", "")),
        "feed[0].format: `zone`: expected one of plain, spamhaus-drop, spamhaus-json, netset, rpz, hosts"
    );
    // The prefix formats are read as before.
    let c = parse(&feed("spamhaus-json", "direction = \"src\"\n")).unwrap();
    assert_eq!(c.sources.feeds[0].format.name(), "spamhaus-json");
    assert_eq!(c.sources.feeds[0].direction, Direction::Src);
}

#[test]
fn ports_and_capacities() {
    let c = parse("").unwrap();
    assert_eq!((c.settings.dns_ports.as_slice(), c.settings.tls_ports.as_slice(), c.settings.http_ports.as_slice()), (&[53][..], &[443][..], &[80][..]));
    assert_eq!((c.capacity.domains, c.capacity.flows), (filter_common::maps::DEFAULT_DOMAIN_CAPACITY, filter_common::maps::DEFAULT_FLOW_CAPACITY));

    let c = parse("dns_ports = [53, 5353]\ntls_ports = [443, 8443]\nhttp_ports = []\n[capacity]\ndomains = 2000000\nflows = 262144\n").unwrap();
    assert_eq!(c.settings.dns_ports, [53, 5353]);
    assert_eq!(c.settings.tls_ports, [443, 8443]);
    assert!(c.settings.http_ports.is_empty());
    assert_eq!((c.capacity.domains, c.capacity.flows), (2_000_000, 262_144));

    assert_eq!(error("tls_ports = [443, 8443, 4433, 9443, 10443]\n"), "tls_ports: 5 ports; the data plane reads names on at most 4 ports of each kind");
    assert_eq!(error("dns_ports = [53, 53]\nhttp_ports = [0]\n"), "dns_ports: port 53 listed twice\nhttp_ports: port 0 is not a port");
    assert_eq!(error("[capacity]\ndomains = 0\nflows = 0\n"), "capacity.domains: must be at least 1\ncapacity.flows: must be at least 1");
    assert!(error("dns_ports = [70000]\n").contains("dns_ports"));
}
