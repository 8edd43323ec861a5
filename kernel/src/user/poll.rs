//! Waiting on many descriptors: `poll`, `ppoll`, `select`, `pselect6`,
//! `epoll` (level-triggered; `EPOLLONESHOT` honoured, `EPOLLET` reported
//! as level-triggered, which programs written for edge triggering accept:
//! they read until `EAGAIN`), and `eventfd`.
//!
//! Readiness is computed per open file: sockets from the network stack,
//! pipes and eventfds from their state, files always ready. A waiter that
//! finds nothing registers one event with everything that can change it
//! (the network thread's next pass, any pipe or eventfd change), then
//! sleeps on it until the deadline.

use super::files::{self, OpenFile, Special};
use super::uaccess;
use crate::net::socket::Readiness;
use crate::sched::sync::Event;
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use pure::fs::vfs::{self, FileType, Metadata, Node};
use pure::user::linux::Errno;

type Result<T> = core::result::Result<T, Errno>;

const POLLIN: u16 = 0x1;
const POLLOUT: u16 = 0x4;
const POLLERR: u16 = 0x8;
const POLLHUP: u16 = 0x10;
const POLLNVAL: u16 = 0x20;
const POLLRDNORM: u16 = 0x40;
const POLLWRNORM: u16 = 0x100;
const POLLRDHUP: u16 = 0x2000;

/// Events waiting for any pipe or eventfd to change.
static WAITERS: spin::Mutex<Vec<Event>> = spin::Mutex::new(Vec::new());

/// A pipe or eventfd changed: wake whoever polls.
pub fn changed() {
    let waiters = crate::arch::cpu::without_interrupts(|| core::mem::take(&mut *WAITERS.lock()));
    for event in waiters {
        event.set();
    }
}

/// What `file` is ready for now.
fn readiness(file: &OpenFile) -> Readiness {
    match &file.special {
        Special::Socket(socket) => socket.readiness(),
        Special::Pipe(pipe) => pipe.readiness(),
        Special::EventFd(counter) => counter.readiness(),
        Special::Epoll(epoll) => Readiness {
            readable: !epoll.collect(1, false).is_empty(),
            ..Readiness::default()
        },
        Special::None => {
            let console =
                file.node.metadata().kind == FileType::CharDevice && file.path == "/dev/console";
            Readiness {
                readable: !console || crate::console::input_pending(),
                writable: true,
                ..Readiness::default()
            }
        }
    }
}

/// The `poll` events `ready` answers for a request of `asked`.
fn revents(ready: Readiness, asked: u16) -> u16 {
    let mut events = 0;
    if ready.readable {
        events |= asked & (POLLIN | POLLRDNORM);
    }
    if ready.writable {
        events |= asked & (POLLOUT | POLLWRNORM);
    }
    if ready.hangup {
        events |= POLLHUP | (asked & POLLRDHUP);
    }
    if ready.error {
        events |= POLLERR;
    }
    events
}

/// Runs `check` until it reports something or the deadline (ns on the
/// monotonic clock; `None` never) passes; returns what it last reported.
fn wait_until<T: Default + PartialEq>(deadline: Option<u64>, mut check: impl FnMut() -> T) -> T {
    loop {
        // Registered before the check, so a change between the two is not
        // lost; taken off again whichever way this pass ends.
        let event = Event::new(true, false);
        crate::arch::cpu::without_interrupts(|| WAITERS.lock().push(event.clone()));
        crate::net::socket::notify_on_change(&event);
        let found = check();
        let now = crate::time::since_boot_ns();
        let timeout = match deadline {
            _ if found != T::default() || super::exiting() => None,
            Some(at) if at <= now => None,
            Some(at) => Some(at - now),
            None => Some(u64::MAX),
        };
        if let Some(timeout) = timeout {
            // Console input sets nothing: look again every 20 ms.
            event.wait(Some(timeout.min(20_000_000)));
        }
        crate::arch::cpu::without_interrupts(|| {
            WAITERS.lock().retain(|e| !Event::same(e, &event));
        });
        if timeout.is_none() {
            return found;
        }
    }
}

