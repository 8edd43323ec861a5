//! The Xen PVH backend. A PVH guest runs in hardware-virtualised ring 0,
//! so the interrupt, halt and page-table ops are the native instructions,
//! and Xen emulates a local APIC for the timer. What a PVH machine lacks
//! comes from Xen: the console (`HYPERVISOR_console_io` for dom0, the PV
//! console ring for a domU, whose page and event channel are HVM params)
//! and shutdown (`SCHEDOP_shutdown`). The TSC rate comes from Xen's CPUID
//! time leaf (a PVH guest has no PIT to measure it against).
//!
//! Once event channels run (after the scheduler starts, on a domU), time
//! moves to Xen's own: the clock reads pvclock from vCPU 0's
//! `vcpu_time_info`, the timer is `VCPUOP_set_singleshot_timer` delivered
//! on `VIRQ_TIMER`, and stolen time comes from the runstate area; until
//! then the TSC and the emulated LAPIC serve.
//!
//! Much of this module serves the PV backend too (`xenpv.rs`): the console,
//! pvclock time and the single-shot timer, events, shutdown; grant tables
//! are in `grant.rs`, the xenstore client in `xenstore.rs`. A PVH dom0
//! moves to Xen's time and events the same way (it has no xenstore).

use super::{native, ShutdownReason};
use crate::arch::cpu;
use crate::arch::layout::{KERNEL_VMA, PHYS_MAP_BASE};
use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use hv::platform::Platform;
use hv::xen::bindings::*;
use hv::xen::hypercall::{self, XenError};
use vmops::{Backend, FnAddr, Op, OpImpl, OP_COUNT};

static DOM0: AtomicBool = AtomicBool::new(false);
/// Virtual address of the console ring page (domU), 0 if none.
static RING: AtomicU64 = AtomicU64::new(0);
static RING_PHYS: AtomicU64 = AtomicU64::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);

/// Why the backend could not start.
#[derive(Debug)]
pub enum XenInitError {
    NotXen,
    NoHypercallPage,
    Param(u32, XenError),
}

impl core::fmt::Display for XenInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            XenInitError::NotXen => write!(f, "not running on Xen"),
            XenInitError::NoHypercallPage => write!(f, "Xen offers no hypercall page"),
            XenInitError::Param(index, error) => write!(f, "HVM param {index}: {error}"),
        }
    }
}

/// Hypercall `hypercall` with command `cmd` and one argument structure,
/// the shape of most Xen operations (`HYPERVISOR_*_op(cmd, arg)`).
pub(super) fn xen_op<T>(hypercall: u32, cmd: u32, arg: &mut T) -> Result<u64, XenError> {
    // SAFETY: callers pass, for each (hypercall, cmd), the argument
    // structure Xen's interface defines for it (xen/include/public/*.h),
    // which lives for the call; Xen reads and fills only that structure.
    unsafe { hypercall::call(hypercall, u64::from(cmd), (arg as *mut T) as u64, 0, 0, 0) }
}

/// `HYPERVISOR_vcpu_op(cmd, vcpu 0, arg)`.
pub(super) fn vcpu_op<T>(cmd: u32, arg: &mut T) -> Result<u64, XenError> {
    // SAFETY: as in `xen_op`: `arg` is the structure VCPUOP `cmd` takes
    // (xen/include/public/vcpu.h), for vCPU 0, the only one.
    unsafe {
        hypercall::call(
            __HYPERVISOR_vcpu_op,
            u64::from(cmd),
            0,
            (arg as *mut T) as u64,
            0,
            0,
        )
    }
}

fn hvm_get_param(index: u32) -> Result<u64, XenError> {
    let mut param = xen_hvm_param {
        domid: DOMID_SELF,
        pad: 0,
        index,
        value: 0,
    };
    xen_op(__HYPERVISOR_hvm_op, HVMOP_get_param, &mut param)?;
    Ok(param.value)
}

