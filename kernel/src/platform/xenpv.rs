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
//!   event arrived meanwhile, makes a hypercall so Xen delivers it;
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
//!   timer on `VIRQ_TIMER` (shared with the PVH backend, `xen.rs`).
//!
//! [`early`] runs first in `kernel_entry`, before any vmops site: until it
//! fills the table, every site would call the native functions, whose
//! `cli` faults in ring 3.

use super::{xen, VMOPS_TABLE};
use crate::arch::layout::KERNEL_VMA;
use crate::arch::traps;
use crate::mm::xlate;
use core::sync::atomic::{AtomicU64, Ordering};
use hv::xen::bindings::*;
use hv::xen::hypercall::{self, XenError};
use sanos_kernel::bootinfo::XenPvStart;
use spin::Once;
use vmops::{Backend, FnAddr, Op, OpImpl, OP_COUNT};

// The shared_info page, the kernel stubs for the callee-saves ops, and
// the failsafe callback.
core::arch::global_asm!(
    ".section .bss.xen_pv_shared_info, \"aw\", @nobits",
    ".balign 4096",
    ".global xen_pv_shared_info",
    "xen_pv_shared_info:",
    ".skip 4096",
    // The console ring (domU), mapped here so it is reachable from the
    // first line, wherever the builder put it.
    ".global xen_pv_console_ring",
    "xen_pv_console_ring:",
    ".skip 4096",
    ".section .data.xen_pv_cr3, \"aw\"",
    ".balign 8",
    ".global xen_pv_cr3",
    "xen_pv_cr3:",
    ".quad 0",
    ".section .text.xen_pv_ops, \"ax\"",
    // The hypercall argument registers, which the callee-saves thunks
    // below must give back (a debug Xen clobbers them).
    ".macro XEN_PV_SAVE_ARGS",
    "push rdi",
    "push rsi",
    "push rdx",
    "push r10",
    "push r8",
    ".endm",
    ".macro XEN_PV_RESTORE_ARGS",
    "pop r8",
    "pop r10",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    ".endm",
    // vcpu_info[0] sits at offset 0 of shared_info: evtchn_upcall_pending
    // at byte 0, evtchn_upcall_mask at byte 1 (the layout tests in hv).
    // The first instruction is the inline form (8 bytes, absolute
    // sign-extended address: the image is linked in the top 2 GiB).
    ".balign 16",
    ".global xen_pv_irq_disable",
    "xen_pv_irq_disable:",
    "mov byte ptr [xen_pv_shared_info + 1], 1",
    "ret",
    ".balign 16",
    ".global xen_pv_irq_enable",
    "xen_pv_irq_enable:",
    "mov byte ptr [xen_pv_shared_info + 1], 0",
    "cmp byte ptr [xen_pv_shared_info], 0",
    "jne xen_pv_force_upcall",
    "ret",
    // Any hypercall returns through Xen's pending-event check:
    // xen_version(XENVER_version, NULL) is the cheapest.
    "xen_pv_force_upcall:",
    "XEN_PV_SAVE_ARGS",
    "xor edi, edi",
    "xor esi, esi",
    "call hv_xen_hypercall_page + {xen_version} * 32",
    "XEN_PV_RESTORE_ARGS",
    "ret",
    ".balign 16",
    ".global xen_pv_save_flags",
    "xen_pv_save_flags:",
    "movzx eax, byte ptr [xen_pv_shared_info + 1]",
    "xor eax, 1",
    "shl eax, 9",
    "ret",
    ".balign 16",
    ".global xen_pv_restore_flags",
    "xen_pv_restore_flags:",
    "test edi, 0x200",
    "jnz xen_pv_irq_enable",
    "mov byte ptr [xen_pv_shared_info + 1], 1",
    "ret",
    // SCHEDOP_block: unmask events and sleep until one is pending; Xen
    // delivers it as the hypercall returns.
    ".balign 16",
    ".global xen_pv_safe_halt",
    "xen_pv_safe_halt:",
    "XEN_PV_SAVE_ARGS",
    "mov edi, {block}",
    "xor esi, esi",
    "call hv_xen_hypercall_page + {sched_op} * 32",
    "XEN_PV_RESTORE_ARGS",
    "ret",
    // Halt with events as they are: masked, SCHEDOP_poll on no port with
    // no timeout sleeps for good (what a halt with interrupts off does);
    // unmasked, block.
    ".balign 16",
    ".global xen_pv_halt",
    "xen_pv_halt:",
    "cmp byte ptr [xen_pv_shared_info + 1], 0",
    "je xen_pv_safe_halt",
    "XEN_PV_SAVE_ARGS",
    "sub rsp, 24",
    "mov qword ptr [rsp], 0",
    "mov qword ptr [rsp + 8], 0",
    "mov qword ptr [rsp + 16], 0",
    "mov edi, {poll}",
    "mov rsi, rsp",
    "call hv_xen_hypercall_page + {sched_op} * 32",
    "add rsp, 24",
    "XEN_PV_RESTORE_ARGS",
    "ret",
    ".balign 16",
    ".global xen_pv_read_cr3",
    "xen_pv_read_cr3:",
    // Absolute (sign-extended disp32), not RIP-relative: the inline form.
    "mov rax, qword ptr [xen_pv_cr3]",
    "ret",
    // Callee-saves wrappers around C-ABI functions.
    ".macro XEN_PV_SAVING name, target",
    ".balign 16",
    ".global \\name",
    "\\name:",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push rbp",
    "mov rbp, rsp",
    "and rsp, -16",
    "call \\target",
    "mov rsp, rbp",
    "pop rbp",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "ret",
    ".endm",
    "XEN_PV_SAVING xen_pv_write_cr3, {write_cr3}",
    "XEN_PV_SAVING xen_pv_flush_tlb_page, {flush_page}",
    "XEN_PV_SAVING xen_pv_flush_tlb_all, {flush_all}",
    "XEN_PV_SAVING xen_pv_set_pte, {set_pte}",
    // HYPERVISOR_iret: the CPU's frame (RIP, CS, RFLAGS, RSP, SS) is on
    // the stack; push the flags word (0: not a syscall return) and jump to
    // the page's iret entry, which pushes RCX, R11 and RAX and enters Xen.
    ".balign 16",
    ".global xen_pv_iret",
    "xen_pv_iret:",
    "push 0",
    "jmp hv_xen_hypercall_page + {iret} * 32",
    // The failsafe callback: Xen could not load a segment register on the
    // way back to the guest. Frame: RCX, R11, DS, ES, FS, GS, RIP...
    ".balign 16",
    ".global xen_pv_failsafe",
    "xen_pv_failsafe:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {failsafe}",
    "ud2",
    xen_version = const __HYPERVISOR_xen_version,
    sched_op = const __HYPERVISOR_sched_op,
    block = const SCHEDOP_block,
    poll = const SCHEDOP_poll,
    iret = const __HYPERVISOR_iret,
    write_cr3 = sym write_cr3,
    flush_page = sym flush_tlb_page,
    flush_all = sym flush_tlb_all,
    set_pte = sym set_pte,
    failsafe = sym failsafe,
);

