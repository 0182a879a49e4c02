//! Volumetric attack detection: what FastNetMon does, enforced by us.
//!
//! The kernel counts every packet toward a protected prefix group
//! (`[[protect]]` in agent.toml; the destination's most specific protected
//! prefix decides the group) in `PROTECT_STATS`, whatever its verdict, so
//! a mitigation in force does not hide the attack from detection. Once a
//! second the agent reads those counters (summed over CPUs) and turns them
//! into per-group [`Rates`]. Each `[[ddos_policy]]` watches one rate of one
//! group: above its threshold for `for_seconds` consecutive samples, the
//! agent installs the policy's mitigation as an order of its own
//! (`auto:<policy>:<group>`, authority `auto:<policy>`, category attack)
//! through the normal apply path, so it gets rule ids, per-order counters
//! and provenance like any order; at or below the threshold for
//! `hold_down_seconds` consecutive samples, it is withdrawn. Both are
//! audited (`mitigation-start`, `mitigation-stop`).
//!
//! Mitigations live in the agent's memory only: an agent that restarts
//! starts clean (its first apply removes a mitigation a previous agent left
//! in the kernel) and installs it again if the attack is still going on
//! after `for_seconds`.
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use filter_common::maps::ProtectStats;
use filter_common::rules::order_file::{Entry, EntryKind, L4Entry};
use filter_common::rules::{Action, Category, Order, Scope};
use ipnet::IpNet;
use serde::Serialize;

/// Traffic toward one protected prefix group, per second, over the last
/// sampling interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    pub pps: f64,
    pub bps: f64,
    pub tcp_pps: f64,
    pub udp_pps: f64,
    pub icmp_pps: f64,
    /// TCP SYN without ACK.
    pub syn_pps: f64,
    /// IP fragments, first and non-first.
    pub fragment_pps: f64,
    /// UDP from a reflection source port (`reflection_ports`).
    pub reflection_pps: f64,
    pub reflection_bps: f64,
}

impl Rates {
    /// The rates from totals `old` to totals `new`, `seconds` apart. A
    /// counter that went backwards (maps recreated) counts as zero.
    pub fn between(old: &ProtectStats, new: &ProtectStats, seconds: f64) -> Rates {
        if seconds <= 0.0 {
            return Rates::default();
        }
        let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
        let packets: Vec<f64> = (0..4).map(|i| d(old.packets[i], new.packets[i])).collect();
        let bytes: f64 = (0..4).map(|i| d(old.bytes[i], new.bytes[i])).sum();
        Rates {
            pps: packets.iter().sum(),
            bps: bytes * 8.0,
            tcp_pps: packets[0],
            udp_pps: packets[1],
            icmp_pps: packets[2],
            syn_pps: d(old.syn, new.syn),
            fragment_pps: d(old.fragments, new.fragments),
            reflection_pps: d(old.reflected, new.reflected),
            reflection_bps: d(old.reflected_bytes, new.reflected_bytes) * 8.0,
        }
    }
}

/// The rate a policy watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Pps,
    Bps,
    TcpPps,
    UdpPps,
    IcmpPps,
    SynPps,
    FragmentPps,
    ReflectionPps,
    ReflectionBps,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::Pps,
        Metric::Bps,
        Metric::TcpPps,
        Metric::UdpPps,
        Metric::IcmpPps,
        Metric::SynPps,
        Metric::FragmentPps,
        Metric::ReflectionPps,
        Metric::ReflectionBps,
    ];

    /// The name in agent.toml (`metric = "..."`) and in the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Pps => "pps",
            Metric::Bps => "bps",
            Metric::TcpPps => "tcp_pps",
            Metric::UdpPps => "udp_pps",
            Metric::IcmpPps => "icmp_pps",
            Metric::SynPps => "syn_pps",
            Metric::FragmentPps => "fragment_pps",
            Metric::ReflectionPps => "reflection_pps",
            Metric::ReflectionBps => "reflection_bps",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn of(self, r: &Rates) -> f64 {
        match self {
            Metric::Pps => r.pps,
            Metric::Bps => r.bps,
            Metric::TcpPps => r.tcp_pps,
            Metric::UdpPps => r.udp_pps,
            Metric::IcmpPps => r.icmp_pps,
            Metric::SynPps => r.syn_pps,
            Metric::FragmentPps => r.fragment_pps,
            Metric::ReflectionPps => r.reflection_pps,
            Metric::ReflectionBps => r.reflection_bps,
        }
    }

    /// Bits per second (else packets per second).
    pub fn is_bits(self) -> bool {
        matches!(self, Metric::Bps | Metric::ReflectionBps)
    }
}

