//! Copying to and from user memory, for system calls.
//!
//! A user pointer is checked against the program's areas (range inside
//! the user half, area protection allows the access) before anything is
//! touched; the copy itself (`rep movsb`, with SMAP lifted by STAC/CLAC
//! for exactly its duration) resolves not-yet-present pages through the
//! page fault handler, and a fault it cannot resolve ends the copy through
//! the exception table: the system call returns `EFAULT`, never a kernel
//! fault.

use super::vm::Access;
use alloc::vec::Vec;
use pure::user::linux::Errno;

/// Copies `len` bytes from `src` to `dst` with faults caught; returns how
/// many bytes were not copied (0 when all were).
///
/// # Safety
/// One side is kernel memory valid for `len` bytes; the other a user range
/// the caller checked with [`check`].
unsafe fn raw_copy(dst: *mut u8, src: *const u8, len: usize) -> usize {
    let smap = super::entry::smap();
    let remaining: usize;
    // SAFETY: STAC (when SMAP is on; the CPU has it then) lets this copy
    // reach user pages; the copy's faults either resolve (demand paging)
    // and resume, or take the exception-table entry to label 3 with RCX
    // holding what was left; CLAC follows either way.
    unsafe {
        if smap {
            core::arch::asm!("stac", options(nomem, nostack));
        }
        core::arch::asm!(
            "2: rep movsb",
            "3:",
            ".pushsection .extable, \"a\"",
            ".balign 8",
            ".quad 2b, 3b",
            ".popsection",
            inout("rcx") len => remaining,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            inout("rax") 0u64 => _,
            options(nostack),
        );
        if smap {
            core::arch::asm!("clac", options(nomem, nostack));
        }
    }
    remaining
}

/// Checks that `[address, address + len)` is user memory the program may
/// access as `write` says.
pub fn check(address: u64, len: usize, write: bool) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    let access = Access { write, exec: false };
    if super::with_vm(|vm| vm.allows(address, len as u64, access)) {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

/// Copies user memory at `src` into `dst`.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), Errno> {
    check(src, dst.len(), false)?;
    // SAFETY: `dst` is a kernel buffer of its length; the user range was
    // checked.
    match unsafe { raw_copy(dst.as_mut_ptr(), src as *const u8, dst.len()) } {
        0 => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Copies `src` into user memory at `dst`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), Errno> {
    check(dst, src.len(), true)?;
    // SAFETY: `src` is a kernel buffer of its length; the user range was
    // checked writable.
    match unsafe { raw_copy(dst as *mut u8, src.as_ptr(), src.len()) } {
        0 => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Reads a plain value (integers, `#[repr(C)]` structs of them) from user
/// memory.
pub fn read<T: Copy + Default>(address: u64) -> Result<T, Errno> {
    let mut value = T::default();
    // SAFETY: the slice covers exactly `value`, which is plain data (the
    // callers' types are integers and structs of integers, for which any
    // bytes are a valid value).
    let bytes = unsafe {
        core::slice::from_raw_parts_mut((&raw mut value).cast::<u8>(), core::mem::size_of::<T>())
    };
    copy_from_user(bytes, address)?;
    Ok(value)
}

/// Writes a plain value to user memory.
pub fn write<T: Copy>(address: u64, value: &T) -> Result<(), Errno> {
    // SAFETY: the slice covers exactly `value`, plain data without padding
    // (the callers' `#[repr(C)]` types are laid out without holes).
    let bytes = unsafe {
        core::slice::from_raw_parts((value as *const T).cast::<u8>(), core::mem::size_of::<T>())
    };
    copy_to_user(address, bytes)
}

/// Reads a NUL-terminated string of at most `max` bytes (without the NUL):
/// `ENAMETOOLONG` when longer.
pub fn read_c_string(address: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut at = address;
    loop {
        // Up to the end of the page, so a string ending just before an
        // unmapped page is read without touching it.
        let room = (4096 - (at % 4096)) as usize;
        let mut chunk = [0u8; 4096];
        let chunk = &mut chunk[..room.min(max + 1 - out.len())];
        copy_from_user(chunk, at)?;
        if let Some(end) = chunk.iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return Ok(out);
        }
        out.extend_from_slice(chunk);
        if out.len() > max {
            return Err(Errno::ENAMETOOLONG);
        }
        at += chunk.len() as u64;
    }
}
