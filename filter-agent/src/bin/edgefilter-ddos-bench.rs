//! `cargo xtask bench ddos`: how fast floods are dropped at a veth, by
//! edgefilter (rate-limit rules, and the same rules as plain L4 drops) next
//! to nftables (`netdev` ingress) and xdp-filter, in one run; and the
//! per-packet cost of the pass path with rate-limit rules active
//! (BPF_PROG_TEST_RUN).
//!
//! Set-up: a sender and a receiver namespace joined by one veth pair per
//! dropper (so no dropper is attached or detached between runs). The flood
//! generator (`tests/src/flood.rs`, included below) transmits crafted
//! frames with BPF_PROG_TEST_RUN in live-frames mode out of the sender
//! veth; the receiver veth runs threaded NAPI, so all its receive work
//! (taking the frame off the veth ring, the XDP program or the skb path
//! through GRO and the ingress hook, freeing) happens in one kernel thread
//! whose CPU time `/proc/<pid>/schedstat` gives to the nanosecond.
//!
//! The generator runs on `--cpu` (0) and the receive threads on `--rx-cpu`
//! (1 when there are two CPUs), all SCHED_FIFO so other work on the
//! machine does not decide the figures. The generator sends faster than
//! any dropper but the floor can drop, the veth ring (256 frames) takes
//! what the receive thread has room for and refuses the rest, and the
//! dropper's own counters give the packets/s it actually dropped at full
//! load. Per dropper and flood it reports:
//!
//! * dropped packets/s, from the dropper's own counters;
//! * receive CPU ns per dropped packet, and from it the drop capacity of
//!   one CPU (10^9 / ns), which does not depend on how busy the receive
//!   thread was;
//! * the generator's offered rate and CPU ns per frame;
//!
//! as medians over the rounds and, for receive ns per drop, the fastest
//! round too: the targets are judged on each dropper's fastest round (see
//! `FASTEST_ROUND`: noise on a shared VM only adds time).
//!
//! With `--rx-cpu` equal to `--cpu` everything shares one CPU (receive
//! thread above the generator, so it drains the ring at every batch
//! boundary and nothing is lost): the dropped rate then includes the
//! generator's cost, and the capacity figure is the one to compare.
//!
//! Droppers run interleaved (each round visits all of them, starting
//! elsewhere each round), so they see the same machine load. Figures are
//! printed, never asserted; the run fails only when something is not
//! dropped or passed as intended. Needs root.
//!
//!     cargo run --release -p filter-agent --bin edgefilter-ddos-bench -- \
//!         --out bench-results/ddos.json --markdown BENCHMARKS.md
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;

use filter_common::maps::Reason;
use filter_common::reference::Reference;
use filter_common::rules::{parse_order, RuleSet, Settings};

#[allow(dead_code)]
#[path = "bench_common/mod.rs"]
mod bench_common;
#[allow(dead_code)]
#[path = "edgefilter-ddos-bench/droppers.rs"]
mod droppers;
#[allow(dead_code)]
#[path = "edgefilter-ddos-bench/env.rs"]
mod env;
/// The flood generator shared with the end-to-end tests (the tests crate
/// depends on filter-agent, so this binary cannot depend on it).
#[allow(dead_code)]
#[path = "../../../tests/src/flood.rs"]
mod flood;
#[allow(dead_code)]
#[path = "edgefilter-bench/sys.rs"]
mod sys;

use bench_common::{machine, median, thousands, Machine};
use droppers::{Dropper, Placement};
use flood::{Endpoint, Flood, FloodSpec, Limit, Tuning};

const REGENERATE: &str = "cargo xtask bench ddos";
const RUN_COMMAND: &str = "cargo run --release -p filter-agent --bin edgefilter-ddos-bench -- --out bench-results/ddos.json --markdown BENCHMARKS.md";
const SECTION: &str = "ddos-bench";

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// The protected host the floods aim at, its prefix, and where the spoofed
/// sources come from (all inside 198.18.0.0/15).
const TARGET: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 10);
const PROTECTED: &str = "198.19.1.0/24";
const SOURCES: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);
/// A legitimate client and another host, for the pass path.
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 10);
const OTHER_HOST: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 20);
/// The rate-limit rules' rate per protected host (and rule slot). Low, so
/// that what they let through (to the receiver's stack, which costs
/// several times a drop) weighs little in the receive thread's CPU time
/// next to the millions dropped.
const RATE_PPS: u64 = 1_000;
/// UDP payload of the reflection flood: 60-byte frames (64 on a wire with
/// the FCS), the usual packets-per-second yardstick.
const REFLECTION_PAYLOAD: usize = 18;

/// Targets (issue 7): edgefilter's drop rate at least this many times
/// nftables', and at least xdp-filter's.
const TARGET_VS_NFT: f64 = 5.0;
const TARGET_VS_XDP_FILTER: f64 = 1.0;

/// Real-time priorities: the generator, the receive threads above it, this
/// thread above both (it only reads counters, on time).
const PRIO_GENERATOR: i32 = 50;
const PRIO_RECEIVE: i32 = 60;
const PRIO_MAIN: i32 = 70;

