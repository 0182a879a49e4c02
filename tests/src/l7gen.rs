//! Crafted application-layer payloads for the domain-blocking tests, and the
//! frames that carry them:
//!
//! * DNS queries ([`DnsQuery`], [`dns_query`]) and broken ones
//!   ([`DnsMalformation`]), over UDP or TCP ([`dns_tcp`]: 2-byte length
//!   prefix);
//! * TLS ClientHellos ([`ClientHello`]) shaped like current browsers (GREASE,
//!   shuffled extensions, ECH, a 1216-byte X25519MLKEM768 key share, padding),
//!   the offsets of their server_name extension ([`SniLayout`],
//!   [`find_sni`]), split points for two-segment tests
//!   ([`split_before_sni`], [`split_inside_sni`]), record-layer
//!   fragmentation, wrong content types, truncation and SSLv2 hellos;
//! * HTTP/1.x requests ([`http_request`]) with awkward Host headers
//!   ([`HostVariant`]);
//! * Ethernet (optionally 802.1Q / QinQ) + IPv4 / IPv6 (optionally with
//!   extension headers) + TCP / UDP frames ([`Flow`], [`tcp_frames`],
//!   [`dns_frame`], [`tls_frames`], [`http_frame`]), built with etherparse's
//!   `PacketBuilder` so that lengths and checksums are right.
//!
//! Payload builders return the payload bytes only. Every offset reported here
//! is an offset into the payload, that is into the TCP or UDP payload of the
//! first segment. Addresses are drawn from 198.18.0.0/15 and 2001:db8::/32.
//! Everything that is random is seeded, so a failing case replays exactly.
use std::net::IpAddr;
use std::ops::Range;

use etherparse::{
    IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header,
    Ipv6RawExtHeader, PacketBuilder, PacketBuilderStep, TcpHeader, TcpOptionElement, VlanId,
};
use rand::{rngs::SmallRng, seq::SliceRandom, Rng, RngCore, SeedableRng};

use crate::pktgen::{inside, v6};

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend(v.to_be_bytes());
}

fn push_u24(out: &mut Vec<u8>, v: usize) {
    assert!(v < 1 << 24, "{v} does not fit 24 bits");
    out.extend(&(v as u32).to_be_bytes()[1..]);
}

/// `len` as a 16-bit length field; panics when it does not fit, since the
/// structure could not be encoded at all.
fn len16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or_else(|_| panic!("length {len} does not fit a 16-bit length field"))
}

fn push_vec16(out: &mut Vec<u8>, body: &[u8]) {
    push_u16(out, len16(body.len()));
    out.extend(body);
}

fn random_bytes(rng: &mut SmallRng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

// ---------------------------------------------------------------- DNS ----

/// Query types used by the tests.
pub mod qtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const SVCB: u16 = 64;
    pub const HTTPS: u16 = 65;
    pub const ANY: u16 = 255;
}

/// Length of the DNS header; the question name starts right after it.
pub const DNS_HEADER_LEN: usize = 12;
/// Offset of the question name in a DNS message over UDP (add 2 over TCP).
pub const DNS_QNAME_OFFSET: usize = DNS_HEADER_LEN;
/// Class IN.
pub const DNS_CLASS_IN: u16 = 1;

/// An EDNS(0) OPT pseudo-record in the additional section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub dnssec_ok: bool,
    /// (option code, option data), e.g. (10, 8-byte client cookie).
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Default for Edns {
    fn default() -> Self {
        Edns { udp_size: 1232, dnssec_ok: false, options: Vec::new() }
    }
}

/// Ways to break a query, for differential tests of the DNS name parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsMalformation {
    /// A 64-byte label (length byte 0x40, a reserved label type) in front of
    /// the name.
    LabelTooLong,
    /// The name's first label, then a compression pointer (0xc00c) back to the
    /// start of the question name: a loop. Questions never use compression.
    CompressionPointerInQuestion,
    /// The name's labels, then a label claiming 63 bytes of which only 2 are
    /// in the message; no type or class.
    NameRunsPastEnd,
    /// The name's labels and nothing after them: no terminating zero, no type
    /// or class.
    NoTerminatingZero,
    /// QDCOUNT is 0 although the question is present.
    QdcountZero,
    /// QR=1: a response, not a query.
    IsResponse,
    /// Opcode 2 (STATUS) instead of 0 (QUERY).
    OpcodeNotQuery,
    /// Only the first n (< 12) bytes of the header.
    TruncatedHeader(usize),
    /// Four 63-byte labels in front of the name: the encoded name exceeds 255
    /// bytes although every label is valid.
    NameOver255Bytes,
    /// Exactly n labels: one-letter labels `a` in front of the name's own
    /// (n must be at least the name's label count). With enough labels the
    /// name is also over 255 bytes (each extra label adds 2).
    TooManyLabels(usize),
}

/// A standard query with one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    pub id: u16,
    /// Dotted name; one trailing dot is allowed; case is kept as given.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Recursion desired.
    pub rd: bool,
    pub edns: Option<Edns>,
}

/// The labels of a dotted name; "" and "." are the root (no labels).
fn name_labels(name: &str) -> Vec<&str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        Vec::new()
    } else {
        name.split('.').collect()
    }
}

/// Wire form of `labels` followed by the terminating zero, with no checks at
/// all (labels longer than 63 bytes get a wrong length byte; use this for
/// deliberately broken names).
pub fn encode_labels<L: AsRef<[u8]>>(labels: &[L]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in labels {
        let l = l.as_ref();
        out.push(l.len() as u8);
        out.extend(l);
    }
    out.push(0);
    out
}

/// Wire form of a dotted name (RFC 1035 label format, terminating zero).
/// Panics on empty labels, labels over 63 bytes or names over 255 bytes:
/// broken names come from [`DnsMalformation`] or [`encode_labels`].
pub fn encode_name(name: &str) -> Vec<u8> {
    let labels = name_labels(name);
    for l in &labels {
        assert!(!l.is_empty(), "empty label in {name:?}");
        assert!(l.len() <= 63, "label {l:?} of {name:?} is over 63 bytes");
    }
    let out = encode_labels(&labels);
    assert!(out.len() <= 255, "{name:?} is {} bytes encoded, over 255", out.len());
    out
}

impl DnsQuery {
    /// Class IN, RD set, no EDNS.
    pub fn new(id: u16, name: &str, qtype: u16) -> Self {
        DnsQuery { id, name: name.to_string(), qtype, qclass: DNS_CLASS_IN, rd: true, edns: None }
    }

    pub fn with_edns(mut self, edns: Edns) -> Self {
        self.edns = Some(edns);
        self
    }

    fn flags(&self) -> u16 {
        if self.rd {
            0x0100
        } else {
            0
        }
    }

    /// Header, question with `qname` (wire form, used verbatim) and the
    /// optional OPT record.
    fn assemble(&self, flags: u16, qdcount: u16, qname: &[u8], with_type: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(DNS_HEADER_LEN + qname.len() + 4 + 11);
        push_u16(&mut out, self.id);
        push_u16(&mut out, flags);
        push_u16(&mut out, qdcount);
        push_u16(&mut out, 0); // ANCOUNT
        push_u16(&mut out, 0); // NSCOUNT
        push_u16(&mut out, self.edns.is_some() as u16); // ARCOUNT
        out.extend(qname);
        if with_type {
            push_u16(&mut out, self.qtype);
            push_u16(&mut out, self.qclass);
            if let Some(edns) = &self.edns {
                out.push(0); // root owner name
                push_u16(&mut out, qtype::OPT);
                push_u16(&mut out, edns.udp_size);
                out.extend([0, 0]); // extended RCODE, version
                push_u16(&mut out, if edns.dnssec_ok { 0x8000 } else { 0 });
                let mut rdata = Vec::new();
                for (code, data) in &edns.options {
                    push_u16(&mut rdata, *code);
                    push_vec16(&mut rdata, data);
                }
                push_vec16(&mut out, &rdata);
            }
        }
        out
    }

    /// The query as sent over UDP.
    pub fn encode(&self) -> Vec<u8> {
        self.assemble(self.flags(), 1, &encode_name(&self.name), true)
    }

    /// The query with the name given in wire form, used verbatim (anything
    /// goes: binary labels, dots inside labels, pointers).
    pub fn encode_with_qname_wire(&self, qname: &[u8]) -> Vec<u8> {
        self.assemble(self.flags(), 1, qname, true)
    }

    /// The query broken as `m` says.
    pub fn encode_malformed(&self, m: DnsMalformation) -> Vec<u8> {
        let labels = name_labels(&self.name);
        let mut no_zero = encode_labels(&labels);
        no_zero.pop();
        match m {
            DnsMalformation::LabelTooLong => {
                let long = vec![b'a'; 64];
                let mut all: Vec<&[u8]> = vec![&long];
                all.extend(labels.iter().map(|l| l.as_bytes()));
                self.assemble(self.flags(), 1, &encode_labels(&all), true)
            }
            DnsMalformation::CompressionPointerInQuestion => {
                let mut q = encode_labels(&labels[..labels.len().min(1)]);
                q.pop();
                q.extend([0xc0, DNS_QNAME_OFFSET as u8]);
                self.assemble(self.flags(), 1, &q, true)
            }
            DnsMalformation::NameRunsPastEnd => {
                let mut q = no_zero;
                q.extend([63, b'a', b'b']);
                self.assemble(self.flags(), 1, &q, false)
            }
            DnsMalformation::NoTerminatingZero => self.assemble(self.flags(), 1, &no_zero, false),
            DnsMalformation::QdcountZero => self.assemble(self.flags(), 0, &encode_labels(&labels), true),
            DnsMalformation::IsResponse => self.assemble(self.flags() | 0x8000, 1, &encode_labels(&labels), true),
            DnsMalformation::OpcodeNotQuery => self.assemble(self.flags() | (2 << 11), 1, &encode_labels(&labels), true),
            DnsMalformation::TruncatedHeader(n) => {
                assert!(n < DNS_HEADER_LEN, "TruncatedHeader({n}) must cut inside the 12-byte header");
                let mut out = self.encode();
                out.truncate(n);
                out
            }
            DnsMalformation::NameOver255Bytes => {
                let long = vec![b'a'; 63];
                let mut all: Vec<&[u8]> = vec![&long; 4];
                all.extend(labels.iter().map(|l| l.as_bytes()));
                self.assemble(self.flags(), 1, &encode_labels(&all), true)
            }
            DnsMalformation::TooManyLabels(n) => {
                assert!(n >= labels.len(), "TooManyLabels({n}) is fewer than the {} labels of {:?}", labels.len(), self.name);
                let mut all: Vec<&str> = vec!["a"; n - labels.len()];
                all.extend(&labels);
                self.assemble(self.flags(), 1, &encode_labels(&all), true)
            }
        }
    }
}

