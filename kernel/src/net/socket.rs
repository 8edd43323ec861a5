//! TCP and UDP sockets for kernel threads, over smoltcp's: blocking calls
//! with timeouts, the shape the Linux system calls will map onto.
//!
//! Every call that may wait takes a timeout: `None` waits as long as it
//! takes, `Some(ns)` gives up with `TimedOut`, and `Some(0)` makes the
//! call non-blocking: it does what it can at once and otherwise returns
//! `WouldBlock` (`O_NONBLOCK`'s `EAGAIN`). [`poll`] waits for any of many
//! sockets to become ready.
//!
//! smoltcp has no listen backlog: a listening socket becomes the
//! connection. The stack therefore keeps, per [`TcpListener`], up to
//! `backlog` sockets that are in their handshake or established and not
//! yet accepted, and puts a fresh listening socket in place as soon as
//! one is taken by a connection request (before the next frame is
//! processed); a request that finds the backlog full is dropped, not
//! reset, so the client retries, as with Linux's listen queue.
//!
//! A closed [`TcpStream`] is removed from the socket set by the network
//! thread once smoltcp is done with it. A connection the server closed
//! first reaches TIME-WAIT, which smoltcp holds for 10 s; the stack drops
//! the socket there instead (a late duplicate segment of that connection
//! then gets a reset), so a burst of short connections cannot fill memory
//! with sockets waiting out the timer.

use super::{wake, with_stack};
use crate::sched::sync::Event;
use crate::vmops::ops;
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::IpEndpoint;

/// Send buffer of a server socket: room for a window's worth of a response.
pub const TX_BUFFER: usize = 64 * 1024;

/// Why a socket call did not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketError {
    /// No network interface.
    NoInterface,
    /// The port is taken, or smoltcp refused the listen.
    AddrInUse,
    TimedOut,
    /// The peer reset the connection, or it was aborted.
    Reset,
    /// The connection is closed for writing.
    Closed,
    /// A datagram larger than the socket's send buffer.
    TooLarge,
    /// No route or no source address for the destination.
    Unreachable,
    /// The peer answered a connection request with a reset.
    Refused,
    /// A non-blocking call (timeout 0) found nothing to do.
    WouldBlock,
}

impl core::fmt::Display for SocketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SocketError::NoInterface => "no network interface",
            SocketError::AddrInUse => "address in use",
            SocketError::TimedOut => "timed out",
            SocketError::Reset => "connection reset",
            SocketError::Closed => "connection closed",
            SocketError::TooLarge => "message too long",
            SocketError::Unreachable => "destination unreachable",
            SocketError::Refused => "connection refused",
            SocketError::WouldBlock => "operation would block",
        })
    }
}

fn new_tcp(rx_buffer: usize, tx_buffer: usize) -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx_buffer]),
        tcp::SocketBuffer::new(vec![0; tx_buffer]),
    );
    // A server answers at once: no Nagle delay on responses.
    socket.set_nagle_enabled(false);
    socket.set_congestion_control(tcp::CongestionControl::Reno);
    socket
}

/// When a call gives up.
#[derive(Clone, Copy)]
enum Deadline {
    Never,
    At(u64),
    /// Timeout 0: never wait.
    NonBlocking,
}

/// Waits until the network thread's next pass, or the deadline.
fn wait(event: &Event, deadline: Deadline) -> Result<(), SocketError> {
    let timeout = match deadline {
        Deadline::NonBlocking => return Err(SocketError::WouldBlock),
        Deadline::At(deadline) => {
            let now = ops::clock_ns();
            if now >= deadline {
                return Err(SocketError::TimedOut);
            }
            Some(deadline - now)
        }
        Deadline::Never => None,
    };
    event.wait(timeout);
    Ok(())
}

