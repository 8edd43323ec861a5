//! Devices: what the machine has, and which driver takes each. At boot,
//! once threads run, [`probe`] lists the PCI functions (configuration
//! space through [`pci`]) and the Xen bus's devices (`device/` in
//! xenstore), gives each to the first driver of [`DRIVERS`] that matches it
//! by ID and whose probe succeeds, and logs one line per device; a device
//! nobody drives is listed and left alone. Drivers live in the `drivers`
//! crate and reach the kernel through [`hal::KernelHal`] and
//! [`hal::KernelXenBus`].

pub mod hal;
pub mod pci;

use alloc::string::String;
use alloc::vec::Vec;
use drivers::pci::PciFunction;
use drivers::xen::XenDevice;
use drivers::{Device, Driver};
use spin::Once;

/// The drivers, in the order they are offered a device.
pub const DRIVERS: &[&dyn Driver] = &[
    &drivers::net::virtio::VirtioNetDriver,
    &drivers::net::e1000::E1000Driver,
    &drivers::net::rtl8139::Rtl8139Driver,
    &drivers::net::netfront::NetfrontDriver,
];

/// What [`probe`] found.
pub struct Found {
    pub pci: Vec<PciFunction>,
    pub xen: Vec<XenDevice>,
    /// One line per device: `pci 00:03.0: no driver`, or why a driver
    /// failed.
    pub bindings: Vec<String>,
}

static FOUND: Once<Found> = Once::new();

/// The devices found at boot (after [`probe`]).
pub fn found() -> Option<&'static Found> {
    FOUND.get()
}

/// The Xen bus, where this domain has one (xenstore runs).
pub fn xen_bus() -> Option<&'static hal::KernelXenBus> {
    crate::xen::xenstore::running().then_some(&hal::KernelXenBus)
}

/// Stops the devices at a clean point before an orderly power-off or
/// reboot (the shell's, or the toolstack's): the network interface's
/// driver closes it (a Xen front end tells its backend). Not on a panic.
pub fn shutdown() {
    let xen = xen_bus().map(|bus| bus as &dyn drivers::hal::XenBus);
    crate::net::shutdown(&hal::KernelHal, xen);
}

/// Runs `suspend` (a Xen suspend) with the network interface held still,
/// and has it reconnect if the machine came back in a new domain
/// (`net::suspend_around`).
pub fn suspend_around<R: crate::net::SuspendOutcome>(
    suspend: impl FnOnce() -> Result<R, &'static str>,
) -> Result<R, &'static str> {
    let xen = xen_bus().map(|bus| bus as &dyn drivers::hal::XenBus);
    crate::net::suspend_around(suspend, &hal::KernelHal, xen)
}

/// The PCI functions, where the kernel can reach configuration space.
fn probe_pci(config: Option<&pci::Config>) -> Vec<PciFunction> {
    let Some(config) = config else {
        log::info!("pci: not reachable (the kernel runs deprivileged)");
        return Vec::new();
    };
    log::info!("pci: {config}");
    let functions = drivers::pci::enumerate(config);
    for function in &functions {
        log::info!("{function}");
    }
    if functions.is_empty() {
        log::info!("pci: no devices");
    }
    functions
}

/// The Xen bus's devices; one that cannot be read is logged and skipped.
fn probe_xen() -> Vec<XenDevice> {
    let Some(bus) = xen_bus() else {
        return Vec::new();
    };
    hal::register_xen_event_sender();
    match drivers::xen::enumerate(bus) {
        Ok(entries) => entries
            .into_iter()
            .filter_map(|entry| match entry {
                Ok(device) => {
                    log::info!("{device}");
                    Some(device)
                }
                Err(error) => {
                    log::warn!("xen: device skipped: {error}");
                    None
                }
            })
            .collect(),
        Err(error) => {
            log::error!("xen: cannot list device/: {error}");
            Vec::new()
        }
    }
}

/// Lists the devices and binds drivers to them. Call once threads run
/// (drivers start threads; the Xen bus needs xenstore).
pub fn probe() -> &'static Found {
    FOUND.call_once(|| {
        let config = (!crate::backend::hooks().deprivileged).then(pci::config);
        let pci = probe_pci(config.as_ref());
        let xen = probe_xen();
        let devices: Vec<Device<'_>> = pci
            .iter()
            .map(Device::Pci)
            .chain(xen.iter().map(Device::Xen))
            .collect();
        let bus = xen_bus().map(|bus| bus as &dyn drivers::hal::XenBus);
        let config = config
            .as_ref()
            .map(|config| config as &dyn drivers::pci::ConfigSpace);
        let bindings = drivers::bind(&devices, DRIVERS, &hal::KernelHal, bus, config)
            .iter()
            .map(|binding| alloc::format!("{binding}"))
            .collect::<Vec<_>>();
        for line in &bindings {
            log::info!("dev: {line}");
        }
        drop(devices);
        Found { pci, xen, bindings }
    })
}

