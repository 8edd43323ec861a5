//! The kernel's physical frame allocator: one [`FrameBitmap`] (host-tested
//! in `pure::mm::frame_bitmap`) behind a lock, with its bitmap placed in
//! usable RAM found in the memory map.
//!
//! Lock order: the page-table lock and the heap lock may be held while
//! taking this one; code holding this lock takes no other.

use super::xlate;
use super::MmError;
use super::PAGE_SIZE;
use pure::mm::frame_bitmap::{storage_words, FrameBitmap};
use pure::mm::memmap::{MemoryMap, RegionKind};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

/// Interrupt-safe: the page fault handler allocates frames.
static FRAMES: super::heap::IrqMutex<Option<FrameBitmap<'static>>> =
    super::heap::IrqMutex::new(None);

/// Physical page 0 is never handed out: a frame at address 0 would look
/// like a null pointer to every consumer.
const FIRST_FRAME: u64 = PAGE_SIZE;

pub(super) fn init(map: &mut MemoryMap) -> Result<(), MmError> {
    let highest = map.highest_usable_end();
    if highest == 0 {
        return Err(MmError::NoUsableMemory);
    }
    let words = storage_words(highest);
    let bytes = ((words * 8) as u64).next_multiple_of(PAGE_SIZE);
    let place = map
        .find_free(bytes, PAGE_SIZE, xlate::early_limit().as_u64())
        .ok_or(MmError::NoRoomForFrameBitmap { bytes })?;
    crate::boot::collect::reserve(
        map,
        place,
        place + bytes,
        RegionKind::FrameBitmap,
        "frame bitmap",
    );
    // SAFETY: [place, place + bytes) is usable RAM below the early limit
    // (find_free), now reserved for the bitmap alone; `phys_to_virt`
    // reaches it there for good (the boot direct map, which the kernel's
    // tables keep, or Xen PV's bootstrap mapping, which stays), 8-byte
    // aligned.
    let storage = unsafe {
        core::slice::from_raw_parts_mut(
            xlate::phys_to_virt(PhysAddr::new(place)).as_mut_ptr(),
            words,
        )
    };
    let mut bitmap = FrameBitmap::new(storage, highest).map_err(MmError::FrameBitmap)?;
    for (start, end) in map.usable_frames() {
        bitmap.add_free_range(start.max(FIRST_FRAME), end.max(FIRST_FRAME));
    }
    log::info!(
        "mm: {} MiB usable in {} free frames; bitmap {} KiB at {place:#x}",
        map.total_usable_bytes() >> 20,
        bitmap.free_frames(),
        bytes >> 10
    );
    *FRAMES.lock() = Some(bitmap);
    Ok(())
}

fn with<R>(f: impl FnOnce(&mut FrameBitmap<'static>) -> R) -> Option<R> {
    FRAMES.lock().as_mut().map(f)
}

/// The frame at `addr`, which the bitmap handed out (page-aligned, below
/// the end of RAM).
fn frame(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

/// One free frame, anywhere.
pub fn alloc() -> Option<PhysFrame> {
    with(|frames| frames.alloc()).flatten().map(frame)
}

/// One free frame that ends at or below `limit`.
pub fn alloc_below(limit: PhysAddr) -> Option<PhysFrame> {
    with(|frames| frames.alloc_below(limit.as_u64()))
        .flatten()
        .map(frame)
}

/// `count` physically contiguous free frames; returns the first.
pub fn alloc_contiguous(count: usize) -> Option<PhysFrame> {
    with(|frames| frames.alloc_contiguous(count, 1))
        .flatten()
        .map(frame)
}

/// Returns a frame. Freeing a frame twice is logged and ignored.
pub fn free(frame: PhysFrame) {
    let addr = frame.start_address().as_u64();
    if let Some(Err(error)) = with(|frames| frames.free(addr)) {
        log::error!("mm: free of frame {addr:#x} refused: {error}");
    }
}

/// (free, total) frame counts.
pub fn counts() -> (usize, usize) {
    with(|frames| (frames.free_frames(), frames.total_frames())).unwrap_or((0, 0))
}

mod tests {
    use super::*;
    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    #[ktest]
    fn frames_round_trip() -> TestResult {
        let (free_before, total) = counts();
        kassert!(free_before > 0 && free_before <= total);
        let frame = alloc();
        kassert!(frame.is_some(), "no free frame");
        let Some(frame) = frame else { return Ok(()) };
        kassert!(
            frame.start_address().as_u64() >= FIRST_FRAME,
            "frame 0 handed out"
        );
        kassert_eq!(counts().0, free_before - 1);
        let second = alloc();
        kassert!(second != Some(frame), "frame handed out twice");
        free(frame);
        if let Some(second) = second {
            free(second);
        }
        kassert_eq!(counts().0, free_before);
        // A second free is refused by the bitmap and changes nothing.
        let refused = with(|frames| frames.free(frame.start_address().as_u64()).is_err());
        kassert_eq!(refused, Some(true));
        kassert_eq!(counts().0, free_before);
        Ok(())
    }

    #[ktest]
    fn frames_below_a_limit_and_contiguous() -> TestResult {
        let low = alloc_below(PhysAddr::new(16 << 20));
        kassert!(low.is_some_and(|f| f.start_address().as_u64() + PAGE_SIZE <= 16 << 20));
        if let Some(low) = low {
            free(low);
        }
        let run = alloc_contiguous(16);
        kassert!(run.is_some(), "no 16-frame run");
        if let Some(run) = run {
            for frame in PhysFrame::range(run, run + 16) {
                let addr = frame.start_address().as_u64();
                kassert!(
                    !with(|f| f.is_free(addr)).unwrap_or(true),
                    "frame {addr:#x} still free"
                );
                free(frame);
            }
        }
        Ok(())
    }
}
