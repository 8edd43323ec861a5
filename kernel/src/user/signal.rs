//! Signal dispositions, masks and alternate stacks, as the program sets
//! them (`rt_sigaction`, `rt_sigprocmask`, `sigaltstack`).
//!
//! sanos records them and answers with them; it does not yet deliver
//! signals to handlers: a fault in user mode ends the program with a
//! report, and no other signal is ever raised.

use super::uaccess;
use alloc::collections::BTreeMap;
use pure::user::linux::Errno;

type Result<T> = core::result::Result<T, Errno>;

const SIGKILL: u64 = 9;
const SIGSTOP: u64 = 19;
/// `struct k_sigaction`: handler, flags, restorer, mask.
const ACTION_SIZE: usize = 32;
/// `stack_t`: ss_sp, ss_flags (and padding), ss_size.
const STACK_SIZE: usize = 24;
const SS_ONSTACK: u32 = 1;
const SS_DISABLE: u32 = 2;
const MINSIGSTKSZ: u64 = 2048;

struct State {
    actions: [[u8; ACTION_SIZE]; 64],
    masks: BTreeMap<u64, u64>,
    stacks: BTreeMap<u64, [u8; STACK_SIZE]>,
}

static STATE: spin::Mutex<State> = spin::Mutex::new(State {
    actions: [[0; ACTION_SIZE]; 64],
    masks: BTreeMap::new(),
    stacks: BTreeMap::new(),
});

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    crate::arch::cpu::without_interrupts(|| f(&mut STATE.lock()))
}

/// Forgets everything (a new program starts).
pub fn reset() {
    with(|state| {
        state.actions = [[0; ACTION_SIZE]; 64];
        state.masks.clear();
        state.stacks.clear();
    });
}

pub fn rt_sigaction(signal: u64, new: u64, old: u64, size: u64) -> Result<u64> {
    if !(1..=64).contains(&signal) || size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut action = [0u8; ACTION_SIZE];
    if new != 0 {
        if signal == SIGKILL || signal == SIGSTOP {
            return Err(Errno::EINVAL);
        }
        uaccess::copy_from_user(&mut action, new)?;
    }
    let previous = with(|state| {
        let slot = &mut state.actions[signal as usize - 1];
        let previous = *slot;
        if new != 0 {
            *slot = action;
        }
        previous
    });
    if old != 0 {
        uaccess::copy_to_user(old, &previous)?;
    }
    Ok(0)
}

const SIG_BLOCK: u64 = 0;
const SIG_UNBLOCK: u64 = 1;
const SIG_SETMASK: u64 = 2;

pub fn rt_sigprocmask(how: u64, set: u64, old: u64, size: u64) -> Result<u64> {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let change = match set {
        0 => None,
        at => {
            if how > SIG_SETMASK {
                return Err(Errno::EINVAL);
            }
            Some(uaccess::read::<u64>(at)?)
        }
    };
    let tid = crate::sched::current().id();
    let unblockable = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));
    let previous = with(|state| {
        let mask = state.masks.entry(tid).or_insert(0);
        let previous = *mask;
        if let Some(bits) = change {
            *mask = match how {
                SIG_BLOCK => previous | bits,
                SIG_UNBLOCK => previous & !bits,
                _ => bits,
            } & !unblockable;
        }
        previous
    });
    if old != 0 {
        uaccess::write(old, &previous)?;
    }
    Ok(0)
}

pub fn sigaltstack(new: u64, old: u64) -> Result<u64> {
    let tid = crate::sched::current().id();
    let mut disabled = [0u8; STACK_SIZE];
    disabled[8..12].copy_from_slice(&SS_DISABLE.to_le_bytes());
    let mut wanted = None;
    if new != 0 {
        let mut stack = [0u8; STACK_SIZE];
        uaccess::copy_from_user(&mut stack, new)?;
        let flags = u32::from_le_bytes([stack[8], stack[9], stack[10], stack[11]]);
        let size = u64::from_le_bytes(stack[16..24].try_into().unwrap_or([0; 8]));
        if flags & !(SS_DISABLE | SS_ONSTACK) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & SS_DISABLE == 0 && size < MINSIGSTKSZ {
            return Err(Errno::ENOMEM);
        }
        wanted = Some(if flags & SS_DISABLE != 0 {
            disabled
        } else {
            stack
        });
    }
    let previous = with(|state| {
        let previous = state.stacks.get(&tid).copied().unwrap_or(disabled);
        if let Some(stack) = wanted {
            state.stacks.insert(tid, stack);
        }
        previous
    });
    if old != 0 {
        uaccess::copy_to_user(old, &previous)?;
    }
    Ok(0)
}
