//! `filter-agent`: the edge filter daemon and its operator commands.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use filter_agent::{classify_cmd, dataplane::AttachMode, run};
use filter_common::rules::Settings;

#[derive(Parser)]
#[command(name = "filter-agent", version, about = "ISP edge filter: XDP data plane agent and operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the rules, attach the XDP program and serve metrics until stopped.
    Run(RunArgs),
    /// Validate order files; print every problem as file:line: reason.
    Check {
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
    },
    /// Offline verdicts from the reference classifier for hex packets or a pcap.
    Classify(classify_cmd::ClassifyArgs),
    /// Show what a running agent enforces and has counted.
    Status {
        /// The agent's metrics/status address.
        #[arg(long, default_value = "127.0.0.1:9960")]
        agent: SocketAddr,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Interface to protect (repeat for several).
    #[arg(long = "interface", short = 'i', required = true)]
    interfaces: Vec<String>,
    #[arg(long, default_value = "rules")]
    rules: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    mode: AttachMode,
    #[command(flatten)]
    settings: SettingsArgs,
    /// Where /metrics and /status are served (keep it on a management address).
    #[arg(long, default_value = "127.0.0.1:9960")]
    metrics: SocketAddr,
    /// IPv4 prefixes longer than /24 (outside dense blocks) per rule
    /// generation; /24 and shorter prefixes are unlimited.
    #[arg(long, default_value_t = filter_common::maps::DEFAULT_PREFIX_V4_CAPACITY)]
    capacity_v4: u32,
    /// Dense IPv4 /24 blocks resolved by direct 256-entry groups (1 KiB each).
    #[arg(long, default_value_t = filter_common::maps::DEFAULT_V4_GROUPS)]
    v4_groups: u32,
    /// IPv6 prefix capacity per rule generation.
    #[arg(long, default_value_t = filter_common::maps::DEFAULT_PREFIX_V6_CAPACITY)]
    capacity_v6: u32,
}

/// Settings shared by `run` and `classify`, so an offline verdict uses the
/// same allowlist and policies as the running agent.
#[derive(Args, Clone)]
pub(crate) struct SettingsArgs {
    /// Management or BGP peer prefix that always passes (repeatable).
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// Drop malformed packets instead of passing them.
    #[arg(long)]
    fail_closed: bool,
    /// e.g. `udp=drop-non-first,other=drop-all` (pass, drop-non-first, drop-all).
    #[arg(long, default_value = "")]
    fragment_policy: String,
}

fn settings(args: &SettingsArgs) -> Result<Settings> {
    let mut s = Settings { fail_closed: args.fail_closed, ..Settings::default() };
    for a in &args.allow {
        s.allow.push(filter_common::rules::order_file::parse_net(a).map_err(anyhow::Error::msg).context("--allow")?);
    }
    s.set_fragment_policy(&args.fragment_policy).map_err(anyhow::Error::msg).context("--fragment-policy")?;
    Ok(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => settings(&a.settings).and_then(|s| {
            run::run(run::RunOptions {
                interfaces: a.interfaces,
                rules: a.rules,
                mode: a.mode,
                settings: s,
                metrics: a.metrics,
                capacity: filter_agent::dataplane::Capacity { prefixes_v4: a.capacity_v4, prefixes_v6: a.capacity_v6, v4_groups: a.v4_groups },
            })
        }),
        Command::Check { rules } => return check(&rules),
        Command::Classify(a) => classify_cmd::classify(&a),
        Command::Status { agent } => status(agent),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(dir: &std::path::Path) -> ExitCode {
    match filter_agent::ruleload::load_orders(dir) {
        Ok(orders) => {
            let now = chrono::Utc::now();
            let active = orders.iter().filter(|o| o.is_active(now)).count();
            let entries: usize = orders.iter().map(|o| o.entries.len()).sum();
            println!("{}: {} orders ({} in force now), {} entries: OK", dir.display(), orders.len(), active, entries);
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("{e}");
            }
            println!("{} problem(s); nothing would be applied", errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn status(agent: SocketAddr) -> Result<()> {
    let body = ureq::get(&format!("http://{agent}/status"))
        .call()
        .with_context(|| format!("no agent answering on {agent} (is `filter-agent run` started?)"))?
        .body_mut()
        .read_to_string()?;
    print!("{body}");
    Ok(())
}
