//! The kernel's page tables (Intel SDM Vol. 3A 4.5):
//!
//! - the direct map: all RAM at `PHYS_MAP_BASE + phys`, read-write,
//!   no-execute (2 MiB pages natively; 4 KiB pages under Xen PV, where
//!   page-table pages must be mapped read-only and Xen offers no large
//!   pages);
//! - the kernel image with W^X: text read-execute, rodata read-only, data
//!   and bss read-write no-execute; the boot and double-fault stacks' guard
//!   pages unmapped;
//! - on demand: MMIO windows (uncached) and kernel stacks, each above an
//!   unmapped guard page, so an overflow faults instead of corrupting;
//!   a stack's pages go back to the frame allocator when it is dropped.
//!
//! Natively the tables are built once at boot to replace the entry code's
//! temporary ones and loaded through the vmops `write_cr3` op. Under Xen
//! PV the kernel keeps the tables Xen built and pinned (the start info's
//! `pt_base`) and extends them: there, a page-table page may only be
//! mapped read-only, and every entry store is validated by Xen.
//!
//! So this module has its own small walker instead of a crate's mapper:
//! every entry store goes through the vmops `set_pte` op (a plain store
//! natively, `HYPERVISOR_mmu_update` under PV), entries hold machine
//! addresses ([`xlate`]), and a new table page is made read-only in every
//! mapping of it before it is linked in.

use super::xlate::{self, direct_map, phys_to_virt, MachineAddr};
use super::{frames, MmError, PAGE_SIZE};
use crate::arch::cpu;
use crate::arch::layout::*;
use crate::backend::{Paging, ValidatedPaging};
use crate::boot::entry::{BOOT_STACK_SIZE, DF_STACK_SIZE};
use crate::vmops::ops;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use pure::mm::memmap::{MemoryMap, RegionKind};
use spin::Mutex;
use x86_64::structures::paging::page::PageRange;
use x86_64::structures::paging::page_table::PageTableLevel;
pub use x86_64::structures::paging::PageTableFlags as Flags;
use x86_64::structures::paging::{Page, PageSize, PageTableIndex, PhysFrame, Size2MiB};
use x86_64::{PhysAddr, VirtAddr};

/// The kernel's tables, by the physical address of their root (PML4).
/// Interrupt-safe: the page fault handler maps user pages.
static KERNEL_PAGE_TABLE: super::heap::IrqMutex<Option<Tables>> = super::heap::IrqMutex::new(None);
static NX_ENABLED: AtomicBool = AtomicBool::new(false);
static GLOBAL_ENABLED: AtomicBool = AtomicBool::new(false);
static NEXT_MMIO: AtomicU64 = AtomicU64::new(MMIO_BASE);
static NEXT_STACK: AtomicU64 = AtomicU64::new(KSTACK_BASE);

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static boot_stack_guard: u8;
    static boot_stack_bottom: u8;
    static df_stack_guard: u8;
    static df_stack_bottom: u8;
}

fn addr(symbol: *const u8) -> VirtAddr {
    VirtAddr::from_ptr(symbol)
}

/// Where the kernel image is linked; it is loaded at its link address less
/// this.
const IMAGE_BASE: VirtAddr = VirtAddr::new(KERNEL_VMA);

/// The physical address of an address in the kernel image.
fn image_phys(virt: VirtAddr) -> PhysAddr {
    PhysAddr::new(virt - IMAGE_BASE)
}

/// Address bits of an entry (bits 12..51).
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const SIZE_2M: u64 = Size2MiB::SIZE;

/// New tables may come from any frame.
const ANYWHERE: PhysAddr = PhysAddr::new_truncate(u64::MAX);

/// The levels of a walk, root first.
const LEVELS: [PageTableLevel; 4] = [
    PageTableLevel::Four,
    PageTableLevel::Three,
    PageTableLevel::Two,
    PageTableLevel::One,
];

/// The 4 KiB pages of `[start, end)`.
fn pages(start: VirtAddr, end: VirtAddr) -> PageRange {
    Page::range(
        Page::containing_address(start),
        Page::containing_address(end.align_up(PAGE_SIZE)),
    )
}

/// The direct map's page for `frame`.
fn direct_page(frame: PhysFrame) -> Page {
    Page::containing_address(direct_map(frame.start_address()))
}

/// Adds NO_EXECUTE when the CPU supports it (it is a reserved bit
/// otherwise).
fn no_exec(flags: Flags) -> Flags {
    if NX_ENABLED.load(Ordering::Relaxed) {
        flags | Flags::NO_EXECUTE
    } else {
        flags
    }
}

/// GLOBAL where it means something: natively with CR4.PGE. A Xen PV kernel
/// runs in its own address space already, and Xen warns about global
/// kernel pages.
fn global() -> Flags {
    if GLOBAL_ENABLED.load(Ordering::Relaxed) {
        Flags::GLOBAL
    } else {
        Flags::empty()
    }
}

/// Intermediate tables grant everything; the leaf entries decide.
const TABLE_FLAGS: Flags = Flags::PRESENT.union(Flags::WRITABLE);

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    OutOfFrames,
    /// The page is mapped already.
    Present(VirtAddr),
    /// A large page covers the address.
    LargePage(VirtAddr),
    /// The platform refused the entry at this address (Xen PV validation).
    Refused(VirtAddr),
    /// No machine frame for this physical address (beyond the P2M).
    NoMachineFrame(PhysAddr),
    /// Nothing maps the address.
    NotMapped(VirtAddr),
}

