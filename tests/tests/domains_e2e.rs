//! Domain blocking end to end, with real clients and servers: the agent
//! started from a config with an order of names, an RPZ feed (with a
//! passthru exception) and a hosts feed; dnsmasq as the DNS server, `dig`
//! as the client (UDP and TCP, IPv4 and IPv6); `openssl s_server` and
//! `s_client`, plus a crafted Chrome-like ClientHello whose server_name
//! only arrives in the second TCP segment; `python3 -m http.server` and
//! `curl`. The verdicts are observed on the wire (answers, timeouts, what
//! the servers logged) and in the agent's counters.
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use edgefilter_tests::harness::{Harness, CLIENT, SERVER, SERVER_V6};
use edgefilter_tests::l7gen::{find_sni, segments, ClientHello, ExtOrder};

const CLIENT_V4: &str = "198.18.0.1";
const SERVER_V4: &str = "198.18.0.2";
const SERVERS: [&str; 2] = [SERVER_V4, SERVER_V6];

/// What dnsmasq answers for every name below these zones (when the filter
/// lets the query through).
const ZONES: [(&str, &str); 3] = [("example.com", "198.19.0.10"), ("example.net", "198.19.0.11"), ("example.org", "198.19.0.12")];

const DNS_ORDER: &str = "EXAMPLE-DNS-2026-0001";
const WEB_ORDER: &str = "EXAMPLE-WEB-2026-0002";
const RPZ_FEED: &str = "example-rpz";
const HOSTS_FEED: &str = "example-hosts";

fn order(id: &str, entries: &str) -> String {
    format!(
        "id = \"{id}\"\nauthority = \"Example National Communications Authority\"\nreference = \"Decision {id}\"\ncategory = \"legal\"\n\
         received = 2026-01-01T00:00:00Z\neffective = 2026-01-01T00:00:00Z\nexpires = 2099-01-01T00:00:00Z\naction = \"drop\"\n{entries}"
    )
}

const DNS_ENTRIES: &str = r#"
[[entry]]
comment = "annex A: answered NXDOMAIN"
domains = ["blocked.example.com"]

[[entry]]
comment = "annex B: answered REFUSED"
domains = ["*.refused.example.net"]
dns_answer = "refused"
"#;

const WEB_ENTRIES: &str = r#"
[[entry]]
comment = "web sites: connections dropped, DNS queries too"
domains = ["tls-blocked.example.org", "http-blocked.example.org"]
dns_answer = "drop"
"#;

const RPZ: &str = "$TTL 300
$ORIGIN rpz.example.net.
@ IN SOA ns1.example.net. hostmaster.example.net. ( 1 3600 600 604800 300 )
  IN NS ns1.example.net.
rpz-blocked.example.com      CNAME .
*.rpz-blocked.example.com    CNAME .
ok.rpz-blocked.example.com   CNAME rpz-passthru.
";

const HOSTS: &str = "127.0.0.1 localhost\n0.0.0.0 hosts-blocked.example.org   # ads\n";

/// A server process in a namespace, killed when dropped (also when the
/// test fails) with every process it started: it leads its own process
/// group (dnsmasq forks a child per TCP connection, and the ones serving
/// blocked connections wait for a FIN that never comes).
struct Daemon {
    child: Child,
    what: String,
    log: PathBuf,
}

