//! The local APIC (x2APIC where the CPU has it, xAPIC MMIO otherwise) and
//! its timer, and the legacy 8259 PICs, which are remapped and masked.
//!
//! Intel SDM Vol. 3A chapter 11 (11.4 xAPIC, 11.5.4 APIC timer, 11.12
//! x2APIC: register `r` of the xAPIC page is MSR `0x800 + r / 16`).
//! The timer runs in one-shot mode behind the vmops `set_timer` op, armed
//! by the scheduler for its next deadline only (tickless).

use crate::arch::cpu::{self, outb, read_msr, write_msr};
use crate::arch::traps::{self, TrapFrame, VECTOR_APIC_SPURIOUS, VECTOR_APIC_TIMER};
use crate::time;
use crate::vmops::ops;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Register offsets in the xAPIC page.
const REG_ID: u32 = 0x20;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;

const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration 0b0011: divide by 16.
const TIMER_DIVIDE_BY_16: u32 = 0x3;

/// How long the timer's rate is measured at boot.
const CALIBRATION_NS: u64 = 2_000_000;

/// Interval of the kernel's tick.
pub const TICK_NS: u64 = 10_000_000;

const MODE_NONE: u8 = 0;
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(MODE_NONE);
/// Virtual address of the xAPIC register page (xAPIC mode only).
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);
/// Physical address of the xAPIC register page (xAPIC mode only).
static XAPIC_PHYS: AtomicU64 = AtomicU64::new(0);
/// Timer counts per second at the divide-by-16 setting.
static COUNTS_PER_SECOND: AtomicU64 = AtomicU64::new(0);

fn read(reg: u32) -> u32 {
    match MODE.load(Ordering::Relaxed) {
        // SAFETY: in x2APIC mode every register in 0x800..0x8ff we name
        // exists; reads have no side effects.
        MODE_X2APIC => unsafe { read_msr(0x800 + (reg >> 4)) as u32 },
        MODE_XAPIC => {
            let address = XAPIC_BASE.load(Ordering::Relaxed) + u64::from(reg);
            // SAFETY: XAPIC_BASE maps the APIC page uncached (set in
            // `init`), and `reg` is a 16-byte-aligned register offset in it.
            unsafe { core::ptr::read_volatile(address as *const u32) }
        }
        _ => 0,
    }
}

fn write(reg: u32, value: u32) {
    match MODE.load(Ordering::Relaxed) {
        // SAFETY: as in `read`; the registers written are the ones this
        // module owns (TPR, EOI, SVR, timer).
        MODE_X2APIC => unsafe { write_msr(0x800 + (reg >> 4), u64::from(value)) },
        MODE_XAPIC => {
            let address = XAPIC_BASE.load(Ordering::Relaxed) + u64::from(reg);
            // SAFETY: as in `read`.
            unsafe { core::ptr::write_volatile(address as *mut u32, value) }
        }
        _ => {}
    }
}

static ID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// This CPU's local APIC id (valid after `init`).
pub fn id() -> u32 {
    ID.load(Ordering::Relaxed)
}

/// Signals end of interrupt to the local APIC.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Whether the local APIC is enabled (an MSI can reach this CPU).
pub fn enabled() -> bool {
    MODE.load(Ordering::Relaxed) != MODE_NONE
}

/// Interrupt command register, low half (x2APIC: the whole ICR MSR).
const REG_ICR_LOW: u32 = 0x300;
/// ICR destination shorthand "self" (SDM Vol. 3A 11.6.1).
const ICR_SELF: u32 = 1 << 18;

/// Sends interrupt `vector` to this CPU (fixed delivery), as a device's
/// message would arrive: for tests of vector dispatch.
pub fn self_ipi(vector: u8) {
    write(REG_ICR_LOW, ICR_SELF | u32::from(vector));
}

