//! `cargo xtask bench domains`: ns/packet of the domain stage (DNS query
//! names, TLS ClientHello SNI, HTTP Host) with 0, 1 and 1,000,000 domain
//! rules (`--rules`), next to the plain IPv4 pass path measured in the same
//! run with the same program, plus the time to load the rules and the
//! kernel memory of `DOMAINS`.
//!
//! Two ways of running a frame through BPF_PROG_TEST_RUN:
//!
//! * `repeat`: one syscall runs the same frame `--repeat` times and the
//!   kernel reports the average (as `edgefilter-bench` does). The kernel
//!   does *not* restore the frame between repetitions, and the program's
//!   state (BLOCKED_FLOWS) persists, so this method only fits cases whose
//!   first run leaves the frame and the maps as they were: passes, drops,
//!   and TCP segments of a connection already blocked.
//! * `single`: `repeat = 1`, one syscall per packet, the median of many:
//!   for an NXDOMAIN answer (the program rewrites the frame in place), for
//!   the first packet of a connection blocked by name (BLOCKED_FLOWS is
//!   cleared before each run), and for a different name in every packet
//!   (cold caches). Its figures include the cold start of each syscall and
//!   are compared with the IPv4 pass path measured the same way.
//!
//! It prints figures and never asserts timing; it fails only when a packet
//! gets a verdict other than the intended one. Needs root.
//!
//!     cargo run --release -p filter-agent --bin edgefilter-domains-bench -- \
//!         --out bench-results/domains.json --markdown BENCHMARKS.md
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use serde::Serialize;

use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::maps::{names, BlockedFlow, FlowKey, DEFAULT_DOMAIN_CAPACITY};
use filter_common::reference::Reference;
use filter_common::rules::ruleset::{DomainAction, DomainRule};
use filter_common::rules::{Category, DomainPattern, DomainScope, RuleInfo, RuleSet};

// Shared with the other benchmarks; not every helper is used here.
#[allow(dead_code)]
#[path = "bench_common/mod.rs"]
mod bench_common;
#[allow(dead_code)]
#[path = "edgefilter-bench/sys.rs"]
mod sys;

use bench_common::{machine, median, thousands, Machine};

const REGENERATE: &str = "cargo xtask bench domains";
const RUN_COMMAND: &str = "cargo run --release -p filter-agent --bin edgefilter-domains-bench -- --out bench-results/domains.json --markdown BENCHMARKS.md";
const SECTION: &str = "domains-bench";

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// Target: a DNS query with this many domain rules loaded costs at most
/// `TARGET_RATIO` times the plain IPv4 pass path.
const TARGET_RULES: usize = 1_000_000;
const TARGET_RATIO: f64 = 3.0;

/// Rule ids: the generated feed, and the rule on the names the blocked
/// frames carry.
const RULE_FEED: u32 = 1;
const RULE_TARGET: u32 = 2;

#[derive(Parser)]
#[command(name = "edgefilter-domains-bench", about = "Domain stage benchmarks (DNS, TLS SNI, HTTP Host) with BPF_PROG_TEST_RUN")]
struct Args {
    /// JSON file for every figure (parent directories are created).
    #[arg(long, default_value = "bench-results/domains.json")]
    out: PathBuf,
    /// Markdown file whose `domains-bench` section is (re)written.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// BPF_PROG_TEST_RUN repetitions per run (`repeat` method).
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Runs per figure (after a warm-up); the report gives their median and best.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// `single` method: packets (one syscall each) per run; a run's figure
    /// is their median.
    #[arg(long, default_value_t = 3000)]
    singles: usize,
    /// Seed of the generated names and frames.
    #[arg(long, default_value_t = 0x5eed_d0a1)]
    seed: u64,
    /// Domain rule counts, one scenario each, in this order (0: the domain
    /// stage is skipped).
    #[arg(long, value_delimiter = ',', default_value = "0,1,1000000")]
    rules: Vec<usize>,
    /// Smoke test: 100,000 rules instead of 1,000,000, fewer repetitions
    /// (figures not comparable with a full run; target not evaluated).
    #[arg(long)]
    quick: bool,
}

// ---------------------------------------------------------------- frames --

mod frames {
    use rand::{rngs::SmallRng, Rng, RngCore};

    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    pub const CLIENT: [u8; 4] = [198, 18, 0, 10];
    pub const RESOLVER: [u8; 4] = [198, 19, 0, 53];
    pub const SERVER: [u8; 4] = [198, 19, 1, 1];
    const PROTO_TCP: u8 = 6;
    const PROTO_UDP: u8 = 17;

