//! SYN authentication (`syn_auth` L4 rules) of the real XDP program
//! (BPF_PROG_TEST_RUN) against the reference
//! (`filter_common::reference::synauth`), with a controlled clock:
//! SYN-ACKs with the kernel's cookies and resets byte for byte, verdicts,
//! reasons and rule counters identical, across handshakes that succeed,
//! ACKs that are no cookie ACKs, verified sources whose SYNs go on to the
//! next rules until the verification expires, dry-run rules, SYNs with
//! options, VLAN tags, IPv4 options and IPv6 extension headers.
//!
//! The cookie is keyed by the running kernel's secret: each SYN-ACK the
//! program sends is registered with the reference (which cannot compute
//! it) before the reference classifies the SYN, and later ACKs return it
//! as a real client would.
//!
//! Replay a failure with `EDGEFILTER_SEED=<seed>`.
use std::collections::BTreeMap;
use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::maps::Reason;
use filter_common::packet::{parse, Addrs, Parsed};
use filter_common::reference::synauth::cookie_key;
use filter_common::reference::Reference;
use filter_common::rules::order_file::Category;
use filter_common::rules::{L4Slot, PortRange, RuleInfo, RuleSet, Scope};
use rand::{rngs::SmallRng, seq::IndexedRandom, Rng, SeedableRng};

use edgefilter_tests::counters::Counters;
use edgefilter_tests::l7gen::{self, tcp_flags, Flow, V6Ext};

const RULE_SETS: usize = 6;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TTL_SECONDS: u32 = 5;

const CLIENTS: [&str; 8] = ["198.18.0.1", "198.18.0.2", "198.18.7.9", "198.18.200.1", "2001:db8:a::1", "2001:db8:a::2", "2001:db8:b::7", "2001:db8:c::9"];
const SERVERS: [&str; 4] = ["198.19.1.10", "198.19.2.20", "2001:db8:1::10", "2001:db8:2::20"];

fn rule(rs: &mut RuleSet, dry_run: bool) -> u32 {
    let id = rs.rules.len() as u32 + 1;
    rs.rules.push(RuleInfo {
        id,
        order_id: format!("ORDER-{id}"),
        authority: "test".into(),
        category: Category::Attack,
        dry_run,
        file: "gen.toml".into(),
        line: id as usize,
        comment: None,
    });
    id
}

fn slot(rule_id: u32, dry_run: bool, destination: Scope, dst_ports: Option<PortRange>, syn_auth: bool, bucket: u16) -> L4Slot {
    L4Slot {
        rule_id,
        dry_run,
        protocol: Some(6),
        source: Scope::Any,
        destination,
        src_ports: None,
        dst_ports,
        tcp_flags: None,
        icmp_type: None,
        icmp_code: None,
        rate_limit: None,
        fragments: false,
        bucket,
        syn_auth,
    }
}

/// Protected: 198.19.1.0/24 and 2001:db8:1::/64 (port 80 or any), maybe a
/// second (maybe dry-run) `syn_auth` rule over all servers, and a plain
/// drop of port 9999 after them.
fn ruleset(rng: &mut SmallRng) -> RuleSet {
    let mut rs = RuleSet::default();
    rs.settings.syn_auth_seconds = TTL_SECONDS;
    let protected = Scope::Nets(vec!["198.19.1.0/24".parse().unwrap(), "2001:db8:1::/64".parse().unwrap()]);
    let dry = rng.random_bool(0.2);
    let id = rule(&mut rs, dry);
    let ports = rng.random_bool(0.5).then_some(PortRange { min: 80, max: 80 });
    rs.l4.push(slot(id, dry, protected, ports, true, 0));
    if rng.random_bool(0.5) {
        let dry = rng.random_bool(0.5);
        let id = rule(&mut rs, dry);
        rs.l4.push(slot(id, dry, Scope::Any, None, true, 1));
    }
    let id = rule(&mut rs, false);
    let n = rs.l4.len() as u16;
    rs.l4.push(slot(id, false, Scope::Any, Some(PortRange { min: 9999, max: 9999 }), false, n));
    rs
}

