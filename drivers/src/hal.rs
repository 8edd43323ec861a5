//! What a driver needs from the kernel, as traits the kernel implements:
//! [`Hal`] (DMA memory, register mappings, interrupts, the clock) and
//! [`XenBus`] (grant tables, event channels, xenstore), after the `Hal`
//! trait of the `virtio-drivers` crate. A driver owns no memory and no
//! interrupt vector of its own; it asks through these traits, so its ring
//! and descriptor logic runs under `cargo test` on the host against the
//! fakes in `fake.rs`.
//!
//! The Xen half follows `xen/include/public/grant_table.h`,
//! `xen/include/public/event_channel.h` and `xen/include/public/io/xs_wire.h`;
//! it is a separate trait so that a PCI-only driver needs none of it.

use crate::pci::PciAddress;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

/// The page size of DMA allocations and grants.
pub const PAGE_SIZE: usize = 4096;

/// Why the kernel refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalError {
    /// No memory for a DMA buffer or a mapping.
    OutOfMemory,
    /// The platform lacks the facility (MSI without a local APIC, Xen
    /// calls on bare metal).
    Unsupported,
    /// No free interrupt vector, MSI message or event-channel handler slot.
    NoVector,
    /// An address the kernel cannot map or translate.
    BadAddress(u64),
    /// A xenstore node that does not exist (ENOENT), or a grant reference,
    /// port, watch or interrupt the kernel does not know.
    NotFound,
    /// A grant the other domain still maps or copies.
    InUse,
    /// xenstore refused access (EACCES).
    Denied,
    /// Any other failure, named by the kernel (an errno name, a hypercall).
    Failed(&'static str),
}

impl fmt::Display for HalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HalError::OutOfMemory => f.write_str("out of memory"),
            HalError::Unsupported => f.write_str("not supported on this platform"),
            HalError::NoVector => f.write_str("no free interrupt vector"),
            HalError::BadAddress(address) => write!(f, "bad address {address:#x}"),
            HalError::NotFound => f.write_str("not found"),
            HalError::InUse => f.write_str("still in use by the other side"),
            HalError::Denied => f.write_str("permission denied"),
            HalError::Failed(what) => write!(f, "failed: {what}"),
        }
    }
}

/// Physically contiguous, zeroed memory a device may read and write.
#[derive(Debug, PartialEq, Eq)]
pub struct Dma {
    /// Where the kernel mapped it (write-back cached: x86 DMA is coherent).
    pub virt: NonNull<u8>,
    /// The address the device sees: a machine address under Xen PV, the
    /// physical address elsewhere (no IOMMU remapping yet).
    pub device_addr: u64,
    /// Length in pages of [`PAGE_SIZE`].
    pub pages: usize,
}

impl Dma {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    /// Whether the allocation is empty (never, for one `dma_alloc` gave).
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }
}

/// An interrupt handler: `func(context)`, called in interrupt context with
/// interrupts masked. It must not block, allocate or take a lock that
/// thread code holds with interrupts enabled; it acknowledges the device
/// and wakes a thread.
#[derive(Clone, Copy, Debug)]
pub struct InterruptHandler {
    pub func: fn(usize),
    /// Passed back to `func` (an index or a pointer to the driver's state).
    pub context: usize,
}

/// Where an interrupt comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptSource {
    /// A PCI INTx line or ISA IRQ as the interrupt-line register names it;
    /// the kernel routes it through the I/O APIC. Possibly shared: the
    /// handler must check its device.
    Legacy { line: u8 },
    /// The single MSI message of `device` (multiple message enable stays
    /// 0). The kernel picks a vector and returns the address/data pair the
    /// driver writes into the capability. The device's address is there
    /// for platforms that route MSIs per device (a Xen PV dom0 maps a pirq
    /// for it); the kernel refuses MSI where it has no local APIC.
    Msi { device: PciAddress },
    /// Entry `table_entry` of `device`'s MSI-X table; as for MSI, the
    /// kernel returns the message to write into that entry.
    MsiX {
        device: PciAddress,
        table_entry: u16,
    },
    /// A Xen event channel this domain holds (from `alloc_unbound`).
    EventChannel { port: u32 },
}

/// An MSI or MSI-X message: the driver writes `address` and `data` into
/// the device, which signals the interrupt by writing `data` to `address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// A bound interrupt: keep it to unbind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundInterrupt {
    /// The kernel's name for the binding.
    pub handle: u32,
    /// For MSI and MSI-X, what to program into the device; `None` for the
    /// other sources.
    pub message: Option<MsiMessage>,
}

/// The kernel's services to a driver.
///
/// # Safety
///
/// Drivers build [`MmioRegion`](crate::mmio::MmioRegion)s and DMA
/// descriptors from what these methods return, so an implementation must
/// keep its promises: a `Dma` is `pages` zeroed pages mapped at `virt`
/// that the device reaches at `device_addr`, exclusively the caller's until
/// `dma_free`; `map_mmio` returns a mapping of `len` bytes at `phys`
/// that stays valid as long as the `Hal` (for the kernel's, forever) and
/// that no Rust reference points into.
pub unsafe trait Hal {
    /// Allocates `pages` physically contiguous, zeroed pages for DMA.
    fn dma_alloc(&self, pages: usize) -> Result<Dma, HalError>;

