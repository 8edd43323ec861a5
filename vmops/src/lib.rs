//! vmops: the operations whose implementation depends on the platform
//! (docs/design.md, "vmops"), the records of their call sites, and the pure
//! logic that decides and encodes what each site becomes.
//!
//! - [`Op`] names every operation; [`Backend`] says, per op, how a
//!   platform implements it: inline instruction bytes, a function, nothing
//!   (a no-op), or not at all (a trapping `ud2`, as Linux's
//!   `paravirt_patch_default` does).
//! - [`Site`] is what the call-site macro records in the `.vmops_sites`
//!   linker section: where the site is, how long, which op.
//! - [`plan`] turns (site, op, backend, mode) into the bytes to write, and
//!   [`check_site`] refuses records that are not sane (outside kernel text,
//!   overlapping, unknown op) so that a bad record leaves its site as the
//!   always-correct indirect call.
//!
//! Everything here is pure: the kernel's `vmops` module emits the sites,
//! holds the table, and writes the bytes.
#![no_std]

#[cfg(test)]
extern crate std;

mod encode;
mod op;
pub mod vmi;
#[cfg(target_os = "none")]
pub mod write;

pub use encode::{nop_fill, plan, InlineForm, PatchError, Planned, MAX_SITE_LEN};
pub use op::{
    check_site, Backend, BackendId, Convention, FnAddr, Mode, Op, OpImpl, Site, SiteError,
    OP_COUNT, SITE_LEN,
};
