//! Synchronisation objects and waiting, on the model of the original
//! sanos (and the NT dispatcher it followed): every object is a [`KObject`]
//! that is signalled or not; a thread waits for one object, for any of
//! several, or for all of several, with an optional timeout.
//!
//! - [`Event`]: manual reset (stays signalled until reset, wakes every
//!   waiter) or auto reset (wakes one waiter and resets);
//! - [`Semaphore`]: a count with a maximum;
//! - [`Mutex`]: recursive ownership (the original's critical section),
//!   with priority inheritance: while a thread waits for a mutex, its owner
//!   runs at no less than the waiter's priority (transitively), so a
//!   low-priority owner cannot be starved by medium-priority threads while
//!   a high-priority thread waits (the priority-inversion case);
//! - thread exit (`Thread::join`), and [`Timer`]s that run a callback in
//!   interrupt context.
//!
//! A wait for all of several objects takes them all at once or none: it
//! never holds some while blocking on others. Waiters are served in FIFO
//! order. Every state change happens under the scheduler lock.

use super::{lock, Scheduler, ThreadId, TimerAction, Wait};
use crate::vmops::ops;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use pure::sched::queue::TimerKey;

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The object with this index was acquired (for a wait-all: all, 0).
    Signaled(usize),
    TimedOut,
}

enum Kind {
    Event {
        manual_reset: bool,
        signaled: bool,
    },
    Semaphore {
        count: u32,
        max: u32,
    },
    Mutex {
        owner: Option<ThreadId>,
        recursion: u32,
    },
    ThreadExit {
        exited: bool,
    },
}

struct ObjectState {
    kind: Kind,
    waiters: Vec<ThreadId>,
}

/// A waitable kernel object.
pub struct KObject {
    state: UnsafeCell<ObjectState>,
}

// SAFETY: `state` is touched only by methods that take `&mut Scheduler`,
// which exists only under the scheduler lock; no method keeps a reference
// to it past its return.
unsafe impl Sync for KObject {}
// SAFETY: as above; the state is plain data.
unsafe impl Send for KObject {}

impl KObject {
    fn new(kind: Kind) -> Arc<KObject> {
        Arc::new(KObject {
            state: UnsafeCell::new(ObjectState {
                kind,
                waiters: Vec::new(),
            }),
        })
    }

    pub(super) fn new_thread_exit() -> Arc<KObject> {
        KObject::new(Kind::ThreadExit { exited: false })
    }

    /// The state; `_lock` proves the scheduler lock is held.
    #[allow(clippy::mut_from_ref)]
    fn state(&self, _lock: &Scheduler) -> &mut ObjectState {
        // SAFETY: the scheduler lock is held (a `Scheduler` reference
        // exists only under it), and callers never hold two references to
        // one object's state at once.
        unsafe { &mut *self.state.get() }
    }

    pub(super) fn waiters(&self, s: &Scheduler) -> Vec<ThreadId> {
        self.state(s).waiters.clone()
    }

    pub(super) fn remove_waiter(&self, s: &mut Scheduler, thread: ThreadId) {
        self.state(s).waiters.retain(|&waiter| waiter != thread);
    }

    pub(super) fn mutex_owner(&self, s: &Scheduler) -> Option<ThreadId> {
        match self.state(s).kind {
            Kind::Mutex { owner, .. } => owner,
            _ => None,
        }
    }

    /// Whether `thread` could take the object now.
    fn available(&self, s: &Scheduler, thread: ThreadId) -> bool {
        match self.state(s).kind {
            Kind::Event { signaled, .. } => signaled,
            Kind::Semaphore { count, .. } => count > 0,
            Kind::Mutex { owner, .. } => owner.is_none() || owner == Some(thread),
            Kind::ThreadExit { exited } => exited,
        }
    }

    /// Takes the object for `thread` (it must be available).
    fn acquire(self: &Arc<Self>, s: &mut Scheduler, thread: ThreadId) {
        let newly_owned = match &mut self.state(s).kind {
            Kind::Event {
                manual_reset,
                signaled,
            } => {
                if !*manual_reset {
                    *signaled = false;
                }
                false
            }
            Kind::Semaphore { count, .. } => {
                *count -= 1;
                false
            }
            Kind::Mutex { owner, recursion } => {
                *recursion += 1;
                owner.replace(thread).is_none()
            }
            Kind::ThreadExit { .. } => false,
        };
        if newly_owned {
            s.thread(thread).owned.push(self.clone());
        }
    }

    /// Serves waiters in FIFO order while the object can satisfy them.
    fn wake_waiters(self: &Arc<Self>, s: &mut Scheduler) {
        for waiter in self.waiters(s) {
            let Some(wait) = s.threads.get(&waiter).and_then(|t| t.wait.as_ref()) else {
                continue;
            };
            let objects = wait.objects.clone();
            let all = wait.all;
            if all {
                if objects.iter().all(|o| o.available(s, waiter)) {
                    for object in &objects {
                        object.acquire(s, waiter);
                    }
                    s.complete_wait(waiter, WaitOutcome::Signaled(0));
                }
            } else if self.available(s, waiter) {
                let index = objects
                    .iter()
                    .position(|o| Arc::ptr_eq(o, self))
                    .unwrap_or(0);
                self.acquire(s, waiter);
                s.complete_wait(waiter, WaitOutcome::Signaled(index));
            }
            if !self.available_to_anyone(s) {
                break;
            }
        }
    }

