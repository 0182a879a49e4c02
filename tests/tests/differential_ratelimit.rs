//! Rate-limit rules of the real XDP program (BPF_PROG_TEST_RUN) against
//! the reference's token buckets, with controlled time: before each packet
//! the test sets the program's clock (`CONFIG.frozen_ns`, a test-only
//! override) and the reference's to the same instant, so both must agree
//! on every verdict and counter while flows go over and under their rates,
//! per rule, source prefix, destination and flow, in packets and bits,
//! with bursts, count-only limits, dry runs and fragment rules.
//!
//! Replay a failure with `EDGEFILTER_SEED=<seed>`; `EDGEFILTER_PACKETS`
//! overrides the number of packets per rule set.
use std::collections::BTreeMap;
use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::maps::Reason;
use filter_common::reference::ratelimit::Buckets;
use filter_common::reference::Reference;
use filter_common::rules::order_file::Category;
use filter_common::rules::ruleset::{RateLimitSpec, RatePer};
use filter_common::rules::{L4Slot, PortRange, RuleInfo, RuleSet, Scope, Settings};
use rand::{rngs::SmallRng, seq::IndexedRandom, Rng, SeedableRng};

use edgefilter_tests::counters::Counters;
use edgefilter_tests::l7gen::{self, Flow};

const RULE_SETS: usize = 6;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const SOURCES: [&str; 8] = ["198.18.1.1", "198.18.1.2", "198.18.2.7", "198.19.5.5", "2001:db8:1::1", "2001:db8:1::2", "2001:db8:2::9", "2001:db8:1:0:ff::1"];
const DESTS: [&str; 4] = ["198.19.0.10", "198.19.0.11", "2001:db8:c::10", "2001:db8:c::11"];

const V4_LENS: [u8; 8] = [32, 31, 24, 23, 22, 16, 9, 0];
const V6_LENS: [u8; 10] = [128, 127, 126, 80, 72, 65, 64, 63, 48, 0];

fn spec(rng: &mut SmallRng) -> RateLimitSpec {
    let per = match rng.random_range(0..4) {
        0 => RatePer::Rule,
        // Lengths on and off byte and word (64-bit) boundaries: the
        // kernel masks addresses a word at a time. SOURCES differ at
        // bits 6 and 7 (/23 groups 198.18.1.x apart from .2.x), 72-79
        // and 126-127.
        1 => RatePer::Source { v4: V4_LENS[rng.random_range(0..V4_LENS.len())], v6: V6_LENS[rng.random_range(0..V6_LENS.len())] },
        2 => RatePer::Destination,
        _ => RatePer::Flow,
    };
    let pps = rng.random_bool(0.8).then(|| rng.random_range(2..100));
    let bps = (pps.is_none() || rng.random_bool(0.3)).then(|| rng.random_range(5_000..200_000));
    RateLimitSpec {
        per,
        pps,
        bps,
        burst_packets: pps.map_or(0, |p| if rng.random_bool(0.3) { p } else { rng.random_range(1..10) }),
        burst_bits: bps.map_or(0, |b| if rng.random_bool(0.3) { b } else { rng.random_range(1_000..20_000) }),
        count_only: rng.random_bool(0.15),
    }
}

