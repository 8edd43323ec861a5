//! `rig bench`: boots the kernel's `bench` mode once per (accelerator, vmops
//! mode), and on the VMI backend (TCG with the VMI ROM), reads its `bench: <name> <value> <unit>` lines, and prints them
//! side by side with the references measured in the same invocation: the
//! raw instructions (in the same boot) for the vmops table, and a Linux
//! guest on the same QEMU command line (`images/linux-ref/run.sh`) for the
//! scheduler table. Tables, never a pass/fail on timing.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::time::Duration;

use crate::check::{self, Exit};
use crate::matrix::{Accel, Requirement, MATRIX};
use crate::prepare;
use crate::process;
use crate::qemu::{qemu_program, Launch, Media, Paths, Serial};

const MODES: [&str; 3] = ["off", "lazy", "eager"];
const TIMEOUT: Duration = Duration::from_secs(300);

/// Rows of the table: (kernel's name, what a reader sees).
const ROWS: [(&str, &str); 5] = [
    ("irq_sequence", "save_flags; irq_disable; restore_flags"),
    ("irq_disable", "irq_disable (interrupts already off)"),
    ("clock_read", "clock_ns"),
    ("raw_irq_sequence", "  raw pushf;pop;cli;push;popf"),
    ("raw_rdtsc", "  raw rdtsc"),
];

/// Rows of the scheduler table (nanoseconds).
const SCHED_ROWS: [(&str, &str); 7] = [
    ("ctxswitch", "context switch (event ping-pong)"),
    ("sleep_100us_late_median", "100 us sleep: late by, median"),
    ("sleep_100us_late_p99", "100 us sleep: late by, p99"),
    ("sleep_1000us_late_median", "1 ms sleep: late by, median"),
    ("sleep_1000us_late_p99", "1 ms sleep: late by, p99"),
    ("sleep_10000us_late_median", "10 ms sleep: late by, median"),
    ("sleep_10000us_late_p99", "10 ms sleep: late by, p99"),
];

/// Rows of the programs table: (name in `sysbench:` lines, label, unit).
const PROGRAM_ROWS: [(&str, &str); 3] = [
    ("getpid_cycles", "getpid round trip (TSC cycles)"),
    ("thread_create_join_ns", "pthread_create + join (ns)"),
    ("start_ns", "kernel start to main (ns)"),
];

/// Parses `sysbench: <name> <value>` lines (images/user/sysbench.c);
/// `None` without `sysbench: done`.
pub fn parse_sysbench(lines: &[String]) -> Option<BTreeMap<String, f64>> {
    let mut values = BTreeMap::new();
    let mut done = false;
    for line in lines {
        let Some(rest) = line.strip_prefix("sysbench: ") else {
            continue;
        };
        if rest == "done" {
            done = true;
            continue;
        }
        if let [name, value] = rest.split_whitespace().collect::<Vec<_>>()[..] {
            if let Ok(value) = value.parse::<f64>() {
                values.insert(name.to_string(), value);
            }
        }
    }
    done.then_some(values)
}

/// images/user/sysbench.c as sanos's init.
fn sanos_sysbench(paths: &Paths, accel: Accel) -> Result<BTreeMap<String, f64>, String> {
    let name = format!("bench-sysbench-{}", accel.qemu_name());
    let log = paths.serial_log(&name);
    let _ = fs::remove_file(&log);
    let launch = Launch {
        accel,
        machine: crate::matrix::Machine::Pc,
        nic: None,
        rtc_base: None,
        option_rom: None,
        cpu: MATRIX
            .iter()
            .find(|c| c.accel == accel)
            .and_then(|c| c.cpu)
            .map(str::to_string),
        media: Media::Kernel {
            kernel: paths.kernel.clone(),
            cmdline: "quiet init=/bin/sysbench".to_string(),
            initrd: Some(paths.user_image()),
        },
        serial: Serial::File(log.clone()),
    };
    let stderr = File::create(paths.qemu_stderr(&name)).map_err(|e| format!("{name}: {e}"))?;
    process::run_with_timeout(&qemu_program(), &launch.args(), stderr, TIMEOUT)?;
    let lines = check::log_lines(&fs::read(&log).unwrap_or_default());
    parse_sysbench(&lines).ok_or_else(|| format!("{name}: no results (log {})", log.display()))
}

