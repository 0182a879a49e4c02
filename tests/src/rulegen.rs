//! Seeded rule sets with nested and overlapping prefixes, both directions,
//! dry-run rules, allowlist overlaps and L4 rules of every kind. Rule
//! prefixes stay inside documentation ranges (allowlist: also the
//! benchmarking range used by test hosts).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::maps::{FRAG_DROP_ALL, FRAG_DROP_NON_FIRST, FRAG_PASS};
use filter_common::rules::order_file::Category;
use filter_common::rules::ruleset::TcpFlags;
use filter_common::rules::{Direction, L4Slot, PortRange, PrefixRule, RuleInfo, RuleSet, Scope, Settings};
use ipnet::IpNet;
use rand::{rngs::SmallRng, Rng};

use crate::pktgen::{inside, v6, PORT_POOL};

fn net(addr: IpAddr, len: u8) -> IpNet {
    IpNet::new(addr, len).unwrap().trunc()
}

fn rule_v4(rng: &mut SmallRng) -> IpNet {
    let bases: [[u8; 4]; 3] = [[192, 0, 2, 0], [198, 51, 100, 0], [203, 0, 113, 0]];
    let base = bases[rng.random_range(0..3)];
    let len = if rng.random_bool(0.1) { 24 } else { rng.random_range(26..=32) };
    net(IpAddr::V4(Ipv4Addr::from(inside(rng, base, 24))), len)
}

fn rule_v6(rng: &mut SmallRng) -> IpNet {
    let bases = [(v6([0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 0]), 48u8), (v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0]), 48), (v6([0x2001, 0xdb8, 0xbad, 0xbeef, 0, 0, 0, 0]), 64)];
    let (base, blen) = bases[rng.random_range(0..3)];
    let len = match rng.random_range(0..4) {
        0 => 32,
        _ => rng.random_range(blen.saturating_sub(8)..=128),
    };
    net(IpAddr::V6(Ipv6Addr::from(inside(rng, base, blen))), len)
}

fn any_rule_net(rng: &mut SmallRng) -> IpNet {
    if rng.random_bool(0.6) { rule_v4(rng) } else { rule_v6(rng) }
}

fn ports(rng: &mut SmallRng) -> Option<PortRange> {
    match rng.random_range(0..4) {
        0 => None,
        1 => {
            let p = PORT_POOL[rng.random_range(0..PORT_POOL.len())];
            Some(PortRange { min: p, max: p })
        }
        _ => {
            let a = PORT_POOL[rng.random_range(0..PORT_POOL.len())];
            let b = PORT_POOL[rng.random_range(0..PORT_POOL.len())];
            Some(PortRange { min: a.min(b), max: a.max(b) })
        }
    }
}

fn scope(rng: &mut SmallRng) -> Scope {
    if rng.random_bool(0.5) {
        Scope::Any
    } else {
        Scope::Nets((0..rng.random_range(1..4)).map(|_| any_rule_net(rng)).collect())
    }
}

pub fn ruleset(rng: &mut SmallRng) -> RuleSet {
    let mut settings = Settings { fail_closed: rng.random_bool(0.5), ..Settings::default() };
    for p in settings.fragment_policy.iter_mut() {
        *p = [FRAG_PASS, FRAG_DROP_NON_FIRST, FRAG_DROP_ALL][rng.random_range(0..3)];
    }
    if rng.random_bool(0.3) {
        settings.fragment_policy = [FRAG_PASS; 256];
    }
    for _ in 0..rng.random_range(0..4) {
        let allow = match rng.random_range(0..3) {
            0 => net(IpAddr::V4(Ipv4Addr::from(inside(rng, [198, 18, 0, 0], 15))), rng.random_range(15..=32)),
            _ => any_rule_net(rng),
        };
        settings.allow.push(allow);
    }
    let mut rs = RuleSet { settings, ..RuleSet::default() };
    let new_rule = |rs: &mut RuleSet, dry_run: bool| -> u32 {
        let id = rs.rules.len() as u32 + 1;
        rs.rules.push(RuleInfo {
            id,
            order_id: format!("GEN-{id}"),
            authority: "generated".into(),
            category: Category::Operator,
            dry_run,
            file: "generated".into(),
            line: 0,
            comment: None,
        });
        id
    };
    let n_prefix_rules = rng.random_range(0..25);
    for _ in 0..n_prefix_rules {
        let dry_run = rng.random_bool(0.25);
        let id = new_rule(&mut rs, dry_run);
        let direction = [Direction::Both, Direction::Src, Direction::Dst][rng.random_range(0..3)];
        for _ in 0..rng.random_range(1..6) {
            rs.prefixes.push(PrefixRule { rule_id: id, net: any_rule_net(rng), direction, dry_run });
        }
    }
    let n_l4 = if rng.random_bool(0.2) { 0 } else { rng.random_range(1..40) };
    for _ in 0..n_l4 {
        let dry_run = rng.random_bool(0.25);
        let id = new_rule(&mut rs, dry_run);
        let protocol = match rng.random_range(0..10) {
            0 => None,
            1 => Some(47),
            2 | 3 => Some(1),
            4 => Some(58),
            5..8 => Some(6),
            _ => Some(17),
        };
        let mut slot = L4Slot {
            rule_id: id,
            dry_run,
            protocol,
            source: scope(rng),
            destination: scope(rng),
            src_ports: None,
            dst_ports: None,
            tcp_flags: None,
            icmp_type: None,
            icmp_code: None,
            rate_limit: None,
            fragments: false,
            bucket: rs.l4.len() as u16,
            syn_auth: false,
        };
        match protocol {
            Some(6) | Some(17) => {
                slot.src_ports = ports(rng);
                slot.dst_ports = ports(rng);
                if protocol == Some(6) && rng.random_bool(0.4) {
                    let spec = ["syn,!ack", "syn", "ack", "rst", "fin,ack", "!syn"][rng.random_range(0..6)];
                    slot.tcp_flags = Some(TcpFlags::parse(spec).unwrap());
                }
            }
            Some(1) | Some(58) => {
                if rng.random_bool(0.7) {
                    slot.icmp_type = Some([0u8, 8, 3, 128, 129, 135][rng.random_range(0..6)]);
                }
                if rng.random_bool(0.3) {
                    slot.icmp_code = Some(rng.random_range(0..2));
                }
            }
            _ => {}
        }
        // Several slots of one rule, as an entry with several port ranges.
        let copies = if rng.random_bool(0.2) { 2 } else { 1 };
        for _ in 0..copies {
            rs.l4.push(slot.clone());
            if let Some(r) = slot.dst_ports.as_mut() {
                r.max = r.max.saturating_add(7);
            }
        }
    }
    rs
}
