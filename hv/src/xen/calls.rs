//! Typed Xen hypercalls: one function per operation the kernel makes, each
//! building the argument structure the Xen 4.17 public headers
//! (`xen/include/public/`, bound in [`bindings`](super::bindings)) define
//! for it and calling `hypercall::call` with exactly the arguments the
//! header's prototype lists. Every function cites its header.
//!
//! Errors are [`XenError`] (the negated `errno.h` value a hypercall
//! returns); the grant-table operations also report a per-operation
//! `status` from `grant_table.h`'s own code space, [`GntStatus`], hence
//! [`GnttabError`]. Batched PV MMU operations report how many entries Xen
//! took before the error ([`BatchError`]).
//!
//! A function is safe when no argument can break memory safety (Xen only
//! reads and writes the argument structure, on the caller's stack, during
//! the call); it is an `unsafe fn` with a `# Safety` section when Xen keeps
//! a pointer after the call, changes what memory an address reaches, or
//! keeps an address it will jump to.
//!
//! The pure parts (status codes, argument builders) build everywhere. The
//! calling functions exist for `target_os = "none"` (the kernel), where
//! they go through the hypercall page, and in host test builds, where the
//! same calls go to a recorder standing in for Xen (`fake` below), so the
//! argument marshalling is tested on the host. Register-preserving
//! assembly thunks that make hypercalls directly (the PV `irq_enable`,
//! halt and `iret` paths) are out of this module's reach.

use super::bindings::{
    mmu_update, mmuext_op, mmuext_op__bindgen_ty_1, mmuext_op__bindgen_ty_2, xen_pfn_t,
    GNTST_address_too_big, GNTST_bad_copy_arg, GNTST_bad_dev_addr, GNTST_bad_domain,
    GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_bad_virt_addr, GNTST_eagain,
    GNTST_general_error, GNTST_no_device_space, GNTST_no_space, GNTST_okay,
    GNTST_permission_denied, HVM_PARAM_CALLBACK_TYPE_VECTOR, MMUEXT_INVLPG_LOCAL,
    MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL,
    MMU_NORMAL_PT_UPDATE,
};
pub use super::hypercall::XenError;
use core::fmt;

// ---- Status and error types.

/// Defines the [`GntStatus`] constants and names from one list.
macro_rules! gnttab_statuses {
    ($($name:ident = $value:ident, $header:literal, $message:literal;)*) => {
        impl GntStatus {
            $(
                #[doc = concat!("`", stringify!($value), "`: ", $message, ".")]
                pub const $name: GntStatus = GntStatus($value as i16);
            )*

            /// The header's name (`"GNTST_bad_domain"`), or `"unknown
            /// status"`.
            pub fn name(self) -> &'static str {
                $(if self == GntStatus::$name {
                    return $header;
                })*
                "unknown status"
            }

            /// The header's message for it (`GNTTABOP_error_msgs`:
            /// `"unrecognised domain id"`), or `"unknown status"`.
            pub fn message(self) -> &'static str {
                $(if self == GntStatus::$name {
                    return $message;
                })*
                "unknown status"
            }
        }

        /// Every status of the header, in its order (for the tests).
        #[cfg(test)]
        const GNTST_TABLE: &[GntStatus] = &[$(GntStatus::$name),*];
    };
}

/// A grant-table operation's `status` field (`xen/include/public/
/// grant_table.h`, `enum grant_status`: `GNTST_*`, 0 or negative). It is
/// not an errno: the hypercall itself can succeed while an operation's
/// status reports failure.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GntStatus(pub i16);

// grant_table.h `GNTST_*` and `GNTTABOP_error_msgs`, in the header's order.
gnttab_statuses! {
    OKAY = GNTST_okay, "GNTST_okay", "okay";
    GENERAL_ERROR = GNTST_general_error, "GNTST_general_error", "undefined error";
    BAD_DOMAIN = GNTST_bad_domain, "GNTST_bad_domain", "unrecognised domain id";
    BAD_GNTREF = GNTST_bad_gntref, "GNTST_bad_gntref", "invalid grant reference";
    BAD_HANDLE = GNTST_bad_handle, "GNTST_bad_handle", "invalid mapping handle";
    BAD_VIRT_ADDR = GNTST_bad_virt_addr, "GNTST_bad_virt_addr", "invalid virtual address";
    BAD_DEV_ADDR = GNTST_bad_dev_addr, "GNTST_bad_dev_addr", "invalid device address";
    NO_DEVICE_SPACE = GNTST_no_device_space, "GNTST_no_device_space",
        "no spare translation slot in the I/O MMU";
    PERMISSION_DENIED = GNTST_permission_denied, "GNTST_permission_denied",
        "permission denied";
    BAD_PAGE = GNTST_bad_page, "GNTST_bad_page", "bad page";
    BAD_COPY_ARG = GNTST_bad_copy_arg, "GNTST_bad_copy_arg",
        "copy arguments cross page boundary";
    ADDRESS_TOO_BIG = GNTST_address_too_big, "GNTST_address_too_big",
        "page address size too large";
    EAGAIN = GNTST_eagain, "GNTST_eagain", "operation not done; try again";
    NO_SPACE = GNTST_no_space, "GNTST_no_space", "out of space";
}

impl GntStatus {
    /// `Ok` for `GNTST_okay`, the status as an error otherwise.
    pub fn check(status: i16) -> Result<(), GntStatus> {
        match GntStatus(status) {
            GntStatus::OKAY => Ok(()),
            error => Err(error),
        }
    }
}

impl fmt::Debug for GntStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Display for GntStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a grant-table operation failed: the hypercall itself (an errno), or
/// the operation's `status` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GnttabError {
    Xen(XenError),
    Status(GntStatus),
}

impl From<XenError> for GnttabError {
    fn from(error: XenError) -> Self {
        GnttabError::Xen(error)
    }
}

impl From<GntStatus> for GnttabError {
    fn from(status: GntStatus) -> Self {
        GnttabError::Status(status)
    }
}

impl fmt::Display for GnttabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GnttabError::Xen(error) => write!(f, "{error}"),
            GnttabError::Status(status) => write!(f, "{status}: {}", status.message()),
        }
    }
}

/// A batched PV MMU operation (`mmu_update`, `mmuext_op`) that Xen did not
/// finish: it applied the first `done` entries, then failed with `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchError {
    /// Entries applied, in order, before the failure.
    pub done: u32,
    pub error: XenError,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} after {} entries", self.error, self.done)
    }
}

/// The sizes `GNTTABOP_query_size` reports, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GnttabSize {
    /// Frames the table has now.
    pub nr_frames: u32,
    /// Frames it may grow to.
    pub max_nr_frames: u32,
}

// ---- Pure argument builders.

/// The `HVM_PARAM_CALLBACK_IRQ` value that delivers vCPU 0's event
/// upcalls as interrupt `vector` (`xen/include/public/hvm/params.h`:
/// `val[63:56]` = `HVM_PARAM_CALLBACK_TYPE_VECTOR`, `val[7:0]` = the
/// vector; check `XENFEAT_hvm_callback_vector` first).
pub const fn callback_via_vector(vector: u8) -> u64 {
    ((HVM_PARAM_CALLBACK_TYPE_VECTOR as u64) << 56) | vector as u64
}

/// An `MMU_NORMAL_PT_UPDATE` request (`xen/include/public/xen.h`, `struct
/// mmu_update`): store `value` into the page-table entry at machine
/// address `entry_machine_address` (8-byte aligned: bits 1:0 carry the
/// command).
pub const fn pt_update(entry_machine_address: u64, value: u64) -> mmu_update {
    mmu_update {
        ptr: entry_machine_address | MMU_NORMAL_PT_UPDATE as u64,
        val: value,
    }
}

/// An `MMUEXT_NEW_BASEPTR` operation (`xen/include/public/xen.h`, `struct
/// mmuext_op`): install the page-table base at machine frame `mfn`.
pub const fn mmuext_new_baseptr_op(mfn: xen_pfn_t) -> mmuext_op {
    mmuext_op {
        cmd: MMUEXT_NEW_BASEPTR,
        arg1: mmuext_op__bindgen_ty_1 { mfn },
        arg2: mmuext_op__bindgen_ty_2 { src_mfn: 0 },
    }
}

/// An `MMUEXT_PIN_L4_TABLE` operation (`xen.h`): validate and pin the
/// page at machine frame `mfn` as a top-level table.
pub const fn mmuext_pin_l4_op(mfn: xen_pfn_t) -> mmuext_op {
    mmuext_op {
        cmd: MMUEXT_PIN_L4_TABLE,
        arg1: mmuext_op__bindgen_ty_1 { mfn },
        arg2: mmuext_op__bindgen_ty_2 { src_mfn: 0 },
    }
}

/// An `MMUEXT_NEW_USER_BASEPTR` operation (`xen.h`, x86-64 only): the
/// top-level table Xen loads while the guest runs in user mode.
pub const fn mmuext_new_user_baseptr_op(mfn: xen_pfn_t) -> mmuext_op {
    mmuext_op {
        cmd: MMUEXT_NEW_USER_BASEPTR,
        arg1: mmuext_op__bindgen_ty_1 { mfn },
        arg2: mmuext_op__bindgen_ty_2 { src_mfn: 0 },
    }
}

/// An `MMUEXT_INVLPG_LOCAL` operation (`xen.h`): flush the local TLB's
/// entry for linear address `va`.
pub const fn mmuext_invlpg_local_op(va: u64) -> mmuext_op {
    mmuext_op {
        cmd: MMUEXT_INVLPG_LOCAL,
        arg1: mmuext_op__bindgen_ty_1 { linear_addr: va },
        arg2: mmuext_op__bindgen_ty_2 { src_mfn: 0 },
    }
}