/// Remaps the 8259 PICs to vectors 0x20..0x2f (so a spurious IRQ cannot
/// look like an exception) and masks every line.
pub fn disable_legacy_pic() {
    // SAFETY: ports 0x20/0x21 and 0xa0/0xa1 are the PICs' command and data
    // ports; the ICW sequence is the documented initialisation (8259A data
    // sheet) and ends with all lines masked.
    unsafe {
        outb(0x20, 0x11);
        outb(0xa0, 0x11);
        outb(0x21, 0x20);
        outb(0xa1, 0x28);
        outb(0x21, 0x04);
        outb(0xa1, 0x02);
        outb(0x21, 0x01);
        outb(0xa1, 0x01);
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}

/// Why the local APIC could not be brought up.
#[derive(Debug)]
pub enum ApicError {
    /// CPUID.1:EDX[9] is clear.
    Absent,
}

/// Enables the local APIC (x2APIC mode when CPUID.1:ECX[21] says so) and
/// measures its timer; [`start_timer`] then arms it. Call with interrupts
/// disabled, after memory is up (xAPIC mode maps the register page, whose
/// virtual and physical addresses are returned; `None` in x2APIC mode).
pub fn enable() -> Result<Option<(u64, u64)>, ApicError> {
    let Some(features) = cpu::features().get_feature_info() else {
        return Err(ApicError::Absent);
    };
    if !features.has_apic() {
        return Err(ApicError::Absent);
    }
    let x2apic = features.has_x2apic();
    // SAFETY: IA32_APIC_BASE exists when CPUID reports an APIC.
    let base = unsafe { read_msr(IA32_APIC_BASE) };
    if x2apic {
        // SAFETY: enabling x2APIC mode (EN then EXTD) is the documented
        // transition from xAPIC mode; the CPU supports it (CPUID above).
        unsafe { write_msr(IA32_APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_X2APIC) };
        MODE.store(MODE_X2APIC, Ordering::Relaxed);
    } else {
        // SAFETY: setting EN keeps the APIC at its current base.
        unsafe { write_msr(IA32_APIC_BASE, base | APIC_BASE_ENABLE) };
        let phys = x86_64::PhysAddr::new(base & APIC_BASE_ADDRESS_MASK);
        let page = crate::mm::map_mmio(phys, crate::mm::PAGE_SIZE);
        XAPIC_BASE.store(page.as_u64(), Ordering::Relaxed);
        XAPIC_PHYS.store(phys.as_u64(), Ordering::Relaxed);
        MODE.store(MODE_XAPIC, Ordering::Relaxed);
    }
    write(REG_TPR, 0);
    write(REG_SVR, SVR_ENABLE | u32::from(VECTOR_APIC_SPURIOUS));
    let id = if x2apic {
        read(REG_ID)
    } else {
        read(REG_ID) >> 24
    };
    ID.store(id, Ordering::Relaxed);

    // Measure the timer's count rate against the TSC over 2 ms: plenty for
    // a timer whose deadlines the scheduler re-checks against the clock
    // (at 62 MHz / 16 that is ~8000 counts, 0.01% resolution).
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(VECTOR_APIC_TIMER));
    write(REG_TIMER_INITIAL, u32::MAX);
    time::spin_delay_ns(CALIBRATION_NS);
    let elapsed = u32::MAX - read(REG_TIMER_CURRENT);
    let counts_per_second = u64::from(elapsed) * (1_000_000_000 / CALIBRATION_NS);
    COUNTS_PER_SECOND.store(counts_per_second, Ordering::Relaxed);

    traps::set_handler(VECTOR_APIC_TIMER, timer_interrupt);
    // One-shot mode (LVT timer mode 00), unmasked; `arm_oneshot` loads the
    // count.
    write(REG_LVT_TIMER, u32::from(VECTOR_APIC_TIMER));
    log::info!(
        "apic: {} id {id}, timer {} kHz (divide 16), one-shot, {} ms tick",
        if x2apic { "x2APIC" } else { "xAPIC" },
        counts_per_second / 1000,
        TICK_NS / 1_000_000
    );
    Ok((!x2apic).then(|| {
        (
            XAPIC_BASE.load(Ordering::Relaxed),
            XAPIC_PHYS.load(Ordering::Relaxed),
        )
    }))
}

/// Arms the timer for the first tick (through the backend's `set_timer`).
pub fn start_timer() {
    ops::set_timer(ops::clock_ns() + TICK_NS);
}

/// Arms the one-shot timer to fire at clock time `deadline_ns`, given the
/// clock's `now_ns` (the backends' `set_timer` op). A deadline in the past
/// fires at once.
pub fn arm_oneshot(deadline_ns: u64, now_ns: u64) {
    if deadline_ns == u64::MAX {
        // Disarmed: a zero initial count stops the timer.
        write(REG_TIMER_INITIAL, 0);
        return;
    }
    let delta = deadline_ns.saturating_sub(now_ns);
    let counts =
        u128::from(delta) * u128::from(COUNTS_PER_SECOND.load(Ordering::Relaxed)) / 1_000_000_000;
    write(
        REG_TIMER_INITIAL,
        counts.clamp(1, u128::from(u32::MAX)) as u32,
    );
}

fn timer_interrupt(_frame: &mut TrapFrame) {
    time::count_timer_interrupt();
    ops::eoi();
    crate::sched::on_timer_interrupt();
}

mod tests {
    use super::*;
    use crate::kassert;
    use crate::ktest::{ktest, TestResult};

    #[ktest]
    fn one_shot_timer_fires_when_armed() -> TestResult {
        if crate::backend::id() == crate::backend::BackendId::XenPv {
            return crate::ktest::not_applicable("no local APIC under Xen PV (VIRQ_TIMER instead)");
        }
        kassert!(
            MODE.load(Ordering::Relaxed) != MODE_NONE,
            "local APIC not enabled"
        );
        for _ in 0..3 {
            let before = time::timer_interrupts();
            let start = ops::clock_ns();
            ops::set_timer(start + 1_000_000);
            // Halting with interrupts enabled: only an interrupt wakes us.
            while time::timer_interrupts() == before {
                cpu::safe_halt();
            }
            let waited = ops::clock_ns() - start;
            kassert!(waited >= 900_000, "a 1 ms timer fired after {waited} ns");
        }
        Ok(())
    }
}