    fn sum(mut acc: u32, bytes: &[u8]) -> u32 {
        for c in bytes.chunks(2) {
            acc += u32::from(if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from(c[0]) << 8 });
        }
        acc
    }

    fn fold(mut acc: u32) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    /// Ethernet + IPv4 (no options) around `l4`, whose checksum at
    /// `csum_at` is filled in (pseudo-header included).
    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, mut l4: Vec<u8>, csum_at: usize) -> Vec<u8> {
        let pseudo = sum(sum(0, &src), &dst) + u32::from(proto) + l4.len() as u32;
        let mut c = fold(sum(pseudo, &l4));
        if c == 0 && proto == PROTO_UDP {
            c = 0xffff;
        }
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        let mut f = Vec::with_capacity(34 + l4.len());
        f.extend(DST_MAC);
        f.extend(SRC_MAC);
        f.extend(0x0800u16.to_be_bytes());
        let mut ip = vec![0x45, 0];
        ip.extend(((20 + l4.len()) as u16).to_be_bytes());
        ip.extend([0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
        ip.extend(src);
        ip.extend(dst);
        let c = fold(sum(0, &ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend(ip);
        f.extend(l4);
        f
    }

    pub fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut l4 = Vec::with_capacity(8 + payload.len());
        l4.extend(sport.to_be_bytes());
        l4.extend(dport.to_be_bytes());
        l4.extend(((8 + payload.len()) as u16).to_be_bytes());
        l4.extend([0, 0]);
        l4.extend(payload);
        ipv4(src, dst, PROTO_UDP, l4, 6)
    }

    /// A PSH|ACK segment with the timestamps option (as Linux clients send).
    pub fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut l4 = Vec::with_capacity(32 + payload.len());
        l4.extend(sport.to_be_bytes());
        l4.extend(dport.to_be_bytes());
        l4.extend(seq.to_be_bytes());
        l4.extend(0x2a2a_0001u32.to_be_bytes());
        l4.extend([8 << 4, 0x18]);
        l4.extend(502u16.to_be_bytes());
        l4.extend([0, 0, 0, 0]);
        l4.extend([1, 1, 8, 10]);
        l4.extend(0x0badcafeu32.to_be_bytes());
        l4.extend(0x00c0ffeeu32.to_be_bytes());
        l4.extend(payload);
        ipv4(src, dst, PROTO_TCP, l4, 16)
    }

    /// A recursive query, type A, class IN, with an EDNS(0) OPT record
    /// (UDP size 1232) as current stub resolvers send.
    pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
        let mut m = Vec::with_capacity(12 + name.len() + 2 + 4 + 11);
        m.extend(id.to_be_bytes());
        m.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend([0, 1, 0, 1]);
        m.extend([0, 0, 41]);
        m.extend(1232u16.to_be_bytes());
        m.extend([0, 0, 0, 0, 0, 0]);
        m
    }

    fn vec16(out: &mut Vec<u8>, body: &[u8]) {
        out.extend((body.len() as u16).to_be_bytes());
        out.extend(body);
    }

    fn grease(rng: &mut SmallRng) -> u16 {
        let n: u16 = rng.random_range(0..16);
        0x0a0a | (n << 12) | (n << 4)
    }

    /// A TLS 1.3 ClientHello record shaped like a browser's without the
    /// post-quantum key share: GREASE, 16 cipher suites, 17 extensions with
    /// server_name 8th (the program walks every extension header), padded
    /// to a 512-byte handshake message (BoringSSL's rule), 517 bytes in all.
    pub fn client_hello(name: &str, rng: &mut SmallRng) -> Vec<u8> {
        let mut random = [0u8; 32];
        rng.fill_bytes(&mut random);
        let mut session = [0u8; 32];
        rng.fill_bytes(&mut session);
        let mut share = [0u8; 32];
        rng.fill_bytes(&mut share);
        let (g1, g2, g3, g4) = (grease(rng), grease(rng), grease(rng), grease(rng));

        let mut exts: Vec<(u16, Vec<u8>)> = Vec::new();
        exts.push((g1, vec![]));
        exts.push((23, vec![])); // extended_master_secret
        exts.push((0xff01, vec![0])); // renegotiation_info
        let mut groups = Vec::new();
        for g in [g2, 0x001d, 0x0017, 0x0018] {
            groups.extend(g.to_be_bytes());
        }
        let mut b = Vec::new();
        vec16(&mut b, &groups);
        exts.push((10, b)); // supported_groups
        exts.push((11, vec![1, 0])); // ec_point_formats
        exts.push((35, vec![])); // session_ticket
        let mut alpn = Vec::new();
        for p in ["h2", "http/1.1"] {
            alpn.push(p.len() as u8);
            alpn.extend(p.as_bytes());
        }
        let mut b = Vec::new();
        vec16(&mut b, &alpn);
        exts.push((16, b)); // ALPN
        let mut sni = vec![0u8];
        vec16(&mut sni, name.as_bytes());
        let mut b = Vec::new();
        vec16(&mut b, &sni);
        exts.push((0, b)); // server_name
        exts.push((5, vec![1, 0, 0, 0, 0])); // status_request
        let mut algs = Vec::new();
        for a in [0x0403u16, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601] {
            algs.extend(a.to_be_bytes());
        }
        let mut b = Vec::new();
        vec16(&mut b, &algs);
        exts.push((13, b)); // signature_algorithms
        exts.push((18, vec![])); // signed_certificate_timestamp
        let mut shares = Vec::new();
        shares.extend(g2.to_be_bytes());
        vec16(&mut shares, &[0]);
        shares.extend(0x001du16.to_be_bytes());
        vec16(&mut shares, &share);
        let mut b = Vec::new();
        vec16(&mut b, &shares);
        exts.push((51, b)); // key_share
        exts.push((45, vec![1, 1])); // psk_key_exchange_modes
        let mut versions = vec![6];
        for v in [g3, 0x0304, 0x0303] {
            versions.extend(v.to_be_bytes());
        }
        exts.push((43, versions)); // supported_versions
        exts.push((27, vec![2, 0, 2])); // compress_certificate (brotli)
        exts.push((g4, vec![0]));

        let body = |exts: &[(u16, Vec<u8>)]| {
            let mut e = Vec::new();
            for (t, d) in exts {
                e.extend(t.to_be_bytes());
                vec16(&mut e, d);
            }
            let mut body = vec![3, 3];
            body.extend(random);
            body.push(32);
            body.extend(session);
            let mut suites = Vec::new();
            for s in [g1, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035] {
                suites.extend(s.to_be_bytes());
            }
            vec16(&mut body, &suites);
            body.extend([1, 0]);
            vec16(&mut body, &e);
            body
        };
        let unpadded = 4 + body(&exts).len();
        if unpadded < 512 {
            let pad = (512 - unpadded).saturating_sub(4).max(1);
            exts.push((21, vec![0; pad]));
        }
        let body = body(&exts);
        let mut hs = vec![1];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut rec = vec![22, 3, 1];
        vec16(&mut rec, &hs);
        rec
    }

    /// A browser's plain-HTTP GET: Host is the first header.
    pub fn http_request(host: &str) -> Vec<u8> {
        format!(
            "GET /index.html HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
             Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n\
             Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n"
        )
        .into_bytes()
    }
}

/// Source ports: every TCP case has a connection of its own, so a blocked
/// connection never shadows a passing one.
const PORT_PLAIN: u16 = 40_000;
const PORT_DNS: u16 = 40_001;
const PORT_TLS_PASS: u16 = 40_010;
const PORT_TLS_BLOCK: u16 = 40_011;
const PORT_HTTP_PASS: u16 = 40_020;
const PORT_HTTP_BLOCK: u16 = 40_021;
/// Destination of the plain IPv4 pass frame: no name is read on it.
const PLAIN_DPORT: u16 = 5_000;

/// The name under the target rule (`.n42.example.com`, apex and below), and
/// a name no rule covers. Both have four labels.
const BLOCKED_NAME: &str = "www.n42.example.com";
const PASSING_NAME: &str = "www.q42.example.com";
const TARGET_PATTERN: &str = "n42.example.com";

fn plain_frame() -> Vec<u8> {
    frames::udp(frames::CLIENT, frames::RESOLVER, PORT_PLAIN, PLAIN_DPORT, &[0u8; 22])
}

fn dns_frame(id: u16, name: &str) -> Vec<u8> {
    frames::udp(frames::CLIENT, frames::RESOLVER, PORT_DNS, 53, &frames::dns_query(id, name))
}

fn tls_frame(sport: u16, name: &str, rng: &mut SmallRng) -> Vec<u8> {
    frames::tcp(frames::CLIENT, frames::SERVER, sport, 443, 0x1000_0001, &frames::client_hello(name, rng))
}

fn http_frame(sport: u16, name: &str) -> Vec<u8> {
    frames::tcp(frames::CLIENT, frames::SERVER, sport, 80, 0x2000_0001, &frames::http_request(name))
}

