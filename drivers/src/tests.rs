use super::*;
use crate::fake::{FakeHal, FakePci, FakeXenBus, FAKE_DMA_BASE, FAKE_FIRST_VECTOR};
use crate::hal::{InterruptHandler, InterruptSource, WatchHandler, PAGE_SIZE};
use crate::mmio::MmioRegion;
use crate::pci::{enumerate, DeviceId, PciAddress};
use crate::xen::XenbusState;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

/// A driver that claims an id table and fails its probe on purpose when
/// told to.
struct TestDriver {
    name: &'static str,
    ids: &'static [DeviceId],
    xen_kind: Option<&'static str>,
    fail: Option<ProbeError>,
}

impl Driver for TestDriver {
    fn name(&self) -> &'static str {
        self.name
    }

    fn matches(&self, device: &Device<'_>) -> bool {
        match device {
            Device::Pci(function) => DeviceId::any(self.ids, function),
            Device::Xen(device) => Some(device.kind.as_str()) == self.xen_kind,
        }
    }

    fn probe(
        &self,
        device: &Device<'_>,
        hal: &dyn Hal,
        xen: Option<&dyn XenBus>,
        _pci: Option<&dyn crate::pci::ConfigSpace>,
    ) -> Result<(), ProbeError> {
        if let Some(error) = &self.fail {
            return Err(error.clone());
        }
        match device {
            Device::Pci(function) => {
                let bar = function.bar(0).ok_or(ProbeError::Device("no bar0"))?;
                let region = MmioRegion::map(hal, bar.base, bar.size as usize)?;
                region.read32(0)?;
                Ok(())
            }
            Device::Xen(device) => {
                let xen = xen.ok_or(ProbeError::NoXenBus)?;
                xen::write_state(xen, &device.frontend_path, XenbusState::Initialising)?;
                Ok(())
            }
        }
    }
}

const E1000_IDS: &[DeviceId] = &[DeviceId::pci(0x8086, 0x100e)];
const ETHERNET: &[DeviceId] = &[DeviceId::class(0x02, 0x00)];

fn driver(name: &'static str, ids: &'static [DeviceId]) -> TestDriver {
    TestDriver {
        name,
        ids,
        xen_kind: None,
        fail: None,
    }
}

fn qemu_hal() -> FakeHal {
    let hal = FakeHal::new();
    hal.add_mmio(0xfebc_0000, 0x2_0000);
    hal.add_mmio(0xfe80_0000, 0x2_0000);
    hal
}

#[test]
fn first_matching_driver_takes_the_device() {
    let functions = enumerate(&FakePci::qemu_pc());
    let devices: Vec<Device> = functions.iter().map(Device::Pci).collect();
    let e1000 = driver("e1000", E1000_IDS);
    let any_ethernet = driver("ethernet", ETHERNET);
    let hal = qemu_hal();
    let bindings = bind(&devices, &[&e1000, &any_ethernet], &hal, None, None);
    let lines: Vec<String> = bindings.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "pci 00:00.0: no driver",
            "pci 00:01.0: no driver",
            "pci 00:01.1: no driver",
            "pci 00:01.3: no driver",
            "pci 00:02.0: no driver",
            "pci 00:03.0: e1000",
            "pci 00:04.0: ethernet failed: bad address 0xc080",
            "pci 00:05.0: no driver",
            "pci 00:06.0: ethernet failed: bad address 0xfeb80000",
            "pci 01:01.0: e1000",
        ]
    );
}

