//! The KVM backend: the native instruction ops, plus kvmclock for the clock
//! (and the TSC rate, so no PIT calibration is needed), paravirtual EOI
//! when KVM offers it, and steal time when KVM offers it.
//!
//! Linux `Documentation/virt/kvm/x86/msr.rst`. The shared structures live
//! in the kernel image, whose physical address is its link address less
//! `KERNEL_VMA`.

use super::{native, BackendId, Hooks};
use crate::arch::apic;
use crate::arch::cpu::{self, write_msr};
use crate::arch::layout::KERNEL_VMA;
use core::cell::UnsafeCell;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use hv::kvm::*;
use hv::platform::{kvm_feature, Platform};
use vmops::{Backend, FnAddr, Op, OpImpl, OP_COUNT};

/// What KVM writes and we read: the pvclock, steal time, the PV EOI word.
#[repr(C, align(64))]
struct Shared {
    clock: PvclockVcpuTimeInfo,
    steal: KvmStealTime,
    pv_eoi: AtomicU64,
}

struct SharedCell(UnsafeCell<Shared>);

// SAFETY: the hypervisor writes the structure; the kernel only reads it
// with volatile reads under the version protocol (and touches the PV EOI
// word atomically), one vCPU.
unsafe impl Sync for SharedCell {}

static SHARED: SharedCell = SharedCell(UnsafeCell::new(Shared {
    clock: PvclockVcpuTimeInfo {
        version: 0,
        pad0: 0,
        tsc_timestamp: 0,
        system_time: 0,
        tsc_to_system_mul: 0,
        tsc_shift: 0,
        flags: 0,
        pad1: [0; 2],
    },
    steal: KvmStealTime {
        steal: 0,
        version: 0,
        flags: 0,
        preempted: 0,
        u8_pad: [0; 3],
        pad: [0; 11],
    },
    pv_eoi: AtomicU64::new(0),
}));

/// kvmclock minus this is nanoseconds since the kernel's first instruction.
static CLOCK_OFFSET: AtomicU64 = AtomicU64::new(0);
static PV_EOI: AtomicBool = AtomicBool::new(false);
static STEAL: AtomicBool = AtomicBool::new(false);

fn physical<T>(pointer: *const T) -> u64 {
    pointer as u64 - KERNEL_VMA
}

/// Whether the KVM features allow this backend (kvmclock is required).
pub fn usable(features: u32) -> bool {
    features & kvm_feature::CLOCKSOURCE2 != 0
}

