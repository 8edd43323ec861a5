use super::*;
use crate::fake::FakeHal;
use crate::hal::Hal;
use core::cell::Cell;
use std::format;

/// The shared indices in host cells, with the backend's side of the
/// protocol (`RING_FINAL_CHECK_FOR_REQUESTS`, response production).
#[derive(Default)]
struct Shared {
    cells: [Cell<u32>; 4],
}

impl SringIndices for Shared {
    fn load(&self, index: SringIndex) -> u32 {
        self.cells[index.offset() / 4].get()
    }

    fn store(&self, index: SringIndex, value: u32) {
        self.cells[index.offset() / 4].set(value);
    }
}

impl Shared {
    fn new() -> Self {
        let shared = Shared::default();
        init_shared(&shared);
        shared
    }

    fn at(index: u32) -> Self {
        let shared = Shared::new();
        shared.store(SringIndex::ReqProd, index);
        shared.store(SringIndex::RspProd, index);
        shared.store(SringIndex::ReqEvent, index.wrapping_add(1));
        shared.store(SringIndex::RspEvent, index.wrapping_add(1));
        shared
    }

    /// The backend answers every published request and, having caught
    /// up, asks for an event at the next one.
    fn respond_all(&self) {
        let req_prod = self.load(SringIndex::ReqProd);
        self.store(SringIndex::RspProd, req_prod);
        self.store(SringIndex::ReqEvent, req_prod.wrapping_add(1));
    }
}

#[test]
fn ring_size_matches_ring_h() {
    // netif tx (12-byte requests), netif rx (8), blkif (112), and the
    // header alone.
    assert_eq!(ring_size(4096, 12), 256);
    assert_eq!(ring_size(4096, 8), 256);
    assert_eq!(ring_size(4096, 112), 32);
    assert_eq!(ring_size(4096, 64), 32);
    assert_eq!(ring_size(4096, 4032), 1);
    assert_eq!(ring_size(4096, 4033), 0);
    assert_eq!(ring_size(4096, 0), 0);
    assert_eq!(ring_size(64, 4), 0);
}

#[test]
fn header_indices_sit_at_their_offsets() {
    assert_eq!(SringIndex::ReqProd.offset(), 0);
    assert_eq!(SringIndex::ReqEvent.offset(), 4);
    assert_eq!(SringIndex::RspProd.offset(), 8);
    assert_eq!(SringIndex::RspEvent.offset(), 12);
    assert_eq!(SRING_HEADER_LEN, 64);
}

#[test]
fn size_must_be_a_power_of_two() {
    assert_eq!(FrontRing::new(0), Err(RingError::BadSize(0)));
    assert_eq!(FrontRing::new(48), Err(RingError::BadSize(48)));
    assert_eq!(FrontRing::new(32).map(|ring| ring.size()), Ok(32));
}

#[test]
fn init_shared_sets_events_to_one() {
    let shared = Shared::default();
    init_shared(&shared);
    assert_eq!(shared.load(SringIndex::ReqProd), 0);
    assert_eq!(shared.load(SringIndex::RspProd), 0);
    assert_eq!(shared.load(SringIndex::ReqEvent), 1);
    assert_eq!(shared.load(SringIndex::RspEvent), 1);
}

#[test]
fn requests_fill_slots_until_full() {
    let mut ring = FrontRing::new(4).expect("power of two");
    assert_eq!(ring.free_requests(), 4);
    let slots: std::vec::Vec<usize> = (0..4).map(|_| ring.next_request().expect("free")).collect();
    assert_eq!(slots, [0, 1, 2, 3]);
    assert!(ring.is_full());
    assert_eq!(ring.next_request(), None);
    assert_eq!(ring.req_prod_pvt(), 4);
}

#[test]
fn first_push_notifies_then_not_until_backend_asks() {
    let shared = Shared::new();
    let mut ring = FrontRing::new(8).expect("power of two");
    ring.next_request();
    assert!(ring.push_requests(&shared), "req_event 1 lies in (0, 1]");
    assert_eq!(shared.load(SringIndex::ReqProd), 1);
    ring.next_request();
    assert!(
        !ring.push_requests(&shared),
        "backend still busy: req_event 1"
    );
    shared.respond_all();
    ring.next_request();
    assert!(
        ring.push_requests(&shared),
        "backend asked for an event at 3"
    );
}