/// The entry at `index` of the table at physical `table`.
fn entry_ptr(table: PhysAddr, index: PageTableIndex) -> *mut u64 {
    (phys_to_virt(table) + u64::from(index) * 8).as_mut_ptr()
}

fn read_entry(entry: *mut u64) -> u64 {
    // SAFETY: `entry` points into a page-table page reached through
    // `phys_to_virt`, mapped (read-only under PV) for the kernel's life.
    unsafe { entry.read_volatile() }
}

/// The bits a store must leave as written; Xen PV adds USER to kernel
/// entries, and the CPU sets ACCESSED and DIRTY.
const CHECKED_BITS: u64 = ADDR_MASK | (1 << 63) | 0b11;

/// Stores `value` and checks it arrived (under PV, Xen may refuse it).
fn write_entry(entry: *mut u64, value: u64) -> Result<(), MapError> {
    // SAFETY: callers hold the table lock (or own the tables being built)
    // and compute `value` from frames they own.
    unsafe { ops::set_pte(entry, value) };
    if (read_entry(entry) ^ value) & CHECKED_BITS == 0 {
        Ok(())
    } else {
        Err(MapError::Refused(VirtAddr::from_ptr(entry)))
    }
}

/// The pseudo-physical frame an entry points at (entries hold machine
/// addresses: this is where they are translated back).
fn entry_phys(entry: u64) -> PhysAddr {
    xlate::machine_to_phys(MachineAddr::new(entry & ADDR_MASK))
}

/// An entry mapping pseudo-physical `phys` (translated to the machine
/// address the entry holds).
fn make_entry(phys: PhysAddr, flags: Flags) -> Result<u64, MapError> {
    let machine = xlate::phys_to_machine(phys).ok_or(MapError::NoMachineFrame(phys))?;
    Ok(machine.as_u64() & ADDR_MASK | flags.bits())
}

/// Page-table pages allocated before the direct map covered them (Xen
/// PV): the direct map must map them read-only. Bit n = frame n.
static EARLY_TABLES: Mutex<[u64; EARLY_TABLE_WORDS]> = Mutex::new([0; EARLY_TABLE_WORDS]);
/// Covers the first 256 MiB (a bootstrap mapping larger than that, with a
/// huge initrd, still takes its first tables from below it).
const EARLY_TABLE_WORDS: usize = 1024;
/// The frames `EARLY_TABLES` covers.
const EARLY_TABLE_LIMIT: PhysAddr = PhysAddr::new(EARLY_TABLE_WORDS as u64 * 64 * PAGE_SIZE);

fn early_table_mark(frame: PhysFrame) {
    let frame = frame.pfn() as usize;
    if let Some(word) = EARLY_TABLES.lock().get_mut(frame / 64) {
        *word |= 1 << (frame % 64);
    }
}

fn is_early_table(frame: PhysFrame) -> bool {
    let frame = frame.pfn() as usize;
    EARLY_TABLES
        .lock()
        .get(frame / 64)
        .is_some_and(|word| word & (1 << (frame % 64)) != 0)
}

/// A four-level page-table tree.
struct Tables {
    root: PhysAddr,
    /// Below this, new table pages must be reachable before the direct map
    /// (natively the boot tables' 4 GiB; under PV the bootstrap mapping).
    table_limit: PhysAddr,
}

impl Tables {
    /// A zeroed page for a new table, made read-only wherever it is mapped
    /// when the platform demands it (Xen PV), ready to be linked in.
    fn new_table(&mut self) -> Result<PhysAddr, MapError> {
        let frame = frames::alloc_below(self.table_limit).ok_or(MapError::OutOfFrames)?;
        let phys = frame.start_address();
        // SAFETY: the frame is fresh from the allocator (nobody else refers
        // to it) and `phys_to_virt` reaches it writable: it is no table yet.
        unsafe {
            core::ptr::write_bytes(phys_to_virt(phys).as_mut_ptr::<u8>(), 0, PAGE_SIZE as usize)
        };
        if validated() {
            early_table_mark(frame);
            // Its aliases: Xen's bootstrap mapping (low memory only) and
            // the direct map.
            let early = (phys < xlate::early_limit()).then(|| xlate::bootstrap_map(phys));
            for alias in [early, Some(direct_map(phys))].into_iter().flatten() {
                if let Some(leaf) = self.leaf(alias) {
                    let value = read_entry(leaf);
                    write_entry(leaf, value & !Flags::WRITABLE.bits())?;
                    ops::flush_tlb_page(alias.as_u64());
                }
            }
        }
        Ok(phys)
    }

    /// The entry for `virt` at `level` (`One`: the 4 KiB leaf, `Two`: a
    /// 2 MiB leaf), creating the tables above it when `create`.
    fn entry(
        &mut self,
        virt: VirtAddr,
        level: PageTableLevel,
        create: bool,
    ) -> Result<*mut u64, MapError> {
        self.entry_with(virt, level, create, TABLE_FLAGS)
    }

