//! What drops the flood at the receiver's veth, and each one's own count
//! of what it dropped:
//!
//! * `floor`: `XDP_DROP` for everything, counting in a per-CPU array (a
//!   dozen instructions loaded by hand): the cost of receiving a frame on
//!   a veth and dropping it with nothing decided;
//! * `floor-read`: the same after reading the EtherType, the IPv4
//!   protocol, destination and both ports (passing what is not IPv4): what bringing the frame's headers in costs, the least any
//!   filter pays;
//! * `edgefilter`: the agent's XDP program through
//!   `filter_agent::dataplane::Dataplane`, native mode, counted by its
//!   per-reason counters;
//! * `nftables`: a `netdev` ingress chain on the veth (GRO turned on so the
//!   veth runs NAPI without an XDP program), rule counters read with
//!   `nft -j`;
//! * `xdp-filter` (xdp-tools): loaded in native mode with its own port
//!   rules, counted by its `xdp_stats_map` (XDP_DROP), read from the pin.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

use anyhow::{bail, Context, Result};

use filter_agent::dataplane::{AttachMode, Dataplane};
use filter_common::maps::Reason;

use crate::env::{self, Env, Pair};

pub enum Counter {
    Floor(Floor),
    Edgefilter(Box<Dataplane>),
    Nft { ns: String, chain: String },
    XdpFilter(aya::maps::PerCpuArray<aya::maps::MapData, [u64; 2]>),
}

pub struct Dropper {
    /// Short name used in tables and JSON.
    pub name: &'static str,
    pub what: String,
    /// The rules as given to the dropper (commands, nft ruleset, order).
    pub rules: Vec<String>,
    pub pair: Pair,
    /// Kernel thread receiving on `pair.receiver` (threaded NAPI).
    pub napi_pid: i32,
    pub mode: String,
    pub counter: Counter,
}

impl Dropper {
    /// Packets dropped so far, by the dropper's own count.
    pub fn dropped(&self) -> Result<u64> {
        match &self.counter {
            Counter::Floor(f) => f.count(),
            Counter::Edgefilter(dp) => {
                let totals = dp.reason_totals()?;
                Ok(totals.iter().filter(|((_, _, dropped), _)| *dropped).map(|(_, t)| t.packets).sum())
            }
            Counter::Nft { ns, chain } => nft_counter(ns, chain),
            Counter::XdpFilter(stats) => {
                const XDP_DROP: u32 = 1;
                Ok(stats.get(&XDP_DROP, 0)?.iter().map(|v| v[0]).sum())
            }
        }
    }

    /// Drops by edgefilter reason (rate_limit, l4, ...), for the report.
    pub fn reasons(&self) -> Option<Vec<(String, u64)>> {
        let Counter::Edgefilter(dp) = &self.counter else { return None };
        let totals = dp.reason_totals().ok()?;
        let mut out: Vec<(String, u64)> = Vec::new();
        for r in Reason::ALL {
            let n: u64 = totals.iter().filter(|((_, reason, dropped), _)| *reason == r && *dropped).map(|(_, t)| t.packets).sum();
            if n > 0 {
                out.push((r.name().to_string(), n));
            }
        }
        Some(out)
    }

    pub fn dataplane_mut(&mut self) -> Option<&mut Dataplane> {
        match &mut self.counter {
            Counter::Edgefilter(dp) => Some(dp),
            _ => None,
        }
    }
}

/// Threaded NAPI on the receiver, pinned to `cpu`, SCHED_FIFO `prio`.
fn napi(env: &Env, pair: &Pair, cpu: usize, prio: Option<i32>, warnings: &mut Vec<String>) -> Result<i32> {
    let pid = env::threaded_napi(&env.receiver_ns, &pair.receiver)?;
    env::pin(pid, cpu)?;
    if let Some(p) = prio {
        if let Err(e) = env::fifo(pid, p, false) {
            warnings.push(format!("receive thread of {} left on the normal scheduler: {e:#}", pair.receiver));
        }
    }
    Ok(pid)
}

pub struct Placement {
    pub cpu: usize,
    pub prio: Option<i32>,
}

