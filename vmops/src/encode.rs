//! What a site becomes, as bytes.
//!
//! The rules are Linux's `paravirt_patch_default`, made total and pure:
//! an op marked no-op becomes NOPs; an op with an inline form that fits
//! becomes that form; an op with a function becomes a direct `call rel32`;
//! an op with neither becomes `ud2` (a clear trap instead of a jump into
//! nothing). Every replacement is padded to the site length with the
//! multi-byte NOPs Intel recommends (SDM Vol. 2B, "NOP"), so the CPU
//! decodes the padding as at most two instructions.

use crate::op::{Mode, Op, OpImpl, SITE_LEN};
use core::fmt;

/// Largest site this encoder handles.
pub const MAX_SITE_LEN: usize = 16;

/// Intel's recommended NOPs of 1 to 11 bytes.
const NOPS: [&[u8]; 11] = [
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[
        0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00,
    ],
];

/// `call qword ptr [rip + disp32]`: the unpatched site.
const CALL_INDIRECT_LEN: usize = 6;
/// `call rel32`.
const CALL_DIRECT_LEN: usize = 5;
const UD2: [u8; 2] = [0x0f, 0x0b];

/// Fills `buf` with as few NOP instructions as possible.
pub fn nop_fill(buf: &mut [u8]) {
    let mut rest = buf;
    while !rest.is_empty() {
        let nop = NOPS[rest.len().min(NOPS.len()) - 1];
        rest[..nop.len()].copy_from_slice(nop);
        rest = &mut rest[nop.len()..];
    }
}

/// What a site was planned to become (for the boot log and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planned {
    /// The backend's inline bytes, then NOPs.
    Inline,
    /// `call rel32` to the backend's function.
    Call { target: u64 },
    /// Only NOPs.
    Nop,
    /// `ud2`: the backend does not implement the op.
    Trap,
    /// `call [rip + table slot]` (the unpatched form).
    Indirect,
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Planned::Inline => "inline",
            Planned::Call { .. } => "call",
            Planned::Nop => "nop",
            Planned::Trap => "ud2",
            Planned::Indirect => "indirect",
        })
    }
}

/// An inline form, for reports: the op and its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlineForm {
    pub op: Op,
    pub bytes: &'static [u8],
}

/// Why a site could not be planned. The site then stays as it is (the
/// indirect call, which is always correct).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchError {
    /// The inline form is longer than the site.
    TooLong { op: Op, needed: usize, site: usize },
    /// The site is too short for the call it needs, or longer than
    /// [`MAX_SITE_LEN`].
    BadSite { len: usize },
    /// The target is beyond the ±2 GiB reach of a rel32 call or
    /// RIP-relative operand.
    OutOfReach { from: u64, to: u64 },
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchError::TooLong { op, needed, site } => {
                write!(f, "inline {op} needs {needed} bytes, the site has {site}")
            }
            PatchError::BadSite { len } => write!(f, "a {len}-byte site cannot hold a call"),
            PatchError::OutOfReach { from, to } => {
                write!(f, "{to:#x} is out of rel32 reach from {from:#x}")
            }
        }
    }
}

fn rel32(from_end: u64, to: u64) -> Result<[u8; 4], PatchError> {
    let delta = to.wrapping_sub(from_end) as i64;
    i32::try_from(delta)
        .map(i32::to_le_bytes)
        .map_err(|_| PatchError::OutOfReach { from: from_end, to })
}

/// Plans site `address` of `op` (length [`SITE_LEN`]) for `mode`:
/// `Off` gives the indirect call through `table_slot` (the table entry for
/// `op`), the patched modes give what `imp` allows. Returns the bytes (the
/// first `SITE_LEN` are meaningful) and what they are.
pub fn plan(
    address: u64,
    op: Op,
    imp: &OpImpl,
    mode: Mode,
    table_slot: u64,
) -> Result<([u8; MAX_SITE_LEN], Planned), PatchError> {
    plan_sized(address, SITE_LEN, op, imp, mode, table_slot)
}

