//! Fakes of what the kernel provides, for host tests here and in crates
//! that enable the `fake` feature: [`FakeHal`] (DMA from the host heap,
//! MMIO windows backed by host memory, interrupts recorded and fired by
//! hand, a settable clock), [`FakeXenBus`] (an in-memory xenstore tree,
//! grants and event channels as tables) and [`FakePci`] (configuration
//! space of QEMU's `pc` machine, with BAR size masks, read-only bits and
//! the command register emulated, plus a builder for hostile functions).
//!
//! A fake panics when a test misuses it (an unaligned configuration read,
//! freeing memory it never gave): that is a bug in the code under test.

use crate::hal::{
    BoundInterrupt, Dma, GrantRef, Hal, HalError, InterruptHandler, InterruptSource, MsiMessage,
    WatchHandler, WatchId, XenBus, PAGE_SIZE,
};
use crate::pci::{reg, ConfigSpace, PciAddress, STATUS_CAPABILITIES};
use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::ptr::NonNull;

/// Where fake DMA memory appears to devices.
pub const FAKE_DMA_BASE: u64 = 0x1_0000_0000;
/// The x86 MSI address of the fake: local APIC 0.
pub const FAKE_MSI_ADDRESS: u64 = 0xfee0_0000;
/// The first vector the fake hands out.
pub const FAKE_FIRST_VECTOR: u8 = 0x40;

struct Block {
    virt: NonNull<u8>,
    layout: Layout,
    /// Device address (DMA) or physical address (MMIO) of the first byte.
    address: u64,
}

impl Block {
    fn zeroed(len: usize, address: u64) -> Result<Block, HalError> {
        let layout =
            Layout::from_size_align(len.max(1), PAGE_SIZE).map_err(|_| HalError::OutOfMemory)?;
        // SAFETY: the layout has a non-zero size.
        let virt = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(HalError::OutOfMemory)?;
        Ok(Block {
            virt,
            layout,
            address,
        })
    }

    fn contains(&self, address: u64, len: usize) -> bool {
        address >= self.address
            && (address - self.address)
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.layout.size() as u64)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: `virt` came from `alloc_zeroed` with this layout and is
        // freed once, here.
        unsafe { dealloc(self.virt.as_ptr(), self.layout) }
    }
}

/// A fake [`Hal`].
pub struct FakeHal {
    dma: RefCell<Vec<Block>>,
    next_dma_address: Cell<u64>,
    dma_pages_left: Cell<usize>,
    mmio: RefCell<Vec<Block>>,
    interrupts: RefCell<Vec<(u32, InterruptSource, InterruptHandler)>>,
    next_handle: Cell<u32>,
    next_vector: Cell<u8>,
    now: Cell<u64>,
}

impl Default for FakeHal {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHal {
    pub fn new() -> Self {
        FakeHal {
            dma: RefCell::new(Vec::new()),
            next_dma_address: Cell::new(FAKE_DMA_BASE),
            dma_pages_left: Cell::new(usize::MAX),
            mmio: RefCell::new(Vec::new()),
            interrupts: RefCell::new(Vec::new()),
            next_handle: Cell::new(1),
            next_vector: Cell::new(FAKE_FIRST_VECTOR),
            now: Cell::new(0),
        }
    }

    /// Lets at most `pages` more pages be allocated.
    pub fn limit_dma(&self, pages: usize) {
        self.dma_pages_left.set(pages);
    }

    /// DMA allocations not freed.
    pub fn live_dma(&self) -> usize {
        self.dma.borrow().len()
    }

    /// Backs `len` bytes of device registers at `phys` with zeroed host
    /// memory, which tests read and write through the returned pointer.
    pub fn add_mmio(&self, phys: u64, len: usize) -> NonNull<u8> {
        let block = match Block::zeroed(len, phys) {
            Ok(block) => block,
            Err(error) => panic!("fake mmio of {len:#x} bytes: {error}"),
        };
        let virt = block.virt;
        self.mmio.borrow_mut().push(block);
        virt
    }

    /// The bound interrupts: (handle, source).
    pub fn interrupts(&self) -> Vec<(u32, InterruptSource)> {
        self.interrupts
            .borrow()
            .iter()
            .map(|&(handle, source, _)| (handle, source))
            .collect()
    }