/// Installs the hypercall page and finds the console. `start_flags` are
/// the PVH start info's `SIF_*` flags.
pub fn init(platform: Platform, start_flags: u32) -> Result<(), XenInitError> {
    let Platform::Xen { base, .. } = platform else {
        return Err(XenInitError::NotXen);
    };
    let leaf = cpu::cpuid(base + 2);
    if leaf.eax == 0 {
        return Err(XenInitError::NoHypercallPage);
    }
    // SAFETY: the MSR is the one Xen's CPUID leaf names, and the page's
    // physical address is its link address less KERNEL_VMA.
    unsafe { hypercall::install(leaf.ebx, hypercall::page_address() - KERNEL_VMA) };

    // Xen's time leaf (base + 3, subleaf 0): ECX = TSC frequency in kHz.
    let tsc_khz = core::arch::x86_64::__cpuid_count(base + 3, 0).ecx;
    if tsc_khz != 0 {
        crate::time::set_tsc_hz(u64::from(tsc_khz) * 1000, crate::time::TscSource::XenCpuid);
    }
    // dom0 says so in the start info; a domU has a console ring. Where
    // neither holds (no ring offered), console_io is the only way out.
    let ring = if start_flags & SIF_INITDOMAIN != 0 {
        None
    } else {
        let pfn = hvm_get_param(HVM_PARAM_CONSOLE_PFN)
            .map_err(|e| XenInitError::Param(HVM_PARAM_CONSOLE_PFN, e))?;
        let port = hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN)
            .map_err(|e| XenInitError::Param(HVM_PARAM_CONSOLE_EVTCHN, e))?;
        (pfn != 0).then_some((pfn, port))
    };
    let dom0 = ring.is_none();
    DOM0.store(dom0, Ordering::Relaxed);
    if let Some((pfn, port)) = ring {
        // The boot page tables map the first 4 GiB at PHYS_MAP_BASE; after
        // paging is up `after_memory` maps the page explicitly.
        RING_PHYS.store(pfn << 12, Ordering::Relaxed);
        RING_PORT.store(port as u32, Ordering::Relaxed);
        if pfn << 12 < crate::arch::layout::BOOT_PHYS_MAP_LIMIT {
            RING.store(PHYS_MAP_BASE + (pfn << 12), Ordering::Release);
        }
    }
    // (No heap yet: plain formatting only.)
    log::info!(
        "xen: hypercall page at {:#x}, {}",
        hypercall::page_address() - KERNEL_VMA,
        if start_flags & SIF_INITDOMAIN != 0 {
            "dom0"
        } else {
            "domU"
        }
    );
    match ring {
        Some((pfn, port)) => log::info!("xen: console ring at pfn {pfn:#x}, event channel {port}"),
        None => log::info!("xen: console through console_io"),
    }
    Ok(())
}

/// Xen PV: the console as the start info gives it (dom0: console_io; a
/// domU: the ring at virtual `ring` and its event channel).
pub(super) fn set_console(dom0: bool, ring: u64, port: u32) {
    DOM0.store(dom0, Ordering::Relaxed);
    RING_PORT.store(port, Ordering::Relaxed);
    RING.store(ring, Ordering::Release);
}

/// Xen PV: shared_info is mapped at `virt` (by the PV entry, before
/// events can arrive).
pub(super) fn set_shared_info(virt: u64) {
    SHARED_INFO.store(virt, Ordering::Release);
}

/// Fills `map` with the memory map Xen keeps for this domain
/// (`XENMEM_memory_map`): how a PVH dom0, whose start info has none, learns
/// its memory. Returns the number of entries.
pub fn memory_map(map: &mut [hv::xen::E820Entry]) -> Result<usize, XenError> {
    let mut request = xen_memory_map {
        nr_entries: map.len() as u32,
        buffer: __guest_handle_void {
            p: map.as_mut_ptr().cast(),
        },
    };
    xen_op(__HYPERVISOR_memory_op, XENMEM_memory_map, &mut request)?;
    Ok((request.nr_entries as usize).min(map.len()))
}

/// The console ring page, which must stay mapped at its direct-map
/// address when the kernel switches to its own page tables (the console
/// writes through it all along).
pub fn shared_page() -> Option<u64> {
    match RING_PHYS.load(Ordering::Relaxed) {
        0 => None,
        phys => Some(phys),
    }
}

fn notify(port: u32) {
    let mut send = evtchn_send { port };
    let _ = xen_op(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &mut send);
}

