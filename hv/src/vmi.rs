//! VMware's Virtual Machine Interface (VMI), API 13.3, with the 64-bit
//! register convention sanos defines for it (`images/vmi-rom/README.md`).
//!
//! A VMI hypervisor offers an option ROM in the BIOS expansion area
//! (physical `0xC0000..0xE0000`, 2 KiB aligned). Its first 32 bytes are an
//! option-ROM header carrying the VMI signature and API version; call `N`
//! lives in the 32-byte slot at ROM offset `N * 32`. The guest calls
//! `Init`, then asks `GetRelocationInfo` operation by operation how to bind
//! each of its call sites: keep the native instruction (NONE), call an
//! address (CALL_REL), nothing at all (NOP); JUMP_REL exists in the
//! protocol for operations that do not return (IRET, SYSEXIT), which sanos
//! does not route through VMI.
//!
//! Everything here is pure and host-tested: the header parser with its
//! refusals, the relocation decoder, and `seal`, with which the project's
//! build writes a ROM's header. The reference for the layout and numbering
//! is the original sanos's `src/include/os/vmi.h` (VMware's public header).

use core::fmt;

/// "cVmi" at header offset 8.
pub const SIGNATURE: u32 = 0x696d_5663;
/// API version this kernel speaks; a ROM of another major version is
/// refused.
pub const API_MAJOR: u8 = 13;
pub const API_MINOR: u8 = 3;
/// The option-ROM signature at offset 0 (bytes 0x55, 0xAA).
pub const ROM_SIGNATURE: u16 = 0xaa55;
/// Where option ROMs live, and the alignment they are found at.
pub const SCAN_START: u64 = 0xc0000;
pub const SCAN_END: u64 = 0xe0000;
pub const SCAN_STEP: u64 = 2048;
/// Bytes per call slot; slot 0 is the header.
pub const SLOT_LEN: u64 = 32;
/// Calls the API numbers (0..NUM_CALLS).
pub const NUM_CALLS: u16 = 88;
/// Option-ROM length unit.
pub const ROM_BLOCK: usize = 512;
const PAGE: u32 = 4096;

/// Header offsets (`struct vrom_header`).
pub mod offset {
    pub const ROM_SIGNATURE: usize = 0;
    /// Length in 512-byte blocks.
    pub const LENGTH: usize = 2;
    /// The BIOS's 16-bit init entry (4 bytes).
    pub const ENTRY: usize = 3;
    pub const VMI_SIGNATURE: usize = 8;
    pub const API_MINOR: usize = 12;
    pub const API_MAJOR: usize = 13;
    /// `reserved3`, "reserved for private use": sanos's 64-bit convention
    /// puts the offset of the ROM's writable data area here (page
    /// aligned, 0 for none).
    pub const DATA_AREA: usize = 20;
    pub const PCI_HEADER: usize = 24;
    pub const PNP_HEADER: usize = 26;
    /// The header's size (slot 0).
    pub const END: usize = 32;
}

/// The VMI calls sanos uses, by their API 13.3 numbers.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Init = 4,
    SetCr3 = 22,
    GetCr3 = 26,
    EnableInterrupts = 35,
    DisableInterrupts = 36,
    GetInterruptMask = 37,
    SetInterruptMask = 38,
    Halt = 42,
    Reboot = 43,
    Shutdown = 44,
    InvalPage = 55,
    FlushTlb = 56,
    SetLinearMapping = 58,
    GetCycleFrequency = 79,
    GetCycleCounter = 80,
    SetAlarm = 81,
    CancelAlarm = 82,
    GetWallclockTime = 83,
    GetRelocationInfo = 85,
    SetPxELong = 87,
}

impl Call {
    pub const fn number(self) -> u16 {
        self as u16
    }

    /// Byte offset of the call's slot in the ROM.
    pub const fn slot_offset(self) -> u64 {
        self as u64 * SLOT_LEN
    }

