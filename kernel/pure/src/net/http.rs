//! HTTP/1.1 for a static file server: request parsing, the conditional and
//! range helpers, and response heads. RFC 9110 (HTTP Semantics) and RFC
//! 9112 (HTTP/1.1); section numbers below are theirs.
//!
//! [`parse_request`] takes the bytes received so far and answers
//! [`Parsed::Incomplete`] (read more and call again with everything) or
//! [`Parsed::Complete`] with how many bytes the request used, body
//! included, so a pipelined next request starts right after. Every
//! refusal is an [`HttpError`] carrying its status; after one the framing
//! of the connection is unknown, so the server answers and closes.
//!
//! The [`Limits`] bound what `Incomplete` can ask for: a caller whose
//! buffer holds `max_request_line + 2 + max_header_bytes + max_body` bytes
//! (plus the few empty lines 2.2 lets a client send first) always gets a
//! verdict. Limits are checked as bytes arrive, so an over-long line is
//! refused before its end is seen.
//!
//! What is accepted, and what is refused:
//!
//! - Lines end in CRLF or a bare LF (2.2); a bare CR elsewhere is a 400.
//!   Empty lines before the request line are skipped (2.2).
//! - Request line (3): exactly `method SP target SP version`. A method
//!   that is not a token is a 400; a token that is not one of RFC 9110's
//!   nine methods is a 501 (9.1: "unrecognized or not implemented"). A
//!   version that is not `HTTP/d.d` is a 400; `HTTP/1.0` and `HTTP/1.1`
//!   are served, a later `HTTP/1.x` is served as 1.1 (RFC 9110 6.2: a
//!   higher minor version is processed as the highest one implemented),
//!   any other major version is a 505. A line over the limit is a 414.
//! - Target (3.2): origin-form (`/path?query`); absolute-form
//!   (`http://host/path?query`) is accepted and its authority ignored, as
//!   a server that is its own origin may (3.2.2). Asterisk- and
//!   authority-form, fragments and characters outside RFC 3986's are 400s.
//!   The path is percent-decoded (must then be UTF-8); `%2F` (an encoded
//!   `/`, which would merge two segments), `%00` and the other control
//!   characters are refused. Empty, `.` and `..` segments are resolved
//!   (RFC 3986 5.2.4, but a `..` that would climb above the root is a 400
//!   rather than being dropped) and repeated slashes merged, so
//!   [`Request::path`] is `/` followed by clean segments, with the
//!   trailing `/` kept, since it asks for a directory.
//! - Headers (5): a name is a token, with no whitespace before the colon;
//!   the value has OWS trimmed and must not hold NUL, CR, LF or other
//!   controls (RFC 9110 5.5). A line that starts with whitespace, obs-fold
//!   (5.2), is a 400, as is whitespace before the first header (2.2). Too
//!   many headers, or a header section over its limit, is a 431 (RFC 6585
//!   section 5). HTTP/1.1 requests need exactly one `Host` (3.2).
//! - Body (6): `Content-Length` must be digits; repeated or
//!   comma-separated values must agree (RFC 9110 8.6), else 400. A body,
//!   even on a GET, is read as framing and handed over; one over
//!   `max_body` is a 413. `Transfer-Encoding` is refused: on GET and HEAD,
//!   which have no use for a body, with a 400, as it is on HTTP/1.0
//!   (6.1: faulty framing) or alongside `Content-Length` (6.3: a
//!   smuggling attempt, which a server may reject); otherwise with a 501,
//!   the status 6.1 gives for a transfer coding the server does not
//!   implement, since this one never decodes chunked bodies.

use crate::time::civil::{self, DateTime};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// How much a request may take before it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in the request line, without its line end (over: 414).
    pub max_request_line: usize,
    /// Bytes in the header section, the empty line ending it included
    /// (over: 431).
    pub max_header_bytes: usize,
    /// Header lines (over: 431).
    pub max_headers: usize,
    /// Bytes of body (over: 413).
    pub max_body: usize,
}

impl Limits {
    /// RFC 9112 3 recommends supporting request lines of at least 8000
    /// bytes; browsers' requests have a few dozen headers at most.
    pub const DEFAULT: Limits = Limits {
        max_request_line: 8192,
        max_header_bytes: 16 * 1024,
        max_headers: 64,
        max_body: 16 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The response statuses the server uses, with RFC 9110's reason phrases
/// (section 15; 431 is RFC 6585's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    PartialContent,
    NotModified,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    ContentTooLarge,
    UriTooLong,
    RangeNotSatisfiable,
    RequestHeaderFieldsTooLarge,
    InternalServerError,
    NotImplemented,
    HttpVersionNotSupported,
}

impl Status {
    pub const fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::PartialContent => 206,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::RangeNotSatisfiable => 416,
            Status::RequestHeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::HttpVersionNotSupported => 505,
        }
    }

    pub const fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::PartialContent => "Partial Content",
            Status::NotModified => "Not Modified",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::RangeNotSatisfiable => "Range Not Satisfiable",
            Status::RequestHeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::HttpVersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// Whether a response with this status may have content; of these,
    /// only 304 may not (RFC 9110 15.4.5). A response to HEAD never has
    /// any, whatever its status.
    pub const fn has_content(self) -> bool {
        !matches!(self, Status::NotModified)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}

/// Why a request was refused. After any of these the server sends
/// [`HttpError::status`] and closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request line is over [`Limits::max_request_line`] (414).
    RequestLineTooLong,
    /// The header section is over [`Limits::max_header_bytes`] (431).
    HeaderSectionTooLarge,
    /// More than [`Limits::max_headers`] header lines (431).
    TooManyHeaders,
    /// `Content-Length` over [`Limits::max_body`] (413).
    BodyTooLarge,
    /// Not `method SP target SP version`, a bare CR, or too many empty
    /// lines before it (400).
    BadRequestLine,
    /// The method is not a token (400).
    BadMethod,
    /// A token, but not a method this parser knows (501).
    UnknownMethod,
    /// The version is not `HTTP/d.d` (400).
    BadVersion,
    /// `HTTP/d.d` with a major version other than 1 (505).
    VersionNotSupported,
    /// Not origin- or absolute-form, or characters a URI cannot hold
    /// (400).
    BadTarget,
    /// A `%` not followed by two hex digits, or a path that does not
    /// decode to UTF-8 (400).
    BadPercentEncoding,
    /// `%2F`, `%00` or another encoded control character (400).
    ForbiddenPathByte,
    /// A `..` segment that would go above `/` (400).
    AboveRoot,
    /// A header line without a colon, a name that is not a token or is
    /// followed by whitespace, or a control character in the value (400).
    BadHeader,
    /// A header line starting with whitespace (obs-fold) (400).
    ObsFold,
    /// An HTTP/1.1 request without `Host` (400).
    MissingHost,
    /// More than one `Host`, or one that is not a URI authority (400).
    BadHost,
    /// `Content-Length` not all digits, or values that disagree (400).
    BadContentLength,
    /// `Transfer-Encoding` on GET or HEAD, on HTTP/1.0 or with
    /// `Content-Length` (400).
    BadTransferEncoding,
    /// `Transfer-Encoding` otherwise: request bodies in a transfer coding
    /// are not implemented (501).
    TransferEncodingNotImplemented,
}

impl HttpError {
    pub const fn status(self) -> Status {
        match self {
            HttpError::RequestLineTooLong => Status::UriTooLong,
            HttpError::HeaderSectionTooLarge | HttpError::TooManyHeaders => {
                Status::RequestHeaderFieldsTooLarge
            }
            HttpError::BodyTooLarge => Status::ContentTooLarge,
            HttpError::UnknownMethod | HttpError::TransferEncodingNotImplemented => {
                Status::NotImplemented
            }
            HttpError::VersionNotSupported => Status::HttpVersionNotSupported,
            HttpError::BadRequestLine
            | HttpError::BadMethod
            | HttpError::BadVersion
            | HttpError::BadTarget
            | HttpError::BadPercentEncoding
            | HttpError::ForbiddenPathByte
            | HttpError::AboveRoot
            | HttpError::BadHeader
            | HttpError::ObsFold
            | HttpError::MissingHost
            | HttpError::BadHost
            | HttpError::BadContentLength
            | HttpError::BadTransferEncoding => Status::BadRequest,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            HttpError::RequestLineTooLong => "request line too long",
            HttpError::HeaderSectionTooLarge => "header section too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::BodyTooLarge => "body too large",
            HttpError::BadRequestLine => "malformed request line",
            HttpError::BadMethod => "malformed method",
            HttpError::UnknownMethod => "unknown method",
            HttpError::BadVersion => "malformed HTTP version",
            HttpError::VersionNotSupported => "HTTP major version not supported",
            HttpError::BadTarget => "malformed request target",
            HttpError::BadPercentEncoding => "bad percent-encoding in the path",
            HttpError::ForbiddenPathByte => "encoded '/' or control character in the path",
            HttpError::AboveRoot => "path climbs above the root",
            HttpError::BadHeader => "malformed header field",
            HttpError::ObsFold => "folded header line",
            HttpError::MissingHost => "no Host header",
            HttpError::BadHost => "bad or repeated Host header",
            HttpError::BadContentLength => "bad Content-Length",
            HttpError::BadTransferEncoding => "Transfer-Encoding not allowed here",
            HttpError::TransferEncodingNotImplemented => "Transfer-Encoding not implemented",
        };
        write!(f, "http: {what} ({})", self.status())
    }
}