fn ring_write(ring: u64, mut bytes: &[u8]) {
    let port = RING_PORT.load(Ordering::Relaxed);
    let ring = ring as *mut xencons_interface;
    let mut stalls = 0;
    while !bytes.is_empty() && stalls < 1000 {
        // SAFETY: `ring` maps the console page Xen shares with this guest;
        // the indices are read and written volatile, and the out array is
        // only written where the ring arithmetic says the guest owns it.
        let written = unsafe {
            let cons = (&raw const (*ring).out_cons).read_volatile();
            let prod = (&raw const (*ring).out_prod).read_volatile();
            fence(Ordering::Acquire);
            let (written, new_prod) = hv::xen::console::write_out(&mut *ring, prod, cons, bytes);
            fence(Ordering::Release);
            (&raw mut (*ring).out_prod).write_volatile(new_prod);
            written
        };
        notify(port);
        if written == 0 {
            // Full: let the console daemon drain it.
            stalls += 1;
            core::hint::spin_loop();
        }
        bytes = &bytes[written..];
    }
}

pub(super) extern "C" fn console_write(bytes: *const u8, len: usize) {
    // SAFETY: the `console_write` wrapper passes a slice's pointer and
    // length.
    let bytes = unsafe { core::slice::from_raw_parts(bytes, len) };
    if !hypercall::ready() {
        return;
    }
    if DOM0.load(Ordering::Relaxed) {
        // SAFETY: CONSOLEIO_write reads `len` bytes at `bytes`.
        let _ = unsafe {
            hypercall::call(
                __HYPERVISOR_console_io,
                u64::from(CONSOLEIO_write),
                len as u64,
                bytes.as_ptr() as u64,
                0,
                0,
            )
        };
    } else {
        match RING.load(Ordering::Acquire) {
            0 => {}
            ring => ring_write(ring, bytes),
        }
    }
}

// ---- Time: pvclock, the single-shot timer, stolen time.

/// Set once pvclock and VIRQ_TIMER are in use.
static XEN_TIME: AtomicBool = AtomicBool::new(false);
/// Xen system time minus the kernel's clock at the switch, so the
/// kernel's clock runs on without a jump.
static XEN_CLOCK_OFFSET: AtomicU64 = AtomicU64::new(0);
static RUNSTATE: AtomicU64 = AtomicU64::new(0);

/// A consistent read of vCPU 0's pvclock, in Xen system time.
pub(super) fn xen_system_time(shared: *mut shared_info) -> u64 {
    use hv::pvclock::Pvclock;
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
            return snapshot.ns_at(tsc);
        }
        core::hint::spin_loop();
    }
}

pub(super) extern "C" fn clock_ns() -> u64 {
    let shared = SHARED_INFO.load(Ordering::Acquire) as *mut shared_info;
    if XEN_TIME.load(Ordering::Acquire) && !shared.is_null() {
        xen_system_time(shared).wrapping_sub(XEN_CLOCK_OFFSET.load(Ordering::Relaxed))
    } else {
        crate::time::tsc_clock_ns()
    }
}

pub(super) extern "C" fn set_timer(deadline_ns: u64) {
    if !XEN_TIME.load(Ordering::Acquire) {
        // Before Xen time starts (a PV guest starts it before anything arms
        // a timer, and has no local APIC): the emulated LAPIC.
        if !crate::mm::xlate::is_xen_pv() {
            crate::arch::apic::arm_oneshot(deadline_ns, crate::time::tsc_clock_ns());
        }
        return;
    }
    if deadline_ns == u64::MAX {
        // SAFETY: VCPUOP_stop_singleshot_timer takes no argument struct.
        let _ = unsafe {
            hypercall::call(
                __HYPERVISOR_vcpu_op,
                u64::from(VCPUOP_stop_singleshot_timer),
                0,
                0,
                0,
                0,
            )
        };
        return;
    }
    let mut timer = vcpu_set_singleshot_timer {
        timeout_abs_ns: deadline_ns.wrapping_add(XEN_CLOCK_OFFSET.load(Ordering::Relaxed)),
        // Not VCPU_SSHOTTMR_future: a deadline already past fires at once.
        flags: 0,
    };
    let _ = vcpu_op(VCPUOP_set_singleshot_timer, &mut timer);
}