/// An `MMUEXT_TLB_FLUSH_LOCAL` operation (`xen.h`: no arguments).
pub const fn mmuext_tlb_flush_local_op() -> mmuext_op {
    mmuext_op {
        cmd: MMUEXT_TLB_FLUSH_LOCAL,
        arg1: mmuext_op__bindgen_ty_1 { mfn: 0 },
        arg2: mmuext_op__bindgen_ty_2 { src_mfn: 0 },
    }
}

// ---- The calls.

#[cfg(any(target_os = "none", test))]
pub use typed::*;

#[cfg(any(target_os = "none", test))]
mod typed {
    use super::*;
    use crate::xen::bindings::*;
    use crate::xen::E820Entry;
    use core::ptr;

    /// One hypercall as it reaches Xen: its number and the five argument
    /// registers (RDI, RSI, RDX, R10, R8), unused ones zero.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) struct Hypercall {
        pub(super) op: u32,
        pub(super) args: [u64; 5],
    }

    /// Makes `call`.
    ///
    /// # Safety
    /// `call` must be what Xen's interface for `call.op` defines: the
    /// header's arguments, pointers to correctly laid out structures that
    /// are valid for what Xen does with them, during the call and after it
    /// if Xen keeps them.
    #[cfg(target_os = "none")]
    unsafe fn invoke(call: Hypercall) -> Result<u64, XenError> {
        let [a1, a2, a3, a4, a5] = call.args;
        // SAFETY: the caller vouches for the call (this function's
        // contract is `hypercall::call`'s).
        unsafe { crate::xen::hypercall::call(call.op, a1, a2, a3, a4, a5) }
    }

    /// Host tests: the call goes to the recorder standing in for Xen.
    ///
    /// # Safety
    /// As on the target: the recorder dereferences the pointers in `call`.
    #[cfg(not(target_os = "none"))]
    unsafe fn invoke(call: Hypercall) -> Result<u64, XenError> {
        super::fake::dispatch(call)
    }

    /// A pointer argument.
    fn arg<T>(value: &mut T) -> u64 {
        ptr::from_mut(value) as u64
    }

    /// `HYPERVISOR_<op>(cmd, arg)`, the shape of most Xen operations
    /// (event_channel_op, memory_op, hvm_op, sched_op).
    ///
    /// # Safety
    /// `T` must be the structure the header defines for `cmd` of `op`, and
    /// every pointer in it valid for what Xen does with it.
    unsafe fn cmd_op<T>(op: u32, cmd: u32, value: &mut T) -> Result<u64, XenError> {
        // SAFETY: the caller vouches for `T`; `value` is borrowed for the
        // call.
        unsafe {
            invoke(Hypercall {
                op,
                args: [u64::from(cmd), arg(value), 0, 0, 0],
            })
        }
    }

    /// `HYPERVISOR_<op>(cmd, NULL)`, for commands without an argument.
    ///
    /// # Safety
    /// `cmd` of `op` must take no argument (the header says `NULL`), or
    /// what it does must be safe (each caller argues it).
    unsafe fn cmd_null(op: u32, cmd: u32) -> Result<u64, XenError> {
        // SAFETY: as the caller vouches; Xen reads no memory.
        unsafe {
            invoke(Hypercall {
                op,
                args: [u64::from(cmd), 0, 0, 0, 0],
            })
        }
    }

    /// `HYPERVISOR_vcpu_op(cmd, vcpuid, extra_args)` (`xen/include/public/
    /// vcpu.h`), `extra_args` a pointer or 0 for `NULL`.
    ///
    /// # Safety
    /// `extra_args` must be 0 where the header says `NULL`, or point to
    /// the structure it defines for `cmd`, valid for what Xen does with it.
    unsafe fn vcpu_op(cmd: u32, vcpu: u32, extra_args: u64) -> Result<u64, XenError> {
        let call = Hypercall {
            op: __HYPERVISOR_vcpu_op,
            args: [u64::from(cmd), u64::from(vcpu), extra_args, 0, 0],
        };
        // SAFETY: the caller vouches for `extra_args`.
        unsafe { invoke(call) }
    }

    /// `HYPERVISOR_grant_table_op(cmd, args, count)` on one structure
    /// (`xen/include/public/grant_table.h`); the caller checks its
    /// `status`.
    ///
    /// # Safety
    /// `T` must be the structure `grant_table.h` defines for `cmd`, every
    /// pointer in it valid for what Xen does with it.
    unsafe fn grant_table_op<T>(cmd: u32, value: &mut T) -> Result<u64, XenError> {
        let call = Hypercall {
            op: __HYPERVISOR_grant_table_op,
            args: [u64::from(cmd), arg(value), 1, 0, 0],
        };
        // SAFETY: the caller vouches for `T`; one structure, borrowed for
        // the call.
        unsafe { invoke(call) }
    }

    // ---- HVM parameters (xen/include/public/hvm/hvm_op.h, params.h).

    /// `HYPERVISOR_hvm_op(HVMOP_get_param, &xen_hvm_param)` for this domain
    /// (`xen/include/public/hvm/hvm_op.h`): the value of HVM parameter
    /// `index` (`HVM_PARAM_*`, `hvm/params.h`).
    pub fn hvm_get_param(index: u32) -> Result<u64, XenError> {
        let mut param = xen_hvm_param {
            domid: DOMID_SELF,
            pad: 0,
            index,
            value: 0,
        };
        // SAFETY: HVMOP_get_param takes a xen_hvm_param (hvm_op.h), which
        // Xen reads and whose `value` it writes, here on the stack.
        unsafe { cmd_op(__HYPERVISOR_hvm_op, HVMOP_get_param, &mut param) }?;
        Ok(param.value)
    }

    /// `HYPERVISOR_hvm_op(HVMOP_set_param, &xen_hvm_param)` for this domain
    /// (`xen/include/public/hvm/hvm_op.h`): sets HVM parameter `index` to
    /// `value` (for the event upcall, `HVM_PARAM_CALLBACK_IRQ` with
    /// [`callback_via_vector`]).
    ///
    /// # Safety
    /// Some parameters make Xen or the toolstack act on guest memory or
    /// interrupts: `HVM_PARAM_VM_GENERATION_ID_ADDR` is an address the
    /// toolstack writes, `HVM_PARAM_CALLBACK_IRQ` a vector Xen raises. The
    /// value must be valid for `index` as `hvm/params.h` defines it: an
    /// address must be memory reserved for the purpose, a vector must have
    /// a handler expecting a plain interrupt frame (not an exception that
    /// pushes an error code).
    pub unsafe fn hvm_set_param(index: u32, value: u64) -> Result<(), XenError> {
        let mut param = xen_hvm_param {
            domid: DOMID_SELF,
            pad: 0,
            index,
            value,
        };
        // SAFETY: HVMOP_set_param takes a xen_hvm_param (hvm_op.h), on the
        // stack; the caller vouches for the value's meaning.
        unsafe { cmd_op(__HYPERVISOR_hvm_op, HVMOP_set_param, &mut param) }.map(drop)
    }

    // ---- Memory (xen/include/public/memory.h).

    /// `HYPERVISOR_memory_op(XENMEM_memory_map, &xen_memory_map)`
    /// (`xen/include/public/memory.h`): fills `map` with this domain's
    /// pseudo-physical memory map (E820 entries) and returns how many
    /// entries Xen stored. A map longer than `u32::MAX` entries is offered
    /// as `u32::MAX`.
    pub fn memory_map(map: &mut [E820Entry]) -> Result<usize, XenError> {
        let capacity = u32::try_from(map.len()).unwrap_or(u32::MAX);
        let mut request = xen_memory_map {
            nr_entries: capacity,
            buffer: __guest_handle_void {
                p: map.as_mut_ptr().cast(),
            },
        };
        // SAFETY: XENMEM_memory_map takes a xen_memory_map (memory.h), on
        // the stack; Xen writes at most `nr_entries` 20-byte E820 entries
        // at `buffer`, which `map` holds, and the count back.
        unsafe { cmd_op(__HYPERVISOR_memory_op, XENMEM_memory_map, &mut request) }?;
        Ok((request.nr_entries as usize).min(map.len()))
    }

    /// `HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xen_add_to_physmap)`
    /// for this domain (`xen/include/public/memory.h`): makes page `idx`
    /// of `space` (`XENMAPSPACE_shared_info`, `XENMAPSPACE_grant_table`,
    /// ...) appear at guest frame `gpfn` (translated guests only: HVM,
    /// PVH). `size` is 0: this is not for `XENMAPSPACE_gmfn_range`.
    ///
    /// # Safety
    /// Whatever was at `gpfn` is replaced (and the RAM frame that backed it
    /// given back to Xen): `gpfn` must be a frame nothing else uses, and
    /// the caller must not reach the old contents through it again.
    pub unsafe fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<(), XenError> {
        let mut request = xen_add_to_physmap {
            domid: DOMID_SELF,
            size: 0,
            space,
            idx,
            gpfn,
        };
        // SAFETY: XENMEM_add_to_physmap takes a xen_add_to_physmap
        // (memory.h), on the stack; the caller vouches for `gpfn`.
        unsafe { cmd_op(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &mut request) }.map(drop)
    }

    // ---- Event channels (xen/include/public/event_channel.h).

    /// `HYPERVISOR_event_channel_op(EVTCHNOP_send, &evtchn_send)`
    /// (`xen/include/public/event_channel.h`): signals the other end of
    /// `port`.
    pub fn evtchn_send(port: evtchn_port_t) -> Result<(), XenError> {
        let mut send = evtchn_send { port };
        // SAFETY: EVTCHNOP_send takes an evtchn_send (event_channel.h), on
        // the stack, which Xen only reads.
        unsafe { cmd_op(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &mut send) }.map(drop)
    }

    /// `HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &evtchn_bind_virq)`
    /// (`xen/include/public/event_channel.h`): binds virtual IRQ `virq`
    /// (`VIRQ_*`, `xen.h`) on `vcpu` to a new port, which it returns.
    pub fn evtchn_bind_virq(virq: u32, vcpu: u32) -> Result<evtchn_port_t, XenError> {
        let mut bind = evtchn_bind_virq {
            virq,
            vcpu,
            port: 0,
        };
        // SAFETY: EVTCHNOP_bind_virq takes an evtchn_bind_virq
        // (event_channel.h), on the stack; Xen writes its `port`.
        unsafe { cmd_op(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, &mut bind) }?;
        Ok(bind.port)
    }

    /// `HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &evtchn_unmask)`
    /// (`xen/include/public/event_channel.h`): unmasks `port`; Xen
    /// re-raises an event left pending while it was masked.
    pub fn evtchn_unmask(port: evtchn_port_t) -> Result<(), XenError> {
        let mut unmask = evtchn_unmask { port };
        // SAFETY: EVTCHNOP_unmask takes an evtchn_unmask (event_channel.h),
        // on the stack, which Xen only reads.
        unsafe { cmd_op(__HYPERVISOR_event_channel_op, EVTCHNOP_unmask, &mut unmask) }.map(drop)
    }

    /// `HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound,
    /// &evtchn_alloc_unbound)` (`xen/include/public/event_channel.h`): a
    /// new port of this domain that domain `remote_dom` may bind to.
    pub fn evtchn_alloc_unbound(remote_dom: domid_t) -> Result<evtchn_port_t, XenError> {
        let mut alloc = evtchn_alloc_unbound {
            dom: DOMID_SELF,
            remote_dom,
            port: 0,
        };
        // SAFETY: EVTCHNOP_alloc_unbound takes an evtchn_alloc_unbound
        // (event_channel.h), on the stack; Xen writes its `port`.
        unsafe {
            cmd_op(
                __HYPERVISOR_event_channel_op,
                EVTCHNOP_alloc_unbound,
                &mut alloc,
            )
        }?;
        Ok(alloc.port)
    }

    /// `HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain,
    /// &evtchn_bind_interdomain)` (`xen/include/public/event_channel.h`):
    /// connects a new local port to `remote_port` of domain `remote_dom`;
    /// returns the local port.
    pub fn evtchn_bind_interdomain(
        remote_dom: domid_t,
        remote_port: evtchn_port_t,
    ) -> Result<evtchn_port_t, XenError> {
        let mut bind = evtchn_bind_interdomain {
            remote_dom,
            remote_port,
            local_port: 0,
        };
        // SAFETY: EVTCHNOP_bind_interdomain takes an
        // evtchn_bind_interdomain (event_channel.h), on the stack; Xen
        // writes its `local_port`.
        unsafe {
            cmd_op(
                __HYPERVISOR_event_channel_op,
                EVTCHNOP_bind_interdomain,
                &mut bind,
            )
        }?;
        Ok(bind.local_port)
    }

    /// `HYPERVISOR_event_channel_op(EVTCHNOP_close, &evtchn_close)`
    /// (`xen/include/public/event_channel.h`): closes `port` (the other
    /// end, if any, becomes unbound).
    pub fn evtchn_close(port: evtchn_port_t) -> Result<(), XenError> {
        let mut close = evtchn_close { port };
        // SAFETY: EVTCHNOP_close takes an evtchn_close (event_channel.h),
        // on the stack, which Xen only reads.
        unsafe { cmd_op(__HYPERVISOR_event_channel_op, EVTCHNOP_close, &mut close) }.map(drop)
    }

    // ---- vCPU operations (xen/include/public/vcpu.h).

    /// `HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, vcpu,
    /// &vcpu_set_singleshot_timer)` (`xen/include/public/vcpu.h`): arms
    /// `vcpu`'s single-shot timer (delivered on `VIRQ_TIMER`) for Xen system
    /// time `timeout_abs_ns`. `flags`: `VCPU_SSHOTTMR_future` asks for
    /// `-ETIME` instead of an immediate event when the time has passed.
    pub fn vcpu_set_singleshot_timer(
        vcpu: u32,
        timeout_abs_ns: u64,
        flags: u32,
    ) -> Result<(), XenError> {
        let mut timer = vcpu_set_singleshot_timer {
            timeout_abs_ns,
            flags,
        };
        // SAFETY: VCPUOP_set_singleshot_timer takes a
        // vcpu_set_singleshot_timer (vcpu.h), on the stack, which Xen only
        // reads.
        unsafe { vcpu_op(VCPUOP_set_singleshot_timer, vcpu, arg(&mut timer)) }.map(drop)
    }

    /// `HYPERVISOR_vcpu_op(VCPUOP_stop_singleshot_timer, vcpu, NULL)`
    /// (`xen/include/public/vcpu.h`): disarms `vcpu`'s single-shot timer.
    pub fn vcpu_stop_singleshot_timer(vcpu: u32) -> Result<(), XenError> {
        // SAFETY: VCPUOP_stop_singleshot_timer takes NULL (vcpu.h).
        unsafe { vcpu_op(VCPUOP_stop_singleshot_timer, vcpu, 0) }.map(drop)
    }

    /// `HYPERVISOR_vcpu_op(VCPUOP_stop_periodic_timer, vcpu, NULL)`
    /// (`xen/include/public/vcpu.h`): stops `vcpu`'s periodic timer (a PV
    /// vCPU starts with a 100 Hz one on `VIRQ_TIMER`).
    pub fn vcpu_stop_periodic_timer(vcpu: u32) -> Result<(), XenError> {
        // SAFETY: VCPUOP_stop_periodic_timer takes NULL (vcpu.h).
        unsafe { vcpu_op(VCPUOP_stop_periodic_timer, vcpu, 0) }.map(drop)
    }

    /// `HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, vcpu,
    /// &vcpu_register_runstate_memory_area)` (`xen/include/public/
    /// vcpu.h`): asks Xen to keep `vcpu`'s runstate up to date at `area`
    /// (registered by virtual address, as x86 wants).
    ///
    /// # Safety
    /// Xen writes `area` every time the vCPU is scheduled, for as long as
    /// it stays registered (until another area replaces it, or the domain
    /// ends): it must point to a `vcpu_runstate_info` that stays mapped,
    /// writable and used for nothing else that long. The guest reads it
    /// while Xen may be writing: with volatile reads and the
    /// `XEN_RUNSTATE_UPDATE` protocol, never through a `&` reference.
    pub unsafe fn vcpu_register_runstate_memory_area(
        vcpu: u32,
        area: *mut vcpu_runstate_info,
    ) -> Result<(), XenError> {
        let mut register = vcpu_register_runstate_memory_area {
            addr: vcpu_register_runstate_memory_area__bindgen_ty_1 { v: area },
        };
        // SAFETY: VCPUOP_register_runstate_memory_area takes a
        // vcpu_register_runstate_memory_area (vcpu.h), on the stack; the
        // caller vouches for the area Xen keeps.
        unsafe {
            vcpu_op(
                VCPUOP_register_runstate_memory_area,
                vcpu,
                arg(&mut register),
            )
        }
        .map(drop)
    }

    // ---- Scheduler operations (xen/include/public/sched.h).

    /// `HYPERVISOR_sched_op(SCHEDOP_shutdown, &sched_shutdown)`
    /// (`xen/include/public/sched.h`): stops the domain for `reason`
    /// (`SHUTDOWN_poweroff`, `SHUTDOWN_reboot`, `SHUTDOWN_crash`, ...:
    /// `enum sched_shutdown_reason`). Does not return when Xen takes it; an
    /// error is Xen refusing it.
    ///
    /// `SHUTDOWN_suspend` is refused with `EINVAL`, without a call: it
    /// takes a third argument and returns, which [`sched_suspend`] handles.
    pub fn sched_shutdown(reason: u32) -> Result<(), XenError> {
        if reason == SHUTDOWN_suspend {
            return Err(XenError::EINVAL);
        }
        let mut shutdown = sched_shutdown { reason };
        // SAFETY: SCHEDOP_shutdown takes a sched_shutdown (sched.h), on the
        // stack, which Xen only reads; SHUTDOWN_suspend, the one reason
        // taking a third argument, was refused above.
        unsafe { cmd_op(__HYPERVISOR_sched_op, SCHEDOP_shutdown, &mut shutdown) }.map(drop)
    }

    /// How a suspend ended ([`sched_suspend`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Resumed {
        /// In a new domain (after `xl restore` or a migration): every
        /// event channel, grant and registration is gone, and under PV the
        /// machine frames changed.
        NewDomain,
        /// In the same domain (`xl save -c`, a failed save or migration):
        /// the toolstack made the call return 1 (`XEN_ELFNOTE_SUSPEND_CANCEL`).
        Cancelled,
    }

    /// `HYPERVISOR_sched_op(SCHEDOP_shutdown, &{SHUTDOWN_suspend}, arg)`
    /// (`xen/include/public/sched.h`): the domain stops here for the
    /// toolstack to save it, and the call returns when it runs again. A PV
    /// guest passes its start info's machine frame as `frame` (the toolstack
    /// finds the start info through it, and rewrites it for the new
    /// domain); PVH passes 0. The return value tells where it runs now.
    ///
    /// # Safety
    /// The caller must have made the domain ready to be saved (for PV:
    /// no mapping of a frame it does not own) and must redo, after a
    /// [`Resumed::NewDomain`], everything a new domain lacks.
    pub unsafe fn sched_suspend(frame: u64) -> Result<Resumed, XenError> {
        let mut shutdown = sched_shutdown {
            reason: SHUTDOWN_suspend,
        };
        // SAFETY: SCHEDOP_shutdown takes a sched_shutdown, on the stack,
        // which Xen only reads; SHUTDOWN_suspend's third argument is a
        // frame number Xen does not dereference (the toolstack reads it);
        // the caller prepared the domain.
        let result = unsafe {
            invoke(Hypercall {
                op: __HYPERVISOR_sched_op,
                args: [u64::from(SCHEDOP_shutdown), arg(&mut shutdown), frame, 0, 0],
            })
        }?;
        Ok(if result == 0 {
            Resumed::NewDomain
        } else {
            Resumed::Cancelled
        })
    }

    /// `HYPERVISOR_sched_op(SCHEDOP_block, NULL)` (`xen/include/public/
    /// sched.h`): sleeps until an event is pending for this vCPU. With
    /// upcalls masked, Xen unmasks them atomically and checks for pending
    /// events first (no lost wake-up); the event is delivered as the call
    /// returns.
    pub fn sched_block() -> Result<(), XenError> {
        // SAFETY: SCHEDOP_block takes NULL (sched.h).
        unsafe { cmd_null(__HYPERVISOR_sched_op, SCHEDOP_block) }.map(drop)
    }

    /// `HYPERVISOR_sched_op(SCHEDOP_poll, &sched_poll)` (`xen/include/
    /// public/sched.h`): sleeps until one of `ports` is pending or Xen
    /// system time reaches `timeout_abs_ns` (0: no timeout). No ports and
    /// no timeout sleeps for good. Xen takes at most 128 ports
    /// (`-EINVAL` beyond); more than `u32::MAX` is refused here the same
    /// way.
    pub fn sched_poll(ports: &[evtchn_port_t], timeout_abs_ns: u64) -> Result<(), XenError> {
        let nr_ports = u32::try_from(ports.len()).map_err(|_| XenError::EINVAL)?;
        let mut poll = sched_poll {
            ports: __guest_handle_evtchn_port_t {
                // Xen only reads the ports (the handle type is not const).
                p: ports.as_ptr().cast_mut(),
            },
            nr_ports,
            timeout: timeout_abs_ns,
        };
        // SAFETY: SCHEDOP_poll takes a sched_poll (sched.h), on the stack;
        // Xen reads `nr_ports` ports at `ports`, which the slice holds.
        unsafe { cmd_op(__HYPERVISOR_sched_op, SCHEDOP_poll, &mut poll) }.map(drop)
    }

    // ---- Console (xen/include/public/xen.h, HYPERVISOR_console_io).

    /// `HYPERVISOR_console_io(CONSOLEIO_write, count, buffer)`
    /// (`xen/include/public/xen.h`): writes `bytes` to Xen's console (all
    /// of them for dom0; a domU's non-printable characters are dropped and
    /// its output may wait for a newline, and Xen may refuse a domU
    /// altogether). Returns the bytes passed: at most `u32::MAX`.
    pub fn console_write(bytes: &[u8]) -> Result<usize, XenError> {
        let count = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let call = Hypercall {
            op: __HYPERVISOR_console_io,
            args: [
                u64::from(CONSOLEIO_write),
                u64::from(count),
                bytes.as_ptr() as u64,
                0,
                0,
            ],
        };
        // SAFETY: CONSOLEIO_write reads `count` bytes at `buffer` (xen.h),
        // which the slice holds.
        unsafe { invoke(call) }?;
        Ok(count as usize)
    }

    /// `HYPERVISOR_console_io(CONSOLEIO_read, count, buffer)`
    /// (`xen/include/public/xen.h`): reads what is waiting on Xen's console
    /// (dom0: Xen refuses others) into `buffer`; returns how many bytes.
    /// Xen takes at most 2 GiB at once.
    pub fn console_read(buffer: &mut [u8]) -> Result<usize, XenError> {
        let count = u32::try_from(buffer.len())
            .unwrap_or(u32::MAX)
            .min(i32::MAX as u32);
        let call = Hypercall {
            op: __HYPERVISOR_console_io,
            args: [
                u64::from(CONSOLEIO_read),
                u64::from(count),
                buffer.as_mut_ptr() as u64,
                0,
                0,
            ],
        };
        // SAFETY: CONSOLEIO_read writes at most `count` bytes at `buffer`
        // (xen.h), which the slice holds.
        let read = unsafe { invoke(call) }?;
        Ok((read as usize).min(count as usize))
    }

    // ---- Version (xen/include/public/version.h).

    /// `HYPERVISOR_xen_version(cmd, NULL)` (`xen/include/public/
    /// version.h`), for the commands whose argument is `NULL`:
    /// `XENVER_version` (returns major:minor, 16:16) and `XENVER_pagesize`
    /// (returns the host page size). The others write a structure at their
    /// argument and are refused with `EINVAL`, without a call.
    ///
    /// `XENVER_version` being the cheapest hypercall, it is also how a PV
    /// guest has Xen deliver events that arrived while it had them masked:
    /// every hypercall returns through Xen's pending-event check.
    pub fn xen_version(cmd: u32) -> Result<u64, XenError> {
        if cmd != XENVER_version && cmd != XENVER_pagesize {
            return Err(XenError::EINVAL);
        }
        // SAFETY: XENVER_version and XENVER_pagesize take NULL
        // (version.h); Xen reads and writes no memory of ours.
        unsafe { cmd_null(__HYPERVISOR_xen_version, cmd) }
    }

    // ---- Grant tables (xen/include/public/grant_table.h).

    /// `HYPERVISOR_grant_table_op(GNTTABOP_query_size, &gnttab_query_size,
    /// 1)` for this domain (`xen/include/public/grant_table.h`): the grant
    /// table's current and maximum size in frames.
    pub fn gnttab_query_size() -> Result<GnttabSize, GnttabError> {
        let mut query = gnttab_query_size {
            dom: DOMID_SELF,
            nr_frames: 0,
            max_nr_frames: 0,
            status: 0,
        };
        // SAFETY: GNTTABOP_query_size takes a gnttab_query_size
        // (grant_table.h), on the stack; Xen writes its OUT fields.
        unsafe { grant_table_op(GNTTABOP_query_size, &mut query) }?;
        GntStatus::check(query.status)?;
        Ok(GnttabSize {
            nr_frames: query.nr_frames,
            max_nr_frames: query.max_nr_frames,
        })
    }

    /// `HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &gnttab_setup_table,
    /// 1)` for this domain (`xen/include/public/grant_table.h`): sets the
    /// table up with at least `frames.len()` frames and fills `frames` with
    /// the first `frames.len()` of them (machine frames for a PV guest,
    /// which maps them itself). More than `u32::MAX` frames is refused with
    /// `EINVAL`.
    pub fn gnttab_setup_table(frames: &mut [xen_pfn_t]) -> Result<(), GnttabError> {
        let nr_frames = u32::try_from(frames.len()).map_err(|_| XenError::EINVAL)?;
        let mut setup = gnttab_setup_table {
            dom: DOMID_SELF,
            nr_frames,
            status: 0,
            frame_list: __guest_handle_xen_pfn_t {
                p: frames.as_mut_ptr(),
            },
        };
        // SAFETY: GNTTABOP_setup_table takes a gnttab_setup_table
        // (grant_table.h), on the stack; Xen writes its status and
        // `nr_frames` frame numbers at `frame_list`, which `frames` holds.
        unsafe { grant_table_op(GNTTABOP_setup_table, &mut setup) }?;
        GntStatus::check(setup.status)?;
        Ok(())
    }

    // ---- PV MMU (xen/include/public/xen.h).

    /// `HYPERVISOR_mmu_update(reqs, count, pdone, DOMID_SELF)`
    /// (`xen/include/public/xen.h`): applies the page-table updates `reqs`
    /// (see [`pt_update`]) in order, Xen validating each. Returns how many
    /// were applied (all of them); on a refusal, how many were applied
    /// before it and the error. Xen reporting success for fewer than all
    /// (which its continuations rule out) is an `EIO` error. More than
    /// `u32::MAX` requests are refused with `EINVAL`, none applied.
    ///
    /// # Safety
    /// The updates change what addresses reach: no mapping the kernel
    /// relies on (its code, data, stacks, anything referenced) may be
    /// removed or repointed by them, and nothing may be reached through a
    /// removed mapping afterwards (or before the TLB is flushed where it
    /// is stale).
    pub unsafe fn mmu_update(reqs: &[mmu_update]) -> Result<u32, BatchError> {
        // SAFETY: the caller vouches for the updates.
        unsafe { batch(__HYPERVISOR_mmu_update, reqs) }
    }

    /// `HYPERVISOR_mmuext_op(uops, count, pdone, DOMID_SELF)`
    /// (`xen/include/public/xen.h`): performs the extended MMU operations
    /// `ops` (see the `mmuext_*_op` builders) in order. Results as
    /// [`mmu_update()`]'s.
    ///
    /// # Safety
    /// Several operations change the address space (`MMUEXT_NEW_BASEPTR`,
    /// unpinning, `MMUEXT_SET_LDT`, `MMUEXT_CLEAR_PAGE`/`COPY_PAGE` on a
    /// frame in use): each must leave every mapping the kernel relies on
    /// valid. `TLB_FLUSH_MULTI`/`INVLPG_MULTI` read a vCPU mask through
    /// their pointer, which must be valid for the call.
    pub unsafe fn mmuext_op(ops: &[mmuext_op]) -> Result<u32, BatchError> {
        // SAFETY: the caller vouches for the operations.
        unsafe { batch(__HYPERVISOR_mmuext_op, ops) }
    }

    /// The shared shape of `mmu_update` and `mmuext_op`: `(entries, count,
    /// pdone, foreigndom)` (`xen.h`).
    ///
    /// # Safety
    /// `T` must be the entry type of `op` (`mmu_update`, `mmuext_op`), and
    /// the entries safe to apply.
    unsafe fn batch<T>(op: u32, entries: &[T]) -> Result<u32, BatchError> {
        let count = u32::try_from(entries.len()).map_err(|_| BatchError {
            done: 0,
            error: XenError::EINVAL,
        })?;
        let mut done = 0u32;
        let call = Hypercall {
            op,
            args: [
                entries.as_ptr() as u64,
                u64::from(count),
                arg(&mut done),
                u64::from(DOMID_SELF),
                0,
            ],
        };
        // SAFETY: Xen reads `count` entries at the slice (the headers'
        // arrays are const or only read) and writes the done counter, on
        // the stack; the caller vouches for the entries' effect.
        match unsafe { invoke(call) } {
            Ok(_) if done == count => Ok(done),
            Ok(_) => Err(BatchError {
                done,
                error: XenError::EIO,
            }),
            Err(error) => Err(BatchError {
                done: done.min(count),
                error,
            }),
        }
    }

    /// One `mmuext_op`, its error alone.
    ///
    /// # Safety
    /// As [`mmuext_op`].
    unsafe fn mmuext_one(op: mmuext_op) -> Result<(), XenError> {
        // SAFETY: the caller vouches for the operation.
        unsafe { mmuext_op(&[op]) }
            .map(drop)
            .map_err(|partial| partial.error)
    }

    /// `MMUEXT_NEW_BASEPTR` (`xen/include/public/xen.h`): switches to the
    /// pinned page tables whose top level is machine frame `mfn`.
    ///
    /// # Safety
    /// The new tables must map everything the kernel relies on (this code,
    /// its stack, its data) where it is now, and be pinned or valid top-
    /// level tables Xen accepts.
    pub unsafe fn mmuext_new_baseptr(mfn: xen_pfn_t) -> Result<(), XenError> {
        // SAFETY: the caller vouches for the tables.
        unsafe { mmuext_one(mmuext_new_baseptr_op(mfn)) }
    }

    /// `MMUEXT_PIN_L4_TABLE`: pins the top-level table at `mfn`.
    ///
    /// # Safety
    /// The frame must be a page-table page the guest owns, mapped nowhere
    /// writable, whose entries Xen will accept.
    pub unsafe fn mmuext_pin_l4(mfn: xen_pfn_t) -> Result<(), XenError> {
        // SAFETY: the caller vouches for the table.
        unsafe { mmuext_one(mmuext_pin_l4_op(mfn)) }
    }

    /// `MMUEXT_NEW_USER_BASEPTR`: the table for guest user mode.
    ///
    /// # Safety
    /// `mfn` must be a pinned top-level table that maps no kernel memory
    /// user code may not see.
    pub unsafe fn mmuext_new_user_baseptr(mfn: xen_pfn_t) -> Result<(), XenError> {
        // SAFETY: the caller vouches for the table.
        unsafe { mmuext_one(mmuext_new_user_baseptr_op(mfn)) }
    }

    /// `HYPERVISOR_set_segment_base(which, base)`: FS or GS bases of a
    /// 64-bit PV guest (`SEGBASE_FS`, ...).
    pub fn set_segment_base(which: u32, base: u64) -> Result<(), XenError> {
        let call = Hypercall {
            op: __HYPERVISOR_set_segment_base,
            args: [u64::from(which), base, 0, 0, 0],
        };
        // SAFETY: no memory is passed; a segment base only changes where
        // FS- or GS-relative accesses of the guest go.
        unsafe { invoke(call) }.map(drop)
    }

    /// `MMUEXT_INVLPG_LOCAL` (`xen/include/public/xen.h`): flushes the
    /// local TLB's entry for linear address `va`.
    pub fn mmuext_invlpg_local(va: u64) -> Result<(), XenError> {
        // SAFETY: a TLB flush only drops cached translations; it changes no
        // mapping.
        unsafe { mmuext_one(mmuext_invlpg_local_op(va)) }
    }

    /// `MMUEXT_TLB_FLUSH_LOCAL` (`xen/include/public/xen.h`): flushes the
    /// local TLB.
    pub fn mmuext_tlb_flush_local() -> Result<(), XenError> {
        // SAFETY: a TLB flush only drops cached translations; it changes no
        // mapping.
        unsafe { mmuext_one(mmuext_tlb_flush_local_op()) }
    }

    /// `HYPERVISOR_update_va_mapping(va, val, flags)` (`xen/include/public/
    /// xen.h`): sets the page-table entry that maps `va` in the current
    /// address space to `pte` (machine address and flags), then flushes as
    /// `flags` says (`UVMF_INVLPG`, `UVMF_TLB_FLUSH`, `UVMF_NONE`, with
    /// `UVMF_LOCAL` or `UVMF_ALL`).
    ///
    /// # Safety
    /// `va` must be a page reserved for this mapping (nothing the kernel
    /// relies on may be mapped there), and with `UVMF_MULTI`, `flags` must
    /// carry a pointer to a valid vCPU bitmap.
    pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> Result<(), XenError> {
        let call = Hypercall {
            op: __HYPERVISOR_update_va_mapping,
            args: [va, pte, flags, 0, 0],
        };
        // SAFETY: no memory is passed (a bitmap in `flags` aside, which the
        // caller vouches for); the caller vouches for the page.
        unsafe { invoke(call) }.map(drop)
    }

    // ---- PV entry points (xen/include/public/arch-x86/xen.h,
    // arch-x86_64.h).

    /// `HYPERVISOR_stack_switch(ss, esp)` (`xen/include/public/arch-x86/
    /// xen.h`): the kernel stack (segment `ss`, usually `FLAT_KERNEL_SS`,
    /// and pointer `sp`) Xen switches to on an entry from user mode.
    ///
    /// # Safety
    /// Xen writes exception and event frames below `sp` on every entry
    /// from user mode until the next switch: `sp` must be the top of a
    /// kernel stack that stays mapped, writable and unused by anything
    /// else that long.
    pub unsafe fn stack_switch(ss: u64, sp: u64) -> Result<(), XenError> {
        let call = Hypercall {
            op: __HYPERVISOR_stack_switch,
            args: [ss, sp, 0, 0, 0],
        };
        // SAFETY: no memory is passed; the caller vouches for the stack
        // Xen keeps.
        unsafe { invoke(call) }.map(drop)
    }

    /// `HYPERVISOR_set_trap_table(traps)` (`xen/include/public/arch-x86/
    /// xen.h`): installs the trap handlers of `traps`, which must end with
    /// the header's sentinel, an entry whose `address` is 0 (`EINVAL`
    /// without a call otherwise). Xen copies the table; it may be freed
    /// afterwards.
    ///
    /// # Safety
    /// Xen enters each `address` (with segment `cs`) on its vector, with
    /// its frame: each must be kernel code written as an entry point for
    /// that vector, mapped for as long as the table is installed.
    pub unsafe fn set_trap_table(traps: &[trap_info]) -> Result<(), XenError> {
        if !matches!(traps.last(), Some(sentinel) if sentinel.address == 0) {
            return Err(XenError::EINVAL);
        }
        let call = Hypercall {
            op: __HYPERVISOR_set_trap_table,
            args: [traps.as_ptr() as u64, 0, 0, 0, 0],
        };
        // SAFETY: Xen reads the entries up to the sentinel, which the
        // slice holds (checked above); the caller vouches for the handlers.
        unsafe { invoke(call) }.map(drop)
    }

    /// `HYPERVISOR_set_callbacks` (`xen/include/public/arch-x86_64.h`):
    /// where Xen delivers events (`event_address`) and where it goes when
    /// it cannot load a guest segment register (`failsafe_address`).
    ///
    /// The header's comment shows the 32-bit form (selector, address pairs,
    /// "ignored (???)" on x86_64); a 64-bit guest's call, as Xen implements
    /// it (`do_set_callbacks` in `xen/arch/x86/pv/callback.c`), takes
    /// `(event_address, failsafe_address, syscall_address)`. The syscall
    /// callback is passed as 0: none.
    ///
    /// # Safety
    /// Xen jumps to both addresses, with its own frames, whenever an event
    /// is delivered or a segment load fails: each must be kernel code
    /// written as that entry point, mapped for as long as it is
    /// registered.
    pub unsafe fn set_callbacks(event_address: u64, failsafe_address: u64) -> Result<(), XenError> {
        // SAFETY: as below, without a syscall entry.
        unsafe { set_callbacks_with_syscall(event_address, failsafe_address, 0) }
    }

    /// `HYPERVISOR_set_callbacks(event, failsafe, syscall)` of a 64-bit
    /// PV guest: also where `syscall` from guest user mode enters (0:
    /// none).
    ///
    /// # Safety
    /// As [`set_callbacks`]; the syscall entry takes Xen's bounce frame
    /// (RCX, R11, RIP, CS, RFLAGS, RSP, SS).
    pub unsafe fn set_callbacks_with_syscall(
        event_address: u64,
        failsafe_address: u64,
        syscall_address: u64,
    ) -> Result<(), XenError> {
        let call = Hypercall {
            op: __HYPERVISOR_set_callbacks,
            args: [event_address, failsafe_address, syscall_address, 0, 0],
        };
        // SAFETY: no memory is passed; the caller vouches for the entry
        // points.
        unsafe { invoke(call) }.map(drop)
    }
}

