//! `filter-agent top`: the busiest destinations and sources right now,
//! estimated from sampled packets.
//!
//! The XDP program copies the headers of one IP packet in `sample_every`
//! (per CPU, before any verdict) into the `TRAFFIC_SAMPLES` ring buffer.
//! The agent drains it into a 10-second sliding [`Window`] and serves the
//! aggregate on `/top.json`; `filter-agent top` prints it. Estimates are
//! `samples x sample_every / window`: with s samples behind a row, its
//! relative error is about 1/sqrt(s). Addresses appear here (and only
//! here): metrics never carry them.
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use filter_common::maps::Sample;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The sliding window's length.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Samples held at most (about 60 bytes each); past that the window
/// shrinks, and the estimates divide by the time it still covers.
pub const MAX_SAMPLES: usize = 500_000;

/// What a sample keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub at: Instant,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub len: u32,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Seen {
    /// A `TRAFFIC_SAMPLES` record, if it is one.
    pub fn parse(record: &[u8], at: Instant) -> Option<Seen> {
        if record.len() < std::mem::size_of::<Sample>() {
            return None;
        }
        // SAFETY: a plain-integer struct read from a buffer at least its size.
        let s: Sample = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
        let addr = |a: [u8; 16]| -> IpAddr {
            if s.v6 != 0 {
                IpAddr::V6(Ipv6Addr::from(a))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            }
        };
        Some(Seen { at, src: addr(s.src), dst: addr(s.dst), len: s.len, proto: s.proto, src_port: s.src_port, dst_port: s.dst_port })
    }
}

/// The samples of the last [`WINDOW`].
pub struct Window {
    pub sample_every: u32,
    /// Protected prefix groups, to name a destination's.
    groups: Vec<(String, Vec<IpNet>)>,
    samples: VecDeque<Seen>,
    /// Samples cover the time from here (the reader's start, or the last
    /// sample evicted for room).
    covered_from: Instant,
    /// Records that were not samples.
    pub malformed: u64,
}

pub type SharedWindow = Arc<Mutex<Window>>;

impl Window {
    pub fn new(sample_every: u32, groups: Vec<(String, Vec<IpNet>)>, now: Instant) -> Window {
        Window { sample_every, groups, samples: VecDeque::new(), covered_from: now, malformed: 0 }
    }

    pub fn push(&mut self, s: Seen) {
        if self.samples.len() >= MAX_SAMPLES {
            if let Some(old) = self.samples.pop_front() {
                self.covered_from = self.covered_from.max(old.at);
            }
        }
        self.samples.push_back(s);
    }

    /// Forgets samples older than the window.
    pub fn prune(&mut self, now: Instant) {
        let cutoff = now.checked_sub(WINDOW).unwrap_or(now);
        while self.samples.front().is_some_and(|s| s.at < cutoff) {
            self.samples.pop_front();
        }
        self.covered_from = self.covered_from.max(cutoff);
    }

    /// The most specific protected group holding `addr`.
    fn group_of(&self, addr: IpAddr) -> Option<&str> {
        self.groups
            .iter()
            .flat_map(|(name, nets)| nets.iter().filter(|n| n.contains(&addr)).map(move |n| (n.prefix_len(), name)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, name)| name.as_str())
    }

    /// The top `n` destinations and sources by `by`, as of `now`.
    pub fn report(&mut self, now: Instant, by: By, n: usize) -> Report {
        self.prune(now);
        let seconds = now.saturating_duration_since(self.covered_from).as_secs_f64().clamp(0.001, WINDOW.as_secs_f64());
        let scale = self.sample_every as f64 / seconds;
        let total_samples = self.samples.len() as u64;
        let total_bytes: u64 = self.samples.iter().map(|s| s.len as u64).sum();
        let rows = |dst: bool| -> Vec<Row> {
            let mut per: HashMap<IpAddr, (u64, u64)> = HashMap::new();
            for s in &self.samples {
                let e = per.entry(if dst { s.dst } else { s.src }).or_default();
                e.0 += 1;
                e.1 += s.len as u64;
            }
            let mut list: Vec<(IpAddr, u64, u64)> = per.into_iter().map(|(a, (p, b))| (a, p, b)).collect();
            let key = |r: &(IpAddr, u64, u64)| if by == By::Bps { r.2 } else { r.1 };
            list.sort_by(|a, b| key(b).cmp(&key(a)).then(a.0.cmp(&b.0)));
            list.truncate(n);
            list.into_iter()
                .map(|(addr, samples, bytes)| {
                    let mine = self.samples.iter().filter(|s| (if dst { s.dst } else { s.src }) == addr);
                    let (mostly, mostly_share) = mostly(mine, samples);
                    let share = if by == By::Bps { bytes as f64 / total_bytes.max(1) as f64 } else { samples as f64 / total_samples.max(1) as f64 };
                    Row {
                        address: addr.to_string(),
                        pps: samples as f64 * scale,
                        bps: bytes as f64 * 8.0 * scale,
                        samples,
                        share,
                        mostly,
                        mostly_share,
                        group: if dst { self.group_of(addr).map(str::to_string) } else { None },
                    }
                })
                .collect()
        };
        Report {
            sample_every: self.sample_every,
            window_seconds: seconds,
            samples: total_samples,
            by,
            pps: total_samples as f64 * scale,
            bps: total_bytes as f64 * 8.0 * scale,
            destinations: rows(true),
            sources: rows(false),
        }
    }
}