/// Stolen time: runnable or offline while Xen ran something else.
pub(super) extern "C" fn steal_ns() -> u64 {
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

fn timer_event(_port: u32) {
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

/// Moves clock, timer and stolen time to Xen's (events must run).
pub(super) fn start_xen_time() -> Result<(), XenError> {
    let shared = SHARED_INFO.load(Ordering::Acquire) as *mut shared_info;
    if shared.is_null() {
        return Err(XenError(-22));
    }
    let mut bind = evtchn_bind_virq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    xen_op(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, &mut bind)?;
    let mut area = vcpu_register_runstate_memory_area {
        addr: vcpu_register_runstate_memory_area__bindgen_ty_1 {
            v: RUNSTATE_AREA.0.get(),
        },
    };
    match vcpu_op(VCPUOP_register_runstate_memory_area, &mut area) {
        Ok(_) => RUNSTATE.store(RUNSTATE_AREA.0.get() as u64, Ordering::Release),
        Err(error) => log::warn!("xen: no runstate area ({error}); no stolen time"),
    }
    // A PV vCPU starts with Xen's 100 Hz periodic timer on VIRQ_TIMER
    // (while it runs); a tickless kernel wants only its single-shot one.
    // SAFETY: VCPUOP_stop_periodic_timer takes no argument struct.
    if let Err(error) = unsafe {
        hypercall::call(
            __HYPERVISOR_vcpu_op,
            u64::from(VCPUOP_stop_periodic_timer),
            0,
            0,
            0,
            0,
        )
    } {
        log::warn!("xen: periodic timer not stopped ({error}); ticks while running");
    }
    let was_enabled = cpu::irq_save();
    let now = crate::time::tsc_clock_ns();
    XEN_CLOCK_OFFSET.store(xen_system_time(shared).wrapping_sub(now), Ordering::Relaxed);
    XEN_TIME.store(true, Ordering::Release);
    // The LAPIC timer retires; the scheduler re-arms through Xen.
    if !crate::mm::xlate::is_xen_pv() {
        crate::arch::apic::arm_oneshot(u64::MAX, 0);
    }
    bind_port(bind.port, timer_event);
    set_timer(clock_ns() + 1_000_000);
    cpu::irq_restore(was_enabled);
    log::info!(
        "xen: clock from pvclock, timer on VIRQ_TIMER (port {})",
        bind.port
    );
    Ok(())
}

pub(super) extern "C" fn shutdown(reason: u64) {
    let reason = match ShutdownReason::decode(reason) {
        ShutdownReason::PowerOff | ShutdownReason::Exit(crate::ktest::EXIT_PASSED) => {
            SHUTDOWN_poweroff
        }
        ShutdownReason::Reboot => SHUTDOWN_reboot,
        ShutdownReason::Crash | ShutdownReason::Exit(_) => SHUTDOWN_crash,
    };
    let mut arg = sched_shutdown { reason };
    let _ = xen_op(__HYPERVISOR_sched_op, SCHEDOP_shutdown, &mut arg);
}

const fn build() -> Backend {
    let mut ops = [OpImpl::MISSING; OP_COUNT];
    native::instruction_ops(&mut ops);
    native::kernel_services(&mut ops);
    ops[Op::ConsoleWrite as usize] = OpImpl::function(FnAddr(console_write as *const ()));
    ops[Op::ClockNs as usize] = OpImpl::function(FnAddr(clock_ns as *const ()));
    ops[Op::SetTimer as usize] = OpImpl::function(FnAddr(set_timer as *const ()));
    ops[Op::StealNs as usize] = OpImpl::function(FnAddr(steal_ns as *const ()));
    ops[Op::Shutdown as usize] = OpImpl::function(FnAddr(shutdown as *const ()));
    Backend {
        name: "xen-pvh",
        ops,
    }
}

pub static BACKEND: Backend = build();

// ---- Event channels (2-level ABI) through the HVM callback vector.

/// The vector Xen raises for pending events (HVM_PARAM_CALLBACK_IRQ,
/// delivery type 2 = vector, `xen/include/public/hvm/params.h`).
pub use crate::arch::traps::VECTOR_XEN_UPCALL;
const CALLBACK_TYPE_VECTOR: u64 = 2 << 56;

/// Virtual address of the shared_info page, 0 until mapped.
static SHARED_INFO: AtomicU64 = AtomicU64::new(0);
/// Event handlers by port (function addresses, 0 = none).
static PORT_HANDLERS: [AtomicU64; hv::xen::evtchn::NR_PORTS] =
    [const { AtomicU64::new(0) }; hv::xen::evtchn::NR_PORTS];
static UNBOUND_EVENTS: AtomicU64 = AtomicU64::new(0);

/// An event-channel handler; runs in interrupt context.
pub type PortHandler = fn(u32);

fn hvm_set_param(index: u32, value: u64) -> Result<(), XenError> {
    let mut param = xen_hvm_param {
        domid: DOMID_SELF,
        pad: 0,
        index,
        value,
    };
    xen_op(__HYPERVISOR_hvm_op, HVMOP_set_param, &mut param).map(|_| ())
}

/// Maps shared_info over a frame of ours (`XENMEM_add_to_physmap`) and
/// routes event upcalls to [`VECTOR_XEN_UPCALL`].
fn map_shared_info() -> Result<(), XenError> {
    let frame = crate::mm::frames::alloc().ok_or(XenError(-12))?;
    let phys = frame.start_address().as_u64();
    add_to_physmap(XENMAPSPACE_shared_info, 0, phys >> 12)?;
    SHARED_INFO.store(PHYS_MAP_BASE + phys, Ordering::Release);
    Ok(())
}

/// Starts event delivery (bind the ports first, so no early event finds
/// its port unbound).
fn start_upcalls() -> Result<(), XenError> {
    crate::arch::traps::set_handler(VECTOR_XEN_UPCALL, upcall);
    hvm_set_param(
        HVM_PARAM_CALLBACK_IRQ,
        CALLBACK_TYPE_VECTOR | u64::from(VECTOR_XEN_UPCALL),
    )
}

/// `XENMEM_add_to_physmap`: puts Xen's `space` page `idx` at guest frame
/// `gpfn` (shared_info, grant-table frames).
pub fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<(), XenError> {
    let mut request = xen_add_to_physmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn,
    };
    xen_op(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &mut request).map(|_| ())
}

/// Routes events on `port` to `handler` and unmasks the port.
pub fn bind_port(port: u32, handler: PortHandler) {
    if let Some(slot) = PORT_HANDLERS.get(port as usize) {
        slot.store(handler as usize as u64, Ordering::Release);
        let mut unmask = evtchn_unmask { port };
        let _ = xen_op(__HYPERVISOR_event_channel_op, EVTCHNOP_unmask, &mut unmask);
    }
}

fn event_channel_op<T>(cmd: u32, arg: &mut T) -> Result<(), XenError> {
    xen_op(__HYPERVISOR_event_channel_op, cmd, arg).map(|_| ())
}

/// A new port that domain `remote` may bind to (EVTCHNOP_alloc_unbound).
pub fn alloc_unbound(remote: u16) -> Result<u32, XenError> {
    let mut request = evtchn_alloc_unbound {
        dom: DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    event_channel_op(EVTCHNOP_alloc_unbound, &mut request)?;
    Ok(request.port)
}

/// Connects a local port to `remote_port` of domain `remote`
/// (EVTCHNOP_bind_interdomain).
pub fn bind_interdomain(remote: u16, remote_port: u32) -> Result<u32, XenError> {
    let mut request = evtchn_bind_interdomain {
        remote_dom: remote,
        remote_port,
        local_port: 0,
    };
    event_channel_op(EVTCHNOP_bind_interdomain, &mut request)?;
    Ok(request.local_port)
}

/// Closes a port and forgets its handler.
pub fn close_port(port: u32) -> Result<(), XenError> {
    if let Some(slot) = PORT_HANDLERS.get(port as usize) {
        slot.store(0, Ordering::Release);
    }
    let mut request = evtchn_close { port };
    event_channel_op(EVTCHNOP_close, &mut request)
}

/// Masks a port: its events stay pending until [`unmask_port`].
pub fn mask_port(port: u32) {
    let shared = SHARED_INFO.load(Ordering::Acquire) as *mut shared_info;
    if shared.is_null() || port as usize >= hv::xen::evtchn::NR_PORTS {
        return;
    }
    let (word, bit) = (
        port as usize / hv::xen::evtchn::BITS,
        port as usize % hv::xen::evtchn::BITS,
    );
    // SAFETY: an atomic OR on a word of the mapped shared_info mask array,
    // which the 2-level ABI lets the guest set directly.
    unsafe {
        AtomicU64::from_ptr(&raw mut (*shared).evtchn_mask[word])
            .fetch_or(1 << bit, Ordering::AcqRel)
    };
}

/// Unmasks a port (EVTCHNOP_unmask: Xen re-raises what is pending).
pub fn unmask_port(port: u32) {
    let mut unmask = evtchn_unmask { port };
    let _ = event_channel_op(EVTCHNOP_unmask, &mut unmask);
}

/// Whether event channels run (a domU after the scheduler started).
pub fn events_running() -> bool {
    EVENTS.load(Ordering::Acquire)
}

static EVENTS: AtomicBool = AtomicBool::new(false);

/// Wall-clock time (seconds, nanoseconds since the epoch): shared_info's
/// wallclock at Xen system time 0 plus the system time now.
pub fn wallclock() -> Option<(u64, u32)> {
    let shared = SHARED_INFO.load(Ordering::Acquire) as *mut shared_info;
    if shared.is_null() {
        return None;
    }
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
            let now = base + u128::from(xen_system_time(shared));
            return Some(((now / 1_000_000_000) as u64, (now % 1_000_000_000) as u32));
        }
        core::hint::spin_loop();
    }
}