/// The methods RFC 9110 section 9 defines, plus PATCH (RFC 5789).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

const METHODS: [(&str, Method); 9] = [
    ("GET", Method::Get),
    ("HEAD", Method::Head),
    ("POST", Method::Post),
    ("PUT", Method::Put),
    ("DELETE", Method::Delete),
    ("CONNECT", Method::Connect),
    ("OPTIONS", Method::Options),
    ("TRACE", Method::Trace),
    ("PATCH", Method::Patch),
];

impl Method {
    /// Methods are case-sensitive (RFC 9110 9.1): `get` is not `GET`.
    pub fn from_bytes(token: &[u8]) -> Option<Method> {
        METHODS
            .iter()
            .find(|(name, _)| name.as_bytes() == token)
            .map(|&(_, method)| method)
    }

    pub fn as_str(self) -> &'static str {
        METHODS
            .iter()
            .find(|&&(_, method)| method == self)
            .map_or("", |(name, _)| name)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol version a request was parsed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Http10,
    Http11,
}

/// One header line. Values are bytes: they may hold obs-text (RFC 9110
/// 5.5), which need not be UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// A parsed request, borrowing from the receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// The request target as sent.
    pub target: &'a str,
    /// The decoded, resolved path: starts with `/`, no empty, `.` or `..`
    /// segments, a trailing `/` kept.
    pub path: String,
    /// What follows the first `?`, still percent-encoded.
    pub query: Option<&'a str>,
    pub version: Version,
    /// In the order received.
    pub headers: Vec<Header<'a>>,
    /// `Content-Length` bytes (empty without one).
    pub body: &'a [u8],
}

/// What [`parse_request`] made of the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A valid beginning; call again with more bytes.
    Incomplete,
    /// A whole request, which used the first `consumed` bytes.
    Complete {
        request: Request<'a>,
        consumed: usize,
    },
}

/// tchar (RFC 9110 5.6.2).
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// Bytes a field value may hold between its first and last visible
/// character: VCHAR, obs-text, SP and HTAB (RFC 9110 5.5).
fn is_field_byte(byte: u8) -> bool {
    matches!(byte, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

/// unreserved / sub-delims (RFC 3986 2.3, 2.2).
fn is_unreserved_or_sub_delim(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&byte)
}

/// Characters a request target may hold (RFC 3986's pchar, `/`, `?`,
/// `%` of pct-encoded, and `[` `]` of an IP-literal authority).
fn is_target_byte(byte: u8) -> bool {
    is_unreserved_or_sub_delim(byte) || b":@/?%[]".contains(&byte)
}

/// Trims OWS (SP and HTAB, RFC 9110 5.6.3) from both ends.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// The comma-separated elements of a list-valued field (RFC 9110 5.6.1),
/// OWS trimmed, empty elements skipped.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// The line starting at `start` if its LF lies before `limit`: the line
/// without its CRLF or LF, and where the next one starts.
fn line_at(buf: &[u8], start: usize, limit: usize) -> Option<(&[u8], usize)> {
    let window = &buf[start..buf.len().min(limit).max(start)];
    let lf = window.iter().position(|&b| b == b'\n')?;
    let line = &window[..lf];
    Some((line.strip_suffix(b"\r").unwrap_or(line), start + lf + 1))
}

/// Parses one request from the start of `buf`; see the module docs for
/// what is accepted.
pub fn parse_request<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, HttpError> {
    // 2.2: empty lines before the request line are ignored, within
    // reason.
    let mut start = 0;
    loop {
        match &buf[start..] {
            [] | [b'\r'] => return Ok(Parsed::Incomplete),
            [b'\n', ..] => start += 1,
            [b'\r', b'\n', ..] => start += 2,
            _ => break,
        }
        if start > limits.max_request_line {
            return Err(HttpError::BadRequestLine);
        }
    }

    // The line and its CRLF must end within the limit.
    let line_limit = start
        .saturating_add(limits.max_request_line)
        .saturating_add(2);
    let Some((line, header_start)) = line_at(buf, start, line_limit) else {
        return if buf.len() >= line_limit {
            Err(HttpError::RequestLineTooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if line.len() > limits.max_request_line {
        return Err(HttpError::RequestLineTooLong);
    }
    let (method, target, version) = request_line(line)?;
    let (path, query) = parse_target(target)?;

    let section_limit = header_start.saturating_add(limits.max_header_bytes);
    let mut headers = Vec::new();
    let mut position = header_start;
    let body_start = loop {
        let Some((line, next)) = line_at(buf, position, section_limit) else {
            return if buf.len() >= section_limit {
                Err(HttpError::HeaderSectionTooLarge)
            } else {
                Ok(Parsed::Incomplete)
            };
        };
        if line.is_empty() {
            break next;
        }
        if headers.len() >= limits.max_headers {
            return Err(HttpError::TooManyHeaders);
        }
        headers.push(header_line(line)?);
        position = next;
    };

    let request = Request {
        method,
        target,
        path,
        query,
        version,
        headers,
        body: &[],
    };
    check_host(&request)?;
    let length = body_length(&request)?;
    if length > limits.max_body as u64 {
        return Err(HttpError::BodyTooLarge);
    }
    let body_end = body_start.saturating_add(length as usize);
    let Some(body) = buf.get(body_start..body_end) else {
        return Ok(Parsed::Incomplete);
    };
    Ok(Parsed::Complete {
        request: Request { body, ..request },
        consumed: body_end,
    })
}

fn request_line(line: &[u8]) -> Result<(Method, &str, Version), HttpError> {
    if line.contains(&b'\r') {
        return Err(HttpError::BadRequestLine);
    }
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let (Some(target), Some(version)) = (parts.next(), parts.next()) else {
        return Err(HttpError::BadRequestLine);
    };
    if !is_token(method) {
        return Err(HttpError::BadMethod);
    }
    if target.is_empty() {
        return Err(HttpError::BadRequestLine);
    }
    let version = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Version::Http10,
                (b'1', _) => Version::Http11,
                _ => return Err(HttpError::VersionNotSupported),
            }
        }
        _ => return Err(HttpError::BadVersion),
    };
    let method = Method::from_bytes(method).ok_or(HttpError::UnknownMethod)?;
    if !target.iter().all(|&b| is_target_byte(b)) {
        return Err(HttpError::BadTarget);
    }
    // All ASCII, checked just above.
    let target = core::str::from_utf8(target).map_err(|_| HttpError::BadTarget)?;
    Ok((method, target, version))
}

/// Splits a target (already checked to hold only URI characters) into
/// the resolved path and the query.
fn parse_target(target: &str) -> Result<(String, Option<&str>), HttpError> {
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let scheme_end = target.find("://").ok_or(HttpError::BadTarget)?;
        let scheme = &target[..scheme_end];
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(HttpError::BadTarget);
        }
        let rest = &target[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        // An http URI needs a host (RFC 9110 4.2.1); userinfo is to be
        // treated as an error (4.2.4).
        if authority.is_empty() || authority.contains('@') {
            return Err(HttpError::BadTarget);
        }
        &rest[authority_end..]
    };
    let (raw_path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    if raw_path.contains(['[', ']']) {
        return Err(HttpError::BadTarget);
    }
    Ok((resolve(&percent_decode(raw_path)?)?, query))
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}

fn percent_decode(raw: &str) -> Result<String, HttpError> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte != b'%' {
            decoded.push(byte);
            index += 1;
            continue;
        }
        let high = bytes.get(index + 1).and_then(|&b| hex_value(b));
        let low = bytes.get(index + 2).and_then(|&b| hex_value(b));
        let (Some(high), Some(low)) = (high, low) else {
            return Err(HttpError::BadPercentEncoding);
        };
        let byte = high << 4 | low;
        if byte == b'/' || byte.is_ascii_control() {
            return Err(HttpError::ForbiddenPathByte);
        }
        decoded.push(byte);
        index += 3;
    }
    String::from_utf8(decoded).map_err(|_| HttpError::BadPercentEncoding)
}

/// Resolves `.` and `..` segments and merges slashes; a `..` at the root
/// is an error.
fn resolve(path: &str) -> Result<String, HttpError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut directory = false;
    for segment in path.split('/') {
        directory = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(HttpError::AboveRoot)?;
            }
            segment => segments.push(segment),
        }
    }
    let mut resolved = String::with_capacity(path.len() + 1);
    for segment in &segments {
        resolved.push('/');
        resolved.push_str(segment);
    }
    if directory || segments.is_empty() {
        resolved.push('/');
    }
    Ok(resolved)
}

fn header_line(line: &[u8]) -> Result<Header<'_>, HttpError> {
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        return Err(HttpError::ObsFold);
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::BadHeader)?;
    let name = &line[..colon];
    let value = trim_ows(&line[colon + 1..]);
    if !is_token(name) || !value.iter().all(|&b| is_field_byte(b)) {
        return Err(HttpError::BadHeader);
    }
    Ok(Header {
        // A token is ASCII.
        name: core::str::from_utf8(name).map_err(|_| HttpError::BadHeader)?,
        value,
    })
}