/// A standard query: one question, class IN, RD set, no EDNS.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    DnsQuery::new(id, name, qtype).encode()
}

/// [`dns_query`] with an OPT record advertising `udp_size`.
pub fn dns_query_edns(id: u16, name: &str, qtype: u16, udp_size: u16) -> Vec<u8> {
    DnsQuery::new(id, name, qtype).with_edns(Edns { udp_size, ..Edns::default() }).encode()
}

/// [`dns_query`] broken as `m` says.
pub fn dns_query_malformed(id: u16, name: &str, qtype: u16, m: DnsMalformation) -> Vec<u8> {
    DnsQuery::new(id, name, qtype).encode_malformed(m)
}

/// A DNS message as carried over TCP: 2-byte length prefix.
pub fn dns_tcp(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 2);
    push_vec16(&mut out, msg);
    out
}

// ---------------------------------------------------------------- TLS ----

/// TLS record content types.
pub mod content_type {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

/// TLS extension types the builder emits.
pub mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const STATUS_REQUEST: u16 = 5;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const EC_POINT_FORMATS: u16 = 11;
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    pub const ALPN: u16 = 16;
    pub const SIGNED_CERTIFICATE_TIMESTAMP: u16 = 18;
    pub const PADDING: u16 = 21;
    pub const EXTENDED_MASTER_SECRET: u16 = 23;
    pub const COMPRESS_CERTIFICATE: u16 = 27;
    pub const SESSION_TICKET: u16 = 35;
    pub const SUPPORTED_VERSIONS: u16 = 43;
    pub const PSK_KEY_EXCHANGE_MODES: u16 = 45;
    pub const KEY_SHARE: u16 = 51;
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
    pub const RENEGOTIATION_INFO: u16 = 0xff01;
}

/// Named groups.
pub mod group {
    pub const SECP256R1: u16 = 0x0017;
    pub const SECP384R1: u16 = 0x0018;
    pub const X25519: u16 = 0x001d;
    pub const MLKEM768: u16 = 0x0201;
    pub const X25519MLKEM768: u16 = 0x11ec;
}

/// Size of the X25519MLKEM768 key share Chrome and Firefox send.
pub const X25519MLKEM768_SHARE_LEN: usize = 1216;

/// Length of a TLS record header (type, version, length).
pub const TLS_RECORD_HEADER_LEN: usize = 5;

/// Whether `v` is a GREASE value (RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa).
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 12 == (v >> 4) & 0xf
}

/// Order of the extensions in the ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtOrder {
    /// GREASE, server_name, the rest in a fixed browser-like order, ECH,
    /// GREASE, padding.
    Canonical,
    /// The canonical list with everything between the two GREASE
    /// extensions shuffled with the record's seed (what Chrome does).
    Shuffled,
    /// server_name first of all.
    SniFirst,
    /// server_name last of all (after the 1216-byte key share and padding):
    /// the usual way to get it into a second TCP segment.
    SniLast,
    /// The listed types first in this order, the others after them in
    /// canonical order.
    Explicit(Vec<u16>),
}

/// Where the server_name extension is, in payload offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniLayout {
    /// The whole extension: 4-byte header (type, length) and body.
    pub ext: Range<usize>,
    /// The first host_name entry's name bytes, when the body is well formed
    /// (9 bytes into the extension).
    pub name: Option<Range<usize>>,
}

/// A ClientHello builder. `Default` gives a plain TLS 1.3 hello for
/// `example.com`; [`ClientHello::chrome_like`] a current browser's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// host_name of the server_name extension; `None` leaves the extension
    /// out (unless `sni_ext_data` is set).
    pub sni: Option<String>,
    /// Body of the server_name extension, used verbatim instead of the one
    /// built from `sni` (for malformed-SNI tests; see [`sni_ext_body`]).
    pub sni_ext_data: Option<Vec<u8>>,
    pub extensions_order: ExtOrder,
    /// GREASE cipher suite, two GREASE extensions (first and last but
    /// padding), GREASE group, key share and version.
    pub grease: bool,
    /// A GREASE-style encrypted_client_hello extension (0xfe0d, outer
    /// type): a random enc and payload.
    pub ech: bool,
    /// Legacy session id length; over 32 is invalid TLS (for negative tests).
    pub session_id_len: u8,
    /// Number of (non-GREASE) cipher suites.
    pub cipher_suites: usize,
    /// Length of the first key share: 32 is X25519 only; 1216 is
    /// X25519MLKEM768 followed by an X25519 share; 65 / 97 secp256r1 /
    /// secp384r1; 1184 ML-KEM-768; other lengths are labelled
    /// X25519MLKEM768. 0 sends no share (besides GREASE).
    pub key_share_bytes: usize,
    /// ALPN protocols; empty leaves the extension out.
    pub alpn: Vec<String>,
    /// Data length of a padding extension (type 21), if any.
    pub padding: Option<usize>,
}

impl Default for ClientHello {
    fn default() -> Self {
        ClientHello {
            sni: Some("example.com".to_string()),
            sni_ext_data: None,
            extensions_order: ExtOrder::Canonical,
            grease: false,
            ech: false,
            session_id_len: 32,
            cipher_suites: 15,
            key_share_bytes: 32,
            alpn: vec!["h2".to_string(), "http/1.1".to_string()],
            padding: None,
        }
    }
}

const CIPHER_SUITES: [u16; 15] =
    [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035];

const SIGNATURE_ALGORITHMS: [u16; 8] = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];

fn key_share_group(len: usize) -> u16 {
    match len {
        32 => group::X25519,
        65 => group::SECP256R1,
        97 => group::SECP384R1,
        1184 => group::MLKEM768,
        _ => group::X25519MLKEM768,
    }
}

/// A server_name extension body listing `entries` (name type, name bytes)
/// with correct lengths; edit the result for inconsistent ones.
pub fn sni_ext_body(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in entries {
        list.push(*kind);
        push_vec16(&mut list, name);
    }
    let mut out = Vec::new();
    push_vec16(&mut out, &list);
    out
}

/// A record of `content_type` with record-layer `version` around `fragment`.
pub fn tls_record(content_type: u8, version: u16, fragment: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TLS_RECORD_HEADER_LEN + fragment.len());
    out.push(content_type);
    push_u16(&mut out, version);
    push_vec16(&mut out, fragment);
    out
}

impl ClientHello {
    /// Default shape with this server name.
    pub fn new(sni: &str) -> Self {
        ClientHello { sni: Some(sni.to_string()), ..Self::default() }
    }

    /// What a current Chrome sends: GREASE, shuffled extensions, ECH (GREASE),
    /// a 1216-byte X25519MLKEM768 share, 15 cipher suites, h2 and http/1.1.
    /// About 1.8 kB: it takes two full-size TCP segments.
    pub fn chrome_like(sni: &str) -> Self {
        ClientHello {
            sni: Some(sni.to_string()),
            extensions_order: ExtOrder::Shuffled,
            grease: true,
            ech: true,
            key_share_bytes: X25519MLKEM768_SHARE_LEN,
            ..Self::default()
        }
    }

