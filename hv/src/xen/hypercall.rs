//! Hypercalls through the hypercall page (HVM/PVH guests).
//!
//! Xen fills the page when the guest writes its physical address to the
//! MSR that CPUID leaf `base + 2` names (`xen/include/public/arch-x86/
//! cpuid.h`, `XEN_CPUID_LEAF(2)`: EAX = number of pages, EBX = the MSR).
//! Entry `n` sits at `page + 32 * n`. Arguments go in RDI, RSI, RDX, R10
//! and R8; the result comes back in RAX, a negative errno on failure
//! (`xen/include/public/errno.h`, every value of which is a [`XenError`]
//! constant). The page is kernel text (it holds code Xen writes), filled
//! with `int3` until Xen overwrites it. The typed operations built on
//! `call` are in [`super::ops`].

use core::fmt;

/// A Xen error: the negated errno a hypercall returned
/// (`xen/include/public/errno.h`: hypercalls return `-XEN_Efoo`).
///
/// Every errno of the header is an associated constant holding the negated
/// value, `XenError::EINVAL == XenError(-22)`, and [`XenError::name`] names
/// it. The values are x86 Linux's, so they read the same as a Linux errno.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct XenError(pub i64);

/// Defines the errno constants, [`XenError::name`] and
/// [`XenError::description`] from one list, so the three cannot disagree.
macro_rules! xen_errnos {
    ($($name:ident = $value:literal, $what:literal;)*) => {
        impl XenError {
            $(
                #[doc = concat!("`", stringify!($name), "` (", stringify!($value), "): ", $what, ".")]
                pub const $name: XenError = XenError(-$value);
            )*

            /// The errno's name (`"EINVAL"`), or `"unknown error"` for a
            /// value `errno.h` does not define.
            pub const fn name(self) -> &'static str {
                match self.0.wrapping_neg() {
                    $($value => stringify!($name),)*
                    _ => "unknown error",
                }
            }

            /// The errno's meaning, as the header's comment gives it
            /// (`"Invalid argument"`), or `"unknown error"`.
            pub const fn description(self) -> &'static str {
                match self.0.wrapping_neg() {
                    $($value => $what,)*
                    _ => "unknown error",
                }
            }
        }

        /// Every (name, errno) of the header, in its order (for the tests).
        #[cfg(test)]
        const ERRNO_TABLE: &[(&str, i64)] = &[$((stringify!($name), $value)),*];
    };
}

// `xen/include/public/errno.h` of Xen 4.17 (libxen-dev 4.17.7, Debian 12),
// in its order, each with its comment. EINTR and ERESTART are
// `#ifdef __XEN__` there: internal to Xen, never meant to reach a guest,
// but named so that one that does is recognised. The header's two aliases
// (EWOULDBLOCK, EDEADLOCK) follow the list.
xen_errnos! {
    EPERM = 1, "Operation not permitted";
    ENOENT = 2, "No such file or directory";
    ESRCH = 3, "No such process";
    EINTR = 4, "Interrupted system call";
    EIO = 5, "I/O error";
    ENXIO = 6, "No such device or address";
    E2BIG = 7, "Arg list too long";
    ENOEXEC = 8, "Exec format error";
    EBADF = 9, "Bad file number";
    ECHILD = 10, "No child processes";
    EAGAIN = 11, "Try again";
    ENOMEM = 12, "Out of memory";
    EACCES = 13, "Permission denied";
    EFAULT = 14, "Bad address";
    EBUSY = 16, "Device or resource busy";
    EEXIST = 17, "File exists";
    EXDEV = 18, "Cross-device link";
    ENODEV = 19, "No such device";
    ENOTDIR = 20, "Not a directory";
    EISDIR = 21, "Is a directory";
    EINVAL = 22, "Invalid argument";
    ENFILE = 23, "File table overflow";
    EMFILE = 24, "Too many open files";
    ENOSPC = 28, "No space left on device";
    EROFS = 30, "Read-only file system";
    EMLINK = 31, "Too many links";
    EDOM = 33, "Math argument out of domain of func";
    ERANGE = 34, "Math result not representable";
    EDEADLK = 35, "Resource deadlock would occur";
    ENAMETOOLONG = 36, "File name too long";
    ENOLCK = 37, "No record locks available";
    ENOSYS = 38, "Function not implemented";
    ENOTEMPTY = 39, "Directory not empty";
    ENODATA = 61, "No data available";
    ETIME = 62, "Timer expired";
    EBADMSG = 74, "Not a data message";
    EOVERFLOW = 75, "Value too large for defined data type";
    EILSEQ = 84, "Illegal byte sequence";
    ERESTART = 85, "Interrupted system call should be restarted";
    ENOTSOCK = 88, "Socket operation on non-socket";
    EMSGSIZE = 90, "Message too large";
    EOPNOTSUPP = 95, "Operation not supported on transport endpoint";
    EADDRINUSE = 98, "Address already in use";
    EADDRNOTAVAIL = 99, "Cannot assign requested address";
    ENOBUFS = 105, "No buffer space available";
    EISCONN = 106, "Transport endpoint is already connected";
    ENOTCONN = 107, "Transport endpoint is not connected";
    ETIMEDOUT = 110, "Connection timed out";
    ECONNREFUSED = 111, "Connection refused";
}

