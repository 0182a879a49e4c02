//! `[signatures]` in agent.toml: the bundled packs load as orders (one rule
//! id per rule, provenance file:line), compile into the kernel's tables, and
//! bad settings or packs are refused with the key or file:line.
use std::path::{Path, PathBuf};

use chrono::Utc;
use filter_agent::config;
use filter_agent::ruleload::load_sources;
use filter_common::rules::order_file::EntryKind;
use filter_common::rules::{Category, RuleSet};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn config_text(signatures: &str) -> String {
    format!("interfaces = [\"eth0\"]\nrules = []\n{signatures}\n")
}

const BUNDLED: &str = r#"
[signatures]
packs = ["rules/signatures/log4shell.rules", "rules/signatures/spring4shell.rules", "rules/signatures/amplification.rules"]
scan_bytes = 2048
[signatures.vars]
HOME_NET = "[198.18.0.0/15,2001:db8::/32]"
EXTERNAL_NET = "!$HOME_NET"
"#;

#[test]
fn bundled_packs_load_as_attack_orders_and_compile() {
    let cfg = config::parse(&config_text(BUNDLED), &repo()).expect("config");
    assert_eq!(cfg.settings.signatures.scan_bytes, 2048);
    let orders = load_sources(&cfg.sources).expect("packs load");
    let ids: Vec<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["signatures:log4shell", "signatures:spring4shell", "signatures:amplification"]);
    for o in &orders {
        assert_eq!(o.category, Category::Attack);
        assert!(!o.entries.is_empty());
        for e in &o.entries {
            let EntryKind::Signature(sig) = &e.kind else { panic!("{}: not a signature entry", o.id) };
            assert_eq!(e.line, sig.line, "the entry's line is the rule's");
            assert!(e.comment.as_deref().unwrap().starts_with(&format!("sid {}:", sig.sid)));
        }
    }
    let rules = RuleSet::build(cfg.settings.clone(), &orders, Utc::now()).expect("rule set");
    let total: usize = orders.iter().map(|o| o.entries.len()).sum();
    assert_eq!(rules.signatures.len(), total);
    // Every signature has its own rule id and provenance.
    for s in &rules.signatures {
        let info = rules.rule(s.rule_id).expect("provenance");
        assert_eq!(info.line, s.sig.line);
        assert!(info.order_id.starts_with("signatures:"));
    }
    let compiled = filter_common::compile::compile(&rules, 0).expect("compiles");
    assert_eq!(compiled.meta.sig_rules as usize, total);
    assert_eq!(compiled.meta.sig_scan_bytes, 2048);
    assert!(compiled.signatures.patterns >= 10 && !compiled.signatures.transitions.is_empty());
}

#[test]
fn bad_signature_settings_are_refused_with_their_key() {
    for (text, want) in [
        ("[signatures]\npacks = []\n", "signatures.packs"),
        ("[signatures]\npacks = [\"x.rules\"]\nscan_bytes = 512\n", "signatures.scan_bytes"),
        ("[signatures]\npacks = [\"x.rules\"]\nhints = [\"\"]\n", "signatures.hints"),
        ("[signatures]\npacks = [\"x.rules\"]\nbogus = 1\n", "bogus"),
        ("[capacity]\nsignature_transitions = 2000000\n", "capacity.signature_transitions: at most"),
    ] {
        let err = format!("{:#}", config::parse(&config_text(text), &repo()).unwrap_err());
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn a_bad_pack_is_refused_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("ef-sigpack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pack = dir.join("bad.rules");
    std::fs::write(&pack, "# a comment\ndrop tcp any any -> any any (msg:\"x\"; content:\"a\"; pcre:\"/a/\"; sid:1;)\n").unwrap();
    let text = config_text(&format!("[signatures]\npacks = [\"{}\"]\n", pack.display()));
    let cfg = config::parse(&text, &repo()).expect("config");
    let err = load_sources(&cfg.sources).unwrap_err().to_string();
    assert!(err.contains(&format!("{}:2", pack.display())) && err.contains("pcre"), "{err}");
    // With skip_unsupported the pack loads without that rule.
    let text = config_text(&format!("[signatures]\npacks = [\"{}\"]\nskip_unsupported = true\n", pack.display()));
    let cfg = config::parse(&text, &repo()).expect("config");
    let orders = load_sources(&cfg.sources).expect("loads, skipping");
    assert!(orders[0].entries.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