/// `struct pollfd`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PollFd {
    fd: i32,
    events: u16,
    revents: u16,
}

const MAX_POLL: u64 = 4096;

fn poll_fds(fds: u64, count: u64, deadline: Option<u64>) -> Result<u64> {
    if count > MAX_POLL {
        return Err(Errno::EINVAL);
    }
    let mut entries: Vec<PollFd> = Vec::with_capacity(count as usize);
    for i in 0..count {
        entries.push(uaccess::read(fds + i * 8)?);
    }
    let files: Vec<Option<Arc<OpenFile>>> = entries
        .iter()
        .map(|e| (e.fd >= 0).then(|| files::get(e.fd as u64).ok()).flatten())
        .collect();
    let ready = wait_until(deadline, || {
        let mut ready = 0u64;
        for (entry, file) in entries.iter_mut().zip(&files) {
            entry.revents = match file {
                _ if entry.fd < 0 => 0,
                None => POLLNVAL,
                Some(file) => revents(readiness(file), entry.events | POLLERR | POLLHUP),
            };
            ready += u64::from(entry.revents != 0);
        }
        ready
    });
    for (i, entry) in entries.iter().enumerate() {
        uaccess::write(fds + i as u64 * 8 + 6, &entry.revents)?;
    }
    Ok(ready)
}

fn deadline_after(ns: u64) -> u64 {
    crate::time::since_boot_ns().saturating_add(ns)
}

pub fn poll(fds: u64, count: u64, timeout_ms: u64) -> Result<u64> {
    let timeout = timeout_ms as i32;
    let deadline = (timeout >= 0).then(|| deadline_after(timeout as u64 * 1_000_000));
    poll_fds(fds, count, deadline)
}

pub fn ppoll(fds: u64, count: u64, timeout: u64, _sigmask: u64) -> Result<u64> {
    let deadline = match timeout {
        0 => None,
        at => Some(deadline_after(super::syscall::read_timespec(at)?)),
    };
    poll_fds(fds, count, deadline)
}

const FD_SETSIZE: u64 = 1024;

fn select_fds(count: u64, sets: [u64; 3], deadline: Option<u64>) -> Result<u64> {
    if count > FD_SETSIZE {
        return Err(Errno::EINVAL);
    }
    let words = count.div_ceil(64) as usize;
    let mut asked = [[0u64; 16]; 3];
    for (set, address) in asked.iter_mut().zip(sets) {
        for (w, word) in set.iter_mut().enumerate().take(words) {
            if address != 0 {
                *word = uaccess::read(address + w as u64 * 8)?;
            }
        }
    }
    let mut watched = Vec::new();
    for fd in 0..count {
        let bit = |set: &[u64; 16]| set[(fd / 64) as usize] & (1 << (fd % 64)) != 0;
        let (r, w, e) = (bit(&asked[0]), bit(&asked[1]), bit(&asked[2]));
        if r || w || e {
            watched.push((fd, files::get(fd).map_err(|_| Errno::EBADF)?, r, w, e));
        }
    }
    let mut result = [[0u64; 16]; 3];
    let ready = wait_until(deadline, || {
        result = [[0u64; 16]; 3];
        let mut ready = 0;
        for (fd, file, r, w, e) in &watched {
            let found = readiness(file);
            let mut mark = |set: usize| {
                result[set][(*fd / 64) as usize] |= 1 << (*fd % 64);
                ready += 1;
            };
            if *r && (found.readable || found.hangup || found.error) {
                mark(0);
            }
            if *w && (found.writable || found.error) {
                mark(1);
            }
            if *e && found.error {
                mark(2);
            }
        }
        ready
    });
    for (set, address) in result.iter().zip(sets) {
        if address != 0 {
            for (w, word) in set.iter().enumerate().take(words) {
                uaccess::write(address + w as u64 * 8, word)?;
            }
        }
    }
    Ok(ready)
}

