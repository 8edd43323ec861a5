//! SNTP (RFC 4330; the packet is NTPv4's, RFC 5905 7.3): the client's
//! request and the checks on the server's reply.
//!
//! A request is 48 bytes: LI 0, version 4, mode 3 (client), and in the
//! transmit timestamp a value of the client's choosing that the server
//! copies into the reply's originate timestamp, so a reply can be matched
//! to its request (RFC 4330 5, "Originate Timestamp"). The client here
//! has no wall clock to put there; it sends a cookie (a counter and random
//! bits) instead, which RFC 4330 allows since only the echo matters.
//!
//! A reply is used only if it is a server's (mode 4) answer of a version
//! 1-4 (RFC 4330 5 asks clients to accept 1-4, version 4 servers answer a
//! version 4 request with 4), echoes the cookie, is synchronised (LI is not
//! 3, stratum 1-15: stratum 0 is a kiss-o'-death whose reference ID names
//! the reason, RFC 4330 8, and 16 is unsynchronised) and carries non-zero
//! receive and transmit timestamps.
//!
//! Timestamps are 64-bit: seconds since 1900-01-01 and a binary fraction.
//! The seconds field wraps in 2036 (era 1); like RFC 4330 3 suggests, a
//! value with its top bit clear is taken to be in era 1 (2036-2104), so the
//! client keeps working for the next 68 years without knowing the date.

/// Bytes in an NTP packet without extensions or a MAC.
pub const PACKET_LEN: usize = 48;
/// The well-known NTP port.
pub const PORT: u16 = 123;
/// Seconds from 1900-01-01 (NTP's epoch) to 1970-01-01 (Unix's).
pub const UNIX_EPOCH_IN_NTP: u64 = 2_208_988_800;

const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;
const VERSION: u8 = 4;
const LI_ALARM: u8 = 3;

/// An NTP timestamp as it travels: seconds (high 32 bits) and fraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Nanoseconds since the Unix epoch (era 0 for values with the top
    /// bit set, era 1 otherwise; see the module documentation).
    pub fn unix_ns(self) -> u64 {
        let seconds = self.0 >> 32;
        let era_seconds = if seconds & 0x8000_0000 != 0 {
            seconds
        } else {
            seconds + (1 << 32)
        };
        let fraction_ns = ((self.0 & 0xffff_ffff) * 1_000_000_000) >> 32;
        (era_seconds - UNIX_EPOCH_IN_NTP) * 1_000_000_000 + fraction_ns
    }

    /// The timestamp for `unix_ns` nanoseconds since the Unix epoch.
    pub fn from_unix_ns(unix_ns: u64) -> Timestamp {
        let seconds = (unix_ns / 1_000_000_000 + UNIX_EPOCH_IN_NTP) & 0xffff_ffff;
        let fraction = ((unix_ns % 1_000_000_000) << 32) / 1_000_000_000;
        Timestamp((seconds << 32) | fraction)
    }
}

/// The client's request carrying `cookie` as its transmit timestamp.
pub fn request(cookie: Timestamp) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = (VERSION << 3) | MODE_CLIENT;
    packet[40..48].copy_from_slice(&cookie.0.to_be_bytes());
    packet
}

/// Why a reply was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SntpError {
    /// Fewer than 48 bytes.
    Short(usize),
    /// Not a server's reply (the mode it carries).
    NotServer(u8),
    /// A version outside 1-4.
    Version(u8),
    /// The originate timestamp is not the cookie sent: a stray or forged
    /// packet, or a reply to an earlier request.
    NotOurs,
    /// Stratum 0: the server refuses with this four-letter code (`RATE`,
    /// `DENY`, `RSTR`, ...).
    KissOfDeath([u8; 4]),
    /// The server's clock is not synchronised (LI 3 or stratum 16+).
    Unsynchronised,
    /// A zero receive or transmit timestamp.
    NoTime,
}