fn deadline(timeout_ns: Option<u64>) -> Deadline {
    match timeout_ns {
        None => Deadline::Never,
        Some(0) => Deadline::NonBlocking,
        Some(t) => Deadline::At(ops::clock_ns().saturating_add(t)),
    }
}

/// A free port of the ephemeral range for a socket of the kind `taken`
/// looks at.
fn ephemeral_port(
    sockets: &SocketSet<'static>,
    taken: impl Fn(&smoltcp::socket::Socket<'static>, u16) -> bool,
) -> Option<u16> {
    let span = u16::MAX - EPHEMERAL_FIRST + 1;
    let start = (crate::arch::cpu::rdtsc() % u64::from(span)) as u16;
    (0..span)
        .map(|i| EPHEMERAL_FIRST + (start + i) % span)
        .find(|&port| !sockets.iter().any(|(_, socket)| taken(socket, port)))
}

/// The stack's record of a listening port: its sockets in the handshake
/// or established and not yet accepted, at most `backlog`, of which at
/// most one listens (a new one as soon as it is taken).
pub struct Listener {
    pub port: u16,
    backlog: usize,
    rx_buffer: usize,
    tx_buffer: usize,
    handles: Vec<SocketHandle>,
}

impl Listener {
    /// Drops failed handshakes, adds a listening socket if none listens
    /// and the backlog has room; returns how many connection requests the
    /// port can take now (0 or 1).
    pub fn top_up(&mut self, sockets: &mut SocketSet<'static>) -> usize {
        self.handles.retain(|&handle| {
            let closed = sockets.get::<tcp::Socket>(handle).state() == tcp::State::Closed;
            if closed {
                sockets.remove(handle);
            }
            !closed
        });
        let listening = self
            .handles
            .iter()
            .any(|&h| sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen);
        if listening {
            return 1;
        }
        if self.handles.len() >= self.backlog {
            return 0;
        }
        let mut socket = new_tcp(self.rx_buffer, self.tx_buffer);
        if socket.listen(self.port).is_err() {
            return 0;
        }
        self.handles.push(sockets.add(socket));
        1
    }

    /// Where the first established connection waiting to be accepted is.
    fn established(&self, sockets: &SocketSet<'static>) -> Option<usize> {
        self.handles.iter().position(|&handle| {
            let socket = sockets.get::<tcp::Socket>(handle);
            socket.may_recv() || socket.state() == tcp::State::CloseWait
        })
    }

    /// Takes an established connection, if one is waiting.
    fn take_established(&mut self, sockets: &SocketSet<'static>) -> Option<SocketHandle> {
        let index = self.established(sockets)?;
        Some(self.handles.remove(index))
    }
}

/// Listening on one port; the connections are accepted in order.
pub struct TcpListener {
    port: u16,
}

impl TcpListener {
    /// Listens on `port` with room for `backlog` connections in their
    /// handshake or waiting to be accepted, each with receive and send
    /// buffers of the given sizes.
    pub fn bind(
        port: u16,
        backlog: usize,
        rx_buffer: usize,
        tx_buffer: usize,
    ) -> Result<TcpListener, SocketError> {
        with_stack(|stack| {
            if stack.listeners.iter().any(|l| l.port == port) {
                return Err(SocketError::AddrInUse);
            }
            let mut listener = Listener {
                port,
                backlog: backlog.max(1),
                rx_buffer,
                tx_buffer,
                handles: Vec::new(),
            };
            if listener.top_up(&mut stack.sockets) == 0 {
                return Err(SocketError::AddrInUse);
            }
            stack.listeners.push(listener);
            Ok(())
        })
        .ok_or(SocketError::NoInterface)??;
        wake();
        Ok(TcpListener { port })
    }

    /// The next established connection; `TimedOut` after `timeout_ns`.
    pub fn accept(&self, timeout_ns: Option<u64>) -> Result<TcpStream, SocketError> {
        let deadline = deadline(timeout_ns);
        let event = Event::new(false, false);
        let port = self.port;
        loop {
            let taken = with_stack(|stack| {
                let listener = stack.listeners.iter_mut().find(|l| l.port == port)?;
                let taken = listener.take_established(&stack.sockets);
                if taken.is_none() {
                    stack.wait_for_change(&event);
                }
                taken
            })
            .ok_or(SocketError::NoInterface)?;
            if let Some(handle) = taken {
                // The backlog has room again: let the thread listen anew.
                wake();
                return Ok(TcpStream { handle });
            }
            wait(&event, deadline)?;
        }
    }
}

impl TcpListener {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let port = self.port;
        with_stack(|stack| {
            if let Some(index) = stack.listeners.iter().position(|l| l.port == port) {
                let listener = stack.listeners.remove(index);
                for handle in listener.handles {
                    stack.sockets.remove(handle);
                }
            }
        });
    }
}

