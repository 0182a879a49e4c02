//! Flood generator: crafted Ethernet frames sent out of an interface in a
//! network namespace as fast as the kernel can, for a duration or a packet
//! count (UDP reflection, SYN flood with spoofed sources, IPv4/IPv6
//! fragments, plain UDP).
//!
//! Shared by the end-to-end tests (`edgefilter_tests::flood`) and the DDoS
//! benchmark, which includes this file with `#[path]` (the benchmark is a
//! binary of `filter-agent`, and the tests crate depends on `filter-agent`,
//! so it cannot depend back). It therefore uses only `std` and `libc`.
//!
//! # Engine: BPF_PROG_TEST_RUN in live-frames mode
//!
//! `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` (Linux 5.18+, see
//! the kernel's `Documentation/bpf/bpf_prog_run.rst`) runs an XDP program
//! `repeat` times on copies of one frame, in batches of up to 256, and
//! *transmits* every `XDP_TX` result out of the interface named by the
//! context's `ingress_ifindex` (as an `XDP_REDIRECT` to it: the driver
//! needs `ndo_xdp_xmit`; a veth has it, and delivers to its peer only when
//! the peer runs NAPI: an XDP program attached there, or GRO on). No
//! socket, no skb, no qdisc on the sending side: xdp-trafficgen works this
//! way.
//!
//! The XDP program is assembled here, a few instructions per randomised
//! field: it writes `bpf_get_prandom_u32()` bits into the fields that vary
//! per packet (spoofed source address, ports, sequence number, IP id),
//! recomputes the checksums those fields are part of (one's complement sum
//! of a constant part computed here plus the words read back from the
//! packet), and returns `XDP_TX`. The kernel recycles frame pages without
//! rewriting them, so a page holds either the template or a previous
//! packet: every randomised field is rewritten completely and every
//! checksum is computed from the constant part, never incrementally.
//!
//! Rates measured on the 2-CPU benchmark VM (AMD EPYC, kernel 6.18, veth,
//! one generating thread, SCHED_FIFO, 58- and 60-byte IPv4 frames with
//! random sources; `edgefilter-ddos-bench`): 5-6.6 million frames/s
//! offered with the receiving side on the other CPU, about 150-190 ns of
//! generator CPU per frame (more when the receiver returns pages slowly);
//! 4.1 million frames/s when the receiver (an XDP drop) shares its CPU.
//! Each BPF_PROG_TEST_RUN call in live mode adds the program to the
//! kernel's XDP dispatcher and removes it again, and every such change
//! waits for an RCU grace period: about 20 ms per call on that VM, which
//! caps a flood sent in 32,768-frame calls at under 1.5 million frames/s.
//! [`Tuning::resident`] (on by default) keeps the program attached to a
//! spare veth pair in the flood's namespace while it runs, so the calls
//! only take a reference.
//!
//! Addresses: only 198.18.0.0/15 and 2001:db8::/32 are accepted (source,
//! random source range and target); anything else is refused.
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ports of the common UDP reflection/amplification vectors: NTP, DNS,
/// memcached, SSDP.
pub const REFLECTION_PORTS: [u16; 4] = [123, 53, 11211, 1900];

pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// What the flood is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloodKind {
    /// Responses of a reflection attack: UDP from one of `src_ports`
    /// (picked per packet) to a random destination port 1024-65535.
    UdpReflection { src_ports: Vec<u16> },
    /// TCP SYN (with an MSS option) to `dst_port`, from a random port
    /// 1024-65535 with a random sequence number.
    Syn { dst_port: u16 },
    /// UDP fragments with a random IP identification (IPv4: 16 bits, IPv6
    /// fragment header: 32 bits), so every packet opens a new datagram.
    /// `first`: offset 0 with the UDP header (ports below) and more
    /// fragments to come; otherwise offset 1480 bytes, no transport header.
    Fragment { first: bool, src_port: u16, dst_port: u16 },
    /// Plain UDP between fixed ports.
    Udp { src_port: u16, dst_port: u16 },
    /// A plain TCP segment (no options) between fixed ports with `flags`
    /// (e.g. 0x10 for an ACK flood, or one legitimate-looking segment).
    Tcp { src_port: u16, dst_port: u16, flags: u8 },
}

/// Source addresses of the flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Fixed(IpAddr),
    /// A random address inside `net/len` per packet (host bits random;
    /// for IPv6 at most the last 64 bits are randomised).
    Random { net: IpAddr, len: u8 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloodSpec {
    pub kind: FloodKind,
    pub source: Source,
    pub target: IpAddr,
    /// Bytes after the transport header (after the IP header, or the IPv6
    /// fragment header, for a non-first fragment).
    pub payload_len: usize,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Write the whole template back into every frame before the random
    /// fields. Live-frames pages come back to the generator as the
    /// receiver left them: a receiver that rewrites frames it sends back
    /// (`XDP_TX`, e.g. a SYN cookie answer) would otherwise have its
    /// rewrite sent again. Off by default: two instructions per 4 bytes.
    pub restore_template: bool,
}

impl FloodSpec {
    /// A flood with the default MACs and an empty payload (64-byte IPv4
    /// UDP frames are the usual packets-per-second yardstick).
    pub fn new(kind: FloodKind, source: Source, target: IpAddr) -> FloodSpec {
        FloodSpec { kind, source, target, payload_len: 0, src_mac: DEFAULT_SRC_MAC, dst_mac: DEFAULT_DST_MAC, restore_template: false }
    }

    /// UDP reflection from [`REFLECTION_PORTS`], random sources in `net/len`.
    pub fn udp_reflection(net: IpAddr, len: u8, target: IpAddr) -> FloodSpec {
        FloodSpec::new(FloodKind::UdpReflection { src_ports: REFLECTION_PORTS.to_vec() }, Source::Random { net, len }, target)
    }

    /// SYN flood from random spoofed sources in `net/len`.
    pub fn syn(net: IpAddr, len: u8, target: IpAddr, dst_port: u16) -> FloodSpec {
        FloodSpec::new(FloodKind::Syn { dst_port }, Source::Random { net, len }, target)
    }

    /// Fragment flood (first or non-first) from random sources in `net/len`.
    pub fn fragments(net: IpAddr, len: u8, target: IpAddr, first: bool) -> FloodSpec {
        let mut s = FloodSpec::new(FloodKind::Fragment { first, src_port: 40_000, dst_port: 53 }, Source::Random { net, len }, target);
        s.payload_len = 32;
        s
    }

    pub fn with_payload(mut self, len: usize) -> FloodSpec {
        self.payload_len = len;
        self
    }

    /// See [`FloodSpec::restore_template`].
    pub fn restoring_template(mut self) -> FloodSpec {
        self.restore_template = true;
        self
    }

    pub fn with_macs(mut self, src: [u8; 6], dst: [u8; 6]) -> FloodSpec {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }
}

impl fmt::Display for FloodSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let src = match self.source {
            Source::Fixed(a) => a.to_string(),
            Source::Random { net, len } => format!("random in {net}/{len}"),
        };
        match &self.kind {
            FloodKind::UdpReflection { src_ports } => {
                let ports: Vec<String> = src_ports.iter().map(u16::to_string).collect();
                write!(f, "UDP reflection from ports {} ({src}) to {} ports 1024-65535", ports.join("/"), self.target)?
            }
            FloodKind::Syn { dst_port } => write!(f, "TCP SYN from {src} ports 1024-65535 to {}:{dst_port}", self.target)?,
            FloodKind::Fragment { first: true, src_port, dst_port } => {
                write!(f, "first UDP fragments {src}:{src_port} -> {}:{dst_port}, random IP id", self.target)?
            }
            FloodKind::Fragment { first: false, .. } => write!(f, "non-first UDP fragments {src} -> {}, random IP id", self.target)?,
            FloodKind::Udp { src_port, dst_port } => write!(f, "UDP {src}:{src_port} -> {}:{dst_port}", self.target)?,
            FloodKind::Tcp { src_port, dst_port, flags } => write!(f, "TCP flags {flags:#04x} {src}:{src_port} -> {}:{dst_port}", self.target)?,
        }
        write!(f, ", {}-byte payload", self.payload_len)
    }
}

