//! A bounds-checked window onto memory-mapped device registers: PCIe ECAM
//! configuration space (PCI Express Base Specification 5.0, §7.2.2) and the
//! register BARs of devices (PCI Local Bus Specification 3.0, §6.2.5).
//!
//! This module owns the unsafe part of register access: [`MmioRegion::new`]
//! takes the caller's promise that the range is mapped, and every access
//! after that is checked against the length and the natural alignment of
//! its width, so a bad offset from a device (a virtio capability, an MSI-X
//! table offset) is an `Err`, not a stray access. The accesses themselves
//! are volatile (`volatile` crate), so the compiler neither elides nor
//! merges them.

use crate::hal::{Hal, HalError};
use core::fmt;
use core::ptr::NonNull;
use volatile::VolatilePtr;

/// Why a register access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// `offset..offset + width` does not lie inside a region of `len` bytes.
    OutOfRange {
        offset: usize,
        width: usize,
        len: usize,
    },
    /// The address is not a multiple of the access width: a split device
    /// access is undefined, and so is an unaligned volatile one in Rust.
    Misaligned { offset: usize, width: usize },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmioError::OutOfRange { offset, width, len } => write!(
                f,
                "mmio access of {width} bytes at {offset:#x} outside a region of {len:#x} bytes"
            ),
            MmioError::Misaligned { offset, width } => {
                write!(
                    f,
                    "mmio access of {width} bytes at {offset:#x} is misaligned"
                )
            }
        }
    }
}

