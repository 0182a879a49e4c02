//! Rate-limit rules as the kernel must apply them: one token bucket per
//! (rule slot, key), new buckets full, credit in nanosecond-scaled units
//! (see `maps::ddos`), time given by the caller so tests can replay
//! packets at chosen instants.
use std::collections::HashMap;

use crate::maps::{RateLimit, RlKey, RlState, RL_PER_DESTINATION, RL_PER_FLOW, RL_PER_SOURCE, RL_SCALE};
use crate::packet::{Addrs, IpPacket};

/// The buckets, as `RL_STATE` holds them.
#[derive(Clone, Debug, Default)]
pub struct Buckets {
    pub state: HashMap<RlKey, RlState>,
}

fn masked(addr: &[u8; 16], len: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in addr.iter().enumerate() {
        let bits = (len as usize).saturating_sub(i * 8).min(8);
        out[i] = if bits == 0 { 0 } else { b & (0xffu8 << (8 - bits)) };
    }
    out
}

/// The bucket key of a packet for the buckets of `slot` (the first slot
/// of the rule's entry: `RateLimit::bucket`).
pub fn key(rl: &RateLimit, slot: usize, generation: u8, p: &IpPacket) -> RlKey {
    let (src, dst, v6) = match p.addrs {
        Addrs::V4 { src, dst } => {
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            a[..4].copy_from_slice(&src);
            b[..4].copy_from_slice(&dst);
            (a, b, false)
        }
        Addrs::V6 { src, dst } => (src, dst, true),
    };
    let mut k = RlKey { slot: slot as u16, generation, v6: v6 as u8, ..RlKey::default() };
    match rl.per {
        RL_PER_SOURCE => k.addr = masked(&src, if v6 { rl.src_len_v6 } else { rl.src_len_v4 }),
        RL_PER_DESTINATION => k.addr = dst,
        RL_PER_FLOW => {
            k.addr = src;
            k.proto = p.protocol;
            k.port = p.l4.map_or(0, |l| l.dst_port);
        }
        _ => k.v6 = 0,
    }
    k
}

/// Refills the bucket to `now`, then takes one packet of `len` bytes if
/// both credits allow; true when the packet is within the rate.
pub fn conform(b: &mut Buckets, rl: &RateLimit, key: RlKey, now: u64, len: u64) -> bool {
    let st = b.state.entry(key).or_insert(RlState { pkt_credit: rl.pkt_cap, bit_credit: rl.bit_cap, last_ns: now });
    let elapsed = now.saturating_sub(st.last_ns);
    // `min(cap, credit + elapsed * rate)`, exactly: past `fill_ns` (cap /
    // rate, rounded down) the product is over the cap. Exact, so two
    // refills in a row are one: the kernel may skip a dropped packet's
    // update (its over-rate memo) without changing any later decision.
    let refill = |credit: u64, rate: u64, cap: u64, fill_ns: u64| {
        if elapsed > fill_ns { cap } else { credit.saturating_add(elapsed * rate).min(cap) }
    };
    if rl.pps != 0 {
        st.pkt_credit = refill(st.pkt_credit, rl.pps, rl.pkt_cap, rl.pkt_fill_ns);
    }
    if rl.bps != 0 {
        st.bit_credit = refill(st.bit_credit, rl.bps, rl.bit_cap, rl.bit_fill_ns);
    }
    st.last_ns = now;
    let bits = len * 8 * RL_SCALE;
    let ok = (rl.pps == 0 || st.pkt_credit >= RL_SCALE) && (rl.bps == 0 || st.bit_credit >= bits);
    if ok {
        if rl.pps != 0 {
            st.pkt_credit -= RL_SCALE;
        }
        if rl.bps != 0 {
            st.bit_credit -= bits;
        }
    }
    ok
}
