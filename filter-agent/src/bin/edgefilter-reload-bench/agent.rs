//! Watching the running agent from outside: its audit log, its memory and
//! CPU time in /proc, and its HTTP status endpoint.
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::env::{check_stop, Env};

/// Complete records of the audit log (a line without its `\n` is still
/// being written and is skipped).
pub fn records(log: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(log) else { return Vec::new() };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub fn seq(r: &Value) -> u64 {
    r["seq"].as_u64().unwrap_or(0)
}

pub fn action(r: &Value) -> &str {
    r["action"].as_str().unwrap_or("")
}

/// The highest `seq` in the log so far (0 if empty).
pub fn last_seq(log: &Path) -> u64 {
    records(log).iter().map(seq).max().unwrap_or(0)
}

/// Waits for the first record after `after` that `want` accepts. Fails on
/// a rejected rule set, when the agent exits, on a signal and on timeout.
pub fn wait_for(env: &mut Env, log: &Path, after: u64, what: &str, timeout: Duration, want: impl Fn(&Value) -> bool) -> Result<(Value, Instant)> {
    let deadline = Instant::now() + timeout;
    loop {
        for r in records(log).into_iter().filter(|r| seq(r) > after) {
            if want(&r) {
                return Ok((r, Instant::now()));
            }
            if action(&r).ends_with("-rejected") {
                bail!("the agent rejected the rule set: {}", r["details"]);
            }
        }
        env.agent_running()?;
        check_stop()?;
        if Instant::now() > deadline {
            bail!("no {what} record in the audit log within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Memory figures of /proc/<pid>/status, in KiB.
#[derive(serde::Serialize, Clone, Copy, Debug, Default)]
pub struct Memory {
    pub vm_hwm_kib: u64,
    pub vm_rss_kib: u64,
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub rss_shmem_kib: u64,
}

pub fn memory(pid: u32) -> Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        vm_hwm_kib: field("VmHWM"),
        vm_rss_kib: field("VmRSS"),
        rss_anon_kib: field("RssAnon"),
        rss_file_kib: field("RssFile"),
        rss_shmem_kib: field("RssShmem"),
    })
}

/// Resets VmHWM to the current RSS (`echo 5 > /proc/<pid>/clear_refs`), so
/// the next reading is the peak of what happens from now on.
pub fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").with_context(|| format!("resetting the peak RSS of {pid}"))
}

/// User and system CPU seconds of the whole process (all threads).
pub fn cpu(pid: u32) -> Result<(f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let rest = text.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
    // Fields after the command: state is field 3, utime 14, stime 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let utime: f64 = f.get(11).and_then(|v| v.parse().ok()).context("utime")?;
    let stime: f64 = f.get(12).and_then(|v| v.parse().ok()).context("stime")?;
    Ok((utime / hz, stime / hz))
}

/// A free TCP port on 127.0.0.1 inside the namespace.
pub fn free_port(env: &Env) -> Result<u16> {
    env.within(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 in the namespace")?;
        Ok(l.local_addr()?.port())
    })
}

/// `GET path` from the agent's HTTP endpoint inside the namespace.
pub fn http_get(env: &Env, port: u16, path: &str) -> Result<String> {
    let path = path.to_string();
    env.within(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").context("no HTTP header")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
        }
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            return Ok(dechunk(body));
        }
        Ok(body.to_string())
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The last lines of the agent's log, for error messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