fn ruleset(rng: &mut SmallRng) -> RuleSet {
    let mut rs = RuleSet { settings: Settings::default(), ..RuleSet::default() };
    for i in 0..rng.random_range(1..8) {
        let id = i + 1;
        let dry_run = rng.random_bool(0.1);
        rs.rules.push(RuleInfo {
            id,
            order_id: format!("RL-{id}"),
            authority: "test".into(),
            category: Category::Attack,
            dry_run,
            file: "gen.toml".into(),
            line: id as usize,
            comment: None,
        });
        let protocol = [Some(17), Some(6), Some(1), None][rng.random_range(0..4)];
        let fragments = rng.random_bool(0.15);
        let ports = |rng: &mut SmallRng| -> Option<PortRange> {
            rng.random_bool(0.4).then(|| {
                let a = [53u16, 123, 80, 443, 11211][rng.random_range(0..5)];
                PortRange { min: a, max: a + rng.random_range(0..3) }
            })
        };
        let l4 = matches!(protocol, Some(6) | Some(17)) && !fragments;
        let destination = if rng.random_bool(0.3) {
            Scope::Nets(vec![DESTS.choose(rng).unwrap().parse::<IpAddr>().unwrap().into()])
        } else {
            Scope::Any
        };
        let slot = L4Slot {
            rule_id: id,
            dry_run,
            protocol,
            source: Scope::Any,
            destination,
            src_ports: if l4 { ports(rng) } else { None },
            dst_ports: if l4 { ports(rng) } else { None },
            tcp_flags: (protocol == Some(6) && !fragments && rng.random_bool(0.3)).then(|| filter_common::rules::ruleset::TcpFlags::parse("syn,!ack").unwrap()),
            icmp_type: None,
            icmp_code: None,
            rate_limit: rng.random_bool(0.8).then(|| spec(rng)),
            fragments,
            bucket: rs.l4.len() as u16,
            syn_auth: false,
        };
        // An entry listing several source ports: more slots of the same
        // rule, sharing the first one's buckets.
        let more = if l4 && rng.random_bool(0.3) { rng.random_range(1..3) } else { 0 };
        for _ in 0..more {
            let a = [53u16, 123, 11211, 40000][rng.random_range(0..4)];
            rs.l4.push(L4Slot { src_ports: Some(PortRange { min: a, max: a }), ..slot.clone() });
        }
        rs.l4.insert(rs.l4.len() - more, slot);
    }
    rs
}

fn frame(rng: &mut SmallRng) -> Vec<u8> {
    let v6 = rng.random_bool(0.5);
    let pick = |rng: &mut SmallRng, list: &[&str]| loop {
        let a: IpAddr = list.choose(rng).unwrap().parse().unwrap();
        if a.is_ipv6() == v6 {
            return a;
        }
    };
    let (src, dst) = (pick(rng, &SOURCES), pick(rng, &DESTS));
    let sport = [53u16, 123, 11211, 40000][rng.random_range(0..4)];
    let dport = [80u16, 443, 53, 124][rng.random_range(0..4)];
    let f = Flow::with_addrs(src, dst, dport).with_ports(sport, dport);
    let payload = vec![b'x'; rng.random_range(0..600)];
    match rng.random_range(0..10) {
        0..5 => l7gen::udp_frame(&f, &payload),
        5..8 => {
            let flags = if rng.random_bool(0.5) { l7gen::tcp_flags::SYN } else { l7gen::tcp_flags::ACK };
            l7gen::tcp_frame(&f, 1, flags, &payload)
        }
        8 => {
            // An ICMP echo request (ping), through the generic generator.
            let mut gen = edgefilter_tests::pktgen::PacketGen::new(SmallRng::seed_from_u64(rng.random()), edgefilter_tests::pktgen::AddrPool::default());
            gen.frame()
        }
        _ => l7gen::fragment_frame(&f, rng.random_bool(0.5), &payload),
    }
}

fn run_once(dp: &Dataplane, frame: &[u8]) -> u32 {
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() };
    dp.program().unwrap().test_run(opts).expect("BPF_PROG_TEST_RUN").return_value
}