    /// The extensions as (type, data), in the order asked for.
    fn extensions(&self, rng: &mut SmallRng, greases: &[u16; 5]) -> Vec<(u16, Vec<u8>)> {
        let [_, grease_group, grease_version, grease_ext1, grease_ext2] = *greases;
        let mut core: Vec<(u16, Vec<u8>)> = Vec::new();
        if let Some(body) = &self.sni_ext_data {
            core.push((ext::SERVER_NAME, body.clone()));
        } else if let Some(name) = &self.sni {
            core.push((ext::SERVER_NAME, sni_ext_body(&[(0, name.as_bytes())])));
        }
        core.push((ext::EXTENDED_MASTER_SECRET, Vec::new()));
        core.push((ext::RENEGOTIATION_INFO, vec![0]));
        let mut groups = Vec::new();
        if self.grease {
            push_u16(&mut groups, grease_group);
        }
        let main_group = key_share_group(self.key_share_bytes);
        if self.key_share_bytes > 0 && main_group != group::X25519 {
            push_u16(&mut groups, main_group);
        }
        for g in [group::X25519, group::SECP256R1, group::SECP384R1] {
            if g != main_group || self.key_share_bytes == 0 || main_group == group::X25519 {
                push_u16(&mut groups, g);
            }
        }
        let mut data = Vec::new();
        push_vec16(&mut data, &groups);
        core.push((ext::SUPPORTED_GROUPS, data));
        core.push((ext::EC_POINT_FORMATS, vec![1, 0]));
        core.push((ext::SESSION_TICKET, Vec::new()));
        if !self.alpn.is_empty() {
            let mut list = Vec::new();
            for p in &self.alpn {
                assert!(!p.is_empty() && p.len() < 256, "ALPN protocol {p:?} must be 1..=255 bytes");
                list.push(p.len() as u8);
                list.extend(p.as_bytes());
            }
            let mut data = Vec::new();
            push_vec16(&mut data, &list);
            core.push((ext::ALPN, data));
        }
        core.push((ext::STATUS_REQUEST, vec![1, 0, 0, 0, 0]));
        let mut algs = Vec::new();
        for a in SIGNATURE_ALGORITHMS {
            push_u16(&mut algs, a);
        }
        let mut data = Vec::new();
        push_vec16(&mut data, &algs);
        core.push((ext::SIGNATURE_ALGORITHMS, data));
        core.push((ext::SIGNED_CERTIFICATE_TIMESTAMP, Vec::new()));
        let mut shares = Vec::new();
        if self.grease {
            push_u16(&mut shares, grease_group);
            push_vec16(&mut shares, &[0]);
        }
        if self.key_share_bytes > 0 {
            push_u16(&mut shares, main_group);
            push_vec16(&mut shares, &random_bytes(rng, self.key_share_bytes));
            if main_group != group::X25519 {
                push_u16(&mut shares, group::X25519);
                push_vec16(&mut shares, &random_bytes(rng, 32));
            }
        }
        let mut data = Vec::new();
        push_vec16(&mut data, &shares);
        core.push((ext::KEY_SHARE, data));
        core.push((ext::PSK_KEY_EXCHANGE_MODES, vec![1, 1]));
        let mut versions = Vec::new();
        if self.grease {
            push_u16(&mut versions, grease_version);
        }
        push_u16(&mut versions, 0x0304);
        push_u16(&mut versions, 0x0303);
        let mut data = vec![versions.len() as u8];
        data.extend(versions);
        core.push((ext::SUPPORTED_VERSIONS, data));
        core.push((ext::COMPRESS_CERTIFICATE, vec![2, 0, 2]));
        if self.ech {
            let mut data = vec![0]; // outer ClientHello
            push_u16(&mut data, 0x0001); // HKDF-SHA256
            push_u16(&mut data, 0x0001); // AES-128-GCM
            data.push(rng.random());
            push_vec16(&mut data, &random_bytes(rng, 32));
            let payload_len = 144 + 32 * rng.random_range(0..4);
            push_vec16(&mut data, &random_bytes(rng, payload_len));
            core.push((ext::ENCRYPTED_CLIENT_HELLO, data));
        }
        if self.extensions_order == ExtOrder::Shuffled {
            core.shuffle(rng);
        }
        let mut all = Vec::new();
        if self.grease {
            all.push((grease_ext1, Vec::new()));
        }
        all.extend(core);
        if self.grease {
            all.push((grease_ext2, vec![0]));
        }
        if let Some(n) = self.padding {
            all.push((ext::PADDING, vec![0; n]));
        }
        let sni_pos = all.iter().position(|(t, _)| *t == ext::SERVER_NAME);
        match (&self.extensions_order, sni_pos) {
            (ExtOrder::SniFirst, Some(i)) => {
                let e = all.remove(i);
                all.insert(0, e);
            }
            (ExtOrder::SniLast, Some(i)) => {
                let e = all.remove(i);
                all.push(e);
            }
            (ExtOrder::Explicit(order), _) => {
                all.sort_by_key(|(t, _)| order.iter().position(|o| o == t).unwrap_or(order.len()));
            }
            _ => {}
        }
        all
    }

    /// The handshake message (type 1, 24-bit length, body) and the
    /// server_name layout relative to its first byte.
    pub fn handshake(&self, rng_seed: u64) -> (Vec<u8>, Option<SniLayout>) {
        let mut rng = SmallRng::seed_from_u64(rng_seed);
        // cipher suite, group (also its key share), version, two extensions
        let mut greases = [0u16; 5];
        let mut nibbles: Vec<u16> = (0..16).collect();
        nibbles.shuffle(&mut rng);
        for (g, n) in greases.iter_mut().zip(&nibbles) {
            *g = 0x0a0a | (n << 12) | (n << 4);
        }
        let mut body = Vec::new();
        push_u16(&mut body, 0x0303);
        body.extend(random_bytes(&mut rng, 32));
        body.push(self.session_id_len);
        body.extend(random_bytes(&mut rng, self.session_id_len as usize));
        let mut suites = Vec::new();
        if self.grease {
            push_u16(&mut suites, greases[0]);
        }
        let mut extra = 0x0001u16..;
        for i in 0..self.cipher_suites {
            let s = match CIPHER_SUITES.get(i) {
                Some(&s) => s,
                None => extra.find(|v| !is_grease(*v) && !CIPHER_SUITES.contains(v)).expect("cipher suite values"),
            };
            push_u16(&mut suites, s);
        }
        push_vec16(&mut body, &suites);
        body.extend([1, 0]); // compression methods: null
        let exts = self.extensions(&mut rng, &greases);
        let mut ext_bytes = Vec::new();
        let mut sni = None;
        // body offset 4 inside the handshake message, +2 for the list length
        let ext_base = 4 + body.len() + 2;
        for (typ, data) in &exts {
            let start = ext_base + ext_bytes.len();
            push_u16(&mut ext_bytes, *typ);
            push_vec16(&mut ext_bytes, data);
            if *typ == ext::SERVER_NAME && sni.is_none() {
                let name = match (&self.sni_ext_data, &self.sni) {
                    (None, Some(n)) => Some(start + 9..start + 9 + n.len()),
                    _ => None,
                };
                sni = Some(SniLayout { ext: start..start + 4 + data.len(), name });
            }
        }
        push_vec16(&mut body, &ext_bytes);
        let mut hs = vec![1];
        push_u24(&mut hs, body.len());
        hs.extend(body);
        (hs, sni)
    }

    /// One TLS record (type 22, version 0x0301) holding the ClientHello. A
    /// record longer than 2^14 bytes is produced as asked but is not valid.
    pub fn record(&self, rng_seed: u64) -> Vec<u8> {
        self.record_with_layout(rng_seed).0
    }

    /// [`ClientHello::record`] and where its server_name extension is.
    pub fn record_with_layout(&self, rng_seed: u64) -> (Vec<u8>, Option<SniLayout>) {
        let (hs, sni) = self.handshake(rng_seed);
        let shift = |r: Range<usize>| r.start + TLS_RECORD_HEADER_LEN..r.end + TLS_RECORD_HEADER_LEN;
        let sni = sni.map(|l| SniLayout { ext: shift(l.ext), name: l.name.map(shift) });
        (tls_record(content_type::HANDSHAKE, 0x0301, &hs), sni)
    }

    /// The ClientHello fragmented over two handshake records (record-layer
    /// fragmentation): the first carries `first_fragment_len` bytes of the
    /// handshake message (0 < len < message length), the second the rest.
    /// The two records are returned back to back.
    pub fn records_fragmented(&self, rng_seed: u64, first_fragment_len: usize) -> Vec<u8> {
        let (hs, _) = self.handshake(rng_seed);
        assert!(
            first_fragment_len > 0 && first_fragment_len < hs.len(),
            "first fragment of {first_fragment_len} bytes out of 1..{}",
            hs.len()
        );
        let mut out = tls_record(content_type::HANDSHAKE, 0x0301, &hs[..first_fragment_len]);
        out.extend(tls_record(content_type::HANDSHAKE, 0x0303, &hs[first_fragment_len..]));
        out
    }
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

/// Walks one complete handshake record holding a ClientHello and returns
/// where its first server_name extension is. `None` when the record is not
/// a complete ClientHello record, is inconsistent, or has no server_name.
pub fn find_sni(record: &[u8]) -> Option<SniLayout> {
    if *record.first()? != content_type::HANDSHAKE {
        return None;
    }
    let rec_end = TLS_RECORD_HEADER_LEN + be16(record, 3)?;
    let record = record.get(..rec_end)?;
    if *record.get(5)? != 1 {
        return None;
    }
    let hs_len = u32::from_be_bytes([0, *record.get(6)?, *record.get(7)?, *record.get(8)?]) as usize;
    let body_end = 9 + hs_len;
    if body_end > rec_end {
        return None;
    }
    let mut p = 9 + 2 + 32;
    p += 1 + *record.get(p)? as usize;
    p += 2 + be16(record, p)?;
    p += 1 + *record.get(p)? as usize;
    let ext_end = p + 2 + be16(record, p)?;
    if ext_end > body_end {
        return None;
    }
    p += 2;
    while p + 4 <= ext_end {
        let typ = be16(record, p)?;
        let len = be16(record, p + 2)?;
        if p + 4 + len > ext_end {
            return None;
        }
        if typ == ext::SERVER_NAME as usize {
            let ext = p..p + 4 + len;
            let name = (|| {
                let list_len = be16(record, p + 4)?;
                let name_len = be16(record, p + 7)?;
                (len >= 5 && list_len + 2 <= len && *record.get(p + 6)? == 0 && 3 + name_len <= list_len)
                    .then_some(p + 9..p + 9 + name_len)
            })();
            return Some(SniLayout { ext, name });
        }
        p += 4 + len;
    }
    None
}

/// `buf[..n]` and `buf[n..]`.
pub fn split_at(buf: &[u8], n: usize) -> (Vec<u8>, Vec<u8>) {
    let (a, b) = buf.split_at(n);
    (a.to_vec(), b.to_vec())
}

/// `buf` cut into consecutive pieces of at most `mss` bytes (one empty piece
/// for an empty `buf`).
pub fn segments(buf: &[u8], mss: usize) -> Vec<Vec<u8>> {
    assert!(mss > 0);
    if buf.is_empty() {
        return vec![Vec::new()];
    }
    buf.chunks(mss).map(<[u8]>::to_vec).collect()
}

/// The largest split offset that leaves the whole server_name extension in
/// the second segment (the offset of its first byte). `None` when the record
/// has no server_name extension or cannot be walked.
pub fn split_before_sni(record: &[u8]) -> Option<usize> {
    find_sni(record).map(|l| l.ext.start)
}

/// A split offset `k` bytes into the server_name extension, 0 < k < the
/// extension's length: k in 1..4 cuts its type/length header, 4..9 the list
/// length, name type and name length, 9 and up the name bytes. `None` when
/// k is out of range or there is no server_name extension.
pub fn split_inside_sni(record: &[u8], k: usize) -> Option<usize> {
    let l = find_sni(record)?;
    (k > 0 && k < l.ext.len()).then_some(l.ext.start + k)
}

/// `record` with its content type byte replaced (e.g. 23, application data,
/// or 21, alert): the SNI must then not be extracted.
pub fn with_content_type(record: &[u8], content_type: u8) -> Vec<u8> {
    let mut out = record.to_vec();
    out[0] = content_type;
    out
}

/// The first `n` bytes of `buf`, length fields left claiming the rest.
pub fn truncated(buf: &[u8], n: usize) -> Vec<u8> {
    buf[..n.min(buf.len())].to_vec()
}

/// An SSLv2-format CLIENT-HELLO (2-byte header with the top bit set,
/// version 3.1) with `cipher_specs` 3-byte cipher specs, no session id and a
/// 32-byte challenge. It can carry no server name.
pub fn sslv2_client_hello(rng_seed: u64, cipher_specs: usize) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(rng_seed);
    let mut body = vec![1, 3, 1];
    push_u16(&mut body, len16(cipher_specs * 3));
    push_u16(&mut body, 0);
    push_u16(&mut body, 32);
    let specs: [[u8; 3]; 6] = [[0, 0x13, 0x01], [0, 0xc0, 0x2b], [0, 0x00, 0x2f], [0, 0x00, 0x35], [0x01, 0x00, 0x80], [0x07, 0x00, 0xc0]];
    for i in 0..cipher_specs {
        body.extend(specs[i % specs.len()]);
    }
    body.extend(random_bytes(&mut rng, 32));
    assert!(body.len() < 0x8000, "SSLv2 hello too long");
    let mut out = vec![0x80 | (body.len() >> 8) as u8, body.len() as u8];
    out.extend(body);
    out
}

