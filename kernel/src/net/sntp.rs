//! The SNTP client (`ntp=<host>`): sets the wall clock from an NTP server
//! (the packet and its checks are `pure::net::sntp`'s). Where the platform
//! keeps no wall clock (no Xen shared_info, no CMOS clock), this is the
//! only one; where it does, NTP's wins, since a server's clock is the one
//! a network agrees on.
//!
//! The `ntp` thread waits for the interface's address, looks the server
//! up, asks it (three tries, two seconds each), sets the clock and asks
//! again every [`RESYNC_NS`], so the TSC's or kvmclock's drift never grows
//! past what 17 minutes make. A refusal (kiss-o'-death, an unsynchronised
//! server) is logged and the next try waits for the next period.

use super::dns;
use super::socket::{SocketError, UdpSocket};
use crate::vmops::ops;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use pure::net::sntp::{self, SntpError, Timestamp};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

/// How often the clock is set again: 1024 s, NTP's longest default poll.
pub const RESYNC_NS: u64 = 1024 * 1_000_000_000;
const TRIES: usize = 3;
const TRY_TIMEOUT_NS: u64 = 2_000_000_000;

/// Clock settings made, for the shell.
static SYNCS: AtomicU64 = AtomicU64::new(0);

/// Why the clock was not set.
#[derive(Clone, Copy, Debug)]
pub enum NtpError {
    Resolve(dns::ResolveError),
    Socket(SocketError),
    Refused(SntpError),
    /// No usable reply to any try.
    NoReply,
}

impl core::fmt::Display for NtpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NtpError::Resolve(error) => write!(f, "cannot look the server up: {error}"),
            NtpError::Socket(error) => write!(f, "socket: {error}"),
            NtpError::Refused(error) => write!(f, "refused: {error}"),
            NtpError::NoReply => write!(f, "no reply after {TRIES} tries"),
        }
    }
}

/// One good exchange.
pub struct Sample {
    /// Unix nanoseconds at platform-clock time `at_ns`.
    pub unix_ns: u64,
    pub at_ns: u64,
    pub stratum: u8,
    /// Network delay of the exchange.
    pub delay_ns: u64,
}

/// A request cookie nobody can guess from the outside: the TSC's low bits
/// mixed with a counter (RFC 4330 5 only needs the echo to match).
fn cookie() -> Timestamp {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    let tsc = crate::arch::cpu::rdtsc();
    Timestamp(tsc.rotate_left(17) ^ count.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
}

/// Asks `server` for the time.
pub fn query(server: Ipv4Address) -> Result<Sample, NtpError> {
    let socket = UdpSocket::bind(0, 4, 1024).map_err(NtpError::Socket)?;
    let to = IpEndpoint::new(IpAddress::Ipv4(server), sntp::PORT);
    for _ in 0..TRIES {
        let cookie = cookie();
        let sent_at = ops::clock_ns();
        socket
            .send_to(&sntp::request(cookie), to, Some(TRY_TIMEOUT_NS))
            .map_err(NtpError::Socket)?;
        let deadline = sent_at + TRY_TIMEOUT_NS;
        loop {
            let now = ops::clock_ns();
            if now >= deadline {
                break;
            }
            let mut packet = [0u8; 128];
            let (len, from) = match socket.recv_from(&mut packet, Some(deadline - now)) {
                Ok(received) => received,
                Err(SocketError::TimedOut) => break,
                Err(error) => return Err(NtpError::Socket(error)),
            };
            let arrived = ops::clock_ns();
            if from != to {
                log::warn!("ntp: a datagram from {from}, not the server; ignored");
                continue;
            }
            match sntp::parse_reply(&packet[..len.min(packet.len())], cookie) {
                Ok(reply) => {
                    let round_trip = arrived - sent_at;
                    return Ok(Sample {
                        unix_ns: reply.unix_ns_at_arrival(round_trip),
                        at_ns: arrived,
                        stratum: reply.stratum,
                        delay_ns: reply.delay_ns(round_trip),
                    });
                }
                // A late reply to an earlier try: wait on for this one's.
                Err(SntpError::NotOurs) => continue,
                Err(error @ (SntpError::KissOfDeath(_) | SntpError::Unsynchronised)) => {
                    return Err(NtpError::Refused(error))
                }
                Err(error) => {
                    log::warn!("ntp: bad reply from {server}: {error}");
                    continue;
                }
            }
        }
    }
    Err(NtpError::NoReply)
}

/// Looks `host` up, asks it and sets the clock.
pub fn sync(host: &str) -> Result<Sample, NtpError> {
    let addresses = dns::resolve(host).map_err(NtpError::Resolve)?;
    let server = *addresses
        .first()
        .ok_or(NtpError::Resolve(dns::ResolveError::NotFound))?;
    let sample = query(server)?;
    let step = crate::time::set_wall_clock(sample.unix_ns, sample.at_ns);
    SYNCS.fetch_add(1, Ordering::Relaxed);
    let seconds = sample.unix_ns / 1_000_000_000;
    log::info!(
        "ntp: clock set from {host} ({server}, stratum {}): {}, delay {} us{}",
        sample.stratum,
        pure::time::civil::from_unix(seconds),
        sample.delay_ns / 1000,
        match step {
            Some(step) => alloc::format!(", stepped {} ms", step / 1_000_000),
            None => String::new(),
        }
    );
    Ok(sample)
}

/// How many times NTP set the clock.
pub fn syncs() -> u64 {
    SYNCS.load(Ordering::Relaxed)
}

/// First wait after a failed try; it doubles up to [`RESYNC_NS`].
const RETRY_NS: u64 = 8_000_000_000;

/// Sets the clock from `host` now and every [`RESYNC_NS`]; after a
/// failure, tries again sooner (8 s, doubling). Never returns.
pub fn keep_clock(host: &str) -> ! {
    let mut retry = RETRY_NS;
    loop {
        match sync(host) {
            Ok(_) => {
                retry = RETRY_NS;
                crate::sched::sleep_ns(RESYNC_NS);
            }
            Err(error) => {
                log::warn!(
                    "ntp: {host}: {error}; trying again in {} s",
                    retry / 1_000_000_000
                );
                crate::sched::sleep_ns(retry);
                retry = (retry * 2).min(RESYNC_NS);
            }
        }
    }
}
