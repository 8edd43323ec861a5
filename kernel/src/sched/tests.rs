//! Kernel tests of threads, scheduling and synchronisation.

use super::sync::{
    wait_all, wait_any, Event, Mutex, NotOwner, Semaphore, SemaphoreFull, Timer, WaitOutcome,
};
use super::*;
use crate::ktest::{ktest, TestResult};
use crate::{kassert, kassert_eq};
use core::sync::atomic::{AtomicUsize, Ordering};

const MS: u64 = 1_000_000;

#[ktest]
fn spawn_and_join_return_the_exit_code() -> TestResult {
    let thread = spawn("joinee", || 42);
    kassert!(thread.is_ok());
    let Ok(thread) = thread else { return Ok(()) };
    kassert_eq!(thread.name(), "joinee");
    kassert_eq!(thread.join(Some(1000 * MS)), Some(42));
    // Joining an exited thread returns at once.
    kassert_eq!(thread.join(Some(0)), Some(42));
    kassert_eq!(
        spawn_with(
            SpawnOptions {
                name: "bad",
                priority: 0,
                fpu: false
            },
            || 0
        )
        .err(),
        Some(SpawnError::BadPriority(0))
    );
    kassert_eq!(
        spawn_with(
            SpawnOptions {
                name: "bad",
                priority: 32,
                fpu: false
            },
            || 0
        )
        .err(),
        Some(SpawnError::BadPriority(32))
    );
    Ok(())
}

#[ktest]
fn sleep_lasts_at_least_as_asked() -> TestResult {
    for ns in [100_000, MS, 5 * MS] {
        let start = ops::clock_ns();
        sleep_ns(ns);
        let slept = ops::clock_ns() - start;
        kassert!(slept >= ns, "asked {ns} ns, slept {slept} ns");
    }
    Ok(())
}

#[ktest]
fn idle_is_tickless() -> TestResult {
    // Nothing else runs: a 30 ms sleep needs one timer interrupt (the
    // wake-up), not one per 10 ms tick.
    let before = crate::time::timer_interrupts();
    sleep_ns(30 * MS);
    let interrupts = crate::time::timer_interrupts() - before;
    kassert!(
        interrupts <= 2,
        "{interrupts} timer interrupts during an idle 30 ms sleep"
    );
    Ok(())
}

#[ktest]
fn a_busy_cpu_is_not_ticked() -> TestResult {
    // One thread computing, no timer due and nobody else to run: no timer
    // interrupt is needed (a hypervisor's periodic tick would show here).
    let before = crate::time::timer_interrupts();
    crate::time::spin_delay_ns(50 * MS);
    let interrupts = crate::time::timer_interrupts() - before;
    kassert!(
        interrupts <= 1,
        "{interrupts} timer interrupts while one thread ran for 50 ms"
    );
    Ok(())
}

#[ktest]
fn auto_reset_event_wakes_one_waiter() -> TestResult {
    let event = Event::new(false, false);
    let woken = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for _ in 0..3 {
        let (event, woken) = (event.clone(), woken.clone());
        threads.push(spawn("waiter", move || {
            if event.wait(Some(200 * MS)) {
                woken.fetch_add(1, Ordering::SeqCst);
            }
            0
        }));
    }
    sleep_ns(5 * MS);
    event.set();
    sleep_ns(5 * MS);
    kassert_eq!(woken.load(Ordering::SeqCst), 1);
    event.set();
    event.set();
    for thread in threads.into_iter().flatten() {
        thread.join(None);
    }
    kassert_eq!(woken.load(Ordering::SeqCst), 3);
    Ok(())
}

#[ktest]
fn manual_reset_event_wakes_every_waiter() -> TestResult {
    let event = Event::new(true, false);
    let woken = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .filter_map(|_| {
            let (event, woken) = (event.clone(), woken.clone());
            spawn("many", move || {
                event.wait(None);
                woken.fetch_add(1, Ordering::SeqCst);
                0
            })
            .ok()
        })
        .collect();
    kassert_eq!(threads.len(), 8);
    sleep_ns(2 * MS);
    event.set();
    for thread in &threads {
        kassert_eq!(thread.join(Some(500 * MS)), Some(0));
    }
    kassert_eq!(woken.load(Ordering::SeqCst), 8);
    // Still signalled until reset.
    kassert!(event.wait(Some(0)));
    event.reset();
    kassert!(!event.wait(Some(0)));
    Ok(())
}

