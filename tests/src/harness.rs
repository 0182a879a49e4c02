//! A protected host for agent tests: two namespaces joined by a veth pair
//! (a "client" and the "server" whose ingress the agent filters), a private
//! bpffs mounted in the root mount namespace (so pins survive agent
//! restarts, as on a router), scratch directories, and the real agent
//! binary started from an `agent.toml`. Everything is removed on drop,
//! also when the test fails: agent killed, `filter-agent detach`, bpffs
//! unmounted, namespaces deleted.
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netns::{sh, Namespaces};
use crate::TempDir;

pub const CLIENT: usize = 0;
pub const SERVER: usize = 1;
/// The server's address the client sends to.
pub const SERVER_V6: &str = "2001:db8:e2e::2";

pub struct Harness {
    pub ns: Namespaces,
    pub client_if: String,
    pub server_if: String,
    pub dir: TempDir,
    pub bpffs: PathBuf,
    pub instance: String,
    pub agent: Option<Child>,
}

impl Harness {
    /// `client_sources`: extra IPv6 addresses the client can send from.
    pub fn new(tag: &str, client_sources: &[&str]) -> Harness {
        let pid = std::process::id();
        let ns = Namespaces::new(&format!("ef{tag}"), 2);
        let dir = TempDir::new(tag);
        let bpffs = dir.0.join("bpffs");
        std::fs::create_dir_all(&bpffs).unwrap();
        sh(&format!("mount -t bpf bpf {}", bpffs.display()));
        let h = Harness {
            client_if: format!("{tag}c{pid}").chars().take(15).collect(),
            server_if: format!("{tag}s{pid}").chars().take(15).collect(),
            ns,
            dir,
            bpffs,
            instance: format!("ef{tag}{pid}"),
            agent: None,
        };
        let (a, b) = (h.ns.names[CLIENT].clone(), h.ns.names[SERVER].clone());
        sh(&format!("ip link add {} netns {a} type veth peer name {} netns {b}", h.client_if, h.server_if));
        h.ns.exec(CLIENT, &format!("ip link set {} up", h.client_if));
        h.ns.exec(CLIENT, &format!("ip addr add 2001:db8:e2e::1/64 dev {} nodad", h.client_if));
        for src in client_sources {
            h.ns.exec(CLIENT, &format!("ip addr add {src}/128 dev {} nodad", h.client_if));
        }
        h.ns.exec(SERVER, &format!("ip link set {} up", h.server_if));
        h.ns.exec(SERVER, &format!("ip addr add {SERVER_V6}/64 dev {} nodad", h.server_if));
        h.ns.exec(SERVER, &format!("ip -6 route add 2001:db8::/32 dev {}", h.server_if));
        std::fs::create_dir_all(h.rules_dir()).unwrap();
        h
    }

    pub fn rules_dir(&self) -> PathBuf {
        self.dir.0.join("rules")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.0.join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.0.join("agent.toml")
    }

