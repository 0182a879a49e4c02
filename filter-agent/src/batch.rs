//! Batched map writes (BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH): one
//! syscall per chunk instead of one per prefix, which is what makes a
//! million-prefix feed load in well under a second. aya 0.14 has no batch
//! API, so this is the raw syscall.
use std::io;
use std::os::fd::RawFd;

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Elements per syscall: large enough to amortise the call, small enough
/// that one call never holds the CPU for long.
const CHUNK: usize = 65_536;

/// `union bpf_attr` as used by the batch commands. The kernel rejects
/// non-zero bytes past the fields it knows, so the whole union is zeroed
/// before the batch fields are set.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
    _rest: [u64; 9],
}

fn call(cmd: libc::c_long, fd: RawFd, keys: *const u8, values: *const u8, count: usize) -> io::Result<usize> {
    // SAFETY: all-zero is a valid BatchAttr.
    let mut attr: BatchAttr = unsafe { std::mem::zeroed() };
    attr.keys = keys as u64;
    attr.values = values as u64;
    attr.count = count as u32;
    attr.map_fd = fd as u32;
    // SAFETY: the kernel reads `count` keys/values from the given buffers,
    // which the callers size accordingly, and writes back only `count`.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, &mut attr as *mut BatchAttr, std::mem::size_of::<BatchAttr>() as u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr.count as usize)
}

/// Inserts or replaces `keys[i] -> values[i]`.
pub fn update<K: Copy, V: Copy>(fd: RawFd, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len());
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let done = call(BPF_MAP_UPDATE_BATCH, fd, k.as_ptr().cast(), v.as_ptr().cast(), k.len())?;
        if done != k.len() {
            return Err(io::Error::other(format!("batch update stopped after {done} of {} elements", k.len())));
        }
    }
    Ok(())
}

/// Deletes `keys`. Keys that are already absent (a write that failed half
/// way) are skipped, so clearing a generation always completes.
pub fn delete<K: Copy>(fd: RawFd, keys: &[K]) -> io::Result<()> {
    let mut rest = keys;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(CHUNK)];
        match call(BPF_MAP_DELETE_BATCH, fd, chunk.as_ptr().cast(), std::ptr::null(), chunk.len()) {
            Ok(done) if done == chunk.len() => rest = &rest[done..],
            // The kernel stops at the first missing key and reports how many
            // it deleted before it; step over the missing one.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) || e.kind() == io::ErrorKind::NotFound => {
                let done = deleted_before_error(fd, chunk)?;
                rest = &rest[(done + 1).min(rest.len())..];
            }
            Ok(done) => rest = &rest[done..],
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes keys one by one up to the first missing one; returns how many
/// were deleted. Only used on the rare partial-failure path.
fn deleted_before_error<K: Copy>(fd: RawFd, keys: &[K]) -> io::Result<usize> {
    const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
    for (i, key) in keys.iter().enumerate() {
        #[repr(C)]
        struct ElemAttr {
            map_fd: u32,
            _pad: u32,
            key: u64,
            value: u64,
            flags: u64,
            _rest: [u64; 12],
        }
        // SAFETY: all-zero is a valid ElemAttr; the kernel reads one key.
        let mut attr: ElemAttr = unsafe { std::mem::zeroed() };
        attr.map_fd = fd as u32;
        attr.key = key as *const K as u64;
        let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_DELETE_ELEM, &mut attr as *mut ElemAttr, std::mem::size_of::<ElemAttr>() as u32) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOENT) {
                return Ok(i);
            }
            return Err(err);
        }
    }
    Ok(keys.len())
}
