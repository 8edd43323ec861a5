//! Intel 8254x gigabit Ethernet ("e1000"): the 82540EM that QEMU's `pc`
//! machine gives a guest by default (8086:100e), and the 82545EM
//! (8086:100f), which QEMU builds from the same register model
//! (`hw/net/e1000.c`, devices `e1000` and `e1000-82545em`). The 82544GC
//! (`e1000-82544gc`, 8086:100c) is left out: the real part has no EERD
//! register, which the fallback MAC read below uses.
//!
//! Written from the "PCI/PCI-X Family of Gigabit Ethernet Controllers
//! Software Developer's Manual" (8254x):
//!
//! - chapter 13 (register descriptions, table 13-2) for the offsets and
//!   bits in [`reg`] and the private bit tables;
//! - §14.3 (general configuration: CTRL.SLU and ASDE, flow control
//!   registers zeroed when unused), §14.4 (receive initialization: RAL0/
//!   RAH0, the multicast table cleared, RDBAL/RDBAH/RDLEN, RDH = 0, RDT one
//!   behind, RCTL) and §14.5 (transmit initialization: TDBAL/TDBAH/TDLEN,
//!   TDH = TDT = 0, TCTL with PSP, CT = 0Fh and COLD = 40h, TIPG);
//! - §3.2 (the legacy receive descriptor: buffer address, length, status
//!   DD/EOP, errors; the ring between head and tail) and §3.3-§3.4 (the
//!   legacy transmit descriptor: length, CMD.EOP/IFCS/RS, STA.DD/EC/LC;
//!   the transmit ring);
//! - §5.3.1 (software EEPROM reads through EERD: START bit 0, DONE bit 4,
//!   address in bits 15:8 and data in 31:16 on the 82540EM/82545EM) and
//!   the EEPROM map, whose words 0-2 hold the Ethernet address.
//!
//! QEMU's model settles what the manual leaves to hardware: it fills
//! RAL0/RAH0 (with RAH.AV) from its `mac=` property at reset, so EERD is
//! only a fallback; a CTRL.RST write merely self-clears there (it resets
//! neither the rings nor RCTL/TCTL/IMS), so the driver switches the
//! receiver, transmitter and interrupts off itself before it resets and
//! before it lets go of memory; reading ICR clears it and lowers INTx;
//! writing IMS re-evaluates ICR & IMS and raises the line if a cause is
//! already pending. Its statistics registers CRCERRS..MPC do not clear on
//! read as the manual's do, so this driver keeps its own counts rather than
//! sum registers whose meaning differs between the model and the part;
//! frames lost for want of a buffer are counted from ICR.RXO, which the
//! interrupt handler sees.
//!
//! # Rings
//!
//! Both rings are 256 legacy descriptors (one page) with a 2048-byte DMA
//! buffer each, two buffers to a page. The device owns the receive
//! descriptors from RDH up to, not including, RDT; the driver keeps one
//! (RDT itself) so that a full ring differs from an empty one. Received
//! descriptors are handed back in batches (RDT written every
//! [`RX_RETURN_BATCH`] frames, and whenever the ring is drained), to save
//! register writes, which are VM exits under a hypervisor. Transmission
//! fills the descriptor at TDT and advances TDT; descriptors come back when
//! the device sets DD, checked (in memory, without a register read) by
//! [`transmit`](NetDevice::transmit), [`can_transmit`](NetDevice::can_transmit)
//! and [`enable_interrupts`](NetDevice::enable_interrupts).
//!
//! # Interrupts and lost wake-ups
//!
//! The 82540EM has no MSI capability: it interrupts through INTx, which
//! may be shared. The handler reads ICR (which clears it); zero means
//! another device raised the line. Otherwise it masks every cause
//! (IMC = all ones) and calls the kernel's [`Waker`]. The network thread
//! drains the rings and calls `enable_interrupts`, which writes IMS.
//!
//! No frame is left behind by this: ICR latches causes whether or not they
//! are masked, and the interrupt is asserted while ICR & IMS is not zero.
//! A frame the device writes after the handler's ICR read sets ICR.RXT0
//! again; if the thread's last `receive` missed it, the IMS write finds the
//! cause pending and the interrupt fires at once. Frames written before
//! the ICR read are in the ring already and the drain that follows the
//! wake-up takes them. The same holds for transmission: once the stack has
//! been refused for a full ring, `enable_interrupts` adds TXDW to the mask,
//! and a descriptor the device finishes after the refusal sets ICR.TXDW, so
//! the stack is woken to try again.
//!
//! # A device that misbehaves
//!
//! Lengths, status bits and head registers come from the device and are
//! checked, never trusted: a frame longer than its buffer, spanning
//! descriptors (EOP clear) or reported in error is counted in `rx_errors`
//! and dropped; a frame longer than the caller's buffer is counted in
//! `rx_drops`. Each [`enable_interrupts`](NetDevice::enable_interrupts)
//! reads RDH and, while frames are in flight, TDH: a head outside its ring,
//! or a transmit head that has not moved for [`TX_STALL_CHECKS`] wake-ups
//! while the link is up, gets its ring restarted (frames lost counted in
//! `rx_errors`/`tx_errors`) and the next [`transmit`](NetDevice::transmit)
//! returns [`NetError::Device`] with the reason, for the kernel to log.
//! Waits at set-up are bounded by [`Hal::now_ns`] and by a poll count, so
//! a device that never answers is an error, never a hang.

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
use core::sync::atomic::{fence, AtomicU64, Ordering};

/// The devices this driver takes: the 82540EM and the 82545EM (copper).
pub const E1000_IDS: &[DeviceId] = &[DeviceId::pci(0x8086, 0x100e), DeviceId::pci(0x8086, 0x100f)];

/// Descriptors in each ring: a page of 16-byte descriptors. RDLEN and
/// TDLEN must be multiples of 128 bytes; 4096 is.
pub const RING_LEN: usize = 256;

/// Bytes of each receive and transmit buffer (RCTL.BSIZE = 00b, BSEX = 0).
pub const BUFFER_SIZE: usize = 2048;

/// The register window mapped from BAR 0.
pub const REGISTER_WINDOW: usize = 0x2_0000;

/// How long the device may take to come back from CTRL.RST.
pub const RESET_TIMEOUT_NS: u64 = 10_000_000;

/// How long one EEPROM word may take through EERD.
pub const EEPROM_TIMEOUT_NS: u64 = 10_000_000;

/// Polls of a register before a wait gives up even if the clock says
/// there is time left (a clock that does not move must not hang set-up).
pub const POLL_LIMIT: u32 = 1_000_000;

/// Received descriptors kept back before RDT is written.
pub const RX_RETURN_BATCH: usize = 32;

/// Consecutive `enable_interrupts` calls that find TDH where it was, with
/// frames outstanding and the link up, before the transmit ring counts as
/// stalled and is restarted.
pub const TX_STALL_CHECKS: u32 = 64;

const DESCRIPTOR_SIZE: usize = 16;
const BUFFERS_PER_PAGE: usize = PAGE_SIZE / BUFFER_SIZE;

/// Register offsets in the window (manual, table 13-2).
pub mod reg {
    pub const CTRL: usize = 0x0000;
    pub const STATUS: usize = 0x0008;
    pub const EERD: usize = 0x0014;
    pub const FCAL: usize = 0x0028;
    pub const FCAH: usize = 0x002c;
    pub const FCT: usize = 0x0030;
    pub const ICR: usize = 0x00c0;
    pub const ITR: usize = 0x00c4;
    pub const IMS: usize = 0x00d0;
    pub const IMC: usize = 0x00d8;
    pub const RCTL: usize = 0x0100;
    pub const FCTTV: usize = 0x0170;
    pub const TCTL: usize = 0x0400;
    pub const TIPG: usize = 0x0410;
    pub const RDBAL: usize = 0x2800;
    pub const RDBAH: usize = 0x2804;
    pub const RDLEN: usize = 0x2808;
    pub const RDH: usize = 0x2810;
    pub const RDT: usize = 0x2818;
    pub const RDTR: usize = 0x2820;
    pub const RADV: usize = 0x282c;
    pub const TDBAL: usize = 0x3800;
    pub const TDBAH: usize = 0x3804;
    pub const TDLEN: usize = 0x3808;
    pub const TDH: usize = 0x3810;
    pub const TDT: usize = 0x3818;
    pub const TIDV: usize = 0x3820;
    /// The multicast table array: 128 dwords.
    pub const MTA: usize = 0x5200;
    pub const MTA_LEN: usize = 128;
    pub const RAL0: usize = 0x5400;
    pub const RAH0: usize = 0x5404;
}

/// CTRL bits.
mod ctrl {
    pub const LRST: u32 = 1 << 3;
    pub const ASDE: u32 = 1 << 5;
    pub const SLU: u32 = 1 << 6;
    pub const ILOS: u32 = 1 << 7;
    pub const FRCSPD: u32 = 1 << 11;
    pub const FRCDPLX: u32 = 1 << 12;
    pub const RST: u32 = 1 << 26;
    pub const VME: u32 = 1 << 30;
    pub const PHY_RST: u32 = 1 << 31;
}

/// STATUS.LU: link up.
const STATUS_LU: u32 = 1 << 1;