    pub const fn name(self) -> &'static str {
        match self {
            Call::Init => "Init",
            Call::SetCr3 => "SetCR3",
            Call::GetCr3 => "GetCR3",
            Call::EnableInterrupts => "EnableInterrupts",
            Call::DisableInterrupts => "DisableInterrupts",
            Call::GetInterruptMask => "GetInterruptMask",
            Call::SetInterruptMask => "SetInterruptMask",
            Call::Halt => "Halt",
            Call::Reboot => "Reboot",
            Call::Shutdown => "Shutdown",
            Call::InvalPage => "InvalPage",
            Call::FlushTlb => "FlushTLB",
            Call::SetLinearMapping => "SetLinearMapping",
            Call::GetCycleFrequency => "GetCycleFrequency",
            Call::GetCycleCounter => "GetCycleCounter",
            Call::SetAlarm => "SetAlarm",
            Call::CancelAlarm => "CancelAlarm",
            Call::GetWallclockTime => "GetWallclockTime",
            Call::GetRelocationInfo => "GetRelocationInfo",
            Call::SetPxELong => "SetPxELong",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The calls the kernel makes itself (not at patched sites), which a ROM
/// must bind with CALL_REL for sanos to use it.
pub const KERNEL_CALLS: [Call; 6] = [
    Call::SetLinearMapping,
    Call::FlushTlb,
    Call::GetCycleFrequency,
    Call::GetCycleCounter,
    Call::SetAlarm,
    Call::CancelAlarm,
];
/// Of those, the virtual-time calls.
pub const TIME_CALLS: [Call; 4] = [
    Call::GetCycleFrequency,
    Call::GetCycleCounter,
    Call::SetAlarm,
    Call::CancelAlarm,
];

/// Relocation types (`VMI_RELOCATION_*`).
pub const RELOCATION_NONE: u8 = 0;
pub const RELOCATION_CALL_REL: u8 = 1;
pub const RELOCATION_JUMP_REL: u8 = 2;
pub const RELOCATION_NOP: u8 = 3;

/// GetCycleCounter's counters.
pub const CYCLES_REAL: u64 = 0;
pub const CYCLES_AVAILABLE: u64 = 1;
pub const CYCLES_STOLEN: u64 = 2;
/// SetAlarm's flags: the counter in the low byte, then these.
pub const ALARM_IS_ONESHOT: u64 = 0;
pub const ALARM_IS_PERIODIC: u64 = 0x100;
pub const ALARM_WIRED_LVTT: u64 = 0x1_0000;
/// FlushTLB's flags.
pub const FLUSH_TLB: u64 = 0x01;
pub const FLUSH_GLOBAL: u64 = 0x02;
/// SetLinearMapping's slots.
pub const LINEAR_MAP_SLOTS: u64 = 4;

/// A ROM header that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes the ROM declares (length × 512).
    pub len: usize,
    pub major: u8,
    pub minor: u8,
    /// Offset of the writable data area, 0 for none.
    pub data_area: usize,
}

/// Why a ROM that carries both signatures was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RomError {
    /// The length byte is 0.
    Empty,
    /// The ROM declares more bytes than lie before the end of the ROM
    /// area.
    Truncated {
        declared: usize,
        available: usize,
    },
    /// Its bytes do not sum to 0 modulo 256.
    BadChecksum {
        sum: u8,
    },
    WrongMajor {
        found: u8,
        minor: u8,
    },
    /// The data area is not page aligned, or not inside the ROM, or leaves
    /// no room for the slots before it.
    BadDataArea {
        offset: u32,
        len: usize,
    },
}

impl fmt::Display for RomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RomError::Empty => write!(f, "length 0"),
            RomError::Truncated {
                declared,
                available,
            } => write!(
                f,
                "truncated: it declares {declared} bytes, {available} lie before the end of the ROM area"
            ),
            RomError::BadChecksum { sum } => {
                write!(f, "bad checksum (bytes sum to {sum:#04x}, not 0)")
            }
            RomError::WrongMajor { found, minor } => write!(
                f,
                "API version {found}.{minor}, this kernel speaks {API_MAJOR}.x"
            ),
            RomError::BadDataArea { offset, len } => write!(
                f,
                "data area at offset {offset:#x} is not a page-aligned offset past the call slots inside its {len} bytes"
            ),
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Whether `bytes` (from a 2 KiB boundary of the ROM area) start with an
/// option ROM that says it is a VMI ROM. Anything else there (the VGA BIOS,
/// QEMU's boot ROMs) is not ours and is skipped silently.
pub fn is_vmi_rom(bytes: &[u8]) -> bool {
    bytes.len() >= offset::END
        && u16_at(bytes, offset::ROM_SIGNATURE) == ROM_SIGNATURE
        && u32_at(bytes, offset::VMI_SIGNATURE) == SIGNATURE
}

