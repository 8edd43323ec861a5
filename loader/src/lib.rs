//! Loading static Linux x86-64 ELF executables: the pure, host-tested half.
//!
//! [`elf`] reads an executable and checks everything the kernel relies on
//! before it maps a byte: the header, the program headers, and each loadable
//! segment. It accepts fixed-address executables (`ET_EXEC`) and static
//! position-independent ones (`ET_DYN` without `PT_INTERP`), and refuses
//! anything else with a [`LoadError`] that names the problem.
//!
//! [`stack`] builds the image of the initial process stack (argument and
//! environment strings, `argc`, `argv`, `envp` and the auxiliary vector)
//! exactly as Linux's `create_elf_tables` lays it out, and reads one back the
//! way a C runtime does.
//!
//! Neither module touches memory or page tables: the kernel maps the segments
//! the [`Program`] describes and copies the [`InitialStack`] bytes itself.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod elf;
pub mod stack;

pub use elf::{Kind, LoadError, Program, Prot, Segment, Tls};
pub use stack::{Auxv, InitialStack, StackError, StackSpec, StackView};

/// The page size the loader maps with (x86-64 base pages).
pub const PAGE_SIZE: u64 = 4096;

/// The first address above user space: Linux's `TASK_SIZE_MAX` on x86-64
/// with 4-level paging, `(1 << 47) - PAGE_SIZE`. Every segment ends at or
/// below it.
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// Rounds `value` down to a multiple of `align`, a power of two.
const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Rounds `value` up to a multiple of `align`, a power of two; `None` on
/// overflow.
const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(align_down(v, align)),
        None => None,
    }
}
