//! The native implementations of the instruction-level vmops: the bytes a
//! patched site holds on bare hardware (and under KVM, whose interrupt and
//! page-table operations are the native ones), and the same instructions as
//! out-of-line thunks, which the vmops table points at when sites are not
//! patched (`vmops=off`, and before patching).
//!
//! Every thunk follows the callee-saves convention of these ops (argument
//! in RDI, second in RSI, result in RAX, nothing else changed), and its
//! body is exactly the inline form followed by `ret` — a kernel test checks
//! that byte for byte. Instruction encodings: Intel SDM Vol. 2.

/// `cli`
pub const IRQ_DISABLE: &[u8] = &[0xfa];
/// `sti`
pub const IRQ_ENABLE: &[u8] = &[0xfb];
/// `pushfq; pop rax`
pub const SAVE_FLAGS: &[u8] = &[0x9c, 0x58];
/// `push rdi; popfq`
pub const RESTORE_FLAGS: &[u8] = &[0x57, 0x9d];
/// `sti; hlt`: the `sti` shadow covers the `hlt`, so an interrupt cannot
/// slip in between and be missed.
pub const SAFE_HALT: &[u8] = &[0xfb, 0xf4];
/// `hlt`
pub const HALT: &[u8] = &[0xf4];
/// `mov rax, cr3`
pub const READ_CR3: &[u8] = &[0x0f, 0x20, 0xd8];
/// `mov cr3, rdi`
pub const WRITE_CR3: &[u8] = &[0x0f, 0x22, 0xdf];
/// `invlpg [rdi]`
pub const FLUSH_TLB_PAGE: &[u8] = &[0x0f, 0x01, 0x3f];
/// `mov [rdi], rsi`
pub const SET_PTE: &[u8] = &[0x48, 0x89, 0x37];

unsafe extern "C" {
    pub fn hv_native_irq_disable();
    pub fn hv_native_irq_enable();
    pub fn hv_native_save_flags();
    pub fn hv_native_restore_flags();
    pub fn hv_native_safe_halt();
    pub fn hv_native_halt();
    pub fn hv_native_read_cr3();
    pub fn hv_native_write_cr3();
    pub fn hv_native_flush_tlb_page();
    pub fn hv_native_set_pte();
    /// Flushes every TLB entry, global ones included, by toggling CR4.PGE
    /// (SDM Vol. 3A 4.10.4.1). No inline form: too long for a site.
    pub fn hv_native_flush_tlb_all();
    /// Benchmark reference: `iterations` (RDI) rounds of the raw
    /// `pushfq; pop rax; cli; push rax; popfq` sequence, the inline form of
    /// save-flags / disable / restore-flags. Clobbers RAX and RDI.
    pub fn hv_native_bench_irq_sequence(iterations: u64);
    /// Benchmark reference: `iterations` (RDI) raw `rdtsc`s. Clobbers RAX,
    /// RDX and RDI.
    pub fn hv_native_bench_rdtsc(iterations: u64);
}

// The thunks. Only on the kernel target: the host build (tests) has no use
// for them and must not define global symbols with these names.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.hv_native, \"ax\"",
    ".balign 16",
    ".global hv_native_irq_disable",
    "hv_native_irq_disable:",
    "cli",
    "ret",
    ".balign 16",
    ".global hv_native_irq_enable",
    "hv_native_irq_enable:",
    "sti",
    "ret",
    ".balign 16",
    ".global hv_native_save_flags",
    "hv_native_save_flags:",
    "pushfq",
    "pop rax",
    "ret",
    ".balign 16",
    ".global hv_native_restore_flags",
    "hv_native_restore_flags:",
    "push rdi",
    "popfq",
    "ret",
    ".balign 16",
    ".global hv_native_safe_halt",
    "hv_native_safe_halt:",
    "sti",
    "hlt",
    "ret",
    ".balign 16",
    ".global hv_native_halt",
    "hv_native_halt:",
    "hlt",
    "ret",
    ".balign 16",
    ".global hv_native_read_cr3",
    "hv_native_read_cr3:",
    "mov rax, cr3",
    "ret",
    ".balign 16",
    ".global hv_native_write_cr3",
    "hv_native_write_cr3:",
    "mov cr3, rdi",
    "ret",
    ".balign 16",
    ".global hv_native_flush_tlb_page",
    "hv_native_flush_tlb_page:",
    "invlpg [rdi]",
    "ret",
    ".balign 16",
    ".global hv_native_set_pte",
    "hv_native_set_pte:",
    "mov [rdi], rsi",
    "ret",
    ".balign 16",
    ".global hv_native_flush_tlb_all",
    "hv_native_flush_tlb_all:",
    "mov rax, cr4",
    "xor rax, 0x80",
    "mov cr4, rax",
    "xor rax, 0x80",
    "mov cr4, rax",
    "ret",
    ".balign 16",
    ".global hv_native_bench_irq_sequence",
    "hv_native_bench_irq_sequence:",
    "2:",
    "pushfq",
    "pop rax",
    "cli",
    "push rax",
    "popfq",
    "dec rdi",
    "jnz 2b",
    "ret",
    ".balign 16",
    ".global hv_native_bench_rdtsc",
    "hv_native_bench_rdtsc:",
    "2:",
    "rdtsc",
    "dec rdi",
    "jnz 2b",
    "ret",
);