// ----------------------------------------------------------------- rules --

const NAME_DESCRIPTION: &str = "`n<i>.example.com`, distinct, one per rule (so N rules are N `DOMAINS` entries: the \
worst case; an RPZ zone's `name` + `*.name` pairs share an entry). Scopes 60 % exact (`name`), 25 % subdomains (`*.name`), \
15 % apex and subdomains (`.name`), drawn with a seeded SmallRng; all NXDOMAIN (one feed rule id). The rule on \
`.n42.example.com` (its own rule id) is the one the blocked frames hit: NXDOMAIN, then drop for the `repeat` method. \
Passing frames carry `www.q42.example.com`: no rule on it or on any of its suffixes.";

/// `n` domain rules: the target rule and `n - 1` feed names. Returns the
/// rule set and the index of the target rule in `rules.domains`.
fn ruleset(n: usize, seeds: [u64; 2], rng: &mut SmallRng) -> (RuleSet, Option<usize>) {
    let info = |id: u32, what: &str| RuleInfo {
        id,
        order_id: format!("bench-{what}"),
        authority: "edgefilter-domains-bench".into(),
        category: Category::AbuseFeed,
        dry_run: false,
        file: PathBuf::from("<generated by edgefilter-domains-bench>"),
        line: 0,
        comment: Some(format!("generated {what}")),
    };
    let mut rs = RuleSet { rules: vec![info(RULE_FEED, "domain feed"), info(RULE_TARGET, "target name")], ..RuleSet::default() };
    rs.settings.name_seeds = seeds;
    if n == 0 {
        return (rs, None);
    }
    rs.domains.reserve(n);
    let mut i = 0usize;
    while rs.domains.len() < n - 1 {
        if i == 42 {
            i += 1;
            continue;
        }
        let roll = rng.random_range(0..100u32);
        let scope = match roll {
            0..60 => DomainScope::Exact,
            60..85 => DomainScope::Subdomains,
            _ => DomainScope::ApexAndSubdomains,
        };
        rs.domains.push(DomainRule {
            rule_id: RULE_FEED,
            pattern: DomainPattern { name: format!("n{i}.example.com"), scope },
            action: DomainAction::Nxdomain,
            dry_run: false,
        });
        i += 1;
    }
    // In the middle: nothing depends on the position, but a last element
    // is easy to special-case by accident.
    let at = rs.domains.len() / 2;
    rs.domains.insert(
        at,
        DomainRule {
            rule_id: RULE_TARGET,
            pattern: DomainPattern { name: TARGET_PATTERN.into(), scope: DomainScope::ApexAndSubdomains },
            action: DomainAction::Nxdomain,
            dry_run: false,
        },
    );
    (rs, Some(at))
}

/// A query name the rule covers (the name itself, or one below it).
fn covered_name(r: &DomainRule) -> String {
    match r.pattern.scope {
        DomainScope::Exact => r.pattern.name.clone(),
        DomainScope::Subdomains | DomainScope::ApexAndSubdomains => format!("www.{}", r.pattern.name),
    }
}

// ------------------------------------------------------------ measuring --

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Method {
    Repeat,
    Single,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::Repeat => "repeat",
            Method::Single => "single",
        }
    }
}

/// One case: frames (one, or a pool used one per packet) and the XDP
/// action each must get.
struct Case {
    name: &'static str,
    what: String,
    frames: Vec<Vec<u8>>,
    expect: u32,
    /// Clear BLOCKED_FLOWS before each packet (`single` method only).
    clear_flows: bool,
}

impl Case {
    fn one(name: &'static str, what: impl Into<String>, frame: Vec<u8>, expect: u32) -> Case {
        Case { name, what: what.into(), frames: vec![frame], expect, clear_flows: false }
    }
}

#[derive(Serialize, Clone)]
struct Figure {
    case: &'static str,
    what: String,
    method: Method,
    expected: &'static str,
    frame_len: usize,
    /// Distinct frames used (a different name in every packet when > 1).
    distinct_frames: usize,
    /// Per run: the kernel's average ns per repetition (`repeat`), or the
    /// median of the run's single packets (`single`).
    runs_ns: Vec<f64>,
    median_ns: f64,
    best_ns: f64,
    /// XDP actions seen (1 drop, 2 pass, 3 tx).
    retvals: Vec<u32>,
    verdict_ok: bool,
    /// median / median of `ipv4-pass` measured the same way in the same scenario.
    ratio_to_ipv4_pass: Option<f64>,
}

fn action_name(a: u32) -> &'static str {
    match a {
        XDP_DROP => "drop",
        XDP_PASS => "pass",
        XDP_TX => "tx",
        _ => "?",
    }
}

fn figure(case: &Case, method: Method, runs_ns: Vec<f64>, retvals: BTreeSet<u32>) -> Figure {
    let verdict_ok = !retvals.is_empty() && retvals.iter().all(|&r| r == case.expect);
    Figure {
        case: case.name,
        what: case.what.clone(),
        method,
        expected: action_name(case.expect),
        frame_len: case.frames[0].len(),
        distinct_frames: case.frames.len(),
        median_ns: if runs_ns.is_empty() { 0.0 } else { median(&runs_ns) },
        best_ns: runs_ns.iter().copied().fold(f64::INFINITY, f64::min),
        runs_ns,
        retvals: retvals.into_iter().collect(),
        verdict_ok,
        ratio_to_ipv4_pass: None,
    }
}

/// `repeat` method, runs of all cases interleaved (the order rotates so no
/// case always follows the same one).
fn measure_repeat(prog: BorrowedFd<'_>, cases: &[&Case], repeat: u32, runs: usize) -> Result<Vec<Figure>> {
    let mut runs_ns = vec![Vec::new(); cases.len()];
    let mut retvals = vec![BTreeSet::new(); cases.len()];
    for c in cases {
        sys::test_run(prog, &c.frames[0], (repeat / 20).max(1)).with_context(|| format!("BPF_PROG_TEST_RUN of {}", c.name))?;
    }
    for i in 0..runs {
        for k in 0..cases.len() {
            let k = (k + i) % cases.len();
            let r = sys::test_run(prog, &cases[k].frames[0], repeat).with_context(|| format!("BPF_PROG_TEST_RUN of {}", cases[k].name))?;
            runs_ns[k].push(f64::from(r.kernel_ns));
            retvals[k].insert(r.retval);
        }
    }
    Ok(cases.iter().zip(runs_ns).zip(retvals).map(|((c, r), v)| figure(c, Method::Repeat, r, v)).collect())
}

