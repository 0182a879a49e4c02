//! `edgefilter-reload-bench`: how long the real agent takes to validate and
//! atomically apply 1,000,000 IPv4 + 250,000 IPv6 prefixes from feed files,
//! and how much memory it needs for it.
//!
//! It generates two seeded `plain` feeds and a small order in a temporary
//! directory, starts `filter-agent run` in a network namespace of its own
//! (attached to a veth there, maps pinned in a bpffs it mounts itself), and
//! reads the times from the agent's audit log: the first `load`, then
//! reloads after replacing 1 % of the IPv4 feed (written aside and renamed
//! into place) and a SIGHUP. Peak memory is the agent's VmHWM. Everything
//! is removed afterwards, also on failure. Targets are printed, never
//! asserted. Needs root.
//!
//!     cargo run --release -p filter-agent --bin edgefilter-reload-bench -- \
//!         --out bench-results/reload.json --markdown BENCHMARKS.md
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::{rngs::SmallRng, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use bench_common::{machine, median, thousands, Machine};

#[path = "bench_common/mod.rs"]
mod bench_common;
#[path = "edgefilter-reload-bench/agent.rs"]
mod agent;
#[path = "edgefilter-reload-bench/env.rs"]
mod env;
#[path = "edgefilter-reload-bench/gen.rs"]
mod gen;

const REGENERATE: &str = "cargo run --release -p filter-agent --bin edgefilter-reload-bench -- --out bench-results/reload.json --markdown BENCHMARKS.md";
const START_MARKER: &str = "<!-- reload-bench:start -->";
const END_MARKER: &str = "<!-- reload-bench:end -->";
const TARGET_V4: usize = 1_000_000;
const TARGET_V6: usize = 250_000;
/// Target: validate and apply within this many seconds.
const TARGET_SECONDS: f64 = 3.0;
/// Target: peak agent memory (VmHWM) below this many MiB.
const TARGET_MIB: f64 = 500.0;

#[derive(Parser)]
#[command(name = "edgefilter-reload-bench", about = "Rule set load/reload time and peak memory of the real agent with large feeds")]
struct Args {
    /// JSON file for every figure (parent directories are created).
    #[arg(long, default_value = "bench-results/reload.json")]
    out: PathBuf,
    /// Also write the "Rule set reload" section of this Markdown report
    /// (between its markers; the rest of the file is kept).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// IPv4 prefixes in the IPv4 feed.
    #[arg(long, default_value_t = TARGET_V4)]
    v4: usize,
    /// IPv6 prefixes in the IPv6 feed.
    #[arg(long, default_value_t = TARGET_V6)]
    v6: usize,
    /// Reloads timed after the first load.
    #[arg(long, default_value_t = 3)]
    reloads: usize,
    /// Share of the IPv4 feed replaced before each reload, in percent.
    #[arg(long, default_value_t = 1.0)]
    change_percent: f64,
    /// Seed of the generated feeds.
    #[arg(long, default_value_t = 0x5eed_4e10ad)]
    seed: u64,
    /// The agent binary (default: `filter-agent` next to this binary,
    /// built first with `cargo build --release -p filter-agent`).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Do not run `cargo build --release -p filter-agent` first.
    #[arg(long)]
    no_build: bool,
    /// Seconds to wait for a load or reload to show up in the audit log.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

#[derive(Serialize)]
struct Feeds {
    dir_note: &'static str,
    v4_prefixes: usize,
    v6_prefixes: usize,
    v4_bytes: u64,
    v6_bytes: u64,
    /// prefix length -> count
    v4_lengths: std::collections::BTreeMap<u8, usize>,
    v6_lengths: std::collections::BTreeMap<u8, usize>,
    order_prefixes: usize,
    generation: &'static str,
    generate_s: f64,
}

/// The userspace phases of a load, timed in this process on the same
/// files with the agent's own code (one run each).
#[derive(Serialize)]
struct Phases {
    read_validate_s: f64,
    ruleset_build_s: f64,
    compile_s: f64,
    total_s: f64,
    /// CPU time of this process over the three steps: user, and system
    /// (page faults of fresh allocations; no map is written here).
    cpu_user_s: f64,
    cpu_system_s: f64,
    prefix_rules: usize,
    v4_long_entries: usize,
    v4_groups: usize,
    v6_entries: usize,
    prefix_entries: usize,
}

#[derive(Serialize, Clone)]
struct Applied {
    /// "load" or "reload".
    action: String,
    trigger: String,
    /// IPv4 prefixes replaced in the feed before this run.
    changed_v4: usize,
    /// details.seconds of the audit record: read + validate + compile +
    /// apply, as the agent measures it.
    seconds: f64,
    prefix_rules: u64,
    generation: u64,
    sequence: u64,
    /// From the file rename / SIGHUP (or the agent's start) to the record
    /// in the audit log, measured here (10 ms polling).
    wall_s: f64,
    /// Agent CPU time spent meanwhile (all threads).
    agent_user_s: f64,
    agent_system_s: f64,
    /// Reload records of the same change that were not the measured one
    /// (the agent also reloads on its own when it sees the file change).
    extra: Vec<Value>,
}

#[derive(Serialize)]
struct MemoryReport {
    /// VmHWM after the first load and attach (peak of startup + load).
    load_peak_kib: u64,
    /// VmHWM over the reloads (reset through clear_refs before the first).
    reload_peak_kib: u64,
    /// max of the two: the agent's peak.
    peak_kib: u64,
    after_load: agent::Memory,
    after_reloads: agent::Memory,
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
    machine: Machine,
    seed: u64,
    feeds: Feeds,
    agent: Value,
    phases: Phases,
    startup_s: f64,
    first_load: Applied,
    reloads: Vec<Applied>,
    reload_median_s: f64,
    reload_max_s: f64,
    memory: MemoryReport,
    status: Value,
    targets: Vec<Target>,
    cleanup: env::CleanupReport,
    warnings: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env::catch_signals();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("edgefilter-reload-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn agent_binary(args: &Args) -> Result<PathBuf> {
    if !args.no_build {
        let mut c = Command::new("cargo");
        c.args(["build", "--release", "-p", "filter-agent", "--bin", "filter-agent"]).current_dir(root());
        // As if typed in a shell: let the nested cargo pick its toolchains.
        for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC", "RUSTC_WRAPPER", "LD_LIBRARY_PATH"] {
            c.env_remove(var);
        }
        eprintln!("$ cargo build --release -p filter-agent --bin filter-agent");
        let status = c.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --release -p filter-agent failed ({status})");
        }
    }
    let path = match &args.agent {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.parent().context("no directory of this binary")?.join("filter-agent"),
    };
    if !path.is_file() {
        bail!("agent binary {} not found (build it, or pass --agent)", path.display());
    }
    Ok(path.canonicalize()?)
}

/// Ok(false): figures written, but something needs a look (warnings or an
/// incomplete cleanup).
fn run(args: &Args) -> Result<bool> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces, bpffs, XDP)");
    }
    if args.reloads == 0 || args.v4 == 0 {
        bail!("--reloads and --v4 must be at least 1");
    }
    let started = Instant::now();
    let agent_bin = agent_binary(args)?;
    let mut env = env::Env::create(&agent_bin)?;
    eprintln!("namespace {}, interface {}, bpffs {}, instance {}", env.netns, env.veth, env.bpffs.display(), env.instance);
    let result = measure(args, &mut env);
    let cleanup = env.cleanup();
    eprintln!(
        "cleanup: agent {}; {} pin(s) detached; bpffs unmounted: {}; temp dir removed: {}; namespace removed: {}; `ip netns list` clean: {}",
        cleanup.agent,
        cleanup.detach.len(),
        cleanup.bpffs_unmounted,
        cleanup.tempdir_removed,
        cleanup.netns_removed,
        cleanup.netns_list_clean
    );
    for p in &cleanup.problems {
        eprintln!("cleanup problem: {p}");
    }
    let mut report = result?;
    report.cleanup = cleanup;
    if !report.cleanup.clean {
        report.warnings.push(format!("cleanup incomplete: {}", report.cleanup.problems.join("; ")));
    }

    print_text(&report);
    write_file(&args.out, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    eprintln!("wrote {}", args.out.display());
    if let Some(md) = &args.markdown {
        let old = std::fs::read_to_string(md).unwrap_or_default();
        write_file(md, &splice(&old, &section(&report)))?;
        eprintln!("wrote the reload section of {}", md.display());
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(report.warnings.is_empty())
}

fn measure(args: &Args, env: &mut env::Env) -> Result<Report> {
    let mut warnings = Vec::new();
    let dir = env.dir.clone();
    let feeds_dir = dir.join("feeds");
    let orders_dir = dir.join("rules/orders");
    std::fs::create_dir_all(&feeds_dir)?;
    std::fs::create_dir_all(&orders_dir)?;
    let v4_path = feeds_dir.join("v4.txt");
    let v6_path = feeds_dir.join("v6.txt");

    // 1. Feeds and the order.
    let t = Instant::now();
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let mut v4 = gen::v4(args.v4, &mut rng);
    let v6 = gen::v6(args.v6, &mut rng);
    let header = |family: &str| format!("# edgefilter-reload-bench: {family} feed, seed {:#x}\n# generated; not real blocklist data\n", args.seed);
    gen::write_atomically(&v4_path, &gen::v4_text(&v4, &header("IPv4")))?;
    gen::write_atomically(&v6_path, &gen::v6_text(&v6, &header("IPv6")))?;
    std::fs::write(orders_dir.join("reload-bench-order.toml"), gen::ORDER)?;
    let generate_s = t.elapsed().as_secs_f64();
    let feeds = Feeds {
        dir_note: "generated in a temporary directory, removed afterwards",
        v4_prefixes: v4.items.len(),
        v6_prefixes: v6.items.len(),
        v4_bytes: std::fs::metadata(&v4_path)?.len(),
        v6_bytes: std::fs::metadata(&v6_path)?.len(),
        v4_lengths: gen::lengths(&v4, |p| p.1),
        v6_lengths: gen::lengths(&v6, |p| p.1),
        order_prefixes: gen::ORDER_PREFIXES,
        generation: gen::DESCRIPTION,
        generate_s,
    };
    eprintln!(
        "feeds: {} IPv4 prefixes ({:.1} MiB), {} IPv6 prefixes ({:.1} MiB), generated in {:.2} s",
        thousands(feeds.v4_prefixes),
        mib(feeds.v4_bytes),
        thousands(feeds.v6_prefixes),
        mib(feeds.v6_bytes),
        generate_s
    );

    // 2. agent.toml.
    let port = agent::free_port(env)?;
    let headroom = |n: usize| (n + 4096) as u64;
    let config_text = format!(
        r#"# Written by edgefilter-reload-bench; removed with its directory.
instance = "{instance}"
interfaces = ["{veth}"]
attach_mode = "auto"
rules = ["rules"]
metrics = "127.0.0.1:{port}"
state_dir = "state"
bpffs = "{bpffs}"

[capacity]
prefixes_v4 = {cap_v4}
prefixes_v6 = {cap_v6}

[[feed]]
id = "reload-bench-v4"
format = "plain"
path = "feeds/v4.txt"
category = "abuse-feed"
provenance = "edgefilter-reload-bench: generated IPv4 list, seed {seed:#x}"

[[feed]]
id = "reload-bench-v6"
format = "plain"
path = "feeds/v6.txt"
category = "abuse-feed"
provenance = "edgefilter-reload-bench: generated IPv6 list, seed {seed:#x}"
"#,
        instance = env.instance,
        veth = env.veth,
        bpffs = env.bpffs.display(),
        cap_v4 = headroom(args.v4).max(TARGET_V4 as u64),
        cap_v6 = headroom(args.v6).max(TARGET_V6 as u64),
        seed = args.seed,
    );
    let config_path = dir.join("agent.toml");
    std::fs::write(&config_path, &config_text)?;
    let config = filter_agent::config::load(&config_path)?;

    // Where the time goes: the userspace phases with the agent's own code,
    // in this process, before the agent runs (so they do not compete).
    let phases = phases(&config)?;
    let expected_rules = args.v4 + args.v6 + gen::ORDER_PREFIXES;
    if phases.prefix_rules != expected_rules {
        warnings.push(format!("the rule set has {} prefix rules, expected {}", phases.prefix_rules, expected_rules));
    }
    eprintln!(
        "userspace phases (this process): read+validate {:.3} s, rule set {:.3} s, compile {:.3} s",
        phases.read_validate_s, phases.ruleset_build_s, phases.compile_s
    );

    // 3. The agent.
    let audit = config.state_dir.join("audit.jsonl");
    let log = dir.join("agent.log");
    let spawned = Instant::now();
    let pid = env.start_agent(&config_path, &log)?;
    let with_log = |e: anyhow::Error, log: &Path| e.context(format!("agent log:\n{}", agent::log_tail(log, 30)));
    let timeout = Duration::from_secs(args.timeout);
    let (load, _) = agent::wait_for(env, &audit, 0, "load", timeout, |r| matches!(agent::action(r), "load" | "adopt")).map_err(|e| with_log(e, &log))?;
    if agent::action(&load) != "load" {
        warnings.push(format!("the agent adopted a pinned data plane instead of a fresh load ({})", agent::action(&load)));
    }
    let (attach, attached_at) = agent::wait_for(env, &audit, agent::seq(&load), "attach", timeout, |r| agent::action(r) == "attach").map_err(|e| with_log(e, &log))?;
    let startup_s = (attached_at - spawned).as_secs_f64();
    let (user, system) = agent::cpu(pid)?;
    let first_load = applied(&load, "start", 0, startup_s, user, system);
    let after_load = agent::memory(pid)?;
    eprintln!(
        "first load: {:.3} s (audit log), {} prefix rules; attached {:.2} s after start; VmHWM {:.1} MiB",
        first_load.seconds,
        thousands(first_load.prefix_rules as usize),
        startup_s,
        kib_mib(after_load.vm_hwm_kib)
    );
    if first_load.prefix_rules as usize != expected_rules {
        warnings.push(format!("the agent loaded {} prefix rules, expected {}", first_load.prefix_rules, expected_rules));
    }

    // Reloads: 1 % of the IPv4 feed replaced, renamed into place, SIGHUP.
    agent::reset_peak(pid)?;
    let change = ((args.v4 as f64) * args.change_percent / 100.0).round() as usize;
    let mut reloads = Vec::new();
    for n in 1..=args.reloads {
        v4.replace(change, &mut rng);
        let text = gen::v4_text(&v4, &header("IPv4"));
        let before = agent::last_seq(&audit);
        let (u0, s0) = agent::cpu(pid)?;
        let t0 = Instant::now();
        gen::write_atomically(&v4_path, &text)?;
        // SAFETY: signalling the agent, our child, which is running.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } != 0 {
            bail!("SIGHUP to {pid}: {}", std::io::Error::last_os_error());
        }
        let is_reload = |r: &Value| agent::action(r) == "reload";
        // The first reload after the rename applies the change; the agent's
        // own file watcher may get there before the SIGHUP does, and then
        // the SIGHUP reloads the same files once more.
        let (first, first_at) = agent::wait_for(env, &audit, before, "reload", timeout, is_reload).map_err(|e| with_log(e, &log))?;
        let (user, system) = agent::cpu(pid)?;
        let mut a = applied(&first, "", change, (first_at - t0).as_secs_f64(), user - u0, system - s0);
        if a.trigger != "SIGHUP" {
            let (hup, _) = agent::wait_for(env, &audit, agent::seq(&first), "SIGHUP reload", timeout, |r| is_reload(r) && r["details"]["trigger"] == "SIGHUP")
                .map_err(|e| with_log(e, &log))?;
            a.extra.push(hup);
        }
        eprintln!(
            "reload {n}: {:.3} s (audit log, trigger {}), {} prefix rules; agent CPU user {:.2} s, system {:.2} s",
            a.seconds,
            a.trigger,
            thousands(a.prefix_rules as usize),
            a.agent_user_s,
            a.agent_system_s
        );
        if a.prefix_rules as usize != expected_rules {
            warnings.push(format!("reload {n} applied {} prefix rules, expected {}", a.prefix_rules, expected_rules));
        }
        reloads.push(a);
    }
    let after_reloads = agent::memory(pid)?;
    let status = match agent::http_get(env, port, "/status.json").and_then(|b| serde_json::from_str::<Value>(&b).context("parsing /status.json")) {
        Ok(s) => serde_json::json!({
            "generation": s["generation"],
            "ruleset_sequence": s["ruleset_sequence"],
            "prefix_rules": s["prefix_rules"],
            "last_error": s["last_error"],
            "maps": s["maps"],
            "interfaces": s["interfaces"],
        }),
        Err(e) => {
            warnings.push(format!("/status.json: {e:#}"));
            Value::Null
        }
    };
    let reload_times: Vec<f64> = reloads.iter().map(|r| r.seconds).collect();
    let reload_median_s = median(&reload_times);
    let reload_max_s = reload_times.iter().copied().fold(0.0, f64::max);
    let memory = MemoryReport {
        load_peak_kib: after_load.vm_hwm_kib,
        reload_peak_kib: after_reloads.vm_hwm_kib,
        peak_kib: after_load.vm_hwm_kib.max(after_reloads.vm_hwm_kib),
        after_load,
        after_reloads,
    };
    let full = args.v4 == TARGET_V4 && args.v6 == TARGET_V6;
    let met = |ok: bool| if full { Some(ok) } else { None };
    let sizes = format!("{} IPv4 + {} IPv6 prefixes", thousands(args.v4), thousands(args.v6));
    let targets = vec![
        Target {
            name: format!("First load of {sizes} (agent start: read, validate, compile, create maps, apply)"),
            goal: format!("< {TARGET_SECONDS} s"),
            measured: format!("{:.3} s", first_load.seconds),
            met: met(first_load.seconds < TARGET_SECONDS),
        },
        Target {
            name: format!("Reload of {sizes} after a {}% change (read, validate, compile, apply, clear old generation)", args.change_percent),
            goal: format!("< {TARGET_SECONDS} s"),
            measured: format!("median {:.3} s, max {:.3} s ({} reloads)", reload_median_s, reload_max_s, reloads.len()),
            met: met(reload_max_s < TARGET_SECONDS),
        },
        Target {
            name: "Peak agent memory (VmHWM over start, load and reloads)".into(),
            goal: format!("< {TARGET_MIB} MiB"),
            measured: format!("{:.1} MiB", kib_mib(memory.peak_kib)),
            met: met(kib_mib(memory.peak_kib) < TARGET_MIB),
        },
    ];
    Ok(Report {
        tool: "edgefilter-reload-bench",
        date_utc: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        regenerate: REGENERATE,
        machine: machine(),
        seed: args.seed,
        feeds,
        agent: serde_json::json!({
            "binary": env.agent_bin,
            "pid": pid,
            "instance": env.instance,
            "netns": env.netns,
            "interface": env.veth,
            "attach": attach["details"]["interfaces"],
            "config": config_text,
        }),
        phases,
        startup_s,
        first_load,
        reloads,
        reload_median_s,
        reload_max_s,
        memory,
        status,
        targets,
        cleanup: env::CleanupReport::default(),
        warnings,
    })
}

