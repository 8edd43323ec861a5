//! The kernel's page tables (Intel SDM Vol. 3A 4.5), built once at boot to
//! replace the entry code's temporary ones:
//!
//! - the direct map: every RAM region of the memory map at
//!   `PHYS_MAP_BASE + phys`, 2 MiB pages, read-write, no-execute;
//! - the kernel image with W^X: text read-execute, rodata read-only, data
//!   and bss read-write no-execute; the boot and double-fault stacks' guard
//!   pages stay unmapped;
//! - on demand: MMIO windows (uncached) and kernel stacks, each above an
//!   unmapped guard page, so an overflow faults instead of corrupting.
//!
//! Mappings outside the direct map go through [`KERNEL_PAGE_TABLE`]. Every
//! kernel mapping is global (CR4.PGE): it is the same in every address
//! space. The CR3 write goes through the vmops `write_cr3` op.

use super::frames::{self, TableFrames};
use super::MmError;
use crate::arch::boot::{BOOT_STACK_SIZE, DF_STACK_SIZE};
use crate::arch::cpu;
use crate::arch::layout::*;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use sanos_kernel::memmap::{MemoryMap, RegionKind, PAGE_SIZE};
use spin::Mutex;
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags as Flags, PhysFrame,
    Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

static KERNEL_PAGE_TABLE: Mutex<Option<OffsetPageTable<'static>>> = Mutex::new(None);
static NX_ENABLED: AtomicBool = AtomicBool::new(false);
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

