//! The benchmark's own little world, torn down on drop (also on error and
//! panic): a temporary directory, a bpffs mounted in it (root mount
//! namespace), a network namespace with a veth pair, and the agent process.
//!
//! Teardown order: stop the agent (SIGTERM, SIGKILL after a grace period),
//! `filter-agent detach` (removes the pinned links and maps), unmount the
//! bpffs, remove the directory, delete the namespace; then check that
//! nothing is left.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

pub const PREFIX: &str = "efreload";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM make the current wait fail instead of killing the
/// process, so the guards still clean up.
pub fn catch_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn check_stop() -> Result<()> {
    if STOP.load(Ordering::Relaxed) {
        bail!("interrupted by a signal");
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

fn netns_names() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

fn is_mountpoint(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return false };
    let p = path.to_string_lossy();
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(&p))
}

fn alive(pid: u32) -> bool {
    // Gone, or a zombie waiting to be reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| st.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// What the teardown did; `clean` only if nothing was left behind.
#[derive(Serialize, Clone, Default, Debug)]
pub struct CleanupReport {
    pub agent: String,
    pub detach: Vec<String>,
    pub bpffs_unmounted: bool,
    pub tempdir_removed: bool,
    pub netns_removed: bool,
    /// `ip netns list` has no namespace of this run afterwards.
    pub netns_list_clean: bool,
    pub problems: Vec<String>,
    pub clean: bool,
}

pub struct Env {
    pub dir: PathBuf,
    pub bpffs: PathBuf,
    pub netns: String,
    pub veth: String,
    pub instance: String,
    pub agent_bin: PathBuf,
    pub agent: Option<Child>,
    mounted: bool,
    netns_created: bool,
    cleaned: Option<CleanupReport>,
}

impl Env {
    /// Removes what killed earlier runs left (their process is gone), then
    /// creates the directory, the namespace with its veth pair and the
    /// bpffs.
    pub fn create(agent_bin: &Path) -> Result<Env> {
        remove_stale(agent_bin);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("{PREFIX}-{pid}"));
        let mut env = Env {
            bpffs: dir.join("bpffs"),
            dir,
            netns: format!("{PREFIX}{pid}"),
            veth: format!("efr{pid}a"),
            instance: format!("{PREFIX}{pid}"),
            agent_bin: agent_bin.to_path_buf(),
            agent: None,
            mounted: false,
            netns_created: false,
            cleaned: None,
        };
        if env.dir.exists() {
            std::fs::remove_dir_all(&env.dir).with_context(|| format!("removing {}", env.dir.display()))?;
        }
        std::fs::create_dir_all(&env.bpffs).with_context(|| format!("creating {}", env.bpffs.display()))?;
        mount_bpffs(&env.bpffs)?;
        env.mounted = true;
        let _ = Command::new("ip").args(["netns", "del", &env.netns]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &env.netns])?;
        env.netns_created = true;
        let peer = format!("efr{pid}b");
        ip(&["-n", &env.netns, "link", "set", "lo", "up"])?;
        ip(&["-n", &env.netns, "link", "add", &env.veth, "type", "veth", "peer", "name", &peer])?;
        ip(&["-n", &env.netns, "link", "set", &env.veth, "up"])?;
        ip(&["-n", &env.netns, "link", "set", &peer, "up"])?;
        Ok(env)
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it
    /// creates live there.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::spawn(move || {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            // SAFETY: setns on this thread only, with a valid fd.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    }

    /// `ip netns exec <ns> filter-agent run --config <config>`, output to
    /// `log`. `ip netns exec` execs the agent, so the child's pid is the
    /// agent's; this waits until the exec happened.
    pub fn start_agent(&mut self, config: &Path, log: &Path) -> Result<u32> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(&self.agent_bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting the agent")?;
        let pid = child.id();
        self.agent = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "filter-agent" {
                return Ok(pid);
            }
            if let Some(status) = self.agent.as_mut().expect("just set").try_wait()? {
                bail!("the agent exited at once ({status})");
            }
            if Instant::now() > deadline {
                bail!("process {pid} did not become filter-agent (comm `{}`)", comm.trim());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Err if the agent has exited.
    pub fn agent_running(&mut self) -> Result<()> {
        if let Some(child) = self.agent.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("the agent exited ({status})");
            }
        }
        Ok(())
    }

    pub fn cleanup(&mut self) -> CleanupReport {
        if let Some(r) = &self.cleaned {
            return r.clone();
        }
        let agent = match self.agent.take() {
            None => "not started".into(),
            Some(mut child) => stop(&mut child),
        };
        let mut r = CleanupReport { agent, ..CleanupReport::default() };
        if self.mounted {
            let pins = self.bpffs.join(&self.instance);
            match run(Command::new(&self.agent_bin).arg("detach").arg("--bpffs").arg(&self.bpffs).arg("--instance").arg(&self.instance)) {
                Ok(out) => r.detach = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect(),
                Err(e) => r.problems.push(format!("detach: {e:#}")),
            }
            if pins.exists() {
                r.problems.push(format!("{} still exists after detach", pins.display()));
            }
            r.bpffs_unmounted = umount(&self.bpffs, &mut r.problems);
            self.mounted = !r.bpffs_unmounted;
        } else {
            r.bpffs_unmounted = true;
        }
        if self.mounted {
            r.problems.push(format!("{} left in place: the bpffs is still mounted there", self.dir.display()));
        } else if self.dir.exists() {
            match std::fs::remove_dir_all(&self.dir) {
                Ok(()) => r.tempdir_removed = true,
                Err(e) => r.problems.push(format!("removing {}: {e}", self.dir.display())),
            }
        } else {
            r.tempdir_removed = true;
        }
        if self.netns_created {
            match ip(&["netns", "del", &self.netns]) {
                Ok(_) => {
                    r.netns_removed = true;
                    self.netns_created = false;
                }
                Err(e) => r.problems.push(format!("deleting namespace: {e:#}")),
            }
        } else {
            r.netns_removed = true;
        }
        let left: Vec<String> = netns_names().into_iter().filter(|n| *n == self.netns).collect();
        r.netns_list_clean = left.is_empty();
        if !r.netns_list_clean {
            r.problems.push(format!("`ip netns list` still shows {}", left.join(", ")));
        }
        r.clean = r.problems.is_empty() && r.bpffs_unmounted && r.tempdir_removed && r.netns_removed;
        self.cleaned = Some(r.clone());
        r
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.cleaned.is_none() {
            let r = self.cleanup();
            for p in &r.problems {
                eprintln!("cleanup: {p}");
            }
        }
    }
}

