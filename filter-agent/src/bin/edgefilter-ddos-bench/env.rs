//! The benchmark's network: a sender and a receiver namespace joined by
//! one veth pair per dropper, a private bpffs for xdp-filter, and the
//! receive side's NAPI threads. Everything is removed when [`Env`] is
//! dropped, also on error and panic; namespaces of earlier runs that were
//! killed before cleaning up are removed at start.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

pub const NETNS_PREFIX: &str = "efddos-";
const TMP_PREFIX: &str = "edgefilter-ddos-bench-";

/// Frames go from `sender` (in the sender namespace) to `receiver`.
#[derive(Clone, Debug)]
pub struct Pair {
    pub sender: String,
    pub receiver: String,
}

pub struct Env {
    pub sender_ns: String,
    pub receiver_ns: String,
    /// A bpffs of our own, for xdp-filter's pins (LIBXDP_BPFFS).
    pub bpffs: PathBuf,
    tmp: PathBuf,
    bpffs_mounted: bool,
}

pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

pub fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// `sh -c script` inside namespace `ns` (`ip netns exec`: with that
/// namespace's /sys).
pub fn sh_in(ns: &str, script: &str) -> Result<Output> {
    run(Command::new("ip").args(["netns", "exec", ns, "sh", "-c", script]))
}

fn pid_alive(pid: u32) -> bool {
    // Gone, or a zombie waiting to be reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| st.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// Namespaces and scratch directories of earlier runs whose process is gone.
fn remove_stale() {
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(pid) = name.strip_prefix(NETNS_PREFIX).and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !pid_alive(pid) {
                eprintln!("removing stale namespace {name} of a previous benchmark run");
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(TMP_PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !pid_alive(pid) {
                let bpffs = e.path().join("bpffs");
                let _ = Command::new("umount").arg(&bpffs).stderr(Stdio::null()).status();
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Env {
    pub fn new() -> Result<Env> {
        remove_stale();
        let pid = std::process::id();
        let tmp = std::env::temp_dir().join(format!("{TMP_PREFIX}{pid}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("bpffs")).with_context(|| format!("creating {}", tmp.display()))?;
        let mut env = Env {
            sender_ns: format!("{NETNS_PREFIX}{pid}-s"),
            receiver_ns: format!("{NETNS_PREFIX}{pid}-r"),
            bpffs: tmp.join("bpffs"),
            tmp,
            bpffs_mounted: false,
        };
        for ns in [env.sender_ns.clone(), env.receiver_ns.clone()] {
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&env.bpffs)).context("mounting a bpffs for xdp-filter")?;
        env.bpffs_mounted = true;
        Ok(env)
    }

    /// A veth pair `s<tag>` (sender namespace, MAC `src_mac`) -> `r<tag>`
    /// (receiver namespace, MAC `dst_mac`), both up.
    pub fn add_pair(&self, tag: &str, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Result<Pair> {
        let pair = Pair { sender: format!("s{tag}"), receiver: format!("r{tag}") };
        let mac = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        let (s, r) = (&self.sender_ns, &self.receiver_ns);
        ip(&["-n", s, "link", "add", &pair.sender, "address", &mac(src_mac), "type", "veth", "peer", "name", &pair.receiver, "address", &mac(dst_mac), "netns", r])?;
        ip(&["-n", s, "link", "set", &pair.sender, "up"])?;
        ip(&["-n", r, "link", "set", &pair.receiver, "up"])?;
        Ok(pair)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for ns in [&self.sender_ns, &self.receiver_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        if self.bpffs_mounted {
            let _ = Command::new("umount").arg(&self.bpffs).status();
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`: sockets,
/// interface names and XDP attachments it makes are that namespace's.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only, with an open namespace fd.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| bail!("a thread in namespace {ns} panicked"))
    })
}

/// GRO on `dev` (ETHTOOL_SGRO): a veth runs NAPI, and so accepts frames
/// transmitted to it with XDP, only with an XDP program attached or GRO on.
pub fn set_gro(ns: &str, dev: &str) -> Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_SGRO: u32 = 0x2c;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    in_netns(ns, || {
        let mut value = EthtoolValue { cmd: ETHTOOL_SGRO, data: 1 };
        // SAFETY: a plain socket; ifreq zeroed, name copied within bounds,
        // ifr_data pointing at `value` for the duration of the ioctl.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            if fd < 0 {
                bail!("socket: {}", std::io::Error::last_os_error());
            }
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, s) in ifr.ifr_name.iter_mut().zip(dev.bytes().take(libc::IFNAMSIZ - 1)) {
                *d = s as libc::c_char;
            }
            ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
            let rc = libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if rc != 0 {
                bail!("ETHTOOL_SGRO on {dev}: {err}");
            }
        }
        Ok(())
    })
}

fn napi_threads() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            if comm.starts_with("napi/") {
                out.push((pid, comm.trim().to_string()));
            }
        }
    }
    out
}

/// Turns on threaded NAPI for `dev` (its NAPI must exist: XDP attached or
/// GRO on) and returns the pid of its kernel thread, so receive work can
/// be placed, prioritised and timed (`/proc/<pid>/schedstat`).
pub fn threaded_napi(ns: &str, dev: &str) -> Result<i32> {
    let before: Vec<i32> = napi_threads().into_iter().map(|(p, _)| p).collect();
    sh_in(ns, &format!("echo 1 > /sys/class/net/{dev}/threaded"))?;
    let prefix = format!("napi/{dev}-");
    for _ in 0..50 {
        let new: Vec<(i32, String)> = napi_threads().into_iter().filter(|(p, c)| !before.contains(p) && c.starts_with(&prefix)).collect();
        match new.len() {
            0 => std::thread::sleep(std::time::Duration::from_millis(20)),
            1 => return Ok(new[0].0),
            _ => bail!("{} new NAPI threads for {dev} (expected one receive queue): {new:?}", new.len()),
        }
    }
    bail!("no NAPI thread appeared for {dev} after enabling threaded NAPI")
}

pub fn pin(pid: i32, cpu: usize) -> Result<()> {
    // SAFETY: zeroed set, CPU_SET within CPU_SETSIZE (checked).
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            bail!("cpu {cpu} out of range");
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity({pid}, cpu {cpu}): {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// SCHED_FIFO at `prio` for `pid` (0: the calling thread); `reset_on_fork`
/// keeps child processes on the normal scheduler.
pub fn fifo(pid: i32, prio: i32, reset_on_fork: bool) -> Result<()> {
    let param = libc::sched_param { sched_priority: prio };
    let policy = libc::SCHED_FIFO | if reset_on_fork { libc::SCHED_RESET_ON_FORK } else { 0 };
    // SAFETY: a valid parameter block.
    if unsafe { libc::sched_setscheduler(pid, policy, &param) } != 0 {
        bail!("sched_setscheduler({pid}, SCHED_FIFO {prio}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// CPU time of a thread so far (`/proc/<pid>/schedstat`, ns).
pub fn cpu_ns(pid: i32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).with_context(|| format!("reading /proc/{pid}/schedstat"))?;
    text.split_whitespace().next().and_then(|v| v.parse().ok()).with_context(|| format!("/proc/{pid}/schedstat: {text:?}"))
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
