//! The operations, their calling conventions, site records and backends.

use core::fmt;

/// Bytes reserved at every call site. The unpatched site is a 6-byte
/// `call [rip + table]`; 12 leaves room for the longest inline form a
/// backend may want (Xen PV's event-mask store and software-CR3 load are 8
/// bytes each).
pub const SITE_LEN: usize = 12;

/// How arguments and clobbers work at an op's sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// Argument in RDI (second in RSI), result in RAX; the callee preserves
    /// every other register (Linux's PV_CALLEE_SAVE), so the compiler
    /// spills nothing around the site and an inline replacement may use
    /// only RAX, RDI, RSI and the flags.
    CalleeSaves,
    /// The C ABI (System V): the site clobbers the caller-saved registers.
    C,
}

macro_rules! ops {
    ($($(#[$doc:meta])* $name:ident = $label:literal, $conv:ident;)*) => {
        /// Every platform-dependent operation. The discriminant is the op's
        /// id in site records and its slot in the table.
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Op { $($(#[$doc])* $name,)* }

        impl Op {
            pub const ALL: [Op; OP_COUNT] = [$(Op::$name,)*];

            /// The op's name in logs and on the command line.
            pub const fn name(self) -> &'static str {
                match self { $(Op::$name => $label,)* }
            }

            pub const fn convention(self) -> Convention {
                match self { $(Op::$name => Convention::$conv,)* }
            }
        }

        /// How many ops there are.
        pub const OP_COUNT: usize = [$(Op::$name,)*].len();
    };
}

ops! {
    /// Mask maskable interrupts (native `cli`).
    IrqDisable = "irq_disable", CalleeSaves;
    /// Unmask them (native `sti`).
    IrqEnable = "irq_enable", CalleeSaves;
    /// Return the interrupt state in RAX as RFLAGS would hold it (IF = bit 9).
    SaveFlags = "save_flags", CalleeSaves;
    /// Restore the interrupt state from RDI (as `SaveFlags` returned it).
    RestoreFlags = "restore_flags", CalleeSaves;
    /// Enable interrupts and wait for one, with no window between.
    SafeHalt = "safe_halt", CalleeSaves;
    /// Wait for an interrupt without changing the interrupt state.
    Halt = "halt", CalleeSaves;
    /// Return the page-table base (CR3) in RAX.
    ReadCr3 = "read_cr3", CalleeSaves;
    /// Load the page-table base from RDI.
    WriteCr3 = "write_cr3", CalleeSaves;
    /// Flush the TLB entry for the address in RDI.
    FlushTlbPage = "flush_tlb_page", CalleeSaves;
    /// Flush the whole TLB, global entries included.
    FlushTlbAll = "flush_tlb_all", CalleeSaves;
    /// Store the page-table entry RSI at the address in RDI.
    SetPte = "set_pte", CalleeSaves;
    /// Load the kernel stack used on entry from a less privileged ring.
    LoadKernelStack = "load_kernel_stack", C;
    /// Signal end of interrupt.
    Eoi = "eoi", C;
    /// Nanoseconds of the platform clock since boot.
    ClockNs = "clock_ns", C;
    /// Arm the one-shot timer for an absolute clock time (ns); `u64::MAX`
    /// disarms it.
    SetTimer = "set_timer", C;
    /// Nanoseconds this vCPU was ready but not running (0 natively).
    StealNs = "steal_ns", C;
    /// Write bytes (pointer, length) to the platform console.
    ConsoleWrite = "console_write", C;
    /// Leave: power off, reboot, or exit with a status (see the kernel).
    Shutdown = "shutdown", C;
}

impl Op {
    /// The op with id `id`, if there is one.
    pub fn from_id(id: u16) -> Option<Op> {
        Op::ALL.get(usize::from(id)).copied()
    }

    /// Byte offset of this op's slot in the table of function addresses.
    pub const fn table_offset(self) -> usize {
        self as usize * 8
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The address of a backend function, in a form a `const` table can hold
/// (a function pointer cast to a raw pointer; its real signature is the
/// op's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FnAddr(pub *const ());

// SAFETY: a function's address is immutable data; sharing it between CPUs
// is as safe as sharing the code it points at.
unsafe impl Sync for FnAddr {}
// SAFETY: as above.
unsafe impl Send for FnAddr {}

impl FnAddr {
    pub fn addr(self) -> u64 {
        self.0 as u64
    }
}

/// How one backend implements one op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpImpl {
    /// Instruction bytes that do the op in place of the call, if the op
    /// has such a form on this platform.
    pub inline: Option<&'static [u8]>,
    /// The function that does it (its address), reached through the table
    /// when the site is not patched, and by a direct call when the op has
    /// no inline form. For `CalleeSaves` ops it must preserve every
    /// register but RAX.
    pub function: Option<FnAddr>,
    /// The op does nothing on this platform: the site becomes NOPs.
    pub nop: bool,
}

impl OpImpl {
    /// Not implemented: the site traps (`ud2`), the table slot stays empty.
    pub const MISSING: OpImpl = OpImpl {
        inline: None,
        function: None,
        nop: false,
    };

    pub const fn inline(bytes: &'static [u8], function: FnAddr) -> OpImpl {
        OpImpl {
            inline: Some(bytes),
            function: Some(function),
            nop: false,
        }
    }

    pub const fn function(function: FnAddr) -> OpImpl {
        OpImpl {
            inline: None,
            function: Some(function),
            nop: false,
        }
    }
}

/// Which backend a table belongs to: the one identity of a platform that
/// the kernel may ask for (the command line names backends by it, tests say
/// why they are skipped with it). Code that behaves differently per
/// platform calls an op or a hook of the backend instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendId {
    /// Bare hardware and hypervisors without a paravirtual interface.
    Native,
    /// KVM: kvmclock, PV EOI, steal time.
    Kvm,
    /// Xen, entered by PVH (hardware-virtualised ring 0).
    XenPvh,
    /// Xen, deprivileged PV guest.
    XenPv,
    /// A hypervisor offering VMware's Virtual Machine Interface (an
    /// option ROM).
    Vmi,
}

impl BackendId {
    /// Every backend, in the order the command line lists them.
    pub const ALL: [BackendId; 5] = [
        BackendId::Native,
        BackendId::Kvm,
        BackendId::XenPvh,
        BackendId::XenPv,
        BackendId::Vmi,
    ];

    /// The name the boot log and `vmops.backend=` use.
    pub const fn name(self) -> &'static str {
        match self {
            BackendId::Native => "native",
            BackendId::Kvm => "kvm",
            BackendId::XenPvh => "xen-pvh",
            BackendId::XenPv => "xen-pv",
            BackendId::Vmi => "vmi",
        }
    }

    /// The backend `name` names.
    pub fn from_name(name: &str) -> Option<BackendId> {
        Self::ALL.into_iter().find(|id| id.name() == name)
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A platform's implementation of every op.
#[derive(Clone, Copy, Debug)]
pub struct Backend {
    pub id: BackendId,
    pub ops: [OpImpl; OP_COUNT],
}

impl Backend {
    /// The backend's name (its id's).
    pub const fn name(&self) -> &'static str {
        self.id.name()
    }

    pub fn get(&self, op: Op) -> &OpImpl {
        &self.ops[op as usize]
    }
}

/// How sites are treated (`vmops=` on the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Patch every site at boot (the default).
    Eager,
    /// Patch each site the first time it runs.
    Lazy,
    /// Leave every site an indirect call through the table.
    Off,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Eager => "eager",
            Mode::Lazy => "lazy",
            Mode::Off => "off",
        }
    }
}

/// One call site as the site macro records it in `.vmops_sites`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// Address of the site's first byte.
    pub address: u64,
    /// Bytes reserved at the site.
    pub len: u16,
    /// `Op` id.
    pub op: u16,
    pub reserved: u32,
}