// --------------------------------------------------------------- HTTP ----

/// An HTTP/1.1 request: request line, `Host:` first (when given), then
/// `headers`, then `Content-Length` when there is a body and `headers` has
/// none, a blank line and the body.
pub fn http_request(method: &str, path: &str, host: Option<&str>, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    if let Some(h) = host {
        out.extend(format!("Host: {h}\r\n").bytes());
    }
    for (k, v) in headers {
        out.extend(format!("{k}: {v}\r\n").bytes());
    }
    if !body.is_empty() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        out.extend(format!("Content-Length: {}\r\n", body.len()).bytes());
    }
    out.extend(b"\r\n");
    out.extend(body);
    out
}

/// Ways to present the Host of a GET request, for [`http_request_variant`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostVariant {
    /// `Host: example.com`.
    Plain,
    /// `host: example.com`.
    LowercaseName,
    /// `HOST: example.com`.
    UppercaseName,
    /// `Host: ExAmPlE.CoM`: the value in mixed case.
    MixedCaseValue,
    /// `Host: example.com:8080`.
    WithPort(u16),
    /// `Host: example.com.`.
    TrailingDot,
    /// `Host:\t  example.com \t`: tabs and spaces around the value.
    Whitespace,
    /// `Host:example.com`.
    NoSpace,
    /// `GET http://example.com/index.html HTTP/1.1` and a Host header.
    AbsoluteForm,
    /// `GET http://example.com/index.html HTTP/1.0` and no Host header.
    AbsoluteFormNoHost,
    /// `GET /index.html HTTP/1.0` with a Host header.
    Http10,
    /// `GET /index.html HTTP/1.0` without a Host header: no name to find.
    Http10NoHost,
    /// A folded (obs-fold) header line before Host.
    FoldedHeaderBefore,
    /// `Host:` with its value on a continuation line (obs-fold).
    FoldedHost,
    /// A header whose value is n bytes, before Host.
    LongHeaderBefore(usize),
    /// Filler headers so that the `Host:` line starts at exactly this byte
    /// offset (must leave room for at least a 9-byte filler line).
    HostAt(usize),
    /// Lines ending in a bare LF instead of CRLF.
    BareLf,
    /// A second Host header with this other value after the first.
    DuplicateHost(String),
}

/// A GET of `/index.html` for `host`, presented as `v` says, with a
/// User-Agent and an Accept header after Host.
pub fn http_request_variant(host: &str, v: &HostVariant) -> Vec<u8> {
    let path = "/index.html";
    let tail = "User-Agent: l7gen/1\r\nAccept: */*\r\n\r\n";
    let plain = |name: &str, value: &str| format!("GET {path} HTTP/1.1\r\n{name}: {value}\r\n{tail}");
    let s = match v {
        HostVariant::Plain => plain("Host", host),
        HostVariant::LowercaseName => plain("host", host),
        HostVariant::UppercaseName => plain("HOST", host),
        HostVariant::MixedCaseValue => {
            let mixed: String = host
                .chars()
                .enumerate()
                .map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            plain("Host", &mixed)
        }
        HostVariant::WithPort(port) => plain("Host", &format!("{host}:{port}")),
        HostVariant::TrailingDot => plain("Host", &format!("{host}.")),
        HostVariant::Whitespace => format!("GET {path} HTTP/1.1\r\nHost:\t  {host} \t\r\n{tail}"),
        HostVariant::NoSpace => format!("GET {path} HTTP/1.1\r\nHost:{host}\r\n{tail}"),
        HostVariant::AbsoluteForm => format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n{tail}"),
        HostVariant::AbsoluteFormNoHost => format!("GET http://{host}{path} HTTP/1.0\r\n{tail}"),
        HostVariant::Http10 => format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{tail}"),
        HostVariant::Http10NoHost => format!("GET {path} HTTP/1.0\r\n{tail}"),
        HostVariant::FoldedHeaderBefore => {
            format!("GET {path} HTTP/1.1\r\nX-Folded: first part\r\n \tsecond part\r\nHost: {host}\r\n{tail}")
        }
        HostVariant::FoldedHost => format!("GET {path} HTTP/1.1\r\nHost:\r\n {host}\r\n{tail}"),
        HostVariant::LongHeaderBefore(n) => {
            format!("GET {path} HTTP/1.1\r\nX-Long: {}\r\nHost: {host}\r\n{tail}", "a".repeat(*n))
        }
        HostVariant::HostAt(at) => {
            let line = format!("GET {path} HTTP/1.1\r\n");
            // Filler lines "X-Pad: <k bytes>\r\n" are 9 + k bytes; at most
            // about 1000 bytes each, like real-world headers.
            let total = at.checked_sub(line.len()).filter(|t| *t >= 9).unwrap_or_else(|| {
                panic!("HostAt({at}): the Host line cannot start before byte {}", line.len() + 9)
            });
            let lines = total.div_ceil(1000);
            let mut fill = String::new();
            for i in 0..lines {
                let size = total / lines + usize::from(i < total % lines);
                fill.push_str(&format!("X-Pad: {}\r\n", "p".repeat(size - 9)));
            }
            format!("{line}{fill}Host: {host}\r\n{tail}")
        }
        HostVariant::BareLf => format!("GET {path} HTTP/1.1\nHost: {host}\nUser-Agent: l7gen/1\nAccept: */*\n\n"),
        HostVariant::DuplicateHost(other) => format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nHost: {other}\r\n{tail}"),
    };
    s.into_bytes()
}

/// The value of the first header called `name` (any case), trimmed of spaces
/// and tabs, as a range of `req`. Lines may end in CRLF or LF; folded
/// continuation lines are not joined; stops at the blank line.
pub fn find_header_value(req: &[u8], name: &str) -> Option<Range<usize>> {
    let mut p = req.iter().position(|&b| b == b'\n')? + 1;
    while p < req.len() {
        let eol = req[p..].iter().position(|&b| b == b'\n').map_or(req.len(), |i| p + i);
        let line_end = if eol > p && req[eol - 1] == b'\r' { eol - 1 } else { eol };
        let line = &req[p..line_end];
        if line.is_empty() {
            return None;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
                let ws = |b: &u8| *b == b' ' || *b == b'\t';
                let mut s = p + colon + 1;
                let mut e = line_end;
                while s < e && ws(&req[s]) {
                    s += 1;
                }
                while e > s && ws(&req[e - 1]) {
                    e -= 1;
                }
                return Some(s..e);
            }
        }
        p = eol + 1;
    }
    None
}

// ------------------------------------------------------------- frames ----

/// Source MAC of every frame.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Destination MAC of every frame.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// TCP flag bits for [`tcp_frame`].
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// IPv6 extension headers a [`Flow`] can carry (at most one of each; they
/// are written in RFC 8200 order whatever the order given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V6Ext {
    /// 8-byte hop-by-hop options header (PadN).
    HopByHop,
    /// 8-byte destination options header (PadN).
    DestinationOptions,
    /// Fragment header with offset 0 and M=0 (an atomic fragment: the
    /// transport header and payload are all there).
    AtomicFragment,
}

/// Transport for [`dns_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    /// One TCP segment (PSH|ACK at the flow's `seq`) with the 2-byte length
    /// prefix.
    Tcp,
}

/// One direction of a connection: addresses, ports, encapsulation and the
/// TCP sequence number of the first payload byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// 802.1Q VLAN ids, outermost first: none, one (TPID 0x8100) or two
    /// (QinQ: 0x88a8 then 0x8100).
    pub vlans: Vec<u16>,
    /// IPv6 only.
    pub v6_exts: Vec<V6Ext>,
    /// Sequence number of the first payload byte.
    pub seq: u32,
    /// Acknowledgment number of every segment.
    pub ack: u32,
    /// NOP, NOP, timestamps (12 bytes of TCP options, data offset 8), as
    /// Linux sends on established connections.
    pub tcp_timestamps: bool,
    pub ttl: u8,
}

impl Flow {
    pub fn with_addrs(src: IpAddr, dst: IpAddr, dport: u16) -> Flow {
        Flow {
            src,
            dst,
            sport: 40000,
            dport,
            vlans: Vec::new(),
            v6_exts: Vec::new(),
            seq: 0x1000_0001,
            ack: 0x2000_0001,
            tcp_timestamps: false,
            ttl: 64,
        }
    }

    /// 198.18.0.10:40000 -> 198.19.0.53:`dport`.
    pub fn v4(dport: u16) -> Flow {
        Flow::with_addrs(IpAddr::from([198, 18, 0, 10]), IpAddr::from([198, 19, 0, 53]), dport)
    }

