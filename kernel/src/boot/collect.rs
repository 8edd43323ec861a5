//! The entry paths' second half: read the boot protocol's structures (PVH
//! `hvm_start_info`, the Multiboot2 information, the Xen PV start info)
//! and normalise them into one [`BootInfo`], reserving the kernel image,
//! the modules and the boot structures in its memory map.
//!
//! PVH and multiboot2 run on the boot page tables, which map the first
//! 4 GiB of physical memory at `PHYS_MAP_BASE`; a structure placed above
//! that is refused with a message rather than read. The Xen PV start info
//! and what it points at lie in the domain builder's bootstrap mapping.

use super::entry::{PROTOCOL_MULTIBOOT2, PROTOCOL_PVH};
use crate::arch::layout::{BOOT_PHYS_MAP_LIMIT, KERNEL_VMA, PHYS_MAP_BASE};
use core::mem::size_of;
use hv::pvh::{HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, XEN_HVM_START_MAGIC_VALUE};
use pure::boot::bootinfo::{c_str, e820_kind, BootInfo, BootProtocol, MAX_CMDLINE};
use pure::mm::memmap::{MemoryMap, RegionKind};

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Physical range of the loaded kernel image.
pub fn kernel_image() -> (u64, u64) {
    let start = (&raw const __kernel_start) as u64 - KERNEL_VMA;
    let end = (&raw const __kernel_end) as u64 - KERNEL_VMA;
    (start, end)
}

/// Why the boot information could not be read at all.
#[derive(Debug)]
pub enum BootError {
    UnknownProtocol,
    BadPvhMagic(u32),
    Multiboot2(multiboot2::LoadError),
    Unreachable(u64),
    XenPv(pure::boot::bootinfo::XenPvRangeError),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::UnknownProtocol => {
                write!(
                    f,
                    "entered neither by PVH nor by a multiboot2 loader (bad magic in %eax)"
                )
            }
            BootError::BadPvhMagic(magic) => write!(f, "PVH start info has magic {magic:#x}"),
            BootError::Multiboot2(error) => write!(f, "multiboot2 information: {error:?}"),
            BootError::XenPv(error) => write!(f, "{error}"),
            BootError::Unreachable(address) => {
                write!(
                    f,
                    "boot structure at {address:#x} lies beyond the first 4 GiB or is misaligned"
                )
            }
        }
    }
}

/// Reads the boot information of `protocol` found at physical `info`.
/// The memory map may still be empty (Xen's PVH dom0 gets it by
/// hypercall); [`finalize`] reserves what must not be handed out once it
/// is complete.
pub fn collect(protocol: u32, info: u64) -> Result<BootInfo<'static>, BootError> {
    match protocol {
        PROTOCOL_PVH => collect_pvh(info),
        PROTOCOL_MULTIBOOT2 => collect_multiboot2(info),
        _ => Err(BootError::UnknownProtocol),
    }
}

/// Normalises the memory map and reserves the kernel image, the modules
/// and the boot structures in it.
pub fn finalize(boot: &mut BootInfo<'_>) {
    if boot.memory.is_empty() {
        log::error!("boot: no memory map from the boot loader or the platform");
    }
    boot.memory.normalise();
    let (kernel_start, kernel_end) = kernel_image();
    reserve(
        &mut boot.memory,
        kernel_start,
        kernel_end,
        RegionKind::Kernel,
        "kernel image",
    );
    let modules: [(u64, u64); pure::boot::bootinfo::MAX_MODULES] =
        core::array::from_fn(|i| boot.modules().get(i).map_or((0, 0), |m| (m.start, m.end)));
    for &(start, end) in modules.iter().take(boot.modules().len()) {
        if start != end {
            reserve(
                &mut boot.memory,
                start,
                end,
                RegionKind::Module,
                "boot module",
            );
        }
    }
    let boot_data: [(u64, u64); pure::boot::bootinfo::MAX_BOOT_DATA] =
        core::array::from_fn(|i| boot.boot_data().get(i).copied().unwrap_or((0, 0)));
    for &(start, end) in boot_data.iter().take(boot.boot_data().len()) {
        reserve(
            &mut boot.memory,
            start,
            end,
            RegionKind::BootData,
            "boot data",
        );
    }
}

