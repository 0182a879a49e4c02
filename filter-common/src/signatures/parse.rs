//! Rule packs: a documented subset of the Suricata rule language (see
//! `rules/signatures/README.md`), parsed into [`Signature`]s.
//!
//! ```text
//! drop http $EXTERNAL_NET any -> $HOME_NET any (msg:"..."; flow:to_server,established; \
//!     http.uri; content:"class.module.classLoader"; nocase; sid:9000001; rev:1;)
//! ```
//!
//! A rule is one line, or several joined by a trailing `\`; lines starting
//! with `#` (after blanks) are comments. Every problem is reported as
//! `file:line: reason`, where `line` is the physical line of the offending
//! option (of the rule's first line for rule-wide problems). Problems are
//! of two kinds: *unsupported* (valid Suricata this engine does not
//! implement: other keywords, protocols, actions, `<>`, `flow:to_client`)
//! and *errors* (anything else: bad syntax, a missing or duplicate sid,
//! `depth` shorter than its content, an unknown variable...). With
//! `skip_unsupported`, a rule with only unsupported problems is skipped and
//! listed in [`SignaturePack::skipped`]; any error fails the whole pack.
use std::collections::HashMap;
use std::path::Path;

use super::{AddrSpec, Buffer, Content, PortSpec, SigAction, SigProto, Signature, SignaturePack};
use crate::rules::order_file::parse_net;
use crate::rules::{RuleError, RuleErrors};

/// The longest temporary ban a rule may ask for (`edgefilter_ban`): one week.
pub const MAX_BAN_SECONDS: u32 = 7 * 24 * 3600;

/// Largest value of `offset`, `depth`, `within` and `|distance|` (Suricata
/// stores them in 16 bits).
const MAX_MODIFIER: i64 = 65535;

/// Nesting of lists and variables in a header field.
const MAX_NESTING: usize = 16;

/// Suricata actions this engine does not implement.
const OTHER_ACTIONS: &[&str] = &["pass", "reject", "rejectsrc", "rejectdst", "rejectboth", "config"];

/// Suricata protocols this engine does not implement.
const OTHER_PROTOS: &[&str] = &[
    "ip",
    "ipv4",
    "ip4",
    "ipv6",
    "ip6",
    "icmp",
    "icmpv4",
    "icmpv6",
    "sctp",
    "pkthdr",
    "tls",
    "ssl",
    "dns",
    "ftp",
    "ftp-data",
    "smb",
    "dcerpc",
    "ssh",
    "smtp",
    "imap",
    "pop3",
    "modbus",
    "dnp3",
    "enip",
    "cip",
    "nfs",
    "ntp",
    "tftp",
    "ikev2",
    "ike",
    "krb5",
    "dhcp",
    "snmp",
    "sip",
    "rfb",
    "mqtt",
    "rdp",
    "http1",
    "http2",
    "quic",
    "bittorrent-dht",
    "pgsql",
    "telnet",
    "ldap",
    "websocket",
    "doh2",
    "template",
];

/// Reads and parses the pack at `path`.
pub fn load_pack(
    path: &Path,
    vars: &HashMap<String, String>,
    skip_unsupported: bool,
) -> Result<SignaturePack, RuleErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RuleErrors(vec![RuleError::new(path, 0, format!("cannot read signature pack: {e}"))]))?;
    parse_pack(path, &text, vars, skip_unsupported)
}

