use super::*;
use crate::fake::{e1000, FakeFunction, FakePci, FAKE_MSI_ADDRESS};
use crate::hal::MsiMessage;
use crate::mmio::tests::backing;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

const E1000: PciAddress = PciAddress::new(0, 3, 0);
const VIRTIO_NET: PciAddress = PciAddress::new(0, 4, 0);
const BRIDGE: PciAddress = PciAddress::new(0, 5, 0);
const E1000E: PciAddress = PciAddress::new(0, 6, 0);
const SLOT: PciAddress = PciAddress::new(0, 7, 0);

fn read(pci: &FakePci, addr: PciAddress) -> PciFunction {
    PciFunction::read(pci, addr).expect("the fake has a function there")
}

/// A machine with one function at 00:07.0, for hostile layouts.
fn lone(function: FakeFunction) -> FakePci {
    let pci = FakePci::new();
    pci.add(SLOT, function);
    pci
}

fn plain() -> FakeFunction {
    FakeFunction::device(0x1234, 0x5678, 0xff, 0x00, 0x00)
}

#[test]
fn address_displays_as_bus_device_function() {
    assert_eq!(format!("{}", PciAddress::new(0, 3, 0)), "00:03.0");
    assert_eq!(format!("{}", PciAddress::new(0x1a, 0x1f, 7)), "1a:1f.7");
}

#[test]
fn legacy_config_address_packs_fields() {
    assert_eq!(
        PciAddress::new(0, 3, 0).legacy_config_address(0x10),
        0x8000_1810
    );
    assert_eq!(
        PciAddress::new(1, 31, 7).legacy_config_address(0x3e),
        0x8001_ff3c
    );
}

#[test]
fn absent_function_reads_as_none() {
    let pci = FakePci::qemu_pc();
    assert!(Header::read(&pci, PciAddress::new(0, 9, 0)).is_none());
    assert!(PciFunction::read(&pci, PciAddress::new(2, 0, 0)).is_none());
}

#[test]
fn e1000_header_decodes() {
    let header = read(&FakePci::qemu_pc(), E1000).header;
    assert_eq!(header.vendor_id, 0x8086);
    assert_eq!(header.device_id, 0x100e);
    assert_eq!(
        (header.class, header.subclass, header.prog_if),
        (0x02, 0x00, 0x00)
    );
    assert_eq!(header.revision, 0x03);
    assert!(!header.multifunction);
    assert_eq!((header.interrupt_line, header.interrupt_pin), (11, 1));
    assert_eq!(
        header.kind,
        HeaderKind::Device {
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100
        }
    );
}

#[test]
fn bridge_header_gives_bus_numbers() {
    let header = read(&FakePci::qemu_pc(), BRIDGE).header;
    assert_eq!(
        header.kind,
        HeaderKind::Bridge {
            primary_bus: 0,
            secondary_bus: 1,
            subordinate_bus: 1
        }
    );
    assert_eq!((header.class, header.subclass), (0x06, 0x04));
}

#[test]
fn piix3_function_zero_is_multifunction() {
    let pci = FakePci::qemu_pc();
    assert!(read(&pci, PciAddress::new(0, 1, 0)).header.multifunction);
    let ide = read(&pci, PciAddress::new(0, 1, 1)).header;
    assert_eq!((ide.class, ide.subclass, ide.prog_if), (0x01, 0x01, 0x80));
}

#[test]
fn enumeration_finds_every_qemu_function_in_order() {
    let functions = enumerate(&FakePci::qemu_pc());
    let found: Vec<String> = functions.iter().map(|f| f.address.to_string()).collect();
    assert_eq!(
        found,
        [
            "00:00.0", "00:01.0", "00:01.1", "00:01.3", "00:02.0", "00:03.0", "00:04.0", "00:05.0",
            "00:06.0", "01:01.0"
        ]
    );
    assert!(functions.iter().all(|f| f.errors.is_empty()));
}

#[test]
fn enumeration_follows_bridge_to_bus_1() {
    let functions = enumerate(&FakePci::qemu_pc());
    let behind = functions
        .iter()
        .find(|f| f.address.bus == 1)
        .expect("the e1000 behind the bridge");
    assert_eq!(behind.address, PciAddress::new(1, 1, 0));
    assert_eq!(behind.bar(0).map(|bar| bar.base), Some(0xfe80_0000));
}

