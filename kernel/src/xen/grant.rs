//! Grant tables, version 1 (`xen/include/public/grant_table.h`): how this
//! domain lets another (a backend in dom0) map or copy one of its pages.
//! The table frames are mapped into our physical space with
//! `XENMEM_add_to_physmap(XENMAPSPACE_grant_table)` (HVM/PVH), or, for a PV
//! guest, whose physical space Xen does not translate, listed by
//! `GNTTABOP_setup_table` as machine frames and mapped by the kernel; an
//! entry is (flags, domid, frame), published by writing the flags last. A
//! PV guest grants machine frames: [`grant_access`] translates.
//!
//! The backend maps the table (`backend::xen_pvh`, `backend::xen_pv`); the
//! split drivers' rings and buffers are granted through here. The kernel
//! test grants a page to dom0 and revokes it.

use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicU16, Ordering};
use hv::xen::bindings::*;
use hv::xen::calls;
use hv::xen::hypercall::XenError;
use spin::{Mutex, Once};
use x86_64::structures::paging::PhysFrame;

/// A grant reference.
pub type GrantRef = u32;

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// Not on Xen (or the table could not be set up).
    Unavailable,
    /// No free entry.
    Full,
    /// The other domain still maps or copies the page.
    InUse,
    /// A reference that is not ours to end.
    BadRef(GrantRef),
    /// A frame this guest does not have.
    BadFrame(u64),
    Xen(XenError),
    /// Xen refused a grant-table operation.
    Table(calls::GnttabError),
}

struct Table {
    /// Virtual address of the entries.
    entries: *mut grant_entry_v1,
    count: u32,
    free: Vec<GrantRef>,
}

// SAFETY: the entries are shared with Xen and only written under the
// table lock (flags atomically); the free list is plain data.
unsafe impl Send for Table {}

static TABLE: Once<Mutex<Table>> = Once::new();

/// v1 entries in one table frame.
const ENTRIES_PER_FRAME: u32 =
    (crate::mm::PAGE_SIZE as usize / core::mem::size_of::<grant_entry_v1>()) as u32;

/// Maps the grant table's frames (as many as Xen gives now) with the
/// backend's `map_frames`. Call once on a Xen domU, after memory is up.
pub fn init(
    map_frames: fn(u32) -> Result<*mut grant_entry_v1, GrantError>,
) -> Result<u32, GrantError> {
    let frames = calls::gnttab_query_size()
        .map_err(GrantError::Table)?
        .nr_frames;
    if frames == 0 {
        return Err(GrantError::Unavailable);
    }
    let entries = map_frames(frames)?;
    let count = frames * ENTRIES_PER_FRAME;
    let free = (GNTTAB_NR_RESERVED_ENTRIES..count).rev().collect();
    TABLE.call_once(|| {
        Mutex::new(Table {
            entries,
            count,
            free,
        })
    });
    log::info!("xen: grant table v1, {frames} frame(s), {count} entries");
    Ok(count)
}

/// Lets domain `domid` access our page `frame`, read-only or not. Returns
/// the reference to hand to the other side.
pub fn grant_access(domid: u16, frame: PhysFrame, readonly: bool) -> Result<GrantRef, GrantError> {
    TABLE.get().ok_or(GrantError::Unavailable)?;
    // A PV guest's page tables, and so its grants, hold machine frames.
    let machine = crate::mm::xlate::phys_to_machine(frame.start_address())
        .ok_or(GrantError::BadFrame(frame.pfn()))?;
    grant_device_frame(domid, machine.frame_number(), readonly)
}

/// As [`grant_access`], for a frame already numbered as the grant entry
/// holds it (a machine frame under PV): a DMA page's device address.
pub fn grant_device_frame(domid: u16, frame: u64, readonly: bool) -> Result<GrantRef, GrantError> {
    let frame = u32::try_from(frame).map_err(|_| GrantError::BadFrame(frame))?;
    let table = TABLE.get().ok_or(GrantError::Unavailable)?;
    let mut table = table.lock();
    let reference = table.free.pop().ok_or(GrantError::Full)?;
    // SAFETY: `reference` is below `count`, an entry of the mapped table
    // that no grant uses; domid and frame go first, the flags (which make
    // the entry live for Xen) after a write barrier.
    unsafe {
        let entry = table.entries.add(reference as usize);
        (&raw mut (*entry).domid).write_volatile(domid);
        (&raw mut (*entry).frame).write_volatile(frame);
        fence(Ordering::Release);
        let flags = GTF_permit_access | if readonly { GTF_readonly } else { 0 };
        (&raw mut (*entry).flags).write_volatile(flags as u16);
    }
    Ok(reference)
}

