//! `rig test` and `rig run`: walking the matrix one configuration at a time
//! and reporting PASS/FAIL/SKIP, or booting one interactive session.

use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use crate::check::{self, describe_exit, Exit};
use crate::cli::{RunArgs, TestArgs};
use crate::matrix::{Accel, Boot, Config, Fixture, Requirement, MATRIX};
use crate::prepare;
use crate::process;
use crate::qemu::{qemu_program, shell_line, Launch, Media, Nic, Serial};

/// How many serial log lines follow a FAIL line: enough for a panic message
/// and its context, little enough to read five failures in a row.
const TAIL_LINES: usize = 40;

/// The configurations `--only` selects, in matrix order.
pub fn select<'a>(matrix: &'a [Config], only: Option<&str>) -> Vec<&'a Config> {
    matrix
        .iter()
        .filter(|c| only.is_none_or(|sub| c.name.contains(sub)))
        .collect()
}

/// The result of one configuration.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass { took: Duration },
    Fail { reason: String },
    Skip { reason: String },
}

/// Counts over the whole run; the rig's own closing line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn add(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Pass { .. } => self.passed += 1,
            Verdict::Fail { .. } => self.failed += 1,
            Verdict::Skip { .. } => self.skipped += 1,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// The part of a FAIL that goes after the name.
fn fail(reason: impl Into<String>) -> Verdict {
    Verdict::Fail {
        reason: reason.into(),
    }
}

/// Boots one configuration and judges it. The serial log is left at
/// `paths.serial_log(name)` for the caller to show.
fn run_config(config: &Config, args: &TestArgs) -> Verdict {
    let paths = &args.paths;
    if let Some(requirement) = config.requires {
        if let Err(reason) = prepare::check_requirement(requirement) {
            return Verdict::Skip { reason };
        }
    }
    let log = paths.serial_log(config.name);
    let stderr_path = paths.qemu_stderr(config.name);
    // Files left by an earlier run must never be judged or shown as this
    // one's, even when this one fails before QEMU starts.
    for stale in [&log, &stderr_path] {
        if let Err(e) = fs::remove_file(stale) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return fail(format!("cannot remove old {}: {e}", stale.display()));
            }
        }
    }
    if let Err(reason) = prepare::prepare(config, paths) {
        return fail(reason);
    }
    let stderr = match File::create(&stderr_path) {
        Ok(file) => file,
        Err(e) => return fail(format!("cannot create {}: {e}", stderr_path.display())),
    };
    let (program, qemu_args, output) = if config.boot.is_xen_dom0() {
        // Xen's console (and dom0's) is the script's stdout: that is the
        // serial log.
        let log_file = match File::create(&log) {
            Ok(file) => file,
            Err(e) => return fail(format!("cannot create {}: {e}", log.display())),
        };
        let mut args: Vec<std::ffi::OsString> = vec![
            format!("DOM0_PVH={}", u8::from(config.boot == Boot::XenPvhDom0)).into(),
            format!("TIMEOUT={}", config.timeout.as_secs()).into(),
        ];
        if config.fixture == Some(Fixture::Programs) {
            let mut module = std::ffi::OsString::from("DOM0_MODULE=");
            module.push(paths.user_image());
            args.push(module);
        }
        args.extend([
            "bash".into(),
            "images/xen/dom0-kernel.sh".into(),
            paths.kernel.clone().into_os_string(),
        ]);
        args.extend(config.cmdline.split_whitespace().map(Into::into));
        (std::ffi::OsString::from("env"), args, log_file)
    } else {
        let launch = Launch::for_config(config, paths);
        (qemu_program(), launch.args(), stderr)
    };
    // The script has its own timeout; ours is the backstop.
    let backstop = config.timeout
        + if config.boot.is_xen_dom0() {
            Duration::from_secs(30)
        } else {
            Duration::ZERO
        };
    // What the HTTP checks found (judged with the log below).
    let mut http_problems: Vec<String> = Vec::new();
    let run = match config.fixture {
        Some(Fixture::SerialInput { after, input }) => {
            let log_file = match File::create(&log) {
                Ok(file) => file,
                Err(e) => return fail(format!("cannot create {}: {e}", log.display())),
            };
            let mut typed = || input.to_string();
            process::run_with_input(
                &program, &qemu_args, log_file, backstop, &log, after, &mut typed,
            )
        }
        Some(Fixture::Http {
            nic,
            after,
            hostile,
            churn,
        }) => {
            let (log_file, port, qemu_args) = match forwarded(config, paths, &log, nic) {
                Ok(setup) => setup,
                Err(reason) => return fail(reason),
            };
            let site = paths.rig_dir().join("site");
            let mut checks = || {
                http_problems = crate::http::check_site(&site, port, &paths.rig_dir());
                if hostile {
                    http_problems.extend(crate::http::hostile(port));
                }
                if churn > 0 {
                    http_problems.extend(crate::http::churn(port, churn));
                }
                // A ping to QEMU's gateway, from the shell, then off.
                "ping 10.0.2.2 1\rpoweroff\r".to_string()
            };
            process::run_with_input(
                &program,
                &qemu_args,
                log_file,
                backstop,
                &log,
                after,
                &mut checks,
            )
        }
        Some(Fixture::ProgramServer { nic, after }) => {
            let (log_file, port, qemu_args) = match forwarded(config, paths, &log, nic) {
                Ok(setup) => setup,
                Err(reason) => return fail(reason),
            };
            let mut checks = || {
                http_problems = crate::programs::check_server(port, paths);
                String::new()
            };
            process::run_with_input(
                &program,
                &qemu_args,
                log_file,
                backstop,
                &log,
                after,
                &mut checks,
            )
        }
        Some(Fixture::Services { nic, after }) => {
            let log_file = match File::create(&log) {
                Ok(file) => file,
                Err(e) => return fail(format!("cannot create {}: {e}", log.display())),
            };
            let started = crate::services::Services::start(
                &paths.rig_dir().join("services"),
                &crate::services::chronyd(&paths.build_dir),
            );
            let servers = match started {
                Ok(servers) => servers,
                Err(reason) => return fail(reason),
            };
            let mut launch = Launch::for_config(config, paths);
            launch.nic = Some(Nic::Tap {
                model: nic.to_string(),
                ifname: crate::services::TAP.to_string(),
            });
            launch.rtc_base = Some("2001-01-01T00:00:00".to_string());
            let mut typed = || {
                "host web.sanos.test\rhost nope.sanos.test\rdate\rping logs.sanos.test 1\rpoweroff\r"
                    .to_string()
            };
            let run = process::run_with_input(
                &program,
                &launch.args(),
                log_file,
                backstop,
                &log,
                after,
                &mut typed,
            );
            let lines = check::log_lines(&fs::read(&log).unwrap_or_default());
            http_problems.extend(crate::services::check_date(&lines));
            http_problems.extend(crate::services::check_syslog(&servers.syslog()));
            drop(servers);
            run
        }
        _ => process::run_with_timeout(&program, &qemu_args, output, backstop),
    };
    let (exit, elapsed) = match run {
        Ok(result) => result,
        Err(reason) => return fail(reason),
    };
    // QEMU that never started leaves no log; that is reported through its
    // status and stderr, not as an unreadable file.
    let raw = fs::read(&log).unwrap_or_default();
    let lines = check::log_lines(&raw);
    let mut problems = check::judge(&config.expect, exit, &lines);
    problems.extend(http_problems);
    if problems.is_empty() {
        Verdict::Pass { took: elapsed }
    } else {
        let mut reason = problems.join("; ");
        if matches!(exit, Exit::Code(1)) {
            // Status 1 is mostly QEMU refusing its arguments: show them.
            reason.push_str(&format!(
                "\n  command: {}",
                shell_line(Path::new(&program), &qemu_args)
            ));
        }
        fail(reason)
    }
}