/// `single` method: per run and case, `singles` packets of one syscall
/// each (`repeat` = 1); cases interleaved run by run. A pool of frames is
/// walked once across all runs (no name seen twice when it is large enough).
fn measure_single(prog: BorrowedFd<'_>, cases: &[&Case], singles: usize, runs: usize, flows: &mut Option<Flows>) -> Result<Vec<Figure>> {
    let mut runs_ns = vec![Vec::new(); cases.len()];
    let mut retvals = vec![BTreeSet::new(); cases.len()];
    let mut next = vec![0usize; cases.len()];
    let mut one = Vec::with_capacity(singles);
    // Warm-up: a few packets of each case.
    for c in cases {
        for f in c.frames.iter().take(16) {
            if c.clear_flows {
                flows.as_mut().context("BLOCKED_FLOWS not found")?.clear()?;
            }
            sys::test_run(prog, f, 1).with_context(|| format!("BPF_PROG_TEST_RUN of {}", c.name))?;
        }
    }
    for i in 0..runs {
        for k in 0..cases.len() {
            let k = (k + i) % cases.len();
            let c = &cases[k];
            one.clear();
            for _ in 0..singles {
                if c.clear_flows {
                    flows.as_mut().context("BLOCKED_FLOWS not found")?.clear()?;
                }
                let f = &c.frames[next[k] % c.frames.len()];
                next[k] += 1;
                let r = sys::test_run(prog, f, 1).with_context(|| format!("BPF_PROG_TEST_RUN of {}", c.name))?;
                one.push(f64::from(r.kernel_ns));
                retvals[k].insert(r.retval);
            }
            runs_ns[k].push(median(&one));
        }
    }
    Ok(cases.iter().zip(runs_ns).zip(retvals).map(|((c, r), v)| figure(c, Method::Single, r, v)).collect())
}

/// This process's handle on the program's BLOCKED_FLOWS (found by name
/// among its open map fds; one data plane is alive at a time).
struct Flows(aya::maps::HashMap<aya::maps::MapData, FlowKey, BlockedFlow>);

impl Flows {
    fn open() -> Result<Flows> {
        let m = sys::own_map_memory(names::BLOCKED_FLOWS).context("no BLOCKED_FLOWS map among this process's fds")?;
        let data = aya::maps::MapData::from_id(m.map_id as u32).context("opening BLOCKED_FLOWS by id")?;
        let map = aya::maps::Map::from_map_data(data)?;
        Ok(Flows(aya::maps::HashMap::try_from(map)?))
    }

    fn clear(&mut self) -> Result<()> {
        let keys: Vec<FlowKey> = self.0.keys().collect::<Result<_, _>>()?;
        for k in keys {
            self.0.remove(&k)?;
        }
        Ok(())
    }
}

// -------------------------------------------------------------- reports --

#[derive(Serialize, Clone, Default)]
struct Load {
    /// `Dataplane::load` of a fresh program (verifier included).
    program_load_s: f64,
    /// First apply into the fresh program, no domain rules (maps the IPv4
    /// tables and writes an empty generation): not counted below.
    empty_apply_s: f64,
    generate_s: f64,
    /// `filter_common::compile::compile_domains` alone (hash every name,
    /// build the entries), timed outside the apply.
    compile_domains_s: f64,
    /// `Dataplane::apply_rules` of the domain rules onto the empty set
    /// (compile + DOMAINS batch writes + generation switch), wall time.
    apply_s: f64,
    /// apply - compile_domains: mostly the DOMAINS writes.
    writes_s: f64,
    /// The same set again with the target rule's action changed
    /// (NXDOMAIN -> drop): full compile, one entry written.
    reapply_one_changed_s: f64,
}

#[derive(Serialize, Clone, Default)]
struct Memory {
    domains_before: Option<sys::MapMemory>,
    domains_after: Option<sys::MapMemory>,
    memlock_delta_bytes: i64,
    memlock_bytes_per_entry: f64,
    /// System-wide /proc/meminfo difference around the apply.
    meminfo_delta: sys::MemInfo,
    /// Peak RSS of this process after the apply.
    user_peak_rss_bytes: u64,
}

#[derive(Serialize, Clone)]
struct ScenarioResult {
    domain_rules: usize,
    /// Rules by scope: exact, `*.` (subdomains), `.` (apex and subdomains).
    scopes: [usize; 3],
    domains_entries: u64,
    load: Load,
    memory: Memory,
    /// Verdicts of the fixed frames checked with the reference classifier.
    reference_checked: bool,
    /// The blocked query run with `repeat` = 2 returned XDP_PASS: the
    /// second repetition ran on the answer the first wrote (the kernel does
    /// not restore the frame between repetitions).
    repeat_reuses_rewritten_frame: Option<bool>,
    figures: Vec<Figure>,
}

#[derive(Serialize)]
struct Floor {
    repeat: Figure,
    single: Figure,
}

#[derive(Serialize)]
struct Target {
    name: String,
    goal: String,
    measured: String,
    met: Option<bool>,
    /// The issue's target (the others are the same bound on other DNS
    /// cases, for reference).
    primary: bool,
}

#[derive(Serialize)]
struct FrameInfo {
    case: &'static str,
    what: String,
    len: usize,
    hex: String,
}

#[derive(Serialize)]
struct Report {
    tool: &'static str,
    date_utc: String,
    command: String,
    regenerate: &'static str,
    quick: bool,
    machine: Machine,
    repeat: u32,
    runs: usize,
    singles: usize,
    seed: u64,
    method: &'static str,
    rule_generation: &'static str,
    frames: Vec<FrameInfo>,
    /// A program that only returns XDP_PASS, ipv4-pass frame, both methods.
    harness_floor: Option<Floor>,
    scenarios: Vec<ScenarioResult>,
    targets: Vec<Target>,
    warnings: Vec<String>,
    total_s: f64,
}

const METHOD: &str = "BPF_PROG_TEST_RUN on the loaded (not attached) program; nothing is transmitted. `repeat`: one \
syscall runs the frame `repeat` times and the kernel reports the average ns; `runs` runs per figure after a warm-up, \
median and best. The kernel runs every repetition on the same buffer without restoring it, and map state persists, so \
`repeat` only measures cases that leave both unchanged: passes, drops, and segments of a connection already blocked. \
`single`: one syscall per packet (`repeat` = 1), `singles` packets per run, a run's figure is their median, then the \
median and best over `runs` runs. It measures the NXDOMAIN answer (rewritten in place), the first packet of a \
connection blocked by name (BLOCKED_FLOWS cleared before each packet, outside the timed region) and a different name \
in every packet (caches cold for the name's entries). A single packet starts cold after the syscall and the kernel's \
figure includes one clock read, so `single` figures are compared with the IPv4 pass path measured the same way. All \
cases of a scenario are interleaved run by run. The ratio column divides by `ipv4-pass` of the same scenario and method: absolute figures move by tens of percent between program loads and with other work on a shared machine, ratios within a scenario much less.";

