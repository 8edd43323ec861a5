//! Just enough ACPI to power the machine off: find the FADT through the
//! RSDP and the RSDT/XSDT, read its PM1a control port, and find the sleep
//! type of the `\_S5` (soft-off) package in the DSDT. ACPI 6.5: 5.2.5
//! (RSDP), 5.2.7/5.2.8 (RSDT/XSDT), 5.2.9 (FADT: PM1a_CNT_BLK at offset
//! 64, DSDT at 40, X_DSDT at 140), 7.4.2 (`\_S5`), 20.2 (AML encodings:
//! NameOp 0x08, PackageOp 0x12, BytePrefix 0x0A, ZeroOp 0x00, OneOp 0x01).
//!
//! `\_S5` is found by its name in the AML byte stream rather than by
//! interpreting AML, as small kernels commonly do; a DSDT that computes
//! it is not supported (the lookup then fails and the caller says so).
//! Pure: the kernel hands in table bytes.

use core::fmt;

/// Why a table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    BadSignature,
    BadChecksum,
    Truncated,
    NotFound(&'static str),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::BadSignature => write!(f, "bad signature"),
            AcpiError::BadChecksum => write!(f, "bad checksum"),
            AcpiError::Truncated => write!(f, "table shorter than its header says"),
            AcpiError::NotFound(what) => write!(f, "{what} not found"),
        }
    }
}

/// The bytes sum to zero (mod 256), as every ACPI table's must.
pub fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    bytes
        .get(offset..offset + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let low = u64::from(u32_at(bytes, offset)?);
    let high = u64::from(u32_at(bytes, offset + 4)?);
    Some(high << 32 | low)
}

/// Where the system description table lives, from the RSDP (20 bytes for
/// revision 0, 36 for 2+): the XSDT when there is one, else the RSDT.
pub fn rsdp_root(rsdp: &[u8]) -> Result<(u64, bool), AcpiError> {
    if rsdp.get(0..8) != Some(b"RSD PTR ") {
        return Err(AcpiError::BadSignature);
    }
    if !checksum_ok(rsdp.get(0..20).ok_or(AcpiError::Truncated)?) {
        return Err(AcpiError::BadChecksum);
    }
    if rsdp[15] >= 2 {
        let length = u32_at(rsdp, 20).ok_or(AcpiError::Truncated)? as usize;
        let extended = rsdp.get(0..length.max(36)).ok_or(AcpiError::Truncated)?;
        if checksum_ok(extended) {
            if let Some(xsdt) = u64_at(rsdp, 24).filter(|&a| a != 0) {
                return Ok((xsdt, true));
            }
        }
    }
    Ok((
        u64::from(u32_at(rsdp, 16).ok_or(AcpiError::Truncated)?),
        false,
    ))
}

/// Checks a table's signature, length and checksum; returns the table
/// trimmed to its length.
pub fn table<'a>(bytes: &'a [u8], signature: &[u8; 4]) -> Result<&'a [u8], AcpiError> {
    if bytes.get(0..4) != Some(signature.as_slice()) {
        return Err(AcpiError::BadSignature);
    }
    let length = u32_at(bytes, 4).ok_or(AcpiError::Truncated)? as usize;
    let table = bytes.get(..length).ok_or(AcpiError::Truncated)?;
    if length < 36 || !checksum_ok(table) {
        return Err(AcpiError::BadChecksum);
    }
    Ok(table)
}

/// The table addresses an RSDT (4-byte entries) or XSDT (8-byte) lists.
pub fn root_entries(root: &[u8], wide: bool) -> impl Iterator<Item = u64> + '_ {
    let width = if wide { 8 } else { 4 };
    root.get(36..)
        .unwrap_or_default()
        .chunks_exact(width)
        .map(move |entry| {
            if wide {
                u64_at(entry, 0).unwrap_or(0)
            } else {
                u64::from(u32_at(entry, 0).unwrap_or(0))
            }
        })
}

/// From a FADT: the PM1a control port and the DSDT's address.
pub fn fadt_power(fadt: &[u8]) -> Result<(u16, u64), AcpiError> {
    let pm1a = u32_at(fadt, 64).ok_or(AcpiError::Truncated)?;
    if pm1a == 0 || pm1a > 0xffff {
        return Err(AcpiError::NotFound("PM1a control port"));
    }
    let dsdt = u64_at(fadt, 140)
        .filter(|&x| x != 0)
        .or_else(|| u32_at(fadt, 40).map(u64::from));
    Ok((
        pm1a as u16,
        dsdt.filter(|&d| d != 0)
            .ok_or(AcpiError::NotFound("DSDT"))?,
    ))
}