    /// As [`Tables::entry`], new tables linked with `table_flags` (the
    /// user half's carry USER).
    fn entry_with(
        &mut self,
        virt: VirtAddr,
        level: PageTableLevel,
        create: bool,
        table_flags: Flags,
    ) -> Result<*mut u64, MapError> {
        let mut table = self.root;
        for current in LEVELS.into_iter().filter(|&current| current > level) {
            let entry = entry_ptr(table, virt.page_table_index(current));
            let value = read_entry(entry);
            if value & Flags::PRESENT.bits() == 0 {
                if !create {
                    return Err(MapError::NotMapped(virt));
                }
                let new = self.new_table()?;
                write_entry(entry, make_entry(new, table_flags)?)?;
                table = new;
            } else if value & Flags::HUGE_PAGE.bits() != 0 {
                return Err(MapError::LargePage(virt));
            } else {
                table = entry_phys(value);
            }
        }
        Ok(entry_ptr(table, virt.page_table_index(level)))
    }

    /// The present leaf entry mapping `virt` (4 KiB or larger), if any.
    fn leaf(&self, virt: VirtAddr) -> Option<*mut u64> {
        let mut table = self.root;
        for level in LEVELS {
            let entry = entry_ptr(table, virt.page_table_index(level));
            let value = read_entry(entry);
            if value & Flags::PRESENT.bits() == 0 {
                return None;
            }
            if level == PageTableLevel::One || value & Flags::HUGE_PAGE.bits() != 0 {
                return Some(entry);
            }
            table = entry_phys(value);
        }
        None
    }

    /// Physical address and flags of the page mapping `virt`.
    fn translate(&self, virt: VirtAddr) -> Option<(PhysAddr, Flags)> {
        let mut table = self.root;
        for level in LEVELS {
            let value = read_entry(entry_ptr(table, virt.page_table_index(level)));
            if value & Flags::PRESENT.bits() == 0 {
                return None;
            }
            if level == PageTableLevel::One || value & Flags::HUGE_PAGE.bits() != 0 {
                let size = level.entry_address_space_alignment();
                let base = entry_phys(value).align_down(size);
                return Some((
                    base + (virt.as_u64() & (size - 1)),
                    Flags::from_bits_truncate(value),
                ));
            }
            table = entry_phys(value);
        }
        None
    }

    /// Maps the 4 KiB `page` to `frame`.
    fn map(&mut self, page: Page, frame: PhysFrame, flags: Flags) -> Result<(), MapError> {
        let virt = page.start_address();
        let entry = self.entry(virt, PageTableLevel::One, true)?;
        if read_entry(entry) & Flags::PRESENT.bits() != 0 {
            return Err(MapError::Present(virt));
        }
        write_entry(
            entry,
            make_entry(frame.start_address(), flags | Flags::PRESENT)?,
        )
    }

    /// Maps the 2 MiB `page` to `frame` (native only).
    fn map_2m(
        &mut self,
        page: Page<Size2MiB>,
        frame: PhysFrame<Size2MiB>,
        flags: Flags,
    ) -> Result<(), MapError> {
        let virt = page.start_address();
        let entry = self.entry(virt, PageTableLevel::Two, true)?;
        if read_entry(entry) & Flags::PRESENT.bits() != 0 {
            return Err(MapError::Present(virt));
        }
        write_entry(
            entry,
            make_entry(
                frame.start_address(),
                flags | Flags::PRESENT | Flags::HUGE_PAGE,
            )?,
        )
    }

    /// Unmaps the 4 KiB `page`; returns the frame it mapped.
    fn unmap(&mut self, page: Page) -> Option<PhysFrame> {
        let virt = page.start_address();
        let entry = self.entry(virt, PageTableLevel::One, false).ok()?;
        let value = read_entry(entry);
        if value & Flags::PRESENT.bits() == 0 {
            return None;
        }
        write_entry(entry, 0).ok()?;
        ops::flush_tlb_page(virt.as_u64());
        Some(PhysFrame::containing_address(entry_phys(value)))
    }

    /// Gives the 4 KiB `page` new flags, keeping its frame.
    fn protect(&mut self, page: Page, flags: Flags) -> Result<(), MapError> {
        let virt = page.start_address();
        let entry = self.entry(virt, PageTableLevel::One, false)?;
        let value = read_entry(entry);
        write_entry(entry, value & ADDR_MASK | (flags | Flags::PRESENT).bits())?;
        ops::flush_tlb_page(virt.as_u64());
        Ok(())
    }
}

/// Whether the direct map's alias of physical `phys` must be read-only
/// because it is kernel text or rodata: always, except in `vmops=lazy`
/// mode, whose patcher writes text through that alias at run time (eager
/// patching is over before these tables exist).
fn is_protected_image_frame(phys: PhysAddr) -> bool {
    let lazy = crate::backend::chosen().is_none_or(|c| c.mode == vmops::Mode::Lazy);
    let start = image_phys(addr(&raw const __text_start));
    let end = image_phys(addr(&raw const __rodata_end));
    !lazy && (start..end).contains(&phys)
}

/// Whether a region holds RAM that the direct map must cover.
fn is_ram(kind: RegionKind) -> bool {
    !matches!(kind, RegionKind::Reserved | RegionKind::Defective)
}

/// The kernel image's sections and their protections; the last two are
/// the VMI ROM's copy (its code, and its data or the unused area).
fn kernel_sections() -> [(VirtAddr, VirtAddr, Flags); 5] {
    let (rom_code, rom_data) = crate::backend::vmi::image_ranges();
    [
        (
            addr(&raw const __text_start),
            addr(&raw const __text_end),
            Flags::PRESENT | global(),
        ),
        (
            addr(&raw const __rodata_start),
            addr(&raw const __rodata_end),
            no_exec(Flags::PRESENT | global()),
        ),
        (
            addr(&raw const __data_start),
            addr(&raw const __data_end),
            no_exec(Flags::PRESENT | Flags::WRITABLE | global()),
        ),
        (
            VirtAddr::new(rom_code.start),
            VirtAddr::new(rom_code.end),
            Flags::PRESENT | global(),
        ),
        (
            VirtAddr::new(rom_data.start),
            VirtAddr::new(rom_data.end),
            no_exec(Flags::PRESENT | Flags::WRITABLE | global()),
        ),
    ]
}

