//! The network stack: smoltcp 0.14 over the NIC a driver attached
//! (`Hal::attach_net`), driven by one network thread.
//!
//! Locking (docs/design.md, "Network"): the whole stack (the smoltcp
//! interface, its sockets, the NIC) is one [`Stack`] behind one blocking
//! kernel mutex ([`with_stack`]); nothing runs with it held but smoltcp
//! and the driver's non-blocking calls, and no interrupt handler takes it.
//! The NIC's interrupt handler only silences the device and sets [`WAKE`];
//! the network thread then takes the lock, drains the NIC (at most
//! [`RX_BUDGET`] frames per pass), lets smoltcp send what is due, wakes
//! every thread waiting on a socket, re-enables the NIC's interrupt, and
//! sleeps until the next interrupt, socket call or smoltcp timer. Socket
//! calls take the same lock to read or write a socket buffer and set
//! [`WAKE`] so the thread sends promptly. SMP would split this lock first:
//! per-socket locks around smoltcp's socket set are the obvious next step.

pub mod dns;
pub mod httpd;
pub mod phy;
pub mod sntp;
pub mod socket;
pub mod syslog;

use crate::sched::sync::{Event, Mutex};
use crate::vmops::ops;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use drivers::net::{NetCounters, NetDevice, Waker};
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};
use spin::Once;

/// Frames taken off the NIC per pass before smoltcp gets to send.
pub const RX_BUDGET: usize = 64;

/// How the interface gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpConfig {
    Dhcp,
    Static {
        address: [u8; 4],
        prefix: u8,
        gateway: Option<[u8; 4]>,
        dns: Option<[u8; 4]>,
    },
}

/// The interface, its sockets and its NIC.
pub struct Stack {
    pub iface: Interface,
    pub phy: phy::Phy,
    pub sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    /// The DNS server (DHCP's first, or `ip=`'s).
    pub dns: Option<Ipv4Address>,
    /// The resolver's socket, once a name was looked up.
    dns_socket: Option<SocketHandle>,
    /// Threads waiting for a socket to change; all set after each pass.
    waiters: Vec<Event>,
    /// Sockets closed by their owners, removed once smoltcp is done.
    pub(crate) closing: Vec<SocketHandle>,
    /// What `TcpListener`s listen on.
    pub(crate) listeners: Vec<socket::Listener>,
}

struct StackCell(UnsafeCell<Option<Stack>>);

// SAFETY: the stack is only reached through `with_stack`, which holds
// LOCK (a kernel mutex: one thread at a time, never interrupt context).
unsafe impl Sync for StackCell {}

static STACK: StackCell = StackCell(UnsafeCell::new(None));
static LOCK: Once<Mutex> = Once::new();
/// Wakes the network thread: NIC interrupts, socket calls.
static WAKE: Once<Event> = Once::new();
static CONFIG: Once<IpConfig> = Once::new();

/// Set while a thread is inside [`with_stack`] (the kernel mutex is
/// recursive, so this is what refuses a nested call).
static ENTERED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Runs `f` on the stack with its lock held; `None` without a NIC, or
/// when called from inside `f` (refused and logged: it would alias the
/// stack).
pub fn with_stack<R>(f: impl FnOnce(&mut Stack) -> R) -> Option<R> {
    use core::sync::atomic::Ordering;
    let lock = LOCK.get()?;
    lock.lock(None);
    if ENTERED.swap(true, Ordering::Acquire) {
        // Only the holder can get here: a nested call.
        log::error!("net: with_stack called from inside with_stack; refused");
        // The holder unlocks: this cannot fail.
        let _ = lock.unlock();
        return None;
    }
    // SAFETY: LOCK is held and ENTERED was clear: no other reference to
    // the stack exists until ENTERED is cleared below.
    let result = unsafe { (*STACK.0.get()).as_mut() }.map(f);
    ENTERED.store(false, Ordering::Release);
    if lock.unlock().is_err() {
        log::error!("net: stack lock released by a thread that does not hold it");
    }
    result
}

/// Wakes the network thread (a socket has something to send).
pub fn wake() {
    if let Some(event) = WAKE.get() {
        event.set();
    }
}

fn wake_from_interrupt(_context: usize) {
    wake();
}