/// SLP_TYPa of `\_S5` in a DSDT's AML.
pub fn s5_sleep_type(dsdt: &[u8]) -> Result<u16, AcpiError> {
    let at = dsdt
        .windows(4)
        .position(|w| w == b"_S5_")
        .ok_or(AcpiError::NotFound("\\_S5"))?;
    let mut i = at + 4;
    if dsdt.get(i) != Some(&0x12) {
        return Err(AcpiError::NotFound("\\_S5 package"));
    }
    i += 1;
    // PkgLength: the top two bits of the first byte say how many more.
    let lead = *dsdt.get(i).ok_or(AcpiError::Truncated)?;
    i += 1 + usize::from(lead >> 6);
    i += 1; // NumElements
    match *dsdt.get(i).ok_or(AcpiError::Truncated)? {
        0x00 => Ok(0),
        0x01 => Ok(1),
        0x0a => dsdt
            .get(i + 1)
            .map(|&v| u16::from(v))
            .ok_or(AcpiError::Truncated),
        value if value < 0x0a => Ok(u16::from(value)),
        _ => Err(AcpiError::NotFound("\\_S5 sleep type")),
    }
}

/// The MADT's interrupt controller structures (ACPI 5.2.12): (type,
/// bytes) of each, stopping at the first malformed one.
fn madt_entries(madt: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut i = 44;
    core::iter::from_fn(move || {
        let (kind, length) = (*madt.get(i)?, usize::from(*madt.get(i + 1)?));
        if length < 2 || i + length > madt.len() {
            return None;
        }
        let entry = &madt[i..i + length];
        i += length;
        Some((kind, entry))
    })
}

/// From a MADT: the first I/O APIC's address and global interrupt base.
pub fn madt_ioapic(madt: &[u8]) -> Option<(u64, u32)> {
    madt_entries(madt).find_map(|(kind, entry)| match kind {
        // I/O APIC: id, reserved, address (u32), GSI base (u32).
        1 if entry.len() >= 12 => Some((u64::from(u32_at(entry, 4)?), u32_at(entry, 8)?)),
        _ => None,
    })
}

/// How an interrupt line signals (ACPI 5.2.12.5, MPS INTI flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineMode {
    pub level: bool,
    pub active_low: bool,
}

impl LineMode {
    /// ISA's default: edge-triggered, active high.
    pub const ISA: LineMode = LineMode {
        level: false,
        active_low: false,
    };
    /// PCI's default: level-triggered, active low.
    pub const PCI: LineMode = LineMode {
        level: true,
        active_low: true,
    };

    /// The mode MPS INTI `flags` state, `bus_default` where they say
    /// "conforms to the bus" (or hold a reserved value).
    pub fn from_flags(flags: u16, bus_default: LineMode) -> LineMode {
        LineMode {
            level: match (flags >> 2) & 0b11 {
                0b01 => false,
                0b11 => true,
                _ => bus_default.level,
            },
            active_low: match flags & 0b11 {
                0b01 => false,
                0b11 => true,
                _ => bus_default.active_low,
            },
        }
    }
}

/// The global interrupt and mode of IRQ `irq` of a bus whose lines are
/// `bus_default` unless the MADT overrides them: an Interrupt Source
/// Override for that IRQ, else the IRQ number itself.
pub fn madt_route(madt: &[u8], irq: u8, bus_default: LineMode) -> (u32, LineMode) {
    madt_entries(madt)
        .find_map(|(kind, entry)| match kind {
            // Interrupt Source Override: bus, source IRQ, GSI (u32), flags.
            2 if entry.len() >= 10 && entry[3] == irq => {
                let flags = u16::from_le_bytes([entry[8], entry[9]]);
                Some((u32_at(entry, 4)?, LineMode::from_flags(flags, bus_default)))
            }
            _ => None,
        })
        .unwrap_or((u32::from(irq), bus_default))
}

/// One ECAM window of an MCFG (PCI Firmware Specification 3.0, 4.1.2):
/// configuration space of buses `start_bus..=end_bus` of `segment` at
/// `base` (bus `b`, device `d`, function `f` at `base + (b - start_bus) << 20
/// | d << 15 | f << 12`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamWindow {
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

