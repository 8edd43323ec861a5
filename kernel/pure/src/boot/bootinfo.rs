//! `BootInfo`: what every entry path (PVH, Multiboot2, Xen PV)
//! hands `kernel_main` once it has read its protocol's structures: the
//! memory map, the command line, boot modules and the ACPI RSDP.
//!
//! The entry paths read memory; this module only holds the result and the
//! protocol-independent rules (E820 type numbers, module bookkeeping, C
//! strings), so those rules are tested on the host.

use crate::mm::memmap::{MemoryMap, RegionKind, PAGE_SIZE};
use core::fmt;

/// How many boot modules are kept; more are reported and dropped.
pub const MAX_MODULES: usize = 8;

/// How many boot structures (start info, memory map, command line...)
/// are remembered for reservation.
pub const MAX_BOOT_DATA: usize = 8;

/// Longest command line read from boot memory, bytes.
pub const MAX_CMDLINE: usize = 4096;

/// The protocol that started the kernel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BootProtocol {
    /// PVH: QEMU `-kernel`, Xen `type="pvh"`.
    Pvh,
    /// Multiboot2: GRUB.
    Multiboot2,
    /// Xen PV: `type="pv"`, the kernel deprivileged.
    XenPv,
}

impl fmt::Display for BootProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootProtocol::Pvh => "PVH",
            BootProtocol::Multiboot2 => "multiboot2",
            BootProtocol::XenPv => "Xen PV",
        })
    }
}

/// A boot module: physical range and the loader's command line for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootModule<'a> {
    pub start: u64,
    pub end: u64,
    pub cmdline: &'a str,
}

impl BootModule<'_> {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Everything the entry path learned, in one protocol-neutral shape.
pub struct BootInfo<'a> {
    pub protocol: BootProtocol,
    pub memory: MemoryMap,
    pub cmdline: &'a str,
    pub rsdp: Option<u64>,
    pub loader_name: &'a str,
    /// PVH `hvm_start_info.flags` (`SIF_*`: `SIF_INITDOMAIN` for Xen's
    /// dom0); 0 for other protocols.
    pub start_flags: u32,
    modules: [BootModule<'a>; MAX_MODULES],
    module_count: usize,
    boot_data: [(u64, u64); MAX_BOOT_DATA],
    boot_data_count: usize,
}

/// Why a boot module was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleError {
    /// The module's end lies before its start.
    Inverted { start: u64, end: u64 },
    /// More than [`MAX_MODULES`] modules.
    TooMany,
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::Inverted { start, end } => {
                write!(
                    f,
                    "boot module [{start:#x}, {end:#x}) ends before it starts"
                )
            }
            ModuleError::TooMany => write!(f, "more than {MAX_MODULES} boot modules"),
        }
    }
}

impl<'a> BootInfo<'a> {
    pub const fn new(protocol: BootProtocol) -> Self {
        BootInfo {
            protocol,
            memory: MemoryMap::new(),
            cmdline: "",
            rsdp: None,
            loader_name: "",
            start_flags: 0,
            modules: [BootModule {
                start: 0,
                end: 0,
                cmdline: "",
            }; MAX_MODULES],
            module_count: 0,
            boot_data: [(0, 0); MAX_BOOT_DATA],
            boot_data_count: 0,
        }
    }

    /// Remembers a boot structure `[start, end)` that must not be handed
    /// out as free memory. Empty ranges are ignored; beyond
    /// [`MAX_BOOT_DATA`] the range is refused (returns false).
    pub fn add_boot_data(&mut self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        match self.boot_data.get_mut(self.boot_data_count) {
            Some(slot) => {
                *slot = (start, end);
                self.boot_data_count += 1;
                true
            }
            None => false,
        }
    }

    /// The boot structures recorded with [`BootInfo::add_boot_data`].
    pub fn boot_data(&self) -> &[(u64, u64)] {
        &self.boot_data[..self.boot_data_count]
    }

