//! The xenstore client (`xen/include/public/io/xs_wire.h`, and Mini-OS's
//! `xenbus.c` for the protocol order): requests and replies over the
//! shared ring, woken by the store's event channel (polled every 10 ms
//! only where event upcalls could not start), one request at a time.
//! Watch events that arrive meanwhile are queued for the watch thread,
//! which hands each to the handler registered with [`watch`].
//!
//! On a domU the kernel watches `control/shutdown`, so `xl shutdown` and
//! `xl reboot` power the guest off or restart it cleanly.

use super::events;
use crate::backend::ShutdownReason;
use crate::sched::sync::{Event, Mutex};
use crate::vmops::ops;
use alloc::collections::{BTreeMap, VecDeque};
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
    /// The store's event channel (a new one after a resume in a new
    /// domain).
    port: AtomicU32,
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

fn store_event(_port: u32, _context: usize) {
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
        port: AtomicU32::new(port),
        lock: Mutex::new(),
        wake: Event::new(false, false),
        watch_wake: Event::new(false, false),
        watch_events: spin::Mutex::new(VecDeque::new()),
        next_id: AtomicU32::new(1),
    });
    events::bind_port(port, store_event);
    log::info!("xenstore: ring at {:#x}, event channel {port}", ring as u64);
    if let Err(error) = crate::sched::spawn("xs-watch", watcher) {
        log::error!("xenstore: cannot start the watch thread: {error:?}");
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
            events::notify_port(self.port.load(Ordering::Relaxed));
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
                events::notify_port(self.port.load(Ordering::Relaxed));
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

/// Whether the client runs (a Xen domU with a store ring).
pub fn running() -> bool {
    STORE.get().is_some()
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

/// Called with `(context, path)` when a watched path (or a node below
/// it) changes, in the watch thread: it should note the change and wake
/// whoever acts on it (the other watches wait behind it).
pub type WatchFn = fn(usize, &str);

struct Watch {
    path: String,
    handler: WatchFn,
    context: usize,
}

/// Registered watches by id; the wire token is `sanos-watch-<id>`.
static WATCHES: spin::Mutex<BTreeMap<u32, Watch>> = spin::Mutex::new(BTreeMap::new());
static NEXT_WATCH: AtomicU32 = AtomicU32::new(1);
const TOKEN_PREFIX: &str = "sanos-watch-";

fn token(id: u32) -> String {
    alloc::format!("{TOKEN_PREFIX}{id}")
}

/// Calls `handler(context, path)` whenever `path` or a node below it
/// changes (and once right after: xenstore fires every new watch).
/// Returns the watch's id for [`unwatch`].
pub fn watch(path: &str, handler: WatchFn, context: usize) -> Result<u32, XsError> {
    let store = store()?;
    let id = NEXT_WATCH.fetch_add(1, Ordering::Relaxed);
    // Registered first: the first event may arrive before the reply.
    WATCHES.lock().insert(
        id,
        Watch {
            path: String::from(path),
            handler,
            context,
        },
    );
    match register_watch(store, id, path) {
        Ok(()) => Ok(id),
        Err(error) => {
            WATCHES.lock().remove(&id);
            Err(error)
        }
    }
}

/// Asks the store for watch `id` on `path` (its token names the id).
fn register_watch(store: &Store, id: u32, path: &str) -> Result<(), XsError> {
    let token = token(id);
    store
        .request(XS_WATCH, 0, &[path.as_bytes(), token.as_bytes()], false)
        .map(|_| ())
}

/// Removes watch `id`.
pub fn unwatch(id: u32) -> Result<(), XsError> {
    let store = store()?;
    let watch = WATCHES.lock().remove(&id).ok_or(XsError::Errno("ENOENT"))?;
    let token = token(id);
    store
        .request(
            XS_UNWATCH,
            0,
            &[watch.path.as_bytes(), token.as_bytes()],
            false,
        )
        .map(|_| ())
}

/// Hands a watch event to its handler; an event for a watch that is gone
/// (removed while the event was on its way) is dropped.
fn dispatch(path: &str, token: &str) {
    let id = token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|id| id.parse::<u32>().ok());
    let target = id.and_then(|id| WATCHES.lock().get(&id).map(|w| (w.handler, w.context)));
    match target {
        Some((handler, context)) => handler(context, path),
        None => log::debug!("xenstore: event on {path} for no watch ({token}); dropped"),
    }
}

/// The store held still across a suspend: no request is in flight while
/// it lives (it holds the request lock).
pub struct Quiesced(&'static Store);

/// Waits for the request in flight, if any, and keeps the next one from
/// starting until [`Quiesced::resume`]. `None` where no store runs.
pub fn suspend() -> Option<Quiesced> {
    let store = STORE.get()?;
    store.lock.lock(None);
    Some(Quiesced(store))
}

impl Quiesced {
    /// After a resume. In a new domain the store comes through `port`
    /// (the ring page is the same): replies left on the ring answer
    /// nobody and are skipped, as Linux's `xb_init_comms` does, and the
    /// port is bound. Then requests may start again; call [`rewatch`]
    /// next (a new domain has no watches).
    pub fn resume(self, new_port: Option<u32>) {
        let store = self.0;
        if let Some(port) = new_port {
            let (req_prod, req_cons, rsp_prod, rsp_cons) = store.indices();
            if req_prod != req_cons {
                log::warn!("xenstore: request ring not quiescent ({req_cons}:{req_prod})");
            }
            if rsp_prod != rsp_cons {
                log::warn!("xenstore: stale replies on the ring ({rsp_cons}:{rsp_prod}); skipped");
                // SAFETY: the consumer index is the guest's to write.
                unsafe { (&raw mut (*store.ring).rsp_cons).write_volatile(rsp_prod) };
            }
            store.port.store(port, Ordering::Relaxed);
            events::bind_port(port, store_event);
        }
        let _ = store.lock.unlock();
        // Whatever was waiting looks at the ring again.
        store.wake.set();
        store.watch_wake.set();
    }
}

/// Registers every watch again (a new domain has none); each fires once,
/// as a new watch does. Returns how many the store refused.
pub fn rewatch() -> usize {
    let Ok(store) = store() else { return 0 };
    let watches: Vec<(u32, String)> = WATCHES
        .lock()
        .iter()
        .map(|(&id, watch)| (id, watch.path.clone()))
        .collect();
    let mut refused = 0;
    for (id, path) in watches {
        if let Err(error) = register_watch(store, id, &path) {
            log::error!("xenstore: watch on {path} not registered again: {error}");
            refused += 1;
        }
    }
    refused
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

/// The watch thread: registers the control/shutdown watch, then hands
/// every watch event to its handler.
fn watcher() -> u64 {
    if let Err(error) = watch("control/shutdown", shutdown_requested, 0) {
        log::error!("xenstore: cannot watch control/shutdown: {error}");
    }
    loop {
        match next_watch_event() {
            Ok((path, token)) => dispatch(&path, &token),
            Err(_) => crate::sched::sleep_ns(100 * POLL_NS),
        }
    }
}

/// Powers off or reboots when the toolstack writes `control/shutdown`.
fn shutdown_requested(_context: usize, _path: &str) {
    let request = match read("control/shutdown") {
        Ok(value) => value,
        Err(XsError::Errno("ENOENT")) => return,
        Err(error) => {
            log::warn!("xenstore: reading control/shutdown: {error}");
            return;
        }
    };
    let reason = match request.as_str() {
        "" => return,
        "suspend" => None,
        "poweroff" | "halt" => Some(ShutdownReason::PowerOff),
        "reboot" => Some(ShutdownReason::Reboot),
        other => {
            log::warn!("xenstore: control/shutdown asks for '{other}', which sanos does not do");
            return;
        }
    };
    // Acknowledge, as the protocol asks (Linux too): the node written back
    // empty, which tells the toolstack the guest is on it; a failed
    // acknowledgement only leaves the node for the toolstack to clear.
    if let Err(error) = write("control/shutdown", "") {
        log::warn!("xenstore: acknowledging control/shutdown: {error}");
    }
    let Some(reason) = reason else {
        super::suspend::request();
        return;
    };
    crate::kprintln!("sanos: {reason:?} requested by the toolstack");
    crate::dev::shutdown();
    ops::shutdown(reason.encode());
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

    static WATCHED: spin::Once<Event> = spin::Once::new();
    static WATCH_CALLS: AtomicU32 = AtomicU32::new(0);

    fn watched(context: usize, path: &str) {
        if context == 7 && path.ends_with("data/sanos-watch") {
            WATCH_CALLS.fetch_add(1, Ordering::SeqCst);
            if let Some(event) = WATCHED.get() {
                event.set();
            }
        }
    }

    #[ktest]
    fn xenstore_watch_fires_and_unwatch_stops_it() -> TestResult {
        if STORE.get().is_none() {
            kassert_eq!(watch("data", watched, 7), Err(XsError::Unavailable));
            return Ok(());
        }
        let fired = WATCHED.call_once(|| Event::new(false, false)).clone();
        kassert_eq!(write("data/sanos-watch", "0"), Ok(()));
        let id = watch("data/sanos-watch", watched, 7);
        kassert!(id.is_ok(), "watch: {id:?}");
        let Ok(id) = id else { return Ok(()) };
        // xenstore fires a new watch once, then on every change.
        kassert!(fired.wait(Some(1_000_000_000)), "no first watch event");
        kassert_eq!(write("data/sanos-watch", "1"), Ok(()));
        kassert!(fired.wait(Some(1_000_000_000)), "no event on a write");
        kassert_eq!(unwatch(id), Ok(()));
        let calls = WATCH_CALLS.load(Ordering::SeqCst);
        kassert_eq!(write("data/sanos-watch", "2"), Ok(()));
        kassert!(!fired.wait(Some(50_000_000)), "an event after unwatch");
        kassert_eq!(WATCH_CALLS.load(Ordering::SeqCst), calls);
        kassert_eq!(unwatch(id), Err(XsError::Errno("ENOENT")));
        Ok(())
    }
}
