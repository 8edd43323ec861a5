//! The generic shared ring of Xen's split drivers, front-end side
//! (`xen/include/public/io/ring.h`): one page holding four indices
//! (`req_prod`, `req_event`, `rsp_prod`, `rsp_event`), padding to 64
//! bytes, then a power-of-two array of entries, each the union of a
//! request and a response.
//!
//! [`FrontRing`] is the front end's private state (`req_prod_pvt`,
//! `rsp_cons`, the size) with the macros' logic: `RING_GET_REQUEST`,
//! `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`, `RING_HAS_UNCONSUMED_RESPONSES`,
//! `RING_FINAL_CHECK_FOR_RESPONSES`. Indices are free-running `u32`s that
//! wrap; every comparison is a wrapping difference, as in the C macros.
//! The shared indices are reached through [`SringIndices`], so the logic is
//! tested on the host against cells; [`SringPage`] implements it over the
//! real page. The backend is not trusted: a `rsp_prod` claiming more
//! responses than requests were published is an error, never a walk past
//! what was produced.

use crate::hal::PAGE_SIZE;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU32, Ordering};

/// Bytes before the first entry: four indices and the padding (`pvt` and
/// `__pad`).
pub const SRING_HEADER_LEN: usize = 64;

/// The four shared indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SringIndex {
    /// Requests the front end has published.
    ReqProd,
    /// The backend wants an event when `req_prod` passes this.
    ReqEvent,
    /// Responses the backend has published.
    RspProd,
    /// The front end wants an event when `rsp_prod` passes this.
    RspEvent,
}

impl SringIndex {
    /// Byte offset in the shared page.
    pub const fn offset(self) -> usize {
        match self {
            SringIndex::ReqProd => 0,
            SringIndex::ReqEvent => 4,
            SringIndex::RspProd => 8,
            SringIndex::RspEvent => 12,
        }
    }
}

/// Access to the shared indices. An implementation over shared memory
/// uses single (atomic or volatile) 32-bit accesses with no ordering of
/// its own: [`FrontRing`] issues the barriers `ring.h` issues.
pub trait SringIndices {
    fn load(&self, index: SringIndex) -> u32;
    fn store(&self, index: SringIndex, value: u32);
}

/// `__RING_SIZE`: how many entries of `entry_size` bytes fit in a ring of
/// `page_size` bytes, rounded down to a power of two; 0 when none fit.
pub const fn ring_size(page_size: usize, entry_size: usize) -> u32 {
    if entry_size == 0 || page_size <= SRING_HEADER_LEN {
        return 0;
    }
    let fit = (page_size - SRING_HEADER_LEN) / entry_size;
    if fit == 0 {
        return 0;
    }
    let power = 1usize << fit.ilog2();
    if power > 1 << 31 {
        1 << 31
    } else {
        power as u32
    }
}

/// Whether the backend must be notified after publishing requests up to
/// `new` (from `old`) when it asked for an event at `event`: whether
/// `event` lies in `(old, new]`, in wrapping arithmetic
/// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
pub const fn need_notify(new: u32, old: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// What went wrong with a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// A ring size that is zero or not a power of two.
    BadSize(u32),
    /// The backend's `rsp_prod` runs past the requests published
    /// (`req_prod`), counting from `rsp_cons`.
    ResponsesOverrun {
        rsp_prod: u32,
        req_prod: u32,
        rsp_cons: u32,
    },
    /// A slot number outside the ring.
    SlotOutOfRange { slot: usize, size: u32 },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RingError::BadSize(size) => write!(f, "ring size {size} is not a power of two"),
            RingError::ResponsesOverrun {
                rsp_prod,
                req_prod,
                rsp_cons,
            } => write!(
                f,
                "backend rsp_prod {rsp_prod} is past req_prod {req_prod} (rsp_cons {rsp_cons})"
            ),
            RingError::SlotOutOfRange { slot, size } => {
                write!(f, "slot {slot} outside a ring of {size}")
            }
        }
    }
}

/// `SHARED_RING_INIT`: indices at 0 and events at 1, so the first request
/// and the first response each raise an event.
pub fn init_shared<S: SringIndices + ?Sized>(shared: &S) {
    shared.store(SringIndex::ReqProd, 0);
    shared.store(SringIndex::RspProd, 0);
    shared.store(SringIndex::ReqEvent, 1);
    shared.store(SringIndex::RspEvent, 1);
}