pub fn select(count: u64, read: u64, write: u64, except: u64, timeout: u64) -> Result<u64> {
    let deadline = match timeout {
        0 => None,
        at => {
            let [sec, usec]: [i64; 2] = uaccess::read(at)?;
            if sec < 0 || !(0..1_000_000).contains(&usec) {
                return Err(Errno::EINVAL);
            }
            Some(deadline_after(
                (sec as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(usec as u64 * 1000),
            ))
        }
    };
    select_fds(count, [read, write, except], deadline)
}

pub fn pselect6(count: u64, read: u64, write: u64, except: u64, timeout: u64) -> Result<u64> {
    let deadline = match timeout {
        0 => None,
        at => Some(deadline_after(super::syscall::read_timespec(at)?)),
    };
    select_fds(count, [read, write, except], deadline)
}

const EPOLLIN: u32 = 0x1;
const EPOLLOUT: u32 = 0x4;
const EPOLLERR: u32 = 0x8;
const EPOLLHUP: u32 = 0x10;
const EPOLLRDHUP: u32 = 0x2000;
const EPOLLEXCLUSIVE: u32 = 1 << 28;
const EPOLLWAKEUP: u32 = 1 << 29;
const EPOLLONESHOT: u32 = 1 << 30;
const EPOLLET: u32 = 1 << 31;
const EPOLL_CTL_ADD: u64 = 1;
const EPOLL_CTL_DEL: u64 = 2;
const EPOLL_CTL_MOD: u64 = 3;

struct Interest {
    file: Weak<OpenFile>,
    events: u32,
    data: u64,
    /// A one-shot interest that fired, until `EPOLL_CTL_MOD` re-arms it.
    disarmed: bool,
    /// Edge-triggered (`EPOLLET`): the events last seen ready; only those
    /// that became ready since are reported.
    seen: u32,
}

/// An epoll instance: the interest list, by descriptor.
pub struct Epoll {
    ino: u64,
    /// Where the next scan starts: ready descriptors take turns when more
    /// are ready than a wait returns.
    next: AtomicU64,
    interest: spin::Mutex<BTreeMap<u64, Interest>>,
}

impl Epoll {
    /// Up to `max` (events, data) pairs that are ready now; when
    /// `deliver`, one-shot interests that report are disarmed and
    /// edge-triggered ones remember what they reported. Readiness is read
    /// from a snapshot, without the interest lock (a file's readiness may
    /// take other locks), and what changed is written back only to the
    /// interests still registered as they were.
    fn collect(&self, max: usize, deliver: bool) -> Vec<(u32, u64)> {
        let snapshot: Vec<(u64, Weak<OpenFile>, u32, u64, bool, u32)> =
            crate::arch::cpu::without_interrupts(|| {
                let mut interest = self.interest.lock();
                interest.retain(|_, i| i.file.strong_count() > 0);
                interest
                    .iter()
                    .map(|(&fd, i)| (fd, i.file.clone(), i.events, i.data, i.disarmed, i.seen))
                    .collect()
            });
        let start = self.next.load(Ordering::Relaxed);
        let first = snapshot.partition_point(|entry| entry.0 < start);
        let mut found = Vec::new();
        let mut updates = Vec::new();
        for (fd, file, events, data, disarmed, seen) in
            snapshot[first..].iter().chain(&snapshot[..first])
        {
            if found.len() >= max || *disarmed {
                continue;
            }
            let Some(file) = file.upgrade() else {
                continue;
            };
            let ready = readiness(&file);
            let mut now = 0;
            if ready.readable {
                now |= events & EPOLLIN;
            }
            if ready.writable {
                now |= events & EPOLLOUT;
            }
            if ready.hangup {
                now |= EPOLLHUP | (events & EPOLLRDHUP);
            }
            if ready.error {
                now |= EPOLLERR;
            }
            let report = if events & EPOLLET != 0 {
                now & !seen
            } else {
                now
            };
            if deliver && events & EPOLLET != 0 && now != *seen {
                updates.push((*fd, now, false));
            }
            if report != 0 {
                found.push((report, *data));
                if deliver {
                    self.next.store(fd + 1, Ordering::Relaxed);
                    if events & EPOLLONESHOT != 0 {
                        updates.push((*fd, now, true));
                    }
                }
            }
        }
        if !updates.is_empty() {
            crate::arch::cpu::without_interrupts(|| {
                let mut interest = self.interest.lock();
                for (fd, seen, disarm) in updates {
                    if let Some(entry) = interest.get_mut(&fd) {
                        entry.seen = seen;
                        entry.disarmed |= disarm;
                    }
                }
            });
        }
        found
    }
}

impl Node for Epoll {
    fn metadata(&self) -> Metadata {
        anonymous(self.ino)
    }
}

fn anonymous(ino: u64) -> Metadata {
    Metadata {
        dev: 0,
        ino,
        kind: FileType::Regular,
        permissions: 0o600,
        nlink: 1,
        size: 0,
        mtime_ns: 0,
        rdev: 0,
    }
}

fn next_ino() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

const EPOLL_CLOEXEC: u64 = 0o2000000;

pub fn epoll_create1(flags: u64) -> Result<u64> {
    if flags & !EPOLL_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    let epoll = Arc::new(Epoll {
        ino: next_ino(),
        next: AtomicU64::new(0),
        interest: spin::Mutex::new(BTreeMap::new()),
    });
    let file = OpenFile::special(epoll.clone(), Special::Epoll(epoll), 2);
    files::install(file, flags & EPOLL_CLOEXEC != 0, 0)
}

fn epoll_of(fd: u64) -> Result<Arc<Epoll>> {
    match &files::get(fd)?.special {
        Special::Epoll(epoll) => Ok(epoll.clone()),
        _ => Err(Errno::EINVAL),
    }
}

/// `struct epoll_event` (packed on x86-64: 12 bytes).
fn read_event(address: u64) -> Result<(u32, u64)> {
    let mut raw = [0u8; 12];
    uaccess::copy_from_user(&mut raw, address)?;
    let events = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let mut data = [0u8; 8];
    data.copy_from_slice(&raw[4..12]);
    Ok((events, u64::from_le_bytes(data)))
}

pub fn epoll_ctl(epfd: u64, op: u64, fd: u64, event: u64) -> Result<u64> {
    let epoll = epoll_of(epfd)?;
    let file = files::get(fd)?;
    if fd == epfd {
        return Err(Errno::EINVAL);
    }
    if file.node.metadata().kind == FileType::Regular && matches!(file.special, Special::None) {
        // Linux: regular files and directories cannot be watched.
        return Err(Errno::EPERM);
    }
    let allowed = EPOLLIN
        | EPOLLOUT
        | EPOLLERR
        | EPOLLHUP
        | EPOLLRDHUP
        | EPOLLONESHOT
        | EPOLLET
        | EPOLLEXCLUSIVE
        | EPOLLWAKEUP
        | 0x2 // EPOLLPRI
        | 0x40 // EPOLLRDNORM
        | 0x100; // EPOLLWRNORM
    let requested = match op {
        EPOLL_CTL_DEL => None,
        EPOLL_CTL_ADD | EPOLL_CTL_MOD => {
            let (events, data) = read_event(event)?;
            if events & !allowed != 0 {
                return Err(Errno::EINVAL);
            }
            Some((events, data))
        }
        _ => return Err(Errno::EINVAL),
    };
    let result = crate::arch::cpu::without_interrupts(|| {
        let mut interest = epoll.interest.lock();
        let present = interest.get(&fd).is_some_and(|i| i.file.strong_count() > 0);
        match (op, requested) {
            (EPOLL_CTL_ADD, _) if present => Err(Errno::EEXIST),
            (EPOLL_CTL_MOD | EPOLL_CTL_DEL, _) if !present => Err(Errno::ENOENT),
            (EPOLL_CTL_DEL, _) => {
                interest.remove(&fd);
                Ok(0)
            }
            (_, Some((events, data))) => {
                interest.insert(
                    fd,
                    Interest {
                        file: Arc::downgrade(&file),
                        events,
                        data,
                        disarmed: false,
                        seen: 0,
                    },
                );
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        }
    });
    changed();
    result
}

const EP_MAX_EVENTS: u64 = (i32::MAX as u64) / 12;

pub fn epoll_wait(epfd: u64, events: u64, max: u64, timeout_ms: u64) -> Result<u64> {
    let max = max as i32;
    if max <= 0 || max as u64 > EP_MAX_EVENTS {
        return Err(Errno::EINVAL);
    }
    let epoll = epoll_of(epfd)?;
    uaccess::check(events, max as usize * 12, true)?;
    let timeout = timeout_ms as i32;
    let deadline = (timeout >= 0).then(|| deadline_after(timeout as u64 * 1_000_000));
    let found = wait_until(deadline, || epoll.collect(max as usize, true));
    for (i, (ready, data)) in found.iter().enumerate() {
        let mut raw = [0u8; 12];
        raw[..4].copy_from_slice(&ready.to_le_bytes());
        raw[4..].copy_from_slice(&data.to_le_bytes());
        uaccess::copy_to_user(events + i as u64 * 12, &raw)?;
    }
    Ok(found.len() as u64)
}

/// `eventfd2`: a 64-bit counter that reads take and writes add to.
pub struct EventFd {
    ino: u64,
    semaphore: bool,
    counter: spin::Mutex<u64>,
    changed: Event,
}

const EFD_SEMAPHORE: u64 = 1;
const EFD_NONBLOCK: u64 = 0o4000;
const EFD_CLOEXEC: u64 = 0o2000000;

impl EventFd {
    /// Runs `f` on the counter; wakes waiters and pollers only when it
    /// changed (a waiter that found nothing must not wake itself).
    fn with<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
        let (result, moved) = crate::arch::cpu::without_interrupts(|| {
            let mut counter = self.counter.lock();
            let before = *counter;
            let result = f(&mut counter);
            (result, *counter != before)
        });
        if moved {
            self.changed.set();
            changed();
        }
        result
    }

    fn readiness(&self) -> Readiness {
        let value = crate::arch::cpu::without_interrupts(|| *self.counter.lock());
        Readiness {
            readable: value > 0,
            writable: value < u64::MAX - 1,
            ..Readiness::default()
        }
    }

    pub fn read(&self, buf: &mut [u8], nonblocking: bool) -> vfs::Result<usize> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        loop {
            let taken = self.with(|value| {
                if *value == 0 {
                    return None;
                }
                let taken = if self.semaphore { 1 } else { *value };
                *value -= taken;
                Some(taken)
            });
            if let Some(taken) = taken {
                buf[..8].copy_from_slice(&taken.to_le_bytes());
                return Ok(8);
            }
            if nonblocking {
                return Err(Errno::EAGAIN);
            }
            if super::exiting() {
                return Err(Errno::EINTR);
            }
            self.changed.wait(Some(100_000_000));
        }
    }

    pub fn write(&self, buf: &[u8], nonblocking: bool) -> vfs::Result<usize> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&buf[..8]);
        let add = u64::from_le_bytes(raw);
        if add == u64::MAX {
            return Err(Errno::EINVAL);
        }
        loop {
            let done = self.with(|value| {
                if u64::MAX - 1 - *value < add {
                    return false;
                }
                *value += add;
                true
            });
            if done {
                return Ok(8);
            }
            if nonblocking {
                return Err(Errno::EAGAIN);
            }
            if super::exiting() {
                return Err(Errno::EINTR);
            }
            self.changed.wait(Some(100_000_000));
        }
    }
}

impl Node for EventFd {
    fn metadata(&self) -> Metadata {
        anonymous(self.ino)
    }
}

pub fn eventfd2(initial: u64, flags: u64) -> Result<u64> {
    if flags & !(EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let counter = Arc::new(EventFd {
        ino: next_ino(),
        semaphore: flags & EFD_SEMAPHORE != 0,
        counter: spin::Mutex::new(initial & 0xffff_ffff),
        changed: Event::new(false, false),
    });
    let status = if flags & EFD_NONBLOCK != 0 {
        files::O_NONBLOCK
    } else {
        0
    };
    let file = OpenFile::special(counter.clone(), Special::EventFd(counter), 2 | status);
    files::install(file, flags & EFD_CLOEXEC != 0, 0)
}