/// An established TCP connection.
pub struct TcpStream {
    handle: SocketHandle,
}

/// Receive and send buffers of a connection a kernel thread opens.
pub const CONNECT_BUFFER: usize = 16 * 1024;

impl TcpStream {
    /// Opens a connection to `address:port` from a free ephemeral port,
    /// waiting for the handshake; with timeout 0 it returns at once with
    /// `WouldBlock` while the handshake goes on ([`poll`] says when it is
    /// writable).
    pub fn connect(
        address: smoltcp::wire::Ipv4Address,
        port: u16,
        timeout_ns: Option<u64>,
    ) -> Result<TcpStream, SocketError> {
        let deadline = deadline(timeout_ns);
        let handle = with_stack(|stack| {
            let local = ephemeral_port(&stack.sockets, |socket, port| match socket {
                smoltcp::socket::Socket::Tcp(tcp) => {
                    tcp.local_endpoint().is_some_and(|e| e.port == port)
                }
                _ => false,
            })
            .ok_or(SocketError::AddrInUse)?;
            let mut socket = new_tcp(CONNECT_BUFFER, CONNECT_BUFFER);
            let remote = IpEndpoint::new(smoltcp::wire::IpAddress::Ipv4(address), port);
            socket
                .connect(stack.iface.context(), remote, local)
                .map_err(|_| SocketError::Unreachable)?;
            Ok(stack.sockets.add(socket))
        })
        .ok_or(SocketError::NoInterface)??;
        wake();
        // From here a failure drops the stream, which closes the socket.
        let stream = TcpStream { handle };
        let event = Event::new(false, false);
        loop {
            let state = with_stack(|stack| {
                let state = stack.sockets.get::<tcp::Socket>(handle).state();
                if state == tcp::State::SynSent || state == tcp::State::SynReceived {
                    stack.wait_for_change(&event);
                }
                state
            })
            .ok_or(SocketError::NoInterface)?;
            match state {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    if let Deadline::NonBlocking = deadline {
                        return Ok(stream);
                    }
                    wait(&event, deadline)?;
                }
                tcp::State::Closed => return Err(SocketError::Refused),
                _ => return Ok(stream),
            }
        }
    }

    /// Reads what has arrived, waiting for at least one byte; `Ok(0)` when
    /// the peer closed its side.
    pub fn read(&self, buf: &mut [u8], timeout_ns: Option<u64>) -> Result<usize, SocketError> {
        let deadline = deadline(timeout_ns);
        // One event per call: threads may share the stream.
        let event = Event::new(false, false);
        loop {
            let outcome = with_stack(|stack| {
                let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
                if socket.can_recv() {
                    let read = socket.recv_slice(buf).map_err(|_| SocketError::Reset);
                    // The window opened: let the thread tell the peer.
                    wake();
                    return Some(read);
                }
                if !socket.may_recv() {
                    return Some(if socket.state() == tcp::State::Closed {
                        Err(SocketError::Reset)
                    } else {
                        Ok(0)
                    });
                }
                stack.wait_for_change(&event);
                None
            })
            .ok_or(SocketError::NoInterface)?;
            if let Some(result) = outcome {
                return result;
            }
            wait(&event, deadline)?;
        }
    }

    /// The connection's local and remote endpoints (while it has them).
    pub fn endpoints(&self) -> Option<(IpEndpoint, IpEndpoint)> {
        with_stack(|stack| {
            let socket = stack.sockets.get::<tcp::Socket>(self.handle);
            Some((socket.local_endpoint()?, socket.remote_endpoint()?))
        })
        .flatten()
    }

    /// Writes what fits of `data` (at least one byte, waiting for room
    /// until the deadline); returns how much was taken.
    pub fn write(&self, data: &[u8], timeout_ns: Option<u64>) -> Result<usize, SocketError> {
        self.send_some(data, deadline(timeout_ns))
    }

    fn send_some(&self, data: &[u8], deadline: Deadline) -> Result<usize, SocketError> {
        if data.is_empty() {
            return Ok(0);
        }
        let event = Event::new(false, false);
        loop {
            let sent = with_stack(|stack| {
                let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
                if !socket.may_send() {
                    return Err(if socket.state() == tcp::State::Closed {
                        SocketError::Reset
                    } else {
                        SocketError::Closed
                    });
                }
                if socket.can_send() {
                    let sent = socket.send_slice(data).map_err(|_| SocketError::Closed)?;
                    if sent > 0 {
                        return Ok(sent);
                    }
                }
                stack.wait_for_change(&event);
                Ok(0)
            })
            .ok_or(SocketError::NoInterface)??;
            if sent > 0 {
                wake();
                return Ok(sent);
            }
            wait(&event, deadline)?;
        }
    }

    /// Closes the sending side (FIN after what is buffered); reading goes
    /// on until the peer closes.
    pub fn shutdown_write(&self) {
        let handle = self.handle;
        with_stack(|stack| stack.sockets.get_mut::<tcp::Socket>(handle).close());
        wake();
    }

    /// Writes all of `data`, waiting for room in the send buffer.
    pub fn write_all(&self, mut data: &[u8], timeout_ns: Option<u64>) -> Result<(), SocketError> {
        let deadline = deadline(timeout_ns);
        while !data.is_empty() {
            let sent = self.send_some(data, deadline)?;
            data = &data[sent..];
        }
        Ok(())
    }
}

