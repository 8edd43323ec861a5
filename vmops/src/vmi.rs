//! VMI (`hv::vmi`) as vmops sees it: which VMI call does each op at a
//! call site, and what a site becomes under each of the ROM's relocation
//! answers. Host-tested down to the bytes written into a site.

use crate::op::{FnAddr, Op, OpImpl};
use hv::vmi::{Binding, Call};

/// The call that does vmops `op` at a call site, if VMI has one. The
/// ops without one (EOI, console, shutdown, the kernel stack, plain
/// halt) stay the kernel's own; FlushTlbAll and the clock and timer ops
/// are kernel functions built on FlushTLB and the cycle counter and
/// alarm calls (`Call::FlushTlb`, `hv::vmi::TIME_CALLS`).
pub const fn site_call(op: Op) -> Option<Call> {
    match op {
        Op::IrqDisable => Some(Call::DisableInterrupts),
        Op::IrqEnable => Some(Call::EnableInterrupts),
        Op::SaveFlags => Some(Call::GetInterruptMask),
        Op::RestoreFlags => Some(Call::SetInterruptMask),
        // VMI's Halt is the safe halt: interrupts enabled and the wait
        // begun with no window between.
        Op::SafeHalt => Some(Call::Halt),
        Op::ReadCr3 => Some(Call::GetCr3),
        Op::WriteCr3 => Some(Call::SetCr3),
        Op::FlushTlbPage => Some(Call::InvalPage),
        Op::SetPte => Some(Call::SetPxELong),
        _ => None,
    }
}

/// The calls of [`site_call`], in op order.
pub const SITE_CALLS: [Call; 9] = [
    Call::DisableInterrupts,
    Call::EnableInterrupts,
    Call::GetInterruptMask,
    Call::SetInterruptMask,
    Call::Halt,
    Call::GetCr3,
    Call::SetCr3,
    Call::InvalPage,
    Call::SetPxELong,
];

/// What a site of an op becomes under `binding`, given the native
/// implementation: the native one (NONE), a call to the ROM (CALL_REL: the
/// ROM's entry is the function, so that unpatched sites call it through
/// the table and patched sites directly), or nothing (NOP).
pub fn op_impl(binding: Binding, native: OpImpl) -> OpImpl {
    match binding {
        Binding::Native => native,
        Binding::Call(target) => OpImpl::function(FnAddr(target as *const ())),
        Binding::Nop => OpImpl {
            inline: None,
            function: native.function,
            nop: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{nop_fill, plan, Mode, Planned, SITE_LEN};
    use std::vec::Vec;

    #[test]
    fn every_site_call_is_distinct() {
        let mut seen = Vec::new();
        for op in Op::ALL {
            if let Some(call) = site_call(op) {
                assert!(!seen.contains(&call), "{call} twice");
                seen.push(call);
            }
        }
        assert_eq!(seen, SITE_CALLS);
        assert_eq!(site_call(Op::IrqDisable), Some(Call::DisableInterrupts));
        assert_eq!(site_call(Op::SafeHalt), Some(Call::Halt));
        assert_eq!(site_call(Op::Halt), None);
    }

    const NATIVE_CLI: OpImpl = OpImpl {
        inline: Some(&[0xfa]),
        function: Some(FnAddr(0xffff_ffff_8020_0000 as *const ())),
        nop: false,
    };

    /// The bytes a site at `site` holds for `binding`, eagerly patched.
    fn encoded(site: u64, binding: Binding) -> ([u8; 16], Planned) {
        let imp = op_impl(binding, NATIVE_CLI);
        plan(
            site,
            Op::IrqDisable,
            &imp,
            Mode::Eager,
            0xffff_ffff_8040_0000,
        )
        .unwrap()
    }

    #[test]
    fn call_rel_becomes_a_direct_call_into_the_rom() {
        let site = 0xffff_ffff_8021_0000u64;
        let target = 0xffff_ffff_8080_0480u64;
        let (bytes, planned) = encoded(site, Binding::Call(target));
        assert_eq!(planned, Planned::Call { target });
        assert_eq!(bytes[0], 0xe8);
        let rel = i32::from_le_bytes(bytes[1..5].try_into().unwrap());
        assert_eq!(site.wrapping_add(5).wrapping_add(rel as i64 as u64), target);
        // The rest is NOP padding.
        assert!(bytes[5..SITE_LEN].iter().all(|&b| b != 0xcc));
    }

    #[test]
    fn none_keeps_the_native_instruction_and_nop_clears_the_site() {
        let site = 0xffff_ffff_8021_0000u64;
        let (bytes, planned) = encoded(site, Binding::Native);
        assert_eq!(planned, Planned::Inline);
        assert_eq!(bytes[0], 0xfa);
        let (bytes, planned) = encoded(site, Binding::Nop);
        assert_eq!(planned, Planned::Nop);
        let mut nops = [0u8; SITE_LEN];
        nop_fill(&mut nops);
        assert_eq!(&bytes[..SITE_LEN], &nops);
    }

    #[test]
    fn a_rom_out_of_rel32_reach_is_not_encoded() {
        let site = 0xffff_ffff_8021_0000u64;
        let imp = op_impl(Binding::Call(0xffff_8880_000c_8000), NATIVE_CLI);
        assert!(plan(
            site,
            Op::IrqDisable,
            &imp,
            Mode::Eager,
            0xffff_ffff_8040_0000
        )
        .is_err());
    }
}
