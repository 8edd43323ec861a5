//! The 8254 programmable interval timer, used once at boot as a reference
//! clock to measure the TSC frequency when CPUID does not state it.
//!
//! Channel 2 in mode 0 (interrupt on terminal count) with its gate raised
//! through port 0x61: OUT2 (bit 5 of port 0x61) goes high when the count
//! reaches zero. The same method as Linux's `pit_calibrate_tsc`.

use crate::arch::cpu::{inb, outb, rdtsc};

/// The PIT's input clock, Hz.
const PIT_HZ: u64 = 1_193_182;

/// Measures TSC ticks over `ms` milliseconds of PIT time. `None` if OUT2
/// never rises (no PIT: some VMMs and newer hardware have none).
pub fn tsc_ticks_over(ms: u64) -> Option<u64> {
    let count = PIT_HZ * ms / 1000;
    debug_assert!(count <= 0xffff);
    // SAFETY: ports 0x61 (system control B), 0x43 (PIT mode) and 0x42 (PIT
    // channel 2 data) are the PC's fixed PIT interface; channel 2 drives
    // only the speaker, which stays off (bit 1 clear).
    unsafe {
        outb(0x61, (inb(0x61) & !0x02) | 0x01);
        outb(0x43, 0xb0);
        outb(0x42, count as u8);
        outb(0x42, (count >> 8) as u8);
    }
    let start = rdtsc();
    // Give up after ~50x the expected time at a pessimistic 10 GHz, so a
    // missing PIT cannot hang the boot.
    let limit = ms * 10_000_000 * 50;
    loop {
        // SAFETY: as above; reading port 0x61 has no side effects.
        if unsafe { inb(0x61) } & 0x20 != 0 {
            return Some(rdtsc() - start);
        }
        if rdtsc() - start > limit {
            return None;
        }
    }
}
