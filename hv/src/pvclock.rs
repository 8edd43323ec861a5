//! pvclock: the time structure KVM (kvmclock) and Xen (`vcpu_time_info` in
//! shared_info) both publish — `xen/include/public/xen.h`, `struct
//! vcpu_time_info`; Linux `arch/x86/include/asm/pvclock-abi.h`. The
//! structure is the generated Xen one; this module adds the arithmetic.

pub use crate::xen::bindings::vcpu_time_info as PvclockVcpuTimeInfo;

/// `PVCLOCK_TSC_STABLE_BIT` in `flags`.
pub const PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;

/// The scaling a consistent snapshot (the caller retries while `version`
/// is odd or changes) implies.
pub trait Pvclock {
    /// Nanoseconds of system time at TSC value `tsc`:
    /// `system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32`.
    fn ns_at(&self, tsc: u64) -> u64;
    /// TSC ticks per second implied by the scale factors (0 if unset).
    fn tsc_hz(&self) -> u64;
}

impl Pvclock for PvclockVcpuTimeInfo {
    fn ns_at(&self, tsc: u64) -> u64 {
        let mut delta = tsc.wrapping_sub(self.tsc_timestamp);
        if self.tsc_shift >= 0 {
            delta <<= self.tsc_shift;
        } else {
            delta >>= -self.tsc_shift;
        }
        let scaled = (u128::from(delta) * u128::from(self.tsc_to_system_mul)) >> 32;
        self.system_time.wrapping_add(scaled as u64)
    }

    fn tsc_hz(&self) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2.5 GHz TSC, 0.4 ns per tick, encoded as KVM and Xen encode it:
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
    fn scales_ticks_to_nanoseconds() {
        let clock = clock_2_5ghz();
        assert_eq!(clock.ns_at(1_000_000), 5_000);
        let ns = clock.ns_at(1_000_000 + 2_500_000_000);
        assert!((ns as i64 - 1_000_005_000).abs() < 2, "{ns}");
        let hz = clock.tsc_hz();
        assert!((hz as i64 - 2_500_000_000).abs() < 10, "{hz}");
        let slow = PvclockVcpuTimeInfo {
            tsc_shift: 2,
            tsc_to_system_mul: 1 << 31,
            ..clock
        };
        assert_eq!(slow.ns_at(1_000_000 + 1000), 5_000 + 2000);
        assert_eq!(PvclockVcpuTimeInfo::default().tsc_hz(), 0);
    }
}