/// The last `n` lines of a file, indented so a quoted `3 passed, 0 failed`
/// is never taken for a closing line of the rig's own output.
fn tail(path: &Path, n: usize, label: &str, debug: Option<&Path>) -> Vec<String> {
    let raw = fs::read(path).unwrap_or_default();
    let lines = check::log_lines(&raw);
    if lines.is_empty() {
        return Vec::new();
    }
    let start = lines.len().saturating_sub(n);
    let mut out = vec![format!(
        "  --- {label} {} (last {} of {} lines)",
        path.display(),
        lines.len() - start,
        lines.len()
    )];
    for line in &lines[start..] {
        out.push(format!("  | {line}"));
        if let Some(debug) = debug {
            for (address, name) in symbolize(debug, &kernel_addresses(line)) {
                out.push(format!("  |     {address:#x} = {name}"));
            }
        }
    }
    out
}

/// Kernel text addresses (the top 2 GiB) mentioned on a line, as a panic
/// backtrace or an exception report prints them.
pub fn kernel_addresses(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|word| word.strip_prefix("0x"))
        .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
        .filter(|&address| address >= 0xffff_ffff_8000_0000)
        .collect()
}

/// Function and source line of each address, from the kernel's debug file
/// (addr2line, binutils). Return addresses point after their call, so the
/// byte before is looked up. Empty when addr2line or the file is missing.
fn symbolize(debug: &Path, addresses: &[u64]) -> Vec<(u64, String)> {
    if addresses.is_empty() || !debug.exists() {
        return Vec::new();
    }
    let mut command = std::process::Command::new("addr2line");
    command.args(["-f", "-C", "-p", "-e"]).arg(debug);
    for address in addresses {
        command.arg(format!("{:#x}", address.saturating_sub(1)));
    }
    match command.output() {
        Ok(output) if output.status.success() => addresses
            .iter()
            .copied()
            .zip(
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(str::to_string),
            )
            .collect(),
        _ => Vec::new(),
    }
}