/// Signals the other end of `port`.
pub fn notify_port(port: u32) {
    notify(port);
}

fn dispatch(port: u32) {
    let handler = PORT_HANDLERS
        .get(port as usize)
        .map_or(0, |slot| slot.load(Ordering::Acquire));
    if handler == 0 {
        // An event nobody bound: count it, say so once in a while.
        if UNBOUND_EVENTS
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1000)
        {
            log::warn!("xen: event on unbound port {port}; ignored");
        }
        return;
    }
    // SAFETY: only `bind_port` stores non-zero values: PortHandler
    // addresses.
    let handler: PortHandler =
        unsafe { core::mem::transmute::<usize, PortHandler>(handler as usize) };
    handler(port);
}

/// The upcall: scan the pending bitmap (vCPU 0) and deliver each port.
pub(super) fn upcall(_frame: &mut crate::arch::traps::TrapFrame) {
    let shared = SHARED_INFO.load(Ordering::Acquire) as *mut shared_info;
    if shared.is_null() {
        return;
    }
    // SAFETY: `shared` maps this domain's shared_info page; the fields are
    // accessed as Xen documents: the upcall flag cleared first, the
    // selector and pending words taken with atomic read-modify-writes.
    unsafe {
        let vcpu = &raw mut (*shared).vcpu_info[0];
        (&raw mut (*vcpu).evtchn_upcall_pending).write_volatile(0);
        let selector =
            AtomicU64::from_ptr(&raw mut (*vcpu).evtchn_pending_sel).swap(0, Ordering::AcqRel);
        hv::xen::evtchn::scan(
            selector,
            |word| {
                let pending = AtomicU64::from_ptr(&raw mut (*shared).evtchn_pending[word]);
                let mask = (&raw const (*shared).evtchn_mask[word]).read_volatile();
                let bits = pending.load(Ordering::Acquire) & !mask;
                pending.fetch_and(!bits, Ordering::AcqRel);
                bits
            },
            dispatch,
        );
    }
}

