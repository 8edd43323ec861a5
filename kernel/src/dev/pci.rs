//! PCI configuration space for the driver model's enumeration: ECAM where
//! ACPI's MCFG gives a window (PCI Express Base 4.0, 7.2.2; the `q35`
//! machine), else configuration mechanism #1 through ports 0xCF8/0xCFC
//! (PCI Local Bus 3.0, 3.2.2.3.2; the `pc` machine), which reaches the
//! first 256 bytes of each function only. ECAM is mapped one bus (1 MiB)
//! at a time, when a bus is first touched.

use crate::arch::cpu;
use drivers::mmio::MmioRegion;
use drivers::pci::{ConfigSpace, Ecam, PciAddress};
use pure::arch::acpi_tables::EcamWindow;
use spin::{Mutex, Once};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// ECAM's configuration space per bus: 32 devices x 8 functions x 4 KiB.
const BUS_BYTES: u64 = 1 << 20;

/// Configuration mechanism #1: an address to 0xCF8, then data at 0xCFC.
pub struct Ports {
    /// The address/data pair is one access in two steps.
    lock: Mutex<()>,
}

impl ConfigSpace for Ports {
    fn read32(&self, addr: PciAddress, offset: u16) -> u32 {
        let Ok(offset) = u8::try_from(offset) else {
            return u32::MAX;
        };
        let _guard = self.lock.lock();
        cpu::without_interrupts(|| {
            // SAFETY: 0xCF8/0xCFC are the PC's configuration ports, used
            // only here, under the lock; a configuration read has no side
            // effect on memory.
            unsafe {
                cpu::outl(CONFIG_ADDRESS, addr.legacy_config_address(offset));
                cpu::inl(CONFIG_DATA)
            }
        })
    }

    fn write32(&self, addr: PciAddress, offset: u16, value: u32) {
        let Ok(offset) = u8::try_from(offset) else {
            return;
        };
        let _guard = self.lock.lock();
        cpu::without_interrupts(|| {
            // SAFETY: as in `read32`; the callers (enumeration, drivers)
            // write only registers whose effect they own (BAR sizing with
            // decoding off, command, capabilities of their device).
            unsafe {
                cpu::outl(CONFIG_ADDRESS, addr.legacy_config_address(offset));
                cpu::outl(CONFIG_DATA, value);
            }
        })
    }
}

/// ECAM, each bus mapped when first touched.
pub struct EcamBuses {
    window: EcamWindow,
    buses: [Once<Option<Ecam>>; 256],
}

impl EcamBuses {
    fn bus(&self, bus: u8) -> Option<&Ecam> {
        if !(self.window.start_bus..=self.window.end_bus).contains(&bus) {
            return None;
        }
        self.buses[usize::from(bus)]
            .call_once(|| {
                let offset = u64::from(bus - self.window.start_bus) * BUS_BYTES;
                let phys = x86_64::PhysAddr::new(self.window.base + offset);
                let virt = crate::mm::map_mmio(phys, BUS_BYTES);
                let base = core::ptr::NonNull::new(virt.as_mut_ptr::<u8>())?;
                // SAFETY: map_mmio just mapped BUS_BYTES of this bus's
                // configuration space uncached, for good.
                let region = unsafe { MmioRegion::new(base, BUS_BYTES as usize) };
                Ecam::new(region, bus, bus).ok()
            })
            .as_ref()
    }
}

impl ConfigSpace for EcamBuses {
    fn read32(&self, addr: PciAddress, offset: u16) -> u32 {
        self.bus(addr.bus)
            .map_or(u32::MAX, |ecam| ecam.read32(addr, offset))
    }

    fn write32(&self, addr: PciAddress, offset: u16, value: u32) {
        if let Some(ecam) = self.bus(addr.bus) {
            ecam.write32(addr, offset, value);
        }
    }
}

/// The configuration access this machine offers.
pub enum Config {
    Ports(Ports),
    /// Boxed: one lazily mapped slot per bus.
    Ecam(alloc::boxed::Box<EcamBuses>),
}

impl core::fmt::Display for Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Config::Ports(_) => write!(f, "configuration through ports 0xcf8/0xcfc"),
            Config::Ecam(ecam) => write!(
                f,
                "ECAM at {:#x}, buses {}-{}",
                ecam.window.base, ecam.window.start_bus, ecam.window.end_bus
            ),
        }
    }
}

impl ConfigSpace for Config {
    fn read32(&self, addr: PciAddress, offset: u16) -> u32 {
        match self {
            Config::Ports(ports) => ports.read32(addr, offset),
            Config::Ecam(ecam) => ecam.read32(addr, offset),
        }
    }

    fn write32(&self, addr: PciAddress, offset: u16, value: u32) {
        match self {
            Config::Ports(ports) => ports.write32(addr, offset, value),
            Config::Ecam(ecam) => ecam.write32(addr, offset, value),
        }
    }
}

/// The ports, always there on a PC (and the reference ECAM is checked
/// against in the tests).
pub fn ports() -> Ports {
    Ports {
        lock: Mutex::new(()),
    }
}

/// ECAM when the MCFG gives a window for segment 0, else the ports.
pub fn config() -> Config {
    match crate::arch::acpi::ecam() {
        Some(window) => Config::Ecam(alloc::boxed::Box::new(EcamBuses {
            window,
            buses: [const { Once::new() }; 256],
        })),
        None => Config::Ports(ports()),
    }
}
