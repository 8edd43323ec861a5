//! The xenstore client (`xen/include/public/io/xs_wire.h`, and Mini-OS's
//! `xenbus.c` for the protocol order): requests and replies over the
//! shared ring, woken by the store's event channel (and polled every
//! 10 ms in case an event is lost), one request at a time; watch events
//! that arrive meanwhile are queued for the watcher.
//!
//! On a domU the kernel watches `control/shutdown`, so `xl shutdown` and
//! `xl reboot` power the guest off or restart it cleanly.

use super::events;
use crate::backend::ShutdownReason;
use crate::sched::sync::{Event, Mutex};
use crate::vmops::ops;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicU32, Ordering};
use hv::xen::bindings::*;
use hv::xen::xenstore::{self as wire, Header, XsError, HEADER_LEN};
use spin::Once;

const POLL_NS: u64 = 10_000_000;
const REPLY_TIMEOUT_NS: u64 = 5_000_000_000;

struct Store {
    ring: *mut xenstore_domain_interface,
    port: u32,
    /// One request at a time.
    lock: Mutex,
    /// Set by the event channel: the ring moved.
    wake: Event,
    /// Set when a watch event is queued.
    watch_wake: Event,
    watch_events: spin::Mutex<VecDeque<(String, String)>>,
    next_id: AtomicU32,
}

// SAFETY: `ring` is the shared page, touched only under `lock` (or by
// volatile index reads); the rest is Sync.
unsafe impl Sync for Store {}
// SAFETY: as above.
unsafe impl Send for Store {}

static STORE: Once<Store> = Once::new();

/// Waits for the ring's event until `deadline` (clock ns; `None`: as long
/// as it takes). While event upcalls do not run (they failed to start),
/// polls every POLL_NS instead, for at most a second at a time.
fn ring_wait(event: &Event, deadline: Option<u64>) {
    if events::running() {
        event.wait(deadline.map(|d| d.saturating_sub(ops::clock_ns())));
    } else {
        event.wait(Some(match deadline {
            Some(_) => POLL_NS,
            None => 100 * POLL_NS,
        }));
    }
}

fn store_event(_port: u32) {
    if let Some(store) = STORE.get() {
        store.wake.set();
        store.watch_wake.set();
    }
}

/// Starts the client on the ring page at virtual `ring` (see
/// [`super::start_bus`]: PVH maps it, a PV guest has it in its RAM).
pub fn start(ring: u64, port: u32) {
    let ring = ring as *mut xenstore_domain_interface;
    STORE.call_once(|| Store {
        ring,
        port,
        lock: Mutex::new(),
        wake: Event::new(false, false),
        watch_wake: Event::new(false, false),
        watch_events: spin::Mutex::new(VecDeque::new()),
        next_id: AtomicU32::new(1),
    });
    events::bind_port(port, store_event);
    log::info!("xenstore: ring at {:#x}, event channel {port}", ring as u64);
    if let Err(error) = crate::sched::spawn("xs-shutdown", shutdown_watcher) {
        log::error!("xenstore: cannot start the shutdown watcher: {error:?}");
    }
}

impl Store {
    fn indices(&self) -> (u32, u32, u32, u32) {
        // SAFETY: volatile reads of the shared ring's indices.
        unsafe {
            (
                (&raw const (*self.ring).req_prod).read_volatile(),
                (&raw const (*self.ring).req_cons).read_volatile(),
                (&raw const (*self.ring).rsp_prod).read_volatile(),
                (&raw const (*self.ring).rsp_cons).read_volatile(),
            )
        }
    }

    fn write_all(&self, mut bytes: &[u8], deadline: u64) -> Result<(), XsError> {
        while !bytes.is_empty() {
            let (prod, cons, _, _) = self.indices();
            let space = wire::ring_space(prod, cons) as usize;
            let n = space.min(bytes.len());
            for (i, &byte) in bytes[..n].iter().enumerate() {
                let index = (prod.wrapping_add(i as u32) % XENSTORE_RING_SIZE) as usize;
                // SAFETY: the ring arithmetic says the guest owns these
                // request bytes.
                unsafe {
                    (&raw mut (*self.ring).req[index]).write_volatile(byte as core::ffi::c_char)
                };
            }
            fence(Ordering::Release);
            // SAFETY: publishing the new producer index.
            unsafe { (&raw mut (*self.ring).req_prod).write_volatile(prod.wrapping_add(n as u32)) };
            events::notify_port(self.port);
            bytes = &bytes[n..];
            if n == 0 {
                if ops::clock_ns() > deadline {
                    return Err(XsError::Timeout);
                }
                ring_wait(&self.wake, Some(deadline));
            }
        }
        Ok(())
    }