// ------------------------------------------------------------ addresses --

fn v6_words(a: Ipv6Addr) -> u128 {
    u128::from(a)
}

/// Whether `addr` is in 198.18.0.0/15 or 2001:db8::/32.
pub fn allowed(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => u32::from(a) >> 17 == u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17,
        IpAddr::V6(a) => v6_words(a) >> 96 == 0x2001_0db8,
    }
}

fn check_addresses(spec: &FloodSpec) -> io::Result<()> {
    let bad = |what: &str, a: IpAddr| Err(invalid(format!("{what} {a} is outside 198.18.0.0/15 and 2001:db8::/32")));
    if !allowed(spec.target) {
        return bad("target", spec.target);
    }
    match spec.source {
        Source::Fixed(a) if !allowed(a) => return bad("source", a),
        Source::Random { net, len } => {
            let min = if net.is_ipv4() { 15 } else { 32 };
            let max = if net.is_ipv4() { 32 } else { 128 };
            if len < min || len > max || !allowed(net) {
                return Err(invalid(format!("random source range {net}/{len} is not inside 198.18.0.0/15 or 2001:db8::/32")));
            }
        }
        _ => {}
    }
    let src_v4 = match spec.source {
        Source::Fixed(a) | Source::Random { net: a, .. } => a.is_ipv4(),
    };
    if src_v4 != spec.target.is_ipv4() {
        return Err(invalid("source and target are of different address families".into()));
    }
    Ok(())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

// ---------------------------------------------------------- frame layout --

/// A field rewritten per packet.
#[derive(Clone, Debug)]
enum Field {
    /// `bytes = fixed | (random & mask)`, 2 or 4 bytes at `at`.
    Masked { at: usize, fixed: Vec<u8>, mask: Vec<u8> },
    /// A big-endian u16 uniform in `min..=max`.
    Range16 { at: usize, min: u16, max: u16 },
    /// A big-endian u16 picked from `values`.
    Choice16 { at: usize, values: Vec<u16> },
}

impl Field {
    fn span(&self) -> std::ops::Range<usize> {
        match self {
            Field::Masked { at, fixed, .. } => *at..at + fixed.len(),
            Field::Range16 { at, .. } | Field::Choice16 { at, .. } => *at..at + 2,
        }
    }
}

/// A checksum over frame bytes (`ranges`) plus constant pseudo-header
/// bytes (`extra`), stored big-endian at `at`.
#[derive(Clone, Debug)]
struct Checksum {
    at: usize,
    ranges: Vec<std::ops::Range<usize>>,
    extra: Vec<u8>,
    /// UDP: a computed 0 is sent as 0xffff.
    udp: bool,
}

#[derive(Clone, Debug)]
struct Layout {
    frame: Vec<u8>,
    fields: Vec<Field>,
    checksums: Vec<Checksum>,
    restore_template: bool,
}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_FRAG6: u8 = 44;
/// Offset of a non-first fragment, bytes (a multiple of 8).
const NON_FIRST_OFFSET: u16 = 1480;

fn random_bits_field(at: usize, fixed: &[u8], host_bits_mask: &[u8]) -> Option<Field> {
    if host_bits_mask.iter().all(|&b| b == 0) {
        return None;
    }
    let fixed: Vec<u8> = fixed.iter().zip(host_bits_mask).map(|(f, m)| f & !m).collect();
    Some(Field::Masked { at, fixed, mask: host_bits_mask.to_vec() })
}

/// Fields randomising the host bits of `net/len` written at `at` (the
/// address bytes), 32 bits at a time, at most the last 64 bits.
fn random_addr_fields(at: usize, net: &[u8], len: u8) -> Vec<Field> {
    let n = net.len();
    let mut mask = vec![0u8; n];
    for (i, m) in mask.iter_mut().enumerate() {
        let bit0 = (i * 8) as u32;
        let keep = u32::from(len).saturating_sub(bit0).min(8);
        *m = if keep >= 8 { 0 } else { 0xffu8 >> keep };
    }
    // IPv6: only the last 64 bits vary.
    for m in mask.iter_mut().take(n.saturating_sub(8)) {
        *m = 0;
    }
    (0..n)
        .step_by(4)
        .filter_map(|w| random_bits_field(at + w, &net[w..w + 4], &mask[w..w + 4]))
        .collect()
}

impl Layout {
    fn build(spec: &FloodSpec) -> io::Result<Layout> {
        check_addresses(spec)?;
        if let FloodKind::UdpReflection { src_ports } = &spec.kind {
            if src_ports.is_empty() || src_ports.len() > 64 {
                return Err(invalid("UDP reflection needs 1-64 source ports".into()));
            }
        }
        if spec.payload_len > 1400 {
            return Err(invalid("payload longer than 1400 bytes (frames must fit a page and a 1500-byte MTU)".into()));
        }
        let v4 = spec.target.is_ipv4();
        let (src, src_random) = match spec.source {
            Source::Fixed(a) => (a, None),
            Source::Random { net, len } => (net, Some(len)),
        };
        let addr_bytes = |a: IpAddr| -> Vec<u8> {
            match a {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            }
        };
        let (src_b, dst_b) = (addr_bytes(src), addr_bytes(spec.target));

        // Transport header (or nothing for a non-first fragment).
        let payload: Vec<u8> = (0..spec.payload_len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(0x41)).collect();
        let (proto, l4): (u8, Vec<u8>) = match &spec.kind {
            FloodKind::UdpReflection { src_ports } => (PROTO_UDP, udp_header(src_ports[0], 40_000, 8 + payload.len())),
            FloodKind::Udp { src_port, dst_port } => (PROTO_UDP, udp_header(*src_port, *dst_port, 8 + payload.len())),
            FloodKind::Syn { dst_port } => {
                let mut t = Vec::with_capacity(24);
                t.extend(40_000u16.to_be_bytes());
                t.extend(dst_port.to_be_bytes());
                t.extend(0x1234_5678u32.to_be_bytes()); // seq (random)
                t.extend(0u32.to_be_bytes()); // ack
                t.extend([6 << 4, 0x02]); // data offset 6 words, SYN
                t.extend(64_240u16.to_be_bytes()); // window
                t.extend([0, 0, 0, 0]); // checksum, urgent pointer
                t.extend([2, 4, 0x05, 0xb4]); // MSS 1460
                (PROTO_TCP, t)
            }
            FloodKind::Tcp { src_port, dst_port, flags } => {
                let mut t = Vec::with_capacity(20);
                t.extend(src_port.to_be_bytes());
                t.extend(dst_port.to_be_bytes());
                t.extend(0x1234_5678u32.to_be_bytes()); // seq
                t.extend(if flags & 0x10 != 0 { 0x0bad_cafeu32 } else { 0 }.to_be_bytes()); // ack
                t.extend([5 << 4, *flags]);
                t.extend(64_240u16.to_be_bytes());
                t.extend([0, 0, 0, 0]);
                (PROTO_TCP, t)
            }
            // The UDP length claims the whole datagram: this fragment and a
            // non-first one at NON_FIRST_OFFSET.
            FloodKind::Fragment { first: true, src_port, dst_port } => {
                (PROTO_UDP, udp_header(*src_port, *dst_port, usize::from(NON_FIRST_OFFSET) + 8 + payload.len()))
            }
            FloodKind::Fragment { first: false, .. } => (PROTO_UDP, Vec::new()),
        };
        let fragment = match spec.kind {
            FloodKind::Fragment { first, .. } => Some(first),
            _ => None,
        };

        let mut f = Vec::with_capacity(128);
        f.extend(spec.dst_mac);
        f.extend(spec.src_mac);
        f.extend(if v4 { 0x0800u16 } else { 0x86dd }.to_be_bytes());
        let ip_at = f.len();
        let mut fields = Vec::new();
        let mut checksums = Vec::new();
        let (src_at, l4_at);
        if v4 {
            let total = 20 + l4.len() + payload.len();
            let frag_field: u16 = match fragment {
                Some(true) => 0x2000,                       // MF, offset 0
                Some(false) => NON_FIRST_OFFSET / 8,        // last fragment
                None => 0x4000,                             // DF
            };
            f.extend([0x45, 0]);
            f.extend((total as u16).to_be_bytes());
            f.extend(0x1d1du16.to_be_bytes()); // id
            f.extend(frag_field.to_be_bytes());
            f.extend([64, proto, 0, 0]);
            src_at = f.len();
            f.extend(&src_b);
            f.extend(&dst_b);
            l4_at = f.len();
            if fragment.is_some() {
                fields.push(Field::Masked { at: ip_at + 4, fixed: vec![0, 0], mask: vec![0xff, 0xff] });
            }
            checksums.push(Checksum { at: ip_at + 10, ranges: std::iter::once(ip_at..ip_at + 20).collect(), extra: Vec::new(), udp: false });
        } else {
            let ext = if fragment.is_some() { 8 } else { 0 };
            let plen = ext + l4.len() + payload.len();
            f.extend([0x60, 0, 0, 0]);
            f.extend((plen as u16).to_be_bytes());
            f.extend([if fragment.is_some() { PROTO_FRAG6 } else { proto }, 64]);
            src_at = f.len();
            f.extend(&src_b);
            f.extend(&dst_b);
            if let Some(first) = fragment {
                let off_m: u16 = if first { 1 } else { NON_FIRST_OFFSET };
                f.extend([proto, 0]);
                f.extend(off_m.to_be_bytes());
                let id_at = f.len();
                f.extend(0x1d1d_1d1du32.to_be_bytes());
                fields.push(Field::Masked { at: id_at, fixed: vec![0; 4], mask: vec![0xff; 4] });
            }
            l4_at = f.len();
        }
        if let Some(len) = src_random {
            fields.extend(random_addr_fields(src_at, &src_b, len));
        }
        f.extend(&l4);
        f.extend(&payload);

        // Per-packet transport fields and the transport checksum.
        match &spec.kind {
            FloodKind::UdpReflection { src_ports } => {
                fields.push(Field::Choice16 { at: l4_at, values: src_ports.clone() });
                fields.push(Field::Range16 { at: l4_at + 2, min: 1024, max: u16::MAX });
            }
            FloodKind::Syn { .. } => {
                fields.push(Field::Range16 { at: l4_at, min: 1024, max: u16::MAX });
                fields.push(Field::Masked { at: l4_at + 4, fixed: vec![0; 4], mask: vec![0xff; 4] });
            }
            _ => {}
        }
        if !l4.is_empty() {
            let l4_len = f.len() - l4_at;
            let csum_at = l4_at + if proto == PROTO_TCP { 16 } else { 6 };
            // Pseudo-header: the addresses are read from the frame, the
            // rest is constant. (For a first fragment the sum covers what
            // is present only; nobody can check it before reassembly.)
            let extra = if v4 {
                let mut e = vec![0, proto];
                e.extend((l4_len as u16).to_be_bytes());
                e
            } else {
                let mut e = (l4_len as u32).to_be_bytes().to_vec();
                e.extend([0, 0, 0, proto]);
                e
            };
            let addrs = src_at..src_at + 2 * src_b.len();
            checksums.push(Checksum { at: csum_at, ranges: vec![addrs, l4_at..f.len()], extra, udp: proto == PROTO_UDP });
        }
        let mut layout = Layout { frame: f, fields, checksums, restore_template: spec.restore_template };
        // The template itself carries valid checksums (and the first choice
        // of every field), so it is a correct packet even unmodified.
        let mut counter = 0u32;
        layout.frame = layout.apply(&mut || {
            counter = counter.wrapping_add(0x9e37_79b9);
            counter
        });
        Ok(layout)
    }

    /// What the XDP program does, in user space: every field from `rand`,
    /// then every checksum computed from scratch.
    fn apply(&self, rand: &mut dyn FnMut() -> u32) -> Vec<u8> {
        let mut f = self.frame.clone();
        for field in &self.fields {
            let r = rand();
            match field {
                Field::Masked { at, fixed, mask } => {
                    let rb = r.to_le_bytes();
                    for i in 0..fixed.len() {
                        f[at + i] = fixed[i] | (rb[i] & mask[i]);
                    }
                }
                Field::Range16 { at, min, max } => {
                    let v = (r % (u32::from(*max - *min) + 1)) as u16 + min;
                    f[*at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
                Field::Choice16 { at, values } => {
                    let v = values[(r % values.len() as u32) as usize];
                    f[*at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
        for c in &self.checksums {
            f[c.at] = 0;
            f[c.at + 1] = 0;
            let mut sum = sum_be(0, &c.extra);
            for r in &c.ranges {
                sum = sum_be(sum, &f[r.clone()]);
            }
            let mut v = fold(sum);
            if v == 0 && c.udp {
                v = 0xffff;
            }
            f[c.at..c.at + 2].copy_from_slice(&v.to_be_bytes());
        }
        f
    }
}

fn udp_header(sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let mut u = Vec::with_capacity(8);
    u.extend(sport.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend((len as u16).to_be_bytes());
    u.extend([0, 0]);
    u
}

/// One's complement sum of big-endian 16-bit words (odd tail padded).
fn sum_be(mut acc: u32, bytes: &[u8]) -> u32 {
    for c in bytes.chunks(2) {
        acc += u32::from(if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from(c[0]) << 8 });
    }
    acc
}

/// Folded and complemented.
fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum over `parts` (0 when the data is consistent with
/// a checksum field inside it); for tests.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0;
    for p in parts {
        sum = sum_be(sum, p);
    }
    fold(sum)
}

// -------------------------------------------------------- BPF assembler --

mod asm {
    //! The handful of eBPF instructions the generator program needs.
    pub const R0: u8 = 0;
    pub const R1: u8 = 1;
    pub const R2: u8 = 2;
    pub const R3: u8 = 3;
    pub const R7: u8 = 7;

    pub fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
        let mut b = [0u8; 8];
        b[0] = op;
        b[1] = (src << 4) | dst;
        b[2..4].copy_from_slice(&off.to_le_bytes());
        b[4..8].copy_from_slice(&imm.to_le_bytes());
        u64::from_le_bytes(b)
    }
    pub fn ldxw(dst: u8, src: u8, off: i16) -> u64 {
        insn(0x61, dst, src, off, 0)
    }
    pub fn ldxh(dst: u8, src: u8, off: i16) -> u64 {
        insn(0x69, dst, src, off, 0)
    }
    pub fn stxw(dst: u8, off: i16, src: u8) -> u64 {
        insn(0x63, dst, src, off, 0)
    }
    pub fn stxh(dst: u8, off: i16, src: u8) -> u64 {
        insn(0x6b, dst, src, off, 0)
    }
    pub fn stxb(dst: u8, off: i16, src: u8) -> u64 {
        insn(0x73, dst, src, off, 0)
    }
    pub fn mov64_imm(dst: u8, imm: i32) -> u64 {
        insn(0xb7, dst, 0, 0, imm)
    }
    pub fn mov64_reg(dst: u8, src: u8) -> u64 {
        insn(0xbf, dst, src, 0, 0)
    }
    pub fn mov32_imm(dst: u8, imm: i32) -> u64 {
        insn(0xb4, dst, 0, 0, imm)
    }
    pub fn add64_imm(dst: u8, imm: i32) -> u64 {
        insn(0x07, dst, 0, 0, imm)
    }
    pub fn add64_reg(dst: u8, src: u8) -> u64 {
        insn(0x0f, dst, src, 0, 0)
    }
    pub fn add32_imm(dst: u8, imm: i32) -> u64 {
        insn(0x04, dst, 0, 0, imm)
    }
    pub fn and32_imm(dst: u8, imm: i32) -> u64 {
        insn(0x54, dst, 0, 0, imm)
    }
    pub fn or32_imm(dst: u8, imm: i32) -> u64 {
        insn(0x44, dst, 0, 0, imm)
    }
    pub fn mod32_imm(dst: u8, imm: i32) -> u64 {
        insn(0x94, dst, 0, 0, imm)
    }
    pub fn and64_imm(dst: u8, imm: i32) -> u64 {
        insn(0x57, dst, 0, 0, imm)
    }
    pub fn xor64_imm(dst: u8, imm: i32) -> u64 {
        insn(0xa7, dst, 0, 0, imm)
    }
    pub fn rsh64_imm(dst: u8, imm: i32) -> u64 {
        insn(0x77, dst, 0, 0, imm)
    }
    /// Host (little-endian) to big-endian, 16 bits (zero-extends).
    pub fn be16(dst: u8) -> u64 {
        insn(0xdc, dst, 0, 0, 16)
    }
    pub fn jgt_reg(dst: u8, src: u8, off: i16) -> u64 {
        insn(0x2d, dst, src, off, 0)
    }
    pub fn jne_imm(dst: u8, imm: i32, off: i16) -> u64 {
        insn(0x55, dst, 0, off, imm)
    }
    pub fn call(helper: i32) -> u64 {
        insn(0x85, 0, 0, 0, helper)
    }
    pub fn exit() -> u64 {
        insn(0x95, 0, 0, 0, 0)
    }
    pub const BPF_FUNC_GET_PRANDOM_U32: i32 = 7;
}

const XDP_DROP: i32 = 1;
const XDP_TX: i32 = 3;

fn le32(bytes: &[u8]) -> i32 {
    let mut b = [0u8; 4];
    b[..bytes.len()].copy_from_slice(bytes);
    i32::from_le_bytes(b)
}

/// The XDP program for `layout` (see the module comment). Words are loaded
/// and stored in host order: the one's complement sum of byte-swapped words
/// is the byte-swapped sum, so the constant part is summed the same way.
fn assemble(layout: &Layout) -> Vec<u64> {
    use asm::*;
    let len = layout.frame.len() as i32;
    let mut p = vec![
        ldxw(R2, 1, 0), // r2 = ctx->data
        ldxw(R3, 1, 4), // r3 = ctx->data_end
        mov64_reg(R7, R2),
        add64_imm(R2, len),
        0, // patched: if r2 > r3 goto drop
    ];
    let bounds_check = p.len() - 1;
    let off = |at: usize| at as i16;
    if layout.restore_template {
        let words = layout.frame.len() / 4;
        for w in 0..words {
            let b = &layout.frame[w * 4..w * 4 + 4];
            p.push(mov32_imm(R1, i32::from_le_bytes([b[0], b[1], b[2], b[3]])));
            p.push(stxw(R7, off(w * 4), R1));
        }
        for at in words * 4..layout.frame.len() {
            p.push(mov32_imm(R1, i32::from(layout.frame[at])));
            p.push(stxb(R7, off(at), R1));
        }
    }
    for field in &layout.fields {
        p.push(call(BPF_FUNC_GET_PRANDOM_U32));
        match field {
            Field::Masked { at, fixed, mask } => {
                p.push(and32_imm(R0, le32(mask)));
                p.push(or32_imm(R0, le32(fixed)));
                p.push(if fixed.len() == 4 { stxw(R7, off(*at), R0) } else { stxh(R7, off(*at), R0) });
            }
            Field::Range16 { at, min, max } => {
                p.push(mod32_imm(R0, i32::from(*max - *min) + 1));
                p.push(add32_imm(R0, i32::from(*min)));
                p.push(be16(R0));
                p.push(stxh(R7, off(*at), R0));
            }
            Field::Choice16 { at, values } => {
                p.push(mod32_imm(R0, values.len() as i32));
                p.push(mov32_imm(R1, i32::from(values[0].swap_bytes())));
                for (k, v) in values.iter().enumerate().skip(1) {
                    p.push(jne_imm(R0, k as i32, 1));
                    p.push(mov32_imm(R1, i32::from(v.swap_bytes())));
                }
                p.push(stxh(R7, off(*at), R1));
            }
        }
    }
    for c in &layout.checksums {
        let spans: Vec<std::ops::Range<usize>> = layout.fields.iter().map(Field::span).collect();
        let varies = |w: usize| spans.iter().any(|s| s.start < w + 2 && w < s.end);
        // Constant part, in the host-order view.
        let mut base: u32 = 0;
        for w in c.extra.chunks(2) {
            base += u32::from(u16::from_le_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        let mut variable = Vec::new();
        for r in &c.ranges {
            let mut w = r.start;
            while w < r.end {
                if w == c.at {
                    // the checksum itself counts as zero
                } else if varies(w) {
                    variable.push(w);
                } else {
                    let hi = if w + 1 < r.end { layout.frame[w + 1] } else { 0 };
                    base += u32::from(u16::from_le_bytes([layout.frame[w], hi]));
                }
                w += 2;
            }
        }
        while base > 0xffff {
            base = (base & 0xffff) + (base >> 16);
        }
        p.push(mov64_imm(R0, base as i32));
        for w in variable {
            p.push(ldxh(R1, R7, off(w)));
            p.push(add64_reg(R0, R1));
        }
        for _ in 0..2 {
            p.push(mov64_reg(R1, R0));
            p.push(rsh64_imm(R1, 16));
            p.push(and64_imm(R0, 0xffff));
            p.push(add64_reg(R0, R1));
        }
        p.push(xor64_imm(R0, 0xffff));
        if c.udp {
            p.push(jne_imm(R0, 0, 1));
            p.push(mov64_imm(R0, 0xffff));
        }
        p.push(stxh(R7, off(c.at), R0));
    }
    p.push(mov64_imm(R0, XDP_TX));
    p.push(exit());
    let drop_at = p.len();
    p.push(mov64_imm(R0, XDP_DROP));
    p.push(exit());
    p[bounds_check] = jgt_reg(R2, R3, (drop_at - bounds_check - 1) as i16);
    p
}

// ------------------------------------------------------------- syscalls --

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// The kernel's limit on `batch_size` in live-frames mode.
pub const MAX_BATCH: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
}

/// Every command's attributes are one zeroed 128-byte block: the kernel
/// rejects non-zero bytes past the fields it knows, and Rust does not zero
/// struct padding.
#[repr(C)]
union Attr {
    load: ProgLoadAttr,
    test: TestRunAttr,
    /// BPF_LINK_CREATE: prog_fd, target_ifindex, attach_type, flags.
    link: [u32; 4],
    raw: [u8; 128],
}

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, fully initialised 128-byte block whose
    // pointers refer to buffers the caller keeps alive.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut Attr, std::mem::size_of::<Attr>() as u32) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn load_xdp(insns: &[u64], name: &str) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let attempt = |log_level: u32, log: &mut [u8]| {
        let mut attr = Attr { raw: [0; 128] };
        attr.load = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level,
            log_size: if log_level > 0 { log.len() as u32 } else { 0 },
            log_buf: if log_level > 0 { log.as_mut_ptr() as u64 } else { 0 },
            kern_version: 0,
            prog_flags: 0,
            prog_name,
        };
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match attempt(0, &mut log) {
        // SAFETY: a fresh fd from the kernel, owned by nobody else.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
        Err(e) => {
            let _ = attempt(1, &mut log);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(io::Error::new(e.kind(), format!("loading the flood generator's XDP program: {e}; verifier log:\n{}", String::from_utf8_lossy(&log[..end]))))
        }
    }
}

/// One BPF_PROG_TEST_RUN of `prog` on `frame`. `live`: transmit out of
/// `ifindex` (`repeat` frames, in batches of `batch`). Otherwise a plain
/// test run whose output frame is copied to `out`.
fn test_run(prog: RawFd, frame: &[u8], repeat: u32, live: Option<(u32, u32)>, out: Option<&mut [u8]>) -> io::Result<(u32, u32)> {
    let mut ctx = XdpMd { data_end: frame.len() as u32, ..XdpMd::default() };
    let mut attr = Attr { raw: [0; 128] };
    let (out_ptr, out_len) = match out {
        Some(o) => (o.as_mut_ptr() as u64, o.len() as u32),
        None => (0, 0),
    };
    let (flags, batch_size, ctx_ptr, ctx_size) = match live {
        Some((ifindex, batch)) => {
            ctx.ingress_ifindex = ifindex;
            (BPF_F_TEST_XDP_LIVE_FRAMES, batch, &ctx as *const XdpMd as u64, std::mem::size_of::<XdpMd>() as u32)
        }
        None => (0, 0, 0, 0),
    };
    attr.test = TestRunAttr {
        prog_fd: prog as u32,
        retval: 0,
        data_size_in: frame.len() as u32,
        data_size_out: out_len,
        data_in: frame.as_ptr() as u64,
        data_out: out_ptr,
        repeat,
        duration: 0,
        ctx_size_in: ctx_size,
        ctx_size_out: 0,
        ctx_in: ctx_ptr,
        ctx_out: 0,
        flags,
        cpu: 0,
        batch_size,
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    // SAFETY: the kernel wrote back the `test` variant.
    let t = unsafe { attr.test };
    Ok((t.retval, t.duration))
}

// ----------------------------------------------------------- the flood --

/// A loaded flood: the template frame and its XDP program.
pub struct Flood {
    spec: FloodSpec,
    layout: Layout,
    prog: OwnedFd,
    insns: usize,
}

/// Where the frames leave, and on which CPUs the generating threads run.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    /// `ip netns` name (`/run/netns/<name>`); `None`: this thread's namespace.
    pub netns: Option<String>,
    pub interface: String,
    /// One generating thread per CPU listed, pinned there; empty: one
    /// unpinned thread.
    pub cpus: Vec<usize>,
}

/// How much to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// This many frames in total (across threads; rounded up to whole
    /// batches).
    Packets(u64),
    For(Duration),
    /// Until [`Running::stop`].
    UntilStopped,
}

#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Frames per batch (the kernel's transmit bulk), at most [`MAX_BATCH`].
    pub batch: u32,
    /// Frames per syscall: the stop flag and the deadline are checked
    /// between syscalls.
    pub chunk: u32,
    /// Run the generating threads SCHED_FIFO at this priority (1-99), so
    /// other work on their CPUs does not decide the rate; `None`: the
    /// normal scheduler. Refused (EPERM) without CAP_SYS_NICE.
    pub realtime: Option<i32>,
    /// Keep the program attached (natively) to a spare veth pair in the
    /// flood's namespace while it runs. Every live BPF_PROG_TEST_RUN call
    /// adds the program to the kernel's XDP dispatcher and removes it
    /// again, rebuilding the dispatcher and waiting for an RCU grace
    /// period each time (about 20 ms per call on the benchmark VM) unless
    /// the program is already in it; attached, only a reference count
    /// changes.
    pub resident: bool,
    /// Hold the flood to about this many frames per second in all (each
    /// thread sleeps between syscalls to keep its share); `None`: as fast
    /// as the kernel takes them. Use a small `chunk` with it, or the
    /// frames come in bursts of a chunk.
    pub pace_pps: Option<u64>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { batch: MAX_BATCH, chunk: 1 << 15, realtime: None, resident: true, pace_pps: None }
    }
}

/// What a flood sent. "Sent" means handed to the interface's
/// `ndo_xdp_xmit`: frames a full veth ring refuses are counted here too
/// (they never reach the peer; the receiving side's own counters tell).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FloodReport {
    pub packets: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub pps: f64,
    /// Kernel's average ns per frame of the last syscall (program run and
    /// transmit, per frame, as BPF_PROG_TEST_RUN reports it).
    pub kernel_ns_per_frame: f64,
    /// CPU time of the generating threads (CLOCK_THREAD_CPUTIME_ID), ns.
    pub cpu_ns: u64,
    pub threads: usize,
}

impl fmt::Display for FloodReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} frames in {:.3} s: {:.0} pps ({} thread(s))", self.packets, self.elapsed.as_secs_f64(), self.pps, self.threads)
    }
}