    /// [2001:db8::10]:40000 -> [2001:db8:1::53]:`dport`.
    pub fn v6(dport: u16) -> Flow {
        Flow::with_addrs(
            IpAddr::from(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10])),
            IpAddr::from(v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x53])),
            dport,
        )
    }

    /// Random addresses in 198.18.0.0/15 or 2001:db8::/32, a random
    /// ephemeral source port and sequence numbers.
    pub fn random(rng: &mut SmallRng, ipv6: bool, dport: u16) -> Flow {
        let (src, dst) = if ipv6 {
            let base = v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]);
            (IpAddr::from(inside(rng, base, 32)), IpAddr::from(inside(rng, base, 32)))
        } else {
            (IpAddr::from(inside(rng, [198, 18, 0, 0], 15)), IpAddr::from(inside(rng, [198, 18, 0, 0], 15)))
        };
        Flow { sport: rng.random_range(32768..=60999), seq: rng.random(), ack: rng.random(), ..Flow::with_addrs(src, dst, dport) }
    }

    pub fn with_vlans(mut self, vlans: &[u16]) -> Flow {
        self.vlans = vlans.to_vec();
        self
    }

    pub fn with_v6_exts(mut self, exts: &[V6Ext]) -> Flow {
        self.v6_exts = exts.to_vec();
        self
    }

    pub fn with_ports(mut self, sport: u16, dport: u16) -> Flow {
        self.sport = sport;
        self.dport = dport;
        self
    }

    pub fn with_seq(mut self, seq: u32) -> Flow {
        self.seq = seq;
        self
    }

    pub fn with_tcp_timestamps(mut self) -> Flow {
        self.tcp_timestamps = true;
        self
    }

    /// The other direction (addresses and ports swapped, seq and ack too).
    pub fn reversed(&self) -> Flow {
        Flow {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            seq: self.ack,
            ack: self.seq,
            ..self.clone()
        }
    }

    /// Ethernet, VLAN tags and IP header builder step.
    fn ip_step(&self) -> PacketBuilderStep<IpHeaders> {
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                assert!(self.v6_exts.is_empty(), "IPv6 extension headers on an IPv4 flow");
                let mut h = Ipv4Header::new(0, self.ttl, IpNumber::TCP, s.octets(), d.octets()).expect("IPv4 header");
                h.dont_fragment = true;
                IpHeaders::Ipv4(h, Ipv4Extensions::default())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = Ipv6Header { hop_limit: self.ttl, source: s.octets(), destination: d.octets(), ..Default::default() };
                let mut exts = Ipv6Extensions::default();
                let pad_n = [1u8, 4, 0, 0, 0, 0];
                for e in &self.v6_exts {
                    match e {
                        V6Ext::HopByHop => {
                            assert!(exts.hop_by_hop_options.is_none(), "two hop-by-hop headers");
                            exts.hop_by_hop_options = Some(Ipv6RawExtHeader::new_raw(IpNumber::TCP, &pad_n).expect("PadN"));
                        }
                        V6Ext::DestinationOptions => {
                            assert!(exts.destination_options.is_none(), "two destination options headers");
                            exts.destination_options = Some(Ipv6RawExtHeader::new_raw(IpNumber::TCP, &pad_n).expect("PadN"));
                        }
                        V6Ext::AtomicFragment => {
                            assert!(exts.fragment.is_none(), "two fragment headers");
                            exts.fragment = Some(Ipv6FragmentHeader::new(IpNumber::TCP, IpFragOffset::ZERO, false, 0x4c37_0001));
                        }
                    }
                }
                IpHeaders::Ipv6(h, exts)
            }
            _ => panic!("flow mixes IPv4 and IPv6: {} -> {}", self.src, self.dst),
        };
        let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        let vid = |v: u16| VlanId::try_new(v).unwrap_or_else(|_| panic!("VLAN id {v} over 4095"));
        match self.vlans[..] {
            [] => eth.ip(ip),
            [v] => eth.single_vlan(vid(v)).ip(ip),
            [outer, inner] => eth.double_vlan(vid(outer), vid(inner)).ip(ip),
            _ => panic!("at most two VLAN tags"),
        }
    }
}

/// One TCP segment of `flow` with sequence number `seq`, `flags`
/// ([`tcp_flags`]; the ack number is set when ACK is) and `payload`.
pub fn tcp_frame(flow: &Flow, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut tcp = TcpHeader::new(flow.sport, flow.dport, seq, 64240);
    tcp.fin = flags & tcp_flags::FIN != 0;
    tcp.syn = flags & tcp_flags::SYN != 0;
    tcp.rst = flags & tcp_flags::RST != 0;
    tcp.psh = flags & tcp_flags::PSH != 0;
    tcp.ack = flags & tcp_flags::ACK != 0;
    if tcp.ack {
        tcp.acknowledgment_number = flow.ack;
    }
    if flow.tcp_timestamps {
        tcp.set_options(&[TcpOptionElement::Noop, TcpOptionElement::Noop, TcpOptionElement::Timestamp(0x0102_0304, 0x0a0b_0c0d)])
            .expect("timestamp option");
    }
    let builder = flow.ip_step().tcp_header(tcp);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).expect("TCP frame");
    out
}

/// One UDP datagram of `flow` carrying `payload`.
pub fn udp_frame(flow: &Flow, payload: &[u8]) -> Vec<u8> {
    let builder = flow.ip_step().udp(flow.sport, flow.dport);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).expect("UDP frame");
    out
}

/// The SYN opening `flow` (sequence number `flow.seq - 1`).
pub fn syn_frame(flow: &Flow) -> Vec<u8> {
    tcp_frame(flow, flow.seq.wrapping_sub(1), tcp_flags::SYN, &[])
}

/// PSH|ACK segments carrying `payloads` back to back: the first at
/// `flow.seq`, each next one at the previous seq plus its length.
pub fn tcp_frames<P: AsRef<[u8]>>(flow: &Flow, payloads: &[P]) -> Vec<Vec<u8>> {
    let mut seq = flow.seq;
    payloads
        .iter()
        .map(|p| {
            let p = p.as_ref();
            let f = tcp_frame(flow, seq, tcp_flags::PSH | tcp_flags::ACK, p);
            seq = seq.wrapping_add(p.len() as u32);
            f
        })
        .collect()
}

/// A DNS message in one UDP datagram or one TCP segment (length-prefixed).
pub fn dns_frame(flow: &Flow, transport: Transport, msg: &[u8]) -> Vec<u8> {
    match transport {
        Transport::Udp => udp_frame(flow, msg),
        Transport::Tcp => tcp_frame(flow, flow.seq, tcp_flags::PSH | tcp_flags::ACK, &dns_tcp(msg)),
    }
}

/// TLS bytes cut into `segments` (e.g. from [`split_at`] or [`segments`]),
/// as consecutive TCP segments of `flow`.
pub fn tls_frames<P: AsRef<[u8]>>(flow: &Flow, segments: &[P]) -> Vec<Vec<u8>> {
    tcp_frames(flow, segments)
}

/// An HTTP request in one TCP segment at `flow.seq`.
pub fn http_frame(flow: &Flow, req: &[u8]) -> Vec<u8> {
    tcp_frame(flow, flow.seq, tcp_flags::PSH | tcp_flags::ACK, req)
}

