//! The kernel's GDT and TSS (Intel SDM Vol. 3A 3.4.5, 7.7).
//!
//! Long mode ignores segment bases and limits for code and data, so the GDT
//! holds a 64-bit kernel code segment, a data segment for SS, the user
//! data and code segments (in the order SYSCALL/SYSRET require: kernel
//! code, kernel data, user data, user code; `STAR` in `user::entry`), and
//! the TSS,
//! whose interrupt stack table gives the double-fault handler a stack of its
//! own: a double fault from a kernel stack overflow cannot push its frame on
//! the stack that overflowed.

use core::cell::UnsafeCell;
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based in hardware, 0-based here) of the double-fault stack.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

/// The segment selectors, fixed by the order the GDT is built in.
pub const KERNEL_CODE: u16 = 0x08;
pub const KERNEL_DATA: u16 = 0x10;
/// With RPL 3, as user mode loads them.
pub const USER_DATA: u16 = 0x18 | 3;
pub const USER_CODE: u16 = 0x20 | 3;

/// The TSS: the CPU reads it (IST, RSP0) and `set_kernel_stack` writes
/// RSP0, so it lives in an `UnsafeCell` and is handed to the GDT by
/// pointer.
struct TssCell(UnsafeCell<TaskStateSegment>);

// SAFETY: one CPU; RSP0 is written only by `set_kernel_stack`, with a
// volatile store, and the CPU reads it only on a privilege change.
unsafe impl Sync for TssCell {}

static TSS: TssCell = TssCell(UnsafeCell::new(TaskStateSegment::new()));
static TSS_INIT: Once<()> = Once::new();
static TABLES: Once<Tables> = Once::new();

unsafe extern "C" {
    /// Top of the double-fault stack, from the boot assembly.
    static df_stack_top: u8;
}

/// Builds and loads the GDT and TSS and reloads the segment registers.
pub fn init() {
    TSS_INIT.call_once(|| {
        // SAFETY: before the TSS is loaded nothing else reads or writes it.
        unsafe {
            (*TSS.0.get()).interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] =
                VirtAddr::from_ptr(&raw const df_stack_top);
        }
    });
    let tables = TABLES.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        assert_eq!(
            [code.0, data.0, user_data.0, user_code.0],
            [KERNEL_CODE, KERNEL_DATA, USER_DATA, USER_CODE]
        );
        // SAFETY: the TSS is a static that lives as long as the GDT.
        let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(TSS.0.get()) });
        Tables {
            gdt,
            code,
            data,
            tss,
        }
    });
    tables.gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which lives in a
    // static for the rest of the kernel's life; the TSS descriptor is
    // loaded once on this CPU (a busy TSS cannot be loaded again).
    unsafe {
        CS::set_reg(tables.code);
        SS::set_reg(tables.data);
        DS::set_reg(tables.data);
        ES::set_reg(tables.data);
        load_tss(tables.tss);
    }
}

/// Sets the stack the CPU switches to on an interrupt from user mode
/// (TSS.RSP0): the native `load_kernel_stack` op.
pub fn set_kernel_stack(top: u64) {
    // SAFETY: a volatile store to the TSS's RSP0 field, which only this
    // function writes; the CPU reads it only on a privilege change.
    unsafe {
        (&raw mut (*TSS.0.get()).privilege_stack_table[0]).write_volatile(VirtAddr::new(top))
    };
}

mod tests {
    use super::*;
    use crate::kassert_eq;
    use crate::ktest::{ktest, TestResult};

    #[ktest]
    fn kernel_stack_op_sets_tss_rsp0() -> TestResult {
        if crate::backend::id() == crate::backend::BackendId::XenPv {
            return crate::ktest::not_applicable(
                "no TSS under Xen PV: the op is HYPERVISOR_stack_switch (xenpv's test)",
            );
        }
        let top = 0xffff_fe00_0001_0000;
        crate::vmops::ops::load_kernel_stack(top);
        // SAFETY: a read of the TSS field the op just wrote.
        let rsp0 = unsafe { (&raw const (*TSS.0.get()).privilege_stack_table[0]).read_volatile() };
        kassert_eq!(rsp0.as_u64(), top);
        Ok(())
    }
}