/// The waker NIC drivers' interrupt handlers call.
pub fn waker() -> Waker {
    WAKE.call_once(|| Event::new(false, false));
    Waker {
        func: wake_from_interrupt,
        context: 0,
    }
}

/// The address configuration the stack will use (from the command line);
/// set before drivers attach their NICs.
pub fn configure(config: IpConfig) {
    CONFIG.call_once(|| config);
}

fn now() -> Instant {
    Instant::from_micros((ops::clock_ns() / 1000) as i64)
}

/// Takes a NIC: the first one becomes the interface, and the network
/// thread starts; a second one is logged and left unused.
pub fn attach(device: Box<dyn NetDevice>) -> Result<(), &'static str> {
    let lock = LOCK.call_once(Mutex::new);
    lock.lock(None);
    // SAFETY: LOCK is held (see `with_stack`).
    let slot = unsafe { &mut *STACK.0.get() };
    let result = if let Some(stack) = slot {
        log::warn!(
            "net: {} not used: {} is the interface (one NIC at a time)",
            device.name(),
            stack.phy.device.name()
        );
        Err("one interface only")
    } else {
        let config = *CONFIG.call_once(|| IpConfig::Dhcp);
        *slot = Some(Stack::new(device, config));
        Ok(())
    };
    if lock.unlock().is_err() {
        log::error!("net: stack lock released by a thread that does not hold it");
    }
    if result.is_ok() {
        waker();
        if let Err(error) = crate::sched::spawn("net", run) {
            log::error!("net: cannot start the network thread: {error:?}");
        }
    }
    result
}

fn ipv4(octets: [u8; 4]) -> Ipv4Address {
    Ipv4Address::new(octets[0], octets[1], octets[2], octets[3])
}

impl Stack {
    fn new(device: Box<dyn NetDevice>, config: IpConfig) -> Stack {
        let mac = EthernetAddress(device.mac());
        let mut phy = phy::Phy::new(device);
        let mut iface_config = Config::new(HardwareAddress::Ethernet(mac));
        iface_config.random_seed = crate::arch::cpu::rdtsc();
        let mut iface = Interface::new(iface_config, &mut phy, now());
        let mut sockets = SocketSet::new(Vec::new());
        let mut dns = None;
        let dhcp = match config {
            IpConfig::Dhcp => Some(sockets.add(dhcpv4::Socket::new())),
            IpConfig::Static {
                address,
                prefix,
                gateway,
                dns: server,
            } => {
                iface.update_ip_addrs(|addrs| {
                    if addrs
                        .push(IpCidr::Ipv4(Ipv4Cidr::new(ipv4(address), prefix)))
                        .is_err()
                    {
                        log::error!("net: no room for the static address");
                    }
                });
                if let Some(gateway) = gateway {
                    if iface
                        .routes_mut()
                        .add_default_ipv4_route(ipv4(gateway))
                        .is_err()
                    {
                        log::error!("net: no room for the default route");
                    }
                }
                dns = server.map(ipv4);
                None
            }
        };
        log::info!(
            "net: {} ({mac}), {}",
            phy.device.name(),
            match config {
                IpConfig::Dhcp => alloc::string::String::from("DHCP"),
                IpConfig::Static {
                    address, prefix, ..
                } => alloc::format!("static {}/{prefix}", ipv4(address)),
            }
        );
        Stack {
            iface,
            phy,
            sockets,
            dhcp,
            dns,
            dns_socket: None,
            waiters: Vec::new(),
            closing: Vec::new(),
            listeners: Vec::new(),
        }
    }

    /// Registers `event` to be set after the next pass of the network
    /// thread (a socket call that must wait).
    pub fn wait_for_change(&mut self, event: &Event) {
        self.waiters.push(event.clone());
    }