/// The ECAM windows an MCFG lists: 16-byte entries after the 36-byte
/// header and 8 reserved bytes. An entry whose bus range runs backwards or
/// whose base is not 1 MiB-aligned is skipped; a trailing partial entry
/// is ignored.
pub fn mcfg_windows(mcfg: &[u8]) -> impl Iterator<Item = EcamWindow> + '_ {
    mcfg.get(44..)
        .unwrap_or(&[])
        .chunks_exact(16)
        .filter_map(|entry| {
            let base = u64::from_le_bytes(entry[0..8].try_into().ok()?);
            let window = EcamWindow {
                base,
                segment: u16::from_le_bytes([entry[8], entry[9]]),
                start_bus: entry[10],
                end_bus: entry[11],
            };
            (window.start_bus <= window.end_bus && base & 0xf_ffff == 0 && base != 0)
                .then_some(window)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn mcfg_with(entries: &[(u64, u16, u8, u8)]) -> Vec<u8> {
        let mut table = std::vec![0u8; 44];
        table[0..4].copy_from_slice(b"MCFG");
        for &(base, segment, start, end) in entries {
            table.extend_from_slice(&base.to_le_bytes());
            table.extend_from_slice(&segment.to_le_bytes());
            table.extend_from_slice(&[start, end, 0, 0, 0, 0]);
        }
        let length = table.len() as u32;
        table[4..8].copy_from_slice(&length.to_le_bytes());
        table
    }

    #[test]
    fn inti_flags_decode() {
        assert_eq!(LineMode::from_flags(0, LineMode::PCI), LineMode::PCI);
        assert_eq!(LineMode::from_flags(0, LineMode::ISA), LineMode::ISA);
        assert_eq!(LineMode::from_flags(0b1111, LineMode::ISA), LineMode::PCI);
        assert_eq!(LineMode::from_flags(0b0101, LineMode::PCI), LineMode::ISA);
        // Reserved values (0b10) fall back to the bus.
        assert_eq!(LineMode::from_flags(0b1010, LineMode::PCI), LineMode::PCI);
    }

    #[test]
    fn mcfg_lists_ecam_windows() {
        // QEMU q35: one window at 0xb000_0000 for buses 0..=255.
        let table = mcfg_with(&[(0xb000_0000, 0, 0, 255)]);
        let windows: Vec<_> = mcfg_windows(&table).collect();
        assert_eq!(
            windows,
            [EcamWindow {
                base: 0xb000_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 255
            }]
        );
    }

    #[test]
    fn mcfg_skips_bad_entries_and_tolerates_truncation() {
        let mut table = mcfg_with(&[
            (0xb000_0000, 0, 8, 4),  // buses backwards
            (0xb000_1000, 0, 0, 1),  // not 1 MiB-aligned
            (0, 0, 0, 1),            // no base
            (0xe000_0000, 1, 0, 15), // good
        ]);
        table.extend_from_slice(&[1, 2, 3]); // partial entry
        let windows: Vec<_> = mcfg_windows(&table).collect();
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].base, 0xe000_0000);
        assert_eq!(windows[0].segment, 1);
        assert_eq!(mcfg_windows(&table[..20]).count(), 0);
    }

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        bytes[at] = 0u8.wrapping_sub(sum);
    }

    fn sdt(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = Vec::from(*signature);
        t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
        t.resize(36, 0);
        t.extend_from_slice(body);
        fix_checksum(&mut t, 9);
        t
    }

    #[test]
    fn rsdp_revisions() {
        let mut v1 = Vec::from(*b"RSD PTR ");
        v1.extend_from_slice(&[0; 7]);
        v1.push(0); // revision 0
        v1.extend_from_slice(&0x7fe1234u32.to_le_bytes());
        fix_checksum(&mut v1, 8);
        assert_eq!(rsdp_root(&v1), Ok((0x7fe1234, false)));
        let mut v2 = v1.clone();
        v2[15] = 2;
        v2.extend_from_slice(&36u32.to_le_bytes());
        v2.extend_from_slice(&0x1_2345_6000u64.to_le_bytes());
        v2.extend_from_slice(&[0; 4]);
        fix_checksum(&mut v2[..20], 8);
        fix_checksum(&mut v2, 32);
        assert_eq!(rsdp_root(&v2), Ok((0x1_2345_6000, true)));
        let mut bad = v1.clone();
        bad[16] ^= 1;
        assert_eq!(rsdp_root(&bad), Err(AcpiError::BadChecksum));
        assert_eq!(
            rsdp_root(b"NOT RSDP and more bytes here"),
            Err(AcpiError::BadSignature)
        );
    }

    #[test]
    fn tables_are_checked_and_listed() {
        let body: Vec<u8> = [0x1000u32, 0x2000]
            .iter()
            .flat_map(|a| a.to_le_bytes())
            .collect();
        let rsdt = sdt(b"RSDT", &body);
        let table = table(&rsdt, b"RSDT").unwrap();
        assert_eq!(
            root_entries(table, false).collect::<Vec<_>>(),
            [0x1000, 0x2000]
        );
        let mut broken = rsdt.clone();
        broken[40] ^= 0xff;
        assert_eq!(super::table(&broken, b"RSDT"), Err(AcpiError::BadChecksum));
        assert_eq!(super::table(&rsdt, b"XSDT"), Err(AcpiError::BadSignature));
        assert_eq!(
            super::table(&rsdt[..20], b"RSDT"),
            Err(AcpiError::Truncated)
        );
    }

    #[test]
    fn fadt_gives_the_port_and_dsdt() {
        let mut body = std::vec![0u8; 244 - 36];
        body[40 - 36..44 - 36].copy_from_slice(&0x7fe0040u32.to_le_bytes());
        body[64 - 36..68 - 36].copy_from_slice(&0xb004u32.to_le_bytes());
        let fadt = sdt(b"FACP", &body);
        assert_eq!(fadt_power(&fadt), Ok((0xb004, 0x7fe0040)));
        let no_port = sdt(b"FACP", &std::vec![0u8; 208]);
        assert_eq!(
            fadt_power(&no_port),
            Err(AcpiError::NotFound("PM1a control port"))
        );
    }

    #[test]
    fn madt_ioapic_and_overrides() {
        let mut body = std::vec![0u8; 8]; // local APIC address + flags
        body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // a local APIC
        body.extend_from_slice(&[1, 12, 0, 0]); // I/O APIC, id 0
        body.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&[2, 10, 0, 0]); // ISA IRQ 0 -> GSI 2
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&[0, 0]);
        // QEMU's override for a PCI link IRQ: 11 -> 11, level, active high.
        body.extend_from_slice(&[2, 10, 0, 11]);
        body.extend_from_slice(&11u32.to_le_bytes());
        body.extend_from_slice(&0x000du16.to_le_bytes());
        let madt = sdt(b"APIC", &body);
        assert_eq!(madt_ioapic(&madt), Some((0xfec0_0000, 0)));
        assert_eq!(madt_route(&madt, 4, LineMode::ISA), (4, LineMode::ISA));
        assert_eq!(madt_route(&madt, 0, LineMode::ISA), (2, LineMode::ISA));
        let level_high = LineMode {
            level: true,
            active_low: false,
        };
        assert_eq!(madt_route(&madt, 11, LineMode::PCI), (11, level_high));
        // No override: the bus's default.
        assert_eq!(madt_route(&madt, 10, LineMode::PCI), (10, LineMode::PCI));
        let no_ioapic = sdt(b"APIC", &std::vec![0u8; 8]);
        assert_eq!(madt_ioapic(&no_ioapic), None);
        // A zero-length entry ends the walk instead of looping.
        let mut broken = std::vec![0u8; 8];
        broken.extend_from_slice(&[1, 0, 0, 0]);
        assert_eq!(madt_ioapic(&sdt(b"APIC", &broken)), None);
        assert_eq!(madt_route(&sdt(b"APIC", &broken), 3, LineMode::ISA).0, 3);
    }

    #[test]
    fn s5_package_forms() {
        // QEMU: Name(_S5, Package(4) {Zero, Zero, Zero, Zero})
        let qemu = [
            0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(s5_sleep_type(&qemu), Ok(0));
        let byte = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x07, 0x0a, 0x07, 0x00, 0x00,
        ];
        assert_eq!(s5_sleep_type(&byte), Ok(7));
        let long_pkg = [b'_', b'S', b'5', b'_', 0x12, 0x40, 0x01, 0x04, 0x01];
        assert_eq!(s5_sleep_type(&long_pkg), Ok(1));
        assert_eq!(
            s5_sleep_type(b"no such object"),
            Err(AcpiError::NotFound("\\_S5"))
        );
        assert_eq!(
            s5_sleep_type(b"_S5_\x14"),
            Err(AcpiError::NotFound("\\_S5 package"))
        );
    }
}
