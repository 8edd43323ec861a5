//! The patcher: installs a backend in the table and rewrites the call
//! sites recorded in `.vmops_sites`, in one of three modes:
//!
//! - `eager`: every site at boot, on the boot CPU with interrupts off,
//!   then one serialisation, then every site's bytes are read back and
//!   compared with the plan;
//! - `lazy`: the table points at per-op thunks; the first call from a site
//!   patches that site and returns to its start, so the new bytes run (the
//!   original sanos `hw_enable_int` trick);
//! - `off`: sites stay indirect calls through the table.
//!
//! Writes go through the direct map's alias of the text page (text itself
//! stays read-execute). A record that is outside kernel text, overlaps
//! another, or names an unknown op is refused with its address, and its
//! site stays the indirect call, which is always correct.

use super::VMOPS_TABLE;
use crate::arch::layout::KERNEL_VMA;
use core::fmt;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use vmops::{check_site, plan, Backend, Mode, Op, Planned, Site, OP_COUNT, SITE_LEN};

unsafe extern "C" {
    static mut __vmops_sites_start: u8;
    static mut __vmops_sites_end: u8;
    static __text_start: u8;
    static __text_end: u8;
    static vmops_lazy_thunks: u8;
}

/// Marks a refused record, so lazy mode leaves its site alone too.
const REFUSED_OP: u16 = u16::MAX;
/// Each lazy thunk is padded to this size.
const LAZY_THUNK_SIZE: u64 = 16;

static BACKEND: AtomicPtr<Backend> = AtomicPtr::new(core::ptr::null_mut());
static SITES: AtomicPtr<Site> = AtomicPtr::new(core::ptr::null_mut());
static SITE_COUNT: AtomicUsize = AtomicUsize::new(0);
static LAZY_PATCHED: AtomicUsize = AtomicUsize::new(0);
static LAZY_FAILED: AtomicUsize = AtomicUsize::new(0);

/// What `install` did, for the boot log.
#[derive(Clone, Copy, Debug)]
pub struct PatchReport {
    pub sites: usize,
    pub refused: usize,
    /// Sites whose bytes did not read back as planned (eager mode).
    pub mismatched: usize,
    /// Per op: number of sites, and what they became (or will become).
    pub per_op: [(usize, Option<Planned>); OP_COUNT],
}

impl fmt::Display for PatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for op in Op::ALL {
            let (count, planned) = self.per_op[op as usize];
            if count == 0 {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            match planned {
                Some(planned) => write!(f, "{op} {count} -> {planned}")?,
                None => write!(f, "{op} {count} -> refused")?,
            }
        }
        Ok(())
    }
}

/// The site records, sorted by address (sorted in place by `install`).
pub(crate) fn sites() -> &'static [Site] {
    let start = SITES.load(Ordering::Acquire);
    if start.is_null() {
        return &[];
    }
    // SAFETY: `install` stored the start and length of the record array
    // (in .data) and nothing writes it after that.
    unsafe { core::slice::from_raw_parts(start, SITE_COUNT.load(Ordering::Acquire)) }
}

fn text_range() -> (u64, u64) {
    (
        (&raw const __text_start) as u64,
        (&raw const __text_end) as u64,
    )
}

/// A writable alias of a kernel-text address, same bytes: the direct map
/// (under Xen PV, before the direct map exists, the image itself, which
/// Xen maps writable until `mm` applies W^X). The kernel's own tables keep
/// this alias writable only in lazy mode (`mm::paging`): eager patching
/// runs on the boot tables.
fn alias(address: u64) -> *mut u8 {
    crate::mm::xlate::phys_to_virt(x86_64::PhysAddr::new(address - KERNEL_VMA)).as_mut_ptr()
}

/// Writes a site with interrupts masked the platform's way, without
/// running a vmops site (the patcher must not).
///
/// # Safety
/// As [`vmops::write::write_site`].
unsafe fn write_site(alias: *mut u8, bytes: &[u8]) {
    let hooks = crate::backend::hooks();
    let was = (hooks.mask_raw)();
    // SAFETY: the caller's promise; interrupts are masked.
    unsafe { vmops::write::write_site(alias, bytes) };
    (hooks.unmask_raw)(was);
}