#[test]
fn rate_limits_match_reference_with_controlled_time() {
    let seed = edgefilter_tests::seed();
    let per_set: usize = std::env::var("EDGEFILTER_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000);
    eprintln!("rate-limit differential seed {seed} ({RULE_SETS} rule sets x {per_set} packets)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 1_000, prefixes_v6: 1_000, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    let mut outcomes: BTreeMap<(Reason, u32), usize> = BTreeMap::new();
    // The clock only goes forward, across rule sets too; buckets persist
    // in the kernel (keys carry the generation and slot), so the
    // reference's buckets carry over as well.
    let mut now: u64 = 1_000_000_000;
    let mut buckets = Default::default();
    for set in 0..RULE_SETS {
        let rules = ruleset(&mut rng);
        let generation = dp.apply_rules(&rules).expect("apply rule set");
        dp.reset_counters().unwrap();
        let mut reference = Reference::new(&rules);
        reference.generation = generation as u8;
        *reference.buckets.borrow_mut() = std::mem::take(&mut buckets);
        let mut expected = Counters::default();
        for i in 0..per_set {
            // Bursts of back-to-back packets, then pauses.
            now += match rng.random_range(0..20) {
                0..14 => rng.random_range(0..100_000),
                14..19 => rng.random_range(0..5_000_000),
                _ => rng.random_range(0..1_000_000_000),
            };
            dp.set_frozen_clock(now).unwrap();
            reference.now_ns.set(now);
            let frame = frame(&mut rng);
            if frame.len() < 14 {
                // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet.
                continue;
            }
            let want = reference.classify(&frame);
            let code = run_once(&dp, &frame);
            let want_code = if want.drop { XDP_DROP } else { XDP_PASS };
            assert_eq!(
                code,
                want_code,
                "seed {seed}, rule set {set}, packet {i} at {now} ns: kernel {code} but reference {want:?}\nframe: {}\nrules: {:#?}",
                hex::encode(&frame),
                rules.l4
            );
            *outcomes.entry((want.reason, code)).or_default() += 1;
            expected.add(&want, frame.len());
        }
        let got = Counters::kernel(&dp, &rules, false);
        assert_eq!(got, expected, "seed {seed}, rule set {set}: counters differ (kernel, then reference)");
        buckets = reference.buckets.into_inner();
    }
    dp.set_frozen_clock(0).unwrap();
    eprintln!("outcomes (reason, XDP action): {outcomes:?}");
    for want in [(Reason::RateLimit, XDP_DROP), (Reason::Pass, XDP_PASS)] {
        assert!(outcomes.contains_key(&want), "no packet reached {want:?}");
    }
}

/// One UDP rule toward `DESTS[0]` limited per destination at `pps` (burst
/// one packet) and/or `bps` (burst `bps` bits).
fn one_limit(pps: Option<u64>, bps: Option<u64>) -> RuleSet {
    let mut rs = RuleSet { settings: Settings::default(), ..RuleSet::default() };
    rs.rules.push(RuleInfo {
        id: 1,
        order_id: "RL-MEMO".into(),
        authority: "test".into(),
        category: Category::Attack,
        dry_run: false,
        file: "memo.toml".into(),
        line: 1,
        comment: None,
    });
    rs.l4.push(L4Slot {
        rule_id: 1,
        dry_run: false,
        protocol: Some(17),
        source: Scope::Any,
        destination: Scope::Nets(vec![DESTS[0].parse::<IpAddr>().unwrap().into()]),
        src_ports: None,
        dst_ports: None,
        tcp_flags: None,
        icmp_type: None,
        icmp_code: None,
        rate_limit: Some(RateLimitSpec { per: RatePer::Destination, pps, bps, burst_packets: pps.map_or(0, |_| 1), burst_bits: bps.unwrap_or(0), count_only: false }),
        fragments: false,
        bucket: 0,
        syn_auth: false,
    });
    rs
}

/// Sends `frame` at `now` to both and checks they agree; returns whether
/// it passed.
fn agree(dp: &mut Dataplane, reference: &Reference, now: u64, frame: &[u8], what: &str) -> bool {
    dp.set_frozen_clock(now).unwrap();
    reference.now_ns.set(now);
    let want = reference.classify(frame);
    let code = run_once(dp, frame);
    assert_eq!(code, if want.drop { XDP_DROP } else { XDP_PASS }, "{what} at {now} ns: kernel {code}, reference {want:?}");
    !want.drop
}

fn reference_with<'a>(rules: &'a RuleSet, generation: u32, buckets: Buckets) -> Reference<'a> {
    let mut reference = Reference::new(rules);
    reference.buckets.replace(buckets);
    reference.generation = generation as u8;
    reference
}

