//! The pure half of the sanos kernel: logic free of hardware access, so it
//! builds for the host and `cargo test` exercises it there. Its folders
//! mirror the kernel's (`kernel/src`): the kernel's `mm` reads the memory
//! map that [`mm::memmap`] normalises, its `boot` fills the
//! [`boot::bootinfo::BootInfo`] defined here, the network appliance reads
//! its site image with [`fs::cpio`] and speaks [`net::http`], and so on.
//! The kernel supplies the machine; nothing here touches it.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

extern crate alloc;

pub mod arch {
    //! Architecture and firmware formats.
    pub mod acpi_tables;
    pub mod cmos_rtc;
}

pub mod boot {
    //! What the entry paths normalise, and the kernel command line.
    pub mod bootinfo;
    pub mod cmdline;
}

pub mod fs {
    //! File formats: the cpio archive a site image comes in; and the
    //! file-system layer user programs' system calls sit on.
    pub mod cpio;
    pub mod vfs;
}

pub mod mm {
    //! The memory map and the frame allocator's bitmap.
    pub mod frame_bitmap;
    pub mod memmap;
}

pub mod net {
    //! Network protocols above the stack: HTTP/1.1 requests and responses,
    //! SNTP, and the one look into frames the stack makes itself.
    pub mod frame;
    pub mod http;
    pub mod sntp;
}

pub mod sched {
    //! The scheduler's run and sleep queues.
    pub mod queue;
}

pub mod time {
    //! Calendar arithmetic.
    pub mod civil;
}

pub mod user {
    //! What user programs see of the kernel: the Linux x86-64 system-call
    //! ABI's numbers and error codes.
    pub mod linux;
}