/// Parses the text of a pack file.
///
/// `vars` resolves `$NAME` in addresses and ports (keys with or without the
/// `$`); values use the same syntax as the header fields, e.g.
/// `HOME_NET = "[192.0.2.0/24,2001:db8::/32]"`, `EXTERNAL_NET = "!$HOME_NET"`.
///
/// Without `skip_unsupported` any rejected rule fails the pack, with every
/// problem listed. With it, rules rejected only for unsupported features
/// are left out and listed in `skipped`; errors still fail the pack. Sids
/// are unique among the rules kept.
pub fn parse_pack(
    file: &Path,
    text: &str,
    vars: &HashMap<String, String>,
    skip_unsupported: bool,
) -> Result<SignaturePack, RuleErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (rules, mut problems) = split_rules(text);
    let mut pack = SignaturePack::default();
    let mut sids: HashMap<u32, usize> = HashMap::new();
    for logical in &rules {
        match parse_rule(file, logical, vars) {
            Ok((sig, sid_line)) => {
                if let Some(first) = sids.get(&sig.sid) {
                    problems.push(Problem::error(
                        sid_line,
                        format!("duplicate sid {} (first used at line {first})", sig.sid),
                    ));
                } else {
                    sids.insert(sig.sid, sig.line);
                    pack.rules.push(sig);
                }
            }
            Err(rule_problems) => {
                let unsupported_only = rule_problems.iter().all(|p| p.kind == Kind::Unsupported);
                if skip_unsupported && unsupported_only {
                    let message = rule_problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ");
                    pack.skipped.push(RuleError::new(file, rule_problems[0].line, message));
                } else {
                    problems.extend(rule_problems);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(pack)
    } else {
        problems.sort_by_key(|p| p.line);
        Err(RuleErrors(problems.into_iter().map(|p| RuleError::new(file, p.line, p.message)).collect()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Invalid rule text.
    Error,
    /// Valid Suricata that this engine does not implement.
    Unsupported,
    /// A missing content, or a modifier or sticky buffer without one: an
    /// error, unless the rule also uses unsupported keywords (say `pcre`,
    /// `bsize`), which may be what the content-less parts belong to; then
    /// the rule is unsupported as a whole.
    Consequence,
}

#[derive(Debug)]
struct Problem {
    kind: Kind,
    line: usize,
    message: String,
}

impl Problem {
    fn error(line: usize, message: impl Into<String>) -> Self {
        Problem { kind: Kind::Error, line, message: message.into() }
    }

    fn unsupported(line: usize, message: impl Into<String>) -> Self {
        Problem { kind: Kind::Unsupported, line, message: message.into() }
    }

    fn consequence(line: usize, message: impl Into<String>) -> Self {
        Problem { kind: Kind::Consequence, line, message: message.into() }
    }
}

/// One rule with its continuation lines joined.
struct Logical {
    text: String,
    /// `(offset in text, physical line)` of each joined piece, in order.
    pieces: Vec<(usize, usize)>,
}

impl Logical {
    fn first_line(&self) -> usize {
        self.pieces[0].1
    }

    /// The physical line of byte `offset` of the joined text.
    fn line_at(&self, offset: usize) -> usize {
        let i = self.pieces.partition_point(|&(start, _)| start <= offset);
        self.pieces[i.saturating_sub(1)].1
    }
}

/// Splits a pack into rules: comments and blank lines dropped, lines ending
/// in `\` joined with the next (the `\` removed, as Suricata does).
fn split_rules(text: &str) -> (Vec<Logical>, Vec<Problem>) {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    let mut current: Option<Logical> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let piece = match &current {
            Some(_) => raw,
            None => {
                let trimmed = raw.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                trimmed
            }
        };
        let rule = current.get_or_insert_with(|| Logical { text: String::new(), pieces: Vec::new() });
        rule.pieces.push((rule.text.len(), line));
        let body = piece.trim_end();
        if let Some(joined) = body.strip_suffix('\\') {
            rule.text.push_str(joined);
        } else {
            rule.text.push_str(body);
            rules.extend(current.take());
        }
    }
    if let Some(rule) = current {
        problems.push(Problem::error(rule.first_line(), "the rule's last line ends with `\\` but the file ends there"));
    }
    (rules, problems)
}

/// A header field or an option, with its byte offset in the rule text.
struct Token<'a> {
    text: &'a str,
    at: usize,
}

/// One `keyword[: value];` of the options.
struct Opt<'a> {
    keyword: String,
    value: Option<&'a str>,
    at: usize,
}

/// A content being built, with what was set on it so far.
struct PendingContent {
    content: Content,
    line: usize,
    startswith: bool,
    /// The buffer came from a sticky-buffer keyword.
    sticky: bool,
    /// The buffer came from a legacy modifier (`http_uri`...).
    legacy: bool,
    seen: Vec<&'static str>,
}

struct RuleParser<'a> {
    logical: &'a Logical,
    vars: &'a HashMap<String, String>,
    problems: Vec<Problem>,
}

impl RuleParser<'_> {
    fn line(&self, at: usize) -> usize {
        self.logical.line_at(at)
    }

    fn error(&mut self, at: usize, message: impl Into<String>) {
        let line = self.line(at);
        self.problems.push(Problem::error(line, message));
    }

    fn unsupported(&mut self, at: usize, message: impl Into<String>) {
        let line = self.line(at);
        self.problems.push(Problem::unsupported(line, message));
    }

    fn consequence(&mut self, at: usize, message: impl Into<String>) {
        let line = self.line(at);
        self.problems.push(Problem::consequence(line, message));
    }

    /// The problems of the rule, consequences resolved (see [`Kind::Consequence`]).
    fn finish(mut self) -> Vec<Problem> {
        let unsupported = self.problems.iter().any(|p| p.kind == Kind::Unsupported);
        if unsupported {
            self.problems.retain(|p| p.kind != Kind::Consequence);
        } else {
            for p in &mut self.problems {
                if p.kind == Kind::Consequence {
                    p.kind = Kind::Error;
                }
            }
        }
        self.problems
    }
}