fn ratio_of(figs: &mut [Figure]) {
    for m in [Method::Repeat, Method::Single] {
        let base = figs.iter().find(|f| f.case == "ipv4-pass" && f.method == m).map(|f| f.median_ns);
        if let Some(base) = base.filter(|b| *b > 0.0) {
            for f in figs.iter_mut().filter(|f| f.method == m) {
                f.ratio_to_ipv4_pass = Some(f.median_ns / base);
            }
        }
    }
}

/// Checks every fixed frame against the reference classifier (a fresh
/// one per frame: it remembers blocked connections as the kernel does).
fn reference_check(rules: &RuleSet, cases: &[&Case]) -> Result<()> {
    for c in cases {
        let d = Reference::new(rules).classify(&c.frames[0]);
        let got = match (d.drop, &d.answer) {
            (false, _) => XDP_PASS,
            (true, Some(_)) => XDP_TX,
            (true, None) => XDP_DROP,
        };
        if got != c.expect {
            bail!("generator bug: the reference classifier says {} for {} ({}), expected {}", action_name(got), c.name, c.what, action_name(c.expect));
        }
    }
    Ok(())
}

struct Plan {
    repeat: u32,
    runs: usize,
    singles: usize,
    scenarios: Vec<usize>,
}

fn run_scenario(n: usize, plan: &Plan, seed: u64, warnings: &mut Vec<String>) -> Result<ScenarioResult> {
    eprintln!("== {} domain rules", thousands(n));
    let mut rng = SmallRng::seed_from_u64(seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let seeds = [seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1, seed.rotate_left(29) ^ 0x5bd1_e995];
    let mut load = Load::default();
    let t = Instant::now();
    let (mut rules, target) = ruleset(n, seeds, &mut rng);
    load.generate_s = t.elapsed().as_secs_f64();
    let mut scopes = [0usize; 3];
    for r in &rules.domains {
        scopes[match r.pattern.scope {
            DomainScope::Exact => 0,
            DomainScope::Subdomains => 1,
            DomainScope::ApexAndSubdomains => 2,
        }] += 1;
    }

    let capacity = Capacity { domains: DEFAULT_DOMAIN_CAPACITY.max(n as u32 + 1024), ..Capacity::default() };
    let t = Instant::now();
    let mut dp = Dataplane::load(capacity).context("loading the data plane (are you root?)")?;
    load.program_load_s = t.elapsed().as_secs_f64();
    let empty = RuleSet { settings: rules.settings.clone(), rules: rules.rules.clone(), ..RuleSet::default() };
    let t = Instant::now();
    dp.apply_rules(&empty).context("applying the empty rule set")?;
    load.empty_apply_s = t.elapsed().as_secs_f64();
    drop(empty);

    if n > 0 {
        let t = Instant::now();
        let compiled = filter_common::compile::compile_domains(&rules, seeds).map_err(anyhow::Error::msg)?;
        load.compile_domains_s = t.elapsed().as_secs_f64();
        drop(compiled);
    }
    let domains_before = sys::own_map_memory(names::DOMAINS);
    let mem_before = sys::meminfo();
    let t = Instant::now();
    dp.apply_rules(&rules).context("applying the domain rules")?;
    load.apply_s = t.elapsed().as_secs_f64();
    let mem_after = sys::meminfo();
    let domains_after = sys::own_map_memory(names::DOMAINS);
    load.writes_s = if n > 0 { load.apply_s - load.compile_domains_s } else { 0.0 };
    let entries = dp.map_usage().iter().find(|u| u.0 == names::DOMAINS).map_or(0, |u| u.1);
    let delta = domains_after.as_ref().map_or(0, |m| m.memlock_bytes as i64) - domains_before.as_ref().map_or(0, |m| m.memlock_bytes as i64);
    let memory = Memory {
        domains_before,
        domains_after,
        memlock_delta_bytes: delta,
        memlock_bytes_per_entry: if entries > 0 { delta as f64 / entries as f64 } else { 0.0 },
        meminfo_delta: mem_after.delta(mem_before),
        user_peak_rss_bytes: sys::peak_rss(),
    };
    eprintln!(
        "   program load {:.2} s; generate {:.3} s, compile_domains {:.3} s, apply {:.3} s (writes {:.3} s), {} DOMAINS entries, memlock {:+.1} MiB",
        load.program_load_s,
        load.generate_s,
        load.compile_domains_s,
        load.apply_s,
        load.writes_s,
        thousands(entries as usize),
        delta as f64 / 1048576.0
    );

    // The frames.
    let has_rules = n > 0;
    let mut frame_rng = SmallRng::seed_from_u64(seed ^ 0x7157);
    let plain = Case::one("ipv4-pass", format!("UDP {PORT_PLAIN} -> {PLAIN_DPORT}, 22-byte payload: no name read"), plain_frame(), XDP_PASS);
    let dns_pass = Case::one("dns-pass", format!("query A {PASSING_NAME} (EDNS), UDP/53"), dns_frame(0x1234, PASSING_NAME), XDP_PASS);
    let tls_pass = Case::one("tls-pass", format!("ClientHello, SNI {PASSING_NAME}, TCP/443"), tls_frame(PORT_TLS_PASS, PASSING_NAME, &mut frame_rng), XDP_PASS);
    let http_pass = Case::one("http-pass", format!("GET, Host {PASSING_NAME}, TCP/80"), http_frame(PORT_HTTP_PASS, PASSING_NAME), XDP_PASS);
    let dns_block = dns_frame(0x4321, BLOCKED_NAME);
    let tls_block = tls_frame(PORT_TLS_BLOCK, BLOCKED_NAME, &mut frame_rng);
    let http_block = http_frame(PORT_HTTP_BLOCK, BLOCKED_NAME);
    let dns_nx = Case::one("dns-nxdomain", format!("query A {BLOCKED_NAME}: NXDOMAIN answered in place (XDP_TX)"), dns_block.clone(), XDP_TX);
    let dns_drop = Case::one("dns-block-drop", format!("query A {BLOCKED_NAME}, rule action drop"), dns_block.clone(), XDP_DROP);
    let tls_first = Case { clear_flows: true, ..Case::one("tls-block-first", format!("ClientHello, SNI {BLOCKED_NAME}: first packet (lookup + BLOCKED_FLOWS insert)"), tls_block.clone(), XDP_DROP) };
    let tls_flow = Case::one("tls-block-flow", "the same ClientHello, connection already in BLOCKED_FLOWS", tls_block, XDP_DROP);
    let http_first = Case { clear_flows: true, ..Case::one("http-block-first", format!("GET, Host {BLOCKED_NAME}: first packet (lookup + BLOCKED_FLOWS insert)"), http_block.clone(), XDP_DROP) };
    let http_flow = Case::one("http-block-flow", "the same GET, connection already in BLOCKED_FLOWS", http_block, XDP_DROP);

    // Distinct names, one per packet, never repeated.
    let pool = plan.singles * plan.runs + 16;
    let mut seen = std::collections::HashSet::new();
    let dns_pass_many = Case {
        name: "dns-pass-distinct",
        what: format!("query A www.q<random>.example.com, a different name per packet ({} names)", thousands(pool)),
        frames: (0..pool)
            .map(|i| {
                let r = loop {
                    let r: u32 = frame_rng.random();
                    if seen.insert(r) {
                        break r;
                    }
                };
                dns_frame(i as u16, &format!("www.q{r}.example.com"))
            })
            .collect(),
        expect: XDP_PASS,
        clear_flows: false,
    };
    let dns_nx_many = (n > 1).then(|| Case {
        name: "dns-nxdomain-distinct",
        what: format!("a name covered by a random feed rule per packet ({} names): NXDOMAIN answered", thousands(pool)),
        frames: (0..pool).map(|i| dns_frame(i as u16, &covered_name(&rules.domains[frame_rng.random_range(0..rules.domains.len())]))).collect(),
        expect: XDP_TX,
        clear_flows: false,
    });

    {
        let t = Instant::now();
        let mut check: Vec<&Case> = vec![&plain, &dns_pass, &tls_pass, &http_pass];
        if has_rules {
            check.extend([&dns_nx, &tls_first, &http_first]);
        }
        reference_check(&rules, &check)?;
        eprintln!("   reference classifier agrees on the fixed frames ({:.2} s)", t.elapsed().as_secs_f64());
    }

    let program = dp.program()?;
    let prog = program.fd()?.as_fd();
    let mut flows = if has_rules { Some(Flows::open()?) } else { None };

    // single method, target rule NXDOMAIN.
    let mut single_cases: Vec<&Case> = vec![&plain, &dns_pass, &tls_pass, &http_pass];
    if has_rules {
        single_cases.extend([&dns_pass_many, &dns_nx, &tls_first, &http_first]);
    }
    if let Some(c) = &dns_nx_many {
        single_cases.push(c);
    }
    let mut figures = measure_single(prog, &single_cases, plan.singles, plan.runs, &mut flows)?;

    // What repeat would do to the answered query.
    let repeat_reuses_rewritten_frame = if has_rules {
        let r1 = sys::test_run(prog, &dns_nx.frames[0], 1)?.retval;
        let r2 = sys::test_run(prog, &dns_nx.frames[0], 2)?.retval;
        eprintln!("   blocked query: repeat=1 -> {}, repeat=2 -> {} (last repetition)", action_name(r1), action_name(r2));
        Some(r1 == XDP_TX && r2 == XDP_PASS)
    } else {
        None
    };

    // repeat method, target rule drop (the answered query cannot repeat).
    if let Some(at) = target {
        rules.domains[at].action = DomainAction::Drop;
        let t = Instant::now();
        dp.apply_rules(&rules).context("re-applying with the target rule's action changed")?;
        load.reapply_one_changed_s = t.elapsed().as_secs_f64();
        eprintln!("   re-apply with one rule changed {:.3} s", load.reapply_one_changed_s);
    }
    let program = dp.program()?;
    let prog = program.fd()?.as_fd();
    if let Some(f) = flows.as_mut() {
        f.clear()?;
    }
    let mut repeat_cases = vec![&plain, &dns_pass, &tls_pass, &http_pass];
    if has_rules {
        repeat_cases.extend([&dns_drop, &tls_flow, &http_flow]);
    }
    figures.extend(measure_repeat(prog, &repeat_cases, plan.repeat, plan.runs)?);
    ratio_of(&mut figures);
    for f in &figures {
        eprintln!(
            "   {:<22} {:<6} {:>4}  {:>7.1} ns (best {:>5.1})  {}",
            f.case,
            f.method.label(),
            f.expected,
            f.median_ns,
            f.best_ns,
            f.ratio_to_ipv4_pass.map_or(String::new(), |r| format!("{r:.2}x ipv4-pass"))
        );
        if !f.verdict_ok {
            let w = format!(
                "{} ({}) with {} rules returned {:?}; expected {}",
                f.case,
                f.method.label(),
                thousands(n),
                f.retvals.iter().map(|&r| action_name(r)).collect::<Vec<_>>(),
                f.expected
            );
            eprintln!("   WARNING: {w}");
            warnings.push(w);
        }
    }
    drop(flows);
    drop(dp);
    Ok(ScenarioResult {
        domain_rules: n,
        scopes,
        domains_entries: entries,
        load,
        memory,
        reference_checked: true,
        repeat_reuses_rewritten_frame,
        figures,
    })
}

fn targets(scenarios: &[ScenarioResult], quick: bool) -> Vec<Target> {
    let big = scenarios.iter().find(|s| s.domain_rules == TARGET_RULES).filter(|_| !quick);
    let rows: [(&str, Method, &str, bool); 4] = [
        ("dns-pass", Method::Repeat, "DNS query, not blocked", true),
        ("dns-block-drop", Method::Repeat, "DNS query, blocked (drop)", false),
        ("dns-nxdomain", Method::Single, "DNS query, blocked (NXDOMAIN answer)", false),
        ("dns-pass-distinct", Method::Single, "DNS query, not blocked, a different name per packet", false),
    ];
    rows.iter()
        .map(|&(case, method, label, primary)| {
            let name = format!("{label}, {} domain rules, vs the IPv4 pass path ({} method)", thousands(TARGET_RULES), method.label());
            let goal = format!("<= {TARGET_RATIO}x");
            let found = big.and_then(|s| {
                let f = s.figures.iter().find(|f| f.case == case && f.method == method)?;
                let base = s.figures.iter().find(|f| f.case == "ipv4-pass" && f.method == method)?;
                Some((f, base))
            });
            match found {
                Some((f, base)) => {
                    let r = f.ratio_to_ipv4_pass.unwrap_or(f64::NAN);
                    Target {
                        name,
                        goal,
                        measured: format!("{:.1} ns vs {:.1} ns = {r:.2}x (medians)", f.median_ns, base.median_ns),
                        met: Some(f.verdict_ok && r <= TARGET_RATIO),
                        primary,
                    }
                }
                None => Target { name, goal, measured: "not measured (quick run)".into(), met: None, primary },
            }
        })
        .collect()
}

fn met_text(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not evaluated",
    }
}

