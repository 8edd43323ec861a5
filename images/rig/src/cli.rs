//! The rig's command line: subcommands and options, parsed into plain
//! values. Pure, so every accepted and refused form is tested.

use std::path::PathBuf;

use crate::qemu::Paths;

pub const USAGE: &str = "\
usage: rig test [--only SUBSTRING] [--kernel PATH] [--build-dir DIR]
       rig run  [--kvm] [--append \"CMDLINE\"] [--iso] [--nic MODEL] [--port PORT]
                [--site PATH] [--option-rom PATH] [--init PROGRAM [--args \"ARGS\"]
                [--files DIR]] [--kernel PATH] [--build-dir DIR]
       rig bench [--kernel PATH] [--build-dir DIR]
       rig cpio DIR OUT
       rig vmi-rom IN OUT
       rig list

  test   boot every configuration of the matrix (or those whose name contains
         SUBSTRING), one line per configuration, then `N passed, N failed,
         N skipped`; exit status 0 iff none failed. Serial logs go to
         DIR/rig/<name>.log.
  run    boot once with the serial console on this terminal (quit: Ctrl-A X);
         --kvm uses KVM, --iso boots through GRUB from an ISO built with CMDLINE;
         --nic MODEL adds a QEMU NIC on user networking (restricted) with
         127.0.0.1:PORT (--port, default 8080) forwarded to the guest's 80,
         --site PATH passes a site image as the boot module,
         --option-rom PATH loads an option ROM (the VMI ROM, build/vmi.rom);
         --init PROGRAM packs a static Linux executable (as /bin/NAME, with
         the files under DIR if --files is given) into the boot module and
         runs it as init with ARGS; the rig then exits with its status.
  bench  boot the kernel's `bench` mode in each vmops mode (off, lazy,
         eager), under TCG and (when /dev/kvm opens) KVM, and print a table.
  cpio   pack the files under DIR into OUT, a cpio (newc) archive: the site
         image the appliance serves.
  vmi-rom  seal IN, the assembled VMI test ROM (images/vmi-rom), into OUT:
         padded to 512-byte blocks, VMI signature, API version, length and
         checksum written.
  list   print the matrix.

  --build-dir DIR   default build
  --kernel PATH     default DIR/sanos.elf
  QEMU=path         environment: the QEMU binary (default qemu-system-x86_64)";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestArgs {
    pub only: Option<String>,
    pub paths: Paths,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    pub kvm: bool,
    pub append: Option<String>,
    pub iso: bool,
    pub nic: Option<String>,
    pub port: u16,
    pub site: Option<PathBuf>,
    pub option_rom: Option<PathBuf>,
    /// A program to run as init, its arguments, and files to pack with it.
    pub init: Option<PathBuf>,
    pub init_args: Option<String>,
    pub files: Option<PathBuf>,
    pub paths: Paths,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Test(TestArgs),
    Run(RunArgs),
    Bench(Paths),
    Cpio { dir: PathBuf, out: PathBuf },
    VmiRom { input: PathBuf, out: PathBuf },
    List,
    Help,
}

/// Options every subcommand collects before the paths are settled, since the
/// kernel's default depends on the build directory.
#[derive(Default)]
struct Raw {
    only: Option<String>,
    kernel: Option<PathBuf>,
    build_dir: Option<PathBuf>,
    append: Option<String>,
    kvm: bool,
    iso: bool,
    nic: Option<String>,
    port: Option<String>,
    site: Option<PathBuf>,
    option_rom: Option<PathBuf>,
    init: Option<PathBuf>,
    init_args: Option<String>,
    files: Option<PathBuf>,
}

impl Raw {
    fn paths(&mut self) -> Paths {
        let build_dir = self
            .build_dir
            .take()
            .unwrap_or_else(|| PathBuf::from("build"));
        let kernel = self
            .kernel
            .take()
            .unwrap_or_else(|| build_dir.join("sanos.elf"));
        Paths { kernel, build_dir }
    }
}