fn stack_guards() -> [Page; 2] {
    [
        Page::containing_address(addr(&raw const boot_stack_guard)),
        Page::containing_address(addr(&raw const df_stack_guard)),
    ]
}

/// How the platform treats page tables (the backend's hook).
fn paging() -> Paging {
    crate::backend::hooks().paging
}

/// Whether the hypervisor validates every entry (table pages read-only).
fn validated() -> bool {
    matches!(paging(), Paging::Validated(_))
}

pub(super) fn init(map: &MemoryMap, shared_pages: &[PhysAddr]) -> Result<(), MmError> {
    if let Paging::Validated(platform) = paging() {
        return init_validated(map, platform);
    }
    NX_ENABLED.store(cpu::enable_nx(), Ordering::Relaxed);
    cpu::enable_global_pages();
    GLOBAL_ENABLED.store(true, Ordering::Relaxed);
    let mut tables = Tables {
        root: PhysAddr::zero(),
        table_limit: PhysAddr::new(BOOT_PHYS_MAP_LIMIT),
    };
    tables.root = tables.new_table().map_err(|_| MmError::OutOfFrames)?;
    let failed = |error: MapError| MmError::Map(error);

    // The direct map.
    let direct_flags = no_exec(Flags::WRITABLE | global());
    let image_flags = no_exec(global());
    let image = image_phys(kernel_sections()[0].0)..image_phys(kernel_sections()[1].1);
    let mut direct_bytes = 0u64;
    for region in map.regions().iter().filter(|r| is_ram(r.kind)) {
        // In u64: a region may end at MAX_PHYS, one past any PhysAddr.
        let mut phys = region.start & !(SIZE_2M - 1);
        while phys < region.end {
            let chunk = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(phys));
            if phys < image.end.as_u64() && image.start.as_u64() < phys + SIZE_2M {
                // The kernel's text and rodata lie here: 4 KiB pages, so
                // their alias can be read-only.
                let first = PhysFrame::containing_address(chunk.start_address());
                for frame in PhysFrame::range(first, first + SIZE_2M / PAGE_SIZE) {
                    let flags = if is_protected_image_frame(frame.start_address()) {
                        image_flags
                    } else {
                        direct_flags
                    };
                    match tables.map(direct_page(frame), frame, flags) {
                        Ok(()) => direct_bytes += PAGE_SIZE,
                        Err(MapError::Present(_)) => {}
                        Err(error) => return Err(failed(error)),
                    }
                }
                phys += SIZE_2M;
                continue;
            }
            // Two regions may share a 2 MiB page, hence the mapped case.
            let page = Page::containing_address(direct_map(chunk.start_address()));
            match tables.map_2m(page, chunk, direct_flags) {
                Ok(()) => direct_bytes += SIZE_2M,
                Err(MapError::Present(_)) => {}
                Err(error) => return Err(failed(error)),
            }
            phys += SIZE_2M;
        }
    }

    // Pages the platform shares with the kernel outside RAM, 4 KiB each
    // (inside a RAM 2 MiB page they are mapped already).
    for &phys in shared_pages {
        let frame = PhysFrame::containing_address(phys);
        match tables.map(direct_page(frame), frame, direct_flags) {
            Ok(()) | Err(MapError::LargePage(_)) | Err(MapError::Present(_)) => {}
            Err(error) => return Err(failed(error)),
        }
    }

    // The kernel image, section by section.
    for (start, end, flags) in kernel_sections() {
        for page in pages(start, end) {
            if !stack_guards().contains(&page) {
                let frame = PhysFrame::containing_address(image_phys(page.start_address()));
                tables.map(page, frame, flags).map_err(failed)?;
            }
        }
    }

    // SAFETY: the new tables map everything the kernel touches from here
    // on: its image (code, data, the boot stack we run on), the direct map
    // (heap, frame bitmap, boot structures). The identity map goes away,
    // and nothing refers to low addresses any more.
    unsafe { ops::write_cr3(tables.root.as_u64()) };
    tables.table_limit = ANYWHERE;
    let root = tables.root;
    *KERNEL_PAGE_TABLE.lock() = Some(tables);
    log::info!(
        "mm: page tables at {root:#x}: direct map {} MiB, kernel W^X{}",
        direct_bytes >> 20,
        if NX_ENABLED.load(Ordering::Relaxed) {
            ""
        } else {
            " (no NX on this CPU: data is executable)"
        }
    );
    Ok(())
}

