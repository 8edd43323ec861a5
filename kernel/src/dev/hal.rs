//! The kernel's side of the driver model: [`KernelHal`] implements
//! `drivers::hal::Hal` (DMA memory from the frame allocator with the
//! address the device sees, MMIO through the MMIO window, interrupts by
//! vector, MSI/MSI-X message or event channel, the clock), and
//! [`KernelXenBus`] implements `drivers::hal::XenBus` over the Xen bus
//! services (`crate::xen`).
//!
//! Device interrupts get vectors from [`FIRST_DEVICE_VECTOR`] up; one
//! trap handler looks the vector's driver handler up and acknowledges the
//! interrupt (EOI) after it ran. An event channel is bound to the driver's
//! handler directly (events need no acknowledgement).

use crate::arch::{apic, cpu, traps};
use crate::mm::xlate;
use crate::vmops::ops;
use crate::xen::{events, grant, xenstore};
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use drivers::hal::{
    BoundInterrupt, Dma, GrantRef, Hal, HalError, InterruptHandler, InterruptSource, MsiMessage,
    WatchHandler, WatchId, XenBus, PAGE_SIZE,
};
use hv::xen::xenstore::XsError;
use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};

/// The kernel's page size, as addresses count it.
const PAGE_SIZE_U64: u64 = crate::mm::PAGE_SIZE;

/// Device vectors: above the kernel's own (timer 0x30, COM1 0x34) and the
/// legacy PIC's, below the Xen upcall (0xf3) and the spurious vector.
pub const FIRST_DEVICE_VECTOR: u8 = 0x40;
const LAST_DEVICE_VECTOR: u8 = 0xef;
const VECTORS: usize = (LAST_DEVICE_VECTOR - FIRST_DEVICE_VECTOR) as usize + 1;

/// Per device vector: the handler's address (0 = free) and its context.
static VECTOR_HANDLERS: [AtomicUsize; VECTORS] = [const { AtomicUsize::new(0) }; VECTORS];
static VECTOR_CONTEXTS: [AtomicUsize; VECTORS] = [const { AtomicUsize::new(0) }; VECTORS];

/// The MSI address of the boot CPU (Intel SDM Vol. 3A 11.11.1): fixed
/// delivery, physical destination mode.
const MSI_ADDRESS: u64 = 0xfee0_0000;

/// Handles are vectors for vector-delivered interrupts, and this plus the
/// port for event channels.
const EVENT_HANDLE: u32 = 1 << 16;

/// A vector's slot while its handler is being installed.
const CLAIMED: usize = 1;

fn device_interrupt(frame: &mut traps::TrapFrame) {
    let slot = (frame.vector as usize).wrapping_sub(usize::from(FIRST_DEVICE_VECTOR));
    let handler = VECTOR_HANDLERS
        .get(slot)
        .map_or(0, |h| h.load(Ordering::Acquire));
    if handler > CLAIMED {
        // SAFETY: only `claim_vector` stores non-zero values: addresses of
        // `fn(usize)` handlers.
        let handler: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(handler) };
        handler(VECTOR_CONTEXTS[slot].load(Ordering::Acquire));
    }
    ops::eoi();
}

/// A free device vector, now routed to `handler`.
fn claim_vector(handler: InterruptHandler) -> Result<u8, HalError> {
    for (slot, entry) in VECTOR_HANDLERS.iter().enumerate() {
        if entry
            .compare_exchange(0, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            VECTOR_CONTEXTS[slot].store(handler.context, Ordering::Release);
            entry.store(handler.func as usize, Ordering::Release);
            let vector = FIRST_DEVICE_VECTOR + slot as u8;
            traps::set_handler(vector, device_interrupt);
            return Ok(vector);
        }
    }
    Err(HalError::NoVector)
}

fn release_vector(vector: u8) -> Result<(), HalError> {
    let slot = usize::from(vector.wrapping_sub(FIRST_DEVICE_VECTOR));
    let entry = VECTOR_HANDLERS.get(slot).ok_or(HalError::NotFound)?;
    match entry.swap(0, Ordering::AcqRel) {
        0 => Err(HalError::NotFound),
        _ => Ok(()),
    }
}

/// The kernel's services to drivers.
pub struct KernelHal;

