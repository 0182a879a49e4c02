//! xdp-filter (xdp-tools) as the side-by-side reference: loaded on a veth
//! inside a namespace this benchmark creates, with one source-address rule
//! per family matching the dropped test packets; its attached program is
//! then run with BPF_PROG_TEST_RUN on the same frames.
//!
//! libxdp needs a bpffs. The host may have none mounted, and `ip netns
//! exec` gives each command a private mount namespace anyway, so loading
//! and adding the rules happen in one shell that mounts its own bpffs; the
//! attached program (and the maps it references) outlive that mount.
use std::os::fd::OwnedFd;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

use crate::gen::{V4_DROP_SRC, V6_DROP_SRC};
use crate::sys;

const NETNS_PREFIX: &str = "efbench-";

/// Deletes the namespace (and the veth pair inside it) when dropped, also
/// on error and panic.
pub struct NetnsGuard {
    pub name: String,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

pub struct XdpFilter {
    /// Declared before the guard: the fd is closed before the namespace goes.
    pub prog_fd: OwnedFd,
    pub prog_id: u32,
    pub prog_name: String,
    pub mode: &'static str,
    pub version: String,
    pub interface: String,
    pub rules: Vec<String>,
    _netns: NetnsGuard,
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// Namespaces left by earlier runs of this benchmark that were killed
/// before their guard ran (their process id is gone).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix(NETNS_PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
        // Gone, or a zombie waiting to be reaped.
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|st| st.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')));
        if pid != std::process::id() && !alive {
            eprintln!("removing stale namespace {name} of a previous benchmark run");
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

pub fn version() -> String {
    Command::new("xdp-filter")
        .args(["load", "--version"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub fn setup() -> Result<XdpFilter> {
    remove_stale_namespaces();
    let pid = std::process::id();
    let ns = format!("{NETNS_PREFIX}{pid}");
    let veth_a = format!("efb{pid}a");
    let veth_b = format!("efb{pid}b");
    ip(&["netns", "add", &ns])?;
    let guard = NetnsGuard { name: ns.clone() };
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    ip(&["-n", &ns, "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b])?;
    ip(&["-n", &ns, "link", "set", &veth_a, "up"])?;
    ip(&["-n", &ns, "link", "set", &veth_b, "up"])?;

    let rules = vec![format!("ip {V4_DROP_SRC} --mode src"), format!("ip {V6_DROP_SRC} --mode src")];
    let mut errors = Vec::new();
    let mut loaded = None;
    for mode in ["native", "skb"] {
        let mut script = String::from("set -e; mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf; ");
        script += &format!("xdp-filter load {veth_a} --mode {mode}; ");
        for r in &rules {
            script += &format!("xdp-filter {r}; ");
        }
        script += "xdp-filter status";
        match run(Command::new("ip").args(["netns", "exec", &ns, "sh", "-c", &script])) {
            Ok(_) => {
                loaded = Some(mode);
                break;
            }
            Err(e) => {
                errors.push(format!("{mode}: {e:#}"));
                // Best effort: detach whatever got attached before retrying.
                let _ = Command::new("ip").args(["-n", &ns, "link", "set", &veth_a, "xdp", "off"]).output();
                let _ = Command::new("ip").args(["-n", &ns, "link", "set", &veth_a, "xdpgeneric", "off"]).output();
            }
        }
    }
    let Some(mode) = loaded else { bail!("xdp-filter could not be loaded: {}", errors.join("; ")) };

    let out = ip(&["-n", &ns, "-d", "-j", "link", "show", "dev", &veth_a])?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing `ip -j link show`")?;
    let xdp = &json[0]["xdp"];
    let prog = if xdp["prog"].is_object() { &xdp["prog"] } else { &xdp["attached"][0]["prog"] };
    let prog_id = prog["id"].as_u64().context("no XDP program id on the veth after xdp-filter load")? as u32;
    let prog_name = prog["name"].as_str().unwrap_or("?").to_string();
    let prog_fd = sys::prog_fd_by_id(prog_id).with_context(|| format!("BPF_PROG_GET_FD_BY_ID {prog_id}"))?;
    Ok(XdpFilter { prog_fd, prog_id, prog_name, mode, version: version(), interface: veth_a, rules, _netns: guard })
}
