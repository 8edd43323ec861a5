//! virtio-net over the modern virtio PCI transport (virtio 1.2; QEMU's
//! `virtio-net-pci`, which is transitional, and modern-only devices).
//!
//! - **Finding the device** (§4.1.2, §4.1.4): vendor 0x1af4, device 0x1041
//!   (modern) or 0x1000 (transitional network card). The common, notify,
//!   ISR and device configuration structures are found through the vendor
//!   capabilities (the first of each type in an implemented memory BAR,
//!   §4.1.4.1), checked against their BAR and mapped through
//!   [`Hal::map_mmio`] once per BAR; every register access after that is a
//!   bounds-checked [`MmioRegion`] access. A transitional device without
//!   the capabilities (legacy only) is refused.
//! - **Initialisation** (§3.1.1, §4.1.5.1): reset and wait for the status to
//!   read 0, ACKNOWLEDGE, DRIVER, negotiate VIRTIO_F_VERSION_1 (required),
//!   VIRTIO_NET_F_MAC and VIRTIO_NET_F_STATUS (§5.1.3) and nothing else,
//!   FEATURES_OK and check that it stuck, set up the queues, bind the
//!   interrupt, post the receive buffers, DRIVER_OK. Any failure after the
//!   first status write resets the device, sets FAILED, and gives back the
//!   DMA memory, the interrupt and the PCI command register.
//! - **Split virtqueues** (§2.7): queue 0 is receiveq1, queue 1 transmitq1
//!   (§5.1.2), each `min(device maximum, 256)` entries rounded down to a
//!   power of two, in one DMA allocation (descriptor table, available
//!   ring, used ring: §2.7.5, §2.7.6, §2.7.8). Descriptors are always
//!   single buffers, bound to the buffer of the same index. What the
//!   device writes into the used ring is validated: an id out of range or
//!   not in flight, or a length past the buffer, is counted and the
//!   descriptor recycled, never a panic (§2.7.14). Descriptor and ring
//!   writes are volatile; a release fence orders them before the index
//!   that publishes them (§2.7.13), an acquire fence orders reading the
//!   used index before the entries, and a full fence orders publishing
//!   before reading the device's VIRTQ_USED_F_NO_NOTIFY (§2.7.10), which
//!   the driver honours. VIRTIO_F_EVENT_IDX is not negotiated.
//! - **Frames** (§5.1.6): each buffer is a 12-byte `virtio_net_hdr` (its
//!   size with VIRTIO_F_VERSION_1, §5.1.6.1) followed by room for
//!   [`MAX_FRAME`] bytes (1526 bytes in all, as §5.1.6.3.1 asks without
//!   VIRTIO_NET_F_MRG_RXBUF), two to a DMA page. Receive copies the frame
//!   out and re-posts the buffer; transmit copies the frame in behind a
//!   zeroed header (no offloads).
//! - **Interrupts** (§4.1.5.1.2, §4.1.4.5, §2.7.7): one MSI-X vector (table
//!   entry 0) for both queues where the function has MSI-X and the device
//!   accepts the mapping (read back, NO_VECTOR is a refusal), else INTx,
//!   whose handler reads the ISR status (which clears it) and ignores the
//!   interrupt when neither the queue nor the configuration bit is set
//!   (the line may be shared). The handler sets VIRTQ_AVAIL_F_NO_INTERRUPT
//!   on both queues and calls the kernel's [`Waker`]; its context is a
//!   leaked `Box` (an interface lives forever).
//!
//! # The lost-frame race
//!
//! Suppression is only a hint and, worse, a frame the device completes
//! while interrupts are suppressed raises no interrupt later.
//! [`NetDevice::enable_interrupts`] therefore clears the suppression,
//! issues a full fence, and looks at both used rings again: if anything
//! arrived in between, it calls the [`Waker`] itself, so the network
//! thread runs another pass instead of sleeping on a frame. The stack
//! needs to do nothing beyond what `crate::net` already asks.
//!
//! Not done: multiqueue, the control queue, offloads (checksum, TSO,
//! mergeable buffers), EVENT_IDX, packed rings, configuration-change
//! interrupts (the link state is read when asked), VIRTIO_F_ACCESS_PLATFORM
//! (a device that insists on it fails FEATURES_OK), and freeing an
//! interface: dropping a [`VirtioNet`] resets the device but leaks its
//! DMA memory and interrupt binding, since it holds no [`Hal`].

use crate::hal::{BoundInterrupt, Dma, Hal, InterruptHandler, InterruptSource, XenBus, PAGE_SIZE};
use crate::mmio::{MmioError, MmioRegion};
use crate::net::{NetCounters, NetDevice, NetError, Waker, MAX_FRAME};
use crate::pci::{
    command, Capability, ConfigSpace, DeviceId, MsixCapability, PciAddress, PciFunction,
    VirtioCapability, VirtioCfgType, VIRTIO_VENDOR_ID,
};
use crate::{Device, Driver, ProbeError};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU16, Ordering};

/// The PCI ids this driver takes: the modern network device (0x1040 + 1,
/// §4.1.2) and the transitional one (0x1000), which QEMU's
/// `virtio-net-pci` is by default.
pub const VIRTIO_NET_IDS: &[DeviceId] = &[
    DeviceId::pci(VIRTIO_VENDOR_ID, 0x1041),
    DeviceId::pci(VIRTIO_VENDOR_ID, 0x1000),
];

/// The most entries a queue gets, whatever the device offers.
pub const MAX_QUEUE_SIZE: u16 = 256;

/// Feature bits the driver knows (§6, §5.1.3).
pub mod feature {
    /// The device has a MAC address in its configuration.
    pub const NET_MAC: u64 = 1 << 5;
    /// The device reports the link state in its configuration.
    pub const NET_STATUS: u64 = 1 << 16;
    /// virtio 1.x: the modern interface.
    pub const VERSION_1: u64 = 1 << 32;
}

/// Device status bits (§2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// Offsets in `struct virtio_pci_common_cfg` (§4.1.4.3).
mod regs {
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    pub const DEVICE_FEATURE: usize = 0x04;
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    pub const DRIVER_FEATURE: usize = 0x0c;
    pub const CONFIG_MSIX_VECTOR: usize = 0x10;
    pub const NUM_QUEUES: usize = 0x12;
    pub const DEVICE_STATUS: usize = 0x14;
    pub const CONFIG_GENERATION: usize = 0x15;
    pub const QUEUE_SELECT: usize = 0x16;
    pub const QUEUE_SIZE: usize = 0x18;
    pub const QUEUE_MSIX_VECTOR: usize = 0x1a;
    pub const QUEUE_ENABLE: usize = 0x1c;
    pub const QUEUE_NOTIFY_OFF: usize = 0x1e;
    pub const QUEUE_DESC: usize = 0x20;
    pub const QUEUE_DRIVER: usize = 0x28;
    pub const QUEUE_DEVICE: usize = 0x30;
    /// The bytes up to the end of `queue_device`: virtio 1.0's structure.
    pub const LEN: usize = 0x38;
}

/// Offsets in `struct virtio_net_config` (§5.1.4).
mod net_config {
    pub const MAC: usize = 0;
    pub const STATUS: usize = 6;
    /// Bytes that hold the MAC; and the MAC and the status.
    pub const MAC_LEN: u64 = 6;
    pub const STATUS_LEN: u64 = 8;
    /// VIRTIO_NET_S_LINK_UP.
    pub const LINK_UP: u16 = 1;
}

/// "No MSI-X vector" (§4.1.4.3).
const NO_VECTOR: u16 = 0xffff;
/// The MSI-X table entry both queues use.
const MSIX_ENTRY: u16 = 0;
/// ISR status bits (§4.1.4.5): a queue interrupt, a configuration change.
const ISR_QUEUE: u8 = 1;
const ISR_CONFIG: u8 = 2;

const RECEIVEQ: u16 = 0;
const TRANSMITQ: u16 = 1;

/// `struct virtio_net_hdr` with VIRTIO_F_VERSION_1 (`num_buffers` always
/// there, §5.1.6.1).
const NET_HDR_LEN: usize = 12;
/// One buffer: the header and a whole frame.
const BUFFER_LEN: usize = NET_HDR_LEN + MAX_FRAME;
/// Buffers sit at this stride, so one never crosses a page.
const BUFFER_STRIDE: usize = 2048;
const BUFFERS_PER_PAGE: usize = PAGE_SIZE / BUFFER_STRIDE;
const _: () = assert!(BUFFER_LEN <= BUFFER_STRIDE && PAGE_SIZE.is_multiple_of(BUFFER_STRIDE));
/// The shortest frame accepted from the device: an Ethernet header.
const MIN_FRAME: usize = 14;

/// The reset wait (§4.1.4.3.2): at most this many polls or this long.
const RESET_POLLS: u32 = 100_000;
const RESET_TIMEOUT_NS: u64 = 1_000_000_000;
/// Reads of the device configuration retried while its generation moves.
const CONFIG_READ_TRIES: u32 = 16;

/// Split virtqueue layout constants (§2.7.5-§2.7.8).
const DESC_SIZE: usize = 16;
const DESC_ALIGN: usize = 16;
const DESC_F_WRITE: u16 = 2;
const AVAIL_F_NO_INTERRUPT: u16 = 1;
const USED_F_NO_NOTIFY: u16 = 1;

/// The virtio-net driver.
pub struct VirtioNetDriver;

impl Driver for VirtioNetDriver {
    fn name(&self) -> &'static str {
        "virtio-net"
    }

    fn matches(&self, device: &Device<'_>) -> bool {
        matches!(device, Device::Pci(function) if DeviceId::any(VIRTIO_NET_IDS, function))
    }

    /// Sets the device up ([`probe_pci`](VirtioNetDriver::probe_pci)); it
    /// needs the PCI configuration space (bus mastering, MSI-X).
    fn probe(
        &self,
        device: &Device<'_>,
        hal: &dyn Hal,
        _xen: Option<&dyn XenBus>,
        pci: Option<&dyn ConfigSpace>,
    ) -> Result<(), ProbeError> {
        super::probe_pci_nic(device, hal, pci, VirtioNet::new)
    }
}

impl VirtioNetDriver {
    /// What `probe` does given configuration space: sets the device up
    /// ([`VirtioNet::new`]) and hands it to the stack. When the kernel
    /// refuses the interface, the device has been reset (but its DMA
    /// memory is not returned: see [`VirtioNet`]).
    pub fn probe_pci(
        &self,
        function: &PciFunction,
        config: &dyn ConfigSpace,
        hal: &dyn Hal,
    ) -> Result<(), ProbeError> {
        super::probe_pci_nic(&Device::Pci(function), hal, Some(config), VirtioNet::new)
    }
}

/// Register access, so that tests can give the common configuration a
/// device's behaviour; the driver uses [`MmioRegion`].
trait Registers {
    fn read8(&self, offset: usize) -> Result<u8, MmioError>;
    fn read32(&self, offset: usize) -> Result<u32, MmioError>;
    fn write8(&self, offset: usize, value: u8) -> Result<(), MmioError>;
    fn write32(&self, offset: usize, value: u32) -> Result<(), MmioError>;
}

impl Registers for MmioRegion {
    fn read8(&self, offset: usize) -> Result<u8, MmioError> {
        MmioRegion::read8(self, offset)
    }
    fn read32(&self, offset: usize) -> Result<u32, MmioError> {
        MmioRegion::read32(self, offset)
    }
    fn write8(&self, offset: usize, value: u8) -> Result<(), MmioError> {
        MmioRegion::write8(self, offset, value)
    }
    fn write32(&self, offset: usize, value: u32) -> Result<(), MmioError> {
        MmioRegion::write32(self, offset, value)
    }
}

