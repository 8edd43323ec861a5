//! The kernel's first instructions: the multiboot2 header, the PVH ELF note,
//! the 32-bit entry points they name, and the switch to long mode.
//!
//! Both protocols enter in 32-bit protected mode with paging off and
//! interrupts disabled (PVH: `xen/include/public/arch-x86/hvm/start_info.h`;
//! Multiboot2 spec 3.3 "I386 machine state"), with the boot-information
//! pointer in `%ebx`. The code runs at its physical address, so every
//! absolute reference subtracts `KERNEL_VMA` (the kernel is linked in the
//! top 2 GiB). It builds temporary page tables that map:
//!
//! - the first 4 GiB of physical memory at 0 (identity, for the jump into
//!   64-bit code) and at `PHYS_MAP_BASE` (the direct map, so Rust can read
//!   boot structures before it builds its own tables);
//! - the first 2 GiB of physical memory at `KERNEL_VMA`.
//!
//! then enters 64-bit mode, moves to the linked (high) addresses, clears
//! `.bss`, and calls [`crate::kernel_entry`] with the protocol, the
//! boot-information pointer and the TSC read by the first instruction.
//!
//! This is entry code that runs before vmops exists: its `cli` and `hlt` are
//! the raw instructions on purpose.

use crate::arch::layout::{KERNEL_VMA, PHYS_MAP_BASE};
use crate::mm::PAGE_SIZE;
use hv::pvh::XEN_ELFNOTE_PHYS32_ENTRY;
use hv::xen::bindings as xb;

/// The boot protocol the entry code saw, passed to `kernel_entry`.
pub const PROTOCOL_UNKNOWN: u32 = 0;
pub const PROTOCOL_PVH: u32 = 1;
pub const PROTOCOL_MULTIBOOT2: u32 = 2;
pub const PROTOCOL_XEN_PV: u32 = 3;

/// Multiboot2 spec 3.1.1 and 3.2: header magic, and what the loader leaves in
/// `%eax`.
const MULTIBOOT2_HEADER_MAGIC: u32 = 0xE852_50D6;
const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36D7_6289;

/// Size of the boot stack, the stack `kernel_main` runs on.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;
/// Size of the double-fault stack (IST1).
pub const DF_STACK_SIZE: usize = 16 * 1024;

