//! The reference matcher: Suricata's content inspection semantics, written
//! for clarity rather than speed. The kernel matcher must agree with it.
//!
//! Per buffer, the contents in that buffer are inspected in rule order:
//!
//! - an absolute content (`offset`, `depth`) is searched in
//!   `[offset, offset + depth)` of the buffer;
//! - a relative content (`distance`, `within`) in
//!   `[prev + distance, prev + distance + within)`, where `prev` is the end
//!   of the match of the previous non-negated content in the same buffer
//!   (0, the buffer start, for the first one); the start is clamped at 0;
//! - a negated content must not occur in its window; it does not move `prev`;
//! - `endswith`: the match must end at the end of the buffer.
//!
//! When a later content fails, earlier contents that later relative
//! contents depend on are retried at their next occurrences (Suricata's
//! backtracking), so the rule matches if *some* choice of occurrences
//! satisfies every content. The search stops, as no match, after
//! [`MAX_INSPECTION_STEPS`] content searches per buffer, like Suricata's
//! `inspection-recursion-limit`.
//!
//! A signature matches when every buffer it uses matches. A content in an
//! HTTP buffer never matches without [`HttpRegions`].
use std::net::IpAddr;
use std::ops::Range;

use super::{Buffer, Content, HttpRegions, SigProto, Signature};

/// Content searches allowed per buffer and packet (Suricata's default
/// `inspection-recursion-limit` is 3000).
pub const MAX_INSPECTION_STEPS: u32 = 3000;

impl Signature {
    /// Whether the rule's contents match `payload`, whose HTTP regions (if
    /// it starts a request) are `http`. Header fields are not looked at;
    /// see [`Signature::matches_header`].
    pub fn matches_payload(&self, payload: &[u8], http: Option<&HttpRegions>) -> bool {
        let mut buffers: Vec<Buffer> = Vec::new();
        for c in &self.contents {
            if !buffers.contains(&c.buffer) {
                buffers.push(c.buffer);
            }
        }
        buffers.into_iter().all(|buffer| {
            let Some(data) = buffer_bytes(payload, http, buffer) else { return false };
            let contents: Vec<&Content> = self.contents.iter().filter(|c| c.buffer == buffer).collect();
            match_buffer(data, &contents)
        })
    }

    /// Whether a packet's protocol (IP protocol number), addresses and
    /// ports are those of the rule header. `http` rules apply to TCP to one
    /// of `http_ports`.
    pub fn matches_header(
        &self,
        proto: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        http_ports: &[u16],
    ) -> bool {
        proto == self.proto.ip_proto()
            && (self.proto != SigProto::Http || http_ports.contains(&dport))
            && self.src.matches(&src)
            && self.src_ports.matches(sport)
            && self.dst.matches(&dst)
            && self.dst_ports.matches(dport)
    }

    /// Both [`Signature::matches_header`] and [`Signature::matches_payload`].
    #[allow(clippy::too_many_arguments)]
    pub fn matches(
        &self,
        proto: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        http_ports: &[u16],
        payload: &[u8],
        http: Option<&HttpRegions>,
    ) -> bool {
        self.matches_header(proto, src, sport, dst, dport, http_ports) && self.matches_payload(payload, http)
    }
}

/// The bytes of `buffer` in `payload`; `None` for an HTTP buffer without
/// regions (or with regions that do not fit the payload).
pub fn buffer_bytes<'p>(payload: &'p [u8], http: Option<&HttpRegions>, buffer: Buffer) -> Option<&'p [u8]> {
    let range: Range<usize> = match (buffer, http) {
        (Buffer::Payload, _) => return Some(payload),
        (_, None) => return None,
        (Buffer::HttpUri, Some(h)) => h.uri.clone(),
        (Buffer::HttpMethod, Some(h)) => h.method.clone(),
        (Buffer::HttpHost, Some(h)) => h.host.clone(),
        (Buffer::HttpHeader, Some(h)) => h.header.clone(),
        (Buffer::HttpBody, Some(h)) => h.body.clone(),
    };
    payload.get(range)
}

/// Whether the contents of one buffer, in rule order, match `data`.
pub fn match_buffer(data: &[u8], contents: &[&Content]) -> bool {
    let mut work = u64::MAX;
    match_buffer_metered(data, contents, &mut work) == Metered::Match
}

/// The outcome of [`match_buffer_metered`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metered {
    Match,
    NoMatch,
    /// `work` ran out before the answer was known.
    Exhausted,
}