/// A 64-bit field of the common configuration as two 32-bit halves, low
/// first (§4.1.3.1 allows it, and every device takes 32-bit accesses).
fn write64<R: Registers + ?Sized>(regs: &R, offset: usize, value: u64) -> Result<(), MmioError> {
    regs.write32(offset, value as u32)?;
    regs.write32(offset + 4, (value >> 32) as u32)
}

/// Sets `bits` in the device status, keeping those set (§2.1.1: the
/// driver never clears one but by reset).
fn add_status<R: Registers + ?Sized>(common: &R, bits: u8) -> Result<(), MmioError> {
    let current = common.read8(regs::DEVICE_STATUS)?;
    common.write8(regs::DEVICE_STATUS, current | bits)
}

/// Resets the device: writes 0 and waits for the status to read 0
/// (§4.1.4.3.2), bounded by a poll count and the clock.
fn reset<R: Registers + ?Sized>(common: &R, hal: &dyn Hal) -> Result<(), ProbeError> {
    common.write8(regs::DEVICE_STATUS, 0)?;
    let start = hal.now_ns();
    for _ in 0..RESET_POLLS {
        if common.read8(regs::DEVICE_STATUS)? == 0 {
            return Ok(());
        }
        if hal.now_ns().saturating_sub(start) > RESET_TIMEOUT_NS {
            break;
        }
        core::hint::spin_loop();
    }
    Err(ProbeError::Device(
        "virtio-net: the device did not finish its reset",
    ))
}

/// ACKNOWLEDGE, DRIVER, then feature negotiation (§3.1.1 steps 2-6): takes
/// what the device offers of `wanted`, insists on VIRTIO_F_VERSION_1, and
/// checks that FEATURES_OK stuck. Returns the negotiated features.
fn negotiate<R: Registers + ?Sized>(common: &R, wanted: u64) -> Result<u64, ProbeError> {
    add_status(common, status::ACKNOWLEDGE)?;
    add_status(common, status::DRIVER)?;
    let mut offered = 0u64;
    for half in 0..2u32 {
        common.write32(regs::DEVICE_FEATURE_SELECT, half)?;
        offered |= u64::from(common.read32(regs::DEVICE_FEATURE)?) << (32 * half);
    }
    if offered & feature::VERSION_1 == 0 {
        return Err(ProbeError::Device(
            "virtio-net: the device does not offer VIRTIO_F_VERSION_1 (legacy only)",
        ));
    }
    let accepted = offered & (wanted | feature::VERSION_1);
    for half in 0..2u32 {
        common.write32(regs::DRIVER_FEATURE_SELECT, half)?;
        common.write32(regs::DRIVER_FEATURE, (accepted >> (32 * half)) as u32)?;
    }
    add_status(common, status::FEATURES_OK)?;
    if common.read8(regs::DEVICE_STATUS)? & status::FEATURES_OK == 0 {
        return Err(ProbeError::Device(
            "virtio-net: the device refused the features (FEATURES_OK did not stick)",
        ));
    }
    Ok(accepted)
}

/// After a failed start: resets the device, so it forgets the rings and
/// vectors before their memory goes, then sets FAILED (§3.1.1). Returns
/// whether the reset completed (if not, the caller leaks the rings).
fn fail_device(common: &MmioRegion, hal: &dyn Hal) -> bool {
    let quiet = reset(common, hal).is_ok();
    // Best effort: a device whose status cannot be written is past help.
    let _ = add_status(common, status::FAILED);
    quiet
}

/// The entries a queue gets: the device's maximum, at most
/// [`MAX_QUEUE_SIZE`], rounded down to a power of two (the free-running
/// u16 indices need one, §2.7); `None` for an unavailable queue (0).
fn queue_size(device_max: u16) -> Option<u16> {
    let size = device_max.min(MAX_QUEUE_SIZE);
    (size != 0).then(|| 1 << (15 - size.leading_zeros()))
}

fn to_usize(value: u64) -> Result<usize, ProbeError> {
    usize::try_from(value).map_err(|_| ProbeError::Device("virtio-net: a structure too large"))
}

/// Where a split virtqueue's parts lie in its allocation: the descriptor
/// table at 0 (16-byte aligned), the available ring (2), the used ring
/// (4), and the whole length (§2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct QueueLayout {
    avail: usize,
    used: usize,
    len: usize,
}

impl QueueLayout {
    fn new(size: u16) -> Self {
        let n = usize::from(size);
        let avail = DESC_SIZE * n;
        // flags, idx, ring[n], used_event.
        let used = (avail + 6 + 2 * n).next_multiple_of(4);
        // flags, idx, ring[n] of (id, len), avail_event.
        QueueLayout {
            avail,
            used,
            len: used + 6 + 8 * n,
        }
    }
}

/// A used-ring entry that makes no sense; the entry is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UsedError {
    /// The id is not a descriptor of the table.
    OutOfRange,
    /// The descriptor was not given to the device.
    NotInFlight,
}

/// A used-ring entry: the descriptor, and the bytes the device wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Used {
    id: u16,
    len: u32,
}

/// The driver's side of one split virtqueue (§2.7) in DMA memory. The
/// driver's own records (free descriptors, which are with the device, the
/// ring positions) live here, never read back from the shared memory.
struct SplitQueue {
    dma: Dma,
    size: u16,
    layout: QueueLayout,
    /// Descriptors the driver may hand out.
    free: Vec<u16>,
    /// Descriptors the device holds.
    in_flight: Vec<bool>,
    /// The available index the driver publishes next.
    next_avail: u16,
    /// The used index the driver reads next.
    last_used: u16,
}

impl SplitQueue {
    /// A queue of `size` entries (a power of two) in zeroed DMA memory.
    fn new(hal: &dyn Hal, size: u16) -> Result<SplitQueue, ProbeError> {
        if !size.is_power_of_two() {
            return Err(ProbeError::Device(
                "virtio-net: a queue size that is not a power of two",
            ));
        }
        let layout = QueueLayout::new(size);
        let dma = hal.dma_alloc(layout.len.div_ceil(PAGE_SIZE))?;
        if dma.len() < layout.len
            || !(dma.virt.as_ptr() as usize).is_multiple_of(DESC_ALIGN)
            || !dma.device_addr.is_multiple_of(DESC_ALIGN as u64)
        {
            hal.dma_free(dma);
            return Err(ProbeError::Device(
                "virtio-net: DMA memory not aligned for a virtqueue",
            ));
        }
        Ok(SplitQueue {
            dma,
            size,
            layout,
            free: (0..size).rev().collect(),
            in_flight: vec![false; usize::from(size)],
            next_avail: 0,
            last_used: 0,
        })
    }

    /// Gives the memory back; the device must have forgotten the queue
    /// (reset).
    fn release(self, hal: &dyn Hal) {
        hal.dma_free(self.dma);
    }

    fn size(&self) -> u16 {
        self.size
    }

    /// The device addresses of the three parts, for the common
    /// configuration.
    fn desc_addr(&self) -> u64 {
        self.dma.device_addr
    }

    fn avail_addr(&self) -> u64 {
        self.dma.device_addr + self.layout.avail as u64
    }

    fn used_addr(&self) -> u64 {
        self.dma.device_addr + self.layout.used as u64
    }

    /// A pointer to the `T` at `offset` of the queue memory.
    fn at<T>(&self, offset: usize) -> NonNull<T> {
        // Offsets come from indices below the queue size: a miss is a
        // driver bug, never the device's doing.
        assert!(
            offset
                .checked_add(size_of::<T>())
                .is_some_and(|end| end <= self.layout.len)
                && offset.is_multiple_of(align_of::<T>()),
            "virtqueue access at {offset:#x} outside the queue"
        );
        // SAFETY: offset + size_of::<T>() <= layout.len <= dma.len(), so
        // the pointer stays inside the allocation.
        unsafe { self.dma.virt.add(offset).cast::<T>() }
    }

    fn write<T>(&self, offset: usize, value: T) {
        let ptr = self.at::<T>(offset);
        // SAFETY: `at` keeps the access inside this queue's DMA memory and
        // aligned (a 16-byte aligned base, checked in `new`, plus a
        // multiple of T's alignment); the memory is shared only with the
        // device and never behind a Rust reference, so volatile accesses
        // are all there are.
        unsafe { ptr.as_ptr().write_volatile(value) }
    }

    fn read<T>(&self, offset: usize) -> T {
        let ptr = self.at::<T>(offset);
        // SAFETY: as in `write`.
        unsafe { ptr.as_ptr().read_volatile() }
    }

    /// A free descriptor, if any.
    fn alloc(&mut self) -> Option<u16> {
        self.free.pop()
    }

    /// Returns a descriptor the device gave back.
    fn free(&mut self, id: u16) {
        self.free.push(id);
    }

    fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Hands descriptor `id` (allocated, or just popped from the used
    /// ring) to the device as one buffer of `len` bytes at `addr`, which
    /// the device writes (`device_writable`) or reads (§2.7.13).
    fn submit(&mut self, id: u16, addr: u64, len: u32, device_writable: bool) {
        let desc = DESC_SIZE * usize::from(id);
        self.write::<u64>(desc, addr);
        self.write::<u32>(desc + 8, len);
        self.write::<u16>(desc + 12, if device_writable { DESC_F_WRITE } else { 0 });
        self.write::<u16>(desc + 14, 0);
        self.in_flight[usize::from(id)] = true;
        let slot = usize::from(self.next_avail & (self.size - 1));
        self.write::<u16>(self.layout.avail + 4 + 2 * slot, id);
        self.next_avail = self.next_avail.wrapping_add(1);
        // The descriptor and the ring entry before the index that
        // publishes them (§2.7.13.3).
        fence(Ordering::Release);
        self.write::<u16>(self.layout.avail + 2, self.next_avail);
    }

    /// The next used-ring entry, validated; `None` when the device has
    /// returned nothing new.
    fn pop_used(&mut self) -> Option<Result<Used, UsedError>> {
        let used_idx = self.read::<u16>(self.layout.used + 2);
        if used_idx == self.last_used {
            return None;
        }
        // The index before the entry it covers (§2.7.14).
        fence(Ordering::Acquire);
        let slot = usize::from(self.last_used & (self.size - 1));
        let entry = self.layout.used + 4 + 8 * slot;
        let id = self.read::<u32>(entry);
        let len = self.read::<u32>(entry + 4);
        self.last_used = self.last_used.wrapping_add(1);
        let Some(id) = u16::try_from(id).ok().filter(|&id| id < self.size) else {
            return Some(Err(UsedError::OutOfRange));
        };
        let in_flight = &mut self.in_flight[usize::from(id)];
        if !*in_flight {
            return Some(Err(UsedError::NotInFlight));
        }
        *in_flight = false;
        Some(Ok(Used { id, len }))
    }

    /// Whether the used ring holds entries not yet popped.
    fn has_used(&self) -> bool {
        self.read::<u16>(self.layout.used + 2) != self.last_used
    }

    /// Whether the device asks to be notified of new buffers (no
    /// VIRTQ_USED_F_NO_NOTIFY, §2.7.10).
    fn needs_notify(&self) -> bool {
        // The published index before the flags are read (a store, then a
        // load: only a full fence orders them).
        fence(Ordering::SeqCst);
        self.read::<u16>(self.layout.used) & USED_F_NO_NOTIFY == 0
    }

    /// The available ring's flags word, for interrupt suppression.
    fn interrupt_flags(&self) -> AvailFlags {
        AvailFlags(self.at::<u16>(self.layout.avail))
    }
}

/// The `flags` word of a queue's available ring, written by the network
/// thread (to allow interrupts) and the interrupt handler (to suppress
/// them), so always atomically (§2.7.7).
#[derive(Clone, Copy, Debug)]
struct AvailFlags(NonNull<u16>);

impl AvailFlags {
    fn word(&self) -> &AtomicU16 {
        // SAFETY: the pointer is the 2-byte aligned flags word of a queue
        // (`SplitQueue::interrupt_flags`); a queue's memory is freed only
        // after the interrupt whose context holds a copy is unbound, and
        // never once the device runs; the driver touches the word only
        // through this atomic, and the device only reads it.
        unsafe { AtomicU16::from_ptr(self.0.as_ptr()) }
    }

