//! Threads and the scheduler: the services the original sanos offered its
//! applications (`beginthread`, `wait`/`waitany`/`waitall`, events,
//! semaphores, critical sections, `sleep`, thread-local storage).
//!
//! - Preemptive, priority-based (0 lowest .. 31 highest), round-robin
//!   within a priority with a [`SLICE_NS`] time slice.
//! - Tickless: after every scheduling decision the one-shot timer (vmops
//!   `set_timer`) is armed for the earliest of the next timer and the end
//!   of the slice — and only if another thread of the same priority is
//!   waiting for the CPU. An idle CPU with no timers arms nothing and sleeps
//!   in the vmops `safe_halt`.
//! - Virtual time: a thread is charged the time it ran less the time the
//!   hypervisor stole meanwhile (vmops `steal_ns`: KVM's steal-time MSR,
//!   Xen's runstate area); both are kept per thread.
//! - One lock (interrupts masked while held) guards all scheduler state;
//!   it is handed over across a context switch: the thread that resumes
//!   releases the lock its predecessor took. One CPU today: `current`,
//!   the run queue and the idle thread are fields of the one scheduler,
//!   which is what becomes per-CPU (reached through GS) for SMP; GS is not
//!   used yet.
//!
//! Synchronisation objects and waits are in [`sync`].

mod switch;
pub mod sync;
mod tests;

use crate::mm::KernelStack;
use crate::vmops::ops;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use pure::sched::queue::{RunQueue, TimerKey, TimerQueue, PRIORITY_LEVELS};
use switch::FpuArea;
use sync::{KObject, WaitOutcome};

pub type ThreadId = u64;

/// Lowest and highest thread priority, and the default.
pub const PRIORITY_LOWEST: u8 = 1;
pub const PRIORITY_HIGHEST: u8 = (PRIORITY_LEVELS - 1) as u8;
pub const PRIORITY_NORMAL: u8 = 16;
/// The idle thread's priority: below every real thread.
const PRIORITY_IDLE: u8 = 0;
/// Round-robin time slice among threads of one priority.
pub const SLICE_NS: u64 = 10_000_000;
/// Kernel stack of a new thread, in pages.
const STACK_PAGES: u64 = 16;
/// Stacks of ended threads kept for new ones (the rest are freed).
const STACK_CACHE: usize = 16;
/// Thread-local storage slots per thread.
pub const TLS_SLOTS: usize = 64;

/// What other code may know of a thread; it outlives the thread.
pub struct ThreadShared {
    pub id: ThreadId,
    pub name: String,
    /// Signalled when the thread exits (join waits on it).
    exit: Arc<KObject>,
    exit_code: AtomicU64,
    cpu_ns: AtomicU64,
    steal_ns: AtomicU64,
    switches: AtomicU64,
    priority: AtomicU8,
    base_priority: AtomicU8,
}

/// A handle to a thread.
#[derive(Clone)]
pub struct Thread(Arc<ThreadShared>);

impl Thread {
    pub fn id(&self) -> ThreadId {
        self.0.id
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Waits for the thread to exit and returns its exit code; `None` on
    /// timeout.
    pub fn join(&self, timeout_ns: Option<u64>) -> Option<u64> {
        match sync::wait_any(&[&self.0.exit], timeout_ns) {
            WaitOutcome::Signaled(_) => Some(self.0.exit_code.load(Ordering::Acquire)),
            WaitOutcome::TimedOut => None,
        }
    }

    /// The object signalled at exit, for `wait_any`/`wait_all`.
    pub fn exit_object(&self) -> &Arc<KObject> {
        &self.0.exit
    }

    /// Nanoseconds the thread ran, not counting stolen time.
    pub fn cpu_ns(&self) -> u64 {
        self.0.cpu_ns.load(Ordering::Relaxed)
    }

    /// Nanoseconds stolen by the hypervisor while the thread was running.
    pub fn steal_ns(&self) -> u64 {
        self.0.steal_ns.load(Ordering::Relaxed)
    }

    pub fn priority(&self) -> u8 {
        self.0.priority.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Ready,
    Running,
    Blocked,
    Dead,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Running => "running",
            State::Blocked => "blocked",
            State::Dead => "dead",
        }
    }
}