    /// Records a module. Empty modules are kept (the loader was asked for
    /// them) but occupy no memory.
    pub fn add_module(
        &mut self,
        start: u64,
        end: u64,
        cmdline: &'a str,
    ) -> Result<(), ModuleError> {
        if end < start {
            return Err(ModuleError::Inverted { start, end });
        }
        let slot = self
            .modules
            .get_mut(self.module_count)
            .ok_or(ModuleError::TooMany)?;
        *slot = BootModule {
            start,
            end,
            cmdline,
        };
        self.module_count += 1;
        Ok(())
    }

    pub fn modules(&self) -> &[BootModule<'a>] {
        &self.modules[..self.module_count]
    }

    /// The initial ramdisk: by convention, the first module.
    pub fn initrd(&self) -> Option<&BootModule<'a>> {
        self.modules().first()
    }
}

/// Maps an E820 address-range type (as relayed by Multiboot2 and PVH) to a
/// region kind. Unknown types, and Xen's "disabled" (6) and persistent
/// memory (7), are left alone as reserved.
pub fn e820_kind(e820_type: u32) -> RegionKind {
    match e820_type {
        1 => RegionKind::Usable,
        3 => RegionKind::AcpiReclaimable,
        4 => RegionKind::AcpiNvs,
        5 => RegionKind::Defective,
        _ => RegionKind::Reserved,
    }
}

/// Why a C string from boot memory was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CStrError {
    /// No NUL within the bytes given (the string is longer than the limit).
    Unterminated,
    /// The bytes before the NUL are not UTF-8.
    NotUtf8 { valid_up_to: usize },
}

impl fmt::Display for CStrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CStrError::Unterminated => write!(f, "no terminating NUL within {MAX_CMDLINE} bytes"),
            CStrError::NotUtf8 { valid_up_to } => {
                write!(f, "not UTF-8 after byte {valid_up_to}")
            }
        }
    }
}

/// The string before the first NUL in `bytes`.
pub fn c_str(bytes: &[u8]) -> Result<&str, CStrError> {
    let len = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(CStrError::Unterminated)?;
    core::str::from_utf8(&bytes[..len]).map_err(|e| CStrError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })
}

/// What a Xen PV start info says about the domain builder's bootstrap
/// region (`xen/include/public/xen.h`, "start_info"): virtual addresses
/// there lie in the kernel's mapping, pfn `n` at `virt_base + n * PAGE_SIZE`.
#[derive(Clone, Copy, Debug, Default)]
pub struct XenPvStart {
    pub nr_pages: u64,
    /// Virtual addresses of the start info, the bootstrap page tables
    /// (`nr_pt_frames` pages) and the P2M list (8 bytes per page).
    pub start_info: u64,
    pub pt_base: u64,
    pub nr_pt_frames: u64,
    pub mfn_list: u64,
    /// Pseudo-physical frames of the xenstore and console rings (domU).
    pub store_pfn: Option<u64>,
    pub console_pfn: Option<u64>,
    /// The stack pointer at entry (top of the builder's boot stack).
    pub stack: u64,
    /// The module (initrd): `mod_start` is a pfn when the start info's
    /// `SIF_MOD_START_PFN` flag says so, a virtual address otherwise.
    pub mod_start: u64,
    pub mod_len: u64,
    pub mod_start_is_pfn: bool,
}

/// A start-info address that does not lie in the domain's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenPvRangeError {
    pub what: &'static str,
    pub start: u64,
    pub end: u64,
}

impl fmt::Display for XenPvRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Xen PV start info: {} at [{:#x}, {:#x}) lies outside the domain's memory",
            self.what, self.start, self.end
        )
    }
}

impl XenPvStart {
    /// Bytes of pseudo-physical memory.
    pub fn memory_bytes(&self) -> u64 {
        self.nr_pages.saturating_mul(PAGE_SIZE)
    }

