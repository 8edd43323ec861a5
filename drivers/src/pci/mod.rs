//! PCI: the configuration-space logic a kernel needs to find devices,
//! written over the [`ConfigSpace`] trait so it runs on the host against
//! a fake machine. The kernel implements the trait with configuration
//! mechanism #1 (ports 0xCF8/0xCFC, PCI Local Bus Specification 3.0,
//! §3.2.2.3.2, see [`PciAddress::legacy_config_address`]) or with ECAM
//! ([`Ecam`], PCI Express Base Specification 5.0, §7.2.2).
//!
//! This module owns addresses, the function record [`PciFunction`] with
//! its one-line description for the boot log, errors, and driver matching
//! ([`DeviceId`]); the header (§6.1, §6.2), BARs (§6.2.5.1), capabilities
//! (§6.7, §6.8) and bus enumeration live in the submodules.

mod bar;
mod capability;
mod ecam;
mod enumerate;
mod header;

pub use bar::{read_bars, Bar, BarKind};
pub use capability::{
    capability_name, read_capabilities, Capability, MsiCapability, MsixCapability,
    VirtioCapability, VirtioCfgType, MAX_CAPABILITIES, MSIX_ENTRY_SIZE, VIRTIO_VENDOR_ID,
};
pub use ecam::{ecam_offset, Ecam, BUS_SPACE};
pub use enumerate::enumerate;
pub use header::{class_name, Header, HeaderKind};

use crate::mmio::MmioError;
use alloc::vec::Vec;
use core::fmt;

/// Register offsets of the configuration header common to all types
/// (PCI 3.0, §6.1, figure 6-1) and of the type 1 bridge header
/// (PCI-to-PCI Bridge Architecture Specification 1.2, §3.2).
pub mod reg {
    pub const VENDOR_ID: u16 = 0x00;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    pub const REVISION: u16 = 0x08;
    pub const HEADER_TYPE: u16 = 0x0e;
    pub const BAR0: u16 = 0x10;
    pub const BUS_NUMBERS: u16 = 0x18;
    pub const SUBSYSTEM: u16 = 0x2c;
    pub const CAPABILITIES: u16 = 0x34;
    pub const INTERRUPT: u16 = 0x3c;
}

/// Command register bits (§6.2.2).
pub mod command {
    pub const IO: u16 = 1 << 0;
    pub const MEMORY: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status register: the function has a capability list (§6.2.3).
pub const STATUS_CAPABILITIES: u16 = 1 << 4;

/// A function's place on the bus: `bus:device.function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub bus: u8,
    /// 0..32.
    pub device: u8,
    /// 0..8.
    pub function: u8,
}

