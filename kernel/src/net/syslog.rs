//! The kernel log over UDP as RFC 5424 syslog messages (RFC 5426), besides
//! the console: `syslog=<host>[:<port>]` on the command line, the host an
//! address or a name, the port 514 by default. The logger may run in any
//! context, interrupts included, so it only queues a line with the time
//! it was logged (at most [`QUEUE_LIMIT`]; beyond, the oldest go and are
//! counted); queuing starts at boot ([`request`]), so the boot log reaches
//! the server too. Once the services thread has looked the host up
//! ([`configure`]), the network thread sends the queue on each pass from
//! a UDP socket of its own.
//!
//! A message: `<PRI>1 TIMESTAMP HOSTNAME sanos - - - TEXT`, PRI = facility
//! kern (0) * 8 + severity (RFC 5424 6.2.1), TIMESTAMP the time the line
//! was logged in RFC 3339 form where the wall clock is known at sending
//! (NTP, Xen or the CMOS clock), else `-`; HOSTNAME the interface's
//! address.

use crate::arch::cpu;
use alloc::collections::VecDeque;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{IpEndpoint, Ipv4Address};
use spin::{Mutex, Once};

/// Lines waiting for the network thread.
pub const QUEUE_LIMIT: usize = 256;
const LOCAL_PORT: u16 = 514;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static TARGET: Once<IpEndpoint> = Once::new();
/// (severity, platform-clock ns when logged, text).
static QUEUE: Mutex<VecDeque<(u8, u64, String)>> = Mutex::new(VecDeque::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);

/// Starts keeping log lines for syslog (at boot, when `syslog=` is given).
pub fn request() {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Sends the log to `address:port` from now on, what was kept included.
pub fn configure(address: Ipv4Address, port: u16) {
    TARGET.call_once(|| IpEndpoint::new(address.into(), port));
    log::info!("syslog: sending the log to {address}:{port}");
    super::wake();
}

/// Whether the log goes to syslog too (or will, once its host is known).
pub fn enabled() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Queues a log line (any context); `severity` is RFC 5424's (3 error,
/// 4 warning, 6 informational, 7 debug).
pub fn queue(severity: u8, line: String) {
    if !enabled() {
        return;
    }
    cpu::without_interrupts(|| {
        let mut queue = QUEUE.lock();
        if queue.len() >= QUEUE_LIMIT {
            queue.pop_front();
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back((severity, crate::time::since_boot_ns(), line));
    });
}

/// (messages sent, lines dropped from a full queue).
pub fn counters() -> (u64, u64) {
    (
        SENT.load(Ordering::Relaxed),
        DROPPED.load(Ordering::Relaxed),
    )
}

/// The sender's socket, made on first use.
static SOCKET: Once<SocketHandle> = Once::new();

/// Sends what is queued (the network thread, with the stack locked).
pub fn send(sockets: &mut SocketSet<'static>, source: Option<Ipv4Address>) {
    let (Some(&target), Some(source)) = (TARGET.get(), source) else {
        return;
    };
    let handle = *SOCKET.call_once(|| {
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(
                alloc::vec![udp::PacketMetadata::EMPTY; 4],
                alloc::vec![0; 512],
            ),
            udp::PacketBuffer::new(
                alloc::vec![udp::PacketMetadata::EMPTY; 32],
                alloc::vec![0; 32 * 1024],
            ),
        );
        if let Err(error) = socket.bind(LOCAL_PORT) {
            // Not through the log: it would queue another line.
            crate::console::emergency_write_fmt(format_args!("syslog: no socket: {error}\n"));
        }
        sockets.add(socket)
    });
    let socket = sockets.get_mut::<udp::Socket>(handle);
    loop {
        if !socket.can_send() {
            return;
        }
        let Some((severity, logged_ns, line)) =
            cpu::without_interrupts(|| QUEUE.lock().pop_front())
        else {
            return;
        };
        // The wall clock now, carried back to when the line was logged.
        let timestamp = match crate::time::wall_clock_ns() {
            Some(now) => {
                let then =
                    now.saturating_sub(crate::time::since_boot_ns().saturating_sub(logged_ns));
                alloc::format!("{}", pure::time::civil::Rfc3339(then))
            }
            None => String::from("-"),
        };
        let message = alloc::format!("<{severity}>1 {timestamp} {source} sanos - - - {line}");
        if socket.send_slice(message.as_bytes(), target).is_ok() {
            SENT.fetch_add(1, Ordering::Relaxed);
        } else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}