mod tests {
    use super::*;
    use crate::backend::BackendId;
    use crate::ktest::{ktest, not_applicable, TestResult};
    use crate::{kassert, kassert_eq};
    use core::sync::atomic::{AtomicUsize, Ordering};
    use drivers::hal::{Hal, InterruptHandler, InterruptSource};
    use drivers::pci::{ConfigSpace, PciAddress};

    #[ktest]
    fn pci_host_bridge_is_listed() -> TestResult {
        let Some(found) = found() else {
            return not_applicable("devices not probed");
        };
        if crate::backend::hooks().deprivileged {
            kassert!(found.pci.is_empty());
            return not_applicable("no PCI configuration access when deprivileged");
        }
        if found.pci.is_empty() {
            // A Xen PVH domU has no PCI bus; QEMU's machines always do.
            kassert_eq!(crate::backend::id(), BackendId::XenPvh);
            return not_applicable("no PCI bus (a Xen PVH guest)");
        }
        let bridge = found
            .pci
            .iter()
            .find(|f| f.address == PciAddress::new(0, 0, 0));
        kassert!(bridge.is_some(), "no function at 00:00.0");
        let bridge = bridge.map(|f| &f.header);
        kassert!(
            bridge.is_some_and(|h| h.class == 0x06 && h.subclass == 0x00),
            "00:00.0 is no host bridge: {bridge:?}"
        );
        kassert_eq!(found.bindings.len(), found.pci.len() + found.xen.len());
        Ok(())
    }

    #[ktest]
    fn ecam_and_ports_agree() -> TestResult {
        if crate::backend::hooks().deprivileged {
            return not_applicable("no PCI configuration access when deprivileged");
        }
        let pci::Config::Ecam(ecam) = pci::config() else {
            return not_applicable("no ECAM window in the MCFG");
        };
        let ports = pci::ports();
        let Some(found) = found() else {
            return not_applicable("devices not probed");
        };
        kassert!(!found.pci.is_empty(), "ECAM but no PCI function");
        for function in &found.pci {
            for offset in [0x00, 0x08, 0x2c, 0x3c] {
                let (a, b) = (
                    ecam.read32(function.address, offset),
                    ports.read32(function.address, offset),
                );
                kassert!(
                    a == b,
                    "{} at {offset:#x}: ECAM {a:#x}, ports {b:#x}",
                    function.address
                );
            }
        }
        Ok(())
    }

    #[ktest]
    fn dma_memory_has_its_device_address() -> TestResult {
        let hal = hal::KernelHal;
        let dma = hal.dma_alloc(2);
        kassert!(dma.is_ok(), "dma_alloc: {dma:?}");
        let Ok(dma) = dma else { return Ok(()) };
        let base = dma.virt.as_ptr();
        // SAFETY: two pages just allocated for this test.
        let zeroed = unsafe { core::slice::from_raw_parts(base, 2 * drivers::hal::PAGE_SIZE) }
            .iter()
            .all(|&b| b == 0);
        kassert!(zeroed, "DMA memory not zeroed");
        kassert_eq!(hal.device_address(base), Some(dma.device_addr));
        // SAFETY: as above; the second page starts one page in.
        let second = unsafe { base.add(drivers::hal::PAGE_SIZE) };
        kassert_eq!(
            hal.device_address(second),
            Some(dma.device_addr + crate::mm::PAGE_SIZE)
        );
        hal.dma_free(dma);
        Ok(())
    }

    static FIRED: AtomicUsize = AtomicUsize::new(0);

    fn count(context: usize) {
        FIRED.fetch_add(context, Ordering::SeqCst);
    }