/// EERD fields on the 82540EM/82545EM.
mod eerd {
    pub const START: u32 = 1 << 0;
    pub const DONE: u32 = 1 << 4;
    pub const ADDR_SHIFT: u32 = 8;
    pub const DATA_SHIFT: u32 = 16;
}

/// Interrupt causes (ICR, IMS, IMC).
pub mod cause {
    /// Transmit descriptor written back.
    pub const TXDW: u32 = 1 << 0;
    /// Link status change.
    pub const LSC: u32 = 1 << 2;
    /// Receive descriptors below the minimum threshold (RCTL.RDMTS).
    pub const RXDMT0: u32 = 1 << 4;
    /// Receiver overrun: a frame arrived with no buffer for it.
    pub const RXO: u32 = 1 << 6;
    /// Receiver timer: a frame was written to the ring.
    pub const RXT0: u32 = 1 << 7;
}

/// What `enable_interrupts` always unmasks.
pub const IMS_RX: u32 = cause::RXT0 | cause::RXO | cause::RXDMT0 | cause::LSC;

/// RCTL bits.
mod rctl {
    pub const EN: u32 = 1 << 1;
    pub const BAM: u32 = 1 << 15;
    /// BSIZE = 00b with BSEX = 0: 2048-byte buffers.
    pub const BSIZE_2048: u32 = 0;
    pub const SECRC: u32 = 1 << 26;
}

/// RCTL while receiving: enabled, broadcasts accepted, 2048-byte buffers,
/// the CRC stripped; no promiscuity, no long frames, threshold at half.
pub const RCTL_VALUE: u32 = rctl::EN | rctl::BAM | rctl::BSIZE_2048 | rctl::SECRC;

/// TCTL bits.
mod tctl {
    pub const EN: u32 = 1 << 1;
    pub const PSP: u32 = 1 << 3;
    pub const CT_SHIFT: u32 = 4;
    pub const COLD_SHIFT: u32 = 12;
}

/// TCTL while transmitting: enabled, short frames padded, 15 retries, the
/// full-duplex collision distance (§14.5).
pub const TCTL_VALUE: u32 =
    tctl::EN | tctl::PSP | 0x0f << tctl::CT_SHIFT | 0x40 << tctl::COLD_SHIFT;

/// TIPG for copper: IPGT 10, IPGR1 8, IPGR2 6.
pub const TIPG_VALUE: u32 = 10 | 8 << 10 | 6 << 20;

/// RAH.AV: the address is valid and used by the filter.
const RAH_AV: u32 = 1 << 31;

/// Receive descriptor status and error bits (§3.2).
mod rxd {
    pub const DD: u8 = 1 << 0;
    pub const EOP: u8 = 1 << 1;
    /// CRC/alignment, symbol, sequence, carrier extension and RX data
    /// errors: the frame is bad. (TCPE/IPE only concern checksum offload,
    /// which is off.)
    pub const FRAME_ERRORS: u8 = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 4 | 1 << 7;
}

/// Legacy transmit descriptor command and status bits (§3.3).
mod txd {
    pub const EOP: u8 = 1 << 0;
    pub const IFCS: u8 = 1 << 1;
    pub const RS: u8 = 1 << 3;
    pub const DD: u8 = 1 << 0;
    /// Excess collisions, late collision: the frame was not sent.
    pub const FAILED: u8 = 1 << 1 | 1 << 2;
}

/// Why a set-up failed, or what `transmit` reports after the device
/// misbehaved.
const RX_HEAD_OUTSIDE: &str = "e1000: receive head outside the ring; receive ring restarted";
const TX_HEAD_OUTSIDE: &str = "e1000: transmit head outside the ring; transmit ring restarted";
const TX_STALLED: &str = "e1000: transmit ring stopped moving; transmit ring restarted";

/// The register window, checked at set-up to hold every register at a
/// 4-byte aligned base, so that the accesses below, all at constant
/// offsets inside it, cannot fail; were one to, a read gives 0 and a
/// write is dropped.
struct Regs(MmioRegion);

impl Regs {
    fn new(region: MmioRegion) -> Result<Regs, ProbeError> {
        // Checked without touching the device.
        if region.len() < REGISTER_WINDOW || !(region.base().as_ptr() as usize).is_multiple_of(4) {
            return Err(ProbeError::Device(
                "e1000: register window short or misaligned",
            ));
        }
        Ok(Regs(region))
    }

    fn read(&self, offset: usize) -> u32 {
        self.0.read32(offset).unwrap_or(0)
    }

    fn write(&self, offset: usize, value: u32) {
        self.0.write32(offset, value).ok();
    }

    /// A second handle on the same window, for the interrupt handler.
    fn alias(&self) -> Result<Regs, ProbeError> {
        Ok(Regs(self.0.subregion(0, self.0.len())?))
    }
}

/// One ring: a page of descriptors and [`RING_LEN`] buffers, two to a page.
struct Ring {
    /// The descriptor page, accessed volatile (the device writes it).
    descriptors: MmioRegion,
    /// The descriptor page, then the buffer pages.
    memory: Vec<Dma>,
}

impl Ring {
    const PAGES: usize = 1 + RING_LEN / BUFFERS_PER_PAGE;

    /// Allocates the pages one at a time (no large contiguous block is
    /// needed); on failure returns what it got.
    fn alloc(hal: &dyn Hal) -> Result<Ring, ProbeError> {
        let mut memory: Vec<Dma> = Vec::with_capacity(Self::PAGES);
        let fail = |memory: Vec<Dma>, error: ProbeError| {
            for dma in memory {
                hal.dma_free(dma);
            }
            Err(error)
        };
        for _ in 0..Self::PAGES {
            match hal.dma_alloc(1) {
                Ok(dma) => memory.push(dma),
                Err(error) => return fail(memory, error.into()),
            }
        }
        if memory
            .iter()
            .any(|dma| dma.device_addr % PAGE_SIZE as u64 != 0)
        {
            return fail(
                memory,
                ProbeError::Device("e1000: dma page not page aligned"),
            );
        }
        // SAFETY: the Hal promises a page mapped at `virt` and exclusively
        // ours until `dma_free` (which happens only after the ring is
        // dropped from use); no Rust reference points into it, only the
        // region's volatile accesses and the device.
        let descriptors = unsafe { MmioRegion::new(memory[0].virt, PAGE_SIZE) };
        if let Err(error) = descriptors.read64(PAGE_SIZE - 8) {
            return fail(memory, error.into());
        }
        Ok(Ring {
            descriptors,
            memory,
        })
    }

    fn free(&mut self, hal: &dyn Hal) {
        for dma in self.memory.drain(..) {
            hal.dma_free(dma);
        }
    }

    /// The device address of descriptor 0.
    fn base(&self) -> u64 {
        self.memory[0].device_addr
    }

    /// Buffer `index` (< RING_LEN): where the driver reaches it and the
    /// device address.
    fn buffer(&self, index: usize) -> (*mut u8, u64) {
        let index = index % RING_LEN;
        let page = &self.memory[1 + index / BUFFERS_PER_PAGE];
        let offset = (index % BUFFERS_PER_PAGE) * BUFFER_SIZE;
        // SAFETY: offset + BUFFER_SIZE <= PAGE_SIZE, inside the page.
        let virt = unsafe { page.virt.as_ptr().add(offset) };
        (virt, page.device_addr + offset as u64)
    }

    fn offset(index: usize) -> usize {
        (index % RING_LEN) * DESCRIPTOR_SIZE
    }

    fn read8(&self, offset: usize) -> u8 {
        self.descriptors.read8(offset).unwrap_or(0)
    }

    fn read16(&self, offset: usize) -> u16 {
        self.descriptors.read16(offset).unwrap_or(0)
    }

    fn write64(&self, offset: usize, value: u64) {
        self.descriptors.write64(offset, value).ok();
    }

    /// Status byte of descriptor `index` (offset 12 in both formats).
    fn status(&self, index: usize) -> u8 {
        self.read8(Self::offset(index) + 12)
    }

    /// Length field (offset 8 in both formats).
    fn length(&self, index: usize) -> u16 {
        self.read16(Self::offset(index) + 8)
    }

    /// Receive errors byte (offset 13).
    fn errors(&self, index: usize) -> u8 {
        self.read8(Self::offset(index) + 13)
    }

    /// Gives receive descriptor `index` its buffer and a clear status.
    fn post_rx(&self, index: usize) {
        let (_, address) = self.buffer(index);
        self.write64(Self::offset(index), address);
        self.write64(Self::offset(index) + 8, 0);
    }

    /// Fills transmit descriptor `index`: buffer, length, CSO 0, `cmd`,
    /// status 0, CSS 0, special 0.
    fn fill_tx(&self, index: usize, len: u16, cmd: u8) {
        let (_, address) = self.buffer(index);
        self.write64(Self::offset(index), address);
        self.write64(
            Self::offset(index) + 8,
            u64::from(len) | u64::from(cmd) << 24,
        );
    }

    fn clear(&self, index: usize) {
        self.write64(Self::offset(index), 0);
        self.write64(Self::offset(index) + 8, 0);
    }
}

