//! Realtek RTL8139 Fast Ethernet (10ec:8139), and QEMU's `rtl8139`
//! (`hw/net/rtl8139.c`), which models an RTL8139C+ (revision 0x20). The
//! driver uses the original "C mode" of the part: one receive ring that
//! the device fills with frames back to back, and four transmit buffers.
//! The C+ descriptor rings are left alone.
//!
//! Written from the register descriptions of the RTL8139C/D datasheets and
//! Realtek's RTL8139 programming guide: the offsets and bits in [`reg`],
//! [`cause`] and the private bit tables; the receive buffer (RBSTART,
//! CAPR, CBR, the 4-byte packet header, RCR.RBLEN and WRAP); the transmit
//! descriptors (TSAD0-3, TSD0-3 with the size in bits 12:0, OWN, TOK, TUN,
//! TABT). Where the datasheet is silent, QEMU's model and what the public
//! drivers do (Linux `8139too`, FreeBSD `rl`) settled it:
//!
//! - TCR writes are ignored while the transmitter is off (QEMU drops
//!   them), so CR.RE|TE is set *before* RCR and TCR, as Linux does;
//! - an RCR write resets the ring pointers in QEMU (CBR = 0, CAPR + 16 =
//!   0), and on the part turning the receiver off and on does; the receiver
//!   reset below does both, as Linux's does;
//! - QEMU sends a frame synchronously when TSD is written, but only from
//!   the descriptor its round-robin pointer names: the driver must fill
//!   TSD0, 1, 2, 3, 0... strictly in order;
//! - with RXOVW masked in IMR, QEMU holds frames back when the ring is
//!   nearly full instead of dropping them (`rtl8139_can_receive`): this
//!   driver leaves RXOVW masked. Frames the part did drop are counted from
//!   MPC, the missed-packet counter.
//!
//! # Registers
//!
//! The RTL8139 decodes its 256 bytes of registers both in I/O space (BAR
//! 0) and in memory space (BAR 1). The [`Hal`] has no port I/O, so the
//! driver maps BAR 1 with [`Hal::map_mmio`]; a function without a memory
//! BAR 1 is refused. Register accesses use the width the datasheet gives
//! each register (CR, CONFIG1 and MSR are bytes, CAPR/CBR/IMR/ISR are
//! 16-bit, the rest 32-bit; IDR and MAR are read and written as dwords).
//!
//! # Set-up
//!
//! Memory decoding on; interrupts masked and the receiver and transmitter
//! stopped (a boot ROM may have left them running); CONFIG1 = 0 (unlocked
//! through 9346CR), which powers the part on; CR.RST, waited for with a
//! deadline on [`Hal::now_ns`] and a poll count; bus mastering on; the
//! station address from IDR0-5; DMA memory; RBSTART and TSAD0-3;
//! MAR0-7 all ones (every multicast passes, the stack filters); MPC
//! cleared; CR = RE|TE; RCR; TCR; the interrupt line bound; IMR.
//!
//! # Receive ring
//!
//! One contiguous DMA area of [`RX_DMA_PAGES`] pages: the 8 KiB ring
//! (RCR.RBLEN = 00b, "8K + 16") and, because RCR.WRAP is set, room past its
//! end into which the device writes the rest of a frame that starts near
//! the end instead of wrapping it to the start (the datasheet asks for 16
//! bytes and 1.5 KiB; three pages give 4 KiB, which covers any frame
//! length the driver accepts, [`RX_MAX_LEN`]). So every frame lies in one
//! piece at its ring offset, and is copied out with one copy.
//!
//! Each entry is a 4-byte header (receive status in the low half, the
//! length including the 4-byte CRC in the high half), the frame, and the
//! CRC, padded to a multiple of 4. The driver keeps its own read offset; it
//! reads CBR (the device's write offset, taken modulo the ring length) to
//! learn how many bytes are written, walks the entries in that range
//! without touching a register, and then writes CAPR (its offset minus
//! 16, as the part wants it) once for the batch, before it reads CBR again.
//! CR.BUFE is not read: QEMU computes it from the same two pointers and
//! refuses a frame that would fill the ring to the last byte, so CBR equal
//! to the read offset means empty. (That the part never fills it
//! completely either is an assumption; FreeBSD's `rl` reads BUFE and
//! treats that case as a full ring.)
//!
//! # Transmission
//!
//! Four 2 KiB buffers (two DMA pages), used in turn. A frame is copied into
//! the next buffer, padded with zeros to 60 bytes, and sent by writing its
//! size (and an early-transmit threshold of 256 bytes) to the matching TSD,
//! which clears OWN. A buffer is free again once its TSD reports the frame
//! done (TOK, or TUN/TABT for a failure; each comes with OWN set): OWN
//! alone only says the frame reached the device's FIFO, and the final
//! status is what the counters need before the next TSD write erases it.
//! All four in flight is [`NetError::Full`]; the driver never waits.
//!
//! # Interrupts and lost wake-ups
//!
//! The RTL8139 has no MSI: it interrupts through INTx, which may be shared.
//! The handler reads ISR; zero means another device raised the line (all
//! ones: the device is gone). Otherwise it masks everything (IMR = 0),
//! acknowledges the causes it read by writing them back to ISR, and calls
//! the kernel's [`Waker`]. The network thread drains the ring and calls
//! `enable_interrupts`, which restores IMR.
//!
//! No frame is left behind by this: ISR latches causes whether or not they
//! are masked, and the device asserts its line while ISR & IMR is not zero
//! (QEMU re-evaluates that on every IMR write). A frame the device writes
//! after the handler's acknowledgement sets ISR.ROK again; if the thread's
//! last CBR read missed it, restoring IMR finds the cause pending and the
//! interrupt fires at once. Frames written before the acknowledgement are
//! behind CBR when the thread (woken after it) reads it. Every
//! acknowledgement comes with a wake-up, so a cause acknowledged while the
//! thread was busy (a shared line firing mid-drain) still brings it back.
//! Transmission works the same way: IMR normally leaves TOK/TER masked (an
//! interrupt per frame sent is not needed: buffers are reclaimed whenever
//! the stack transmits); once the stack has been refused for a full ring,
//! `enable_interrupts` adds TOK|TER, and a frame the device finishes after
//! the refusal latches TOK, so the stack is woken to try again.
//!
//! # A device that misbehaves
//!
//! Headers come from the device and are checked, never trusted: a status
//! without ROK or with an error bit, a length below an Ethernet header plus
//! CRC or above [`RX_MAX_LEN`], or an entry longer than what CBR says is
//! written, is counted in `rx_errors` and the receiver is reset (CR.RE off
//! and on, RCR rewritten, the read offset back to 0); the next
//! [`transmit`](NetDevice::transmit) returns [`NetError::Device`] with the
//! reason, for the kernel to log. A header still being written (length
//! 0xfff0, early receive, which RCR.RXFTH = 111b should rule out) is waited
//! for, but only [`RX_UNFINISHED_LIMIT`] times in a row. A frame longer than
//! the caller's buffer is skipped and counted in `rx_drops`. One `receive`
//! looks at no more than [`RX_SCAN_LIMIT`] entries, more than a full ring
//! of the smallest frames holds, so it cannot loop.
//!
//! # Not done
//!
//! C+ mode (descriptor rings, 64-bit addresses, checksum offload, VLAN),
//! promiscuous mode and a multicast filter (MAR is all ones), the
//! EEPROM (the address comes from IDR0-5, which the part loads from it),
//! MII/link configuration (autonegotiation is left as the part starts),
//! retransmission after TABT (TCR.CLRABT: an aborted frame is counted and
//! dropped), a watchdog for a transmitter that stops reporting TOK (all
//! four buffers would stay in flight and `transmit` would answer
//! [`NetError::Full`]), wake-on-LAN and power management. DMA memory above
//! 4 GiB is refused at probe time: RBSTART and TSAD hold 32-bit addresses,
//! and the kernel's `dma_alloc` does not ask for low memory.

use crate::hal::{BoundInterrupt, Dma, Hal, InterruptHandler, InterruptSource, XenBus, PAGE_SIZE};
use crate::mmio::MmioRegion;
use crate::net::{NetCounters, NetDevice, NetError, Waker, MAX_FRAME};
use crate::pci::{command, ConfigSpace, DeviceId, PciFunction};
use crate::{Device, Driver, ProbeError};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{fence, Ordering};

/// The devices this driver takes.
pub const RTL8139_IDS: &[DeviceId] = &[DeviceId::pci(0x10ec, 0x8139)];

/// The register window (BAR 1, as long as BAR 0's ports).
pub const REGISTER_WINDOW: usize = 0x100;

/// Bytes of the receive ring proper: RCR.RBLEN = 00b.
pub const RX_RING_LEN: usize = 8192;

/// Pages of the receive DMA area: the ring, the 16 bytes the datasheet
/// adds, and 1.5 KiB for a frame that runs past the end (RCR.WRAP).
pub const RX_DMA_PAGES: usize = (RX_RING_LEN + 16 + 1536).div_ceil(PAGE_SIZE);

/// The longest entry length (frame and CRC) accepted: what fits past the
/// last ring offset in the DMA area. Longer is a bad header.
pub const RX_MAX_LEN: usize = RX_DMA_PAGES * PAGE_SIZE - RX_RING_LEN;

/// The shortest entry length accepted: an Ethernet header and the CRC.
pub const RX_MIN_LEN: usize = 14 + CRC_LEN;

/// Entries one `receive` looks at, at most: more than a full ring of the
/// smallest entries (24 bytes each) holds.
pub const RX_SCAN_LIMIT: usize = RX_RING_LEN / 16;

/// Consecutive looks at a header still being written before it counts as
/// bad.
pub const RX_UNFINISHED_LIMIT: u32 = 16;

/// Transmit descriptors (TSD0-3 / TSAD0-3).
pub const TX_SLOTS: usize = 4;

/// Bytes of each transmit buffer, two to a page.
pub const TX_BUFFER_SIZE: usize = 2048;

/// Pages of the transmit DMA area.
pub const TX_DMA_PAGES: usize = TX_SLOTS * TX_BUFFER_SIZE / PAGE_SIZE;

/// Frames shorter than this are padded with zeros (the minimum Ethernet
/// frame without its CRC).
pub const MIN_FRAME: usize = 60;

/// How long the device may take to come back from CR.RST.
pub const RESET_TIMEOUT_NS: u64 = 10_000_000;

/// Polls of a register before a wait gives up even if the clock says
/// there is time left (a clock that does not move must not hang set-up).
pub const POLL_LIMIT: u32 = 1_000_000;