// SAFETY: `dma_alloc` hands out zeroed frames the allocator gave to no one
// else, mapped by the direct map, with their true device address;
// `map_mmio` maps exactly the asked range uncached; nothing here frees
// what a driver still holds (drivers give DMA memory back themselves).
unsafe impl Hal for KernelHal {
    fn dma_alloc(&self, pages: usize) -> Result<Dma, HalError> {
        if pages == 0 {
            return Err(HalError::Failed("empty DMA allocation"));
        }
        let first = crate::mm::frames::alloc_contiguous(pages).ok_or(HalError::OutOfMemory)?;
        let phys = first.start_address();
        let release = || {
            for page in 0..pages as u64 {
                crate::mm::frames::free(PhysFrame::containing_address(phys + page * PAGE_SIZE_U64));
            }
        };
        // A device needs the run contiguous as it sees it: under Xen PV
        // the P2M may scatter pseudo-physical neighbours.
        let device = xlate::phys_to_machine(phys).map(|m| m.as_u64());
        let contiguous = (1..pages as u64).all(|page| {
            xlate::phys_to_machine(phys + page * PAGE_SIZE_U64).map(|m| m.as_u64())
                == device.map(|d| d + page * PAGE_SIZE_U64)
        });
        let (Some(device_addr), true) = (device, contiguous) else {
            release();
            return Err(HalError::Unsupported);
        };
        let virt = xlate::phys_to_virt(phys);
        // SAFETY: the frames are fresh from the allocator and reached
        // writable through the direct map.
        unsafe { core::ptr::write_bytes(virt.as_mut_ptr::<u8>(), 0, pages * PAGE_SIZE) };
        let virt = NonNull::new(virt.as_mut_ptr::<u8>()).ok_or(HalError::OutOfMemory)?;
        Ok(Dma {
            virt,
            device_addr,
            pages,
        })
    }

    fn dma_free(&self, dma: Dma) {
        let Some(phys) = xlate::virt_to_phys(VirtAddr::from_ptr(dma.virt.as_ptr())) else {
            log::error!("dev: DMA free of {:p}, not memory of ours", dma.virt);
            return;
        };
        for page in 0..dma.pages as u64 {
            crate::mm::frames::free(PhysFrame::containing_address(phys + page * PAGE_SIZE_U64));
        }
    }

    fn device_address(&self, virt: *const u8) -> Option<u64> {
        let phys = xlate::virt_to_phys(VirtAddr::from_ptr(virt))?;
        xlate::phys_to_machine(phys).map(|m| m.as_u64())
    }

    fn map_mmio(&self, phys: u64, len: usize) -> Result<NonNull<u8>, HalError> {
        // Where the hypervisor validates page tables (Xen PV), device
        // memory has no pseudo-physical address to map.
        if !matches!(crate::backend::hooks().paging, crate::backend::Paging::Own) {
            return Err(HalError::Unsupported);
        }
        let virt = crate::mm::map_mmio(PhysAddr::new(phys), len as u64);
        NonNull::new(virt.as_mut_ptr::<u8>()).ok_or(HalError::BadAddress(phys))
    }

    fn bind_interrupt(
        &self,
        source: InterruptSource,
        handler: InterruptHandler,
    ) -> Result<BoundInterrupt, HalError> {
        match source {
            InterruptSource::Legacy { line } => {
                let vector = claim_vector(handler)?;
                if let Err(why) = crate::arch::acpi::route_pci_line(line, vector) {
                    log::warn!("dev: IRQ {line} not routed: {why}");
                    release_vector(vector)?;
                    return Err(HalError::Unsupported);
                }
                Ok(BoundInterrupt {
                    handle: u32::from(vector),
                    message: None,
                })
            }
            InterruptSource::Msi { .. } | InterruptSource::MsiX { .. } => {
                if !apic::enabled() {
                    return Err(HalError::Unsupported);
                }
                let vector = claim_vector(handler)?;
                Ok(BoundInterrupt {
                    handle: u32::from(vector),
                    message: Some(MsiMessage {
                        address: MSI_ADDRESS | u64::from(apic::id() & 0xff) << 12,
                        data: u32::from(vector),
                    }),
                })
            }
            InterruptSource::EventChannel { port } => {
                if !events::running() {
                    return Err(HalError::Unsupported);
                }
                let target = pack(handler.func, handler.context);
                if !events::bind_port_context(port, event_trampoline, target) {
                    // SAFETY: the box just leaked, bound to no port.
                    drop(unsafe { alloc::boxed::Box::from_raw(target as *mut EventTarget) });
                    return Err(HalError::BadAddress(u64::from(port)));
                }
                cpu::without_interrupts(|| EVENT_TARGETS.lock().push((port, target)));
                Ok(BoundInterrupt {
                    handle: EVENT_HANDLE + port,
                    message: None,
                })
            }
        }
    }

    fn unbind_interrupt(&self, bound: BoundInterrupt) -> Result<(), HalError> {
        if bound.handle >= EVENT_HANDLE {
            let port = bound.handle - EVENT_HANDLE;
            events::unbind_port(port);
            free_event_context(port);
            return Ok(());
        }
        let vector = u8::try_from(bound.handle).map_err(|_| HalError::NotFound)?;
        release_vector(vector)
    }

    fn now_ns(&self) -> u64 {
        ops::clock_ns()
    }

    fn net_waker(&self) -> drivers::net::Waker {
        crate::net::waker()
    }

    fn attach_net(
        &self,
        device: alloc::boxed::Box<dyn drivers::net::NetDevice>,
    ) -> Result<(), HalError> {
        crate::net::attach(device).map_err(HalError::Failed)
    }
}

/// An event channel's driver handler and context, boxed: the port's
/// context word points at it.
struct EventTarget {
    func: fn(usize),
    context: usize,
}

