//! The kernel heap: Talc (`talc` crate) as the global allocator, growing on
//! demand with physically contiguous runs of frames reached through the
//! direct map.
//!
//! Why Talc: a boundary-tagged, binned allocator with near-constant-time
//! allocation and O(1) free, `no_std` on stable, and a `Source` hook to
//! grow the heap when it runs dry, so no heap size is fixed at boot.
//! A linked-list allocator would be O(n) per allocation; a fixed arena
//! would waste RAM on small guests and run out on big ones.
//!
//! The heap lock is a spin lock taken with interrupts enabled: interrupt
//! handlers must not allocate. The heap is usable once `mm::init` has
//! switched to the kernel's page tables (the direct map then covers all of
//! RAM).

use super::frames;
use crate::arch::layout::PHYS_MAP_BASE;
use core::alloc::Layout;
use sanos_kernel::memmap::PAGE_SIZE;
use talc::base::binning::Binning;
use talc::base::Talc;
use talc::source::Source;

/// Smallest step by which the heap grows.
const GROW_MIN: usize = 1 << 20;

/// Grows the heap from the frame allocator.
#[derive(Debug)]
pub struct FrameSource;

// SAFETY: `acquire` touches only the `Talc` it is given and the frame
// allocator (its own lock, never held by heap users); it does not allocate.
unsafe impl Source for FrameSource {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        // Room for the request, its alignment, and Talc's bookkeeping.
        let wanted = layout.size() + layout.align() + 4 * talc::base::CHUNK_UNIT + 256;
        let bytes = wanted.max(GROW_MIN).next_multiple_of(PAGE_SIZE as usize);
        let phys = frames::alloc_contiguous(bytes / PAGE_SIZE as usize).ok_or(())?;
        // SAFETY: the frames were just taken from the allocator, so this
        // memory is ours alone; the direct map covers all RAM once paging
        // is up, which is before the first allocation.
        let claimed = unsafe { talc.claim((PHYS_MAP_BASE + phys) as *mut u8, bytes) };
        claimed.map(|_| ()).ok_or(())
    }
}

#[global_allocator]
static HEAP: talc::TalcLock<spin::mutex::SpinMutex<()>, FrameSource> = talc::TalcLock::new(FrameSource);
