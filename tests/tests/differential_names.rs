//! The domain stage of the real XDP program (BPF_PROG_TEST_RUN) against the
//! reference on generated domain rules and crafted DNS, TLS and HTTP
//! packets: verdicts, the in-kernel DNS answers byte for byte, rule and
//! reason counters, and the stage's own counters must all be identical.
//! The kernel's state between packets (blocked connections, ClientHellos
//! continued in the next segment) is followed by the reference too.
//!
//! Replay a failure with `EDGEFILTER_SEED=<seed>`; `EDGEFILTER_PACKETS`
//! overrides the number of packets per rule set.
use std::collections::BTreeMap;
use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::maps::{l7, Reason};
use filter_common::reference::{NameState, Reference};
use filter_common::rules::domain::{DomainPattern, DomainScope};
use filter_common::rules::order_file::Category;
use filter_common::rules::ruleset::{DomainAction, DomainRule};
use filter_common::rules::{RuleInfo, RuleSet, Settings};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use edgefilter_tests::l7gen::{self, ClientHello, DnsMalformation, DnsQuery, ExtOrder, Flow, HostVariant, Transport};
use edgefilter_tests::counters::Counters;
use edgefilter_tests::pktgen::{AddrPool, PacketGen};

const RULE_SETS: usize = 6;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// Labels names are built from: few, so rules and packets meet often.
const LABELS: [&str; 12] = ["example", "com", "net", "org", "www", "cdn", "a", "b", "mail", "x-1", "tracker", "ads"];
const TLDS: [&str; 3] = ["com", "net", "org"];

fn name(rng: &mut SmallRng) -> String {
    let depth = match rng.random_range(0..20) {
        0 => 17 + rng.random_range(0..3),
        1..4 => 1,
        _ => rng.random_range(2..6),
    };
    let mut labels: Vec<&str> = (1..depth).map(|_| LABELS[rng.random_range(0..LABELS.len())]).collect();
    labels.push(TLDS[rng.random_range(0..TLDS.len())]);
    labels.join(".")
}

/// A name as a packet carries it: sometimes in mixed case.
fn in_packet(rng: &mut SmallRng, name: &str) -> String {
    if rng.random_bool(0.3) {
        name.chars().map(|c| if rng.random_bool(0.5) { c.to_ascii_uppercase() } else { c }).collect()
    } else {
        name.to_string()
    }
}

fn ruleset(rng: &mut SmallRng) -> RuleSet {
    let mut settings = Settings { fail_closed: rng.random_bool(0.3), ..Settings::default() };
    settings.name_seeds = [rng.random(), rng.random()];
    if rng.random_bool(0.5) {
        settings.dns_ports = vec![53, 5353];
        settings.tls_ports = vec![443, 8443];
        settings.http_ports = vec![80, 8080];
    }
    let mut rs = RuleSet { settings, ..RuleSet::default() };
    for _ in 0..rng.random_range(1..40) {
        let dry_run = rng.random_bool(0.2);
        let id = rs.rules.len() as u32 + 1;
        rs.rules.push(RuleInfo {
            id,
            order_id: format!("DOM-{id}"),
            authority: "generated".into(),
            category: Category::Legal,
            dry_run,
            file: "generated".into(),
            line: 0,
            comment: None,
        });
        let action = [DomainAction::Drop, DomainAction::Nxdomain, DomainAction::Refused, DomainAction::Nxdomain, DomainAction::Pass][rng.random_range(0..5)];
        for _ in 0..rng.random_range(1..4) {
            let mut n = name(rng);
            while n.split('.').count() > 16 {
                n = name(rng);
            }
            let scope = [DomainScope::Exact, DomainScope::Subdomains, DomainScope::ApexAndSubdomains][rng.random_range(0..3)];
            rs.domains.push(DomainRule { rule_id: id, pattern: DomainPattern { name: n, scope }, action, dry_run });
        }
    }
    rs
}

fn dport(rng: &mut SmallRng, ports: &[u16]) -> u16 {
    // Mostly a configured port; sometimes another kind's, or a plain one.
    match rng.random_range(0..10) {
        0 => [53, 443, 80, 5353, 8443, 8080, 22][rng.random_range(0..7)],
        _ => ports[rng.random_range(0..ports.len())],
    }
}

fn flow(rng: &mut SmallRng, dport: u16) -> Flow {
    let ipv6 = rng.random_bool(0.4);
    let mut f = Flow::random(rng, ipv6, dport);
    match rng.random_range(0..10) {
        0 => f = f.with_vlans(&[rng.random_range(1..4095)]),
        1 => f = f.with_vlans(&[rng.random_range(1..4095), rng.random_range(1..4095)]),
        2 => f = f.with_tcp_timestamps(),
        3 if matches!(f.dst, IpAddr::V6(_)) => f = f.with_v6_exts(&[l7gen::V6Ext::DestinationOptions]),
        _ => {}
    }
    f
}