/// Input on a domU's console ring: take what the console daemon put in
/// `in`, hand it to the console, tell the daemon there is room.
pub(super) fn console_event(port: u32) {
    let ring = RING.load(Ordering::Acquire) as *mut xencons_interface;
    if ring.is_null() {
        return;
    }
    let mut bytes = [0u8; 64];
    loop {
        // SAFETY: `ring` maps the console page Xen shares with this guest;
        // the indices are read and written volatile, and `in` is only read
        // where the ring arithmetic says the daemon has written.
        let count = unsafe {
            let cons = (&raw const (*ring).in_cons).read_volatile();
            let prod = (&raw const (*ring).in_prod).read_volatile();
            fence(Ordering::Acquire);
            let (count, new_cons) = hv::xen::console::read_in(&*ring, cons, prod, &mut bytes);
            fence(Ordering::Release);
            (&raw mut (*ring).in_cons).write_volatile(new_cons);
            count
        };
        if count == 0 {
            break;
        }
        crate::console::push_input(&bytes[..count]);
    }
    notify(port);
}

/// Input on dom0's console (VIRQ_CONSOLE): read it with console_io.
fn dom0_console_event(_port: u32) {
    let mut bytes = [0u8; 64];
    loop {
        // SAFETY: CONSOLEIO_read writes at most `len` bytes at the buffer.
        let read = unsafe {
            hypercall::call(
                __HYPERVISOR_console_io,
                u64::from(CONSOLEIO_read),
                bytes.len() as u64,
                bytes.as_mut_ptr() as u64,
                0,
                0,
            )
        };
        match read {
            Ok(count) if count > 0 => {
                crate::console::push_input(&bytes[..(count as usize).min(bytes.len())])
            }
            _ => break,
        }
    }
}