pub fn floor(env: &Env, pair: Pair, read_headers: bool, at: &Placement, warnings: &mut Vec<String>) -> Result<Dropper> {
    let ns = env.receiver_ns.clone();
    let dev = pair.receiver.clone();
    let f = env::in_netns(&ns, move || Floor::attach(&dev, read_headers))?;
    let napi_pid = napi(env, &pair, at.cpu, at.prio, warnings)?;
    let (name, what, rules) = if read_headers {
        (
            "floor-read",
            "reads the EtherType, IPv4 protocol, destination and both ports, then XDP_DROP with one per-CPU counter: the least any filter does",
            "IPv4 frames: r0 = XDP_DROP after reading 5 header fields and counting (hand-assembled, 29 instructions)",
        )
    } else {
        ("floor", "XDP_DROP everything, one per-CPU counter (no decision): the veth receive floor", "r0 = XDP_DROP after counting (hand-assembled, 12 instructions)")
    };
    Ok(Dropper {
        name,
        what: what.into(),
        rules: vec![rules.into()],
        pair,
        napi_pid,
        mode: "native (bpf_link)".into(),
        counter: Counter::Floor(f),
    })
}

/// The edgefilter program with `rules`, attached natively to the receiver.
#[allow(clippy::too_many_arguments)]
pub fn edgefilter(env: &Env, pair: Pair, name: &'static str, what: String, order_text: String, rules: &filter_common::rules::RuleSet, at: &Placement, warnings: &mut Vec<String>) -> Result<Dropper> {
    let mut dp = Dataplane::load(filter_agent::dataplane::Capacity::default()).context("loading the edgefilter data plane (are you root?)")?;
    dp.apply_rules(rules).context("applying the benchmark's rules")?;
    let dev = pair.receiver.clone();
    let mode = env::in_netns(&env.receiver_ns, || dp.attach(&dev, AttachMode::Native, 0).map(str::to_string))?;
    let napi_pid = napi(env, &pair, at.cpu, at.prio, warnings)?;
    dp.reset_counters()?;
    Ok(Dropper { name, what, rules: vec![order_text], pair, napi_pid, mode, counter: Counter::Edgefilter(Box::new(dp)) })
}

pub fn nftables(env: &Env, pair: Pair, name: &'static str, what: String, rules: &[String], at: &Placement, warnings: &mut Vec<String>) -> Result<Dropper> {
    let version = Command::new("nft").arg("--version").output().context("nft not found (Debian package nftables; `cargo xtask setup` installs it)")?;
    if !version.status.success() {
        bail!("`nft --version` failed");
    }
    let chain = format!("{}_in", pair.receiver);
    let mut script = format!("table netdev efddos {{\n  chain {chain} {{\n    type filter hook ingress device \"{}\" priority -500; policy accept;\n", pair.receiver);
    for r in rules {
        script += &format!("    {r}\n");
    }
    script += "  }\n}\n";
    let path = env.bpffs.parent().unwrap_or(&env.bpffs).join(format!("{chain}.nft"));
    std::fs::write(&path, &script).with_context(|| format!("writing {}", path.display()))?;
    env::run(Command::new("ip").args(["netns", "exec", &env.receiver_ns, "nft", "-f"]).arg(&path)).context("loading the nftables ruleset")?;
    env::set_gro(&env.receiver_ns, &pair.receiver)?;
    let napi_pid = napi(env, &pair, at.cpu, at.prio, warnings)?;
    Ok(Dropper {
        name,
        what,
        rules: vec![script],
        pair,
        napi_pid,
        mode: format!("netdev ingress, priority -500, GRO on ({})", String::from_utf8_lossy(&version.stdout).trim()),
        counter: Counter::Nft { ns: env.receiver_ns.clone(), chain },
    })
}

fn nft_counter(ns: &str, chain: &str) -> Result<u64> {
    let out = env::run(Command::new("ip").args(["netns", "exec", ns, "nft", "-j", "list", "chain", "netdev", "efddos", chain]))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing `nft -j list chain`")?;
    let mut total = 0;
    for item in v["nftables"].as_array().context("nft -j: no nftables array")? {
        for e in item["rule"]["expr"].as_array().into_iter().flatten() {
            total += e["counter"]["packets"].as_u64().unwrap_or(0);
        }
    }
    Ok(total)
}