/// What the interrupt handler works with, leaked at bind time and freed
/// only after the interrupt is unbound.
struct IrqContext {
    regs: Regs,
    waker: Waker,
    /// ICR.RXO seen: each is at least one frame lost for want of a buffer.
    overruns: AtomicU64,
}

struct Irq {
    bound: BoundInterrupt,
    context: NonNull<IrqContext>,
}

/// The interrupt handler (interrupt context): see the module comment.
fn interrupt(context: usize) {
    // SAFETY: `context` is the pointer `Box::leak` gave in `E1000::new`;
    // the box is freed only after `unbind_interrupt` returned, so it is
    // live whenever the handler runs; it is only read here (the atomic
    // aside), and the thread side takes no `&mut` to it.
    let context = unsafe { &*(context as *const IrqContext) };
    let causes = context.regs.read(reg::ICR);
    // Zero: the shared line was someone else's. All ones: the device is
    // gone (a master abort), and not asserting anything.
    if causes == 0 || causes == u32::MAX {
        return;
    }
    context.regs.write(reg::IMC, u32::MAX);
    if causes & cause::RXO != 0 {
        context.overruns.fetch_add(1, Ordering::Relaxed);
    }
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

/// Masks every interrupt cause and stops both DMA engines.
fn quiesce(regs: &Regs) {
    regs.write(reg::IMC, u32::MAX);
    regs.write(reg::RCTL, 0);
    regs.write(reg::TCTL, 0);
    // A read flushes the posted writes.
    regs.read(reg::STATUS);
}

/// CTRL.RST, waiting (bounded) for it to clear.
fn reset(regs: &Regs, hal: &dyn Hal) -> Result<(), ProbeError> {
    regs.write(reg::CTRL, regs.read(reg::CTRL) | ctrl::RST);
    if poll(hal, RESET_TIMEOUT_NS, || {
        regs.read(reg::CTRL) & ctrl::RST == 0
    }) {
        Ok(())
    } else {
        Err(ProbeError::Device(
            "e1000: the device did not come back from reset",
        ))
    }
}

/// EEPROM word `word` through EERD (§5.3.1).
fn read_eeprom(regs: &Regs, hal: &dyn Hal, word: u8) -> Result<u16, ProbeError> {
    regs.write(reg::EERD, eerd::START | u32::from(word) << eerd::ADDR_SHIFT);
    let mut value = 0;
    let done = poll(hal, EEPROM_TIMEOUT_NS, || {
        value = regs.read(reg::EERD);
        value & eerd::DONE != 0
    });
    if done {
        Ok((value >> eerd::DATA_SHIFT) as u16)
    } else {
        Err(ProbeError::Device("e1000: EEPROM read did not complete"))
    }
}

/// A unicast address that is not all zeros.
fn valid_mac(mac: &[u8; 6]) -> bool {
    *mac != [0; 6] && mac[0] & 1 == 0
}

/// The station address: RAL0/RAH0 if RAH0.AV says they hold one (QEMU
/// fills them), else EEPROM words 0-2, which are then written to RAL0/
/// RAH0 with AV so the receive filter passes frames sent to it.
fn read_mac(regs: &Regs, hal: &dyn Hal) -> Result<[u8; 6], ProbeError> {
    let low = regs.read(reg::RAL0);
    let high = regs.read(reg::RAH0);
    if high & RAH_AV != 0 {
        let [a, b, c, d] = low.to_le_bytes();
        let [e, f, _, _] = high.to_le_bytes();
        let mac = [a, b, c, d, e, f];
        if valid_mac(&mac) {
            return Ok(mac);
        }
    }
    let mut mac = [0; 6];
    for word in 0..3u8 {
        let [lo, hi] = read_eeprom(regs, hal, word)?.to_le_bytes();
        mac[usize::from(word) * 2] = lo;
        mac[usize::from(word) * 2 + 1] = hi;
    }
    if !valid_mac(&mac) {
        return Err(ProbeError::Device("e1000: no valid station address"));
    }
    regs.write(
        reg::RAL0,
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
    );
    regs.write(
        reg::RAH0,
        u32::from_le_bytes([mac[4], mac[5], 0, 0]) | RAH_AV,
    );
    Ok(mac)
}

/// A set-up 8254x: implements [`NetDevice`] for the kernel's network
/// thread.
pub struct E1000 {
    name: String,
    mac: [u8; 6],
    regs: Regs,
    rx: Ring,
    tx: Ring,
    /// Next receive descriptor to look at.
    rx_next: usize,
    /// Descriptors before `rx_next` not yet given back through RDT.
    rx_unreturned: usize,
    /// Inside a frame that spans descriptors: dropping up to its EOP.
    rx_discarding: bool,
    /// Next transmit descriptor to fill (what TDT holds).
    tx_tail: usize,
    /// Oldest transmit descriptor not reclaimed.
    tx_clean: usize,
    /// The stack was refused for a full ring since the last
    /// `enable_interrupts`: unmask TXDW so it hears when there is room.
    tx_refused: bool,
    /// TDH at the last check, and how many checks in a row found it there.
    tx_last_head: usize,
    tx_stalled_checks: u32,
    /// A problem found in `enable_interrupts`, reported by the next
    /// `transmit`.
    pending_error: Option<&'static str>,
    counters: NetCounters,
    irq: Option<Irq>,
}

// SAFETY: the E1000 owns its DMA pages (the Hal gave them exclusively)
// and its leaked interrupt context; the raw pointers in `Dma`,
// `MmioRegion` and `Irq` carry no affinity to a thread. The interrupt
// handler shares only the context, which it reads through volatile
// register accesses and an atomic.
unsafe impl Send for E1000 {}

impl E1000 {
    /// Takes the 8254x `function`: maps BAR 0, enables memory decoding and
    /// bus mastering in its command register, resets it, reads its
    /// address, brings the link up, sets up both rings, binds its INTx line
    /// and unmasks its interrupts. On `Err` everything taken is given back
    /// (and the command register restored), except the register mapping,
    /// which the Hal cannot undo, and DMA memory the device might still
    /// reach because it did not come back from reset (leaked, not freed).
    pub fn new(
        function: &PciFunction,
        config: &dyn ConfigSpace,
        hal: &dyn Hal,
    ) -> Result<E1000, ProbeError> {
        if !DeviceId::any(E1000_IDS, function) {
            return Err(ProbeError::Device("e1000: not an 82540EM or 82545EM"));
        }
        let bar = function
            .bar(0)
            .filter(|bar| bar.is_memory())
            .ok_or(ProbeError::Device("e1000: bar0 is not a memory bar"))?;
        if bar.base == 0 {
            return Err(ProbeError::Device("e1000: bar0 not assigned"));
        }
        if bar.size < REGISTER_WINDOW as u64 {
            return Err(ProbeError::Device(
                "e1000: bar0 smaller than the 128 KiB register window",
            ));
        }
        let header = &function.header;
        if header.interrupt_pin == 0 || header.interrupt_line == 0xff {
            return Err(ProbeError::Device("e1000: no INTx line routed"));
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
    ) -> Result<E1000, ProbeError> {
        // Firmware (a PXE ROM) may have left rings running: stop them
        // before the reset, which in QEMU does not.
        quiesce(&regs);
        reset(&regs, hal)?;
        quiesce(&regs);
        regs.read(reg::ICR);
        let address = function.address;
        config.set_command(address, config.command(address) | command::BUS_MASTER);

        let mac = read_mac(&regs, hal)?;
        let control = regs.read(reg::CTRL);
        regs.write(
            reg::CTRL,
            (control | ctrl::SLU | ctrl::ASDE)
                & !(ctrl::LRST
                    | ctrl::PHY_RST
                    | ctrl::ILOS
                    | ctrl::FRCSPD
                    | ctrl::FRCDPLX
                    | ctrl::VME
                    | ctrl::RST),
        );
        // No flow control (§14.3: zero these when it is not used).
        for register in [reg::FCAL, reg::FCAH, reg::FCT, reg::FCTTV] {
            regs.write(register, 0);
        }
        for entry in 0..reg::MTA_LEN {
            regs.write(reg::MTA + 4 * entry, 0);
        }
        // No interrupt moderation: an interrupt per event, the handler
        // masks the rest until the thread has drained.
        for register in [reg::ITR, reg::RDTR, reg::RADV, reg::TIDV] {
            regs.write(register, 0);
        }

        let mut rx = Ring::alloc(hal)?;
        let tx = match Ring::alloc(hal) {
            Ok(tx) => tx,
            Err(error) => {
                rx.free(hal);
                return Err(error);
            }
        };
        let mut nic = E1000 {
            name: format!("e1000 {}", function.address),
            mac,
            regs,
            rx,
            tx,
            rx_next: 0,
            rx_unreturned: 0,
            rx_discarding: false,
            tx_tail: 0,
            tx_clean: 0,
            tx_refused: false,
            tx_last_head: 0,
            tx_stalled_checks: 0,
            pending_error: None,
            counters: NetCounters::default(),
            irq: None,
        };
        nic.start_rx();
        nic.start_tx();

        let context = match nic.regs.alias() {
            Ok(regs) => Box::new(IrqContext {
                regs,
                waker: hal.net_waker(),
                overruns: AtomicU64::new(0),
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
        nic.regs.write(reg::IMS, IMS_RX);
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
        self.rx.free(hal);
        self.tx.free(hal);
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

    /// Receive ring registers (§14.4), then the ring itself.
    fn start_rx(&mut self) {
        let base = self.rx.base();
        self.regs.write(reg::RDBAL, base as u32);
        self.regs.write(reg::RDBAH, (base >> 32) as u32);
        self.regs
            .write(reg::RDLEN, (RING_LEN * DESCRIPTOR_SIZE) as u32);
        self.restart_rx();
    }

    /// Every descriptor posted, RDH = 0, RDT one behind it, receiver on.
    fn restart_rx(&mut self) {
        self.regs.write(reg::RCTL, 0);
        for index in 0..RING_LEN {
            self.rx.post_rx(index);
        }
        self.rx_next = 0;
        self.rx_unreturned = 0;
        self.rx_discarding = false;
        self.regs.write(reg::RDH, 0);
        fence(Ordering::SeqCst);
        self.regs.write(reg::RDT, (RING_LEN - 1) as u32);
        self.regs.write(reg::RCTL, RCTL_VALUE);
    }

    /// Transmit ring registers (§14.5), then the ring itself.
    fn start_tx(&mut self) {
        let base = self.tx.base();
        self.regs.write(reg::TDBAL, base as u32);
        self.regs.write(reg::TDBAH, (base >> 32) as u32);
        self.regs
            .write(reg::TDLEN, (RING_LEN * DESCRIPTOR_SIZE) as u32);
        self.regs.write(reg::TIPG, TIPG_VALUE);
        self.restart_tx();
    }

    /// Every descriptor cleared, TDH = TDT = 0, transmitter on.
    fn restart_tx(&mut self) {
        self.regs.write(reg::TCTL, 0);
        for index in 0..RING_LEN {
            self.tx.clear(index);
        }
        self.tx_tail = 0;
        self.tx_clean = 0;
        self.tx_last_head = 0;
        self.tx_stalled_checks = 0;
        self.regs.write(reg::TDH, 0);
        self.regs.write(reg::TDT, 0);
        fence(Ordering::SeqCst);
        self.regs.write(reg::TCTL, TCTL_VALUE);
    }

    /// Writes RDT to give back the descriptors received since the last
    /// write: everything before `rx_next` except the one RDT names.
    fn give_back_rx(&mut self) {
        if self.rx_unreturned == 0 {
            return;
        }
        // The cleared descriptors must be in memory before the device may
        // fetch them.
        fence(Ordering::SeqCst);
        let tail = (self.rx_next + RING_LEN - 1) % RING_LEN;
        self.regs.write(reg::RDT, tail as u32);
        self.rx_unreturned = 0;
    }

    /// What receive descriptor `index` (DD set) holds, copied into `buf`
    /// if it is a good frame that fits.
    fn take_rx(&mut self, index: usize, status: u8, buf: &mut [u8]) -> Option<usize> {
        let length = usize::from(self.rx.length(index));
        let errors = self.rx.errors(index);
        let end_of_packet = status & rxd::EOP != 0;
        if self.rx_discarding {
            if end_of_packet {
                self.rx_discarding = false;
                self.counters.rx_errors += 1;
            }
            return None;
        }
        if !end_of_packet {
            // Longer than a buffer: RCTL.LPE is off, so the device should
            // never do this. The rest of the frame follows; drop it all.
            self.rx_discarding = true;
            return None;
        }
        if errors & rxd::FRAME_ERRORS != 0 || length == 0 || length > BUFFER_SIZE {
            self.counters.rx_errors += 1;
            return None;
        }
        if length > buf.len() {
            self.counters.rx_drops += 1;
            return None;
        }
        let (source, _) = self.rx.buffer(index);
        // SAFETY: `source` is a BUFFER_SIZE-byte buffer in our DMA page and
        // length <= BUFFER_SIZE; `buf` holds at least `length` bytes and is
        // not DMA memory, so they do not overlap. The device does not write
        // the buffer while the descriptor is ours (DD set, not given back).
        unsafe { core::ptr::copy_nonoverlapping(source, buf.as_mut_ptr(), length) };
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += length as u64;
        Some(length)
    }

    fn tx_in_flight(&self) -> usize {
        (self.tx_tail + RING_LEN - self.tx_clean) % RING_LEN
    }

    /// Takes back the transmit descriptors the device has finished (DD),
    /// oldest first, counting what they sent.
    fn reclaim_tx(&mut self) {
        while self.tx_clean != self.tx_tail {
            let index = self.tx_clean;
            let status = self.tx.status(index);
            if status & txd::DD == 0 {
                break;
            }
            fence(Ordering::Acquire);
            if status & txd::FAILED != 0 {
                self.counters.tx_errors += 1;
            } else {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += u64::from(self.tx.length(index));
            }
            self.tx.clear(index);
            self.tx_clean = (index + 1) % RING_LEN;
        }
    }

    /// A receive head outside the ring: restart the ring.
    fn watch_rx(&mut self) {
        let head = self.regs.read(reg::RDH) as usize;
        if head >= RING_LEN {
            self.counters.rx_errors += 1;
            self.restart_rx();
            self.pending_error = Some(RX_HEAD_OUTSIDE);
        }
    }

    /// A transmit head outside the ring, or one that stays put with frames
    /// not written back and the link up: restart the ring; the frames in it are
    /// lost and counted in `tx_errors`.
    fn watch_tx(&mut self) {
        self.reclaim_tx();
        if self.tx_clean == self.tx_tail {
            self.tx_stalled_checks = 0;
            return;
        }
        let head = self.regs.read(reg::TDH) as usize;
        let why = if head >= RING_LEN {
            TX_HEAD_OUTSIDE
        } else if head != self.tx_last_head {
            // Moving. (A head at the tail with descriptors not written
            // back is normal for a moment, the part fetches ahead of
            // sending; for TX_STALL_CHECKS wake-ups it is a stall.)
            self.tx_last_head = head;
            self.tx_stalled_checks = 0;
            return;
        } else {
            self.tx_stalled_checks += 1;
            if self.tx_stalled_checks < TX_STALL_CHECKS {
                return;
            }
            if self.regs.read(reg::STATUS) & STATUS_LU == 0 {
                // No link: holding frames is what the device should do.
                self.tx_stalled_checks = 0;
                return;
            }
            TX_STALLED
        };
        self.counters.tx_errors += self.tx_in_flight() as u64;
        self.restart_tx();
        self.pending_error = Some(why);
    }
}

impl Drop for E1000 {
    /// Without the Hal nothing can be freed: the memory and the interrupt
    /// context are leaked, which is safe; the device is silenced so that it
    /// neither reaches the memory nor interrupts. [`E1000::release`]
    /// returns everything.
    fn drop(&mut self) {
        quiesce(&self.regs);
    }
}

impl NetDevice for E1000 {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&self) -> bool {
        self.regs.read(reg::STATUS) & STATUS_LU != 0
    }

    /// Looks at no more than a ring's worth of descriptors per call: a
    /// burst of bad frames cannot keep it here, and anything the device
    /// wrote after the call began raised ICR.RXT0 after the handler's ICR
    /// read, so `enable_interrupts` brings the thread back for it.
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        for _ in 0..RING_LEN {
            let index = self.rx_next;
            let status = self.rx.status(index);
            if status & rxd::DD == 0 {
                break;
            }
            // The rest of the descriptor and the buffer after DD.
            fence(Ordering::Acquire);
            let frame = self.take_rx(index, status, buf);
            self.rx.post_rx(index);
            self.rx_next = (index + 1) % RING_LEN;
            self.rx_unreturned += 1;
            if self.rx_unreturned >= RX_RETURN_BATCH {
                self.give_back_rx();
            }
            if frame.is_some() {
                return frame;
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
            return Err(NetError::Device("e1000: empty frame"));
        }
        self.reclaim_tx();
        if self.tx_in_flight() == RING_LEN - 1 {
            self.tx_refused = true;
            self.counters.tx_drops += 1;
            return Err(NetError::Full);
        }
        let index = self.tx_tail;
        let (target, _) = self.tx.buffer(index);
        // SAFETY: `target` is a BUFFER_SIZE-byte buffer of our DMA page,
        // frame.len() <= MAX_FRAME < BUFFER_SIZE, and the device does not
        // read it: the descriptor is between TDT and the reclaimed ones.
        unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), target, frame.len()) };
        self.tx
            .fill_tx(index, frame.len() as u16, txd::EOP | txd::IFCS | txd::RS);
        self.tx_tail = (index + 1) % RING_LEN;
        // Buffer and descriptor in memory before the tail moves.
        fence(Ordering::SeqCst);
        self.regs.write(reg::TDT, self.tx_tail as u32);
        Ok(())
    }

    fn can_transmit(&mut self) -> bool {
        self.reclaim_tx();
        let room = self.tx_in_flight() < RING_LEN - 1;
        if !room {
            self.tx_refused = true;
        }
        room
    }

    fn enable_interrupts(&mut self) {
        self.give_back_rx();
        self.watch_rx();
        self.watch_tx();
        let mut mask = IMS_RX;
        if self.tx_refused {
            mask |= cause::TXDW;
            self.tx_refused = false;
        }
        self.regs.write(reg::IMS, mask);
    }

    fn counters(&self) -> NetCounters {
        let mut counters = self.counters;
        if let Some(irq) = &self.irq {
            // SAFETY: the context lives until `release` frees it, which
            // takes `self`; only shared access and an atomic load here.
            let context = unsafe { irq.context.as_ref() };
            counters.rx_drops += context.overruns.load(Ordering::Relaxed);
        }
        counters
    }
}

/// The e1000 driver for [`crate::bind`].
pub struct E1000Driver;

impl E1000Driver {
    /// The whole probe: [`E1000::new`], then the interface handed to the
    /// kernel with [`Hal::attach_net`]. If the kernel refuses it, it has
    /// dropped the device, which silences it (see [`E1000`]'s `Drop`).
    pub fn probe_pci(
        &self,
        function: &PciFunction,
        config: &dyn ConfigSpace,
        hal: &dyn Hal,
    ) -> Result<(), ProbeError> {
        super::probe_pci_nic(&Device::Pci(function), hal, Some(config), E1000::new)
    }
}

impl Driver for E1000Driver {
    fn name(&self) -> &'static str {
        "e1000"
    }

    fn matches(&self, device: &Device<'_>) -> bool {
        matches!(device, Device::Pci(function) if DeviceId::any(E1000_IDS, function))
    }

    /// Sets the card up ([`E1000Driver::probe_pci`]); it needs the PCI
    /// configuration space for bus mastering and memory decoding.
    fn probe(
        &self,
        device: &Device<'_>,
        hal: &dyn Hal,
        _xen: Option<&dyn XenBus>,
        pci: Option<&dyn ConfigSpace>,
    ) -> Result<(), ProbeError> {
        super::probe_pci_nic(device, hal, pci, E1000::new)
    }
}

#[cfg(test)]
mod tests {
    //! A fake 82540EM: the register window is host memory behind
    //! [`FakeHal::add_mmio`]; [`TestHal`] plays the device during the
    //! driver's waits (CTRL.RST clearing, EERD completing) each time the
    //! driver reads the clock; [`FakeDevice`] plays the DMA engines,
    //! finding descriptors and buffers by the device addresses the driver
    //! programmed. Plain memory does not clear ICR on read nor OR into
    //! IMS: tests look at the last value written.

    use super::*;
    use crate::fake::{e1000, FakeHal, FakePci};
    use crate::hal::HalError;
    use crate::pci::PciAddress;
    use core::cell::Cell;
    use core::sync::atomic::AtomicUsize;
    use std::vec;
    use std::vec::Vec;

    const BAR0: u64 = 0xfebc_0000;
    const NIC: PciAddress = PciAddress::new(0, 3, 0);
    /// What the reset puts in RAL0/RAH0 (QEMU's `mac=`).
    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    /// What EEPROM words 0-2 hold, different to tell the sources apart.
    const EEPROM_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
    /// How far the clock moves each time the driver reads it.
    const TICK_NS: u64 = 1_000;

    fn count_wake(context: usize) {
        // SAFETY: `context` points at the boxed counter of a `TestHal`,
        // which outlives every E1000 made with it.
        let wakes = unsafe { &*(context as *const AtomicUsize) };
        wakes.fetch_add(1, Ordering::SeqCst);
    }

    fn eeprom_words(mac: [u8; 6]) -> [u16; 3] {
        [
            u16::from_le_bytes([mac[0], mac[1]]),
            u16::from_le_bytes([mac[2], mac[3]]),
            u16::from_le_bytes([mac[4], mac[5]]),
        ]
    }

    struct TestHal {
        fake: FakeHal,
        reset_completes: Cell<bool>,
        /// Whether the reset leaves the address in RAL0/RAH0.
        mac_in_ral: Cell<bool>,
        eeprom_answers: Cell<bool>,
        eeprom: Cell<[u16; 3]>,
        fail_bind: Cell<bool>,
        wakes: Box<AtomicUsize>,
    }

    impl TestHal {
        fn new() -> Self {
            let fake = FakeHal::new();
            fake.add_mmio(BAR0, REGISTER_WINDOW);
            TestHal {
                fake,
                reset_completes: Cell::new(true),
                mac_in_ral: Cell::new(true),
                eeprom_answers: Cell::new(true),
                eeprom: Cell::new(eeprom_words(EEPROM_MAC)),
                fail_bind: Cell::new(false),
                wakes: Box::new(AtomicUsize::new(0)),
            }
        }

        fn regs(&self) -> MmioRegion {
            MmioRegion::map(&self.fake, BAR0, REGISTER_WINDOW).expect("the window is backed")
        }

        /// The device's side of a wait.
        fn step(&self) {
            let regs = self.regs();
            let control = regs.read32(reg::CTRL).expect("in the window");
            if control & ctrl::RST != 0 && self.reset_completes.get() {
                regs.write32(reg::CTRL, control & !ctrl::RST)
                    .expect("in the window");
                let (low, high) = if self.mac_in_ral.get() {
                    (
                        u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]),
                        u32::from_le_bytes([MAC[4], MAC[5], 0, 0]) | RAH_AV,
                    )
                } else {
                    (0, 0)
                };
                regs.write32(reg::RAL0, low).expect("in the window");
                regs.write32(reg::RAH0, high).expect("in the window");
            }
            let request = regs.read32(reg::EERD).expect("in the window");
            if request & eerd::START != 0 && self.eeprom_answers.get() {
                let word = (request >> eerd::ADDR_SHIFT) & 0xff;
                let data = self
                    .eeprom
                    .get()
                    .get(word as usize)
                    .copied()
                    .unwrap_or(0xffff);
                regs.write32(
                    reg::EERD,
                    u32::from(data) << eerd::DATA_SHIFT | word << eerd::ADDR_SHIFT | eerd::DONE,
                )
                .expect("in the window");
            }
        }

        fn wakes(&self) -> usize {
            self.wakes.load(Ordering::SeqCst)
        }
    }

    // SAFETY: every promise is the FakeHal's, to which this delegates.
    unsafe impl Hal for TestHal {
        fn dma_alloc(&self, pages: usize) -> Result<Dma, HalError> {
            self.fake.dma_alloc(pages)
        }

        fn dma_free(&self, dma: Dma) {
            self.fake.dma_free(dma)
        }

        fn device_address(&self, virt: *const u8) -> Option<u64> {
            self.fake.device_address(virt)
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
    }

    impl FakeDevice {
        fn new(hal: &TestHal) -> Self {
            FakeDevice { regs: hal.regs() }
        }

        fn get(&self, offset: usize) -> u32 {
            self.regs.read32(offset).expect("in the window")
        }

        fn set(&self, offset: usize, value: u32) {
            self.regs.write32(offset, value).expect("in the window");
        }

        fn raise(&self, causes: u32) {
            self.set(reg::ICR, self.get(reg::ICR) | causes);
        }

        /// `len` bytes at device address `address`, which must lie in the
        /// driver's DMA memory (else the driver programmed a bad address).
        fn dma(nic: &E1000, address: u64, len: usize) -> MmioRegion {
            for dma in nic.rx.memory.iter().chain(&nic.tx.memory) {
                let start = dma.device_addr;
                let end = start + dma.len() as u64;
                if address >= start && address + len as u64 <= end {
                    let offset = (address - start) as usize;
                    // SAFETY: inside a live page of the fake Hal, reached
                    // only through volatile accesses, as the device would.
                    return unsafe { MmioRegion::new(dma.virt.add(offset), len) };
                }
            }
            panic!("device address {address:#x}+{len:#x} outside the driver's dma memory");
        }

        fn descriptor(
            &self,
            nic: &E1000,
            low: usize,
            high: usize,
            len: usize,
            index: u32,
        ) -> MmioRegion {
            let base = u64::from(self.get(high)) << 32 | u64::from(self.get(low));
            assert_eq!(self.get(len), (RING_LEN * DESCRIPTOR_SIZE) as u32);
            Self::dma(
                nic,
                base + u64::from(index) * DESCRIPTOR_SIZE as u64,
                DESCRIPTOR_SIZE,
            )
        }

        fn ring_len(&self, len: usize) -> u32 {
            self.get(len) / DESCRIPTOR_SIZE as u32
        }

        /// Writes `bytes` into the buffer at RDH with this length, status
        /// and errors, and advances RDH; false (and ICR.RXO) when the
        /// driver left no buffer.
        fn write_rx(&self, nic: &E1000, bytes: &[u8], length: u16, status: u8, errors: u8) -> bool {
            let head = self.get(reg::RDH);
            if head == self.get(reg::RDT) {
                self.raise(cause::RXO);
                return false;
            }
            let descriptor = self.descriptor(nic, reg::RDBAL, reg::RDBAH, reg::RDLEN, head);
            let buffer = Self::dma(nic, descriptor.read64(0).expect("inside"), BUFFER_SIZE);
            for (i, &byte) in bytes.iter().enumerate() {
                buffer.write8(i, byte).expect("inside");
            }
            descriptor.write16(8, length).expect("inside");
            descriptor.write8(13, errors).expect("inside");
            descriptor.write8(12, status).expect("inside");
            self.set(reg::RDH, (head + 1) % self.ring_len(reg::RDLEN));
            self.raise(cause::RXT0);
            true
        }

        fn deliver(&self, nic: &E1000, frame: &[u8]) -> bool {
            self.write_rx(nic, frame, frame.len() as u16, rxd::DD | rxd::EOP, 0)
        }

        /// Sends everything from TDH to TDT, writing back `status` (DD,
        /// perhaps with an error bit); returns the frames.
        fn send_with(&self, nic: &E1000, status: u8) -> Vec<Vec<u8>> {
            let mut frames = Vec::new();
            while self.get(reg::TDH) != self.get(reg::TDT) {
                let head = self.get(reg::TDH);
                let descriptor = self.descriptor(nic, reg::TDBAL, reg::TDBAH, reg::TDLEN, head);
                let address = descriptor.read64(0).expect("inside");
                let length = usize::from(descriptor.read16(8).expect("inside"));
                assert_eq!(
                    descriptor.read8(11).expect("inside"),
                    txd::EOP | txd::IFCS | txd::RS
                );
                let buffer = Self::dma(nic, address, length);
                frames.push(
                    (0..length)
                        .map(|i| buffer.read8(i).expect("inside"))
                        .collect(),
                );
                descriptor.write8(12, status).expect("inside");
                self.set(reg::TDH, (head + 1) % self.ring_len(reg::TDLEN));
                self.raise(cause::TXDW);
            }
            frames
        }

        fn send(&self, nic: &E1000) -> Vec<Vec<u8>> {
            self.send_with(nic, txd::DD)
        }
    }

    /// The driver, the device and what they live on; fields drop in
    /// order, the E1000 (whose `Drop` writes registers) before the Hal.
    struct Bench {
        nic: E1000,
        device: FakeDevice,
        pci: FakePci,
        hal: TestHal,
    }

    fn pci() -> FakePci {
        let pci = FakePci::new();
        pci.add(NIC, e1000(BAR0 as u32, 0xc000));
        pci
    }

    fn function(pci: &FakePci) -> PciFunction {
        PciFunction::read(pci, NIC).expect("present")
    }

    fn bench() -> Bench {
        let hal = TestHal::new();
        let pci = pci();
        let nic = E1000::new(&function(&pci), &pci, &hal).expect("the probe succeeds");
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

    fn receive(nic: &mut E1000) -> Option<Vec<u8>> {
        let mut buf = [0u8; MAX_FRAME];
        nic.receive(&mut buf).map(|len| buf[..len].to_vec())
    }

    #[test]
    fn probe_programs_the_device() {
        let hal = TestHal::new();
        let pci = FakePci::new();
        // Firmware left INTx disabled and no decoding; garbage in the MTA.
        pci.add(
            NIC,
            e1000(BAR0 as u32, 0xc000).command(command::INTX_DISABLE),
        );
        let regs = hal.regs();
        for entry in 0..reg::MTA_LEN {
            regs.write32(reg::MTA + 4 * entry, 0xdead_beef)
                .expect("inside");
        }
        regs.write32(reg::CTRL, ctrl::LRST | ctrl::PHY_RST)
            .expect("inside");
        let nic = E1000::new(&function(&pci), &pci, &hal).expect("the probe succeeds");
        let device = FakeDevice::new(&hal);

        let command = pci.function(NIC).expect("present").peek32(0x04) as u16;
        assert_eq!(command & (command::MEMORY | command::BUS_MASTER), 0x6);
        assert_eq!(command & command::INTX_DISABLE, 0);

        let control = device.get(reg::CTRL);
        assert_eq!(control & (ctrl::SLU | ctrl::ASDE), ctrl::SLU | ctrl::ASDE);
        assert_eq!(control & (ctrl::RST | ctrl::LRST | ctrl::PHY_RST), 0);
        assert!((0..reg::MTA_LEN).all(|entry| device.get(reg::MTA + 4 * entry) == 0));

        let rx = nic.rx.base();
        assert_eq!(device.get(reg::RDBAL), rx as u32);
        assert_eq!(device.get(reg::RDBAH), (rx >> 32) as u32);
        assert_eq!(device.get(reg::RDLEN), 4096);
        assert_eq!(device.get(reg::RDH), 0);
        assert_eq!(device.get(reg::RDT), 255);
        let rctl = device.get(reg::RCTL);
        assert_eq!(rctl, RCTL_VALUE);
        assert_eq!(
            rctl & (1 << 1 | 1 << 15 | 1 << 26),
            1 << 1 | 1 << 15 | 1 << 26
        );
        assert_eq!(rctl & (0b11 << 16 | 1 << 25), 0, "2048-byte buffers");

        let tx = nic.tx.base();
        assert_eq!(device.get(reg::TDBAL), tx as u32);
        assert_eq!(device.get(reg::TDBAH), (tx >> 32) as u32);
        assert_eq!(device.get(reg::TDLEN), 4096);
        assert_eq!(device.get(reg::TDH), 0);
        assert_eq!(device.get(reg::TDT), 0);
        assert_eq!(
            device.get(reg::TCTL),
            1 << 1 | 1 << 3 | 0x0f << 4 | 0x40 << 12
        );
        assert_eq!(device.get(reg::TIPG), 0x0060_200a);

        assert_eq!(device.get(reg::IMS), IMS_RX);
        let bound = nic.bound_interrupt().expect("bound");
        assert_eq!(
            hal.fake.interrupts(),
            vec![(bound.handle, InterruptSource::Legacy { line: 11 })]
        );
        assert_eq!(nic.mac(), MAC);
        assert_eq!(nic.name(), "e1000 00:03.0");
        assert_eq!(hal.fake.live_dma(), 2 * Ring::PAGES);

        // Every receive descriptor holds its own buffer, inside our memory.
        let mut buffers: Vec<u64> = (0..RING_LEN as u32)
            .map(|i| {
                let descriptor = device.descriptor(&nic, reg::RDBAL, reg::RDBAH, reg::RDLEN, i);
                let address = descriptor.read64(0).expect("inside");
                FakeDevice::dma(&nic, address, BUFFER_SIZE);
                address
            })
            .collect();
        buffers.sort_unstable();
        buffers.dedup();
        assert_eq!(buffers.len(), RING_LEN);
        drop(nic);
    }

    #[test]
    fn link_state_follows_status() {
        let b = bench();
        assert!(!b.nic.link_up());
        b.device.set(reg::STATUS, STATUS_LU);
        assert!(b.nic.link_up());
    }

    #[test]
    fn mac_falls_back_to_the_eeprom() {
        let hal = TestHal::new();
        hal.mac_in_ral.set(false);
        let pci = pci();
        let nic = E1000::new(&function(&pci), &pci, &hal).expect("the probe succeeds");
        assert_eq!(nic.mac(), EEPROM_MAC);
        let device = FakeDevice::new(&hal);
        // Written back for the receive filter, valid.
        assert_eq!(device.get(reg::RAL0), 0x105e_0002);
        assert_eq!(device.get(reg::RAH0), 0x8000_3020);
        drop(nic);
    }

    #[test]
    fn eeprom_that_never_answers_fails_the_probe() {
        let hal = TestHal::new();
        hal.mac_in_ral.set(false);
        hal.eeprom_answers.set(false);
        let pci = pci();
        let before = pci.function(NIC).expect("present").peek32(0x04);
        let result = E1000::new(&function(&pci), &pci, &hal);
        assert_eq!(
            result.err(),
            Some(ProbeError::Device("e1000: EEPROM read did not complete"))
        );
        assert!(hal.fake.now_ns() >= EEPROM_TIMEOUT_NS);
        assert_eq!(hal.fake.live_dma(), 0);
        assert!(hal.fake.interrupts().is_empty());
        assert_eq!(pci.function(NIC).expect("present").peek32(0x04), before);
    }

    #[test]
    fn eeprom_without_an_address_fails_the_probe() {
        let hal = TestHal::new();
        hal.mac_in_ral.set(false);
        hal.eeprom.set([0xffff; 3]);
        let pci = pci();
        assert_eq!(
            E1000::new(&function(&pci), &pci, &hal).err(),
            Some(ProbeError::Device("e1000: no valid station address"))
        );
        hal.eeprom.set([0; 3]);
        assert!(E1000::new(&function(&pci), &pci, &hal).is_err());
        assert_eq!(hal.fake.live_dma(), 0);
    }

    #[test]
    fn reset_that_never_completes_is_an_error() {
        let hal = TestHal::new();
        hal.reset_completes.set(false);
        let pci = pci();
        assert_eq!(
            E1000::new(&function(&pci), &pci, &hal).err(),
            Some(ProbeError::Device(
                "e1000: the device did not come back from reset"
            ))
        );
        assert!(hal.fake.now_ns() >= RESET_TIMEOUT_NS);
        assert!(hal.fake.now_ns() < RESET_TIMEOUT_NS + 10 * TICK_NS);
        assert_eq!(hal.fake.live_dma(), 0);
        assert!(hal.fake.interrupts().is_empty());
    }

    #[test]
    fn reset_wait_ends_even_when_the_clock_stands_still() {
        // The plain fake's clock never moves and nothing clears CTRL.RST.
        let hal = FakeHal::new();
        hal.add_mmio(BAR0, REGISTER_WINDOW);
        let pci = pci();
        assert_eq!(
            E1000::new(&function(&pci), &pci, &hal).err(),
            Some(ProbeError::Device(
                "e1000: the device did not come back from reset"
            ))
        );
        assert_eq!(hal.live_dma(), 0);
    }

    #[test]
    fn receives_frames_in_order() {
        let mut b = bench();
        assert_eq!(receive(&mut b.nic), None);
        let frames = [frame(1, 60), frame(2, 1514), frame(3, 342)];
        for f in &frames {
            assert!(b.device.deliver(&b.nic, f));
        }
        for f in &frames {
            assert_eq!(receive(&mut b.nic).as_ref(), Some(f));
        }
        assert_eq!(receive(&mut b.nic), None);
        // Drained: the three descriptors went back, RDT one behind rx_next.
        assert_eq!(b.device.get(reg::RDT), 2);
        let counters = b.nic.counters();
        assert_eq!(counters.rx_packets, 3);
        assert_eq!(counters.rx_bytes, 60 + 1514 + 342);
        assert_eq!(counters.rx_errors + counters.rx_drops, 0);
    }

    #[test]
    fn receive_ring_wraps_around() {
        let mut b = bench();
        let mut n = 0;
        for _ in 0..5 {
            let first = n;
            for _ in 0..100 {
                assert!(b.device.deliver(&b.nic, &frame(n, 64 + n % 1000)));
                n += 1;
            }
            for m in first..n {
                assert_eq!(receive(&mut b.nic), Some(frame(m, 64 + m % 1000)));
            }
            assert_eq!(receive(&mut b.nic), None);
            let rdh = b.device.get(reg::RDH) as usize;
            assert_eq!(rdh, n % RING_LEN);
            assert_eq!(
                b.device.get(reg::RDT) as usize,
                (rdh + RING_LEN - 1) % RING_LEN
            );
        }
        assert_eq!(b.nic.counters().rx_packets, 500);
    }

    #[test]
    fn received_descriptors_go_back_in_batches() {
        let mut b = bench();
        for n in 0..40 {
            assert!(b.device.deliver(&b.nic, &frame(n, 100)));
        }
        for _ in 0..RX_RETURN_BATCH - 1 {
            assert!(receive(&mut b.nic).is_some());
        }
        assert_eq!(b.device.get(reg::RDT), 255, "not yet");
        assert!(receive(&mut b.nic).is_some());
        assert_eq!(b.device.get(reg::RDT) as usize, RX_RETURN_BATCH - 1);
        assert!(receive(&mut b.nic).is_some());
        b.nic.enable_interrupts();
        assert_eq!(b.device.get(reg::RDT) as usize, RX_RETURN_BATCH);
    }

    #[test]
    fn full_receive_ring_overruns_and_recovers() {
        let mut b = bench();
        let mut accepted = 0;
        while b.device.deliver(&b.nic, &frame(accepted, 200)) {
            accepted += 1;
        }
        // RDT keeps one descriptor back.
        assert_eq!(accepted, RING_LEN - 1);
        assert_ne!(b.device.get(reg::ICR) & cause::RXO, 0);
        let handle = b.nic.bound_interrupt().expect("bound").handle;
        assert!(b.hal.fake.fire(handle));
        assert_eq!(b.nic.counters().rx_drops, 1);
        for n in 0..accepted {
            assert_eq!(receive(&mut b.nic), Some(frame(n, 200)));
        }
        assert_eq!(receive(&mut b.nic), None);
        assert!(b.device.deliver(&b.nic, &frame(999, 60)));
        assert_eq!(receive(&mut b.nic), Some(frame(999, 60)));
    }

    #[test]
    fn bad_receive_descriptors_are_dropped_and_counted() {
        let mut b = bench();
        let good = frame(5, 128);
        let d = &b.device;
        let dd_eop = rxd::DD | rxd::EOP;
        // Longer than the buffer.
        assert!(d.write_rx(&b.nic, &[], 3000, dd_eop, 0));
        // Empty.
        assert!(d.write_rx(&b.nic, &[], 0, dd_eop, 0));
        // Spanning two descriptors: one frame, one error.
        assert!(d.write_rx(&b.nic, &frame(1, 2048), 2048, rxd::DD, 0));
        assert!(d.write_rx(&b.nic, &frame(2, 100), 100, dd_eop, 0));
        // CRC error.
        assert!(d.write_rx(&b.nic, &frame(3, 64), 64, dd_eop, 1 << 0));
        // A checksum-offload error bit alone is not a bad frame.
        assert!(d.write_rx(&b.nic, &good, 128, dd_eop, 1 << 6));
        assert!(d.deliver(&b.nic, &good));
        assert_eq!(receive(&mut b.nic), Some(good.clone()));
        assert_eq!(b.nic.counters().rx_errors, 4);
        assert_eq!(receive(&mut b.nic), Some(good));
        assert_eq!(receive(&mut b.nic), None);

        // Longer than the caller's buffer: dropped, not a panic.
        assert!(b.device.deliver(&b.nic, &frame(7, 1514)));
        let mut small = [0u8; 100];
        assert_eq!(b.nic.receive(&mut small), None);
        let counters = b.nic.counters();
        assert_eq!((counters.rx_errors, counters.rx_drops), (4, 1));
        assert_eq!(counters.rx_packets, 2);
    }

    #[test]
    fn receive_stops_after_a_ring_of_bad_descriptors() {
        let mut b = bench();
        for _ in 0..RING_LEN - 1 {
            assert!(b.device.write_rx(&b.nic, &[], 0, rxd::DD | rxd::EOP, 0));
        }
        assert_eq!(receive(&mut b.nic), None);
        assert_eq!(b.nic.counters().rx_errors, RING_LEN as u64 - 1);
        assert!(b.device.deliver(&b.nic, &frame(1, 90)));
        assert_eq!(receive(&mut b.nic), Some(frame(1, 90)));
    }

    #[test]
    fn transmits_and_reclaims() {
        let mut b = bench();
        let frames = [frame(1, 42), frame(2, MAX_FRAME), frame(3, 600)];
        for f in &frames {
            assert_eq!(b.nic.transmit(f), Ok(()));
        }
        assert_eq!(b.device.get(reg::TDT), 3);
        assert_eq!(b.device.send(&b.nic), frames.to_vec());
        assert_eq!(b.nic.counters().tx_packets, 0, "counted when reclaimed");
        assert!(b.nic.can_transmit());
        let counters = b.nic.counters();
        assert_eq!(counters.tx_packets, 3);
        assert_eq!(counters.tx_bytes, 42 + MAX_FRAME as u64 + 600);
        assert_eq!(b.nic.tx_clean, 3);
    }

    #[test]
    fn transmit_ring_fills_and_wraps() {
        let mut b = bench();
        for n in 0..RING_LEN - 1 {
            assert_eq!(b.nic.transmit(&frame(n, 60)), Ok(()));
        }
        assert_eq!(b.nic.transmit(&frame(0, 60)), Err(NetError::Full));
        assert!(!b.nic.can_transmit());
        assert_eq!(b.nic.counters().tx_drops, 1);
        // Refused: the stack wants to hear when there is room.
        b.nic.enable_interrupts();
        assert_eq!(b.device.get(reg::IMS), IMS_RX | cause::TXDW);
        b.nic.enable_interrupts();
        assert_eq!(b.device.get(reg::IMS), IMS_RX);

        let sent = b.device.send(&b.nic);
        assert_eq!(sent.len(), RING_LEN - 1);
        assert!(sent.iter().enumerate().all(|(n, f)| *f == frame(n, 60)));
        assert!(b.nic.can_transmit());

        // Round the ring several times, the device a few frames behind.
        let mut queued = Vec::new();
        let mut received = Vec::new();
        for n in 0..1000 {
            let f = frame(n, 60 + n % 1400);
            assert_eq!(b.nic.transmit(&f), Ok(()));
            queued.push(f);
            if n % 7 == 0 {
                received.extend(b.device.send(&b.nic));
            }
        }
        received.extend(b.device.send(&b.nic));
        assert_eq!(received, queued);
        assert!(b.nic.can_transmit());
        assert_eq!(b.nic.counters().tx_packets, 1000 + RING_LEN as u64 - 1);
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
            Err(NetError::Device("e1000: empty frame"))
        );
        assert_eq!(b.nic.transmit(&[0; MAX_FRAME]), Ok(()));
        assert_eq!(b.device.get(reg::TDT), 1);
    }

    #[test]
    fn failed_transmissions_are_counted() {
        let mut b = bench();
        assert_eq!(b.nic.transmit(&frame(1, 60)), Ok(()));
        b.device.send_with(&b.nic, txd::DD | 1 << 1);
        assert!(b.nic.can_transmit());
        let counters = b.nic.counters();
        assert_eq!((counters.tx_packets, counters.tx_errors), (0, 1));
    }

    #[test]
    fn interrupt_handler_checks_masks_and_wakes() {
        let mut b = bench();
        let handle = b.nic.bound_interrupt().expect("bound").handle;
        b.device.set(reg::IMC, 0);
        // Someone else's interrupt on the shared line.
        assert!(b.hal.fake.fire(handle));
        assert_eq!(b.hal.wakes(), 0);
        assert_eq!(b.device.get(reg::IMC), 0);

        assert!(b.device.deliver(&b.nic, &frame(1, 80)));
        assert!(b.hal.fake.fire(handle));
        assert_eq!(b.device.get(reg::IMC), u32::MAX);
        assert_eq!(b.hal.wakes(), 1);
        assert_eq!(b.nic.counters().rx_drops, 0);
        // (Reading ICR cleared it.)
        b.device.set(reg::ICR, 0);

        assert_eq!(receive(&mut b.nic), Some(frame(1, 80)));
        assert_eq!(receive(&mut b.nic), None);
        // A frame lands between the last receive and the unmask: its cause
        // is latched, so unmasking asserts the interrupt again.
        assert!(b.device.deliver(&b.nic, &frame(2, 80)));
        b.nic.enable_interrupts();
        assert_eq!(b.device.get(reg::IMS), IMS_RX);
        assert_ne!(b.device.get(reg::ICR) & b.device.get(reg::IMS), 0);
    }

    #[test]
    fn receive_head_outside_the_ring_restarts_it() {
        let mut b = bench();
        assert!(b.device.deliver(&b.nic, &frame(1, 70)));
        b.device.set(reg::RDH, 300);
        b.nic.enable_interrupts();
        assert_eq!(b.nic.counters().rx_errors, 1);
        assert_eq!(b.device.get(reg::RDH), 0);
        assert_eq!(b.device.get(reg::RDT), 255);
        assert_eq!(b.device.get(reg::RCTL), RCTL_VALUE);
        // Reported once, through transmit.
        assert_eq!(
            b.nic.transmit(&frame(2, 60)),
            Err(NetError::Device(RX_HEAD_OUTSIDE))
        );
        assert_eq!(b.nic.transmit(&frame(2, 60)), Ok(()));
        // The ring works again from the start.
        assert_eq!(receive(&mut b.nic), None);
        assert!(b.device.deliver(&b.nic, &frame(3, 70)));
        assert_eq!(receive(&mut b.nic), Some(frame(3, 70)));
    }

    #[test]
    fn transmit_head_outside_the_ring_restarts_it() {
        let mut b = bench();
        assert_eq!(b.nic.transmit(&frame(1, 60)), Ok(()));
        assert_eq!(b.nic.transmit(&frame(2, 60)), Ok(()));
        b.device.set(reg::TDH, 999);
        b.nic.enable_interrupts();
        assert_eq!(b.nic.counters().tx_errors, 2);
        assert_eq!((b.device.get(reg::TDH), b.device.get(reg::TDT)), (0, 0));
        assert_eq!(b.device.get(reg::TCTL), TCTL_VALUE);
        assert_eq!(
            b.nic.transmit(&frame(3, 60)),
            Err(NetError::Device(TX_HEAD_OUTSIDE))
        );
        assert_eq!(b.nic.transmit(&frame(4, 60)), Ok(()));
        assert_eq!(b.device.send(&b.nic), vec![frame(4, 60)]);
    }

    #[test]
    fn stalled_transmit_ring_is_restarted_when_the_link_is_up() {
        let mut b = bench();
        for n in 0..10 {
            assert_eq!(b.nic.transmit(&frame(n, 60)), Ok(()));
        }
        // Link down: the device may hold frames as long as it likes.
        for _ in 0..2 * TX_STALL_CHECKS {
            b.nic.enable_interrupts();
        }
        assert_eq!(b.nic.counters().tx_errors, 0);
        assert_eq!(b.device.get(reg::TDT), 10);

        b.device.set(reg::STATUS, STATUS_LU);
        // Progress resets the count.
        b.device.set(reg::TDH, 1);
        for _ in 0..TX_STALL_CHECKS {
            b.nic.enable_interrupts();
        }
        assert_eq!(b.nic.counters().tx_errors, 0);
        b.nic.enable_interrupts();
        assert_eq!(b.nic.counters().tx_errors, 10);
        assert_eq!((b.device.get(reg::TDH), b.device.get(reg::TDT)), (0, 0));
        assert_eq!(
            b.nic.transmit(&frame(11, 60)),
            Err(NetError::Device(TX_STALLED))
        );
        assert_eq!(b.nic.transmit(&frame(12, 60)), Ok(()));
        assert_eq!(b.device.send(&b.nic), vec![frame(12, 60)]);
    }

    #[test]
    fn descriptors_never_written_back_are_a_stall() {
        let mut b = bench();
        b.device.set(reg::STATUS, STATUS_LU);
        for n in 0..3 {
            assert_eq!(b.nic.transmit(&frame(n, 60)), Ok(()));
        }
        // The device takes them all but never sets DD.
        b.device.set(reg::TDH, 3);
        for _ in 0..=TX_STALL_CHECKS {
            b.nic.enable_interrupts();
        }
        assert_eq!(b.nic.counters().tx_errors, 3);
        assert_eq!(
            b.nic.transmit(&frame(4, 60)),
            Err(NetError::Device(TX_STALLED))
        );
        assert!(b.nic.can_transmit());
    }

    #[test]
    fn finished_transmissions_are_not_a_stall() {
        let mut b = bench();
        b.device.set(reg::STATUS, STATUS_LU);
        assert_eq!(b.nic.transmit(&frame(1, 60)), Ok(()));
        b.device.send(&b.nic);
        for _ in 0..2 * TX_STALL_CHECKS {
            b.nic.enable_interrupts();
        }
        let counters = b.nic.counters();
        assert_eq!((counters.tx_packets, counters.tx_errors), (1, 0));
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
        assert_eq!(device.get(reg::RCTL), 0);
        assert_eq!(device.get(reg::TCTL), 0);
        assert_eq!(device.get(reg::IMC), u32::MAX);
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
        assert_eq!(hal.fake.live_dma(), 2 * Ring::PAGES);
    }

    #[test]
    fn failed_bind_returns_the_memory() {
        let hal = TestHal::new();
        hal.fail_bind.set(true);
        let pci = pci();
        let before = pci.function(NIC).expect("present").peek32(0x04);
        assert_eq!(
            E1000::new(&function(&pci), &pci, &hal).err(),
            Some(ProbeError::Hal(HalError::NoVector))
        );
        assert_eq!(hal.fake.live_dma(), 0);
        assert_eq!(pci.function(NIC).expect("present").peek32(0x04), before);
        let device = FakeDevice::new(&hal);
        assert_eq!(device.get(reg::RCTL), 0);
        assert_eq!(device.get(reg::TCTL), 0);
    }

    #[test]
    fn running_out_of_dma_memory_fails_cleanly() {
        for pages in [0, 5, Ring::PAGES, Ring::PAGES + 3] {
            let hal = TestHal::new();
            hal.fake.limit_dma(pages);
            let pci = pci();
            assert_eq!(
                E1000::new(&function(&pci), &pci, &hal).err(),
                Some(ProbeError::Hal(HalError::OutOfMemory))
            );
            assert_eq!(hal.fake.live_dma(), 0);
        }
    }

    #[test]
    fn devices_it_cannot_use_are_refused_before_any_access() {
        let hal = TestHal::new();
        let pci = FakePci::new();
        pci.add(NIC, e1000(BAR0 as u32, 0xc000).irq(0xff, 1));
        let no_line = function(&pci);
        let qemu = FakePci::qemu_pc();
        let e1000e = PciFunction::read(&qemu, PciAddress::new(0, 6, 0)).expect("present");
        // (Reading the functions sized their BARs.)
        let writes = pci.writes() + qemu.writes();
        assert_eq!(
            E1000::new(&no_line, &pci, &hal).err(),
            Some(ProbeError::Device("e1000: no INTx line routed"))
        );
        assert!(E1000::new(&e1000e, &qemu, &hal).is_err());
        assert_eq!(pci.writes() + qemu.writes(), writes);
        assert_eq!(hal.fake.now_ns(), 0, "no register was waited on");
    }

    #[test]
    fn driver_matches_the_8254x_and_needs_the_config_space() {
        let qemu = FakePci::qemu_pc();
        let functions = crate::pci::enumerate(&qemu);
        let taken: Vec<String> = functions
            .iter()
            .filter(|function| E1000Driver.matches(&Device::Pci(function)))
            .map(|function| format!("{}", function.address))
            .collect();
        assert_eq!(taken, ["00:03.0", "01:01.0"]);
        assert_eq!(E1000Driver.name(), "e1000");
        let hal = TestHal::new();
        let e1000 = functions
            .iter()
            .find(|function| function.address == NIC)
            .expect("present");
        assert!(matches!(
            E1000Driver.probe(&Device::Pci(e1000), &hal, None, None),
            Err(ProbeError::Device(_))
        ));
        let mut f = function(&pci());
        f.header.device_id = 0x100f;
        assert!(E1000Driver.matches(&Device::Pci(&f)));
    }

    #[test]
    fn probe_pci_hands_the_interface_over_or_silences_it() {
        let hal = TestHal::new();
        let pci = pci();
        // The TestHal keeps the trait's default attach_net: Unsupported.
        assert_eq!(
            E1000Driver.probe_pci(&function(&pci), &pci, &hal),
            Err(ProbeError::Hal(HalError::Unsupported))
        );
        let device = FakeDevice::new(&hal);
        assert_eq!(device.get(reg::RCTL), 0);
        assert_eq!(device.get(reg::TCTL), 0);
        assert_eq!(device.get(reg::IMC), u32::MAX);
    }
}
