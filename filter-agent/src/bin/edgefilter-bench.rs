//! `edgefilter-bench`: data plane figures, side by side with xdp-filter.
//!
//! * ns/packet of the XDP program through BPF_PROG_TEST_RUN for a passing
//!   and a dropped UDP frame per address family, with 1, 10,000 and
//!   1,000,000 IPv4 prefixes and 250,000 IPv6 prefixes loaded;
//! * the same frames through xdp-filter (xdp-tools) loaded on a veth in a
//!   namespace of our own, runs interleaved with ours;
//! * wall time of `Dataplane::apply` (compile + map writes) and kernel
//!   memory for 1,000,000 IPv4 prefixes.
//!
//! It prints figures and never asserts timing; it fails only when a packet
//! gets a verdict other than the intended one (then the figure measures
//! the wrong path). Needs root.
//!
//!     cargo run --release -p filter-agent --bin edgefilter-bench -- \
//!         --out bench-results/dataplane.json --markdown BENCHMARKS.md
use std::fmt::Write as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::{rngs::SmallRng, SeedableRng};
use serde::Serialize;

use filter_agent::dataplane::{Capacity, Dataplane};
use filter_common::maps::{names, DEFAULT_PREFIX_V4_CAPACITY, DEFAULT_PREFIX_V6_CAPACITY, DEFAULT_V4_GROUPS};
use filter_common::reference::Reference;

use bench_common::{machine, thousands, Machine};

#[path = "bench_common/mod.rs"]
mod bench_common;
#[path = "edgefilter-bench/gen.rs"]
mod gen;
#[path = "edgefilter-bench/sys.rs"]
mod sys;
#[path = "edgefilter-bench/xdpfilter.rs"]
mod xdpfilter;

const REGENERATE: &str = "cargo run --release -p filter-agent --bin edgefilter-bench -- --out bench-results/dataplane.json --markdown BENCHMARKS.md";
const XDP_PASS: u32 = 2;
const XDP_DROP: u32 = 1;
/// Target: pass path with 1M IPv4 prefixes at most this many times
/// xdp-filter's pass path.
const TARGET_PASS_RATIO: f64 = 1.5;
/// Target: loading 1,000,000 IPv4 prefixes takes less than this (seconds).
const TARGET_LOAD_S: f64 = 2.0;
const TARGET_LOAD_PREFIXES: usize = 1_000_000;
/// Fresh loads timed for the load-detail scenario.
const LOAD_TRIALS: usize = 3;

#[derive(Parser)]
#[command(name = "edgefilter-bench", about = "Data plane benchmarks (BPF_PROG_TEST_RUN), side by side with xdp-filter")]
struct Args {
    /// JSON file for every figure (parent directories are created).
    #[arg(long, default_value = "bench-results/dataplane.json")]
    out: PathBuf,
    /// Also write this Markdown report (BENCHMARKS.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// BPF_PROG_TEST_RUN repetitions per run; the kernel reports the average.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Runs per figure; the report gives their median and best.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Seed of the generated prefix lists.
    #[arg(long, default_value_t = 0x5eed_f117e5)]
    seed: u64,
    /// Skip the xdp-filter comparison.
    #[arg(long)]
    no_xdp_filter: bool,
    /// Smoke test: smaller lists and fewer repetitions (figures are not
    /// comparable with a full run; targets are not evaluated).
    #[arg(long)]
    quick: bool,
}

#[derive(Clone, Copy)]
struct Scenario {
    v4: usize,
    v6: usize,
    /// Also time a second apply of the same set (a reload) and report
    /// kernel memory in detail.
    load_detail: bool,
}

#[derive(Serialize, Clone, Default)]
struct Stats {
    /// Kernel average ns/packet of each run (BPF_PROG_TEST_RUN `duration`,
    /// integer, truncated by the kernel).
    runs_ns: Vec<u32>,
    median_ns: f64,
    min_ns: u32,
    /// Wall time of each syscall / repeat (includes syscall overhead and
    /// interruptions: an upper bound with sub-ns resolution).
    wall_runs_ns: Vec<f64>,
    wall_median_ns: f64,
    /// XDP return values seen (1 = XDP_DROP, 2 = XDP_PASS).
    retvals: Vec<u32>,
    verdict_ok: bool,
}

#[derive(Serialize, Clone)]
struct PacketResult {
    packet: &'static str,
    family: &'static str,
    src: String,
    dst: String,
    frame_len: usize,
    expected: &'static str,
    reference_reason: String,
    edgefilter: Stats,
    xdp_filter: Option<Stats>,
    /// edgefilter median / xdp-filter median (interleaved runs).
    ratio: Option<f64>,
}

