//! The real XDP program (BPF_PROG_TEST_RUN) against the reference
//! classifier on generated rule sets and packets: every verdict and every
//! counter must be identical. A failure prints the seed and the packet.
//!
//! Replay a failure with `EDGEFILTER_SEED=<seed> cargo test --release -p
//! filter-agent --test differential`. `EDGEFILTER_PACKETS` overrides the
//! number of packets per rule set.
use std::collections::BTreeMap;

use aya::programs::{TestRun, TestRunOptions};
use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::compile::{compile_with, Limits};
use filter_common::maps::{Reason, TBL24_GROUP, TBL24_LONG_SHIFT};
use filter_common::reference::Reference;
use filter_common::rules::RuleSet;
use rand::{rngs::SmallRng, SeedableRng};

use edgefilter_tests::{counters::Counters, pktgen::{AddrPool, PacketGen}, rulegen};

const RULE_SETS: usize = 10;
/// The kernel refuses XDP test runs on frames shorter than an Ethernet
/// header; those are checked against the reference alone.
const MIN_TEST_RUN_LEN: usize = 14;

fn run_once(dp: &Dataplane, frame: &[u8]) -> u32 {
    let opts = TestRunOptions { data_in: Some(frame), ..Default::default() };
    dp.program().unwrap().test_run(opts).expect("BPF_PROG_TEST_RUN").return_value
}

fn verdict_name(code: u32) -> &'static str {
    match code {
        1 => "DROP",
        2 => "PASS",
        _ => "other",
    }
}

/// Every frame plus, for some, each of its truncations.
fn frames(gen: &mut PacketGen, count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let f = gen.frame();
        if out.len() % 499 == 0 {
            for cut in 0..f.len() {
                out.push(f[..cut].to_vec());
            }
        }
        out.push(f);
    }
    out.truncate(count);
    out
}

#[test]
fn xdp_program_matches_reference_classifier() {
    let seed = edgefilter_tests::seed();
    let per_set: usize = std::env::var("EDGEFILTER_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(12_000);
    eprintln!("differential seed {seed} ({RULE_SETS} rule sets x {per_set} packets)");
    let mut rng = SmallRng::seed_from_u64(seed);
    // One IPv4 group only: of the three documentation /24s the rules crowd,
    // one resolves through its group and the others through hash probes,
    // so both halves of the DIR-24-8 lookup are exercised.
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 10_000, prefixes_v6: 10_000, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    let mut total = 0usize;
    let mut verdicts: BTreeMap<(Reason, bool), usize> = BTreeMap::new();
    // How the IPv4 prefixes were laid out, to show both lookup paths ran.
    let (mut groups, mut probed_blocks) = (0usize, 0usize);
    for set in 0..RULE_SETS {
        let rules = rulegen::ruleset(&mut rng);
        let generation = dp.apply_rules(&rules).expect("apply rule set");
        let (compiled, tbl24) = compile_with(&rules, 0, Limits { v4_groups: 1, ..Limits::default() }).unwrap();
        groups += compiled.v4.groups.len();
        probed_blocks += tbl24.iter().filter(|&&e| e & TBL24_GROUP == 0 && e >> TBL24_LONG_SHIFT != 0).count();
        dp.reset_counters().unwrap();
        let reference = Reference::new(&rules);
        let mut gen = PacketGen::new(SmallRng::seed_from_u64(seed ^ (set as u64 + 1)), AddrPool::default());
        let frames = frames(&mut gen, per_set);
        let mut expected = Counters::default();
        for (i, frame) in frames.iter().enumerate() {
            let want = reference.classify(frame);
            *verdicts.entry((want.reason, want.drop)).or_default() += 1;
            if frame.len() < MIN_TEST_RUN_LEN {
                assert_eq!(want.reason, Reason::Malformed, "seed {seed}: short frame not malformed: {}", hex::encode(frame));
                continue;
            }
            let got = run_once(&dp, frame);
            let want_code = if want.drop { 1 } else { 2 };
            assert_eq!(
                got, want_code,
                "seed {seed}, rule set {set} (generation {generation}), packet {i}: kernel {} but reference {:?}\nframe: {}\nrules: {:#?}",
                verdict_name(got), want, hex::encode(frame), rules
            );
            expected.add(&want, frame.len());
            total += 1;
        }
        let got = Counters::kernel(&dp, &rules, false);
        if got != expected {
            let culprit = find_counter_culprit(&mut dp, &reference, &rules, &frames);
            panic!(
                "seed {seed}, rule set {set}: counters differ\nkernel:    {got:?}\nreference: {expected:?}\nfirst packet whose counters differ: {culprit}"
            );
        }
    }
    eprintln!("{total} packets through both classifiers; verdict mix: {verdicts:?}");
    eprintln!("IPv4 layout over all rule sets: {groups} /24 groups, {probed_blocks} blocks resolved by hash probes");
    assert!(groups > 0 && probed_blocks > 0, "both IPv4 lookup paths must be exercised");
    assert!(total >= 100_000 || std::env::var("EDGEFILTER_PACKETS").is_ok(), "CI must run at least 100,000 packets, ran {total}");
    // The generator must actually reach every decision, or the test proves little.
    // Domain rules and signatures have their own generators and tests
    // (differential_names.rs, differential_signatures.rs, differential_ratelimit.rs,
    // differential_synauth.rs).
    let own_test = [Reason::Domain, Reason::Signature, Reason::Banned, Reason::RateLimit, Reason::SynAuth];
    for reason in Reason::ALL.into_iter().filter(|r| !own_test.contains(r)) {
        assert!(verdicts.keys().any(|(r, _)| *r == reason), "no generated packet reached reason {reason:?}");
    }
}

/// Replays packets one at a time with fresh counters to name the first one
/// whose counters disagree.
fn find_counter_culprit(dp: &mut Dataplane, reference: &Reference<'_>, rules: &RuleSet, frames: &[Vec<u8>]) -> String {
    for frame in frames.iter().filter(|f| f.len() >= MIN_TEST_RUN_LEN) {
        dp.reset_counters().unwrap();
        run_once(dp, frame);
        let want = reference.classify(frame);
        let mut expected = Counters::default();
        expected.add(&want, frame.len());
        let got = Counters::kernel(dp, rules, false);
        if got != expected {
            return format!("{}\nkernel {got:?}\nreference {expected:?} ({want:?})", hex::encode(frame));
        }
    }
    "none when replayed one by one".into()
}
