//! TCP and UDP sockets for kernel threads, over smoltcp's: blocking calls
//! with timeouts, the shape the Linux system calls will map onto.
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

/// Waits until the network thread's next pass, or `deadline`.
fn wait(event: &Event, deadline: Option<u64>) -> Result<(), SocketError> {
    let timeout = match deadline {
        Some(deadline) => {
            let now = ops::clock_ns();
            if now >= deadline {
                return Err(SocketError::TimedOut);
            }
            Some(deadline - now)
        }
        None => None,
    };
    event.wait(timeout);
    Ok(())
}

fn deadline(timeout_ns: Option<u64>) -> Option<u64> {
    timeout_ns.map(|t| ops::clock_ns().saturating_add(t))
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

    /// Takes an established connection, if one is waiting.
    fn take_established(&mut self, sockets: &SocketSet<'static>) -> Option<SocketHandle> {
        let index = self.handles.iter().position(|&handle| {
            let socket = sockets.get::<tcp::Socket>(handle);
            socket.may_recv() || socket.state() == tcp::State::CloseWait
        })?;
        Some(self.handles.remove(index))
    }
}

/// Listening on one port; the connections are accepted in order.
pub struct TcpListener {
    port: u16,
    event: Event,
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
        Ok(TcpListener {
            port,
            event: Event::new(false, false),
        })
    }

    /// The next established connection; `TimedOut` after `timeout_ns`.
    pub fn accept(&mut self, timeout_ns: Option<u64>) -> Result<TcpStream, SocketError> {
        let deadline = deadline(timeout_ns);
        let port = self.port;
        loop {
            let taken = with_stack(|stack| {
                let listener = stack.listeners.iter_mut().find(|l| l.port == port)?;
                let taken = listener.take_established(&stack.sockets);
                if taken.is_none() {
                    stack.wait_for_change(&self.event);
                }
                taken
            })
            .ok_or(SocketError::NoInterface)?;
            if let Some(handle) = taken {
                // The backlog has room again: let the thread listen anew.
                wake();
                return Ok(TcpStream {
                    handle,
                    event: Event::new(false, false),
                });
            }
            wait(&self.event, deadline)?;
        }
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
    event: Event,
}

impl TcpStream {
    /// Reads what has arrived, waiting for at least one byte; `Ok(0)` when
    /// the peer closed its side.
    pub fn read(&mut self, buf: &mut [u8], timeout_ns: Option<u64>) -> Result<usize, SocketError> {
        let deadline = deadline(timeout_ns);
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
                stack.wait_for_change(&self.event);
                None
            })
            .ok_or(SocketError::NoInterface)?;
            if let Some(result) = outcome {
                return result;
            }
            wait(&self.event, deadline)?;
        }
    }

    /// Writes all of `data`, waiting for room in the send buffer.
    pub fn write_all(
        &mut self,
        mut data: &[u8],
        timeout_ns: Option<u64>,
    ) -> Result<(), SocketError> {
        let deadline = deadline(timeout_ns);
        while !data.is_empty() {
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
                stack.wait_for_change(&self.event);
                Ok(0)
            })
            .ok_or(SocketError::NoInterface)??;
            if sent > 0 {
                data = &data[sent..];
                wake();
            } else {
                wait(&self.event, deadline)?;
            }
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
    event: Event,
}

impl UdpSocket {
    /// Binds `port`, or with 0 a free port of the ephemeral range, with
    /// room for `packets` datagrams of up to `buffer` bytes in all each
    /// way.
    pub fn bind(port: u16, packets: usize, buffer: usize) -> Result<UdpSocket, SocketError> {
        let handle = with_stack(|stack| {
            let taken = |port: u16, sockets: &SocketSet<'static>| {
                sockets.iter().any(|(_, socket)| match socket {
                    smoltcp::socket::Socket::Udp(udp) => udp.endpoint().port == port,
                    _ => false,
                })
            };
            let port = if port != 0 {
                (!taken(port, &stack.sockets)).then_some(port)
            } else {
                let span = u16::MAX - EPHEMERAL_FIRST + 1;
                let start = (crate::arch::cpu::rdtsc() % u64::from(span)) as u16;
                (0..span)
                    .map(|i| EPHEMERAL_FIRST + (start + i) % span)
                    .find(|&port| !taken(port, &stack.sockets))
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
        Ok(UdpSocket {
            handle,
            event: Event::new(false, false),
        })
    }

    /// Queues one datagram to `to`, waiting for room in the send buffer.
    pub fn send_to(
        &mut self,
        data: &[u8],
        to: IpEndpoint,
        timeout_ns: Option<u64>,
    ) -> Result<(), SocketError> {
        let deadline = deadline(timeout_ns);
        loop {
            let sent = with_stack(|stack| {
                let socket = stack.sockets.get_mut::<udp::Socket>(self.handle);
                if data.len() > socket.payload_send_capacity() {
                    return Err(SocketError::TooLarge);
                }
                match socket.send_slice(data, to) {
                    Ok(()) => Ok(true),
                    Err(udp::SendError::BufferFull) => {
                        stack.wait_for_change(&self.event);
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
            wait(&self.event, deadline)?;
        }
    }

    /// Takes the next datagram into `buf` (cut to its size) and says who
    /// sent it and how long it was.
    pub fn recv_from(
        &mut self,
        buf: &mut [u8],
        timeout_ns: Option<u64>,
    ) -> Result<(usize, IpEndpoint), SocketError> {
        let deadline = deadline(timeout_ns);
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
                        stack.wait_for_change(&self.event);
                        None
                    }
                }
            })
            .ok_or(SocketError::NoInterface)?;
            if let Some(received) = received {
                return Ok(received);
            }
            wait(&self.event, deadline)?;
        }
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