/// RFC 9112 3.2: exactly one Host on HTTP/1.1, at most one on HTTP/1.0,
/// holding a URI authority (possibly empty).
fn check_host(request: &Request<'_>) -> Result<(), HttpError> {
    let mut hosts = request.header_values("host");
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HttpError::BadHost);
    }
    match host {
        None if request.version == Version::Http11 => Err(HttpError::MissingHost),
        None => Ok(()),
        Some(host)
            if host
                .iter()
                .all(|&b| is_unreserved_or_sub_delim(b) || b"%:[]".contains(&b)) =>
        {
            Ok(())
        }
        Some(_) => Err(HttpError::BadHost),
    }
}

/// The body's length from `Content-Length` (RFC 9112 6.3), after
/// refusing `Transfer-Encoding` (see the module docs).
fn body_length(request: &Request<'_>) -> Result<u64, HttpError> {
    let mut length = None;
    for value in request.header_values("content-length") {
        // A header with an empty value is an empty list: still wrong.
        if trim_ows(value).is_empty() {
            return Err(HttpError::BadContentLength);
        }
        for element in value.split(|&b| b == b',').map(trim_ows) {
            let parsed = parse_digits(element).ok_or(HttpError::BadContentLength)?;
            if length.is_some_and(|earlier| earlier != parsed) {
                return Err(HttpError::BadContentLength);
            }
            length = Some(parsed);
        }
    }
    if request.header("transfer-encoding").is_some() {
        let bodiless = matches!(request.method, Method::Get | Method::Head);
        return Err(
            if bodiless || request.version == Version::Http10 || length.is_some() {
                HttpError::BadTransferEncoding
            } else {
                HttpError::TransferEncodingNotImplemented
            },
        );
    }
    Ok(length.unwrap_or(0))
}

/// `1*DIGIT` as a number, `None` if empty, not digits or over `u64`.
fn parse_digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |value, &b| {
        let digit = (b as char).to_digit(10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// `1*DIGIT`, saturating at `u64::MAX` instead of failing.
fn parse_digits_saturating(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0u64, |value, &b| {
        value.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

impl<'a> Request<'a> {
    /// The first value of the header `name` (case-insensitive, RFC 9110
    /// 5.1).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_values(name).next()
    }

    /// Every value of the header `name`, in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    }

    /// The only value of `name`; `None` if absent or repeated.
    fn single_header(&self, name: &str) -> Option<&'a [u8]> {
        let mut values = self.header_values(name);
        let value = values.next()?;
        values.next().is_none().then_some(value)
    }

    fn connection_has(&self, option: &str) -> bool {
        self.header_values("connection")
            .flat_map(list_elements)
            .any(|element| element.eq_ignore_ascii_case(option.as_bytes()))
    }

    /// Whether the connection stays open after the response (RFC 9112
    /// 9.3): HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive` (and no `close`).
    pub fn keep_alive(&self) -> bool {
        if self.connection_has("close") {
            return false;
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => self.connection_has("keep-alive"),
        }
    }

    /// `If-Modified-Since` as Unix seconds. `None` when it must be
    /// ignored (RFC 9110 13.1.3): absent, repeated, not a valid
    /// HTTP-date, or on a method other than GET and HEAD. `now` is for
    /// the two-digit years of the obsolete format.
    pub fn if_modified_since(&self, now: u64) -> Option<u64> {
        if !matches!(self.method, Method::Get | Method::Head) {
            return None;
        }
        parse_http_date(self.single_header("if-modified-since")?, now).ok()
    }

    /// Whether to answer 304 for a representation last modified at
    /// `last_modified` (RFC 9110 13.2.2, for a server without entity
    /// tags). With `If-None-Match` present `If-Modified-Since` is not
    /// looked at (13.1.3); no tag can match ours, so only `*` (any
    /// current representation) gives a 304. Otherwise it is 304 when the
    /// representation is no newer than `If-Modified-Since`. Only GET and
    /// HEAD: the server answers other methods with 405 anyway.
    pub fn not_modified(&self, last_modified: u64, now: u64) -> bool {
        if !matches!(self.method, Method::Get | Method::Head) {
            return false;
        }
        let mut none_match = self.header_values("if-none-match").peekable();
        if none_match.peek().is_some() {
            return none_match.any(|value| trim_ows(value) == b"*");
        }
        self.if_modified_since(now)
            .is_some_and(|since| last_modified <= since)
    }

    /// The part of a `length`-byte representation last modified at
    /// `last_modified` to send (RFC 9110 14.2, 13.1.5). `Range` counts
    /// only on GET and only once; with `If-Range`, only if it is a date
    /// equal to `last_modified` (an entity tag cannot match, since the
    /// server has none). See [`parse_range`].
    pub fn range(&self, length: u64, last_modified: u64, now: u64) -> RangeResult {
        if self.method != Method::Get {
            return RangeResult::Full;
        }
        let Some(range) = self.single_header("range") else {
            return RangeResult::Full;
        };
        let mut if_range = self.header_values("if-range");
        if let Some(validator) = if_range.next() {
            let matches =
                if_range.next().is_none() && parse_http_date(validator, now) == Ok(last_modified);
            if !matches {
                return RangeResult::Full;
            }
        }
        parse_range(range, length)
    }
}

/// What to send of a representation, from its `Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeResult {
    /// All of it, 200.
    Full,
    /// Bytes `start..=end` (inclusive, as `Content-Range` writes them),
    /// 206.
    Partial(u64, u64),
    /// Nothing: 416 with `Content-Range: bytes */length`.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a representation of `length`
/// bytes (RFC 9110 14.1.2, 14.2). One range only: `bytes=a-b` (`b`
/// clamped to the end), `bytes=a-` and `bytes=-n` (the last `n` bytes,
/// all of it if shorter). A server may ignore `Range` (14.2), and this
/// one does, giving [`RangeResult::Full`], when the value is malformed,
/// the unit is not `bytes`, `b < a` (an invalid range-spec, 14.1.1), the
/// representation is empty, or there are several ranges: merging
/// multiple ranges into a multipart/byteranges response is not done, so
/// a client asking for several gets the whole. A single range starting
/// at or after the end, or `-0`, is [`RangeResult::Unsatisfiable`].
pub fn parse_range(value: &[u8], length: u64) -> RangeResult {
    let value = trim_ows(value);
    let Some(equals) = value.iter().position(|&b| b == b'=') else {
        return RangeResult::Full;
    };
    let (unit, set) = (&value[..equals], &value[equals + 1..]);
    if !unit.eq_ignore_ascii_case(b"bytes") || set.contains(&b',') || length == 0 {
        return RangeResult::Full;
    }
    let spec = trim_ows(set);
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeResult::Full;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    let last_byte = length - 1;
    if first.is_empty() {
        return match parse_digits_saturating(last) {
            None => RangeResult::Full,
            Some(0) => RangeResult::Unsatisfiable,
            Some(suffix) => RangeResult::Partial(length.saturating_sub(suffix), last_byte),
        };
    }
    let Some(first) = parse_digits_saturating(first) else {
        return RangeResult::Full;
    };
    let last = match last {
        [] => u64::MAX,
        digits => match parse_digits_saturating(digits) {
            Some(last) if last >= first => last,
            _ => return RangeResult::Full,
        },
    };
    if first >= length {
        return RangeResult::Unsatisfiable;
    }
    RangeResult::Partial(first, last.min(last_byte))
}

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A value that is not an HTTP-date (RFC 9110 5.6.7), or one before 1970.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadDate;

impl fmt::Display for BadDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("http: not an HTTP-date")
    }
}

/// A fixed-width ASCII reader for the date formats.
struct DateText<'a>(&'a [u8]);