impl Flood {
    pub fn new(spec: FloodSpec) -> io::Result<Flood> {
        let layout = Layout::build(&spec)?;
        let insns = assemble(&layout);
        let prog = load_xdp(&insns, "ef_flood")?;
        Ok(Flood { spec, layout, prog, insns: insns.len() })
    }

    pub fn spec(&self) -> &FloodSpec {
        &self.spec
    }

    /// The frame the program starts from (valid on its own).
    pub fn template(&self) -> &[u8] {
        &self.layout.frame
    }

    pub fn frame_len(&self) -> usize {
        self.layout.frame.len()
    }

    /// Instructions of the generator program.
    pub fn program_len(&self) -> usize {
        self.insns
    }

    /// A frame as the program would make it from the random words `rand`
    /// returns (one per randomised field, in order): for checking what the
    /// flood looks like, e.g. against a reference classifier.
    pub fn sample(&self, rand: &mut dyn FnMut() -> u32) -> Vec<u8> {
        self.layout.apply(rand)
    }

    /// Runs the program once without transmitting and returns the frame it
    /// made (BPF_PROG_TEST_RUN, not live): what goes on the wire.
    pub fn kernel_sample(&self) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; self.layout.frame.len() + 256];
        let (retval, _) = test_run(self.prog.as_raw_fd(), &self.layout.frame, 1, None, Some(&mut out))?;
        if retval != XDP_TX as u32 {
            return Err(io::Error::other(format!("the flood program returned {retval}, not XDP_TX")));
        }
        out.truncate(self.layout.frame.len());
        Ok(out)
    }

    /// Sends and blocks until `limit` is reached.
    pub fn run(self: &Arc<Self>, at: &Endpoint, limit: Limit, tuning: Tuning) -> io::Result<FloodReport> {
        if limit == Limit::UntilStopped {
            return Err(invalid("Flood::run with Limit::UntilStopped would never return; use start".into()));
        }
        self.start(at, limit, tuning)?.wait()
    }

    /// Starts sending on background threads (each inside `at.netns`, pinned
    /// to its CPU) and returns at once.
    pub fn start(self: &Arc<Self>, at: &Endpoint, limit: Limit, tuning: Tuning) -> io::Result<Running> {
        if tuning.batch == 0 || tuning.batch > MAX_BATCH || tuning.chunk == 0 {
            return Err(invalid(format!("batch must be 1-{MAX_BATCH} and chunk at least 1")));
        }
        let netns = match &at.netns {
            Some(n) => Some(Arc::new(File::open(format!("/run/netns/{n}")).map_err(|e| io::Error::new(e.kind(), format!("network namespace {n}: {e}")))?)),
            None => None,
        };
        let cpus: Vec<Option<usize>> = if at.cpus.is_empty() { vec![None] } else { at.cpus.iter().copied().map(Some).collect() };
        let resident = if tuning.resident { Some(Resident::new(self.prog.as_raw_fd(), at.netns.as_deref(), netns.as_deref())?) } else { None };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            kernel_ns: AtomicU64::new(0),
            cpu_ns: cpus.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        let started = Instant::now();
        let deadline = match limit {
            Limit::For(d) => Some(started + d),
            _ => None,
        };
        let budget = match limit {
            Limit::Packets(n) => Some(n),
            _ => None,
        };
        let mut threads = Vec::new();
        let threads_n = cpus.len() as u64;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        for (slot, cpu) in cpus.iter().copied().enumerate() {
            let flood = Arc::clone(self);
            let shared = Arc::clone(&shared);
            let netns = netns.clone();
            let interface = at.interface.clone();
            let ready = ready_tx.clone();
            threads.push(std::thread::spawn(move || -> io::Result<()> {
                let setup = (|| -> io::Result<u32> {
                    if let Some(ns) = &netns {
                        // SAFETY: setns on this thread only, with an open fd.
                        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    if let Some(cpu) = cpu {
                        pin_to_cpu(cpu)?;
                    }
                    if let Some(prio) = tuning.realtime {
                        let param = libc::sched_param { sched_priority: prio };
                        // SAFETY: this thread (0), a valid parameter block.
                        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    ifindex(&interface)
                })();
                let ifindex = match setup {
                    Ok(i) => {
                        let _ = ready.send(Ok(()));
                        i
                    }
                    Err(e) => {
                        let msg = format!("flood thread setup (interface {interface}, cpu {cpu:?}): {e}");
                        let _ = ready.send(Err(io::Error::new(e.kind(), msg.clone())));
                        return Err(io::Error::new(e.kind(), msg));
                    }
                };
                flood.send_loop(ifindex, &shared, slot, deadline, budget, tuning, threads_n)
            }));
        }
        drop(ready_tx);
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    shared.stop.store(true, Ordering::Relaxed);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
                Err(_) => break,
            }
        }
        Ok(Running { shared, threads, started, frame_len: self.layout.frame.len(), _resident: resident })
    }

    #[allow(clippy::too_many_arguments)]
    fn send_loop(&self, ifindex: u32, shared: &Shared, slot: usize, deadline: Option<Instant>, budget: Option<u64>, tuning: Tuning, threads: u64) -> io::Result<()> {
        let fd = self.prog.as_raw_fd();
        let cpu0 = thread_cpu_ns();
        let (began, mut mine) = (Instant::now(), 0u64);
        loop {
            if let Some(pps) = tuning.pace_pps {
                // This thread's share of the rate: wait until the frames
                // sent so far are due.
                let due = began + Duration::from_secs_f64(mine as f64 * threads as f64 / pps.max(1) as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            shared.cpu_ns[slot].store(thread_cpu_ns().saturating_sub(cpu0), Ordering::Relaxed);
            if shared.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
            let mut n = tuning.chunk;
            if let Some(b) = budget {
                // Claim frames from the shared budget, a chunk at a time.
                let claimed = shared.sent.fetch_add(u64::from(n), Ordering::Relaxed);
                if claimed >= b {
                    shared.sent.fetch_sub(u64::from(n), Ordering::Relaxed);
                    return Ok(());
                }
                let left = b - claimed;
                if left < u64::from(n) {
                    shared.sent.fetch_sub(u64::from(n) - left, Ordering::Relaxed);
                    n = left as u32;
                }
            }
            match test_run(fd, &self.layout.frame, n, Some((ifindex, tuning.batch)), None) {
                Ok((_, ns)) => {
                    mine += u64::from(n);
                    shared.kernel_ns.store(u64::from(ns), Ordering::Relaxed);
                    if budget.is_none() {
                        shared.sent.fetch_add(u64::from(n), Ordering::Relaxed);
                    }
                }
                // A signal: the kernel stopped part way; count nothing and
                // look at the stop flag again.
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                    if budget.is_some() {
                        shared.sent.fetch_sub(u64::from(n), Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    shared.stop.store(true, Ordering::Relaxed);
                    return Err(io::Error::new(e.kind(), format!("BPF_PROG_TEST_RUN (live frames) on ifindex {ifindex}: {e}")));
                }
            }
        }
    }
}

struct Shared {
    stop: AtomicBool,
    sent: AtomicU64,
    kernel_ns: AtomicU64,
    /// Per thread: its CPU time since it started sending.
    cpu_ns: Vec<AtomicU64>,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A flood under way.
pub struct Running {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    started: Instant,
    frame_len: usize,
    /// Dropped after the threads are stopped (declared last).
    _resident: Option<Resident>,
}

/// The generator program attached to a spare veth pair (see
/// [`Tuning::resident`]); the pair is deleted on drop.
struct Resident {
    netns: Option<String>,
    dev: String,
    link: Option<OwnedFd>,
}

impl Resident {
    fn new(prog: RawFd, netns_name: Option<&str>, netns: Option<&File>) -> io::Result<Resident> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dev = format!("efg{}x{n}", std::process::id() % 100_000);
        let peer = format!("{dev}p");
        let mut ip = std::process::Command::new("ip");
        if let Some(ns) = netns_name {
            ip.args(["-n", ns]);
        }
        let out = ip.args(["link", "add", &dev, "type", "veth", "peer", "name", &peer]).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!("ip link add {dev} type veth: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        let mut r = Resident { netns: netns_name.map(str::to_string), dev, link: None };
        let dev = r.dev.clone();
        let ns = netns.map(|f| f.as_raw_fd());
        let link = std::thread::scope(|s| {
            s.spawn(|| -> io::Result<OwnedFd> {
                if let Some(fd) = ns {
                    // SAFETY: setns on this thread only, with an open fd.
                    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                let mut attr = Attr { raw: [0; 128] };
                attr.link = [prog as u32, ifindex(&dev)?, BPF_XDP, XDP_FLAGS_DRV_MODE];
                let fd = bpf(BPF_LINK_CREATE, &mut attr).map_err(|e| io::Error::new(e.kind(), format!("attaching the flood program to {dev}: {e}")))?;
                // SAFETY: a fresh fd from the kernel.
                Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("resident thread panicked")))
        })?;
        r.link = Some(link);
        Ok(r)
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        self.link = None;
        let mut ip = std::process::Command::new("ip");
        if let Some(ns) = &self.netns {
            ip.args(["-n", ns]);
        }
        let _ = ip.args(["link", "del", &self.dev]).stderr(std::process::Stdio::null()).status();
    }
}

impl Running {
    /// Frames sent so far (updated after every syscall).
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// CPU time the generating threads have used so far, ns (updated
    /// after every syscall, like [`Running::sent`]).
    pub fn cpu_ns(&self) -> u64 {
        self.shared.cpu_ns.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    pub fn stop(self) -> io::Result<FloodReport> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.wait()
    }

    /// Waits for the limit (or a stop) and reports.
    pub fn wait(mut self) -> io::Result<FloodReport> {
        let threads = std::mem::take(&mut self.threads);
        let n = threads.len();
        let mut first_err = None;
        for t in threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(io::Error::other("a flood thread panicked"));
                }
            }
        }
        let elapsed = self.started.elapsed();
        if let Some(e) = first_err {
            return Err(e);
        }
        let packets = self.shared.sent.load(Ordering::Relaxed);
        Ok(FloodReport {
            packets,
            bytes: packets * self.frame_len as u64,
            elapsed,
            pps: packets as f64 / elapsed.as_secs_f64().max(1e-9),
            kernel_ns_per_frame: self.shared.kernel_ns.load(Ordering::Relaxed) as f64,
            cpu_ns: self.cpu_ns(),
            threads: n,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Dropped without stop/wait (e.g. a test failed): stop the threads.
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays in bounds
    // for cpu < CPU_SETSIZE, checked below.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(invalid(format!("cpu {cpu} out of range")));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| invalid(format!("interface name {name:?}")))?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}: {}", io::Error::last_os_error())));
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn specs() -> Vec<FloodSpec> {
        let t4 = v4([198, 19, 1, 10]);
        let t6 = v6("2001:db8:2::10");
        let n4 = v4([198, 18, 0, 0]);
        let n6 = v6("2001:db8:1::");
        vec![
            FloodSpec::udp_reflection(n4, 15, t4),
            FloodSpec::udp_reflection(n6, 48, t6).with_payload(100),
            FloodSpec::syn(n4, 16, t4, 80),
            FloodSpec::syn(n6, 32, t6, 443),
            FloodSpec::fragments(n4, 15, t4, true),
            FloodSpec::fragments(n4, 15, t4, false),
            FloodSpec::fragments(n6, 64, t6, true),
            FloodSpec::fragments(n6, 64, t6, false),
            FloodSpec::new(FloodKind::Udp { src_port: 5000, dst_port: 6000 }, Source::Fixed(v4([198, 18, 0, 1])), t4).with_payload(7),
            FloodSpec::new(FloodKind::Tcp { src_port: 5000, dst_port: 80, flags: 0x10 }, Source::Random { net: n4, len: 24 }, t4).with_payload(5),
        ]
    }

    /// Checksums recomputed from scratch over the frame (the sum including
    /// the stored checksum folds to 0).
    fn check_frame(spec: &FloodSpec, f: &[u8]) {
        let v4 = spec.target.is_ipv4();
        let (l4_at, proto, src, dst, l4_present) = if v4 {
            assert_eq!(internet_checksum(&[&f[14..34]]), 0, "IPv4 header checksum");
            let frag = u16::from_be_bytes([f[20], f[21]]);
            (34, f[23], &f[26..30], &f[30..34], frag & 0x1fff == 0)
        } else {
            let nh = f[20];
            if nh == PROTO_FRAG6 {
                let off = u16::from_be_bytes([f[56], f[57]]) & !7;
                (62, f[54], &f[22..38], &f[38..54], off == 0)
            } else {
                (54, nh, &f[22..38], &f[38..54], true)
            }
        };
        let first_fragment = matches!(spec.kind, FloodKind::Fragment { first: true, .. });
        if l4_present && !first_fragment {
            let l4 = &f[l4_at..];
            let pseudo: Vec<u8> = if v4 {
                [src, dst, &[0, proto], &(l4.len() as u16).to_be_bytes()].concat()
            } else {
                [src, dst, &(l4.len() as u32).to_be_bytes()[..], &[0, 0, 0, proto]].concat()
            };
            assert_eq!(internet_checksum(&[&pseudo, l4]), 0, "transport checksum of {spec}");
        }
        // Source inside its range.
        if let Source::Random { net, len } = spec.source {
            match net {
                IpAddr::V4(n) => {
                    let s = u32::from_be_bytes(src.try_into().unwrap());
                    let m = u32::MAX << (32 - len);
                    assert_eq!(s & m, u32::from(n) & m);
                }
                IpAddr::V6(n) => {
                    let s = u128::from_be_bytes(src.try_into().unwrap());
                    let m = u128::MAX << (128 - len);
                    assert_eq!(s & m, u128::from(n) & m);
                }
            }
        }
        match &spec.kind {
            FloodKind::UdpReflection { src_ports } => {
                let sp = u16::from_be_bytes([f[l4_at], f[l4_at + 1]]);
                let dp = u16::from_be_bytes([f[l4_at + 2], f[l4_at + 3]]);
                assert!(src_ports.contains(&sp) && dp >= 1024, "ports {sp} -> {dp}");
            }
            FloodKind::Syn { dst_port } => {
                let sp = u16::from_be_bytes([f[l4_at], f[l4_at + 1]]);
                assert!(sp >= 1024);
                assert_eq!(u16::from_be_bytes([f[l4_at + 2], f[l4_at + 3]]), *dst_port);
                assert_eq!(f[l4_at + 13], 0x02, "SYN only");
            }
            _ => {}
        }
    }

    #[test]
    fn user_space_frames_are_valid() {
        let mut x = 0x1234_5678u32;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for spec in specs() {
            let layout = Layout::build(&spec).unwrap();
            check_frame(&spec, &layout.frame);
            for _ in 0..200 {
                check_frame(&spec, &layout.apply(&mut rand));
            }
        }
    }

    #[test]
    fn refuses_other_addresses() {
        let t = v4([198, 19, 1, 10]);
        assert!(Layout::build(&FloodSpec::udp_reflection(v4([10, 0, 0, 0]), 8, t)).is_err());
        assert!(Layout::build(&FloodSpec::udp_reflection(v4([198, 18, 0, 0]), 14, t)).is_err());
        assert!(Layout::build(&FloodSpec::syn(v4([198, 18, 0, 0]), 15, v4([192, 0, 2, 1]), 80)).is_err());
        assert!(Layout::build(&FloodSpec::syn(v6("2001:db8::"), 32, t, 80)).is_err());
    }

    /// A live flood out of a veth in a namespace of its own sends exactly
    /// the frames asked for, or runs for the time asked (needs root).
    #[test]
    fn live_flood_sends_what_it_is_asked() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        struct Ns(String);
        impl Drop for Ns {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let ns = Ns(format!("efflood{}", std::process::id()));
        let ip = |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
        ip(&["netns", "add", &ns.0]);
        ip(&["-n", &ns.0, "link", "add", "fla", "type", "veth", "peer", "name", "flb"]);
        ip(&["-n", &ns.0, "link", "set", "fla", "up"]);
        ip(&["-n", &ns.0, "link", "set", "flb", "up"]);
        let flood = Arc::new(Flood::new(FloodSpec::syn(v4([198, 18, 0, 0]), 15, v4([198, 19, 1, 10]), 80)).unwrap());
        let at = Endpoint { netns: Some(ns.0.clone()), interface: "fla".into(), cpus: vec![0] };
        let tuning = Tuning { chunk: 10_000, ..Tuning::default() };
        let r = flood.run(&at, Limit::Packets(123_456), tuning).unwrap();
        assert_eq!(r.packets, 123_456);
        assert!(r.pps > 0.0 && r.cpu_ns > 0, "{r:?}");
        let r = flood.run(&at, Limit::For(Duration::from_millis(200)), tuning).unwrap();
        assert!(r.packets > 0 && r.elapsed >= Duration::from_millis(200), "{r:?}");
        let bad = Endpoint { interface: "nosuchif".into(), ..at };
        assert!(flood.run(&bad, Limit::Packets(10), tuning).is_err());
    }

    /// The kernel's program makes valid, varied frames (needs root).
    #[test]
    fn kernel_frames_are_valid_and_vary() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        for spec in specs() {
            let flood = Flood::new(spec.clone()).unwrap();
            let mut seen = std::collections::HashSet::new();
            for _ in 0..50 {
                let f = flood.kernel_sample().unwrap();
                assert_eq!(f.len(), flood.frame_len());
                check_frame(&spec, &f);
                seen.insert(f);
            }
            // Random sources in a /24 and fixed ports: 256 possible frames,
            // so 50 draws repeat some (about 45 distinct on average, 40 or
            // fewer now and then); fewer than 26 would be astronomically
            // unlikely. A fixed source gives one frame.
            let expect_varied = matches!(spec.source, Source::Random { .. });
            assert_eq!(seen.len() > 25, expect_varied, "{spec}: {} distinct frames of 50", seen.len());
        }
    }
}