#[test]
fn functions_of_a_single_function_device_are_not_probed() {
    let pci = FakePci::qemu_pc();
    // Some devices answer on every function number; only the
    // multi-function bit says the others are real.
    pci.add(PciAddress::new(0, 3, 1), e1000(0xfe00_0000, 0xe000));
    let functions = enumerate(&pci);
    assert!(functions
        .iter()
        .all(|f| f.address != PciAddress::new(0, 3, 1)));
}

#[test]
fn bridge_back_to_bus_0_is_reported_not_followed() {
    let pci = FakePci::qemu_pc();
    pci.add(SLOT, FakeFunction::bridge(0x1b36, 0x0001, 0, 0, 0));
    let functions = enumerate(&pci);
    assert_eq!(functions.len(), 11);
    let bridge = functions
        .iter()
        .find(|f| f.address == SLOT)
        .expect("listed");
    assert_eq!(
        bridge.errors,
        [PciError::BusAlreadyScanned { secondary: 0 }]
    );
}

#[test]
fn two_bridges_to_one_bus_scan_it_once() {
    let pci = FakePci::qemu_pc();
    pci.add(SLOT, FakeFunction::bridge(0x1b36, 0x0001, 0, 1, 1));
    let functions = enumerate(&pci);
    assert_eq!(functions.iter().filter(|f| f.address.bus == 1).count(), 1);
    let second = functions
        .iter()
        .find(|f| f.address == SLOT)
        .expect("listed");
    assert_eq!(
        second.errors,
        [PciError::BusAlreadyScanned { secondary: 1 }]
    );
}

#[test]
fn bridge_with_subordinate_below_secondary_is_refused() {
    let pci = lone(FakeFunction::bridge(0x1b36, 0x0001, 0, 5, 2));
    let functions = enumerate(&pci);
    assert_eq!(functions.len(), 1);
    assert_eq!(
        functions[0].errors,
        [PciError::BusRange {
            secondary: 5,
            subordinate: 2
        }]
    );
}

#[test]
fn bridge_chain_reaches_bus_2() {
    let pci = FakePci::new();
    pci.add(
        PciAddress::new(0, 1, 0),
        FakeFunction::bridge(0x1b36, 1, 0, 1, 2),
    );
    pci.add(
        PciAddress::new(1, 0, 0),
        FakeFunction::bridge(0x1b36, 1, 1, 2, 2),
    );
    pci.add(PciAddress::new(2, 0, 0), plain());
    let buses: Vec<u8> = enumerate(&pci).iter().map(|f| f.address.bus).collect();
    assert_eq!(buses, [0, 1, 2]);
}

#[test]
fn e1000_bars_are_sized() {
    let function = read(&FakePci::qemu_pc(), E1000);
    assert_eq!(
        function.bars,
        [
            Bar {
                index: 0,
                kind: BarKind::Mem32,
                prefetchable: false,
                base: 0xfebc_0000,
                size: 0x2_0000
            },
            Bar {
                index: 1,
                kind: BarKind::Io,
                prefetchable: false,
                base: 0xc000,
                size: 0x40
            },
        ]
    );
}

#[test]
fn bar_sizing_restores_bars_and_command() {
    let pci = FakePci::qemu_pc();
    let before = pci.function(VIRTIO_NET).expect("present");
    read(&pci, VIRTIO_NET);
    let after = pci.function(VIRTIO_NET).expect("present");
    for offset in (0..0x40).step_by(4) {
        assert_eq!(
            before.peek32(offset),
            after.peek32(offset),
            "dword {offset:#x}"
        );
    }
    assert_eq!(after.peek32(reg::COMMAND) & 0xffff, 0x0007);
}

#[test]
fn bars_are_sized_with_decoding_off() {
    let pci = FakePci::qemu_pc();
    enumerate(&pci);
    assert!(pci.writes() > 0);
    assert_eq!(pci.sized_while_decoding(), 0);
}