    fn read_exact(&self, out: &mut [u8], deadline: u64) -> Result<(), XsError> {
        let mut filled = 0;
        while filled < out.len() {
            let (_, _, prod, cons) = self.indices();
            let available = wire::ring_available(prod, cons) as usize;
            let n = available.min(out.len() - filled);
            fence(Ordering::Acquire);
            for i in 0..n {
                let index = (cons.wrapping_add(i as u32) % XENSTORE_RING_SIZE) as usize;
                // SAFETY: the ring arithmetic says these reply bytes are
                // written and ours to read.
                out[filled + i] =
                    unsafe { (&raw const (*self.ring).rsp[index]).read_volatile() } as u8;
            }
            fence(Ordering::Release);
            // SAFETY: publishing the new consumer index.
            unsafe { (&raw mut (*self.ring).rsp_cons).write_volatile(cons.wrapping_add(n as u32)) };
            if n > 0 {
                events::notify_port(self.port);
            }
            filled += n;
            if filled < out.len() {
                if ops::clock_ns() > deadline {
                    return Err(XsError::Timeout);
                }
                ring_wait(&self.wake, Some(deadline));
            }
        }
        Ok(())
    }

    /// Reads one message off the reply ring.
    fn read_message(&self, deadline: u64) -> Result<(Header, Vec<u8>), XsError> {
        let mut header = [0u8; HEADER_LEN];
        self.read_exact(&mut header, deadline)?;
        let header = Header::decode(&header);
        if header.len > XENSTORE_PAYLOAD_MAX {
            return Err(XsError::Malformed("reply longer than the protocol allows"));
        }
        let mut payload = alloc::vec![0u8; header.len as usize];
        self.read_exact(&mut payload, deadline)?;
        Ok((header, payload))
    }

    fn queue_watch_event(&self, payload: &[u8]) {
        let mut parts = payload
            .split(|&b| b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let (path, token) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        self.watch_events.lock().push_back((path, token));
        self.watch_wake.set();
    }

    fn request(
        &self,
        kind: xsd_sockmsg_type,
        tx: u32,
        parts: &[&[u8]],
        raw_last: bool,
    ) -> Result<Vec<u8>, XsError> {
        let mut payload = alloc::vec![0u8; XENSTORE_PAYLOAD_MAX as usize];
        let len = wire::payload(parts, raw_last, &mut payload)?;
        let req_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let header = Header {
            kind,
            req_id,
            tx_id: tx,
            len: len as u32,
        };
        self.lock.lock(None);
        let deadline = ops::clock_ns() + REPLY_TIMEOUT_NS;
        let result = (|| {
            self.write_all(&header.encode(), deadline)?;
            self.write_all(&payload[..len], deadline)?;
            loop {
                let (reply, body) = self.read_message(deadline)?;
                if reply.kind == XS_WATCH_EVENT {
                    self.queue_watch_event(&body);
                    continue;
                }
                if reply.req_id != req_id {
                    return Err(XsError::Malformed("reply to another request"));
                }
                wire::check_reply(&reply, &body)?;
                return Ok(body);
            }
        })();
        let _ = self.lock.unlock();
        result
    }
}

fn store() -> Result<&'static Store, XsError> {
    STORE.get().ok_or(XsError::Unavailable)
}

