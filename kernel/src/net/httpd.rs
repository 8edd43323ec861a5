//! The HTTP/1.1 server, the default appliance (RFC 9110, 9112): GET and
//! HEAD of the files of the site image (a cpio archive passed as the boot
//! module), `index.html` for folders, content types by extension,
//! `Last-Modified`/`If-Modified-Since`, single `Range`s, keep-alive and
//! pipelining, and the refusals the parser names (400, 404, 405, 408,
//! 413, 414, 431, 501, 505). `/status` answers what the kernel is doing.
//!
//! One acceptor thread takes connections from a listener with a backlog;
//! each connection is served by a thread of its own, at most
//! [`MAX_CONNECTIONS`] at once (the acceptor waits for one to end). Limits
//! per connection: [`REQUESTS_PER_CONNECTION`] requests, [`IDLE_NS`]
//! between requests, [`REQUEST_NS`] to finish one begun (else 408).

use super::socket::{SocketError, TcpListener, TcpStream};
use crate::sched::sync::Semaphore;
use crate::vmops::ops;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use pure::fs::cpio::Archive;
use pure::net::http::{
    content_type, parse_request, HttpError, Limits, Method, Parsed, RangeResult, Request,
    ResponseHead, Status,
};

/// Connections served at once.
pub const MAX_CONNECTIONS: u32 = 64;
/// Connections in their handshake or waiting for a thread (the
/// listener's backlog).
pub const BACKLOG: usize = 256;
pub const REQUESTS_PER_CONNECTION: u32 = 1000;
/// How long a kept-alive connection may sit idle.
pub const IDLE_NS: u64 = 15_000_000_000;
/// How long a client may take to send a request it began.
pub const REQUEST_NS: u64 = 10_000_000_000;
/// How long one write of a response may wait for the client to read.
const WRITE_NS: u64 = 30_000_000_000;

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// (requests answered, connections accepted, requests refused).
pub fn counters() -> (u64, u64, u64) {
    (
        REQUESTS.load(Ordering::Relaxed),
        CONNECTIONS.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    )
}

const ALLOWED: &[Method] = &[Method::Get, Method::Head];

/// The default appliance: serves the site image (the boot module, a cpio
/// archive) on port 80 once a NIC is up; says why not otherwise.
pub fn start_appliance(boot: &pure::boot::bootinfo::BootInfo<'_>) {
    if super::status().is_none() {
        log::info!("http: no network interface; not serving");
        return;
    }
    let bytes = crate::boot::module_bytes(boot);
    let site = if bytes.is_empty() {
        log::warn!("http: no site image (boot module); serving an empty site");
        Archive::parse(EMPTY_ARCHIVE)
    } else {
        Archive::parse(bytes)
    };
    let site = match site {
        Ok(site) => site,
        Err(error) => {
            log::error!("http: the boot module is no cpio (newc) archive: {error}; not serving");
            return;
        }
    };
    let site: &'static Archive<'static> = alloc::boxed::Box::leak(alloc::boxed::Box::new(site));
    if let Err(error) = start(site, 80) {
        log::error!("http: cannot listen on port 80: {error}");
    }
}

/// A newc archive with nothing but its trailer.
const EMPTY_ARCHIVE: &[u8] = b"07070100000000000000000000000000000000000000010000000000000000000000000000000000000000000000000000000B00000000TRAILER!!!\0\0\0\0";

/// Starts serving `site` on `port`.
pub fn start(site: &'static Archive<'static>, port: u16) -> Result<(), SocketError> {
    // Requests are small: a 16 KiB receive window; responses are not.
    let listener = TcpListener::bind(port, BACKLOG, 16 * 1024, super::socket::TX_BUFFER)?;
    let slots = Semaphore::new(MAX_CONNECTIONS, MAX_CONNECTIONS);
    let spawned = crate::sched::spawn("httpd", move || accept_loop(listener, slots, site));
    if let Err(error) = spawned {
        log::error!("http: cannot start the acceptor: {error:?}");
        return Err(SocketError::NoInterface);
    }
    log::info!(
        "http: serving {} files on port {port}",
        site.entries().filter(|(_, e)| e.is_file()).count()
    );
    Ok(())
}

fn accept_loop(listener: TcpListener, slots: Semaphore, site: &'static Archive<'static>) -> u64 {
    loop {
        slots.wait(None);
        let stream = loop {
            match listener.accept(None) {
                Ok(stream) => break stream,
                Err(error) => {
                    log::error!("http: accept: {error}");
                    crate::sched::sleep_ns(100_000_000);
                }
            }
        };
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let slot = slots.clone();
        let spawned = crate::sched::spawn("http-conn", move || {
            serve(stream, site);
            // Always below the maximum: this connection held a slot.
            let _ = slot.release(1);
            0
        });
        if let Err(error) = spawned {
            log::error!("http: no thread for a connection: {error:?}");
            // The connection was dropped with the closure; its slot too.
            let _ = slots.release(1);
        }
    }
}

