//! The Xen PV backend: sanos as a deprivileged 64-bit PV guest
//! (`type="pv"`). The kernel runs in ring 3 under Xen, so every privileged
//! operation is a hypercall or a store into memory Xen shares
//! (`xen/include/public/xen.h`, `arch-x86/xen-x86_64.h`):
//!
//! - interrupts are event channels; "interrupts off" is vCPU 0's
//!   `evtchn_upcall_mask` byte in shared_info. shared_info is mapped at a
//!   page of the kernel image whose address the linker fixes, so
//!   `irq_disable` is one 8-byte store patched inline at every site
//!   (`mov byte ptr [abs32], 1`); `irq_enable` clears the mask and, if an
//!   event arrived meanwhile, makes a hypercall so Xen delivers it (the
//!   thunks are `hv::xen_pv`'s);
//! - safe halt is `SCHEDOP_block`, which unmasks and sleeps until an event;
//! - page tables: Xen built and pinned the first ones; entry stores are
//!   `HYPERVISOR_mmu_update` (Xen validates them), TLB flushes and base
//!   switches `HYPERVISOR_mmuext_op`; CR3 values are machine addresses;
//! - traps arrive through the table given to `HYPERVISOR_set_trap_table`,
//!   events through the callback given to `HYPERVISOR_set_callbacks`, both
//!   with Xen's frame (the CPU's plus RCX and R11), and leave through
//!   `HYPERVISOR_iret`; the kernel stack for entries from user mode is
//!   `HYPERVISOR_stack_switch`; segments are Xen's flat ones
//!   (`FLAT_KERNEL_CS`), so there is no GDT of our own;
//! - no UART, no local APIC, no PIT: the console is `console_io` (dom0) or
//!   the start info's ring (domU), time is pvclock with the single-shot
//!   timer on `VIRQ_TIMER` (`crate::xen`, shared with PVH).
//!
//! [`early`] runs first in `kernel_entry`, before any vmops site: until it
//! fills the table, every site would call the native functions, whose
//! `cli` faults in ring 3.

use super::{native, BackendId, Hooks, Paging, ValidatedPaging};
use crate::arch::layout::KERNEL_VMA;
use crate::arch::traps;
use crate::mm::xlate::{self, MachineAddr};
use crate::mm::PAGE_SIZE;
use crate::xen::{self, clock, events, grant, xencons};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use hv::xen::bindings::*;
use hv::xen::calls;
use hv::xen::hypercall::{self, XenError};
use hv::xen::p2m;
use hv::xen_pv::*;
use pure::boot::bootinfo::{BootInfo, XenPvStart};
use spin::Once;
use vmops::{Backend, FnAddr, Op, OpImpl, OP_COUNT};
use x86_64::structures::paging::frame::PhysFrameRange;
use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};

/// The first `len` bytes of a thunk: its inline form.
fn inline_form(thunk: unsafe extern "C" fn(), len: usize) -> &'static [u8] {
    // SAFETY: the thunks named here begin with a `len`-byte instruction
    // (`hv::xen_pv`), in kernel text, which is never freed.
    unsafe { core::slice::from_raw_parts(thunk as *const u8, len) }
}

fn shared_info_address() -> u64 {
    (&raw const xen_pv_shared_info) as u64
}

fn console_ring_address() -> u64 {
    (&raw const xen_pv_console_ring) as u64
}

/// Whether `virt` is one of the kernel-image pages that map Xen's pages
/// (shared_info, the console ring) instead of the image's own frames.
fn is_hypervisor_page(virt: VirtAddr) -> bool {
    let page = virt.align_down(PAGE_SIZE).as_u64();
    page == shared_info_address() || page == console_ring_address()
}

/// Maps the machine frame at `machine` (page-aligned) at the kernel-image
/// page `virt`, read-write, not executable.
///
/// # Safety
/// `virt` must be a page of the image reserved for this mapping.
unsafe fn map_at(virt: u64, machine: MachineAddr) -> Result<(), XenError> {
    let nx = if crate::arch::cpu::has_nx() {
        1 << 63
    } else {
        0
    };
    // SAFETY: the caller reserves the page; Xen checks that the frame may
    // be mapped by this domain.
    unsafe { calls::update_va_mapping(virt, machine.as_u64() | 0b11 | nx, UVMF_INVLPG) }
}

fn event_mask() -> &'static AtomicU8 {
    // SAFETY: byte 1 of the mapped shared_info is vCPU 0's
    // evtchn_upcall_mask, which only this vCPU writes (Xen reads it).
    unsafe { AtomicU8::from_ptr((shared_info_address() + 1) as *mut u8) }
}

/// Masks events without a vmops site (the patcher's hook); returns the
/// old mask for [`unmask_raw`].
fn mask_raw() -> u64 {
    u64::from(event_mask().swap(1, Ordering::AcqRel))
}

