//! `rate_limit` and `fragments` on L4 entries: what they parse into, what
//! the kernel gets, and every mistake reported at its line with the key.
use std::path::Path;

use filter_common::maps::{L4_FRAGMENTS, L4_RATE_LIMIT, RL_PER_DESTINATION, RL_PER_SOURCE, RL_SCALE};
use filter_common::rules::order_file::EntryKind;
use filter_common::rules::ruleset::{RateLimitSpec, RatePer};
use filter_common::rules::{parse_order, RuleSet, Settings};

const HEADER: &str = r#"id = "RL-1"
authority = "NOC"
reference = "ticket 1"
category = "attack"
received = 2026-01-01T00:00:00Z
effective = 2026-01-01T00:00:00Z
expires = 2099-01-01T00:00:00Z
action = "drop"
"#;

fn errors(text: &str) -> Vec<String> {
    match parse_order(Path::new("o.toml"), text) {
        Ok(o) => panic!("expected errors, parsed {o:?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn rate_limits_and_fragment_rules_parse_and_compile() {
    let text = format!(
        "{HEADER}
[[entry]]
comment = \"NTP reflection: 10 kpps per protected host\"
protocol = \"udp\"
source_ports = [123]
destination = [\"198.51.100.0/24\"]
rate_limit = {{ per = \"destination\", pps = 10000 }}

[[entry]]
comment = \"SYN: 100/s per source /24, 2 Mbit/s, counted only\"
protocol = \"tcp\"
tcp_flags = \"syn,!ack\"
rate_limit = {{ per = \"source\", source_prefix_v4 = 24, pps = 100, burst_packets = 20, bps = 2000000, action = \"count\" }}

[[entry]]
protocol = \"udp\"
fragments = true
destination = [\"198.51.100.0/24\"]
rate_limit = {{ per = \"rule\", pps = 500 }}
"
    );
    let order = parse_order(Path::new("o.toml"), &text).expect("parses");
    let specs: Vec<(Option<RateLimitSpec>, bool)> = order
        .entries
        .iter()
        .map(|e| match &e.kind {
            EntryKind::L4(l4) => (l4.rate_limit, l4.fragments),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(specs[0].0, Some(RateLimitSpec { per: RatePer::Destination, pps: Some(10_000), bps: None, burst_packets: 10_000, burst_bits: 0, count_only: false }));
    assert_eq!(
        specs[1].0,
        Some(RateLimitSpec { per: RatePer::Source { v4: 24, v6: 64 }, pps: Some(100), bps: Some(2_000_000), burst_packets: 20, burst_bits: 2_000_000, count_only: true })
    );
    assert!(specs[2].1 && !specs[0].1);
    let rules = RuleSet::build(Settings::default(), &[order], chrono::Utc::now()).unwrap();
    let c = filter_common::compile::compile(&rules, 1).unwrap();
    assert!(c.l4_rules.iter().all(|r| r.flags & L4_RATE_LIMIT != 0));
    assert!(c.l4_rules[2].flags & L4_FRAGMENTS != 0);
    let rl = c.rate_limits[1];
    assert_eq!((rl.per, rl.src_len_v4, rl.src_len_v6, rl.count_only), (RL_PER_SOURCE, 24, 64, 1));
    assert_eq!(rl.pkt_cap, 20 * RL_SCALE);
    // An empty bucket of 20 packets at 100/s fills in 200 ms.
    assert_eq!(rl.pkt_fill_ns, 200_000_000);
    assert_eq!(c.rate_limits[0].per, RL_PER_DESTINATION);
}

#[test]
fn bad_rate_limits_are_reported_at_their_line() {
    for (entry, want) in [
        ("protocol = \"udp\"\nrate_limit = { pps = 10 }", "rate_limit.per: missing"),
        ("protocol = \"udp\"\nrate_limit = { per = \"subnet\", pps = 10 }", "`subnet`"),
        ("protocol = \"udp\"\nrate_limit = { per = \"rule\" }", "give pps, bps or both"),
        ("protocol = \"udp\"\nrate_limit = { per = \"rule\", pps = 0 }", "rate_limit.pps"),
        ("protocol = \"udp\"\nrate_limit = { per = \"rule\", pps = 10, burst_bits = 5 }", "burst_bits: needs bps"),
        ("protocol = \"udp\"\nrate_limit = { per = \"rule\", pps = 10, action = \"reject\" }", "rate_limit.action"),
        ("protocol = \"udp\"\nrate_limit = { per = \"destination\", pps = 10, source_prefix_v4 = 24 }", "only with per = \"source\""),
        ("protocol = \"udp\"\nrate_limit = { per = \"source\", pps = 10, source_prefix_v4 = 33 }", "prefix length 0-32"),
        ("protocol = \"udp\"\nrate_limit = { per = \"rule\", pps = 10, colour = 1 }", "rate_limit.colour: unknown key"),
        ("protocol = \"udp\"\nfragments = true\ndestination_ports = [53]", "`fragments` matches fragments"),
        ("prefixes = [\"198.51.100.0/24\"]\nrate_limit = { per = \"rule\", pps = 10 }", "`rate_limit` needs `protocol`"),
    ] {
        let errs = errors(&format!("{HEADER}\n[[entry]]\n{entry}\n"));
        assert!(errs.iter().any(|e| e.contains(want) && e.starts_with("o.toml:1")), "{entry:?}: {errs:?}");
    }
}

/// The kernel's rate-limit clock moves a tick (up to 10 ms) at a time, so
/// no bucket is shallower than 50 ms of its rate; deeper bursts are kept.
#[test]
fn buckets_hold_at_least_fifty_milliseconds_of_their_rate() {
    let spec = |pps: Option<u64>, bps: Option<u64>, burst_packets: u64, burst_bits: u64| RateLimitSpec { per: RatePer::Rule, pps, bps, burst_packets, burst_bits, count_only: false };
    // 1,000 pps with a burst of 1: raised to 50 packets (filled in 50 ms).
    let rl = filter_common::compile::rate_limit(spec(Some(1_000), None, 1, 0));
    assert_eq!((rl.pkt_cap, rl.pkt_fill_ns), (50 * RL_SCALE, 50_000_000));
    // A burst deeper than 50 ms stays as given.
    let rl = filter_common::compile::rate_limit(spec(Some(1_000), None, 2_000, 0));
    assert_eq!(rl.pkt_cap, 2_000 * RL_SCALE);
    // 1 Mbit/s with a 100-bit burst: raised to 50,000 bits; no packet limit.
    let rl = filter_common::compile::rate_limit(spec(None, Some(1_000_000), 0, 100));
    assert_eq!((rl.pps, rl.pkt_cap, rl.bit_cap), (0, 0, 50_000 * RL_SCALE));
}