/// A thread's wait in progress.
struct Wait {
    objects: Vec<Arc<KObject>>,
    all: bool,
    timer: Option<TimerKey>,
    outcome: Option<WaitOutcome>,
}

/// What the scheduler keeps per thread (boxed: the context switch holds a
/// pointer to `rsp` across the switch).
struct ThreadSched {
    shared: Arc<ThreadShared>,
    state: State,
    base_priority: u8,
    priority: u8,
    rsp: u64,
    /// The thread's stack, freed with the thread (`None` for the boot
    /// thread, which runs on the boot stack).
    stack: Option<KernelStack>,
    fpu: Option<Box<FpuArea>>,
    tls: [usize; TLS_SLOTS],
    wait: Option<Wait>,
    wait_serial: u64,
    switched_in_at: u64,
    steal_at_switch_in: u64,
    /// Mutexes this thread owns (for priority inheritance).
    owned: Vec<Arc<KObject>>,
    entry: Option<Box<dyn FnOnce() -> u64 + Send>>,
    /// Set once the thread runs user code (`crate::user`).
    user: Option<UserContext>,
}

/// What a thread that runs user code needs restored whenever it is
/// switched to: its kernel stack for entries from user mode (which
/// [`crate::user::entry::switch_in`] installs) and its FS base.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserContext {
    pub fs_base: u64,
    /// `set_tid_address` / `CLONE_CHILD_CLEARTID`: the word zeroed and
    /// woken when the thread exits (what `pthread_join` waits on).
    pub clear_child_tid: u64,
}

enum TimerAction {
    /// End thread `id`'s wait number `serial` with a timeout.
    WaitTimeout { thread: ThreadId, serial: u64 },
    /// Run a timer's callback (in interrupt context).
    Callback(Arc<sync::TimerShared>),
}

pub(crate) struct Scheduler {
    threads: BTreeMap<ThreadId, Box<ThreadSched>>,
    ready: RunQueue<ThreadId>,
    timers: TimerQueue<TimerAction>,
    current: ThreadId,
    idle: ThreadId,
    need_resched: bool,
    slice_end: u64,
    next_id: ThreadId,
    /// Dead threads whose stacks can go once another thread runs.
    dead: Vec<ThreadId>,
    /// Stacks of reaped threads, for the next ones (at most STACK_CACHE).
    stacks: Vec<KernelStack>,
    tls_allocated: u64,
}

/// The scheduler lock: a spin lock that masks interrupts while held. It
/// is not a scoped guard on purpose: the lock is handed from the thread
/// that switches away to the thread that resumes, which releases it.
struct SchedLock {
    locked: AtomicBool,
    state: UnsafeCell<Option<Scheduler>>,
}

// SAFETY: `state` is only reached through a `SchedGuard`, which exists
// only while `locked` is held (interrupts masked, so not even an interrupt
// handler on this CPU can take it meanwhile).
unsafe impl Sync for SchedLock {}

pub(crate) struct SchedGuard {
    irq_was_enabled: bool,
}

impl SchedGuard {
    fn slot(&mut self) -> &mut Option<Scheduler> {
        // SAFETY: this guard proves the lock is held, and `&mut self`
        // keeps the reference unique for its lifetime.
        unsafe { &mut *SCHED.state.get() }
    }

    pub(crate) fn sched(&mut self) -> &mut Scheduler {
        self.slot()
            .as_mut()
            .expect("scheduler used before sched::init")
    }
}

impl Drop for SchedGuard {
    fn drop(&mut self) {
        let was_enabled = self.irq_was_enabled;
        SCHED.locked.store(false, Ordering::Release);
        crate::arch::cpu::irq_restore(was_enabled);
    }
}

