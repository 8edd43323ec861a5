//! The kernel console: the 16550 UART on COM1 (I/O port 0x3f8, 115200 8N1)
//! and the `log` facade on top of it.
//!
//! Output works from the first line of `kernel_entry`: the UART needs no
//! memory set-up. Writers take the console lock with interrupts disabled so
//! an interrupt handler that logs cannot deadlock against the code it
//! interrupted. A panic or fatal exception writes through
//! [`emergency_write`], which does not wait for the lock.

use crate::arch::cpu;
use crate::vmops::ops;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

const COM1: u16 = 0x3f8;

/// The UART: the native backend's console device.
static UART: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);
/// Held while one message is written, so messages do not interleave.
static CONSOLE: Mutex<Writer> = Mutex::new(Writer);
static LOGGER: Logger = Logger;
static READY: AtomicBool = AtomicBool::new(false);

/// Formats to the platform console (the vmops `console_write` op), turning
/// LF into CR LF as terminals want.
struct Writer;

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().split_inclusive(|&b| b == b'\n') {
            match chunk.strip_suffix(b"\n") {
                Some(line) => {
                    ops::console_write(line);
                    ops::console_write(b"\r\n");
                }
                None => ops::console_write(chunk),
            }
        }
        Ok(())
    }
}

/// Brings up COM1 and installs the logger (level Info until the command
/// line says otherwise). Without a UART the native console is silent.
pub fn init() {
    // A deprivileged kernel has no I/O ports (its console is the
    // hypervisor's).
    let uart = if crate::backend::hooks().deprivileged {
        None
    } else {
        // SAFETY: 0x3f8..0x3ff is COM1's fixed port range on PCs, owned by
        // this module for the kernel's whole life.
        unsafe { Uart16550::new_port(COM1) }
            .ok()
            .and_then(|mut uart| uart.init(Config::default()).ok().map(|()| uart))
    };
    *UART.lock() = uart;
    READY.store(true, Ordering::Release);
    // A second set_logger call is the only error; there is none.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes raw bytes to the UART: the native `console_write` op. Callers
/// hold the console lock (or are dying, see [`emergency_write_fmt`]).
pub fn uart_write(bytes: &[u8]) {
    if let Some(uart) = UART.lock().as_mut() {
        uart.send_bytes_exact(bytes);
    }
}

/// Bytes received by the UART interrupt or from the platform's console
/// (Xen's ring or console_io), and the event that says so.
static INPUT: Mutex<alloc::collections::VecDeque<u8>> =
    Mutex::new(alloc::collections::VecDeque::new());
static INPUT_READY: spin::Once<crate::sched::sync::Event> = spin::Once::new();
/// Unread input kept, in bytes (a buffer size, not a page).
const INPUT_LIMIT: usize = 4096;

/// Whether console input is waiting (a read would not block).
pub fn input_pending() -> bool {
    if INPUT_READY.get().is_some() {
        return cpu::without_interrupts(|| !INPUT.lock().is_empty());
    }
    // The 16550's line status register (COM1 + 5): bit 0, data ready.
    // SAFETY: reading the LSR of the COM1 UART that `init` found has no
    // side effect on its state.
    UART.lock().is_some() && unsafe { cpu::inb(0x3fd) } & 1 != 0
}

/// A byte typed on the console, if one is waiting.
pub fn read_byte() -> Option<u8> {
    if INPUT_READY.get().is_some() {
        return cpu::without_interrupts(|| INPUT.lock().pop_front());
    }
    UART.lock()
        .as_mut()
        .and_then(|uart| uart.try_receive_byte().ok())
}

/// Waits for console input: until the receive interrupt says so when it
/// is routed, else for `poll_ns` (the caller then polls the UART).
pub fn wait_input(poll_ns: u64) {
    match INPUT_READY.get() {
        Some(ready) => {
            ready.wait(None);
        }
        None => crate::sched::sleep_ns(poll_ns),
    }
}

/// Hands bytes typed on the platform's console to the reader (interrupt
/// context: an event handler). Input beyond 4 KiB unread is dropped.
pub fn push_input(bytes: &[u8]) {
    {
        let mut input = INPUT.lock();
        let room = INPUT_LIMIT.saturating_sub(input.len());
        input.extend(bytes.iter().take(room));
    }
    if let Some(ready) = INPUT_READY.get() {
        ready.set();
    }
}

/// Console input arrives by [`push_input`] from now on (the platform's
/// console has no UART). Call once threads run.
pub fn enable_platform_input() {
    INPUT_READY.call_once(|| crate::sched::sync::Event::new(false, false));
}

fn uart_interrupt(_frame: &mut crate::arch::traps::TrapFrame) {
    {
        let mut uart = UART.lock();
        if let Some(uart) = uart.as_mut() {
            let mut input = INPUT.lock();
            while let Ok(byte) = uart.try_receive_byte() {
                if input.len() < INPUT_LIMIT {
                    input.push_back(byte);
                }
            }
        }
    }
    if let Some(ready) = INPUT_READY.get() {
        ready.set();
    }
    crate::vmops::ops::eoi();
}

/// ISA IRQ of COM1.
const COM1_IRQ: u8 = 4;

/// Switches console input from polling to COM1's receive interrupt, routed
/// through the I/O APIC the MADT names. Call once threads run.
pub fn enable_input_interrupt() {
    if UART.lock().is_none() {
        return;
    }
    if !crate::arch::ioapic::present() {
        log::info!("console: no I/O APIC; polling the UART");
        return;
    }
    INPUT_READY.call_once(|| crate::sched::sync::Event::new(false, false));
    crate::arch::traps::set_handler(crate::arch::traps::VECTOR_COM1, uart_interrupt);
    let gsi = match crate::arch::acpi::route_isa_irq(COM1_IRQ, crate::arch::traps::VECTOR_COM1) {
        Ok(gsi) => gsi,
        Err(error) => {
            log::warn!("console: {error}; polling the UART");
            return;
        }
    };
    if let Some(uart) = UART.lock().as_mut() {
        uart.enable_interrupts(uart_16550::spec::registers::IER::DATA_READY);
    }
    log::info!(
        "console: UART input on GSI {gsi} (vector {:#x})",
        crate::arch::traps::VECTOR_COM1
    );
}

/// Writes formatted text to the console.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    cpu::without_interrupts(|| {
        // The writer itself never fails.
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

/// Writes raw bytes (a user program's output) to the console, LF as CR LF,
/// as one piece: log lines do not cut into it.
pub fn write_bytes(bytes: &[u8]) {
    cpu::without_interrupts(|| {
        let _console = CONSOLE.lock();
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            match chunk.strip_suffix(b"\n") {
                Some(line) => {
                    ops::console_write(line);
                    ops::console_write(b"\r\n");
                }
                None => ops::console_write(chunk),
            }
        }
    });
}