#[derive(Serialize, Clone, Default)]
struct Load {
    /// `compile::compile` alone (inside the apply).
    compile_s: f64,
    /// `Dataplane::apply` wall time: compile + map writes + switch.
    apply_s: f64,
    /// apply - compile.
    writes_s: f64,
}

#[derive(Serialize, Clone)]
struct ScenarioResult {
    prefixes_v4: usize,
    prefixes_v6: usize,
    compiled_v4_entries: usize,
    compiled_v6_entries: usize,
    generate_s: f64,
    /// Apply into a freshly loaded program: the median of `apply_trials`
    /// (one trial unless the scenario measures loading in detail).
    first_apply: Load,
    best_apply_s: f64,
    apply_trials: Vec<Load>,
    /// Second apply of the same set: writes the other generation, flips,
    /// deletes the old one.
    reload: Option<Load>,
    memory: Option<Memory>,
    edgefilter_prog_id: Option<u32>,
    packets: Vec<PacketResult>,
}

#[derive(Serialize, Clone)]
struct Memory {
    note: &'static str,
    prefix_v4_before: Option<sys::MapMemory>,
    prefix_v4_after: Option<sys::MapMemory>,
    prefix_v4_after_reload: Option<sys::MapMemory>,
    prefix_v6_after: Option<sys::MapMemory>,
    /// memlock after - before, bytes.
    prefix_v4_memlock_delta: i64,
    memlock_bytes_per_prefix: f64,
    /// System-wide /proc/meminfo difference around the first apply.
    meminfo_delta: sys::MemInfo,
    /// Peak RSS of this process after the apply (user-space compile buffers).
    user_peak_rss_bytes: u64,
}

#[derive(Serialize)]
struct XdpFilterInfo {
    available: bool,
    error: Option<String>,
    version: String,
    program_id: Option<u32>,
    program_name: Option<String>,
    attach_mode: Option<&'static str>,
    rules: Vec<String>,
    note: &'static str,
}

#[derive(Serialize)]
struct Floor {
    program: &'static str,
    before: Stats,
    after: Stats,
}

#[derive(Serialize)]
struct Target {
    name: String,
    target: String,
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
    repeat: u32,
    runs: usize,
    seed: u64,
    method: &'static str,
    prefix_generation: &'static str,
    frames: Vec<serde_json::Value>,
    xdp_filter: XdpFilterInfo,
    /// A program that only returns XDP_PASS, test-run with the IPv4 frame
    /// before and after the scenarios: the cost of the harness itself.
    harness_floor: Option<Floor>,
    scenarios: Vec<ScenarioResult>,
    targets: Vec<Target>,
    warnings: Vec<String>,
}

const METHOD: &str = "Each figure is BPF_PROG_TEST_RUN with `repeat` repetitions of one frame; the kernel reports the \
average ns per repetition. A figure is run `runs` times (after a warm-up run) and the median and best are reported. \
edgefilter and xdp-filter runs alternate, so both see the same machine load. TEST_RUN packets are never transmitted.";

const MEMORY_NOTE: &str = "memlock is the sum of the `memlock:` fields of /proc/self/fdinfo/<fd> of the maps holding IPv4 \
prefixes (V4_TBL24, V4_TBL8, V4_LONG, PREFIX_ENTRIES): since Linux 6.4 each map's own estimate. The DIR-24-8 arrays \
are preallocated (2 generations x 16M x 4 B for V4_TBL24), so \"before\" is already large; the delta is the hash of \
long prefixes. \
meminfo_delta is the system-wide /proc/meminfo difference (Slab, SUnreclaim, MemAvailable) around the first apply: \
it includes intermediate trie nodes and allocator caches but also any other activity on the machine.";

const XDP_FILTER_NOTE: &str = "xdp-filter is loaded on a veth inside a namespace created for the run; the program \
attached to it (reported by `ip -d link show`; the libxdp dispatcher if libxdp used one, otherwise xdp-filter's own \
program) is what runs on the wire, and is test-run via BPF_PROG_GET_FD_BY_ID. Its rules are exact source addresses \
in hash maps (xdp-filter has no prefixes), matching the dropped frames.";

fn median_u32(v: &[u32]) -> f64 {
    let as_f64: Vec<f64> = v.iter().copied().map(f64::from).collect();
    median_f64(&as_f64)
}

/// 0 for no values (a figure that was not measured), else the median.
fn median_f64(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { bench_common::median(v) }
}

impl Stats {
    fn push(&mut self, r: sys::Run) {
        self.runs_ns.push(r.kernel_ns);
        self.wall_runs_ns.push(r.wall_ns);
        self.retvals.push(r.retval);
    }