fn applied(r: &Value, trigger: &str, changed_v4: usize, wall_s: f64, user: f64, system: f64) -> Applied {
    let d = &r["details"];
    Applied {
        action: agent::action(r).to_string(),
        trigger: d["trigger"].as_str().unwrap_or(trigger).to_string(),
        changed_v4,
        // The agent reports the time until the new set is enforced
        // (`seconds`) and the removal of the previous generation after it
        // (`cleanup_seconds`); the figure here is the whole of both.
        seconds: d["seconds"].as_f64().unwrap_or(f64::NAN) + d["cleanup_seconds"].as_f64().unwrap_or(0.0),
        prefix_rules: d["prefix_rules"].as_u64().unwrap_or(0),
        generation: d["generation"].as_u64().unwrap_or(0),
        sequence: d["sequence"].as_u64().unwrap_or(0),
        wall_s,
        agent_user_s: user,
        agent_system_s: system,
        extra: Vec::new(),
    }
}

/// The agent's userspace steps, one run each, with its own functions:
/// `ruleload::load_sources` (read + validate), `RuleSet::build`, and
/// `compile_with` (what `Dataplane::apply_rules` calls).
fn phases(config: &filter_agent::config::Config) -> Result<Phases> {
    let (u0, s0) = self_cpu();
    let t = Instant::now();
    let orders = filter_agent::ruleload::load_sources(&config.sources).map_err(|e| anyhow::anyhow!("{e}"))?;
    let read_validate_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rules = filter_common::rules::RuleSet::build(config.settings.clone(), &orders, chrono::Utc::now()).map_err(anyhow::Error::msg)?;
    let ruleset_build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (compiled, _tbl24) = filter_common::compile::compile_with(&rules, 0, filter_common::compile::Limits { v4_groups: config.capacity.v4_groups, ..Default::default() })
        .map_err(anyhow::Error::msg)?;
    let compile_s = t.elapsed().as_secs_f64();
    let (u1, s1) = self_cpu();
    Ok(Phases {
        read_validate_s,
        ruleset_build_s,
        compile_s,
        total_s: read_validate_s + ruleset_build_s + compile_s,
        cpu_user_s: u1 - u0,
        cpu_system_s: s1 - s0,
        prefix_rules: rules.prefixes.len(),
        v4_long_entries: compiled.v4.long.len(),
        v4_groups: compiled.v4.groups.len(),
        v6_entries: compiled.v6.len(),
        prefix_entries: compiled.entries.len(),
    })
}

