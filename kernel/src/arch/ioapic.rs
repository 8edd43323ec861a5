//! The I/O APIC (Intel 82093AA datasheet; ACPI MADT for its address):
//! routes a device interrupt (a global system interrupt, GSI) to a vector
//! on the boot CPU. Every pin starts masked; a pin is routed with the
//! trigger mode and polarity its bus (or the MADT) gives, fixed delivery.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

static BASE: AtomicU64 = AtomicU64::new(0);
static GSI_BASE: AtomicU32 = AtomicU32::new(0);
static PINS: AtomicU32 = AtomicU32::new(0);

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VERSION: u32 = 0x01;
const REDIRECTION: u32 = 0x10;
const MASKED: u32 = 1 << 16;

fn write(register: u32, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: BASE maps the I/O APIC's registers uncached (init); the
    // select-then-window access is its documented protocol, done with
    // interrupts off by the callers (boot, one CPU).
    unsafe {
        ((base + IOREGSEL) as *mut u32).write_volatile(register);
        ((base + IOWIN) as *mut u32).write_volatile(value);
    }
}

fn read(register: u32) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: as in `write`.
    unsafe {
        ((base + IOREGSEL) as *mut u32).write_volatile(register);
        ((base + IOWIN) as *const u32).read_volatile()
    }
}

/// Maps the I/O APIC at `address` and masks every pin. False when nothing
/// answers there.
pub fn init(address: u64, gsi_base: u32) -> bool {
    // 0x20: the register window (IOREGSEL and IOWIN), not a page.
    let base = crate::mm::map_mmio(x86_64::PhysAddr::new(address), 0x20);
    BASE.store(base.as_u64(), Ordering::Relaxed);
    let version = read(REG_VERSION);
    if version == u32::MAX {
        BASE.store(0, Ordering::Relaxed);
        return false;
    }
    let pins = ((version >> 16) & 0xff) + 1;
    for pin in 0..pins {
        write(REDIRECTION + 2 * pin, MASKED);
        write(REDIRECTION + 2 * pin + 1, 0);
    }
    GSI_BASE.store(gsi_base, Ordering::Relaxed);
    PINS.store(pins, Ordering::Relaxed);
    log::info!("ioapic: at {address:#x}, {pins} pins from GSI {gsi_base}");
    true
}

/// Redirection entry bits: polarity (1 = active low), trigger (1 = level).
const ACTIVE_LOW: u32 = 1 << 13;
const LEVEL: u32 = 1 << 15;

/// Whether an I/O APIC answered at `init`.
pub fn present() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

/// Routes `gsi` to `vector` on the boot CPU (APIC id `apic_id`), with the
/// line's trigger mode and polarity.
pub fn route(
    gsi: u32,
    vector: u8,
    apic_id: u32,
    mode: pure::arch::acpi_tables::LineMode,
) -> Result<(), &'static str> {
    if BASE.load(Ordering::Relaxed) == 0 {
        return Err("no I/O APIC");
    }
    let pin = gsi
        .checked_sub(GSI_BASE.load(Ordering::Relaxed))
        .filter(|&p| p < PINS.load(Ordering::Relaxed));
    let pin = pin.ok_or("GSI not on this I/O APIC")?;
    let mut low = u32::from(vector);
    if mode.level {
        low |= LEVEL;
    }
    if mode.active_low {
        low |= ACTIVE_LOW;
    }
    write(REDIRECTION + 2 * pin + 1, apic_id << 24);
    write(REDIRECTION + 2 * pin, low);
    Ok(())
}