fn text(mut bytes: Vec<u8>) -> String {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The value at `path` (relative paths are under this domain's home).
pub fn read(path: &str) -> Result<String, XsError> {
    store()?
        .request(XS_READ, 0, &[path.as_bytes()], false)
        .map(text)
}

/// Sets `path` to `value`.
pub fn write(path: &str, value: &str) -> Result<(), XsError> {
    store()?
        .request(XS_WRITE, 0, &[path.as_bytes(), value.as_bytes()], true)
        .map(|_| ())
}

/// The children of `path`.
pub fn directory(path: &str) -> Result<Vec<String>, XsError> {
    let body = store()?.request(XS_DIRECTORY, 0, &[path.as_bytes()], false)?;
    Ok(body
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect())
}

/// Asks for a watch event whenever `path` (or below) changes.
pub fn watch(path: &str, token: &str) -> Result<(), XsError> {
    store()?
        .request(XS_WATCH, 0, &[path.as_bytes(), token.as_bytes()], false)
        .map(|_| ())
}

/// Starts a transaction; returns its id.
pub fn transaction_start() -> Result<u32, XsError> {
    let body = store()?.request(XS_TRANSACTION_START, 0, &[b""], false)?;
    text(body)
        .parse()
        .map_err(|_| XsError::Malformed("transaction id"))
}

/// Ends transaction `tx`, committing it or not. `Err(Errno("EAGAIN"))`
/// means another writer won: retry the transaction.
pub fn transaction_end(tx: u32, commit: bool) -> Result<(), XsError> {
    let flag: &[u8] = if commit { b"T" } else { b"F" };
    store()?
        .request(XS_TRANSACTION_END, tx, &[flag], false)
        .map(|_| ())
}

/// Waits for the next watch event: (path, token).
pub fn next_watch_event() -> Result<(String, String), XsError> {
    let store = store()?;
    loop {
        if let Some(event) = store.watch_events.lock().pop_front() {
            return Ok(event);
        }
        // Drain what arrived while nobody was reading (only watch events
        // come unasked).
        store.lock.lock(None);
        let (_, _, prod, cons) = store.indices();
        if wire::ring_available(prod, cons) as usize >= HEADER_LEN {
            if let Ok((header, body)) = store.read_message(ops::clock_ns() + REPLY_TIMEOUT_NS) {
                if header.kind == XS_WATCH_EVENT {
                    store.queue_watch_event(&body);
                }
            }
        }
        let _ = store.lock.unlock();
        if store.watch_events.lock().is_empty() {
            ring_wait(&store.watch_wake, None);
        }
    }
}

/// Powers off or reboots when the toolstack writes `control/shutdown`.
fn shutdown_watcher() -> u64 {
    if let Err(error) = watch("control/shutdown", "sanos-shutdown") {
        log::error!("xenstore: cannot watch control/shutdown: {error}");
        return 1;
    }
    loop {
        if next_watch_event().is_err() {
            crate::sched::sleep_ns(100 * POLL_NS);
            continue;
        }
        let request = match read("control/shutdown") {
            Ok(value) => value,
            Err(XsError::Errno("ENOENT")) => continue,
            Err(error) => {
                log::warn!("xenstore: reading control/shutdown: {error}");
                continue;
            }
        };
        let reason = match request.as_str() {
            "" => continue,
            "poweroff" | "halt" => ShutdownReason::PowerOff,
            "reboot" => ShutdownReason::Reboot,
            other => {
                log::warn!(
                    "xenstore: control/shutdown asks for '{other}', which sanos does not do"
                );
                continue;
            }
        };
        // Acknowledge, as the protocol asks, then go; a failed
        // acknowledgement only leaves the node for the toolstack to clear.
        if let Err(error) = write("control/shutdown", "") {
            log::warn!("xenstore: acknowledging control/shutdown: {error}");
        }
        crate::kprintln!("sanos: {reason:?} requested by the toolstack");
        ops::shutdown(reason.encode());
    }
}

mod tests {
    use super::*;
    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    #[ktest]
    fn xenstore_round_trip_or_unavailable() -> TestResult {
        if STORE.get().is_none() {
            // Not a Xen domU: the client must say so, not hang or guess.
            kassert_eq!(read("name"), Err(XsError::Unavailable));
            kassert_eq!(write("data/x", "y"), Err(XsError::Unavailable));
            return Ok(());
        }
        let name = read("name");
        kassert!(name.as_ref().is_ok_and(|n| !n.is_empty()), "name: {name:?}");
        let domid = read("domid");
        kassert!(
            domid.as_ref().is_ok_and(|d| d.parse::<u32>().is_ok()),
            "domid: {domid:?}"
        );
        kassert_eq!(write("data/sanos-selftest", "ok 42"), Ok(()));
        let back = read("data/sanos-selftest");
        kassert_eq!(back.as_deref(), Ok("ok 42"));
        let children = directory("data");
        kassert!(
            children
                .as_ref()
                .is_ok_and(|c| c.iter().any(|n| n == "sanos-selftest")),
            "data: {children:?}"
        );
        kassert_eq!(read("data/no-such-key"), Err(XsError::Errno("ENOENT")));
        let tx = transaction_start();
        kassert!(tx.is_ok(), "transaction: {tx:?}");
        if let Ok(tx) = tx {
            kassert_eq!(transaction_end(tx, false), Ok(()));
        }
        Ok(())
    }
}