/// Restores the mask [`mask_raw`] returned, delivering what arrived
/// meanwhile.
fn unmask_raw(was: u64) {
    event_mask().store(was as u8, Ordering::Release);
    // SAFETY: byte 0 of shared_info is vCPU 0's evtchn_upcall_pending.
    let pending = unsafe { (shared_info_address() as *const u8).read_volatile() };
    if was == 0 && pending != 0 {
        // Any hypercall's return delivers the pending upcall; the version
        // it answers is not needed.
        let _ = calls::xen_version(XENVER_version);
    }
}

/// The start info, as the PV entry found it (virtual address).
static START_INFO: AtomicU64 = AtomicU64::new(0);

fn start_info() -> &'static start_info {
    // SAFETY: set once by `early` to the start info Xen passed in RSI, which
    // lies in the bootstrap mapping the kernel keeps; nothing writes it.
    unsafe { &*(START_INFO.load(Ordering::Acquire) as *const start_info) }
}

#[unsafe(no_mangle)]
extern "C" fn sanos_xen_pv_write_cr3(machine: u64) {
    // SAFETY: the vmops write_cr3 op's contract: `machine` is the root of
    // tables that map everything the kernel uses.
    match unsafe { calls::mmuext_new_baseptr(MachineAddr::new(machine).frame_number()) } {
        // SAFETY: the software copy read_cr3 returns; one aligned store.
        Ok(()) => unsafe { (&raw mut xen_pv_cr3).write_volatile(machine) },
        Err(error) => log::error!("xen-pv: new base {machine:#x} refused: {error}"),
    }
}

#[unsafe(no_mangle)]
extern "C" fn sanos_xen_pv_flush_tlb_page(address: u64) {
    if let Err(error) = calls::mmuext_invlpg_local(address) {
        log::error!("xen-pv: invlpg {address:#x}: {error}");
    }
}

#[unsafe(no_mangle)]
extern "C" fn sanos_xen_pv_flush_tlb_all() {
    if let Err(error) = calls::mmuext_tlb_flush_local() {
        log::error!("xen-pv: TLB flush: {error}");
    }
}

/// Stores page-table entry `value` (machine address and flags) at the
/// entry `entry` points at, through `HYPERVISOR_mmu_update`.
#[unsafe(no_mangle)]
extern "C" fn sanos_xen_pv_set_pte(entry: u64, value: u64) {
    let Ok(entry) = VirtAddr::try_new(entry) else {
        log::error!("xen-pv: {entry:#x} is no page-table entry of ours");
        return;
    };
    if let Err(failed) = set_ptes(&[(entry, value)]) {
        log::error!("xen-pv: entry {failed:#x} <- {value:#x} not stored");
    }
}

/// Stores many page-table entries (entry address, value) in one
/// `HYPERVISOR_mmu_update` (at most 512: one leaf table). On a refusal,
/// returns the address of the first entry Xen did not take.
fn set_ptes(entries: &[(VirtAddr, u64)]) -> Result<(), VirtAddr> {
    let mut requests = [mmu_update { ptr: 0, val: 0 }; 512];
    let count = entries.len().min(requests.len());
    for (request, &(entry, value)) in requests.iter_mut().zip(&entries[..count]) {
        let Some(machine) = xlate::virt_to_phys(entry).and_then(xlate::phys_to_machine) else {
            log::error!("xen-pv: {entry:#x} is no page-table entry of ours");
            return Err(entry);
        };
        *request = mmu_update {
            ptr: machine.as_u64() | u64::from(MMU_NORMAL_PT_UPDATE),
            val: value,
        };
    }
    if count == 0 {
        return Ok(());
    }
    // SAFETY: every request names an entry of a page-table page of ours
    // (translated above); Xen validates each entry and value, and refuses
    // what would break isolation.
    match unsafe { calls::mmu_update(&requests[..count]) } {
        Ok(_) => Ok(()),
        Err(batch) => {
            let failed = entries[(batch.done as usize).min(count - 1)].0;
            log::error!(
                "xen-pv: {} of {count} entries stored; {failed:#x} refused ({})",
                batch.done,
                batch.error
            );
            Err(failed)
        }
    }
}

/// Failed `HYPERVISOR_stack_switch` calls (for the test; the op has no
/// error return).
static STACK_SWITCH_ERRORS: AtomicU64 = AtomicU64::new(0);