fn plan_sized(
    address: u64,
    len: usize,
    op: Op,
    imp: &OpImpl,
    mode: Mode,
    table_slot: u64,
) -> Result<([u8; MAX_SITE_LEN], Planned), PatchError> {
    if !(CALL_INDIRECT_LEN..=MAX_SITE_LEN).contains(&len) {
        return Err(PatchError::BadSite { len });
    }
    let mut bytes = [0u8; MAX_SITE_LEN];
    let site = &mut bytes[..len];
    let planned = if mode == Mode::Off {
        site[..2].copy_from_slice(&[0xff, 0x15]);
        site[2..6].copy_from_slice(&rel32(address + CALL_INDIRECT_LEN as u64, table_slot)?);
        nop_fill(&mut site[CALL_INDIRECT_LEN..]);
        Planned::Indirect
    } else if imp.nop {
        nop_fill(site);
        Planned::Nop
    } else if let Some(inline) = imp.inline {
        if inline.len() > len {
            return Err(PatchError::TooLong {
                op,
                needed: inline.len(),
                site: len,
            });
        }
        site[..inline.len()].copy_from_slice(inline);
        nop_fill(&mut site[inline.len()..]);
        Planned::Inline
    } else if let Some(function) = imp.function {
        let target = function.addr();
        site[0] = 0xe8;
        site[1..5].copy_from_slice(&rel32(address + CALL_DIRECT_LEN as u64, target)?);
        nop_fill(&mut site[CALL_DIRECT_LEN..]);
        Planned::Call { target }
    } else {
        site[..2].copy_from_slice(&UD2);
        nop_fill(&mut site[2..]);
        Planned::Trap
    };
    Ok((bytes, planned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Backend, FnAddr};
    use crate::OP_COUNT;

    fn at(address: u64) -> FnAddr {
        FnAddr(core::ptr::without_provenance(address as usize))
    }

    const SITE: u64 = 0xffff_ffff_8020_1000;
    const SLOT: u64 = 0xffff_ffff_8023_0040;

    #[test]
    fn nops_are_valid_lengths_and_fill_exactly() {
        for (i, nop) in NOPS.iter().enumerate() {
            assert_eq!(nop.len(), i + 1);
        }
        for len in 0..=MAX_SITE_LEN {
            let mut buf = [0xccu8; MAX_SITE_LEN];
            nop_fill(&mut buf[..len]);
            assert!(buf[..len].iter().all(|&b| b != 0xcc));
            assert!(buf[len..].iter().all(|&b| b == 0xcc));
        }
        let mut twelve = [0u8; 12];
        nop_fill(&mut twelve);
        // 11 + 1: two instructions.
        assert_eq!(&twelve[..11], NOPS[10]);
        assert_eq!(twelve[11], 0x90);
    }

    #[test]
    fn off_mode_is_the_indirect_call_through_the_table() {
        let imp = OpImpl::inline(&[0xfa], at(0x1234));
        let (bytes, planned) = plan(SITE, Op::IrqDisable, &imp, Mode::Off, SLOT).unwrap();
        assert_eq!(planned, Planned::Indirect);
        let disp = (SLOT - (SITE + 6)) as i32;
        assert_eq!(&bytes[..2], &[0xff, 0x15]);
        assert_eq!(&bytes[2..6], &disp.to_le_bytes());
        assert_eq!(&bytes[6..12], NOPS[5]);
    }

    #[test]
    fn inline_forms_are_copied_and_padded() {
        let imp = OpImpl::inline(&[0x9c, 0x58], at(0x1234));
        let (bytes, planned) = plan(SITE, Op::SaveFlags, &imp, Mode::Eager, SLOT).unwrap();
        assert_eq!(planned, Planned::Inline);
        assert_eq!(&bytes[..2], &[0x9c, 0x58]);
        assert_eq!(&bytes[2..12], NOPS[9]);
        // Lazy mode patches to the same bytes as eager.
        assert_eq!(
            plan(SITE, Op::SaveFlags, &imp, Mode::Lazy, SLOT).unwrap().0,
            bytes
        );
    }

    #[test]
    fn functions_become_direct_calls() {
        let target = SITE + 0x10_0000;
        let imp = OpImpl::function(at(target));
        let (bytes, planned) = plan(SITE, Op::ClockNs, &imp, Mode::Eager, SLOT).unwrap();
        assert_eq!(planned, Planned::Call { target });
        assert_eq!(bytes[0], 0xe8);
        assert_eq!(&bytes[1..5], &((target - (SITE + 5)) as i32).to_le_bytes());
        assert_eq!(&bytes[5..12], NOPS[6]);
        // Backwards too.
        let back = OpImpl::function(at(SITE - 0x2000));
        let (bytes, _) = plan(SITE, Op::ClockNs, &back, Mode::Eager, SLOT).unwrap();
        assert_eq!(&bytes[1..5], &(-0x2005i32).to_le_bytes());
    }

    #[test]
    fn nop_and_missing_ops() {
        let nop = OpImpl {
            inline: None,
            function: None,
            nop: true,
        };
        let (bytes, planned) = plan(SITE, Op::FlushTlbAll, &nop, Mode::Eager, SLOT).unwrap();
        assert_eq!(planned, Planned::Nop);
        assert_eq!(&bytes[..11], NOPS[10]);
        let (bytes, planned) =
            plan(SITE, Op::Shutdown, &OpImpl::MISSING, Mode::Eager, SLOT).unwrap();
        assert_eq!(planned, Planned::Trap);
        assert_eq!(&bytes[..2], &UD2);
    }

    #[test]
    fn too_long_inline_form_is_refused() {
        static LONG: [u8; 13] = [0x90; 13];
        let imp = OpImpl::inline(&LONG, at(0x1234));
        assert_eq!(
            plan(SITE, Op::IrqEnable, &imp, Mode::Eager, SLOT),
            Err(PatchError::TooLong {
                op: Op::IrqEnable,
                needed: 13,
                site: SITE_LEN
            })
        );
        // Exactly the site length fits.
        static EXACT: [u8; SITE_LEN] = [0x90; SITE_LEN];
        assert!(plan(
            SITE,
            Op::IrqEnable,
            &OpImpl::inline(&EXACT, at(0)),
            Mode::Eager,
            SLOT
        )
        .is_ok());
    }

    #[test]
    fn out_of_reach_targets_and_bad_sites_are_refused() {
        // (The low 2 GiB are in reach of the top 2 GiB: the address sum
        // wraps. The middle of the address space is not.)
        let far = OpImpl::function(at(0x4000_0000_0000));
        assert!(matches!(
            plan(SITE, Op::Eoi, &far, Mode::Eager, SLOT),
            Err(PatchError::OutOfReach { .. })
        ));
        assert!(matches!(
            plan(SITE, Op::Eoi, &far, Mode::Off, 0x4000_0000_0000),
            Err(PatchError::OutOfReach { .. })
        ));
        assert_eq!(
            plan_sized(SITE, 5, Op::Eoi, &far, Mode::Eager, SLOT),
            Err(PatchError::BadSite { len: 5 })
        );
        assert_eq!(
            plan_sized(SITE, 17, Op::Eoi, &far, Mode::Eager, SLOT),
            Err(PatchError::BadSite { len: 17 })
        );
    }

    #[test]
    fn every_op_of_a_backend_plans_to_the_promised_bytes() {
        // A backend shaped like the native one: inline irq ops, functions
        // for the rest, one op missing.
        static CLI: [u8; 1] = [0xfa];
        let mut ops = [OpImpl::function(at(SITE + 0x4000)); OP_COUNT];
        ops[Op::IrqDisable as usize] = OpImpl::inline(&CLI, at(SITE + 0x5000));
        ops[Op::Shutdown as usize] = OpImpl::MISSING;
        let backend = Backend {
            id: crate::BackendId::Native,
            ops,
        };
        for op in Op::ALL {
            let (bytes, planned) = plan(SITE, op, backend.get(op), Mode::Eager, SLOT).unwrap();
            match op {
                Op::IrqDisable => {
                    assert_eq!(planned, Planned::Inline);
                    assert_eq!(bytes[0], 0xfa);
                }
                Op::Shutdown => assert_eq!(planned, Planned::Trap),
                _ => {
                    assert_eq!(
                        planned,
                        Planned::Call {
                            target: SITE + 0x4000
                        }
                    );
                    assert_eq!(&bytes[..5], &[0xe8, 0xfb, 0x3f, 0, 0]);
                }
            }
        }
    }
}