/// `rig test`: every selected configuration in order; `Err` when the
/// selection is empty, since a run that checks nothing must not look green.
pub fn test(args: &TestArgs) -> Result<Summary, String> {
    let selected = select(MATRIX, args.only.as_deref());
    if selected.is_empty() {
        let names: Vec<_> = MATRIX.iter().map(|c| c.name).collect();
        return Err(format!(
            "--only {:?} matches no configuration (have: {})",
            args.only.as_deref().unwrap_or_default(),
            names.join(", ")
        ));
    }
    let mut summary = Summary::default();
    for config in selected {
        let verdict = run_config(config, args);
        summary.add(&verdict);
        match &verdict {
            Verdict::Pass { took } => {
                println!("PASS {} ({:.1} s)", config.name, took.as_secs_f64())
            }
            Verdict::Skip { reason } => println!("SKIP {}: {reason}", config.name),
            Verdict::Fail { reason } => {
                println!("FAIL {}: {reason}", config.name);
                let log = args.paths.serial_log(config.name);
                let debug = args.paths.build_dir.join("sanos.debug");
                let serial = tail(&log, TAIL_LINES, "serial", Some(&debug));
                // No log at all means QEMU never started, which the reason
                // already says; an empty one is worth saying.
                if serial.is_empty() && log.exists() {
                    println!("  --- serial {}: empty", log.display());
                }
                let stderr = tail(
                    &args.paths.qemu_stderr(config.name),
                    10,
                    "qemu stderr",
                    None,
                );
                for line in serial.iter().chain(&stderr) {
                    println!("{line}");
                }
            }
        }
    }
    println!("{}", summary.line());
    Ok(summary)
}

/// The serial log file, a free port of this machine forwarded to the
/// guest's 80, and QEMU's arguments with a NIC of model `nic` there.
fn forwarded(
    config: &Config,
    paths: &crate::qemu::Paths,
    log: &Path,
    nic: &str,
) -> Result<(File, u16, Vec<std::ffi::OsString>), String> {
    let log_file =
        File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let port = crate::http::free_port()?;
    let mut launch = Launch::for_config(config, paths);
    launch.nic = Some(Nic::User {
        model: nic.to_string(),
        port,
    });
    Ok((log_file, port, launch.args()))
}

