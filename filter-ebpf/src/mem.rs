//! Access to per-CPU scratch memory that `bpf_loop` callbacks share with
//! their caller.
//!
//! Loop state is written before and read after `bpf_loop` through raw
//! pointers with volatile accesses: the callback changes it behind the
//! compiler's back (no reference to the scratch may live across the call,
//! or LLVM may keep values in registers or reorder the stores).

/// `x` through memory: LLVM cannot replace it with an equal value whose
/// bounds the verifier does not know (it otherwise drops the masks that
/// prove helper lengths in range).
#[inline(always)]
pub fn opaque(x: u32) -> u32 {
    // SAFETY: reading a local.
    unsafe { core::ptr::read_volatile(&x) }
}

#[inline(always)]
pub fn put<T>(p: *mut T, v: T) {
    // SAFETY: `p` points into a per-CPU scratch map value.
    unsafe { core::ptr::write_volatile(p, v) }
}

#[inline(always)]
pub fn get<T>(p: *const T) -> T {
    // SAFETY: as for `put`.
    unsafe { core::ptr::read_volatile(p) }
}

/// Copies a 16-byte address as two 8-byte words: an array assignment
/// compiles to sixteen byte loads and stores (twice, through a stack
/// temporary, when volatile). Both sides must be 8-byte aligned; the
/// structs that hold addresses check it where they are declared.
#[inline(always)]
pub fn copy_addr(dst: *mut [u8; 16], src: *const [u8; 16]) {
    let (d, s) = (dst as *mut u64, src as *const u64);
    // SAFETY: both point to 16 bytes on an 8-byte boundary (see above).
    unsafe {
        core::ptr::write_volatile(d, core::ptr::read_volatile(s));
        core::ptr::write_volatile(d.add(1), core::ptr::read_volatile(s.add(1)));
    }
}

/// Keeps the first `len` bits of a 16-byte address (network order) and
/// clears the rest, a word at a time (see `copy_addr`: 8-byte aligned).
#[inline(always)]
pub fn mask_addr(addr: *mut [u8; 16], len: u8) {
    let w = addr as *mut u64;
    let mut i = 0;
    while i < 2 {
        let keep = (len as i32 - i * 64).clamp(0, 64) as u32;
        // The mask in network order: `keep` leading one bits.
        let m = if keep == 0 { 0 } else { (u64::MAX << (64 - keep)).to_be() };
        // SAFETY: as for `copy_addr`.
        unsafe { core::ptr::write_volatile(w.add(i as usize), core::ptr::read_volatile(w.add(i as usize)) & m) };
        i += 1;
    }
}

/// Clears a 16-byte address (two stores; an array of zeros compiles to
/// a `memset` call). 8-byte aligned, as for `copy_addr`.
#[inline(always)]
pub fn zero_addr(addr: *mut [u8; 16]) {
    let w = addr as *mut u64;
    // SAFETY: as for `copy_addr`.
    unsafe {
        core::ptr::write_volatile(w, 0);
        core::ptr::write_volatile(w.add(1), 0);
    }
}

/// `put` of one field of the struct `p` points to (no temporary of the
/// whole struct on the stack: the frame budget is 512 bytes for the whole
/// call chain).
macro_rules! set {
    ($p:expr, $field:ident, $v:expr) => {
        // SAFETY: a field of a struct in the scratch map value.
        $crate::mem::put(unsafe { core::ptr::addr_of_mut!((*$p).$field) }, $v)
    };
}
pub(crate) use set;
