//! The VMI backend: a hypervisor that offers VMware's Virtual Machine
//! Interface through an option ROM (the protocol: `hv::vmi`; sanos's
//! 64-bit convention and the test ROM: images/vmi-rom/README.md).
//!
//! At detection the ROM area is scanned; a ROM that carries both
//! signatures is checked (checksum, length, API major version), copied
//! into the kernel image's `.vmi_rom` area (where kernel text reaches it
//! with `call rel32`, and where its data pages can be writable: the BIOS
//! leaves the ROM area read-only), `Init` is called, and `GetRelocationInfo`
//! is asked how to bind every op VMI has a call for. Any refusal is logged
//! with its reason and the kernel goes on with the native backend.
//!
//! The ops become: the ROM's entry points where it answers CALL_REL, the
//! native instruction where it answers NONE, nothing where it answers NOP;
//! the clock, the one-shot timer and steal time are kernel functions over
//! GetCycleCounter / SetAlarm / CancelAlarm (VMI's cycles are the TSC's, at
//! GetCycleFrequency); EOI, the console and shutdown stay the kernel's.

use super::{native, BackendId, Hooks};
use crate::arch::layout::PHYS_MAP_BASE;
use core::sync::atomic::{AtomicU64, Ordering};
use hv::vmi::{self, Binding, Call, Header, RelocationError, RomError};
use pure::boot::bootinfo::BootInfo;
use spin::Once;
use vmops::{Backend, FnAddr, Op, OpImpl};

unsafe extern "C" {
    static __vmi_rom_start: u8;
    static __vmi_rom_end: u8;
}

/// The ROM in use.
pub struct Rom {
    /// Where the BIOS put it.
    pub phys: u64,
    pub header: Header,
    /// Where the kernel's copy runs.
    pub base: u64,
    /// How each VMI call is bound, by call number.
    bindings: [Option<Binding>; vmi::NUM_CALLS as usize],
}

impl Rom {
    /// The ROM's code as the kernel maps it (read-execute).
    pub fn code(&self) -> core::ops::Range<u64> {
        let code_len = match self.header.data_area {
            0 => self.header.len,
            data => data,
        };
        self.base..self.base + code_len as u64
    }

    /// How `call` was bound (the calls the kernel asked about).
    pub fn binding(&self, call: Call) -> Option<Binding> {
        self.bindings[usize::from(call.number())]
    }

    /// The test ROM's count of `call` (its data area starts with one u64
    /// per call number: images/vmi-rom/README.md); `None` for a ROM
    /// without a data area.
    pub fn calls_served(&self, call: Call) -> Option<u64> {
        if self.header.data_area == 0 {
            return None;
        }
        let counter = self.base + self.header.data_area as u64 + u64::from(call.number()) * 8;
        // SAFETY: the data area lies inside the copy (checked by
        // `vmi::parse`), mapped writable for the ROM; the counter is an
        // aligned u64 the ROM updates, read volatile.
        Some(unsafe { core::ptr::read_volatile(counter as *const u64) })
    }
}

/// Why a ROM was not used.
#[derive(Debug)]
pub enum Refusal {
    Rom(RomError),
    /// It does not fit the kernel's `.vmi_rom` area.
    TooLarge {
        len: usize,
        room: usize,
    },
    InitFailed {
        status: u64,
    },
    Relocation(RelocationError),
    /// GetCycleFrequency answered 0.
    NoCycleFrequency,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Rom(error) => write!(f, "{error}"),
            Refusal::TooLarge { len, room } => {
                write!(
                    f,
                    "{len} bytes, more than the {room} the kernel keeps for it"
                )
            }
            Refusal::InitFailed { status } => write!(f, "Init failed (status {status:#x})"),
            Refusal::Relocation(error) => write!(f, "{error}"),
            Refusal::NoCycleFrequency => write!(f, "GetCycleFrequency answered 0"),
        }
    }
}

static ROM: Once<Rom> = Once::new();
static BACKEND: Once<Backend> = Once::new();