/// Dropping a stream closes it: what is buffered is sent, then FIN; the
/// stack removes the socket once the connection is over.
impl Drop for TcpStream {
    fn drop(&mut self) {
        let handle = self.handle;
        with_stack(|stack| {
            stack.sockets.get_mut::<tcp::Socket>(handle).close();
            stack.closing.push(handle);
        });
        wake();
    }
}

/// First port of the ephemeral range (IANA's dynamic ports, RFC 6335 6).
const EPHEMERAL_FIRST: u16 = 49152;

/// A UDP socket bound to a local port.
pub struct UdpSocket {
    handle: SocketHandle,
}

impl UdpSocket {
    /// Binds `port`, or with 0 a free port of the ephemeral range, with
    /// room for `packets` datagrams of up to `buffer` bytes in all each
    /// way.
    pub fn bind(port: u16, packets: usize, buffer: usize) -> Result<UdpSocket, SocketError> {
        let handle = with_stack(|stack| {
            let taken = |socket: &smoltcp::socket::Socket<'static>, port: u16| match socket {
                smoltcp::socket::Socket::Udp(udp) => udp.endpoint().port == port,
                _ => false,
            };
            let port = if port != 0 {
                (!stack.sockets.iter().any(|(_, socket)| taken(socket, port))).then_some(port)
            } else {
                ephemeral_port(&stack.sockets, taken)
            }
            .ok_or(SocketError::AddrInUse)?;
            let buffers = || {
                udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; buffer])
            };
            let mut socket = udp::Socket::new(buffers(), buffers());
            socket.bind(port).map_err(|_| SocketError::AddrInUse)?;
            Ok(stack.sockets.add(socket))
        })
        .ok_or(SocketError::NoInterface)??;
        Ok(UdpSocket { handle })
    }

    /// Queues one datagram to `to`, waiting for room in the send buffer.
    pub fn send_to(
        &self,
        data: &[u8],
        to: IpEndpoint,
        timeout_ns: Option<u64>,
    ) -> Result<(), SocketError> {
        let deadline = deadline(timeout_ns);
        let event = Event::new(false, false);
        loop {
            let sent = with_stack(|stack| {
                let socket = stack.sockets.get_mut::<udp::Socket>(self.handle);
                if data.len() > socket.payload_send_capacity() {
                    return Err(SocketError::TooLarge);
                }
                match socket.send_slice(data, to) {
                    Ok(()) => Ok(true),
                    Err(udp::SendError::BufferFull) => {
                        stack.wait_for_change(&event);
                        Ok(false)
                    }
                    Err(udp::SendError::Unaddressable) => Err(SocketError::Unreachable),
                }
            })
            .ok_or(SocketError::NoInterface)??;
            if sent {
                wake();
                return Ok(());
            }
            wait(&event, deadline)?;
        }
    }

    /// Takes the next datagram into `buf` (cut to its size) and says who
    /// sent it and how long it was.
    pub fn recv_from(
        &self,
        buf: &mut [u8],
        timeout_ns: Option<u64>,
    ) -> Result<(usize, IpEndpoint), SocketError> {
        let deadline = deadline(timeout_ns);
        let event = Event::new(false, false);
        loop {
            let received = with_stack(|stack| {
                let socket = stack.sockets.get_mut::<udp::Socket>(self.handle);
                match socket.recv() {
                    Ok((payload, meta)) => {
                        let len = payload.len().min(buf.len());
                        buf[..len].copy_from_slice(&payload[..len]);
                        Some((payload.len(), meta.endpoint))
                    }
                    Err(_) => {
                        stack.wait_for_change(&event);
                        None
                    }
                }
            })
            .ok_or(SocketError::NoInterface)?;
            if let Some(received) = received {
                return Ok(received);
            }
            wait(&event, deadline)?;
        }
    }
}