/// The front end's view of a ring (`FRONT_RING_INIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontRing {
    /// Next request to fill; requests before it and from `req_prod` on
    /// are filled but not yet published.
    req_prod_pvt: u32,
    /// Next response to consume.
    rsp_cons: u32,
    size: u32,
    /// What was last published to the shared `req_prod`. Kept here rather
    /// than read back, since the backend can write the shared page.
    req_prod: u32,
}

impl FrontRing {
    /// A ring of `size` entries (a power of two), all indices 0.
    pub fn new(size: u32) -> Result<Self, RingError> {
        Self::starting_at(size, 0)
    }

    /// A ring whose indices all start at `index` (tests reach the
    /// wrap-around this way).
    pub fn starting_at(size: u32, index: u32) -> Result<Self, RingError> {
        if !size.is_power_of_two() {
            return Err(RingError::BadSize(size));
        }
        Ok(FrontRing {
            req_prod_pvt: index,
            rsp_cons: index,
            size,
            req_prod: index,
        })
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn req_prod_pvt(&self) -> u32 {
        self.req_prod_pvt
    }

    pub fn rsp_cons(&self) -> u32 {
        self.rsp_cons
    }

    fn slot(&self, index: u32) -> usize {
        (index & (self.size - 1)) as usize
    }

    /// `RING_FREE_REQUESTS`: slots neither holding a request nor awaiting
    /// its response.
    pub fn free_requests(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// `RING_FULL`.
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// `RING_GET_REQUEST(r, r->req_prod_pvt++)`: the slot to fill with the
    /// next request, or `None` when every slot awaits a response.
    pub fn next_request(&mut self) -> Option<usize> {
        if self.is_full() {
            return None;
        }
        let slot = self.slot(self.req_prod_pvt);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Some(slot)
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes the filled
    /// requests and says whether the backend asked to be notified of them.
    pub fn push_requests<S: SringIndices + ?Sized>(&mut self, shared: &S) -> bool {
        let old = self.req_prod;
        let new = self.req_prod_pvt;
        // The backend must see the requests before the index (xen_wmb).
        fence(Ordering::Release);
        shared.store(SringIndex::ReqProd, new);
        self.req_prod = new;
        // It must see the index before we read its req_event (xen_mb): a
        // store-load order, which only a full fence gives on x86.
        fence(Ordering::SeqCst);
        need_notify(new, old, shared.load(SringIndex::ReqEvent))
    }

    /// `RING_HAS_UNCONSUMED_RESPONSES`, checked: the responses published
    /// and not yet consumed, or an error when the backend claims more than
    /// were requested.
    pub fn unconsumed_responses<S: SringIndices + ?Sized>(
        &self,
        shared: &S,
    ) -> Result<u32, RingError> {
        let rsp_prod = shared.load(SringIndex::RspProd);
        let available = rsp_prod.wrapping_sub(self.rsp_cons);
        if available > self.req_prod.wrapping_sub(self.rsp_cons) {
            return Err(RingError::ResponsesOverrun {
                rsp_prod,
                req_prod: self.req_prod,
                rsp_cons: self.rsp_cons,
            });
        }
        // Responses are read after the index that published them
        // (xen_rmb).
        fence(Ordering::Acquire);
        Ok(available)
    }

    /// The slot of the next response, consuming it; `None` when none is
    /// published. Read the slot before pushing new requests.
    pub fn next_response<S: SringIndices + ?Sized>(
        &mut self,
        shared: &S,
    ) -> Result<Option<usize>, RingError> {
        if self.unconsumed_responses(shared)? == 0 {
            return Ok(None);
        }
        let slot = self.slot(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(slot))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: whether responses are waiting;
    /// when none are, asks for an event at the next one (`rsp_event`)
    /// and checks again, so a response that raced the request is not
    /// left unseen until some later event.
    pub fn final_check_for_responses<S: SringIndices + ?Sized>(
        &mut self,
        shared: &S,
    ) -> Result<bool, RingError> {
        if self.unconsumed_responses(shared)? != 0 {
            return Ok(true);
        }
        shared.store(SringIndex::RspEvent, self.rsp_cons.wrapping_add(1));
        // The event request must be visible before rsp_prod is read again.
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_responses(shared)? != 0)
    }
}

/// The shared page of a ring of `Req`/`Rsp` entries: the indices
/// ([`SringIndices`], atomically) and the entries (volatile copies).
#[derive(Debug)]
pub struct SringPage<Req, Rsp> {
    base: NonNull<u8>,
    entries: PhantomData<(Req, Rsp)>,
}

impl<Req: Copy, Rsp: Copy> SringPage<Req, Rsp> {
    /// Bytes per entry: the size of the C union of the two.
    pub const ENTRY_SIZE: usize = {
        let size = if size_of::<Req>() > size_of::<Rsp>() {
            size_of::<Req>()
        } else {
            size_of::<Rsp>()
        };
        let align = if align_of::<Req>() > align_of::<Rsp>() {
            align_of::<Req>()
        } else {
            align_of::<Rsp>()
        };
        size.div_ceil(align) * align
    };

    /// Entries in a one-page ring.
    pub const SIZE: u32 = ring_size(PAGE_SIZE, Self::ENTRY_SIZE);

    /// The ring in `page`.
    ///
    /// # Safety
    ///
    /// `page` must be [`PAGE_SIZE`] bytes, page aligned, valid while this
    /// value lives, and touched otherwise only by the backend: no Rust
    /// reference may point into it. `Rsp` must be valid for every bit
    /// pattern (a struct of integers, as every `io/*.h` response is): the
    /// backend writes it.
    pub unsafe fn new(page: NonNull<u8>) -> Result<Self, RingError> {
        // Entries start at 64: an alignment above that would misplace them.
        if Self::SIZE == 0 || align_of::<Req>() > 64 || align_of::<Rsp>() > 64 {
            return Err(RingError::BadSize(Self::SIZE));
        }
        Ok(SringPage {
            base: page,
            entries: PhantomData,
        })
    }

    /// Zeroes the header and does `SHARED_RING_INIT`; returns the matching
    /// front ring.
    pub fn init(&self) -> Result<FrontRing, RingError> {
        for word in 0..SRING_HEADER_LEN / 4 {
            self.index_at(word * 4).store(0, Ordering::Relaxed);
        }
        init_shared(self);
        FrontRing::new(Self::SIZE)
    }

    fn entry(&self, slot: usize) -> Result<NonNull<u8>, RingError> {
        if slot >= Self::SIZE as usize {
            return Err(RingError::SlotOutOfRange {
                slot,
                size: Self::SIZE,
            });
        }
        // SAFETY: slot < SIZE, and SIZE entries after the header fit in
        // the page (`ring_size`).
        Ok(unsafe { self.base.add(SRING_HEADER_LEN + slot * Self::ENTRY_SIZE) })
    }

    /// Copies `request` into `slot`.
    pub fn write_request(&self, slot: usize, request: Req) -> Result<(), RingError> {
        let entry = self.entry(slot)?.cast::<Req>();
        // SAFETY: inside the page (`entry`), aligned (the page is, 64 is
        // a multiple of the entry alignment checked in `new`, and
        // ENTRY_SIZE a multiple of it), and no reference aliases it.
        unsafe { entry.write_volatile(request) };
        Ok(())
    }

    /// Copies the response out of `slot`.
    pub fn read_response(&self, slot: usize) -> Result<Rsp, RingError> {
        let entry = self.entry(slot)?.cast::<Rsp>();
        // SAFETY: as in `write_request`; whatever the backend left is a
        // valid `Rsp`, which `new`'s caller promised holds for any bits.
        Ok(unsafe { entry.read_volatile() })
    }

    fn index_at(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: offset < 64 and a multiple of 4, inside the page-aligned
        // page; the word is only accessed atomically here and by the
        // backend, whose accesses are outside this program.
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast::<u32>().as_ptr()) }
    }
}

// SAFETY: the page has no thread affinity, and the entries moved in and
// out are plain data.
unsafe impl<Req: Send, Rsp: Send> Send for SringPage<Req, Rsp> {}

impl<Req: Copy, Rsp: Copy> SringIndices for SringPage<Req, Rsp> {
    fn load(&self, index: SringIndex) -> u32 {
        self.index_at(index.offset()).load(Ordering::Relaxed)
    }

    fn store(&self, index: SringIndex, value: u32) {
        self.index_at(index.offset())
            .store(value, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
