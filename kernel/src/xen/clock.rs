//! Xen time: the clock is vCPU 0's pvclock in shared_info
//! (`xen/include/public/xen.h`, `vcpu_time_info`), the timer
//! `VCPUOP_set_singleshot_timer` delivered on `VIRQ_TIMER`, stolen time
//! the runstate area (`vcpu.h`), the wall clock shared_info's `wc_*`
//! fields plus system time. Until [`start`] runs, the backend's own timer
//! serves (the TSC and the emulated local APIC on PVH).

use super::events::{bind_port, shared_info};
use crate::arch::cpu;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use hv::xen::bindings::*;
use hv::xen::calls;
use hv::xen::hypercall::XenError;

/// Set once pvclock and VIRQ_TIMER are in use.
static XEN_TIME: AtomicBool = AtomicBool::new(false);
/// Xen system time minus the kernel's clock at the switch, so the
/// kernel's clock runs on without a jump.
static XEN_CLOCK_OFFSET: AtomicU64 = AtomicU64::new(0);
static RUNSTATE: AtomicU64 = AtomicU64::new(0);
/// Stolen time of earlier domains: a resume in a new domain starts the
/// runstate area from zero, and stolen time must not go backwards.
static STEAL_BASE: AtomicU64 = AtomicU64::new(0);

/// A consistent read of vCPU 0's pvclock, in Xen system time.
pub fn system_time(shared: *mut shared_info) -> u64 {
    loop {
        // SAFETY: `shared` maps shared_info; the version protocol (odd =
        // being updated, changed = torn) makes the snapshot consistent.
        let (before, snapshot, tsc, after) = unsafe {
            let time = &raw const (*shared).vcpu_info[0].time;
            let version = &raw const (*time).version;
            let before = version.read_volatile();
            fence(Ordering::Acquire);
            let snapshot = time.read_volatile();
            let tsc = cpu::rdtsc();
            fence(Ordering::Acquire);
            (before, snapshot, tsc, version.read_volatile())
        };
        if before & 1 == 0 && before == after {
            return hv::pvclock::Pvclock::ns_at(&snapshot, tsc);
        }
        core::hint::spin_loop();
    }
}

/// The TSC rate vCPU 0's time info implies (`ns = (tsc << shift) * mul >>
/// 32`), read once without the version protocol: a torn read only skews
/// the logged rate, the clock itself uses the protocol.
pub fn tsc_hz(shared: *const shared_info) -> Option<u64> {
    // SAFETY: the caller passes the mapped shared_info.
    let time = unsafe { (&raw const (*shared).vcpu_info[0].time).read_volatile() };
    (time.tsc_to_system_mul != 0).then(|| hv::pvclock::Pvclock::tsc_hz(&time))
}

/// Whether the clock and timer are Xen's yet.
pub fn running() -> bool {
    XEN_TIME.load(Ordering::Acquire)
}

/// The clock op: Xen system time, offset to continue the boot clock; the
/// TSC until [`start`].
pub extern "C" fn clock_ns() -> u64 {
    match shared_info() {
        Some(shared) if running() => {
            system_time(shared).wrapping_sub(XEN_CLOCK_OFFSET.load(Ordering::Relaxed))
        }
        _ => crate::time::tsc_clock_ns(),
    }
}

/// The timer op once Xen time runs (the backend's own timer serves
/// before): arms the single-shot timer, or stops it for `u64::MAX`.
pub fn set_timer(deadline_ns: u64) {
    let result = if deadline_ns == u64::MAX {
        calls::vcpu_stop_singleshot_timer(0)
    } else {
        // Not VCPU_SSHOTTMR_future: a deadline already past fires at once.
        let xen_deadline = deadline_ns.wrapping_add(XEN_CLOCK_OFFSET.load(Ordering::Relaxed));
        calls::vcpu_set_singleshot_timer(0, xen_deadline, 0)
    };
    if let Err(error) = result {
        // The scheduler re-arms on its next pass; say why time stalls.
        log::error!("xen: timer for {deadline_ns} ns refused: {error}");
    }
}

/// The stolen-time op: runnable or offline while Xen ran something else.
pub extern "C" fn steal_ns() -> u64 {
    STEAL_BASE.load(Ordering::Acquire) + runstate_steal_ns()
}

fn runstate_steal_ns() -> u64 {
    let runstate = RUNSTATE.load(Ordering::Acquire) as *const vcpu_runstate_info;
    if runstate.is_null() {
        return 0;
    }
    loop {
        // SAFETY: the runstate area is a static Xen updates; while it does,
        // bit 63 of state_entry_time (XEN_RUNSTATE_UPDATE) is set.
        let (before, runnable, offline, after) = unsafe {
            let entry = &raw const (*runstate).state_entry_time;
            let before = entry.read_volatile();
            fence(Ordering::Acquire);
            let runnable =
                (&raw const (*runstate).time[RUNSTATE_runnable as usize]).read_volatile();
            let offline = (&raw const (*runstate).time[RUNSTATE_offline as usize]).read_volatile();
            fence(Ordering::Acquire);
            (before, runnable, offline, entry.read_volatile())
        };
        if before & XEN_RUNSTATE_UPDATE == 0 && before == after {
            return runnable + offline;
        }
        core::hint::spin_loop();
    }
}

fn timer_event(_port: u32, _context: usize) {
    crate::time::count_timer_interrupt();
    crate::sched::on_timer_interrupt();
}