// ---- Host tests: a recorder in place of Xen.

/// Stands in for Xen in host tests: each test installs a handler that sees
/// the [`typed::Hypercall`] (and may read and write through its pointers,
/// which point into the caller's live frame) and returns RAX.
#[cfg(all(test, not(target_os = "none")))]
mod fake {
    use super::typed::Hypercall;
    use super::XenError;
    use core::cell::RefCell;
    use std::boxed::Box;
    use std::vec::Vec;

    type Handler = Box<dyn FnMut(Hypercall) -> i64>;

    std::thread_local! {
        static HANDLER: RefCell<Option<Handler>> = RefCell::new(None);
        static CALLS: RefCell<Vec<Hypercall>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn dispatch(call: Hypercall) -> Result<u64, XenError> {
        CALLS.with(|calls| calls.borrow_mut().push(call));
        let rax = HANDLER.with(|handler| {
            let mut handler = handler.borrow_mut();
            let handler = handler.as_mut().expect("a hypercall no test expected");
            handler(call)
        });
        crate::xen::hypercall::result(rax)
    }

    /// Runs `body` with `xen` answering its hypercalls; returns its result
    /// and the calls made.
    pub(super) fn with<R>(
        xen: impl FnMut(Hypercall) -> i64 + 'static,
        body: impl FnOnce() -> R,
    ) -> (R, Vec<Hypercall>) {
        HANDLER.with(|handler| *handler.borrow_mut() = Some(Box::new(xen)));
        CALLS.with(|calls| calls.borrow_mut().clear());
        let result = body();
        HANDLER.with(|handler| *handler.borrow_mut() = None);
        (result, CALLS.with(|calls| calls.take()))
    }
}

// The headers' lower-case constant names, matched as patterns.
#[allow(non_upper_case_globals)]
#[cfg(test)]
mod tests {
    use super::typed::Hypercall;
    use super::*;
    use crate::xen::bindings::*;
    use crate::xen::E820Entry;
    use std::vec::Vec;

