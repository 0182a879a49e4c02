//! The signature stage of the real XDP program (BPF_PROG_TEST_RUN) against
//! the reference (`filter_common::reference::signatures`) on generated
//! signature packs and payloads: verdicts, rule and reason counters, the
//! stage's own counters and the deep-inspection events it wants to send
//! must all be identical. Bans are followed across packets on both sides.
//!
//! Payloads put the rules' contents (and near misses) at every offset, in
//! mixed case, across the scanned-bytes boundary, in HTTP requests cut
//! anywhere; some packets carry so many patterns that the kernel's hit log
//! or work budget runs out (the packet is then undecided, as the reference
//! says).
//!
//! Replay a failure with `EDGEFILTER_SEED=<seed>`; `EDGEFILTER_PACKETS`
//! overrides the number of packets per rule set.
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use aya::programs::{TestRun, TestRunOptions};
use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::maps::{stat, Reason};
use filter_common::reference::{Reference, SigState};
use filter_common::rules::order_file::Category;
use filter_common::rules::{RuleInfo, RuleSet, Settings, SignatureRule};
use filter_common::signatures::parse_pack;
use rand::{rngs::SmallRng, seq::IndexedRandom, Rng, SeedableRng};

use edgefilter_tests::counters::Counters;
use edgefilter_tests::l7gen::{self, Flow};

const RULE_SETS: usize = 8;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// Words contents and payloads are made of: few, overlapping, so rules
/// and packets meet often and the automaton's suffix links matter.
const WORDS: [&str; 24] = [
    "${jndi:", "ldap", "LDAP://", "jndi", "${", "%24%7b", "class", "module", "classLoader", "pipeline", "GET", "POST", "admin", "a",
    "ab", "abab", "aba", "/x", "HTTP", "host", "\r\n", "=", ".", "|00 01|",
];
/// The content (and message) of the ban rule every rule set has.
const BAN_TRIGGER: &str = "edgefilter-ban-trigger";
const BAN_TRIGGER_MSG: &str = "always-present ban rule";
const HOME: [&str; 3] = ["198.19.0.0/16", "2001:db8:1::/48", "198.18.5.0/24"];
const ADDRS: [&str; 16] = [
    "198.19.0.1", "198.19.3.7", "198.18.5.9", "198.18.0.20", "198.18.9.1", "198.18.9.2", "198.18.7.7", "198.19.200.1",
    "2001:db8:1::5", "2001:db8:2::9", "2001:db8:1:ff::1", "2001:db8:3::1", "2001:db8:4::1", "2001:db8:1::77", "2001:db8:5::5", "2001:db8:6::6",
];

fn word(rng: &mut SmallRng) -> String {
    let w = *WORDS.choose(rng).unwrap();
    if rng.random_bool(0.2) {
        // A random short string over a tiny alphabet: overlaps galore.
        (0..rng.random_range(1..6)).map(|_| *[b'a', b'b', b'$', b'{', b':'].choose(rng).unwrap() as char).collect()
    } else {
        w.to_string()
    }
}

