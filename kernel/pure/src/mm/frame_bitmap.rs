//! The physical frame allocator: one bit per 4 KiB frame, 1 meaning free,
//! over storage the caller provides (placed with `MemoryMap::find_free` and
//! reserved as `RegionKind::FrameBitmap`, since it exists before the heap).
//!
//! Frame size and alignment follow the x86_64 4-level paging structures
//! (Intel SDM vol. 3A section 4.5): every page table and every 4 KiB page
//! is a naturally aligned 4 KiB frame.
//!
//! Scans go a 64-bit word at a time and skip words with no bit of interest,
//! so even a 4 GiB map (16 Ki words) is a short walk.

use crate::mm::memmap::PAGE_SIZE;
use core::fmt;

const WORD_BITS: usize = u64::BITS as usize;

/// Words of storage needed to track every frame lying wholly below
/// `highest_phys_end`. A partial last frame is not tracked: it could never
/// be handed out whole.
pub const fn storage_words(highest_phys_end: u64) -> usize {
    // sanos targets x86_64 only, where usize is 64 bits wide: no truncation.
    (highest_phys_end / PAGE_SIZE).div_ceil(WORD_BITS as u64) as usize
}

/// Why a bitmap could not be built or a frame not freed. The bitmap is
/// unchanged in every case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// The storage has fewer words than [`storage_words`] asks for.
    StorageTooSmall {
        needed_words: usize,
        given_words: usize,
    },
    /// The address is not on a frame boundary.
    Unaligned { addr: u64 },
    /// The address lies beyond the frames the bitmap covers.
    OutOfRange { addr: u64, limit: u64 },
    /// The frame at `addr` is already free.
    DoubleFree { addr: u64 },
    /// A range with `start >= end`.
    EmptyRange { start: u64, end: u64 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::StorageTooSmall {
                needed_words,
                given_words,
            } => write!(
                f,
                "frame bitmap needs {needed_words} words of storage but got {given_words}"
            ),
            FrameError::Unaligned { addr } => {
                write!(f, "physical address {addr:#x} is not frame aligned")
            }
            FrameError::OutOfRange { addr, limit } => write!(
                f,
                "physical address {addr:#x} is beyond the tracked memory (ends at {limit:#x})"
            ),
            FrameError::DoubleFree { addr } => {
                write!(f, "frame at {addr:#x} freed while already free")
            }
            FrameError::EmptyRange { start, end } => {
                write!(f, "frame range [{start:#x}, {end:#x}) is empty")
            }
        }
    }
}

/// Bits `low..high` of a word, `low < 64`, `high <= 64`.
fn bit_span(low: usize, high: usize) -> u64 {
    let below_high = if high >= WORD_BITS {
        u64::MAX
    } else {
        (1u64 << high) - 1
    };
    below_high & (u64::MAX << low)
}

fn frame_address(frame: usize) -> u64 {
    frame as u64 * PAGE_SIZE
}

pub struct FrameBitmap<'a> {
    /// Bits for frames at or beyond `total` stay 0, so scans never find
    /// them free and need no bounds check of their own.
    words: &'a mut [u64],
    total: usize,
    free: usize,
    /// Next-fit start for [`FrameBitmap::alloc`]: just past the last frame
    /// it handed out, so repeated allocations do not rescan full words.
    hint: usize,
}

impl<'a> FrameBitmap<'a> {
    /// A bitmap covering the frames below `highest_phys_end`, all of them
    /// unavailable until [`FrameBitmap::add_free_range`] says otherwise.
    pub fn new(storage: &'a mut [u64], highest_phys_end: u64) -> Result<Self, FrameError> {
        let needed_words = storage_words(highest_phys_end);
        if storage.len() < needed_words {
            return Err(FrameError::StorageTooSmall {
                needed_words,
                given_words: storage.len(),
            });
        }
        let words = &mut storage[..needed_words];
        words.fill(0);
        Ok(Self {
            words,
            // x86_64 only: usize is 64 bits wide.
            total: (highest_phys_end / PAGE_SIZE) as usize,
            free: 0,
            hint: 0,
        })
    }

