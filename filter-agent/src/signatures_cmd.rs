//! `filter-agent signatures check`: validates Suricata-subset signature
//! packs (see `rules/signatures/README.md`) before they are deployed, with
//! every problem as file:line: reason. A pack whose rules use keywords this
//! engine does not implement is refused unless `--skip-unsupported` is
//! given, and then says how many rules it left out and why.
use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use filter_common::signatures::{load_pack, SigAction};

#[derive(Args)]
pub struct CheckArgs {
    /// Signature packs (`.rules` files).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Leave out rules that use unsupported keywords (and say so) instead
    /// of refusing the pack.
    #[arg(long)]
    pub skip_unsupported: bool,
    /// An address variable, `NAME=VALUE` (repeatable). `HOME_NET` defaults
    /// to `any` and `EXTERNAL_NET` to `!$HOME_NET`.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

pub fn check(a: &CheckArgs) -> Result<()> {
    let mut vars: HashMap<String, String> = HashMap::new();
    for v in &a.vars {
        let Some((name, value)) = v.split_once('=') else { bail!("--var {v}: expected NAME=VALUE") };
        vars.insert(name.trim().trim_start_matches('$').to_string(), value.trim().to_string());
    }
    vars.entry("HOME_NET".into()).or_insert_with(|| "any".into());
    if !vars.contains_key("EXTERNAL_NET") {
        let home = vars["HOME_NET"].clone();
        vars.insert("EXTERNAL_NET".into(), if home == "any" { "any".into() } else { "!$HOME_NET".into() });
    }
    let mut failed = 0;
    for file in &a.files {
        match load_pack(file, &vars, a.skip_unsupported) {
            Ok(pack) => {
                let drop = pack.rules.iter().filter(|r| r.action == SigAction::Drop).count();
                let bans = pack.rules.iter().filter(|r| r.ban_seconds.is_some()).count();
                println!(
                    "{}: {} rules ({drop} drop, {} alert, {bans} with a temporary ban), {} skipped as unsupported",
                    file.display(),
                    pack.rules.len(),
                    pack.rules.len() - drop,
                    pack.skipped.len()
                );
                for s in &pack.skipped {
                    println!("  skipped {s}");
                }
            }
            Err(errors) => {
                failed += 1;
                for e in &errors.0 {
                    eprintln!("{e}");
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} pack(s) refused; nothing is loaded from a refused pack", a.files.len());
    }
    Ok(())
}