fn addr(symbol: *const u8) -> u64 {
    symbol as u64
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

/// Intermediate tables grant everything; the leaf entries decide.
const TABLE_FLAGS: Flags = Flags::PRESENT.union(Flags::WRITABLE);

/// Whether a region holds RAM that the direct map must cover.
fn is_ram(kind: RegionKind) -> bool {
    !matches!(kind, RegionKind::Reserved | RegionKind::Defective)
}

pub(super) fn init(map: &MemoryMap, shared_pages: &[u64]) -> Result<(), MmError> {
    NX_ENABLED.store(cpu::enable_nx(), Ordering::Relaxed);
    cpu::enable_global_pages();
    let mut table_frames = TableFrames {
        limit: BOOT_PHYS_MAP_LIMIT,
    };
    let pml4_frame = frames::alloc_below(BOOT_PHYS_MAP_LIMIT).ok_or(MmError::OutOfFrames)?;
    let pml4_ptr = (PHYS_MAP_BASE + pml4_frame.start_address().as_u64()) as *mut PageTable;
    // SAFETY: the frame was just allocated (nobody else refers to it) and
    // lies in the boot direct map; zeroing makes it an empty PML4.
    let pml4 = unsafe {
        pml4_ptr.write(PageTable::new());
        &mut *pml4_ptr
    };
    // SAFETY: every page-table frame this mapper will touch is reachable at
    // PHYS_MAP_BASE + phys: the boot tables map the first 4 GiB there, and
    // `TableFrames` hands out frames below 4 GiB only.
    let mut mapper = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(PHYS_MAP_BASE)) };

    // The direct map.
    let direct_flags = no_exec(Flags::PRESENT | Flags::WRITABLE | Flags::GLOBAL);
    let mut direct_bytes = 0u64;
    for region in map.regions().iter().filter(|r| is_ram(r.kind)) {
        let mut phys = region.start & !(Size2MiB::SIZE - 1);
        while phys < region.end {
            let page = Page::<Size2MiB>::containing_address(VirtAddr::new(PHYS_MAP_BASE + phys));
            let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(phys));
            // SAFETY: maps RAM at its direct-map address; nothing else uses
            // that virtual range. Two regions may share a 2 MiB page, hence
            // the already-mapped case.
            match unsafe {
                mapper.map_to_with_table_flags(
                    page,
                    frame,
                    direct_flags,
                    TABLE_FLAGS,
                    &mut table_frames,
                )
            } {
                Ok(flush) => {
                    flush.ignore();
                    direct_bytes += Size2MiB::SIZE;
                }
                Err(x86_64::structures::paging::mapper::MapToError::PageAlreadyMapped(_)) => {}
                Err(_) => return Err(MmError::OutOfFrames),
            }
            phys += Size2MiB::SIZE;
        }
    }

    // Pages the platform shares with the kernel outside RAM, 4 KiB each
    // (inside a RAM 2 MiB page they are mapped already).
    for &phys in shared_pages {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(PHYS_MAP_BASE + phys));
        let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(phys));
        // SAFETY: maps a page the platform shares with us at its direct-map
        // address, which nothing else uses (it is not RAM).
        if let Ok(flush) = unsafe {
            mapper.map_to_with_table_flags(
                page,
                frame,
                direct_flags,
                TABLE_FLAGS,
                &mut table_frames,
            )
        } {
            flush.ignore();
        }
    }

    // The kernel image, section by section.
    let guards = [
        addr(&raw const boot_stack_guard),
        addr(&raw const df_stack_guard),
    ];
    let sections = [
        (
            addr(&raw const __text_start),
            addr(&raw const __text_end),
            Flags::PRESENT | Flags::GLOBAL,
        ),
        (
            addr(&raw const __rodata_start),
            addr(&raw const __rodata_end),
            no_exec(Flags::PRESENT | Flags::GLOBAL),
        ),
        (
            addr(&raw const __data_start),
            addr(&raw const __data_end),
            no_exec(Flags::PRESENT | Flags::WRITABLE | Flags::GLOBAL),
        ),
    ];
    for (start, end, flags) in sections {
        for virt in (start..end).step_by(PAGE_SIZE as usize) {
            if guards.contains(&virt) {
                continue;
            }
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
            let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(virt - KERNEL_VMA));
            // SAFETY: maps the kernel image at its link address, as the
            // boot tables did, with tighter permissions.
            unsafe {
                mapper.map_to_with_table_flags(page, frame, flags, TABLE_FLAGS, &mut table_frames)
            }
            .map_err(|_| MmError::OutOfFrames)?
            .ignore();
        }
    }

    // SAFETY: the new tables map everything the kernel touches from here
    // on: its image (code, data, the boot stack we run on), the direct map
    // (heap, frame bitmap, boot structures). The identity map goes away,
    // and nothing refers to low addresses any more.
    unsafe { crate::platform::ops::write_cr3(pml4_frame.start_address().as_u64()) };
    *KERNEL_PAGE_TABLE.lock() = Some(mapper);
    log::info!(
        "mm: page tables at {:#x}: direct map {} MiB, kernel W^X{}",
        pml4_frame.start_address().as_u64(),
        direct_bytes >> 20,
        if NX_ENABLED.load(Ordering::Relaxed) {
            ""
        } else {
            " (no NX on this CPU: data is executable)"
        }
    );
    Ok(())
}

/// Maps `size` bytes of device memory at physical `phys` uncached, and
/// returns the virtual address of `phys`. MMIO windows are never unmapped.
///
/// Panics if memory is not up or the MMIO window is exhausted: both are
/// kernel bugs, not conditions a driver can handle.
pub fn map_mmio(phys: u64, size: u64) -> u64 {
    map_phys(phys, size, false)
}

