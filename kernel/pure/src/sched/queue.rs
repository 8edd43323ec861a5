//! The scheduler's pure data structures: the priority run queue and the
//! timer queue. No hardware, no locks: the kernel's scheduler holds them
//! under its own lock, and `cargo test` checks them on the host.

use alloc::collections::{BTreeMap, VecDeque};

/// Priorities run from 0 (lowest) to `PRIORITY_LEVELS - 1` (highest).
pub const PRIORITY_LEVELS: usize = 32;

/// Ready threads by priority: FIFO within a level, highest level first. A
/// bitmap of non-empty levels makes "highest ready priority" one
/// instruction.
pub struct RunQueue<T> {
    levels: [VecDeque<T>; PRIORITY_LEVELS],
    nonempty: u32,
    len: usize,
}

impl<T: PartialEq> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: PartialEq> RunQueue<T> {
    pub fn new() -> Self {
        RunQueue {
            levels: core::array::from_fn(|_| VecDeque::new()),
            nonempty: 0,
            len: 0,
        }
    }

    fn level(priority: u8) -> usize {
        usize::from(priority).min(PRIORITY_LEVELS - 1)
    }

    /// Queues `item` behind the others of its priority (priorities above
    /// the top level are clamped to it).
    pub fn push_back(&mut self, priority: u8, item: T) {
        let level = Self::level(priority);
        self.levels[level].push_back(item);
        self.nonempty |= 1 << level;
        self.len += 1;
    }

    /// Queues `item` ahead of the others of its priority (a preempted
    /// thread keeps its turn).
    pub fn push_front(&mut self, priority: u8, item: T) {
        let level = Self::level(priority);
        self.levels[level].push_front(item);
        self.nonempty |= 1 << level;
        self.len += 1;
    }

    /// The highest priority with a ready item.
    pub fn highest(&self) -> Option<u8> {
        (self.nonempty != 0).then(|| (31 - self.nonempty.leading_zeros()) as u8)
    }

    /// Takes the first item of the highest non-empty level.
    pub fn pop(&mut self) -> Option<(u8, T)> {
        let level = self.highest()?;
        let queue = &mut self.levels[usize::from(level)];
        let item = queue.pop_front()?;
        if queue.is_empty() {
            self.nonempty &= !(1 << level);
        }
        self.len -= 1;
        Some((level, item))
    }

    /// Removes `item` wherever it is; true if it was queued.
    pub fn remove(&mut self, item: &T) -> bool {
        for (level, queue) in self.levels.iter_mut().enumerate() {
            if let Some(index) = queue.iter().position(|queued| queued == item) {
                queue.remove(index);
                if queue.is_empty() {
                    self.nonempty &= !(1 << level);
                }
                self.len -= 1;
                return true;
            }
        }
        false
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Items ready at exactly `priority`.
    pub fn count_at(&self, priority: u8) -> usize {
        self.levels[Self::level(priority)].len()
    }
}

/// A handle to a queued timer, for cancelling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    deadline: u64,
    sequence: u64,
}

impl TimerKey {
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

/// Pending timers ordered by deadline (ties in insertion order).
pub struct TimerQueue<T> {
    timers: BTreeMap<TimerKey, T>,
    next_sequence: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerQueue<T> {
    pub const fn new() -> Self {
        TimerQueue {
            timers: BTreeMap::new(),
            next_sequence: 0,
        }
    }

    pub fn insert(&mut self, deadline: u64, item: T) -> TimerKey {
        let key = TimerKey {
            deadline,
            sequence: self.next_sequence,
        };
        self.next_sequence += 1;
        self.timers.insert(key, item);
        key
    }

    /// Removes a timer that has not fired; `None` if it already fired or
    /// was cancelled.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.timers.remove(&key)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.keys().next().map(|key| key.deadline)
    }

    /// Takes the earliest timer whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: u64) -> Option<(TimerKey, T)> {
        let key = *self.timers.keys().next()?;
        if key.deadline > now {
            return None;
        }
        self.timers.remove(&key).map(|item| (key, item))
    }

    pub fn len(&self) -> usize {
        self.timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn run_queue_is_priority_then_fifo() {
        let mut queue = RunQueue::new();
        assert_eq!(queue.pop(), None);
        assert_eq!(queue.highest(), None);
        queue.push_back(5, "a");
        queue.push_back(10, "b");
        queue.push_back(5, "c");
        queue.push_back(10, "d");
        queue.push_front(5, "e");
        assert_eq!(queue.len(), 5);
        assert_eq!(queue.highest(), Some(10));
        assert_eq!(queue.count_at(5), 3);
        let order: Vec<_> = core::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order, [(10, "b"), (10, "d"), (5, "e"), (5, "a"), (5, "c")]);
        assert!(queue.is_empty());
        assert_eq!(queue.highest(), None);
    }

    #[test]
    fn run_queue_remove_and_clamp() {
        let mut queue = RunQueue::new();
        queue.push_back(200, 1);
        assert_eq!(queue.highest(), Some(31));
        queue.push_back(0, 2);
        queue.push_back(0, 3);
        assert!(queue.remove(&2));
        assert!(!queue.remove(&2));
        assert!(queue.remove(&1));
        assert_eq!(queue.highest(), Some(0));
        assert_eq!(queue.pop(), Some((0, 3)));
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn timers_fire_in_deadline_order_and_cancel() {
        let mut timers = TimerQueue::new();
        let late = timers.insert(300, "late");
        let early = timers.insert(100, "early");
        let tie = timers.insert(100, "tie");
        assert_eq!(early.deadline(), 100);
        assert_eq!(timers.next_deadline(), Some(100));
        assert_eq!(timers.pop_expired(99), None);
        assert_eq!(timers.pop_expired(100), Some((early, "early")));
        assert_eq!(timers.cancel(tie), Some("tie"));
        assert_eq!(timers.cancel(tie), None);
        assert_eq!(timers.next_deadline(), Some(300));
        assert_eq!(timers.pop_expired(1000), Some((late, "late")));
        assert!(timers.is_empty());
        assert_eq!(timers.pop_expired(u64::MAX), None);
    }

    #[test]
    fn many_timers_stay_ordered() {
        let mut timers = TimerQueue::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..1000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            timers.insert(x % 10_000, i);
        }
        let mut last = 0;
        while let Some((key, _)) = timers.pop_expired(u64::MAX) {
            assert!(key.deadline() >= last);
            last = key.deadline();
        }
    }
}