impl PciAddress {
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        Self {
            bus,
            device,
            function,
        }
    }

    /// The dword to write to port 0xCF8 before accessing the register at
    /// `offset` through 0xCFC (configuration mechanism #1, PCI 3.0,
    /// §3.2.2.3.2); it reaches only the first 256 bytes.
    pub const fn legacy_config_address(self, offset: u8) -> u32 {
        0x8000_0000
            | (self.bus as u32) << 16
            | ((self.device & 0x1f) as u32) << 11
            | ((self.function & 0x7) as u32) << 8
            | (offset & 0xfc) as u32
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

/// Configuration-space access, which the kernel provides. Offsets are
/// dword aligned; an absent function reads all ones.
pub trait ConfigSpace {
    fn read32(&self, addr: PciAddress, offset: u16) -> u32;
    fn write32(&self, addr: PciAddress, offset: u16, value: u32);

    /// The 16-bit register at `offset` (2-byte aligned).
    fn read16(&self, addr: PciAddress, offset: u16) -> u16 {
        (self.read32(addr, offset & !3) >> ((offset & 2) * 8)) as u16
    }

    /// The byte at `offset`.
    fn read8(&self, addr: PciAddress, offset: u16) -> u8 {
        (self.read32(addr, offset & !3) >> ((offset & 3) * 8)) as u8
    }

    /// The command register.
    fn command(&self, addr: PciAddress) -> u16 {
        self.read16(addr, reg::COMMAND)
    }

    /// Sets the command register. The status register shares its dword
    /// and its error bits clear when written with 1, so the upper half is
    /// written as zeros, which changes nothing there.
    fn set_command(&self, addr: PciAddress, value: u16) {
        self.write32(addr, reg::COMMAND, u32::from(value));
    }
}

/// Something wrong with what a function's configuration space says. The
/// function is still listed; the error goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// The pointer held at config offset `at` points into the header.
    CapabilityPointer { at: u16, pointer: u8 },
    /// The capability list comes back to `pointer`, or is longer than
    /// [`MAX_CAPABILITIES`].
    CapabilityLoop { pointer: u8 },
    /// The capability `id` at `pointer` claims `len` bytes, too few for
    /// its kind or past the end of the 256-byte space.
    CapabilityTruncated { pointer: u8, id: u8, len: u8 },
    /// BAR `index` has the reserved memory type 11b.
    BarReservedType { index: u8, raw: u32 },
    /// BAR `index` reads back a size mask that is not a power of two.
    BarSize { index: u8, readback: u64 },
    /// BAR `index` holds a base that is not a multiple of its size.
    BarMisaligned { index: u8, base: u64, size: u64 },
    /// BAR `index` says 64-bit but is the last one, with no upper half.
    Bar64InLastSlot { index: u8 },
    /// A bridge's secondary bus was scanned already (a loop, or an
    /// unconfigured bridge that says 0); not followed.
    BusAlreadyScanned { secondary: u8 },
    /// A bridge whose subordinate bus is below its secondary bus.
    BusRange { secondary: u8, subordinate: u8 },
    /// An MSI-X table entry past the table.
    MsixEntry { entry: u16, table_size: u16 },
    /// An MSI message address above 4 GiB for a 32-bit-only capability.
    MsiAddress { address: u64 },
    /// A register access failed (the MSI-X table).
    Mmio(MmioError),
}

impl From<MmioError> for PciError {
    fn from(error: MmioError) -> Self {
        PciError::Mmio(error)
    }
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PciError::CapabilityPointer { at, pointer } => {
                write!(
                    f,
                    "capability pointer {pointer:#04x} at {at:#04x} points into the header"
                )
            }
            PciError::CapabilityLoop { pointer } => {
                write!(f, "capability list loops at {pointer:#04x}")
            }
            PciError::CapabilityTruncated { pointer, id, len } => write!(
                f,
                "capability {id:#04x} at {pointer:#04x} truncated ({len} bytes)"
            ),
            PciError::BarReservedType { index, raw } => {
                write!(f, "bar{index} has the reserved memory type ({raw:#010x})")
            }
            PciError::BarSize { index, readback } => {
                write!(f, "bar{index} reads back a bad size mask {readback:#x}")
            }
            PciError::BarMisaligned { index, base, size } => {
                write!(
                    f,
                    "bar{index} base {base:#x} not aligned to its size {size:#x}"
                )
            }
            PciError::Bar64InLastSlot { index } => {
                write!(f, "bar{index} is 64-bit but has no upper half")
            }
            PciError::BusAlreadyScanned { secondary } => {
                write!(
                    f,
                    "bridge to bus {secondary:02x}, which was scanned already"
                )
            }
            PciError::BusRange {
                secondary,
                subordinate,
            } => write!(
                f,
                "bridge to bus {secondary:02x} with subordinate bus {subordinate:02x} below it"
            ),
            PciError::MsixEntry { entry, table_size } => {
                write!(f, "msi-x entry {entry} past a table of {table_size}")
            }
            PciError::MsiAddress { address } => {
                write!(f, "msi address {address:#x} needs a 64-bit capability")
            }
            PciError::Mmio(error) => write!(f, "{error}"),
        }
    }
}

/// One function as enumeration found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    pub address: PciAddress,
    pub header: Header,
    /// The implemented BARs, in slot order.
    pub bars: Vec<Bar>,
    /// The capability list, in list order.
    pub capabilities: Vec<Capability>,
    /// What did not decode; the rest of the record is still good.
    pub errors: Vec<PciError>,
}