fn run(dp: &Dataplane, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() };
    let r = dp.program().unwrap().test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// An IPv4 frame with 4 bytes of IP options (NOPs) inserted.
fn with_ip_options(frame: &[u8], l3: usize) -> Vec<u8> {
    let mut f = frame[..l3 + 20].to_vec();
    f.extend([1u8, 1, 1, 1]);
    f.extend(&frame[l3 + 20..]);
    f[l3] = 0x46;
    let total = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]) + 4;
    f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
    f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let sum = edgefilter_tests::flood::internet_checksum(&[&f[l3..l3 + 24]]);
    f[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
    f
}

/// A segment from `client` to `server`: a SYN (with or without options),
/// an ACK returning an issued cookie, an ACK that returns none, or
/// another segment; with VLAN tags, IPv4 options or IPv6 extension
/// headers now and then.
fn segment(rng: &mut SmallRng, issued: &[(Flow, u32)]) -> Vec<u8> {
    if !issued.is_empty() && rng.random_bool(0.3) {
        // The client's ACK of our SYN-ACK: seq = ISN + 1, ack = cookie + 1
        // (now and then another number: not a cookie ACK. Not cookie + 2:
        // the cookie's low bits carry the MSS index, so the kernel also
        // takes a neighbour of its cookie; the model knows only the one
        // sent).
        let (flow, cookie) = issued.choose(rng).unwrap();
        let mut f = flow.clone();
        let isn = f.seq.wrapping_sub(1);
        f.ack = cookie.wrapping_add(if rng.random_bool(0.85) { 1 } else { rng.random_range(0x1_0000..0x100_0000) });
        let flags = if rng.random_bool(0.9) { tcp_flags::ACK } else { tcp_flags::ACK | tcp_flags::PSH };
        return l7gen::tcp_frame(&f, isn.wrapping_add(1), flags, if flags & tcp_flags::PSH != 0 { b"GET / HTTP/1.1\r\n\r\n" } else { b"" });
    }
    let src: IpAddr = CLIENTS.choose(rng).unwrap().parse().unwrap();
    let dst = loop {
        let d: IpAddr = SERVERS.choose(rng).unwrap().parse().unwrap();
        if d.is_ipv6() == src.is_ipv6() {
            break d;
        }
    };
    let dport = [80u16, 80, 443, 9999][rng.random_range(0..4)];
    let mut f = Flow::with_addrs(src, dst, dport).with_ports(rng.random_range(1024..65535), dport);
    f.seq = rng.random();
    f.ack = rng.random();
    f.tcp_timestamps = rng.random_bool(0.4);
    if rng.random_bool(0.15) {
        f = f.with_vlans(&[rng.random_range(1..4095)]);
    }
    if src.is_ipv6() && rng.random_bool(0.1) {
        f.v6_exts = vec![V6Ext::HopByHop];
    }
    let flags = match rng.random_range(0..10) {
        0..6 => tcp_flags::SYN,
        6 => tcp_flags::ACK,
        7 => tcp_flags::SYN | tcp_flags::ACK,
        8 => tcp_flags::RST,
        _ => tcp_flags::FIN | tcp_flags::ACK,
    };
    let frame = l7gen::tcp_frame(&f, f.seq, flags, if rng.random_bool(0.1) { b"data" } else { b"" });
    if src.is_ipv4() && rng.random_bool(0.08) {
        let l3 = 14 + 4 * f.vlans.len();
        return with_ip_options(&frame, l3);
    }
    frame
}

