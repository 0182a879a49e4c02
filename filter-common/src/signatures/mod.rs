//! Attack signatures: a documented subset of the Suricata rule language,
//! the HTTP request splitter, the evasion normaliser and the reference
//! matcher. See `rules/signatures/README.md` for the language as operators
//! see it; this module is the reference the kernel matcher is tested against.
//!
//! - [`parse`]: rule packs (`*.rules`) into [`Signature`]s, every problem
//!   reported as `file:line: reason` ([`RuleError`]).
//! - [`http`]: the method/URI/Host/header/body regions of the first segment
//!   of an HTTP/1.x request ([`http_regions`]).
//! - [`normalise`]: percent-decoding, case folding and Log4j lookup
//!   collapsing for deep inspection ([`normalise()`], [`normalise_request`]).
//! - [`matcher`]: Suricata content semantics ([`Signature::matches_payload`])
//!   and header matching ([`Signature::matches_header`]).
//!
//! Only client-to-server traffic is inspected, one packet (segment) at a
//! time: there is no stream reassembly.
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::rules::RuleError;

pub mod http;
pub mod kernel;
pub mod matcher;
pub mod normalise;
pub mod parse;

pub use http::{http_regions, HttpRegions};
pub use matcher::MAX_INSPECTION_STEPS;
pub use normalise::{normalise, normalise_request, MAX_NORMALISE_INPUT};
pub use parse::{load_pack, parse_pack, MAX_BAN_SECONDS};

/// What happens to a packet a signature matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigAction {
    /// Drop the packet (and, with `edgefilter_ban`, ban its source for a while).
    Drop,
    /// Count only; the packet passes.
    Alert,
}

/// The protocol a signature applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigProto {
    Tcp,
    Udp,
    /// TCP to one of the configured HTTP ports.
    Http,
}

impl SigProto {
    /// The IP protocol number (6 for `tcp` and `http`, 17 for `udp`).
    pub fn ip_proto(self) -> u8 {
        match self {
            SigProto::Tcp | SigProto::Http => 6,
            SigProto::Udp => 17,
        }
    }
}

/// An address field of a rule header, variables already resolved.
///
/// A list matches an address when at least one of its non-negated elements
/// matches (or it has none: `[!a,!b]` is "anything but a and b") and none of
/// its negated elements does, as in Suricata.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AddrSpec {
    Any,
    Net(IpNet),
    List(Vec<AddrSpec>),
    Not(Box<AddrSpec>),
}

/// A port field of a rule header, variables already resolved. Lists and
/// negation behave as for [`AddrSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortSpec {
    Any,
    /// Inclusive range; a single port is `Range(p, p)`.
    Range(u16, u16),
    List(Vec<PortSpec>),
    Not(Box<PortSpec>),
}

/// The part of a packet a content is searched in.
///
/// The HTTP buffers are the regions [`http_regions`] finds; a content in an
/// HTTP buffer never matches a packet that is not the start of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Buffer {
    /// The whole transport payload (`pkt_data`, the default).
    Payload,
    /// `http.uri` / `http_uri`: the request target, raw (not decoded).
    HttpUri,
    /// `http.method` / `http_method`.
    HttpMethod,
    /// `http.host` / `http_host`: the Host header's value, raw (not lower-cased).
    HttpHost,
    /// `http.header` / `http_header`: the header lines (see [`HttpRegions`]).
    HttpHeader,
    /// `http.request_body` / `http_client_body`: what follows the header
    /// block in the same segment.
    HttpBody,
}

impl Buffer {
    /// The sticky-buffer keyword naming this buffer.
    pub fn keyword(self) -> &'static str {
        match self {
            Buffer::Payload => "pkt_data",
            Buffer::HttpUri => "http.uri",
            Buffer::HttpMethod => "http.method",
            Buffer::HttpHost => "http.host",
            Buffer::HttpHeader => "http.header",
            Buffer::HttpBody => "http.request_body",
        }
    }

    pub fn is_http(self) -> bool {
        self != Buffer::Payload
    }
}

