//! `rig`: the host-side boot-test runner for sanos. Owns the process entry:
//! parses the command line, dispatches to `runner`, and turns the outcome
//! into the exit status (0 all good, 1 a configuration failed, 2 misuse or an
//! error before anything ran).

mod bench;
mod check;
mod cli;
mod cpio;
mod http;
mod matrix;
mod prepare;
mod process;
mod programs;
mod qemu;
mod runner;
mod services;
mod vmi_rom;

use std::process::ExitCode;

use check::Exit;
use cli::Command;
use matrix::{Boot, MATRIX};

fn list() {
    for config in MATRIX {
        let boot = match config.boot {
            Boot::Pvh => "pvh".to_string(),
            Boot::Iso { file_name } => format!("iso {file_name}"),
            Boot::XenPvhDom0 => "xen pvh dom0".to_string(),
            Boot::XenPvDom0 => "xen pv dom0".to_string(),
        };
        let requires = match config.requires {
            Some(requirement) => format!(", needs {requirement:?}"),
            None => String::new(),
        };
        println!(
            "{:<18} {} cpu={} {boot} cmdline={:?} timeout={} s status={}{requires}",
            config.name,
            config.accel.qemu_name(),
            config.cpu.unwrap_or("default"),
            config.cmdline,
            config.timeout.as_secs(),
            config.expect.status,
        );
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("rig: {err}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Cpio { dir, out } => match cpio::pack(&dir, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("rig: cpio: {err}");
                ExitCode::from(2)
            }
        },
        Command::VmiRom { input, out } => match vmi_rom::seal_file(&input, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("rig: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(paths) => match bench::bench(&paths) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("rig: {err}");
                ExitCode::FAILURE
            }
        },
        Command::List => {
            list();
            ExitCode::SUCCESS
        }
        Command::Test(args) => match runner::test(&args) {
            Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(err) => {
                eprintln!("rig: {err}");
                ExitCode::from(2)
            }
        },
        // QEMU's own status is passed on, so a script can tell a passing
        // test boot (33) from a panic (37).
        Command::Run(args) => match runner::run(&args) {
            Ok(Exit::Code(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Ok(_) => ExitCode::FAILURE,
            Err(err) => {
                eprintln!("rig: {err}");
                ExitCode::from(2)
            }
        },
    }
}