#[test]
fn failed_probe_falls_through_to_the_next_driver() {
    let functions = enumerate(&FakePci::qemu_pc());
    let e1000 = &functions[5];
    assert_eq!(e1000.address, PciAddress::new(0, 3, 0));
    let broken = TestDriver {
        fail: Some(ProbeError::Device("link down")),
        ..driver("broken", E1000_IDS)
    };
    let fallback = driver("fallback", ETHERNET);
    let bindings = bind(
        &[Device::Pci(e1000)],
        &[&broken, &fallback],
        &qemu_hal(),
        None,
        None,
    );
    assert_eq!(bindings[0].driver, Some("fallback"));
    assert_eq!(
        bindings[0].failures,
        [ProbeFailure {
            driver: "broken",
            error: ProbeError::Device("link down")
        }]
    );
    assert_eq!(
        bindings[0].to_string(),
        "pci 00:03.0: fallback broken failed: link down"
    );
}

#[test]
fn all_probes_failing_leaves_the_device_unbound() {
    let functions = enumerate(&FakePci::qemu_pc());
    let broken = TestDriver {
        fail: Some(ProbeError::Hal(HalError::OutOfMemory)),
        ..driver("broken", E1000_IDS)
    };
    let bindings = bind(
        &[Device::Pci(&functions[5])],
        &[&broken],
        &qemu_hal(),
        None,
        None,
    );
    assert_eq!(bindings[0].driver, None);
    assert_eq!(bindings[0].failures.len(), 1);
    assert_eq!(
        bindings[0].to_string(),
        "pci 00:03.0: broken failed: out of memory"
    );
}

#[test]
fn non_matching_driver_is_not_probed() {
    let functions = enumerate(&FakePci::qemu_pc());
    let broken = TestDriver {
        fail: Some(ProbeError::Device("must not run")),
        ..driver("broken", E1000_IDS)
    };
    let host_bridge = &functions[0];
    let bindings = bind(
        &[Device::Pci(host_bridge)],
        &[&broken],
        &qemu_hal(),
        None,
        None,
    );
    assert_eq!(bindings[0].driver, None);
    assert!(bindings[0].failures.is_empty());
}

#[test]
fn xen_devices_bind_through_the_xen_bus() {
    let xen = FakeXenBus::new();
    xen.set("device/vif/0/backend", "/local/domain/0/backend/vif/5/0");
    xen.set("device/vif/0/backend-id", "0");
    xen.set("device/vif/0/state", "1");
    let devices = xen::enumerate(&xen).expect("lists");
    let vif = devices[0].as_ref().expect("well formed");
    let netfront = TestDriver {
        xen_kind: Some("vif"),
        ..driver("netfront", &[])
    };
    let hal = FakeHal::new();
    let bound = bind(&[Device::Xen(vif)], &[&netfront], &hal, Some(&xen), None);
    assert_eq!(bound[0].to_string(), "xen device/vif/0: netfront");
    let unbound = bind(&[Device::Xen(vif)], &[&netfront], &hal, None, None);
    assert_eq!(
        unbound[0].to_string(),
        "xen device/vif/0: netfront failed: no xen bus"
    );
}

#[test]
fn no_drivers_means_no_driver_for_everything() {
    let functions = enumerate(&FakePci::qemu_pc());
    let devices: Vec<Device> = functions.iter().map(Device::Pci).collect();
    let bindings = bind(&devices, &[], &FakeHal::new(), None, None);
    assert_eq!(bindings.len(), 10);
    assert!(bindings
        .iter()
        .all(|b| b.driver.is_none() && b.failures.is_empty()));
}

#[test]
fn fake_dma_is_zeroed_page_aligned_and_translated() {
    let hal = FakeHal::new();
    let first = hal.dma_alloc(2).expect("memory");
    let second = hal.dma_alloc(1).expect("memory");
    assert_eq!(first.device_addr, FAKE_DMA_BASE);
    assert_eq!(second.device_addr, FAKE_DMA_BASE + 2 * PAGE_SIZE as u64);
    assert_eq!(first.virt.as_ptr() as usize % PAGE_SIZE, 0);
    // SAFETY: the allocation is two pages long and ours.
    let bytes = unsafe { core::slice::from_raw_parts(first.virt.as_ptr(), first.len()) };
    assert!(bytes.iter().all(|&b| b == 0));
    // SAFETY: 0x1234 is inside the first allocation.
    let inside = unsafe { first.virt.as_ptr().add(0x1234) };
    assert_eq!(hal.device_address(inside), Some(FAKE_DMA_BASE + 0x1234));
    assert_eq!(hal.device_address(core::ptr::null()), None);
    hal.dma_free(first);
    hal.dma_free(second);
    assert_eq!(hal.live_dma(), 0);
}