#[test]
fn virtio_net_has_io_mem32_and_prefetchable_mem64_bars() {
    let function = read(&FakePci::qemu_pc(), VIRTIO_NET);
    let summary: Vec<(u8, BarKind, bool, u64, u64)> = function
        .bars
        .iter()
        .map(|bar| (bar.index, bar.kind, bar.prefetchable, bar.base, bar.size))
        .collect();
    assert_eq!(
        summary,
        [
            (0, BarKind::Io, false, 0xc080, 0x20),
            (1, BarKind::Mem32, false, 0xfebd_1000, 0x1000),
            (4, BarKind::Mem64, true, 0xfe00_0000, 0x4000),
        ]
    );
    // The upper half of a 64-bit BAR is not a BAR of its own.
    assert!(function.bar(5).is_none());
}

#[test]
fn mem64_above_4g_keeps_the_upper_half() {
    let pci = lone(plain().bar_mem64(2, 0x8_0000_0000, 0x1_0000_0000, true));
    let function = read(&pci, SLOT);
    let bar = function.bar(2).expect("implemented");
    assert_eq!((bar.base, bar.size), (0x8_0000_0000, 0x1_0000_0000));
    assert_eq!(format!("{bar}"), "bar2 mem64 pref 0x800000000+0x100000000");
}

#[test]
fn io_bar_with_16_bit_decoder_is_sized() {
    let pci = lone(plain().bar_io16(0, 0xc100, 0x100));
    let bar = read(&pci, SLOT).bars[0];
    assert_eq!((bar.kind, bar.base, bar.size), (BarKind::Io, 0xc100, 0x100));
}

#[test]
fn unimplemented_bars_are_absent() {
    let function = read(&FakePci::qemu_pc(), PciAddress::new(0, 1, 1));
    assert_eq!(function.bars.len(), 1);
    assert_eq!(function.bars[0].index, 4);
    assert!(read(&FakePci::qemu_pc(), PciAddress::new(0, 0, 0))
        .bars
        .is_empty());
}

#[test]
fn bridge_has_two_bar_slots() {
    let function = read(&FakePci::qemu_pc(), BRIDGE);
    assert_eq!(function.bars.len(), 1);
    assert_eq!(
        (
            function.bars[0].kind,
            function.bars[0].base,
            function.bars[0].size
        ),
        (BarKind::Mem64, 0xfebd_2000, 0x100)
    );
}

#[test]
fn bar_with_holes_in_its_mask_is_an_error() {
    let mut function = plain();
    function.poke32(reg::BAR0, 0, 0xfff0_f000);
    let function = read(&lone(function), SLOT);
    assert!(function.bars.is_empty());
    assert_eq!(
        function.errors,
        [PciError::BarSize {
            index: 0,
            readback: 0xfff0_f000
        }]
    );
}

#[test]
fn bar_with_reserved_type_is_an_error() {
    let mut function = plain();
    function.poke32(reg::BAR0 + 4, 0b110, 0xffff_f000);
    let function = read(&lone(function), SLOT);
    assert_eq!(
        function.errors,
        [PciError::BarReservedType {
            index: 1,
            raw: 0b110
        }]
    );
}

#[test]
fn mem64_bar_in_the_last_slot_is_an_error() {
    let mut function = plain();
    function.poke32(reg::BAR0 + 20, 0b100, 0xffff_f000);
    let function = read(&lone(function), SLOT);
    assert!(function.bars.is_empty());
    assert_eq!(function.errors, [PciError::Bar64InLastSlot { index: 5 }]);
}

/// A device whose BAR 0 answers sizing with a fixed mask whatever its
/// base says: the only way a base can be misaligned.
struct InconsistentBar {
    inner: FakePci,
    sizing: core::cell::Cell<bool>,
}

impl ConfigSpace for InconsistentBar {
    fn read32(&self, addr: PciAddress, offset: u16) -> u32 {
        if offset == reg::BAR0 && self.sizing.get() {
            0xfffe_0000
        } else {
            self.inner.read32(addr, offset)
        }
    }

    fn write32(&self, addr: PciAddress, offset: u16, value: u32) {
        if offset == reg::BAR0 {
            self.sizing.set(value == u32::MAX);
        }
        self.inner.write32(addr, offset, value);
    }
}

#[test]
fn misaligned_bar_base_is_an_error() {
    let mut function = plain();
    function.poke32(reg::BAR0, 0xfebc_1000, 0xffff_f000);
    let pci = InconsistentBar {
        inner: lone(function),
        sizing: core::cell::Cell::new(false),
    };
    let function = PciFunction::read(&pci, SLOT).expect("present");
    assert!(function.bars.is_empty());
    assert_eq!(
        function.errors,
        [PciError::BarMisaligned {
            index: 0,
            base: 0xfebc_1000,
            size: 0x2_0000
        }]
    );
}

