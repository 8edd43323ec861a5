//! Pseudo-physical and machine addresses, and where the kernel reaches a
//! physical page before and after its own page tables exist.
//!
//! Three kinds of address meet here, each its own type:
//!
//! - [`PhysAddr`]: what the kernel calls physical. Natively and under PVH it
//!   is what the page tables hold; a Xen PV guest sees pseudo-physical
//!   frames (0..nr_pages, contiguous) instead.
//! - [`MachineAddr`]: what a Xen PV guest's page-table entries, CR3 and
//!   grants hold. The P2M list Xen hands over in the start info maps pfn to
//!   mfn, and Xen's read-only M2P table at `MACH2PHYS_VIRT_START` maps back
//!   (`xen/include/public/xen.h`, "start_info", and
//!   `arch-x86/xen-x86_64.h`). [`phys_to_machine`] and [`machine_to_phys`]
//!   are the only ways between the two, and the identity unless
//!   [`set_xen_pv`] ran.
//! - [`VirtAddr`]: where the kernel reaches a physical address,
//!   [`phys_to_virt`] (and back, [`virt_to_phys`]).
//!
//! Before the direct map exists, a PV guest reaches its low memory through
//! Xen's bootstrap mapping, pfn `n` at `KERNEL_VMA + n * PAGE_SIZE` (the
//! domain builder maps the kernel, its boot structures and some padding
//! that way); the native entry code maps the first 4 GiB at
//! `PHYS_MAP_BASE`. [`phys_to_virt`] picks the right one.

use super::PAGE_SIZE;
use crate::arch::layout::{BOOT_PHYS_MAP_LIMIT, KERNEL_VMA, PHYS_MAP_BASE};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use x86_64::{PhysAddr, VirtAddr};

/// A machine address: what a Xen PV guest's page-table entries hold. Only
/// [`phys_to_machine`] makes one from a [`PhysAddr`]; elsewhere one comes
/// from Xen (a start-info frame, a grant-table frame, CR3).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct MachineAddr(u64);

impl MachineAddr {
    /// The machine address `addr`, as Xen gave it.
    pub const fn new(addr: u64) -> MachineAddr {
        MachineAddr(addr)
    }

    /// The start of machine frame `mfn`. Bits shifted out of 64 are lost,
    /// as Xen's all-ones "invalid" frame numbers expect.
    pub const fn from_frame_number(mfn: u64) -> MachineAddr {
        MachineAddr(mfn.wrapping_mul(PAGE_SIZE))
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The machine frame number (mfn).
    pub const fn frame_number(self) -> u64 {
        self.0 / PAGE_SIZE
    }

    /// The offset within its page.
    pub const fn page_offset(self) -> u64 {
        self.0 % PAGE_SIZE
    }
}

impl core::fmt::Debug for MachineAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MachineAddr({:#x})", self.0)
    }
}

impl core::fmt::LowerHex for MachineAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, f)
    }
}

static TRANSLATED: AtomicBool = AtomicBool::new(false);
static P2M: AtomicPtr<u64> = AtomicPtr::new(core::ptr::null_mut());
static P2M_LEN: AtomicUsize = AtomicUsize::new(0);
/// Physical memory below this is reachable before the direct map.
static EARLY_LIMIT: AtomicU64 = AtomicU64::new(BOOT_PHYS_MAP_LIMIT);
/// PV: the direct map covers physical memory below this so far.
static DIRECT_LIMIT: AtomicU64 = AtomicU64::new(0);

/// The virtual address Xen's M2P table sits at in every 64-bit PV guest.
const MACH2PHYS_VIRT_START: u64 = hv::xen::bindings::MACH2PHYS_VIRT_START;

/// The direct map: physical `p` at `DIRECT_MAP + p`.
const DIRECT_MAP: VirtAddr = VirtAddr::new(PHYS_MAP_BASE);
/// Xen PV's bootstrap mapping (and the kernel image): physical `p` at
/// `BOOTSTRAP_MAP + p`.
const BOOTSTRAP_MAP: VirtAddr = VirtAddr::new(KERNEL_VMA);
/// The direct map's extent (one PML4 slot).
const DIRECT_MAP_SIZE: u64 = 1 << 39;

