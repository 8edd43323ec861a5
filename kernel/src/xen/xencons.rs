//! The Xen console: `HYPERVISOR_console_io` for dom0 (input on
//! `VIRQ_CONSOLE`), the PV console ring of `io/console.h` for a domU,
//! whose page and event channel come from the HVM params (PVH) or the
//! start info (PV). The ring arithmetic is `hv::xen::console`'s.

use super::events::{bind_port, notify_port};
use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use hv::xen::bindings::*;
use hv::xen::{calls, hypercall};

static DOM0: AtomicBool = AtomicBool::new(false);
/// Virtual address of the console ring page (domU), 0 if none.
static RING: AtomicU64 = AtomicU64::new(0);
/// Its physical address, 0 if it is none of ours (PV maps it in the image).
static RING_PHYS: AtomicU64 = AtomicU64::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);

/// Where the console goes: dom0 writes through console_io; a domU to the
/// ring at virtual `ring` (0: not reachable yet), physical `ring_phys`,
/// signalling `port`.
pub fn set(dom0: bool, ring: u64, ring_phys: u64, port: u32) {
    DOM0.store(dom0, Ordering::Relaxed);
    RING_PHYS.store(ring_phys, Ordering::Relaxed);
    RING_PORT.store(port, Ordering::Relaxed);
    RING.store(ring, Ordering::Release);
}

/// Whether this is dom0 (console_io; no console ring, no xenstore yet).
pub fn is_dom0() -> bool {
    DOM0.load(Ordering::Relaxed)
}

/// The console ring page, which must stay mapped at its direct-map
/// address when the kernel switches to its own page tables (the console
/// writes through it all along).
pub fn ring_page() -> Option<x86_64::PhysAddr> {
    match RING_PHYS.load(Ordering::Relaxed) {
        0 => None,
        phys => Some(x86_64::PhysAddr::new(phys)),
    }
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
        notify_port(port);
        if written == 0 {
            // Full: let the console daemon drain it.
            stalls += 1;
            core::hint::spin_loop();
        }
        bytes = &bytes[written..];
    }
}

/// The console op of both Xen backends.
pub extern "C" fn write(bytes: *const u8, len: usize) {
    // SAFETY: the `console_write` wrapper passes a slice's pointer and
    // length.
    let bytes = unsafe { core::slice::from_raw_parts(bytes, len) };
    if !hypercall::ready() {
        return;
    }
    if is_dom0() {
        // Nowhere to report a console that refuses output but itself.
        let _ = calls::console_write(bytes);
    } else {
        match RING.load(Ordering::Acquire) {
            0 => {}
            ring => ring_write(ring, bytes),
        }
    }
}

/// Input on a domU's console ring: take what the console daemon put in
/// `in`, hand it to the console, tell the daemon there is room.
fn ring_event(port: u32, _context: usize) {
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
    notify_port(port);
}

/// Input on dom0's console (VIRQ_CONSOLE): read it with console_io.
fn dom0_event(_port: u32, _context: usize) {
    let mut bytes = [0u8; 64];
    while let Ok(count) = calls::console_read(&mut bytes) {
        if count == 0 {
            break;
        }
        crate::console::push_input(&bytes[..count.min(bytes.len())]);
    }
}

/// Console input: a domU's ring events, or dom0's VIRQ_CONSOLE.
pub fn start_input() {
    if is_dom0() {
        match calls::evtchn_bind_virq(VIRQ_CONSOLE, 0) {
            Ok(port) => {
                crate::console::enable_platform_input();
                bind_port(port, dom0_event);
            }
            Err(error) => log::error!("xen: no console input (VIRQ_CONSOLE: {error})"),
        }
    } else {
        crate::console::enable_platform_input();
        bind_port(RING_PORT.load(Ordering::Relaxed), ring_event);
    }
}

/// After a resume in a new domain: the ring is the same page, its event
/// channel a new port; output and input go through that from now on.
pub fn resume(port: u32) {
    if is_dom0() {
        return;
    }
    RING_PORT.store(port, Ordering::Relaxed);
    bind_port(port, ring_event);
    // What was written while the port was gone waits in the ring.
    notify_port(port);
}