    /// One pass: take frames off the NIC, let smoltcp send, follow DHCP,
    /// reap closed sockets. Returns how long the thread may sleep.
    fn pass(&mut self) -> Option<Duration> {
        let timestamp = now();
        self.iface.poll_maintenance(timestamp);
        let mut drained = false;
        for _ in 0..RX_BUDGET {
            // Before each frame: every listener that has room in its
            // backlog has a socket listening, and a request beyond the
            // backlog is dropped rather than reset.
            self.top_up_listeners();
            if self
                .iface
                .poll_ingress_single(timestamp, &mut self.phy, &mut self.sockets)
                == PollIngressSingleResult::None
            {
                drained = true;
                break;
            }
        }
        // A lease that came in takes effect, and queued log lines are
        // handed to their socket, before the one egress of the pass.
        self.follow_dhcp();
        let source = self.address().map(|cidr| cidr.address());
        syslog::send(&mut self.sockets, source);
        while self
            .iface
            .poll_egress(timestamp, &mut self.phy, &mut self.sockets)
            != smoltcp::iface::PollResult::None
        {}
        self.reap();
        for event in self.waiters.drain(..) {
            event.set();
        }
        if !drained {
            // Budget spent: come back at once, after others had a turn.
            return Some(Duration::ZERO);
        }
        self.phy.device.enable_interrupts();
        self.iface.poll_delay(now(), &self.sockets)
    }

    fn follow_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            None => {}
            Some(dhcpv4::Event::Configured(config)) => {
                self.iface.update_ip_addrs(|addrs| {
                    addrs.clear();
                    if addrs.push(IpCidr::Ipv4(config.address)).is_err() {
                        log::error!("net: no room for the DHCP address");
                    }
                });
                match config.router {
                    Some(router) => {
                        if self
                            .iface
                            .routes_mut()
                            .add_default_ipv4_route(router)
                            .is_err()
                        {
                            log::error!("net: no room for the default route");
                        }
                    }
                    None => self
                        .iface
                        .routes_mut()
                        .remove_default_ipv4_route()
                        .map_or((), |_| ()),
                }
                self.dns = config.dns_servers.first().copied();
                log::info!(
                    "net: DHCP lease {} via {}, dns {}",
                    config.address,
                    config
                        .router
                        .map_or(alloc::string::String::from("none"), |r| alloc::format!(
                            "{r}"
                        )),
                    self.dns
                        .map_or(alloc::string::String::from("none"), |d| alloc::format!(
                            "{d}"
                        )),
                );
            }
            Some(dhcpv4::Event::Deconfigured) => {
                // smoltcp also says so once at start, before any lease.
                if self.address().is_some() {
                    log::warn!("net: DHCP lease lost");
                }
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
    }

    /// Gives every listener with room in its backlog a listening socket,
    /// drops handshakes that failed, and tells the NIC adapter how many
    /// connection requests each port can take now.
    fn top_up_listeners(&mut self) {
        self.phy.syn_room.clear();
        for listener in &mut self.listeners {
            let room = listener.top_up(&mut self.sockets);
            self.phy.syn_room.push((listener.port, room));
        }
    }

    /// Removes sockets their owners closed once the connection is over
    /// (closed, or in TIME-WAIT: see `socket`).
    fn reap(&mut self) {
        let sockets = &mut self.sockets;
        self.closing.retain(|&handle| {
            let state = sockets.get::<smoltcp::socket::tcp::Socket>(handle).state();
            let done = matches!(
                state,
                smoltcp::socket::tcp::State::Closed | smoltcp::socket::tcp::State::TimeWait
            );
            if done {
                sockets.remove(handle);
            }
            !done
        });
    }

    /// The interface's IPv4 address, once it has one.
    pub fn address(&self) -> Option<Ipv4Cidr> {
        // IPv4 is the only protocol built in: every address is one.
        self.iface
            .ip_addrs()
            .iter()
            .map(|cidr| match cidr {
                IpCidr::Ipv4(cidr) => *cidr,
            })
            .next()
    }
}

/// The network thread.
fn run() -> u64 {
    let wake = WAKE.call_once(|| Event::new(false, false)).clone();
    loop {
        let delay = with_stack(|stack| stack.pass()).flatten();
        let timeout = delay.map(|d| d.total_micros() * 1000);
        if timeout != Some(0) {
            wake.wait(timeout);
        } else {
            crate::sched::yield_now();
        }
    }
}

/// Stops the interface (see `dev::shutdown`); the stack sends nothing
/// after it.
pub fn shutdown(hal: &dyn drivers::hal::Hal, xen: Option<&dyn drivers::hal::XenBus>) {
    with_stack(|stack| {
        let name = alloc::string::String::from(stack.phy.device.name());
        match stack.phy.device.shutdown(hal, xen) {
            Ok(()) => log::info!("net: {name} stopped"),
            Err(why) => log::warn!("net: {name}: {why}"),
        }
    });
}