unsafe extern "C" {
    static xen_pv_shared_info: u8;
    static xen_pv_console_ring: u8;
    static mut xen_pv_cr3: u64;
    fn xen_pv_irq_disable();
    fn xen_pv_irq_enable();
    fn xen_pv_save_flags();
    fn xen_pv_restore_flags();
    fn xen_pv_safe_halt();
    fn xen_pv_halt();
    fn xen_pv_read_cr3();
    fn xen_pv_write_cr3();
    fn xen_pv_flush_tlb_page();
    fn xen_pv_flush_tlb_all();
    fn xen_pv_set_pte();
    fn xen_pv_iret();
    fn xen_pv_failsafe();
}

/// Length of `xen_pv_irq_disable`'s store and of `xen_pv_read_cr3`'s load:
/// their inline forms (each thunk is that instruction and `ret`).
const IRQ_DISABLE_LEN: usize = 8;
const READ_CR3_LEN: usize = 8;

/// The first `len` bytes of a thunk: its inline form.
fn inline_form(thunk: unsafe extern "C" fn(), len: usize) -> &'static [u8] {
    // SAFETY: the thunks named here begin with a `len`-byte instruction
    // (the asm above), in kernel text, which is never freed.
    unsafe { core::slice::from_raw_parts(thunk as *const u8, len) }
}

fn shared_info_address() -> u64 {
    (&raw const xen_pv_shared_info) as u64
}

