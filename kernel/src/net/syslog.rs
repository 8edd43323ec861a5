//! The kernel log over UDP as RFC 5424 syslog messages (`syslog=` on the
//! command line: an IPv4 address and a port, 514 by default), besides the
//! console. The logger may run in any context, interrupts included, so it
//! only queues a line (at most [`QUEUE_LIMIT`]; beyond, the oldest go and
//! are counted); the network thread sends the queue on each pass once the
//! interface has an address, from a UDP socket of its own.
//!
//! A message: `<PRI>1 - HOSTNAME sanos - - - TEXT`, PRI = facility kern
//! (0) * 8 + severity (RFC 5424 6.2.1), no timestamp (`-`: the kernel
//! keeps no wall clock everywhere), HOSTNAME the interface's address.

use crate::arch::cpu;
use alloc::collections::VecDeque;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{IpEndpoint, Ipv4Address};
use spin::{Mutex, Once};

/// Lines waiting for the network thread.
pub const QUEUE_LIMIT: usize = 256;
const LOCAL_PORT: u16 = 514;

static TARGET: Once<IpEndpoint> = Once::new();
static QUEUE: Mutex<VecDeque<(u8, String)>> = Mutex::new(VecDeque::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);

/// Sends the log to `address:port` from now on.
pub fn configure(address: [u8; 4], port: u16) {
    let address = Ipv4Address::new(address[0], address[1], address[2], address[3]);
    TARGET.call_once(|| IpEndpoint::new(address.into(), port));
    log::info!("syslog: sending the log to {address}:{port}");
}

/// Whether the log goes to syslog too.
pub fn enabled() -> bool {
    TARGET.get().is_some()
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
        queue.push_back((severity, line));
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
        let Some((severity, line)) = cpu::without_interrupts(|| QUEUE.lock().pop_front()) else {
            return;
        };
        let message = alloc::format!("<{severity}>1 - {source} sanos - - - {line}");
        if socket.send_slice(message.as_bytes(), target).is_ok() {
            SENT.fetch_add(1, Ordering::Relaxed);
        } else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}
