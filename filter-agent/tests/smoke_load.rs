use aya::programs::{TestRun, TestRunOptions};
use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::rules::RuleSet;

#[test]
fn loads_and_runs() {
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 1000, prefixes_v6: 1000 }).expect("load");
    let rs = RuleSet::default();
    dp.apply(|g| filter_common::compile::compile(&rs, g)).unwrap();
    let mut pkt = vec![0u8; 64];
    pkt[12] = 0x08;
    pkt[13] = 0x06;
    let r = dp.program().unwrap().test_run(TestRunOptions { data_in: Some(&pkt), ..Default::default() }).unwrap();
    assert_eq!(r.return_value, 2);
}