core::arch::global_asm!(
    // ---- Multiboot2 header (spec 3.1): magic, arch 0 (i386), length,
    // checksum; an entry-address tag; the end tag.
    ".section .multiboot2, \"a\"",
    ".balign 8",
    "multiboot2_header:",
    ".long {mb2_magic}",
    ".long 0",
    ".long multiboot2_header_end - multiboot2_header",
    ".long 0x100000000 - ({mb2_magic} + (multiboot2_header_end - multiboot2_header))",
    ".balign 8",
    ".short 3, 0",
    ".long 12",
    ".long multiboot2_entry32 - {kvma}",
    ".balign 8",
    ".short 0, 0",
    ".long 8",
    "multiboot2_header_end:",
    // ---- PVH entry note (elfnote.h: XEN_ELFNOTE_PHYS32_ENTRY). QEMU reads
    // the descriptor of a 64-bit ELF as 8 bytes, as Linux emits it.
    ".section .note.Xen, \"a\"",
    ".balign 4",
    ".long 4",
    ".long 8",
    ".long {phys32_entry}",
    ".asciz \"Xen\"",
    ".balign 4",
    ".quad pvh_entry32 - {kvma}",
    ".balign 4",
    // ---- Xen PV notes (xen/include/public/elfnote.h), read by Xen's
    // domain builders for `type="pv"` and a PV dom0: load the segments at
    // VIRT_BASE + p_paddr (PADDR_OFFSET 0), fill the hypercall page, and
    // enter 64-bit `xen_pv_entry` with the start info in RSI.
    ".macro XEN_NOTE_STR type, text",
    ".balign 4",
    ".long 4",
    ".long 2f - 1f",
    ".long \\type",
    ".asciz \"Xen\"",
    ".balign 4",
    "1: .asciz \"\\text\"",
    "2: .balign 4",
    ".endm",
    ".macro XEN_NOTE_QUAD type, value",
    ".balign 4",
    ".long 4",
    ".long 8",
    ".long \\type",
    ".asciz \"Xen\"",
    ".balign 4",
    ".quad \\value",
    ".balign 4",
    ".endm",
    "XEN_NOTE_STR {note_guest_os}, sanos",
    concat!(
        "XEN_NOTE_STR {note_guest_version}, ",
        env!("CARGO_PKG_VERSION")
    ),
    "XEN_NOTE_STR {note_xen_version}, xen-3.0",
    "XEN_NOTE_STR {note_loader}, generic",
    "XEN_NOTE_STR {note_pae_mode}, yes",
    "XEN_NOTE_STR {note_features}, pae_pgdir_above_4gb",
    "XEN_NOTE_QUAD {note_entry}, xen_pv_entry",
    "XEN_NOTE_QUAD {note_virt_base}, {kvma}",
    "XEN_NOTE_QUAD {note_paddr_offset}, 0",
    "XEN_NOTE_QUAD {note_hypercall_page}, hv_xen_hypercall_page",
    ".balign 4",
    ".long 4",
    ".long 4",
    ".long {note_suspend_cancel}",
    ".asciz \"Xen\"",
    ".balign 4",
    ".long 1",
    ".balign 4",
    ".long 4",
    ".long 4",
    ".long {note_supported_features}",
    ".asciz \"Xen\"",
    ".balign 4",
    ".long 1 << {feat_dom0}",
    // ---- The Xen PV entry: 64-bit, paging on with the builder's tables,
    // the kernel at its link address, events masked, ring 3, RSI = start
    // info, RSP = the builder's boot stack. The builder zero-fills .bss.
    ".section .text.xen_pv_entry, \"ax\"",
    ".code64",
    ".global xen_pv_entry",
    "xen_pv_entry:",
    "mov r12, rsi",
    "mov r13, rsp",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov qword ptr [rip + boot_tsc], rax",
    "lea rsp, [rip + boot_stack_top]",
    "mov edi, {proto_xen_pv}",
    "mov rsi, r12",
    "mov rdx, rax",
    "mov rcx, r13",
    "xor ebp, ebp",
    "call {kernel_entry}",
    "ud2",
    // ---- 32-bit entry points.
    ".section .boot.text, \"ax\"",
    ".code32",
    ".global pvh_entry32",
    "pvh_entry32:",
    "rdtsc",
    "mov edi, {proto_pvh}",
    "mov esi, ebx",
    "jmp 2f",
    ".global multiboot2_entry32",
    "multiboot2_entry32:",
    "mov ecx, eax",
    "rdtsc",
    "mov edi, {proto_mb2}",
    "mov esi, ebx",
    "cmp ecx, {mb2_loader_magic}",
    "je 2f",
    "mov edi, {proto_unknown}",
    "2:",
    // Raw `cli`: entry code, before vmops exists (see the module doc).
    "cli",
    "mov dword ptr [boot_tsc - {kvma}], eax",
    "mov dword ptr [boot_tsc - {kvma} + 4], edx",
    "mov ebp, edi",
    "lgdt [boot_gdt_ptr32 - {kvma}]",
    "mov eax, 0x10",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "xor eax, eax",
    "mov fs, eax",
    "mov gs, eax",
    // Long mode: CPUID.80000001h:EDX[29]. CPUID clobbers %ebx, already saved.
    "mov eax, 0x80000000",
    "cpuid",
    "cmp eax, 0x80000001",
    "jb 90f",
    "mov eax, 0x80000001",
    "cpuid",
    "test edx, 0x20000000",
    "jz 90f",
    // Clear .bss.boot: the page tables below rely on zeroed memory, and not
    // every loader promises to clear NOLOAD space.
    "mov edi, offset __boot_bss_start - {kvma}",
    "mov ecx, offset __boot_bss_end - {kvma}",
    "sub ecx, edi",
    "shr ecx, 2",
    "xor eax, eax",
    "rep stosd",
    "mov esp, offset boot_stack_top - {kvma}",
    // Page directories: 2048 entries of 2 MiB, present | writable | huge,
    // covering physical 0..4 GiB.
    "mov edi, offset boot_pd - {kvma}",
    "mov eax, 0x83",
    "mov ecx, 2048",
    "3:",
    "mov dword ptr [edi], eax",
    "add eax, 0x200000",
    "add edi, 8",
    "dec ecx",
    "jnz 3b",
    // Low PDPT: four directories, 0..4 GiB.
    "mov edi, offset boot_pdpt_low - {kvma}",
    "mov eax, offset boot_pd - {kvma} + 3",
    "mov dword ptr [edi], eax",
    "add eax, {page}",
    "mov dword ptr [edi + 8], eax",
    "add eax, {page}",
    "mov dword ptr [edi + 16], eax",
    "add eax, {page}",
    "mov dword ptr [edi + 24], eax",
    // High PDPT: entries 510 and 511 map physical 0..2 GiB at KERNEL_VMA.
    "mov edi, offset boot_pdpt_high - {kvma}",
    "mov eax, offset boot_pd - {kvma} + 3",
    "mov dword ptr [edi + 510 * 8], eax",
    "add eax, {page}",
    "mov dword ptr [edi + 511 * 8], eax",
    // PML4: identity, the direct map, the kernel.
    "mov edi, offset boot_pml4 - {kvma}",
    "mov eax, offset boot_pdpt_low - {kvma} + 3",
    "mov dword ptr [edi], eax",
    "mov dword ptr [edi + {physmap_slot} * 8], eax",
    "mov eax, offset boot_pdpt_high - {kvma} + 3",
    "mov dword ptr [edi + 511 * 8], eax",
    // CR4.PAE, CR3, EFER.LME, then CR0.PG | WP | PE.
    "mov eax, cr4",
    "or eax, 0x20",
    "mov cr4, eax",
    "mov eax, offset boot_pml4 - {kvma}",
    "mov cr3, eax",
    "mov ecx, 0xC0000080",
    "rdmsr",
    "or eax, 0x100",
    "wrmsr",
    "mov eax, cr0",
    "or eax, 0x80010001",
    "mov cr0, eax",
    "mov edi, ebp",
    // Far return into the 64-bit code segment (selector 0x08).
    "mov eax, 0x08",
    "push eax",
    "mov eax, offset boot_entry64 - {kvma}",
    "push eax",
    "retf",
    // No long mode: say so on COM1 and stop.
    "90:",
    "mov esi, offset boot_no_long_mode_msg - {kvma}",
    "mov dx, 0x3f8",
    "91:",
    "lodsb",
    "test al, al",
    "jz 92f",
    "out dx, al",
    "jmp 91b",
    "92:",
    // Raw `hlt`: entry code, before vmops exists (see the module doc).
    "hlt",
    "jmp 92b",
    // ---- 64-bit, still at the physical address.
    ".code64",
    "boot_entry64:",
    "mov eax, 0x10",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "movabs rax, offset boot_entry64_high",
    "jmp rax",
    "boot_entry64_high:",
    "lea rsp, [rip + boot_stack_top]",
    "lgdt [rip + boot_gdt_ptr64]",
    "mov r12d, edi",
    "mov r13d, esi",
    "lea rdi, [rip + __bss_start]",
    "lea rcx, [rip + __bss_end]",
    "sub rcx, rdi",
    "shr rcx, 3",
    "xor eax, eax",
    "rep stosq",
    "mov edi, r12d",
    "mov esi, r13d",
    "mov rdx, qword ptr [rip + boot_tsc]",
    "xor ecx, ecx",
    "xor ebp, ebp",
    "call {kernel_entry}",
    "ud2",
    // ---- Boot data.
    ".section .rodata.boot, \"a\"",
    ".balign 16",
    "boot_gdt:",
    ".quad 0",
    ".quad 0x00AF9A000000FFFF", // 0x08: 64-bit code, DPL 0
    ".quad 0x00CF92000000FFFF", // 0x10: flat data
    "boot_gdt_end:",
    ".balign 8",
    "boot_gdt_ptr32:",
    ".short boot_gdt_end - boot_gdt - 1",
    ".long boot_gdt - {kvma}",
    ".balign 8",
    "boot_gdt_ptr64:",
    ".short boot_gdt_end - boot_gdt - 1",
    ".quad boot_gdt",
    "boot_no_long_mode_msg:",
    ".asciz \"sanos: this CPU has no 64-bit long mode; stopping.\\r\\n\"",
    ".section .data.boot, \"aw\"",
    ".balign 8",
    ".global boot_tsc",
    "boot_tsc:",
    ".quad 0",
    // Guard pages stay unmapped in the kernel's page tables (mm::paging), so
    // running off either stack faults instead of corrupting what lies below.
    ".section .bss.boot, \"aw\", @nobits",
    ".balign {page}",
    ".global boot_stack_guard",
    "boot_stack_guard:",
    ".skip {page}",
    ".global boot_stack_bottom",
    "boot_stack_bottom:",
    ".skip {boot_stack_size}",
    ".global boot_stack_top",
    "boot_stack_top:",
    ".global df_stack_guard",
    "df_stack_guard:",
    ".skip {page}",
    ".global df_stack_bottom",
    "df_stack_bottom:",
    ".skip {df_stack_size}",
    ".global df_stack_top",
    "df_stack_top:",
    "boot_pml4:",
    ".skip {page}",
    "boot_pdpt_low:",
    ".skip {page}",
    "boot_pdpt_high:",
    ".skip {page}",
    "boot_pd:",
    ".skip 4 * {page}",
    kvma = const KERNEL_VMA,
    physmap_slot = const (PHYS_MAP_BASE >> 39) & 0x1ff,
    mb2_magic = const MULTIBOOT2_HEADER_MAGIC,
    mb2_loader_magic = const MULTIBOOT2_BOOTLOADER_MAGIC,
    phys32_entry = const XEN_ELFNOTE_PHYS32_ENTRY,
    proto_unknown = const PROTOCOL_UNKNOWN,
    proto_pvh = const PROTOCOL_PVH,
    proto_mb2 = const PROTOCOL_MULTIBOOT2,
    proto_xen_pv = const PROTOCOL_XEN_PV,
    note_guest_os = const xb::XEN_ELFNOTE_GUEST_OS,
    note_guest_version = const xb::XEN_ELFNOTE_GUEST_VERSION,
    note_xen_version = const xb::XEN_ELFNOTE_XEN_VERSION,
    note_loader = const xb::XEN_ELFNOTE_LOADER,
    note_pae_mode = const xb::XEN_ELFNOTE_PAE_MODE,
    note_features = const xb::XEN_ELFNOTE_FEATURES,
    note_entry = const xb::XEN_ELFNOTE_ENTRY,
    note_virt_base = const xb::XEN_ELFNOTE_VIRT_BASE,
    note_paddr_offset = const xb::XEN_ELFNOTE_PADDR_OFFSET,
    note_hypercall_page = const xb::XEN_ELFNOTE_HYPERCALL_PAGE,
    note_suspend_cancel = const xb::XEN_ELFNOTE_SUSPEND_CANCEL,
    note_supported_features = const xb::XEN_ELFNOTE_SUPPORTED_FEATURES,
    feat_dom0 = const xb::XENFEAT_dom0,
    page = const PAGE_SIZE,
    boot_stack_size = const BOOT_STACK_SIZE,
    df_stack_size = const DF_STACK_SIZE,
    kernel_entry = sym crate::kernel_entry,
);