/// Entry points the kernel calls (0 until bound).
static GET_CYCLE_COUNTER: AtomicU64 = AtomicU64::new(0);
static SET_ALARM: AtomicU64 = AtomicU64::new(0);
static CANCEL_ALARM: AtomicU64 = AtomicU64::new(0);
static SET_LINEAR_MAPPING: AtomicU64 = AtomicU64::new(0);
/// FlushTLB, called by `sanos_vmi_flush_tlb_all` (read from asm).
#[unsafe(no_mangle)]
static SANOS_VMI_FLUSH_TLB: AtomicU64 = AtomicU64::new(0);
/// The cycle counter and the clock at the moment the backend took over:
/// the clock goes on from there at the ROM's rate.
static CYCLES_AT_START: AtomicU64 = AtomicU64::new(0);
static NS_AT_START: AtomicU64 = AtomicU64::new(0);

/// The ROM in use, if the VMI backend was chosen.
pub fn rom() -> Option<&'static Rom> {
    ROM.get()
}

/// Checks a ROM found at the start of `bytes` (which run to the end of the
/// ROM area).
pub fn examine(bytes: &[u8]) -> Result<Header, Refusal> {
    let header = vmi::parse(bytes).map_err(Refusal::Rom)?;
    let room = area().len();
    if header.len > room {
        return Err(Refusal::TooLarge {
            len: header.len,
            room,
        });
    }
    Ok(header)
}

/// The kernel's area for the copy.
fn area() -> core::ops::Range<usize> {
    (&raw const __vmi_rom_start) as usize..(&raw const __vmi_rom_end) as usize
}

/// The copy's code and data ranges (virtual), for the kernel's page
/// tables: code read-execute, the rest (all of it when no ROM is in use)
/// read-write, never executable.
pub fn image_ranges() -> (core::ops::Range<u64>, core::ops::Range<u64>) {
    let area = area();
    let (start, end) = (area.start as u64, area.end as u64);
    match ROM.get() {
        Some(rom) => {
            let code_end = rom.code().end.next_multiple_of(crate::mm::PAGE_SIZE);
            (rom.code().start..code_end, code_end..end)
        }
        None => (start..start, start..end),
    }
}

/// The ROM area as the boot page tables show it (before `mm::init`).
fn scan_area() -> &'static [u8] {
    let len = (vmi::SCAN_END - vmi::SCAN_START) as usize;
    // SAFETY: the boot page tables map the first 4 GiB at PHYS_MAP_BASE
    // (`select` runs before `mm::init` replaces them); the BIOS ROM area
    // is readable memory on every PC, and nothing writes it.
    unsafe { core::slice::from_raw_parts((PHYS_MAP_BASE + vmi::SCAN_START) as *const u8, len) }
}

/// Scans the ROM area for a VMI ROM and binds to the first good one.
/// Refusals are logged; `None` means the native (or KVM) backend.
pub fn probe() -> Option<&'static Rom> {
    let area = scan_area();
    let mut at = 0usize;
    while at < area.len() {
        let phys = vmi::SCAN_START + at as u64;
        let bytes = &area[at..];
        at += vmi::SCAN_STEP as usize;
        if !vmi::is_vmi_rom(bytes) {
            continue;
        }
        match examine(bytes).and_then(|header| bind(phys, header, bytes)) {
            Ok(rom) => return Some(ROM.call_once(|| rom)),
            Err(refusal) => log::error!("vmi: ROM at {phys:#x} refused: {refusal}"),
        }
    }
    None
}

/// Calls the ROM at `entry` with up to four arguments (System V).
///
/// # Safety
/// `entry` must be a call of the ROM's copy that takes these arguments.
unsafe fn call4(entry: u64, a: u64, b: u64, c: u64, d: u64) -> (u64, u64) {
    #[repr(C)]
    struct Pair(u64, u64);
    // SAFETY: the caller vouches for the entry point and its arguments;
    // ROM calls follow the System V convention (sanos's 64-bit VMI
    // convention), which a two-u64 struct returns in RAX:RDX.
    let function: extern "sysv64" fn(u64, u64, u64, u64) -> Pair =
        unsafe { core::mem::transmute(entry as usize) };
    let Pair(rax, rdx) = function(a, b, c, d);
    (rax, rdx)
}