    fn physical(
        &self,
        what: &'static str,
        virt_base: u64,
        virt: u64,
        len: u64,
    ) -> Result<(u64, u64), XenPvRangeError> {
        let bad = XenPvRangeError {
            what,
            start: virt,
            end: virt.wrapping_add(len),
        };
        let start = virt.checked_sub(virt_base).ok_or(bad)?;
        let end = start.checked_add(len).ok_or(bad)?;
        let (start, end) = (start & !(PAGE_SIZE - 1), end.next_multiple_of(PAGE_SIZE));
        if end > self.memory_bytes() || start == end {
            return Err(bad);
        }
        Ok((start, end))
    }

    /// The builder's structures the kernel keeps using, as page-rounded
    /// pseudo-physical ranges: start info, page tables, P2M list, the two
    /// rings, the boot stack.
    pub fn boot_data(&self, virt_base: u64) -> Result<[(u64, u64); 6], XenPvRangeError> {
        let ring = |what, pfn: Option<u64>| match pfn {
            Some(pfn) => self.physical(what, 0, pfn.saturating_mul(PAGE_SIZE), PAGE_SIZE),
            None => Ok((0, 0)),
        };
        Ok([
            self.physical("start info", virt_base, self.start_info, PAGE_SIZE)?,
            self.physical(
                "page tables",
                virt_base,
                self.pt_base,
                self.nr_pt_frames.saturating_mul(PAGE_SIZE),
            )?,
            self.physical(
                "P2M list",
                virt_base,
                self.mfn_list,
                self.nr_pages.saturating_mul(8),
            )?,
            ring("xenstore ring", self.store_pfn)?,
            ring("console ring", self.console_pfn)?,
            self.physical(
                "boot stack",
                virt_base,
                self.stack.saturating_sub(PAGE_SIZE),
                PAGE_SIZE,
            )?,
        ])
    }