    fn suppress(&self) {
        self.word().store(AVAIL_F_NO_INTERRUPT, Ordering::SeqCst);
    }

    fn allow(&self) {
        self.word().store(0, Ordering::SeqCst);
    }
}

/// DMA buffers of [`BUFFER_LEN`] bytes, two to a page, so that each is
/// contiguous for the device however the pages lie.
struct BufferPool {
    pages: Vec<Dma>,
    count: usize,
}

impl BufferPool {
    fn new(hal: &dyn Hal, count: usize) -> Result<BufferPool, ProbeError> {
        let mut pool = BufferPool {
            pages: Vec::new(),
            count,
        };
        for _ in 0..count.div_ceil(BUFFERS_PER_PAGE) {
            match hal.dma_alloc(1) {
                Ok(page) => pool.pages.push(page),
                Err(error) => {
                    pool.release(hal);
                    return Err(error.into());
                }
            }
        }
        Ok(pool)
    }

    fn release(self, hal: &dyn Hal) {
        for page in self.pages {
            hal.dma_free(page);
        }
    }

    /// The page and the offset in it of buffer `index`.
    fn locate(&self, index: u16) -> (&Dma, usize) {
        let index = usize::from(index);
        // Indices are descriptor ids, below the queue size = `count`.
        assert!(index < self.count, "buffer {index} of {}", self.count);
        (
            &self.pages[index / BUFFERS_PER_PAGE],
            (index % BUFFERS_PER_PAGE) * BUFFER_STRIDE,
        )
    }

    fn device_addr(&self, index: u16) -> u64 {
        let (page, offset) = self.locate(index);
        page.device_addr + offset as u64
    }

    /// The first byte of buffer `index` (BUFFER_LEN bytes).
    fn ptr(&self, index: u16) -> *mut u8 {
        let (page, offset) = self.locate(index);
        // SAFETY: offset + BUFFER_LEN <= PAGE_SIZE (the const assertion on
        // the stride), the length of the one-page allocation.
        unsafe { page.virt.as_ptr().add(offset) }
    }
}

/// One virtqueue of the device with its buffers and notify register.
struct Queue {
    index: u16,
    ring: SplitQueue,
    buffers: BufferPool,
    /// The queue's 16-bit notify register (§4.1.4.4).
    notify: MmioRegion,
}

impl Queue {
    /// Reads queue `index`'s size and notify offset and allocates its
    /// memory; the device learns of it in [`program`](Queue::program).
    fn new(
        hal: &dyn Hal,
        common: &MmioRegion,
        notify: &MmioRegion,
        multiplier: u32,
        index: u16,
    ) -> Result<Queue, ProbeError> {
        common.write16(regs::QUEUE_SELECT, index)?;
        let size = queue_size(common.read16(regs::QUEUE_SIZE)?).ok_or(ProbeError::Device(
            "virtio-net: a queue the device does not have",
        ))?;
        let notify_off = u64::from(common.read16(regs::QUEUE_NOTIFY_OFF)?);
        let notify = notify.subregion(to_usize(notify_off * u64::from(multiplier))?, 2)?;
        if !(notify.base().as_ptr() as usize).is_multiple_of(2) {
            return Err(ProbeError::Device(
                "virtio-net: a misaligned notify register",
            ));
        }
        let ring = SplitQueue::new(hal, size)?;
        let buffers = match BufferPool::new(hal, usize::from(size)) {
            Ok(buffers) => buffers,
            Err(error) => {
                ring.release(hal);
                return Err(error);
            }
        };
        Ok(Queue {
            index,
            ring,
            buffers,
            notify,
        })
    }

    fn release(self, hal: &dyn Hal) {
        self.ring.release(hal);
        self.buffers.release(hal);
    }

    /// Tells the device where the queue is and enables it (§4.1.5.1.3).
    fn program(&self, common: &MmioRegion) -> Result<(), MmioError> {
        common.write16(regs::QUEUE_SELECT, self.index)?;
        common.write16(regs::QUEUE_SIZE, self.ring.size())?;
        write64(common, regs::QUEUE_DESC, self.ring.desc_addr())?;
        write64(common, regs::QUEUE_DRIVER, self.ring.avail_addr())?;
        write64(common, regs::QUEUE_DEVICE, self.ring.used_addr())?;
        common.write16(regs::QUEUE_ENABLE, 1)
    }

    /// Notifies the device of new buffers unless it said not to.
    fn kick(&self) {
        if self.ring.needs_notify() {
            // Cannot fail: `new` checked the register lies inside the
            // notify structure and is aligned.
            let _ = self.notify.write16(0, self.index);
        }
    }

