//! `cargo xtask bench orders`: sustained pushes of small signed orders (10
//! entries each) from concurrent clients to a real agent's order API on
//! loopback (inside a namespace made for the run), at a fixed offered rate.
//! Prints orders/s and the enforcement latency (request received to entries
//! live in the kernel maps, as the agent reports it per push, and as the
//! clients see it), writes JSON and the BENCHMARKS.md section between
//! `<!-- orders-bench:start -->` and `<!-- orders-bench:end -->`. Figures
//! are measured, never asserted.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

// Shared with the other benchmarks; not every helper is used here.
#[allow(dead_code)]
#[path = "bench_common/mod.rs"]
mod bench_common;
#[allow(dead_code)]
#[path = "edgefilter-reload-bench/env.rs"]
mod env;

use bench_common::{machine, median, Machine};
use filter_agent::orders::wire;

const REGENERATE: &str = "cargo xtask bench orders";
const TARGET_RATE: f64 = 200.0;
const TARGET_P99_S: f64 = 0.050;

#[derive(Parser)]
struct Args {
    /// Offered load, orders per second (all clients together).
    #[arg(long, default_value_t = TARGET_RATE)]
    rate: f64,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value = "bench-results/orders.json")]
    out: PathBuf,
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    date: String,
    offered_rate: f64,
    clients: usize,
    seconds: f64,
    pushed: usize,
    failed: usize,
    achieved_rate: f64,
    enforcement_p50_s: f64,
    enforcement_p99_s: f64,
    enforcement_max_s: f64,
    client_p50_s: f64,
    client_p99_s: f64,
    target_met: bool,
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    env::catch_signals();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let agent_bin = root.join("target/release/filter-agent");
    if !agent_bin.exists() {
        bail!("{} missing: run `cargo build --release -p filter-agent`", agent_bin.display());
    }
    let mut env = env::Env::create(&agent_bin)?;
    let result = measure(args, &mut env);
    let cleanup = env.cleanup();
    eprintln!("cleanup: {} pin(s) detached, namespace removed: {}", cleanup.detach.len(), cleanup.netns_removed);
    let report = result?;
    println!(
        "offered {:.0} orders/s from {} clients for {:.0} s: pushed {} ({} failed), achieved {:.1} orders/s",
        report.offered_rate, report.clients, report.seconds, report.pushed, report.failed, report.achieved_rate
    );
    println!(
        "enforcement latency (agent, received -> live in the maps): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; client round trip p50 {:.1} ms, p99 {:.1} ms",
        report.enforcement_p50_s * 1e3,
        report.enforcement_p99_s * 1e3,
        report.enforcement_max_s * 1e3,
        report.client_p50_s * 1e3,
        report.client_p99_s * 1e3
    );
    println!("target: p99 under 50 ms at 200 orders/s: {}", if report.target_met { "met" } else { "NOT met" });
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    write_section(&args.markdown, &report)?;
    println!("wrote {} and the orders section of {}", args.out.display(), args.markdown.display());
    Ok(())
}

