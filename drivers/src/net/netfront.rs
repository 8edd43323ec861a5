//! Xen netfront: the front end of Xen's paravirtual network device (a
//! `vif`), single queue, receive by copy. Written from
//! `xen/include/public/io/netif.h` (the rings, their entries and flags),
//! `io/xenbus.h` and `io/ring.h` (through [`crate::xen`]), with Linux's
//! `drivers/net/xen-netfront.c` for the handshake order and Mini-OS's
//! `netfront.c` for the subset a small guest needs.
//!
//! # The handshake
//!
//! The front end lives at `device/vif/<id>` in this domain's xenstore home,
//! the backend at the [`XenDevice`]'s backend path, in domain `backend_id`.
//!
//! 1. The MAC is read from `<front>/mac`, written by the toolstack as
//!    `aa:bb:cc:dd:ee:ff`: six pairs of hex digits. Anything else, a
//!    multicast or the all-zero address, is an error before anything is
//!    written or allocated.
//! 2. The front end watches `<backend>/state`, writes its `state`
//!    Initialising (1) and waits for the backend's InitWait (2): netback
//!    publishes its features, then InitWait, and (after a previous front
//!    end left it Closed) goes back to InitWait when it sees Initialising.
//!    The backend must offer `feature-rx-copy` (Linux refuses a backend
//!    without it too): only then does `request-rx-copy=1` mean what this
//!    driver assumes, the backend copying each frame into a granted page.
//! 3. Memory: the transmit and receive shared ring pages, [`RX_BUFFERS`]
//!    receive pages and [`TX_BUFFERS`] transmit pages, one
//!    `hal.dma_alloc(1)` each, every one granted to the backend once
//!    ([`XenBus::grant_access`] with frame `device_addr >> 12`): the rings
//!    and the receive pages writable, the transmit pages read-only. An
//!    unbound event channel is allocated for the backend and bound
//!    ([`InterruptSource::EventChannel`]) to the kernel's [`Waker`].
//! 4. Both rings get `SHARED_RING_INIT`; every receive page is posted.
//! 5. The ring details are written one node at a time (no transaction):
//!    `tx-ring-ref`, `rx-ring-ref`, `event-channel`, `request-rx-copy=1`,
//!    `feature-rx-notify=1` (netback requires it), `feature-no-csum-offload=1`,
//!    `feature-sg=0`, `feature-gso-tcpv4=0`; then the front end's `state`
//!    becomes Connected (4). Linux writes Connected straight after the
//!    details, and netback connects on the front end's Connected only (it
//!    ignores Initialised, 3), so Initialised is never written.
//! 6. The front end waits for the backend's Connected; Closing or Closed
//!    instead is a refusal (netback closes when it cannot map the rings or
//!    bind the channel). It then signals the channel once.
//!
//! A failure after the first state write sets the front end's state to
//! Closing (as `xenbus_dev_fatal` does), unbinds the interrupt, closes the
//! channel and ends every grant, freeing each page whose grant ended; a
//! page the backend still maps ([`HalError::InUse`]) is leaked rather than
//! handed out again.
//!
//! # Waiting without sleeping
//!
//! A driver cannot sleep: the [`Hal`] has no call for it. The waits above
//! therefore combine a xenstore watch on `<backend>/state`, whose handler
//! (in the kernel's xenstore thread) only bumps a counter, with a bounded
//! loop that re-reads the state whenever the counter moves or
//! [`STATE_POLL_NS`] has passed since the last read, spinning in between.
//! Each read is a xenstore round trip, which blocks in the kernel and so
//! lets the watch thread and the backend run; the watch makes the answer
//! prompt, the polling makes a lost or refused watch harmless (if the watch
//! cannot be registered the loop only polls). The wait gives up after
//! [`BACKEND_TIMEOUT_NS`] by [`Hal::now_ns`], after [`MAX_STATE_READS`]
//! reads (a backend that keeps changing state without getting anywhere),
//! or after [`MAX_WAIT_SPINS`] spins (a clock that does not move).
//!
//! # Rings
//!
//! Each ring is one page of 256 entries (`__RING_SIZE` for 12- and 8-byte
//! entries), driven through [`FrontRing`] and [`SringPage`], which carry
//! `ring.h`'s index arithmetic, barriers and overrun check.
//!
//! - **Receive.** Buffers are keyed by slot, as Linux and Mini-OS key them:
//!   the page of slot `i` is always posted in slot `i` with id `i`. The
//!   backend answers receive requests in order, so the response in slot
//!   `i` returns page `i`; its id must say `i` too. After each response
//!   the page is posted again with the same grant (the backend copies
//!   into it; the driver copies the frame out), and the requests are
//!   pushed, with an event when `req_event` asks for one, once per
//!   [`receive`](NetDevice::receive) call. A response with a negative
//!   status, a frame shorter than an Ethernet header or running past its
//!   page, or a wrong id counts in `rx_errors`; a frame longer than the
//!   caller's buffer in `rx_drops`; the page is posted again either way.
//!   A packet flagged `NETRXF_more_data` spans several responses (a
//!   backend should not send one: `feature-sg=0`): it is dropped whole and
//!   counted once in `rx_drops`. `NETRXF_extra_info` slots (GSO or hash
//!   information, neither negotiated) make the packet count in
//!   `rx_errors`, and the extra slots are skipped. A chain is followed
//!   across calls, so one split over several batches is still skipped
//!   whole. `NETRXF_csum_blank` is not expected with
//!   `feature-no-csum-offload=1`; such a frame is passed on as it is (the
//!   stack's checksum check drops it).
//! - **Transmit.** [`TX_BUFFERS`] pages, each granted read-only once and
//!   reused; the request id is the page's index, since netback may complete
//!   transmissions out of order. A frame is copied to offset 0 of a free
//!   page and requested with flags 0 (its checksum is filled in, so
//!   neither `NETTXF_csum_blank` nor `NETTXF_data_validated`). Responses
//!   are reclaimed in [`can_transmit`](NetDevice::can_transmit),
//!   [`enable_interrupts`](NetDevice::enable_interrupts) and when a
//!   transmission finds no free page: `NETIF_RSP_OKAY` counts the frame
//!   sent, `NETIF_RSP_ERROR`, `NETIF_RSP_DROPPED` (and `NETIF_RSP_NULL`,
//!   which only answers extra slots this driver never sends) count in
//!   `tx_errors`; an id out of range or not in flight is counted and
//!   skipped. A full pool or ring is [`NetError::Full`], never a wait.
//!
//! The pool is smaller than the ring for the grant table's sake: one v1
//! grant frame holds 512 entries, 8 of them reserved, and this interface
//! takes `2 + RX_BUFFERS + TX_BUFFERS` = 386 of them.
//!
//! # Events
//!
//! Events need no acknowledgement, so the event channel's handler is the
//! [`Waker`] itself. The backend raises an event only when `rsp_prod`
//! passes the `rsp_event` the front end set, and only
//! [`enable_interrupts`](NetDevice::enable_interrupts) moves `rsp_event`
//! (`RING_FINAL_CHECK_FOR_RESPONSES` on both rings): between a wake-up and
//! that call the backend stays quiet, which is the interrupt suppression
//! the other drivers do by hand. The final check reads `rsp_prod` again
//! after setting `rsp_event`, and when a response raced in, calls the
//! `Waker` itself, so no frame waits for an event that will not come.
//!
//! The backend is signalled through an [`EventSender`], not the
//! [`XenBus`]: `probe` only borrows the bus, and an interface handed to
//! [`Hal::attach_net`] must own everything it uses. The kernel registers
//! its sender with [`set_event_sender`] before probing (it performs
//! `EVTCHNOP_send` on the given local port). A send that fails is retried
//! at the next push whether or not the ring asks for one.
//!
//! # A backend that misbehaves
//!
//! Everything in the shared pages comes from the backend and is checked.
//! A `rsp_prod` claiming more responses than there were requests breaks
//! the interface for good, as Linux's netfront marks itself `broken`: it
//! is counted once, [`receive`](NetDevice::receive) returns `None` and
//! [`transmit`](NetDevice::transmit) [`NetError::Device`] with the reason.
//!
//! # Resume
//!
//! After the domain is restored or migrated ([`NetDevice::resume`]), the
//! old backend, event channel and grants are gone: the interface ends its
//! old grants (the new grant table is empty, so they end at once), reads
//! its backend path and domain again, and connects from the start with
//! fresh pages, as Linux's `netfront_resume` does; then the old pages are
//! freed. Frames that were in flight are lost; the counters carry on. A
//! resume that cannot connect leaves the interface broken.
//!
//! Not done: multiple queues, split event channels, scatter-gather, GSO,
//! checksum offload, the control ring (hashing, multicast filters),
//! watching the backend after connection (a backend that closes later is
//! not noticed; [`NetDevice::link_up`] always says up), and resetting a
//! front end a previous kernel left Connected. Shutdown is not done either: dropping a [`Netfront`] leaves
//! the backend connected and leaks its pages, grants, event channel and
//! binding (it holds neither the `Hal` nor the `XenBus`); since nothing is
//! freed, whatever the backend still writes lands in memory nobody else
//! uses.

use crate::hal::{
    BoundInterrupt, Dma, GrantRef, Hal, HalError, InterruptHandler, InterruptSource, WatchHandler,
    XenBus, PAGE_SIZE,
};
use crate::net::{NetCounters, NetDevice, NetError, Waker, MAX_FRAME};
use crate::pci::ConfigSpace;
use crate::xen::{
    read_state, write_state, FrontRing, SringIndex, SringIndices, SringPage, XenDevice,
    XenbusError, XenbusState,
};
use crate::{Device, Driver, ProbeError};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// The xenstore device kind this driver takes.
pub const VIF_KIND: &str = "vif";

/// Flags and statuses of `io/netif.h`.
pub mod netif {
    /// Transmit: the checksum is blank (partial); the backend fills it.
    pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
    /// Transmit: the data is known valid (no checksum check needed).
    pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
    /// Transmit: the packet continues in the next request.
    pub const NETTXF_MORE_DATA: u16 = 1 << 2;
    /// Transmit: an extra-info slot follows.
    pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

    /// Receive: the checksum was checked (or the data is local).
    pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
    /// Receive: the checksum is blank (partial).
    pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
    /// Receive: the packet continues in the next response.
    pub const NETRXF_MORE_DATA: u16 = 1 << 2;
    /// Receive: extra-info slots follow this response.
    pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
    /// Receive: a GSO prefix (an old protocol variant).
    pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

    /// In `netif_extra_info.flags`: another extra-info slot follows.
    pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

    pub const NETIF_RSP_DROPPED: i16 = -2;
    pub const NETIF_RSP_ERROR: i16 = -1;
    pub const NETIF_RSP_OKAY: i16 = 0;
    /// A response to an extra-info slot (no packet of its own).
    pub const NETIF_RSP_NULL: i16 = 1;
}

/// `struct netif_tx_request` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifTxRequest {
    /// The grant of the page holding the data.
    pub gref: GrantRef,
    /// Where the data starts in that page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// Bytes of the packet (of the whole packet in its first request).
    pub size: u16,
}