/// Maps `size` bytes at physical `phys` in the MMIO window, cached
/// (write-back) or not, and returns the virtual address of `phys`: for
/// memory outside the direct map, such as pages a hypervisor shares.
pub fn map_phys(phys: u64, size: u64, cached: bool) -> u64 {
    let first = phys & !(PAGE_SIZE - 1);
    let bytes = (phys + size - first).next_multiple_of(PAGE_SIZE);
    let base = NEXT_MMIO.fetch_add(bytes, Ordering::Relaxed);
    assert!(
        base + bytes <= MMIO_BASE + MMIO_SIZE,
        "MMIO window exhausted"
    );
    let caching = if cached {
        Flags::empty()
    } else {
        Flags::NO_CACHE | Flags::WRITE_THROUGH
    };
    let flags = no_exec(Flags::PRESENT | Flags::WRITABLE | Flags::GLOBAL | caching);
    let mut guard = KERNEL_PAGE_TABLE.lock();
    let mapper = guard.as_mut().expect("map_phys before mm::init");
    for offset in (0..bytes).step_by(PAGE_SIZE as usize) {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(base + offset));
        let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(first + offset));
        // SAFETY: `base` comes from a bump allocator over a window used for
        // nothing else, so the page is unused; the frame is device memory
        // the caller owns.
        unsafe {
            mapper.map_to_with_table_flags(
                page,
                frame,
                flags,
                TABLE_FLAGS,
                &mut TableFrames { limit: u64::MAX },
            )
        }
        .expect("MMIO mapping")
        .flush();
    }
    base + (phys - first)
}

/// A kernel stack in the stack area, above an unmapped guard page.
pub struct KernelStack {
    bottom: u64,
    top: u64,
}

impl KernelStack {
    /// Allocates a stack of `pages` pages (plus the guard page below).
    /// `None` when frames run out. Stacks are not freed yet: threads (the
    /// next issue) bring their life cycle.
    pub fn new(pages: u64) -> Option<KernelStack> {
        let span = (pages + 1) * PAGE_SIZE;
        let guard = NEXT_STACK.fetch_add(span, Ordering::Relaxed);
        if guard + span > KSTACK_BASE + KSTACK_AREA_SIZE {
            return None;
        }
        let bottom = guard + PAGE_SIZE;
        let flags = no_exec(Flags::PRESENT | Flags::WRITABLE | Flags::GLOBAL);
        let mut table = KERNEL_PAGE_TABLE.lock();
        let mapper = table.as_mut()?;
        for virt in (bottom..guard + span).step_by(PAGE_SIZE as usize) {
            let frame = frames::alloc()?;
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
            // SAFETY: the page is fresh from the stack area's bump allocator
            // and the frame fresh from the frame allocator.
            unsafe {
                mapper.map_to_with_table_flags(
                    page,
                    frame,
                    flags,
                    TABLE_FLAGS,
                    &mut TableFrames { limit: u64::MAX },
                )
            }
            .ok()?
            .flush();
        }
        Some(KernelStack {
            bottom,
            top: guard + span,
        })
    }

    /// The initial stack pointer (one past the highest byte).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The lowest usable byte; the guard page lies just below.
    pub fn bottom(&self) -> u64 {
        self.bottom
    }
}

/// Whether `address` lies in a stack guard page.
pub fn is_stack_guard(address: u64) -> bool {
    let in_page = |page: u64| (page..page + PAGE_SIZE).contains(&address);
    if in_page(addr(&raw const boot_stack_guard)) || in_page(addr(&raw const df_stack_guard)) {
        return true;
    }
    // In the stack area, everything below the bump pointer that is not
    // mapped is a guard page.
    (KSTACK_BASE..NEXT_STACK.load(Ordering::Relaxed)).contains(&address)
        && is_mapped(address) == Some(false)
}

/// Whether `[address, address + len)` lies in a kernel stack that is mapped;
/// `false` when that cannot be known without waiting for a lock.
pub fn is_kernel_stack(address: u64, len: u64) -> bool {
    let Some(end) = address.checked_add(len) else {
        return false;
    };
    let within = |bottom: u64, size: usize| address >= bottom && end <= bottom + size as u64;
    if within(addr(&raw const boot_stack_bottom), BOOT_STACK_SIZE)
        || within(addr(&raw const df_stack_bottom), DF_STACK_SIZE)
    {
        return true;
    }
    (KSTACK_BASE..NEXT_STACK.load(Ordering::Relaxed)).contains(&address)
        && is_mapped(address) == Some(true)
        && is_mapped(end - 1) == Some(true)
}