const FIGURE_HEADER: [&str; 6] = ["Domain rules", "Case", "Method", "Verdict", "ns/pkt (median / best)", "x ipv4-pass"];

fn figure_rows(r: &Report) -> Vec<[String; 6]> {
    let mut rows = Vec::new();
    for s in &r.scenarios {
        for m in [Method::Repeat, Method::Single] {
            for f in s.figures.iter().filter(|f| f.method == m) {
                rows.push([
                    thousands(s.domain_rules),
                    f.case.to_string(),
                    m.label().to_string(),
                    format!("{}{}", f.expected, if f.verdict_ok { "" } else { " (!)" }),
                    format!("{:.1} / {:.1}", f.median_ns, f.best_ns),
                    f.ratio_to_ipv4_pass.map_or("-".into(), |x| format!("{x:.2}x")),
                ]);
            }
        }
    }
    rows
}

const LOAD_HEADER: [&str; 8] =
    ["Domain rules", "DOMAINS entries", "generate s", "compile_domains s", "apply s (writes s)", "re-apply, 1 changed s", "DOMAINS memlock", "Slab delta"];

fn mib(b: i64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

fn load_rows(r: &Report) -> Vec<[String; 8]> {
    r.scenarios
        .iter()
        .map(|s| {
            let l = &s.load;
            let m = &s.memory;
            [
                thousands(s.domain_rules),
                thousands(s.domains_entries as usize),
                format!("{:.3}", l.generate_s),
                format!("{:.3}", l.compile_domains_s),
                format!("{:.3} ({:.3})", l.apply_s, l.writes_s),
                if s.domain_rules > 0 { format!("{:.3}", l.reapply_one_changed_s) } else { "-".into() },
                format!(
                    "{} -> {} ({:.0} B/entry)",
                    mib(m.domains_before.as_ref().map_or(0, |x| x.memlock_bytes as i64)),
                    mib(m.domains_after.as_ref().map_or(0, |x| x.memlock_bytes as i64)),
                    m.memlock_bytes_per_entry
                ),
                format!("{:+.1} MiB", m.meminfo_delta.slab as f64 / 1048576.0),
            ]
        })
        .collect()
}

fn text_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|&w| "-".repeat(w)).collect());
    for row in rows {
        line(row.to_vec());
    }
    out
}