impl XenError {
    /// `EWOULDBLOCK` (11): Operation would block; `errno.h`'s alias of
    /// [`XenError::EAGAIN`], which [`XenError::name`] reports.
    pub const EWOULDBLOCK: XenError = XenError::EAGAIN;
    /// `EDEADLOCK` (35): `errno.h`'s alias of [`XenError::EDEADLK`], which
    /// [`XenError::name`] reports.
    pub const EDEADLOCK: XenError = XenError::EDEADLK;
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
            return Err(XenError::ENOSYS);
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
        assert_eq!(result(-22), Err(XenError::EINVAL));
        assert_eq!(XenError(-22).name(), "EINVAL");
        assert_eq!(XenError(-38).name(), "ENOSYS");
        assert_eq!(std::format!("{}", XenError(-1)), "EPERM (-1)");
        assert_eq!(std::format!("{:?}", XenError::EINVAL), "EINVAL (-22)");
        assert_eq!(XenError(-999).name(), "unknown error");
    }

    // The values as errno.h writes them, typed out again here so that a
    // slip in the macro's list shows.
    #[test]
    fn constants_are_the_negated_values_of_errno_h() {
        let expected = [
            (XenError::EPERM, -1),
            (XenError::ENOENT, -2),
            (XenError::ESRCH, -3),
            (XenError::EINTR, -4),
            (XenError::EIO, -5),
            (XenError::E2BIG, -7),
            (XenError::EAGAIN, -11),
            (XenError::EWOULDBLOCK, -11),
            (XenError::ENOMEM, -12),
            (XenError::EACCES, -13),
            (XenError::EFAULT, -14),
            (XenError::EBUSY, -16),
            (XenError::EEXIST, -17),
            (XenError::ENODEV, -19),
            (XenError::EINVAL, -22),
            (XenError::ENOSPC, -28),
            (XenError::EROFS, -30),
            (XenError::EDEADLK, -35),
            (XenError::EDEADLOCK, -35),
            (XenError::ENOSYS, -38),
            (XenError::ENOTEMPTY, -39),
            (XenError::ENODATA, -61),
            (XenError::ETIME, -62),
            (XenError::EILSEQ, -84),
            (XenError::ERESTART, -85),
            (XenError::EMSGSIZE, -90),
            (XenError::EOPNOTSUPP, -95),
            (XenError::ETIMEDOUT, -110),
            (XenError::ECONNREFUSED, -111),
        ];
        for (error, value) in expected {
            assert_eq!(error, XenError(value), "{error}");
        }
    }

    #[test]
    fn every_errno_of_the_header_is_named() {
        // 51 XEN_ERRNO lines, two of them aliases.
        assert_eq!(ERRNO_TABLE.len(), 49);
        for window in ERRNO_TABLE.windows(2) {
            assert!(window[0].1 < window[1].1, "{window:?} out of order");
        }
        for &(name, value) in ERRNO_TABLE {
            let error = XenError(-value);
            assert_eq!(error.name(), name);
            assert_ne!(error.description(), "unknown error", "{name}");
            assert_eq!(std::format!("{error}"), std::format!("{name} (-{value})"));
        }
        assert_eq!(XenError::EWOULDBLOCK.name(), "EAGAIN");
        assert_eq!(XenError::EDEADLOCK.name(), "EDEADLK");
        assert_eq!(XenError::EINVAL.description(), "Invalid argument");
        assert_eq!(XenError::EMSGSIZE.description(), "Message too large");
    }

    #[test]
    fn values_outside_the_table_are_unknown() {
        // Gaps in the table, success values, and the one value whose
        // negation overflows.
        for value in [0, 15, -15, 22, -40, -112, i64::MIN, i64::MAX] {
            assert_eq!(XenError(value).name(), "unknown error", "{value}");
            assert_eq!(XenError(value).description(), "unknown error");
        }
        assert_eq!(std::format!("{}", XenError(-15)), "unknown error (-15)");
    }
}