impl<'a> DateText<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn literal(&mut self, expected: &str) -> Option<()> {
        (self.take(expected.len())? == expected.as_bytes()).then_some(())
    }

    fn number(&mut self, digits: usize) -> Option<u32> {
        let text = self.take(digits)?;
        let value = parse_digits(text)?;
        u32::try_from(value).ok()
    }

    fn name(&mut self, names: &[&str]) -> Option<u32> {
        let found = names
            .iter()
            .position(|name| self.0.starts_with(name.as_bytes()))?;
        self.take(names[found].len())?;
        Some(found as u32)
    }

    /// `hour ":" minute ":" second`, each two digits.
    fn time(&mut self) -> Option<(u32, u32, u32)> {
        let hour = self.number(2)?;
        self.literal(":")?;
        let minute = self.number(2)?;
        self.literal(":")?;
        Some((hour, minute, self.number(2)?))
    }

    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(text: &mut DateText<'_>) -> Option<DateTime> {
    text.name(&DAY_NAMES)?;
    text.literal(", ")?;
    let day = text.number(2)?;
    text.literal(" ")?;
    let month = text.name(&MONTH_NAMES)? + 1;
    text.literal(" ")?;
    let year = text.number(4)?;
    text.literal(" ")?;
    let (hour, minute, second) = text.time()?;
    text.literal(" GMT")?;
    text.end()?;
    Some(DateTime {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`, the two-digit year taken as the one
/// within 50 years of `now`'s (RFC 9110 5.6.7).
fn rfc850_date(text: &mut DateText<'_>, now: u64) -> Option<DateTime> {
    text.name(&LONG_DAY_NAMES)?;
    text.literal(", ")?;
    let day = text.number(2)?;
    text.literal("-")?;
    let month = text.name(&MONTH_NAMES)? + 1;
    text.literal("-")?;
    let two_digits = i64::from(text.number(2)?);
    text.literal(" ")?;
    let (hour, minute, second) = text.time()?;
    text.literal(" GMT")?;
    text.end()?;
    let this_year = civil::from_unix(now).year;
    let mut year = this_year - this_year.rem_euclid(100) + two_digits;
    if year > this_year + 50 {
        year -= 100;
    } else if year <= this_year - 50 {
        year += 100;
    }
    Some(DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `Sun Nov  6 08:49:37 1994`
fn asctime_date(text: &mut DateText<'_>) -> Option<DateTime> {
    text.name(&DAY_NAMES)?;
    text.literal(" ")?;
    let month = text.name(&MONTH_NAMES)? + 1;
    text.literal(" ")?;
    let day = match text.take(2)? {
        [b' ', digit] => parse_digits(&[*digit])? as u32,
        digits => parse_digits(digits)? as u32,
    };
    text.literal(" ")?;
    let (hour, minute, second) = text.time()?;
    text.literal(" ")?;
    let year = text.number(4)?;
    text.end()?;
    Some(DateTime {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// An HTTP-date (RFC 9110 5.6.7) as Unix seconds: IMF-fixdate or either
/// obsolete format, case-sensitive as the RFC says, surrounding OWS
/// ignored. The day name is checked to be a day name, not to match the
/// date. `now` (Unix seconds) places the obsolete format's two-digit
/// years.
pub fn parse_http_date(value: &[u8], now: u64) -> Result<u64, BadDate> {
    let value = trim_ows(value);
    imf_fixdate(&mut DateText(value))
        .or_else(|| rfc850_date(&mut DateText(value), now))
        .or_else(|| asctime_date(&mut DateText(value)))
        .and_then(|date| date.to_unix())
        .ok_or(BadDate)
}

/// The last instant IMF-fixdate's four-digit year can show,
/// 9999-12-31T23:59:59Z.
pub const MAX_HTTP_DATE: u64 = 253_402_300_799;

/// Unix seconds displayed as an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37
/// GMT` (RFC 9110 5.6.7); instants after [`MAX_HTTP_DATE`] show as it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpDate(pub u64);

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.min(MAX_HTTP_DATE);
        let date = civil::from_unix(seconds);
        write!(
            f,
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            DAY_NAMES[civil::weekday(seconds) as usize],
            date.day,
            MONTH_NAMES[(date.month - 1) as usize],
            date.year,
            date.hour,
            date.minute,
            date.second
        )
    }
}

/// The media type for a file, by its extension (case-insensitive), for
/// `Content-Type`. Text types say UTF-8; JavaScript is `text/javascript`
/// (RFC 9239). Anything unknown is `application/octet-stream`.
pub fn content_type(path: &str) -> &'static str {
    const TYPES: [(&str, &str); 20] = [
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("json", "application/json"),
        ("txt", "text/plain; charset=utf-8"),
        ("xml", "application/xml"),
        ("svg", "image/svg+xml"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("gif", "image/gif"),
        ("webp", "image/webp"),
        ("ico", "image/x-icon"),
        ("wasm", "application/wasm"),
        ("pdf", "application/pdf"),
        ("woff", "font/woff"),
        ("woff2", "font/woff2"),
        ("mp4", "video/mp4"),
    ];
    let file = path.rsplit('/').next().unwrap_or(path);
    let extension = match file.rsplit_once('.') {
        // `.profile` is a name, not an extension.
        Some((stem, extension)) if !stem.is_empty() => extension,
        _ => return "application/octet-stream",
    };
    TYPES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(extension))
        .map_or("application/octet-stream", |&(_, media_type)| media_type)
}

/// The `Content-Range` of a 206 or 416 (RFC 9110 14.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ContentRange {
    /// `bytes start-end/length`
    Bytes { start: u64, end: u64, length: u64 },
    /// `bytes */length`
    Unsatisfied { length: u64 },
}

/// A response's status line and headers, written by
/// [`ResponseHead::write_to`] in this order: status line (always
/// `HTTP/1.1`, RFC 9110 6.2), `Date`, `Server: sanos`, `Content-Type`,
/// `Content-Length`, `Last-Modified`, `Accept-Ranges`, `Content-Range`,
/// `Allow`, `Connection`, then the empty line. Headers not set are left
/// out, except `Server` and `Connection`, which are always sent.
///
/// Which headers go with which status is the caller's business: RFC 9110
/// 15.4.5 says what a 304 may carry, 15.5.6 that a 405 must have `Allow`,
/// 15.5.17 that a 416 should have `Content-Range: bytes */length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    status: Status,
    date: Option<u64>,
    content_type: Option<&'static str>,
    content_length: Option<u64>,
    last_modified: Option<u64>,
    accept_ranges: bool,
    content_range: Option<ContentRange>,
    allow: &'a [Method],
    keep_alive: bool,
}

impl<'a> ResponseHead<'a> {
    /// A head with only the status; the connection closes unless
    /// [`ResponseHead::keep_alive`] says otherwise.
    pub fn new(status: Status) -> Self {
        ResponseHead {
            status,
            date: None,
            content_type: None,
            content_length: None,
            last_modified: None,
            accept_ranges: false,
            content_range: None,
            allow: &[],
            keep_alive: false,
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// `Date`, the time of the response (RFC 9110 6.6.1).
    pub fn date(self, unix_seconds: u64) -> Self {
        ResponseHead {
            date: Some(unix_seconds),
            ..self
        }
    }

    /// `Content-Type`; a `&'static str` such as [`content_type`] returns,
    /// so no CR or LF from a request can reach the head.
    pub fn content_type(self, media_type: &'static str) -> Self {
        ResponseHead {
            content_type: Some(media_type),
            ..self
        }
    }

    pub fn content_length(self, length: u64) -> Self {
        ResponseHead {
            content_length: Some(length),
            ..self
        }
    }

    pub fn last_modified(self, unix_seconds: u64) -> Self {
        ResponseHead {
            last_modified: Some(unix_seconds),
            ..self
        }
    }

    /// `Accept-Ranges: bytes` (RFC 9110 14.3).
    pub fn accept_ranges(self) -> Self {
        ResponseHead {
            accept_ranges: true,
            ..self
        }
    }

    /// `Content-Range: bytes start-end/length`, for a 206 of
    /// [`RangeResult::Partial`]`(start, end)`.
    pub fn content_range(self, start: u64, end: u64, length: u64) -> Self {
        ResponseHead {
            content_range: Some(ContentRange::Bytes { start, end, length }),
            ..self
        }
    }

    /// `Content-Range: bytes */length`, for a 416.
    pub fn unsatisfied_range(self, length: u64) -> Self {
        ResponseHead {
            content_range: Some(ContentRange::Unsatisfied { length }),
            ..self
        }
    }

    /// `Allow`, the methods the resource supports, for a 405.
    pub fn allow(self, methods: &'a [Method]) -> Self {
        ResponseHead {
            allow: methods,
            ..self
        }
    }

    /// `Connection: keep-alive` if true, else `Connection: close`.
    pub fn keep_alive(self, keep_alive: bool) -> Self {
        ResponseHead { keep_alive, ..self }
    }

    /// Appends the head, CRLF line ends and the final empty line
    /// included, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = fmt::write(&mut VecWriter(out), format_args!("{self}"));
    }
}

impl fmt::Display for ResponseHead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP/1.1 {}\r\n", self.status)?;
        if let Some(date) = self.date {
            write!(f, "Date: {}\r\n", HttpDate(date))?;
        }
        f.write_str("Server: sanos\r\n")?;
        if let Some(media_type) = self.content_type {
            write!(f, "Content-Type: {media_type}\r\n")?;
        }
        if let Some(length) = self.content_length {
            write!(f, "Content-Length: {length}\r\n")?;
        }
        if let Some(modified) = self.last_modified {
            write!(f, "Last-Modified: {}\r\n", HttpDate(modified))?;
        }
        if self.accept_ranges {
            f.write_str("Accept-Ranges: bytes\r\n")?;
        }
        match self.content_range {
            Some(ContentRange::Bytes { start, end, length }) => {
                write!(f, "Content-Range: bytes {start}-{end}/{length}\r\n")?;
            }
            Some(ContentRange::Unsatisfied { length }) => {
                write!(f, "Content-Range: bytes */{length}\r\n")?;
            }
            None => {}
        }
        if !self.allow.is_empty() {
            f.write_str("Allow: ")?;
            for (index, method) in self.allow.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(method.as_str())?;
            }
            f.write_str("\r\n")?;
        }
        let connection = if self.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        write!(f, "Connection: {connection}\r\n\r\n")
    }
}

