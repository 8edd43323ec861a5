//! Time since boot, from the time-stamp counter.
//!
//! The TSC frequency comes from CPUID leaf 0x15 (crystal clock times the
//! TSC/crystal ratio, Intel SDM Vol. 3B 18.7.3) when the CPU states it, and
//! is measured against the PIT otherwise. The vmops issue replaces this
//! with the platform's clock op (kvmclock, Xen pvclock).

use crate::arch::{cpu, pit};
use core::sync::atomic::{AtomicU64, Ordering};

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// How the TSC frequency was found, for the boot log.
#[derive(Clone, Copy, Debug)]
pub enum TscSource {
    Cpuid15,
    Pit,
    Guess,
}

/// Records the TSC value read by the first entry instruction.
pub fn set_boot_tsc(tsc: u64) {
    BOOT_TSC.store(tsc, Ordering::Relaxed);
}

/// Finds the TSC frequency. Call once, early, with interrupts off.
pub fn calibrate() {
    let (hz, source) = if let Some(hz) = tsc_hz_from_cpuid() {
        (hz, TscSource::Cpuid15)
    } else if let Some(ticks) = pit::tsc_ticks_over(10) {
        (ticks * 100, TscSource::Pit)
    } else {
        (1_000_000_000, TscSource::Guess)
    };
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    match source {
        TscSource::Guess => log::warn!("time: no CPUID 0x15 and no PIT; assuming a 1 GHz TSC"),
        _ => log::info!(
            "time: TSC {}.{:03} MHz ({:?})",
            hz / 1_000_000,
            hz / 1000 % 1000,
            source
        ),
    }
}

fn tsc_hz_from_cpuid() -> Option<u64> {
    if cpu::cpuid(0).eax < 0x15 {
        return None;
    }
    let leaf = cpu::cpuid(0x15);
    let (denominator, numerator, crystal_hz) = (leaf.eax, leaf.ebx, leaf.ecx);
    if denominator == 0 || numerator == 0 || crystal_hz == 0 {
        return None;
    }
    Some(u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator))
}

/// TSC frequency in Hz (valid after [`calibrate`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Converts a TSC tick count to nanoseconds.
/// Before [`calibrate`] there is no frequency and every duration reads 0.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    match tsc_hz() {
        0 => 0,
        hz => (u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64,
    }
}

/// Nanoseconds since the kernel's first instruction.
pub fn since_boot_ns() -> u64 {
    ticks_to_ns(cpu::rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed)))
}

/// Busy-waits for `ns` nanoseconds.
pub fn spin_delay_ns(ns: u64) {
    let ticks = (u128::from(ns) * u128::from(tsc_hz()) / 1_000_000_000) as u64;
    let start = cpu::rdtsc();
    while cpu::rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

mod tests {
    use super::*;
    use crate::kassert;
    use crate::ktest::{ktest, TestResult};

    #[ktest]
    fn clock_is_monotonic_and_delays_last() -> TestResult {
        kassert!(
            tsc_hz() >= 100_000_000,
            "implausible TSC frequency {} Hz",
            tsc_hz()
        );
        let mut last = since_boot_ns();
        for _ in 0..10_000 {
            let now = since_boot_ns();
            kassert!(now >= last, "clock went back from {last} to {now}");
            last = now;
        }
        let start = since_boot_ns();
        spin_delay_ns(2_000_000);
        let elapsed = since_boot_ns() - start;
        kassert!(elapsed >= 2_000_000, "2 ms delay took {elapsed} ns");
        Ok(())
    }
}
