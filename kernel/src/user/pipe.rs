//! Pipes (`pipe2`): a 64 KiB buffer between a read end and a write end.
//!
//! A read blocks while the pipe is empty and a writer remains (end of file
//! once none does); a write blocks while it is full and a reader remains
//! (`EPIPE` once none does: sanos delivers no `SIGPIPE` yet). Writes of at
//! most `PIPE_BUF` bytes are atomic. Non-blocking ends answer `EAGAIN`.

use crate::sched::sync::Event;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use pure::fs::vfs::{self, FileType, Metadata, Node};
use pure::user::linux::Errno;

const CAPACITY: usize = 64 << 10;
/// Writes up to this size are not interleaved with others.
const PIPE_BUF: usize = 4096;

struct State {
    buffer: VecDeque<u8>,
    readers: usize,
    writers: usize,
}

struct Pipe {
    ino: u64,
    state: spin::Mutex<State>,
    /// Set while a read would not block (data, or no writer left).
    readable: Event,
    /// Set while a write would not block (room, or no reader left).
    writable: Event,
}

impl Pipe {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let result = crate::arch::cpu::without_interrupts(|| f(&mut self.state.lock()));
        self.update();
        result
    }

    /// Sets or resets the events to match the state, and tells pollers.
    fn update(&self) {
        super::poll::changed();
        let (readable, writable) = crate::arch::cpu::without_interrupts(|| {
            let state = self.state.lock();
            (
                !state.buffer.is_empty() || state.writers == 0,
                state.buffer.len() < CAPACITY || state.readers == 0,
            )
        });
        if readable {
            self.readable.set();
        } else {
            self.readable.reset();
        }
        if writable {
            self.writable.set();
        } else {
            self.writable.reset();
        }
    }
}

/// One end of a pipe.
pub struct End {
    pipe: Arc<Pipe>,
    write: bool,
}

impl End {
    /// Reads what is there (at least one byte, or 0 at end of file).
    pub fn read(&self, buf: &mut [u8], nonblocking: bool) -> vfs::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let taken = self.pipe.with(|state| {
                if state.buffer.is_empty() {
                    return (state.writers == 0).then_some(0);
                }
                let n = buf.len().min(state.buffer.len());
                for (slot, byte) in buf.iter_mut().zip(state.buffer.drain(..n)) {
                    *slot = byte;
                }
                Some(n)
            });
            if let Some(n) = taken {
                return Ok(n);
            }
            if nonblocking {
                return Err(Errno::EAGAIN);
            }
            if crate::user::exiting() {
                return Err(Errno::EINTR);
            }
            self.pipe.readable.wait(Some(100_000_000));
        }
    }

    /// Writes all of `buf` (blocking), or what fits (non-blocking).
    pub fn write(&self, buf: &[u8], nonblocking: bool) -> vfs::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            let result = self.pipe.with(|state| {
                if state.readers == 0 {
                    return Err(Errno::EPIPE);
                }
                let room = CAPACITY - state.buffer.len();
                // A small write goes in whole or waits.
                if rest.len() <= PIPE_BUF && room < rest.len() {
                    return Ok(0);
                }
                let n = room.min(rest.len());
                state.buffer.extend(&rest[..n]);
                Ok(n)
            });
            match result {
                Err(error) if done == 0 => return Err(error),
                Err(_) => return Ok(done),
                Ok(0) if nonblocking => {
                    return if done == 0 {
                        Err(Errno::EAGAIN)
                    } else {
                        Ok(done)
                    }
                }
                Ok(0) => {
                    if crate::user::exiting() {
                        return Err(Errno::EINTR);
                    }
                    self.pipe.writable.wait(Some(100_000_000));
                }
                Ok(n) => done += n,
            }
        }
        Ok(done)
    }
}

impl End {
    /// What this end is ready for.
    pub fn readiness(&self) -> crate::net::socket::Readiness {
        crate::arch::cpu::without_interrupts(|| {
            let state = self.pipe.state.lock();
            if self.write {
                crate::net::socket::Readiness {
                    writable: state.buffer.len() < CAPACITY || state.readers == 0,
                    error: state.readers == 0,
                    ..Default::default()
                }
            } else {
                crate::net::socket::Readiness {
                    readable: !state.buffer.is_empty() || state.writers == 0,
                    hangup: state.writers == 0,
                    ..Default::default()
                }
            }
        })
    }
}

impl Drop for End {
    fn drop(&mut self) {
        self.pipe.with(|state| {
            if self.write {
                state.writers -= 1;
            } else {
                state.readers -= 1;
            }
        });
    }
}

impl Node for End {
    fn metadata(&self) -> Metadata {
        let size = crate::arch::cpu::without_interrupts(|| self.pipe.state.lock().buffer.len());
        Metadata {
            dev: 0,
            ino: self.pipe.ino,
            kind: FileType::Fifo,
            permissions: 0o600,
            nlink: 1,
            size: size as u64,
            mtime_ns: 0,
            rdev: 0,
        }
    }

    fn read_at(&self, _offset: u64, buf: &mut [u8]) -> vfs::Result<usize> {
        if self.write {
            return Err(Errno::EBADF);
        }
        self.read(buf, false)
    }

    fn write_at(&self, _offset: u64, buf: &[u8]) -> vfs::Result<usize> {
        if !self.write {
            return Err(Errno::EBADF);
        }
        self.write(buf, false)
    }
}

/// A new pipe: (read end, write end).
pub fn pipe() -> (Arc<End>, Arc<End>) {
    static NEXT_INO: AtomicU64 = AtomicU64::new(1);
    let pipe = Arc::new(Pipe {
        ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
        state: spin::Mutex::new(State {
            buffer: VecDeque::new(),
            readers: 1,
            writers: 1,
        }),
        readable: Event::new(true, false),
        writable: Event::new(true, true),
    });
    (
        Arc::new(End {
            pipe: pipe.clone(),
            write: false,
        }),
        Arc::new(End { pipe, write: true }),
    )
}
