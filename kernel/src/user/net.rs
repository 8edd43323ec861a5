//! Sockets for programs: `AF_INET` stream and datagram sockets over the
//! kernel's socket layer (`crate::net::socket`), one to one.
//!
//! A socket starts unbound; `bind` records its port, `listen` makes it a
//! listener (backlog capped at `SOMAXCONN`), `connect` a stream, and a
//! datagram socket binds on first use. Timeouts come from `O_NONBLOCK`
//! (0: `EAGAIN`) and `SO_RCVTIMEO` / `SO_SNDTIMEO`.

use super::files::{self, OpenFile, O_NONBLOCK};
use super::uaccess;
use crate::net::socket::{
    Pollable, Readiness, SocketError, TcpListener, TcpStream, UdpSocket, TX_BUFFER,
};
use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicU64, Ordering};
use pure::fs::vfs::{self, FileType, Metadata, Node};
use pure::user::linux::Errno;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

type Result<T> = core::result::Result<T, Errno>;

const AF_INET: u64 = 2;
const SOCK_STREAM: u64 = 1;
const SOCK_DGRAM: u64 = 2;
const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2000000;
const IPPROTO_TCP: u64 = 6;
const IPPROTO_UDP: u64 = 17;

/// Receive buffer of a connection a program accepts or opens.
const RX_BUFFER: usize = 64 << 10;
/// Datagrams and bytes a UDP socket buffers each way.
const UDP_PACKETS: usize = 64;
const UDP_BUFFER: usize = 64 << 10;

enum State {
    /// Not yet listening or connected; the port `bind` chose (0: none).
    Fresh {
        port: u16,
    },
    Listening(Arc<TcpListener>),
    Stream(Arc<TcpStream>),
    Udp(Arc<UdpSocket>),
}

/// Options a program set, as it set them.
#[derive(Clone, Copy, Default)]
struct Options {
    reuse_address: bool,
    keepalive: bool,
    no_delay: bool,
    receive_timeout_ns: Option<u64>,
    send_timeout_ns: Option<u64>,
    receive_buffer: u32,
    send_buffer: u32,
}

pub struct Socket {
    stream: bool,
    ino: u64,
    state: spin::Mutex<State>,
    options: spin::Mutex<Options>,
    /// A connect that failed in the background (`SO_ERROR`), once.
    pending_error: spin::Mutex<Option<Errno>>,
    /// The peer of a datagram socket after `connect`.
    udp_peer: spin::Mutex<Option<IpEndpoint>>,
}

fn with<R>(lock: &spin::Mutex<R>) -> spin::MutexGuard<'_, R> {
    lock.lock()
}

impl Socket {
    fn listener(&self) -> Option<Arc<TcpListener>> {
        match &*with(&self.state) {
            State::Listening(listener) => Some(listener.clone()),
            _ => None,
        }
    }

    fn stream(&self) -> Option<Arc<TcpStream>> {
        match &*with(&self.state) {
            State::Stream(stream) => Some(stream.clone()),
            _ => None,
        }
    }

