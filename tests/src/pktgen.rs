//! Seeded generator of Ethernet frames that exercise every parser path:
//! valid and broken lengths, VLAN/QinQ (and one tag too many), IPv4 options,
//! IPv6 extension chains (including too long ones), fragments, ND, ARP,
//! non-IP, truncation and byte flips.
use rand::{rngs::SmallRng, Rng};

/// Addresses packets are drawn from: documentation and benchmarking ranges
/// only, chosen so that they hit the generated rules often.
pub struct AddrPool {
    pub v4: Vec<([u8; 4], u8)>,
    pub v6: Vec<([u8; 16], u8)>,
}

impl Default for AddrPool {
    fn default() -> Self {
        AddrPool {
            v4: vec![([192, 0, 2, 0], 24), ([198, 51, 100, 0], 24), ([203, 0, 113, 0], 24), ([198, 18, 0, 0], 15)],
            v6: vec![
                (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32),
                (v6([0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 0]), 48),
                (v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0]), 48),
                (v6([0x2001, 0xdb8, 0xbad, 0xbeef, 0, 0, 0, 0]), 64),
            ],
        }
    }
}

pub fn v6(words: [u16; 8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// A random address inside `base/len`.
pub fn inside<const N: usize>(rng: &mut SmallRng, base: [u8; N], len: u8) -> [u8; N] {
    let mut out = base;
    for (i, byte) in out.iter_mut().enumerate() {
        let bit0 = (i * 8) as u8;
        if len >= bit0 + 8 {
            continue;
        }
        let keep = len.saturating_sub(bit0);
        let mask: u8 = if keep == 0 { 0 } else { !(0xffu8 >> keep) };
        *byte = (*byte & mask) | (rng.random::<u8>() & !mask);
    }
    out
}

pub const PORT_POOL: [u16; 12] = [0, 22, 53, 80, 123, 443, 1023, 1024, 11211, 11212, 40000, 65535];

pub struct PacketGen {
    pub rng: SmallRng,
    pub pool: AddrPool,
}

fn pick<T: Copy>(rng: &mut SmallRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

impl PacketGen {
    pub fn new(rng: SmallRng, pool: AddrPool) -> Self {
        PacketGen { rng, pool }
    }

    fn v4_addr(&mut self) -> [u8; 4] {
        let (base, len) = pick(&mut self.rng, &self.pool.v4);
        inside(&mut self.rng, base, len)
    }

    fn v6_addr(&mut self) -> [u8; 16] {
        let (base, len) = pick(&mut self.rng, &self.pool.v6);
        inside(&mut self.rng, base, len)
    }

    fn port(&mut self) -> u16 {
        if self.rng.random_bool(0.8) {
            let p = pick(&mut self.rng, &PORT_POOL);
            // Neighbours of pool ports hit range boundaries.
            match self.rng.random_range(0..4) {
                0 => p.wrapping_add(1),
                1 => p.wrapping_sub(1),
                _ => p,
            }
        } else {
            self.rng.random()
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.rng.random()).collect()
    }

    fn protocol(&mut self, v6: bool) -> u8 {
        let r = self.rng.random_range(0..100);
        match r {
            0..30 => 6,
            30..60 => 17,
            60..75 => {
                if v6 { 58 } else { 1 }
            }
            75..80 => {
                if v6 { 1 } else { 58 }
            }
            80..85 => 47,
            85..88 => 50,
            88..92 => 132,
            _ => self.rng.random(),
        }
    }

    /// Transport header and a little payload for `protocol`.
    fn l4(&mut self, protocol: u8, v6: bool) -> Vec<u8> {
        let payload_len = self.rng.random_range(0..48);
        let mut out = Vec::new();
        match protocol {
            6 => {
                out.extend(self.port().to_be_bytes());
                out.extend(self.port().to_be_bytes());
                out.extend(self.bytes(8)); // seq, ack
                let doff: u8 = match self.rng.random_range(0..20) {
                    0 => self.rng.random_range(0..5),
                    1..4 => self.rng.random_range(5..16),
                    _ => 5,
                };
                out.push(doff << 4);
                let flags = pick(&mut self.rng, &[0x02u8, 0x12, 0x10, 0x11, 0x04, 0x18, 0x00, 0xff, 0x03, 0x06]);
                out.push(if self.rng.random_bool(0.1) { self.rng.random() } else { flags });
                out.extend(self.bytes(6)); // window, checksum, urgent
                let options = (doff as usize * 4).saturating_sub(20);
                out.extend(self.bytes(options));
            }
            17 => {
                out.extend(self.port().to_be_bytes());
                out.extend(self.port().to_be_bytes());
                let len = (8 + payload_len) as u16;
                let len = if self.rng.random_bool(0.1) { self.rng.random() } else { len };
                out.extend(len.to_be_bytes());
                out.extend([0, 0]);
            }
            1 | 58 => {
                let types: &[u8] = if v6 == (protocol == 58) {
                    if v6 { &[128, 129, 133, 134, 135, 136, 137, 1, 2, 3, 138] } else { &[0, 3, 8, 11, 5, 13] }
                } else {
                    &[0, 8, 128, 135]
                };
                out.push(if self.rng.random_bool(0.1) { self.rng.random() } else { pick(&mut self.rng, types) });
                out.push(if self.rng.random_bool(0.7) { 0 } else { self.rng.random_range(0..4) });
                out.extend(self.bytes(6));
            }
            _ => {}
        }
        out.extend(self.bytes(payload_len));
        out
    }

    fn ipv4(&mut self) -> Vec<u8> {
        let ihl: u8 = match self.rng.random_range(0..20) {
            0 => self.rng.random_range(0..5),
            1..4 => self.rng.random_range(6..16),
            _ => 5,
        };
        let version = if self.rng.random_bool(0.02) { self.rng.random_range(0..16) } else { 4u8 };
        let protocol = self.protocol(false);
        let (offset, more): (u16, bool) = match self.rng.random_range(0..20) {
            0..2 => (0, true),
            2..5 => (self.rng.random_range(1..0x2000), self.rng.random_bool(0.5)),
            _ => (0, false),
        };
        let df = if self.rng.random_bool(0.5) { 0x4000 } else { 0 };
        let frag = df | if more { 0x2000 } else { 0 } | offset;
        let header_len = (ihl.max(5) as usize) * 4;
        let l4 = self.l4(protocol, false);
        let total = header_len + l4.len();
        let total_field: u16 = match self.rng.random_range(0..40) {
            0 => self.rng.random(),
            1 => (total as u16).saturating_sub(self.rng.random_range(1..30)),
            2 => total as u16 + self.rng.random_range(1..30),
            _ => total as u16,
        };
        let mut out = vec![(version << 4) | ihl, 0];
        out.extend(total_field.to_be_bytes());
        out.extend(self.bytes(2));
        out.extend(frag.to_be_bytes());
        out.push(self.rng.random_range(1..=255)); // ttl
        out.push(protocol);
        out.extend([0, 0]);
        out.extend(self.v4_addr());
        out.extend(self.v4_addr());
        out.extend(self.bytes(header_len - 20));
        out.extend(l4);
        out
    }

    fn ipv6(&mut self) -> Vec<u8> {
        let nd = self.rng.random_bool(0.08);
        let exts = if nd {
            0
        } else {
            match self.rng.random_range(0..100) {
                0..50 => 0,
                50..85 => self.rng.random_range(1..4),
                85..95 => self.rng.random_range(4..7),
                _ => self.rng.random_range(7..9),
            }
        };
        let final_proto = if nd { 58 } else { self.protocol(true) };
        let kinds: Vec<u8> = (0..exts).map(|_| pick(&mut self.rng, &[0u8, 43, 60, 44, 51])).collect();
        let mut body = Vec::new();
        let mut first_next = final_proto;
        for (i, &kind) in kinds.iter().enumerate() {
            if i == 0 {
                first_next = kind;
            }
            let next = kinds.get(i + 1).copied().unwrap_or(final_proto);
            match kind {
                44 => {
                    let offset: u16 = if self.rng.random_bool(0.5) { 0 } else { self.rng.random_range(1..0x2000) };
                    let more = self.rng.random_bool(0.5) as u16;
                    body.push(next);
                    body.push(0);
                    body.extend(((offset << 3) | more).to_be_bytes());
                    body.extend(self.bytes(4));
                }
                51 => {
                    let plen: u8 = if self.rng.random_bool(0.05) { 0 } else { self.rng.random_range(1..5) };
                    body.push(next);
                    body.push(plen);
                    let len = (plen.max(1) as usize + 2) * 4;
                    body.extend(self.bytes(len - 2));
                }
                _ => {
                    let hl: u8 = self.rng.random_range(0..3);
                    body.push(next);
                    body.push(hl);
                    body.extend(self.bytes((hl as usize + 1) * 8 - 2));
                }
            }
        }
        body.extend(if nd { self.nd_message() } else { self.l4(final_proto, true) });
        let payload_len: u16 = match self.rng.random_range(0..40) {
            0 => self.rng.random(),
            1 => (body.len() as u16).saturating_sub(self.rng.random_range(1..30)),
            2 => body.len() as u16 + self.rng.random_range(1..30),
            _ => body.len() as u16,
        };
        let version = if self.rng.random_bool(0.02) { self.rng.random_range(0..16) } else { 6u8 };
        let mut out = vec![version << 4, 0, 0, 0];
        out.extend(payload_len.to_be_bytes());
        out.push(first_next);
        out.push(if nd || self.rng.random_bool(0.2) { if self.rng.random_bool(0.9) { 255 } else { 254 } } else { 64 });
        if nd {
            out.extend(v6([0xfe80, 0, 0, 0, 0, 0, 0, self.rng.random()]));
            let dst = if self.rng.random_bool(0.5) { v6([0xff02, 0, 0, 0, 0, 1, 0xff00, self.rng.random()]) } else { self.v6_addr() };
            out.extend(dst);
        } else {
            out.extend(self.v6_addr());
            out.extend(self.v6_addr());
        }
        out.extend(body);
        out
    }

    fn nd_message(&mut self) -> Vec<u8> {
        let mut out = vec![self.rng.random_range(133..=137), 0];
        out.extend(self.bytes(22));
        out
    }

    /// One frame. Roughly: 55% IPv4, 35% IPv6, the rest ARP, other
    /// ethertypes, and tag-only frames; then a chance of damage.
    pub fn frame(&mut self) -> Vec<u8> {
        let mut f = self.bytes(12);
        let tags = match self.rng.random_range(0..100) {
            0..65 => 0,
            65..85 => 1,
            85..97 => 2,
            _ => 3,
        };
        for _ in 0..tags {
            let tpid: u16 = pick(&mut self.rng, &[0x8100, 0x88a8]);
            f.extend(tpid.to_be_bytes());
            f.extend(self.bytes(2));
        }
        let (ether_type, payload): (u16, Vec<u8>) = match self.rng.random_range(0..100) {
            0..55 => (0x0800, self.ipv4()),
            55..90 => (0x86dd, self.ipv6()),
            90..94 => (0x0806, self.bytes(28)),
            94..97 => (pick(&mut self.rng, &[0x88cc, 0x8847, 0x8864, 0x9100]), self.bytes(40)),
            _ => (pick(&mut self.rng, &[0x8100, 0x88a8]), self.bytes(4)),
        };
        f.extend(ether_type.to_be_bytes());
        f.extend(payload);
        match self.rng.random_range(0..100) {
            0..6 => {
                let cut = self.rng.random_range(0..=f.len());
                f.truncate(cut);
            }
            6..10 => {
                for _ in 0..self.rng.random_range(1..4) {
                    let i = self.rng.random_range(12..f.len().max(13));
                    if i < f.len() {
                        f[i] = self.rng.random();
                    }
                }
            }
            10..18 => {
                // Ethernet minimum-size padding after the datagram.
                let pad = self.rng.random_range(1..20);
                f.extend(std::iter::repeat_n(0u8, pad));
            }
            _ => {}
        }
        f
    }
}