/// Why a site record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteError {
    UnknownOp { id: u16 },
    OutsideText { address: u64, len: u16 },
    BadLength { len: u16 },
    Overlaps { previous: u64 },
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteError::UnknownOp { id } => write!(f, "unknown op id {id}"),
            SiteError::OutsideText { address, len } => {
                write!(f, "{len} bytes at {address:#x} lie outside kernel text")
            }
            SiteError::BadLength { len } => {
                write!(f, "length {len} is not the site length {SITE_LEN}")
            }
            SiteError::Overlaps { previous } => {
                write!(f, "overlaps the site at {previous:#x}")
            }
        }
    }
}

/// Checks a site record against kernel text `[text_start, text_end)` and
/// the end of the previous accepted site (records are checked in address
/// order). Returns the op.
pub fn check_site(
    site: &Site,
    text_start: u64,
    text_end: u64,
    previous_end: Option<(u64, u64)>,
) -> Result<Op, SiteError> {
    let op = Op::from_id(site.op).ok_or(SiteError::UnknownOp { id: site.op })?;
    if usize::from(site.len) != SITE_LEN {
        return Err(SiteError::BadLength { len: site.len });
    }
    let end = site.address.checked_add(u64::from(site.len));
    if site.address < text_start || end.is_none_or(|end| end > text_end) {
        return Err(SiteError::OutsideText {
            address: site.address,
            len: site.len,
        });
    }
    if let Some((previous, previous_end)) = previous_end {
        if site.address < previous_end {
            return Err(SiteError::Overlaps { previous });
        }
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn ids_are_dense_and_round_trip() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
            assert_eq!(Op::from_id(i as u16), Some(*op));
            assert_eq!(op.table_offset(), i * 8);
        }
        assert_eq!(Op::from_id(OP_COUNT as u16), None);
        assert_eq!(Op::from_id(u16::MAX), None);
    }

    #[test]
    fn names_are_unique() {
        for a in Op::ALL {
            for b in Op::ALL {
                assert_eq!(a == b, a.name() == b.name());
            }
        }
    }

    #[test]
    fn site_record_layout_matches_the_macro() {
        // The site macro emits `.quad addr; .short len, op; .long 0`.
        assert_eq!(size_of::<Site>(), 16);
        assert_eq!(offset_of!(Site, address), 0);
        assert_eq!(offset_of!(Site, len), 8);
        assert_eq!(offset_of!(Site, op), 10);
    }

    fn site(address: u64, op: u16) -> Site {
        Site {
            address,
            len: SITE_LEN as u16,
            op,
            reserved: 0,
        }
    }

    #[test]
    fn bad_records_are_refused() {
        let (start, end) = (0x1000, 0x2000);
        assert_eq!(
            check_site(&site(0x1000, 0), start, end, None),
            Ok(Op::IrqDisable)
        );
        assert_eq!(
            check_site(&site(0x1000, 999), start, end, None),
            Err(SiteError::UnknownOp { id: 999 })
        );
        assert_eq!(
            check_site(&site(0x0ff0, 0), start, end, None),
            Err(SiteError::OutsideText {
                address: 0xff0,
                len: SITE_LEN as u16
            })
        );
        assert!(matches!(
            check_site(&site(0x2000 - 4, 0), start, end, None),
            Err(SiteError::OutsideText { .. })
        ));
        assert!(matches!(
            check_site(&site(u64::MAX - 2, 0), 0, u64::MAX, None),
            Err(SiteError::OutsideText { .. })
        ));
        let short = Site {
            len: 4,
            ..site(0x1100, 0)
        };
        assert_eq!(
            check_site(&short, start, end, None),
            Err(SiteError::BadLength { len: 4 })
        );
        assert_eq!(
            check_site(&site(0x1104, 1), start, end, Some((0x1100, 0x110c))),
            Err(SiteError::Overlaps { previous: 0x1100 })
        );
        assert_eq!(
            check_site(&site(0x110c, 1), start, end, Some((0x1100, 0x110c))),
            Ok(Op::IrqEnable)
        );
    }
}
