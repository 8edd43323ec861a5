//! The CMOS real-time clock: the wall clock at boot on hardware and under
//! KVM (QEMU keeps it in UTC by default). The registers' meaning is
//! `pure::arch::cmos_rtc`'s; here they are only read.
//!
//! Reading follows the usual care: wait for the update-in-progress flag to
//! clear, read every register, and read again until two reads agree, so a
//! second rolling over mid-read is never mixed into a wrong time.

use crate::arch::cpu::{inb, outb};
use pure::arch::cmos_rtc::{self, Registers};

const INDEX_PORT: u16 = 0x70;
const DATA_PORT: u16 = 0x71;
/// Bit 7 of the index port masks the NMI; it stays clear (NMIs enabled).
const NMI_ENABLED: u8 = 0x00;

fn read_register(index: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the PC's CMOS index/data pair; reading
    // the clock's registers changes nothing, and the index leaves the NMI
    // unmasked as it was.
    unsafe {
        outb(INDEX_PORT, NMI_ENABLED | index);
        inb(DATA_PORT)
    }
}

fn read_once() -> Option<Registers> {
    // An update takes under 2 ms; give up after ~10,000 reads, so a
    // missing clock (every port reading 0xff) cannot hang the boot.
    let mut tries = 0;
    while read_register(cmos_rtc::STATUS_A) & cmos_rtc::UPDATE_IN_PROGRESS != 0 {
        tries += 1;
        if tries > 10_000 {
            return None;
        }
        core::hint::spin_loop();
    }
    Some(Registers {
        seconds: read_register(cmos_rtc::SECONDS),
        minutes: read_register(cmos_rtc::MINUTES),
        hours: read_register(cmos_rtc::HOURS),
        day: read_register(cmos_rtc::DAY),
        month: read_register(cmos_rtc::MONTH),
        year: read_register(cmos_rtc::YEAR),
        status_b: read_register(cmos_rtc::STATUS_B),
    })
}

/// Seconds since the Unix epoch by the RTC; `None` where there is no
/// clock or it holds no date.
pub fn unix_seconds() -> Option<u64> {
    let mut last = read_once()?;
    for _ in 0..5 {
        let now = read_once()?;
        if now == last {
            return now.unix_seconds();
        }
        last = now;
    }
    None
}