/// Xen PV: extends the tables Xen built (already pinned and loaded) with the
/// direct map, 4 KiB pages, page-table pages read-only; then tightens the
/// kernel image to W^X and unmaps the stack guard pages.
fn init_validated(map: &MemoryMap, platform: &ValidatedPaging) -> Result<(), MmError> {
    // Xen runs PV guests with EFER.NXE set where the CPU has NX.
    NX_ENABLED.store(cpu::has_nx(), Ordering::Relaxed);
    // CR3 holds the root's machine address.
    let root = xlate::machine_to_phys(MachineAddr::new(ops::read_cr3() & ADDR_MASK));
    let mut tables = Tables {
        root,
        table_limit: xlate::early_limit().min(EARLY_TABLE_LIMIT),
    };
    for frame in (platform.bootstrap_tables)() {
        early_table_mark(frame);
    }
    let failed = |error: MapError| MmError::Map(error);
    let rw = no_exec(Flags::PRESENT | Flags::WRITABLE);
    let ro = no_exec(Flags::PRESENT);
    let mut direct_bytes = 0u64;
    let started = crate::time::tsc_clock_ns();
    // Ascending, so that once a page is direct-mapped, new tables can come
    // from anywhere below it (`table_limit` follows the mapped end). One
    // leaf table (2 MiB) at a time, its entries in one mmu_update.
    let mut covered = 0u64;
    let mut batch = [(VirtAddr::zero(), 0u64); 512];
    for region in map.regions().iter().filter(|r| is_ram(r.kind)) {
        let mut phys = region.start;
        while phys < region.end {
            let chunk_end = (phys / SIZE_2M + 1) * SIZE_2M;
            let chunk_end = chunk_end.min(region.end);
            // Creates the tables above the leaf (which may take frames of
            // this very chunk: they are marked, and mapped read-only).
            let first = tables
                .entry(direct_map(PhysAddr::new(phys)), PageTableLevel::One, true)
                .map_err(failed)?;
            let mut count = 0;
            for (i, page) in (phys..chunk_end).step_by(PAGE_SIZE as usize).enumerate() {
                // SAFETY: entries of one leaf table: `first` is the entry of
                // `phys`, and the chunk ends at the table's 2 MiB boundary.
                let entry = unsafe { first.add(i) };
                if read_entry(entry) & Flags::PRESENT.bits() != 0 {
                    continue;
                }
                let frame = PhysFrame::containing_address(PhysAddr::new(page));
                let flags =
                    if is_early_table(frame) || is_protected_image_frame(frame.start_address()) {
                        ro
                    } else {
                        rw
                    };
                batch[count] = (
                    VirtAddr::from_ptr(entry),
                    make_entry(frame.start_address(), flags).map_err(failed)?,
                );
                count += 1;
            }
            (platform.set_ptes)(&batch[..count])
                .map_err(|entry| failed(MapError::Refused(entry)))?;
            direct_bytes += count as u64 * PAGE_SIZE;
            if phys == covered {
                covered = chunk_end;
                xlate::set_direct_limit(PhysAddr::new(covered & !(SIZE_2M - 1)));
                tables.table_limit =
                    PhysAddr::new(covered).max(xlate::early_limit().min(EARLY_TABLE_LIMIT));
            }
            phys = chunk_end;
        }
    }
    xlate::set_direct_limit(PhysAddr::new(covered));
    tables.table_limit = ANYWHERE;

    // W^X for the image Xen mapped read-write-execute, and the guards.
    for (start, end, flags) in kernel_sections() {
        for page in pages(start, end) {
            if stack_guards().contains(&page) {
                tables.unmap(page);
            } else if (platform.is_hypervisor_page)(page.start_address()) {
                // Maps Xen's page, not the image; stays as it is.
            } else {
                tables.protect(page, flags).map_err(failed)?;
            }
        }
    }
    *KERNEL_PAGE_TABLE.lock() = Some(tables);
    log::info!(
        "mm: Xen PV page tables at {root:#x}: direct map {} MiB in 4 KiB pages ({} us), kernel W^X",
        direct_bytes >> 20,
        (crate::time::tsc_clock_ns() - started) / 1000
    );
    Ok(())
}

/// Maps `size` bytes of device memory at physical `phys` uncached, and
/// returns the virtual address of `phys`. MMIO windows are never unmapped.
///
/// Panics if memory is not up or the MMIO window is exhausted: both are
/// kernel bugs, not conditions a driver can handle.
pub fn map_mmio(phys: PhysAddr, size: u64) -> VirtAddr {
    map_phys(phys, size, false)
}

/// Maps `size` bytes at physical `phys` in the MMIO window, cached
/// (write-back) or not, and returns the virtual address of `phys`: for
/// memory outside the direct map, such as pages a hypervisor shares.
pub fn map_phys(phys: PhysAddr, size: u64, cached: bool) -> VirtAddr {
    assert!(
        !validated(),
        "map_phys where the hypervisor validates page tables (Xen PV): device memory has no pseudo-physical address"
    );
    let first = PhysFrame::containing_address(phys);
    let offset = phys - first.start_address();
    let bytes = (offset + size).next_multiple_of(PAGE_SIZE);
    let base = NEXT_MMIO.fetch_add(bytes, Ordering::Relaxed);
    assert!(
        base + bytes <= MMIO_BASE + MMIO_SIZE,
        "MMIO window exhausted"
    );
    let base = VirtAddr::new(base);
    let caching = if cached {
        Flags::empty()
    } else {
        Flags::NO_CACHE | Flags::WRITE_THROUGH
    };
    let flags = no_exec(Flags::WRITABLE | global() | caching);
    let mut guard = KERNEL_PAGE_TABLE.lock();
    let tables = guard.as_mut().expect("map_phys before mm::init");
    let frames = PhysFrame::range(first, first + bytes / PAGE_SIZE);
    for (frame, page) in frames.zip(pages(base, base + bytes)) {
        tables.map(page, frame, flags).expect("MMIO mapping");
    }
    base + offset
}