/// What most of an address' samples are: the protocol and the source or
/// destination port (whichever is more concentrated), e.g. `udp from port
/// 123` for a reflection flood, `tcp to port 443` for a SYN flood.
fn mostly<'a>(samples: impl Iterator<Item = &'a Seen>, count: u64) -> (String, f64) {
    let mut src: HashMap<(u8, u16), u64> = HashMap::new();
    let mut dst: HashMap<(u8, u16), u64> = HashMap::new();
    for s in samples {
        *src.entry((s.proto, s.src_port)).or_default() += 1;
        *dst.entry((s.proto, s.dst_port)).or_default() += 1;
    }
    let top = |m: &HashMap<(u8, u16), u64>| m.iter().max_by_key(|(k, v)| (**v, std::cmp::Reverse(**k))).map(|(k, v)| (*k, *v));
    let (Some(((proto, sport), sn)), Some(((dproto, dport), dn))) = (top(&src), top(&dst)) else { return (String::new(), 0.0) };
    let (text, n) = if !matches!(proto, 6 | 17 | 132) {
        let n: u64 = src.iter().filter(|(k, _)| k.0 == proto).map(|(_, v)| v).sum();
        (proto_name(proto), n)
    } else if sn >= dn {
        (format!("{} from port {sport}", proto_name(proto)), sn)
    } else {
        (format!("{} to port {dport}", proto_name(dproto)), dn)
    };
    (text, n as f64 / count.max(1) as f64)
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        132 => "sctp".into(),
        other => format!("proto {other}"),
    }
}

/// What the rows are ranked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Pps,
    Bps,
}

/// One address: estimated rates from its samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub address: String,
    pub pps: f64,
    pub bps: f64,
    pub samples: u64,
    /// Of all sampled packets (or bytes, by bps).
    pub share: f64,
    /// What most of its packets are (`udp from port 123`), and their share.
    pub mostly: String,
    pub mostly_share: f64,
    /// Destinations: the protected prefix group it belongs to.
    pub group: Option<String>,
}

/// `/top.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// 0: sampling is off.
    pub sample_every: u32,
    pub window_seconds: f64,
    pub samples: u64,
    pub by: By,
    /// Everything sampled, estimated.
    pub pps: f64,
    pub bps: f64,
    pub destinations: Vec<Row>,
    pub sources: Vec<Row>,
}

/// `?by=pps|bps&n=10` of `/top.json`.
pub fn query_args(query: Option<&str>) -> (By, usize) {
    let (mut by, mut n) = (By::Pps, 10);
    for (k, v) in query.unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')) {
        match (k, v) {
            ("by", "bps") => by = By::Bps,
            ("by", _) => by = By::Pps,
            ("n", v) => n = v.parse().unwrap_or(10).clamp(1, 1000),
            _ => {}
        }
    }
    (by, n)
}

/// Drains `TRAFFIC_SAMPLES` into `window` until the agent stops.
pub async fn read_samples(window: SharedWindow, ring: RingBuf<MapData>) {
    use tokio::io::{unix::AsyncFd, Interest};
    // SAFETY: the ring buffer owns its map's descriptor, open (and the same)
    // for as long as it lives, and it lives inside the AsyncFd.
    let mut ring = match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("error: `filter-agent top` has no data: polling the {} ring buffer: {e}", filter_common::maps::names::TRAFFIC_SAMPLES);
            return;
        }
    };
    const BATCH: usize = 4096;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let mut guard = match ring.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: traffic sampling stopped: polling the ring buffer: {e}");
                return;
            }
        };
        let now = Instant::now();
        let mut malformed = 0;
        while batch.len() < BATCH {
            match guard.get_inner_mut().next() {
                Some(item) => match Seen::parse(&item, now) {
                    Some(s) => batch.push(s),
                    None => malformed += 1,
                },
                None => break,
            }
        }
        if batch.len() < BATCH {
            guard.clear_ready();
        }
        let mut w = window.lock().expect("top window lock");
        w.malformed += malformed;
        for s in batch.drain(..) {
            w.push(s);
        }
        w.prune(now);
    }
}