extern "C" fn load_kernel_stack(top: u64) {
    // SAFETY: the op's contract: `top` is the top of a kernel stack that
    // lives as long as the thread it is loaded for.
    if unsafe { calls::stack_switch(u64::from(FLAT_KERNEL_SS), top) }.is_err() {
        STACK_SWITCH_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Events need no acknowledgement: the upcall clears their pending bits.
extern "C" fn eoi() {}

/// The timer op: Xen's single-shot timer (a PV guest has no other).
extern "C" fn set_timer(deadline_ns: u64) {
    clock::set_timer(deadline_ns);
}

#[unsafe(no_mangle)]
extern "C" fn sanos_xen_pv_failsafe(frame: *const u64) -> ! {
    // SAFETY: Xen's failsafe frame: RCX, R11, DS, ES, FS, GS, RIP, CS...
    let rip = unsafe { frame.add(6).read() };
    panic!("Xen failsafe callback: a segment register could not be restored (rip={rip:#x})");
}

const fn addr(function: unsafe extern "C" fn()) -> FnAddr {
    FnAddr(function as *const ())
}

fn build() -> Backend {
    use Op::*;
    let mut ops = [OpImpl::MISSING; OP_COUNT];
    ops[IrqDisable as usize] = OpImpl::inline(
        inline_form(xen_pv_irq_disable, IRQ_DISABLE_LEN),
        addr(xen_pv_irq_disable),
    );
    ops[IrqEnable as usize] = OpImpl::function(addr(xen_pv_irq_enable));
    ops[SaveFlags as usize] = OpImpl::function(addr(xen_pv_save_flags));
    ops[RestoreFlags as usize] = OpImpl::function(addr(xen_pv_restore_flags));
    ops[SafeHalt as usize] = OpImpl::function(addr(xen_pv_safe_halt));
    ops[Halt as usize] = OpImpl::function(addr(xen_pv_halt));
    ops[ReadCr3 as usize] = OpImpl::inline(
        inline_form(xen_pv_read_cr3, READ_CR3_LEN),
        addr(xen_pv_read_cr3),
    );
    ops[WriteCr3 as usize] = OpImpl::function(addr(xen_pv_write_cr3));
    ops[FlushTlbPage as usize] = OpImpl::function(addr(xen_pv_flush_tlb_page));
    ops[FlushTlbAll as usize] = OpImpl::function(addr(xen_pv_flush_tlb_all));
    ops[SetPte as usize] = OpImpl::function(addr(xen_pv_set_pte));
    ops[LoadKernelStack as usize] = OpImpl::function(FnAddr(load_kernel_stack as *const ()));
    ops[Eoi as usize] = OpImpl {
        inline: None,
        function: Some(FnAddr(eoi as *const ())),
        nop: true,
    };
    ops[ClockNs as usize] = OpImpl::function(FnAddr(clock::clock_ns as *const ()));
    ops[SetTimer as usize] = OpImpl::function(FnAddr(set_timer as *const ()));
    ops[StealNs as usize] = OpImpl::function(FnAddr(clock::steal_ns as *const ()));
    ops[ConsoleWrite as usize] = OpImpl::function(FnAddr(xencons::write as *const ()));
    ops[Shutdown as usize] = OpImpl::function(FnAddr(xen::shutdown as *const ()));
    Backend {
        id: BackendId::XenPv,
        ops,
    }
}

static BACKEND: Once<Backend> = Once::new();

/// The backend (its inline bytes are the linked address of the event
/// mask, so it is built at run time).
pub fn backend() -> &'static Backend {
    BACKEND.call_once(build)
}

/// Stops the domain with a message on the hypervisor console, for errors
/// before the kernel's console exists.
fn early_fail(message: &str) -> ! {
    // A domU's console_io may be refused, and a refused shutdown leaves
    // only the spin below: the crash still shows in `xl list` and Xen's log.
    let _ = calls::console_write(message.as_bytes());
    let _ = calls::sched_shutdown(SHUTDOWN_crash);
    loop {
        core::hint::spin_loop();
    }
}

/// The pseudo-physical frame of machine frame `mfn` (a start-info ring).
fn mfn_to_frame(mfn: u64) -> PhysFrame {
    PhysFrame::containing_address(xlate::machine_to_phys(MachineAddr::from_frame_number(mfn)))
}

/// The bootstrap page tables' root (the first of them), physical.
fn bootstrap_root(si: &start_info) -> PhysAddr {
    PhysAddr::new(si.pt_base - KERNEL_VMA)
}

/// The P2M, and how far Xen's bootstrap mapping reaches (walked: the
/// builder maps the image, its boot structures and some padding).
fn install_translation(si: &start_info) {
    let p2m = si.mfn_list as *const u64;
    let root = bootstrap_root(si);
    let pt_end = root + si.nr_pt_frames * PAGE_SIZE;
    // SAFETY: the P2M list lies in the bootstrap mapping and stays there.
    unsafe { xlate::set_xen_pv(p2m, si.nr_pages as usize, pt_end) };
    let mut early_limit = pt_end;
    while early_limit.as_u64() < si.nr_pages * PAGE_SIZE
        && early_limit < pt_end + (64 << 20)
        && crate::mm::paging::maps(root, xlate::bootstrap_map(early_limit))
    {
        early_limit += PAGE_SIZE;
    }
    // SAFETY: as above, now with the measured extent.
    unsafe { xlate::set_xen_pv(p2m, si.nr_pages as usize, early_limit) };
    set_software_cr3(root);
}

/// The software copy of CR3 that `read_cr3` returns: the machine address
/// of the root at `root` (at entry, and after a resume, when Xen restored
/// the same pseudo-physical root in another machine frame).
fn set_software_cr3(root: PhysAddr) {
    let l4 = xlate::phys_to_machine(root).map_or(0, MachineAddr::as_u64);
    // SAFETY: one aligned store to the software copy, made while nothing
    // else reads it (at entry, or with events masked).
    unsafe { (&raw mut xen_pv_cr3).write_volatile(l4) };
}

/// The console: dom0 writes through console_io, a domU to its ring,
/// mapped at a page of the image (reachable from the first line, wherever
/// the builder put it).
fn install_console(si: &start_info) {
    if si.flags & SIF_INITDOMAIN != 0 {
        xencons::set(true, 0, 0, 0);
        return;
    }
    // SAFETY: a domU's start info holds the console union member.
    let (mfn, port) = unsafe { (si.console.domU.mfn, si.console.domU.evtchn) };
    // SAFETY: the page is reserved for the ring; the frame is the
    // domain's own console frame.
    let ring = match unsafe { map_at(console_ring_address(), MachineAddr::from_frame_number(mfn)) }
    {
        Ok(()) => console_ring_address(),
        Err(_) => 0,
    };
    xencons::set(false, ring, 0, port);
}

/// Traps through Xen's trap table, events through the callback, and
/// returns through `HYPERVISOR_iret`.
fn install_traps() {
    let mut table = [trap_info::default(); 33];
    for (vector, slot) in table.iter_mut().take(32).enumerate() {
        // Bit 2: events masked on entry (an interrupt gate); DPL 3 for
        // int3/into, which the ring-3 kernel may raise itself.
        let dpl = if vector == 3 || vector == 4 { 3 } else { 0 };
        *slot = trap_info {
            vector: vector as u8,
            flags: 4 | dpl,
            cs: FLAT_KERNEL_CS as u16,
            address: traps::xen_pv_trap_stub(vector as u8),
        };
    }
    // SAFETY: a zero-terminated table (the last entry stays zero) whose
    // addresses are the trap stubs in kernel text.
    if unsafe { calls::set_trap_table(&table) }.is_err() {
        early_fail("sanos: HYPERVISOR_set_trap_table failed; stopping\n");
    }
    // SAFETY: both addresses are entry points in kernel text that take
    // Xen's event and failsafe frames.
    let callbacks = unsafe {
        calls::set_callbacks(
            traps::xen_pv_event_entry_address(),
            xen_pv_failsafe as *const () as u64,
        )
    };
    if callbacks.is_err() {
        early_fail("sanos: HYPERVISOR_set_callbacks failed; stopping\n");
    }
    // SAFETY: the page's iret entry, which `xen_pv_iret` jumps to with the
    // frame Xen expects.
    unsafe { traps::set_trap_return(xen_pv_iret as *const () as u64) };
}

/// The PV entry's first call: hypercalls, the vmops table, shared_info,
/// the trap table and callbacks, the console; the layout of memory for
/// `boot`. `info` is the start info's virtual address, `stack` the stack
/// pointer Xen entered with.
pub fn early(info: u64, stack: u64) -> XenPvStart {
    // SAFETY: the image carries XEN_ELFNOTE_HYPERCALL_PAGE for this page,
    // and we were entered by the PV domain builder.
    unsafe { hypercall::mark_filled() };
    crate::vmops::fill_table(backend());
    START_INFO.store(info, Ordering::Release);
    let si = start_info();
    if !si
        .magic
        .starts_with(&b"xen-3.0-x86_64".map(|b| b as core::ffi::c_char))
    {
        early_fail("sanos: Xen PV start info has a bad magic; stopping\n");
    }
    install_translation(si);
    install_console(si);
    // SAFETY: the page is reserved for shared_info; Xen checks that the
    // frame is this domain's shared_info.
    // The start info gives shared_info's machine address.
    if unsafe { map_at(shared_info_address(), MachineAddr::new(si.shared_info)) }.is_err() {
        early_fail("sanos: cannot map Xen's shared_info page; stopping\n");
    }
    events::set_shared_info(shared_info_address());
    install_traps();
    let shared = shared_info_address() as *const shared_info;
    if let Some(hz) = clock::tsc_hz(shared) {
        crate::time::set_tsc_hz(hz, crate::time::TscSource::XenPvclock);
    }
    let dom0 = si.flags & SIF_INITDOMAIN != 0;
    XenPvStart {
        nr_pages: si.nr_pages,
        start_info: info,
        pt_base: si.pt_base,
        nr_pt_frames: si.nr_pt_frames,
        mfn_list: si.mfn_list,
        store_pfn: (!dom0 && si.store_mfn != 0).then(|| mfn_to_frame(si.store_mfn).pfn()),
        console_pfn: (!dom0).then(|| {
            // SAFETY: the union member a domU's start info holds (dom0's is
            // not read).
            mfn_to_frame(unsafe { si.console.domU.mfn }).pfn()
        }),
        stack,
        mod_start: si.mod_start,
        mod_len: si.mod_len,
        mod_start_is_pfn: si.flags & SIF_MOD_START_PFN != 0,
    }
}

/// The pseudo-physical frames of the page tables the domain builder made.
fn bootstrap_tables() -> PhysFrameRange {
    let si = start_info();
    let first = PhysFrame::containing_address(bootstrap_root(si));
    PhysFrame::range(first, first + si.nr_pt_frames)
}

/// Once memory is up: events (the callback was registered at entry) and
/// Xen time, before the scheduler arms its first timer (a PV guest has no
/// other timer).
fn start_interrupts(_boot: &BootInfo<'_>) {
    events::mask_all_ports();
    traps::set_handler(events::VECTOR_XEN_UPCALL, events::upcall);
    events::set_running();
    if let Err(error) = clock::start(|| {}) {
        log::error!("xen: no Xen time ({error}): no timer interrupts");
    }
}

/// The xenstore ring (in this guest's RAM, reached through the direct map)
/// and its event channel, from the start info.
fn store() -> Result<(u64, u32), XenError> {
    let si = start_info();
    if si.store_mfn == 0 {
        return Ok((0, 0));
    }
    let ring = xlate::phys_to_virt(mfn_to_frame(si.store_mfn).start_address());
    Ok((ring.as_u64(), si.store_evtchn))
}

/// How many table frames a PV guest maps (more than one ever needed here).
const MAX_GRANT_FRAMES: usize = 4;

/// Xen lists the grant table's machine frames (it does not translate a PV
/// guest's physical space); map them one after another.
fn map_grant_frames(frames: u32) -> Result<*mut grant_entry_v1, grant::GrantError> {
    let (list, frames) = grant_table_frames(frames)?;
    let mut first = VirtAddr::zero();
    for (i, &mfn) in list[..frames].iter().enumerate() {
        let frame = MachineAddr::from_frame_number(mfn);
        let virt = crate::mm::paging::map_machine_frame(frame).map_err(|error| {
            log::error!("xen: grant frame {mfn:#x}: {error:?}");
            grant::GrantError::Unavailable
        })?;
        if i == 0 {
            first = virt;
        } else if virt != first + i as u64 * PAGE_SIZE {
            log::error!("xen: grant frames not mapped contiguously");
            return Err(grant::GrantError::Unavailable);
        }
    }
    Ok(first.as_mut_ptr())
}

/// The grant table's machine frames Xen lists (`GNTTABOP_setup_table`),
/// at most [`MAX_GRANT_FRAMES`] of them, and how many.
fn grant_table_frames(
    frames: u32,
) -> Result<([xen_pfn_t; MAX_GRANT_FRAMES], usize), grant::GrantError> {
    let frames = (frames as usize).min(MAX_GRANT_FRAMES);
    let mut list = [0 as xen_pfn_t; MAX_GRANT_FRAMES];
    calls::gnttab_setup_table(&mut list[..frames]).map_err(grant::GrantError::Table)?;
    Ok((list, frames))
}

/// Before a suspend: the grant-table frames (Xen's) unmapped.
fn release_grant_frames(entries: *mut grant_entry_v1, frames: u32) {
    for i in 0..frames.min(MAX_GRANT_FRAMES as u32) {
        let virt = VirtAddr::from_ptr(entries) + u64::from(i) * PAGE_SIZE;
        // Failing leaves a mapping the save refuses ("bad mfn"), which
        // cancels the suspend: the domain runs on.
        let _ = crate::mm::paging::remap_machine_frame(virt, None);
    }
}

/// After a resume: the table's frames (new ones in a new domain) mapped at
/// the same addresses.
fn remap_grant_frames(entries: *mut grant_entry_v1, frames: u32) -> Result<(), grant::GrantError> {
    let (list, frames) = grant_table_frames(frames)?;
    for (i, &mfn) in list[..frames].iter().enumerate() {
        let virt = VirtAddr::from_ptr(entries) + i as u64 * PAGE_SIZE;
        crate::mm::paging::remap_machine_frame(virt, Some(MachineAddr::from_frame_number(mfn)))
            .map_err(|_| grant::GrantError::Unavailable)?;
    }
    Ok(())
}

/// The toolstack saves a PV guest's memory by walking its P2M through
/// `pfn_to_mfn_frame_list_list` in shared_info: a page of the machine
/// frames of the frame-list pages, which hold the machine frames of the
/// P2M's own pages (`arch_shared_info`, `xen/include/public/arch-x86/
/// xen.h`). Kept valid from boot on, rebuilt after a resume (every
/// machine frame changes in a new domain).
struct P2mFrameList {
    /// The top page, and the frame-list pages.
    top: PhysFrame,
    lists: alloc::vec::Vec<PhysFrame>,
}

static P2M_FRAME_LIST: spin::Mutex<Option<P2mFrameList>> = spin::Mutex::new(None);

fn machine_frame_of(phys: PhysAddr) -> Option<u64> {
    xlate::phys_to_machine(phys).map(MachineAddr::frame_number)
}

/// The machine frame behind a direct-map or image address.
fn machine_frame_at(virt: VirtAddr) -> Option<u64> {
    xlate::virt_to_phys(virt).and_then(machine_frame_of)
}

/// Fills the frame lists from the P2M and publishes them in shared_info.
fn publish_p2m(list: &P2mFrameList) -> Result<(), &'static str> {
    let si = start_info();
    let (p2m_pages, _) = p2m::frame_list_pages(si.nr_pages).ok_or("too many pages")?;
    for page in 0..p2m_pages {
        let virt = VirtAddr::new(si.mfn_list + page * PAGE_SIZE);
        let mfn = machine_frame_at(virt).ok_or("a P2M page without a machine frame")?;
        let (list_page, slot) = p2m::frame_list_slot(page);
        let holder = *list
            .lists
            .get(list_page)
            .ok_or("a frame-list page missing")?;
        let slot = xlate::phys_to_virt(holder.start_address()) + slot as u64 * 8;
        // SAFETY: a slot of a frame-list page this module allocated and
        // alone writes.
        unsafe { slot.as_mut_ptr::<u64>().write_volatile(mfn) };
    }
    let top = xlate::phys_to_virt(list.top.start_address());
    for (i, holder) in list.lists.iter().enumerate() {
        let mfn = machine_frame_of(holder.start_address())
            .ok_or("a frame list without a machine frame")?;
        // SAFETY: a slot of the top page, which this module alone writes.
        unsafe { (top + i as u64 * 8).as_mut_ptr::<u64>().write_volatile(mfn) };
    }
    let top_mfn = machine_frame_of(list.top.start_address())
        .ok_or("the frame-list page has no machine frame")?;
    let shared = shared_info_address() as *mut shared_info;
    // SAFETY: shared_info is mapped at its image page; the arch part is
    // the guest's to write and the toolstack's to read.
    unsafe {
        (&raw mut (*shared).arch.max_pfn).write_volatile(si.nr_pages);
        (&raw mut (*shared).arch.pfn_to_mfn_frame_list_list).write_volatile(top_mfn);
    }
    Ok(())
}

