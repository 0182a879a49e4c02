//! Raw `bpf(2)` calls the benchmark needs and aya 0.14 does not expose for
//! programs it did not load (BPF_PROG_GET_FD_BY_ID), plus the kernel memory
//! readings (`/proc/self/fdinfo`, `/proc/meminfo`).
//!
//! Every attribute block is a 128-byte union zeroed as a whole before the
//! command's fields are filled in: the kernel rejects non-zero bytes past
//! the fields it knows, and Rust does not zero struct padding.
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

#[repr(C)]
#[derive(Clone, Copy)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct GetIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
union Attr {
    test: TestRunAttr,
    get_id: GetIdAttr,
    info: InfoAttr,
    raw: [u8; 128],
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, fully initialised 128-byte attribute block;
    // every pointer in it refers to a buffer the caller keeps alive.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut Attr, std::mem::size_of::<Attr>() as u32) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An fd for a loaded program by its id (BPF_PROG_GET_FD_BY_ID).
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = Attr { raw: [0; 128] };
    attr.get_id = GetIdAttr { id, next_id: 0, open_flags: 0 };
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?;
    // SAFETY: the kernel just handed us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// One BPF_PROG_TEST_RUN: the program's return value, the kernel's
/// average ns per run (integer, truncated) and the wall time of the whole
/// syscall divided by `repeat` (fractional; includes the syscall and any
/// interruption, so it is an upper bound).
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub retval: u32,
    pub kernel_ns: u32,
    pub wall_ns: f64,
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// SIGINT/SIGTERM make the next (or current) test run fail instead of
/// killing the process, so the namespace guard still runs.
pub fn catch_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn check_stop() -> io::Result<()> {
    if STOP.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted by a signal"));
    }
    Ok(())
}

pub fn test_run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> io::Result<Run> {
    loop {
        check_stop()?;
        let mut attr = Attr { raw: [0; 128] };
        attr.test = TestRunAttr {
            prog_fd: prog.as_raw_fd() as u32,
            retval: 0,
            data_size_in: frame.len() as u32,
            data_size_out: 0,
            data_in: frame.as_ptr() as u64,
            data_out: 0,
            repeat,
            duration: 0,
            ctx_size_in: 0,
            ctx_size_out: 0,
            ctx_in: 0,
            ctx_out: 0,
            flags: 0,
            cpu: 0,
            batch_size: 0,
        };
        let start = Instant::now();
        match bpf(BPF_PROG_TEST_RUN, &mut attr) {
            Ok(_) => {
                let wall = start.elapsed();
                // SAFETY: the kernel wrote back the `test` variant.
                let t = unsafe { attr.test };
                return Ok(Run { retval: t.retval, kernel_ns: t.duration, wall_ns: wall.as_nanos() as f64 / f64::from(repeat.max(1)) });
            }
            // A signal arrived during the loop: the kernel gives up; rerun.
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Name of a BPF map (BPF_OBJ_GET_INFO_BY_FD), or None if `fd` is not a map.
fn map_name(fd: RawFd) -> Option<String> {
    // struct bpf_map_info: type, id, key_size, value_size, max_entries,
    // map_flags (6 x u32), then name[16]. The buffer is larger than the
    // kernel's struct and zeroed, which the kernel accepts.
    let mut info = [0u8; 256];
    let mut attr = Attr { raw: [0; 128] };
    attr.info = InfoAttr { bpf_fd: fd as u32, info_len: info.len() as u32, info: info.as_mut_ptr() as u64 };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).ok()?;
    let name = &info[24..40];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// What `/proc/self/fdinfo/<fd>` says about one of this process's maps.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MapMemory {
    pub map_id: u64,
    pub max_entries: u64,
    /// `memlock:`; since Linux 6.4 the map's own estimate of its memory
    /// (for an LPM trie: element size x current entries).
    pub memlock_bytes: u64,
}

/// The map named `name` among this process's open fds (the benchmark keeps
/// one data plane alive at a time; the newest map id wins otherwise).
pub fn own_map_memory(name: &str) -> Option<MapMemory> {
    let mut best: Option<MapMemory> = None;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else { continue };
        let Ok(text) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else { continue };
        if !text.lines().any(|l| l.starts_with("map_type:")) {
            continue;
        }
        if map_name(fd).as_deref() != Some(name) {
            continue;
        }
        let field = |key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0)
        };
        let m = MapMemory { map_id: field("map_id:"), max_entries: field("max_entries:"), memlock_bytes: field("memlock:") };
        if best.as_ref().is_none_or(|b| m.map_id > b.map_id) {
            best = Some(m);
        }
    }
    best
}

/// System-wide kernel memory figures from `/proc/meminfo`, in bytes.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MemInfo {
    pub slab: i64,
    pub sunreclaim: i64,
    pub mem_available: i64,
}

pub fn meminfo() -> MemInfo {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |key: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok()))
            .unwrap_or(0)
            * 1024
    };
    MemInfo { slab: kb("Slab:"), sunreclaim: kb("SUnreclaim:"), mem_available: kb("MemAvailable:") }
}

impl MemInfo {
    pub fn delta(self, before: MemInfo) -> MemInfo {
        MemInfo {
            slab: self.slab - before.slab,
            sunreclaim: self.sunreclaim - before.sunreclaim,
            mem_available: self.mem_available - before.mem_available,
        }
    }
}

/// Peak resident set size of this process (VmHWM), bytes.
pub fn peak_rss() -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

/// `prog_id:` of a program fd, from `/proc/self/fdinfo`.
pub fn prog_id(fd: BorrowedFd<'_>) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    text.lines().find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse().ok()))
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_XDP: u32 = 6;

#[repr(C)]
#[derive(Clone, Copy)]
struct ProgLoadAttr {
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

/// Loads `r0 = XDP_PASS; exit`: its test-run cost is the floor of the
/// harness (context setup, the loop, the call into the JIT image).
pub fn load_noop_xdp() -> io::Result<OwnedFd> {
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 2; BPF_JMP | BPF_EXIT.
    let insns: [u64; 2] = [u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]), u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0])];
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"bench_noop");
    #[repr(C)]
    union LoadAttr {
        load: ProgLoadAttr,
        raw: [u8; 128],
    }
    let mut attr = LoadAttr { raw: [0; 128] };
    attr.load = ProgLoadAttr {
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
    // SAFETY: valid zeroed attribute block pointing at live buffers.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &mut attr as *mut LoadAttr, 128u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}
