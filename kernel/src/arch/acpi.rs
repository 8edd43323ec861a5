//! Power-off through ACPI (the FADT's PM1a control port and the `\_S5`
//! sleep type, found by `pure::arch::acpi_tables` in tables read here through
//! MMIO-window mappings, since firmware tables need not lie in the direct
//! map of RAM).

use core::sync::atomic::{AtomicU32, Ordering};
use pure::arch::acpi_tables::{self as acpi, AcpiError};

/// PM1a control port in the low 16 bits, SLP_TYPa above; 0 = not found.
static SOFT_OFF: AtomicU32 = AtomicU32::new(0);

/// The MADT, mapped for good, for interrupt routing.
static MADT: spin::Once<&'static [u8]> = spin::Once::new();

/// The first ECAM window of segment 0 the MCFG lists.
static ECAM: spin::Once<acpi::EcamWindow> = spin::Once::new();

/// `len` bytes of physical memory at `phys`.
fn bytes(phys: u64, len: usize) -> &'static [u8] {
    // Firmware's word: bits above a physical address are dropped, as the
    // page-table entry would drop them.
    let phys = x86_64::PhysAddr::new_truncate(phys);
    let virt = crate::mm::map_phys(phys, len as u64, true);
    // SAFETY: map_phys just mapped `len` bytes at `virt`, for good (the
    // MMIO window is never unmapped); firmware tables are read-only to us.
    unsafe { core::slice::from_raw_parts(virt.as_ptr::<u8>(), len) }
}

/// A whole table: its header first, for the length.
fn sdt(phys: u64, signature: &[u8; 4]) -> Result<&'static [u8], AcpiError> {
    let header = bytes(phys, 36);
    if &header[0..4] != signature {
        return Err(AcpiError::BadSignature);
    }
    let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if !(36..=1 << 20).contains(&length) {
        return Err(AcpiError::Truncated);
    }
    acpi::table(bytes(phys, length), signature)
}

/// Walks the root table: remembers the MADT's I/O APIC and returns the
/// soft-off method.
fn scan(rsdp: u64) -> Result<(u16, u16), AcpiError> {
    let (root, wide) = acpi::rsdp_root(bytes(rsdp, 36))?;
    let root = sdt(root, if wide { b"XSDT" } else { b"RSDT" })?;
    let mut soft_off = Err(AcpiError::NotFound("FADT"));
    for entry in acpi::root_entries(root, wide) {
        match bytes(entry, 4) {
            b"FACP" => {
                soft_off = sdt(entry, b"FACP")
                    .and_then(acpi::fadt_power)
                    .and_then(|(port, dsdt)| Ok((port, acpi::s5_sleep_type(sdt(dsdt, b"DSDT")?)?)));
            }
            b"APIC" => {
                if let Ok(madt) = sdt(entry, b"APIC") {
                    MADT.call_once(|| madt);
                }
            }
            b"MCFG" => {
                if let Some(window) = sdt(entry, b"MCFG")
                    .ok()
                    .and_then(|mcfg| acpi::mcfg_windows(mcfg).find(|w| w.segment == 0))
                {
                    ECAM.call_once(|| window);
                }
            }
            _ => {}
        }
    }
    soft_off
}

/// The ECAM window of PCI segment 0, if the firmware gives one (q35 does;
/// the `pc` machine has configuration ports only).
pub fn ecam() -> Option<acpi::EcamWindow> {
    ECAM.get().copied()
}

/// Routes ISA IRQ `irq` (edge, active high unless the MADT overrides it)
/// to `vector` through the I/O APIC.
pub fn route_isa_irq(irq: u8, vector: u8) -> Result<u32, &'static str> {
    route(irq, vector, acpi::LineMode::ISA)
}

/// Routes the interrupt line a PCI function's configuration names (in PC
/// firmware, an ISA IRQ number; level, active low unless the MADT says
/// otherwise, as QEMU's does for its PCI link IRQs) to `vector`.
pub fn route_pci_line(line: u8, vector: u8) -> Result<u32, &'static str> {
    route(line, vector, acpi::LineMode::PCI)
}

/// Routes `irq` of a bus with `default` lines; returns the GSI.
fn route(irq: u8, vector: u8, default: acpi::LineMode) -> Result<u32, &'static str> {
    let madt = MADT.get().ok_or("no MADT")?;
    let (gsi, mode) = acpi::madt_route(madt, irq, default);
    crate::arch::ioapic::route(gsi, vector, crate::arch::apic::id(), mode)?;
    Ok(gsi)
}

/// Reads the firmware's tables (soft-off, the MADT, the MCFG) and brings
/// up the I/O APIC the MADT names, every pin masked. Call once, after
/// memory is up.
pub fn init(rsdp: Option<u64>) {
    let Some(rsdp) = rsdp else {
        log::info!("acpi: no RSDP from the boot loader");
        return;
    };
    let soft_off = scan(rsdp);
    match MADT.get().and_then(|madt| acpi::madt_ioapic(madt)) {
        Some((address, gsi_base)) => {
            if !crate::arch::ioapic::init(address, gsi_base) {
                log::warn!("acpi: nothing answers at the I/O APIC's address {address:#x}");
            }
        }
        None => log::info!("acpi: no I/O APIC in the MADT"),
    }
    match soft_off {
        Ok((port, sleep_type)) => {
            SOFT_OFF.store(
                u32::from(port) | u32::from(sleep_type) << 16,
                Ordering::Relaxed,
            );
            log::info!("acpi: soft-off through PM1a control port {port:#x}, SLP_TYP {sleep_type}");
        }
        Err(error) => {
            log::info!("acpi: no soft-off ({error})")
        }
    }
}

/// (port, SLP_TYPa) of the soft-off state, if found.
pub fn soft_off() -> Option<(u16, u16)> {
    match SOFT_OFF.load(Ordering::Relaxed) {
        0 => None,
        value => Some((value as u16, (value >> 16) as u16)),
    }
}

mod tests {
    use super::*;
    use crate::kassert;
    use crate::ktest::{ktest, TestResult};

    #[ktest]
    fn soft_off_is_found_where_firmware_gives_acpi() -> TestResult {
        let boot = crate::boot::boot_info();
        let on_xen = crate::backend::id() == crate::backend::BackendId::XenPvh;
        // QEMU's firmware and GRUB hand over an RSDP whose FADT has a PM1a
        // port; Xen's PVH guests use SCHEDOP_shutdown instead.
        if boot.rsdp.is_some() && !on_xen {
            kassert!(
                soft_off().is_some_and(|(port, _)| port != 0),
                "no ACPI soft-off found"
            );
        }
        Ok(())
    }
}
