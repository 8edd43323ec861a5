//! Suspend and resume under Xen: what `xl save`/`xl restore`, `xl save -c`
//! and `xl migrate` need from a guest (Linux's `drivers/xen/manage.c` for
//! the order, `xen/include/public/sched.h` for the call).
//!
//! The toolstack asks through the suspend event channel this guest
//! allocates and publishes at `device/suspend/event-channel` (libxl
//! prefers it), or by writing `suspend` to `control/shutdown` (the
//! xenstore watch acknowledges by writing the node back empty). Either
//! wakes the `xen-suspend` thread, which:
//!
//! 1. holds the network stack still, so no thread touches the interface;
//! 2. waits for the xenstore request in flight and keeps the next one back;
//! 3. masks events (so the scheduler's timers and every handler stay
//!    parked), notes the clock, hands back the grant-table frames where
//!    the save needs it and lets the backend prepare (PV: the start info's
//!    store and console frames made pseudo-physical, shared_info unmapped);
//! 4. calls `SCHEDOP_shutdown(SHUTDOWN_suspend)`, which returns when the
//!    domain runs again: 0 in a new domain (restored or migrated), 1 in
//!    the same one (the suspend was cancelled: `xl save -c`, a failed save
//!    or migration). `XEN_ELFNOTE_SUSPEND_CANCEL` tells the toolstack this
//!    kernel takes the second answer;
//! 5. lets the backend restore (shared_info and event delivery mapped
//!    again, the P2M frame list rebuilt under PV), and in a new domain
//!    forgets every event channel, binds the timer, store and console
//!    ports again and continues the clock where it stopped; maps the grant
//!    frames again;
//! 6. unmasks events, lets xenstore run again (registering every watch
//!    again in a new domain) and reconnects the network interface, whose
//!    backend, event channel and grants died with the old domain.
//!
//! TCP connections survive when their peers wait: the interface's MAC and
//! address do not change, and smoltcp retransmits what was lost.

use super::{clock, events, grant, xencons, xenstore, SuspendParts};
use crate::arch::cpu;
use crate::sched::sync::Event;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use hv::xen::calls::{self, Resumed};
use spin::Once;

/// Set by the toolstack's request; the suspend thread waits on it.
static REQUEST: Once<Event> = Once::new();
/// How the last request came: 1 through control/shutdown, 2 through the
/// suspend event channel.
static ASKED_BY: AtomicU8 = AtomicU8::new(0);
/// This guest's end of the suspend event channel (0: none).
static SUSPEND_PORT: AtomicU32 = AtomicU32::new(0);
/// Suspends that resumed in a new domain, and cancelled ones.
static RESUMED_NEW: AtomicU64 = AtomicU64::new(0);
static RESUMED_SAME: AtomicU64 = AtomicU64::new(0);

fn request_event() -> &'static Event {
    REQUEST.call_once(|| Event::new(false, false))
}

/// The toolstack asked for a suspend through control/shutdown (the
/// watch acknowledged it).
pub fn request() {
    ASKED_BY.store(1, Ordering::Relaxed);
    request_event().set();
}

fn suspend_event(_port: u32, _context: usize) {
    ASKED_BY.store(2, Ordering::Relaxed);
    request_event().set();
}

/// Allocates the suspend event channel for the toolstack (domain 0) and
/// publishes it; without it libxl writes `control/shutdown` instead.
fn publish_suspend_channel() {
    let port = match events::alloc_unbound(0) {
        Ok(port) => port,
        Err(error) => {
            log::warn!("xen: no suspend event channel ({error}); control/shutdown serves");
            return;
        }
    };
    events::bind_port(port, suspend_event);
    match xenstore::write("device/suspend/event-channel", &format!("{port}")) {
        Ok(()) => SUSPEND_PORT.store(port, Ordering::Release),
        Err(error) => {
            log::warn!(
                "xen: suspend event channel not published ({error}); control/shutdown serves"
            );
            events::unbind_port(port);
            let _ = events::close_port(port);
        }
    }
}

/// Starts the suspend thread (a domU once the bus runs), with the
/// backend's parts.
pub fn start(parts: &'static SuspendParts) {
    if !xenstore::running() {
        return;
    }
    if let Err(error) = crate::sched::spawn("xen-suspend", move || run(parts)) {
        log::error!("xen: cannot start the suspend thread: {error:?}; the guest cannot be saved");
        return;
    }
    publish_suspend_channel();
}

fn run(parts: &'static SuspendParts) -> u64 {
    let request = request_event().clone();
    loop {
        request.wait(None);
        suspend_and_resume(parts);
    }
}

/// What the masked part of a suspend reports.
struct Outcome {
    resumed: Resumed,
    /// Messages gathered while events were masked (logged after).
    notes: Vec<String>,
}

impl crate::net::SuspendOutcome for Outcome {
    fn new_domain(&self) -> bool {
        self.resumed == Resumed::NewDomain
    }
}

