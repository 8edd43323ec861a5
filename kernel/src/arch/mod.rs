//! Everything that is x86_64-specific: entry, CPU tables, interrupts and
//! timers, and the small `unsafe` wrappers over privileged instructions.
//! Code outside `arch` (and, later, `hv`/`vmops`) does not touch the machine
//! directly.

pub mod acpi;
pub mod apic;
pub mod boot;
pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod layout;
pub mod pit;
pub mod traps;
