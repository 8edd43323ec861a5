//! The pure logic of the sanos kernel: everything here is free of hardware
//! access, so it builds for the host and `cargo test` exercises it there.
//! The kernel binary (`main.rs`) links it and supplies the machine.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

extern crate alloc;

pub mod acpi;
pub mod bootinfo;
pub mod civil;
pub mod cmdline;
pub mod frames;
pub mod memmap;
pub mod schedq;