/// Maps the machine frame at `frame` (a page Xen shares, such as a
/// grant-table frame) at a fresh address of the MMIO window, cached; Xen PV
/// only, where such frames have no pseudo-physical address.
pub fn map_machine_frame(frame: MachineAddr) -> Result<VirtAddr, MapError> {
    let virt = VirtAddr::new(NEXT_MMIO.fetch_add(PAGE_SIZE, Ordering::Relaxed));
    write_machine_entry(virt, Some(frame), true)?;
    Ok(virt)
}

/// Points a page [`map_machine_frame`] made at machine frame `frame`, or
/// unmaps it (`None`); Xen PV only. A suspend needs it: no page-table
/// entry may point at a frame the domain does not own while it is saved,
/// and a grant-table frame is Xen's.
pub fn remap_machine_frame(virt: VirtAddr, frame: Option<MachineAddr>) -> Result<(), MapError> {
    write_machine_entry(virt, frame, false)?;
    ops::flush_tlb_page(virt.as_u64());
    Ok(())
}

/// Writes the leaf entry of `virt` (its tables made if `create`): machine
/// frame `frame` read-write, not executable, or nothing.
fn write_machine_entry(
    virt: VirtAddr,
    frame: Option<MachineAddr>,
    create: bool,
) -> Result<(), MapError> {
    let mut guard = KERNEL_PAGE_TABLE.lock();
    let tables = guard.as_mut().ok_or(MapError::OutOfFrames)?;
    let entry = tables.entry(virt, PageTableLevel::One, create)?;
    let flags = no_exec(Flags::PRESENT | Flags::WRITABLE);
    write_entry(
        entry,
        frame.map_or(0, |frame| frame.as_u64() & ADDR_MASK | flags.bits()),
    )
}

/// One past the highest user address: the lower half of the address space
/// (PML4 slots 0-255) less its last page, as on Linux (`TASK_SIZE_MAX`).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// The flags of a user page: present, user, writable and executable as
/// asked (never global: user mappings change with the program).
fn user_flags(writable: bool, executable: bool) -> Flags {
    let mut flags = Flags::PRESENT | Flags::USER_ACCESSIBLE;
    if writable {
        flags |= Flags::WRITABLE;
    }
    if executable {
        flags
    } else {
        no_exec(flags)
    }
}

fn check_user(page: VirtAddr) -> Result<Page, MapError> {
    if page.as_u64() >= USER_END || !page.is_aligned(PAGE_SIZE) {
        return Err(MapError::NotMapped(page));
    }
    Ok(Page::containing_address(page))
}

/// Maps `frame` at the user page `page` (its tables created with USER
/// set). The kernel's own tables hold the one user address space (one
/// program runs at a time).
pub fn map_user(
    page: VirtAddr,
    frame: PhysFrame,
    writable: bool,
    executable: bool,
) -> Result<(), MapError> {
    let page = check_user(page)?;
    let mut guard = KERNEL_PAGE_TABLE.lock();
    let tables = guard.as_mut().ok_or(MapError::OutOfFrames)?;
    let table_flags = TABLE_FLAGS | Flags::USER_ACCESSIBLE;
    let top = entry_ptr(tables.root, page.p4_index());
    let top_before = read_entry(top);
    let entry = tables.entry_with(page.start_address(), PageTableLevel::One, true, table_flags)?;
    let top_after = read_entry(top);
    if top_after != top_before {
        // A new table for this part of the user half: a platform with a
        // user-mode table of its own needs it there too.
        (crate::backend::hooks().user.mirror_top_entry)(usize::from(page.p4_index()), top_after);
    }
    if read_entry(entry) & Flags::PRESENT.bits() != 0 {
        return Err(MapError::Present(page.start_address()));
    }
    write_entry(
        entry,
        make_entry(frame.start_address(), user_flags(writable, executable))?,
    )
}

/// A fresh page-table page (zeroed; read-only wherever mapped where the
/// platform validates tables), for a top-level table of the platform's.
pub fn new_table_page() -> Result<PhysAddr, MapError> {
    let mut guard = KERNEL_PAGE_TABLE.lock();
    let tables = guard.as_mut().ok_or(MapError::OutOfFrames)?;
    tables.new_table()
}

/// The present top-level entries of the user half (index, value).
pub fn user_half_top_entries() -> alloc::vec::Vec<(usize, u64)> {
    let guard = KERNEL_PAGE_TABLE.lock();
    let Some(tables) = guard.as_ref() else {
        return alloc::vec::Vec::new();
    };
    (0..256u16)
        .filter_map(|i| {
            let value = read_entry(entry_ptr(tables.root, PageTableIndex::new(i)));
            (value & Flags::PRESENT.bits() != 0).then_some((usize::from(i), value))
        })
        .collect()
}

/// Unmaps the user page `page`; returns its frame (the caller frees it).
pub fn unmap_user(page: VirtAddr) -> Option<PhysFrame> {
    let page = check_user(page).ok()?;
    KERNEL_PAGE_TABLE.lock().as_mut()?.unmap(page)
}

/// Changes the protection of the user page `page` if it is mapped. A page
/// the program may not touch at all (`PROT_NONE`) keeps its frame but
/// loses the USER bit, so any access from ring 3 faults.
pub fn protect_user(
    page: VirtAddr,
    accessible: bool,
    writable: bool,
    executable: bool,
) -> Result<(), MapError> {
    let page = check_user(page)?;
    let mut guard = KERNEL_PAGE_TABLE.lock();
    let tables = guard.as_mut().ok_or(MapError::OutOfFrames)?;
    let mut flags = user_flags(writable && accessible, executable && accessible);
    if !accessible {
        flags.remove(Flags::USER_ACCESSIBLE);
    }
    match tables.leaf(page.start_address()) {
        Some(_) => tables.protect(page, flags),
        None => Ok(()),
    }
}