    /// The one call `calls` should hold.
    fn only(calls: &[Hypercall]) -> Hypercall {
        assert_eq!(calls.len(), 1, "{calls:?}");
        calls[0]
    }

    // ---- Status codes and errors.

    #[test]
    fn grant_statuses_are_the_headers() {
        // grant_table.h: GNTST_okay 0 down to GNTST_no_space -13.
        assert_eq!(GNTST_TABLE.len(), 14);
        for (i, status) in GNTST_TABLE.iter().enumerate() {
            assert_eq!(status.0, -(i as i16));
            assert!(status.name().starts_with("GNTST_"));
            assert_ne!(status.message(), "unknown status");
        }
        assert_eq!(GntStatus::BAD_DOMAIN, GntStatus(-2));
        assert_eq!(GntStatus::NO_SPACE, GntStatus(-13));
        assert_eq!(GntStatus::BAD_GNTREF.name(), "GNTST_bad_gntref");
        assert_eq!(GntStatus::EAGAIN.message(), "operation not done; try again");
        assert_eq!(GntStatus(-14).name(), "unknown status");
        assert_eq!(GntStatus(1).message(), "unknown status");
        assert_eq!(
            std::format!("{}", GntStatus::PERMISSION_DENIED),
            "GNTST_permission_denied (-8)"
        );
    }