#[derive(Parser)]
#[command(name = "edgefilter-ddos-bench", about = "Flood drop rates at a veth (edgefilter, nftables, xdp-filter) and the pass path with rate-limit rules")]
struct Args {
    /// JSON file for every figure (parent directories are created).
    #[arg(long, default_value = "bench-results/ddos.json")]
    out: PathBuf,
    /// Markdown file whose `ddos-bench` section is (re)written.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// Seconds measured per dropper and flood in each round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Seconds of flood before each measurement starts.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Rounds (each visits every dropper with every flood); medians and
    /// each dropper's fastest round are reported, targets judged on the
    /// fastest.
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// CPU of the generator.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// CPU of every receive thread (default: the CPU after `--cpu`, or
    /// `--cpu` itself on a one-CPU machine).
    #[arg(long)]
    rx_cpu: Option<usize>,
    /// Live-frames batch (frames per transmit burst; the veth ring holds 256).
    #[arg(long, default_value_t = 256)]
    batch: u32,
    /// Frames per BPF_PROG_TEST_RUN call of the generator.
    #[arg(long, default_value_t = 1 << 15)]
    chunk: u32,
    /// Floods, in this order: udp-reflection, syn.
    #[arg(long, value_delimiter = ',', default_value = "udp-reflection,syn")]
    floods: Vec<String>,
    /// Leave the generator and receive threads on the normal scheduler.
    #[arg(long)]
    no_realtime: bool,
    /// Pass path: BPF_PROG_TEST_RUN repetitions per run.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Pass path: runs per figure (median and best reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Smoke test: one round of 1 s, fewer repetitions (targets not evaluated).
    #[arg(long)]
    quick: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn catch_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Sleeps, giving up (with an error, so every guard cleans up) on SIGINT/SIGTERM.
fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if STOP.load(Ordering::Relaxed) {
            bail!("interrupted by a signal");
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

// ---------------------------------------------------------------- rules --

/// The benchmark's order: UDP reflection and SYN floods toward the
/// protected host, rate-limited per destination (`rate`) or dropped.
fn order_text(rate: Option<u64>) -> String {
    let rl = rate.map_or(String::new(), |pps| format!("rate_limit = {{ per = \"destination\", pps = {pps} }}\n"));
    format!(
        r#"id = "BENCH-DDOS-1"
authority = "edgefilter-ddos-bench"
reference = "generated by edgefilter-ddos-bench"
category = "attack"
received = 2020-01-01T00:00:00Z
effective = 2020-01-01T00:00:00Z
expires = 2099-01-01T00:00:00Z
action = "drop"

[[entry]]
comment = "UDP reflection (DNS, NTP, SSDP, memcached) toward the protected host"
protocol = "udp"
source_ports = [53, 123, 1900, 11211]
destination = ["{TARGET}/32"]
{rl}
[[entry]]
comment = "SYN flood toward the protected host's web server"
protocol = "tcp"
destination = ["{TARGET}/32"]
destination_ports = [80]
tcp_flags = "syn,!ack"
{rl}"#
    )
}

/// `protect`: account traffic toward the protected prefix (`[[protect]]`),
/// as a deployment against floods would.
fn ruleset(text: &str, protect: bool) -> Result<RuleSet> {
    let order = parse_order(Path::new("<edgefilter-ddos-bench>"), text).map_err(|e| anyhow::anyhow!("the benchmark's order does not parse: {e:?}"))?;
    let mut settings = Settings::default();
    if protect {
        settings.protect = vec![("bench-protected".into(), vec![PROTECTED.parse()?])];
    }
    RuleSet::build(settings, &[order], chrono::Utc::now()).map_err(anyhow::Error::msg)
}

const NFT_DROP: [&str; 2] =
    ["ip daddr 198.19.1.10 udp sport { 53, 123, 1900, 11211 } counter drop", "ip daddr 198.19.1.10 tcp dport 80 tcp flags & (syn | ack) == syn counter drop"];
const NFT_LIMIT: [&str; 2] = [
    "ip daddr 198.19.1.10 udp sport { 53, 123, 1900, 11211 } limit rate over 1000/second counter drop",
    "ip daddr 198.19.1.10 tcp dport 80 tcp flags & (syn | ack) == syn limit rate over 1000/second counter drop",
];
const XDP_FILTER_RULES: [&str; 5] = [
    "port 53 --mode src --proto udp",
    "port 123 --mode src --proto udp",
    "port 1900 --mode src --proto udp",
    "port 11211 --mode src --proto udp",
    "port 80 --mode dst --proto tcp",
];

// --------------------------------------------------------------- floods --

fn flood_spec(name: &str) -> Result<FloodSpec> {
    let (net, len) = SOURCES;
    Ok(match name {
        "udp-reflection" => FloodSpec::udp_reflection(IpAddr::V4(net), len, IpAddr::V4(TARGET)).with_payload(REFLECTION_PAYLOAD),
        "syn" => FloodSpec::syn(IpAddr::V4(net), len, IpAddr::V4(TARGET), 80),
        other => bail!("unknown flood `{other}` (udp-reflection, syn)"),
    })
}

/// Every frame the generator makes must be dropped by the plain rules, and
/// by the rate-limit rules once the buckets are spent (reference
/// classifier, frozen clock). Buckets are per rule slot and destination:
/// the reflection entry's four ports are four slots, four buckets.
fn check_flood(name: &str, flood: &Flood, drop_rules: &RuleSet, rate_rules: &RuleSet) -> Result<()> {
    let plain = Reference::new(drop_rules);
    let limited = Reference::new(rate_rules);
    const TAIL: usize = 256;
    let samples = 5 * RATE_PPS as usize + TAIL;
    for i in 0..samples {
        let f = if i < 64 { flood.kernel_sample()? } else { flood.sample(&mut rand_u32) };
        let d = plain.classify(&f);
        if !d.drop || d.reason != Reason::L4 {
            bail!("generator or rule bug: a {name} frame gets {:?} (drop {}) from the plain rules: {}", d.reason, d.drop, hex::encode(&f));
        }
        let d = limited.classify(&f);
        if d.drop && d.reason != Reason::RateLimit {
            bail!("a {name} frame is dropped for {:?} by the rate-limit rules", d.reason);
        }
        if i >= samples - TAIL && !d.drop {
            bail!("the rate-limit rules still pass {name} frames after {} of them at a frozen clock (burst {RATE_PPS} per slot)", thousands(i));
        }
    }
    Ok(())
}

fn rand_u32() -> u32 {
    rand::random()
}

// ------------------------------------------------------------ measuring --

#[derive(Serialize, Clone, Default)]
struct Sample {
    round: usize,
    seconds: f64,
    offered_pps: f64,
    dropped_pps: f64,
    /// Receive thread CPU ns per dropped packet.
    rx_ns_per_drop: f64,
    /// Share of the CPU the receive thread used.
    rx_cpu_share: f64,
    /// Generator CPU ns per frame sent.
    gen_ns_per_frame: f64,
    gen_cpu_share: f64,
}

struct Snap {
    t: Instant,
    dropped: u64,
    rx_ns: u64,
    sent: u64,
    gen_ns: u64,
}

fn snap(d: &Dropper, running: &flood::Running) -> Result<Snap> {
    let t0 = Instant::now();
    let dropped = d.dropped()?;
    let t1 = Instant::now();
    Ok(Snap { t: t0 + (t1 - t0) / 2, dropped, rx_ns: env::cpu_ns(d.napi_pid)?, sent: running.sent(), gen_ns: running.cpu_ns() })
}

struct Plan {
    seconds: f64,
    warmup: f64,
    rounds: usize,
    tuning: Tuning,
    cpu: usize,
    rx_cpu: usize,
    repeat: u32,
    runs: usize,
}

fn measure(env: &env::Env, flood: &Arc<Flood>, d: &Dropper, plan: &Plan, round: usize) -> Result<Sample> {
    let at = Endpoint { netns: Some(env.sender_ns.clone()), interface: d.pair.sender.clone(), cpus: vec![plan.cpu] };
    let running = flood.start(&at, Limit::UntilStopped, plan.tuning)?;
    let result = (|| -> Result<Sample> {
        sleep(Duration::from_secs_f64(plan.warmup))?;
        let a = snap(d, &running)?;
        sleep(Duration::from_secs_f64(plan.seconds))?;
        let b = snap(d, &running)?;
        let dt = (b.t - a.t).as_secs_f64();
        let dropped = b.dropped.saturating_sub(a.dropped) as f64;
        let sent = b.sent.saturating_sub(a.sent) as f64;
        let rx = b.rx_ns.saturating_sub(a.rx_ns) as f64;
        let gen = b.gen_ns.saturating_sub(a.gen_ns) as f64;
        Ok(Sample {
            round,
            seconds: dt,
            offered_pps: sent / dt,
            dropped_pps: dropped / dt,
            rx_ns_per_drop: if dropped > 0.0 { rx / dropped } else { f64::NAN },
            rx_cpu_share: rx / (dt * 1e9),
            gen_ns_per_frame: if sent > 0.0 { gen / sent } else { f64::NAN },
            gen_cpu_share: gen / (dt * 1e9),
        })
    })();
    let report = running.stop();
    let sample = result?;
    report.context("the flood generator failed")?;
    Ok(sample)
}

#[derive(Serialize, Clone)]
struct Cell {
    flood: String,
    dropper: &'static str,
    samples: Vec<Sample>,
    offered_pps: f64,
    dropped_pps: f64,
    /// Median over the rounds.
    rx_ns_per_drop: f64,
    /// 10^9 / rx_ns_per_drop: packets/s one CPU could drop.
    capacity_pps: f64,
    /// The fastest round's receive ns per drop, and 10^9 / that: what the
    /// targets are judged on (see `FASTEST_ROUND`).
    fastest_rx_ns_per_drop: f64,
    fastest_capacity_pps: f64,
    /// fastest_rx_ns_per_drop minus the floor's (same flood): the
    /// dropper's own decision cost above receiving a frame and dropping
    /// it blindly.
    above_floor_ns: Option<f64>,
    gen_ns_per_frame: f64,
    /// Dropped / offered (rate limits pass RATE_PPS per rule slot).
    delivered_share: f64,
    /// Median share of its CPU the receive thread used.
    rx_cpu_share: f64,
    /// The receive thread was busy (>= 75% of its CPU): the dropped rate
    /// is the dropper's rate at full load.
    saturated: bool,
    /// The dropper took (nearly) everything offered: its rate is a lower
    /// bound set by the generator.
    generator_limited: bool,
    /// Edgefilter's drops by reason over the whole run.
    reasons: Option<Vec<(String, u64)>>,
}

fn cell(flood: &str, d: &Dropper, samples: Vec<Sample>) -> Cell {
    let med = |f: fn(&Sample) -> f64| median(&samples.iter().map(f).filter(|v| v.is_finite()).collect::<Vec<_>>());
    let offered = med(|s| s.offered_pps);
    let dropped = med(|s| s.dropped_pps);
    let rx = med(|s| s.rx_ns_per_drop);
    let fastest = samples.iter().map(|s| s.rx_ns_per_drop).filter(|v| v.is_finite()).fold(f64::NAN, f64::min);
    Cell {
        flood: flood.to_string(),
        dropper: d.name,
        offered_pps: offered,
        dropped_pps: dropped,
        rx_ns_per_drop: rx,
        capacity_pps: 1e9 / rx,
        fastest_rx_ns_per_drop: fastest,
        fastest_capacity_pps: 1e9 / fastest,
        above_floor_ns: None,
        gen_ns_per_frame: med(|s| s.gen_ns_per_frame),
        delivered_share: if offered > 0.0 { dropped / offered } else { 0.0 },
        rx_cpu_share: med(|s| s.rx_cpu_share),
        saturated: false,
        generator_limited: false,
        reasons: None,
        samples,
    }
}

// ------------------------------------------------------------ pass path --

#[derive(Serialize, Clone)]
struct PassFigure {
    case: &'static str,
    what: String,
    rules: &'static str,
    expected: &'static str,
    frame_len: usize,
    runs_ns: Vec<f64>,
    median_ns: f64,
    best_ns: f64,
    retvals: Vec<u32>,
    verdict_ok: bool,
    /// median / the same frame's median with no rules.
    ratio_to_no_rules: Option<f64>,
}

struct PassCase {
    name: &'static str,
    what: String,
    frame: Vec<u8>,
    /// (rule set, expected action)
    under: Vec<(usize, u32)>,
}

const SET_NAMES: [&str; 3] = ["none", "rate-limit", "rate-limit, never exceeded"];

fn frame(kind: flood::FloodKind, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Vec<u8>> {
    let spec = FloodSpec::new(kind, flood::Source::Fixed(IpAddr::V4(src)), IpAddr::V4(dst)).with_payload(REFLECTION_PAYLOAD);
    Ok(Flood::new(spec)?.template().to_vec())
}

fn pass_cases() -> Result<Vec<PassCase>> {
    use flood::FloodKind::{Tcp, Udp};
    Ok(vec![
        PassCase {
            name: "udp-other-host",
            what: format!("UDP {CLIENT}:40000 -> {OTHER_HOST}:4000 (no rule applies)"),
            frame: frame(Udp { src_port: 40_000, dst_port: 4000 }, CLIENT, OTHER_HOST)?,
            under: vec![(0, XDP_PASS), (1, XDP_PASS)],
        },
        PassCase {
            name: "udp-to-protected",
            what: format!("UDP {CLIENT}:40000 -> {TARGET}:4000 (the protected host's L4 rules checked, none matches)"),
            frame: frame(Udp { src_port: 40_000, dst_port: 4000 }, CLIENT, TARGET)?,
            under: vec![(0, XDP_PASS), (1, XDP_PASS)],
        },
        PassCase {
            name: "tcp-ack-to-protected",
            what: format!("TCP ACK {CLIENT}:40000 -> {TARGET}:80 (the SYN rule's port matches, its flags do not)"),
            frame: frame(Tcp { src_port: 40_000, dst_port: 80, flags: 0x10 }, CLIENT, TARGET)?,
            under: vec![(0, XDP_PASS), (1, XDP_PASS)],
        },
        PassCase {
            name: "ntp-within-rate",
            what: format!("UDP {CLIENT}:123 -> {TARGET}:40000, matched by the NTP rate limit and within it (its token bucket taken and updated)"),
            frame: frame(Udp { src_port: 123, dst_port: 40_000 }, CLIENT, TARGET)?,
            under: vec![(0, XDP_PASS), (2, XDP_PASS)],
        },
        PassCase {
            name: "ntp-over-rate",
            what: format!("the same frame over the {RATE_PPS} pps rate: dropped (reason rate_limit)"),
            frame: frame(Udp { src_port: 123, dst_port: 40_000 }, CLIENT, TARGET)?,
            under: vec![(0, XDP_PASS), (1, XDP_DROP)],
        },
    ])
}

fn pass_path(dp: &mut filter_agent::dataplane::Dataplane, sets: &[RuleSet; 3], plan: &Plan, warnings: &mut Vec<String>) -> Result<Vec<PassFigure>> {
    let cases = pass_cases()?;
    // Reference verdicts of the first packet (a rate limit's first packet
    // is within its burst: the over-rate case is checked in the kernel).
    for c in &cases {
        for &(set, expect) in &c.under {
            if c.name == "ntp-over-rate" && set == 1 {
                continue;
            }
            let d = Reference::new(&sets[set]).classify(&c.frame);
            if (d.drop as u32 == 1) != (expect == XDP_DROP) {
                bail!("bug: the reference classifier says drop={} ({:?}) for {} under rules `{}`", d.drop, d.reason, c.name, SET_NAMES[set]);
            }
        }
    }
    let mut runs: Vec<Vec<Vec<f64>>> = cases.iter().map(|c| vec![Vec::new(); c.under.len()]).collect();
    let mut retvals: Vec<Vec<Vec<u32>>> = cases.iter().map(|c| vec![Vec::new(); c.under.len()]).collect();
    for run in 0..plan.runs {
        for k in 0..sets.len() {
            let set = (k + run) % sets.len();
            dp.apply_rules(&sets[set]).with_context(|| format!("applying the `{}` rules", SET_NAMES[set]))?;
            let prog = dp.program()?.fd()?.as_fd();
            for (ci, c) in cases.iter().enumerate() {
                for (ui, &(s, _)) in c.under.iter().enumerate() {
                    if s != set {
                        continue;
                    }
                    sys::test_run(prog, &c.frame, (plan.repeat / 20).max(1)).with_context(|| format!("BPF_PROG_TEST_RUN of {}", c.name))?;
                    let r = sys::test_run(prog, &c.frame, plan.repeat).with_context(|| format!("BPF_PROG_TEST_RUN of {}", c.name))?;
                    runs[ci][ui].push(f64::from(r.kernel_ns));
                    retvals[ci][ui].push(r.retval);
                }
            }
            if STOP.load(Ordering::Relaxed) {
                bail!("interrupted by a signal");
            }
        }
    }
    let mut out = Vec::new();
    for (ci, c) in cases.iter().enumerate() {
        let base = median(&runs[ci][0]);
        for (ui, &(set, expect)) in c.under.iter().enumerate() {
            let r = &runs[ci][ui];
            let mut rv = retvals[ci][ui].clone();
            rv.sort_unstable();
            rv.dedup();
            let ok = rv == [expect];
            if !ok {
                warnings.push(format!("pass path: {} under `{}` returned {rv:?}, expected {expect}", c.name, SET_NAMES[set]));
            }
            let m = median(r);
            out.push(PassFigure {
                case: c.name,
                what: c.what.clone(),
                rules: SET_NAMES[set],
                expected: if expect == XDP_DROP { "drop" } else { "pass" },
                frame_len: c.frame.len(),
                runs_ns: r.clone(),
                median_ns: m,
                best_ns: r.iter().copied().fold(f64::INFINITY, f64::min),
                retvals: rv,
                verdict_ok: ok,
                ratio_to_no_rules: (set != 0 && base > 0.0).then(|| m / base),
            });
        }
    }
    dp.apply_rules(&sets[1])?;
    Ok(out)
}

// -------------------------------------------------------------- reports --

#[derive(Serialize)]
struct DropperInfo {
    name: &'static str,
    what: String,
    mode: String,
    sender: String,
    receiver: String,
    rules: Vec<String>,
}

#[derive(Serialize)]
struct FloodInfo {
    name: String,
    what: String,
    frame_len: usize,
    generator_instructions: usize,
    template_hex: String,
}

#[derive(Serialize)]
struct Target {
    name: String,
    goal: String,
    measured: String,
    met: Option<bool>,
}

#[derive(Serialize)]
struct Report {
    tool: &'static str,
    date_utc: String,
    command: String,
    regenerate: &'static str,
    quick: bool,
    machine: Machine,
    method: &'static str,
    seconds: f64,
    warmup: f64,
    rounds: usize,
    cpu: usize,
    rx_cpu: usize,
    batch: u32,
    realtime: bool,
    rate_limit_pps: u64,
    droppers: Vec<DropperInfo>,
    floods: Vec<FloodInfo>,
    cells: Vec<Cell>,
    repeat: u32,
    runs: usize,
    pass_path: Vec<PassFigure>,
    targets: Vec<Target>,
    warnings: Vec<String>,
    /// /proc/loadavg (1, 5, 15 min) when the run started and ended.
    loadavg_start: String,
    loadavg_end: String,
    total_s: f64,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "unknown".into())
}

const METHOD: &str = "A sender and a receiver network namespace are joined by one veth pair per dropper. The generator \
(tests/src/flood.rs) runs BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES in the sender namespace: a hand-assembled \
XDP program rewrites the random fields of a template frame (bpf_get_prandom_u32), recomputes its checksums and returns \
XDP_TX, which the kernel transmits out of the sender veth in batches (the program stays attached to a spare veth while a \
flood runs, so the kernel does not rebuild its XDP dispatcher at every call). The receiver veth runs threaded NAPI; its \
thread does all the receive work (veth ring, XDP program, or skb path with GRO and the netdev ingress hook). Generator \
and receive threads are pinned and SCHED_FIFO. Per round, every dropper gets every flood for `seconds` after `warmup`; \
the dropper visited first rotates. Dropped packets/s come from the dropper's own counters (edgefilter: its per-reason \
counters; nftables: rule counters; xdp-filter: its XDP_DROP statistics; floor: a per-CPU counter). Receive ns per \
dropped packet is the receive thread's CPU time (/proc/<pid>/schedstat) over the packets it dropped; 10^9 / that is \
the drop capacity of one CPU. When the generator offers more than the dropper takes, the veth ring refuses the rest \
and the dropped rate is the dropper's rate at full load (minus the CPU the kernel keeps from real-time threads, 5% by \
default).";

/// Why the targets use each dropper's fastest round.
const FASTEST_ROUND: &str = "in each dropper's fastest round. On this shared VM the same dropper's rounds vary by up to 2-3x (other tenants' work, \
cache and SMT interference): that only ever adds time, so the fastest of the rounds is the closest to the dropper's own cost, and the \
same estimator is applied to every dropper (nftables and xdp-filter included). The medians are shown beside it.";

fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

fn find<'a>(cells: &'a [Cell], flood: &str, dropper: &str) -> Option<&'a Cell> {
    cells.iter().find(|c| c.flood == flood && c.dropper == dropper)
}

