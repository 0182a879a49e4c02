//! `[[protect]]` and `[[ddos_policy]]` in agent.toml: a policy's mitigation
//! is an order-file L4 entry aimed at its group's prefixes, and every
//! mistake is refused with its key path (`ddos_policy[i].mitigation...`).
use std::path::Path;

use chrono::Utc;
use filter_agent::config;
use filter_agent::ddos::Metric;
use filter_common::rules::ruleset::RatePer;
use filter_common::rules::{RuleSet, Scope};

const BASE: &str = "interfaces = [\"eth0\"]\nrules = []\n";

const GROUPS: &str = r#"
[[protect]]
name = "customers"
prefixes = ["198.18.0.0/16", "2001:db8:100::/40"]

[[protect]]
name = "hosting"
prefixes = ["198.19.0.0/24"]
"#;

const NTP: &str = r#"
[[ddos_policy]]
name = "ntp-reflection"
prefix_group = "customers"
metric = "reflection_pps"
threshold = 50000
for_seconds = 3
hold_down_seconds = 60
[ddos_policy.mitigation]
protocol = "udp"
source_ports = [19, 53, 123, 161, 389, 1900, 3702, 11211]
rate_limit = { per = "destination", pps = 10000 }
"#;

fn parse(text: &str) -> anyhow::Result<config::Config> {
    config::parse(&format!("{BASE}{text}"), Path::new("/etc/edgefilter"))
}

