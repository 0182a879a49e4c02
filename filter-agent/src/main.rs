//! `filter-agent`: the edge filter daemon and its operator commands.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use filter_agent::config::{self, Config, Sources};
use filter_agent::dataplane::{AttachMode, Capacity};
use filter_agent::{classify_cmd, run};
use filter_common::rules::Settings;

mod bans_cmd;

#[derive(Parser)]
#[command(name = "filter-agent", version, about = "ISP edge filter: XDP data plane agent and operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the rules, attach the XDP program and keep the rules in force
    /// (reload on SIGHUP and file change, expiry) until stopped. Filtering
    /// stays in force after the agent stops.
    Run(RunArgs),
    /// Validate every rule source; print each problem as file:line: reason.
    Check {
        /// Use the rule directories and feeds of this agent config.
        #[arg(long, conflicts_with = "rules")]
        config: Option<PathBuf>,
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Offline verdicts from the reference classifier for hex packets or a pcap.
    Classify(classify_cmd::ClassifyArgs),
    /// Show what a running agent enforces and has counted.
    Status {
        /// The agent's metrics/status address.
        #[arg(long, default_value = "127.0.0.1:9960")]
        agent: SocketAddr,
    },
    /// The busiest destinations and sources of the last 10 seconds, by
    /// packets or bits per second, estimated from the traffic samples of a
    /// running agent (`sample_every` in agent.toml).
    Top {
        /// The agent's metrics/status address.
        #[arg(long, default_value = "127.0.0.1:9960")]
        agent: SocketAddr,
        /// Rank by packets (pps) or bits (bps) per second.
        #[arg(long, value_enum, default_value = "pps")]
        by: filter_agent::top::By,
        /// Rows of each table.
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
    },
    /// List the loaded orders and whether each is in force, pending or expired.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Detach the XDP program from every interface and remove the pinned
    /// maps (stop the agent first, or it keeps running without effect).
    Detach(PinArgs),
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Push, revoke, list and show orders through the agent's API; sign
    /// orders and make authority keys.
    Order {
        #[command(subcommand)]
        command: filter_agent::order_cli::OrderCommand,
    },
    /// API credentials.
    Api {
        #[command(subcommand)]
        command: ApiCommand,
    },
    /// Attack signature packs (Suricata subset).
    Signatures {
        #[command(subcommand)]
        command: SignaturesCommand,
    },
    /// Transparency report for a time window: the orders enforced, by
    /// authority and category, from the verified audit log and the order
    /// journal (JSON or CSV).
    Report {
        #[command(flatten)]
        args: filter_agent::transparency::ReportArgs,
    },
}

#[derive(Subcommand)]
enum SignaturesCommand {
    /// Validate packs: every problem as file:line: reason.
    Check(filter_agent::signatures_cmd::CheckArgs),
    /// The sources banned by signatures, how long each ban lasts, and the
    /// rule (sid, pack, file:line) that banned it.
    Bans(bans_cmd::BansArgs),
    /// Lift a ban now (recorded in the audit log with the reason).
    Unban(bans_cmd::UnbanArgs),
}

#[derive(Subcommand)]
enum ApiCommand {
    /// Make a random bearer token and the SHA-256 to configure for it.
    Token,
}