/// Revokes a grant; refused while the other domain maps or copies it.
pub fn end_access(reference: GrantRef) -> Result<(), GrantError> {
    let table = TABLE.get().ok_or(GrantError::Unavailable)?;
    let mut table = table.lock();
    if reference < GNTTAB_NR_RESERVED_ENTRIES
        || reference >= table.count
        || table.free.contains(&reference)
    {
        return Err(GrantError::BadRef(reference));
    }
    // SAFETY: an entry of the mapped table; the flags are u16-aligned and
    // shared with Xen, hence the atomic compare-exchange.
    let flags =
        unsafe { AtomicU16::from_ptr(&raw mut (*table.entries.add(reference as usize)).flags) };
    let current = flags.load(Ordering::Acquire);
    if u32::from(current) & (GTF_reading | GTF_writing) != 0 {
        return Err(GrantError::InUse);
    }
    if flags
        .compare_exchange(current, 0, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(GrantError::InUse);
    }
    table.free.push(reference);
    Ok(())
}

/// The table's first entry and its frames, for a suspend: the backend
/// hands the frames back before it (PV: no mapping of Xen's frames may be
/// left for the save) and maps them again after it at the same address
/// ([`super::SuspendParts`]). A new domain's table is empty: every grant
/// of the old one ended with it, and its owners grant again (the entries
/// they still hold end at once, their flags being clear).
pub fn table_frames() -> Option<(*mut grant_entry_v1, u32)> {
    let table = TABLE.get()?.lock();
    Some((table.entries, table.count / ENTRIES_PER_FRAME))
}

/// (flags, domid, frame) of an entry, for tests and diagnostics.
pub fn entry(reference: GrantRef) -> Option<(u16, u16, u32)> {
    let table = TABLE.get()?.lock();
    if reference >= table.count {
        return None;
    }
    // SAFETY: an entry of the mapped table, read volatile.
    Some(unsafe {
        let entry = table.entries.add(reference as usize);
        (
            (&raw const (*entry).flags).read_volatile(),
            (&raw const (*entry).domid).read_volatile(),
            (&raw const (*entry).frame).read_volatile(),
        )
    })
}

mod tests {
    use super::*;
    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    #[ktest]
    fn grant_a_page_to_dom0_and_revoke_it() -> TestResult {
        if TABLE.get().is_none() {
            let frame = PhysFrame::from_pfn(0x1234);
            kassert_eq!(grant_access(0, frame, true), Err(GrantError::Unavailable));
            return Ok(());
        }
        let frame = crate::mm::frames::alloc();
        kassert!(frame.is_some());
        let Some(frame) = frame else { return Ok(()) };
        let reference = grant_access(0, frame, true);
        kassert!(reference.is_ok(), "grant: {reference:?}");
        let Ok(reference) = reference else {
            return Ok(());
        };
        kassert!(reference >= GNTTAB_NR_RESERVED_ENTRIES);
        kassert_eq!(
            entry(reference),
            Some((
                (GTF_permit_access | GTF_readonly) as u16,
                0,
                crate::mm::xlate::phys_to_machine(frame.start_address())
                    .map_or(0, |machine| machine.frame_number()) as u32
            ))
        );
        kassert_eq!(end_access(reference), Ok(()));
        kassert_eq!(entry(reference).map(|e| e.0), Some(0));
        kassert_eq!(end_access(reference), Err(GrantError::BadRef(reference)));
        kassert_eq!(end_access(3), Err(GrantError::BadRef(3)));
        crate::mm::frames::free(frame);
        Ok(())
    }
}