/// [`match_buffer`], spending one unit of `work` per content search and
/// one per byte comparison of the naive search (the kernel's cost model:
/// its searches compare byte by byte, first position first).
pub fn match_buffer_metered(data: &[u8], contents: &[&Content], work: &mut u64) -> Metered {
    let retry = retry_flags(contents);
    let mut search = Search { data, contents, retry: &retry, budget: MAX_INSPECTION_STEPS, work, exhausted: false };
    let outcome = search.step(0, 0);
    if search.exhausted {
        Metered::Exhausted
    } else if outcome == Outcome::Match {
        Metered::Match
    } else {
        Metered::NoMatch
    }
}

/// Which contents of `contents` (one buffer's, in rule order) a later
/// relative content is anchored on: [`match_buffer`] retries their other
/// occurrences when what follows fails.
pub fn retry_flags(contents: &[&Content]) -> Vec<bool> {
    let mut retry = vec![false; contents.len()];
    let mut anchor: Option<usize> = None;
    for (j, c) in contents.iter().enumerate() {
        if c.is_relative() {
            if let Some(i) = anchor {
                retry[i] = true;
            }
        }
        if !c.negated {
            anchor = Some(j);
        }
    }
    retry
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Match,
    /// No match with the current choice of earlier occurrences.
    NoMatch,
    /// No match whatever the earlier choices (or a budget ran out).
    Abort,
}

struct Search<'a> {
    data: &'a [u8],
    contents: &'a [&'a Content],
    retry: &'a [bool],
    /// Content searches left ([`MAX_INSPECTION_STEPS`]).
    budget: u32,
    /// Work units left (searches and byte comparisons).
    work: &'a mut u64,
    exhausted: bool,
}

impl Search<'_> {
    /// Inspects contents `idx..` with `prev` the end of the last positive match.
    fn step(&mut self, idx: usize, prev: usize) -> Outcome {
        let Some(&c) = self.contents.get(idx) else { return Outcome::Match };
        let (start, end) = window(c, prev, self.data.len());
        // A failure of a relative content may be cured by another occurrence
        // of an earlier one; of an absolute content, never.
        let fail = if c.is_relative() { Outcome::NoMatch } else { Outcome::Abort };
        if c.negated {
            let Some(found) = self.find(c, start, end) else { return Outcome::Abort };
            return match found {
                Some(_) => fail,
                None => self.step(idx + 1, prev),
            };
        }
        let mut from = start;
        loop {
            let found = match self.find(c, from, end) {
                None => return Outcome::Abort,
                Some(None) => return fail,
                Some(Some(at)) => at,
            };
            match self.step(idx + 1, found + c.bytes.len()) {
                Outcome::Match => return Outcome::Match,
                Outcome::Abort => return Outcome::Abort,
                // Nothing later is anchored on this content, so what follows
                // depends on no choice made so far: no occurrence of this
                // or any earlier content can help.
                Outcome::NoMatch if !self.retry[idx] => return Outcome::Abort,
                Outcome::NoMatch => from = found + 1,
            }
        }
    }

    /// The first occurrence of `c` in `data[from..end]`; `None` when a
    /// budget is spent.
    fn find(&mut self, c: &Content, from: usize, end: usize) -> Option<Option<usize>> {
        if self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        if !self.spend() {
            return None;
        }
        let n = c.bytes.len();
        let end = end.min(self.data.len());
        if from > end || end - from < n {
            return Some(None);
        }
        let first = if c.endswith {
            let p = self.data.len() - n;
            if p < from || p + n > end {
                return Some(None);
            }
            p
        } else {
            from
        };
        let last = if c.endswith { first } else { end - n };
        for p in first..=last {
            let mut k = 0;
            while k < n {
                if !self.spend() {
                    return None;
                }
                let (a, b) = (self.data[p + k], c.bytes[k]);
                let equal = if c.nocase { a.eq_ignore_ascii_case(&b) } else { a == b };
                if !equal {
                    break;
                }
                k += 1;
            }
            if k == n {
                return Some(Some(p));
            }
        }
        Some(None)
    }

    fn spend(&mut self) -> bool {
        if *self.work == 0 {
            self.exhausted = true;
            return false;
        }
        *self.work -= 1;
        true
    }
}

/// The window `[start, end)` a content must lie in, given the end of the
/// previous positive match; `start > end` when it is empty.
fn window(c: &Content, prev: usize, len: usize) -> (usize, usize) {
    let len_i = len as i64;
    if c.is_relative() {
        let base = prev as i64 + i64::from(c.distance.unwrap_or(0));
        let start = base.max(0);
        let end = match c.within {
            Some(w) => (base + i64::from(w)).min(len_i),
            None => len_i,
        };
        (start.min(len_i + 1) as usize, end.max(0) as usize)
    } else {
        let start = i64::from(c.offset.unwrap_or(0));
        let end = match c.depth {
            Some(d) => (start + i64::from(d)).min(len_i),
            None => len_i,
        };
        (start.min(len_i + 1) as usize, end.max(0) as usize)
    }
}