/// Serves one connection until it closes, errs, idles out or asks to.
fn serve(mut stream: TcpStream, site: &Archive<'_>) {
    let limits = Limits::DEFAULT;
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = alloc::vec![0u8; 4096];
    let mut served = 0u32;
    let mut out = Vec::new();
    loop {
        // Answer every complete request buffered (pipelining).
        loop {
            let parsed = parse_request(&buffer, &limits);
            let (keep_alive, consumed) = match parsed {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Complete { request, consumed }) => {
                    served += 1;
                    out.clear();
                    let keep = request.keep_alive() && served < REQUESTS_PER_CONNECTION;
                    let body = respond(&request, site, keep, &mut out);
                    REQUESTS.fetch_add(1, Ordering::Relaxed);
                    if stream.write_all(&out, Some(WRITE_NS)).is_err()
                        || stream.write_all(body, Some(WRITE_NS)).is_err()
                    {
                        return;
                    }
                    (keep, consumed)
                }
                Err(error) => {
                    refuse(&mut stream, error.status());
                    log::debug!("http: refused: {error}");
                    return;
                }
            };
            buffer.drain(..consumed);
            if !keep_alive {
                return;
            }
        }
        let timeout = if buffer.is_empty() {
            IDLE_NS
        } else {
            REQUEST_NS
        };
        match stream.read(&mut chunk, Some(timeout)) {
            Ok(0) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(SocketError::TimedOut) if !buffer.is_empty() => {
                refuse(&mut stream, Status::RequestTimeout);
                return;
            }
            Err(_) => return,
        }
        // The parser refuses what is over its limits before this grows
        // past them; this bounds a client that sends nothing it can parse.
        if buffer.len() > limits.max_header_bytes + limits.max_request_line + limits.max_body {
            refuse(&mut stream, HttpError::HeaderSectionTooLarge.status());
            return;
        }
    }
}

/// Sends an error status and closes.
fn refuse(stream: &mut TcpStream, status: Status) {
    REFUSED.fetch_add(1, Ordering::Relaxed);
    let mut out = Vec::new();
    let body = alloc::format!("{status}\n");
    response(status)
        .content_type("text/plain; charset=utf-8")
        .content_length(body.len() as u64)
        .keep_alive(false)
        .write_to(&mut out);
    out.extend_from_slice(body.as_bytes());
    // The connection closes either way; a client gone meanwhile is fine.
    let _ = stream.write_all(&out, Some(REQUEST_NS));
}

/// A response head with `Date` where the wall clock is known (RFC 9110
/// 6.6.1: an origin server with a clock must send it).
fn response(status: Status) -> ResponseHead<'static> {
    let response = ResponseHead::new(status);
    match crate::time::wall_clock_ns() {
        Some(ns) => response.date(ns / 1_000_000_000),
        None => response,
    }
}

/// Builds the response head in `out` and returns the body to send.
fn respond<'s>(
    request: &Request<'_>,
    site: &'s Archive<'s>,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> &'s [u8] {
    if !ALLOWED.contains(&request.method) {
        response(Status::MethodNotAllowed)
            .allow(ALLOWED)
            .content_length(0)
            .keep_alive(keep_alive)
            .write_to(out);
        return &[];
    }
    let head_only = request.method == Method::Head;
    if request.path == "/status" {
        let json = request
            .header("accept")
            .is_some_and(|accept| accept.windows(16).any(|w| w == b"application/json"));
        let body = status_page(json);
        response(Status::Ok)
            .content_type(if json {
                "application/json"
            } else {
                "text/html; charset=utf-8"
            })
            .content_length(body.len() as u64)
            .keep_alive(keep_alive)
            .write_to(out);
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
        return &[];
    }
    let path = request.path.trim_start_matches('/');
    let (path, entry) = match site.get(path) {
        Some(entry) => (String::from(path), entry),
        None => {
            let index = if path.is_empty() {
                String::from("index.html")
            } else {
                alloc::format!("{}/index.html", path.trim_end_matches('/'))
            };
            match site
                .get(&index)
                .filter(|_| path.is_empty() || site.is_dir(path))
            {
                Some(entry) => (index, entry),
                None => {
                    let body: &'static [u8] = b"404 Not Found\n";
                    response(Status::NotFound)
                        .content_type("text/plain; charset=utf-8")
                        .content_length(body.len() as u64)
                        .keep_alive(keep_alive)
                        .write_to(out);
                    return if head_only { &[] } else { body };
                }
            }
        }
    };
    let modified = u64::from(entry.mtime);
    // Without a wall clock, dates are compared as sent (none is in the
    // future).
    let now = crate::time::wall_clock_ns().map_or(u64::MAX, |ns| ns / 1_000_000_000);
    if request.not_modified(modified, now) {
        response(Status::NotModified)
            .last_modified(modified)
            .keep_alive(keep_alive)
            .write_to(out);
        return &[];
    }
    let length = entry.data.len() as u64;
    let head = response(Status::Ok)
        .content_type(content_type(&path))
        .last_modified(modified)
        .accept_ranges()
        .keep_alive(keep_alive);
    let (head, body) = match request.range(length, modified, now) {
        RangeResult::Full => (head.content_length(length), entry.data),
        RangeResult::Partial(start, end) => (
            response(Status::PartialContent)
                .content_type(content_type(&path))
                .last_modified(modified)
                .accept_ranges()
                .keep_alive(keep_alive)
                .content_range(start, end, length)
                .content_length(end - start + 1),
            &entry.data[start as usize..=end as usize],
        ),
        RangeResult::Unsatisfiable => (
            response(Status::RangeNotSatisfiable)
                .unsatisfied_range(length)
                .content_length(0)
                .keep_alive(keep_alive),
            &[][..],
        ),
    };
    head.write_to(out);
    if head_only {
        &[]
    } else {
        body
    }
}