/// Runs `suspend` (a Xen suspend, see `xen::suspend`) with the stack held,
/// so no thread touches the interface meanwhile; when it says the machine
/// came back in a new domain, the interface reconnects before the stack
/// runs again. Without a NIC, `suspend` just runs.
pub fn suspend_around<R: SuspendOutcome>(
    suspend: impl FnOnce() -> Result<R, &'static str>,
    hal: &dyn drivers::hal::Hal,
    xen: Option<&dyn drivers::hal::XenBus>,
) -> Result<R, &'static str> {
    let mut suspend = Some(suspend);
    let held = with_stack(|stack| {
        let suspend = suspend.take()?;
        let outcome = suspend();
        if outcome.as_ref().is_ok_and(SuspendOutcome::new_domain) {
            let name = alloc::string::String::from(stack.phy.device.name());
            match stack.phy.device.resume(hal, xen) {
                Ok(()) => log::info!("net: {name} reconnected"),
                Err(why) => log::error!("net: {name} not reconnected: {why}"),
            }
        }
        Some(outcome)
    })
    .flatten();
    match (held, suspend.take()) {
        (Some(outcome), _) => outcome,
        (None, Some(suspend)) => suspend(),
        (None, None) => Err("the network stack refused the suspend"),
    }
}

/// What [`suspend_around`] needs to know of a suspend's outcome.
pub trait SuspendOutcome {
    /// Whether the machine runs in a new domain now (devices reconnect).
    fn new_domain(&self) -> bool;
}

/// Waits (at most `timeout_ns`) until every closed connection has sent
/// what its owner wrote before closing it and had its FIN acknowledged,
/// so that powering off right after a program or server ends does not cut
/// its last answers. Returns whether all went out.
pub fn settle(timeout_ns: u64) -> bool {
    let deadline = crate::vmops::ops::clock_ns().saturating_add(timeout_ns);
    loop {
        let pending = with_stack(|stack| {
            stack.closing.iter().any(|&handle| {
                let socket = stack.sockets.get::<smoltcp::socket::tcp::Socket>(handle);
                // Past FIN-WAIT-1/CLOSING/LAST-ACK the peer has it all.
                matches!(
                    socket.state(),
                    smoltcp::socket::tcp::State::FinWait1
                        | smoltcp::socket::tcp::State::Closing
                        | smoltcp::socket::tcp::State::LastAck
                ) || socket.send_queue() > 0
            })
        })
        .unwrap_or(false);
        if !pending {
            return true;
        }
        if crate::vmops::ops::clock_ns() >= deadline {
            return false;
        }
        wake();
        crate::sched::sleep_ns(10_000_000);
    }
}

/// The services the command line asked for, for [`start_services`].
pub struct Services {
    /// `ntp=`: the server to set the wall clock from.
    pub ntp: Option<alloc::string::String>,
    /// `syslog=`: host and port.
    pub syslog: Option<(alloc::string::String, u16)>,
}

/// Starts the `netsvc` thread: once the interface has an address, it
/// sets the clock from NTP (first, so the log lines kept for syslog get
/// timestamps), looks the syslog host up, then keeps the clock.
pub fn start_services(services: Services) {
    if services.ntp.is_none() && services.syslog.is_none() {
        return;
    }
    let spawned = crate::sched::spawn("netsvc", move || {
        loop {
            match with_stack(|stack| stack.address().is_some()) {
                None => {
                    log::error!("net: no network interface; ntp= and syslog= unused");
                    return 1;
                }
                Some(true) => break,
                Some(false) => crate::sched::sleep_ns(100_000_000),
            }
        }
        let mut synced = false;
        if let Some(host) = &services.ntp {
            match sntp::sync(host) {
                Ok(_) => synced = true,
                Err(error) => log::warn!("ntp: {host}: {error}"),
            }
        }
        if let Some((host, port)) = &services.syslog {
            let mut retry = 1_000_000_000;
            loop {
                match dns::resolve(host).map(|addresses| addresses.first().copied()) {
                    Ok(Some(address)) => {
                        syslog::configure(address, *port);
                        break;
                    }
                    Ok(None) => log::warn!("syslog: {host} has no IPv4 address"),
                    Err(error) => log::warn!("syslog: {host}: {error}"),
                }
                crate::sched::sleep_ns(retry);
                retry = (retry * 2).min(sntp::RESYNC_NS);
            }
        }
        if let Some(host) = &services.ntp {
            // After a failure, keep_clock tries again soon.
            if synced {
                crate::sched::sleep_ns(sntp::RESYNC_NS);
            }
            sntp::keep_clock(host);
        }
        0
    });
    if let Err(error) = spawned {
        log::error!("net: cannot start the services thread: {error:?}");
    }
}