/// Every target for every flood measured: a dropper that keeps up with
/// one flood and not the other does not meet it.
fn targets(cells: &[Cell], quick: bool) -> Vec<Target> {
    let mut out = Vec::new();
    for flood in flood_names(cells) {
        for (other, goal) in [("nftables", TARGET_VS_NFT), ("xdp-filter", TARGET_VS_XDP_FILTER)] {
            out.push(target(cells, flood, other, goal, quick));
        }
    }
    out
}

/// The floods measured, in the order of the cells (a flood's cells are
/// together).
fn flood_names(cells: &[Cell]) -> Vec<&str> {
    let mut floods: Vec<&str> = cells.iter().map(|c| c.flood.as_str()).collect();
    floods.dedup();
    floods
}

fn target(cells: &[Cell], flood: &str, other: &str, goal: f64, quick: bool) -> Target {
    let name = format!("edgefilter (rate limit) drop rate vs {other}, {flood} flood");
    let goal_text = format!(">= {goal}x");
    let (Some(ours), Some(theirs)) = (find(cells, flood, "edgefilter-rl"), find(cells, flood, other)) else {
        return Target { name, goal: goal_text, measured: format!("not measured ({other} unavailable)"), met: None };
    };
    let obs = ratio(ours.dropped_pps, theirs.dropped_pps);
    let fastest = ratio(ours.fastest_capacity_pps, theirs.fastest_capacity_pps);
    let cap = ratio(ours.capacity_pps, theirs.capacity_pps);
    let measured = format!(
        "{} per CPU, fastest rounds ({} vs {} pps); median rounds {} ({} vs {} pps); dropped at full load (medians) {} ({} vs {} pps{})",
        fastest.map_or("n/a".into(), |r| format!("{r:.2}x")),
        thousands(ours.fastest_capacity_pps as usize),
        thousands(theirs.fastest_capacity_pps as usize),
        cap.map_or("n/a".into(), |r| format!("{r:.2}x")),
        thousands(ours.capacity_pps as usize),
        thousands(theirs.capacity_pps as usize),
        obs.map_or("n/a".into(), |r| format!("{r:.2}x")),
        thousands(ours.dropped_pps as usize),
        thousands(theirs.dropped_pps as usize),
        if ours.generator_limited { ", ours limited by the generator" } else { "" },
    );
    let met = if quick { None } else { fastest.map(|r| r >= goal) };
    Target { name, goal: goal_text, measured, met }
}

