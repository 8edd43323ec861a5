//! QEMU command lines: where the rig's files live and which arguments boot a
//! matrix configuration or an interactive session. Pure: building the
//! arguments never touches the file system, so they are tested on the host.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::matrix::{Accel, Boot, Config, Fixture, Machine, VmiRom};

/// The QEMU binary; `QEMU` in the environment overrides it (e.g. a build
/// with debug logging) without touching the matrix.
pub fn qemu_program() -> OsString {
    std::env::var_os("QEMU").unwrap_or_else(|| OsString::from("qemu-system-x86_64"))
}

/// Where the kernel is read from and where the rig writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub kernel: PathBuf,
    pub build_dir: PathBuf,
}

impl Paths {
    /// Logs, fixtures and scratch images: one directory the rig owns.
    pub fn rig_dir(&self) -> PathBuf {
        self.build_dir.join("rig")
    }

    pub fn serial_log(&self, name: &str) -> PathBuf {
        self.rig_dir().join(format!("{name}.log"))
    }

    /// QEMU's own diagnostics, kept apart so they never pollute the serial
    /// log that the checks read.
    pub fn qemu_stderr(&self, name: &str) -> PathBuf {
        self.rig_dir().join(format!("{name}.stderr"))
    }

    /// The test programs' archive `make` builds (images/user/build.sh).
    pub fn user_image(&self) -> PathBuf {
        self.build_dir.join("user.cpio")
    }

    /// The sealed VMI ROM `make` builds.
    pub fn good_vmi_rom(&self) -> PathBuf {
        self.build_dir.join("vmi.rom")
    }

    /// The ROM a VMI configuration boots with: the good one, or a
    /// corrupted copy the rig writes.
    pub fn vmi_rom(&self, rom: VmiRom) -> PathBuf {
        match rom {
            VmiRom::Good => self.good_vmi_rom(),
            VmiRom::Corrupt(corruption) => self
                .rig_dir()
                .join(format!("vmi-{}.rom", corruption.name())),
        }
    }

    pub fn initrd(&self) -> PathBuf {
        self.rig_dir().join("initrd.bin")
    }

    /// The test site as a cpio archive (HTTP configurations).
    pub fn site_image(&self) -> PathBuf {
        self.rig_dir().join("site.cpio")
    }

    pub fn iso(&self, file_name: &str) -> PathBuf {
        self.build_dir.join(file_name)
    }

    /// The ISO `rig run --iso` builds with whatever command line it is given;
    /// kept apart from the test ISO so an interactive run never leaves the
    /// matrix a stale command line.
    pub fn run_iso(&self) -> PathBuf {
        self.rig_dir().join("run.iso")
    }
}

/// What the machine boots from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Media {
    Kernel {
        kernel: PathBuf,
        cmdline: String,
        initrd: Option<PathBuf>,
    },
    Cdrom(PathBuf),
}

/// Where the guest's first serial port goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serial {
    /// Written to a file; complete once QEMU has exited.
    File(PathBuf),
    /// Multiplexed with the QEMU monitor on the terminal (Ctrl-A prefix).
    Terminal,
    /// QEMU's stdin and stdout (the rig types and logs).
    Stdio,
}

/// The guest's NIC and the network behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nic {
    /// Restricted user-mode networking, host port `port` on 127.0.0.1
    /// forwarded to the guest's port 80.
    User { model: String, port: u16 },
    /// A tap device the rig made (`services`).
    Tap { model: String, ifname: String },
    /// Restricted user-mode networking whose 10.0.2.100:7 is a `cat` on
    /// this machine (an echo server).
    UserEcho { model: String },
}

/// Everything that varies between two QEMU invocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub accel: Accel,
    pub machine: Machine,
    pub nic: Option<Nic>,
    /// `-rtc base=`: the date the guest's CMOS clock starts from.
    pub rtc_base: Option<String>,
    /// `-option-rom`: a ROM for the BIOS to load (the VMI ROM).
    pub option_rom: Option<PathBuf>,
    pub cpu: Option<String>,
    pub media: Media,
    pub serial: Serial,
}

