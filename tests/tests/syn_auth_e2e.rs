//! SYN authentication end to end: a `syn_auth` order protects the
//! server's port 8080. A real client's first connection is answered by the
//! kernel with a SYN cookie; its ACK verifies it and is reset, the client
//! connects again and from then on its connections reach the server
//! directly. A SYN flood from random spoofed sources is then answered
//! entirely at the edge: the server never sees one of its SYNs (its own
//! SYN cookies are never needed) while the verified client's new
//! connections all complete.
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgefilter_tests::flood::{Endpoint, Flood, FloodSpec, Limit, Tuning};
use edgefilter_tests::harness::{metric, Harness, CLIENT, SERVER, SERVER_V6};

const ORDER: &str = "NOC-SYN-AUTH-2026-001";
const SPOOFED: &str = "2001:db8:f00d::";
const FLOOD_PPS: u64 = 20_000;

fn order() -> String {
    format!(
        r#"id = "{ORDER}"
authority = "Example ISP NOC"
reference = "SYN flood protection for the customer's web service"
category = "attack"
received = 2026-01-01T00:00:00Z
effective = 2026-01-01T00:00:00Z
expires = 2099-01-01T00:00:00Z
action = "drop"

[[entry]]
comment = "new connections to port 8080 prove their source with a SYN cookie"
protocol = "tcp"
destination = ["{SERVER_V6}"]
destination_ports = [8080]
syn_auth = true
"#
    )
}

/// One request/response on a new connection.
fn transaction(addr: SocketAddr, i: u64) -> std::io::Result<()> {
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    (&conn).write_all(format!("GET {i}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&conn).read_line(&mut reply)?;
    if reply != format!("OK {i}\n") {
        return Err(std::io::Error::other(format!("reply {reply:?}")));
    }
    Ok(())
}

/// `nstat` counter in the server's namespace (absolute value).
fn server_counter(h: &Harness, name: &str) -> u64 {
    let out = Command::new("ip").args(["netns", "exec", &h.ns.names[SERVER], "nstat", "-az", name]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok())).unwrap_or(0)
}

#[test]
fn syn_cookies_verify_real_clients_and_answer_a_spoofed_flood_at_the_edge() {
    let mut h = Harness::new("sa", &[]);
    // Answers leave by XDP_TX: the client's veth needs NAPI (see domains_e2e).
    h.ns.exec(CLIENT, &format!("xdp-filter load --mode native --policy allow {} 2>/dev/null", h.client_if));
    h.ns.exec(SERVER, &format!("ip -6 route add blackhole {SPOOFED}/64"));
    std::fs::write(h.rules_dir().join("syn-auth.toml"), order()).unwrap();
    h.write_config("syn_auth_seconds = 60\n");
    h.start();

    let addr: SocketAddr = format!("[{SERVER_V6}]:8080").parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = edgefilter_tests::harness::line_service(&h, addr, stop.clone());
    let syncookies_before = server_counter(&h, "TcpExtSyncookiesSent");

    // The first connection meets the challenge and is reset; the next ones
    // go through.
    let client = |f: Box<dyn FnOnce() -> Vec<std::io::Result<()>> + Send>| h.ns.within(CLIENT, f);
    let first = client(Box::new(move || vec![transaction(addr, 1), transaction(addr, 2), transaction(addr, 3)]));
    println!("first three transactions: {first:?}");
    assert!(first[0].is_err(), "the first connection of an unverified client is reset after its cookie ACK");
    assert!(first[1].is_ok() && first[2].is_ok(), "a verified client connects: {first:?}");
    let m = h.fetch("/metrics");
    let hits = metric(&m, &format!("edgefilter_rule_packets_total{{category=\"attack\",order=\"{ORDER}\"}}")).unwrap_or(0.0);
    assert!(hits >= 2.0, "the SYN challenged and the cookie ACK counted against the order: {hits}");
    let answered = format!("edgefilter_packets_total{{action=\"drop\",interface=\"{}\",reason=\"syn_auth\"}}", h.server_if);
    let answered0 = metric(&m, &answered).unwrap_or(0.0);
    assert!(answered0 >= 2.0, "{answered} {answered0}");
    assert_eq!(metric(&m, "edgefilter_syn_verified_sources"), Some(1.0), "the client is verified");
    let status = h.fetch("/status");
    assert!(status.contains("\nSYN authentication\n  sources verified now 1   SYNs answered with a cookie or ACKs reset "), "{status}");

    // The flood: every SYN answered at the edge, the client unaffected.
    let (src_mac, dst_mac) = (h.mac(CLIENT, &h.client_if), h.mac(SERVER, &h.server_if));
    let (net, target): (IpAddr, IpAddr) = (SPOOFED.parse().unwrap(), SERVER_V6.parse().unwrap());
    let flood = Arc::new(Flood::new(FloodSpec::syn(net, 64, target, 8080).with_macs(src_mac, dst_mac).restoring_template()).expect("flood program"));
    let at = Endpoint { netns: Some(h.ns.names[CLIENT].clone()), interface: h.client_if.clone(), cpus: Vec::new() };
    let running = flood.start(&at, Limit::UntilStopped, Tuning { chunk: 256, batch: 64, pace_pps: Some(FLOOD_PPS), ..Tuning::default() }).expect("flood");
    let started = Instant::now();
    let results = client(Box::new(move || {
        let mut r = Vec::new();
        let mut i = 10;
        while started.elapsed() < Duration::from_secs(4) {
            i += 1;
            r.push(transaction(addr, i));
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }));
    let report = running.stop().expect("flood");
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "{} of {} transactions failed during the flood: {failed:?}", failed.len(), results.len());
    assert!(results.len() >= 100, "only {} transactions in 4 s", results.len());
    let answered1 = metric(&h.fetch("/metrics"), &answered).unwrap_or(0.0);
    let answered_flood = answered1 - answered0;
    assert!(answered_flood >= report.packets as f64 * 0.9, "{answered_flood} SYNs answered at the edge of {} sent", report.packets);
    let syncookies = server_counter(&h, "TcpExtSyncookiesSent") - syncookies_before;
    assert_eq!(syncookies, 0, "the server had to send SYN cookies itself: spoofed SYNs reached it");

    stop.store(true, Ordering::Relaxed);
    let accepted = server.join().unwrap();
    println!(
        "flood: {report}; {answered_flood} SYNs answered with cookies at the edge; {} client transactions during it, none failed; the server accepted {accepted} connections in all",
        results.len()
    );
    assert!(accepted as usize <= results.len() + 3, "the server accepted {accepted} connections: spoofed ones among them");
}
