//! 2-level event channels (`xen/include/public/xen.h`, "Event channel
//! endpoints"): a port is pending when its bit is set in
//! `shared_info.evtchn_pending`; `evtchn_mask` masks it; the vCPU's
//! `evtchn_pending_sel` says which words of the pending array to look at.
//! This module is the scan, over plain words, so it is host-tested; the
//! kernel applies it to the shared page with atomic operations.

/// Bits per selector word and per pending word (x86_64: 64).
pub const BITS: usize = 64;
/// Ports of the 2-level ABI: 64 x 64.
pub const NR_PORTS: usize = BITS * BITS;

/// Calls `deliver(port)` for every port pending and not masked, in word
/// order, for the selector `selector`. `take_word(i)` atomically reads and
/// clears the deliverable bits of word `i` (pending & !mask) and returns
/// them, so a port is delivered once per event.
pub fn scan(selector: u64, mut take_word: impl FnMut(usize) -> u64, mut deliver: impl FnMut(u32)) {
    let mut words = selector;
    while words != 0 {
        let word = words.trailing_zeros() as usize;
        words &= words - 1;
        let mut bits = take_word(word);
        while bits != 0 {
            let bit = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            deliver((word * BITS + bit) as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn delivers_pending_unmasked_ports_once() {
        let mut pending = [0u64; BITS];
        let mask = {
            let mut m = [0u64; BITS];
            m[1] = 1 << 3; // port 67 masked
            m
        };
        pending[0] = 1 << 5 | 1 << 63; // ports 5, 63
        pending[1] = 1 << 3 | 1 << 4; // 67 (masked), 68
        pending[63] = 1 << 63; // port 4095
        let selector = 1 | 1 << 1 | 1 << 63;
        let mut delivered = Vec::new();
        scan(
            selector,
            |i| {
                let bits = pending[i] & !mask[i];
                pending[i] &= !bits;
                bits
            },
            |port| delivered.push(port),
        );
        assert_eq!(delivered, [5, 63, 68, 4095]);
        // The masked port stays pending for later.
        assert_eq!(pending[1], 1 << 3);
        assert_eq!(pending[0], 0);
    }

    #[test]
    fn empty_selector_delivers_nothing() {
        let mut called = false;
        scan(0, |_| u64::MAX, |_| called = true);
        assert!(!called);
    }
}
