//! The boot matrix: every configuration the rig boots, as plain data.
//!
//! Nothing here spawns a process or reads a file; `qemu` turns a `Config`
//! into a command line, `prepare` makes its inputs exist, and `check` judges
//! its output against `Expect`. Adding a configuration means adding an entry
//! to `MATRIX`, nothing else.

use std::time::Duration;

use crate::check::Pattern;
use crate::vmi_rom::Corruption;

/// Which QEMU accelerator a configuration runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// QEMU's machine model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `pc`: i440FX and PIIX3, PCI configuration through ports only.
    Pc,
    /// `q35`: Q35 and ICH9, PCI Express with an ECAM window (ACPI MCFG).
    Q35,
}

impl Machine {
    pub fn qemu_name(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
        }
    }
}

/// How the kernel reaches the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// `-kernel ELF -append CMDLINE`: QEMU's own PVH loader.
    Pvh,
    /// `-cdrom ISO`: GRUB loads the kernel through multiboot2. The command
    /// line is baked into the ISO's grub.cfg, so the ISO is named per
    /// command line and rebuilt when it is older than the kernel.
    Iso { file_name: &'static str },
    /// Xen 4.17 (Debian's, under QEMU TCG) boots the kernel as its PVH
    /// dom0, through `images/xen/dom0-kernel.sh`, which ends QEMU with
    /// status 33 when dom0 powers off and 37 when it crashes.
    XenPvhDom0,
    /// The same, the kernel as a deprivileged PV dom0.
    XenPvDom0,
}

impl Boot {
    /// Whether the kernel is Xen's dom0 (booted by the fast Xen rig).
    pub fn is_xen_dom0(self) -> bool {
        matches!(self, Boot::XenPvhDom0 | Boot::XenPvDom0)
    }
}

/// Inputs the rig makes itself before booting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixture {
    /// `-initrd`: a file of exactly `size` bytes of `prepare::initrd_pattern`,
    /// so the kernel can report (and check) what it was handed.
    Initrd { size: usize },
    /// Typed on the serial console (`-serial stdio`) once the log shows
    /// `after`: a person at the shell.
    SerialInput {
        after: &'static str,
        input: &'static str,
    },
    /// The appliance serving the rig's test site (`prepare::test_site`,
    /// passed as the boot module) on a NIC of QEMU model `nic` behind
    /// user-mode networking (restricted, port 80 forwarded from a free
    /// port on 127.0.0.1). Once the log shows `after`, the rig fetches
    /// every file with curl and compares the bytes, then types a `ping`
    /// of the gateway and `poweroff` at the shell.
    Http {
        nic: &'static str,
        after: &'static str,
        /// Also the hostile batch and `churn` connections in a row
        /// (`http::hostile`, `http::churn`).
        hostile: bool,
        churn: usize,
    },
    /// The kernel tests with a NIC of model `nic` on restricted user-mode
    /// networking that forwards the guest's connections to 10.0.2.100:7
    /// to a `cat` on this machine: an echo server for the socket tests.
    NetTest { nic: &'static str },
    /// The network services (`services`): a NIC of model `nic` on a tap
    /// with dnsmasq, chronyd and a syslog listener behind it, the CMOS
    /// clock started in 2001 so only NTP can set it right. Once the log
    /// shows `after`, the rig types lookups, `date`, a ping by name and
    /// `poweroff`; then it checks the date and the syslog messages.
    Services {
        nic: &'static str,
        after: &'static str,
    },
    /// A VMI option ROM (`-option-rom`) in the BIOS's ROM area.
    VmiRom { rom: VmiRom },
    /// The test programs (`images/user`, built by `make` into
    /// build/user.cpio) as the boot module, for `init=`.
    Programs,
    /// The same, with a NIC of model `nic` on restricted user networking
    /// and a free port forwarded to the guest's 80, where
    /// `images/user/server.c` serves: once the log shows `after`, the rig
    /// fetches files with curl, runs echo clients, and asks it to quit
    /// (`programs::check_server`).
    ProgramServer {
        nic: &'static str,
        after: &'static str,
    },
}

/// Which VMI ROM a configuration loads (`Fixture::VmiRom`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmiRom {
    /// build/vmi.rom, as `make` builds it.
    Good,
    /// A copy with one thing wrong, written by the rig
    /// (`vmi_rom::corrupt`).
    Corrupt(Corruption),
}

/// What must hold on the host for a configuration to be meaningful. When it
/// does not, the configuration is reported as SKIP with the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// /dev/kvm opens read-write.
    Kvm,
    /// Root, and /dev/net/tun: the rig makes a tap device.
    Tap,
}

/// What a good boot looks like.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// QEMU's exit status; 33 is the kernel writing 0x10 to isa-debug-exit.
    pub status: i32,
    /// The kernel's test summary must be present and clean (see
    /// `check::parse_closing_line`).
    pub closing_line: bool,
    /// Each pattern must match at least one line of the serial log.
    pub lines: &'static [Pattern],
    /// No pattern may match any line of the serial log.
    pub forbidden: &'static [Pattern],
}

/// One entry of the boot matrix.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub name: &'static str,
    pub accel: Accel,
    pub machine: Machine,
    /// `-cpu` value; `None` leaves QEMU's default model.
    pub cpu: Option<&'static str>,
    pub boot: Boot,
    /// The kernel command line (for `Boot::Iso`, the one baked into the ISO).
    pub cmdline: &'static str,
    pub fixture: Option<Fixture>,
    pub requires: Option<Requirement>,
    pub timeout: Duration,
    pub expect: Expect,
}