#[ktest]
fn wait_times_out() -> TestResult {
    let event = Event::new(false, false);
    let start = ops::clock_ns();
    kassert!(!event.wait(Some(5 * MS)));
    kassert!(ops::clock_ns() - start >= 5 * MS);
    kassert!(!event.wait(Some(0)));
    Ok(())
}

#[ktest]
fn semaphore_counts_and_refuses_overflow() -> TestResult {
    let semaphore = Semaphore::new(2, 3);
    kassert!(semaphore.wait(Some(0)));
    kassert!(semaphore.wait(Some(0)));
    kassert!(!semaphore.wait(Some(0)));
    kassert_eq!(semaphore.release(3), Ok(()));
    kassert_eq!(semaphore.release(1), Err(SemaphoreFull));
    // Many waiters, released one by one.
    let semaphore = Semaphore::new(0, 100);
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
        .filter_map(|_| {
            let (semaphore, done) = (semaphore.clone(), done.clone());
            spawn("sem", move || {
                semaphore.wait(None);
                done.fetch_add(1, Ordering::SeqCst);
                0
            })
            .ok()
        })
        .collect();
    sleep_ns(2 * MS);
    kassert_eq!(done.load(Ordering::SeqCst), 0);
    kassert_eq!(semaphore.release(6), Ok(()));
    for thread in &threads {
        thread.join(Some(500 * MS));
    }
    kassert_eq!(done.load(Ordering::SeqCst), 6);
    Ok(())
}

#[ktest]
fn mutex_is_recursive_and_owned() -> TestResult {
    let mutex = Mutex::new();
    kassert!(mutex.lock(None));
    kassert!(mutex.lock(None));
    kassert_eq!(mutex.owner(), Some(current().id()));
    let other = mutex.clone();
    let contender = spawn("contender", move || {
        let refused = other.unlock() == Err(NotOwner);
        let got = other.lock(Some(5 * MS));
        u64::from(refused) | (u64::from(got) << 1)
    });
    let Ok(contender) = contender else {
        return Ok(());
    };
    // The contender cannot take it (we hold it twice) and cannot unlock it.
    kassert_eq!(contender.join(Some(500 * MS)), Some(1));
    kassert_eq!(mutex.unlock(), Ok(()));
    kassert_eq!(mutex.owner(), Some(current().id()));
    kassert_eq!(mutex.unlock(), Ok(()));
    kassert_eq!(mutex.owner(), None);
    kassert_eq!(mutex.unlock(), Err(NotOwner));
    Ok(())
}

#[ktest]
fn mutex_owner_inherits_a_waiters_priority() -> TestResult {
    let mutex = Mutex::new();
    let release = Event::new(false, false);
    let (m, r) = (mutex.clone(), release.clone());
    let low = spawn_with(
        SpawnOptions {
            name: "low",
            priority: 4,
            fpu: false,
        },
        move || {
            m.lock(None);
            r.wait(None);
            let _ = m.unlock();
            0
        },
    );
    let Ok(low) = low else { return Ok(()) };
    // The low thread runs when nothing above it wants the CPU (a busy
    // network thread may): wait for it, within a second.
    for _ in 0..500 {
        if mutex.owner().is_some() {
            break;
        }
        sleep_ns(2 * MS);
    }
    kassert_eq!(mutex.owner(), Some(low.id()));
    kassert_eq!(low.priority(), 4);
    let m = mutex.clone();
    let high = spawn_with(
        SpawnOptions {
            name: "high",
            priority: 24,
            fpu: false,
        },
        move || {
            let got = m.lock(Some(1000 * MS));
            let _ = m.unlock();
            u64::from(got)
        },
    );
    let Ok(high) = high else { return Ok(()) };
    for _ in 0..500 {
        if low.priority() == 24 {
            break;
        }
        sleep_ns(2 * MS);
    }
    kassert_eq!(low.priority(), 24);
    release.set();
    kassert_eq!(high.join(Some(1000 * MS)), Some(1));
    kassert_eq!(low.join(Some(1000 * MS)), Some(0));
    kassert_eq!(low.priority(), 4);
    Ok(())
}

