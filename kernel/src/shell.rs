//! A serial-console shell for people: `help`, `threads`, `mem`, `uptime`,
//! `date`, `vmops`, `devices`, `net`, `ping`, `host`, `reboot`,
//! `poweroff`. It runs as a thread woken by the UART's
//! receive interrupt (through the I/O APIC; where there is none it polls
//! every 20 ms), echoes what is typed, and supports backspace.

use crate::backend::{self, ShutdownReason};
use crate::sched;
use crate::vmops::ops;
use alloc::string::String;
use core::fmt::Write;

const PROMPT: &str = "sanos> ";
const POLL_NS: u64 = 20_000_000;
const MAX_LINE: usize = 256;

const COMMANDS: [(&str, &str); 12] = [
    ("help", "list the commands"),
    (
        "threads",
        "threads with state, priority, CPU and stolen time",
    ),
    ("mem", "physical memory and frames"),
    ("uptime", "time since boot"),
    ("date", "the wall clock (UTC) and where it comes from"),
    ("vmops", "platform, backend, patch mode and sites"),
    (
        "devices",
        "PCI functions and Xen devices, and their drivers",
    ),
    ("net", "the network interface: address and counters"),
    ("ping", "ping HOST [COUNT]: ICMP echo, one a second"),
    ("host", "host NAME: its IPv4 addresses, from DNS"),
    ("reboot", "restart the machine"),
    ("poweroff", "power the machine off"),
];

/// Runs one command line, writing its output to `out`. Returns the
/// shutdown the command asks for, if any (the caller performs it).
pub fn execute(line: &str, out: &mut dyn Write) -> Option<ShutdownReason> {
    let mut words = line.split_whitespace();
    let command = words.next()?;
    let _ = match command {
        "help" => {
            for (name, what) in COMMANDS {
                let _ = writeln!(out, "  {name:<9} {what}");
            }
            Ok(())
        }
        "threads" => threads(out),
        "devices" => devices(out),
        "net" => net(out),
        "ping" => ping(words.next(), words.next(), out),
        "host" => host(words.next(), out),
        "date" => date(out),
        "mem" => {
            let (free, total) = crate::mm::frames::counts();
            writeln!(
                out,
                "  frames: {free} free of {total} ({} MiB free of {} MiB)",
                (free as u64 * crate::mm::PAGE_SIZE) >> 20,
                (total as u64 * crate::mm::PAGE_SIZE) >> 20
            )
        }
        "uptime" => {
            let ns = ops::clock_ns();
            writeln!(
                out,
                "  up {}.{:03} s",
                ns / 1_000_000_000,
                ns / 1_000_000 % 1000
            )
        }
        "vmops" => match backend::chosen() {
            Some(chosen) => writeln!(
                out,
                "  platform {} ({}), backend {}, mode {}, {} sites: {}",
                chosen.platform.name(),
                chosen.platform,
                chosen.backend.name(),
                chosen.mode.name(),
                chosen.report.sites,
                chosen.report
            )
            .and_then(|()| backend::describe(out)),
            None => writeln!(out, "  vmops not initialised"),
        },
        "reboot" => return Some(ShutdownReason::Reboot),
        "poweroff" => return Some(ShutdownReason::PowerOff),
        other => writeln!(
            out,
            "  unknown command '{other}'; 'help' lists the commands"
        ),
    };
    None
}

fn date(out: &mut dyn Write) -> core::fmt::Result {
    match crate::time::wall_clock() {
        Some((ns, source)) => writeln!(
            out,
            "  {} ({})",
            pure::time::civil::Rfc3339(ns),
            match source {
                crate::time::WallSource::Ntp => "set by NTP",
                crate::time::WallSource::Platform => "the platform's clock",
            }
        ),
        None => writeln!(out, "  no wall clock (give ntp=<host> on the command line)"),
    }
}

fn host(name: Option<&str>, out: &mut dyn Write) -> core::fmt::Result {
    let Some(name) = name else {
        return writeln!(out, "  usage: host NAME");
    };
    match crate::net::dns::resolve(name) {
        Ok(addresses) => {
            write!(out, "  host: {name} is")?;
            for address in addresses {
                write!(out, " {address}")?;
            }
            writeln!(out)
        }
        Err(error) => writeln!(out, "  host: {name}: {error}"),
    }
}

fn ping(target: Option<&str>, count: Option<&str>, out: &mut dyn Write) -> core::fmt::Result {
    let Some(target) = target else {
        return writeln!(
            out,
            "  usage: ping HOST [COUNT] (an IPv4 address or a name)"
        );
    };
    let count = match count.map(str::parse::<u16>) {
        None => 3,
        Some(Ok(count)) if (1..=100).contains(&count) => count,
        Some(_) => return writeln!(out, "  ping: COUNT is 1 to 100"),
    };
    let target = match crate::net::dns::resolve(target) {
        Ok(addresses) if !addresses.is_empty() => addresses[0],
        Ok(_) => return writeln!(out, "  ping: {target} has no IPv4 address"),
        Err(error) => return writeln!(out, "  ping: {target}: {error}"),
    };
    let Some(rtts) = crate::net::ping(target, count) else {
        return writeln!(out, "  ping: no network interface");
    };
    for (seq, rtt) in rtts.iter().enumerate() {
        match rtt {
            Some(us) => writeln!(
                out,
                "  ping: reply from {target} seq {seq}: {}.{:03} ms",
                us / 1000,
                us % 1000
            )?,
            None => writeln!(out, "  ping: no reply from {target} seq {seq}")?,
        }
    }
    Ok(())
}