#[test]
fn push_with_nothing_new_does_not_notify() {
    let shared = Shared::new();
    let mut ring = FrontRing::new(8).expect("power of two");
    assert!(!ring.push_requests(&shared));
}

#[test]
fn batch_push_notifies_when_event_is_inside_the_batch() {
    let shared = Shared::new();
    let mut ring = FrontRing::new(8).expect("power of two");
    for _ in 0..3 {
        ring.next_request();
    }
    shared.store(SringIndex::ReqEvent, 2);
    assert!(ring.push_requests(&shared));
    for _ in 0..2 {
        ring.next_request();
    }
    // Event at 3 was inside the previous batch (0, 3]; (3, 5] misses it.
    shared.store(SringIndex::ReqEvent, 3);
    assert!(!ring.push_requests(&shared));
}

#[test]
fn need_notify_wraps() {
    assert!(need_notify(1, 0, 1));
    assert!(!need_notify(2, 1, 1));
    assert!(need_notify(2, u32::MAX - 1, 0));
    assert!(need_notify(2, u32::MAX - 1, u32::MAX));
    assert!(!need_notify(2, u32::MAX - 1, u32::MAX - 1));
    assert!(!need_notify(2, u32::MAX - 1, 3));
    assert!(need_notify(0, u32::MAX, 0));
}

#[test]
fn indices_wrap_around_u32() {
    let start = u32::MAX - 1;
    let shared = Shared::at(start);
    let mut ring = FrontRing::starting_at(4, start).expect("power of two");
    let slots: std::vec::Vec<usize> = (0..4).map(|_| ring.next_request().expect("free")).collect();
    // 0xffff_fffe & 3 == 2.
    assert_eq!(slots, [2, 3, 0, 1]);
    assert_eq!(ring.req_prod_pvt(), 2);
    assert!(ring.is_full());
    assert!(ring.push_requests(&shared));
    shared.respond_all();
    assert_eq!(ring.unconsumed_responses(&shared), Ok(4));
    let mut consumed = std::vec::Vec::new();
    while let Some(slot) = ring.next_response(&shared).expect("valid") {
        consumed.push(slot);
    }
    assert_eq!(consumed, [2, 3, 0, 1]);
    assert_eq!(ring.rsp_cons(), 2);
    assert_eq!(ring.free_requests(), 4);
}

#[test]
fn responses_are_consumed_in_order() {
    let shared = Shared::new();
    let mut ring = FrontRing::new(8).expect("power of two");
    for _ in 0..3 {
        ring.next_request();
    }
    ring.push_requests(&shared);
    assert_eq!(ring.unconsumed_responses(&shared), Ok(0));
    shared.store(SringIndex::RspProd, 2);
    assert_eq!(ring.unconsumed_responses(&shared), Ok(2));
    assert_eq!(ring.next_response(&shared), Ok(Some(0)));
    assert_eq!(ring.next_response(&shared), Ok(Some(1)));
    assert_eq!(ring.next_response(&shared), Ok(None));
    assert_eq!(ring.free_requests(), 7);
}

#[test]
fn backend_claiming_unrequested_responses_is_an_error() {
    let shared = Shared::new();
    let mut ring = FrontRing::new(8).expect("power of two");
    ring.next_request();
    ring.next_request();
    ring.push_requests(&shared);
    shared.store(SringIndex::RspProd, 3);
    let overrun = RingError::ResponsesOverrun {
        rsp_prod: 3,
        req_prod: 2,
        rsp_cons: 0,
    };
    assert_eq!(ring.unconsumed_responses(&shared), Err(overrun));
    assert_eq!(ring.next_response(&shared), Err(overrun));
    assert_eq!(ring.final_check_for_responses(&shared), Err(overrun));
    assert_eq!(
        ring.rsp_cons(),
        0,
        "nothing consumed past what was produced"
    );
}

#[test]
fn responses_to_unpublished_requests_are_an_error() {
    let shared = Shared::new();
    let mut ring = FrontRing::new(8).expect("power of two");
    ring.next_request();
    // Filled but not pushed: the backend cannot have seen it.
    shared.store(SringIndex::RspProd, 1);
    assert!(matches!(
        ring.unconsumed_responses(&shared),
        Err(RingError::ResponsesOverrun { req_prod: 0, .. })
    ));
}