impl Daemon {
    fn start(h: &Harness, ns: usize, what: &str, args: &[&str]) -> Daemon {
        let log = h.dir.0.join(format!("{what}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns.names[ns]])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e} (is it installed? cargo xtask setup)"));
        Daemon { child, what: what.to_string(), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until sockets in the server namespace listen on `port`
    /// (`proto`: "t" or "u") at every address of `want` (empty: any).
    fn wait_listening(&mut self, h: &Harness, proto: &str, port: u16, want: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}: {}", self.what, self.log());
            }
            let out = run(h, SERVER, &["ss", &format!("-Hln{proto}"), &format!("sport = :{port}")]);
            let text = String::from_utf8_lossy(&out.stdout);
            if !text.trim().is_empty() && want.iter().all(|a| text.contains(a)) {
                return;
            }
            assert!(Instant::now() < deadline, "{} not listening on {proto} port {port}: {text} {}", self.what, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: plain syscalls on the process group this test created.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
        // The leader's children were handed to this process (a subreaper,
        // see `reap_orphans`): reap them too, leaving no zombie behind.
        // SAFETY: as above.
        while unsafe { libc::waitpid(-group, std::ptr::null_mut(), 0) } > 0 {}
    }
}

/// Orphaned descendants (a daemon's forked children once it is killed) are
/// re-parented to this process rather than to init, so `Daemon::drop` can
/// reap them.
fn reap_orphans() {
    // SAFETY: sets a flag of this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Runs a command in namespace `ns` and returns its output.
fn run(h: &Harness, ns: usize, args: &[&str]) -> Output {
    Command::new("ip").args(["netns", "exec", &h.ns.names[ns]]).args(args).stdin(Stdio::null()).output().expect("run ip netns exec")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// What `dig` got: the status of the answer (None: no answer) and the
/// addresses in the answer section.
struct Dig {
    status: Option<String>,
    addresses: Vec<String>,
    output: String,
}

fn dig(h: &Harness, server: &str, name: &str, tcp: bool) -> Dig {
    let mut args = vec!["timeout", "-k", "1", "5", "dig", "-p", "53", "+time=1", "+tries=1", "+retry=0"];
    if tcp {
        args.push("+tcp");
    }
    let at = format!("@{server}");
    args.extend([at.as_str(), name, "A"]);
    let out = run(h, CLIENT, &args);
    let output = text(&out);
    let status = output.lines().find_map(|l| l.split("status: ").nth(1)).map(|s| s.split(',').next().unwrap().trim().to_string());
    let mut addresses = Vec::new();
    let mut in_answer = false;
    for line in output.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            in_answer = true;
        } else if line.trim().is_empty() {
            in_answer = false;
        } else if in_answer && line.split_whitespace().nth(3) == Some("A") {
            addresses.push(line.split_whitespace().last().unwrap().to_string());
        }
    }
    assert_eq!(status.is_some(), out.status.success(), "dig's exit status and output disagree: {output}");
    Dig { status, addresses, output }
}

fn zone_address(name: &str) -> &'static str {
    ZONES.iter().find(|(z, _)| name.ends_with(z)).unwrap().1
}