fn met_text(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not evaluated",
    }
}

const DROP_HEADER: [&str; 9] = [
    "Flood",
    "Dropper",
    "Offered pps",
    "Dropped pps (receive CPU)",
    "x nftables per CPU (median / fastest)",
    "x xdp-filter per CPU (median / fastest)",
    "Receive ns/drop (median / fastest)",
    "Per CPU pps (median / fastest)",
    "Above floor ns (fastest)",
];

/// What bounds the targets on this veth, per flood: the floor (an XDP
/// program that drops without looking) against nftables, the most any XDP
/// dropper can reach; what reading the headers adds to it (floor-read);
/// and edgefilter's plain L4 drop against xdp-filter's drop (like for
/// like, no rate limit).
fn ceiling_lines(r: &Report) -> Vec<String> {
    flood_names(&r.cells)
        .into_iter()
        .filter_map(|flood| {
            let cap = |d: &str| find(&r.cells, flood, d).map(|c| c.fastest_capacity_pps);
            let floor = ratio(cap("floor")?, cap("nftables")?)?;
            let plain = ratio(cap("edgefilter-l4")?, cap("xdp-filter")?)?;
            // What the nftables goal leaves a dropper beyond receiving and
            // dropping a frame: 10^9 / (goal x nftables' pps) - the floor's
            // ns (fastest rounds, as the targets).
            let budget = 1e9 / (TARGET_VS_NFT * cap("nftables")?) - 1e9 / cap("floor")?;
            let above = |d: &str| find(&r.cells, flood, d).and_then(|c| c.above_floor_ns).map_or("n/a".into(), |x| format!("{x:.0} ns"));
            Some(format!(
                "`{flood}`: the floor (XDP_DROP without a look at the packet) is {floor:.2}x nftables per CPU here (fastest rounds), the ceiling of any XDP dropper on this veth; {TARGET_VS_NFT}x nftables leaves {budget:.0} ns per packet above the floor. Reading the header fields a filter needs (floor-read) takes {}; edgefilter's rate limit takes {}, its plain L4 drop {} and xdp-filter {}. edgefilter's plain L4 drop is {plain:.2}x xdp-filter per CPU.",
                above("floor-read"),
                above("edgefilter-rl"),
                above("edgefilter-l4"),
                above("xdp-filter"),
            ))
        })
        .collect()
}