/// Calls entry `slot` (an address in the copy) of a bound call.
fn rom_call(entry: &AtomicU64, a: u64, b: u64, c: u64, d: u64) -> u64 {
    // SAFETY: the entry was bound from GetRelocationInfo's answer, checked
    // to lie in the ROM's code, for the call whose arguments the callers
    // of each static pass.
    unsafe { call4(entry.load(Ordering::Relaxed), a, b, c, d).0 }
}

/// Copies the ROM into the kernel's area, calls Init, and asks how to bind
/// every call sanos uses.
fn bind(phys: u64, header: Header, bytes: &[u8]) -> Result<Rom, Refusal> {
    let area = area();
    // SAFETY: `.vmi_rom` is the kernel's own NOLOAD area, reserved for this
    // copy and used by nothing else; the boot page tables map the image
    // writable and executable until `mm::init`, and `examine` checked that
    // the ROM fits.
    let copy = unsafe { core::slice::from_raw_parts_mut(area.start as *mut u8, area.len()) };
    copy[..header.len].copy_from_slice(&bytes[..header.len]);
    copy[header.len..].fill(0);
    let base = area.start as u64;
    let slot = |call: Call| base + call.slot_offset();

    // SAFETY: Init and GetRelocationInfo are called at their slots, as the
    // protocol defines, with the arguments it defines.
    let (status, _) = unsafe { call4(slot(Call::Init), 0, 0, 0, 0) };
    if status != 0 {
        return Err(Refusal::InitFailed { status });
    }
    let mut rom = Rom {
        phys,
        header,
        base,
        bindings: [None; vmi::NUM_CALLS as usize],
    };
    let code = rom.code();
    for call in vmops::vmi::SITE_CALLS.into_iter().chain(vmi::KERNEL_CALLS) {
        // SAFETY: as above.
        let (target, kind) = unsafe {
            call4(
                slot(Call::GetRelocationInfo),
                u64::from(call.number()),
                0,
                0,
                0,
            )
        };
        let kind = kind as u8;
        let binding = vmi::decode(call, kind, target, code.clone()).map_err(Refusal::Relocation)?;
        if vmi::KERNEL_CALLS.contains(&call)
            && call != Call::FlushTlb
            && !matches!(binding, Binding::Call(_))
        {
            return Err(Refusal::Relocation(RelocationError::NotCallable {
                call,
                kind,
            }));
        }
        rom.bindings[usize::from(call.number())] = Some(binding);
    }
    let entry = |call: Call| match rom.binding(call) {
        Some(Binding::Call(target)) => target,
        _ => 0,
    };
    // SAFETY: GetCycleFrequency takes no argument (bound CALL_REL above).
    let hz = unsafe { call4(entry(Call::GetCycleFrequency), 0, 0, 0, 0).0 };
    if hz == 0 {
        return Err(Refusal::NoCycleFrequency);
    }
    GET_CYCLE_COUNTER.store(entry(Call::GetCycleCounter), Ordering::Relaxed);
    SET_ALARM.store(entry(Call::SetAlarm), Ordering::Relaxed);
    CANCEL_ALARM.store(entry(Call::CancelAlarm), Ordering::Relaxed);
    SET_LINEAR_MAPPING.store(entry(Call::SetLinearMapping), Ordering::Relaxed);
    SANOS_VMI_FLUSH_TLB.store(entry(Call::FlushTlb), Ordering::Relaxed);

    crate::time::set_tsc_hz(hz, crate::time::TscSource::Vmi);
    CYCLES_AT_START.store(cycles(vmi::CYCLES_REAL), Ordering::Relaxed);
    NS_AT_START.store(crate::time::tsc_clock_ns(), Ordering::Relaxed);
    log::info!(
        "vmi: ROM at {phys:#x}, API {}.{}, {} bytes, copied to {base:#x}; cycles at {}.{:03} MHz",
        header.major,
        header.minor,
        header.len,
        hz / 1_000_000,
        hz / 1000 % 1000
    );
    Ok(rom)
}

