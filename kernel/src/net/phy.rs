//! smoltcp's view of a NIC: a `smoltcp::phy::Device` over a driver's
//! [`NetDevice`]. A received frame is copied out of the driver's ring into
//! a buffer of this adapter (the driver gets its descriptor back at once);
//! a frame to send is built in a buffer here and handed to the driver,
//! which copies it into its ring. A full transmit ring means no transmit
//! token: smoltcp keeps the data and tries again on the next poll.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use drivers::net::{NetDevice, NetError, MAX_FRAME};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// A NIC as smoltcp polls it.
pub struct Phy {
    pub device: Box<dyn NetDevice>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// Frames the driver refused after smoltcp built them (not counted by
    /// the driver, which never saw them as queued).
    pub tx_refused: u64,
    /// Per listening port, the listening sockets still free in this pass:
    /// a connection request beyond them is dropped, not reset (see
    /// `pure::net::frame`).
    pub syn_room: Vec<(u16, usize)>,
    /// Connection requests dropped for want of a listening socket.
    pub syn_dropped: u64,
}

impl Phy {
    pub fn new(device: Box<dyn NetDevice>) -> Phy {
        Phy {
            device,
            rx: vec![0; MAX_FRAME],
            tx: vec![0; MAX_FRAME],
            tx_refused: 0,
            syn_room: Vec::new(),
            syn_dropped: 0,
        }
    }
}

pub struct RxToken<'a> {
    frame: &'a [u8],
}

pub struct TxToken<'a> {
    device: &'a mut dyn NetDevice,
    buffer: &'a mut [u8],
    refused: &'a mut u64,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU it was given.
        let len = len.min(self.buffer.len());
        let result = f(&mut self.buffer[..len]);
        match self.device.transmit(&self.buffer[..len]) {
            Ok(()) => {}
            Err(NetError::Full) => *self.refused += 1,
            Err(error) => {
                *self.refused += 1;
                log::warn!("net: {}: frame not sent: {error}", self.device.name());
            }
        }
        result
    }
}

impl phy::Device for Phy {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = loop {
            let len = self.device.receive(&mut self.rx)?.min(self.rx.len());
            let Some(port) = pure::net::frame::tcp_syn_port(&self.rx[..len]) else {
                break len;
            };
            match self.syn_room.iter_mut().find(|(p, _)| *p == port) {
                Some((_, 0)) => self.syn_dropped += 1,
                Some((_, room)) => {
                    *room -= 1;
                    break len;
                }
                None => break len,
            }
        };
        Some((
            RxToken {
                frame: &self.rx[..len],
            },
            TxToken {
                device: self.device.as_mut(),
                buffer: &mut self.tx,
                refused: &mut self.tx_refused,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if !self.device.can_transmit() {
            return None;
        }
        Some(TxToken {
            device: self.device.as_mut(),
            buffer: &mut self.tx,
            refused: &mut self.tx_refused,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        // One frame per poll of the device per token: the budget is the
        // network thread's.
        caps.max_burst_size = None;
        caps
    }
}
