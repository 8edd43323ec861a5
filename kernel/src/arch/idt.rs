//! The interrupt descriptor table (Intel SDM Vol. 3A 6.14.1): 256 interrupt
//! gates, each pointing at an entry stub from [`crate::arch::traps`].
//!
//! Gates are interrupt gates (IF cleared on entry), DPL 0. The double fault
//! runs on its own IST stack so that a kernel stack overflow is reported
//! instead of escalating to a triple fault.

use crate::arch::gdt::DOUBLE_FAULT_IST_INDEX;
use crate::arch::traps::{trap_stub_address, VECTOR_DOUBLE_FAULT};
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS};
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// One 16-byte long-mode gate descriptor.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, DPL 0, type 0xE (64-bit interrupt gate).
const INTERRUPT_GATE: u8 = 0x8E;

impl Gate {
    fn new(handler: u64, selector: u16, ist_slot: Option<u16>) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            // The IST field is 1-based: 0 means "no IST switch".
            ist: ist_slot.map_or(0, |slot| slot as u8 + 1),
            type_attributes: INTERRUPT_GATE,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Builds and loads the IDT. Call after the GDT (the gates name its code
/// selector).
pub fn init() {
    let selector = CS::get_reg().0;
    let idt = IDT.call_once(|| {
        let mut gates = [Gate::default(); 256];
        for (vector, gate) in gates.iter_mut().enumerate() {
            let ist = (vector == VECTOR_DOUBLE_FAULT as usize).then_some(DOUBLE_FAULT_IST_INDEX);
            *gate = Gate::new(trap_stub_address(vector as u8), selector, ist);
        }
        Idt(gates)
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the table lives in a static for the rest of the kernel's life
    // and every gate points at a stub that saves state and dispatches.
    unsafe { lidt(&pointer) };
}

const _: () = assert!(core::mem::size_of::<Gate>() == 16);