/// Status QEMU exits with when the kernel writes 0x10 (all tests passed).
pub const STATUS_TESTS_PASSED: i32 = 33;

/// Status QEMU exits with when the kernel writes 0x12 (panic or fatal
/// exception in test mode).
pub const STATUS_PANIC: i32 = 37;

/// The banner every boot prints once memory is known,
/// e.g. `sanos 0.1.0: 127 MiB, boot 5321 us`.
const BANNER: Pattern = Pattern::Glob("sanos * MiB, boot * us*");

/// Lines no healthy boot prints.
const FORBIDDEN: &[Pattern] = &[
    Pattern::Contains("panic"),
    Pattern::Contains("PANIC"),
    Pattern::Contains("EXCEPTION"),
];

/// Under Xen PV every `xen-pv:` line is a refused hypercall (an entry
/// store Xen did not validate, a failed flush), and an event on an unbound
/// port means a handler went missing.
const FORBIDDEN_XEN: &[Pattern] = &[
    Pattern::Contains("panic"),
    Pattern::Contains("PANIC"),
    Pattern::Contains("EXCEPTION"),
    Pattern::Contains("xen-pv: "),
    Pattern::Contains("event on unbound port"),
];

/// GRUB's own failures (`error: no multiboot header found.`, `error: file
/// '/boot/sanos.elf' not found.`) come before the kernel runs and would
/// otherwise only show up as a timeout.
const FORBIDDEN_UNDER_GRUB: &[Pattern] = &[
    Pattern::Contains("panic"),
    Pattern::Contains("PANIC"),
    Pattern::Contains("EXCEPTION"),
    Pattern::Glob("error: *"),
];

/// The nested KVM of the project's machines cannot execute SSE
/// instructions (QEMU stops with "KVM internal error. Suberror: 1",
/// emulation failure, on a `movq xmm0, r14`), so the KVM configurations
/// skip the one kernel test that uses them, visibly (`N skipped`).
const KVM_TEST: &str = "test test.skip=fpu_state";

/// Under nested KVM on the project's machines plain `-cpu max` aborts QEMU
/// at vCPU reset ("failed to set MSR 0x10a", IA32_ARCH_CAPABILITIES); the
/// default model works but warns that the host lacks SSE3. `max` without
/// that one MSR boots cleanly and still exposes what the host has.
const KVM_CPU: &str = "max,-arch-capabilities";

/// A TCG PVH boot in test mode with a VMI ROM.
const fn vmi_config(
    name: &'static str,
    cmdline: &'static str,
    rom: VmiRom,
    lines: &'static [Pattern],
) -> Config {
    Config {
        name,
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline,
        fixture: Some(Fixture::VmiRom { rom }),
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines,
            forbidden: FORBIDDEN,
        },
    }
}

/// QEMU's exit status when the kernel writes `code` to isa-debug-exit:
/// how a program's exit status reaches the rig (its low 7 bits).
pub const fn exit_device_status(code: u8) -> i32 {
    ((code as i32) << 1 | 1) & 0xff
}

/// A TCG PVH boot that runs a test program as init.
const fn program_config(
    name: &'static str,
    cmdline: &'static str,
    status: i32,
    lines: &'static [Pattern],
) -> Config {
    Config {
        name,
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline,
        fixture: Some(Fixture::Programs),
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status,
            closing_line: false,
            lines,
            forbidden: FORBIDDEN,
        },
    }
}

/// A test program that serves on port 80 (`Fixture::ProgramServer`),
/// checked from the host, then asked to quit.
const fn server_config(
    name: &'static str,
    cmdline: &'static str,
    nic: &'static str,
    lines: &'static [Pattern],
) -> Config {
    Config {
        fixture: Some(Fixture::ProgramServer {
            nic,
            after: "server: listening on port 80",
        }),
        timeout: Duration::from_secs(90),
        ..program_config(name, cmdline, exit_device_status(0), lines)
    }
}

/// A test program as init of the kernel as Xen's PV dom0 (the fast Xen
/// rig, the programs' archive as dom0's module).
const fn xen_program_config(
    name: &'static str,
    cmdline: &'static str,
    status: i32,
    lines: &'static [Pattern],
) -> Config {
    Config {
        cpu: None,
        boot: Boot::XenPvDom0,
        timeout: Duration::from_secs(240),
        expect: Expect {
            status,
            closing_line: false,
            lines,
            forbidden: FORBIDDEN_XEN,
        },
        ..program_config(name, cmdline, status, lines)
    }
}