fn net(out: &mut dyn Write) -> core::fmt::Result {
    let Some(status) = crate::net::status() else {
        return writeln!(out, "  no network interface");
    };
    let m = status.mac;
    let c = status.counters;
    let address = status
        .address
        .map_or(alloc::string::String::from("none yet"), |a| {
            alloc::format!("{a}")
        });
    writeln!(
        out,
        "  {} {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} address {address}",
        status.name, m[0], m[1], m[2], m[3], m[4], m[5]
    )?;
    writeln!(
        out,
        "  rx {} packets {} bytes, {} dropped, {} errors",
        c.rx_packets, c.rx_bytes, c.rx_drops, c.rx_errors
    )?;
    writeln!(
        out,
        "  tx {} packets {} bytes, {} dropped, {} errors, {} refused by a full ring",
        c.tx_packets, c.tx_bytes, c.tx_drops, c.tx_errors, status.tx_refused
    )?;
    writeln!(
        out,
        "  {} sockets; {} connection requests dropped while the listener was full",
        status.sockets, status.syn_dropped
    )?;
    let (sent, dropped) = crate::net::syslog::counters();
    writeln!(out, "  syslog: {sent} messages sent, {dropped} dropped")
}

fn devices(out: &mut dyn Write) -> core::fmt::Result {
    let Some(found) = crate::dev::found() else {
        return writeln!(out, "  devices not probed yet");
    };
    for function in &found.pci {
        writeln!(out, "  {function}")?;
    }
    for device in &found.xen {
        writeln!(out, "  {device}")?;
    }
    for line in &found.bindings {
        writeln!(out, "  {line}")?;
    }
    if found.bindings.is_empty() {
        writeln!(out, "  no devices")?;
    }
    Ok(())
}

fn threads(out: &mut dyn Write) -> core::fmt::Result {
    writeln!(
        out,
        "  {:>4} {:<12} {:<8} {:>4} {:>12} {:>10} {:>9}",
        "id", "name", "state", "prio", "cpu us", "steal us", "switches"
    )?;
    for t in sched::threads() {
        let priority = if t.priority == t.base_priority {
            alloc::format!("{}", t.priority)
        } else {
            alloc::format!("{}^", t.priority)
        };
        writeln!(
            out,
            "  {:>4} {:<12} {:<8} {:>4} {:>12} {:>10} {:>9}",
            t.id,
            t.name,
            t.state.name(),
            priority,
            t.cpu_ns / 1000,
            t.steal_ns / 1000,
            t.switches
        )?;
    }
    Ok(())
}

/// The console as a `Write` for command output.
struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        crate::kprint!("{s}");
        Ok(())
    }
}

/// The shell thread's body.
pub fn run() -> u64 {
    crate::kprint!("sanos shell: 'help' lists the commands\n{PROMPT}");
    let mut line = String::new();
    loop {
        while let Some(byte) = crate::console::read_byte() {
            match byte {
                b'\r' | b'\n' => {
                    crate::kprint!("\n");
                    if let Some(reason) = execute(&line, &mut Console) {
                        crate::kprintln!("  {reason:?}");
                        crate::dev::shutdown();
                        ops::shutdown(reason.encode());
                        // Devices act asynchronously: give it a moment.
                        sched::sleep_ns(500_000_000);
                        crate::kprintln!("  the platform did not {reason:?}");
                    }
                    line.clear();
                    crate::kprint!("{PROMPT}");
                }
                0x08 | 0x7f if line.pop().is_some() => crate::kprint!("\x08 \x08"),
                byte if (0x20..0x7f).contains(&byte) && line.len() < MAX_LINE => {
                    line.push(byte as char);
                    crate::kprint!("{}", byte as char);
                }
                _ => {}
            }
        }
        crate::console::wait_input(POLL_NS);
    }
}

mod tests {
    use super::*;
    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    fn run_command(line: &str) -> (String, Option<ShutdownReason>) {
        let mut out = String::new();
        let reason = execute(line, &mut out);
        (out, reason)
    }

    #[ktest]
    fn shell_commands_answer() -> TestResult {
        let (help, _) = run_command("help");
        for (name, _) in COMMANDS {
            kassert!(help.contains(name), "help does not list {name}");
        }
        let (threads, _) = run_command("threads");
        kassert!(
            threads.contains("main") && threads.contains("idle"),
            "threads: {threads}"
        );
        kassert!(run_command("mem").0.contains("frames:"));
        kassert!(run_command("uptime").0.contains("up "));
        kassert!(run_command(" vmops ").0.contains("backend"));
        let net = run_command("net").0;
        kassert!(
            net.contains("no network interface") || net.contains("rx "),
            "net: {net}"
        );
        let devices = run_command("devices").0;
        match crate::dev::found() {
            Some(found) if !found.bindings.is_empty() => {
                for binding in &found.bindings {
                    kassert!(devices.contains(binding.as_str()), "devices: {devices}");
                }
            }
            _ => kassert!(
                devices.contains("no devices") || devices.contains("not probed"),
                "devices: {devices}"
            ),
        }
        kassert_eq!(run_command("").0, "");
        Ok(())
    }

    #[ktest]
    fn shell_refuses_unknown_commands_and_maps_shutdowns() -> TestResult {
        let (out, reason) = run_command("format c:");
        kassert_eq!(
            out,
            "  unknown command 'format'; 'help' lists the commands\n"
        );
        kassert_eq!(reason, None);
        kassert_eq!(run_command("reboot").1, Some(ShutdownReason::Reboot));
        kassert_eq!(run_command("poweroff").1, Some(ShutdownReason::PowerOff));
        Ok(())
    }
}
