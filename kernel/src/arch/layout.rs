//! The kernel's virtual address space (x86_64 4-level paging, Intel SDM
//! Vol. 3A 4.5). Each area owns whole PML4 slots so that areas never share
//! a page-table page.
//!
//! | area | base | PML4 slot |
//! |---|---|---|
//! | (Xen PV: the hypervisor's, M2P table at its start) | `0xffff_8000_0000_0000` | 256..271 |
//! | direct map of physical memory | `0xffff_8880_0000_0000` | 273.. |
//! | MMIO mappings (uncached) | `0xffff_fd00_0000_0000` | 506 |
//! | kernel stacks, each above an unmapped guard page | `0xffff_fe00_0000_0000` | 508 |
//! | kernel image (code model "kernel") | `0xffff_ffff_8000_0000` | 511 |

/// Where the kernel image is linked; the linker script uses the same value.
pub const KERNEL_VMA: u64 = 0xFFFF_FFFF_8000_0000;
/// Start of the direct map: physical address `p` is visible at
/// `PHYS_MAP_BASE + p`.
pub const PHYS_MAP_BASE: u64 = 0xFFFF_8880_0000_0000;
/// Start of the MMIO window.
pub const MMIO_BASE: u64 = 0xFFFF_FD00_0000_0000;
/// Size of the MMIO window (one PML4 slot).
pub const MMIO_SIZE: u64 = 1 << 39;
/// Start of the kernel-stack area.
pub const KSTACK_BASE: u64 = 0xFFFF_FE00_0000_0000;
/// Size of the kernel-stack area (one PML4 slot).
pub const KSTACK_AREA_SIZE: u64 = 1 << 39;
/// The boot page tables map the first 4 GiB into the direct map; the
/// kernel's own tables map all of RAM.
pub const BOOT_PHYS_MAP_LIMIT: u64 = 4 << 30;