const CRC_LEN: usize = 4;
const HEADER_LEN: usize = 4;

// Every accepted entry, starting at the last ring offset, ends inside the
// receive DMA area; the largest frame the stack sends or takes fits.
const _: () = assert!(RX_RING_LEN - 4 + HEADER_LEN + RX_MAX_LEN <= RX_DMA_PAGES * PAGE_SIZE);
const _: () = assert!(RX_MAX_LEN >= MAX_FRAME + CRC_LEN);
const _: () = assert!(MAX_FRAME <= TX_BUFFER_SIZE && TX_BUFFER_SIZE <= 0x1fff);

/// Register offsets in the window.
pub mod reg {
    /// ID registers (station address), bytes 0-5: read as two dwords.
    pub const IDR0: usize = 0x00;
    pub const IDR4: usize = 0x04;
    /// Multicast filter, 8 bytes: written as two dwords.
    pub const MAR0: usize = 0x08;
    pub const MAR4: usize = 0x0c;
    /// Transmit status of descriptor 0; 1-3 follow, 4 bytes apart.
    pub const TSD0: usize = 0x10;
    /// Transmit start address of descriptor 0; 1-3 follow.
    pub const TSAD0: usize = 0x20;
    /// Receive buffer start address.
    pub const RBSTART: usize = 0x30;
    /// Command (byte).
    pub const CR: usize = 0x37;
    /// Current address of packet read (16-bit): the read offset - 16.
    pub const CAPR: usize = 0x38;
    /// Current buffer address (16-bit): the device's write offset.
    pub const CBR: usize = 0x3a;
    /// Interrupt mask (16-bit).
    pub const IMR: usize = 0x3c;
    /// Interrupt status (16-bit); writing 1s clears.
    pub const ISR: usize = 0x3e;
    /// Transmit configuration.
    pub const TCR: usize = 0x40;
    /// Receive configuration.
    pub const RCR: usize = 0x44;
    /// Missed packet counter (24 bits).
    pub const MPC: usize = 0x4c;
    /// 93C46 command register (byte): unlocks the CONFIG registers.
    pub const CR9346: usize = 0x50;
    /// CONFIG1 (byte).
    pub const CONFIG1: usize = 0x52;
    /// Media status (byte).
    pub const MSR: usize = 0x58;
}

/// CR bits.
mod cr {
    pub const TE: u8 = 1 << 2;
    pub const RE: u8 = 1 << 3;
    pub const RST: u8 = 1 << 4;
}

/// Interrupt causes (ISR, IMR).
pub mod cause {
    /// A frame was written to the ring.
    pub const ROK: u16 = 1 << 0;
    /// A frame with a CRC or alignment error was seen.
    pub const RER: u16 = 1 << 1;
    /// A frame was sent.
    pub const TOK: u16 = 1 << 2;
    /// A frame was aborted (excessive collisions) or underran.
    pub const TER: u16 = 1 << 3;
    /// The receive ring was full: a frame was lost.
    pub const RXOVW: u16 = 1 << 4;
    /// Packet underrun or link change.
    pub const PUN_LINKCHG: u16 = 1 << 5;
    /// The receive FIFO overflowed.
    pub const FOVW: u16 = 1 << 6;
    /// PCI system error.
    pub const SERR: u16 = 1 << 15;
}

/// What `enable_interrupts` always unmasks: frames in the ring and link
/// changes. RXOVW stays masked (see the module comment).
pub const IMR_BASE: u16 = cause::ROK | cause::PUN_LINKCHG;

/// Added after the stack was refused for a full transmit ring.
pub const IMR_TX: u16 = cause::TOK | cause::TER;

/// RCR bits.
mod rcr {
    pub const APM: u32 = 1 << 1;
    pub const AM: u32 = 1 << 2;
    pub const AB: u32 = 1 << 3;
    pub const WRAP: u32 = 1 << 7;
    /// MXDMA = 111b: unlimited DMA bursts.
    pub const MXDMA_UNLIMITED: u32 = 7 << 8;
    /// RBLEN = 00b: the 8K + 16 ring.
    pub const RBLEN_8K: u32 = 0 << 11;
    /// RXFTH = 111b: no early receive, a frame moves once it is whole.
    pub const RXFTH_NONE: u32 = 7 << 13;
}

/// RCR while receiving: frames to our address, multicast and broadcast
/// (not promiscuous), the 8 KiB ring with WRAP, whole-frame transfers.
pub const RCR_VALUE: u32 = rcr::APM
    | rcr::AM
    | rcr::AB
    | rcr::WRAP
    | rcr::MXDMA_UNLIMITED
    | rcr::RBLEN_8K
    | rcr::RXFTH_NONE;

/// TCR bits.
mod tcr {
    /// IFG = 11b: the IEEE 802.3 interframe gap (9.6 us / 960 ns).
    pub const IFG_96: u32 = 3 << 24;
    /// MXDMA = 110b: 1024-byte DMA bursts.
    pub const MXDMA_1024: u32 = 6 << 8;
    /// TXRR: retries are 16 + 16 * TXRR.
    pub const TXRR_SHIFT: u32 = 4;
}

/// TCR while transmitting: normal (not loopback) operation, CRC appended,
/// the values Linux uses (128 retries).
pub const TCR_VALUE: u32 = tcr::IFG_96 | tcr::MXDMA_1024 | 8 << tcr::TXRR_SHIFT;

/// TSD bits.
mod tsd {
    pub const SIZE_MASK: u32 = 0x1fff;
    /// Set by the device once the frame is in its FIFO (and at reset);
    /// cleared by the driver's TSD write, which sends.
    pub const OWN: u32 = 1 << 13;
    pub const TUN: u32 = 1 << 14;
    pub const TOK: u32 = 1 << 15;
    /// Early transmit threshold, in 32-byte units (0: 8 bytes).
    pub const ERTXTH_SHIFT: u32 = 16;
    pub const OWC: u32 = 1 << 29;
    pub const TABT: u32 = 1 << 30;
    /// Any of these: the device is done with the descriptor.
    pub const DONE: u32 = TOK | TUN | TABT;
}

/// The early transmit threshold: 256 bytes in the FIFO before sending.
const TSD_THRESHOLD: u32 = (256 / 32) << tsd::ERTXTH_SHIFT;

/// Receive status bits of a packet header.
mod rsr {
    pub const ROK: u16 = 1 << 0;
    /// Frame alignment, CRC, long, runt, invalid symbol: the frame is bad.
    pub const ERRORS: u16 = 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5;
}

/// The length field of a header the device is still writing (early
/// receive).
const RX_UNFINISHED: usize = 0xfff0;

/// 9346CR: EEM = 11b lets CONFIG0-4 be written; 00b is normal operation.
const CR9346_CONFIG_WRITE: u8 = 0xc0;
const CR9346_NORMAL: u8 = 0x00;

/// MSR.LINKB: set when the link is down.
const MSR_LINKB: u8 = 1 << 2;

/// What `transmit` reports after the receiver had to be reset.
const RX_BAD_HEADER: &str = "rtl8139: bad receive header; receiver reset";

/// The register window, checked at set-up to hold every register at a
/// 4-byte aligned base, so that the accesses below, all at constant
/// offsets of their natural alignment inside it, cannot fail; were one to,
/// a read gives 0 and a write is dropped.
struct Regs(MmioRegion);

impl Regs {
    fn new(region: MmioRegion) -> Result<Regs, ProbeError> {
        if region.len() < REGISTER_WINDOW || !(region.base().as_ptr() as usize).is_multiple_of(4) {
            return Err(ProbeError::Device(
                "rtl8139: register window short or misaligned",
            ));
        }
        Ok(Regs(region))
    }

    fn read8(&self, offset: usize) -> u8 {
        self.0.read8(offset).unwrap_or(0)
    }

    fn read16(&self, offset: usize) -> u16 {
        self.0.read16(offset).unwrap_or(0)
    }

    fn read32(&self, offset: usize) -> u32 {
        self.0.read32(offset).unwrap_or(0)
    }

    fn write8(&self, offset: usize, value: u8) {
        self.0.write8(offset, value).ok();
    }

    fn write16(&self, offset: usize, value: u16) {
        self.0.write16(offset, value).ok();
    }

    fn write32(&self, offset: usize, value: u32) {
        self.0.write32(offset, value).ok();
    }

    /// A second handle on the same window, for the interrupt handler.
    fn alias(&self) -> Result<Regs, ProbeError> {
        Ok(Regs(self.0.subregion(0, self.0.len())?))
    }
}

/// What the interrupt handler works with, leaked at bind time and freed
/// only after the interrupt is unbound.
struct IrqContext {
    regs: Regs,
    waker: Waker,
}

struct Irq {
    bound: BoundInterrupt,
    context: NonNull<IrqContext>,
}

/// The interrupt handler (interrupt context): see the module comment.
fn interrupt(context: usize) {
    // SAFETY: `context` is the pointer `Box::leak` gave in
    // `Rtl8139::set_up`; the box is freed only after `unbind_interrupt`
    // returned, so it is live whenever the handler runs; it is only read
    // here, and the thread side takes no `&mut` to it.
    let context = unsafe { &*(context as *const IrqContext) };
    let causes = context.regs.read16(reg::ISR);
    // Zero: the shared line was someone else's. All ones: the device is
    // gone (a master abort), and not asserting anything.
    if causes == 0 || causes == u16::MAX {
        return;
    }
    context.regs.write16(reg::IMR, 0);
    context.regs.write16(reg::ISR, causes);
    context.waker.wake();
}

/// Polls `done` until it holds, `timeout_ns` passes on the Hal's clock, or
/// [`POLL_LIMIT`] polls were made.
fn poll(hal: &dyn Hal, timeout_ns: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = hal.now_ns().saturating_add(timeout_ns);
    for _ in 0..POLL_LIMIT {
        if done() {
            return true;
        }
        if hal.now_ns() >= deadline {
            return done();
        }
        core::hint::spin_loop();
    }
    false
}

/// Masks every interrupt cause, stops both DMA engines and acknowledges
/// whatever is latched.
fn quiesce(regs: &Regs) {
    regs.write16(reg::IMR, 0);
    regs.write8(reg::CR, 0);
    regs.write16(reg::ISR, u16::MAX);
    // A read flushes the posted writes.
    regs.read8(reg::CR);
}