    fn finish(&mut self, expected: u32) {
        self.median_ns = median_u32(&self.runs_ns);
        self.min_ns = self.runs_ns.iter().copied().min().unwrap_or(0);
        self.wall_median_ns = median_f64(&self.wall_runs_ns);
        self.verdict_ok = !self.retvals.is_empty() && self.retvals.iter().all(|&r| r == expected);
    }
}

fn measure(
    ours: BorrowedFd<'_>,
    theirs: Option<BorrowedFd<'_>>,
    frame: &[u8],
    repeat: u32,
    runs: usize,
) -> Result<(Stats, Option<Stats>)> {
    let warm = (repeat / 20).max(1);
    sys::test_run(ours, frame, warm).context("BPF_PROG_TEST_RUN on edgefilter")?;
    if let Some(t) = theirs {
        sys::test_run(t, frame, warm).context("BPF_PROG_TEST_RUN on xdp-filter")?;
    }
    let mut a = Stats::default();
    let mut b = theirs.map(|_| Stats::default());
    for i in 0..runs {
        // Alternate who goes first so neither always runs on a warmer cache.
        let order: [bool; 2] = if i % 2 == 0 { [true, false] } else { [false, true] };
        for mine in order {
            if mine {
                a.push(sys::test_run(ours, frame, repeat).context("BPF_PROG_TEST_RUN on edgefilter")?);
            } else if let (Some(t), Some(b)) = (theirs, b.as_mut()) {
                b.push(sys::test_run(t, frame, repeat).context("BPF_PROG_TEST_RUN on xdp-filter")?);
            }
        }
    }
    Ok((a, b))
}

fn timed_apply(dp: &mut Dataplane, rules: &filter_common::rules::RuleSet) -> Result<(Load, usize, usize)> {
    let mut compile_s = 0.0;
    let mut entries = (0, 0);
    let start = Instant::now();
    dp.apply(|g, limits, tbl24, held| {
        let t = Instant::now();
        let c = filter_common::compile::compile_incremental(rules, g, limits, tbl24, held);
        compile_s = t.elapsed().as_secs_f64();
        if let Ok(c) = &c {
            entries = (c.prefixes_v4, c.prefixes_v6);
        }
        c
    })?;
    let apply_s = start.elapsed().as_secs_f64();
    Ok((Load { compile_s, apply_s, writes_s: apply_s - compile_s }, entries.0, entries.1))
}

/// memlock of every map that holds IPv4 prefixes, summed (the DIR-24-8
/// tables are preallocated, so most of it is there before any rule).
fn v4_maps_memory() -> Option<sys::MapMemory> {
    let parts: Vec<sys::MapMemory> =
        [names::V4_TBL24, names::V4_TBL8, names::V4_LONG, names::PREFIX_ENTRIES].iter().filter_map(|m| sys::own_map_memory(m)).collect();
    let first = parts.first()?;
    Some(sys::MapMemory {
        map_id: first.map_id,
        max_entries: parts.iter().map(|p| p.max_entries).sum(),
        memlock_bytes: parts.iter().map(|p| p.memlock_bytes).sum(),
    })
}