    fn available_to_anyone(&self, s: &Scheduler) -> bool {
        match self.state(s).kind {
            Kind::Mutex { owner, .. } => owner.is_none(),
            _ => self.available(s, 0),
        }
    }

    pub(super) fn signal_exit(self: &Arc<Self>, s: &mut Scheduler) {
        if let Kind::ThreadExit { exited } = &mut self.state(s).kind {
            *exited = true;
        }
        self.wake_waiters(s);
    }

    /// Releases a mutex whose owner died.
    pub(super) fn abandon(self: &Arc<Self>, s: &mut Scheduler, thread: ThreadId) {
        if let Kind::Mutex { owner, recursion } = &mut self.state(s).kind {
            if *owner == Some(thread) {
                *owner = None;
                *recursion = 0;
            }
        }
        self.wake_waiters(s);
    }
}

/// Waits until any of `objects` can be taken (takes it), or the timeout
/// passes. No objects and a timeout is a sleep.
pub fn wait_any(objects: &[&Arc<KObject>], timeout_ns: Option<u64>) -> WaitOutcome {
    wait(objects, false, timeout_ns)
}

/// Waits until all of `objects` can be taken at once (takes them all), or
/// the timeout passes.
pub fn wait_all(objects: &[&Arc<KObject>], timeout_ns: Option<u64>) -> WaitOutcome {
    wait(objects, true, timeout_ns)
}

fn try_take(
    s: &mut Scheduler,
    objects: &[&Arc<KObject>],
    all: bool,
    me: ThreadId,
) -> Option<usize> {
    if objects.is_empty() {
        return None;
    }
    if all {
        if objects.iter().all(|o| o.available(s, me)) {
            for object in objects {
                object.acquire(s, me);
            }
            return Some(0);
        }
        return None;
    }
    let index = objects.iter().position(|o| o.available(s, me))?;
    objects[index].acquire(s, me);
    Some(index)
}

fn wait(objects: &[&Arc<KObject>], all: bool, timeout_ns: Option<u64>) -> WaitOutcome {
    let outcome = {
        let mut guard = lock();
        let s = guard.sched();
        let me = s.current;
        if let Some(index) = try_take(s, objects, all, me) {
            return WaitOutcome::Signaled(index);
        }
        if timeout_ns == Some(0) {
            return WaitOutcome::TimedOut;
        }
        let serial = s.thread(me).wait_serial + 1;
        for object in objects {
            object.state(s).waiters.push(me);
        }
        let timer = timeout_ns.map(|ns| {
            let deadline = ops::clock_ns().saturating_add(ns);
            s.timers
                .insert(deadline, TimerAction::WaitTimeout { thread: me, serial })
        });
        {
            let thread = s.thread(me);
            thread.wait_serial = serial;
            thread.wait = Some(Wait {
                objects: objects.iter().map(|o| Arc::clone(o)).collect(),
                all,
                timer,
                outcome: None,
            });
            thread.state = super::State::Blocked;
        }
        // Priority inheritance: boost the owners of the mutexes we wait on.
        for object in objects {
            if let Some(owner) = object.mutex_owner(s) {
                s.recompute_priority(owner);
            }
        }
        s.schedule();
        s.thread(me)
            .wait
            .take()
            .and_then(|w| w.outcome)
            .unwrap_or(WaitOutcome::TimedOut)
    };
    super::preempt_check();
    outcome
}

/// Runs `f` on the object under the lock, then lets a woken thread of
/// higher priority run.
fn update(object: &Arc<KObject>, f: impl FnOnce(&mut Kind) -> bool) -> bool {
    let changed = {
        let mut guard = lock();
        let s = guard.sched();
        let changed = f(&mut object.state(s).kind);
        if changed {
            object.wake_waiters(s);
        }
        changed
    };
    super::preempt_check();
    changed
}

/// An event: signalled by [`Event::set`]; manual-reset events stay
/// signalled until [`Event::reset`], auto-reset events release one waiter.
#[derive(Clone)]
pub struct Event(Arc<KObject>);

impl Event {
    pub fn new(manual_reset: bool, signaled: bool) -> Event {
        Event(KObject::new(Kind::Event {
            manual_reset,
            signaled,
        }))
    }

    pub fn set(&self) {
        update(&self.0, |kind| {
            if let Kind::Event { signaled, .. } = kind {
                *signaled = true;
            }
            true
        });
    }

    pub fn reset(&self) {
        update(&self.0, |kind| {
            if let Kind::Event { signaled, .. } = kind {
                *signaled = false;
            }
            false
        });
    }

    /// Waits for the event; false on timeout.
    pub fn wait(&self, timeout_ns: Option<u64>) -> bool {
        wait_any(&[&self.0], timeout_ns) != WaitOutcome::TimedOut
    }