/// Whether `virt` is one of the kernel-image pages that map Xen's pages
/// (shared_info, the console ring) instead of the image's own frames.
pub fn is_shared_info(virt: u64) -> bool {
    virt & !0xfff == shared_info_address() || virt & !0xfff == console_ring_address()
}

fn console_ring_address() -> u64 {
    (&raw const xen_pv_console_ring) as u64
}

/// Maps machine frame `machine` (page-aligned) at the kernel-image page
/// `virt`, read-write, not executable.
///
/// # Safety
/// `virt` must be a page of the image reserved for this mapping.
unsafe fn map_at(virt: u64, machine: u64) -> Result<u64, XenError> {
    let nx = if crate::arch::cpu::cpuid(0x8000_0001).edx & (1 << 20) != 0 {
        1 << 63
    } else {
        0
    };
    // SAFETY: the caller reserves the page; Xen checks that the frame may
    // be mapped by this domain.
    unsafe {
        hypercall::call(
            __HYPERVISOR_update_va_mapping,
            virt,
            machine | 0b11 | nx,
            UVMF_INVLPG,
            0,
            0,
        )
    }
}

fn event_mask() -> &'static core::sync::atomic::AtomicU8 {
    // SAFETY: byte 1 of the mapped shared_info is vCPU 0's
    // evtchn_upcall_mask, which only this vCPU writes (Xen reads it).
    unsafe { core::sync::atomic::AtomicU8::from_ptr((shared_info_address() + 1) as *mut u8) }
}

/// Masks events without a vmops site (for the patcher); returns the old
/// mask for [`restore_events`].
pub fn mask_events() -> u8 {
    event_mask().swap(1, Ordering::AcqRel)
}

/// Restores the mask [`mask_events`] returned, delivering what arrived
/// meanwhile.
pub fn restore_events(was: u8) {
    event_mask().store(was, Ordering::Release);
    // SAFETY: byte 0 of shared_info is vCPU 0's evtchn_upcall_pending.
    let pending = unsafe { (shared_info_address() as *const u8).read_volatile() };
    if was == 0 && pending != 0 {
        // SAFETY: xen_version(XENVER_version, NULL) reads nothing; its
        // return to the guest delivers the pending upcall.
        let _ = unsafe { hypercall::call(__HYPERVISOR_xen_version, 0, 0, 0, 0, 0) };
    }
}

/// The start info, as the PV entry found it (virtual address).
static START_INFO: AtomicU64 = AtomicU64::new(0);

fn start_info() -> &'static start_info {
    // SAFETY: set once by `early` to the start info Xen passed in RSI, which
    // lies in the bootstrap mapping the kernel keeps; nothing writes it.
    unsafe { &*(START_INFO.load(Ordering::Acquire) as *const start_info) }
}

fn mmuext(cmd: u32, arg: u64) -> Result<u64, XenError> {
    let mut op = mmuext_op {
        cmd,
        arg1: mmuext_op__bindgen_ty_1 { mfn: arg },
        arg2: mmuext_op__bindgen_ty_2 { nr_ents: 0 },
    };
    // SAFETY: one mmuext_op on this stack; `arg` is the op's frame or
    // address as the caller's op wants.
    unsafe {
        hypercall::call(
            __HYPERVISOR_mmuext_op,
            (&raw mut op) as u64,
            1,
            0,
            u64::from(DOMID_SELF),
            0,
        )
    }
}

extern "C" fn write_cr3(machine: u64) {
    match mmuext(MMUEXT_NEW_BASEPTR, machine >> 12) {
        // SAFETY: the software copy read_cr3 returns; one aligned store.
        Ok(_) => unsafe { (&raw mut xen_pv_cr3).write_volatile(machine) },
        Err(error) => log::error!("xen-pv: new base {machine:#x} refused: {error}"),
    }
}

extern "C" fn flush_tlb_page(address: u64) {
    if let Err(error) = mmuext(MMUEXT_INVLPG_LOCAL, address) {
        log::error!("xen-pv: invlpg {address:#x}: {error}");
    }
}

extern "C" fn flush_tlb_all() {
    if let Err(error) = mmuext(MMUEXT_TLB_FLUSH_LOCAL, 0) {
        log::error!("xen-pv: TLB flush: {error}");
    }
}

