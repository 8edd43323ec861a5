//! What happens when the kernel cannot go on: panics and fatal exceptions.
//!
//! Both print where and why, the registers (for exceptions) and a
//! frame-pointer backtrace (the kernel is built with frame pointers), then
//! stop: in test mode by leaving QEMU with the panic status so the host sees
//! the failure, otherwise by halting. Addresses are printed raw; the host
//! rig and `images/symbolize` turn them into names with the kernel's
//! separate debug file, which keeps a symbol table out of the image.

use crate::arch::cpu;
use crate::arch::traps::{self, TrapFrame, VECTOR_DOUBLE_FAULT, VECTOR_PAGE_FAULT};
use crate::console::{emergency_write, emergency_write_fmt};
use crate::ktest;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

static DYING: AtomicBool = AtomicBool::new(false);

/// Deepest backtrace printed.
const MAX_FRAMES: usize = 32;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    cpu::irq_save();
    if DYING.swap(true, Ordering::SeqCst) {
        emergency_write("\nnested panic while dying; stopping\n");
        stop();
    }
    match info.location() {
        Some(location) => emergency_write_fmt(format_args!(
            "\npanic at {}:{}:{}: {}\n",
            location.file(),
            location.line(),
            location.column(),
            info.message()
        )),
        None => emergency_write_fmt(format_args!("\npanic: {}\n", info.message())),
    }
    backtrace(current_frame_pointer());
    stop()
}

/// Reports an exception the kernel cannot recover from, then stops.
pub fn fatal_exception(frame: &TrapFrame) -> ! {
    if DYING.swap(true, Ordering::SeqCst) {
        emergency_write("\nfault while dying; stopping\n");
        stop();
    }
    let vector = frame.vector as u8;
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    if (vector == VECTOR_PAGE_FAULT || vector == VECTOR_DOUBLE_FAULT)
        && x86_64::VirtAddr::try_new(cr2).is_ok_and(crate::mm::is_stack_guard)
    {
        // A #PF on a guard page, or the #DF it becomes when the CPU cannot
        // push the #PF frame onto the exhausted stack.
        emergency_write_fmt(format_args!(
            "\nEXCEPTION: kernel stack overflow: access to guard page at {cr2:#x} \
             (rsp={:#x}, rip={:#x}, {})\n",
            frame.rsp,
            frame.rip,
            traps::exception_name(vector)
        ));
    } else {
        emergency_write_fmt(format_args!(
            "\nEXCEPTION: {} (vector {vector}) error={:#x} at rip={:#x}\n",
            traps::exception_name(vector),
            frame.error_code,
            frame.rip
        ));
        if vector == 6 {
            if let Some(op) = crate::vmops::describe_site(frame.rip) {
                emergency_write_fmt(format_args!(
                    "  at a vmops site of {op}: the {} backend does not implement it\n",
                    crate::backend::chosen().map_or("current", |c| c.backend.name())
                ));
            }
        }
        if vector == VECTOR_PAGE_FAULT {
            let code = frame.error_code;
            emergency_write_fmt(format_args!(
                "  cr2={cr2:#x}: {} {}{}{}\n",
                if code & 2 != 0 { "write" } else { "read" },
                if code & 1 != 0 {
                    "protection violation"
                } else {
                    "not-present page"
                },
                if code & 16 != 0 {
                    ", instruction fetch"
                } else {
                    ""
                },
                if code & 8 != 0 {
                    ", reserved bit set"
                } else {
                    ""
                },
            ));
        }
    }
    emergency_write_fmt(format_args!("{frame}\n"));
    emergency_write_fmt(format_args!("backtrace:\n  #0  {:#018x}\n", frame.rip));
    backtrace_from(frame.rbp, 1);
    stop()
}

fn stop() -> ! {
    if ktest::test_mode() {
        cpu::debug_exit(ktest::EXIT_PANIC);
    }
    emergency_write("sanos: stopped.\n");
    cpu::halt_forever()
}

fn current_frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reads a register; the kernel is built with frame pointers, so
    // RBP holds this function's frame.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
    rbp
}

fn backtrace(rbp: u64) {
    emergency_write("backtrace:\n");
    backtrace_from(rbp, 0);
}

/// Walks the chain of saved frame pointers: at `[rbp]` the caller's RBP, at
/// `[rbp + 8]` the return address. Stops at a null or misaligned link or
/// one outside the kernel's stacks, so a corrupt chain cannot fault here.
/// Runs of one return address (deep recursion) print once with a count.
fn backtrace_from(mut rbp: u64, first_index: usize) {
    let mut repeated: (u64, usize) = (0, 0);
    let flush = |repeated: (u64, usize)| {
        if repeated.1 > 0 {
            emergency_write_fmt(format_args!(
                "      ... {:#018x} {} more times\n",
                repeated.0, repeated.1
            ));
        }
    };
    let mut index = first_index;
    for _ in 0..MAX_FRAMES * 64 {
        if index >= MAX_FRAMES
            || rbp == 0
            || !rbp.is_multiple_of(8)
            || !x86_64::VirtAddr::try_new(rbp).is_ok_and(|rbp| crate::mm::is_kernel_stack(rbp, 16))
        {
            break;
        }
        // SAFETY: `is_kernel_stack` checked that both words are mapped
        // stack memory.
        let (next, return_address) = unsafe {
            let slot = rbp as *const u64;
            (slot.read(), slot.add(1).read())
        };
        if return_address == 0 {
            break;
        }
        if return_address == repeated.0 {
            repeated.1 += 1;
        } else {
            flush(repeated);
            emergency_write_fmt(format_args!("  #{index:<2} {return_address:#018x}\n"));
            repeated = (return_address, 0);
            index += 1;
        }
        if next <= rbp {
            // Frames grow downwards: the caller's frame lies above.
            break;
        }
        rbp = next;
    }
    flush(repeated);
}
