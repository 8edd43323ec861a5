//! The sanos kernel.
//!
//! Start-up order (each step may log; the console works from the first):
//! console -> boot information -> command line -> CPU tables (GDT, TSS, IDT)
//! -> time -> memory (frames, page tables, heap) -> interrupts (LAPIC timer)
//! -> banner -> kernel tests or the appliance.
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
mod ktest;
#[cfg(target_os = "none")]
mod mm;
#[cfg(target_os = "none")]
mod panic;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod shell;
#[cfg(target_os = "none")]
mod time;
#[cfg(target_os = "none")]
mod vmops;
#[cfg(target_os = "none")]
mod xen;

#[cfg(target_os = "none")]
pub use boot::kernel_entry;