/// Parses one rule; on success also returns the line of its `sid` option.
fn parse_rule(
    file: &Path,
    logical: &Logical,
    vars: &HashMap<String, String>,
) -> Result<(Signature, usize), Vec<Problem>> {
    let mut p = RuleParser { logical, vars, problems: Vec::new() };
    let text = logical.text.as_str();
    let Some(open) = text.find('(') else {
        p.error(0, "expected `(` and the rule options after the header");
        return Err(p.finish());
    };
    let header = parse_header(&mut p, &text[..open]);
    let rest = &text[open + 1..];
    let Some(close) = rest.rfind(')') else {
        p.error(open, "the rule options are not closed with `)`");
        return Err(p.finish());
    };
    if !rest[close + 1..].trim().is_empty() {
        p.error(open + 1 + close + 1, format!("unexpected text after the closing `)`: `{}`", rest[close + 1..].trim()));
    }
    let opts = split_options(&mut p, text, open + 1, open + 1 + close);
    let body = parse_options(&mut p, opts, header.as_ref().map(|h| h.proto));
    if !p.problems.is_empty() {
        return Err(p.finish());
    }
    let (Some(h), Some((body, sid_line))) = (header, body) else {
        unreachable!("a missing header or body always comes with a problem")
    };
    let sig = Signature {
        sid: body.sid,
        rev: body.rev,
        msg: body.msg,
        action: h.action,
        proto: h.proto,
        src: h.src,
        src_ports: h.src_ports,
        dst: h.dst,
        dst_ports: h.dst_ports,
        to_server: body.to_server,
        established: body.established,
        contents: body.contents,
        classtype: body.classtype,
        ban_seconds: body.ban_seconds,
        metadata: body.metadata,
        references: body.references,
        file: file.to_path_buf(),
        line: logical.first_line(),
    };
    if sig.ban_seconds.is_some() && sig.action != SigAction::Drop {
        p.error(body.ban_at, "edgefilter_ban needs action drop (alert rules only count)");
        return Err(p.finish());
    }
    Ok((sig, sid_line))
}

// ---- header -----------------------------------------------------------------

struct Header {
    action: SigAction,
    proto: SigProto,
    src: AddrSpec,
    src_ports: PortSpec,
    dst: AddrSpec,
    dst_ports: PortSpec,
}

/// Splits the header at blanks outside `[...]`.
fn header_tokens(header: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let mut start: Option<usize> = None;
    for (i, c) in header.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if let Some(s) = start.take() {
                tokens.push(Token { text: &header[s..i], at: s });
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        tokens.push(Token { text: &header[s..], at: s });
    }
    tokens
}

fn parse_header(p: &mut RuleParser<'_>, header: &str) -> Option<Header> {
    let tokens = header_tokens(header);
    if tokens.len() != 7 {
        p.error(
            0,
            format!(
                "the rule header must be `action proto src sport -> dst dport`, found {} field{}",
                tokens.len(),
                if tokens.len() == 1 { "" } else { "s" }
            ),
        );
        return None;
    }
    let action = match tokens[0].text {
        "drop" => Some(SigAction::Drop),
        "alert" => Some(SigAction::Alert),
        a if OTHER_ACTIONS.contains(&a) => {
            p.unsupported(tokens[0].at, format!("action {a} is not supported (only drop and alert)"));
            None
        }
        a => {
            p.error(tokens[0].at, format!("unknown action `{a}` (expected drop or alert)"));
            None
        }
    };
    let proto_name = tokens[1].text.to_ascii_lowercase();
    let proto = match proto_name.as_str() {
        "tcp" => Some(SigProto::Tcp),
        "udp" => Some(SigProto::Udp),
        "http" => Some(SigProto::Http),
        other if OTHER_PROTOS.contains(&other) => {
            p.unsupported(tokens[1].at, format!("protocol {other} is not supported (only tcp, udp and http)"));
            None
        }
        _ => {
            p.error(tokens[1].at, format!("unknown protocol `{}`", tokens[1].text));
            None
        }
    };
    let src = addr_field(p, &tokens[2], "source address");
    let src_ports = port_field(p, &tokens[3], "source port");
    match tokens[4].text {
        "->" => {}
        "<>" => p.unsupported(tokens[4].at, "bidirectional rules are not supported"),
        other => p.error(tokens[4].at, format!("expected `->` between source and destination, found `{other}`")),
    }
    let dst = addr_field(p, &tokens[5], "destination address");
    let dst_ports = port_field(p, &tokens[6], "destination port");
    Some(Header { action: action?, proto: proto?, src: src?, src_ports: src_ports?, dst: dst?, dst_ports: dst_ports? })
}