fn cycles(counter: u64) -> u64 {
    rom_call(&GET_CYCLE_COUNTER, counter, 0, 0, 0)
}

extern "C" fn clock_ns() -> u64 {
    let cycles = cycles(vmi::CYCLES_REAL).wrapping_sub(CYCLES_AT_START.load(Ordering::Relaxed));
    NS_AT_START.load(Ordering::Relaxed) + crate::time::ticks_to_ns(cycles)
}

extern "C" fn set_timer(deadline_ns: u64) {
    let counter = vmi::CYCLES_REAL;
    if deadline_ns == u64::MAX {
        rom_call(&CANCEL_ALARM, counter, 0, 0, 0);
        return;
    }
    let after_start = deadline_ns.saturating_sub(NS_AT_START.load(Ordering::Relaxed));
    let cycles = u128::from(after_start) * u128::from(crate::time::tsc_hz()) / 1_000_000_000;
    let expiry = CYCLES_AT_START
        .load(Ordering::Relaxed)
        .saturating_add(u64::try_from(cycles).unwrap_or(u64::MAX));
    let flags = counter | vmi::ALARM_IS_ONESHOT | vmi::ALARM_WIRED_LVTT;
    let status = rom_call(&SET_ALARM, flags, expiry, 0, 0);
    if status != 0 {
        static REPORTED: core::sync::atomic::AtomicBool =
            core::sync::atomic::AtomicBool::new(false);
        if !REPORTED.swap(true, Ordering::Relaxed) {
            log::error!("vmi: SetAlarm failed (status {status:#x}); no timer interrupts");
        }
    }
}

extern "C" fn steal_ns() -> u64 {
    crate::time::ticks_to_ns(cycles(vmi::CYCLES_STOLEN))
}

unsafe extern "C" {
    /// FlushTLB(FLUSH_TLB | FLUSH_GLOBAL) in the callee-saves convention
    /// of `flush_tlb_all` (the ROM's FlushTLB changes only RAX).
    fn sanos_vmi_flush_tlb_all();
}

core::arch::global_asm!(
    ".pushsection .text.sanos_vmi_flush_tlb_all, \"ax\"",
    ".global sanos_vmi_flush_tlb_all",
    "sanos_vmi_flush_tlb_all:",
    "push rdi",
    "mov edi, {flags}",
    "call qword ptr [rip + SANOS_VMI_FLUSH_TLB]",
    "pop rdi",
    "ret",
    ".popsection",
    flags = const vmi::FLUSH_TLB | vmi::FLUSH_GLOBAL,
);

/// Tells the ROM where the local APIC's registers are mapped (xAPIC mode;
/// in x2APIC mode they are MSRs), so that its alarm can program the timer.
pub fn set_apic_mapping(virt: u64, phys: u64) {
    let status = rom_call(&SET_LINEAR_MAPPING, 0, virt, 1, phys >> 12);
    if status != 0 {
        log::error!("vmi: SetLinearMapping refused the local APIC page (status {status:#x})");
    }
}

/// The ROM and, where it keeps them (the test ROM), the calls it served.
pub fn describe(out: &mut dyn core::fmt::Write) -> core::fmt::Result {
    let Some(rom) = ROM.get() else {
        return Ok(());
    };
    writeln!(
        out,
        "  vmi ROM at {:#x}, API {}.{}, {} bytes, running at {:#x}",
        rom.phys, rom.header.major, rom.header.minor, rom.header.len, rom.base
    )?;
    let calls = vmops::vmi::SITE_CALLS.iter().chain(&vmi::KERNEL_CALLS);
    for call in calls {
        let binding = match rom.binding(*call) {
            Some(Binding::Call(_)) => "call",
            Some(Binding::Native) => "native",
            Some(Binding::Nop) => "nop",
            None => "-",
        };
        match rom.calls_served(*call) {
            Some(served) => writeln!(out, "    {call:<18} {binding:<6} served {served}")?,
            None => writeln!(out, "    {call:<18} {binding}")?,
        }
    }
    Ok(())
}