/// Stores page-table entry `value` (machine address and flags) at the
/// entry `entry` points at, through `HYPERVISOR_mmu_update`.
extern "C" fn set_pte(entry: u64, value: u64) {
    let Some(machine) = xlate::virt_to_phys(entry).and_then(xlate::phys_to_machine) else {
        log::error!("xen-pv: set_pte on {entry:#x}, which is no page-table page of ours");
        return;
    };
    let mut update = mmu_update {
        ptr: machine | u64::from(MMU_NORMAL_PT_UPDATE),
        val: value,
    };
    // SAFETY: one mmu_update request on this stack; Xen validates the entry
    // and the new value, and refuses what would break isolation.
    let result = unsafe {
        hypercall::call(
            __HYPERVISOR_mmu_update,
            (&raw mut update) as u64,
            1,
            0,
            u64::from(DOMID_SELF),
            0,
        )
    };
    if let Err(error) = result {
        log::error!("xen-pv: entry {entry:#x} <- {value:#x} refused: {error}");
    }
}

/// Failed `HYPERVISOR_stack_switch` calls (for the test; the op has no
/// error return).
static STACK_SWITCH_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Stores many page-table entries (entry address, value) in one
/// `HYPERVISOR_mmu_update` (at most 512: one leaf table). On a refusal,
/// returns the address of the first entry Xen did not take.
pub fn set_ptes(entries: &[(u64, u64)]) -> Result<(), u64> {
    let mut requests = [mmu_update { ptr: 0, val: 0 }; 512];
    let count = entries.len().min(requests.len());
    for (request, &(entry, value)) in requests.iter_mut().zip(&entries[..count]) {
        let machine = xlate::virt_to_phys(entry)
            .and_then(xlate::phys_to_machine)
            .ok_or(entry)?;
        *request = mmu_update {
            ptr: machine | u64::from(MMU_NORMAL_PT_UPDATE),
            val: value,
        };
    }
    if count == 0 {
        return Ok(());
    }
    let mut done = 0u32;
    // SAFETY: `count` requests and the done counter on this stack; Xen
    // validates every entry and value.
    let result = unsafe {
        hypercall::call(
            __HYPERVISOR_mmu_update,
            requests.as_mut_ptr() as u64,
            count as u64,
            (&raw mut done) as u64,
            u64::from(DOMID_SELF),
            0,
        )
    };
    match result {
        Ok(_) if done as usize == count => Ok(()),
        Ok(_) | Err(_) => {
            let failed = entries[(done as usize).min(count - 1)].0;
            log::error!(
                "xen-pv: {done} of {count} entries stored; {failed:#x} refused ({result:?})"
            );
            Err(failed)
        }
    }
}