/// Reserves `[start, end)` as `kind`, logging a refusal or a range that does
/// not lie in RAM; the boot goes on either way.
pub fn reserve(map: &mut MemoryMap, start: u64, end: u64, kind: RegionKind, what: &str) {
    match map.reserve(start, end, kind) {
        Ok(outcome) if !outcome.lies_in_ram() && kind != RegionKind::BootData => log::warn!(
            "boot: {what} [{start:#x}, {end:#x}) is not all in usable RAM \
             ({} bytes in firmware memory, {} bytes unmapped)",
            outcome.firmware_bytes,
            outcome.unmapped_bytes
        ),
        Ok(_) => {}
        Err(error) => log::error!("boot: cannot reserve {what}: {error}"),
    }
}

/// A reference to a `T` at physical `phys`, if the boot direct map reaches
/// all of it.
///
/// # Safety
/// A `T` must be stored at `phys`, and stay there while the reference lives.
unsafe fn phys_ref<T>(phys: u64) -> Result<&'static T, BootError> {
    // SAFETY: the caller's promise, for a one-element slice.
    Ok(&unsafe { phys_slice::<T>(phys, 1) }?[0])
}

/// A slice of `count` `T`s at physical `phys`, if the boot direct map
/// reaches all of it and the address is aligned for `T`.
///
/// # Safety
/// `count` `T`s must be stored at `phys`.
unsafe fn phys_slice<T>(phys: u64, count: usize) -> Result<&'static [T], BootError> {
    let bytes = (count as u64)
        .checked_mul(size_of::<T>() as u64)
        .ok_or(BootError::Unreachable(phys))?;
    let end = phys
        .checked_add(bytes)
        .ok_or(BootError::Unreachable(phys))?;
    if end > BOOT_PHYS_MAP_LIMIT || !phys.is_multiple_of(core::mem::align_of::<T>() as u64) {
        return Err(BootError::Unreachable(phys));
    }
    // SAFETY: the boot page tables map [0, BOOT_PHYS_MAP_LIMIT) at
    // PHYS_MAP_BASE, the range was checked to lie inside, the address is
    // aligned, and the caller vouches for the contents.
    Ok(unsafe { core::slice::from_raw_parts((PHYS_MAP_BASE + phys) as *const T, count) })
}

/// The NUL-terminated string at physical `phys` (0 means none), read at most
/// [`MAX_CMDLINE`] bytes far; a bad string is logged and read as empty.
fn phys_c_str(phys: u64, what: &str) -> &'static str {
    if phys == 0 {
        return "";
    }
    let available = BOOT_PHYS_MAP_LIMIT
        .saturating_sub(phys)
        .min(MAX_CMDLINE as u64) as usize;
    // SAFETY: boot loaders place strings in RAM below 4 GiB; the slice stays
    // inside the boot direct map and is only scanned up to the first NUL.
    let bytes = match unsafe { phys_slice::<u8>(phys, available) } {
        Ok(bytes) => bytes,
        Err(_) => {
            log::error!("boot: {what} at {phys:#x} is out of reach; ignored");
            return "";
        }
    };
    match c_str(bytes) {
        Ok(s) => s,
        Err(error) => {
            log::error!("boot: {what} at {phys:#x}: {error}; ignored");
            ""
        }
    }
}

/// Reads a Xen PV start info at virtual `info` (in the bootstrap mapping,
/// which the kernel keeps): memory is pseudo-physical `[0, nr_pages)`,
/// the builder's structures are kept, the module is the initrd.
pub fn xen_pv(
    info: u64,
    layout: &pure::boot::bootinfo::XenPvStart,
) -> Result<BootInfo<'static>, BootError> {
    // SAFETY: the PV entry checked the magic of the start info at `info`,
    // which stays mapped for good.
    let start_info = unsafe { &*(info as *const hv::xen::bindings::start_info) };
    let mut boot = BootInfo::new(BootProtocol::XenPv);
    boot.loader_name = "Xen PV domain builder";
    boot.start_flags = start_info.flags;
    // SAFETY: cmd_line is a char array inside the start info.
    let cmdline = unsafe {
        core::slice::from_raw_parts(
            start_info.cmd_line.as_ptr().cast::<u8>(),
            start_info.cmd_line.len(),
        )
    };
    boot.cmdline = c_str(cmdline).unwrap_or_else(|error| {
        log::error!("boot: Xen PV command line: {error:?}; ignored");
        ""
    });
    if let Err(error) = boot
        .memory
        .add_firmware(0, layout.memory_bytes(), RegionKind::Usable)
    {
        log::error!("boot: Xen PV memory: {error}");
    }
    match layout.module(KERNEL_VMA) {
        Ok(Some((start, end))) => {
            if let Err(error) = boot.add_module(start, end, "") {
                log::error!("boot: {error}; dropped");
            }
        }
        Ok(None) => {}
        Err(error) => log::error!("boot: {error}; module dropped"),
    }
    match layout.boot_data(KERNEL_VMA) {
        Ok(ranges) => {
            for (start, end) in ranges {
                if start != end && !boot.add_boot_data(start, end) {
                    log::error!(
                        "boot: too many boot structures; [{start:#x}, {end:#x}) not reserved"
                    );
                }
            }
        }
        Err(error) => return Err(BootError::XenPv(error)),
    }
    Ok(boot)
}