#[test]
fn mem64_with_read_only_upper_half_is_an_error() {
    let mut function = plain();
    function.poke32(reg::BAR0, 0b100, 0xffff_f000);
    function.poke32(reg::BAR0 + 4, 0, 0);
    let function = read(&lone(function), SLOT);
    assert_eq!(
        function.errors,
        [PciError::BarSize {
            index: 0,
            readback: 0xffff_f004
        }]
    );
}

#[test]
fn virtio_net_capabilities_decode() {
    let function = read(&FakePci::qemu_pc(), VIRTIO_NET);
    let names: Vec<&str> = function.capabilities.iter().map(Capability::name).collect();
    assert_eq!(
        names,
        [
            "msix",
            "virtio-pci",
            "virtio-notify",
            "virtio-device",
            "virtio-isr",
            "virtio-common"
        ]
    );
    assert_eq!(
        function.msix(),
        Some(&MsixCapability {
            pointer: 0x98,
            table_size: 3,
            table_bar: 1,
            table_offset: 0,
            pba_bar: 1,
            pba_offset: 0x800
        })
    );
    assert_eq!(
        function.virtio(VirtioCfgType::Notify),
        Some(&VirtioCapability {
            pointer: 0x70,
            cfg_type: VirtioCfgType::Notify,
            bar: 4,
            id: 0,
            offset: 0x3000,
            length: 0x1000,
            notify_off_multiplier: Some(4)
        })
    );
    let common = function.virtio(VirtioCfgType::Common).expect("present");
    assert_eq!((common.bar, common.offset, common.length), (4, 0, 0x1000));
    assert_eq!(common.notify_off_multiplier, None);
    assert_eq!(
        function.virtio(VirtioCfgType::Isr).map(|c| c.offset),
        Some(0x1000)
    );
    assert_eq!(
        function.virtio(VirtioCfgType::Device).map(|c| c.offset),
        Some(0x2000)
    );
    assert!(function.msi().is_none());
}

#[test]
fn vendor_capability_of_another_vendor_is_not_virtio() {
    let pci = lone(plain().virtio_capability(0x40, 1, 4, 0, 0x1000, None));
    let function = read(&pci, SLOT);
    assert_eq!(
        function.capabilities,
        [Capability::Other {
            pointer: 0x40,
            id: 0x09
        }]
    );
    assert_eq!(function.capabilities[0].name(), "vendor");
}

#[test]
fn e1000e_capabilities_decode() {
    let function = read(&FakePci::qemu_pc(), E1000E);
    let ids: Vec<(u8, u8)> = function
        .capabilities
        .iter()
        .map(|cap| (cap.pointer(), cap.id()))
        .collect();
    assert_eq!(
        ids,
        [(0xc8, 0x01), (0xd0, 0x05), (0xe0, 0x10), (0xa0, 0x11)]
    );
    let msi = function.msi().expect("present");
    assert!(msi.is_64bit && !msi.per_vector_masking);
    assert_eq!((msi.vectors(), msi.len(), msi.data_offset()), (1, 14, 0xdc));
    let msix = function.msix().expect("present");
    assert_eq!(
        (msix.table_size, msix.table_bar, msix.pba_offset),
        (5, 3, 0x2000)
    );
    assert_eq!(msix.table_len(), 80);
}

#[test]
fn bridge_msi_has_per_vector_masking() {
    let function = read(&FakePci::qemu_pc(), BRIDGE);
    let names: Vec<&str> = function.capabilities.iter().map(Capability::name).collect();
    assert_eq!(names, ["msi", "slotid", "shpc"]);
    let msi = function.msi().expect("present");
    assert_eq!((msi.len(), msi.mask_offset()), (24, Some(0x5c)));
}

#[test]
fn no_capability_list_without_the_status_bit() {
    let mut function = plain();
    function.poke8(reg::CAPABILITIES, 0x40);
    assert!(read(&lone(function), SLOT).capabilities.is_empty());
    assert!(read(&FakePci::qemu_pc(), E1000).capabilities.is_empty());
}