impl UdpSocket {
    /// The local port it is bound to.
    pub fn port(&self) -> u16 {
        with_stack(|stack| {
            stack
                .sockets
                .get::<udp::Socket>(self.handle)
                .endpoint()
                .port
        })
        .unwrap_or(0)
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let handle = self.handle;
        with_stack(|stack| {
            stack.sockets.remove(handle);
        });
    }
}

/// A socket [`poll`] watches.
#[derive(Clone, Copy)]
pub enum Pollable<'a> {
    Listener(&'a TcpListener),
    Stream(&'a TcpStream),
    Udp(&'a UdpSocket),
}

/// What [`poll`] found a socket ready for (`POLLIN`, `POLLOUT`, `POLLHUP`,
/// `POLLERR`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// A read (or accept) would not wait.
    pub readable: bool,
    /// A write would not wait.
    pub writable: bool,
    /// The peer closed both directions (reported whether asked or not).
    pub hangup: bool,
    /// The connection was reset or refused (reported whether asked or not).
    pub error: bool,
}

/// One socket of a [`poll`]: what is asked, and what was found.
pub struct PollEntry<'a> {
    pub socket: Pollable<'a>,
    pub read: bool,
    pub write: bool,
    pub ready: Readiness,
}

impl<'a> PollEntry<'a> {
    pub fn new(socket: Pollable<'a>, read: bool, write: bool) -> PollEntry<'a> {
        PollEntry {
            socket,
            read,
            write,
            ready: Readiness::default(),
        }
    }
}

fn readiness(stack: &super::Stack, socket: Pollable<'_>) -> Readiness {
    match socket {
        Pollable::Listener(listener) => Readiness {
            readable: stack
                .listeners
                .iter()
                .find(|l| l.port == listener.port)
                .is_some_and(|l| l.established(&stack.sockets).is_some()),
            ..Readiness::default()
        },
        Pollable::Stream(stream) => {
            let socket = stack.sockets.get::<tcp::Socket>(stream.handle);
            let state = socket.state();
            let connecting = matches!(state, tcp::State::SynSent | tcp::State::SynReceived);
            let closed = state == tcp::State::Closed;
            Readiness {
                // End of stream is readable too: the read returns 0.
                readable: socket.can_recv() || (!socket.may_recv() && !connecting),
                writable: socket.can_send(),
                hangup: !connecting && !socket.may_recv() && !socket.may_send(),
                error: closed,
            }
        }
        Pollable::Udp(udp) => {
            let socket = stack.sockets.get::<udp::Socket>(udp.handle);
            Readiness {
                readable: socket.can_recv(),
                writable: socket.can_send(),
                ..Readiness::default()
            }
        }
    }
}

/// What `socket` is ready for now (`None` without an interface).
pub fn readiness_now(socket: Pollable<'_>) -> Option<Readiness> {
    with_stack(|stack| readiness(stack, socket))
}

/// Sets `event` after the network thread's next pass (something may have
/// changed for any socket).
pub fn notify_on_change(event: &Event) {
    with_stack(|stack| stack.wait_for_change(event));
}

/// Waits until at least one entry is ready for what it asks (or hung up,
/// or failed), or the timeout passes (0: look once), and fills in every
/// entry's `ready`. Returns how many entries have something to report;
/// 0 on a timeout.
pub fn poll(entries: &mut [PollEntry<'_>], timeout_ns: Option<u64>) -> Result<usize, SocketError> {
    let deadline = deadline(timeout_ns);
    let event = Event::new(false, false);
    loop {
        let count = with_stack(|stack| {
            let mut count = 0;
            for entry in entries.iter_mut() {
                let found = readiness(stack, entry.socket);
                entry.ready = Readiness {
                    readable: entry.read && found.readable,
                    writable: entry.write && found.writable,
                    ..found
                };
                let ready = entry.ready;
                if ready.readable || ready.writable || ready.hangup || ready.error {
                    count += 1;
                }
            }
            if count == 0 {
                stack.wait_for_change(&event);
            }
            count
        })
        .ok_or(SocketError::NoInterface)?;
        if count > 0 {
            return Ok(count);
        }
        match wait(&event, deadline) {
            Ok(()) => {}
            Err(SocketError::WouldBlock | SocketError::TimedOut) => return Ok(0),
            Err(error) => return Err(error),
        }
    }
}

mod tests {
    use super::*;
    use crate::ktest::{ktest, not_applicable, TestResult};
    use crate::{kassert, kassert_eq};
    use smoltcp::wire::Ipv4Address;

    /// The echo service the `qemu-tcg-net-test` configuration gives the
    /// guest: QEMU's `guestfwd=tcp:10.0.2.100:7-cmd:cat`.
    const ECHO: Ipv4Address = Ipv4Address::new(10, 0, 2, 100);
    const SECOND: u64 = 1_000_000_000;

    /// Whether there is an interface with an address, waiting up to 5 s
    /// for DHCP once (the answer is kept for the next test). Where it has
    /// none (a Xen test guest's vif without a DHCP server) the socket
    /// tests do not apply; the configuration that runs them gives a
    /// static address, and the boot matrix checks that they passed.
    fn addressed() -> bool {
        static ANSWER: spin::Once<bool> = spin::Once::new();
        *ANSWER.call_once(|| {
            let start = ops::clock_ns();
            loop {
                match with_stack(|stack| stack.address().is_some()) {
                    None => return false,
                    Some(true) => return true,
                    Some(false) if ops::clock_ns() - start > 5 * SECOND => return false,
                    Some(false) => crate::sched::sleep_ns(10_000_000),
                }
            }
        })
    }

    #[ktest]
    fn tcp_echo_with_poll_and_non_blocking_calls() -> TestResult {
        if !addressed() {
            return not_applicable("no network interface with an address");
        }
        let stream = TcpStream::connect(ECHO, 7, Some(5 * SECOND));
        kassert!(stream.is_ok(), "connect to {ECHO}:7: {:?}", stream.err());
        let Ok(stream) = stream else {
            return Ok(());
        };
        // Nothing sent yet: a non-blocking read and a zero-timeout poll
        // find nothing to read, but room to write.
        let mut buf = [0u8; 64];
        kassert_eq!(stream.read(&mut buf, Some(0)), Err(SocketError::WouldBlock));
        let mut entries = [PollEntry::new(Pollable::Stream(&stream), true, true)];
        kassert_eq!(poll(&mut entries, Some(0)), Ok(1));
        kassert!(!entries[0].ready.readable && entries[0].ready.writable);
        let message = b"sanos echo\n";
        kassert_eq!(stream.write_all(message, Some(5 * SECOND)), Ok(()));
        // The echo comes back: poll says readable, then read takes it.
        let mut got = alloc::vec::Vec::new();
        while got.len() < message.len() {
            let mut entries = [PollEntry::new(Pollable::Stream(&stream), true, false)];
            kassert_eq!(poll(&mut entries, Some(5 * SECOND)), Ok(1));
            kassert!(entries[0].ready.readable, "{:?}", entries[0].ready);
            let read = stream.read(&mut buf, Some(0));
            kassert!(read.is_ok(), "read after poll: {read:?}");
            got.extend_from_slice(&buf[..read.unwrap_or(0)]);
        }
        kassert_eq!(&got[..], &message[..]);
        Ok(())
    }

    #[ktest]
    fn udp_non_blocking_receive_and_poll_timeout() -> TestResult {
        if !addressed() {
            return not_applicable("no network interface with an address");
        }
        let socket = UdpSocket::bind(0, 4, 2048);
        kassert!(socket.is_ok(), "bind: {:?}", socket.err());
        let Ok(socket) = socket else {
            return Ok(());
        };
        let mut buf = [0u8; 16];
        kassert_eq!(
            socket.recv_from(&mut buf, Some(0)).err(),
            Some(SocketError::WouldBlock)
        );
        let start = ops::clock_ns();
        let mut entries = [PollEntry::new(Pollable::Udp(&socket), true, false)];
        kassert_eq!(poll(&mut entries, Some(50_000_000)), Ok(0));
        let waited = ops::clock_ns() - start;
        kassert!(waited >= 50_000_000, "poll returned after {waited} ns");
        kassert_eq!(entries[0].ready, Readiness::default());
        // Too large for the 2048-byte send buffer: refused, not cut.
        let big = alloc::vec![0u8; 4096];
        let to = IpEndpoint::new(smoltcp::wire::IpAddress::Ipv4(ECHO), 9);
        kassert_eq!(
            socket.send_to(&big, to, Some(0)),
            Err(SocketError::TooLarge)
        );
        // A listener nobody connects to is not readable, and a second one
        // on its port is refused.
        let listener = TcpListener::bind(7007, 4, 1024, 1024);
        kassert!(listener.is_ok(), "listen: {:?}", listener.err());
        let Ok(listener) = listener else {
            return Ok(());
        };
        let mut entries = [PollEntry::new(Pollable::Listener(&listener), true, false)];
        kassert_eq!(poll(&mut entries, Some(0)), Ok(0));
        kassert_eq!(
            TcpListener::bind(7007, 4, 1024, 1024).err(),
            Some(SocketError::AddrInUse)
        );
        Ok(())
    }
}