pub fn xdp_filter_version() -> String {
    Command::new("xdp-filter")
        .args(["load", "--version"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// xdp-filter loaded on the receiver with `rules` (arguments of
/// `xdp-filter`, e.g. `port 123 --mode src --proto udp`); its pins go to
/// the benchmark's own bpffs (LIBXDP_BPFFS).
pub fn xdp_filter(env: &Env, pair: Pair, rules: &[String], at: &Placement, warnings: &mut Vec<String>) -> Result<Dropper> {
    let mut script = format!("set -e; xdp-filter load {} --mode native; ", pair.receiver);
    for r in rules {
        script += &format!("xdp-filter {r}; ");
    }
    let load = || env::run(Command::new("ip").args(["netns", "exec", &env.receiver_ns, "env"]).arg(format!("LIBXDP_BPFFS={}", env.bpffs.display())).args(["sh", "-c", &script]));
    if let Err(first) = load() {
        // Once more from scratch (a failed load can leave a program or pins behind).
        let _ = Command::new("ip").args(["-n", &env.receiver_ns, "link", "set", "dev", &pair.receiver, "xdp", "off"]).output();
        let _ = std::fs::remove_dir_all(env.bpffs.join("xdp-filter"));
        load().with_context(|| format!("loading xdp-filter (xdp-tools), twice; first error: {first:#}"))?;
        warnings.push(format!("xdp-filter loaded at the second attempt; the first failed: {first:#}"));
    }
    let pin = env.bpffs.join("xdp-filter").join("xdp_stats_map");
    let data = aya::maps::MapData::from_pin(&pin).with_context(|| format!("opening {}", pin.display()))?;
    let stats = aya::maps::PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data)).context("xdp_stats_map is not a per-CPU array of {packets, bytes}")?;
    let napi_pid = napi(env, &pair, at.cpu, at.prio, warnings)?;
    let out = env::ip(&["-n", &env.receiver_ns, "-d", "-j", "link", "show", "dev", &pair.receiver])?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let xdp = &json[0]["xdp"];
    let prog = if xdp["prog"].is_object() { &xdp["prog"] } else { &xdp["attached"][0]["prog"] };
    let prog_name = prog["name"].as_str().unwrap_or("?").to_string();
    Ok(Dropper {
        name: "xdp-filter",
        what: format!("{} (program `{prog_name}`), port rules", xdp_filter_version()),
        rules: rules.iter().map(|r| format!("xdp-filter {r}")).collect(),
        pair,
        napi_pid,
        mode: "native".into(),
        counter: Counter::XdpFilter(stats),
    })
}

// ----------------------------------------------------------------- floor --

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Attribute blocks are zeroed whole (the kernel rejects stray non-zero
/// bytes; Rust does not zero padding).
#[repr(C)]
union Attr {
    map_create: [u32; 5],
    lookup: LookupAttr,
    load: LoadAttr,
    link: [u32; 4],
    raw: [u8; 128],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct LookupAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: a zeroed 128-byte block with the command's fields filled in;
    // its pointers refer to live buffers.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut Attr, std::mem::size_of::<Attr>() as u32) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a fresh fd from the kernel, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    let mut b = [0u8; 8];
    b[0] = op;
    b[1] = (src << 4) | dst;
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    u64::from_le_bytes(b)
}

pub struct Floor {
    map: OwnedFd,
    _prog: OwnedFd,
    /// The XDP attachment; closing it detaches.
    _link: OwnedFd,
    cpus: usize,
}

impl Floor {
    /// Loads the program and attaches it (native, bpf_link) to `dev` in
    /// this thread's namespace.
    fn attach(dev: &str, read_headers: bool) -> Result<Floor> {
        let mut attr = Attr { raw: [0; 128] };
        attr.map_create = [BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1, 0];
        let map = owned(bpf(BPF_MAP_CREATE, &mut attr).context("BPF_MAP_CREATE (per-CPU array)")?);
        let fd = map.as_raw_fd();
        let count = [
            insn(0x62, 10, 0, -4, 0),           // *(u32 *)(r10 - 4) = 0
            insn(0xbf, 2, 10, 0, 0),            // r2 = r10
            insn(0x07, 2, 0, 0, -4),            // r2 += -4
            insn(0x18, 1, 1, 0, fd),            // r1 = map (BPF_PSEUDO_MAP_FD)
            insn(0, 0, 0, 0, 0),                //   (second half of the 64-bit load)
            insn(0x85, 0, 0, 0, 1),             // call bpf_map_lookup_elem
            insn(0x15, 0, 0, 3, 0),             // if r0 == 0 goto +3
            insn(0x79, 1, 0, 0, 0),             // r1 = *(u64 *)(r0 + 0)
            insn(0x07, 1, 0, 0, 1),             // r1 += 1
            insn(0x7b, 0, 1, 0, 0),             // *(u64 *)(r0 + 0) = r1
            insn(0xb7, 0, 0, 0, 1),             // r0 = XDP_DROP
            insn(0x95, 0, 0, 0, 0),             // exit
        ];
        // Optionally read what any filter must read: the EtherType, the
        // protocol, the destination and both ports (of an IPv4 header
        // without options), so the frame's headers come in; anything not
        // IPv4 passes.
        // Jumps from `read[at]` to `pass`, past the rest of `read` and `count`.
        const READ_LEN: usize = 15;
        let to_pass = |at: usize| (READ_LEN + count.len() - at - 1) as i16;
        let read: [u64; READ_LEN] = [
            insn(0x61, 2, 1, 0, 0),             // r2 = ctx->data
            insn(0x61, 3, 1, 4, 0),             // r3 = ctx->data_end
            insn(0xbf, 4, 2, 0, 0),             // r4 = r2
            insn(0x07, 4, 0, 0, 38),            // r4 += 38 (Ethernet, IPv4, ports)
            insn(0x2d, 4, 3, to_pass(4), 0),    // if r4 > r3 goto pass
            insn(0x69, 5, 2, 12, 0),            // r5 = EtherType
            insn(0x55, 5, 0, to_pass(6), 0x0008), // if r5 != htons(0x0800) goto pass
            insn(0x71, 5, 2, 23, 0),            // r5 = protocol
            insn(0x61, 4, 2, 30, 0),            // r4 = destination
            insn(0x69, 3, 2, 34, 0),            // r3 = source port
            insn(0x69, 0, 2, 36, 0),            // r0 = destination port
            insn(0x0f, 5, 4, 0, 0),             // r5 += r4
            insn(0x0f, 5, 3, 0, 0),             // r5 += r3
            insn(0x0f, 5, 0, 0, 0),             // r5 += r0
            insn(0x15, 5, 0, to_pass(14), 0),   // if r5 == 0 goto pass
        ];
        let pass = [
            insn(0xb7, 0, 0, 0, 2),             // r0 = XDP_PASS
            insn(0x95, 0, 0, 0, 0),             // exit
        ];
        let insns: Vec<u64> = if read_headers { read.iter().chain(&count).chain(&pass).copied().collect() } else { count.to_vec() };
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..13].copy_from_slice(if read_headers { b"ddos_floor_rd" } else { b"ddos_floor_dr" });
        let mut attr = Attr { raw: [0; 128] };
        attr.load = LoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
        };
        let prog = owned(bpf(BPF_PROG_LOAD, &mut attr).context("loading the floor XDP program")?);
        let cname = std::ffi::CString::new(dev)?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {dev}");
        }
        let mut attr = Attr { raw: [0; 128] };
        attr.link = [prog.as_raw_fd() as u32, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE];
        let link = owned(bpf(BPF_LINK_CREATE, &mut attr).with_context(|| format!("attaching the floor program to {dev} (BPF_LINK_CREATE, native)"))?);
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e).context("number of possible CPUs")?;
        Ok(Floor { map, _prog: prog, _link: link, cpus })
    }

    fn count(&self) -> Result<u64> {
        let key = 0u32;
        let mut values = vec![0u64; self.cpus];
        let mut attr = Attr { raw: [0; 128] };
        attr.lookup = LookupAttr { map_fd: self.map.as_raw_fd() as u32, _pad: 0, key: &key as *const u32 as u64, value: values.as_mut_ptr() as u64, flags: 0 };
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).context("reading the floor counter")?;
        Ok(values.iter().sum())
    }
}
