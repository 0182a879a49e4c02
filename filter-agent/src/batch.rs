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
        let err = io::Error::last_os_error();
        return Err(io::Error::new(err.kind(), format!("{err} after {} of {count} elements", attr.count)));
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

/// Deletes `keys`; every key must exist.
pub fn delete<K: Copy>(fd: RawFd, keys: &[K]) -> io::Result<()> {
    for k in keys.chunks(CHUNK) {
        let done = call(BPF_MAP_DELETE_BATCH, fd, k.as_ptr().cast(), std::ptr::null(), k.len())?;
        if done != k.len() {
            return Err(io::Error::other(format!("batch delete stopped after {done} of {} elements", k.len())));
        }
    }
    Ok(())
}