    /// Gives receive buffer `id` (back) to the device.
    fn post_rx(&mut self, id: u16) {
        let addr = self.buffers.device_addr(id);
        self.ring.submit(id, addr, BUFFER_LEN as u32, true);
    }
}

/// What the interrupt handler needs. Leaked: the handler may run as long
/// as the binding exists.
struct IrqContext {
    /// The ISR status register, for INTx; `None` with MSI-X.
    isr: Option<MmioRegion>,
    rx: AvailFlags,
    tx: AvailFlags,
    waker: Waker,
}

/// The interrupt handler (interrupt context): for INTx, checks and clears
/// the ISR status; then suppresses both queues' interrupts and wakes the
/// network thread.
fn on_interrupt(context: usize) {
    // SAFETY: `context` is the address of the IrqContext this handler was
    // bound with (`bind`); it is freed only after a successful unbind, so
    // it is live whenever the handler runs, and nothing writes it.
    let context = unsafe { &*(context as *const IrqContext) };
    if let Some(isr) = &context.isr {
        // Reading clears the bits and deasserts the line (§4.1.4.5).
        match isr.read8(0) {
            Ok(bits) if bits & (ISR_QUEUE | ISR_CONFIG) != 0 => {}
            // Another device's interrupt on a shared line.
            _ => return,
        }
    }
    context.rx.suppress();
    context.tx.suppress();
    context.waker.wake();
}

/// A bound interrupt and its context.
#[derive(Clone, Copy)]
struct Interrupt {
    bound: BoundInterrupt,
    context: NonNull<IrqContext>,
    msix: Option<MsixCapability>,
}

impl Interrupt {
    /// Unbinds, turns MSI-X off, and frees the context unless the kernel
    /// failed to unbind (then the handler may still run: it is leaked).
    fn release(self, hal: &dyn Hal, config: &dyn ConfigSpace, address: PciAddress) {
        if let Some(msix) = self.msix {
            msix.set_enabled(config, address, false);
        }
        unbind(hal, self.bound, self.context);
    }
}

/// Binds `source` to [`on_interrupt`] with `context`.
fn bind(
    hal: &dyn Hal,
    source: InterruptSource,
    context: IrqContext,
) -> Result<(BoundInterrupt, NonNull<IrqContext>), ProbeError> {
    let context = NonNull::from(Box::leak(Box::new(context)));
    let handler = InterruptHandler {
        func: on_interrupt,
        context: context.as_ptr() as usize,
    };
    match hal.bind_interrupt(source, handler) {
        Ok(bound) => Ok((bound, context)),
        Err(error) => {
            // SAFETY: leaked just above, and the kernel refused the
            // binding, so this is the only pointer to it.
            drop(unsafe { Box::from_raw(context.as_ptr()) });
            Err(error.into())
        }
    }
}

fn unbind(hal: &dyn Hal, bound: BoundInterrupt, context: NonNull<IrqContext>) {
    if hal.unbind_interrupt(bound).is_ok() {
        // SAFETY: the context came from `Box::leak` in `bind`, and the
        // only other user, the handler, is no longer bound.
        drop(unsafe { Box::from_raw(context.as_ptr()) });
    }
}

/// Binds MSI-X table entry 0 for both queues: maps the table, binds,
/// programs the entry, enables MSI-X and maps the queues' events to it,
/// checking the device took the mapping (§4.1.5.1.2). Undoes it all on
/// failure.
fn bind_msix(
    function: &PciFunction,
    config: &dyn ConfigSpace,
    hal: &dyn Hal,
    common: &MmioRegion,
    context: IrqContext,
) -> Result<Interrupt, ProbeError> {
    let msix = *function
        .msix()
        .ok_or(ProbeError::Device("virtio-net: no msi-x capability"))?;
    let table = map_windows(
        function,
        hal,
        &[Window {
            bar: msix.table_bar,
            offset: u64::from(msix.table_offset),
            length: msix.table_len() as u64,
        }],
    )?
    .pop()
    .ok_or(ProbeError::Device("virtio-net: msi-x table not mapped"))?;
    let address = function.address;
    let source = InterruptSource::MsiX {
        device: address,
        table_entry: MSIX_ENTRY,
    };
    let (bound, context) = bind(hal, source, context)?;
    match program_msix(&msix, &table, config, address, common, bound) {
        Ok(()) => Ok(Interrupt {
            bound,
            context,
            msix: Some(msix),
        }),
        Err(error) => {
            for queue in [RECEIVEQ, TRANSMITQ] {
                // Best effort on the way out; the reset that follows a
                // failed start unmaps every event anyway.
                let _ = common
                    .write16(regs::QUEUE_SELECT, queue)
                    .and_then(|()| common.write16(regs::QUEUE_MSIX_VECTOR, NO_VECTOR));
            }
            msix.set_enabled(config, address, false);
            unbind(hal, bound, context);
            Err(error)
        }
    }
}

fn program_msix(
    msix: &MsixCapability,
    table: &MmioRegion,
    config: &dyn ConfigSpace,
    address: PciAddress,
    common: &MmioRegion,
    bound: BoundInterrupt,
) -> Result<(), ProbeError> {
    let message = bound.message.ok_or(ProbeError::Device(
        "virtio-net: the kernel gave no msi-x message",
    ))?;
    msix.write_entry(table, MSIX_ENTRY, message)?;
    msix.set_enabled(config, address, true);
    common.write16(regs::CONFIG_MSIX_VECTOR, NO_VECTOR)?;
    for queue in [RECEIVEQ, TRANSMITQ] {
        common.write16(regs::QUEUE_SELECT, queue)?;
        common.write16(regs::QUEUE_MSIX_VECTOR, MSIX_ENTRY)?;
        if common.read16(regs::QUEUE_MSIX_VECTOR)? != MSIX_ENTRY {
            return Err(ProbeError::Device(
                "virtio-net: the device refused the msi-x vector for a queue",
            ));
        }
    }
    Ok(())
}

/// Binds the INTx line firmware routed, with a handler that checks the
/// ISR status, and lets the function assert INTx.
fn bind_intx(
    function: &PciFunction,
    config: &dyn ConfigSpace,
    hal: &dyn Hal,
    context: IrqContext,
) -> Result<Interrupt, ProbeError> {
    let header = &function.header;
    if header.interrupt_pin == 0 || header.interrupt_line == 0xff {
        return Err(ProbeError::Device(
            "virtio-net: neither msi-x nor an interrupt line",
        ));
    }
    let source = InterruptSource::Legacy {
        line: header.interrupt_line,
    };
    let (bound, context) = bind(hal, source, context)?;
    let address = function.address;
    config.set_command(address, config.command(address) & !command::INTX_DISABLE);
    Ok(Interrupt {
        bound,
        context,
        msix: None,
    })
}

/// A structure inside a BAR.
#[derive(Clone, Copy, Debug)]
struct Window {
    bar: u8,
    offset: u64,
    length: u64,
}

impl Window {
    fn of(capability: &VirtioCapability) -> Window {
        Window {
            bar: capability.bar,
            offset: u64::from(capability.offset),
            length: u64::from(capability.length),
        }
    }
}

/// Maps `windows`, each BAR once over the span its windows cover, after
/// checking each lies inside an implemented, assigned memory BAR; returns
/// one region per window.
fn map_windows(
    function: &PciFunction,
    hal: &dyn Hal,
    windows: &[Window],
) -> Result<Vec<MmioRegion>, ProbeError> {
    // Per BAR slot: the first and the end offset in use.
    let mut spans: [Option<(u64, u64)>; 6] = [None; 6];
    for window in windows {
        let bar = function
            .bar(window.bar)
            .filter(|bar| bar.is_memory() && bar.base != 0)
            .ok_or(ProbeError::Device(
                "virtio-net: a structure in a missing, unassigned or I/O BAR",
            ))?;
        let end = window
            .offset
            .checked_add(window.length)
            .filter(|&end| end <= bar.size)
            .ok_or(ProbeError::Device(
                "virtio-net: a structure runs past the end of its BAR",
            ))?;
        // `bar` found it, so the index is a slot, 0-5.
        let span = spans
            .get_mut(usize::from(window.bar))
            .ok_or(ProbeError::Device("virtio-net: a BAR index past 5"))?;
        *span = Some(match *span {
            None => (window.offset, end),
            Some((start, stop)) => (start.min(window.offset), stop.max(end)),
        });
    }
    let mut mapped: [Option<(u64, MmioRegion)>; 6] = Default::default();
    for (slot, span) in spans.iter().enumerate() {
        let Some((start, end)) = *span else { continue };
        let bar = function
            .bars
            .iter()
            .find(|bar| usize::from(bar.index) == slot)
            .ok_or(ProbeError::Device("virtio-net: a BAR vanished"))?;
        let phys = bar.base.checked_add(start).ok_or(ProbeError::Device(
            "virtio-net: a BAR past the address space",
        ))?;
        mapped[slot] = Some((start, MmioRegion::map(hal, phys, to_usize(end - start)?)?));
    }
    windows
        .iter()
        .map(|window| {
            let (start, region) = mapped[usize::from(window.bar)]
                .as_ref()
                .ok_or(ProbeError::Device("virtio-net: a BAR not mapped"))?;
            Ok(region.subregion(to_usize(window.offset - start)?, to_usize(window.length)?)?)
        })
        .collect()
}

/// The first virtio structure of `cfg_type` the driver can use: in an
/// implemented memory BAR (a BAR index above 5 is reserved, §4.1.4).
fn structure(function: &PciFunction, cfg_type: VirtioCfgType) -> Option<VirtioCapability> {
    function
        .capabilities
        .iter()
        .find_map(|capability| match capability {
            Capability::Virtio(virtio)
                if virtio.cfg_type == cfg_type
                    && function.bar(virtio.bar).is_some_and(|bar| bar.is_memory()) =>
            {
                Some(*virtio)
            }
            _ => None,
        })
}

/// The device's structures, mapped.
struct Structures {
    common: MmioRegion,
    notify: MmioRegion,
    multiplier: u32,
    isr: MmioRegion,
    /// The device configuration, when there is one at least as long as
    /// the MAC.
    device: Option<MmioRegion>,
}

impl Structures {
    fn find(function: &PciFunction, hal: &dyn Hal) -> Result<Structures, ProbeError> {
        let common = structure(function, VirtioCfgType::Common).ok_or(ProbeError::Device(
            "virtio-net: no common configuration capability (a legacy-only device)",
        ))?;
        if common.length < regs::LEN as u32 {
            return Err(ProbeError::Device(
                "virtio-net: the common configuration structure is too short",
            ));
        }
        let notify = structure(function, VirtioCfgType::Notify)
            .ok_or(ProbeError::Device("virtio-net: no notification capability"))?;
        let multiplier = notify.notify_off_multiplier.unwrap_or(0);
        if notify.length < 2 {
            return Err(ProbeError::Device(
                "virtio-net: the notification structure is too short",
            ));
        }
        let isr = structure(function, VirtioCfgType::Isr)
            .filter(|isr| isr.length >= 1)
            .ok_or(ProbeError::Device("virtio-net: no ISR status capability"))?;
        let device = structure(function, VirtioCfgType::Device)
            .filter(|device| u64::from(device.length) >= net_config::MAC_LEN);
        let mut windows = vec![Window::of(&common), Window::of(&notify), Window::of(&isr)];
        windows.extend(device.as_ref().map(Window::of));
        let mut regions = map_windows(function, hal, &windows)?.into_iter();
        let mut next = || {
            regions
                .next()
                .ok_or(ProbeError::Device("virtio-net: a structure not mapped"))
        };
        Ok(Structures {
            common: next()?,
            notify: next()?,
            multiplier,
            isr: next()?,
            device: match device {
                Some(_) => Some(next()?),
                None => None,
            },
        })
    }
}

/// The MAC from the device configuration, read until the configuration
/// generation holds still across it (§4.1.4.3.1).
fn read_mac(common: &MmioRegion, device: &MmioRegion) -> Result<[u8; 6], ProbeError> {
    for _ in 0..CONFIG_READ_TRIES {
        let before = common.read8(regs::CONFIG_GENERATION)?;
        let mut mac = [0u8; 6];
        for (i, byte) in mac.iter_mut().enumerate() {
            *byte = device.read8(net_config::MAC + i)?;
        }
        if common.read8(regs::CONFIG_GENERATION)? == before {
            return Ok(mac);
        }
    }
    Err(ProbeError::Device(
        "virtio-net: the configuration generation never settled",
    ))
}

/// A locally administered address from the PCI address, for a device
/// without VIRTIO_NET_F_MAC (§5.1.5 has the driver make one up).
fn made_up_mac(address: PciAddress) -> [u8; 6] {
    [0x02, 0, 0, address.bus, address.device, address.function]
}

/// What a started device is made of, before it becomes a [`VirtioNet`].
struct Started {
    mac: [u8; 6],
    interrupt: Interrupt,
    msix_fallback: Option<ProbeError>,
}

/// A running virtio-net interface.
pub struct VirtioNet {
    name: String,
    mac: [u8; 6],
    features: u64,
    common: MmioRegion,
    device_config: Option<MmioRegion>,
    rx: Queue,
    tx: Queue,
    /// The frame length in each transmit descriptor, for the counters.
    tx_lengths: Vec<u16>,
    counters: NetCounters,
    waker: Waker,
    interrupt: BoundInterrupt,
    msix: bool,
    msix_fallback: Option<ProbeError>,
}

// SAFETY: the raw pointers a VirtioNet holds point into DMA memory it
// owns alone (its queues and buffers) and into device registers; the only
// state it shares, with its interrupt handler, is each available ring's
// flags word, which both sides access atomically.
unsafe impl Send for VirtioNet {}

impl VirtioNet {
    /// Sets up the virtio-net function `function`: maps its structures,
    /// enables memory decoding and bus mastering, initialises the device
    /// (§3.1.1), binds the interrupt (MSI-X, else INTx) and posts the
    /// receive buffers. On `Err` it has reset the device (status FAILED),
    /// unbound the interrupt, freed the DMA memory and restored the
    /// command register; only register mappings stay (the `Hal` cannot
    /// unmap).
    pub fn new(
        function: &PciFunction,
        config: &dyn ConfigSpace,
        hal: &dyn Hal,
    ) -> Result<VirtioNet, ProbeError> {
        if !DeviceId::any(VIRTIO_NET_IDS, function) {
            return Err(ProbeError::Device("virtio-net: not a virtio-net function"));
        }
        let structures = Structures::find(function, hal)?;
        let address = function.address;
        let saved_command = config.command(address);
        config.set_command(
            address,
            saved_command | command::MEMORY | command::BUS_MASTER,
        );
        let result = Self::start(function, config, hal, structures);
        if result.is_err() {
            config.set_command(address, saved_command);
        }
        result
    }

    /// Initialisation from the reset on; the device is reset and FAILED
    /// on `Err`.
    fn start(
        function: &PciFunction,
        config: &dyn ConfigSpace,
        hal: &dyn Hal,
        structures: Structures,
    ) -> Result<VirtioNet, ProbeError> {
        let Structures {
            common,
            notify,
            multiplier,
            isr,
            device,
        } = structures;
        let mut wanted = feature::VERSION_1;
        if let Some(device) = &device {
            wanted |= feature::NET_MAC;
            if device.len() as u64 >= net_config::STATUS_LEN {
                wanted |= feature::NET_STATUS;
            }
        }
        let prepared = reset(&common, hal)
            .and_then(|()| negotiate(&common, wanted))
            .and_then(|features| {
                if common.read16(regs::NUM_QUEUES)? < 2 {
                    return Err(ProbeError::Device("virtio-net: fewer than two queues"));
                }
                let rx = Queue::new(hal, &common, &notify, multiplier, RECEIVEQ)?;
                match Queue::new(hal, &common, &notify, multiplier, TRANSMITQ) {
                    Ok(tx) => Ok((features, rx, tx)),
                    Err(error) => {
                        rx.release(hal);
                        Err(error)
                    }
                }
            });
        let (features, mut rx, tx) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                fail_device(&common, hal);
                return Err(error);
            }
        };
        let waker = hal.net_waker();
        let mut interrupt = None;
        match Self::activate(
            function,
            config,
            hal,
            &common,
            isr,
            device.as_ref(),
            features,
            &mut rx,
            &tx,
            waker,
            &mut interrupt,
        ) {
            Ok(started) => {
                let tx_lengths = vec![0; usize::from(tx.ring.size())];
                rx.kick();
                Ok(VirtioNet {
                    name: alloc::format!("virtio-net {}", function.address),
                    mac: started.mac,
                    features,
                    common,
                    device_config: device,
                    rx,
                    tx,
                    tx_lengths,
                    counters: NetCounters::default(),
                    waker,
                    interrupt: started.interrupt.bound,
                    msix: started.interrupt.msix.is_some(),
                    msix_fallback: started.msix_fallback,
                })
            }
            Err(error) => {
                let quiet = fail_device(&common, hal);
                if let Some(interrupt) = interrupt {
                    interrupt.release(hal, config, function.address);
                }
                // A device that would not reset may still know the rings:
                // their memory is leaked rather than handed out again.
                if quiet {
                    rx.release(hal);
                    tx.release(hal);
                }
                Err(error)
            }
        }
    }

    /// Binds the interrupt (left in `interrupt` for the caller to release
    /// on failure), programs and enables the queues, posts the receive
    /// buffers, reads the MAC, and sets DRIVER_OK.
    #[allow(clippy::too_many_arguments)]
    fn activate(
        function: &PciFunction,
        config: &dyn ConfigSpace,
        hal: &dyn Hal,
        common: &MmioRegion,
        isr: MmioRegion,
        device: Option<&MmioRegion>,
        features: u64,
        rx: &mut Queue,
        tx: &Queue,
        waker: Waker,
        interrupt: &mut Option<Interrupt>,
    ) -> Result<Started, ProbeError> {
        let (rx_flags, tx_flags) = (rx.ring.interrupt_flags(), tx.ring.interrupt_flags());
        let context = |isr| IrqContext {
            isr,
            rx: rx_flags,
            tx: tx_flags,
            waker,
        };
        let mut msix_fallback = None;
        let bound = match bind_msix(function, config, hal, common, context(None)) {
            Ok(bound) => bound,
            Err(msix_error) => match bind_intx(function, config, hal, context(Some(isr))) {
                Ok(bound) => {
                    if function.msix().is_some() {
                        msix_fallback = Some(msix_error);
                    }
                    bound
                }
                // The MSI-X failure says more where there was MSI-X.
                Err(_) if function.msix().is_some() => return Err(msix_error),
                Err(intx_error) => return Err(intx_error),
            },
        };
        let bound = *interrupt.insert(bound);
        rx.program(common)?;
        tx.program(common)?;
        // Every receive descriptor gets its buffer (§5.1.5); the device
        // sees them at DRIVER_OK, and is notified after.
        while let Some(id) = rx.ring.alloc() {
            rx.post_rx(id);
        }
        let mac = match device {
            Some(device) if features & feature::NET_MAC != 0 => read_mac(common, device)?,
            _ => made_up_mac(function.address),
        };
        add_status(common, status::DRIVER_OK)?;
        let now = common.read8(regs::DEVICE_STATUS)?;
        if now & status::DRIVER_OK == 0 || now & status::DEVICE_NEEDS_RESET != 0 {
            return Err(ProbeError::Device(
                "virtio-net: the device failed at DRIVER_OK",
            ));
        }
        Ok(Started {
            mac,
            interrupt: bound,
            msix_fallback,
        })
    }

    /// The negotiated feature bits ([`feature`]).
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The interrupt binding (for the log).
    pub fn interrupt(&self) -> BoundInterrupt {
        self.interrupt
    }

    /// Whether the interface interrupts through MSI-X (else INTx).
    pub fn uses_msix(&self) -> bool {
        self.msix
    }

    /// Why MSI-X was not used on a function that has it (INTx instead).
    pub fn msix_fallback(&self) -> Option<&ProbeError> {
        self.msix_fallback.as_ref()
    }

    /// Entries of the receive and the transmit queue.
    pub fn queue_sizes(&self) -> (u16, u16) {
        (self.rx.ring.size(), self.tx.ring.size())
    }

    /// Takes back the transmit descriptors the device has finished with.
    fn reclaim_tx(&mut self) {
        for _ in 0..self.tx.ring.size() {
            match self.tx.ring.pop_used() {
                None => break,
                Some(Ok(used)) => {
                    self.counters.tx_packets += 1;
                    self.counters.tx_bytes += u64::from(self.tx_lengths[usize::from(used.id)]);
                    self.tx.ring.free(used.id);
                }
                Some(Err(_)) => self.counters.tx_errors += 1,
            }
        }
    }
}