/// CONFIG1 = 0: out of the power-down and sleep states of the early parts
/// (bits 0 and 1 there), PME off. The CONFIG registers are writable only
/// while 9346CR says so.
fn power_on(regs: &Regs) {
    regs.write8(reg::CR9346, CR9346_CONFIG_WRITE);
    regs.write8(reg::CONFIG1, 0);
    regs.write8(reg::CR9346, CR9346_NORMAL);
}

/// CR.RST, waiting (bounded) for it to clear.
fn reset(regs: &Regs, hal: &dyn Hal) -> Result<(), ProbeError> {
    regs.write8(reg::CR, cr::RST);
    if poll(hal, RESET_TIMEOUT_NS, || regs.read8(reg::CR) & cr::RST == 0) {
        Ok(())
    } else {
        Err(ProbeError::Device(
            "rtl8139: the device did not come back from reset",
        ))
    }
}

/// The station address from IDR0-5 (loaded from the EEPROM by the part,
/// from `mac=` by QEMU), which must be a unicast address other than zero.
fn read_mac(regs: &Regs) -> Result<[u8; 6], ProbeError> {
    let [a, b, c, d] = regs.read32(reg::IDR0).to_le_bytes();
    let [e, f, _, _] = regs.read32(reg::IDR4).to_le_bytes();
    let mac = [a, b, c, d, e, f];
    if mac == [0; 6] || mac[0] & 1 != 0 {
        return Err(ProbeError::Device("rtl8139: no valid station address"));
    }
    Ok(mac)
}

/// The receive area, then the transmit buffers, each below 4 GiB (the
/// device's address registers are 32 bits wide). On failure returns what
/// it got.
fn alloc_memory(hal: &dyn Hal) -> Result<Vec<Dma>, ProbeError> {
    let mut memory = Vec::with_capacity(2);
    let fail = |memory: Vec<Dma>, error: ProbeError| {
        for dma in memory {
            hal.dma_free(dma);
        }
        Err(error)
    };
    for pages in [RX_DMA_PAGES, TX_DMA_PAGES] {
        match hal.dma_alloc(pages) {
            Ok(dma) => memory.push(dma),
            Err(error) => return fail(memory, error.into()),
        }
    }
    let reachable = |dma: &Dma| {
        dma.device_addr
            .checked_add(dma.len() as u64)
            .is_some_and(|end| end <= 1 << 32)
            && dma.device_addr.is_multiple_of(4)
    };
    if !memory.iter().all(reachable) {
        return fail(
            memory,
            ProbeError::Device(
                "rtl8139: DMA memory above 4 GiB, past the device's 32-bit addresses",
            ),
        );
    }
    Ok(memory)
}

/// What the entry at the read offset turned out to be.
enum Entry {
    /// A good frame, copied into the caller's buffer: its length.
    Frame(usize),
    /// A good frame not delivered (longer than the caller's buffer).
    Skipped,
    /// A header the device is still writing.
    Unfinished,
    /// A header that makes no sense: the receiver must be reset.
    Bad,
}

/// A set-up RTL8139: implements [`NetDevice`] for the kernel's network
/// thread.
pub struct Rtl8139 {
    name: String,
    mac: [u8; 6],
    regs: Regs,
    /// The receive area ([`RX_DMA_PAGES`]), then the transmit buffers
    /// ([`TX_DMA_PAGES`]).
    memory: Vec<Dma>,
    /// The receive area, for volatile header reads (the device writes it).
    rx_view: MmioRegion,
    /// Ring offset of the next entry (a multiple of 4, below
    /// [`RX_RING_LEN`]); CAPR holds it minus 16 once written back.
    rx_offset: usize,
    /// Bytes from `rx_offset` that the last CBR read said are written.
    rx_known: usize,
    /// Entries taken since CAPR was last written.
    rx_unreturned: bool,
    /// Consecutive looks at an unfinished header.
    rx_unfinished: u32,
    /// Next transmit descriptor to fill (the device's round-robin pointer).
    tx_next: usize,
    /// Oldest descriptor in flight.
    tx_clean: usize,
    tx_in_flight: usize,
    /// Bytes written to TSD for each descriptor in flight.
    tx_size: [u16; TX_SLOTS],
    /// The stack was refused for a full ring since the last
    /// `enable_interrupts`: unmask TOK/TER so it hears when there is room.
    tx_refused: bool,
    /// MPC at the last look.
    missed: u32,
    /// A problem found while receiving, reported by the next `transmit`.
    pending_error: Option<&'static str>,
    counters: NetCounters,
    irq: Option<Irq>,
}

// SAFETY: the Rtl8139 owns its DMA areas (the Hal gave them exclusively)
// and its leaked interrupt context; the raw pointers in `Dma`,
// `MmioRegion` and `Irq` carry no affinity to a thread. The interrupt
// handler shares only the context, which it reads, and the registers,
// which both sides reach through volatile accesses.
unsafe impl Send for Rtl8139 {}

impl Rtl8139 {
    /// Takes the RTL8139 `function`: maps BAR 1, enables memory decoding
    /// and bus mastering in its command register, powers it on, resets
    /// it, reads its address, sets up the receive ring and the transmit
    /// buffers, binds its INTx line and unmasks its interrupts. On `Err`
    /// everything taken is given back (and the command register restored),
    /// except the register mapping, which the Hal cannot undo, and DMA
    /// memory the device might still reach because it did not come back
    /// from reset (leaked, not freed).
    pub fn new(
        function: &PciFunction,
        config: &dyn ConfigSpace,
        hal: &dyn Hal,
    ) -> Result<Rtl8139, ProbeError> {
        if !DeviceId::any(RTL8139_IDS, function) {
            return Err(ProbeError::Device("rtl8139: not an RTL8139"));
        }
        let bar = function
            .bar(1)
            .filter(|bar| bar.is_memory())
            .ok_or(ProbeError::Device(
                "rtl8139: no memory bar1, and the driver has no port I/O for bar0",
            ))?;
        if bar.base == 0 {
            return Err(ProbeError::Device("rtl8139: bar1 not assigned"));
        }
        if bar.size < REGISTER_WINDOW as u64 {
            return Err(ProbeError::Device(
                "rtl8139: bar1 smaller than the 256-byte register window",
            ));
        }
        let header = &function.header;
        if header.interrupt_pin == 0 || header.interrupt_line == 0xff {
            return Err(ProbeError::Device("rtl8139: no INTx line routed"));
        }
        let regs = Regs::new(MmioRegion::map(hal, bar.base, REGISTER_WINDOW)?)?;
        let address = function.address;
        let saved = config.command(address);
        // Registers first; bus mastering only once the device is quiet.
        config.set_command(address, (saved | command::MEMORY) & !command::INTX_DISABLE);
        let result = Self::set_up(function, regs, config, hal);
        if result.is_err() {
            config.set_command(address, saved);
        }
        result
    }

    fn set_up(
        function: &PciFunction,
        regs: Regs,
        config: &dyn ConfigSpace,
        hal: &dyn Hal,
    ) -> Result<Rtl8139, ProbeError> {
        // A boot ROM may have left the device receiving into its memory.
        quiesce(&regs);
        power_on(&regs);
        reset(&regs, hal)?;
        quiesce(&regs);
        let address = function.address;
        config.set_command(address, config.command(address) | command::BUS_MASTER);

        let mac = read_mac(&regs)?;
        let memory = alloc_memory(hal)?;
        // SAFETY: the Hal promises RX_DMA_PAGES pages mapped at `virt`,
        // exclusively ours until `dma_free` (which happens only after the
        // device is silenced and this view is no longer used); no Rust
        // reference points into them, only volatile accesses, copies
        // through raw pointers, and the device.
        let rx_view = unsafe { MmioRegion::new(memory[0].virt, RX_DMA_PAGES * PAGE_SIZE) };
        let mut nic = Rtl8139 {
            name: format!("rtl8139 {}", function.address),
            mac,
            regs,
            memory,
            rx_view,
            rx_offset: 0,
            rx_known: 0,
            rx_unreturned: false,
            rx_unfinished: 0,
            tx_next: 0,
            tx_clean: 0,
            tx_in_flight: 0,
            tx_size: [0; TX_SLOTS],
            tx_refused: false,
            missed: 0,
            pending_error: None,
            counters: NetCounters::default(),
            irq: None,
        };
        nic.start();

        let context = match nic.regs.alias() {
            Ok(regs) => Box::new(IrqContext {
                regs,
                waker: hal.net_waker(),
            }),
            Err(error) => {
                nic.release(hal).ok();
                return Err(error);
            }
        };
        let context = NonNull::from(Box::leak(context));
        let handler = InterruptHandler {
            func: interrupt,
            context: context.as_ptr() as usize,
        };
        let line = function.header.interrupt_line;
        match hal.bind_interrupt(InterruptSource::Legacy { line }, handler) {
            Ok(bound) => nic.irq = Some(Irq { bound, context }),
            Err(error) => {
                // SAFETY: the handler was never bound, so nothing else
                // holds the pointer `Box::leak` returned.
                drop(unsafe { Box::from_raw(context.as_ptr()) });
                nic.release(hal).ok();
                return Err(error.into());
            }
        }
        nic.regs.write16(reg::IMR, IMR_BASE);
        Ok(nic)
    }

    /// Silences the device (interrupts masked, DMA stopped, reset), unbinds
    /// its interrupt and frees its memory. If the reset does not complete
    /// the memory is leaked (the device might still reach it) and the
    /// interrupt stays bound to a context that stays valid.
    pub fn release(mut self, hal: &dyn Hal) -> Result<(), ProbeError> {
        quiesce(&self.regs);
        reset(&self.regs, hal)?;
        quiesce(&self.regs);
        for dma in self.memory.drain(..) {
            hal.dma_free(dma);
        }
        if let Some(irq) = self.irq.take() {
            hal.unbind_interrupt(irq.bound)?;
            // SAFETY: the interrupt is unbound, so the handler no longer
            // runs with this pointer, which `Box::leak` gave.
            drop(unsafe { Box::from_raw(irq.context.as_ptr()) });
        }
        Ok(())
    }

    /// The binding of the interrupt (for the kernel's records and tests).
    pub fn bound_interrupt(&self) -> Option<BoundInterrupt> {
        self.irq.as_ref().map(|irq| irq.bound)
    }

    fn rx_address(&self) -> u64 {
        self.memory[0].device_addr
    }

    /// Transmit buffer `slot`: where the driver reaches it and the device
    /// address.
    fn tx_buffer(&self, slot: usize) -> (*mut u8, u64) {
        let tx = &self.memory[1];
        let offset = (slot % TX_SLOTS) * TX_BUFFER_SIZE;
        // SAFETY: offset + TX_BUFFER_SIZE <= TX_DMA_PAGES * PAGE_SIZE, inside
        // the transmit area.
        let virt = unsafe { tx.virt.as_ptr().add(offset) };
        (virt, tx.device_addr + offset as u64)
    }

