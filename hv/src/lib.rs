//! Platform facts: what the boot protocols and hypervisors define, mirrored
//! exactly from their specifications. Detection and the Xen and KVM
//! interfaces join this crate with the vmops and Xen issues; the foundation
//! holds the PVH start-of-day structures that its PVH entry path reads.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod kvm;
pub mod native;
pub mod platform;
pub mod pvh;
pub mod xen;