    #[test]
    fn a_zero_status_is_success() {
        assert_eq!(GntStatus::check(0), Ok(()));
        assert_eq!(GntStatus::check(-1), Err(GntStatus::GENERAL_ERROR));
        assert_eq!(GntStatus::check(-99), Err(GntStatus(-99)));
    }

    #[test]
    fn errors_display_their_names() {
        assert_eq!(
            std::format!("{}", GnttabError::Status(GntStatus::BAD_DOMAIN)),
            "GNTST_bad_domain (-2): unrecognised domain id"
        );
        assert_eq!(
            std::format!("{}", GnttabError::from(XenError::EFAULT)),
            "EFAULT (-14)"
        );
        assert_eq!(
            std::format!("{:?}", GnttabError::Xen(XenError::EINVAL)),
            "Xen(EINVAL (-22))"
        );
        let partial = BatchError {
            done: 3,
            error: XenError::EINVAL,
        };
        assert_eq!(std::format!("{partial}"), "EINVAL (-22) after 3 entries");
    }

    // ---- Builders.

    #[test]
    fn callback_values() {
        // params.h: type in 63:56, vector in 7:0.
        assert_eq!(callback_via_vector(0xf3), 0x0200_0000_0000_00f3);
        assert_eq!(
            callback_via_vector(0x20) & HVM_PARAM_CALLBACK_IRQ_TYPE_MASK,
            2 << 56
        );
    }

