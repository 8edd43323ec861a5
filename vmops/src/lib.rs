//! The vmops table, the call-site macro and the patcher. The vmops issue
//! fills this crate; the foundation only reserves its place in the layout.
#![no_std]
