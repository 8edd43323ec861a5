//! Network interfaces as the stack sees them: [`NetDevice`], which a NIC
//! driver implements (virtio-net, e1000, rtl8139, Xen netfront) and hands
//! to the kernel with [`Hal::attach_net`](crate::hal::Hal::attach_net).
//!
//! The split of work follows Linux's NAPI: the driver's interrupt handler
//! (interrupt context) only silences the device's interrupt and calls the
//! [`Waker`] the kernel gave it; the kernel's network thread then calls
//! [`NetDevice::receive`] until it returns `None` (or its budget runs
//! out), reclaims finished transmissions through the same calls, and
//! calls [`NetDevice::enable_interrupts`] before it sleeps. Transmission
//! never waits for the device: a full ring is [`NetError::Full`], and the
//! stack tries again after the next wake-up.

pub mod e1000;
pub mod netfront;
pub mod rtl8139;
pub mod virtio;

use crate::hal::Hal;
use crate::pci::{ConfigSpace, PciFunction};
use crate::{Device, ProbeError};
use alloc::boxed::Box;
use core::fmt;

/// The largest Ethernet frame the stack hands a driver, without the
/// frame check sequence: 1500 bytes of payload and the 14-byte header.
pub const MAX_FRAME: usize = 1514;

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// No room in the transmit ring now.
    Full,
    /// Longer than the device takes.
    TooLong(usize),
    /// The device misbehaved or was never set up; the driver logged why.
    Device(&'static str),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Full => f.write_str("transmit ring full"),
            NetError::TooLong(len) => write!(f, "frame of {len} bytes too long"),
            NetError::Device(why) => write!(f, "device error: {why}"),
        }
    }
}

/// Per-interface counters, for `/status` and the shell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames the device or driver dropped (no buffer, bad length...).
    pub rx_drops: u64,
    /// Descriptors the device reported in error, or that made no sense.
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames refused because the ring was full.
    pub tx_drops: u64,
    pub tx_errors: u64,
}

/// What a driver's interrupt handler calls, in interrupt context, to get
/// the network thread's attention. Cheap and lock-free.
#[derive(Clone, Copy, Debug)]
pub struct Waker {
    pub func: fn(usize),
    pub context: usize,
}

impl Waker {
    /// A waker that wakes nobody (a stack that polls).
    pub const NONE: Waker = Waker {
        func: |_| {},
        context: 0,
    };

    pub fn wake(&self) {
        (self.func)(self.context)
    }
}

/// A network interface. The network thread owns it; none of these calls
/// runs in interrupt context, and none waits for the device.
pub trait NetDevice: Send {
    /// For the log and the counters: `virtio-net 00:03.0`, `e1000
    /// 00:03.0`, `netfront device/vif/0`.
    fn name(&self) -> &str;

    /// The station address.
    fn mac(&self) -> [u8; 6];

    /// Whether the link is up (as far as the device says).
    fn link_up(&self) -> bool {
        true
    }

    /// Copies the next received frame into `buf` (at least [`MAX_FRAME`]
    /// bytes) and returns its length; `None` when no frame is pending.
    /// Also gives the device back the buffer the frame came in.
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize>;

    /// Queues `frame` for transmission and returns at once.
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError>;

    /// Whether [`transmit`](NetDevice::transmit) would take a frame now
    /// (reclaiming what the device has finished sending).
    fn can_transmit(&mut self) -> bool;

    /// Lets the device interrupt again once the stack has drained it (the
    /// interrupt handler silenced it).
    fn enable_interrupts(&mut self);

    fn counters(&self) -> NetCounters;

    /// Stops the device at a clean point before the machine goes. A Xen
    /// front end closes its connection so the backend tears its side down
    /// in order; a PCI NIC needs nothing (the next boot resets it), which
    /// is the default. After it the device sends and receives nothing.
    fn shutdown(
        &mut self,
        _hal: &dyn crate::hal::Hal,
        _xen: Option<&dyn crate::hal::XenBus>,
    ) -> Result<(), &'static str> {
        Ok(())
    }

    /// The machine was suspended and resumed somewhere else (a Xen domain
    /// restored or migrated): whatever the device shared with the old
    /// machine is gone. A Xen front end connects to its new backend; a PCI
    /// NIC needs nothing here (the default).
    fn resume(
        &mut self,
        _hal: &dyn crate::hal::Hal,
        _xen: Option<&dyn crate::hal::XenBus>,
    ) -> Result<(), &'static str> {
        Ok(())
    }
}

/// The probe of every PCI NIC driver: the device's own set-up (`new`,
/// which needs the configuration space for bus mastering and decoding),
/// then the interface handed to the kernel. If the kernel refuses it, the
/// dropped device silences itself.
pub fn probe_pci_nic<N: NetDevice + 'static>(
    device: &Device<'_>,
    hal: &dyn Hal,
    pci: Option<&dyn ConfigSpace>,
    new: impl FnOnce(&PciFunction, &dyn ConfigSpace, &dyn Hal) -> Result<N, ProbeError>,
) -> Result<(), ProbeError> {
    let Device::Pci(function) = device else {
        return Err(ProbeError::Device("not a PCI device"));
    };
    let config = pci.ok_or(ProbeError::Device("no PCI configuration space"))?;
    let nic = new(function, config, hal)?;
    hal.attach_net(Box::new(nic))?;
    Ok(())
}