    /// The UDP socket, bound to an ephemeral port on first use.
    fn udp(&self) -> Result<Arc<UdpSocket>> {
        let mut state = with(&self.state);
        match &*state {
            State::Udp(udp) => Ok(udp.clone()),
            State::Fresh { port } => {
                let udp = Arc::new(UdpSocket::bind(*port, UDP_PACKETS, UDP_BUFFER).map_err(errno)?);
                *state = State::Udp(udp.clone());
                Ok(udp)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// What the socket is ready for (poll, select, epoll).
    pub fn readiness(&self) -> Readiness {
        let pollable = |f: &dyn Fn(Pollable<'_>) -> Option<Readiness>| -> Readiness {
            match &*with(&self.state) {
                State::Listening(l) => f(Pollable::Listener(l)),
                State::Stream(s) => f(Pollable::Stream(s)),
                State::Udp(u) => f(Pollable::Udp(u)),
                // An unconnected stream socket: Linux reports POLLOUT and
                // POLLHUP.
                State::Fresh { .. } => Some(Readiness {
                    writable: true,
                    hangup: self.stream,
                    ..Readiness::default()
                }),
            }
            .unwrap_or_default()
        };
        pollable(&crate::net::socket::readiness_now)
    }

    fn timeout(&self, file: &OpenFile, receive: bool) -> Option<u64> {
        if file.nonblocking() {
            return Some(0);
        }
        let options = *with(&self.options);
        if receive {
            options.receive_timeout_ns
        } else {
            options.send_timeout_ns
        }
    }

    /// `read`/`recv` on a connected stream or a datagram socket.
    pub fn receive(&self, file: &OpenFile, buf: &mut [u8]) -> Result<usize> {
        let timeout = self.timeout(file, true);
        if let Some(stream) = self.stream() {
            return blocking(timeout, |t| stream.read(buf, t));
        }
        if !self.stream {
            let udp = self.udp()?;
            return blocking(timeout, |t| udp.recv_from(buf, t)).map(|(n, _)| n);
        }
        Err(Errno::ENOTCONN)
    }

    /// `write`/`send` on a connected stream, or a connected datagram
    /// socket. A blocking stream send without a timeout queues all of
    /// `buf`, as Linux does; otherwise what fits.
    pub fn send(&self, file: &OpenFile, buf: &[u8]) -> Result<usize> {
        let timeout = self.timeout(file, false);
        if let Some(stream) = self.stream() {
            if timeout.is_none() {
                let mut sent = 0;
                while sent < buf.len() {
                    match blocking(None, |t| stream.write(&buf[sent..], t)) {
                        Ok(n) => sent += n,
                        Err(error) if sent == 0 => return Err(error),
                        Err(_) => break,
                    }
                }
                return Ok(sent);
            }
            return blocking(timeout, |t| stream.write(buf, t));
        }
        if !self.stream {
            let peer = (*with(&self.udp_peer)).ok_or(Errno::EDESTADDRREQ)?;
            let udp = self.udp()?;
            blocking(timeout, |t| udp.send_to(buf, peer, t))?;
            return Ok(buf.len());
        }
        Err(Errno::ENOTCONN)
    }
}

impl Node for Socket {
    fn metadata(&self) -> Metadata {
        Metadata {
            dev: 0,
            ino: self.ino,
            kind: FileType::Socket,
            permissions: 0o777,
            nlink: 1,
            size: 0,
            mtime_ns: 0,
            rdev: 0,
        }
    }

    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> vfs::Result<usize> {
        // Reached only through the open file, which carries the flags.
        Err(Errno::EINVAL)
    }

    fn write_at(&self, _offset: u64, _buf: &[u8]) -> vfs::Result<usize> {
        Err(Errno::EINVAL)
    }
}

/// Runs a socket call that may wait until `timeout` (`None`: forever) in
/// slices of 100 ms, so that a program that is ending (another thread
/// called `exit_group`) is not held by a thread waiting on the network:
/// it gets `EINTR` then.
fn blocking<T>(
    timeout: Option<u64>,
    mut call: impl FnMut(Option<u64>) -> core::result::Result<T, SocketError>,
) -> Result<T> {
    const SLICE: u64 = 100_000_000;
    if timeout == Some(0) {
        return call(Some(0)).map_err(errno);
    }
    let deadline = timeout.map(|t| crate::time::since_boot_ns().saturating_add(t));
    loop {
        let slice = match deadline {
            Some(at) => at.saturating_sub(crate::time::since_boot_ns()).min(SLICE),
            None => SLICE,
        };
        match call(Some(slice.max(1))) {
            Err(SocketError::TimedOut) => {
                if super::exiting() {
                    return Err(Errno::EINTR);
                }
                if deadline.is_some_and(|at| crate::time::since_boot_ns() >= at) {
                    return Err(Errno::EAGAIN);
                }
            }
            other => return other.map_err(errno),
        }
    }
}

/// The socket layer's errors as Linux's.
fn errno(error: SocketError) -> Errno {
    match error {
        SocketError::NoInterface => Errno::ENETUNREACH,
        SocketError::AddrInUse => Errno::EADDRINUSE,
        SocketError::TimedOut | SocketError::WouldBlock => Errno::EAGAIN,
        SocketError::Reset => Errno::ECONNRESET,
        SocketError::Closed => Errno::EPIPE,
        SocketError::TooLarge => Errno::EMSGSIZE,
        SocketError::Unreachable => Errno::ENETUNREACH,
        SocketError::Refused => Errno::ECONNREFUSED,
    }
}

fn socket_of(fd: u64) -> Result<(Arc<OpenFile>, Arc<Socket>)> {
    let file = files::get(fd)?;
    let socket = file.socket().ok_or(Errno::ENOTSOCK)?;
    Ok((file, socket))
}

fn install(socket: Socket, flags: u64) -> Result<u64> {
    let socket = Arc::new(socket);
    let status = if flags & SOCK_NONBLOCK != 0 {
        O_NONBLOCK
    } else {
        0
    };
    let file = OpenFile::new_socket(socket, status);
    files::install(file, flags & SOCK_CLOEXEC != 0, 0)
}

fn new_socket(stream: bool, state: State) -> Socket {
    static NEXT_INO: AtomicU64 = AtomicU64::new(1);
    Socket {
        stream,
        ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
        state: spin::Mutex::new(state),
        options: spin::Mutex::new(Options::default()),
        pending_error: spin::Mutex::new(None),
        udp_peer: spin::Mutex::new(None),
    }
}

pub fn socket(domain: u64, kind: u64, protocol: u64) -> Result<u64> {
    if domain != AF_INET {
        return Err(Errno::EAFNOSUPPORT);
    }
    let flags = kind & (SOCK_NONBLOCK | SOCK_CLOEXEC);
    let stream = match kind & !(SOCK_NONBLOCK | SOCK_CLOEXEC) {
        SOCK_STREAM if protocol == 0 || protocol == IPPROTO_TCP => true,
        SOCK_DGRAM if protocol == 0 || protocol == IPPROTO_UDP => false,
        SOCK_STREAM | SOCK_DGRAM => return Err(Errno::EPROTONOSUPPORT),
        _ => return Err(Errno::EINVAL),
    };
    install(new_socket(stream, State::Fresh { port: 0 }), flags)
}

/// `struct sockaddr_in`: family, port (big endian), address, zero.
fn read_address(address: u64, len: u64) -> Result<IpEndpoint> {
    if len < 16 {
        return Err(Errno::EINVAL);
    }
    let mut raw = [0u8; 16];
    uaccess::copy_from_user(&mut raw, address)?;
    if u16::from_le_bytes([raw[0], raw[1]]) != AF_INET as u16 {
        return Err(Errno::EAFNOSUPPORT);
    }
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let ip = Ipv4Address::new(raw[4], raw[5], raw[6], raw[7]);
    Ok(IpEndpoint::new(IpAddress::Ipv4(ip), port))
}

/// Writes `endpoint` as a `sockaddr_in` to `address` (of `*len` bytes),
/// truncated as Linux does, and sets `*len` to its full size.
fn write_address(address: u64, len: u64, endpoint: Option<IpEndpoint>) -> Result<()> {
    if address == 0 {
        return Ok(());
    }
    let room: u32 = uaccess::read(len)?;
    let mut raw = [0u8; 16];
    raw[..2].copy_from_slice(&(AF_INET as u16).to_le_bytes());
    if let Some(endpoint) = endpoint {
        raw[2..4].copy_from_slice(&endpoint.port.to_be_bytes());
        let IpAddress::Ipv4(ip) = endpoint.addr;
        raw[4..8].copy_from_slice(&ip.octets());
    }
    let n = (room as usize).min(raw.len());
    uaccess::copy_to_user(address, &raw[..n])?;
    uaccess::write(len, &16u32)
}

pub fn bind(fd: u64, address: u64, len: u64) -> Result<u64> {
    let (_, socket) = socket_of(fd)?;
    let endpoint = read_address(address, len)?;
    let IpAddress::Ipv4(ip) = endpoint.addr;
    let local = crate::net::status().and_then(|s| s.address);
    if !ip.is_unspecified() && Some(ip) != local.map(|cidr| cidr.address()) && !ip.is_loopback() {
        return Err(Errno::EADDRNOTAVAIL);
    }
    let mut state = with(&socket.state);
    match &*state {
        State::Fresh { port: 0 } if socket.stream => {
            *state = State::Fresh {
                port: endpoint.port,
            };
            Ok(0)
        }
        State::Fresh { port: 0 } => {
            let udp = UdpSocket::bind(endpoint.port, UDP_PACKETS, UDP_BUFFER).map_err(errno)?;
            *state = State::Udp(Arc::new(udp));
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn listen(fd: u64, backlog: u64) -> Result<u64> {
    let (_, socket) = socket_of(fd)?;
    if !socket.stream {
        return Err(Errno::EOPNOTSUPP);
    }
    let mut state = with(&socket.state);
    let port = match &*state {
        State::Fresh { port } => *port,
        State::Listening(_) => return Ok(0),
        _ => return Err(Errno::EINVAL),
    };
    if port == 0 {
        // Linux would pick an ephemeral port; programs that listen bind.
        return Err(Errno::EDESTADDRREQ);
    }
    let backlog = (backlog as i32).clamp(1, super::SOMAXCONN as i32) as usize;
    let listener = TcpListener::bind(port, backlog, RX_BUFFER, TX_BUFFER).map_err(errno)?;
    *state = State::Listening(Arc::new(listener));
    Ok(0)
}

pub fn accept(fd: u64, address: u64, len: u64, flags: u64) -> Result<u64> {
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let (file, socket) = socket_of(fd)?;
    let listener = socket.listener().ok_or(Errno::EINVAL)?;
    let timeout = socket.timeout(&file, true);
    let stream = blocking(timeout, |t| listener.accept(t))?;
    let peer = stream.endpoints().map(|(_, remote)| remote);
    let new = new_socket(true, State::Stream(Arc::new(stream)));
    *with(&new.options) = *with(&socket.options);
    let fd = install(new, flags)?;
    write_address(address, len, peer)?;
    Ok(fd)
}

pub fn connect(fd: u64, address: u64, len: u64) -> Result<u64> {
    let (file, socket) = socket_of(fd)?;
    let endpoint = read_address(address, len)?;
    if !socket.stream {
        *with(&socket.udp_peer) = Some(endpoint);
        socket.udp()?;
        return Ok(0);
    }
    match &*with(&socket.state) {
        State::Fresh { .. } => {}
        State::Stream(_) => return Err(Errno::EISCONN),
        _ => return Err(Errno::EINVAL),
    }
    let IpAddress::Ipv4(ip) = endpoint.addr;
    let nonblocking = file.nonblocking();
    let timeout = if nonblocking {
        Some(0)
    } else {
        socket.timeout(&file, false)
    };
    // One call: a slice that timed out would drop the half-open
    // connection and start another.
    let stream = TcpStream::connect(ip, endpoint.port, timeout).map_err(errno)?;
    let in_progress = nonblocking && {
        let ready =
            crate::net::socket::readiness_now(Pollable::Stream(&stream)).unwrap_or_default();
        !ready.writable && !ready.error
    };
    *with(&socket.state) = State::Stream(Arc::new(stream));
    if in_progress {
        return Err(Errno::EINPROGRESS);
    }
    Ok(0)
}

const MSG_DONTWAIT: u64 = 0x40;
const MSG_NOSIGNAL: u64 = 0x4000;
const MSG_PEEK: u64 = 0x2;

pub fn sendto(
    fd: u64,
    buffer: u64,
    len: u64,
    flags: u64,
    address: u64,
    address_len: u64,
) -> Result<u64> {
    let (file, socket) = socket_of(fd)?;
    if flags & !(MSG_DONTWAIT | MSG_NOSIGNAL) != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let mut data = vec![0u8; len.min(MAX_GATHER as u64) as usize];
    uaccess::copy_from_user(&mut data, buffer)?;
    let timeout = if flags & MSG_DONTWAIT != 0 {
        Some(0)
    } else {
        socket.timeout(&file, false)
    };
    if !socket.stream && address != 0 {
        let to = read_address(address, address_len)?;
        let udp = socket.udp()?;
        blocking(timeout, |t| udp.send_to(&data, to, t))?;
        return Ok(data.len() as u64);
    }
    if flags & MSG_DONTWAIT != 0 {
        if let Some(stream) = socket.stream() {
            return stream
                .write(&data, Some(0))
                .map(|n| n as u64)
                .map_err(errno);
        }
    }
    socket.send(&file, &data).map(|n| n as u64)
}

pub fn recvfrom(
    fd: u64,
    buffer: u64,
    len: u64,
    flags: u64,
    address: u64,
    address_len: u64,
) -> Result<u64> {
    let (file, socket) = socket_of(fd)?;
    if flags & MSG_PEEK != 0 || flags & !(MSG_DONTWAIT | MSG_PEEK) != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let mut data = vec![0u8; len.min(MAX_GATHER as u64) as usize];
    let timeout = if flags & MSG_DONTWAIT != 0 {
        Some(0)
    } else {
        socket.timeout(&file, true)
    };
    let (n, from) = if socket.stream {
        let stream = socket.stream().ok_or(Errno::ENOTCONN)?;
        let n = blocking(timeout, |t| stream.read(&mut data, t))?;
        (n, stream.endpoints().map(|(_, remote)| remote))
    } else {
        let udp = socket.udp()?;
        let (n, from) = blocking(timeout, |t| udp.recv_from(&mut data, t))?;
        (n.min(data.len()), Some(from))
    };
    uaccess::copy_to_user(buffer, &data[..n])?;
    if address != 0 {
        write_address(address, address_len, from)?;
    }
    Ok(n as u64)
}

/// Most bytes one sendmsg/sendto/recvfrom moves through the kernel.
const MAX_GATHER: usize = 1 << 20;

/// `struct msghdr` (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MsgHdr {
    name: u64,
    name_len: u32,
    pad0: u32,
    iov: u64,
    iov_len: u64,
    control: u64,
    control_len: u64,
    flags: i32,
    pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoVec {
    base: u64,
    len: u64,
}

pub fn sendmsg(fd: u64, message: u64, flags: u64) -> Result<u64> {
    let header: MsgHdr = uaccess::read(message)?;
    if header.iov_len > 1024 {
        return Err(Errno::EMSGSIZE);
    }
    // Gather, then one send: a datagram stays one datagram. At most
    // MAX_GATHER bytes in all (a stream sends that part; a larger
    // datagram than a UDP socket takes is EMSGSIZE anyway).
    let mut data = alloc::vec::Vec::new();
    for i in 0..header.iov_len {
        let v: IoVec = uaccess::read(header.iov + i * 16)?;
        let take = (v.len as usize).min(MAX_GATHER - data.len());
        let start = data.len();
        data.try_reserve(take).map_err(|_| Errno::ENOBUFS)?;
        data.resize(start + take, 0);
        uaccess::copy_from_user(&mut data[start..], v.base)?;
        if data.len() == MAX_GATHER {
            break;
        }
    }
    let (file, socket) = socket_of(fd)?;
    let timeout = if flags & MSG_DONTWAIT != 0 {
        Some(0)
    } else {
        socket.timeout(&file, false)
    };
    if !socket.stream && header.name != 0 {
        let to = read_address(header.name, u64::from(header.name_len))?;
        let udp = socket.udp()?;
        blocking(timeout, |t| udp.send_to(&data, to, t))?;
        return Ok(data.len() as u64);
    }
    socket.send(&file, &data).map(|n| n as u64)
}

pub fn recvmsg(fd: u64, message: u64, flags: u64) -> Result<u64> {
    let header: MsgHdr = uaccess::read(message)?;
    if header.iov_len > 1024 {
        return Err(Errno::EMSGSIZE);
    }
    let mut total = 0u64;
    let mut vectors = alloc::vec::Vec::new();
    for i in 0..header.iov_len {
        let v: IoVec = uaccess::read(header.iov + i * 16)?;
        total = total.saturating_add(v.len);
        vectors.push(v);
    }
    let (file, socket) = socket_of(fd)?;
    let mut data = vec![0u8; total.min(MAX_GATHER as u64) as usize];
    let timeout = if flags & MSG_DONTWAIT != 0 {
        Some(0)
    } else {
        socket.timeout(&file, true)
    };
    let (n, from) = if socket.stream {
        let stream = socket.stream().ok_or(Errno::ENOTCONN)?;
        (blocking(timeout, |t| stream.read(&mut data, t))?, None)
    } else {
        let udp = socket.udp()?;
        let (n, from) = blocking(timeout, |t| udp.recv_from(&mut data, t))?;
        (n.min(data.len()), Some(from))
    };
    let mut at = 0;
    for v in vectors {
        if at >= n {
            break;
        }
        let take = (n - at).min(v.len as usize);
        uaccess::copy_to_user(v.base, &data[at..at + take])?;
        at += take;
    }
    if header.name != 0 && from.is_some() {
        write_address(header.name, message + 8, from)?;
    }
    // No control data; msg_flags 0.
    uaccess::write(message + 40, &0u64)?;
    uaccess::write(message + 48, &0i32)?;
    Ok(n as u64)
}

/// `how`: SHUT_RD 0, SHUT_WR 1, SHUT_RDWR 2. Reading cannot be shut
/// (smoltcp has no half-close of the receiving side): SHUT_RD is accepted
/// and changes nothing.
const SHUT_RD: u64 = 0;
const SHUT_RDWR: u64 = 2;

pub fn shutdown(fd: u64, how: u64) -> Result<u64> {
    let (_, socket) = socket_of(fd)?;
    if how > SHUT_RDWR {
        return Err(Errno::EINVAL);
    }
    let stream = socket.stream().ok_or(Errno::ENOTCONN)?;
    if how != SHUT_RD {
        stream.shutdown_write();
    }
    Ok(0)
}

const SOL_SOCKET: u64 = 1;
const SO_REUSEADDR: u64 = 2;
const SO_TYPE: u64 = 3;
const SO_ERROR: u64 = 4;
const SO_SNDBUF: u64 = 7;
const SO_RCVBUF: u64 = 8;
const SO_KEEPALIVE: u64 = 9;
const SO_LINGER: u64 = 13;
const SO_REUSEPORT: u64 = 15;
const SO_RCVTIMEO: u64 = 20;
const SO_SNDTIMEO: u64 = 21;
const SO_ACCEPTCONN: u64 = 30;
const TCP_NODELAY: u64 = 1;
const TCP_KEEPIDLE: u64 = 4;
const TCP_KEEPINTVL: u64 = 5;
const TCP_KEEPCNT: u64 = 6;
const TCP_DEFER_ACCEPT: u64 = 9;
const TCP_FASTOPEN: u64 = 23;

fn read_int(value: u64, len: u64) -> Result<i32> {
    if len < 4 {
        return Err(Errno::EINVAL);
    }
    uaccess::read(value)
}

/// A `struct timeval` as nanoseconds; 0 means no timeout.
fn read_timeval(value: u64, len: u64) -> Result<Option<u64>> {
    if len < 16 {
        return Err(Errno::EINVAL);
    }
    let [sec, usec]: [i64; 2] = uaccess::read(value)?;
    if sec < 0 || !(0..1_000_000).contains(&usec) {
        return Err(Errno::EDOM);
    }
    let ns = (sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add((usec as u64) * 1000);
    Ok((ns > 0).then_some(ns))
}

pub fn setsockopt(fd: u64, level: u64, name: u64, value: u64, len: u64) -> Result<u64> {
    let (_, socket) = socket_of(fd)?;
    let mut options = with(&socket.options);
    match (level, name) {
        (SOL_SOCKET, SO_REUSEADDR | SO_REUSEPORT) => {
            options.reuse_address = read_int(value, len)? != 0
        }
        (SOL_SOCKET, SO_KEEPALIVE) => options.keepalive = read_int(value, len)? != 0,
        (SOL_SOCKET, SO_RCVBUF) => options.receive_buffer = read_int(value, len)? as u32,
        (SOL_SOCKET, SO_SNDBUF) => options.send_buffer = read_int(value, len)? as u32,
        (SOL_SOCKET, SO_RCVTIMEO) => options.receive_timeout_ns = read_timeval(value, len)?,
        (SOL_SOCKET, SO_SNDTIMEO) => options.send_timeout_ns = read_timeval(value, len)?,
        (SOL_SOCKET, SO_LINGER) => {}
        (IPPROTO_TCP, TCP_NODELAY) => options.no_delay = read_int(value, len)? != 0,
        (
            IPPROTO_TCP,
            TCP_KEEPIDLE | TCP_KEEPINTVL | TCP_KEEPCNT | TCP_DEFER_ACCEPT | TCP_FASTOPEN,
        ) => {
            read_int(value, len)?;
        }
        _ => return Err(Errno::ENOPROTOOPT),
    }
    Ok(0)
}

pub fn getsockopt(fd: u64, level: u64, name: u64, value: u64, len: u64) -> Result<u64> {
    let (_, socket) = socket_of(fd)?;
    let options = *with(&socket.options);
    let int = |v: bool| i32::from(v);
    let answer: i32 = match (level, name) {
        (SOL_SOCKET, SO_TYPE) => {
            if socket.stream {
                SOCK_STREAM as i32
            } else {
                SOCK_DGRAM as i32
            }
        }
        (SOL_SOCKET, SO_ERROR) => {
            let pending = with(&socket.pending_error).take();
            let failed = socket.readiness().error;
            match pending {
                Some(error) => i32::from(error.0),
                None if failed => i32::from(Errno::ECONNREFUSED.0),
                None => 0,
            }
        }
        (SOL_SOCKET, SO_REUSEADDR | SO_REUSEPORT) => int(options.reuse_address),
        (SOL_SOCKET, SO_KEEPALIVE) => int(options.keepalive),
        (SOL_SOCKET, SO_RCVBUF) => RX_BUFFER as i32,
        (SOL_SOCKET, SO_SNDBUF) => TX_BUFFER as i32,
        (SOL_SOCKET, SO_ACCEPTCONN) => int(socket.listener().is_some()),
        (IPPROTO_TCP, TCP_NODELAY) => int(options.no_delay),
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let room: u32 = uaccess::read(len)?;
    let bytes = answer.to_le_bytes();
    let n = (room as usize).min(4);
    uaccess::copy_to_user(value, &bytes[..n])?;
    uaccess::write(len, &4u32)?;
    Ok(0)
}

pub fn getsockname(fd: u64, address: u64, len: u64) -> Result<u64> {
    let (_, socket) = socket_of(fd)?;
    let local = crate::net::status()
        .and_then(|s| s.address)
        .map(|cidr| IpAddress::Ipv4(cidr.address()));
    let unspecified = IpAddress::Ipv4(Ipv4Address::UNSPECIFIED);
    let endpoint = match &*with(&socket.state) {
        State::Fresh { port } => IpEndpoint::new(unspecified, *port),
        State::Listening(l) => IpEndpoint::new(unspecified, l.port()),
        State::Stream(s) => s
            .endpoints()
            .map(|(local, _)| local)
            .unwrap_or(IpEndpoint::new(unspecified, 0)),
        State::Udp(u) => IpEndpoint::new(local.unwrap_or(unspecified), u.port()),
    };
    write_address(address, len, Some(endpoint))?;
    Ok(0)
}

pub fn getpeername(fd: u64, address: u64, len: u64) -> Result<u64> {
    let (_, socket) = socket_of(fd)?;
    let peer = match socket.stream() {
        Some(stream) => stream.endpoints().map(|(_, remote)| remote),
        None => *with(&socket.udp_peer),
    };
    let peer = peer.ok_or(Errno::ENOTCONN)?;
    write_address(address, len, Some(peer))?;
    Ok(0)
}