/// `struct netif_tx_response` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifTxResponse {
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_rx_request` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: u16,
    pub pad: u16,
    /// The grant of the page to receive into.
    pub gref: GrantRef,
}

/// `struct netif_rx_response` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifRxResponse {
    pub id: u16,
    /// Where the data starts in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// The length of the data when not negative, else `NETIF_RSP_*`.
    pub status: i16,
}

/// The transmit ring: requests and responses in one page.
type TxRing = Ring<NetifTxRequest, NetifTxResponse>;
/// The receive ring.
type RxRing = Ring<NetifRxRequest, NetifRxResponse>;

/// Entries of the transmit ring (256).
pub const TX_RING_SIZE: u32 = SringPage::<NetifTxRequest, NetifTxResponse>::SIZE;
/// Entries of the receive ring (256).
pub const RX_RING_SIZE: u32 = SringPage::<NetifRxRequest, NetifRxResponse>::SIZE;
/// Receive pages: one per ring slot.
pub const RX_BUFFERS: usize = RX_RING_SIZE as usize;
/// Transmit pages (see the module documentation for the grant budget).
pub const TX_BUFFERS: usize = 128;
const _: () = assert!(
    TX_BUFFERS > 0
        && TX_BUFFERS <= TX_RING_SIZE as usize
        && RX_BUFFERS > 0
        && RX_BUFFERS <= u16::MAX as usize + 1
        && MAX_FRAME <= PAGE_SIZE
);

/// A grant's frame is the device address without the offset bits.
const PAGE_SHIFT: u32 = 12;
const _: () = assert!(1 << PAGE_SHIFT == PAGE_SIZE);

/// The shortest frame taken or given: an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// How long the backend may take to reach each state the handshake waits
/// for.
pub const BACKEND_TIMEOUT_NS: u64 = 10_000_000_000;
/// The backend's state is read at least this often while waiting.
pub const STATE_POLL_NS: u64 = 10_000_000;
/// Reads of the backend's state per wait, at most.
pub const MAX_STATE_READS: u32 = 10_000;
/// Spins per wait, at most, whatever the clock says: far more than
/// [`BACKEND_TIMEOUT_NS`] takes with a clock read in each spin.
pub const MAX_WAIT_SPINS: u64 = 1 << 32;

/// What `probe` answers before the kernel registered an [`EventSender`].
pub const NO_EVENT_SENDER: &str = "netfront: no event-channel sender registered";
/// A backend that did not reach InitWait in time.
pub const INIT_WAIT_TIMEOUT: &str = "netfront: the backend did not reach InitWait in time";
/// A backend that did not connect in time.
pub const CONNECT_TIMEOUT: &str = "netfront: the backend did not connect in time";
/// A backend that closed instead of connecting.
pub const BACKEND_CLOSED: &str = "netfront: the backend closed instead of connecting";
/// A backend that did not follow a close in time.
pub const CLOSE_TIMEOUT: &str = "netfront: the backend did not close in time";
/// How long a close waits for each of the backend's states.
pub const CLOSE_TIMEOUT_NS: u64 = 2_000_000_000;
/// A reconnection after a resume that did not work.
pub const RECONNECT_FAILED: &str = "netfront: no connection to the backend after the resume";
/// A backend without `feature-rx-copy`.
pub const NO_RX_COPY: &str = "netfront: the backend cannot copy received frames (feature-rx-copy)";
/// The broken-interface reasons.
pub const RX_OVERRUN: &str = "netfront: the backend published more receive responses than requests";
pub const TX_OVERRUN: &str =
    "netfront: the backend published more transmit responses than requests";
const OUT_OF_STEP: &str = "netfront: the receive ring lost step with its buffers";
const RUNT: &str = "netfront: a frame shorter than an Ethernet header";

/// How a running interface signals its event channel: `func(context,
/// port)` performs `EVTCHNOP_send` on the local `port`. Called from the
/// network thread, never in interrupt context.
#[derive(Clone, Copy, Debug)]
pub struct EventSender {
    pub func: fn(usize, u32) -> Result<(), HalError>,
    pub context: usize,
}

impl EventSender {
    pub fn send(&self, port: u32) -> Result<(), HalError> {
        (self.func)(self.context, port)
    }
}

/// The sender [`NetfrontDriver`] gives the interfaces it probes; null
/// until [`set_event_sender`].
static EVENT_SENDER: AtomicPtr<EventSender> = AtomicPtr::new(ptr::null_mut());

/// Registers the kernel's event-channel sender, for [`NetfrontDriver`]'s
/// probes; call before probing. A later call replaces it (the earlier
/// one is leaked: an interface may hold a copy, and copies are cheap).
pub fn set_event_sender(sender: EventSender) {
    let leaked = Box::into_raw(Box::new(sender));
    EVENT_SENDER.store(leaked, Ordering::Release);
}

fn event_sender() -> Option<EventSender> {
    let sender = EVENT_SENDER.load(Ordering::Acquire);
    if sender.is_null() {
        return None;
    }
    // SAFETY: non-null values come from `Box::into_raw` in
    // `set_event_sender` and are never freed; the sender is plain data.
    Some(unsafe { *sender })
}

/// Changes of any backend's `state` node, counted by the watch handler.
/// One counter for every netfront: a change elsewhere only costs a read.
static BACKEND_STATE_EVENTS: AtomicU32 = AtomicU32::new(0);

/// The watch handler (the kernel's xenstore thread): notes the change.
fn backend_state_changed(_context: usize, _path: &str) {
    BACKEND_STATE_EVENTS.fetch_add(1, Ordering::Release);
}

/// The Xen netfront driver.
pub struct NetfrontDriver;

impl Driver for NetfrontDriver {
    fn name(&self) -> &'static str {
        "netfront"
    }

    fn matches(&self, device: &Device<'_>) -> bool {
        matches!(device, Device::Xen(device) if device.kind == VIF_KIND)
    }

    /// Connects to the backend ([`Netfront::new`]) with the registered
    /// [`EventSender`] and hands the interface to the stack. When the
    /// kernel refuses the interface, it stays connected (see the module
    /// documentation: no shutdown yet).
    fn probe(
        &self,
        device: &Device<'_>,
        hal: &dyn Hal,
        xen: Option<&dyn XenBus>,
        _pci: Option<&dyn ConfigSpace>,
    ) -> Result<(), ProbeError> {
        let Device::Xen(device) = device else {
            return Err(ProbeError::Device("netfront: not a Xen device"));
        };
        let xen = xen.ok_or(ProbeError::NoXenBus)?;
        let sender = event_sender().ok_or(ProbeError::Device(NO_EVENT_SENDER))?;
        let net = Netfront::new(device, hal, xen, sender)?;
        hal.attach_net(Box::new(net))?;
        Ok(())
    }
}

/// The bounds of a wait for the backend.
#[derive(Clone, Copy, Debug)]
struct WaitLimits {
    timeout_ns: u64,
    poll_ns: u64,
    max_reads: u32,
    max_spins: u64,
}

impl WaitLimits {
    const DEFAULT: WaitLimits = WaitLimits {
        timeout_ns: BACKEND_TIMEOUT_NS,
        poll_ns: STATE_POLL_NS,
        max_reads: MAX_STATE_READS,
        max_spins: MAX_WAIT_SPINS,
    };
}

/// How to set an interface up; tests shorten the waits and start the ring
/// indices near the wrap.
#[derive(Clone, Copy, Debug)]
struct Setup {
    wait: WaitLimits,
    ring_start: u32,
}

impl Setup {
    const DEFAULT: Setup = Setup {
        wait: WaitLimits::DEFAULT,
        ring_start: 0,
    };
}

/// The error for a xenstore access to `path` that failed.
fn store_error(path: &str, error: HalError) -> ProbeError {
    let path = path.to_string();
    ProbeError::Xenbus(match error {
        HalError::NotFound => XenbusError::Missing { path },
        error => XenbusError::Store { path, error },
    })
}

fn write_node(xen: &dyn XenBus, dir: &str, node: &str, value: &str) -> Result<(), ProbeError> {
    let path = format!("{dir}/{node}");
    xen.write(&path, value)
        .map_err(|error| store_error(&path, error))
}

/// The station address in xenstore's form: `aa:bb:cc:dd:ee:ff`, six pairs
/// of hex digits in either case; `None` for anything else, a multicast or
/// the all-zero address.
pub fn parse_mac(value: &str) -> Option<[u8; 6]> {
    fn hex(digit: u8) -> Option<u8> {
        (digit as char).to_digit(16).map(|value| value as u8)
    }
    let bytes = value.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, byte) in mac.iter_mut().enumerate() {
        let at = 3 * i;
        if i > 0 && bytes[at - 1] != b':' {
            return None;
        }
        *byte = hex(bytes[at])? << 4 | hex(bytes[at + 1])?;
    }
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return None;
    }
    Some(mac)
}

fn read_mac(xen: &dyn XenBus, front: &str) -> Result<[u8; 6], ProbeError> {
    let path = format!("{front}/mac");
    let value = xen.read(&path).map_err(|error| store_error(&path, error))?;
    match parse_mac(&value) {
        Some(mac) => Ok(mac),
        None => Err(ProbeError::Xenbus(XenbusError::Malformed { path, value })),
    }
}

/// Whether the backend offers `feature-rx-copy` (a non-zero decimal).
fn check_rx_copy(xen: &dyn XenBus, backend: &str) -> Result<(), ProbeError> {
    let path = format!("{backend}/feature-rx-copy");
    let value = match xen.read(&path) {
        Ok(value) => value,
        Err(HalError::NotFound) => return Err(ProbeError::Device(NO_RX_COPY)),
        Err(error) => return Err(store_error(&path, error)),
    };
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    if digits && value.bytes().any(|b| b != b'0') {
        Ok(())
    } else {
        Err(ProbeError::Device(NO_RX_COPY))
    }
}

