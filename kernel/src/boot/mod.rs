//! Boot: the entry code and ELF notes ([`entry`]: PVH, multiboot2, Xen
//! PV), reading each protocol's structures into one `BootInfo`
//! ([`collect`]), and `kernel_entry`, where every entry path arrives in
//! 64-bit mode, with the start-up sequence that turns the machine into a
//! running kernel.

pub mod collect;
pub mod entry;

use crate::arch::cpu;
use crate::{backend, console, ktest, mm, sched, time};
use pure::boot::bootinfo::BootInfo;
use pure::boot::cmdline::{self, CrashKind, Options, TestSelection};
use spin::Once;

static BOOT_INFO: Once<BootInfo<'static>> = Once::new();

/// What the entry path found (valid once the banner is printed).
pub fn boot_info() -> &'static BootInfo<'static> {
    BOOT_INFO.get().expect("boot_info before start-up finished")
}

/// Called by the boot assembly with the protocol, the address of the
/// protocol's boot information (physical; Xen PV: the start info's virtual
/// address), the TSC at the first instruction, and (Xen PV) the stack
/// pointer the domain builder entered with.
pub extern "C" fn kernel_entry(protocol: u32, info: u64, tsc_at_entry: u64, entry_sp: u64) -> ! {
    time::set_boot_tsc(tsc_at_entry);
    // Deprivileged under Xen PV: the backend goes in before any vmops site
    // runs, and Xen's trap table and segments replace the IDT and GDT.
    let pv_layout =
        (protocol == entry::PROTOCOL_XEN_PV).then(|| backend::enter_xen_pv(info, entry_sp));
    console::init();
    (backend::hooks().init_cpu)();

    let collected = match pv_layout {
        Some(layout) => collect::xen_pv(info, &layout),
        None => collect::collect(protocol, info),
    };
    let mut boot = match collected {
        Ok(boot) => boot,
        Err(error) => {
            panic!("cannot read the boot information: {error} (protocol {protocol}, at {info:#x})")
        }
    };
    let options = cmdline::parse(boot.cmdline, |diag| log::warn!("{diag}"));
    log::set_max_level(options.loglevel);
    let chosen = backend::select(&options, &boot);
    let hooks = backend::hooks();
    (hooks.fill_memory_map)(&mut boot);
    collect::finalize(&mut boot);
    time::calibrate();
    log::info!(
        "boot: {} via {}, command line \"{}\"",
        boot.protocol,
        boot.loader_name,
        boot.cmdline
    );
    log_memory_map(&boot);

    if let Err(error) = mm::init(&mut boot, (hooks.shared_page)().as_slice()) {
        panic!("memory: {error}");
    }
    (hooks.start_interrupts)(&boot);
    sched::init();
    cpu::irq_enable();
    (hooks.after_threads)();
    time::init_wall_clock();
    crate::net::configure(match options.ip {
        Some(ip) => crate::net::IpConfig::Static {
            address: ip.address,
            prefix: ip.prefix,
            gateway: ip.gateway,
            dns: ip.dns,
        },
        None => crate::net::IpConfig::Dhcp,
    });
    if options.syslog.is_some() {
        // Keep the log from here on for the server, once it is known.
        crate::net::syslog::request();
    }
    crate::dev::probe();
    crate::net::start_services(crate::net::Services {
        ntp: options.ntp.map(alloc::string::String::from),
        syslog: options.syslog.and_then(|target| {
            let (host, port) = pure::boot::cmdline::parse_host_port(target)?;
            Some((
                alloc::string::String::from(host),
                port.unwrap_or(pure::boot::cmdline::DEFAULT_SYSLOG_PORT),
            ))
        }),
    });

    match boot.initrd() {
        Some(initrd) => log::info!(
            "initrd: {} bytes at {:#x}{}{}",
            initrd.len(),
            initrd.start,
            if initrd.cmdline.is_empty() { "" } else { ", " },
            initrd.cmdline
        ),
        None => log::info!("initrd: none given"),
    }

    crate::kprintln!(
        "sanos {} on {} ({}), {} MiB, boot {} us",
        env!("CARGO_PKG_VERSION"),
        chosen.platform.name(),
        chosen.backend.name(),
        boot.memory.total_usable_bytes() >> 20,
        time::ticks_to_ns(cpu::rdtsc().wrapping_sub(tsc_at_entry)) / 1000
    );
    kernel_main(BOOT_INFO.call_once(|| boot), &options)
}

