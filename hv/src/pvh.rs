//! PVH boot: the start-of-day structures a PVH loader (QEMU `-kernel`, Xen
//! `type="pvh"`) hands the kernel in `%ebx`, and the ELF note that names the
//! 32-bit entry point.
//!
//! Mirrors `xen/include/public/arch-x86/hvm/start_info.h` (Xen 4.17) and
//! `xen/include/public/elfnote.h`. Every structure is `#[repr(C)]` with the
//! header's field order and widths; the tests pin sizes and offsets.

/// `XEN_ELFNOTE_PHYS32_ENTRY`: physical address of the 32-bit PVH entry.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// `XEN_HVM_START_MAGIC_VALUE`, the first word of [`HvmStartInfo`].
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `struct hvm_start_info`. Fields from `memmap_paddr` on exist only when
/// `version >= 1`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmStartInfo {
    pub magic: u32,
    pub version: u32,
    /// `SIF_xxx` flags.
    pub flags: u32,
    pub nr_modules: u32,
    /// Physical address of an array of [`HvmModlistEntry`].
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, or 0.
    pub rsdp_paddr: u64,
    /// Physical address of an array of [`HvmMemmapTableEntry`] (version 1).
    pub memmap_paddr: u64,
    /// Entries in that array; 0 when no map is given (version 1).
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmModlistEntry {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`; `type_` holds an E820 type.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmMemmapTableEntry {
    pub addr: u64,
    pub size: u64,
    pub type_: u32,
    pub reserved: u32,
}

/// `XEN_HVM_MEMMAP_TYPE_*`: the E820 numbering, plus Xen's two extensions.
pub mod memmap_type {
    pub const RAM: u32 = 1;
    pub const RESERVED: u32 = 2;
    pub const ACPI: u32 = 3;
    pub const NVS: u32 = 4;
    pub const UNUSABLE: u32 = 5;
    pub const DISABLED: u32 = 6;
    pub const PMEM: u32 = 7;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn start_info_layout_matches_the_header() {
        assert_eq!(size_of::<HvmStartInfo>(), 56);
        assert_eq!(offset_of!(HvmStartInfo, magic), 0);
        assert_eq!(offset_of!(HvmStartInfo, version), 4);
        assert_eq!(offset_of!(HvmStartInfo, flags), 8);
        assert_eq!(offset_of!(HvmStartInfo, nr_modules), 12);
        assert_eq!(offset_of!(HvmStartInfo, modlist_paddr), 16);
        assert_eq!(offset_of!(HvmStartInfo, cmdline_paddr), 24);
        assert_eq!(offset_of!(HvmStartInfo, rsdp_paddr), 32);
        assert_eq!(offset_of!(HvmStartInfo, memmap_paddr), 40);
        assert_eq!(offset_of!(HvmStartInfo, memmap_entries), 48);
        assert_eq!(offset_of!(HvmStartInfo, reserved), 52);
    }

    #[test]
    fn modlist_layout_matches_the_header() {
        assert_eq!(size_of::<HvmModlistEntry>(), 32);
        assert_eq!(offset_of!(HvmModlistEntry, paddr), 0);
        assert_eq!(offset_of!(HvmModlistEntry, size), 8);
        assert_eq!(offset_of!(HvmModlistEntry, cmdline_paddr), 16);
        assert_eq!(offset_of!(HvmModlistEntry, reserved), 24);
    }

    #[test]
    fn memmap_entry_layout_matches_the_header() {
        assert_eq!(size_of::<HvmMemmapTableEntry>(), 24);
        assert_eq!(offset_of!(HvmMemmapTableEntry, addr), 0);
        assert_eq!(offset_of!(HvmMemmapTableEntry, size), 8);
        assert_eq!(offset_of!(HvmMemmapTableEntry, type_), 16);
        assert_eq!(offset_of!(HvmMemmapTableEntry, reserved), 20);
    }
}