/// `len` bytes of device registers starting at `base`.
#[derive(Debug)]
pub struct MmioRegion {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a region names device registers (or memory shared with a
// device), which have no affinity to the thread that mapped them; all
// access goes through volatile reads and writes of raw pointers.
unsafe impl Send for MmioRegion {}

impl MmioRegion {
    /// A window of `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `base..base + len` must be mapped (uncached, for device registers)
    /// and stay mapped while this region or any [`subregion`] of it exists,
    /// and nothing may hold a Rust reference into that range: it is only
    /// ever accessed volatile, through raw pointers.
    ///
    /// [`subregion`]: MmioRegion::subregion
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Self { base, len }
    }

    /// Maps `len` bytes of registers at physical address `phys` through
    /// the kernel: the safe way for a driver to get a region.
    pub fn map(hal: &dyn Hal, phys: u64, len: usize) -> Result<MmioRegion, HalError> {
        let base = hal.map_mmio(phys, len)?;
        // SAFETY: implementing the unsafe trait `Hal` promises that
        // `map_mmio` returns `len` mapped bytes, valid as long as the Hal
        // (the kernel's lives forever), that no reference points into.
        Ok(unsafe { MmioRegion::new(base, len) })
    }

    /// The first byte of the window.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty (every access fails).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes at `offset`, checked to lie inside this region; for
    /// a structure a device places inside a BAR (virtio's common
    /// configuration, an MSI-X table).
    pub fn subregion(&self, offset: usize, len: usize) -> Result<MmioRegion, MmioError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(MmioRegion {
                // SAFETY: offset <= end <= self.len, so the result stays
                // inside (or one past the end of) the mapped range.
                base: unsafe { self.base.add(offset) },
                len,
            }),
            _ => Err(MmioError::OutOfRange {
                offset,
                width: len,
                len: self.len,
            }),
        }
    }

    fn register<T>(&self, offset: usize) -> Result<VolatilePtr<'_, T>, MmioError> {
        let width = size_of::<T>();
        match offset.checked_add(width) {
            Some(end) if end <= self.len => {}
            _ => {
                return Err(MmioError::OutOfRange {
                    offset,
                    width,
                    len: self.len,
                })
            }
        }
        if !(self.base.as_ptr() as usize)
            .wrapping_add(offset)
            .is_multiple_of(width)
        {
            return Err(MmioError::Misaligned { offset, width });
        }
        // SAFETY: the range check above keeps `offset + width` inside the
        // mapping `new` was promised, and the address is aligned for `T`;
        // nothing holds a reference into the range (the contract of `new`).
        Ok(unsafe { VolatilePtr::new(self.base.add(offset).cast::<T>()) })
    }

    /// Reads the byte at `offset`.
    pub fn read8(&self, offset: usize) -> Result<u8, MmioError> {
        Ok(self.register::<u8>(offset)?.read())
    }

    /// Reads the 16-bit register at `offset` (little-endian on x86).
    pub fn read16(&self, offset: usize) -> Result<u16, MmioError> {
        Ok(self.register::<u16>(offset)?.read())
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32(&self, offset: usize) -> Result<u32, MmioError> {
        Ok(self.register::<u32>(offset)?.read())
    }

    /// Reads the 64-bit register at `offset` in one access.
    pub fn read64(&self, offset: usize) -> Result<u64, MmioError> {
        Ok(self.register::<u64>(offset)?.read())
    }

    /// Writes the byte at `offset`.
    pub fn write8(&self, offset: usize, value: u8) -> Result<(), MmioError> {
        self.register::<u8>(offset)?.write(value);
        Ok(())
    }

    /// Writes the 16-bit register at `offset`.
    pub fn write16(&self, offset: usize, value: u16) -> Result<(), MmioError> {
        self.register::<u16>(offset)?.write(value);
        Ok(())
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32(&self, offset: usize, value: u32) -> Result<(), MmioError> {
        self.register::<u32>(offset)?.write(value);
        Ok(())
    }

    /// Writes the 64-bit register at `offset` in one access.
    pub fn write64(&self, offset: usize, value: u64) -> Result<(), MmioError> {
        self.register::<u64>(offset)?.write(value);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec;

    /// Host memory standing in for device registers; the region borrows it
    /// through a raw pointer, so the box must outlive the region.
    pub(crate) fn backing(words: usize) -> (Box<[u64]>, MmioRegion) {
        let mut memory = vec![0u64; words].into_boxed_slice();
        let base = NonNull::new(memory.as_mut_ptr().cast::<u8>()).expect("a box is not null");
        // SAFETY: the box is 8-byte aligned, lives as long as the caller
        // keeps it, and is only touched through the region afterwards.
        let region = unsafe { MmioRegion::new(base, words * 8) };
        (memory, region)
    }

    #[test]
    fn reads_back_what_was_written_at_each_width() {
        let (_memory, region) = backing(4);
        region.write32(0, 0x1234_5678).expect("inside the region");
        assert_eq!(region.read32(0), Ok(0x1234_5678));
        assert_eq!(region.read16(0), Ok(0x5678));
        assert_eq!(region.read16(2), Ok(0x1234));
        assert_eq!(region.read8(3), Ok(0x12));
        region.write8(1, 0xab).expect("inside the region");
        assert_eq!(region.read32(0), Ok(0x1234_ab78));
        region.write16(4, 0xbeef).expect("inside the region");
        assert_eq!(region.read32(4), Ok(0xbeef));
        region
            .write64(8, 0x0102_0304_0506_0708)
            .expect("inside the region");
        assert_eq!(region.read64(8), Ok(0x0102_0304_0506_0708));
        assert_eq!(region.read32(12), Ok(0x0102_0304));
    }

    #[test]
    fn last_register_is_reachable_and_one_past_is_not() {
        let (_memory, region) = backing(2);
        assert_eq!(region.len(), 16);
        assert!(region.write32(12, 7).is_ok());
        assert_eq!(region.read32(12), Ok(7));
        assert_eq!(
            region.read32(16),
            Err(MmioError::OutOfRange {
                offset: 16,
                width: 4,
                len: 16
            })
        );
        assert!(matches!(
            region.read64(12),
            Err(MmioError::OutOfRange { width: 8, .. })
        ));
        assert!(matches!(
            region.write8(usize::MAX, 0),
            Err(MmioError::OutOfRange { .. })
        ));
    }

    #[test]
    fn misaligned_access_is_refused() {
        let (_memory, region) = backing(2);
        assert_eq!(
            region.read32(2),
            Err(MmioError::Misaligned {
                offset: 2,
                width: 4
            })
        );
        assert_eq!(
            region.write16(1, 0),
            Err(MmioError::Misaligned {
                offset: 1,
                width: 2
            })
        );
        assert_eq!(region.read8(1), Ok(0));
    }

    #[test]
    fn subregion_is_offset_and_bounded() {
        let (_memory, region) = backing(4);
        let sub = region.subregion(8, 8).expect("inside");
        sub.write32(4, 0xdead_beef).expect("inside the region");
        assert_eq!(region.read32(12), Ok(0xdead_beef));
        assert!(sub.read32(8).is_err());
        assert!(region.subregion(24, 16).is_err());
        assert!(region.subregion(usize::MAX, 2).is_err());
        let empty = region.subregion(32, 0).expect("inside the region");
        assert!(empty.is_empty());
        assert!(empty.read8(0).is_err());
    }

    #[test]
    fn errors_display_offsets_in_hex() {
        let error = MmioError::OutOfRange {
            offset: 0x20,
            width: 4,
            len: 0x10,
        };
        assert_eq!(
            std::format!("{error}"),
            "mmio access of 4 bytes at 0x20 outside a region of 0x10 bytes"
        );
    }
}