fn measure(args: &Args, env: &mut env::Env) -> Result<Report> {
    let dir = env.dir.clone();
    std::fs::create_dir_all(dir.join("orders"))?;
    let (seed, public) = wire::generate_key()?;
    std::fs::write(dir.join("authority.key"), &seed)?;
    let token = "bench-token";
    let config = format!(
        "instance = \"{}\"\ninterfaces = [\"{}\"]\nrules = [\"{}\"]\nstate_dir = \"{}\"\nbpffs = \"{}\"\nmetrics = \"127.0.0.1:9960\"\n\
         [api]\nlisten = \"127.0.0.1:9961\"\nmax_entries = 100\n[[api.client]]\nname = \"bench\"\nrole = \"authority:example-regulator\"\ntoken_sha256 = \"{}\"\n\
         [[authority]]\nname = \"example-regulator\"\npublic_key = \"{public}\"\n",
        env.instance,
        env.veth,
        dir.join("orders").display(),
        dir.join("state").display(),
        env.bpffs.display(),
        hex::encode(Sha256::digest(token))
    );
    let config_path = dir.join("agent.toml");
    std::fs::write(&config_path, config)?;
    env.start_agent(&config_path, &dir.join("agent.log"))?;
    wait_for_api(env)?;
    let key = wire::load_signing_key(&dir.join("authority.key"))?;

    // Pre-sign every order so signing does not count in the latency.
    let total = (args.rate * args.seconds).round() as usize;
    let now = chrono::Utc::now();
    let ts = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let bodies: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            let prefixes: Vec<String> = (0..10).map(|j| format!("2001:db8:{:x}:{:x}::/64", 0x1000 + i / 4096, (i % 4096) * 16 + j)).collect();
            let order = json!({
                "id": format!("BENCH-{i}"), "authority": "example-regulator", "reference": "benchmark", "category": "legal",
                "issued": ts(now - chrono::Duration::minutes(1)), "effective": ts(now - chrono::Duration::minutes(1)),
                "expires": ts(now + chrono::Duration::days(1)), "action": "drop",
                "entries": prefixes.iter().map(|p| json!({ "prefixes": [p] })).collect::<Vec<_>>()
            });
            serde_json::to_vec(&json!({ "signature": wire::sign(&order, &key), "order": order })).expect("json")
        })
        .collect();
    let bodies = Arc::new(bodies);
    let results: Arc<Mutex<Vec<(f64, f64)>>> = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(0usize));
    let netns = PathBuf::from(format!("/run/netns/{}", env.netns));
    let start = Instant::now() + Duration::from_millis(200);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let threads: Vec<_> = (0..args.clients)
        .map(|c| {
            let (bodies, results, failures, netns) = (bodies.clone(), results.clone(), failures.clone(), netns.clone());
            let clients = args.clients;
            std::thread::spawn(move || -> Result<()> {
                enter(&netns)?;
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut i = c;
                while i < bodies.len() {
                    // Open loop: order i is due at start + i / rate.
                    let due = start + interval * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let sent = Instant::now();
                    let resp = agent.post("http://127.0.0.1:9961/v1/orders").header("Authorization", &format!("Bearer {token}")).content_type("application/json").send(&bodies[i][..]);
                    let round_trip = sent.elapsed().as_secs_f64();
                    match resp {
                        Ok(mut r) if r.status().as_u16() == 201 => {
                            let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
                            results.lock().unwrap().push((v["enforcement_seconds"].as_f64().unwrap_or(f64::NAN), round_trip));
                        }
                        _ => *failures.lock().unwrap() += 1,
                    }
                    i += clients;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    env.agent_running()?;
    let results = results.lock().unwrap().clone();
    let enforcement: Vec<f64> = results.iter().map(|r| r.0).collect();
    let client: Vec<f64> = results.iter().map(|r| r.1).collect();
    let p99 = percentile(&enforcement, 0.99);
    let failed = *failures.lock().unwrap();
    let achieved = results.len() as f64 / elapsed;
    Ok(Report {
        machine: machine(),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        offered_rate: args.rate,
        clients: args.clients,
        seconds: args.seconds,
        pushed: results.len(),
        failed,
        achieved_rate: achieved,
        enforcement_p50_s: median(&enforcement),
        enforcement_p99_s: p99,
        enforcement_max_s: percentile(&enforcement, 1.0),
        client_p50_s: median(&client),
        client_p99_s: percentile(&client, 0.99),
        target_met: failed == 0 && args.rate >= TARGET_RATE && achieved >= 0.95 * TARGET_RATE && p99 < TARGET_P99_S,
    })
}

fn enter(netns: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    // SAFETY: setns on this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn wait_for_api(env: &mut env::Env) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        env.agent_running()?;
        let up = env.within(|| Ok(ureq::get("http://127.0.0.1:9961/v1/health").call().is_ok()))?;
        if up {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the agent's API did not answer within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_section(path: &Path, r: &Report) -> Result<()> {
    let m = &r.machine;
    let section = format!(
        "<!-- orders-bench:start -->\n## Order push API\n\nGenerated by `edgefilter-orders-bench` on {} — do not edit this section by hand. Regenerate it with `{REGENERATE}`.\n\n\
         Machine: {} ({} CPUs), kernel {}, commit {}.\n\n\
         {} concurrent clients push signed orders of 10 IPv6 prefixes each to a real agent's API (plain HTTP on loopback inside a namespace made for the run; \
         every push is journaled with fsync, then enforced by the group-commit applier) at an offered {:.0} orders/s for {:.0} s. \
         Enforcement latency is the agent's own figure per push (request received to entries live in the kernel maps, returned in the 201 response); \
         the client round trip adds HTTP.\n\n\
         | Figure | Value |\n|---|---|\n| orders pushed (failed) | {} ({}) |\n| achieved rate | {:.1} orders/s |\n| enforcement latency p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |\n| client round trip p50 / p99 | {:.1} / {:.1} ms |\n\n\
         Target: p99 under 50 ms at 200 orders/s — **{}**.\n<!-- orders-bench:end -->\n",
        r.date,
        m.cpu_model,
        m.nproc,
        m.kernel,
        m.commit,
        r.clients,
        r.offered_rate,
        r.seconds,
        r.pushed,
        r.failed,
        r.achieved_rate,
        r.enforcement_p50_s * 1e3,
        r.enforcement_p99_s * 1e3,
        r.enforcement_max_s * 1e3,
        r.client_p50_s * 1e3,
        r.client_p99_s * 1e3,
        if r.target_met { "met" } else { "not met" }
    );
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find("<!-- orders-bench:start -->"), old.find("<!-- orders-bench:end -->")) {
        (Some(a), Some(b)) => format!("{}{}{}", &old[..a], section.trim_end(), &old[b + "<!-- orders-bench:end -->".len()..]),
        _ => format!("{}\n{section}", old.trim_end()),
    };
    std::fs::write(path, new)?;
    Ok(())
}