impl PciFunction {
    /// Reads the function at `addr`: header, BARs (sized, see
    /// [`read_bars`]) and capabilities; `None` when no function answers.
    pub fn read<C: ConfigSpace + ?Sized>(cfg: &C, addr: PciAddress) -> Option<PciFunction> {
        let header = Header::read(cfg, addr)?;
        let mut errors = Vec::new();
        let bar_count = match header.kind {
            HeaderKind::Device { .. } => 6,
            HeaderKind::Bridge { .. } => 2,
            HeaderKind::Other(_) => 0,
        };
        let bars = read_bars(cfg, addr, bar_count, &mut errors);
        // The capability pointer sits at 0x34 in types 0 and 1 only.
        let capabilities = match header.kind {
            HeaderKind::Other(_) => Vec::new(),
            _ => read_capabilities(cfg, addr, header.vendor_id, &mut errors),
        };
        Some(PciFunction {
            address: addr,
            header,
            bars,
            capabilities,
            errors,
        })
    }

    /// BAR `index`, if implemented (a 64-bit BAR is found by its lower
    /// slot).
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|bar| bar.index == index)
    }

    /// The MSI capability, if any.
    pub fn msi(&self) -> Option<&MsiCapability> {
        self.capabilities.iter().find_map(|cap| match cap {
            Capability::Msi(msi) => Some(msi),
            _ => None,
        })
    }

    /// The MSI-X capability, if any.
    pub fn msix(&self) -> Option<&MsixCapability> {
        self.capabilities.iter().find_map(|cap| match cap {
            Capability::MsiX(msix) => Some(msix),
            _ => None,
        })
    }

    /// The first virtio structure of type `cfg_type` (virtio 1.2,
    /// §4.1.4: a driver uses the first one it can).
    pub fn virtio(&self, cfg_type: VirtioCfgType) -> Option<&VirtioCapability> {
        self.capabilities.iter().find_map(|cap| match cap {
            Capability::Virtio(virtio) if virtio.cfg_type == cfg_type => Some(virtio),
            _ => None,
        })
    }
}

/// The boot-log line: `pci 00:03.0 8086:100e class 0200 (Ethernet
/// controller) irq 11 bar0 mem32 0xfebc0000+0x20000 bar1 io 0xc000+0x40
/// caps pm,msi,msix`.
impl fmt::Display for PciFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = &self.header;
        write!(
            f,
            "pci {} {:04x}:{:04x} class {:02x}{:02x} ({})",
            self.address,
            header.vendor_id,
            header.device_id,
            header.class,
            header.subclass,
            class_name(header.class, header.subclass)
        )?;
        if let HeaderKind::Bridge {
            secondary_bus,
            subordinate_bus,
            ..
        } = header.kind
        {
            write!(f, " bus {secondary_bus:02x}-{subordinate_bus:02x}")?;
        }
        if header.interrupt_pin != 0 {
            match header.interrupt_line {
                // 0xff is "unknown or not connected" (§6.2.4).
                0xff => f.write_str(" irq ?")?,
                line => write!(f, " irq {line}")?,
            }
        }
        for bar in &self.bars {
            write!(f, " {bar}")?;
        }
        for (i, cap) in self.capabilities.iter().enumerate() {
            f.write_str(if i == 0 { " caps " } else { "," })?;
            f.write_str(cap.name())?;
        }
        for error in &self.errors {
            write!(f, " error: {error}")?;
        }
        Ok(())
    }
}

/// What a driver claims: one vendor:device pair, or a whole class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceId {
    Exact { vendor: u16, device: u16 },
    Class { class: u8, subclass: u8 },
}

impl DeviceId {
    pub const fn pci(vendor: u16, device: u16) -> Self {
        DeviceId::Exact { vendor, device }
    }

    pub const fn class(class: u8, subclass: u8) -> Self {
        DeviceId::Class { class, subclass }
    }

    pub fn matches(&self, function: &PciFunction) -> bool {
        let header = &function.header;
        match *self {
            DeviceId::Exact { vendor, device } => {
                header.vendor_id == vendor && header.device_id == device
            }
            DeviceId::Class { class, subclass } => {
                header.class == class && header.subclass == subclass
            }
        }
    }

    /// Whether any of `ids` matches: a driver's table.
    pub fn any(ids: &[DeviceId], function: &PciFunction) -> bool {
        ids.iter().any(|id| id.matches(function))
    }
}

#[cfg(test)]
mod tests;
