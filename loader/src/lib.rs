//! Executable loading (ELF): not written yet. The crate exists so that the
//! workspace's layout is the one `docs/design.md` describes; it holds no
//! code and is not linked into the kernel.
#![no_std]