impl NetDevice for VirtioNet {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&self) -> bool {
        match &self.device_config {
            Some(device) if self.features & feature::NET_STATUS != 0 => {
                match device.read16(net_config::STATUS) {
                    Ok(bits) => bits & net_config::LINK_UP != 0,
                    // Unreadable: say up, as without the feature.
                    Err(_) => true,
                }
            }
            _ => true,
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        // At most a ring's worth of entries per call, whatever the device
        // claims; what is left raises a wake-up in `enable_interrupts`.
        for _ in 0..self.rx.ring.size() {
            let used = match self.rx.ring.pop_used()? {
                Ok(used) => used,
                // Nothing of ours to give back.
                Err(_) => {
                    self.counters.rx_errors += 1;
                    continue;
                }
            };
            let len = used.len as usize;
            let mut received = None;
            if !(NET_HDR_LEN + MIN_FRAME..=BUFFER_LEN).contains(&len) {
                self.counters.rx_errors += 1;
            } else if len - NET_HDR_LEN > buf.len() {
                self.counters.rx_drops += 1;
            } else {
                let frame = len - NET_HDR_LEN;
                let source = self.rx.buffers.ptr(used.id);
                // SAFETY: the device gave descriptor `used.id` back, so it
                // no longer writes its buffer; NET_HDR_LEN + frame = len <=
                // BUFFER_LEN bytes of it are read; `buf` has room for
                // `frame` bytes and is the caller's memory, not DMA memory.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        source.add(NET_HDR_LEN),
                        buf.as_mut_ptr(),
                        frame,
                    );
                }
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += frame as u64;
                received = Some(frame);
            }
            self.rx.post_rx(used.id);
            self.rx.kick();
            if received.is_some() {
                return received;
            }
        }
        None
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME {
            return Err(NetError::TooLong(frame.len()));
        }
        let id = match self.tx.ring.alloc() {
            Some(id) => id,
            None => {
                self.reclaim_tx();
                match self.tx.ring.alloc() {
                    Some(id) => id,
                    None => {
                        self.counters.tx_drops += 1;
                        return Err(NetError::Full);
                    }
                }
            }
        };
        let buffer = self.tx.buffers.ptr(id);
        // SAFETY: the buffer is BUFFER_LEN bytes of DMA memory the driver
        // owns, which the device does not read while descriptor `id` is
        // free; NET_HDR_LEN + frame.len() <= BUFFER_LEN; `frame` is the
        // caller's memory, not DMA memory.
        unsafe {
            buffer.write_bytes(0, NET_HDR_LEN);
            core::ptr::copy_nonoverlapping(frame.as_ptr(), buffer.add(NET_HDR_LEN), frame.len());
        }
        self.tx_lengths[usize::from(id)] = frame.len() as u16;
        let addr = self.tx.buffers.device_addr(id);
        self.tx
            .ring
            .submit(id, addr, (NET_HDR_LEN + frame.len()) as u32, false);
        self.tx.kick();
        Ok(())
    }

    fn can_transmit(&mut self) -> bool {
        self.reclaim_tx();
        self.tx.ring.free_count() > 0
    }

    /// Clears the suppression the handler set, then looks at the used
    /// rings again and wakes the network thread if anything came in while
    /// interrupts were off (see the module documentation).
    fn enable_interrupts(&mut self) {
        self.reclaim_tx();
        self.rx.ring.interrupt_flags().allow();
        self.tx.ring.interrupt_flags().allow();
        // The flags store before the used index loads.
        fence(Ordering::SeqCst);
        if self.rx.ring.has_used() || self.tx.ring.has_used() {
            self.waker.wake();
        }
    }

    fn counters(&self) -> NetCounters {
        self.counters
    }
}

