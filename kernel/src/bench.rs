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
//! Each line is `bench: <name> <cycles> cycles`; the run ends with
//! `bench: done`. Numbers are measurements, never checked against limits.

use crate::arch::cpu;
use crate::platform::ops;
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
    let chosen = crate::platform::chosen();
    crate::kprintln!(
        "bench: start backend={} mode={} iterations={ITERATIONS} rounds={ROUNDS}",
        chosen.map_or("?", |c| c.backend.name),
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
        let clock = cycles_per_iteration(|n| {
            for _ in 0..n {
                black_box(ops::clock_ns());
            }
        });
        // SAFETY: the reference loops only run the instructions they name
        // and restore the interrupt flag each round (interrupts are off).
        let raw_irq =
            cycles_per_iteration(|n| unsafe { hv::native::hv_native_bench_irq_sequence(n) });
        // SAFETY: reading the TSC has no side effects.
        let raw_rdtsc = cycles_per_iteration(|n| unsafe { hv::native::hv_native_bench_rdtsc(n) });
        report("loop_overhead", empty);
        report("irq_sequence", irq);
        report("clock_read", clock);
        report("raw_irq_sequence", raw_irq);
        report("raw_rdtsc", raw_rdtsc);
    });
    crate::kprintln!("bench: done");
}