extern "C" fn load_kernel_stack(top: u64) {
    // SAFETY: HYPERVISOR_stack_switch takes the stack segment and pointer
    // Xen switches to on entry from user mode; no memory is passed.
    let result = unsafe {
        hypercall::call(
            __HYPERVISOR_stack_switch,
            u64::from(FLAT_KERNEL_SS),
            top,
            0,
            0,
            0,
        )
    };
    if result.is_err() {
        STACK_SWITCH_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Events need no acknowledgement: the upcall clears their pending bits.
extern "C" fn eoi() {}

extern "C" fn failsafe(frame: *const u64) -> ! {
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
    ops[ClockNs as usize] = OpImpl::function(FnAddr(xen::clock_ns as *const ()));
    ops[SetTimer as usize] = OpImpl::function(FnAddr(xen::set_timer as *const ()));
    ops[StealNs as usize] = OpImpl::function(FnAddr(xen::steal_ns as *const ()));
    ops[ConsoleWrite as usize] = OpImpl::function(FnAddr(xen::console_write as *const ()));
    ops[Shutdown as usize] = OpImpl::function(FnAddr(xen::shutdown as *const ()));
    Backend {
        name: "xen-pv",
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
    // SAFETY: CONSOLEIO_write reads `len` bytes at the pointer; SCHEDOP_
    // shutdown reads one sched_shutdown. (A domU's console_io may be
    // refused; the crash still shows in `xl list` and Xen's log.)
    unsafe {
        let _ = hypercall::call(
            __HYPERVISOR_console_io,
            u64::from(CONSOLEIO_write),
            message.len() as u64,
            message.as_ptr() as u64,
            0,
            0,
        );
        let mut arg = sched_shutdown {
            reason: SHUTDOWN_crash,
        };
        let _ = hypercall::call(
            __HYPERVISOR_sched_op,
            u64::from(SCHEDOP_shutdown),
            (&raw mut arg) as u64,
            0,
            0,
            0,
        );
    }
    loop {
        core::hint::spin_loop();
    }
}

/// Reads a bootstrap page-table entry chain: whether `virt` is mapped by
/// the tables Xen built (reached through Xen's own mapping of them).
fn bootstrap_mapped(virt: u64) -> bool {
    let mut table = start_info().pt_base;
    for level in (1..=4u32).rev() {
        let index = (virt >> (12 + 9 * (level - 1))) & 0x1ff;
        // SAFETY: `table` is a bootstrap page-table page, which the builder
        // maps (read-only) in the bootstrap region at KERNEL_VMA + phys.
        let entry = unsafe { ((table + index * 8) as *const u64).read_volatile() };
        if entry & 1 == 0 {
            return false;
        }
        if level == 1 || entry & 0x80 != 0 {
            return true;
        }
        let phys = xlate::machine_to_phys(entry & 0x000f_ffff_ffff_f000);
        table = KERNEL_VMA + phys;
    }
    false
}

/// The pseudo-physical frame of machine frame `mfn` (a start-info ring).
fn mfn_to_pfn(mfn: u64) -> u64 {
    xlate::machine_to_phys(mfn << 12) >> 12
}

/// The PV entry's first call: hypercalls, the vmops table, shared_info,
/// the trap table and callbacks, the console; the layout of memory for
/// `boot`. `info` is the start info's virtual address, `stack` the stack
/// pointer Xen entered with.
pub fn early(info: u64, stack: u64) -> XenPvStart {
    // SAFETY: the image carries XEN_ELFNOTE_HYPERCALL_PAGE for this page,
    // and we were entered by the PV domain builder.
    unsafe { hypercall::mark_filled() };
    let backend = backend();
    for op in Op::ALL {
        if let Some(function) = backend.get(op).function {
            VMOPS_TABLE.set(op, function.0);
        }
    }
    START_INFO.store(info, Ordering::Release);
    let si = start_info();
    if !si
        .magic
        .starts_with(&b"xen-3.0-x86_64".map(|b| b as core::ffi::c_char))
    {
        early_fail("sanos: Xen PV start info has a bad magic; stopping\n");
    }
    let dom0 = si.flags & SIF_INITDOMAIN != 0;
    // Page tables: the P2M (before any machine frame is translated), and
    // how far Xen's bootstrap mapping reaches.
    let pt_end = si.pt_base - KERNEL_VMA + si.nr_pt_frames * 4096;
    let mut early_limit = pt_end;
    // SAFETY: the P2M list lies in the bootstrap mapping and stays there.
    unsafe { xlate::set_xen_pv(si.mfn_list as *const u64, si.nr_pages as usize, pt_end) };
    let layout = XenPvStart {
        nr_pages: si.nr_pages,
        start_info: info,
        pt_base: si.pt_base,
        nr_pt_frames: si.nr_pt_frames,
        mfn_list: si.mfn_list,
        store_pfn: (!dom0 && si.store_mfn != 0).then(|| mfn_to_pfn(si.store_mfn)),
        console_pfn: (!dom0).then(|| {
            // SAFETY: the union member a domU's start info holds (dom0's is
            // not read).
            mfn_to_pfn(unsafe { si.console.domU.mfn })
        }),
        stack,
        mod_start: si.mod_start,
        mod_len: si.mod_len,
        mod_start_is_pfn: si.flags & SIF_MOD_START_PFN != 0,
    };

    while early_limit < si.nr_pages * 4096
        && early_limit < pt_end + (64 << 20)
        && bootstrap_mapped(KERNEL_VMA + early_limit)
    {
        early_limit += 4096;
    }
    // SAFETY: as above, now with the measured extent.
    unsafe { xlate::set_xen_pv(si.mfn_list as *const u64, si.nr_pages as usize, early_limit) };
    let l4 = xlate::phys_to_machine(si.pt_base - KERNEL_VMA).unwrap_or(0);
    // SAFETY: the software copy of the page-table base; one aligned store,
    // before anything reads it.
    unsafe { (&raw mut xen_pv_cr3).write_volatile(l4) };

    // The console: dom0 writes through console_io, a domU to its ring,
    // mapped at a page of the image.
    if !dom0 {
        // SAFETY: a domU's start info holds the console union member; the
        // page is reserved for the ring.
        let (mfn, port) = unsafe { (si.console.domU.mfn, si.console.domU.evtchn) };
        // SAFETY: the reserved page, and the domain's own console frame.
        let ring = match unsafe { map_at(console_ring_address(), mfn << 12) } {
            Ok(_) => console_ring_address(),
            Err(_) => 0,
        };
        xen::set_console(false, ring, port);
    } else {
        xen::set_console(true, 0, 0);
    }

    // shared_info over the reserved page of the image.
    // SAFETY: the page is reserved for shared_info; Xen checks that the
    // frame is this domain's shared_info.
    if unsafe { map_at(shared_info_address(), si.shared_info) }.is_err() {
        early_fail("sanos: cannot map Xen's shared_info page; stopping\n");
    }
    xen::set_shared_info(shared_info_address());

    // Traps and events.
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
    // SAFETY: a zero-terminated trap_info array on this stack (Xen copies
    // it), and three callback addresses in kernel text.
    unsafe {
        if hypercall::call(
            __HYPERVISOR_set_trap_table,
            table.as_ptr() as u64,
            0,
            0,
            0,
            0,
        )
        .is_err()
        {
            early_fail("sanos: HYPERVISOR_set_trap_table failed; stopping\n");
        }
        if hypercall::call(
            __HYPERVISOR_set_callbacks,
            traps::xen_pv_event_entry_address(),
            xen_pv_failsafe as *const () as u64,
            0,
            0,
            0,
        )
        .is_err()
        {
            early_fail("sanos: HYPERVISOR_set_callbacks failed; stopping\n");
        }
        traps::set_trap_return(xen_pv_iret as *const () as u64);
    }

    // The TSC rate from vCPU 0's time info: ns = (tsc << shift) * mul >> 32.
    // SAFETY: shared_info is mapped just above; a torn read only skews the
    // logged rate, and the clock itself uses the version protocol.
    let (mul, shift) = unsafe {
        let time = &raw const (*(shared_info_address() as *const shared_info)).vcpu_info[0].time;
        (
            (&raw const (*time).tsc_to_system_mul).read_volatile(),
            (&raw const (*time).tsc_shift).read_volatile(),
        )
    };
    if mul != 0 {
        let mut hz = (1_000_000_000u128 << 32) / u128::from(mul);
        if shift >= 0 {
            hz >>= shift;
        } else {
            hz <<= -shift;
        }
        crate::time::set_tsc_hz(hz as u64, crate::time::TscSource::XenPvclock);
    }
    layout
}

/// The pseudo-physical frames of the page tables the domain builder made.
pub fn bootstrap_tables() -> impl Iterator<Item = u64> {
    let si = start_info();
    let first = si.pt_base - KERNEL_VMA;
    (0..si.nr_pt_frames).map(move |i| first + i * 4096)
}

/// Once memory is up: events and Xen time (before the scheduler).
pub fn after_memory() {
    xen::start_events_pv();
}

/// The xenstore ring (virtual address, through the direct map) and its
/// event channel, from the start info (domU).
pub fn store() -> (u64, u32) {
    let si = start_info();
    if si.store_mfn == 0 {
        return (0, 0);
    }
    (
        xlate::phys_to_virt(mfn_to_pfn(si.store_mfn) << 12),
        si.store_evtchn,
    )
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
        if !xlate::is_xen_pv() {
            return crate::ktest::not_applicable("not a Xen PV guest");
        }
        let stack = crate::mm::KernelStack::new(1);
        let Some(stack) = stack else {
            return crate::ktest::not_applicable("no memory for a stack");
        };
        let before = STACK_SWITCH_ERRORS.load(Ordering::Relaxed);
        crate::platform::ops::load_kernel_stack(stack.top());
        kassert_eq!(STACK_SWITCH_ERRORS.load(Ordering::Relaxed), before);
        Ok(())
    }

    #[ktest]
    fn pv_event_mask_is_the_interrupt_flag() -> TestResult {
        if !xlate::is_xen_pv() {
            return crate::ktest::not_applicable("not a Xen PV guest");
        }
        let was = crate::platform::ops::save_flags();
        crate::platform::ops::irq_disable();
        kassert_eq!(event_mask().load(Ordering::Relaxed), 1);
        crate::platform::ops::irq_enable();
        kassert_eq!(event_mask().load(Ordering::Relaxed), 0);
        crate::platform::ops::restore_flags(was);
        Ok(())
    }
}
