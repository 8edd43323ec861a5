//! TCP sockets for kernel threads, over smoltcp's: blocking calls with
//! timeouts, the shape the Linux system calls will map onto.
//!
//! smoltcp has no listen backlog: a listening socket becomes the
//! connection. [`TcpListener`] therefore keeps `backlog` listening
//! sockets on its port, so that many connections can be in their
//! handshake at once; [`TcpListener::accept`] hands out one that reached
//! ESTABLISHED and puts a fresh listening socket in its place.
//!
//! A closed [`TcpStream`] is removed from the socket set by the network
//! thread once smoltcp is done with it. A connection the server closed
//! first reaches TIME-WAIT, which smoltcp holds for 10 s; the stack drops
//! the socket there instead (a late duplicate segment of that connection
//! then gets a reset), so a burst of short connections cannot fill memory
//! with sockets waiting out the timer.

use super::{wake, with_stack, Stack};
use crate::sched::sync::Event;
use crate::vmops::ops;
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

/// Receive buffer: above 64 KiB, so the window is scaled (RFC 7323).
pub const RX_BUFFER: usize = 128 * 1024;
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
}

impl core::fmt::Display for SocketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SocketError::NoInterface => "no network interface",
            SocketError::AddrInUse => "address in use",
            SocketError::TimedOut => "timed out",
            SocketError::Reset => "connection reset",
            SocketError::Closed => "connection closed",
        })
    }
}

fn new_tcp() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
    );
    // A server answers at once: no Nagle delay on responses.
    socket.set_nagle_enabled(false);
    socket.set_congestion_control(tcp::CongestionControl::Reno);
    socket
}

fn listen(stack: &mut Stack, port: u16) -> Result<SocketHandle, SocketError> {
    let mut socket = new_tcp();
    socket.listen(port).map_err(|_| SocketError::AddrInUse)?;
    Ok(stack.sockets.add(socket))
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

/// Listening sockets on one port.
pub struct TcpListener {
    port: u16,
    pending: Vec<SocketHandle>,
    event: Event,
}

impl TcpListener {
    /// Listens on `port` with room for `backlog` connections in their
    /// handshake at once.
    pub fn bind(port: u16, backlog: usize) -> Result<TcpListener, SocketError> {
        let pending = with_stack(|stack| {
            (0..backlog.max(1))
                .map(|_| listen(stack, port))
                .collect::<Result<Vec<_>, _>>()
        })
        .ok_or(SocketError::NoInterface)??;
        Ok(TcpListener {
            port,
            pending,
            event: Event::new(false, false),
        })
    }

    /// The next established connection; `TimedOut` after `timeout_ns`.
    pub fn accept(&mut self, timeout_ns: Option<u64>) -> Result<TcpStream, SocketError> {
        let deadline = deadline(timeout_ns);
        loop {
            let taken = with_stack(|stack| {
                let ready = self.pending.iter().position(|&handle| {
                    let socket = stack.sockets.get::<tcp::Socket>(handle);
                    socket.may_recv() || socket.state() == tcp::State::CloseWait
                });
                let replaced = self.pending.iter().position(|&handle| {
                    // A pending socket whose handshake failed goes back to
                    // listening.
                    stack.sockets.get::<tcp::Socket>(handle).state() == tcp::State::Closed
                });
                if let Some(index) = replaced {
                    if let Ok(()) = stack
                        .sockets
                        .get_mut::<tcp::Socket>(self.pending[index])
                        .listen(self.port)
                    {}
                }
                match ready {
                    Some(index) => {
                        let handle = self.pending[index];
                        let fresh = listen(stack, self.port);
                        match fresh {
                            Ok(fresh) => self.pending[index] = fresh,
                            Err(_) => {
                                self.pending.remove(index);
                            }
                        }
                        Some(handle)
                    }
                    None => {
                        stack.wait_for_change(&self.event);
                        None
                    }
                }
            })
            .ok_or(SocketError::NoInterface)?;
            if let Some(handle) = taken {
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
        let pending = core::mem::take(&mut self.pending);
        with_stack(|stack| {
            for handle in pending {
                stack.sockets.remove(handle);
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
