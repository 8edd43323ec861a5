//! The xenbus device model (`xen/include/public/io/xenbus.h`, and the
//! xenstore layout of `docs/misc/xenstore-paths.pandoc`): a front end
//! finds its devices under `device/<kind>/<id>` in its home, each naming
//! its backend (`backend`, `backend-id`) and publishing its state
//! (`state`, an `enum xenbus_state` in decimal).
//!
//! xenstore is written by the toolstack and the backend, so nothing read
//! from it is trusted: a missing or malformed node makes the device an
//! error entry that keeps its path and the reason, and enumeration goes on.

use crate::hal::{HalError, XenBus};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// `enum xenbus_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum XenbusState {
    Unknown = 0,
    Initialising = 1,
    /// Waiting for information from the peer (the backend's state before
    /// the front end connects).
    InitWait = 2,
    /// Information published; waiting for the peer.
    Initialised = 3,
    Connected = 4,
    /// Tearing down, on an error or on request.
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}

impl XenbusState {
    const ALL: [XenbusState; 9] = [
        XenbusState::Unknown,
        XenbusState::Initialising,
        XenbusState::InitWait,
        XenbusState::Initialised,
        XenbusState::Connected,
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Reconfiguring,
        XenbusState::Reconfigured,
    ];

    /// The state a `state` node holds: exactly one decimal digit 0-8.
    pub fn parse(value: &str) -> Option<XenbusState> {
        match value.as_bytes() {
            [digit @ b'0'..=b'8'] => Some(Self::ALL[usize::from(digit - b'0')]),
            _ => None,
        }
    }

    /// The value to write to a `state` node.
    pub const fn as_str(self) -> &'static str {
        match self {
            XenbusState::Unknown => "0",
            XenbusState::Initialising => "1",
            XenbusState::InitWait => "2",
            XenbusState::Initialised => "3",
            XenbusState::Connected => "4",
            XenbusState::Closing => "5",
            XenbusState::Closed => "6",
            XenbusState::Reconfiguring => "7",
            XenbusState::Reconfigured => "8",
        }
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A xenstore node that is not what the protocol says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XenbusError {
    /// The node does not exist.
    Missing { path: String },
    /// The node holds something unparseable.
    Malformed { path: String, value: String },
    /// xenstore failed otherwise.
    Store { path: String, error: HalError },
}

impl fmt::Display for XenbusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenbusError::Missing { path } => write!(f, "{path}: missing"),
            XenbusError::Malformed { path, value } => {
                write!(f, "{path}: malformed value {value:?}")
            }
            XenbusError::Store { path, error } => write!(f, "{path}: xenstore: {error}"),
        }
    }
}

fn store_error(path: &str, error: HalError) -> XenbusError {
    match error {
        HalError::NotFound => XenbusError::Missing {
            path: path.to_string(),
        },
        error => XenbusError::Store {
            path: path.to_string(),
            error,
        },
    }
}

fn read_node<X: XenBus + ?Sized>(xen: &X, path: &str) -> Result<String, XenbusError> {
    xen.read(path).map_err(|error| store_error(path, error))
}

fn parse_node<T>(
    xen: &(impl XenBus + ?Sized),
    path: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, XenbusError> {
    let value = read_node(xen, path)?;
    parse(&value).ok_or(XenbusError::Malformed {
        path: path.to_string(),
        value,
    })
}

/// The state published in `<dir>/state` (a front end's or a backend's
/// directory).
pub fn read_state<X: XenBus + ?Sized>(xen: &X, dir: &str) -> Result<XenbusState, XenbusError> {
    parse_node(xen, &format!("{dir}/state"), XenbusState::parse)
}

/// Publishes `state` in `<dir>/state`.
pub fn write_state<X: XenBus + ?Sized>(
    xen: &X,
    dir: &str,
    state: XenbusState,
) -> Result<(), XenbusError> {
    let path = format!("{dir}/state");
    xen.write(&path, state.as_str())
        .map_err(|error| store_error(&path, error))
}

/// A front-end device as xenstore describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XenDevice {
    /// `vif`, `vbd`, `vkbd`...
    pub kind: String,
    pub id: u32,
    /// `device/<kind>/<id>`.
    pub frontend_path: String,
    /// The backend's directory, e.g. `/local/domain/0/backend/vif/5/0`.
    pub backend_path: String,
    /// The backend's domain.
    pub backend_id: u16,
    /// The front end's state at enumeration.
    pub state: XenbusState,
}

