//! Deep inspection: undoing the usual evasions before matching, so one
//! literal rule (`${jndi:ldap`) catches its encoded and obfuscated forms.
//!
//! [`normalise`] does, in this order:
//!
//! 1. keeps the first [`MAX_NORMALISE_INPUT`] bytes (the rest is dropped);
//! 2. percent-decodes (`%XX`, either case of hex digit) repeatedly until
//!    nothing changes, at most [`PERCENT_ROUNDS`] rounds, so `%2524` becomes
//!    `$`; a `%` not followed by two hex digits stays; `+` stays `+`;
//! 3. folds ASCII to lower case;
//! 4. collapses Log4j lookups the way Log4j's `StrSubstitutor` resolves
//!    them, innermost first: `${lower:x}` and `${upper:x}` become `x`,
//!    `${date:'x'}` becomes `x`, and a lookup with a default,
//!    `${anything:-x}` (`${::-x}`, `${env:NaN:-x}`, `${k8s:k5:-x}`...),
//!    becomes `x` as if the key were undefined. `${jndi:...}` and any other
//!    lookup are kept as they are (with their inside collapsed), so
//!    `${${lower:j}ndi:${::-l}dap://h/a}` becomes `${jndi:ldap://h/a}`. A
//!    `${` without its `}` is kept. Lookups nest at most [`MAX_LOOKUP_DEPTH`]
//!    deep; a deeper `${` is kept as text.
//!
//! The work is linear in the (capped) input length: each round of step 2
//! is one pass, and step 4 is one pass in which a byte is copied at most
//! once per nesting level.
use super::http::{http_regions, HttpRegions};

/// Input beyond this many bytes is not normalised (nor returned).
pub const MAX_NORMALISE_INPUT: usize = 8192;

/// Rounds of percent-decoding at most.
pub const PERCENT_ROUNDS: usize = 4;

/// Nesting of `${...}` lookups that is collapsed.
pub const MAX_LOOKUP_DEPTH: usize = 32;

/// The normalised form of `input` (see the module documentation).
pub fn normalise(input: &[u8]) -> Vec<u8> {
    let mut buf = input[..input.len().min(MAX_NORMALISE_INPUT)].to_vec();
    for _ in 0..PERCENT_ROUNDS {
        let (decoded, changed) = percent_decode(&buf);
        buf = decoded;
        if !changed {
            break;
        }
    }
    buf.make_ascii_lowercase();
    collapse_lookups(&buf)
}

/// Normalises an HTTP request region by region (URI, Host, the rest of
/// the header, body; the method is kept as sent), so decoding inside the
/// URI cannot break the request's structure, and returns the normalised
/// payload with its regions. A payload that is not a request is normalised as a whole.
pub fn normalise_request(payload: &[u8]) -> (Vec<u8>, Option<HttpRegions>) {
    let Some(r) = http_regions(payload) else { return (normalise(payload), None) };
    let cuts = [
        0,
        r.method.start,
        r.method.end,
        r.uri.start,
        r.uri.end,
        r.header.start,
        r.host.start,
        r.host.end,
        r.header.end,
        r.body.start,
        payload.len(),
    ];
    debug_assert!(cuts.windows(2).all(|w| w[0] <= w[1]), "regions out of order: {r:?}");
    let mut out = Vec::with_capacity(payload.len());
    let mut at = [0usize; 11];
    for i in 0..cuts.len() - 1 {
        at[i] = out.len();
        let part = &payload[cuts[i]..cuts[i + 1]];
        if i == 1 {
            // The method as sent: a case-sensitive token, never encoded,
            // and rules match it that way (`http.method; content:"POST"`).
            out.extend_from_slice(part);
        } else {
            out.extend(normalise(part));
        }
    }
    at[10] = out.len();
    let regions = HttpRegions {
        method: at[1]..at[2],
        uri: at[3]..at[4],
        header: at[5]..at[8],
        host: at[6]..at[7],
        body: at[9]..at[10],
    };
    (out, Some(regions))
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One round of `%XX` decoding; whether anything was decoded.
fn percent_decode(input: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(input.len());
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let digit = |at: usize| input.get(at).and_then(|&b| hex(b));
            if let (Some(h), Some(l)) = (digit(i + 1), digit(i + 2)) {
                out.push((h << 4) | l);
                changed = true;
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    (out, changed)
}

/// Resolves `${...}` lookups (input already lower-cased), innermost first.
fn collapse_lookups(input: &[u8]) -> Vec<u8> {
    // stack[0] is the output; each open `${` has its own buffer above it.
    let mut stack: Vec<Vec<u8>> = vec![Vec::with_capacity(input.len())];
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'$' && input.get(i + 1) == Some(&b'{') && stack.len() <= MAX_LOOKUP_DEPTH {
            stack.push(Vec::new());
            i += 2;
            continue;
        }
        if b == b'}' && stack.len() > 1 {
            let inner = stack.pop().expect("more than one frame");
            let parent = stack.last_mut().expect("the output frame");
            resolve(&inner, parent);
            i += 1;
            continue;
        }
        stack.last_mut().expect("the output frame").push(b);
        i += 1;
    }
    // Lookups never closed are text.
    while stack.len() > 1 {
        let inner = stack.pop().expect("more than one frame");
        let parent = stack.last_mut().expect("the output frame");
        parent.extend_from_slice(b"${");
        parent.extend_from_slice(&inner);
    }
    stack.pop().expect("the output frame")
}

/// Appends what the lookup `${inner}` resolves to onto `out`.
fn resolve(inner: &[u8], out: &mut Vec<u8>) {
    if inner.starts_with(b"jndi:") {
        return keep(inner, out);
    }
    // Log4j splits off the default value first, then looks the key up.
    let (key, default) = match find(inner, b":-") {
        Some(at) => (&inner[..at], Some(&inner[at + 2..])),
        None => (inner, None),
    };
    if let Some(x) = key.strip_prefix(b"lower:").or_else(|| key.strip_prefix(b"upper:")) {
        return out.extend_from_slice(x);
    }
    if let Some(format) = key.strip_prefix(b"date:") {
        if let Some(text) = quoted_literal(format) {
            return out.extend_from_slice(text);
        }
    }
    match default {
        Some(d) => out.extend_from_slice(d),
        None => keep(inner, out),
    }
}

fn keep(inner: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"${");
    out.extend_from_slice(inner);
    out.push(b'}');
}

/// `'x'`, a `SimpleDateFormat` pattern that is only quoted text, gives `x`.
fn quoted_literal(format: &[u8]) -> Option<&[u8]> {
    let text = format.strip_prefix(b"'")?.strip_suffix(b"'")?;
    (!text.contains(&b'\'')).then_some(text)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