    /// Runs the handler bound as `handle`, as the interrupt would; false
    /// when nothing is bound there.
    pub fn fire(&self, handle: u32) -> bool {
        let handler = self
            .interrupts
            .borrow()
            .iter()
            .find(|(bound, _, _)| *bound == handle)
            .map(|&(_, _, handler)| handler);
        match handler {
            Some(handler) => {
                (handler.func)(handler.context);
                true
            }
            None => false,
        }
    }

    pub fn set_now(&self, ns: u64) {
        self.now.set(ns);
    }

    pub fn advance(&self, ns: u64) {
        self.now.set(self.now.get() + ns);
    }
}

// SAFETY: DMA blocks are zeroed, page aligned, `pages` pages long and
// private until freed; MMIO pointers point into blocks that live as long
// as the fake, at the requested offset, with `len` bytes behind them.
unsafe impl Hal for FakeHal {
    fn dma_alloc(&self, pages: usize) -> Result<Dma, HalError> {
        let left = self.dma_pages_left.get();
        if pages == 0 || pages > left {
            return Err(HalError::OutOfMemory);
        }
        let address = self.next_dma_address.get();
        let block = Block::zeroed(pages * PAGE_SIZE, address)?;
        self.dma_pages_left.set(left - pages);
        self.next_dma_address
            .set(address + (pages * PAGE_SIZE) as u64);
        let dma = Dma {
            virt: block.virt,
            device_addr: address,
            pages,
        };
        self.dma.borrow_mut().push(block);
        Ok(dma)
    }

    fn dma_free(&self, dma: Dma) {
        let mut blocks = self.dma.borrow_mut();
        let Some(at) = blocks.iter().position(|block| block.virt == dma.virt) else {
            panic!("dma_free of memory dma_alloc did not give: {dma:?}");
        };
        assert_eq!(
            blocks[at].address, dma.device_addr,
            "dma_free with a changed address"
        );
        blocks.swap_remove(at);
    }

    fn device_address(&self, virt: *const u8) -> Option<u64> {
        self.dma.borrow().iter().find_map(|block| {
            let offset = (virt as usize).checked_sub(block.virt.as_ptr() as usize)?;
            (offset < block.layout.size()).then(|| block.address + offset as u64)
        })
    }

    fn map_mmio(&self, phys: u64, len: usize) -> Result<NonNull<u8>, HalError> {
        let blocks = self.mmio.borrow();
        let block = blocks
            .iter()
            .find(|block| block.contains(phys, len))
            .ok_or(HalError::BadAddress(phys))?;
        // SAFETY: `contains` put phys..phys + len inside the block.
        Ok(unsafe { block.virt.add((phys - block.address) as usize) })
    }

    fn bind_interrupt(
        &self,
        source: InterruptSource,
        handler: InterruptHandler,
    ) -> Result<BoundInterrupt, HalError> {
        let message = match source {
            InterruptSource::Msi { .. } | InterruptSource::MsiX { .. } => {
                let vector = self.next_vector.get();
                if vector > 0xef {
                    return Err(HalError::NoVector);
                }
                self.next_vector.set(vector + 1);
                Some(MsiMessage {
                    address: FAKE_MSI_ADDRESS,
                    data: u32::from(vector),
                })
            }
            InterruptSource::Legacy { .. } | InterruptSource::EventChannel { .. } => None,
        };
        let handle = self.next_handle.get();
        self.next_handle.set(handle + 1);
        self.interrupts.borrow_mut().push((handle, source, handler));
        Ok(BoundInterrupt { handle, message })
    }

    fn unbind_interrupt(&self, bound: BoundInterrupt) -> Result<(), HalError> {
        let mut interrupts = self.interrupts.borrow_mut();
        let at = interrupts
            .iter()
            .position(|(handle, _, _)| *handle == bound.handle)
            .ok_or(HalError::NotFound)?;
        interrupts.remove(at);
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        self.now.get()
    }
}

/// A grant as the fake's table holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeGrant {
    pub domid: u16,
    pub frame: u64,
    pub readonly: bool,
    /// Set by tests: the other domain maps it, so ending access fails.
    pub mapped: bool,
}

/// An event channel of the fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakePort {
    pub remote: u16,
    pub notifications: u32,
}