struct VecWriter<'v>(&'v mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;

    const SUN_06_NOV_1994: u64 = 784_111_777;
    /// 2026-01-01T00:00:00Z, a "now" for the two-digit years.
    const NOW: u64 = 1_767_225_600;

    fn parse(bytes: &[u8]) -> Result<Parsed<'_>, HttpError> {
        parse_request(bytes, &Limits::DEFAULT)
    }

    fn complete(bytes: &[u8]) -> (Request<'_>, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { request, consumed }) => (request, consumed),
            other => panic!(
                "{:?}: {other:?}",
                std::string::String::from_utf8_lossy(bytes)
            ),
        }
    }

    fn request(bytes: &[u8]) -> Request<'_> {
        complete(bytes).0
    }

    fn error(bytes: &[u8]) -> HttpError {
        match parse(bytes) {
            Err(error) => error,
            other => panic!(
                "{:?}: {other:?}",
                std::string::String::from_utf8_lossy(bytes)
            ),
        }
    }

    /// A GET of `target` with a Host header.
    fn get(target: &str) -> Vec<u8> {
        format!("GET {target} HTTP/1.1\r\nHost: example.com\r\n\r\n").into_bytes()
    }

    fn path_of(target: &str) -> Result<String, HttpError> {
        let bytes = get(target);
        parse(&bytes).map(|parsed| match parsed {
            Parsed::Complete { request, .. } => request.path,
            Parsed::Incomplete => panic!("incomplete"),
        })
    }

    /// A GET with extra header lines.
    fn with_headers(headers: &str) -> Vec<u8> {
        format!("GET /f HTTP/1.1\r\nHost: h\r\n{headers}\r\n").into_bytes()
    }

    #[test]
    fn simple_get() {
        let bytes = b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  curl/8.0 \r\nAccept: */*\r\n\r\n";
        let (request, consumed) = complete(bytes);
        assert_eq!(consumed, bytes.len());
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.target, "/index.html?x=1");
        assert_eq!(request.path, "/index.html");
        assert_eq!(request.query, Some("x=1"));
        assert_eq!(request.version, Version::Http11);
        assert_eq!(request.headers.len(), 3);
        assert_eq!(request.header("user-agent"), Some(&b"curl/8.0"[..]));
        assert_eq!(request.header("HOST"), Some(&b"example.com"[..]));
        assert_eq!(request.header("missing"), None);
        assert_eq!(request.body, b"");
        assert!(request.keep_alive());
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let bytes = b"\r\nPOST /a/b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
        }
        let (request, consumed) = complete(bytes);
        assert_eq!(consumed, bytes.len());
        assert_eq!(request.body, b"hello");
    }

    #[test]
    fn pipelined_requests() {
        let mut bytes = get("/one");
        let first_len = bytes.len();
        bytes.extend_from_slice(&get("/two"));
        let (first, consumed) = complete(&bytes);
        assert_eq!(first.path, "/one");
        assert_eq!(consumed, first_len);
        let (second, rest) = complete(&bytes[consumed..]);
        assert_eq!(second.path, "/two");
        assert_eq!(consumed + rest, bytes.len());
    }

    #[test]
    fn bare_lf_line_ends() {
        let bytes = b"GET / HTTP/1.1\nHost: h\n\n";
        let (request, consumed) = complete(bytes);
        assert_eq!(consumed, bytes.len());
        assert_eq!(request.header("host"), Some(&b"h"[..]));
        // Mixed.
        let (_, consumed) = complete(b"GET / HTTP/1.1\r\nHost: h\n\r\n");
        assert_eq!(consumed, 26);
    }

    #[test]
    fn bare_cr_is_refused() {
        assert_eq!(
            error(b"GET /\r HTTP/1.1\r\nHost: h\r\n\r\n"),
            HttpError::BadRequestLine
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\r\nHost: h\r\n\r\n"),
            HttpError::BadRequestLine
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"),
            HttpError::BadHeader
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"),
            HttpError::BadHeader
        );
        // A CR-terminated header section.
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n"),
            HttpError::BadHeader
        );
    }

    #[test]
    fn leading_empty_lines() {
        let (request, consumed) = complete(b"\r\n\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(request.path, "/");
        assert_eq!(consumed, 5 + 16 + 9 + 2);
        assert_eq!(parse(b"\r\n\r\n"), Ok(Parsed::Incomplete));
        let limits = Limits {
            max_request_line: 10,
            ..Limits::DEFAULT
        };
        assert_eq!(
            parse_request(&[b'\n'; 11], &limits),
            Err(HttpError::BadRequestLine)
        );
        assert_eq!(parse_request(&[b'\n'; 10], &limits), Ok(Parsed::Incomplete));
        // A lone CR then something else is a bare CR.
        assert_eq!(
            error(b"\rGET / HTTP/1.1\r\n\r\n"),
            HttpError::BadRequestLine
        );
    }

    #[test]
    fn request_line_limit() {
        let limits = Limits {
            max_request_line: 20,
            ..Limits::DEFAULT
        };
        // "GET /" + padding + " HTTP/1.1" is exactly 20 bytes.
        let at_limit = b"GET /abcdef HTTP/1.1\r\nHost: h\r\n\r\n";
        assert!(matches!(
            parse_request(at_limit, &limits),
            Ok(Parsed::Complete { .. })
        ));
        let over = b"GET /abcdefg HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(
            parse_request(over, &limits),
            Err(HttpError::RequestLineTooLong)
        );
        // Refused before the line ends...
        assert_eq!(
            parse_request(&over[..22], &limits),
            Err(HttpError::RequestLineTooLong)
        );
        // ...but not while it could still be within the limit.
        assert_eq!(parse_request(&over[..21], &limits), Ok(Parsed::Incomplete));
        assert_eq!(
            parse_request(&at_limit[..21], &limits),
            Ok(Parsed::Incomplete)
        );
        assert_eq!(HttpError::RequestLineTooLong.status().code(), 414);
    }

    #[test]
    fn header_section_limits() {
        let limits = Limits {
            max_header_bytes: 32,
            max_headers: 3,
            ..Limits::DEFAULT
        };
        // "Host: h\r\n" (9) + "A: " and 16 digits and CRLF (21) + the
        // final CRLF (2) is exactly 32.
        let fits = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1234567890123456\r\n\r\n";
        assert!(matches!(
            parse_request(fits, &limits),
            Ok(Parsed::Complete { .. })
        ));
        let over = b"GET / HTTP/1.1\r\nHost: h\r\nA: 12345678901234567\r\n\r\n";
        assert_eq!(
            parse_request(over, &limits),
            Err(HttpError::HeaderSectionTooLarge)
        );
        // Refused without waiting for the end.
        assert_eq!(
            parse_request(&over[..16 + 32], &limits),
            Err(HttpError::HeaderSectionTooLarge)
        );
        assert_eq!(
            parse_request(&over[..16 + 31], &limits),
            Ok(Parsed::Incomplete)
        );
        let many = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(parse_request(many, &limits), Err(HttpError::TooManyHeaders));
        let three = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(matches!(
            parse_request(three, &limits),
            Ok(Parsed::Complete { .. })
        ));
        assert_eq!(HttpError::TooManyHeaders.status().code(), 431);
        assert_eq!(HttpError::HeaderSectionTooLarge.status().code(), 431);
    }

    #[test]
    fn methods() {
        for (name, method) in METHODS {
            let bytes = format!("{name} / HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes();
            assert_eq!(request(&bytes).method, method);
            assert_eq!(method.as_str(), name);
            assert_eq!(method.to_string(), name);
        }
        assert_eq!(error(b"get / HTTP/1.1\r\n\r\n"), HttpError::UnknownMethod);
        assert_eq!(error(b"BREW / HTTP/1.1\r\n\r\n"), HttpError::UnknownMethod);
        assert_eq!(HttpError::UnknownMethod.status().code(), 501);
        assert_eq!(error(b"G(T / HTTP/1.1\r\n\r\n"), HttpError::BadMethod);
        assert_eq!(error(b" / HTTP/1.1\r\n\r\n"), HttpError::BadMethod);
        assert_eq!(error(b"GET\t/ HTTP/1.1\r\n\r\n"), HttpError::BadRequestLine);
        assert_eq!(HttpError::BadMethod.status().code(), 400);
    }

    #[test]
    fn request_line_shape() {
        for line in [
            &b"GET /\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"\x00\r\n\r\n",
        ] {
            let error = error(line);
            assert!(
                matches!(error, HttpError::BadRequestLine | HttpError::BadMethod),
                "{line:?}: {error:?}"
            );
        }
        assert_eq!(error(b"GET / HTTP/1.1 \r\n\r\n"), HttpError::BadVersion);
        assert_eq!(error(b"GET / HTTP/1.1 x\r\n\r\n"), HttpError::BadVersion);
    }

    #[test]
    fn versions() {
        assert_eq!(request(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
        assert_eq!(
            request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").version,
            Version::Http11
        );
        // A later 1.x is served as 1.1 (RFC 9110 6.2), so it needs Host.
        assert_eq!(
            request(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n").version,
            Version::Http11
        );
        for version in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9"] {
            let bytes = format!("GET / {version}\r\n\r\n").into_bytes();
            assert_eq!(error(&bytes), HttpError::VersionNotSupported, "{version}");
        }
        assert_eq!(HttpError::VersionNotSupported.status().code(), 505);
        for version in [
            "http/1.1",
            "HTTP/1",
            "HTTP/1.10",
            "HTTP/11",
            "HTTP/a.b",
            "HTTP 1.1",
            "HTTPS/1.1",
            "",
        ] {
            let bytes = format!("GET / {version}\r\n\r\n").into_bytes();
            assert_eq!(error(&bytes), HttpError::BadVersion, "{version:?}");
        }
    }

    #[test]
    fn absolute_form_keeps_the_path() {
        let bytes = b"GET http://example.com:8080/a/b?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
        let request = request(bytes);
        assert_eq!(request.path, "/a/b");
        assert_eq!(request.query, Some("q=1"));
        assert_eq!(request.target, "http://example.com:8080/a/b?q=1");
        assert_eq!(path_of("HTTPS://example.com").unwrap(), "/");
        assert_eq!(path_of("http://[::1]:80/x").unwrap(), "/x");
        let with_query = get("http://h?x");
        assert_eq!(self::request(&with_query).query, Some("x"));
        assert_eq!(path_of("http://h?x").unwrap(), "/");
        for target in [
            "ftp://example.com/",
            "http:///a",
            "http://user@example.com/",
            "example.com:80",
            "*",
            "a/b",
            "//",
        ] {
            let expected = if target == "//" {
                Ok(String::from("/"))
            } else {
                Err(HttpError::BadTarget)
            };
            assert_eq!(path_of(target), expected, "{target}");
        }
    }

    #[test]
    fn target_characters() {
        for target in [
            "/a\"b", "/a<b>", "/a#frag", "/a\\b", "/a^b", "/a`b", "/a{b}", "/a|b", "/é", "/a[b]",
            "/x?a[b]",
        ] {
            if target == "/x?a[b]" {
                // Brackets may appear in the query as far as this parser
                // cares (they are allowed in the authority).
                assert!(path_of(target).is_ok());
                continue;
            }
            assert_eq!(path_of(target), Err(HttpError::BadTarget), "{target}");
        }
        assert_eq!(
            path_of("/a-b_c.d~e!$&'()*+,;=:@").unwrap(),
            "/a-b_c.d~e!$&'()*+,;=:@"
        );
        let bytes = b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(error(bytes), HttpError::BadTarget);
        // A space splits the line differently: still a 400.
        assert_eq!(path_of("/a b"), Err(HttpError::BadVersion));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(path_of("/%41%62c").unwrap(), "/Abc");
        assert_eq!(path_of("/a%20b").unwrap(), "/a b");
        assert_eq!(path_of("/%e2%9c%93/%C3%A9").unwrap(), "/✓/é");
        assert_eq!(path_of("/100%25").unwrap(), "/100%");
        for target in [
            "/a%2Fb", "/a%2fb", "/%00", "/a%0a", "/%0D%0A", "/%7f", "/%1b",
        ] {
            assert_eq!(
                path_of(target),
                Err(HttpError::ForbiddenPathByte),
                "{target}"
            );
        }
        for target in [
            "/%", "/%4", "/%zz", "/%4g", "/a%", "/%ff", "/%c3", "/%c3%28",
        ] {
            assert_eq!(
                path_of(target),
                Err(HttpError::BadPercentEncoding),
                "{target}"
            );
        }
        // The query is left encoded, and may hold what the path may not.
        let bytes = get("/s?q=%2F%00");
        assert_eq!(request(&bytes).query, Some("q=%2F%00"));
    }

    #[test]
    fn dot_segments() {
        for (target, path) in [
            ("/", "/"),
            ("/a", "/a"),
            ("/a/", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("/./", "/"),
            ("//a///b//", "/a/b/"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/.%2E", "/"),
            ("/..a/b..", "/..a/b.."),
            ("/.../x", "/.../x"),
            ("/a/../b/../c/./d/..", "/c/"),
        ] {
            assert_eq!(path_of(target).unwrap(), path, "{target}");
        }
        for target in [
            "/..",
            "/../",
            "/../a",
            "/a/../..",
            "/a/../../b",
            "/%2e%2e",
            "/./..",
            "//..",
        ] {
            assert_eq!(path_of(target), Err(HttpError::AboveRoot), "{target}");
        }
        assert_eq!(HttpError::AboveRoot.status().code(), 400);
    }

    #[test]
    fn queries() {
        assert_eq!(request(&get("/a?")).query, Some(""));
        assert_eq!(request(&get("/a")).query, None);
        assert_eq!(request(&get("/a?x=1?y=/")).query, Some("x=1?y=/"));
        assert_eq!(request(&get("/a?x=1?y=/")).path, "/a");
        assert_eq!(request(&get("/?")).path, "/");
    }

    #[test]
    fn header_syntax() {
        let mut bytes = with_headers("X-A:value\r\nX-B: \t spaced out \t\r\nX-Empty:\r\n");
        bytes.truncate(bytes.len() - 2);
        bytes.extend_from_slice(b"X-Obs: caf\xe9\r\n\r\n");
        let request = request(&bytes);
        assert_eq!(request.header("x-a"), Some(&b"value"[..]));
        assert_eq!(request.header("x-b"), Some(&b"spaced out"[..]));
        assert_eq!(request.header("x-empty"), Some(&b""[..]));
        assert_eq!(request.header("x-obs"), Some(&b"caf\xe9"[..]));
        assert_eq!(request.headers[1].name, "X-A");
        assert_eq!(error(&with_headers("X-A : v\r\n")), HttpError::BadHeader);
        assert_eq!(error(&with_headers("X-A\t: v\r\n")), HttpError::BadHeader);
        assert_eq!(error(&with_headers("no colon\r\n")), HttpError::BadHeader);
        assert_eq!(error(&with_headers(": v\r\n")), HttpError::BadHeader);
        assert_eq!(error(&with_headers("X(A): v\r\n")), HttpError::BadHeader);
        assert_eq!(
            error(&with_headers("X-A: a\x00b\r\n")),
            HttpError::BadHeader
        );
        assert_eq!(
            error(&with_headers("X-A: a\x7fb\r\n")),
            HttpError::BadHeader
        );
        assert_eq!(error(&with_headers("X-A: a\x01\r\n")), HttpError::BadHeader);
        // Colons after the first are value.
        let bytes = with_headers("X-Url: http://x:1/\r\n");
        assert_eq!(
            self::request(&bytes).header("x-url"),
            Some(&b"http://x:1/"[..])
        );
    }

    #[test]
    fn obs_fold_is_refused() {
        assert_eq!(
            error(&with_headers("X-A: one\r\n two\r\n")),
            HttpError::ObsFold
        );
        assert_eq!(
            error(&with_headers("X-A: one\r\n\ttwo\r\n")),
            HttpError::ObsFold
        );
        // Whitespace between the request line and the first header.
        assert_eq!(
            error(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
            HttpError::ObsFold
        );
    }

    #[test]
    fn host_rules() {
        assert_eq!(error(b"GET / HTTP/1.1\r\n\r\n"), HttpError::MissingHost);
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            HttpError::BadHost
        );
        assert_eq!(
            error(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
            HttpError::BadHost
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            HttpError::BadHost
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
            HttpError::BadHost
        );
        for host in [
            "",
            "example.com",
            "example.com:8080",
            "10.0.0.1",
            "[::1]:80",
            "xn--bcher-kva.ch",
        ] {
            let bytes = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
            assert!(
                matches!(parse(&bytes), Ok(Parsed::Complete { .. })),
                "{host}"
            );
        }
        assert!(matches!(
            parse(b"GET / HTTP/1.0\r\n\r\n"),
            Ok(Parsed::Complete { .. })
        ));
        assert_eq!(HttpError::MissingHost.status().code(), 400);
    }

    #[test]
    fn content_length_frames_the_body() {
        let bytes = with_headers("Content-Length: 5\r\n");
        let mut bytes = bytes;
        bytes.extend_from_slice(b"helloGET ");
        let (request, consumed) = complete(&bytes);
        assert_eq!(request.body, b"hello");
        assert_eq!(request.method, Method::Get);
        assert_eq!(consumed, bytes.len() - 4);
        for header in [
            "Content-Length: 5, 5\r\n",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "Content-Length: 005\r\n",
            "Content-Length:5 \r\n",
        ] {
            let mut bytes = with_headers(header);
            bytes.extend_from_slice(b"hello");
            assert_eq!(complete(&bytes).0.body, b"hello", "{header}");
        }
        let bytes = with_headers("Content-Length: 0\r\n");
        assert_eq!(complete(&bytes).1, bytes.len());
    }

    #[test]
    fn bad_content_lengths() {
        for header in [
            "Content-Length: 5, 6",
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: +5",
            "Content-Length: -1",
            "Content-Length: 5a",
            "Content-Length: 0x10",
            "Content-Length: 5 5",
            "Content-Length: ",
            "Content-Length: 5,",
            "Content-Length: ,5",
            "Content-Length: 99999999999999999999999",
        ] {
            let bytes = with_headers(&format!("{header}\r\n"));
            assert_eq!(error(&bytes), HttpError::BadContentLength, "{header}");
        }
        assert_eq!(HttpError::BadContentLength.status().code(), 400);
    }

    #[test]
    fn body_limit() {
        let limits = Limits {
            max_body: 4,
            ..Limits::DEFAULT
        };
        let mut bytes = with_headers("Content-Length: 4\r\n");
        bytes.extend_from_slice(b"abcd");
        assert!(matches!(
            parse_request(&bytes, &limits),
            Ok(Parsed::Complete { .. })
        ));
        // Refused as soon as the head is in, without waiting for a body.
        let bytes = with_headers("Content-Length: 5\r\n");
        assert_eq!(parse_request(&bytes, &limits), Err(HttpError::BodyTooLarge));
        let bytes = with_headers("Content-Length: 18446744073709551615\r\n");
        assert_eq!(parse_request(&bytes, &limits), Err(HttpError::BodyTooLarge));
        assert_eq!(HttpError::BodyTooLarge.status().code(), 413);
        // Waiting for the body.
        let mut bytes = with_headers("Content-Length: 4\r\n");
        bytes.extend_from_slice(b"abc");
        assert_eq!(parse_request(&bytes, &limits), Ok(Parsed::Incomplete));
    }

    #[test]
    fn transfer_encoding_is_refused() {
        let post = |extra: &str, version: &str| {
            format!("POST /f HTTP/{version}\r\nHost: h\r\n{extra}\r\n").into_bytes()
        };
        assert_eq!(
            error(&with_headers("Transfer-Encoding: chunked\r\n")),
            HttpError::BadTransferEncoding
        );
        assert_eq!(
            error(b"HEAD / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HttpError::BadTransferEncoding
        );
        assert_eq!(
            error(&post("Transfer-Encoding: chunked\r\n", "1.1")),
            HttpError::TransferEncodingNotImplemented
        );
        assert_eq!(
            error(&post("Transfer-Encoding: gzip, chunked\r\n", "1.1")),
            HttpError::TransferEncodingNotImplemented
        );
        assert_eq!(
            error(&post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "1.1"
            )),
            HttpError::BadTransferEncoding
        );
        assert_eq!(
            error(&post("Transfer-Encoding: chunked\r\n", "1.0")),
            HttpError::BadTransferEncoding
        );
        assert_eq!(HttpError::BadTransferEncoding.status().code(), 400);
        assert_eq!(
            HttpError::TransferEncodingNotImplemented.status().code(),
            501
        );
    }

    #[test]
    fn keep_alive_rules() {
        let line = |version: &str, connection: &str| {
            format!("GET / HTTP/{version}\r\nHost: h\r\n{connection}\r\n").into_bytes()
        };
        for (version, connection, keep) in [
            ("1.1", "", true),
            ("1.1", "Connection: close\r\n", false),
            ("1.1", "Connection: CLOSE\r\n", false),
            ("1.1", "Connection: keep-alive\r\n", true),
            ("1.1", "Connection: Upgrade, close\r\n", false),
            (
                "1.1",
                "Connection: keep-alive\r\nConnection: close\r\n",
                false,
            ),
            ("1.1", "Connection: closed\r\n", true),
            ("1.0", "", false),
            ("1.0", "Connection: keep-alive\r\n", true),
            ("1.0", "Connection: Keep-Alive\r\n", true),
            ("1.0", "Connection: foo,  keep-alive ,bar\r\n", true),
            ("1.0", "Connection: keep-alive, close\r\n", false),
        ] {
            let bytes = line(version, connection);
            assert_eq!(
                request(&bytes).keep_alive(),
                keep,
                "{version} {connection:?}"
            );
        }
    }

    #[test]
    fn http_dates_in_three_formats() {
        for value in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT\t",
        ] {
            assert_eq!(
                parse_http_date(value.as_bytes(), NOW),
                Ok(SUN_06_NOV_1994),
                "{value}"
            );
        }
        assert_eq!(
            parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT", NOW),
            Ok(0)
        );
        assert_eq!(
            parse_http_date(b"Thu Feb 29 12:00:00 2024", NOW),
            Ok(1_709_208_000)
        );
        assert_eq!(
            parse_http_date(b"Fri, 31 Dec 9999 23:59:59 GMT", NOW),
            Ok(MAX_HTTP_DATE)
        );
    }

    #[test]
    fn malformed_http_dates() {
        for value in [
            "",
            "yesterday",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT junk",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT\x00",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov 06 08:49:37 94",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Sunday Nov  6 08:49:37 1994",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT\u{e9}",
        ] {
            assert_eq!(
                parse_http_date(value.as_bytes(), NOW),
                Err(BadDate),
                "{value}"
            );
        }
        assert_eq!(parse_http_date(b"\xff\xfe", NOW), Err(BadDate));
        assert_eq!(BadDate.to_string(), "http: not an HTTP-date");
    }

    #[test]
    fn two_digit_years_stay_within_fifty_years_of_now() {
        let year_of = |value: &str, now| {
            parse_http_date(value.as_bytes(), now).map(|s| civil::from_unix(s).year)
        };
        // Now is 2026: 76 is 50 years ahead (allowed), 77 too far.
        assert_eq!(year_of("Wednesday, 01-Jan-76 00:00:00 GMT", NOW), Ok(2076));
        assert_eq!(year_of("Friday, 01-Jan-77 00:00:00 GMT", NOW), Ok(1977));
        assert_eq!(year_of("Sunday, 01-Jan-00 00:00:00 GMT", NOW), Ok(2000));
        assert_eq!(year_of("Sunday, 01-Jan-26 00:00:00 GMT", NOW), Ok(2026));
        // In 2099, 00 is next year rather than 99 years ago.
        let in_2099 = 4_070_908_800;
        assert_eq!(
            year_of("Saturday, 01-Jan-00 00:00:00 GMT", in_2099),
            Ok(2100)
        );
        assert_eq!(year_of("Thursday, 01-Jan-70 00:00:00 GMT", 0), Ok(1970));
        // In 1970, 69 is 1969 (2069 is too far ahead), which is before
        // Unix seconds begin.
        assert_eq!(year_of("Tuesday, 01-Jan-69 00:00:00 GMT", 0), Err(BadDate));
        assert_eq!(year_of("Tuesday, 01-Jan-20 00:00:00 GMT", 0), Ok(2020));
    }

    #[test]
    fn formats_imf_fixdate() {
        assert_eq!(
            HttpDate(SUN_06_NOV_1994).to_string(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(HttpDate(0).to_string(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            HttpDate(951_782_400).to_string(),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            HttpDate(u64::MAX).to_string(),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        let mut seconds = 0;
        while seconds < MAX_HTTP_DATE {
            let text = HttpDate(seconds).to_string();
            assert_eq!(text.len(), 29);
            assert_eq!(parse_http_date(text.as_bytes(), NOW), Ok(seconds), "{text}");
            seconds += 86_399 * 97 + 13;
        }
    }

    #[test]
    fn conditional_get() {
        let modified = SUN_06_NOV_1994;
        let ims = |date: &str| with_headers(&format!("If-Modified-Since: {date}\r\n"));
        let same = ims("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(request(&same).if_modified_since(NOW), Some(modified));
        assert!(request(&same).not_modified(modified, NOW));
        assert!(request(&same).not_modified(modified - 1, NOW));
        assert!(!request(&same).not_modified(modified + 1, NOW));
        let bad = ims("last tuesday");
        assert_eq!(request(&bad).if_modified_since(NOW), None);
        assert!(!request(&bad).not_modified(0, NOW));
        assert!(!request(&get("/")).not_modified(0, NOW));
        // Repeated: ignored.
        let twice = with_headers(
            "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
        );
        assert!(!request(&twice).not_modified(0, NOW));
        // Only GET and HEAD.
        let head = b"HEAD / HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        assert!(request(head).not_modified(modified, NOW));
        let post = b"POST / HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        assert_eq!(request(post).if_modified_since(NOW), None);
        assert!(!request(post).not_modified(modified, NOW));
        // If-None-Match takes over.
        let tagged = with_headers(
            "If-None-Match: \"abc\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
        );
        assert!(!request(&tagged).not_modified(modified, NOW));
        let star = with_headers("If-None-Match: *\r\n");
        assert!(request(&star).not_modified(modified, NOW));
    }

    #[test]
    fn ranges() {
        use RangeResult::*;
        for (value, length, expected) in [
            ("bytes=0-499", 1000, Partial(0, 499)),
            ("bytes=500-999", 1000, Partial(500, 999)),
            ("bytes=500-5000", 1000, Partial(500, 999)),
            ("bytes=999-999", 1000, Partial(999, 999)),
            ("bytes=9500-", 10_000, Partial(9500, 9999)),
            ("bytes=0-", 10, Partial(0, 9)),
            ("bytes=-500", 10_000, Partial(9500, 9999)),
            ("bytes=-500", 100, Partial(0, 99)),
            ("bytes=-1", 1, Partial(0, 0)),
            ("BYTES=1-2", 10, Partial(1, 2)),
            (" bytes=1-2 ", 10, Partial(1, 2)),
            ("bytes= 1-2", 10, Partial(1, 2)),
            ("bytes=0-99999999999999999999999", 10, Partial(0, 9)),
            ("bytes=-99999999999999999999999", 10, Partial(0, 9)),
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=1000-2000", 1000, Unsatisfiable),
            ("bytes=99999999999999999999999-", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            // Ignored: served whole.
            ("bytes=0-1,5-6", 1000, Full),
            ("bytes=0-1, 5-6", 1000, Full),
            ("bytes=0-1,", 1000, Full),
            ("bytes=5-1", 1000, Full),
            ("bytes=-", 1000, Full),
            ("bytes=", 1000, Full),
            ("bytes", 1000, Full),
            ("items=0-1", 1000, Full),
            ("bytes=a-b", 1000, Full),
            ("bytes=1 - 2", 1000, Full),
            ("bytes=+1-2", 1000, Full),
            ("bytes=1-2-3", 1000, Full),
            ("bytes=--1", 1000, Full),
            ("bytes=0-0", 0, Full),
            ("bytes=-5", 0, Full),
            ("", 1000, Full),
        ] {
            assert_eq!(
                parse_range(value.as_bytes(), length),
                expected,
                "{value} of {length}"
            );
        }
    }

    #[test]
    fn request_ranges_and_if_range() {
        let modified = SUN_06_NOV_1994;
        let ranged = with_headers("Range: bytes=0-9\r\n");
        assert_eq!(
            request(&ranged).range(100, modified, NOW),
            RangeResult::Partial(0, 9)
        );
        assert_eq!(
            request(&get("/")).range(100, modified, NOW),
            RangeResult::Full
        );
        let head = b"HEAD / HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\n\r\n";
        assert_eq!(request(head).range(100, modified, NOW), RangeResult::Full);
        let twice = with_headers("Range: bytes=0-9\r\nRange: bytes=0-9\r\n");
        assert_eq!(request(&twice).range(100, modified, NOW), RangeResult::Full);
        let matching =
            with_headers("Range: bytes=0-9\r\nIf-Range: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        assert_eq!(
            request(&matching).range(100, modified, NOW),
            RangeResult::Partial(0, 9)
        );
        assert_eq!(
            request(&matching).range(100, modified + 1, NOW),
            RangeResult::Full
        );
        let etag = with_headers("Range: bytes=0-9\r\nIf-Range: \"xyz\"\r\n");
        assert_eq!(request(&etag).range(100, modified, NOW), RangeResult::Full);
    }

    #[test]
    fn content_types() {
        for (path, media_type) in [
            ("/index.html", "text/html; charset=utf-8"),
            ("/INDEX.HTM", "text/html; charset=utf-8"),
            ("/s/site.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("mod.mjs", "text/javascript; charset=utf-8"),
            ("data.json", "application/json"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("feed.xml", "application/xml"),
            ("logo.svg", "image/svg+xml"),
            ("a.png", "image/png"),
            ("a.jpg", "image/jpeg"),
            ("a.JPEG", "image/jpeg"),
            ("a.gif", "image/gif"),
            ("a.webp", "image/webp"),
            ("favicon.ico", "image/x-icon"),
            ("m.wasm", "application/wasm"),
            ("doc.pdf", "application/pdf"),
            ("f.woff", "font/woff"),
            ("f.woff2", "font/woff2"),
            ("v.mp4", "video/mp4"),
            ("archive.tar.gz", "application/octet-stream"),
            ("Makefile", "application/octet-stream"),
            ("/.html", "application/octet-stream"),
            ("/dir.html/file", "application/octet-stream"),
            ("/file.", "application/octet-stream"),
            ("/", "application/octet-stream"),
            ("", "application/octet-stream"),
            ("a.x.html", "text/html; charset=utf-8"),
        ] {
            assert_eq!(content_type(path), media_type, "{path}");
        }
    }

    fn head_text(head: &ResponseHead<'_>) -> String {
        let mut out = Vec::new();
        head.write_to(&mut out);
        assert_eq!(head.to_string().as_bytes(), &out[..]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_heads() {
        let head = ResponseHead::new(Status::Ok)
            .date(SUN_06_NOV_1994)
            .content_type(content_type("/index.html"))
            .content_length(1234)
            .last_modified(0)
            .accept_ranges()
            .keep_alive(true);
        assert_eq!(
            head_text(&head),
            "HTTP/1.1 200 OK\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Server: sanos\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             Content-Length: 1234\r\n\
             Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             Accept-Ranges: bytes\r\n\
             Connection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            head_text(&ResponseHead::new(Status::NotFound)),
            "HTTP/1.1 404 Not Found\r\nServer: sanos\r\nConnection: close\r\n\r\n"
        );
        let partial = ResponseHead::new(Status::PartialContent)
            .content_length(10)
            .content_range(0, 9, 100);
        assert!(head_text(&partial).contains("\r\nContent-Range: bytes 0-9/100\r\n"));
        let unsatisfied = ResponseHead::new(Status::RangeNotSatisfiable).unsatisfied_range(100);
        assert!(head_text(&unsatisfied).starts_with("HTTP/1.1 416 Range Not Satisfiable\r\n"));
        assert!(head_text(&unsatisfied).contains("\r\nContent-Range: bytes */100\r\n"));
        let not_allowed = ResponseHead::new(Status::MethodNotAllowed)
            .allow(&[Method::Get, Method::Head])
            .content_length(0);
        assert_eq!(
            head_text(&not_allowed),
            "HTTP/1.1 405 Method Not Allowed\r\nServer: sanos\r\nContent-Length: 0\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(not_allowed.status(), Status::MethodNotAllowed);
        // Appends.
        let mut out = b"prefix".to_vec();
        ResponseHead::new(Status::NotModified).write_to(&mut out);
        assert!(out.starts_with(b"prefixHTTP/1.1 304 Not Modified\r\n"));
        assert!(out.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn statuses() {
        for (status, code, reason) in [
            (Status::Ok, 200, "OK"),
            (Status::PartialContent, 206, "Partial Content"),
            (Status::NotModified, 304, "Not Modified"),
            (Status::BadRequest, 400, "Bad Request"),
            (Status::NotFound, 404, "Not Found"),
            (Status::MethodNotAllowed, 405, "Method Not Allowed"),
            (Status::RequestTimeout, 408, "Request Timeout"),
            (Status::ContentTooLarge, 413, "Content Too Large"),
            (Status::UriTooLong, 414, "URI Too Long"),
            (Status::RangeNotSatisfiable, 416, "Range Not Satisfiable"),
            (
                Status::RequestHeaderFieldsTooLarge,
                431,
                "Request Header Fields Too Large",
            ),
            (Status::InternalServerError, 500, "Internal Server Error"),
            (Status::NotImplemented, 501, "Not Implemented"),
            (
                Status::HttpVersionNotSupported,
                505,
                "HTTP Version Not Supported",
            ),
        ] {
            assert_eq!(status.code(), code);
            assert_eq!(status.reason(), reason);
            assert_eq!(status.to_string(), format!("{code} {reason}"));
            assert_eq!(status.has_content(), code != 304);
        }
        assert_eq!(
            HttpError::AboveRoot.to_string(),
            "http: path climbs above the root (400 Bad Request)"
        );
        assert_eq!(
            HttpError::RequestLineTooLong.to_string(),
            "http: request line too long (414 URI Too Long)"
        );
    }

    /// A small deterministic generator, so the garbage tests are
    /// reproducible.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    fn check_any(bytes: &[u8], limits: &Limits) {
        match parse_request(bytes, limits) {
            Ok(Parsed::Complete { request, consumed }) => {
                assert!(consumed <= bytes.len());
                assert!(request.path.starts_with('/'));
                assert!(!request.path.contains("//"));
                assert!(!request.path.split('/').any(|s| s == ".." || s == "."));
            }
            Ok(Parsed::Incomplete) => {
                // Incomplete never asks for more than the limits allow.
                let bound =
                    limits.max_request_line * 2 + 2 + limits.max_header_bytes + limits.max_body;
                assert!(bytes.len() <= bound, "{} bytes", bytes.len());
            }
            Err(_) => {}
        }
    }

    #[test]
    fn mutated_requests_never_panic() {
        let base = b"GET /a/b/../c.html?q=%41 HTTP/1.1\r\nHost: example.com\r\nRange: bytes=0-5\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc";
        let limits = Limits::DEFAULT;
        for position in 0..base.len() {
            for value in [0u8, b' ', b'\r', b'\n', b':', b'%', b'/', b'.', b'9', 0xff] {
                let mut bytes = base.to_vec();
                bytes[position] = value;
                check_any(&bytes, &limits);
                bytes.remove(position);
                check_any(&bytes, &limits);
            }
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        let limits = Limits {
            max_request_line: 64,
            max_header_bytes: 128,
            max_headers: 4,
            max_body: 16,
        };
        let alphabet = b"GET /.%2fHTP1:\r\n \tContent-Length0123456789,abchost";
        let mut random = Lcg(42);
        for _ in 0..20_000 {
            let length = (random.next() % 300) as usize;
            let bytes: Vec<u8> = (0..length)
                .map(|_| alphabet[(random.next() % alphabet.len() as u64) as usize])
                .collect();
            check_any(&bytes, &limits);
        }
        // And plain noise.
        for _ in 0..2_000 {
            let length = (random.next() % 400) as usize;
            let bytes: Vec<u8> = (0..length).map(|_| random.next() as u8).collect();
            check_any(&bytes, &limits);
        }
    }
}