/// The backend for the ROM that `probe` bound.
pub fn backend(rom: &Rom) -> &'static Backend {
    BACKEND.call_once(|| {
        let mut ops = native::BACKEND.ops;
        for op in Op::ALL {
            if let Some(binding) = vmops::vmi::site_call(op).and_then(|call| rom.binding(call)) {
                ops[op as usize] = vmops::vmi::op_impl(binding, native::BACKEND.ops[op as usize]);
            }
        }
        ops[Op::FlushTlbAll as usize] = match rom.binding(Call::FlushTlb) {
            Some(Binding::Call(_)) => {
                OpImpl::function(FnAddr(sanos_vmi_flush_tlb_all as *const ()))
            }
            Some(binding) => {
                vmops::vmi::op_impl(binding, native::BACKEND.ops[Op::FlushTlbAll as usize])
            }
            None => native::BACKEND.ops[Op::FlushTlbAll as usize],
        };
        ops[Op::ClockNs as usize] = OpImpl::function(FnAddr(clock_ns as *const ()));
        ops[Op::SetTimer as usize] = OpImpl::function(FnAddr(set_timer as *const ()));
        ops[Op::StealNs as usize] = OpImpl::function(FnAddr(steal_ns as *const ()));
        Backend {
            id: BackendId::Vmi,
            ops,
        }
    })
}

/// As native, except that the ROM must learn where the local APIC is
/// before its alarm runs.
fn start_interrupts(boot: &BootInfo<'_>) {
    native::start_interrupts_with(boot, |apic_page| {
        if let Some((virt, phys)) = apic_page {
            set_apic_mapping(virt, phys);
        }
    });
}

pub static HOOKS: Hooks = Hooks {
    id: BackendId::Vmi,
    start_interrupts,
    ..native::HOOKS_BASE
};

mod tests {
    use super::*;
    use crate::ktest::{ktest, not_applicable, TestResult};
    use crate::vmops::ops;
    use crate::{kassert, kassert_eq};

