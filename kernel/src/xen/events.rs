//! Event channels, 2-level ABI (`xen/include/public/event_channel.h`,
//! `xen.h`: the pending and mask bitmaps in shared_info, the per-vCPU
//! selector word). A handler is bound per port; the upcall scans the
//! bitmaps (`hv::xen::evtchn::scan`) and calls it in interrupt context.
//!
//! Delivery is the backend's: a PVH guest asks for the HVM callback vector
//! ([`start_upcalls_hvm`]), a PV guest registered its event callback at
//! entry. Every port stays masked until a handler is bound: Xen raises a
//! port as soon as it exists (the local end of `bind_interdomain` does).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hv::xen::bindings::*;
use hv::xen::calls;
use hv::xen::evtchn::{BITS, NR_PORTS};
use hv::xen::hypercall::XenError;

/// The vector Xen raises for pending events (HVM_PARAM_CALLBACK_IRQ,
/// delivery by vector, `xen/include/public/hvm/params.h`).
pub use crate::arch::traps::VECTOR_XEN_UPCALL;

/// Virtual address of the shared_info page, 0 until mapped.
static SHARED_INFO: AtomicU64 = AtomicU64::new(0);
/// Event handlers by port (function addresses, 0 = none), and the context
/// word each is called with.
static PORT_HANDLERS: [AtomicU64; NR_PORTS] = [const { AtomicU64::new(0) }; NR_PORTS];
static PORT_CONTEXTS: [AtomicU64; NR_PORTS] = [const { AtomicU64::new(0) }; NR_PORTS];
static UNBOUND_EVENTS: AtomicU64 = AtomicU64::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);

/// An event-channel handler, called with the port and the context word it
/// was bound with; runs in interrupt context.
pub type PortHandler = fn(u32, usize);

/// shared_info is mapped at `virt` (the PV entry maps Xen's frame there;
/// PVH puts it over a frame of its own).
pub fn set_shared_info(virt: u64) {
    SHARED_INFO.store(virt, Ordering::Release);
}

/// The mapped shared_info page, if it is mapped yet.
pub fn shared_info() -> Option<*mut shared_info> {
    match SHARED_INFO.load(Ordering::Acquire) {
        0 => None,
        virt => Some(virt as *mut shared_info),
    }
}

/// Whether event channels run (a domU after the scheduler started, a PV
/// guest once memory is up).
pub fn running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// Events are being delivered from now on.
pub fn set_running() {
    RUNNING.store(true, Ordering::Release);
}

/// Routes events on `port` to `handler` and unmasks the port.
pub fn bind_port(port: u32, handler: PortHandler) {
    bind_port_context(port, handler, 0);
}

/// Routes events on `port` to `handler(port, context)` and unmasks the
/// port; `false` for a port beyond the 2-level ABI's.
pub fn bind_port_context(port: u32, handler: PortHandler, context: usize) -> bool {
    let (Some(slot), Some(context_slot)) = (
        PORT_HANDLERS.get(port as usize),
        PORT_CONTEXTS.get(port as usize),
    ) else {
        return false;
    };
    context_slot.store(context as u64, Ordering::Release);
    slot.store(handler as usize as u64, Ordering::Release);
    unmask_port(port);
    true
}

/// Forgets `port`'s handler and masks it (the port stays open).
pub fn unbind_port(port: u32) {
    mask_port(port);
    if let Some(slot) = PORT_HANDLERS.get(port as usize) {
        slot.store(0, Ordering::Release);
    }
}

/// A new port that domain `remote` may bind to (EVTCHNOP_alloc_unbound).
pub fn alloc_unbound(remote: u16) -> Result<u32, XenError> {
    calls::evtchn_alloc_unbound(remote)
}

/// Connects a local port to `remote_port` of domain `remote`
/// (EVTCHNOP_bind_interdomain).
pub fn bind_interdomain(remote: u16, remote_port: u32) -> Result<u32, XenError> {
    calls::evtchn_bind_interdomain(remote, remote_port)
}

/// Closes a port and forgets its handler.
pub fn close_port(port: u32) -> Result<(), XenError> {
    if let Some(slot) = PORT_HANDLERS.get(port as usize) {
        slot.store(0, Ordering::Release);
    }
    calls::evtchn_close(port)
}