/// The boot matrix, in the order `rig test` runs it.
pub const MATRIX: &[Config] = &[
    Config {
        name: "qemu-tcg-pvh",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[
                BANNER,
                Pattern::Contains("vmops: platform=qemu-tcg backend=native mode=eager"),
                Pattern::Contains("irq_disable"),
                // The `pc` machine's PCI: ports, the i440FX host bridge, the
                // PIIX3 ISA bridge (multi-function), every device listed.
                Pattern::Contains("pci: configuration through ports 0xcf8/0xcfc"),
                Pattern::Glob("*pci 00:00.0 8086:1237 class 0600 *"),
                Pattern::Glob("*pci 00:01.0 8086:7000 class 0601 *"),
                Pattern::Glob("*dev: pci 00:01.0: no driver*"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-tcg-q35",
        accel: Accel::Tcg,
        machine: Machine::Q35,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[
                BANNER,
                // ECAM from the MCFG; the Q35 host bridge and ICH9's LPC
                // bridge; the tests compare ECAM with the ports.
                Pattern::Glob("*pci: ECAM at 0xb0000000, buses 0-*"),
                Pattern::Glob("*pci 00:00.0 8086:29c0 class 0600 *"),
                Pattern::Glob("*pci 00:1f.0 8086:2918 class 0601 *"),
                Pattern::Glob("*ecam_and_ports_agree ... ok*"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-kvm-pvh",
        accel: Accel::Kvm,
        machine: Machine::Pc,
        cpu: Some(KVM_CPU),
        boot: Boot::Pvh,
        cmdline: KVM_TEST,
        fixture: None,
        requires: Some(Requirement::Kvm),
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[
                BANNER,
                Pattern::Contains("vmops: platform=kvm backend=kvm mode=eager"),
                Pattern::Contains("kvm: kvmclock"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "grub-iso",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Iso {
            file_name: "sanos-test.iso",
        },
        cmdline: "test",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(90),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[BANNER],
            forbidden: FORBIDDEN_UNDER_GRUB,
        },
    },
    Config {
        name: "qemu-tcg-badargs",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test bogus=1 loglevel=loud",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            // The malformed value must be named, on the same line as the
            // option, whatever order the kernel words it in.
            lines: &[
                BANNER,
                Pattern::Contains("unknown option 'bogus'"),
                Pattern::AllOf(&["loglevel", "loud"]),
            ],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-tcg-initrd",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test",
        fixture: Some(Fixture::Initrd { size: 12345 }),
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[BANNER, Pattern::Contains("initrd: 12345 bytes")],
            forbidden: FORBIDDEN,
        },
    },
    // The same kernel tests with the other two vmops modes, under TCG and
    // KVM.
    Config {
        name: "qemu-tcg-pvh-lazy",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test vmops=lazy",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[BANNER, Pattern::Contains("backend=native mode=lazy")],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-tcg-pvh-off",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test vmops=off",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[BANNER, Pattern::Contains("backend=native mode=off")],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-kvm-pvh-lazy",
        accel: Accel::Kvm,
        machine: Machine::Pc,
        cpu: Some(KVM_CPU),
        boot: Boot::Pvh,
        cmdline: "test test.skip=fpu_state vmops=lazy",
        fixture: None,
        requires: Some(Requirement::Kvm),
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[BANNER, Pattern::Contains("backend=kvm mode=lazy")],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-kvm-pvh-off",
        accel: Accel::Kvm,
        machine: Machine::Pc,
        cpu: Some(KVM_CPU),
        boot: Boot::Pvh,
        cmdline: "test test.skip=fpu_state vmops=off",
        fixture: None,
        requires: Some(Requirement::Kvm),
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[BANNER, Pattern::Contains("backend=kvm mode=off")],
            forbidden: FORBIDDEN,
        },
    },
    // A backend the platform cannot support is refused and the detected
    // one is used.
    Config {
        name: "qemu-tcg-backend-refused",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test vmops.backend=kvm",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[
                BANNER,
                Pattern::Contains(
                    "vmops: backend kvm refused: the platform is qemu-tcg, not KVM; using native",
                ),
                Pattern::Contains("backend=native mode=eager"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    // VMI: the project's VMI ROM (images/vmi-rom) as an option ROM. The
    // kernel binds to it in each vmops mode, and the kernel tests check
    // that the interrupt ops went through the ROM (its counters); each
    // corrupted copy is refused with its reason and the kernel runs on the
    // native backend. The plain qemu-tcg configurations above are the same
    // kernel without the ROM: platform qemu-tcg, backend native.
    vmi_config(
        "qemu-tcg-vmi",
        "test",
        VmiRom::Good,
        &[
            BANNER,
            Pattern::Glob("*vmi: ROM at 0x*, API 13.3, * bytes, copied to 0x*"),
            Pattern::Contains("vmops: platform=vmi backend=vmi mode=eager"),
            Pattern::Glob("*irq_disable * -> call, irq_enable * -> call, save_flags * -> call*"),
            Pattern::Glob("*read_cr3 * -> inline, write_cr3 * -> call*"),
            Pattern::Contains("time: TSC"),
            Pattern::Glob("*interrupt_ops_go_through_the_rom ... ok*"),
            Pattern::Glob("*corrupted_copies_are_refused_with_the_reason ... ok*"),
        ],
    ),
    vmi_config(
        "qemu-tcg-vmi-lazy",
        "test vmops=lazy",
        VmiRom::Good,
        &[
            BANNER,
            Pattern::Contains("vmops: platform=vmi backend=vmi mode=lazy"),
            Pattern::Glob("*interrupt_ops_go_through_the_rom ... ok*"),
        ],
    ),
    vmi_config(
        "qemu-tcg-vmi-off",
        "test vmops=off",
        VmiRom::Good,
        &[
            BANNER,
            Pattern::Contains("vmops: platform=vmi backend=vmi mode=off"),
            Pattern::Glob("*interrupt_ops_go_through_the_rom ... ok*"),
        ],
    ),
    vmi_config(
        "qemu-tcg-vmi-old-major",
        "test",
        VmiRom::Corrupt(Corruption::OldMajor),
        &[
            BANNER,
            Pattern::Glob(
                "*vmi: ROM at 0x* refused: API version 12.3, this kernel speaks 13.x",
            ),
            Pattern::Contains("vmops: platform=qemu-tcg backend=native mode=eager"),
        ],
    ),
    vmi_config(
        "qemu-tcg-vmi-unknown-relocation",
        "test",
        VmiRom::Corrupt(Corruption::UnknownRelocation),
        &[
            BANNER,
            Pattern::Glob(
                "*vmi: ROM at 0x* refused: relocation type 7 for EnableInterrupts is not one this kernel knows",
            ),
            Pattern::Contains("vmops: platform=qemu-tcg backend=native mode=eager"),
        ],
    ),
    vmi_config(
        "qemu-tcg-vmi-target-outside",
        "test",
        VmiRom::Corrupt(Corruption::TargetOutside),
        &[
            BANNER,
            Pattern::Glob(
                "*vmi: ROM at 0x* refused: DisableInterrupts target 0x* lies outside the ROM's code",
            ),
            Pattern::Contains("vmops: platform=qemu-tcg backend=native mode=eager"),
        ],
    ),
    vmi_config(
        "qemu-tcg-vmi-alarm-not-callable",
        "test",
        VmiRom::Corrupt(Corruption::AlarmNotCallable),
        &[
            BANNER,
            Pattern::Glob(
                "*vmi: ROM at 0x* refused: SetAlarm is bound with relocation type 0, but the kernel must call it (CALL_REL)",
            ),
            Pattern::Contains("vmops: platform=qemu-tcg backend=native mode=eager"),
        ],
    ),
    // User programs (images/user) as init: musl, glibc and a static PIE
    // run their checks and exit with the status asked; a null write is
    // reported and ends the program; broken executables are refused.
    program_config(
        "qemu-tcg-user-musl",
        "init=/bin/hello -- 7 two",
        exit_device_status(7),
        &[
            Pattern::Glob("*user: /bin/hello: static executable, entry 0x*, SMEP on, SMAP on"),
            Pattern::Contains("argv[2] = two"),
            Pattern::Contains("3 environment strings, HOME=/"),
            Pattern::Contains("hello: all checks passed"),
            Pattern::Contains("init: /bin/hello exited with status 7"),
        ],
    ),
    program_config(
        "qemu-tcg-user-glibc",
        "init=/bin/hello-glibc -- 3",
        exit_device_status(3),
        &[
            Pattern::Contains("hello: all checks passed"),
            Pattern::Contains("init: /bin/hello-glibc exited with status 3"),
        ],
    ),
    program_config(
        "qemu-tcg-user-pie",
        "init=/bin/hello-pie",
        exit_device_status(0),
        &[
            Pattern::Contains("static PIE at base 0x555555554000"),
            Pattern::Contains("hello: all checks passed"),
            Pattern::Contains("init: /bin/hello-pie exited with status 0"),
        ],
    ),
    program_config(
        "qemu-tcg-user-threads",
        "init=/bin/threads",
        exit_device_status(0),
        &[
            Pattern::Contains("ok: counter 16000 (expected 16000)"),
            Pattern::Contains("ok: turns taken in order: 8"),
            Pattern::Contains("threads: all checks passed"),
            Pattern::Contains("init: /bin/threads exited with status 0"),
        ],
    ),
    program_config(
        "qemu-tcg-user-threads-glibc",
        "init=/bin/threads-glibc",
        exit_device_status(0),
        &[
            Pattern::Contains("threads: all checks passed"),
            Pattern::Contains("init: /bin/threads-glibc exited with status 0"),
        ],
    ),
    program_config(
        "qemu-tcg-user-files",
        "init=/bin/files",
        exit_device_status(0),
        &[
            Pattern::Contains("ok: read /etc/motd from the boot module"),
            Pattern::Contains("ok: the root is read-only: EROFS"),
            Pattern::Contains("ok: rename across file systems: EXDEV"),
            Pattern::Contains("ok: /proc/self/exe is this program"),
            Pattern::Contains("ok: a pipe without a writer reads end of file"),
            Pattern::Contains("files: all checks passed"),
            Pattern::Contains("init: /bin/files exited with status 0"),
        ],
    ),
    program_config(
        "qemu-tcg-user-files-glibc",
        "init=/bin/files-glibc",
        exit_device_status(0),
        &[
            Pattern::Contains("files: all checks passed"),
            Pattern::Contains("init: /bin/files-glibc exited with status 0"),
        ],
    ),
    program_config(
        "qemu-tcg-user-memory",
        "init=/bin/memory",
        exit_device_status(0),
        &[
            Pattern::Contains("ok: mremap grows and keeps the contents"),
            Pattern::Contains("ok: a private write stays private"),
            Pattern::Contains("ok: a kernel address: EFAULT"),
            Pattern::Contains("memory: all checks passed"),
            Pattern::Contains("init: /bin/memory exited with status 0"),
        ],
    ),
    program_config(
        "qemu-tcg-user-memory-glibc",
        "init=/bin/memory-glibc",
        exit_device_status(0),
        &[
            Pattern::Contains("memory: all checks passed"),
            Pattern::Contains("init: /bin/memory-glibc exited with status 0"),
        ],
    ),
    server_config(
        "qemu-tcg-user-server",
        "init=/bin/server ip=10.0.2.15/24,10.0.2.2",
        "virtio-net-pci",
        &[
            Pattern::Contains("server: listening on port 80"),
            Pattern::Glob("server: * connections served; quitting"),
            Pattern::Contains("init: /bin/server exited with status 0"),
        ],
    ),
    server_config(
        "qemu-tcg-user-server-glibc",
        "init=/bin/server-glibc ip=10.0.2.15/24,10.0.2.2",
        "e1000",
        &[
            Pattern::Glob("server: * connections served; quitting"),
            Pattern::Contains("init: /bin/server-glibc exited with status 0"),
        ],
    ),
    program_config(
        "qemu-tcg-user-crash",
        "init=/bin/crash",
        exit_device_status(128 + 11),
        &[
            Pattern::Contains("crash: writing through a null pointer"),
            Pattern::Glob(
                "*user: /bin/crash: SIGSEGV (page fault (#PF)) at address 0x0, rip 0x*, error code 0x6; no area there",
            ),
            Pattern::Contains("init: /bin/crash was killed (status 139"),
        ],
    ),
    program_config(
        "qemu-tcg-user-crash-kernel",
        "init=/bin/crash -- kernel",
        exit_device_status(128 + 11),
        &[
            Pattern::Contains("crash: reading kernel memory"),
            Pattern::Glob(
                "*user: /bin/crash: SIGSEGV (page fault (#PF)) at address 0xffffffff80200000, rip 0x*",
            ),
        ],
    ),
    program_config(
        "qemu-tcg-user-bad-truncated",
        "init=/bin/bad-truncated",
        exit_device_status(127),
        &[Pattern::Contains(
            "init: cannot run /bin/bad-truncated: truncated program headers",
        )],
    ),
    program_config(
        "qemu-tcg-user-bad-machine",
        "init=/bin/bad-machine",
        exit_device_status(127),
        &[Pattern::Contains(
            "init: cannot run /bin/bad-machine: built for i386 (e_machine 3), not x86-64",
        )],
    ),
    program_config(
        "qemu-tcg-user-bad-overlap",
        "init=/bin/bad-overlap",
        exit_device_status(127),
        &[Pattern::Glob(
            "*init: cannot run /bin/bad-overlap: *overlap*",
        )],
    ),
    program_config(
        "qemu-tcg-user-bad-dynamic",
        "init=/bin/bad-dynamic",
        exit_device_status(127),
        &[Pattern::Contains(
            "init: cannot run /bin/bad-dynamic: dynamically linked (interpreter /lib64/ld-linux-x86-64.so.2): sanos runs static executables; dynamic linking is not supported yet",
        )],
    ),
    // The same programs with the kernel as Xen's PV dom0: kernel and
    // program both in ring 3, kept apart by Xen's user page table, system
    // calls through Xen's syscall callback. Xen carries no exit status: 0
    // powers off (33 from the fast rig), anything else is a crash (37).
    xen_program_config(
        "xen-pv-dom0-user-musl",
        "init=/bin/hello",
        STATUS_TESTS_PASSED,
        &[
            Pattern::Contains("Xen PV: separate user page table"),
            Pattern::Contains("hello: all checks passed"),
            Pattern::Contains("init: /bin/hello exited with status 0"),
        ],
    ),
    xen_program_config(
        "xen-pv-dom0-user-threads",
        "init=/bin/threads-glibc",
        STATUS_TESTS_PASSED,
        &[
            Pattern::Contains("threads: all checks passed"),
            Pattern::Contains("init: /bin/threads-glibc exited with status 0"),
        ],
    ),
    xen_program_config(
        "xen-pv-dom0-user-files",
        "init=/bin/files",
        STATUS_TESTS_PASSED,
        &[
            Pattern::Contains("files: all checks passed"),
            Pattern::Contains("init: /bin/files exited with status 0"),
        ],
    ),
    xen_program_config(
        "xen-pv-dom0-user-memory",
        "init=/bin/memory-pie",
        STATUS_TESTS_PASSED,
        &[
            Pattern::Contains("memory: all checks passed"),
            Pattern::Contains("init: /bin/memory-pie exited with status 0"),
        ],
    ),
    xen_program_config(
        "xen-pv-dom0-user-crash",
        "init=/bin/crash",
        STATUS_PANIC,
        &[
            Pattern::Glob("*user: /bin/crash: SIGSEGV (page fault (#PF)) at address 0x0, rip 0x*"),
            Pattern::Contains("init: /bin/crash was killed (status 139"),
        ],
    ),
    xen_program_config(
        "xen-pv-dom0-user-crash-kernel",
        "init=/bin/crash -- kernel",
        STATUS_PANIC,
        &[Pattern::Glob(
            "*user: /bin/crash: SIGSEGV (page fault (#PF)) at address 0xffffffff80200000, rip 0x*",
        )],
    ),
    // Xen: the kernel as Xen's PVH dom0 (console through console_io,
    // memory map by hypercall, shutdown by SCHEDOP_shutdown).
    Config {
        name: "xen-pvh-dom0",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: None,
        boot: Boot::XenPvhDom0,
        cmdline: "test",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(240),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[
                BANNER,
                Pattern::Contains("vmops: platform=xen backend=xen-pvh mode=eager"),
                Pattern::Contains("xen: memory map from XENMEM_memory_map"),
                Pattern::Contains("xen: clock from pvclock, timer on VIRQ_TIMER"),
                Pattern::Contains("Hardware Dom0 halted"),
            ],
            forbidden: FORBIDDEN_XEN,
        },
    },
    // The kernel as a deprivileged PV dom0: Xen's page tables extended by
    // mmu_update, the trap table, events for interrupts, pvclock time.
    Config {
        name: "xen-pv-dom0",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: None,
        boot: Boot::XenPvDom0,
        cmdline: "test",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(240),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[
                BANNER,
                Pattern::Contains("vmops: platform=xen backend=xen-pv mode=eager"),
                Pattern::Glob("*vmops: * (irq_disable * -> inline, *"),
                Pattern::Contains("mm: Xen PV page tables at"),
                Pattern::Contains("xen: clock from pvclock, timer on VIRQ_TIMER"),
                Pattern::Contains("Hardware Dom0 halted"),
            ],
            forbidden: FORBIDDEN_XEN,
        },
    },
    Config {
        name: "xen-pv-dom0-lazy",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: None,
        boot: Boot::XenPvDom0,
        cmdline: "test vmops=lazy",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(240),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[
                BANNER,
                Pattern::Contains("vmops: platform=xen backend=xen-pv mode=lazy"),
                Pattern::Contains("mm: Xen PV page tables at"),
                Pattern::Contains("xen: clock from pvclock, timer on VIRQ_TIMER"),
                Pattern::Contains("Hardware Dom0 halted"),
            ],
            forbidden: FORBIDDEN_XEN,
        },
    },
    Config {
        name: "xen-pv-dom0-off",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: None,
        boot: Boot::XenPvDom0,
        cmdline: "test vmops=off",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(240),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[
                BANNER,
                Pattern::Contains("vmops: platform=xen backend=xen-pv mode=off"),
                Pattern::Contains("mm: Xen PV page tables at"),
                Pattern::Contains("xen: clock from pvclock, timer on VIRQ_TIMER"),
                Pattern::Contains("Hardware Dom0 halted"),
            ],
            forbidden: FORBIDDEN_XEN,
        },
    },
    // A stack overflow under PV: no IST, so Xen cannot push the fault
    // frame on the overflowed stack; Xen crashes the domain and reports the
    // fault and the registers itself.
    Config {
        name: "xen-pv-dom0-crash-stack",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: None,
        boot: Boot::XenPvDom0,
        cmdline: "test crash=stack-overflow",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(240),
        expect: Expect {
            status: STATUS_PANIC,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Contains("crash: failing on purpose (StackOverflow)"),
                Pattern::Contains("domain_crash_sync called from entry.S"),
                Pattern::Contains("Domain 0 (vcpu#0) crashed"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    // The shell, as a person uses it: typed on the serial console (the
    // UART's receive interrupt through the I/O APIC), ending with an ACPI
    // power-off, which ends QEMU with status 0.
    Config {
        name: "qemu-tcg-shell",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "",
        fixture: Some(Fixture::SerialInput {
            after: "sanos> ",
            input: "help\rthreads\rbogus\ruptime\rpoweroff\r",
        }),
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: 0,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Contains("console: UART input on GSI 4"),
                Pattern::Contains("acpi: soft-off through PM1a control port"),
                Pattern::Contains("  poweroff  power the machine off"),
                Pattern::Glob("* shell * running *"),
                Pattern::Contains("unknown command 'bogus'"),
                Pattern::Glob("  up *.* s"),
                Pattern::Contains("  PowerOff"),
            ],
            forbidden: &[
                Pattern::Contains("panic"),
                Pattern::Contains("EXCEPTION"),
                Pattern::Contains("the platform did not"),
            ],
        },
    },
    // The shell as Xen's PV dom0: typed at Xen's serial console, which
    // passes input to dom0 (VIRQ_CONSOLE, console_io reads); poweroff is
    // SCHEDOP_shutdown, which halts Xen (status 33 from the fast rig).
    Config {
        name: "xen-pv-dom0-shell",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: None,
        boot: Boot::XenPvDom0,
        cmdline: "",
        // (dom0-kernel.sh passes the console on line by line, so the
        // prompt, which ends no line, shows up late: wait for the line
        // before it.)
        fixture: Some(Fixture::SerialInput {
            after: "sanos shell: 'help' lists the commands",
            input: "help\rthreads\rbogus\ruptime\rpoweroff\r",
        }),
        requires: None,
        timeout: Duration::from_secs(240),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Contains("  poweroff  power the machine off"),
                Pattern::Glob("* shell * running *"),
                Pattern::Contains("unknown command 'bogus'"),
                Pattern::Glob("  up *.* s"),
                Pattern::Contains("  PowerOff"),
                Pattern::Contains("Hardware Dom0 halted"),
            ],
            forbidden: &[
                Pattern::Contains("panic"),
                Pattern::Contains("EXCEPTION"),
                Pattern::Contains("the platform did not"),
                Pattern::Contains("xen-pv: "),
                Pattern::Contains("no console input"),
            ],
        },
    },
    // The failure paths: a deliberate crash must be reported (where, why,
    // backtrace) and must end the run with the panic status, not a hang or
    // a triple fault.
    // The appliance on each NIC model: DHCP from QEMU's user network,
    // the site fetched by curl through port forwarding, byte for byte.
    Config {
        name: "qemu-tcg-e1000-http",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "",
        fixture: Some(Fixture::Http {
            nic: "e1000",
            after: "http: serving",
            hostile: false,
            churn: 0,
        }),
        requires: None,
        timeout: Duration::from_secs(90),
        expect: Expect {
            status: 0,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Contains("dev: pci 00:03.0: e1000"),
                Pattern::Contains("net: DHCP lease 10.0.2.15/24"),
                Pattern::Contains("ping: reply from 10.0.2.2 seq 0"),
                Pattern::Contains("http: serving 4 files on port 80"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-tcg-rtl8139-http",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "",
        fixture: Some(Fixture::Http {
            nic: "rtl8139",
            after: "http: serving",
            hostile: false,
            churn: 0,
        }),
        requires: None,
        timeout: Duration::from_secs(90),
        expect: Expect {
            status: 0,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Contains("dev: pci 00:03.0: rtl8139"),
                Pattern::Contains("net: DHCP lease 10.0.2.15/24"),
                Pattern::Contains("http: serving 4 files on port 80"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-tcg-virtio-http",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "ip=10.0.2.15/24,10.0.2.2",
        fixture: Some(Fixture::Http {
            nic: "virtio-net-pci",
            after: "http: serving",
            hostile: true,
            churn: 5000,
        }),
        requires: None,
        timeout: Duration::from_secs(240),
        expect: Expect {
            status: 0,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Contains("dev: pci 00:03.0: virtio-net"),
                Pattern::Contains("static 10.0.2.15/24"),
                Pattern::Contains("ping: reply from 10.0.2.2 seq 0"),
                Pattern::Contains("http: serving 4 files on port 80"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-tcg-q35-virtio-http",
        accel: Accel::Tcg,
        machine: Machine::Q35,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "",
        fixture: Some(Fixture::Http {
            nic: "virtio-net-pci",
            after: "http: serving",
            hostile: false,
            churn: 0,
        }),
        requires: None,
        timeout: Duration::from_secs(90),
        expect: Expect {
            status: 0,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Glob("*dev: pci 00:0?.0: virtio-net*"),
                Pattern::Contains("net: DHCP lease 10.0.2.15/24"),
                Pattern::Contains("http: serving 4 files on port 80"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    // The kernel tests with a NIC: the socket layer's tests talk to an
    // echo server (QEMU's guestfwd to `cat`).
    Config {
        name: "qemu-tcg-net-test",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test ip=10.0.2.15/24,10.0.2.2",
        fixture: Some(Fixture::NetTest {
            nic: "virtio-net-pci",
        }),
        requires: None,
        timeout: Duration::from_secs(90),
        expect: Expect {
            status: STATUS_TESTS_PASSED,
            closing_line: true,
            lines: &[
                BANNER,
                Pattern::Contains("dev: pci 00:03.0: virtio-net"),
                Pattern::Glob("test sanos::net::socket::tests::tcp_echo_with_poll_and_non_blocking_calls ... ok*"),
                Pattern::Glob("test sanos::net::socket::tests::udp_non_blocking_receive_and_poll_timeout ... ok*"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    // DHCP and DNS from dnsmasq, the clock from chronyd, the log to a
    // syslog listener: real servers on a tap the rig makes.
    Config {
        name: "qemu-tcg-e1000-services",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: crate::services::CMDLINE,
        fixture: Some(Fixture::Services {
            nic: "e1000",
            after: "syslog: sending the log to",
        }),
        requires: Some(Requirement::Tap),
        timeout: Duration::from_secs(90),
        expect: Expect {
            status: 0,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Glob(
                    "*net: DHCP lease 169.254.99.5?/24 via 169.254.99.1, dns 169.254.99.1",
                ),
                Pattern::Glob("*time: CMOS clock 2001-01-01 00:00:*"),
                Pattern::Glob(
                    "*ntp: clock set from time.sanos.test (169.254.99.1, stratum 10): *, stepped *",
                ),
                Pattern::Contains("syslog: sending the log to 169.254.99.1:5514"),
                Pattern::Contains("host: web.sanos.test is 169.254.99.7"),
                Pattern::Contains("host: nope.sanos.test: not found"),
                Pattern::Contains("ping: reply from 169.254.99.1 seq 0"),
                Pattern::Contains("  PowerOff"),
            ],
            forbidden: FORBIDDEN,
        },
    },
    Config {
        name: "qemu-tcg-crash-panic",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test crash=panic",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_PANIC,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Glob("panic at kernel/src/*.rs:*: crash=panic*"),
                Pattern::Contains("backtrace:"),
                Pattern::Glob("  #1 *0xffffffff8*"),
            ],
            forbidden: &[Pattern::Glob("* passed, * failed*")],
        },
    },
    Config {
        name: "qemu-tcg-crash-stack",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test crash=stack-overflow",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_PANIC,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Contains("EXCEPTION: kernel stack overflow: access to guard page"),
                Pattern::Contains("rip="),
                Pattern::Contains("backtrace:"),
            ],
            forbidden: &[Pattern::Glob("* passed, * failed*")],
        },
    },
    Config {
        name: "qemu-tcg-crash-pagefault",
        accel: Accel::Tcg,
        machine: Machine::Pc,
        cpu: Some("max"),
        boot: Boot::Pvh,
        cmdline: "test crash=page-fault",
        fixture: None,
        requires: None,
        timeout: Duration::from_secs(60),
        expect: Expect {
            status: STATUS_PANIC,
            closing_line: false,
            lines: &[
                BANNER,
                Pattern::Contains("EXCEPTION: page fault (#PF) (vector 14) error=0x2"),
                Pattern::Glob("  cr2=0x* write not-present page*"),
                Pattern::Contains("backtrace:"),
            ],
            forbidden: &[Pattern::Contains("kernel stack overflow")],
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_file_safe() {
        let mut seen = HashSet::new();
        for config in MATRIX {
            assert!(seen.insert(config.name), "duplicate {}", config.name);
            // Names become log file names and `--only` targets.
            assert!(config
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
    }

    #[test]
    fn matrix_order_is_the_documented_one() {
        let names: Vec<_> = MATRIX.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "qemu-tcg-pvh",
                "qemu-tcg-q35",
                "qemu-kvm-pvh",
                "grub-iso",
                "qemu-tcg-badargs",
                "qemu-tcg-initrd",
                "qemu-tcg-pvh-lazy",
                "qemu-tcg-pvh-off",
                "qemu-kvm-pvh-lazy",
                "qemu-kvm-pvh-off",
                "qemu-tcg-backend-refused",
                "qemu-tcg-vmi",
                "qemu-tcg-vmi-lazy",
                "qemu-tcg-vmi-off",
                "qemu-tcg-vmi-old-major",
                "qemu-tcg-vmi-unknown-relocation",
                "qemu-tcg-vmi-target-outside",
                "qemu-tcg-vmi-alarm-not-callable",
                "qemu-tcg-user-musl",
                "qemu-tcg-user-glibc",
                "qemu-tcg-user-pie",
                "qemu-tcg-user-threads",
                "qemu-tcg-user-threads-glibc",
                "qemu-tcg-user-files",
                "qemu-tcg-user-files-glibc",
                "qemu-tcg-user-memory",
                "qemu-tcg-user-memory-glibc",
                "qemu-tcg-user-server",
                "qemu-tcg-user-server-glibc",
                "qemu-tcg-user-crash",
                "qemu-tcg-user-crash-kernel",
                "qemu-tcg-user-bad-truncated",
                "qemu-tcg-user-bad-machine",
                "qemu-tcg-user-bad-overlap",
                "qemu-tcg-user-bad-dynamic",
                "xen-pv-dom0-user-musl",
                "xen-pv-dom0-user-threads",
                "xen-pv-dom0-user-files",
                "xen-pv-dom0-user-memory",
                "xen-pv-dom0-user-crash",
                "xen-pv-dom0-user-crash-kernel",
                "xen-pvh-dom0",
                "xen-pv-dom0",
                "xen-pv-dom0-lazy",
                "xen-pv-dom0-off",
                "xen-pv-dom0-crash-stack",
                "qemu-tcg-shell",
                "xen-pv-dom0-shell",
                "qemu-tcg-e1000-http",
                "qemu-tcg-rtl8139-http",
                "qemu-tcg-virtio-http",
                "qemu-tcg-q35-virtio-http",
                "qemu-tcg-net-test",
                "qemu-tcg-e1000-services",
                "qemu-tcg-crash-panic",
                "qemu-tcg-crash-stack",
                "qemu-tcg-crash-pagefault"
            ]
        );
    }

    #[test]
    fn every_kvm_config_requires_kvm() {
        for config in MATRIX {
            assert_eq!(
                config.accel == Accel::Kvm,
                config.requires == Some(Requirement::Kvm),
                "{}",
                config.name
            );
        }
    }

    #[test]
    fn every_config_checks_the_test_summary_or_the_failure_and_banner() {
        for config in MATRIX {
            if matches!(
                config.fixture,
                Some(Fixture::SerialInput { .. } | Fixture::Http { .. } | Fixture::Services { .. })
            ) {
                // Interactive: it ends by powering off (QEMU's status 0, or
                // the fast Xen rig's 33 for a halted dom0), which is why it
                // must also show its answers.
                let off = if config.boot.is_xen_dom0() {
                    STATUS_TESTS_PASSED
                } else {
                    0
                };
                assert_eq!(config.expect.status, off, "{}", config.name);
                assert!(config.expect.lines.len() >= 3);
                continue;
            }
            if matches!(
                config.fixture,
                Some(Fixture::Programs | Fixture::ProgramServer { .. })
            ) {
                // A program as init: its status through the exit device
                // (always odd), its own output instead of a test summary.
                assert!(config.cmdline.starts_with("init=/"), "{}", config.name);
                assert_eq!(config.expect.status & 1, 1, "{}", config.name);
                assert!(!config.expect.closing_line, "{}", config.name);
                assert!(!config.expect.lines.is_empty(), "{}", config.name);
                continue;
            }
            let crashes = config.cmdline.contains("crash=");
            assert_eq!(config.expect.closing_line, !crashes, "{}", config.name);
            assert_eq!(
                config.expect.status,
                if crashes {
                    STATUS_PANIC
                } else {
                    STATUS_TESTS_PASSED
                },
                "{}",
                config.name
            );
            assert!(config.expect.lines.contains(&BANNER), "{}", config.name);
            assert!(config.cmdline.split(' ').any(|w| w == "test"));
        }
    }
}
