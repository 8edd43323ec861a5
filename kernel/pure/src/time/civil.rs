//! Calendar arithmetic: seconds since the Unix epoch to a UTC date and time
//! (Howard Hinnant's `civil_from_days`), for logs and the shell. Pure.

/// A UTC date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// The UTC date and time `seconds` after 1970-01-01T00:00:00Z.
pub fn from_unix(seconds: u64) -> DateTime {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    DateTime {
        year,
        month,
        day,
        hour: (rest / 3600) as u32,
        minute: (rest / 60 % 60) as u32,
        second: (rest % 60) as u32,
    }
}

impl core::fmt::Display for DateTime {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn known_dates() {
        assert_eq!(from_unix(0).to_string(), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            from_unix(951_782_400).to_string(),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(
            from_unix(1_764_061_199).to_string(),
            "2025-11-25 08:59:59 UTC"
        );
        assert_eq!(
            from_unix(4_102_444_800).to_string(),
            "2100-01-01 00:00:00 UTC"
        );
        let leap_end = from_unix(1_709_251_199); // 2024-02-29 23:59:59
        assert_eq!((leap_end.month, leap_end.day, leap_end.hour), (2, 29, 23));
    }
}
