//! Everything that is x86_64-specific: CPU tables, traps, interrupt
//! controllers and timers, the firmware's ACPI tables, the memory layout,
//! and the small `unsafe` wrappers over privileged instructions. Outside
//! `arch`, the entry code (`boot::entry`), the backends and the crates
//! `hv` and `vmops`, the kernel does not touch the machine directly.

pub mod acpi;
pub mod apic;
pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod layout;
pub mod pit;
pub mod rtc;
pub mod traps;