/// A fake [`XenBus`]: xenstore as a map of full paths to values.
pub struct FakeXenBus {
    store: RefCell<BTreeMap<String, String>>,
    failures: RefCell<BTreeMap<String, HalError>>,
    grants: RefCell<BTreeMap<GrantRef, FakeGrant>>,
    next_grant: Cell<GrantRef>,
    ports: RefCell<BTreeMap<u32, FakePort>>,
    next_port: Cell<u32>,
    watches: RefCell<Vec<(WatchId, String, WatchHandler)>>,
    next_watch: Cell<u32>,
}

impl Default for FakeXenBus {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `path` is `dir` or below it.
fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl FakeXenBus {
    pub fn new() -> Self {
        FakeXenBus {
            store: RefCell::new(BTreeMap::new()),
            failures: RefCell::new(BTreeMap::new()),
            grants: RefCell::new(BTreeMap::new()),
            // The first 8 references are reserved (GNTTAB_NR_RESERVED_ENTRIES).
            next_grant: Cell::new(8),
            ports: RefCell::new(BTreeMap::new()),
            next_port: Cell::new(1),
            watches: RefCell::new(Vec::new()),
            next_watch: Cell::new(1),
        }
    }

    /// Sets a node without firing watches (the toolstack's setup).
    pub fn set(&self, path: &str, value: &str) {
        self.store
            .borrow_mut()
            .insert(path.to_string(), value.to_string());
    }

    /// Removes a node.
    pub fn remove(&self, path: &str) {
        self.store.borrow_mut().remove(path);
    }

    /// The value of a node, as a test sees it.
    pub fn get(&self, path: &str) -> Option<String> {
        self.store.borrow().get(path).cloned()
    }

    /// Makes every access to `path` fail with `error`.
    pub fn fail(&self, path: &str, error: HalError) {
        self.failures.borrow_mut().insert(path.to_string(), error);
    }

    fn check(&self, path: &str) -> Result<(), HalError> {
        match self.failures.borrow().get(path) {
            Some(&error) => Err(error),
            None => Ok(()),
        }
    }

    pub fn grant(&self, grant: GrantRef) -> Option<FakeGrant> {
        self.grants.borrow().get(&grant).copied()
    }

    /// Marks a grant as mapped by the other domain, or not.
    pub fn set_mapped(&self, grant: GrantRef, mapped: bool) {
        if let Some(entry) = self.grants.borrow_mut().get_mut(&grant) {
            entry.mapped = mapped;
        }
    }

    pub fn port(&self, port: u32) -> Option<FakePort> {
        self.ports.borrow().get(&port).copied()
    }

    fn fire_watches(&self, path: &str) {
        let handlers: Vec<WatchHandler> = self
            .watches
            .borrow()
            .iter()
            .filter(|(_, watched, _)| is_under(path, watched))
            .map(|&(_, _, handler)| handler)
            .collect();
        // Called with no borrow held: a handler may use the bus.
        for handler in handlers {
            (handler.func)(handler.context, path);
        }
    }
}

impl XenBus for FakeXenBus {
    fn grant_access(&self, domid: u16, frame: u64, readonly: bool) -> Result<GrantRef, HalError> {
        let grant = self.next_grant.get();
        self.next_grant.set(grant + 1);
        self.grants.borrow_mut().insert(
            grant,
            FakeGrant {
                domid,
                frame,
                readonly,
                mapped: false,
            },
        );
        Ok(grant)
    }

    fn end_access(&self, grant: GrantRef) -> Result<(), HalError> {
        let mut grants = self.grants.borrow_mut();
        match grants.get(&grant) {
            None => Err(HalError::NotFound),
            Some(entry) if entry.mapped => Err(HalError::InUse),
            Some(_) => {
                grants.remove(&grant);
                Ok(())
            }
        }
    }

    fn alloc_unbound(&self, remote: u16) -> Result<u32, HalError> {
        let port = self.next_port.get();
        self.next_port.set(port + 1);
        self.ports.borrow_mut().insert(
            port,
            FakePort {
                remote,
                notifications: 0,
            },
        );
        Ok(port)
    }