/// A `[[ddos_policy]]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub name: String,
    /// The `[[protect]]` group's name and its index (`PROTECT_STATS` slot).
    pub group: String,
    pub group_index: usize,
    pub metric: Metric,
    pub threshold: f64,
    /// Consecutive one-second samples above the threshold to start.
    pub for_seconds: u32,
    /// Consecutive samples at or below the threshold to stop.
    pub hold_down_seconds: u32,
    /// The mitigation: an L4 entry whose `destination` is the group's prefixes.
    pub mitigation: L4Entry,
}

impl Policy {
    /// The mitigation's order id: `auto:<policy>:<group>`.
    pub fn order_id(&self) -> String {
        format!("auto:{}:{}", self.name, self.group)
    }

    /// Its authority (provenance): `auto:<policy>`.
    pub fn authority(&self) -> String {
        format!("auto:{}", self.name)
    }

    /// The order that mitigates the attack, in force from `now` until the
    /// agent withdraws it.
    pub fn order(&self, now: DateTime<Utc>, value: f64) -> Order {
        Order {
            id: self.order_id(),
            authority: self.authority(),
            reference: format!(
                "ddos_policy {}: {} of {} at {} > {} for {} s",
                self.name,
                self.metric.name(),
                self.group,
                value.round(),
                self.threshold,
                self.for_seconds
            ),
            category: Category::Attack,
            received: now,
            effective: now,
            expires: Utc.with_ymd_and_hms(9999, 1, 1, 0, 0, 0).unwrap(),
            action: Action::Drop,
            entries: vec![Entry {
                line: 1,
                comment: Some(format!("automatic mitigation of ddos_policy {}", self.name)),
                kind: EntryKind::L4(self.mitigation.clone()),
            }],
            file: std::path::PathBuf::from(format!("agent.toml ddos_policy {}", self.name)),
            line: 1,
        }
    }
}

/// Keys of a mitigation table that make no sense there.
const NOT_FOR_MITIGATIONS: [(&str, &str); 5] = [
    ("destination", "filled in with the prefix group's prefixes; leave it out"),
    ("prefixes", "a mitigation is an L4 entry (protocol, ports, rate_limit), not a prefix block"),
    ("direction", "a mitigation is an L4 entry (protocol, ports, rate_limit), not a prefix block"),
    ("domains", "a mitigation is an L4 entry (protocol, ports, rate_limit), not a domain block"),
    ("dns_answer", "a mitigation is an L4 entry (protocol, ports, rate_limit), not a domain block"),
];