impl Launch {
    /// How a matrix configuration boots with these paths.
    pub fn for_config(config: &Config, paths: &Paths) -> Launch {
        let media = match config.boot {
            Boot::Pvh => Media::Kernel {
                kernel: paths.kernel.clone(),
                cmdline: config.cmdline.to_string(),
                initrd: match config.fixture {
                    Some(Fixture::Initrd { .. }) => Some(paths.initrd()),
                    Some(Fixture::Http { .. }) => Some(paths.site_image()),
                    Some(Fixture::Programs | Fixture::ProgramServer { .. }) => {
                        Some(paths.user_image())
                    }
                    _ => None,
                },
            },
            Boot::Iso { file_name } => Media::Cdrom(paths.iso(file_name)),
            // Launched through images/xen/dom0-kernel.sh instead (see
            // runner); this is only its kernel and command line.
            Boot::XenPvhDom0 | Boot::XenPvDom0 => Media::Kernel {
                kernel: paths.kernel.clone(),
                cmdline: config.cmdline.to_string(),
                initrd: None,
            },
        };
        Launch {
            accel: config.accel,
            machine: config.machine,
            nic: match config.fixture {
                Some(Fixture::NetTest { nic }) => Some(Nic::UserEcho {
                    model: nic.to_string(),
                }),
                _ => None,
            },
            rtc_base: None,
            option_rom: match config.fixture {
                Some(Fixture::VmiRom { rom }) => Some(paths.vmi_rom(rom)),
                _ => None,
            },
            cpu: config.cpu.map(str::to_string),
            media,
            serial: if matches!(
                config.fixture,
                Some(Fixture::SerialInput { .. } | Fixture::Http { .. } | Fixture::Services { .. })
            ) {
                Serial::Stdio
            } else {
                Serial::File(paths.serial_log(config.name))
            },
        }
    }

    /// The arguments after the program name.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |parts: &[&str]| args.extend(parts.iter().map(OsString::from));
        push(&["-machine", self.machine.qemu_name()]);
        push(&["-accel", self.accel.qemu_name()]);
        if let Some(cpu) = &self.cpu {
            push(&["-cpu", cpu]);
        }
        push(&[
            "-m",
            "128M",
            "-smp",
            "1",
            "-display",
            "none",
            // A triple fault then ends QEMU with status 0 instead of looping
            // through firmware until the timeout.
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]);
        match &self.nic {
            Some(Nic::User { model, port }) => args.extend([
                OsString::from("-nic"),
                OsString::from(format!(
                    "user,model={model},restrict=on,hostfwd=tcp:127.0.0.1:{port}-:80"
                )),
            ]),
            Some(Nic::UserEcho { model }) => args.extend([
                OsString::from("-nic"),
                OsString::from(format!(
                    "user,model={model},restrict=on,guestfwd=tcp:10.0.2.100:7-cmd:cat"
                )),
            ]),
            Some(Nic::Tap { model, ifname }) => args.extend([
                OsString::from("-nic"),
                OsString::from(format!(
                    "tap,model={model},ifname={ifname},script=no,downscript=no"
                )),
            ]),
            None => args.extend(["-nic", "none"].map(OsString::from)),
        }
        if let Some(rom) = &self.option_rom {
            args.extend([OsString::from("-option-rom"), rom.into()]);
        }
        if let Some(base) = &self.rtc_base {
            args.extend([
                OsString::from("-rtc"),
                OsString::from(format!("base={base}")),
            ]);
        }
        match &self.serial {
            Serial::File(log) => {
                let mut spec = OsString::from("file:");
                spec.push(log);
                args.extend([OsString::from("-serial"), spec]);
            }
            Serial::Terminal => args.extend(["-serial", "mon:stdio"].map(OsString::from)),
            Serial::Stdio => args.extend(["-serial", "stdio"].map(OsString::from)),
        }
        match &self.media {
            Media::Kernel {
                kernel,
                cmdline,
                initrd,
            } => {
                args.extend([OsString::from("-kernel"), kernel.into()]);
                if !cmdline.is_empty() {
                    args.extend([OsString::from("-append"), cmdline.into()]);
                }
                if let Some(initrd) = initrd {
                    args.extend([OsString::from("-initrd"), initrd.into()]);
                }
            }
            Media::Cdrom(iso) => args.extend([OsString::from("-cdrom"), iso.into()]),
        }
        args
    }
}

