//! The PC's real-time clock (Motorola MC146818A and its descendants in
//! every chipset, and QEMU's `mc146818rtc`): turning its registers into
//! seconds since the Unix epoch.
//!
//! Registers (index written to port 0x70, value read from 0x71): 0x00
//! seconds, 0x02 minutes, 0x04 hours, 0x07 day of month, 0x08 month, 0x09
//! year within the century, 0x0A status A (bit 7: an update is in
//! progress), 0x0B status B (bit 2: binary rather than BCD, bit 1: 24-hour
//! rather than 12-hour, where bit 7 of the hour is PM). The clock keeps
//! UTC here, as QEMU's does by default (`-rtc base=utc`) and as servers
//! are set up. The century register's index is firmware's business (the
//! ACPI FADT's CENTURY field) and often absent, so the year is taken to
//! be in 2000-2099.

/// Index of the seconds register, and the others.
pub const SECONDS: u8 = 0x00;
pub const MINUTES: u8 = 0x02;
pub const HOURS: u8 = 0x04;
pub const DAY: u8 = 0x07;
pub const MONTH: u8 = 0x08;
pub const YEAR: u8 = 0x09;
pub const STATUS_A: u8 = 0x0a;
pub const STATUS_B: u8 = 0x0b;
/// Status A: the clock is updating its registers; read after it clears.
pub const UPDATE_IN_PROGRESS: u8 = 0x80;
const BINARY: u8 = 0x04;
const HOURS_24: u8 = 0x02;
const PM: u8 = 0x80;

/// The time registers as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers {
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub day: u8,
    pub month: u8,
    pub year: u8,
    pub status_b: u8,
}

fn from_bcd(value: u8) -> Option<u8> {
    let (high, low) = (value >> 4, value & 0x0f);
    (high <= 9 && low <= 9).then_some(high * 10 + low)
}

impl Registers {
    /// Seconds since the Unix epoch; `None` for registers that are no
    /// date (bad BCD digits, month 13, February 30th, hour 25...), which
    /// a clock whose battery died reads as.
    pub fn unix_seconds(&self) -> Option<u64> {
        let binary = self.status_b & BINARY != 0;
        let decode = |value: u8| if binary { Some(value) } else { from_bcd(value) };
        let pm = self.status_b & HOURS_24 == 0 && self.hours & PM != 0;
        let mut hours = decode(self.hours & !PM)?;
        if self.status_b & HOURS_24 == 0 {
            // 12-hour clock: 12 AM is hour 0, 12 PM is hour 12.
            if !(1..=12).contains(&hours) {
                return None;
            }
            hours = hours % 12 + if pm { 12 } else { 0 };
        }
        let (seconds, minutes) = (decode(self.seconds)?, decode(self.minutes)?);
        let (day, month, year) = (decode(self.day)?, decode(self.month)?, decode(self.year)?);
        if seconds > 59 || minutes > 59 || hours > 23 || year > 99 {
            return None;
        }
        crate::time::civil::DateTime {
            year: 2000 + i64::from(year),
            month: month.into(),
            day: day.into(),
            hour: hours.into(),
            minute: minutes.into(),
            second: seconds.into(),
        }
        .to_unix()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registers(status_b: u8, time: [u8; 6]) -> Registers {
        let [year, month, day, hours, minutes, seconds] = time;
        Registers {
            seconds,
            minutes,
            hours,
            day,
            month,
            year,
            status_b,
        }
    }

    // 2026-11-29 23:11:31 UTC
    const WHEN: u64 = 1_795_993_891;

    #[test]
    fn bcd_and_binary_24_hour_clocks() {
        // QEMU's default: BCD, 24-hour (status B 0x02).
        let bcd = registers(0x02, [0x26, 0x11, 0x29, 0x23, 0x11, 0x31]);
        assert_eq!(bcd.unix_seconds(), Some(WHEN));
        let binary = registers(0x06, [26, 11, 29, 23, 11, 31]);
        assert_eq!(binary.unix_seconds(), Some(WHEN));
    }

    #[test]
    fn twelve_hour_clocks_mark_the_afternoon_in_bit_7() {
        // 11 PM, BCD, 12-hour.
        let pm = registers(0x00, [0x26, 0x11, 0x29, 0x80 | 0x11, 0x11, 0x31]);
        assert_eq!(pm.unix_seconds(), Some(WHEN));
        // 12 AM is midnight, 12 PM noon.
        let midnight = registers(0x04, [26, 11, 29, 12, 0, 0]);
        let noon = registers(0x04, [26, 11, 29, 0x80 | 12, 0, 0]);
        let day_start = WHEN - (23 * 3600 + 11 * 60 + 31);
        assert_eq!(midnight.unix_seconds(), Some(day_start));
        assert_eq!(noon.unix_seconds(), Some(day_start + 12 * 3600));
        // Hour 0 and 13 do not exist on a 12-hour clock.
        assert_eq!(registers(0x04, [26, 11, 29, 0, 0, 0]).unix_seconds(), None);
        assert_eq!(registers(0x04, [26, 11, 29, 13, 0, 0]).unix_seconds(), None);
    }

    #[test]
    fn registers_that_are_no_date_are_refused() {
        for time in [
            [0x26, 0x13, 0x01, 0x00, 0x00, 0x00], // month 13
            [0x26, 0x02, 0x30, 0x00, 0x00, 0x00], // February 30th
            [0x26, 0x11, 0x29, 0x24, 0x00, 0x00], // hour 24
            [0x26, 0x11, 0x29, 0x23, 0x60, 0x00], // minute 60
            [0x26, 0x11, 0x29, 0x23, 0x00, 0x5a], // not BCD
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // a dead clock
        ] {
            assert_eq!(registers(0x02, time).unix_seconds(), None, "{time:x?}");
        }
        // Leap days exist in leap years only.
        assert!(registers(0x02, [0x28, 0x02, 0x29, 0, 0, 0])
            .unix_seconds()
            .is_some());
        assert!(registers(0x02, [0x27, 0x02, 0x29, 0, 0, 0])
            .unix_seconds()
            .is_none());
    }
}