/// A content in rule syntax (escaping what needs it).
fn content_text(w: &str) -> String {
    if w.starts_with('|') {
        return w.to_string();
    }
    w.chars()
        .map(|c| match c {
            '"' => "|22|".to_string(),
            ';' => "|3b|".to_string(),
            '\\' => "|5c|".to_string(),
            '\r' => "|0d|".to_string(),
            '\n' => "|0a|".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn ports(rng: &mut SmallRng) -> String {
    match rng.random_range(0..8) {
        0..4 => "any".into(),
        4 => "80".into(),
        5 => "[80,8080]".into(),
        6 => "1024:".into(),
        _ => "!53".into(),
    }
}

fn addr(rng: &mut SmallRng) -> &'static str {
    ["any", "any", "$HOME_NET", "$EXTERNAL_NET", "[198.18.0.0/16,!198.18.9.0/24]"][rng.random_range(0..5)]
}

fn rule(rng: &mut SmallRng, sid: u32) -> String {
    let proto = ["tcp", "tcp", "udp", "http"][rng.random_range(0..4)];
    let action = if rng.random_bool(0.6) { "drop" } else { "alert" };
    let mut opts = String::new();
    let n = rng.random_range(1..4);
    let mut sticky = "";
    for i in 0..n {
        if proto == "http" && rng.random_bool(0.5) {
            let b = ["http.uri", "http.method", "http.host", "http.header", "http.request_body", "pkt_data"][rng.random_range(0..6)];
            if b != sticky {
                opts.push_str(&format!(" {b};"));
                sticky = b;
            }
        }
        let negated = i > 0 && rng.random_bool(0.15);
        let w = word(rng);
        opts.push_str(&format!(" content:{}\"{}\";", if negated { "!" } else { "" }, content_text(&w)));
        if rng.random_bool(0.5) {
            opts.push_str(" nocase;");
        }
        match rng.random_range(0..8) {
            0 => opts.push_str(&format!(" offset:{};", rng.random_range(0..20))),
            1 => opts.push_str(&format!(" depth:{};", w.len() + rng.random_range(0..40))),
            2 if i > 0 => opts.push_str(&format!(" distance:{};", rng.random_range(-3..10))),
            3 if i > 0 => opts.push_str(&format!(" within:{};", w.len() + rng.random_range(0..30))),
            4 if i > 0 => opts.push_str(&format!(" distance:{}; within:{};", rng.random_range(0..5), w.len() + rng.random_range(0..10))),
            5 => opts.push_str(" endswith;"),
            _ => {}
        }
    }
    let ban = if action == "drop" && rng.random_bool(0.1) { " metadata: edgefilter_ban 600;" } else { "" };
    format!("{action} {proto} {} {} -> {} {} (msg:\"gen {sid}\";{opts}{ban} sid:{sid};)", addr(rng), ports(rng), addr(rng), ports(rng))
}

fn ruleset(rng: &mut SmallRng) -> RuleSet {
    let vars: HashMap<String, String> =
        [("HOME_NET".to_string(), format!("[{}]", HOME.join(","))), ("EXTERNAL_NET".to_string(), "!$HOME_NET".to_string())].into();
    let mut sigs = Vec::new();
    let want = rng.random_range(1..40);
    let mut sid = 1;
    // Every set has a ban rule some packets trigger (see `payload`), so
    // bans and ban drops are reached whatever the seed; the generated
    // rules add more, at random.
    let mut extra = format!("drop tcp any any -> any any (msg:\"{BAN_TRIGGER_MSG}\"; content:\"{BAN_TRIGGER}\"; metadata: edgefilter_ban 600; sid:{sid};)\n");
    sid += 1;
    if rng.random_bool(0.5) {
        // Costly to check: the first content is there, the second never
        // is, and searching for it in a run of `a`s compares 8 bytes per
        // position.
        for _ in 0..3 {
            extra.push_str(&format!("alert tcp any any -> any any (content:\"classLoader\"; content:\"aaaaaaab\"; sid:{sid};)\n"));
            sid += 1;
        }
    }
    if rng.random_bool(0.4) {
        // Many distinct patterns: a packet with all of them overflows the
        // kernel's hit log.
        for _ in 0..40 {
            let w: String = (0..5).map(|_| rng.random_range(b'a'..=b'z') as char).collect();
            extra.push_str(&format!("alert udp any any -> any any (content:\"{w}\"; sid:{sid};)\n"));
            sid += 1;
        }
    }
    if let Ok(pack) = parse_pack(std::path::Path::new("gen.rules"), &extra, &vars, false) {
        sigs.extend(pack.rules);
    }
    let want = want + sigs.len();
    while sigs.len() < want {
        let text = rule(rng, sid);
        sid += 1;
        // Generated combinations the language refuses are simply redrawn.
        if let Ok(pack) = parse_pack(std::path::Path::new("gen.rules"), &text, &vars, false) {
            sigs.extend(pack.rules);
        }
    }
    let mut settings = Settings::default();
    settings.http_ports = if rng.random_bool(0.5) { vec![80] } else { vec![80, 8080] };
    settings.signatures.scan_bytes = [1024, 1024, 1100, 2048][rng.random_range(0..4)];
    // No events are sent: every one the stage wants counts as rate limited,
    // which the reference can count exactly.
    settings.signatures.event_rate = 0;
    if rng.random_bool(0.3) {
        settings.signatures.hints = vec![b"${".to_vec(), b"%24".to_vec()];
    }
    let mut rs = RuleSet { settings, ..RuleSet::default() };
    for (i, sig) in sigs.into_iter().enumerate() {
        let rule_id = i as u32 + 1;
        let enforce = sig.action == filter_common::signatures::SigAction::Drop && (rng.random_bool(0.9) || sig.msg == BAN_TRIGGER_MSG);
        rs.rules.push(RuleInfo {
            id: rule_id,
            order_id: "signatures:gen".into(),
            authority: "test".into(),
            category: Category::Attack,
            dry_run: !enforce,
            file: "gen.rules".into(),
            line: i + 1,
            comment: None,
        });
        rs.signatures.push(SignatureRule { rule_id, sig: Arc::new(sig), enforce });
    }
    rs
}

/// A payload: an HTTP request or raw bytes, with rule words at random
/// places (some straddling the scan boundary), in mixed case, maybe cut.
fn payload(rng: &mut SmallRng, rules: &RuleSet) -> Vec<u8> {
    let scan = rules.settings.signatures.scan_bytes as usize;
    // The ban trigger is left to the rare insertion at the end.
    let generated: Vec<_> = rules.signatures.iter().filter(|r| r.sig.msg != BAN_TRIGGER_MSG).collect();
    let mut words: Vec<Vec<u8>> = Vec::new();
    for _ in 0..rng.random_range(0..6) {
        let w = if rng.random_bool(0.7) {
            let r = generated.choose(rng).unwrap();
            let c = r.sig.contents.choose(rng).unwrap();
            c.bytes.clone()
        } else {
            word(rng).into_bytes()
        };
        words.push(mixed_case(rng, &w));
    }
    let mut body = Vec::new();
    match rng.random_range(0..10) {
        // A flood of patterns: the hit log or the work budget runs out.
        0 => {
            for _ in 0..rng.random_range(5..40) {
                let w = word(rng);
                body.extend(mixed_case(rng, w.as_bytes()));
            }
            for r in &generated {
                if rng.random_bool(0.7) {
                    body.extend(&r.sig.contents[0].bytes);
                }
            }
            if rng.random_bool(0.5) {
                body.extend(std::iter::repeat_n(b'a', rng.random_range(500..1400)));
            }
        }
        1..6 => {
            let method = ["GET", "POST", "get", "PUT"][rng.random_range(0..4)];
            let mut uri = String::from("/");
            if let Some(w) = words.first() {
                uri.push_str(&String::from_utf8_lossy(w).replace([' ', '\r', '\n'], "_"));
            }
            let mut req = format!("{method} {uri} HTTP/1.1\r\nHost: {}\r\nUser-Agent: test\r\n", ["example.com", "JNDI.example", " a "][rng.random_range(0..3)]);
            for w in words.iter().skip(1) {
                if rng.random_bool(0.5) {
                    req.push_str(&format!("X-{}: {}\r\n", rng.random_range(0..100), String::from_utf8_lossy(w).replace(['\r', '\n'], " ")));
                }
            }
            req.push_str(if rng.random_bool(0.8) { "\r\n" } else { "\n" });
            body = req.into_bytes();
            for w in &words {
                if rng.random_bool(0.3) {
                    body.extend(w);
                }
            }
            if rng.random_bool(0.2) {
                // Padding so a word lands across the scan boundary.
                let at = scan.saturating_sub(rng.random_range(0..8));
                while body.len() < at {
                    body.push(b'.');
                }
                body.extend(words.first().cloned().unwrap_or_else(|| b"jndi".to_vec()));
                body.extend(b"tail");
            }
        }
        _ => {
            for _ in 0..rng.random_range(0..200) {
                body.push(rng.random());
            }
            for w in &words {
                let at = rng.random_range(0..=body.len());
                body.splice(at..at, w.iter().copied());
            }
        }
    }
    if rng.random_bool(0.1) && !body.is_empty() {
        body.truncate(rng.random_range(0..body.len()));
    }
    if rng.random_bool(0.0015) {
        // Rare, or banned sources would soon send most of the packets.
        body.splice(0..0, BAN_TRIGGER.bytes());
    }
    body.truncate(1400);
    body
}

fn mixed_case(rng: &mut SmallRng, w: &[u8]) -> Vec<u8> {
    if rng.random_bool(0.3) {
        w.iter().map(|b| if rng.random_bool(0.5) { b.to_ascii_uppercase() } else { *b }).collect()
    } else {
        w.to_vec()
    }
}

fn frame(rng: &mut SmallRng, rules: &RuleSet) -> Vec<u8> {
    let v6 = rng.random_bool(0.4);
    let pick = |rng: &mut SmallRng| loop {
        let a: IpAddr = ADDRS.choose(rng).unwrap().parse().unwrap();
        if a.is_ipv6() == v6 {
            return a;
        }
    };
    let (src, dst) = (pick(rng), pick(rng));
    let dport = [80, 80, 8080, 53, 443, 2000][rng.random_range(0..6)];
    let mut f = Flow::with_addrs(src, dst, dport).with_ports(rng.random_range(1000..60000), dport);
    if rng.random_bool(0.1) {
        f = f.with_vlans(&[rng.random_range(1..4095)]);
    }
    let p = payload(rng, rules);
    if rng.random_bool(0.25) {
        l7gen::udp_frame(&f, &p)
    } else {
        l7gen::tcp_frame(&f, f.seq, l7gen::tcp_flags::PSH | l7gen::tcp_flags::ACK, &p)
    }
}

/// The kernel's count of packets that had candidate rules.
fn candidates(dp: &Dataplane) -> u64 {
    let name = stat::NAMES[stat::CANDIDATES as usize];
    dp.sig_totals().expect("SIG_STATS").into_iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v)
}

fn run_once(dp: &Dataplane, frame: &[u8]) -> u32 {
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() };
    dp.program().unwrap().test_run(opts).expect("BPF_PROG_TEST_RUN").return_value
}

