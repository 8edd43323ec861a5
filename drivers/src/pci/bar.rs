//! Base address registers: decoding and sizing as PCI Local Bus
//! Specification 3.0, §6.2.5.1 describes. Decoding is switched off in the
//! command register (§6.2.2) while a BAR holds all ones, so the device
//! never answers at the bogus address in between; each BAR is restored
//! right after its size is read, and the command register at the end.
//!
//! A BAR that reads back zero is unimplemented and left out; one that
//! reads back a mask that is not a contiguous run of ones, a reserved
//! type, or a base not aligned to its size is reported, not trusted.

use super::{command, reg, ConfigSpace, PciAddress, PciError};
use alloc::vec::Vec;
use core::fmt;

/// Address space and width of a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    /// Uses two slots: this one and the next holds bits 63:32.
    Mem64,
}

/// One implemented BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Slot 0-5 (the lower slot of a 64-bit pair).
    pub index: u8,
    pub kind: BarKind,
    /// Memory without read side effects (reads may be merged or
    /// prefetched).
    pub prefetchable: bool,
    /// Where firmware placed it (0: not assigned).
    pub base: u64,
    /// Bytes decoded, a power of two.
    pub size: u64,
}

impl Bar {
    pub fn is_memory(&self) -> bool {
        self.kind != BarKind::Io
    }
}

/// `bar0 mem32 0xfebc0000+0x20000`, `bar1 io 0xc000+0x40`,
/// `bar4 mem64 pref 0xfe000000+0x4000`.
impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            BarKind::Io => "io",
            BarKind::Mem32 => "mem32",
            BarKind::Mem64 => "mem64",
        };
        let pref = if self.prefetchable { " pref" } else { "" };
        write!(
            f,
            "bar{} {kind}{pref} {:#x}+{:#x}",
            self.index, self.base, self.size
        )
    }
}

const IO_SPACE: u32 = 1 << 0;
const MEM_TYPE_MASK: u32 = 0b11 << 1;
const MEM_TYPE_64: u32 = 0b10 << 1;
const MEM_TYPE_RESERVED: u32 = 0b11 << 1;
const MEM_PREFETCHABLE: u32 = 1 << 3;
const IO_ADDRESS_MASK: u32 = !0x3;
const MEM_ADDRESS_MASK: u32 = !0xf;

/// Decodes and sizes the first `count` BARs of the function at `addr` (6
/// for a device, 2 for a bridge); problems go to `errors`. Leaves the
/// BARs and the command register as it found them.
pub fn read_bars<C: ConfigSpace + ?Sized>(
    cfg: &C,
    addr: PciAddress,
    count: u8,
    errors: &mut Vec<PciError>,
) -> Vec<Bar> {
    let mut bars = Vec::new();
    if count == 0 {
        return bars;
    }
    let saved_command = cfg.command(addr);
    cfg.set_command(addr, saved_command & !(command::IO | command::MEMORY));
    let mut index = 0;
    while index < count {
        let offset = reg::BAR0 + 4 * u16::from(index);
        let raw = cfg.read32(addr, offset);
        let width = if raw & IO_SPACE == 0 && raw & MEM_TYPE_MASK == MEM_TYPE_64 {
            2
        } else {
            1
        };
        let decoded = if raw & IO_SPACE != 0 {
            size_io(cfg, addr, index, raw)
        } else if raw & MEM_TYPE_MASK == MEM_TYPE_RESERVED {
            Err(PciError::BarReservedType { index, raw })
        } else if width == 2 {
            if index + 1 >= count {
                Err(PciError::Bar64InLastSlot { index })
            } else {
                size_mem64(cfg, addr, index, raw)
            }
        } else {
            size_mem32(cfg, addr, index, raw)
        };
        match decoded {
            Ok(Some(bar)) => bars.push(bar),
            Ok(None) => {}
            Err(error) => errors.push(error),
        }
        index += width;
    }
    cfg.set_command(addr, saved_command);
    bars
}

/// Writes all ones to the BAR at `offset`, reads back what sticks, and
/// restores `raw`.
fn probe_mask<C: ConfigSpace + ?Sized>(cfg: &C, addr: PciAddress, offset: u16, raw: u32) -> u32 {
    cfg.write32(addr, offset, u32::MAX);
    let readback = cfg.read32(addr, offset);
    cfg.write32(addr, offset, raw);
    readback
}

