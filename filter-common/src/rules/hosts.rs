//! Hosts-format blocklists (`0.0.0.0 ads.example.com`), as published for
//! DNS sinkholes and `/etc/hosts`. Each listed name becomes an exact-name
//! domain rule. See `rules/feeds/DOMAINS.md`.
//!
//! Only sinkhole addresses mean "blocked"; a line pointing a name at a real
//! address is a redirect, which a packet filter cannot do, and is an error.
//! The usual preamble (`127.0.0.1 localhost`, `ff02::1 ip6-allnodes`, ...)
//! is skipped. All bad lines are reported at once as `file:line: reason`;
//! one bad line rejects the list.
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::domain::normalise_name;
use super::error::{RuleError, RuleErrors};

/// One blocked name of a hosts list, with the line it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsEntry {
    /// Normalised, as [`normalise_name`] gives it; blocks that name only.
    pub name: String,
    /// 1-based line in the file.
    pub line: usize,
}

/// Names of a hosts file's standard preamble: never rules.
const PREAMBLE: [&str; 12] = [
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

const SINKHOLES: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// Parses a hosts list's text; every bad line is reported as `file:line: reason`, all at once.
///
/// Lines are `ADDRESS name [name...]`, `#` starts a comment (also trailing).
/// A line whose names are all preamble names is skipped whatever its
/// address (`255.255.255.255 broadcasthost`, `fe80::1%lo0 localhost`).
/// A name listed twice is kept once, at its first line. An empty list is valid.
pub fn parse_hosts(file: &Path, text: &str) -> Result<Vec<HostsEntry>, RuleErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let data = raw.split('#').next().unwrap_or_default();
        let mut fields = data.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        let names: Vec<&str> = fields.collect();
        if !names.is_empty() && names.iter().all(|n| is_preamble(n)) {
            continue;
        }
        match addr.parse::<IpAddr>() {
            Ok(ip) if SINKHOLES.contains(&ip) => {}
            Ok(ip) => {
                errors.push(RuleError::new(
                    file,
                    line,
                    format!(
                        "address {ip}: only sinkhole addresses (0.0.0.0, 127.0.0.1, ::, ::1) mean blocked; redirects are not supported"
                    ),
                ));
                continue;
            }
            Err(_) => {
                errors.push(RuleError::new(
                    file,
                    line,
                    format!("`{addr}` is not an IP address: a hosts line is `0.0.0.0 name [name...]`"),
                ));
                continue;
            }
        }
        if names.is_empty() {
            errors.push(RuleError::new(file, line, format!("address {addr} with no name after it")));
            continue;
        }
        for name in names {
            if is_preamble(name) {
                continue;
            }
            match normalise_name(name) {
                Ok(n) => {
                    if seen.insert(n.clone()) {
                        entries.push(HostsEntry { name: n, line });
                    }
                }
                Err(msg) => errors.push(RuleError::new(file, line, format!("`{name}`: {msg}"))),
            }
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(RuleErrors(errors))
    }
}

/// Reads and parses `path`.
pub fn load_hosts(path: &Path) -> Result<Vec<HostsEntry>, RuleErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RuleErrors(vec![RuleError::new(path, 0, format!("cannot read hosts list: {e}"))]))?;
    parse_hosts(path, &text)
}

fn is_preamble(name: &str) -> bool {
    PREAMBLE.iter().any(|p| name.eq_ignore_ascii_case(p))
}