/// Writes to the console without waiting for its lock: for the panic and
/// fatal-exception paths, where the lock holder may be the code that died.
pub fn emergency_write(s: &str) {
    emergency_write_fmt(format_args!("{s}"));
}

/// Formatted [`emergency_write`].
pub fn emergency_write_fmt(args: fmt::Arguments<'_>) {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    cpu::without_interrupts(|| {
        if CONSOLE.is_locked() || UART.is_locked() {
            // SAFETY: only called on paths that never return to the
            // interrupted code (panic, fatal trap), on the only CPU: the
            // holder will not touch the console again, so taking the locks
            // over cannot race.
            unsafe {
                CONSOLE.force_unlock();
                UART.force_unlock();
            }
        }
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

/// `print!` for the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// `println!` for the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let us = crate::time::since_boot_ns() / 1000;
        let level = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            log::Level::Info => "",
            log::Level::Debug => "debug: ",
            log::Level::Trace => "trace: ",
        };
        write_fmt(format_args!(
            "[{:5}.{:06}] {level}{}\n",
            us / 1_000_000,
            us % 1_000_000,
            record.args()
        ));
        // Only once syslog= is set, which is after the heap is up: the
        // line is formatted into a heap string for the queue.
        if crate::net::syslog::enabled() {
            let severity = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            crate::net::syslog::queue(severity, alloc::format!("{}", record.args()));
        }
    }

    fn flush(&self) {}
}