impl Drop for VirtioNet {
    /// Resets the device so it stops using the rings and interrupting.
    /// The DMA memory and the interrupt binding are leaked: there is no
    /// `Hal` here to return them to (the context stays valid for a handler
    /// that still runs).
    fn drop(&mut self) {
        // Best effort: nothing more to do if the write fails.
        let _ = self.common.write8(regs::DEVICE_STATUS, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeFunction, FakeHal, FakePci, FAKE_FIRST_VECTOR, FAKE_MSI_ADDRESS};
    use crate::hal::HalError;
    use core::cell::{Cell, RefCell};
    use core::sync::atomic::AtomicUsize;
    use std::format;
    use std::string::String;

    /// A [`Hal`] that records the DMA memory it hands out, so the fake
    /// device can turn device addresses back into host pointers, and
    /// counts the wake-ups of its network waker.
    struct TestHal {
        fake: FakeHal,
        /// (device address, host address, length) of each live allocation.
        dma: RefCell<Vec<(u64, usize, usize)>>,
        wakes: &'static AtomicUsize,
    }

    impl TestHal {
        fn new() -> Self {
            TestHal {
                fake: FakeHal::new(),
                dma: RefCell::new(Vec::new()),
                wakes: Box::leak(Box::new(AtomicUsize::new(0))),
            }
        }

        fn wakes(&self) -> usize {
            self.wakes.load(Ordering::SeqCst)
        }

        /// The host address of `len` bytes at device address `addr`;
        /// panics when the driver gave the device an address outside its
        /// DMA memory.
        fn translate(&self, addr: u64, len: usize) -> *mut u8 {
            let dma = self.dma.borrow();
            let Some(&(base, host, _)) = dma
                .iter()
                .find(|&&(base, _, size)| addr >= base && addr - base + len as u64 <= size as u64)
            else {
                panic!("device address {addr:#x}+{len:#x} outside the driver's DMA memory");
            };
            (host + (addr - base) as usize) as *mut u8
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
        fn dma_alloc(&self, pages: usize) -> Result<Dma, crate::hal::HalError> {
            let dma = self.fake.dma_alloc(pages)?;
            self.dma
                .borrow_mut()
                .push((dma.device_addr, dma.virt.as_ptr() as usize, dma.len()));
            Ok(dma)
        }

        fn dma_free(&self, dma: Dma) {
            self.dma
                .borrow_mut()
                .retain(|&(base, _, _)| base != dma.device_addr);
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

        fn now_ns(&self) -> u64 {
            self.fake.now_ns()
        }
    }

    fn peek<T>(base: *mut u8, offset: usize) -> T {
        // SAFETY: tests pass pointers into live, page-aligned fake DMA
        // memory and offsets inside it, aligned for T.
        unsafe { base.add(offset).cast::<T>().read_volatile() }
    }

    fn poke<T>(base: *mut u8, offset: usize, value: T) {
        // SAFETY: as in `peek`.
        unsafe { base.add(offset).cast::<T>().write_volatile(value) }
    }

    /// The device's side of a split queue, over the same memory, found
    /// through the device addresses the driver uses.
    struct DeviceQueue {
        desc: *mut u8,
        avail: *mut u8,
        used: *mut u8,
        size: u16,
        last_avail: u16,
        used_idx: u16,
    }

    impl DeviceQueue {
        fn of(hal: &TestHal, ring: &SplitQueue) -> Self {
            let n = usize::from(ring.size());
            DeviceQueue {
                desc: hal.translate(ring.desc_addr(), DESC_SIZE * n),
                avail: hal.translate(ring.avail_addr(), 6 + 2 * n),
                used: hal.translate(ring.used_addr(), 6 + 8 * n),
                size: ring.size(),
                last_avail: 0,
                used_idx: 0,
            }
        }

        fn avail_idx(&self) -> u16 {
            peek(self.avail, 2)
        }

        /// Available ring entry `slot` (modulo the size).
        fn avail_entry(&self, slot: u16) -> u16 {
            peek(self.avail, 4 + 2 * usize::from(slot % self.size))
        }

        fn interrupts_suppressed(&self) -> bool {
            peek::<u16>(self.avail, 0) & AVAIL_F_NO_INTERRUPT != 0
        }

        /// The next available buffer: (id, addr, len, flags).
        fn take(&mut self) -> Option<(u16, u64, u32, u16)> {
            if self.avail_idx() == self.last_avail {
                return None;
            }
            let id = self.avail_entry(self.last_avail);
            assert!(id < self.size, "the driver made descriptor {id} available");
            self.last_avail = self.last_avail.wrapping_add(1);
            let at = DESC_SIZE * usize::from(id);
            Some((
                id,
                peek(self.desc, at),
                peek(self.desc, at + 8),
                peek(self.desc, at + 12),
            ))
        }

        /// Puts (id, len) in the used ring and publishes it.
        fn give(&mut self, id: u32, len: u32) {
            let at = 4 + 8 * usize::from(self.used_idx % self.size);
            poke(self.used, at, id);
            poke(self.used, at + 4, len);
            self.used_idx = self.used_idx.wrapping_add(1);
            poke(self.used, 2, self.used_idx);
        }

        fn set_no_notify(&self, on: bool) {
            poke::<u16>(self.used, 0, u16::from(on) * USED_F_NO_NOTIFY);
        }
    }

    // The split virtqueue.

    #[test]
    fn layout_follows_the_alignment_table() {
        assert_eq!(
            QueueLayout::new(256),
            QueueLayout {
                avail: 4096,
                // 4096 + 6 + 512 = 4614, up to a multiple of 4.
                used: 4616,
                len: 4616 + 6 + 2048,
            }
        );
        assert_eq!(
            QueueLayout::new(1),
            QueueLayout {
                avail: 16,
                used: 24,
                len: 38
            }
        );
        assert_eq!(QueueLayout::new(4).used % 4, 0);
    }

    #[test]
    fn queue_sizes_are_powers_of_two_up_to_256() {
        assert_eq!(queue_size(0), None);
        assert_eq!(queue_size(1), Some(1));
        assert_eq!(queue_size(3), Some(2));
        assert_eq!(queue_size(200), Some(128));
        assert_eq!(queue_size(256), Some(256));
        assert_eq!(queue_size(1024), Some(256));
        assert_eq!(queue_size(u16::MAX), Some(256));
    }

    #[test]
    fn descriptors_run_out_and_come_back() {
        let hal = TestHal::new();
        let mut queue = SplitQueue::new(&hal, 8).expect("memory");
        let mut device = DeviceQueue::of(&hal, &queue);
        let ids: Vec<u16> = (0..8)
            .map(|_| queue.alloc().expect("a free descriptor"))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..8).collect::<Vec<u16>>());
        assert_eq!(queue.alloc(), None);
        assert_eq!(queue.free_count(), 0);
        for &id in &ids {
            queue.submit(id, 0x1000 * u64::from(id), 100 + u32::from(id), id % 2 == 0);
        }
        for &id in &ids {
            let flags = if id % 2 == 0 { DESC_F_WRITE } else { 0 };
            assert_eq!(
                device.take(),
                Some((id, 0x1000 * u64::from(id), 100 + u32::from(id), flags))
            );
        }
        assert_eq!(device.take(), None);
        assert_eq!(queue.pop_used(), None);
        device.give(3, 7);
        assert!(queue.has_used());
        assert_eq!(queue.pop_used(), Some(Ok(Used { id: 3, len: 7 })));
        assert!(!queue.has_used());
        queue.free(3);
        assert_eq!(queue.alloc(), Some(3));
        queue.release(&hal);
        assert_eq!(hal.fake.live_dma(), 0);
    }

    #[test]
    fn indices_wrap_at_u16() {
        let hal = TestHal::new();
        let mut queue = SplitQueue::new(&hal, 4).expect("memory");
        let mut device = DeviceQueue::of(&hal, &queue);
        // Three at a time in a ring of four: slots and indices wrap out
        // of step with each other, and the u16 indices wrap at 65536.
        let rounds = 25_000u32;
        for round in 0..rounds {
            let ids: Vec<u16> = (0..3).map(|_| queue.alloc().expect("free")).collect();
            for &id in &ids {
                queue.submit(id, 0x2000, 64, true);
            }
            for &id in &ids {
                let (got, ..) = device.take().expect("published");
                assert_eq!(got, id);
                device.give(u32::from(id), round % 1000);
            }
            for &id in &ids {
                assert_eq!(
                    queue.pop_used(),
                    Some(Ok(Used {
                        id,
                        len: round % 1000
                    }))
                );
                queue.free(id);
            }
            assert_eq!(queue.pop_used(), None);
        }
        let published = (3 * rounds % 65_536) as u16;
        assert_eq!(device.avail_idx(), published);
        assert_eq!(queue.next_avail, published);
        assert_eq!(queue.last_used, published);
        assert!(3 * rounds > 65_536, "the indices wrapped");
        queue.release(&hal);
    }

    #[test]
    fn bad_used_entries_are_errors_and_the_queue_goes_on() {
        let hal = TestHal::new();
        let mut queue = SplitQueue::new(&hal, 8).expect("memory");
        let mut device = DeviceQueue::of(&hal, &queue);
        for _ in 0..2 {
            let id = queue.alloc().expect("free");
            queue.submit(id, 0x3000, 32, true);
        }
        device.give(8, 0);
        device.give(u32::MAX, 0);
        // Would be descriptor 1 if the id were truncated to 16 bits.
        device.give(0x1_0001, 0);
        // Never given to the device.
        device.give(5, 0);
        device.give(1, 10);
        // The same descriptor twice.
        device.give(1, 10);
        device.give(0, 3);
        assert_eq!(queue.pop_used(), Some(Err(UsedError::OutOfRange)));
        assert_eq!(queue.pop_used(), Some(Err(UsedError::OutOfRange)));
        assert_eq!(queue.pop_used(), Some(Err(UsedError::OutOfRange)));
        assert_eq!(queue.pop_used(), Some(Err(UsedError::NotInFlight)));
        assert_eq!(queue.pop_used(), Some(Ok(Used { id: 1, len: 10 })));
        assert_eq!(queue.pop_used(), Some(Err(UsedError::NotInFlight)));
        assert_eq!(queue.pop_used(), Some(Ok(Used { id: 0, len: 3 })));
        assert_eq!(queue.pop_used(), None);
        queue.release(&hal);
    }

    #[test]
    fn notification_follows_the_devices_flag() {
        let hal = TestHal::new();
        let queue = SplitQueue::new(&hal, 4).expect("memory");
        let device = DeviceQueue::of(&hal, &queue);
        assert!(queue.needs_notify());
        device.set_no_notify(true);
        assert!(!queue.needs_notify());
        let flags = queue.interrupt_flags();
        flags.suppress();
        assert!(device.interrupts_suppressed());
        flags.allow();
        assert!(!device.interrupts_suppressed());
        queue.release(&hal);
    }

    // Feature negotiation and reset against a common configuration with
    // a device's behaviour.

    /// A common configuration over plain memory that behaves: the feature
    /// window follows its select register, a refusing device drops
    /// FEATURES_OK, a stuck one never finishes its reset.
    struct FakeCommon {
        _memory: Box<[u64]>,
        region: MmioRegion,
        offered: u64,
        driver_features: Cell<u64>,
        refuse: bool,
        stuck: bool,
    }

    impl FakeCommon {
        fn new(offered: u64) -> Self {
            let (memory, region) = crate::mmio::tests::backing(regs::LEN / 8);
            FakeCommon {
                _memory: memory,
                region,
                offered,
                driver_features: Cell::new(0),
                refuse: false,
                stuck: false,
            }
        }

        fn status(&self) -> u8 {
            self.region
                .read8(regs::DEVICE_STATUS)
                .expect("inside the region")
        }
    }

    impl Registers for FakeCommon {
        fn read8(&self, offset: usize) -> Result<u8, MmioError> {
            self.region.read8(offset)
        }

        fn read32(&self, offset: usize) -> Result<u32, MmioError> {
            if offset == regs::DEVICE_FEATURE {
                return Ok(match self.region.read32(regs::DEVICE_FEATURE_SELECT)? {
                    0 => self.offered as u32,
                    1 => (self.offered >> 32) as u32,
                    _ => 0,
                });
            }
            self.region.read32(offset)
        }

        fn write8(&self, offset: usize, mut value: u8) -> Result<(), MmioError> {
            if offset == regs::DEVICE_STATUS {
                if self.refuse {
                    value &= !status::FEATURES_OK;
                }
                if self.stuck && value == 0 {
                    value = status::ACKNOWLEDGE;
                }
            }
            self.region.write8(offset, value)
        }

        fn write32(&self, offset: usize, value: u32) -> Result<(), MmioError> {
            self.region.write32(offset, value)?;
            if offset == regs::DRIVER_FEATURE {
                let shift = 32 * self.region.read32(regs::DRIVER_FEATURE_SELECT)?;
                let kept = self.driver_features.get() & !(0xffff_ffff << shift);
                self.driver_features.set(kept | u64::from(value) << shift);
            }
            Ok(())
        }
    }

    const CSUM: u64 = 1 << 0;
    const MRG_RXBUF: u64 = 1 << 15;
    const EVENT_IDX: u64 = 1 << 29;
    const RING_PACKED: u64 = 1 << 34;

    #[test]
    fn negotiation_takes_version_1_mac_and_status_only() {
        let hal = FakeHal::new();
        let offered = feature::VERSION_1
            | feature::NET_MAC
            | feature::NET_STATUS
            | CSUM
            | MRG_RXBUF
            | EVENT_IDX
            | RING_PACKED;
        let common = FakeCommon::new(offered);
        reset(&common, &hal).expect("the device resets");
        let wanted = feature::NET_MAC | feature::NET_STATUS;
        let accepted = feature::VERSION_1 | feature::NET_MAC | feature::NET_STATUS;
        assert_eq!(negotiate(&common, wanted), Ok(accepted));
        assert_eq!(common.driver_features.get(), accepted);
        assert_eq!(
            common.status(),
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK
        );
        // Without a device configuration, not even the MAC.
        let common = FakeCommon::new(offered);
        assert_eq!(negotiate(&common, 0), Ok(feature::VERSION_1));
        assert_eq!(common.driver_features.get(), feature::VERSION_1);
    }

    #[test]
    fn a_legacy_only_device_is_refused() {
        let common = FakeCommon::new(feature::NET_MAC | CSUM);
        assert!(matches!(
            negotiate(&common, feature::NET_MAC),
            Err(ProbeError::Device(why)) if why.contains("VERSION_1")
        ));
        assert_eq!(common.status(), status::ACKNOWLEDGE | status::DRIVER);
        assert_eq!(common.driver_features.get(), 0);
    }

    #[test]
    fn features_ok_that_does_not_stick_is_an_error() {
        let mut common = FakeCommon::new(feature::VERSION_1 | feature::NET_MAC);
        common.refuse = true;
        assert!(matches!(
            negotiate(&common, feature::NET_MAC),
            Err(ProbeError::Device(why)) if why.contains("FEATURES_OK")
        ));
        assert_eq!(common.status() & status::FEATURES_OK, 0);
    }

    #[test]
    fn a_device_that_never_resets_is_an_error_not_a_hang() {
        let hal = FakeHal::new();
        let mut common = FakeCommon::new(feature::VERSION_1);
        common.stuck = true;
        assert!(matches!(
            reset(&common, &hal),
            Err(ProbeError::Device(why)) if why.contains("reset")
        ));
    }

    // The whole device, over fake configuration space and fake BARs.

    const NET: PciAddress = PciAddress::new(0, 4, 0);
    const VIRTIO_BAR: u64 = 0xfe00_0000;
    const MSIX_BAR: u64 = 0xfebd_1000;
    const ISR: usize = 0x1000;
    const DEVICE: usize = 0x2000;
    /// The notify structure at 0x3000 with a multiplier of 4, and both
    /// queues at notify offset 1.
    const NOTIFY_REGISTER: usize = 0x3004;
    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    /// QEMU's MSI-X capability: 3 entries, the table in BAR 1 at 0, the
    /// pending bits at 0x800.
    const QEMU_MSIX: [u8; 12] = [0x11, 0, 0x02, 0x00, 1, 0, 0, 0, 0x01, 0x08, 0, 0];

    /// QEMU's `virtio-net-pci` as `FakePci::qemu_pc` has it (BAR 4 holds
    /// the common configuration at 0, the ISR at 0x1000, the device
    /// configuration at 0x2000 and the notify structure at 0x3000), with
    /// `msix` as its MSI-X capability and `common` as the (offset,
    /// length) of its common configuration; the command register 0.
    fn virtio_net(msix: Option<[u8; 12]>, common: (u32, u32)) -> FakeFunction {
        let mut function = FakeFunction::device(0x1af4, 0x1000, 0x02, 0x00, 0x00)
            .subsystem(0x1af4, 0x0001)
            .irq(11, 1)
            .command(0)
            .bar_io(0, 0xc080, 0x20)
            .bar_mem32(1, MSIX_BAR as u32, 0x1000, false)
            .bar_mem64(4, VIRTIO_BAR, 0x4000, true);
        if let Some(msix) = msix {
            function = function.capability(0x98, &msix);
        }
        function
            .virtio_capability(0x84, 5, 0, 0, 0, Some(0))
            .virtio_capability(0x70, 2, 4, 0x3000, 0x1000, Some(4))
            .virtio_capability(0x60, 4, 4, 0x2000, 0x1000, None)
            .virtio_capability(0x50, 3, 4, 0x1000, 0x1000, None)
            .virtio_capability(0x40, 1, 4, common.0, common.1, None)
    }

    fn qemu() -> FakeFunction {
        virtio_net(Some(QEMU_MSIX), (0, 0x1000))
    }

    /// A function, its configuration space, and its BARs backed by host
    /// memory, as plain memory: registers read back what was written
    /// last, so the common configuration shows the last queue selected.
    struct Rig {
        hal: TestHal,
        pci: FakePci,
        function: PciFunction,
        /// BAR 4 and BAR 1 as the test sees them.
        bar: MmioRegion,
        table: MmioRegion,
    }

    impl Rig {
        fn new(function: FakeFunction) -> Rig {
            let hal = TestHal::new();
            let bar = hal.fake.add_mmio(VIRTIO_BAR, 0x4000);
            let table = hal.fake.add_mmio(MSIX_BAR, 0x1000);
            // SAFETY: the fake's blocks live as long as the hal, which the
            // rig keeps, and are only accessed through regions.
            let (bar, table) =
                unsafe { (MmioRegion::new(bar, 0x4000), MmioRegion::new(table, 0x1000)) };
            let pci = FakePci::new();
            pci.add(NET, function);
            let function = PciFunction::read(&pci, NET).expect("the function answers");
            let rig = Rig {
                hal,
                pci,
                function,
                bar,
                table,
            };
            // One feature word for both selects: CSUM, MAC and STATUS in
            // the low half; VERSION_1 (bit 32), bits 37 and 48 in the high.
            rig.w32(regs::DEVICE_FEATURE, 0x0001_0021);
            rig.w16(regs::NUM_QUEUES, 3);
            rig.w16(regs::QUEUE_SIZE, 1024);
            rig.w16(regs::QUEUE_NOTIFY_OFF, 1);
            for (i, &byte) in MAC.iter().enumerate() {
                rig.w8(DEVICE + i, byte);
            }
            rig.w16(DEVICE + 6, net_config::LINK_UP);
            rig.w16(NOTIFY_REGISTER, 0xffff);
            rig
        }

        fn start(&self) -> Result<VirtioNet, ProbeError> {
            VirtioNet::new(&self.function, &self.pci, &self.hal)
        }

        fn w8(&self, offset: usize, value: u8) {
            self.bar.write8(offset, value).expect("inside BAR 4");
        }

        fn w16(&self, offset: usize, value: u16) {
            self.bar.write16(offset, value).expect("inside BAR 4");
        }

        fn w32(&self, offset: usize, value: u32) {
            self.bar.write32(offset, value).expect("inside BAR 4");
        }

        fn r8(&self, offset: usize) -> u8 {
            self.bar.read8(offset).expect("inside BAR 4")
        }

        fn r16(&self, offset: usize) -> u16 {
            self.bar.read16(offset).expect("inside BAR 4")
        }

        fn r64(&self, offset: usize) -> u64 {
            self.bar.read64(offset).expect("inside BAR 4")
        }

        fn msix_control(&self) -> u16 {
            self.pci.read16(NET, 0x9a)
        }

        /// What a failed start must leave: no DMA memory, no interrupt, the
        /// command register as before.
        fn assert_released(&self) {
            assert_eq!(self.hal.fake.live_dma(), 0, "DMA memory left");
            assert!(
                self.hal.fake.interrupts().is_empty(),
                "an interrupt still bound"
            );
            assert_eq!(self.pci.command(NET), 0, "command register not restored");
        }

        /// Writes `frame` into the receive buffer the device took, behind
        /// a header, and returns it as used.
        fn deliver(&self, rx: &mut DeviceQueue, frame: &[u8]) {
            let (id, addr, len, flags) = rx.take().expect("a posted receive buffer");
            assert_eq!((len, flags), (BUFFER_LEN as u32, DESC_F_WRITE));
            let host = self.hal.translate(addr, len as usize);
            for i in 0..NET_HDR_LEN {
                poke::<u8>(host, i, 0);
            }
            // num_buffers, 1 without VIRTIO_NET_F_MRG_RXBUF.
            poke::<u16>(host, 10, 1);
            for (i, &byte) in frame.iter().enumerate() {
                poke(host, NET_HDR_LEN + i, byte);
            }
            rx.give(u32::from(id), (NET_HDR_LEN + frame.len()) as u32);
        }
    }

    #[test]
    fn starts_qemus_virtio_net_with_msix() {
        let rig = Rig::new(qemu());
        let net = rig.start().expect("the device starts");
        assert_eq!(net.name(), "virtio-net 00:04.0");
        assert_eq!(net.mac(), MAC);
        assert!(net.link_up());
        assert_eq!(
            net.features(),
            feature::VERSION_1 | feature::NET_MAC | feature::NET_STATUS
        );
        assert_eq!(net.queue_sizes(), (256, 256));
        assert!(net.uses_msix());
        assert_eq!(net.msix_fallback(), None);
        assert_eq!(
            rig.r8(regs::DEVICE_STATUS),
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK
        );
        // The last half written: the high one, VERSION_1.
        assert_eq!(rig.bar.read32(regs::DRIVER_FEATURE), Ok(1));
        // The transmit queue, programmed last.
        assert_eq!(rig.r16(regs::QUEUE_SELECT), TRANSMITQ);
        assert_eq!(rig.r16(regs::QUEUE_SIZE), 256);
        assert_eq!(rig.r16(regs::QUEUE_ENABLE), 1);
        assert_eq!(rig.r64(regs::QUEUE_DESC), net.tx.ring.desc_addr());
        assert_eq!(rig.r64(regs::QUEUE_DRIVER), net.tx.ring.avail_addr());
        assert_eq!(rig.r64(regs::QUEUE_DEVICE), net.tx.ring.used_addr());
        assert_eq!(rig.r16(regs::QUEUE_MSIX_VECTOR), MSIX_ENTRY);
        assert_eq!(rig.r16(regs::CONFIG_MSIX_VECTOR), NO_VECTOR);
        let command = rig.pci.command(NET);
        assert_eq!(
            command & (command::MEMORY | command::BUS_MASTER),
            command::MEMORY | command::BUS_MASTER
        );
        // MSI-X on and unmasked, entry 0 holding the kernel's message.
        assert_eq!(rig.msix_control() & 0xc000, 0x8000);
        assert_eq!(rig.table.read32(0), Ok(FAKE_MSI_ADDRESS as u32));
        assert_eq!(rig.table.read32(4), Ok(0));
        assert_eq!(rig.table.read32(8), Ok(u32::from(FAKE_FIRST_VECTOR)));
        assert_eq!(rig.table.read32(12), Ok(0));
        assert_eq!(
            rig.hal.fake.interrupts(),
            [(
                net.interrupt().handle,
                InterruptSource::MsiX {
                    device: NET,
                    table_entry: 0
                }
            )]
        );
        // Every receive buffer posted, each its own, and the device told.
        let mut rx = DeviceQueue::of(&rig.hal, &net.rx.ring);
        assert_eq!(rx.avail_idx(), 256);
        let mut addresses = Vec::new();
        while let Some((_, addr, len, flags)) = rx.take() {
            assert_eq!((len, flags), (BUFFER_LEN as u32, DESC_F_WRITE));
            rig.hal.translate(addr, len as usize);
            addresses.push(addr);
        }
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), 256);
        assert_eq!(rig.r16(NOTIFY_REGISTER), RECEIVEQ);
    }

    #[test]
    fn a_frame_goes_through_rx_and_tx() {
        let rig = Rig::new(qemu());
        let mut net = rig.start().expect("the device starts");
        let mut rx = DeviceQueue::of(&rig.hal, &net.rx.ring);
        let mut tx = DeviceQueue::of(&rig.hal, &net.tx.ring);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(net.receive(&mut buf), None);

        let frame: Vec<u8> = (0..60u8).collect();
        rig.deliver(&mut rx, &frame);
        assert_eq!(net.receive(&mut buf), Some(60));
        assert_eq!(&buf[..60], &frame[..]);
        assert_eq!(net.receive(&mut buf), None);
        // The buffer went back to the device.
        assert_eq!(rx.avail_idx(), 257);
        assert_eq!(rx.avail_entry(256), rx.avail_entry(0));

        rig.w16(NOTIFY_REGISTER, 0xffff);
        assert!(net.can_transmit());
        net.transmit(&frame).expect("room");
        assert_eq!(rig.r16(NOTIFY_REGISTER), TRANSMITQ);
        let (id, addr, len, flags) = tx.take().expect("queued");
        assert_eq!((len, flags), ((NET_HDR_LEN + 60) as u32, 0));
        let host = rig.hal.translate(addr, len as usize);
        for i in 0..NET_HDR_LEN {
            assert_eq!(peek::<u8>(host, i), 0, "header byte {i}");
        }
        for (i, &byte) in frame.iter().enumerate() {
            assert_eq!(peek::<u8>(host, NET_HDR_LEN + i), byte);
        }
        tx.give(u32::from(id), 0);
        assert!(net.can_transmit());

        // A device that asks not to be notified is not.
        tx.set_no_notify(true);
        rig.w16(NOTIFY_REGISTER, 0xffff);
        net.transmit(&frame[..14]).expect("room");
        assert_eq!(rig.r16(NOTIFY_REGISTER), 0xffff);
        let (id, ..) = tx.take().expect("queued all the same");
        tx.give(u32::from(id), 0);
        assert!(net.can_transmit());

        assert_eq!(
            net.counters(),
            NetCounters {
                rx_packets: 1,
                rx_bytes: 60,
                tx_packets: 2,
                tx_bytes: 74,
                ..NetCounters::default()
            }
        );
    }

    #[test]
    fn bad_receive_entries_are_counted_and_recycled() {
        let rig = Rig::new(qemu());
        let mut net = rig.start().expect("the device starts");
        let mut rx = DeviceQueue::of(&rig.hal, &net.rx.ring);
        let ids: Vec<u16> = (0..3).map(|_| rx.take().expect("posted").0).collect();
        rx.give(999, 60);
        // Past the buffer.
        rx.give(u32::from(ids[0]), 5000);
        // A header and no frame.
        rx.give(u32::from(ids[1]), NET_HDR_LEN as u32);
        // Longer than the caller's buffer.
        rx.give(u32::from(ids[2]), (NET_HDR_LEN + 100) as u32);
        let mut small = [0u8; 50];
        assert_eq!(net.receive(&mut small), None);
        let counters = net.counters();
        assert_eq!(
            (counters.rx_errors, counters.rx_drops, counters.rx_packets),
            (3, 1, 0)
        );
        // The three descriptors of ours went back, in order.
        assert_eq!(rx.avail_idx(), 256 + 3);
        for (slot, &id) in ids.iter().enumerate() {
            assert_eq!(rx.avail_entry(256 + slot as u16), id);
        }
        // And a good frame still comes through.
        rig.deliver(&mut rx, &[0x5a; 20]);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(net.receive(&mut buf), Some(20));
        assert_eq!(&buf[..20], &[0x5a; 20]);
    }

    #[test]
    fn a_full_transmit_ring_is_full_not_a_wait() {
        let rig = Rig::new(qemu());
        let mut net = rig.start().expect("the device starts");
        let mut tx = DeviceQueue::of(&rig.hal, &net.tx.ring);
        let frame = [0xaa; 100];
        for _ in 0..256 {
            net.transmit(&frame).expect("room");
        }
        assert!(!net.can_transmit());
        assert_eq!(net.transmit(&frame), Err(NetError::Full));
        assert_eq!(net.counters().tx_drops, 1);
        assert_eq!(
            net.transmit(&[0; MAX_FRAME + 1]),
            Err(NetError::TooLong(MAX_FRAME + 1))
        );
        let (id, ..) = tx.take().expect("queued");
        tx.give(u32::from(id), 0);
        tx.give(4096, 0);
        assert!(net.can_transmit());
        let counters = net.counters();
        assert_eq!(
            (counters.tx_packets, counters.tx_bytes, counters.tx_errors),
            (1, 100, 1)
        );
        net.transmit(&frame).expect("room again");
        assert!(!net.can_transmit());
    }

    #[test]
    fn the_interrupt_suppresses_and_wakes_and_enabling_rechecks() {
        let rig = Rig::new(qemu());
        let mut net = rig.start().expect("the device starts");
        let handle = net.interrupt().handle;
        let mut rx = DeviceQueue::of(&rig.hal, &net.rx.ring);
        let tx = DeviceQueue::of(&rig.hal, &net.tx.ring);
        assert!(rig.hal.fake.fire(handle));
        assert_eq!(rig.hal.wakes(), 1);
        assert!(rx.interrupts_suppressed() && tx.interrupts_suppressed());
        net.enable_interrupts();
        assert!(!rx.interrupts_suppressed() && !tx.interrupts_suppressed());
        assert_eq!(rig.hal.wakes(), 1, "nothing pending, no wake-up");

        // A frame that lands while interrupts are off raises none later:
        // enabling finds it and wakes the thread itself.
        assert!(rig.hal.fake.fire(handle));
        assert_eq!(rig.hal.wakes(), 2);
        rig.deliver(&mut rx, &[1; 14]);
        net.enable_interrupts();
        assert_eq!(rig.hal.wakes(), 3);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(net.receive(&mut buf), Some(14));
        net.enable_interrupts();
        assert_eq!(rig.hal.wakes(), 3);
    }

    #[test]
    fn intx_wakes_only_for_its_device() {
        let rig = Rig::new(virtio_net(None, (0, 0x1000)).command(command::INTX_DISABLE));
        let net = rig.start().expect("the device starts");
        assert!(!net.uses_msix());
        assert_eq!(net.msix_fallback(), None);
        let handle = net.interrupt().handle;
        assert_eq!(
            rig.hal.fake.interrupts(),
            [(handle, InterruptSource::Legacy { line: 11 })]
        );
        assert_eq!(
            rig.pci.command(NET),
            command::MEMORY | command::BUS_MASTER,
            "INTx allowed"
        );
        let rx = DeviceQueue::of(&rig.hal, &net.rx.ring);
        rig.w8(ISR, 0);
        assert!(rig.hal.fake.fire(handle));
        assert_eq!(rig.hal.wakes(), 0);
        assert!(!rx.interrupts_suppressed());
        rig.w8(ISR, ISR_QUEUE);
        assert!(rig.hal.fake.fire(handle));
        assert_eq!(rig.hal.wakes(), 1);
        assert!(rx.interrupts_suppressed());
        rig.w8(ISR, ISR_CONFIG);
        assert!(rig.hal.fake.fire(handle));
        assert_eq!(rig.hal.wakes(), 2);
    }

    #[test]
    fn an_msix_table_outside_its_bar_falls_back_to_intx() {
        // The table at 0x1000 of a 0x1000-byte BAR 1.
        let msix = [0x11, 0, 0x02, 0x00, 0x01, 0x10, 0, 0, 0x01, 0x08, 0, 0];
        let rig = Rig::new(virtio_net(Some(msix), (0, 0x1000)));
        let net = rig.start().expect("the device starts");
        assert!(!net.uses_msix());
        assert!(matches!(
            net.msix_fallback(),
            Some(ProbeError::Device(why)) if why.contains("past the end")
        ));
        assert_eq!(
            rig.hal.fake.interrupts(),
            [(net.interrupt().handle, InterruptSource::Legacy { line: 11 })]
        );
        assert_eq!(rig.msix_control() & 0x8000, 0);
    }

    #[test]
    fn without_the_mac_feature_the_address_is_made_up() {
        let rig = Rig::new(qemu());
        // Low half CSUM, high half VERSION_1.
        rig.w32(regs::DEVICE_FEATURE, 1);
        rig.w16(DEVICE + 6, 0);
        let net = rig.start().expect("the device starts");
        assert_eq!(net.features(), feature::VERSION_1);
        assert_eq!(net.mac(), [0x02, 0, 0, 0, 4, 0]);
        // No VIRTIO_NET_F_STATUS: up, whatever the register says.
        assert!(net.link_up());
    }

    #[test]
    fn the_link_state_comes_from_the_device() {
        let rig = Rig::new(qemu());
        let net = rig.start().expect("the device starts");
        assert!(net.link_up());
        rig.w16(DEVICE + 6, 0);
        assert!(!net.link_up());
    }

    #[test]
    fn a_legacy_only_device_is_left_failed_and_released() {
        let rig = Rig::new(qemu());
        // The high half 0x20: no VERSION_1.
        rig.w32(regs::DEVICE_FEATURE, 0x20);
        assert!(matches!(
            rig.start().err(),
            Some(ProbeError::Device(why)) if why.contains("VERSION_1")
        ));
        assert_eq!(rig.r8(regs::DEVICE_STATUS), status::FAILED);
        rig.assert_released();
    }

    #[test]
    fn running_out_of_dma_memory_releases_everything() {
        // A ring takes 2 pages and its buffers 128: fail in the receive
        // ring, its buffers (first, midway), the transmit ring and its
        // buffers.
        for pages in [0, 2, 100, 131, 200] {
            let rig = Rig::new(qemu());
            rig.hal.fake.limit_dma(pages);
            assert_eq!(
                rig.start().err(),
                Some(ProbeError::Hal(HalError::OutOfMemory)),
                "with {pages} pages"
            );
            assert_eq!(rig.r8(regs::DEVICE_STATUS), status::FAILED);
            rig.assert_released();
        }
    }

    #[test]
    fn no_interrupt_at_all_is_an_error_and_releases_everything() {
        let rig = Rig::new(virtio_net(None, (0, 0x1000)).irq(0, 0));
        assert!(matches!(
            rig.start().err(),
            Some(ProbeError::Device(why)) if why.contains("neither")
        ));
        assert_eq!(rig.r8(regs::DEVICE_STATUS), status::FAILED);
        rig.assert_released();
        // With an unusable MSI-X, its failure is the one reported.
        let msix = [0x11, 0, 0x02, 0x00, 0x01, 0x10, 0, 0, 0x01, 0x08, 0, 0];
        let rig = Rig::new(virtio_net(Some(msix), (0, 0x1000)).irq(0, 0));
        assert!(matches!(
            rig.start().err(),
            Some(ProbeError::Device(why)) if why.contains("past the end")
        ));
        rig.assert_released();
        assert_eq!(rig.msix_control() & 0x8000, 0);
    }

    #[test]
    fn structures_a_device_lies_about_are_errors() {
        // The common configuration too short, or past its BAR: refused
        // before the device is touched.
        for common in [(0, 0x20), (0x3800, 0x1000), (0xffff_f000, 0x2000)] {
            let rig = Rig::new(virtio_net(Some(QEMU_MSIX), common));
            assert!(
                matches!(rig.start().err(), Some(ProbeError::Device(_))),
                "common configuration at {common:x?}"
            );
            assert_eq!(rig.r8(regs::DEVICE_STATUS), 0);
            rig.assert_released();
        }
        // A notify offset past the notify structure.
        let rig = Rig::new(qemu());
        rig.w16(regs::QUEUE_NOTIFY_OFF, 0x400);
        assert!(matches!(
            rig.start().err(),
            Some(ProbeError::Mmio(MmioError::OutOfRange { .. }))
        ));
        assert_eq!(rig.r8(regs::DEVICE_STATUS), status::FAILED);
        rig.assert_released();
        // No queue, or a single one.
        for (register, value) in [(regs::QUEUE_SIZE, 0), (regs::NUM_QUEUES, 1)] {
            let rig = Rig::new(qemu());
            rig.w16(register, value);
            assert!(matches!(rig.start().err(), Some(ProbeError::Device(_))));
            assert_eq!(rig.r8(regs::DEVICE_STATUS), status::FAILED);
            rig.assert_released();
        }
        // A transitional device without the virtio capabilities.
        let rig = Rig::new(
            FakeFunction::device(0x1af4, 0x1000, 0x02, 0x00, 0x00)
                .irq(11, 1)
                .bar_io(0, 0xc080, 0x20),
        );
        assert!(matches!(
            rig.start().err(),
            Some(ProbeError::Device(why)) if why.contains("legacy")
        ));
        // Another vendor's device.
        let rig = Rig::new(crate::fake::e1000(0xfebc_0000, 0xc000));
        assert!(rig.start().is_err());
    }

    #[test]
    fn the_driver_matches_virtio_net_and_needs_configuration_space() {
        let pci = FakePci::qemu_pc();
        let functions = crate::pci::enumerate(&pci);
        let devices: Vec<Device<'_>> = functions.iter().map(Device::Pci).collect();
        let matched: Vec<String> = devices
            .iter()
            .filter(|device| VirtioNetDriver.matches(device))
            .map(|device| format!("{device}"))
            .collect();
        assert_eq!(matched, ["pci 00:04.0"]);
        let hal = FakeHal::new();
        let failed = |pci: Option<&dyn ConfigSpace>| -> Vec<String> {
            crate::bind(&devices, &[&VirtioNetDriver], &hal, None, pci)
                .iter()
                .filter(|binding| !binding.failures.is_empty())
                .map(|binding| format!("{binding}"))
                .collect()
        };
        assert_eq!(
            failed(None),
            ["pci 00:04.0: virtio-net failed: no PCI configuration space"]
        );
        // The fake hal has no BAR memory: the mapping fails, cleanly.
        assert_eq!(
            failed(Some(&pci)),
            ["pci 00:04.0: virtio-net failed: bad address 0xfe000000"]
        );
        assert_eq!(hal.live_dma(), 0);
    }

    #[test]
    fn probe_resets_the_device_the_kernel_refuses() {
        let rig = Rig::new(qemu());
        let device = Device::Pci(&rig.function);
        assert!(VirtioNetDriver.matches(&device));
        // TestHal keeps the trait's attach_net: unsupported.
        assert_eq!(
            VirtioNetDriver.probe(&device, &rig.hal, None, Some(&rig.pci)),
            Err(ProbeError::Hal(HalError::Unsupported))
        );
        assert_eq!(rig.r8(regs::DEVICE_STATUS), 0);
    }
}
