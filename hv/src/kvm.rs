//! KVM's paravirtual interfaces: kvmclock (pvclock), paravirtual EOI and
//! steal time, set up by writing guest-physical addresses to KVM's MSRs.
//!
//! Linux `Documentation/virt/kvm/x86/msr.rst`; the clock structure is
//! pvclock's (`crate::pvclock`), the same one Xen publishes.

/// `MSR_KVM_SYSTEM_TIME_NEW`: bit 0 enables, the rest is the 4-byte
/// aligned guest-physical address of a [`PvclockVcpuTimeInfo`].
pub const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// `MSR_KVM_STEAL_TIME`: bit 0 enables, 64-byte aligned address of a
/// [`KvmStealTime`].
pub const MSR_KVM_STEAL_TIME: u32 = 0x4b56_4d03;
/// `MSR_KVM_PV_EOI_EN`: bit 0 enables, 4-byte aligned address of a word
/// whose bit 0 KVM sets when the next EOI may be skipped.
pub const MSR_KVM_PV_EOI_EN: u32 = 0x4b56_4d04;

/// The enable bit of the three MSRs above.
pub const MSR_ENABLE: u64 = 1;
/// `KVM_PV_EOI_ENABLED`: in the PV EOI word, "no EOI write needed".
pub const PV_EOI_PENDING_BIT: u64 = 1;

pub use crate::pvclock::{Pvclock, PvclockVcpuTimeInfo, PVCLOCK_TSC_STABLE_BIT};

/// `struct kvm_steal_time` (64 bytes, 64-byte aligned).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmStealTime {
    /// Nanoseconds this vCPU was runnable but not running.
    pub steal: u64,
    pub version: u32,
    pub flags: u32,
    pub preempted: u8,
    pub u8_pad: [u8; 3],
    pub pad: [u32; 11],
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn steal_time_layout_matches_the_abi() {
        assert_eq!(size_of::<KvmStealTime>(), 64);
        assert_eq!(align_of::<KvmStealTime>(), 64);
        assert_eq!(offset_of!(KvmStealTime, steal), 0);
        assert_eq!(offset_of!(KvmStealTime, version), 8);
        assert_eq!(offset_of!(KvmStealTime, flags), 12);
        assert_eq!(offset_of!(KvmStealTime, preempted), 16);
    }
}