/// Waits for the backend's state to be `target` (see the module
/// documentation). While waiting for Connected, Closing and Closed are a
/// refusal; while waiting for InitWait they are not (netback leaves
/// Closed when it sees the front end Initialising). A state node that is
/// missing is waited for; one that is malformed is an error.
fn wait_for_backend(
    hal: &dyn Hal,
    xen: &dyn XenBus,
    backend: &str,
    target: XenbusState,
    limits: &WaitLimits,
) -> Result<(), ProbeError> {
    let timeout = ProbeError::Device(match target {
        XenbusState::InitWait => INIT_WAIT_TIMEOUT,
        XenbusState::Closing | XenbusState::Closed => CLOSE_TIMEOUT,
        _ => CONNECT_TIMEOUT,
    });
    let start = hal.now_ns();
    let mut spins = 0u64;
    let mut seen = BACKEND_STATE_EVENTS.load(Ordering::Acquire);
    for _ in 0..limits.max_reads {
        match read_state(xen, backend) {
            Ok(state) if state == target => return Ok(()),
            Ok(XenbusState::Closing | XenbusState::Closed) if target == XenbusState::Connected => {
                return Err(ProbeError::Device(BACKEND_CLOSED))
            }
            Ok(_) | Err(XenbusError::Missing { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        let read_at = hal.now_ns();
        loop {
            let now = hal.now_ns();
            if now.saturating_sub(start) >= limits.timeout_ns || spins >= limits.max_spins {
                return Err(timeout);
            }
            let events = BACKEND_STATE_EVENTS.load(Ordering::Acquire);
            if events != seen {
                seen = events;
                break;
            }
            if now.saturating_sub(read_at) >= limits.poll_ns {
                break;
            }
            spins += 1;
            core::hint::spin_loop();
        }
    }
    Err(timeout)
}

/// One DMA page granted to the backend.
#[derive(Debug)]
struct GrantedPage {
    dma: Dma,
    grant: GrantRef,
}

impl GrantedPage {
    /// Allocates a page and grants it to `domid`.
    fn new(
        hal: &dyn Hal,
        xen: &dyn XenBus,
        domid: u16,
        readonly: bool,
    ) -> Result<GrantedPage, ProbeError> {
        let dma = hal.dma_alloc(1)?;
        if dma.len() < PAGE_SIZE
            || !(dma.virt.as_ptr() as usize).is_multiple_of(PAGE_SIZE)
            || !dma.device_addr.is_multiple_of(PAGE_SIZE as u64)
        {
            hal.dma_free(dma);
            return Err(ProbeError::Device(
                "netfront: DMA memory that is not one aligned page",
            ));
        }
        match xen.grant_access(domid, dma.device_addr >> PAGE_SHIFT, readonly) {
            Ok(grant) => Ok(GrantedPage { dma, grant }),
            Err(error) => {
                hal.dma_free(dma);
                Err(error.into())
            }
        }
    }

    /// Ends the grant and frees the page; leaks the page when the grant
    /// does not end (the backend still maps it).
    fn release(self, hal: &dyn Hal, xen: &dyn XenBus) {
        if xen.end_access(self.grant).is_ok() {
            hal.dma_free(self.dma);
        }
    }

    fn ptr(&self) -> *mut u8 {
        self.dma.virt.as_ptr()
    }
}

/// Every page an interface grants.
struct Pages {
    tx_ring: GrantedPage,
    rx_ring: GrantedPage,
    rx_buffers: Vec<GrantedPage>,
    tx_buffers: Vec<GrantedPage>,
}

impl Pages {
    /// Allocates and grants them all, or none.
    fn allocate(hal: &dyn Hal, xen: &dyn XenBus, domid: u16) -> Result<Pages, ProbeError> {
        let tx_ring = GrantedPage::new(hal, xen, domid, false)?;
        let rx_ring = match GrantedPage::new(hal, xen, domid, false) {
            Ok(page) => page,
            Err(error) => {
                tx_ring.release(hal, xen);
                return Err(error);
            }
        };
        let mut pages = Pages {
            tx_ring,
            rx_ring,
            rx_buffers: Vec::with_capacity(RX_BUFFERS),
            tx_buffers: Vec::with_capacity(TX_BUFFERS),
        };
        let fill = |count, readonly, into: &mut Vec<GrantedPage>| {
            for _ in 0..count {
                into.push(GrantedPage::new(hal, xen, domid, readonly)?);
            }
            Ok::<(), ProbeError>(())
        };
        let filled = fill(RX_BUFFERS, false, &mut pages.rx_buffers)
            .and_then(|()| fill(TX_BUFFERS, true, &mut pages.tx_buffers));
        match filled {
            Ok(()) => Ok(pages),
            Err(error) => {
                pages.release(hal, xen);
                Err(error)
            }
        }
    }

    fn release(self, hal: &dyn Hal, xen: &dyn XenBus) {
        let Pages {
            tx_ring,
            rx_ring,
            rx_buffers,
            tx_buffers,
        } = self;
        for page in [tx_ring, rx_ring]
            .into_iter()
            .chain(rx_buffers)
            .chain(tx_buffers)
        {
            page.release(hal, xen);
        }
    }
}

/// A shared ring: the page's indices and entries, and the front end's
/// private indices.
struct Ring<Req, Rsp> {
    page: SringPage<Req, Rsp>,
    front: FrontRing,
}

impl<Req: Copy, Rsp: Copy> Ring<Req, Rsp> {
    /// `SHARED_RING_INIT` and `FRONT_RING_INIT` on `shared`, with every
    /// index at `start` (0 but in tests).
    fn init(shared: &GrantedPage, start: u32) -> Result<Self, ProbeError> {
        // SAFETY: the page is one page-aligned page (`GrantedPage::new`)
        // that stays allocated while the ring lives: a Netfront never
        // frees its pages, and a failed set-up drops its rings before it
        // releases the pages. Only the backend touches it otherwise, and
        // no Rust reference points into it. The responses (`NetifTx
        // Response`, `NetifRxResponse`) are integers, valid for any bits.
        let page = unsafe { SringPage::<Req, Rsp>::new(shared.dma.virt) }?;
        let front = page.init()?;
        if start == 0 {
            return Ok(Ring { page, front });
        }
        page.store(SringIndex::ReqProd, start);
        page.store(SringIndex::RspProd, start);
        page.store(SringIndex::ReqEvent, start.wrapping_add(1));
        page.store(SringIndex::RspEvent, start.wrapping_add(1));
        let front = FrontRing::starting_at(SringPage::<Req, Rsp>::SIZE, start)?;
        Ok(Ring { page, front })
    }
}

/// Where the receive side is in a packet that spans several slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RxChain {
    /// The next slot holds a `netif_extra_info`, not a response.
    extras: bool,
    /// The next response continues a packet being dropped.
    fragments: bool,
}

/// A connected netfront interface.
pub struct Netfront {
    name: String,
    /// The vif's id (`device/vif/<id>`), to read its nodes again.
    id: u32,
    /// `device/vif/<id>` and the backend's directory, for the close.
    front: String,
    backend: String,
    closed: bool,
    mac: [u8; 6],
    port: u32,
    interrupt: BoundInterrupt,
    sender: EventSender,
    /// The last signal failed: signal at the next push whatever the ring
    /// says.
    notify_failed: bool,
    waker: Waker,
    tx: TxRing,
    rx: RxRing,
    /// The ring pages; held so that they stay allocated.
    tx_ring_page: GrantedPage,
    rx_ring_page: GrantedPage,
    /// Receive page `i` is posted in slot `i` with id `i`.
    rx_buffers: Vec<GrantedPage>,
    rx_chain: RxChain,
    /// Transmit page `i` is requested with id `i`.
    tx_buffers: Vec<GrantedPage>,
    tx_free: Vec<u16>,
    /// Per transmit page: the frame's length while the backend has it.
    tx_in_flight: Vec<Option<u16>>,
    counters: NetCounters,
    /// Why the interface stopped, for good.
    broken: Option<&'static str>,
}

// SAFETY: the raw pointers a Netfront holds point into DMA pages it owns
// alone (its rings and buffers), shared with the backend domain but with
// no other thread of this kernel: the event channel's handler is the
// Waker and touches none of them.
unsafe impl Send for Netfront {}

impl Netfront {
    /// Connects to the backend of `device` (see the module documentation
    /// for the handshake). `sender` signals the event channel once the
    /// interface runs. On `Err` the front end's state is Closing (unless
    /// nothing was written) and everything taken is given back, but pages
    /// the backend still maps.
    pub fn new(
        device: &XenDevice,
        hal: &dyn Hal,
        xen: &dyn XenBus,
        sender: EventSender,
    ) -> Result<Netfront, ProbeError> {
        Self::connect(device, hal, xen, sender, &Setup::DEFAULT)
    }

    fn connect(
        device: &XenDevice,
        hal: &dyn Hal,
        xen: &dyn XenBus,
        sender: EventSender,
        setup: &Setup,
    ) -> Result<Netfront, ProbeError> {
        if device.kind != VIF_KIND {
            return Err(ProbeError::Device("netfront: not a vif"));
        }
        let front = device.frontend_path.as_str();
        let mac = read_mac(xen, front)?;
        let handler = WatchHandler {
            func: backend_state_changed,
            context: 0,
        };
        // Without the watch the waits poll; see the module documentation.
        let watch = xen
            .watch(&format!("{}/state", device.backend_path), handler)
            .ok();
        let result = write_state(xen, front, XenbusState::Initialising)
            .map_err(ProbeError::from)
            .and_then(|()| Self::start(device, hal, xen, sender, setup, mac));
        if result.is_err() {
            // Best effort: the backend learns we gave up, as from
            // xenbus_dev_fatal.
            let _ = write_state(xen, front, XenbusState::Closing);
        }
        if let Some(watch) = watch {
            // Best effort: a watch left behind only bumps the counter.
            let _ = xen.unwatch(watch);
        }
        let net = result?;
        // The backend maps the rings when it connects; one event makes it
        // look at them (best effort: the next push signals again).
        let _ = xen.notify(net.port);
        Ok(net)
    }

    /// From the front end's Initialising on: waits for InitWait, takes the
    /// memory, grants and event channel, publishes, waits for Connected.
    /// Gives back what it took on `Err`.
    fn start(
        device: &XenDevice,
        hal: &dyn Hal,
        xen: &dyn XenBus,
        sender: EventSender,
        setup: &Setup,
        mac: [u8; 6],
    ) -> Result<Netfront, ProbeError> {
        let backend = device.backend_path.as_str();
        wait_for_backend(hal, xen, backend, XenbusState::InitWait, &setup.wait)?;
        check_rx_copy(xen, backend)?;
        let domid = device.backend_id;
        let pages = Pages::allocate(hal, xen, domid)?;
        let port = match xen.alloc_unbound(domid) {
            Ok(port) => port,
            Err(error) => {
                pages.release(hal, xen);
                return Err(error.into());
            }
        };
        let waker = hal.net_waker();
        // Events need no acknowledgement: the handler is the waker.
        let handler = InterruptHandler {
            func: waker.func,
            context: waker.context,
        };
        let interrupt = match hal.bind_interrupt(InterruptSource::EventChannel { port }, handler) {
            Ok(bound) => bound,
            Err(error) => {
                let _ = xen.close(port);
                pages.release(hal, xen);
                return Err(error.into());
            }
        };
        let (tx, rx) = match Self::publish(device, hal, xen, setup, &pages, port) {
            Ok(rings) => rings,
            Err(error) => {
                // Best effort on the way out: the waker is static, so a
                // binding left behind only wakes the stack for nothing.
                let _ = hal.unbind_interrupt(interrupt);
                let _ = xen.close(port);
                pages.release(hal, xen);
                return Err(error);
            }
        };
        let Pages {
            tx_ring,
            rx_ring,
            rx_buffers,
            tx_buffers,
        } = pages;
        Ok(Netfront {
            name: format!("netfront {}", device.frontend_path),
            id: device.id,
            front: device.frontend_path.clone(),
            backend: device.backend_path.clone(),
            closed: false,
            mac,
            port,
            interrupt,
            sender,
            notify_failed: false,
            waker,
            tx,
            rx,
            tx_ring_page: tx_ring,
            rx_ring_page: rx_ring,
            rx_buffers,
            rx_chain: RxChain::default(),
            tx_buffers,
            tx_free: (0..TX_BUFFERS as u16).rev().collect(),
            tx_in_flight: vec![None; TX_BUFFERS],
            counters: NetCounters::default(),
            broken: None,
        })
    }

    /// Initialises the rings, posts every receive page, writes the ring
    /// details, switches to Connected and waits for the backend to follow.
    fn publish(
        device: &XenDevice,
        hal: &dyn Hal,
        xen: &dyn XenBus,
        setup: &Setup,
        pages: &Pages,
        port: u32,
    ) -> Result<(TxRing, RxRing), ProbeError> {
        let tx = TxRing::init(&pages.tx_ring, setup.ring_start)?;
        let mut rx = RxRing::init(&pages.rx_ring, setup.ring_start)?;
        while let Some(slot) = rx.front.next_request() {
            let buffer = pages.rx_buffers.get(slot).ok_or(ProbeError::Device(
                "netfront: a receive slot without a page",
            ))?;
            rx.page.write_request(
                slot,
                NetifRxRequest {
                    id: slot as u16,
                    pad: 0,
                    gref: buffer.grant,
                },
            )?;
        }
        // The backend finds them when it connects: no event needed yet.
        rx.front.push_requests(&rx.page);
        let front = device.frontend_path.as_str();
        let nodes = [
            ("tx-ring-ref", pages.tx_ring.grant.to_string()),
            ("rx-ring-ref", pages.rx_ring.grant.to_string()),
            ("event-channel", port.to_string()),
            ("request-rx-copy", "1".to_string()),
            ("feature-rx-notify", "1".to_string()),
            ("feature-no-csum-offload", "1".to_string()),
            ("feature-sg", "0".to_string()),
            ("feature-gso-tcpv4", "0".to_string()),
        ];
        for (node, value) in &nodes {
            write_node(xen, front, node, value)?;
        }
        write_state(xen, front, XenbusState::Connected)?;
        wait_for_backend(
            hal,
            xen,
            &device.backend_path,
            XenbusState::Connected,
            &setup.wait,
        )?;
        Ok((tx, rx))
    }

    /// The local port of the interface's event channel.
    pub fn event_channel(&self) -> u32 {
        self.port
    }

    /// The event channel's binding (for the log).
    pub fn interrupt(&self) -> BoundInterrupt {
        self.interrupt
    }

    /// The grants of the transmit and the receive ring.
    pub fn ring_refs(&self) -> (GrantRef, GrantRef) {
        (self.tx_ring_page.grant, self.rx_ring_page.grant)
    }

    /// Why the interface stopped working, if it did.
    pub fn broken(&self) -> Option<&'static str> {
        self.broken
    }

    fn fail(&mut self, why: &'static str) {
        self.broken.get_or_insert(why);
    }

    /// Signals the backend when the ring asked (`needed`) or the last
    /// signal failed.
    fn notify_if(&mut self, needed: bool) {
        if needed || self.notify_failed {
            self.notify_failed = self.sender.send(self.port).is_err();
        }
    }

    /// Handles the response in receive slot `slot`; copies a good frame
    /// into `buf` and returns its length.
    fn take_rx(&mut self, slot: usize, response: NetifRxResponse, buf: &mut [u8]) -> Option<usize> {
        if self.rx_chain.extras {
            // A `netif_extra_info`: type, then flags, in the bytes the
            // response's id occupies.
            let flags = response.id.to_ne_bytes()[1];
            self.rx_chain.extras = flags & netif::XEN_NETIF_EXTRA_FLAG_MORE != 0;
            return None;
        }
        if self.rx_chain.fragments {
            self.rx_chain.fragments = response.flags & netif::NETRXF_MORE_DATA != 0;
            return None;
        }
        // The first slot of a packet.
        self.rx_chain = RxChain {
            extras: response.flags & netif::NETRXF_EXTRA_INFO != 0,
            fragments: response.flags & netif::NETRXF_MORE_DATA != 0,
        };
        if usize::from(response.id) != slot || self.rx_chain.extras {
            self.counters.rx_errors += 1;
            return None;
        }
        if self.rx_chain.fragments {
            self.counters.rx_drops += 1;
            return None;
        }
        let (Ok(len), offset) = (
            usize::try_from(response.status),
            usize::from(response.offset),
        ) else {
            self.counters.rx_errors += 1;
            return None;
        };
        if len < MIN_FRAME || offset + len > PAGE_SIZE {
            self.counters.rx_errors += 1;
            return None;
        }
        if len > buf.len() {
            self.counters.rx_drops += 1;
            return None;
        }
        let Some(page) = self.rx_buffers.get(slot) else {
            self.counters.rx_errors += 1;
            return None;
        };
        // SAFETY: offset + len <= PAGE_SIZE, the page's length; the
        // backend gave the page back with this response and writes it
        // again only once it is posted (one that writes it anyway only
        // garbles the frame); `buf` has room for len bytes and is the
        // caller's memory, not the page.
        unsafe { ptr::copy_nonoverlapping(page.ptr().add(offset), buf.as_mut_ptr(), len) };
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += len as u64;
        Some(len)
    }

    /// Posts receive page `slot` again, in its slot; false (and the
    /// interface broken) if the ring lost step, which it cannot.
    fn repost_rx(&mut self, slot: usize) -> bool {
        let gref = self.rx_buffers.get(slot).map(|page| page.grant);
        let posted = match (self.rx.front.next_request(), gref) {
            (Some(next), Some(gref)) if next == slot => self
                .rx
                .page
                .write_request(
                    slot,
                    NetifRxRequest {
                        id: slot as u16,
                        pad: 0,
                        gref,
                    },
                )
                .is_ok(),
            _ => false,
        };
        if !posted {
            self.counters.rx_errors += 1;
            self.fail(OUT_OF_STEP);
        }
        posted
    }

    /// Takes back the transmit pages the backend has finished with.
    fn reclaim_tx(&mut self) {
        if self.broken.is_some() {
            return;
        }
        for _ in 0..TX_RING_SIZE {
            let slot = match self.tx.front.next_response(&self.tx.page) {
                Ok(Some(slot)) => slot,
                Ok(None) => return,
                Err(_) => {
                    self.counters.tx_errors += 1;
                    self.fail(TX_OVERRUN);
                    return;
                }
            };
            // `next_response` gives slots of the ring: cannot fail.
            let Ok(response) = self.tx.page.read_response(slot) else {
                self.counters.tx_errors += 1;
                continue;
            };
            if response.status == netif::NETIF_RSP_NULL {
                // Answers an extra slot, which this driver never sends.
                self.counters.tx_errors += 1;
                continue;
            }
            let Some(len) = self
                .tx_in_flight
                .get_mut(usize::from(response.id))
                .and_then(Option::take)
            else {
                self.counters.tx_errors += 1;
                continue;
            };
            self.tx_free.push(response.id);
            if response.status == netif::NETIF_RSP_OKAY {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += u64::from(len);
            } else {
                self.counters.tx_errors += 1;
            }
        }
    }
}

impl NetDevice for Netfront {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.broken.is_some() {
            return None;
        }
        let mut received = None;
        let mut reposted = false;
        // At most a ring's worth per call, whatever the backend claims.
        for _ in 0..RX_RING_SIZE {
            let slot = match self.rx.front.next_response(&self.rx.page) {
                Ok(Some(slot)) => slot,
                Ok(None) => break,
                Err(_) => {
                    self.counters.rx_errors += 1;
                    self.fail(RX_OVERRUN);
                    break;
                }
            };
            // `next_response` gives slots of the ring: cannot fail.
            let Ok(response) = self.rx.page.read_response(slot) else {
                self.counters.rx_errors += 1;
                self.fail(OUT_OF_STEP);
                break;
            };
            received = self.take_rx(slot, response, buf);
            if !self.repost_rx(slot) {
                break;
            }
            reposted = true;
            if received.is_some() {
                break;
            }
        }
        if reposted && self.broken.is_none() {
            let notify = self.rx.front.push_requests(&self.rx.page);
            self.notify_if(notify);
        }
        received
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if let Some(why) = self.broken {
            return Err(NetError::Device(why));
        }
        if frame.len() > MAX_FRAME {
            return Err(NetError::TooLong(frame.len()));
        }
        if frame.len() < MIN_FRAME {
            return Err(NetError::Device(RUNT));
        }
        if self.tx_free.is_empty() || self.tx.front.is_full() {
            self.reclaim_tx();
            if let Some(why) = self.broken {
                return Err(NetError::Device(why));
            }
        }
        if self.tx.front.is_full() {
            self.counters.tx_drops += 1;
            return Err(NetError::Full);
        }
        let Some(id) = self.tx_free.pop() else {
            self.counters.tx_drops += 1;
            return Err(NetError::Full);
        };
        let index = usize::from(id);
        let (Some(slot), Some(page)) = (self.tx.front.next_request(), self.tx_buffers.get(index))
        else {
            // Neither happens: the ring had room and ids index the pool.
            self.tx_free.push(id);
            self.fail(OUT_OF_STEP);
            return Err(NetError::Device(OUT_OF_STEP));
        };
        let gref = page.grant;
        // SAFETY: the page is PAGE_SIZE >= MAX_FRAME >= frame.len() bytes
        // the driver owns; the backend does not read it while its id is
        // free; `frame` is the caller's memory, not the page.
        unsafe { ptr::copy_nonoverlapping(frame.as_ptr(), page.ptr(), frame.len()) };
        let size = frame.len() as u16;
        self.tx_in_flight[index] = Some(size);
        let request = NetifTxRequest {
            gref,
            offset: 0,
            flags: 0,
            id,
            size,
        };
        if self.tx.page.write_request(slot, request).is_err() {
            self.fail(OUT_OF_STEP);
            return Err(NetError::Device(OUT_OF_STEP));
        }
        let notify = self.tx.front.push_requests(&self.tx.page);
        self.notify_if(notify);
        Ok(())
    }

    fn can_transmit(&mut self) -> bool {
        self.reclaim_tx();
        self.broken.is_none() && !self.tx_free.is_empty() && !self.tx.front.is_full()
    }

    /// Reclaims what was sent, then `RING_FINAL_CHECK_FOR_RESPONSES` on
    /// both rings (asking for an event at the next response) and wakes the
    /// network thread if responses came in meanwhile.
    fn enable_interrupts(&mut self) {
        self.reclaim_tx();
        if self.broken.is_some() {
            return;
        }
        let rx = self.rx.front.final_check_for_responses(&self.rx.page);
        let tx = self.tx.front.final_check_for_responses(&self.tx.page);
        match (rx, tx) {
            (Err(_), _) => {
                self.counters.rx_errors += 1;
                self.fail(RX_OVERRUN);
            }
            (_, Err(_)) => {
                self.counters.tx_errors += 1;
                self.fail(TX_OVERRUN);
            }
            (Ok(rx), Ok(tx)) => {
                if rx || tx {
                    self.waker.wake();
                }
            }
        }
    }

    /// The close handshake (as Linux's `xennet_remove`): Closing, the
    /// backend's Closing, Closed, the backend's Closed. Each wait is
    /// bounded; the interface stops whatever the backend does.
    fn shutdown(&mut self, hal: &dyn Hal, xen: Option<&dyn XenBus>) -> Result<(), &'static str> {
        if self.closed {
            return Ok(());
        }
        let Some(xen) = xen else {
            return Err("netfront: no Xen bus to close through");
        };
        self.closed = true;
        self.broken.get_or_insert("netfront: closed");
        let limits = WaitLimits {
            timeout_ns: CLOSE_TIMEOUT_NS,
            ..WaitLimits::DEFAULT
        };
        let step = |state: XenbusState| -> Result<(), &'static str> {
            write_state(xen, &self.front, state).map_err(|_| "netfront: cannot write the state")?;
            wait_for_backend(hal, xen, &self.backend, state, &limits).map_err(|error| match error {
                ProbeError::Device(why) => why,
                _ => "netfront: cannot read the backend's state",
            })
        };
        step(XenbusState::Closing)?;
        step(XenbusState::Closed)
    }

    fn counters(&self) -> NetCounters {
        self.counters
    }

    /// After a resume in a new domain (Xen save/restore, migration) the
    /// backend, the event channel and every grant died with the old
    /// domain, and under PV the pages' machine frames changed: as Linux's
    /// `netfront_resume`, the interface connects again from the start
    /// (the toolstack set the front end Initialising and made a new
    /// backend, whose path is read again). The counters carry on; frames
    /// in flight are lost (TCP sends them again).
    fn resume(&mut self, hal: &dyn Hal, xen: Option<&dyn XenBus>) -> Result<(), &'static str> {
        self.resume_with(hal, xen, &Setup::DEFAULT)
    }
}