fn addr_field(p: &mut RuleParser<'_>, token: &Token<'_>, what: &str) -> Option<AddrSpec> {
    match parse_addr(token.text, p.vars, 0) {
        Ok(a) => Some(a),
        Err(e) => {
            p.error(token.at, format!("{what} `{}`: {e}", token.text));
            None
        }
    }
}

fn port_field(p: &mut RuleParser<'_>, token: &Token<'_>, what: &str) -> Option<PortSpec> {
    match parse_ports(token.text, p.vars, 0) {
        Ok(a) => Some(a),
        Err(e) => {
            p.error(token.at, format!("{what} `{}`: {e}", token.text));
            None
        }
    }
}

/// Looks `$NAME` up (key `NAME` or `$NAME`).
fn lookup_var<'v>(text: &str, vars: &'v HashMap<String, String>) -> Result<&'v str, String> {
    let name = &text[1..];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("`{text}` is not a valid variable name"));
    }
    vars.get(name).or_else(|| vars.get(text)).map(String::as_str).ok_or_else(|| format!("unknown variable {text}"))
}

/// Splits the inside of `[...]` at top-level commas.
fn split_list(inner: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1).ok_or("unbalanced `]`")?,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced `[`".into());
    }
    items.push(&inner[start..]);
    if items.iter().any(|i| i.trim().is_empty()) {
        return Err("empty element in a list".into());
    }
    Ok(items)
}

/// List, negation and variable syntax shared by addresses and ports.
enum Shape<'a> {
    Not(&'a str),
    List(Vec<&'a str>),
    Var(&'a str),
    Any,
    Atom(&'a str),
}

fn shape(text: &str, depth: usize) -> Result<Shape<'_>, String> {
    if depth > MAX_NESTING {
        return Err("nested too deeply (a variable that refers to itself?)".into());
    }
    let text = text.trim();
    if text.is_empty() {
        return Err("empty value".into());
    }
    if let Some(rest) = text.strip_prefix('!') {
        return Ok(Shape::Not(rest));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let inner = rest.strip_suffix(']').ok_or("a list must end with `]`")?;
        if inner.trim().is_empty() {
            return Err("empty list".into());
        }
        return Ok(Shape::List(split_list(inner)?));
    }
    if text.starts_with('$') {
        return Ok(Shape::Var(text));
    }
    if text.eq_ignore_ascii_case("any") {
        return Ok(Shape::Any);
    }
    Ok(Shape::Atom(text))
}

/// Names the variable an error is in (the innermost one only).
fn in_var(name: &str, e: String) -> String {
    if e.starts_with('$') {
        e
    } else {
        format!("{name}: {e}")
    }
}

fn parse_addr(text: &str, vars: &HashMap<String, String>, depth: usize) -> Result<AddrSpec, String> {
    Ok(match shape(text, depth)? {
        Shape::Not(rest) => match parse_addr(rest, vars, depth + 1)? {
            AddrSpec::Any => return Err("`!any` matches nothing".into()),
            inner => AddrSpec::Not(Box::new(inner)),
        },
        Shape::List(items) => {
            AddrSpec::List(items.into_iter().map(|i| parse_addr(i, vars, depth + 1)).collect::<Result<_, _>>()?)
        }
        Shape::Var(name) => parse_addr(lookup_var(name, vars)?, vars, depth + 1).map_err(|e| in_var(name, e))?,
        Shape::Any => AddrSpec::Any,
        Shape::Atom(a) => AddrSpec::Net(parse_net(a)?),
    })
}

fn parse_ports(text: &str, vars: &HashMap<String, String>, depth: usize) -> Result<PortSpec, String> {
    Ok(match shape(text, depth)? {
        Shape::Not(rest) => match parse_ports(rest, vars, depth + 1)? {
            PortSpec::Any => return Err("`!any` matches nothing".into()),
            inner => PortSpec::Not(Box::new(inner)),
        },
        Shape::List(items) => {
            PortSpec::List(items.into_iter().map(|i| parse_ports(i, vars, depth + 1)).collect::<Result<_, _>>()?)
        }
        Shape::Var(name) => parse_ports(lookup_var(name, vars)?, vars, depth + 1).map_err(|e| in_var(name, e))?,
        Shape::Any => PortSpec::Any,
        Shape::Atom(a) => {
            let port = |s: &str, default: u16| -> Result<u16, String> {
                let s = s.trim();
                if s.is_empty() {
                    return Ok(default);
                }
                s.parse::<u16>().map_err(|_| format!("`{s}` is not a port number (0-65535)"))
            };
            match a.split_once(':') {
                None => {
                    if a.contains('-') {
                        return Err("port ranges are written `low:high`".into());
                    }
                    let p = port(a, 0)?;
                    PortSpec::Range(p, p)
                }
                Some((lo, hi)) => {
                    if lo.trim().is_empty() && hi.trim().is_empty() {
                        return Err("`:` alone is not a port range".into());
                    }
                    let (lo, hi) = (port(lo, 0)?, port(hi, u16::MAX)?);
                    if lo > hi {
                        return Err(format!("empty port range {lo}:{hi}"));
                    }
                    PortSpec::Range(lo, hi)
                }
            }
        }
    })
}

// ---- options ----------------------------------------------------------------

/// Splits `text[start..end]` into options at unescaped `;`.
fn split_options<'a>(p: &mut RuleParser<'_>, text: &'a str, start: usize, end: usize) -> Vec<Opt<'a>> {
    let bytes = text.as_bytes();
    let mut opts = Vec::new();
    let mut pos = start;
    while pos < end {
        while pos < end && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= end {
            break;
        }
        // The option runs to the next unescaped `;` (Suricata ignores quotes here).
        let opt_start = pos;
        let mut i = pos;
        while i < end && bytes[i] != b';' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        let opt_end = i.min(end);
        let opt = &text[opt_start..opt_end];
        pos = opt_end + 1;
        let (keyword, value) = match opt.split_once(':') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (opt.trim(), None),
        };
        if keyword.is_empty() || !keyword.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            p.error(opt_start, format!("expected an option keyword, found `{}`", truncate(opt.trim(), 40)));
            continue;
        }
        opts.push(Opt { keyword: keyword.to_ascii_lowercase(), value, at: opt_start });
    }
    opts
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}