/// Allocates the frame lists and publishes them (once memory is up).
fn start_p2m_frame_list() {
    let si = start_info();
    let Some((_, list_pages)) = p2m::frame_list_pages(si.nr_pages) else {
        log::error!(
            "xen-pv: {} pages are too many for one frame-list page; the domain cannot be saved",
            si.nr_pages
        );
        return;
    };
    let mut frames = alloc::vec::Vec::new();
    for _ in 0..=list_pages {
        match crate::mm::frames::alloc() {
            Some(frame) => frames.push(frame),
            None => {
                log::error!("xen-pv: no memory for the P2M frame list; the domain cannot be saved");
                return;
            }
        }
    }
    let top = frames.remove(0);
    let list = P2mFrameList { top, lists: frames };
    match publish_p2m(&list) {
        Ok(()) => *P2M_FRAME_LIST.lock() = Some(list),
        Err(why) => log::error!("xen-pv: P2M frame list: {why}; the domain cannot be saved"),
    }
}

fn start_info_mut() -> *mut start_info {
    START_INFO.load(Ordering::Acquire) as *mut start_info
}

/// Before the suspend (events masked): the start info's store and console
/// frames made pseudo-physical (the toolstack makes them machine frames
/// of the new domain), and shared_info, Xen's frame, replaced by the image
/// page's own frame, with events marked masked (the inline `irq_disable`
/// stores keep landing there). Returns the start info's machine frame,
/// the third argument of `SHUTDOWN_suspend`.
fn prepare_suspend() -> Result<u64, &'static str> {
    let si = start_info_mut();
    let info_mfn =
        machine_frame_at(VirtAddr::new(si as u64)).ok_or("the start info has no machine frame")?;
    let own = xlate::virt_to_phys(VirtAddr::new(shared_info_address()))
        .and_then(xlate::phys_to_machine)
        .ok_or("the shared_info page has no frame of its own")?;
    let to_pfn = |mfn: u64| mfn_to_frame(mfn).pfn();
    // SAFETY: map_at's page is the one reserved for shared_info; the
    // start info lies in the bootstrap mapping, and only this vCPU, with
    // events masked, touches it now. Nothing is changed if the first step
    // fails.
    unsafe {
        map_at(shared_info_address(), own).map_err(|_| "shared_info not unmapped")?;
        (*si).store_mfn = to_pfn((*si).store_mfn);
        (*si).console.domU.mfn = to_pfn((*si).console.domU.mfn);
    }
    event_mask().store(1, Ordering::Release);
    Ok(info_mfn)
}