fn scenario_seed(seed: u64, family: u64, n: usize) -> u64 {
    seed ^ (family << 56) ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn run_scenario(
    s: Scenario,
    args: &Args,
    repeat: u32,
    runs: usize,
    frames: &[gen::Frame],
    xf: Option<&xdpfilter::XdpFilter>,
    warnings: &mut Vec<String>,
) -> Result<ScenarioResult> {
    eprintln!("== {} IPv4 / {} IPv6 prefixes", s.v4, s.v6);
    let t = Instant::now();
    let v4 = gen::v4_prefixes(s.v4, &mut SmallRng::seed_from_u64(scenario_seed(args.seed, 4, s.v4)));
    let v6 = gen::v6_prefixes(s.v6, &mut SmallRng::seed_from_u64(scenario_seed(args.seed, 6, s.v6)));
    let rules = gen::ruleset(&v4, &v6);
    drop((v4, v6));
    let generate_s = t.elapsed().as_secs_f64();

    // The reference classifier must agree with what each frame is for.
    let mut reasons = Vec::new();
    {
        let reference = Reference::new(&rules);
        for f in frames {
            let d = reference.classify(&f.bytes);
            if d.drop != f.expect_drop {
                bail!(
                    "generator bug: the reference classifier says {} for {} ({} -> {}) with {} / {} prefixes",
                    if d.drop { "drop" } else { "pass" },
                    f.name,
                    f.src,
                    f.dst,
                    s.v4,
                    s.v6
                );
            }
            reasons.push(format!("{:?} (rule {})", d.reason, d.rule_id));
        }
    }

    let capacity = Capacity {
        prefixes_v4: DEFAULT_PREFIX_V4_CAPACITY.max(s.v4 as u32),
        prefixes_v6: DEFAULT_PREFIX_V6_CAPACITY.max(s.v6 as u32),
        v4_groups: DEFAULT_V4_GROUPS,
        ..Capacity::default()
    };
    let mut dp = Dataplane::load(capacity).context("loading the data plane (are you root?)")?;
    let v4_before = v4_maps_memory();
    let mem_before = sys::meminfo();
    let (first_apply, compiled_v4, compiled_v6) = timed_apply(&mut dp, &rules)?;
    let mem_after = sys::meminfo();
    let v4_after = v4_maps_memory();
    let v6_after = sys::own_map_memory(names::PREFIX_V6);
    eprintln!(
        "   apply {:.3} s (compile {:.3} s, map writes {:.3} s), {} + {} entries",
        first_apply.apply_s, first_apply.compile_s, first_apply.writes_s, compiled_v4, compiled_v6
    );
    let mut apply_trials = vec![first_apply];
    let (reload, memory) = if s.load_detail {
        // More fresh loads of the same set: the machine is shared, one
        // timing alone can be off. Memory figures come from the first.
        for _ in 1..LOAD_TRIALS {
            drop(dp);
            dp = Dataplane::load(capacity).context("loading the data plane")?;
            let (t, _, _) = timed_apply(&mut dp, &rules)?;
            eprintln!("   apply {:.3} s (compile {:.3} s, map writes {:.3} s)", t.apply_s, t.compile_s, t.writes_s);
            apply_trials.push(t);
        }
        let (reload, _, _) = timed_apply(&mut dp, &rules)?;
        eprintln!("   reload {:.3} s (compile {:.3} s, map writes + old generation delete {:.3} s)", reload.apply_s, reload.compile_s, reload.writes_s);
        let after_reload = v4_maps_memory();
        let delta = v4_after.as_ref().map_or(0, |a| a.memlock_bytes as i64) - v4_before.as_ref().map_or(0, |b| b.memlock_bytes as i64);
        let memory = Memory {
            note: MEMORY_NOTE,
            prefix_v4_before: v4_before,
            prefix_v4_after: v4_after,
            prefix_v4_after_reload: after_reload,
            prefix_v6_after: v6_after,
            prefix_v4_memlock_delta: delta,
            memlock_bytes_per_prefix: if compiled_v4 > 0 { delta as f64 / compiled_v4 as f64 } else { 0.0 },
            meminfo_delta: mem_after.delta(mem_before),
            user_peak_rss_bytes: sys::peak_rss(),
        };
        (Some(reload), Some(memory))
    } else {
        (None, None)
    };
    drop(rules);
    // The median trial (by total apply time) is the reported figure.
    let mut sorted = apply_trials.clone();
    sorted.sort_by(|a, b| a.apply_s.total_cmp(&b.apply_s));
    let first_apply = sorted[(sorted.len() - 1) / 2].clone();
    let best_apply_s = sorted[0].apply_s;

    let program = dp.program()?;
    let ours = program.fd()?.as_fd();
    let prog_id = sys::prog_id(ours);
    let theirs = xf.map(|x| x.prog_fd.as_fd());
    let mut packets = Vec::new();
    for (f, reason) in frames.iter().zip(reasons) {
        let expected = if f.expect_drop { XDP_DROP } else { XDP_PASS };
        let (mut a, mut b) = measure(ours, theirs, &f.bytes, repeat, runs)?;
        a.finish(expected);
        if let Some(b) = b.as_mut() {
            b.finish(expected);
        }
        if !a.verdict_ok {
            let w = format!("edgefilter returned {:?} for {} with {} / {} prefixes; expected {expected}", a.retvals, f.name, s.v4, s.v6);
            eprintln!("   WARNING: {w}");
            warnings.push(w);
        }
        if let Some(b) = &b {
            if !b.verdict_ok {
                let w = format!("xdp-filter returned {:?} for {}; expected {expected}", b.retvals, f.name);
                eprintln!("   WARNING: {w}");
                warnings.push(w);
            }
        }
        let ratio = b.as_ref().filter(|b| b.median_ns > 0.0).map(|b| a.median_ns / b.median_ns);
        eprintln!(
            "   {:<10} {:>4}  edgefilter {:>6.1} ns (min {:>3})   xdp-filter {}",
            f.name,
            if f.expect_drop { "drop" } else { "pass" },
            a.median_ns,
            a.min_ns,
            b.as_ref().map_or("-".into(), |b| format!("{:>6.1} ns (min {:>3})  ratio {:.2}", b.median_ns, b.min_ns, ratio.unwrap_or(0.0)))
        );
        packets.push(PacketResult {
            packet: f.name,
            family: f.family,
            src: f.src.clone(),
            dst: f.dst.clone(),
            frame_len: f.bytes.len(),
            expected: if f.expect_drop { "drop" } else { "pass" },
            reference_reason: reason,
            edgefilter: a,
            xdp_filter: b,
            ratio,
        });
    }
    Ok(ScenarioResult {
        prefixes_v4: s.v4,
        prefixes_v6: s.v6,
        compiled_v4_entries: compiled_v4,
        compiled_v6_entries: compiled_v6,
        generate_s,
        first_apply,
        best_apply_s,
        apply_trials,
        reload,
        memory,
        edgefilter_prog_id: prog_id,
        packets,
    })
}

fn bytes_human(b: i64) -> String {
    let a = b.unsigned_abs() as f64;
    let sign = if b < 0 { "-" } else { "" };
    if a >= 1024.0 * 1024.0 {
        format!("{sign}{:.1} MiB", a / 1024.0 / 1024.0)
    } else if a >= 1024.0 {
        format!("{sign}{:.1} KiB", a / 1024.0)
    } else {
        format!("{sign}{a} B")
    }
}

fn delta_human(b: i64) -> String {
    if b >= 0 {
        format!("+{}", bytes_human(b))
    } else {
        bytes_human(b)
    }
}

fn targets(scenarios: &[ScenarioResult], quick: bool) -> Vec<Target> {
    let mut out = Vec::new();
    let big = scenarios.iter().find(|s| s.prefixes_v4 == TARGET_LOAD_PREFIXES && s.prefixes_v6 <= 1).filter(|_| !quick);
    let pass = big.and_then(|s| s.packets.iter().find(|p| p.packet == "ipv4-pass"));
    out.push(match pass {
        Some(p) => match (&p.xdp_filter, p.ratio) {
            (Some(x), Some(r)) => Target {
                name: "IPv4 pass path, 1,000,000 IPv4 prefixes loaded, vs xdp-filter's IPv4 pass path".into(),
                target: format!("<= {TARGET_PASS_RATIO}x"),
                measured: format!("{:.1} ns vs {:.1} ns = {r:.2}x (medians)", p.edgefilter.median_ns, x.median_ns),
                met: Some(r <= TARGET_PASS_RATIO),
            },
            _ => Target {
                name: "IPv4 pass path, 1,000,000 IPv4 prefixes loaded, vs xdp-filter's IPv4 pass path".into(),
                target: format!("<= {TARGET_PASS_RATIO}x"),
                measured: format!("{:.1} ns; xdp-filter not measured", p.edgefilter.median_ns),
                met: None,
            },
        },
        None => Target {
            name: "IPv4 pass path, 1,000,000 IPv4 prefixes loaded, vs xdp-filter's IPv4 pass path".into(),
            target: format!("<= {TARGET_PASS_RATIO}x"),
            measured: "not measured (quick run)".into(),
            met: None,
        },
    });
    out.push(match big {
        Some(s) => Target {
            name: "Load 1,000,000 IPv4 prefixes (Dataplane::apply: compile + map writes)".into(),
            target: format!("< {TARGET_LOAD_S} s"),
            measured: format!(
                "{:.3} s (compile {:.3} s, map writes {:.3} s; median of {} fresh loads, best {:.3} s)",
                s.first_apply.apply_s,
                s.first_apply.compile_s,
                s.first_apply.writes_s,
                s.apply_trials.len(),
                s.best_apply_s
            ),
            met: Some(s.first_apply.apply_s < TARGET_LOAD_S),
        },
        None => Target {
            name: "Load 1,000,000 IPv4 prefixes (Dataplane::apply: compile + map writes)".into(),
            target: format!("< {TARGET_LOAD_S} s"),
            measured: "not measured (quick run)".into(),
            met: None,
        },
    });
    out
}

fn met_text(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not evaluated",
    }
}