#[test]
fn syn_authentication_matches_reference() {
    let seed = edgefilter_tests::seed();
    let per_set: usize = std::env::var("EDGEFILTER_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    eprintln!("SYN authentication differential seed {seed} ({RULE_SETS} rule sets x {per_set} packets)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 100, prefixes_v6: 100, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    let mut outcomes: BTreeMap<(Reason, u32), usize> = BTreeMap::new();
    let mut now: u64 = 1_000_000_000;
    let mut verified_total = 0;
    for set in 0..RULE_SETS {
        let rules = ruleset(&mut rng);
        let generation = dp.apply_rules(&rules).expect("apply rule set");
        dp.reset_counters().unwrap();
        dp.clear_syn_verified().unwrap();
        let mut reference = Reference::new(&rules);
        reference.generation = generation as u8;
        let mut expected = Counters::default();
        // Handshakes the kernel answered: the client's flow (seq = ISN + 1)
        // and the cookie.
        let mut issued: Vec<(Flow, u32)> = Vec::new();
        for i in 0..per_set {
            now += if rng.random_bool(0.01) { u64::from(TTL_SECONDS) * 1_000_000_000 / 2 } else { rng.random_range(0..2_000_000) };
            dp.set_frozen_clock(now).unwrap();
            reference.now_ns.set(now);
            let frame = segment(&mut rng, &issued);
            let (code, out) = run(&dp, &frame);
            let Parsed::Ip(p) = parse(&frame) else { panic!("test frames are IP") };
            if code == XDP_TX {
                // Register the kernel's cookie before the reference runs.
                let answered = parse(&out);
                if let (Parsed::Ip(a), Some(l4)) = (answered, p.l4) {
                    let flags = out[a.l4_off + 13];
                    if flags == tcp_flags::SYN | tcp_flags::ACK {
                        let cookie = u32::from_be_bytes(out[a.l4_off + 4..a.l4_off + 8].try_into().unwrap());
                        let key = cookie_key(&frame, &p, false);
                        reference.synauth.borrow_mut().cookies.insert(key, cookie);
                        let (src, dst) = (flow_addr(&key.src, matches!(p.addrs, Addrs::V6 { .. })), flow_addr(&key.dst, matches!(p.addrs, Addrs::V6 { .. })));
                        let mut f = Flow::with_addrs(src, dst, l4.dst_port).with_ports(l4.src_port, l4.dst_port);
                        f.seq = key.isn.wrapping_add(1);
                        issued.push((f, cookie));
                    }
                }
            }
            let want = reference.classify(&frame);
            let want_code = match (&want.answer, want.drop) {
                (Some(_), _) => XDP_TX,
                (None, true) => XDP_DROP,
                (None, false) => XDP_PASS,
            };
            assert_eq!(code, want_code, "seed {seed}, rule set {set}, packet {i} at {now} ns: kernel {code}, reference {want:?}\nframe: {}\nkernel out: {}\nrules: {:#?}", hex::encode(&frame), hex::encode(&out), rules.l4);
            if let Some(answer) = &want.answer {
                assert_eq!(hex::encode(&out), hex::encode(answer), "seed {seed}, rule set {set}, packet {i}: answers differ (kernel, then reference)\nframe: {}", hex::encode(&frame));
                if out[out.len() - 7] == tcp_flags::RST {
                    verified_total += 1;
                }
            }
            *outcomes.entry((want.reason, code)).or_default() += 1;
            expected.add(&want, frame.len());
        }
        let got = Counters::kernel(&dp, &rules, false);
        assert_eq!(got, expected, "seed {seed}, rule set {set}: counters differ (kernel, then reference)");
    }
    dp.set_frozen_clock(0).unwrap();
    eprintln!("outcomes (reason, XDP action): {outcomes:?}; {verified_total} sources verified");
    for want in [(Reason::SynAuth, XDP_TX), (Reason::SynAuth, XDP_DROP), (Reason::L4, XDP_DROP), (Reason::Pass, XDP_PASS)] {
        assert!(outcomes.contains_key(&want), "no packet reached {want:?}");
    }
    assert!(verified_total > 0, "no cookie ACK verified a source");
}

fn flow_addr(bytes: &[u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(*bytes)
    } else {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}