fn dns_frames(rng: &mut SmallRng, rules: &RuleSet, out: &mut Vec<Vec<u8>>) {
    let port = dport(rng, &rules.settings.dns_ports);
    let f = flow(rng, port);
    let plain = name(rng);
    let n = in_packet(rng, &plain);
    let mut q = DnsQuery::new(rng.random(), &n, [1, 28, 65, 16][rng.random_range(0..4)]);
    q.rd = rng.random_bool(0.8);
    if rng.random_bool(0.4) {
        q = q.with_edns(l7gen::Edns::default());
    }
    let msg = match rng.random_range(0..12) {
        0 => {
            let m = [
                DnsMalformation::LabelTooLong,
                DnsMalformation::CompressionPointerInQuestion,
                DnsMalformation::NameRunsPastEnd,
                DnsMalformation::NoTerminatingZero,
                DnsMalformation::QdcountZero,
                DnsMalformation::IsResponse,
                DnsMalformation::OpcodeNotQuery,
                DnsMalformation::TruncatedHeader(rng.random_range(0..12)),
                DnsMalformation::NameOver255Bytes,
                DnsMalformation::TooManyLabels(rng.random_range(n.split('.').count()..130)),
            ][rng.random_range(0..10)];
            q.encode_malformed(m)
        }
        1 => {
            let mut m = q.encode();
            let cut = rng.random_range(0..m.len());
            m.truncate(cut);
            m
        }
        _ => q.encode(),
    };
    let transport = if rng.random_bool(0.8) { Transport::Udp } else { Transport::Tcp };
    out.push(l7gen::dns_frame(&f, transport, &msg));
}

fn tls_frames(rng: &mut SmallRng, rules: &RuleSet, out: &mut Vec<Vec<u8>>) {
    let port = dport(rng, &rules.settings.tls_ports);
    let f = flow(rng, port);
    let plain = name(rng);
    let n = in_packet(rng, &plain);
    let mut hello = if rng.random_bool(0.5) { ClientHello::chrome_like(&n) } else { ClientHello::new(&n) };
    hello.extensions_order = match rng.random_range(0..4) {
        0 => ExtOrder::Canonical,
        1 => ExtOrder::Shuffled,
        2 => ExtOrder::SniFirst,
        _ => ExtOrder::SniLast,
    };
    hello.grease = rng.random_bool(0.5);
    hello.ech = rng.random_bool(0.3);
    if rng.random_bool(0.1) {
        hello.sni = None;
    }
    let seed = rng.random();
    let record = hello.record(seed);
    let segments: Vec<Vec<u8>> = match rng.random_range(0..10) {
        0..3 => vec![record.clone()],
        3..5 => l7gen::segments(&record, [536, 1220, 1448][rng.random_range(0..3)]),
        5 => match l7gen::split_before_sni(&record) {
            Some(at) => {
                let (a, b) = l7gen::split_at(&record, at);
                vec![a, b]
            }
            None => vec![record.clone()],
        },
        6 => match l7gen::split_inside_sni(&record, rng.random_range(1..12)) {
            Some(at) => {
                let (a, b) = l7gen::split_at(&record, at);
                vec![a, b]
            }
            None => vec![record.clone()],
        },
        7 => vec![l7gen::truncated(&record, rng.random_range(1..record.len()))],
        8 => vec![hello.records_fragmented(seed, rng.random_range(20..200))],
        _ => {
            // Split anywhere, then the second segment out of order or lost.
            let at = rng.random_range(1..record.len());
            let (a, b) = l7gen::split_at(&record, at);
            if rng.random_bool(0.5) { vec![a] } else { vec![a, b] }
        }
    };
    let mut frames = l7gen::tls_frames(&f, &segments);
    if frames.len() > 1 && rng.random_bool(0.15) {
        // A retransmission of the first segment instead of the second.
        frames[1] = frames[0].clone();
    }
    out.extend(frames.iter().cloned());
    // The connection goes on: blocked ones stay blocked.
    if rng.random_bool(0.5) {
        let next = f.seq.wrapping_add(segments.iter().map(|s| s.len() as u32).sum::<u32>());
        out.push(l7gen::tcp_frame(&f, next, l7gen::tcp_flags::ACK, b""));
        out.push(l7gen::tcp_frame(&f, next, l7gen::tcp_flags::ACK | l7gen::tcp_flags::PSH, &[23, 3, 3, 0, 4, 1, 2, 3, 4]));
    }
}