/// `/status`: what the appliance is and does.
fn status_page(json: bool) -> String {
    let chosen = crate::backend::chosen();
    let platform = chosen.map_or("?", |c| c.platform.name());
    let backend = chosen.map_or("?", |c| c.backend.name());
    let mode = chosen.map_or("?", |c| c.mode.name());
    let uptime_ms = ops::clock_ns() / 1_000_000;
    let (free, total) = crate::mm::frames::counts();
    let heap = crate::mm::heap::in_use();
    let threads = crate::sched::threads().len();
    let (requests, connections, refused) = counters();
    let net = super::status();
    let clock = crate::time::wall_clock_ns().map_or(String::from("unknown"), |ns| {
        alloc::format!("{}", pure::time::civil::Rfc3339(ns))
    });
    let ntp_syncs = super::sntp::syncs();
    let (nic, address, c) = match &net {
        Some(s) => (
            s.name.as_str(),
            s.address
                .map_or(String::from("none"), |a| alloc::format!("{a}")),
            s.counters,
        ),
        None => ("none", String::from("none"), Default::default()),
    };
    if json {
        alloc::format!(
            "{{\"uptime_ms\":{uptime_ms},\"wall_clock\":\"{clock}\",\"ntp_syncs\":{ntp_syncs},\"platform\":\"{platform}\",\"backend\":\"{backend}\",\"vmops\":\"{mode}\",\"threads\":{threads},\"memory\":{{\"free_frames\":{free},\"frames\":{total},\"heap_in_use\":{heap}}},\"nic\":{{\"name\":\"{nic}\",\"address\":\"{address}\",\"rx_packets\":{},\"rx_bytes\":{},\"rx_drops\":{},\"rx_errors\":{},\"tx_packets\":{},\"tx_bytes\":{},\"tx_drops\":{},\"tx_errors\":{}}},\"http\":{{\"requests\":{requests},\"connections\":{connections},\"refused\":{refused}}}}}\n",
            c.rx_packets, c.rx_bytes, c.rx_drops, c.rx_errors, c.tx_packets, c.tx_bytes, c.tx_drops, c.tx_errors
        )
    } else {
        alloc::format!(
            "<!doctype html>\n<html><head><title>sanos status</title></head><body><h1>sanos</h1><table>\n<tr><td>uptime</td><td>{}.{:03} s</td></tr>\n<tr><td>clock</td><td>{clock} ({ntp_syncs} NTP settings)</td></tr>\n<tr><td>platform</td><td>{platform} ({backend}, vmops {mode})</td></tr>\n<tr><td>threads</td><td>{threads}</td></tr>\n<tr><td>memory</td><td>{} of {} MiB free, heap {heap} bytes in use</td></tr>\n<tr><td>nic</td><td>{nic} {address}: rx {} packets {} bytes ({} dropped, {} errors), tx {} packets {} bytes ({} dropped, {} errors)</td></tr>\n<tr><td>http</td><td>{requests} requests on {connections} connections, {refused} refused</td></tr>\n</table></body></html>\n",
            uptime_ms / 1000,
            uptime_ms % 1000,
            (free as u64 * crate::mm::PAGE_SIZE) >> 20,
            (total as u64 * crate::mm::PAGE_SIZE) >> 20,
            c.rx_packets, c.rx_bytes, c.rx_drops, c.rx_errors, c.tx_packets, c.tx_bytes, c.tx_drops, c.tx_errors
        )
    }
}