    pub fn object(&self) -> &Arc<KObject> {
        &self.0
    }

    /// Whether `a` and `b` are handles to one event.
    pub fn same(a: &Event, b: &Event) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

/// Why a semaphore release was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct SemaphoreFull;

/// A counting semaphore.
#[derive(Clone)]
pub struct Semaphore(Arc<KObject>);

impl Semaphore {
    pub fn new(count: u32, max: u32) -> Semaphore {
        Semaphore(KObject::new(Kind::Semaphore {
            count: count.min(max),
            max,
        }))
    }

    /// Adds `n` to the count; refused (count unchanged) past the maximum.
    pub fn release(&self, n: u32) -> Result<(), SemaphoreFull> {
        let mut refused = false;
        update(&self.0, |kind| match kind {
            Kind::Semaphore { count, max } if count.checked_add(n).is_some_and(|c| c <= *max) => {
                *count += n;
                true
            }
            _ => {
                refused = true;
                false
            }
        });
        if refused {
            Err(SemaphoreFull)
        } else {
            Ok(())
        }
    }

    /// Takes one unit; false on timeout.
    pub fn wait(&self, timeout_ns: Option<u64>) -> bool {
        wait_any(&[&self.0], timeout_ns) != WaitOutcome::TimedOut
    }

    pub fn object(&self) -> &Arc<KObject> {
        &self.0
    }
}

/// Why a mutex unlock was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct NotOwner;

/// A recursive mutex with priority inheritance (the original sanos
/// critical section).
#[derive(Clone)]
pub struct Mutex(Arc<KObject>);

impl Default for Mutex {
    fn default() -> Self {
        Self::new()
    }
}

impl Mutex {
    pub fn new() -> Mutex {
        Mutex(KObject::new(Kind::Mutex {
            owner: None,
            recursion: 0,
        }))
    }

    /// Takes the mutex (again, if this thread owns it); false on timeout.
    pub fn lock(&self, timeout_ns: Option<u64>) -> bool {
        wait_any(&[&self.0], timeout_ns) != WaitOutcome::TimedOut
    }

    /// Releases one level of ownership; refused if this thread is not the
    /// owner.
    pub fn unlock(&self) -> Result<(), NotOwner> {
        let result = {
            let mut guard = lock();
            let s = guard.sched();
            let me = s.current;
            let released = match &mut self.0.state(s).kind {
                Kind::Mutex { owner, recursion } if *owner == Some(me) => {
                    *recursion -= 1;
                    if *recursion == 0 {
                        *owner = None;
                        true
                    } else {
                        false
                    }
                }
                _ => return Err(NotOwner),
            };
            if released {
                s.thread(me).owned.retain(|o| !Arc::ptr_eq(o, &self.0));
                self.0.wake_waiters(s);
                s.recompute_priority(me);
            }
            Ok(())
        };
        super::preempt_check();
        result
    }

    /// The owning thread, if any.
    pub fn owner(&self) -> Option<ThreadId> {
        let mut guard = lock();
        let s = guard.sched();
        self.0.mutex_owner(s)
    }

    pub fn object(&self) -> &Arc<KObject> {
        &self.0
    }
}

/// A timer's callback and its pending firing.
pub struct TimerShared {
    callback: Box<dyn Fn() + Send + Sync>,
    key: UnsafeCell<Option<TimerKey>>,
}

// SAFETY: `key` is only touched under the scheduler lock; the callback is
// Send + Sync.
unsafe impl Sync for TimerShared {}
// SAFETY: as above.
unsafe impl Send for TimerShared {}

impl TimerShared {
    pub(super) fn fire(&self) {
        (self.callback)();
    }
}

/// A one-shot timer whose callback runs in interrupt context (keep it
/// short: signal an event, release a semaphore).
pub struct Timer(Arc<TimerShared>);

impl Timer {
    pub fn new(callback: impl Fn() + Send + Sync + 'static) -> Timer {
        Timer(Arc::new(TimerShared {
            callback: Box::new(callback),
            key: UnsafeCell::new(None),
        }))
    }

    /// Fires the callback at clock time `deadline_ns` (replacing an earlier
    /// start that has not fired).
    pub fn start_at(&self, deadline_ns: u64) {
        let mut guard = lock();
        let s = guard.sched();
        // SAFETY: under the scheduler lock.
        let key = unsafe { &mut *self.0.key.get() };
        if let Some(old) = key.take() {
            s.timers.cancel(old);
        }
        *key = Some(
            s.timers
                .insert(deadline_ns, TimerAction::Callback(self.0.clone())),
        );
        let now = ops::clock_ns();
        s.program_timer(now);
    }

    /// Cancels a pending firing; false if there was none (or it fired).
    pub fn cancel(&self) -> bool {
        let mut guard = lock();
        let s = guard.sched();
        // SAFETY: under the scheduler lock.
        let key = unsafe { &mut *self.0.key.get() };
        key.take().and_then(|k| s.timers.cancel(k)).is_some()
    }
}