#[test]
fn fake_dma_runs_out() {
    let hal = FakeHal::new();
    hal.limit_dma(1);
    assert_eq!(hal.dma_alloc(2), Err(HalError::OutOfMemory));
    let page = hal.dma_alloc(1).expect("one page left");
    assert_eq!(hal.dma_alloc(1), Err(HalError::OutOfMemory));
    assert_eq!(hal.dma_alloc(0), Err(HalError::OutOfMemory));
    hal.dma_free(page);
}

#[test]
fn fake_mmio_maps_inside_registered_windows_only() {
    let hal = FakeHal::new();
    let window = hal.add_mmio(0xfebc_0000, 0x2_0000);
    let mapped = hal.map_mmio(0xfebc_0008, 8).expect("inside");
    // SAFETY: 8 bytes into a 128 KiB window.
    assert_eq!(mapped, unsafe { window.add(8) });
    assert_eq!(
        hal.map_mmio(0xfebd_fff8, 16),
        Err(HalError::BadAddress(0xfebd_fff8))
    );
    assert_eq!(hal.map_mmio(0x1000, 4), Err(HalError::BadAddress(0x1000)));
}

static FIRED: AtomicUsize = AtomicUsize::new(0);

fn count_interrupt(context: usize) {
    FIRED.fetch_add(context, Ordering::SeqCst);
}

#[test]
fn fake_interrupts_bind_fire_and_unbind() {
    let hal = FakeHal::new();
    let handler = InterruptHandler {
        func: count_interrupt,
        context: 5,
    };
    let device = PciAddress::new(0, 4, 0);
    let msix = hal
        .bind_interrupt(
            InterruptSource::MsiX {
                device,
                table_entry: 1,
            },
            handler,
        )
        .expect("vector");
    let message = msix.message.expect("msi-x gets a message");
    assert_eq!(message.address, 0xfee0_0000);
    assert_eq!(message.data, u32::from(FAKE_FIRST_VECTOR));
    let legacy = hal
        .bind_interrupt(InterruptSource::Legacy { line: 11 }, handler)
        .expect("line");
    assert_eq!(legacy.message, None);
    let before = FIRED.load(Ordering::SeqCst);
    assert!(hal.fire(msix.handle));
    assert_eq!(FIRED.load(Ordering::SeqCst) - before, 5);
    hal.unbind_interrupt(msix).expect("bound");
    assert!(!hal.fire(msix.handle));
    assert_eq!(hal.unbind_interrupt(msix), Err(HalError::NotFound));
    assert_eq!(
        hal.interrupts(),
        [(legacy.handle, InterruptSource::Legacy { line: 11 })]
    );
}

#[test]
fn fake_runs_out_of_vectors() {
    let hal = FakeHal::new();
    let handler = InterruptHandler {
        func: count_interrupt,
        context: 0,
    };
    let source = InterruptSource::Msi {
        device: PciAddress::new(0, 3, 0),
    };
    let vectors = (0..=0xff)
        .take_while(|_| hal.bind_interrupt(source, handler).is_ok())
        .count();
    assert_eq!(vectors, 0xf0 - 0x40);
    assert_eq!(hal.bind_interrupt(source, handler), Err(HalError::NoVector));
}

#[test]
fn fake_clock_is_set_by_hand() {
    let hal = FakeHal::new();
    assert_eq!(hal.now_ns(), 0);
    hal.set_now(1_000);
    hal.advance(500);
    assert_eq!(hal.now_ns(), 1_500);
}