fn md_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(N));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

fn floor_line(r: &Report) -> Option<String> {
    let f = r.harness_floor.as_ref()?;
    Some(format!(
        "Harness floor (a program that only returns XDP_PASS, ipv4-pass frame): {:.1} ns (repeat), {:.1} ns (single). Every figure includes it.",
        f.repeat.median_ns, f.single.median_ns
    ))
}

fn repeat_note(r: &Report) -> String {
    match r.scenarios.iter().find_map(|s| s.repeat_reuses_rewritten_frame) {
        Some(true) => "Checked in this run: the blocked query with `repeat` = 2 returns XDP_PASS (the second repetition sees the NXDOMAIN answer the first one wrote, a UDP packet from port 53), so the answered query is measured with the `single` method and the `repeat` method measures the same query under a drop rule.".into(),
        Some(false) => "Checked in this run: the blocked query with `repeat` = 2 did not return XDP_PASS, so this kernel may restore the frame between repetitions; the `single` method is kept for comparability.".into(),
        None => String::new(),
    }
}

fn section(r: &Report) -> String {
    let m = &r.machine;
    let mut md = String::new();
    let _ = writeln!(md, "<!-- {SECTION}:start -->");
    let _ = writeln!(md, "## Domain names (DNS, TLS SNI, HTTP Host)\n");
    let _ = writeln!(md, "Generated by `edgefilter-domains-bench` on {} — do not edit this section by hand. Regenerate it with\n", r.date_utc);
    let _ = writeln!(md, "```sh\n{REGENERATE}\n# which runs:\n{RUN_COMMAND}\n```\n");
    if r.quick {
        let _ = writeln!(md, "**Quick run (`--quick`): 100,000 rules instead of 1,000,000 and fewer repetitions; target not evaluated.**\n");
    }
    let _ = writeln!(md, "- Machine: {} ({} CPUs, `nproc`), {:.0} MiB RAM, kernel {}", m.cpu_model, m.nproc, m.mem_total_mib, m.kernel);
    let _ = writeln!(md, "- Commit: {}", m.commit);
    let _ = writeln!(md, "- Invoked as: `{}`", r.command);
    let _ = writeln!(md, "- `repeat` = {}, {} runs per figure, {} packets per `single` run; whole run {:.0} s\n", thousands(r.repeat as usize), r.runs, thousands(r.singles), r.total_s);
    let _ = writeln!(md, "Figures are for this machine only; they are measured, never asserted.\n");

    let _ = writeln!(md, "### Target\n");
    let rows: Vec<[String; 4]> = r
        .targets
        .iter()
        .map(|t| [if t.primary { format!("**{}**", t.name) } else { format!("{} (same bound, for reference)", t.name) }, t.goal.clone(), t.measured.clone(), met_text(t.met).into()])
        .collect();
    md += &md_table(["Target", "Goal", "Measured", "Result"], &rows);
    md.push('\n');

    let _ = writeln!(md, "### Per-packet cost (BPF_PROG_TEST_RUN)\n");
    let _ = writeln!(md, "\"x ipv4-pass\" divides by the IPv4 pass path of the same scenario measured the same way. (!) marks a verdict other than intended.\n");
    md += &md_table(FIGURE_HEADER, &figure_rows(r));
    md.push('\n');
    if let Some(f) = floor_line(r) {
        let _ = writeln!(md, "{f}\n");
    }

    let _ = writeln!(md, "### Loading domain rules\n");
    let _ = writeln!(md, "Wall time in seconds. `compile_domains` is `filter_common::compile::compile_domains` alone (timed outside the apply); apply is `Dataplane::apply_rules` of the set onto a freshly loaded program already holding an empty rule set (it compiles the names again, then batch-writes `DOMAINS` and switches generation); writes = apply - compile_domains. Re-apply: the same set with one rule's action changed (every name hashed again, one entry written). `DOMAINS` is a hash map without preallocation; memlock is the map's own estimate from /proc/self/fdinfo, Slab the system-wide /proc/meminfo difference around the apply.\n");
    md += &md_table(LOAD_HEADER, &load_rows(r));
    md.push('\n');
    for s in r.scenarios.iter().filter(|s| s.domain_rules > 0) {
        let _ = writeln!(
            md,
            "- {} rules: scopes exact / `*.` / `.` = {} / {} / {}; program load {:.2} s, empty first apply {:.3} s; peak RSS of the benchmark {}",
            thousands(s.domain_rules),
            thousands(s.scopes[0]),
            thousands(s.scopes[1]),
            thousands(s.scopes[2]),
            s.load.program_load_s,
            s.load.empty_apply_s,
            mib(s.memory.user_peak_rss_bytes as i64)
        );
    }
    md.push('\n');

    let _ = writeln!(md, "### Method\n");
    let _ = writeln!(md, "- {METHOD}");
    let note = repeat_note(r);
    if !note.is_empty() {
        let _ = writeln!(md, "- {note}");
    }
    let _ = writeln!(md, "- Rules (seed {:#x}): {NAME_DESCRIPTION} Name hash seeds are fixed per run; 0 rules means the domain stage is skipped entirely.", r.seed);
    let _ = writeln!(md, "- Frames: Ethernet + IPv4 (no options), {} -> {} (DNS) / {} (TLS, HTTP); TCP segments are PSH|ACK with the timestamps option, one connection per case:", fmt_ip(frames::CLIENT), fmt_ip(frames::RESOLVER), fmt_ip(frames::SERVER));
    for f in &r.frames {
        let _ = writeln!(md, "  - `{}` ({} bytes): {}", f.case, f.len, f.what);
    }
    let _ = writeln!(md, "- The fixed frames' verdicts were checked with the reference classifier (`filter_common::reference`) before measuring; every measured packet's XDP action is checked.");
    if !r.warnings.is_empty() {
        let _ = writeln!(md, "\n### Warnings\n");
        for w in &r.warnings {
            let _ = writeln!(md, "- {w}");
        }
    }
    let _ = write!(md, "<!-- {SECTION}:end -->");
    md
}

