//! The configuration header: identification (PCI Local Bus Specification
//! 3.0, §6.2.1: vendor, device, revision, class code, header type and its
//! multi-function bit), the interrupt registers (§6.2.4), the type 0
//! subsystem ids (§6.2.4) and the type 1 bus numbers (PCI-to-PCI Bridge
//! Architecture Specification 1.2, §3.2.5.2-3.2.5.4); and the names of the
//! common class codes (PCI 3.0, appendix D).

use super::{reg, ConfigSpace, PciAddress};

/// The decoded header of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision: u8,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    /// Bit 7 of the header type: functions 1-7 may exist. Meaningful on
    /// function 0.
    pub multifunction: bool,
    /// The IRQ firmware routed INTx to (0xff: none).
    pub interrupt_line: u8,
    /// 0: no INTx; 1-4: INTA#-INTD#.
    pub interrupt_pin: u8,
    pub kind: HeaderKind,
}

/// The layout after the common part, by header type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// Type 0: an endpoint.
    Device {
        subsystem_vendor_id: u16,
        subsystem_id: u16,
    },
    /// Type 1: a PCI-to-PCI bridge, forwarding buses
    /// `secondary_bus..=subordinate_bus`.
    Bridge {
        primary_bus: u8,
        secondary_bus: u8,
        subordinate_bus: u8,
    },
    /// Type 2 (CardBus) or an undefined type: only the common part is read.
    Other(u8),
}

impl Header {
    /// Reads the header at `addr`; `None` when no function answers (the
    /// vendor id reads 0xffff, which no vendor has).
    pub fn read<C: ConfigSpace + ?Sized>(cfg: &C, addr: PciAddress) -> Option<Header> {
        let id = cfg.read32(addr, reg::VENDOR_ID);
        let vendor_id = id as u16;
        if vendor_id == 0xffff {
            return None;
        }
        let class = cfg.read32(addr, reg::REVISION);
        let header_type = cfg.read8(addr, reg::HEADER_TYPE);
        let interrupt = cfg.read32(addr, reg::INTERRUPT);
        let kind = match header_type & 0x7f {
            0 => {
                let subsystem = cfg.read32(addr, reg::SUBSYSTEM);
                HeaderKind::Device {
                    subsystem_vendor_id: subsystem as u16,
                    subsystem_id: (subsystem >> 16) as u16,
                }
            }
            1 => {
                let buses = cfg.read32(addr, reg::BUS_NUMBERS);
                HeaderKind::Bridge {
                    primary_bus: buses as u8,
                    secondary_bus: (buses >> 8) as u8,
                    subordinate_bus: (buses >> 16) as u8,
                }
            }
            other => HeaderKind::Other(other),
        };
        Some(Header {
            vendor_id,
            device_id: (id >> 16) as u16,
            revision: class as u8,
            prog_if: (class >> 8) as u8,
            subclass: (class >> 16) as u8,
            class: (class >> 24) as u8,
            multifunction: header_type & 0x80 != 0,
            interrupt_line: interrupt as u8,
            interrupt_pin: (interrupt >> 8) as u8,
            kind,
        })
    }
}

/// A name for a class/subclass pair, as `lspci` spells the common ones;
/// the class alone when the subclass is not listed.
pub fn class_name(class: u8, subclass: u8) -> &'static str {
    match (class, subclass) {
        (0x00, 0x01) => "VGA compatible unclassified device",
        (0x00, _) => "Unclassified device",
        (0x01, 0x00) => "SCSI storage controller",
        (0x01, 0x01) => "IDE interface",
        (0x01, 0x05) => "ATA controller",
        (0x01, 0x06) => "SATA controller",
        (0x01, 0x07) => "Serial Attached SCSI controller",
        (0x01, 0x08) => "Non-Volatile memory controller",
        (0x01, _) => "Mass storage controller",
        (0x02, 0x00) => "Ethernet controller",
        (0x02, _) => "Network controller",
        (0x03, 0x00) => "VGA compatible controller",
        (0x03, 0x02) => "3D controller",
        (0x03, _) => "Display controller",
        (0x04, 0x01) => "Multimedia audio controller",
        (0x04, 0x03) => "Audio device",
        (0x04, _) => "Multimedia controller",
        (0x05, 0x00) => "RAM memory",
        (0x05, _) => "Memory controller",
        (0x06, 0x00) => "Host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x06, _) => "Bridge",
        (0x07, 0x00) => "Serial controller",
        (0x07, _) => "Communication controller",
        (0x08, _) => "System peripheral",
        (0x0c, 0x03) => "USB controller",
        (0x0c, 0x05) => "SMBus",
        (0x0c, _) => "Serial bus controller",
        (0xff, _) => "Unassigned class",
        _ => "Unknown class",
    }
}