    pub fn total_frames(&self) -> usize {
        self.total
    }

    /// Kept up to date by every operation, not recounted.
    pub fn free_frames(&self) -> usize {
        self.free
    }

    /// Whether the frame containing `addr` is free.
    pub fn is_free(&self, addr: u64) -> bool {
        let frame = addr / PAGE_SIZE;
        frame < self.total as u64 && self.bit(frame as usize)
    }

    /// Makes every whole frame inside `[start, end)` and below the covered
    /// limit available; frames already free are left alone. Returns how
    /// many frames became free.
    pub fn add_free_range(&mut self, start: u64, end: u64) -> usize {
        let Some(first) = start.checked_next_multiple_of(PAGE_SIZE) else {
            return 0;
        };
        let first = first / PAGE_SIZE;
        let last = (end / PAGE_SIZE).min(self.total as u64);
        if first >= last {
            return 0;
        }
        let freed = self.set_span(first as usize, last as usize, true);
        self.free += freed;
        freed
    }

    /// A free frame: the lowest at or after the last one handed out,
    /// wrapping around to the start.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        let frame = self
            .find(self.hint, self.total, true)
            .or_else(|| self.find(0, self.hint, true))?;
        self.take(frame, 1);
        self.hint = frame + 1;
        Some(frame_address(frame))
    }

    /// The lowest free frame that ends at or below `limit`, for hardware
    /// that cannot address all of memory.
    pub fn alloc_below(&mut self, limit: u64) -> Option<u64> {
        let end = (limit / PAGE_SIZE).min(self.total as u64) as usize;
        let frame = self.find(0, end, true)?;
        self.take(frame, 1);
        Some(frame_address(frame))
    }

    /// The lowest run of `count` free frames whose first frame number is a
    /// multiple of `align_frames` (0 counts as 1). `None` for `count == 0`.
    pub fn alloc_contiguous(&mut self, count: usize, align_frames: usize) -> Option<u64> {
        if count == 0 || count > self.free {
            return None;
        }
        let align = align_frames.max(1);
        let mut candidate = 0;
        loop {
            let first_free = self.find(candidate, self.total, true)?;
            let start = first_free.checked_next_multiple_of(align)?;
            let end = start.checked_add(count)?;
            if end > self.total {
                return None;
            }
            match self.find(start, end, false) {
                None => {
                    self.take(start, count);
                    return Some(frame_address(start));
                }
                // Every run starting at or before the blocker contains it.
                Some(blocker) => candidate = blocker + 1,
            }
        }
    }

    /// Returns one frame. Refused, with nothing changed, when `addr` is not
    /// frame aligned, beyond the covered memory, or already free.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(FrameError::Unaligned { addr });
        }
        let limit = frame_address(self.total);
        if addr >= limit {
            return Err(FrameError::OutOfRange { addr, limit });
        }
        self.free_range(addr, addr + PAGE_SIZE)
    }

    /// Returns the frames of `[start, end)`, both ends frame aligned.
    /// Refused as a whole, with nothing changed, if any frame of the range
    /// is out of range or already free.
    pub fn free_range(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        for addr in [start, end] {
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(FrameError::Unaligned { addr });
            }
        }
        if start >= end {
            return Err(FrameError::EmptyRange { start, end });
        }
        let limit = frame_address(self.total);
        if end > limit {
            let addr = start.max(limit);
            return Err(FrameError::OutOfRange { addr, limit });
        }
        let (first, last) = ((start / PAGE_SIZE) as usize, (end / PAGE_SIZE) as usize);
        if let Some(frame) = self.find(first, last, true) {
            return Err(FrameError::DoubleFree {
                addr: frame_address(frame),
            });
        }
        self.free += self.set_span(first, last, true);
        Ok(())
    }

    fn bit(&self, frame: usize) -> bool {
        self.words[frame / WORD_BITS] & (1 << (frame % WORD_BITS)) != 0
    }

    /// Marks `count` frames from `first`, all known to be free, as in use.
    fn take(&mut self, first: usize, count: usize) {
        let taken = self.set_span(first, first + count, false);
        self.free -= taken;
    }

    /// The first frame in `[from, to)` (with `to <= total`) that is free
    /// when `want_free`, in use otherwise.
    fn find(&self, from: usize, to: usize, want_free: bool) -> Option<usize> {
        let mut frame = from;
        while frame < to {
            let index = frame / WORD_BITS;
            let word = self.words[index];
            let interesting = if want_free { word } else { !word };
            let candidates = interesting & bit_span(frame % WORD_BITS, WORD_BITS);
            if candidates != 0 {
                let found = index * WORD_BITS + candidates.trailing_zeros() as usize;
                return (found < to).then_some(found);
            }
            frame = (index + 1) * WORD_BITS;
        }
        None
    }

    /// Sets frames `[from, to)` free or in use, returning how many changed.
    fn set_span(&mut self, from: usize, to: usize, make_free: bool) -> usize {
        let mut changed = 0;
        let mut frame = from;
        while frame < to {
            let index = frame / WORD_BITS;
            let word_base = index * WORD_BITS;
            let span = bit_span(frame - word_base, (to - word_base).min(WORD_BITS));
            let word = &mut self.words[index];
            if make_free {
                changed += (span & !*word).count_ones() as usize;
                *word |= span;
            } else {
                changed += (span & *word).count_ones() as usize;
                *word &= !span;
            }
            frame = word_base + WORD_BITS;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn storage_for(end: u64) -> Vec<u64> {
        vec![u64::MAX; storage_words(end)]
    }

    fn recount(bitmap: &FrameBitmap<'_>) -> usize {
        (0..bitmap.total_frames())
            .filter(|&frame| bitmap.is_free(frame_address(frame)))
            .count()
    }

    #[test]
    fn storage_size() {
        assert_eq!(storage_words(0), 0);
        assert_eq!(storage_words(PAGE_SIZE - 1), 0);
        assert_eq!(storage_words(PAGE_SIZE), 1);
        assert_eq!(storage_words(64 * PAGE_SIZE), 1);
        assert_eq!(storage_words(65 * PAGE_SIZE), 2);
        assert_eq!(storage_words(4 << 30), 16 * 1024);
    }

    #[test]
    fn storage_too_small_refused() {
        let mut storage = [0u64; 1];
        assert_eq!(
            FrameBitmap::new(&mut storage, 65 * PAGE_SIZE).err(),
            Some(FrameError::StorageTooSmall {
                needed_words: 2,
                given_words: 1
            })
        );
    }

    #[test]
    fn starts_unavailable_and_exhausts() {
        let mut storage = storage_for(MIB);
        let mut bitmap = FrameBitmap::new(&mut storage, MIB).unwrap();
        assert_eq!(bitmap.total_frames(), 256);
        assert_eq!(bitmap.free_frames(), 0);
        assert_eq!(bitmap.alloc(), None);

        assert_eq!(bitmap.add_free_range(0x10000, 0x14000), 4);
        let got: Vec<u64> = (0..4).map_while(|_| bitmap.alloc()).collect();
        assert_eq!(got, [0x10000, 0x11000, 0x12000, 0x13000]);
        assert_eq!(bitmap.alloc(), None);
        assert_eq!(bitmap.free_frames(), 0);
    }

    #[test]
    fn free_then_realloc_wraps_around() {
        let mut storage = storage_for(MIB);
        let mut bitmap = FrameBitmap::new(&mut storage, MIB).unwrap();
        bitmap.add_free_range(0, MIB);
        let first = bitmap.alloc().unwrap();
        let second = bitmap.alloc().unwrap();
        assert_eq!((first, second), (0, PAGE_SIZE));
        bitmap.free(first).unwrap();
        // Next fit continues upward before coming back to the freed frame.
        assert_eq!(bitmap.alloc(), Some(0x2000));
        while bitmap.free_frames() > 1 {
            bitmap.alloc().unwrap();
        }
        assert_eq!(bitmap.alloc(), Some(first));
        assert_eq!(bitmap.alloc(), None);
    }

    #[test]
    fn bad_frees_refused() {
        let mut storage = storage_for(MIB);
        let mut bitmap = FrameBitmap::new(&mut storage, MIB).unwrap();
        bitmap.add_free_range(0, MIB);
        let frame = bitmap.alloc().unwrap();
        bitmap.free(frame).unwrap();
        assert_eq!(
            bitmap.free(frame),
            Err(FrameError::DoubleFree { addr: frame })
        );
        assert_eq!(
            bitmap.free(0x1234),
            Err(FrameError::Unaligned { addr: 0x1234 })
        );
        assert_eq!(
            bitmap.free(MIB),
            Err(FrameError::OutOfRange {
                addr: MIB,
                limit: MIB
            })
        );
        assert_eq!(
            bitmap.free(u64::MAX - (PAGE_SIZE - 1)),
            Err(FrameError::OutOfRange {
                addr: u64::MAX - (PAGE_SIZE - 1),
                limit: MIB
            })
        );
        assert_eq!(bitmap.free_frames(), 256);
    }

    #[test]
    fn free_range_is_all_or_nothing() {
        let mut storage = storage_for(MIB);
        let mut bitmap = FrameBitmap::new(&mut storage, MIB).unwrap();
        bitmap.add_free_range(0, MIB);
        let run = bitmap.alloc_contiguous(8, 1).unwrap();
        bitmap.free(run + 3 * PAGE_SIZE).unwrap();
        assert_eq!(
            bitmap.free_range(run, run + 8 * PAGE_SIZE),
            Err(FrameError::DoubleFree {
                addr: run + 3 * PAGE_SIZE
            })
        );
        assert_eq!(bitmap.free_frames(), 256 - 7);
        assert_eq!(
            bitmap.free_range(run, run),
            Err(FrameError::EmptyRange {
                start: run,
                end: run
            })
        );
        bitmap.free_range(run, run + 3 * PAGE_SIZE).unwrap();
        bitmap
            .free_range(run + 4 * PAGE_SIZE, run + 8 * PAGE_SIZE)
            .unwrap();
        assert_eq!(bitmap.free_frames(), 256);
    }

    #[test]
    fn contiguous_with_alignment_across_words() {
        let end = 512 * PAGE_SIZE;
        let mut storage = storage_for(end);
        let mut bitmap = FrameBitmap::new(&mut storage, end).unwrap();
        // Frames 60..200, straddling words 0..3.
        bitmap.add_free_range(60 * PAGE_SIZE, 200 * PAGE_SIZE);
        assert_eq!(bitmap.alloc_contiguous(10, 1), Some(60 * PAGE_SIZE));
        assert_eq!(bitmap.alloc_contiguous(10, 16), Some(80 * PAGE_SIZE));
        // 70..80 is free but too short for 20.
        assert_eq!(bitmap.alloc_contiguous(20, 0), Some(90 * PAGE_SIZE));
        // The 64-aligned free starts, 128 and 192, are too close to the end.
        assert_eq!(bitmap.alloc_contiguous(80, 64), None);
        assert_eq!(bitmap.alloc_contiguous(50, 2), Some(110 * PAGE_SIZE));
        assert_eq!(bitmap.free_frames(), 140 - 90);
        assert_eq!(bitmap.alloc_contiguous(0, 1), None);
        assert_eq!(bitmap.alloc_contiguous(41, 1), None);
        assert_eq!(bitmap.alloc_contiguous(40, 1), Some(160 * PAGE_SIZE));
        assert_eq!(bitmap.alloc_contiguous(10, 1), Some(70 * PAGE_SIZE));
        assert_eq!(bitmap.free_frames(), 0);
        assert_eq!(bitmap.free_frames(), recount(&bitmap));
    }

    #[test]
    fn below_limit() {
        let mut storage = storage_for(MIB);
        let mut bitmap = FrameBitmap::new(&mut storage, MIB).unwrap();
        bitmap.add_free_range(0x8000, 0xa000);
        assert_eq!(bitmap.alloc_below(0x9fff), Some(0x8000));
        assert_eq!(bitmap.alloc_below(0x9fff), None);
        assert_eq!(bitmap.alloc_below(0xa000), Some(0x9000));
        assert_eq!(bitmap.alloc_below(u64::MAX), None);
        assert_eq!(bitmap.free_frames(), 0);
    }

    #[test]
    fn ranges_not_multiple_of_a_word() {
        let end = 200 * PAGE_SIZE + 123;
        let mut storage = storage_for(end);
        assert_eq!(storage.len(), 4);
        let mut bitmap = FrameBitmap::new(&mut storage, end).unwrap();
        assert_eq!(bitmap.total_frames(), 200);
        // Shrunk inward at the bottom, clipped at the covered end.
        assert_eq!(bitmap.add_free_range(3 * PAGE_SIZE + 1, u64::MAX), 196);
        assert_eq!(bitmap.add_free_range(0, 10 * PAGE_SIZE), 4);
        assert_eq!(bitmap.add_free_range(PAGE_SIZE + 1, 2 * PAGE_SIZE - 1), 0);
        assert_eq!(bitmap.add_free_range(u64::MAX - 5, u64::MAX), 0);
        assert!(bitmap.is_free(199 * PAGE_SIZE + 17));
        assert!(!bitmap.is_free(200 * PAGE_SIZE));
        let mut count = 0;
        while let Some(frame) = bitmap.alloc() {
            assert!(frame < 200 * PAGE_SIZE);
            count += 1;
        }
        assert_eq!(count, 200);
    }

    #[test]
    fn four_gib_exhaustion_stays_fast() {
        let end = 4 << 30;
        let mut storage = storage_for(end);
        let mut bitmap = FrameBitmap::new(&mut storage, end).unwrap();
        bitmap.add_free_range(end - 2 * MIB, end);
        assert_eq!(bitmap.alloc_below(end - 2 * MIB), None);
        assert_eq!(bitmap.alloc_contiguous(512, 512), Some(end - 2 * MIB));
        assert_eq!(bitmap.alloc_contiguous(1, 1), None);
        assert_eq!(bitmap.alloc(), None);
    }

    #[test]
    fn counter_matches_bitmap_under_random_use() {
        struct XorShift(u64);
        impl XorShift {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
        }
        let end = 1000 * PAGE_SIZE;
        let mut storage = storage_for(end);
        let mut bitmap = FrameBitmap::new(&mut storage, end).unwrap();
        bitmap.add_free_range(5 * PAGE_SIZE, 300 * PAGE_SIZE);
        bitmap.add_free_range(400 * PAGE_SIZE, 1000 * PAGE_SIZE);
        let total_free = bitmap.free_frames();
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut held: Vec<(u64, usize)> = Vec::new();
        for step in 0..20_000 {
            match rng.next() % 4 {
                0 if !held.is_empty() => {
                    let (addr, count) = held.swap_remove(rng.next() as usize % held.len());
                    bitmap
                        .free_range(addr, addr + count as u64 * PAGE_SIZE)
                        .unwrap();
                }
                1 => {
                    let count = 1 + rng.next() as usize % 9;
                    let align = 1 << (rng.next() % 4);
                    if let Some(addr) = bitmap.alloc_contiguous(count, align) {
                        assert_eq!(addr / PAGE_SIZE % align as u64, 0);
                        held.push((addr, count));
                    }
                }
                2 => {
                    if let Some(addr) = bitmap.alloc_below(rng.next() % end) {
                        held.push((addr, 1));
                    }
                }
                _ => {
                    if let Some(addr) = bitmap.alloc() {
                        held.push((addr, 1));
                    }
                }
            }
            let in_use: usize = held.iter().map(|&(_, count)| count).sum();
            assert_eq!(bitmap.free_frames(), total_free - in_use, "step {step}");
            if step % 500 == 0 {
                assert_eq!(bitmap.free_frames(), recount(&bitmap), "step {step}");
            }
        }
        for (addr, count) in held.drain(..) {
            bitmap
                .free_range(addr, addr + count as u64 * PAGE_SIZE)
                .unwrap();
        }
        assert_eq!(bitmap.free_frames(), total_free);
        assert_eq!(recount(&bitmap), total_free);
    }
}
