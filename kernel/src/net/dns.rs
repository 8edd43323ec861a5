//! The DNS resolver: IPv4 addresses (A records) for a name, from the DNS
//! server DHCP gave or `ip=` named, through smoltcp's DNS socket (which
//! follows CNAMEs, retransmits after 1, 2, 4 ... s and gives up after
//! 10 s). One socket serves every thread; it holds [`QUERIES`] queries at
//! once.
//!
//! smoltcp reports an answer without addresses (NXDOMAIN, REFUSED, no A
//! record) and a server that never answered alike, as a failed query; the
//! resolver tells them apart by the time it took.

use super::with_stack;
use crate::sched::sync::Event;
use crate::vmops::ops;
use alloc::vec::Vec;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::dns;
use smoltcp::wire::{DnsQueryType, IpAddress, Ipv4Address};

/// Queries in flight at once.
pub const QUERIES: usize = 4;
/// smoltcp's own limit before it fails a query no server answered.
const SMOLTCP_TIMEOUT_NS: u64 = 10_000_000_000;
/// Our limit: smoltcp's and a margin for the network thread.
const TIMEOUT_NS: u64 = SMOLTCP_TIMEOUT_NS + 2_000_000_000;

/// Why a name has no address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// Not a host name (RFC 1123 2.1) nor an IPv4 address.
    BadName,
    NoInterface,
    /// Neither DHCP nor `ip=` named a DNS server.
    NoServer,
    /// Every query slot is in use.
    Busy,
    /// The server answered without an IPv4 address: no such name (or it
    /// refused, or the name has no A record).
    NotFound,
    /// The server did not answer within smoltcp's 10 s.
    NoReply(Ipv4Address),
}

impl core::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResolveError::BadName => f.write_str("not a host name"),
            ResolveError::NoInterface => f.write_str("no network interface"),
            ResolveError::NoServer => f.write_str("no DNS server (DHCP gave none, ip= named none)"),
            ResolveError::Busy => f.write_str("too many lookups at once"),
            ResolveError::NotFound => f.write_str("not found"),
            ResolveError::NoReply(server) => write!(f, "no reply from the DNS server {server}"),
        }
    }
}

impl super::Stack {
    /// The resolver's socket, asking `server`; made on first use.
    fn dns_socket(&mut self, server: Ipv4Address) -> SocketHandle {
        match self.dns_socket {
            Some(handle) => {
                let socket = self.sockets.get_mut::<dns::Socket>(handle);
                socket.update_servers(&[IpAddress::Ipv4(server)]);
                handle
            }
            None => {
                let queries: Vec<Option<dns::DnsQuery>> = (0..QUERIES).map(|_| None).collect();
                let socket = dns::Socket::new(&[IpAddress::Ipv4(server)], queries);
                let handle = self.sockets.add(socket);
                self.dns_socket = Some(handle);
                handle
            }
        }
    }
}

/// The IPv4 addresses of `name` (an address is its own answer).
pub fn resolve(name: &str) -> Result<Vec<Ipv4Address>, ResolveError> {
    if let Some(octets) = pure::boot::cmdline::parse_ipv4(name) {
        return Ok(alloc::vec![super::ipv4(octets)]);
    }
    if !pure::boot::cmdline::is_host(name) {
        return Err(ResolveError::BadName);
    }
    let started = ops::clock_ns();
    let event = Event::new(false, false);
    let (handle, query, server) = with_stack(|stack| {
        let server = stack.dns.ok_or(ResolveError::NoServer)?;
        let handle = stack.dns_socket(server);
        let context = stack.iface.context();
        let socket = stack.sockets.get_mut::<dns::Socket>(handle);
        let query =
            socket
                .start_query(context, name, DnsQueryType::A)
                .map_err(|error| match error {
                    dns::StartQueryError::NoFreeSlot => ResolveError::Busy,
                    dns::StartQueryError::InvalidName | dns::StartQueryError::NameTooLong => {
                        ResolveError::BadName
                    }
                })?;
        Ok((handle, query, server))
    })
    .ok_or(ResolveError::NoInterface)??;
    super::wake();
    loop {
        let result = with_stack(|stack| {
            let socket = stack.sockets.get_mut::<dns::Socket>(handle);
            let result = socket.get_query_result(query);
            if result == Err(dns::GetQueryResultError::Pending) {
                if ops::clock_ns() - started > TIMEOUT_NS {
                    socket.cancel_query(query);
                    return Err(dns::GetQueryResultError::Failed);
                }
                stack.wait_for_change(&event);
            }
            result
        })
        .ok_or(ResolveError::NoInterface)?;
        match result {
            Ok(addresses) => {
                let addresses: Vec<Ipv4Address> = addresses
                    .iter()
                    .map(|address| match address {
                        IpAddress::Ipv4(address) => *address,
                    })
                    .collect();
                return Ok(addresses);
            }
            Err(dns::GetQueryResultError::Failed) => {
                // An answer comes within smoltcp's timeout; silence ends it.
                let took = ops::clock_ns() - started;
                return Err(if took < SMOLTCP_TIMEOUT_NS - 500_000_000 {
                    ResolveError::NotFound
                } else {
                    ResolveError::NoReply(server)
                });
            }
            Err(dns::GetQueryResultError::Pending) => {
                event.wait(Some(500_000_000));
            }
        }
    }
}