/// The first instant after `from` at which the reference would pass
/// `frame` (binary search on copies of its buckets: credit only grows).
fn first_pass_after(rules: &RuleSet, generation: u32, buckets: &Buckets, from: u64, frame: &[u8]) -> u64 {
    let passes = |t: u64| {
        let r = reference_with(rules, generation, buckets.clone());
        r.now_ns.set(t);
        !r.classify(frame).drop
    };
    let (mut lo, mut hi) = (from, from + 10_000_000_000);
    assert!(passes(hi), "no credit ten seconds later");
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if passes(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Applies `rules` twice, so both generations hold them and the program
/// runs them in the generation returned.
fn apply_both(dp: &mut Dataplane, rules: &RuleSet) -> u32 {
    dp.apply_rules(rules).expect("apply");
    dp.apply_rules(rules).expect("apply")
}

/// The kernel remembers, per CPU, until when an empty bucket cannot pass
/// anything, and drops without looking at the bucket until then. The
/// first packet a refill lets through must still pass, to the nanosecond
/// (by packet credit, by bit credit, by both), and a later rule set that
/// gives the same slot and key a faster rate must not inherit the wait.
#[test]
fn over_rate_memo_ends_exactly_when_credit_is_due() {
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 100, prefixes_v6: 100, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    let f = Flow::with_addrs(SOURCES[0].parse().unwrap(), DESTS[0].parse().unwrap(), 4000).with_ports(40000, 4000);
    let frame = l7gen::udp_frame(&f, b"memo");
    let mut now: u64 = 1_000_000_000;
    let mut buckets = Buckets::default();
    for (pps, bps) in [(Some(3), None), (None, Some(7_000)), (Some(3), Some(7_000))] {
        let rules = one_limit(pps, bps);
        let generation = apply_both(&mut dp, &rules);
        let reference = reference_with(&rules, generation, std::mem::take(&mut buckets));
        now += 10_000_000_000;
        let mut passed = 0;
        while agree(&mut dp, &reference, now, &frame, "spending the burst") {
            passed += 1;
            assert!(passed < 100_000, "the burst never ran out");
        }
        let due = first_pass_after(&rules, generation, &reference.buckets.borrow(), now, &frame);
        let what = format!("pps {pps:?} bps {bps:?}: {} ns after the bucket ran dry", due - now);
        assert!(!agree(&mut dp, &reference, due - 1, &frame, &what), "{what}: passed a nanosecond early");
        assert!(agree(&mut dp, &reference, due, &frame, &what), "{what}: dropped when credit was due");
        now = due;
        buckets = reference.buckets.into_inner();
    }
    // One packet a second, spent; then the same slot at 1,000 a second:
    // a millisecond later there is a token again.
    let slow = one_limit(Some(1), None);
    let generation = apply_both(&mut dp, &slow);
    let reference = reference_with(&slow, generation, std::mem::take(&mut buckets));
    now += 10_000_000_000;
    while agree(&mut dp, &reference, now, &frame, "spending the slow burst") {}
    let buckets = reference.buckets.into_inner();
    let fast = one_limit(Some(1_000), None);
    assert_eq!(apply_both(&mut dp, &fast), generation, "the same generation, slot and key");
    let reference = reference_with(&fast, generation, buckets);
    assert!(agree(&mut dp, &reference, now + 1_000_000, &frame, "at the faster rate"), "the faster rate inherited the slower rate's wait");
    dp.set_frozen_clock(0).unwrap();
}

/// On the kernel's own clock (coarse, read once per tick per CPU), a flood
/// over its rate gets the burst plus the rate over the time it ran:
/// within 5 % and two ticks of the rate (a tick is at most 10 ms).
#[test]
fn kernel_clock_passes_the_rate() {
    const PPS: u64 = 2_000;
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 100, prefixes_v6: 100, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    // A second's burst: a pause of the flood (this thread descheduled)
    // shorter than that loses no credit, so what passes is the burst plus
    // the rate over the whole run however the flood was paced.
    let mut rules = one_limit(Some(PPS), None);
    if let Some(rl) = rules.l4[0].rate_limit.as_mut() {
        rl.burst_packets = PPS;
    }
    dp.apply_rules(&rules).expect("apply");
    dp.set_frozen_clock(0).unwrap();
    dp.reset_counters().unwrap();
    let f = Flow::with_addrs(SOURCES[1].parse().unwrap(), DESTS[0].parse().unwrap(), 4000).with_ports(40000, 4000);
    let frame = l7gen::udp_frame(&f, b"clock");
    let mut out = vec![0u8; frame.len() + 256];
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(1_500) {
        let opts = TestRunOptions { data_in: Some(&frame), data_out: Some(&mut out), repeat: 20_000, ..Default::default() };
        dp.program().unwrap().test_run(opts).expect("BPF_PROG_TEST_RUN");
    }
    let secs = started.elapsed().as_secs_f64();
    let totals = dp.reason_totals().unwrap();
    let count = |reason: Reason, dropped: bool| -> u64 { totals.iter().filter(|((_, r, d), _)| *r == reason && *d == dropped).map(|(_, t)| t.packets).sum() };
    let (passed, limited) = (count(Reason::Pass, false), count(Reason::RateLimit, true));
    let burst = PPS;
    let expected = burst as f64 + PPS as f64 * secs;
    let slack = expected * 0.05 + 2.0 * PPS as f64 * 0.010;
    eprintln!("{secs:.3} s: passed {passed}, rate-limited {limited}, expected {expected:.0} ± {slack:.0}");
    assert!(limited > 10 * passed, "the flood was not over its rate: {limited} limited, {passed} passed");
    assert!((passed as f64 - expected).abs() <= slack, "passed {passed} in {secs:.3} s at {PPS} pps (burst {burst}): expected {expected:.0} ± {slack:.0}");
}

/// A per-source limit keeps one bucket per source prefix: for every
/// prefix length, two sources that differ only after the prefix share a
/// bucket, and two that differ in its last bit do not (the kernel masks
/// addresses a word at a time, so lengths on and off byte and 64-bit
/// boundaries all count). Sources stay inside 198.18.0.0/15 and
/// 2001:db8::/32: for lengths shorter than those, only the first check
/// is made, with a bit inside the documentation range.
#[test]
fn source_buckets_end_at_the_prefix_length() {
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 100, prefixes_v6: 100, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    let flip = |a: IpAddr, bit: u32| -> IpAddr {
        match a {
            IpAddr::V4(v) => std::net::Ipv4Addr::from(u32::from(v) ^ (1 << (31 - bit))).into(),
            IpAddr::V6(v) => std::net::Ipv6Addr::from(u128::from(v) ^ (1 << (127 - bit))).into(),
        }
    };
    let mut now: u64 = 1_000_000_000;
    let mut checked = 0;
    for (base, dst, max, fixed) in [("198.18.170.85", DESTS[0], 32u32, 15u32), ("2001:db8:5555:aaaa:5555:aaaa:5555:aaaa", DESTS[2], 128, 32)] {
        let base: IpAddr = base.parse().unwrap();
        for len in 0..=max {
            let mut rules = one_limit(Some(20), None);
            let l4 = &mut rules.l4[0];
            l4.destination = Scope::Nets(vec![dst.parse::<IpAddr>().unwrap().into()]);
            let spec = l4.rate_limit.as_mut().unwrap();
            spec.per = if max == 32 { RatePer::Source { v4: len as u8, v6: 128 } } else { RatePer::Source { v4: 32, v6: len as u8 } };
            let generation = apply_both(&mut dp, &rules);
            let reference = reference_with(&rules, generation, Buckets::default());
            // Far from the last length's packets: every bucket is full.
            now += 10_000_000_000;
            let frame = |src: IpAddr| l7gen::udp_frame(&Flow::with_addrs(src, dst.parse().unwrap(), 4000).with_ports(40000, 4000), b"prefix");
            let what = |src: IpAddr| format!("/{len}, source {src}");
            // The bucket holds one packet (20 pps, 50 ms).
            assert!(agree(&mut dp, &reference, now, &frame(base), &what(base)), "/{len}: the first packet of {base} dropped");
            // After the prefix (or, for a prefix shorter than the range,
            // the last bit): the same bucket, now empty.
            if len < max {
                let outside = flip(base, len.max(fixed));
                assert!(!agree(&mut dp, &reference, now, &frame(outside), &what(outside)), "/{len}: {outside} got a bucket of its own");
            }
            // The prefix's last bit: another bucket, full.
            if len > fixed {
                let inside = flip(base, len - 1);
                assert!(agree(&mut dp, &reference, now, &frame(inside), &what(inside)), "/{len}: {inside} shares {base}'s bucket");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, (32 - 15) + (128 - 32));
}