/// The error text of a config that must be refused.
fn refused(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn policies_load_with_their_group_and_mitigation() {
    let extra = r#"
[[ddos_policy]]
name = "syn-flood"
prefix_group = "hosting"
metric = "syn_pps"
threshold = 2.5e5
[ddos_policy.mitigation]
protocol = "tcp"
tcp_flags = "syn,!ack"
rate_limit = { per = "source", source_prefix_v4 = 24, pps = 100 }
"#;
    let cfg = parse(&format!("{GROUPS}{NTP}{extra}")).expect("valid");
    assert_eq!(cfg.ddos.len(), 2);
    let p = &cfg.ddos[0];
    assert_eq!((p.name.as_str(), p.group.as_str(), p.group_index, p.metric), ("ntp-reflection", "customers", 0, Metric::ReflectionPps));
    assert_eq!((p.threshold, p.for_seconds, p.hold_down_seconds), (50_000.0, 3, 60));
    assert_eq!(p.mitigation.protocol, 17);
    assert_eq!(p.mitigation.source_ports.len(), 8);
    assert_eq!(p.mitigation.rate_limit.unwrap().per, RatePer::Destination);
    let Scope::Nets(nets) = &p.mitigation.destination else { panic!("no destination") };
    assert_eq!(nets, &cfg.settings.protect[0].1, "destination = the group's prefixes");
    // Defaults: 3 s to start, 60 s hold-down.
    let q = &cfg.ddos[1];
    assert_eq!((q.group_index, q.metric, q.threshold, q.for_seconds, q.hold_down_seconds), (1, Metric::SynPps, 250_000.0, 3, 60));
    assert_eq!(p.order_id(), "auto:ntp-reflection:customers");
    assert_eq!(p.authority(), "auto:ntp-reflection");

    // The mitigation order compiles beside the others, with provenance.
    let orders = [p.order(Utc::now(), 60_000.0), q.order(Utc::now(), 300_000.0)];
    let rules = RuleSet::build(cfg.settings.clone(), &orders, Utc::now()).expect("builds");
    assert_eq!(rules.l4.len(), 9);
    let info = rules.rule(rules.l4[0].rule_id).unwrap();
    assert_eq!(info.order_id, "auto:ntp-reflection:customers");
    assert_eq!(info.category.name(), "attack");
    filter_common::compile::compile(&rules, 0).expect("compiles");
}

#[test]
fn traffic_sampling_is_on_by_default() {
    assert_eq!(parse("").unwrap().settings.sample_every, 1000);
    assert_eq!(parse("sample_every = 0").unwrap().settings.sample_every, 0);
    assert!(parse("").unwrap().ddos.is_empty());
}

#[test]
fn every_mistake_is_refused_with_its_key_path() {
    let policy = |body: &str, mitigation: &str| format!("{GROUPS}\n[[ddos_policy]]\n{body}\n[ddos_policy.mitigation]\n{mitigation}\n");
    let ok = "name = \"p\"\nprefix_group = \"customers\"\nmetric = \"udp_pps\"\nthreshold = 1000";
    let udp = "protocol = \"udp\"\nsource_ports = [123]";
    parse(&policy(ok, udp)).expect("the base case is valid");
    for (text, want) in [
        (policy(&ok.replace("udp_pps", "udp_bps"), udp), "ddos_policy[0].metric: `udp_bps`: expected one of pps, bps, tcp_pps, udp_pps, icmp_pps, syn_pps, fragment_pps, reflection_pps, reflection_bps"),
        (policy(&ok.replace("customers", "nobody"), udp), "ddos_policy[0].prefix_group: no [[protect]] named `nobody` (declared: customers, hosting)"),
        (policy(&ok.replace("1000", "0"), udp), "ddos_policy[0].threshold: 0 must be above 0"),
        (policy(&ok.replace("\"p\"", "\"p q\""), udp), "ddos_policy[0].name: `p q` must be letters, digits, - or _"),
        (policy(&format!("{ok}\nfor_seconds = 0"), udp), "ddos_policy[0].for_seconds: must be at least 1"),
        (policy(ok, "protocol = \"udp\"\nsource_ports = [70000]"), "ddos_policy[0].mitigation.source_ports: port 70000 is not in 0-65535"),
        (policy(ok, "protocol = \"udp\"\nrate_limit = { per = \"destination\", pps = 0 }"), "ddos_policy[0].mitigation.rate_limit.pps: 0 is not a whole number"),
        (policy(ok, "protocol = \"udp\"\nrate_limit = { per = \"victim\", pps = 10 }"), "ddos_policy[0].mitigation.rate_limit.per: `victim`: use rule, source, destination or flow"),
        (policy(ok, "protocol = \"udp\"\nrate_limit = { pps = 10 }"), "ddos_policy[0].mitigation.rate_limit.per: missing"),
        (policy(ok, "protocol = \"udp\"\nsource_port = [123]"), "ddos_policy[0].mitigation.source_port: unknown field `source_port`"),
        (policy(ok, "protocol = \"udp\"\ndestination = [\"198.18.0.1\"]"), "ddos_policy[0].mitigation.destination: filled in with the prefix group's prefixes"),
        (policy(ok, "prefixes = [\"198.18.0.1\"]"), "ddos_policy[0].mitigation.prefixes: a mitigation is an L4 entry"),
        (policy(ok, "source_ports = [123]"), "ddos_policy[0].mitigation.protocol: missing"),
        (policy(ok, "protocol = \"udpx\""), "ddos_policy[0].mitigation.protocol: protocol `udpx`: use tcp, udp"),
        (policy(ok, "protocol = \"icmp\"\nsource_ports = [7]"), "ddos_policy[0].mitigation.protocol: ports need protocol tcp or udp"),
        (policy(ok, "protocol = \"tcp\"\ntcp_flags = \"syn,bogus\""), "ddos_policy[0].mitigation.tcp_flags:"),
        (policy(ok, "protocol = \"udp\"\nfragments = true\nsource_ports = [53]"), "ddos_policy[0].mitigation.fragments: `fragments` matches fragments"),
        (format!("{}{}", policy(ok, udp), policy(ok, udp).replace(GROUPS, "")), "ddos_policy[1].name: `p` used twice"),
    ] {
        let e = refused(&text);
        assert!(e.contains(want), "want `{want}` in:\n{e}\n--- config:\n{text}");
    }
    // A missing or mistyped field of the policy itself: serde's key path.
    let e = refused(&format!("{GROUPS}\n[[ddos_policy]]\nname = \"p\"\nprefix_group = \"customers\"\nmetric = \"pps\"\n[ddos_policy.mitigation]\nprotocol = \"udp\"\n"));
    assert!(e.contains("ddos_policy[0]") && e.contains("threshold"), "{e}");
    let e = refused(&format!("{GROUPS}\n[[ddos_policy]]\nname = \"p\"\nprefix_group = \"customers\"\nmetric = \"pps\"\nthreshold = 5\nhold_down = 3\n[ddos_policy.mitigation]\nprotocol = \"udp\"\n"));
    assert!(e.contains("ddos_policy[0].hold_down") && e.contains("unknown field"), "{e}");
    let e = refused(&format!("{GROUPS}\n[[ddos_policy]]\nname = \"p\"\nprefix_group = \"customers\"\nmetric = \"pps\"\nthreshold = 5\n"));
    assert!(e.contains("ddos_policy[0]") && e.contains("mitigation"), "{e}");
    // Several problems at once: all of them.
    let e = refused(&policy(&ok.replace("udp_pps", "nope").replace("customers", "nobody"), "protocol = \"udp\"\nsource_ports = [70000]"));
    for want in ["ddos_policy[0].metric", "ddos_policy[0].prefix_group", "ddos_policy[0].mitigation.source_ports"] {
        assert!(e.contains(want), "{want} missing from:\n{e}");
    }
}