fn http_frames(rng: &mut SmallRng, rules: &RuleSet, out: &mut Vec<Vec<u8>>) {
    let port = dport(rng, &rules.settings.http_ports);
    let f = flow(rng, port);
    let plain = name(rng);
    let n = in_packet(rng, &plain);
    let variant = match rng.random_range(0..18) {
        0 => HostVariant::LowercaseName,
        1 => HostVariant::UppercaseName,
        2 => HostVariant::MixedCaseValue,
        3 => HostVariant::WithPort(8080),
        4 => HostVariant::TrailingDot,
        5 => HostVariant::Whitespace,
        6 => HostVariant::NoSpace,
        7 => HostVariant::AbsoluteForm,
        8 => HostVariant::AbsoluteFormNoHost,
        9 => HostVariant::Http10NoHost,
        10 => HostVariant::FoldedHost,
        11 => HostVariant::LongHeaderBefore(rng.random_range(100..1100)),
        12 => HostVariant::HostAt(rng.random_range(40..1100)),
        13 => HostVariant::BareLf,
        14 => HostVariant::DuplicateHost(name(rng)),
        _ => HostVariant::Plain,
    };
    let mut req = l7gen::http_request_variant(&n, &variant);
    if rng.random_bool(0.1) {
        req.truncate(rng.random_range(0..req.len()));
    }
    out.push(l7gen::http_frame(&f, &req));
    if rng.random_bool(0.3) {
        out.push(l7gen::tcp_frame(&f, f.seq.wrapping_add(req.len() as u32), l7gen::tcp_flags::ACK | l7gen::tcp_flags::PSH, b"more body"));
    }
}

fn run_once(dp: &Dataplane, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() };
    let r = dp.program().unwrap().test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

fn reference_l7(state: &NameState) -> BTreeMap<&'static str, u64> {
    l7::NAMES.iter().zip(state.stats).filter(|(_, v)| *v != 0).map(|(n, v)| (*n, v)).collect()
}

#[test]
fn domain_stage_matches_reference() {
    let seed = edgefilter_tests::seed();
    let per_set: usize = std::env::var("EDGEFILTER_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000);
    eprintln!("domain differential seed {seed} ({RULE_SETS} rule sets x {per_set} packets)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 1_000, prefixes_v6: 1_000, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    // Kernel and reference state carried from set to set, as in the kernel.
    let mut state = NameState::default();
    let mut mix: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<(Reason, u32), usize> = BTreeMap::new();
    for set in 0..RULE_SETS {
        let rules = ruleset(&mut rng);
        dp.apply_rules(&rules).expect("apply rule set");
        dp.reset_counters().unwrap();
        state.stats = Default::default();
        let reference = Reference::new(&rules);
        *reference.names.borrow_mut() = std::mem::take(&mut state);
        let mut gen = PacketGen::new(SmallRng::seed_from_u64(seed ^ (set as u64 + 101)), AddrPool::default());
        let mut frames = Vec::new();
        while frames.len() < per_set {
            match rng.random_range(0..10) {
                0..3 => dns_frames(&mut rng, &rules, &mut frames),
                3..6 => tls_frames(&mut rng, &rules, &mut frames),
                6..8 => http_frames(&mut rng, &rules, &mut frames),
                _ => frames.push(gen.frame()),
            }
        }
        let mut expected = Counters::default();
        for (i, frame) in frames.iter().enumerate() {
            if frame.len() < 14 {
                continue;
            }
            let want = reference.classify(frame);
            let (code, out) = run_once(&dp, frame);
            let want_code = match (&want.answer, want.drop) {
                (Some(_), _) => XDP_TX,
                (None, true) => XDP_DROP,
                (None, false) => XDP_PASS,
            };
            assert_eq!(
                code,
                want_code,
                "seed {seed}, rule set {set}, packet {i}: kernel {code} but reference {want:?}\nframe: {}\nkernel stage counters so far: {:?}\nrules: {:#?}",
                hex::encode(frame),
                dp.l7_totals().unwrap().into_iter().filter(|(_, v)| *v != 0).collect::<Vec<_>>(),
                rules.domains
            );
            if let Some(answer) = &want.answer {
                assert_eq!(hex::encode(&out), hex::encode(answer), "seed {seed}, rule set {set}, packet {i}: DNS answers differ\nquery: {}", hex::encode(frame));
            }
            *outcomes.entry((want.reason, code)).or_default() += 1;
            expected.add(&want, frame.len());
        }
        let names = reference.names.into_inner();
        expected.l7 = reference_l7(&names);
        let got = Counters::kernel(&dp, &rules, true);
        assert_eq!(got, expected, "seed {seed}, rule set {set}: counters differ (kernel, then reference)");
        for (k, v) in &expected.l7 {
            *mix.entry(k).or_default() += v;
        }
        state = names;
    }
    eprintln!("outcomes (reason, XDP action): {outcomes:?}");
    eprintln!("domain stage counters: {mix:?}");
    // The generator must reach every part of the stage, or the test proves little.
    for want in [(Reason::Domain, XDP_DROP), (Reason::Domain, XDP_TX), (Reason::Pass, XDP_PASS)] {
        assert!(outcomes.contains_key(&want), "no packet reached {want:?}");
    }
    for counter in l7::NAMES {
        assert!(mix.get(counter).copied().unwrap_or(0) > 0, "no packet moved the {counter} counter");
    }
}