/// After the resume (events masked): shared_info mapped again (a new
/// frame in a new domain, whose start info the toolstack rewrote; in the
/// same domain the store and console frames are turned back), the
/// software CR3 and the P2M frame list made of the new machine frames.
fn restore_after_suspend(resumed: calls::Resumed) -> Result<(), &'static str> {
    let si = start_info_mut();
    let to_mfn = |pfn: u64| machine_frame_of(PhysAddr::new(pfn * PAGE_SIZE)).unwrap_or(0);
    // SAFETY: as in prepare_suspend; the frame is this domain's
    // shared_info (Xen checks).
    unsafe {
        if resumed == calls::Resumed::Cancelled {
            (*si).store_mfn = to_mfn((*si).store_mfn);
            (*si).console.domU.mfn = to_mfn((*si).console.domU.mfn);
        }
        map_at(shared_info_address(), MachineAddr::new((*si).shared_info))
            .map_err(|_| "shared_info not mapped again")?;
    }
    set_software_cr3(bootstrap_root(start_info()));
    match P2M_FRAME_LIST.lock().as_ref() {
        Some(list) => publish_p2m(list),
        None => Err("no P2M frame list: the next save will fail"),
    }
}

/// The store's and the console's event channels, from the start info.
fn ports() -> Result<(u32, u32), XenError> {
    let si = start_info();
    // SAFETY: a domU's start info holds the console union member.
    Ok((si.store_evtchn, unsafe { si.console.domU.evtchn }))
}