/// What the interface is and has done, for the shell and `/status`.
pub struct Status {
    pub name: alloc::string::String,
    pub mac: [u8; 6],
    pub address: Option<Ipv4Cidr>,
    pub counters: NetCounters,
    pub tx_refused: u64,
    /// Connection requests dropped while a listener had no room.
    pub syn_dropped: u64,
    pub sockets: usize,
}

/// The interface's status; `None` without a NIC.
pub fn status() -> Option<Status> {
    with_stack(|stack| Status {
        name: alloc::string::String::from(stack.phy.device.name()),
        mac: stack.phy.device.mac(),
        address: stack.address(),
        counters: stack.phy.device.counters(),
        tx_refused: stack.phy.tx_refused,
        syn_dropped: stack.phy.syn_dropped,
        sockets: stack.sockets.iter().count(),
    })
}

/// Sends `count` ICMP echo requests to `target`, one a second, and returns
/// each round trip in microseconds (`None`: no reply within a second).
pub fn ping(target: Ipv4Address, count: u16) -> Option<Vec<Option<u64>>> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::socket::icmp;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};
    let ident = (crate::arch::cpu::rdtsc() & 0xffff) as u16;
    let handle = with_stack(|stack| {
        let mut socket = icmp::Socket::new(
            icmp::PacketBuffer::new(
                alloc::vec![icmp::PacketMetadata::EMPTY; 4],
                alloc::vec![0; 1024],
            ),
            icmp::PacketBuffer::new(
                alloc::vec![icmp::PacketMetadata::EMPTY; 4],
                alloc::vec![0; 1024],
            ),
        );
        socket.bind(icmp::Endpoint::Ident(ident)).ok()?;
        Some(stack.sockets.add(socket))
    })??;
    let mut rtts = Vec::new();
    for seq_no in 0..count {
        let payload = b"sanos ping";
        let repr = Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data: payload,
        };
        let sent_at = ops::clock_ns();
        let queued = with_stack(|stack| {
            let socket = stack.sockets.get_mut::<icmp::Socket>(handle);
            let Ok(buffer) = socket.send(repr.buffer_len(), IpAddress::Ipv4(target)) else {
                return false;
            };
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(buffer),
                &ChecksumCapabilities::default(),
            );
            true
        })
        .unwrap_or(false);
        wake();
        let mut rtt = None;
        while queued && rtt.is_none() && ops::clock_ns() - sent_at < 1_000_000_000 {
            rtt = with_stack(|stack| {
                let socket = stack.sockets.get_mut::<icmp::Socket>(handle);
                let mut reply = [0u8; 256];
                while let Ok((len, _from)) = socket.recv_slice(&mut reply) {
                    let packet = Icmpv4Packet::new_checked(&reply[..len]).ok()?;
                    let caps = ChecksumCapabilities::default();
                    if let Ok(Icmpv4Repr::EchoReply {
                        ident: i,
                        seq_no: s,
                        ..
                    }) = Icmpv4Repr::parse(&packet, &caps)
                    {
                        if i == ident && s == seq_no {
                            return Some((ops::clock_ns() - sent_at) / 1000);
                        }
                    }
                }
                None
            })
            .flatten();
            if rtt.is_none() {
                crate::sched::sleep_ns(1_000_000);
            }
        }
        rtts.push(rtt);
        if seq_no + 1 < count {
            crate::sched::sleep_ns(1_000_000_000u64.saturating_sub(ops::clock_ns() - sent_at));
        }
    }
    with_stack(|stack| {
        stack.sockets.remove(handle);
    });
    Some(rtts)
}