#[ktest]
fn wait_any_and_wait_all() -> TestResult {
    let a = Event::new(true, false);
    let b = Event::new(true, false);
    kassert_eq!(
        wait_any(&[a.object(), b.object()], Some(MS)),
        WaitOutcome::TimedOut
    );
    b.set();
    kassert_eq!(
        wait_any(&[a.object(), b.object()], Some(MS)),
        WaitOutcome::Signaled(1)
    );
    kassert_eq!(
        wait_all(&[a.object(), b.object()], Some(MS)),
        WaitOutcome::TimedOut
    );
    // wait_all blocks until both are set, and never takes one alone.
    let semaphore = Semaphore::new(1, 1);
    let (a2, s2) = (a.clone(), semaphore.clone());
    let waiter = spawn("all", move || {
        match wait_all(&[a2.object(), s2.object()], Some(500 * MS)) {
            WaitOutcome::Signaled(_) => 1,
            WaitOutcome::TimedOut => 0,
        }
    });
    let Ok(waiter) = waiter else { return Ok(()) };
    sleep_ns(2 * MS);
    // The semaphore is still free: wait_all did not take it early.
    kassert!(semaphore.wait(Some(0)));
    kassert_eq!(semaphore.release(1), Ok(()));
    a.set();
    kassert_eq!(waiter.join(Some(1000 * MS)), Some(1));
    kassert!(
        !semaphore.wait(Some(0)),
        "wait_all did not take the semaphore"
    );
    // Any of: a mutex someone holds, and a thread's exit.
    let mutex = Mutex::new();
    let (m2, hold) = (mutex.clone(), Event::new(false, false));
    let hold2 = hold.clone();
    let holder = spawn("holder", move || {
        m2.lock(None);
        hold2.wait(None);
        let _ = m2.unlock();
        5
    });
    let Ok(holder) = holder else { return Ok(()) };
    sleep_ns(2 * MS);
    kassert_eq!(
        wait_any(&[mutex.object(), holder.exit_object()], Some(MS)),
        WaitOutcome::TimedOut
    );
    hold.set();
    let outcome = wait_any(&[holder.exit_object(), mutex.object()], Some(1000 * MS));
    kassert!(
        outcome != WaitOutcome::TimedOut,
        "neither the exit nor the mutex came"
    );
    if outcome == WaitOutcome::Signaled(1) {
        kassert_eq!(mutex.unlock(), Ok(()));
    }
    kassert_eq!(holder.join(Some(1000 * MS)), Some(5));
    Ok(())
}

#[ktest]
fn timer_callback_wakes_a_thread_from_interrupt_context() -> TestResult {
    let event = Event::new(false, false);
    let fired = event.clone();
    let timer = Timer::new(move || fired.set());
    let start = ops::clock_ns();
    timer.start_at(start + 3 * MS);
    kassert!(event.wait(Some(1000 * MS)), "timer never fired");
    kassert!(ops::clock_ns() - start >= 3 * MS);
    // A cancelled timer does not fire. Armed far enough ahead that a
    // vCPU descheduled between the two calls (Xen on TCG, a loaded host)
    // still cancels it in time, and waited for past its deadline.
    timer.start_at(ops::clock_ns() + 100 * MS);
    kassert!(timer.cancel());
    kassert!(!event.wait(Some(150 * MS)));
    Ok(())
}