/// `rig run`: one boot on the terminal. Returns QEMU's exit.
pub fn run(args: &RunArgs) -> Result<Exit, String> {
    let paths = &args.paths;
    prepare::check_kernel(&paths.kernel)?;
    let accel = if args.kvm {
        prepare::check_requirement(Requirement::Kvm)?;
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    // The same CPU models the matrix uses, so an interactive boot behaves
    // like the test that failed.
    let cpu = MATRIX
        .iter()
        .find(|c| c.accel == accel)
        .and_then(|c| c.cpu)
        .map(str::to_string);
    let mut cmdline = args.append.clone().unwrap_or_default();
    let mut initrd = args.site.clone();
    if let Some(program) = &args.init {
        let (image, path) = init_image(paths, program, args.files.as_deref())?;
        initrd = Some(image);
        cmdline = init_cmdline(&path, &cmdline, args.init_args.as_deref());
    }
    let media = if args.iso {
        let iso = paths.run_iso();
        let rig_dir = paths.rig_dir();
        fs::create_dir_all(&rig_dir)
            .map_err(|e| format!("cannot create {}: {e}", rig_dir.display()))?;
        prepare::build_iso(&paths.kernel, &iso, &cmdline)?;
        Media::Cdrom(iso)
    } else {
        Media::Kernel {
            kernel: paths.kernel.clone(),
            cmdline,
            initrd,
        }
    };
    if args.nic.is_some() {
        println!(
            "rig: the guest's port 80 is http://127.0.0.1:{}/ on this machine",
            args.port
        );
    }
    let launch = Launch {
        accel,
        machine: crate::matrix::Machine::Pc,
        nic: args.nic.clone().map(|model| Nic::User {
            model,
            port: args.port,
        }),
        rtc_base: None,
        option_rom: args.option_rom.clone(),
        cpu,
        media,
        serial: Serial::Terminal,
    };
    let program = qemu_program();
    let qemu_args = launch.args();
    println!("rig: quit with Ctrl-A X (Ctrl-A C switches to the QEMU monitor)");
    println!("rig: {}", shell_line(Path::new(&program), &qemu_args));
    let exit = process::run_interactive(&program, &qemu_args)?;
    if args.init.is_none() {
        eprintln!("rig: {}", describe_exit(exit));
    }
    match (exit, &args.init) {
        (Exit::Code(code), Some(_)) => {
            let status = program_status(code);
            eprintln!("rig: the program's exit status: {status}");
            Ok(Exit::Code(status))
        }
        _ => Ok(exit),
    }
}

/// The kernel command line that runs `path` as init with `args` (after
/// `--`), keeping the options of `append`.
pub fn init_cmdline(path: &str, append: &str, args: Option<&str>) -> String {
    let mut line = format!("init={path}");
    if !append.trim().is_empty() {
        line.push(' ');
        line.push_str(append.trim());
    }
    if let Some(args) = args.map(str::trim).filter(|a| !a.is_empty()) {
        line.push_str(" -- ");
        line.push_str(args);
    }
    line
}

/// The program's exit status from QEMU's: the kernel writes it to
/// isa-debug-exit, whose QEMU exits with `(value << 1) | 1`; an even
/// status (0: the machine powered off by ACPI) passes as it is.
pub fn program_status(qemu: i32) -> i32 {
    if qemu & 1 == 1 {
        (qemu - 1) / 2
    } else {
        qemu
    }
}

/// The boot module for `run --init`: the program as /bin/NAME, with the
/// files under `files`; returns the archive's path and the program's.
fn init_image(
    paths: &crate::qemu::Paths,
    program: &Path,
    files: Option<&Path>,
) -> Result<(std::path::PathBuf, String), String> {
    let name = program
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no file name", program.display()))?;
    let data = fs::read(program).map_err(|e| format!("{}: {e}", program.display()))?;
    let mut members = match files {
        Some(dir) => crate::cpio::members_of(dir)?,
        None => Vec::new(),
    };
    let path = format!("bin/{name}");
    members.retain(|m| m.path != path);
    if !members.iter().any(|m| m.path == "bin") {
        members.push(crate::cpio::Member {
            path: "bin".to_string(),
            data: Vec::new(),
            is_dir: true,
            mtime: 0,
        });
    }
    members.push(crate::cpio::Member {
        path: path.clone(),
        data,
        is_dir: false,
        mtime: 0,
    });
    members.sort_by(|a, b| a.path.cmp(&b.path));
    let rig_dir = paths.rig_dir();
    fs::create_dir_all(&rig_dir).map_err(|e| format!("{}: {e}", rig_dir.display()))?;
    let image = rig_dir.join("run-init.cpio");
    fs::write(&image, crate::cpio::write(&members))
        .map_err(|e| format!("{}: {e}", image.display()))?;
    Ok((image, format!("/{path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_runs_get_their_command_line_and_status() {
        assert_eq!(init_cmdline("/bin/a", "", None), "init=/bin/a");
        assert_eq!(
            init_cmdline("/bin/a", " quiet ", Some(" -p 80 -")),
            "init=/bin/a quiet -- -p 80 -"
        );
        assert_eq!(program_status(15), 7);
        assert_eq!(program_status(1), 0);
        assert_eq!(program_status(0), 0);
    }

    #[test]
    fn only_selects_by_substring_in_matrix_order() {
        let names = |only| {
            select(MATRIX, only)
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(None).len(), MATRIX.len());
        assert_eq!(
            names(Some("tcg-crash")),
            [
                "qemu-tcg-crash-panic",
                "qemu-tcg-crash-stack",
                "qemu-tcg-crash-pagefault"
            ]
        );
        assert_eq!(names(Some("grub-iso")), ["grub-iso"]);
        assert!(names(Some("nothing")).is_empty());
    }

    #[test]
    fn kernel_addresses_are_found_on_report_lines() {
        assert_eq!(
            kernel_addresses("  #1  0xffffffff8020d61f"),
            [0xffff_ffff_8020_d61f]
        );
        assert_eq!(
            kernel_addresses(
                "EXCEPTION: page fault (#PF) (vector 14) error=0x2 at rip=0xffffffff8020d5b8"
            ),
            [0xffff_ffff_8020_d5b8]
        );
        // Not kernel text: the direct map, small numbers, non-hex.
        assert!(kernel_addresses("cr2=0xffff800000001000 0x10 0xzz").is_empty());
    }

    #[test]
    fn summary_line_is_the_plain_closing_form() {
        let mut summary = Summary::default();
        summary.add(&Verdict::Pass {
            took: Duration::from_secs(1),
        });
        summary.add(&Verdict::Pass {
            took: Duration::from_secs(2),
        });
        summary.add(&fail("x"));
        summary.add(&Verdict::Skip {
            reason: "y".to_string(),
        });
        assert_eq!(summary.line(), "2 passed, 1 failed, 1 skipped");
    }
}