    #[test]
    fn page_table_updates() {
        let update = pt_update(0x1234_5000 + 8 * 7, 0x8000_0000_0abc_d067);
        assert_eq!(update.ptr, 0x1234_5038);
        assert_eq!(update.ptr & 3, u64::from(MMU_NORMAL_PT_UPDATE));
        assert_eq!(update.val, 0x8000_0000_0abc_d067);
    }

    #[test]
    fn mmuext_operations() {
        let base = mmuext_new_baseptr_op(0x4_2000);
        let invlpg = mmuext_invlpg_local_op(0xffff_8000_0010_0000);
        let flush = mmuext_tlb_flush_local_op();
        assert_eq!(base.cmd, MMUEXT_NEW_BASEPTR);
        assert_eq!(invlpg.cmd, MMUEXT_INVLPG_LOCAL);
        assert_eq!(flush.cmd, MMUEXT_TLB_FLUSH_LOCAL);
        // SAFETY: plain-integer union members, initialised by the builders
        // (every member is 8 bytes wide but nr_ents, read as its 4 low
        // bytes of an 8-byte zero).
        unsafe {
            assert_eq!(base.arg1.mfn, 0x4_2000);
            assert_eq!(invlpg.arg1.linear_addr, 0xffff_8000_0010_0000);
            assert_eq!(flush.arg1.mfn, 0);
            for op in [base, invlpg, flush] {
                assert_eq!(op.arg2.src_mfn, 0);
                assert_eq!(op.arg2.nr_ents, 0);
            }
        }
    }

    // ---- Calls: each as Xen sees it.

    /// `call.args[i]` as a reference to the `T` it points to.
    ///
    /// # Safety
    /// The argument must point to a live `T` (the caller's frame, during
    /// the call).
    unsafe fn pointee<'a, T>(call: &Hypercall, i: usize) -> &'a mut T {
        // SAFETY: as the caller vouches.
        unsafe { &mut *(call.args[i] as *mut T) }
    }

