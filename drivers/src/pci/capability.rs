//! The capability list (PCI Local Bus Specification 3.0, §6.7; ids from
//! the PCI Code and ID Assignment Specification), with MSI (§6.8.1) and
//! MSI-X (§6.8.2; PCI Express Base Specification 5.0, §7.7.2) decoded and
//! programmable, and the virtio structure capabilities of vendor 0x1af4
//! (virtio 1.2, §4.1.4) decoded.
//!
//! The list comes from the device, so it is not trusted: pointers are
//! masked to dwords (the low two bits are reserved), must not point into
//! the 64-byte header, may not revisit an entry, and the walk stops after
//! [`MAX_CAPABILITIES`]; a capability must fit in the 256 bytes.

use super::{reg, ConfigSpace, PciAddress, PciError, STATUS_CAPABILITIES};
use crate::hal::MsiMessage;
use crate::mmio::MmioRegion;
use alloc::vec::Vec;

/// Capabilities live in 0x40..0x100, dword aligned: at most 48 of them.
pub const MAX_CAPABILITIES: usize = 48;

/// The PCI vendor id of virtio devices.
pub const VIRTIO_VENDOR_ID: u16 = 0x1af4;

const ID_MSI: u8 = 0x05;
const ID_VENDOR: u8 = 0x09;
const ID_MSIX: u8 = 0x11;

/// One capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    Msi(MsiCapability),
    MsiX(MsixCapability),
    Virtio(VirtioCapability),
    /// Listed by id only.
    Other {
        pointer: u8,
        id: u8,
    },
}

impl Capability {
    /// Where in configuration space it starts.
    pub fn pointer(&self) -> u8 {
        match *self {
            Capability::Msi(MsiCapability { pointer, .. })
            | Capability::MsiX(MsixCapability { pointer, .. })
            | Capability::Virtio(VirtioCapability { pointer, .. })
            | Capability::Other { pointer, .. } => pointer,
        }
    }

    pub fn id(&self) -> u8 {
        match *self {
            Capability::Msi(_) => ID_MSI,
            Capability::MsiX(_) => ID_MSIX,
            Capability::Virtio(_) => ID_VENDOR,
            Capability::Other { id, .. } => id,
        }
    }

    /// A short name for the boot log: `msi`, `virtio-notify`, `pcie`.
    pub fn name(&self) -> &'static str {
        match self {
            Capability::Virtio(virtio) => virtio.cfg_type.name(),
            _ => capability_name(self.id()),
        }
    }
}

/// Short names of the capability ids (PCI Code and ID Assignment
/// Specification, §2).
pub fn capability_name(id: u8) -> &'static str {
    match id {
        0x01 => "pm",
        0x02 => "agp",
        0x03 => "vpd",
        0x04 => "slotid",
        0x05 => "msi",
        0x06 => "hotswap",
        0x07 => "pcix",
        0x08 => "ht",
        0x09 => "vendor",
        0x0a => "debug",
        0x0b => "cpci",
        0x0c => "shpc",
        0x0d => "ssvid",
        0x0e => "agp8x",
        0x0f => "secure",
        0x10 => "pcie",
        0x11 => "msix",
        0x12 => "sata",
        0x13 => "af",
        0x14 => "ea",
        0x15 => "fpb",
        _ => "unknown",
    }
}

/// The MSI capability (§6.8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiCapability {
    pub pointer: u8,
    /// The message address has an upper dword.
    pub is_64bit: bool,
    /// Mask and pending bits follow the data.
    pub per_vector_masking: bool,
    /// log2 of the vectors the function can use (0-5).
    pub multiple_message_capable: u8,
}

const MSI_ENABLE: u16 = 1 << 0;
const MSI_MULTIPLE_ENABLE: u16 = 0b111 << 4;

impl MsiCapability {
    fn decode(pointer: u8, control: u16) -> Self {
        MsiCapability {
            pointer,
            is_64bit: control & (1 << 7) != 0,
            per_vector_masking: control & (1 << 8) != 0,
            multiple_message_capable: ((control >> 1) & 0b111).min(5) as u8,
        }
    }

    /// Bytes the structure occupies: 10, 14, 20 or 24.
    pub fn len(&self) -> u8 {
        match (self.is_64bit, self.per_vector_masking) {
            (false, false) => 10,
            (true, false) => 14,
            (false, true) => 20,
            (true, true) => 24,
        }
    }

    /// Never empty; for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// How many vectors the function asks for.
    pub fn vectors(&self) -> u8 {
        1 << self.multiple_message_capable
    }

    /// Offset of the message data register.
    pub fn data_offset(&self) -> u16 {
        u16::from(self.pointer) + if self.is_64bit { 0x0c } else { 0x08 }
    }

    /// Offset of the mask bits, with per-vector masking.
    pub fn mask_offset(&self) -> Option<u16> {
        self.per_vector_masking.then(|| self.data_offset() + 4)
    }