/// The runstate area Xen keeps up to date for vCPU 0.
struct RunstateArea(core::cell::UnsafeCell<vcpu_runstate_info>);
// SAFETY: written by Xen, read with the update protocol in `steal_ns`.
unsafe impl Sync for RunstateArea {}
static RUNSTATE_AREA: RunstateArea =
    RunstateArea(core::cell::UnsafeCell::new(vcpu_runstate_info {
        state: 0,
        state_entry_time: 0,
        time: [0; 4],
    }));

/// Binds VIRQ_TIMER, registers the runstate area and stops Xen's periodic
/// timer: what a vCPU of a new domain lacks. Returns the timer's port.
fn bind_vcpu_time() -> Result<u32, XenError> {
    let port = calls::evtchn_bind_virq(VIRQ_TIMER, 0)?;
    // SAFETY: the area is a static that lives as long as the kernel and
    // that nothing but Xen writes.
    match unsafe { calls::vcpu_register_runstate_memory_area(0, RUNSTATE_AREA.0.get()) } {
        Ok(()) => RUNSTATE.store(RUNSTATE_AREA.0.get() as u64, Ordering::Release),
        Err(error) => log::warn!("xen: no runstate area ({error}); no stolen time"),
    }
    // A PV vCPU starts with Xen's 100 Hz periodic timer on VIRQ_TIMER
    // (while it runs); a tickless kernel wants only its single-shot one.
    if let Err(error) = calls::vcpu_stop_periodic_timer(0) {
        log::warn!("xen: periodic timer not stopped ({error}); ticks while running");
    }
    Ok(port)
}

/// What the clock was when the domain suspended ([`suspend`]).
pub struct Suspended {
    clock_ns: u64,
    steal_ns: u64,
}

/// Notes the clock and stolen time before a suspend (events masked).
pub fn suspend() -> Suspended {
    Suspended {
        clock_ns: clock_ns(),
        steal_ns: steal_ns(),
    }
}

/// After a resume (events masked). In a new domain Xen's system time is
/// another host's or has run on while the domain was saved: the clock
/// continues from where it stopped (the downtime is not counted, as
/// Linux's CLOCK_MONOTONIC does not count it), and VIRQ_TIMER, the
/// runstate area and stolen time start again. In the same domain (a
/// cancelled suspend) nothing was lost and the clock ran on. Either way
/// the timer is armed at once, so the scheduler programs its next
/// deadline (timers due meanwhile fire).
pub fn resume(before: &Suspended, new_domain: bool) -> Result<(), XenError> {
    if !running() {
        return Ok(());
    }
    let shared = shared_info().ok_or(XenError::EINVAL)?;
    if new_domain {
        // The clock first: it must continue even if what follows fails.
        let xen_now = system_time(shared);
        XEN_CLOCK_OFFSET.store(xen_now.wrapping_sub(before.clock_ns), Ordering::Relaxed);
        RUNSTATE.store(0, Ordering::Release);
        STEAL_BASE.store(before.steal_ns, Ordering::Release);
        let port = bind_vcpu_time()?;
        bind_port(port, timer_event);
        if let Some(hz) = tsc_hz(shared) {
            crate::time::set_tsc_hz(hz, crate::time::TscSource::XenPvclock);
        }
    }
    set_timer(clock_ns() + 1_000_000);
    Ok(())
}

/// Moves clock, timer and stolen time to Xen's (events must run).
/// `retire` stops the timer the backend used until now, with interrupts
/// masked, before the first Xen timer is armed.
pub fn start(retire: fn()) -> Result<(), XenError> {
    let shared = shared_info().ok_or(XenError::EINVAL)?;
    let port = bind_vcpu_time()?;
    let was_enabled = cpu::irq_save();
    let now = crate::time::tsc_clock_ns();
    XEN_CLOCK_OFFSET.store(system_time(shared).wrapping_sub(now), Ordering::Relaxed);
    XEN_TIME.store(true, Ordering::Release);
    retire();
    bind_port(port, timer_event);
    set_timer(clock_ns() + 1_000_000);
    cpu::irq_restore(was_enabled);
    log::info!("xen: clock from pvclock, timer on VIRQ_TIMER (port {port})");
    Ok(())
}

/// [`wallclock`] in nanoseconds since the epoch (the backends' hook).
pub fn wallclock_ns() -> Option<u64> {
    wallclock().map(|(seconds, nanos)| seconds * 1_000_000_000 + u64::from(nanos))
}

/// Wall-clock time (seconds, nanoseconds since the epoch): shared_info's
/// wallclock at Xen system time 0 plus the system time now.
pub fn wallclock() -> Option<(u64, u32)> {
    let shared = shared_info()?;
    loop {
        // SAFETY: mapped shared_info; wc_version is odd while Xen updates
        // the wallclock fields.
        let (before, sec, sec_hi, nsec, after) = unsafe {
            let version = &raw const (*shared).wc_version;
            let before = version.read_volatile();
            fence(Ordering::Acquire);
            let sec = (&raw const (*shared).wc_sec).read_volatile();
            let sec_hi = (&raw const (*shared).wc_sec_hi).read_volatile();
            let nsec = (&raw const (*shared).wc_nsec).read_volatile();
            fence(Ordering::Acquire);
            (before, sec, sec_hi, nsec, version.read_volatile())
        };
        if before & 1 == 0 && before == after {
            let base =
                (u128::from(sec_hi) << 32 | u128::from(sec)) * 1_000_000_000 + u128::from(nsec);
            let now = base + u128::from(system_time(shared));
            return Some(((now / 1_000_000_000) as u64, (now % 1_000_000_000) as u32));
        }
        core::hint::spin_loop();
    }
}