/// The size a 64-bit address mask (the writable address bits, ones from
/// the top) decodes, or `None` when the ones are not contiguous.
fn size_of_mask(mask: u64) -> Option<u64> {
    let size = (!mask).wrapping_add(1);
    size.is_power_of_two().then_some(size)
}

fn checked(
    index: u8,
    kind: BarKind,
    prefetchable: bool,
    base: u64,
    mask: u64,
    readback: u64,
) -> Result<Option<Bar>, PciError> {
    let size = size_of_mask(mask).ok_or(PciError::BarSize { index, readback })?;
    if base & (size - 1) != 0 {
        return Err(PciError::BarMisaligned { index, base, size });
    }
    Ok(Some(Bar {
        index,
        kind,
        prefetchable,
        base,
        size,
    }))
}

fn size_io<C: ConfigSpace + ?Sized>(
    cfg: &C,
    addr: PciAddress,
    index: u8,
    raw: u32,
) -> Result<Option<Bar>, PciError> {
    let readback = probe_mask(cfg, addr, reg::BAR0 + 4 * u16::from(index), raw);
    let mut mask = readback & IO_ADDRESS_MASK;
    if mask == 0 {
        return Ok(None);
    }
    // Devices that decode only 16 bits of I/O address hardwire the upper
    // half to zero (§6.2.5.1); they decode the 64 KiB port space.
    if mask >> 16 == 0 {
        mask |= 0xffff_0000;
    }
    let mask = 0xffff_ffff_0000_0000 | u64::from(mask);
    let base = u64::from(raw & IO_ADDRESS_MASK);
    checked(index, BarKind::Io, false, base, mask, u64::from(readback))
}

fn size_mem32<C: ConfigSpace + ?Sized>(
    cfg: &C,
    addr: PciAddress,
    index: u8,
    raw: u32,
) -> Result<Option<Bar>, PciError> {
    let readback = probe_mask(cfg, addr, reg::BAR0 + 4 * u16::from(index), raw);
    let mask = readback & MEM_ADDRESS_MASK;
    if mask == 0 {
        return Ok(None);
    }
    let mask = 0xffff_ffff_0000_0000 | u64::from(mask);
    let base = u64::from(raw & MEM_ADDRESS_MASK);
    let prefetchable = raw & MEM_PREFETCHABLE != 0;
    checked(
        index,
        BarKind::Mem32,
        prefetchable,
        base,
        mask,
        u64::from(readback),
    )
}

fn size_mem64<C: ConfigSpace + ?Sized>(
    cfg: &C,
    addr: PciAddress,
    index: u8,
    raw: u32,
) -> Result<Option<Bar>, PciError> {
    let low_offset = reg::BAR0 + 4 * u16::from(index);
    let high_offset = low_offset + 4;
    let raw_high = cfg.read32(addr, high_offset);
    let low = probe_mask(cfg, addr, low_offset, raw);
    let high = probe_mask(cfg, addr, high_offset, raw_high);
    let readback = u64::from(high) << 32 | u64::from(low);
    let mask = u64::from(high) << 32 | u64::from(low & MEM_ADDRESS_MASK);
    if mask == 0 {
        return Ok(None);
    }
    let base = u64::from(raw_high) << 32 | u64::from(raw & MEM_ADDRESS_MASK);
    let prefetchable = raw & MEM_PREFETCHABLE != 0;
    checked(index, BarKind::Mem64, prefetchable, base, mask, readback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_decode_to_power_of_two_sizes() {
        assert_eq!(size_of_mask(0xffff_ffff_fffe_0000), Some(0x2_0000));
        assert_eq!(size_of_mask(0xffff_ffff_ffff_fff0), Some(0x10));
        assert_eq!(size_of_mask(0xffff_fffc_0000_0000), Some(0x4_0000_0000));
        assert_eq!(size_of_mask(0xffff_ffff_fff0_f000), None);
        assert_eq!(size_of_mask(0x0000_0000_fffe_0000), None);
    }

    #[test]
    fn display_names_kind_base_and_size() {
        let bar = Bar {
            index: 4,
            kind: BarKind::Mem64,
            prefetchable: true,
            base: 0xfe00_0000,
            size: 0x4000,
        };
        assert_eq!(std::format!("{bar}"), "bar4 mem64 pref 0xfe000000+0x4000");
        assert!(bar.is_memory());
    }
}