    #[test]
    fn hvm_params() {
        let (value, calls) = fake::with(
            |call| {
                // SAFETY: HVMOP_get_param's argument, live during the call.
                let param: &mut xen_hvm_param = unsafe { pointee(&call, 1) };
                assert_eq!((param.domid, param.index), (DOMID_SELF, 17));
                param.value = 0xfeff;
                0
            },
            || hvm_get_param(HVM_PARAM_CONSOLE_PFN),
        );
        assert_eq!(value, Ok(0xfeff));
        let call = only(&calls);
        assert_eq!(call.op, __HYPERVISOR_hvm_op);
        assert_eq!(call.args[0], u64::from(HVMOP_get_param));
        assert_eq!(call.args[2..], [0, 0, 0]);

        let (result, calls) = fake::with(
            |call| {
                // SAFETY: HVMOP_set_param's argument, live during the call.
                let param: &mut xen_hvm_param = unsafe { pointee(&call, 1) };
                assert_eq!(param.domid, DOMID_SELF);
                assert_eq!(param.index, HVM_PARAM_CALLBACK_IRQ);
                assert_eq!(param.value, callback_via_vector(0xf3));
                0
            },
            // SAFETY: the recorder, not Xen: nothing is delivered.
            || unsafe { hvm_set_param(HVM_PARAM_CALLBACK_IRQ, callback_via_vector(0xf3)) },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(only(&calls).args[0], u64::from(HVMOP_set_param));

        let (result, _) = fake::with(|_| -3, || hvm_get_param(HVM_PARAM_STORE_PFN));
        assert_eq!(result, Err(XenError::ESRCH));
    }

    #[test]
    fn memory_map_fills_the_slice() {
        let mut map = [E820Entry::default(); 4];
        let (count, calls) = fake::with(
            |call| {
                // SAFETY: XENMEM_memory_map's argument, live during the call.
                let request: &mut xen_memory_map = unsafe { pointee(&call, 1) };
                assert_eq!(request.nr_entries, 4);
                let entries = request.buffer.p.cast::<E820Entry>();
                for i in 0..2 {
                    // SAFETY: within the four entries the request offers.
                    unsafe {
                        entries.add(i).write_unaligned(E820Entry {
                            addr: i as u64 * 0x10_0000,
                            size: 0x1000,
                            type_: 1,
                        })
                    };
                }
                request.nr_entries = 2;
                0
            },
            || memory_map(&mut map),
        );
        assert_eq!(count, Ok(2));
        let call = only(&calls);
        assert_eq!(
            (call.op, call.args[0]),
            (__HYPERVISOR_memory_op, u64::from(XENMEM_memory_map))
        );
        let second = map[1];
        assert_eq!({ second.addr }, 0x10_0000);
        assert_eq!({ second.type_ }, 1);
        // A count beyond the slice is not believed.
        let (count, _) = fake::with(
            |call| {
                // SAFETY: as above.
                let request: &mut xen_memory_map = unsafe { pointee(&call, 1) };
                request.nr_entries = 99;
                0
            },
            || memory_map(&mut map),
        );
        assert_eq!(count, Ok(4));
    }

    #[test]
    fn add_to_physmap_names_the_space_and_frame() {
        let (result, calls) = fake::with(
            |call| {
                // SAFETY: XENMEM_add_to_physmap's argument, live during the
                // call.
                let request: &mut xen_add_to_physmap = unsafe { pointee(&call, 1) };
                assert_eq!(request.domid, DOMID_SELF);
                assert_eq!(request.size, 0);
                assert_eq!(request.space, XENMAPSPACE_grant_table);
                assert_eq!((request.idx, request.gpfn), (1, 0x8_0001));
                0
            },
            // SAFETY: the recorder, not Xen: no frame changes.
            || unsafe { add_to_physmap(XENMAPSPACE_grant_table, 1, 0x8_0001) },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(only(&calls).args[0], u64::from(XENMEM_add_to_physmap));
    }

    #[test]
    fn event_channel_operations() {
        let (result, calls) = fake::with(
            |call| {
                // SAFETY: the argument EVTCHNOP_* takes, live during the call.
                let cmd = call.args[0] as u32;
                match cmd {
                    EVTCHNOP_bind_virq => {
                        // SAFETY: as above.
                        let bind: &mut evtchn_bind_virq = unsafe { pointee(&call, 1) };
                        assert_eq!((bind.virq, bind.vcpu), (VIRQ_TIMER, 0));
                        bind.port = 5;
                    }
                    EVTCHNOP_alloc_unbound => {
                        // SAFETY: as above.
                        let alloc: &mut evtchn_alloc_unbound = unsafe { pointee(&call, 1) };
                        assert_eq!((alloc.dom, alloc.remote_dom), (DOMID_SELF, 0));
                        alloc.port = 6;
                    }
                    EVTCHNOP_bind_interdomain => {
                        // SAFETY: as above.
                        let bind: &mut evtchn_bind_interdomain = unsafe { pointee(&call, 1) };
                        assert_eq!((bind.remote_dom, bind.remote_port), (DOMID_SELF, 6));
                        bind.local_port = 7;
                    }
                    EVTCHNOP_send | EVTCHNOP_unmask | EVTCHNOP_close => {
                        // SAFETY: as above (one port, the whole structure).
                        let port: &mut evtchn_port_t = unsafe { pointee(&call, 1) };
                        assert_eq!(*port, 7);
                    }
                    _ => panic!("EVTCHNOP {cmd}"),
                }
                0
            },
            || {
                let virq_port = evtchn_bind_virq(VIRQ_TIMER, 0)?;
                let unbound = evtchn_alloc_unbound(0)?;
                let local = evtchn_bind_interdomain(DOMID_SELF, unbound)?;
                evtchn_send(local)?;
                evtchn_unmask(local)?;
                evtchn_close(local)?;
                Ok::<_, XenError>((virq_port, unbound, local))
            },
        );
        assert_eq!(result, Ok((5, 6, 7)));
        let commands: Vec<_> = calls.iter().map(|call| call.args[0] as u32).collect();
        assert_eq!(
            commands,
            [
                EVTCHNOP_bind_virq,
                EVTCHNOP_alloc_unbound,
                EVTCHNOP_bind_interdomain,
                EVTCHNOP_send,
                EVTCHNOP_unmask,
                EVTCHNOP_close
            ]
        );
        for call in &calls {
            assert_eq!(call.op, __HYPERVISOR_event_channel_op);
            assert_eq!(call.args[2..], [0, 0, 0]);
        }
        let (result, _) = fake::with(|_| -22, || evtchn_close(4000));
        assert_eq!(result, Err(XenError::EINVAL));
    }

    #[test]
    fn vcpu_operations_name_the_vcpu() {
        let mut runstate = vcpu_runstate_info::default();
        let area = &raw mut runstate;
        let (result, calls) = fake::with(
            move |call| {
                assert_eq!(call.op, __HYPERVISOR_vcpu_op);
                assert_eq!(call.args[1], 2, "vcpu");
                assert_eq!(call.args[3..], [0, 0]);
                match call.args[0] as u32 {
                    VCPUOP_set_singleshot_timer => {
                        // SAFETY: the timer structure, live during the call.
                        let timer: &mut vcpu_set_singleshot_timer = unsafe { pointee(&call, 2) };
                        assert_eq!(timer.timeout_abs_ns, 123_456_789);
                        assert_eq!(timer.flags, VCPU_SSHOTTMR_future);
                    }
                    VCPUOP_register_runstate_memory_area => {
                        // SAFETY: the registration, live during the call.
                        let register: &mut vcpu_register_runstate_memory_area =
                            unsafe { pointee(&call, 2) };
                        // SAFETY: the member the function sets.
                        assert_eq!(unsafe { register.addr.v }, area);
                    }
                    VCPUOP_stop_singleshot_timer | VCPUOP_stop_periodic_timer => {
                        assert_eq!(call.args[2], 0, "NULL argument");
                    }
                    cmd => panic!("VCPUOP {cmd}"),
                }
                0
            },
            || {
                vcpu_set_singleshot_timer(2, 123_456_789, VCPU_SSHOTTMR_future)?;
                vcpu_stop_singleshot_timer(2)?;
                vcpu_stop_periodic_timer(2)?;
                // SAFETY: the recorder, not Xen, keeps nothing.
                unsafe { vcpu_register_runstate_memory_area(2, area) }
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(calls.len(), 4);
        let (result, _) = fake::with(
            |_| -62,
            || vcpu_set_singleshot_timer(0, 1, VCPU_SSHOTTMR_future),
        );
        assert_eq!(result, Err(XenError::ETIME));
    }

    #[test]
    fn scheduler_operations() {
        let ports = [3, 9];
        let (result, calls) = fake::with(
            |call| {
                assert_eq!(call.op, __HYPERVISOR_sched_op);
                assert_eq!(call.args[2..], [0, 0, 0]);
                match call.args[0] as u32 {
                    SCHEDOP_shutdown => {
                        // SAFETY: the sched_shutdown, live during the call.
                        let shutdown: &mut sched_shutdown = unsafe { pointee(&call, 1) };
                        assert_eq!(shutdown.reason, SHUTDOWN_reboot);
                    }
                    SCHEDOP_block => assert_eq!(call.args[1], 0, "NULL argument"),
                    SCHEDOP_poll => {
                        // SAFETY: the sched_poll, live during the call.
                        let poll: &mut sched_poll = unsafe { pointee(&call, 1) };
                        assert_eq!(poll.timeout, 5_000);
                        // SAFETY: `nr_ports` ports of the caller's slice.
                        let ports = unsafe {
                            core::slice::from_raw_parts(poll.ports.p, poll.nr_ports as usize)
                        };
                        assert_eq!(ports, [3, 9]);
                    }
                    cmd => panic!("SCHEDOP {cmd}"),
                }
                0
            },
            || {
                sched_poll(&ports, 5_000)?;
                sched_block()?;
                sched_shutdown(SHUTDOWN_reboot)
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(calls.len(), 3);
        // Suspend is refused without a call.
        let (result, calls) = fake::with(|_| 0, || sched_shutdown(SHUTDOWN_suspend));
        assert_eq!(result, Err(XenError::EINVAL));
        assert!(calls.is_empty());
        // sched_suspend passes the reason and the frame; 0 is a new
        // domain, 1 a cancelled suspend, a negative value an error.
        for (answer, expected) in [
            (0, Ok(Resumed::NewDomain)),
            (1, Ok(Resumed::Cancelled)),
            (-22, Err(XenError::EINVAL)),
        ] {
            let (result, calls) = fake::with(
                move |call| {
                    assert_eq!(call.op, __HYPERVISOR_sched_op);
                    assert_eq!(call.args[0], u64::from(SCHEDOP_shutdown));
                    assert_eq!(call.args[2], 0x1234);
                    // SAFETY: the sched_shutdown, live during the call.
                    let shutdown: &mut sched_shutdown = unsafe { pointee(&call, 1) };
                    assert_eq!(shutdown.reason, SHUTDOWN_suspend);
                    answer
                },
                // SAFETY: the fake makes no real call.
                || unsafe { sched_suspend(0x1234) },
            );
            assert_eq!(result, expected);
            assert_eq!(calls.len(), 1);
        }
        // No ports, no timeout: the PV halt with events masked.
        let (result, calls) = fake::with(
            |call| {
                // SAFETY: the sched_poll, live during the call.
                let poll: &mut sched_poll = unsafe { pointee(&call, 1) };
                assert_eq!((poll.nr_ports, poll.timeout), (0, 0));
                0
            },
            || sched_poll(&[], 0),
        );
        assert_eq!(result, Ok(()));
        assert_eq!(only(&calls).args[0], u64::from(SCHEDOP_poll));
    }

    #[test]
    fn console_io() {
        let (written, calls) = fake::with(
            |call| {
                // SAFETY: `count` bytes at `buffer`, the caller's slice.
                let bytes = unsafe {
                    core::slice::from_raw_parts(call.args[2] as *const u8, call.args[1] as usize)
                };
                assert_eq!(bytes, b"hello\n");
                0
            },
            || console_write(b"hello\n"),
        );
        assert_eq!(written, Ok(6));
        let call = only(&calls);
        assert_eq!(call.op, __HYPERVISOR_console_io);
        assert_eq!(call.args[0], u64::from(CONSOLEIO_write));
        assert_eq!(call.args[3..], [0, 0]);

        let mut buffer = [0u8; 8];
        let (read, calls) = fake::with(
            |call| {
                assert_eq!(call.args[1], 8);
                // SAFETY: the caller's 8-byte buffer.
                unsafe {
                    core::ptr::copy_nonoverlapping(b"ok".as_ptr(), call.args[2] as *mut u8, 2)
                };
                2
            },
            || console_read(&mut buffer),
        );
        assert_eq!(read, Ok(2));
        assert_eq!(&buffer[..2], b"ok");
        assert_eq!(only(&calls).args[0], u64::from(CONSOLEIO_read));
        let (read, _) = fake::with(|_| -1, || console_read(&mut buffer));
        assert_eq!(read, Err(XenError::EPERM));
    }

    #[test]
    fn version_takes_only_null_argument_commands() {
        let (version, calls) = fake::with(|_| 0x0004_0011, || xen_version(XENVER_version));
        assert_eq!(version, Ok(0x0004_0011));
        let call = only(&calls);
        assert_eq!(call.op, __HYPERVISOR_xen_version);
        assert_eq!(call.args, [u64::from(XENVER_version), 0, 0, 0, 0]);
        let (size, calls) = fake::with(|_| 4096, || xen_version(XENVER_pagesize));
        assert_eq!(size, Ok(4096));
        assert_eq!(only(&calls).args[0], u64::from(XENVER_pagesize));
        // Commands that write through their argument are refused.
        for cmd in [
            XENVER_extraversion,
            XENVER_get_features,
            XENVER_build_id,
            99,
        ] {
            let (result, calls) = fake::with(|_| 0, || xen_version(cmd));
            assert_eq!(result, Err(XenError::EINVAL));
            assert!(calls.is_empty());
        }
    }

    #[test]
    fn grant_table_query_and_setup() {
        let (size, calls) = fake::with(
            |call| {
                // SAFETY: the gnttab_query_size, live during the call.
                let query: &mut gnttab_query_size = unsafe { pointee(&call, 1) };
                assert_eq!(query.dom, DOMID_SELF);
                query.nr_frames = 1;
                query.max_nr_frames = 64;
                0
            },
            gnttab_query_size,
        );
        assert_eq!(
            size,
            Ok(GnttabSize {
                nr_frames: 1,
                max_nr_frames: 64
            })
        );
        let call = only(&calls);
        assert_eq!(call.op, __HYPERVISOR_grant_table_op);
        assert_eq!(call.args[0], u64::from(GNTTABOP_query_size));
        assert_eq!(call.args[2], 1, "count");

        let mut frames = [0 as xen_pfn_t; 2];
        let (result, calls) = fake::with(
            |call| {
                // SAFETY: the gnttab_setup_table, live during the call.
                let setup: &mut gnttab_setup_table = unsafe { pointee(&call, 1) };
                assert_eq!((setup.dom, setup.nr_frames), (DOMID_SELF, 2));
                for i in 0..2 {
                    // SAFETY: within the caller's two frames.
                    unsafe { setup.frame_list.p.add(i).write(0xa000 + i as u64) };
                }
                0
            },
            || gnttab_setup_table(&mut frames),
        );
        assert_eq!(result, Ok(()));
        assert_eq!(frames, [0xa000, 0xa001]);
        assert_eq!(only(&calls).args[0], u64::from(GNTTABOP_setup_table));

        // The hypercall succeeds, the operation does not.
        let (result, _) = fake::with(
            |call| {
                // SAFETY: as above.
                let setup: &mut gnttab_setup_table = unsafe { pointee(&call, 1) };
                setup.status = GNTST_bad_domain as i16;
                0
            },
            || gnttab_setup_table(&mut frames),
        );
        assert_eq!(result, Err(GnttabError::Status(GntStatus::BAD_DOMAIN)));
        let (result, _) = fake::with(|_| -14, gnttab_query_size);
        assert_eq!(result, Err(GnttabError::Xen(XenError::EFAULT)));
    }

    /// A recorder for mmu_update/mmuext_op: checks the batch shape, sets
    /// `*pdone` to `done` and returns `rax`.
    fn batch_xen(op: u32, count: u64, done: u32, rax: i64) -> impl FnMut(Hypercall) -> i64 {
        move |call| {
            assert_eq!(call.op, op);
            assert_eq!(call.args[1], count);
            assert_eq!(call.args[3], u64::from(DOMID_SELF), "foreigndom");
            // SAFETY: the done counter, live during the call.
            let pdone: &mut u32 = unsafe { pointee(&call, 2) };
            *pdone = done;
            rax
        }
    }

    #[test]
    fn mmu_update_reports_what_was_done() {
        let reqs = [pt_update(0x1000, 0x2067), pt_update(0x1008, 0x3067)];
        let address = reqs.as_ptr() as u64;
        let (result, calls) = fake::with(
            batch_xen(__HYPERVISOR_mmu_update, 2, 2, 0),
            // SAFETY: the recorder, not Xen: no page table changes.
            || unsafe { mmu_update(&reqs) },
        );
        assert_eq!(result, Ok(2));
        assert_eq!(only(&calls).args[0], address);
        let (result, _) = fake::with(
            batch_xen(__HYPERVISOR_mmu_update, 2, 1, -22),
            // SAFETY: as above.
            || unsafe { mmu_update(&reqs) },
        );
        assert_eq!(
            result,
            Err(BatchError {
                done: 1,
                error: XenError::EINVAL
            })
        );
        let (result, _) = fake::with(
            batch_xen(__HYPERVISOR_mmu_update, 2, 1, 0),
            // SAFETY: as above.
            || unsafe { mmu_update(&reqs) },
        );
        assert_eq!(
            result,
            Err(BatchError {
                done: 1,
                error: XenError::EIO
            })
        );
    }

    #[test]
    fn mmuext_single_operations() {
        let (result, calls) = fake::with(
            |call| {
                // SAFETY: one mmuext_op, live during the call.
                let op: &mut mmuext_op = unsafe { pointee(&call, 0) };
                let cmd = op.cmd;
                // SAFETY: plain-integer union members.
                let arg1 = unsafe { op.arg1.mfn };
                batch_xen(__HYPERVISOR_mmuext_op, 1, 1, 0)(call);
                match cmd {
                    MMUEXT_NEW_BASEPTR => assert_eq!(arg1, 0x42),
                    MMUEXT_INVLPG_LOCAL => assert_eq!(arg1, 0xffff_8000_0000_1000),
                    MMUEXT_TLB_FLUSH_LOCAL => assert_eq!(arg1, 0),
                    cmd => panic!("MMUEXT {cmd}"),
                }
                0
            },
            || {
                // SAFETY: the recorder, not Xen: no page tables change.
                unsafe { mmuext_new_baseptr(0x42) }?;
                mmuext_invlpg_local(0xffff_8000_0000_1000)?;
                mmuext_tlb_flush_local()
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(calls.len(), 3);
        let (result, _) = fake::with(
            batch_xen(__HYPERVISOR_mmuext_op, 1, 0, -1),
            mmuext_tlb_flush_local,
        );
        assert_eq!(result, Err(XenError::EPERM));
    }

    #[test]
    fn update_va_mapping_passes_registers() {
        let (result, calls) = fake::with(
            |_| 0,
            // SAFETY: the recorder, not Xen: nothing is mapped.
            || unsafe { update_va_mapping(0xffff_ffff_8020_0000, 0x1234_5063, UVMF_INVLPG) },
        );
        assert_eq!(result, Ok(()));
        let call = only(&calls);
        assert_eq!(call.op, __HYPERVISOR_update_va_mapping);
        assert_eq!(
            call.args,
            [0xffff_ffff_8020_0000, 0x1234_5063, UVMF_INVLPG, 0, 0]
        );
    }

    #[test]
    fn pv_entry_points() {
        let (result, calls) = fake::with(
            |_| 0,
            || {
                // SAFETY: the recorder, not Xen, keeps nothing.
                unsafe { stack_switch(u64::from(FLAT_KERNEL_SS), 0xffff_c000_0000_8000) }?;
                // SAFETY: as above.
                unsafe { set_callbacks(0xffff_ffff_8010_0000, 0xffff_ffff_8010_0100) }
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].op, __HYPERVISOR_stack_switch);
        assert_eq!(
            calls[0].args,
            [u64::from(FLAT_KERNEL_SS), 0xffff_c000_0000_8000, 0, 0, 0]
        );
        assert_eq!(calls[1].op, __HYPERVISOR_set_callbacks);
        assert_eq!(
            calls[1].args,
            [0xffff_ffff_8010_0000, 0xffff_ffff_8010_0100, 0, 0, 0]
        );
    }

    #[test]
    fn trap_tables_need_their_sentinel() {
        let handler = trap_info {
            vector: 14,
            flags: 4,
            cs: FLAT_KERNEL_CS as u16,
            address: 0xffff_ffff_8010_0e00,
        };
        let table = [handler, trap_info::default()];
        let (result, calls) = fake::with(
            |call| {
                // SAFETY: the caller's table, live during the call.
                let first: &mut trap_info = unsafe { pointee(&call, 0) };
                assert_eq!((first.vector, first.address), (14, 0xffff_ffff_8010_0e00));
                0
            },
            // SAFETY: the recorder, not Xen: no handler is installed.
            || unsafe { set_trap_table(&table) },
        );
        assert_eq!(result, Ok(()));
        let call = only(&calls);
        assert_eq!(call.op, __HYPERVISOR_set_trap_table);
        assert_eq!(call.args[1..], [0, 0, 0, 0]);
        for unterminated in [&[handler][..], &[]] {
            let (result, calls) = fake::with(
                |_| 0,
                // SAFETY: refused before any call.
                || unsafe { set_trap_table(unterminated) },
            );
            assert_eq!(result, Err(XenError::EINVAL));
            assert!(calls.is_empty());
        }
    }
}