    fn notify(&self, port: u32) -> Result<(), HalError> {
        let mut ports = self.ports.borrow_mut();
        let entry = ports.get_mut(&port).ok_or(HalError::NotFound)?;
        entry.notifications += 1;
        Ok(())
    }

    fn close(&self, port: u32) -> Result<(), HalError> {
        self.ports
            .borrow_mut()
            .remove(&port)
            .map(|_| ())
            .ok_or(HalError::NotFound)
    }

    fn read(&self, path: &str) -> Result<String, HalError> {
        self.check(path)?;
        self.get(path).ok_or(HalError::NotFound)
    }

    fn write(&self, path: &str, value: &str) -> Result<(), HalError> {
        self.check(path)?;
        self.set(path, value);
        self.fire_watches(path);
        Ok(())
    }

    fn directory(&self, path: &str) -> Result<Vec<String>, HalError> {
        self.check(path)?;
        let store = self.store.borrow();
        let mut children: Vec<String> = Vec::new();
        let mut exists = false;
        for key in store.keys().filter(|key| is_under(key, path)) {
            exists = true;
            let Some(rest) = key[path.len()..].strip_prefix('/') else {
                continue;
            };
            let child = rest.split('/').next().unwrap_or(rest);
            // Keys are sorted, so a child's nodes are adjacent.
            if children.last().map(String::as_str) != Some(child) {
                children.push(child.to_string());
            }
        }
        if exists {
            Ok(children)
        } else {
            Err(HalError::NotFound)
        }
    }

    fn watch(&self, path: &str, handler: WatchHandler) -> Result<WatchId, HalError> {
        self.check(path)?;
        let id = WatchId(self.next_watch.get());
        self.next_watch.set(id.0 + 1);
        self.watches
            .borrow_mut()
            .push((id, path.to_string(), handler));
        // xenstore fires a new watch once.
        (handler.func)(handler.context, path);
        Ok(id)
    }

    fn unwatch(&self, watch: WatchId) -> Result<(), HalError> {
        let mut watches = self.watches.borrow_mut();
        let at = watches
            .iter()
            .position(|(id, _, _)| *id == watch)
            .ok_or(HalError::NotFound)?;
        watches.remove(at);
        Ok(())
    }
}

/// The configuration space of one fake function: its 64 dwords and which
/// bits of each are writable.
#[derive(Clone, Debug)]
pub struct FakeFunction {
    config: [u32; 64],
    writable: [u32; 64],
    last_capability: Option<u8>,
}

impl FakeFunction {
    fn new(
        vendor: u16,
        device: u16,
        class: u8,
        subclass: u8,
        prog_if: u8,
        header_type: u8,
    ) -> Self {
        let mut function = FakeFunction {
            config: [0; 64],
            writable: [0; 64],
            last_capability: None,
        };
        function.config[0] = u32::from(device) << 16 | u32::from(vendor);
        function.config[2] =
            u32::from(class) << 24 | u32::from(subclass) << 16 | u32::from(prog_if) << 8;
        function.poke8(reg::HEADER_TYPE, header_type);
        // I/O, memory, bus master, parity, SERR, INTx disable.
        function.writable[1] = 0x0000_0547;
        // The interrupt line is firmware's scratch register.
        function.writable[15] = 0x0000_00ff;
        function
    }

    /// A type 0 function.
    pub fn device(vendor: u16, device: u16, class: u8, subclass: u8, prog_if: u8) -> Self {
        Self::new(vendor, device, class, subclass, prog_if, 0)
    }

    /// A PCI-to-PCI bridge (type 1, class 0604) forwarding
    /// `secondary..=subordinate`.
    pub fn bridge(vendor: u16, device: u16, primary: u8, secondary: u8, subordinate: u8) -> Self {
        let mut function = Self::new(vendor, device, 0x06, 0x04, 0x00, 1);
        function.config[6] =
            u32::from(subordinate) << 16 | u32::from(secondary) << 8 | u32::from(primary);
        function.writable[6] = 0x00ff_ffff;
        function
    }

    /// Overwrites a byte, read-only or not (hostile layouts).
    pub fn poke8(&mut self, offset: u16, value: u8) -> &mut Self {
        let word = &mut self.config[usize::from(offset / 4)];
        let shift = (offset % 4) * 8;
        *word = (*word & !(0xff << shift)) | u32::from(value) << shift;
        self
    }