/// The reference's stage counters, with the events it wanted to send
/// counted as rate limited (the rate is 0).
fn reference_stats(state: &SigState) -> BTreeMap<&'static str, u64> {
    let mut stats = state.stats;
    stats[stat::EVENTS_LIMITED as usize] += state.events.len() as u64;
    stat::NAMES.iter().zip(stats).filter(|(_, v)| *v != 0).map(|(n, v)| (*n, v)).collect()
}

#[test]
fn signature_stage_matches_reference() {
    let seed = edgefilter_tests::seed();
    let per_set: usize = std::env::var("EDGEFILTER_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000);
    eprintln!("signature differential seed {seed} ({RULE_SETS} rule sets x {per_set} packets)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 1_000, prefixes_v6: 1_000, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    let mut mix: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<(Reason, u32), usize> = BTreeMap::new();
    for set in 0..RULE_SETS {
        let rules = ruleset(&mut rng);
        dp.apply_rules(&rules).expect("apply rule set");
        dp.reset_counters().unwrap();
        dp.clear_bans().unwrap();
        let reference = Reference::new(&rules);
        let mut expected = Counters::default();
        for i in 0..per_set {
            let frame = frame(&mut rng, &rules);
            let want = reference.classify(&frame);
            let code = run_once(&dp, &frame);
            let want_code = if want.drop { XDP_DROP } else { XDP_PASS };
            if code != want_code {
                panic!(
                    "seed {seed}, rule set {set}, packet {i}: kernel {code} but reference {want:?}\nframe: {}\npayload: {:?}\nkernel stage counters: {:?}\nrules: {:#?}",
                    hex::encode(&frame),
                    String::from_utf8_lossy(&frame[frame.len().min(54)..]),
                    dp.sig_totals().unwrap().into_iter().filter(|(_, v)| *v != 0).collect::<Vec<_>>(),
                    rules.signatures.iter().map(|r| (r.rule_id, r.enforce, &r.sig)).collect::<Vec<_>>()
                );
            }
            *outcomes.entry((want.reason, code)).or_default() += 1;
            expected.add(&want, frame.len());
        }
        let state = reference.sigs.into_inner();
        expected.l7 = reference_stats(&state);
        let mut got = Counters::kernel(&dp, &rules, false);
        got.l7 = dp.sig_totals().unwrap().into_iter().filter(|(_, v)| *v != 0).collect();
        assert_eq!(got, expected, "seed {seed}, rule set {set}: counters differ (kernel, then reference)");
        for (k, v) in &expected.l7 {
            *mix.entry(k).or_default() += v;
        }
    }
    eprintln!("outcomes (reason, XDP action): {outcomes:?}");
    eprintln!("signature stage counters: {mix:?}");
    // The generator must reach every part of the stage, or the test proves little.
    for want in [(Reason::Signature, XDP_DROP), (Reason::Banned, XDP_DROP), (Reason::Pass, XDP_PASS)] {
        assert!(outcomes.contains_key(&want), "no packet reached {want:?}");
    }
    for counter in ["scanned", "candidates", "matches", "ban_drops", "bans", "undecided", "events_rate_limited"] {
        assert!(mix.get(counter).copied().unwrap_or(0) > 0, "no packet moved the {counter} counter");
    }
}

/// Buffers of 128 bytes and at least 4 longest-pattern lengths (here 160)
/// are walked as four interleaved walks, each starting afresh where the
/// previous one ends, and the seams mended afterwards: a pattern at every
/// offset of buffers of several lengths (single-walk and four-walk ones),
/// across those seams too, is found exactly as the reference finds it,
/// whatever the bytes around it: the true walk deep in a pattern's prefix
/// at a seam (mended over many bytes), or many early reports of the
/// walk after a seam (more than it holds).
#[test]
fn pattern_found_at_every_offset_of_a_multi_walk_buffer() {
    let vars: HashMap<String, String> = HashMap::new();
    // The 40-byte pattern sets the walks' overlap; the short one is moved
    // across every offset, including the overlap's edges.
    let long = "l".repeat(40);
    let text = format!(
        "drop tcp any any -> any any (content:\"seam\"; sid:1;)\nalert tcp any any -> any any (content:\"{long}\"; sid:2;)\n\
         alert tcp any any -> any any (content:\"ss\"; sid:3;)\n"
    );
    let pack = parse_pack(std::path::Path::new("seam.rules"), &text, &vars, false).expect("pack");
    let mut rules = RuleSet::default();
    rules.settings.signatures.event_rate = 0;
    // Whole Ethernet-sized payloads are scanned.
    rules.settings.signatures.scan_bytes = 2048;
    for (i, sig) in pack.rules.into_iter().enumerate() {
        let rule_id = i as u32 + 1;
        let enforce = sig.action == filter_common::signatures::SigAction::Drop;
        rules.rules.push(RuleInfo {
            id: rule_id,
            order_id: "signatures:seam".into(),
            authority: "test".into(),
            category: Category::Attack,
            dry_run: !enforce,
            file: "seam.rules".into(),
            line: i + 1,
            comment: None,
        });
        rules.signatures.push(SignatureRule { rule_id, sig: Arc::new(sig), enforce });
    }
    let mut dp = Dataplane::load(Capacity { prefixes_v4: 100, prefixes_v6: 100, v4_groups: 1, ..Capacity::default() }).expect("load XDP program");
    dp.apply_rules(&rules).expect("apply rules");
    let reference = Reference::new(&rules);
    let flow = Flow::with_addrs("198.18.0.1".parse().unwrap(), "198.19.0.1".parse().unwrap(), 80);
    let mut dropped = 0;
    // Fillers: dots after a run of the long pattern's prefix; runs of its
    // prefix everywhere (deep states at every seam); runs of `s` (a report
    // at every byte).
    let fillers: [fn(usize) -> u8; 3] = [|_| b'.', |i| if i % 40 == 39 { b'.' } else { b'l' }, |i| if i % 16 < 12 { b's' } else { b'.' }];
    for (fill, len) in fillers.iter().enumerate().flat_map(|(f, _)| [127usize, 128, 159, 160, 161, 200, 255, 319, 320, 362, 1024, 1460].map(|len| (f, len))) {
        for at in 0..=len - 4 {
            let mut payload: Vec<u8> = (0..len).map(fillers[fill]).collect();
            if fill == 0 {
                // Part of the long pattern too, so its states are visited.
                let l = (len / 3).min(39);
                payload[..l].fill(b'l');
            }
            payload[at..at + 4].copy_from_slice(b"seam");
            let frame = l7gen::tcp_frame(&flow, flow.seq, l7gen::tcp_flags::PSH | l7gen::tcp_flags::ACK, &payload);
            let want = reference.classify(&frame);
            assert!(want.drop, "the reference must find the pattern (filler {fill}, len {len}, at {at})");
            assert_eq!(run_once(&dp, &frame), XDP_DROP, "filler {fill}, payload of {len} bytes, pattern at {at}: the kernel missed it");
            dropped += 1;
        }
    }
    eprintln!("{dropped} placements dropped");

    // The last walk may run a few bytes past the payload, over what an
    // earlier, longer packet left in the scratch buffer: a pattern
    // completed there must not count. Each pair: a long packet with the
    // pattern ending 1 byte past `len`, then one of `len` bytes ending in
    // the pattern's first 3 bytes.
    let mut passed = 0;
    for len in 160usize..=420 {
        let mut long = vec![b'.'; 1024];
        long[len - 3..len + 1].copy_from_slice(b"seam");
        let frame = l7gen::tcp_frame(&flow, flow.seq, l7gen::tcp_flags::PSH | l7gen::tcp_flags::ACK, &long);
        assert_eq!(run_once(&dp, &frame), XDP_DROP, "1,024 bytes, pattern at {}", len - 3);
        let mut short = vec![b'.'; len];
        short[len - 3..].copy_from_slice(b"sea");
        let frame = l7gen::tcp_frame(&flow, flow.seq, l7gen::tcp_flags::PSH | l7gen::tcp_flags::ACK, &short);
        assert!(!reference.classify(&frame).drop, "the reference must not find the pattern (len {len})");
        let before = candidates(&dp);
        assert_eq!(run_once(&dp, &frame), XDP_PASS, "payload of {len} bytes: the kernel matched bytes past its end");
        // Not even a candidate: the rule check would reject it, but the
        // walk itself must not report past the payload.
        assert_eq!(candidates(&dp), before, "payload of {len} bytes: a pattern past its end made a candidate");
        passed += 1;
    }
    eprintln!("{passed} short packets after long ones passed");
}