#[ktest]
fn busy_threads_of_one_priority_are_time_sliced() -> TestResult {
    let progress = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let stop = Arc::new(AtomicBool::new(false));
    // Outrank the spinners while setting up, or the first one would take
    // the CPU before the second exists.
    let me = current();
    kassert_eq!(set_priority(&me, 30), Ok(()));
    let threads: Vec<_> = (0..2)
        .filter_map(|i| {
            let (progress, stop) = (progress.clone(), stop.clone());
            // Never yields: only preemption lets the other one run.
            spawn_with(
                SpawnOptions {
                    name: "spinner",
                    priority: 20,
                    fpu: false,
                },
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        progress[i].fetch_add(1, Ordering::Relaxed);
                    }
                    0
                },
            )
            .ok()
        })
        .collect();
    kassert_eq!(threads.len(), 2);
    // A thread above the spinners stops them after 50 ms.
    let stopper = spawn_with(
        SpawnOptions {
            name: "stopper",
            priority: 30,
            fpu: false,
        },
        {
            let stop = stop.clone();
            move || {
                sleep_ns(50 * MS);
                stop.store(true, Ordering::Relaxed);
                0
            }
        },
    );
    // Blocking here lets the spinners run.
    for thread in &threads {
        thread.join(Some(5000 * MS));
    }
    if let Ok(stopper) = stopper {
        stopper.join(Some(1000 * MS));
    }
    kassert_eq!(set_priority(&me, PRIORITY_NORMAL), Ok(()));
    kassert!(
        progress[0].load(Ordering::Relaxed) > 0 && progress[1].load(Ordering::Relaxed) > 0,
        "a spinner never ran"
    );
    for thread in &threads {
        kassert!(
            // Charged time excludes stolen time; together they cover it.
            thread.cpu_ns() + thread.steal_ns() >= MS,
            "spinner {} ran only {} ns",
            thread.id(),
            thread.cpu_ns()
        );
    }
    Ok(())
}

#[ktest]
fn fpu_state_is_per_thread() -> TestResult {
    fn set_xmm0(value: u64) {
        // SAFETY: only FPU threads call this; their XMM state is saved and
        // restored across switches.
        unsafe { core::arch::asm!("movq xmm0, {}", in(reg) value, out("xmm0") _) };
    }
    fn get_xmm0() -> u64 {
        let value: u64;
        // SAFETY: reads XMM0 of an FPU thread.
        unsafe { core::arch::asm!("movq {}, xmm0", out(reg) value) };
        value
    }
    let threads: Vec<_> = [0x1111_2222_3333_4444u64, 0x5555_6666_7777_8888]
        .into_iter()
        .filter_map(|value| {
            spawn_with(
                SpawnOptions {
                    name: "fpu",
                    priority: PRIORITY_NORMAL,
                    fpu: true,
                },
                move || {
                    set_xmm0(value);
                    for _ in 0..20 {
                        yield_now();
                        sleep_ns(100_000);
                        if get_xmm0() != value {
                            return 1;
                        }
                    }
                    0
                },
            )
            .ok()
        })
        .collect();
    kassert_eq!(threads.len(), 2);
    for thread in &threads {
        kassert_eq!(thread.join(Some(5000 * MS)), Some(0));
    }
    Ok(())
}

#[ktest]
fn thread_local_storage_is_per_thread() -> TestResult {
    let slot = tls_alloc();
    kassert!(slot.is_some());
    let Some(slot) = slot else { return Ok(()) };
    kassert!(tls_set(slot, 7));
    let other = spawn("tls", move || {
        let initial = tls_get(slot);
        tls_set(slot, 99);
        sleep_ns(MS);
        (initial as u64) << 8 | tls_get(slot) as u64
    });
    let Ok(other) = other else { return Ok(()) };
    kassert_eq!(other.join(Some(1000 * MS)), Some(99));
    kassert_eq!(tls_get(slot), 7);
    tls_free(slot);
    kassert!(!tls_set(slot, 1));
    kassert!(!tls_set(TLS_SLOTS, 1));
    Ok(())
}

#[ktest]
fn threads_are_listed_with_times() -> TestResult {
    let list = threads();
    kassert!(list
        .iter()
        .any(|t| t.name == "main" && t.state == State::Running));
    kassert!(list.iter().any(|t| t.name == "idle"));
    let main = list.iter().find(|t| t.name == "main");
    kassert!(main.is_some_and(|t| t.cpu_ns > 0 || t.switches > 0));
    Ok(())
}
