//! Attack detection end to end (issue 7, agent side): the real agent
//! protects a prefix group with a reflection policy; a UDP flood from
//! source port 123 toward the protected server triggers it. The
//! mitigation order (`auto:ntp-reflection:customers`) appears in the
//! status, the metrics and the audit log; the flood beyond the rate is
//! dropped in the kernel (reason `rate_limit`) while a TCP client keeps
//! completing its request/response transactions with the same server; and
//! after the flood stops the mitigation is withdrawn once the hold-down
//! has passed. `filter-agent top` names the victim and the source from
//! the traffic samples. Only 2001:db8::/32 addresses are used.
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use edgefilter_tests::harness::{metric, Harness, CLIENT, SERVER, SERVER_V6};
use serde_json::Value;

const CLIENT_V6: &str = "2001:db8:e2e::1";
const POLICY: &str = "ntp-reflection";
const ORDER: &str = "auto:ntp-reflection:customers";
/// Reflected packets per second that make an attack, the rate the
/// mitigation lets through, and its timings (short for the test).
const THRESHOLD: u64 = 300;
const LIMIT_PPS: u64 = 100;
const FOR_SECONDS: u64 = 2;
const HOLD_DOWN: u64 = 3;

fn config() -> String {
    format!(
        r#"
sample_every = 10

[[protect]]
name = "customers"
prefixes = ["2001:db8:e2e::/64"]

[[ddos_policy]]
name = "ntp-reflection"
prefix_group = "customers"
metric = "reflection_pps"
threshold = {THRESHOLD}
for_seconds = {FOR_SECONDS}
hold_down_seconds = {HOLD_DOWN}
[ddos_policy.mitigation]
comment = "NTP reflection: {LIMIT_PPS} pps per protected host"
protocol = "udp"
source_ports = [123]
rate_limit = {{ per = "destination", pps = {LIMIT_PPS} }}
"#
    )
}