fn drop_rows(r: &Report) -> Vec<[String; 9]> {
    r.cells
        .iter()
        .map(|c| {
            let vs = |other: &str| {
                find(&r.cells, &c.flood, other).map_or("-".to_string(), |o| {
                    format!(
                        "{} / {}",
                        ratio(c.capacity_pps, o.capacity_pps).map_or("n/a".into(), |x| format!("{x:.2}x")),
                        ratio(c.fastest_capacity_pps, o.fastest_capacity_pps).map_or("n/a".into(), |x| format!("{x:.2}x"))
                    )
                })
            };
            let mark = if c.generator_limited { " (g)" } else { "" };
            [
                c.flood.clone(),
                c.dropper.to_string(),
                thousands(c.offered_pps as usize),
                format!("{}{mark} ({:.0}%)", thousands(c.dropped_pps as usize), c.rx_cpu_share * 100.0),
                vs("nftables"),
                vs("xdp-filter"),
                format!("{:.0} / {:.0}", c.rx_ns_per_drop, c.fastest_rx_ns_per_drop),
                format!("{} / {}", thousands(c.capacity_pps as usize), thousands(c.fastest_capacity_pps as usize)),
                c.above_floor_ns.map_or("-".into(), |x| format!("{x:+.0}")),
            ]
        })
        .collect()
}