/// dom0: console input through VIRQ_CONSOLE and console_io.
fn start_dom0_console_input() -> Result<(), XenError> {
    let mut bind = evtchn_bind_virq {
        virq: VIRQ_CONSOLE,
        vcpu: 0,
        port: 0,
    };
    xen_op(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, &mut bind)?;
    crate::console::enable_platform_input();
    bind_port(bind.port, dom0_console_event);
    Ok(())
}

/// Masks every port: a port delivers only once [`bind_port`] gave it a
/// handler and unmasked it (Xen raises a port as soon as it is bound, e.g.
/// the local end of `bind_interdomain`).
fn mask_all_ports() {
    let shared = SHARED_INFO.load(Ordering::Acquire) as *mut shared_info;
    if shared.is_null() {
        return;
    }
    for word in 0..hv::xen::evtchn::NR_PORTS / hv::xen::evtchn::BITS {
        // SAFETY: a word of the mapped shared_info mask array, which the
        // 2-level ABI lets the guest set.
        unsafe {
            AtomicU64::from_ptr(&raw mut (*shared).evtchn_mask[word]).store(!0, Ordering::Release)
        };
    }
}

/// Xen PV, once memory is up: event delivery and Xen time, before the
/// scheduler arms its first timer (a PV guest has no other timer).
pub(super) fn start_events_pv() {
    mask_all_ports();
    crate::arch::traps::set_handler(VECTOR_XEN_UPCALL, upcall);
    EVENTS.store(true, Ordering::Release);
    if let Err(error) = start_xen_time() {
        log::error!("xen: no Xen time ({error}): no timer interrupts");
    }
}

/// After the scheduler runs: events and Xen time (PVH; a PV guest has
/// them already), and for a domU xenstore, the watch that lets `xl
/// shutdown` and `xl reboot` reach the kernel, and grant tables.
pub fn after_threads() {
    let pv = crate::mm::xlate::is_xen_pv();
    let dom0 = DOM0.load(Ordering::Relaxed);
    if !pv {
        if let Err(error) = map_shared_info() {
            log::error!("xen: event channels unavailable: {error}");
            return;
        }
        mask_all_ports();
    }
    if !dom0 {
        crate::console::enable_platform_input();
        bind_port(RING_PORT.load(Ordering::Relaxed), console_event);
    }
    let store = if dom0 {
        // dom0 starts before xenstored: no ring yet, no console ring.
        Ok((0, 0))
    } else if pv {
        Ok(super::xenpv::store())
    } else {
        hvm_get_param(HVM_PARAM_STORE_PFN)
            .and_then(|pfn| Ok((pfn << 12, hvm_get_param(HVM_PARAM_STORE_EVTCHN)? as u32)))
            .map(|(phys, port)| {
                if phys == 0 {
                    (0, port)
                } else {
                    // Not necessarily RAM: map it.
                    (crate::mm::map_phys(phys, 4096, true), port)
                }
            })
    };
    match store {
        Ok((ring, port)) if ring != 0 => super::xenstore::start(ring, port),
        Ok(_) if dom0 => {}
        Ok(_) => log::warn!("xen: no xenstore page"),
        Err(error) => log::error!("xen: xenstore params: {error}"),
    }
    if !pv {
        if let Err(error) = start_upcalls() {
            log::error!("xen: no event upcalls ({error}); xenstore polls");
            return;
        }
        EVENTS.store(true, Ordering::Release);
    }
    if let Some((seconds, _)) = wallclock() {
        log::info!("xen: wallclock {}", sanos_kernel::civil::from_unix(seconds));
    }
    if !pv {
        if let Err(error) = start_xen_time() {
            log::error!("xen: keeping the TSC and LAPIC for time: {error}");
        }
    }
    if dom0 {
        if let Err(error) = start_dom0_console_input() {
            log::error!("xen: no console input (VIRQ_CONSOLE: {error})");
        }
        return;
    }
    if let Err(error) = super::grant::init() {
        log::error!("xen: no grant table: {error:?}");
    }
}