/// User and system CPU seconds of this process.
fn self_cpu() -> (f64, f64) {
    // SAFETY: getrusage into a zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

fn kib_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn met_text(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not evaluated (smaller lists)",
    }
}

fn runs(r: &Report) -> Vec<(String, &Applied)> {
    let mut v = vec![("first load".to_string(), &r.first_load)];
    v.extend(r.reloads.iter().enumerate().map(|(i, a)| (format!("reload {}", i + 1), a)));
    v
}

fn run_row(name: &str, a: &Applied) -> [String; 7] {
    let change = if a.changed_v4 == 0 { "-".to_string() } else { format!("{} IPv4 replaced", thousands(a.changed_v4)) };
    let trigger = if a.extra.is_empty() { a.trigger.clone() } else { format!("{} (then SIGHUP: {:.3} s)", a.trigger, a.extra[0]["details"]["seconds"].as_f64().unwrap_or(f64::NAN)) };
    [
        name.to_string(),
        trigger,
        change,
        thousands(a.prefix_rules as usize),
        format!("{:.3}", a.seconds),
        format!("{:.2} / {:.2}", a.agent_user_s, a.agent_system_s),
        format!("{:.3}", a.wall_s),
    ]
}

const RUN_HEADER: [&str; 7] = ["Run", "Trigger", "Change", "Prefix rules", "Agent s (audit log)", "Agent CPU user / sys s", "Wall s (bench)"];