impl Netfront {
    /// Every page the interface granted.
    fn pages(&self) -> impl Iterator<Item = &GrantedPage> {
        [&self.tx_ring_page, &self.rx_ring_page]
            .into_iter()
            .chain(&self.rx_buffers)
            .chain(&self.tx_buffers)
    }

    fn resume_with(
        &mut self,
        hal: &dyn Hal,
        xen: Option<&dyn XenBus>,
        setup: &Setup,
    ) -> Result<(), &'static str> {
        let Some(xen) = xen else {
            return Err("netfront: no Xen bus to reconnect through");
        };
        if self.closed {
            return Err("netfront: closed");
        }
        // The grant table is new and empty: ending the old references
        // cannot find them in use, and frees them for the new connection.
        for page in self.pages() {
            let _ = xen.end_access(page.grant);
        }
        let connected = XenDevice::read(xen, VIF_KIND, self.id)
            .map_err(ProbeError::from)
            .and_then(|device| Self::connect(&device, hal, xen, self.sender, setup));
        match connected {
            Ok(fresh) => {
                let old = core::mem::replace(self, fresh);
                self.counters = old.counters;
                // Their grants ended above; nothing else refers to them.
                for page in [old.tx_ring_page, old.rx_ring_page]
                    .into_iter()
                    .chain(old.rx_buffers)
                    .chain(old.tx_buffers)
                {
                    hal.dma_free(page.dma);
                }
                Ok(())
            }
            Err(error) => {
                // The old pages stay allocated (the old rings point into
                // them); the interface is broken for good.
                let why = match error {
                    ProbeError::Device(why) => why,
                    _ => RECONNECT_FAILED,
                };
                self.fail(RECONNECT_FAILED);
                Err(why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeHal, FakeXenBus};
    use crate::xen::ring::need_notify;
    use core::cell::{Cell, RefCell};
    use core::mem::{offset_of, size_of};
    use core::ptr::NonNull;
    use core::sync::atomic::AtomicUsize;

    const FRONT: &str = "device/vif/0";
    const BACKEND: &str = "/local/domain/0/backend/vif/7/0";
    const BACKEND_ID: u16 = 3;
    const MAC: &str = "00:16:3e:5a:01:fe";
    /// Grants every interface takes.
    const GRANTS: u32 = 2 + RX_BUFFERS as u32 + TX_BUFFERS as u32;
    /// The fake's first grant reference.
    const FIRST_GRANT: u32 = 8;

    /// A [`Hal`] over the fake that finds pages by frame (for the fake
    /// backend), counts the waker's calls, keeps the interfaces attached
    /// and lets the clock move a step each time it is read.
    struct TestHal {
        fake: FakeHal,
        /// (device address, host address) of each live page.
        pages: RefCell<Vec<(u64, usize)>>,
        wakes: &'static AtomicUsize,
        step: Cell<u64>,
        attached: RefCell<Vec<Box<dyn NetDevice>>>,
    }

    impl TestHal {
        fn new() -> Self {
            TestHal {
                fake: FakeHal::new(),
                pages: RefCell::new(Vec::new()),
                wakes: Box::leak(Box::new(AtomicUsize::new(0))),
                step: Cell::new(0),
                attached: RefCell::new(Vec::new()),
            }
        }

        fn wakes(&self) -> usize {
            self.wakes.load(Ordering::SeqCst)
        }

        /// The host address of page `frame`; panics when the driver
        /// granted a frame that is not one of its pages.
        fn page(&self, frame: u64) -> NonNull<u8> {
            let pages = self.pages.borrow();
            let Some(&(_, host)) = pages.iter().find(|&&(addr, _)| addr == frame << PAGE_SHIFT)
            else {
                panic!("frame {frame:#x} is not a live page of the driver");
            };
            NonNull::new(host as *mut u8).expect("a live page")
        }
    }

    fn count_wake(context: usize) {
        // SAFETY: the context is the address of the AtomicUsize that
        // TestHal::new leaked.
        let wakes = unsafe { &*(context as *const AtomicUsize) };
        wakes.fetch_add(1, Ordering::SeqCst);
    }

    // SAFETY: every promise is the FakeHal's, to which this delegates.
    unsafe impl Hal for TestHal {
        fn dma_alloc(&self, pages: usize) -> Result<Dma, HalError> {
            let dma = self.fake.dma_alloc(pages)?;
            for page in 0..pages {
                let offset = page * PAGE_SIZE;
                self.pages.borrow_mut().push((
                    dma.device_addr + offset as u64,
                    dma.virt.as_ptr() as usize + offset,
                ));
            }
            Ok(dma)
        }

        fn dma_free(&self, dma: Dma) {
            let end = dma.device_addr + dma.len() as u64;
            self.pages
                .borrow_mut()
                .retain(|&(addr, _)| addr < dma.device_addr || addr >= end);
            self.fake.dma_free(dma);
        }

        fn device_address(&self, virt: *const u8) -> Option<u64> {
            self.fake.device_address(virt)
        }

        fn map_mmio(&self, phys: u64, len: usize) -> Result<NonNull<u8>, HalError> {
            self.fake.map_mmio(phys, len)
        }

        fn bind_interrupt(
            &self,
            source: InterruptSource,
            handler: InterruptHandler,
        ) -> Result<BoundInterrupt, HalError> {
            self.fake.bind_interrupt(source, handler)
        }

        fn unbind_interrupt(&self, bound: BoundInterrupt) -> Result<(), HalError> {
            self.fake.unbind_interrupt(bound)
        }

        fn net_waker(&self) -> Waker {
            Waker {
                func: count_wake,
                context: self.wakes as *const AtomicUsize as usize,
            }
        }

        fn attach_net(&self, device: Box<dyn NetDevice>) -> Result<(), HalError> {
            self.attached.borrow_mut().push(device);
            Ok(())
        }

        fn now_ns(&self) -> u64 {
            let now = self.fake.now_ns();
            self.fake.advance(self.step.get());
            now
        }
    }

    /// Signals through the test's bus, which counts per port.
    fn send_through_bus(context: usize, port: u32) -> Result<(), HalError> {
        // SAFETY: the context is the address of the FakeXenBus that
        // Rig::new leaked; only the test's thread uses it.
        let bus = unsafe { &*(context as *const FakeXenBus) };
        bus.notify(port)
    }

    /// netback's xenbus side: InitWait when the front end is
    /// Initialising; at the front end's Connected, checks the nodes and
    /// connects, or closes, or stays put.
    struct Script {
        bus: &'static FakeXenBus,
        /// Set once the watch's first firing is past.
        armed: Cell<bool>,
        init_wait: Cell<bool>,
        connect: Cell<bool>,
        close: Cell<bool>,
        /// Answer the front end's Closing and Closed with the same.
        follow_close: Cell<bool>,
        /// Map both rings' grants at the front end's Connected.
        map_rings: Cell<bool>,
        /// The front end's states, as the backend saw them change.
        seen: RefCell<Vec<String>>,
        problems: RefCell<Vec<String>>,
    }

    fn frontend_changed(context: usize, _path: &str) {
        // SAFETY: the context is the address of the Script that Rig::new
        // leaked; only the test's thread uses it.
        let script = unsafe { &*(context as *const Script) };
        if !script.armed.get() {
            return;
        }
        let bus = script.bus;
        let state = bus.get(&format!("{FRONT}/state")).unwrap_or_default();
        script.seen.borrow_mut().push(state.clone());
        let backend_state = format!("{BACKEND}/state");
        match state.as_str() {
            "1" if script.init_wait.get() => bus.write(&backend_state, "2").unwrap(),
            "4" => {
                let problems = front_node_problems(bus);
                if script.map_rings.get() {
                    for node in ["tx-ring-ref", "rx-ring-ref"] {
                        bus.set_mapped(node_u32(bus, node), true);
                    }
                }
                if script.close.get() || !problems.is_empty() {
                    bus.write(&backend_state, "5").unwrap();
                } else if script.connect.get() {
                    bus.write(&backend_state, "4").unwrap();
                }
                script.problems.borrow_mut().extend(problems);
            }
            // netback follows a close: Closing, then Closed.
            "5" | "6" if script.follow_close.get() => bus.write(&backend_state, &state).unwrap(),
            _ => {}
        }
    }

    fn node_u32(bus: &FakeXenBus, node: &str) -> u32 {
        bus.get(&format!("{FRONT}/{node}"))
            .and_then(|value| value.parse().ok())
            .unwrap_or(u32::MAX)
    }

    /// What netback's connect would object to in the front end's nodes.
    fn front_node_problems(bus: &FakeXenBus) -> Vec<String> {
        let mut problems = Vec::new();
        for node in ["tx-ring-ref", "rx-ring-ref"] {
            match bus.grant(node_u32(bus, node)) {
                Some(grant) if grant.domid == BACKEND_ID && !grant.readonly => {}
                other => problems.push(format!("{node}: {other:?}")),
            }
        }
        match bus.port(node_u32(bus, "event-channel")) {
            Some(port) if port.remote == BACKEND_ID => {}
            other => problems.push(format!("event-channel: {other:?}")),
        }
        for (node, value) in [
            ("request-rx-copy", "1"),
            ("feature-rx-notify", "1"),
            ("feature-no-csum-offload", "1"),
            ("feature-sg", "0"),
            ("feature-gso-tcpv4", "0"),
        ] {
            let found = bus.get(&format!("{FRONT}/{node}"));
            if found.as_deref() != Some(value) {
                problems.push(format!("{node}: {found:?}"));
            }
        }
        problems
    }

    /// A guest with one vif, its toolstack nodes and a scripted backend.
    struct Rig {
        hal: TestHal,
        xen: &'static FakeXenBus,
        script: &'static Script,
    }

    impl Rig {
        fn new() -> Self {
            let xen: &'static FakeXenBus = Box::leak(Box::new(FakeXenBus::new()));
            xen.set(&format!("{FRONT}/backend"), BACKEND);
            xen.set(&format!("{FRONT}/backend-id"), &BACKEND_ID.to_string());
            xen.set(&format!("{FRONT}/state"), "1");
            xen.set(&format!("{FRONT}/mac"), MAC);
            xen.set(&format!("{BACKEND}/state"), "1");
            xen.set(&format!("{BACKEND}/feature-rx-copy"), "1");
            xen.set(&format!("{BACKEND}/frontend"), FRONT);
            let script: &'static Script = Box::leak(Box::new(Script {
                bus: xen,
                armed: Cell::new(false),
                init_wait: Cell::new(true),
                connect: Cell::new(true),
                close: Cell::new(false),
                follow_close: Cell::new(true),
                map_rings: Cell::new(false),
                seen: RefCell::new(Vec::new()),
                problems: RefCell::new(Vec::new()),
            }));
            let handler = WatchHandler {
                func: frontend_changed,
                context: script as *const Script as usize,
            };
            xen.watch(&format!("{FRONT}/state"), handler)
                .expect("the fake watches");
            script.armed.set(true);
            Rig {
                hal: TestHal::new(),
                xen,
                script,
            }
        }