/// The same binary as init of the Linux reference guest.
fn linux_sysbench(paths: &Paths, accel: Accel) -> Result<BTreeMap<String, f64>, String> {
    let binary = paths.build_dir.join("user/bin/sysbench");
    let output = std::process::Command::new("bash")
        .args(["images/linux-ref/run.sh", accel.qemu_name()])
        .env("INIT_BINARY", &binary)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("linux sysbench: {e}"))?;
    parse_sysbench(&check::log_lines(&output.stdout))
        .ok_or_else(|| format!("linux sysbench ({}) gave no results", accel.qemu_name()))
}

/// Parses `linuxbench: <name>_ns <value>` lines of the Linux reference
/// guest, keyed without the `_ns` suffix; `None` without `linuxbench: done`.
pub fn parse_linux(lines: &[String]) -> Option<BTreeMap<String, f64>> {
    let mut values = BTreeMap::new();
    let mut done = false;
    for line in lines {
        let Some(rest) = line.strip_prefix("linuxbench: ") else {
            continue;
        };
        if rest == "done" {
            done = true;
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let [name, value] = words[..] {
            if let (Some(name), Ok(value)) = (name.strip_suffix("_ns"), value.parse::<f64>()) {
                values.insert(name.to_string(), value);
            }
        }
    }
    done.then_some(values)
}

fn linux_reference(accel: Accel) -> Result<BTreeMap<String, f64>, String> {
    let mut args: Vec<std::ffi::OsString> =
        vec!["images/linux-ref/run.sh".into(), accel.qemu_name().into()];
    if accel == Accel::Kvm {
        // The nested KVM here is slow: a tenth of the iterations.
        args.push("linuxbench.scale=10".into());
    }
    let output = std::process::Command::new("bash")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("linux reference: {e}"))?;
    let lines = check::log_lines(&output.stdout);
    parse_linux(&lines)
        .ok_or_else(|| format!("linux reference ({}) gave no results", accel.qemu_name()))
}

