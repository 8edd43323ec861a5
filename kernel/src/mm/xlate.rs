//! Pseudo-physical and machine addresses, and where the kernel reaches a
//! physical page before and after its own page tables exist.
//!
//! Natively and under PVH a "physical" address is what the page tables hold.
//! A Xen PV guest sees pseudo-physical frames (0..nr_pages, contiguous)
//! while its page-table entries hold machine frames: the P2M list Xen
//! hands over in the start info maps pfn to mfn, and Xen's read-only M2P
//! table at `MACH2PHYS_VIRT_START` maps back (`xen/include/public/xen.h`,
//! "start_info", and `arch-x86/xen-x86_64.h`). The rest of the kernel works
//! in pseudo-physical addresses; the page-table code translates entries with
//! [`phys_to_machine`] and [`machine_to_phys`], which are the identity
//! unless [`set_xen_pv`] ran.
//!
//! Before the direct map exists, a PV guest reaches its low memory through
//! Xen's bootstrap mapping, pfn `n` at `KERNEL_VMA + n * 4096` (the domain
//! builder maps the kernel, its boot structures and some padding that
//! way); the native entry code maps the first 4 GiB at `PHYS_MAP_BASE`.
//! [`phys_to_virt`] picks the right one.

use crate::arch::layout::{BOOT_PHYS_MAP_LIMIT, KERNEL_VMA, PHYS_MAP_BASE};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

static TRANSLATED: AtomicBool = AtomicBool::new(false);
static P2M: AtomicPtr<u64> = AtomicPtr::new(core::ptr::null_mut());
static P2M_LEN: AtomicUsize = AtomicUsize::new(0);
/// Physical memory below this is reachable before the direct map.
static EARLY_LIMIT: AtomicU64 = AtomicU64::new(BOOT_PHYS_MAP_LIMIT);
/// PV: the direct map covers physical memory below this so far.
static DIRECT_LIMIT: AtomicU64 = AtomicU64::new(0);

/// The machine address Xen's M2P table sits at in every 64-bit PV guest.
const MACH2PHYS_VIRT_START: u64 = hv::xen::bindings::MACH2PHYS_VIRT_START;

/// Switches to PV translation: `p2m` holds `len` machine frame numbers,
/// and the bootstrap mapping reaches physical memory below `early_limit`.
///
/// # Safety
/// `p2m` must point at the start info's P2M list of `len` entries, mapped
/// for the kernel's whole life.
pub unsafe fn set_xen_pv(p2m: *const u64, len: usize, early_limit: u64) {
    P2M.store(p2m.cast_mut(), Ordering::Relaxed);
    P2M_LEN.store(len, Ordering::Relaxed);
    EARLY_LIMIT.store(early_limit, Ordering::Relaxed);
    TRANSLATED.store(true, Ordering::Release);
}

/// Whether a P2M is installed (a Xen PV guest): physical and machine
/// addresses differ.
#[inline]
fn translated() -> bool {
    TRANSLATED.load(Ordering::Relaxed)
}

/// The machine address of pseudo-physical `phys`; `None` beyond the P2M.
pub fn phys_to_machine(phys: u64) -> Option<u64> {
    if !translated() {
        return Some(phys);
    }
    let pfn = (phys >> 12) as usize;
    if pfn >= P2M_LEN.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: `set_xen_pv` was given the P2M list of P2M_LEN entries, which
    // stays mapped; the index was checked.
    let mfn = unsafe { P2M.load(Ordering::Relaxed).add(pfn).read_volatile() };
    Some(mfn << 12 | (phys & 0xfff))
}

/// The pseudo-physical address of machine address `machine` (through
/// Xen's M2P table); machine frames that are not this guest's RAM (the
/// shared-info page, another domain's grant) map to meaningless values.
pub fn machine_to_phys(machine: u64) -> u64 {
    if !translated() {
        return machine;
    }
    let mfn = machine >> 12;
    // SAFETY: Xen maps the M2P table read-only into every 64-bit PV guest
    // at MACH2PHYS_VIRT_START, one 8-byte entry per machine frame of the
    // host; a guest's page-table entries only hold frames Xen validated.
    let pfn = unsafe { ((MACH2PHYS_VIRT_START + mfn * 8) as *const u64).read_volatile() };
    pfn << 12 | (machine & 0xfff)
}

/// Physical memory below this can be reached before the direct map.
pub fn early_limit() -> u64 {
    EARLY_LIMIT.load(Ordering::Relaxed)
}

/// PV: the direct map now covers physical memory below `limit`.
pub(super) fn set_direct_limit(limit: u64) {
    DIRECT_LIMIT.store(limit, Ordering::Release);
}

/// Where the kernel reaches physical `phys`: the direct map (natively the
/// boot tables already map its first 4 GiB), or under PV before the direct
/// map covers it, Xen's bootstrap mapping.
#[inline]
pub fn phys_to_virt(phys: u64) -> u64 {
    if !translated() || phys < DIRECT_LIMIT.load(Ordering::Acquire) {
        PHYS_MAP_BASE + phys
    } else {
        KERNEL_VMA + phys
    }
}

/// The physical address behind a [`phys_to_virt`] address (either alias),
/// or `None` for other addresses.
pub fn virt_to_phys(virt: u64) -> Option<u64> {
    if virt >= KERNEL_VMA {
        Some(virt - KERNEL_VMA)
    } else if (PHYS_MAP_BASE..PHYS_MAP_BASE + (1 << 39)).contains(&virt) {
        Some(virt - PHYS_MAP_BASE)
    } else {
        None
    }
}
