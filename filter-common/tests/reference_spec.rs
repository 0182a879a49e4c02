//! The reference classifier on hand-made packets: each test states one rule
//! of the specification (the differential test then holds the XDP program
//! to the same answers).
use std::path::Path;

use chrono::{TimeZone, Utc};
use etherparse::PacketBuilder;
use filter_common::maps::{Reason, FRAG_DROP_NON_FIRST};
use filter_common::reference::Reference;
use filter_common::rules::{parse_order, RuleSet, Settings};

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn rules(entries: &str, settings: Settings) -> RuleSet {
    let text = format!(
        r#"id = "SPEC"
authority = "Example"
reference = "spec"
category = "operator"
received = 2026-01-01T00:00:00Z
effective = 2026-01-01T00:00:00Z
expires = 2027-01-01T00:00:00Z
action = "drop"
{entries}"#
    );
    let order = parse_order(Path::new("spec.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    RuleSet::build(settings, &[order], Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()).unwrap()
}

fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC, MAC).ipv4(src, dst, 64).udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, &[0u8; 8]).unwrap();
    out
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

#[test]
fn prefix_rules_match_source_or_destination_and_the_most_specific_wins() {
    let rs = rules(
        "[[entry]]\nprefixes = [\"203.0.113.0/24\"]\n[[entry]]\nprefixes = [\"198.51.100.7\"]\ndirection = \"dst\"\n",
        Settings::default(),
    );
    let r = Reference::new(&rs);
    let d = r.classify(&udp4([203, 0, 113, 9], [198, 18, 0, 1], 1000, 53));
    assert!(d.drop && d.reason == Reason::Prefix && d.rule_id == 1);
    let d = r.classify(&udp4([198, 18, 0, 1], [203, 0, 113, 9], 1000, 53));
    assert!(d.drop && d.rule_id == 1, "both directions by default");
    let d = r.classify(&udp4([198, 51, 100, 7], [198, 18, 0, 1], 1000, 53));
    assert!(!d.drop && d.reason == Reason::Pass, "dst-only rule ignores the source");
    let d = r.classify(&udp4([198, 18, 0, 1], [198, 51, 100, 7], 1000, 53));
    assert_eq!((d.drop, d.rule_id), (true, 2));
}

#[test]
fn allowlist_beats_every_block() {
    let mut s = Settings::default();
    s.allow.push("203.0.113.10/32".parse().unwrap());
    let rs = rules("[[entry]]\nprefixes = [\"203.0.113.0/24\"]\n", s);
    let d = Reference::new(&rs).classify(&udp4([203, 0, 113, 10], [198, 18, 0, 1], 179, 179));
    assert_eq!((d.drop, d.reason), (false, Reason::Allowlist));
}

#[test]
fn arp_and_genuine_neighbour_discovery_always_pass() {
    let rs = rules("[[entry]]\nprefixes = [\"2001:db8::/32\"]\n", Settings { fail_closed: true, ..Settings::default() });
    let r = Reference::new(&rs);
    let mut arp = vec![0xff; 12];
    arp.extend([0x08, 0x06]);
    arp.extend([0u8; 28]);
    assert_eq!(r.classify(&arp).reason, Reason::Control);

    let nd = |hop_limit: u8| {
        let b = PacketBuilder::ethernet2(MAC, MAC)
            .ipv6(v6("2001:db8::1"), v6("2001:db8::2"), hop_limit)
            .icmpv6(etherparse::Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] });
        let mut out = Vec::new();
        b.write(&mut out, &[0u8; 16]).unwrap();
        out
    };
    assert_eq!(r.classify(&nd(255)).reason, Reason::Control, "on-link ND passes even inside a blocked prefix");
    let d = r.classify(&nd(64));
    assert!(d.drop && d.reason == Reason::Prefix, "ND with hop limit < 255 is not genuine and gets no exemption");
}

#[test]
fn l4_rules_match_ports_flags_and_never_non_first_fragments() {
    let rs = rules(
        "[[entry]]\nprotocol = \"udp\"\nsource_ports = [11211]\n[[entry]]\nprotocol = \"tcp\"\ndestination_ports = [22]\ntcp_flags = \"syn,!ack\"\n",
        Settings::default(),
    );
    let r = Reference::new(&rs);
    let d = r.classify(&udp4([192, 0, 2, 1], [198, 18, 0, 1], 11211, 40000));
    assert_eq!((d.drop, d.reason, d.rule_id), (true, Reason::L4, 1));
    assert!(!r.classify(&udp4([192, 0, 2, 1], [198, 18, 0, 1], 11212, 40000)).drop);

    let tcp = |syn: bool, ack: bool| {
        let mut b = PacketBuilder::ethernet2(MAC, MAC).ipv4([192, 0, 2, 1], [198, 18, 0, 1], 64).tcp(40000, 22, 1, 1024);
        if syn {
            b = b.syn();
        }
        if ack {
            b = b.ack(1);
        }
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    };
    assert!(r.classify(&tcp(true, false)).drop, "connection-opening SYN dropped");
    assert!(!r.classify(&tcp(true, true)).drop, "SYN-ACK passes");
    assert!(!r.classify(&tcp(false, true)).drop, "established traffic passes");

    // A non-first fragment whose payload happens to look like source port
    // 11211 must not match: it has no UDP header.
    let mut frag = udp4([192, 0, 2, 1], [198, 18, 0, 1], 11211, 40000);
    frag[14 + 6] = 0x00;
    frag[14 + 7] = 0x10; // fragment offset 16 (x 8 bytes)
    let d = r.classify(&frag);
    assert_eq!((d.drop, d.reason), (false, Reason::Pass));
}