    /// Programs the buffers and starts both engines (CR before RCR and
    /// TCR: see the module comment).
    fn start(&mut self) {
        // Checked below 4 GiB by `alloc_memory`.
        self.regs.write32(reg::RBSTART, self.rx_address() as u32);
        for slot in 0..TX_SLOTS {
            let (_, address) = self.tx_buffer(slot);
            self.regs.write32(reg::TSAD0 + 4 * slot, address as u32);
        }
        self.regs.write32(reg::MAR0, u32::MAX);
        self.regs.write32(reg::MAR4, u32::MAX);
        self.regs.write32(reg::MPC, 0);
        self.regs.write8(reg::CR, cr::RE | cr::TE);
        self.regs.write32(reg::RCR, RCR_VALUE);
        self.regs.write32(reg::TCR, TCR_VALUE);
        self.regs.write16(reg::ISR, u16::MAX);
    }

    /// After a header that makes no sense: the receiver off and on, RCR
    /// rewritten (which resets the ring pointers), reading from offset 0.
    fn reset_rx(&mut self) {
        self.counters.rx_errors += 1;
        self.regs.write8(reg::CR, cr::TE);
        self.regs.write8(reg::CR, cr::RE | cr::TE);
        self.regs.write32(reg::RCR, RCR_VALUE);
        self.rx_offset = 0;
        self.rx_known = 0;
        self.rx_unreturned = false;
        self.rx_unfinished = 0;
        self.pending_error = Some(RX_BAD_HEADER);
    }

    /// Bytes written from the read offset on, by CBR.
    fn rx_written(&self) -> usize {
        let write = usize::from(self.regs.read16(reg::CBR)) % RX_RING_LEN;
        // The entries below CBR after it.
        fence(Ordering::Acquire);
        (write + RX_RING_LEN - self.rx_offset) % RX_RING_LEN
    }

    /// Writes CAPR to give the device the entries taken since the last
    /// write.
    fn give_back_rx(&mut self) {
        if !self.rx_unreturned {
            return;
        }
        // Done with the entries (the copies read them) before the device
        // may overwrite them.
        fence(Ordering::SeqCst);
        let capr = (self.rx_offset as u16).wrapping_sub(16);
        self.regs.write16(reg::CAPR, capr);
        self.rx_unreturned = false;
    }

    /// The entry at the read offset, which lies within the `rx_known` bytes
    /// the device has written; copied into `buf` if it is a good frame
    /// that fits. Moves the read offset past it unless it is unfinished or
    /// bad.
    fn take_rx(&mut self, buf: &mut [u8]) -> Entry {
        let offset = self.rx_offset;
        let header = self.rx_view.read32(offset).unwrap_or(0);
        let status = header as u16;
        let length = (header >> 16) as usize;
        if length == RX_UNFINISHED {
            // Look again after the next CBR read.
            self.rx_known = 0;
            self.rx_unfinished += 1;
            if self.rx_unfinished > RX_UNFINISHED_LIMIT {
                return Entry::Bad;
            }
            return Entry::Unfinished;
        }
        let entry = (HEADER_LEN + length).next_multiple_of(4);
        if status & rsr::ROK == 0
            || status & rsr::ERRORS != 0
            || !(RX_MIN_LEN..=RX_MAX_LEN).contains(&length)
            || entry > self.rx_known
        {
            return Entry::Bad;
        }
        let data = length - CRC_LEN;
        let result = if data > buf.len() {
            self.counters.rx_drops += 1;
            Entry::Skipped
        } else {
            // SAFETY: offset <= RX_RING_LEN - 4 and data < RX_MAX_LEN, so
            // the source lies inside the receive area (the assertion at the
            // top of the file); `buf` holds at least `data` bytes and is not
            // DMA memory, so they do not overlap. The device does not write
            // these bytes until CAPR moves past them.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.memory[0].virt.as_ptr().add(offset + HEADER_LEN),
                    buf.as_mut_ptr(),
                    data,
                )
            };
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += data as u64;
            Entry::Frame(data)
        };
        self.rx_offset = (offset + entry) % RX_RING_LEN;
        self.rx_known -= entry;
        self.rx_unreturned = true;
        self.rx_unfinished = 0;
        result
    }

    /// Takes back the transmit descriptors the device has finished,
    /// oldest first, counting what they sent.
    fn reclaim_tx(&mut self) {
        while self.tx_in_flight > 0 {
            let slot = self.tx_clean;
            let status = self.regs.read32(reg::TSD0 + 4 * slot);
            // The device's until it sets OWN and a final status.
            if status & tsd::OWN == 0 || status & tsd::DONE == 0 {
                break;
            }
            if status & tsd::TOK != 0 && status & (tsd::TABT | tsd::OWC) == 0 {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += u64::from(self.tx_size[slot]);
            } else {
                self.counters.tx_errors += 1;
            }
            self.tx_clean = (slot + 1) % TX_SLOTS;
            self.tx_in_flight -= 1;
        }
    }

    /// Adds the frames MPC counted since the last look to `rx_drops`.
    fn count_missed(&mut self) {
        let missed = self.regs.read32(reg::MPC) & 0x00ff_ffff;
        let new = missed.wrapping_sub(self.missed) & 0x00ff_ffff;
        self.counters.rx_drops += u64::from(new);
        self.missed = missed;
    }
}

impl Drop for Rtl8139 {
    /// Without the Hal nothing can be freed: the memory and the interrupt
    /// context are leaked, which is safe; the device is silenced so that it
    /// neither reaches the memory nor interrupts. [`Rtl8139::release`]
    /// returns everything.
    fn drop(&mut self) {
        quiesce(&self.regs);
    }
}

impl NetDevice for Rtl8139 {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&self) -> bool {
        self.regs.read8(reg::MSR) & MSR_LINKB == 0
    }

    /// Reads CBR only when the entries it last reported are used up, and
    /// gives those back through CAPR first. Anything the device wrote
    /// after the last CBR read raised ISR.ROK after the handler's
    /// acknowledgement, so `enable_interrupts` brings the thread back for
    /// it.
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        for _ in 0..RX_SCAN_LIMIT {
            if self.rx_known == 0 {
                self.give_back_rx();
                self.rx_known = self.rx_written();
                if self.rx_known == 0 {
                    return None;
                }
            }
            match self.take_rx(buf) {
                Entry::Frame(len) => return Some(len),
                Entry::Skipped => {}
                Entry::Unfinished => return None,
                Entry::Bad => {
                    self.reset_rx();
                    return None;
                }
            }
        }
        self.give_back_rx();
        None
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if let Some(why) = self.pending_error.take() {
            return Err(NetError::Device(why));
        }
        if frame.len() > MAX_FRAME {
            return Err(NetError::TooLong(frame.len()));
        }
        if frame.is_empty() {
            return Err(NetError::Device("rtl8139: empty frame"));
        }
        self.reclaim_tx();
        if self.tx_in_flight == TX_SLOTS {
            self.tx_refused = true;
            self.counters.tx_drops += 1;
            return Err(NetError::Full);
        }
        let slot = self.tx_next;
        let (target, _) = self.tx_buffer(slot);
        let size = frame.len().max(MIN_FRAME);
        // SAFETY: `target` is a TX_BUFFER_SIZE-byte buffer of our DMA area
        // and size <= MAX_FRAME < TX_BUFFER_SIZE; the device does not read
        // it: the descriptor is not in flight (its frame was reclaimed, or
        // it was never used). `frame` is not DMA memory, so no overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(frame.as_ptr(), target, frame.len());
            core::ptr::write_bytes(target.add(frame.len()), 0, size - frame.len());
        }
        // The buffer in memory before the device may fetch it.
        fence(Ordering::SeqCst);
        self.regs.write32(
            reg::TSD0 + 4 * slot,
            size as u32 & tsd::SIZE_MASK | TSD_THRESHOLD,
        );
        self.tx_size[slot] = size as u16;
        self.tx_next = (slot + 1) % TX_SLOTS;
        self.tx_in_flight += 1;
        Ok(())
    }

    fn can_transmit(&mut self) -> bool {
        self.reclaim_tx();
        let room = self.tx_in_flight < TX_SLOTS;
        if !room {
            self.tx_refused = true;
        }
        room
    }

    fn enable_interrupts(&mut self) {
        self.give_back_rx();
        self.reclaim_tx();
        self.count_missed();
        let mut mask = IMR_BASE;
        if self.tx_refused {
            mask |= IMR_TX;
            self.tx_refused = false;
        }
        self.regs.write16(reg::IMR, mask);
    }

    fn counters(&self) -> NetCounters {
        self.counters
    }
}

/// The RTL8139 driver for [`crate::bind`].
pub struct Rtl8139Driver;

impl Rtl8139Driver {
    /// The whole probe: [`Rtl8139::new`], then the interface handed to
    /// the kernel with [`Hal::attach_net`]. If the kernel refuses it, it
    /// has dropped the device, which silences it (see [`Rtl8139`]'s
    /// `Drop`).
    pub fn probe_pci(
        &self,
        function: &PciFunction,
        config: &dyn ConfigSpace,
        hal: &dyn Hal,
    ) -> Result<(), ProbeError> {
        super::probe_pci_nic(&Device::Pci(function), hal, Some(config), Rtl8139::new)
    }
}

impl Driver for Rtl8139Driver {
    fn name(&self) -> &'static str {
        "rtl8139"
    }

    fn matches(&self, device: &Device<'_>) -> bool {
        matches!(device, Device::Pci(function) if DeviceId::any(RTL8139_IDS, function))
    }

    /// Sets the card up ([`Rtl8139Driver::probe_pci`]); it needs the PCI
    /// configuration space for bus mastering and memory decoding.
    fn probe(
        &self,
        device: &Device<'_>,
        hal: &dyn Hal,
        _xen: Option<&dyn XenBus>,
        pci: Option<&dyn ConfigSpace>,
    ) -> Result<(), ProbeError> {
        super::probe_pci_nic(device, hal, pci, Rtl8139::new)
    }
}