struct Body {
    sid: u32,
    rev: u32,
    msg: String,
    to_server: bool,
    established: bool,
    contents: Vec<Content>,
    classtype: Option<String>,
    ban_seconds: Option<u32>,
    ban_at: usize,
    metadata: Vec<(String, String)>,
    references: Vec<(String, String)>,
}

/// Content modifiers: they apply to the content just before them.
const MODIFIERS: &[&str] = &[
    "nocase",
    "depth",
    "offset",
    "distance",
    "within",
    "startswith",
    "endswith",
    "fast_pattern",
    "http_uri",
    "http_method",
    "http_host",
    "http_header",
    "http_client_body",
];

fn sticky_buffer(keyword: &str) -> Option<Buffer> {
    Some(match keyword {
        "pkt_data" => Buffer::Payload,
        "http.uri" => Buffer::HttpUri,
        "http.method" => Buffer::HttpMethod,
        "http.host" => Buffer::HttpHost,
        "http.header" => Buffer::HttpHeader,
        "http.request_body" => Buffer::HttpBody,
        _ => return None,
    })
}

fn legacy_buffer(keyword: &str) -> Option<Buffer> {
    Some(match keyword {
        "http_uri" => Buffer::HttpUri,
        "http_method" => Buffer::HttpMethod,
        "http_host" => Buffer::HttpHost,
        "http_header" => Buffer::HttpHeader,
        "http_client_body" => Buffer::HttpBody,
        _ => return None,
    })
}