/// The frame and flags of the user page `page`, if mapped.
pub fn user_mapping(page: VirtAddr) -> Option<(PhysFrame, Flags)> {
    let page = check_user(page).ok()?;
    let guard = KERNEL_PAGE_TABLE.lock();
    let (phys, flags) = guard.as_ref()?.translate(page.start_address())?;
    Some((PhysFrame::containing_address(phys), flags))
}

/// A kernel stack in the stack area, above an unmapped guard page. Its
/// pages are unmapped and their frames freed when it is dropped (the
/// virtual range is not reused: the area is 512 GiB).
pub struct KernelStack {
    bottom: VirtAddr,
    top: VirtAddr,
}

impl KernelStack {
    /// Allocates a stack of `pages` pages (plus the guard page below).
    /// `None` when frames run out.
    pub fn new(pages: u64) -> Option<KernelStack> {
        let span = (pages + 1) * PAGE_SIZE;
        let guard = NEXT_STACK.fetch_add(span, Ordering::Relaxed);
        if guard + span > KSTACK_BASE + KSTACK_AREA_SIZE {
            return None;
        }
        let stack = KernelStack {
            bottom: VirtAddr::new(guard + PAGE_SIZE),
            top: VirtAddr::new(guard + span),
        };
        let flags = no_exec(Flags::WRITABLE | global());
        let mut table = KERNEL_PAGE_TABLE.lock();
        let tables = table.as_mut()?;
        for page in self::pages(stack.bottom, stack.top) {
            let frame = frames::alloc()?;
            if let Err(error) = tables.map(page, frame, flags) {
                log::error!(
                    "mm: kernel stack page {:#x}: {error:?}",
                    page.start_address()
                );
                frames::free(frame);
                drop(table);
                return None; // `stack` drops: what was mapped is freed.
            }
        }
        Some(stack)
    }

    /// The initial stack pointer (one past the highest byte).
    pub fn top(&self) -> VirtAddr {
        self.top
    }

    /// The lowest usable byte; the guard page lies just below.
    pub fn bottom(&self) -> VirtAddr {
        self.bottom
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        let mut table = KERNEL_PAGE_TABLE.lock();
        let Some(tables) = table.as_mut() else { return };
        for page in pages(self.bottom, self.top) {
            if let Some(frame) = tables.unmap(page) {
                frames::free(frame);
            }
        }
    }
}

/// Whether `address` lies in a stack guard page.
pub fn is_stack_guard(address: VirtAddr) -> bool {
    if stack_guards().contains(&Page::containing_address(address)) {
        return true;
    }
    // In the stack area, everything below the bump pointer that is not
    // mapped is a guard page (or a freed stack).
    (KSTACK_BASE..NEXT_STACK.load(Ordering::Relaxed)).contains(&address.as_u64())
        && is_mapped(address) == Some(false)
}

/// Whether `[address, address + len)` lies in a kernel stack that is mapped;
/// `false` when that cannot be known without waiting for a lock.
pub fn is_kernel_stack(address: VirtAddr, len: u64) -> bool {
    let Some(end) = address.as_u64().checked_add(len) else {
        return false;
    };
    let within =
        |bottom: VirtAddr, size: usize| address >= bottom && end <= bottom.as_u64() + size as u64;
    if within(addr(&raw const boot_stack_bottom), BOOT_STACK_SIZE)
        || within(addr(&raw const df_stack_bottom), DF_STACK_SIZE)
    {
        return true;
    }
    (KSTACK_BASE..NEXT_STACK.load(Ordering::Relaxed)).contains(&address.as_u64())
        && is_mapped(address) == Some(true)
        && VirtAddr::try_new(end - 1).is_ok_and(|last| is_mapped(last) == Some(true))
}

/// The flags of the page that maps `address`, or `None` when it is not
/// mapped.
pub fn flags_of(address: VirtAddr) -> Option<Flags> {
    KERNEL_PAGE_TABLE
        .lock()
        .as_ref()?
        .translate(address)
        .map(|(_, flags)| flags)
}

/// The leaf entry that maps `address` (for tests of the `set_pte` op).
pub fn leaf_entry(address: VirtAddr) -> Option<*mut u64> {
    KERNEL_PAGE_TABLE.lock().as_ref()?.leaf(address)
}

/// Whether the tables rooted at physical `root` map `virt` (reached
/// through `xlate::phys_to_virt`: before the direct map, the boot or
/// bootstrap mapping).
pub fn maps(root: PhysAddr, virt: VirtAddr) -> bool {
    Tables {
        root,
        table_limit: PhysAddr::zero(),
    }
    .translate(virt)
    .is_some()
}

/// Whether `address` is mapped in the kernel's tables; `None` if the table
/// lock is held (the caller may be a fault path that interrupted its holder).
fn is_mapped(address: VirtAddr) -> Option<bool> {
    let guard = KERNEL_PAGE_TABLE.try_lock()?;
    Some(guard.as_ref()?.translate(address).is_some())
}

mod tests {
    use super::*;
    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    static WRITABLE_STATIC: AtomicU64 = AtomicU64::new(1);
    static READ_ONLY_STATIC: [u8; 16] = *b"sanos read-only!";

