//! Spoofed floods end to end (issue 7): the project's flood generator
//! (BPF_PROG_TEST_RUN live frames out of the client's veth) sends, one
//! after the other, a UDP reflection flood, a TCP SYN flood and a UDP
//! fragment flood at the protected server, every packet from a new random
//! source in 2001:db8:f00d::/64. The real agent detects each one through
//! its own policy (`reflection_pps`, `syn_pps`, `fragment_pps`), installs
//! the per-destination rate limit, and withdraws it once the flood has
//! stopped and the hold-down passed; meanwhile a client keeps doing
//! request/response transactions over its TCP connection to the server.
//!
//! What a spoofed flood does to per-source state is tested on the way: a
//! static per-source SYN limit is in force throughout, and since no
//! source sends twice, every spoofed SYN finds a fresh bucket and passes
//! it (the LRU evicts old buckets, nothing fails); only the
//! per-destination limit holds the flood back.
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use edgefilter_tests::flood::{Endpoint, Flood, FloodSpec, Limit, Running, Tuning};
use edgefilter_tests::harness::{metric, Harness, CLIENT, SERVER, SERVER_V6};

/// The spoofed sources: a /64 the client does not use.
const SPOOFED: &str = "2001:db8:f00d::";
/// Attack thresholds (packets/s), the rate a mitigation lets through,
/// the generator's rate and the policies' timings.
const THRESHOLD: u64 = 2_000;
const LIMIT_PPS: u64 = 200;
const FLOOD_PPS: u64 = 20_000;
const FOR_SECONDS: u64 = 1;
const HOLD_DOWN: u64 = 2;
/// The static per-source SYN limit's order.
const PER_SOURCE_ORDER: &str = "NOC-SYN-PER-SOURCE-2026-001";

fn config() -> String {
    let policy = |name: &str, metric: &str, mitigation: &str| {
        format!(
            "[[ddos_policy]]\nname = \"{name}\"\nprefix_group = \"customers\"\nmetric = \"{metric}\"\nthreshold = {THRESHOLD}\n\
             for_seconds = {FOR_SECONDS}\nhold_down_seconds = {HOLD_DOWN}\n[ddos_policy.mitigation]\n{mitigation}\
             rate_limit = {{ per = \"destination\", pps = {LIMIT_PPS} }}\n\n"
        )
    };
    format!(
        "sample_every = 100\n\n[capacity]\nrate_limit_buckets = 4096\n\n[[protect]]\nname = \"customers\"\nprefixes = [\"2001:db8:e2e::/64\"]\n\n{}{}{}",
        policy("reflection", "reflection_pps", "comment = \"UDP reflection\"\nprotocol = \"udp\"\nsource_ports = [19, 53, 123, 161, 389, 1900, 3702, 11211]\n"),
        policy("syn-flood", "syn_pps", "comment = \"SYN flood\"\nprotocol = \"tcp\"\ntcp_flags = \"syn,!ack\"\n"),
        policy("fragments", "fragment_pps", "comment = \"fragment flood\"\nprotocol = \"udp\"\nfragments = true\n"),
    )
}

fn per_source_order() -> String {
    format!(
        r#"id = "{PER_SOURCE_ORDER}"
authority = "Example ISP NOC"
reference = "SYN flood protection for customers"
category = "attack"
received = 2026-01-01T00:00:00Z
effective = 2026-01-01T00:00:00Z
expires = 2099-01-01T00:00:00Z
action = "drop"

[[entry]]
comment = "at most 50 SYN/s from one source address (not aggregated)"
protocol = "tcp"
tcp_flags = "syn,!ack"
destination = ["2001:db8:e2e::/64"]
rate_limit = {{ per = "source", source_prefix_v6 = 128, pps = 50, burst_packets = 50 }}
"#
    )
}