#[test]
fn capability_loop_is_an_error_not_a_hang() {
    let mut function = plain()
        .capability(0x40, &[0x01, 0, 0, 0])
        .msi_capability(0x50, 0);
    function.poke8(0x51, 0x40);
    let function = read(&lone(function), SLOT);
    assert_eq!(function.capabilities.len(), 2);
    assert_eq!(
        function.errors,
        [PciError::CapabilityLoop { pointer: 0x40 }]
    );
}

#[test]
fn capability_pointing_at_itself_is_a_loop() {
    let mut function = plain().capability(0x40, &[0x01, 0, 0, 0]);
    function.poke8(0x41, 0x40);
    let function = read(&lone(function), SLOT);
    assert_eq!(function.capabilities.len(), 1);
    assert_eq!(
        function.errors,
        [PciError::CapabilityLoop { pointer: 0x40 }]
    );
}

#[test]
fn capability_pointer_into_the_header_is_an_error() {
    let mut function = plain().capability(0x40, &[0x01, 0, 0, 0]);
    function.poke8(0x41, 0x10);
    let function = read(&lone(function), SLOT);
    assert_eq!(
        function.errors,
        [PciError::CapabilityPointer {
            at: 0x41,
            pointer: 0x10
        }]
    );
    let mut first = plain().capability(0x40, &[0x01, 0, 0, 0]);
    first.poke8(reg::CAPABILITIES, 0x3c);
    assert_eq!(
        read(&lone(first), SLOT).errors,
        [PciError::CapabilityPointer {
            at: 0x34,
            pointer: 0x3c
        }]
    );
}

#[test]
fn capability_pointer_low_bits_are_masked() {
    let mut function = plain().capability(0x40, &[0x01, 0, 0, 0]);
    function.poke8(reg::CAPABILITIES, 0x43);
    let function = read(&lone(function), SLOT);
    assert_eq!(function.capabilities[0].pointer(), 0x40);
    assert!(function.errors.is_empty());
}

#[test]
fn capability_running_past_the_space_is_truncated() {
    let function = plain().capability(0xfc, &[0x11, 0, 0, 0]);
    let function = read(&lone(function), SLOT);
    assert!(function.capabilities.is_empty());
    assert_eq!(
        function.errors,
        [PciError::CapabilityTruncated {
            pointer: 0xfc,
            id: 0x11,
            len: 12
        }]
    );
}

#[test]
fn short_virtio_notify_capability_is_truncated() {
    let mut function = FakeFunction::device(0x1af4, 0x1041, 0x02, 0x00, 0x00)
        .virtio_capability(0x40, 2, 4, 0x3000, 0x1000, None);
    function.poke8(0x42, 16);
    let function = read(&lone(function), SLOT);
    assert_eq!(
        function.errors,
        [PciError::CapabilityTruncated {
            pointer: 0x40,
            id: 0x09,
            len: 16
        }]
    );
}

#[test]
fn forty_eight_capabilities_are_walked() {
    let mut function = plain();
    for pointer in (0x40..=0xfc).step_by(4) {
        function = function.capability(pointer, &[0x01, 0, 0, 0]);
    }
    let function = read(&lone(function), SLOT);
    assert_eq!(function.capabilities.len(), MAX_CAPABILITIES);
    assert!(function.errors.is_empty());
}

#[test]
fn msi_enable_writes_message_and_control() {
    let pci = FakePci::qemu_pc();
    let msi = *read(&pci, E1000E).msi().expect("present");
    let message = MsiMessage {
        address: FAKE_MSI_ADDRESS,
        data: 0x41,
    };
    msi.enable(&pci, E1000E, message).expect("fits");
    let after = pci.function(E1000E).expect("present");
    assert_eq!(after.peek32(0xd4), 0xfee0_0000);
    assert_eq!(after.peek32(0xd8), 0);
    assert_eq!(after.peek32(0xdc), 0x41);
    assert_eq!(after.peek32(0xd0) >> 16, 0x0081);
    // Id and next pointer are untouched.
    assert_eq!(after.peek32(0xd0) & 0xffff, 0xe005);
    msi.disable(&pci, E1000E);
    assert_eq!(
        pci.function(E1000E).expect("present").peek32(0xd0) >> 16,
        0x0080
    );
}