static SCHED: SchedLock = SchedLock {
    locked: AtomicBool::new(false),
    state: UnsafeCell::new(None),
};
static READY: AtomicBool = AtomicBool::new(false);

/// Takes the scheduler lock with interrupts masked.
pub(crate) fn lock() -> SchedGuard {
    let irq_was_enabled = crate::arch::cpu::irq_save();
    while SCHED
        .locked
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    SchedGuard { irq_was_enabled }
}

impl Scheduler {
    fn thread(&mut self, id: ThreadId) -> &mut ThreadSched {
        self.threads
            .get_mut(&id)
            .expect("thread id in the scheduler")
    }

    fn current_priority(&self) -> u8 {
        self.threads
            .get(&self.current)
            .map_or(PRIORITY_IDLE, |t| t.priority)
    }

    /// Makes a blocked (or new) thread ready; asks for a reschedule if it
    /// outranks the running one.
    pub(crate) fn make_ready(&mut self, id: ThreadId) {
        let priority = {
            let thread = self.thread(id);
            thread.state = State::Ready;
            thread.priority
        };
        self.ready.push_back(priority, id);
        if priority > self.current_priority() || self.current == self.idle {
            self.need_resched = true;
        }
    }

    /// Ends `thread`'s wait with `outcome`: takes it off every object's
    /// waiter list, cancels its timeout, and makes it ready.
    pub(crate) fn complete_wait(&mut self, thread: ThreadId, outcome: WaitOutcome) {
        let Some(mut wait) = self.thread(thread).wait.take() else {
            return;
        };
        for object in &wait.objects {
            object.remove_waiter(self, thread);
        }
        if let Some(key) = wait.timer.take() {
            self.timers.cancel(key);
        }
        wait.outcome = Some(outcome);
        let objects = core::mem::take(&mut wait.objects);
        self.thread(thread).wait = Some(wait);
        // A thread no longer waiting on a mutex no longer boosts its owner.
        for object in &objects {
            if let Some(owner) = object.mutex_owner(self) {
                self.recompute_priority(owner);
            }
        }
        self.make_ready(thread);
    }

    /// Effective priority: the base, raised to the highest priority of any
    /// thread waiting for a mutex this thread owns (priority inheritance),
    /// propagated along a chain of owners.
    pub(crate) fn recompute_priority(&mut self, id: ThreadId) {
        let mut next = Some(id);
        let mut hops = 0;
        while let (Some(id), true) = (next.take(), hops < 16) {
            hops += 1;
            let Some(thread) = self.threads.get(&id) else {
                return;
            };
            let owned = thread.owned.clone();
            let mut priority = thread.base_priority;
            for object in &owned {
                for waiter in object.waiters(self) {
                    if let Some(w) = self.threads.get(&waiter) {
                        priority = priority.max(w.priority);
                    }
                }
            }
            let thread = self.thread(id);
            if thread.priority == priority {
                return;
            }
            thread.priority = priority;
            thread.shared.priority.store(priority, Ordering::Relaxed);
            let state = thread.state;
            // Follow the chain: the owner of a mutex this thread waits on.
            let waiting_on: Vec<Arc<KObject>> = thread
                .wait
                .as_ref()
                .map(|w| w.objects.clone())
                .unwrap_or_default();
            if state == State::Ready && self.ready.remove(&id) {
                self.ready.push_back(priority, id);
            }
            if priority > self.current_priority() {
                self.need_resched = true;
            }
            next = waiting_on
                .iter()
                .find_map(|object| object.mutex_owner(self));
        }
    }

    /// Arms the one-shot timer for the earliest pending timer, and for the
    /// end of the slice if another thread of the current priority waits.
    fn program_timer(&mut self, now: u64) {
        let mut deadline = self.timers.next_deadline().unwrap_or(u64::MAX);
        if self.current != self.idle && self.ready.count_at(self.current_priority()) > 0 {
            if self.slice_end <= now {
                self.slice_end = now + SLICE_NS;
            }
            deadline = deadline.min(self.slice_end);
        }
        ops::set_timer(deadline);
    }