/// The sum of `bytes` modulo 256 (an option ROM's is 0).
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// Checks the VMI ROM at the start of `bytes`, which run to the end of the
/// ROM area (call [`is_vmi_rom`] first).
pub fn parse(bytes: &[u8]) -> Result<Header, RomError> {
    let len = usize::from(bytes[offset::LENGTH]) * ROM_BLOCK;
    if len == 0 {
        return Err(RomError::Empty);
    }
    if len > bytes.len() {
        return Err(RomError::Truncated {
            declared: len,
            available: bytes.len(),
        });
    }
    let rom = &bytes[..len];
    let sum = checksum(rom);
    if sum != 0 {
        return Err(RomError::BadChecksum { sum });
    }
    let (major, minor) = (rom[offset::API_MAJOR], rom[offset::API_MINOR]);
    if major != API_MAJOR {
        return Err(RomError::WrongMajor {
            found: major,
            minor,
        });
    }
    let data = u32_at(rom, offset::DATA_AREA);
    let slots_end = u64::from(NUM_CALLS) * SLOT_LEN;
    if data != 0
        && (!data.is_multiple_of(PAGE) || u64::from(data) < slots_end || data as usize >= len)
    {
        return Err(RomError::BadDataArea { offset: data, len });
    }
    Ok(Header {
        len,
        major,
        minor,
        data_area: data as usize,
    })
}

/// Writes a ROM's header for the build: the VMI signature and version, the
/// length (which `rom.len()` must be, a multiple of 512 up to 255 blocks),
/// and the last byte so that the whole sums to 0.
pub fn seal(rom: &mut [u8]) -> Result<(), &'static str> {
    if rom.len() < offset::END || !rom.len().is_multiple_of(ROM_BLOCK) {
        return Err("a ROM is a multiple of 512 bytes");
    }
    let blocks = u8::try_from(rom.len() / ROM_BLOCK).map_err(|_| "a ROM is at most 255 blocks")?;
    rom[offset::ROM_SIGNATURE..offset::ROM_SIGNATURE + 2]
        .copy_from_slice(&ROM_SIGNATURE.to_le_bytes());
    rom[offset::LENGTH] = blocks;
    rom[offset::VMI_SIGNATURE..offset::VMI_SIGNATURE + 4].copy_from_slice(&SIGNATURE.to_le_bytes());
    rom[offset::API_MINOR] = API_MINOR;
    rom[offset::API_MAJOR] = API_MAJOR;
    reseal(rom);
    Ok(())
}

/// Sets the last byte so that the ROM sums to 0 again (after a change).
pub fn reseal(rom: &mut [u8]) {
    let last = rom.len() - 1;
    rom[last] = 0;
    rom[last] = 0u8.wrapping_sub(checksum(rom));
}

/// How a ROM binds one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// Keep the native instruction.
    Native,
    /// `call` this address (inside the ROM's code).
    Call(u64),
    /// Not needed on this hypervisor: nothing at the site.
    Nop,
}

/// Why a relocation answer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocationError {
    UnknownType {
        call: Call,
        kind: u8,
    },
    /// A jump for an operation that returns to its site.
    JumpForReturningCall {
        call: Call,
    },
    TargetOutside {
        call: Call,
        target: u64,
    },
    /// The kernel needs to call it (it has no native form the kernel
    /// could keep).
    NotCallable {
        call: Call,
        kind: u8,
    },
}

impl fmt::Display for RelocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelocationError::UnknownType { call, kind } => {
                write!(f, "relocation type {kind} for {call} is not one this kernel knows")
            }
            RelocationError::JumpForReturningCall { call } => {
                write!(f, "JUMP_REL relocation for {call}, which returns to its caller")
            }
            RelocationError::TargetOutside { call, target } => {
                write!(f, "{call} target {target:#x} lies outside the ROM's code")
            }
            RelocationError::NotCallable { call, kind } => write!(
                f,
                "{call} is bound with relocation type {kind}, but the kernel must call it (CALL_REL)"
            ),
        }
    }
}