fn collect_pvh(info: u64) -> Result<BootInfo<'static>, BootError> {
    // SAFETY: a PVH loader leaves an hvm_start_info at %ebx; the magic check
    // below catches a loader that did not.
    let start_info: &HvmStartInfo = unsafe { phys_ref(info)? };
    if start_info.magic != XEN_HVM_START_MAGIC_VALUE {
        return Err(BootError::BadPvhMagic(start_info.magic));
    }
    let mut boot = BootInfo::new(BootProtocol::Pvh);
    boot.cmdline = phys_c_str(start_info.cmdline_paddr, "command line");
    boot.rsdp = (start_info.rsdp_paddr != 0).then_some(start_info.rsdp_paddr);
    boot.loader_name = "PVH";
    boot.start_flags = start_info.flags;

    if start_info.version >= 1 && start_info.memmap_entries > 0 {
        // SAFETY: version 1 start info points at `memmap_entries` entries.
        match unsafe {
            phys_slice::<HvmMemmapTableEntry>(
                start_info.memmap_paddr,
                start_info.memmap_entries as usize,
            )
        } {
            Ok(entries) => {
                for entry in entries {
                    if let Err(error) =
                        boot.memory
                            .add_firmware(entry.addr, entry.size, e820_kind(entry.type_))
                    {
                        log::error!("boot: PVH memory map: {error}; entry dropped");
                    }
                }
            }
            Err(_) => log::error!(
                "boot: PVH memory map at {:#x} is out of reach",
                start_info.memmap_paddr
            ),
        }
    } else {
        log::error!(
            "boot: PVH start info (version {}) has no memory map",
            start_info.version
        );
    }

    if start_info.nr_modules > 0 {
        // SAFETY: the start info points at `nr_modules` module entries.
        match unsafe {
            phys_slice::<HvmModlistEntry>(start_info.modlist_paddr, start_info.nr_modules as usize)
        } {
            Ok(modules) => {
                for module in modules {
                    let cmdline = phys_c_str(module.cmdline_paddr, "module command line");
                    let end = module.paddr.saturating_add(module.size);
                    if let Err(error) = boot.add_module(module.paddr, end, cmdline) {
                        log::error!("boot: {error}; dropped");
                    }
                }
            }
            Err(_) => log::error!(
                "boot: PVH module list at {:#x} is out of reach",
                start_info.modlist_paddr
            ),
        }
    }

    // The structures themselves must survive until they have been read.
    let memmap_bytes =
        u64::from(start_info.memmap_entries) * size_of::<HvmMemmapTableEntry>() as u64;
    let modlist_bytes = u64::from(start_info.nr_modules) * size_of::<HvmModlistEntry>() as u64;
    let cmdline_bytes = boot.cmdline.len() as u64 + 1;
    for (start, len) in [
        (info, size_of::<HvmStartInfo>() as u64),
        (start_info.memmap_paddr, memmap_bytes),
        (start_info.modlist_paddr, modlist_bytes),
        (start_info.cmdline_paddr, cmdline_bytes),
    ] {
        if start != 0 && len != 0 && !boot.add_boot_data(start, start + len) {
            log::error!("boot: too many boot structures; [{start:#x}, +{len:#x}) not reserved");
        }
    }
    Ok(boot)
}

