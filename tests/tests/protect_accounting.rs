//! Traffic accounting toward protected prefixes (`PROTECT_STATS`,
//! `REFLECT_STATS`) in the real XDP program (BPF_PROG_TEST_RUN): every
//! packet is counted under its protocol, and UDP from a reflection source
//! port under that port's slot, exactly.
//!
//! The program skips the reflection-port comparisons when a 256-bit
//! filter (`GenerationMeta::reflect_port_filter`, bit `port % 256`) says
//! the port cannot be one; the ports sent here include ports that share a
//! bit with a reflection port without being one (123 + 256 = 379), so the
//! filter's false positives must still end up uncounted.
use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::maps::MAX_REFLECT_PORTS;
use filter_common::rules::{RuleSet, Settings};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use edgefilter_tests::l7gen::{self, Flow};

const PROTECTED: [&str; 2] = ["198.19.0.0/24", "2001:db8:c::/64"];
const DESTS: [&str; 3] = ["198.19.0.10", "2001:db8:c::10", "198.19.9.9"];
const REFLECT: [u16; 5] = [53, 123, 1900, 11211, 65535];
/// Not reflection ports: some share a filter bit with one (379 = 123 +
/// 256, 309 = 53 + 256, 11467 = 11211 + 256, 255 = 65535 % 256), some do
/// not.
const OTHER: [u16; 6] = [379, 309, 11467, 255, 40000, 1];

#[test]
fn reflection_ports_are_counted_exactly() {
    let seed = edgefilter_tests::seed();
    eprintln!("protect accounting seed {seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let settings = Settings {
        protect: vec![("customers".into(), PROTECTED.iter().map(|p| p.parse().unwrap()).collect())],
        reflection_ports: REFLECT.to_vec(),
        ..Settings::default()
    };
    let rules = RuleSet { settings, ..RuleSet::default() };
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 1_000, prefixes_v6: 1_000, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    dp.apply_rules(&rules).expect("apply rules");
    dp.reset_counters().unwrap();

    let mut want_udp = (0u64, 0u64);
    let mut want_tcp = 0u64;
    let mut want_reflected = (0u64, 0u64);
    let mut want_slots = [(0u64, 0u64); MAX_REFLECT_PORTS];
    for i in 0..2_000 {
        let dst: IpAddr = DESTS[rng.random_range(0..DESTS.len())].parse().unwrap();
        let src: IpAddr = if dst.is_ipv6() { "2001:db8:1::1".parse().unwrap() } else { "198.18.1.1".parse().unwrap() };
        let sport = if rng.random_bool(0.5) { REFLECT[rng.random_range(0..REFLECT.len())] } else { OTHER[rng.random_range(0..OTHER.len())] };
        let f = Flow::with_addrs(src, dst, 4000).with_ports(sport, 4000);
        let payload = vec![b'x'; rng.random_range(0..300)];
        let tcp = rng.random_bool(0.2);
        let frame = if tcp { l7gen::tcp_frame(&f, 1, l7gen::tcp_flags::ACK, &payload) } else { l7gen::udp_frame(&f, &payload) };
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions { data_in: Some(&frame), data_out: Some(&mut out), ..Default::default() };
        let code = dp.program().unwrap().test_run(opts).expect("BPF_PROG_TEST_RUN").return_value;
        assert_eq!(code, 2, "packet {i} (seed {seed}) was not passed");
        let protected = DESTS[..2].contains(&dst.to_string().as_str());
        if !protected {
            continue;
        }
        let len = frame.len() as u64;
        if tcp {
            want_tcp += 1;
            continue;
        }
        want_udp = (want_udp.0 + 1, want_udp.1 + len);
        if let Some(slot) = REFLECT.iter().position(|&p| p == sport) {
            want_reflected = (want_reflected.0 + 1, want_reflected.1 + len);
            want_slots[slot] = (want_slots[slot].0 + 1, want_slots[slot].1 + len);
        }
    }
    let got = &dp.protect_totals(1).unwrap()[0];
    assert_eq!((got.packets[1], got.bytes[1]), want_udp, "UDP toward the group (seed {seed})");
    assert_eq!(got.packets[0], want_tcp, "TCP toward the group (seed {seed})");
    assert_eq!((got.reflected, got.reflected_bytes), want_reflected, "reflected (seed {seed})");
    let slots = &dp.reflect_totals(1).unwrap()[0];
    for (slot, want) in want_slots.iter().enumerate() {
        assert_eq!((slots[slot].packets, slots[slot].bytes), *want, "reflection slot {slot} (seed {seed})");
    }
    assert!(want_reflected.0 > 0 && want_udp.0 > want_reflected.0, "the sample covers both kinds of UDP");
}