#[cfg(test)]
mod tests {
    //! A fake RTL8139 after QEMU's model: the register window is host
    //! memory behind [`FakeHal::add_mmio`]; [`TestHal`] plays the device
    //! during the driver's reset wait (CR.RST clearing and what QEMU's
    //! reset sets) each time the driver reads the clock, and hands out DMA
    //! memory at device addresses below 4 GiB; [`FakeDevice`] plays the
    //! DMA engines: it writes entries into the ring at CBR as QEMU does
    //! with RCR.WRAP (linearly past the end, CBR then rounded up to 4 and
    //! wrapped), honours CAPR for free space, and sends from the TSD its
    //! round-robin pointer names. Plain memory does not clear ISR bits
    //! written with 1, nor reset the ring on an RCR write: tests look at
    //! the last value written, and call [`FakeDevice::reset_rx_ring`] where
    //! QEMU would reset the pointers.

    use super::*;
    use crate::fake::{FakeFunction, FakeHal, FakePci, FAKE_DMA_BASE};
    use crate::hal::HalError;
    use crate::pci::PciAddress;
    use core::cell::Cell;
    use core::sync::atomic::AtomicUsize;
    use std::rc::Rc;
    use std::vec;
    use std::vec::Vec;

    const BAR1: u64 = 0xfebf_1000;
    const NIC: PciAddress = PciAddress::new(0, 4, 0);
    /// What the reset puts in IDR0-5 (QEMU's `mac=`).
    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];
    /// How far the clock moves each time the driver reads it.
    const TICK_NS: u64 = 1_000;
    /// Where the TestHal's DMA memory appears to the device.
    const LOW_DMA_BASE: u64 = 0x1000_0000;
    const DMA_SHIFT: u64 = FAKE_DMA_BASE - LOW_DMA_BASE;

    fn count_wake(context: usize) {
        // SAFETY: `context` points at the boxed counter of a `TestHal`,
        // which outlives every Rtl8139 made with it.
        let wakes = unsafe { &*(context as *const AtomicUsize) };
        wakes.fetch_add(1, Ordering::SeqCst);
    }

    /// An RTL8139 as QEMU's `rtl8139` presents it: BAR 0 256 ports, BAR 1
    /// 256 bytes of memory, INTA on IRQ 11.
    fn rtl8139(mmio: u32, io: u32) -> FakeFunction {
        FakeFunction::device(0x10ec, 0x8139, 0x02, 0x00, 0x00)
            .revision(0x20)
            .subsystem(0x1af4, 0x1100)
            .irq(11, 1)
            .command(0x0007)
            .bar_io(0, io, 0x100)
            .bar_mem32(1, mmio, 0x100, false)
    }

    struct TestHal {
        fake: FakeHal,
        reset_completes: Cell<bool>,
        mac: Cell<[u8; 6]>,
        /// Give DMA memory above 4 GiB (the plain fake's addresses).
        high_dma: Cell<bool>,
        fail_bind: Cell<bool>,
        wakes: Box<AtomicUsize>,
        /// QEMU's `currTxDesc`, which its reset clears.
        tx_current: Rc<Cell<usize>>,
    }

    impl TestHal {
        fn new() -> Self {
            let fake = FakeHal::new();
            fake.add_mmio(BAR1, REGISTER_WINDOW);
            TestHal {
                fake,
                reset_completes: Cell::new(true),
                mac: Cell::new(MAC),
                high_dma: Cell::new(false),
                fail_bind: Cell::new(false),
                wakes: Box::new(AtomicUsize::new(0)),
                tx_current: Rc::new(Cell::new(0)),
            }
        }

        fn regs(&self) -> MmioRegion {
            MmioRegion::map(&self.fake, BAR1, REGISTER_WINDOW).expect("the window is backed")
        }

        /// The device's side of a wait: QEMU's `rtl8139_reset` when CR.RST
        /// was written.
        fn step(&self) {
            let regs = self.regs();
            let command = regs.read8(reg::CR).expect("in the window");
            if command & cr::RST == 0 || !self.reset_completes.get() {
                return;
            }
            for (i, byte) in self.mac.get().into_iter().enumerate() {
                regs.write8(reg::IDR0 + i, byte).expect("in the window");
            }
            regs.write16(reg::IMR, 0).expect("in the window");
            regs.write16(reg::ISR, 0).expect("in the window");
            for slot in 0..TX_SLOTS {
                regs.write32(reg::TSD0 + 4 * slot, tsd::OWN)
                    .expect("in the window");
            }
            self.tx_current.set(0);
            for register in [reg::RBSTART, reg::RCR, reg::TCR] {
                regs.write32(register, 0).expect("in the window");
            }
            regs.write16(reg::CAPR, 0xfff0).expect("in the window");
            regs.write16(reg::CBR, 0).expect("in the window");
            regs.write8(reg::CR, 0).expect("in the window");
        }

        fn wakes(&self) -> usize {
            self.wakes.load(Ordering::SeqCst)
        }
    }

    // SAFETY: every promise is the FakeHal's, to which this delegates; the
    // device addresses it moves below 4 GiB are moved back before the fake
    // sees them again, and no two allocations share one.
    unsafe impl Hal for TestHal {
        fn dma_alloc(&self, pages: usize) -> Result<Dma, HalError> {
            let mut dma = self.fake.dma_alloc(pages)?;
            if !self.high_dma.get() {
                dma.device_addr -= DMA_SHIFT;
            }
            Ok(dma)
        }

        fn dma_free(&self, mut dma: Dma) {
            if dma.device_addr < FAKE_DMA_BASE {
                dma.device_addr += DMA_SHIFT;
            }
            self.fake.dma_free(dma)
        }

        fn device_address(&self, virt: *const u8) -> Option<u64> {
            self.fake.device_address(virt).map(|a| a - DMA_SHIFT)
        }

        fn map_mmio(&self, phys: u64, len: usize) -> Result<NonNull<u8>, HalError> {
            self.fake.map_mmio(phys, len)
        }

        fn bind_interrupt(
            &self,
            source: InterruptSource,
            handler: InterruptHandler,
        ) -> Result<BoundInterrupt, HalError> {
            if self.fail_bind.get() {
                return Err(HalError::NoVector);
            }
            self.fake.bind_interrupt(source, handler)
        }

        fn unbind_interrupt(&self, bound: BoundInterrupt) -> Result<(), HalError> {
            self.fake.unbind_interrupt(bound)
        }

        fn net_waker(&self) -> Waker {
            Waker {
                func: count_wake,
                context: &*self.wakes as *const AtomicUsize as usize,
            }
        }

        fn now_ns(&self) -> u64 {
            self.step();
            self.fake.advance(TICK_NS);
            self.fake.now_ns()
        }
    }

    /// The DMA side of the device.
    struct FakeDevice {
        regs: MmioRegion,
        tx_current: Rc<Cell<usize>>,
        /// Entries written past the end of the ring (RCR.WRAP at work).
        wrapped: Cell<usize>,
    }

    impl FakeDevice {
        fn new(hal: &TestHal) -> Self {
            FakeDevice {
                regs: hal.regs(),
                tx_current: hal.tx_current.clone(),
                wrapped: Cell::new(0),
            }
        }

        fn get8(&self, offset: usize) -> u8 {
            self.regs.read8(offset).expect("in the window")
        }

        fn get16(&self, offset: usize) -> u16 {
            self.regs.read16(offset).expect("in the window")
        }

        fn get32(&self, offset: usize) -> u32 {
            self.regs.read32(offset).expect("in the window")
        }

        fn set16(&self, offset: usize, value: u16) {
            self.regs.write16(offset, value).expect("in the window");
        }

        fn set32(&self, offset: usize, value: u32) {
            self.regs.write32(offset, value).expect("in the window");
        }

        fn raise(&self, causes: u16) {
            self.set16(reg::ISR, self.get16(reg::ISR) | causes);
        }

        /// `len` bytes at device address `address`, which must lie in the
        /// driver's DMA memory (else the driver programmed a bad address).
        fn dma(nic: &Rtl8139, address: u64, len: usize) -> MmioRegion {
            for dma in &nic.memory {
                let start = dma.device_addr;
                let end = start + dma.len() as u64;
                if address >= start && address + len as u64 <= end {
                    let offset = (address - start) as usize;
                    // SAFETY: inside a live allocation of the fake Hal,
                    // reached only through volatile accesses, as the
                    // device would.
                    return unsafe { MmioRegion::new(dma.virt.add(offset), len) };
                }
            }
            panic!("device address {address:#x}+{len:#x} outside the driver's dma memory");
        }

        fn cbr(&self) -> usize {
            usize::from(self.get16(reg::CBR))
        }

        /// QEMU's reaction to an RCR write: both ring pointers at 0.
        fn reset_rx_ring(&self) {
            self.set16(reg::CBR, 0);
            self.set16(reg::CAPR, 0xfff0);
        }

        /// Writes an entry at CBR: `header`, then `body`, and moves CBR
        /// `advance` bytes on (rounded up to 4, wrapped), as QEMU does
        /// with RCR.WRAP; raises ROK.
        fn write_entry(&self, nic: &Rtl8139, header: u32, body: &[u8], advance: usize) {
            assert_eq!(self.get32(reg::RCR) & rcr::WRAP, rcr::WRAP);
            assert_ne!(self.get8(reg::CR) & cr::RE, 0, "receiver off");
            let cbr = self.cbr();
            let base = u64::from(self.get32(reg::RBSTART));
            let window = Self::dma(nic, base + cbr as u64, HEADER_LEN + body.len());
            window.write32(0, header).expect("inside");
            for (i, &byte) in body.iter().enumerate() {
                window.write8(HEADER_LEN + i, byte).expect("inside");
            }
            if cbr + advance > RX_RING_LEN {
                self.wrapped.set(self.wrapped.get() + 1);
            }
            let next = (cbr + advance).next_multiple_of(4) % RX_RING_LEN;
            self.set16(reg::CBR, next as u16);
            self.raise(cause::ROK);
        }

        /// Receives `frame` as QEMU does; false (RXOVW raised, MPC counted)
        /// when the ring has no room for it.
        fn deliver(&self, nic: &Rtl8139, frame: &[u8]) -> bool {
            let read = (usize::from(self.get16(reg::CAPR)) + 16) % RX_RING_LEN;
            let available = (RX_RING_LEN + read - self.cbr()) % RX_RING_LEN;
            let size = frame.len();
            if available != 0 && (size + 8).next_multiple_of(4) >= available {
                self.raise(cause::RXOVW);
                self.set32(reg::MPC, self.get32(reg::MPC) + 1);
                return false;
            }
            let header = u32::from(rsr::ROK) | ((size + CRC_LEN) as u32) << 16;
            let mut body = frame.to_vec();
            body.extend_from_slice(&[0xc1, 0xc2, 0xc3, 0xc4]);
            self.write_entry(nic, header, &body, HEADER_LEN + body.len());
            true
        }

        /// Sends from the descriptor the round-robin pointer names for as
        /// long as the driver has handed it one (OWN clear), setting
        /// `status` (OWN is added); returns the frames.
        fn send_with(&self, nic: &Rtl8139, status: u32) -> Vec<Vec<u8>> {
            assert_ne!(self.get8(reg::CR) & cr::TE, 0, "transmitter off");
            let mut frames = Vec::new();
            loop {
                let slot = self.tx_current.get();
                let register = reg::TSD0 + 4 * slot;
                let tsd_value = self.get32(register);
                if tsd_value & tsd::OWN != 0 {
                    break;
                }
                let size = (tsd_value & tsd::SIZE_MASK) as usize;
                let address = u64::from(self.get32(reg::TSAD0 + 4 * slot));
                let buffer = Self::dma(nic, address, size);
                frames.push(
                    (0..size)
                        .map(|i| buffer.read8(i).expect("inside"))
                        .collect(),
                );
                self.set32(register, tsd_value | tsd::OWN | status);
                self.raise(if status & tsd::TOK != 0 {
                    cause::TOK
                } else {
                    cause::TER
                });
                self.tx_current.set((slot + 1) % TX_SLOTS);
            }
            frames
        }

        fn send(&self, nic: &Rtl8139) -> Vec<Vec<u8>> {
            self.send_with(nic, tsd::TOK)
        }
    }

    /// The driver, the device and what they live on; fields drop in
    /// order, the Rtl8139 (whose `Drop` writes registers) before the Hal.
    struct Bench {
        nic: Rtl8139,
        device: FakeDevice,
        pci: FakePci,
        hal: TestHal,
    }

    fn pci() -> FakePci {
        let pci = FakePci::new();
        pci.add(NIC, rtl8139(BAR1 as u32, 0xc100));
        pci
    }

    fn function(pci: &FakePci) -> PciFunction {
        PciFunction::read(pci, NIC).expect("present")
    }

    fn bench() -> Bench {
        let hal = TestHal::new();
        let pci = pci();
        let nic = Rtl8139::new(&function(&pci), &pci, &hal).expect("the probe succeeds");
        let device = FakeDevice::new(&hal);
        Bench {
            nic,
            device,
            pci,
            hal,
        }
    }

    /// A frame whose bytes say which it is.
    fn frame(n: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| (n * 7 + i) as u8).collect()
    }

    fn receive(nic: &mut Rtl8139) -> Option<Vec<u8>> {
        let mut buf = [0u8; MAX_FRAME];
        nic.receive(&mut buf).map(|len| buf[..len].to_vec())
    }

    #[test]
    fn probe_programs_the_device() {
        let hal = TestHal::new();
        let pci = FakePci::new();
        // Firmware left INTx disabled and bus mastering off; the device
        // was asleep and receiving somewhere.
        pci.add(
            NIC,
            rtl8139(BAR1 as u32, 0xc100).command(command::INTX_DISABLE),
        );
        let regs = hal.regs();
        regs.write8(reg::CONFIG1, 0x03).expect("inside");
        regs.write8(reg::CR, cr::RE | cr::TE).expect("inside");
        regs.write16(reg::IMR, 0xffff).expect("inside");
        let nic = Rtl8139::new(&function(&pci), &pci, &hal).expect("the probe succeeds");
        let device = FakeDevice::new(&hal);

        let command = pci.function(NIC).expect("present").peek32(0x04) as u16;
        assert_eq!(command & (command::MEMORY | command::BUS_MASTER), 0x6);
        assert_eq!(command & command::INTX_DISABLE, 0);

        assert_eq!(device.get8(reg::CONFIG1), 0, "powered on");
        assert_eq!(device.get8(reg::CR9346), 0, "configuration locked again");
        assert_eq!(device.get8(reg::CR), cr::RE | cr::TE);
        assert_eq!(u64::from(device.get32(reg::RBSTART)), nic.rx_address());
        assert!(nic.rx_address() < 1 << 32);
        assert_eq!(nic.memory[0].len(), 3 * PAGE_SIZE);
        assert!(nic.memory[0].len() >= RX_RING_LEN + 16 + 1536);

        let rcr_value = device.get32(reg::RCR);
        assert_eq!(rcr_value, RCR_VALUE);
        assert_eq!(rcr_value & 0xf, 0b1110, "AB, AM, APM; not AAP");
        assert_eq!(rcr_value & 1 << 7, 1 << 7, "WRAP");
        assert_eq!(rcr_value & 0b11 << 11, 0, "8K + 16 ring");
        assert_eq!(device.get32(reg::TCR), 0x0300_0680);
        assert_eq!(device.get32(reg::MAR0), u32::MAX);
        assert_eq!(device.get32(reg::MAR4), u32::MAX);
        assert_eq!(device.get32(reg::MPC), 0);
        assert_eq!(device.get16(reg::IMR), IMR_BASE);

        // Four distinct transmit buffers of our memory, dword aligned.
        let mut buffers: Vec<u32> = (0..TX_SLOTS)
            .map(|slot| {
                let address = device.get32(reg::TSAD0 + 4 * slot);
                FakeDevice::dma(&nic, u64::from(address), TX_BUFFER_SIZE);
                assert_eq!(address % 4, 0);
                address
            })
            .collect();
        buffers.sort_unstable();
        buffers.dedup();
        assert_eq!(buffers.len(), TX_SLOTS);

        let bound = nic.bound_interrupt().expect("bound");
        assert_eq!(
            hal.fake.interrupts(),
            vec![(bound.handle, InterruptSource::Legacy { line: 11 })]
        );
        assert_eq!(nic.mac(), MAC);
        assert_eq!(nic.name(), "rtl8139 00:04.0");
        assert_eq!(hal.fake.live_dma(), 2);
        drop(nic);
    }

    #[test]
    fn station_address_comes_from_idr() {
        let hal = TestHal::new();
        let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
        hal.mac.set(mac);
        let pci = pci();
        let nic = Rtl8139::new(&function(&pci), &pci, &hal).expect("the probe succeeds");
        assert_eq!(nic.mac(), mac);
        assert_eq!(nic.release(&hal), Ok(()));

        for bad in [[0; 6], [0xff; 6], [0x01, 0, 0x5e, 0, 0, 1]] {
            hal.mac.set(bad);
            assert_eq!(
                Rtl8139::new(&function(&pci), &pci, &hal).err(),
                Some(ProbeError::Device("rtl8139: no valid station address"))
            );
        }
        assert_eq!(hal.fake.live_dma(), 0);
        assert_eq!(hal.fake.interrupts().len(), 0);
    }

    #[test]
    fn link_state_follows_msr() {
        let b = bench();
        assert!(b.nic.link_up());
        b.device
            .regs
            .write8(reg::MSR, 0xd0 | MSR_LINKB)
            .expect("inside");
        assert!(!b.nic.link_up());
    }

    #[test]
    fn receives_frames_in_order() {
        let mut b = bench();
        assert_eq!(receive(&mut b.nic), None);
        let frames = [frame(1, 60), frame(2, MAX_FRAME), frame(3, 342)];
        for f in &frames {
            assert!(b.device.deliver(&b.nic, f));
        }
        for f in &frames {
            assert_eq!(receive(&mut b.nic).as_ref(), Some(f));
        }
        assert_eq!(receive(&mut b.nic), None);
        // Drained: CAPR is the read offset - 16, the offset is CBR.
        let cbr = b.device.cbr();
        // Each entry: header, frame, CRC, rounded up to 4.
        assert_eq!(cbr, 68 + 1524 + 352);
        assert_eq!(b.nic.rx_offset, cbr);
        assert_eq!(b.device.get16(reg::CAPR), (cbr - 16) as u16);
        let counters = b.nic.counters();
        assert_eq!(counters.rx_packets, 3);
        assert_eq!(counters.rx_bytes, 60 + MAX_FRAME as u64 + 342);
        assert_eq!(counters.rx_errors + counters.rx_drops, 0);
    }

    #[test]
    fn capr_moves_once_per_cbr_read() {
        let mut b = bench();
        for n in 0..3 {
            assert!(b.device.deliver(&b.nic, &frame(n, 100)));
        }
        assert!(receive(&mut b.nic).is_some());
        assert!(receive(&mut b.nic).is_some());
        assert_eq!(b.device.get16(reg::CAPR), 0xfff0, "not yet written");
        assert!(receive(&mut b.nic).is_some());
        assert_eq!(receive(&mut b.nic), None);
        assert_eq!(b.device.get16(reg::CAPR) as usize, 3 * 108 - 16);
    }

    #[test]
    fn receive_ring_wraps_past_its_end() {
        let mut b = bench();
        let mut n = 0;
        for round in 0..40 {
            let first = n;
            for _ in 0..round % 5 + 1 {
                let len = 60 + (n * 337) % (MAX_FRAME - 59);
                assert!(b.device.deliver(&b.nic, &frame(n, len)), "frame {n}");
                n += 1;
            }
            for m in first..n {
                let len = 60 + (m * 337) % (MAX_FRAME - 59);
                assert_eq!(receive(&mut b.nic), Some(frame(m, len)), "frame {m}");
            }
            assert_eq!(receive(&mut b.nic), None);
            b.nic.enable_interrupts();
            assert_eq!(b.nic.rx_offset, b.device.cbr());
        }
        assert!(b.device.wrapped.get() >= 3, "frames ran past the end");
        let counters = b.nic.counters();
        assert_eq!(counters.rx_packets, n as u64);
        assert_eq!(counters.rx_errors + counters.rx_drops, 0);
    }

    #[test]
    fn frame_across_the_end_of_the_ring_is_whole() {
        let mut b = bench();
        // Walk CBR to 16 bytes before the end.
        let target = RX_RING_LEN - 16;
        while b.device.cbr() != target {
            let left = target - b.device.cbr();
            let len = (left - 8).clamp(60, 1000);
            assert!(b.device.deliver(&b.nic, &frame(0, len)));
            while receive(&mut b.nic).is_some() {}
        }
        let long = frame(9, MAX_FRAME);
        assert!(b.device.deliver(&b.nic, &long));
        assert_eq!(b.device.wrapped.get(), 1);
        assert_eq!(receive(&mut b.nic), Some(long));
        // The next entry starts near the start of the ring.
        assert!(b.device.deliver(&b.nic, &frame(10, 70)));
        assert_eq!(receive(&mut b.nic), Some(frame(10, 70)));
        assert_eq!(receive(&mut b.nic), None);
        assert_eq!(
            b.nic.rx_offset,
            (target + 4 + 1518).next_multiple_of(4) - RX_RING_LEN + 80
        );
    }

    #[test]
    fn full_ring_counts_missed_frames() {
        let mut b = bench();
        let mut accepted = 0;
        while b.device.deliver(&b.nic, &frame(accepted, 1000)) {
            accepted += 1;
        }
        assert_eq!(accepted, RX_RING_LEN / 1008);
        assert!(!b.device.deliver(&b.nic, &frame(99, 1000)));
        assert_eq!(b.device.get32(reg::MPC), 2);
        for n in 0..accepted {
            assert_eq!(receive(&mut b.nic), Some(frame(n, 1000)));
        }
        assert_eq!(receive(&mut b.nic), None);
        b.nic.enable_interrupts();
        assert_eq!(b.nic.counters().rx_drops, 2);
        // Counted once.
        b.nic.enable_interrupts();
        assert_eq!(b.nic.counters().rx_drops, 2);
        assert!(b.device.deliver(&b.nic, &frame(7, 1000)));
        assert_eq!(receive(&mut b.nic), Some(frame(7, 1000)));
    }

    #[test]
    fn bad_headers_reset_the_receiver() {
        let rok = u32::from(rsr::ROK);
        let body = frame(3, 96);
        // (header, bytes CBR moves): no ROK; ROK with a CRC error; too
        // short; too long; longer than what CBR says is written; zero.
        let cases = [
            (100 << 16, 104),
            (rok | 1 << 2 | 100 << 16, 104),
            (rok | 17 << 16, 24),
            (rok | ((RX_MAX_LEN as u32 + 4) << 16), 104),
            (rok | 1000 << 16, 104),
            (0, 104),
        ];
        for (i, (header, advance)) in cases.into_iter().enumerate() {
            let mut b = bench();
            assert!(b.device.deliver(&b.nic, &frame(1, 80)));
            b.device.write_entry(&b.nic, header, &body, advance);
            assert!(b.device.deliver(&b.nic, &frame(2, 80)));
            assert_eq!(receive(&mut b.nic), Some(frame(1, 80)), "case {i}");
            assert_eq!(receive(&mut b.nic), None, "case {i}");
            let counters = b.nic.counters();
            assert_eq!(
                (counters.rx_errors, counters.rx_packets),
                (1, 1),
                "case {i}"
            );
            // Receiver off and on, RCR rewritten, reading from 0 again.
            assert_eq!(b.device.get8(reg::CR), cr::RE | cr::TE);
            assert_eq!(b.device.get32(reg::RCR), RCR_VALUE);
            assert_eq!(b.nic.rx_offset, 0);
            // Reported once, through transmit.
            assert_eq!(
                b.nic.transmit(&frame(5, 60)),
                Err(NetError::Device(RX_BAD_HEADER))
            );
            assert_eq!(b.nic.transmit(&frame(5, 60)), Ok(()));
            // QEMU reset its pointers on the RCR write; the ring works.
            b.device.reset_rx_ring();
            assert_eq!(receive(&mut b.nic), None);
            assert!(b.device.deliver(&b.nic, &frame(4, 90)));
            assert_eq!(receive(&mut b.nic), Some(frame(4, 90)), "case {i}");
        }
    }

    #[test]
    fn frames_longer_than_the_buffer_are_skipped() {
        let mut b = bench();
        assert!(b.device.deliver(&b.nic, &frame(1, 1400)));
        assert!(b.device.deliver(&b.nic, &frame(2, 80)));
        let mut small = [0u8; 100];
        assert_eq!(b.nic.receive(&mut small), Some(80));
        assert_eq!(&small[..80], &frame(2, 80)[..]);
        let counters = b.nic.counters();
        assert_eq!((counters.rx_drops, counters.rx_errors), (1, 0));
        // Longer than MAX_FRAME but a good entry: a caller with room gets it.
        let jumbo = frame(3, 2000);
        let mut body = jumbo.clone();
        body.extend_from_slice(&[0; 4]);
        b.device
            .write_entry(&b.nic, u32::from(rsr::ROK) | 2004 << 16, &body, 2008);
        let mut big = [0u8; 2048];
        assert_eq!(b.nic.receive(&mut big), Some(2000));
        assert_eq!(&big[..2000], &jumbo[..]);
    }

    #[test]
    fn unfinished_header_is_waited_for_then_reset() {
        let mut b = bench();
        let body = [0u8; 60];
        b.device
            .write_entry(&b.nic, (RX_UNFINISHED as u32) << 16, &body, 64);
        for _ in 0..RX_UNFINISHED_LIMIT {
            assert_eq!(receive(&mut b.nic), None);
        }
        assert_eq!(b.nic.counters().rx_errors, 0);
        assert_eq!(b.nic.rx_offset, 0);
        // Finished in time: taken.
        let done = frame(6, 56);
        let header = u32::from(rsr::ROK) | 60 << 16;
        b.device.set16(reg::CBR, 0);
        b.device.write_entry(&b.nic, header, &done, 64);
        assert_eq!(receive(&mut b.nic), Some(done));

        // Never finished: a bad header after the limit.
        b.device
            .write_entry(&b.nic, (RX_UNFINISHED as u32) << 16, &body, 64);
        for _ in 0..RX_UNFINISHED_LIMIT {
            assert_eq!(receive(&mut b.nic), None);
        }
        assert_eq!(b.nic.counters().rx_errors, 0);
        assert_eq!(receive(&mut b.nic), None);
        assert_eq!(b.nic.counters().rx_errors, 1);
        assert_eq!(b.nic.rx_offset, 0);
    }

    #[test]
    fn a_ring_of_unwanted_frames_is_skipped_in_one_call() {
        let mut b = bench();
        let mut n = 0;
        while b.device.deliver(&b.nic, &frame(n, 200)) {
            n += 1;
        }
        assert_eq!(n, RX_RING_LEN / 208);
        let mut small = [0u8; 100];
        assert_eq!(b.nic.receive(&mut small), None);
        assert_eq!(b.nic.counters().rx_drops, n as u64);
        // All given back.
        let cbr = b.device.cbr();
        assert_eq!(b.nic.rx_offset, cbr);
        assert_eq!(b.device.get16(reg::CAPR), (cbr as u16).wrapping_sub(16));
        assert!(b.device.deliver(&b.nic, &frame(1, 90)));
        assert_eq!(receive(&mut b.nic), Some(frame(1, 90)));
    }

    #[test]
    fn transmits_round_robin_over_the_four_buffers() {
        let mut b = bench();
        let frames = [
            frame(1, 42),
            frame(2, MAX_FRAME),
            frame(3, 600),
            frame(4, 60),
        ];
        for (slot, f) in frames.iter().enumerate() {
            assert_eq!(b.nic.transmit(f), Ok(()));
            let value = b.device.get32(reg::TSD0 + 4 * slot);
            assert_eq!(value & tsd::OWN, 0, "handed to the device");
            assert_eq!(value & tsd::SIZE_MASK, f.len().max(60) as u32);
        }
        // All four in flight: full, and the driver never waits.
        assert_eq!(b.nic.transmit(&frame(5, 60)), Err(NetError::Full));
        assert!(!b.nic.can_transmit());
        assert_eq!(b.nic.counters().tx_drops, 1);

        let sent = b.device.send(&b.nic);
        let mut padded = frames[0].clone();
        padded.resize(60, 0);
        assert_eq!(
            sent,
            vec![
                padded,
                frames[1].clone(),
                frames[2].clone(),
                frames[3].clone()
            ]
        );
        assert_eq!(b.nic.counters().tx_packets, 0, "counted when reclaimed");
        assert!(b.nic.can_transmit());
        let counters = b.nic.counters();
        assert_eq!(counters.tx_packets, 4);
        assert_eq!(counters.tx_bytes, 60 + MAX_FRAME as u64 + 600 + 60);

        // Round the buffers many times, the device a little behind.
        let mut queued = Vec::new();
        let mut received = Vec::new();
        for n in 0..500 {
            let f = frame(n, 60 + n % 1400);
            if b.nic.transmit(&f) == Err(NetError::Full) {
                received.extend(b.device.send(&b.nic));
                assert_eq!(b.nic.transmit(&f), Ok(()));
            }
            queued.push(f);
            if n % 3 == 0 {
                received.extend(b.device.send(&b.nic));
            }
        }
        received.extend(b.device.send(&b.nic));
        assert_eq!(received, queued);
        assert!(b.nic.can_transmit());
        assert_eq!(b.nic.counters().tx_packets, 504);
    }

    #[test]
    fn short_frames_are_padded_with_zeros() {
        let mut b = bench();
        // Leave garbage in the buffer first.
        assert_eq!(b.nic.transmit(&[0xee; 200]), Ok(()));
        b.device.send(&b.nic);
        for _ in 0..3 {
            assert_eq!(b.nic.transmit(&frame(0, 100)), Ok(()));
        }
        b.device.send(&b.nic);
        assert_eq!(b.nic.transmit(&[1, 2, 3]), Ok(()));
        let sent = b.device.send(&b.nic);
        let mut expected = vec![1, 2, 3];
        expected.resize(MIN_FRAME, 0);
        assert_eq!(sent, vec![expected]);
    }

    #[test]
    fn refused_transmit_unmasks_tx_interrupts_once() {
        let mut b = bench();
        for n in 0..TX_SLOTS {
            assert_eq!(b.nic.transmit(&frame(n, 60)), Ok(()));
        }
        assert_eq!(b.nic.transmit(&frame(9, 60)), Err(NetError::Full));
        b.nic.enable_interrupts();
        assert_eq!(b.device.get16(reg::IMR), IMR_BASE | IMR_TX);
        // A frame finished after the refusal latches TOK: unmasked, the
        // device asserts its line.
        b.device.send(&b.nic);
        assert_ne!(b.device.get16(reg::ISR) & b.device.get16(reg::IMR), 0);
        assert!(b.nic.can_transmit());
        b.nic.enable_interrupts();
        assert_eq!(b.device.get16(reg::IMR), IMR_BASE);
    }

    #[test]
    fn failed_transmissions_are_counted() {
        let mut b = bench();
        assert_eq!(b.nic.transmit(&frame(1, 60)), Ok(()));
        assert_eq!(b.nic.transmit(&frame(2, 60)), Ok(()));
        // Still in the FIFO: OWN set but no final status yet.
        b.device.set32(reg::TSD0, tsd::OWN | 60);
        assert!(b.nic.can_transmit());
        assert_eq!(b.nic.tx_in_flight, 2);
        b.device.set32(reg::TSD0, tsd::OWN | tsd::TABT | 60);
        b.device.set32(reg::TSD0 + 4, tsd::OWN | tsd::TUN | 60);
        b.nic.enable_interrupts();
        let counters = b.nic.counters();
        assert_eq!((counters.tx_packets, counters.tx_errors), (0, 2));
        assert_eq!(b.nic.tx_in_flight, 0);
    }

    #[test]
    fn long_and_empty_frames_are_refused() {
        let mut b = bench();
        assert_eq!(
            b.nic.transmit(&[0; MAX_FRAME + 1]),
            Err(NetError::TooLong(MAX_FRAME + 1))
        );
        assert_eq!(
            b.nic.transmit(&[]),
            Err(NetError::Device("rtl8139: empty frame"))
        );
        assert_eq!(b.device.get32(reg::TSD0), tsd::OWN, "untouched");
        assert_eq!(b.nic.transmit(&[0; MAX_FRAME]), Ok(()));
        assert_eq!(b.device.send(&b.nic).len(), 1);
    }

    #[test]
    fn interrupt_handler_checks_masks_acknowledges_and_wakes() {
        let mut b = bench();
        let handle = b.nic.bound_interrupt().expect("bound").handle;
        b.device.set16(reg::ISR, 0);
        // Someone else's interrupt on the shared line.
        assert!(b.hal.fake.fire(handle));
        assert_eq!(b.hal.wakes(), 0);
        assert_eq!(b.device.get16(reg::IMR), IMR_BASE);
        // A device that is gone reads all ones.
        b.device.set16(reg::ISR, u16::MAX);
        assert!(b.hal.fake.fire(handle));
        assert_eq!(b.hal.wakes(), 0);
        assert_eq!(b.device.get16(reg::IMR), IMR_BASE);

        b.device.set16(reg::ISR, 0);
        assert!(b.device.deliver(&b.nic, &frame(1, 80)));
        b.device.raise(cause::TOK);
        assert!(b.hal.fake.fire(handle));
        assert_eq!(b.device.get16(reg::IMR), 0, "masked");
        // The causes read were written back (which clears them on the
        // device; plain memory keeps the value).
        assert_eq!(b.device.get16(reg::ISR), cause::ROK | cause::TOK);
        assert_eq!(b.hal.wakes(), 1);
        b.device.set16(reg::ISR, 0);

        assert_eq!(receive(&mut b.nic), Some(frame(1, 80)));
        assert_eq!(receive(&mut b.nic), None);
        // A frame lands between the last receive and the unmask: its cause
        // is latched, so unmasking asserts the interrupt again.
        assert!(b.device.deliver(&b.nic, &frame(2, 80)));
        b.nic.enable_interrupts();
        assert_eq!(b.device.get16(reg::IMR), IMR_BASE);
        assert_ne!(b.device.get16(reg::ISR) & b.device.get16(reg::IMR), 0);
        assert!(b.hal.fake.fire(handle));
        assert_eq!(b.hal.wakes(), 2);
        assert_eq!(receive(&mut b.nic), Some(frame(2, 80)));
    }

    #[test]
    fn reset_that_never_completes_is_an_error() {
        let hal = TestHal::new();
        hal.reset_completes.set(false);
        let pci = pci();
        let before = pci.function(NIC).expect("present").peek32(0x04);
        assert_eq!(
            Rtl8139::new(&function(&pci), &pci, &hal).err(),
            Some(ProbeError::Device(
                "rtl8139: the device did not come back from reset"
            ))
        );
        assert!(hal.fake.now_ns() >= RESET_TIMEOUT_NS);
        assert!(hal.fake.now_ns() < RESET_TIMEOUT_NS + 10 * TICK_NS);
        assert_eq!(hal.fake.live_dma(), 0);
        assert!(hal.fake.interrupts().is_empty());
        assert_eq!(pci.function(NIC).expect("present").peek32(0x04), before);
    }

    #[test]
    fn reset_wait_ends_even_when_the_clock_stands_still() {
        // The plain fake's clock never moves and nothing clears CR.RST.
        let hal = FakeHal::new();
        hal.add_mmio(BAR1, REGISTER_WINDOW);
        let pci = pci();
        assert_eq!(
            Rtl8139::new(&function(&pci), &pci, &hal).err(),
            Some(ProbeError::Device(
                "rtl8139: the device did not come back from reset"
            ))
        );
        assert_eq!(hal.live_dma(), 0);
    }

    #[test]
    fn dma_memory_above_4_gib_is_refused() {
        let hal = TestHal::new();
        hal.high_dma.set(true);
        let pci = pci();
        assert!(matches!(
            Rtl8139::new(&function(&pci), &pci, &hal).err(),
            Some(ProbeError::Device(why)) if why.contains("4 GiB")
        ));
        assert_eq!(hal.fake.live_dma(), 0);
        assert!(hal.fake.interrupts().is_empty());
    }

    #[test]
    fn functions_it_cannot_use_are_refused_before_any_access() {
        let hal = TestHal::new();
        let pci = FakePci::new();
        let io_only = PciAddress::new(0, 5, 0);
        let small = PciAddress::new(0, 6, 0);
        let no_line = PciAddress::new(0, 7, 0);
        pci.add(
            io_only,
            FakeFunction::device(0x10ec, 0x8139, 0x02, 0x00, 0x00)
                .irq(11, 1)
                .bar_io(0, 0xc100, 0x100),
        );
        pci.add(
            small,
            FakeFunction::device(0x10ec, 0x8139, 0x02, 0x00, 0x00)
                .irq(11, 1)
                .bar_io(0, 0xc100, 0x100)
                .bar_mem32(1, BAR1 as u32, 0x80, false),
        );
        pci.add(no_line, rtl8139(BAR1 as u32, 0xc100).irq(0xff, 1));
        let read = |address| PciFunction::read(&pci, address).expect("present");
        let (io_only, small, no_line) = (read(io_only), read(small), read(no_line));
        let e1000 =
            PciFunction::read(&FakePci::qemu_pc(), PciAddress::new(0, 3, 0)).expect("present");
        // (Reading the functions sized their BARs.)
        let writes = pci.writes();
        assert_eq!(
            Rtl8139::new(&io_only, &pci, &hal).err(),
            Some(ProbeError::Device(
                "rtl8139: no memory bar1, and the driver has no port I/O for bar0"
            ))
        );
        assert_eq!(
            Rtl8139::new(&small, &pci, &hal).err(),
            Some(ProbeError::Device(
                "rtl8139: bar1 smaller than the 256-byte register window"
            ))
        );
        assert_eq!(
            Rtl8139::new(&no_line, &pci, &hal).err(),
            Some(ProbeError::Device("rtl8139: no INTx line routed"))
        );
        assert_eq!(
            Rtl8139::new(&e1000, &pci, &hal).err(),
            Some(ProbeError::Device("rtl8139: not an RTL8139"))
        );
        assert_eq!(pci.writes(), writes);
        assert_eq!(hal.fake.now_ns(), 0, "no register was waited on");
    }

    #[test]
    fn release_returns_everything() {
        let Bench {
            nic,
            device,
            pci: _pci,
            hal,
        } = bench();
        assert_eq!(nic.release(&hal), Ok(()));
        assert_eq!(hal.fake.live_dma(), 0);
        assert!(hal.fake.interrupts().is_empty());
        assert_eq!(device.get8(reg::CR), 0);
        assert_eq!(device.get16(reg::IMR), 0);
    }

    #[test]
    fn release_keeps_memory_a_wedged_device_might_reach() {
        let Bench {
            nic,
            device: _device,
            pci: _pci,
            hal,
        } = bench();
        hal.reset_completes.set(false);
        assert!(nic.release(&hal).is_err());
        assert_eq!(hal.fake.live_dma(), 2);
    }

    #[test]
    fn failed_bind_returns_the_memory() {
        let hal = TestHal::new();
        hal.fail_bind.set(true);
        let pci = pci();
        let before = pci.function(NIC).expect("present").peek32(0x04);
        assert_eq!(
            Rtl8139::new(&function(&pci), &pci, &hal).err(),
            Some(ProbeError::Hal(HalError::NoVector))
        );
        assert_eq!(hal.fake.live_dma(), 0);
        assert_eq!(pci.function(NIC).expect("present").peek32(0x04), before);
        let device = FakeDevice::new(&hal);
        assert_eq!(device.get8(reg::CR), 0, "receiver and transmitter off");
        assert_eq!(device.get16(reg::IMR), 0);
    }

    #[test]
    fn running_out_of_dma_memory_fails_cleanly() {
        for pages in [0, 1, RX_DMA_PAGES, RX_DMA_PAGES + 1] {
            let hal = TestHal::new();
            hal.fake.limit_dma(pages);
            let pci = pci();
            assert_eq!(
                Rtl8139::new(&function(&pci), &pci, &hal).err(),
                Some(ProbeError::Hal(HalError::OutOfMemory))
            );
            assert_eq!(hal.fake.live_dma(), 0);
        }
    }

    #[test]
    fn driver_matches_the_rtl8139_and_needs_the_config_space() {
        let pci = pci();
        let nic = function(&pci);
        assert!(Rtl8139Driver.matches(&Device::Pci(&nic)));
        assert_eq!(Rtl8139Driver.name(), "rtl8139");
        let qemu = FakePci::qemu_pc();
        assert!(crate::pci::enumerate(&qemu)
            .iter()
            .all(|function| !Rtl8139Driver.matches(&Device::Pci(function))));
        let mut other = nic.clone();
        other.header.device_id = 0x8129;
        assert!(!Rtl8139Driver.matches(&Device::Pci(&other)));
        let hal = TestHal::new();
        assert_eq!(
            Rtl8139Driver.probe(&Device::Pci(&nic), &hal, None, None),
            Err(ProbeError::Device("no PCI configuration space"))
        );
    }

    #[test]
    fn probe_pci_hands_the_interface_over_or_silences_it() {
        let hal = TestHal::new();
        let pci = pci();
        // The TestHal keeps the trait's default attach_net: Unsupported.
        assert_eq!(
            Rtl8139Driver.probe(&Device::Pci(&function(&pci)), &hal, None, Some(&pci)),
            Err(ProbeError::Hal(HalError::Unsupported))
        );
        let device = FakeDevice::new(&hal);
        assert_eq!(device.get8(reg::CR), 0);
        assert_eq!(device.get16(reg::IMR), 0);
    }
}
