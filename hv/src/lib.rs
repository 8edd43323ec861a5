//! Platform facts: what the boot protocols and hypervisors define, mirrored
//! exactly from their specifications — platform detection, the Xen public
//! interface (generated bindings plus hand-written hypercalls, rings and
//! wire protocols), KVM's MSRs, pvclock, PVH start info, and the native
//! instruction forms with their thunks. Pure definitions are host-tested.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod kvm;
pub mod native;
pub mod platform;
pub mod pvclock;
pub mod pvh;
pub mod vmi;
pub mod xen;
pub mod xen_pv;