/// One `content` of a rule with its modifiers.
///
/// Absolute (`offset`, `depth`) and relative (`distance`, `within`)
/// modifiers never appear on the same content (the parser rejects it).
/// `startswith` is stored as `offset = Some(0)`, `depth = Some(len)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Content {
    /// The bytes to find, escapes and `|hex|` blocks decoded; never empty.
    pub bytes: Vec<u8>,
    /// ASCII case-insensitive comparison.
    pub nocase: bool,
    /// `content:!"..."`: the rule matches only if this is NOT found (in its window).
    pub negated: bool,
    pub buffer: Buffer,
    /// Absolute start of the search window in the buffer.
    pub offset: Option<u32>,
    /// Window length counted from `offset` (or 0): the match must end at
    /// or before `offset + depth`.
    pub depth: Option<u32>,
    /// The window starts this many bytes after the end of the previous
    /// positive content's match in the same buffer (may be negative).
    pub distance: Option<i32>,
    /// The match must end at or before `previous end + distance + within`.
    pub within: Option<u32>,
    /// `endswith`: the match must end at the end of the buffer.
    pub endswith: bool,
}

impl Content {
    /// Whether the content's window depends on the previous content's match.
    pub fn is_relative(&self) -> bool {
        self.distance.is_some() || self.within.is_some()
    }
}

/// One rule of a pack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    pub sid: u32,
    /// 1 when the rule gives none.
    pub rev: u32,
    /// Empty when the rule gives none.
    pub msg: String,
    pub action: SigAction,
    pub proto: SigProto,
    pub src: AddrSpec,
    pub src_ports: PortSpec,
    pub dst: AddrSpec,
    pub dst_ports: PortSpec,
    /// `flow:to_server` (or `from_client`) was given. Only client-to-server
    /// traffic is inspected anyway; kept for the record.
    pub to_server: bool,
    /// `flow:established` was given.
    pub established: bool,
    /// In rule order. At least one is not negated.
    pub contents: Vec<Content>,
    pub classtype: Option<String>,
    /// Temporary ban of the source address on a match, from
    /// `metadata: edgefilter_ban <seconds>`; only on `drop` rules.
    pub ban_seconds: Option<u32>,
    /// Every `metadata` pair in rule order, `edgefilter_ban` included.
    pub metadata: Vec<(String, String)>,
    /// `reference: <kind>,<value>` pairs, e.g. `("cve", "2021-44228")`.
    pub references: Vec<(String, String)>,
    pub file: PathBuf,
    /// First line of the rule in `file` (1-based).
    pub line: usize,
}

/// The rules of one pack file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignaturePack {
    pub rules: Vec<Signature>,
    /// With `skip_unsupported`: the rules left out because they use
    /// features this engine does not implement, one error each.
    pub skipped: Vec<RuleError>,
}

impl AddrSpec {
    /// Whether `addr` is in this address set.
    pub fn matches(&self, addr: &IpAddr) -> bool {
        self.matches_with(&|net| net.contains(addr))
    }

    /// The set's verdict for an address that the networks `covers` says
    /// contain it: the networks the set names are all that count (the
    /// kernel compiler evaluates a set per network this way).
    pub fn matches_with(&self, covers: &dyn Fn(&IpNet) -> bool) -> bool {
        match self {
            AddrSpec::Any => true,
            AddrSpec::Net(net) => covers(net),
            AddrSpec::Not(inner) => !inner.matches_with(covers),
            AddrSpec::List(items) => list_matches(items, |s| matches!(s, AddrSpec::Not(_)), |s| s.matches_with(covers)),
        }
    }
}

impl PortSpec {
    /// Whether `port` is in this port set.
    pub fn matches(&self, port: u16) -> bool {
        match self {
            PortSpec::Any => true,
            PortSpec::Range(lo, hi) => (*lo..=*hi).contains(&port),
            PortSpec::Not(inner) => !inner.matches(port),
            PortSpec::List(items) => list_matches(items, |s| matches!(s, PortSpec::Not(_)), |s| s.matches(port)),
        }
    }
}

/// Suricata list semantics: some positive element matches (or there is
/// none) and every negated element matches (i.e. its inner set does not).
fn list_matches<T>(items: &[T], is_not: impl Fn(&T) -> bool, matches: impl Fn(&T) -> bool) -> bool {
    let mut any_positive = false;
    let mut positive_hit = false;
    for item in items {
        if is_not(item) {
            if !matches(item) {
                return false;
            }
        } else {
            any_positive = true;
            positive_hit = positive_hit || matches(item);
        }
    }
    !any_positive || positive_hit
}
