//! Domain names and domain patterns for domain blocking (DNS query names,
//! TLS SNI, HTTP Host). See `rules/feeds/DOMAINS.md` for the syntax.
//!
//! A rule names a domain in one canonical form: A-labels (punycode),
//! lower-case ASCII, no trailing dot. The data plane matches a name by
//! hashing its label-boundary suffixes (`a.b.example.com`, `b.example.com`,
//! `example.com`, `com`), so a pattern only ever matches on a label
//! boundary: `*.example.com` never matches `badexample.com`.
use std::fmt;
use std::str::FromStr;

/// A rule's name has at most this many labels: the kernel hashes at most 16
/// label-boundary suffixes of a name.
pub const MAX_PATTERN_LABELS: usize = 16;

/// A label is 1..=63 bytes (RFC 1035).
const MAX_LABEL_BYTES: usize = 63;
/// A name in text form without its trailing dot is at most 253 bytes
/// (255 on the wire).
const MAX_NAME_BYTES: usize = 253;

/// The canonical form of a domain name: trimmed, one trailing dot removed,
/// IDN labels turned into A-labels (`bücher.example` → `xn--bcher-kva.example`,
/// UTS-46 mapping), lower-case ASCII.
///
/// Rejected, with a short reason: an empty name or label, a label over 63
/// bytes, a name over 253 bytes, a character other than `a-z 0-9 - _`, a
/// label starting or ending with `-`, more than [`MAX_PATTERN_LABELS`] labels.
pub fn normalise_name(text: &str) -> Result<String, String> {
    normalise(text, true)
}

/// [`normalise_name`], optionally without the label-count limit (a zone's
/// origin is not a rule, so it may be deeper).
pub(crate) fn normalise(text: &str, limit_labels: bool) -> Result<String, String> {
    let trimmed = text.trim();
    let name = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if name.is_empty() {
        return Err("empty name".to_string());
    }
    let mut ascii = if name.is_ascii() {
        // UTS-46 still checks `xn--` labels: a label that claims to be
        // punycode must decode.
        if name.split('.').any(|l| l.len() >= 4 && l[..4].eq_ignore_ascii_case("xn--")) {
            idna_to_ascii(name)?
        } else {
            name.to_string()
        }
    } else {
        idna_to_ascii(name)?
    };
    ascii.make_ascii_lowercase();

    if ascii.split('.').any(str::is_empty) {
        return Err(format!("empty label in `{trimmed}`"));
    }
    if let Some(c) =
        ascii.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') && c != '.')
    {
        return Err(if c.is_ascii_graphic() {
            format!("character `{c}` not allowed in a domain name")
        } else {
            format!("character U+{:04X} not allowed in a domain name", c as u32)
        });
    }
    for label in ascii.split('.') {
        if label.len() > MAX_LABEL_BYTES {
            return Err(format!(
                "label `{}` is {} bytes; a label has at most {MAX_LABEL_BYTES}",
                abbreviate(label),
                label.len()
            ));
        }
        if label.starts_with('-') {
            return Err(format!("label `{label}` starts with `-`"));
        }
        if label.ends_with('-') {
            return Err(format!("label `{label}` ends with `-`"));
        }
    }
    if ascii.len() > MAX_NAME_BYTES {
        return Err(format!("name is {} bytes; a name has at most {MAX_NAME_BYTES}", ascii.len()));
    }
    let labels = ascii.split('.').count();
    if limit_labels && labels > MAX_PATTERN_LABELS {
        return Err(format!("name has {labels} labels; rules hold at most {MAX_PATTERN_LABELS}"));
    }
    Ok(ascii)
}

fn idna_to_ascii(name: &str) -> Result<String, String> {
    idna::domain_to_ascii(name)
        .map_err(|_| format!("`{name}` is not a valid internationalised domain name (UTS-46 rejects it)"))
}

/// The first 20 characters of a long label, for messages.
fn abbreviate(label: &str) -> String {
    if label.len() <= 20 {
        label.to_string()
    } else {
        format!("{}…", &label[..20])
    }
}

/// Which names a [`DomainPattern`] covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DomainScope {
    /// `example.com`: that name only.
    Exact,
    /// `*.example.com`: every name strictly below, not `example.com` itself
    /// (as an RPZ wildcard and a TLS wildcard certificate).
    Subdomains,
    /// `.example.com`: the name and every name below it (squid/curl convention).
    ApexAndSubdomains,
}

/// A normalised name and the scope it covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainPattern {
    /// Canonical form, as [`normalise_name`] gives it (without `*.` or the leading dot).
    pub name: String,
    pub scope: DomainScope,
}

impl DomainPattern {
    /// Parses `example.com` (exact), `*.example.com` (strictly below) or
    /// `.example.com` (the name and below). The name part goes through
    /// [`normalise_name`]; `*` is allowed only as the whole first label.
    pub fn parse(text: &str) -> Result<DomainPattern, String> {
        let text = text.trim();
        let (scope, rest) = if let Some(rest) = text.strip_prefix("*.") {
            (DomainScope::Subdomains, rest)
        } else if let Some(rest) = text.strip_prefix('.') {
            (DomainScope::ApexAndSubdomains, rest)
        } else {
            (DomainScope::Exact, text)
        };
        if matches!(text, "*" | "*." | "." | "..") || (scope != DomainScope::Exact && rest.trim().is_empty()) {
            return Err(format!("pattern `{text}` has no name: it would match every name"));
        }
        if rest.contains('*') {
            return Err("`*` is allowed only as the whole first label".to_string());
        }
        let name = normalise_name(rest)?;
        Ok(DomainPattern { name, scope })
    }

    /// Whether the pattern covers `name`, an already-normalised name (see
    /// [`normalise_name`]). Matching is on label boundaries only.
    pub fn matches(&self, name: &str) -> bool {
        let below = || {
            name.len() > self.name.len()
                && name.ends_with(self.name.as_str())
                && name.as_bytes()[name.len() - self.name.len() - 1] == b'.'
        };
        match self.scope {
            DomainScope::Exact => name == self.name,
            DomainScope::Subdomains => below(),
            DomainScope::ApexAndSubdomains => name == self.name || below(),
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            DomainScope::Exact => f.write_str(&self.name),
            DomainScope::Subdomains => write!(f, "*.{}", self.name),
            DomainScope::ApexAndSubdomains => write!(f, ".{}", self.name),
        }
    }
}

impl FromStr for DomainPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainPattern::parse(s)
    }
}
