//! `filter-agent classify`: the reference classifier on hex packets or a
//! pcap file, with the rule that decided each verdict and its provenance.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use filter_common::reference::{Decision, Reference};
use filter_common::rules::{RuleSet, Settings};

#[derive(Args)]
pub struct ClassifyArgs {
    /// Classify against what the agent of this config enforces: its rule
    /// directories, feeds, allowlist and policies (and its rule ids).
    #[arg(long, conflicts_with_all = ["rules", "allow", "fail_closed", "fragment_policy"])]
    pub config: Option<PathBuf>,
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
    /// A whole Ethernet frame in hex (repeatable).
    #[arg(long = "packet")]
    pub packets: Vec<String>,
    /// A pcap file of Ethernet frames.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Evaluate orders as of this RFC 3339 time instead of now.
    #[arg(long)]
    pub at: Option<DateTime<Utc>>,
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    #[arg(long)]
    pub fail_closed: bool,
    #[arg(long, default_value = "")]
    pub fragment_policy: String,
}

pub fn classify(a: &ClassifyArgs) -> Result<()> {
    let now = a.at.unwrap_or_else(Utc::now);
    let rules = match &a.config {
        Some(path) => {
            let config = crate::config::load(path)?;
            let orders = crate::ruleload::load_sources(&config.sources)?;
            // The agent's rule ids, so they match its counters and status.
            let state = crate::state::State::open(&config.state_dir)?;
            let mut next = state.max_rule_id();
            RuleSet::build_with(config.settings, &orders, now, |o, i| {
                Ok(state.rule_id(&o.id, i).unwrap_or_else(|| {
                    next += 1;
                    next
                }))
            })
            .map_err(anyhow::Error::msg)?
        }
        None => {
            let mut settings = Settings { fail_closed: a.fail_closed, ..Settings::default() };
            for p in &a.allow {
                settings.allow.push(filter_common::rules::order_file::parse_net(p).map_err(anyhow::Error::msg)?);
            }
            settings.set_fragment_policy(&a.fragment_policy).map_err(anyhow::Error::msg)?;
            crate::ruleload::ruleset(&a.rules, settings, now)?.1
        }
    };
    let frames = frames(a)?;
    if frames.is_empty() {
        bail!("nothing to classify: give --packet HEX or --pcap FILE");
    }
    let reference = Reference::new(&rules);
    for (i, frame) in frames.iter().enumerate() {
        println!("#{} {}", i + 1, describe(&rules, &reference.classify(frame), frame.len()));
    }
    Ok(())
}

fn frames(a: &ClassifyArgs) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for (i, h) in a.packets.iter().enumerate() {
        let clean: String = h.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
        out.push(hex::decode(&clean).with_context(|| format!("--packet #{}: not hex", i + 1))?);
    }
    if let Some(path) = &a.pcap {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut reader = pcap_file::pcap::PcapReader::new(file).with_context(|| format!("{}: not a pcap file", path.display()))?;
        if reader.header().datalink != pcap_file::DataLink::ETHERNET {
            bail!("{}: link type {:?}; only Ethernet captures can be classified", path.display(), reader.header().datalink);
        }
        while let Some(pkt) = reader.next_packet() {
            out.push(pkt.with_context(|| format!("{}: truncated record", path.display()))?.data.into_owned());
        }
    }
    Ok(out)
}

/// One line: verdict, reason, deciding rule and where it comes from.
pub fn describe(rules: &RuleSet, d: &Decision, len: usize) -> String {
    // ANSWER: dropped, and answered from the kernel (a blocked DNS query).
    let verdict = if d.answer.is_some() { "ANSWER" } else if d.drop { "DROP" } else { "PASS" };
    let mut line = format!("{verdict} reason={} len={len}", d.reason.name());
    if let Some(info) = rules.rule(d.rule_id) {
        line += &format!(
            " rule={} order={} authority=\"{}\" category={} ({}:{})",
            info.id,
            info.order_id,
            info.authority,
            info.category.name(),
            info.file.display(),
            info.line
        );
    }
    let dry: Vec<String> = d
        .hits
        .iter()
        .filter(|&&id| id != d.rule_id)
        .filter_map(|&id| rules.rule(id))
        .map(|i| format!("{}(rule {})", i.order_id, i.id))
        .collect();
    if !dry.is_empty() {
        line += &format!(" dry-run-would-drop=[{}]", dry.join(", "));
    }
    line
}