/// `2.97 Mbit/s`.
fn bits(x: f64) -> String {
    let n = crate::ddos::si(x);
    match n.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => format!("{} {c}bit/s", &n[..i]),
        _ => format!("{n} bit/s"),
    }
}

fn pkts(x: f64) -> String {
    format!("{} pps", crate::ddos::si(x))
}

/// The report as `filter-agent top` prints it.
pub fn render(r: &Report, agent: &str) -> String {
    let mut out = String::new();
    if r.sample_every == 0 {
        let _ = writeln!(out, "traffic sampling is off on {agent} (sample_every = 0 in agent.toml): nothing to show");
        return out;
    }
    let _ = writeln!(
        out,
        "edgefilter top on {agent}: last {:.0} s, 1 packet in {} sampled ({} samples): about {} / {} in total",
        r.window_seconds,
        r.sample_every,
        r.samples,
        pkts(r.pps),
        bits(r.bps)
    );
    let by = if r.by == By::Bps { "bit/s" } else { "packets/s" };
    for (title, rows, dst) in [("TOP DESTINATIONS", &r.destinations, true), ("TOP SOURCES", &r.sources, false)] {
        let _ = writeln!(out, "\n{title} by {by}");
        if rows.is_empty() {
            let _ = writeln!(out, "  (no samples in the window)");
            continue;
        }
        let last = if dst { "group" } else { "" };
        let _ = writeln!(out, "  {:>2}  {:<39} {:>11} {:>13} {:>6} {:>8}  {:<28} {last}", "#", "address", "packets/s", "bits/s", "share", "samples", "mostly");
        for (i, row) in rows.iter().enumerate() {
            let mostly = if row.mostly.is_empty() { String::new() } else { format!("{} ({:.0}%)", row.mostly, row.mostly_share * 100.0) };
            let _ = writeln!(
                out,
                "  {:>2}  {:<39} {:>11} {:>13} {:>5.1}% {:>8}  {:<28} {}",
                i + 1,
                row.address,
                pkts(row.pps),
                bits(row.bps),
                row.share * 100.0,
                row.samples,
                mostly,
                row.group.as_deref().unwrap_or(if dst { "-" } else { "" })
            );
        }
    }
    let _ = writeln!(out, "\nEstimates from samples: a row with s samples is good to about 1/sqrt(s) (100 samples: 10%).");
    out
}