    #[ktest]
    fn kernel_image_is_w_xor_x() -> TestResult {
        let nx = NX_ENABLED.load(Ordering::Relaxed);
        let text = flags_of(VirtAddr::from_ptr(
            kernel_image_is_w_xor_x as fn() -> TestResult as *const (),
        ));
        kassert!(text.is_some(), "text not mapped");
        let text = text.unwrap_or(Flags::empty());
        kassert!(
            !text.contains(Flags::WRITABLE),
            "text is writable: {text:?}"
        );
        kassert!(
            !text.contains(Flags::NO_EXECUTE),
            "text is not executable: {text:?}"
        );

        let rodata =
            flags_of(VirtAddr::from_ptr(READ_ONLY_STATIC.as_ptr())).unwrap_or(Flags::WRITABLE);
        kassert!(
            !rodata.contains(Flags::WRITABLE),
            "rodata is writable: {rodata:?}"
        );
        kassert_eq!(rodata.contains(Flags::NO_EXECUTE), nx);

        let data = flags_of(VirtAddr::from_ptr(WRITABLE_STATIC.as_ptr())).unwrap_or(Flags::empty());
        kassert!(
            data.contains(Flags::WRITABLE),
            "data is read-only: {data:?}"
        );
        kassert_eq!(data.contains(Flags::NO_EXECUTE), nx);
        WRITABLE_STATIC.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    #[ktest]
    fn direct_map_alias_of_text_is_read_only_unless_lazy() -> TestResult {
        let text = VirtAddr::from_ptr(kernel_image_is_w_xor_x as fn() -> TestResult as *const ());
        let alias = flags_of(direct_map(image_phys(text)));
        kassert!(alias.is_some(), "kernel text missing from the direct map");
        let alias = alias.unwrap_or(Flags::empty());
        let lazy = crate::backend::chosen().is_some_and(|c| c.mode == vmops::Mode::Lazy);
        kassert_eq!(alias.contains(Flags::WRITABLE), lazy);
        kassert_eq!(
            alias.contains(Flags::NO_EXECUTE),
            NX_ENABLED.load(Ordering::Relaxed)
        );
        Ok(())
    }

    #[ktest]
    fn boot_stack_guards_are_unmapped() -> TestResult {
        for guard in [
            addr(&raw const boot_stack_guard),
            addr(&raw const df_stack_guard),
        ] {
            kassert!(flags_of(guard).is_none(), "guard page {guard:#x} is mapped");
            kassert!(is_stack_guard(guard + 8u64));
            kassert!(
                flags_of(guard + PAGE_SIZE).is_some(),
                "stack above {guard:#x} not mapped"
            );
        }
        let here = 0u64;
        kassert!(
            is_kernel_stack(VirtAddr::from_ptr(&raw const here), 8),
            "test runs off the kernel stacks"
        );
        Ok(())
    }

    #[ktest]
    fn kernel_stack_sits_above_a_guard_page() -> TestResult {
        let stack = KernelStack::new(4);
        kassert!(stack.is_some(), "no kernel stack");
        let Some(stack) = stack else { return Ok(()) };
        kassert_eq!(stack.top() - stack.bottom(), 4 * PAGE_SIZE);
        kassert!(
            flags_of(stack.bottom() - 1u64).is_none(),
            "guard page mapped"
        );
        kassert!(is_stack_guard(stack.bottom() - 1u64));
        kassert!(!is_stack_guard(stack.bottom()));
        kassert!(is_kernel_stack(stack.bottom(), 4 * PAGE_SIZE));
        let flags = flags_of(stack.top() - 8u64).unwrap_or(Flags::empty());
        kassert!(flags.contains(Flags::WRITABLE | Flags::PRESENT));
        // The memory is really there: write and read back both ends.
        let (high, low) = (
            (stack.top() - 8u64).as_mut_ptr::<u64>(),
            stack.bottom().as_mut_ptr::<u64>(),
        );
        // SAFETY: both addresses lie in the stack just mapped, which nothing
        // else uses.
        unsafe {
            high.write_volatile(0x5a5a);
            low.write_volatile(0xa5a5);
            kassert_eq!(high.read_volatile(), 0x5a5a);
            kassert_eq!(low.read_volatile(), 0xa5a5);
        }
        Ok(())
    }

    #[ktest]
    fn mmio_mappings_are_uncached() -> TestResult {
        if crate::backend::id() == crate::backend::BackendId::XenPv {
            return crate::ktest::not_applicable("a Xen PV guest maps no device memory");
        }
        // The local APIC page (the architectural default base) is device
        // memory on every PC.
        let virt = map_mmio(PhysAddr::new(0xfee0_0030), 4);
        kassert_eq!(virt.as_u64() % PAGE_SIZE, 0x30);
        let flags = flags_of(virt).unwrap_or(Flags::empty());
        kassert!(
            flags.contains(Flags::NO_CACHE),
            "MMIO mapped cacheable: {flags:?}"
        );
        kassert!(!flags.contains(Flags::USER_ACCESSIBLE));
        Ok(())
    }

    #[ktest]
    fn direct_map_reaches_all_usable_ram() -> TestResult {
        let boot = crate::boot::boot_info();
        for (start, end) in boot.memory.usable_frames() {
            for phys in [start, end - PAGE_SIZE] {
                let flags = flags_of(direct_map(PhysAddr::new(phys)));
                kassert!(
                    flags.is_some(),
                    "RAM at {phys:#x} missing from the direct map"
                );
            }
        }
        Ok(())
    }
}