    /// Writes `agent.toml`; `extra` is appended (feeds, capacity, ...).
    pub fn write_config(&self, extra: &str) {
        let text = format!(
            "instance = \"{}\"\ninterfaces = [\"{}\"]\nrules = [\"{}\"]\nstate_dir = \"{}\"\nbpffs = \"{}\"\nmetrics = \"127.0.0.1:9960\"\n{extra}\n",
            self.instance,
            self.server_if,
            self.rules_dir().display(),
            self.state_dir().display(),
            self.bpffs.display()
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Starts the agent and waits until it answers on /status.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.0.join("agent.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns.names[SERVER]])
            .arg(crate::agent_binary())
            .args(["run", "--config"])
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start agent");
        self.agent = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.fetch("/status").is_empty() {
            if let Some(Ok(Some(status))) = self.agent.as_mut().map(|c| c.try_wait()) {
                panic!("agent exited with {status}: {}", self.agent_log());
            }
            assert!(Instant::now() < deadline, "agent did not answer within 30 s: {}", self.agent_log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("agent.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.agent.as_ref().expect("agent running").id()
    }

    /// SIGKILL: no chance to clean anything up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn sighup(&self) {
        sh(&format!("kill -HUP {}", self.pid()));
    }

    pub fn fetch(&self, path: &'static str) -> String {
        self.ns.within(SERVER, move || {
            ureq::get(&format!("http://127.0.0.1:9960{path}")).call().map(|mut r| r.body_mut().read_to_string().unwrap()).unwrap_or_default()
        })
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.fetch("/status.json")).expect("status.json")
    }

    /// Waits until the rule set sequence passes `after`; returns it.
    pub fn wait_for_sequence(&self, after: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status()["ruleset_sequence"].as_u64().unwrap();
            if s > after {
                return s;
            }
            assert!(Instant::now() < deadline, "no new rule set after {after}: {}", self.agent_log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Packets counted against `order` (0 if absent).
    pub fn order_packets(&self, order: &str) -> u64 {
        let s = self.status();
        s["orders_hits"].as_array().unwrap().iter().find(|o| o["order"] == order).and_then(|o| o["packets"].as_u64()).unwrap_or(0)
    }

    /// Audit record actions, in order.
    pub fn audit_actions(&self) -> Vec<String> {
        std::fs::read_to_string(self.state_dir().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].as_str().unwrap().to_string())
            .collect()
    }

    /// The policy's entry in `/status.json`'s `mitigations`.
    pub fn mitigation(&self, policy: &str) -> serde_json::Value {
        let status = self.status();
        let list = status["mitigations"].as_array().expect("mitigations");
        list.iter().find(|m| m["policy"] == policy).cloned().unwrap_or_else(|| panic!("policy {policy} not reported: {status}"))
    }

    /// Waits until the policy's mitigation is (not) active; returns when.
    pub fn wait_mitigation(&self, policy: &str, active: bool, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            if self.mitigation(policy)["active"] == active {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{policy}: mitigation not {} within {limit:?}: {}\n{}",
                if active { "started" } else { "withdrawn" },
                self.fetch("/status"),
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The MAC address of `interface` in namespace `ns`.
    pub fn mac(&self, ns: usize, interface: &str) -> [u8; 6] {
        let out = Command::new("ip").args(["-n", &self.ns.names[ns], "-o", "link", "show", "dev", interface]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text.split("link/ether ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("no MAC in {text:?}"));
        let mut mac = [0u8; 6];
        for (i, part) in hex.split(':').enumerate().take(6) {
            mac[i] = u8::from_str_radix(part, 16).unwrap();
        }
        mac
    }

    /// Runs `filter-agent` with `args` (in the root namespace).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(crate::agent_binary()).args(args).output().unwrap()
    }

    /// A UDP flow from `src` (a client address) to the server's `port`,
    /// one datagram per millisecond, counted at both ends.
    pub fn flow(&self, src: &str, port: u16) -> Flow {
        let dst: SocketAddr = format!("[{SERVER_V6}]:{port}").parse().unwrap();
        let src: SocketAddr = format!("[{src}]:0").parse().unwrap();
        let receiver = self.ns.within(SERVER, move || UdpSocket::bind(dst).expect("bind receiver"));
        let sender = self.ns.within(CLIENT, move || UdpSocket::bind(src).expect("bind sender"));
        Flow::start(sender, receiver, dst)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.kill9();
        let _ = Command::new(crate::agent_binary())
            .args(["detach", "--bpffs"])
            .arg(&self.bpffs)
            .args(["--instance", &self.instance])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount").arg(&self.bpffs).status();
        // Namespaces (and with them the veth pair) go when `ns` drops.
    }
}

/// A running UDP flow; `stop` returns (sent, received).
pub struct Flow {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flow {
    fn start(sender: UdpSocket, receiver: UdpSocket, dst: SocketAddr) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        receiver.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let (s1, n1) = (stop.clone(), sent.clone());
        let tx = std::thread::spawn(move || {
            while !s1.load(Ordering::Relaxed) {
                if sender.send_to(b"edgefilter flow", dst).is_ok() {
                    n1.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let (s2, n2) = (stop.clone(), received.clone());
        let rx = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                match receiver.recv_from(&mut buf) {
                    Ok(_) => {
                        n2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) if s2.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
        });
        Flow { stop, sent, received, threads: vec![tx, rx] }
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Stops sending, lets in-flight datagrams arrive, returns (sent, received).
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (self.sent.load(Ordering::Relaxed), self.received.load(Ordering::Relaxed))
    }
}

/// The value of the sample `name{labels}` (labels as Prometheus prints
/// them, sorted), if exported.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// A line service in the server's namespace at `addr`: on every connection
/// each line `GET x` is answered `OK x`, until the client closes or is
/// silent for 2 s. Accepts until `stop`; the thread returns the number of
/// connections accepted.
pub fn line_service(h: &Harness, addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    use std::io::{BufRead, BufReader, Write};
    let listener = h.ns.within(SERVER, move || std::net::TcpListener::bind(addr).expect("bind TCP service"));
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut accepted = 0u64;
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    accepted += 1;
                    std::thread::spawn(move || {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut reader = BufReader::new(conn.try_clone().unwrap());
                        let mut line = String::new();
                        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                            if (&conn).write_all(format!("OK {}", line.trim_start_matches("GET ")).as_bytes()).is_err() {
                                break;
                            }
                            line.clear();
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        accepted
    })
}