    /// Charges the outgoing thread for its run, net of stolen time.
    fn account(&mut self, id: ThreadId, now: u64, steal_now: u64) {
        let thread = self.thread(id);
        let ran = now.saturating_sub(thread.switched_in_at);
        let stolen = steal_now.saturating_sub(thread.steal_at_switch_in).min(ran);
        thread
            .shared
            .cpu_ns
            .fetch_add(ran - stolen, Ordering::Relaxed);
        thread.shared.steal_ns.fetch_add(stolen, Ordering::Relaxed);
    }

    /// Picks the next thread and switches to it. Called with the lock held
    /// (interrupts off); returns when the calling thread runs again.
    fn schedule(&mut self) {
        self.need_resched = false;
        let now = ops::clock_ns();
        let current = self.current;
        if self.thread(current).state == State::Running && current != self.idle {
            let priority = self.thread(current).priority;
            self.thread(current).state = State::Ready;
            self.ready.push_back(priority, current);
        }
        let next = self.ready.pop().map_or(self.idle, |(_, id)| id);
        if current == self.idle && next != current {
            self.thread(current).state = State::Ready;
        }
        self.thread(next).state = State::Running;
        if next == current {
            self.program_timer(now);
            return;
        }
        let steal = ops::steal_ns();
        self.account(current, now, steal);
        {
            let incoming = self.thread(next);
            incoming.switched_in_at = now;
            incoming.steal_at_switch_in = steal;
            incoming.shared.switches.fetch_add(1, Ordering::Relaxed);
        }
        self.current = next;
        self.slice_end = now + SLICE_NS;
        self.program_timer(now);
        if self.thread(current).state == State::Dead {
            self.dead.push(current);
        }
        if let Some(fpu) = self.thread(current).fpu.as_mut() {
            switch::fpu_save(fpu);
        }
        let new_rsp = {
            let incoming = self.thread(next);
            if let Some(fpu) = incoming.fpu.as_ref() {
                switch::fpu_restore(fpu);
            }
            if let (Some(user), Some(stack)) = (incoming.user, incoming.stack.as_ref()) {
                crate::user::entry::switch_in(stack.top().as_u64(), user.fs_base);
            }
            incoming.rsp
        };
        let old_rsp: *mut u64 = &mut self.thread(current).rsp;
        // SAFETY: interrupts are off (the lock); `new_rsp` was saved by a
        // switch or built by `initial_stack`; the old thread's box stays in
        // the map until it is reaped, which happens only after a switch
        // away from it.
        unsafe { switch::switch_context(old_rsp, new_rsp) };
        // Running again as `current`.
        self.reap();
    }

    /// Frees the threads that died, except the running one.
    fn reap(&mut self) {
        let running = self.current;
        let dead = core::mem::take(&mut self.dead);
        for id in dead {
            if id == running {
                self.dead.push(id);
            } else if let Some(mut thread) = self.threads.remove(&id) {
                // Its stack serves the next thread: mapping and unmapping
                // 16 pages per thread is most of what creating one costs.
                if let Some(stack) = thread.stack.take() {
                    if self.stacks.len() < STACK_CACHE {
                        self.stacks.push(stack);
                    }
                }
            }
        }
    }

