//! The PV console ring (`xen/include/public/io/console.h`): the guest is
//! the producer of `out` and the consumer of `in`; indices run freely and
//! are masked by the ring size (`MASK_XENCONS_IDX`). This module is the
//! ring arithmetic; the kernel maps the page and rings the event channel.

use super::bindings::xencons_interface;

/// Size of the output ring.
pub const OUT_SIZE: u32 = 2048;
/// Size of the input ring.
pub const IN_SIZE: u32 = 1024;

/// Bytes free in the output ring for indices `prod`, `cons`. A corrupt
/// pair (the consumer ahead of the producer, or more than a ring apart)
/// reads as full, so a bad page cannot make the writer overrun it.
pub fn out_space(prod: u32, cons: u32) -> u32 {
    OUT_SIZE.saturating_sub(prod.wrapping_sub(cons))
}

/// Copies as much of `bytes` as fits into the ring at `prod` (ring free
/// space from `out_space`), returning how many bytes were written and the
/// new producer index. The caller publishes the index after a write
/// barrier.
pub fn write_out(ring: &mut xencons_interface, prod: u32, cons: u32, bytes: &[u8]) -> (usize, u32) {
    let count = (out_space(prod, cons) as usize).min(bytes.len());
    for (i, &byte) in bytes[..count].iter().enumerate() {
        let index = prod.wrapping_add(i as u32) % OUT_SIZE;
        ring.out[index as usize] = byte as core::ffi::c_char;
    }
    (count, prod.wrapping_add(count as u32))
}

/// Copies the bytes waiting in the input ring (indices `cons`, `prod`)
/// into `out`, returning how many and the new consumer index, which the
/// caller publishes after a barrier. A corrupt pair (more than a ring
/// apart, or the producer behind) reads as empty and resynchronises the
/// consumer with the producer, so a bad page cannot make the reader loop.
pub fn read_in(ring: &xencons_interface, cons: u32, prod: u32, out: &mut [u8]) -> (usize, u32) {
    let waiting = prod.wrapping_sub(cons);
    if waiting > IN_SIZE {
        return (0, prod);
    }
    let count = (waiting as usize).min(out.len());
    for (i, slot) in out[..count].iter_mut().enumerate() {
        let index = cons.wrapping_add(i as u32) % IN_SIZE;
        *slot = ring.in_[index as usize] as u8;
    }
    (count, cons.wrapping_add(count as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> xencons_interface {
        xencons_interface {
            in_: [0; 1024],
            out: [0; 2048],
            in_cons: 0,
            in_prod: 0,
            out_cons: 0,
            out_prod: 0,
        }
    }

    #[test]
    fn space_with_wrapping_indices() {
        assert_eq!(out_space(0, 0), 2048);
        assert_eq!(out_space(100, 0), 1948);
        assert_eq!(out_space(2048, 0), 0);
        assert_eq!(out_space(5, u32::MAX - 10), 2048 - 16);
        // Corrupt: consumer ahead, or more than a ring apart.
        assert_eq!(out_space(0, 10), 0);
        assert_eq!(out_space(5000, 0), 0);
    }

    #[test]
    fn writes_wrap_around_the_ring() {
        let mut r = ring();
        let (written, prod) = write_out(&mut r, 2046, 2040, b"abcd");
        assert_eq!((written, prod), (4, 2050));
        assert_eq!(r.out[2046] as u8, b'a');
        assert_eq!(r.out[2047] as u8, b'b');
        assert_eq!(r.out[0] as u8, b'c');
        assert_eq!(r.out[1] as u8, b'd');
    }

    #[test]
    fn input_is_read_across_the_wrap_and_in_pieces() {
        let mut r = ring();
        r.in_[1022] = b'h' as core::ffi::c_char;
        r.in_[1023] = b'i' as core::ffi::c_char;
        r.in_[0] = b'!' as core::ffi::c_char;
        let mut out = [0u8; 8];
        assert_eq!(read_in(&r, 1022, 1025, &mut out), (3, 1025));
        assert_eq!(&out[..3], b"hi!");
        let mut small = [0u8; 2];
        assert_eq!(read_in(&r, 1022, 1025, &mut small), (2, 1024));
        assert_eq!(&small, b"hi");
        assert_eq!(read_in(&r, 7, 7, &mut out), (0, 7));
    }

    #[test]
    fn corrupt_input_indices_read_as_empty_and_resynchronise() {
        let r = ring();
        let mut out = [0u8; 8];
        // Producer behind the consumer, or more than a ring ahead.
        assert_eq!(read_in(&r, 10, 5, &mut out), (0, 5));
        assert_eq!(read_in(&r, 0, 5000, &mut out), (0, 5000));
    }

    #[test]
    fn a_full_ring_takes_what_fits() {
        let mut r = ring();
        let (written, prod) = write_out(&mut r, 2046, 0, b"abcd");
        assert_eq!((written, prod), (2, 2048));
        let (written, _) = write_out(&mut r, 2048, 0, b"x");
        assert_eq!(written, 0);
    }
}
