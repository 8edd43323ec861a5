//! Device drivers and the model they are written in. A driver owns no
//! memory, mapping or interrupt: it asks the kernel through [`hal::Hal`]
//! (and [`hal::XenBus`] for Xen devices), after the `Hal` trait of the
//! `virtio-drivers` crate, so its ring and register logic runs under
//! `cargo test` on the host against fakes.
//!
//! This crate owns the device-independent parts: bounded register windows
//! ([`mmio`]), PCI configuration-space logic ([`pci`]: enumeration, BARs,
//! capabilities, ECAM), the Xen bus and shared ring ([`xen`]), and the
//! binding of devices to drivers here. The kernel enumerates, builds a
//! list of [`Device`]s and calls [`bind`] with its drivers.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod hal;
pub mod mmio;
pub mod net;
pub mod pci;
pub mod xen;

use alloc::vec::Vec;
use core::fmt;
use hal::{Hal, HalError, XenBus};
use mmio::MmioError;
use pci::{ConfigSpace, PciError, PciFunction};
use xen::{RingError, XenDevice, XenbusError};

/// A device a driver may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device<'a> {
    Pci(&'a PciFunction),
    Xen(&'a XenDevice),
}

/// `pci 00:03.0` or `xen device/vif/0`.
impl fmt::Display for Device<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Pci(function) => write!(f, "pci {}", function.address),
            Device::Xen(device) => write!(f, "xen {}", device.frontend_path),
        }
    }
}

/// Why a probe failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The kernel refused a request.
    Hal(HalError),
    Mmio(MmioError),
    Pci(PciError),
    Ring(RingError),
    Xenbus(XenbusError),
    /// A Xen device, but the kernel gave no [`XenBus`].
    NoXenBus,
    /// The device lacks something the driver needs, or misbehaved.
    Device(&'static str),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Hal(error) => write!(f, "{error}"),
            ProbeError::Mmio(error) => write!(f, "{error}"),
            ProbeError::Pci(error) => write!(f, "{error}"),
            ProbeError::Ring(error) => write!(f, "{error}"),
            ProbeError::Xenbus(error) => write!(f, "{error}"),
            ProbeError::NoXenBus => f.write_str("no xen bus"),
            ProbeError::Device(what) => f.write_str(what),
        }
    }
}

impl From<HalError> for ProbeError {
    fn from(error: HalError) -> Self {
        ProbeError::Hal(error)
    }
}

impl From<MmioError> for ProbeError {
    fn from(error: MmioError) -> Self {
        ProbeError::Mmio(error)
    }
}

impl From<PciError> for ProbeError {
    fn from(error: PciError) -> Self {
        ProbeError::Pci(error)
    }
}

impl From<RingError> for ProbeError {
    fn from(error: RingError) -> Self {
        ProbeError::Ring(error)
    }
}

impl From<XenbusError> for ProbeError {
    fn from(error: XenbusError) -> Self {
        ProbeError::Xenbus(error)
    }
}

/// A device driver.
pub trait Driver {
    /// For the log: `e1000`, `virtio-net`, `netfront`.
    fn name(&self) -> &'static str;

    /// Whether the driver handles this device (ids only; no device
    /// access).
    fn matches(&self, device: &Device<'_>) -> bool;

    /// Takes the device: maps it, sets it up, binds its interrupt, keeps
    /// what it needs inside the driver. On `Err` it has released what it
    /// took, and the device may go to the next matching driver.
    /// `pci` is the PCI configuration space (bus mastering, MSI, BAR
    /// sizing), `None` where the kernel has none; `xen` the Xen bus.
    fn probe(
        &self,
        device: &Device<'_>,
        hal: &dyn Hal,
        xen: Option<&dyn XenBus>,
        pci: Option<&dyn ConfigSpace>,
    ) -> Result<(), ProbeError>;
}

/// A probe that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeFailure {
    pub driver: &'static str,
    pub error: ProbeError,
}

/// What became of one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding<'a> {
    pub device: Device<'a>,
    /// The driver that took it; `None`: no driver, or all probes failed.
    pub driver: Option<&'static str>,
    /// Drivers that matched and failed, in the order tried.
    pub failures: Vec<ProbeFailure>,
}

/// `pci 00:03.0: e1000`, `pci 00:01.0: no driver`, `xen device/vif/0:
/// netfront failed: ...`.
impl fmt::Display for Binding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.device)?;
        match self.driver {
            Some(driver) => write!(f, " {driver}")?,
            None if self.failures.is_empty() => f.write_str(" no driver")?,
            None => {}
        }
        for failure in &self.failures {
            write!(f, " {} failed: {}", failure.driver, failure.error)?;
        }
        Ok(())
    }
}

/// Gives each device to the first driver that matches it and whose probe
/// succeeds, trying the drivers in order; devices nobody takes are listed
/// and left alone.
pub fn bind<'a>(
    devices: &[Device<'a>],
    drivers: &[&dyn Driver],
    hal: &dyn Hal,
    xen: Option<&dyn XenBus>,
    pci: Option<&dyn ConfigSpace>,
) -> Vec<Binding<'a>> {
    devices
        .iter()
        .map(|device| {
            let mut failures = Vec::new();
            let driver = drivers
                .iter()
                .filter(|driver| driver.matches(device))
                .find_map(|driver| match driver.probe(device, hal, xen, pci) {
                    Ok(()) => Some(driver.name()),
                    Err(error) => {
                        failures.push(ProbeFailure {
                            driver: driver.name(),
                            error,
                        });
                        None
                    }
                });
            Binding {
                device: *device,
                driver,
                failures,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