    fn spawn_locked(
        &mut self,
        name: &str,
        priority: u8,
        fpu: bool,
        entry: Box<dyn FnOnce() -> u64 + Send>,
    ) -> Result<Thread, SpawnError> {
        let stack = match self.stacks.pop() {
            Some(stack) => stack,
            None => KernelStack::new(STACK_PAGES).ok_or(SpawnError::OutOfMemory)?,
        };
        let id = self.next_id;
        self.next_id += 1;
        let shared = Arc::new(ThreadShared {
            id,
            name: String::from(name),
            exit: KObject::new_thread_exit(),
            exit_code: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            steal_ns: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            priority: AtomicU8::new(priority),
            base_priority: AtomicU8::new(priority),
        });
        // SAFETY: the stack is this thread's alone (fresh, or the cached
        // stack of a thread that was reaped); its top is page aligned.
        let rsp = unsafe { switch::initial_stack(stack.top().as_u64(), id) };
        self.threads.insert(
            id,
            Box::new(ThreadSched {
                shared: shared.clone(),
                state: State::Blocked,
                base_priority: priority,
                priority,
                rsp,
                stack: Some(stack),
                fpu: fpu.then(|| Box::new(FpuArea::new())),
                tls: [0; TLS_SLOTS],
                wait: None,
                wait_serial: 0,
                switched_in_at: 0,
                steal_at_switch_in: 0,
                owned: Vec::new(),
                entry: Some(entry),
                user: None,
            }),
        );
        if priority != PRIORITY_IDLE {
            self.make_ready(id);
        }
        Ok(Thread(shared))
    }
}

/// Why a thread could not be created.
#[derive(Debug, PartialEq, Eq)]
pub enum SpawnError {
    OutOfMemory,
    BadPriority(u8),
}

/// Options for [`spawn_with`].
pub struct SpawnOptions<'a> {
    pub name: &'a str,
    pub priority: u8,
    /// The thread uses the FPU/SSE registers: save and restore them.
    pub fpu: bool,
}

/// Starts a thread running `entry` at normal priority.
pub fn spawn<F: FnOnce() -> u64 + Send + 'static>(
    name: &str,
    entry: F,
) -> Result<Thread, SpawnError> {
    spawn_with(
        SpawnOptions {
            name,
            priority: PRIORITY_NORMAL,
            fpu: false,
        },
        entry,
    )
}

/// Starts a thread with the given options.
pub fn spawn_with<F: FnOnce() -> u64 + Send + 'static>(
    options: SpawnOptions<'_>,
    entry: F,
) -> Result<Thread, SpawnError> {
    if !(PRIORITY_LOWEST..=PRIORITY_HIGHEST).contains(&options.priority) {
        return Err(SpawnError::BadPriority(options.priority));
    }
    let thread = {
        let mut guard = lock();
        guard
            .sched()
            .spawn_locked(options.name, options.priority, options.fpu, Box::new(entry))?
    };
    preempt_check();
    Ok(thread)
}

/// Where every new thread starts (from the trampoline, holding the lock the
/// thread that switched to it took).
extern "C" fn thread_start(id: ThreadId) -> ! {
    // The switch to this new thread happened with the lock held by the
    // previous thread's `schedule`: this thread owns it now and releases
    // it, then enables interrupts as every thread runs with them on.
    SCHED.locked.store(false, Ordering::Release);
    crate::arch::cpu::irq_enable();
    let entry = lock().sched().thread(id).entry.take();
    let code = entry.map_or(0, |entry| entry());
    exit(code)
}

/// Ends the calling thread with `code`.
pub fn exit(code: u64) -> ! {
    let mut guard = lock();
    let s = guard.sched();
    let id = s.current;
    let (shared, owned) = {
        let thread = s.thread(id);
        thread.state = State::Dead;
        (thread.shared.clone(), core::mem::take(&mut thread.owned))
    };
    // Mutexes a dead thread held are abandoned: released for the waiters.
    for mutex in owned {
        mutex.abandon(s, id);
    }
    shared.exit_code.store(code, Ordering::Release);
    shared.exit.signal_exit(s);
    s.schedule();
    unreachable!("a dead thread was scheduled again");
}

/// Makes the calling thread one that runs user code (or updates its
/// context, as `arch_prctl` does): applied at once and on every switch to
/// it from now on. Only for spawned threads (the boot thread has no stack
/// of its own to enter on).
pub fn set_user_context(context: UserContext) -> bool {
    let mut guard = lock();
    let s = guard.sched();
    let id = s.current;
    let thread = s.thread(id);
    let Some(stack) = thread.stack.as_ref() else {
        return false;
    };
    thread.user = Some(context);
    crate::user::entry::switch_in(stack.top().as_u64(), context.fs_base);
    true
}