    #[ktest]
    fn msi_vector_reaches_its_handler() -> TestResult {
        let hal = hal::KernelHal;
        let source = InterruptSource::Msi {
            device: PciAddress::new(0, 3, 0),
        };
        let handler = InterruptHandler {
            func: count,
            context: 5,
        };
        let bound = hal.bind_interrupt(source, handler);
        if !crate::arch::apic::enabled() {
            kassert!(bound.is_err(), "MSI bound without a local APIC");
            return not_applicable("no local APIC (Xen PV)");
        }
        kassert!(bound.is_ok(), "bind: {bound:?}");
        let Ok(bound) = bound else { return Ok(()) };
        let message = bound.message.unwrap_or(drivers::hal::MsiMessage {
            address: 0,
            data: 0,
        });
        kassert_eq!(message.address & 0xfff0_0000, 0xfee0_0000);
        let vector = message.data as u8;
        kassert!(vector >= hal::FIRST_DEVICE_VECTOR, "vector {vector:#x}");
        let before = FIRED.load(Ordering::SeqCst);
        crate::arch::apic::self_ipi(vector);
        // Delivered as soon as interrupts are on (they are, in tests).
        let deadline = crate::vmops::ops::clock_ns() + 100_000_000;
        while FIRED.load(Ordering::SeqCst) == before && crate::vmops::ops::clock_ns() < deadline {
            core::hint::spin_loop();
        }
        kassert_eq!(FIRED.load(Ordering::SeqCst), before + 5);
        kassert_eq!(hal.unbind_interrupt(bound), Ok(()));
        kassert!(hal.unbind_interrupt(bound).is_err(), "unbound twice");
        Ok(())
    }

    #[ktest]
    fn event_channel_reaches_a_driver_handler() -> TestResult {
        use drivers::hal::XenBus;
        let Some(bus) = xen_bus() else {
            return not_applicable("no Xen bus");
        };
        let hal = hal::KernelHal;
        let port = bus.alloc_unbound(hv::xen::bindings::DOMID_SELF);
        kassert!(port.is_ok(), "alloc_unbound: {port:?}");
        let Ok(port) = port else { return Ok(()) };
        let other = crate::xen::events::bind_interdomain(hv::xen::bindings::DOMID_SELF, port);
        kassert!(other.is_ok(), "bind_interdomain: {other:?}");
        let Ok(other) = other else { return Ok(()) };
        crate::xen::events::bind_port(other, |_, _| {});
        let bound = hal.bind_interrupt(
            InterruptSource::EventChannel { port },
            InterruptHandler {
                func: count,
                context: 7,
            },
        );
        kassert!(bound.is_ok(), "bind: {bound:?}");
        let Ok(bound) = bound else { return Ok(()) };
        let before = FIRED.load(Ordering::SeqCst);
        kassert_eq!(bus.notify(other), Ok(()));
        let deadline = crate::vmops::ops::clock_ns() + 1_000_000_000;
        while FIRED.load(Ordering::SeqCst) == before && crate::vmops::ops::clock_ns() < deadline {
            crate::sched::sleep_ns(1_000_000);
        }
        kassert_eq!(FIRED.load(Ordering::SeqCst), before + 7);
        kassert_eq!(hal.unbind_interrupt(bound), Ok(()));
        crate::xen::events::mask_port(other);
        kassert_eq!(bus.close(other), Ok(()));
        kassert_eq!(bus.close(port), Ok(()));
        Ok(())
    }

    #[ktest]
    fn xen_devices_are_listed_with_their_backends() -> TestResult {
        use drivers::hal::XenBus;
        let Some(bus) = xen_bus() else {
            return not_applicable("no Xen bus");
        };
        let Some(found) = found() else {
            return not_applicable("devices not probed");
        };
        // Every device xenstore lists under device/ was found, with its
        // backend (the Xen rig gives its test guests a vif).
        let kinds = bus.directory("device").unwrap_or_default();
        let mut listed = 0;
        for kind in kinds
            .iter()
            .filter(|k| *k != drivers::xen::NOT_A_DEVICE_KIND)
        {
            for id in bus
                .directory(&alloc::format!("device/{kind}"))
                .unwrap_or_default()
            {
                listed += 1;
                let path = alloc::format!("device/{kind}/{id}");
                let device = found.xen.iter().find(|d| d.frontend_path == path);
                kassert!(device.is_some(), "{path} in xenstore but not found");
                let Some(device) = device else { continue };
                let backend = bus.read(&alloc::format!("{path}/backend"));
                kassert_eq!(backend.as_deref(), Ok(device.backend_path.as_str()));
                kassert!(
                    device.backend_path.starts_with("/local/domain/"),
                    "{device}: backend {}",
                    device.backend_path
                );
            }
        }
        kassert_eq!(found.xen.len(), listed);
        Ok(())
    }
}