/// The flags of the page that maps `address`, or `None` when it is not
/// mapped.
pub fn flags_of(address: u64) -> Option<Flags> {
    use x86_64::structures::paging::mapper::TranslateResult;
    let guard = KERNEL_PAGE_TABLE.lock();
    match guard.as_ref()?.translate(VirtAddr::new(address)) {
        TranslateResult::Mapped { flags, .. } => Some(flags),
        _ => None,
    }
}

/// Whether `address` is mapped in the kernel's tables; `None` if the table
/// lock is held (the caller may be a fault path that interrupted its holder).
fn is_mapped(address: u64) -> Option<bool> {
    let guard = KERNEL_PAGE_TABLE.try_lock()?;
    Some(
        guard
            .as_ref()?
            .translate_addr(VirtAddr::new(address))
            .is_some(),
    )
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
        let text = flags_of(kernel_image_is_w_xor_x as fn() -> TestResult as usize as u64);
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

        let rodata = flags_of(READ_ONLY_STATIC.as_ptr() as u64).unwrap_or(Flags::WRITABLE);
        kassert!(
            !rodata.contains(Flags::WRITABLE),
            "rodata is writable: {rodata:?}"
        );
        kassert_eq!(rodata.contains(Flags::NO_EXECUTE), nx);

        let data = flags_of(WRITABLE_STATIC.as_ptr() as u64).unwrap_or(Flags::empty());
        kassert!(
            data.contains(Flags::WRITABLE),
            "data is read-only: {data:?}"
        );
        kassert_eq!(data.contains(Flags::NO_EXECUTE), nx);
        WRITABLE_STATIC.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    #[ktest]
    fn boot_stack_guards_are_unmapped() -> TestResult {
        for guard in [
            addr(&raw const boot_stack_guard),
            addr(&raw const df_stack_guard),
        ] {
            kassert!(flags_of(guard).is_none(), "guard page {guard:#x} is mapped");
            kassert!(is_stack_guard(guard + 8));
            kassert!(
                flags_of(guard + PAGE_SIZE).is_some(),
                "stack above {guard:#x} not mapped"
            );
        }
        let here = 0u64;
        kassert!(
            is_kernel_stack(&raw const here as u64, 8),
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
        kassert!(flags_of(stack.bottom() - 1).is_none(), "guard page mapped");
        kassert!(is_stack_guard(stack.bottom() - 1));
        kassert!(!is_stack_guard(stack.bottom()));
        kassert!(is_kernel_stack(stack.bottom(), 4 * PAGE_SIZE));
        let flags = flags_of(stack.top() - 8).unwrap_or(Flags::empty());
        kassert!(flags.contains(Flags::WRITABLE | Flags::PRESENT));
        // The memory is really there: write and read back both ends.
        // SAFETY: both addresses lie in the stack just mapped, which nothing
        // else uses.
        unsafe {
            ((stack.top() - 8) as *mut u64).write_volatile(0x5a5a);
            (stack.bottom() as *mut u64).write_volatile(0xa5a5);
            kassert_eq!(((stack.top() - 8) as *const u64).read_volatile(), 0x5a5a);
            kassert_eq!((stack.bottom() as *const u64).read_volatile(), 0xa5a5);
        }
        Ok(())
    }

    #[ktest]
    fn mmio_mappings_are_uncached() -> TestResult {
        // The local APIC page (the architectural default base) is device
        // memory on every PC.
        let virt = map_mmio(0xfee0_0030, 4);
        kassert_eq!(virt & 0xfff, 0x30);
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
        let boot = crate::start::boot_info();
        for (start, end) in boot.memory.usable_frames() {
            for phys in [start, end - PAGE_SIZE] {
                let flags = flags_of(PHYS_MAP_BASE + phys);
                kassert!(
                    flags.is_some(),
                    "RAM at {phys:#x} missing from the direct map"
                );
            }
        }
        Ok(())
    }
}
