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
//! The heap lock masks interrupts while held ([`IrqSpinlock`]), so
//! interrupt handlers (timer callbacks, wake-ups) may allocate without
//! deadlocking against the code they interrupted. The heap is usable once
//! `mm::init` has switched to the kernel's page tables (the direct map then
//! covers all of RAM).

use super::{frames, xlate, PAGE_SIZE};
use crate::arch::cpu;
use core::alloc::Layout;
use core::sync::atomic::{AtomicBool, Ordering};
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
        let first = frames::alloc_contiguous(bytes / PAGE_SIZE as usize).ok_or(())?;
        let base = xlate::direct_map(first.start_address());
        // SAFETY: the frames were just taken from the allocator, so this
        // memory is ours alone; the direct map covers all RAM once paging
        // is up, which is before the first allocation.
        let claimed = unsafe { talc.claim(base.as_mut_ptr(), bytes) };
        claimed.map(|_| ()).ok_or(())
    }
}

/// A mutex over [`IrqSpinlock`]: for data the page fault handler or an
/// interrupt handler may need while a preemptible thread holds it.
pub type IrqMutex<T> = talc::lock_api::Mutex<IrqSpinlock, T>;

/// A spin lock that masks interrupts while held and restores them after.
pub struct IrqSpinlock {
    locked: AtomicBool,
    /// Whether interrupts were enabled when the holder took the lock.
    saved: AtomicBool,
}

// SAFETY: `lock` returns only once this CPU holds `locked` (acquire), and
// `unlock` releases it (release); interrupts stay masked in between so an
// interrupt handler on this CPU cannot spin on a lock its own CPU holds.
unsafe impl talc::lock_api::RawMutex for IrqSpinlock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: IrqSpinlock = IrqSpinlock {
        locked: AtomicBool::new(false),
        saved: AtomicBool::new(false),
    };
    type GuardMarker = talc::lock_api::GuardNoSend;

    fn lock(&self) {
        let was_enabled = cpu::irq_save();
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        self.saved.store(was_enabled, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        let was_enabled = cpu::irq_save();
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.saved.store(was_enabled, Ordering::Relaxed);
            true
        } else {
            cpu::irq_restore(was_enabled);
            false
        }
    }

    unsafe fn unlock(&self) {
        let was_enabled = self.saved.load(Ordering::Relaxed);
        self.locked.store(false, Ordering::Release);
        cpu::irq_restore(was_enabled);
    }
}

static TALC: talc::TalcLock<IrqSpinlock, FrameSource> = talc::TalcLock::new(FrameSource);

/// Bytes handed out and not yet freed.
static IN_USE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Talc with a count of the bytes in use, for `/status` and for tests
/// that check a load gave its memory back.
struct CountingHeap;

// SAFETY: every call is passed to Talc unchanged; the count is a side
// effect that allocates nothing.
unsafe impl core::alloc::GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's promises are Talc's.
        let pointer = unsafe { TALC.alloc(layout) };
        if !pointer.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { TALC.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let new = unsafe { TALC.realloc(pointer, layout, new_size) };
        if !new.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            IN_USE.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static HEAP: CountingHeap = CountingHeap;

/// Heap bytes in use (allocated and not freed).
pub fn in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

mod tests {
    use crate::ktest::{ktest, TestResult};
    use crate::mm::PAGE_SIZE;
    use crate::{kassert, kassert_eq};
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    #[ktest]
    fn heap_small_and_large_allocations() -> TestResult {
        let boxed = Box::new(0x1234_5678_u64);
        kassert_eq!(*boxed, 0x1234_5678);
        // Larger than one growth step: the heap must grow to serve it.
        let big: Vec<u32> = (0..(3 << 20) / 4).collect();
        kassert_eq!(big.len(), (3 << 20) / 4);
        kassert!(
            big.iter().enumerate().all(|(i, &v)| v as usize == i),
            "large vector corrupted"
        );
        let mut small: Vec<Box<[u8; 24]>> = Vec::new();
        for i in 0..1000u32 {
            small.push(Box::new([i as u8; 24]));
        }
        kassert!(small
            .iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|&x| x == i as u8)));
        Ok(())
    }

    #[ktest]
    fn heap_respects_alignment() -> TestResult {
        const SIZE: usize = PAGE_SIZE as usize;
        // `repr(align)` takes a literal only: PAGE_SIZE.
        #[repr(align(4096))]
        struct Page([u8; SIZE]);
        let pages: Vec<Box<Page>> = (0..4).map(|_| Box::new(Page([7; SIZE]))).collect();
        for page in &pages {
            kassert_eq!(page.as_ref() as *const Page as usize % SIZE, 0);
            kassert_eq!(page.0[SIZE - 1], 7);
        }
        Ok(())
    }
}