fn parse_options(p: &mut RuleParser<'_>, opts: Vec<Opt<'_>>, proto: Option<SigProto>) -> Option<(Body, usize)> {
    let mut sid: Option<(u32, usize)> = None;
    let mut rev: Option<u32> = None;
    let mut msg: Option<String> = None;
    let mut classtype: Option<String> = None;
    let mut flow_seen = false;
    let (mut to_server, mut established) = (false, false);
    let mut ban: Option<(u32, usize)> = None;
    let mut metadata = Vec::new();
    let mut references = Vec::new();
    let mut contents: Vec<PendingContent> = Vec::new();
    let mut content_seen = false;
    let mut buffer = Buffer::Payload;
    // The sticky-buffer keyword still waiting for its first content.
    let mut pending_sticky: Option<(&'static str, usize)> = None;
    // Index of the content modifiers apply to (none right after a sticky keyword).
    let mut last: Option<usize> = None;

    for opt in opts {
        let kw = opt.keyword.as_str();
        let at = opt.at;
        let value = opt.value.map(str::trim);
        let takes_value = matches!(
            kw,
            "msg"
                | "sid"
                | "rev"
                | "classtype"
                | "reference"
                | "metadata"
                | "flow"
                | "content"
                | "depth"
                | "offset"
                | "distance"
                | "within"
        );
        let known_bare = sticky_buffer(kw).is_some() || MODIFIERS.contains(&kw);
        if !takes_value && !known_bare {
            p.unsupported(at, format!("unsupported keyword {kw}"));
            continue;
        }
        if takes_value && value.is_none() {
            p.error(at, format!("`{kw}` needs a value (`{kw}:...;`)"));
            continue;
        }
        if !takes_value && value.is_some() && kw != "fast_pattern" {
            p.error(at, format!("`{kw}` takes no value"));
            continue;
        }
        let value = value.unwrap_or("");
        match kw {
            "msg" => {
                if msg.is_some() {
                    p.error(at, "msg given twice");
                    continue;
                }
                match string_value(value) {
                    Ok(m) => msg = Some(m),
                    Err(e) => p.error(at, format!("msg: {e}")),
                }
            }
            "sid" => {
                if sid.is_some() {
                    p.error(at, "sid given twice");
                    continue;
                }
                match value.parse::<u32>() {
                    Ok(n) if n > 0 => sid = Some((n, p.line(at))),
                    _ => p.error(at, format!("sid `{value}`: expected a number from 1 to {}", u32::MAX)),
                }
            }
            "rev" => {
                if rev.is_some() {
                    p.error(at, "rev given twice");
                    continue;
                }
                match value.parse::<u32>() {
                    Ok(n) => rev = Some(n),
                    _ => p.error(at, format!("rev `{value}`: expected a number")),
                }
            }
            "classtype" => {
                if classtype.is_some() {
                    p.error(at, "classtype given twice");
                } else if value.is_empty()
                    || !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                {
                    p.error(at, format!("classtype `{value}`: expected a name like trojan-activity"));
                } else {
                    classtype = Some(value.to_string());
                }
            }
            "reference" => match value.split_once(',') {
                Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                    references.push((k.trim().to_string(), v.trim().to_string()))
                }
                _ => p.error(at, format!("reference `{value}`: expected `kind,value` like `cve,2021-44228`")),
            },
            "metadata" => {
                for entry in value.split(',') {
                    let entry = entry.trim();
                    let Some((k, v)) = entry.split_once(|c: char| c.is_ascii_whitespace()) else {
                        p.error(at, format!("metadata `{entry}`: expected `key value`"));
                        continue;
                    };
                    let (k, v) = (k.trim(), v.trim());
                    if k == "edgefilter_ban" {
                        if ban.is_some() {
                            p.error(at, "edgefilter_ban given twice");
                            continue;
                        }
                        match v.parse::<u32>() {
                            Ok(s) if (1..=MAX_BAN_SECONDS).contains(&s) => ban = Some((s, at)),
                            _ => p.error(
                                at,
                                format!("edgefilter_ban `{v}`: expected seconds from 1 to {MAX_BAN_SECONDS}"),
                            ),
                        }
                    }
                    metadata.push((k.to_string(), v.to_string()));
                }
            }
            "flow" => {
                if flow_seen {
                    p.error(at, "flow given twice");
                    continue;
                }
                flow_seen = true;
                for item in value.split(',').map(str::trim) {
                    match item {
                        "to_server" | "from_client" => to_server = true,
                        "established" => established = true,
                        "to_client" | "from_server" => p.unsupported(
                            at,
                            format!("flow:{item} is not supported: only client-to-server traffic is inspected"),
                        ),
                        "not_established" | "stateless" | "only_stream" | "no_stream" | "only_frag" | "no_frag" => {
                            p.unsupported(at, format!("flow option {item} is not supported"))
                        }
                        other => p.error(at, format!("unknown flow option `{other}`")),
                    }
                }
            }
            "content" => {
                content_seen = true;
                pending_sticky = None;
                match content_value(value) {
                    Ok((bytes, negated)) => {
                        contents.push(PendingContent {
                            content: Content {
                                bytes,
                                nocase: false,
                                negated,
                                buffer,
                                offset: None,
                                depth: None,
                                distance: None,
                                within: None,
                                endswith: false,
                            },
                            line: p.line(at),
                            startswith: false,
                            sticky: buffer != Buffer::Payload,
                            legacy: false,
                            seen: Vec::new(),
                        });
                        last = Some(contents.len() - 1);
                    }
                    Err(e) => {
                        p.error(at, format!("content: {e}"));
                        last = None;
                    }
                }
            }
            _ if sticky_buffer(kw).is_some() => {
                if let Some((name, sticky_at)) = pending_sticky {
                    p.consequence(sticky_at, format!("{name} is not followed by any content"));
                }
                let b = sticky_buffer(kw).unwrap();
                buffer = b;
                pending_sticky = Some((b.keyword(), at));
                last = None;
            }
            _ => {
                // A content modifier.
                let Some(i) = last else {
                    match pending_sticky {
                        Some((name, _)) => p.consequence(at, format!("`{kw}` after {name} with no content of its own")),
                        None => p.consequence(at, format!("`{kw}` must follow a content")),
                    }
                    continue;
                };
                modifier(p, &mut contents[i], kw, value, at);
            }
        }
    }
    if let Some((name, at)) = pending_sticky {
        p.consequence(at, format!("{name} is not followed by any content"));
    }

    let first = 0;
    if sid.is_none() {
        p.error(first, "the rule has no sid");
    }
    if !contents.is_empty() && contents.iter().all(|c| c.content.negated) {
        p.consequence(first, "the rule has only negated contents: it needs one that must be present");
    } else if !content_seen {
        p.consequence(first, "the rule has no content (header-only rules belong in order files)");
    }
    if proto == Some(SigProto::Udp) {
        if let Some(c) = contents.iter().find(|c| c.content.buffer.is_http()) {
            let line = c.line;
            p.problems.push(Problem::error(
                line,
                format!("{} needs protocol http or tcp, not udp", c.content.buffer.keyword()),
            ));
        }
    }
    let (sid, sid_line) = sid?;
    let body = Body {
        sid,
        rev: rev.unwrap_or(1),
        msg: msg.unwrap_or_default(),
        to_server,
        established,
        contents: contents.into_iter().map(finish_content).collect(),
        classtype,
        ban_seconds: ban.map(|b| b.0),
        ban_at: ban.map_or(0, |b| b.1),
        metadata,
        references,
    };
    Some((body, sid_line))
}