fn kernel_main(boot: &BootInfo<'_>, options: &Options<'_>) -> ! {
    if options.test.is_some() {
        ktest::set_test_mode();
    }
    if let Some(kind) = options.crash {
        crash(kind);
    }
    if let Some(ms) = options.heartbeat_ms {
        let period = u64::from(ms) * 1_000_000;
        let beat = move || -> u64 {
            let mut stolen_before = crate::vmops::ops::steal_ns();
            loop {
                let now = crate::vmops::ops::clock_ns();
                crate::kprintln!(
                    "heartbeat {}.{:06}",
                    now / 1_000_000_000,
                    now % 1_000_000_000 / 1000
                );
                // A stop the hypervisor charged (xl pause, a busy host).
                let stolen = crate::vmops::ops::steal_ns();
                let delta = stolen.saturating_sub(stolen_before);
                if delta >= 1_000_000_000 {
                    crate::kprintln!(
                        "heartbeat: {}.{} s stolen since the last beat",
                        delta / 1_000_000_000,
                        delta % 1_000_000_000 / 100_000_000
                    );
                }
                stolen_before = stolen;
                sched::sleep_ns(period - now % period);
            }
        };
        if let Err(error) = sched::spawn("heartbeat", beat) {
            log::error!("heartbeat: cannot start: {error:?}");
        }
    }
    if options.bench {
        crate::bench::run();
        cpu::debug_exit(ktest::EXIT_PASSED);
    }
    if let Some(selection) = options.test {
        let filter = match selection {
            TestSelection::All => "",
            TestSelection::Matching(filter) => filter,
        };
        let (_passed, failed) = ktest::run(filter, options.test_skip);
        if options.test_wait {
            // The platform (xl shutdown) ends the run; give up after 10 min.
            crate::kprintln!("ktest: waiting for the platform to shut the machine down");
            sched::sleep_ns(600_000_000_000);
            log::error!("ktest: no shutdown request in 10 minutes");
        }
        cpu::debug_exit(if failed == 0 {
            ktest::EXIT_PASSED
        } else {
            ktest::EXIT_FAILED
        });
    }
    if let Some(path) = options.init {
        run_init(boot, path, options);
    }
    crate::net::httpd::start_appliance(boot);
    log::info!("sanos: starting the shell");
    if let Err(error) = sched::spawn("shell", crate::shell::run) {
        log::error!("shell: cannot start: {error:?}");
    }
    // Thread 1 has nothing more to do.
    sched::exit(0)
}