/// The calling thread's user context, if it runs user code.
pub fn user_context() -> Option<UserContext> {
    let mut guard = lock();
    let s = guard.sched();
    let id = s.current;
    s.thread(id).user
}

/// Gives the CPU to another ready thread of the same or higher priority.
pub fn yield_now() {
    let mut guard = lock();
    guard.sched().schedule();
}

/// Reschedules if an interrupt or a wake-up asked for it.
pub fn preempt_check() {
    if !READY.load(Ordering::Relaxed) {
        return;
    }
    let mut guard = lock();
    if guard.sched().need_resched {
        guard.sched().schedule();
    }
}

/// Sleeps for `ns` nanoseconds of the platform clock.
pub fn sleep_ns(ns: u64) {
    let _ = sync::wait_any(&[], Some(ns));
}

/// The calling thread.
pub fn current() -> Thread {
    let mut guard = lock();
    let s = guard.sched();
    let id = s.current;
    Thread(s.thread(id).shared.clone())
}

/// Changes a thread's base priority.
pub fn set_priority(thread: &Thread, priority: u8) -> Result<(), SpawnError> {
    if !(PRIORITY_LOWEST..=PRIORITY_HIGHEST).contains(&priority) {
        return Err(SpawnError::BadPriority(priority));
    }
    {
        let mut guard = lock();
        let s = guard.sched();
        if let Some(t) = s.threads.get_mut(&thread.id()) {
            t.base_priority = priority;
            t.shared.base_priority.store(priority, Ordering::Relaxed);
            s.recompute_priority(thread.id());
        }
        s_need_resched_if_outranked(s);
    }
    preempt_check();
    Ok(())
}

fn s_need_resched_if_outranked(s: &mut Scheduler) {
    if s.ready.highest().is_some_and(|p| p > s.current_priority()) {
        s.need_resched = true;
    }
}

/// Allocates a thread-local storage slot (the same index in every thread).
pub fn tls_alloc() -> Option<usize> {
    let mut guard = lock();
    let s = guard.sched();
    let index = (!s.tls_allocated).trailing_zeros() as usize;
    if index >= TLS_SLOTS {
        return None;
    }
    s.tls_allocated |= 1 << index;
    for thread in s.threads.values_mut() {
        thread.tls[index] = 0;
    }
    Some(index)
}

/// Frees a TLS slot.
pub fn tls_free(index: usize) {
    if index < TLS_SLOTS {
        lock().sched().tls_allocated &= !(1 << index);
    }
}

/// The calling thread's value in slot `index` (0 if never set).
pub fn tls_get(index: usize) -> usize {
    let mut guard = lock();
    let s = guard.sched();
    let id = s.current;
    s.thread(id).tls.get(index).copied().unwrap_or(0)
}

/// Sets the calling thread's value in slot `index`; false for a bad index.
pub fn tls_set(index: usize, value: usize) -> bool {
    let mut guard = lock();
    let s = guard.sched();
    let allocated = index < TLS_SLOTS && s.tls_allocated & (1 << index) != 0;
    let id = s.current;
    if allocated {
        s.thread(id).tls[index] = value;
    }
    allocated
}

/// Nanoseconds the CPU spent idle (the idle thread's run time).
pub fn idle_ns() -> u64 {
    let mut guard = lock();
    let s = guard.sched();
    let idle = s.idle;
    s.thread(idle).shared.cpu_ns.load(Ordering::Relaxed)
}

/// One thread, as the shell's `threads` command shows it.
pub struct ThreadInfo {
    pub id: ThreadId,
    pub name: String,
    pub state: State,
    pub priority: u8,
    pub base_priority: u8,
    pub cpu_ns: u64,
    pub steal_ns: u64,
    pub switches: u64,
}