    /// Overwrites a dword and which of its bits are writable.
    pub fn poke32(&mut self, offset: u16, value: u32, writable: u32) -> &mut Self {
        self.config[usize::from(offset / 4)] = value;
        self.writable[usize::from(offset / 4)] = writable;
        self
    }

    pub fn revision(mut self, revision: u8) -> Self {
        self.poke8(reg::REVISION, revision);
        self
    }

    pub fn multifunction(mut self) -> Self {
        let header_type = (self.config[3] >> 16) as u8;
        self.poke8(reg::HEADER_TYPE, header_type | 0x80);
        self
    }

    pub fn irq(mut self, line: u8, pin: u8) -> Self {
        self.poke8(reg::INTERRUPT, line)
            .poke8(reg::INTERRUPT + 1, pin);
        self
    }

    pub fn subsystem(mut self, vendor: u16, device: u16) -> Self {
        self.config[usize::from(reg::SUBSYSTEM / 4)] = u32::from(device) << 16 | u32::from(vendor);
        self
    }

    /// The command register as firmware left it.
    pub fn command(mut self, command: u16) -> Self {
        self.config[1] = (self.config[1] & 0xffff_0000) | u32::from(command);
        self
    }

    fn bar(&mut self, index: u8, value: u32, writable: u32) {
        let dword = usize::from(reg::BAR0 / 4 + u16::from(index));
        self.config[dword] = value;
        self.writable[dword] = writable;
    }

    /// An I/O BAR decoding all 32 address bits (as QEMU's do).
    pub fn bar_io(mut self, index: u8, base: u32, size: u32) -> Self {
        self.bar(index, base | 1, !(size - 1) & !0x3);
        self
    }

    /// An I/O BAR with the upper 16 bits hardwired to 0.
    pub fn bar_io16(mut self, index: u8, base: u16, size: u16) -> Self {
        self.bar(index, u32::from(base) | 1, u32::from(!(size - 1) & !0x3));
        self
    }

    pub fn bar_mem32(mut self, index: u8, base: u32, size: u32, prefetchable: bool) -> Self {
        let flags = if prefetchable { 1 << 3 } else { 0 };
        self.bar(index, base | flags, !(size - 1) & !0xf);
        self
    }

    pub fn bar_mem64(mut self, index: u8, base: u64, size: u64, prefetchable: bool) -> Self {
        let flags = 0b10 << 1 | if prefetchable { 1 << 3 } else { 0 };
        let mask = !(size - 1);
        self.bar(index, base as u32 | flags, mask as u32 & !0xf);
        self.bar(index + 1, (base >> 32) as u32, (mask >> 32) as u32);
        self
    }

    /// Appends a capability at `pointer` (its bytes from the id on; the
    /// next pointer is filled in), linked after the previous one.
    pub fn capability(mut self, pointer: u8, bytes: &[u8]) -> Self {
        for (i, &byte) in bytes.iter().enumerate() {
            self.poke8(u16::from(pointer) + i as u16, byte);
        }
        self.poke8(u16::from(pointer) + 1, 0);
        // The control word and the body are the driver's to write.
        let first = usize::from(pointer / 4);
        let last = (usize::from(pointer) + bytes.len().max(4) - 1) / 4;
        self.writable[first] |= 0xffff_0000;
        for dword in first + 1..=last.min(63) {
            self.writable[dword] = u32::MAX;
        }
        let link = match self.last_capability {
            Some(previous) => u16::from(previous) + 1,
            None => reg::CAPABILITIES,
        };
        self.poke8(link, pointer);
        self.config[1] |= u32::from(STATUS_CAPABILITIES) << 16;
        self.last_capability = Some(pointer);
        self
    }

    /// An MSI capability with message control `control`, as long as its
    /// 64-bit (bit 7) and per-vector masking (bit 8) bits make it.
    pub fn msi_capability(self, pointer: u8, control: u16) -> Self {
        let mut len = if control & (1 << 7) != 0 { 14 } else { 10 };
        if control & (1 << 8) != 0 {
            len += 10;
        }
        let mut bytes = Vec::from([0x05, 0]);
        bytes.extend_from_slice(&control.to_le_bytes());
        bytes.resize(len, 0);
        self.capability(pointer, &bytes)
    }