fn finish_content(c: PendingContent) -> Content {
    let mut content = c.content;
    if c.startswith {
        content.offset = Some(0);
        content.depth = Some(content.bytes.len() as u32);
    }
    content
}

/// Applies the modifier `kw` to `c`, checking it against what `c` already has.
fn modifier(p: &mut RuleParser<'_>, c: &mut PendingContent, kw: &str, value: &str, at: usize) {
    const ABSOLUTE: &[&str] = &["offset", "depth"];
    const RELATIVE: &[&str] = &["distance", "within"];
    let name: &'static str = MODIFIERS.iter().find(|m| **m == kw).copied().unwrap_or("modifier");
    if kw != "fast_pattern" && c.seen.contains(&name) {
        p.error(at, format!("{kw} given twice for the same content"));
        return;
    }
    let has = |list: &[&str]| c.seen.iter().any(|s| list.contains(s));
    let len = c.content.bytes.len() as i64;
    if ABSOLUTE.contains(&kw) || RELATIVE.contains(&kw) {
        if c.startswith {
            p.error(at, format!("{kw} cannot be combined with startswith"));
            return;
        }
        let other = if ABSOLUTE.contains(&kw) { RELATIVE } else { ABSOLUTE };
        if has(other) {
            p.error(
                at,
                format!("{kw} cannot be combined with {} on the same content (absolute and relative)", other.join("/")),
            );
            return;
        }
    }
    match kw {
        "nocase" => c.content.nocase = true,
        "fast_pattern" => {}
        "startswith" => {
            if has(ABSOLUTE) || has(RELATIVE) {
                p.error(at, "startswith cannot be combined with offset, depth, distance or within");
                return;
            }
            c.startswith = true;
        }
        "endswith" => c.content.endswith = true,
        "depth" | "offset" | "distance" | "within" => {
            let Some(n) = number_value(p, kw, value, at) else { return };
            match kw {
                "depth" => {
                    if n <= 0 || n > MAX_MODIFIER {
                        return p.error(at, format!("depth {n}: expected 1 to {MAX_MODIFIER}"));
                    }
                    if n < len {
                        return p.error(at, format!("depth {n} is smaller than the content length {len}"));
                    }
                    c.content.depth = Some(n as u32);
                }
                "offset" => {
                    if !(0..=MAX_MODIFIER).contains(&n) {
                        return p.error(at, format!("offset {n}: expected 0 to {MAX_MODIFIER}"));
                    }
                    c.content.offset = Some(n as u32);
                }
                "distance" => {
                    if !(-MAX_MODIFIER..=MAX_MODIFIER).contains(&n) {
                        return p.error(at, format!("distance {n}: expected -{MAX_MODIFIER} to {MAX_MODIFIER}"));
                    }
                    c.content.distance = Some(n as i32);
                }
                _ => {
                    if n <= 0 || n > MAX_MODIFIER {
                        return p.error(at, format!("within {n}: expected 1 to {MAX_MODIFIER}"));
                    }
                    if n < len {
                        return p.error(at, format!("within {n} is smaller than the content length {len}"));
                    }
                    c.content.within = Some(n as u32);
                }
            }
        }
        _ => {
            let b = legacy_buffer(kw).expect("every other modifier is a legacy buffer modifier");
            if c.sticky {
                p.error(
                    at,
                    format!("{kw} cannot be used on a content in the sticky buffer {}", c.content.buffer.keyword()),
                );
                return;
            }
            if c.legacy {
                p.error(at, format!("{kw}: this content already has a buffer modifier"));
                return;
            }
            c.legacy = true;
            c.content.buffer = b;
        }
    }
    // Legacy buffer modifiers are mutually exclusive: record them under one name.
    c.seen.push(name);
}