impl core::fmt::Display for SntpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SntpError::Short(len) => write!(f, "a {len}-byte reply (48 needed)"),
            SntpError::NotServer(mode) => write!(f, "mode {mode}, not a server's reply"),
            SntpError::Version(version) => write!(f, "unknown NTP version {version}"),
            SntpError::NotOurs => f.write_str("a reply to another request"),
            SntpError::KissOfDeath(code) => write!(
                f,
                "kiss-o'-death {}",
                core::str::from_utf8(code).unwrap_or("(not ASCII)")
            ),
            SntpError::Unsynchronised => f.write_str("the server's clock is unsynchronised"),
            SntpError::NoTime => f.write_str("no timestamps in the reply"),
        }
    }
}

/// What a good reply says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub stratum: u8,
    /// When the server received the request (T2).
    pub receive: Timestamp,
    /// When the server sent the reply (T3).
    pub transmit: Timestamp,
}

impl Reply {
    /// Wall-clock nanoseconds since the Unix epoch at the moment the reply
    /// arrived, given the client's round trip (send to arrival, on any
    /// clock): the server's transmit time plus half of the time the
    /// packets spent travelling (RFC 5905 8: delay = round trip minus the
    /// server's own time, split evenly between the two directions).
    pub fn unix_ns_at_arrival(&self, round_trip_ns: u64) -> u64 {
        let (t2, t3) = (self.receive.unix_ns(), self.transmit.unix_ns());
        let held = t3.saturating_sub(t2);
        t3 + round_trip_ns.saturating_sub(held) / 2
    }

    /// The network delay of the exchange (round trip minus server time).
    pub fn delay_ns(&self, round_trip_ns: u64) -> u64 {
        let held = self
            .transmit
            .unix_ns()
            .saturating_sub(self.receive.unix_ns());
        round_trip_ns.saturating_sub(held)
    }
}