#[test]
fn backend_running_rsp_prod_backwards_is_an_error() {
    let shared = Shared::new();
    let mut ring = FrontRing::new(8).expect("power of two");
    ring.next_request();
    ring.push_requests(&shared);
    shared.respond_all();
    assert_eq!(ring.next_response(&shared), Ok(Some(0)));
    shared.store(SringIndex::RspProd, 0);
    assert_eq!(
        ring.unconsumed_responses(&shared),
        Err(RingError::ResponsesOverrun {
            rsp_prod: 0,
            req_prod: 1,
            rsp_cons: 1
        })
    );
}

#[test]
fn final_check_sets_rsp_event_when_idle() {
    let shared = Shared::new();
    let mut ring = FrontRing::new(8).expect("power of two");
    ring.next_request();
    ring.push_requests(&shared);
    shared.respond_all();
    assert_eq!(ring.next_response(&shared), Ok(Some(0)));
    assert_eq!(ring.final_check_for_responses(&shared), Ok(false));
    assert_eq!(shared.load(SringIndex::RspEvent), 2);
}

#[test]
fn final_check_with_pending_responses_leaves_rsp_event() {
    let shared = Shared::new();
    let mut ring = FrontRing::new(8).expect("power of two");
    ring.next_request();
    ring.push_requests(&shared);
    shared.respond_all();
    assert_eq!(ring.final_check_for_responses(&shared), Ok(true));
    assert_eq!(shared.load(SringIndex::RspEvent), 1);
}

#[test]
fn final_check_wraps_rsp_event() {
    let shared = Shared::at(u32::MAX);
    let mut ring = FrontRing::starting_at(8, u32::MAX).expect("power of two");
    assert_eq!(ring.final_check_for_responses(&shared), Ok(false));
    assert_eq!(shared.load(SringIndex::RspEvent), 0);
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TxRequest {
    gref: u32,
    offset: u16,
    flags: u16,
    id: u16,
    size: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TxResponse {
    id: u16,
    status: i16,
}

#[test]
fn sring_page_sizes_follow_the_union() {
    assert_eq!(SringPage::<TxRequest, TxResponse>::ENTRY_SIZE, 12);
    assert_eq!(SringPage::<TxRequest, TxResponse>::SIZE, 256);
    assert_eq!(SringPage::<u32, u64>::ENTRY_SIZE, 8);
    assert_eq!(SringPage::<[u8; 12], u64>::ENTRY_SIZE, 16);
    assert_eq!(SringPage::<[u8; 5000], u8>::SIZE, 0);
}

#[test]
fn sring_page_round_trip_through_dma_memory() {
    let hal = FakeHal::new();
    let dma = hal.dma_alloc(1).expect("one page");
    // SAFETY: a page from the fake's dma_alloc, page aligned, used only
    // through `page` until freed below; responses are integers.
    let page = unsafe { SringPage::<TxRequest, TxResponse>::new(dma.virt) }.expect("fits");
    let mut ring = page.init().expect("power of two");
    assert_eq!(ring.size(), 256);
    let request = TxRequest {
        gref: 9,
        offset: 0,
        flags: 0,
        id: 7,
        size: 60,
    };
    let slot = ring.next_request().expect("free");
    page.write_request(slot, request).expect("inside");
    assert!(ring.push_requests(&page));
    // The backend answers in the same slot.
    // SAFETY: slot 0 starts at byte 64 of the page; the backend's write.
    unsafe {
        dma.virt
            .add(SRING_HEADER_LEN)
            .cast::<TxResponse>()
            .write(TxResponse { id: 7, status: 0 })
    };
    page.store(SringIndex::RspProd, 1);
    let slot = ring.next_response(&page).expect("valid").expect("one");
    assert_eq!(
        page.read_response(slot),
        Ok(TxResponse { id: 7, status: 0 })
    );
    assert_eq!(
        page.read_response(256),
        Err(RingError::SlotOutOfRange {
            slot: 256,
            size: 256
        })
    );
    assert_eq!(page.load(SringIndex::ReqProd), 1);
    // `page` is not used past here, so the page can go back.
    hal.dma_free(dma);
}

#[test]
fn errors_name_both_indices() {
    let error = RingError::ResponsesOverrun {
        rsp_prod: 9,
        req_prod: 4,
        rsp_cons: 2,
    };
    assert_eq!(
        format!("{error}"),
        "backend rsp_prod 9 is past req_prod 4 (rsp_cons 2)"
    );
}