    /// Writes `message` and enables MSI with one vector; the function
    /// stops using INTx from then on (§6.8.3.3).
    pub fn enable<C: ConfigSpace + ?Sized>(
        &self,
        cfg: &C,
        addr: PciAddress,
        message: MsiMessage,
    ) -> Result<(), PciError> {
        if !self.is_64bit && message.address >> 32 != 0 {
            return Err(PciError::MsiAddress {
                address: message.address,
            });
        }
        let pointer = u16::from(self.pointer);
        cfg.write32(addr, pointer + 4, message.address as u32);
        if self.is_64bit {
            cfg.write32(addr, pointer + 8, (message.address >> 32) as u32);
        }
        // The upper half of the data dword is reserved (or extended data,
        // off): zero.
        cfg.write32(addr, self.data_offset(), message.data & 0xffff);
        if let Some(mask) = self.mask_offset() {
            cfg.write32(addr, mask, 0);
        }
        self.write_control(cfg, addr, |control| {
            (control & !MSI_MULTIPLE_ENABLE) | MSI_ENABLE
        });
        Ok(())
    }

    /// Turns MSI off again.
    pub fn disable<C: ConfigSpace + ?Sized>(&self, cfg: &C, addr: PciAddress) {
        self.write_control(cfg, addr, |control| control & !MSI_ENABLE);
    }

    fn write_control<C: ConfigSpace + ?Sized>(
        &self,
        cfg: &C,
        addr: PciAddress,
        change: impl FnOnce(u16) -> u16,
    ) {
        write_control(cfg, addr, self.pointer, change);
    }
}

/// Rewrites the message control word at `pointer + 2`; the id and next
/// pointer below it in the same dword are read-only, written back as read.
fn write_control<C: ConfigSpace + ?Sized>(
    cfg: &C,
    addr: PciAddress,
    pointer: u8,
    change: impl FnOnce(u16) -> u16,
) {
    let dword = cfg.read32(addr, u16::from(pointer));
    let control = change((dword >> 16) as u16);
    cfg.write32(
        addr,
        u16::from(pointer),
        u32::from(control) << 16 | (dword & 0xffff),
    );
}

/// The MSI-X capability (§6.8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability {
    pub pointer: u8,
    /// Entries in the table (1-2048).
    pub table_size: u16,
    /// The BAR holding the table, and where in it.
    pub table_bar: u8,
    pub table_offset: u32,
    /// The BAR holding the pending bit array, and where in it.
    pub pba_bar: u8,
    pub pba_offset: u32,
}

const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// Bytes per table entry: address low, address high, data, vector control.
pub const MSIX_ENTRY_SIZE: usize = 16;

impl MsixCapability {
    fn decode(pointer: u8, control: u16, table: u32, pba: u32) -> Self {
        MsixCapability {
            pointer,
            table_size: (control & 0x7ff) + 1,
            table_bar: (table & 0x7) as u8,
            table_offset: table & !0x7,
            pba_bar: (pba & 0x7) as u8,
            pba_offset: pba & !0x7,
        }
    }

    /// Bytes of the table.
    pub fn table_len(&self) -> usize {
        usize::from(self.table_size) * MSIX_ENTRY_SIZE
    }

    /// Writes `message` into entry `entry` of the table (mapped as
    /// `table`, from the table BAR at the table offset) and unmasks it.
    pub fn write_entry(
        &self,
        table: &MmioRegion,
        entry: u16,
        message: MsiMessage,
    ) -> Result<(), PciError> {
        if entry >= self.table_size {
            return Err(PciError::MsixEntry {
                entry,
                table_size: self.table_size,
            });
        }
        let at = usize::from(entry) * MSIX_ENTRY_SIZE;
        table.write32(at, message.address as u32)?;
        table.write32(at + 4, (message.address >> 32) as u32)?;
        table.write32(at + 8, message.data)?;
        // Unmask last, once the entry holds the whole message.
        table.write32(at + 12, 0)?;
        Ok(())
    }

    /// Enables MSI-X (unmasking the function) or disables it.
    pub fn set_enabled<C: ConfigSpace + ?Sized>(&self, cfg: &C, addr: PciAddress, enabled: bool) {
        write_control(cfg, addr, self.pointer, |control| {
            let control = control & !MSIX_FUNCTION_MASK;
            if enabled {
                control | MSIX_ENABLE
            } else {
                control & !MSIX_ENABLE
            }
        });
    }
}

/// The kind of a virtio structure (virtio 1.2, §4.1.4, `cfg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioCfgType {
    Common,
    Notify,
    Isr,
    Device,
    /// Access to the BARs through configuration space.
    PciCfg,
    SharedMemory,
    Vendor,
    Unknown(u8),
}