/// An integer modifier value; a name (a `byte_extract` variable) is unsupported.
fn number_value(p: &mut RuleParser<'_>, kw: &str, value: &str, at: usize) -> Option<i64> {
    if let Ok(n) = value.parse::<i64>() {
        return Some(n);
    }
    let is_name = value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if is_name {
        p.unsupported(at, format!("{kw} `{value}`: byte_extract variables are not supported"));
    } else {
        p.error(at, format!("{kw} `{value}`: expected an integer"));
    }
    None
}

/// A quoted string (`msg`): `\"`, `\;`, `\\` and `\:` are the escapes.
/// An unquoted value is taken as it is.
fn string_value(value: &str) -> Result<String, String> {
    let Some(rest) = value.strip_prefix('"') else {
        if value.contains('"') {
            return Err("a string must be quoted as a whole".into());
        }
        return Ok(value.to_string());
    };
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('"' | ';' | '\\' | ':'))) => out.push(e),
                Some((_, e)) => return Err(format!("invalid escape `\\{e}` (only \\\" \\; \\\\ and \\: are escapes)")),
                None => return Err("unterminated string".into()),
            },
            '"' => {
                let after = rest[i + 1..].trim();
                if !after.is_empty() {
                    return Err(format!("unexpected text after the closing quote: `{}`", truncate(after, 40)));
                }
                return Ok(out);
            }
            c => out.push(c),
        }
    }
    Err("unterminated string (a `;` inside a string must be escaped as `\\;`)".into())
}

/// `"..."` or `!"..."` with escapes and `|hex|` blocks: the bytes and
/// whether it is negated.
fn content_value(value: &str) -> Result<(Vec<u8>, bool), String> {
    let (negated, value) = match value.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, value),
    };
    let Some(rest) = value.strip_prefix('"') else {
        return Err("expected a quoted string like \"abc|0d 0a|\"".into());
    };
    let bytes = rest.as_bytes();
    let mut out = Vec::new();
    let mut hex: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(digits) = hex.as_mut() {
            match b {
                b'|' => {
                    if digits.is_empty() {
                        return Err("empty |hex| block".into());
                    }
                    if digits.len() % 2 == 1 {
                        return Err("odd number of hex digits in a |hex| block".into());
                    }
                    out.extend(digits.chunks(2).map(|pair| (pair[0] << 4) | pair[1]));
                    hex = None;
                }
                b' ' | b'\t' => {}
                b'"' => return Err("unterminated |hex| block".into()),
                _ => match (b as char).to_digit(16) {
                    Some(d) => digits.push(d as u8),
                    None => {
                        let c = rest[i..].chars().next().unwrap_or('?');
                        return Err(format!("`{c}` is not a hex digit (in a |hex| block)"));
                    }
                },
            }
            i += 1;
            continue;
        }
        match b {
            b'\\' => match bytes.get(i + 1) {
                Some(&e @ (b'"' | b';' | b'\\' | b':')) => {
                    out.push(e);
                    i += 2;
                }
                Some(_) => {
                    let c = rest[i + 1..].chars().next().unwrap_or('?');
                    return Err(format!("invalid escape `\\{c}` (only \\\" \\; \\\\ and \\: are escapes)"));
                }
                None => return Err("unterminated string".into()),
            },
            b'|' => {
                hex = Some(Vec::new());
                i += 1;
            }
            b'"' => {
                let after = rest[i + 1..].trim();
                if !after.is_empty() {
                    return Err(format!("unexpected text after the closing quote: `{}`", truncate(after, 40)));
                }
                if out.is_empty() {
                    return Err("empty content".into());
                }
                return Ok((out, negated));
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    if hex.is_some() {
        return Err("unterminated |hex| block".into());
    }
    Err("unterminated string (a `;` inside a string must be escaped as `\\;`)".into())
}