impl XenDevice {
    /// Reads the device at `device/<kind>/<id>`.
    pub fn read<X: XenBus + ?Sized>(xen: &X, kind: &str, id: u32) -> Result<Self, XenbusError> {
        let frontend_path = format!("device/{kind}/{id}");
        let backend_path = parse_node(xen, &format!("{frontend_path}/backend"), |value| {
            (!value.is_empty()).then(|| value.to_string())
        })?;
        let backend_id = parse_node(xen, &format!("{frontend_path}/backend-id"), parse_decimal)?;
        let state = read_state(xen, &frontend_path)?;
        Ok(XenDevice {
            kind: kind.to_string(),
            id,
            frontend_path,
            backend_path,
            backend_id,
            state,
        })
    }
}

/// `xen device/vif/0 backend /local/domain/0/backend/vif/5/0 (dom0) state
/// Initialising`.
impl fmt::Display for XenDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "xen {} backend {} (dom{}) state {}",
            self.frontend_path, self.backend_path, self.backend_id, self.state
        )
    }
}

/// The one node under `device/` that names no device class.
pub const NOT_A_DEVICE_KIND: &str = "suspend";

/// A decimal number with no sign, spaces or leading `+` (`str::parse`
/// alone takes a `+`).
fn parse_decimal<T: core::str::FromStr>(value: &str) -> Option<T> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Every device under `device/`, by kind then id; a device whose nodes
/// are missing or malformed is an `Err` entry naming the node. No
/// `device/` at all is an empty list; only a failure to list it is an
/// error.
pub fn enumerate<X: XenBus + ?Sized>(
    xen: &X,
) -> Result<Vec<Result<XenDevice, XenbusError>>, XenbusError> {
    let mut kinds = match xen.directory("device") {
        Ok(kinds) => kinds,
        Err(HalError::NotFound) => return Ok(Vec::new()),
        Err(error) => return Err(store_error("device", error)),
    };
    kinds.sort();
    let mut devices = Vec::new();
    // `device/suspend/event-channel` is the suspend event channel
    // (docs/misc/xenstore-paths.pandoc), not a device.
    for kind in kinds
        .iter()
        .filter(|kind| kind.as_str() != NOT_A_DEVICE_KIND)
    {
        let kind_path = format!("device/{kind}");
        let names = match xen.directory(&kind_path) {
            Ok(names) => names,
            Err(error) => {
                devices.push(Err(store_error(&kind_path, error)));
                continue;
            }
        };
        let mut ids = Vec::new();
        for name in names {
            match parse_decimal::<u32>(&name) {
                Some(id) => ids.push(id),
                None => devices.push(Err(XenbusError::Malformed {
                    path: format!("{kind_path}/{name}"),
                    value: name,
                })),
            }
        }
        ids.sort_unstable();
        devices.extend(ids.into_iter().map(|id| XenDevice::read(xen, kind, id)));
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeXenBus;
    use std::string::ToString;

    fn vif(xen: &FakeXenBus, id: u32, backend_id: &str, state: &str) {
        let dir = format!("device/vif/{id}");
        xen.set(
            &format!("{dir}/backend"),
            &format!("/local/domain/0/backend/vif/5/{id}"),
        );
        xen.set(&format!("{dir}/backend-id"), backend_id);
        xen.set(&format!("{dir}/state"), state);
    }

    #[test]
    fn states_parse_from_their_digits() {
        assert_eq!(XenbusState::parse("0"), Some(XenbusState::Unknown));
        assert_eq!(XenbusState::parse("2"), Some(XenbusState::InitWait));
        assert_eq!(XenbusState::parse("4"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::parse("8"), Some(XenbusState::Reconfigured));
        for bad in ["9", "", "04", " 4", "4\n", "-1", "Connected"] {
            assert_eq!(XenbusState::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn states_round_trip_and_match_xenbus_h() {
        for value in 0..=8u8 {
            let state = XenbusState::ALL[usize::from(value)];
            assert_eq!(state as u8, value);
            assert_eq!(XenbusState::parse(state.as_str()), Some(state));
        }
        assert_eq!(XenbusState::Closing.to_string(), "Closing");
    }

    #[test]
    fn enumerates_devices_by_kind_then_id() {
        let xen = FakeXenBus::new();
        vif(&xen, 1, "0", "1");
        vif(&xen, 0, "0", "1");
        xen.set(
            "device/vbd/51712/backend",
            "/local/domain/0/backend/vbd/5/51712",
        );
        xen.set("device/vbd/51712/backend-id", "0");
        xen.set("device/vbd/51712/state", "4");
        let devices = enumerate(&xen).expect("device/ lists");
        let found: Vec<(String, u32)> = devices
            .iter()
            .map(|device| {
                let device = device.as_ref().expect("well formed");
                (device.kind.clone(), device.id)
            })
            .collect();
        assert_eq!(
            found,
            [
                ("vbd".to_string(), 51712),
                ("vif".to_string(), 0),
                ("vif".to_string(), 1)
            ]
        );
    }

    #[test]
    fn device_fields_are_read() {
        let xen = FakeXenBus::new();
        vif(&xen, 0, "3", "2");
        let devices = enumerate(&xen).expect("device/ lists");
        assert_eq!(
            devices,
            [Ok(XenDevice {
                kind: "vif".to_string(),
                id: 0,
                frontend_path: "device/vif/0".to_string(),
                backend_path: "/local/domain/0/backend/vif/5/0".to_string(),
                backend_id: 3,
                state: XenbusState::InitWait,
            })]
        );
        let device = devices[0].as_ref().expect("well formed");
        assert_eq!(
            device.to_string(),
            "xen device/vif/0 backend /local/domain/0/backend/vif/5/0 (dom3) state InitWait"
        );
    }

    #[test]
    fn no_device_directory_is_no_devices() {
        assert_eq!(enumerate(&FakeXenBus::new()), Ok(Vec::new()));
    }

    #[test]
    fn failure_to_list_devices_is_an_error() {
        let xen = FakeXenBus::new();
        xen.fail("device", HalError::Denied);
        assert_eq!(
            enumerate(&xen),
            Err(XenbusError::Store {
                path: "device".to_string(),
                error: HalError::Denied
            })
        );
    }

    #[test]
    fn missing_node_keeps_the_device_as_an_error() {
        let xen = FakeXenBus::new();
        vif(&xen, 0, "0", "1");
        vif(&xen, 1, "0", "1");
        xen.remove("device/vif/0/backend-id");
        let devices = enumerate(&xen).expect("device/ lists");
        assert_eq!(devices.len(), 2);
        assert_eq!(
            devices[0],
            Err(XenbusError::Missing {
                path: "device/vif/0/backend-id".to_string()
            })
        );
        assert!(devices[1].is_ok());
    }

    #[test]
    fn malformed_values_are_errors_naming_the_node() {
        let xen = FakeXenBus::new();
        vif(&xen, 0, "+0", "1");
        vif(&xen, 1, "0", "connected");
        vif(&xen, 2, "70000", "1");
        vif(&xen, 3, "0", "1");
        xen.set("device/vif/3/backend", "");
        let devices = enumerate(&xen).expect("device/ lists");
        let errors: Vec<String> = devices
            .iter()
            .map(|device| {
                device
                    .as_ref()
                    .map_err(ToString::to_string)
                    .expect_err("malformed")
            })
            .collect();
        assert_eq!(
            errors,
            [
                "device/vif/0/backend-id: malformed value \"+0\"",
                "device/vif/1/state: malformed value \"connected\"",
                "device/vif/2/backend-id: malformed value \"70000\"",
                "device/vif/3/backend: malformed value \"\"",
            ]
        );
    }

    #[test]
    fn the_suspend_event_channel_is_no_device() {
        let xen = FakeXenBus::new();
        vif(&xen, 0, "0", "1");
        xen.set("device/suspend/event-channel", "5");
        let devices = enumerate(&xen).unwrap();
        assert_eq!(devices.len(), 1);
        assert!(devices[0].is_ok());
    }

    #[test]
    fn non_numeric_device_id_is_an_error_entry() {
        let xen = FakeXenBus::new();
        vif(&xen, 0, "0", "1");
        xen.set("device/vif/eth0/state", "1");
        let devices = enumerate(&xen).expect("device/ lists");
        assert_eq!(
            devices[0],
            Err(XenbusError::Malformed {
                path: "device/vif/eth0".to_string(),
                value: "eth0".to_string()
            })
        );
        assert!(devices[1].is_ok());
    }

    #[test]
    fn unlistable_kind_is_an_error_entry() {
        let xen = FakeXenBus::new();
        vif(&xen, 0, "0", "1");
        xen.set("device/vkbd/0/state", "1");
        xen.fail("device/vkbd", HalError::Failed("EIO"));
        let devices = enumerate(&xen).expect("device/ lists");
        assert_eq!(devices.len(), 2);
        assert!(devices[0].is_ok());
        assert_eq!(
            devices[1],
            Err(XenbusError::Store {
                path: "device/vkbd".to_string(),
                error: HalError::Failed("EIO")
            })
        );
    }

    #[test]
    fn state_is_written_and_read_back() {
        let xen = FakeXenBus::new();
        write_state(&xen, "device/vif/0", XenbusState::Initialised).expect("writes");
        assert_eq!(xen.get("device/vif/0/state").as_deref(), Some("3"));
        assert_eq!(
            read_state(&xen, "device/vif/0"),
            Ok(XenbusState::Initialised)
        );
        assert_eq!(
            read_state(&xen, "backend/x"),
            Err(XenbusError::Missing {
                path: "backend/x/state".to_string()
            })
        );
    }
}