fn print_text(r: &Report) {
    println!();
    println!("Rule set load and reload: {} IPv4 + {} IPv6 prefixes from two plain feeds", thousands(r.feeds.v4_prefixes), thousands(r.feeds.v6_prefixes));
    let rows: Vec<[String; 7]> = runs(r).iter().map(|(n, a)| run_row(n, a)).collect();
    let widths: Vec<usize> = (0..7).map(|i| rows.iter().map(|row| row[i].len()).chain([RUN_HEADER[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    line(RUN_HEADER.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    println!("  reloads: median {:.3} s, max {:.3} s", r.reload_median_s, r.reload_max_s);
    let p = &r.phases;
    println!(
        "  userspace phases (bench process, same files): read+validate {:.3} s, rule set {:.3} s, compile {:.3} s = {:.3} s (CPU user {:.2} s, system {:.2} s)",
        p.read_validate_s, p.ruleset_build_s, p.compile_s, p.total_s, p.cpu_user_s, p.cpu_system_s
    );
    let m = &r.memory;
    println!(
        "  agent memory: peak {:.1} MiB (start+load {:.1} MiB, reloads {:.1} MiB); now RSS {:.1} MiB (anon {:.1}, file {:.1}, shmem {:.1})",
        kib_mib(m.peak_kib),
        kib_mib(m.load_peak_kib),
        kib_mib(m.reload_peak_kib),
        kib_mib(m.after_reloads.vm_rss_kib),
        kib_mib(m.after_reloads.rss_anon_kib),
        kib_mib(m.after_reloads.rss_file_kib),
        kib_mib(m.after_reloads.rss_shmem_kib)
    );
    println!();
    println!("Targets");
    for t in &r.targets {
        println!("  {}: {} (goal {}): {}", t.name, t.measured, t.goal, met_text(t.met));
    }
    for w in &r.warnings {
        println!("WARNING: {w}");
    }
}

/// The Markdown section, markers included.
fn section(r: &Report) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(md, "{START_MARKER}");
    let _ = writeln!(md, "## Rule set reload\n");
    let _ = writeln!(
        md,
        "Generated by `edgefilter-reload-bench` on {} — do not edit this section by hand. Regenerate it with\n",
        r.date_utc
    );
    let _ = writeln!(md, "```sh\ncargo xtask bench reload\n# which runs:\n{}\n```\n", r.regenerate);
    let _ = writeln!(
        md,
        "The real agent (`filter-agent run`) validating and atomically applying {} IPv4 + {} IPv6 prefixes from two `plain` feed files (plus a small order), and its peak memory.\n",
        thousands(r.feeds.v4_prefixes),
        thousands(r.feeds.v6_prefixes)
    );
    let _ = writeln!(md, "- Machine: {} ({} CPUs, `nproc`), {:.0} MiB RAM, kernel {}", m.cpu_model, m.nproc, m.mem_total_mib, m.kernel);
    let _ = writeln!(md, "- Commit: {}", m.commit);
    let _ = writeln!(md, "- Invoked as: `{}`\n", r.command);
    let _ = writeln!(md, "Figures are for this machine only; they are measured, never asserted.\n");

    let _ = writeln!(md, "### Targets\n");
    let _ = writeln!(md, "| Target | Goal | Measured | Result |\n|---|---|---|---|");
    for t in &r.targets {
        let _ = writeln!(md, "| {} | {} | {} | {} |", t.name, t.goal, t.measured, met_text(t.met));
    }

    let _ = writeln!(md, "\n### Load and reloads\n");
    let _ = writeln!(
        md,
        "\"Agent s\" is `details.seconds` of the agent's audit record (`load` / `reload`): from starting to read the sources to the new generation being in force, as the agent measures it. \"Wall s\" is measured by the benchmark: from the agent's start to its `attach` record for the first load, from renaming the changed feed into place (SIGHUP right after) to the `reload` record for reloads. Agent CPU is the agent's user / system time over the same span.\n"
    );
    let _ = writeln!(md, "| {} |\n|{}", RUN_HEADER.join(" | "), "---|".repeat(RUN_HEADER.len()));
    for (n, a) in runs(r) {
        let _ = writeln!(md, "| {} |", run_row(&n, a).join(" | "));
    }
    let _ = writeln!(md, "\nReloads: median {:.3} s, max {:.3} s.\n", r.reload_median_s, r.reload_max_s);

    let p = &r.phases;
    let _ = writeln!(md, "### Where the time goes\n");
    let _ = writeln!(
        md,
        "The userspace steps of a load, timed once in the benchmark process (not the agent) on the same files, with the agent's own functions, before the agent starts:\n"
    );
    let _ = writeln!(md, "| Step | s |\n|---|---|");
    let _ = writeln!(md, "| read + parse + validate (`ruleload::load_sources`) | {:.3} |", p.read_validate_s);
    let _ = writeln!(md, "| rule set (`RuleSet::build`) | {:.3} |", p.ruleset_build_s);
    let _ = writeln!(md, "| compile (`compile::compile_with`) | {:.3} |", p.compile_s);
    let _ = writeln!(md, "| sum | {:.3} (CPU: user {:.2}, system {:.2}) |", p.total_s, p.cpu_user_s, p.cpu_system_s);
    let rest_load = r.first_load.seconds - p.total_s;
    let rest_reload = r.reload_median_s - p.total_s;
    let _ = writeln!(
        md,
        "\nThe agent's figure minus this sum (an estimate: the steps ran in another process) is {:.3} s for the first load (loading the program, creating the maps, writing a generation) and {:.3} s for the median reload (writing the other generation, switching, deleting the old generation's hash and trie entries), mostly kernel work. The agent's system CPU time also counts the page faults of its own allocations (the bench process's steps above spent system time on them too), which probably makes the first reload, whose allocations grow the heap, the slowest.",
        rest_load, rest_reload
    );
    let _ = writeln!(
        md,
        "Compiled: {} prefix rules -> {} IPv4 long-prefix hash entries, {} IPv4 /24 groups, {} IPv6 trie entries, {} distinct prefix entries.\n",
        thousands(p.prefix_rules),
        thousands(p.v4_long_entries),
        thousands(p.v4_groups),
        thousands(p.v6_entries),
        thousands(p.prefix_entries)
    );

    let mm = &r.memory;
    let _ = writeln!(md, "### Memory\n");
    let _ = writeln!(md, "- Peak (VmHWM): **{:.1} MiB**", kib_mib(mm.peak_kib));
    let _ = writeln!(md, "  - start and first load: {:.1} MiB", kib_mib(mm.load_peak_kib));
    let _ = writeln!(md, "  - during the reloads: {:.1} MiB (VmHWM reset through `/proc/<pid>/clear_refs` before the first reload)", kib_mib(mm.reload_peak_kib));
    for (when, x) in [("after the first load", &mm.after_load), ("after the reloads", &mm.after_reloads)] {
        let _ = writeln!(
            md,
            "- RSS {when}: {:.1} MiB (anon {:.1}, file {:.1}, shmem {:.1})",
            kib_mib(x.vm_rss_kib),
            kib_mib(x.rss_anon_kib),
            kib_mib(x.rss_file_kib),
            kib_mib(x.rss_shmem_kib)
        );
    }
    let _ = writeln!(
        md,
        "\nThe agent maps the IPv4 DIR-24-8 arrays (both generations) into its address space and writes them directly, so those pages count in its RSS; the hash and trie entries live only in kernel memory and do not.\n"
    );

    let _ = writeln!(md, "### Method\n");
    let f = &r.feeds;
    let _ = writeln!(
        md,
        "- Feeds (seed {:#x}): {} IPv4 prefixes ({:.1} MiB), {} IPv6 prefixes ({:.1} MiB), format `plain`, category `abuse-feed`. {}",
        r.seed,
        thousands(f.v4_prefixes),
        mib(f.v4_bytes),
        thousands(f.v6_prefixes),
        mib(f.v6_bytes),
        f.generation
    );
    let lens = |v: &std::collections::BTreeMap<u8, usize>, total: usize| -> String {
        let mut top: Vec<(&u8, &usize)> = v.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        top.iter().take(3).map(|(l, c)| format!("/{l} {:.0}%", **c as f64 * 100.0 / total.max(1) as f64)).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(md, "- Most common lengths: IPv4 {}; IPv6 {}.", lens(&f.v4_lengths, f.v4_prefixes), lens(&f.v6_lengths, f.v6_prefixes));
    let _ = writeln!(
        md,
        "- One small order next to the feeds (documentation ranges: 203.0.113.128/25, 198.51.100.66, 2001:db8:bad::/48, and a UDP source-port rule)."
    );
    let _ = writeln!(
        md,
        "- The agent runs as `ip netns exec <ns> filter-agent run --config agent.toml` in a network namespace created for the run, attached to a veth there ({} mode), with its maps pinned in a bpffs mounted for the run; capacity prefixes_v4 / prefixes_v6 = list size + 4,096 (at least 1,000,000 / 250,000).",
        r.agent["attach"][0]["mode"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "- Reloads: {} times, {} random IPv4 prefixes are replaced by new ones, the feed is written to a temporary file and renamed over the old one, and the agent gets SIGHUP. The agent's once-a-second file check can notice the rename first: then the first `reload` record after the rename is the measured one (it applied the change) and the SIGHUP reload of unchanged files is listed as well.",
        r.reloads.len(),
        thousands(r.reloads.first().map_or(0, |a| a.changed_v4))
    );
    let _ = writeln!(md, "- Afterwards the agent is stopped, `filter-agent detach` removes its pins, and the bpffs, temporary directory and namespace are removed.");
    if !r.warnings.is_empty() {
        let _ = writeln!(md, "\n### Warnings\n");
        for w in &r.warnings {
            let _ = writeln!(md, "- {w}");
        }
    }
    let _ = writeln!(md, "{END_MARKER}");
    md
}

/// `old` with the section between the markers replaced by `section`, or
/// `section` appended when the markers are missing.
fn splice(old: &str, section: &str) -> String {
    if let (Some(start), Some(end)) = (old.find(START_MARKER), old.find(END_MARKER)) {
        if start < end {
            let mut after = &old[end + END_MARKER.len()..];
            after = after.strip_prefix('\n').unwrap_or(after);
            return format!("{}{}{}", &old[..start], section, after);
        }
    }
    let mut out = old.to_string();
    if !out.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(section);
    out
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
