//! The regions of an HTTP/1.x request in the first segment of a request,
//! for the `http.*` sticky buffers. No reassembly and no decoding: every
//! region is a range of the raw payload.
use std::ops::Range;

/// Byte ranges of one request in a payload; all within `0..payload.len()`,
/// in order: `method`, `uri`, then `header` (containing `host`), then `body`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRegions {
    /// The request method (`GET`), as sent.
    pub method: Range<usize>,
    /// The request target between the two spaces of the request line, raw.
    pub uri: Range<usize>,
    /// The value of the first `Host` header (name case-insensitive),
    /// without surrounding blanks. Empty (at `header.start`) without one.
    pub host: Range<usize>,
    /// The header lines: from the first byte after the request line's line
    /// end up to and including the line end of the last header line, i.e.
    /// every `Name: value\r\n` but not the empty line that ends the block.
    /// When the segment ends inside the header block, up to the end of the
    /// segment. Empty when the request has no header lines.
    pub header: Range<usize>,
    /// What follows the empty line ending the header block, up to the end
    /// of the segment; empty when the header block is not complete.
    pub body: Range<usize>,
}

/// Finds the regions of the HTTP/1.x request starting at byte 0 of `payload`.
///
/// The request line must be `METHOD SP URI SP HTTP/1.x` followed by a line
/// end: the method a token (RFC 9110 `tchar`s), the version
/// case-insensitive (so normalised payloads parse too), the URI whatever
/// lies between the first and the last space (trimmed; not empty). Lines
/// end with CRLF or a bare LF, as servers accept both. `None` when the
/// payload does not start with such a line (not HTTP, a later segment of a
/// request, or a request line cut by the segment's end).
pub fn http_regions(payload: &[u8]) -> Option<HttpRegions> {
    let line_end = payload.iter().position(|&b| b == b'\n')?;
    let line = strip_cr(&payload[..line_end]);
    let first_sp = line.iter().position(|&b| b == b' ')?;
    let last_sp = line.iter().rposition(|&b| b == b' ')?;
    if first_sp == 0 || last_sp <= first_sp || !line[..first_sp].iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let version = &line[last_sp + 1..];
    if version.len() != 8 || !version[..7].eq_ignore_ascii_case(b"HTTP/1.") || !version[7].is_ascii_digit() {
        return None;
    }
    let mut uri_start = first_sp + 1;
    let mut uri_end = last_sp;
    while uri_start < uri_end && line[uri_start] == b' ' {
        uri_start += 1;
    }
    while uri_end > uri_start && line[uri_end - 1] == b' ' {
        uri_end -= 1;
    }
    if uri_start == uri_end {
        return None;
    }

    let header_start = line_end + 1;
    let mut host: Option<Range<usize>> = None;
    let mut pos = header_start;
    let len = payload.len();
    let (header_end, body) = loop {
        if pos >= len {
            // The segment ends inside the header block (or right at its start).
            break (len, len..len);
        }
        match payload[pos..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                let line_end = pos + n;
                let line = strip_cr(&payload[pos..line_end]);
                if line.is_empty() {
                    // The empty line: the header block ends before it.
                    break (pos, line_end + 1..len);
                }
                if host.is_none() {
                    host = host_value(payload, pos, pos + line.len());
                }
                pos = line_end + 1;
            }
            None => {
                // A header line cut by the end of the segment.
                if host.is_none() {
                    host = host_value(payload, pos, len);
                }
                break (len, len..len);
            }
        }
    };
    Some(HttpRegions {
        method: 0..first_sp,
        uri: uri_start..uri_end,
        host: host.unwrap_or(header_start..header_start),
        header: header_start..header_end,
        body,
    })
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The trimmed value of `payload[start..end]` if that line is a Host header.
fn host_value(payload: &[u8], start: usize, end: usize) -> Option<Range<usize>> {
    let line = &payload[start..end];
    if line.len() < 5 || !line[..5].eq_ignore_ascii_case(b"host:") {
        return None;
    }
    let mut s = start + 5;
    let mut e = end;
    while s < e && matches!(payload[s], b' ' | b'\t') {
        s += 1;
    }
    while e > s && matches!(payload[e - 1], b' ' | b'\t' | b'\r') {
        e -= 1;
    }
    Some(s..e)
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