/// Parses `bench: <name> <value> <unit>` lines; `None` without `bench: done`.
pub fn parse(lines: &[String]) -> Option<BTreeMap<String, f64>> {
    let mut values = BTreeMap::new();
    let mut done = false;
    for line in lines {
        let Some(rest) = line.strip_prefix("bench: ") else {
            continue;
        };
        if rest == "done" {
            done = true;
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let [name, value, "cycles" | "ns"] = words[..] {
            if let Ok(value) = value.parse::<f64>() {
                values.insert(name.to_string(), value);
            }
        }
    }
    done.then_some(values)
}

/// One `bench` boot; with `vmi`, the VMI ROM is loaded (TCG), so the ops
/// go through the ROM where it binds them.
fn boot(
    paths: &Paths,
    accel: Accel,
    mode: &str,
    vmi: bool,
) -> Result<BTreeMap<String, f64>, String> {
    let name = match vmi {
        true => format!("bench-vmi-{mode}"),
        false => format!("bench-{}-{mode}", accel.qemu_name()),
    };
    let log = paths.serial_log(&name);
    let _ = fs::remove_file(&log);
    let launch = Launch {
        accel,
        machine: crate::matrix::Machine::Pc,
        nic: None,
        rtc_base: None,
        option_rom: vmi.then(|| paths.good_vmi_rom()),
        cpu: MATRIX
            .iter()
            .find(|c| c.accel == accel)
            .and_then(|c| c.cpu)
            .map(str::to_string),
        media: Media::Kernel {
            kernel: paths.kernel.clone(),
            cmdline: format!("quiet bench vmops={mode}"),
            initrd: None,
        },
        serial: Serial::File(log.clone()),
    };
    let stderr = File::create(paths.qemu_stderr(&name)).map_err(|e| format!("{name}: {e}"))?;
    let (exit, _) = process::run_with_timeout(&qemu_program(), &launch.args(), stderr, TIMEOUT)?;
    results(&name, exit, &log)
}

/// The values a bench boot printed, if it ended with the pass status and
/// `bench: done`.
fn results(name: &str, exit: Exit, log: &std::path::Path) -> Result<BTreeMap<String, f64>, String> {
    let lines = check::log_lines(&fs::read(log).unwrap_or_default());
    match (exit, parse(&lines)) {
        (Exit::Code(33), Some(values)) => Ok(values),
        (exit, _) => Err(format!(
            "{name}: {} (log {})",
            check::describe_exit(exit),
            log.display()
        )),
    }
}

/// The `bench` mode as Xen's PV dom0 (the fast Xen rig, under TCG):
/// patched vs unpatched irq ops where they are event-mask stores.
fn boot_xen_pv(paths: &Paths, mode: &str) -> Result<BTreeMap<String, f64>, String> {
    let name = format!("bench-xen-pv-{mode}");
    let log = paths.serial_log(&name);
    let output = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let args: Vec<std::ffi::OsString> = vec![
        "TIMEOUT=240".into(),
        "bash".into(),
        "images/xen/dom0-kernel.sh".into(),
        paths.kernel.clone().into_os_string(),
        "quiet".into(),
        "bench".into(),
        format!("vmops={mode}").into(),
    ];
    let (exit, _) = process::run_with_timeout(std::ffi::OsStr::new("env"), &args, output, TIMEOUT)?;
    results(&name, exit, &log)
}

/// Prints `rows` (key, label) of `columns`, whole numbers.
fn print_table(title: &str, columns: &[(String, BTreeMap<String, f64>)], rows: &[(&str, &str)]) {
    print!("{title:<40}");
    for (name, _) in columns {
        print!(" {name:>11}");
    }
    println!();
    for (row, label) in rows {
        print!("{label:<40}");
        for (_, values) in columns {
            let value = values
                .get(*row)
                .map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
            print!(" {value:>11}");
        }
        println!();
    }
}

fn cell(values: &BTreeMap<String, f64>, row: &str) -> String {
    values
        .get(row)
        .map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

/// Runs every boot and prints the table.
pub fn bench(paths: &Paths) -> Result<(), String> {
    prepare::check_kernel(&paths.kernel)?;
    fs::create_dir_all(paths.rig_dir())
        .map_err(|e| format!("{}: {e}", paths.rig_dir().display()))?;
    let mut accels = vec![Accel::Tcg];
    match prepare::check_requirement(Requirement::Kvm) {
        Ok(()) => accels.insert(0, Accel::Kvm),
        Err(reason) => println!("KVM skipped: {reason}"),
    }
    let mut columns: Vec<(String, BTreeMap<String, f64>)> = Vec::new();
    for &accel in &accels {
        for mode in MODES {
            columns.push((
                format!("{} {mode}", accel.qemu_name()),
                boot(paths, accel, mode, false)?,
            ));
        }
    }
    // The same kernel on its VMI backend (the project's ROM, TCG): CALL_REL
    // into the ROM for the interrupt ops, the clock over GetCycleCounter.
    for mode in MODES {
        columns.push((format!("vmi {mode}"), boot(paths, Accel::Tcg, mode, true)?));
    }
    for mode in MODES {
        match boot_xen_pv(paths, mode) {
            Ok(values) => columns.push((format!("xenpv {mode}"), values)),
            Err(error) => {
                println!("(xen pv {mode}: {error})");
                columns.push((format!("xenpv {mode}"), BTreeMap::new()));
            }
        }
    }
    println!();
    println!("vmops micro-benchmarks: TSC cycles per operation (best of 5 rounds of 100000,");
    println!(
        "interrupts off, loop overhead included); same kernel {}",
        paths.kernel.display()
    );
    print!("{:<40}", "operation");
    for (name, _) in &columns {
        print!(" {name:>10}");
    }
    println!();
    for (row, label) in ROWS {
        print!("{label:<40}");
        for (_, values) in &columns {
            print!(" {:>10}", cell(values, row));
        }
        println!();
    }
    print!("{:<40}", "  empty loop");
    for (_, values) in &columns {
        print!(" {:>10}", cell(values, "loop_overhead"));
    }
    println!();

    // Scheduler: sanos (eager) next to Linux on the same QEMU flags.
    let mut sched_columns: Vec<(String, BTreeMap<String, f64>)> = Vec::new();
    for &accel in &accels {
        let sanos = columns
            .iter()
            .find(|(name, _)| *name == format!("{} eager", accel.qemu_name()))
            .map(|(_, values)| values.clone())
            .unwrap_or_default();
        sched_columns.push((format!("sanos {}", accel.qemu_name()), sanos));
        if accel == Accel::Kvm && std::env::var_os("LINUX_REF_KVM").is_none() {
            // Debian's kernel does not boot on this project's machines'
            // /dev/kvm (kvm_pvm: emulation failures on int3, xrstor,
            // cmpxchg16b); on a real KVM host set LINUX_REF_KVM=1.
            println!("(linux kvm reference skipped: set LINUX_REF_KVM=1 on a KVM host where Linux boots)");
            sched_columns.push((format!("linux {}", accel.qemu_name()), BTreeMap::new()));
            continue;
        }
        match linux_reference(accel) {
            Ok(values) => sched_columns.push((format!("linux {}", accel.qemu_name()), values)),
            Err(error) => {
                println!("({error})");
                sched_columns.push((format!("linux {}", accel.qemu_name()), BTreeMap::new()));
            }
        }
    }
    // sanos as Xen's PV dom0 (no Linux counterpart: the reference guest
    // is a QEMU guest).
    if let Some((_, values)) = columns.iter().find(|(name, _)| name == "xenpv eager") {
        sched_columns.push(("sanos xenpv".to_string(), values.clone()));
    }
    let mut program_columns: Vec<(String, BTreeMap<String, f64>)> = Vec::new();
    for &accel in &accels {
        let column = |who: &str| format!("{who} {}", accel.qemu_name());
        if accel == Accel::Kvm && std::env::var_os("SYSBENCH_KVM").is_none() {
            // The nested KVM of the project's machines cannot emulate
            // STAC ("KVM internal error", emulation failure) and stops the
            // vCPU at the first copy to user memory; on a real KVM host
            // set SYSBENCH_KVM=1 (and LINUX_REF_KVM=1 for Linux's column).
            println!("(sanos kvm programs skipped: set SYSBENCH_KVM=1 on a KVM host that emulates STAC/CLAC)");
            program_columns.push((column("sanos"), BTreeMap::new()));
            program_columns.push((column("linux"), BTreeMap::new()));
            continue;
        }
        match sanos_sysbench(paths, accel) {
            Ok(values) => program_columns.push((column("sanos"), values)),
            Err(error) => {
                println!("({error})");
                program_columns.push((column("sanos"), BTreeMap::new()));
            }
        }
        if accel == Accel::Kvm && std::env::var_os("LINUX_REF_KVM").is_none() {
            program_columns.push((column("linux"), BTreeMap::new()));
            continue;
        }
        match linux_sysbench(paths, accel) {
            Ok(values) => program_columns.push((column("linux"), values)),
            Err(error) => {
                println!("({error})");
                program_columns.push((column("linux"), BTreeMap::new()));
            }
        }
    }

    println!();
    println!("threads and timers: nanoseconds of each guest's clock (lower is better);");
    println!("Linux: Debian's kernel with a static C init (images/linux-ref), same QEMU flags");
    print_table("operation", &sched_columns, &SCHED_ROWS);

    println!();
    println!("programs: images/user/sysbench.c (static, musl) as init of each guest,");
    println!("the same binary for sanos and Linux, same QEMU flags (lower is better)");
    print_table("measurement", &program_columns, &PROGRAM_ROWS);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn parses_linux_reference_lines() {
        let out = lines("linuxbench: ctxswitch_ns 2500\nlinuxbench: sleep_100us_late_median_ns 60000\nlinuxbench-info: x\nlinuxbench: done");
        let values = parse_linux(&out).unwrap();
        assert_eq!(values.get("ctxswitch"), Some(&2500.0));
        assert_eq!(values.get("sleep_100us_late_median"), Some(&60000.0));
        assert!(parse_linux(&lines("linuxbench: ctxswitch_ns 1")).is_none());
    }

    #[test]
    fn parses_sysbench_lines() {
        let out = lines(
            "sysbench: start_ns 38222725\nsysbench: getpid_cycles 790.3\nnoise\nsysbench: done",
        );
        let values = parse_sysbench(&out).unwrap();
        assert_eq!(values.get("getpid_cycles"), Some(&790.3));
        assert_eq!(values.get("start_ns"), Some(&38222725.0));
        assert!(parse_sysbench(&lines("sysbench: getpid_cycles 1")).is_none());
    }

    #[test]
    fn parses_values_and_needs_done() {
        let out = lines("bench: start backend=native\nbench: irq_sequence 67.4 cycles\nbench: clock_read 110.0 cycles\nbench: ctxswitch 3837 ns\nbench: done");
        let values = parse(&out).unwrap();
        assert_eq!(values.get("irq_sequence"), Some(&67.4));
        assert_eq!(values.get("clock_read"), Some(&110.0));
        assert_eq!(values.get("ctxswitch"), Some(&3837.0));
        assert_eq!(values.len(), 3);
        assert!(parse(&lines("bench: irq_sequence 1.0 cycles")).is_none());
        assert!(parse(&lines("bench: irq_sequence x cycles\nbench: done"))
            .unwrap()
            .is_empty());
    }
}