static PARTS: xen::GuestParts = xen::GuestParts {
    store,
    map_grant_frames,
    suspend: xen::SuspendParts {
        prepare: prepare_suspend,
        restore: restore_after_suspend,
        release_grant_frames,
        remap_grant_frames,
        ports,
    },
};

fn after_threads() {
    if start_info().flags & SIF_INITDOMAIN == 0 {
        start_p2m_frame_list();
    }
    xen::start_bus(&PARTS);
}

fn no_cpu_tables() {}

static VALIDATED: ValidatedPaging = ValidatedPaging {
    bootstrap_tables,
    set_ptes,
    is_hypervisor_page,
};

pub static HOOKS: Hooks = Hooks {
    id: BackendId::XenPv,
    deprivileged: true,
    paging: Paging::Validated(&VALIDATED),
    cpuid,
    init_cpu: no_cpu_tables,
    fill_memory_map: native::nothing_to_fill,
    shared_page: native::no_shared_page,
    start_interrupts,
    after_threads,
    wallclock: crate::xen::clock::wallclock_ns,
    mask_raw,
    unmask_raw,
    user: &XEN_PV_USER,
};

/// Programs under Xen PV: the kernel and user code both run in ring 3,
/// kept apart by two top-level tables: the kernel's, and a user table
/// whose lower half is the kernel table's (user memory) and whose upper
/// half has no kernel mappings. Xen switches between them on every entry
/// and exit; `syscall` from user mode comes through the callback.
static XEN_PV_USER: super::UserPlatform = super::UserPlatform {
    init: user_init,
    code_segment: FLAT_USER_CS64 as u16,
    data_segment: FLAT_USER_SS as u16,
    set_fs_base: |base| {
        if calls::set_segment_base(SEGBASE_FS, base).is_err() {
            log::error!("xen-pv: set_segment_base(FS, {base:#x}) refused");
        }
    },
    keeps_inaccessible_pages: false,
    mirror_top_entry,
};

