//! End to end: the real agent binary attached to a veth in a namespace,
//! real traffic from a second namespace, verdicts observed on the wire and
//! in the agent's counters.
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgefilter_tests::netns::Namespaces;

const ORDERS: &str = r#"
id = "E2E-LEGAL-1"
authority = "Example Test Authority"
reference = "e2e test order"
category = "legal"
received = 2026-01-01T00:00:00Z
effective = 2026-01-01T00:00:00Z
expires = 2099-01-01T00:00:00Z
action = "drop"

[[entry]]
comment = "blocked source prefix (documentation range)"
prefixes = ["2001:db8:bad::/48"]
direction = "src"

[[entry]]
protocol = "udp"
destination_ports = [9999]

[[entry]]
protocol = "icmp"
icmp_type = 8
"#;

const DRY_RUN: &str = r#"
id = "E2E-TRIAL-1"
authority = "Example ISP NOC"
reference = "e2e dry run"
category = "operator"
received = 2026-01-01T00:00:00Z
effective = 2026-01-01T00:00:00Z
expires = 2099-01-01T00:00:00Z
action = "dry-run"

[[entry]]
protocol = "udp"
destination_ports = [9998]
"#;

/// Sends `count` datagrams from `src` (in namespace 0) to `dst` and counts
/// how many the socket in namespace 1 received.
fn udp_delivered(ns: &Namespaces, src: SocketAddr, dst: SocketAddr, count: usize) -> usize {
    let receiver = ns.within(1, move || UdpSocket::bind(dst).expect("bind receiver"));
    receiver.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let sender = ns.within(0, move || UdpSocket::bind(src).expect("bind sender"));
    for i in 0..count {
        sender.send_to(format!("edgefilter e2e {i}").as_bytes(), dst).unwrap();
    }
    let mut got = 0;
    let mut buf = [0u8; 64];
    while receiver.recv_from(&mut buf).is_ok() {
        got += 1;
    }
    got
}

fn ping(ns: &Namespaces, args: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &ns.names[0], "sh", "-c", &format!("ping -q -c 2 -i 0.2 -W 1 {args}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn agent_blocks_and_passes_real_traffic_between_namespaces() {
    let mut ns = Namespaces::new("efe2e", 2);
    let (a, b) = (ns.names[0].clone(), ns.names[1].clone());
    edgefilter_tests::netns::sh(&format!("ip link add efa{pid} netns {a} type veth peer name efb{pid} netns {b}", pid = std::process::id()));
    let (va, vb) = (format!("efa{}", std::process::id()), format!("efb{}", std::process::id()));
    ns.exec(0, &format!("ip addr add 198.18.0.1/24 dev {va}"));
    ns.exec(0, &format!("ip addr add 2001:db8:e2e::1/64 dev {va} nodad"));
    ns.exec(0, &format!("ip addr add 2001:db8:bad::1/64 dev {va} nodad"));
    ns.exec(0, &format!("ip link set {va} up"));
    ns.exec(1, &format!("ip addr add 198.18.0.2/24 dev {vb}"));
    ns.exec(1, &format!("ip addr add 2001:db8:e2e::2/64 dev {vb} nodad"));
    ns.exec(1, &format!("ip link set {vb} up"));
    ns.exec(1, &format!("ip -6 route add 2001:db8:bad::/64 dev {vb}"));

    let dir = edgefilter_tests::TempDir::new("e2e-rules");
    let state = edgefilter_tests::TempDir::new("e2e-state");
    let rules = dir.0.clone();
    std::fs::write(rules.join("legal.toml"), ORDERS).unwrap();
    std::fs::write(rules.join("trial.toml"), DRY_RUN).unwrap();

    let agent = Command::new("ip")
        .args(["netns", "exec", &b])
        .arg(edgefilter_tests::agent_binary())
        .args(["run", "-i", &vb, "--rules"])
        .arg(&rules)
        .args(["--metrics", "127.0.0.1:9960", "--state-dir"])
        .arg(&state.0)
        .spawn()
        .expect("start agent");
    ns.children.push(agent);
    let status = wait_for_status(&ns);
    assert!(status.contains("xdp mode"), "agent status: {status}");

    // Allowed: ARP (implicitly, or nothing works), UDP to another port,
    // IPv6 ping from an unlisted source (needs neighbour discovery).
    let ok = udp_delivered(&ns, "198.18.0.1:40000".parse().unwrap(), "198.18.0.2:9000".parse().unwrap(), 20);
    assert_eq!(ok, 20, "UDP to an unlisted port must pass");
    assert!(ping(&ns, "-I 2001:db8:e2e::1 2001:db8:e2e::2"), "IPv6 ping from an unlisted source must pass");

    // Blocked: UDP to 9999 (L4 rule), IPv4 echo (ICMP type rule), IPv6
    // from 2001:db8:bad::/48 (prefix rule, source direction).
    let blocked = udp_delivered(&ns, "198.18.0.1:40001".parse().unwrap(), "198.18.0.2:9999".parse().unwrap(), 20);
    assert_eq!(blocked, 0, "UDP to 9999 must be dropped");
    assert!(!ping(&ns, "198.18.0.2"), "IPv4 echo must be dropped");
    assert!(!ping(&ns, "-I 2001:db8:bad::1 2001:db8:e2e::2"), "IPv6 from 2001:db8:bad::/48 must be dropped");

    // Dry-run: delivered, and counted as would-drop against its order.
    let trial = udp_delivered(&ns, "198.18.0.1:40002".parse().unwrap(), "198.18.0.2:9998".parse().unwrap(), 15);
    assert_eq!(trial, 15, "a dry-run order must not drop");

    let json = fetch(&ns, "/status.json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let order = |id: &str| v["orders_hits"].as_array().unwrap().iter().find(|o| o["order"] == id).cloned().unwrap();
    let legal = order("E2E-LEGAL-1")["packets"].as_u64().unwrap();
    // 20 UDP + 2 echo requests + 2 IPv6 echo requests, at least.
    assert!(legal >= 24, "order E2E-LEGAL-1 counted {legal} packets: {json}");
    assert_eq!(order("E2E-TRIAL-1")["packets"].as_u64().unwrap(), 15, "{json}");
    let reason = |r: &str, action: &str| -> u64 {
        v["reasons"].as_array().unwrap().iter().filter(|x| x["reason"] == r && x["action"] == action).map(|x| x["packets"].as_u64().unwrap()).sum()
    };
    assert!(reason("l4", "drop") >= 22, "{json}");
    assert!(reason("prefix", "drop") >= 2, "{json}");
    assert!(reason("control", "pass") >= 2, "ARP/ND must be counted as control: {json}");
    assert!(reason("pass", "pass") >= 35, "{json}");

    let metrics = fetch(&ns, "/metrics");
    assert!(metrics.contains(&format!("edgefilter_packets_total{{action=\"drop\",interface=\"{vb}\",reason=\"l4\"}}")), "{metrics}");
    assert!(metrics.contains("edgefilter_rule_packets_total{category=\"operator\",order=\"E2E-TRIAL-1\"} 15"), "{metrics}");
}

fn fetch(ns: &Namespaces, path: &'static str) -> String {
    ns.within(1, move || {
        ureq::get(&format!("http://127.0.0.1:9960{path}")).call().map(|mut r| r.body_mut().read_to_string().unwrap()).unwrap_or_default()
    })
}

fn wait_for_status(ns: &Namespaces) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = fetch(ns, "/status");
        if !s.is_empty() {
            return s;
        }
        assert!(Instant::now() < deadline, "agent did not answer on /status within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