/// An HTTP request cut into `segments`, as consecutive TCP segments.
pub fn http_frames<P: AsRef<[u8]>>(flow: &Flow, segments: &[P]) -> Vec<Vec<u8>> {
    tcp_frames(flow, segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    // ---- DNS: a small independent reader ----

    struct DnsView {
        id: u16,
        flags: u16,
        qdcount: u16,
        arcount: u16,
        labels: Vec<Vec<u8>>,
        qtype: u16,
        qclass: u16,
        /// Offset after the question.
        end: usize,
    }

    fn read_dns(m: &[u8]) -> DnsView {
        let w = |i: usize| u16::from_be_bytes([m[i], m[i + 1]]);
        let mut p = DNS_QNAME_OFFSET;
        let mut labels = Vec::new();
        loop {
            let l = m[p] as usize;
            p += 1;
            if l == 0 {
                break;
            }
            assert!(l <= 63, "label length byte {l:#x}");
            labels.push(m[p..p + l].to_vec());
            p += l;
        }
        DnsView {
            id: w(0),
            flags: w(2),
            qdcount: w(4),
            arcount: w(10),
            labels,
            qtype: w(p),
            qclass: w(p + 2),
            end: p + 4,
        }
    }

    fn dotted(labels: &[Vec<u8>]) -> String {
        labels.iter().map(|l| String::from_utf8(l.clone()).unwrap()).collect::<Vec<_>>().join(".")
    }

    #[test]
    fn dns_query_structure() {
        let m = dns_query(0x1234, "www.Example.com", qtype::AAAA);
        assert_eq!(m.len(), 12 + 17 + 4);
        let v = read_dns(&m);
        assert_eq!((v.id, v.flags, v.qdcount, v.arcount), (0x1234, 0x0100, 1, 0));
        assert_eq!(dotted(&v.labels), "www.Example.com");
        assert_eq!((v.qtype, v.qclass), (qtype::AAAA, 1));
        assert_eq!(v.end, m.len());
        assert_eq!(&m[12..17], b"\x03www\x07");
        // Trailing dot and root.
        assert_eq!(dns_query(1, "example.com.", 1), dns_query(1, "example.com", 1));
        assert_eq!(encode_name("."), vec![0]);
        assert_eq!(encode_name(""), vec![0]);
    }

    #[test]
    fn dns_edns_and_tcp() {
        let q = DnsQuery::new(7, "example.net", qtype::HTTPS)
            .with_edns(Edns { udp_size: 4096, dnssec_ok: true, options: vec![(10, vec![1, 2, 3, 4, 5, 6, 7, 8])] });
        let m = q.encode();
        let v = read_dns(&m);
        assert_eq!(v.arcount, 1);
        let opt = &m[v.end..];
        assert_eq!(opt[0], 0);
        assert_eq!(u16::from_be_bytes([opt[1], opt[2]]), qtype::OPT);
        assert_eq!(u16::from_be_bytes([opt[3], opt[4]]), 4096);
        assert_eq!(&opt[5..9], &[0, 0, 0x80, 0]);
        let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
        assert_eq!(rdlen, 12);
        assert_eq!(opt.len(), 11 + rdlen);
        assert_eq!(&opt[11..15], &[0, 10, 0, 8]);
        assert_eq!(dns_query_edns(7, "example.net", 1, 1232).len(), dns_query(7, "example.net", 1).len() + 11);

        let t = dns_tcp(&m);
        assert_eq!(u16::from_be_bytes([t[0], t[1]]) as usize, m.len());
        assert_eq!(&t[2..], &m[..]);
    }

    #[test]
    #[should_panic(expected = "over 63 bytes")]
    fn dns_encode_name_rejects_long_label() {
        encode_name(&format!("{}.com", "a".repeat(64)));
    }

    #[test]
    fn dns_malformations() {
        use DnsMalformation::*;
        let name = "example.com";
        let good = dns_query(9, name, qtype::A);
        let wire = encode_name(name); // 13 bytes

        let m = dns_query_malformed(9, name, 1, LabelTooLong);
        assert_eq!(m[12], 64);
        assert_eq!(&m[13..77], &[b'a'; 64][..]);
        assert_eq!(&m[77..77 + wire.len()], &wire[..]);
        assert_eq!(m.len(), good.len() + 65);

        let m = dns_query_malformed(9, name, 1, CompressionPointerInQuestion);
        assert_eq!(&m[12..22], b"\x07example\xc0\x0c");
        assert_eq!(m.len(), 12 + 10 + 4);

        let m = dns_query_malformed(9, name, 1, NameRunsPastEnd);
        assert_eq!(&m[12..24], &wire[..12]);
        assert_eq!(&m[24..], &[63, b'a', b'b']);
        assert!(24 + 1 + 63 > m.len());

        let m = dns_query_malformed(9, name, 1, NoTerminatingZero);
        assert_eq!(&m[12..], &wire[..wire.len() - 1]);

        let m = dns_query_malformed(9, name, 1, QdcountZero);
        assert_eq!(&m[4..6], &[0, 0]);
        assert_eq!(&m[6..], &good[6..]);

        let m = dns_query_malformed(9, name, 1, IsResponse);
        assert_eq!(read_dns(&m).flags, 0x8100);
        assert_eq!(&m[4..], &good[4..]);

        let m = dns_query_malformed(9, name, 1, OpcodeNotQuery);
        assert_eq!((read_dns(&m).flags >> 11) & 0xf, 2);
        assert_eq!(m[2] & 0x80, 0);

        for n in 0..12 {
            assert_eq!(dns_query_malformed(9, name, 1, TruncatedHeader(n)), good[..n].to_vec());
        }

        let m = dns_query_malformed(9, name, 1, NameOver255Bytes);
        let v = read_dns(&m);
        assert_eq!(v.labels.len(), 6);
        assert!(v.labels[..4].iter().all(|l| l.len() == 63));
        let qname_len = v.end - 4 - 12;
        assert_eq!(qname_len, 4 * 64 + wire.len());
        assert!(qname_len > 255);
        assert_eq!(v.qtype, 1);

        for n in [2, 16, 17, 40, 127, 128] {
            let m = dns_query_malformed(9, name, 1, TooManyLabels(n));
            let v = read_dns(&m);
            assert_eq!(v.labels.len(), n);
            assert_eq!(dotted(&v.labels[n - 2..]), name);
            assert_eq!(v.end, m.len());
            assert_eq!(v.end - 4 - 12, (n - 2) * 2 + wire.len(), "n={n}");
        }

        // With EDNS, the OPT record follows even a broken name.
        let q = DnsQuery::new(9, name, 1).with_edns(Edns::default());
        let m = q.encode_malformed(QdcountZero);
        assert_eq!(m.len(), good.len() + 11);
        // And the raw-qname escape hatch is used verbatim.
        let m = q.encode_with_qname_wire(b"\x03a.b\x00");
        assert_eq!(&m[12..17], b"\x03a.b\x00");
    }

    // ---- TLS ----

    /// Reads every extension of a ClientHello record with a hand-written
    /// walker that checks each length against its container.
    fn walk_hello(rec: &[u8]) -> Vec<(u16, Range<usize>)> {
        let w = |i: usize| u16::from_be_bytes([rec[i], rec[i + 1]]) as usize;
        assert_eq!(rec[0], 22);
        assert_eq!(w(1), 0x0301);
        assert_eq!(w(3) + 5, rec.len(), "record length");
        assert_eq!(rec[5], 1, "ClientHello");
        let hs_len = u32::from_be_bytes([0, rec[6], rec[7], rec[8]]) as usize;
        assert_eq!(hs_len + 9, rec.len(), "handshake length");
        assert_eq!(w(9), 0x0303);
        let mut p = 43;
        p += 1 + rec[p] as usize;
        let cs = w(p);
        assert_eq!(cs % 2, 0);
        p += 2 + cs;
        assert_eq!(&rec[p..p + 2], &[1, 0]);
        p += 2;
        assert_eq!(w(p) + p + 2, rec.len(), "extensions length");
        p += 2;
        let mut out = Vec::new();
        while p < rec.len() {
            let (t, l) = (w(p) as u16, w(p + 2));
            out.push((t, p..p + 4 + l));
            p += 4 + l;
        }
        assert_eq!(p, rec.len());
        out
    }

    /// (server name, ALPN protocols, cipher suite count) as rustls saw them.
    type Accepted = (Option<String>, Vec<Vec<u8>>, usize);

    /// The independent check: rustls' server-side ClientHello parser.
    fn rustls_accept(bytes: &[u8]) -> Result<Accepted, String> {
        let mut acc = rustls::server::Acceptor::default();
        let mut cur = std::io::Cursor::new(bytes);
        while (cur.position() as usize) < bytes.len() {
            acc.read_tls(&mut cur).map_err(|e| e.to_string())?;
        }
        match acc.accept() {
            Ok(Some(a)) => {
                let ch = a.client_hello();
                let alpn = ch.alpn().map(|i| i.map(<[u8]>::to_vec).collect()).unwrap_or_default();
                Ok((ch.server_name().map(str::to_string), alpn, ch.cipher_suites().len()))
            }
            Ok(None) => Err("incomplete".into()),
            Err((e, _)) => Err(e.to_string()),
        }
    }

    fn shapes() -> Vec<ClientHello> {
        let mut v = vec![
            ClientHello::default(),
            ClientHello::new("www.example.com"),
            ClientHello::chrome_like("a.example.net"),
            ClientHello { grease: true, padding: Some(200), ..ClientHello::new("example.com") },
            ClientHello { ech: true, key_share_bytes: 1184, session_id_len: 0, ..ClientHello::new("example.com") },
            ClientHello { cipher_suites: 40, alpn: Vec::new(), key_share_bytes: 65, ..ClientHello::new("example.org") },
            ClientHello { extensions_order: ExtOrder::SniLast, ..ClientHello::chrome_like("deep.sub.example.com") },
            ClientHello { extensions_order: ExtOrder::SniFirst, ..ClientHello::chrome_like("example.com") },
            ClientHello {
                extensions_order: ExtOrder::Explicit(vec![ext::KEY_SHARE, ext::PADDING, ext::SERVER_NAME]),
                padding: Some(17),
                ..ClientHello::chrome_like("example.com")
            },
            ClientHello { key_share_bytes: 0, grease: true, ..ClientHello::new("example.com") },
        ];
        v.push(ClientHello { sni: Some(format!("{}.example.com", "x".repeat(63))), ..ClientHello::chrome_like("") });
        v
    }

    #[test]
    fn client_hello_structure_and_rustls() {
        for (i, ch) in shapes().into_iter().enumerate() {
            for seed in 0..8u64 {
                let (rec, layout) = ch.record_with_layout(seed);
                assert_eq!(rec, ch.record(seed), "deterministic");
                let exts = walk_hello(&rec);
                let sni = ch.sni.clone().unwrap();
                let layout = layout.expect("SNI layout");
                assert_eq!(find_sni(&rec), Some(layout.clone()), "shape {i} seed {seed}");
                let name = layout.name.clone().unwrap();
                assert_eq!(&rec[name.clone()], sni.as_bytes());
                assert_eq!(name.start, layout.ext.start + 9);
                assert_eq!(layout.ext.end, name.end);
                assert_eq!(exts.iter().find(|(t, _)| *t == 0).unwrap().1, layout.ext);
                // No duplicate extension types.
                let mut types: Vec<u16> = exts.iter().map(|e| e.0).collect();
                types.sort();
                types.dedup();
                assert_eq!(types.len(), exts.len(), "shape {i}");
                let has = |t: u16| exts.iter().any(|e| e.0 == t);
                assert_eq!(has(ext::ENCRYPTED_CLIENT_HELLO), ch.ech);
                assert_eq!(has(ext::PADDING), ch.padding.is_some());
                assert_eq!(has(ext::ALPN), !ch.alpn.is_empty());
                assert_eq!(exts.iter().filter(|e| is_grease(e.0)).count(), if ch.grease { 2 } else { 0 });
                if ch.key_share_bytes == X25519MLKEM768_SHARE_LEN {
                    let ks = &exts.iter().find(|e| e.0 == ext::KEY_SHARE).unwrap().1;
                    let grease_share = if ch.grease { 5 } else { 0 };
                    assert_eq!(ks.len(), 4 + 2 + grease_share + 4 + 1216 + 4 + 32);
                    let g = ks.start + 6 + grease_share;
                    assert_eq!(&rec[g..g + 4], &[0x11, 0xec, 0x04, 0xc0]);
                }
                match &ch.extensions_order {
                    ExtOrder::SniLast => assert_eq!(exts.last().unwrap().0, ext::SERVER_NAME),
                    ExtOrder::SniFirst => assert_eq!(exts[0].0, ext::SERVER_NAME),
                    ExtOrder::Explicit(o) => assert_eq!(&types_of(&exts)[..3], &o[..]),
                    ExtOrder::Canonical if ch.grease => assert_eq!(exts[1].0, ext::SERVER_NAME),
                    ExtOrder::Canonical => assert_eq!(exts[0].0, ext::SERVER_NAME),
                    ExtOrder::Shuffled => {}
                }
                let (rname, alpn, suites) = rustls_accept(&rec).unwrap_or_else(|e| panic!("shape {i} seed {seed}: {e}"));
                assert_eq!(rname.as_deref(), Some(sni.to_ascii_lowercase().as_str()));
                assert_eq!(alpn, ch.alpn.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>());
                assert_eq!(suites, ch.cipher_suites + ch.grease as usize);
            }
        }
    }

    fn types_of(exts: &[(u16, Range<usize>)]) -> Vec<u16> {
        exts.iter().map(|e| e.0).collect()
    }

    #[test]
    fn shuffled_order_depends_on_seed() {
        let ch = ClientHello::chrome_like("example.com");
        let orders: std::collections::HashSet<Vec<u16>> =
            (0..16).map(|s| types_of(&walk_hello(&ch.record(s))).into_iter().filter(|t| !is_grease(*t)).collect()).collect();
        assert!(orders.len() > 8, "{} distinct orders of 16", orders.len());
        // GREASE first and last.
        let exts = walk_hello(&ch.record(3));
        assert!(is_grease(exts[0].0) && is_grease(exts[exts.len() - 1].0));
        assert_ne!(exts[0].0, exts[exts.len() - 1].0);
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a1a) && !is_grease(0x1301));
    }

    #[test]
    fn no_sni_and_raw_sni_body() {
        let ch = ClientHello { sni: None, ..ClientHello::chrome_like("") };
        let (rec, layout) = ch.record_with_layout(1);
        assert!(layout.is_none());
        assert!(find_sni(&rec).is_none() && split_before_sni(&rec).is_none() && split_inside_sni(&rec, 3).is_none());
        assert!(!types_of(&walk_hello(&rec)).contains(&0));
        assert_eq!(rustls_accept(&rec).unwrap().0, None);

        // Two names: the body is taken verbatim, no name range is claimed by
        // the builder; find_sni reads the first entry.
        let body = sni_ext_body(&[(0, b"example.com"), (0, b"example.net")]);
        let ch = ClientHello { sni_ext_data: Some(body.clone()), ..ClientHello::default() };
        let (rec, layout) = ch.record_with_layout(1);
        let layout = layout.unwrap();
        assert_eq!(layout.name, None);
        assert_eq!(&rec[layout.ext.start + 4..layout.ext.end], &body[..]);
        assert_eq!(&rec[find_sni(&rec).unwrap().name.unwrap()], b"example.com");
        // A name longer than its list: find_sni gives no name range.
        let mut bad = sni_ext_body(&[(0, b"example.com")]);
        bad[4] += 10;
        let rec = ClientHello { sni_ext_data: Some(bad), ..ClientHello::default() }.record(1);
        let l = find_sni(&rec).unwrap();
        assert_eq!(l.name, None);
        assert_eq!(l.ext.len(), 4 + 2 + 3 + 11);
    }

    #[test]
    fn splits_around_sni() {
        let flow = Flow::v4(443);
        for seed in 0..8 {
            let ch = ClientHello { extensions_order: ExtOrder::SniLast, ..ClientHello::chrome_like("example.com") };
            let (rec, layout) = ch.record_with_layout(seed);
            let layout = layout.unwrap();
            // Realistic: 1460-byte segments put the SNI in the second one.
            let segs = segments(&rec, 1460);
            assert_eq!(segs.len(), 2);
            assert!(layout.ext.start >= 1460);
            assert_eq!(segs.concat(), rec);

            let n = split_before_sni(&rec).unwrap();
            assert_eq!(n, layout.ext.start);
            let (a, b) = split_at(&rec, n);
            assert_eq!(a.len() + b.len(), rec.len());
            assert_eq!(&b[..2], &[0, 0]);
            assert_eq!(&b[9..9 + 11], b"example.com");

            for k in 1..layout.ext.len() {
                let at = split_inside_sni(&rec, k).unwrap();
                assert_eq!(at, layout.ext.start + k);
                let (a, b) = split_at(&rec, at);
                assert!(a.len() > layout.ext.start && a.len() < layout.ext.end);
                let mut joined = a.clone();
                joined.extend(&b);
                assert_eq!(joined, rec);
            }
            assert_eq!(split_inside_sni(&rec, 0), None);
            assert_eq!(split_inside_sni(&rec, layout.ext.len()), None);

            // As frames: consecutive sequence numbers, same 4-tuple.
            let frames = tls_frames(&flow, &segs);
            let s0 = tcp_of(&frames[0]);
            let s1 = tcp_of(&frames[1]);
            assert_eq!(s1.0, s0.0.wrapping_add(segs[0].len() as u32));
            assert_eq!((s0.1, s0.2), (s1.1, s1.2));
            assert_eq!(s1.3, segs[1]);
        }
        // Canonical order: SNI is near the start of the first segment.
        let ch = ClientHello { extensions_order: ExtOrder::Canonical, ..ClientHello::chrome_like("example.com") };
        let (rec, l) = ch.record_with_layout(0);
        assert!(l.unwrap().ext.end < 1460 && rec.len() > 1460);
    }

    #[test]
    fn record_fragmentation_and_broken_records() {
        let ch = ClientHello::chrome_like("frag.example.com");
        let (hs, _) = ch.handshake(5);
        for first in [1, 4, 40, 100, hs.len() - 1] {
            let two = ch.records_fragmented(5, first);
            assert_eq!(two.len(), hs.len() + 10);
            assert_eq!(&two[..3], &[22, 3, 1]);
            assert_eq!(u16::from_be_bytes([two[3], two[4]]) as usize, first);
            let second = &two[5 + first..];
            assert_eq!(second[0], 22);
            assert_eq!(u16::from_be_bytes([second[3], second[4]]) as usize, hs.len() - first);
            let mut joined = two[5..5 + first].to_vec();
            joined.extend(&second[5..]);
            assert_eq!(joined, hs);
            // Not one complete record: the walker refuses it.
            assert!(find_sni(&two).is_none());
            let (name, _, _) = rustls_accept(&two).unwrap();
            assert_eq!(name.as_deref(), Some("frag.example.com"));
        }

        let rec = ch.record(5);
        let app = with_content_type(&rec, content_type::APPLICATION_DATA);
        assert_eq!(app[0], 23);
        assert_eq!(&app[1..], &rec[1..]);
        assert!(find_sni(&app).is_none());
        assert!(rustls_accept(&app).is_err());

        let layout = find_sni(&rec).unwrap();
        for n in [0, 3, 5, 9, 50, layout.ext.start + 2, layout.name.unwrap().end - 1, rec.len() - 1] {
            let t = truncated(&rec, n);
            assert_eq!(t.len(), n);
            assert_eq!(&t[..], &rec[..n]);
            assert!(find_sni(&t).is_none(), "truncated to {n}");
        }
        assert_eq!(truncated(&rec, rec.len() + 5), rec);

        let v2 = sslv2_client_hello(1, 5);
        assert_eq!(v2[0] & 0x80, 0x80);
        let len = (((v2[0] & 0x7f) as usize) << 8) | v2[1] as usize;
        assert_eq!(len + 2, v2.len());
        assert_eq!(&v2[2..5], &[1, 3, 1]);
        assert_eq!(u16::from_be_bytes([v2[5], v2[6]]), 15);
        assert_eq!(u16::from_be_bytes([v2[9], v2[10]]), 32);
        assert_eq!(v2.len(), 2 + 9 + 15 + 32);
        assert!(find_sni(&v2).is_none());
    }

    // ---- HTTP ----

    fn httparse_host(req: &[u8]) -> Option<(Option<String>, u8)> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut headers);
        match r.parse(req) {
            Ok(httparse::Status::Complete(n)) => {
                assert_eq!(n, req.len());
                let host = r.headers.iter().find(|h| h.name.eq_ignore_ascii_case("host")).map(|h| String::from_utf8(h.value.to_vec()).unwrap());
                Some((host, r.version.unwrap()))
            }
            _ => None,
        }
    }

    #[test]
    fn http_request_basic() {
        let r = http_request("POST", "/submit", Some("example.com"), &[("Accept", "*/*")], b"abc");
        assert_eq!(r, b"POST /submit HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nContent-Length: 3\r\n\r\nabc".to_vec());
        let v = find_header_value(&r, "HOST").unwrap();
        assert_eq!(&r[v], b"example.com");
        let r = http_request("GET", "/", None, &[], b"");
        assert_eq!(r, b"GET / HTTP/1.1\r\n\r\n".to_vec());
        assert_eq!(find_header_value(&r, "host"), None);
        let r = http_request("PUT", "/", Some("example.com"), &[("content-length", "2")], b"xy");
        assert_eq!(r.windows(14).filter(|w| w.eq_ignore_ascii_case(b"content-length")).count(), 1);
        assert_eq!(&r[r.len() - 2..], b"xy");
    }

    #[test]
    fn http_variants() {
        use HostVariant::*;
        let h = "example.com";
        // (variant, value find_header_value gives, httparse's Host if it accepts the request)
        let cases: Vec<(HostVariant, Option<&str>)> = vec![
            (Plain, Some(h)),
            (LowercaseName, Some(h)),
            (UppercaseName, Some(h)),
            (MixedCaseValue, Some("ExAmPlE.CoM")),
            (WithPort(8080), Some("example.com:8080")),
            (TrailingDot, Some("example.com.")),
            (Whitespace, Some(h)),
            (NoSpace, Some(h)),
            (AbsoluteForm, Some(h)),
            (AbsoluteFormNoHost, None),
            (Http10, Some(h)),
            (Http10NoHost, None),
            (FoldedHeaderBefore, Some(h)),
            (FoldedHost, Some("")),
            (LongHeaderBefore(3000), Some(h)),
            (HostAt(512), Some(h)),
            (BareLf, Some(h)),
            (DuplicateHost("example.net".into()), Some(h)),
        ];
        for (v, want) in cases {
            let r = http_request_variant(h, &v);
            assert!(r.ends_with(b"\r\n\r\n") || r.ends_with(b"\n\n"), "{v:?}");
            let got = find_header_value(&r, "host").map(|x| String::from_utf8(r[x].to_vec()).unwrap());
            assert_eq!(got.as_deref(), want, "{v:?}");
            let folded = matches!(v, FoldedHeaderBefore | FoldedHost);
            match httparse_host(&r) {
                Some((host, version)) => {
                    assert!(!folded, "{v:?}: httparse accepts obs-fold in requests?");
                    assert_eq!(host.as_deref().map(|s| s.trim_matches([' ', '\t'])), want, "{v:?}");
                    assert_eq!(version, u8::from(!matches!(v, Http10 | Http10NoHost | AbsoluteFormNoHost)), "{v:?}");
                }
                None => assert!(folded, "{v:?}: httparse rejects {:?}", String::from_utf8_lossy(&r)),
            }
        }
        let r = http_request_variant(h, &AbsoluteForm);
        assert!(r.starts_with(b"GET http://example.com/index.html HTTP/1.1\r\n"));
        let r = http_request_variant(h, &FoldedHost);
        assert!(std::str::from_utf8(&r).unwrap().contains("Host:\r\n example.com\r\n"));
        let r = http_request_variant(h, &LongHeaderBefore(3000));
        assert!(find_header_value(&r, "host").unwrap().start > 3000);
        for at in [35, 100, 512, 999, 1000, 1500, 4096, 9000] {
            let r = http_request_variant(h, &HostAt(at));
            assert_eq!(&r[at..at + 5], b"Host:", "HostAt({at})");
            assert_eq!(find_header_value(&r, "host").unwrap().start, at + 6);
            let s = std::str::from_utf8(&r).unwrap();
            assert!(s.split("\r\n").all(|l| l.len() <= 1000));
            assert!(httparse_host(&r).is_some() || at > 16 * 1000, "HostAt({at})");
        }
        let dup = http_request_variant(h, &DuplicateHost("example.net".into()));
        assert!(std::str::from_utf8(&dup).unwrap().contains("Host: example.com\r\nHost: example.net\r\n"));
    }

    #[test]
    #[should_panic(expected = "cannot start before")]
    fn http_host_at_too_early() {
        http_request_variant("example.com", &HostVariant::HostAt(30));
    }

    #[test]
    fn http_split_segments() {
        let flow = Flow::v6(80).with_tcp_timestamps();
        let r = http_request_variant("example.com", &HostVariant::Plain);
        let v = find_header_value(&r, "host").unwrap();
        let (a, b) = split_at(&r, v.start + 4);
        assert!(a.ends_with(b"Host: exam") && b.starts_with(b"ple.com\r\n"));
        let frames = http_frames(&flow, &[a.clone(), b.clone()]);
        let (s0, s1) = (tcp_of(&frames[0]), tcp_of(&frames[1]));
        assert_eq!(s0.0, flow.seq);
        assert_eq!(s1.0, flow.seq + a.len() as u32);
        assert_eq!([s0.3, s1.3].concat(), r);
        let one = http_frame(&flow, &r);
        assert_eq!(tcp_of(&one).3, r);
    }

    // ---- frames ----

    /// (seq, sport, dport, payload) of a TCP frame, via etherparse.
    fn tcp_of(frame: &[u8]) -> (u32, u16, u16, Vec<u8>) {
        let p = SlicedPacket::from_ethernet(frame).expect("parse");
        match p.transport {
            Some(TransportSlice::Tcp(t)) => (t.sequence_number(), t.source_port(), t.destination_port(), t.payload().to_vec()),
            other => panic!("not TCP: {other:?}"),
        }
    }

    #[test]
    fn frames_parse_back() {
        let mut rng = SmallRng::seed_from_u64(42);
        let payload = ClientHello::new("example.com").record(1);
        let flows = vec![
            Flow::v4(443),
            Flow::v6(443),
            Flow::v4(443).with_vlans(&[100]),
            Flow::v6(443).with_vlans(&[10, 20]).with_v6_exts(&[V6Ext::AtomicFragment, V6Ext::HopByHop, V6Ext::DestinationOptions]),
            Flow::v4(443).with_tcp_timestamps().with_ports(55555, 443).with_seq(u32::MAX - 10),
            Flow::random(&mut rng, false, 443),
            Flow::random(&mut rng, true, 443).with_v6_exts(&[V6Ext::DestinationOptions]),
        ];
        for flow in flows {
            let segs = segments(&payload, 100);
            let frames = tls_frames(&flow, &segs);
            let mut seq = flow.seq;
            for (f, s) in frames.iter().zip(&segs) {
                let p = SlicedPacket::from_ethernet(f).unwrap();
                let vlan_ids: Vec<u16> = p.link_exts.iter().filter_map(|e| match e {
                    etherparse::LinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
                    _ => None,
                }).collect();
                assert_eq!(vlan_ids, flow.vlans);
                if flow.vlans.len() == 2 {
                    assert_eq!(&f[12..14], &[0x88, 0xa8]);
                    assert_eq!(&f[16..18], &[0x81, 0x00]);
                }
                match p.net.as_ref().unwrap() {
                    NetSlice::Ipv4(ip) => {
                        assert_eq!(IpAddr::from(ip.header().source()), flow.src);
                        assert_eq!(IpAddr::from(ip.header().destination()), flow.dst);
                        assert_eq!(ip.header().total_len() as usize, f.len() - 14 - 4 * flow.vlans.len());
                    }
                    NetSlice::Ipv6(ip) => {
                        assert_eq!(IpAddr::from(ip.header().source()), flow.src);
                        assert_eq!(ip.header().payload_length() as usize, f.len() - 14 - 4 * flow.vlans.len() - 40);
                        assert_eq!(ip.extensions().slice().len(), 8 * flow.v6_exts.len());
                        assert!(!ip.is_payload_fragmented());
                    }
                    _ => panic!("no IP"),
                }
                let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("not TCP") };
                assert_eq!(t.sequence_number(), seq);
                assert_eq!(t.acknowledgment_number(), flow.ack);
                assert!(t.psh() && t.ack() && !t.syn());
                assert_eq!(t.data_offset(), if flow.tcp_timestamps { 8 } else { 5 });
                assert_eq!(t.payload(), &s[..]);
                assert_eq!((t.source_port(), t.destination_port()), (flow.sport, flow.dport));
                // Checksum as a receiver would verify it.
                let header = t.to_header();
                let expect = match p.net.as_ref().unwrap() {
                    NetSlice::Ipv4(ip) => header.calc_checksum_ipv4(&ip.header().to_header(), t.payload()).unwrap(),
                    NetSlice::Ipv6(ip) => header.calc_checksum_ipv6(&ip.header().to_header(), t.payload()).unwrap(),
                    _ => unreachable!(),
                };
                assert_eq!(t.checksum(), expect);
                seq = seq.wrapping_add(s.len() as u32);
            }
            if let IpAddr::V4(a) = flow.src {
                assert_eq!(a.octets()[0], 198);
                assert!(a.octets()[1] & 0xfe == 18);
            } else if let IpAddr::V6(a) = flow.src {
                assert_eq!(&a.octets()[..4], &[0x20, 0x01, 0x0d, 0xb8]);
            }

            let syn = syn_frame(&flow);
            let syn = SlicedPacket::from_ethernet(&syn).unwrap();
            let Some(TransportSlice::Tcp(t)) = syn.transport else { panic!() };
            assert!(t.syn() && !t.ack() && t.payload().is_empty());
            assert_eq!(t.sequence_number().wrapping_add(1), flow.seq);

            let back = flow.reversed();
            assert_eq!((back.src, back.sport, back.seq), (flow.dst, flow.dport, flow.ack));
        }
    }

    #[test]
    fn dns_frames() {
        let msg = dns_query(0xbeef, "example.com", qtype::A);
        let f = dns_frame(&Flow::v4(53).with_vlans(&[7]), Transport::Udp, &msg);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(TransportSlice::Udp(u)) = p.transport else { panic!("not UDP") };
        assert_eq!(u.destination_port(), 53);
        assert_eq!(u.length() as usize, 8 + msg.len());
        assert_eq!(u.payload(), &msg[..]);

        let flow = Flow::v6(53).with_v6_exts(&[V6Ext::HopByHop]);
        let f = dns_frame(&flow, Transport::Tcp, &msg);
        let (seq, _, dport, payload) = tcp_of(&f);
        assert_eq!((seq, dport), (flow.seq, 53));
        assert_eq!(payload, dns_tcp(&msg));
        assert_eq!(read_dns(&payload[2..]).labels.len(), 2);
    }

    #[test]
    #[should_panic(expected = "mixes IPv4 and IPv6")]
    fn mixed_family_flow_panics() {
        let mut f = Flow::v4(53);
        f.dst = Flow::v6(53).dst;
        udp_frame(&f, b"x");
    }
}

/// An IPv4 UDP datagram cut as a fragment: the first one (MF set, the UDP
/// header present) or a later one (offset 1480, no transport header).
/// IPv6 flows get an unfragmented UDP datagram.
pub fn fragment_frame(flow: &Flow, first: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = udp_frame(flow, payload);
    if flow.src.is_ipv6() || !flow.vlans.is_empty() {
        return f;
    }
    let ip = 14;
    let field: u16 = if first { 0x2000 } else { 1480 / 8 };
    f[ip + 6..ip + 8].copy_from_slice(&field.to_be_bytes());
    f[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let ihl = usize::from(f[ip] & 0x0f) * 4;
    let mut sum: u32 = f[ip..ip + ihl].chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[ip + 10..ip + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f
}