mod tests {
    use super::*;
    use crate::ktest::{ktest, TestResult};
    use crate::sched::sync::Event;
    use crate::{kassert, kassert_eq};
    use core::sync::atomic::AtomicUsize;
    use spin::Once;

    static LOOPBACK: Once<Event> = Once::new();
    static LOOPBACK_EVENTS: AtomicUsize = AtomicUsize::new(0);

    fn loopback_handler(_port: u32) {
        LOOPBACK_EVENTS.fetch_add(1, Ordering::SeqCst);
        if let Some(event) = LOOPBACK.get() {
            event.set();
        }
    }

    #[ktest]
    fn event_channel_loopback_with_masking() -> TestResult {
        if !events_running() {
            // Not a Xen domU: no shared_info, so no wallclock either.
            kassert!(wallclock().is_none());
            return Ok(());
        }
        let arrived = LOOPBACK.call_once(|| Event::new(false, false)).clone();
        // Two ends of one channel inside this domain.
        let a = alloc_unbound(DOMID_SELF);
        kassert!(a.is_ok(), "alloc_unbound: {a:?}");
        let Ok(a) = a else { return Ok(()) };
        let b = bind_interdomain(DOMID_SELF, a);
        kassert!(b.is_ok(), "bind_interdomain: {b:?}");
        let Ok(b) = b else { return Ok(()) };
        bind_port(a, loopback_handler);
        // Closing one end signals the other: give it a quiet handler.
        bind_port(b, |_| {});
        let before = LOOPBACK_EVENTS.load(Ordering::SeqCst);
        notify_port(b);
        kassert!(
            arrived.wait(Some(1_000_000_000)),
            "no event on the loopback port"
        );
        kassert_eq!(LOOPBACK_EVENTS.load(Ordering::SeqCst), before + 1);
        // Masked: the event stays pending; unmasking delivers it.
        mask_port(a);
        notify_port(b);
        kassert!(!arrived.wait(Some(20_000_000)), "a masked port delivered");
        unmask_port(a);
        kassert!(
            arrived.wait(Some(1_000_000_000)),
            "unmasking lost the pending event"
        );
        kassert_eq!(LOOPBACK_EVENTS.load(Ordering::SeqCst), before + 2);
        // Closing one end signals the other: mask both first, so nothing
        // arrives for a port whose handler is gone.
        mask_port(a);
        mask_port(b);
        kassert_eq!(close_port(b), Ok(()));
        kassert_eq!(close_port(a), Ok(()));
        // An unknown port is refused with an error, not a crash.
        kassert!(close_port(4000).is_err());
        Ok(())
    }

    #[ktest]
    fn wallclock_is_plausible_where_xen_gives_it() -> TestResult {
        match wallclock() {
            Some((seconds, nanoseconds)) => {
                // After 2020-01-01 and before 2200.
                kassert!(
                    (1_577_836_800..7_258_118_400).contains(&seconds),
                    "wallclock {seconds}"
                );
                kassert!(nanoseconds < 1_000_000_000);
            }
            None => kassert!(!events_running(), "events run but no wallclock"),
        }
        Ok(())
    }
}