fn prefixes_label(s: &ScenarioResult) -> String {
    format!("{} / {}", thousands(s.prefixes_v4), thousands(s.prefixes_v6))
}

/// Rows of the per-packet table: (prefixes, packet, verdict, ours, xdp-filter, ratio).
fn packet_rows(r: &Report) -> Vec<[String; 6]> {
    let mut rows = Vec::new();
    for s in &r.scenarios {
        for p in &s.packets {
            let flag = |ok: bool| if ok { "" } else { " (!)" };
            rows.push([
                prefixes_label(s),
                p.packet.to_string(),
                p.expected.to_string(),
                format!("{:.1} / {}{}", p.edgefilter.median_ns, p.edgefilter.min_ns, flag(p.edgefilter.verdict_ok)),
                p.xdp_filter.as_ref().map_or("n/a".into(), |x| format!("{:.1} / {}{}", x.median_ns, x.min_ns, flag(x.verdict_ok))),
                p.ratio.map_or("n/a".into(), |r| format!("{r:.2}x")),
            ]);
        }
    }
    rows
}

const PACKET_HEADER: [&str; 6] = ["Prefixes IPv4 / IPv6", "Packet", "Verdict", "edgefilter ns/pkt (median / best)", "xdp-filter ns/pkt (median / best)", "edgefilter / xdp-filter"];