/// `filter-agent top`: asks the agent and prints its answer.
pub fn run(agent: std::net::SocketAddr, by: By, n: usize) -> anyhow::Result<()> {
    use anyhow::Context;
    let by_name = if by == By::Bps { "bps" } else { "pps" };
    let body = ureq::get(&format!("http://{agent}/top.json?by={by_name}&n={n}"))
        .call()
        .with_context(|| format!("no agent answering on {agent} (is `filter-agent run` started?)"))?
        .body_mut()
        .read_to_string()?;
    let report: Report = serde_json::from_str(&body).with_context(|| format!("{agent}/top.json: not a top report: {body}"))?;
    print!("{}", render(&report, &agent.to_string()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at: Instant, src: &str, dst: &str, len: u32, proto: u8, sport: u16, dport: u16) -> Seen {
        Seen { at, src: src.parse().unwrap(), dst: dst.parse().unwrap(), len, proto, src_port: sport, dst_port: dport }
    }

    #[test]
    fn records_parse_for_both_families() {
        let mut s = Sample { len: 90, src_port: 123, dst_port: 40000, proto: 17, v6: 0, ..Sample::default() };
        s.src[..4].copy_from_slice(&[198, 18, 0, 1]);
        s.dst[..4].copy_from_slice(&[198, 19, 0, 2]);
        let mut rec = vec![0u8; std::mem::size_of::<Sample>()];
        // SAFETY: writing a plain-integer struct into a buffer its size.
        unsafe { std::ptr::write_unaligned(rec.as_mut_ptr().cast(), s) };
        let now = Instant::now();
        let p = Seen::parse(&rec, now).unwrap();
        assert_eq!(p, seen(now, "198.18.0.1", "198.19.0.2", 90, 17, 123, 40000));
        s.v6 = 1;
        s.src = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        unsafe { std::ptr::write_unaligned(rec.as_mut_ptr().cast(), s) };
        assert_eq!(Seen::parse(&rec, now).unwrap().src, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(Seen::parse(&rec[..10], now), None);
    }

    #[test]
    fn top_talkers_are_estimated_over_the_window() {
        let t0 = Instant::now();
        let groups = vec![("customers".to_string(), vec!["198.19.0.0/16".parse().unwrap()]), ("vip".to_string(), vec!["198.19.0.2/32".parse().unwrap()])];
        let mut w = Window::new(100, groups, t0);
        // 10 s: a reflection flood of 900 samples toward 198.19.0.2 from
        // port 123 of 3 sources, and 100 big TCP samples to 198.19.0.9:443.
        for i in 0..900u32 {
            let at = t0 + Duration::from_millis(i as u64 * 10);
            w.push(seen(at, ["198.18.0.1", "198.18.0.2", "198.18.0.3"][i as usize % 3], "198.19.0.2", 100, 17, 123, 40000 + i as u16));
        }
        for i in 0..100u32 {
            w.push(seen(t0 + Duration::from_millis(i as u64 * 90), "198.18.5.5", "198.19.0.9", 1500, 6, 50000 + i as u16, 443));
        }
        let r = w.report(t0 + Duration::from_secs(10), By::Pps, 2);
        assert_eq!(r.samples, 1000);
        assert_eq!(r.window_seconds, 10.0);
        // 900 samples x 100 / 10 s.
        let d = &r.destinations[0];
        assert_eq!((d.address.as_str(), d.pps, d.samples), ("198.19.0.2", 9000.0, 900));
        assert_eq!(d.bps, 900.0 * 100.0 * 8.0 * 10.0);
        assert_eq!((d.mostly.as_str(), d.mostly_share, d.group.as_deref()), ("udp from port 123", 1.0, Some("vip")));
        assert_eq!(d.share, 0.9);
        let d = &r.destinations[1];
        assert_eq!((d.address.as_str(), d.mostly.as_str(), d.group.as_deref()), ("198.19.0.9", "tcp to port 443", Some("customers")));
        assert_eq!(r.sources.len(), 2);
        assert_eq!(r.sources[0].pps, 3000.0);
        assert_eq!(r.sources[0].group, None);
        // By bits: the TCP destination (150 kB) comes before the flood (90 kB).
        let r = w.report(t0 + Duration::from_secs(10), By::Bps, 1);
        assert_eq!(r.destinations[0].address, "198.19.0.9");
        assert_eq!(r.sources[0].address, "198.18.5.5");
        // 5 s later only the last half of the window is left.
        let r = w.report(t0 + Duration::from_secs(15), By::Pps, 10);
        assert!(r.samples < 600 && r.samples > 400, "{}", r.samples);
        assert_eq!(r.window_seconds, 10.0);
        let text = render(&r, "127.0.0.1:9960");
        assert!(text.contains("TOP DESTINATIONS by packets/s"), "{text}");
        assert!(text.contains("198.19.0.2") && text.contains("udp from port 123 (100%)") && text.contains("vip"), "{text}");
        assert!(text.contains("TOP SOURCES by packets/s"), "{text}");
        let r = w.report(t0 + Duration::from_secs(60), By::Pps, 10);
        assert_eq!(r.samples, 0);
        assert!(render(&r, "x").contains("(no samples in the window)"));
    }

    #[test]
    fn a_young_window_divides_by_the_time_it_covers() {
        let t0 = Instant::now();
        let mut w = Window::new(10, Vec::new(), t0);
        for i in 0..20 {
            w.push(seen(t0 + Duration::from_millis(i * 100), "2001:db8::1", "2001:db8::2", 64, 1, 0, 0));
        }
        let r = w.report(t0 + Duration::from_secs(2), By::Pps, 5);
        assert_eq!(r.window_seconds, 2.0);
        assert_eq!(r.destinations[0].pps, 100.0);
        assert_eq!(r.destinations[0].mostly, "icmp");
        assert_eq!(query_args(Some("by=bps&n=3")), (By::Bps, 3));
        assert_eq!(query_args(None), (By::Pps, 10));
        let off = Report { sample_every: 0, ..r };
        assert!(render(&off, "a").contains("sampling is off"));
    }
}