/// Sum of the samples of `metric` whose labels contain `labels`.
fn metric(metrics: &str, name: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

fn l7(h: &Harness, event: &str) -> u64 {
    metric(&h.fetch("/metrics"), "edgefilter_l7_events_total", &format!("event=\"{event}\""))
}

fn url_host(server: &str) -> String {
    if server.contains(':') {
        format!("[{server}]")
    } else {
        server.to_string()
    }
}

/// What came back for a TLS ClientHello.
#[derive(Debug, PartialEq)]
enum Reply {
    /// These bytes (at most one read).
    Bytes(Vec<u8>),
    /// The server closed the connection without a byte.
    Closed,
    /// Nothing within the wait.
    Nothing,
}

/// Connects from the client namespace and sends a Chrome-like ClientHello
/// for `name` with the server_name extension last, as two writes 50 ms
/// apart (TCP_NODELAY): two TCP segments, the server_name only in the
/// second. Returns what the server sent back within `wait`.
fn split_client_hello(h: &Harness, server: &str, name: &str, wait: Duration) -> Reply {
    let hello = ClientHello { extensions_order: ExtOrder::SniLast, ..ClientHello::chrome_like(name) };
    let record = hello.record(edgefilter_tests::seed());
    let sni = find_sni(&record).expect("the ClientHello has a server_name");
    // Both pieces fit one segment on the veth (MSS 1428 over IPv6).
    let parts = segments(&record, 1200);
    assert_eq!(parts.len(), 2, "a Chrome-like ClientHello is {} bytes", record.len());
    assert!(sni.ext.start >= parts[0].len(), "the server_name must be in the second segment");
    let addr: SocketAddr = format!("{}:443", url_host(server)).parse().unwrap();
    h.ns.within(CLIENT, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("TCP connect (the handshake carries no name)");
        s.set_nodelay(true).unwrap();
        s.write_all(&parts[0]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(&parts[1]).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 16384];
        match s.read(&mut buf) {
            Ok(0) => Reply::Closed,
            Ok(n) => Reply::Bytes(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Reply::Nothing,
            Err(e) => panic!("read from {addr}: {e}"),
        }
    })
}

/// `openssl s_server` on port 443 of the server namespace. It serves one
/// connection at a time and a blocked connection never ends for it (its
/// FIN is dropped too), so each check gets a fresh server.
fn tls_server(h: &Harness, cert: &Path, key: &Path) -> Daemon {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut d = Daemon::start(h, SERVER, "s_server", &["openssl", "s_server", "-accept", "443", "-cert", cert, "-key", key, "-www"]);
    d.wait_listening(h, "t", 443, &[]);
    d
}

fn s_client(h: &Harness, server: &str, name: &str, wait_s: u32) -> Output {
    let connect = format!("{}:443", url_host(server));
    let limit = wait_s.to_string();
    run(h, CLIENT, &["timeout", "-k", "1", &limit, "openssl", "s_client", "-connect", &connect, "-servername", name])
}

/// `curl` from the client namespace: (exit code, HTTP status).
fn curl(h: &Harness, server: &str, host: &str) -> (i32, String) {
    let url = format!("http://{}/", url_host(server));
    let header = format!("Host: {host}");
    let out = run(h, CLIENT, &["curl", "-g", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "-H", &header, &url]);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Same through `--resolve`, as a browser would ask for the name.
fn curl_resolve(h: &Harness, server: &str, host: &str) -> (i32, String) {
    let resolve = format!("{host}:80:{}", url_host(server));
    let url = format!("http://{host}/");
    let out = run(h, CLIENT, &["curl", "-g", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "--resolve", &resolve, &url]);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn names_are_blocked_in_dns_tls_and_http_with_real_servers_and_clients() {
    let started = Instant::now();
    reap_orphans();
    let mut h = Harness::new("dom", &[]);
    h.ns.exec(CLIENT, &format!("ip addr add {CLIENT_V4}/24 dev {}", h.client_if));
    h.ns.exec(SERVER, &format!("ip addr add {SERVER_V4}/24 dev {}", h.server_if));
    // The filter's DNS answers leave by XDP_TX. On a veth in native mode a
    // frame sent back that way is only received if the peer runs NAPI, which
    // an XDP program on it turns on (with GRO instead, on 6.18, the frames
    // are counted as sent and never arrive): let every packet pass there.
    // (libxdp warns that it has no bpffs for its dispatcher: none needed.)
    h.ns.exec(CLIENT, &format!("xdp-filter load --mode native --policy allow {} 2>/dev/null", h.client_if));
    let link = text(&run(&h, CLIENT, &["ip", "link", "show", &h.client_if]));
    assert!(link.contains("prog/xdp"), "no XDP program on the client veth: {link}");

    // 1. Rules: two orders, an RPZ feed with a passthru, a hosts feed.
    std::fs::write(h.rules_dir().join("dns.toml"), order(DNS_ORDER, DNS_ENTRIES)).unwrap();
    std::fs::write(h.rules_dir().join("web.toml"), order(WEB_ORDER, WEB_ENTRIES)).unwrap();
    let feeds = h.dir.0.join("feeds");
    std::fs::create_dir_all(&feeds).unwrap();
    std::fs::write(feeds.join("regulator.rpz"), RPZ).unwrap();
    std::fs::write(feeds.join("ads.hosts"), HOSTS).unwrap();
    h.write_config(&format!(
        "[[feed]]\nid = \"{RPZ_FEED}\"\nformat = \"rpz\"\npath = \"{}\"\ncategory = \"legal\"\nprovenance = \"Example regulator RPZ\"\naction = \"drop\"\n\n\
         [[feed]]\nid = \"{HOSTS_FEED}\"\nformat = \"hosts\"\npath = \"{}\"\ncategory = \"operator\"\nprovenance = \"Example ad list\"\naction = \"drop\"\ndns_answer = \"refused\"\n",
        feeds.join("regulator.rpz").display(),
        feeds.join("ads.hosts").display()
    ));
    h.start();
    h.wait_for_sequence(0);
    let status = h.status();
    assert!(status["last_error"].is_null(), "rule set rejected: {}", status["last_error"]);
    // blocked, *.refused, tls-blocked, http-blocked, 3 RPZ names, 1 hosts name
    assert_eq!(status["domain_rules"], 8, "{status}");

    // 2. DNS: dnsmasq answers every name of the zones with an address, so an
    // NXDOMAIN or REFUSED can only come from the filter.
    let mut dns_args: Vec<String> = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--user=root",
        "--log-queries",
        "--log-facility=-",
        "--port=53",
    ]
    .map(String::from)
    .to_vec();
    dns_args.push(format!("--pid-file={}", h.dir.0.join("dnsmasq.pid").display()));
    dns_args.push(format!("--listen-address={SERVER_V4}"));
    dns_args.push(format!("--listen-address={SERVER_V6}"));
    for (zone, addr) in ZONES {
        dns_args.push(format!("--address=/{zone}/{addr}"));
    }
    let dns_args: Vec<&str> = dns_args.iter().map(String::as_str).collect();
    let mut dnsmasq = Daemon::start(&h, SERVER, "dnsmasq", &dns_args);
    dnsmasq.wait_listening(&h, "u", 53, &[SERVER_V4, SERVER_V6]);
    dnsmasq.wait_listening(&h, "t", 53, &[SERVER_V4, SERVER_V6]);

    let answered_before = l7(&h, "dns_answered");
    let mut answered = 0;
    for server in SERVERS {
        for (name, want) in [
            ("blocked.example.com", "NXDOMAIN"),         // order, exact
            ("a.refused.example.net", "REFUSED"),        // order, *.
            ("x.y.refused.example.net", "REFUSED"),      // order, *. at depth
            ("rpz-blocked.example.com", "NXDOMAIN"),     // RPZ, exact
            ("ads.rpz-blocked.example.com", "NXDOMAIN"), // RPZ, *.
            ("hosts-blocked.example.org", "REFUSED"),    // hosts feed
            ("BLOCKED.Example.COM", "NXDOMAIN"),         // case does not matter
        ] {
            let d = dig(&h, server, name, false);
            assert_eq!(d.status.as_deref(), Some(want), "{name} @{server}: {}", d.output);
            // A well-formed answer to this very query: dig checks the id and
            // the question, and complains about anything malformed.
            assert!(d.output.contains("flags: qr rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 0"), "{name} @{server}: {}", d.output);
            assert!(!d.output.to_lowercase().contains("warning") && d.addresses.is_empty(), "{name} @{server}: {}", d.output);
            answered += 1;
        }
        for name in [
            "allowed.example.com",
            "refused.example.net",           // *.refused.example.net is strictly below
            "ok.rpz-blocked.example.com",    // RPZ passthru
            "notblocked.example.com",        // label boundaries: not below blocked.example.com
            "www.hosts-blocked.example.org", // hosts entries are exact
        ] {
            let d = dig(&h, server, name, false);
            assert_eq!(d.status.as_deref(), Some("NOERROR"), "{name} @{server}: {}", d.output);
            assert_eq!(d.addresses, [zone_address(name)], "{name} @{server}: {}", d.output);
        }
        // dns_answer = "drop": the query is not answered at all.
        let d = dig(&h, server, "tls-blocked.example.org", false);
        assert_eq!(d.status, None, "a dropped query gets no answer: {}", d.output);
        // DNS over TCP: the connection is dropped, whatever dns_answer says.
        let d = dig(&h, server, "allowed.example.com", true);
        assert_eq!((d.status.as_deref(), &d.addresses[..]), (Some("NOERROR"), &["198.19.0.10".to_string()][..]), "{}", d.output);
        let d = dig(&h, server, "blocked.example.com", true);
        assert_eq!(d.status, None, "DNS over TCP for a blocked name is dropped: {}", d.output);
    }
    let got = l7(&h, "dns_answered") - answered_before;
    assert_eq!(got, answered, "every NXDOMAIN/REFUSED was sent by the filter");
    // And dnsmasq never saw a blocked query.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dnsmasq.log().contains("www.hosts-blocked.example.org") {
        assert!(Instant::now() < deadline, "dnsmasq did not log the allowed queries: {}", dnsmasq.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = dnsmasq.log().to_lowercase();
    for name in [
        "blocked.example.com",
        "a.refused.example.net",
        "x.y.refused.example.net",
        "rpz-blocked.example.com",
        "ads.rpz-blocked.example.com",
        "hosts-blocked.example.org",
        "tls-blocked.example.org",
    ] {
        let name = format!("] {name} from");
        assert!(!log.contains(&name), "dnsmasq got a blocked query ({name}): {log}");
    }
    assert!(log.contains("] ok.rpz-blocked.example.com from") && log.contains("] refused.example.net from"), "{log}");
    drop(dnsmasq);

    // 3. TLS with openssl, then a ClientHello split over two segments.
    let cert = rcgen::generate_simple_self_signed(vec!["allowed.example.org".to_string(), "tls-blocked.example.org".to_string()]).unwrap();
    let (cert_path, key_path) = (h.dir.0.join("tls.crt"), h.dir.0.join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (sni_before, continued_before, drops_before) = (l7(&h, "tls_sni"), l7(&h, "tls_continued"), l7(&h, "flow_drops"));
    for server in SERVERS {
        let _tls = tls_server(&h, &cert_path, &key_path);
        let out = s_client(&h, server, "allowed.example.org", 5);
        let shown = text(&out);
        assert!(shown.contains("BEGIN CERTIFICATE") && shown.contains("Cipher is TLS_"), "handshake with allowed.example.org @{server}: {shown}");
        // The server handles connections one by one: it is free again.
        let reply = split_client_hello(&h, server, "allowed.example.org", Duration::from_secs(3));
        let Reply::Bytes(bytes) = &reply else { panic!("no answer to a split ClientHello for an allowed name @{server}: {reply:?}") };
        assert!(matches!(bytes[0], 0x15 | 0x16), "a TLS handshake or alert record: {:02x?}", &bytes[..bytes.len().min(16)]);
    }
    for server in SERVERS {
        let tls = tls_server(&h, &cert_path, &key_path);
        let out = s_client(&h, server, "tls-blocked.example.org", 2);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(124), "s_client must hang until `timeout` ends it: {shown}");
        assert!(!shown.contains("BEGIN CERTIFICATE") && !shown.contains("Cipher is"), "{shown}");
        drop(tls);
        let _tls = tls_server(&h, &cert_path, &key_path);
        let reply = split_client_hello(&h, server, "tls-blocked.example.org", Duration::from_millis(1500));
        assert_eq!(reply, Reply::Nothing, "a split ClientHello for a blocked name @{server}");
    }
    let sni = l7(&h, "tls_sni") - sni_before;
    let continued = l7(&h, "tls_continued") - continued_before;
    assert!(sni >= 4, "names read from ClientHellos: {sni}");
    assert!(continued >= 4, "ClientHellos continued in a second segment: {continued}");
    assert!(l7(&h, "flow_drops") > drops_before, "the rest of blocked connections is dropped");

    // 4. HTTP: python's http.server (one thread per connection) and curl.
    let www = h.dir.0.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "edgefilter test page\n").unwrap();
    let mut http = Daemon::start(&h, SERVER, "http.server", &["python3", "-m", "http.server", "80", "--bind", "::", "--directory", www.to_str().unwrap()]);
    http.wait_listening(&h, "t", 80, &[]);
    let host_before = l7(&h, "http_host");
    for server in SERVERS {
        assert_eq!(curl(&h, server, "allowed.example.org"), (0, "200".to_string()), "allowed Host @{server}");
        assert_eq!(curl_resolve(&h, server, "allowed.example.org"), (0, "200".to_string()), "allowed name @{server}");
        let (code, status) = curl(&h, server, "http-blocked.example.org");
        assert_eq!((code, status.as_str()), (28, "000"), "blocked Host @{server} must time out");
        let (code, status) = curl_resolve(&h, server, "www.tls-blocked.example.org");
        assert_eq!((code, status.as_str()), (0, "200"), "exact rule: a name below is not blocked @{server}");
        let (code, status) = curl_resolve(&h, server, "http-blocked.example.org");
        assert_eq!((code, status.as_str()), (28, "000"), "blocked name @{server} must time out");
    }
    let hosts = l7(&h, "http_host") - host_before;
    assert!(hosts >= 10, "Host headers read: {hosts}");
    drop(http);

    // 5. Per-order counters and the status text.
    let metrics = h.fetch("/metrics");
    // At least the answered queries (DNS over TCP adds its dropped segments),
    // a segment of each blocked connection; the hosts feed saw two queries.
    for (id, least) in [(DNS_ORDER, 8), (WEB_ORDER, 10), (RPZ_FEED, 4), (HOSTS_FEED, 2)] {
        let n = metric(&metrics, "edgefilter_rule_packets_total", &format!("order=\"{id}\""));
        assert!(n >= least, "{n} packets counted against {id}, expected at least {least}: {metrics}");
    }
    assert_eq!(metric(&metrics, "edgefilter_rule_packets_total", &format!("order=\"{HOSTS_FEED}\"")), 2, "{metrics}");
    let n = metric(&metrics, "edgefilter_packets_total", "reason=\"domain\"");
    assert!(n > 0, "packets with the reason `domain`: {metrics}");
    let text = h.fetch("/status");
    assert!(text.contains("Names (DNS, TLS SNI, HTTP Host)"), "{text}");
    for event in ["dns_queries", "dns_answered", "tls_sni", "tls_continued", "http_host", "flow_drops"] {
        let shown = text.split(&format!("{event} ")).nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse::<u64>().ok());
        assert!(shown.is_some_and(|n| n > 0), "/status shows {event}: {text}");
    }
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}