        fn device(&self) -> XenDevice {
            XenDevice::read(self.xen, VIF_KIND, 0).expect("the toolstack's nodes")
        }

        fn sender(&self) -> EventSender {
            EventSender {
                func: send_through_bus,
                context: self.xen as *const FakeXenBus as usize,
            }
        }

        fn try_connect(&self, setup: &Setup) -> Result<Netfront, ProbeError> {
            Netfront::connect(&self.device(), &self.hal, self.xen, self.sender(), setup)
        }

        fn connect(&self) -> Netfront {
            self.try_connect(&Setup::DEFAULT)
                .expect("the interface connects")
        }

        fn front(&self, node: &str) -> Option<String> {
            self.xen.get(&format!("{FRONT}/{node}"))
        }

        fn notifications(&self, port: u32) -> u32 {
            self.xen.port(port).expect("a live port").notifications
        }

        /// Nothing left: pages, grants, ports, bindings.
        fn assert_released(&self) {
            assert_eq!(self.hal.fake.live_dma(), 0, "DMA pages left");
            for grant in FIRST_GRANT..FIRST_GRANT + GRANTS {
                assert_eq!(self.xen.grant(grant), None, "grant {grant} left");
            }
            for port in 1..4 {
                assert_eq!(self.xen.port(port), None, "port {port} left open");
            }
            assert_eq!(self.hal.fake.interrupts(), [], "interrupts left bound");
        }
    }

    /// netback's data path over the same shared pages, found through the
    /// grants the front end published. It views each ring with request
    /// and response swapped: it reads requests and writes responses.
    struct FakeNetback<'a> {
        rig: &'a Rig,
        tx: SringPage<NetifTxResponse, NetifTxRequest>,
        rx: SringPage<NetifRxResponse, NetifRxRequest>,
        tx_req_cons: u32,
        tx_rsp_prod: u32,
        rx_req_cons: u32,
        rx_rsp_prod: u32,
        /// Events it raised for the front end (`rsp_event` passed).
        events: u32,
    }

    impl<'a> FakeNetback<'a> {
        fn attach(rig: &'a Rig) -> Self {
            let page = |node| {
                let grant = rig.xen.grant(node_u32(rig.xen, node)).expect("granted");
                assert!(!grant.readonly && grant.domid == BACKEND_ID);
                rig.hal.page(grant.frame)
            };
            // SAFETY: live ring pages of the driver (a Netfront never frees
            // them), touched by both sides only through atomics and
            // volatile copies; requests are integers, valid for any bits.
            let tx = unsafe { SringPage::new(page("tx-ring-ref")) }.expect("a ring page");
            // SAFETY: as above.
            let rx = unsafe { SringPage::new(page("rx-ring-ref")) }.expect("a ring page");
            let (tx_start, rx_start) = (tx.load(SringIndex::RspProd), rx.load(SringIndex::RspProd));
            FakeNetback {
                rig,
                tx,
                rx,
                tx_req_cons: tx_start,
                tx_rsp_prod: tx_start,
                rx_req_cons: rx_start,
                rx_rsp_prod: rx_start,
                events: 0,
            }
        }

        fn slot(index: u32) -> usize {
            (index & 255) as usize
        }

        /// The host memory of grant `gref` as the backend may use it.
        fn granted(&self, gref: GrantRef, write: bool) -> *mut u8 {
            let grant = self.rig.xen.grant(gref).expect("a live grant");
            assert_eq!(grant.domid, BACKEND_ID);
            assert_eq!(grant.readonly, !write, "grant {gref}");
            self.rig.hal.page(grant.frame).as_ptr()
        }

        fn take_tx(&mut self) -> Option<NetifTxRequest> {
            if self.tx_req_cons == self.tx.load(SringIndex::ReqProd) {
                return None;
            }
            let request = self.tx.read_response(Self::slot(self.tx_req_cons)).unwrap();
            self.tx_req_cons = self.tx_req_cons.wrapping_add(1);
            Some(request)
        }

        /// The frame a transmit request names.
        fn tx_frame(&self, request: &NetifTxRequest) -> Vec<u8> {
            let page = self.granted(request.gref, false);
            let (offset, size) = (usize::from(request.offset), usize::from(request.size));
            assert!(offset + size <= PAGE_SIZE);
            // SAFETY: inside the granted page, which is live.
            unsafe { std::slice::from_raw_parts(page.add(offset), size) }.to_vec()
        }

        fn respond_tx(&mut self, id: u16, status: i16) {
            let slot = Self::slot(self.tx_rsp_prod);
            self.tx
                .write_request(slot, NetifTxResponse { id, status })
                .unwrap();
            let old = self.tx_rsp_prod;
            self.tx_rsp_prod = old.wrapping_add(1);
            self.tx.store(SringIndex::RspProd, self.tx_rsp_prod);
            if need_notify(self.tx_rsp_prod, old, self.tx.load(SringIndex::RspEvent)) {
                self.events += 1;
            }
        }

        fn rx_pending(&self) -> u32 {
            self.rx
                .load(SringIndex::ReqProd)
                .wrapping_sub(self.rx_req_cons)
        }

        fn take_rx(&mut self) -> NetifRxRequest {
            assert!(self.rx_pending() > 0, "no receive request posted");
            let request = self.rx.read_response(Self::slot(self.rx_req_cons)).unwrap();
            self.rx_req_cons = self.rx_req_cons.wrapping_add(1);
            request
        }

        /// Publishes `response` in the next slot (consuming a request).
        fn respond_rx(&mut self, response: NetifRxResponse) {
            let slot = Self::slot(self.rx_rsp_prod);
            self.rx.write_request(slot, response).unwrap();
            let old = self.rx_rsp_prod;
            self.rx_rsp_prod = old.wrapping_add(1);
            self.rx.store(SringIndex::RspProd, self.rx_rsp_prod);
            if need_notify(self.rx_rsp_prod, old, self.rx.load(SringIndex::RspEvent)) {
                self.events += 1;
            }
        }

        /// Copies `frame` into the next posted page at `offset` and
        /// answers with `flags`.
        fn deliver_with(&mut self, frame: &[u8], offset: u16, flags: u16) {
            let request = self.take_rx();
            let page = self.granted(request.gref, true);
            // SAFETY: inside the granted, writable page (the tests keep
            // offset + len within it).
            unsafe {
                ptr::copy_nonoverlapping(frame.as_ptr(), page.add(usize::from(offset)), frame.len())
            };
            self.respond_rx(NetifRxResponse {
                id: request.id,
                offset,
                flags,
                status: frame.len() as i16,
            });
        }

        fn deliver(&mut self, frame: &[u8]) {
            self.deliver_with(frame, 0, netif::NETRXF_DATA_VALIDATED);
        }

        /// A response to the next request with this id, offset, flags and
        /// status, whatever they are.
        fn answer_rx(&mut self, id: Option<u16>, offset: u16, flags: u16, status: i16) {
            let request = self.take_rx();
            self.respond_rx(NetifRxResponse {
                id: id.unwrap_or(request.id),
                offset,
                flags,
                status,
            });
        }
    }

    fn frame(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
    }

    // The wire.

    #[test]
    fn wire_layouts_match_netif_h() {
        assert_eq!(size_of::<NetifTxRequest>(), 12);
        assert_eq!(offset_of!(NetifTxRequest, gref), 0);
        assert_eq!(offset_of!(NetifTxRequest, offset), 4);
        assert_eq!(offset_of!(NetifTxRequest, flags), 6);
        assert_eq!(offset_of!(NetifTxRequest, id), 8);
        assert_eq!(offset_of!(NetifTxRequest, size), 10);
        assert_eq!(size_of::<NetifTxResponse>(), 4);
        assert_eq!(offset_of!(NetifTxResponse, id), 0);
        assert_eq!(offset_of!(NetifTxResponse, status), 2);
        assert_eq!(size_of::<NetifRxRequest>(), 8);
        assert_eq!(offset_of!(NetifRxRequest, id), 0);
        assert_eq!(offset_of!(NetifRxRequest, pad), 2);
        assert_eq!(offset_of!(NetifRxRequest, gref), 4);
        assert_eq!(size_of::<NetifRxResponse>(), 8);
        assert_eq!(offset_of!(NetifRxResponse, id), 0);
        assert_eq!(offset_of!(NetifRxResponse, offset), 2);
        assert_eq!(offset_of!(NetifRxResponse, flags), 4);
        assert_eq!(offset_of!(NetifRxResponse, status), 6);
        assert_eq!(SringPage::<NetifTxRequest, NetifTxResponse>::ENTRY_SIZE, 12);
        assert_eq!(SringPage::<NetifRxRequest, NetifRxResponse>::ENTRY_SIZE, 8);
        assert_eq!((TX_RING_SIZE, RX_RING_SIZE), (256, 256));
        assert_eq!((netif::NETRXF_MORE_DATA, netif::NETRXF_EXTRA_INFO), (4, 8));
        assert_eq!((netif::NETIF_RSP_DROPPED, netif::NETIF_RSP_NULL), (-2, 1));
        // The grant budget of the module documentation.
        assert_eq!(GRANTS, 386);
        const { assert!(GRANTS <= 512 - 8) };
    }

    #[test]
    fn macs_parse_as_the_toolstack_writes_them() {
        assert_eq!(
            parse_mac("00:16:3e:5a:01:fe"),
            Some([0x00, 0x16, 0x3e, 0x5a, 0x01, 0xfe])
        );
        assert_eq!(
            parse_mac("AA:bb:CC:dd:EE:f0"),
            Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0])
        );
        for bad in [
            "",
            "00:16:3e:5a:01",
            "00:16:3e:5a:01:fe:00",
            "00-16-3e-5a-01-fe",
            "0:16:3e:5a:01:fe0",
            "00:16:3e:5a:01:fg",
            "+0:16:3e:5a:01:fe",
            " 00:16:3e:5a:01:f",
            "00:16:3e:5a:01:fe\n",
            "0016:3e:5a:01:fe:",
            "00:16:3é:5a:01:f",
            // Multicast, and no address at all.
            "01:16:3e:5a:01:fe",
            "00:00:00:00:00:00",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    // The handshake.

    #[test]
    fn the_handshake_follows_xenbus_and_fills_the_receive_ring() {
        let rig = Rig::new();
        let net = rig.connect();
        assert!(
            rig.script.problems.borrow().is_empty(),
            "{:?}",
            rig.script.problems.borrow()
        );
        // Initialising, then Connected with every node in place.
        assert_eq!(rig.script.seen.borrow().as_slice(), ["1", "4"]);
        assert_eq!(rig.front("state").as_deref(), Some("4"));
        assert_eq!(
            rig.xen.get(&format!("{BACKEND}/state")).as_deref(),
            Some("4")
        );
        assert_eq!(net.name(), "netfront device/vif/0");
        assert_eq!(net.mac(), [0x00, 0x16, 0x3e, 0x5a, 0x01, 0xfe]);

        // The rings: granted writable, their frames the ring pages.
        let (tx_ref, rx_ref) = net.ring_refs();
        assert_eq!(rig.front("tx-ring-ref"), Some(tx_ref.to_string()));
        assert_eq!(rig.front("rx-ring-ref"), Some(rx_ref.to_string()));
        for (grant, page) in [(tx_ref, &net.tx_ring_page), (rx_ref, &net.rx_ring_page)] {
            let grant = rig.xen.grant(grant).expect("granted");
            assert_eq!(grant.frame, page.dma.device_addr >> PAGE_SHIFT);
            assert!(!grant.readonly);
        }
        // The event channel: for the backend, bound, and signalled once.
        let port = net.event_channel();
        assert_eq!(rig.front("event-channel"), Some(port.to_string()));
        assert_eq!(rig.xen.port(port).map(|p| p.remote), Some(BACKEND_ID));
        assert_eq!(
            rig.hal.fake.interrupts(),
            [(
                net.interrupt().handle,
                InterruptSource::EventChannel { port }
            )]
        );
        assert_eq!(rig.notifications(port), 1);

        // Every receive page posted, page i in slot i with id i, each
        // granted writable; the transmit pages read-only.
        let mut backend = FakeNetback::attach(&rig);
        assert_eq!(backend.rx.load(SringIndex::ReqProd), RX_RING_SIZE);
        assert_eq!(backend.tx.load(SringIndex::ReqProd), 0);
        let mut grefs = Vec::new();
        for slot in 0..RX_BUFFERS {
            let request = backend.take_rx();
            assert_eq!(usize::from(request.id), slot);
            assert_eq!(request.gref, net.rx_buffers[slot].grant);
            backend.granted(request.gref, true);
            grefs.push(request.gref);
        }
        grefs.sort_unstable();
        grefs.dedup();
        assert_eq!(grefs.len(), RX_BUFFERS);
        for page in &net.tx_buffers {
            backend.granted(page.grant, false);
        }
        assert_eq!(rig.hal.fake.live_dma(), GRANTS as usize);
    }

    #[test]
    fn a_malformed_mac_is_refused_before_anything_is_written() {
        for bad in [
            "00:16:3e:5a:01",
            "00:16:3e:5a:01:zz",
            "ff:ff:ff:ff:ff:ff",
            "",
        ] {
            let rig = Rig::new();
            rig.xen.set(&format!("{FRONT}/mac"), bad);
            assert_eq!(
                rig.try_connect(&Setup::DEFAULT).err(),
                Some(ProbeError::Xenbus(XenbusError::Malformed {
                    path: format!("{FRONT}/mac"),
                    value: bad.to_string()
                }))
            );
            assert_eq!(rig.front("state").as_deref(), Some("1"));
            assert_eq!(rig.script.seen.borrow().len(), 0);
            rig.assert_released();
        }
        let rig = Rig::new();
        rig.xen.remove(&format!("{FRONT}/mac"));
        assert_eq!(
            rig.try_connect(&Setup::DEFAULT).err(),
            Some(ProbeError::Xenbus(XenbusError::Missing {
                path: format!("{FRONT}/mac")
            }))
        );
        assert_eq!(rig.script.seen.borrow().len(), 0);
    }

    #[test]
    fn a_backend_that_never_connects_times_out_and_everything_is_released() {
        let rig = Rig::new();
        rig.script.connect.set(false);
        rig.hal.step.set(1_000_000);
        assert_eq!(
            rig.try_connect(&Setup::DEFAULT).err(),
            Some(ProbeError::Device(CONNECT_TIMEOUT))
        );
        assert!(rig.hal.fake.now_ns() >= BACKEND_TIMEOUT_NS);
        // The details were published, then the front end gave up.
        assert!(rig.front("tx-ring-ref").is_some());
        assert_eq!(rig.script.seen.borrow().as_slice(), ["1", "4", "5"]);
        assert_eq!(rig.front("state").as_deref(), Some("5"));
        rig.assert_released();
    }

    #[test]
    fn a_backend_that_never_reaches_init_wait_times_out() {
        let rig = Rig::new();
        rig.script.init_wait.set(false);
        rig.hal.step.set(1_000_000);
        assert_eq!(
            rig.try_connect(&Setup::DEFAULT).err(),
            Some(ProbeError::Device(INIT_WAIT_TIMEOUT))
        );
        assert_eq!(rig.front("tx-ring-ref"), None);
        assert_eq!(rig.front("state").as_deref(), Some("5"));
        rig.assert_released();
    }

    #[test]
    fn a_clock_that_does_not_move_does_not_hang_the_wait() {
        let rig = Rig::new();
        rig.script.init_wait.set(false);
        let setup = Setup {
            wait: WaitLimits {
                max_spins: 10_000,
                ..WaitLimits::DEFAULT
            },
            ..Setup::DEFAULT
        };
        assert_eq!(
            rig.try_connect(&setup).err(),
            Some(ProbeError::Device(INIT_WAIT_TIMEOUT))
        );
        // Nor does a backend that keeps the reads coming (here, a poll
        // interval of nothing): the reads are bounded too.
        let rig = Rig::new();
        rig.script.init_wait.set(false);
        let setup = Setup {
            wait: WaitLimits {
                max_reads: 5,
                poll_ns: 0,
                ..WaitLimits::DEFAULT
            },
            ..Setup::DEFAULT
        };
        assert_eq!(
            rig.try_connect(&setup).err(),
            Some(ProbeError::Device(INIT_WAIT_TIMEOUT))
        );
    }

    /// What the toolstack leaves after restoring the domain: the front end
    /// Initialising, a new backend Initialising too (the scripted one),
    /// and none of the old grants mapped.
    fn restore_domain(rig: &Rig) {
        rig.xen.set(&format!("{BACKEND}/state"), "1");
        rig.xen.write(&format!("{FRONT}/state"), "1").unwrap();
        rig.script.seen.borrow_mut().clear();
    }

    #[test]
    fn resume_connects_again_and_the_data_path_works() {
        let rig = Rig::new();
        let mut net = rig.connect();
        {
            let mut backend = FakeNetback::attach(&rig);
            net.transmit(&frame(1, 80)).unwrap();
            let request = backend.take_tx().unwrap();
            backend.respond_tx(request.id, netif::NETIF_RSP_OKAY);
            // One frame left in flight: lost with the old domain.
            net.transmit(&frame(2, 80)).unwrap();
        }
        assert!(net.can_transmit());
        let (old_tx, old_rx) = net.ring_refs();
        let old_port = net.event_channel();
        restore_domain(&rig);
        assert_eq!(net.resume(&rig.hal, Some(rig.xen)), Ok(()));
        assert_eq!(*rig.script.seen.borrow(), ["1", "4"]);
        assert_eq!(rig.front("state").as_deref(), Some("4"));
        assert_ne!(net.event_channel(), old_port);
        assert_eq!(
            rig.front("event-channel"),
            Some(net.event_channel().to_string())
        );
        assert_ne!(net.ring_refs(), (old_tx, old_rx));
        // The old pages went back, the new ones are the same number.
        assert_eq!(rig.hal.fake.live_dma(), GRANTS as usize);
        assert_eq!(net.counters().tx_packets, 1, "counters carry on");
        assert_eq!(net.broken(), None);
        // The new backend sees the new rings and every receive page.
        let mut backend = FakeNetback::attach(&rig);
        assert_eq!(backend.rx_pending(), 256);
        backend.deliver(&frame(3, 64));
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(net.receive(&mut buf), Some(64));
        assert_eq!(&buf[..64], &frame(3, 64)[..]);
        net.transmit(&frame(4, 90)).unwrap();
        let request = backend.take_tx().unwrap();
        assert_eq!(backend.tx_frame(&request), frame(4, 90));
    }

    #[test]
    fn a_resume_the_backend_does_not_answer_breaks_the_interface() {
        let rig = Rig::new();
        let mut net = rig.connect();
        rig.script.init_wait.set(false);
        restore_domain(&rig);
        rig.hal.step.set(1_000_000);
        assert_eq!(net.resume(&rig.hal, Some(rig.xen)), Err(INIT_WAIT_TIMEOUT));
        assert_eq!(net.broken(), Some(RECONNECT_FAILED));
        assert_eq!(
            net.transmit(&frame(0, 60)),
            Err(NetError::Device(RECONNECT_FAILED))
        );
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(net.receive(&mut buf), None);
        assert_eq!(
            net.resume(&rig.hal, None),
            Err("netfront: no Xen bus to reconnect through")
        );
    }

    #[test]
    fn shutdown_closes_the_connection_in_order() {
        let rig = Rig::new();
        let mut net = rig.connect();
        let seen_before = rig.script.seen.borrow().len();
        assert_eq!(net.shutdown(&rig.hal, Some(rig.xen)), Ok(()));
        assert_eq!(rig.script.seen.borrow()[seen_before..], ["5", "6"]);
        assert_eq!(
            rig.xen.get(&format!("{BACKEND}/state")).as_deref(),
            Some("6")
        );
        // Stopped for good, and a second shutdown does nothing.
        assert!(net.transmit(&[0u8; 60]).is_err());
        assert_eq!(net.shutdown(&rig.hal, Some(rig.xen)), Ok(()));
        assert_eq!(rig.script.seen.borrow().len(), seen_before + 2);
    }

    #[test]
    fn a_backend_that_ignores_the_close_is_given_up_on() {
        let rig = Rig::new();
        let mut net = rig.connect();
        rig.script.follow_close.set(false);
        rig.hal.step.set(1_000_000);
        let start = rig.hal.fake.now_ns();
        assert_eq!(net.shutdown(&rig.hal, Some(rig.xen)), Err(CLOSE_TIMEOUT));
        let took = rig.hal.fake.now_ns() - start;
        assert!(
            (CLOSE_TIMEOUT_NS..2 * CLOSE_TIMEOUT_NS).contains(&took),
            "{took}"
        );
        assert_eq!(rig.front("state").as_deref(), Some("5"));
        assert!(net.transmit(&[0u8; 60]).is_err());
        assert_eq!(net.shutdown(&rig.hal, None), Ok(()));
    }

    #[test]
    fn a_backend_that_closes_refuses_the_connection() {
        let rig = Rig::new();
        rig.script.close.set(true);
        rig.hal.step.set(1_000_000);
        assert_eq!(
            rig.try_connect(&Setup::DEFAULT).err(),
            Some(ProbeError::Device(BACKEND_CLOSED))
        );
        assert!(
            rig.hal.fake.now_ns() < 10 * STATE_POLL_NS,
            "refused at once, not at the timeout"
        );
        assert_eq!(rig.front("state").as_deref(), Some("5"));
        rig.assert_released();
    }

    #[test]
    fn a_malformed_backend_state_is_an_error() {
        let rig = Rig::new();
        rig.script.init_wait.set(false);
        rig.xen.set(&format!("{BACKEND}/state"), "InitWait");
        assert!(matches!(
            rig.try_connect(&Setup::DEFAULT).err(),
            Some(ProbeError::Xenbus(XenbusError::Malformed { .. }))
        ));
        rig.assert_released();
    }

    #[test]
    fn pages_the_backend_still_maps_are_leaked_not_freed() {
        let rig = Rig::new();
        rig.script.connect.set(false);
        rig.script.map_rings.set(true);
        rig.hal.step.set(1_000_000);
        let (tx_ref, rx_ref) = (FIRST_GRANT, FIRST_GRANT + 1);
        assert!(rig.try_connect(&Setup::DEFAULT).is_err());
        assert_eq!(rig.hal.fake.live_dma(), 2);
        assert!(rig.xen.grant(tx_ref).is_some() && rig.xen.grant(rx_ref).is_some());
        for grant in FIRST_GRANT + 2..FIRST_GRANT + GRANTS {
            assert_eq!(rig.xen.grant(grant), None);
        }
    }

    #[test]
    fn a_backend_without_rx_copy_is_refused() {
        for value in [None, Some("0"), Some("yes")] {
            let rig = Rig::new();
            let path = format!("{BACKEND}/feature-rx-copy");
            match value {
                None => rig.xen.remove(&path),
                Some(value) => rig.xen.set(&path, value),
            }
            assert_eq!(
                rig.try_connect(&Setup::DEFAULT).err(),
                Some(ProbeError::Device(NO_RX_COPY)),
                "{value:?}"
            );
            assert_eq!(rig.front("state").as_deref(), Some("5"));
            rig.assert_released();
        }
    }

    #[test]
    fn running_out_of_memory_releases_everything() {
        // In the first ring, the second, the receive pages (first, midway,
        // last) and the transmit pages.
        for pages in [0, 1, 2, 100, 257, 258, 300, GRANTS as usize - 1] {
            let rig = Rig::new();
            rig.hal.fake.limit_dma(pages);
            assert_eq!(
                rig.try_connect(&Setup::DEFAULT).err(),
                Some(ProbeError::Hal(HalError::OutOfMemory)),
                "with {pages} pages"
            );
            assert_eq!(rig.front("state").as_deref(), Some("5"));
            rig.assert_released();
        }
    }

    #[test]
    fn a_failed_xenstore_write_releases_everything() {
        let rig = Rig::new();
        rig.xen
            .fail(&format!("{FRONT}/event-channel"), HalError::Denied);
        assert_eq!(
            rig.try_connect(&Setup::DEFAULT).err(),
            Some(ProbeError::Xenbus(XenbusError::Store {
                path: format!("{FRONT}/event-channel"),
                error: HalError::Denied
            }))
        );
        assert_eq!(rig.front("state").as_deref(), Some("5"));
        rig.assert_released();
    }

    // The data path.

    #[test]
    fn a_frame_goes_through_rx_and_tx() {
        let rig = Rig::new();
        let mut net = rig.connect();
        let port = net.event_channel();
        let mut backend = FakeNetback::attach(&rig);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(net.receive(&mut buf), None);

        let incoming = frame(1, 60);
        backend.deliver(&incoming);
        assert_eq!(net.receive(&mut buf), Some(60));
        assert_eq!(&buf[..60], &incoming[..]);
        assert_eq!(net.receive(&mut buf), None);
        // The page went back, in its slot, with its grant.
        assert_eq!(backend.rx.load(SringIndex::ReqProd), RX_RING_SIZE + 1);
        let reposted = backend.rx.read_response(0).unwrap();
        assert_eq!((reposted.id, reposted.gref), (0, net.rx_buffers[0].grant));

        // A frame at an offset, as long as the stack takes.
        let big = frame(7, MAX_FRAME);
        backend.deliver_with(&big, 100, 0);
        assert_eq!(net.receive(&mut buf), Some(MAX_FRAME));
        assert_eq!(&buf[..], &big[..]);

        let outgoing = frame(9, 42);
        assert!(net.can_transmit());
        let before = rig.notifications(port);
        net.transmit(&outgoing).expect("room");
        assert_eq!(
            rig.notifications(port),
            before + 1,
            "the first push signals"
        );
        let request = backend.take_tx().expect("requested");
        assert_eq!((request.offset, request.flags, request.size), (0, 0, 42));
        assert_eq!(backend.tx_frame(&request), outgoing);
        assert_eq!(net.counters().tx_packets, 0, "counted when reclaimed");
        backend.respond_tx(request.id, netif::NETIF_RSP_OKAY);
        assert!(net.can_transmit());
        assert_eq!(
            net.counters(),
            NetCounters {
                rx_packets: 2,
                rx_bytes: 60 + MAX_FRAME as u64,
                tx_packets: 1,
                tx_bytes: 42,
                ..NetCounters::default()
            }
        );
        // The page is reused, with the same read-only grant.
        net.transmit(&outgoing).expect("room");
        let again = backend.take_tx().expect("requested");
        assert_eq!((again.id, again.gref), (request.id, request.gref));
    }

    #[test]
    fn indices_wrap_around() {
        let rig = Rig::new();
        let start = u32::MAX - 300;
        let mut net = rig
            .try_connect(&Setup {
                ring_start: start,
                ..Setup::DEFAULT
            })
            .expect("the interface connects");
        let mut backend = FakeNetback::attach(&rig);
        assert_eq!(
            backend.rx.load(SringIndex::ReqProd),
            start.wrapping_add(256)
        );
        let mut buf = [0u8; MAX_FRAME];
        // Batches of three through both rings: slots and indices wrap out
        // of step with each other, and the u32 indices wrap past zero.
        for round in 0..250u32 {
            let frames: Vec<Vec<u8>> = (0..3)
                .map(|i| {
                    frame(
                        round as u8 ^ i,
                        14 + (round as usize * 7 + i as usize) % 1400,
                    )
                })
                .collect();
            for f in &frames {
                backend.deliver(f);
            }
            for f in &frames {
                assert_eq!(net.receive(&mut buf), Some(f.len()), "round {round}");
                assert_eq!(&buf[..f.len()], &f[..]);
                net.transmit(f).expect("room");
            }
            assert_eq!(net.receive(&mut buf), None);
            for f in &frames {
                let request = backend.take_tx().expect("requested");
                assert_eq!(&backend.tx_frame(&request), f);
                backend.respond_tx(request.id, netif::NETIF_RSP_OKAY);
            }
            assert!(net.can_transmit());
        }
        let counters = net.counters();
        assert_eq!((counters.rx_packets, counters.tx_packets), (750, 750));
        assert_eq!(
            (counters.rx_errors, counters.rx_drops, counters.tx_errors),
            (0, 0, 0)
        );
        assert_eq!(net.rx.front.rsp_cons(), start.wrapping_add(750));
        assert!(net.rx.front.rsp_cons() < start, "the indices wrapped");
        assert_eq!(net.tx.front.rsp_cons(), start.wrapping_add(750));
        assert_eq!(backend.rx_pending(), 256, "every page posted again");
    }

    #[test]
    fn bad_receive_responses_are_counted_and_the_pages_posted_again() {
        let rig = Rig::new();
        let mut net = rig.connect();
        let mut backend = FakeNetback::attach(&rig);
        // An id past the ring, another slot's id, an error status, past
        // the page, a runt, and longer than the caller's buffer.
        backend.answer_rx(Some(300), 0, 0, 60);
        backend.answer_rx(Some(7), 0, 0, 60);
        backend.answer_rx(None, 0, 0, netif::NETIF_RSP_ERROR);
        backend.answer_rx(None, 4000, 0, 200);
        backend.answer_rx(None, 0, 0, 13);
        backend.answer_rx(None, 0, 0, 100);
        let mut small = [0u8; 50];
        assert_eq!(net.receive(&mut small), None);
        let counters = net.counters();
        assert_eq!(
            (counters.rx_errors, counters.rx_drops, counters.rx_packets),
            (5, 1, 0)
        );
        // All six pages went back, each in its slot with its grant.
        assert_eq!(backend.rx.load(SringIndex::ReqProd), RX_RING_SIZE + 6);
        for slot in 0..6 {
            let request = backend.rx.read_response(slot).unwrap();
            assert_eq!(usize::from(request.id), slot);
            assert_eq!(request.gref, net.rx_buffers[slot].grant);
        }
        // And a good frame still comes through.
        backend.deliver(&[0x5a; 20]);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(net.receive(&mut buf), Some(20));
        assert_eq!(&buf[..20], &[0x5a; 20]);
        assert_eq!(net.broken(), None);
    }

    #[test]
    fn packets_of_several_slots_are_dropped_whole() {
        let rig = Rig::new();
        let mut net = rig.connect();
        let mut backend = FakeNetback::attach(&rig);
        let mut buf = [0u8; MAX_FRAME];
        // Three fragments, then a frame of its own.
        backend.deliver_with(&frame(1, 100), 0, netif::NETRXF_MORE_DATA);
        backend.deliver_with(&frame(2, 100), 0, netif::NETRXF_MORE_DATA);
        backend.deliver_with(&frame(3, 100), 0, 0);
        backend.deliver(&frame(4, 64));
        assert_eq!(net.receive(&mut buf), Some(64));
        assert_eq!(&buf[..64], &frame(4, 64)[..]);
        assert_eq!((net.counters().rx_drops, net.counters().rx_packets), (1, 1));

        // Extra-info slots (two, the first flagged MORE) after the first
        // response: the packet is an error, the extras are skipped.
        backend.deliver_with(&frame(5, 100), 0, netif::NETRXF_EXTRA_INFO);
        let extra_more = u16::from_ne_bytes([1, netif::XEN_NETIF_EXTRA_FLAG_MORE]);
        // With statuses that would pass for frames if read as responses.
        backend.answer_rx(Some(extra_more), 0, 0, 60);
        backend.answer_rx(Some(u16::from_ne_bytes([1, 0])), 0, 0, 60);
        backend.deliver(&frame(6, 70));
        assert_eq!(net.receive(&mut buf), Some(70));
        assert_eq!(
            (net.counters().rx_errors, net.counters().rx_packets),
            (1, 2)
        );

        // A chain split across calls.
        backend.deliver_with(&frame(7, 100), 0, netif::NETRXF_MORE_DATA);
        assert_eq!(net.receive(&mut buf), None);
        backend.deliver_with(&frame(8, 100), 0, netif::NETRXF_MORE_DATA);
        assert_eq!(net.receive(&mut buf), None);
        backend.deliver_with(&frame(9, 100), 0, 0);
        backend.deliver(&frame(10, 80));
        assert_eq!(net.receive(&mut buf), Some(80));
        let counters = net.counters();
        assert_eq!(
            (counters.rx_drops, counters.rx_errors, counters.rx_packets),
            (2, 1, 3)
        );
        assert_eq!(backend.rx_pending(), 256, "every page posted again");
    }

    #[test]
    fn bad_transmit_responses_are_counted() {
        let rig = Rig::new();
        let mut net = rig.connect();
        let mut backend = FakeNetback::attach(&rig);
        // Seven requests, seven responses (no more: the ring refuses
        // responses to requests never made), four of them about pages
        // that are not in flight.
        for seed in 0..7 {
            net.transmit(&frame(seed, 100)).expect("room");
        }
        let ids: Vec<u16> = (0..7)
            .map(|_| backend.take_tx().expect("queued").id)
            .collect();
        backend.respond_tx(999, netif::NETIF_RSP_OKAY);
        backend.respond_tx(TX_BUFFERS as u16, netif::NETIF_RSP_OKAY);
        backend.respond_tx(ids[0], netif::NETIF_RSP_OKAY);
        // The same id again: no longer in flight.
        backend.respond_tx(ids[0], netif::NETIF_RSP_OKAY);
        backend.respond_tx(ids[1], netif::NETIF_RSP_DROPPED);
        backend.respond_tx(ids[2], netif::NETIF_RSP_ERROR);
        backend.respond_tx(ids[3], netif::NETIF_RSP_NULL);
        assert!(net.can_transmit());
        assert_eq!(net.broken(), None);
        let counters = net.counters();
        assert_eq!(
            (counters.tx_packets, counters.tx_bytes, counters.tx_errors),
            (1, 100, 6)
        );
        // Three pages back; the one answered NULL and the three never
        // answered are still out.
        assert_eq!(net.tx_free.len(), TX_BUFFERS - 4);
        // A late answer for the NULL one still frees it.
        net.transmit(&frame(9, 50)).expect("room");
        backend.take_tx().expect("queued");
        backend.respond_tx(ids[3], netif::NETIF_RSP_OKAY);
        assert!(net.can_transmit());
        assert_eq!(net.tx_free.len(), TX_BUFFERS - 4);
        assert_eq!(net.counters().tx_packets, 2);
    }

    #[test]
    fn a_full_pool_is_full_not_a_wait() {
        let rig = Rig::new();
        let mut net = rig.connect();
        let mut backend = FakeNetback::attach(&rig);
        let f = frame(3, 200);
        for _ in 0..TX_BUFFERS {
            net.transmit(&f).expect("room");
        }
        assert!(!net.can_transmit());
        assert_eq!(net.transmit(&f), Err(NetError::Full));
        assert_eq!(net.counters().tx_drops, 1);
        assert_eq!(
            net.transmit(&[0; MAX_FRAME + 1]),
            Err(NetError::TooLong(MAX_FRAME + 1))
        );
        assert_eq!(net.transmit(&[0; 13]), Err(NetError::Device(RUNT)));
        let request = backend.take_tx().expect("queued");
        backend.respond_tx(request.id, netif::NETIF_RSP_OKAY);
        // transmit reclaims by itself when the pool is empty.
        net.transmit(&f).expect("room again");
        assert!(!net.can_transmit());
    }

    #[test]
    fn the_backend_is_signalled_only_when_it_asks() {
        let rig = Rig::new();
        let mut net = rig.connect();
        let port = net.event_channel();
        let mut backend = FakeNetback::attach(&rig);
        let mut buf = [0u8; MAX_FRAME];
        let f = frame(0, 60);
        let sent = |rig: &Rig| rig.notifications(port);
        let before = sent(&rig);
        // A backend busy with the ring asks for no event.
        backend.tx.store(SringIndex::ReqEvent, 100);
        net.transmit(&f).unwrap();
        net.transmit(&f).unwrap();
        assert_eq!(sent(&rig), before);
        // One waiting for the next request does.
        backend.tx.store(SringIndex::ReqEvent, 3);
        net.transmit(&f).unwrap();
        assert_eq!(sent(&rig), before + 1);
        // The same for receive pages posted again: req_prod moves from
        // 256 to 257, so an event at 257 signals, one at 300 does not.
        backend.rx.store(SringIndex::ReqEvent, 300);
        backend.deliver(&f);
        assert_eq!(net.receive(&mut buf), Some(60));
        assert_eq!(sent(&rig), before + 1);
        backend.rx.store(SringIndex::ReqEvent, 258);
        backend.deliver(&f);
        assert_eq!(net.receive(&mut buf), Some(60));
        assert_eq!(sent(&rig), before + 2);
    }

    struct FlakySender {
        fail: Cell<bool>,
        sent: Cell<u32>,
    }

    fn flaky_send(context: usize, _port: u32) -> Result<(), HalError> {
        // SAFETY: the context is the address of a FlakySender the test
        // leaked; only the test's thread uses it.
        let sender = unsafe { &*(context as *const FlakySender) };
        if sender.fail.get() {
            return Err(HalError::Failed("EVTCHNOP_send"));
        }
        sender.sent.set(sender.sent.get() + 1);
        Ok(())
    }

    #[test]
    fn a_failed_signal_is_sent_again_at_the_next_push() {
        let rig = Rig::new();
        let flaky: &'static FlakySender = Box::leak(Box::new(FlakySender {
            fail: Cell::new(true),
            sent: Cell::new(0),
        }));
        let sender = EventSender {
            func: flaky_send,
            context: flaky as *const FlakySender as usize,
        };
        let mut net =
            Netfront::connect(&rig.device(), &rig.hal, rig.xen, sender, &Setup::DEFAULT).unwrap();
        let backend = FakeNetback::attach(&rig);
        net.transmit(&frame(0, 60)).unwrap();
        assert_eq!(flaky.sent.get(), 0);
        flaky.fail.set(false);
        // The backend asks for nothing, but the lost signal is resent.
        backend.tx.store(SringIndex::ReqEvent, 100);
        net.transmit(&frame(0, 60)).unwrap();
        assert_eq!(flaky.sent.get(), 1);
        net.transmit(&frame(0, 60)).unwrap();
        assert_eq!(flaky.sent.get(), 1);
    }

    #[test]
    fn the_event_wakes_the_stack_and_enabling_rechecks() {
        let rig = Rig::new();
        let mut net = rig.connect();
        let mut backend = FakeNetback::attach(&rig);
        let handle = net.interrupt().handle;
        assert!(rig.hal.fake.fire(handle));
        assert_eq!(rig.hal.wakes(), 1);

        // Nothing pending: no wake-up, and an event asked at the next
        // response of each ring.
        net.enable_interrupts();
        assert_eq!(rig.hal.wakes(), 1);
        assert_eq!(backend.rx.load(SringIndex::RspEvent), 1);
        assert_eq!(backend.tx.load(SringIndex::RspEvent), 1);
        backend.deliver(&frame(1, 60));
        assert_eq!(backend.events, 1, "the backend raises the event");
        // Until the stack enables again, more responses raise none.
        backend.deliver(&frame(2, 60));
        assert_eq!(backend.events, 1);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(net.receive(&mut buf), Some(60));

        // A response that lands before enable_interrupts looks raises no
        // event later: enabling finds it and wakes the thread itself.
        net.enable_interrupts();
        assert_eq!(rig.hal.wakes(), 2);
        assert_eq!(net.receive(&mut buf), Some(60));
        net.enable_interrupts();
        assert_eq!(rig.hal.wakes(), 2);
        assert_eq!(backend.rx.load(SringIndex::RspEvent), 3);

        // Transmit completions too.
        net.transmit(&frame(3, 60)).unwrap();
        let request = backend.take_tx().unwrap();
        backend.respond_tx(request.id, netif::NETIF_RSP_OKAY);
        assert_eq!(backend.events, 2);
        net.enable_interrupts();
        assert_eq!(rig.hal.wakes(), 2, "reclaimed before the check");
        assert_eq!(net.counters().tx_packets, 1);
    }

    #[test]
    fn an_overrun_breaks_the_interface() {
        let rig = Rig::new();
        let mut net = rig.connect();
        let backend = FakeNetback::attach(&rig);
        // More responses than the 256 requests posted.
        backend.rx.store(SringIndex::RspProd, 300);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(net.receive(&mut buf), None);
        assert_eq!(net.broken(), Some(RX_OVERRUN));
        assert_eq!(
            net.transmit(&frame(0, 60)),
            Err(NetError::Device(RX_OVERRUN))
        );
        assert!(!net.can_transmit());
        net.enable_interrupts();
        assert_eq!(net.receive(&mut buf), None);
        assert_eq!(net.counters().rx_errors, 1, "counted once");

        // A transmit response for a request never made.
        let rig = Rig::new();
        let mut net = rig.connect();
        let backend = FakeNetback::attach(&rig);
        backend.tx.store(SringIndex::RspProd, 1);
        assert!(!net.can_transmit());
        assert_eq!(net.broken(), Some(TX_OVERRUN));
        assert_eq!(net.counters().tx_errors, 1);
    }

    #[test]
    fn the_driver_takes_vifs_and_attaches_them() {
        let rig = Rig::new();
        rig.xen.set(
            "device/vbd/51712/backend",
            "/local/domain/0/backend/vbd/7/51712",
        );
        rig.xen.set("device/vbd/51712/backend-id", "0");
        rig.xen.set("device/vbd/51712/state", "1");
        let found: Vec<XenDevice> = crate::xen::enumerate(rig.xen)
            .expect("device/ lists")
            .into_iter()
            .map(|device| device.expect("well formed"))
            .collect();
        let devices: Vec<Device<'_>> = found.iter().map(Device::Xen).collect();
        let matched: Vec<String> = devices
            .iter()
            .filter(|device| NetfrontDriver.matches(device))
            .map(|device| format!("{device}"))
            .collect();
        assert_eq!(matched, ["xen device/vif/0"]);
        let vif = Device::Xen(&found[1]);
        assert_eq!(
            NetfrontDriver.probe(&vif, &rig.hal, None, None),
            Err(ProbeError::NoXenBus)
        );
        // The only test that registers a sender: before it, none.
        assert_eq!(
            NetfrontDriver.probe(&vif, &rig.hal, Some(rig.xen), None),
            Err(ProbeError::Device(NO_EVENT_SENDER))
        );
        assert_eq!(rig.script.seen.borrow().len(), 0, "nothing written");
        set_event_sender(rig.sender());
        let bindings = crate::bind(&devices, &[&NetfrontDriver], &rig.hal, Some(rig.xen), None);
        let lines: Vec<String> = bindings.iter().map(|b| format!("{b}")).collect();
        assert_eq!(
            lines,
            [
                "xen device/vbd/51712: no driver",
                "xen device/vif/0: netfront"
            ]
        );
        let attached = rig.hal.attached.borrow();
        assert_eq!(attached.len(), 1);
        assert_eq!(attached[0].name(), "netfront device/vif/0");
        assert_eq!(rig.front("state").as_deref(), Some("4"));
    }
}