fn mount_bpffs(path: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let fstype = std::ffi::CString::new("bpf")?;
    // SAFETY: mount(2) with valid C strings.
    if unsafe { libc::mount(fstype.as_ptr(), c.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) } != 0 {
        bail!("mounting a bpffs at {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts; a busy mount is detached lazily (and reported).
fn umount(path: &Path, problems: &mut Vec<String>) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: umount2(2) with a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return true;
    }
    let e = std::io::Error::last_os_error();
    // SAFETY: as above.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        problems.push(format!("unmounting {}: {e}; detached lazily instead", path.display()));
        return true;
    }
    problems.push(format!("unmounting {}: {e}", path.display()));
    false
}

/// SIGTERM (the agent writes its "stop" record and exits), SIGKILL after
/// 15 s.
fn stop(child: &mut Child) -> String {
    let pid = child.id();
    if let Ok(Some(status)) = child.try_wait() {
        return format!("had already exited ({status})");
    }
    // SAFETY: signalling our own child, which has not been reaped yet.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return format!("stopped by SIGTERM ({status})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    "killed (SIGTERM not honoured within 15 s)".into()
}

/// Namespaces and directories of earlier runs whose process is gone.
fn remove_stale(agent_bin: &Path) {
    for name in netns_names() {
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !alive(pid) {
            eprintln!("removing stale namespace {name} of an earlier run");
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&format!("{PREFIX}-")).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        eprintln!("removing {} of an earlier run", e.path().display());
        stop_stale_agents(&e.path().join("agent.toml"));
        let bpffs = e.path().join("bpffs");
        if is_mountpoint(&bpffs) {
            let _ = Command::new(agent_bin).arg("detach").arg("--bpffs").arg(&bpffs).arg("--instance").arg(format!("{PREFIX}{pid}")).status();
            let mut problems = Vec::new();
            umount(&bpffs, &mut problems);
        }
        if !is_mountpoint(&bpffs) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// An agent an earlier, killed run started (its command line names that
/// run's config) outlives the run: stop it before removing its files.
fn stop_stale_agents(config: &Path) {
    let needle = config.as_os_str().as_encoded_bytes().to_vec();
    let Ok(procs) = std::fs::read_dir("/proc") else { return };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"filter-agent")) && args.contains(&needle.as_slice()) {
            eprintln!("stopping agent {pid} of an earlier run");
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && alive(pid as u32) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(pid as u32) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