/// Leaks a box with the driver's handler; the port's context word.
fn pack(func: fn(usize), context: usize) -> usize {
    alloc::boxed::Box::into_raw(alloc::boxed::Box::new(EventTarget { func, context })) as usize
}

/// Event contexts by port, to free the box on unbind.
static EVENT_TARGETS: spin::Mutex<Vec<(u32, usize)>> = spin::Mutex::new(Vec::new());

fn event_trampoline(_port: u32, target: usize) {
    // SAFETY: the context word of a port bound by `bind_interrupt` is a
    // leaked `EventTarget` box, freed only after the port is unbound.
    let target = unsafe { &*(target as *const EventTarget) };
    (target.func)(target.context);
}

fn free_event_context(port: u32) {
    let mut targets = cpu::without_interrupts(|| core::mem::take(&mut *EVENT_TARGETS.lock()));
    targets.retain(|&(p, target)| {
        if p == port {
            // SAFETY: the box `pack` leaked for this port, which no longer
            // delivers (unbound above).
            drop(unsafe { alloc::boxed::Box::from_raw(target as *mut EventTarget) });
            false
        } else {
            true
        }
    });
    cpu::without_interrupts(|| *EVENT_TARGETS.lock() = targets);
}

/// Forgets every event-channel binding (after a Xen resume in a new
/// domain, where the ports they name are gone and their numbers will be
/// handed out again); call after `events::forget_ports`, so no port
/// delivers to a freed context.
pub fn forget_event_bindings() {
    let targets = cpu::without_interrupts(|| core::mem::take(&mut *EVENT_TARGETS.lock()));
    for (_, target) in targets {
        // SAFETY: a box `pack` leaked, whose port no longer delivers.
        drop(unsafe { alloc::boxed::Box::from_raw(target as *mut EventTarget) });
    }
}

/// The Xen bus, where this domain has one (a domU with xenstore).
pub struct KernelXenBus;

fn send_event(_context: usize, port: u32) -> Result<(), HalError> {
    hv::xen::calls::evtchn_send(port).map_err(|e| HalError::Failed(e.name()))
}

/// Lets Xen front ends signal their event channels once probed (netfront
/// keeps no reference to the bus it was probed with).
pub fn register_xen_event_sender() {
    drivers::net::netfront::set_event_sender(drivers::net::netfront::EventSender {
        func: send_event,
        context: 0,
    });
}

fn xs_error(error: XsError) -> HalError {
    match error {
        XsError::Errno("ENOENT") => HalError::NotFound,
        XsError::Errno("EACCES") => HalError::Denied,
        XsError::Errno(name) => HalError::Failed(name),
        XsError::Unavailable => HalError::Unsupported,
        _ => HalError::Failed("xenstore"),
    }
}

fn grant_error(error: grant::GrantError) -> HalError {
    match error {
        grant::GrantError::Unavailable => HalError::Unsupported,
        grant::GrantError::Full => HalError::OutOfMemory,
        grant::GrantError::InUse => HalError::InUse,
        grant::GrantError::BadRef(_) => HalError::NotFound,
        grant::GrantError::BadFrame(frame) => HalError::BadAddress(frame << 12),
        grant::GrantError::Xen(error) => HalError::Failed(error.name()),
        grant::GrantError::Table(_) => HalError::Failed("grant table"),
    }
}

impl XenBus for KernelXenBus {
    fn grant_access(&self, domid: u16, frame: u64, readonly: bool) -> Result<GrantRef, HalError> {
        grant::grant_device_frame(domid, frame, readonly).map_err(grant_error)
    }

    fn end_access(&self, grant: GrantRef) -> Result<(), HalError> {
        grant::end_access(grant).map_err(grant_error)
    }

    fn alloc_unbound(&self, remote: u16) -> Result<u32, HalError> {
        events::alloc_unbound(remote).map_err(|e| HalError::Failed(e.name()))
    }

    fn notify(&self, port: u32) -> Result<(), HalError> {
        send_event(0, port)
    }

    fn close(&self, port: u32) -> Result<(), HalError> {
        events::close_port(port).map_err(|e| HalError::Failed(e.name()))
    }

    fn read(&self, path: &str) -> Result<String, HalError> {
        xenstore::read(path).map_err(xs_error)
    }

    fn write(&self, path: &str, value: &str) -> Result<(), HalError> {
        xenstore::write(path, value).map_err(xs_error)
    }

    fn directory(&self, path: &str) -> Result<Vec<String>, HalError> {
        xenstore::directory(path).map_err(xs_error)
    }

    fn watch(&self, path: &str, handler: WatchHandler) -> Result<WatchId, HalError> {
        xenstore::watch(path, handler.func, handler.context)
            .map(WatchId)
            .map_err(xs_error)
    }

    fn unwatch(&self, watch: WatchId) -> Result<(), HalError> {
        xenstore::unwatch(watch.0).map_err(xs_error)
    }
}
