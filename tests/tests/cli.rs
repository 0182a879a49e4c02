//! The operator commands as a NOC engineer runs them.
use std::process::Command;

fn agent() -> Command {
    Command::new(edgefilter_tests::agent_binary())
}

fn rules_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64).udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, b"payload!").unwrap();
    out
}

#[test]
fn check_accepts_the_bundled_rules_and_rejects_bad_files_with_file_and_line() {
    let ok = agent().args(["check", "--rules"]).arg(rules_dir()).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    // The shipped example configuration (with its feeds) is valid too.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
    let ok = agent().args(["check", "--config"]).arg(example).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));

    let dir = edgefilter_tests::TempDir::new("cli-check");
    std::fs::write(dir.0.join("bad.toml"), "id = \"X\"\nauthority = \"A\"\nreference = \"R\"\ncategory = \"legal\"\nreceived = 2026-01-01T00:00:00Z\neffective = 2026-01-01T00:00:00Z\nexpires = 2027-01-01T00:00:00Z\naction = \"drop\"\n[[entry]]\nprefixes = [\"203.0.113.300/24\"]\n").unwrap();
    let bad = agent().args(["check", "--rules"]).arg(&dir.0).output().unwrap();
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("bad.toml:10: `203.0.113.300/24` is not an IP address or CIDR prefix"), "{out}");
}

#[test]
fn run_refuses_invalid_rules_before_touching_the_kernel() {
    let dir = edgefilter_tests::TempDir::new("cli-run");
    std::fs::write(dir.0.join("bad.toml"), "id = \"X\"\n").unwrap();
    let state = edgefilter_tests::TempDir::new("cli-run-state");
    let out = agent().args(["run", "-i", "lo", "--rules"]).arg(&dir.0).arg("--state-dir").arg(&state.0).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.toml:1: missing field `authority`"), "{err}");
    let link = Command::new("ip").args(["link", "show", "lo"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&link.stdout).contains("xdp"), "nothing may be attached");
    // The refusal itself is on record.
    let audit = std::fs::read_to_string(state.0.join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"action\":\"start-rejected\"") && audit.contains("bad.toml:1"), "{audit}");
}

#[test]
fn classify_explains_verdicts_with_provenance() {
    let blocked = hex::encode(udp_frame([203, 0, 113, 200], [198, 18, 0, 1], 1000, 53));
    let memcached = hex::encode(udp_frame([192, 0, 2, 1], [198, 18, 0, 1], 11211, 40000));
    let clean = hex::encode(udp_frame([192, 0, 2, 1], [198, 18, 0, 1], 5000, 53));
    let out = agent()
        .args(["classify", "--rules"])
        .arg(rules_dir())
        .args(["--packet", &blocked, "--packet", &memcached, "--packet", &clean])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("#1 DROP reason=prefix") && lines[0].contains("order=EXAMPLE-REG-2026-0117") && lines[0].contains("legal-example-2026-0117.toml:"), "{text}");
    assert!(lines[1].starts_with("#2 DROP reason=l4") && lines[1].contains("order=NOC-ATTACK-2026-0042"), "{text}");
    assert!(lines[2].starts_with("#3 PASS reason=pass"), "{text}");
}

