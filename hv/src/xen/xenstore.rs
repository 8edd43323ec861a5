//! The xenstore wire protocol (`xen/include/public/io/xs_wire.h`): messages
//! are an `xsd_sockmsg` header (type, request id, transaction id, payload
//! length) and a payload of NUL-separated strings, exchanged over two
//! 1 KiB rings in the shared `xenstore_domain_interface` page. This module
//! encodes requests, parses replies and does the ring arithmetic; the
//! kernel's client moves the bytes and waits.

use super::bindings::{xsd_sockmsg_type, XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE, XS_ERROR};
use core::fmt;

/// Size of the message header.
pub const HEADER_LEN: usize = 16;

/// A message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: xsd_sockmsg_type,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.kind.to_le_bytes());
        out[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        out[12..16].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Header {
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Header {
            kind: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        }
    }
}

/// What went wrong in a xenstore exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XsError {
    /// The daemon answered XS_ERROR with this errno name (ENOENT, EACCES,
    /// EINVAL, ...).
    Errno(&'static str),
    /// A request or reply longer than `XENSTORE_PAYLOAD_MAX`.
    TooLong(usize),
    /// A reply that does not parse (bad header, wrong request id...).
    Malformed(&'static str),
    /// No xenstore on this platform, or no reply in time.
    Unavailable,
    Timeout,
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XsError::Errno(name) => write!(f, "xenstore error {name}"),
            XsError::TooLong(len) => {
                write!(f, "message of {len} bytes exceeds {XENSTORE_PAYLOAD_MAX}")
            }
            XsError::Malformed(why) => write!(f, "malformed xenstore reply: {why}"),
            XsError::Unavailable => write!(f, "no xenstore here"),
            XsError::Timeout => write!(f, "no xenstore reply in time"),
        }
    }
}

/// The errno names `xs_wire.h`'s `xsd_errors` lists.
const ERRNO_NAMES: [&str; 18] = [
    "EINVAL",
    "EACCES",
    "EEXIST",
    "EISDIR",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "EIO",
    "ENOTEMPTY",
    "ENOSYS",
    "EROFS",
    "EBUSY",
    "EAGAIN",
    "EISCONN",
    "E2BIG",
    "EPERM",
    "ENOTDIR",
    "ELOOP",
];

/// Turns a reply into its payload, or the error it carries.
pub fn check_reply(header: &Header, payload: &[u8]) -> Result<(), XsError> {
    if header.kind != XS_ERROR {
        return Ok(());
    }
    let name = payload.split(|&b| b == 0).next().unwrap_or_default();
    Err(XsError::Errno(
        ERRNO_NAMES
            .iter()
            .find(|known| known.as_bytes() == name)
            .copied()
            .unwrap_or("unknown error"),
    ))
}

/// Builds a request's payload from its strings: each is followed by a NUL
/// except a raw last value (XS_WRITE's data).
pub fn payload(parts: &[&[u8]], raw_last: bool, out: &mut [u8]) -> Result<usize, XsError> {
    let mut len = 0;
    for (i, part) in parts.iter().enumerate() {
        let nul = !(raw_last && i == parts.len() - 1);
        let needed = len + part.len() + usize::from(nul);
        if needed > XENSTORE_PAYLOAD_MAX as usize || needed > out.len() {
            return Err(XsError::TooLong(needed));
        }
        out[len..len + part.len()].copy_from_slice(part);
        len += part.len();
        if nul {
            out[len] = 0;
            len += 1;
        }
    }
    Ok(len)
}

/// Bytes the producer may still write into a ring (`prod`, `cons` free
/// running). A corrupt pair reads as full.
pub fn ring_space(prod: u32, cons: u32) -> u32 {
    XENSTORE_RING_SIZE.saturating_sub(prod.wrapping_sub(cons))
}

/// Bytes waiting in a ring for the consumer. A corrupt pair reads as empty.
pub fn ring_available(prod: u32, cons: u32) -> u32 {
    let used = prod.wrapping_sub(cons);
    if used > XENSTORE_RING_SIZE {
        0
    } else {
        used
    }
}

#[cfg(test)]
mod tests {
    use super::super::bindings::{XS_READ, XS_WATCH_EVENT};
    use super::*;

    #[test]
    fn headers_round_trip_little_endian() {
        let header = Header {
            kind: XS_READ,
            req_id: 7,
            tx_id: 0,
            len: 5,
        };
        let bytes = header.encode();
        assert_eq!(&bytes[..4], &[2, 0, 0, 0]);
        assert_eq!(&bytes[4..8], &[7, 0, 0, 0]);
        assert_eq!(Header::decode(&bytes), header);
    }

    #[test]
    fn payloads_nul_separate_and_refuse_overflow() {
        let mut out = [0u8; 4096];
        let len = payload(&[b"control/shutdown", b"token"], false, &mut out).unwrap();
        assert_eq!(&out[..len], b"control/shutdown\0token\0");
        let len = payload(&[b"data/x", b"value"], true, &mut out).unwrap();
        assert_eq!(&out[..len], b"data/x\0value");
        let big = [b'a'; 5000];
        assert_eq!(
            payload(&[&big], false, &mut out),
            Err(XsError::TooLong(5001))
        );
    }

    #[test]
    fn error_replies_name_the_errno() {
        let error = Header {
            kind: XS_ERROR,
            req_id: 1,
            tx_id: 0,
            len: 7,
        };
        assert_eq!(
            check_reply(&error, b"ENOENT\0"),
            Err(XsError::Errno("ENOENT"))
        );
        assert_eq!(
            check_reply(&error, b"EACCES\0"),
            Err(XsError::Errno("EACCES"))
        );
        assert_eq!(
            check_reply(&error, b"EWHAT\0"),
            Err(XsError::Errno("unknown error"))
        );
        let fine = Header {
            kind: XS_WATCH_EVENT,
            ..error
        };
        assert_eq!(check_reply(&fine, b""), Ok(()));
    }

    #[test]
    fn ring_arithmetic_wraps_and_distrusts_corrupt_indices() {
        assert_eq!(ring_space(0, 0), 1024);
        assert_eq!(ring_space(1024, 0), 0);
        assert_eq!(ring_space(3, u32::MAX), 1020);
        assert_eq!(ring_available(3, u32::MAX), 4);
        assert_eq!(ring_available(0, 5), 0);
        assert_eq!(ring_space(0, 5), 0);
    }
}
