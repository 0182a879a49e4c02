//! The agent as a NOC runs it: started from agent.toml, killed with -9 and
//! restarted under traffic without a gap or a counter reset, reloaded
//! atomically between two large rule sets under traffic, a bad file
//! rejected with the old rules kept, orders expiring and activating on
//! time, every feed format enforced, detach removing everything, and the
//! audit log's hash chain intact throughout.
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use edgefilter_tests::harness::{Harness, SERVER};

fn order(id: &str, effective: chrono::DateTime<Utc>, expires: chrono::DateTime<Utc>, entries: &str) -> String {
    format!(
        "id = \"{id}\"\nauthority = \"Example Test Authority\"\nreference = \"test {id}\"\ncategory = \"legal\"\n\
         received = 2026-01-01T00:00:00Z\neffective = {}\nexpires = {}\naction = \"drop\"\n{entries}",
        effective.to_rfc3339_opts(SecondsFormat::Secs, true),
        expires.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

fn block_src(prefix: &str) -> String {
    format!("\n[[entry]]\nprefixes = [\"{prefix}\"]\ndirection = \"src\"\n")
}

fn long_ago() -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::days(1)
}

fn far_future() -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::days(365)
}

fn xdp_attached(h: &Harness) -> bool {
    let out = std::process::Command::new("ip").args(["-n", &h.ns.names[SERVER], "link", "show", &h.server_if]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

#[test]
fn kill_restart_bad_reload_detach_under_traffic() {
    let mut h = Harness::new("life", &["2001:db8:f1::1", "2001:db8:f2::1"]);
    std::fs::write(h.rules_dir().join("block.toml"), order("LIFE-1", long_ago(), far_future(), &block_src("2001:db8:f1::/48"))).unwrap();
    h.write_config("");
    h.start();
    let blocked = h.flow("2001:db8:f1::1", 7001);
    let allowed = h.flow("2001:db8:f2::1", 7002);
    std::thread::sleep(Duration::from_millis(800));
    let before = h.order_packets("LIFE-1");
    assert!(before > 100, "the order counts its drops: {before}");

    // kill -9: the pinned program keeps filtering with nobody running.
    h.kill9();
    let unattended_from = allowed.received();
    std::thread::sleep(Duration::from_millis(800));
    assert!(xdp_attached(&h), "the program must stay attached after kill -9");
    assert!(allowed.received() > unattended_from + 300, "allowed traffic keeps flowing while the agent is down");

    // Restart: adopts the pinned maps; the counter continues, never resets.
    h.start();
    std::thread::sleep(Duration::from_millis(500));
    let after = h.order_packets("LIFE-1");
    assert!(after > before + 300, "counter continued across the restart: {before} -> {after}");
    let sequence = h.status()["ruleset_sequence"].as_u64().unwrap();

    // A bad file: rejected with file:line, old rules stay, error counted.
    std::fs::write(h.rules_dir().join("bad.toml"), order("LIFE-BAD", long_ago(), far_future(), &block_src("2001:db8:f2::1/48"))).unwrap();
    h.sighup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.status()["last_error"].is_null() {
        assert!(Instant::now() < deadline, "the bad file was not rejected: {}", h.agent_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = h.status();
    let err = status["last_error"].as_str().unwrap();
    assert!(err.contains("bad.toml:") && err.contains("host bits set"), "{err}");
    assert_eq!(status["ruleset_sequence"].as_u64().unwrap(), sequence, "no new rule set was applied");
    assert!(h.fetch("/metrics").contains("edgefilter_reload_errors_total 1"), "{}", h.fetch("/metrics"));
    std::fs::remove_file(h.rules_dir().join("bad.toml")).unwrap();
    h.wait_for_sequence(sequence);

    let (sent_blocked, got_blocked) = blocked.stop();
    let (sent_allowed, got_allowed) = allowed.stop();
    assert!(sent_blocked > 1500 && sent_allowed > 1500);
    assert_eq!(got_blocked, 0, "a blocked datagram got through (kill -9, restart or reload gap)");
    assert_eq!(got_allowed, sent_allowed, "an allowed datagram was lost");

    // Detach: the program leaves the interface, the pins go.
    h.kill9();
    let out = h.cli(&["detach", "--bpffs", h.bpffs.to_str().unwrap(), "--instance", &h.instance, "--state-dir", h.state_dir().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("detached"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!xdp_attached(&h), "detach must remove the XDP program");
    assert!(!h.bpffs.join(&h.instance).exists(), "detach must remove the pins");
    let after_detach = h.flow("2001:db8:f1::1", 7003);
    std::thread::sleep(Duration::from_millis(300));
    let (_, got) = after_detach.stop();
    assert!(got > 100, "after detach nothing is filtered");

    let actions = h.audit_actions();
    for want in ["load", "attach", "adopt", "reload-rejected", "reload", "detach"] {
        assert!(actions.iter().any(|a| a == want), "audit log lacks {want}: {actions:?}");
    }
    let verify = h.cli(&["audit", "verify", "--log", h.state_dir().join("audit.jsonl").to_str().unwrap()]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}

/// A plain feed of `n` IPv6 /64s under `base` (a 2001:db8:xxxx::/48), plus
/// `extra` prefixes.
fn feed(base: u16, n: u32, extra: &[&str]) -> String {
    let mut out = String::with_capacity(n as usize * 32);
    for p in extra {
        out.push_str(p);
        out.push('\n');
    }
    for i in 0..n {
        out.push_str(&format!("2001:db8:{base:x}:{:x}::/64\n", i));
    }
    out
}

#[test]
fn reloads_between_large_sets_are_atomic_under_traffic() {
    let mut h = Harness::new("atom", &["2001:db8:f1::1", "2001:db8:f2::1"]);
    std::fs::write(h.rules_dir().join("none.toml"), order("ATOM-0", long_ago(), far_future(), &block_src("2001:db8:dead::/48"))).unwrap();
    let feed_path = h.dir.0.join("set.txt");
    // Set A and set B share only 2001:db8:f1::/48; each has 60,000 more.
    let set_a = feed(0xa, 60_000, &["2001:db8:f1::/48"]);
    let set_b = feed(0xb, 60_000, &["2001:db8:f1::/48"]);
    std::fs::write(&feed_path, &set_a).unwrap();
    h.write_config(&format!(
        "[[feed]]\nid = \"ATOM-SET\"\nformat = \"plain\"\npath = \"{}\"\ncategory = \"abuse-feed\"\nprovenance = \"test sets A/B\"\n",
        feed_path.display()
    ));
    h.start();
    let in_both = h.flow("2001:db8:f1::1", 7101);
    let in_neither = h.flow("2001:db8:f2::1", 7102);
    let mut sequence = h.status()["ruleset_sequence"].as_u64().unwrap();
    for i in 0..8 {
        let tmp = h.dir.0.join("set.txt.new");
        std::fs::write(&tmp, if i % 2 == 0 { &set_b } else { &set_a }).unwrap();
        std::fs::rename(&tmp, &feed_path).unwrap();
        h.sighup();
        sequence = h.wait_for_sequence(sequence);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (sent_both, got_both) = in_both.stop();
    let (sent_neither, got_neither) = in_neither.stop();
    assert!(sent_both > 500, "traffic flowed during the reloads ({sent_both})");
    assert_eq!(got_both, 0, "a flow in both sets was passed during a reload");
    assert_eq!(got_neither, sent_neither, "a flow in neither set was dropped during a reload");
    let status = h.status();
    assert!(status["prefix_rules"].as_u64().unwrap() >= 60_001, "{status}");
}

#[test]
fn orders_expire_and_activate_on_time_and_feeds_of_every_format_block() {
    let mut h = Harness::new("time", &["2001:db8:f1::1", "2001:db8:f2::1", "2001:db8:c1::1", "2001:db8:c2::1", "2001:db8:c3::1", "2001:db8:c4::1"]);
    let boundary = Utc::now() + chrono::Duration::seconds(5);
    std::fs::write(h.rules_dir().join("expiring.toml"), order("TIME-EXPIRES", long_ago(), boundary, &block_src("2001:db8:f1::/48"))).unwrap();
    std::fs::write(h.rules_dir().join("pending.toml"), order("TIME-PENDING", boundary, far_future(), &block_src("2001:db8:f2::/48"))).unwrap();
    let feeds = [
        ("plain", "2001:db8:c1::/48\n"),
        ("spamhaus-drop", "; Spamhaus EDROP-style test list\n2001:db8:c2::/48 ; SBL000042\n"),
        ("spamhaus-json", "{\"cidr\":\"2001:db8:c3::/48\",\"sblid\":\"SBL000043\",\"rir\":\"ripencc\"}\n{\"type\":\"metadata\",\"timestamp\":1700000000,\"size\":64,\"records\":1}\n"),
        ("netset", "#\n# test netset\n#\n2001:db8:c4::/48\n"),
    ];
    let mut feed_config = String::new();
    for (i, (format, text)) in feeds.iter().enumerate() {
        let path = h.dir.0.join(format!("feed{i}"));
        std::fs::write(&path, text).unwrap();
        feed_config += &format!(
            "[[feed]]\nid = \"FEED-{format}\"\nformat = \"{format}\"\npath = \"{}\"\ncategory = \"abuse-feed\"\nprovenance = \"test {format}\"\ndirection = \"src\"\n",
            path.display()
        );
    }
    h.write_config(&feed_config);
    h.start();

    let fed: Vec<_> = (1..=4).map(|i| h.flow(&format!("2001:db8:c{i}::1"), 7200 + i as u16)).collect();
    let expiring = h.flow("2001:db8:f1::1", 7301);
    let pending = h.flow("2001:db8:f2::1", 7302);
    // Before the boundary: the expiring order blocks, the pending one not yet.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(expiring.received(), 0, "TIME-EXPIRES blocks before it expires");
    assert!(pending.received() > 0, "TIME-PENDING does not block before it is effective");
    // Wait for the boundary, then at most a second more.
    let wait = (boundary - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(1200);
    std::thread::sleep(wait);
    let (e_before, p_before) = (expiring.received(), pending.received());
    std::thread::sleep(Duration::from_millis(500));
    assert!(expiring.received() > e_before + 100, "TIME-EXPIRES must stop blocking within a second of expires");
    assert_eq!(pending.received(), p_before, "TIME-PENDING must block within a second of effective");
    expiring.stop();
    pending.stop();
    for (i, f) in fed.into_iter().enumerate() {
        let (sent, got) = f.stop();
        assert!(sent > 1000 && got == 0, "feed {} did not block: sent {sent}, received {got}", feeds[i].0);
    }
    for (format, _) in feeds {
        assert!(h.order_packets(&format!("FEED-{format}")) > 1000, "feed {format} counted its drops");
    }
    let actions = h.audit_actions();
    assert!(actions.iter().any(|a| a.starts_with("expire") || a == "activate"), "{actions:?}");
    let metrics = h.fetch("/metrics");
    for want in [
        "edgefilter_orders{state=\"in-force\"}",
        "edgefilter_rules{category=\"abuse-feed\",kind=\"prefix\"} 4",
        "edgefilter_map_capacity{map=\"PREFIX_V6\"}",
        "edgefilter_ruleset_generation",
        "edgefilter_ruleset_last_reload_timestamp_seconds",
        "edgefilter_reload_duration_seconds_bucket",
        "edgefilter_build_info{version=",
    ] {
        assert!(metrics.contains(want), "metrics lack {want}:\n{metrics}");
    }
}