    /// A virtio structure capability (virtio 1.2, §4.1.4).
    pub fn virtio_capability(
        self,
        pointer: u8,
        cfg_type: u8,
        bar: u8,
        offset: u32,
        length: u32,
        extra: Option<u32>,
    ) -> Self {
        let mut bytes = Vec::from([0x09, 0, 16, cfg_type, bar, 0, 0, 0]);
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&length.to_le_bytes());
        if let Some(extra) = extra {
            bytes[2] = 20;
            bytes.extend_from_slice(&extra.to_le_bytes());
        }
        self.capability(pointer, &bytes)
    }

    /// The dword at `offset`, as a test inspects it.
    pub fn peek32(&self, offset: u16) -> u32 {
        self.config[usize::from(offset / 4)]
    }
}

/// A fake configuration space: a set of functions; absent ones read all
/// ones and ignore writes.
#[derive(Default)]
pub struct FakePci {
    functions: RefCell<BTreeMap<PciAddress, FakeFunction>>,
    /// BAR writes of all ones while the function decoded that space.
    sized_while_decoding: Cell<usize>,
    writes: Cell<usize>,
}

impl FakePci {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, addr: PciAddress, function: FakeFunction) -> &Self {
        self.functions.borrow_mut().insert(addr, function);
        self
    }

    /// A copy of a function's current state.
    pub fn function(&self, addr: PciAddress) -> Option<FakeFunction> {
        self.functions.borrow().get(&addr).cloned()
    }

    /// How many BARs were written all ones with decoding on.
    pub fn sized_while_decoding(&self) -> usize {
        self.sized_while_decoding.get()
    }

    /// Configuration writes so far.
    pub fn writes(&self) -> usize {
        self.writes.get()
    }

    /// QEMU's `pc` machine (i440FX + PIIX3) with `-device e1000`,
    /// `-device virtio-net-pci`, `-device pci-bridge,chassis_nr=1` holding
    /// a second e1000, and `-device e1000e`, as SeaBIOS leaves them.
    pub fn qemu_pc() -> Self {
        let pci = FakePci::new();
        let qemu = (0x1af4, 0x1100);
        pci.add(
            PciAddress::new(0, 0, 0),
            FakeFunction::device(0x8086, 0x1237, 0x06, 0x00, 0x00)
                .revision(0x02)
                .subsystem(qemu.0, qemu.1),
        );
        pci.add(
            PciAddress::new(0, 1, 0),
            FakeFunction::device(0x8086, 0x7000, 0x06, 0x01, 0x00)
                .multifunction()
                .subsystem(qemu.0, qemu.1),
        );
        pci.add(
            PciAddress::new(0, 1, 1),
            FakeFunction::device(0x8086, 0x7010, 0x01, 0x01, 0x80)
                .subsystem(qemu.0, qemu.1)
                .command(0x0005)
                .bar_io(4, 0xc0c0, 0x10),
        );
        pci.add(
            PciAddress::new(0, 1, 3),
            FakeFunction::device(0x8086, 0x7113, 0x06, 0x80, 0x00)
                .revision(0x03)
                .subsystem(qemu.0, qemu.1)
                .irq(9, 1),
        );
        pci.add(
            PciAddress::new(0, 2, 0),
            FakeFunction::device(0x1234, 0x1111, 0x03, 0x00, 0x00)
                .revision(0x02)
                .subsystem(qemu.0, qemu.1)
                .command(0x0003)
                .bar_mem32(0, 0xfd00_0000, 0x100_0000, true)
                .bar_mem32(2, 0xfebd_4000, 0x1000, false),
        );
        pci.add(PciAddress::new(0, 3, 0), e1000(0xfebc_0000, 0xc000));
        pci.add(
            PciAddress::new(0, 4, 0),
            FakeFunction::device(0x1af4, 0x1000, 0x02, 0x00, 0x00)
                .subsystem(0x1af4, 0x0001)
                .irq(11, 1)
                .command(0x0007)
                .bar_io(0, 0xc080, 0x20)
                .bar_mem32(1, 0xfebd_1000, 0x1000, false)
                .bar_mem64(4, 0xfe00_0000, 0x4000, true)
                // MSI-X: 3 entries, table in BAR 1 at 0, PBA at 0x800.
                .capability(0x98, &[0x11, 0, 0x02, 0x00, 1, 0, 0, 0, 0x01, 0x08, 0, 0])
                .virtio_capability(0x84, 5, 0, 0, 0, Some(0))
                .virtio_capability(0x70, 2, 4, 0x3000, 0x1000, Some(4))
                .virtio_capability(0x60, 4, 4, 0x2000, 0x1000, None)
                .virtio_capability(0x50, 3, 4, 0x1000, 0x1000, None)
                .virtio_capability(0x40, 1, 4, 0x0000, 0x1000, None),
        );
        pci.add(
            PciAddress::new(0, 5, 0),
            FakeFunction::bridge(0x1b36, 0x0001, 0, 1, 1)
                .irq(10, 1)
                .command(0x0007)
                .bar_mem64(0, 0xfebd_2000, 0x100, false)
                // MSI: 64-bit, per-vector masking, one vector.
                .msi_capability(0x4c, 0x0180)
                .capability(0x48, &[0x04, 0, 0x21, 0x01])
                .capability(0x40, &[0x0c, 0, 0, 0, 0, 0, 0, 0]),
        );
        pci.add(
            PciAddress::new(0, 6, 0),
            FakeFunction::device(0x8086, 0x10d3, 0x02, 0x00, 0x00)
                .subsystem(0x8086, 0x0000)
                .irq(10, 1)
                .command(0x0007)
                .bar_mem32(0, 0xfeb8_0000, 0x2_0000, false)
                .bar_mem32(1, 0xfeba_0000, 0x2_0000, false)
                .bar_io(2, 0xc0a0, 0x20)
                .bar_mem32(3, 0xfebd_0000, 0x4000, false)
                .capability(0xc8, &[0x01, 0, 0x23, 0x00, 0, 0, 0, 0])
                // MSI: 64-bit, one vector, no masking.
                .msi_capability(0xd0, 0x0080)
                .capability(0xe0, &[0x10, 0, 0x01, 0x00, 0, 0, 0, 0])
                // MSI-X: 5 entries, table in BAR 3 at 0, PBA at 0x2000.
                .capability(0xa0, &[0x11, 0, 0x04, 0x00, 3, 0, 0, 0, 0x03, 0x20, 0, 0]),
        );
        pci.add(PciAddress::new(1, 1, 0), e1000(0xfe80_0000, 0xd000));
        pci
    }
}