    fn vmi_rom() -> Option<&'static Rom> {
        (crate::backend::id() == BackendId::Vmi).then(rom).flatten()
    }

    /// How many more times `call` ran through the ROM while `f` ran.
    fn served(rom: &Rom, call: Call, f: impl FnOnce()) -> u64 {
        let before = rom.calls_served(call).unwrap_or(0);
        f();
        rom.calls_served(call).unwrap_or(0) - before
    }

    #[ktest]
    fn interrupt_ops_go_through_the_rom() -> TestResult {
        let Some(rom) = vmi_rom() else {
            return not_applicable("no VMI ROM in use");
        };
        kassert!(
            rom.calls_served(Call::Init).is_some(),
            "the ROM has no counters"
        );
        kassert_eq!(rom.calls_served(Call::Init), Some(1));
        let expect = |call: Call| match rom.binding(call) {
            Some(Binding::Call(_)) => 1,
            _ => 0,
        };
        let flags = ops::save_flags();
        ops::irq_disable();
        // Interrupts are off: nothing else runs an op in between.
        kassert_eq!(
            served(rom, Call::GetInterruptMask, || {
                ops::save_flags();
            }),
            expect(Call::GetInterruptMask)
        );
        kassert_eq!(
            served(rom, Call::DisableInterrupts, ops::irq_disable),
            expect(Call::DisableInterrupts)
        );
        let masked = ops::save_flags();
        kassert_eq!(
            served(rom, Call::SetInterruptMask, || ops::restore_flags(masked)),
            expect(Call::SetInterruptMask)
        );
        // GetCR3 is answered NONE by the test ROM: the native instruction
        // runs and the ROM never sees it.
        kassert_eq!(
            served(rom, Call::GetCr3, || {
                ops::read_cr3();
            }),
            expect(Call::GetCr3)
        );
        kassert_eq!(
            served(rom, Call::InvalPage, || ops::flush_tlb_page(rom.base)),
            expect(Call::InvalPage)
        );
        kassert_eq!(
            served(rom, Call::FlushTlb, ops::flush_tlb_all),
            expect(Call::FlushTlb)
        );
        // Enabling lets interrupts in, whose handlers may use ops too.
        let enabled = served(rom, Call::EnableInterrupts, || {
            ops::irq_enable();
            ops::irq_disable();
        });
        kassert!(
            enabled >= expect(Call::EnableInterrupts),
            "EnableInterrupts served {enabled}"
        );
        ops::restore_flags(flags);
        // Time ran through the ROM.
        for call in vmi::TIME_CALLS {
            kassert!(
                rom.calls_served(call).unwrap_or(0) > 0 || call == Call::CancelAlarm,
                "{call} never called"
            );
        }
        Ok(())
    }

    #[ktest]
    fn the_shell_shows_the_rom_and_its_calls() -> TestResult {
        if vmi_rom().is_none() {
            return not_applicable("no VMI ROM in use");
        }
        let mut out = alloc::string::String::new();
        crate::shell::execute("vmops", &mut out);
        kassert!(out.contains("platform vmi (vmi ROM, API 13.3)"), "{out}");
        kassert!(out.contains("vmi ROM at 0x"), "{out}");
        kassert!(
            out.lines().any(|l| l
                .trim_start()
                .starts_with("EnableInterrupts   call   served ")),
            "{out}"
        );
        kassert!(
            out.lines()
                .any(|l| l.trim_start() == "GetCR3             native served 0"),
            "{out}"
        );
        Ok(())
    }

    #[ktest]
    fn the_rom_runs_from_a_protected_copy() -> TestResult {
        let Some(rom) = vmi_rom() else {
            return not_applicable("no VMI ROM in use");
        };
        use crate::mm::paging::{flags_of, Flags};
        let code = flags_of(x86_64::VirtAddr::new(rom.code().start));
        kassert!(
            code.is_some_and(|f| !f.contains(Flags::WRITABLE) && !f.contains(Flags::NO_EXECUTE)),
            "ROM code mapped {code:?}"
        );
        let data = flags_of(x86_64::VirtAddr::new(rom.code().end));
        kassert!(
            data.is_some_and(|f| f.contains(Flags::WRITABLE)),
            "ROM data mapped {data:?}"
        );
        Ok(())
    }

    #[ktest]
    fn corrupted_copies_are_refused_with_the_reason() -> TestResult {
        let Some(rom) = vmi_rom() else {
            return not_applicable("no VMI ROM in use");
        };
        // The original, as the BIOS left it (the copy's counters changed).
        let len = rom.header.len;
        let original = crate::mm::map_phys(x86_64::PhysAddr::new(rom.phys), len as u64, true);
        // SAFETY: `len` bytes of the ROM area, just mapped, read only.
        let original = unsafe { core::slice::from_raw_parts(original.as_ptr::<u8>(), len) };
        kassert!(examine(original).is_ok(), "the original does not pass");
        let mut bad = alloc::vec::Vec::from(original);
        bad[64] ^= 0x01;
        let refusal = examine(&bad).err().map(|r| alloc::format!("{r}"));
        kassert!(
            refusal
                .as_deref()
                .is_some_and(|r| r.starts_with("bad checksum")),
            "{refusal:?}"
        );
        let refusal = examine(&original[..len - 512])
            .err()
            .map(|r| alloc::format!("{r}"));
        kassert!(
            refusal
                .as_deref()
                .is_some_and(|r| r.starts_with("truncated")),
            "{refusal:?}"
        );
        Ok(())
    }
}