#[test]
fn msi_32bit_refuses_a_high_address() {
    let pci = lone(plain().msi_capability(0x40, 0));
    let msi = *read(&pci, SLOT).msi().expect("present");
    assert!(!msi.is_64bit);
    let message = MsiMessage {
        address: 0x1_0000_0000,
        data: 0,
    };
    assert_eq!(
        msi.enable(&pci, SLOT, message),
        Err(PciError::MsiAddress {
            address: 0x1_0000_0000
        })
    );
}

#[test]
fn msix_enable_sets_enable_and_clears_function_mask() {
    let pci = FakePci::qemu_pc();
    let msix = *read(&pci, VIRTIO_NET).msix().expect("present");
    msix.set_enabled(&pci, VIRTIO_NET, true);
    assert_eq!(
        pci.function(VIRTIO_NET).expect("present").peek32(0x98) >> 16,
        0x8002
    );
    msix.set_enabled(&pci, VIRTIO_NET, false);
    assert_eq!(
        pci.function(VIRTIO_NET).expect("present").peek32(0x98) >> 16,
        0x0002
    );
}

#[test]
fn msix_table_entry_is_written_and_bounded() {
    let msix = *read(&FakePci::qemu_pc(), VIRTIO_NET)
        .msix()
        .expect("present");
    let (_memory, table) = backing(msix.table_len() / 8);
    table.write32(2 * 16 + 12, 1).expect("inside");
    let message = MsiMessage {
        address: 0xfee0_0000,
        data: 0x42,
    };
    msix.write_entry(&table, 2, message).expect("entry 2 of 3");
    assert_eq!(table.read32(32), Ok(0xfee0_0000));
    assert_eq!(table.read32(36), Ok(0));
    assert_eq!(table.read32(40), Ok(0x42));
    assert_eq!(table.read32(44), Ok(0), "unmasked");
    assert_eq!(
        msix.write_entry(&table, 3, message),
        Err(PciError::MsixEntry {
            entry: 3,
            table_size: 3
        })
    );
}

#[test]
fn boot_line_for_e1000() {
    let function = read(&FakePci::qemu_pc(), E1000);
    assert_eq!(
        format!("{function}"),
        "pci 00:03.0 8086:100e class 0200 (Ethernet controller) irq 11 \
         bar0 mem32 0xfebc0000+0x20000 bar1 io 0xc000+0x40"
    );
}

#[test]
fn boot_line_for_e1000e_lists_capabilities() {
    let function = read(&FakePci::qemu_pc(), E1000E);
    assert_eq!(
        format!("{function}"),
        "pci 00:06.0 8086:10d3 class 0200 (Ethernet controller) irq 10 \
         bar0 mem32 0xfeb80000+0x20000 bar1 mem32 0xfeba0000+0x20000 bar2 io 0xc0a0+0x20 \
         bar3 mem32 0xfebd0000+0x4000 caps pm,msi,pcie,msix"
    );
}

#[test]
fn boot_line_for_bridge_and_host_bridge() {
    let pci = FakePci::qemu_pc();
    assert_eq!(
        format!("{}", read(&pci, BRIDGE)),
        "pci 00:05.0 1b36:0001 class 0604 (PCI bridge) bus 01-01 irq 10 \
         bar0 mem64 0xfebd2000+0x100 caps msi,slotid,shpc"
    );
    assert_eq!(
        format!("{}", read(&pci, PciAddress::new(0, 0, 0))),
        "pci 00:00.0 8086:1237 class 0600 (Host bridge)"
    );
    assert_eq!(
        format!("{}", read(&pci, PciAddress::new(0, 2, 0))),
        "pci 00:02.0 1234:1111 class 0300 (VGA compatible controller) \
         bar0 mem32 pref 0xfd000000+0x1000000 bar2 mem32 0xfebd4000+0x1000"
    );
}

#[test]
fn boot_line_names_errors_and_unrouted_irq() {
    let mut function = plain().irq(0xff, 1).capability(0x40, &[0x01, 0, 0, 0]);
    function.poke8(0x41, 0x40);
    assert_eq!(
        format!("{}", read(&lone(function), SLOT)),
        "pci 00:07.0 1234:5678 class ff00 (Unassigned class) irq ? caps pm \
         error: capability list loops at 0x40"
    );
}

