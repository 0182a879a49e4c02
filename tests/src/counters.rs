//! Counters the differential tests compare: what the kernel counted, read
//! from the maps, against what the reference says it should have.
use std::collections::BTreeMap;

use filter_agent::dataplane::{Dataplane, Totals};
use filter_common::maps::Reason;
use filter_common::reference::Decision;
use filter_common::rules::RuleSet;

#[derive(Default, PartialEq, Eq, Debug)]
pub struct Counters {
    pub reasons: BTreeMap<(Reason, bool), Totals>,
    pub rules: BTreeMap<u32, Totals>,
    /// The domain stage's own counters (`maps::l7`), when compared.
    pub l7: BTreeMap<&'static str, u64>,
}

impl Counters {
    /// Counts one frame as the reference decided it.
    pub fn add(&mut self, d: &Decision, len: usize) {
        let t = self.reasons.entry((d.reason, d.drop)).or_default();
        t.packets += 1;
        t.bytes += len as u64;
        for &id in &d.hits {
            let t = self.rules.entry(id).or_default();
            t.packets += 1;
            t.bytes += len as u64;
        }
    }

    /// What the kernel counted (non-zero counters only); the domain stage's
    /// counters with `l7`.
    pub fn kernel(dp: &Dataplane, rules: &RuleSet, l7: bool) -> Counters {
        let reasons = dp.reason_totals().unwrap().into_iter().filter(|(_, t)| t.packets != 0).map(|((_, r, d), t)| ((r, d), t)).collect();
        let rules = dp
            .rule_totals(rules.max_rule_id())
            .unwrap()
            .into_iter()
            .enumerate()
            .filter(|(_, t)| t.packets != 0)
            .map(|(i, t)| (i as u32 + 1, t))
            .collect();
        let l7 = if l7 { dp.l7_totals().unwrap().into_iter().filter(|(_, v)| *v != 0).collect() } else { BTreeMap::new() };
        Counters { reasons, rules, l7 }
    }
}