/// Why the backend could not start.
#[derive(Debug)]
pub struct KvmError(&'static str);

impl core::fmt::Display for KvmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

/// A consistent snapshot of the pvclock and the TSC read inside it.
fn read_clock() -> (PvclockVcpuTimeInfo, u64) {
    let clock = SHARED.0.get().cast::<Shared>();
    loop {
        // SAFETY: `clock` points at a static; volatile reads see the
        // hypervisor's updates. The version protocol (odd = being updated,
        // changed = torn) makes the snapshot consistent.
        let (before, snapshot, tsc, after) = unsafe {
            let version = &raw const (*clock).clock.version;
            let before = version.read_volatile();
            fence(Ordering::Acquire);
            let snapshot = (&raw const (*clock).clock).read_volatile();
            let tsc = cpu::rdtsc();
            fence(Ordering::Acquire);
            (before, snapshot, tsc, version.read_volatile())
        };
        if before & 1 == 0 && before == after {
            return (snapshot, tsc);
        }
        core::hint::spin_loop();
    }
}

fn kvmclock_raw() -> u64 {
    let (snapshot, tsc) = read_clock();
    snapshot.ns_at(tsc)
}

/// Registers the shared structures with KVM. Call once, from
/// `backend::select`, with interrupts off.
pub fn init(platform: Platform) -> Result<(), KvmError> {
    let Platform::Kvm { features, .. } = platform else {
        return Err(KvmError("not running on KVM"));
    };
    let shared = SHARED.0.get().cast_const();
    // SAFETY: the MSR exists (CLOCKSOURCE2 is in the feature bits: checked
    // by `usable` before this backend is chosen), and the address is that
    // of a 32-byte-aligned static that nothing else writes.
    unsafe { write_msr(MSR_KVM_SYSTEM_TIME_NEW, physical(shared) | MSR_ENABLE) };
    let (snapshot, _) = read_clock();
    if snapshot.version == 0 || snapshot.tsc_to_system_mul == 0 {
        return Err(KvmError("kvmclock did not start"));
    }
    let hz = snapshot.tsc_hz();
    crate::time::set_tsc_hz(hz, crate::time::TscSource::KvmClock);
    CLOCK_OFFSET.store(
        kvmclock_raw().wrapping_sub(crate::time::tsc_clock_ns()),
        Ordering::Relaxed,
    );

    if features & kvm_feature::PV_EOI != 0 {
        // SAFETY: the feature bit says the MSR exists; the word is 8-byte
        // aligned, static, and only touched atomically.
        unsafe {
            write_msr(
                MSR_KVM_PV_EOI_EN,
                physical(&raw const (*shared).pv_eoi) | MSR_ENABLE,
            )
        };
        PV_EOI.store(true, Ordering::Relaxed);
    }
    if features & kvm_feature::STEAL_TIME != 0 {
        // SAFETY: the feature bit says the MSR exists; the structure is
        // 64-byte aligned and static.
        unsafe {
            write_msr(
                MSR_KVM_STEAL_TIME,
                physical(&raw const (*shared).steal) | MSR_ENABLE,
            )
        };
        STEAL.store(true, Ordering::Relaxed);
    }
    log::info!(
        "kvm: kvmclock ({} TSC, {}.{:03} MHz), pv-eoi {}, steal time {}",
        if snapshot.flags & PVCLOCK_TSC_STABLE_BIT != 0 {
            "stable"
        } else {
            "unstable"
        },
        hz / 1_000_000,
        hz / 1000 % 1000,
        if PV_EOI.load(Ordering::Relaxed) {
            "on"
        } else {
            "off"
        },
        if STEAL.load(Ordering::Relaxed) {
            "on"
        } else {
            "off"
        },
    );
    Ok(())
}

/// Nanoseconds this vCPU was runnable but not running, if KVM reports it.
pub fn steal_ns() -> Option<u64> {
    if !STEAL.load(Ordering::Relaxed) {
        return None;
    }
    let steal = SHARED.0.get().cast::<Shared>();
    loop {
        // SAFETY: as in `read_clock`: a static the hypervisor updates under
        // the same version protocol.
        let (before, value, after) = unsafe {
            let version = &raw const (*steal).steal.version;
            let before = version.read_volatile();
            fence(Ordering::Acquire);
            let value = (&raw const (*steal).steal.steal).read_volatile();
            fence(Ordering::Acquire);
            (before, value, version.read_volatile())
        };
        if before & 1 == 0 && before == after {
            return Some(value);
        }
    }
}

extern "C" fn steal_op() -> u64 {
    steal_ns().unwrap_or(0)
}

extern "C" fn clock_ns() -> u64 {
    kvmclock_raw().wrapping_sub(CLOCK_OFFSET.load(Ordering::Relaxed))
}

extern "C" fn set_timer(deadline_ns: u64) {
    apic::arm_oneshot(deadline_ns, clock_ns());
}

/// With PV EOI, KVM sets bit 0 of the shared word when the interrupt being
/// serviced needs no EOI write (no exit); clearing it is the EOI.
extern "C" fn eoi() {
    if PV_EOI.load(Ordering::Relaxed) {
        // SAFETY: a static word, accessed atomically.
        let word = unsafe { &(*SHARED.0.get()).pv_eoi };
        if word.fetch_and(!PV_EOI_PENDING_BIT, Ordering::AcqRel) & PV_EOI_PENDING_BIT != 0 {
            return;
        }
    }
    apic::eoi();
}

const fn build() -> Backend {
    let mut ops = [OpImpl::MISSING; OP_COUNT];
    native::instruction_ops(&mut ops);
    native::kernel_services(&mut ops);
    ops[Op::ClockNs as usize] = OpImpl::function(FnAddr(clock_ns as *const ()));
    ops[Op::SetTimer as usize] = OpImpl::function(FnAddr(set_timer as *const ()));
    ops[Op::Eoi as usize] = OpImpl::function(FnAddr(eoi as *const ()));
    ops[Op::StealNs as usize] = OpImpl::function(FnAddr(steal_op as *const ()));
    Backend {
        id: BackendId::Kvm,
        ops,
    }
}

pub static BACKEND: Backend = build();

/// As native: KVM emulates the PC's interrupt controllers and firmware.
pub static HOOKS: Hooks = Hooks {
    id: BackendId::Kvm,
    ..native::HOOKS_BASE
};

mod tests {
    use super::*;
    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    #[ktest]
    fn steal_time_is_read_only_where_offered() -> TestResult {
        let kvm = crate::backend::id() == BackendId::Kvm;
        match steal_ns() {
            Some(first) => {
                kassert!(kvm, "steal time enabled without the kvm backend");
                crate::time::spin_delay_ns(1_000_000);
                let second = steal_ns().unwrap_or(0);
                kassert!(
                    second >= first,
                    "steal time went back from {first} to {second}"
                );
            }
            None => kassert_eq!(kvm && STEAL.load(Ordering::Relaxed), false),
        }
        Ok(())
    }
}
