//! Calendar arithmetic: seconds since the Unix epoch to a UTC date and time
//! and back (Howard Hinnant's `civil_from_days` and `days_from_civil`,
//! proleptic Gregorian calendar), for logs, the shell and HTTP dates. Pure.

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

/// Years further than this from year 0 are refused by
/// [`days_from_civil`], which keeps its arithmetic far from overflow.
pub const MAX_YEAR: i64 = 1_000_000_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (negative before
/// it); `None` if `month` is not 1-12, `day` not 1-31 or the year is
/// beyond [`MAX_YEAR`]. A day past the month's end (30 February) rolls
/// over into the next month: [`days_in_month`] checks it.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(-MAX_YEAR..=MAX_YEAR).contains(&year)
    {
        return None;
    }
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Whether `year` has a 29 February.
pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days in `month` (1-12) of `year`; 0 for a month out of
/// range.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// The day of the week of the instant `seconds` after the epoch, 0 for
/// Sunday to 6 for Saturday (1970-01-01 was a Thursday).
pub fn weekday(seconds: u64) -> u32 {
    ((seconds / 86_400 + 4) % 7) as u32
}

impl DateTime {
    /// Seconds since the epoch; `None` for a field out of range (a second
    /// of 60, a leap second, is accepted and lands on the next minute's
    /// first) or an instant before 1970.
    pub fn to_unix(&self) -> Option<u64> {
        if !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        let days = u64::try_from(days_from_civil(self.year, self.month, self.day)?).ok()?;
        let seconds =
            u64::from(self.hour) * 3600 + u64::from(self.minute) * 60 + u64::from(self.second);
        days.checked_mul(86_400)?.checked_add(seconds)
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

/// A time as RFC 3339 writes it (the form RFC 5424's TIMESTAMP takes),
/// in UTC with microseconds: `2026-11-29T23:11:31.123456Z`. Holds
/// nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub u64);

impl core::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let t = from_unix(self.0 / 1_000_000_000);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            self.0 % 1_000_000_000 / 1000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn rfc3339_has_microseconds_and_zulu() {
        assert_eq!(
            Rfc3339(1_795_993_891_123_456_789).to_string(),
            "2026-11-29T23:11:31.123456Z"
        );
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00.000000Z");
    }

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

    #[test]
    fn round_trips_through_unix_seconds() {
        let mut seconds = 0u64;
        // Every ~11.6 days for 200 years, with odd times of day.
        while seconds < 6_400_000_000 {
            assert_eq!(from_unix(seconds).to_unix(), Some(seconds), "{seconds}");
            seconds += 1_000_003;
        }
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2000, 13, 1), None);
        assert_eq!(days_from_civil(2000, 1, 32), None);
        assert_eq!(days_from_civil(i64::MIN, 1, 1), None);
        assert!(days_from_civil(MAX_YEAR, 12, 31).is_some());
        assert!(days_from_civil(-MAX_YEAR, 1, 1).is_some());
    }

    #[test]
    fn to_unix_checks_fields() {
        let date = |year, month, day| DateTime {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
        };
        assert_eq!(date(2024, 2, 29).to_unix(), Some(1_709_164_800));
        assert_eq!(date(2023, 2, 29).to_unix(), None);
        assert_eq!(date(1900, 2, 29).to_unix(), None);
        assert_eq!(date(2000, 2, 29).to_unix(), Some(951_782_400));
        assert_eq!(date(2024, 4, 31).to_unix(), None);
        assert_eq!(date(2024, 13, 1).to_unix(), None);
        assert_eq!(date(2024, 0, 1).to_unix(), None);
        assert_eq!(date(2024, 1, 0).to_unix(), None);
        assert_eq!(date(1969, 12, 31).to_unix(), None);
        let late = DateTime {
            hour: 24,
            ..date(2024, 1, 1)
        };
        assert_eq!(late.to_unix(), None);
        let leap_second = DateTime {
            hour: 23,
            minute: 59,
            second: 60,
            ..date(2016, 12, 31)
        };
        assert_eq!(leap_second.to_unix(), Some(1_483_228_800));
        assert_eq!(date(i64::MAX / 2, 1, 1).to_unix(), None);
        // Representable in days but not in u64 seconds.
        assert_eq!(date(MAX_YEAR, 1, 1).to_unix(), None);
    }

    #[test]
    fn weekdays() {
        assert_eq!(weekday(0), 4); // Thursday
        assert_eq!(weekday(784_111_777), 0); // Sun, 06 Nov 1994
        assert_eq!(weekday(951_782_400), 2); // Tue, 29 Feb 2000
    }
}