/// Masks a port: its events stay pending until [`unmask_port`].
pub fn mask_port(port: u32) {
    let Some(shared) = shared_info() else { return };
    if port as usize >= NR_PORTS {
        return;
    }
    let (word, bit) = (port as usize / BITS, port as usize % BITS);
    // SAFETY: an atomic OR on a word of the mapped shared_info mask array,
    // which the 2-level ABI lets the guest set directly.
    unsafe {
        AtomicU64::from_ptr(&raw mut (*shared).evtchn_mask[word])
            .fetch_or(1 << bit, Ordering::AcqRel)
    };
}

/// Unmasks a port (EVTCHNOP_unmask: Xen re-raises what is pending).
pub fn unmask_port(port: u32) {
    if let Err(error) = calls::evtchn_unmask(port) {
        log::error!("xen: port {port} not unmasked: {error}");
    }
}

/// Signals the other end of `port`.
pub fn notify_port(port: u32) {
    if let Err(error) = calls::evtchn_send(port) {
        // Only a closed or foreign port is refused: the peer is gone, and
        // what it would have been told no longer reaches anyone.
        log::debug!("xen: notify on port {port}: {error}");
    }
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
    let context = PORT_CONTEXTS[port as usize].load(Ordering::Acquire) as usize;
    handler(port, context);
}

/// The upcall: scan the pending bitmap (vCPU 0) and deliver each port.
pub fn upcall(_frame: &mut crate::arch::traps::TrapFrame) {
    let Some(shared) = shared_info() else { return };
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

/// After a resume in a new domain: every port of the old one is gone, so
/// every handler is forgotten and every port masked (the subsystems bind
/// their new ports again).
pub fn forget_ports() {
    for slot in &PORT_HANDLERS {
        slot.store(0, Ordering::Release);
    }
    mask_all_ports();
}

/// Masks every port: a port delivers only once [`bind_port`] gave it a
/// handler and unmasked it.
pub fn mask_all_ports() {
    let Some(shared) = shared_info() else { return };
    for word in 0..NR_PORTS / BITS {
        // SAFETY: a word of the mapped shared_info mask array, which the
        // 2-level ABI lets the guest set.
        unsafe {
            AtomicU64::from_ptr(&raw mut (*shared).evtchn_mask[word]).store(!0, Ordering::Release)
        };
    }
}

/// PVH: maps shared_info over a fresh frame of ours
/// (`XENMEM_add_to_physmap`).
pub fn map_shared_info_hvm() -> Result<(), XenError> {
    let frame = crate::mm::frames::alloc().ok_or(XenError::ENOMEM)?;
    // SAFETY: the frame is fresh from the allocator: nothing else refers
    // to what Xen replaces with shared_info.
    unsafe { calls::add_to_physmap(XENMAPSPACE_shared_info, 0, frame.pfn())? };
    set_shared_info(crate::mm::xlate::phys_to_virt(frame.start_address()).as_u64());
    Ok(())
}

/// PVH, after a resume: maps shared_info again over the frame it had (a
/// new domain has it nowhere; the same domain keeps it, and mapping it
/// again is harmless, as Linux does in both cases).
pub fn remap_shared_info_hvm() -> Result<(), XenError> {
    let virt = SHARED_INFO.load(Ordering::Acquire);
    let phys =
        crate::mm::xlate::virt_to_phys(x86_64::VirtAddr::new(virt)).ok_or(XenError::EINVAL)?;
    // SAFETY: the frame Xen's shared_info was mapped over at boot, which
    // nothing else uses.
    unsafe { calls::add_to_physmap(XENMAPSPACE_shared_info, 0, phys.as_u64() >> 12) }
}

/// PVH: starts event delivery through the callback vector (bind the ports
/// first, so no early event finds its port unbound).
pub fn start_upcalls_hvm() -> Result<(), XenError> {
    crate::arch::traps::set_handler(VECTOR_XEN_UPCALL, upcall);
    // SAFETY: the vector is the kernel's upcall vector, an interrupt gate
    // without an error code, whose handler was just installed.
    unsafe {
        calls::hvm_set_param(
            HVM_PARAM_CALLBACK_IRQ,
            calls::callback_via_vector(VECTOR_XEN_UPCALL),
        )
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

    fn loopback_handler(_port: u32, _context: usize) {
        LOOPBACK_EVENTS.fetch_add(1, Ordering::SeqCst);
        if let Some(event) = LOOPBACK.get() {
            event.set();
        }
    }

    #[ktest]
    fn event_channel_loopback_with_masking() -> TestResult {
        if !running() {
            // Not a Xen domU: no shared_info, so no wallclock either.
            kassert!(super::super::clock::wallclock().is_none());
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
        bind_port(b, |_, _| {});
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
}
