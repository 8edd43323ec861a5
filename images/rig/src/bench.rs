//! `rig bench`: boots the kernel's `bench` mode once per (accelerator, vmops
//! mode), reads its `bench: <name> <cycles> cycles` lines, and prints them
//! side by side with the raw-instruction references the kernel measures in
//! the same boot. A table, never a pass/fail on timing.

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
const ROWS: [(&str, &str); 4] = [
    ("irq_sequence", "save_flags; irq_disable; restore_flags"),
    ("clock_read", "clock_ns"),
    ("raw_irq_sequence", "  raw pushf;pop;cli;push;popf"),
    ("raw_rdtsc", "  raw rdtsc"),
];

/// Parses `bench: <name> <value> cycles` lines; `None` without `bench: done`.
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
        if let [name, value, "cycles"] = words[..] {
            if let Ok(value) = value.parse::<f64>() {
                values.insert(name.to_string(), value);
            }
        }
    }
    done.then_some(values)
}

fn boot(paths: &Paths, accel: Accel, mode: &str) -> Result<BTreeMap<String, f64>, String> {
    let name = format!("bench-{}-{mode}", accel.qemu_name());
    let log = paths.serial_log(&name);
    let _ = fs::remove_file(&log);
    let launch = Launch {
        accel,
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
    let lines = check::log_lines(&fs::read(&log).unwrap_or_default());
    match (exit, parse(&lines)) {
        (Exit::Code(33), Some(values)) => Ok(values),
        (exit, _) => Err(format!(
            "{name}: {} (log {})",
            check::describe_exit(exit),
            log.display()
        )),
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
                boot(paths, accel, mode)?,
            ));
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn parses_values_and_needs_done() {
        let out = lines("bench: start backend=native\nbench: irq_sequence 67.4 cycles\nbench: clock_read 110.0 cycles\nbench: done");
        let values = parse(&out).unwrap();
        assert_eq!(values.get("irq_sequence"), Some(&67.4));
        assert_eq!(values.get("clock_read"), Some(&110.0));
        assert_eq!(values.len(), 2);
        assert!(parse(&lines("bench: irq_sequence 1.0 cycles")).is_none());
        assert!(parse(&lines("bench: irq_sequence x cycles\nbench: done"))
            .unwrap()
            .is_empty());
    }
}