/// Parses a policy's `mitigation` table as an order file's L4 entry (the
/// order-file parser does the work, on a one-entry order made of the
/// table's keys, one per line), with `destination` set to `prefixes`.
/// Errors are `(key path below the table, message)`, e.g.
/// `("rate_limit.pps", "0 is not a whole number in 1..=...")`.
pub fn parse_mitigation(table: &toml::Table, prefixes: &[IpNet]) -> Result<L4Entry, Vec<(String, String)>> {
    let mut errors = Vec::new();
    for (key, why) in NOT_FOR_MITIGATIONS {
        if table.contains_key(key) {
            errors.push((key.to_string(), why.to_string()));
        }
    }
    if !table.contains_key("protocol") {
        errors.push(("protocol".into(), "missing: the mitigation is an L4 entry (protocol = \"udp\", ...)".into()));
    }
    for key in table.keys() {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            errors.push((key.clone(), "unknown key".into()));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut text = String::from(
        "id = \"auto:check\"\nauthority = \"auto\"\nreference = \"mitigation\"\ncategory = \"attack\"\n\
         received = 2026-01-01T00:00:00Z\neffective = 2026-01-01T00:00:00Z\nexpires = 2099-01-01T00:00:00Z\naction = \"drop\"\n[[entry]]\n",
    );
    let first_line = text.lines().count() + 1;
    let keys: Vec<&String> = table.keys().collect();
    for (key, value) in table {
        text.push_str(&format!("{key} = {value}\n"));
    }
    let key_at = |line: usize| line.checked_sub(first_line).and_then(|i| keys.get(i)).map(|k| k.as_str());
    match filter_common::rules::parse_order(std::path::Path::new("mitigation"), &text) {
        Ok(order) => match order.entries.into_iter().next().map(|e| e.kind) {
            Some(EntryKind::L4(mut l4)) => {
                l4.destination = Scope::Nets(prefixes.to_vec());
                Ok(l4)
            }
            _ => Err(vec![(String::new(), "not an L4 entry".into())]),
        },
        Err(e) => Err(e
            .0
            .into_iter()
            .map(|e| match key_at(e.line) {
                // rate_limit's own messages name the key already.
                Some(key) if e.message.strip_prefix(key).is_some_and(|rest| rest.starts_with('.') || rest.starts_with(':')) => (String::new(), e.message),
                Some(key) => (key.to_string(), e.message),
                None => (String::new(), e.message),
            })
            .collect()),
    }
}

/// A change a policy asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Start,
    Stop,
}

/// One policy's detection state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyState {
    /// The mitigation is in force.
    pub active: bool,
    /// Consecutive samples above the threshold while idle.
    pub above: u32,
    /// Consecutive samples at or below the threshold while active.
    pub below: u32,
    /// The watched rate at the last sample.
    pub value: f64,
    /// The highest rate seen while the current mitigation is in force.
    pub peak: f64,
    /// When the current mitigation started.
    pub since: Option<DateTime<Utc>>,
    /// Mitigations started since the agent started.
    pub started: u64,
    /// Why the last start or stop could not be applied (cleared by the
    /// next success).
    pub error: Option<String>,
}

impl PolicyState {
    /// One sample of the watched rate. Starts after `for_seconds`
    /// consecutive samples above `threshold` (at least one); stops after
    /// `hold_down_seconds` consecutive samples at or below it (at least
    /// one). A sample on the other side resets the count, so a rate
    /// flapping around the threshold neither starts nor stops anything
    /// until it settles.
    pub fn step(&mut self, value: f64, threshold: f64, for_seconds: u32, hold_down_seconds: u32) -> Option<Transition> {
        self.value = value;
        let exceeded = value > threshold;
        if self.active {
            self.peak = self.peak.max(value);
            if exceeded {
                self.below = 0;
                return None;
            }
            self.below += 1;
            if self.below >= hold_down_seconds.max(1) {
                self.active = false;
                self.below = 0;
                self.above = 0;
                return Some(Transition::Stop);
            }
            return None;
        }
        if !exceeded {
            self.above = 0;
            return None;
        }
        self.above += 1;
        if self.above >= for_seconds.max(1) {
            self.active = true;
            self.above = 0;
            self.below = 0;
            self.peak = value;
            return Some(Transition::Start);
        }
        None
    }
}