    /// Returns memory from [`dma_alloc`](Hal::dma_alloc). The device must
    /// no longer use it.
    fn dma_free(&self, dma: Dma);

    /// The device address of `virt`, for buffers the kernel owns (the
    /// direct map, the heap); `None` when `virt` is not backed by memory
    /// the kernel can translate. Contiguity beyond the page of `virt` is
    /// not promised.
    fn device_address(&self, virt: *const u8) -> Option<u64>;

    /// Maps `len` bytes of device registers at physical address `phys`,
    /// uncached.
    fn map_mmio(&self, phys: u64, len: usize) -> Result<NonNull<u8>, HalError>;

    /// Routes `source` to `handler`.
    fn bind_interrupt(
        &self,
        source: InterruptSource,
        handler: InterruptHandler,
    ) -> Result<BoundInterrupt, HalError>;

    /// Undoes [`bind_interrupt`](Hal::bind_interrupt); the driver has
    /// silenced the device first.
    fn unbind_interrupt(&self, bound: BoundInterrupt) -> Result<(), HalError>;

    /// The waker a network driver's interrupt handler calls (see
    /// [`crate::net`]); one that wakes nobody where there is no stack.
    fn net_waker(&self) -> crate::net::Waker {
        crate::net::Waker::NONE
    }

    /// Hands a ready network interface to the kernel's stack.
    fn attach_net(
        &self,
        device: alloc::boxed::Box<dyn crate::net::NetDevice>,
    ) -> Result<(), HalError> {
        drop(device);
        Err(HalError::Unsupported)
    }

    /// Monotonic time in nanoseconds since boot, for timeouts.
    fn now_ns(&self) -> u64;
}

/// A grant-table reference (`grant_ref_t`).
pub type GrantRef = u32;

/// The kernel's name for a xenstore watch; it makes the wire token from
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub u32);

/// Called when a watched xenstore path (or a node below it) changes:
/// `func(context, path)` with the path that changed. It runs in the
/// kernel's xenstore thread, not in interrupt context, but should only
/// note the event and wake the driver: other watches wait behind it.
#[derive(Clone, Copy, Debug)]
pub struct WatchHandler {
    pub func: fn(usize, &str),
    pub context: usize,
}

/// The Xen bus: what a split-driver front end needs from the kernel.
pub trait XenBus {
    /// Lets domain `domid` access frame `frame` (read-only or not) and
    /// returns the reference to publish. `frame` is `device_addr >> 12` of
    /// a [`Dma`] page: the number the grant entry holds (a machine frame
    /// under PV, a guest frame elsewhere), so the kernel does not
    /// translate it again.
    fn grant_access(&self, domid: u16, frame: u64, readonly: bool) -> Result<GrantRef, HalError>;

    /// Revokes a grant; [`HalError::InUse`] while the other domain still
    /// maps it.
    fn end_access(&self, grant: GrantRef) -> Result<(), HalError>;

    /// Allocates an unbound event channel that domain `remote` may bind;
    /// returns its local port.
    fn alloc_unbound(&self, remote: u16) -> Result<u32, HalError>;

    /// Signals the other end of `port`.
    fn notify(&self, port: u32) -> Result<(), HalError>;

    /// Closes `port`.
    fn close(&self, port: u32) -> Result<(), HalError>;

    /// The value of xenstore node `path` (relative paths are under this
    /// domain's home); [`HalError::NotFound`] when it does not exist.
    fn read(&self, path: &str) -> Result<String, HalError>;

    /// Sets xenstore node `path` to `value`, creating it.
    fn write(&self, path: &str, value: &str) -> Result<(), HalError>;

    /// The names of the children of `path`.
    fn directory(&self, path: &str) -> Result<Vec<String>, HalError>;

    /// Calls `handler` whenever `path` or a node below it changes, and
    /// once right after registration (xenstore fires every new watch).
    fn watch(&self, path: &str, handler: WatchHandler) -> Result<WatchId, HalError>;

    /// Removes a watch.
    fn unwatch(&self, watch: WatchId) -> Result<(), HalError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn errors_display() {
        assert_eq!(
            format!("{}", HalError::BadAddress(0xfee0_0000)),
            "bad address 0xfee00000"
        );
        assert_eq!(format!("{}", HalError::Failed("EINVAL")), "failed: EINVAL");
        assert_eq!(format!("{}", HalError::NotFound), "not found");
    }

    #[test]
    fn dma_length_is_whole_pages() {
        let dma = Dma {
            virt: NonNull::dangling(),
            device_addr: 0x10_0000,
            pages: 3,
        };
        assert_eq!(dma.len(), 3 * 4096);
        assert!(!dma.is_empty());
    }
}