impl VirtioCfgType {
    fn from_raw(raw: u8) -> Self {
        match raw {
            1 => VirtioCfgType::Common,
            2 => VirtioCfgType::Notify,
            3 => VirtioCfgType::Isr,
            4 => VirtioCfgType::Device,
            5 => VirtioCfgType::PciCfg,
            8 => VirtioCfgType::SharedMemory,
            9 => VirtioCfgType::Vendor,
            other => VirtioCfgType::Unknown(other),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            VirtioCfgType::Common => "virtio-common",
            VirtioCfgType::Notify => "virtio-notify",
            VirtioCfgType::Isr => "virtio-isr",
            VirtioCfgType::Device => "virtio-device",
            VirtioCfgType::PciCfg => "virtio-pci",
            VirtioCfgType::SharedMemory => "virtio-shm",
            VirtioCfgType::Vendor => "virtio-vendor",
            VirtioCfgType::Unknown(_) => "virtio-unknown",
        }
    }
}

/// A virtio structure capability (`struct virtio_pci_cap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCapability {
    pub pointer: u8,
    pub cfg_type: VirtioCfgType,
    /// The BAR the structure is in; values above 5 are reserved and a
    /// driver ignores the capability (§4.1.4).
    pub bar: u8,
    /// Identifies one of several structures of the same type.
    pub id: u8,
    /// Where in the BAR, and how long.
    pub offset: u32,
    pub length: u32,
    /// For the notify structure: a queue's notify address is `offset +
    /// queue_notify_off * notify_off_multiplier` (§4.1.4.4).
    pub notify_off_multiplier: Option<u32>,
}

const VIRTIO_CAP_LEN: u8 = 16;
const VIRTIO_NOTIFY_CAP_LEN: u8 = 20;

/// Walks the capability list of the function at `addr` (vendor
/// `vendor_id`, which says whether vendor capabilities are virtio's);
/// problems go to `errors`, and a bad pointer ends the walk.
pub fn read_capabilities<C: ConfigSpace + ?Sized>(
    cfg: &C,
    addr: PciAddress,
    vendor_id: u16,
    errors: &mut Vec<PciError>,
) -> Vec<Capability> {
    let mut capabilities = Vec::new();
    if cfg.read16(addr, reg::STATUS) & STATUS_CAPABILITIES == 0 {
        return capabilities;
    }
    let mut at = reg::CAPABILITIES;
    let mut pointer = cfg.read8(addr, at) & 0xfc;
    // One bit per dword of configuration space.
    let mut visited = 0u64;
    let mut entries = 0;
    while pointer != 0 {
        if pointer < 0x40 {
            errors.push(PciError::CapabilityPointer { at, pointer });
            break;
        }
        let bit = 1u64 << (pointer / 4);
        // The bitmap alone bounds the walk to 48 entries; the count says
        // so where a reader looks for it.
        if visited & bit != 0 || entries == MAX_CAPABILITIES {
            errors.push(PciError::CapabilityLoop { pointer });
            break;
        }
        visited |= bit;
        entries += 1;
        let header = cfg.read32(addr, u16::from(pointer));
        match decode(cfg, addr, vendor_id, pointer, header) {
            Ok(capability) => capabilities.push(capability),
            Err(error) => errors.push(error),
        }
        at = u16::from(pointer) + 1;
        pointer = (header >> 8) as u8 & 0xfc;
    }
    capabilities
}

fn decode<C: ConfigSpace + ?Sized>(
    cfg: &C,
    addr: PciAddress,
    vendor_id: u16,
    pointer: u8,
    header: u32,
) -> Result<Capability, PciError> {
    let id = header as u8;
    let control = (header >> 16) as u16;
    let fits = |len: u8| {
        if usize::from(pointer) + usize::from(len) <= 0x100 {
            Ok(())
        } else {
            Err(PciError::CapabilityTruncated { pointer, id, len })
        }
    };
    let at = |offset: u16| cfg.read32(addr, u16::from(pointer) + offset);
    match id {
        ID_MSI => {
            let msi = MsiCapability::decode(pointer, control);
            fits(msi.len())?;
            Ok(Capability::Msi(msi))
        }
        ID_MSIX => {
            fits(12)?;
            Ok(Capability::MsiX(MsixCapability::decode(
                pointer,
                control,
                at(4),
                at(8),
            )))
        }
        ID_VENDOR if vendor_id == VIRTIO_VENDOR_ID => {
            let len = (header >> 16) as u8;
            let cfg_type = VirtioCfgType::from_raw((header >> 24) as u8);
            let needed = if cfg_type == VirtioCfgType::Notify {
                VIRTIO_NOTIFY_CAP_LEN
            } else {
                VIRTIO_CAP_LEN
            };
            if len < needed {
                return Err(PciError::CapabilityTruncated { pointer, id, len });
            }
            fits(len)?;
            let bar_and_id = at(4);
            Ok(Capability::Virtio(VirtioCapability {
                pointer,
                cfg_type,
                bar: bar_and_id as u8,
                id: (bar_and_id >> 8) as u8,
                offset: at(8),
                length: at(12),
                notify_off_multiplier: (cfg_type == VirtioCfgType::Notify).then(|| at(16)),
            }))
        }
        _ => Ok(Capability::Other { pointer, id }),
    }
}
