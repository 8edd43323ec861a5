//! PVH boot: the start-of-day structures a PVH loader (QEMU `-kernel`, Xen
//! `type="pvh"`) hands the kernel in `%ebx`, and the ELF note that names the
//! 32-bit entry point.
//!
//! The structures are the Xen public header's own
//! (`xen/include/public/arch-x86/hvm/start_info.h`), from the generated
//! bindings, under the names the boot code uses; their sizes and offsets
//! are tested in `crate::xen`.

pub use crate::xen::bindings::{
    hvm_memmap_table_entry as HvmMemmapTableEntry, hvm_modlist_entry as HvmModlistEntry,
    hvm_start_info as HvmStartInfo, XEN_ELFNOTE_PHYS32_ENTRY, XEN_HVM_START_MAGIC_VALUE,
};