fn load_rows(r: &Report) -> Vec<[String; 6]> {
    r.scenarios
        .iter()
        .map(|s| {
            [
                prefixes_label(s),
                format!("{} / {}", thousands(s.compiled_v4_entries), thousands(s.compiled_v6_entries)),
                format!("{:.3}", s.first_apply.compile_s),
                format!("{:.3}", s.first_apply.writes_s),
                format!("{:.3}", s.first_apply.apply_s),
                s.reload.as_ref().map_or("-".into(), |l| format!("{:.3}", l.apply_s)),
            ]
        })
        .collect()
}

const LOAD_HEADER: [&str; 6] = ["Prefixes IPv4 / IPv6", "Map entries", "compile s", "map writes s", "apply s (total)", "reload s"];

fn text_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.len());
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    line(widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>().iter().map(String::as_str).collect(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
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

fn memory_lines(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for s in &r.scenarios {
        let Some(m) = &s.memory else { continue };
        out.push(format!(
            "{} IPv4 prefixes: IPv4 maps memlock {} -> {} ({}, {:.1} B/prefix); after a reload {}",
            thousands(s.prefixes_v4),
            bytes_human(m.prefix_v4_before.as_ref().map_or(0, |x| x.memlock_bytes as i64)),
            bytes_human(m.prefix_v4_after.as_ref().map_or(0, |x| x.memlock_bytes as i64)),
            delta_human(m.prefix_v4_memlock_delta),
            m.memlock_bytes_per_prefix,
            bytes_human(m.prefix_v4_after_reload.as_ref().map_or(0, |x| x.memlock_bytes as i64)),
        ));
        out.push(format!(
            "system-wide around the first apply: Slab {} ({:.0} B/prefix), SUnreclaim {}, MemAvailable {}; agent peak RSS {}",
            delta_human(m.meminfo_delta.slab),
            m.meminfo_delta.slab as f64 / s.compiled_v4_entries.max(1) as f64,
            delta_human(m.meminfo_delta.sunreclaim),
            delta_human(m.meminfo_delta.mem_available),
            bytes_human(m.user_peak_rss_bytes as i64),
        ));
        if let Some(l) = &s.reload {
            out.push(format!(
                "reload of the same {} prefixes (write other generation, flip, delete old): {:.3} s (compile {:.3} s)",
                thousands(s.prefixes_v4),
                l.apply_s,
                l.compile_s
            ));
        }
    }
    out
}

fn floor_line(r: &Report) -> Option<String> {
    let f = r.harness_floor.as_ref()?;
    Some(format!(
        "Harness floor (a program that only returns XDP_PASS, same IPv4 frame): {:.1} ns before the scenarios, {:.1} ns after (medians). Every figure above includes it.",
        f.before.median_ns, f.after.median_ns
    ))
}

/// Other benchmarks own sections of the same file between
/// `<!-- NAME:start -->` and `<!-- NAME:end -->`; they are carried over.
fn with_kept_sections(path: &std::path::Path, mut fresh: String) -> String {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut rest = old.as_str();
    while let Some(start) = rest.find("<!-- ") {
        let Some(name_end) = rest[start..].find(":start -->") else { break };
        let name = &rest[start + 5..start + name_end];
        let end_marker = format!("<!-- {name}:end -->");
        let Some(end) = rest[start..].find(&end_marker) else { break };
        let section = &rest[start..start + end + end_marker.len()];
        if !fresh.contains(section) {
            fresh.push('\n');
            fresh.push_str(section);
            fresh.push('\n');
        }
        rest = &rest[start + end + end_marker.len()..];
    }
    fresh
}

fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(md, "# Data plane benchmarks\n");
    let _ = writeln!(md, "Generated by `edgefilter-bench` on {} — do not edit by hand. Regenerate with\n", r.date_utc);
    let _ = writeln!(md, "```sh\ncargo xtask bench dataplane\n# which runs:\n{}\n```\n", r.regenerate);
    if r.quick {
        let _ = writeln!(md, "**Quick run (`--quick`): smaller lists and fewer repetitions; targets not evaluated.**\n");
    }
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "- CPU: {} ({} CPUs, `nproc`)", m.cpu_model, m.nproc);
    let _ = writeln!(md, "- Kernel: {}", m.kernel);
    let _ = writeln!(md, "- Commit: {}", m.commit);
    let _ = writeln!(md, "- xdp-filter: {}", r.xdp_filter.version);
    let _ = writeln!(md, "- Invoked as: `{}`\n", r.command);
    let _ = writeln!(md, "Figures are for this machine only; they are measured, never asserted.\n");

    let _ = writeln!(md, "## Targets\n");
    let rows: Vec<[String; 4]> = r.targets.iter().map(|t| [t.name.clone(), t.target.clone(), t.measured.clone(), met_text(t.met).into()]).collect();
    md += &md_table(["Target", "Goal", "Measured", "Result"], &rows);
    md.push('\n');

    let _ = writeln!(md, "## Per-packet cost (BPF_PROG_TEST_RUN)\n");
    let _ = writeln!(md, "{} repetitions per run, {} runs per figure; \"median / best\" over the runs of the kernel's average ns per packet. (!) marks a verdict other than intended.\n", thousands(r.repeat as usize), r.runs);
    md += &md_table(PACKET_HEADER, &packet_rows(r));
    md.push('\n');
    if let Some(f) = floor_line(r) {
        let _ = writeln!(md, "{f}\n");
    }

    let _ = writeln!(md, "## Loading prefixes\n");
    let _ = writeln!(md, "`Dataplane::apply` into a freshly loaded program (wall time, seconds): compile = `filter_common::compile::compile`, map writes = the rest of the apply (batched map updates, generation switch). Reload = a second apply of the same set (writes the other generation, switches, deletes the old one). For {} IPv4 prefixes the figure is the median of {LOAD_TRIALS} fresh loads.\n", thousands(TARGET_LOAD_PREFIXES));
    md += &md_table(LOAD_HEADER, &load_rows(r));
    md.push('\n');
    for l in memory_lines(r) {
        let _ = writeln!(md, "- {l}");
    }
    let _ = writeln!(md, "\n{}\n", MEMORY_NOTE);

    let _ = writeln!(md, "## Method\n");
    let _ = writeln!(md, "- {}", METHOD);
    let _ = writeln!(md, "- Frames (Ethernet + UDP {} -> {}, no VLAN):", 40_000, 53);
    for f in &r.frames {
        let _ = writeln!(md, "  - `{}`: {} -> {}, {} bytes", f["name"].as_str().unwrap_or(""), f["src"].as_str().unwrap_or(""), f["dst"].as_str().unwrap_or(""), f["len"]);
    }
    let _ = writeln!(md, "- Prefixes (seed {:#x}): {}", r.seed, r.prefix_generation);
    let _ = writeln!(md, "- The passing frames match no prefix and the dropped ones match (checked with the reference classifier before measuring); each generated list is one enforcing rule, direction both, no L4 rules. The program is loaded but not attached.");
    match (&r.xdp_filter.available, &r.xdp_filter.error) {
        (true, _) => {
            let _ = writeln!(
                md,
                "- xdp-filter: program id {} `{}`, attached in {} mode, rules `{}`. {}",
                r.xdp_filter.program_id.unwrap_or(0),
                r.xdp_filter.program_name.as_deref().unwrap_or("?"),
                r.xdp_filter.attach_mode.unwrap_or("?"),
                r.xdp_filter.rules.join("`, `"),
                XDP_FILTER_NOTE
            );
        }
        (false, e) => {
            let _ = writeln!(md, "- xdp-filter: not measured ({})", e.as_deref().unwrap_or("disabled"));
        }
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(md, "\n## Warnings\n");
        for w in &r.warnings {
            let _ = writeln!(md, "- {w}");
        }
    }
    md
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    sys::catch_signals();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("edgefilter-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(false): figures written, but some verdict was not the intended one.
fn run(args: &Args) -> Result<bool> {
    let (repeat, runs, scenarios) = if args.quick {
        (
            args.repeat.min(100_000),
            args.runs.min(3),
            vec![
                Scenario { v4: 1, v6: 1, load_detail: false },
                Scenario { v4: 10_000, v6: 1, load_detail: false },
                Scenario { v4: 100_000, v6: 1, load_detail: true },
                Scenario { v4: 1, v6: 25_000, load_detail: false },
            ],
        )
    } else {
        (
            args.repeat,
            args.runs,
            vec![
                Scenario { v4: 1, v6: 1, load_detail: false },
                Scenario { v4: 10_000, v6: 1, load_detail: false },
                Scenario { v4: TARGET_LOAD_PREFIXES, v6: 1, load_detail: true },
                Scenario { v4: 1, v6: 250_000, load_detail: false },
                Scenario { v4: TARGET_LOAD_PREFIXES, v6: 250_000, load_detail: false },
            ],
        )
    };
    if runs == 0 || repeat == 0 {
        bail!("--runs and --repeat must be at least 1");
    }
    let started = Instant::now();
    let frames = gen::frames();

    let (xf, xf_info) = if args.no_xdp_filter {
        (None, XdpFilterInfo { available: false, error: Some("--no-xdp-filter".into()), version: xdpfilter::version(), program_id: None, program_name: None, attach_mode: None, rules: vec![], note: XDP_FILTER_NOTE })
    } else {
        match xdpfilter::setup() {
            Ok(x) => {
                eprintln!("xdp-filter: program {} `{}` on {} ({} mode)", x.prog_id, x.prog_name, x.interface, x.mode);
                let info = XdpFilterInfo {
                    available: true,
                    error: None,
                    version: x.version.clone(),
                    program_id: Some(x.prog_id),
                    program_name: Some(x.prog_name.clone()),
                    attach_mode: Some(x.mode),
                    rules: x.rules.iter().map(|r| format!("xdp-filter {r}")).collect(),
                    note: XDP_FILTER_NOTE,
                };
                (Some(x), info)
            }
            Err(e) => {
                eprintln!("warning: xdp-filter comparison skipped: {e:#}");
                (None, XdpFilterInfo { available: false, error: Some(format!("{e:#}")), version: xdpfilter::version(), program_id: None, program_name: None, attach_mode: None, rules: vec![], note: XDP_FILTER_NOTE })
            }
        }
    };

    let mut warnings = Vec::new();
    let noop = match sys::load_noop_xdp() {
        Ok(fd) => Some(fd),
        Err(e) => {
            eprintln!("warning: could not load the no-op XDP program for the harness floor: {e}");
            None
        }
    };
    let floor = |when: &str| -> Result<Option<Stats>> {
        let Some(fd) = &noop else { return Ok(None) };
        let (mut st, _) = measure(fd.as_fd(), None, &frames[0].bytes, repeat, runs)?;
        st.finish(XDP_PASS);
        eprintln!("harness floor ({when}): {:.1} ns (min {})", st.median_ns, st.min_ns);
        Ok(Some(st))
    };
    let floor_before = floor("before")?;
    let mut results = Vec::new();
    for s in scenarios {
        results.push(run_scenario(s, args, repeat, runs, &frames, xf.as_ref(), &mut warnings)?);
    }
    let floor_after = floor("after")?;
    let harness_floor = match (floor_before, floor_after) {
        (Some(before), Some(after)) => Some(Floor { program: "bench_noop: r0 = XDP_PASS; exit (raw BPF_PROG_LOAD)", before, after }),
        _ => None,
    };
    drop(noop);
    drop(xf);

    let report = Report {
        tool: "edgefilter-bench",
        date_utc: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        regenerate: REGENERATE,
        quick: args.quick,
        machine: machine(),
        repeat,
        runs,
        seed: args.seed,
        method: METHOD,
        prefix_generation: gen::PREFIX_DESCRIPTION,
        frames: frames
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "family": f.family, "expect": if f.expect_drop {"drop"} else {"pass"}, "src": f.src, "dst": f.dst, "len": f.bytes.len(), "hex": hex::encode(&f.bytes)}))
            .collect(),
        xdp_filter: xf_info,
        harness_floor,
        targets: targets(&results, args.quick),
        scenarios: results,
        warnings,
    };

    println!();
    println!("Per-packet cost, BPF_PROG_TEST_RUN ({} repetitions x {} runs; ns/packet median / best)", thousands(repeat as usize), runs);
    print!("{}", text_table(PACKET_HEADER, &packet_rows(&report)));
    if let Some(f) = floor_line(&report) {
        println!("{f}");
    }
    println!();
    println!("Loading prefixes (Dataplane::apply, seconds)");
    print!("{}", text_table(LOAD_HEADER, &load_rows(&report)));
    for l in memory_lines(&report) {
        println!("  {l}");
    }
    println!();
    println!("Targets");
    for t in &report.targets {
        println!("  {}: {} (goal {}): {}", t.name, t.measured, t.target, met_text(t.met));
    }
    for w in &report.warnings {
        println!("WARNING: {w}");
    }

    write_file(&args.out, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    eprintln!("wrote {}", args.out.display());
    if let Some(md) = &args.markdown {
        write_file(md, &with_kept_sections(md, markdown(&report)))?;
        eprintln!("wrote {}", md.display());
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(report.warnings.is_empty())
}
