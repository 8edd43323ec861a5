//! Time since boot.
//!
//! [`since_boot_ns`] is the platform's clock (the vmops `clock_ns` op:
//! kvmclock under KVM, the TSC natively). The TSC itself is the native
//! clock and the boot-time stopwatch; its frequency comes from the
//! hypervisor (kvmclock's scale), from CPUID leaf 0x15 (crystal clock times
//! the TSC/crystal ratio, Intel SDM Vol. 3B 18.7.3), or is measured against
//! the PIT, in that order.

use crate::arch::{cpu, pit};
use core::sync::atomic::{AtomicU64, Ordering};

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TIMER_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// Counts one timer interrupt, from whichever timer the platform uses
/// (LAPIC, Xen's VIRQ_TIMER).
pub fn count_timer_interrupt() {
    TIMER_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
}

/// Timer interrupts since boot.
pub fn timer_interrupts() -> u64 {
    TIMER_INTERRUPTS.load(Ordering::Relaxed)
}
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// How the TSC frequency was found, for the boot log.
#[derive(Clone, Copy, Debug)]
pub enum TscSource {
    KvmClock,
    XenCpuid,
    XenPvclock,
    Cpuid15,
    /// A VMI ROM's GetCycleFrequency.
    Vmi,
    Pit,
    Guess,
}

/// Records the TSC value read by the first entry instruction.
pub fn set_boot_tsc(tsc: u64) {
    BOOT_TSC.store(tsc, Ordering::Relaxed);
}

/// Records a TSC frequency the platform stated.
pub fn set_tsc_hz(hz: u64, source: TscSource) {
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    log::info!(
        "time: TSC {}.{:03} MHz ({source:?})",
        hz / 1_000_000,
        hz / 1000 % 1000
    );
}

/// Finds the TSC frequency unless the platform already stated it. Call
/// once, early, with interrupts off.
pub fn calibrate() {
    if tsc_hz() != 0 {
        return;
    }
    let (hz, source) = if let Some(hz) = tsc_hz_from_cpuid() {
        (hz, TscSource::Cpuid15)
    } else if let Some(ticks) = pit::tsc_ticks_over(10).filter(|&ticks| ticks > 100_000) {
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

/// The TSC rate CPUID leaf 0x15 states (crystal clock times the TSC ratio),
/// where the CPU fills it in.
fn tsc_hz_from_cpuid() -> Option<u64> {
    cpu::features().get_tsc_info()?.tsc_frequency()
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

/// Nanoseconds since the kernel's first instruction, by the TSC: the
/// native backend's clock.
pub fn tsc_clock_ns() -> u64 {
    ticks_to_ns(cpu::rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed)))
}

/// Nanoseconds since boot on the platform's clock.
pub fn since_boot_ns() -> u64 {
    crate::vmops::ops::clock_ns()
}

/// Unix nanoseconds at platform-clock time 0, once NTP set the wall clock;
/// 0 until then.
static NTP_OFFSET_NS: AtomicU64 = AtomicU64::new(0);

/// Where the wall clock comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WallSource {
    /// Set by NTP (`ntp=`).
    Ntp,
    /// The platform's: Xen's shared_info, or the CMOS clock.
    Platform,
}

/// Nanoseconds since the Unix epoch, by NTP once it set the clock, else
/// by the platform's wall clock; `None` where neither is known.
pub fn wall_clock_ns() -> Option<u64> {
    wall_clock().map(|(ns, _)| ns)
}

/// [`wall_clock_ns`] and where it came from.
pub fn wall_clock() -> Option<(u64, WallSource)> {
    match NTP_OFFSET_NS.load(Ordering::Acquire) {
        0 => (crate::backend::hooks().wallclock)().map(|ns| (ns, WallSource::Platform)),
        offset => Some((offset + since_boot_ns(), WallSource::Ntp)),
    }
}

/// Reads the platform's wall clock once at boot (the CMOS clock is read
/// here, and logged), and says so where there is none.
pub fn init_wall_clock() {
    if wall_clock_ns().is_none() {
        log::info!("time: no wall clock until NTP sets one (ntp=<host>)");
    }
}

/// Sets the wall clock: it read `unix_ns` at platform-clock time `at_ns`.
/// Returns by how much it moved (ns, positive forward) from what the
/// clock said before, if it said anything.
pub fn set_wall_clock(unix_ns: u64, at_ns: u64) -> Option<i64> {
    let before = wall_clock_ns();
    let offset = unix_ns.saturating_sub(at_ns).max(1);
    NTP_OFFSET_NS.store(offset, Ordering::Release);
    let now = offset + since_boot_ns();
    before.map(|before| now as i64 - before as i64)
}

/// The machine was stopped for `ns` that the platform clock did not count
/// (a Xen domain saved and restored, or migrated): a wall clock set by NTP
/// moves on by as much, as Linux's timekeeping adds the time it slept. The
/// platform's own wall clock needs nothing (it is read afresh).
pub fn clock_skipped(ns: u64) {
    let offset = NTP_OFFSET_NS.load(Ordering::Acquire);
    if offset != 0 {
        NTP_OFFSET_NS.store(offset + ns, Ordering::Release);
    }
}

/// Busy-waits for `ns` nanoseconds of TSC time.
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
    fn the_wall_clock_is_plausible_and_runs_with_the_platform_clock() -> TestResult {
        // QEMU's CMOS clock and Xen's shared_info both keep the host's
        // time; NTP is not asked in the test mode.
        let Some((first, source)) = wall_clock() else {
            return Ok(());
        };
        kassert!(
            source == WallSource::Platform,
            "{source:?} in the test mode"
        );
        // 2020-01-01T00:00:00Z: a clock before it holds no real date.
        kassert!(first >= 1_577_836_800_000_000_000, "wall clock {first} ns");
        spin_delay_ns(2_000_000);
        let second = wall_clock_ns().unwrap_or(0);
        kassert!(
            second > first && second - first < 1_000_000_000,
            "wall clock went from {first} to {second} over 2 ms"
        );
        Ok(())
    }

    #[ktest]
    fn platform_clock_agrees_with_the_tsc() -> TestResult {
        // Over 20 ms the platform clock (kvmclock, or the TSC itself) and
        // the TSC must agree within 1% + 100 us.
        let (clock0, tsc0) = (since_boot_ns(), tsc_clock_ns());
        spin_delay_ns(20_000_000);
        let (clock, tsc) = (since_boot_ns() - clock0, tsc_clock_ns() - tsc0);
        let bound = tsc / 100 + 100_000;
        kassert!(
            clock.abs_diff(tsc) <= bound,
            "clock {clock} ns vs TSC {tsc} ns over the same interval"
        );
        Ok(())
    }

    #[ktest]
    fn clock_is_monotonic_and_delays_last() -> TestResult {
        kassert!(
            tsc_hz() >= 100_000_000,
            "implausible TSC frequency {} Hz",
            tsc_hz()
        );
        let mut last = since_boot_ns();
        for _ in 0..2_000 {
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