/// Checks a reply to the request that carried `cookie`.
pub fn parse_reply(packet: &[u8], cookie: Timestamp) -> Result<Reply, SntpError> {
    if packet.len() < PACKET_LEN {
        return Err(SntpError::Short(packet.len()));
    }
    let leap = packet[0] >> 6;
    let version = (packet[0] >> 3) & 7;
    let mode = packet[0] & 7;
    if mode != MODE_SERVER {
        return Err(SntpError::NotServer(mode));
    }
    if !(1..=4).contains(&version) {
        return Err(SntpError::Version(version));
    }
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&packet[at..at + 8]);
        Timestamp(u64::from_be_bytes(bytes))
    };
    if word(24) != cookie {
        return Err(SntpError::NotOurs);
    }
    let stratum = packet[1];
    if stratum == 0 {
        let mut code = [0u8; 4];
        code.copy_from_slice(&packet[12..16]);
        return Err(SntpError::KissOfDeath(code));
    }
    if leap == LI_ALARM || stratum >= 16 {
        return Err(SntpError::Unsynchronised);
    }
    let (receive, transmit) = (word(32), word(40));
    if receive.0 == 0 || transmit.0 == 0 {
        return Err(SntpError::NoTime);
    }
    Ok(Reply {
        stratum,
        receive,
        transmit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIE: Timestamp = Timestamp(0x0123_4567_89ab_cdef);

    /// A reply shaped like chronyd 4.3's (stratum 10, its `local`
    /// reference ID 127.127.1.1) to a request carrying COOKIE.
    fn chrony_reply() -> [u8; 48] {
        let mut packet = [0u8; 48];
        packet[0] = 0x24; // LI 0, version 4, mode 4
        packet[1] = 10;
        packet[2] = 0; // poll
        packet[3] = 0xe9; // precision -23
        packet[12..16].copy_from_slice(&[0x7f, 0x7f, 0x01, 0x01]);
        packet[24..32].copy_from_slice(&COOKIE.0.to_be_bytes());
        // 2026-11-29 23:11:33.5 UTC and 0.25 ms later.
        let t2 = Timestamp::from_unix_ns(1_795_993_893_500_000_000);
        let t3 = Timestamp::from_unix_ns(1_795_993_893_500_250_000);
        packet[32..40].copy_from_slice(&t2.0.to_be_bytes());
        packet[40..48].copy_from_slice(&t3.0.to_be_bytes());
        packet
    }

    #[test]
    fn the_request_is_a_version_4_client_packet_carrying_the_cookie() {
        let packet = request(COOKIE);
        assert_eq!(packet[0], 0x23);
        assert_eq!(&packet[1..40], &[0u8; 39][..]);
        assert_eq!(&packet[40..], &COOKIE.0.to_be_bytes());
    }

    #[test]
    fn a_good_reply_gives_the_time_at_arrival() {
        let reply = parse_reply(&chrony_reply(), COOKIE).unwrap();
        assert_eq!(reply.stratum, 10);
        // Round trip 2.25 ms, 0.25 ms of it in the server: 1 ms each way.
        let now = reply.unix_ns_at_arrival(2_250_000);
        let expected = 1_795_993_893_500_250_000 + 1_000_000;
        assert!(now.abs_diff(expected) < 2, "{now} vs {expected}");
        assert!(reply.delay_ns(2_250_000).abs_diff(2_000_000) < 2);
        // A round trip shorter than the server's own time reads as no delay.
        assert!(reply.unix_ns_at_arrival(0) >= 1_795_993_893_500_250_000 - 1);
    }

    #[test]
    fn timestamps_convert_both_ways_and_across_the_2036_era() {
        for unix_ns in [
            0,
            1_795_993_893_123_456_789,
            // 2036-02-07 06:28:15 (the last second of era 0) and after.
            2_085_978_495_000_000_000,
            2_085_978_496_000_000_000,
            // 2100-01-01.
            4_102_444_800_999_999_999,
        ] {
            let back = Timestamp::from_unix_ns(unix_ns).unix_ns();
            assert!(back.abs_diff(unix_ns) <= 1, "{unix_ns} came back as {back}");
        }
        // Era 1 starts at NTP second 0.
        assert_eq!(Timestamp(0).unix_ns(), 2_085_978_496_000_000_000);
    }

    #[test]
    fn replies_that_are_not_usable_are_refused_with_the_reason() {
        let good = chrony_reply();
        assert_eq!(parse_reply(&good[..47], COOKIE), Err(SntpError::Short(47)));
        let mut client = good;
        client[0] = 0x23;
        assert_eq!(parse_reply(&client, COOKIE), Err(SntpError::NotServer(3)));
        let mut version = good;
        version[0] = (7 << 3) | 4;
        assert_eq!(parse_reply(&version, COOKIE), Err(SntpError::Version(7)));
        assert_eq!(
            parse_reply(&good, Timestamp(COOKIE.0 + 1)),
            Err(SntpError::NotOurs)
        );
        let mut kiss = good;
        kiss[1] = 0;
        kiss[12..16].copy_from_slice(b"RATE");
        assert_eq!(
            parse_reply(&kiss, COOKIE),
            Err(SntpError::KissOfDeath(*b"RATE"))
        );
        let mut alarm = good;
        alarm[0] |= 0xc0;
        assert_eq!(parse_reply(&alarm, COOKIE), Err(SntpError::Unsynchronised));
        let mut stratum16 = good;
        stratum16[1] = 16;
        assert_eq!(
            parse_reply(&stratum16, COOKIE),
            Err(SntpError::Unsynchronised)
        );
        let mut blank = good;
        blank[40..48].fill(0);
        assert_eq!(parse_reply(&blank, COOKIE), Err(SntpError::NoTime));
        // Version 3 servers are still answered.
        let mut v3 = good;
        v3[0] = (3 << 3) | 4;
        assert!(parse_reply(&v3, COOKIE).is_ok());
    }
}
