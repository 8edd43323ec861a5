//! Memory: physical frames, the kernel's page tables, kernel stacks and MMIO
//! mappings, and the heap.
//!
//! [`init`] runs once on the boot page tables: it builds the frame
//! allocator from the memory map, builds the kernel's own page tables
//! (direct map of RAM, W^X kernel image, guard pages left unmapped) and
//! switches to them. The heap grows on demand from the frame allocator.
//!
//! Addresses are typed: [`x86_64::PhysAddr`] (pseudo-physical under Xen
//! PV: what the kernel calls physical), [`x86_64::VirtAddr`], and
//! [`xlate::MachineAddr`] for what Xen PV page-table entries hold.
//! [`xlate`] translates between physical and machine addresses (the
//! identity natively) and says where a physical address is reached. Raw
//! `u64`s remain where a value is a register, a hypercall argument or a
//! page-table entry. A page is [`PAGE_SIZE`] bytes.

pub mod frames;
pub mod heap;
pub mod paging;
pub mod xlate;

pub use paging::{is_kernel_stack, is_stack_guard, map_mmio, map_phys, KernelStack};
/// The page (and frame) size, the kernel's one definition (the host-tested
/// code's, which the memory map and the frame bitmap use).
pub use pure::mm::memmap::PAGE_SIZE;

use pure::boot::bootinfo::BootInfo;
use x86_64::PhysAddr;

/// Why memory could not be brought up (the kernel cannot go on).
#[derive(Debug)]
pub enum MmError {
    NoUsableMemory,
    NoRoomForFrameBitmap { bytes: u64 },
    FrameBitmap(pure::mm::frame_bitmap::FrameError),
    OutOfFrames,
    Map(paging::MapError),
}

impl core::fmt::Display for MmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmError::NoUsableMemory => write!(f, "the memory map lists no usable RAM"),
            MmError::NoRoomForFrameBitmap { bytes } => {
                write!(
                    f,
                    "no {bytes} bytes of usable RAM below 4 GiB for the frame bitmap"
                )
            }
            MmError::FrameBitmap(error) => write!(f, "frame bitmap: {error}"),
            MmError::OutOfFrames => write!(f, "out of frames while building the page tables"),
            MmError::Map(error) => write!(f, "building the page tables: {error:?}"),
        }
    }
}

/// Brings up frames and paging. Call once, with interrupts off.
/// `shared_pages` are physical pages outside RAM that must stay reachable
/// at their direct-map address (a hypervisor's console ring).
pub fn init(boot: &mut BootInfo<'_>, shared_pages: &[PhysAddr]) -> Result<(), MmError> {
    frames::init(&mut boot.memory)?;
    paging::init(&boot.memory, shared_pages)?;
    Ok(())
}
