use aya::programs::{TestRun, TestRunOptions};
use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::rules::order_file::Category;
use filter_common::rules::ruleset::{RateLimitSpec, RatePer};
use filter_common::rules::{L4Slot, PortRange, RuleInfo, RuleSet, Scope};
use edgefilter_tests::l7gen::{self, Flow};

fn slot(sport: u16, rl: bool) -> L4Slot {
    L4Slot { rule_id: 1, dry_run: false, protocol: Some(17), source: Scope::Any, destination: Scope::Nets(vec!["198.19.1.0/24".parse().unwrap()]), src_ports: Some(PortRange { min: sport, max: sport }), dst_ports: None, tcp_flags: None, icmp_type: None, icmp_code: None,
        rate_limit: rl.then_some(RateLimitSpec { per: RatePer::Destination, pps: Some(1_000_000_000), bps: None, burst_packets: 1_000_000_000, burst_bits: 0, count_only: false }), fragments: false, bucket: 0, syn_auth: false }
}

#[test]
fn prof() {
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 100, prefixes_v6: 100, v4_groups: 1, ..Capacity::default() }).unwrap();
    let f = Flow::with_addrs("198.18.0.9".parse().unwrap(), "198.19.1.10".parse().unwrap(), 4000).with_ports(123, 4000);
    let frame = l7gen::udp_frame(&f, &[0u8; 18]);
    let info = RuleInfo { id: 1, order_id: "O".into(), authority: "t".into(), category: Category::Attack, dry_run: false, file: "f".into(), line: 1, comment: None };
    let mut l = RuleSet::default();
    l.rules.push(info);
    l.l4.push(slot(123, std::env::var("RL").is_ok()));
    if std::env::var("PROTECT").is_ok() { l.settings.protect = vec![("g".into(), vec!["198.19.1.0/24".parse().unwrap()])]; }
    dp.apply_rules(&l).unwrap();
    let t = std::time::Instant::now();
    while t.elapsed().as_secs() < 6 {
        let opts = TestRunOptions { data_in: Some(&frame), repeat: 1_000_000, ..Default::default() };
        let r = dp.program().unwrap().test_run(opts).unwrap();
        eprintln!("{} ns", r.duration.as_nanos());
    }
}