/// Parses the arguments after the program name. Both `--opt VALUE` and
/// `--opt=VALUE` are accepted; an option given twice is refused rather than
/// silently overridden.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((sub, rest)) = args.split_first() else {
        return Err("missing subcommand".to_string());
    };
    let allowed: &[&str] = match sub.as_str() {
        "test" => &["--only", "--kernel", "--build-dir"],
        "run" => &[
            "--kvm",
            "--append",
            "--iso",
            "--nic",
            "--port",
            "--site",
            "--option-rom",
            "--init",
            "--args",
            "--files",
            "--kernel",
            "--build-dir",
        ],
        "cpio" => {
            return match rest {
                [dir, out] => Ok(Command::Cpio {
                    dir: PathBuf::from(dir),
                    out: PathBuf::from(out),
                }),
                _ => Err("cpio takes DIR and OUT".to_string()),
            }
        }
        "vmi-rom" => {
            return match rest {
                [input, out] => Ok(Command::VmiRom {
                    input: PathBuf::from(input),
                    out: PathBuf::from(out),
                }),
                _ => Err("vmi-rom takes IN and OUT".to_string()),
            }
        }
        "bench" => &["--kernel", "--build-dir"],
        "list" => &[],
        "help" | "-h" | "--help" => return Ok(Command::Help),
        other => return Err(format!("unknown subcommand {other:?}")),
    };
    let mut raw = Raw::default();
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        if !allowed.contains(&name) {
            return Err(format!("{sub}: unknown option {arg:?}"));
        }
        if matches!(name, "--kvm" | "--iso") {
            if inline.is_some() {
                return Err(format!("{name} takes no value"));
            }
            let flag = if name == "--kvm" {
                &mut raw.kvm
            } else {
                &mut raw.iso
            };
            if *flag {
                return Err(format!("{name} given twice"));
            }
            *flag = true;
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => rest
                .next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))?,
        };
        let slot_empty = match name {
            "--only" => raw.only.replace(value).is_none(),
            "--append" => raw.append.replace(value).is_none(),
            "--kernel" => raw.kernel.replace(PathBuf::from(value)).is_none(),
            "--nic" => raw.nic.replace(value).is_none(),
            "--port" => raw.port.replace(value).is_none(),
            "--site" => raw.site.replace(PathBuf::from(value)).is_none(),
            "--option-rom" => raw.option_rom.replace(PathBuf::from(value)).is_none(),
            "--init" => raw.init.replace(PathBuf::from(value)).is_none(),
            "--args" => raw.init_args.replace(value).is_none(),
            "--files" => raw.files.replace(PathBuf::from(value)).is_none(),
            _ => raw.build_dir.replace(PathBuf::from(value)).is_none(),
        };
        if !slot_empty {
            return Err(format!("{name} given twice"));
        }
    }
    Ok(match sub.as_str() {
        "test" => Command::Test(TestArgs {
            only: raw.only.take(),
            paths: raw.paths(),
        }),
        "run" => Command::Run(RunArgs {
            kvm: raw.kvm,
            append: raw.append.take(),
            iso: raw.iso,
            nic: raw.nic.take(),
            port: match raw.port.take() {
                Some(port) => port
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("--port {port:?} is no port number"))?,
                None => 8080,
            },
            site: raw.site.take(),
            option_rom: raw.option_rom.take(),
            init: raw.init.take(),
            init_args: raw.init_args.take(),
            files: raw.files.take(),
            paths: raw.paths(),
        }),
        "bench" => Command::Bench(raw.paths()),
        _ => Command::List,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    fn default_paths() -> Paths {
        Paths {
            kernel: PathBuf::from("build/sanos.elf"),
            build_dir: PathBuf::from("build"),
        }
    }

    #[test]
    fn bench_takes_paths_only() {
        assert_eq!(parse_str("bench"), Ok(Command::Bench(default_paths())));
        assert!(parse_str("bench --kvm").is_err());
    }

    #[test]
    fn test_defaults() {
        assert_eq!(
            parse_str("test"),
            Ok(Command::Test(TestArgs {
                only: None,
                paths: default_paths()
            }))
        );
    }

    #[test]
    fn test_options_in_both_forms() {
        assert_eq!(
            parse_str("test --only tcg --kernel=k.elf --build-dir out"),
            Ok(Command::Test(TestArgs {
                only: Some("tcg".to_string()),
                paths: Paths {
                    kernel: PathBuf::from("k.elf"),
                    build_dir: PathBuf::from("out"),
                }
            }))
        );
    }

    #[test]
    fn kernel_defaults_into_the_build_dir() {
        let Ok(Command::Test(args)) = parse_str("test --build-dir out") else {
            panic!("test --build-dir out must parse");
        };
        assert_eq!(args.paths.kernel, PathBuf::from("out/sanos.elf"));
    }

    #[test]
    fn run_options() {
        let args: Vec<String> = ["run", "--kvm", "--append", "test loglevel=debug", "--iso"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            parse(&args),
            Ok(Command::Run(RunArgs {
                kvm: true,
                append: Some("test loglevel=debug".to_string()),
                iso: true,
                nic: None,
                port: 8080,
                site: None,
                option_rom: None,
                init: None,
                init_args: None,
                files: None,
                paths: default_paths(),
            }))
        );
        assert_eq!(
            parse_str("run"),
            Ok(Command::Run(RunArgs {
                kvm: false,
                append: None,
                iso: false,
                nic: None,
                port: 8080,
                site: None,
                option_rom: None,
                init: None,
                init_args: None,
                files: None,
                paths: default_paths(),
            }))
        );
        assert_eq!(
            parse_str("run --nic e1000 --port 9000 --site build/site.cpio"),
            Ok(Command::Run(RunArgs {
                kvm: false,
                append: None,
                iso: false,
                nic: Some("e1000".to_string()),
                port: 9000,
                site: Some(PathBuf::from("build/site.cpio")),
                option_rom: None,
                init: None,
                init_args: None,
                files: None,
                paths: default_paths(),
            }))
        );
        assert_eq!(
            parse_str("cpio images/site build/site.cpio"),
            Ok(Command::Cpio {
                dir: PathBuf::from("images/site"),
                out: PathBuf::from("build/site.cpio"),
            })
        );
    }

    #[test]
    fn refusals() {
        for line in [
            "",
            "boot",
            "test --kvm",
            "run --only x",
            "test --only",
            "run --port 0",
            "run --port x",
            "cpio one",
            "test --only a --only b",
            "run --kvm --kvm",
            "run --kvm=yes",
            "test extra",
            "list --only x",
        ] {
            assert!(parse_str(line).is_err(), "{line:?} must be refused");
        }
    }

    #[test]
    fn help_and_list() {
        assert_eq!(parse_str("--help"), Ok(Command::Help));
        assert_eq!(parse_str("test -h"), Ok(Command::Help));
        assert_eq!(parse_str("list"), Ok(Command::List));
    }
}
