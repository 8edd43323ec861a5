//! Hypercalls through the hypercall page (HVM/PVH guests).
//!
//! Xen fills the page when the guest writes its physical address to the
//! MSR that CPUID leaf `base + 2` names (`xen/include/public/arch-x86/
//! cpuid.h`, `XEN_CPUID_LEAF(2)`: EAX = number of pages, EBX = the MSR).
//! Entry `n` sits at `page + 32 * n`. Arguments go in RDI, RSI, RDX, R10
//! and R8; the result comes back in RAX, a negative errno on failure
//! (`xen/include/public/errno.h`). The page is kernel text (it holds code
//! Xen writes), filled with `int3` until Xen overwrites it.

use core::fmt;

/// A Xen error: the negated errno a hypercall returned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    /// The errno's name, for the common ones (`xen/include/public/errno.h`).
    pub fn name(self) -> &'static str {
        match -self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            19 => "ENODEV",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            95 => "EOPNOTSUPP",
            _ => "unknown error",
        }
    }
}

impl fmt::Debug for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Turns a hypercall's RAX into a result.
pub fn result(rax: i64) -> Result<u64, XenError> {
    if rax < 0 {
        Err(XenError(rax))
    } else {
        Ok(rax as u64)
    }
}

#[cfg(target_os = "none")]
mod page {
    use super::{result, XenError};
    use core::sync::atomic::{AtomicBool, Ordering};

    core::arch::global_asm!(
        ".section .text.hv_xen_hypercall_page, \"ax\"",
        ".balign 4096",
        ".global hv_xen_hypercall_page",
        "hv_xen_hypercall_page:",
        ".fill 4096, 1, 0xcc",
    );

    unsafe extern "C" {
        static hv_xen_hypercall_page: u8;
    }

    static READY: AtomicBool = AtomicBool::new(false);

    /// The hypercall page's virtual address (to compute its physical one).
    pub fn page_address() -> u64 {
        (&raw const hv_xen_hypercall_page) as u64
    }

    /// Asks Xen to fill the hypercall page: writes `page_physical` to the
    /// MSR CPUID named.
    ///
    /// # Safety
    /// `msr` must come from Xen's CPUID leaf `base + 2`, and
    /// `page_physical` must be the physical address of [`page_address`].
    pub unsafe fn install(msr: u32, page_physical: u64) {
        // SAFETY: Xen traps this MSR write and writes the hypercall stubs
        // into the page, which is ours and meant for it.
        unsafe {
            core::arch::asm!(
                "wrmsr",
                in("ecx") msr,
                in("eax") page_physical as u32,
                in("edx") (page_physical >> 32) as u32,
                options(nostack)
            )
        };
        READY.store(true, Ordering::Release);
    }

    /// Declares the page filled by Xen's PV domain builder, which writes
    /// the stubs at the address the kernel's `XEN_ELFNOTE_HYPERCALL_PAGE`
    /// note names before the guest's first instruction.
    ///
    /// # Safety
    /// Only on a Xen PV guest whose image carries that note for this page.
    pub unsafe fn mark_filled() {
        READY.store(true, Ordering::Release);
    }

    /// Whether hypercalls can be made.
    pub fn ready() -> bool {
        READY.load(Ordering::Acquire)
    }

    /// Makes hypercall `op` with up to five arguments.
    ///
    /// # Safety
    /// The arguments must be what Xen's interface for `op` asks for (valid
    /// pointers to correctly laid out structures, in particular).
    pub unsafe fn call(
        op: u32,
        a1: u64,
        a2: u64,
        a3: u64,
        a4: u64,
        a5: u64,
    ) -> Result<u64, XenError> {
        if !ready() {
            return Err(XenError(-38));
        }
        let entry = page_address() + u64::from(op) * 32;
        let rax: i64;
        // SAFETY: the page holds Xen's stubs (READY); the caller vouches
        // for the arguments. Xen may clobber the argument registers, RCX
        // and R11.
        unsafe {
            core::arch::asm!(
                "call {entry}",
                entry = in(reg) entry,
                inlateout("rdi") a1 => _,
                inlateout("rsi") a2 => _,
                inlateout("rdx") a3 => _,
                inlateout("r10") a4 => _,
                inlateout("r8") a5 => _,
                lateout("rax") rax,
                lateout("rcx") _,
                lateout("r11") _,
            )
        };
        result(rax)
    }
}

#[cfg(target_os = "none")]
pub use page::{call, install, mark_filled, page_address, ready};

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    #[test]
    fn results_and_errors() {
        assert_eq!(result(0), Ok(0));
        assert_eq!(result(5), Ok(5));
        assert_eq!(result(-22), Err(XenError(-22)));
        assert_eq!(XenError(-22).name(), "EINVAL");
        assert_eq!(XenError(-38).name(), "ENOSYS");
        assert_eq!(std::format!("{}", XenError(-1)), "EPERM (-1)");
        assert_eq!(XenError(-999).name(), "unknown error");
    }
}