/// Per-group rates and every policy's state, fed once a second.
#[derive(Clone, Debug, Default)]
pub struct Detector {
    pub groups: Vec<String>,
    pub policies: Vec<Policy>,
    pub states: Vec<PolicyState>,
    /// The rates of each group over the last interval (`None` before the
    /// second sample).
    pub rates: Vec<Option<Rates>>,
    /// Seconds the last rates cover.
    pub interval: f64,
    last: Option<(Instant, Vec<ProtectStats>)>,
}

impl Detector {
    pub fn new(groups: Vec<String>, policies: Vec<Policy>) -> Detector {
        Detector { states: vec![PolicyState::default(); policies.len()], rates: vec![None; groups.len()], groups, policies, interval: 0.0, last: None }
    }

    /// Feeds the totals read at `at` (one per group); returns the policies
    /// (index) whose mitigation must start or stop, their state already
    /// updated. The first reading only sets the baseline.
    pub fn observe(&mut self, at: Instant, totals: Vec<ProtectStats>) -> Vec<(usize, Transition)> {
        let Some((then, old)) = self.last.replace((at, totals)) else { return Vec::new() };
        let seconds = at.saturating_duration_since(then).as_secs_f64();
        let new = &self.last.as_ref().expect("just set").1;
        self.interval = seconds;
        for (g, rate) in self.rates.iter_mut().enumerate() {
            *rate = match (old.get(g), new.get(g)) {
                (Some(o), Some(n)) => Some(Rates::between(o, n, seconds)),
                _ => None,
            };
        }
        let mut out = Vec::new();
        for (i, (p, st)) in self.policies.iter().zip(&mut self.states).enumerate() {
            let value = self.rates.get(p.group_index).copied().flatten().map_or(0.0, |r| p.metric.of(&r));
            if let Some(t) = st.step(value, p.threshold, p.for_seconds, p.hold_down_seconds) {
                out.push((i, t));
            }
        }
        out
    }
}

