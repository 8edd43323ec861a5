//! Xen split drivers, front-end side: the generic shared ring
//! (`xen/include/public/io/ring.h`) and the xenbus device model
//! (`xen/include/public/io/xenbus.h`: devices found in xenstore, their
//! state machine). Grant tables, event channels and xenstore access are
//! the kernel's, through [`XenBus`](crate::hal::XenBus).

pub mod bus;
pub mod ring;

pub use bus::{
    enumerate, read_state, write_state, XenDevice, XenbusError, XenbusState, NOT_A_DEVICE_KIND,
};
pub use ring::{FrontRing, RingError, SringIndex, SringIndices, SringPage};