const PASS_HEADER: [&str; 5] = ["Case", "Rules", "Verdict", "ns/pkt (median / best)", "x no rules"];

fn pass_rows(r: &Report) -> Vec<[String; 5]> {
    r.pass_path
        .iter()
        .map(|f| {
            [
                f.case.to_string(),
                f.rules.to_string(),
                format!("{}{}", f.expected, if f.verdict_ok { "" } else { " (!)" }),
                format!("{:.1} / {:.1}", f.median_ns, f.best_ns),
                f.ratio_to_no_rules.map_or("-".into(), |x| format!("{x:.2}x")),
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

fn generator_line(r: &Report) -> Option<String> {
    let floor: Vec<&Cell> = r.cells.iter().filter(|c| c.dropper == "floor").collect();
    if floor.is_empty() {
        return None;
    }
    let parts: Vec<String> = floor
        .iter()
        .map(|c| {
            let most = r.cells.iter().filter(|x| x.flood == c.flood).map(|x| x.offered_pps).fold(0.0, f64::max);
            format!(
                "{}: {} frames/s into the floor, up to {} frames/s offered in this run; {:.0} ns of generator CPU per frame",
                c.flood,
                thousands(c.offered_pps as usize),
                thousands(most as usize),
                c.gen_ns_per_frame
            )
        })
        .collect();
    Some(format!("Generator (one thread, CPU {}): {}.", r.cpu, parts.join("; ")))
}

fn section(r: &Report) -> String {
    let m = &r.machine;
    let mut md = String::new();
    let _ = writeln!(md, "<!-- {SECTION}:start -->");
    let _ = writeln!(md, "## DDoS: flood drop rates and the pass path with rate limits\n");
    let _ = writeln!(md, "Generated by `edgefilter-ddos-bench` on {} — do not edit this section by hand. Regenerate it with\n", r.date_utc);
    let _ = writeln!(md, "```sh\n{REGENERATE}\n# which runs:\n{RUN_COMMAND}\n```\n");
    if r.quick {
        let _ = writeln!(md, "**Quick run (`--quick`): one short round, fewer repetitions; targets not evaluated.**\n");
    }
    let _ = writeln!(md, "- Machine: {} ({} CPUs, `nproc`), {:.0} MiB RAM, kernel {}", m.cpu_model, m.nproc, m.mem_total_mib, m.kernel);
    let _ = writeln!(md, "- Commit: {}", m.commit);
    let _ = writeln!(md, "- Invoked as: `{}`", r.command);
    let _ = writeln!(
        md,
        "- {} round(s) of {:.1} s per dropper and flood after {:.1} s of warm-up; generator on CPU {}, receive threads on CPU {} ({}); live-frames batch {}; whole run {:.0} s\n",
        r.rounds,
        r.seconds,
        r.warmup,
        r.cpu,
        r.rx_cpu,
        if r.realtime { "SCHED_FIFO" } else { "normal scheduler" },
        r.batch,
        r.total_s
    );
    let _ = writeln!(md, "Figures are for this machine only; they are measured, never asserted.\n");

    let _ = writeln!(md, "### Targets\n");
    let rows: Vec<[String; 4]> = r.targets.iter().map(|t| [t.name.clone(), t.goal.clone(), t.measured.clone(), met_text(t.met).into()]).collect();
    md += &md_table(["Target", "Goal", "Measured", "Result"], &rows);
    for line in ceiling_lines(r) {
        let _ = writeln!(md, "\n{line}");
    }
    let _ = writeln!(md, "\nThe targets are judged per CPU: 10^9 / the receive thread's CPU ns per dropped packet, the packets/s one CPU (one receive queue) can drop, {FASTEST_ROUND} The packets/s dropped at full load are shown too; they are lower than the per-CPU figures by however long the receive thread waited to be woken (a VM's cross-CPU wake-ups are slow) and the 5% the kernel keeps from real-time threads.\n");

    let _ = writeln!(md, "### Flood drop rates at a veth\n");
    let _ = writeln!(md, "Medians over the rounds, and the fastest round. Dropped pps from the dropper's own counters while the generator offered more, with the share of its CPU the receive thread used (medians); (g): it took everything offered, so the generator set the rate (a lower bound). \"Per CPU\": 10^9 / receive ns per dropped packet. \"Above floor\": the fastest round's receive ns per drop minus the floor's fastest for the same flood (the dropper's work beyond receiving a frame on a veth and dropping it).\n");
    md += &md_table(DROP_HEADER, &drop_rows(r));
    md.push('\n');
    if let Some(g) = generator_line(r) {
        let _ = writeln!(md, "{g}\n");
    }
    let _ = writeln!(md, "Droppers:\n");
    for d in &r.droppers {
        let _ = writeln!(md, "- `{}` ({} -> {}, {}): {}", d.name, d.sender, d.receiver, d.mode, d.what);
    }
    let _ = writeln!(md, "\nFloods:\n");
    for f in &r.floods {
        let _ = writeln!(md, "- `{}`: {}; {}-byte frames; generator program {} instructions", f.name, f.what, f.frame_len, f.generator_instructions);
    }
    md.push('\n');

    let _ = writeln!(md, "### Pass path with rate-limit rules (BPF_PROG_TEST_RUN)\n");
    let _ = writeln!(md, "The edgefilter program of the `edgefilter-rl` dropper, {} repetitions per run, {} runs per figure, rule sets switched run by run. Rules `rate-limit`: the benchmark's order ({} pps per destination and rule slot) and `[[protect]]` {PROTECTED}; `rate-limit, never exceeded`: the same with the rate at its maximum, so the bucket is taken and updated and the packet passes. \"x no rules\" divides by the same frame with no rules loaded.\n", thousands(r.repeat as usize), r.runs, thousands(RATE_PPS as usize));
    md += &md_table(PASS_HEADER, &pass_rows(r));
    md.push('\n');
    for c in pass_cases_info() {
        let _ = writeln!(md, "- `{}`: {}", c.0, c.1);
    }
    md.push('\n');

    let _ = writeln!(md, "### Method\n");
    let _ = writeln!(md, "- {METHOD}");
    let _ = writeln!(md, "- The flood frames were checked with the reference classifier before measuring: every frame (64 made by the kernel program, {} by its user-space twin) is dropped by the plain rules, and by the rate-limit rules once their buckets are spent (frozen clock).", thousands(5 * RATE_PPS as usize + 256 - 64));
    let _ = writeln!(md, "- The rate-limit droppers let {} pps per rule slot through to the receiver's stack (the reflection entry's four ports are four slots, four buckets): their receive ns per dropped packet includes that small share.", thousands(RATE_PPS as usize));
    let _ = writeln!(md, "- The machine is shared: load average {} at the start of the run, {} at the end (real-time priorities keep other work off the generator's and the receive threads' CPUs for all but 5% of the time, not out of their caches).", r.loadavg_start, r.loadavg_end);
    let _ = writeln!(md, "- edgefilter's order (`edgefilter-rl`; `edgefilter-l4` is the same without `rate_limit`):\n\n```toml\n{}```\n", order_text(Some(RATE_PPS)));
    let _ = writeln!(md, "- nftables rules: `{}` (`nftables`), `{}` (`nftables-limit`)", NFT_DROP.join("`; `"), NFT_LIMIT.join("`; `"));
    let _ = writeln!(md, "- xdp-filter rules: `xdp-filter {}` (it matches ports regardless of the destination)", XDP_FILTER_RULES.join("`; `xdp-filter "));
    if !r.warnings.is_empty() {
        let _ = writeln!(md, "\n### Warnings\n");
        for w in &r.warnings {
            let _ = writeln!(md, "- {w}");
        }
    }
    let _ = write!(md, "<!-- {SECTION}:end -->");
    md
}

fn pass_cases_info() -> Vec<(&'static str, String)> {
    pass_cases().map(|cs| cs.into_iter().map(|c| (c.name, c.what)).collect()).unwrap_or_default()
}

/// Replaces this benchmark's section of `path` (or appends it), leaving
/// everything else as it is.
fn write_section(path: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let start = format!("<!-- {SECTION}:start -->");
    let end = format!("<!-- {SECTION}:end -->");
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &old[..a], section, &old[b + end.len()..]),
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    catch_signals();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("edgefilter-ddos-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(false): figures written, but something was not dropped or passed as
/// intended.
fn run(args: &Args) -> Result<bool> {
    let started = Instant::now();
    let loadavg_start = loadavg();
    let plan = Plan {
        seconds: if args.quick { args.seconds.min(1.0) } else { args.seconds },
        warmup: if args.quick { args.warmup.min(0.3) } else { args.warmup },
        rounds: if args.quick { 1 } else { args.rounds },
        tuning: Tuning { batch: args.batch, chunk: args.chunk, realtime: (!args.no_realtime).then_some(PRIO_GENERATOR), resident: true, pace_pps: None },
        rx_cpu: args.rx_cpu.unwrap_or((args.cpu + 1) % env::nproc()),
        cpu: args.cpu,
        repeat: if args.quick { args.repeat.min(100_000) } else { args.repeat },
        runs: if args.quick { args.runs.min(3) } else { args.runs },
    };
    if plan.rounds == 0 || plan.runs == 0 || plan.repeat == 0 || plan.seconds <= 0.0 {
        bail!("--rounds, --runs, --repeat and --seconds must be positive");
    }
    if plan.cpu.max(plan.rx_cpu) >= env::nproc() {
        bail!("--cpu {} / --rx-cpu {} but this machine has {} CPUs", plan.cpu, plan.rx_cpu, env::nproc());
    }
    let mut warnings = Vec::new();
    let realtime = !args.no_realtime;
    if realtime {
        // This thread only reads counters: above everything, on another CPU.
        if let Err(e) = env::fifo(0, PRIO_MAIN, true) {
            warnings.push(format!("the measuring thread is on the normal scheduler: {e:#}"));
        }
        if let Some(other) = (0..env::nproc()).find(|&c| c != plan.cpu && c != plan.rx_cpu) {
            let _ = env::pin(0, other);
        }
    }

    // Rules.
    let drop_text = order_text(None);
    let rate_text = order_text(Some(RATE_PPS));
    let drop_rules = ruleset(&drop_text, false)?;
    let rate_rules = ruleset(&rate_text, true)?;
    let unexceeded = ruleset(&order_text(Some(filter_common::rules::ruleset::MAX_RATE)), true)?;
    let none = ruleset(&drop_text, false).map(|r| RuleSet { settings: r.settings, ..RuleSet::default() })?;

    // Floods, checked against the rules before anything is measured.
    let mut floods = Vec::new();
    for name in &args.floods {
        let spec = flood_spec(name)?;
        let f = Arc::new(Flood::new(spec.clone()).with_context(|| format!("loading the {name} flood generator"))?);
        check_flood(name, &f, &drop_rules, &rate_rules)?;
        floods.push((name.clone(), f));
    }

    let env = env::Env::new()?;
    eprintln!("namespaces {} -> {}", env.sender_ns, env.receiver_ns);
    let at = Placement { cpu: plan.rx_cpu, prio: realtime.then_some(PRIO_RECEIVE) };
    let (smac, dmac) = (flood::DEFAULT_SRC_MAC, flood::DEFAULT_DST_MAC);
    let mut droppers: Vec<Dropper> = Vec::new();
    droppers.push(droppers::floor(&env, env.add_pair("fl", smac, dmac)?, false, &at, &mut warnings)?);
    droppers.push(droppers::floor(&env, env.add_pair("fr", smac, dmac)?, true, &at, &mut warnings)?);
    droppers.push(droppers::edgefilter(
        &env,
        env.add_pair("er", smac, dmac)?,
        "edgefilter-rl",
        format!("edgefilter, the floods' L4 rules with `rate_limit = {{ per = \"destination\", pps = {RATE_PPS} }}`, [[protect]] {PROTECTED}"),
        rate_text.clone(),
        &rate_rules,
        &at,
        &mut warnings,
    )?);
    droppers.push(droppers::edgefilter(
        &env,
        env.add_pair("el", smac, dmac)?,
        "edgefilter-l4",
        "edgefilter, the same L4 rules dropping everything they match (no rate limit)".into(),
        drop_text.clone(),
        &drop_rules,
        &at,
        &mut warnings,
    )?);
    let nft_drop: Vec<String> = NFT_DROP.iter().map(|s| s.to_string()).collect();
    let nft_limit: Vec<String> = NFT_LIMIT.iter().map(|s| s.to_string()).collect();
    for (tag, name, what, rules) in [
        ("nf", "nftables", "nftables netdev ingress, drop".to_string(), &nft_drop),
        ("nl", "nftables-limit", format!("nftables netdev ingress, drop over {RATE_PPS}/second (`limit rate over`)"), &nft_limit),
    ] {
        match droppers::nftables(&env, env.add_pair(tag, smac, dmac)?, name, what, rules, &at, &mut warnings) {
            Ok(d) => droppers.push(d),
            Err(e) => warnings.push(format!("{name} not measured: {e:#}")),
        }
    }
    let xf_rules: Vec<String> = XDP_FILTER_RULES.iter().map(|s| s.to_string()).collect();
    match droppers::xdp_filter(&env, env.add_pair("xf", smac, dmac)?, &xf_rules, &at, &mut warnings) {
        Ok(d) => droppers.push(d),
        Err(e) => warnings.push(format!("xdp-filter not measured: {e:#}")),
    }
    for d in &droppers {
        eprintln!("{:<15} {} -> {} ({}), receive thread {}", d.name, d.pair.sender, d.pair.receiver, d.mode, d.napi_pid);
    }

    // The floods, interleaved.
    let mut samples: Vec<Vec<Vec<Sample>>> = floods.iter().map(|_| droppers.iter().map(|_| Vec::new()).collect()).collect();
    for round in 0..plan.rounds {
        for (fi, (fname, flood)) in floods.iter().enumerate() {
            for k in 0..droppers.len() {
                let di = (k + round + fi) % droppers.len();
                let d = &droppers[di];
                let s = measure(&env, flood, d, &plan, round).with_context(|| format!("{fname} flood against {}", d.name))?;
                eprintln!(
                    "round {} {:<15} {:<15} offered {:>10} pps, dropped {:>10} pps, receive {:>5.0} ns/drop ({:.0}% CPU), generator {:>4.0} ns/frame",
                    round + 1,
                    fname,
                    d.name,
                    thousands(s.offered_pps as usize),
                    thousands(s.dropped_pps as usize),
                    s.rx_ns_per_drop,
                    s.rx_cpu_share * 100.0,
                    s.gen_ns_per_frame
                );
                samples[fi][di].push(s);
            }
        }
    }
    let mut cells = Vec::new();
    for (fi, (fname, _)) in floods.iter().enumerate() {
        // The floor is the first dropper: its cell comes before the others.
        let mut floor_ns = None;
        for (di, d) in droppers.iter().enumerate() {
            let mut c = cell(fname, d, std::mem::take(&mut samples[fi][di]));
            if d.name == "floor" {
                floor_ns = Some(c.fastest_rx_ns_per_drop);
            } else {
                c.above_floor_ns = floor_ns.map(|f| c.fastest_rx_ns_per_drop - f);
            }
            c.reasons = d.reasons();
            let limited = d.name.ends_with("-rl") || d.name.ends_with("-limit");
            // Rate limits pass RATE_PPS per rule slot (four for the reflection ports).
            let expected = if limited { c.offered_pps - 4.0 * RATE_PPS as f64 } else { c.offered_pps };
            c.generator_limited = c.dropped_pps >= 0.9 * expected;
            c.saturated = c.rx_cpu_share >= 0.75;
            if !c.generator_limited && c.rx_cpu_share < 0.5 {
                warnings.push(format!(
                    "{} dropped {} of {} pps offered in the {fname} flood with its receive thread only {:.0}% busy: frames were lost at the veth ring while it slept (late wake-ups); its per-CPU figure still holds",
                    d.name,
                    thousands(c.dropped_pps as usize),
                    thousands(c.offered_pps as usize),
                    c.rx_cpu_share * 100.0
                ));
            }
            cells.push(c);
        }
    }

    // The pass path, on the rate-limited program.
    eprintln!("pass path: BPF_PROG_TEST_RUN, {} repetitions x {} runs", thousands(plan.repeat as usize), plan.runs);
    let sets = [none, rate_rules, unexceeded];
    let dp = droppers.iter_mut().find(|d| d.name == "edgefilter-rl").and_then(|d| d.dataplane_mut()).context("no edgefilter-rl dropper")?;
    let pass = pass_path(dp, &sets, &plan, &mut warnings)?;

    let report = Report {
        tool: "edgefilter-ddos-bench",
        date_utc: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        regenerate: REGENERATE,
        quick: args.quick,
        machine: machine(),
        method: METHOD,
        seconds: plan.seconds,
        warmup: plan.warmup,
        rounds: plan.rounds,
        cpu: plan.cpu,
        rx_cpu: plan.rx_cpu,
        batch: plan.tuning.batch,
        realtime,
        rate_limit_pps: RATE_PPS,
        droppers: droppers
            .iter()
            .map(|d| DropperInfo { name: d.name, what: d.what.clone(), mode: d.mode.clone(), sender: d.pair.sender.clone(), receiver: d.pair.receiver.clone(), rules: d.rules.clone() })
            .collect(),
        floods: floods
            .iter()
            .map(|(n, f)| FloodInfo { name: n.clone(), what: f.spec().to_string(), frame_len: f.frame_len(), generator_instructions: f.program_len(), template_hex: hex::encode(f.template()) })
            .collect(),
        targets: targets(&cells, args.quick),
        cells,
        repeat: plan.repeat,
        runs: plan.runs,
        pass_path: pass,
        warnings,
        loadavg_start,
        loadavg_end: loadavg(),
        total_s: started.elapsed().as_secs_f64(),
    };
    drop(droppers);
    drop(env);

    println!();
    println!("Flood drop rates at a veth (medians and fastest of {} round(s) x {:.1} s; generator on CPU {}, receive on CPU {})", report.rounds, report.seconds, report.cpu, report.rx_cpu);
    print!("{}", text_table(DROP_HEADER, &drop_rows(&report)));
    if let Some(g) = generator_line(&report) {
        println!("{g}");
    }
    println!();
    println!("Pass path with rate-limit rules, BPF_PROG_TEST_RUN ({} repetitions x {} runs)", thousands(report.repeat as usize), report.runs);
    print!("{}", text_table(PASS_HEADER, &pass_rows(&report)));
    println!();
    println!("Targets");
    for t in &report.targets {
        println!("  {}: {} (goal {}): {}", t.name, t.measured, t.goal, met_text(t.met));
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
    Ok(report.pass_path.iter().all(|f| f.verdict_ok) && report.warnings.iter().all(|w| !w.starts_with("pass path")))
}
