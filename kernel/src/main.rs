//! The sanos kernel.
//!
//! Start-up order (`boot::kernel_entry`; each step may log, the console
//! works from the first): the Xen PV backend if entered as a PV guest ->
//! console -> CPU tables (the backend's: GDT, TSS, IDT natively) -> boot
//! information -> command line -> backend selection and patching -> time
//! -> memory (frames, page tables, heap) -> interrupts (the backend's:
//! ACPI, I/O APIC and local APIC timer, or Xen events and time) -> threads
//! -> the backend's late start (console input, the Xen bus) -> devices
//! (PCI and Xen bus listed, drivers bound) -> banner -> kernel tests or
//! the shell.
//!
//! The binary only means something for `x86_64-unknown-none`; built for the
//! host (as `cargo test` at the workspace root does) it is a stub.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("sanos is a kernel: build it with `make` (target x86_64-unknown-none)");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod backend;
#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod dev;
#[cfg(target_os = "none")]
mod fs;
#[cfg(target_os = "none")]
mod ktest;
#[cfg(target_os = "none")]
mod mm;
#[cfg(target_os = "none")]
mod net;
#[cfg(target_os = "none")]
mod panic;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod shell;
#[cfg(target_os = "none")]
mod time;
#[cfg(target_os = "none")]
mod user;
#[cfg(target_os = "none")]
mod vmops;
#[cfg(target_os = "none")]
mod xen;

#[cfg(target_os = "none")]
pub use boot::kernel_entry;