/// The command line as a person would paste it into a shell, for FAIL
/// output; quoting is only as careful as the matrix's own arguments need.
pub fn shell_line(program: &Path, args: &[OsString]) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.,:/=+@".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|s| quote(&s.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::MATRIX;

    fn paths() -> Paths {
        Paths {
            kernel: PathBuf::from("build/sanos.elf"),
            build_dir: PathBuf::from("build"),
        }
    }

    fn config(name: &str) -> &'static Config {
        MATRIX
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no config {name}"))
    }

    fn line(name: &str) -> String {
        let launch = Launch::for_config(config(name), &paths());
        shell_line(Path::new("qemu-system-x86_64"), &launch.args())
    }

    const COMMON: &str = "-m 128M -smp 1 -display none -no-reboot \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 -nic none";

    #[test]
    fn tcg_pvh_command_line() {
        assert_eq!(
            line("qemu-tcg-pvh"),
            format!(
                "qemu-system-x86_64 -machine pc -accel tcg -cpu max {COMMON} \
                 -serial file:build/rig/qemu-tcg-pvh.log -kernel build/sanos.elf -append test"
            )
        );
    }

    #[test]
    fn kvm_uses_its_own_cpu_model() {
        assert!(line("qemu-kvm-pvh").starts_with(
            "qemu-system-x86_64 -machine pc -accel kvm -cpu max,-arch-capabilities -m 128M"
        ));
    }

    #[test]
    fn iso_boots_from_cdrom_without_kernel_arguments() {
        let line = line("grub-iso");
        assert!(line.ends_with("-cdrom build/sanos-test.iso"), "{line}");
        assert!(!line.contains("-kernel") && !line.contains("-append"));
    }

    #[test]
    fn badargs_and_initrd_command_lines() {
        assert!(line("qemu-tcg-badargs").ends_with("-append 'test bogus=1 loglevel=loud'"));
        assert!(line("qemu-tcg-initrd").ends_with("-append test -initrd build/rig/initrd.bin"));
    }

    #[test]
    fn interactive_launch_uses_the_terminal() {
        let launch = Launch {
            machine: Machine::Pc,
            nic: None,
            rtc_base: None,
            option_rom: None,
            accel: Accel::Tcg,
            cpu: None,
            media: Media::Kernel {
                kernel: PathBuf::from("k.elf"),
                cmdline: String::new(),
                initrd: None,
            },
            serial: Serial::Terminal,
        };
        let line = shell_line(Path::new("qemu"), &launch.args());
        assert!(line.contains("-serial mon:stdio"), "{line}");
        assert!(
            line.ends_with("-kernel k.elf"),
            "an empty command line is left out"
        );
        assert!(!line.contains("-cpu"));
    }

    #[test]
    fn vmi_configurations_load_their_rom() {
        let good = line("qemu-tcg-vmi");
        assert!(good.contains("-option-rom build/vmi.rom"), "{good}");
        let bad = line("qemu-tcg-vmi-old-major");
        assert!(
            bad.contains("-option-rom build/rig/vmi-old-major.rom"),
            "{bad}"
        );
        assert!(!line("qemu-tcg-pvh").contains("-option-rom"));
    }

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let args = ["a b", "it's", "", "x=1"].map(OsString::from);
        assert_eq!(
            shell_line(Path::new("q"), &args),
            r"q 'a b' 'it'\''s' '' x=1"
        );
    }
}
