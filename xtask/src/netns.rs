//! Network namespaces for the demo: creation, running code inside one, and
//! a teardown that works from a Drop guard and from a signal handler alike.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd;

/// Held while the topology is created or torn down, so a signal handler
/// never tears down half-way through a step (and, once it has started,
/// the main thread creates nothing more).
static LOCK: Mutex<()> = Mutex::new(());

pub fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

pub fn add(ns: &str) -> Result<()> {
    cmd::run(&mut cmd::new("ip", ["netns", "add", ns]))?;
    cmd::run(&mut cmd::new("ip", ["-n", ns, "link", "set", "lo", "up"]))
}

/// `ip -n <ns> <args...>`, with the command echoed when `echo` is set.
pub fn ip(ns: &str, args: &str, echo: bool) -> Result<()> {
    let mut c = cmd::new("ip", ["-n", ns]);
    c.args(args.split_whitespace());
    if echo {
        println!("  {}", cmd::display(&c));
    }
    cmd::capture(&mut c).map(drop)
}

/// `ip netns exec <ns> <program> <args...>`.
pub fn exec<I, S>(ns: &str, program: impl AsRef<std::ffi::OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = cmd::new("ip", ["netns", "exec", ns]);
    c.arg(program).args(args);
    c
}

/// Runs `f` on a thread that has entered namespace `ns`: sockets it opens
/// live there.
pub fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = Path::new("/run/netns").join(ns);
    let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
    std::thread::spawn(move || {
        // SAFETY: a valid namespace fd; setns affects this thread only.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {}: {}", path.display(), std::io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread inside namespace {ns} panicked"))?
}

/// Spawns `f` on a thread inside `ns` and returns its handle (for a
/// listener that must be up before traffic is sent).
pub fn spawn_within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<std::thread::JoinHandle<Result<T>>> {
    let path = Path::new("/run/netns").join(ns);
    let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
    Ok(std::thread::spawn(move || {
        // SAFETY: as in `within`.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {}: {}", path.display(), std::io::Error::last_os_error());
        }
        f()
    }))
}

/// Stops every process inside the namespaces (SIGTERM, then SIGKILL after
/// a grace period) and deletes them. Returns the namespaces it removed.
/// Idempotent; safe to call with nothing to remove.
pub fn teardown(namespaces: &[&str]) -> Vec<String> {
    let me = std::process::id() as i32;
    let present: Vec<&str> = namespaces.iter().copied().filter(|n| exists(n)).collect();
    let mut pids: Vec<i32> = Vec::new();
    for ns in &present {
        if let Ok(out) = cmd::capture(&mut cmd::new("ip", ["netns", "pids", ns])) {
            pids.extend(out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()).filter(|&p| p != me));
        }
    }
    stop(&pids, Duration::from_secs(3));
    let mut removed = Vec::new();
    for ns in present {
        if cmd::succeeds(&mut cmd::new("ip", ["netns", "del", ns])) || !exists(ns) {
            removed.push(ns.to_string());
        } else {
            eprintln!("warning: could not delete namespace {ns}; remove it with `ip netns del {ns}`");
        }
    }
    removed
}

/// SIGTERM to each pid, SIGKILL to those still alive after `grace`.
pub fn stop(pids: &[i32], grace: Duration) {
    for &p in pids {
        // SAFETY: plain kill(2) on a pid we were given.
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in pids {
        if alive(p) {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Running (not gone, not a zombie). Reaps our own exited children.
fn alive(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: non-blocking waitpid; ECHILD for processes that are not ours.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}
