//! The vmops call sites and the table they call through (docs/design.md,
//! "vmops"): [`ops`] emits every site and gives the rest of the kernel
//! one typed function per op; [`VMOPS_TABLE`] holds the function each op
//! calls; [`patch`] rewrites the sites for the backend in force.
//!
//! Until a backend is installed the table holds the native functions, so
//! the sites that run first (console, interrupts) work unpatched; the Xen
//! PV entry installs its backend before any site runs. Which backend is
//! chosen is `crate::backend`'s business.

pub mod ops;
mod patch;

use core::sync::atomic::{AtomicPtr, Ordering};
use vmops::{Backend, Mode, Op, OP_COUNT};

pub use patch::{describe_site, PatchReport};

/// Function addresses, one slot per op; sites call through it.
#[repr(C, align(64))]
pub struct Table([AtomicPtr<()>; OP_COUNT]);

/// The table every site calls through. Starts as the native backend.
pub static VMOPS_TABLE: Table = Table(crate::backend::native::TABLE_AT_BOOT);

impl Table {
    pub(crate) fn set(&self, op: Op, function: *const ()) {
        self.0[op as usize].store(function.cast_mut(), Ordering::Release);
    }

    pub(crate) fn slot_address(&self, op: Op) -> u64 {
        (&raw const self.0[op as usize]) as u64
    }
}

/// Points every slot of the table at `backend`'s functions, without
/// patching a site (the Xen PV entry, before any site runs).
pub fn fill_table(backend: &Backend) {
    for op in Op::ALL {
        if let Some(function) = backend.get(op).function {
            VMOPS_TABLE.set(op, function.0);
        }
    }
}

/// Installs `backend` and treats the sites as `mode` says.
pub fn install(backend: &'static Backend, mode: Mode) -> PatchReport {
    patch::install(backend, mode)
}

mod tests {
    use super::patch::{lazy_counts, site_bytes, site_matches, sites};
    use super::*;
    use crate::backend::{chosen, native, Chosen};

    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    fn chosen_or_fail() -> Result<&'static Chosen, crate::ktest::TestFailure> {
        chosen().ok_or(crate::ktest::TestFailure {
            message: alloc::string::String::from("vmops not initialised"),
            file: file!(),
            line: line!(),
        })
    }

    #[ktest]
    fn sites_hold_what_the_mode_promises() -> TestResult {
        let chosen = chosen_or_fail()?;
        kassert!(
            sites().len() >= OP_COUNT,
            "only {} sites recorded",
            sites().len()
        );
        kassert_eq!(chosen.report.refused, 0);
        kassert_eq!(chosen.report.mismatched, 0);
        for site in sites() {
            kassert!(
                site_matches(site, chosen.backend, chosen.mode),
                "site at {:#x} ({:?}) holds {:02x?}, not the {} form",
                site.address,
                Op::from_id(site.op),
                site_bytes(site),
                chosen.mode.name()
            );
        }
        if chosen.mode == Mode::Lazy {
            let (patched, failed) = lazy_counts();
            kassert!(patched > 0, "lazy mode patched no site");
            kassert_eq!(failed, 0);
        }
        Ok(())
    }

    #[ktest]
    fn every_op_is_recorded_and_implemented() -> TestResult {
        let chosen = chosen_or_fail()?;
        for op in Op::ALL {
            kassert!(
                sites().iter().any(|site| site.op == op as u16),
                "no call site of {op}: the wrapper is never used"
            );
            let imp = chosen.backend.get(op);
            kassert!(
                imp.function.is_some(),
                "{} backend has no function for {op}",
                chosen.backend.name()
            );
        }
        Ok(())
    }

    #[ktest]
    fn native_thunks_are_their_inline_forms() -> TestResult {
        for op in Op::ALL {
            let imp = native::BACKEND.get(op);
            let (Some(inline), Some(function)) = (imp.inline, imp.function) else {
                continue;
            };
            let code = function.addr() as *const u8;
            // SAFETY: the function is kernel text, mapped readable; its
            // first `inline.len() + 1` bytes are the thunk.
            let bytes = unsafe { core::slice::from_raw_parts(code, inline.len() + 1) };
            kassert_eq!(&bytes[..inline.len()], inline);
            kassert_eq!(bytes[inline.len()], 0xc3);
        }
        Ok(())
    }

    #[ktest]
    fn interrupt_ops_round_trip() -> TestResult {
        let before = ops::save_flags();
        ops::irq_disable();
        kassert_eq!(ops::save_flags() & (1 << 9), 0);
        ops::irq_enable();
        kassert!(ops::save_flags() & (1 << 9) != 0);
        ops::irq_disable();
        ops::restore_flags(before);
        kassert_eq!(ops::save_flags() & (1 << 9), before & (1 << 9));
        // With interrupts on and a timer armed, halt returns at its tick.
        let tick = crate::time::timer_interrupts();
        ops::set_timer(ops::clock_ns() + 1_000_000);
        while crate::time::timer_interrupts() == tick {
            ops::safe_halt();
        }
        Ok(())
    }

    #[ktest]
    fn page_table_ops_round_trip() -> TestResult {
        let cr3 = ops::read_cr3();
        kassert!(cr3 != 0);
        // SAFETY: reloading the current page-table base changes nothing
        // but the (non-global) TLB contents.
        unsafe { ops::write_cr3(cr3) };
        kassert_eq!(ops::read_cr3(), cr3);
        ops::flush_tlb_page(cr3 as usize as u64 | crate::arch::layout::PHYS_MAP_BASE);
        ops::flush_tlb_all();
        // set_pte on a live entry: a fresh stack page made read-only and
        // back (under Xen PV the store is Xen's to validate).
        use crate::mm::paging::{flags_of, leaf_entry, Flags};
        let stack = crate::mm::KernelStack::new(1);
        kassert!(stack.is_some(), "no kernel stack");
        let Some(stack) = stack else { return Ok(()) };
        let page = stack.bottom();
        let entry = leaf_entry(page);
        kassert!(entry.is_some(), "stack page not mapped");
        let Some(entry) = entry else { return Ok(()) };
        // SAFETY: the entry maps the stack page just allocated, which
        // nothing else uses; only its writable bit changes.
        let before = unsafe { entry.read_volatile() };
        // SAFETY: as above.
        unsafe { ops::set_pte(entry, before & !Flags::WRITABLE.bits()) };
        ops::flush_tlb_page(page.as_u64());
        let flags = flags_of(page).unwrap_or(Flags::WRITABLE);
        kassert!(!flags.contains(Flags::WRITABLE), "set_pte left {flags:?}");
        // SAFETY: as above.
        unsafe { ops::set_pte(entry, before) };
        ops::flush_tlb_page(page.as_u64());
        kassert!(flags_of(page).is_some_and(|f| f.contains(Flags::WRITABLE)));
        Ok(())
    }

    #[ktest]
    fn clock_op_is_monotonic() -> TestResult {
        let mut last = ops::clock_ns();
        for _ in 0..1000 {
            let now = ops::clock_ns();
            kassert!(now >= last, "clock went back from {last} to {now}");
            last = now;
        }
        Ok(())
    }
}