#[test]
fn classify_explains_domain_verdicts() {
    use edgefilter_tests::l7gen::{self, ClientHello, Flow, Transport};
    let query = |name: &str| hex::encode(l7gen::dns_frame(&Flow::v4(53), Transport::Udp, &l7gen::dns_query(7, name, 1)));
    let hello = hex::encode(&l7gen::tls_frames(&Flow::v6(443), &[ClientHello::new("www.casino.example.net").record(1)])[0]);
    let packets = [query("BET.example.com"), query("a.mirrors.example.org"), query("mirrors.example.org"), hello];
    let mut cmd = agent();
    cmd.args(["classify", "--rules"]).arg(rules_dir());
    for p in &packets {
        cmd.args(["--packet", p]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("#1 ANSWER reason=domain") && lines[0].contains("order=EXAMPLE-REG-2026-0201") && lines[0].contains("legal-example-domains-2026-0201.toml:"), "{text}");
    assert!(lines[1].starts_with("#2 ANSWER reason=domain") && lines[1].contains("order=EXAMPLE-REG-2026-0201"), "{text}");
    assert!(lines[2].starts_with("#3 PASS reason=pass"), "`*.` does not include the parent: {text}");
    assert!(lines[3].starts_with("#4 DROP reason=domain") && lines[3].contains("order=EXAMPLE-REG-2026-0201"), "{text}");
}

#[test]
fn signature_packs_are_checked_with_file_and_line() {
    let packs: Vec<std::path::PathBuf> =
        ["spring4shell.rules", "log4shell.rules", "amplification.rules"].iter().map(|f| rules_dir().join("signatures").join(f)).collect();
    let out = agent().args(["signatures", "check"]).args(&packs).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the bundled packs check: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.contains(" rules (") && l.ends_with("0 skipped as unsupported")).count(), 3, "{text}");

    let dir = edgefilter_tests::TempDir::new("cli-sigs");
    let pack = dir.0.join("mixed.rules");
    std::fs::write(
        &pack,
        "# one good rule, one with a keyword this engine lacks\n\
         drop http any any -> any any (msg:\"jndi\"; content:\"${jndi:\"; nocase; sid:9100001;)\n\
         alert tcp any any -> any any (msg:\"pcre\"; content:\"x\"; pcre:\"/x+/\"; sid:9100002;)\n",
    )
    .unwrap();
    let out = agent().args(["signatures", "check"]).arg(&pack).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unsupported keyword refuses the pack");
    assert!(err.contains("mixed.rules:3:") && err.contains("unsupported keyword pcre"), "{err}");
    let out = agent().args(["signatures", "check", "--skip-unsupported"]).arg(&pack).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 rules (1 drop, 0 alert, 0 with a temporary ban), 1 skipped as unsupported") && text.contains("mixed.rules:3:"), "{text}");
}

#[test]
fn classify_reads_pcap_files() {
    let dir = edgefilter_tests::TempDir::new("cli-pcap");
    let path = dir.0.join("capture.pcap");
    {
        let file = std::fs::File::create(&path).unwrap();
        let mut w = pcap_file::pcap::PcapWriter::new(file).unwrap();
        for frame in [udp_frame([203, 0, 113, 200], [198, 18, 0, 1], 1, 2), udp_frame([198, 18, 0, 2], [198, 18, 0, 1], 1, 2)] {
            let pkt = pcap_file::pcap::PcapPacket::new(std::time::Duration::ZERO, frame.len() as u32, &frame);
            w.write_packet(&pkt).unwrap();
        }
    }
    let out = agent().args(["classify", "--rules"]).arg(rules_dir()).arg("--pcap").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("#1 DROP reason=prefix") && text.contains("#2 PASS"), "{text}");
}

#[test]
fn classify_and_rules_list_follow_the_agent_config() {
    let dir = edgefilter_tests::TempDir::new("cli-config");
    let feed = dir.0.join("drop.txt");
    std::fs::write(&feed, "; test list\n203.0.113.0/25 ; SBL000007\n").unwrap();
    std::fs::write(
        dir.0.join("agent.toml"),
        format!(
            "interfaces = [\"eth0\"]\nrules = [\"{}\"]\nstate_dir = \"{}\"\nallow = [\"203.0.113.10/32\"]\n\
             [[feed]]\nid = \"DROP-LIST\"\nformat = \"spamhaus-drop\"\npath = \"drop.txt\"\ncategory = \"abuse-feed\"\nprovenance = \"test list\"\n",
            rules_dir().join("orders").display(),
            dir.0.join("state").display()
        ),
    )
    .unwrap();
    let config = dir.0.join("agent.toml");
    let blocked = hex::encode(udp_frame([203, 0, 113, 20], [198, 18, 0, 1], 1, 2));
    let allowed = hex::encode(udp_frame([203, 0, 113, 10], [198, 18, 0, 1], 1, 2));
    let out = agent().arg("classify").arg("--config").arg(&config).args(["--packet", &blocked, "--packet", &allowed]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("#1 DROP reason=prefix") && text.contains("order=DROP-LIST") && text.contains("category=abuse-feed"), "{text}");
    assert!(text.contains("#2 PASS reason=allowlist"), "the config's allowlist applies: {text}");

    let out = agent().args(["rules", "list", "--config"]).arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.lines().any(|l| l.starts_with("DROP-LIST") && l.contains("in-force")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("EXAMPLE-REG-2025-0003") && l.contains("expired")), "{text}");

    // A config with an unknown key is refused with the key path.
    std::fs::write(dir.0.join("bad.toml"), "interfaces = [\"eth0\"]\n[capacity]\nprefixes_v5 = 1\n").unwrap();
    let out = agent().args(["check", "--config"]).arg(dir.0.join("bad.toml")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("capacity") && text.contains("prefixes_v5"), "{text}");
}
