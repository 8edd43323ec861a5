//! The Xen PV backend's assembly (`xen/include/public/xen.h`,
//! `arch-x86/xen-x86_64.h`), beside the native thunks of [`crate::native`]:
//! the pages of the image where the kernel maps Xen's shared_info and the
//! console ring, the software CR3, the callee-saves thunks of the interrupt
//! and halt ops (vCPU 0's event mask in shared_info is the interrupt
//! flag), `HYPERVISOR_iret`, the failsafe callback, and CPUID through Xen's
//! forced-emulation prefix.
//!
//! The page-table ops and the failsafe callback end in the kernel: the
//! thunks save every register and call `sanos_xen_pv_write_cr3`,
//! `sanos_xen_pv_flush_tlb_page`, `sanos_xen_pv_flush_tlb_all`,
//! `sanos_xen_pv_set_pte` and `sanos_xen_pv_failsafe`, which the kernel's
//! Xen PV backend defines (C ABI, unmangled).

#[cfg(target_os = "none")]
use crate::xen::bindings::*;

/// Length of `xen_pv_irq_disable`'s store and of `xen_pv_read_cr3`'s load:
/// their inline forms (each thunk is that instruction and `ret`).
pub const IRQ_DISABLE_LEN: usize = 8;
pub const READ_CR3_LEN: usize = 8;

#[cfg(target_os = "none")]
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
    "XEN_PV_SAVING xen_pv_write_cr3, sanos_xen_pv_write_cr3",
    "XEN_PV_SAVING xen_pv_flush_tlb_page, sanos_xen_pv_flush_tlb_page",
    "XEN_PV_SAVING xen_pv_flush_tlb_all, sanos_xen_pv_flush_tlb_all",
    "XEN_PV_SAVING xen_pv_set_pte, sanos_xen_pv_set_pte",
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
    "call sanos_xen_pv_failsafe",
    "ud2",
    xen_version = const __HYPERVISOR_xen_version,
    sched_op = const __HYPERVISOR_sched_op,
    block = const SCHEDOP_block,
    poll = const SCHEDOP_poll,
    iret = const __HYPERVISOR_iret,
);

#[cfg(target_os = "none")]
unsafe extern "C" {
    pub static xen_pv_shared_info: u8;
    pub static xen_pv_console_ring: u8;
    pub static mut xen_pv_cr3: u64;
    pub fn xen_pv_irq_disable();
    pub fn xen_pv_irq_enable();
    pub fn xen_pv_save_flags();
    pub fn xen_pv_restore_flags();
    pub fn xen_pv_safe_halt();
    pub fn xen_pv_halt();
    pub fn xen_pv_read_cr3();
    pub fn xen_pv_write_cr3();
    pub fn xen_pv_flush_tlb_page();
    pub fn xen_pv_flush_tlb_all();
    pub fn xen_pv_set_pte();
    pub fn xen_pv_iret();
    pub fn xen_pv_failsafe();
}

/// CPUID leaf `leaf`, subleaf `subleaf`, through Xen's forced-emulation prefix
/// (`ud2; .ascii "xen"; cpuid`, `xen/include/public/arch-x86/xen.h`), so a
/// PV guest sees Xen's leaves and its own policy instead of the raw CPU.
#[cfg(target_os = "none")]
pub fn cpuid(leaf: u32, subleaf: u32) -> core::arch::x86_64::CpuidResult {
    let (eax, ebx, ecx, edx): (u32, u64, u32, u32);
    // SAFETY: Xen's #UD handler recognises the prefix and emulates the
    // CPUID that follows; RBX (reserved by LLVM) is saved around it.
    unsafe {
        core::arch::asm!(
            "mov {rbx_save}, rbx",
            "ud2",
            ".ascii \"xen\"",
            "cpuid",
            "xchg {rbx_save}, rbx",
            rbx_save = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nostack),
        )
    };
    core::arch::x86_64::CpuidResult {
        eax,
        ebx: ebx as u32,
        ecx,
        edx,
    }
}
