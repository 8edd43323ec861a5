//! Futexes (`futex(2)`): the wait queues user-space locks, condition
//! variables and `pthread_join` are built on.
//!
//! Waiters are kept per user address in one table (one program, one
//! address space: private and shared futexes are the same). A wait checks
//! the word and queues itself under the table's lock, so a wake that
//! follows the caller's store cannot be missed; each waiter sleeps on an
//! event of its own, set by the waker.

use super::uaccess;
use crate::sched::sync::Event;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use pure::user::linux::Errno;

struct Waiter {
    bitset: u32,
    event: Event,
    /// The address it waits on now (a requeue moves it).
    key: Arc<AtomicU64>,
}

static TABLE: spin::Mutex<BTreeMap<u64, Vec<Waiter>>> = spin::Mutex::new(BTreeMap::new());

fn with_table<R>(f: impl FnOnce(&mut BTreeMap<u64, Vec<Waiter>>) -> R) -> R {
    crate::arch::cpu::without_interrupts(|| f(&mut TABLE.lock()))
}

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;
const BITSET_MATCH_ANY: u32 = u32::MAX;

/// `futex(uaddr, op, val, timeout_or_val2, uaddr2, val3)`.
pub fn futex(
    address: u64,
    op: u64,
    value: u64,
    timeout: u64,
    address2: u64,
    value3: u64,
) -> Result<u64, Errno> {
    if !address.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    let command = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    if realtime && command != FUTEX_WAIT_BITSET && command != FUTEX_WAIT {
        return Err(Errno::ENOSYS);
    }
    match command {
        FUTEX_WAIT => {
            let deadline = relative_deadline(timeout)?;
            wait(address, value as u32, BITSET_MATCH_ANY, deadline)
        }
        FUTEX_WAIT_BITSET => {
            let bitset = value3 as u32;
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            let deadline = absolute_deadline(timeout, realtime)?;
            wait(address, value as u32, bitset, deadline)
        }
        FUTEX_WAKE => Ok(wake(address, value as u32, BITSET_MATCH_ANY)),
        FUTEX_WAKE_BITSET => {
            let bitset = value3 as u32;
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            Ok(wake(address, value as u32, bitset))
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            // `timeout` carries val2: how many to move.
            requeue(
                address,
                address2,
                value as u32,
                timeout as u32,
                (command == FUTEX_CMP_REQUEUE).then_some(value3 as u32),
            )
        }
        FUTEX_WAKE_OP => {
            log_once_wake_op();
            Err(Errno::ENOSYS)
        }
        _ => Err(Errno::ENOSYS),
    }
}

fn log_once_wake_op() {
    static SAID: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, core::sync::atomic::Ordering::Relaxed) {
        log::warn!("user: futex FUTEX_WAKE_OP is not implemented: ENOSYS");
    }
}

/// A relative `struct timespec` (FUTEX_WAIT) as a deadline on the
/// monotonic clock; `None` for no timeout.
fn relative_deadline(timeout: u64) -> Result<Option<u64>, Errno> {
    if timeout == 0 {
        return Ok(None);
    }
    let ns = super::syscall::read_timespec(timeout)?;
    Ok(Some(crate::time::since_boot_ns().saturating_add(ns)))
}

/// An absolute `struct timespec` (FUTEX_WAIT_BITSET) on CLOCK_MONOTONIC,
/// or CLOCK_REALTIME with FUTEX_CLOCK_REALTIME.
fn absolute_deadline(timeout: u64, realtime: bool) -> Result<Option<u64>, Errno> {
    if timeout == 0 {
        return Ok(None);
    }
    let at = super::syscall::read_timespec(timeout)?;
    if realtime {
        let now_wall = crate::time::wall_clock_ns().unwrap_or(0);
        return Ok(Some(
            crate::time::since_boot_ns().saturating_add(at.saturating_sub(now_wall)),
        ));
    }
    Ok(Some(at))
}

fn wait(address: u64, expected: u32, bitset: u32, deadline: Option<u64>) -> Result<u64, Errno> {
    let event = Event::new(true, false);
    let key = Arc::new(AtomicU64::new(address));
    // Read the word and queue under the table's lock: a waker that stored
    // a new value and then woke cannot slip in between.
    with_table(|table| {
        let current: u32 = uaccess::read(address)?;
        if current != expected {
            return Err(Errno::EAGAIN);
        }
        table.entry(address).or_default().push(Waiter {
            bitset,
            event: event.clone(),
            key: key.clone(),
        });
        Ok(())
    })?;
    let timeout = deadline.map(|at| at.saturating_sub(crate::time::since_boot_ns()));
    let woken = event.wait(timeout);
    if woken {
        return Ok(0);
    }
    // Timed out: leave the queue (wherever a requeue put us), unless a
    // waker took us meanwhile. The key is read under the table's lock,
    // which requeue holds while it moves waiters.
    let removed = with_table(|table| {
        let address = key.load(Ordering::Relaxed);
        let Some(queue) = table.get_mut(&address) else {
            return false;
        };
        let before = queue.len();
        queue.retain(|w| !Event::same(&w.event, &event));
        let removed = queue.len() != before;
        if queue.is_empty() {
            table.remove(&address);
        }
        removed
    });
    if removed {
        Err(Errno::ETIMEDOUT)
    } else {
        Ok(0)
    }
}

/// Wakes up to `count` waiters on `address` whose bitset meets `bitset`.
pub fn wake(address: u64, count: u32, bitset: u32) -> u64 {
    let woken = with_table(|table| {
        let Some(queue) = table.get_mut(&address) else {
            return Vec::new();
        };
        let mut woken = Vec::new();
        let mut i = 0;
        while i < queue.len() && woken.len() < count as usize {
            if queue[i].bitset & bitset != 0 {
                woken.push(queue.remove(i).event);
            } else {
                i += 1;
            }
        }
        if queue.is_empty() {
            table.remove(&address);
        }
        woken
    });
    for event in &woken {
        event.set();
    }
    woken.len() as u64
}

fn requeue(
    address: u64,
    address2: u64,
    wake_count: u32,
    move_count: u32,
    expected: Option<u32>,
) -> Result<u64, Errno> {
    if !address2.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let woken = with_table(|table| {
        if let Some(expected) = expected {
            let current: u32 = uaccess::read(address)?;
            if current != expected {
                return Err(Errno::EAGAIN);
            }
        }
        let mut queue = table.remove(&address).unwrap_or_default();
        let wake_now = queue.len().min(wake_count as usize);
        let woken: Vec<Event> = queue.drain(..wake_now).map(|w| w.event).collect();
        let moving = queue.len().min(move_count as usize);
        let moved: Vec<Waiter> = queue.drain(..moving).collect();
        if !queue.is_empty() {
            table.insert(address, queue);
        }
        let moved_count = moved.len();
        for waiter in &moved {
            waiter.key.store(address2, Ordering::Relaxed);
        }
        if !moved.is_empty() {
            table.entry(address2).or_default().extend(moved);
        }
        Ok((woken, moved_count))
    })?;
    let (woken, moved) = woken;
    for event in &woken {
        event.set();
    }
    // FUTEX_CMP_REQUEUE answers woken + moved; FUTEX_REQUEUE the woken.
    Ok(if expected.is_some() {
        woken.len() + moved
    } else {
        woken.len()
    } as u64)
}

/// Wakes every waiter (the program is ending).
pub fn wake_all() {
    let queues = with_table(core::mem::take);
    for waiter in queues.into_values().flatten() {
        waiter.event.set();
    }
}