#[test]
fn class_names_cover_common_classes() {
    assert_eq!(class_name(0x01, 0x08), "Non-Volatile memory controller");
    assert_eq!(class_name(0x06, 0x01), "ISA bridge");
    assert_eq!(class_name(0x06, 0x80), "Bridge");
    assert_eq!(class_name(0x0c, 0x03), "USB controller");
    assert_eq!(class_name(0x42, 0x00), "Unknown class");
}

#[test]
fn capability_names_by_id() {
    assert_eq!(capability_name(0x01), "pm");
    assert_eq!(capability_name(0x10), "pcie");
    assert_eq!(capability_name(0x11), "msix");
    assert_eq!(capability_name(0x99), "unknown");
}

#[test]
fn device_id_matches_exact_and_class() {
    let pci = FakePci::qemu_pc();
    let e1000 = read(&pci, E1000);
    let virtio = read(&pci, VIRTIO_NET);
    let exact = DeviceId::pci(0x8086, 0x100e);
    assert!(exact.matches(&e1000));
    assert!(!exact.matches(&virtio));
    let ethernet = DeviceId::class(0x02, 0x00);
    assert!(ethernet.matches(&e1000) && ethernet.matches(&virtio));
    assert!(!DeviceId::class(0x02, 0x80).matches(&e1000));
    let table = [DeviceId::pci(0x1af4, 0x1041), DeviceId::pci(0x1af4, 0x1000)];
    assert!(DeviceId::any(&table, &virtio));
    assert!(!DeviceId::any(&table, &e1000));
}

#[test]
fn errors_display() {
    assert_eq!(
        PciError::BarSize {
            index: 2,
            readback: 0xfff0_f000
        }
        .to_string(),
        "bar2 reads back a bad size mask 0xfff0f000"
    );
    assert_eq!(
        PciError::BusAlreadyScanned { secondary: 0 }.to_string(),
        "bridge to bus 00, which was scanned already"
    );
}

#[test]
fn config_space_narrow_reads_pick_the_right_lanes() {
    let pci = FakePci::qemu_pc();
    assert_eq!(pci.read16(E1000, 0x02), 0x100e);
    assert_eq!(pci.read8(E1000, 0x3d), 1);
    assert_eq!(pci.read8(E1000, 0x3c), 11);
    assert_eq!(pci.command(E1000), 0x0007);
}

#[test]
fn set_command_leaves_status_alone() {
    let pci = FakePci::qemu_pc();
    pci.set_command(VIRTIO_NET, command::MEMORY | command::BUS_MASTER);
    assert_eq!(pci.command(VIRTIO_NET), 0x0006);
    assert_ne!(pci.read16(VIRTIO_NET, reg::STATUS) & STATUS_CAPABILITIES, 0);
}

#[test]
fn ecam_offsets_follow_the_spec() {
    assert_eq!(ecam_offset(0, PciAddress::new(0, 3, 0), 0x10), 0x1_8010);
    assert_eq!(ecam_offset(0, PciAddress::new(1, 0, 1), 0x100), 0x10_1100);
    assert_eq!(
        ecam_offset(0x10, PciAddress::new(0x11, 31, 7), 0xffc),
        0x1f_fffc
    );
}

#[test]
fn ecam_reads_and_writes_inside_its_window() {
    let (_memory, region) = backing(BUS_SPACE / 8);
    region.write32(0x1_8000, 0x100e_8086).expect("inside");
    let ecam = Ecam::new(region, 0, 0).expect("one bus fits");
    assert_eq!(ecam.read32(E1000, 0), 0x100e_8086);
    assert_eq!(ecam.read16(E1000, 2), 0x100e);
    ecam.write32(E1000, 0x104, 0xabcd);
    assert_eq!(ecam.read32(E1000, 0x104), 0xabcd);
    // Outside the bus range or the function's 4 KiB: absent.
    assert_eq!(ecam.read32(PciAddress::new(1, 0, 0), 0), u32::MAX);
    assert_eq!(ecam.read32(E1000, 0x1000), u32::MAX);
    ecam.write32(PciAddress::new(1, 0, 0), 0, 0);
}

#[test]
fn ecam_refuses_a_window_too_small() {
    let (_memory, region) = backing(BUS_SPACE / 8);
    assert!(Ecam::new(region, 0, 1).is_err());
    let (_memory, region) = backing(1);
    assert!(Ecam::new(region, 2, 1).is_err());
}