/// UDP from the client's port 123 to the server as fast as bursts of 16
/// per millisecond allow, counted at both ends.
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    fn start(h: &Harness) -> Flood {
        let dst: SocketAddr = format!("[{SERVER_V6}]:9123").parse().unwrap();
        let src: SocketAddr = format!("[{CLIENT_V6}]:123").parse().unwrap();
        let receiver = h.ns.within(SERVER, move || UdpSocket::bind(dst).expect("bind flood receiver"));
        let sender = h.ns.within(CLIENT, move || UdpSocket::bind(src).expect("bind port 123"));
        receiver.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, n) = (stop.clone(), sent.clone());
        let tx = std::thread::spawn(move || {
            // An NTP mode 4 (server) answer's size: 48 bytes of payload.
            let payload = [0x24u8; 48];
            while !s.load(Ordering::Relaxed) {
                for _ in 0..16 {
                    if sender.send_to(&payload, dst).is_ok() {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let (s, n) = (stop.clone(), received.clone());
        let rx = std::thread::spawn(move || {
            let mut buf = [0u8; 128];
            loop {
                match receiver.recv_from(&mut buf) {
                    Ok(_) => {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) if s.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
        });
        Flood { stop, sent, received, threads: vec![tx, rx] }
    }

    fn counts(&self) -> (u64, u64) {
        (self.sent.load(Ordering::Relaxed), self.received.load(Ordering::Relaxed))
    }

    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.counts()
    }
}

/// A TCP service on the protected server and a client doing one
/// request/response transaction per new connection, every 20 ms.
struct Transactions {
    /// The client stops first and the server after it: a server closing
    /// its listener under a connection the client just opened would reset
    /// it (a failure of the test, not of the filter).
    stop_client: Arc<AtomicBool>,
    stop_server: Arc<AtomicBool>,
    /// When each transaction completed, and every failure.
    done: Arc<Mutex<Vec<Instant>>>,
    failures: Arc<Mutex<Vec<String>>>,
    client: JoinHandle<()>,
    server: JoinHandle<u64>,
}

impl Transactions {
    fn start(h: &Harness) -> Transactions {
        let addr: SocketAddr = format!("[{SERVER_V6}]:8080").parse().unwrap();
        let (stop_client, stop_server) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let server = edgefilter_tests::harness::line_service(h, addr, stop_server.clone());
        // The client's socket is made in the client namespace, each time.
        let client_ns = format!("/run/netns/{}", h.ns.names[CLIENT]);
        let (s, done, failures) = (stop_client.clone(), Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (d, f) = (done.clone(), failures.clone());
        let client = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(&client_ns).expect("open client netns");
            // SAFETY: setns on this thread only, with a valid fd.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                i += 1;
                let result = (|| -> std::io::Result<()> {
                    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
                    (&conn).write_all(format!("GET {i}\n").as_bytes())?;
                    let mut reply = String::new();
                    BufReader::new(&conn).read_line(&mut reply)?;
                    if reply != format!("OK {i}\n") {
                        return Err(std::io::Error::other(format!("reply {reply:?}")));
                    }
                    Ok(())
                })();
                match result {
                    Ok(()) => d.lock().unwrap().push(Instant::now()),
                    Err(e) => f.lock().unwrap().push(format!("transaction {i}: {e}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Transactions { stop_client, stop_server, done, failures, client, server }
    }

    /// Transactions completed between `from` and `to`.
    fn completed(&self, from: Instant, to: Instant) -> usize {
        self.done.lock().unwrap().iter().filter(|t| **t >= from && **t < to).count()
    }

    fn stop(self) -> (usize, Vec<String>) {
        self.stop_client.store(true, Ordering::Relaxed);
        let _ = self.client.join();
        self.stop_server.store(true, Ordering::Relaxed);
        let _ = self.server.join();
        let n = self.done.lock().unwrap().len();
        (n, self.failures.lock().unwrap().clone())
    }
}

fn audit(h: &Harness) -> Vec<Value> {
    std::fs::read_to_string(h.state_dir().join("audit.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_reflection_flood_is_detected_mitigated_and_released() {
    let mut h = Harness::new("ddos", &[]);
    h.write_config(&config());
    h.start();
    let tcp = Transactions::start(&h);
    std::thread::sleep(Duration::from_secs(2));

    // Quiet: the policy's gauge is exported at 0, nothing mitigated.
    let m = h.fetch("/metrics");
    assert_eq!(metric(&m, "edgefilter_attack_active{policy=\"ntp-reflection\",prefix_group=\"customers\"}"), Some(0.0), "{m}");
    assert_eq!(metric(&m, "edgefilter_mitigations_total{policy=\"ntp-reflection\"}"), Some(0.0));
    assert!(metric(&m, "edgefilter_protected_packets_total{prefix_group=\"customers\",protocol=\"tcp\"}").unwrap() > 0.0, "{m}");
    assert!(!h.status()["orders"].as_array().unwrap().iter().any(|o| o["order"] == ORDER));

    // The flood: detected after for_seconds above the threshold.
    let flood = Flood::start(&h);
    let flood_started = Instant::now();
    let detected = h.wait_mitigation(POLICY, true, Duration::from_secs(FOR_SECONDS + 8));
    let latency = detected - flood_started;
    assert!(latency >= Duration::from_millis(FOR_SECONDS * 1000 - 900), "started after {latency:?}, before {FOR_SECONDS} s above the threshold");
    let status = h.status();
    let mit = h.mitigation(POLICY);
    assert_eq!(mit["order"], ORDER);
    assert!(mit["value"].as_f64().unwrap() > THRESHOLD as f64, "{mit}");
    assert!(status["orders"].as_array().unwrap().iter().any(|o| o["order"] == ORDER && o["state"] == "in-force" && o["category"] == "attack"), "{status}");
    let rate = status["protected"][0]["rates"]["reflection_pps"].as_f64().unwrap();
    assert!(rate > THRESHOLD as f64, "reflection rate {rate}");
    let start = audit(&h).into_iter().find(|r| r["action"] == "mitigation-start").expect("mitigation-start audited");
    let d = &start["details"];
    assert_eq!((d["policy"].as_str(), d["prefix_group"].as_str(), d["metric"].as_str()), (Some("ntp-reflection"), Some("customers"), Some("reflection_pps")));
    assert_eq!(d["threshold"].as_f64(), Some(THRESHOLD as f64));
    assert!(d["value"].as_f64().unwrap() > THRESHOLD as f64, "{start}");
    assert_eq!(d["in_force_added"], serde_json::json!([ORDER]), "{start}");
    assert_eq!(start["actor"], "agent");

    // Mitigating: the flood beyond the limit is dropped, TCP goes on.
    std::thread::sleep(Duration::from_millis(500));
    let (sent0, got0) = flood.counts();
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let (sent1, got1) = flood.counts();
    let w1 = Instant::now();
    let secs = (w1 - w0).as_secs_f64();
    let (sent, got) = (sent1 - sent0, got1 - got0);
    println!("during the mitigation: {sent} flood packets sent in {secs:.1} s ({:.0}/s), {got} delivered", sent as f64 / secs);
    assert!(sent as f64 / secs > 3.0 * THRESHOLD as f64, "the flood is too slow to mean anything: {sent} in {secs} s");
    assert!(got > 0, "the rate limit lets {LIMIT_PPS} pps through, not nothing");
    assert!((got as f64) < LIMIT_PPS as f64 * (secs + 1.0) + 100.0, "{got} delivered in {secs:.1} s, limit {LIMIT_PPS} pps");
    let completed = tcp.completed(w0, w1);
    assert!(completed as f64 >= secs * 15.0, "only {completed} TCP transactions in {secs:.1} s during the flood");

    let m = h.fetch("/metrics");
    assert_eq!(metric(&m, "edgefilter_attack_active{policy=\"ntp-reflection\",prefix_group=\"customers\"}"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "edgefilter_mitigations_total{policy=\"ntp-reflection\"}"), Some(1.0));
    let order_drops = metric(&m, &format!("edgefilter_rule_packets_total{{category=\"attack\",order=\"{ORDER}\"}}")).unwrap_or(0.0);
    assert!(order_drops > (sent / 2) as f64, "the order counted {order_drops} of {sent}:\n{m}");
    let rl = format!("edgefilter_packets_total{{action=\"drop\",interface=\"{}\",reason=\"rate_limit\"}}", h.server_if);
    assert!(metric(&m, &rl).unwrap_or(0.0) > (sent / 2) as f64, "{rl}:\n{m}");
    assert!(metric(&m, "edgefilter_reflection_packets_total{port=\"123\",prefix_group=\"customers\"}").unwrap() > sent as f64);
    assert!(metric(&m, "edgefilter_protected_packets_total{prefix_group=\"customers\",protocol=\"udp\"}").unwrap() > sent as f64);
    assert!(!m.contains("2001:db8"), "no address in any label:\n{m}");
    let text = h.fetch("/status");
    assert!(text.contains("\nProtected prefixes (") && text.contains("MITIGATING since") && text.contains(ORDER), "{text}");

    // `filter-agent top`: the victim and the source, from samples.
    let top = Command::new("ip").args(["netns", "exec", &h.ns.names[SERVER]]).arg(edgefilter_tests::agent_binary()).args(["top", "-n", "3"]).output().unwrap();
    let out = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{out}{}", String::from_utf8_lossy(&top.stderr));
    println!("{out}");
    let dst = out.split("TOP SOURCES").next().unwrap();
    let first = dst.lines().find(|l| l.trim_start().starts_with("1 ")).unwrap_or_else(|| panic!("no first destination:\n{out}"));
    assert!(first.contains(SERVER_V6) && first.contains("udp from port 123") && first.contains("customers"), "{out}");
    let src = out.split("TOP SOURCES").nth(1).unwrap();
    assert!(src.lines().any(|l| l.trim_start().starts_with("1 ") && l.contains(CLIENT_V6)), "{out}");
    let report: Value = serde_json::from_str(&h.fetch("/top.json?by=bps&n=1")).unwrap();
    let est = report["destinations"][0]["pps"].as_f64().unwrap();
    let real = sent as f64 / secs;
    assert!(est > real * 0.5 && est < real * 2.0, "estimated {est} pps, sent {real} pps: {report}");
    assert_eq!(report["sample_every"], 10);

    // The flood stops: the mitigation goes after the hold-down.
    let (total_sent, _) = flood.stop();
    let stopped = Instant::now();
    let released = h.wait_mitigation(POLICY, false, Duration::from_secs(HOLD_DOWN + 10));
    let after = released - stopped;
    assert!(after >= Duration::from_millis(HOLD_DOWN * 1000 - 1000), "withdrawn {after:?} after the flood, hold-down {HOLD_DOWN} s");
    let status = h.status();
    assert!(!status["orders"].as_array().unwrap().iter().any(|o| o["order"] == ORDER), "{status}");
    let stop = audit(&h).into_iter().find(|r| r["action"] == "mitigation-stop").expect("mitigation-stop audited");
    let d = &stop["details"];
    assert_eq!((d["policy"].as_str(), d["prefix_group"].as_str(), d["metric"].as_str()), (Some("ntp-reflection"), Some("customers"), Some("reflection_pps")));
    assert!(d["value"].as_f64().unwrap() <= THRESHOLD as f64 && d["peak"].as_f64().unwrap() > THRESHOLD as f64, "{stop}");
    assert_eq!(d["in_force_removed"], serde_json::json!([ORDER]), "{stop}");
    let m = h.fetch("/metrics");
    assert_eq!(metric(&m, "edgefilter_attack_active{policy=\"ntp-reflection\",prefix_group=\"customers\"}"), Some(0.0), "{m}");
    assert_eq!(metric(&m, "edgefilter_mitigations_total{policy=\"ntp-reflection\"}"), Some(1.0));
    assert!(h.agent_log().contains(&format!("mitigation {ORDER} withdrawn")), "{}", h.agent_log());

    // Datagrams from port 123 pass freely again.
    let flow_after = {
        let dst: SocketAddr = format!("[{SERVER_V6}]:9124").parse().unwrap();
        let src: SocketAddr = format!("[{CLIENT_V6}]:123").parse().unwrap();
        let receiver = h.ns.within(SERVER, move || UdpSocket::bind(dst).unwrap());
        receiver.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let sender = h.ns.within(CLIENT, move || UdpSocket::bind(src).unwrap());
        for _ in 0..150 {
            sender.send_to(b"ntp", dst).unwrap();
        }
        let mut buf = [0u8; 16];
        let mut n = 0;
        while receiver.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    };
    assert_eq!(flow_after, 150, "port 123 traffic after the mitigation");

    let (transactions, failures) = tcp.stop();
    assert!(failures.is_empty(), "{} TCP transactions failed (of {}): {:?}", failures.len(), transactions + failures.len(), &failures[..failures.len().min(5)]);
    println!("{total_sent} flood packets; {transactions} TCP transactions, none failed; detected after {latency:?}, withdrawn {after:?} after the flood");
    let verify = h.cli(&["audit", "verify", "--log", h.state_dir().join("audit.jsonl").to_str().unwrap()]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}
