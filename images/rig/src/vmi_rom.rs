//! The VMI test ROM (images/vmi-rom): sealing the assembled image into a
//! loadable option ROM, and the corrupted copies the matrix boots to check
//! that the kernel refuses each with its reason.
//!
//! The header constants and the checksum rule come from `hv::vmi`, the
//! same code the kernel parses ROMs with.

use hv::vmi::{self, offset, ROM_BLOCK};
use std::fs;
use std::path::Path;

/// Marks the test ROM's relocation table (README.md in images/vmi-rom).
const RELOC_MARKER: &[u8] = b"RELOCTAB";
/// Bytes per relocation-table entry: {u8 type, u8 0, u16 target offset}.
const RELOC_ENTRY: usize = 4;

/// What a corrupted ROM gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// API 12.3: an older major version.
    OldMajor,
    /// EnableInterrupts answered with relocation type 7.
    UnknownRelocation,
    /// DisableInterrupts answered with a target past the end of the ROM.
    TargetOutside,
    /// SetAlarm answered NONE: the kernel has no native form to keep.
    AlarmNotCallable,
}

impl Corruption {
    pub fn name(self) -> &'static str {
        match self {
            Corruption::OldMajor => "old-major",
            Corruption::UnknownRelocation => "unknown-relocation",
            Corruption::TargetOutside => "target-outside",
            Corruption::AlarmNotCallable => "alarm-not-callable",
        }
    }
}

/// Pads the assembled image to whole 512-byte blocks with one spare byte
/// at the end for the checksum, then writes the header.
pub fn seal(image: &[u8]) -> Result<Vec<u8>, String> {
    let mut rom = image.to_vec();
    rom.resize((image.len() + 1).next_multiple_of(ROM_BLOCK), 0);
    vmi::seal(&mut rom).map_err(str::to_string)?;
    Ok(rom)
}

/// `rig vmi-rom IN OUT`: seals the assembled image IN into OUT.
pub fn seal_file(input: &Path, output: &Path) -> Result<(), String> {
    let image = fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let rom = seal(&image)?;
    fs::write(output, &rom).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    println!(
        "vmi-rom: {} ({} bytes, {} blocks, API {}.{})",
        output.display(),
        rom.len(),
        rom.len() / ROM_BLOCK,
        vmi::API_MAJOR,
        vmi::API_MINOR
    );
    Ok(())
}

fn reloc_entry(rom: &[u8], call: vmi::Call) -> Result<usize, String> {
    let marker = rom
        .windows(RELOC_MARKER.len())
        .position(|w| w == RELOC_MARKER)
        .ok_or("the ROM has no RELOCTAB marker")?;
    let entry = marker + RELOC_MARKER.len() + usize::from(call.number()) * RELOC_ENTRY;
    if entry + RELOC_ENTRY > rom.len() {
        return Err("the ROM's relocation table is cut short".to_string());
    }
    Ok(entry)
}

/// A copy of the good ROM `good` with `corruption`, checksum made right
/// again (SeaBIOS runs only ROMs whose checksum holds, so a bad one never
/// reaches the kernel; the kernel's own checksum and length checks are
/// host-tested in hv::vmi).
pub fn corrupt(good: &[u8], corruption: Corruption) -> Result<Vec<u8>, String> {
    let mut rom = good.to_vec();
    match corruption {
        Corruption::OldMajor => rom[offset::API_MAJOR] = vmi::API_MAJOR - 1,
        Corruption::UnknownRelocation => {
            let entry = reloc_entry(&rom, vmi::Call::EnableInterrupts)?;
            rom[entry] = 7;
        }
        Corruption::TargetOutside => {
            let entry = reloc_entry(&rom, vmi::Call::DisableInterrupts)?;
            let outside = u16::try_from(rom.len() + 0x100).map_err(|_| "ROM too large")?;
            rom[entry + 2..entry + 4].copy_from_slice(&outside.to_le_bytes());
        }
        Corruption::AlarmNotCallable => {
            let entry = reloc_entry(&rom, vmi::Call::SetAlarm)?;
            rom[entry] = vmi::RELOCATION_NONE;
        }
    }
    vmi::reseal(&mut rom);
    Ok(rom)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the assembled image: a header area, a relocation
    /// table after the marker, and some bytes.
    fn image() -> Vec<u8> {
        let mut image = vec![0u8; 2900 + 88 * RELOC_ENTRY];
        image[offset::ENTRY] = 0xcb;
        let at = 2900 - RELOC_MARKER.len();
        image[at..2900].copy_from_slice(RELOC_MARKER);
        for call in 0..88usize {
            let entry = 2900 + call * RELOC_ENTRY;
            image[entry] = 1;
            image[entry + 2..entry + 4].copy_from_slice(&((call * 32) as u16).to_le_bytes());
        }
        image
    }

    #[test]
    fn sealing_pads_to_blocks_and_checksums() {
        let rom = seal(&image()).unwrap();
        assert_eq!(rom.len() % ROM_BLOCK, 0);
        assert_eq!(usize::from(rom[offset::LENGTH]) * ROM_BLOCK, rom.len());
        assert_eq!(vmi::checksum(&rom), 0);
        assert!(vmi::is_vmi_rom(&rom));
        // A 512-byte multiple still gets its spare checksum byte.
        let exact = seal(&vec![0u8; 1024]).unwrap();
        assert_eq!(exact.len(), 1536);
    }

    #[test]
    fn every_corruption_changes_one_thing_and_keeps_the_checksum() {
        let good = seal(&image()).unwrap();
        for corruption in [
            Corruption::OldMajor,
            Corruption::UnknownRelocation,
            Corruption::TargetOutside,
            Corruption::AlarmNotCallable,
        ] {
            let bad = corrupt(&good, corruption).unwrap();
            assert_eq!(vmi::checksum(&bad), 0, "{}", corruption.name());
            let changed = good.iter().zip(&bad).filter(|(a, b)| a != b).count();
            // The changed byte(s) and the checksum byte.
            assert!(
                (2..=3).contains(&changed),
                "{}: {changed}",
                corruption.name()
            );
        }
        let old = corrupt(&good, Corruption::OldMajor).unwrap();
        assert!(matches!(
            vmi::parse(&old),
            Err(vmi::RomError::WrongMajor { found: 12, .. })
        ));
        let unknown = corrupt(&good, Corruption::UnknownRelocation).unwrap();
        let entry = reloc_entry(&unknown, vmi::Call::EnableInterrupts).unwrap();
        assert_eq!(unknown[entry], 7);
    }

    #[test]
    fn a_rom_without_the_marker_is_an_error() {
        let good = seal(&[0u8; 600]).unwrap();
        assert!(corrupt(&good, Corruption::UnknownRelocation).is_err());
    }
}