#[derive(Subcommand)]
enum RulesCommand {
    List {
        #[arg(long, conflicts_with = "rules")]
        config: Option<PathBuf>,
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the audit log.
    Verify {
        /// The log file (default: audit.jsonl in the config's state directory).
        #[arg(long)]
        log: Option<PathBuf>,
        #[arg(long, conflicts_with = "log")]
        config: Option<PathBuf>,
    },
    /// After inspecting it: cut off a last line torn by a crash (the agent
    /// refuses to append to such a log) and record what was discarded.
    Recover {
        #[arg(long)]
        log: Option<PathBuf>,
        #[arg(long, conflicts_with = "log")]
        config: Option<PathBuf>,
    },
}

#[derive(Args)]
struct PinArgs {
    /// Take bpffs, instance and state directory from this config.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    #[arg(long, default_value = "edgefilter")]
    instance: String,
    /// Where to record the detach in the audit log.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// The agent configuration (agent.toml). Without it, the flags below
    /// describe the configuration.
    #[arg(long, conflicts_with_all = ["interfaces", "rules"])]
    config: Option<PathBuf>,
    /// Interface to protect (repeatable).
    #[arg(long = "interface", short = 'i')]
    interfaces: Vec<String>,
    #[arg(long)]
    rules: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    mode: AttachMode,
    #[command(flatten)]
    settings: SettingsArgs,
    /// Where /metrics and /status are served (keep it on a management address).
    #[arg(long, default_value = "127.0.0.1:9960")]
    metrics: SocketAddr,
    #[arg(long, default_value = "/var/lib/edgefilter")]
    state_dir: PathBuf,
    #[arg(long, default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    #[arg(long, default_value = "edgefilter")]
    instance: String,
    /// IPv4 prefixes longer than /24 (outside dense blocks) per rule
    /// generation; /24 and shorter prefixes are unlimited.
    #[arg(long, default_value_t = filter_common::maps::DEFAULT_PREFIX_V4_CAPACITY)]
    capacity_v4: u32,
    #[arg(long, default_value_t = filter_common::maps::DEFAULT_PREFIX_V6_CAPACITY)]
    capacity_v6: u32,
    /// Dense IPv4 /24 blocks resolved by direct 256-entry groups (1 KiB each).
    #[arg(long, default_value_t = filter_common::maps::DEFAULT_V4_GROUPS)]
    v4_groups: u32,
    /// An attack signature pack to enforce (repeatable; see
    /// rules/signatures/README.md).
    #[arg(long = "signatures", value_name = "PACK")]
    signature_packs: Vec<PathBuf>,
    /// A signature pack variable, `NAME=VALUE` (repeatable), e.g.
    /// `HOME_NET=[198.19.0.0/16]`; `EXTERNAL_NET` defaults to `!$HOME_NET`.
    #[arg(long = "signature-var", value_name = "NAME=VALUE", requires = "signature_packs")]
    signature_vars: Vec<String>,
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

fn run_config(a: RunArgs) -> Result<Config> {
    if let Some(path) = &a.config {
        return config::load(path);
    }
    let Some(rules) = a.rules else { bail!("give --config FILE, or --interface and --rules") };
    if a.interfaces.is_empty() {
        bail!("give --config FILE, or --interface and --rules");
    }
    let signatures = if a.signature_packs.is_empty() {
        None
    } else {
        let mut vars: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for v in &a.signature_vars {
            let Some((name, value)) = v.split_once('=') else { bail!("--signature-var `{v}`: expected NAME=VALUE") };
            vars.insert(name.trim().trim_start_matches('$').to_string(), value.trim().to_string());
        }
        vars.entry("EXTERNAL_NET".into()).or_insert_with(|| "!$HOME_NET".into());
        Some(config::SignaturePacks {
            packs: a.signature_packs,
            vars,
            skip_unsupported: false,
            action: filter_common::rules::Action::Drop,
        })
    };
    Ok(Config {
        instance: a.instance,
        interfaces: a.interfaces,
        attach_mode: a.mode,
        settings: Settings { sample_every: config::DEFAULT_SAMPLE_EVERY, ..settings(&a.settings)? },
        sources: Sources { order_dirs: vec![rules], feeds: Vec::new(), signatures },
        metrics: a.metrics,
        state_dir: a.state_dir,
        bpffs: a.bpffs,
        capacity: Capacity { prefixes_v4: a.capacity_v4, prefixes_v6: a.capacity_v6, v4_groups: a.v4_groups, ..Capacity::default() },
        api: None,
        authorities: Vec::new(),
        ddos: Vec::new(),
    })
}

fn sources(config: &Option<PathBuf>, rules: &Option<PathBuf>) -> Result<Sources> {
    Ok(match (config, rules) {
        (Some(c), _) => config::load(c)?.sources,
        (None, Some(r)) => Sources { order_dirs: vec![r.clone()], feeds: Vec::new(), signatures: None },
        (None, None) => Sources { order_dirs: vec![PathBuf::from("rules")], feeds: Vec::new(), signatures: None },
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run_config(a).and_then(run::run),
        Command::Check { config, rules } => return check(&config, &rules),
        Command::Classify(a) => classify_cmd::classify(&a),
        Command::Status { agent } => status(agent),
        Command::Top { agent, by, n } => filter_agent::top::run(agent, by, n),
        Command::Rules { command: RulesCommand::List { config, rules } } => list(&config, &rules),
        Command::Detach(a) => detach(a),
        Command::Audit { command: AuditCommand::Verify { log, config } } => verify(log, config),
        Command::Audit { command: AuditCommand::Recover { log, config } } => recover(log, config),
        Command::Order { command } => filter_agent::order_cli::run(command),
        Command::Api { command: ApiCommand::Token } => filter_agent::order_cli::token(),
        Command::Report { args } => filter_agent::transparency::run(args),
        Command::Signatures { command: SignaturesCommand::Check(a) } => filter_agent::signatures_cmd::check(&a),
        Command::Signatures { command: SignaturesCommand::Bans(a) } => bans_cmd::list(&a),
        Command::Signatures { command: SignaturesCommand::Unban(a) } => bans_cmd::unban(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: &Option<PathBuf>, rules: &Option<PathBuf>) -> ExitCode {
    let sources = match sources(config, rules) {
        Ok(s) => s,
        Err(e) => {
            println!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    match filter_agent::ruleload::load_sources(&sources) {
        Ok(orders) => {
            let now = chrono::Utc::now();
            let active = orders.iter().filter(|o| o.is_active(now)).count();
            let entries: usize = orders.iter().map(|o| o.entries.len()).sum();
            let where_: Vec<String> = sources.order_dirs.iter().map(|d| d.display().to_string()).collect();
            println!(
                "{} (+{} feeds): {} orders ({} in force now), {} entries: OK",
                where_.join(", "),
                sources.feeds.len(),
                orders.len(),
                active,
                entries
            );
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

fn list(config: &Option<PathBuf>, rules: &Option<PathBuf>) -> Result<()> {
    let orders = filter_agent::ruleload::load_sources(&sources(config, rules)?)?;
    let now = chrono::Utc::now();
    println!("{:<28} {:<11} {:<9} {:<8} {:>7}  {:<25} source", "order", "category", "state", "action", "entries", "expires");
    for o in &orders {
        let state = if o.is_active(now) { "in-force" } else if now < o.effective { "pending" } else { "expired" };
        let action = match o.action {
            filter_common::rules::Action::Drop => "drop",
            filter_common::rules::Action::DryRun => "dry-run",
        };
        println!(
            "{:<28} {:<11} {:<9} {:<8} {:>7}  {:<25} {}",
            o.id,
            o.category.name(),
            state,
            action,
            o.entries.len(),
            o.expires.format("%Y-%m-%dT%H:%M:%SZ"),
            o.file.display()
        );
    }
    Ok(())
}

fn detach(a: PinArgs) -> Result<()> {
    let (dir, state_dir) = match &a.config {
        Some(path) => {
            let c = config::load(path)?;
            (c.pin_dir(), Some(c.state_dir))
        }
        None => (a.bpffs.join(&a.instance), a.state_dir),
    };
    let removed = filter_agent::dataplane::detach(&dir)?;
    if removed.is_empty() {
        println!("nothing pinned at {}", dir.display());
    }
    for r in &removed {
        println!("{r}");
    }
    if let Some(state_dir) = state_dir {
        let mut log = filter_agent::audit::AuditLog::open(&state_dir.join("audit.jsonl"))?;
        let actor = format!("operator:uid={}", unsafe { libc::getuid() });
        log.append(&actor, "detach", serde_json::json!({ "pins": dir, "removed": removed }))?;
    }
    Ok(())
}

fn audit_path(log: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf> {
    Ok(match (log, config) {
        (Some(l), _) => l,
        (None, Some(c)) => config::load(&c)?.state_dir.join("audit.jsonl"),
        (None, None) => PathBuf::from("/var/lib/edgefilter/audit.jsonl"),
    })
}

fn recover(log: Option<PathBuf>, config: Option<PathBuf>) -> Result<()> {
    let path = audit_path(log, config)?;
    let actor = format!("operator:uid={}", unsafe { libc::getuid() });
    match filter_agent::audit::AuditLog::recover_torn_tail(&path, &actor)? {
        (_, Some(rec)) => println!("{}: torn last line discarded and recorded as record {}", path.display(), rec.seq),
        (_, None) => println!("{}: nothing to recover", path.display()),
    }
    Ok(())
}

fn verify(log: Option<PathBuf>, config: Option<PathBuf>) -> Result<()> {
    let path = audit_path(log, config)?;
    let n = filter_agent::audit::verify(&path)?;
    println!("{}: {n} records, hash chain intact", path.display());
    Ok(())
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