#[test]
fn fragment_policy_and_fail_closed() {
    let mut s = Settings { fail_closed: true, ..Settings::default() };
    s.fragment_policy[17] = FRAG_DROP_NON_FIRST;
    let rs = rules("[[entry]]\nprefixes = [\"192.0.2.128/25\"]\n", s);
    let r = Reference::new(&rs);
    let mut first = udp4([198, 18, 0, 2], [198, 18, 0, 1], 1, 2);
    first[14 + 6] = 0x20; // more fragments, offset 0
    assert!(!r.classify(&first).drop, "first fragments pass under drop-non-first");
    let mut later = first.clone();
    later[14 + 6] = 0x00;
    later[14 + 7] = 0x02;
    assert_eq!(r.classify(&later).reason, Reason::Fragment);

    let whole = udp4([198, 18, 0, 2], [198, 18, 0, 1], 1, 2);
    let truncated = &whole[..whole.len() - 10];
    let d = r.classify(truncated);
    assert_eq!((d.drop, d.reason), (true, Reason::Malformed), "IPv4 total length beyond the frame");
    // Known addresses still hit the blocklist even if the rest is broken.
    let blocked = udp4([192, 0, 2, 200], [198, 18, 0, 1], 1, 2);
    let mut tiny = blocked[..14 + 20 + 4].to_vec();
    tiny[14 + 3] = 24; // total length: header + 4 bytes of UDP
    assert_eq!(r.classify(&tiny).reason, Reason::Prefix);
}

#[test]
fn vlan_stacks_and_extension_chains_have_limits() {
    let rs = rules("[[entry]]\nprefixes = [\"203.0.113.0/24\"]\n", Settings::default());
    let r = Reference::new(&rs);
    let inner = udp4([203, 0, 113, 1], [198, 18, 0, 1], 1, 2);
    let tagged = |tags: &[u16]| {
        let mut f = inner[..12].to_vec();
        for &t in tags {
            f.extend(t.to_be_bytes());
            f.extend([0x00, 0x64]);
        }
        f.extend(&inner[12..]);
        f
    };
    assert_eq!(r.classify(&tagged(&[0x88a8, 0x8100])).reason, Reason::Prefix, "QinQ is parsed");
    assert_eq!(r.classify(&tagged(&[0x8100, 0x88a8])).reason, Reason::Prefix, "any tag order");
    assert_eq!(r.classify(&tagged(&[0x8100, 0x8100, 0x8100])).reason, Reason::Malformed, "three tags are refused");

    // IPv6 with N destination-options headers before UDP.
    let chain = |n: usize| {
        let mut f = inner[..12].to_vec();
        f.extend([0x86, 0xdd]);
        let mut body = Vec::new();
        for i in 0..n {
            body.extend([if i + 1 == n { 17 } else { 60 }, 0, 0, 0, 0, 0, 0, 0]);
        }
        body.extend([0, 1, 0, 2, 0, 8, 0, 0]);
        f.extend([0x60, 0, 0, 0]);
        f.extend((body.len() as u16).to_be_bytes());
        f.extend([if n == 0 { 17 } else { 60 }, 64]);
        f.extend(v6("2001:db8::1"));
        f.extend(v6("2001:db8::2"));
        f.extend(body);
        f
    };
    assert_eq!(r.classify(&chain(6)).reason, Reason::Pass, "six extension headers are walked");
    assert_eq!(r.classify(&chain(7)).reason, Reason::Malformed, "a seventh is refused");
}

#[test]
fn dry_run_counts_and_continues() {
    let text = r#"id = "TRIAL"
authority = "Example"
reference = "trial"
category = "operator"
received = 2026-01-01T00:00:00Z
effective = 2026-01-01T00:00:00Z
expires = 2027-01-01T00:00:00Z
action = "dry-run"

[[entry]]
prefixes = ["203.0.113.0/24"]
"#;
    let trial = parse_order(Path::new("t.toml"), text).unwrap();
    let enforce = parse_order(Path::new("e.toml"), &text.replace("TRIAL", "ENF").replace("dry-run", "drop").replace("203.0.113.0/24", "198.51.100.0/24")).unwrap();
    let rs = RuleSet::build(Settings::default(), &[trial, enforce], Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()).unwrap();
    let r = Reference::new(&rs);
    let d = r.classify(&udp4([203, 0, 113, 1], [198, 18, 0, 1], 1, 2));
    assert_eq!((d.drop, d.reason, d.hits.clone()), (false, Reason::Pass, vec![1]));
    let d = r.classify(&udp4([203, 0, 113, 1], [198, 51, 100, 1], 1, 2));
    assert_eq!((d.drop, d.rule_id, d.hits.clone()), (true, 2, vec![1, 2]), "dry-run hit counted, enforcing rule still drops");
}