/// The user-mode top-level table (its direct-map address; 0 until made).
static USER_ROOT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn user_init() -> Result<&'static str, &'static str> {
    use core::sync::atomic::Ordering;
    const DONE: &str = "Xen PV: separate user page table";
    if USER_ROOT.load(Ordering::Acquire) != 0 {
        return Ok(DONE);
    }
    let root =
        crate::mm::paging::new_table_page().map_err(|_| "no frame for the user page table")?;
    let root_virt = crate::mm::xlate::phys_to_virt(root).as_u64();
    USER_ROOT.store(root_virt, Ordering::Release);
    // The user half as the kernel table has it now; later entries are
    // mirrored as they are made.
    for (index, value) in crate::mm::paging::user_half_top_entries() {
        mirror_top_entry(index, value);
    }
    let mfn = crate::mm::xlate::phys_to_machine(root)
        .ok_or("the user page table has no machine frame")?
        .as_u64()
        >> 12;
    // SAFETY: a table page of the guest's, read-only in every mapping
    // (`new_table_page`), holding only the kernel table's user half.
    unsafe { calls::mmuext_pin_l4(mfn) }.map_err(|_| "Xen refused to pin the user page table")?;
    // SAFETY: just pinned; it maps user memory only.
    unsafe { calls::mmuext_new_user_baseptr(mfn) }
        .map_err(|_| "Xen refused the user page table")?;
    // SAFETY: the three entry points are kernel text taking Xen's frames.
    let registered = unsafe {
        calls::set_callbacks_with_syscall(
            traps::xen_pv_event_entry_address(),
            xen_pv_failsafe as *const () as u64,
            traps::xen_pv_syscall_entry_address(),
        )
    };
    registered.map_err(|_| "Xen refused the syscall callback")?;
    Ok(DONE)
}