/// The boot module's bytes (the site image, or a program's files), empty
/// without one.
pub fn module_bytes(boot: &BootInfo<'_>) -> &'static [u8] {
    match boot.initrd() {
        Some(module) => {
            let virt = crate::mm::xlate::phys_to_virt(x86_64::PhysAddr::new(module.start));
            // SAFETY: the boot module is reserved in the memory map and
            // covered by the direct map (RAM); nothing writes to it, for
            // the kernel's whole life.
            unsafe { core::slice::from_raw_parts(virt.as_ptr::<u8>(), module.len() as usize) }
        }
        None => &[],
    }
}

/// Runs the program `init=` names, with the words after `--` as its
/// arguments, until it exits; then powers off with its status (QEMU's
/// `isa-debug-exit` carries it), or starts it again (`init.restart=yes`).
fn run_init(boot: &BootInfo<'_>, path: &str, options: &Options<'_>) -> ! {
    let archive = match pure::fs::cpio::Archive::parse(module_bytes(boot)) {
        Ok(archive) => &*alloc::boxed::Box::leak(alloc::boxed::Box::new(archive)),
        Err(error) => {
            log::error!(
                "init: the boot module is no cpio (newc) archive ({error}); cannot run {path}"
            );
            crate::dev::shutdown();
            crate::vmops::ops::shutdown(crate::backend::ShutdownReason::Exit(127).encode());
            crate::vmops::ops::shutdown(crate::backend::ShutdownReason::PowerOff.encode());
            cpu::halt_forever()
        }
    };
    let tmpfs: alloc::vec::Vec<&str> = options
        .mounts
        .map(|list| list.split(',').filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let mut argv: alloc::vec::Vec<&[u8]> = alloc::vec![path.as_bytes()];
    argv.extend(options.app_args.split_ascii_whitespace().map(str::as_bytes));
    let envp: [&[u8]; 3] = [b"HOME=/", b"PATH=/bin:/usr/bin", b"TERM=linux"];
    let status = loop {
        log::info!("init: starting {path}");
        let status = match crate::user::run(archive, &tmpfs, path, &argv, &envp) {
            Ok(crate::user::Ended::Exited(code)) => {
                log::info!("init: {path} exited with status {code}");
                code
            }
            Ok(ended @ crate::user::Ended::Signaled(_)) => {
                log::error!(
                    "init: {path} was killed (status {}, as a shell reports it)",
                    ended.status()
                );
                ended.status()
            }
            Err(error) => {
                log::error!("init: cannot run {path}: {error}");
                break 127;
            }
        };
        if !options.init_restart {
            break status;
        }
        log::info!("init: restarting {path} in 1 s (init.restart=yes)");
        sched::sleep_ns(1_000_000_000);
    };
    // The program's last answers may still be in the stack's buffers.
    if !crate::net::settle(2_000_000_000) {
        log::warn!("init: connections still sending after 2 s; powering off anyway");
    }
    crate::dev::shutdown();
    // QEMU's exit device carries the status (its low 7 bits survive
    // QEMU's `(value << 1) | 1`); elsewhere the machine powers off.
    crate::vmops::ops::shutdown(crate::backend::ShutdownReason::Exit(status as u8).encode());
    crate::vmops::ops::shutdown(crate::backend::ShutdownReason::PowerOff.encode());
    cpu::halt_forever()
}

fn log_memory_map(boot: &BootInfo<'_>) {
    for region in boot.memory.regions() {
        log::debug!(
            "  [{:#014x}, {:#014x}) {}",
            region.start,
            region.end,
            region.kind
        );
    }
}

/// Fails on purpose (`crash=`), so tests can check the failure reports.
fn crash(kind: CrashKind) -> ! {
    log::warn!("crash: failing on purpose ({kind:?}), as the command line asks");
    match kind {
        CrashKind::Panic => panic!("crash=panic on the command line"),
        CrashKind::StackOverflow => {
            let depth = recurse(core::hint::black_box(1));
            panic!("recursion returned ({depth}) instead of overflowing the stack");
        }
        CrashKind::PageFault => {
            // The top of the MMIO window is never mapped.
            let address = crate::arch::layout::MMIO_BASE + crate::arch::layout::MMIO_SIZE
                - crate::mm::PAGE_SIZE;
            // SAFETY: not safe by design: the write faults, and the fault
            // handler stops the kernel before anything else runs.
            unsafe { (address as *mut u64).write_volatile(0xdead) };
            panic!("write to unmapped {address:#x} did not fault");
        }
    }
}

/// Recurses with a 1 KiB frame until the stack runs into its guard page.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth as u8; 1024]);
    if core::hint::black_box(depth) == 0 {
        return 0;
    }
    recurse(depth + 1) + u64::from(frame[depth as usize % 1024])
}