/// One suspend: see the module documentation.
fn suspend_and_resume(parts: &SuspendParts) {
    let asked_by = match ASKED_BY.swap(0, Ordering::Relaxed) {
        1 => "control/shutdown",
        _ => "the suspend event channel",
    };
    log::info!("xen: suspending");
    let wall_before = clock::wallclock_ns();
    let clock_before = crate::vmops::ops::clock_ns();
    let outcome = crate::dev::suspend_around(|| suspend_masked(parts));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(why) => {
            log::error!("xen: suspend not done: {why}");
            return;
        }
    };
    for note in &outcome.notes {
        log::warn!("xen: {note}");
    }
    let new_domain = outcome.resumed == Resumed::NewDomain;
    // Wall time the domain spent stopped that the clock did not count.
    let clock_ran = crate::vmops::ops::clock_ns().saturating_sub(clock_before);
    let wall_ran = match (wall_before, clock::wallclock_ns()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => clock_ran,
    };
    let uncounted = wall_ran.saturating_sub(clock_ran);
    if new_domain {
        let count = RESUMED_NEW.fetch_add(1, Ordering::Relaxed) + 1;
        crate::time::clock_skipped(uncounted);
        let domid = xenstore::read("domid").unwrap_or_else(|_| String::from("?"));
        log::info!(
            "xen: resumed in a new domain after a request through {asked_by} (domid {domid}, #{count}), stopped for {} ms",
            uncounted / 1_000_000
        );
    } else {
        let count = RESUMED_SAME.fetch_add(1, Ordering::Relaxed) + 1;
        log::info!(
            "xen: suspend cancelled after a request through {asked_by} (#{count}), running on in the same domain after {} ms",
            wall_ran / 1_000_000
        );
    }
}

/// The part with events masked, around the hypercall; `Err` if the domain
/// could not be prepared (then it did not stop, and runs on as before).
fn suspend_masked(suspend: &SuspendParts) -> Result<Outcome, &'static str> {
    let store = xenstore::suspend();
    let was_enabled = cpu::irq_save();
    let clock = clock::suspend();
    let grant_frames = grant::table_frames();
    if let Some((first, frames)) = grant_frames {
        (suspend.release_grant_frames)(first, frames);
    }
    let mut notes = Vec::new();
    let prepared = (suspend.prepare)();
    let mut resumed = Resumed::Cancelled;
    let mut store_port = None;
    if let Ok(argument) = prepared {
        // SAFETY: prepared above, events masked; what a new domain lacks
        // is redone below.
        resumed = match unsafe { calls::sched_suspend(argument) } {
            Ok(resumed) => resumed,
            Err(error) => {
                // Xen refused: the domain never stopped.
                notes.push(format!("SHUTDOWN_suspend refused: {error}"));
                Resumed::Cancelled
            }
        };
        if let Err(why) = (suspend.restore)(resumed) {
            notes.push(String::from(why));
        }
    }
    let new_domain = resumed == Resumed::NewDomain;
    if new_domain {
        events::forget_ports();
        crate::dev::hal::forget_event_bindings();
        SUSPEND_PORT.store(0, Ordering::Release);
    }
    if let Some((first, frames)) = grant_frames {
        if let Err(error) = (suspend.remap_grant_frames)(first, frames) {
            notes.push(format!("grant table not mapped again: {error:?}"));
        }
    }
    if prepared.is_ok() {
        if let Err(error) = clock::resume(&clock, new_domain) {
            notes.push(format!("Xen time not started again: {error}"));
        }
    }
    if new_domain {
        match (suspend.ports)() {
            Ok((store, console)) => {
                xencons::resume(console);
                store_port = Some(store);
            }
            Err(error) => notes.push(format!("no xenstore or console port: {error}")),
        }
    }
    cpu::irq_restore(was_enabled);
    if let Some(store) = store {
        store.resume(store_port);
    }
    if let Err(why) = prepared {
        for note in notes {
            log::error!("xen: {note}");
        }
        return Err(why);
    }
    if new_domain {
        let refused = xenstore::rewatch();
        if refused != 0 {
            notes.push(format!("{refused} xenstore watch(es) lost"));
        }
        publish_suspend_channel();
    }
    Ok(Outcome { resumed, notes })
}

mod tests {
    use super::*;
    use crate::kassert;
    use crate::ktest::{ktest, TestResult};

    #[ktest]
    fn suspend_channel_is_published_on_a_domu() -> TestResult {
        if !xenstore::running() {
            kassert!(SUSPEND_PORT.load(Ordering::Acquire) == 0);
            return crate::ktest::not_applicable("not a Xen domU");
        }
        let port = SUSPEND_PORT.load(Ordering::Acquire);
        let published = xenstore::read("device/suspend/event-channel");
        kassert!(
            published.as_deref() == Ok(format!("{port}").as_str()),
            "published {published:?}, port {port}"
        );
        Ok(())
    }
}