/// A TCP service on the server and a client doing a request/response
/// transaction on one connection every 10 ms (reconnecting after a
/// failure, which is recorded).
struct Transactions {
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<Instant>>>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Transactions {
    fn start(h: &Harness) -> Transactions {
        let addr: SocketAddr = format!("[{SERVER_V6}]:8080").parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = edgefilter_tests::harness::line_service(h, addr, stop.clone());
        let server = std::thread::spawn(move || {
            let _ = server.join();
        });
        let client_ns = format!("/run/netns/{}", h.ns.names[CLIENT]);
        let (s, done, failures) = (stop.clone(), Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (d, f) = (done.clone(), failures.clone());
        let client = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(&client_ns).expect("open client netns");
            // SAFETY: setns on this thread only, with a valid fd.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                i += 1;
                let result = (|| -> std::io::Result<()> {
                    if conn.is_none() {
                        let c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                        c.set_read_timeout(Some(Duration::from_secs(2)))?;
                        conn = Some((c.try_clone()?, BufReader::new(c)));
                    }
                    let (c, reader) = conn.as_mut().unwrap();
                    c.write_all(format!("GET {i}\n").as_bytes())?;
                    let mut reply = String::new();
                    reader.read_line(&mut reply)?;
                    if reply != format!("OK {i}\n") {
                        return Err(std::io::Error::other(format!("reply {reply:?}")));
                    }
                    Ok(())
                })();
                match result {
                    Ok(()) => d.lock().unwrap().push(Instant::now()),
                    Err(e) => {
                        conn = None;
                        f.lock().unwrap().push(format!("transaction {i}: {e}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Transactions { stop, done, failures, threads: vec![server, client] }
    }

    fn completed(&self, from: Instant, to: Instant) -> usize {
        self.done.lock().unwrap().iter().filter(|t| **t >= from && **t < to).count()
    }

    fn stop(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let n = self.done.lock().unwrap().len();
        (n, self.failures.lock().unwrap().clone())
    }
}

/// Counters of the server interface the floods are judged by.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// Packets toward the protected group of the flood's protocol.
    protected: f64,
    /// Dropped by a rate limit.
    rate_limited: f64,
    /// Counted against the per-source order.
    per_source: f64,
}

fn seen(h: &Harness, protocol: &str) -> Seen {
    let m = h.fetch("/metrics");
    let rl = format!("edgefilter_packets_total{{action=\"drop\",interface=\"{}\",reason=\"rate_limit\"}}", h.server_if);
    Seen {
        protected: metric(&m, &format!("edgefilter_protected_packets_total{{prefix_group=\"customers\",protocol=\"{protocol}\"}}")).unwrap_or(0.0),
        rate_limited: metric(&m, &rl).unwrap_or(0.0),
        per_source: metric(&m, &format!("edgefilter_rule_packets_total{{category=\"attack\",order=\"{PER_SOURCE_ORDER}\"}}")).unwrap_or(0.0),
    }
}

struct Phase {
    policy: &'static str,
    protocol: &'static str,
    metric: &'static str,
    spec: FloodSpec,
}

/// One flood: detected, limited to the mitigation's rate while the
/// client's transactions go on, withdrawn after it stops. Returns a line
/// for the test's report.
fn flood_phase(h: &Harness, tcp: &Transactions, phase: Phase) -> String {
    let order = format!("auto:{}:customers", phase.policy);
    let flood = Arc::new(Flood::new(phase.spec).expect("flood program"));
    let at = Endpoint { netns: Some(h.ns.names[CLIENT].clone()), interface: h.client_if.clone(), cpus: Vec::new() };
    let tuning = Tuning { chunk: 256, batch: 64, pace_pps: Some(FLOOD_PPS), ..Tuning::default() };
    let running: Running = flood.start(&at, Limit::UntilStopped, tuning).expect("start flood");
    let started = Instant::now();
    let detected = h.wait_mitigation(phase.policy, true, Duration::from_secs(FOR_SECONDS + 8));
    let mit = h.mitigation(phase.policy);
    assert_eq!(mit["order"], order.as_str(), "{mit}");
    assert!(mit["value"].as_f64().unwrap() > THRESHOLD as f64, "{mit}");
    assert_eq!(mit["metric"], phase.metric, "{mit}");

    // Mitigating: what passes is the limit's worth, the client goes on.
    std::thread::sleep(Duration::from_millis(500));
    let (sent0, seen0, w0) = (running.sent(), seen(h, phase.protocol), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let (sent1, seen1, w1) = (running.sent(), seen(h, phase.protocol), Instant::now());
    let secs = (w1 - w0).as_secs_f64();
    let sent = (sent1 - sent0) as f64;
    let arrived = seen1.protected - seen0.protected;
    let limited = seen1.rate_limited - seen0.rate_limited;
    let passed = arrived - limited;
    assert!(sent / secs > 5.0 * THRESHOLD as f64, "{}: the flood is too slow to mean anything: {sent} frames in {secs:.1} s", phase.policy);
    assert!(arrived > sent * 0.9, "{}: {arrived} packets reached the filter of {sent} sent", phase.policy);
    // The client's own packets (a few hundred per second at most) pass too.
    let allowed = LIMIT_PPS as f64 * (secs + 1.0) + 300.0 * secs;
    assert!(passed < allowed, "{}: {passed} packets passed in {secs:.1} s, limit {LIMIT_PPS} pps", phase.policy);
    assert!(passed > LIMIT_PPS as f64 * secs * 0.5, "{}: the limit lets {LIMIT_PPS} pps through, {passed} passed in {secs:.1} s", phase.policy);
    let completed = tcp.completed(w0, w1);
    assert!(completed as f64 >= secs * 30.0, "{}: only {completed} TCP transactions in {secs:.1} s during the flood", phase.policy);
    let per_source = seen1.per_source - seen0.per_source;
    if phase.protocol == "tcp" {
        // Every SYN from a new source: the per-source limit never bites.
        assert_eq!(per_source, 0.0, "spoofed SYNs counted against the per-source limit: every source sends once");
    }

    let m = h.fetch("/metrics");
    assert_eq!(metric(&m, &format!("edgefilter_attack_active{{policy=\"{}\",prefix_group=\"customers\"}}", phase.policy)), Some(1.0), "{m}");
    let order_hits = metric(&m, &format!("edgefilter_rule_packets_total{{category=\"attack\",order=\"{order}\"}}")).unwrap_or(0.0);
    assert!(order_hits > limited * 0.9, "{}: the mitigation order counted {order_hits}, rate limit drops {limited}", phase.policy);
    assert!(!m.contains("2001:db8"), "no address in any label");

    // Stopped: withdrawn after the hold-down.
    let report = running.stop().expect("flood");
    let stopped = Instant::now();
    let released = h.wait_mitigation(phase.policy, false, Duration::from_secs(HOLD_DOWN + 10));
    assert!(!h.status()["orders"].as_array().unwrap().iter().any(|o| o["order"] == order.as_str()), "{order} still in force");
    format!(
        "{}: {report}; detected after {:.1} s; {:.0} of {:.0} packets/s passed during the mitigation; {completed} TCP transactions meanwhile; withdrawn {:.1} s after the flood",
        phase.policy,
        (detected - started).as_secs_f64(),
        passed / secs,
        arrived / secs,
        (released - stopped).as_secs_f64()
    )
}

#[test]
fn spoofed_floods_are_detected_mitigated_and_released_while_a_client_keeps_working() {
    let mut h = Harness::new("fl", &[]);
    std::fs::write(h.rules_dir().join("syn-per-source.toml"), per_source_order()).unwrap();
    h.write_config(&config());
    // Replies to the spoofed sources go nowhere (no neighbour discovery
    // for a million addresses).
    h.ns.exec(SERVER, &format!("ip -6 route add blackhole {SPOOFED}/64"));
    h.start();
    let tcp = Transactions::start(&h);
    std::thread::sleep(Duration::from_secs(1));

    let (src_mac, dst_mac) = (h.mac(CLIENT, &h.client_if), h.mac(SERVER, &h.server_if));
    let (net, target): (IpAddr, IpAddr) = (SPOOFED.parse().unwrap(), SERVER_V6.parse().unwrap());
    let phases = [
        Phase { policy: "reflection", protocol: "udp", metric: "reflection_pps", spec: FloodSpec::udp_reflection(net, 64, target).with_payload(48) },
        Phase { policy: "syn-flood", protocol: "tcp", metric: "syn_pps", spec: FloodSpec::syn(net, 64, target, 8080) },
        Phase { policy: "fragments", protocol: "udp", metric: "fragment_pps", spec: FloodSpec::fragments(net, 64, target, false) },
    ];
    let mut lines = Vec::new();
    for mut phase in phases {
        phase.spec = phase.spec.with_macs(src_mac, dst_mac);
        lines.push(flood_phase(&h, &tcp, phase));
    }

    let audit = h.audit_actions();
    assert_eq!(audit.iter().filter(|a| *a == "mitigation-start").count(), 3, "{audit:?}");
    assert_eq!(audit.iter().filter(|a| *a == "mitigation-stop").count(), 3, "{audit:?}");
    let m = h.fetch("/metrics");
    for policy in ["reflection", "syn-flood", "fragments"] {
        assert_eq!(metric(&m, &format!("edgefilter_mitigations_total{{policy=\"{policy}\"}}")), Some(1.0), "{policy}: {m}");
    }
    let (transactions, failures) = tcp.stop();
    assert!(failures.is_empty(), "{} TCP transactions failed (of {}): {:?}", failures.len(), transactions + failures.len(), &failures[..failures.len().min(5)]);
    for l in &lines {
        println!("{l}");
    }
    println!("{transactions} TCP transactions, none failed");
}
