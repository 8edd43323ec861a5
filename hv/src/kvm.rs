//! KVM's paravirtual interfaces: kvmclock (pvclock), paravirtual EOI and
//! steal time, set up by writing guest-physical addresses to KVM's MSRs.
//!
//! Linux `Documentation/virt/kvm/x86/msr.rst` and `arch/x86/include/asm/
//! pvclock-abi.h`; the pvclock structure is the same one Xen uses
//! (`xen/include/public/xen.h`, `struct vcpu_time_info`).

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

/// `PVCLOCK_TSC_STABLE_BIT` in [`PvclockVcpuTimeInfo::flags`].
pub const PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;

/// `struct pvclock_vcpu_time_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PvclockVcpuTimeInfo {
    /// Odd while the hypervisor updates the structure.
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad: [u8; 2],
}

impl PvclockVcpuTimeInfo {
    /// Nanoseconds of system time at TSC value `tsc`, from a consistent
    /// snapshot (the caller retries on a version change):
    /// `system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32`.
    pub fn ns_at(&self, tsc: u64) -> u64 {
        let mut delta = tsc.wrapping_sub(self.tsc_timestamp);
        if self.tsc_shift >= 0 {
            delta <<= self.tsc_shift;
        } else {
            delta >>= -self.tsc_shift;
        }
        let scaled = (u128::from(delta) * u128::from(self.tsc_to_system_mul)) >> 32;
        self.system_time.wrapping_add(scaled as u64)
    }

    /// TSC ticks per second implied by the scale factors.
    pub fn tsc_hz(&self) -> u64 {
        if self.tsc_to_system_mul == 0 {
            return 0;
        }
        let mut hz = (1_000_000_000u128 << 32) / u128::from(self.tsc_to_system_mul);
        if self.tsc_shift >= 0 {
            hz >>= self.tsc_shift;
        } else {
            hz <<= -self.tsc_shift;
        }
        hz as u64
    }
}

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
    fn pvclock_layout_matches_the_abi() {
        assert_eq!(size_of::<PvclockVcpuTimeInfo>(), 32);
        assert_eq!(offset_of!(PvclockVcpuTimeInfo, version), 0);
        assert_eq!(offset_of!(PvclockVcpuTimeInfo, tsc_timestamp), 8);
        assert_eq!(offset_of!(PvclockVcpuTimeInfo, system_time), 16);
        assert_eq!(offset_of!(PvclockVcpuTimeInfo, tsc_to_system_mul), 24);
        assert_eq!(offset_of!(PvclockVcpuTimeInfo, tsc_shift), 28);
        assert_eq!(offset_of!(PvclockVcpuTimeInfo, flags), 29);
    }

    #[test]
    fn steal_time_layout_matches_the_abi() {
        assert_eq!(size_of::<KvmStealTime>(), 64);
        assert_eq!(align_of::<KvmStealTime>(), 64);
        assert_eq!(offset_of!(KvmStealTime, steal), 0);
        assert_eq!(offset_of!(KvmStealTime, version), 8);
        assert_eq!(offset_of!(KvmStealTime, flags), 12);
        assert_eq!(offset_of!(KvmStealTime, preempted), 16);
    }

    /// A 2.5 GHz TSC, 0.4 ns per tick, encoded as KVM encodes it:
    /// mul = 0.8 * 2^32 with shift -1.
    fn clock_2_5ghz() -> PvclockVcpuTimeInfo {
        PvclockVcpuTimeInfo {
            version: 2,
            tsc_timestamp: 1_000_000,
            system_time: 5_000,
            tsc_to_system_mul: (0.8 * 4294967296.0) as u32,
            tsc_shift: -1,
            ..Default::default()
        }
    }

    #[test]
    fn pvclock_scales_ticks_to_nanoseconds() {
        let clock = clock_2_5ghz();
        assert_eq!(clock.ns_at(1_000_000), 5_000);
        // 2.5e9 ticks later: one second.
        let ns = clock.ns_at(1_000_000 + 2_500_000_000);
        assert!((ns as i64 - 1_000_005_000).abs() < 2, "{ns}");
        let hz = clock.tsc_hz();
        assert!((hz as i64 - 2_500_000_000).abs() < 10, "{hz}");
        // Positive shift.
        let slow = PvclockVcpuTimeInfo {
            tsc_shift: 2,
            tsc_to_system_mul: 1 << 31,
            ..clock
        };
        assert_eq!(slow.ns_at(1_000_000 + 1000), 5_000 + 2000);
    }
}