fn fmt_ip(a: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

/// Replaces this benchmark's section of `path` (or appends it), leaving
/// everything else as it is.
fn write_section(path: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let start = format!("<!-- {SECTION}:start -->");
    let end = format!("<!-- {SECTION}:end -->");
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &old[..a], section, &old[b + end.len()..]),
        _ => format!("{}\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    sys::catch_signals();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("edgefilter-domains-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(false): figures written, but some verdict was not the intended one.
fn run(args: &Args) -> Result<bool> {
    let started = Instant::now();
    let plan = if args.quick {
        let scenarios = args.rules.iter().map(|&n| n.min(100_000)).collect();
        Plan { repeat: args.repeat.min(100_000), runs: args.runs.min(3), singles: args.singles.min(500), scenarios }
    } else {
        Plan { repeat: args.repeat, runs: args.runs, singles: args.singles, scenarios: args.rules.clone() }
    };
    if plan.runs == 0 || plan.repeat == 0 || plan.singles == 0 {
        bail!("--runs, --repeat and --singles must be at least 1");
    }

    // The harness floor, both methods.
    let harness_floor = match sys::load_noop_xdp() {
        Ok(fd) => {
            let noop = Case::one("noop", "ipv4-pass frame through `r0 = XDP_PASS; exit`", plain_frame(), XDP_PASS);
            let c = [&noop];
            let repeat = measure_repeat(fd.as_fd(), &c, plan.repeat, plan.runs)?.remove(0);
            let single = measure_single(fd.as_fd(), &c, plan.singles, plan.runs, &mut None)?.remove(0);
            eprintln!("harness floor: {:.1} ns (repeat), {:.1} ns (single)", repeat.median_ns, single.median_ns);
            Some(Floor { repeat, single })
        }
        Err(e) => {
            eprintln!("warning: could not load the no-op XDP program for the harness floor: {e}");
            None
        }
    };

    let mut warnings = Vec::new();
    let mut scenarios = Vec::new();
    for &n in &plan.scenarios {
        scenarios.push(run_scenario(n, &plan, args.seed, &mut warnings)?);
    }

    let mut frame_rng = SmallRng::seed_from_u64(args.seed ^ 0x7157);
    let info = |case: &'static str, what: &str, f: Vec<u8>| FrameInfo { case, what: what.to_string(), len: f.len(), hex: hex::encode(&f) };
    let frames = vec![
        info("ipv4-pass", &format!("UDP {PORT_PLAIN} -> {PLAIN_DPORT}, 22 bytes of payload (no name read on that port)"), plain_frame()),
        info("dns-pass", &format!("UDP -> 53, query A `{PASSING_NAME}` with EDNS(0)"), dns_frame(0x1234, PASSING_NAME)),
        info("dns-nxdomain / dns-block-drop", &format!("UDP -> 53, query A `{BLOCKED_NAME}` with EDNS(0); the answer drops the OPT record"), dns_frame(0x4321, BLOCKED_NAME)),
        info("tls-pass", &format!("TCP -> 443, ClientHello (517-byte record: 16 cipher suites, 17 extensions, SNI `{PASSING_NAME}` 8th, padding)"), tls_frame(PORT_TLS_PASS, PASSING_NAME, &mut frame_rng)),
        info("tls-block-*", &format!("TCP -> 443, the same shape with SNI `{BLOCKED_NAME}`"), tls_frame(PORT_TLS_BLOCK, BLOCKED_NAME, &mut frame_rng)),
        info("http-pass", &format!("TCP -> 80, Firefox-like GET /index.html, Host `{PASSING_NAME}` first of 6 headers"), http_frame(PORT_HTTP_PASS, PASSING_NAME)),
        info("http-block-*", &format!("TCP -> 80, the same GET with Host `{BLOCKED_NAME}`"), http_frame(PORT_HTTP_BLOCK, BLOCKED_NAME)),
    ];

    let mut report = Report {
        tool: "edgefilter-domains-bench",
        date_utc: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        regenerate: REGENERATE,
        quick: args.quick,
        machine: machine(),
        repeat: plan.repeat,
        runs: plan.runs,
        singles: plan.singles,
        seed: args.seed,
        method: METHOD,
        rule_generation: NAME_DESCRIPTION,
        frames,
        harness_floor,
        targets: targets(&scenarios, args.quick),
        scenarios,
        warnings,
        total_s: 0.0,
    };
    report.total_s = started.elapsed().as_secs_f64();

    println!();
    println!("Per-packet cost, BPF_PROG_TEST_RUN (repeat: {} repetitions x {} runs; single: {} packets x {} runs; ns/packet median / best)", thousands(plan.repeat as usize), plan.runs, thousands(plan.singles), plan.runs);
    print!("{}", text_table(FIGURE_HEADER, &figure_rows(&report)));
    if let Some(f) = floor_line(&report) {
        println!("{f}");
    }
    let note = repeat_note(&report);
    if !note.is_empty() {
        println!("{note}");
    }
    println!();
    println!("Loading domain rules (seconds; memory from /proc)");
    print!("{}", text_table(LOAD_HEADER, &load_rows(&report)));
    println!();
    println!("Target");
    for t in &report.targets {
        println!("  {}{}: {} (goal {}): {}", t.name, if t.primary { "" } else { " [same bound, for reference]" }, t.measured, t.goal, met_text(t.met));
    }
    for w in &report.warnings {
        println!("WARNING: {w}");
    }

    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n").with_context(|| format!("writing {}", args.out.display()))?;
    write_section(&args.markdown, &section(&report))?;
    eprintln!("wrote {} and the {SECTION} section of {}; total {:.1} s", args.out.display(), args.markdown.display(), report.total_s);
    Ok(report.warnings.is_empty())
}