    /// The module's pseudo-physical range, if there is one.
    pub fn module(&self, virt_base: u64) -> Result<Option<(u64, u64)>, XenPvRangeError> {
        if self.mod_start == 0 || self.mod_len == 0 {
            return Ok(None);
        }
        let (base, start) = if self.mod_start_is_pfn {
            (0, self.mod_start.saturating_mul(PAGE_SIZE))
        } else {
            (virt_base, self.mod_start)
        };
        let (first, _) = self.physical("module", base, start, self.mod_len)?;
        let offset = start - base - first;
        Ok(Some((first + offset, first + offset + self.mod_len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_types_map_to_kinds() {
        assert_eq!(e820_kind(1), RegionKind::Usable);
        assert_eq!(e820_kind(2), RegionKind::Reserved);
        assert_eq!(e820_kind(3), RegionKind::AcpiReclaimable);
        assert_eq!(e820_kind(4), RegionKind::AcpiNvs);
        assert_eq!(e820_kind(5), RegionKind::Defective);
        assert_eq!(e820_kind(7), RegionKind::Reserved);
        assert_eq!(e820_kind(0xdead), RegionKind::Reserved);
    }

    #[test]
    fn modules_are_kept_in_order_up_to_the_limit() {
        let mut info = BootInfo::new(BootProtocol::Pvh);
        assert!(info.initrd().is_none());
        for i in 0..MAX_MODULES as u64 {
            info.add_module(i * 0x1000, i * 0x1000 + 10, "m").unwrap();
        }
        assert_eq!(info.add_module(0, 1, "extra"), Err(ModuleError::TooMany));
        assert_eq!(info.modules().len(), MAX_MODULES);
        assert_eq!(info.initrd().unwrap().len(), 10);
    }

    #[test]
    fn boot_data_is_remembered_up_to_the_limit() {
        let mut info = BootInfo::new(BootProtocol::Pvh);
        assert!(info.add_boot_data(0x1000, 0x1000));
        assert!(info.boot_data().is_empty());
        for i in 0..MAX_BOOT_DATA as u64 {
            assert!(info.add_boot_data(i * 0x1000, i * 0x1000 + 8));
        }
        assert!(!info.add_boot_data(0x9000, 0x9008));
        assert_eq!(info.boot_data().len(), MAX_BOOT_DATA);
        assert_eq!(info.boot_data()[1], (0x1000, 0x1008));
    }

    #[test]
    fn inverted_module_is_refused() {
        let mut info = BootInfo::new(BootProtocol::Multiboot2);
        assert_eq!(
            info.add_module(0x2000, 0x1000, ""),
            Err(ModuleError::Inverted {
                start: 0x2000,
                end: 0x1000
            })
        );
        assert!(info.modules().is_empty());
        info.add_module(0x3000, 0x3000, "empty").unwrap();
        assert!(info.modules()[0].is_empty());
    }

    #[test]
    fn c_strings_are_bounded_and_checked() {
        assert_eq!(
            c_str(b"test loglevel=debug\0junk"),
            Ok("test loglevel=debug")
        );
        assert_eq!(c_str(b"\0"), Ok(""));
        assert_eq!(c_str(b"no nul"), Err(CStrError::Unterminated));
        assert_eq!(
            c_str(b"ab\xff\0"),
            Err(CStrError::NotUtf8 { valid_up_to: 2 })
        );
    }

    const VB: u64 = 0xffff_ffff_8000_0000;

    fn pv_start() -> XenPvStart {
        XenPvStart {
            nr_pages: 32768,
            start_info: VB + 0x62_0000,
            pt_base: VB + 0x62_3000,
            nr_pt_frames: 6,
            mfn_list: VB + 0x60_0000,
            store_pfn: Some(0x621),
            console_pfn: Some(0x622),
            stack: VB + 0x62_a000,
            mod_start: 0,
            mod_len: 0,
            mod_start_is_pfn: false,
        }
    }

    #[test]
    fn xen_pv_boot_data_is_page_rounded_physical() {
        let start = pv_start();
        assert_eq!(start.memory_bytes(), 128 << 20);
        let data = start.boot_data(VB).unwrap();
        assert_eq!(data[0], (0x62_0000, 0x62_1000));
        assert_eq!(data[1], (0x62_3000, 0x62_9000));
        // 32768 entries of 8 bytes: 256 KiB.
        assert_eq!(data[2], (0x60_0000, 0x64_0000));
        assert_eq!(data[3], (0x62_1000, 0x62_2000));
        assert_eq!(data[4], (0x62_2000, 0x62_3000));
        assert_eq!(data[5], (0x62_9000, 0x62_a000));
        let dom0 = XenPvStart {
            store_pfn: None,
            console_pfn: None,
            ..start
        };
        assert_eq!(dom0.boot_data(VB).unwrap()[3], (0, 0));
    }

    #[test]
    fn xen_pv_addresses_outside_memory_are_refused() {
        let below = XenPvStart {
            start_info: 0x1000,
            ..pv_start()
        };
        assert_eq!(below.boot_data(VB).unwrap_err().what, "start info");
        let beyond = XenPvStart {
            console_pfn: Some(32768),
            ..pv_start()
        };
        assert_eq!(beyond.boot_data(VB).unwrap_err().what, "console ring");
        let huge = XenPvStart {
            nr_pt_frames: u64::MAX,
            ..pv_start()
        };
        assert!(huge.boot_data(VB).is_err());
    }

    #[test]
    fn xen_pv_module_by_pfn_or_virtual_address() {
        assert_eq!(pv_start().module(VB), Ok(None));
        let by_virt = XenPvStart {
            mod_start: VB + 0x40_0010,
            mod_len: 0x2000,
            ..pv_start()
        };
        assert_eq!(by_virt.module(VB), Ok(Some((0x40_0010, 0x40_2010))));
        let by_pfn = XenPvStart {
            mod_start: 0x400,
            mod_len: 100,
            mod_start_is_pfn: true,
            ..pv_start()
        };
        assert_eq!(by_pfn.module(VB), Ok(Some((0x40_0000, 0x40_0064))));
        let outside = XenPvStart {
            mod_start: 0x8000,
            mod_len: 1,
            mod_start_is_pfn: true,
            ..pv_start()
        };
        assert!(outside.module(VB).is_err());
    }
}