/// `1234567.0` as `1.23M` (packets) or bits with a unit.
pub fn si(x: f64) -> String {
    let (v, p) = match x.abs() {
        a if a >= 1e12 => (x / 1e12, "T"),
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => return format!("{x:.0}"),
    };
    if v.abs() >= 100.0 {
        format!("{v:.0}{p}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}{p}")
    } else {
        format!("{v:.2}{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `values` through a fresh state; the transitions at each sample.
    fn run(values: &[f64], threshold: f64, for_s: u32, hold: u32) -> Vec<Option<Transition>> {
        let mut st = PolicyState::default();
        values.iter().map(|&v| st.step(v, threshold, for_s, hold)).collect()
    }

    use Transition::{Start, Stop};

    #[test]
    fn starts_after_for_seconds_above_the_threshold() {
        // 3 consecutive samples above 100: starts at the third.
        assert_eq!(run(&[50.0, 150.0, 150.0, 150.0, 150.0], 100.0, 3, 5), [None, None, None, Some(Start), None]);
        // At the threshold is not above it.
        assert_eq!(run(&[100.0; 6], 100.0, 1, 1), [None; 6]);
        // for_seconds 0 behaves as 1: the first sample above starts.
        assert_eq!(run(&[101.0], 100.0, 0, 1), [Some(Start)]);
        assert_eq!(run(&[101.0], 100.0, 1, 1), [Some(Start)]);
    }

    #[test]
    fn stops_after_hold_down_below_the_threshold() {
        let v = [200.0, 200.0, 10.0, 10.0, 10.0, 10.0, 200.0];
        assert_eq!(run(&v, 100.0, 2, 3), [None, Some(Start), None, None, Some(Stop), None, None]);
        // Hold-down 0 stops at the first sample at or below.
        assert_eq!(run(&[200.0, 100.0], 100.0, 1, 0), [Some(Start), Some(Stop)]);
        // After a stop, starting again needs for_seconds anew.
        let v = [200.0, 0.0, 200.0, 200.0];
        assert_eq!(run(&v, 100.0, 2, 1), [None, None, None, Some(Start)]);
        let v = [200.0, 200.0, 0.0, 200.0, 200.0];
        assert_eq!(run(&v, 100.0, 2, 1), [None, Some(Start), Some(Stop), None, Some(Start)]);
    }

    #[test]
    fn flapping_neither_starts_nor_stops() {
        // Idle: never for_seconds in a row above.
        let flap: Vec<f64> = (0..20).map(|i| if i % 2 == 0 { 500.0 } else { 5.0 }).collect();
        assert!(run(&flap, 100.0, 2, 3).iter().all(Option::is_none));
        // Active: every sample above resets the hold-down, so it holds.
        let mut st = PolicyState::default();
        assert_eq!(st.step(500.0, 100.0, 1, 3), Some(Start));
        for v in [5.0, 5.0, 500.0, 5.0, 5.0, 500.0, 5.0, 5.0, 900.0] {
            assert_eq!(st.step(v, 100.0, 1, 3), None, "{st:?}");
        }
        assert!(st.active);
        assert_eq!(st.peak, 900.0);
        assert_eq!((st.step(5.0, 100.0, 1, 3), st.step(5.0, 100.0, 1, 3), st.step(5.0, 100.0, 1, 3)), (None, None, Some(Stop)));
        assert!(!st.active);
    }

    fn stats(udp: u64, reflected: u64, bytes: u64) -> ProtectStats {
        ProtectStats { packets: [10, udp, 1, 0], bytes: [1000, bytes, 64, 0], syn: 5, fragments: 2, reflected, reflected_bytes: bytes }
    }

    #[test]
    fn rates_are_per_second_and_survive_counter_resets() {
        let r = Rates::between(&stats(100, 50, 10_000), &stats(2100, 1050, 30_000), 2.0);
        assert_eq!(r.udp_pps, 1000.0);
        assert_eq!(r.pps, 1000.0);
        assert_eq!(r.reflection_pps, 500.0);
        assert_eq!(r.reflection_bps, 80_000.0);
        assert_eq!(r.bps, 80_000.0);
        assert_eq!((r.tcp_pps, r.syn_pps, r.fragment_pps), (0.0, 0.0, 0.0));
        // Maps recreated: counters went backwards, no negative rates.
        let r = Rates::between(&stats(2100, 1050, 30_000), &stats(100, 50, 10_000), 1.0);
        assert_eq!(r, Rates::default());
        assert_eq!(Rates::between(&stats(0, 0, 0), &stats(9, 9, 9), 0.0), Rates::default());
    }

    fn policy(group_index: usize, metric: Metric, threshold: f64) -> Policy {
        Policy {
            name: format!("p{group_index}"),
            group: format!("g{group_index}"),
            group_index,
            metric,
            threshold,
            for_seconds: 2,
            hold_down_seconds: 2,
            mitigation: L4Entry {
                protocol: 17,
                source: Scope::Any,
                destination: Scope::Any,
                source_ports: Vec::new(),
                destination_ports: Vec::new(),
                tcp_flags: None,
                icmp_type: None,
                icmp_code: None,
                rate_limit: None,
                fragments: false,
                syn_auth: false,
            },
        }
    }

    #[test]
    fn detector_watches_each_policy_on_its_group() {
        let mut d = Detector::new(vec!["g0".into(), "g1".into()], vec![policy(0, Metric::ReflectionPps, 400.0), policy(1, Metric::UdpPps, 400.0)]);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Group 0 gets 1000 reflected packets a second, group 1 nothing.
        let totals = |s: u64| vec![stats(1000 * s, 1000 * s, 0), stats(0, 0, 0)];
        assert!(d.observe(at(0), totals(0)).is_empty(), "the first reading is the baseline");
        assert_eq!(d.rates[0], None);
        assert!(d.observe(at(1), totals(1)).is_empty());
        assert_eq!(d.rates[0].unwrap().reflection_pps, 1000.0);
        assert_eq!(d.rates[1].unwrap().pps, 0.0);
        assert_eq!(d.observe(at(2), totals(2)), [(0, Start)]);
        assert!(d.states[0].active && !d.states[1].active);
        assert_eq!(d.states[0].value, 1000.0);
        // The attack ends: two quiet seconds.
        let quiet = vec![stats(2000, 2000, 0), stats(0, 0, 0)];
        assert!(d.observe(at(3), quiet.clone()).is_empty());
        assert_eq!(d.observe(at(4), quiet), [(0, Stop)]);
        // A late sample: rates over the real interval.
        assert!(d.observe(at(7), vec![stats(5000, 2000, 0), stats(0, 0, 0)]).is_empty());
        assert_eq!(d.rates[0].unwrap().udp_pps, 1000.0);
        assert_eq!(d.interval, 3.0);
    }

    #[test]
    fn mitigation_tables_parse_as_order_entries() {
        let table: toml::Table = toml::from_str(
            "protocol = \"udp\"\nsource_ports = [19, 53, 123]\nrate_limit = { per = \"destination\", pps = 10000 }\ncomment = \"reflection\"\n",
        )
        .unwrap();
        let nets: Vec<IpNet> = vec!["198.18.0.0/24".parse().unwrap(), "2001:db8:1::/48".parse().unwrap()];
        let l4 = parse_mitigation(&table, &nets).expect("parses");
        assert_eq!(l4.protocol, 17);
        assert_eq!(l4.destination, Scope::Nets(nets.clone()));
        assert_eq!(l4.source_ports.len(), 3);
        assert_eq!(l4.rate_limit.unwrap().pps, Some(10_000));

        let p = Policy { mitigation: l4, ..policy(0, Metric::ReflectionPps, 1.0) };
        let o = p.order(Utc::now(), 12.0);
        assert_eq!((o.id.as_str(), o.authority.as_str(), o.category), ("auto:p0:g0", "auto:p0", Category::Attack));
        filter_common::rules::order_file::check_order_id(&o.id).unwrap();
        assert!(o.is_active(Utc::now()));
        let rules = filter_common::rules::RuleSet::build(Default::default(), &[o], Utc::now()).unwrap();
        assert_eq!(rules.l4.len(), 3, "one slot per source port");
        assert_eq!(rules.rule(rules.l4[0].rule_id).unwrap().order_id, "auto:p0:g0");

        let err = |text: &str| {
            let table: toml::Table = toml::from_str(text).unwrap();
            let mut e = parse_mitigation(&table, &nets).expect_err(text);
            e.sort();
            e
        };
        let e = err("protocol = \"udp\"\nrate_limit = { per = \"destination\", pps = 0 }\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].0.is_empty() && e[0].1.starts_with("rate_limit.pps: 0 is not"), "{e:?}");
        let e = err("protocol = \"udp\"\nsource_ports = [70000]\n");
        assert_eq!(e[0].0, "source_ports", "{e:?}");
        let e = err("protocol = \"udp\"\nsource_port = [123]\n");
        assert_eq!(e[0].0, "source_port", "{e:?}");
        assert!(e[0].1.contains("unknown field"), "{e:?}");
        let e = err("protocol = \"udp\"\ndestination = [\"198.18.0.1\"]\n");
        assert_eq!(e[0].0, "destination", "{e:?}");
        let e = err("source_ports = [123]\n");
        assert_eq!(e[0].0, "protocol", "{e:?}");
        let e = err("protocol = \"udpp\"\n");
        assert_eq!(e[0].0, "protocol", "{e:?}");
        let e = err("protocol = \"icmp\"\nsource_ports = [1]\n");
        assert_eq!(e[0].0, "protocol", "{e:?}");
    }

    #[test]
    fn si_is_short() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(52_100.0), "52.1k");
        assert_eq!(si(3_850_000_000.0), "3.85G");
        assert_eq!(si(250_000_000.0), "250M");
    }
}