#[test]
fn fake_xenstore_lists_children_once() {
    let xen = FakeXenBus::new();
    xen.set("device/vif/0/state", "1");
    xen.set("device/vif/0/backend", "x");
    xen.set("device/vif/1/state", "1");
    xen.set("device/vifx/0/state", "1");
    assert_eq!(
        xen.directory("device/vif"),
        Ok(vec!["0".to_string(), "1".to_string()])
    );
    assert_eq!(
        xen.directory("device"),
        Ok(vec!["vif".to_string(), "vifx".to_string()])
    );
    assert_eq!(xen.directory("device/vif/0/state"), Ok(Vec::new()));
    assert_eq!(xen.directory("device/vbd"), Err(HalError::NotFound));
    assert_eq!(xen.read("device/vif/0/state").as_deref(), Ok("1"));
    assert_eq!(xen.read("device/vif/0"), Err(HalError::NotFound));
}

static WATCHED: AtomicUsize = AtomicUsize::new(0);

fn count_watch(context: usize, path: &str) {
    assert!(path.starts_with("device/vif/0"), "{path}");
    WATCHED.fetch_add(context, Ordering::SeqCst);
}

#[test]
fn fake_watches_fire_on_registration_and_below_the_path() {
    let xen = FakeXenBus::new();
    let before = WATCHED.load(Ordering::SeqCst);
    let handler = WatchHandler {
        func: count_watch,
        context: 1,
    };
    let watch = xen.watch("device/vif/0", handler).expect("watch");
    assert_eq!(WATCHED.load(Ordering::SeqCst) - before, 1);
    xen.write("device/vif/0/state", "4").expect("write");
    xen.write("device/vif/00/state", "4")
        .expect("not under the watch");
    xen.write("device/vif/1/state", "4")
        .expect("not under the watch");
    assert_eq!(WATCHED.load(Ordering::SeqCst) - before, 2);
    xen.unwatch(watch).expect("registered");
    xen.write("device/vif/0/state", "5").expect("write");
    assert_eq!(WATCHED.load(Ordering::SeqCst) - before, 2);
    assert_eq!(xen.unwatch(watch), Err(HalError::NotFound));
}

#[test]
fn fake_grants_and_ports() {
    let xen = FakeXenBus::new();
    let grant = xen.grant_access(0, 0x1234, true).expect("grant");
    assert_eq!(grant, 8, "the first 8 references are reserved");
    let entry = xen.grant(grant).expect("granted");
    assert_eq!(
        (entry.domid, entry.frame, entry.readonly),
        (0, 0x1234, true)
    );
    xen.set_mapped(grant, true);
    assert_eq!(xen.end_access(grant), Err(HalError::InUse));
    xen.set_mapped(grant, false);
    assert_eq!(xen.end_access(grant), Ok(()));
    assert_eq!(xen.end_access(grant), Err(HalError::NotFound));

    let port = xen.alloc_unbound(0).expect("port");
    xen.notify(port).expect("open");
    xen.notify(port).expect("open");
    assert_eq!(
        xen.port(port).map(|p| (p.remote, p.notifications)),
        Some((0, 2))
    );
    xen.close(port).expect("open");
    assert_eq!(xen.notify(port), Err(HalError::NotFound));
}

#[test]
fn device_displays_its_bus_and_place() {
    let functions = enumerate(&FakePci::qemu_pc());
    assert_eq!(format!("{}", Device::Pci(&functions[6])), "pci 00:04.0");
}

#[test]
fn probe_errors_convert_and_display() {
    let error: ProbeError = HalError::NoVector.into();
    assert_eq!(error.to_string(), "no free interrupt vector");
    let error: ProbeError = crate::pci::PciError::Bar64InLastSlot { index: 5 }.into();
    assert_eq!(error.to_string(), "bar5 is 64-bit but has no upper half");
}