/// Every live thread.
pub fn threads() -> Vec<ThreadInfo> {
    let mut guard = lock();
    let s = guard.sched();
    s.threads
        .values()
        .map(|t| ThreadInfo {
            id: t.shared.id,
            name: t.shared.name.clone(),
            state: t.state,
            priority: t.priority,
            base_priority: t.base_priority,
            cpu_ns: t.shared.cpu_ns.load(Ordering::Relaxed),
            steal_ns: t.shared.steal_ns.load(Ordering::Relaxed),
            switches: t.shared.switches.load(Ordering::Relaxed),
        })
        .collect()
}

/// The timer interrupt: fires expired timers, ends time slices, re-arms.
/// Runs in interrupt context; the reschedule happens at interrupt exit.
pub fn on_timer_interrupt() {
    if !READY.load(Ordering::Relaxed) {
        return;
    }
    let mut callbacks: Vec<Arc<sync::TimerShared>> = Vec::new();
    {
        let mut guard = lock();
        let s = guard.sched();
        let now = ops::clock_ns();
        while let Some((_, action)) = s.timers.pop_expired(now) {
            match action {
                TimerAction::WaitTimeout { thread, serial } => {
                    if s.threads
                        .get(&thread)
                        .is_some_and(|t| t.wait_serial == serial && t.wait.is_some())
                    {
                        s.complete_wait(thread, WaitOutcome::TimedOut);
                    }
                }
                TimerAction::Callback(timer) => callbacks.push(timer),
            }
        }
        if s.current != s.idle && now >= s.slice_end && s.ready.count_at(s.current_priority()) > 0 {
            s.need_resched = true;
        }
        s_need_resched_if_outranked(s);
        s.program_timer(now);
    }
    for timer in callbacks {
        timer.fire();
    }
}

/// At the end of an interrupt: switch if the interrupt made that necessary.
pub fn on_interrupt_exit() {
    preempt_check();
}

/// Turns the boot flow into thread 1 ("main"), creates the idle thread and
/// starts scheduling. Call once, after memory and the timer are up.
pub fn init() {
    let now = ops::clock_ns();
    {
        let mut guard = lock();
        let main_shared = Arc::new(ThreadShared {
            id: 1,
            name: String::from("main"),
            exit: KObject::new_thread_exit(),
            exit_code: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            steal_ns: AtomicU64::new(0),
            switches: AtomicU64::new(1),
            priority: AtomicU8::new(PRIORITY_NORMAL),
            base_priority: AtomicU8::new(PRIORITY_NORMAL),
        });
        let mut threads = BTreeMap::new();
        threads.insert(
            1,
            Box::new(ThreadSched {
                shared: main_shared,
                state: State::Running,
                base_priority: PRIORITY_NORMAL,
                priority: PRIORITY_NORMAL,
                rsp: 0,
                stack: None,
                fpu: None,
                tls: [0; TLS_SLOTS],
                wait: None,
                wait_serial: 0,
                switched_in_at: now,
                steal_at_switch_in: ops::steal_ns(),
                owned: Vec::new(),
                entry: None,
                user: None,
            }),
        );
        *guard.slot() = Some(Scheduler {
            threads,
            ready: RunQueue::new(),
            timers: TimerQueue::new(),
            current: 1,
            idle: 0,
            need_resched: false,
            slice_end: now + SLICE_NS,
            next_id: 2,
            dead: Vec::new(),
            stacks: Vec::new(),
            tls_allocated: 0,
        });
        let s = guard.sched();
        let idle = s
            .spawn_locked("idle", PRIORITY_IDLE, false, Box::new(idle_loop))
            .expect("memory for the idle thread at boot");
        s.idle = idle.id();
        s.thread(idle.id()).state = State::Ready;
    }
    READY.store(true, Ordering::Release);
    log::info!(
        "sched: threads up (tickless, {} ms slice)",
        SLICE_NS / 1_000_000
    );
}

fn idle_loop() -> u64 {
    loop {
        // The scheduler lock is not held here, and every wake-up sets
        // need_resched before the interrupt returns.
        ops::safe_halt();
        preempt_check();
    }
}