/// Switches to PV translation: `p2m` holds `len` machine frame numbers,
/// and the bootstrap mapping reaches physical memory below `early_limit`.
///
/// # Safety
/// `p2m` must point at the start info's P2M list of `len` entries, mapped
/// for the kernel's whole life.
pub unsafe fn set_xen_pv(p2m: *const u64, len: usize, early_limit: PhysAddr) {
    P2M.store(p2m.cast_mut(), Ordering::Relaxed);
    P2M_LEN.store(len, Ordering::Relaxed);
    EARLY_LIMIT.store(early_limit.as_u64(), Ordering::Relaxed);
    TRANSLATED.store(true, Ordering::Release);
}

/// Whether a P2M is installed (a Xen PV guest): physical and machine
/// addresses differ.
#[inline]
fn translated() -> bool {
    TRANSLATED.load(Ordering::Relaxed)
}

/// The machine address of pseudo-physical `phys`; `None` beyond the P2M.
pub fn phys_to_machine(phys: PhysAddr) -> Option<MachineAddr> {
    if !translated() {
        return Some(MachineAddr(phys.as_u64()));
    }
    let pfn = (phys.as_u64() / PAGE_SIZE) as usize;
    if pfn >= P2M_LEN.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: `set_xen_pv` was given the P2M list of P2M_LEN entries, which
    // stays mapped; the index was checked.
    let mfn = unsafe { P2M.load(Ordering::Relaxed).add(pfn).read_volatile() };
    Some(MachineAddr(
        MachineAddr::from_frame_number(mfn).0 | (phys.as_u64() % PAGE_SIZE),
    ))
}

/// The pseudo-physical address of machine address `machine` (through
/// Xen's M2P table); machine frames that are not this guest's RAM (the
/// shared-info page, another domain's grant) map to meaningless values
/// (bits beyond a physical address dropped, never a panic).
pub fn machine_to_phys(machine: MachineAddr) -> PhysAddr {
    if !translated() {
        return PhysAddr::new_truncate(machine.0);
    }
    let mfn = machine.frame_number();
    // SAFETY: Xen maps the M2P table read-only into every 64-bit PV guest
    // at MACH2PHYS_VIRT_START, one 8-byte entry per machine frame of the
    // host; a guest's page-table entries only hold frames Xen validated.
    let pfn = unsafe { ((MACH2PHYS_VIRT_START + mfn * 8) as *const u64).read_volatile() };
    PhysAddr::new_truncate(pfn.wrapping_mul(PAGE_SIZE) | machine.page_offset())
}

/// Physical memory below this can be reached before the direct map.
pub fn early_limit() -> PhysAddr {
    PhysAddr::new(EARLY_LIMIT.load(Ordering::Relaxed))
}

/// PV: the direct map now covers physical memory below `limit`.
pub(super) fn set_direct_limit(limit: PhysAddr) {
    DIRECT_LIMIT.store(limit.as_u64(), Ordering::Release);
}

/// Where the direct map puts physical `phys` (whether it maps it yet or
/// not; [`phys_to_virt`] says where `phys` can be reached now).
#[inline]
pub fn direct_map(phys: PhysAddr) -> VirtAddr {
    DIRECT_MAP + phys.as_u64()
}

/// Where Xen PV's bootstrap mapping puts physical `phys` (which it maps
/// below [`early_limit`] only).
#[inline]
pub fn bootstrap_map(phys: PhysAddr) -> VirtAddr {
    BOOTSTRAP_MAP + phys.as_u64()
}

/// Where the kernel reaches physical `phys`: the direct map (natively the
/// boot tables already map its first 4 GiB), or under PV before the direct
/// map covers it, Xen's bootstrap mapping.
#[inline]
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    if !translated() || phys.as_u64() < DIRECT_LIMIT.load(Ordering::Acquire) {
        direct_map(phys)
    } else {
        bootstrap_map(phys)
    }
}

/// The physical address behind a [`phys_to_virt`] address (either alias),
/// or `None` for other addresses.
pub fn virt_to_phys(virt: VirtAddr) -> Option<PhysAddr> {
    if virt >= BOOTSTRAP_MAP {
        Some(PhysAddr::new(virt - BOOTSTRAP_MAP))
    } else if (DIRECT_MAP..DIRECT_MAP + DIRECT_MAP_SIZE).contains(&virt) {
        Some(PhysAddr::new(virt - DIRECT_MAP))
    } else {
        None
    }
}
