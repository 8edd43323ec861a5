//! Device drivers. The foundation's only device, the COM1 UART, sits in the
//! kernel's console module until a driver model exists.
#![no_std]