fn mirror_top_entry(index: usize, value: u64) {
    let root = USER_ROOT.load(core::sync::atomic::Ordering::Acquire);
    if root == 0 || index >= 256 {
        return;
    }
    // SAFETY: the entry lies in the user table page; the set_pte op is
    // Xen's mmu_update here, which validates the value.
    unsafe { crate::vmops::ops::set_pte((root + index as u64 * 8) as *mut u64, value) };
}

mod tests {
    use super::*;
    use crate::kassert_eq;
    use crate::ktest::{ktest, TestResult};

    #[ktest]
    fn pv_irq_disable_inline_form_addresses_the_event_mask() -> TestResult {
        let backend = backend();
        let inline = backend.get(Op::IrqDisable).inline.unwrap_or(&[]);
        kassert_eq!(inline.len(), IRQ_DISABLE_LEN);
        // mov byte ptr [disp32], imm8: C6 04 25 disp32 imm8.
        kassert_eq!(&inline[..3], &[0xc6, 0x04, 0x25]);
        let disp = i32::from_le_bytes([inline[3], inline[4], inline[5], inline[6]]);
        kassert_eq!(disp as i64 as u64, shared_info_address() + 1);
        kassert_eq!(inline[7], 1);
        Ok(())
    }

    #[ktest]
    fn pv_inline_thunks_are_their_inline_forms() -> TestResult {
        // mov rax, [disp32]: 48 8B 04 25 disp32, the software CR3.
        let cr3 = inline_form(xen_pv_read_cr3, READ_CR3_LEN);
        kassert_eq!(&cr3[..4], &[0x48, 0x8b, 0x04, 0x25]);
        let disp = i32::from_le_bytes([cr3[4], cr3[5], cr3[6], cr3[7]]);
        kassert_eq!(disp as i64 as u64, (&raw const xen_pv_cr3) as u64);
        for (thunk, len) in [
            (
                xen_pv_irq_disable as unsafe extern "C" fn(),
                IRQ_DISABLE_LEN,
            ),
            (xen_pv_read_cr3, READ_CR3_LEN),
        ] {
            kassert_eq!(inline_form(thunk, len + 1)[len], 0xc3);
        }
        Ok(())
    }

    #[ktest]
    fn pv_kernel_stack_switch_is_accepted() -> TestResult {
        if crate::backend::id() != BackendId::XenPv {
            return crate::ktest::not_applicable("not a Xen PV guest");
        }
        let stack = crate::mm::KernelStack::new(1);
        let Some(stack) = stack else {
            return crate::ktest::not_applicable("no memory for a stack");
        };
        let before = STACK_SWITCH_ERRORS.load(Ordering::Relaxed);
        crate::vmops::ops::load_kernel_stack(stack.top().as_u64());
        kassert_eq!(STACK_SWITCH_ERRORS.load(Ordering::Relaxed), before);
        Ok(())
    }

    #[ktest]
    fn pv_event_mask_is_the_interrupt_flag() -> TestResult {
        if crate::backend::id() != BackendId::XenPv {
            return crate::ktest::not_applicable("not a Xen PV guest");
        }
        let was = crate::vmops::ops::save_flags();
        crate::vmops::ops::irq_disable();
        kassert_eq!(event_mask().load(Ordering::Relaxed), 1);
        crate::vmops::ops::irq_enable();
        kassert_eq!(event_mask().load(Ordering::Relaxed), 0);
        crate::vmops::ops::restore_flags(was);
        Ok(())
    }
}