/// Decodes `GetRelocationInfo`'s answer for `call`: its type and target.
/// A call target must lie in `code` (the ROM's code, as the kernel maps
/// it) with room for at least one instruction byte.
pub fn decode(
    call: Call,
    kind: u8,
    target: u64,
    code: core::ops::Range<u64>,
) -> Result<Binding, RelocationError> {
    match kind {
        RELOCATION_NONE => Ok(Binding::Native),
        RELOCATION_NOP => Ok(Binding::Nop),
        RELOCATION_CALL_REL if code.contains(&target) => Ok(Binding::Call(target)),
        RELOCATION_CALL_REL => Err(RelocationError::TargetOutside { call, target }),
        RELOCATION_JUMP_REL => Err(RelocationError::JumpForReturningCall { call }),
        kind => Err(RelocationError::UnknownType { call, kind }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    /// A sealed 8 KiB ROM with its data area at 4 KiB.
    fn rom() -> Vec<u8> {
        let mut rom = vec![0u8; 8192];
        rom[offset::ENTRY] = 0xcb;
        rom[offset::DATA_AREA..offset::DATA_AREA + 4].copy_from_slice(&4096u32.to_le_bytes());
        rom[100] = 0x42;
        seal(&mut rom).unwrap();
        rom
    }

    #[test]
    fn a_sealed_rom_parses() {
        let rom = rom();
        assert!(is_vmi_rom(&rom));
        assert_eq!(checksum(&rom), 0);
        assert_eq!(&rom[..2], &[0x55, 0xaa]);
        assert_eq!(&rom[8..12], b"cVmi");
        assert_eq!(
            parse(&rom),
            Ok(Header {
                len: 8192,
                major: 13,
                minor: 3,
                data_area: 4096
            })
        );
        // More bytes after the ROM (the rest of the area) change nothing.
        let mut area = rom.clone();
        area.extend_from_slice(&[0xff; 4096]);
        assert_eq!(parse(&area).map(|h| h.len), Ok(8192));
    }

    #[test]
    fn other_option_roms_are_not_vmi() {
        let mut vga = vec![0u8; 512];
        vga[0] = 0x55;
        vga[1] = 0xaa;
        vga[2] = 1;
        assert!(!is_vmi_rom(&vga));
        assert!(!is_vmi_rom(&[0x55, 0xaa]));
        let mut signature_only = vec![0u8; 64];
        signature_only[8..12].copy_from_slice(b"cVmi");
        assert!(!is_vmi_rom(&signature_only));
    }

    #[test]
    fn bad_roms_are_refused_with_the_reason() {
        let mut bad_sum = rom();
        bad_sum[200] ^= 0x10;
        assert_eq!(parse(&bad_sum), Err(RomError::BadChecksum { sum: 0x10 }));

        let mut old = rom();
        old[offset::API_MAJOR] = 12;
        reseal(&mut old);
        assert_eq!(
            parse(&old),
            Err(RomError::WrongMajor {
                found: 12,
                minor: 3
            })
        );
        assert!(parse(&old)
            .unwrap_err()
            .to_string()
            .contains("API version 12.3"));

        let good = rom();
        assert_eq!(
            parse(&good[..6000]),
            Err(RomError::Truncated {
                declared: 8192,
                available: 6000
            })
        );

        let mut empty = rom();
        empty[offset::LENGTH] = 0;
        assert_eq!(parse(&empty), Err(RomError::Empty));

        for data in [100u32, 8192, 12288, 2048] {
            let mut bad = rom();
            bad[offset::DATA_AREA..offset::DATA_AREA + 4].copy_from_slice(&data.to_le_bytes());
            reseal(&mut bad);
            assert!(
                matches!(parse(&bad), Err(RomError::BadDataArea { .. })),
                "data area {data}"
            );
        }
        let mut none = rom();
        none[offset::DATA_AREA..offset::DATA_AREA + 4].copy_from_slice(&0u32.to_le_bytes());
        reseal(&mut none);
        assert_eq!(parse(&none).map(|h| h.data_area), Ok(0));
    }

    #[test]
    fn seal_checks_the_size() {
        assert!(seal(&mut [0u8; 500]).is_err());
        assert!(seal(&mut vec![0u8; 256 * 512]).is_err());
        let mut max = vec![0u8; 255 * 512];
        assert!(seal(&mut max).is_ok());
        assert_eq!(max[offset::LENGTH], 255);
    }

    #[test]
    fn relocations_decode() {
        let code = 0x1000..0x2000;
        let c = Call::EnableInterrupts;
        assert_eq!(decode(c, 0, 0, code.clone()), Ok(Binding::Native));
        assert_eq!(decode(c, 3, 0, code.clone()), Ok(Binding::Nop));
        assert_eq!(
            decode(c, 1, 0x1460, code.clone()),
            Ok(Binding::Call(0x1460))
        );
        assert_eq!(
            decode(c, 1, 0x2000, code.clone()),
            Err(RelocationError::TargetOutside {
                call: c,
                target: 0x2000
            })
        );
        assert_eq!(
            decode(c, 2, 0x1460, code.clone()),
            Err(RelocationError::JumpForReturningCall { call: c })
        );
        let unknown = decode(c, 7, 0x1460, code).unwrap_err();
        assert_eq!(unknown, RelocationError::UnknownType { call: c, kind: 7 });
        assert_eq!(
            unknown.to_string(),
            "relocation type 7 for EnableInterrupts is not one this kernel knows"
        );
    }

    #[test]
    fn numbering_is_api_13_3() {
        assert_eq!(Call::Init.number(), 4);
        assert_eq!(Call::EnableInterrupts.slot_offset(), 35 * 32);
        assert_eq!(Call::GetRelocationInfo.number(), 85);
        assert_eq!(Call::SetPxELong.number(), NUM_CALLS - 1);
    }
}
