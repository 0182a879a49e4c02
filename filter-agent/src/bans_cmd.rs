//! `filter-agent signatures bans` and `signatures unban`: the sources an
//! attack signature banned, read from the pinned `BANS` map (so they work
//! whether or not the agent runs), with the rule that banned each; and the
//! lifting of a ban by hand, recorded in the audit log.
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;
use filter_common::maps::{names, Ban, BanKey};
use filter_common::rules::order_file::EntryKind;
use filter_agent::inspect::monotonic_ns;
use filter_common::rules::RuleSet;

#[derive(Args)]
pub struct BansArgs {
    /// The agent's config (its pinned maps, rule sources and rule ids).
    #[arg(long, default_value = "/etc/edgefilter/agent.toml")]
    pub config: PathBuf,
}

#[derive(Args)]
pub struct UnbanArgs {
    #[arg(long, default_value = "/etc/edgefilter/agent.toml")]
    pub config: PathBuf,
    /// The banned source address.
    pub address: IpAddr,
    /// Why (recorded in the audit log).
    #[arg(long)]
    pub reason: String,
}

fn key(addr: IpAddr) -> BanKey {
    let mut k = BanKey::default();
    match addr {
        IpAddr::V4(a) => k.addr[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => {
            k.addr = a.octets();
            k.v6 = 1;
        }
    }
    k
}

fn address(k: &BanKey) -> IpAddr {
    if k.v6 != 0 {
        IpAddr::from(k.addr)
    } else {
        IpAddr::from([k.addr[0], k.addr[1], k.addr[2], k.addr[3]])
    }
}

fn open_bans(config: &filter_agent::config::Config) -> Result<aya::maps::HashMap<aya::maps::MapData, BanKey, Ban>> {
    let path = config.pin_dir().join("maps").join(names::BANS);
    let data = aya::maps::MapData::from_pin(&path).with_context(|| format!("opening {} (is the agent's program loaded?)", path.display()))?;
    Ok(aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(data))?)
}

/// The agent's rule set with its rule ids, for provenance.
fn rules(config: &filter_agent::config::Config) -> Result<RuleSet> {
    let orders = filter_agent::ruleload::load_sources(&config.sources)?;
    let state = filter_agent::state::State::open(&config.state_dir)?;
    RuleSet::build_with(config.settings.clone(), &orders, Utc::now(), |o, i| Ok(state.rule_id(&o.id, i).unwrap_or(0)))
        .map_err(anyhow::Error::msg)
}

/// What banned rule `id` names: `sid N (order, file:line)`.
fn provenance(rules: &RuleSet, orders: &[filter_common::rules::Order], id: u32) -> String {
    let Some(info) = rules.rule(id) else { return format!("rule {id} (no longer in force)") };
    let sid = orders
        .iter()
        .filter(|o| o.id == info.order_id)
        .flat_map(|o| &o.entries)
        .find_map(|e| match &e.kind {
            EntryKind::Signature(s) if s.line == info.line => Some(s.sid),
            _ => None,
        });
    match sid {
        Some(sid) => format!("sid {sid} ({}, {}:{})", info.order_id, info.file.display(), info.line),
        None => format!("rule {id} ({}, {}:{})", info.order_id, info.file.display(), info.line),
    }
}

pub fn list(a: &BansArgs) -> Result<()> {
    let config = filter_agent::config::load(&a.config)?;
    let bans = open_bans(&config)?;
    let orders = filter_agent::ruleload::load_sources(&config.sources).unwrap_or_default();
    let rules = rules(&config).unwrap_or_default();
    let now = monotonic_ns();
    let mut rows: Vec<(IpAddr, u64, u32)> = Vec::new();
    for entry in bans.iter() {
        let (k, v) = entry?;
        if v.expires_ns > now {
            rows.push((address(&k), (v.expires_ns - now) / 1_000_000_000, v.rule_id));
        }
    }
    rows.sort();
    if rows.is_empty() {
        println!("no source is banned");
        return Ok(());
    }
    println!("{:<40} {:>9}  banned by", "source", "lifts in");
    for (addr, secs, rule) in &rows {
        println!("{addr:<40} {:>8}s  {}", secs, provenance(&rules, &orders, *rule));
    }
    println!("{} source(s) banned", rows.len());
    Ok(())
}

pub fn unban(a: &UnbanArgs) -> Result<()> {
    if a.reason.trim().is_empty() {
        bail!("--reason must say why the ban is lifted (it goes to the audit log)");
    }
    let config = filter_agent::config::load(&a.config)?;
    let mut bans = open_bans(&config)?;
    let k = key(a.address);
    let ban = match bans.get(&k, 0) {
        Ok(b) if b.expires_ns > monotonic_ns() => b,
        _ => bail!("{} is not banned", a.address),
    };
    bans.remove(&k).context("removing the ban")?;
    let mut log = filter_agent::audit::AuditLog::open(&config.state_dir.join("audit.jsonl"))?;
    // SAFETY: getuid cannot fail.
    let actor = format!("operator:uid={}", unsafe { libc::getuid() });
    log.append(&actor, "unban", serde_json::json!({ "source": a.address, "rule_id": ban.rule_id, "reason": a.reason }))?;
    println!("ban of {} lifted (it was by rule {})", a.address, ban.rule_id);
    Ok(())
}
