//! In-kernel micro-benchmarks (`bench` on the command line), which
//! `make bench` boots in every vmops mode and tabulates. They measure, in
//! TSC cycles per operation (best of several rounds, interrupts off):
//!
//! - `irq_sequence`: `save_flags; irq_disable; restore_flags` through the
//!   vmops sites, as the kernel runs it;
//! - `clock_read`: one `clock_ns` op;
//! - `raw_irq_sequence` and `raw_rdtsc`: the bare instructions, for
//!   reference.
//!
//! and, with threads running, in nanoseconds of the platform clock:
//!
//! - `ctxswitch`: two threads ping-ponging through a pair of auto-reset
//!   events; the time per switch (half a round trip);
//! - `sleep_<N>us_late_median` and `..._p99`: how much later than asked a
//!   sleep of N us returns.
//!
//! Each line is `bench: <name> <value> <unit>`; the run ends with
//! `bench: done`. Numbers are measurements, never checked against limits.

use crate::arch::cpu;
use crate::vmops::ops;
use core::hint::black_box;

const ITERATIONS: u64 = 100_000;
const ROUNDS: usize = 5;

/// Best-of-`ROUNDS` cycles per iteration of `body` run `ITERATIONS` times.
fn cycles_per_iteration(mut body: impl FnMut(u64)) -> f64 {
    let mut best = u64::MAX;
    for _ in 0..ROUNDS {
        let start = cpu::rdtsc();
        body(ITERATIONS);
        best = best.min(cpu::rdtsc() - start);
    }
    best as f64 / ITERATIONS as f64
}

fn report(name: &str, cycles: f64) {
    let tenths = (cycles * 10.0) as u64;
    crate::kprintln!("bench: {name} {}.{} cycles", tenths / 10, tenths % 10);
}

/// Runs every benchmark and prints the results.
pub fn run() {
    let chosen = crate::backend::chosen();
    crate::kprintln!(
        "bench: start backend={} mode={} iterations={ITERATIONS} rounds={ROUNDS}",
        chosen.map_or("?", |c| c.backend.name()),
        chosen.map_or("?", |c| c.mode.name()),
    );
    cpu::without_interrupts(|| {
        let empty = cycles_per_iteration(|n| {
            for i in 0..n {
                black_box(i);
            }
        });
        let irq = cycles_per_iteration(|n| {
            for i in 0..n {
                let flags = ops::save_flags();
                ops::irq_disable();
                ops::restore_flags(flags);
                black_box(i);
            }
        });
        // Interrupts are off already: each iteration is the bare op (an
        // inline store or `cli` where patched, a call otherwise).
        let disable = cycles_per_iteration(|n| {
            for i in 0..n {
                ops::irq_disable();
                black_box(i);
            }
        });
        let clock = cycles_per_iteration(|n| {
            for _ in 0..n {
                black_box(ops::clock_ns());
            }
        });
        // A Xen PV kernel runs in ring 3, where `cli` faults: no reference.
        let raw_irq = (!crate::backend::hooks().deprivileged).then(|| {
            cycles_per_iteration(|n| {
                // SAFETY: the reference loop only runs the instructions it
                // names and restores the interrupt flag each round
                // (interrupts are off).
                unsafe { hv::native::hv_native_bench_irq_sequence(n) }
            })
        });
        // SAFETY: reading the TSC has no side effects.
        let raw_rdtsc = cycles_per_iteration(|n| unsafe { hv::native::hv_native_bench_rdtsc(n) });
        report("loop_overhead", empty);
        report("irq_sequence", irq);
        report("irq_disable", disable);
        report("clock_read", clock);
        if let Some(raw_irq) = raw_irq {
            report("raw_irq_sequence", raw_irq);
        }
        report("raw_rdtsc", raw_rdtsc);
    });
    sched_benchmarks();
    crate::kprintln!("bench: done");
}

fn report_ns(name: &str, ns: u64) {
    crate::kprintln!("bench: {name} {ns} ns");
}

fn sched_benchmarks() {
    use crate::sched::{self, sync::Event};
    use alloc::vec::Vec;

    const ROUND_TRIPS: u64 = 10_000;
    let (ping, pong) = (Event::new(false, false), Event::new(false, false));
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let partner = sched::spawn("pong", move || {
        for _ in 0..ROUND_TRIPS {
            ping2.wait(None);
            pong2.set();
        }
        0
    });
    let mut best = u64::MAX;
    if let Ok(partner) = partner {
        let start = ops::clock_ns();
        for _ in 0..ROUND_TRIPS {
            ping.set();
            pong.wait(None);
        }
        best = best.min((ops::clock_ns() - start) / (2 * ROUND_TRIPS));
        partner.join(None);
    }
    report_ns("ctxswitch", best);

    for (asked_us, samples) in [(100u64, 200usize), (1000, 100), (10_000, 30)] {
        let asked = asked_us * 1000;
        let mut late: Vec<u64> = (0..samples)
            .map(|_| {
                let start = ops::clock_ns();
                sched::sleep_ns(asked);
                (ops::clock_ns() - start).saturating_sub(asked)
            })
            .collect();
        late.sort_unstable();
        report_ns(
            &alloc::format!("sleep_{asked_us}us_late_median"),
            late[late.len() / 2],
        );
        report_ns(
            &alloc::format!("sleep_{asked_us}us_late_p99"),
            late[(late.len() * 99 / 100).min(late.len() - 1)],
        );
    }
}