static MULTIBOOT_INFO: spin::Once<multiboot2::BootInformation<'static>> = spin::Once::new();

fn collect_multiboot2(info: u64) -> Result<BootInfo<'static>, BootError> {
    if info + 8 > BOOT_PHYS_MAP_LIMIT {
        return Err(BootError::Unreachable(info));
    }
    // SAFETY: GRUB leaves the multiboot2 information at %ebx (the entry code
    // checked the loader's magic); `load` validates its size and alignment.
    let loaded = unsafe {
        multiboot2::BootInformation::load(
            (PHYS_MAP_BASE + info) as *const multiboot2::BootInformationHeader,
        )
    }
    .map_err(BootError::Multiboot2)?;
    // The strings handed on borrow from the structure, which stays in
    // place (reserved below) for the kernel's life.
    let mbi: &'static multiboot2::BootInformation<'static> = MULTIBOOT_INFO.call_once(|| loaded);
    let mut boot = BootInfo::new(BootProtocol::Multiboot2);
    boot.cmdline = match mbi.command_line_tag().map(|tag| tag.cmdline()) {
        Some(Ok(cmdline)) => cmdline,
        Some(Err(error)) => {
            log::error!("boot: multiboot2 command line: {error:?}; ignored");
            ""
        }
        None => "",
    };
    boot.loader_name = mbi
        .boot_loader_name_tag()
        .and_then(|tag| tag.name().ok())
        .unwrap_or("multiboot2");
    boot.rsdp = mbi
        .rsdp_v2_tag()
        .map(|tag| tag as *const _ as u64)
        .or_else(|| mbi.rsdp_v1_tag().map(|tag| tag as *const _ as u64))
        // The tags' payload is the RSDP itself, after the 8-byte tag header.
        .map(|tag_address| tag_address - PHYS_MAP_BASE + 8);
    match mbi.memory_map_tag() {
        Some(tag) => {
            for area in tag.memory_areas() {
                let kind = e820_kind(u32::from(area.typ()));
                if let Err(error) =
                    boot.memory
                        .add_firmware(area.start_address(), area.size(), kind)
                {
                    log::error!("boot: multiboot2 memory map: {error}; entry dropped");
                }
            }
        }
        None => log::error!("boot: multiboot2 information has no memory map"),
    }
    for module in mbi.module_tags() {
        let cmdline = module.cmdline().unwrap_or("");
        if let Err(error) = boot.add_module(
            u64::from(module.start_address()),
            u64::from(module.end_address()),
            cmdline,
        ) {
            log::error!("boot: {error}; dropped");
        }
    }
    let total = mbi.total_size() as u64;
    // The strings above borrow from the information structure: it must
    // not be handed out as free memory.
    boot.add_boot_data(info, info + total);
    Ok(boot)
}

mod tests {
    use super::*;
    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    #[ktest]
    fn kernel_image_is_reserved() -> TestResult {
        let boot = crate::boot::boot_info();
        let (start, end) = kernel_image();
        let covering = boot
            .memory
            .regions()
            .iter()
            .find(|r| r.start <= start && end <= r.end)
            .map(|r| r.kind);
        kassert_eq!(covering, Some(RegionKind::Kernel));
        kassert!(boot
            .memory
            .usable_frames()
            .all(|(s, e)| e <= start || s >= end));
        Ok(())
    }

    #[ktest]
    fn initrd_contents_match_the_rig_pattern() -> TestResult {
        // The boot rig hands some configurations an initrd whose byte i is
        // i % 251; check what arrived, not only its size.
        let boot = crate::boot::boot_info();
        let Some(initrd) = boot.initrd() else {
            return Ok(());
        };
        // SAFETY: the module is reserved in the memory map and covered by
        // the direct map (RAM), and nothing writes to it.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                (PHYS_MAP_BASE + initrd.start) as *const u8,
                initrd.len() as usize,
            )
        };
        if bytes.starts_with(b"0707") {
            return crate::ktest::not_applicable("the boot module is a cpio archive (a site)");
        }
        let first_bad = bytes
            .iter()
            .enumerate()
            .position(|(i, &b)| b != (i % 251) as u8);
        kassert!(
            first_bad.is_none(),
            "initrd differs from the pattern at byte {first_bad:?}"
        );
        Ok(())
    }
}