/// An 82540EM as QEMU's `e1000` models it: BAR 0 128 KiB of registers,
/// BAR 1 64 ports, INTA on IRQ 11, no capability list.
pub fn e1000(mmio: u32, io: u32) -> FakeFunction {
    FakeFunction::device(0x8086, 0x100e, 0x02, 0x00, 0x00)
        .revision(0x03)
        .subsystem(0x1af4, 0x1100)
        .irq(11, 1)
        .command(0x0007)
        .bar_mem32(0, mmio, 0x2_0000, false)
        .bar_io(1, io, 0x40)
}

impl ConfigSpace for FakePci {
    fn read32(&self, addr: PciAddress, offset: u16) -> u32 {
        assert_eq!(offset % 4, 0, "unaligned configuration read at {offset:#x}");
        match self.functions.borrow().get(&addr) {
            None => u32::MAX,
            Some(function) => function
                .config
                .get(usize::from(offset / 4))
                .copied()
                .unwrap_or(0),
        }
    }

    fn write32(&self, addr: PciAddress, offset: u16, value: u32) {
        assert_eq!(
            offset % 4,
            0,
            "unaligned configuration write at {offset:#x}"
        );
        self.writes.set(self.writes.get() + 1);
        let mut functions = self.functions.borrow_mut();
        let Some(function) = functions.get_mut(&addr) else {
            return;
        };
        let dword = usize::from(offset / 4);
        if dword >= 64 {
            return;
        }
        let is_bar = (4..10).contains(&dword);
        if is_bar && value == u32::MAX && function.config[1] & 0x3 != 0 {
            self.sized_while_decoding
                .set(self.sized_while_decoding.get() + 1);
        }
        let writable = function.writable[dword];
        function.config[dword] = (function.config[dword] & !writable) | (value & writable);
    }
}
