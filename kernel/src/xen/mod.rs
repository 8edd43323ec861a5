//! The Xen bus services both Xen backends share (`xen/include/public/`):
//! [`events`] (event channels), [`time`] (pvclock, the single-shot timer,
//! stolen time, the wall clock), [`console`] (console_io and the console
//! ring), [`xenstore`] (the store client and the shutdown watch),
//! [`grant`] (grant tables) and [`suspend`] (`xl save`, `xl restore`,
//! `xl migrate`). Device front ends (netfront) reach them through the
//! driver model's Xen bus.
//!
//! What differs between PV and PVH (how shared_info, the store ring and the
//! grant-table frames are mapped, how events are delivered) is the
//! backend's: `backend::xen_pvh` and `backend::xen_pv` call in here with
//! their parts. Hypercalls are `hv::xen::calls`'.

pub mod clock;
pub mod events;
pub mod grant;
pub mod suspend;
pub mod xencons;
pub mod xenstore;

use crate::backend::ShutdownReason;
use hv::xen::bindings::*;
use hv::xen::calls;
use hv::xen::hypercall::XenError;
use pure::boot::bootinfo::BootInfo;

/// The shutdown op of both Xen backends: `SCHEDOP_shutdown` with the
/// reason the toolstack acts on. An exit status becomes a power-off when
/// it means success (the tests passed, or a program exited with 0) and a
/// crash otherwise: Xen carries no status.
pub extern "C" fn shutdown(reason: u64) {
    let reason = match ShutdownReason::decode(reason) {
        ShutdownReason::PowerOff
        | ShutdownReason::Exit(crate::ktest::EXIT_PASSED)
        | ShutdownReason::Exit(0) => SHUTDOWN_poweroff,
        ShutdownReason::Reboot => SHUTDOWN_reboot,
        ShutdownReason::Crash | ShutdownReason::Exit(_) => SHUTDOWN_crash,
    };
    // Returns only if Xen refused; the caller halts the vCPU then.
    if let Err(error) = calls::sched_shutdown(reason) {
        crate::console::emergency_write_fmt(format_args!("xen: shutdown refused: {error}\n"));
    }
}

/// Completes an empty memory map from the one Xen keeps for this domain
/// (`XENMEM_memory_map`): a PVH dom0's start info has none.
pub fn fill_memory_map(boot: &mut BootInfo<'_>) {
    if !boot.memory.is_empty() {
        return;
    }
    let mut entries = [hv::xen::E820Entry::default(); 64];
    match calls::memory_map(&mut entries) {
        Ok(count) => {
            for entry in &entries[..count] {
                let (addr, size, kind) = (entry.addr, entry.size, entry.type_);
                let kind = pure::boot::bootinfo::e820_kind(kind);
                if let Err(error) = boot.memory.add_firmware(addr, size, kind) {
                    log::error!("xen: memory map: {error}; entry dropped");
                }
            }
            log::info!("xen: memory map from XENMEM_memory_map, {count} entries");
        }
        Err(error) => log::error!("xen: XENMEM_memory_map failed: {error}"),
    }
}

/// The parts of the bus start-up that differ between PV and PVH.
pub struct GuestParts {
    /// The xenstore ring (virtual address, 0 if none) and its port.
    pub store: fn() -> Result<(u64, u32), XenError>,
    /// Maps `frames` grant-table frames; returns the first entry.
    pub map_grant_frames: fn(u32) -> Result<*mut grant_entry_v1, grant::GrantError>,
    /// How this kind of guest suspends and resumes.
    pub suspend: SuspendParts,
}

/// The parts of a suspend that differ between PV and PVH (see
/// [`suspend`] for the order). All run with events masked.
pub struct SuspendParts {
    /// Makes the domain ready to be saved; returns the third argument of
    /// `SHUTDOWN_suspend` (PV: the start info's machine frame).
    pub prepare: fn() -> Result<u64, &'static str>,
    /// Right after the call returned: shared_info mapped again, the
    /// event delivery set up again, the pieces of a new domain found.
    pub restore: fn(hv::xen::calls::Resumed) -> Result<(), &'static str>,
    /// Gives the grant-table frames (first entry, count) back before the
    /// call, where the save needs it.
    pub release_grant_frames: fn(*mut grant_entry_v1, u32),
    /// Maps the grant-table frames again at the same address.
    pub remap_grant_frames: fn(*mut grant_entry_v1, u32) -> Result<(), grant::GrantError>,
    /// The xenstore and console event channels of the domain now.
    pub ports: fn() -> Result<(u32, u32), XenError>,
}

/// Once events run: console input, xenstore with the watch that lets `xl
/// shutdown` and `xl reboot` reach the kernel, and grant tables (a domU);
/// console input only for dom0, which starts before xenstored.
pub fn start_bus(parts: &'static GuestParts) {
    xencons::start_input();
    if let Some((seconds, _)) = clock::wallclock() {
        log::info!("xen: wallclock {}", pure::time::civil::from_unix(seconds));
    }
    if xencons::is_dom0() {
        return;
    }
    match (parts.store)() {
        Ok((ring, port)) if ring != 0 => xenstore::start(ring, port),
        Ok(_) => log::warn!("xen: no xenstore page"),
        Err(error) => log::error!("xen: xenstore: {error}"),
    }
    if let Err(error) = grant::init(parts.map_grant_frames) {
        log::error!("xen: no grant table: {error:?}");
    }
    suspend::start(&parts.suspend);
}

mod tests {
    use super::*;
    use crate::kassert;
    use crate::ktest::{ktest, TestResult};

    #[ktest]
    fn wallclock_is_plausible_where_xen_gives_it() -> TestResult {
        match clock::wallclock() {
            Some((seconds, nanoseconds)) => {
                // After 2020-01-01 and before 2200.
                kassert!(
                    (1_577_836_800..7_258_118_400).contains(&seconds),
                    "wallclock {seconds}"
                );
                kassert!(nanoseconds < 1_000_000_000);
            }
            None => kassert!(!events::running(), "events run but no wallclock"),
        }
        Ok(())
    }
}