fn table_function(backend: &Backend, op: Op) -> *const () {
    backend
        .get(op)
        .function
        .map_or(missing_op as *const (), |f| f.0)
}

/// Installs `backend` and treats the sites as `mode` says.
pub(super) fn install(backend: &'static Backend, mode: Mode) -> PatchReport {
    // SAFETY: the linker script brackets .vmops_sites (in .data) with these
    // symbols; it holds only 16-byte `Site` records emitted by the site
    // macro, 8-byte aligned. Nothing else refers to them, and this runs
    // once, before any other CPU.
    let records = unsafe {
        let start = (&raw mut __vmops_sites_start).cast::<Site>();
        let end = (&raw mut __vmops_sites_end).cast::<Site>();
        core::slice::from_raw_parts_mut(
            start,
            (end as usize - start as usize) / core::mem::size_of::<Site>(),
        )
    };
    records.sort_unstable_by_key(|site| site.address);
    let (text_start, text_end) = text_range();
    let mut report = PatchReport {
        sites: records.len(),
        refused: 0,
        mismatched: 0,
        per_op: [(0, None); OP_COUNT],
    };

    // Validate every record first; a refused one is marked so no mode
    // touches its site.
    let mut previous = None;
    for site in records.iter_mut() {
        match check_site(site, text_start, text_end, previous) {
            Ok(op) => {
                previous = Some((site.address, site.address + u64::from(site.len)));
                report.per_op[op as usize].0 += 1;
            }
            Err(error) => {
                log::error!("vmops: site record at {:#x} refused: {error}", site.address);
                site.op = REFUSED_OP;
                report.refused += 1;
            }
        }
    }
    BACKEND.store((backend as *const Backend).cast_mut(), Ordering::Release);
    SITES.store(records.as_mut_ptr(), Ordering::Release);
    SITE_COUNT.store(records.len(), Ordering::Release);

    // The table: the backend's functions, or the lazy thunks.
    for op in Op::ALL {
        let function = match mode {
            Mode::Lazy => {
                ((&raw const vmops_lazy_thunks) as u64 + op as u64 * LAZY_THUNK_SIZE) as *const ()
            }
            Mode::Eager | Mode::Off => table_function(backend, op),
        };
        VMOPS_TABLE.set(op, function);
    }

    for site in sites() {
        let Some(op) = Op::from_id(site.op) else {
            continue;
        };
        let slot = VMOPS_TABLE.slot_address(op);
        match plan(
            site.address,
            op,
            backend.get(op),
            if mode == Mode::Off {
                Mode::Off
            } else {
                Mode::Eager
            },
            slot,
        ) {
            Ok((bytes, planned)) => {
                report.per_op[op as usize].1 = Some(if mode == Mode::Off {
                    Planned::Indirect
                } else {
                    planned
                });
                if mode == Mode::Eager {
                    // SAFETY: the alias maps the site's text bytes writable
                    // (direct map); interrupts are off and no other CPU
                    // runs, so nothing executes the site meanwhile.
                    unsafe { write_site(alias(site.address), &bytes[..SITE_LEN]) };
                }
            }
            Err(error) => log::error!(
                "vmops: site at {:#x} ({op}) not patched: {error}",
                site.address
            ),
        }
    }
    if mode == Mode::Eager {
        vmops::write::serialize();
        report.mismatched = sites()
            .iter()
            .filter(|site| !site_matches(site, backend, mode))
            .count();
        if report.mismatched > 0 {
            log::error!(
                "vmops: {} sites do not read back as planned",
                report.mismatched
            );
        }
    }
    report
}

/// The site's current bytes, read through its text mapping.
pub(crate) fn site_bytes(site: &Site) -> [u8; SITE_LEN] {
    let mut bytes = [0u8; SITE_LEN];
    for (i, byte) in bytes.iter_mut().enumerate() {
        // SAFETY: accepted sites lie inside kernel text, which is mapped
        // readable.
        *byte = unsafe { ((site.address as usize + i) as *const u8).read_volatile() };
    }
    bytes
}

