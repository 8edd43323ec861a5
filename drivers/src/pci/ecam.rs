//! The PCI Express Enhanced Configuration Access Mechanism (PCI Express
//! Base Specification 5.0, §7.2.2): each function's 4 KiB of
//! configuration space at a fixed offset in one memory window, whose base
//! and bus range ACPI's MCFG table gives. [`Ecam`] implements
//! [`ConfigSpace`] over an [`MmioRegion`] the kernel mapped.

use super::{ConfigSpace, PciAddress};
use crate::mmio::{MmioError, MmioRegion};

/// Bytes of configuration space per function.
const FUNCTION_SPACE: usize = 4096;
/// Bytes of window per bus: 32 devices of 8 functions.
pub const BUS_SPACE: usize = 1 << 20;

/// Offset of `addr`'s register `offset` in a window starting at bus
/// `start_bus` (table 7-1: bus in bits 27:20, device 19:15, function
/// 14:12, register 11:0).
pub const fn ecam_offset(start_bus: u8, addr: PciAddress, offset: u16) -> usize {
    (addr.bus.wrapping_sub(start_bus) as usize) << 20
        | ((addr.device & 0x1f) as usize) << 15
        | ((addr.function & 0x7) as usize) << 12
        | (offset as usize & (FUNCTION_SPACE - 1))
}

/// An ECAM window for buses `start_bus..=end_bus`.
#[derive(Debug)]
pub struct Ecam {
    region: MmioRegion,
    start_bus: u8,
    end_bus: u8,
}

impl Ecam {
    /// Wraps the mapped window; refused when `region` is shorter than the
    /// bus range needs.
    pub fn new(region: MmioRegion, start_bus: u8, end_bus: u8) -> Result<Self, MmioError> {
        let buses = usize::from(end_bus.saturating_sub(start_bus)) + 1;
        let needed = buses * BUS_SPACE;
        if end_bus < start_bus || region.len() < needed {
            return Err(MmioError::OutOfRange {
                offset: 0,
                width: needed,
                len: region.len(),
            });
        }
        Ok(Ecam {
            region,
            start_bus,
            end_bus,
        })
    }

    fn offset(&self, addr: PciAddress, offset: u16) -> Option<usize> {
        let inside = (self.start_bus..=self.end_bus).contains(&addr.bus)
            && usize::from(offset) < FUNCTION_SPACE;
        inside.then(|| ecam_offset(self.start_bus, addr, offset))
    }
}

impl ConfigSpace for Ecam {
    /// All ones, like an absent function, outside the window.
    fn read32(&self, addr: PciAddress, offset: u16) -> u32 {
        self.offset(addr, offset)
            .and_then(|at| self.region.read32(at).ok())
            .unwrap_or(u32::MAX)
    }

    /// Dropped outside the window, as the bus drops a write nobody claims.
    fn write32(&self, addr: PciAddress, offset: u16, value: u32) {
        if let Some(at) = self.offset(addr, offset) {
            // Inside the window by construction; a misaligned offset is
            // dropped like one outside it.
            let _ = self.region.write32(at, value);
        }
    }
}