/// Whether a site holds what `mode` promises: the patched form (eager),
/// the indirect call (off), either of the two (lazy).
pub(crate) fn site_matches(site: &Site, backend: &Backend, mode: Mode) -> bool {
    let Some(op) = Op::from_id(site.op) else {
        return true;
    };
    let slot = VMOPS_TABLE.slot_address(op);
    let current = site_bytes(site);
    let planned =
        |mode| plan(site.address, op, backend.get(op), mode, slot).map(|(bytes, _)| bytes);
    let is = |mode| planned(mode).is_ok_and(|bytes| bytes[..SITE_LEN] == current);
    match mode {
        Mode::Eager => is(Mode::Eager),
        Mode::Off => is(Mode::Off),
        Mode::Lazy => is(Mode::Eager) || is(Mode::Off),
    }
}

/// The op of the site containing `address`, for fault reports (a `ud2`
/// left where a backend lacks an op).
pub fn describe_site(address: u64) -> Option<Op> {
    let sites = sites();
    let index = sites
        .partition_point(|site| site.address <= address)
        .checked_sub(1)?;
    let site = &sites[index];
    (address < site.address + u64::from(site.len))
        .then(|| Op::from_id(site.op))
        .flatten()
}

/// (sites patched lazily, lazy patches that failed).
pub fn lazy_counts() -> (usize, usize) {
    (
        LAZY_PATCHED.load(Ordering::Relaxed),
        LAZY_FAILED.load(Ordering::Relaxed),
    )
}

/// Called by a lazy thunk with the op and its return address (the end of
/// the 6-byte indirect call at the start of the site). Patches the site and
/// returns the address to resume at: the site's start, so the new bytes
/// run. Must not use any vmops site itself (it would recurse), so it logs
/// nothing and only counts.
extern "C" fn lazy_patch(op_id: u64, return_address: u64) -> u64 {
    let site_start = return_address - 6;
    let backend = BACKEND.load(Ordering::Acquire);
    let op = Op::from_id(op_id as u16);
    let sites = sites();
    let record = sites
        .binary_search_by_key(&site_start, |site| site.address)
        .ok()
        .map(|index| sites[index]);
    if let (Some(op), Some(record), false) = (op, record, backend.is_null()) {
        // SAFETY: set once by `install` to a `&'static Backend`.
        let backend = unsafe { &*backend };
        if record.op == op as u16 {
            if let Ok((bytes, _)) = plan(
                site_start,
                op,
                backend.get(op),
                Mode::Lazy,
                VMOPS_TABLE.slot_address(op),
            ) {
                // SAFETY: the alias maps the site's text writable; this CPU
                // is inside the thunk called from this very site, and will
                // re-execute it only after the write and serialisation.
                unsafe { write_site(alias(site_start), &bytes[..SITE_LEN]) };
                vmops::write::serialize();
                LAZY_PATCHED.fetch_add(1, Ordering::Relaxed);
                return site_start;
            }
        }
        // Not a patchable site: send this op through the backend's
        // function from now on, and run it by re-executing the call.
        VMOPS_TABLE.set(op, table_function(backend, op));
    }
    LAZY_FAILED.fetch_add(1, Ordering::Relaxed);
    site_start
}

/// Table entry of an op the backend does not implement.
extern "C" fn missing_op() {
    panic!(
        "vmops: called an op that the {} backend does not implement",
        crate::backend::chosen().map_or("current", |c| c.backend.name())
    );
}

core::arch::global_asm!(
    ".section .text.vmops_lazy, \"ax\"",
    ".balign 16",
    ".global vmops_lazy_thunks",
    "vmops_lazy_thunks:",
    ".set lazy_op, 0",
    ".rept {op_count}",
    ".balign 16",
    "push lazy_op",
    "jmp vmops_lazy_common",
    ".set lazy_op, lazy_op + 1",
    ".endr",
    "vmops_lazy_common:",
    // Stack: [rsp] op id, [rsp + 8] return address into the site. Save
    // every register the C ABI lets lazy_patch clobber: the site's
    // convention may promise them preserved.
    "push rax",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "mov rdi, [rsp + 72]",
    "mov rsi, [rsp + 80]",
    // RSP was 8 mod 16 on entry (a call from an aligned site); the op id
    // and nine registers leave it 8 mod 16 again; 8 more align the call.
    "sub rsp, 8",
    "call {lazy_patch}",
    "add rsp, 8",
    "mov [rsp + 80], rax",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "add rsp, 8",
    "ret",
    op_count = const OP_COUNT,
    lazy_patch = sym lazy_patch,
);
